//! Returning the machine to a clean state after a run of cross-calls that
//! may have deadlocked: what the experiment does between its cells.
//!
//! # The protocol
//!
//! 1. The caller first makes sure no CPU makes calls any more (every worker
//!    of the run has returned: a waiter that gave up returned too, leaving
//!    its descriptors queued, locked and perhaps unannounced, module docs of
//!    `crate::xcall`).
//! 2. Every CPU runs [`Smp::quiesce_this_cpu`] in task context: with IPIs
//!    masked it takes its mailbox, then its call queue whatever the mailbox
//!    said, and runs each call still there (a call whose waiter gave up, or
//!    whose IPI was lost): so each stranded call runs exactly once, never in
//!    the next run. Nothing here waits for an IPI: the caller reaches every
//!    CPU through its task slot, which the idle loop checks after every
//!    interrupt, the clock's included.
//! 3. The caller then reads [`Smp::leftovers`] for every CPU: anything
//!    still pending (a mailbox bit, a queued call, a descriptor in flight,
//!    the serialization lock held) means a CPU did not come back, and the
//!    caller must not start another run on top of it.
//! 4. Every CPU zeroes its own counters and census with its interrupts
//!    masked, once every CPU has arrived in its task (a [`Meeting`], then
//!    [`Smp::reset_counters_this_cpu`];
//!    [`Smp::reset_counters`] does all of them from one CPU where no CPU
//!    takes interrupts).
//!
//! Orderings: the queue's take is Acquire (it reads what the callers
//! published), each descriptor's unlock Release (the owner's next reserve
//! reads it with Acquire); `leftovers` reads with Acquire, after the
//! caller collected every CPU's step 2 through its task slot (Release on
//! the slot's DONE, Acquire on the collect), so it sees every unlock.

use crate::cpumask::CpuMask;
use crate::mailbox::IpiMessage;
use crate::sync::{AtomicU64, Ordering};
use crate::xcall::{Hooks, Smp};

/// Step 4's meeting: every expected CPU arrives (in its task) and waits
/// until all have, within a time bound; each then resets its own counters
/// with its interrupts masked.
///
/// Protocol: the caller [`open`](Self::open)s it with the CPUs expected,
/// before any of them can arrive (it is the one that then sends them
/// their tasks). Each CPU sets its own bit in `arrived` once (SeqCst) and
/// reads `arrived` (SeqCst), calling the caller's `relax` between looks
/// (which may sleep until an interrupt: the kernel waits with interrupts
/// on, so that an emulator running one CPU at a time runs the others
/// meanwhile), until every
/// expected bit is there or the bound passes. SeqCst orders every CPU's
/// arrival before any CPU's reset that saw it: no CPU zeroes its census
/// while another may still be making a counted request. A CPU that gives
/// up returns the CPUs it was still waiting for; one that arrives after
/// the others gave up finds them all and returns none, so the caller must
/// look at every CPU's answer.
pub struct Meeting {
    arrived: AtomicU64,
    expected: AtomicU64,
}

impl Meeting {
    pub const fn new() -> Self {
        Meeting {
            arrived: AtomicU64::new(0),
            expected: AtomicU64::new(0),
        }
    }

    /// Before the CPUs are sent to it: who is expected, nobody arrived.
    pub fn open(&self, expected: CpuMask) {
        self.arrived.store(0, Ordering::Relaxed);
        self.expected.store(expected.0, Ordering::Relaxed);
    }

    /// `me` arrives and waits, calling `relax` between looks, until every
    /// expected CPU has arrived (returns the empty mask) or `now()` has
    /// moved `bound` past its first reading (returns the CPUs still
    /// missing).
    pub fn arrive_and_wait(
        &self,
        me: usize,
        now: impl Fn() -> u64,
        bound: u64,
        relax: impl Fn(),
    ) -> CpuMask {
        self.arrived.fetch_or(1 << me, Ordering::SeqCst);
        let expected = self.expected.load(Ordering::Relaxed);
        let start = now();
        loop {
            let missing = expected & !self.arrived.load(Ordering::SeqCst);
            if missing == 0 || now().wrapping_sub(start) > bound {
                return CpuMask(missing);
            }
            relax();
        }
    }
}

impl Default for Meeting {
    fn default() -> Self {
        Self::new()
    }
}

/// What a CPU still has pending after a run (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leftovers {
    /// Its mailbox bits.
    pub mailbox: IpiMessage,
    /// Calls sit in its queue.
    pub queued: bool,
    /// Its own descriptors still locked (calls it made that no target has
    /// run yet).
    pub in_flight: u32,
    /// The serialization lock is held (by anyone).
    pub serial_held: bool,
}

impl Leftovers {
    pub fn is_clean(&self) -> bool {
        self.mailbox.is_empty() && !self.queued && self.in_flight == 0 && !self.serial_held
    }
}

