//! CPU numbering: physical ids (what `whami` returns: the HWRPB slot index,
//! on EV7 the PID, sparse and up to 63, the boot CPU not necessarily 0) and
//! the dense logical ids every per-CPU structure is indexed by.
//!
//! The map (`alphasmp::cpuid::CpuMap`) is built once by the boot CPU from
//! the HWRPB slots that are present (and the `cpus=` selection) before any
//! secondary starts; the boot CPU is logical 0. After that it never
//! changes and any CPU reads it without locks (the map's own protocol).

use core::sync::atomic::{AtomicU64, Ordering};

use alphasmp::cpuid::CpuMap;

use crate::pal;

pub use alphasmp::cpuid::MAX_CPUS;

/// The machine's CPU map.
pub static MAP: CpuMap = CpuMap::new();

/// The boot CPU's logical id (the map gives it 0).
pub const BOOT_CPU: usize = 0;

unsafe extern "Rust" {
    // asm/head.S: the boot CPU's stack, STACK_SIZE long and aligned.
    static boot_stack: u8;
}

/// Bytes of every kernel stack, the boot CPU's included. Every kernel
/// stack is also aligned to this size, so the base of the stack a CPU runs
/// on is its stack pointer with the low bits cleared.
pub const STACK_SIZE: u64 = 64 * 1024;

/// The guard word at the base (lowest address) of every kernel stack: this
/// pattern in bits 63..8 and the owner's logical id in bits 7..0. A stack
/// that overflows writes over it first.
const GUARD: u64 = 0x5354_4b47_5541_5200; // "STKGUAR" and the id
const GUARD_MASK: u64 = !0xff;

/// Writes the guard at the base of a kernel stack of `STACK_SIZE` bytes
/// starting at `base` (aligned), naming logical CPU `cpu`.
///
/// # Safety
/// `base` is the lowest address of a STACK_SIZE-aligned kernel stack,
/// writable, that no CPU runs on yet (or the caller's own, at its start).
pub unsafe fn set_stack_guard(base: u64, cpu: usize) {
    debug_assert_eq!(base % STACK_SIZE, 0);
    assert!(cpu < MAX_CPUS, "logical CPU {cpu} out of range");
    // SAFETY: per the contract, the words are the stack's own lowest two
    // quadwords, which no frame uses while the stack is in bounds. A CPU
    // starts at IPL 7.
    unsafe {
        core::ptr::write_volatile(base as *mut u64, GUARD | cpu as u64);
        core::ptr::write_volatile((base + IPL_NOTE) as *mut u64, 7);
    }
    STACK_BASE[cpu].store(base, Ordering::Release);
}

/// Where in a kernel stack (from its base) its CPU notes the IPL it last
/// set (`pal::swpipl_noted`, asm/pal.S) or returned to from an interrupt
/// (asm/entry.S).
pub const IPL_NOTE: u64 = 8;

/// Each logical CPU's kernel stack base (0: not given out yet).
static STACK_BASE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The IPL logical CPU `cpu` last set by software or returned to from an
/// interrupt (its stack's note); 7
/// for a CPU without a stack yet (it starts at IPL 7).
pub fn ipl_of(cpu: usize) -> u8 {
    let base = STACK_BASE.get(cpu).map_or(0, |b| b.load(Ordering::Acquire));
    if base == 0 {
        return 7;
    }
    // SAFETY: the note is an aligned quadword of that CPU's stack (never
    // freed), which its CPU writes with single quadword stores.
    let note = unsafe { &*((base + IPL_NOTE) as *const AtomicU64) };
    (note.load(Ordering::Acquire) & 7) as u8
}

