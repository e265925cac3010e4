//! The Tsunami/Typhoon Cchip's device interrupt masks (DS10, DS20, ES40
//! and QEMU's clipper), as addresses and a rule for writing them.
//!
//! The Cchip has one device interrupt mask register per CPU, DIM0..DIM3
//! (Cchip CSRs at physical 0x801a0000000: DIM0/1 at +0x200/+0x240,
//! DIM2/3 at +0x600/+0x640; quadword accesses only; Linux
//! `arch/alpha/include/asm/core_tsunami.h`). A 2-CPU Cchip (DS10, DS20)
//! implements only DIM0 and DIM1: Linux's `dp264_update_irq_hw` writes
//! the DIM of each possible CPU only, never the others (docs/hardware.md,
//! "Known risks on real machines"). This module decides which registers a
//! quiesce writes; the kernel does the stores, host tests record them.

/// KSEG addresses of DIM0..DIM3, indexed by the CPU's physical id.
pub const DIM: [u64; 4] = [
    0xfffffd01a0000200,
    0xfffffd01a0000240,
    0xfffffd01a0000600,
    0xfffffd01a0000640,
];

/// Masks every device interrupt source of every present CPU: writes 0 to
/// the DIM of each physical id in `present` (bit n = CPU n, from the
/// HWRPB's per-CPU slots) that the Cchip has, through `write` (address,
/// value). Ids above 3 do not exist on a Cchip and are ignored.
pub fn mask_device_interrupts(present: u64, mut write: impl FnMut(u64, u64)) {
    for (cpu, reg) in DIM.iter().enumerate() {
        if present & (1 << cpu) != 0 {
            write(*reg, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A recording fake Cchip: the CSR addresses written, in order.
    fn writes(present: u64) -> Vec<(u64, u64)> {
        let mut seen = Vec::new();
        mask_device_interrupts(present, |a, v| seen.push((a, v)));
        seen
    }

    #[test]
    fn a_two_cpu_cchip_gets_only_dim0_and_dim1() {
        assert_eq!(writes(0b11), [(DIM[0], 0), (DIM[1], 0)]);
    }

    #[test]
    fn one_dim_per_present_cpu() {
        assert_eq!(writes(0b1), [(DIM[0], 0)], "DS10: one CPU");
        assert_eq!(writes(0b1111), DIM.map(|d| (d, 0)), "ES40: four CPUs");
        assert_eq!(
            writes(0b1101),
            [(DIM[0], 0), (DIM[2], 0), (DIM[3], 0)],
            "a sparse set"
        );
        assert_eq!(
            writes(1 << 5 | 1),
            [(DIM[0], 0)],
            "no DIM for an id a Cchip cannot have"
        );
    }
}
