//! The benchmark suite (`bench=N`): what a bare IPI, a cross-call and each
//! TLB/icache flush cost on this machine, measured inside the kernel with
//! the issuing CPU's cycle counter (start and end on the same CPU), N
//! samples each. One `bench-result:` line per measurement (median, p90,
//! p99 in ns); `cargo xtask bench` boots it per CPU count, fix set and
//! wait policy and writes results/bench.*. Numbers are reported, never
//! asserted: the run's verdict only says the suite ran.
//!
//! Targets are "idle" (in the idle loop's wtint, as a real idle CPU) or
//! "busy" (spinning at IPL 0 in task context through `run_on_cpus`).
//!
//! The page-table free (`alphasmp::ptfree`) is measured three ways per
//! free (unlink, page flush, free), on a space every CPU runs (`free_*`)
//! and on one only the measuring CPU runs (`free_*_local`): this kernel's
//! per-flush decision (`proved`), Linux without the hook (`always`: the
//! flush, then a sync call to every other CPU) and the static "flush
//! implies broadcast" (`never`: the flush alone, unsafe where the flush
//! sent no IPI); and the walk guards (`walk_own`, `walk_foreign`). A
//! `bench-ptfree:` line gives the sync rounds and IPIs the proved frees
//! sent, and how many they elided.
//!
//! Throughput lines close the suite: 1 to N CPUs issuing page flushes at
//! once (`shootdown_throughput`), and the storm (`call_storm`): every CPU
//! makes 5000 synchronous calls at once, the target rotating over the
//! others, as the Linux built-in of `cargo xtask bench --linux` does.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alphasmp::cpumask::CpuMask;
use alphasmp::mailbox::IpiMessage;
use alphasmp::tlb::AddressSpace;
use alphasmp::xcall::XcallError;
use alphasmp_bootargs::{BENCH_OPS, BootConfig};

use alphasmp_bootargs::lines::{BENCH_PTFREE, BENCH_RESULT, BENCH_THROUGHPUT};

use crate::console::println;
use crate::percpu::MAX_CPUS;
use crate::platform::{MMU, SMP};
use crate::{clock, mm, smp};

static SPACE: AddressSpace<MAX_CPUS> = AddressSpace::new();
/// A space only the measuring CPU runs (the lazy case).
static LOCAL: AddressSpace<MAX_CPUS> = AddressSpace::new();
/// A space no CPU has run: its flush interrupts nobody.
static UNUSED: AddressSpace<MAX_CPUS> = AddressSpace::new();
const PAGE: u64 = 9;

/// Frees of the benchmark release nothing real (a count).
fn released(_: u64) {
    FREES.fetch_add(1, Ordering::Relaxed);
}
static FREES: AtomicU64 = AtomicU64::new(0);
static FREER: alphasmp::ptfree::TableFreer<crate::platform::AlphaPlatform, MAX_CPUS> =
    alphasmp::ptfree::TableFreer::new(&MMU, &released);

/// Set by a no-wait call's function: the call has run.
static RAN: AtomicBool = AtomicBool::new(false);
/// Failures of the whole run (any round).
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// `BENCH_OPS` names the latency measurements in `Op` order, then these.
const SHOOTDOWN_THROUGHPUT: usize = Op::ALL.len();
const CALL_STORM: usize = Op::ALL.len() + 1;
const _: () = assert!(BENCH_OPS.len() == Op::ALL.len() + 2);

// The profiling window (`cargo xtask profile`): right before a
// measurement's operations the CPU that issues them calls
// [`window_open`], right after them [`window_close`]; the tool counts
// what every CPU ran between the two calls in QEMU's instruction trace
// and divides by the operations the result line reports. The two are
// empty functions in `asm/pal.S`, so that the trace shows two distinct
// addresses whatever the compiler inlines.
unsafe extern "Rust" {
    fn bench_window_open();
    fn bench_window_close();
}

