//! Per-CPU data, indexed by the CPU number `whami` returns (dense 0..N-1 on
//! clipper; EV7 PIDs will need a map, see README "Marvel").
//!
//! Each CPU writes only its own slot's identity fields, once, while coming
//! online; other CPUs read them after seeing the online bit (Release/Acquire
//! on `ONLINE`). Counters are Relaxed statistics.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use alphasmp::mailbox::{IpiMessage, Mailbox};

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
    /// The IPI mailbox (see alphasmp::mailbox for the protocol).
    pub mailbox: Mailbox,
    /// IPIs sent to this CPU, per message type.
    pub ipi_sent: [AtomicU64; IpiMessage::COUNT],
    /// IPI messages handled by this CPU, per type.
    pub ipi_handled: [AtomicU64; IpiMessage::COUNT],
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
            mailbox: Mailbox::new(),
            ipi_sent: [const { AtomicU64::new(0) }; IpiMessage::COUNT],
            ipi_handled: [const { AtomicU64::new(0) }; IpiMessage::COUNT],
            stopped: AtomicBool::new(false),
        }
    }
}

pub static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// Bit n set: CPU n is online (set by CPU n itself, Release).
static ONLINE: AtomicU64 = AtomicU64::new(0);

/// The calling CPU's slot.
pub fn this() -> &'static PerCpu {
    &CPUS[crate::pal::whami() % MAX_CPUS]
}

/// Marks the calling CPU online; its identity fields must be written first.
pub fn set_online(cpu: usize) {
    ONLINE.fetch_or(1 << cpu, Ordering::Release);
}

/// The online mask.
pub fn online_mask() -> u64 {
    ONLINE.load(Ordering::Acquire)
}

pub fn is_online(cpu: usize) -> bool {
    cpu < MAX_CPUS && online_mask() & (1 << cpu) != 0
}

pub fn online_count() -> usize {
    online_mask().count_ones() as usize
}

/// Iterates over online CPUs.
pub fn online_cpus() -> impl Iterator<Item = usize> {
    let m = online_mask();
    (0..MAX_CPUS).filter(move |c| m & (1 << c) != 0)
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
