//! The task-context call (`src/task.rs`, Linux's `smp_call_on_cpu`) on the
//! simulator under the seeded scheduler: several posters share one CPU's
//! slot, each must collect exactly its own function's result, every posted
//! function runs exactly once, and a poster that gives up withdraws what
//! was not taken (it never runs) or abandons what runs (the slot comes
//! back free). Spinning and napping waiters both.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};

use alphasmp::platform::Platform;
use alphasmp::sim::{Line, SimPlatform, SimSmp};
use alphasmp::task::TaskError;

const CPUS: usize = 4;
const PER_POSTER: usize = 6;
const TICK_EVERY: u64 = 40;

fn seeds() -> u64 {
    if std::env::var_os("ALPHASMP_LONG").is_some() {
        200
    } else {
        25
    }
}

/// Runs of each (poster, round), per test run; indexed poster * PER_POSTER + round.
static RUNS: [AtomicU64; CPUS * PER_POSTER] = [const { AtomicU64::new(0) }; CPUS * PER_POSTER];

/// ctx = poster * PER_POSTER + round; the result names the ctx and the CPU
/// that ran it.
fn record(cpu: usize, ctx: usize) -> u64 {
    RUNS[ctx].fetch_add(1, Relaxed);
    (ctx as u64) << 8 | cpu as u64
}

/// CPU 0 serves its slot while CPUs 1..CPUS each post PER_POSTER tasks to
/// it, all at once; returns the number of Busy answers seen.
fn several_posters(seed: u64, nap: bool) -> u64 {
    several_posters_on(Some(seed), nap)
}

/// `seed` None: free-running host threads (every interleaving the host
/// makes, not only the seeded scheduler's switch points).
fn several_posters_on(seed: Option<u64>, nap: bool) -> u64 {
    // RUNS is shared by the tests of this binary, which run in parallel.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let smp: &SimSmp = match seed {
        Some(seed) => SimPlatform::seeded(Line::Latch, TICK_EVERY, 3, CPUS, seed),
        None => SimPlatform::machine(Line::Latch, TICK_EVERY, 3, CPUS),
    };
    // Seeded: bounds in scheduler steps, never reached; real threads: 5 s.
    let bound: u64 = if seed.is_some() {
        1 << 40
    } else {
        5_000_000_000
    };
    let seed = seed.map_or(-1, |s| s as i64);
    smp.policy.nap.store(nap, Relaxed);
    for r in &RUNS {
        r.store(0, Relaxed);
    }
    static FINISHED: AtomicU64 = AtomicU64::new(0);
    FINISHED.store(0, SeqCst);
    let busy = SimPlatform::run(smp, CPUS, move |me| {
        let mut busy = 0u64;
        if me == 0 {
            while FINISHED.load(SeqCst) < (CPUS - 1) as u64 {
                if !smp.run_posted_task() {
                    smp.platform.relax();
                }
            }
            return busy;
        }
        for round in 0..PER_POSTER {
            let ctx = me * PER_POSTER + round;
            loop {
                let since = smp.platform.cycles();
                match smp.post_task(0, record, ctx, since, bound) {
                    Ok(()) => break,
                    Err(TaskError::Busy(_)) => busy += 1,
                    Err(e) => panic!("seed {seed}: post {ctx}: {e:?}"),
                }
            }
            let since = smp.platform.cycles();
            let r = smp
                .collect_task(0, since, bound)
                .unwrap_or_else(|e| panic!("seed {seed}: collect {ctx}: {e:?}"));
            assert_eq!(
                r,
                (ctx as u64) << 8,
                "seed {seed}: CPU {me} collected another task's result for ctx {ctx}"
            );
        }
        FINISHED.fetch_add(1, SeqCst);
        busy
    });
    for poster in 1..CPUS {
        for round in 0..PER_POSTER {
            let n = RUNS[poster * PER_POSTER + round].load(Relaxed);
            assert_eq!(
                n, 1,
                "seed {seed}: task of CPU {poster} round {round} ran {n} times"
            );
        }
    }
    assert!(
        smp.cpu(0).task.is_free(),
        "seed {seed}: the slot is left busy"
    );
    busy.iter().sum()
}

#[test]
fn several_posters_each_collect_their_own_result_spinning() {
    for seed in 0..seeds() {
        several_posters(seed, false);
    }
}

/// The same on free-running threads, many times: a claim that is not one
/// atomic step (two posters both taking a free slot) shows here.
#[test]
fn several_posters_on_real_threads() {
    for _ in 0..seeds() * 8 {
        several_posters_on(None, false);
    }
}

