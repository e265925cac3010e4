//! Page tables freed against lockless walkers on the real MMU
//! (`alphasmp::ptfree`): CPU 0 replaces the test window's L3 table over and
//! over (copy it into a spare page, relink the L2 entry, unlink the old
//! table, flush with proof, free: poison it and keep it for reuse), while
//! every other CPU walks the live page table in software at IPL 7 (one of
//! them, on 3 CPUs or more, as a foreign walker of a space it does not run)
//! and the own-space walkers also read the page through their TLBs. No walk
//! may meet a poisoned or torn entry or read the wrong data; afterwards the
//! page is repointed and every CPU must see the new frame.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alphasmp::ptfree::{Freed, TableFreer};
use alphasmp::tlb::AddressSpace;
use alphasmp_bootargs::BootConfig;

use crate::console::println;
use crate::percpu::MAX_CPUS;
use crate::platform::{AlphaPlatform, MMU};
use crate::run::selftest::{Failure, Outcome, check, check_eq};
use crate::{clock, mm, smp};

/// The space the window belongs to for this test, and one a foreign walker
/// runs instead.
static SPACE: AddressSpace<MAX_CPUS> = AddressSpace::new();
static OTHER: AddressSpace<MAX_CPUS> = AddressSpace::new();

/// Window page under test.
const PAGE: u64 = 9;
/// What a freed table is filled with (a valid-looking PTE no table holds).
const POISON: u64 = 0xdead_beef_0000_0001;
const MARK: u64 = 0x7ab1_e000_0000_0001;
const MARK_NEW: u64 = 0x7ab1_e000_0000_0002;
/// Spare L3 pages: the freer takes one for each replacement and the free
/// gives the old one back.
const SPARES: usize = 4;

/// Freed (poisoned) L3 pages, as KSEG addresses; 0: empty slot.
static POOL: spin::Mutex<[u64; SPARES + 1]> = spin::Mutex::new([0; SPARES + 1]);

/// The allocator's free: poison the whole table, keep it for reuse.
fn release(pfn: u64) {
    let page = crate::hwrpb::KSEG | (pfn << 13);
    for i in 0..mm::USER_PAGES {
        // SAFETY: `page` is one of this test's L3 pages, unlinked, and the
        // free only runs once no walker can reach it (the proof).
        unsafe { core::ptr::write_volatile((page + 8 * i) as *mut u64, POISON) };
    }
    crate::pal::mb();
    let mut pool = POOL.lock();
    if let Some(slot) = pool.iter_mut().find(|p| **p == 0) {
        *slot = page;
    }
}

static FREER: TableFreer<AlphaPlatform, MAX_CPUS> = TableFreer::new(&MMU, &release);

/// What the walkers share with the freer.
struct Run {
    done: AtomicBool,
    foreign_cpu: usize,
    walks: AtomicU64,
    foreign_walks: AtomicU64,
    poisoned: AtomicU64,
    torn: AtomicU64,
    wrong_data: AtomicU64,
    ready: AtomicU64,
}

fn walker(me: usize, ctx: usize) -> u64 {
    // SAFETY: the test passes the address of its `Run`, alive until every
    // walker has returned (run_on_cpus_with waits for them).
    let run = unsafe { &*(ctx as *const Run) };
    let foreign = me == run.foreign_cpu;
    MMU.activate(if foreign { &OTHER } else { &SPACE });
    run.ready.fetch_add(1, Ordering::AcqRel);
    while !run.done.load(Ordering::Acquire) {
        let guard = if foreign {
            MMU.walk_foreign(&SPACE)
        } else {
            MMU.walk_own()
        };
        let (l3, pte) = mm::walk(PAGE);
        // Time inside the walk, then the same entry again from the same
        // table: a free under the walk shows as poison or a change. The
        // foreign walk lasts longer than a flush, so that a free which
        // forgot it would land inside it.
        if foreign {
            clock::delay_ns(40_000);
        } else {
            for _ in 0..50 {
                core::hint::spin_loop();
            }
        }
        // SAFETY: `l3` is a page-table page of this test (never returned to
        // the heap); PAGE is within it.
        let again = unsafe { core::ptr::read_volatile((l3 + 8 * PAGE) as *const u64) };
        if pte == POISON || again == POISON {
            run.poisoned.fetch_add(1, Ordering::Relaxed);
        } else if pte != again {
            run.torn.fetch_add(1, Ordering::Relaxed);
        } else if !foreign && mm::read(PAGE) != MARK {
            run.wrong_data.fetch_add(1, Ordering::Relaxed);
        }
        drop(guard);
        if foreign {
            run.foreign_walks.fetch_add(1, Ordering::Relaxed);
        } else {
            run.walks.fetch_add(1, Ordering::Relaxed);
        }
    }
    0
}

fn take_spare() -> Option<u64> {
    let mut pool = POOL.lock();
    let slot = pool.iter_mut().find(|p| **p != 0)?;
    Some(core::mem::take(slot))
}

