//! Time: the cycle counter extended to 64 bits, converted with the HWRPB's
//! cycle frequency.
//!
//! `rpcc` gives a 32-bit counter (250 MHz under QEMU: it wraps every ~17 s).
//! Each CPU extends it in software: `EXTENDED[cpu]` holds the last full
//! 64-bit value; a read that finds the low half smaller than before adds
//! 2^32. Only the owning CPU writes its slot, at any IPL: a read that an
//! interrupt's own read came into starts again (`alphasmp::counter`); the
//! periodic tick reads it often enough that at most one wrap happens
//! between reads.

use core::sync::atomic::{AtomicU64, Ordering, compiler_fence};

use crate::ipl::{self, IplGuard};
use crate::percpu::{self, MAX_CPUS};
use crate::{cpus, pal};
use alphasmp::counter::Extended;
use alphasmp::scale::Scale;

static EXTENDED: [Extended; MAX_CPUS] = [const { Extended::new() }; MAX_CPUS];
static CYCLE_FREQ: AtomicU64 = AtomicU64::new(250_000_000);

/// Cycles to nanoseconds and back, as multiply-and-shift factors
/// (`alphasmp::scale`: Alpha has no divide instruction), for CYCLE_FREQ.
/// Written by `init` on the boot CPU before any other CPU starts.
static TO_NS: [AtomicU64; 2] = scale_atomics(Scale::new(1_000_000_000, 250_000_000));
static TO_CYCLES: [AtomicU64; 2] = scale_atomics(Scale::new(250_000_000, 1_000_000_000));

const fn scale_atomics(s: Scale) -> [AtomicU64; 2] {
    let (mult, shift) = s.parts();
    [AtomicU64::new(mult), AtomicU64::new(shift as u64)]
}

fn store_scale(to: &[AtomicU64; 2], s: Scale) {
    let (mult, shift) = s.parts();
    to[0].store(mult, Ordering::Relaxed);
    to[1].store(u64::from(shift), Ordering::Relaxed);
}

fn load_scale(from: &[AtomicU64; 2]) -> Scale {
    Scale::from_parts(
        from[0].load(Ordering::Relaxed),
        from[1].load(Ordering::Relaxed) as u32,
    )
}

/// Records the cycle-counter frequency (from the HWRPB).
pub fn init(cycle_freq: u64) {
    if cycle_freq != 0 {
        CYCLE_FREQ.store(cycle_freq, Ordering::Relaxed);
        store_scale(&TO_NS, Scale::new(1_000_000_000, cycle_freq));
        store_scale(&TO_CYCLES, Scale::new(cycle_freq, 1_000_000_000));
    }
}

pub fn cycle_freq() -> u64 {
    CYCLE_FREQ.load(Ordering::Relaxed)
}

/// Fault injection (`clock_skew_us`): CPU k's clock runs k x this many
/// cycles behind CPU 0's, so code that compares clocks across CPUs shows it.
static SKEW_CYCLES: AtomicU64 = AtomicU64::new(0);
/// Every CPU's clock starts this far ahead, so a skewed clock never wraps
/// below zero (64 CPUs x 10 s at up to 2 GHz fits easily).
const SKEW_BASE_CPUS: u64 = 64;

/// Sets the injected skew (boot CPU, before the secondaries start).
pub fn set_skew_us(us: u64) {
    SKEW_CYCLES.store(ns_to_cycles(us * 1000), Ordering::Relaxed);
}

/// This CPU's cycle count, 64-bit (plus the injected skew, if any).
#[inline]
pub fn cycles() -> u64 {
    let skew = SKEW_CYCLES.load(Ordering::Relaxed);
    let raw = raw_cycles();
    if skew == 0 {
        raw
    } else {
        raw + (SKEW_BASE_CPUS - cpus::this() as u64) * skew
    }
}

/// The start of a short interval timed on this CPU ([`Interval::cycles`]).
///
/// Where the counter never stops (the interrupt floor is off: QEMU) it is
/// the raw 32-bit counter, wrap-safe for intervals under 2^32 cycles (17 s
/// at QEMU's 250 MHz), which is what Linux's `get_cycles` gives its
/// benchmark (`xtask/linux/alphasmp_bench.c`): a few instructions where
/// [`cycles`] costs about 120 (the extension to 64 bits, the floor's
/// correction, the injected skew), so a benchmark sample carries the same
/// clock cost in both kernels. Where the counter may stop in `wtint` (real
/// machines, the floor on) it is [`cycles`], corrected.
#[derive(Clone, Copy, Debug)]
pub struct Interval {
    raw: bool,
    start: u64,
}

