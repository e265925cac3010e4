//! The stress workload behind the fault x fix matrix (`stress=N`): every
//! online CPU issues N synchronous TLB shootdowns (flush_tlb_page of an
//! address space active on every CPU) at the same time, under the fault
//! injection and fixes chosen on the command line. One result line tells the
//! host what happened; the run then halts (exit 0: the experiment ran).
//!
//! A deadlock is *detected*, not waited out: the watchdog's abort threshold
//! makes a stalled waiter give up with `XcallError::Stalled`, and the time of
//! the first watchdog report is the time to detection. The first waiter that
//! gives up, or the run's time bound, tells every worker to stop after its
//! current shootdown; each CPU's count is kept either way.
//!
//! Every shootdown is also the flush of a page-table free
//! (`alphasmp::ptfree`): the worker unlinks a (pretend) table, flushes the
//! page with proof and frees the table with that proof. Every CPU runs the
//! space, so a complete flush covers everyone and the free sends nothing
//! more; a flush that stalls leaves its table on the deferred list, which
//! the experiment's recovery retries. The `pt_*` counts say what happened.
//!
//! [`run_cell`] is one such run; the experiment (`run::experiment`) runs
//! many of them in one boot.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alphasmp::mailbox::IpiMessage;
use alphasmp::ptfree::{FlushProof, Freed, TableFreer};
use alphasmp::tlb::AddressSpace;
use alphasmp::xcall::XcallError;
use alphasmp_bootargs::BootConfig;
use alphasmp_bootargs::lines::STRESS_RESULT;

use crate::console::println;
use crate::percpu::{CPUS, MAX_CPUS};
use crate::platform::{AlphaPlatform, MMU, SMP};
use crate::{clock, ipl, mm, smp};

static SPACE: AddressSpace<MAX_CPUS> = AddressSpace::new();
const PAGE: u64 = 7;

/// The workload's table frees. The tables are pretend (numbers): a release
/// is a count.
pub static FREER: TableFreer<AlphaPlatform, MAX_CPUS> = TableFreer::new(&MMU, &released);
static RELEASED: AtomicU64 = AtomicU64::new(0);

