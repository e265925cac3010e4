//! Cross-CPU function calls with Linux's semantics, in Rust types.
//!
//! # The protocol
//!
//! Each CPU owns a **call queue** (a lock-free stack of call descriptors,
//! [`Csd`]) and a **mailbox** ([`crate::mailbox`]). A caller on CPU `s` that
//! wants `f(arg)` to run on the CPUs `T`:
//!
//! 1. **reserves** its descriptor for each `t` in `T` (`cfd[s][t]`): waits
//!    until the flag word is 0 (the previous use finished, Acquire), then
//!    stores LOCK. A caller that must not block only tries once
//!    (compare-and-swap) and refuses with [`XcallError::Busy`] instead of
//!    spinning: one in interrupt context ([`Smp::in_interrupt`]: an
//!    interrupt handler, or a function run by any drain of the mailbox),
//!    and one with IPIs masked making a no-wait call. Spinning there could
//!    wait for a target that itself waits, masked, for this CPU (a mutual
//!    deadlock). Waiting calls from either are refused outright, as Linux
//!    refuses any cross-call with interrupts off;
//! 2. fills in `f` and `arg` (and SYNC for a waiting call) and **queues**
//!    each descriptor on its target's queue (compare-and-swap of the head,
//!    Release: publishes the fields);
//! 3. **interrupts** each `t` whose queue was empty before the push: posts
//!    CALL_FUNCTION in `t`'s mailbox and issues the IPI (for several
//!    targets, all the posts first and then one request for all their
//!    IPIs, [`Platform::request_ipis`]). A non-empty queue
//!    means an IPI is already on its way, so Linux sends none (this is what
//!    turns one lost IPI into a stall of every later caller to that CPU:
//!    the fault-injection work reproduces exactly that);
//! 4. for a waiting call, **spins** until each target clears the flag word.
//!
//! Only steps 1 and 4 can fail (Busy, or the watchdog's
//! [`XcallError::Stalled`]). A failure in step 1 releases the descriptors
//! reserved so far, none of which was queued; steps 2 and 3 cannot fail, so
//! every push that found a queue empty is followed by its IPI. Hence the
//! invariant behind "send only if empty" holds on every exit: **a non-empty
//! queue always has an interrupt owed to it** (an earlier version broke it: queueing on
//! an earlier target and then failing on a later one, before the IPIs went
//! out, left a queue nothing would ever look at; tests/loom.rs checks
//! every exit).
//!
//! The target, on the IPI (or on any drain of its mailbox), takes the whole
//! queue at once (swap with null, Acquire), restores FIFO order and runs each
//! descriptor. A SYNC descriptor is unlocked (Release) *after* `f` ran, so
//! the waiter sees `f`'s effects; an async one is unlocked *before* `f`
//! runs, so its slot can be reused at once. The target reads a descriptor's
//! `next` before unlocking it and never touches it afterwards: from that
//! moment the owner may reuse it.
//!
//! Descriptors live in per-CPU arrays (never on a stack). A waiter that
//! gives up in step 4 leaves its descriptors queued, locked and announced:
//! the target runs and unlocks them when it gets to them, and the next use
//! of such a descriptor waits for that in step 1. (Whatever `arg` points to
//! must stay valid until then; see `crate::tlb` for how its requests do.)
//!
//! # The fixes for lossy IPIs (the series' lock with drain and in-interrupt poll, docs/cross-calls.md §5), as policy
//!
//! - `serialize`: every waiting call takes one global lock; a CPU that
//!   cannot take it drains its own mailbox with interrupts off and retries.
//! - `poll_in_irq`: [`Smp::poll_in_interrupt`], called by the platform after
//!   every non-IPI interrupt, drains the mailbox if a bit is set and counts
//!   the messages it rescued.
//! - `watchdog`: a waiter past the bound reports (once per bound) and, with
//!   `resend`, issues the IPI again (Linux's csdlock_debug resend); at
//!   `abort_after` reports it gives up with [`XcallError::Stalled`], so a
//!   reproduction run can count a deadlock instead of hanging.
//!
//! # Napping waiters (`nap` policy, boot argument `wait=nap`)
//!
//! A waiter (step 4, step 1's wait for a descriptor, the serialization
//! lock) may wait in the platform's [`nap`](Platform::nap) (Alpha: wtint)
//! instead of spinning, so a waiting CPU gives its host time to the CPU it
//! waits for. Protocol, per waiting CPU `w`:
//!
//! - `w` raises its IPL to 7, sets its `napping` flag, issues a SeqCst
//!   fence, and checks the condition (descriptor unlocked, lock free); only
//!   if it still holds it naps, then clears `napping` and lowers the IPL
//!   (the interrupt that ended the nap is taken then);
//! - a CPU that ends the wait (unlocks a descriptor, after a SYNC call or
//!   before an async one, whose owner may be waiting to reuse it; releases
//!   the serialization lock; frees a work slot, in the kernel) issues a
//!   SeqCst fence after its Release store and, if `w` is napping, claims
//!   the wake (swaps `napping` to false) and, if the swap found it set,
//!   wakes `w` with an IPI carrying no message ([`Platform::wake`]).
//!
//! The two fences order each side's store before its load, so either the
//! waiter sees the condition met and does not nap, or the waker sees
//! `napping` and sends the wake. The claim makes that one wake per nap:
//! a broadcast's waiter napping for its first target used to be sent a
//! wake by every target that finished while it slept (measured: 2.9 wake
//! IPIs per 4-CPU `on_each_cpu` for 1.1 naps). A waker that finds the flag
//! claimed sends nothing, and loses nothing: the claimer's wake is on its
//! way, and the waiter, once woken, re-checks everything it waits for, and
//! before any further nap sets `napping` again and fences, which the
//! later waker's load (it read a value older than that store) is ordered
//! before; so that re-check sees the later waker's store (the same
//! store-buffering argument; tests/loom.rs `nap_two_wakers_*`).
//!
//! A wake that is lost anyway (an edge lost on EV7, like any IPI) costs at
//! most one clock period: the periodic clock interrupt ends every nap, and
//! the waiter re-checks its condition after each one (tests/sim_nap.rs
//! drops every wake and checks that). The watchdog, the in-interrupt poll
//! and the lock's drain run exactly as when spinning: a nap is one
//! iteration of the same loops.

use core::fmt;
// From `crate::sync`, so tests/loom.rs can compile this file against loom.
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

use crate::cpumask::CpuMask;
use crate::line::Line;
use crate::listen::Listening;
use crate::mailbox::{IpiMessage, Mailbox};
use crate::platform::{Platform, ipl};
use crate::queue::{CallQueue, Csd, LOCK, SYNC};

pub use crate::queue::CallFn;

/// Per-CPU counters (Relaxed statistics).
#[derive(Default)]
pub struct CpuStats {
    /// Messages this CPU handled, per type.
    pub ipi_handled: [AtomicU64; IpiMessage::COUNT],
    /// Messages found by the in-interrupt poll, per type.
    pub rescued: [AtomicU64; IpiMessage::COUNT],
    /// Messages found by the idle loop's poll, per type: a separate kind of
    /// rescue (the series' poll runs only in interrupts).
    pub idle_rescued: [AtomicU64; IpiMessage::COUNT],
    /// Calls this CPU queued for another CPU.
    pub calls_queued: AtomicU64,
    /// Calls whose queueing found the target's queue non-empty (no IPI).
    pub calls_piggybacked: AtomicU64,
    /// Queued calls this CPU ran.
    pub calls_run: AtomicU64,
    /// Mailbox drains done while waiting for the serialization lock.
    pub lock_drains: AtomicU64,
    /// Watchdog reports issued by this CPU as a waiter.
    pub stalls: AtomicU64,
    /// IPIs re-sent by the watchdog.
    pub resends: AtomicU64,
    /// Naps taken while waiting (`nap` policy).
    pub naps: AtomicU64,
    /// In-interrupt polls that found a message but left it, because the
    /// interrupted code had IPIs masked ([`Smp::poll_in_interrupt`]).
    pub polls_masked: AtomicU64,
    /// Wake IPIs this CPU sent to napping waiters.
    pub wakes_sent: AtomicU64,
    /// Messages this CPU heard while listening, per type (`crate::listen`).
    pub heard: [AtomicU64; IpiMessage::COUNT],
    /// Interrupts its senders skipped because this CPU listened (written
    /// by the senders).
    pub ipis_elided: AtomicU64,
    /// Call waits that spun the idle case's budget (their target slept in
    /// its idle loop when called: [`Policy::spin_idle`]).
    pub idle_waits: AtomicU64,
}