fn window_open() {
    // SAFETY: an empty assembly function (a return).
    unsafe { bench_window_open() }
}

fn window_close() {
    // SAFETY: an empty assembly function (a return).
    unsafe { bench_window_close() }
}

/// Runs `f` inside the profiling window.
fn windowed<T>(f: impl FnOnce() -> T) -> T {
    window_open();
    let r = f();
    window_close();
    r
}

/// One measuring round, shared by its CPUs through their context: the
/// measurer samples `op`, the others spin (busy targets) until it is done.
struct Round {
    op: Op,
    measurer: usize,
    samples: usize,
    /// Set by the measurer when it is done: busy targets stop spinning.
    done: AtomicBool,
    /// The measurer's samples (ns).
    result: spin::Mutex<Vec<u64>>,
}

/// One throughput round: `issuers` CPUs make `per_issuer` shootdowns each,
/// starting together.
struct Throughput {
    issuers: u64,
    per_issuer: u64,
    ready: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
enum Op {
    IpiRtt,
    CallSingleWait,
    CallSingleNoWait,
    OnEachCpuWait,
    FlushTlbAll,
    FlushTlbMm,
    FlushTlbMmUnused,
    FlushTlbPage,
    FlushIcache,
    FreeProved,
    FreeAlways,
    FreeNever,
    FreeProvedLocal,
    FreeAlwaysLocal,
    WalkOwn,
    WalkForeign,
}

impl Op {
    const ALL: [Op; 16] = [
        Op::IpiRtt,
        Op::CallSingleWait,
        Op::CallSingleNoWait,
        Op::OnEachCpuWait,
        Op::FlushTlbAll,
        Op::FlushTlbMm,
        Op::FlushTlbMmUnused,
        Op::FlushTlbPage,
        Op::FlushIcache,
        Op::FreeProved,
        Op::FreeAlways,
        Op::FreeNever,
        Op::FreeProvedLocal,
        Op::FreeAlwaysLocal,
        Op::WalkOwn,
        Op::WalkForeign,
    ];
    /// Its name: its place in `alphasmp_bootargs::BENCH_OPS`, which
    /// `bench_only=` takes.
    fn name(self) -> &'static str {
        BENCH_OPS[self as usize]
    }
    /// Measured against one other CPU (else against all).
    fn single_target(self) -> bool {
        matches!(self, Op::IpiRtt | Op::CallSingleWait | Op::CallSingleNoWait)
    }
}

fn noop(_: usize) {}

fn mark_ran(_: usize) {
    RAN.store(true, Ordering::Release);
}

/// One free of a (pretend) page table of `space`, as `how` decides the
/// sync round: this kernel's proof, always, or never. The flush is a page
/// flush: the rows compare the sync round's decision, which does not
/// depend on the flush's kind; a real table's unlink takes
/// `flush_tlb_table_proved`, a new ASN where the space runs, since the
/// hardware walker caches the table.
fn free_one(space: &'static AddressSpace<MAX_CPUS>, how: Op) -> Result<(), XcallError> {
    match how {
        Op::FreeProved | Op::FreeProvedLocal => {
            let token = MMU.unlink_table(space, 0);
            let proof = MMU.flush_tlb_page_proved(space, mm::va(PAGE), false);
            proof.result?;
            match FREER.free(token, &proof) {
                alphasmp::ptfree::Freed::Elided | alphasmp::ptfree::Freed::Synced(_) => Ok(()),
                _ => Err(XcallError::Stalled { target: 0 }),
            }
        }
        _ => {
            MMU.flush_tlb_page(space, mm::va(PAGE), false)?;
            if how != Op::FreeNever {
                let others = smp::online().without(crate::cpus::this());
                SMP.call_many(others, noop, 0, true)?;
            }
            released(0);
            Ok(())
        }
    }
}

