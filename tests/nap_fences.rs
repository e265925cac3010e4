//! The nap fences as a store-buffering litmus test on this host's real
//! threads (src/xcall.rs, "Napping waiters").
//!
//! Every nap is a Dekker / store-buffering (SB) pair:
//!
//! ```text
//! waiter                               waker
//! napping = true       (store)         done = true          (Release store)
//! fence(SeqCst)        [nap_unless]    fence(SeqCst)        [wake_if_napping; SerialGuard::drop;
//! if !done() { nap }   (load)          if napping { wake }   arch run_posted_work]   (load)
//! ```
//!
//! Without the fence on either side, both loads may read the old values:
//! the waiter naps and the waker sends no wake (a *lost wake*; the waiter
//! sleeps until the next clock tick: a liveness bug, not a safety bug). x86
//! is TSO, and TSO allows exactly this one reordering (a store waits in the
//! store buffer while a later load of another address goes ahead), so a
//! missing fence shows up here on real threads.
//!
//! Three kinds of tests:
//!
//! - **the real code** (`real_*`): `Smp::pause` against
//!   `Smp::wake_if_napping`; a whole synchronous call (`call_single`: the
//!   real `wait_loop` -> `pause` -> `nap_unless` against the real
//!   `handle_ipi` -> `run_all_then` -> `wake_if_napping`); the
//!   serialization lock (`call_single` with `serialize`: `lock_serialized`
//!   against `SerialGuard::drop`); all over [`HostPlat`], whose `nap()`
//!   records "napped" and lasts until the waker has made its decision (as a
//!   real wtint lasts until the wake or the tick), and whose `wake()`
//!   records "woken". Each counts the lost wakes; the count must be 0.
//! - **the work slot** (`work_slot_*`): the wake rule of a slot freed by
//!   its CPU (a Release store, a SeqCst fence, then wake the listed
//!   nappers), written out over the real core's `pause` and
//!   `wake_if_napping`. It was the kernel's own work slot when these tests
//!   were written; the core's task slot (`src/task.rs`,
//!   `wake_slot_waiters`) now follows the same rule, and its protocol is
//!   checked by `tests/task_sim.rs` and loom.
//! - **mutants** (`mutant_*`): the protocol written out by hand (or the
//!   work-slot copy) with one fence removed; the lost wake must be
//!   *observed*, which shows that this harness sees what the other tests
//!   claim is absent. The fenced hand copies (`copy_*`) must show none.
//!
//! Checked by deleting each fence of src/xcall.rs in a copy of the tree
//! (3 runs each, release 300,000 iterations, debug 100,000): without
//! `wake_if_napping`'s fence `real_pause_*` failed with 20 to 39,540 lost
//! wakes a run and `real_sync_call_*` with 26 to 87; without
//! `SerialGuard::drop`'s fence `real_serial_lock_*` failed with 9 to 99
//! (debug now runs 200,000 iterations for that margin). Without
//! `nap_unless`'s fence nothing here fails, and nothing can: the waiter's
//! `napping.store(true, SeqCst)` compiles to `xchg`, a full barrier on x86,
//! so the waiter's side stays ordered without the fence (on the lock and
//! work-slot paths the SeqCst `fetch_or` before it is a `lock or`, another
//! one). The language's memory model does not promise that (a SeqCst store
//! and a later non-SeqCst load of another location may be reordered), and
//! what a SeqCst store becomes on Alpha is the backend's choice (not
//! checked here); tests/loom.rs (`nap_*`) catches that deletion against the
//! real code instead. The mutant that deletes the fence *and* weakens the
//! store (`mutant_waiter_unfenced_relaxed_store_loses_wakes`) is observable.
//!
//! How the race is made close: each iteration starts both threads at a spin
//! barrier; an adaptive delay (one side waits up to a few thousand short
//! loops, re-centred every iteration) keeps the waiter's check near the
//! waker's store, so the waiter naps in about half the iterations; and the
//! waker reads, just before the race, what it will read in it (see
//! [`race`]). A lost wake needs the two sides to overlap in time
//! ([`Tally::overlap`]), which they do only when both threads run at once:
//! a host loaded by other work (more runnable threads than cores) runs few
//! iterations and fewer overlapping ones, so every run is also bounded in
//! time, a zero-count test that hits its time limit does not assert that
//! the race was exercised (it says so), and a mutant runs until it has its
//! lost wakes or enough overlapping iterations (60 s at most). On a 2-core
//! host that is not too busy the file takes about 2 to 5 s.
//!
//! `ALPHASMP_LONG=1` runs 10 times the iterations of the zero-count tests.
//!
//! xtask-test: alone (`cargo xtask test` runs this file with nothing
//! beside it, as it runs the QEMU boots).

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, fence};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use alphasmp::cpumask::CpuMask;
use alphasmp::platform::{Platform, TlbOp, ipl};
use alphasmp::xcall::{Hooks, Smp};

