//! Page tables freed against lockless walkers (`alphasmp::ptfree`) on the
//! simulator: a freer replaces a space's table over and over (new table,
//! relink, unlink the old one, flush with proof, free), while walkers read
//! it locklessly at IPL 7, in their own space and in a space they do not
//! run. Each table slot carries a state word and a generation: a walk that
//! finds its table freed, or freed and reused, under it is a use after free.
//! Over many seeds under the seeded scheduler, and with free-running
//! threads, there must be none; the lazy case, the failed flush and proof
//! misuse are checked too.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};

use alphasmp::cpumask::CpuMask;
use alphasmp::platform::Platform;
use alphasmp::ptfree::{FlushProof, Freed, Refusal, TableFreer, Unlinked};
use alphasmp::sim::{Line, SimPlatform, SimSmp};
use alphasmp::tlb::{AddressSpace, Mmu};

const N: usize = 4;
type SimMmu = Mmu<SimPlatform<N>, N>;
type Freer = TableFreer<SimPlatform<N>, N>;

fn seeds() -> u64 {
    if std::env::var_os("ALPHASMP_LONG").is_some() {
        400
    } else {
        40
    }
}

const SLOTS: usize = 8;
const LIVE: u64 = 1;
const VA: u64 = 0x2000;

/// Page-table pages: a state word, a generation bumped at every free, and
/// the table's content.
struct Tables {
    state: [AtomicU64; SLOTS],
    generation: [AtomicU64; SLOTS],
    word: [AtomicU64; SLOTS],
    /// The space's parent entry: which slot is linked (its "L2 PTE").
    root: AtomicUsize,
    uses_after_free: AtomicU64,
    walks: AtomicU64,
    freed: AtomicU64,
    /// The freer is done: the walkers stop.
    done: std::sync::atomic::AtomicBool,
    /// Walkers that have started (the freer waits for all of them).
    started: AtomicU64,
}

impl Tables {
    fn new() -> &'static Tables {
        let t: &'static Tables = Box::leak(Box::new(Tables {
            state: std::array::from_fn(|_| AtomicU64::new(0)),
            generation: std::array::from_fn(|_| AtomicU64::new(0)),
            word: std::array::from_fn(|_| AtomicU64::new(0)),
            root: AtomicUsize::new(0),
            uses_after_free: AtomicU64::new(0),
            walks: AtomicU64::new(0),
            freed: AtomicU64::new(0),
            done: std::sync::atomic::AtomicBool::new(false),
            started: AtomicU64::new(0),
        }));
        t.state[0].store(LIVE, Relaxed);
        t.word[0].store(0x1000, Relaxed);
        t
    }

    /// The allocator's free: poison, bump the generation, mark free.
    fn release(&self, slot: u64) {
        let s = slot as usize;
        self.word[s].store(0xdead, Relaxed);
        self.generation[s].fetch_add(1, Release);
        self.state[s].store(0, Release);
        self.freed.fetch_add(1, Relaxed);
    }

    /// One lockless walk (the caller holds the walk guard): the linked
    /// table must stay live and the same generation for the whole read.
    fn walk(&self, p: &SimPlatform<N>) {
        let i = self.root.load(Acquire);
        let g1 = self.generation[i].load(Acquire);
        let s1 = self.state[i].load(Acquire);
        // Time passes inside the walk (scheduling points at IPL 7: no
        // interrupt is delivered here).
        p.relax();
        p.relax();
        let w = self.word[i].load(Acquire);
        let s2 = self.state[i].load(Acquire);
        let g2 = self.generation[i].load(Acquire);
        if s1 != LIVE || s2 != LIVE || g1 != g2 || w == 0xdead {
            self.uses_after_free.fetch_add(1, Relaxed);
        }
        self.walks.fetch_add(1, Relaxed);
    }

    /// A free slot for the next table (only the freer allocates).
    fn alloc(&self) -> usize {
        let cur = self.root.load(Relaxed);
        (0..SLOTS)
            .map(|k| (cur + 1 + k) % SLOTS)
            .find(|&k| self.state[k].load(Acquire) == 0)
            .expect("a free table slot (tables deferred too long?)")
    }
}