impl Interval {
    #[inline]
    pub fn start() -> Interval {
        let raw = !FLOOR_ENABLED.load(Ordering::Relaxed)
            && STOPPED_AT[cpus::this()].load(Ordering::Relaxed) == 0;
        Interval {
            raw,
            start: if raw {
                u64::from(pal::rpcc32())
            } else {
                cycles()
            },
        }
    }

    /// Cycles since [`start`](Self::start), on the same CPU.
    #[inline]
    pub fn cycles(self) -> u64 {
        if self.raw {
            u64::from(pal::rpcc32().wrapping_sub(self.start as u32))
        } else {
            cycles() - self.start
        }
    }
}

/// This CPU's cycle count since it first read the clock, 64-bit, plus the
/// correction the periodic interrupt made (below).
///
/// No IPL raise (two PAL calls on every clock read): the extension is safe
/// against this CPU's interrupts by itself (`alphasmp::counter`), and the
/// correction and the self-test's stopped value, which only this CPU's
/// interrupts (and IPL 7 code) change, are read again after the counter:
/// if either moved, an interrupt came in between, and the read starts
/// again. The compiler fences keep the second reads after the counter
/// read (a CPU sees its own interrupts' stores in program order).
#[inline]
fn raw_cycles() -> u64 {
    let cpu = cpus::this();
    loop {
        let correction = CORRECTION[cpu].load(Ordering::Relaxed);
        let stopped = STOPPED_AT[cpu].load(Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let value = match stopped {
            0 => extended_counter(cpu),
            stopped => stopped,
        } + correction;
        compiler_fence(Ordering::SeqCst);
        if CORRECTION[cpu].load(Ordering::Relaxed) == correction
            && STOPPED_AT[cpu].load(Ordering::Relaxed) == stopped
        {
            return value;
        }
    }
}

/// The counter extended to 64 bits (on `cpu` itself, any IPL).
#[inline]
fn extended_counter(cpu: usize) -> u64 {
    EXTENDED[cpu].read(pal::rpcc32)
}

// ---- Time when the cycle counter stops ---------------------------------
//
// The Alpha architecture lets RPCC "shift to a lower frequency, or stop"
// while a CPU waits in wtint (docs/hardware.md §6), which the idle loop and
// napping waiters (wait=nap) do. The periodic clock interrupt is the
// reference that keeps running: per CPU, a floor (`alphasmp::timefloor`)
// bounds the time of each interrupt from below, from the previous
// interrupt's edge plus one period and from the clock when the previous
// one was taken; when the clock has fallen behind it, CORRECTION grows by
// the difference, so time never lags the interrupts and stays monotonic.
// Only this CPU writes its slots, at IPL 7 (in its clock interrupt).
//
// Off under QEMU (`set_floor_enabled`): its counter never stops, and its
// RTC and counter follow different host clocks, so on a busy host a floor
// could move the clock for no reason (seen: clock.tick_rate counted fewer
// interrupts than ticks). The self-test clock.interrupts_bound_time turns
// it on for its own CPU while it stops that CPU's counter
// (`stop_counter`), so the real interrupt path is what it checks.
static FLOOR_EDGE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static FLOOR_LAST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CORRECTION: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static FLOOR_ENABLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Self-test: the counter value this CPU's clock stands at (0: running);
/// while set, the floor is on for this CPU.
static STOPPED_AT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Turns the interrupt floor on (real machines) or off (QEMU).
pub fn set_floor_enabled(on: bool) {
    FLOOR_ENABLED.store(on, Ordering::Relaxed);
}

/// One periodic interrupt's worth of vouched-for time on this CPU.
fn floor_step() {
    let base = base_hz();
    if base == 0 {
        return;
    }
    let cpu = cpus::this();
    let now = raw_cycles();
    let floor = alphasmp::timefloor::Floor {
        edge: FLOOR_EDGE[cpu].load(Ordering::Relaxed),
        last: FLOOR_LAST[cpu].load(Ordering::Relaxed),
    };
    let (floor, correction) = floor.step(now, cycle_freq() / base);
    FLOOR_EDGE[cpu].store(floor.edge, Ordering::Relaxed);
    FLOOR_LAST[cpu].store(floor.last, Ordering::Relaxed);
    if correction != 0 {
        CORRECTION[cpu].fetch_add(correction, Ordering::Relaxed);
    }
}

/// How many cycles ago, on `cpu`'s own clock, that CPU last read its
/// counter (called on `cpu` itself; for the self-tests: every clock
/// interrupt must read it, or wraps go unseen).
pub fn since_last_read() -> u64 {
    let _ipl = IplGuard::raise(ipl::HIGH);
    let cpu = cpus::this();
    let before = EXTENDED[cpu].last();
    extended_counter(cpu).wrapping_sub(before)
}

/// Keeps this CPU's counter extension current from a long spin at IPL 7
/// (no clock interrupt reads it meanwhile).
pub fn keep_counting() {
    let _ = raw_cycles();
}

/// What [`stop_counter`] saved, for [`resume_counter`].
pub struct StoppedCounter {
    floor: (u64, u64),
    correction: u64,
}

/// Self-test hook: this CPU's clock sees its counter stand still (as RPCC
/// stopped in wtint would look) and its floor is on, until
/// [`resume_counter`]. Only the periodic interrupts move its clock then.
pub fn stop_counter() -> StoppedCounter {
    let _ipl = IplGuard::raise(ipl::HIGH);
    let cpu = cpus::this();
    let saved = StoppedCounter {
        floor: (
            FLOOR_EDGE[cpu].load(Ordering::Relaxed),
            FLOOR_LAST[cpu].load(Ordering::Relaxed),
        ),
        correction: CORRECTION[cpu].load(Ordering::Relaxed),
    };
    STOPPED_AT[cpu].store(extended_counter(cpu).max(1), Ordering::Relaxed);
    saved
}

/// Ends [`stop_counter`]: the counter runs again, the floor is as it was,
/// and the clock stays monotonic (it keeps the time the interrupts moved
/// it to until the running counter has caught up).
pub fn resume_counter(saved: StoppedCounter) {
    let _ipl = IplGuard::raise(ipl::HIGH);
    let cpu = cpus::this();
    let seen = raw_cycles();
    STOPPED_AT[cpu].store(0, Ordering::Relaxed);
    let running = extended_counter(cpu);
    FLOOR_EDGE[cpu].store(saved.floor.0, Ordering::Relaxed);
    FLOOR_LAST[cpu].store(saved.floor.1, Ordering::Relaxed);
    CORRECTION[cpu].store(
        saved.correction.max(seen.saturating_sub(running)),
        Ordering::Relaxed,
    );
}

/// Converts cycles to nanoseconds.
pub fn cycles_to_ns(c: u64) -> u64 {
    load_scale(&TO_NS).apply(c)
}

/// Converts nanoseconds to cycles.
pub fn ns_to_cycles(ns: u64) -> u64 {
    load_scale(&TO_CYCLES).apply(ns)
}

/// Nanoseconds on this CPU's clock.
pub fn now_ns() -> u64 {
    cycles_to_ns(cycles())
}

/// Busy-waits for at least `ns` nanoseconds.
pub fn delay_ns(ns: u64) {
    let end = cycles() + ns_to_cycles(ns);
    while cycles() < end {
        core::hint::spin_loop();
    }
}

/// One pause of a wait for another CPU that began at `since_ns`: a spin
/// while the wait is younger than [`SPIN_FIRST_NS`], then a sleep in wtint
/// until the next interrupt (every CPU takes the periodic clock interrupt,
/// so a sleep lasts a base period at most). An emulator that runs its CPUs
/// one at a time (QEMU under `-icount`) runs the CPU waited for only while
/// this one sleeps; everywhere else the sleep costs at most a period of
/// the wait's end. For task context at IPL 0 (at a raised IPL wtint returns
/// at once for a pending masked interrupt, and the pause is a spin).
pub fn pause_since(since_ns: u64) {
    if now_ns().saturating_sub(since_ns) < SPIN_FIRST_NS {
        core::hint::spin_loop();
    } else {
        crate::pal::wtint();
    }
}

/// Waits until `done()`, with [`pause_since`]'s pauses, looking at
/// `done()` several times between two of its clock reads (a read costs
/// hundreds of instructions, a look one load).
pub fn wait_since(since_ns: u64, done: impl Fn() -> bool) {
    while !done() {
        for _ in 0..alphasmp::xcall::LOOKS_PER_CLOCK_READ {
            core::hint::spin_loop();
            if done() {
                return;
            }
        }
        pause_since(since_ns);
    }
}

/// How long [`pause_since`] spins before it sleeps.
pub const SPIN_FIRST_NS: u64 = 1_000_000;

/// Waits `ns` (at least) with [`pause_since`]'s pauses: other CPUs run
/// meanwhile even where the emulator runs one CPU at a time.
pub fn sleep_ns(ns: u64) {
    let start = now_ns();
    while now_ns() - start < ns {
        pause_since(start);
    }
}

// ---- The per-CPU tick ------------------------------------------------------
//
// Every SRM console delivers a periodic clock interrupt (entInt type 1) to
// every CPU at `intr_freq / 4096` Hz: the PALcode's own on Marvel, the
// MC146818 RTC's on Tsunami-class machines once the kernel programs it
// (machine/tsunami.rs). The kernel's tick (`tick_hz`, default 100) is that
// interrupt divided down in software, per CPU, by time: each interrupt
// compares the cycle counter with the CPU's next tick deadline and makes
// the ticks that are due, advancing the deadline by whole periods. Counting
// interrupts instead would lose time whenever they coalesce (a CPU kept
// from running misses RTC periods: measured under QEMU on a busy 2-core
// host, 630 interrupts per second of 1024). The divider trusts the cycle
// counter to keep running while a CPU waits in wtint; docs/hardware.md §6
// warns that RPCC may slow or stop there on some machines, which would make
// an idle CPU's ticks lag (its interrupts still arrive; clock.tick_rate
// checks both). QEMU's private one-shot alarm
// (`clock=alarm`, machine/clipper.rs) instead interrupts at each tick.

/// The base rate assumed when the HWRPB's is missing or implausible
/// (NetBSD's rule: intr_freq >> 12 outside 60..=10240 gives 1024).
pub const FALLBACK_BASE_HZ: u64 = 1024;

/// How the tick is made (set once by the boot CPU before any tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The periodic interrupt at `base_hz`, divided down.
    Periodic { base_hz: u64 },
    /// One interrupt per tick (QEMU's alarm).
    OneShot,
}

