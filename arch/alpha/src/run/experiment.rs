//! The fault x fix experiment in one boot (`experiment=native|injected|all`):
//! every cell of the set runs the stress workload (`run::stress`) in
//! sequence, with the fixes and the injection switched at run time, and the
//! machine returned to a clean state between cells. What an AlphaServer
//! owner boots once to learn whether the machine loses IPI edges and which
//! fix it needs.
//!
//! # One cell
//!
//! 1. Zero the counters: every CPU, through its task slot, waits until all
//!    have arrived, then zeroes its own counters and census at IPL 7
//!    (`reset_counters`; a CPU that does not arrive ends the experiment
//!    with one line naming it). Set the cell's fixes (`ipi_lock`,
//!    `ipi_poll`, `resend`, and the watchdog's abort threshold) and
//!    injection.
//! 2. Run the workload (`stress::run_cell`): a waiter that gives up ends
//!    the cell for everyone (deadlock), the time bound cuts a crawl.
//! 3. Injection off; wait eight clock periods, then until every CPU has
//!    taken three more clock interrupts, so the census judges every
//!    request of the cell (`alphasmp::census`), and read it.
//! 4. Recover (`alphasmp::recover`): every CPU, reached through its task
//!    slot (which its idle loop checks after every interrupt, so no IPI
//!    needs to arrive), takes its mailbox and queue and runs each call the
//!    cell stranded, counted; then every CPU's mailbox, queue and
//!    descriptors, and the serialization lock, must be clear, and every CPU
//!    back at IPL 0. A CPU that does not come back ends the experiment with
//!    one line naming the cell and the CPU.
//! 5. Print the cell's line; the next run starts at step 1.
//!
//! Cells the protocol predicts "either" for run `either_runs=` times.

use core::sync::atomic::Ordering;

use alloc::vec::Vec;
use alphasmp::census::Counts;
use alphasmp::recover::Meeting;
use alphasmp_bootargs::BootConfig;
use alphasmp_bootargs::experiment::{self, CellId, Expect, FORMAT_VERSION};
use alphasmp_bootargs::lines::{EXPERIMENT_BEGIN, EXPERIMENT_CELL, EXPERIMENT_END};

use super::stress::{self, CellResult, Counters, Outcome, PerCpu};
use crate::console::println;
use crate::percpu::CPUS;
use crate::platform::{self, SMP};
use crate::{clock, cpus, hwrpb, interrupt, ipl, machine, percpu, smp};

/// Each worker's time bound in a cell, in watchdog periods (at least
/// [`CELL_BOUND_MIN_NS`]): a crawl at the watchdog's pace is cut there and
/// reported as a crawl, with every CPU's count. A completing cell ends far
/// sooner. Only a run in which a wait reached the watchdog is cut at the
/// bound (`stress::worker`), so the bound never turns a completing cell
/// into a crawl. A wait that reaches the watchdog without giving up is one
/// that a re-send may still answer (`abort_after` is 3 only with
/// `resend`): the bound says how long such a run is watched before it is
/// called a crawl, and a deadlock that would have come later is called a
/// crawl too. The protocol predicts "either" for every cell where a
/// re-send can answer a wait; where it cannot (masked waits on more than 2
/// CPUs) the waits give up at their third period, inside six.
const CELL_BOUND_WATCHDOGS: u64 = 6;

/// The least time bound of a cell: a crawl under a very short watchdog
/// still runs long enough to count its progress on every CPU. (It was 2 s:
/// with the tests' 100 ms watchdog that made each crawling cell 2 s where
/// six periods are 0.6 s, a fifth of the 2-CPU experiment's boot.)
const CELL_BOUND_MIN_NS: u64 = 500_000_000;

/// The result of one run of a cell.
struct Row {
    n: usize,
    cell: CellId,
    expect: Expect,
    outcome: &'static str,
}