/// The IPL of the calling CPU as its running stack's note says, if that
/// stack carries a guard (None: a stack the kernel did not give out, or
/// one whose guard an overflow broke; ask `rdps`). Equal to the
/// processor's IPL everywhere but inside interrupt entry, between
/// PALcode's raise and the handler's own `swpipl` to 7 (`ipl::current`).
#[inline]
pub fn noted_ipl_here() -> Option<u8> {
    let base = pal::running_stack_base();
    // SAFETY: the running stack is STACK_SIZE long and aligned, so its two
    // lowest quadwords are mapped: the guard, and the note beside it,
    // which only this CPU writes (its `swpipl`s and interrupt returns).
    let (guard, note) = unsafe {
        (
            core::ptr::read_volatile(base as *const u64),
            core::ptr::read_volatile((base + IPL_NOTE) as *const u64),
        )
    };
    (guard & GUARD_MASK == GUARD).then_some((note & 7) as u8)
}

/// Notes `level` as the calling CPU's IPL on its running stack, as
/// `pal::swpipl_noted` does before its `swpipl`.
#[inline]
pub fn note_ipl_here(level: u8) {
    let base = pal::running_stack_base();
    // SAFETY: as in `noted_ipl_here`: the note is the running stack's own
    // second quadword, written only by its CPU, in single quadword stores
    // (other CPUs read it as an AtomicU64, `ipl_of`).
    unsafe { core::ptr::write_volatile((base + IPL_NOTE) as *mut u64, u64::from(level & 7)) };
}

/// Writes the boot CPU's guard (the boot CPU, first thing in Rust).
pub fn init_boot_stack() {
    // SAFETY: asm/head.S aligns the boot stack to STACK_SIZE; the boot CPU
    // runs near its top, far from the guard word.
    unsafe { set_stack_guard(&raw const boot_stack as u64, 0) };
}

/// The lowest address of the STACK_SIZE-aligned stack the caller runs on
/// (from `$sp` as a number, so the compiler cannot take the guard word for
/// part of a local variable).
#[inline]
pub fn stack_base() -> u64 {
    pal::sp() & !(STACK_SIZE - 1)
}

/// Kernel stacks whose guard was found broken (an overflow): `this()`
/// fell back to `whami` for them. Checked by the self-tests.
pub static GUARD_MISSES: AtomicU64 = AtomicU64::new(0);

/// The calling CPU's logical id, in O(1): the guard word at the base of
/// the stack it runs on (every CPU runs kernel code, interrupt handlers
/// included, on its own aligned stack; PALcode pushes interrupt frames on
/// the current kernel stack). One load and a compare, no PAL call and no
/// barrier. A broken guard (a stack overflow, or a stack the kernel did not
/// give out) falls back to `whami` (CALL_PAL), so an overflow never gives a
/// CPU another CPU's identity.
#[inline]
pub fn this() -> usize {
    let word = pal::stack_guard();
    if word & GUARD_MASK == GUARD {
        // Below MAX_CPUS: only `set_stack_guard` writes the low byte, with
        // a logical id. The mask tells the compiler so (no bounds check in
        // `percpu::this`, which stays small enough to inline).
        return (word & 0xff) as usize & (MAX_CPUS - 1);
    }
    guard_missed()
}

/// [`this`] for a stack whose guard is broken (out of line: never taken
/// unless a stack overflowed).
#[cold]
#[inline(never)]
fn guard_missed() -> usize {
    GUARD_MISSES.fetch_add(1, Ordering::Relaxed);
    from_whami()
}

const _: () = assert!(MAX_CPUS.is_power_of_two() && MAX_CPUS <= 256);
// pal::stack_guard and asm/pal.S's pal_swpipl_noted align to 64 KiB.
const _: () = assert!(STACK_SIZE == 64 * 1024);

/// The calling CPU's logical id by `whami` (for checks of [`this`]).
pub fn from_whami() -> usize {
    MAP.logical(pal::whami()).unwrap_or(0)
}

/// The physical id (for `wripir`, HWRPB slots, rxrdy) of logical CPU `cpu`.
#[inline]
pub fn physical(cpu: usize) -> Option<usize> {
    MAP.physical(cpu)
}
