//! The stress workload behind the fault x fix matrix (`stress=N`): every
//! online CPU issues N synchronous TLB shootdowns (flush_tlb_page of an
//! address space active on every CPU) at the same time, under the fault
//! injection and fixes chosen on the command line. One result line tells the
//! host what happened; the run then halts (exit 0: the experiment ran).
//!
//! A deadlock is *detected*, not waited out: the watchdog's abort threshold
//! makes a stalled waiter give up with `XcallError::Stalled`, and the time of
//! the first watchdog report is the time to detection.

use core::sync::atomic::{AtomicU64, Ordering};

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
    start_ns: u64,
    ready: AtomicU64,
    /// When the first waiter gave up (ns since the start barrier, each CPU
    /// on its own clock; u64::MAX: never).
    first_abort_ns: AtomicU64,
    /// 1 + the target a CPU's wait gave up on (0: none).
    aborted: [AtomicU64; MAX_CPUS],
    other_errors: AtomicU64,
}

fn worker(me: usize, ctx: usize) -> u64 {
    // SAFETY: `run` passes the address of its `Run`, which it keeps alive
    // until every worker has returned (run_on_cpus_with waits for them, or
    // the run ends without returning).
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
        if me == 0 && i > 0 && i % tenth == 0 && total >= 10_000 {
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
                return done;
            }
            Err(_) => {
                run.other_errors.fetch_add(1, Ordering::Relaxed);
                return done;
            }
        }
    }
    done
}

fn sum(f: impl Fn(usize) -> u64) -> u64 {
    smp::online_cpus().map(f).sum()
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
    let run = Run {
        per_cpu: cfg.stress,
        masked_wait: cfg.inject.masked_wait,
        start_ns: clock::now_ns(),
        ready: AtomicU64::new(0),
        first_abort_ns: AtomicU64::new(u64::MAX),
        aborted: [const { AtomicU64::new(0) }; MAX_CPUS],
        other_errors: AtomicU64::new(0),
    };
    // Every worker ends: each wait is bounded by the watchdog's abort.
    let bound_ns = cfg.stress * 50_000_000 + 60_000_000_000;
    let result = smp::run_on_cpus_with(online, worker, &raw const run as usize, bound_ns);
    let elapsed = clock::now_ns() - run.start_ns;
    let done: u64 = match result {
        Ok(per_cpu) => per_cpu.iter().sum(),
        Err(cpu) => {
            println!("stress: CPU {cpu} never finished (no watchdog covered its wait)");
            0
        }
    };
    let aborted = smp::online_cpus()
        .filter(|c| run.aborted[*c].load(Ordering::Relaxed) != 0)
        .count();
    let errors = run.other_errors.load(Ordering::Relaxed);
    // Only a waiter that gave up (Stalled) or never finished is a deadlock;
    // any other refusal is an error of the run, reported as such.
    let outcome = if result.is_err() || aborted > 0 {
        "deadlock"
    } else if errors > 0 {
        "error"
    } else if done != cfg.stress * online.count() as u64 {
        "incomplete"
    } else {
        "completed"
    };
    let first = run.first_abort_ns.load(Ordering::Relaxed);
    let rescued: [u64; IpiMessage::COUNT] =
        core::array::from_fn(|i| sum(|c| SMP.cpu(c).stats.rescued[i].load(Ordering::Relaxed)));
    println!(
        "stress-result: outcome={} cpus={} per_cpu={} done={} aborted_cpus={} elapsed_ms={} elapsed_us={} detect_ms={} stalls={} resends={} dropped={} lock_drains={} rescued_call={} idle_rescued_call={} rescued_other={} errors={}",
        outcome,
        online.count(),
        cfg.stress,
        done,
        aborted,
        elapsed / 1_000_000,
        elapsed / 1_000,
        if first == u64::MAX {
            -1
        } else {
            (first / 1_000_000) as i64
        },
        sum(|c| SMP.cpu(c).stats.stalls.load(Ordering::Relaxed)),
        sum(|c| SMP.cpu(c).stats.resends.load(Ordering::Relaxed)),
        sum(|c| CPUS[c].dropped_ipis.load(Ordering::Relaxed)),
        sum(|c| SMP.cpu(c).stats.lock_drains.load(Ordering::Relaxed)),
        rescued[IpiMessage::CALL_FUNCTION.index()],
        sum(
            |c| SMP.cpu(c).stats.idle_rescued[IpiMessage::CALL_FUNCTION.index()]
                .load(Ordering::Relaxed)
        ),
        rescued.iter().sum::<u64>() - rescued[IpiMessage::CALL_FUNCTION.index()],
        errors,
    );
    // The verdict is the stress-result line, which the host reads.
    smp::finish(true, "stress run reported")
}
