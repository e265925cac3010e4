//! TLB shootdown and ASN handling (src/tlb.rs) on the simulated machine.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use alphasmp::cpumask::CpuMask;
use alphasmp::platform::Platform;
use alphasmp::sim::{Line, PageTable, SIM_CPUS, SimPlatform, SimSmp};
use alphasmp::tlb::{self, AddressSpace, Mmu, PAGE_SIZE, RANGE_PAGE_LIMIT};

type SimMmu = Mmu<SimPlatform, SIM_CPUS>;

fn setup() -> (&'static SimSmp, &'static SimMmu) {
    let smp = SimPlatform::machine(Line::Latch, 0, 0, SIM_CPUS);
    let mmu: &'static SimMmu = Box::leak(Box::new(Mmu::new(smp)));
    (smp, mmu)
}

fn space() -> &'static AddressSpace<SIM_CPUS> {
    Box::leak(Box::new(AddressSpace::new()))
}

/// The page the TLB-model tests use, and its frames: F1 holds the old
/// instructions, F2 the new ones.
const VA: u64 = 0x2_0000_4000;
const F1: u64 = 0x100;
const F2: u64 = 0x200;
const OLD_CODE: u64 = 0xaaaa;
const NEW_CODE: u64 = 0xbbbb;

fn stat(mmu: &SimMmu, cpu: usize, f: fn(&tlb::TlbStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    f(&mmu.stats[cpu]).load(Relaxed)
}

/// Every CPU activates `s`; CPU 0 waits for that, then runs `flush`.
fn all_active_then(
    smp: &'static SimSmp,
    mmu: &'static SimMmu,
    s: &'static AddressSpace<SIM_CPUS>,
    flush: fn(&'static SimMmu, &'static AddressSpace<SIM_CPUS>),
) {
    SimPlatform::run(smp, SIM_CPUS, move |me| {
        mmu.activate(s);
        if me == 0 {
            while s.active() != CpuMask::first(SIM_CPUS) {
                std::thread::yield_now();
            }
            flush(mmu, s);
        }
    });
}

/// A console that reports more ASNs than EV6/EV7 PALcode keeps (it masks
/// the PCB's ASN with 0xff): the MMU must roll its ASN version over at 255,
/// or an ASN comes round again within one version and two spaces share
/// stale translations (docs/hardware.md, "Known risks on real machines":
/// `max_asn` trusted). Activates 600 spaces on one CPU with `max_asn` 1023:
/// no hardware ASN is handed out twice between two rollovers, each
/// rollover flushed the process TLB entries, and the whole run is the one
/// `max_asn` 255 gives. (Seen failing with the clamp replaced by
/// `max(1)`: ASN 0x01 came round again without a rollover.)
#[test]
fn a_max_asn_above_255_is_capped() {
    fn run(max_asn: u64) -> (Vec<u64>, u64) {
        let (smp, mmu) = setup();
        mmu.set_max_asn(max_asn);
        let out = SimPlatform::run(smp, 1, move |_| {
            let mut asns = Vec::new();
            let mut version = std::collections::HashSet::new();
            let mut rolled = 0;
            for _ in 0..600 {
                let asn = mmu.activate(space());
                let now = stat(mmu, 0, |s| &s.rollovers);
                if now != rolled {
                    rolled = now;
                    version.clear();
                }
                assert!(
                    version.insert(asn),
                    "max_asn {max_asn}: hardware ASN {asn:#04x} handed out twice in one version"
                );
                asns.push(asn);
            }
            assert!(
                stat(mmu, 0, |s| &s.tbiap) >= rolled,
                "a rollover without tbiap"
            );
            (asns, rolled)
        });
        out.into_iter().next().expect("CPU 0's run")
    }
    let (asns, rollovers) = run(1023);
    assert!(rollovers >= 2, "{rollovers} rollovers in 600 activations");
    assert_eq!((asns, rollovers), run(255), "max_asn 1023 acts as 255");
}

/// ASN rollover, seen through the TLB model. With 63 hardware ASNs, CPU 0
/// runs space A (ASN x) and reads and executes a page of it, then takes
/// new ASNs until the hardware ASNs wrap and a space B of the new version
/// gets ASN x again. B maps the same virtual page elsewhere: reading and
/// executing it in B must reach B's frame, not A's entries still tagged x
/// (the rollover's tbiap and imb remove them). Every hardware ASN handed
/// out is within the maximum and unique within its version, A's context
/// is stale after the rollover and reactivating A allocates anew.
#[test]
fn asn_rollover_leaves_no_stale_translation_behind() {
    const MAX: u64 = 63;
    let (smp, mmu) = setup();
    mmu.set_max_asn(MAX);
    let a = space();
    SimPlatform::run(smp, 1, move |_| {
        let (pa, pb) = (PageTable::new(), PageTable::new());
        pa.map(VA, F1);
        pb.map(VA, F2);
        smp.platform.write_frame(F1, OLD_CODE);
        smp.platform.write_frame(F2, NEW_CODE);
        let x = mmu.activate(a);
        assert_eq!(
            (smp.platform.read(&pa, VA), smp.platform.fetch(&pa, VA)),
            (Some(F1), Some(OLD_CODE))
        );
        // Hardware ASNs of the current version so far.
        let mut version = std::collections::HashSet::from([x]);
        let mut rolled = false;
        let b = loop {
            let s = space();
            let asn = mmu.activate(s);
            assert!(asn <= MAX, "hardware ASN {asn} above the maximum {MAX}");
            if !rolled && stat(mmu, 0, |s| &s.rollovers) == 1 {
                rolled = true;
                version.clear();
            }
            assert!(
                version.insert(asn),
                "hardware ASN {asn} handed out twice in one version"
            );
            if rolled && asn == x {
                break s;
            }
            assert!(
                version.len() <= MAX as usize + 1,
                "{} ASNs in one version",
                version.len()
            );
        };
        assert_eq!(stat(mmu, 0, |s| &s.rollovers), 1);
        assert_eq!(
            smp.platform.read(&pb, VA),
            Some(F2),
            "B (ASN {x} again, new version) reads A's stale translation"
        );
        assert_eq!(
            smp.platform.fetch(&pb, VA),
            Some(NEW_CODE),
            "B executes A's stale instructions"
        );
        let _ = b;
        // A's context is from the old version: reactivating it must allocate,
        // not reuse ASN x (which B now has).
        let before = stat(mmu, 0, |s| &s.new_asn);
        let asn = mmu.activate(a);
        assert_eq!(
            stat(mmu, 0, |s| &s.new_asn),
            before + 1,
            "A got a new context"
        );
        assert_ne!(asn, x, "A and B share an ASN in one version");
        assert_eq!(smp.platform.read(&pa, VA), Some(F1));
    });
}

#[test]
fn space_used_only_here_needs_no_ipi() {
    let (smp, mmu) = setup();
    let s = space();
    SimPlatform::run(smp, SIM_CPUS, move |me| {
        mmu.activate(s);
        if me != 0 {
            mmu.deactivate();
            return;
        }
        while s.active() != CpuMask::single(0) || (1..SIM_CPUS).any(|c| s.context(c) == 0) {
            std::thread::yield_now();
        }
        let sent_before: u64 = (1..SIM_CPUS)
            .map(|c| smp.cpu(c).ipi_sent[0].load(Relaxed))
            .sum();
        mmu.flush_tlb_mm(s).unwrap();
        let sent_after: u64 = (1..SIM_CPUS)
            .map(|c| smp.cpu(c).ipi_sent[0].load(Relaxed))
            .sum();
        assert_eq!(
            sent_after, sent_before,
            "no IPI for a space active only here"
        );
        assert_eq!(stat(mmu, 0, |s| &s.ipis_avoided), 1);
        for c in 1..SIM_CPUS {
            assert_eq!(s.context(c), 0, "CPU {c} forgets its context instead");
        }
    });
}

#[test]
fn page_flush_reaches_every_cpu_where_active() {
    let (smp, mmu) = setup();
    all_active_then(smp, mmu, space(), |mmu, s| {
        mmu.flush_tlb_page(s, 0x2_0000_2345, false).unwrap()
    });
    for c in 0..SIM_CPUS {
        assert_eq!(
            stat(mmu, c, |s| &s.tbis),
            1,
            "CPU {c} dropped the page once"
        );
    }
}

#[test]
fn exec_page_and_icache_flushes_take_new_asns() {
    let (smp, mmu) = setup();
    all_active_then(smp, mmu, space(), |mmu, s| {
        mmu.flush_tlb_page(s, 0x4000, true).unwrap();
        mmu.flush_icache_user_page(s, true).unwrap();
        mmu.flush_icache_user_page(s, false).unwrap();
    });
    for c in 0..SIM_CPUS {
        assert_eq!(
            stat(mmu, c, |s| &s.new_asn),
            3,
            "CPU {c}: activation + 2 new ASNs"
        );
    }
}

#[test]
fn flush_all_and_imb_reach_every_cpu() {
    let (smp, mmu) = setup();
    all_active_then(smp, mmu, space(), |mmu, _| {
        mmu.flush_tlb_all().unwrap();
        mmu.smp_imb().unwrap();
    });
    for c in 0..SIM_CPUS {
        assert_eq!(stat(mmu, c, |s| &s.tbia), 1, "CPU {c} tbia");
        assert_eq!(stat(mmu, c, |s| &s.imb), 1, "CPU {c} imb");
        assert_eq!(smp.platform.cpus[c].imbs.load(Relaxed), 1);
        // Other CPUs' requests run here (what halt polling leaves out of
        // its count, `requests_run`): the issuer's own local parts are not.
        let others = if c == 0 { 0 } else { 2 };
        assert_eq!(
            stat(mmu, c, |s| &s.requests_run),
            others,
            "CPU {c} requests_run"
        );
    }
}

#[test]
fn range_flush_is_per_page_up_to_the_limit() {
    let (smp, mmu) = setup();
    all_active_then(smp, mmu, space(), |mmu, s| {
        mmu.flush_tlb_range(s, 0x10000, 0x10000 + 3 * PAGE_SIZE, false)
            .unwrap();
        // Exactly the limit: still per page.
        mmu.flush_tlb_range(s, 0x10000, 0x10000 + RANGE_PAGE_LIMIT * PAGE_SIZE, false)
            .unwrap();
        mmu.flush_tlb_range(
            s,
            0x10000,
            0x10000 + (RANGE_PAGE_LIMIT + 1) * PAGE_SIZE,
            false,
        )
        .unwrap();
    });
    for c in 0..SIM_CPUS {
        assert_eq!(
            stat(mmu, c, |s| &s.tbis),
            3 + RANGE_PAGE_LIMIT,
            "CPU {c}: three pages, then the limit's"
        );
        assert_eq!(
            stat(mmu, c, |s| &s.new_asn),
            2,
            "CPU {c}: activation + whole-space flush"
        );
    }
}

/// A range flush of an executable mapping must reach the
/// instruction stream (ITB, and the ASN-tagged icache) on every CPU running
/// the space: either a new ASN there, or each page invalidated in both
/// streams plus an imb. Data-stream invalidates alone leave the old
/// instructions reachable.
#[test]
fn exec_range_flush_reaches_the_instruction_stream() {
    let (smp, mmu) = setup();
    const PAGES: u64 = 3;
    let s = space();
    let asns: &'static [AtomicU64; SIM_CPUS] =
        Box::leak(Box::new([const { AtomicU64::new(0) }; SIM_CPUS]));
    SimPlatform::run(smp, SIM_CPUS, move |me| {
        asns[me].store(mmu.activate(s), Relaxed);
        if me == 0 {
            while s.active() != CpuMask::first(SIM_CPUS) {
                smp.platform.relax();
            }
            mmu.flush_tlb_range(s, 0x10000, 0x10000 + PAGES * PAGE_SIZE, true)
                .unwrap();
        }
    });
    for (c, asn) in asns.iter().enumerate().take(SIM_CPUS) {
        let hw = &smp.platform.cpus[c];
        let new_asn = hw.asn.load(Relaxed) != asn.load(Relaxed);
        let both = hw.tbis_both.load(Relaxed);
        let imbs = hw.imbs.load(Relaxed);
        assert!(
            new_asn || (both >= PAGES && imbs >= 1),
            "CPU {c}: executable range flushed in the data stream only (ASN unchanged, {both} both-stream page invalidations, {imbs} imb)"
        );
    }
}

#[test]
fn migrate_flush_changes_asn_and_drops_the_page_everywhere() {
    let (smp, mmu) = setup();
    let s = space();
    SimPlatform::run(smp, SIM_CPUS, move |me| {
        if me != 3 {
            mmu.activate(s);
        }
        if me == 0 {
            while s.active() != CpuMask(0b0111) || s.context(3) != 0 {
                std::thread::yield_now();
            }
            mmu.migrate_flush_tlb_page(s, 0x6000, true).unwrap();
        }
    });
    for c in 0..SIM_CPUS {
        assert_eq!(stat(mmu, c, |s| &s.tbis), 1, "CPU {c} dropped the page");
        assert_eq!(
            smp.platform.cpus[c].tbis_both.load(Relaxed),
            1,
            "CPU {c}: an executable page leaves both streams (tbis)"
        );
    }
    for c in 0..3 {
        assert_eq!(
            stat(mmu, c, |s| &s.new_asn),
            2,
            "CPU {c}: activation + new ASN"
        );
    }
    assert_eq!(
        stat(mmu, 3, |s| &s.contexts_zeroed),
        1,
        "CPU 3 (inactive) forgot the context"
    );
}

/// `flush_tlb_page` at an address inside a page drops that page: the
/// address is rounded down to its page. The page at 0x6000 has bit 13 set,
/// which a wrong rounding mask clears (landing in the page before).
#[test]
fn a_page_flush_at_an_address_inside_the_page_drops_that_page() {
    let (smp, mmu) = setup();
    let s = space();
    SimPlatform::run(smp, 1, move |_| {
        const PAGE: u64 = 0x2_0000_6000;
        let pt = PageTable::new();
        pt.map(PAGE, F1);
        mmu.activate(s);
        assert_eq!(smp.platform.read(&pt, PAGE + 0x123), Some(F1));
        pt.map(PAGE, F2);
        mmu.flush_tlb_page(s, PAGE + 0x123, false).unwrap();
        assert_eq!(
            smp.platform.read(&pt, PAGE + 0x123),
            Some(F2),
            "the stale translation of the page survived its flush"
        );
    });
}

/// The same rounding for the other flushes that take addresses: a range
/// from inside one page to inside the next drops both pages (also the
/// second, whose offset is below the start's), and a migration flush at an
/// address inside a page drops that page's global entry too.
#[test]
fn range_and_migrate_flushes_round_addresses_down_to_their_pages() {
    // One CPU online: the migration flush goes to every online CPU.
    let smp = SimPlatform::machine(Line::Latch, 0, 0, 1);
    let mmu: &'static SimMmu = Box::leak(Box::new(Mmu::new(smp)));
    let s = space();
    SimPlatform::run(smp, 1, move |_| {
        const PAGE: u64 = 0x2_0000_6000;
        const NEXT: u64 = PAGE + PAGE_SIZE;
        let pt = PageTable::new();
        pt.map(PAGE, F1);
        pt.map(NEXT, F1);
        mmu.activate(s);
        assert_eq!(
            (smp.platform.read(&pt, PAGE), smp.platform.read(&pt, NEXT)),
            (Some(F1), Some(F1))
        );
        pt.map(PAGE, F2);
        pt.map(NEXT, F2);
        mmu.flush_tlb_range(s, PAGE + 0x100, NEXT + 0x80, false)
            .unwrap();
        assert_eq!(
            (smp.platform.read(&pt, PAGE), smp.platform.read(&pt, NEXT)),
            (Some(F2), Some(F2)),
            "a page of the range kept its stale translation"
        );
        // A global (kernel) entry for a page (bit 13 set too), then the page
        // migrates.
        const KPAGE: u64 = 0x2_0000_a000;
        let kernel = PageTable::new();
        kernel.map(KPAGE, F1);
        assert_eq!(smp.platform.read_global(&kernel, KPAGE), Some(F1));
        kernel.map(KPAGE, F2);
        mmu.migrate_flush_tlb_page(s, KPAGE + 0x123, false).unwrap();
        assert_eq!(
            smp.platform.read_global(&kernel, KPAGE),
            Some(F2),
            "the migrated page's global entry survived"
        );
    });
}

/// A space activated again on a CPU whose ASN version has not moved on
/// reuses its context: the same hardware ASN is loaded and returned, and no
/// new one is allocated.
#[test]
fn reactivating_a_space_reuses_its_asn() {
    let (smp, mmu) = setup();
    let (a, b) = (space(), space());
    SimPlatform::run(smp, 1, move |_| {
        let x = mmu.activate(a);
        let y = mmu.activate(b);
        assert_ne!(x, y);
        let allocated = stat(mmu, 0, |s| &s.new_asn);
        assert_eq!(mmu.activate(a), x, "A's ASN on its return");
        assert_eq!(smp.platform.cpus[0].asn.load(Relaxed), x, "the ASN loaded");
        assert_eq!(stat(mmu, 0, |s| &s.new_asn), allocated, "no new ASN");
        assert_eq!(tlb::hw_asn(a.context(0)), x);
    });
}

/// A CPU that leaves the space while a flush is deciding
/// what to do about it must still be dealt with. CPU 1 keeps switching
/// between S and T while CPU 0 flushes S again and again; after each
/// `flush_tlb_mm(S)` returns, CPU 1's context for S must not be the one it
/// had before (it was zeroed, or CPU 1 took a new ASN in the IPI handler):
/// keeping it means CPU 1 reuses that ASN, and every translation of S it
/// held, the next time it runs S.
///
/// Free-running (real concurrency): the window is the flusher's pass over
/// the other online CPUs, so the machine has 64 online (two with threads)
/// to make it wide. On the code that read the active mask twice, this
/// failed within the first few hundred flushes (mostly the first 20), in
/// 11 of 12 runs of 20,000 flushes; the bound is five times that.
#[test]
fn flush_reaches_a_cpu_that_leaves_the_space_meanwhile() {
    const FLUSHES: u64 = 100_000;
    let smp = SimPlatform::<64>::machine(Line::Latch, 0, 0, 64);
    let mmu: &'static Mmu<SimPlatform<64>, 64> = Box::leak(Box::new(Mmu::new(smp)));
    let s: &'static AddressSpace<64> = Box::leak(Box::new(AddressSpace::new()));
    let t: &'static AddressSpace<64> = Box::leak(Box::new(AddressSpace::new()));
    let done: &'static std::sync::atomic::AtomicBool =
        Box::leak(Box::new(std::sync::atomic::AtomicBool::new(false)));
    SimPlatform::run_on(smp, CpuMask(0b11), move |me| {
        if me == 1 {
            while !done.load(Relaxed) {
                mmu.activate(s);
                smp.platform.relax();
                mmu.activate(t);
                smp.platform.relax();
            }
            return;
        }
        let start = std::time::Instant::now();
        let mut checked = 0u64;
        // At least 1000 flushes however slow the host is (a loaded machine
        // must not fail the test), then as many as 5 s allow.
        while checked < FLUSHES
            && (checked < 1000 || start.elapsed() < std::time::Duration::from_secs(5))
        {
            let before = s.context(1);
            if before == 0 {
                smp.platform.relax();
                continue;
            }
            mmu.flush_tlb_mm(s).unwrap();
            let after = s.context(1);
            if after == before {
                done.store(true, Relaxed);
                panic!(
                    "flush {checked}: CPU 1 still holds context {before:#x} for S after flush_tlb_mm returned (neither zeroed nor IPI'd)"
                );
            }
            checked += 1;
        }
        done.store(true, Relaxed);
        assert!(checked >= 1000, "only {checked} flushes checked");
    });
}

/// A flush whose wait the watchdog aborted is still owed
/// to the CPU it stalled on, and that CPU must do *that* flush when it gets
/// to it, whatever its caller has issued since. CPU 1 runs S at IPL 7;
/// CPU 0's flush_tlb_mm(S) stalls on it and is aborted; CPU 0 then flushes
/// a page of S2 (run by CPU 2 only), which rewrote CPU 0's one request slot
/// while the aborted call still pointed at it. When CPU 1 lowers its IPL and
/// runs the aborted call, it must take a new ASN for S.
#[test]
fn an_aborted_flush_still_happens_as_issued() {
    for seed in 0..4 {
        let smp: &'static SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, SIM_CPUS, seed);
        smp.policy.watchdog_cycles.store(2_000, Relaxed);
        smp.policy.abort_after.store(1, Relaxed);
        let mmu: &'static SimMmu = Box::leak(Box::new(Mmu::new(smp)));
        let (s, s2) = (space(), space());
        let stage: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let wait_for = move |n: u64| {
            while stage.load(Relaxed) < n {
                smp.platform.relax();
            }
        };
        SimPlatform::run(smp, 3, move |me| match me {
            1 => {
                mmu.activate(s);
                let prev = smp.platform.raise_ipl(alphasmp::platform::ipl::HIGH);
                stage.fetch_add(1, Relaxed);
                wait_for(3);
                let before = s.context(1);
                // Takes the aborted call now.
                smp.platform.restore_ipl(prev);
                assert_ne!(
                    s.context(1),
                    before,
                    "seed {seed}: CPU 1 ran the aborted flush_tlb_mm(S) but kept its ASN for S"
                );
            }
            2 => {
                mmu.activate(s2);
                stage.fetch_add(1, Relaxed);
            }
            _ => {
                wait_for(2);
                // CPU 1 goes on even if this CPU's checks fail.
                let _done = Stage(stage, 3);
                assert_eq!(
                    mmu.flush_tlb_mm(s),
                    Err(alphasmp::xcall::XcallError::Stalled { target: 1 }),
                    "seed {seed}"
                );
                mmu.flush_tlb_page(s2, 0x8000, false).unwrap();
            }
        });
    }
}

/// A CPU's flush requests held by aborted flushes are refused, not reused,
/// until the CPUs they stalled on have run them. CPUs 1 to 5 each run a
/// space of their own at IPL 7; CPU 0 flushes each (every flush stalls and
/// is aborted, keeping its request); with all of CPU 0's requests held (one
/// per stalled CPU, at most), its next flush is refused naming one of
/// those CPUs. Once they lower their IPL and run the aborted flushes, each
/// took its new ASN and CPU 0 can flush again.
#[test]
fn requests_held_by_aborted_flushes_are_not_reused() {
    const N: usize = 8;
    let smp: &'static SimSmp<N> = SimPlatform::seeded(Line::Latch, 0, 0, N, 3);
    smp.policy.watchdog_cycles.store(2_000, Relaxed);
    smp.policy.abort_after.store(1, Relaxed);
    let mmu: &'static Mmu<SimPlatform<N>, N> = Box::leak(Box::new(Mmu::new(smp)));
    let spaces: &'static [AddressSpace<N>; N] =
        Box::leak(Box::new([const { AddressSpace::new() }; N]));
    let stage: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let wait_for = move |n: u64| {
        while stage.load(Relaxed) < n {
            smp.platform.relax();
        }
    };
    // The flush that was refused (0: none yet).
    let refused_at: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    SimPlatform::run(smp, 6, move |me| {
        if me != 0 {
            mmu.activate(&spaces[me]);
            let prev = smp.platform.raise_ipl(alphasmp::platform::ipl::HIGH);
            stage.fetch_add(1, Relaxed);
            wait_for(100);
            let before = spaces[me].context(me);
            smp.platform.restore_ipl(prev);
            let after = spaces[me].context(me);
            stage.fetch_add(1, Relaxed);
            if (me as u64) < refused_at.load(Relaxed) {
                assert_ne!(after, before, "CPU {me} ran its aborted flush");
            }
            return;
        }
        wait_for(5);
        // The others go on even if this CPU's checks fail.
        let release = Stage(stage, 100);
        let mut refused = None;
        for (cpu, space) in spaces.iter().enumerate().take(6).skip(1) {
            match mmu.flush_tlb_mm(space) {
                Err(alphasmp::xcall::XcallError::Stalled { target }) if target == cpu => {}
                Err(alphasmp::xcall::XcallError::Stalled { target }) => {
                    refused = Some((cpu, target));
                    break;
                }
                r => panic!("flush of CPU {cpu}'s space: {r:?}"),
            }
        }
        let (at, holder) = refused.unwrap_or((6, 0));
        refused_at.store(at as u64, Relaxed);
        drop(release);
        assert!(at <= 5, "CPU 0 never ran out of requests");
        assert!(
            (1..at).contains(&holder),
            "refused flush {at} names CPU {holder}, which holds a request"
        );
        wait_for(105);
        mmu.flush_tlb_mm(&spaces[at]).unwrap();
    });
}

// ---- Stale translations through the simulator's TLB model -------------------

/// A change to the page at VA of space S and the flush that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Repoint to F2, flush_tlb_page(exec = false / true).
    Page,
    PageExec,
    /// Repoint to F2, flush_tlb_range over three pages around it.
    Range,
    RangeExec,
    /// Repoint to F2, flush_tlb_mm.
    Mm,
    /// Repoint to F2, migrate_flush_tlb_page(exec = false / true).
    Migrate,
    MigrateExec,
    /// New instructions written into F1 itself, flush_icache_user_page.
    Icache,
    /// Repoint without any flush (the negative control).
    NoFlush,
}