// ---- harness -----------------------------------------------------------------

/// The tests of this file take turns: each keeps two threads spinning, and
/// the host may have only two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn long() -> u64 {
    if std::env::var_os("ALPHASMP_LONG").is_some() {
        10
    } else {
        1
    }
}

/// How long a race runs: `iters` iterations, or `overlaps` overlapping
/// ones ([`Tally::overlap`]), whichever comes first; fewer if `stop_after`
/// lost wakes have been seen or `seconds` have passed (a host loaded by
/// other work runs few iterations a second, and few of them overlap; the
/// counts are in the report).
#[derive(Clone, Copy)]
struct Run {
    iters: u64,
    overlaps: u64,
    stop_after: Option<u64>,
    seconds: u64,
}

/// A real-code test (must show no lost wake): under a second each on a
/// 2-core host that is not too busy.
fn real_run() -> Run {
    let iters = if cfg!(debug_assertions) {
        200_000
    } else {
        300_000
    };
    Run {
        iters: long() * iters,
        overlaps: u64::MAX,
        stop_after: None,
        seconds: long() * 4,
    }
}

/// A fenced hand copy (must show no lost wake).
fn copy_run() -> Run {
    let iters = if cfg!(debug_assertions) {
        150_000
    } else {
        300_000
    };
    Run {
        iters: long() * iters,
        overlaps: u64::MAX,
        stop_after: None,
        seconds: long() * 4,
    }
}

/// A mutant runs until it has shown 3 lost wakes (one already proves the
/// reordering: the fenced copies never show one; usually well under a
/// second), or 1,000,000 overlapping iterations (a lost wake needs the two
/// sides to overlap; the rarest mutant, the work slot's in debug, has
/// shown between one per 1,500 and one per 8,000 overlapping iterations on
/// one host; on another, an Intel Xeon, three within 35,000 to 223,000,
/// and, before its two words were put on lines of their own, none in
/// 300,000 in 2 runs of 5), or 60 s (a host so loaded that the two
/// threads seldom run at once).
fn mutant_run() -> Run {
    Run {
        iters: u64::MAX,
        overlaps: 1_000_000,
        stop_after: Some(3),
        seconds: 60,
    }
}

/// Waits until `ready()`: spins, then yields (on a loaded host the thread
/// it waits for may need this CPU).
fn spin_until(ready: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        spins += 1;
        if spins < 1_000 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// A two-thread spin barrier on a counter: round `r` is passed once both
/// threads have arrived `r` times.
#[derive(Default)]
struct SpinBarrier {
    arrived: AtomicUsize,
}

impl SpinBarrier {
    fn wait(&self, round: &mut usize) {
        *round += 1;
        self.arrived.fetch_add(1, SeqCst);
        let target = 2 * *round;
        spin_until(|| self.arrived.load(Acquire) >= target);
    }
}

/// A short busy delay: about a nanosecond per unit.
fn delay(units: u64) {
    for i in 0..units {
        black_box(i);
    }
}

/// This iteration's delays (busy units) of the two sides.
#[derive(Clone, Copy)]
struct Delays {
    waiter: u64,
    waker: u64,
}

/// What one iteration showed.
#[derive(Clone, Copy)]
struct Outcome {
    /// The waiter checked its condition after announcing it naps, found it
    /// not met, and napped.
    napped: bool,
    /// The waker saw the waiter napping and woke it.
    woken: bool,
}

/// Totals of a run.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    iters: u64,
    napped: u64,
    woken: u64,
    /// Napped and not woken: the lost wake.
    lost: u64,
    /// Not napped and woken: each side saw the other's store, which needs
    /// the two sides to run at the same time (run one after the other,
    /// the waiter naps and is woken, or does not nap and is not woken). A
    /// lost wake (each side saw the other's old value) needs that too, so
    /// this counts the chances a run gave it.
    overlap: u64,
    millis: u128,
    /// The run stopped at its time limit.
    timed_out: bool,
    /// Where the offset ended ([`Offset`]).
    centre: i64,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.iters += 1;
        self.napped += o.napped as u64;
        self.woken += o.woken as u64;
        self.lost += (o.napped && !o.woken) as u64;
        self.overlap += (!o.napped && o.woken) as u64;
    }

    /// Both orders of the race happened often: the waiter's check came
    /// before the waker's store was visible (it napped), and after (it did
    /// not). Otherwise a zero count of lost wakes proves nothing.
    fn assert_raced(&self, what: &str) {
        let (napped, not) = (self.napped, self.iters - self.napped);
        assert!(
            napped * 100 >= self.iters && not * 100 >= self.iters,
            "{what}: the race was not exercised: {self:?}"
        );
    }
}

