//! loom model checking of the lock-free parts of the core: the mailbox's
//! post/swap loop, the call queue with its descriptor lock flag, and
//! `Smp::call_many` itself with every way it can return. The very source
//! files of `src/` are compiled here against loom's atomics (through a
//! `sync` module of this crate), and loom explores their thread
//! interleavings and weak-memory outcomes exhaustively (within its bounds).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom` (what
//! `cargo xtask test` does). Without `--cfg loom` this file is empty.
#![cfg(loom)]

/// loom atomics under the names `src/` uses. loom's atomics cannot be
/// created in a `const fn`, so each wrapper creates its loom atomic on first
/// use, inside the model run (every loom iteration builds fresh values).
// Each shim type offers the whole set of operations; not every module uses all.
#[allow(dead_code)]
mod sync {
    use std::sync::OnceLock;

    pub use loom::sync::atomic::{Ordering, fence};

    macro_rules! shim {
        ($name:ident, $t:ty, $($gen:tt)*) => {
            pub struct $name $($gen)* {
                init: $t,
                cell: OnceLock<loom::sync::atomic::$name $($gen)*>,
            }
            // SAFETY: only the inner loom atomic is shared, and it is Sync;
            // `init` is read-only.
            unsafe impl $($gen)* Sync for $name $($gen)* {}
            // SAFETY: as above.
            unsafe impl $($gen)* Send for $name $($gen)* {}
            impl $($gen)* Default for $name $($gen)* where $t: Default {
                fn default() -> Self {
                    Self::new(<$t>::default())
                }
            }
            impl $($gen)* $name $($gen)* {
                pub const fn new(v: $t) -> Self {
                    Self { init: v, cell: OnceLock::new() }
                }
                fn a(&self) -> &loom::sync::atomic::$name $($gen)* {
                    self.cell.get_or_init(|| loom::sync::atomic::$name::new(self.init))
                }
                pub fn load(&self, o: Ordering) -> $t {
                    self.a().load(o)
                }
                pub fn store(&self, v: $t, o: Ordering) {
                    self.a().store(v, o)
                }
                pub fn swap(&self, v: $t, o: Ordering) -> $t {
                    self.a().swap(v, o)
                }
                pub fn compare_exchange(&self, c: $t, n: $t, s: Ordering, f: Ordering) -> Result<$t, $t> {
                    self.a().compare_exchange(c, n, s, f)
                }
                pub fn compare_exchange_weak(&self, c: $t, n: $t, s: Ordering, f: Ordering) -> Result<$t, $t> {
                    self.a().compare_exchange_weak(c, n, s, f)
                }
            }
        };
    }

    shim!(AtomicBool, bool,);
    shim!(AtomicU64, u64,);
    shim!(AtomicU32, u32,);
    shim!(AtomicUsize, usize,);
    shim!(AtomicPtr, *mut T, <T>);

    macro_rules! rmw {
        ($name:ident, $t:ty) => {
            impl $name {
                pub fn fetch_or(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_or(v, o)
                }
                pub fn fetch_and(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_and(v, o)
                }
                pub fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_add(v, o)
                }
                pub fn fetch_sub(&self, v: $t, o: Ordering) -> $t {
                    self.a().fetch_sub(v, o)
                }
            }
        };
    }
    rmw!(AtomicU64, u64);
    rmw!(AtomicU32, u32);
    rmw!(AtomicUsize, usize);
}

#[path = "../src/census.rs"]
#[allow(dead_code)]
mod census;
#[path = "../src/cpumask.rs"]
#[allow(dead_code)]
mod cpumask;
#[path = "../src/lazyflush.rs"]
#[allow(dead_code)]
mod lazyflush;
#[path = "../src/line.rs"]
#[allow(dead_code)]
mod line;
#[path = "../src/listen.rs"]
#[allow(dead_code)]
mod listen;
#[path = "../src/mailbox.rs"]
#[allow(dead_code)]
mod mailbox;
#[path = "../src/platform.rs"]
#[allow(dead_code)]
mod platform;
#[path = "../src/queue.rs"]
#[allow(dead_code)]
mod queue;
#[path = "../src/task.rs"]
#[allow(dead_code)]
mod task;
#[path = "../src/taskslot.rs"]
#[allow(dead_code)]
mod taskslot;
#[path = "../src/xcall.rs"]
#[allow(dead_code)]
mod xcall;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use mailbox::{IpiMessage, Mailbox};
use queue::{CallQueue, Csd, LOCK, SYNC};

/// Creates the loom atomics behind a descriptor in the calling thread. The
/// shim creates them on first use; a creation in one thread and a use in
/// another without a happens-before edge is a causality violation to loom,
/// so shared values are touched before any thread is spawned.
fn touch_csd(c: &Csd) {
    c.flags.load(Ordering::Relaxed);
    c.func.load(Ordering::Relaxed);
    c.arg.load(Ordering::Relaxed);
    c.next.load(Ordering::Relaxed);
}

/// Two senders post different messages while the owner drains: the owner
/// ends up having handled every posted bit, none twice in one take.
#[test]
fn mailbox_posts_are_all_taken() {
    loom::model(|| {
        let mb = Arc::new(Mailbox::new());
        mb.peek(); // create the atomic here (see touch_csd)
        let senders: Vec<_> = [IpiMessage::CALL_FUNCTION, IpiMessage::PING]
            .into_iter()
            .map(|m| {
                let mb = mb.clone();
                thread::spawn(move || {
                    mb.post(m);
                })
            })
            .collect();
        let mut seen = IpiMessage::empty();
        mb.drain(|got| {
            assert!(
                (seen & got).is_empty() || got.is_empty(),
                "a bit taken twice without a new post"
            );
            seen |= got;
        });
        for s in senders {
            s.join().unwrap();
        }
        mb.drain(|got| seen |= got);
        assert_eq!(seen, IpiMessage::CALL_FUNCTION | IpiMessage::PING);
    });
}

