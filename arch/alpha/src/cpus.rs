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

unsafe extern "Rust" {
    // asm/head.S: the boot CPU's stack.
    static boot_stack: u8;
    static boot_stack_top: u8;
}

/// Bytes of every secondary's kernel stack.
pub const STACK_SIZE: u64 = 64 * 1024;

/// Top of each secondary's kernel stack (0: none yet). Written once by the
/// boot CPU before that CPU starts (Release), read by any CPU.
static STACK_TOPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Records logical CPU `cpu`'s stack (boot CPU, before starting it).
pub fn set_stack_top(cpu: usize, top: u64) {
    STACK_TOPS[cpu].store(top, Ordering::Release);
}

/// The calling CPU's logical id.
///
/// Every CPU runs kernel code (interrupt handlers too: PALcode pushes
/// their frames on the current kernel stack) on its own stack, so the
/// stack pointer names the CPU without a PAL call; `whami` (CALL_PAL, a
/// trip through PALcode that costs QEMU far more than this loop) is the
/// fallback for a stack not recorded here. Before the map is built only
/// the boot CPU runs kernel code, and it will be logical 0. Afterwards only
/// CPUs in the map run it: a CPU started by mistake stops in
/// `smp::alpha_secondary_main` before it touches per-CPU data, so the
/// fallback to 0 is never taken by one.
#[inline]
pub fn this() -> usize {
    let marker = 0u8;
    let sp = &raw const marker as u64;
    let (lo, hi) = (&raw const boot_stack as u64, &raw const boot_stack_top as u64);
    if lo <= sp && sp < hi {
        return 0;
    }
    for (cpu, top) in STACK_TOPS.iter().enumerate().take(MAP.count()).skip(1) {
        let top = top.load(Ordering::Acquire);
        if top != 0 && top - STACK_SIZE <= sp && sp < top {
            return cpu;
        }
    }
    from_whami()
}

/// The calling CPU's logical id by `whami` (for checks of [`this`]).
pub fn from_whami() -> usize {
    MAP.logical(pal::whami()).unwrap_or(0)
}

/// The physical id (for `wripir`, HWRPB slots, rxrdy) of logical CPU `cpu`.
pub fn physical(cpu: usize) -> Option<usize> {
    MAP.physical(cpu)
}
