//! The cross-call protocol (src/xcall.rs) on the simulated machine: the
//! same code the kernel runs, with host threads as CPUs.

use std::sync::atomic::{AtomicU64, Ordering};

use alphasmp::cpumask::CpuMask;
use alphasmp::mailbox::IpiMessage;
use alphasmp::platform::{Platform, ipl};
use alphasmp::sim::{self, Line, SIM_CPUS, SimPlatform, SimSmp};
use alphasmp::xcall::XcallError;

/// Per-CPU hit counters, indexed by the CPU that ran the call; a test's
/// calls pass the counter block's address as the argument.
struct Hits([AtomicU64; SIM_CPUS]);

fn hits() -> &'static Hits {
    Box::leak(Box::new(Hits([const { AtomicU64::new(0) }; SIM_CPUS])))
}

fn record(arg: usize) {
    // SAFETY: every call passes the address of a leaked (never freed) `Hits`.
    let h = unsafe { &*(arg as *const Hits) };
    h.0[sim::current_cpu()].fetch_add(1, Ordering::Relaxed);
}

fn snapshot(h: &Hits) -> [u64; SIM_CPUS] {
    std::array::from_fn(|i| h.0[i].load(Ordering::Relaxed))
}

fn machine(cpus: usize) -> &'static SimSmp {
    SimPlatform::machine(Line::Latch, 0, 0, cpus)
}

#[test]
fn call_single_runs_once_on_the_target_only() {
    let smp = machine(4);
    let h = hits();
    SimPlatform::run(smp, 4, move |me| {
        if me == 0 {
            smp.call_single(2, record, h as *const Hits as usize, true)
                .unwrap();
            assert_eq!(
                snapshot(h),
                [0, 0, 1, 0],
                "wait=true returns after the call ran"
            );
            smp.call_single(3, record, h as *const Hits as usize, false)
                .unwrap();
            smp.call_single(0, record, h as *const Hits as usize, true)
                .unwrap();
        }
    });
    assert_eq!(
        snapshot(h),
        [1, 0, 1, 1],
        "each call ran exactly once, where it was sent"
    );
}

#[test]
fn call_many_and_on_each_cpu_reach_exactly_their_masks() {
    let smp = machine(4);
    let h = hits();
    SimPlatform::run(smp, 4, move |me| {
        if me == 1 {
            let arg = h as *const Hits as usize;
            smp.call_many(CpuMask(0b1011), record, arg, true).unwrap();
            assert_eq!(snapshot(h), [1, 1, 0, 1]);
            smp.on_each_cpu(record, arg, true).unwrap();
            assert_eq!(snapshot(h), [2, 2, 1, 2]);
            smp.call_many(CpuMask(0b0100), record, arg, false).unwrap();
        }
    });
    assert_eq!(snapshot(h), [2, 2, 2, 2], "the no-wait call still ran");
}

/// A broadcast asks the platform for all its interrupts at once
/// (`Platform::request_ipis`: on QEMU's clipper one Cchip store wakes every
/// target), after every target's message is posted; a single call asks for
/// its one interrupt alone. Every target's census numbers and counts its
/// request as for a lone message, and every call runs once.
#[test]
fn a_broadcast_requests_its_interrupts_at_once() {
    let smp = machine(4);
    let h = hits();
    SimPlatform::run(smp, 4, move |me| {
        if me == 0 {
            let arg = h as *const Hits as usize;
            smp.on_each_cpu(record, arg, true).unwrap();
            smp.call_single(2, record, arg, true).unwrap();
            smp.call_many(CpuMask(0b1010), record, arg, true).unwrap();
        }
    });
    assert_eq!(snapshot(h), [1, 2, 2, 2], "each call ran once, where sent");
    let sender = &smp.platform.cpus[0];
    assert_eq!(
        sender.ipi_batches.load(Ordering::Relaxed),
        2,
        "one request for the broadcast and one for the two-CPU call, none for the single call"
    );
    assert_eq!(sender.batched_ipis.load(Ordering::Relaxed), 3 + 2);
    for cpu in 1..4 {
        let k = smp.cpu(cpu).census.counts();
        let calls = snapshot(h)[cpu];
        assert_eq!(
            k.requests, calls,
            "CPU {cpu}: one request numbered per call"
        );
        assert_eq!(k.dropped, 0, "CPU {cpu}: nothing dropped on a latched line");
    }
    for cpu in 1..4 {
        assert_eq!(
            smp.platform.cpus[cpu].ipi_batches.load(Ordering::Relaxed),
            0
        );
    }
}

/// CPU `me`'s part of a 4-CPU storm: `rounds` synchronous calls, the
/// target rotating over the other three.
fn storm_rounds(smp: &SimSmp, h: &Hits, me: usize, rounds: u64) {
    let arg = h as *const Hits as usize;
    for round in 0..rounds {
        let target = (me + 1 + (round as usize % 3)) % 4;
        smp.call_single(target, record, arg, true).unwrap();
    }
}