static RAN: [AtomicUsizeStd; 2] = [AtomicUsizeStd::new(0), AtomicUsizeStd::new(0)];
use std::sync::atomic::AtomicUsize as AtomicUsizeStd;

fn mark(arg: usize) {
    RAN[arg].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Two CPUs queue a call on a third, each interrupting it only if the queue
/// was empty (the "send only if empty" rule); the target drains when
/// interrupted. The invariant that makes the rule safe: whenever the queue
/// is left non-empty, some interrupt is still owed (a push saw it empty
/// after the target's last take). Every call runs exactly once.
///
/// The producers here are a hand-written copy of "push, then interrupt if
/// it was empty", which always sends what it owes; whether the real
/// `call_many` does so on every exit (an earlier version did not) is
/// checked by the `call_many_*_exit_strands_nothing` tests below, which run
/// it.
#[test]
fn queue_never_strands_a_call() {
    loom::model(|| {
        for r in &RAN {
            r.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        let q = Arc::new(CallQueue::new());
        let csds = Arc::new([Csd::new(), Csd::new()]);
        // Interrupts owed to the target (pushes that found the queue empty).
        let owed = Arc::new(AtomicUsize::new(0));
        q.is_empty(); // create the atomics here (see touch_csd)
        csds.iter().for_each(touch_csd);
        let producers: Vec<_> = (0..2)
            .map(|i| {
                let (q, csds, owed) = (q.clone(), csds.clone(), owed.clone());
                thread::spawn(move || {
                    let c = &csds[i];
                    c.flags.store(LOCK, Ordering::Relaxed);
                    c.func.store(mark as fn(usize) as usize, Ordering::Relaxed);
                    c.arg.store(i, Ordering::Relaxed);
                    if q.push(c) {
                        owed.fetch_add(1, Ordering::Release);
                    }
                })
            })
            .collect();
        // The target: take one interrupt if one is owed, then run the queue.
        let mut ran = 0;
        if owed.load(Ordering::Acquire) > 0 {
            // SAFETY: this thread is the queue's only consumer; descriptors
            // outlive the model run (held by the Arc).
            ran += unsafe { q.run_all() };
        }
        for p in producers {
            p.join().unwrap();
        }
        // After every producer: if calls are still queued, an interrupt is
        // owed beyond the one taken (so the real target would be told).
        let taken = usize::from(ran > 0);
        if !q.is_empty() {
            assert!(
                owed.load(Ordering::Acquire) > taken,
                "calls left queued with no interrupt owed"
            );
        }
        // SAFETY: as above.
        ran += unsafe { q.run_all() };
        assert_eq!(ran, 2);
        for r in &RAN {
            assert_eq!(
                r.load(std::sync::atomic::Ordering::Relaxed),
                1,
                "each call ran exactly once"
            );
        }
        assert!(
            csds.iter().all(|c| !c.locked()),
            "every descriptor unlocked"
        );
    });
}

/// The call's body: `arg` points at a loom atomic the caller keeps alive.
fn write_data(arg: usize) {
    // SAFETY: the test passes the address of an AtomicUsize held in an Arc
    // that outlives the call.
    let data = unsafe { &*(arg as *const AtomicUsize) };
    data.store(42, Ordering::Relaxed);
}

/// A synchronous call: the waiter that sees its descriptor unlocked must see
/// what the function wrote (SYNC unlock is a Release after the call; the
/// waiter's check is an Acquire). The function writes with Relaxed, so only
/// the descriptor's protocol can make this hold.
///
/// Checked by mutation: unlocking before the call makes this test fail. A
/// limit of loom 0.7 found the same way: weakening the unlock to Relaxed is
/// *not* caught here, because loom stops exploring the stale read once the
/// unlocking thread has itself read the flag word (as `run_all` does to test
/// SYNC); a minimal message-passing test without that read is caught. The
/// Release/Acquire pair is therefore argued in the module docs, not proven
/// by this test.
#[test]
fn sync_unlock_publishes_the_calls_effects() {
    loom::model(|| {
        let data = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(CallQueue::new());
        let csd = Arc::new(Csd::new());
        q.is_empty();
        touch_csd(&csd);
        csd.flags.store(LOCK | SYNC, Ordering::Relaxed);
        csd.func
            .store(write_data as fn(usize) as usize, Ordering::Relaxed);
        csd.arg
            .store(&*data as *const AtomicUsize as usize, Ordering::Relaxed);
        q.push(&csd);
        let target = {
            let (q, csd) = (q.clone(), csd.clone());
            thread::spawn(move || {
                let _keep = csd;
                // SAFETY: the only consumer; the descriptor is kept alive.
                unsafe { q.run_all() };
            })
        };
        while csd.locked() {
            thread::yield_now();
        }
        assert_eq!(
            data.load(Ordering::Relaxed),
            42,
            "the waiter saw the unlock but not the call's write"
        );
        target.join().unwrap();
    });
}

// ---- call_many with its real exits ------------------------------------------

/// A machine for `Smp` under loom: per-CPU interrupt lines (loom atomics),
/// and per-thread CPU identity, IPL and interrupt state (loom thread
/// locals: loom runs every model thread on one OS thread). The cycle
/// counter advances by one per read, so a watchdog with a bound of 1 gives
/// up after one spin: a wait in the model either finds its descriptor free
/// at once or is aborted, and loom explores both.
struct LoomPlatform {
    /// An interrupt was requested for this CPU and not yet taken.
    line: [sync::AtomicBool; CPUS],
}

const CPUS: usize = 3;

loom::thread_local! {
    static CPU: std::cell::Cell<usize> = std::cell::Cell::new(0);
    static IPL: std::cell::Cell<u8> = std::cell::Cell::new(0);
    static IN_IRQ: std::cell::Cell<bool> = std::cell::Cell::new(false);
    static CYCLES: std::cell::Cell<u64> = std::cell::Cell::new(0);
}

impl platform::Platform for LoomPlatform {
    fn cpu_id(&self) -> usize {
        CPU.with(|c| c.get())
    }
    fn send_ipi(&self, cpu: usize) {
        self.line[cpu].store(true, Ordering::Release);
    }
    fn raise_ipl(&self, level: u8) -> u8 {
        IPL.with(|i| {
            let prev = i.get();
            i.set(prev.max(level));
            prev
        })
    }
    fn restore_ipl(&self, previous: u8) {
        IPL.with(|i| i.set(previous));
    }
    fn ipl(&self) -> u8 {
        IPL.with(|i| i.get())
    }
    fn ipi_ipl(&self) -> u8 {
        platform::ipl::IPI_QEMU_PALCODE
    }
    fn in_interrupt(&self) -> bool {
        IN_IRQ.with(|i| i.get())
    }
    fn invalidate_tlb(&self, _op: platform::TlbOp) {}
    fn imb(&self) {}
    fn load_asn(&self, _asn: u64) {}
    fn cycles(&self) -> u64 {
        CYCLES.with(|c| {
            c.set(c.get() + 1);
            c.get()
        })
    }
    fn cycle_freq(&self) -> u64 {
        1
    }
    fn relax(&self) {
        thread::yield_now();
    }
}

impl xcall::Hooks for LoomPlatform {}

type LoomSmp = xcall::Smp<LoomPlatform, CPUS>;

fn loom_smp() -> Arc<LoomSmp> {
    let smp = Arc::new(xcall::Smp::new(LoomPlatform {
        line: [const { sync::AtomicBool::new(false) }; CPUS],
    }));
    for c in 0..CPUS {
        smp.set_online(c);
        smp.platform.line[c].load(Ordering::Relaxed);
        smp.cpu(c).mailbox.peek();
        smp.cpu(c).call_pending();
    }
    smp.policy.watchdog_cycles.store(1, Ordering::Relaxed);
    smp.policy.abort_after.store(1, Ordering::Relaxed);
    smp
}

/// Takes `cpu`'s interrupt if one is owed: as the kernel's entry does, on
/// the calling model thread acting as `cpu`, in interrupt context.
fn take_interrupt(smp: &LoomSmp, cpu: usize) {
    if smp.platform.line[cpu].swap(false, Ordering::Acquire) {
        let (me, irq) = (
            CPU.with(|c| c.replace(cpu)),
            IN_IRQ.with(|i| i.replace(true)),
        );
        smp.handle_ipi();
        CPU.with(|c| c.set(me));
        IN_IRQ.with(|i| i.set(irq));
    }
}

/// Counts runs of a call: `arg` is the address of its counter (one per
/// model iteration, kept alive by the iteration; the tests run in parallel,
/// so no statics).
fn called(arg: usize) {
    // SAFETY: `arg` is the address of an `AtomicUsizeStd` in an `Arc` that
    // the model iteration holds until after every call ran.
    let n = unsafe { &*(arg as *const AtomicUsizeStd) };
    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// CPU 0 calls CPUs 1 and 2 while its descriptor for CPU 2 may still be in
/// flight (an earlier call that CPU 2 runs concurrently): depending on the
/// interleaving `call_many` succeeds or takes its early exit (`Busy` from
/// interrupt context, `Stalled` from task context when the watchdog gives
/// up on that descriptor). Whatever it returned, once every interrupt owed
/// has been taken no call may be left queued: a queue that is non-empty
/// with no interrupt owed is never looked at again, and every later caller
/// to that CPU piggybacks on it and hangs. A call that
/// returned Ok ran exactly once; one that failed ran nowhere.
fn call_many_exits(in_irq: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let counts = std::sync::Arc::new([AtomicUsizeStd::new(0), AtomicUsizeStd::new(0)]);
        let (earlier, this) = (
            &counts[0] as *const _ as usize,
            &counts[1] as *const _ as usize,
        );
        let smp = loom_smp();
        IN_IRQ.with(|i| i.set(in_irq));
        // The earlier call: CPU 0's descriptor for CPU 2 is in flight.
        smp.call_many(cpumask::CpuMask::single(2), called, earlier, false)
            .unwrap();
        let cpu2 = {
            let smp = smp.clone();
            thread::spawn(move || {
                CPU.with(|c| c.set(2));
                take_interrupt(&smp, 2);
            })
        };
        let r = smp.call_many(cpumask::CpuMask(0b110), called, this, !in_irq);
        match r {
            Ok(()) => {}
            Err(xcall::XcallError::Busy { target: 2 }) if in_irq => {}
            Err(xcall::XcallError::Stalled { .. }) if !in_irq => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        cpu2.join().unwrap();
        for c in 0..CPUS {
            take_interrupt(&smp, c);
        }
        for c in 0..CPUS {
            assert!(
                !smp.cpu(c).call_pending(),
                "{r:?}: CPU {c}'s queue holds a call and no interrupt is owed to it"
            );
        }
        let ran = counts[1].load(std::sync::atomic::Ordering::Relaxed);
        match r {
            Ok(()) => assert_eq!(ran, 2, "the call ran on CPUs 1 and 2"),
            Err(xcall::XcallError::Busy { .. }) => {
                assert_eq!(ran, 0, "a refused call ran somewhere")
            }
            // A wait that gave up may give up after the calls went out.
            Err(_) => assert!(ran <= 2),
        }
        assert_eq!(
            counts[0].load(std::sync::atomic::Ordering::Relaxed),
            1,
            "the earlier call ran once"
        );
    });
}

/// `call_many` from interrupt context: the `Busy` exit.
#[test]
fn call_many_busy_exit_strands_nothing() {
    call_many_exits(true);
}

/// `call_many` from task context, waiting, with the watchdog's abort: the
/// `Stalled` exit (here while waiting for the descriptor of a later target).
#[test]
fn call_many_stalled_exit_strands_nothing() {
    call_many_exits(false);
}

// ---- napping waiters: the nap fences (src/xcall.rs, "Napping waiters") ----
//
// Each nap is a store-buffering (Dekker) pair: the waiter stores `napping`
// then loads its condition; the waker stores the condition (Release) then
// loads `napping`; a SeqCst fence sits between the store and the load on
// each side. Without either fence both loads may read the old values: the
// waiter naps and the waker sends no wake (a lost wake: the waiter sleeps
// until the next tick).
//
// What loom 0.7 can say about it (its source, rt/atomic.rs and
// rt/thread.rs): a `fence(SeqCst)` is modelled as an AcqRel fence plus a
// join with one global "SeqCst causality" that every SeqCst fence both
// reads and extends, so two SeqCst fences are ordered by the schedule and
// the later one sees everything before the earlier one: with a fence on
// each side, loom never lets both loads read the old values, and that is
// also what C++20 promises for this pair. SeqCst *accesses* get nothing
// beyond Acquire/Release in loom (its `seq_cst()` is a no-op, by its own
// comment "may fail to model correct code, but will not silently allow
// bugs"), which is exactly right here: the waiter's `store(true, SeqCst)`
// does not order it before its later load, so deleting `nap_unless`'s
// fence is caught below, although x86 (where that store is an `xchg`)
// never shows it (tests/nap_fences.rs).
//
// Checked by deleting each fence of src/xcall.rs in a copy of the tree:
// `nap_pause_and_wake_if_napping_lose_no_wake` and
// `nap_sync_call_wakes_its_napping_caller` fail without `nap_unless`'s
// fence and without `wake_if_napping`'s. What loom cannot check here: the
// serialization lock's fence (`SerialGuard::drop`). The lock is a
// `spin::Mutex`, whose atomics are core's, not loom's: loom does not see
// them, and they behave sequentially consistently in a model (every model
// thread runs on one OS thread), so the waiter's read of the lock can never
// be stale and deleting that fence changes nothing in a loom model.
// tests/nap_fences.rs covers it on real threads; `nap_copy_lock_*` below
// shows that loom would catch it if the lock's word were a loom atomic.

/// A platform for the nap models: CPU identity and IPL per model thread
/// (the thread locals above), IPIs as line flags, and a `nap()` that lasts
/// until it is woken or the CPU it waits for has made its decision (a real
/// nap lasts until the wake or the tick; ending it earlier would let the
/// waiter clear `napping` before the waker looks, which is not a lost wake).
struct NapPlatform {
    line: [sync::AtomicBool; NAP_CPUS],
    woken: [sync::AtomicBool; NAP_CPUS],
    /// Wakes sent to each CPU (a nap ends at one it has not seen yet).
    wakes: [sync::AtomicUsize; NAP_CPUS],
    /// The waker has decided (woken CPU 0 or not).
    settled: sync::AtomicBool,
}

/// Three CPUs: a waiter and up to two wakers.
const NAP_CPUS: usize = 3;

loom::thread_local! {
    /// The wakes this model thread's naps have seen end a nap.
    static WAKES_SEEN: std::cell::Cell<usize> = std::cell::Cell::new(0);
    /// A nap of this thread ended because every waker had decided and no
    /// wake was left for it: a lost wake (a real nap would last until
    /// the clock's tick).
    static NAP_LOST: std::cell::Cell<bool> = std::cell::Cell::new(false);
}

impl platform::Platform for NapPlatform {
    fn cpu_id(&self) -> usize {
        CPU.with(|c| c.get())
    }
    fn send_ipi(&self, cpu: usize) {
        self.line[cpu].store(true, Ordering::Release);
    }
    fn raise_ipl(&self, level: u8) -> u8 {
        IPL.with(|i| {
            let prev = i.get();
            i.set(prev.max(level));
            prev
        })
    }
    fn restore_ipl(&self, previous: u8) {
        IPL.with(|i| i.set(previous));
    }
    fn ipl(&self) -> u8 {
        IPL.with(|i| i.get())
    }
    fn ipi_ipl(&self) -> u8 {
        platform::ipl::IPI_QEMU_PALCODE
    }
    fn in_interrupt(&self) -> bool {
        IN_IRQ.with(|i| i.get())
    }
    fn invalidate_tlb(&self, _op: platform::TlbOp) {}
    fn imb(&self) {}
    fn load_asn(&self, _asn: u64) {}
    fn cycles(&self) -> u64 {
        0
    }
    fn cycle_freq(&self) -> u64 {
        1
    }
    fn relax(&self) {
        thread::yield_now();
    }
    fn nap(&self) {
        let me = CPU.with(|c| c.get());
        // Yield first: loom then stops offering this thread the values it
        // already read before (a spin without a yield is unbounded).
        // Each nap ends at a wake sent after the last one a nap of this
        // thread saw, or once the wakers have decided (settled read first:
        // a wake sent before the decision is then visible too).
        loop {
            thread::yield_now();
            let settled = self.settled.load(Ordering::Acquire);
            let wakes = self.wakes[me].load(Ordering::Acquire);
            if wakes > WAKES_SEEN.with(|w| w.get()) {
                WAKES_SEEN.with(|w| w.set(wakes));
                return;
            }
            if settled {
                NAP_LOST.with(|l| l.set(true));
                return;
            }
        }
    }
    fn wake(&self, cpu: usize) {
        self.woken[cpu].store(true, Ordering::Release);
        self.wakes[cpu].fetch_add(1, Ordering::Release);
    }
}

impl xcall::Hooks for NapPlatform {}

type NapSmp = xcall::Smp<NapPlatform, NAP_CPUS>;

/// A machine with the `nap` policy (no spinning first), its loom atomics
/// created in the calling thread (see `touch_csd`). `napping` is private:
/// `wake_if_napping` reads it (nobody naps yet, so it wakes no one).
fn nap_smp() -> Arc<NapSmp> {
    let smp = Arc::new(xcall::Smp::new(NapPlatform {
        line: [const { sync::AtomicBool::new(false) }; NAP_CPUS],
        woken: [const { sync::AtomicBool::new(false) }; NAP_CPUS],
        wakes: [const { sync::AtomicUsize::new(0) }; NAP_CPUS],
        settled: sync::AtomicBool::new(false),
    }));
    smp.policy.nap.store(true, Ordering::Relaxed);
    smp.policy.spin_before_nap.store(0, Ordering::Relaxed);
    smp.policy.watchdog_cycles.load(Ordering::Relaxed);
    smp.policy.serialize.load(Ordering::Relaxed);
    smp.policy.poll_in_irq.load(Ordering::Relaxed);
    smp.policy.allow_masked_wait.load(Ordering::Relaxed);
    smp.platform.settled.load(Ordering::Relaxed);
    for c in 0..NAP_CPUS {
        smp.set_online(c);
        smp.platform.line[c].load(Ordering::Relaxed);
        smp.platform.woken[c].load(Ordering::Relaxed);
        smp.platform.wakes[c].load(Ordering::Relaxed);
        smp.cpu(c).mailbox.peek();
        smp.cpu(c).call_pending();
        smp.cpu(c).waiting_for.load(Ordering::Relaxed);
        smp.cpu(c).stats.naps.load(Ordering::Relaxed);
        smp.cpu(c).stats.wakes_sent.load(Ordering::Relaxed);
        smp.wake_if_napping(c);
    }
    smp
}

/// Executions of a nap model, and how many napped: both kinds must occur,
/// or "no lost wake" was checked on nothing.
#[derive(Default)]
struct NapRuns {
    runs: AtomicUsizeStd,
    napped: AtomicUsizeStd,
}

impl NapRuns {
    fn count(&self, napped: bool) {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.napped
            .fetch_add(napped as usize, std::sync::atomic::Ordering::Relaxed);
    }

    fn assert_both(&self, what: &str) {
        let (runs, napped) = (
            self.runs.load(std::sync::atomic::Ordering::Relaxed),
            self.napped.load(std::sync::atomic::Ordering::Relaxed),
        );
        eprintln!("{what}: {runs} executions, {napped} with a nap");
        assert!(
            napped > 0 && napped < runs,
            "{what}: {napped} of {runs} executions napped"
        );
    }
}

/// The public wait for a platform's own condition: CPU 0 waits once in the
/// real `pause` (-> `nap_unless`) for a flag; CPU 1 sets the flag (Release)
/// and calls the real `wake_if_napping(0)`. A nap is never left without a
/// wake.
#[test]
fn nap_pause_and_wake_if_napping_lose_no_wake() {
    let runs = std::sync::Arc::new(NapRuns::default());
    let r = runs.clone();
    loom::model(move || {
        let smp = nap_smp();
        let done = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (smp, done) = (smp.clone(), done.clone());
            thread::spawn(move || {
                CPU.with(|c| c.set(0));
                smp.pause(0, || done.load(Ordering::Acquire) != 0);
                smp.cpu(0).stats.naps.load(Ordering::Relaxed) != 0
            })
        };
        CPU.with(|c| c.set(1));
        done.store(1, Ordering::Release);
        smp.wake_if_napping(0);
        let woken = smp.platform.woken[0].load(Ordering::Relaxed);
        smp.platform.settled.store(true, Ordering::Release);
        let napped = waiter.join().unwrap();
        r.count(napped);
        assert!(
            !(napped && !woken),
            "lost wake: CPU 0 napped and CPU 1 did not see it napping"
        );
    });
    runs.assert_both("pause / wake_if_napping");
}

/// One nap, two wakers: CPU 0 waits in the real `pause` until both of
/// two flags are set; CPUs 1 and 2 each set one (Release) and call the
/// real `wake_if_napping(0)`. The first waker to find CPU 0 napping claims
/// the wake and the other sends none; the waiter, woken, re-checks and
/// naps again if one flag is still clear, so a later waker must find it
/// napping again. No nap may outlast both decisions (a lost wake), and
/// each setting of `napping` is claimed by one wake at most. Seen failing
/// without the claim (`wake_if_napping` a load only: "2 wakes for 1 times
/// napping was set") and with `napping` set before the waiter's first nap
/// only (the claim then clears it for good: "lost wake").
#[test]
fn nap_two_wakers_one_claims_lose_no_wake() {
    let runs = std::sync::Arc::new(NapRuns::default());
    let r = runs.clone();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        let smp = nap_smp();
        let flags = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let decided = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (1..=2)
            .map(|cpu| {
                let (smp, flags, decided) = (smp.clone(), flags.clone(), decided.clone());
                thread::spawn(move || {
                    CPU.with(|c| c.set(cpu));
                    flags[cpu - 1].store(1, Ordering::Release);
                    smp.wake_if_napping(0);
                    if decided.fetch_add(1, Ordering::AcqRel) == 1 {
                        smp.platform.settled.store(true, Ordering::Release);
                    }
                })
            })
            .collect();
        CPU.with(|c| c.set(0));
        let both = || flags.iter().all(|f| f.load(Ordering::Acquire) != 0);
        // Each `pause` (no spin budget) sets `napping` once, then naps or
        // not.
        let mut pauses = 0;
        while !both() {
            smp.pause(0, both);
            pauses += 1;
        }
        for w in wakers {
            w.join().unwrap();
        }
        let naps = smp.cpu(0).stats.naps.load(Ordering::Relaxed);
        let sent = smp.cpu(1).stats.wakes_sent.load(Ordering::Relaxed)
            + smp.cpu(2).stats.wakes_sent.load(Ordering::Relaxed);
        r.count(naps != 0);
        assert!(
            !NAP_LOST.with(|l| l.get()),
            "lost wake: a nap of CPU 0 outlasted both wakers' decisions"
        );
        assert!(
            sent <= pauses,
            "{sent} wakes for {pauses} times napping was set: a wake was not claimed"
        );
    });
    runs.assert_both("two wakers");
}

