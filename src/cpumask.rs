//! A set of CPU numbers (0..64) in one word.

/// The index of the lowest set bit of `x` (nonzero), without a count
/// instruction: EV6 (the oldest CPU the kernel claims) has no `cttz`, and
/// the compiler's fallback is a call into its runtime library (22
/// instructions a call, `cargo xtask profile`). Isolating the lowest bit
/// and multiplying by a de Bruijn sequence puts a distinct 6-bit pattern in
/// the top bits for each of the 64 positions (Leiserson, Prokop and
/// Randall, "Using de Bruijn Sequences to Index a 1 in a Computer Word",
/// 1998); a 64-byte table maps it back.
/// (The table is a `static`: as a `const`, the Alpha backend copied all 64
/// bytes to the stack at every use.)
#[inline]
pub fn lowest_bit(x: u64) -> usize {
    DE_BRUIJN_INDEX[((x & x.wrapping_neg()).wrapping_mul(DE_BRUIJN) >> 58) as usize] as usize
}

/// A de Bruijn sequence B(2, 6): every 6-bit pattern appears once among
/// its 64 windows (the top six bits of `DE_BRUIJN << i`).
const DE_BRUIJN: u64 = 0x03f7_9d71_b4cb_0a89;

static DE_BRUIJN_INDEX: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        t[((DE_BRUIJN << i) >> 58) as usize] = i as u8;
        i += 1;
    }
    t
};

/// CPUs as bits of a `u64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuMask(pub u64);

impl CpuMask {
    pub const EMPTY: CpuMask = CpuMask(0);

    /// CPUs `0..n`.
    pub const fn first(n: usize) -> CpuMask {
        if n >= 64 {
            CpuMask(u64::MAX)
        } else {
            CpuMask((1u64 << n) - 1)
        }
    }
    pub const fn single(cpu: usize) -> CpuMask {
        CpuMask(1 << cpu)
    }
    pub const fn contains(self, cpu: usize) -> bool {
        cpu < 64 && self.0 & (1 << cpu) != 0
    }
    pub fn insert(&mut self, cpu: usize) {
        self.0 |= 1 << cpu;
    }
    pub fn remove(&mut self, cpu: usize) {
        self.0 &= !(1 << cpu);
    }
    pub const fn without(self, cpu: usize) -> CpuMask {
        CpuMask(self.0 & !(1 << cpu))
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub const fn count(self) -> usize {
        self.0.count_ones() as usize
    }
    /// The CPU, if the set holds exactly one (without counting its bits:
    /// no count instruction on EV6, see [`lowest_bit`]).
    #[inline]
    pub fn only(self) -> Option<usize> {
        if self.0 != 0 && self.0 & (self.0 - 1) == 0 {
            Some(lowest_bit(self.0))
        } else {
            None
        }
    }
    pub const fn is_subset_of(self, other: CpuMask) -> bool {
        self.0 & !other.0 == 0
    }
    /// CPU numbers in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let cpu = lowest_bit(rest);
            rest &= rest - 1;
            Some(cpu)
        })
    }
}

// Safe arithmetic only (no unsafe, no atomics, no threads): nothing for
// Miri to check that the ordinary test run does not, so Miri skips these
// (xtask's `the_modules_miri_skips_have_nothing_for_it` keeps it so).
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn only_names_the_cpu_of_a_set_of_one() {
        assert_eq!(CpuMask::EMPTY.only(), None);
        for i in 0..64 {
            assert_eq!(CpuMask::single(i).only(), Some(i));
            for j in 0..64 {
                if j != i {
                    assert_eq!(CpuMask(1 << i | 1 << j).only(), None, "{i} {j}");
                }
            }
        }
        assert_eq!(CpuMask(u64::MAX).only(), None);
    }

    #[test]
    fn lowest_bit_agrees_with_trailing_zeros() {
        for i in 0..64 {
            assert_eq!(lowest_bit(1 << i), i);
            assert_eq!(lowest_bit(u64::MAX << i), i);
        }
        // A local xorshift: tests/loom.rs includes this file without
        // crate::rng. Fewer values under Miri.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..if cfg!(miri) { 200 } else { 100_000 } {
            let x = next() & next() & next();
            if x != 0 {
                assert_eq!(lowest_bit(x), x.trailing_zeros() as usize, "{x:#x}");
            }
        }
        // Every table entry is a different position (a true B(2, 6)).
        let mut seen = [false; 64];
        for v in DE_BRUIJN_INDEX {
            assert!(!core::mem::replace(&mut seen[v as usize], true));
        }
    }

    #[test]
    fn set_operations() {
        let mut m = CpuMask::first(3);
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 1, 2]);
        m.remove(1);
        m.insert(5);
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 2, 5]);
        assert!(m.contains(5) && !m.contains(1) && !m.contains(64));
        assert_eq!(m.count(), 3);
        assert!(CpuMask::single(2).is_subset_of(m) && !CpuMask::single(1).is_subset_of(m));
        assert_eq!(CpuMask::first(64), CpuMask(u64::MAX));
        assert!(m.without(0).without(2).without(5).is_empty());
    }
}