impl<P: Hooks, const N: usize> Smp<P, N> {
    /// Step 2 of the module protocol, on the calling CPU: runs every call
    /// left in its mailbox and queue; returns how many calls it ran.
    pub fn quiesce_this_cpu(&self) -> u64 {
        let me = self.platform.cpu_id();
        let st = self.cpu(me);
        let prev = self.platform.raise_ipl(self.platform.ipi_ipl());
        let before = st.stats.calls_run.load(Ordering::Relaxed);
        self.recovery_drain();
        // A queue with no CALL bit would break the "non-empty queue has an
        // interrupt owed" invariant; run it anyway, so that even then no
        // call leaks into the next run.
        if st.call_pending() {
            self.drain_queue_only(me);
        }
        self.platform.restore_ipl(prev);
        st.stats.calls_run.load(Ordering::Relaxed) - before
    }

    /// Step 3: what `cpu` still has pending.
    pub fn leftovers(&self, cpu: usize) -> Leftovers {
        let st = self.cpu(cpu);
        let locked = |d: &crate::queue::Csd| u32::from(d.locked());
        Leftovers {
            mailbox: st.mailbox.peek(),
            queued: st.call_pending(),
            in_flight: st.cfd.iter().chain(&st.cfd_irq).map(locked).sum(),
            serial_held: self.serial_held(),
        }
    }

    /// Step 4 on the calling CPU: zeroes its counters and its census, with
    /// its interrupts masked. Where CPUs take interrupts (the kernel) this
    /// is how step 4 is done, on every CPU through its task slot: the
    /// census's judging marks are the CPU's own, written by its clock and
    /// IPI interrupts as a load and a store, so a reset from another CPU
    /// can fall inside a judgement, which then stores a mark it read before
    /// the reset (seen on QEMU: a CPU's `judged` at 8 after the reset, over
    /// the next cell's 2 requests, which no interrupt then counted: the
    /// cell ended with census_open=2). The census also needs no request to
    /// this CPU half made (numbered, not yet issued) at the reset; the
    /// task's own IPI is one, so the caller first has every CPU in its
    /// task at a masked IPL, its requests all made (the experiment's
    /// `reset_counters`).
    pub fn reset_counters_this_cpu(&self) {
        let prev = self.platform.raise_ipl(crate::platform::ipl::HIGH);
        self.cpu(self.platform.cpu_id()).reset_counters();
        self.platform.restore_ipl(prev);
    }

    /// Step 4 for every CPU at once, from one CPU: only for a machine whose
    /// CPUs take no interrupts meanwhile (the simulator between runs: its
    /// CPU threads have ended); see
    /// [`reset_counters_this_cpu`](Self::reset_counters_this_cpu).
    pub fn reset_counters(&self) {
        for cpu in 0..N {
            self.cpu(cpu).reset_counters();
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::atomic::AtomicU64 as Clock;
    use std::vec::Vec;

    /// A clock that moves one tick per reading: bounds are counted in
    /// looks, the same on any host and under Miri.
    fn ticking(c: &Clock) -> impl Fn() -> u64 + '_ {
        move || c.fetch_add(1, Ordering::Relaxed)
    }

    fn meet(m: &'static Meeting, cpus: &[usize], bound: u64) -> Vec<CpuMask> {
        let handles: Vec<_> = cpus
            .iter()
            .map(|&me| {
                std::thread::spawn(move || {
                    let clock = Clock::new(0);
                    m.arrive_and_wait(me, ticking(&clock), bound, std::thread::yield_now)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn every_expected_cpu_meets_the_others() {
        static M: Meeting = Meeting::new();
        M.open(CpuMask(0b111));
        // A bound far beyond any wait here: only the meeting ends it.
        assert_eq!(meet(&M, &[0, 1, 2], u64::MAX), [CpuMask::EMPTY; 3]);
    }

    /// CPUs arriving one after another, each giving up before the next
    /// comes: each names exactly the CPUs not yet there, CPU 2 (which
    /// never comes) to the last.
    #[test]
    fn a_cpu_that_gives_up_names_the_cpus_not_there() {
        static M: Meeting = Meeting::new();
        M.open(CpuMask(0b1111));
        assert_eq!(meet(&M, &[0], 200), [CpuMask(0b1110)]);
        assert_eq!(meet(&M, &[1], 200), [CpuMask(0b1100)]);
        assert_eq!(meet(&M, &[3], 200), [CpuMask(0b100)]);
    }

    #[test]
    fn a_cpu_that_comes_after_the_others_gave_up_finds_them_all() {
        static M: Meeting = Meeting::new();
        M.open(CpuMask(0b11));
        assert_eq!(meet(&M, &[0], 50), [CpuMask(0b10)]);
        assert_eq!(meet(&M, &[1], 50), [CpuMask::EMPTY]);
        // Opened again, nobody has arrived.
        M.open(CpuMask(0b11));
        assert_eq!(meet(&M, &[1], 50), [CpuMask(0b1)]);
    }
}
