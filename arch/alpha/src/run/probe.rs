//! The lost-edge probe (`edge_probe=N`, and the start of every
//! experiment): does this machine lose an IPI sent while its target sits at
//! IPL 7 in an interrupt handler?
//!
//! The experiment's cells cannot say so by themselves: they send IPIs
//! densely, so an edge lost at one moment is covered by the next IPI to
//! the same CPU, whose interrupt takes the whole mailbox, and the census
//! counts only what stays untaken (`alphasmp::census`). The probe isolates
//! each IPI instead, and aims it at the series' window:
//!
//! - the target spins at IPL 0 in task context, taking its clock
//!   interrupts, each of which holds it at IPL 7 for 100 us (emulated
//!   handler work, as `irq_load_us`'s, but on every clock interrupt of
//!   the target alone);
//! - the sender (the boot CPU) watches the target's handler depth and
//!   sends a PING the moment it is inside a handler;
//! - nothing else is sent to the target until the PING's handler has run,
//!   or the target has taken two clock interrupts after the send without
//!   taking it: then it ran at an IPL that takes IPIs in between (it
//!   returned from a clock interrupt to IPL 0), where a pending IPI would
//!   have been taken, and it was lost (`lost`; the census's "stranded"
//!   rule). The poll in interrupts is off, so only the PING's own interrupt
//!   can take it. A target that takes neither within a second did not run
//!   (a host that deschedules a vCPU): `unjudged`, not lost.
//!
//! A lost PING stays in the target's mailbox: before the next probe the
//! sender sends PINGs (outside the target's handlers) until one is taken,
//! which takes it too.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alphasmp::cpumask::CpuMask;
use alphasmp::mailbox::IpiMessage;
use alphasmp_bootargs::lines::{CLOCK_CHECK, EDGE_PROBE};

use crate::console::println;
use crate::interrupt::{PROBE_HOLD_NS, PROBE_TARGET};
use crate::percpu;
use crate::platform::SMP;
use crate::{clock, cpus, smp};

/// How long each target's clock handler holds it at IPL 7 while probed.
const HANDLER_NS: u64 = 100_000;

/// What the probe of one target found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Found {
    pub sent: u64,
    pub in_handler: u64,
    pub taken: u64,
    pub lost: u64,
    pub unjudged: u64,
    pub dropped: u64,
    pub missed: u64,
}

impl Found {
    fn add(&mut self, o: &Found) {
        self.sent += o.sent;
        self.in_handler += o.in_handler;
        self.taken += o.taken;
        self.lost += o.lost;
        self.unjudged += o.unjudged;
        self.dropped += o.dropped;
        self.missed += o.missed;
    }
}

/// One probe round's shared state: the target spins until `done`.
struct Round {
    sender: usize,
    target: usize,
    per_target: u64,
    done: AtomicBool,
    found: spin::Mutex<Found>,
}

/// Probes every other online CPU with `per_target` PINGs from this CPU,
/// prints one `edge-probe:` line each, and returns the totals. The
/// policy it changes (the poll in interrupts, listening, the handlers'
/// length) is restored before it returns.
pub fn probe(per_target: u64) -> Found {
    let me = cpus::this();
    let p = &SMP.policy;
    let poll = p.poll_in_irq.swap(false, Ordering::Relaxed);
    let listen = p.listen.swap(false, Ordering::Relaxed);
    PROBE_HOLD_NS.store(HANDLER_NS, Ordering::Relaxed);
    let mut total = Found::default();
    for target in smp::online_cpus().filter(|c| *c != me) {
        let r = Round {
            sender: me,
            target,
            per_target,
            done: AtomicBool::new(false),
            found: spin::Mutex::new(Found::default()),
        };
        let mask = CpuMask(CpuMask::single(me).0 | CpuMask::single(target).0);
        PROBE_TARGET.store(target + 1, Ordering::Relaxed);
        let bound = (per_target + 1) * 2 * (handler_wait_ns() + 100 * window_ns()) + 10_000_000_000;
        if smp::run_on_cpus_with(mask, round, &raw const r as usize, bound).is_err() {
            // A CPU may still spin on `r`: it must not go away.
            smp::finish(false, "edge probe: a round did not finish");
        }
        PROBE_TARGET.store(0, Ordering::Relaxed);
        let f = *r.found.lock();
        println!(
            "{}",
            EDGE_PROBE.line([
                &alphasmp_bootargs::experiment::FORMAT_VERSION,
                &target,
                &f.sent,
                &f.in_handler,
                &f.taken,
                &f.lost,
                &f.unjudged,
                &f.dropped,
                &f.missed,
                &(window_ns() / 1000),
            ])
        );
        total.add(&f);
    }
    p.listen.store(listen, Ordering::Relaxed);
    p.poll_in_irq.store(poll, Ordering::Relaxed);
    total
}

