//! Per-CPU IPI mailboxes.
//!
//! Alpha's `wripir` carries no payload and QEMU coalesces IPIs that arrive
//! before PALcode acknowledges the first (docs/qemu.md §3.2), while
//! EV7 may lose them outright (docs/cross-calls.md §1.2). So the reason for an IPI
//! travels in memory, as a word of message bits per CPU, and the interrupt
//! is only a hint to look.
//!
//! Protocol (who sets, who clears, which ordering):
//! - **Senders** (any CPU) set bits in the *target's* word with
//!   `fetch_or(Release)`, then issue the interrupt. The Release orders every
//!   store that describes the request (a queued call, a flush request)
//!   before the bit; the platform's send path issues a full barrier (`mb`)
//!   before `wripir`, as Alpha requires for the interrupt to observe it.
//! - **The owner CPU alone clears**, with `swap(0, Acquire)`, and loops
//!   until the swap returns 0. Acquire pairs with the senders' Release, so
//!   the handler sees every request whose bit it took. A bit set after a
//!   swap is picked up by the next iteration, or by the next drain (an IPI
//!   arriving meanwhile only finds an empty word, which is harmless).
//! - Bits are level, not counted: two posts of the same message before a
//!   drain are handled once. Everything that needs counting (queued calls)
//!   lives in its own queue; the bit only says "look at the queue".

use crate::sync::{AtomicU64, Ordering};

bitflags::bitflags! {
    /// Why a CPU was interrupted.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct IpiMessage: u64 {
        /// Run the call-function queue.
        const CALL_FUNCTION = 1 << 0;
        /// Re-evaluate what to run (no scheduler yet: counted only).
        const RESCHEDULE = 1 << 1;
        /// Stop: the system is panicking or shutting down.
        const CPU_STOP = 1 << 2;
        /// Used by tests to exercise delivery without side effects.
        const PING = 1 << 3;
    }
}

impl IpiMessage {
    /// Number of defined message types (for per-type counters).
    pub const COUNT: usize = 4;

    /// Index of a single-bit message (0 for CALL_FUNCTION, ...).
    pub fn index(self) -> usize {
        crate::cpumask::lowest_bit(self.bits())
    }

    /// Short names, in index order.
    pub const NAMES: [&'static str; Self::COUNT] = ["call", "resched", "stop", "ping"];

    /// Iterates over the single-bit messages set in `self`, lowest first.
    pub fn each(self) -> impl Iterator<Item = IpiMessage> {
        let mut rest = self.bits();
        core::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let low = rest & rest.wrapping_neg();
            rest &= !low;
            Some(IpiMessage::from_bits_retain(low))
        })
    }
}

/// One CPU's mailbox word. Its owner places it (`xcall::CpuState` puts it
/// on the line its senders write, beside the call queue's head).
pub struct Mailbox {
    bits: AtomicU64,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Mailbox {
    pub const fn new() -> Self {
        Mailbox {
            bits: AtomicU64::new(0),
        }
    }

    /// Sender side: sets `msg`. Returns the bits that were already set, so a
    /// caller can tell whether the owner still had this message pending.
    pub fn post(&self, msg: IpiMessage) -> IpiMessage {
        IpiMessage::from_bits_retain(self.bits.fetch_or(msg.bits(), Ordering::Release))
    }

    /// Owner side: takes every pending bit at once.
    pub fn take(&self) -> IpiMessage {
        IpiMessage::from_bits_retain(self.bits.swap(0, Ordering::Acquire))
    }

    /// Looks without taking (diagnostics and the in-interrupt poll's cheap
    /// first check).
    #[inline]
    pub fn peek(&self) -> IpiMessage {
        IpiMessage::from_bits_retain(self.bits.load(Ordering::Acquire))
    }

    /// Owner side: takes bits until the word reads 0, calling `handle` for
    /// each batch. Returns the number of batches. It looks before it takes:
    /// the look that ends a drain is a load, not a swap (an atomic
    /// read-modify-write, which costs far more on every machine and is a
    /// helper call under QEMU). A bit posted just after that look is as
    /// one posted just after a swap that found nothing: its sender's IPI
    /// comes after the post and drains it.
    #[inline(always)]
    pub fn drain(&self, mut handle: impl FnMut(IpiMessage)) -> usize {
        let mut batches = 0;
        loop {
            if self.peek().is_empty() {
                return batches;
            }
            let got = self.take();
            if got.is_empty() {
                return batches;
            }
            batches += 1;
            handle(got);
        }
    }
}

// Not under loom: tests/loom.rs compiles this file with loom's atomics,
// which only work inside a loom model.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    extern crate std;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::vec::Vec;