/// Sets a cell's fixes and injection (step 1).
fn apply(cell: CellId) {
    let p = &SMP.policy;
    let f = cell.fixes;
    p.serialize.store(f.lock, Ordering::Relaxed);
    p.poll_in_irq.store(f.poll, Ordering::Relaxed);
    p.resend.store(f.resend, Ordering::Relaxed);
    // A stalled wait gives up at its first report, or at its third when the
    // watchdog re-sends (two re-sends must have failed to call it deadlock).
    p.abort_after
        .store(if f.resend { 3 } else { 1 }, Ordering::Relaxed);
    // The experiment counts interrupts: no CPU hears a message without one
    // (alphasmp::listen).
    p.listen.store(false, Ordering::Relaxed);
    let inject = cell.inject();
    p.allow_masked_wait
        .store(inject.masked_wait, Ordering::Relaxed);
    platform::INJECT_EDGE_LOSS.store(inject.edge_loss, Ordering::Relaxed);
    platform::INJECT_EDGE_LOSS_MASKED.store(inject.edge_loss_masked, Ordering::Relaxed);
}

/// Turns every injection off (step 3).
fn injection_off() {
    platform::INJECT_EDGE_LOSS.store(false, Ordering::Relaxed);
    platform::INJECT_EDGE_LOSS_MASKED.store(false, Ordering::Relaxed);
    SMP.policy.allow_masked_wait.store(false, Ordering::Relaxed);
}

/// Step 4 on one CPU, in task context: the calls it ran, and its IPL in
/// the top bits.
fn quiesce(_me: usize) -> u64 {
    SMP.quiesce_this_cpu() | (u64::from(ipl::current()) << 56)
}

/// Why a cell could not be recovered.
enum Unrecovered {
    /// The CPU did not run the recovery (it never came back from the cell).
    NoAnswer(usize),
    /// The CPU ran it but something is still pending.
    Left(usize, alphasmp::recover::Leftovers),
    /// The CPU came back at a raised IPL.
    Ipl(usize, u64),
    /// The CPU did not reach the counters' reset before the run (the
    /// others waited for it and gave up).
    NotReset(usize),
}

/// Step 4: returns the number of stranded calls run.
fn recover() -> Result<u64, Unrecovered> {
    let online = smp::online();
    let ran = smp::run_on_cpus(online, quiesce, 5_000_000_000).map_err(Unrecovered::NoAnswer)?;
    let mut calls = 0;
    for cpu in online.iter() {
        let level = ran[cpu] >> 56;
        if level != 0 {
            return Err(Unrecovered::Ipl(cpu, level));
        }
        calls += ran[cpu] & ((1 << 56) - 1);
    }
    // A CPU can find its recovery task in its slot before the PING that
    // announces it reaches its mailbox (its sender stopped by the host in
    // between), drain an empty mailbox, and finish: the PING then waits for
    // its interrupt after the task is done (seen in a clean-clone CI run,
    // on a loaded host: "mailbox IpiMessage(PING), queue empty"). So each
    // CPU gets a moment (100 ms) to take what is on its way before what
    // it still has counts as left over.
    for cpu in online.iter() {
        let start = clock::now_ns();
        loop {
            let left = SMP.leftovers(cpu);
            if left.is_clean() {
                break;
            }
            if clock::now_ns() - start >= SETTLE_NS {
                return Err(Unrecovered::Left(cpu, left));
            }
            clock::pause_since(start);
        }
    }
    Ok(calls)
}

/// How long [`recover`] lets a CPU take what is on its way to it.
const SETTLE_NS: u64 = 100_000_000;

