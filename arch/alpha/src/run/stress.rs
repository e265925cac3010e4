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
//! [`run_cell`] is one such run; the experiment (`run::experiment`) runs
//! many of them in one boot.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alphasmp::mailbox::IpiMessage;
use alphasmp::tlb::AddressSpace;
use alphasmp::xcall::XcallError;
use alphasmp_bootargs::BootConfig;

use crate::console::println;
use crate::percpu::{CPUS, MAX_CPUS};
use crate::platform::{MMU, SMP};
use crate::{clock, ipl, mm, smp};

static SPACE: AddressSpace<MAX_CPUS> = AddressSpace::new();
const PAGE: u64 = 7;

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
        let result = if run.masked_wait {
            let _masked = ipl::IplGuard::raise(ipl::HIGH);
            MMU.flush_tlb_page(&SPACE, mm::va(PAGE), false)
        } else {
            MMU.flush_tlb_page(&SPACE, mm::va(PAGE), false)
        };
        match result {
            Ok(()) => done += 1,
            Err(XcallError::Stalled { target }) => {
                let at = clock::now_ns() - my_start;
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
    }
}

/// The counters every result line carries, as `key=value` words.
pub struct Counters;

impl core::fmt::Display for Counters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let rescued: [u64; IpiMessage::COUNT] =
            core::array::from_fn(|i| sum(|c| SMP.cpu(c).stats.rescued[i].load(Ordering::Relaxed)));
        let call = IpiMessage::CALL_FUNCTION.index();
        write!(
            f,
            "stalls={} resends={} dropped={} lock_drains={} rescued_call={} idle_rescued_call={} rescued_other={}",
            sum(|c| SMP.cpu(c).stats.stalls.load(Ordering::Relaxed)),
            sum(|c| SMP.cpu(c).stats.resends.load(Ordering::Relaxed)),
            sum(|c| CPUS[c].dropped_ipis.load(Ordering::Relaxed)),
            sum(|c| SMP.cpu(c).stats.lock_drains.load(Ordering::Relaxed)),
            rescued[call],
            sum(|c| SMP.cpu(c).stats.idle_rescued[call].load(Ordering::Relaxed)),
            rescued.iter().sum::<u64>() - rescued[call],
        )
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
    println!(
        "stress-result: outcome={} cpus={} per_cpu={} done={} done_per_cpu={} aborted_cpus={} cut={} elapsed_ms={} elapsed_us={} detect_ms={} {} errors={}",
        outcome,
        online.count(),
        cfg.stress,
        r.total_done(),
        PerCpu(&r.done),
        r.aborted_cpus,
        r.cut as u8,
        r.elapsed_ns / 1_000_000,
        r.elapsed_ns / 1_000,
        r.detect_ns.map_or(-1, |n| (n / 1_000_000) as i64),
        Counters,
        r.errors,
    );
    // The verdict is the stress-result line, which the host reads.
    smp::finish(true, "stress run reported")
}

/// Maps the stress page (once, before the first run).
pub fn prepare() {
    mm::set(PAGE, Some(mm::alloc_page()));
}