/// Sets `done` when dropped: the other CPUs stop waiting when the one
/// holding it ends, also if it panics.
struct Done(&'static Tables);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.done.store(true, Release);
    }
}

struct Machine {
    smp: &'static SimSmp<N>,
    mmu: &'static SimMmu,
    freer: &'static Freer,
    tables: &'static Tables,
    space: &'static AddressSpace<N>,
    other: &'static AddressSpace<N>,
}

fn machine(smp: &'static SimSmp<N>) -> Machine {
    let mmu: &'static SimMmu = Box::leak(Box::new(Mmu::new(smp)));
    let tables = Tables::new();
    let release: &'static (dyn Fn(u64) + Sync) = Box::leak(Box::new(move |t| tables.release(t)));
    let freer: &'static Freer = Box::leak(Box::new(TableFreer::new(mmu, release)));
    Machine {
        smp,
        mmu,
        freer,
        tables,
        space: Box::leak(Box::new(AddressSpace::new())),
        other: Box::leak(Box::new(AddressSpace::new())),
    }
}

/// How walkers hold interrupts off.
#[derive(Clone, Copy, PartialEq)]
enum Walk {
    /// The walk guards: IPL 7.
    Guard,
    /// Only the IPI level (own-space walkers only): what the in-interrupt
    /// poll's gate makes safe against interrupts above it.
    IpiLevel,
}

/// CPU 0 replaces the table `rounds` times; meanwhile CPU 1 (and 3, if
/// online) walks its own space (it runs `space`) and CPU 2 walks `space`
/// as a foreign walker (it runs `other`).
fn race(m: &Machine, cpus: usize, rounds: usize) {
    race_walking(m, cpus, rounds, Walk::Guard)
}

fn race_walking(m: &Machine, cpus: usize, rounds: usize, how: Walk) {
    let Machine {
        mmu,
        freer,
        tables,
        space,
        other,
        smp,
    } = *m;
    SimPlatform::run(smp, cpus, move |me| match me {
        0 => {
            // The walkers stop when the freer ends, also if it panics.
            let _done = Done(tables);
            mmu.activate(space);
            while tables.started.load(Acquire) < cpus as u64 - 1 {
                smp.platform.relax();
            }
            for _ in 0..rounds {
                let old = tables.root.load(Relaxed);
                let new = tables.alloc();
                tables.word[new].store(tables.word[old].load(Relaxed) + 1, Relaxed);
                tables.state[new].store(LIVE, Release);
                // Relink: the parent entry now points to the new table.
                tables.root.store(new, Release);
                let token = mmu.unlink_table(space, old as u64);
                let proof = mmu.flush_tlb_page_proved(space, VA, false);
                match freer.free(token, &proof) {
                    Freed::Refused(t, why) => panic!("refused {t:?}: {why:?}"),
                    Freed::Elided | Freed::Synced(_) | Freed::Deferred => {}
                }
                freer.retry();
            }
        }
        1 | 3 => {
            mmu.activate(space);
            tables.started.fetch_add(1, Release);
            while !tables.done.load(Acquire) {
                if how == Walk::IpiLevel {
                    let p = &smp.platform;
                    let prev = p.raise_ipl(p.ipi_ipl());
                    tables.walk(p);
                    p.restore_ipl(prev);
                } else {
                    let g = mmu.walk_own();
                    tables.walk(&smp.platform);
                    drop(g);
                }
                smp.platform.relax();
            }
        }
        _ => {
            mmu.activate(other);
            tables.started.fetch_add(1, Release);
            while !tables.done.load(Acquire) {
                let g = mmu.walk_foreign(space);
                tables.walk(&smp.platform);
                drop(g);
                smp.platform.relax();
            }
        }
    });
}