/// The adaptive offset between the two sides: positive delays the waiter,
/// negative the waker. Moved one way when the waiter napped (its check came
/// first) and the other way when it did not, so it settles where the
/// waiter's check meets the waker's store; each iteration adds noise.
struct Offset {
    centre: i64,
    rng: u64,
}

const SPREAD: i64 = 64;

impl Offset {
    fn new() -> Self {
        Offset {
            centre: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// (waiter delay, waker delay) for the next iteration.
    fn next(&mut self) -> (u64, u64) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let d = self.centre + (self.rng % (2 * SPREAD as u64 + 1)) as i64 - SPREAD;
        if d >= 0 {
            (d as u64, 0)
        } else {
            (0, d.unsigned_abs())
        }
    }

    fn learn(&mut self, napped: bool) {
        self.centre += if napped { 2 } else { -2 };
        self.centre = self.centre.clamp(-2_000, 2_000);
    }
}

/// Runs racing iterations on two threads, as long as `run` says. Per
/// iteration: the waker's thread runs `prepare`; both pass a barrier;
/// `waiter` and `waker` run at once on their own threads with the delays
/// the offset gives; both pass a second barrier; `settle` (on the waiter's
/// thread, while the other runs the next `prepare`) reads the outcome and
/// resets the shared state.
///
/// `prepare` lets the waker read what it will read in the race (the
/// waiter's `napping`, the nappers' mask), as a waker CPU that looked at
/// them a moment earlier would have: the line is then shared in its cache,
/// the load in the race hits it, and a missing fence lets that load run
/// ahead of the waker's own buffered store (the store-buffering outcome).
/// Without it the load misses and is served at about the moment the
/// store's line is, which hides the reordering most of the time.
fn race(
    run: Run,
    waiter: impl Fn(Delays) + Send,
    prepare: impl Fn() + Send,
    waker: impl Fn(Delays) + Send,
    settle: impl Fn() -> Outcome + Send,
) -> Tally {
    let start = SpinBarrier::default();
    let end = SpinBarrier::default();
    let stop = AtomicBool::new(false);
    // The delays of the coming iteration, written by the waiter's thread
    // before the start barrier.
    let (wd, kd) = (AtomicU64::new(0), AtomicU64::new(0));
    let began = Instant::now();
    let (start, end, stop, wd, kd) = (&start, &end, &stop, &wd, &kd);
    let mut tally = std::thread::scope(|s| {
        let k = s.spawn(move || {
            let (mut a, mut b) = (0, 0);
            loop {
                prepare();
                start.wait(&mut a);
                if stop.load(Relaxed) {
                    return;
                }
                waker(Delays {
                    waiter: wd.load(Relaxed),
                    waker: kd.load(Relaxed),
                });
                end.wait(&mut b);
            }
        });
        let w = s.spawn(move || {
            let (mut a, mut b) = (0, 0);
            let mut tally = Tally::default();
            let mut offset = Offset::new();
            loop {
                let done = tally.iters >= run.iters
                    || tally.overlap >= run.overlaps
                    || run.stop_after.is_some_and(|n| tally.lost >= n)
                    || (tally.iters % 1024 == 0 && began.elapsed().as_secs() >= run.seconds);
                if done {
                    stop.store(true, Relaxed);
                    start.wait(&mut a);
                    tally.timed_out = began.elapsed().as_secs() >= run.seconds;
                    tally.centre = offset.centre;
                    return tally;
                }
                let (w, k) = offset.next();
                wd.store(w, Relaxed);
                kd.store(k, Relaxed);
                start.wait(&mut a);
                waiter(Delays {
                    waiter: w,
                    waker: k,
                });
                end.wait(&mut b);
                let o = settle();
                offset.learn(o.napped);
                tally.add(o);
            }
        });
        k.join().unwrap();
        w.join().unwrap()
    });
    tally.millis = began.elapsed().as_millis();
    tally
}

// ---- hand copies of the protocol (the mutants) ---------------------------------

/// Which fences a hand copy keeps (all true: the protocol as in src/).
#[derive(Clone, Copy, Debug)]
struct Fences {
    /// `nap_unless`: after `napping.store(true)`, before the check.
    nap: bool,
    /// `nap_unless`'s store is SeqCst (else Relaxed: a further mutation).
    nap_store_seqcst: bool,
    /// `wake_if_napping`: before the load of `napping`.
    wake: bool,
    /// `SerialGuard::drop` / arch `run_posted_work`: after the Release
    /// store that ends the wait, before the load of the nappers' mask.
    release: bool,
}

const ALL: Fences = Fences {
    nap: true,
    nap_store_seqcst: true,
    wake: true,
    release: true,
};

/// Copy of `Smp::nap_unless` (src/xcall.rs): returns whether it napped.
/// `napping` stays set until the iteration's end: the nap lasts until the
/// waker has decided.
fn nap_unless_copy(f: Fences, napping: &AtomicBool, done: impl Fn() -> bool) -> bool {
    napping.store(true, if f.nap_store_seqcst { SeqCst } else { Relaxed });
    if f.nap {
        fence(SeqCst);
    }
    !done()
}

/// Copy of `Smp::wake_if_napping`: returns whether it woke the waiter.
fn wake_if_napping_copy(f: Fences, napping: &AtomicBool) -> bool {
    if f.wake {
        fence(SeqCst);
    }
    napping.load(Relaxed)
}

/// One value alone in its cache line (and the next: adjacent-line
/// prefetch), so that the litmus rests on the store buffer, not on two
/// variables sharing a line.
#[repr(align(128))]
#[derive(Default)]
struct Alone<T>(T);

/// The shared variables of a hand copy.
#[derive(Default)]
struct CopyState {
    napping: Alone<AtomicBool>,
    /// The waiter's condition is "unlocked": the descriptor's LOCK bit, the
    /// serialization lock, the work slot.
    locked: Alone<AtomicBool>,
    /// The nappers' mask (lock shape only).
    nappers: Alone<AtomicU64>,
    /// Outcomes of the iteration.
    napped: AtomicBool,
    woken: AtomicBool,
}

impl CopyState {
    fn new() -> Box<Self> {
        let s = Box::<CopyState>::default();
        s.locked.0.store(true, Relaxed);
        s
    }

