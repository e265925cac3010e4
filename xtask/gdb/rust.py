# gdb commands for the kernel, loaded by `cargo xtask gdb`.
#
# The GCC backend writes Rust functions into the DWARF under their mangled
# (v0) names, so `break kernel::smp::finish` finds nothing. `rbreak-rust
# PATH` turns a Rust path into the v0 spelling of its segments (each one
# length-prefixed: kernel::smp::finish -> 6kernel3smp6finish) and sets a
# breakpoint on every function whose name ends that way; a path without a
# crate prefix (smp::finish) matches in any crate.
import gdb


class RbreakRust(gdb.Command):
    """rbreak-rust PATH: break on the Rust function(s) PATH (e.g. kernel::smp::finish)."""

    def __init__(self):
        super().__init__("rbreak-rust", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        path = arg.strip()
        if not path:
            raise gdb.GdbError("usage: rbreak-rust PATH (e.g. kernel::smp::finish)")
        parts = [p for p in path.split("::") if p]
        if not all(p.replace("_", "a").isalnum() for p in parts):
            raise gdb.GdbError("rbreak-rust: %r is not a Rust path" % path)
        encoded = "".join("%d%s" % (len(p), p) for p in parts)
        # v0 names end with the last segment; a trailing hash segment is
        # not used by v0, so anchor at the end.
        gdb.execute("rbreak %s$" % encoded, from_tty)


RbreakRust()