#[test]
fn walkers_never_see_a_freed_table() {
    let (mut walks, mut freed, mut elided, mut synced) = (0, 0, 0, 0);
    for seed in 0..seeds() {
        for cpus in [3, 4] {
            let smp: &'static SimSmp<N> = SimPlatform::seeded(Line::Latch, 7, 2, cpus, seed);
            let m = machine(smp);
            race(&m, cpus, 12);
            let t = m.tables;
            assert_eq!(
                t.uses_after_free.load(Relaxed),
                0,
                "seed {seed}, {cpus} CPUs: a walker used a freed table"
            );
            walks += t.walks.load(Relaxed);
            freed += t.freed.load(Relaxed);
            elided += m.freer.stats.elided.load(Relaxed);
            synced += m.freer.stats.sync_rounds.load(Relaxed);
            assert_eq!(m.freer.deferred(), 0, "a latching line defers nothing");
            assert_eq!(
                m.mmu
                    .stats
                    .iter()
                    .map(|s| s.switch_in_walk.load(Relaxed))
                    .sum::<u64>(),
                0
            );
        }
    }
    eprintln!("{walks} walks, {freed} tables freed, {elided} syncs elided, {synced} sync rounds");
    assert!(freed > 0 && walks > 0);
    assert!(synced > 0, "the foreign walker never needed a sync");
}

#[test]
fn walkers_never_see_a_freed_table_with_free_running_threads() {
    for _ in 0..if std::env::var_os("ALPHASMP_LONG").is_some() {
        40
    } else {
        6
    } {
        let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 7, 2, 4);
        let m = machine(smp);
        race(&m, 4, 300);
        assert_eq!(m.tables.uses_after_free.load(Relaxed), 0);
        assert!(m.tables.freed.load(Relaxed) >= 290);
    }
}

/// Walkers that mask only IPIs (IPL 5 on EV6/EV7) are safe too, but only
/// because the in-interrupt poll is gated: a performance-counter interrupt
/// (IPL 6) inside such a walk must not run the flush there, or the flush's
/// proof would name a CPU still inside a walk of the freed table.
#[test]
fn walks_masking_only_ipis_rely_on_the_gated_poll() {
    let mut perf = 0;
    for seed in 0..seeds() {
        let smp: &'static SimSmp<N> = SimPlatform::seeded(Line::Latch, 7, 2, 2, seed);
        smp.platform
            .ipi_ipl
            .store(alphasmp::platform::ipl::IPI_OSF_PALCODE, Relaxed);
        smp.platform.perf_every.store(2, Relaxed);
        smp.policy.poll_in_irq.store(true, Relaxed);
        let m = machine(smp);
        race_walking(&m, 2, 12, Walk::IpiLevel);
        assert_eq!(
            m.tables.uses_after_free.load(Relaxed),
            0,
            "seed {seed}: a walker at the IPI level used a freed table"
        );
        perf += smp.platform.cpus[1].perf_interrupts.load(Relaxed);
    }
    assert!(perf > 0);
}

/// The space runs only on the freer's CPU and nobody walks it: the flush
/// sends no IPI, and the free needs none either (the lazy case); a foreign
/// walker registered on another CPU gets exactly one sync.
#[test]
fn a_space_used_only_here_frees_without_any_ipi() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 2);
    let m = machine(smp);
    let Machine {
        mmu, freer, space, ..
    } = m;
    SimPlatform::run(smp, 1, move |_| {
        mmu.activate(space);
        let token = mmu.unlink_table(space, 0);
        let proof = mmu.flush_tlb_mm_proved(space);
        assert!(proof.by_ipi().is_empty() && proof.not_running() == CpuMask::single(1));
        assert_eq!(freer.free(token, &proof), Freed::Elided);
    });
    assert_eq!(freer.stats.elided_lazy.load(Relaxed), 1);
    assert_eq!(
        smp.cpu(1).stats.calls_run.load(Relaxed),
        0,
        "no IPI to CPU 1"
    );
}

