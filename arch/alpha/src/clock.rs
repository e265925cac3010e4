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
