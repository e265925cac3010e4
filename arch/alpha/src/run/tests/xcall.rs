//! Cross-CPU calls in the kernel: exact delivery for every variant, a storm
//! of concurrent synchronous calls from every CPU, and refused misuse.

use core::sync::atomic::{AtomicU64, Ordering};

use alphasmp::cpumask::CpuMask;
use alphasmp::xcall::XcallError;
use alphasmp_bootargs::BootConfig;

use crate::percpu::MAX_CPUS;
use crate::platform::SMP;
use crate::run::selftest::Outcome;
use crate::run::selftest::check;
use crate::run::selftest::check_eq;
use crate::{clock, cpus, ipl, smp};

static HITS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn hit(_: usize) {
    HITS[cpus::this()].fetch_add(1, Ordering::Relaxed);
}

fn hits() -> [u64; MAX_CPUS] {
    core::array::from_fn(|c| HITS[c].load(Ordering::Relaxed))
}

/// Waits (bounded) until the hit counters reach `want`.
fn settle(want: [u64; MAX_CPUS]) -> [u64; MAX_CPUS] {
    let start = clock::now_ns();
    while hits() != want && clock::now_ns() < start + super::platform::LIVENESS_NS {
        clock::pause_since(start);
    }
    hits()
}

fn plus(mut base: [u64; MAX_CPUS], mask: CpuMask) -> [u64; MAX_CPUS] {
    for c in mask.iter() {
        base[c] += 1;
    }
    base
}

/// Every variant runs its function exactly once on exactly its CPUs, and
/// the calls reach the other CPUs by interrupt: their IPI interrupt counts
/// must grow, for the single calls and again for the broadcasts, whose
/// interrupts go out together (`Platform::request_ipis`, on clipper one
/// Cchip store). An idle CPU's tick-time poll would otherwise run the
/// calls without any IPI, so the hit counts alone prove no delivery: with
/// clipper's store left out, every call still ran and only these counts
/// showed it.
pub fn every_variant_exactly_once(_: &BootConfig<'_>) -> Outcome {
    let _listen = Listen::set(false);
    let me = cpus::this();
    let online = smp::online();
    let ipis = || -> [u64; MAX_CPUS] {
        core::array::from_fn(|c| crate::interrupt::COUNTS[c][0].load(Ordering::Relaxed))
    };
    let irqs_before = ipis();
    for t in online.iter() {
        for wait in [true, false] {
            let before = hits();
            SMP.call_single(t, hit, 0, wait).map_err(fail)?;
            let want = plus(before, CpuMask::single(t));
            if wait {
                check_eq!(hits(), want, "call_single({t}, wait) on return");
            }
            check_eq!(settle(want), want, "call_single({t}, wait={wait})");
        }
    }
    let irqs_single = ipis();
    let pairs = CpuMask(online.0 & 0b0101).without(me).0 | (1 << me);
    for (mask, name) in [
        (CpuMask(pairs), "call_many(subset)"),
        (online, "call_many(all)"),
    ] {
        for wait in [true, false] {
            let before = hits();
            SMP.call_many(mask, hit, 0, wait).map_err(fail)?;
            let want = plus(before, mask);
            check_eq!(settle(want), want, "{name} {mask:?} wait={wait}");
        }
    }
    for wait in [true, false] {
        let before = hits();
        SMP.on_each_cpu(hit, 0, wait).map_err(fail)?;
        let want = plus(before, online);
        check_eq!(settle(want), want, "on_each_cpu wait={wait}");
    }
    let irqs_after = ipis();
    for c in online.without(me).iter() {
        // Each remote CPU was the target of 2 call_single, then 2 or 4
        // call_many and 2 on_each_cpu calls; one may piggyback on a queue
        // an earlier interrupt is already draining, or be found by a
        // tick's poll.
        let single = irqs_single[c] - irqs_before[c];
        let broadcast = irqs_after[c] - irqs_single[c];
        check!(
            single >= 1,
            "CPU {c} took {single} IPI interrupts for its 2 single calls: they were not delivered by interrupt"
        );
        check!(
            broadcast >= 2,
            "CPU {c} took {broadcast} IPI interrupts for its 4 or more broadcast calls: they were not delivered by interrupt"
        );
    }
    Ok(())
}

fn fail(e: XcallError) -> crate::run::selftest::Failure {
    crate::run::selftest::Failure(alloc::format!("{e}"))
}