/// Zeroes every counter a cell line reports (step 1), each CPU its own
/// (`Smp::reset_counters_this_cpu`), all at once: every CPU, reached
/// through its task slot, waits until all have arrived, and only then
/// resets, at IPL 7. Each CPU resets its own census, with its interrupts
/// masked, because the census's judging marks are written by that CPU's
/// interrupts (reset from another CPU, a judgement under way could store
/// a mark it read before the reset). All meet first because reaching the
/// CPUs sends them requests the census counts (the task slots' IPIs): a
/// CPU that reset while the request to it was numbered but not yet issued
/// counted it issued but not numbered, and its census found more requests
/// than were made (seen: delivered + late + stranded one above the
/// requests, stranded above the injection's ground truth). The caller
/// posts every task before it runs its own, so once every CPU is at the
/// meeting every such request has been issued (one may still be pending
/// at its target when that CPU masks its interrupts to reset: its number
/// is zeroed with the rest, and taking it later serves nothing).
///
/// The meeting itself waits with interrupts on, sleeping in wtint once the
/// wait is a millisecond old (`clock::pause_since`): where the emulator
/// runs its CPUs one at a time (QEMU under `-icount`), the CPUs still to
/// arrive run only while the waiters sleep, and a waiter at IPL 7 cannot
/// (wtint returns at once for the masked clock interrupt pending there).
/// A meeting held at IPL 7 never ended there: every boot of the
/// experiment under `-icount` stopped at its first cell. `Err(cpu)`: a
/// CPU that did not take part.
fn reset_counters() -> Result<(), usize> {
    let online = smp::online();
    RESET.open(online);
    let missing = smp::run_on_cpus(online, reset_this_cpu, 5_000_000_000)?;
    // A CPU that gave up names the CPUs it was still waiting for.
    if let Some(seen) = online.iter().map(|c| missing[c]).find(|&m| m != 0) {
        return Err(seen.trailing_zeros() as usize);
    }
    for c in CPUS.iter() {
        c.dropped_ipis.store(0, Ordering::Relaxed);
    }
    Ok(())
}

/// Where the CPUs meet before each resets its own counters
/// (`alphasmp::recover::Meeting`, whose docs give the protocol).
static RESET: Meeting = Meeting::new();

/// How long a CPU waits at the meeting for the others.
const RESET_BOUND_NS: u64 = 2_000_000_000;

/// Step 1 on one CPU, in task context: 0 if it reset; else the CPUs it
/// was still waiting for when the bound ran out (then nobody is sure to be
/// quiet, and this CPU leaves its counters as they are).
fn reset_this_cpu(me: usize) -> u64 {
    let since = clock::now_ns();
    let missing = RESET.arrive_and_wait(me, clock::now_ns, RESET_BOUND_NS, || {
        clock::pause_since(since)
    });
    if !missing.is_empty() {
        return missing.0;
    }
    let _masked = ipl::IplGuard::raise(ipl::HIGH);
    SMP.reset_counters_this_cpu();
    0
}

fn census() -> Counts {
    let mut all = Counts::default();
    for cpu in smp::online_cpus() {
        all.add(&SMP.cpu(cpu).census.counts());
    }
    all
}

/// How long the census gets to judge a cell's last requests: eight clock
/// periods (it needs two once every CPU takes the clock again; four were
/// once too few, census_open=1, after a watchdog-cut cell).
fn judging_wait() -> u64 {
    let hz = match clock::base_hz() {
        0 => clock::tick_hz(),
        hz => hz,
    };
    8 * 1_000_000_000 / hz.max(1)
}

/// The most the census waits for a CPU's clock interrupts after a cell.
/// Only a CPU that takes none for that long (one that sits at IPL 7, or a
/// vCPU the host does not run) makes the wait this long.
const JUDGING_BOUND_NS: u64 = 3_000_000_000;