/// Every CPU sends synchronous calls to every other CPU at once, at IPL 0.
#[test]
fn concurrent_synchronous_calls_are_neither_lost_nor_duplicated() {
    const ROUNDS: u64 = 2_000;
    let smp = machine(4);
    let h = hits();
    SimPlatform::run(smp, 4, move |me| storm_rounds(smp, h, me, ROUNDS));
    let total: u64 = snapshot(h).iter().sum();
    assert_eq!(
        total,
        4 * ROUNDS,
        "every call ran exactly once: {:?}",
        snapshot(h)
    );
    let queued: u64 = (0..4)
        .map(|c| smp.cpu(c).stats.calls_queued.load(Ordering::Relaxed))
        .sum();
    let run: u64 = (0..4)
        .map(|c| smp.cpu(c).stats.calls_run.load(Ordering::Relaxed))
        .sum();
    assert_eq!((queued, run), (4 * ROUNDS, 4 * ROUNDS));
    let wakes: u64 = (0..4)
        .map(|c| smp.cpu(c).stats.wakes_sent.load(Ordering::Relaxed))
        .sum();
    assert_eq!(wakes, 0, "nap policy off: nobody naps, so no wake IPIs");
    let elided: u64 = (0..4)
        .map(|c| smp.cpu(c).stats.ipis_elided.load(Ordering::Relaxed))
        .sum();
    assert_eq!(elided, 0, "listening off: every message has its interrupt");
}

/// The same storm with listening on (src/listen.rs): every call still
/// runs exactly once, senders skip interrupts to listening waiters, the
/// census serves what was heard and strands nothing. With listening off
/// (the test above) nothing is skipped.
#[test]
fn listening_waiters_hear_calls_without_interrupts() {
    const ROUNDS: u64 = 2_000;
    let smp = machine(4);
    smp.policy.listen.store(true, Ordering::Relaxed);
    let h = hits();
    SimPlatform::run(smp, 4, move |me| {
        storm_rounds(smp, h, me, ROUNDS);
        assert!(!smp.is_listening(me), "a caller stops listening on return");
    });
    let total: u64 = snapshot(h).iter().sum();
    assert_eq!(total, 4 * ROUNDS, "every call ran exactly once");
    let sum = |f: &dyn Fn(usize) -> u64| (0..4).map(f).sum::<u64>();
    let elided = sum(&|c| smp.cpu(c).stats.ipis_elided.load(Ordering::Relaxed));
    let heard = sum(&|c| smp.cpu(c).census.counts().heard);
    let stranded = sum(&|c| smp.cpu(c).census.counts().stranded);
    assert!(elided > 0, "no interrupt skipped");
    assert!(heard > 0, "no request heard");
    assert_eq!(stranded, 0);
    assert!(
        (0..4).all(|c| !smp.cpu(c).call_pending() && smp.cpu(c).mailbox.peek().is_empty()),
        "nothing left behind"
    );
}

fn nothing(_: usize) {}

/// Waits until `step` holds `n`: two CPUs of a test taking turns. Bounded,
/// so that a failed assertion on one CPU fails the test rather than leave
/// the other waiting for ever.
fn await_value(step: &AtomicU64, n: u64) {
    let start = std::time::Instant::now();
    while step.load(Ordering::SeqCst) != n {
        assert!(start.elapsed().as_secs() < 10, "step {n} never came");
        std::hint::spin_loop();
    }
}

/// The public listening calls, which the platform's idle loop uses: a CPU
/// that listens hears a call posted to it without its interrupt, `hear`
/// tells how many mailbox batches it took, and `stop_listening` hears
/// what was posted just before the stop.
#[test]
fn a_listening_cpu_hears_by_hear_and_by_its_stop() {
    static RAN: AtomicU64 = AtomicU64::new(0);
    static STEP: AtomicU64 = AtomicU64::new(0);
    fn mark(_: usize) {
        RAN.fetch_add(1, Ordering::SeqCst);
    }
    let await_step = |n| await_value(&STEP, n);
    let smp = machine(2);
    smp.policy.listen.store(true, Ordering::Relaxed);
    SimPlatform::run(smp, 2, move |me| {
        if me == 1 {
            assert!(smp.start_listening());
            assert!(smp.is_listening(1));
            assert_eq!(smp.hear(), 0, "nothing posted yet");
            STEP.store(1, Ordering::SeqCst);
            await_step(2);
            assert_eq!(smp.hear(), 1, "one batch heard");
            assert_eq!(RAN.load(Ordering::SeqCst), 1);
            STEP.store(3, Ordering::SeqCst);
            await_step(4);
            smp.stop_listening();
            assert_eq!(
                RAN.load(Ordering::SeqCst),
                2,
                "the stop heard the second call"
            );
            assert!(!smp.is_listening(1));
        } else {
            await_step(1);
            smp.call_single(1, mark, 0, false).unwrap();
            STEP.store(2, Ordering::SeqCst);
            await_step(3);
            smp.call_single(1, mark, 0, false).unwrap();
            STEP.store(4, Ordering::SeqCst);
        }
    });
    assert_eq!(
        smp.cpu(1).stats.ipis_elided.load(Ordering::Relaxed),
        2,
        "both calls went without their interrupt"
    );
}

