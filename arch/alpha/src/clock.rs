//! Time: the cycle counter extended to 64 bits, converted with the HWRPB's
//! cycle frequency.
//!
//! `rpcc` gives a 32-bit counter (250 MHz under QEMU: it wraps every ~17 s).
//! Each CPU extends it in software: `EXTENDED[cpu]` holds the last full
//! 64-bit value; a read that finds the low half smaller than before adds
//! 2^32. Only the owning CPU writes its slot, at IPL 7 so an interrupt
//! handler reading the clock cannot interleave; the periodic tick reads it
//! often enough that at most one wrap happens between reads.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::ipl::{self, IplGuard};
use crate::percpu::{self, MAX_CPUS};
use crate::{cpus, pal};

static EXTENDED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CYCLE_FREQ: AtomicU64 = AtomicU64::new(250_000_000);

/// Records the cycle-counter frequency (from the HWRPB).
pub fn init(cycle_freq: u64) {
    if cycle_freq != 0 {
        CYCLE_FREQ.store(cycle_freq, Ordering::Relaxed);
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
pub fn cycles() -> u64 {
    let skew = SKEW_CYCLES.load(Ordering::Relaxed);
    let raw = raw_cycles();
    if skew == 0 { raw } else { raw + (SKEW_BASE_CPUS - cpus::this() as u64) * skew }
}

/// This CPU's cycle count since it first read the clock, 64-bit, plus the
/// correction the periodic interrupt made (below).
fn raw_cycles() -> u64 {
    let _ipl = IplGuard::raise(ipl::HIGH);
    let cpu = cpus::this();
    let slot = &EXTENDED[cpu];
    let prev = slot.load(Ordering::Relaxed);
    let low = u64::from(pal::rpcc32());
    let mut high = prev & !0xffff_ffff;
    if low < (prev & 0xffff_ffff) {
        high += 1 << 32;
    }
    let now = high | low;
    slot.store(now, Ordering::Relaxed);
    now + CORRECTION[cpu].load(Ordering::Relaxed)
}

// ---- Time when the cycle counter stops ---------------------------------
//
// srm-hardware.md 6: RPCC "may shift to a lower frequency, or stop" while a
// CPU waits in wtint, which the idle loop and napping waiters (wait=nap)
// do. The periodic clock interrupt is the reference that keeps running:
// each one proves that at least one base period has passed since the
// previous one. Per CPU, FLOOR is the time those interrupts vouch for
// (the clock at the first one, plus one period per interrupt since); when
// the clock has fallen behind it, CORRECTION grows by the difference, so
// time never lags the interrupts and stays monotonic. Interrupts that
// coalesce make the floor lag instead, which never moves the clock; the
// floor starts one period before the first interrupt seen, because that
// one may have been delivered late. Only this CPU writes its slots, at
// IPL 7 (in its clock interrupt).
//
// Off under QEMU (`set_floor_enabled`): its counter never stops, and its
// RTC and counter follow different host clocks, so on a busy host a floor
// could move the clock for no reason (seen: clock.tick_rate counted fewer
// interrupts than ticks). The self-test drives the same code through
// `simulate_stopped_counter`.
static FLOOR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CORRECTION: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static FLOOR_ENABLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

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
    let floor = FLOOR[cpu].load(Ordering::Relaxed);
    if floor == 0 {
        FLOOR[cpu].store(now.saturating_sub(cycle_freq() / base).max(1), Ordering::Relaxed);
        return;
    }
    let floor = floor + cycle_freq() / base;
    FLOOR[cpu].store(floor, Ordering::Relaxed);
    if now < floor {
        CORRECTION[cpu].fetch_add(floor - now, Ordering::Relaxed);
    }
}

/// Self-test hook: `n` periodic interrupts arrive while the counter does
/// not move (as RPCC stopped in wtint would look); returns the cycles the
/// clock was corrected by.
pub fn simulate_stopped_counter(n: u64) -> u64 {
    let _ipl = IplGuard::raise(ipl::HIGH);
    let cpu = cpus::this();
    let before = CORRECTION[cpu].load(Ordering::Relaxed);
    let saved = FLOOR[cpu].load(Ordering::Relaxed);
    FLOOR[cpu].store(raw_cycles(), Ordering::Relaxed);
    for _ in 0..n {
        floor_step();
    }
    // Leave the floor as the real interrupts had it (0 under QEMU).
    FLOOR[cpu].store(saved, Ordering::Relaxed);
    CORRECTION[cpu].load(Ordering::Relaxed) - before
}

/// Converts cycles to nanoseconds.
pub fn cycles_to_ns(c: u64) -> u64 {
    (u128::from(c) * 1_000_000_000 / u128::from(cycle_freq())) as u64
}

/// Converts nanoseconds to cycles.
pub fn ns_to_cycles(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(cycle_freq()) / 1_000_000_000) as u64
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
// counter to keep running while a CPU waits in wtint; srm-hardware.md 6
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
    if (60..=10240).contains(&hz) { hz } else { FALLBACK_BASE_HZ }
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
    percpu::this().next_tick_cycles.store(cycles() + period, Ordering::Relaxed);
}

/// Called for each clock interrupt on this CPU: how many kernel ticks it
/// makes (0 until the deadline; more than 1 after missed interrupts, at
/// most a second's worth, beyond which the lost time is skipped).
pub fn on_clock_interrupt() -> u64 {
    if base_hz() == 0 {
        return 1;
    }
    if FLOOR_ENABLED.load(Ordering::Relaxed) {
        floor_step();
    }
    let me = percpu::this();
    let period = ns_to_cycles(tick_period_ns()).max(1);
    let now = cycles();
    let next = me.next_tick_cycles.load(Ordering::Relaxed);
    if now < next {
        return 0;
    }
    let due = (now - next) / period + 1;
    let (ticks, next) = if due > tick_hz() { (1, now + period) } else { (due, next + due * period) };
    me.next_tick_cycles.store(next, Ordering::Relaxed);
    ticks
}

/// `n` kernel ticks on this CPU: counts them.
pub fn on_tick(n: u64) {
    percpu::this().ticks.fetch_add(n, Ordering::Relaxed);
}