    fn settle(&self) -> Outcome {
        let o = Outcome {
            napped: self.napped.load(Relaxed),
            woken: self.woken.load(Relaxed),
        };
        self.napping.0.store(false, Relaxed);
        self.nappers.0.store(0, Relaxed);
        self.locked.0.store(true, Relaxed);
        o
    }
}

/// The descriptor shape: the waiter waits for `flags` to be unlocked
/// (`wait_loop` -> `pause` -> `nap_unless`); the target unlocks it
/// (Release) and calls `wake_if_napping(owner)` (`run_all_then`).
fn csd_copy(f: Fences, run: Run) -> Tally {
    let s = CopyState::new();
    race(
        run,
        |d| {
            delay(d.waiter);
            s.napped.store(
                nap_unless_copy(f, &s.napping.0, || !s.locked.0.load(Acquire)),
                Relaxed,
            );
        },
        || {
            black_box(s.napping.0.load(Relaxed));
        },
        |d| {
            delay(d.waker);
            s.locked.0.store(false, Release);
            s.woken
                .store(wake_if_napping_copy(f, &s.napping.0), Relaxed);
        },
        || s.settle(),
    )
}

/// The serialization-lock shape (and the arch work slot's, which is the
/// same): the waiter, after a failed `try_lock`, sets its bit in the
/// nappers' mask (SeqCst RMW) and naps unless the lock is free
/// (`lock_serialized`); the holder unlocks (Release), fences, reads the
/// mask and calls `wake_if_napping` for each bit (`SerialGuard::drop`).
fn lock_copy(f: Fences, run: Run) -> Tally {
    let s = CopyState::new();
    race(
        run,
        |d| {
            delay(d.waiter);
            s.nappers.0.fetch_or(1, SeqCst);
            s.napped.store(
                nap_unless_copy(f, &s.napping.0, || !s.locked.0.load(Relaxed)),
                Relaxed,
            );
        },
        || {
            black_box(s.nappers.0.load(Relaxed));
        },
        |d| {
            delay(d.waker);
            s.locked.0.store(false, Release);
            if f.release {
                fence(SeqCst);
            }
            let listed = CpuMask(s.nappers.0.load(Relaxed));
            s.woken.store(
                listed.contains(0) && wake_if_napping_copy(f, &s.napping.0),
                Relaxed,
            );
        },
        || s.settle(),
    )
}

fn report(what: &str, t: &Tally) {
    eprintln!(
        "{what}: {} iterations in {} ms{}: waiter napped {} ({:.1}%), woken {}, overlapping {}, lost wakes {} (offset {})",
        t.iters,
        t.millis,
        if t.timed_out { " (time limit)" } else { "" },
        t.napped,
        100.0 * t.napped as f64 / t.iters.max(1) as f64,
        t.woken,
        t.overlap,
        t.lost,
        t.centre
    );
}

fn assert_no_lost_wake(what: &str, t: &Tally) {
    report(what, t);
    if t.timed_out {
        // Other work kept the two threads from running together; what ran
        // is checked, but whether the race was exercised is not asserted.
        eprintln!("{what}: stopped at the time limit (a loaded host): race coverage not asserted");
    } else {
        t.assert_raced(what);
    }
    assert_eq!(
        t.lost, 0,
        "{what}: {} lost wakes (napped, not woken) in {} iterations",
        t.lost, t.iters
    );
}

fn assert_lost_wakes(what: &str, t: &Tally) {
    report(what, t);
    assert!(
        t.lost > 0,
        "{what}: the mutant showed no lost wake in {} iterations, {} of them overlapping{}",
        t.iters,
        t.overlap,
        if t.overlap < 10_000 {
            " (the two threads seldom ran at once: is the host loaded?)"
        } else {
            ""
        }
    );
}

#[test]
fn copy_csd_with_both_fences_loses_no_wake() {
    let _one = one_at_a_time();
    assert_no_lost_wake("copy csd, all fences", &csd_copy(ALL, copy_run()));
}

#[test]
fn copy_lock_with_all_fences_loses_no_wake() {
    let _one = one_at_a_time();
    assert_no_lost_wake("copy lock, all fences", &lock_copy(ALL, copy_run()));
}

/// MUTANT: `wake_if_napping` without its fence (descriptor shape).
#[test]
fn mutant_wake_if_napping_unfenced_loses_wakes() {
    let _one = one_at_a_time();
    let f = Fences { wake: false, ..ALL };
    assert_lost_wakes(
        "MUTANT csd, wake_if_napping unfenced",
        &csd_copy(f, mutant_run()),
    );
}

/// MUTANT: `SerialGuard::drop` without its fence (lock shape; the same
/// shape as the arch work slot's `run_posted_work` without its fence).
#[test]
fn mutant_serial_unlock_unfenced_loses_wakes() {
    let _one = one_at_a_time();
    let f = Fences {
        release: false,
        ..ALL
    };
    assert_lost_wakes(
        "MUTANT lock, SerialGuard::drop unfenced",
        &lock_copy(f, mutant_run()),
    );
}

/// MUTANT (stronger than deleting one line): `nap_unless` without its
/// fence *and* with a Relaxed store of `napping`. Deleting the fence alone
/// is invisible on x86 (module docs; see the ignored test below).
#[test]
fn mutant_waiter_unfenced_relaxed_store_loses_wakes() {
    let _one = one_at_a_time();
    let f = Fences {
        nap: false,
        nap_store_seqcst: false,
        ..ALL
    };
    assert_lost_wakes(
        "MUTANT csd, nap_unless unfenced, Relaxed store",
        &csd_copy(f, mutant_run()),
    );
}

/// MUTANT: `nap_unless` without its fence, the store still SeqCst: on x86
/// the store is an `xchg` (a full barrier), so no lost wake can appear
/// here; loom checks this one (tests/loom.rs). Ignored: it is expected to
/// fail on x86 (run with `--ignored` to see it; it ran 1,753,530
/// iterations, 300,000 of them overlapping, without a lost wake).
#[test]
#[ignore = "x86's xchg for the SeqCst store hides this mutant; tests/loom.rs catches it"]
fn mutant_nap_unless_unfenced_loses_wakes_x86_cannot_show() {
    let _one = one_at_a_time();
    let f = Fences { nap: false, ..ALL };
    assert_lost_wakes(
        "MUTANT csd, nap_unless unfenced",
        &csd_copy(f, mutant_run()),
    );
}

// ---- the real code ---------------------------------------------------------------

const CPUS: usize = 4;

type HostSmp = Smp<HostPlat, CPUS>;

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
    static IPL: Cell<u8> = const { Cell::new(0) };
    static IN_IRQ: Cell<bool> = const { Cell::new(false) };
    /// This iteration's delay of the waiter, spent when it raises its IPL
    /// to 7 to nap (`pause`, `lock_serialized`): right before the check.
    static DELAY: Cell<u64> = const { Cell::new(0) };
    /// The next inline IPI this CPU sends sets [`HostPlat::holding`] and
    /// then spends [`HOLD_DELAY`] (the serialization lock's holder).
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static HOLD_DELAY: Cell<u64> = const { Cell::new(0) };
    /// The waker's delay inside a call's function, before the unlock.
    static CALL_DELAY: Cell<u64> = const { Cell::new(0) };
}

