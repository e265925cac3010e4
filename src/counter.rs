//! A 32-bit cycle counter extended to 64 bits, read from any context on
//! its own CPU (interrupt handlers included) without masking interrupts.
//!
//! Alpha's RPCC counts in its low 32 bits only (about 4.3 s at 1 GHz).
//! Each CPU keeps the last extended value it read in its own slot; a read
//! takes the slot's high half and adds one wrap when the new low half is
//! below the slot's.
//!
//! Protocol (one slot per CPU; only that CPU touches it):
//! 1. load the slot (`prev`);
//! 2. read the counter (after the load: program order on one CPU);
//! 3. compute `now` from `prev` and the low half;
//! 4. compare-and-swap the slot from `prev` to `now`; if it fails, an
//!    interrupt on this CPU read the clock between 1 and 4 (and stored a
//!    later value): start again.
//!
//! So every stored value extends the value stored just before it, from a
//! counter read made after that one was loaded, and a read is exact as
//! long as the slot's CPU reads its counter at least once per wrap (the
//! kernel's clock interrupt does). Without step 4's check, an interrupt
//! between 1 and 2 that ran for more than a wrap would leave this read a
//! whole wrap behind; with it, the read starts again from the
//! interrupt's value. Relaxed ordering suffices: nothing here is shared
//! with another CPU, and a CPU sees its own accesses in program order.
//! The compare-and-swap fails when an interrupt intervened (on Alpha an
//! interrupt clears the lock flag of `ldq_l`/`stq_c`), which is what it is
//! for. The model below checks the protocol with interrupts at every step.

use core::sync::atomic::{AtomicU64, Ordering};

/// One CPU's extended counter, alone in its cache line: every read
/// stores to it, and counters of different CPUs in one line would make
/// each CPU's clock read take the line from the others.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Extended(AtomicU64);

impl Extended {
    pub const fn new() -> Self {
        Extended(AtomicU64::new(0))
    }

    /// The counter extended to 64 bits; `counter` reads the hardware's low
    /// 32 bits (it may be called more than once).
    #[inline]
    pub fn read(&self, mut counter: impl FnMut() -> u32) -> u64 {
        self.read_with(&mut counter, || {})
    }

    /// [`Extended::read`] with a hook between the computation and the
    /// compare-and-swap (the model runs an "interrupt" there).
    #[inline]
    pub fn read_with(
        &self,
        mut counter: impl FnMut() -> u32,
        mut before_store: impl FnMut(),
    ) -> u64 {
        loop {
            let prev = self.0.load(Ordering::Relaxed);
            let low = u64::from(counter());
            let mut high = prev & !0xffff_ffff;
            if low < (prev & 0xffff_ffff) {
                high += 1 << 32;
            }
            let now = high | low;
            before_store();
            if self
                .0
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return now;
            }
        }
    }

    /// The last value a read stored.
    pub fn last(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift64;
    use std::cell::Cell;

    /// The true 64-bit time, the hardware showing its low half.
    struct Hw {
        time: Cell<u64>,
    }

    impl Hw {
        fn read(&self) -> u32 {
            self.time.get() as u32
        }
    }

    /// Where in a read an interrupt's own read comes.
    #[derive(Clone, Copy, Debug)]
    enum At {
        BeforeCounter,
        BeforeStore,
    }

    /// One outer read with one interrupt (itself a read, with time `gap`
    /// passing before it) at `at`, then `after` cycles; returns the outer
    /// read's value and the true time of its last counter read.
    fn one_read_with_interrupt(ext: &Extended, hw: &Hw, at: At, gap: u64, long: u64) -> (u64, u64) {
        let fired = Cell::new(false);
        let seen = Cell::new(0u64);
        let interrupt = || {
            if !fired.replace(true) {
                hw.time.set(hw.time.get() + gap);
                let v = ext.read(|| hw.read());
                assert_eq!(
                    v,
                    hw.time.get(),
                    "the interrupt's read is exact (gap {gap:#x} long {long:#x})"
                );
                // The handler runs long (a console line, a machine check).
                hw.time.set(hw.time.get() + long);
            }
        };
        let v = ext.read_with(
            || {
                if matches!(at, At::BeforeCounter) {
                    interrupt();
                }
                seen.set(hw.time.get());
                hw.read()
            },
            || {
                if matches!(at, At::BeforeStore) {
                    interrupt();
                }
            },
        );
        (v, seen.get())
    }

    /// Handler lengths: nothing, short, half a wrap, just under a wrap
    /// (the clock interrupt is masked at most that long: it must read the
    /// counter once per wrap).
    const LONG: [u64; 4] = [0, 1, 1 << 31, (1 << 32) - (1 << 20)];

    #[test]
    fn reads_are_exact_with_an_interrupt_at_every_step() {
        let mut rng = XorShift64::new(11);
        for at in [At::BeforeCounter, At::BeforeStore] {
            for long in LONG {
                let ext = Extended::new();
                let hw = Hw {
                    time: Cell::new(0x7fff_ff00),
                };
                // The first read starts the extension (from slot 0).
                let mut last = ext.read(|| hw.read());
                assert_eq!(last, hw.time.get());
                for _ in 0..if cfg!(miri) { 50 } else { 2000 } {
                    // Between reads on this CPU: less than half a wrap.
                    hw.time.set(hw.time.get() + (rng.next_u64() >> 33));
                    let gap = rng.next_u64() >> 34;
                    let (v, truth) = one_read_with_interrupt(&ext, &hw, at, gap, long);
                    assert_eq!(
                        v, truth,
                        "{at:?} long={long:#x}: read {v:#x}, true time {truth:#x}"
                    );
                    assert!(v >= last, "went back: {last:#x} -> {v:#x}");
                    last = v;
                }
            }
        }
    }

    /// The same reads with a plain store instead of the compare-and-swap
    /// (steps 1-3 only): an interrupt between the load and the counter
    /// read that runs for most of a wrap leaves the read a wrap behind.
    /// This is why step 4 checks.
    #[test]
    fn without_the_check_a_long_interrupt_costs_a_wrap() {
        let slot = AtomicU64::new(0);
        let hw = Hw {
            time: Cell::new(0x7000_0000),
        };
        let plain = |interrupt: &dyn Fn()| {
            let prev = slot.load(Ordering::Relaxed);
            interrupt();
            let low = u64::from(hw.read());
            let mut high = prev & !0xffff_ffff;
            if low < (prev & 0xffff_ffff) {
                high += 1 << 32;
            }
            slot.store(high | low, Ordering::Relaxed);
            high | low
        };
        let long = LONG[3];
        assert_eq!(plain(&|| {}), 0x7000_0000);
        hw.time.set(hw.time.get() + (1 << 30));
        // The interrupt reads the clock (exactly), then runs long.
        let v = plain(&|| {
            plain(&|| {});
            hw.time.set(hw.time.get() + long);
        });
        assert_eq!(
            v + (1 << 32),
            hw.time.get(),
            "the plain read is a wrap behind"
        );

        let ext = Extended::new();
        hw.time.set(0x7000_0000);
        assert_eq!(ext.read(|| hw.read()), 0x7000_0000);
        hw.time.set(hw.time.get() + (1 << 30));
        let (v, truth) = one_read_with_interrupt(&ext, &hw, At::BeforeCounter, 0, long);
        assert_eq!(v, truth, "the protocol's read is exact");
        assert_eq!(truth, hw.time.get());
    }
}