/// Three of a CPU's clock periods: long enough for a target to leave its
/// handler and take a pending interrupt many times over.
fn window_ns() -> u64 {
    3 * 1_000_000_000 / clock::base_hz().max(1)
}

/// How long the sender waits for the target to enter a clock handler:
/// three clock periods, and at least 30 ms (QEMU's vCPUs, sharing host
/// cores, may take their clock interrupts late).
fn handler_wait_ns() -> u64 {
    window_ns().max(30_000_000)
}

fn round(me: usize, ctx: usize) -> u64 {
    // SAFETY: `probe` passes the address of its `Round` and keeps it alive
    // until run_on_cpus_with has collected both CPUs' results.
    let r = unsafe { &*(ctx as *const Round) };
    if me != r.sender {
        // The target: at IPL 0, taking its clock interrupts.
        while !r.done.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        return 0;
    }
    let f = send_all(r);
    *r.found.lock() = f;
    r.done.store(true, Ordering::Release);
    0
}

fn send_all(r: &Round) -> Found {
    let t = r.target;
    let depth = &percpu::CPUS[t].irq_depth;
    let dropped = &percpu::CPUS[t].dropped_ipis;
    let handled = &SMP.cpu(t).stats.ipi_handled[IpiMessage::PING.index()];
    let mut f = Found::default();
    for _ in 0..r.per_target {
        // Wait for the target to enter a clock handler: a new clock
        // interrupt counted (at its entry), and the target still inside a
        // handler. (Not any handler: one inside its IPI handler would take
        // the PING in that handler's own drain.)
        let since = clock::now_ns();
        let entered = clock_count(t);
        let mut inside = false;
        while clock::now_ns() - since <= handler_wait_ns() {
            if clock_count(t) != entered && depth.load(Ordering::Acquire) > 0 {
                inside = true;
                break;
            }
            core::hint::spin_loop();
        }
        if !inside {
            f.missed += 1;
            continue;
        }
        let before = handled.load(Ordering::Acquire);
        let dropped_before = dropped.load(Ordering::Relaxed);
        let clocks = clock_count(t);
        if SMP.send_message(t, IpiMessage::PING).is_err() {
            f.missed += 1;
            continue;
        }
        // This PING's own drop, if an injection dropped it (the release's
        // PINGs below are not probes).
        f.dropped += dropped.load(Ordering::Relaxed) - dropped_before;
        f.sent += 1;
        if depth.load(Ordering::Acquire) > 0 {
            f.in_handler += 1;
        }
        match judge(t, handled, before, clocks) {
            Judged::Taken => f.taken += 1,
            Judged::Lost => {
                f.lost += 1;
                release(t, handled, depth);
            }
            Judged::Unjudged => {
                f.unjudged += 1;
                release(t, handled, depth);
            }
        }
    }
    f
}

/// The clock interrupts CPU `t` has taken.
fn clock_count(t: usize) -> u64 {
    crate::interrupt::COUNTS[t][1].load(Ordering::Relaxed)
}

/// What became of one probe's PING.
enum Judged {
    Taken,
    Lost,
    Unjudged,
}

/// Waits until the PING is taken (`handled` moves past `before`), or the
/// target has taken two clock interrupts since the send (`clocks` then)
/// without taking it, or a second has passed.
fn judge(t: usize, handled: &AtomicU64, before: u64, clocks: u64) -> Judged {
    let sent = clock::now_ns();
    loop {
        if handled.load(Ordering::Acquire) != before {
            return Judged::Taken;
        }
        if clock_count(t) >= clocks + 2 {
            // Its IPI interrupt would have come before the second clock's
            // returns; one last look for a take in flight.
            return if handled.load(Ordering::Acquire) != before {
                Judged::Taken
            } else {
                Judged::Lost
            };
        }
        if clock::now_ns() - sent > 1_000_000_000 {
            return Judged::Unjudged;
        }
        core::hint::spin_loop();
    }
}

