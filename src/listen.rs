//! Listening CPUs: a CPU that spins where it could take IPIs (a call
//! waiter at IPL 0, an idle CPU halt polling) looks at its own mailbox as
//! it spins, so a sender that finds it listening posts the message and
//! issues no interrupt. On QEMU an IPI costs the sender a PALcode call and
//! the target an interrupt entry and `rti`; between two CPUs that call each
//! other (the storm), or a flush to a polling idle CPU, the message alone
//! is enough. The same idea as Linux's polling idle CPUs
//! (`TIF_POLLING_NRFLAG`), here also for waiters.
//!
//! # Protocol
//!
//! One flag per CPU, `listening[cpu]`, written only by that CPU.
//!
//! - The CPU **stores** `true` ([`Listening::start`], Relaxed) where it
//!   could take an IPI (its IPL below the IPI level), then looks at its
//!   mailbox as it spins and handles what it finds (`Smp::hear`, with IPIs
//!   masked, as the interrupt would).
//! - To stop (before it naps, sleeps, or leaves the wait) it **stores**
//!   `false`, issues a SeqCst fence ([`Listening::stop`]), and then looks
//!   at its mailbox once more.
//! - A sender **posts** the message bits, issues a SeqCst fence and
//!   **loads** the flag ([`Listening::elide`]); only if it reads `false`
//!   does it issue the interrupt.
//!
//! The stop and the send are a store-buffering (Dekker) pair: with the two
//! fences, either the CPU's last look sees the message or the sender sees
//! the flag cleared and interrupts it. A sender that read `true` therefore
//! always has its message heard: by a look while listening, or by the look
//! after the stop. A CPU that listens is never napping or asleep (it stops
//! first), and a lost flag read costs at worst one IPI. The start needs no
//! fence: a sender that reads the old `false` sends the interrupt, as it
//! would without listening.
//!
//! Off under fault injection and in the experiment (`Policy::listen`):
//! those count and lose interrupts on purpose, and a message heard without
//! one would hide what they measure. The census counts heard requests
//! apart (`crate::census`).
//!
//! tests/loom.rs checks that a sender that skips the interrupt is always
//! heard, and that removing either fence loses a message.

use crate::line::Line;
use crate::sync::{AtomicBool, Ordering, fence};

/// The loom tests' mutants: 1 removes the stop's fence, 2 the sender's
/// (0: none).
#[cfg(loom)]
pub static MUTANT_NO_FENCE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

#[inline(always)]
fn full_fence(_which: u8) {
    #[cfg(loom)]
    if MUTANT_NO_FENCE.load(core::sync::atomic::Ordering::Relaxed) == _which {
        return;
    }
    fence(Ordering::SeqCst);
}

/// The listening flags of `N` CPUs.
pub struct Listening<const N: usize> {
    /// One line each (`crate::line`): a CPU writes its own flag around
    /// every wait, and every sender to it reads it.
    flags: [Line<AtomicBool>; N],
}

impl<const N: usize> Default for Listening<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Listening<N> {
    pub const fn new() -> Self {
        Listening {
            flags: [const { Line::new(AtomicBool::new(false)) }; N],
        }
    }

    /// `cpu` starts listening: from now on it looks at its mailbox as it
    /// spins, until [`stop`](Self::stop).
    #[inline(always)]
    pub fn start(&self, cpu: usize) {
        self.flags[cpu].store(true, Ordering::Relaxed);
    }

    /// `cpu` stops listening. The caller must look at its mailbox after
    /// this returns (a sender may have skipped the interrupt just before).
    #[inline(always)]
    pub fn stop(&self, cpu: usize) {
        self.flags[cpu].store(false, Ordering::Relaxed);
        full_fence(1);
    }

    /// A sender, after posting its message to `cpu`: whether `cpu` listens,
    /// so that it will hear the message without an interrupt.
    #[inline(always)]
    pub fn elide(&self, cpu: usize) -> bool {
        full_fence(2);
        self.flags[cpu].load(Ordering::Relaxed)
    }

    /// Whether `cpu` listens now (a hint: diagnostics and tests).
    #[inline(always)]
    pub fn is_listening(&self, cpu: usize) -> bool {
        self.flags[cpu].load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_sender_elides_only_while_the_cpu_listens() {
        let l = Listening::<4>::new();
        assert!(!l.elide(2), "nobody listens at first");
        l.start(2);
        assert!(l.elide(2));
        assert!(!l.elide(1), "only the CPU that listens");
        assert!(l.is_listening(2));
        l.stop(2);
        assert!(!l.elide(2), "stopped");
    }
}
