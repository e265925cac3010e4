//! A small deterministic pseudo-random generator (xorshift64*) for self-tests
//! and simulations: the same seed gives the same sequence on the host and on
//! Alpha, so a failing case can be replayed.

/// xorshift64* (Vigna, 2016). Not for anything but tests.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from `seed`; a zero seed is replaced (zero is a fixed point).
    pub const fn new(seed: u64) -> Self {
        XorShift64(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value whose magnitude is spread over all bit widths: uniform bits
    /// shifted right by a random amount, so small and large values are both
    /// common (useful for division tests).
    pub fn next_spread(&mut self) -> u64 {
        let bits = self.next_u64();
        bits >> (self.next_u64() % 64)
    }

    /// A value below `bound` (which must not be 0), without division
    /// (Lemire's multiply-shift; slightly biased, fine for tests).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_nonzero() {
        let mut a = XorShift64::new(42);
        let mut b = XorShift64::new(42);
        for _ in 0..1000 {
            let x = a.next_u64();
            assert_eq!(x, b.next_u64());
        }
        let mut z = XorShift64::new(0);
        assert_ne!(z.next_u64(), 0);
    }

    #[test]
    // Arithmetic only (no unsafe, no atomics): nothing for Miri to check,
    // and 1.3 to 1.5 s of its run.
    #[cfg_attr(miri, ignore)]
    fn below_stays_in_range_and_spread_covers_widths() {
        let mut r = XorShift64::new(7);
        let mut widths = [false; 65];
        for _ in 0..if cfg!(miri) { 4_000 } else { 20_000 } {
            assert!(r.below(10) < 10);
            widths[64 - r.next_spread().leading_zeros() as usize] = true;
        }
        assert!(widths.iter().filter(|w| **w).count() > 50);
    }
}
