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
//! - `idle` (bit per CPU): **set** by the CPU itself just before it
//!   sleeps in the idle loop ([`LazyFlush::enter_idle`]), **cleared** by
//!   it when it wakes ([`LazyFlush::leave_idle`]), with interrupts held
//!   off in between (so no handler, and no flush body, runs on it while
//!   the bit is set). The idle loop uses no translation between the two.
//! - `generation`: **incremented** by a flusher that may skip someone
//!   ([`LazyFlush::begin`]), after the mapping change it flushes for and
//!   before it reads `idle` again.
//! - `seen[cpu]`: written only by `cpu`, with a generation it read
//!   *before* a catch-up, or before a whole-TLB flush of its IPI body
//!   (while awake it is never skipped, so that covers every generation up
//!   to the one read).
//!
//! The flusher does `generation += 1; fence(SeqCst); read idle`; the waking
//! CPU does `clear its idle bit; fence(SeqCst); read generation`. With both
//! fences in the single total order of SeqCst fences, either the flusher's
//! read sees the bit clear (it interrupts the CPU, as before) or the CPU's
//! read sees the new generation (it catches up before it goes on): a CPU
//! can never both be skipped and miss the generation. A CPU that sets its
//! bit after the flusher read it was interrupted and flushes in its
//! handler (or, if the IPI's interrupt is taken only after the sleep, at
//! the catch-up too). `generation` is an increment with Release, read with
//! Acquire: a CPU that sees the generation also sees the mapping change
//! made before it. The loom tests (tests/loom.rs) check this, and that
//! dropping either fence loses a flush.
//!
//! A napping waiter (`crate::xcall`) is not idle here: it sleeps inside a
//! wait, not at the idle loop's top, and is interrupted as before.

use crate::cpumask::CpuMask;
use crate::sync::{AtomicU64, Ordering, fence};

const FLUSHER_FENCE: u8 = 1;
const WAKER_FENCE: u8 = 2;

/// The loom tests' mutants: the protocol fence to leave out (0: none).
#[cfg(loom)]
pub static MUTANT_WITHOUT_FENCE: core::sync::atomic::AtomicU8 =
    core::sync::atomic::AtomicU8::new(0);

/// One of the protocol's two SeqCst fences (module docs).
#[inline(always)]
fn protocol_fence(_which: u8) {
    #[cfg(loom)]
    if MUTANT_WITHOUT_FENCE.load(core::sync::atomic::Ordering::Relaxed) == _which {
        return;
    }
    fence(Ordering::SeqCst);
}

/// The deferred-flush state for `N` CPUs.
pub struct LazyFlush<const N: usize> {
    generation: AtomicU64,
    idle: AtomicU64,
    seen: [AtomicU64; N],
}

impl<const N: usize> Default for LazyFlush<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LazyFlush<N> {
    pub const fn new() -> Self {
        LazyFlush {
            generation: AtomicU64::new(0),
            idle: AtomicU64::new(0),
            seen: [const { AtomicU64::new(0) }; N],
        }
    }

    /// `cpu`, in its idle loop with interrupts held off, just before it
    /// sleeps: all-CPU flushes from now on may skip it.
    pub fn enter_idle(&self, cpu: usize) {
        self.idle.fetch_or(1 << cpu, Ordering::Relaxed);
    }

    /// `cpu`, when its idle sleep ends, still with interrupts held off:
    /// `Some(generation)` if a flush skipped it (it must flush its whole
    /// TLB now and then report that generation to [`flushed`](Self::flushed)).
    #[inline]
    pub fn leave_idle(&self, cpu: usize) -> Option<u64> {
        let was = self.idle.fetch_and(!(1 << cpu), Ordering::Relaxed);
        if was & (1 << cpu) == 0 {
            // Not entered: no flush could have skipped it.
            return None;
        }
        protocol_fence(WAKER_FENCE);
        self.pending(cpu)
    }

    /// The current generation if `cpu` has not flushed up to it.
    #[inline]
    pub fn pending(&self, cpu: usize) -> Option<u64> {
        let g = self.generation.load(Ordering::Acquire);
        (g != self.seen[cpu].load(Ordering::Relaxed)).then_some(g)
    }

    /// The generation a whole-TLB flush about to run on `cpu` will cover:
    /// read it before the flush, pass it to [`flushed`](Self::flushed)
    /// after.
    #[inline]
    pub fn current(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `cpu` flushed its whole TLB after reading generation `g`.
    #[inline]
    pub fn flushed(&self, cpu: usize, g: u64) {
        self.seen[cpu].store(g, Ordering::Relaxed);
    }

    /// A flusher, after its mapping change: of `online`, the CPUs it must
    /// interrupt; the others sleep in their idle loop and flush when they
    /// wake.
    pub fn begin(&self, online: CpuMask) -> CpuMask {
        self.generation.fetch_add(1, Ordering::Release);
        protocol_fence(FLUSHER_FENCE);
        CpuMask(online.0 & !self.idle.load(Ordering::Relaxed))
    }

    /// CPUs sleeping in their idle loop now (a hint, for statistics).
    pub fn idle(&self) -> CpuMask {
        CpuMask(self.idle.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_cpu_is_skipped_and_flushes_when_it_wakes() {
        let l = LazyFlush::<4>::new();
        let online = CpuMask(0b1111);
        l.enter_idle(2);
        let targets = l.begin(online);
        assert_eq!(targets, CpuMask(0b1011), "CPU 2 sleeps: skipped");
        let g = l.leave_idle(2).expect("CPU 2 must catch up");
        l.flushed(2, g);
        l.enter_idle(2);
        assert_eq!(l.leave_idle(2), None, "no flush since: nothing to do");
    }

    #[test]
    fn an_awake_cpu_is_interrupted_and_its_handler_covers_the_generation() {
        let l = LazyFlush::<2>::new();
        let targets = l.begin(CpuMask(0b11));
        assert_eq!(targets, CpuMask(0b11));
        // CPU 1's IPI body: read, flush, report.
        let g = l.current();
        l.flushed(1, g);
        l.enter_idle(1);
        assert_eq!(l.leave_idle(1), None, "its handler already flushed");
    }

    #[test]
    fn a_flush_after_the_handlers_generation_is_still_pending() {
        let l = LazyFlush::<2>::new();
        l.begin(CpuMask(0b11));
        let g = l.current();
        l.begin(CpuMask(0b11));
        l.flushed(1, g);
        assert_eq!(l.pending(1), Some(2));
    }
}
