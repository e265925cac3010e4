//! The cross-call (src/xcall.rs) and shootdown (src/tlb.rs) protocol on
//! large simulated machines: 16 and 64 CPUs (an EV7/Marvel box has up to
//! 64), and 64 with only every third CPU online (sparse masks).
//!
//! Every test runs under the seeded scheduler, so a failure names its seed
//! and replays from it: `ALPHASMP_SEED=<n> cargo test --test sim_scale`
//! runs that seed only; `ALPHASMP_LONG=1` runs more seeds. One test uses
//! the free scheduler for real contention on the host's atomics.
//!
//! Each synchronous call runs under the watchdog with abort after the first
//! report, bounded far above any normal wait: a lost or stuck call ends the
//! test with `XcallError::Stalled` instead of hanging it.
//!
//! Run time (debug build, on a 2-core host busy with another build): each
//! test about 1 s or less when run alone (noted on each), the whole file
//! about 4 s. The seeded scheduler hands the turn to one thread at a time
//! at every `relax`, and a turn does all the work up to the next one, so a
//! 64-CPU storm of about 40,000 remote calls takes some 7,000 steps.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use alphasmp::cpumask::CpuMask;
use alphasmp::platform::Platform;
use alphasmp::rng::XorShift64;
use alphasmp::sim::{self, Line, SIM_MAX_CPUS, SimPlatform, SimSmp};
use alphasmp::tlb::{AddressSpace, Mmu, PAGE_SIZE};
use alphasmp::xcall::XcallError;

/// Seeds for a test: `ALPHASMP_SEED` alone if set, else `0..short`
/// (`0..long` with `ALPHASMP_LONG`).
fn seeds(short: u64, long: u64) -> std::ops::Range<u64> {
    if let Some(s) = std::env::var("ALPHASMP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s..s + 1;
    }
    0..if std::env::var_os("ALPHASMP_LONG").is_some() {
        long
    } else {
        short
    }
}

/// Watchdog bound under the seeded scheduler, in global scheduling steps:
/// a whole 64-CPU run here takes fewer than 10,000.
const WATCHDOG_STEPS: u64 = 200_000;
/// ... and under the free scheduler, in nanoseconds.
const WATCHDOG_NS: u64 = 10_000_000_000;

fn watchdog<const N: usize>(smp: &SimSmp<N>, bound: u64) {
    smp.policy.watchdog_cycles.store(bound, Relaxed);
    smp.policy.abort_after.store(1, Relaxed);
}

/// A seeded `N`-CPU machine with the CPUs of `online` online.
fn seeded<const N: usize>(online: CpuMask, seed: u64) -> &'static SimSmp<N> {
    let smp = SimPlatform::<N>::seeded(Line::Latch, 0, 0, 0, seed);
    for c in online.iter() {
        smp.set_online(c);
    }
    assert_eq!(smp.online(), online);
    watchdog(smp, WATCHDOG_STEPS);
    smp
}

/// Every third CPU of 64: 0, 3, 6, ..., 63 (22 CPUs).
fn every_third() -> CpuMask {
    CpuMask((0..64).step_by(3).fold(0, |m, c| m | 1 << c))
}

// ---- (a) cross-calls ---------------------------------------------------------

/// Where one caller's calls ran: `0[t]` counts runs on CPU `t`. Each caller
/// has its own, so after each of its synchronous calls it must equal what
/// the caller has asked for so far, exactly.
struct Tally([AtomicU64; SIM_MAX_CPUS]);

impl Tally {
    fn snapshot(&self) -> [u64; SIM_MAX_CPUS] {
        std::array::from_fn(|i| self.0[i].load(Relaxed))
    }
}

fn tallies() -> &'static [Tally] {
    Box::leak(
        (0..SIM_MAX_CPUS)
            .map(|_| Tally([const { AtomicU64::new(0) }; SIM_MAX_CPUS]))
            .collect(),
    )
}

fn record(arg: usize) {
    // SAFETY: every call passes the address of a `Tally` in a leaked (never
    // freed) slice.
    let t = unsafe { &*(arg as *const Tally) };
    t.0[sim::current_cpu()].fetch_add(1, Relaxed);
}

/// The CPUs where `seen` and `want` differ, readably.
fn diff(seen: &[u64; SIM_MAX_CPUS], want: &[u64; SIM_MAX_CPUS]) -> String {
    (0..SIM_MAX_CPUS)
        .filter(|&c| seen[c] != want[c])
        .map(|c| format!("CPU {c} ran {} times, expected {}", seen[c], want[c]))
        .collect::<Vec<_>>()
        .join("; ")
}

