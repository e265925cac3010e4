//! Where the kernel may hang its own mappings in the console's page table
//! (docs/hardware.md §1d, docs/qemu.md §1.3).
//!
//! The console's L1 table maps its own low addresses through slot 0 (the
//! HWRPB at VA 0x10000000, a loaded image at 0x20000000) and maps itself at
//! the slot of the VPTB: 1 on a real SRM console (VPTB 0x200000000), 1023
//! under qemu-palcode (VPTB 0xfffffffe00000000). An L1 slot spans 8 GiB.

/// VA covered by one L1 entry.
pub const L1_SPAN: u64 = 1 << 33;

/// The L1 slot of the VPTB's self-map.
pub const fn self_map_slot(vptb: u64) -> u64 {
    (vptb >> 33) & 0x3ff
}

/// Why a console's VPTB cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotThreeLevel {
    pub vptb: u64,
}

impl core::fmt::Display for NotThreeLevel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the console's VPTB {:#x} is not the base of a 3-level page table (is page_table_levels 4? set it to 3 at the SRM prompt)",
            self.vptb
        )
    }
}

/// Checks that `vptb` is the base of a 3-level (8 KiB page) virtual page
/// table, the only shape this kernel and its loader walk: a canonical
/// 43-bit VA (bits 63..42 all equal), aligned to one L1 slot (8 GiB). SRM
/// uses 0x200000000, or 1 << 43 when the console variable
/// `page_table_levels` is 4 (docs/hardware.md §1d); qemu-palcode uses
/// 0xfffffffe00000000. Returns the self-map's L1 slot.
pub fn check_three_level(vptb: u64) -> Result<u64, NotThreeLevel> {
    let high = vptb >> 42;
    let canonical = high == 0 || high == (u64::MAX >> 42);
    if canonical && vptb.is_multiple_of(L1_SPAN) {
        Ok(self_map_slot(vptb))
    } else {
        Err(NotThreeLevel { vptb })
    }
}

/// The first L1 slot in 1..512 (user VAs below 2^42) that is empty and is
/// not the self-map's; `entry(i)` reads L1 entry `i`.
pub fn free_slot(vptb: u64, entry: impl Fn(u64) -> u64) -> Option<u64> {
    let self_map = self_map_slot(vptb);
    (1..512u64)
        .filter(|s| *s != self_map)
        .find(|s| entry(*s) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    #[test]
    fn real_srm_self_map_at_slot_1_is_never_taken() {
        // Real SRM: L1[0] console mappings, L1[1] the self-map. Even if the
        // self-map entry read as empty it must not be chosen.
        let vptb = 0x2_0000_0000;
        assert_eq!(self_map_slot(vptb), 1);
        let l1 = |i: u64| if i <= 1 { 0x1234_0000_0101 } else { 0 };
        assert_eq!(free_slot(vptb, l1), Some(2));
        assert_eq!(free_slot(vptb, |i| if i == 0 { 1 } else { 0 }), Some(2));
    }

    #[test]
    fn qemu_self_map_at_slot_1023() {
        let vptb = 0xffff_fffe_0000_0000;
        assert_eq!(self_map_slot(vptb), 1023);
        assert_eq!(
            free_slot(vptb, |i| if i == 0 || i == 1023 { 7 } else { 0 }),
            Some(1)
        );
    }

    #[test]
    fn only_three_level_vptbs_are_taken() {
        assert_eq!(
            check_three_level(0x2_0000_0000),
            Ok(1),
            "SRM, page_table_levels 3"
        );
        assert_eq!(
            check_three_level(0xffff_fffe_0000_0000),
            Ok(1023),
            "qemu-palcode"
        );
        let four = 1 << 43;
        let e = check_three_level(four).unwrap_err();
        assert_eq!(e, NotThreeLevel { vptb: four });
        let line = std::format!("{e}");
        assert!(
            line.contains("0x80000000000")
                && line.contains("page_table_levels")
                && !line.contains('\n'),
            "{line}"
        );
        assert!(
            check_three_level(0x2_0000_2000).is_err(),
            "not slot-aligned"
        );
        assert!(
            check_three_level(0x0000_0800_0000_0000).is_err(),
            "bit 43: not a 43-bit VA"
        );
    }

    #[test]
    fn a_full_table_gives_none() {
        assert_eq!(free_slot(0x2_0000_0000, |_| 1), None);
    }
}