/// Waits until the census has judged a cell's last requests:
/// [`judging_wait`], then until every CPU has taken three more clock
/// interrupts (its census judges at its own clock interrupts, and a vCPU
/// the host has not run for longer than the wait has taken none: eight
/// periods were once too few again, census_open=1 in one run of the
/// injected experiment test), then, while some request is still neither
/// served nor judged, two more at a time, all within
/// [`JUDGING_BOUND_NS`]. A request still open then is the census's to
/// report (census_open); one line per CPU says where its census stands.
fn wait_for_judging() {
    let start = clock::now_ns();
    let clocks_at_start: [u64; percpu::MAX_CPUS] =
        core::array::from_fn(|c| interrupt::COUNTS[c][1].load(Ordering::Relaxed));
    clock::delay_ns(judging_wait());
    let mut rounds = 3;
    loop {
        let elapsed = clock::now_ns() - start;
        let all_ticked =
            smp::wait_clock_interrupts(rounds, JUDGING_BOUND_NS.saturating_sub(elapsed));
        let open = smp::online_cpus().any(|c| SMP.cpu(c).census.counts().open() > 0);
        if !open {
            return;
        }
        if !all_ticked || clock::now_ns() - start >= JUDGING_BOUND_NS {
            break;
        }
        rounds = 2;
    }
    let ms = (clock::now_ns() - start) / 1_000_000;
    for cpu in smp::online_cpus() {
        let census = &SMP.cpu(cpu).census;
        let open = census.counts().open();
        if open == 0 {
            continue;
        }
        let m = census.marks();
        let clocks = interrupt::COUNTS[cpu][1].load(Ordering::Relaxed) - clocks_at_start[cpu];
        println!(
            "experiment: census: CPU {cpu} has {open} request(s) neither served nor judged {ms} ms after the cell \
             (numbered {}, issued {}, served to {}, judged to {}); {clocks} clock interrupt(s) since the cell, noted IPL {}",
            m.numbered,
            m.issued,
            m.served,
            m.judged,
            cpus::ipl_of(cpu)
        );
    }
}

/// The machine's identity for the report's heading.
fn print_begin(cfg: &BootConfig<'_>, cells: usize, size: u64) {
    let (system, member, cpu_type, pal) = hwrpb::get().map_or((0, 0, 0, 0), |h| {
        let me = h.slot(crate::pal::whami() as u64);
        (
            h.sys_type(),
            h.sys_member(),
            me.cpu_type(),
            me.pal_revision(),
        )
    });
    let wait = crate::waitprobe::current();
    println!(
        "{}",
        EXPERIMENT_BEGIN.line([
            &FORMAT_VERSION,
            &env!("CARGO_PKG_VERSION"),
            &cfg.experiment.name(),
            &cells,
            &system,
            &member,
            &cpu_type,
            &alphasmp_srm::machine::cpu_type::name(cpu_type),
            &format_args!("{pal:#x}"),
            &machine::current().map_or("?", |m| m.name),
            &smp::online_count(),
            &size,
            &cfg.either_runs,
            &cfg.watchdog_ms,
            &clock::tick_hz(),
            &cfg.irq_load_us,
            &wait,
        ])
    );
}

