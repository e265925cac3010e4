//! Freeing page tables safely against lockless walkers, with the TLB
//! flush's own IPIs as the proof, decided per flush.
//!
//! # The problem
//!
//! A lockless page-table walker (Linux's GUP-fast) reads a space's tables
//! with every interrupt held off and no lock. A table unlinked from its
//! parent may still be under such a walk on another CPU, so it may be freed
//! only once every walk that could have seen it has ended. Linux makes sure
//! with an IPI round (`tlb_remove_table_sync_one()`, an empty function run
//! on every other CPU): a CPU that takes an IPI is not inside an
//! interrupts-off walk. Where the TLB flush that follows the unlink has
//! already interrupted every CPU synchronously, that round is redundant:
//! the proposal `tlb_table_flush_implies_ipi_broadcast()` answered that per
//! architecture, with a constant. On Alpha the answer differs per flush
//! (a space used only here costs no IPI at all), so this module decides it
//! per flush, from what the flush really did.
//!
//! # The protocol
//!
//! - **Walkers** hold IPL 7 for the whole walk ([`WalkGuard`]): no IPI
//!   handler, and no poll of the mailbox (the in-interrupt poll is gated on
//!   the interrupted IPL, `crate::xcall`), runs on their CPU meanwhile. A
//!   walk of the CPU's own current space needs nothing else: the flush
//!   reaches every CPU running the space. A walk of a space the CPU does
//!   not run ([`Mmu::walk_foreign`]) first registers the CPU in the space's
//!   `walkers` mask (SeqCst read-modify-write, then a SeqCst fence) and
//!   only then reads the tables; it clears the bit (Release) at the end.
//!   Switching spaces inside a walk is a bug: `Mmu::activate` and
//!   `deactivate` report it (`TlbStats::switch_in_walk`).
//! - **Unlink**: the freer clears the parent entry (its own store), then
//!   [`Mmu::unlink_table`] issues a SeqCst fence and reads the space's flush
//!   number into an [`Unlinked`] token.
//! - **Flush with proof**: [`Mmu::flush_tlb_table_proved`] (a new ASN where
//!   the space runs: the hardware walker caches the table itself, so a
//!   page flush does not cover a table; `_page_` and `_mm_` exist too)
//!   takes the next flush number first, then flushes as always and returns
//!   a [`FlushProof`]: the CPUs whose IPI handler ran the
//!   flush's body (`by_ipi`), the CPUs that were not running the space when
//!   the flush decided (`not_running`: covered without an IPI), those that
//!   ran it but slept in their idle loop (`asleep`: skipped, they flush
//!   when they wake, `crate::lazyflush`), and those that never ran it
//!   (`stalled`, when the watchdog gave up).
//! - **Free**: [`TableFreer::free`] consumes the token and a proof of the
//!   same space numbered above the token's (the flush started after the
//!   unlink; anything else is refused and the token handed back). It reads
//!   the space's `walkers` and sends a synchronous no-op call only to the
//!   CPUs the proof does not cover: CPUs neither reached by the flush's IPI
//!   nor idle in the space, and registered foreign walkers the IPI did not
//!   reach. When that set is empty it sends nothing and counts the elision.
//!   On a proof with stalled CPUs, or a failed sync, nothing is freed: the
//!   table waits on the deferred list, freed by a later successful sync of
//!   every other CPU ([`TableFreer::retry`]).
//!
//! # Why it is safe
//!
//! A walk that began before the unlink ran on some CPU X at IPL 7.
//! - If X ran the flush's body (`by_ipi`), it did so outside any walk and
//!   after the unlink (the flush was issued after it), so that walk ended
//!   first.
//! - If X was not running the space when the flush decided, an own-space
//!   walk on X was impossible then, and an own-space walk that starts later
//!   activates the space first (SeqCst on its context word, after the
//!   flush's decision on the same word), so it sees the unlink. A foreign
//!   walk is the store-buffer pattern: the walker sets its bit, fences, reads
//!   the parent entry; the freer clears the parent entry, fences, reads
//!   `walkers`. With both fences at least one sees the other: the freer
//!   sees the bit and syncs X, or the walker sees the unlink and never
//!   reaches the table (tests/loom.rs checks both orders, and that
//!   release/acquire alone is not enough).
//! - If X slept in its idle loop when the flush decided (`asleep`), it was
//!   in no walk (the idle loop sleeps outside any), and a walk it starts
//!   after waking comes after the unlink: the flusher skipped X with a
//!   Release read-modify-write of X's sleep word, after the unlink in
//!   program order, and X's Acquire swap of that word when it wakes reads
//!   it (or a later one of the same release sequence) before X runs
//!   anything (`crate::lazyflush`; a foreign walk it starts later is the
//!   case above, its bit in `walkers`).
//! - Every other CPU gets the no-op call, which it runs outside any walk.

