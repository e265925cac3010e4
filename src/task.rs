//! Running a function on a chosen CPU in task context (Linux's
//! `smp_call_on_cpu`): not inside an interrupt handler, so the function may
//! itself wait for cross-calls. Each CPU has one [`TaskSlot`]; any CPU may
//! post to it, one at a time, and the CPU runs what was posted from its
//! idle loop ([`Smp::run_posted_task`]) after the PING that announces it.
//!
//! # The slot protocol
//!
//! `state` moves through:
//!
//! ```text
//!  FREE --claim (poster, CAS, Acquire)--> CLAIMED
//!  CLAIMED --post (poster: func, ctx Relaxed; then Release)--> POSTED
//!  POSTED --take (target, CAS, Acquire)--> RUNNING
//!  POSTED --withdraw (poster timed out, CAS)--> FREE
//!  RUNNING --finish (target: result Relaxed; then CAS, Release)--> DONE
//!  RUNNING --abandon (poster timed out, CAS)--> ABANDONED
//!  DONE --collect (poster: Acquire, reads result; then Release)--> FREE
//!  ABANDONED --finish (target finds it abandoned; Release)--> FREE
//! ```
//!
//! - Only the poster that claimed the slot (its `owner`) posts, withdraws,
//!   collects or abandons; only the slot's CPU takes and finishes. So the
//!   result a poster collects is always its own function's, whatever other
//!   posters wait to claim the slot meanwhile.
//! - The Release of `post` publishes `func` and `ctx` to the Acquire of
//!   `take`; the Release of `finish` publishes `result` to the Acquire of
//!   the poster's collect; the Release back to FREE orders the owner's
//!   last reads before the next claim.
//! - A withdrawn function never runs (the CAS from POSTED fails once the
//!   target took it); an abandoned one runs to its end and its CPU frees
//!   the slot, so the slot is never lost.
//! - Waiting (a poster for its result, or for a free slot) may nap under
//!   the `nap` policy: a waiter sets its bit in `waiters` (SeqCst) before
//!   it re-checks; whoever moves the slot to DONE or FREE fences (SeqCst)
//!   after that store and wakes every listed napper (the nap protocol of
//!   `crate::xcall`).

use crate::cpumask::CpuMask;
use crate::mailbox::IpiMessage;
use crate::sync::{Ordering, fence};
use crate::taskslot::{ABANDONED, CLAIMED, DONE, FREE, POSTED, RUNNING};
pub use crate::taskslot::{TaskError, TaskFn, TaskSlot};
use crate::xcall::{Hooks, Smp};

impl<P: Hooks, const N: usize> Smp<P, N> {
    fn slot(&self, cpu: usize) -> &TaskSlot {
        &self.cpu(cpu).task
    }

    /// Waits (spinning or napping) until `done()`, listed among `cpu`'s
    /// slot waiters; false if `bound` cycles passed first.
    fn wait_on_slot(&self, cpu: usize, since: u64, bound: u64, done: impl Fn() -> bool) -> bool {
        let me = self.platform.cpu_id();
        let slot = self.slot(cpu);
        slot.waiters.fetch_or(1 << me, Ordering::SeqCst);
        let ok = loop {
            if done() {
                break true;
            }
            if self.platform.cycles().wrapping_sub(since) > bound {
                break done();
            }
            self.pause(since, &done);
        };
        slot.waiters.fetch_and(!(1 << me), Ordering::Relaxed);
        ok
    }

    /// After a Release store that ends waits on `cpu`'s slot: wakes the
    /// napping waiters.
    fn wake_slot_waiters(&self, cpu: usize) {
        fence(Ordering::SeqCst);
        for w in CpuMask(self.slot(cpu).waiters.load(Ordering::Relaxed)).iter() {
            self.wake_if_napping(w);
        }
    }

    /// Posts `f(cpu, ctx)` to `cpu`'s task slot and PINGs it, waiting at
    /// most `bound` cycles (from `since`) for the slot to be free. The
    /// caller must then [`collect_task`](Self::collect_task) it.
    pub fn post_task(
        &self,
        cpu: usize,
        f: TaskFn,
        ctx: usize,
        since: u64,
        bound: u64,
    ) -> Result<(), TaskError> {
        if cpu >= N || !self.online().contains(cpu) {
            return Err(TaskError::NoSuchCpu(cpu));
        }
        let me = self.platform.cpu_id();
        let slot = self.slot(cpu);
        // The wait's condition claims the slot; it may be asked again after
        // it succeeded (the nap re-checks it), so it remembers.
        let claimed = core::cell::Cell::new(false);
        let claim = || {
            claimed.get()
                || (slot.state.load(Ordering::Relaxed) == FREE
                    && slot
                        .state
                        .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    && {
                        claimed.set(true);
                        true
                    })
        };
        if !claim() && !self.wait_on_slot(cpu, since, bound, claim) {
            return Err(TaskError::Busy(cpu));
        }
        slot.owner.store(me + 1, Ordering::Relaxed);
        slot.func.store(f as usize, Ordering::Relaxed);
        slot.ctx.store(ctx, Ordering::Relaxed);
        slot.state.store(POSTED, Ordering::Release);
        // The CPU may sleep in its idle loop: the PING ends that.
        self.send_message(cpu, IpiMessage::PING).ok();
        Ok(())
    }