/// An interrupt between a listening CPU's stop and its last look
/// (`alphasmp::listen`, "Interrupts in the stop"): its poll takes a call
/// whose sender skipped the interrupt, and the census must count that
/// request heard, as the look would have, not leave it to be judged
/// stranded (an IPI reported lost that was never sent). The simulator
/// takes interrupts at `Platform::may_interrupt`, inside the stop; a
/// performance-counter interrupt at every delivery point brings one there.
#[test]
fn an_interrupt_inside_the_stop_counts_the_call_heard() {
    static RAN: AtomicU64 = AtomicU64::new(0);
    static STEP: AtomicU64 = AtomicU64::new(0);
    fn mark(_: usize) {
        RAN.fetch_add(1, Ordering::SeqCst);
    }
    let await_step = |n| await_value(&STEP, n);
    let smp = machine(2);
    smp.policy.listen.store(true, Ordering::Relaxed);
    smp.policy.poll_in_irq.store(true, Ordering::Relaxed);
    SimPlatform::run(smp, 2, move |me| {
        if me == 1 {
            assert!(smp.start_listening());
            STEP.store(1, Ordering::SeqCst);
            await_step(2);
            // From now on an interrupt at every delivery point: the first
            // is the stop's.
            smp.platform.perf_every.store(1, Ordering::SeqCst);
            smp.stop_listening();
            smp.platform.perf_every.store(0, Ordering::SeqCst);
            assert_eq!(RAN.load(Ordering::SeqCst), 1, "the call ran");
        } else {
            await_step(1);
            smp.call_single(1, mark, 0, false).unwrap();
            STEP.store(2, Ordering::SeqCst);
        }
    });
    let st = &smp.cpu(1).stats;
    assert_eq!(
        st.ipis_elided.load(Ordering::Relaxed),
        1,
        "the call went without its interrupt"
    );
    assert_eq!(
        st.rescued[IpiMessage::CALL_FUNCTION.index()].load(Ordering::Relaxed),
        1,
        "the interrupt inside the stop took it, not the stop's look"
    );
    let k = smp.cpu(1).census.counts();
    assert_eq!(
        (k.requests, k.heard, k.open()),
        (1, 1, 0),
        "the census: {k:?}"
    );
}

/// A waiting caller listens from its IPIs to its return, its own share
/// of a broadcast included (`call_many_tracked`'s listening guard); a
/// caller that does not wait does not listen.
#[test]
fn a_waiting_caller_listens_while_it_runs_its_own_share() {
    static SEEN: AtomicU64 = AtomicU64::new(0);
    fn note(arg: usize) {
        // SAFETY: the test passes its leaked (never freed) machine.
        let smp = unsafe { &*(arg as *const SimSmp) };
        if sim::current_cpu() == 0 {
            SEEN.store(1 + u64::from(smp.is_listening(0)), Ordering::SeqCst);
        }
    }
    let smp = machine(2);
    smp.policy.listen.store(true, Ordering::Relaxed);
    SimPlatform::run(smp, 2, move |me| {
        if me == 0 {
            let arg = smp as *const SimSmp as usize;
            smp.on_each_cpu(note, arg, true).unwrap();
            assert_eq!(
                SEEN.load(Ordering::SeqCst),
                2,
                "it listened during its own share"
            );
            assert!(!smp.is_listening(0), "it stops listening on return");
            smp.on_each_cpu(note, arg, false).unwrap();
            assert_eq!(
                SEEN.load(Ordering::SeqCst),
                1,
                "a caller that does not wait"
            );
        }
    });
}

/// A caller whose descriptor is still in use (its earlier no-wait call
/// to the same CPU, which has IPIs masked, has not been taken yet) waits
/// for it listening, and stops listening when that wait ends: a no-wait
/// call never returns listening.
#[test]
fn a_wait_for_a_busy_descriptor_stops_listening_when_it_ends() {
    static STEP: AtomicU64 = AtomicU64::new(0);
    let smp = machine(2);
    smp.policy.listen.store(true, Ordering::Relaxed);
    SimPlatform::run(smp, 2, move |me| {
        if me == 1 {
            let prev = smp.platform.raise_ipl(ipl::HIGH);
            STEP.store(1, Ordering::SeqCst);
            // CPU 0's second call waits for its descriptor, listening,
            // until this CPU takes the first: keep it masked till then.
            let start = std::time::Instant::now();
            while !smp.is_listening(0) {
                assert!(
                    start.elapsed().as_secs() < 10,
                    "CPU 0 never waited listening"
                );
                std::hint::spin_loop();
            }
            smp.platform.restore_ipl(prev);
        } else {
            while STEP.load(Ordering::SeqCst) != 1 {
                std::hint::spin_loop();
            }
            smp.call_single(1, nothing, 0, false).unwrap();
            // The descriptor is locked until CPU 1 takes the first call.
            smp.call_single(1, nothing, 0, false).unwrap();
            assert!(!smp.is_listening(0), "it returned listening");
        }
    });
}

/// In an interrupt handler (the platform's, not only a drain) a caller
/// may not wait, and `in_interrupt` says where it is.
#[test]
fn a_caller_in_an_interrupt_handler_may_not_wait() {
    let smp = machine(2);
    SimPlatform::run(smp, 2, move |me| {
        if me != 0 {
            return;
        }
        assert!(!smp.in_interrupt());
        smp.platform.cpus[0]
            .in_handler
            .store(true, Ordering::Release);
        let inside = smp.in_interrupt();
        let r = smp.call_single(1, nothing, 0, true);
        smp.platform.cpus[0]
            .in_handler
            .store(false, Ordering::Release);
        assert!(inside);
        assert_eq!(r, Err(XcallError::WaitInInterrupt));
    });
}