fn released(_: u64) {
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

/// What every worker of one run shares: the parameters, the start barrier
/// and what the workers report. Lives on the boot CPU's stack for the run;
/// the workers get its address as their context.
struct Run {
    per_cpu: u64,
    masked_wait: bool,
    /// Each worker stops once its own clock passes its start plus this and
    /// a wait has reached the watchdog (or ten times this in any case).
    bound_ns: u64,
    progress: bool,
    start_ns: u64,
    ready: AtomicU64,
    /// Set by the first waiter that gives up or the first worker past the
    /// time bound: every worker stops after its current shootdown.
    stop: AtomicBool,
    /// A worker stopped because of the time bound.
    cut: AtomicBool,
    /// When the first waiter gave up (ns since the start barrier, each CPU
    /// on its own clock; u64::MAX: never).
    first_abort_ns: AtomicU64,
    /// 1 + the target a CPU's wait gave up on (0: none).
    aborted: [AtomicU64; MAX_CPUS],
    other_errors: AtomicU64,
    /// How each worker's table frees went.
    pt_elided: AtomicU64,
    pt_synced: AtomicU64,
    pt_deferred: AtomicU64,
}

/// One shootdown: unlink (pretend) table `n`, flush the page with proof,
/// free the table with that proof. The table is a number no walker reads,
/// so the page flush stands for the shootdown this run stresses; a real
/// table's unlink takes `flush_tlb_table_proved` (the hardware walker
/// caches the table itself), as `ptfree.replace_l3_under_walkers` does.
fn free_one(n: u64) -> (FlushProof, Freed) {
    let token = MMU.unlink_table(&SPACE, n);
    let proof = MMU.flush_tlb_page_proved(&SPACE, mm::va(PAGE), false);
    let freed = FREER.free(token, &proof);
    (proof, freed)
}

fn worker(me: usize, ctx: usize) -> u64 {
    // SAFETY: `run_cell` passes the address of its `Run`, which it keeps
    // alive until every worker has returned (run_on_cpus_with waits for
    // them; a worker that does not return ends the run with it).
    let run = unsafe { &*(ctx as *const Run) };
    MMU.activate(&SPACE);
    // Start barrier: every CPU has the space active (so every shootdown
    // really crosses CPUs) and all start flushing together.
    run.ready.fetch_add(1, Ordering::AcqRel);
    let all = smp::online_count() as u64;
    let end = clock::now_ns() + 5_000_000_000;
    while run.ready.load(Ordering::Acquire) < all && clock::now_ns() < end {
        core::hint::spin_loop();
    }
    // Each CPU times its own wait on its own clock: cycle counters of
    // different CPUs are not synchronised on real machines, so a start time
    // read on one CPU means nothing on another.
    let my_start = clock::now_ns();
    let mut done = 0;
    let total = run.per_cpu;
    let tenth = (total / 10).max(1);
    for i in 0..total {
        if run.stop.load(Ordering::Relaxed) {
            break;
        }
        // Past the bound, a run that needed the watchdog is cut (a crawl);
        // one that is merely slow goes on, up to ten times the bound.
        let ran = clock::now_ns() - my_start;
        if ran > run.bound_ns
            && (ran > 10 * run.bound_ns
                || sum(|c| SMP.cpu(c).stats.stalls.load(Ordering::Relaxed)) > 0)
        {
            run.cut.store(true, Ordering::Relaxed);
            run.stop.store(true, Ordering::Relaxed);
            break;
        }
        if run.progress && me == 0 && i > 0 && i % tenth == 0 && total >= 10_000 {
            // Progress for long runs (CPU 0's share stands for everyone's).
            let ms = (clock::now_ns() - run.start_ns) / 1_000_000;
            println!("stress: {}% after {} ms", i * 100 / total, ms);
        }
        // Under the masked-wait fault the whole free waits masked: its
        // flush, and its sync round if it needed one (it never does here:
        // every CPU runs the space). Otherwise the free runs in task
        // context at this CPU's own level.
        let (proof, freed) = if run.masked_wait {
            let _masked = ipl::IplGuard::raise(ipl::HIGH);
            free_one(i)
        } else {
            free_one(i)
        };
        match freed {
            Freed::Elided => run.pt_elided.fetch_add(1, Ordering::Relaxed),
            Freed::Synced(_) => run.pt_synced.fetch_add(1, Ordering::Relaxed),
            Freed::Deferred => run.pt_deferred.fetch_add(1, Ordering::Relaxed),
            // The deferred list is full: the run cannot free its tables.
            Freed::Refused(..) => run.other_errors.fetch_add(1, Ordering::Relaxed),
        };
        match proof.result {
            Ok(()) => done += 1,
            Err(XcallError::Stalled { target }) => {
                // Detected when the watchdog's report that gave up began,
                // not after its console time.
                let reported = crate::platform::LAST_STALL_REPORT_NS[me].load(Ordering::Relaxed);
                let at = if reported >= my_start {
                    reported
                } else {
                    clock::now_ns()
                } - my_start;
                run.first_abort_ns.fetch_min(at, Ordering::Relaxed);
                run.aborted[me].store(target as u64 + 1, Ordering::Relaxed);
                run.stop.store(true, Ordering::Relaxed);
                break;
            }
            Err(_) => {
                run.other_errors.fetch_add(1, Ordering::Relaxed);
                run.stop.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    done
}

fn sum(f: impl Fn(usize) -> u64) -> u64 {
    smp::online_cpus().map(f).sum()
}

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every shootdown completed and no wait needed the watchdog.
    Completed,
    /// A waiter gave up at the watchdog's abort threshold.
    Deadlock,
    /// No waiter gave up, but progress needed the watchdog (a wait passed
    /// its bound and was answered by a re-send or a late rescue) or the
    /// time bound cut the run while it still advanced.
    Crawl,
    /// A shootdown was refused for another reason.
    Error,
    /// A worker never returned, even past the watchdog and the bound.
    NeverFinished(usize),
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Deadlock => "deadlock",
            Outcome::Crawl => "crawl",
            Outcome::Error => "error",
            Outcome::NeverFinished(_) => "unrecovered",
        }
    }
}

/// One run's parameters.
pub struct Spec {
    pub per_cpu: u64,
    pub masked_wait: bool,
    /// Each worker's time bound (its own clock, from the start barrier),
    /// applied once a wait has reached the watchdog; ten times it applies
    /// in any case.
    pub bound_ns: u64,
    /// Print progress lines on long runs.
    pub progress: bool,
}

/// What one run measured (the counters are read from the SMP core).
pub struct CellResult {
    pub outcome: Outcome,
    pub done: [u64; MAX_CPUS],
    pub aborted_cpus: usize,
    pub cut: bool,
    pub elapsed_ns: u64,
    /// Time to detection: the first waiter's give-up, on its own clock.
    pub detect_ns: Option<u64>,
    pub errors: u64,
    pub frees: PtFrees,
}

/// The workload's page-table frees in one run.
#[derive(Clone, Copy, Default)]
pub struct PtFrees {
    pub elided: u64,
    pub synced: u64,
    /// Left on the deferred list because their flush stalled.
    pub deferred: u64,
    /// Deferred ones a later sync freed (the experiment's retry).
    pub freed_late: u64,
    /// Still on the deferred list.
    pub waiting: u64,
}

impl PtFrees {
    pub fn total(&self) -> u64 {
        self.elided + self.synced + self.deferred
    }

    /// Frees the deferred tables if every CPU answers a sync now (after a
    /// recovery), and counts them.
    pub fn retry(&mut self) {
        self.freed_late += FREER.retry() as u64;
        self.waiting = FREER.deferred() as u64;
    }
}

impl CellResult {
    pub fn total_done(&self) -> u64 {
        smp::online_cpus().map(|c| self.done[c]).sum()
    }
}

/// Runs every online CPU's share of synchronous shootdowns at once, under
/// whatever policy and injection are set, and classifies the ending.
pub fn run_cell(spec: &Spec) -> CellResult {
    let online = smp::online();
    let run = Run {
        per_cpu: spec.per_cpu,
        masked_wait: spec.masked_wait,
        bound_ns: spec.bound_ns,
        progress: spec.progress,
        start_ns: clock::now_ns(),
        ready: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        cut: AtomicBool::new(false),
        first_abort_ns: AtomicU64::new(u64::MAX),
        aborted: [const { AtomicU64::new(0) }; MAX_CPUS],
        other_errors: AtomicU64::new(0),
        pt_elided: AtomicU64::new(0),
        pt_synced: AtomicU64::new(0),
        pt_deferred: AtomicU64::new(0),
    };
    // Every worker ends: each wait is bounded by the watchdog's abort, and
    // each worker by the time bound plus its last wait.
    let watchdog_ns = clock::cycles_to_ns(SMP.policy.watchdog_cycles.load(Ordering::Relaxed));
    let abort_after = SMP.policy.abort_after.load(Ordering::Relaxed).max(1);
    let timeout = 10 * spec.bound_ns + 4 * abort_after * watchdog_ns + 10_000_000_000;
    let result = smp::run_on_cpus_with(online, worker, &raw const run as usize, timeout);
    let elapsed_ns = clock::now_ns() - run.start_ns;
    let done = result.unwrap_or([0; MAX_CPUS]);
    let aborted_cpus = smp::online_cpus()
        .filter(|c| run.aborted[*c].load(Ordering::Relaxed) != 0)
        .count();
    let errors = run.other_errors.load(Ordering::Relaxed);
    let cut = run.cut.load(Ordering::Relaxed);
    let stalls = sum(|c| SMP.cpu(c).stats.stalls.load(Ordering::Relaxed));
    let total: u64 = online.iter().map(|c| done[c]).sum();
    // Only a waiter that gave up (Stalled) or never finished is a deadlock;
    // any other refusal is an error of the run, reported as such.
    let outcome = match result {
        Err(cpu) => Outcome::NeverFinished(cpu),
        Ok(_) if aborted_cpus > 0 => Outcome::Deadlock,
        Ok(_) if errors > 0 => Outcome::Error,
        Ok(_) if cut || stalls > 0 => Outcome::Crawl,
        Ok(_) if total == spec.per_cpu * online.count() as u64 => Outcome::Completed,
        Ok(_) => Outcome::Error,
    };
    let first = run.first_abort_ns.load(Ordering::Relaxed);
    CellResult {
        outcome,
        done,
        aborted_cpus,
        cut,
        elapsed_ns,
        detect_ns: (first != u64::MAX).then_some(first),
        errors,
        frees: PtFrees {
            elided: run.pt_elided.load(Ordering::Relaxed),
            synced: run.pt_synced.load(Ordering::Relaxed),
            deferred: run.pt_deferred.load(Ordering::Relaxed),
            freed_late: 0,
            waiting: FREER.deferred() as u64,
        },
    }
}

/// The core's counters every result line carries, summed over CPUs.
pub struct Counters {
    pub stalls: u64,
    pub resends: u64,
    pub dropped: u64,
    pub lock_drains: u64,
    pub rescued_call: u64,
    pub idle_rescued_call: u64,
    pub rescued_other: u64,
}

impl Counters {
    pub fn read() -> Counters {
        let rescued: [u64; IpiMessage::COUNT] =
            core::array::from_fn(|i| sum(|c| SMP.cpu(c).stats.rescued[i].load(Ordering::Relaxed)));
        let call = IpiMessage::CALL_FUNCTION.index();
        Counters {
            stalls: sum(|c| SMP.cpu(c).stats.stalls.load(Ordering::Relaxed)),
            resends: sum(|c| SMP.cpu(c).stats.resends.load(Ordering::Relaxed)),
            dropped: sum(|c| CPUS[c].dropped_ipis.load(Ordering::Relaxed)),
            lock_drains: sum(|c| SMP.cpu(c).stats.lock_drains.load(Ordering::Relaxed)),
            rescued_call: rescued[call],
            idle_rescued_call: sum(|c| SMP.cpu(c).stats.idle_rescued[call].load(Ordering::Relaxed)),
            rescued_other: rescued.iter().sum::<u64>() - rescued[call],
        }
    }
}

/// Each online CPU's count, `a,b,c`.
pub struct PerCpu<'a>(pub &'a [u64; MAX_CPUS]);