fn freer(run: &Run, rounds: u64) -> Result<u64, Failure> {
    let mut deferred = 0;
    for i in 0..rounds {
        let new = match take_spare() {
            Some(p) => p,
            None => {
                FREER.retry();
                take_spare().ok_or_else(|| {
                    Failure(alloc::format!(
                        "round {i}: every spare table is waiting to be freed"
                    ))
                })?
            }
        };
        let old = mm::l3();
        for k in 0..mm::USER_PAGES {
            // SAFETY: `old` is the live L3 table and `new` a spare one, both
            // pages of this test; only this CPU writes tables.
            unsafe {
                let v = core::ptr::read_volatile((old + 8 * k) as *const u64);
                core::ptr::write_volatile((new + 8 * k) as *mut u64, v);
            }
        }
        let unlinked = mm::relink_l3(new);
        check!(
            unlinked == old,
            "round {i}: the window's L3 changed under the freer"
        );
        let token = MMU.unlink_table(&SPACE, mm::pfn(old));
        // A new ASN where the space runs, not a page flush: EV6 PALcode's
        // fills cache the leaf table's own translation
        // (`Mmu::flush_tlb_table_proved`).
        let proof = MMU.flush_tlb_table_proved(&SPACE);
        match FREER.free(token, &proof) {
            Freed::Elided | Freed::Synced(_) => {}
            Freed::Deferred => deferred += 1,
            Freed::Refused(t, why) => {
                return Err(Failure(alloc::format!(
                    "round {i}: free of {t:?} refused: {why:?}"
                )));
            }
        }
    }
    run.done.store(true, Ordering::Release);
    Ok(deferred)
}

pub fn replace_l3_under_walkers(cfg: &BootConfig<'_>) -> Outcome {
    let rounds = cfg.ptfree_rounds;
    // The spares: fresh zeroed pages from the heap, never returned to it.
    {
        let mut pool = POOL.lock();
        for slot in pool.iter_mut().take(SPARES) {
            if *slot == 0 {
                *slot = mm::alloc_page();
            }
        }
    }
    let frame = mm::alloc_page();
    // SAFETY: a fresh page of this test.
    unsafe { core::ptr::write_volatile(frame as *mut u64, MARK) };
    mm::set(PAGE, Some(frame));
    MMU.activate(&SPACE);
    MMU.flush_tlb_page(&SPACE, mm::va(PAGE), false)
        .map_err(|e| Failure(alloc::format!("priming flush: {e}")))?;
    let online = smp::online();
    let run = Run {
        done: AtomicBool::new(false),
        foreign_cpu: if online.count() >= 3 {
            online.iter().last().unwrap_or(usize::MAX)
        } else {
            usize::MAX
        },
        walks: AtomicU64::new(0),
        foreign_walks: AtomicU64::new(0),
        poisoned: AtomicU64::new(0),
        torn: AtomicU64::new(0),
        wrong_data: AtomicU64::new(0),
        ready: AtomicU64::new(0),
    };
    let walkers = online.without(crate::cpus::this());
    let stats = &FREER.stats;
    let (elided0, rounds0, targets0, foreign0) = (
        stats.elided.load(Ordering::Relaxed),
        stats.sync_rounds.load(Ordering::Relaxed),
        stats.sync_targets.load(Ordering::Relaxed),
        stats.sync_foreign.load(Ordering::Relaxed),
    );
    let t0 = clock::now_ns();
    let ctx = &raw const run as usize;
    // The walkers run in their task slots while this CPU replaces tables;
    // post them, replace, then collect.
    let since = crate::clock::cycles();
    let bound = clock::ns_to_cycles(120_000_000_000);
    for cpu in walkers.iter() {
        crate::platform::SMP
            .post_task(cpu, walker, ctx, since, bound)
            .map_err(|e| Failure(alloc::format!("walker on CPU {cpu} not posted: {e:?}")))?;
    }
    let start = clock::now_ns();
    while run.ready.load(Ordering::Acquire) < walkers.count() as u64
        && clock::now_ns() < start + 5_000_000_000
    {
        clock::pause_since(start);
    }
    let deferred = freer(&run, rounds);
    run.done.store(true, Ordering::Release);
    for cpu in walkers.iter() {
        crate::platform::SMP
            .collect_task(cpu, since, bound)
            .map_err(|e| Failure(alloc::format!("walker on CPU {cpu} did not end: {e:?}")))?;
    }
    let deferred = deferred?;
    let ms = (clock::now_ns() - t0) / 1_000_000;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "  ptfree: {rounds} L3 replacements in {ms} ms under {} own-space and {} foreign walks; sync rounds elided {}, sent {} (to {} CPU(s), {} of them foreign walkers), deferred {deferred}",
        n(&run.walks),
        n(&run.foreign_walks),
        n(&stats.elided) - elided0,
        n(&stats.sync_rounds) - rounds0,
        n(&stats.sync_targets) - targets0,
        n(&stats.sync_foreign) - foreign0,
    );
    check_eq!(
        n(&run.poisoned),
        0,
        "walks that met a freed (poisoned) table"
    );
    check_eq!(n(&run.torn), 0, "walks whose entry changed under them");
    check_eq!(
        n(&run.wrong_data),
        0,
        "reads through the TLB of the wrong data"
    );
    check!(
        walkers.is_empty() || n(&run.walks) + n(&run.foreign_walks) > 0,
        "no walk ran: the test shows nothing"
    );
    // Every CPU sees the new frame through the last replacement's table.
    let new = mm::alloc_page();
    // SAFETY: a fresh page of this test.
    unsafe { core::ptr::write_volatile(new as *mut u64, MARK_NEW) };
    mm::set(PAGE, Some(new));
    MMU.flush_tlb_page(&SPACE, mm::va(PAGE), false)
        .map_err(|e| Failure(alloc::format!("final flush: {e}")))?;
    let seen = smp::run_on_cpus(online, read_new, 5_000_000_000)
        .map_err(|c| Failure(alloc::format!("CPU {c} did not read")))?;
    for c in online.iter() {
        check_eq!(seen[c], MARK_NEW, "CPU {c} reads the new frame");
    }
    Ok(())
}

fn read_new(_: usize) -> u64 {
    MMU.activate(&SPACE);
    mm::read(PAGE)
}