fn pick(rng: &mut XorShift64, mask: CpuMask) -> usize {
    mask.iter()
        .nth(rng.below(mask.count() as u64) as usize)
        .unwrap()
}

/// What one caller asked for: runs per CPU, and calls to other CPUs.
struct Asked {
    runs: [u64; SIM_MAX_CPUS],
    remote: u64,
}

/// One CPU's share of the storm: `rounds` synchronous calls, cycling through
/// call_single to a random online CPU (itself included), call_many to a
/// random subset of the online CPUs (a quarter of them on average) and
/// on_each_cpu. After each call its tally must be exactly what it asked for.
/// With offline CPUs it also checks that calls naming one are refused
/// before anything runs.
fn storm<const N: usize>(
    smp: &'static SimSmp<N>,
    tallies: &'static [Tally],
    seed: u64,
    me: usize,
    rounds: usize,
) -> Asked {
    let online = smp.online();
    let offline = CpuMask::first(N).0 & !online.0;
    let mut rng = XorShift64::new(seed.wrapping_mul(0x9e37_79b9) ^ ((me as u64 + 1) << 40));
    let mine = &tallies[me];
    let arg = mine as *const Tally as usize;
    let mut asked = Asked {
        runs: [0; SIM_MAX_CPUS],
        remote: 0,
    };
    let fail = |what: &str, e: XcallError| -> ! { panic!("seed {seed}: CPU {me}: {what}: {e}") };
    for round in 0..rounds {
        let mask = match (round + me) % 3 {
            0 => {
                let t = pick(&mut rng, online);
                smp.call_single(t, record, arg, true)
                    .unwrap_or_else(|e| fail(&format!("call_single({t})"), e));
                CpuMask::single(t)
            }
            1 => {
                let mut m = CpuMask(rng.next_u64() & rng.next_u64() & online.0);
                if m.is_empty() {
                    m.insert(pick(&mut rng, online));
                }
                smp.call_many(m, record, arg, true)
                    .unwrap_or_else(|e| fail(&format!("call_many({:#x})", m.0), e));
                m
            }
            _ => {
                smp.on_each_cpu(record, arg, true)
                    .unwrap_or_else(|e| fail("on_each_cpu", e));
                online
            }
        };
        for t in mask.iter() {
            asked.runs[t] += 1;
        }
        asked.remote += mask.without(me).count() as u64;
        let seen = mine.snapshot();
        assert!(
            seen == asked.runs,
            "seed {seed}: CPU {me} round {round}, call to {:#x} returned with: {}",
            mask.0,
            diff(&seen, &asked.runs)
        );
    }
    if offline != 0 {
        let off = pick(&mut rng, CpuMask(offline));
        assert_eq!(
            smp.call_single(off, record, arg, true),
            Err(XcallError::Offline(off)),
            "seed {seed}: CPU {me}"
        );
        let m = CpuMask(online.0 | 1 << off);
        assert_eq!(
            smp.call_many(m, record, arg, true),
            Err(XcallError::Offline(off)),
            "seed {seed}: CPU {me}"
        );
        assert_eq!(
            smp.call_single(N, record, arg, true),
            Err(XcallError::NoSuchCpu(N)),
            "seed {seed}: CPU {me}"
        );
        let seen = mine.snapshot();
        assert!(
            seen == asked.runs,
            "seed {seed}: CPU {me}: a refused call ran: {}",
            diff(&seen, &asked.runs)
        );
    }
    asked
}

/// Every online CPU storms at once; then every caller's tally must still be
/// exactly what it asked for (no late duplicate), and the core's counters
/// must agree: every call queued for another CPU was queued once and run
/// once, and offline CPUs were never interrupted.
fn xcall_storm<const N: usize>(smp: &'static SimSmp<N>, seed: u64, rounds: usize) {
    let online = smp.online();
    let tallies = tallies();
    let asked = SimPlatform::run_on(smp, online, move |me| storm(smp, tallies, seed, me, rounds));
    let mut remote = 0;
    for (me, a) in online.iter().zip(&asked) {
        let seen = tallies[me].snapshot();
        assert!(
            seen == a.runs,
            "seed {seed}: CPU {me}'s calls, after the run: {}",
            diff(&seen, &a.runs)
        );
        remote += a.remote;
    }
    let sum = |f: &dyn Fn(usize) -> u64| (0..N).map(f).sum::<u64>();
    let queued = sum(&|c| smp.cpu(c).stats.calls_queued.load(Relaxed));
    let run = sum(&|c| smp.cpu(c).stats.calls_run.load(Relaxed));
    assert_eq!(
        (queued, run),
        (remote, remote),
        "seed {seed}: calls queued and run, against calls asked for other CPUs"
    );
    for c in (0..N).filter(|c| !online.contains(*c)) {
        let st = &smp.cpu(c).stats;
        let sent: u64 = smp.cpu(c).ipi_sent.iter().map(|s| s.load(Relaxed)).sum();
        assert_eq!(
            (sent, st.calls_run.load(Relaxed)),
            (0, 0),
            "seed {seed}: offline CPU {c} was interrupted"
        );
        assert!(
            smp.cpu(c).mailbox.peek().is_empty(),
            "seed {seed}: offline CPU {c} has mail"
        );
    }
    assert_eq!(
        smp.platform.stalls.load(Relaxed),
        0,
        "seed {seed}: watchdog reports"
    );
}