static BASE_HZ: AtomicU64 = AtomicU64::new(0);
static TICK_HZ: AtomicU64 = AtomicU64::new(100);

/// The periodic rate the HWRPB reports, or the fallback.
pub fn base_hz_from(intr_freq: u64) -> u64 {
    let hz = intr_freq >> 12;
    if (60..=10240).contains(&hz) {
        hz
    } else {
        FALLBACK_BASE_HZ
    }
}

/// Sets the tick rate and its source (boot CPU, before any CPU takes a
/// clock interrupt). A rate above a periodic base is lowered to the base.
pub fn configure(tick_hz: u32, source: Source) -> u64 {
    let mut hz = u64::from(tick_hz.max(1));
    match source {
        Source::Periodic { base_hz } => {
            hz = hz.min(base_hz);
            BASE_HZ.store(base_hz, Ordering::Relaxed);
        }
        Source::OneShot => BASE_HZ.store(0, Ordering::Relaxed),
    }
    TICK_HZ.store(hz, Ordering::Relaxed);
    hz
}

pub fn tick_hz() -> u64 {
    TICK_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds between ticks.
pub fn tick_period_ns() -> u64 {
    1_000_000_000 / tick_hz()
}

/// The periodic base rate, 0 with a one-shot source.
pub fn base_hz() -> u64 {
    BASE_HZ.load(Ordering::Relaxed)
}

/// Sets this CPU's first periodic deadline (each CPU, at bring-up).
pub fn start_periodic_this_cpu() {
    let period = ns_to_cycles(tick_period_ns());
    percpu::this()
        .next_tick_cycles
        .store(cycles() + period, Ordering::Relaxed);
}

/// Called for each clock interrupt on this CPU: how many kernel ticks it
/// makes (0 until the deadline; more than 1 after missed interrupts, at
/// most a second's worth, beyond which the lost time is skipped).
pub fn on_clock_interrupt() -> u64 {
    // Every clock interrupt reads the counter, whatever makes the tick:
    // the 32-bit counter is extended in software (raw_cycles) and a CPU
    // that reads it less often than it wraps (17 s at 250 MHz, 3.7 s on a
    // 1.15 GHz EV7) would lose 2^32 cycles unseen.
    let now = cycles();
    if base_hz() == 0 {
        return 1;
    }
    if FLOOR_ENABLED.load(Ordering::Relaxed)
        || STOPPED_AT[cpus::this()].load(Ordering::Relaxed) != 0
    {
        floor_step();
    }
    let me = percpu::this();
    let period = ns_to_cycles(tick_period_ns()).max(1);
    let now = now.max(cycles());
    let next = me.next_tick_cycles.load(Ordering::Relaxed);
    if now < next {
        return 0;
    }
    let due = (now - next) / period + 1;
    let (ticks, next) = if due > tick_hz() {
        (1, now + period)
    } else {
        (due, next + due * period)
    };
    me.next_tick_cycles.store(next, Ordering::Relaxed);
    ticks
}

/// `n` kernel ticks on this CPU: counts them.
pub fn on_tick(n: u64) {
    percpu::this().ticks.fetch_add(n, Ordering::Relaxed);
}
