//! A simulated multi-CPU platform for host tests (feature `sim`).
//!
//! Each simulated CPU is a host thread with its own IPL and IPI line. An IPI
//! is delivered only at explicit points (every `relax`, every IPL restore,
//! and the idle loop) and only when the CPU's IPL is below 6, exactly as on
//! Alpha. Two line models:
//!
//! - [`Line::Latch`] (clipper): a masked IPI stays pending until the IPL
//!   drops;
//! - [`Line::LossyEdge`] (EV7 per seed patch 2/3): an IPI that arrives while
//!   the target is inside an interrupt handler at IPL 7 is dropped; the
//!   mailbox bit stays set.
//!
//! Interrupt handlers are run the way the kernel runs them: IPL raised to 7,
//! `in_interrupt` true, then the core's `handle_ipi` (IPIs) or a simulated
//! clock tick followed by the core's in-interrupt poll.
//!
//! Two schedulers:
//!
//! - **free**: the CPU threads run at once (real contention on the host's
//!   atomics; not reproducible);
//! - **seeded**: a baton scheduler lets exactly one CPU thread run at a
//!   time; at every scheduling point (each `relax`, each step of a tick
//!   handler) a generator seeded by the test picks the next CPU. The same
//!   seed gives the same interleaving, so a failing run is replayed from its
//!   seed. The cycle counter is then the global step count, which makes the
//!   watchdog deterministic too.

extern crate std;

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;
use std::vec::Vec;

use crate::mailbox::IpiMessage;
use crate::rng::XorShift64;
use crate::platform::{Platform, TlbOp, ipl};
use crate::xcall::{Hooks, Smp, StallReport};

/// Simulated CPUs at most.
pub const SIM_CPUS: usize = 4;

/// The simulated SMP core.
pub type SimSmp = Smp<SimPlatform, SIM_CPUS>;

/// How the IPI line behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Latch,
    LossyEdge,
}

/// One simulated CPU's hardware state.
#[derive(Default)]
pub struct SimCpu {
    pub ipl: AtomicU8,
    pub ipi_pending: AtomicBool,
    pub in_handler: AtomicBool,
    pub dropped_ipis: AtomicU64,
    pub tlb_ops: AtomicU64,
    pub imbs: AtomicU64,
    pub asn: AtomicU64,
    pub ticks: AtomicU64,
    /// Simulated clock: a tick handler runs every `tick_every` relax calls.
    relax_count: AtomicU64,
    pub stopped: AtomicBool,
}

/// The simulated machine.
pub struct SimPlatform {
    pub cpus: [SimCpu; SIM_CPUS],
    pub line: Line,
    /// Relax calls between clock ticks on each CPU (0: no clock).
    pub tick_every: u64,
    /// Relax-call length of a tick handler (how long it sits at IPL 7).
    pub tick_len: u64,
    smp: OnceLock<&'static SimSmp>,
    start: Instant,
    pub stalls: AtomicU64,
    baton: Option<Baton>,
}

/// The seeded scheduler: whose turn it is, and the generator choosing.
struct Baton {
    state: Mutex<BatonState>,
    turn_changed: Condvar,
}

struct BatonState {
    turn: usize,
    alive: u64,
    rng: XorShift64,
    steps: u64,
}