impl CpuStats {
    /// Zeroes every counter (between experiment cells; Relaxed, like the
    /// counting).
    pub fn reset(&self) {
        let all = self
            .ipi_handled
            .iter()
            .chain(&self.rescued)
            .chain(&self.idle_rescued)
            .chain(&self.heard)
            .chain([
                &self.calls_queued,
                &self.calls_piggybacked,
                &self.calls_run,
                &self.lock_drains,
                &self.stalls,
                &self.resends,
                &self.naps,
                &self.polls_masked,
                &self.wakes_sent,
                &self.ipis_elided,
                &self.idle_waits,
            ]);
        for c in all {
            c.store(0, Ordering::Relaxed);
        }
    }

    const fn new() -> Self {
        CpuStats {
            ipi_handled: [const { AtomicU64::new(0) }; IpiMessage::COUNT],
            rescued: [const { AtomicU64::new(0) }; IpiMessage::COUNT],
            idle_rescued: [const { AtomicU64::new(0) }; IpiMessage::COUNT],
            calls_queued: AtomicU64::new(0),
            calls_piggybacked: AtomicU64::new(0),
            calls_run: AtomicU64::new(0),
            lock_drains: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            naps: AtomicU64::new(0),
            polls_masked: AtomicU64::new(0),
            wakes_sent: AtomicU64::new(0),
            heard: [const { AtomicU64::new(0) }; IpiMessage::COUNT],
            ipis_elided: AtomicU64::new(0),
            idle_waits: AtomicU64::new(0),
        }
    }
}

/// One CPU's cross-call state.
///
/// Laid out by cache line (`crate::line`; `repr(C)` keeps the order, and
/// the descriptors' alignment starts each CPU's state on a line). The
/// first line is the **inbox**: everything a sender writes when it calls
/// or interrupts this CPU (the mailbox, the queue head, the per-type sent
/// counts, the census's `req` and `sent`), and the first things this CPU's
/// IPI handler reads and writes. A call to an idle or busy CPU then moves
/// three lines between the two CPUs' caches, each there and back: the
/// inbox, the descriptor (its own line), and the caller's `napping` flag
/// (its own line, read by the target; written only around a nap). When
/// these sat on six lines (the mailbox alone, the queue head alone, the
/// census and the sent counts on the target's statistics lines, `napping`
/// beside words the caller writes in every wait), each was one more
/// transfer on the call's path (measured: docs/cross-calls.md,
/// "Cache lines"). A constant assertion at the end of this file checks the placement.
#[repr(C)]
pub struct CpuState<const N: usize> {
    pub mailbox: Mailbox,
    queue: CallQueue,
    /// IPIs issued to this CPU, per message type (by their senders,
    /// Relaxed).
    pub ipi_sent: [AtomicU64; IpiMessage::COUNT],
    /// What became of the IPIs sent to this CPU (`crate::census`). Its
    /// senders' words come first and end the inbox line.
    pub census: crate::census::Census,
    /// This CPU's descriptors, one per target, for calls from task context.
    pub(crate) cfd: [Csd; N],
    /// ... and for no-wait calls from interrupt context.
    pub(crate) cfd_irq: [Csd; N],
    pub stats: CpuStats,
    /// While this CPU waits for a call to complete: 1 + the CPU it waits
    /// for (0: not waiting). Diagnostics only (watchdog reports show wait
    /// cycles with it).
    pub waiting_for: AtomicUsize,
    /// How many mailbox drains (`handle_ipi`) this CPU is inside: what they
    /// run is interrupt context, whether or not the platform's interrupt
    /// handler called them. Only this CPU reads or writes it (Relaxed).
    drain_depth: AtomicUsize,
    /// Set (SeqCst) while this CPU naps in a wait, so whoever ends the
    /// wait wakes it (module docs, "Napping waiters"). Alone in its line:
    /// every target of a call reads it when it is done, and this CPU
    /// writes the words around it in every wait.
    napping: Line<AtomicBool>,
    /// Set while this CPU sleeps in the platform's idle loop
    /// ([`Smp::note_idle_asleep_on`]), not in a wait. Only this CPU writes
    /// it (Relaxed: a hint for how long a caller spins, never a condition
    /// a wait or a wake depends on).
    idle_asleep: AtomicBool,
    /// Under `adaptive` with a [`Policy::spin_floor`]: how long this CPU's
    /// waits spin now, in cycles (0: not learned yet, the policy's
    /// `spin_before_nap`). Learned from its own call waits
    /// ([`learn_budget`]); only this CPU reads or writes it (Relaxed).
    spin_budget: AtomicU64,
    /// Work posted to run on this CPU in task context (`crate::task`).
    pub task: crate::taskslot::TaskSlot,
}

impl<const N: usize> CpuState<N> {
    /// Zeroes its statistics, sent counts and census (`crate::recover`
    /// says when that is safe).
    pub(crate) fn reset_counters(&self) {
        self.stats.reset();
        for c in &self.ipi_sent {
            c.store(0, Ordering::Relaxed);
        }
        self.census.reset();
    }

    /// Whether calls sit in this CPU's queue, not yet taken by it
    /// (diagnostics; the tests' "no call stranded" checks).
    pub fn call_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    const fn new() -> Self {
        CpuState {
            mailbox: Mailbox::new(),
            queue: CallQueue::new(),
            ipi_sent: [const { AtomicU64::new(0) }; IpiMessage::COUNT],
            census: crate::census::Census::new(),
            cfd: [const { Csd::new() }; N],
            cfd_irq: [const { Csd::new() }; N],
            stats: CpuStats::new(),
            waiting_for: AtomicUsize::new(0),
            drain_depth: AtomicUsize::new(0),
            napping: Line::new(AtomicBool::new(false)),
            idle_asleep: AtomicBool::new(false),
            spin_budget: AtomicU64::new(0),
            task: crate::taskslot::TaskSlot::new(),
        }
    }
}