/// A flush that stalls (a lost IPI, no fix): nothing is freed, the table
/// waits on the deferred list; once the line "heals" (the poll rescues
/// the lost message) a retry frees it; no walker ever saw it freed.
#[test]
fn a_failed_flush_defers_the_free_until_a_sync_succeeds() {
    let mut deferred_runs = 0;
    for seed in 0..seeds() {
        let smp: &'static SimSmp<N> = SimPlatform::seeded(Line::LossyEdge, 3, 6, 3, seed);
        smp.policy.watchdog_cycles.store(400, Relaxed);
        smp.policy.abort_after.store(1, Relaxed);
        let m = machine(smp);
        // Fewer rounds than table slots: every deferred table keeps its slot.
        race(&m, 3, SLOTS / 2);
        let t = m.tables;
        assert_eq!(t.uses_after_free.load(Relaxed), 0, "seed {seed}");
        if m.freer.stats.deferred.load(Relaxed) > 0 {
            deferred_runs += 1;
            // Heal: the poll finds what the lossy line dropped.
            smp.policy.poll_in_irq.store(true, Relaxed);
            let freer = m.freer;
            SimPlatform::run(smp, 3, move |me| {
                if me == 0 {
                    while freer.deferred() > 0 {
                        freer.retry();
                        smp.platform.relax();
                    }
                }
            });
            assert_eq!(
                m.freer.deferred(),
                0,
                "seed {seed}: still deferred after healing"
            );
            assert!(m.freer.stats.deferred_freed.load(Relaxed) > 0);
        }
    }
    eprintln!("{deferred_runs}/{} seeds deferred a free", seeds());
    assert!(
        deferred_runs > 0,
        "no flush ever stalled: the failure path is not exercised"
    );
}

/// A free without a flush after the unlink, or with another space's proof,
/// is refused and the token handed back.
#[test]
fn proof_misuse_is_refused() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 1);
    let m = machine(smp);
    let Machine {
        mmu,
        freer,
        space,
        other,
        tables,
        ..
    } = m;
    SimPlatform::run(smp, 1, move |_| {
        mmu.activate(space);
        let early = mmu.flush_tlb_mm_proved(space);
        let token = mmu.unlink_table(space, 5);
        let Freed::Refused(token, why) = freer.free(token, &early) else {
            panic!("a flush from before the unlink was accepted");
        };
        assert_eq!(why, Refusal::FlushBeforeUnlink);
        let wrong = mmu.flush_tlb_mm_proved(other);
        let Freed::Refused(token, why) = freer.free(token, &wrong) else {
            panic!("another space's flush was accepted");
        };
        assert_eq!(why, Refusal::OtherSpace);
        let right = mmu.flush_tlb_mm_proved(space);
        assert_eq!(freer.free(token, &right), Freed::Elided);
    });
    assert_eq!(tables.freed.load(Relaxed), 1);
    assert_eq!(freer.stats.refused.load(Relaxed), 2);
}

/// Switching spaces inside a walk is reported, not silent.
#[test]
fn a_switch_inside_a_walk_is_caught() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 1);
    let m = machine(smp);
    let Machine {
        mmu, space, other, ..
    } = m;
    SimPlatform::run(smp, 1, move |_| {
        mmu.activate(space);
        let g = mmu.walk_own();
        mmu.activate(other);
        drop(g);
    });
    assert_eq!(mmu.stats[0].switch_in_walk.load(Relaxed), 1);
    assert_eq!(smp.platform.corruptions.load(Relaxed), 1);
}

/// The proof names whom the flush reached, and how: the CPU running the
/// space by IPI, the one running another space as not running it; a walk
/// guard names the space it walks.
#[test]
fn a_proof_names_whom_the_flush_reached() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 3);
    let m = machine(smp);
    let Machine {
        mmu,
        space,
        other,
        tables,
        ..
    } = m;
    SimPlatform::run(smp, 3, move |me| match me {
        0 => {
            let _done = Done(tables);
            mmu.activate(space);
            while tables.started.load(Acquire) < 2 {
                smp.platform.relax();
            }
            let proof = mmu.flush_tlb_mm_proved(space);
            assert_eq!(proof.result, Ok(()));
            assert_eq!(proof.by_ipi(), CpuMask::single(1));
            assert_eq!(proof.not_running(), CpuMask::single(2));
            assert!(proof.stalled().is_empty() && proof.is_complete());
            let addr = space as *const _ as usize;
            assert_eq!(mmu.walk_own().space(), addr);
            assert_eq!(mmu.walk_foreign(space).space(), addr);
            tables.done.store(true, Release);
        }
        _ => {
            mmu.activate(if me == 1 { space } else { other });
            tables.started.fetch_add(1, Release);
            while !tables.done.load(Acquire) {
                smp.platform.relax();
            }
        }
    });
}