const CHANGES: [Change; 8] = [
    Change::Page,
    Change::PageExec,
    Change::Range,
    Change::RangeExec,
    Change::Mm,
    Change::Migrate,
    Change::MigrateExec,
    Change::Icache,
];

impl Change {
    fn exec(self) -> bool {
        matches!(
            self,
            Change::PageExec | Change::RangeExec | Change::MigrateExec | Change::Icache
        )
    }
    /// Edits the mapping or the frame, then flushes, on the calling CPU.
    fn apply(
        self,
        smp: &SimSmp,
        mmu: &'static SimMmu,
        s: &'static AddressSpace<SIM_CPUS>,
        pt: &PageTable,
    ) {
        if self == Change::Icache {
            smp.platform.write_frame(F1, NEW_CODE);
        } else {
            pt.map(VA, F2);
        }
        let r = match self {
            Change::Page | Change::PageExec => mmu.flush_tlb_page(s, VA, self.exec()),
            Change::Range | Change::RangeExec => {
                mmu.flush_tlb_range(s, VA - PAGE_SIZE, VA + 2 * PAGE_SIZE, self.exec())
            }
            Change::Mm => mmu.flush_tlb_mm(s),
            Change::Migrate | Change::MigrateExec => mmu.migrate_flush_tlb_page(s, VA, self.exec()),
            Change::Icache => mmu.flush_icache_user_page(s, true),
            Change::NoFlush => Ok(()),
        };
        r.unwrap_or_else(|e| panic!("{self:?}: {e}"));
    }
    /// What a CPU running S must see afterwards: the data frame, and for an
    /// executable page the instruction.
    fn fresh(self) -> (u64, Option<u64>) {
        let frame = if self == Change::Icache { F1 } else { F2 };
        (frame, self.exec().then_some(NEW_CODE))
    }
}