/// One sample of `op` from this CPU against `target` (ns).
fn sample(op: Op, target: usize) -> Result<u64, XcallError> {
    let local = matches!(op, Op::FreeProvedLocal | Op::FreeAlwaysLocal);
    if local {
        MMU.activate(&LOCAL);
    }
    // The issuing CPU's counter, read as cheaply as Linux's benchmark
    // reads it (clock::Interval).
    let start = clock::Interval::start();
    match op {
        Op::IpiRtt => {
            // PING is handled by the target's IPI handler, which counts it:
            // the count moving is the acknowledgement.
            let handled = &SMP.cpu(target).stats.ipi_handled[IpiMessage::PING.index()];
            let before = handled.load(Ordering::Acquire);
            SMP.send_message(target, IpiMessage::PING)?;
            // Spins (for its first millisecond: every sample on parallel
            // vCPUs), then lets a round-robin emulator run the target.
            // The count is looked at between clock reads too, as Linux's
            // benchmark looks at its count in a bare loop.
            let sent = clock::now_ns();
            clock::wait_since(sent, || handled.load(Ordering::Acquire) != before);
        }
        Op::CallSingleWait => SMP.call_single(target, noop, 0, true)?,
        Op::CallSingleNoWait => {
            RAN.store(false, Ordering::Relaxed);
            SMP.call_single(target, mark_ran, 0, false)?;
            let sent = clock::now_ns();
            clock::wait_since(sent, || RAN.load(Ordering::Acquire));
        }
        Op::OnEachCpuWait => SMP.on_each_cpu(noop, 0, true)?,
        Op::FlushTlbAll => MMU.flush_tlb_all()?,
        Op::FlushTlbMm => MMU.flush_tlb_mm(&SPACE)?,
        Op::FlushTlbMmUnused => MMU.flush_tlb_mm(&UNUSED)?,
        Op::FlushTlbPage => MMU.flush_tlb_page(&SPACE, mm::va(PAGE), false)?,
        Op::FlushIcache => MMU.flush_icache_user_page(&SPACE, true)?,
        Op::FreeProved | Op::FreeAlways | Op::FreeNever => free_one(&SPACE, op)?,
        Op::FreeProvedLocal | Op::FreeAlwaysLocal => free_one(&LOCAL, op)?,
        Op::WalkOwn => drop(MMU.walk_own()),
        Op::WalkForeign => drop(MMU.walk_foreign(&LOCAL)),
    }
    let ns = clock::cycles_to_ns(start.cycles());
    if local {
        MMU.activate(&SPACE);
    }
    Ok(ns)
}