/// 16 CPUs, 40 calls each, 32 seeds: about 1.1 s.
#[test]
fn xcall_storm_16_cpus() {
    for seed in seeds(32, 400) {
        xcall_storm(seeded::<16>(CpuMask::first(16), seed), seed, 40);
    }
}

/// 64 CPUs, 24 calls each, 8 seeds: about 1 s.
#[test]
fn xcall_storm_64_cpus() {
    for seed in seeds(8, 80) {
        xcall_storm(seeded::<64>(CpuMask::first(64), seed), seed, 24);
    }
}

/// 64 CPUs under the free scheduler (64 host threads contending for real;
/// not replayable), 48 calls each, 8 runs: about 0.4 s.
#[test]
fn xcall_storm_64_cpus_free_running() {
    for plan in 0..8 {
        let smp = SimPlatform::<64>::machine(Line::Latch, 0, 0, 64);
        watchdog(smp, WATCHDOG_NS);
        xcall_storm(smp, plan, 48);
    }
}

// ---- (b) shootdowns ------------------------------------------------------------

type SimMmu<const N: usize> = Mmu<SimPlatform<N>, N>;

/// Roles among the online CPUs, by their position `k` in the online mask:
/// `k % 3 == 2` ran space S and moved on to space T (S is inactive there
/// but they hold a context for it); the others run S, and those of them at
/// `k % 4 == 0` issue flushes.
struct Roles {
    active: CpuMask,
    moved: CpuMask,
    issuers: CpuMask,
}

fn roles(online: CpuMask) -> Roles {
    let (mut active, mut moved, mut issuers) = (CpuMask::EMPTY, CpuMask::EMPTY, CpuMask::EMPTY);
    for (k, c) in online.iter().enumerate() {
        if k % 3 == 2 {
            moved.insert(c);
        } else {
            active.insert(c);
            if k % 4 == 0 {
                issuers.insert(c);
            }
        }
    }
    Roles {
        active,
        moved,
        issuers,
    }
}

/// Pages in each issuer's range flush (per-page: below RANGE_PAGE_LIMIT).
const RANGE_PAGES: u64 = 3;

