//! GCC's division routines (asm/divide.S), reached through ordinary Rust `/`
//! and `%`. Operands pass through `black_box` so nothing is constant-folded.
//! Random pairs are checked against the defining identity n = q*d + r with
//! the remainder's range and sign, computed with multiplication only, so the
//! check is independent of the code under test.

use core::hint::black_box as bb;

use alphasmp::rng::XorShift64;
use alphasmp_bootargs::BootConfig;

use crate::run::selftest::Outcome;
use crate::run::selftest::check;
use crate::run::selftest::check_eq;

pub fn u64_edges(_: &BootConfig<'_>) -> Outcome {
    const M: u64 = u64::MAX;
    const H: u64 = 1 << 63;
    let cases: &[(u64, u64, u64, u64)] = &[
        (0, 1, 0, 0),
        (1, 1, 1, 0),
        (0, M, 0, 0),
        (M, 1, M, 0),
        (M, M, 1, 0),
        (M - 1, M, 0, M - 1),
        (M, 2, M >> 1, 1),
        (H, 3, 3_074_457_345_618_258_602, 2),
        (M, H, 1, H - 1),
        (H, H + 1, 0, H),
        (M, 0xffff_ffff, 0x1_0000_0001, 0),
        (100, 10, 10, 0),
        (5, 7, 0, 5),
        (
            1_000_000_007 * 998_244_353 + 12345,
            1_000_000_007,
            998_244_353,
            12345,
        ),
    ];
    for &(n, d, q, r) in cases {
        check_eq!(bb(n) / bb(d), q, "{n} / {d}");
        check_eq!(bb(n) % bb(d), r, "{n} % {d}");
    }
    check!(
        bb(7u64).checked_div(bb(0)).is_none(),
        "7 / 0 must be refused"
    );
    Ok(())
}

pub fn i64_edges(_: &BootConfig<'_>) -> Outcome {
    const MIN: i64 = i64::MIN;
    const MAX: i64 = i64::MAX;
    let cases: &[(i64, i64, i64, i64)] = &[
        (MIN, 1, MIN, 0),
        (MIN, MIN, 1, 0),
        (MAX, MIN, 0, MAX),
        (MIN, MAX, -1, -1),
        (MIN, 2, MIN / 2, 0),
        (MIN, 3, -3_074_457_345_618_258_602, -2),
        (-7, 2, -3, -1),
        (7, -2, -3, 1),
        (-7, -2, 3, -1),
        (-1, MAX, 0, -1),
        (0, -5, 0, 0),
        (MAX, -1, -MAX, 0),
    ];
    for &(n, d, q, r) in cases {
        check_eq!(bb(n) / bb(d), q, "{n} / {d}");
        check_eq!(bb(n) % bb(d), r, "{n} % {d}");
    }
    check_eq!(bb(MIN).wrapping_div(bb(-1)), MIN, "MIN wrapping_div -1");
    check_eq!(bb(MIN).wrapping_rem(bb(-1)), 0, "MIN wrapping_rem -1");
    check!(
        bb(MIN).checked_div(bb(-1)).is_none(),
        "MIN / -1 must be refused"
    );
    check!(
        bb(-3i64).checked_rem(bb(0)).is_none(),
        "-3 % 0 must be refused"
    );
    Ok(())
}

pub fn narrow_edges(_: &BootConfig<'_>) -> Outcome {
    let u: &[(u32, u32, u32, u32)] = &[
        (u32::MAX, 1, u32::MAX, 0),
        (u32::MAX, u32::MAX, 1, 0),
        (u32::MAX, 2, u32::MAX >> 1, 1),
        (0x8000_0000, 3, 715_827_882, 2),
        (7, 3, 2, 1),
        (0, 9, 0, 0),
    ];
    for &(n, d, q, r) in u {
        check_eq!(bb(n) / bb(d), q, "u32 {n} / {d}");
        check_eq!(bb(n) % bb(d), r, "u32 {n} % {d}");
    }
    let s: &[(i32, i32, i32, i32)] = &[
        (i32::MIN, 1, i32::MIN, 0),
        (i32::MIN, i32::MAX, -1, -1),
        (-7, 2, -3, -1),
        (7, -2, -3, 1),
        (-7, -2, 3, -1),
        (i32::MAX, -1, -i32::MAX, 0),
    ];
    for &(n, d, q, r) in s {
        check_eq!(bb(n) / bb(d), q, "i32 {n} / {d}");
        check_eq!(bb(n) % bb(d), r, "i32 {n} % {d}");
    }
    check_eq!(
        bb(i32::MIN).wrapping_div(bb(-1)),
        i32::MIN,
        "i32 MIN wrapping_div -1"
    );
    Ok(())
}