fn do_nothing(_: usize) {}

/// A whole synchronous call: CPU 0 `call_single(1, .., wait)` waits in the
/// real `wait_loop` -> `pause` -> `nap_unless`; CPU 1 takes the IPI and
/// runs the real `handle_ipi` -> `run_all_then`, which unlocks the
/// descriptor and calls `wake_if_napping(owner)`.
#[test]
fn nap_sync_call_wakes_its_napping_caller() {
    let runs = std::sync::Arc::new(NapRuns::default());
    let r = runs.clone();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let smp = nap_smp();
        let target = {
            let smp = smp.clone();
            thread::spawn(move || {
                CPU.with(|c| c.set(1));
                // A load, not a swap: loom orders a plain store and a
                // later RMW of another thread only partially, and a swap
                // loop can keep reading its own earlier `false`.
                while !smp.platform.line[1].load(Ordering::Acquire) {
                    thread::yield_now();
                }
                let irq = IN_IRQ.with(|i| i.replace(true));
                let ipl = IPL.with(|i| i.replace(platform::ipl::HIGH));
                smp.handle_ipi();
                IN_IRQ.with(|i| i.set(irq));
                IPL.with(|i| i.set(ipl));
                let woken = smp.platform.woken[0].load(Ordering::Relaxed);
                smp.platform.settled.store(true, Ordering::Release);
                woken
            })
        };
        CPU.with(|c| c.set(0));
        smp.call_single(1, do_nothing, 0, true).unwrap();
        let napped = smp.cpu(0).stats.naps.load(Ordering::Relaxed) != 0;
        let woken = target.join().unwrap();
        r.count(napped);
        assert!(
            !(napped && !woken),
            "lost wake: the caller napped and the target did not see it napping"
        );
    });
    runs.assert_both("synchronous call");
}