/// Loads the page at VA into this CPU's DTB (and for an executable page its
/// ITB and icache) under S's ASN.
fn prime(smp: &SimSmp, pt: &PageTable, exec: bool) {
    assert_eq!(smp.platform.read(pt, VA), Some(F1), "priming");
    if exec {
        assert_eq!(smp.platform.fetch(pt, VA), Some(OLD_CODE), "priming");
    }
}

/// What this CPU sees at VA now: the frame it reads, and for an executable
/// page the word it executes.
fn seen(smp: &SimSmp, pt: &PageTable, exec: bool) -> (u64, Option<u64>) {
    (
        smp.platform.read(pt, VA).unwrap(),
        exec.then(|| smp.platform.fetch(pt, VA).unwrap()),
    )
}

/// Where CPU 1 is while CPU 0 flushes S.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    /// Still running S.
    Running,
    /// Ran S (its entries are in its TLB under S's ASN) and moved to T
    /// before the flush: the path where the flusher only zeroes its
    /// context, no IPI.
    Left,
    /// Running S when the flush looks at it (so it is sent an IPI), but it
    /// moves to T before it takes the IPI: the handler finds S no longer
    /// current and only zeroes its context.
    Leaving,
    /// Running S and asleep in its idle loop (interrupts held off) when
    /// the flush looks at it: the flush skips it (an IPI would stay
    /// pending and the flush would stall), and it catches up when it wakes
    /// (`alphasmp::lazyflush`). While asleep it must still see the old
    /// translation (the flush really did not reach it).
    Asleep,
}

