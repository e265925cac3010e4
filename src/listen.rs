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
//! One word per CPU, `state[cpu]`, written only by that CPU: `OFF`,
//! `LISTENING` or `STOPPING`.
//!
//! - The CPU **stores** `LISTENING` ([`Listening::start`], Relaxed) where
//!   it could take an IPI (its IPL below the IPI level), then looks at its
//!   mailbox as it spins and handles what it finds (`Smp::hear`, with IPIs
//!   masked, as the interrupt would).
//! - To stop (before it naps, sleeps, or leaves the wait) it **stores**
//!   `STOPPING`, issues a SeqCst fence ([`Listening::stop`]), looks at its
//!   mailbox once more, and then **stores** `OFF` ([`Listening::stopped`]).
//! - A sender **posts** the message bits, issues a SeqCst fence and
//!   **loads** the word ([`Listening::elide`]); only if it reads
//!   `LISTENING` does it skip the interrupt.
//!
//! The stop and the send are a store-buffering (Dekker) pair: with the two
//! fences, either the CPU's last look sees the message or the sender sees
//! the word no longer `LISTENING` and interrupts it. A sender that skipped
//! the interrupt therefore always has its message heard: by a look while
//! listening, or by the look after the stop. A CPU that listens is never
//! napping or asleep (it stops first), and a lost read costs at worst one
//! IPI. The start needs no fence: a sender that reads the old `OFF` sends
//! the interrupt, as it would without listening.
//!
//! **Interrupts in the stop.** An interrupt on the stopping CPU itself (its
//! IPL is below the IPI level throughout) may take the message before the
//! last look does: the IPI handler's drain, or the poll after any other
//! interrupt. Such a take must count as heard, not as the rescue of a lost
//! IPI, or the census would report an IPI lost that was never sent
//! (`crate::census`, "Heard"). So the word says `STOPPING`, not `OFF`, until
//! the look is done: [`Listening::hears`] (the CPU's own interrupts ask it)
//! is true for `LISTENING` and `STOPPING`. The CPU's own interrupts see its
//! stores in program order; a compiler fence keeps the `OFF` store after
//! the look. (The stop used to raise the IPL to the IPI level instead, so
//! that no interrupt could come in between: each IPL change is a PAL call
//! that ends QEMU's translated block, and the two of them cost a busy
//! `call_single(wait)` about a tenth of its time, README "Speed".)
//!
//! Off under fault injection and in the experiment (`Policy::listen`):
//! those count and lose interrupts on purpose, and a message heard without
//! one would hide what they measure. The census counts heard requests
//! apart (`crate::census`).
//!
//! tests/loom.rs checks that a sender that skips the interrupt is always
//! heard, and that removing either fence loses a message;
//! tests/xcall_sim.rs (`an_interrupt_inside_the_stop_counts_the_call_heard`)
//! that an interrupt inside the stop counts the message heard.

use crate::line::Line;
use crate::sync::{AtomicU32, Ordering, fence};

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

/// Not listening.
const OFF: u32 = 0;
/// Listening: a sender may skip the interrupt.
const LISTENING: u32 = 1;
/// Stopping: senders interrupt again, and the CPU's last look is still to
/// come.
const STOPPING: u32 = 2;

/// The listening states of `N` CPUs.
pub struct Listening<const N: usize> {
    /// One line each (`crate::line`): a CPU writes its own word around
    /// every wait, and every sender to it reads it.
    state: [Line<AtomicU32>; N],
}

impl<const N: usize> Default for Listening<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Listening<N> {
    pub const fn new() -> Self {
        Listening {
            state: [const { Line::new(AtomicU32::new(OFF)) }; N],
        }
    }

    /// `cpu` starts listening: from now on it looks at its mailbox as it
    /// spins, until [`stop`](Self::stop).
    #[inline(always)]
    pub fn start(&self, cpu: usize) {
        self.state[cpu].store(LISTENING, Ordering::Relaxed);
    }

    /// `cpu` stops listening. The caller must look at its mailbox after
    /// this returns (a sender may have skipped the interrupt just before),
    /// and then call [`stopped`](Self::stopped).
    #[inline(always)]
    pub fn stop(&self, cpu: usize) {
        self.state[cpu].store(STOPPING, Ordering::Relaxed);
        full_fence(1);
    }

    /// `cpu`'s look after [`stop`](Self::stop) is done.
    #[inline(always)]
    pub fn stopped(&self, cpu: usize) {
        // After the look, as this CPU's own interrupts see it (they ask
        // `hears`); no other CPU's order matters here, since senders treat
        // `STOPPING` and `OFF` alike.
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        self.state[cpu].store(OFF, Ordering::Relaxed);
    }

    /// A sender, after posting its message to `cpu`: whether `cpu` listens,
    /// so that it will hear the message without an interrupt.
    #[inline(always)]
    pub fn elide(&self, cpu: usize) -> bool {
        full_fence(2);
        self.state[cpu].load(Ordering::Relaxed) == LISTENING
    }

    /// Whether `cpu` listens now (a hint: diagnostics and tests; the CPU
    /// itself, to know whether it has started).
    #[inline(always)]
    pub fn is_listening(&self, cpu: usize) -> bool {
        self.state[cpu].load(Ordering::Relaxed) == LISTENING
    }

    /// Asked by `cpu` itself, in an interrupt or a drain: whether a message
    /// it takes now may be one whose sender skipped the interrupt (it
    /// listens, or stops and has not yet looked). Such a take is heard, not
    /// a rescue.
    #[inline(always)]
    pub fn hears(&self, cpu: usize) -> bool {
        self.state[cpu].load(Ordering::Relaxed) != OFF
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
        assert!(!l.elide(2), "stopping: senders interrupt again");
        assert!(!l.is_listening(2));
        assert!(l.hears(2), "its own interrupts still hear until the look");
        l.stopped(2);
        assert!(!l.elide(2), "stopped");
        assert!(!l.hears(2), "stopped");
    }
}