/// A host machine for the real `Smp`: each test thread is one CPU
/// (thread-local number, IPL and interrupt state).
struct HostPlat {
    /// IPIs requested and not yet taken (when not `inline`).
    line: [AtomicBool; CPUS],
    /// Deliver an IPI by running the target's handler at once, on the
    /// sender's thread acting as the target (as tests/loom.rs's
    /// `take_interrupt` does).
    inline: bool,
    smp: OnceLock<&'static HostSmp>,
    /// Naps taken this iteration, per CPU.
    naps: [AtomicU64; CPUS],
    /// Wakes sent to each CPU this iteration.
    woken: [AtomicBool; CPUS],
    /// An armed CPU sent its IPI: it holds the serialization lock.
    holding: AtomicBool,
    /// Per CPU: the CPU it waits for has made its decision (woken it or
    /// not), so a nap may end: a real nap would last until the wake or the
    /// clock tick; this one lasts until no wake can come any more.
    settled: [AtomicBool; CPUS],
}

impl HostPlat {
    fn machine(inline: bool) -> &'static HostSmp {
        let smp: &'static HostSmp = Box::leak(Box::new(Smp::new(HostPlat {
            line: [const { AtomicBool::new(false) }; CPUS],
            inline,
            smp: OnceLock::new(),
            naps: [const { AtomicU64::new(0) }; CPUS],
            woken: [const { AtomicBool::new(false) }; CPUS],
            settled: [const { AtomicBool::new(false) }; CPUS],
            holding: AtomicBool::new(false),
        })));
        smp.platform.smp.set(smp).ok().unwrap();
        for c in 0..CPUS {
            smp.set_online(c);
        }
        smp.policy.nap.store(true, Relaxed);
        smp.policy.spin_before_nap.store(0, Relaxed);
        smp
    }

    /// CPU `cpu`'s outcome of this iteration; resets its records.
    fn outcome(&self, cpu: usize) -> Outcome {
        let naps = self.naps[cpu].swap(0, Relaxed);
        assert!(naps <= 1, "CPU {cpu} napped {naps} times in one iteration");
        let woken = self.woken[cpu].swap(false, Relaxed);
        self.settled[cpu].store(false, Relaxed);
        Outcome {
            napped: naps == 1,
            woken,
        }
    }

    /// Acting as CPU `cpu`, in its interrupt handler: run the IPI handler.
    fn interrupt(&self, cpu: usize) {
        let (me, irq, ipl) = (
            CPU.replace(cpu),
            IN_IRQ.replace(true),
            IPL.replace(ipl::HIGH),
        );
        self.smp.get().unwrap().handle_ipi();
        CPU.set(me);
        IN_IRQ.set(irq);
        IPL.set(ipl);
    }
}