/// Rounds per CPU in the storm (from `storm_rounds=`).
static STORM_ROUNDS: AtomicU64 = AtomicU64::new(0);

fn storm(me: usize) -> u64 {
    let online = smp::online();
    let n = online.count();
    let mut done = 0;
    for round in 0..STORM_ROUNDS.load(Ordering::Relaxed) {
        let target = (me + 1 + (round as usize % (n - 1))) % n;
        if SMP.call_single(target, hit, 0, true).is_ok() {
            done += 1;
        }
    }
    done
}

/// Every CPU issues synchronous calls at the others at the same time, at
/// IPL 0 outside interrupt handlers (as Linux requires). Each call must run
/// exactly once: total hits = total calls, and queued = run everywhere.
pub fn concurrent_storm(cfg: &BootConfig<'_>) -> Outcome {
    STORM_ROUNDS.store(cfg.storm_rounds, Ordering::Relaxed);
    let online = smp::online();
    if online.count() < 2 {
        return Ok(()); // nothing to storm with one CPU
    }
    let before: u64 = hits().iter().sum();
    let t0 = clock::now_ns();
    let done = smp::run_on_cpus(online, storm, 60_000_000_000).map_err(|c| {
        crate::run::selftest::Failure(alloc::format!("CPU {c} did not finish its rounds"))
    })?;
    let ns = clock::now_ns() - t0;
    let calls: u64 = done.iter().sum();
    check_eq!(
        calls,
        cfg.storm_rounds * online.count() as u64,
        "calls completed"
    );
    check_eq!(
        hits().iter().sum::<u64>() - before,
        calls,
        "calls run (none lost or doubled)"
    );
    crate::println!(
        "  storm: {calls} synchronous calls from {} CPUs in {} ms ({} ns per call per CPU)",
        online.count(),
        ns / 1_000_000,
        ns * online.count() as u64 / calls.max(1)
    );
    Ok(())
}

/// Sets the cross-call policy's `listen` for as long as it lives, and puts
/// the old value back (`alphasmp::listen`). Off, every message comes with
/// its interrupt: the tests of delivery by interrupt turn it off.
pub struct Listen(bool);

impl Listen {
    pub fn set(on: bool) -> Self {
        Listen(SMP.policy.listen.swap(on, Ordering::Relaxed))
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        SMP.policy.listen.store(self.0, Ordering::Relaxed);
    }
}

/// The two CPUs of [`listening_waiters_hear_calls`].
static PAIR: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
const PAIR_CALLS: u64 = 300;

fn call_the_other(me: usize) -> u64 {
    let other = if PAIR[0].load(Ordering::Relaxed) as usize == me {
        PAIR[1].load(Ordering::Relaxed)
    } else {
        PAIR[0].load(Ordering::Relaxed)
    } as usize;
    (0..PAIR_CALLS)
        .filter(|_| SMP.call_single(other, hit, 0, true).is_ok())
        .count() as u64
}

