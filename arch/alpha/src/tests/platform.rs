//! Platform bring-up: every CPU online with its own identity and stack, the
//! IPL guard, the per-CPU tick at its configured rate, and IPI delivery.

use core::sync::atomic::Ordering;

use alphasmp::bootargs::BootConfig;
use alphasmp::mailbox::IpiMessage;

use crate::percpu::{CPUS, MAX_CPUS, STACK_SIZE};
use crate::selftest::Outcome;
use crate::{clock, cpus, ipi, ipl, smp};
use crate::smp::BOOT;
use crate::selftest::check;
use crate::selftest::check_eq;

pub fn all_cpus_online(_: &BootConfig<'_>) -> Outcome {
    let boot = BOOT.get().expect("boot info");
    let expected = boot.mapped_cpus;
    check_eq!(smp::online_count(), expected, "CPUs online vs CPUs chosen (HWRPB slots present, cpus=)");
    check_eq!(smp::online(), alphasmp::cpumask::CpuMask::first(expected), "online mask (logical ids are dense)");
    Ok(())
}

/// Each CPU recorded, for itself, what whami said, where its stack was and
/// which gp it registered; no IPIs involved.
pub fn per_cpu_identity(_: &BootConfig<'_>) -> Outcome {
    let boot = BOOT.get().expect("boot info");
    let mut stacks = [0u64; MAX_CPUS];
    for cpu in smp::online_cpus() {
        let me = &CPUS[cpu];
        check_eq!(Some(me.id_seen.load(Ordering::Relaxed)), cpus::physical(cpu), "whami recorded by CPU {cpu} (its physical id)");
        check_eq!(me.gp_seen.load(Ordering::Relaxed), boot.boot_gp, "kernel gp on CPU {cpu}");
        let sp = me.stack_seen.load(Ordering::Relaxed);
        if cpu != 0 {
            let (pcb, a2) = (me.pcb_phys.load(Ordering::Relaxed), me.entry_a2.load(Ordering::Relaxed));
            check_eq!(pcb, a2, "CPU {cpu}: PCB from its HWRPB slot vs what qemu-palcode passed in $18");
            let top = me.stack_top.load(Ordering::Relaxed);
            check!(sp < top && sp >= top - STACK_SIZE as u64, "CPU {cpu} runs on its own stack: sp {sp:#x}, stack top {top:#x}");
        }
        stacks[cpu] = sp;
    }
    for a in smp::online_cpus() {
        for b in smp::online_cpus().filter(|b| *b > a) {
            check!(stacks[a].abs_diff(stacks[b]) >= STACK_SIZE as u64 / 2, "CPUs {a} and {b} share a stack");
        }
    }
    // cpus::this() names a CPU by its stack; whami must agree, in task
    // context and inside an IPI handler.
    fn agrees(cpu: usize) -> u64 {
        (cpus::this() == cpu && cpus::from_whami() == cpu) as u64
    }
    let r = smp::run_on_cpus(smp::online(), agrees, 5_000_000_000);
    for cpu in smp::online_cpus() {
        check!(r.is_ok_and(|r| r[cpu] == 1), "CPU {cpu}: cpus::this() and whami disagree in task context ({r:?})");
    }
    static DISAGREE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    fn in_handler(_: usize) {
        if cpus::this() != cpus::from_whami() {
            DISAGREE.fetch_add(1, Ordering::Relaxed);
        }
    }
    check!(crate::platform::SMP.on_each_cpu(in_handler, 0, true).is_ok(), "on_each_cpu failed");
    check_eq!(DISAGREE.load(Ordering::Relaxed), 0, "CPUs where cpus::this() and whami disagree in an IPI handler");
    Ok(())
}