impl Platform for HostPlat {
    fn cpu_id(&self) -> usize {
        CPU.get()
    }
    fn send_ipi(&self, cpu: usize) {
        if self.inline {
            if ARMED.replace(false) {
                self.holding.store(true, Release);
                delay(HOLD_DELAY.replace(0));
            }
            self.interrupt(cpu);
        } else {
            self.line[cpu].store(true, Release);
        }
    }
    fn raise_ipl(&self, level: u8) -> u8 {
        if level == ipl::HIGH {
            delay(DELAY.replace(0));
        }
        let prev = IPL.get();
        IPL.set(prev.max(level));
        prev
    }
    fn restore_ipl(&self, previous: u8) {
        IPL.set(previous);
    }
    fn ipl(&self) -> u8 {
        IPL.get()
    }
    fn ipi_ipl(&self) -> u8 {
        ipl::IPI_QEMU_PALCODE
    }
    fn in_interrupt(&self) -> bool {
        IN_IRQ.get()
    }
    fn invalidate_tlb(&self, _op: TlbOp) {}
    fn imb(&self) {}
    fn load_asn(&self, _asn: u64) {}
    fn cycles(&self) -> u64 {
        0
    }
    fn cycle_freq(&self) -> u64 {
        1
    }
    fn nap(&self) {
        let me = CPU.get();
        self.naps[me].fetch_add(1, Relaxed);
        spin_until(|| self.woken[me].load(Acquire) || self.settled[me].load(Acquire));
    }
    fn wake(&self, cpu: usize) {
        self.woken[cpu].store(true, Release);
    }
}