    #[test]
    fn post_take_peek() {
        let m = Mailbox::new();
        assert!(m.take().is_empty());
        assert_eq!(m.post(IpiMessage::PING), IpiMessage::empty());
        assert_eq!(m.post(IpiMessage::CALL_FUNCTION), IpiMessage::PING);
        assert_eq!(m.peek(), IpiMessage::PING | IpiMessage::CALL_FUNCTION);
        assert_eq!(m.take(), IpiMessage::PING | IpiMessage::CALL_FUNCTION);
        assert!(m.peek().is_empty());
    }

    /// `drain` reports how many batches it took: one per take that found
    /// bits, including messages posted while a batch was being handled.
    #[test]
    fn drain_counts_its_batches() {
        let m = Mailbox::default();
        assert_eq!(m.drain(|_| panic!("nothing posted")), 0);
        m.post(IpiMessage::PING);
        m.post(IpiMessage::CALL_FUNCTION);
        let mut seen = Vec::new();
        assert_eq!(
            m.drain(|b| seen.push(b)),
            1,
            "two posts before the drain are one batch"
        );
        assert_eq!(seen, [IpiMessage::PING | IpiMessage::CALL_FUNCTION]);
        m.post(IpiMessage::PING);
        let mut first = true;
        let batches = m.drain(|_| {
            if core::mem::take(&mut first) {
                m.post(IpiMessage::CPU_STOP); // arrives during the handling
            }
        });
        assert_eq!(batches, 2, "a post during handling makes a second batch");
        assert!(m.peek().is_empty());
    }

    #[test]
    fn each_lists_single_bits_in_order() {
        let all = IpiMessage::all();
        let v: Vec<_> = all.each().collect();
        assert_eq!(
            v,
            [
                IpiMessage::CALL_FUNCTION,
                IpiMessage::RESCHEDULE,
                IpiMessage::CPU_STOP,
                IpiMessage::PING
            ]
        );
        assert_eq!(
            v.iter().map(|m| m.index()).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
    }

    /// Under contention, every post is observed by the owner: each sender
    /// posts a message only after the owner consumed its previous one
    /// (a handshake through a per-sender counter), so a lost post would
    /// stall the sender forever; the test bounds that with a deadline.
    #[test]
    fn no_post_is_lost_under_contention() {
        const SENDERS: usize = 3;
        // Miri interprets every step: fewer rounds there, same protocol.
        const ROUNDS: u64 = if cfg!(miri) { 150 } else { 5_000 };
        let mb = Arc::new(Mailbox::new());
        let acks: Arc<Vec<AtomicU64>> = Arc::new((0..SENDERS).map(|_| AtomicU64::new(0)).collect());
        let requests: Arc<Vec<AtomicU64>> =
            Arc::new((0..SENDERS).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let owner = {
            let (mb, acks, requests, stop) =
                (mb.clone(), acks.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    mb.drain(|got| {
                        assert!(got.contains(IpiMessage::PING));
                        for s in 0..SENDERS {
                            let r = requests[s].load(Ordering::Acquire);
                            acks[s].store(r, Ordering::Release);
                        }
                    });
                    // Yield, not spin: on a loaded host a spinning owner holds
                    // the CPU its senders need (load 18 on 2 cores: 91 s
                    // spinning, 6 s yielding; the same rounds and posts).
                    std::thread::yield_now();
                }
            })
        };
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let (mb, acks, requests) = (mb.clone(), acks.clone(), requests.clone());
                std::thread::spawn(move || {
                    // A hang guard, not a speed check: generous, and more so under Miri.
                    let deadline = std::time::Instant::now()
                        + std::time::Duration::from_secs(if cfg!(miri) { 900 } else { 120 });
                    for round in 1..=ROUNDS {
                        requests[s].store(round, Ordering::Release);
                        mb.post(IpiMessage::PING);
                        while acks[s].load(Ordering::Acquire) < round {
                            assert!(
                                std::time::Instant::now() < deadline,
                                "sender {s} round {round}: post lost"
                            );
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        for t in senders {
            t.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        owner.join().unwrap();
        for s in 0..SENDERS {
            assert_eq!(acks[s].load(Ordering::Relaxed), ROUNDS);
        }
    }
}