/// Two CPUs make synchronous calls to each other at once, with listening
/// on (their waits listen while they spin, under the wait policy in
/// force: spinning alone would starve the other CPU where the emulator
/// runs one CPU at a time): each call runs exactly once, the
/// senders skip interrupts to the listening waiter (without listening
/// none is skipped), the census counts what was heard, and nothing is
/// stranded.
pub fn listening_waiters_hear_calls(cfg: &BootConfig<'_>) -> Outcome {
    let i = &cfg.inject;
    if i.edge_loss || i.edge_loss_masked || i.masked_wait {
        // Listening stays off under injection (main.rs apply_policy):
        // turned on here, a dropped interrupt would count as stranded.
        return Ok(());
    }
    let me = cpus::this();
    let Some(other) = smp::online_cpus().find(|c| *c != me) else {
        return Ok(());
    };
    PAIR[0].store(me as u64, Ordering::Relaxed);
    PAIR[1].store(other as u64, Ordering::Relaxed);
    let pair = [me, other];
    let elided = || -> u64 {
        pair.iter()
            .map(|c| SMP.cpu(*c).stats.ipis_elided.load(Ordering::Relaxed))
            .sum()
    };
    let census = || pair.map(|c| SMP.cpu(c).census.counts());
    let (elided_before, census_before, hits_before) = (elided(), census(), hits());
    let done = {
        let _listen = Listen::set(true);
        smp::run_on_cpus(
            CpuMask(CpuMask::single(me).0 | CpuMask::single(other).0),
            call_the_other,
            60_000_000_000,
        )
    };
    let done = done.map_err(|c| {
        crate::run::selftest::Failure(alloc::format!("CPU {c} did not finish its calls"))
    })?;
    check_eq!(done[me] + done[other], 2 * PAIR_CALLS, "calls completed");
    let after = hits();
    check_eq!(
        (
            after[me] - hits_before[me],
            after[other] - hits_before[other]
        ),
        (PAIR_CALLS, PAIR_CALLS),
        "calls run on each CPU (none lost or doubled)"
    );
    let skipped = elided() - elided_before;
    let now = census();
    let heard: u64 = (0..2).map(|i| now[i].heard - census_before[i].heard).sum();
    let stranded: u64 = (0..2)
        .map(|i| now[i].stranded - census_before[i].stranded)
        .sum();
    crate::println!(
        "  listening: {skipped} of {} interrupts skipped, {heard} requests heard",
        2 * PAIR_CALLS
    );
    // Where waits spin (wait=spin, what wait=auto picks with a host core
    // per CPU), nearly every call finds its target waiting; where they nap
    // soon (adaptive, -icount) few may, and none is required.
    if !SMP.policy.nap.load(Ordering::Relaxed) {
        check!(
            skipped > 0,
            "no sender skipped an interrupt to a listening waiter"
        );
        check!(heard > 0, "the census counted no request as heard");
    }
    check_eq!(stranded, 0, "requests stranded");
    check!(
        !SMP.is_listening(me),
        "the caller still listens after its calls"
    );
    Ok(())
}

/// The wait policy of [`waits_for_an_idle_cpu_spin`] while it runs: waits
/// nap at once (no spin budget, nothing learned) except a wait for a CPU
/// asleep in its idle loop, which spins [`IDLE_SPIN_NS`] first
/// (`alphasmp::xcall::Policy::spin_idle`). Restores the boot's policy.
struct IdleCaseOnly([u64; 5]);

/// The idle case's spin in [`waits_for_an_idle_cpu_spin`]: far longer than
/// waking a CPU takes where CPUs run in parallel, short enough for an
/// emulator that runs one CPU at a time to spin through it eight times.
const IDLE_SPIN_NS: u64 = 2_000_000;

impl IdleCaseOnly {
    fn set() -> Self {
        let p = &SMP.policy;
        let was = [
            p.nap.swap(true, Ordering::Relaxed) as u64,
            p.adaptive.swap(true, Ordering::Relaxed) as u64,
            p.spin_before_nap.swap(0, Ordering::Relaxed),
            p.spin_floor.swap(0, Ordering::Relaxed),
            p.spin_idle
                .swap(clock::ns_to_cycles(IDLE_SPIN_NS), Ordering::Relaxed),
        ];
        IdleCaseOnly(was)
    }
}

impl Drop for IdleCaseOnly {
    fn drop(&mut self) {
        let p = &SMP.policy;
        let [nap, adaptive, before, floor, idle] = self.0;
        p.nap.store(nap != 0, Ordering::Relaxed);
        p.adaptive.store(adaptive != 0, Ordering::Relaxed);
        p.spin_before_nap.store(before, Ordering::Relaxed);
        p.spin_floor.store(floor, Ordering::Relaxed);
        p.spin_idle.store(idle, Ordering::Relaxed);
    }
}