impl Hooks for HostPlat {}

fn nothing(_: usize) {}

/// The public wait of `Smp` for a platform's own conditions: CPU 0 waits
/// once (`pause` -> `nap_unless`) for a flag; CPU 1 sets it (Release) and
/// calls `wake_if_napping(0)`.
#[test]
fn real_pause_and_wake_if_napping_lose_no_wake() {
    let _one = one_at_a_time();
    let smp = HostPlat::machine(false);
    let done = AtomicBool::new(false);
    let t = race(
        real_run(),
        |d| {
            CPU.set(0);
            DELAY.set(d.waiter);
            smp.pause(0, || done.load(Acquire));
            DELAY.set(0);
        },
        || {
            // CPU 0 is not napping: this only reads its flag.
            CPU.set(1);
            smp.wake_if_napping(0);
        },
        |d| {
            CPU.set(1);
            delay(d.waker);
            done.store(true, Release);
            smp.wake_if_napping(0);
            smp.platform.settled[0].store(true, Release);
        },
        || {
            done.store(false, Relaxed);
            smp.platform.outcome(0)
        },
    );
    assert_no_lost_wake("real pause / wake_if_napping", &t);
}

/// The machine of [`real_sync_call_wakes_its_napping_caller`].
static SYNC_CALL_SMP: OnceLock<&'static HostSmp> = OnceLock::new();

/// The call of [`real_sync_call_wakes_its_napping_caller`], run on CPU 1
/// just before `run_all_then` unlocks its descriptor: spends the waker's
/// delay, and reads what CPU 0 waits for (a public field of `CpuState`
/// that shares a cache line with CPU 0's private `napping` flag here: the
/// waiter wrote that line when it began to wait, so this brings it back
/// into CPU 1's cache, as `prepare` does in [`race`]).
fn peek_at_caller(_: usize) {
    delay(CALL_DELAY.replace(0));
    black_box(
        SYNC_CALL_SMP
            .get()
            .unwrap()
            .cpu(0)
            .waiting_for
            .load(Relaxed),
    );
}

/// A whole synchronous call: CPU 0 `call_single(1, .., wait)` waits in the
/// real `wait_loop` -> `pause` -> `nap_unless` for its descriptor; CPU 1
/// takes the IPI and runs the real `handle_ipi` -> `run_all_then`, whose
/// unlock is followed by `wake_if_napping(owner)`.
#[test]
fn real_sync_call_wakes_its_napping_caller() {
    let _one = one_at_a_time();
    let smp = *SYNC_CALL_SMP.get_or_init(|| HostPlat::machine(false));
    let t = race(
        real_run(),
        |d| {
            CPU.set(0);
            DELAY.set(d.waiter);
            smp.call_single(1, peek_at_caller, 0, true).unwrap();
            DELAY.set(0);
        },
        || {
            CPU.set(1);
            smp.wake_if_napping(0);
        },
        |d| {
            CPU.set(1);
            CALL_DELAY.set(d.waker);
            spin_until(|| smp.platform.line[1].swap(false, Acquire));
            smp.platform.interrupt(1);
            smp.platform.settled[0].store(true, Release);
        },
        || smp.platform.outcome(0),
    );
    assert_no_lost_wake("real synchronous call (run_all_then wakes the caller)", &t);
}

