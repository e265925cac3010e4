# Thin wrappers around CALL_PAL functions and a few privileged instructions,
# each a leaf function in the Alpha C convention (arguments $16-$21, result $0).
# Rust declares them `extern "Rust"` in arch/alpha/src/pal.rs.
# Codes: OSF/1 PALcode, see docs/qemu.md §4.

	.set noreorder
	.set noat
	.text

#define LEAF(name) .align 4; .globl name; .type name, @function; name:
#define END(name) .size name, . - name

LEAF(pal_halt)
	call_pal 0x00
	br	$31, pal_halt
END(pal_halt)

LEAF(pal_wripir)			# a0 = target CPU
	call_pal 0x0d
	ret	$31, ($26), 1
END(pal_wripir)

LEAF(pal_whami)
	call_pal 0x3c
	ret	$31, ($26), 1
END(pal_whami)

LEAF(pal_rdps)
	call_pal 0x36
	ret	$31, ($26), 1
END(pal_rdps)

LEAF(pal_wrent)				# a0 = entry address, a1 = which (0..5)
	call_pal 0x34
	ret	$31, ($26), 1
END(pal_wrent)

LEAF(pal_tbi)				# a0 = type (-2 tbia, -1 tbiap, 1..3), a1 = VA
	call_pal 0x33
	ret	$31, ($26), 1
END(pal_tbi)

LEAF(pal_imb)
	call_pal 0x86
	ret	$31, ($26), 1
END(pal_imb)

LEAF(pal_wtint)				# a0 = ticks to skip (0); returns skipped
	call_pal 0x3e
	ret	$31, ($26), 1
END(pal_wtint)

LEAF(pal_cserve)			# a0 = selector, a1, a2
	call_pal 0x09
	ret	$31, ($26), 1
END(pal_cserve)

LEAF(pal_rdmces)
	call_pal 0x10
	ret	$31, ($26), 1
END(pal_rdmces)

LEAF(pal_wrmces)
	call_pal 0x11
	ret	$31, ($26), 1
END(pal_wrmces)

LEAF(pal_swpctx)			# a0 = physical PCB address
	call_pal 0x30
	ret	$31, ($26), 1
END(pal_swpctx)

# pal_swpctx_keep_sp(pcb_phys, pcb_kseg): swpctx to a PCB that is not
# this CPU's, on this same stack: its ksp is set to $30 first, so the
# switch (which loads $30 from the new PCB) leaves the stack where it is.
LEAF(pal_swpctx_keep_sp)
	stq	$30, 0($17)
	mb
	call_pal 0x30
	ret	$31, ($26), 1
END(pal_swpctx_keep_sp)

# The benchmark's profiling window (arch/alpha/src/run/bench.rs): empty
# functions whose only job is to appear at their own addresses in QEMU's
# instruction trace (`cargo xtask profile`).
LEAF(bench_window_open)
	ret	$31, ($26), 1
END(bench_window_open)

LEAF(bench_window_close)
	ret	$31, ($26), 1
END(bench_window_close)

# The stack pointer, as a plain number: Rust code that finds its stack's
# base from it cannot be "proved" by the compiler to stay inside a local
# (it once deleted the stack-guard self-test's stores when it derived the
# base from a local's address).
LEAF(cpu_sp)
	mov	$30, $0
	ret	$31, ($26), 1
END(cpu_sp)

# pal_swpipl_noted(ipl): swpipl, with the new level noted first in the
# IPL quadword of the running stack (its base + 8, after the guard word;
# cpus::IPL_NOTE), where other CPUs read it for the edge-loss injection and
# the watchdog's reports, and this CPU for its own level (ipl::current). The
# note is the level as last set by software or restored by the return from
# an interrupt (asm/entry.S notes it before rti); interrupt entry raises the
# IPL without it, until the handler's own swpipl to 7. ipl::swap notes the
# level again after this returns: an interrupt taken between the stq and the
# call_pal returns through entry.S, which notes the old level.
LEAF(pal_swpipl_noted)
	zapnot	$30, 0xfc, $1
	stq	$16, 8($1)
	call_pal 0x35
	ret	$31, ($26), 1
END(pal_swpipl_noted)

LEAF(cpu_mb)
	mb
	ret	$31, ($26), 1
END(cpu_mb)

LEAF(cpu_wmb)
	wmb
	ret	$31, ($26), 1
END(cpu_wmb)

LEAF(cpu_rpcc)				# the 32-bit process cycle counter
	rpcc	$0
	zapnot	$0, 0x0f, $0
	ret	$31, ($26), 1
END(cpu_rpcc)

LEAF(cpu_gp)
	mov	$29, $0
	ret	$31, ($26), 1
END(cpu_gp)

# Deliberate faults for the fault-entry self-tests (each reaches one PALcode
# entry point; the kernel must report it and end with a failure status).
LEAF(fault_breakpoint)			# entIF, a0 = 0 (bpt)
	call_pal 0x80
	ret	$31, ($26), 1
END(fault_breakpoint)

LEAF(fault_illegal)			# entIF, a0 = 4 (OPCDEC): an unimplemented PAL call
	call_pal 0x2f
	ret	$31, ($26), 1
END(fault_illegal)

LEAF(fault_overflow)			# entArith: addqv overflows
	lda	$1, -1($31)
	srl	$1, 1, $1
	addqv	$1, $1, $0
	trapb
	ret	$31, ($26), 1
END(fault_overflow)

LEAF(fault_load)			# a0 = address: entMM for an unmapped VA, entUna if misaligned
	ldq	$0, 0($16)
	ret	$31, ($26), 1
END(fault_load)

LEAF(fault_callsys)			# callsys from kernel mode
	call_pal 0x83
	ret	$31, ($26), 1
END(fault_callsys)

# abort(): what the compiler calls for core::intrinsics::abort (core's sort
# checks, for one). Report it like a panic instead of running off: set up
# gp for this point and go to the Rust side (main.rs), which never returns.
LEAF(abort)
	br	$27, 1f
1:	ldgp	$29, 0($27)
	jsr	$26, kernel_abort
	call_pal 0x00
END(abort)