/// A call's wait for a CPU asleep in its idle loop spins before it naps
/// (`spin_idle_us`), and the idle loop marks such a CPU: with every other
/// wait napping at once, calls are made to the next CPU, each once it is
/// seen asleep in its idle loop, until 8 have taken the idle case (32 at
/// most). Judged are the calls whose wait took the case (the CPU may wake
/// between the look and the call: a clock tick, a host that stops the
/// caller in between, or at once where `wtint` returns at once,
/// `wtint=returns`): a caller that napped in one must have lasted the
/// idle spin at least (where CPUs run in parallel the woken CPU runs the
/// call first and none naps; where an emulator runs one CPU at a time,
/// `-icount`, it cannot run until the caller naps). Where the boot's probe
/// found the CPUs running in parallel and `wtint` sleeps, at least one
/// call must take the case. Seen failing with the idle case off ("none
/// of 32 calls ... took the idle case").
pub fn waits_for_an_idle_cpu_spin(_: &BootConfig<'_>) -> Outcome {
    let me = cpus::this();
    let Some(other) = smp::online_cpus().find(|c| *c != me) else {
        return Ok(());
    };
    let st = &SMP.cpu(me).stats;
    let naps = || st.naps.load(Ordering::Relaxed);
    let idle_waits = || st.idle_waits.load(Ordering::Relaxed);
    let spin = clock::ns_to_cycles(IDLE_SPIN_NS);
    let (mut calls, mut seen, mut judged, mut spun) = (0u64, 0u64, 0u64, 0u64);
    let _policy = IdleCaseOnly::set();
    while calls < 32 && judged < 8 {
        calls += 1;
        let start = clock::now_ns();
        while !SMP.is_idle_asleep(other) && clock::now_ns() - start < 100_000_000 {
            core::hint::spin_loop();
        }
        seen += SMP.is_idle_asleep(other) as u64;
        let (before, idle_before, t0) = (naps(), idle_waits(), clock::cycles());
        SMP.call_single(other, hit, 0, true).map_err(fail)?;
        let took = clock::cycles().wrapping_sub(t0);
        if idle_waits() == idle_before {
            continue;
        }
        judged += 1;
        if naps() == before {
            spun += 1;
        } else {
            check!(
                took >= spin,
                "call {calls} to idle CPU {other} napped after {} ns, within the idle spin of {IDLE_SPIN_NS} ns",
                clock::cycles_to_ns(took)
            );
        }
    }
    crate::println!(
        "  idle target: {judged} of {calls} calls took the idle case ({seen} made once CPU {other} was seen asleep), {spun} of them without a nap"
    );
    if crate::waitprobe::ran_in_parallel() && !crate::pal::WTINT_RETURNS.load(Ordering::Relaxed) {
        check!(
            judged > 0,
            "none of {calls} calls to a CPU seen asleep in its idle loop ({seen} seen) took the idle case"
        );
    }
    Ok(())
}

static NESTED: AtomicU64 = AtomicU64::new(0);

fn wait_from_interrupt(_: usize) {
    let code = match SMP.call_single(0, hit, 0, true) {
        Err(XcallError::WaitInInterrupt) => 1,
        _ => 2,
    };
    NESTED.store(code, Ordering::Release);
}

pub fn misuse_is_refused(_: &BootConfig<'_>) -> Outcome {
    check_eq!(
        SMP.call_single(MAX_CPUS, hit, 0, true),
        Err(XcallError::NoSuchCpu(MAX_CPUS)),
        "CPU {MAX_CPUS}"
    );
    let offline = (0..MAX_CPUS).find(|c| !smp::is_online(*c));
    if let Some(c) = offline {
        check_eq!(
            SMP.call_single(c, hit, 0, false),
            Err(XcallError::Offline(c)),
            "offline CPU {c}"
        );
    }
    {
        let _g = ipl::IplGuard::raise(ipl::HIGH);
        check_eq!(
            SMP.on_each_cpu(hit, 0, true),
            Err(XcallError::WaitWithIpisMasked),
            "wait at IPL 7"
        );
    }
    if let Some(other) = smp::online_cpus().find(|c| *c != cpus::this()) {
        NESTED.store(0, Ordering::Relaxed);
        SMP.call_single(other, wait_from_interrupt, 0, false)
            .map_err(fail)?;
        let start = clock::now_ns();
        while NESTED.load(Ordering::Acquire) == 0
            && clock::now_ns() < start + super::platform::LIVENESS_NS
        {
            clock::pause_since(start);
        }
        check_eq!(
            NESTED.load(Ordering::Acquire),
            1,
            "waiting call from an IPI handler refused with WaitInInterrupt"
        );
    }
    check!(
        alloc::format!("{}", XcallError::Offline(3)).contains("CPU 3"),
        "error text names the CPU"
    );
    Ok(())
}

/// The books balance: every call queued anywhere was run exactly once.
pub fn counters_agree(_: &BootConfig<'_>) -> Outcome {
    let (mut queued, mut run) = (0, 0);
    for c in smp::online_cpus() {
        queued += SMP.cpu(c).stats.calls_queued.load(Ordering::Relaxed);
        run += SMP.cpu(c).stats.calls_run.load(Ordering::Relaxed);
    }
    check_eq!(run, queued, "calls run vs calls queued, all CPUs");
    Ok(())
}
