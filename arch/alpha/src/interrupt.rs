//! entInt dispatch by interrupt type (PALcode's a0): 0 IPI, 1 clock,
//! 2 machine check, 3 device, 4 performance counter.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::ipl::{self, IplGuard};
use crate::percpu::{self, MAX_CPUS};
use crate::platform::SMP;
use crate::trap::TrapFrame;
use crate::{clock, ipi, pal, println, smp};

/// Interrupts taken, per CPU and type (0..=4).
pub static COUNTS: [[AtomicU64; 5]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 5] }; MAX_CPUS];

/// Extra time each clock interrupt spends at IPL 7 (irq_load_us).
pub static IRQ_LOAD_NS: AtomicU64 = AtomicU64::new(0);

pub fn dispatch(kind: u64, a1: u64, a2: u64, frame: &mut TrapFrame) {
    let cpu = pal::whami() % MAX_CPUS;
    if let Some(c) = COUNTS[cpu].get(kind as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    // Like Linux's do_entInt: handlers run with everything masked.
    let _ipl = IplGuard::raise(ipl::HIGH);
    let me = percpu::this();
    me.irq_depth.fetch_add(1, Ordering::Relaxed);
    match kind {
        0 => {
            ipi::drain_mailbox();
        }
        1 => {
            clock::on_tick();
            let load = IRQ_LOAD_NS.load(Ordering::Relaxed);
            if load != 0 {
                // irq_load_us: emulated handler work at IPL 7, which widens
                // the window in which an EV7 IPI edge is lost.
                clock::delay_ns(load);
            }
            if smp::panicking() {
                // Fallback stop for a CPU whose CPU_STOP IPI did not arrive.
                smp::park();
            }
        }
        2 => {
            println!("FAULT entInt (machine check) on CPU {cpu}: vector={a1:#x} logout={a2:#x} pc={:#018x}", frame.pc);
            panic!("machine check at pc {:#x}", frame.pc);
        }
        3 => println!("note: unexpected device interrupt vector {a1:#x} on CPU {cpu}"),
        4 => {}
        _ => println!("note: unknown interrupt type {kind} on CPU {cpu}"),
    }
    if kind != 0 {
        // Seed patch 2/3: an IPI that arrived during this handler may have
        // been lost (EV7); handle what the mailbox holds (policy-gated).
        SMP.poll_in_interrupt();
    }
    me.irq_depth.fetch_sub(1, Ordering::Relaxed);
}
