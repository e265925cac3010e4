//! CPU numbering: physical ids (what `whami` returns: the HWRPB slot index,
//! on EV7 the PID, sparse and up to 63, the boot CPU not necessarily 0) and
//! the dense logical ids every per-CPU structure is indexed by.
//!
//! The map (`alphasmp::cpuid::CpuMap`) is built once by the boot CPU from
//! the HWRPB slots that are present (and the `cpus=` selection) before any
//! secondary starts; the boot CPU is logical 0. After that it never
//! changes and any CPU reads it without locks (the map's own protocol).

use alphasmp::cpuid::CpuMap;

use crate::pal;

pub use alphasmp::cpuid::MAX_CPUS;

/// The machine's CPU map.
pub static MAP: CpuMap = CpuMap::new();

/// The calling CPU's logical id.
///
/// Before the map is built only the boot CPU runs kernel code, and it will
/// be logical 0. Afterwards only CPUs in the map run it: a CPU started by
/// mistake stops in `smp::alpha_secondary_main` before it touches per-CPU
/// data, so the fallback to 0 is never taken by one.
pub fn this() -> usize {
    MAP.logical(pal::whami()).unwrap_or(0)
}

/// The physical id (for `wripir`, HWRPB slots, rxrdy) of logical CPU `cpu`.
pub fn physical(cpu: usize) -> Option<usize> {
    MAP.physical(cpu)
}