/// Which fixes are on, and the watchdog (see the module docs).
pub struct Policy {
    pub serialize: AtomicBool,
    pub poll_in_irq: AtomicBool,
    /// Watchdog bound in cycles; 0 disables it.
    pub watchdog_cycles: AtomicU64,
    pub resend: AtomicBool,
    /// Give up a wait at this many watchdog reports (0: never).
    pub abort_after: AtomicU64,
    /// Fault injection: let waiting calls run with IPIs masked (the
    /// "spin_lock_irqsave callers" of the series' lock-and-drain patch) instead of refusing.
    pub allow_masked_wait: AtomicBool,
    /// Waiters nap ([`Platform::nap`]) instead of spinning.
    pub nap: AtomicBool,
    /// Under `nap`: spin this many cycles of a wait before the first nap
    /// (a call that completes within it costs no wake IPI). Under
    /// `adaptive`: the most a wait spins.
    pub spin_before_nap: AtomicU64,
    /// Under `nap`: choose per wait iteration (see [`Smp::spins`]): spin
    /// while the wait is younger than `spin_before_nap` and at most
    /// `spin_cpus` online CPUs are awake, else nap.
    pub adaptive: AtomicBool,
    /// Under `adaptive`: the most awake CPUs at which a waiter still spins
    /// (0: no limit). Where virtual CPUs share fewer host cores, a spinning
    /// waiter beyond that takes a core from the CPU it waits for.
    pub spin_cpus: AtomicU64,
    /// Under `adaptive`: the least a CPU's learned spin budget falls to, in
    /// cycles (0: no learning, every wait spins up to `spin_before_nap`).
    /// See [`learn_budget`].
    pub spin_floor: AtomicU64,
    /// Under `adaptive`: how long a wait for a CPU that was asleep in its
    /// idle loop when called spins before it naps, in cycles, in place of
    /// the wait's own budget (0: no such case). Such a CPU wakes, runs the
    /// call and sleeps again: it needs its core only briefly, and the
    /// waiter's own nap would add a wake of its own to the wait (README
    /// "Speed": the 4-CPU idle `on_each_cpu`). Only where CPUs run in
    /// parallel: where an emulator runs one at a time (`-icount`), the
    /// woken CPU cannot run while its caller spins, and `wait=auto`'s
    /// probe sets this to 0 (`crate::hostcores::Verdict::in_parallel`).
    pub spin_idle: AtomicU64,
    /// CPUs that spin where they could take IPIs listen: they look at
    /// their mailbox, and senders skip their interrupt (`crate::listen`).
    pub listen: AtomicBool,
}

impl Policy {
    const fn new() -> Self {
        Policy {
            serialize: AtomicBool::new(false),
            poll_in_irq: AtomicBool::new(false),
            watchdog_cycles: AtomicU64::new(0),
            resend: AtomicBool::new(false),
            abort_after: AtomicU64::new(0),
            allow_masked_wait: AtomicBool::new(false),
            nap: AtomicBool::new(false),
            spin_before_nap: AtomicU64::new(0),
            adaptive: AtomicBool::new(false),
            spin_cpus: AtomicU64::new(0),
            spin_floor: AtomicU64::new(0),
            spin_idle: AtomicU64::new(0),
            listen: AtomicBool::new(false),
        }
    }
}

/// Why a cross-call was refused or given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XcallError {
    /// The CPU number is beyond what this kernel supports.
    NoSuchCpu(usize),
    /// The CPU exists but is not online.
    Offline(usize),
    /// A waiting call from an interrupt handler (it could wait for a CPU
    /// that waits for this one, with no way to take its IPI).
    WaitInInterrupt,
    /// A waiting call with IPIs masked (same deadlock, Linux's rule).
    WaitWithIpisMasked,
    /// A no-wait call that must not block (interrupt context, a drained
    /// function, or IPIs masked) found its descriptor for that target still
    /// in flight.
    Busy { target: usize },
    /// The watchdog gave up waiting for `target` (abort policy).
    Stalled { target: usize },
}

impl fmt::Display for XcallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XcallError::NoSuchCpu(c) => write!(f, "cross-call to CPU {c}: no such CPU"),
            XcallError::Offline(c) => write!(f, "cross-call to CPU {c}: CPU is offline"),
            XcallError::WaitInInterrupt => {
                write!(f, "waiting cross-call from interrupt context refused")
            }
            XcallError::WaitWithIpisMasked => write!(
                f,
                "waiting cross-call with IPIs masked (IPL at or above the IPI level) refused"
            ),
            XcallError::Busy { target } => write!(
                f,
                "no-wait cross-call to CPU {target} that must not block (interrupt context or IPIs masked): previous call still in flight"
            ),
            XcallError::Stalled { target } => write!(
                f,
                "cross-call to CPU {target} stalled past the watchdog bound"
            ),
        }
    }
}

/// A failed [`Smp::call_many_tracked`].
pub(crate) struct CallFailed {
    pub(crate) error: XcallError,
    /// The call went out before the failure (only a wait that gave up):
    /// targets may still run it and read its argument.
    pub(crate) sent: bool,
}

/// What the watchdog saw when a wait exceeded its bound.
#[derive(Clone, Copy, Debug)]
pub struct StallReport {
    pub waiter: usize,
    pub target: usize,
    /// The target's pending mailbox bits at the time.
    pub target_mailbox: IpiMessage,
    /// Whether the target's call queue was non-empty.
    pub target_queue_pending: bool,
    /// The CPU the target itself is waiting for, if it is waiting.
    pub target_waiting_for: Option<usize>,
    pub waited_cycles: u64,
    /// Reports so far for this wait (1 for the first).
    pub nth: u64,
    /// The call being waited for: its function's address and argument.
    pub func: usize,
    pub arg: usize,
}

/// Hooks the platform provides beyond [`Platform`]: what to do with
/// non-call messages and how to report a stall.
pub trait Hooks: Platform {
    /// A message other than CALL_FUNCTION arrived on this CPU.
    fn on_message(&self, _msg: IpiMessage) {}
    /// The watchdog fired (print it; the core has no console).
    fn report_stall(&self, _report: &StallReport) {}
    /// The core found corrupted state and did not act on it (`what` names
    /// it, `value` is the offending value). Something overwrote memory
    /// that only the core writes: print it; the core has already done the
    /// safe thing (for a shootdown request: flushed everything locally).
    fn report_corruption(&self, _what: &'static str, _value: u64) {}
}

/// Marks this CPU as inside a drain for as long as it lives (also when a
/// called function unwinds, as the simulator's panicking CPUs do).
struct DrainMark<'a>(&'a AtomicUsize);

impl<'a> DrainMark<'a> {
    /// The depth has one writer, its CPU; a drain nested in another (an
    /// interrupt's, over a drain the interrupt found running) ends before
    /// the outer one goes on and leaves the depth as it found it, so a load
    /// and a store do what a read-modify-write would, without its locked
    /// sequence on every IPI's path.
    #[inline]
    fn enter(depth: &'a AtomicUsize) -> Self {
        depth.store(depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        DrainMark(depth)
    }
}

impl Drop for DrainMark<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    }
}

/// The SMP core for `N` possible CPUs on platform `P`.
pub struct Smp<P, const N: usize> {
    pub platform: P,
    cpus: [CpuState<N>; N],
    online: AtomicU64,
    serial: spin::Mutex<()>,
    /// CPUs napping while they wait for `serial` (bit per CPU).
    serial_nappers: AtomicU64,
    /// CPUs asleep: napping in a wait, or idle in the platform's sleep
    /// ([`Smp::note_asleep`]). Each CPU sets and clears only its own bit
    /// (Relaxed: a hint for [`Smp::spins`], never a condition a wait or a
    /// wake depends on). Alone in its line: every idle CPU writes it on
    /// each sleep and wake, and every call reads the words beside it.
    asleep: Line<AtomicU64>,
    /// Which CPUs listen (`crate::listen`).
    listening: Listening<N>,
    pub policy: Policy,
}

impl<P: Hooks, const N: usize> Smp<P, N> {
    pub const fn new(platform: P) -> Self {
        assert!(N <= 64, "CpuMask holds 64 CPUs");
        Smp {
            platform,
            cpus: [const { CpuState::new() }; N],
            online: AtomicU64::new(0),
            serial: spin::Mutex::new(()),
            serial_nappers: AtomicU64::new(0),
            asleep: Line::new(AtomicU64::new(0)),
            listening: Listening::new(),
            policy: Policy::new(),
        }
    }

    /// Marks `cpu` online (called by that CPU when it is ready for IPIs).
    pub fn set_online(&self, cpu: usize) {
        assert!(cpu < N, "CPU {cpu} beyond N={N}");
        self.online.fetch_or(1 << cpu, Ordering::Release);
    }

    pub fn online(&self) -> CpuMask {
        CpuMask(self.online.load(Ordering::Acquire))
    }

    /// Whether the serialization lock is held (diagnostics, `crate::recover`).
    pub fn serial_held(&self) -> bool {
        self.serial.is_locked()
    }