/// Pairs checked per type.
const PAIRS: usize = 3000;

pub fn random_pairs(_: &BootConfig<'_>) -> Outcome {
    let mut rng = XorShift64::new(0xa1fa_0dd5);
    for _ in 0..PAIRS {
        let (n, d) = (rng.next_spread(), rng.next_spread().max(1));
        let (q, r) = (bb(n) / bb(d), bb(n) % bb(d));
        check!(
            r < d && q.checked_mul(d).and_then(|x| x.checked_add(r)) == Some(n),
            "u64 {n} / {d} gave q={q} r={r}"
        );

        let (n, d) = (rng.next_spread() as i64, rng.next_spread() as i64);
        let (n, d) = (
            if rng.next_u64() & 1 == 1 {
                n.wrapping_neg()
            } else {
                n
            },
            if d == 0 { -3 } else { d },
        );
        let (n, d) = if n == i64::MIN && d == -1 {
            (n, 1)
        } else {
            (n, d)
        };
        let (q, r) = (bb(n) / bb(d), bb(n) % bb(d));
        let identity = i128::from(q) * i128::from(d) + i128::from(r) == i128::from(n);
        let range = r.unsigned_abs() < d.unsigned_abs() && (r == 0 || (r < 0) == (n < 0));
        check!(identity && range, "i64 {n} / {d} gave q={q} r={r}");

        let (n, d) = (rng.next_spread() as u32, (rng.next_spread() as u32).max(1));
        let (q, r) = (bb(n) / bb(d), bb(n) % bb(d));
        check!(
            r < d && u64::from(q) * u64::from(d) + u64::from(r) == u64::from(n),
            "u32 {n} / {d} gave q={q} r={r}"
        );

        let (n, d) = (
            rng.next_u64() as i32 >> (rng.next_u64() % 32),
            (rng.next_spread() as i32) | 1,
        );
        let (n, d) = if n == i32::MIN && d == -1 {
            (n, 1)
        } else {
            (n, d)
        };
        let (q, r) = (bb(n) / bb(d), bb(n) % bb(d));
        let identity = i64::from(q) * i64::from(d) + i64::from(r) == i64::from(n);
        let range = r.unsigned_abs() < d.unsigned_abs() && (r == 0 || (r < 0) == (n < 0));
        check!(identity && range, "i32 {n} / {d} gave q={q} r={r}");
    }
    Ok(())
}

unsafe extern "Rust" {
    fn divqu_probe(n: u64, d: u64, sentinel: u64, quotient: *mut u64) -> u64;
}

/// When a divide-by-zero GENTRAP returns (a handler that resumes), the
/// routine must give the caller back its `$16` and a defined result
/// (quotient 0), not the trap code -2 and a quotient from dividing by zero.
pub fn zero_divisor(_: &BootConfig<'_>) -> Outcome {
    use crate::trap::{INTDIV_RESUMED, RESUME_INTDIV};
    use core::sync::atomic::Ordering;
    let before = INTDIV_RESUMED.load(Ordering::Relaxed);
    RESUME_INTDIV.store(1, Ordering::Release);
    let mut q = 0xdead_beef;
    // SAFETY: the probe calls __divqu with GCC's convention and writes the
    // quotient through a pointer to a live local.
    let a0 = unsafe { divqu_probe(bb(7), bb(0), 0xfeed, &mut q) };
    RESUME_INTDIV.store(0, Ordering::Release);
    check_eq!(
        INTDIV_RESUMED.load(Ordering::Relaxed) - before,
        1,
        "divide-by-zero traps taken and resumed"
    );
    check_eq!(a0, 0xfeed, "$16 after the trap returned");
    check_eq!(q, 0, "quotient of 7 / 0 after the trap returned");
    // SAFETY: as above, with a non-zero divisor (no trap).
    let a0 = unsafe { divqu_probe(bb(7), bb(2), 0xbeef, &mut q) };
    check_eq!((a0, q), (0xbeef, 3), "the probe itself: 7 / 2 keeps $16");
    Ok(())
}
