# gdb commands for the kernel, loaded by `cargo xtask gdb`.
#
# gdb reads a copy of the kernel whose function names are Rust paths
# (xtask/src/rustnames.rs rewrites the v0 symbols the GCC backend writes),
# so `break kernel::smp::finish` works as typed. `rbreak-rust PATH` sets a
# breakpoint on every function whose path ends with PATH, so a path without
# its crate (smp::finish) finds it in any crate; it also matches the few
# names left in v0 form (a generic path longer than its symbol), through
# the v0 spelling of the segments (kernel::smp::finish -> 6kernel3smp6finish).
import gdb


class RbreakRust(gdb.Command):
    """rbreak-rust PATH: break on the Rust function(s) whose path ends with PATH (e.g. smp::finish)."""

    def __init__(self):
        super().__init__("rbreak-rust", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        path = arg.strip()
        if not path:
            raise gdb.GdbError("usage: rbreak-rust PATH (e.g. kernel::smp::finish)")
        parts = [p for p in path.split("::") if p]
        if not all(p.replace("_", "a").isalnum() for p in parts):
            raise gdb.GdbError("rbreak-rust: %r is not a Rust path" % path)
        # Rust names: the whole path, or its end after a `::`.
        gdb.execute("rbreak ^%s$" % "::".join(parts), from_tty)
        gdb.execute("rbreak ::%s$" % "::".join(parts), from_tty)
        # Names still in v0 form end with the last segment's encoding.
        encoded = "".join("%d%s" % (len(p), p) for p in parts)
        gdb.execute("rbreak _R.*%s$" % encoded, from_tty)


RbreakRust()


# ---- Rust names and &str values in backtraces ---------------------------
#
# The DWARF names functions by their v0 symbols. A frame filter shows them
# demangled (gdb's own Rust demangler, without the crate hash), and joins
# a `&str`/slice argument, which the GCC backend passes as a pointer
# parameter followed by a length parameter, into one value read from the
# target: `param1="1 passed, 0 failed"` instead of a `signed char *` that
# runs on past the string and a separate length.
import re

from gdb.FrameDecorator import FrameDecorator

_HASH = re.compile(r"\[[0-9a-f]+\]")
_cache = {}


def rust_demangle(name):
    """The Rust path of a v0 symbol (`kernel::smp::finish`), else `name`."""
    if not isinstance(name, str) or not name.startswith("_R"):
        return name
    if name not in _cache:
        try:
            out = gdb.execute("demangle -l rust %s" % name, to_string=True).strip()
            _cache[name] = _HASH.sub("", out) or name
        except gdb.error:
            _cache[name] = name
    return _cache[name]


class _Arg:
    def __init__(self, sym, value):
        self._sym, self._value = sym, value

    def symbol(self):
        return self._sym

    def value(self):
        return self._value


def _is_byte_pointer(t):
    t = t.strip_typedefs()
    return t.code == gdb.TYPE_CODE_PTR and t.target().strip_typedefs().sizeof == 1


def _is_integer(t):
    return t.strip_typedefs().code == gdb.TYPE_CODE_INT


class RustFrame(FrameDecorator):
    def function(self):
        return rust_demangle(super().function())

    def frame_args(self):
        args = super().frame_args()
        if args is None:
            return None
        args = list(args)
        frame = self.inferior_frame()

        def value_of(arg):
            v = arg.value()
            if v is None and isinstance(arg.symbol(), gdb.Symbol):
                v = arg.symbol().value(frame)
            return v

        out, i = [], 0
        while i < len(args):
            a = args[i]
            try:
                v = value_of(a)
                nxt = value_of(args[i + 1]) if i + 1 < len(args) else None
                if isinstance(v, gdb.Value) and isinstance(nxt, gdb.Value) and _is_byte_pointer(v.type) and _is_integer(nxt.type):
                    n = int(nxt)
                    if 0 <= n <= 4096:
                        data = bytes(gdb.selected_inferior().read_memory(int(v), n)) if n else b""
                        out.append(_Arg(a.symbol(), data.decode("utf-8", "replace")))
                        i += 2
                        continue
            except (gdb.error, gdb.MemoryError, ValueError):
                pass
            out.append(a)
            i += 1
        return out


class RustFrameFilter:
    def __init__(self):
        self.name = "rust-names"
        self.priority = 100
        self.enabled = True
        gdb.frame_filters[self.name] = self

    def filter(self, frames):
        return map(RustFrame, frames)


RustFrameFilter()
# A joined `&str` is a string, which gdb's default ("scalars") would show
# as "...".
gdb.execute("set print frame-arguments all")
