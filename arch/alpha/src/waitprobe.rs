//! `wait=auto` (QEMU's clipper's default): once every CPU is online, a
//! 20 ms probe tells whether each CPU has a host core of its own
//! (`alphasmp::hostcores`). If so, waiters spin, as Linux's do: a spin
//! then holds nothing another CPU needs, and it is the quickest way to
//! see a call end. If not, they wait adaptively (a short spin, then a
//! nap), which gives the core back to the CPU they wait for.
//!
//! Until the probe has spoken, waiters wait adaptively (`main.rs`
//! `apply_policy`); the switch happens before the run mode starts, while
//! no CPU waits for another. Either answer keeps every guarantee of the
//! nap protocol: only speed depends on it.
//!
//! Measured (README "Speed", `docs/cross-calls.md` §7): 2 vCPUs on a
//! 2-core host pass (the slowest CPU ran 95% to 98% of the best slice), 4
//! fail (0% to 36%), and under `-icount`, where one host thread runs the
//! CPUs in turn, every probe fails.
//!
//! The probe cannot hang the boot: a CPU that waits at its start for
//! longer than [`BARRIER_NS`] gives up without a measurement, and a probe
//! that lacks any CPU's measurement leaves the waiters adaptive
//! (`cores=unknown`).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alphasmp::hostcores::{self, Meter, Probe};
use alphasmp::platform::Platform;
use alphasmp_bootargs::lines::WAIT_PROBE;

use crate::console::println;
use crate::percpu::MAX_CPUS;
use crate::platform::SMP;
use crate::{clock, pal, smp};

/// Set by `apply_policy` when the wait policy is `auto`; taken by
/// [`settle`].
static PENDING: AtomicBool = AtomicBool::new(false);

/// Whether this boot's probe ran and found the CPUs running in parallel
/// (`hostcores::Verdict::in_parallel`); false where no probe ran.
static IN_PARALLEL: AtomicBool = AtomicBool::new(false);

/// Whether this boot's probe found the CPUs running in parallel (false
/// where none ran: a `wait=` given, one CPU, a probe that did not finish).
pub fn ran_in_parallel() -> bool {
    IN_PARALLEL.load(Ordering::Relaxed)
}

/// How many CPUs have arrived at the probe's start (its barrier).
static READY: AtomicU64 = AtomicU64::new(0);
/// Set by the last CPU to arrive, after it has stored [`START`].
static GO: AtomicBool = AtomicBool::new(false);
/// The raw cycle counter (32 bits) when the last CPU arrived: where every
/// CPU's window starts.
static START: AtomicU64 = AtomicU64::new(0);

/// Each CPU's measurement, written by that CPU when its window is over.
static METERS: [spin::Mutex<Option<Meter>>; MAX_CPUS] =
    [const { spin::Mutex::new(None) }; MAX_CPUS];

/// One slice of the probe's window: long enough to hold many clock
/// interrupts, short against a host scheduler's time slices.
const SLICE_NS: u64 = 2_000_000;

/// The longest a CPU waits at the probe's start for the others.
const BARRIER_NS: u64 = 2_000_000_000;

/// A step of a CPU's clock longer than this is time it did not run: far
/// above one look at the clock (about 0.1 us under QEMU) and a clock
/// interrupt's handler (a few us), far below a host's time slice (ms).
const GAP_NS: u64 = 20_000;

/// Marks (or clears) the `auto` policy for [`settle`] (boot CPU, before
/// the secondaries start).
pub fn set_pending(auto: bool) {
    PENDING.store(auto, Ordering::Relaxed);
}

/// Runs the probe if the policy is `auto` and sets the wait policy from
/// its verdict, with one console line saying what it found (boot CPU, at
/// IPL 0, every CPU online, before the run mode).
pub fn settle() {
    if !PENDING.swap(false, Ordering::Relaxed) {
        return;
    }
    let online = smp::online();
    let cpus = online.count();
    if cpus < 2 {
        spin_waits();
        report(cpus, 0, None);
        return;
    }
    READY.store(0, Ordering::Relaxed);
    GO.store(false, Ordering::Relaxed);
    // A generous bound: under -icount the CPUs run in turn and each
    // probe's window is the others' too.
    if let Err(cpu) = smp::run_on_cpus(online, measure, 10_000_000_000) {
        println!("wait: auto: the probe did not finish on CPU {cpu}");
        report(cpus, WINDOW_MS, None);
        return;
    }
    let meters: alloc::vec::Vec<Meter> = online
        .iter()
        .filter_map(|cpu| METERS[cpu].lock().take())
        .collect();
    if meters.len() != cpus {
        println!(
            "wait: auto: {} of {cpus} CPUs measured (the others gave up at the start)",
            meters.len()
        );
        report(cpus, WINDOW_MS, None);
        return;
    }
    let v = hostcores::verdict(&meters);
    if v.own_cores {
        spin_waits();
    }
    IN_PARALLEL.store(v.in_parallel, Ordering::Relaxed);
    if !v.in_parallel {
        // One CPU at a time: a caller spinning for a CPU it woke keeps
        // that CPU from running (alphasmp::xcall::Policy::spin_idle).
        SMP.policy.spin_idle.store(0, Ordering::Relaxed);
        println!(
            "wait: auto: the CPUs ran one at a time ({}.{:03} CPUs at once): no idle spin",
            v.running_permille / 1000,
            v.running_permille % 1000
        );
    }
    report(cpus, WINDOW_MS, Some(v));
}

