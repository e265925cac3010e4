//! Unit conversion without division: `x * num / den` as a multiply by a
//! 64-bit fixed-point factor and a shift.
//!
//! Alpha has no integer divide instruction: a `u128` division (cycles to
//! nanoseconds) is a call into the compiler's runtime library, about 550
//! instructions per conversion (`cargo xtask profile`, results/profile.md).
//! A [`Scale`] divides once, when it is made; applying it is a 64x64-bit
//! multiply (`mulq` and `umulh`) and a shift.
//!
//! Precision: the factor is `floor(num * 2^shift / den)` with the largest
//! shift that keeps it below 2^64, so it has 64 significant bits. For any
//! `x` below 2^shift (every count a clock reaches: the shift is at least
//! 63 - log2(num/den)), the result is the exact quotient or one less.
//! Applying a scale is monotonic in `x`.

/// `x * num / den`, precomputed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    mult: u64,
    shift: u32,
}

impl Scale {
    /// The scale `num / den`. `num` and `den` must be nonzero.
    pub const fn new(num: u64, den: u64) -> Scale {
        assert!(num != 0 && den != 0);
        let (num, den) = (num as u128, den as u128);
        // The largest shift whose factor fits 64 bits (at most 127 so that
        // `num << shift` stays inside u128 for any 64-bit num).
        let mut shift = 0u32;
        while shift < 127 - (128 - num.leading_zeros()) {
            if (num << (shift + 1)) / den > u64::MAX as u128 {
                break;
            }
            shift += 1;
        }
        Scale {
            mult: ((num << shift) / den) as u64,
            shift,
        }
    }

    /// `x * num / den`, rounded down (or one less; see the module).
    /// Results beyond 64 bits are truncated, as `as u64` would.
    #[inline]
    pub fn apply(self, x: u64) -> u64 {
        ((u128::from(x) * u128::from(self.mult)) >> self.shift) as u64
    }

    /// The factor and the shift (for a caller that keeps them in atomics).
    pub const fn parts(self) -> (u64, u32) {
        (self.mult, self.shift)
    }

    /// A scale from [`Scale::parts`].
    pub const fn from_parts(mult: u64, shift: u32) -> Scale {
        Scale { mult, shift }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift64 as Rng;

    fn exact(x: u64, num: u64, den: u64) -> u128 {
        u128::from(x) * u128::from(num) / u128::from(den)
    }

    #[test]
    // Arithmetic only (no unsafe, no atomics): nothing for Miri to check,
    // and 1.3 to 1.5 s of its run.
    #[cfg_attr(miri, ignore)]
    fn exact_or_one_less_for_clock_ratios() {
        // Cycle counters from QEMU's 250 MHz to a 2 GHz EV79, both ways.
        let freqs = [
            250_000_000u64,
            500_000_000,
            666_666_666,
            833_000_000,
            1_000_000_000,
            1_150_000_000,
            1_333_333_333,
            2_000_000_000,
        ];
        let mut rng = Rng::new(7);
        for f in freqs {
            for (num, den) in [(1_000_000_000, f), (f, 1_000_000_000)] {
                let s = Scale::new(num, den);
                assert!(s.mult >= 1 << 63, "{num}/{den}: factor {:#x}", s.mult);
                // Miri: fewer of each (it runs this about 1000x slower).
                let (small, all) = if cfg!(miri) {
                    (100, 200)
                } else {
                    (1000, 20_000)
                };
                for i in 0..all {
                    // Small counts, then anything up to 2^60 (36 years of
                    // cycles at 1 GHz).
                    let x = if i < small {
                        i
                    } else {
                        rng.next_u64() >> (4 + i % 40)
                    };
                    let want = exact(x, num, den);
                    let got = u128::from(s.apply(x));
                    assert!(
                        got == want || got + 1 == want,
                        "{x} * {num} / {den}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn exact_where_the_ratio_is_a_power_of_two() {
        let s = Scale::new(1_000_000_000, 250_000_000);
        for x in [0u64, 1, 3, 1 << 20, (1 << 61) - 1] {
            assert_eq!(u128::from(s.apply(x)), exact(x, 1_000_000_000, 250_000_000));
        }
    }

    #[test]
    fn monotonic() {
        let s = Scale::new(1_000_000_000, 833_000_000);
        let mut rng = Rng::new(3);
        for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
            let a = rng.next_u64() >> 8;
            let b = a + (rng.next_u64() >> 40);
            assert!(s.apply(a) <= s.apply(b));
        }
    }

    #[test]
    fn parts_round_trip_and_extreme_ratios_build() {
        let s = Scale::new(3, 7);
        let (m, sh) = s.parts();
        assert_eq!(Scale::from_parts(m, sh), s);
        assert_eq!(Scale::new(1, 1).apply(12345), 12345);
        assert_eq!(Scale::new(u64::MAX, 1).apply(1), u64::MAX);
        assert!(Scale::new(1, u64::MAX).apply(u64::MAX) <= 1);
    }
}