/// Runs every cell of the set and halts.
pub fn run(cfg: &BootConfig<'_>) -> ! {
    if cfg.watchdog_ms == 0 {
        println!(
            "error: experiment= needs the watchdog (watchdog_ms=0 given): a deadlock could not end its cell"
        );
        smp::finish(false, "experiment without a watchdog");
    }
    let ncpus = smp::online_count();
    let size = if cfg.cell_size != 0 {
        cfg.cell_size
    } else {
        experiment::default_cell_size(ncpus)
    };
    let nap = SMP.policy.nap.load(Ordering::Relaxed);
    let cells: Vec<CellId> = cfg.experiment.cells().collect();
    stress::prepare();
    println!(
        "experiment: {} cells on {} CPU(s), {} shootdowns per CPU each, cells predicted \"either\" {} times; a deadlock is called at the watchdog ({} ms)",
        cells.len(),
        ncpus,
        size,
        cfg.either_runs,
        cfg.watchdog_ms
    );
    print_begin(cfg, cells.len(), size);
    // The lost-edge probe first: isolated IPIs aimed at the targets'
    // handlers, which the cells' dense traffic cannot show lost (`probe`).
    let probe_size = if cfg.edge_probe_given {
        cfg.edge_probe
    } else {
        alphasmp_bootargs::DEFAULT_EDGE_PROBE
    };
    super::probe::clock_check();
    if probe_size > 0 {
        super::probe::probe(probe_size);
    }
    let started = clock::now_ns();
    let mut rows: Vec<Row> = Vec::new();
    let mut stranded_total = 0;
    let mut unrecovered = None;
    'cells: for (i, &cell) in cells.iter().enumerate() {
        let n = i + 1;
        let expect = experiment::predict_for(cell.fault, cell.fixes.name, ncpus as u32, nap);
        let runs = if expect == Expect::Either {
            cfg.either_runs
        } else {
            1
        };
        for run in 1..=runs {
            // Every run starts from zeroed counters (step 1).
            if let Err(cpu) = reset_counters() {
                unrecovered = Some((n, cell, Unrecovered::NotReset(cpu)));
                break 'cells;
            }
            apply(cell);
            let mut r = stress::run_cell(&stress::Spec {
                per_cpu: size,
                masked_wait: cell.inject().masked_wait,
                bound_ns: (CELL_BOUND_WATCHDOGS * cfg.watchdog_ms * 1_000_000)
                    .max(CELL_BOUND_MIN_NS),
                progress: false,
            });
            injection_off();
            wait_for_judging();
            let counts = census();
            stranded_total += counts.stranded;
            let recovered = recover();
            if recovered.is_ok() {
                // Every CPU answers again: the frees whose flush stalled
                // can be completed by a sync now.
                r.frees.retry();
            }
            let outcome = r.outcome.name();
            print_cell(
                n,
                cells.len(),
                (run, runs),
                (cell, expect),
                size,
                &r,
                &counts,
                &recovered,
            );
            rows.push(Row {
                n,
                cell,
                expect,
                outcome,
            });
            if let Err(why) = recovered {
                unrecovered = Some((n, cell, why));
                break 'cells;
            }
            if let Outcome::NeverFinished(cpu) = r.outcome {
                unrecovered = Some((n, cell, Unrecovered::NoAnswer(cpu)));
                break 'cells;
            }
        }
    }
    let elapsed_ms = (clock::now_ns() - started) / 1_000_000;
    print_table(&rows, ncpus);
    let unexpected = rows
        .iter()
        .filter(|r| !r.cell.native && !r.expect.admits(r.outcome))
        .count();
    let findings = rows
        .iter()
        .filter(|r| r.cell.native && !r.expect.admits(r.outcome))
        .count();
    if let Some((n, cell, why)) = &unrecovered {
        let (cpu, what) = match why {
            Unrecovered::NoAnswer(c) => (
                *c,
                alloc::string::String::from("did not come back (it never ran the recovery)"),
            ),
            Unrecovered::Left(c, l) => (
                *c,
                alloc::format!(
                    "still had work pending after the recovery: mailbox {:?}, queue {}, {} call(s) in flight, serialization lock {}",
                    l.mailbox,
                    if l.queued { "pending" } else { "empty" },
                    l.in_flight,
                    if l.serial_held { "held" } else { "free" }
                ),
            ),
            Unrecovered::Ipl(c, level) => (*c, alloc::format!("came back at IPL {level}")),
            Unrecovered::NotReset(c) => (
                *c,
                alloc::string::String::from(
                    "did not reach the counters' reset before the run (the others waited 2 s for it)",
                ),
            ),
        };
        println!(
            "experiment: cell {n} ({} x {}) could not be recovered: CPU {cpu} (physical {}) {what}; the experiment ends here",
            cell.fault,
            cell.fixes.name,
            cpus::physical(cpu).map_or(usize::MAX, |p| p)
        );
    }
    println!(
        "{}",
        EXPERIMENT_END.line([
            &FORMAT_VERSION,
            &rows.len(),
            &rows.last().map_or(0, |r| r.n),
            &unexpected,
            &findings,
            &unrecovered.as_ref().map_or(0, |(n, _, _)| *n),
            &stranded_total,
            &elapsed_ms,
        ])
    );
    let pass = unrecovered.is_none() && unexpected == 0;
    let why = alloc::format!(
        "experiment: {} runs of {} cells, {} injected not as predicted, {} native unlike a lossless machine, {} stranded IPIs{}",
        rows.len(),
        cells.len(),
        unexpected,
        findings,
        stranded_total,
        if unrecovered.is_some() {
            ", stopped at an unrecovered cell"
        } else {
            ""
        }
    );
    smp::finish(pass, &why)
}