/// A round's CPU: the measurer samples, the others spin (busy targets)
/// until it is done.
fn round(me: usize, ctx: usize) -> u64 {
    // SAFETY: `measure` passes the address of its `Round` and keeps it
    // alive until run_on_cpus_with has collected every CPU's result.
    let r = unsafe { &*(ctx as *const Round) };
    if me != r.measurer {
        while !r.done.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        return 0;
    }
    let target = next_cpu(me);
    let mut v = Vec::with_capacity(r.samples);
    window_open();
    for _ in 0..r.samples {
        match sample(r.op, target) {
            Ok(ns) => v.push(ns),
            Err(_) => {
                ERRORS.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    window_close();
    *r.result.lock() = v;
    r.done.store(true, Ordering::Release);
    0
}

fn next_cpu(me: usize) -> usize {
    smp::online_cpus()
        .find(|c| *c > me)
        .or_else(|| smp::online_cpus().find(|c| *c != me))
        .unwrap_or(me)
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Measures `op` with its targets idle or busy and prints the result line.
fn measure(op: Op, busy: bool, samples: usize) {
    let me = crate::cpus::this();
    let online = smp::online();
    let target = next_cpu(me);
    let r = Round {
        op,
        measurer: me,
        samples,
        done: AtomicBool::new(false),
        result: spin::Mutex::new(Vec::new()),
    };
    let mask = match (busy, op.single_target()) {
        (false, _) => CpuMask::single(me),
        (true, true) => CpuMask(CpuMask::single(me).0 | CpuMask::single(target).0),
        (true, false) => online,
    };
    if smp::run_on_cpus_with(mask, round, &raw const r as usize, 600_000_000_000).is_err() {
        println!("bench: {} did not finish", op.name());
        ERRORS.fetch_add(1, Ordering::Relaxed);
        // A CPU may still spin on `r`: it must not go away.
        smp::finish(false, "bench: a round did not finish");
    }
    let mut v = core::mem::take(&mut *r.result.lock());
    if v.is_empty() {
        return;
    }
    v.sort_unstable();
    println!(
        "{}",
        BENCH_RESULT.line([
            &op.name(),
            &if busy { "busy" } else { "idle" },
            &online.count(),
            &v.len(),
            &percentile(&v, 50),
            &percentile(&v, 90),
            &percentile(&v, 99),
            &v[0],
            &v[v.len() - 1],
        ])
    );
}

/// Throughput: `k` CPUs issue shootdowns at once.
fn issuer(_me: usize, ctx: usize) -> u64 {
    // SAFETY: `throughput` passes the address of its `Throughput` and keeps
    // it alive until every issuer has returned.
    let t = unsafe { &*(ctx as *const Throughput) };
    t.ready.fetch_add(1, Ordering::AcqRel);
    // Spins (its first millisecond: every round on parallel vCPUs), then
    // lets a round-robin emulator run the others (under -icount a pure
    // spin here never let the second issuer start: cargo xtask bench
    // --instructions hung in this barrier).
    let sent = clock::now_ns();
    while t.ready.load(Ordering::Acquire) < t.issuers {
        clock::pause_since(sent);
    }
    // Each issuer times itself on its own clock (clocks of different CPUs
    // are not synchronised on real machines).
    let start = clock::now_ns();
    for _ in 0..t.per_issuer {
        if MMU.flush_tlb_page(&SPACE, mm::va(PAGE), false).is_err() {
            ERRORS.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    clock::now_ns() - start
}

fn throughput(k: usize, per: u64) {
    let mut mask = CpuMask::EMPTY;
    for c in smp::online().iter().take(k) {
        mask.insert(c);
    }
    let t = Throughput {
        issuers: k as u64,
        per_issuer: per,
        ready: AtomicU64::new(0),
    };
    let done =
        windowed(|| smp::run_on_cpus_with(mask, issuer, &raw const t as usize, 600_000_000_000));
    match done {
        Ok(ns) => {
            let longest = mask.iter().map(|c| ns[c]).max().unwrap_or(1).max(1);
            let total = per * k as u64;
            println!(
                "{}",
                BENCH_THROUGHPUT.line([
                    &"shootdown_throughput",
                    &k,
                    &smp::online_count(),
                    &total,
                    &longest,
                    &(total * 1_000_000_000 / longest),
                ])
            );
        }
        Err(cpu) => {
            println!("bench: throughput with {k} issuers: CPU {cpu} did not finish");
            ERRORS.fetch_add(1, Ordering::Relaxed);
            // An issuer may still use `t`: it must not go away.
            smp::finish(false, "bench: a throughput round did not finish");
        }
    }
}

/// Calls each CPU makes in the storm (as the Linux built-in's).
const STORM_CALLS: u64 = 5000;

/// The storm: every CPU makes [`STORM_CALLS`] synchronous calls at once,
/// the target rotating over the others; returns its own time (ns).
fn storm_issuer(me: usize, ctx: usize) -> u64 {
    // SAFETY: `storm` passes the address of its `Throughput` and keeps it
    // alive until every issuer has returned.
    let t = unsafe { &*(ctx as *const Throughput) };
    t.ready.fetch_add(1, Ordering::AcqRel);
    let sent = clock::now_ns();
    while t.ready.load(Ordering::Acquire) < t.issuers {
        clock::pause_since(sent);
    }
    let online: alloc::vec::Vec<usize> = smp::online_cpus().filter(|c| *c != me).collect();
    let start = clock::now_ns();
    for i in 0..t.per_issuer as usize {
        let target = online[(me + i) % online.len()];
        if SMP.call_single(target, noop, 0, true).is_err() {
            ERRORS.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    clock::now_ns() - start
}

/// Each CPU's learned spin budget after the storm (`wait=adaptive`,
/// `spin_floor_us`): where its waits left it.
fn print_learned_budgets() {
    if SMP.policy.spin_floor.load(Ordering::Relaxed) == 0 {
        return;
    }
    use core::fmt::Write;
    let mut line = alloc::string::String::new();
    for cpu in smp::online().iter() {
        let ns = clock::cycles_to_ns(SMP.learned_budget(cpu));
        write!(line, " CPU {cpu}: {ns}").ok();
    }
    println!("bench: learned spin budgets after the storm (ns):{line}");
}

/// The storm on every online CPU, as a throughput line (`call_storm`, the
/// whole machine's calls per second).
fn storm() {
    let online = smp::online();
    let t = Throughput {
        issuers: online.count() as u64,
        per_issuer: STORM_CALLS,
        ready: AtomicU64::new(0),
    };
    let done = windowed(|| {
        smp::run_on_cpus_with(online, storm_issuer, &raw const t as usize, 600_000_000_000)
    });
    match done {
        Ok(ns) => {
            let longest = online.iter().map(|c| ns[c]).max().unwrap_or(1).max(1);
            let total = STORM_CALLS * online.count() as u64;
            println!(
                "{}",
                BENCH_THROUGHPUT.line([
                    &"call_storm",
                    &online.count(),
                    &online.count(),
                    &total,
                    &longest,
                    &(total * 1_000_000_000 / longest),
                ])
            );
            print_learned_budgets();
        }
        Err(cpu) => {
            println!("bench: the storm: CPU {cpu} did not finish");
            ERRORS.fetch_add(1, Ordering::Relaxed);
            // An issuer may still use `t`: it must not go away.
            smp::finish(false, "bench: the storm did not finish");
        }
    }
}

fn activate(_: usize) -> u64 {
    MMU.activate(&SPACE);
    0
}

/// Runs the suite and halts.
pub fn run(cfg: &BootConfig<'_>) -> ! {
    let n = smp::online_count();
    mm::set(PAGE, Some(mm::alloc_page()));
    // The address space is live on every CPU, so every flush crosses CPUs.
    if smp::run_on_cpus(smp::online(), activate, 10_000_000_000).is_err() {
        smp::finish(false, "bench: a CPU did not activate the address space");
    }
    println!("bench: {} CPU(s), {} samples per measurement", n, cfg.bench);
    if n < 2 {
        smp::finish(false, "bench needs 2 or more CPUs");
    }
    let only = |i: usize| cfg.bench_only.is_none_or(|o| o == i);
    for op in Op::ALL {
        if !only(op as usize) {
            continue;
        }
        measure(op, false, cfg.bench as usize);
        if cfg.bench_busy {
            measure(op, true, cfg.bench as usize);
        }
    }
    let st = &FREER.stats;
    println!(
        "{}",
        BENCH_PTFREE.line([
            &n,
            &FREES.load(Ordering::Relaxed),
            &st.elided.load(Ordering::Relaxed),
            &st.elided_lazy.load(Ordering::Relaxed),
            &st.sync_rounds.load(Ordering::Relaxed),
            &st.sync_targets.load(Ordering::Relaxed),
            &st.deferred.load(Ordering::Relaxed),
        ])
    );
    if only(SHOOTDOWN_THROUGHPUT) {
        for k in 1..=n {
            throughput(k, (cfg.bench / 2).max(1));
        }
    }
    if only(CALL_STORM) {
        storm();
    }
    let errors = ERRORS.load(Ordering::Relaxed);
    if errors > 0 {
        smp::finish(false, "bench: some measurements failed");
    }
    smp::finish(true, "benchmark reported")
}