#[test]
fn misuse_is_refused_with_an_error() {
    let smp = machine(2);
    SimPlatform::run(smp, 2, move |me| {
        if me != 0 {
            return;
        }
        assert_eq!(
            smp.call_single(7, nothing, 0, true),
            Err(XcallError::NoSuchCpu(7))
        );
        assert_eq!(
            smp.call_single(3, nothing, 0, true),
            Err(XcallError::Offline(3))
        );
        assert_eq!(
            smp.call_many(CpuMask(0b1001), nothing, 0, false),
            Err(XcallError::Offline(3))
        );
        let prev = smp.platform.raise_ipl(ipl::HIGH);
        assert_eq!(
            smp.call_single(1, nothing, 0, true),
            Err(XcallError::WaitWithIpisMasked)
        );
        smp.platform.restore_ipl(prev);
        assert!(XcallError::Offline(3).to_string().contains("CPU 3"));
    });
}

fn nested_wait(arg: usize) {
    // Runs in CPU 1's IPI handler: a waiting call from here must be refused.
    // SAFETY: the argument is the address of the leaked, 'static core.
    let smp = unsafe { &*(arg as *const SimSmp) };
    let r = smp.call_single(0, nothing, 0, true);
    NESTED.store(
        if r == Err(XcallError::WaitInInterrupt) {
            1
        } else {
            2
        },
        Ordering::Relaxed,
    );
}

static NESTED: AtomicU64 = AtomicU64::new(0);

#[test]
fn waiting_call_from_interrupt_context_is_refused() {
    let smp = machine(2);
    SimPlatform::run(smp, 2, move |me| {
        if me == 0 {
            smp.call_single(1, nested_wait, smp as *const SimSmp as usize, true)
                .unwrap();
        }
    });
    assert_eq!(
        NESTED.load(Ordering::Relaxed),
        1,
        "the nested waiting call got WaitInInterrupt"
    );
}

/// A `call_many` that gives up (here: the watchdog aborts
/// its wait for the descriptor of a later target) must not leave a call on
/// an earlier target's queue with no IPI sent. If it does, that queue is
/// non-empty with no mailbox bit, nothing ever looks at it, and every later
/// call to that CPU piggybacks on it (no IPI: "one is already on its way")
/// and hangs. Seeded scheduler, watchdog abort after one report.
#[test]
fn an_aborted_call_many_strands_no_call() {
    for seed in 0..8 {
        let smp: &SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, 4, seed);
        smp.policy.watchdog_cycles.store(2_000, Ordering::Relaxed);
        smp.policy.abort_after.store(1, Ordering::Relaxed);
        let h = hits();
        let stage: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let wait_for = move |n: u64| {
            while stage.load(Ordering::Acquire) < n {
                smp.platform.relax();
            }
        };
        SimPlatform::run(smp, 4, move |me| {
            let arg = h as *const Hits as usize;
            match me {
                // CPU 2 sits at IPL 7 until the others are done: a call to it
                // stays in flight.
                2 => {
                    let prev = smp.platform.raise_ipl(ipl::HIGH);
                    stage.store(1, Ordering::Release);
                    wait_for(3);
                    smp.platform.restore_ipl(prev);
                }
                0 => {
                    wait_for(1);
                    smp.call_single(2, record, arg, false).unwrap();
                    // CPU 0's descriptor for CPU 2 is still in flight, so this
                    // waits for it (after queueing on CPU 1, on the old code)
                    // until the watchdog gives up.
                    assert_eq!(
                        smp.call_many(CpuMask(0b0110), record, arg, true),
                        Err(XcallError::Stalled { target: 2 }),
                        "seed {seed}"
                    );
                    stage.store(2, Ordering::Release);
                }
                3 => {
                    wait_for(2);
                    let r = smp.call_single(1, record, arg, true);
                    stage.store(3, Ordering::Release);
                    assert_eq!(
                        r,
                        Ok(()),
                        "seed {seed}: a call to CPU 1 after CPU 0's aborted call_many"
                    );
                }
                _ => {}
            }
        });
        for c in 0..4 {
            assert!(
                !smp.cpu(c).call_pending(),
                "seed {seed}: CPU {c} has a call queued"
            );
        }
    }
}

/// A no-wait call made with IPIs masked must not spin on
/// its descriptor. CPUs 0 and 1 each sit at IPL 7 (task context) and send
/// the other two no-wait calls: the second finds its descriptor still in
/// flight (the target cannot take the first until it lowers its IPL). If it
/// waits for it, both CPUs wait for each other for ever (here the watchdog
/// gives up with Stalled). It must not block: Ok or Busy, and once the IPLs
/// drop, every call that was accepted runs.
#[test]
fn no_wait_calls_with_ipis_masked_do_not_block() {
    for seed in 0..8 {
        let smp: &SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, 2, seed);
        smp.policy.watchdog_cycles.store(2_000, Ordering::Relaxed);
        smp.policy.abort_after.store(1, Ordering::Relaxed);
        let h = hits();
        let accepted: &'static [AtomicU64; 2] =
            Box::leak(Box::new([const { AtomicU64::new(0) }; 2]));
        SimPlatform::run(smp, 2, move |me| {
            let other = 1 - me;
            let prev = smp.platform.raise_ipl(ipl::HIGH);
            for _ in 0..2 {
                match smp.call_single(other, record, h as *const Hits as usize, false) {
                    Ok(()) => {
                        accepted[other].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(XcallError::Busy { target }) => assert_eq!(target, other),
                    Err(e) => {
                        panic!("seed {seed}: CPU {me}: a no-wait call at IPL 7 returned {e:?}")
                    }
                }
            }
            smp.platform.restore_ipl(prev);
        });
        let want: [u64; 2] = std::array::from_fn(|c| accepted[c].load(Ordering::Relaxed));
        assert_eq!(
            snapshot(h)[..2],
            want,
            "seed {seed}: every accepted call ran once"
        );
    }
}