pub fn ipl_guard_nests(_: &BootConfig<'_>) -> Outcome {
    check_eq!(ipl::current(), ipl::ALL_ON, "self-tests run at IPL 0");
    {
        let g1 = ipl::IplGuard::raise(ipl::CLOCK);
        check_eq!(ipl::current(), ipl::CLOCK, "raised to 5");
        {
            let g2 = ipl::IplGuard::raise(ipl::DEVICE);
            check_eq!(ipl::current(), ipl::CLOCK, "a lower raise keeps 5");
            check_eq!(g2.previous(), ipl::CLOCK, "inner guard saved 5");
            let _g3 = ipl::IplGuard::raise(ipl::HIGH);
            check_eq!(ipl::current(), ipl::HIGH, "raised to 7");
        }
        check_eq!(ipl::current(), ipl::CLOCK, "inner guards restored 5");
        check_eq!(g1.previous(), ipl::ALL_ON, "outer guard saved 0");
    }
    check_eq!(ipl::current(), ipl::ALL_ON, "back at 0");
    Ok(())
}

/// Measurement window for the tick rate.
const WINDOW_NS: u64 = 500_000_000;

/// The tick arrives on every online CPU at the configured rate.
///
/// Tolerance: with the periodic source the tick is divided from the clock
/// interrupt by the cycle counter (deadlines advance by whole periods), and
/// with `clock=alarm` each deadline is the previous one plus a period, so in
/// both cases lateness does not accumulate. A window then holds rate x
/// window ticks up to +-1 from where its ends fall, plus the occasional tick
/// made late across the window's end when QEMU's vCPU threads compete for 2
/// host cores. +-10% (at least 2 ticks) covers both, and still fails for a
/// wrong rate, a wrong divider, a missing CPU or a tick that stops.
pub fn tick_rate(_: &BootConfig<'_>) -> Outcome {
    let before: [u64; MAX_CPUS] = core::array::from_fn(|c| CPUS[c].ticks.load(Ordering::Relaxed));
    let irqs_before: [u64; MAX_CPUS] = core::array::from_fn(|c| crate::interrupt::COUNTS[c][1].load(Ordering::Relaxed));
    let t0 = clock::now_ns();
    clock::delay_ns(WINDOW_NS);
    let elapsed = clock::now_ns() - t0;
    let expected = clock::tick_hz() * elapsed / 1_000_000_000;
    let slack = (expected / 10).max(2);
    for cpu in smp::online_cpus() {
        let got = CPUS[cpu].ticks.load(Ordering::Relaxed) - before[cpu];
        check!(got.abs_diff(expected) <= slack, "CPU {cpu}: {got} ticks in {} ms, expected {expected} +- {slack}", elapsed / 1_000_000);
        // The divider makes up ticks from the cycle counter, so the tick
        // count alone cannot tell a clock interrupt that arrives far too
        // seldom. With a periodic base at least twice the tick rate, every
        // tick must have had its own interrupt.
        let irqs = crate::interrupt::COUNTS[cpu][1].load(Ordering::Relaxed) - irqs_before[cpu];
        if clock::base_hz() >= 2 * clock::tick_hz() {
            check!(irqs >= got, "CPU {cpu}: {irqs} clock interrupts for {got} ticks (base {} Hz)", clock::base_hz());
        }
    }
    Ok(())
}

/// Time stays right when the cycle counter stops (srm-hardware.md 6
/// warns RPCC may stop in wtint, where napping waiters sit): periodic
/// interrupts that arrive while the counter stands still move the clock
/// by a base period each. QEMU's counter never stops, so the hook plays
/// three interrupts with no time between them.
pub fn interrupts_bound_time(_: &BootConfig<'_>) -> Outcome {
    let base = clock::base_hz();
    if base == 0 {
        // clock=alarm: no periodic reference, so no floor may move time.
        check_eq!(clock::simulate_stopped_counter(3), 0, "correction without a periodic interrupt");
        return Ok(());
    }
    let period = clock::cycle_freq() / base;
    let t0 = clock::cycles();
    let corrected = clock::simulate_stopped_counter(3);
    let t1 = clock::cycles();
    // The floor starts where the hook puts it and each of the three
    // interrupts vouches for one period; this CPU's clock stays that much
    // ahead afterwards (about 3 ms; nothing compares clocks across CPUs).
    check!(corrected >= 2 * period, "3 interrupts with the counter stopped corrected the clock by {corrected} cycles, period {period}");
    check!(t1 - t0 >= 2 * period, "the clock moved {} cycles across 3 stopped-counter interrupts (period {period})", t1 - t0);
    Ok(())
}