/// Every issuer, concurrently once all CPUs are in place, `rounds` times: a
/// page flush, a range flush, a whole-space flush and an icache flush of S,
/// a flush of everything and an imb. Then on every CPU where S is active:
/// one tbis per flushed page and one new ASN per space or icache flush;
/// where S is not active: no tbis and no new ASN, its context for S
/// forgotten exactly once; everywhere online: one tbia and one imb per
/// issued flush; offline: nothing at all.
fn shootdowns<const N: usize>(online: CpuMask, seed: u64, rounds: u64) {
    let smp = seeded::<N>(online, seed);
    let mmu: &'static SimMmu<N> = Box::leak(Box::new(Mmu::new(smp)));
    let s: &'static AddressSpace<N> = Box::leak(Box::new(AddressSpace::new()));
    let t: &'static AddressSpace<N> = Box::leak(Box::new(AddressSpace::new()));
    let Roles {
        active,
        moved,
        issuers,
    } = roles(online);
    assert!(issuers.count() >= 3, "several issuers");
    SimPlatform::run_on(smp, online, move |me| {
        mmu.activate(s);
        if moved.contains(me) {
            mmu.activate(t);
        }
        if issuers.contains(me) {
            while s.active() != active || t.active() != moved {
                smp.platform.relax();
            }
            let fail =
                |what: &str, e: XcallError| -> ! { panic!("seed {seed}: CPU {me}: {what}: {e}") };
            for round in 0..rounds {
                let va = 0x100_0000 + (me as u64 * 64 + round) * 4 * PAGE_SIZE;
                mmu.flush_tlb_page(s, va, false)
                    .unwrap_or_else(|e| fail("flush_tlb_page", e));
                mmu.flush_tlb_range(s, va, va + RANGE_PAGES * PAGE_SIZE, false)
                    .unwrap_or_else(|e| fail("flush_tlb_range", e));
                mmu.flush_tlb_mm(s)
                    .unwrap_or_else(|e| fail("flush_tlb_mm", e));
                mmu.flush_icache_user_page(s, true)
                    .unwrap_or_else(|e| fail("flush_icache_user_page", e));
                mmu.flush_tlb_all()
                    .unwrap_or_else(|e| fail("flush_tlb_all", e));
                mmu.smp_imb().unwrap_or_else(|e| fail("smp_imb", e));
            }
        }
    });
    // Flushes of each kind issued in all.
    let k = issuers.count() as u64 * rounds;
    for c in 0..N {
        let st = &mmu.stats[c];
        let seen = [
            &st.tbis,
            &st.new_asn,
            &st.tbia,
            &st.imb,
            &st.contexts_zeroed,
            &st.tbiap,
        ]
        .map(|a| a.load(Relaxed));
        let (role, want) = if active.contains(c) {
            ("S active", [k * (1 + RANGE_PAGES), 1 + 2 * k, k, k, 0, 0])
        } else if moved.contains(c) {
            ("S inactive", [0, 2, k, k, 1, 0])
        } else {
            ("offline", [0; 6])
        };
        assert_eq!(
            seen, want,
            "seed {seed}: CPU {c} ({role}): [tbis, new ASNs, tbia, imb, contexts zeroed, tbiap]"
        );
        let hw = &smp.platform.cpus[c];
        assert_eq!(
            (hw.tlb_ops.load(Relaxed), hw.imbs.load(Relaxed)),
            (want[0] + want[2], want[3]),
            "seed {seed}: CPU {c}: the platform's own counts"
        );
        assert_eq!(
            s.context(c) != 0,
            active.contains(c),
            "seed {seed}: CPU {c}: context for S"
        );
    }
    assert_eq!(
        smp.platform.stalls.load(Relaxed),
        0,
        "seed {seed}: watchdog reports"
    );
}

/// 16 CPUs, 3 issuers, 4 rounds, 32 seeds: about 0.8 s.
#[test]
fn shootdowns_from_several_cpus_16() {
    for seed in seeds(32, 400) {
        shootdowns::<16>(CpuMask::first(16), seed, 4);
    }
}

/// 64 CPUs, 11 issuers, 4 rounds, 8 seeds: about 1.3 s.
#[test]
fn shootdowns_from_several_cpus_64() {
    for seed in seeds(8, 80) {
        shootdowns::<64>(CpuMask::first(64), seed, 4);
    }
}

// ---- (c) a sparse online mask --------------------------------------------------

/// 64 CPUs of which every third is online (22): the call storm, with calls
/// naming offline CPUs refused, and the shootdowns, which must leave the
/// offline CPUs alone. 8 seeds: about 0.8 s.
#[test]
fn sparse_online_mask_of_64() {
    for seed in seeds(8, 80) {
        xcall_storm(seeded::<64>(every_third(), seed), seed, 48);
        shootdowns::<64>(every_third(), seed, 4);
    }
}

// ---- the harness itself ------------------------------------------------------

/// The seeded scheduler on 64 CPUs replays a run from its seed (and a
/// different seed gives a different run).
#[test]
fn a_seed_replays_on_64_cpus() {
    let steps = |seed| {
        let smp = seeded::<64>(CpuMask::first(64), seed);
        xcall_storm(smp, seed, 3);
        smp.platform.steps()
    };
    let a = steps(5);
    assert!(a > 0);
    assert_eq!(a, steps(5), "seed 5 is not deterministic");
    assert_ne!(a, steps(6), "seeds 5 and 6 gave the same number of steps");
}

/// A failed assertion on one simulated CPU fails the test with its message
/// (the other CPUs finish; nothing hangs).
#[test]
#[should_panic(expected = "CPU 9 gives up")]
fn a_panicking_cpu_fails_the_run() {
    let smp = seeded::<16>(CpuMask::first(16), 1);
    SimPlatform::run(smp, 16, move |me| {
        smp.on_each_cpu(|_| {}, 0, true).unwrap();
        assert_ne!(me, 9, "CPU 9 gives up");
        smp.on_each_cpu(|_| {}, 0, true).unwrap();
    });
}

#[test]
fn sparse_mask_shape() {
    let m = every_third();
    assert_eq!(m.count(), 22);
    assert!(m.contains(0) && m.contains(63) && !m.contains(1) && !m.contains(62));
    let r = roles(m);
    assert_eq!((r.active.count(), r.moved.count()), (15, 7));
    assert_eq!(
        r.issuers,
        CpuMask(1 | 1 << 12 | 1 << 36 | 1 << 48),
        "positions 0, 4, 12, 16"
    );
}
