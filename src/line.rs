//! Cache-line placement.
//!
//! A word that one CPU writes often must not share a cache line with words
//! other CPUs use often: each write takes the whole line from every other
//! cache that holds it, and their next use brings it back. On a real
//! machine that is a coherence transaction on the system bus (EV6) or the
//! torus (EV7); under QEMU's multi-threaded TCG the guest's memory is the
//! host's, so the same happens between the host cores that run the vCPUs,
//! and it is what most of a cross-call's time goes to there
//! (docs/cross-calls.md, "Cache lines").
//!
//! [`Line`] puts a value alone at the start of a line. The line is 64
//! bytes on EV6, EV67/68 and EV7 (their cache blocks) and on the x86-64
//! hosts that run QEMU.

use core::ops::Deref;

/// The cache line size this crate lays its per-CPU state out for.
pub const LINE: usize = 64;

/// `T` at the start of its own cache line, padded to a whole number of
/// lines.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Line<T>(pub T);

impl<T> Line<T> {
    pub const fn new(value: T) -> Self {
        Line(value)
    }
}

impl<T> Deref for Line<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

// The attribute and the constant must agree.
const _: () = assert!(core::mem::align_of::<Line<u8>>() == LINE);