/// A flush whose IPI is lost (the target waits at IPL 7 on a line that
/// drops IPIs to masked CPUs) gives up at the watchdog: its proof names the
/// target as stalled and is not complete, and the free defers; once the
/// target lowers its IPL and the poll finds the message, a retry frees it.
#[test]
fn a_stalled_flush_is_named_in_its_proof() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::LossyEdgeMasked, 5, 1, 2);
    smp.policy.watchdog_cycles.store(20_000_000, Relaxed);
    smp.policy.abort_after.store(1, Relaxed);
    let m = machine(smp);
    let Machine {
        mmu,
        freer,
        space,
        tables,
        ..
    } = m;
    SimPlatform::run(smp, 2, move |me| {
        if me == 0 {
            let _done = Done(tables);
            mmu.activate(space);
            while tables.started.load(Acquire) < 1 {
                smp.platform.relax();
            }
            let token = mmu.unlink_table(space, 3);
            let proof = mmu.flush_tlb_page_proved(space, VA, false);
            assert!(proof.result.is_err(), "the lost IPI must stall the flush");
            assert_eq!(proof.stalled(), CpuMask::single(1));
            assert!(!proof.is_complete());
            assert!(proof.by_ipi().is_empty());
            assert_eq!(freer.free(token, &proof), Freed::Deferred);
            assert_eq!(tables.freed.load(Relaxed), 0);
            // CPU 1 still holds IPL 7: a retry's sync cannot reach it, so
            // nothing may be freed yet.
            assert_eq!(freer.retry(), 0, "a retry freed without a sync");
            assert_eq!(freer.deferred(), 1);
            tables.done.store(true, Release);
            smp.policy.poll_in_irq.store(true, Relaxed);
            while freer.retry() == 0 {
                smp.platform.relax();
            }
            assert_eq!(tables.freed.load(Relaxed), 1);
        } else {
            mmu.activate(space);
            let p = &smp.platform;
            let prev = p.raise_ipl(alphasmp::platform::ipl::HIGH);
            tables.started.fetch_add(1, Release);
            while !tables.done.load(Acquire) {
                p.relax();
            }
            p.restore_ipl(prev);
        }
    });
}

/// The proved page flush drops the page it names (at an address inside the
/// page, with bit 13 set), like `flush_tlb_page`, on this CPU and on one
/// running the space.
#[test]
fn a_proved_page_flush_drops_its_page_everywhere() {
    use alphasmp::sim::PageTable;
    const PAGE: u64 = 0x2_0000_6000;
    const F1: u64 = 0x100;
    const F2: u64 = 0x200;
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 2);
    let m = machine(smp);
    let Machine {
        mmu, space, tables, ..
    } = m;
    let pt: &'static PageTable = Box::leak(Box::new(PageTable::new()));
    pt.map(PAGE, F1);
    SimPlatform::run(smp, 2, move |me| {
        mmu.activate(space);
        assert_eq!(smp.platform.read(pt, PAGE + 0x123), Some(F1));
        tables.started.fetch_add(1, Release);
        if me == 0 {
            // CPU 1 stops waiting when this ends, also if it panics.
            let _done = Done(tables);
            while tables.started.load(Acquire) < 2 {
                smp.platform.relax();
            }
            pt.map(PAGE, F2);
            let proof = mmu.flush_tlb_page_proved(space, PAGE + 0x123, false);
            assert_eq!(proof.result, Ok(()));
            assert_eq!(smp.platform.read(pt, PAGE + 0x123), Some(F2), "CPU 0");
        } else {
            while !tables.done.load(Acquire) {
                smp.platform.relax();
            }
            assert_eq!(smp.platform.read(pt, PAGE + 0x123), Some(F2), "CPU 1");
        }
    });
}

/// How the freer flushes after an unlink, in the test below.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TableFlush {
    /// A page flush of the page the test touched (what the kernel's
    /// callers did).
    Page,
    /// `flush_tlb_table_proved`.
    Table,
}