    pub fn cpu(&self, cpu: usize) -> &CpuState<N> {
        &self.cpus[cpu]
    }

    // ---- IPIs ------------------------------------------------------------

    /// Posts `msg` to `cpu`'s mailbox and interrupts it.
    pub fn send_message(&self, cpu: usize, msg: IpiMessage) -> Result<(), XcallError> {
        if cpu >= N {
            return Err(XcallError::NoSuchCpu(cpu));
        }
        self.post(cpu, msg);
        Ok(())
    }

    /// [`send_message`](Self::send_message) for a CPU number known to be
    /// below `N`: cannot fail.
    #[inline(always)]
    fn post(&self, cpu: usize, msg: IpiMessage) {
        if let Some(n) = self.post_bits(cpu, msg) {
            let issued = self.platform.request_ipi(cpu);
            self.cpus[cpu].census.end_request(n, issued);
        }
    }

    /// A message's first half: numbers the request in `cpu`'s census,
    /// posts the bits, and returns the number if `cpu` needs the
    /// interrupt (None: it listens and hears the message without one,
    /// and the request is counted as such). The caller requests the
    /// interrupt and passes the number to `Census::end_request`.
    #[inline(always)]
    fn post_bits(&self, cpu: usize, msg: IpiMessage) -> Option<u64> {
        let target = &self.cpus[cpu];
        // Numbered before the bits are posted (`crate::census`).
        let n = target.census.begin_request();
        target.mailbox.post(msg);
        for m in msg.each() {
            target.ipi_sent[m.index()].fetch_add(1, Ordering::Relaxed);
        }
        if self.policy.listen.load(Ordering::Relaxed) && self.listening.elide(cpu) {
            // It hears the message (`crate::listen`); the census counts
            // the request when it does.
            target.stats.ipis_elided.fetch_add(1, Ordering::Relaxed);
            target.census.end_request(n, true);
            return None;
        }
        Some(n)
    }

    /// [`post`](Self::post) to every CPU in `targets` (each below `N`),
    /// with one [`Platform::request_ipis`] for all that need the
    /// interrupt, after all the bits are posted. Each target's census
    /// sees `post`'s steps in `post`'s order (numbered, posted,
    /// requested, counted); only the targets' steps interleave. One
    /// target takes `post` itself.
    fn post_all(&self, targets: CpuMask, msg: IpiMessage) {
        if let Some(cpu) = targets.only() {
            self.post(cpu, msg);
            return;
        }
        let mut numbers = [0u64; N];
        let mut need = CpuMask::EMPTY;
        for cpu in targets.iter() {
            if let Some(n) = self.post_bits(cpu, msg) {
                numbers[cpu] = n;
                need.insert(cpu);
            }
        }
        if need.is_empty() {
            return;
        }
        let issued = self.platform.request_ipis(need);
        for cpu in need.iter() {
            self.cpus[cpu]
                .census
                .end_request(numbers[cpu], issued.contains(cpu));
        }
    }

    /// The platform's IPI interrupt handler calls this at its entry, before
    /// [`handle_ipi`](Self::handle_ipi), and passes what it returns to
    /// [`census_ipi_served`](Self::census_ipi_served) after it: the
    /// census's "served" step, its bookkeeping after the calls ran.
    #[inline]
    pub fn census_ipi_entry(&self, cpu: usize) -> u64 {
        self.cpus[cpu].census.ipi_entry()
    }

    /// See [`census_ipi_entry`](Self::census_ipi_entry).
    pub fn census_ipi_served(&self, cpu: usize, upto: u64) {
        let census = &self.cpus[cpu].census;
        census.serve(upto);
        // Its drain may have taken a message whose sender skipped the
        // interrupt, numbered after `upto` was read (`crate::census`,
        // "Heard"), also where the interrupt came inside the stop
        // (`crate::listen`, "Interrupts in the stop").
        if self.listening.hears(cpu) {
            census.heard();
        }
    }

    /// The platform's clock interrupt handler calls this: the census's
    /// "stranded" judgement.
    pub fn census_clock(&self) {
        self.cpus[self.platform.cpu_id()].census.on_clock();
    }

    /// Takes this CPU's mailbox outside the IPI interrupt (a poll or a
    /// drain), telling the census if it found a message. With IPIs masked.
    fn rescue_drain(&self) -> usize {
        let me = self.platform.cpu_id();
        let census = &self.cpus[me].census;
        // A CPU that listens may find a message whose sender skipped the
        // interrupt: nothing else will serve it, so the take does. So may
        // one that stops and has not yet made its last look (an interrupt
        // inside the stop); one that finds the state off comes after that
        // look (`crate::listen`, "Interrupts in the stop").
        let listening = self.listening.hears(me);
        let upto = census.before_rescue();
        let batches = self.handle_ipi();
        if batches > 0 {
            if listening {
                census.heard();
            } else {
                census.rescued(upto);
            }
        }
        batches
    }

    /// The IPI handler: drains this CPU's mailbox until empty, running the
    /// call queue for CALL_FUNCTION and passing other messages to the
    /// platform. Must run with IPIs masked (IPL >= the platform's
    /// [`ipi_ipl`](Platform::ipi_ipl)). Returns the number of
    /// mailbox batches taken. Whoever calls it (the IPI handler, the poll,
    /// the serialization lock's wait loop, a platform's idle loop), what it
    /// runs is interrupt context: [`in_interrupt`](Self::in_interrupt) is
    /// true meanwhile.
    pub fn handle_ipi(&self) -> usize {
        let me = self.platform.cpu_id();
        let st = &self.cpus[me];
        let _drain = DrainMark::enter(&st.drain_depth);
        st.mailbox.drain(|msgs| {
            for m in msgs.each() {
                st.stats.ipi_handled[m.index()].fetch_add(1, Ordering::Relaxed);
                if m == IpiMessage::CALL_FUNCTION {
                    self.flush_queue(me);
                } else {
                    self.platform.on_message(m);
                }
            }
        })
    }

    /// Whether the calling CPU runs in interrupt context as the core sees
    /// it: in the platform's interrupt handler, or inside a drain of its
    /// mailbox ([`handle_ipi`](Self::handle_ipi)) from anywhere.
    pub fn in_interrupt(&self) -> bool {
        self.in_interrupt_on(self.platform.cpu_id())
    }

    /// [`in_interrupt`](Self::in_interrupt) where the caller knows it runs
    /// on `me` (each lookup of the CPU costs the call path instructions).
    #[inline]
    fn in_interrupt_on(&self, me: usize) -> bool {
        self.platform.in_interrupt_on(me) || self.cpus[me].drain_depth.load(Ordering::Relaxed) != 0
    }

    /// The in-interrupt poll: after a non-IPI interrupt, handle anything left in the
    /// mailbox (its interrupt may have been lost). Counts what it rescued.
    ///
    /// `interrupted_ipl` is the IPL of the code the interrupt interrupted
    /// (the PAL frame's PS). The poll runs only if that code could have
    /// taken an IPI itself (`interrupted_ipl < ipi_ipl`): an interrupt above
    /// the IPI level (a performance counter at 6, a machine check at 7) can
    /// arrive inside a region raised only to the IPI level to keep IPI work
    /// out (an address-space switch between `current` and the ASN, the
    /// local half of a call), and running queued calls there would break
    /// exactly what that region protects. Such skipped polls are counted;
    /// the message waits for the region's end, where its IPI (or the next
    /// interrupt's poll) takes it.
    pub fn poll_in_interrupt(&self, interrupted_ipl: u8) -> usize {
        if interrupted_ipl >= self.platform.ipi_ipl() {
            let st = &self.cpus[self.platform.cpu_id()];
            if !st.mailbox.peek().is_empty() {
                st.stats.polls_masked.fetch_add(1, Ordering::Relaxed);
            }
            return 0;
        }
        self.poll(|s| &s.rescued)
    }