/// The probe's window, in milliseconds.
const WINDOW_MS: u64 = SLICE_NS * hostcores::SLICES as u64 / 1_000_000;

/// The `wait-probe:` line: the verdict (None: one CPU, `cores=one`, or a
/// probe that did not finish, `cores=unknown`) and the policy in force.
fn report(cpus: usize, window_ms: u64, v: Option<hostcores::Verdict>) {
    let (slowest, stolen, cores) = match v {
        Some(v) => (
            v.slowest_permille / 10,
            v.stolen_permille / 10,
            if v.own_cores { "own" } else { "shared" },
        ),
        None if cpus < 2 => (100, 0, "one"),
        None => (0, 0, "unknown"),
    };
    println!(
        "{}",
        WAIT_PROBE.line([
            &cpus,
            &window_ms,
            &(SLICE_NS / 1_000_000),
            &(hostcores::RAN_PERMILLE / 10),
            &slowest,
            &stolen,
            &cores,
            &current(),
        ])
    );
}

/// The wait policy in force, by its boot-argument name (`spin`, `nap`,
/// `adaptive`): what `auto` became, once settled.
pub fn current() -> &'static str {
    if !SMP.policy.nap.load(Ordering::Relaxed) {
        "spin"
    } else if SMP.policy.adaptive.load(Ordering::Relaxed) {
        "adaptive"
    } else {
        "nap"
    }
}

/// Every wait spins from now on.
fn spin_waits() {
    SMP.policy.adaptive.store(false, Ordering::Relaxed);
    SMP.policy.nap.store(false, Ordering::Relaxed);
}

/// One CPU's part of the probe: wait until every CPU is here, then look
/// at the clock until the window is over. The window starts for every
/// CPU when the last one arrives, on that CPU's clock: the slices must be
/// the same stretch of time on every CPU, or a host that runs the CPUs in
/// turn could pass them one slice each. So the probe compares the cycle
/// counters of different CPUs, which QEMU keeps in step (it derives each
/// from one host clock, `docs/qemu.md`); on a real machine they may differ
/// (`docs/hardware.md` §6, "RPCC across CPUs"), and a CPU whose counter leads the last
/// arriver's would count its lead as time it did not run, one that lags
/// the whole window: the verdict would err towards adaptive.
fn measure(me: usize) -> u64 {
    let online = smp::online();
    let cpus = online.count() as u64;
    if READY.fetch_add(1, Ordering::AcqRel) + 1 == cpus {
        START.store(u64::from(pal::rpcc32()), Ordering::Relaxed);
        GO.store(true, Ordering::Release);
        // The others' pauses sleep after a millisecond (below): an
        // interrupt ends the sleep, so each starts now, not at its next
        // clock interrupt.
        for cpu in online.iter().filter(|&c| c != me) {
            SMP.platform.wake(cpu);
        }
    }
    // Pauses that sleep after a while: where the emulator runs one CPU at
    // a time, the others arrive only while this one sleeps. Bounded: a
    // CPU that never arrives must not hold the others (or the boot).
    let since = clock::now_ns();
    clock::wait_since(since, || {
        GO.load(Ordering::Acquire) || clock::now_ns().wrapping_sub(since) > BARRIER_NS
    });
    if !GO.load(Ordering::Acquire) {
        return 0;
    }
    let start = START.load(Ordering::Relaxed) as u32;
    let probe = Probe {
        slice: clock::ns_to_cycles(SLICE_NS),
        gap: clock::ns_to_cycles(GAP_NS),
    };
    // The raw 32-bit counter wraps after seconds; the window is 20 ms.
    let mut m = Meter::new(probe, 0);
    while !m.observe(u64::from(pal::rpcc32().wrapping_sub(start))) {}
    *METERS[me].lock() = Some(m);
    0
}