/// Hand copies of the nap pair on plain loom atomics, each fence optional:
/// whether loom finds an execution with a lost wake. `lock`: the
/// serialization lock's shape (the waiter sets its bit in the nappers'
/// mask first, the unlocker fences and reads the mask before
/// `wake_if_napping`), with `release_fence` the unlocker's fence; else the
/// descriptor's shape (`waker_fence` is `wake_if_napping`'s).
fn nap_copy_finds_lost_wake(
    lock: bool,
    waiter_fence: bool,
    waker_fence: bool,
    release_fence: bool,
) -> bool {
    use std::sync::atomic::AtomicBool as StdBool;
    let found = std::sync::Arc::new(StdBool::new(false));
    let seen = found.clone();
    loom::model(move || {
        let napping = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let locked = Arc::new(loom::sync::atomic::AtomicBool::new(true));
        let nappers = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (napping, locked, nappers) = (napping.clone(), locked.clone(), nappers.clone());
            thread::spawn(move || {
                if lock {
                    nappers.swap(true, Ordering::SeqCst);
                }
                // nap_unless
                napping.store(true, Ordering::SeqCst);
                if waiter_fence {
                    loom::sync::atomic::fence(Ordering::SeqCst);
                }
                locked.load(Ordering::Acquire)
            })
        };
        locked.store(false, Ordering::Release);
        let listed = if lock {
            if release_fence {
                loom::sync::atomic::fence(Ordering::SeqCst);
            }
            nappers.load(Ordering::Relaxed)
        } else {
            true
        };
        // wake_if_napping
        let woken = listed && {
            if waker_fence {
                loom::sync::atomic::fence(Ordering::SeqCst);
            }
            napping.load(Ordering::Relaxed)
        };
        let napped = waiter.join().unwrap();
        if napped && !woken {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    found.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn nap_copy_with_both_fences_loses_no_wake() {
    assert!(!nap_copy_finds_lost_wake(false, true, true, true));
}

/// MUTANT: `nap_unless` without its fence (the waiter's store is still
/// SeqCst): loom finds the lost wake that x86 cannot show.
#[test]
fn nap_copy_mutant_without_nap_unless_fence_loses_a_wake() {
    assert!(nap_copy_finds_lost_wake(false, false, true, true));
}

/// MUTANT: `wake_if_napping` without its fence.
#[test]
fn nap_copy_mutant_without_wake_if_napping_fence_loses_a_wake() {
    assert!(nap_copy_finds_lost_wake(false, true, false, true));
}

#[test]
fn nap_copy_lock_with_its_fences_loses_no_wake() {
    // The unlocker's fence covers the napping read too: wake_if_napping's
    // own fence is redundant on this path, so it is left out here.
    assert!(!nap_copy_finds_lost_wake(true, true, false, true));
}

/// MUTANT: `SerialGuard::drop` (or the kernel's `run_posted_work`) without
/// its fence, `wake_if_napping`'s fence kept: it comes after the read of
/// the nappers' mask, too late.
#[test]
fn nap_copy_lock_mutant_without_unlock_fence_loses_a_wake() {
    assert!(nap_copy_finds_lost_wake(true, true, true, false));
}

// ---- The task slot (src/task.rs) ---------------------------------------

/// The task-slot models run on `LoomPlatform` (its clock advances one
/// tick per read, so every bounded wait ends): CPU 0 owns the slot, the
/// others post. The slots' and counters' loom atomics are created here,
/// before any thread is spawned.
fn task_smp() -> Arc<LoomSmp> {
    let smp = loom_smp();
    for c in 0..CPUS {
        smp.cpu(c).task.touch();
        for i in 0..4 {
            smp.cpu(c).ipi_sent[i].load(Ordering::Relaxed);
        }
        smp.wake_if_napping(c);
    }
    smp
}

fn doubled(_cpu: usize, ctx: usize) -> u64 {
    2 * ctx as u64
}

/// Two posters race for CPU 0's free slot, each trying once (a bound of a
/// few clock reads): exactly one may own it, and what the slot then holds
/// is that owner's function and context. A claim that is not one atomic
/// step (load FREE, then store) lets both in.
#[test]
fn task_slot_claim_admits_one_poster() {
    loom::model(|| {
        let smp = task_smp();
        let posters: Vec<_> = (1..CPUS)
            .map(|me| {
                let smp = smp.clone();
                thread::spawn(move || {
                    CPU.with(|c| c.set(me));
                    CYCLES.with(|t| t.set(0));
                    smp.post_task(0, doubled, 10 * me, 0, 2).is_ok()
                })
            })
            .collect();
        let won: Vec<bool> = posters.into_iter().map(|p| p.join().unwrap()).collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "owners of one slot: {won:?}"
        );
        // CPU 0 runs what was posted: the winner's function and context.
        CPU.with(|c| c.set(0));
        assert!(smp.run_posted_task());
        let winner = 1 + won.iter().position(|w| *w).unwrap();
        CPU.with(|c| c.set(winner));
        CYCLES.with(|t| t.set(0));
        assert_eq!(smp.collect_task(0, 0, 2), Ok(20 * winner as u64));
        assert!(smp.cpu(0).task.is_free());
    });
}

/// One poster and the slot's CPU: the function and context the poster
/// published are what the CPU runs (Release/Acquire on POSTED), and the
/// result the poster collects is the one the CPU wrote (on DONE); a
/// poster that gives up withdraws or abandons, and the slot always comes
/// back free.
#[test]
fn task_slot_publishes_function_and_result() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let smp = task_smp();
        let s2 = smp.clone();
        let target = thread::spawn(move || {
            CPU.with(|c| c.set(0));
            // Serve a few times; the poster may be slow or gone.
            for _ in 0..3 {
                if s2.run_posted_task() {
                    return true;
                }
                thread::yield_now();
            }
            false
        });
        CPU.with(|c| c.set(1));
        CYCLES.with(|t| t.set(0));
        smp.post_task(0, doubled, 21, 0, 2).unwrap();
        let r = smp.collect_task(0, 0, 6);
        let ran = target.join().unwrap();
        match r {
            Ok(v) => assert!(ran && v == 42, "collected {v}, ran {ran}"),
            Err(task::TaskError::TimedOut { started: false, .. }) => {
                assert!(!ran, "a withdrawn task ran")
            }
            Err(task::TaskError::TimedOut { started: true, .. }) => {
                assert!(ran, "abandoned but never started")
            }
            Err(e) => panic!("{e:?}"),
        }
        assert!(smp.cpu(0).task.is_free(), "the slot is left busy");
    });
}