    /// The idle loop's poll (policy-gated like the in-interrupt one): after
    /// a wait for interrupts, handle what the mailbox holds, counting it as
    /// an idle rescue. An IPI that was delivered has been handled by its
    /// interrupt before the idle loop runs again, so what this finds is a
    /// message whose interrupt was lost or has not arrived yet.
    pub fn poll_when_idle(&self) -> usize {
        self.poll(|s| &s.idle_rescued)
    }

    /// Handles what the mailbox holds if the poll policy is on, counting
    /// each message found in the counters `kind` picks.
    fn poll(&self, kind: impl Fn(&CpuStats) -> &[AtomicU64; IpiMessage::COUNT]) -> usize {
        if !self.policy.poll_in_irq.load(Ordering::Relaxed) {
            return 0;
        }
        let st = &self.cpus[self.platform.cpu_id()];
        let pending = st.mailbox.peek();
        if pending.is_empty() {
            return 0;
        }
        for m in pending.each() {
            kind(&st.stats)[m.index()].fetch_add(1, Ordering::Relaxed);
        }
        self.rescue_drain()
    }

    // ---- Listening (`crate::listen`) ----------------------------------------

    /// Whether this CPU may listen now: the policy allows it and it could
    /// take an IPI here (IPL below the IPI level), so handling a message
    /// by a look changes nothing but the interrupt's cost.
    #[inline]
    fn may_listen(&self) -> bool {
        self.policy.listen.load(Ordering::Relaxed) && self.platform.ipl() < self.platform.ipi_ipl()
    }

    /// Starts listening on the calling CPU if it may (again, if it
    /// listens already); returns whether it does. Whoever starts must
    /// [`hear`](Self::hear) as it spins and
    /// [`stop_listening`](Self::stop_listening) before it naps, sleeps or
    /// goes on.
    #[inline]
    pub fn start_listening(&self) -> bool {
        if !self.may_listen() {
            return false;
        }
        self.listening.start(self.platform.cpu_id());
        true
    }

    /// [`start_listening`](Self::start_listening) on `me` by a caller that
    /// knows its IPL is below the IPI level.
    #[inline]
    fn start_listening_unmasked(&self, me: usize) -> bool {
        if !self.policy.listen.load(Ordering::Relaxed) {
            return false;
        }
        self.listening.start(me);
        true
    }

    /// Stops listening on the calling CPU and hears what a sender posted
    /// meanwhile without an interrupt.
    #[inline]
    pub fn stop_listening(&self) {
        self.stop_listening_on(self.platform.cpu_id());
    }

    /// [`stop_listening`](Self::stop_listening) where the caller knows it
    /// runs on `me`.
    #[inline]
    fn stop_listening_on(&self, me: usize) {
        // IPIs stay unmasked: an interrupt between the stop and the look
        // that takes a skipped message counts it as heard, since the state
        // says stopping until the look is done (`crate::listen`,
        // "Interrupts in the stop"), and no IPL change (a PAL call each)
        // is paid on every wait's way out.
        self.listening.stop(me);
        self.platform.may_interrupt();
        self.hear_on(me);
        self.listening.stopped(me);
    }

    /// A listening CPU's look: handles what its mailbox holds, with IPIs
    /// masked as its interrupt would, and tells the census. Returns the
    /// number of mailbox batches taken.
    #[inline(always)]
    pub fn hear(&self) -> usize {
        self.hear_on(self.platform.cpu_id())
    }

    /// [`hear`](Self::hear) where the caller knows it runs on `me`.
    #[inline(always)]
    fn hear_on(&self, me: usize) -> usize {
        if self.cpus[me].mailbox.peek().is_empty() {
            return 0;
        }
        self.hear_now()
    }

    #[inline(never)]
    fn hear_now(&self) -> usize {
        let prev = self.platform.raise_ipl(self.platform.ipi_ipl());
        let st = &self.cpus[self.platform.cpu_id()];
        for m in st.mailbox.peek().each() {
            st.stats.heard[m.index()].fetch_add(1, Ordering::Relaxed);
        }
        let batches = self.handle_ipi();
        if batches > 0 {
            st.census.heard();
        }
        self.platform.restore_ipl(prev);
        batches
    }

    /// Whether `cpu` listens now (a hint: diagnostics and tests).
    pub fn is_listening(&self, cpu: usize) -> bool {
        self.listening.is_listening(cpu)
    }

    /// Runs every call queued for `me` (FIFO), per the module protocol.
    /// Runs `me`'s queue as a drain would, without a mailbox message
    /// (`crate::recover`).
    /// [`rescue_drain`](Self::rescue_drain) for `crate::recover`.
    pub(crate) fn recovery_drain(&self) -> usize {
        self.rescue_drain()
    }

    pub(crate) fn drain_queue_only(&self, me: usize) {
        let _drain = DrainMark::enter(&self.cpus[me].drain_depth);
        self.flush_queue(me);
    }

    #[inline(always)]
    fn flush_queue(&self, me: usize) {
        let st = &self.cpus[me];
        // SAFETY: `me` is the calling CPU (the queue's owner); descriptors
        // live in the static per-CPU `cfd` arrays and their owners leave
        // them alone while locked.
        let ran = unsafe { st.queue.run_all_then(|owner| self.wake_if_napping(owner)) };
        st.stats.calls_run.fetch_add(ran as u64, Ordering::Relaxed);
    }

    // ---- Calls -------------------------------------------------------------

    /// Runs `f(arg)` on `cpu`; with `wait`, returns after it ran.
    #[inline]
    pub fn call_single(
        &self,
        cpu: usize,
        f: CallFn,
        arg: usize,
        wait: bool,
    ) -> Result<(), XcallError> {
        // In range for the mask; `call_many_tracked` checks it is online.
        if cpu >= N {
            return Err(XcallError::NoSuchCpu(cpu));
        }
        self.call_many(CpuMask::single(cpu), f, arg, wait)
    }

    /// Runs `f(arg)` on every online CPU, this one included.
    pub fn on_each_cpu(&self, f: CallFn, arg: usize, wait: bool) -> Result<(), XcallError> {
        self.call_many(self.online(), f, arg, wait)
    }

    /// Runs `f(arg)` on every CPU in `mask` (this one too if it is in it:
    /// locally while the others run theirs). With `wait`, returns after all
    /// ran; without, returns once queued and `f` still runs everywhere.
    pub fn call_many(
        &self,
        mask: CpuMask,
        f: CallFn,
        arg: usize,
        wait: bool,
    ) -> Result<(), XcallError> {
        self.call_many_tracked(mask, f, arg, wait)
            .map_err(|e| e.error)
    }

