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

extern crate std;

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::cell::Cell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use std::vec::Vec;

use crate::mailbox::IpiMessage;
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
}

std::thread_local! {
    static THIS_CPU: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl SimPlatform {
    /// Builds a machine and its SMP core, with `online` CPUs marked online.
    pub fn machine(line: Line, tick_every: u64, tick_len: u64, online: usize) -> &'static SimSmp {
        let p = SimPlatform {
            cpus: Default::default(),
            line,
            tick_every,
            tick_len,
            smp: OnceLock::new(),
            start: Instant::now(),
            stalls: AtomicU64::new(0),
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

    /// Takes pending interrupts if the IPL allows (the delivery point).
    pub fn deliver(&self) {
        let cpu = self.me();
        if cpu.in_handler.load(Ordering::Relaxed) {
            return;
        }
        if self.tick_every != 0 && cpu.ipl.load(Ordering::Relaxed) < 5 {
            let n = cpu.relax_count.fetch_add(1, Ordering::Relaxed) + 1;
            if n % self.tick_every == 0 {
                self.interrupt(|| {
                    cpu.ticks.fetch_add(1, Ordering::Relaxed);
                    // The handler body: time passes at IPL 7 (the EV7 window).
                    for _ in 0..self.tick_len {
                        std::thread::yield_now();
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
                    let r = work(c);
                    done.fetch_add(1, Ordering::AcqRel);
                    // Idle: keep serving interrupts until everyone is done.
                    while done.load(Ordering::Acquire) < cpus as u64 {
                        smp.platform.relax();
                    }
                    // An IPI posted just before the last CPU finished is
                    // visible now (posted before `done` was incremented).
                    smp.platform.relax();
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
        self.start.elapsed().as_nanos() as u64
    }
    fn cycle_freq(&self) -> u64 {
        1_000_000_000
    }
    fn relax(&self) {
        self.deliver();
        std::thread::yield_now();
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