// ---- Freeing page tables against lockless walkers (src/ptfree.rs) --------

/// A copy of the store-buffer pattern between a foreign walker and the
/// freer (src/ptfree.rs, "Why it is safe"), with the same orderings: the
/// walker sets its bit in the space's `walkers` (RMW) and, with `fences`,
/// issues a SeqCst fence before it reads the parent entry (Acquire); the
/// freer clears the parent entry (Release) and, with `fences`, fences
/// (SeqCst, `unlink_table`) before it reads `walkers`. If it sees the bit it
/// syncs (waits until the walker is done), then frees. Returns whether loom
/// found an execution in which the walker read the old table after it was
/// freed.
fn walker_sees_freed_table(fences: bool) -> bool {
    use std::sync::atomic::AtomicBool as StdBool;
    const OLD: usize = 1;
    const NEW: usize = 2;
    let found = std::sync::Arc::new(StdBool::new(false));
    let seen = found.clone();
    let (rmw, load) = if fences {
        (Ordering::SeqCst, Ordering::SeqCst)
    } else {
        (Ordering::AcqRel, Ordering::Acquire)
    };
    loom::model(move || {
        let root = Arc::new(loom::sync::atomic::AtomicUsize::new(OLD));
        let walkers = Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let freed = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let walker = {
            let (root, walkers, freed) = (root.clone(), walkers.clone(), freed.clone());
            thread::spawn(move || {
                walkers.fetch_or(1, rmw);
                if fences {
                    loom::sync::atomic::fence(Ordering::SeqCst);
                }
                let used_after_free =
                    root.load(Ordering::Acquire) == OLD && freed.load(Ordering::Acquire);
                walkers.fetch_and(!1, Ordering::Release);
                used_after_free
            })
        };
        // The freer: relink, unlink's fence, read the walkers, sync, free.
        root.store(NEW, Ordering::Release);
        if fences {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
        if walkers.load(load) & 1 != 0 {
            // The sync: the walker is past its walk once its bit is clear.
            while walkers.load(Ordering::Acquire) & 1 != 0 {
                thread::yield_now();
            }
        }
        freed.store(true, Ordering::Release);
        if walker.join().unwrap() {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    found.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn ptfree_walker_and_freer_with_fences_never_meet_a_freed_table() {
    assert!(!walker_sees_freed_table(true));
}

/// MUTANT: release/acquire alone (no SeqCst fences): both sides may read
/// the other's old value, the freer frees without a sync and the walker
/// reads the freed table. loom must find it, proving the fences needed.
#[test]
fn ptfree_mutant_with_only_release_acquire_uses_a_freed_table() {
    assert!(walker_sees_freed_table(false));
}

// ---- Deferred flushes for idle CPUs (src/lazyflush.rs) ---------------------

/// One flush against one CPU that goes to sleep in its idle loop and
/// wakes, on the real `LazyFlush` with the ordering `mutant` weakens to
/// Relaxed (0: none; 1: the flusher's skip, 2: the waking CPU's swap):
/// whether loom finds an execution in which that CPU uses the old
/// translation after the flush returned. CPU 1 holds the old translation
/// (1) in its TLB. CPU 0 changes the mapping to 2 and flushes: if it
/// cannot skip CPU 1, it interrupts it, and the handler's flush is
/// modelled as CPU 0 storing the new translation into CPU 1's TLB before
/// the flush returns; else CPU 1 catches up when it wakes, reloading the
/// translation from the mapping. CPU 1, awake again, reads whether the
/// flush has returned, then uses its TLB.
fn lazy_flush_finds_stale_use(mutant: u8) -> bool {
    use std::sync::atomic::AtomicBool as StdBool;
    let found = std::sync::Arc::new(StdBool::new(false));
    let seen = found.clone();
    lazyflush::MUTANT_RELAXED.store(mutant, std::sync::atomic::Ordering::Relaxed);
    loom::model(move || {
        let lazy = Arc::new(lazyflush::LazyFlush::<2>::new());
        let mapping = Arc::new(loom::sync::atomic::AtomicU64::new(1));
        let tlb1 = Arc::new(loom::sync::atomic::AtomicU64::new(1));
        let done = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        // Every loom atomic of the shared state exists before the spawn.
        lazy.idle();
        let sleeper = {
            let (lazy, mapping, tlb1, done) =
                (lazy.clone(), mapping.clone(), tlb1.clone(), done.clone());
            thread::spawn(move || {
                lazy.enter_idle(1);
                if lazy.leave_idle(1) {
                    tlb1.store(mapping.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                let returned = done.load(Ordering::Acquire);
                let used = tlb1.load(Ordering::Relaxed);
                returned && used != 2
            })
        };
        mapping.store(2, Ordering::Relaxed);
        if !lazy.skip(1) {
            tlb1.store(2, Ordering::Relaxed);
        }
        done.store(true, Ordering::Release);
        if sleeper.join().unwrap() {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    lazyflush::MUTANT_RELAXED.store(0, std::sync::atomic::Ordering::Relaxed);
    found.load(std::sync::atomic::Ordering::Relaxed)
}

/// The protocol loses no flush; with the flusher's Release (MUTANT 1) or
/// the waking CPU's Acquire (MUTANT 2) weakened to Relaxed, loom finds a
/// skipped CPU that catches up from the old mapping. One test, so the
/// mutant switch (a static) is never set while another of these models
/// runs.
#[test]
fn lazy_flush_loses_no_flush_and_needs_both_orderings() {
    assert!(!lazy_flush_finds_stale_use(0), "as written");
    assert!(
        lazy_flush_finds_stale_use(1),
        "MUTANT with the flusher's skip Relaxed"
    );
    assert!(
        lazy_flush_finds_stale_use(2),
        "MUTANT with the waking CPU's swap Relaxed"
    );
}

// ---- listening CPUs: the stop's and the sender's fences (src/listen.rs) ----

/// One message to a CPU that listens and then stops, on the real
/// `Listening` and `Mailbox` with the fence `mutant` removes (0: none; 1:
/// the stop's, 2: the sender's): whether loom finds an execution in which
/// the sender skips the interrupt and the CPU never takes the message.
/// CPU 1 starts listening, looks once as `Smp::hear` does (a Relaxed peek,
/// then the take), stops and looks again. CPU 0 posts, then asks whether
/// it may skip the interrupt.
fn listen_finds_unheard_message(mutant: u8) -> bool {
    use std::sync::atomic::AtomicBool as StdBool;
    let found = std::sync::Arc::new(StdBool::new(false));
    let seen = found.clone();
    listen::MUTANT_NO_FENCE.store(mutant, std::sync::atomic::Ordering::Relaxed);
    loom::model(move || {
        let flags = Arc::new(listen::Listening::<2>::new());
        let mb = Arc::new(Mailbox::new());
        // Every loom atomic of the shared state exists before the spawn.
        flags.is_listening(1);
        mb.peek();
        let listener = {
            let (flags, mb) = (flags.clone(), mb.clone());
            thread::spawn(move || {
                let look = || {
                    if mb.peek().is_empty() {
                        IpiMessage::empty()
                    } else {
                        mb.take()
                    }
                };
                flags.start(1);
                let mut heard = look();
                flags.stop(1);
                heard |= look();
                flags.stopped(1);
                heard
            })
        };
        mb.post(IpiMessage::PING);
        let skipped = flags.elide(1);
        let heard = listener.join().unwrap();
        if skipped && heard.is_empty() {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    listen::MUTANT_NO_FENCE.store(0, std::sync::atomic::Ordering::Relaxed);
    found.load(std::sync::atomic::Ordering::Relaxed)
}

/// A sender that skips the interrupt is always heard; without the stop's
/// fence (MUTANT 1) or the sender's (MUTANT 2) loom finds the message
/// left in the mailbox with no interrupt owed to it. One test, so the
/// mutant switch is never set while another of these models runs.
#[test]
fn listening_loses_no_message_and_needs_both_fences() {
    assert!(!listen_finds_unheard_message(0), "as written");
    assert!(
        listen_finds_unheard_message(1),
        "MUTANT without the stop's fence"
    );
    assert!(
        listen_finds_unheard_message(2),
        "MUTANT without the sender's fence"
    );
}