    /// [`call_many`](Self::call_many), telling on failure whether the call
    /// went out: if not, nothing will ever run `f` or read `arg` (the
    /// caller may reuse what `arg` points to at once); if so, the targets
    /// not yet done will still run `f(arg)` (a wait that gave up).
    pub(crate) fn call_many_tracked(
        &self,
        mask: CpuMask,
        f: CallFn,
        arg: usize,
        wait: bool,
    ) -> Result<(), CallFailed> {
        let early = |error| CallFailed { error, sent: false };
        // One read of the online mask for all targets; the lowest target
        // that is not online is the one reported.
        let offline = CpuMask(mask.0 & !self.online().0);
        if let Some(cpu) = offline.iter().next() {
            return Err(early(if cpu >= N {
                XcallError::NoSuchCpu(cpu)
            } else {
                XcallError::Offline(cpu)
            }));
        }
        let me = self.platform.cpu_id();
        let in_irq = self.in_interrupt_on(me);
        if wait && in_irq {
            return Err(early(XcallError::WaitInInterrupt));
        }
        let masked = self.platform.ipl() >= self.platform.ipi_ipl();
        let masked_wait = wait && masked && self.policy.allow_masked_wait.load(Ordering::Relaxed);
        if wait && masked && !masked_wait {
            return Err(early(XcallError::WaitWithIpisMasked));
        }
        // Must not spin for a descriptor (module docs, step 1). Only the
        // masked-wait fault injection still spins, as it is meant to.
        let nonblocking = in_irq || (masked && !masked_wait);
        let remote = mask.without(me);
        let _serial = if wait && !remote.is_empty() && self.policy.serialize.load(Ordering::Relaxed)
        {
            Some(self.lock_serialized())
        } else {
            None
        };
        // A waiting caller listens from here to its return (`crate::listen`):
        // what is posted to it meanwhile is heard in its wait, or by the
        // guard's stop on the way out.
        let _listen = if wait && !masked && !remote.is_empty() && !self.listening.is_listening(me) {
            ListenGuard::start(self, me)
        } else {
            None
        };
        let st = &self.cpus[me];
        let slots = if in_irq { &st.cfd_irq } else { &st.cfd };
        // An interrupt handler on this CPU that makes a call meanwhile uses
        // the separate `cfd_irq` descriptors, so it cannot disturb the ones
        // reserved here.
        // Step 1: reserve every descriptor. Nothing is queued yet, so an
        // exit here releases the reserved ones and leaves nothing behind.
        let mut reserved = CpuMask::EMPTY;
        for t in remote.iter() {
            let csd = &slots[t];
            let got = if nonblocking {
                // One compare-and-swap claims it: in interrupt context the
                // slot is in `cfd_irq`, which nested interrupts on this CPU
                // share.
                csd.flags
                    .compare_exchange(0, LOCK, Ordering::Acquire, Ordering::Relaxed)
                    .map(drop)
                    .map_err(|_| XcallError::Busy { target: t })
            } else {
                // Only this CPU's task context sets this flag word, and
                // nothing interrupts that between the wait and the store
                // with a use of the same word (interrupts and drains use
                // `cfd_irq`), so a plain store reserves it.
                self.wait_unlocked(me, csd, t, false)
                    .map(|()| csd.flags.store(LOCK, Ordering::Relaxed))
            };
            if let Err(e) = got {
                for r in reserved.iter() {
                    // Never queued and never filled: no target has seen it.
                    slots[r].flags.store(0, Ordering::Relaxed);
                }
                return Err(early(e));
            }
            reserved.insert(t);
        }
        // Steps 2 and 3 cannot fail: every push that found a queue empty is
        // followed by its IPI.
        let mut ipis = CpuMask::EMPTY;
        for t in remote.iter() {
            let csd = &slots[t];
            if wait {
                csd.flags.store(LOCK | SYNC, Ordering::Relaxed);
            }
            csd.func.store(f as usize, Ordering::Relaxed);
            csd.arg.store(arg, Ordering::Relaxed);
            csd.owner.store(me, Ordering::Relaxed);
            st.stats.calls_queued.fetch_add(1, Ordering::Relaxed);
            if self.cpus[t].queue.push(csd) {
                ipis.insert(t);
            } else {
                st.stats.calls_piggybacked.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Which of them sleep in their idle loop as they are called: their
        // waits spin longer (`Policy::spin_idle`). Read before the IPIs,
        // which wake them.
        let idle = if wait {
            self.idle_asleep(ipis)
        } else {
            CpuMask::EMPTY
        };
        self.post_all(ipis, IpiMessage::CALL_FUNCTION);
        if mask.contains(me) {
            let prev = self.platform.raise_ipl(self.platform.ipi_ipl());
            f(arg);
            self.platform.restore_ipl(prev);
        }
        if wait {
            for t in remote.iter() {
                self.wait_unlocked(me, &slots[t], t, idle.contains(t))
                    .map_err(|error| CallFailed { error, sent: true })?;
            }
        }
        Ok(())
    }

    /// The serialization lock with drain: try the global lock; on failure drain this
    /// CPU's mailbox with interrupts off before reading it (the order the series' public review asked for, docs/cross-calls.md §1.4) and retry;
    /// under the `nap` policy, nap between tries (the releaser wakes it).
    fn lock_serialized(&self) -> SerialGuard<'_, P, N> {
        let me = self.platform.cpu_id();
        let since = self.platform.cycles();
        loop {
            if let Some(g) = self.serial.try_lock() {
                return SerialGuard {
                    smp: self,
                    guard: Some(g),
                };
            }
            let prev = self.platform.raise_ipl(ipl::HIGH);
            if !self.cpus[me].mailbox.peek().is_empty() {
                self.cpus[me]
                    .stats
                    .lock_drains
                    .fetch_add(1, Ordering::Relaxed);
                self.rescue_drain();
            }
            if !self.spins_at(since, || self.platform.cycles(), self.budget(me)) {
                self.serial_nappers.fetch_or(1 << me, Ordering::SeqCst);
                self.nap_unless(|| !self.serial.is_locked());
                self.serial_nappers.fetch_and(!(1 << me), Ordering::Relaxed);
                self.platform.restore_ipl(prev);
            } else {
                self.platform.restore_ipl(prev);
                self.platform.relax();
            }
        }
    }

    /// At IPL 7: marks this CPU napping, and naps unless `done()` already
    /// holds (module docs, "Napping waiters").
    fn nap_unless(&self, done: impl Fn() -> bool) {
        let st = &self.cpus[self.platform.cpu_id()];
        st.napping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !done() {
            st.stats.naps.fetch_add(1, Ordering::Relaxed);
            self.note_asleep(true);
            self.platform.nap();
            self.note_asleep(false);
        }
        st.napping.store(false, Ordering::Relaxed);
    }

    /// The platform's idle loop tells the core that this CPU sleeps (or is
    /// awake again), for [`spins`](Self::spins).
    pub fn note_asleep(&self, asleep: bool) {
        self.note_asleep_on(self.platform.cpu_id(), asleep);
    }

    /// [`note_asleep`](Self::note_asleep) where the caller knows it runs on
    /// `cpu` (the idle loop: no lookup on its wake-up path).
    #[inline]
    pub fn note_asleep_on(&self, cpu: usize, asleep: bool) {
        let bit = 1u64 << cpu;
        if asleep {
            self.asleep.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.asleep.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// [`note_asleep_on`](Self::note_asleep_on) for the platform's idle
    /// loop, which also marks the CPU asleep in its idle loop rather than
    /// in a wait.
    #[inline]
    pub fn note_idle_asleep_on(&self, cpu: usize, asleep: bool) {
        self.cpus[cpu].idle_asleep.store(asleep, Ordering::Relaxed);
        self.note_asleep_on(cpu, asleep);
    }

    /// Those of `cpus` asleep in the platform's idle loop (not napping in
    /// a wait), under `adaptive` with [`Policy::spin_idle`] set; else
    /// none. Relaxed reads: a hint for how long a wait spins.
    pub fn idle_asleep(&self, cpus: CpuMask) -> CpuMask {
        let mut idle = CpuMask::EMPTY;
        if !self.policy.adaptive.load(Ordering::Relaxed)
            || self.policy.spin_idle.load(Ordering::Relaxed) == 0
        {
            return idle;
        }
        for t in cpus.iter() {
            if self.is_idle_asleep(t) {
                idle.insert(t);
            }
        }
        idle
    }

    /// Whether `cpu` sleeps in the platform's idle loop (not napping in a
    /// wait), whatever the policy; false for a CPU that cannot exist.
    /// Relaxed read.
    pub fn is_idle_asleep(&self, cpu: usize) -> bool {
        cpu < N && self.cpus[cpu].idle_asleep.load(Ordering::Relaxed)
    }

    /// Online CPUs that are not asleep.
    pub fn awake(&self) -> CpuMask {
        CpuMask(self.online().0 & !self.asleep.load(Ordering::Relaxed))
    }

    /// Online CPUs that are awake or have a message in their mailbox (and
    /// so are about to wake): what halt polling counts against its limit
    /// (`crate::idlepoll`). A poller that counted only the awake ones
    /// would keep its core while the CPUs an IPI just went to wait for
    /// one. Relaxed reads: a stale answer only polls or sleeps once more.
    pub fn awake_or_called(&self) -> CpuMask {
        let mut m = self.awake();
        for cpu in self.online().iter() {
            if !self.cpus[cpu].mailbox.peek().is_empty() {
                m.insert(cpu);
            }
        }
        m
    }

    /// Whether a wait that began at cycle `since` spins this iteration
    /// (else it naps). `spin`: always. `nap`: once the wait is older than
    /// `spin_before_nap`. `adaptive`: while the wait is younger than this
    /// CPU's spin budget (`spin_before_nap`, or what its waits taught it
    /// under a `spin_floor`: [`learn_budget`]) and no more than
    /// `spin_cpus` CPUs are awake; a
    /// young wait on a machine with room for every awake CPU costs no wake
    /// IPI and no sleep, and a wait among more awake CPUs than the host has
    /// cores for (the storm) or an old wait gives its time back. Any answer
    /// is safe: a spin re-checks, a nap is the nap protocol's.
    pub fn spins(&self, since: u64) -> bool {
        let budget = self.budget(self.platform.cpu_id());
        self.spins_at(since, || self.platform.cycles(), budget)
    }

    /// How long a wait of `me` spins, in cycles: under `adaptive` with a
    /// [`Policy::spin_floor`], what `me` learned from its waits
    /// ([`learn_budget`]); else the policy's `spin_before_nap`.
    #[inline]
    fn budget(&self, me: usize) -> u64 {
        let max = self.policy.spin_before_nap.load(Ordering::Relaxed);
        if !self.learns() {
            return max;
        }
        match self.cpus[me].spin_budget.load(Ordering::Relaxed) {
            0 => max,
            b => b.min(max),
        }
    }

    /// Whether waits learn their spin budget (`adaptive` with a floor).
    #[inline]
    fn learns(&self) -> bool {
        self.policy.adaptive.load(Ordering::Relaxed)
            && self.policy.spin_floor.load(Ordering::Relaxed) != 0
    }

    /// After a call wait of `me` that began at `start` with `budget` to
    /// spin, and napped or not: the next budget ([`learn_budget`]).
    #[inline]
    fn learn(&self, me: usize, start: u64, budget: u64, napped: bool) {
        if !self.learns() {
            return;
        }
        let end = if napped {
            WaitEnd::Napped(self.platform.cycles().wrapping_sub(start))
        } else {
            WaitEnd::Spun
        };
        let next = learn_budget(
            budget,
            end,
            self.policy.spin_floor.load(Ordering::Relaxed),
            self.policy.spin_before_nap.load(Ordering::Relaxed),
        );
        self.cpus[me].spin_budget.store(next, Ordering::Relaxed);
    }

    /// The spin budget `me` has learned so far, in cycles (0: none yet).
    /// Diagnostics and tests.
    pub fn learned_budget(&self, me: usize) -> u64 {
        self.cpus[me].spin_budget.load(Ordering::Relaxed)
    }

    /// [`spins`](Self::spins) with the clock `now()` gives (read only when
    /// the policy needs it) and the wait's spin budget.
    #[inline]
    fn spins_at(&self, since: u64, now: impl FnOnce() -> u64, budget: u64) -> bool {
        if !self.policy.nap.load(Ordering::Relaxed) {
            return true;
        }
        // No budget: no wait is young (and no clock read is needed).
        let young = budget != 0 && now().wrapping_sub(since) < budget;
        if !self.policy.adaptive.load(Ordering::Relaxed) {
            return young;
        }
        let limit = self.policy.spin_cpus.load(Ordering::Relaxed);
        young && (limit == 0 || self.awake().count() as u64 <= limit)
    }

    /// One iteration of a wait for `done()` that began at cycle `since`:
    /// spin, or nap under the policy once the wait is older than
    /// `spin_before_nap` (then whoever makes `done()` true must call
    /// [`wake_if_napping`](Self::wake_if_napping) for this CPU after its
    /// Release store). Also for the platform's own waits.
    pub fn pause(&self, since: u64, done: impl Fn() -> bool) {
        let budget = self.budget(self.platform.cpu_id());
        self.pause_at(since, || self.platform.cycles(), budget, done);
    }

    /// [`pause`](Self::pause) with the clock `now()` gives and the wait's
    /// spin budget. Returns whether it napped (or would have, had `done()`
    /// not held already).
    #[inline]
    fn pause_at(
        &self,
        since: u64,
        now: impl FnOnce() -> u64,
        budget: u64,
        done: impl Fn() -> bool,
    ) -> bool {
        if self.spins_at(since, now, budget) {
            self.look(done);
            return false;
        }
        let prev = self.platform.raise_ipl(ipl::HIGH);
        self.nap_unless(done);
        self.platform.restore_ipl(prev);
        true
    }

    /// Spins for up to [`LOOKS_PER_CLOCK_READ`] looks at `done()`; returns
    /// whether it held. A look costs a load; the clock reads of `spins`
    /// and of a caller's watchdog cost hundreds of instructions each
    /// (Alpha: rpcc and its 64-bit extension), so a waiter that looked
    /// only between reads would notice the end that much later.
    #[inline]
    fn look(&self, done: impl Fn() -> bool) -> bool {
        for _ in 0..LOOKS_PER_CLOCK_READ {
            self.platform.relax();
            if done() {
                return true;
            }
        }
        false
    }

    /// The waker's side: after the Release store that ends `cpu`'s wait.
    /// The first waker to find `cpu` napping claims the wake (clears the
    /// flag) and sends it; later ones find it clear and send nothing
    /// (module docs, "Napping waiters": one wake per nap).
    pub fn wake_if_napping(&self, cpu: usize) {
        fence(Ordering::SeqCst);
        if cpu < N
            && self.cpus[cpu].napping.load(Ordering::Relaxed)
            && self.cpus[cpu].napping.swap(false, Ordering::Relaxed)
        {
            self.cpus[self.platform.cpu_id()]
                .stats
                .wakes_sent
                .fetch_add(1, Ordering::Relaxed);
            self.platform.wake(cpu);
        }
    }

    /// Spins until `csd` is unlocked, under the watchdog policy. The check
    /// that finds it unlocked already (a descriptor being reserved, nearly
    /// always) is inline; the wait itself is not. `me`: the calling CPU;
    /// `idle`: `target` slept in its idle loop when it was called
    /// ([`Policy::spin_idle`]).
    #[inline]
    fn wait_unlocked(
        &self,
        me: usize,
        csd: &Csd,
        target: usize,
        idle: bool,
    ) -> Result<(), XcallError> {
        if !csd.locked() {
            return Ok(());
        }
        self.wait_locked(me, csd, target, idle)
    }

    /// [`wait_unlocked`](Self::wait_unlocked) past its first look.
    #[inline(never)]
    fn wait_locked(
        &self,
        me: usize,
        csd: &Csd,
        target: usize,
        idle: bool,
    ) -> Result<(), XcallError> {
        let start = self.platform.cycles();
        let mut reports = 0u64;
        self.cpus[me]
            .waiting_for
            .store(target + 1, Ordering::Relaxed);
        // One clock read per iteration, after the looks: it serves the
        // watchdog at once and the next iteration's spin-or-nap choice
        // (a few looks stale), where each used to read the clock itself.
        let mut now = start;
        // A wait for a CPU asleep in its idle loop spins on a budget of
        // its own (`Policy::spin_idle`).
        let spin_idle = if idle {
            self.policy.spin_idle.load(Ordering::Relaxed)
        } else {
            0
        };
        let budget = if spin_idle != 0 {
            self.cpus[me]
                .stats
                .idle_waits
                .fetch_add(1, Ordering::Relaxed);
            spin_idle
        } else {
            self.budget(me)
        };
        let mut napped = false;
        // Listening while it spins (`crate::listen`), where it could take
        // the IPIs it hears anyway.
        let may_listen = self.may_listen();
        // A caller that listens already (`call_many_tracked`) stops itself.
        let caller_listens = self.listening.is_listening(me);
        let mut listening = caller_listens;
        let mailbox = &self.cpus[me].mailbox;
        let result = loop {
            if !csd.locked_relaxed() {
                break Ok(());
            }
            if self.spins_at(start, || now, budget) {
                if may_listen && !listening {
                    self.listening.start(me);
                    listening = true;
                }
                self.look(|| !csd.locked_relaxed() || (listening && !mailbox.peek().is_empty()));
                if listening {
                    self.hear_on(me);
                }
            } else {
                if listening {
                    self.stop_listening_on(me);
                    listening = false;
                }
                let prev = self.platform.raise_ipl(ipl::HIGH);
                self.nap_unless(|| !csd.locked_relaxed());
                self.platform.restore_ipl(prev);
                napped = true;
            }
            if !csd.locked_relaxed() {
                break Ok(());
            }
            now = self.platform.cycles();
            let bound = self.policy.watchdog_cycles.load(Ordering::Relaxed);
            if bound == 0 {
                continue;
            }
            let waited = now.wrapping_sub(start);
            if waited < bound * (reports + 1) {
                continue;
            }
            reports += 1;
            if let Err(e) = self.overdue(csd, target, waited, reports) {
                break Err(e);
            }
        };
        if listening && !caller_listens {
            self.stop_listening_on(me);
        }
        // The looks were Relaxed: this fence makes the wait that saw the
        // descriptor unlocked see everything the function did (pairs with
        // the target's Release store of the flags).
        fence(Ordering::Acquire);
        self.cpus[me].waiting_for.store(0, Ordering::Relaxed);
        // A wait on the idle case's budget teaches the learned one
        // nothing.
        if spin_idle == 0 {
            self.learn(me, start, budget, napped);
        }
        result
    }

    /// A wait passed its `reports`-th watchdog period: reports it, gives
    /// up at the abort threshold, re-sends if asked. Marked out of line so
    /// the wait loop itself stays small enough to keep whole (a hint this
    /// project's GCC backend does not pass on: README, "How the toolchain
    /// works").
    #[cold]
    #[inline(never)]
    fn overdue(
        &self,
        csd: &Csd,
        target: usize,
        waited: u64,
        reports: u64,
    ) -> Result<(), XcallError> {
        let me = self.platform.cpu_id();
        self.cpus[me].stats.stalls.fetch_add(1, Ordering::Relaxed);
        let t = &self.cpus[target];
        self.platform.report_stall(&StallReport {
            waiter: me,
            target,
            target_mailbox: t.mailbox.peek(),
            target_queue_pending: !t.queue.is_empty(),
            target_waiting_for: t.waiting_for.load(Ordering::Relaxed).checked_sub(1),
            waited_cycles: waited,
            nth: reports,
            func: csd.func.load(Ordering::Relaxed),
            arg: csd.arg.load(Ordering::Relaxed),
        });
        let abort_after = self.policy.abort_after.load(Ordering::Relaxed);
        if abort_after != 0 && reports >= abort_after {
            return Err(XcallError::Stalled { target });
        }
        if self.policy.resend.load(Ordering::Relaxed) {
            self.cpus[me].stats.resends.fetch_add(1, Ordering::Relaxed);
            self.post(target, IpiMessage::CALL_FUNCTION);
        }
        Ok(())
    }
}

/// How a call wait ended, for [`learn_budget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// While it spun: spinning paid for itself (no nap, no wake).
    Spun,
    /// After it spun its budget and napped; this many cycles in all.
    Napped(u64),
}

/// The spin budget of a CPU's next call waits, learned from the wait that
/// just ended (`Smp::learn`), much as a halt-polling governor learns its
/// window from how its halts end:
///
/// - it ended while spinning: the spin paid; grow the budget by an eighth;
/// - it spun `budget` cycles, napped, and still ended within `max` (the
///   most any wait spins): a longer spin would have caught it without
///   the nap and its wake; double it;
/// - it lasted beyond twice `max`: no spin this policy allows would have
///   caught it, and the spin only held a core (where virtual CPUs share
///   fewer host cores, the one its target needed); halve it;
/// - between the two: keep it.
///
/// So a CPU whose waits mostly end soon keeps spinning up to `max` through
/// the odd long wait (a host that preempts a vCPU now and then: the
/// eighths outweigh the halvings), and one whose waits mostly outlast any
/// spin (more busy vCPUs than host cores) falls to `floor`. The result
/// stays within `[min(floor, max), max]`.
pub fn learn_budget(budget: u64, end: WaitEnd, floor: u64, max: u64) -> u64 {
    let floor = floor.min(max);
    let next = match end {
        WaitEnd::Spun => budget.saturating_add((budget / 8).max(1)),
        WaitEnd::Napped(waited) if waited <= max => budget.saturating_mul(2),
        WaitEnd::Napped(waited) if waited / 2 > max => budget / 2,
        WaitEnd::Napped(_) => budget,
    };
    next.clamp(floor, max)
}

/// How often a spinning waiter looks at what it waits for between two of
/// its clock reads ([`Smp::pause`]). Measured (`bench`, 2 CPUs, busy
/// target, back-to-back boots): 8 and 64 looks cut `call_single(wait)`
/// alike, by about a sixth against one look per read.
pub const LOOKS_PER_CLOCK_READ: u32 = 16;

/// A caller's listening (`crate::listen`), stopped when it goes.
struct ListenGuard<'a, P: Hooks, const N: usize>(&'a Smp<P, N>, usize);

impl<'a, P: Hooks, const N: usize> ListenGuard<'a, P, N> {
    /// On `me`, whose IPL is below the IPI level.
    #[inline]
    fn start(smp: &'a Smp<P, N>, me: usize) -> Option<Self> {
        smp.start_listening_unmasked(me)
            .then_some(ListenGuard(smp, me))
    }
}

impl<P: Hooks, const N: usize> Drop for ListenGuard<'_, P, N> {
    #[inline]
    fn drop(&mut self) {
        if self.0.listening.is_listening(self.1) {
            self.0.stop_listening_on(self.1);
        }
    }
}