use core::sync::atomic::{AtomicU64, Ordering, fence};

use crate::cpumask::CpuMask;
use crate::platform::ipl;
use crate::tlb::{AddressSpace, Mmu, PAGE_SIZE};
use crate::xcall::{Hooks, XcallError};

/// Which CPUs a proved flush synchronized with. Not `Clone` or `Copy`: one
/// flush, one proof, tied to its space and to when it started.
#[must_use = "a proof is what lets an unlinked table be freed"]
#[derive(Debug)]
pub struct FlushProof {
    space: usize,
    epoch: u64,
    flusher: usize,
    /// The flush itself: Ok, or why it stopped.
    pub result: Result<(), XcallError>,
    by_ipi: CpuMask,
    not_running: CpuMask,
    asleep: CpuMask,
    stalled: CpuMask,
}

impl FlushProof {
    /// Other CPUs whose IPI handler (or a drain) ran the flush's body.
    pub fn by_ipi(&self) -> CpuMask {
        self.by_ipi
    }
    /// Other CPUs not running the space when the flush decided.
    pub fn not_running(&self) -> CpuMask {
        self.not_running
    }
    /// Other CPUs running the space but asleep in their idle loop when the
    /// flush decided: skipped, they flush when they wake.
    pub fn asleep(&self) -> CpuMask {
        self.asleep
    }
    /// CPUs sent the flush that never ran it (the watchdog gave up).
    pub fn stalled(&self) -> CpuMask {
        self.stalled
    }
    /// Whether every CPU the flush was sent to ran it.
    pub fn is_complete(&self) -> bool {
        self.stalled.is_empty()
    }
}

/// A page table unlinked from its space, not yet freed. Not `Clone`.
#[must_use = "an unlinked table must be freed (or it leaks)"]
#[derive(Debug, PartialEq, Eq)]
pub struct Unlinked {
    space: usize,
    epoch: u64,
    /// The caller's name for the table (a frame number, an index).
    pub table: u64,
}

/// A held-off walk of page tables (see the module docs). Holds IPL 7 until
/// dropped.
#[must_use = "the walk lasts as long as the guard"]
pub struct WalkGuard<'a, P: Hooks + 'static, const N: usize> {
    mmu: &'a Mmu<P, N>,
    cpu: usize,
    prev_ipl: u8,
    /// The space walked: the CPU's current one (own walk) or a registered one.
    space: usize,
    foreign: Option<&'a AddressSpace<N>>,
}

impl<P: Hooks + 'static, const N: usize> WalkGuard<'_, P, N> {
    /// The space this walk reads (its address).
    pub fn space(&self) -> usize {
        self.space
    }
}

impl<P: Hooks + 'static, const N: usize> Drop for WalkGuard<'_, P, N> {
    fn drop(&mut self) {
        if let Some(s) = self.foreign {
            // Release: the walk's reads come before the bit's clearing.
            s.walkers.fetch_and(!(1 << self.cpu), Ordering::Release);
        }
        self.mmu.end_walk(self.cpu);
        self.mmu.smp().platform.restore_ipl(self.prev_ipl);
    }
}