/// CPU 1 runs the space and has read a page of a span (its walker caches
/// the span's leaf table, as EV6 PALcode's virtual-PTE fill does); CPU 0
/// copies the table, relinks, unlinks, flushes as `how` says, frees the
/// old table when the freer allows. Then CPU 1 reads the same page and
/// another of the span. Returns what CPU 1 read.
fn after_table_free(how: TableFlush, seed: u64) -> [Option<u64>; 2] {
    use alphasmp::sim::PageTable;
    const A: u64 = 0x4_0000_2000;
    const B: u64 = A + 5 * 0x2000;
    let smp: &'static SimSmp<N> = SimPlatform::seeded(Line::Latch, 0, 0, 2, seed);
    let m = machine(smp);
    let Machine {
        mmu,
        freer,
        space,
        tables,
        ..
    } = m;
    let pt: &'static PageTable = Box::leak(Box::new(PageTable::new()));
    pt.map(A, 0x100);
    pt.map(B, 0x200);
    let out = SimPlatform::run(smp, 2, move |me| {
        mmu.activate(space);
        if me == 1 {
            assert_eq!(smp.platform.read(pt, A), Some(0x100));
            tables.started.fetch_add(1, Release);
            while !tables.done.load(Acquire) {
                smp.platform.relax();
            }
            [smp.platform.read(pt, A), smp.platform.read(pt, B)]
        } else {
            let _done = Done(tables);
            while tables.started.load(Acquire) < 1 {
                smp.platform.relax();
            }
            let old = pt.relink_table(A);
            let token = mmu.unlink_table(space, old);
            let proof = match how {
                TableFlush::Page => mmu.flush_tlb_page_proved(space, A, false),
                TableFlush::Table => mmu.flush_tlb_table_proved(space),
            };
            assert_eq!(proof.result, Ok(()));
            match freer.free(token, &proof) {
                Freed::Elided | Freed::Synced(_) => pt.free_table(old),
                other => panic!("{how:?}: the free did not happen: {other:?}"),
            }
            [None, None]
        }
    });
    out[1]
}

/// The hardware walker's cache of a leaf table: after a table is replaced
/// and freed, a CPU that ran the space must not fill a translation
/// through the old table. A page flush leaves the walker's cached table
/// (another virtual page than the one flushed), and the model shows the
/// fill reading poison; the table flush gives the space a new ASN there,
/// and the fills read the new table. The kernel's callers used the page
/// flush; on a real EV6 their walkers would have read the freed table.
#[test]
fn a_table_flush_retires_the_walkers_cached_table() {
    use alphasmp::sim::POISON_FRAME;
    for seed in 0..4 {
        let [a, b] = after_table_free(TableFlush::Page, seed);
        // The flushed page misses and fills through the stale table, and
        // so does every other page of the span.
        assert_eq!(
            (a, b),
            (Some(POISON_FRAME), Some(POISON_FRAME)),
            "seed {seed}: the model must show the page flush's hole"
        );
        let fresh = after_table_free(TableFlush::Table, seed);
        assert_eq!(fresh, [Some(0x100), Some(0x200)], "seed {seed}");
    }
}

/// A foreign walk leaves no trace: once its guard is dropped the space's
/// walker mask is clear again, and a free after it needs no sync.
#[test]
fn a_finished_foreign_walk_costs_the_free_nothing() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 2);
    let m = machine(smp);
    let Machine {
        mmu,
        freer,
        space,
        other,
        tables,
        ..
    } = m;
    SimPlatform::run(smp, 2, move |me| {
        if me == 1 {
            mmu.activate(other);
            drop(mmu.walk_foreign(space));
            drop(mmu.walk_foreign(space));
            tables.started.fetch_add(1, Release);
        } else {
            mmu.activate(space);
            while tables.started.load(Acquire) < 1 {
                smp.platform.relax();
            }
            assert!(space.walkers().is_empty(), "{:?}", space.walkers());
            let token = mmu.unlink_table(space, 2);
            let proof = mmu.flush_tlb_mm_proved(space);
            assert_eq!(freer.free(token, &proof), Freed::Elided);
        }
    });
}