/// CPU 1 primes S's page at VA, is `place`d, CPU 0 (running S too, or not)
/// makes `change`; then CPU 1 runs S again and reports what it sees, as
/// does CPU 0 if it runs S.
fn stale_check(
    change: Change,
    place: Where,
    flusher_runs_s: bool,
    seed: u64,
) -> [(u64, Option<u64>); 2] {
    // Two CPUs online, both running (migrate flushes go to every online CPU).
    let smp: &'static SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, 2, seed);
    smp.policy.watchdog_cycles.store(20_000, Relaxed);
    smp.policy.abort_after.store(1, Relaxed);
    let mmu: &'static SimMmu = Box::leak(Box::new(Mmu::new(smp)));
    let (s, t) = (space(), space());
    let pt: &'static PageTable = Box::leak(Box::new(PageTable::new()));
    let other: &'static PageTable = Box::leak(Box::new(PageTable::new()));
    pt.map(VA, F1);
    other.map(VA, 0x999);
    smp.platform.write_frame(F1, OLD_CODE);
    smp.platform.write_frame(F2, NEW_CODE);
    let stage: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let wait_for = move |n: u64| {
        while stage.load(Relaxed) < n {
            smp.platform.relax();
        }
    };
    let out = SimPlatform::run(smp, 2, move |me| {
        if me == 1 {
            mmu.activate(s);
            prime(smp, pt, change.exec());
            match place {
                Where::Running => {
                    stage.store(1, Relaxed);
                    wait_for(2);
                }
                Where::Left => {
                    mmu.activate(t);
                    // Something of T's own under the same virtual page.
                    assert_eq!(smp.platform.read(other, VA), Some(0x999));
                    stage.store(1, Relaxed);
                    wait_for(2);
                    mmu.activate(s);
                }
                Where::Asleep => {
                    let prev = smp.platform.raise_ipl(alphasmp::platform::ipl::HIGH);
                    assert!(mmu.idle_enter(1));
                    stage.store(1, Relaxed);
                    wait_for(2);
                    let asleep = seen(smp, pt, change.exec());
                    if change != Change::NoFlush {
                        assert_ne!(
                            asleep,
                            change.fresh(),
                            "{change:?}: CPU 1 was reached while asleep"
                        );
                    }
                    mmu.idle_leave(1);
                    smp.platform.restore_ipl(prev);
                }
                Where::Leaving => {
                    let prev = smp.platform.raise_ipl(alphasmp::platform::ipl::HIGH);
                    stage.store(1, Relaxed);
                    // The flush's call is queued for us, the IPI pending (or,
                    // if the flush sent us none, it is over).
                    while !smp
                        .cpu(1)
                        .mailbox
                        .peek()
                        .contains(alphasmp::mailbox::IpiMessage::CALL_FUNCTION)
                        && stage.load(Relaxed) < 2
                    {
                        smp.platform.relax();
                    }
                    mmu.activate(t);
                    smp.platform.restore_ipl(prev);
                    wait_for(2);
                    mmu.activate(s);
                }
            }
            seen(smp, pt, change.exec())
        } else {
            if flusher_runs_s {
                mmu.activate(s);
                prime(smp, pt, change.exec());
            }
            wait_for(1);
            // Let CPU 1 go on even if the flush fails (panics).
            let _done = Stage(stage, 2);
            change.apply(smp, mmu, s, pt);
            if flusher_runs_s {
                seen(smp, pt, change.exec())
            } else {
                (0, None)
            }
        }
    });
    [out[0], out[1]]
}