impl<P: Hooks + 'static, const N: usize> Mmu<P, N> {
    /// A lockless walk of the calling CPU's current space: every interrupt
    /// held off until the guard drops.
    pub fn walk_own(&self) -> WalkGuard<'_, P, N> {
        let prev_ipl = self.smp().platform.raise_ipl(ipl::HIGH);
        let cpu = self.cpu();
        self.begin_walk(cpu);
        WalkGuard {
            mmu: self,
            cpu,
            prev_ipl,
            space: self.current_space(cpu),
            foreign: None,
        }
    }

    /// A lockless walk of `space`, which the calling CPU need not run:
    /// registered first, so that a free of the space includes this CPU.
    pub fn walk_foreign<'a>(&'a self, space: &'a AddressSpace<N>) -> WalkGuard<'a, P, N> {
        let prev_ipl = self.smp().platform.raise_ipl(ipl::HIGH);
        let cpu = self.cpu();
        space.walkers.fetch_or(1 << cpu, Ordering::SeqCst);
        // The walker's half of the store-buffer pattern (module docs).
        fence(Ordering::SeqCst);
        self.begin_walk(cpu);
        WalkGuard {
            mmu: self,
            cpu,
            prev_ipl,
            space: space as *const _ as usize,
            foreign: Some(space),
        }
    }

    /// Records the unlink of `table` from `space`; the caller has already
    /// cleared the parent entry that pointed to it.
    pub fn unlink_table(&self, space: &AddressSpace<N>, table: u64) -> Unlinked {
        // The freer's half of the store-buffer pattern: the cleared entry
        // before any later read of `walkers`, and before the number.
        fence(Ordering::SeqCst);
        Unlinked {
            space: space as *const _ as usize,
            epoch: Self::flush_epoch(space),
            table,
        }
    }

    fn proved(
        &'static self,
        space: &'static AddressSpace<N>,
        f: impl FnOnce() -> crate::tlb::Coverage,
    ) -> FlushProof {
        let epoch = Self::begin_proved(space);
        let c = f();
        FlushProof {
            space: space as *const _ as usize,
            epoch,
            flusher: self.cpu(),
            result: c.result,
            by_ipi: c.by_ipi,
            not_running: c.not_running,
            asleep: c.asleep,
            stalled: c.stalled,
        }
    }

    /// [`flush_tlb_page`](Mmu::flush_tlb_page), with the proof of whom it
    /// reached.
    pub fn flush_tlb_page_proved(
        &'static self,
        space: &'static AddressSpace<N>,
        va: u64,
        exec: bool,
    ) -> FlushProof {
        let va = va & !(PAGE_SIZE - 1);
        self.proved(space, || {
            self.shoot_space_tracked(Self::page_op(exec), space, va, va + PAGE_SIZE)
        })
    }

    /// The flush that follows a table unlink, with the proof: a new ASN
    /// wherever the space runs (and its context forgotten where it ran),
    /// as [`flush_tlb_mm_proved`](Self::flush_tlb_mm_proved).
    ///
    /// Not a page flush: the hardware's own walker caches the table. EV6
    /// PALcode fills a TB miss by reading the PTE through the virtual page
    /// table, and loads that read's translation (the page of the PTE,
    /// which is the leaf table itself) into the DTB under the space's ASN
    /// (`DTBM_DOUBLE_3` in DEC's `ev6_osf_pal.mar`). A `tbisd` of a data
    /// page leaves it, so the next miss in the table's span would read the
    /// freed table. A new ASN retires every translation of the old one, as
    /// Linux's Alpha `flush_tlb_range` does (it is `flush_tlb_mm`). QEMU
    /// walks the tables physically and shows none of this; the simulator's
    /// TB model does (`tests/sim_ptfree.rs`).
    pub fn flush_tlb_table_proved(&'static self, space: &'static AddressSpace<N>) -> FlushProof {
        self.flush_tlb_mm_proved(space)
    }

    /// [`flush_tlb_mm`](Mmu::flush_tlb_mm), with the proof.
    pub fn flush_tlb_mm_proved(&'static self, space: &'static AddressSpace<N>) -> FlushProof {
        self.proved(space, || {
            self.shoot_space_tracked(crate::tlb::Op::Mm, space, 0, 0)
        })
    }
}

