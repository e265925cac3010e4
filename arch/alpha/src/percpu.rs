//! Per-CPU data, indexed by the CPU number `whami` returns (dense 0..N-1 on
//! clipper; EV7 PIDs will need a map, see README "Marvel").
//!
//! Each CPU writes only its own slot's identity fields, once, while coming
//! online; other CPUs read them after seeing the online bit (Release/Acquire
//! on `ONLINE`). Counters are Relaxed statistics.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

use alphasmp::cpumask::CpuMask;

use crate::platform::SMP;

/// CPUs this kernel supports (clipper has at most 4).
pub const MAX_CPUS: usize = 4;
/// Kernel stack per CPU.
pub const STACK_SIZE: usize = 64 * 1024;

/// One CPU's state.
pub struct PerCpu {
    /// The number this CPU read from `whami` when it came online.
    pub id_seen: AtomicUsize,
    /// An address on the stack this CPU came online with.
    pub stack_seen: AtomicU64,
    /// The kernel gp this CPU registered (must equal the boot CPU's).
    pub gp_seen: AtomicU64,
    /// Clock interrupts taken.
    pub ticks: AtomicU64,
    /// VM-clock deadline of the next tick (ns), owned by this CPU.
    pub next_tick_ns: AtomicU64,
    /// Interrupt handlers currently running on this CPU (0 or 1: handlers
    /// run at IPL 7 and do not nest).
    pub irq_depth: AtomicU32,
    /// The IPL this CPU last reported (for watchdog diagnostics).
    pub last_ipl: AtomicU8,
    /// Physical address of the PCB this CPU runs on (for swpctx).
    pub pcb_phys: AtomicU64,
    /// IPIs to this CPU dropped by the edge-loss fault injection.
    pub dropped_ipis: AtomicU64,
    /// This CPU acknowledged a stop request and is parked.
    pub stopped: AtomicBool,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            id_seen: AtomicUsize::new(usize::MAX),
            stack_seen: AtomicU64::new(0),
            gp_seen: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            next_tick_ns: AtomicU64::new(0),
            irq_depth: AtomicU32::new(0),
            last_ipl: AtomicU8::new(7),
            pcb_phys: AtomicU64::new(0),
            dropped_ipis: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }
}

pub static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// The calling CPU's slot.
pub fn this() -> &'static PerCpu {
    &CPUS[crate::pal::whami() % MAX_CPUS]
}

/// Marks the calling CPU online in the SMP core (Release: its identity
/// fields are written first).
pub fn set_online(cpu: usize) {
    SMP.set_online(cpu);
}

/// The online mask.
pub fn online_mask() -> u64 {
    SMP.online().0
}

pub fn is_online(cpu: usize) -> bool {
    SMP.online().contains(cpu)
}

pub fn online_count() -> usize {
    SMP.online().count()
}

/// Iterates over online CPUs.
pub fn online_cpus() -> impl Iterator<Item = usize> {
    SMP.online().iter()
}

/// The online CPUs as a mask.
pub fn online() -> CpuMask {
    SMP.online()
}

#[repr(C, align(16))]
pub struct Stack(pub [u8; STACK_SIZE]);

/// Kernel stacks for secondary CPUs (CPU 0 runs on asm/head.S's boot stack).
pub static mut STACKS: [Stack; MAX_CPUS] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS];

/// The top (initial $sp) of CPU `cpu`'s stack.
pub fn stack_top(cpu: usize) -> u64 {
    // SAFETY: only the address is taken; the memory is handed to that CPU.
    let base = unsafe { (&raw const STACKS[cpu]) as u64 };
    base + STACK_SIZE as u64
}