#[allow(clippy::too_many_arguments)]
fn print_cell(
    n: usize,
    cells: usize,
    (run, runs): (u64, u64),
    (cell, expect): (CellId, Expect),
    size: u64,
    r: &CellResult,
    census: &Counts,
    recovered: &Result<u64, Unrecovered>,
) {
    let outcome = r.outcome.name();
    let calls = recovered.as_ref().map_or(0, |c| *c);
    println!(
        "cell {n}/{cells} run {run}/{runs}: {} x {}: {}{} ({} predicted) in {} ms; done {}/{}; census {} delivered, {} late, {} stranded; {} stranded call(s) run by the recovery",
        cell.fault,
        cell.fixes.name,
        outcome,
        if expect.admits(outcome) { "" } else { " [!]" },
        expect.name(),
        r.elapsed_ns / 1_000_000,
        r.total_done(),
        smp::online_count() as u64 * size,
        census.delivered,
        census.late,
        census.stranded,
        calls
    );
    let c = Counters::read();
    let pt = &r.frees;
    println!(
        "{}",
        EXPERIMENT_CELL.line([
            &FORMAT_VERSION,
            &n,
            &run,
            &runs,
            &cell.fault,
            &cell.fixes.name,
            &(cell.native as u8),
            &expect.name(),
            &outcome,
            &smp::online_count(),
            &r.total_done(),
            &PerCpu(&r.done),
            &r.aborted_cpus,
            &(r.cut as u8),
            &(r.elapsed_ns / 1_000_000),
            &r.detect_ns.map_or(-1, |ns| (ns / 1_000_000) as i64),
            &r.errors,
            &calls,
            &c.stalls,
            &c.resends,
            &c.dropped,
            &c.lock_drains,
            &c.rescued_call,
            &c.idle_rescued_call,
            &c.rescued_other,
            &census.requests,
            &census.delivered,
            &census.late,
            &census.stranded,
            &census.open(),
            &census.dropped,
            &census.unannounced,
            &pt.total(),
            &pt.elided,
            &pt.synced,
            &pt.deferred,
            &pt.freed_late,
            &pt.waiting,
        ])
    );
}

/// The console table: one row per cell, how often each outcome happened.
fn print_table(rows: &[Row], ncpus: usize) {
    println!("experiment: results on {ncpus} CPU(s) ([!]: not as predicted)");
    println!(
        "  {:<3} {:<21} {:<15} {:<9} outcomes",
        "n", "fault", "fix", "predicted"
    );
    let mut i = 0;
    while i < rows.len() {
        let first = &rows[i];
        let same: Vec<&Row> = rows[i..].iter().take_while(|r| r.n == first.n).collect();
        let mut text = alloc::string::String::new();
        for name in ["completed", "deadlock", "crawl", "error", "unrecovered"] {
            let k = same.iter().filter(|r| r.outcome == name).count();
            if k > 0 {
                if !text.is_empty() {
                    text.push_str(", ");
                }
                text.push_str(&alloc::format!("{name} {k}/{}", same.len()));
            }
        }
        let bad = same.iter().any(|r| !r.expect.admits(r.outcome));
        println!(
            "  {:<3} {:<21} {:<15} {:<9} {}{}",
            first.n,
            alloc::format!(
                "{}{}",
                first.cell.fault,
                if first.cell.native { " (native)" } else { "" }
            ),
            first.cell.fixes.name,
            first.expect.name(),
            text,
            if bad { " [!]" } else { "" }
        );
        i += same.len();
    }
}