/// Why a free was refused (the token comes back with it).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The proof is of another space.
    OtherSpace,
    /// The proof's flush started before the table was unlinked.
    FlushBeforeUnlink,
    /// The deferred list is full: retry it first.
    DeferredFull,
}

/// What [`TableFreer::free`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Freed {
    /// Freed with no extra IPI: the proof covered every CPU.
    Elided,
    /// Freed after a synchronous no-op call to these CPUs.
    Synced(CpuMask),
    /// Not freed yet: on the deferred list (a stalled flush or sync).
    Deferred,
    /// Not freed: the token is handed back.
    Refused(Unlinked, Refusal),
}

/// Counters of the frees (Relaxed statistics).
#[derive(Default)]
pub struct FreeStats {
    /// Frees whose proof covered every CPU: no sync round.
    pub elided: AtomicU64,
    /// ... of which no CPU needed an IPI at all (the space ran only here).
    pub elided_lazy: AtomicU64,
    /// Sync rounds sent, and the CPUs they went to.
    pub sync_rounds: AtomicU64,
    pub sync_targets: AtomicU64,
    /// Of the sync targets, registered foreign walkers.
    pub sync_foreign: AtomicU64,
    /// Tables put on the deferred list, and freed from it later.
    pub deferred: AtomicU64,
    pub deferred_freed: AtomicU64,
    pub refused: AtomicU64,
}

/// How many unlinked tables may wait for a sync at once.
pub const DEFERRED: usize = 16;

fn nothing(_: usize) {}

/// Frees unlinked page tables of the spaces of one MMU, through `release`
/// (the caller's allocator).
pub struct TableFreer<P: Hooks + 'static, const N: usize> {
    mmu: &'static Mmu<P, N>,
    release: &'static (dyn Fn(u64) + Sync),
    /// Tables waiting for a sync, each with the number of its deferral.
    deferred: spin::Mutex<Deferred>,
    pub stats: FreeStats,
}

struct Deferred {
    next: u64,
    tables: [Option<(u64, Unlinked)>; DEFERRED],
}