/// The serialization lock: CPU 1 makes a synchronous call (to CPU 3,
/// delivered inline) with `serialize` on, holding the lock; once it holds
/// it, CPU 0 makes one too (to CPU 2) and waits in the real
/// `lock_serialized` (nappers' mask, then `nap_unless`), while CPU 1's
/// `SerialGuard::drop` unlocks, fences and wakes the listed nappers.
#[test]
fn real_serial_lock_release_wakes_its_napping_waiter() {
    let _one = one_at_a_time();
    let smp = HostPlat::machine(true);
    smp.policy.serialize.store(true, Relaxed);
    let t = race(
        real_run(),
        |d| {
            CPU.set(0);
            spin_until(|| smp.platform.holding.load(Acquire));
            DELAY.set(d.waiter);
            smp.call_single(2, nothing, 0, true).unwrap();
            DELAY.set(0);
        },
        || {
            // An uncontended call (CPU 0 is between iterations): its
            // guard reads the nappers' mask, as the race will.
            CPU.set(1);
            smp.call_single(3, nothing, 0, true).unwrap();
        },
        |d| {
            CPU.set(1);
            // Spent while holding the lock, right after `holding` is set.
            HOLD_DELAY.set(d.waker);
            ARMED.set(true);
            smp.call_single(3, nothing, 0, true).unwrap();
            // The call returned: the guard was dropped and its wakes sent,
            // so CPU 0's nap may end.
            smp.platform.settled[0].store(true, Release);
        },
        || {
            smp.platform.holding.store(false, Relaxed);
            assert!(
                !smp.platform.outcome(1).napped,
                "CPU 1 napped: it should hold the lock first"
            );
            smp.platform.outcome(0)
        },
    );
    assert_no_lost_wake(
        "real serialization lock (SerialGuard::drop wakes the napper)",
        &t,
    );
}

// ---- the work slot's wake rule, over the real core -----------------------------------

/// `wait_slot_free` (the poster, CPU 0, waits for CPU 1's slot) against
/// the end of `run_posted_work` (CPU 1 frees its slot and wakes the listed
/// waiters), the shape of `src/task.rs`'s free-then-`wake_slot_waiters`;
/// `pause`, `nap_unless` and `wake_if_napping` are the real core's.
/// `fenced`: `run_posted_work` keeps its fence.
fn work_slot(fenced: bool, run: Run) -> Tally {
    const TAKEN: usize = 1;
    let smp = HostPlat::machine(false);
    // Each on a line of its own, as in the kernel (the slot and its
    // waiters' mask are different words of different structures): on one
    // line, the waiter's read-modify-write of the mask and the waker's
    // store to the slot meet at that line, which hides the reordering
    // (on an Intel Xeon host: 0 to 10 lost wakes per 300,000 overlapping
    // iterations on one line; apart, 3 within 35,000 to 223,000).
    let work = Alone(AtomicUsize::new(TAKEN));
    let work = &work.0;
    let waiters = Alone(AtomicU64::new(0));
    let waiters = &waiters.0;
    race(
        run,
        |d| {
            // wait_slot_free(cpu 1, me 0), with wait_ns_woken's loop. The
            // delay comes before the mask's update, which is half of the
            // waiter's side of the race here.
            CPU.set(0);
            delay(d.waiter);
            waiters.fetch_or(1 << 0, SeqCst);
            let done = || work.load(Acquire) == 0;
            while !done() {
                smp.pause(0, done);
            }
            waiters.fetch_and(!(1 << 0), Relaxed);
        },
        || {
            black_box(waiters.load(Relaxed));
        },
        |d| {
            // The end of run_posted_work(cpu 1).
            CPU.set(1);
            delay(d.waker);
            work.store(0, Release);
            if fenced {
                fence(SeqCst);
            }
            for waiter in CpuMask(waiters.load(Relaxed)).iter() {
                smp.wake_if_napping(waiter);
            }
            smp.platform.settled[0].store(true, Release);
        },
        || {
            work.store(TAKEN, Relaxed);
            smp.platform.outcome(0)
        },
    )
}

#[test]
fn work_slot_copy_over_real_core_loses_no_wake() {
    let _one = one_at_a_time();
    assert_no_lost_wake(
        "work slot (arch copy) over the real core",
        &work_slot(true, real_run()),
    );
}

/// MUTANT: `run_posted_work` without its fence.
#[test]
fn mutant_work_slot_unfenced_loses_wakes() {
    let _one = one_at_a_time();
    assert_lost_wakes(
        "MUTANT work slot, run_posted_work unfenced",
        &work_slot(false, mutant_run()),
    );
}
