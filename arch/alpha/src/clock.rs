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
use crate::pal;
use crate::percpu::MAX_CPUS;

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

/// This CPU's cycle count since it first read the clock, 64-bit.
pub fn cycles() -> u64 {
    let _ipl = IplGuard::raise(ipl::HIGH);
    let slot = &EXTENDED[pal::whami() % MAX_CPUS];
    let prev = slot.load(Ordering::Relaxed);
    let low = u64::from(pal::rpcc32());
    let mut high = prev & !0xffff_ffff;
    if low < (prev & 0xffff_ffff) {
        high += 1 << 32;
    }
    let now = high | low;
    slot.store(now, Ordering::Relaxed);
    now
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

// ---- The periodic per-CPU tick --------------------------------------------
//
// Clipper under QEMU: each CPU arms its own one-shot alarm with CALL_PAL
// cserve (selector 6, absolute deadline on the VM clock, which cserve 7
// reads); the alarm arrives as entInt type 1 and the handler re-arms it.
// Deadlines advance by exactly one period from the previous deadline, so
// interrupt latency does not accumulate into drift. Real hardware (and
// Marvel) get the tick from PALcode instead; see README.

const CSERVE_SET_ALARM_ABSOLUTE: u64 = 6;
const CSERVE_VM_TIME_NS: u64 = 7;

static TICK_PERIOD_NS: AtomicU64 = AtomicU64::new(10_000_000);

/// The VM clock in nanoseconds (QEMU's cserve 7).
pub fn vm_time_ns() -> u64 {
    pal::cserve(CSERVE_VM_TIME_NS, 0, 0)
}

/// Sets the tick rate (call before any CPU starts its tick).
pub fn set_tick_hz(hz: u32) {
    TICK_PERIOD_NS.store(1_000_000_000 / u64::from(hz.max(1)), Ordering::Relaxed);
}

pub fn tick_hz() -> u64 {
    1_000_000_000 / TICK_PERIOD_NS.load(Ordering::Relaxed)
}

/// Starts the calling CPU's tick (it arrives once the IPL drops below 5).
pub fn start_tick() {
    let next = vm_time_ns() + TICK_PERIOD_NS.load(Ordering::Relaxed);
    crate::percpu::this().next_tick_ns.store(next, Ordering::Relaxed);
    pal::cserve(CSERVE_SET_ALARM_ABSOLUTE, next, 0);
}

/// Clock interrupt: counts the tick and arms the next one.
pub fn on_tick() {
    let me = crate::percpu::this();
    me.ticks.fetch_add(1, Ordering::Relaxed);
    let _ = cycles(); // keeps the 64-bit cycle extension fresh
    let period = TICK_PERIOD_NS.load(Ordering::Relaxed);
    let mut next = me.next_tick_ns.load(Ordering::Relaxed) + period;
    let now = vm_time_ns();
    if next <= now {
        // Fell more than a period behind (the CPU sat at a high IPL): skip.
        next = now + period;
    }
    me.next_tick_ns.store(next, Ordering::Relaxed);
    pal::cserve(CSERVE_SET_ALARM_ABSOLUTE, next, 0);
}