/// What the calls made by `calls_from_a_drain` returned (waiting, no-wait).
static DRAINED: std::sync::Mutex<Vec<Result<(), XcallError>>> = std::sync::Mutex::new(Vec::new());

fn calls_from_a_drain(arg: usize) {
    // SAFETY: the argument is the address of the leaked, 'static core.
    let smp = unsafe { &*(arg as *const SimSmp) };
    let wait = smp.call_single(0, nothing, 0, true);
    let nowait = smp.call_single(0, nothing, 0, false);
    DRAINED.lock().unwrap().extend([wait, nowait]);
}

/// A function run by a drain of the mailbox outside an
/// interrupt handler (the kernel's idle loop drains with IPIs masked, the
/// serialization lock's wait loop at IPL 7) runs as interrupt context, as
/// it would from the IPI: a waiting call from it is refused with
/// WaitInInterrupt, like one from the handler, even with the masked-wait
/// fault injection on (which lets *task* code wait at a masked IPL), and a
/// no-wait call is accepted without blocking.
#[test]
fn functions_run_by_a_drain_are_interrupt_context() {
    let smp = machine(2);
    smp.policy.allow_masked_wait.store(true, Ordering::Relaxed);
    SimPlatform::run(smp, 2, move |me| {
        if me == 0 {
            smp.call_single(1, calls_from_a_drain, smp as *const SimSmp as usize, false)
                .unwrap();
        } else {
            // CPU 1 drains its mailbox from task context, as the idle loop
            // does, instead of taking the IPI.
            let prev = smp.platform.raise_ipl(smp.platform.ipi_ipl());
            while !smp
                .cpu(1)
                .mailbox
                .peek()
                .contains(alphasmp::mailbox::IpiMessage::CALL_FUNCTION)
            {
                std::thread::yield_now();
            }
            assert!(!smp.platform.in_interrupt());
            smp.handle_ipi();
            smp.platform.restore_ipl(prev);
        }
    });
    assert_eq!(
        *DRAINED.lock().unwrap(),
        [Err(XcallError::WaitInInterrupt), Ok(())],
        "a drained function's waiting and no-wait calls"
    );
}

/// A 2-CPU machine whose IPIs are masked from IPL 5 (EV6/EV7 OSF PALcode:
/// IPIs share the clock's level), seeded, with the watchdog's abort.
fn ipl5_machine(seed: u64) -> &'static SimSmp {
    let smp: &SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, 2, seed);
    smp.platform.ipi_ipl.store(5, Ordering::Relaxed);
    smp.policy.watchdog_cycles.store(2_000, Ordering::Relaxed);
    smp.policy.abort_after.store(1, Ordering::Relaxed);
    smp
}

/// The core must take "IPIs masked" from the platform.
/// On a machine that masks IPIs from IPL 5, a waiting call at IPL 5 is a
/// waiting call with IPIs masked and is refused (the core's old constant
/// 6 let it through).
#[test]
fn waiting_at_the_platforms_ipi_level_is_refused() {
    let smp = ipl5_machine(0);
    SimPlatform::run(smp, 2, move |me| {
        if me == 0 {
            let prev = smp.platform.raise_ipl(5);
            let r = smp.call_single(1, nothing, 0, true);
            smp.platform.restore_ipl(prev);
            assert_eq!(
                r,
                Err(XcallError::WaitWithIpisMasked),
                "a waiting call at IPL 5 on a machine that masks IPIs from 5"
            );
        }
    });
}

/// The platform's IPI level, with the masked no-wait deadlock above: at IPL 5 on that machine,
/// two CPUs sending each other no-wait calls must not block (Ok or Busy).
#[test]
fn no_wait_calls_at_the_platforms_ipi_level_do_not_block() {
    for seed in 0..8 {
        let smp = ipl5_machine(seed);
        SimPlatform::run(smp, 2, move |me| {
            let prev = smp.platform.raise_ipl(5);
            for _ in 0..2 {
                match smp.call_single(1 - me, nothing, 0, false) {
                    Ok(()) | Err(XcallError::Busy { .. }) => {}
                    Err(e) => {
                        panic!("seed {seed}: CPU {me}: a no-wait call at IPL 5 returned {e:?}")
                    }
                }
            }
            smp.platform.restore_ipl(prev);
        });
    }
}

/// `send_message` posts the message and interrupts the target (here
/// CPU_STOP, which the simulator's `on_message` records), and refuses a CPU
/// number beyond the machine (as `wake_if_napping` ignores one).
#[test]
fn send_message_reaches_its_target_and_refuses_no_such_cpu() {
    use alphasmp::mailbox::IpiMessage;
    let smp = machine(2);
    SimPlatform::run(smp, 2, move |me| {
        if me == 0 {
            assert_eq!(
                smp.send_message(SIM_CPUS, IpiMessage::PING),
                Err(XcallError::NoSuchCpu(SIM_CPUS))
            );
            // A platform may call the wake side for any CPU number: beyond
            // the machine there is nobody to wake.
            smp.wake_if_napping(SIM_CPUS);
            assert_eq!(smp.send_message(1, IpiMessage::CPU_STOP), Ok(()));
        }
    });
    assert!(
        smp.platform.cpus[1].stopped.load(Ordering::Acquire),
        "CPU 1 handled the CPU_STOP it was sent"
    );
    assert!(
        !smp.platform.cpus[0].stopped.load(Ordering::Acquire),
        "CPU 0 was sent none"
    );
    assert_eq!(
        smp.cpu(1).ipi_sent[IpiMessage::CPU_STOP.index()].load(Ordering::Relaxed),
        1
    );
}

