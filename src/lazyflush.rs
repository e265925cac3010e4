//! Deferred TLB flushes for sleeping idle CPUs: a flush
//! ([`Mmu::flush_tlb_all`](crate::tlb::Mmu::flush_tlb_all), or a flush of
//! a space the CPU still has current) does not interrupt a CPU that sleeps
//! in its idle loop; that CPU catches up itself when it wakes, before it
//! runs anything that could use a translation (`crate::tlb`: its whole TLB
//! and a new context for its current space). The same idea as Linux's
//! lazy-TLB idle CPUs on x86.
//!
//! # Protocol
//!
//! One word per CPU, `state[cpu]`: `AWAKE`, `ASLEEP` or `SKIPPED`.
//!
//! - The CPU **stores** `ASLEEP` just before it sleeps in its idle loop
//!   ([`LazyFlush::enter_idle`]) and **swaps** in `AWAKE` when it wakes
//!   ([`LazyFlush::leave_idle`], Acquire), with interrupts held off in
//!   between (no handler, and no flush body, runs on it meanwhile); the
//!   idle loop uses no translation between the two. If the swap returns
//!   `SKIPPED`, it catches up before it lets interrupts in.
//! - A flusher, after its mapping change, **compare-and-swaps** `ASLEEP`
//!   or `SKIPPED` to `SKIPPED` (Release) for each CPU it would interrupt
//!   ([`LazyFlush::skip`]); where that succeeds it skips the CPU, where it
//!   finds `AWAKE` it interrupts it, as before.
//!
//! All writes after the CPU's store are read-modify-writes of the one
//! word, so they are totally ordered: either the flusher's succeeds first
//! (the CPU's swap then returns `SKIPPED` and it catches up) or the CPU's
//! swap does (the flusher then finds `AWAKE` and interrupts it); a CPU can
//! never be both skipped and not told. Each skipping flusher's Release
//! read-modify-write stays in the word's release sequence, so the waking
//! CPU's Acquire swap sees the mapping change of every flush that skipped
//! it. No fence is needed, no CPU that was awake ever catches up, and a
//! flush that finds nobody asleep writes nothing. The loom tests
//! (tests/loom.rs) check this, and that either ordering weakened to
//! Relaxed loses a mapping change.
//!
//! A napping waiter (`crate::xcall`) is not idle here: it sleeps inside a
//! wait, not at the idle loop's top, and is interrupted as before.

use crate::cpumask::CpuMask;
use crate::line::Line;
use crate::sync::{AtomicU32, Ordering};

const AWAKE: u32 = 0;
const ASLEEP: u32 = 1;
const SKIPPED: u32 = 2;

/// The loom tests' mutants: 1 weakens the flusher's Release, 2 the waking
/// CPU's Acquire, to Relaxed (0: none).
#[cfg(loom)]
pub static MUTANT_RELAXED: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

#[inline(always)]
fn ordering(_which: u8, o: Ordering) -> Ordering {
    #[cfg(loom)]
    if MUTANT_RELAXED.load(core::sync::atomic::Ordering::Relaxed) == _which {
        return Ordering::Relaxed;
    }
    o
}

/// The deferred-flush state for `N` CPUs.
pub struct LazyFlush<const N: usize> {
    /// One line each (`crate::line`): every CPU writes its own word on
    /// each sleep and wake.
    state: [Line<AtomicU32>; N],
}

impl<const N: usize> Default for LazyFlush<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LazyFlush<N> {
    pub const fn new() -> Self {
        LazyFlush {
            state: [const { Line::new(AtomicU32::new(AWAKE)) }; N],
        }
    }

    /// `cpu`, in its idle loop with interrupts held off, just before it
    /// sleeps: flushes from now on may skip it.
    #[inline]
    pub fn enter_idle(&self, cpu: usize) {
        self.state[cpu].store(ASLEEP, Ordering::Relaxed);
    }

    /// `cpu`, when its idle sleep ends, still with interrupts held off:
    /// whether a flush skipped it (it must catch up now).
    #[inline]
    pub fn leave_idle(&self, cpu: usize) -> bool {
        self.state[cpu].swap(AWAKE, ordering(2, Ordering::Acquire)) == SKIPPED
    }

    /// A flusher, after its mapping change: whether it may skip `cpu`
    /// (asleep in its idle loop, now told to catch up when it wakes)
    /// rather than interrupt it.
    #[inline]
    pub fn skip(&self, cpu: usize) -> bool {
        let mut seen = self.state[cpu].load(Ordering::Relaxed);
        while seen != AWAKE {
            match self.state[cpu].compare_exchange_weak(
                seen,
                SKIPPED,
                ordering(1, Ordering::Release),
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
        false
    }

    /// Of `candidates`, those a flusher skips ([`skip`](Self::skip)).
    pub fn skip_sleepers(&self, candidates: CpuMask) -> CpuMask {
        let mut skipped = CpuMask::EMPTY;
        for cpu in candidates.iter() {
            if self.skip(cpu) {
                skipped.insert(cpu);
            }
        }
        skipped
    }

    /// CPUs sleeping in their idle loop now (a hint: any may be waking).
    pub fn idle(&self) -> CpuMask {
        let mut m = CpuMask::EMPTY;
        for (cpu, s) in self.state.iter().enumerate() {
            if s.load(Ordering::Relaxed) != AWAKE {
                m.insert(cpu);
            }
        }
        m
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_cpu_is_skipped_and_told_when_it_wakes() {
        let l = LazyFlush::<4>::new();
        l.enter_idle(2);
        assert_eq!(l.skip_sleepers(CpuMask(0b1110)), CpuMask(0b0100));
        assert_eq!(
            l.skip_sleepers(CpuMask(0b1110)),
            CpuMask(0b0100),
            "still asleep"
        );
        assert!(l.leave_idle(2), "CPU 2 must catch up");
        l.enter_idle(2);
        assert!(!l.leave_idle(2), "no flush since: nothing to do");
    }

    #[test]
    fn an_awake_cpu_is_never_skipped_nor_told() {
        let l = LazyFlush::<2>::new();
        assert_eq!(l.skip_sleepers(CpuMask(0b11)), CpuMask::EMPTY);
        assert!(!l.leave_idle(1), "not entered, never skipped");
        l.enter_idle(1);
        assert_eq!(l.idle(), CpuMask(0b10));
        assert!(!l.leave_idle(1));
        assert_eq!(l.idle(), CpuMask::EMPTY);
    }
}