#[test]
fn several_posters_each_collect_their_own_result_napping() {
    for seed in 0..seeds() {
        several_posters(seed, true);
    }
}

static LONG_RUNS: AtomicU64 = AtomicU64::new(0);
static RELEASE: AtomicBool = AtomicBool::new(false);
/// The machine of the current seed (the seeded scheduler is cooperative:
/// a spinning CPU must pass the turn on).
static MACHINE: std::sync::Mutex<Option<&'static SimSmp>> = std::sync::Mutex::new(None);

/// Runs until RELEASE is set.
fn long(_: usize, _: usize) -> u64 {
    LONG_RUNS.fetch_add(1, Relaxed);
    let smp = MACHINE.lock().unwrap().expect("set by the test");
    while !RELEASE.load(SeqCst) {
        smp.platform.relax();
    }
    7
}

fn quick(cpu: usize, ctx: usize) -> u64 {
    (ctx * 10 + cpu) as u64
}

/// A poster that gives up: a task not yet taken is withdrawn and never
/// runs; one already running is abandoned, runs to its end, and its CPU
/// frees the slot, which the next poster then gets.
#[test]
fn a_poster_that_gives_up_withdraws_or_abandons() {
    for seed in 0..seeds() {
        let smp: &SimSmp = SimPlatform::seeded(Line::Latch, TICK_EVERY, 3, 2, seed);
        *MACHINE.lock().unwrap() = Some(smp);
        LONG_RUNS.store(0, SeqCst);
        RELEASE.store(false, SeqCst);
        static SERVE: AtomicBool = AtomicBool::new(false);
        static STOP: AtomicBool = AtomicBool::new(false);
        SERVE.store(false, SeqCst);
        STOP.store(false, SeqCst);
        SimPlatform::run(smp, 2, move |me| {
            if me == 1 {
                while !STOP.load(SeqCst) {
                    if !(SERVE.load(SeqCst) && smp.run_posted_task()) {
                        smp.platform.relax();
                    }
                }
                return;
            }
            // CPU 1 does not serve yet: the task is withdrawn untaken.
            let t = smp.platform.cycles();
            smp.post_task(1, long, 0, t, 1 << 40).unwrap();
            let r = smp.collect_task(1, smp.platform.cycles(), 50);
            assert_eq!(
                r,
                Err(TaskError::TimedOut {
                    cpu: 1,
                    started: false
                }),
                "seed {seed}"
            );
            assert!(
                smp.cpu(1).task.is_free(),
                "seed {seed}: a withdrawn task leaves the slot free"
            );
            // Now CPU 1 serves: the long task is taken, then abandoned.
            SERVE.store(true, SeqCst);
            smp.post_task(1, long, 0, smp.platform.cycles(), 1 << 40)
                .unwrap();
            while LONG_RUNS.load(SeqCst) == 0 {
                smp.platform.relax();
            }
            let r = smp.collect_task(1, smp.platform.cycles(), 50);
            assert_eq!(
                r,
                Err(TaskError::TimedOut {
                    cpu: 1,
                    started: true
                }),
                "seed {seed}"
            );
            RELEASE.store(true, SeqCst);
            // The next poster gets the slot once the abandoned task ends,
            // and its own result.
            smp.post_task(1, quick, 4, smp.platform.cycles(), 1 << 40)
                .unwrap();
            let r = smp.collect_task(1, smp.platform.cycles(), 1 << 40);
            assert_eq!(r, Ok(41), "seed {seed}");
            STOP.store(true, SeqCst);
        });
        assert_eq!(
            LONG_RUNS.load(SeqCst),
            1,
            "seed {seed}: the withdrawn task ran"
        );
    }
}

/// Collecting from a slot this CPU did not post to, or from a CPU that does
/// not exist, is refused at once (no wait, no panic).
#[test]
fn collecting_without_a_post_is_refused() {
    let smp: &SimSmp = SimPlatform::seeded(Line::Latch, TICK_EVERY, 3, 2, 1);
    let r = SimPlatform::run(smp, 2, move |me| {
        if me == 1 {
            return (Ok(0), Ok(0), Ok(()));
        }
        (
            smp.collect_task(1, smp.platform.cycles(), 1 << 40),
            smp.collect_task(99, smp.platform.cycles(), 1 << 40),
            smp.post_task(99, quick, 0, smp.platform.cycles(), 1 << 40),
        )
    });
    assert_eq!(r[0].0, Err(TaskError::NotPosted(1)));
    assert_eq!(r[0].1, Err(TaskError::NotPosted(99)));
    assert_eq!(r[0].2, Err(TaskError::NoSuchCpu(99)));
}