/// A PING to every other CPU is handled exactly once there, and arrives by
/// interrupt: the target must take IPI interrupts and most PINGs must not
/// be found by a poll (an idle CPU also polls its mailbox at each tick,
/// which would hand it a PING whose interrupt never came, so "handled"
/// alone proves no delivery).
pub fn ipi_ping(_: &BootConfig<'_>) -> Outcome {
    let me = crate::cpus::this();
    let idx = IpiMessage::PING.index();
    for cpu in smp::online_cpus().filter(|c| *c != me) {
        let irqs_before = crate::interrupt::COUNTS[cpu][0].load(Ordering::Relaxed);
        let st = &crate::platform::SMP.cpu(cpu).stats;
        let polled = || st.rescued[idx].load(Ordering::Relaxed) + st.idle_rescued[idx].load(Ordering::Relaxed);
        let polled_before = polled();
        for round in 0..100u64 {
            let (_, handled) = ipi::counts(cpu, idx);
            ipi::send(cpu, IpiMessage::PING);
            let end = clock::now_ns() + 100_000_000;
            while ipi::counts(cpu, idx).1 == handled {
                check!(clock::now_ns() < end, "CPU {cpu} did not handle PING round {round} within 100 ms");
                core::hint::spin_loop();
            }
            check_eq!(ipi::counts(cpu, idx).1, handled + 1, "CPU {cpu} handled PING round {round} once");
        }
        // Delivery by interrupt: the PINGs must be handled inside IPI
        // interrupts, not found by a poll (the idle loop's or a tick's). One
        // interrupt may handle many: its drain loop takes the next PING if
        // it is posted before the loop ends. A tick's poll may find one
        // just before its interrupt lands, so allow some, not most.
        let irqs = crate::interrupt::COUNTS[cpu][0].load(Ordering::Relaxed) - irqs_before;
        let by_poll = polled() - polled_before;
        check!(irqs >= 1 && by_poll <= 50, "CPU {cpu}: {by_poll} of 100 PINGs found by a poll, {irqs} IPI interrupts: they were not delivered by interrupt");
    }
    Ok(())
}

static SLOW_RUNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static FAST_RUNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn slow(_: usize) -> u64 {
    clock::delay_ns(50_000_000);
    SLOW_RUNS.fetch_add(1, Ordering::Relaxed);
    1
}

fn fast(_: usize) -> u64 {
    FAST_RUNS.fetch_add(1, Ordering::Relaxed);
    42
}

/// Work posted with `run_on_cpus` that times out must not be taken for the
/// next caller's: the next call's result is its own function's, and its
/// function runs.
pub fn run_on_cpus_timeout_is_clean(_: &BootConfig<'_>) -> Outcome {
    let me = cpus::this();
    let Some(t) = smp::online_cpus().find(|c| *c != me) else {
        // One CPU: run_on_cpus posts nothing to another CPU; nothing to check.
        return Ok(());
    };
    let (slow0, fast0) = (SLOW_RUNS.load(Ordering::Relaxed), FAST_RUNS.load(Ordering::Relaxed));
    let r = smp::run_on_cpus(alphasmp::cpumask::CpuMask::single(t), slow, 1_000_000);
    check_eq!(r.map(|_| ()), Err(t), "a 50 ms function with a 1 ms timeout times out on CPU {t}");
    let r = smp::run_on_cpus(alphasmp::cpumask::CpuMask::single(t), fast, 2_000_000_000);
    check!(r.is_ok(), "the next call on CPU {t} completes: {:?}", r.map(|_| ()));
    check_eq!(r.map(|o| o[t]).unwrap_or(0), 42, "the next call's result is its own");
    check_eq!(FAST_RUNS.load(Ordering::Relaxed) - fast0, 1, "the next call's function ran once");
    check!(SLOW_RUNS.load(Ordering::Relaxed) - slow0 <= 1, "the timed-out function ran at most once");
    Ok(())
}