/// Whether `handled` moves past `before` within `window` ns.
fn taken_within(handled: &AtomicU64, before: u64, window: u64) -> bool {
    let sent = clock::now_ns();
    while clock::now_ns() - sent < window {
        if handled.load(Ordering::Acquire) != before {
            return true;
        }
        core::hint::spin_loop();
    }
    handled.load(Ordering::Acquire) != before
}

/// Takes a lost PING out of the target's mailbox: PINGs sent outside its
/// handlers until one is taken (its interrupt takes the mailbox whole).
fn release(t: usize, handled: &AtomicU64, depth: &core::sync::atomic::AtomicU32) {
    for _ in 0..100 {
        while depth.load(Ordering::Acquire) > 0 {
            core::hint::spin_loop();
        }
        let before = handled.load(Ordering::Acquire);
        if SMP.send_message(t, IpiMessage::PING).is_ok()
            && taken_within(handled, before, window_ns())
        {
            return;
        }
    }
    println!("edge probe: CPU {t} took no PING in 100 tries");
}

/// How long each CPU counts its clock interrupts in [`clock_check`], in
/// ns of its own raw cycle counter.
const CHECK_NS: u64 = 100_000_000;

/// Each CPU counts the clock interrupts it takes while its own cycle
/// counter, read raw (`rpcc`, not the floor-corrected clock), runs
/// [`CHECK_NS`] at the HWRPB's cycle rate; one `clock-check:` line per
/// CPU. The experiment runs it first: every timing it makes rests on the
/// interrupt rate the kernel took from the HWRPB, which no emulator can
/// check for a real machine (docs/hardware.md §4.3: the EV7 rate). One CPU
/// at a time, the others asleep: vCPUs that share host cores, all
/// spinning at once, took about half their clock interrupts (QEMU merges
/// the periods a descheduled vCPU missed).
pub fn clock_check() {
    let mut counts = [0u64; percpu::MAX_CPUS];
    for cpu in smp::online_cpus() {
        match smp::run_on_cpus(CpuMask::single(cpu), count_clock, 10_000_000_000) {
            Ok(r) => counts[cpu] = r[cpu],
            Err(_) => {
                println!("clock check: CPU {cpu} did not come back");
                return;
            }
        }
    }
    let cycle_hz = clock::cycle_freq();
    let want = CHECK_NS * cycle_hz / 1_000_000_000;
    for cpu in smp::online_cpus() {
        println!(
            "{}",
            CLOCK_CHECK.line([
                &alphasmp_bootargs::experiment::FORMAT_VERSION,
                &cpu,
                &counts[cpu],
                &want,
                &cycle_hz,
                &clock::base_hz(),
            ])
        );
    }
}

/// One CPU's count: its clock interrupts while its raw counter runs
/// [`CHECK_NS`] (spinning at IPL 0: a counter may stop in `wtint`).
fn count_clock(cpu: usize) -> u64 {
    let want = CHECK_NS * clock::cycle_freq() / 1_000_000_000;
    let before = clock_count(cpu);
    let start = crate::pal::rpcc32();
    let mut elapsed: u64 = 0;
    let mut last = start;
    while elapsed < want {
        let now = crate::pal::rpcc32();
        elapsed += u64::from(now.wrapping_sub(last));
        last = now;
        core::hint::spin_loop();
    }
    clock_count(cpu) - before
}

/// The run mode `edge_probe=N`: the probe alone, then the verdict (the
/// probe measures; it passes once it ran).
pub fn run(per_target: u64) -> ! {
    if smp::online_count() < 2 {
        smp::finish(false, "edge probe needs 2 or more CPUs");
    }
    let f = probe(per_target);
    println!(
        "edge probe: {} PINGs sent while their target was in its clock handler at IPL 7 ({} still there after the send): {} taken, {} lost, {} unjudged (the target did not run){}",
        f.sent,
        f.in_handler,
        f.taken,
        f.lost,
        f.unjudged,
        if f.dropped > 0 {
            alloc::format!(" ({} dropped on purpose by the injection)", f.dropped)
        } else {
            alloc::string::String::new()
        }
    );
    smp::finish(true, "edge probe reported")
}