/// The lazy case from a CPU other than 0: the freer (and flusher) is never
/// among the CPUs it syncs with.
#[test]
fn the_freer_never_syncs_with_itself() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 3);
    let m = machine(smp);
    let Machine {
        mmu, freer, space, ..
    } = m;
    SimPlatform::run_on(smp, CpuMask::single(2), move |_| {
        mmu.activate(space);
        let token = mmu.unlink_table(space, 1);
        let proof = mmu.flush_tlb_mm_proved(space);
        assert_eq!(freer.free(token, &proof), Freed::Elided);
    });
    assert_eq!(freer.stats.sync_rounds.load(Relaxed), 0);
    assert_eq!(freer.stats.elided_lazy.load(Relaxed), 1);
}

/// A proof handed to another CPU: CPU 1 flushes, CPU 2 frees. The flusher
/// ran the flush itself (it was walking nothing then) and the freer was
/// reached by the flush's IPI, so the free needs no sync, in particular
/// none to the flusher, whose bit the proof never carries.
#[test]
fn a_proof_freed_on_another_cpu_needs_no_sync_with_the_flusher() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 3);
    let m = machine(smp);
    let Machine {
        mmu,
        freer,
        space,
        tables,
        ..
    } = m;
    type Handoff = std::sync::Mutex<Option<(Unlinked, FlushProof)>>;
    let handoff: &'static Handoff = Box::leak(Box::new(std::sync::Mutex::new(None)));
    SimPlatform::run_on(smp, CpuMask(0b110), move |me| {
        mmu.activate(space);
        if me == 1 {
            while tables.started.load(Acquire) < 1 {
                smp.platform.relax();
            }
            let token = mmu.unlink_table(space, 3);
            let proof = mmu.flush_tlb_mm_proved(space);
            assert_eq!(proof.by_ipi(), CpuMask::single(2));
            *handoff.lock().unwrap() = Some((token, proof));
            while !tables.done.load(Acquire) {
                smp.platform.relax();
            }
        } else {
            let _done = Done(tables);
            tables.started.fetch_add(1, Release);
            let (token, proof) = loop {
                if let Some(p) = handoff.lock().unwrap().take() {
                    break p;
                }
                smp.platform.relax();
            };
            assert_eq!(freer.free(token, &proof), Freed::Elided);
        }
    });
    assert_eq!(freer.stats.sync_rounds.load(Relaxed), 0);
    assert_eq!(freer.stats.elided.load(Relaxed), 1);
}

/// A foreign walker the flush could not reach (it runs another space) is
/// the one CPU the free syncs with, and the statistics say so: one round,
/// one target, one of them foreign.
#[test]
fn an_ongoing_foreign_walk_gets_exactly_one_sync() {
    let smp: &'static SimSmp<N> = SimPlatform::machine(Line::Latch, 0, 0, 2);
    let m = machine(smp);
    let Machine {
        mmu,
        freer,
        space,
        other,
        tables,
        ..
    } = m;
    SimPlatform::run(smp, 2, move |me| {
        if me == 1 {
            mmu.activate(other);
            let guard = mmu.walk_foreign(space);
            tables.started.fetch_add(1, Release);
            // Hold the walk until the free has begun its sync round.
            while freer.stats.sync_rounds.load(Acquire) == 0 {
                smp.platform.relax();
            }
            drop(guard);
        } else {
            mmu.activate(space);
            while tables.started.load(Acquire) < 1 {
                smp.platform.relax();
            }
            let token = mmu.unlink_table(space, 4);
            let proof = mmu.flush_tlb_mm_proved(space);
            assert_eq!(proof.not_running(), CpuMask::single(1));
            assert_eq!(freer.free(token, &proof), Freed::Synced(CpuMask::single(1)));
        }
    });
    assert_eq!(freer.stats.sync_rounds.load(Relaxed), 1);
    assert_eq!(freer.stats.sync_targets.load(Relaxed), 1);
    assert_eq!(freer.stats.sync_foreign.load(Relaxed), 1);
    assert_eq!(freer.stats.elided.load(Relaxed), 0);
}