/// The idle loop's poll (`poll_when_idle`): with the poll policy off it
/// leaves the mailbox alone; with it on, a CPU whose IPI has not been taken
/// (here: it sits at IPL 7 in task context) runs the queued call from the
/// poll, which returns the one batch it took and counts an idle rescue (not
/// an in-interrupt one); with nothing pending it returns 0. `call_pending`
/// sees the call while it waits in the queue.
#[test]
fn the_idle_poll_runs_what_the_mailbox_holds() {
    use alphasmp::mailbox::IpiMessage;
    let smp = machine(2);
    let h = hits();
    let stage: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let wait_for = move |n: u64| {
        while stage.load(Ordering::Acquire) < n {
            std::thread::yield_now();
        }
    };
    SimPlatform::run(smp, 2, move |me| {
        if me == 0 {
            wait_for(1);
            smp.call_single(1, record, h as *const Hits as usize, false)
                .unwrap();
            stage.store(2, Ordering::Release);
            return;
        }
        let prev = smp.platform.raise_ipl(ipl::HIGH);
        stage.store(1, Ordering::Release);
        wait_for(2);
        assert!(smp.cpu(1).call_pending(), "the call waits in CPU 1's queue");
        assert_eq!(
            smp.poll_when_idle(),
            0,
            "poll policy off: the idle poll does nothing"
        );
        assert_eq!(snapshot(h)[..2], [0, 0]);
        smp.policy.poll_in_irq.store(true, Ordering::Relaxed);
        assert_eq!(smp.poll_when_idle(), 1, "one mailbox batch taken");
        assert_eq!(snapshot(h)[..2], [0, 1], "the idle poll ran the call");
        assert!(!smp.cpu(1).call_pending());
        let call = IpiMessage::CALL_FUNCTION.index();
        assert_eq!(
            smp.cpu(1).stats.idle_rescued[call].load(Ordering::Relaxed),
            1
        );
        assert_eq!(
            smp.cpu(1).stats.rescued[call].load(Ordering::Relaxed),
            0,
            "an idle rescue, not an in-interrupt one"
        );
        assert_eq!(smp.poll_when_idle(), 0, "nothing pending");
        smp.platform.restore_ipl(prev);
    });
    assert_eq!(snapshot(h)[..2], [0, 1], "the call ran once");
}

/// A task-context no-wait call whose descriptor for the target is still in
/// flight waits for it (it may block; only interrupt context and masked
/// IPLs must not), and while it waits, the waiter's `waiting_for` names the
/// target (1 + its number; 0 when not waiting): what watchdog reports show
/// wait cycles with. CPU 1 sits at IPL 7 until it sees CPU 0 waiting for it.
#[test]
fn a_task_no_wait_call_waits_for_its_busy_descriptor() {
    let smp = machine(2);
    let h = hits();
    let stage: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let seen_waiting: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(u64::MAX)));
    SimPlatform::run(smp, 2, move |me| {
        let arg = h as *const Hits as usize;
        if me == 0 {
            while stage.load(Ordering::Acquire) < 1 {
                std::thread::yield_now();
            }
            assert_eq!(
                smp.cpu(0).waiting_for.load(Ordering::Relaxed),
                0,
                "not waiting yet"
            );
            smp.call_single(1, record, arg, false).unwrap();
            // The same descriptor, still queued on CPU 1: wait for it.
            let r = smp.call_single(1, record, arg, false);
            stage.store(2, Ordering::Release);
            assert_eq!(
                r,
                Ok(()),
                "a task-context no-wait call waits for its descriptor"
            );
            assert_eq!(
                smp.cpu(0).waiting_for.load(Ordering::Relaxed),
                0,
                "done waiting"
            );
        } else {
            let prev = smp.platform.raise_ipl(ipl::HIGH);
            stage.store(1, Ordering::Release);
            loop {
                let w = smp.cpu(0).waiting_for.load(Ordering::Relaxed);
                if w != 0 || stage.load(Ordering::Acquire) >= 2 {
                    seen_waiting.store(w as u64, Ordering::Relaxed);
                    break;
                }
                std::thread::yield_now();
            }
            smp.platform.restore_ipl(prev);
        }
    });
    assert_eq!(
        seen_waiting.load(Ordering::Relaxed),
        2,
        "CPU 0's waiting_for while it waited for CPU 1 (1 + 1)"
    );
    assert_eq!(snapshot(h)[..2], [0, 2], "both calls ran on CPU 1");
}

