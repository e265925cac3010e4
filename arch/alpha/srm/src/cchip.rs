//! The Tsunami/Typhoon Cchip's device interrupt masks and its
//! interprocessor interrupt requests (DS10, DS20, ES40 and QEMU's
//! clipper), as addresses and rules for writing them.
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

/// Quadword accesses to Cchip CSRs and the barrier: KSEG loads and stores
/// and `mb` in the kernel, a recording model in the host tests.
pub trait Csr {
    fn store(&self, addr: u64, value: u64);
    fn load(&self, addr: u64) -> u64;
    fn mb(&self);
}

/// Masks every device interrupt source of every present CPU: writes 0 to
/// the DIM of each physical id in `present` (bit n = CPU n, from the
/// HWRPB's per-CPU slots) that the Cchip has. Ids above 3 do not exist on
/// a Cchip and are ignored. Each store is followed by a barrier and a
/// read of the same DIM, as Linux's `tsunami_update_irq_hw` does: the
/// read returns only once the store has reached the Cchip (Alpha may hold
/// and reorder I/O-space stores), so the mask holds before the kernel
/// lowers its IPL.
pub fn mask_device_interrupts(present: u64, csr: &impl Csr) {
    for (cpu, reg) in DIM.iter().enumerate() {
        if present & (1 << cpu) != 0 {
            csr.store(*reg, 0);
            csr.mb();
            let _ = csr.load(*reg);
        }
    }
}

/// KSEG address of the Cchip's MISC register (physical 0x801a0000080).
pub const MISC: u64 = 0xfffffd01a0000080;

/// MISC's IPREQ field, bits 15:12: a 1 written to bit 12 + n requests an
/// interprocessor interrupt on CPU n (it sets that CPU's IPINTR bit,
/// which stays set until the target's PALcode clears it). The other
/// fields the 21272 defines are read-only or write-1-to-clear or -set, so
/// zeros there change nothing; this is the store qemu-palcode's `wripir`
/// makes for one CPU (docs/hardware.md §6).
pub const IPREQ_SHIFT: u32 = 12;

/// Requests an interprocessor interrupt on every CPU in `cpus` (bit n =
/// physical id n) that a Cchip can have (0 to 3), with one store of their
/// IPREQ bits to MISC through `write` (address, value); no store when
/// none. Returns the ids it could not request (above 3), for the caller
/// to request another way.
pub fn request_ipis(cpus: u64, mut write: impl FnMut(u64, u64)) -> u64 {
    let here = cpus & 0xf;
    if here != 0 {
        write(MISC, here << IPREQ_SHIFT);
    }
    cpus & !0xf
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Ev {
        Store(u64, u64),
        Load(u64),
        Mb,
    }

    /// A recording fake Cchip.
    #[derive(Default)]
    struct Fake(core::cell::RefCell<Vec<Ev>>);

    impl Csr for Fake {
        fn store(&self, addr: u64, value: u64) {
            self.0.borrow_mut().push(Ev::Store(addr, value));
        }
        fn load(&self, addr: u64) -> u64 {
            self.0.borrow_mut().push(Ev::Load(addr));
            0
        }
        fn mb(&self) {
            self.0.borrow_mut().push(Ev::Mb);
        }
    }

    fn events(present: u64) -> Vec<Ev> {
        let fake = Fake::default();
        mask_device_interrupts(present, &fake);
        fake.0.into_inner()
    }

    /// The CSR addresses written, in order.
    fn writes(present: u64) -> Vec<(u64, u64)> {
        events(present)
            .into_iter()
            .filter_map(|e| match e {
                Ev::Store(a, v) => Some((a, v)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_dim_store_is_fenced_and_read_back() {
        let ev = events(0b1101);
        let want: Vec<Ev> = [0, 2, 3]
            .iter()
            .flat_map(|&c| [Ev::Store(DIM[c], 0), Ev::Mb, Ev::Load(DIM[c])])
            .collect();
        assert_eq!(ev, want);
    }

    fn ipi_stores(cpus: u64) -> (Vec<(u64, u64)>, u64) {
        let mut seen = Vec::new();
        let rest = request_ipis(cpus, |a, v| seen.push((a, v)));
        (seen, rest)
    }

    #[test]
    fn a_broadcast_is_one_misc_store_of_ipreq_bits() {
        assert_eq!(MISC, 0xfffffd01a0000080, "physical 0x801a0000080 in KSEG");
        assert_eq!(ipi_stores(0b1110), (vec![(MISC, 0xe000)], 0), "CPUs 1-3");
        assert_eq!(ipi_stores(0b0101), (vec![(MISC, 0x5000)], 0), "sparse");
        assert_eq!(ipi_stores(0b1), (vec![(MISC, 0x1000)], 0), "one CPU");
    }

    #[test]
    fn no_store_for_no_cpu_and_ids_a_cchip_cannot_have_are_returned() {
        assert_eq!(ipi_stores(0), (vec![], 0));
        assert_eq!(ipi_stores(1 << 5), (vec![], 1 << 5));
        assert_eq!(
            ipi_stores(1 << 9 | 0b10),
            (vec![(MISC, 0x2000)], 1 << 9),
            "the Cchip's part stored, the rest returned"
        );
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