impl Baton {
    fn new(seed: u64, cpus: usize) -> Self {
        Baton {
            state: Mutex::new(BatonState { turn: 0, alive: (1u64 << cpus) - 1, rng: XorShift64::new(seed), steps: 0 }),
            turn_changed: Condvar::new(),
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, BatonState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn pick(s: &mut BatonState) {
        let n = s.alive.count_ones() as u64;
        if n == 0 {
            return;
        }
        let k = s.rng.below(n) as u32;
        let mut m = s.alive;
        for _ in 0..k {
            m &= m - 1;
        }
        s.turn = m.trailing_zeros() as usize;
    }
    fn wait_turn(&self, me: usize) {
        let mut s = self.lock();
        while s.turn != me {
            s = self.turn_changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
    /// A scheduling point: the generator picks who runs next.
    fn pass(&self, me: usize) {
        let mut s = self.lock();
        s.steps += 1;
        Self::pick(&mut s);
        if s.turn != me {
            self.turn_changed.notify_all();
            while s.turn != me {
                s = self.turn_changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
    fn exit(&self, me: usize) {
        let mut s = self.lock();
        s.alive &= !(1 << me);
        Self::pick(&mut s);
        self.turn_changed.notify_all();
    }
    fn steps(&self) -> u64 {
        self.lock().steps
    }
}

std::thread_local! {
    static THIS_CPU: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl SimPlatform {
    /// Builds a machine and its SMP core, with `online` CPUs marked online.
    pub fn machine(line: Line, tick_every: u64, tick_len: u64, online: usize) -> &'static SimSmp {
        Self::build(line, tick_every, tick_len, online, None)
    }

    /// A machine under the seeded scheduler (see the module docs).
    pub fn seeded(line: Line, tick_every: u64, tick_len: u64, online: usize, seed: u64) -> &'static SimSmp {
        Self::build(line, tick_every, tick_len, online, Some(Baton::new(seed, online)))
    }

    fn build(line: Line, tick_every: u64, tick_len: u64, online: usize, baton: Option<Baton>) -> &'static SimSmp {
        let p = SimPlatform {
            cpus: Default::default(),
            line,
            tick_every,
            tick_len,
            smp: OnceLock::new(),
            start: Instant::now(),
            stalls: AtomicU64::new(0),
            baton,
        };
        let smp: &'static SimSmp = std::boxed::Box::leak(std::boxed::Box::new(Smp::new(p)));
        let _ = smp.platform.smp.set(smp);
        for c in 0..online {
            smp.set_online(c);
        }
        smp
    }

    fn smp(&self) -> &'static SimSmp {
        self.smp.get().expect("machine() sets the core")
    }

    fn me(&self) -> &SimCpu {
        &self.cpus[self.cpu_id()]
    }

    /// A scheduling point: under the seeded scheduler the generator picks
    /// the next CPU to run; otherwise the host thread yields.
    pub fn schedule(&self) {
        match &self.baton {
            Some(b) => b.pass(self.cpu_id()),
            None => std::thread::yield_now(),
        }
    }

    /// Scheduling points so far (seeded scheduler; 0 otherwise).
    pub fn steps(&self) -> u64 {
        self.baton.as_ref().map_or(0, Baton::steps)
    }

    /// Takes pending interrupts if the IPL allows (the delivery point).
    pub fn deliver(&self) {
        let cpu = self.me();
        if cpu.in_handler.load(Ordering::Relaxed) {
            return;
        }
        if self.tick_every != 0 && cpu.ipl.load(Ordering::Relaxed) < 5 {
            let n = cpu.relax_count.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(self.tick_every) {
                self.interrupt(|| {
                    cpu.ticks.fetch_add(1, Ordering::Relaxed);
                    // The handler body: time passes at IPL 7 (the EV7 window).
                    for _ in 0..self.tick_len {
                        self.schedule();
                    }
                    self.smp().poll_in_interrupt();
                });
            }
        }
        if cpu.ipl.load(Ordering::Relaxed) < ipl::IPI && cpu.ipi_pending.swap(false, Ordering::AcqRel) {
            self.interrupt(|| {
                self.smp().handle_ipi();
            });
        }
    }

    fn interrupt(&self, body: impl FnOnce()) {
        let cpu = self.me();
        let old = cpu.ipl.swap(ipl::HIGH, Ordering::Relaxed);
        cpu.in_handler.store(true, Ordering::Release);
        body();
        cpu.in_handler.store(false, Ordering::Release);
        cpu.ipl.store(old, Ordering::Relaxed);
    }

    /// Runs `work(cpu)` on one thread per CPU (thread `c` is CPU `c`), then
    /// keeps every CPU taking interrupts until all have finished their work.
    pub fn run<R: Send + 'static>(smp: &'static SimSmp, cpus: usize, work: impl Fn(usize) -> R + Send + Sync + 'static) -> Vec<R> {
        let work = Arc::new(work);
        let done = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..cpus)
            .map(|c| {
                let (work, done) = (work.clone(), done.clone());
                std::thread::spawn(move || {
                    THIS_CPU.with(|t| t.set(c));
                    if let Some(b) = &smp.platform.baton {
                        b.wait_turn(c);
                    }
                    let r = work(c);
                    done.fetch_add(1, Ordering::AcqRel);
                    // Idle: keep serving interrupts until everyone is done.
                    while done.load(Ordering::Acquire) < cpus as u64 {
                        smp.platform.relax();
                    }
                    // An IPI posted just before the last CPU finished is
                    // visible now (posted before `done` was incremented).
                    smp.platform.relax();
                    if let Some(b) = &smp.platform.baton {
                        b.exit(c);
                    }
                    r
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("simulated CPU panicked")).collect()
    }
}

impl Platform for SimPlatform {
    fn cpu_id(&self) -> usize {
        let c = THIS_CPU.with(|t| t.get());
        assert!(c < SIM_CPUS, "not on a simulated CPU thread");
        c
    }
    fn send_ipi(&self, cpu: usize) {
        let t = &self.cpus[cpu];
        if self.line == Line::LossyEdge && t.in_handler.load(Ordering::Acquire) && t.ipl.load(Ordering::Relaxed) == ipl::HIGH {
            t.dropped_ipis.fetch_add(1, Ordering::Relaxed);
            return;
        }
        t.ipi_pending.store(true, Ordering::Release);
    }
    fn raise_ipl(&self, level: u8) -> u8 {
        let cpu = self.me();
        let prev = cpu.ipl.load(Ordering::Relaxed);
        if level > prev {
            cpu.ipl.store(level, Ordering::Relaxed);
        }
        prev
    }
    fn restore_ipl(&self, previous: u8) {
        self.me().ipl.store(previous, Ordering::Relaxed);
        self.deliver();
    }
    fn ipl(&self) -> u8 {
        self.me().ipl.load(Ordering::Relaxed)
    }
    fn in_interrupt(&self) -> bool {
        self.me().in_handler.load(Ordering::Relaxed)
    }
    fn invalidate_tlb(&self, _op: TlbOp) {
        self.me().tlb_ops.fetch_add(1, Ordering::Relaxed);
    }
    fn imb(&self) {
        self.me().imbs.fetch_add(1, Ordering::Relaxed);
    }
    fn load_asn(&self, asn: u64) {
        self.me().asn.store(asn, Ordering::Relaxed);
    }
    fn cycles(&self) -> u64 {
        match &self.baton {
            Some(b) => b.steps(),
            None => self.start.elapsed().as_nanos() as u64,
        }
    }
    fn cycle_freq(&self) -> u64 {
        1_000_000_000
    }
    fn relax(&self) {
        self.deliver();
        self.schedule();
    }
}

impl Hooks for SimPlatform {
    fn on_message(&self, msg: IpiMessage) {
        if msg == IpiMessage::CPU_STOP {
            self.me().stopped.store(true, Ordering::Release);
        }
    }
    fn report_stall(&self, _report: &StallReport) {
        self.stalls.fetch_add(1, Ordering::Relaxed);
    }
}

/// The simulated CPU the calling thread is (panics on other threads).
pub fn current_cpu() -> usize {
    let c = THIS_CPU.with(|t| t.get());
    assert!(c < SIM_CPUS, "not on a simulated CPU thread");
    c
}