/// The watchdog reports once per bound and gives up at `abort_after`
/// reports: with a bound of B cycles and abort after 3, a wait for a CPU
/// that never takes the call ends in Stalled at the third report, when the
/// wait reaches 3 B cycles (only CPU 0 runs, seeded, so a cycle is one
/// step of its wait loop and the count is exact), at the first clock read
/// from then on: a spinning waiter reads the clock once per
/// `LOOKS_PER_CLOCK_READ` looks. CPU 1 is online but never runs.
#[test]
fn the_watchdog_reports_once_per_bound_then_gives_up() {
    const B: u64 = 500;
    let smp: &SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, 2, 0);
    // One pointer for the call and the check: Rust does not promise one
    // address per function (a codegen unit may hold its own copy).
    let f: fn(usize) = nothing;
    smp.policy.watchdog_cycles.store(B, Ordering::Relaxed);
    smp.policy.abort_after.store(3, Ordering::Relaxed);
    let waited = SimPlatform::run_on(smp, CpuMask::single(0), move |_| {
        let before = smp.platform.cycles();
        assert_eq!(
            smp.call_single(1, f, 0, true),
            Err(XcallError::Stalled { target: 1 })
        );
        smp.platform.cycles() - before
    })[0];
    assert_eq!(
        smp.platform.stalls.load(Ordering::Relaxed),
        3,
        "one report per bound, up to abort_after"
    );
    assert_eq!(smp.cpu(0).stats.stalls.load(Ordering::Relaxed), 3);
    let reads_every = u64::from(alphasmp::xcall::LOOKS_PER_CLOCK_READ);
    assert!(
        (3 * B..3 * B + reads_every).contains(&waited),
        "gave up after {waited} cycles: the k-th report comes at the first clock read once the wait reaches k bounds"
    );
    // The last report describes the stalled wait as it stood.
    let r = smp.platform.last_stall.lock().unwrap().expect("a report");
    assert_eq!((r.waiter, r.target, r.nth), (0, 1, 3));
    assert!(
        (3 * B..=waited).contains(&r.waited_cycles),
        "the report's wait: {} cycles",
        r.waited_cycles
    );
    assert!(
        r.target_queue_pending,
        "the call still sits in CPU 1's queue"
    );
    assert_eq!(
        r.target_mailbox,
        alphasmp::mailbox::IpiMessage::CALL_FUNCTION
    );
    assert_eq!(r.target_waiting_for, None, "CPU 1 waits for nobody");
    assert_eq!((r.func, r.arg), (f as usize, 0));
}

/// Without `abort_after` the watchdog only reports: a wait that lasts past
/// two bounds (CPU 1 sits at IPL 7 until it has seen two reports) still
/// completes, after exactly two reports and at least two bounds.
#[test]
fn without_abort_the_watchdog_only_reports() {
    const B: u64 = 500;
    for seed in 0..4 {
        let smp: &SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, 2, seed);
        smp.policy.watchdog_cycles.store(B, Ordering::Relaxed);
        let h = hits();
        let returned: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let waited = SimPlatform::run(smp, 2, move |me| {
            if me == 0 {
                let before = smp.platform.cycles();
                let r = smp.call_single(1, record, h as *const Hits as usize, true);
                returned.store(1, Ordering::Release);
                assert_eq!(
                    r,
                    Ok(()),
                    "seed {seed}: a wait without abort_after completes"
                );
                smp.platform.cycles() - before
            } else {
                let prev = smp.platform.raise_ipl(ipl::HIGH);
                // (Or until the call gave up, on a broken watchdog.)
                while smp.platform.stalls.load(Ordering::Relaxed) < 2
                    && returned.load(Ordering::Acquire) == 0
                {
                    smp.platform.relax();
                }
                smp.platform.restore_ipl(prev);
                0
            }
        })[0];
        assert_eq!(
            smp.platform.stalls.load(Ordering::Relaxed),
            2,
            "seed {seed}: one report per bound"
        );
        assert!(
            waited >= 2 * B,
            "seed {seed}: the second report came after {waited} cycles, before two bounds"
        );
        assert_eq!(snapshot(h)[..2], [0, 1], "seed {seed}");
    }
}

/// Napping for the serialization lock (`nap` and `serialize` policies): a
/// CPU that finds the lock taken naps, and the CPU that releases it wakes
/// it; it does not sleep on until its nap times out at the clock tick.
/// CPU 0 takes the lock and waits for a call on CPU 2, which sits at IPL 7
/// until CPU 1 has napped for the lock. Ticks are 100,000 steps apart, so
/// a nap that ends by timing out is plain.
#[test]
fn a_cpu_napping_for_the_serialization_lock_is_woken_by_its_release() {
    for seed in 0..4 {
        let smp: &SimSmp = SimPlatform::seeded(Line::Latch, 100_000, 1, 3, seed);
        smp.policy.nap.store(true, Ordering::Relaxed);
        smp.policy.serialize.store(true, Ordering::Relaxed);
        let h = hits();
        SimPlatform::run(smp, 3, move |me| {
            let arg = h as *const Hits as usize;
            match me {
                0 => smp.call_single(2, record, arg, true).unwrap(),
                1 => {
                    // Until CPU 0 holds the lock (it waits for CPU 2).
                    while smp.cpu(0).waiting_for.load(Ordering::Relaxed) != 3 {
                        smp.platform.relax();
                    }
                    smp.call_single(2, record, arg, true).unwrap();
                }
                _ => {
                    let prev = smp.platform.raise_ipl(ipl::HIGH);
                    while smp.cpu(1).stats.naps.load(Ordering::Relaxed) == 0 {
                        smp.platform.relax();
                    }
                    smp.platform.restore_ipl(prev);
                }
            }
        });
        assert_eq!(snapshot(h)[..3], [0, 0, 2], "seed {seed}: both calls ran");
        let cpu1 = &smp.platform.cpus[1];
        let (woken, timed_out) = (
            cpu1.naps_woken.load(Ordering::Relaxed),
            cpu1.naps_timed_out.load(Ordering::Relaxed),
        );
        assert!(
            woken >= 1 && timed_out == 0,
            "seed {seed}: CPU 1's naps: {woken} woken, {timed_out} timed out"
        );
    }
}

