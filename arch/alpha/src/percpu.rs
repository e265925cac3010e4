//! Per-CPU data, indexed by the dense logical CPU id (`crate::cpus`).
//!
//! Each CPU writes only its own slot's identity fields, once, while coming
//! online; other CPUs read them after seeing its online bit in the SMP core
//! (Release/Acquire). Counters are Relaxed statistics.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

pub use crate::cpus::MAX_CPUS;

/// Kernel stack per CPU.
pub const STACK_SIZE: usize = crate::cpus::STACK_SIZE as usize;

/// One CPU's state, alone in its cache line(s): its CPU writes some of
/// it in every interrupt (`irq_depth`) and tick, and slots that shared a
/// line would move it between CPUs each time (`alphasmp::line`).
#[repr(align(64))]
pub struct PerCpu {
    /// The physical number this CPU read from `whami` when it came online.
    pub id_seen: AtomicUsize,
    /// Top of this CPU's kernel stack (secondaries: allocated at start).
    pub stack_top: AtomicU64,
    /// Cycle count at which this CPU's next periodic tick is due (see
    /// `clock::on_clock_interrupt`). Owned by this CPU.
    pub next_tick_cycles: AtomicU64,
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
    /// Physical address of the PCB this CPU runs on (for swpctx).
    pub pcb_phys: AtomicU64,
    /// What `$18` held when this secondary entered (qemu-palcode: its PCB).
    pub entry_a2: AtomicU64,
    /// IPIs to this CPU dropped by the edge-loss fault injection.
    pub dropped_ipis: AtomicU64,
    /// This CPU acknowledged a stop request and is parked.
    pub stopped: AtomicBool,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            id_seen: AtomicUsize::new(usize::MAX),
            stack_top: AtomicU64::new(0),
            next_tick_cycles: AtomicU64::new(0),
            stack_seen: AtomicU64::new(0),
            gp_seen: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            next_tick_ns: AtomicU64::new(0),
            irq_depth: AtomicU32::new(0),
            pcb_phys: AtomicU64::new(0),
            entry_a2: AtomicU64::new(0),
            dropped_ipis: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }
}

pub static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// The calling CPU's slot.
#[inline]
pub fn this() -> &'static PerCpu {
    &CPUS[crate::cpus::this()]
}

/// Set by the first CPU that panics, to its physical id (`whami`) + 1;
/// polled where a stop IPI might not arrive (the tick handler), so every
/// CPU stops even without it. Never cleared: the run is ending.
static PANICKING: AtomicUsize = AtomicUsize::new(0);
/// How often the panicking CPU entered the panic path again (a fault on
/// its way out). Only that CPU writes it.
static PANIC_REENTRIES: AtomicU32 = AtomicU32::new(0);

/// Who a CPU entering the panic path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicRole {
    /// The first CPU to panic: it reports, stops the others, ends the run.
    First,
    /// Another CPU panicked first: this one parks.
    Other,
    /// The panicking CPU itself, again (n = 1 for the first re-entry): its
    /// way out faulted, so it must end the run by a shorter way.
    Reentered(u32),
}

/// Marks a panic in progress and says who the caller is. Uses `whami`
/// rather than the logical id, so that it still works when the fault came
/// from the logical-id machinery.
pub fn start_panicking() -> PanicRole {
    use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
    let me = crate::pal::whami() + 1;
    match PANICKING.compare_exchange(0, me, AcqRel, Acquire) {
        Ok(_) => PanicRole::First,
        Err(owner) if owner == me => {
            PanicRole::Reentered(PANIC_REENTRIES.fetch_add(1, Relaxed) + 1)
        }
        Err(_) => PanicRole::Other,
    }
}

/// Whether a panic is in progress.
pub fn panicking() -> bool {
    PANICKING.load(core::sync::atomic::Ordering::Relaxed) != 0
}

/// 1 + the CPU ending the run, once it does (`smp::stop_others`); 0
/// before. Every other CPU's clock interrupt then parks that CPU, as a
/// CPU_STOP would. Written (Release) by each CPU that ends the run: once,
/// unless another CPU panics meanwhile and stops everyone again (the panic
/// parks every other CPU anyway, [`panicking`]). Read by the clock
/// handlers (Relaxed: a tick that misses it parks at the next).
static STOPPING: AtomicUsize = AtomicUsize::new(0);

/// The run ends on logical CPU `ender`: every other CPU must park.
pub fn request_stop(ender: usize) {
    STOPPING.store(ender + 1, core::sync::atomic::Ordering::Release);
}

/// Whether the run is ending and this CPU, which is not the one ending it,
/// must park (the clock handler's fallback for a CPU_STOP that did not
/// arrive). The CPU ending the run waits for the others with its clock
/// interrupts on.
pub fn stop_requested() -> bool {
    match STOPPING.load(core::sync::atomic::Ordering::Relaxed) {
        0 => false,
        ender => ender != crate::cpus::this() + 1,
    }
}
