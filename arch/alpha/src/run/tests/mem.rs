//! memcpy, memmove, memset, memcmp, bcmp and strlen (asm/string.S), called
//! directly. The reference results are computed byte by byte with volatile
//! accesses, so the compiler cannot turn the reference into a call to the
//! routine under test.

use core::ptr::{read_volatile, write_volatile};

use alphasmp::rng::XorShift64;
use alphasmp_bootargs::BootConfig;

use crate::run::selftest::Outcome;
use crate::run::selftest::check;
use crate::run::selftest::check_eq;

unsafe extern "Rust" {
    fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8;
    fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
    fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32;
    fn strlen(s: *const u8) -> usize;
}

const BUF: usize = 96;

fn fill(buf: &mut [u8; BUF], rng: &mut XorShift64) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid &mut u8.
        unsafe { write_volatile(b, rng.next_u64() as u8) };
    }
}

fn get(buf: &[u8; BUF], i: usize) -> u8 {
    // SAFETY: index-checked reference into the buffer.
    unsafe { read_volatile(&buf[i]) }
}

pub fn all_lengths_alignments(_: &BootConfig<'_>) -> Outcome {
    let mut rng = XorShift64::new(0x3e3);
    let (mut src, mut dst) = ([0u8; BUF], [0u8; BUF]);
    for len in 0..64 {
        for sa in 0..8 {
            for da in 0..8 {
                fill(&mut src, &mut rng);
                fill(&mut dst, &mut rng);
                let before = dst;
                // SAFETY: sa + len and da + len are below BUF; buffers are distinct.
                let ret = unsafe { memcpy(dst.as_mut_ptr().add(da), src.as_ptr().add(sa), len) };
                check!(
                    ret == dst.as_mut_ptr().wrapping_add(da),
                    "memcpy returned a wrong pointer"
                );
                for i in 0..BUF {
                    let want = if (da..da + len).contains(&i) {
                        get(&src, sa + i - da)
                    } else {
                        get(&before, i)
                    };
                    check_eq!(
                        get(&dst, i),
                        want,
                        "memcpy len {len} src+{sa} dst+{da} byte {i}"
                    );
                }
            }
        }
        for da in 0..8 {
            fill(&mut dst, &mut rng);
            let before = dst;
            let c = (rng.next_u64() as u8) | 0x80; // exercise sign-extension of the int
            // SAFETY: da + len < BUF.
            unsafe { memset(dst.as_mut_ptr().add(da), i32::from(c as i8), len) };
            for i in 0..BUF {
                let want = if (da..da + len).contains(&i) {
                    c
                } else {
                    get(&before, i)
                };
                check_eq!(get(&dst, i), want, "memset len {len} dst+{da} byte {i}");
            }
            // memcmp/bcmp: equal copies, then one differing byte at each place.
            fill(&mut src, &mut rng);
            // SAFETY: in bounds; distinct buffers.
            unsafe { memcpy(dst.as_mut_ptr().add(da), src.as_ptr(), len) };
            // SAFETY: in bounds.
            let eq = unsafe {
                (
                    memcmp(dst.as_ptr().add(da), src.as_ptr(), len),
                    bcmp(dst.as_ptr().add(da), src.as_ptr(), len),
                )
            };
            check_eq!(
                eq,
                (0, 0),
                "memcmp/bcmp of equal {len}-byte ranges at +{da}"
            );
            if len > 0 {
                let at = rng.below(len as u64) as usize;
                let (x, y) = (
                    get(&src, at),
                    get(&src, at).wrapping_add(1 + rng.below(254) as u8),
                );
                // SAFETY: da + at < BUF.
                unsafe { write_volatile(dst.as_mut_ptr().add(da + at), y) };
                // SAFETY: in bounds.
                let (m, b) = unsafe {
                    (
                        memcmp(dst.as_ptr().add(da), src.as_ptr(), len),
                        bcmp(dst.as_ptr().add(da), src.as_ptr(), len),
                    )
                };
                check!(
                    m.signum() == (i32::from(y) - i32::from(x)).signum(),
                    "memcmp sign wrong: len {len} at {at}: {y} vs {x} gave {m}"
                );
                check!(b != 0, "bcmp missed a difference: len {len} at {at}");
            }
        }
    }
    Ok(())
}

pub fn move_overlap(_: &BootConfig<'_>) -> Outcome {
    let mut rng = XorShift64::new(0x40e);
    let mut buf = [0u8; BUF];
    for len in 0..64usize {
        for shift in 1..=9usize {
            for forward in [true, false] {
                fill(&mut buf, &mut rng);
                let before = buf;
                let (src, dst) = if forward {
                    (0usize, shift)
                } else {
                    (shift, 0usize)
                };
                let base = rng.below(8) as usize;
                // SAFETY: base + shift + len < BUF; memmove allows overlap.
                unsafe {
                    memmove(
                        buf.as_mut_ptr().add(base + dst),
                        buf.as_ptr().add(base + src),
                        len,
                    )
                };
                for i in 0..BUF {
                    let in_dst = (base + dst..base + dst + len).contains(&i);
                    let want = if in_dst {
                        get(&before, i - dst + src)
                    } else {
                        get(&before, i)
                    };
                    check_eq!(
                        get(&buf, i),
                        want,
                        "memmove len {len} shift {shift} forward={forward} byte {i}"
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn strlen_every_length(_: &BootConfig<'_>) -> Outcome {
    let mut buf = [b'x'; BUF];
    for start in 0..8 {
        for len in 0..64 {
            buf[start + len] = 0;
            // SAFETY: a NUL lies at start + len, inside the buffer.
            let got = unsafe { strlen(buf.as_ptr().add(start)) };
            buf[start + len] = b'x';
            check_eq!(got, len, "strlen at +{start}");
        }
    }
    Ok(())
}