impl<P: Hooks + 'static, const N: usize> TableFreer<P, N> {
    pub const fn new(mmu: &'static Mmu<P, N>, release: &'static (dyn Fn(u64) + Sync)) -> Self {
        TableFreer {
            mmu,
            release,
            deferred: spin::Mutex::new(Deferred {
                next: 1,
                tables: [const { None }; DEFERRED],
            }),
            stats: FreeStats {
                elided: AtomicU64::new(0),
                elided_lazy: AtomicU64::new(0),
                sync_rounds: AtomicU64::new(0),
                sync_targets: AtomicU64::new(0),
                sync_foreign: AtomicU64::new(0),
                deferred: AtomicU64::new(0),
                deferred_freed: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            },
        }
    }

    /// Frees `table` once every walk that could have seen it has ended (the
    /// module protocol). Called in task context (it may wait for a sync).
    pub fn free(&self, table: Unlinked, proof: &FlushProof) -> Freed {
        if proof.space != table.space {
            return self.refuse(table, Refusal::OtherSpace);
        }
        if proof.epoch <= table.epoch {
            return self.refuse(table, Refusal::FlushBeforeUnlink);
        }
        if !proof.is_complete() {
            return self.defer(table);
        }
        let smp = self.mmu.smp();
        let me = self.mmu.cpu();
        // SAFETY: tokens and proofs carry the address of a 'static space.
        let space = unsafe { &*(table.space as *const AddressSpace<N>) };
        // After the unlink's fence (program order): the freer's read of the
        // store-buffer pattern.
        let walkers = CpuMask(space.walkers.load(Ordering::SeqCst));
        let covered = CpuMask(proof.by_ipi.0 | proof.not_running.0 | proof.asleep.0);
        let mut need = CpuMask(smp.online().0 & !covered.0);
        let foreign = CpuMask(walkers.0 & !proof.by_ipi.0);
        // The flusher ran the flush in task context, outside any walk, and
        // the proof never carries its bit. This CPU is the flusher or was
        // covered by the flush; it is excluded for the one case left, a CPU
        // that came online after the flush began (it cannot walk a table
        // unlinked before then).
        need = CpuMask(need.0 | foreign.0)
            .without(proof.flusher)
            .without(me);
        if need.is_empty() {
            self.stats.elided.fetch_add(1, Ordering::Relaxed);
            if proof.by_ipi.is_empty() {
                self.stats.elided_lazy.fetch_add(1, Ordering::Relaxed);
            }
            (self.release)(table.table);
            return Freed::Elided;
        }
        self.stats.sync_rounds.fetch_add(1, Ordering::Relaxed);
        self.stats
            .sync_targets
            .fetch_add(need.count() as u64, Ordering::Relaxed);
        self.stats.sync_foreign.fetch_add(
            CpuMask(need.0 & foreign.0).count() as u64,
            Ordering::Relaxed,
        );
        match smp.call_many(need, nothing, 0, true) {
            Ok(()) => {
                (self.release)(table.table);
                Freed::Synced(need)
            }
            Err(_) => self.defer(table),
        }
    }

    fn refuse(&self, table: Unlinked, why: Refusal) -> Freed {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        Freed::Refused(table, why)
    }

    fn defer(&self, table: Unlinked) -> Freed {
        let mut list = self.deferred.lock();
        let seq = list.next;
        match list.tables.iter_mut().find(|e| e.is_none()) {
            Some(slot) => {
                *slot = Some((seq, table));
                list.next += 1;
                self.stats.deferred.fetch_add(1, Ordering::Relaxed);
                Freed::Deferred
            }
            None => {
                drop(list);
                self.refuse(table, Refusal::DeferredFull)
            }
        }
    }

    /// Tables waiting on the deferred list.
    pub fn deferred(&self) -> usize {
        self.deferred
            .lock()
            .tables
            .iter()
            .filter(|e| e.is_some())
            .count()
    }

    /// Syncs with every other online CPU and, if that succeeds, frees every
    /// table deferred before the sync began (each was unlinked before its
    /// deferral, so every walk that could see it has ended once every CPU
    /// ran the no-op; tables deferred meanwhile wait for the next retry).
    /// Returns how many it freed.
    pub fn retry(&self) -> usize {
        let upto = {
            let list = self.deferred.lock();
            if list.tables.iter().all(Option::is_none) {
                return 0;
            }
            list.next
        };
        fence(Ordering::SeqCst);
        let smp = self.mmu.smp();
        let others = smp.online().without(self.mmu.cpu());
        self.stats.sync_rounds.fetch_add(1, Ordering::Relaxed);
        self.stats
            .sync_targets
            .fetch_add(others.count() as u64, Ordering::Relaxed);
        if !others.is_empty() && smp.call_many(others, nothing, 0, true).is_err() {
            return 0;
        }
        let mut freed = 0;
        let mut list = self.deferred.lock();
        for slot in list.tables.iter_mut() {
            if matches!(slot, Some((seq, _)) if *seq < upto)
                && let Some((_, t)) = slot.take()
            {
                (self.release)(t.table);
                freed += 1;
            }
        }
        drop(list);
        self.stats
            .deferred_freed
            .fetch_add(freed as u64, Ordering::Relaxed);
        freed
    }
}
