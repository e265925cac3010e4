//! A set of CPU numbers (0..64) in one word.

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
            let cpu = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            Some(cpu)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

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