    /// Waits for the task this CPU posted to `cpu` and returns its result;
    /// after `bound` cycles (from `since`) withdraws it, or abandons it if
    /// it is already running.
    pub fn collect_task(&self, cpu: usize, since: u64, bound: u64) -> Result<u64, TaskError> {
        let me = self.platform.cpu_id();
        if cpu >= N || self.slot(cpu).owner.load(Ordering::Relaxed) != me + 1 {
            return Err(TaskError::NotPosted(cpu));
        }
        let slot = self.slot(cpu);
        let done = || slot.state.load(Ordering::Acquire) == DONE;
        if !self.wait_on_slot(cpu, since, bound, done) {
            // Withdraw what was not taken; abandon what runs.
            if slot
                .state
                .compare_exchange(POSTED, FREE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.owner.store(0, Ordering::Relaxed);
                self.wake_slot_waiters(cpu);
                return Err(TaskError::TimedOut {
                    cpu,
                    started: false,
                });
            }
            if slot
                .state
                .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Err(TaskError::TimedOut { cpu, started: true });
            }
            // Otherwise it finished meanwhile: collect it.
        }
        let result = slot.result.load(Ordering::Relaxed);
        slot.owner.store(0, Ordering::Relaxed);
        slot.state.store(FREE, Ordering::Release);
        self.wake_slot_waiters(cpu);
        Ok(result)
    }

    /// Runs the task posted to the calling CPU, if any (its idle loop,
    /// in task context). Returns whether one ran.
    pub fn run_posted_task(&self) -> bool {
        let me = self.platform.cpu_id();
        let slot = self.slot(me);
        if slot
            .state
            .compare_exchange(POSTED, RUNNING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // A task may spin without looking at the mailbox: nobody may skip
        // this CPU's interrupts while it runs (`crate::listen`).
        if self.is_listening(me) {
            self.stop_listening();
        }
        let (func, ctx) = (
            slot.func.load(Ordering::Relaxed),
            slot.ctx.load(Ordering::Relaxed),
        );
        let result = if func == 0 {
            // Only a broken publication (POSTED seen before the function)
            // or a stray write gets here: report it, run nothing.
            self.platform
                .report_corruption("task slot posted without a function", 0);
            0
        } else {
            // SAFETY: only `post_task` stores `func`, always from a
            // `TaskFn`, and its Release store of POSTED (which our Acquire
            // CAS read) follows that store.
            let f: TaskFn = unsafe { core::mem::transmute::<usize, TaskFn>(func) };
            f(me, ctx)
        };
        slot.result.store(result, Ordering::Relaxed);
        if slot
            .state
            .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // Abandoned by its poster: nobody collects; free the slot.
            slot.owner.store(0, Ordering::Relaxed);
            slot.state.store(FREE, Ordering::Release);
        }
        self.wake_slot_waiters(me);
        true
    }

    /// Whether a task waits in `cpu`'s slot (its idle loop's check).
    pub fn task_pending(&self, cpu: usize) -> bool {
        cpu < N && self.slot(cpu).pending()
    }

    /// Runs `f(cpu, ctx)` on every CPU of `mask` at once (the caller too,
    /// if it is in the mask, directly) and returns the results, or the
    /// first CPU that did not finish within `bound` cycles.
    pub fn run_on_cpus(
        &self,
        mask: CpuMask,
        f: TaskFn,
        ctx: usize,
        bound: u64,
    ) -> Result<[u64; N], TaskError> {
        let me = self.platform.cpu_id();
        let since = self.platform.cycles();
        let mut posted = CpuMask::EMPTY;
        let mut failed = None;
        for cpu in mask.without(me).iter() {
            match self.post_task(cpu, f, ctx, since, bound) {
                Ok(()) => posted.insert(cpu),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let mut out = [0u64; N];
        if failed.is_none() && me < N && mask.contains(me) {
            out[me] = f(me, ctx);
        }
        for cpu in posted.iter() {
            // After a failure, give the rest no further time.
            let bound = if failed.is_some() { 0 } else { bound };
            match self.collect_task(cpu, since, bound) {
                Ok(r) => out[cpu] = r,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(out), Err)
    }
}
