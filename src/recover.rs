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
//!    masked, once every CPU is in its task at a masked IPL
//!    ([`Smp::reset_counters_this_cpu`]; [`Smp::reset_counters`] does all
//!    of them from one CPU where no CPU takes interrupts).
//!
//! Orderings: the queue's take is Acquire (it reads what the callers
//! published), each descriptor's unlock Release (the owner's next reserve
//! reads it with Acquire); `leftovers` reads with Acquire, after the
//! caller collected every CPU's step 2 through its task slot (Release on
//! the slot's DONE, Acquire on the collect), so it sees every unlock.

use crate::mailbox::IpiMessage;
use crate::sync::Ordering;
use crate::xcall::{Hooks, Smp};

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
        let st = self.cpu(self.platform.cpu_id());
        st.stats.reset();
        st.census.reset();
        self.platform.restore_ipl(prev);
    }

    /// Step 4 for every CPU at once, from one CPU: only for a machine whose
    /// CPUs take no interrupts meanwhile (the simulator between runs: its
    /// CPU threads have ended); see
    /// [`reset_counters_this_cpu`](Self::reset_counters_this_cpu).
    pub fn reset_counters(&self) {
        for cpu in 0..N {
            self.cpu(cpu).stats.reset();
            self.cpu(cpu).census.reset();
        }
    }
}