/// Sets a stage counter when dropped (also when unwinding).
struct Stage(&'static AtomicU64, u64);

impl Drop for Stage {
    fn drop(&mut self) {
        self.0.store(self.1, Relaxed);
    }
}

fn assert_fresh(change: Change, place: Where, flusher_runs_s: bool) {
    for seed in 0..3 {
        let [cpu0, cpu1] = stale_check(change, place, flusher_runs_s, seed);
        let want = change.fresh();
        assert_eq!(
            cpu1, want,
            "seed {seed}: {change:?}, CPU 1 {place:?}: CPU 1 sees (frame, instruction) {cpu1:x?} after the flush"
        );
        if flusher_runs_s {
            assert_eq!(
                cpu0, want,
                "seed {seed}: {change:?}: the flushing CPU itself sees {cpu0:x?}"
            );
        }
    }
}

/// The model can see a stale translation: without a flush, a CPU that ran
/// S, left and came back (its context kept) still reads the old frame, as
/// does one that kept running S. (So the tests below can fail.)
#[test]
fn without_a_flush_the_model_shows_stale_translations() {
    for place in [Where::Running, Where::Left] {
        let [_, cpu1] = stale_check(Change::NoFlush, place, false, 0);
        assert_eq!(cpu1, (F1, None), "{place:?}");
    }
}

/// The inactive-CPU path: CPU 1 ran S and left before the flush; the flush
/// only zeroes its context (no IPI). When it runs S again it must not reach
/// its old entries (still in its TLB, tagged with S's old ASN).
#[test]
fn a_cpu_that_left_the_space_sees_no_stale_translation() {
    for change in CHANGES {
        assert_fresh(change, Where::Left, false);
    }
}

/// The going-inactive path: CPU 1 runs S when the flush looks at it, and
/// leaves S before it takes the IPI; its handler only zeroes its context.
#[test]
fn a_cpu_leaving_the_space_during_the_flush_sees_no_stale_translation() {
    for change in CHANGES {
        assert_fresh(change, Where::Leaving, false);
    }
}

/// The sleeping path: CPU 1 runs S and sleeps in its idle loop; every
/// space flush skips it and it catches up when it wakes, before it reads.
/// Page migration is left out: it interrupts every online CPU by design
/// (the compaction fix), so a CPU asleep with interrupts held off would
/// stall it, as the kernel's idle loop never does (its sleep ends at any
/// pending interrupt).
#[test]
fn a_cpu_asleep_in_its_idle_loop_is_skipped_and_catches_up() {
    for change in CHANGES {
        if !matches!(change, Change::Migrate | Change::MigrateExec) {
            assert_fresh(change, Where::Asleep, true);
        }
    }
}

/// The active path: CPU 1, and the flushing CPU 0, run S throughout.
#[test]
fn cpus_running_the_space_see_no_stale_translation() {
    for change in CHANGES {
        assert_fresh(change, Where::Running, true);
    }
}

/// Global (kernel) translations: flush_tlb_all removes them everywhere;
/// without it every CPU still reads the old frame.
#[test]
fn flush_all_removes_global_translations_everywhere() {
    let (smp, mmu) = setup();
    let kpt: &'static PageTable = Box::leak(Box::new(PageTable::new()));
    kpt.map(VA, F1);
    let stage: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let out = SimPlatform::run(smp, SIM_CPUS, move |me| {
        assert_eq!(smp.platform.read_global(kpt, VA), Some(F1));
        stage.fetch_add(1, Relaxed);
        if me == 0 {
            while stage.load(Relaxed) < SIM_CPUS as u64 {
                smp.platform.relax();
            }
            kpt.map(VA, F2);
            // A new ASN does not help global entries.
            mmu.activate(space());
            let stale = smp.platform.read_global(kpt, VA);
            mmu.flush_tlb_all().unwrap();
            stage.store(100, Relaxed);
            assert_eq!(
                stale,
                Some(F1),
                "the model keeps global entries across ASNs"
            );
        } else {
            while stage.load(Relaxed) < 100 {
                smp.platform.relax();
            }
        }
        smp.platform.read_global(kpt, VA)
    });
    assert_eq!(out, vec![Some(F2); SIM_CPUS]);
}

/// What one CPU read of the page while asleep, and after it woke.
type AsleepAndWoken = (Option<u64>, Option<u64>);

/// CPUs 1.. go to sleep in the idle loop while CPU 0 remaps a global page
/// from F1 to F2 and flushes every CPU; each sleeper reads the page while
/// it sleeps and again once it has woken. With `lazy` (the default) the
/// sleepers hold interrupts off, as the kernel's idle loop does around
/// `wtint` (an IPI would stay pending, and the flush, waiting for it,
/// would never return); without, they sleep at IPL 0, where the flush's
/// IPI reaches them.
fn flush_all_over_sleepers(lazy: bool) -> (&'static SimMmu, Vec<AsleepAndWoken>) {
    let (smp, mmu) = setup();
    mmu.set_lazy_idle(lazy);
    let kpt: &'static PageTable = Box::leak(Box::new(PageTable::new()));
    kpt.map(VA, F1);
    let stage: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let out = SimPlatform::run(smp, SIM_CPUS, move |me| {
        assert_eq!(smp.platform.read_global(kpt, VA), Some(F1));
        if me == 0 {
            while stage.load(Relaxed) < SIM_CPUS as u64 - 1 {
                smp.platform.relax();
            }
            kpt.map(VA, F2);
            mmu.flush_tlb_all().unwrap();
            assert_eq!(smp.platform.read_global(kpt, VA), Some(F2));
            stage.store(100, Relaxed);
            return (Some(F2), Some(F2));
        }
        let prev = smp.platform.raise_ipl(if lazy { 7 } else { 0 });
        assert_eq!(mmu.idle_enter(me), lazy, "entered only with lazy flushes");
        stage.fetch_add(1, Relaxed);
        while stage.load(Relaxed) < 100 {
            smp.platform.relax();
        }
        let asleep = smp.platform.read_global(kpt, VA);
        if lazy {
            mmu.idle_leave(me);
        }
        let woken = smp.platform.read_global(kpt, VA);
        smp.platform.restore_ipl(prev);
        (asleep, woken)
    });
    (mmu, out)
}

/// The all-CPU flush skips CPUs asleep in their idle loop
/// (`alphasmp::lazyflush`). The sleepers really were not reached (each
/// still reads the old frame while it sleeps: the negative control), and
/// each reads the new frame once its sleep ends, before anything else.
#[test]
fn flush_all_skips_idle_cpus_and_they_flush_when_they_wake() {
    let (mmu, out) = flush_all_over_sleepers(true);
    for (cpu, (asleep, woken)) in out.iter().enumerate().skip(1) {
        assert_eq!(*asleep, Some(F1), "CPU {cpu} was reached while asleep");
        assert_eq!(*woken, Some(F2), "CPU {cpu} did not catch up");
        assert_eq!(stat(mmu, cpu, |s| &s.idle_catch_ups), 1);
        assert_eq!(
            stat(mmu, cpu, |s| &s.requests_run),
            0,
            "CPU {cpu} ran a request"
        );
    }
    assert_eq!(stat(mmu, 0, |s| &s.idle_skipped), SIM_CPUS as u64 - 1);
}

/// With lazy flushes off (`set_lazy_idle(false)`), a CPU in the idle
/// sleep is not skipped: the flush interrupts it as before.
#[test]
fn flush_all_interrupts_every_cpu_with_lazy_flushes_off() {
    let (mmu, out) = flush_all_over_sleepers(false);
    assert_eq!(out, vec![(Some(F2), Some(F2)); SIM_CPUS]);
    assert_eq!(stat(mmu, 0, |s| &s.idle_skipped), 0);
    for cpu in 1..SIM_CPUS {
        assert_eq!(
            stat(mmu, cpu, |s| &s.requests_run),
            1,
            "CPU {cpu} requests_run"
        );
    }
}
