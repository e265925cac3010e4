//! entInt dispatch by interrupt type (PALcode's a0): 0 IPI, 1 clock,
//! 2 machine check, 3 device, 4 performance counter.

use core::sync::atomic::{AtomicU64, Ordering};

use alphasmp::line::Line;

use crate::console::println;
use crate::ipl;
use crate::percpu::{self, MAX_CPUS};
use crate::platform::SMP;
use crate::{clock, cpus, machine};

/// Interrupts taken, per CPU and type (0..=4). Each CPU's counts fill a
/// line of their own: its handlers write them on every interrupt.
pub static COUNTS: [Line<[AtomicU64; 5]>; MAX_CPUS] =
    [const { Line::new([const { AtomicU64::new(0) }; 5]) }; MAX_CPUS];

/// Extra time each clock interrupt spends at IPL 7 (irq_load_us).
pub static IRQ_LOAD_NS: AtomicU64 = AtomicU64::new(0);

/// The lost-edge probe's target (its CPU number plus one; 0: none), whose
/// every clock interrupt, tick or not, holds it at IPL 7 for
/// [`PROBE_HOLD_NS`] (`run::probe`).
pub static PROBE_TARGET: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
/// See [`PROBE_TARGET`].
pub static PROBE_HOLD_NS: AtomicU64 = AtomicU64::new(0);

/// The IPI interrupt (type 0), the one every cross-call takes: asm/entry.S
/// calls this for it directly, not `alpha_trap` and [`dispatch`]. Its work
/// is `dispatch`'s for type 0 (counted, at IPL 7 until rti, in the handler
/// depth; no poll after it: it drained the mailbox), in a function small
/// enough that GCC saves only the registers it uses. Inside `alpha_trap`
/// the same path saved eight callee-saved registers and spilled the
/// frame's arguments for the other types' code.
#[unsafe(no_mangle)]
pub fn alpha_ipi_interrupt() {
    let cpu = cpus::this();
    count(&COUNTS[cpu][0]);
    ipl::raise_for_handler();
    let me = &percpu::CPUS[cpu];
    let depth = me.irq_depth.load(Ordering::Relaxed);
    me.irq_depth.store(depth + 1, Ordering::Relaxed);
    ipi(cpu);
    me.irq_depth.store(depth, Ordering::Relaxed);
}

/// Adds one to an interrupt count. Each count and each `irq_depth` has one
/// writer, its CPU, and only from its interrupt handlers: an interrupt
/// that nests between the load and the store is of another type (one type
/// cannot nest in itself: its level is masked until `rti`) and leaves this
/// count as it found it, and `irq_depth` too (it restores what it raised).
/// So a load and a store do what an atomic read-modify-write did, without
/// its locked sequence on the path of every IPI.
#[inline]
fn count(c: &AtomicU64) -> u64 {
    let n = c.load(Ordering::Relaxed) + 1;
    c.store(n, Ordering::Relaxed);
    n
}

/// The IPI's work, at IPL 7 inside the handler.
#[inline(always)]
fn ipi(cpu: usize) {
    let upto = SMP.census_ipi_entry(cpu);
    // At IPL 7, so IPIs cannot nest in the drain (`handle_ipi`'s contract).
    SMP.handle_ipi();
    SMP.census_ipi_served(cpu, upto);
    // A secondary console interrupts the primary when it posts a line (its
    // txrdy bit); the primary takes it so that console can go on. Only
    // there: handlers on several CPUs would each print the same line
    // (`drain_secondary_consoles`).
    if cpu == cpus::BOOT_CPU {
        drain_consoles();
    }
}

/// Takes the secondary consoles' lines, if any (boot CPU, in a handler).
#[inline]
fn drain_consoles() {
    if let Some(h) = crate::hwrpb::get()
        && h.txrdy() != 0
    {
        crate::hwrpb::drain_secondary_consoles(h);
    }
}

/// Handles one interrupt; `pc` is where the interrupted code resumes and
/// `interrupted_ipl` the IPL it ran at (the PAL frame's PS).
pub fn dispatch(kind: u64, a1: u64, a2: u64, pc: u64, interrupted_ipl: u8) {
    let cpu = cpus::this();
    let taken = COUNTS[cpu].get(kind as usize).map_or(0, count);
    // Like Linux's do_entInt: handlers run with everything masked, until
    // the return from the interrupt restores the interrupted IPL.
    ipl::raise_for_handler();
    let me = &percpu::CPUS[cpu];
    let depth = me.irq_depth.load(Ordering::Relaxed);
    me.irq_depth.store(depth + 1, Ordering::Relaxed);
    match kind {
        0 => ipi(cpu),
        1 => {
            SMP.census_clock();
            if cpu == cpus::BOOT_CPU {
                // A secondary console's line whose interrupt was lost (an
                // EV7 edge) waits for the next tick, not for the next IPI.
                drain_consoles();
            }
            let ticks = machine::on_clock_interrupt();
            if ticks > 0 {
                clock::on_tick(ticks);
                let load = IRQ_LOAD_NS.load(Ordering::Relaxed);
                if load != 0 {
                    // irq_load_us: emulated handler work at IPL 7 once per
                    // kernel tick, which widens the window in which an EV7
                    // IPI edge is lost.
                    clock::delay_ns(load);
                }
            }
            if PROBE_TARGET.load(Ordering::Relaxed) == cpu + 1 {
                clock::delay_ns(PROBE_HOLD_NS.load(Ordering::Relaxed));
            }
            if percpu::panicking() || percpu::stop_requested() {
                // Fallback stop for a CPU whose CPU_STOP IPI did not arrive.
                machine::park_this_cpu();
            }
        }
        2 => machine::machine_check(a1, a2, pc),
        3 => machine::device_interrupt(a1, taken),
        4 => {}
        _ => println!("note: unknown interrupt type {kind} on CPU {cpu}"),
    }
    if kind != 0 {
        // The in-interrupt poll: an IPI that arrived during this handler may have
        // been lost (EV7); handle what the mailbox holds (policy-gated), but
        // only if the interrupted code could take IPIs (a performance
        // counter or machine check above the IPI level must not run queued
        // calls inside a region that masks them).
        SMP.poll_in_interrupt(interrupted_ipl);
    }
    me.irq_depth.store(depth, Ordering::Relaxed);
}