impl core::fmt::Display for PerCpu<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, c) in smp::online_cpus().enumerate() {
            write!(f, "{}{}", if i > 0 { "," } else { "" }, self.0[c])?;
        }
        Ok(())
    }
}

/// Runs the workload and halts.
pub fn run(cfg: &BootConfig<'_>) -> ! {
    let online = smp::online();
    mm::set(PAGE, Some(mm::alloc_page()));
    // A stalled wait gives up at its first report, or at its third when the
    // watchdog re-sends (two re-sends must have failed to call it deadlock).
    SMP.policy
        .abort_after
        .store(if cfg.resend { 3 } else { 1 }, Ordering::Relaxed);
    println!(
        "stress: {} CPU(s), {} shootdowns each, inject={}, ipi_lock={}, ipi_poll={}, resend={}, watchdog {} ms, irq load {} us",
        online.count(),
        cfg.stress,
        cfg.inject.name(),
        cfg.ipi_lock as u8,
        cfg.ipi_poll as u8,
        cfg.resend as u8,
        cfg.watchdog_ms,
        cfg.irq_load_us
    );
    let r = run_cell(&Spec {
        per_cpu: cfg.stress,
        masked_wait: cfg.inject.masked_wait,
        bound_ns: (cfg.stress * 50_000_000 + 60_000_000_000) / 10,
        progress: true,
    });
    if let Outcome::NeverFinished(cpu) = r.outcome {
        println!("stress: CPU {cpu} never finished (no watchdog covered its wait)");
    }
    let outcome = match r.outcome {
        // This mode has always called a worker that never returned a deadlock.
        Outcome::NeverFinished(_) => "deadlock",
        o => o.name(),
    };
    let c = Counters::read();
    let pt = r.frees;
    println!(
        "{}",
        STRESS_RESULT.line([
            &outcome,
            &online.count(),
            &cfg.stress,
            &r.total_done(),
            &PerCpu(&r.done),
            &r.aborted_cpus,
            &(r.cut as u8),
            &(r.elapsed_ns / 1_000_000),
            &(r.elapsed_ns / 1_000),
            &r.detect_ns.map_or(-1, |n| (n / 1_000_000) as i64),
            &r.errors,
            &c.stalls,
            &c.resends,
            &c.dropped,
            &c.lock_drains,
            &c.rescued_call,
            &c.idle_rescued_call,
            &c.rescued_other,
            &pt.total(),
            &pt.elided,
            &pt.synced,
            &pt.deferred,
            &pt.freed_late,
            &pt.waiting,
        ])
    );
    // The verdict is the stress-result line, which the host reads.
    smp::finish(true, "stress run reported")
}

/// Maps the stress page (once, before the first run).
pub fn prepare() {
    mm::set(PAGE, Some(mm::alloc_page()));
}