/// The serialization lock, held: releasing it wakes the CPUs napping for it.
struct SerialGuard<'a, P: Hooks, const N: usize> {
    smp: &'a Smp<P, N>,
    guard: Option<spin::MutexGuard<'a, ()>>,
}

impl<P: Hooks, const N: usize> Drop for SerialGuard<'_, P, N> {
    fn drop(&mut self) {
        drop(self.guard.take());
        fence(Ordering::SeqCst);
        let nappers = CpuMask(self.smp.serial_nappers.load(Ordering::Relaxed));
        for cpu in nappers.iter() {
            self.smp.wake_if_napping(cpu);
        }
    }
}

// The inbox `CpuState`'s docs describe, checked where it is built: the
// state starts a line and every word a sender writes ends within it
// (the descriptors and `napping` are `Line`s or line-sized by their types).
#[cfg(not(loom))]
const _: () = {
    use crate::line::LINE;
    use core::mem::{align_of, offset_of, size_of};
    type State = CpuState<1>;
    assert!(align_of::<State>() >= LINE);
    assert!(offset_of!(State, mailbox) + size_of::<Mailbox>() <= LINE);
    assert!(offset_of!(State, queue) + size_of::<CallQueue>() <= LINE);
    assert!(offset_of!(State, ipi_sent) + size_of::<[AtomicU64; IpiMessage::COUNT]>() <= LINE);
    assert!(offset_of!(State, census) + crate::census::Census::SENDERS_END <= LINE);
    assert!(size_of::<Csd>() == LINE);
};