/// Two CPUs napping for the serialization lock are both woken by its
/// release, also after one of them was woken early (by a PING) and went
/// back to its nap: a napper leaving its nap clears only its own mark.
/// CPU 0 holds the lock waiting for a call on CPU 2, which sits at IPL 7
/// until CPUs 1 and 3 nap for the lock and CPU 1 has napped again.
#[test]
fn every_cpu_napping_for_the_serialization_lock_is_woken() {
    use alphasmp::mailbox::IpiMessage;
    for seed in 0..4 {
        let smp: &SimSmp = SimPlatform::seeded(Line::Latch, 100_000, 1, 4, seed);
        smp.policy.nap.store(true, Ordering::Relaxed);
        smp.policy.serialize.store(true, Ordering::Relaxed);
        let h = hits();
        let naps = |c: usize| smp.cpu(c).stats.naps.load(Ordering::Relaxed);
        SimPlatform::run(smp, 4, move |me| {
            let arg = h as *const Hits as usize;
            match me {
                0 => smp.call_single(2, record, arg, true).unwrap(),
                2 => {
                    let prev = smp.platform.raise_ipl(ipl::HIGH);
                    while naps(1) == 0 || naps(3) == 0 {
                        smp.platform.relax();
                    }
                    smp.send_message(1, IpiMessage::PING).unwrap();
                    while naps(1) < 2 {
                        smp.platform.relax();
                    }
                    smp.platform.restore_ipl(prev);
                }
                _ => {
                    while smp.cpu(0).waiting_for.load(Ordering::Relaxed) != 3 {
                        smp.platform.relax();
                    }
                    smp.call_single(2, record, arg, true).unwrap();
                }
            }
        });
        assert_eq!(snapshot(h), [0, 0, 3, 0], "seed {seed}: every call ran");
        for c in [1, 3] {
            let timed_out = smp.platform.cpus[c].naps_timed_out.load(Ordering::Relaxed);
            assert_eq!(
                timed_out, 0,
                "seed {seed}: CPU {c} slept until its nap timed out"
            );
        }
    }
}

fn boom(_: usize) {
    panic!("a call function panicked");
}

/// A call function that panics on a seeded CPU that has finished its work
/// and idles (outside the catch around the work) reaches the caller of the
/// run as that panic, for every seed, and the calling thread is no
/// simulated CPU afterwards. Before, the run dropped the other CPUs'
/// coroutines, which unwound each from its suspension into its work's
/// catch; one of them then idled on with the dead CPU's yielder and the
/// process crashed (a segmentation fault).
#[test]
fn a_panic_outside_the_work_reaches_the_caller_of_a_seeded_run() {
    for seed in 0..20 {
        let smp: &'static SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, 2, seed);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SimPlatform::run(smp, 2, move |me| {
                if me == 0 {
                    let _ = smp.call_single(1, boom, 0, true);
                }
            })
        }));
        let p = r.expect_err("the call function's panic reaches the caller");
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(
            msg.contains("a call function panicked"),
            "seed {seed}: {msg}"
        );
        assert!(
            std::panic::catch_unwind(sim::current_cpu).is_err(),
            "seed {seed}: the caller's thread still looks like a simulated CPU"
        );
    }
}

/// A seeded run of no CPU runs nothing and returns nothing.
#[test]
fn a_seeded_run_of_no_cpu_returns_nothing() {
    let smp: &'static SimSmp = SimPlatform::seeded(Line::Latch, 0, 0, 2, 1);
    let r: Vec<()> = SimPlatform::run_on(smp, CpuMask::EMPTY, |_| unreachable!("no CPU runs"));
    assert!(r.is_empty());
}

/// Every counter a CPU keeps (its statistics, the IPIs sent to it, its
/// census) after calls, as the experiment's recovery sees them.
fn counters(smp: &SimSmp, cpu: usize) -> (u64, u64, u64) {
    let st = smp.cpu(cpu);
    let stats = st.stats.calls_queued.load(Ordering::Relaxed)
        + st.stats.calls_run.load(Ordering::Relaxed)
        + st.stats
            .ipi_handled
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>();
    let sent = st.ipi_sent.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let k = st.census.counts();
    (stats, sent, k.requests + k.delivered)
}

/// The recovery's step 4 (`crate::recover`): one CPU zeroes every CPU's
/// counters between runs (`reset_counters`), or each CPU its own in its
/// task (`reset_counters_this_cpu`); statistics, sent counts and the
/// census alike.
#[test]
fn resetting_counters_zeroes_statistics_sent_counts_and_the_census() {
    let smp = machine(2);
    let count = || {
        SimPlatform::run(smp, 2, move |me| {
            smp.call_single(1 - me, nothing, 0, true).unwrap();
        });
        for cpu in 0..2 {
            let (stats, sent, census) = counters(smp, cpu);
            assert!(
                stats > 0 && sent > 0 && census > 0,
                "CPU {cpu} counted nothing"
            );
        }
    };
    count();
    smp.reset_counters();
    for cpu in 0..2 {
        assert_eq!(counters(smp, cpu), (0, 0, 0), "reset_counters, CPU {cpu}");
    }
    count();
    SimPlatform::run(smp, 2, move |_| smp.reset_counters_this_cpu());
    for cpu in 0..2 {
        assert_eq!(
            counters(smp, cpu),
            (0, 0, 0),
            "reset_counters_this_cpu, CPU {cpu}"
        );
    }
}
