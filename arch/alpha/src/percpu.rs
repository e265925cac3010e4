//! Per-CPU data, indexed by the CPU number `whami` returns.

/// CPUs this kernel supports (clipper has at most 4; the mask type allows 64).
pub const MAX_CPUS: usize = 4;
