//! The Alpha implementation of the portable core's platform seam, and the
//! kernel's one instance of the SMP core.

use core::sync::atomic::{AtomicBool, Ordering};

use alphasmp::cpumask::CpuMask;
use alphasmp::mailbox::IpiMessage;
use alphasmp::platform::{Platform, TlbOp};
use alphasmp::xcall::{Hooks, Smp, StallReport};

use crate::console::println;
use crate::hwrpb::KSEG;
use crate::pal::{self, Tbi};
use crate::percpu::{self, MAX_CPUS};
use crate::{clock, cpus, ipl, machine};

/// Every Alpha machine: the seam uses architected PAL calls (and, for
/// interprocessor interrupts, the machine layer's `request_ipis`), with CPU
/// numbers translated between the core's logical ids and `whami`/`wripir`'s
/// physical ones.
pub struct AlphaPlatform;

/// Fault injection: drop IPIs aimed at a CPU inside an interrupt handler.
pub static INJECT_EDGE_LOSS: AtomicBool = AtomicBool::new(false);
/// Per CPU, when its latest watchdog report began (`clock::now_ns`), set
/// by `report_stall` before it prints; read by the stress run's time to
/// detection.
pub static LAST_STALL_REPORT_NS: [core::sync::atomic::AtomicU64; percpu::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; percpu::MAX_CPUS];

/// `inject=edge_loss_masked`: IPIs to a CPU at IPL 7 for any reason are lost.
pub static INJECT_EDGE_LOSS_MASKED: AtomicBool = AtomicBool::new(false);

/// The kernel's SMP core.
pub static SMP: Smp<AlphaPlatform, MAX_CPUS> = Smp::new(AlphaPlatform);

impl Platform for AlphaPlatform {
    #[inline]
    fn cpu_id(&self) -> usize {
        cpus::this()
    }
    #[inline]
    fn send_ipi(&self, cpu: usize) {
        self.request_ipi(cpu);
    }
    #[inline]
    fn request_ipi(&self, cpu: usize) -> bool {
        // The mailbox bits must be visible before the interrupt is taken:
        // an `mb`, inline (a call to `pal::mb` ends QEMU's translated block
        // twice, at the call and at the return).
        core::sync::atomic::fence(Ordering::SeqCst);
        match injected_physical(cpu) {
            Some(phys) => {
                // The machine's way: on clipper a Cchip store without the
                // PAL call (`machine::clipper`), elsewhere `wripir`.
                machine::request_ipis(1 << phys);
                true
            }
            None => false,
        }
    }
    fn request_ipis(&self, targets: CpuMask) -> CpuMask {
        // As `request_ipi`: the barrier, then each target's injection. The
        // injection judges every target before the one request goes out:
        // a target that leaves its handler in between still loses its IPI,
        // as it would had the request left just before it did.
        core::sync::atomic::fence(Ordering::SeqCst);
        let mut issued = CpuMask::EMPTY;
        let mut phys_mask = 0u64;
        for cpu in targets.iter() {
            if let Some(phys) = injected_physical(cpu) {
                issued.insert(cpu);
                phys_mask |= 1 << phys;
            }
        }
        machine::request_ipis(phys_mask);
        issued
    }
    #[inline]
    fn nap(&self) {
        // At IPL 7 (the core's caller): wtint returns once any interrupt is
        // pending, masked or not (docs/qemu.md §3.2; Linux's idle loop relies
        // on the same), and the clock's is at most one period away.
        pal::wtint();
    }
    // wake: the default, an IPI with no message, subject to the same
    // edge-loss injection as any IPI.
    #[inline]
    fn raise_ipl(&self, level: u8) -> u8 {
        ipl::raise_to(level)
    }
    #[inline]
    fn restore_ipl(&self, previous: u8) {
        ipl::swap(previous);
    }
    #[inline]
    fn ipl(&self) -> u8 {
        ipl::current()
    }
    #[inline]
    fn ipi_ipl(&self) -> u8 {
        machine::ipi_ipl()
    }
    #[inline]
    fn in_interrupt(&self) -> bool {
        percpu::this().irq_depth.load(Ordering::Relaxed) > 0
    }
    #[inline]
    fn in_interrupt_on(&self, cpu: usize) -> bool {
        percpu::CPUS[cpu].irq_depth.load(Ordering::Relaxed) > 0
    }
    fn invalidate_tlb(&self, op: TlbOp) {
        pal::tbi(match op {
            TlbOp::All => Tbi::All,
            TlbOp::AllProcess => Tbi::AllProcess,
            TlbOp::Page(va) => Tbi::Data(va),
            TlbOp::PageBoth(va) => Tbi::Both(va),
        });
    }
    fn imb(&self) {
        pal::imb();
    }
    fn load_asn(&self, asn: u64) {
        // Like Linux's __reload_thread: put the ASN into this CPU's PCB and
        // swpctx to that same PCB. Real hardware loads the new ASN; QEMU
        // ignores ASNs and flushes the whole TLB on swpctx instead, which is
        // equally correct.
        let _ipl = ipl::IplGuard::raise(ipl::HIGH);
        let pcb = percpu::this().pcb_phys.load(Ordering::Relaxed);
        if pcb == 0 {
            pal::tbi(Tbi::AllProcess);
            return;
        }
        // SAFETY: `pcb` is the PCB this CPU booted on (recorded at bring-up);
        // the ASN field at offset 0x1c is a u32 owned by this CPU.
        unsafe {
            core::ptr::write_volatile((KSEG | (pcb + 0x1c)) as *mut u32, asn as u32);
            pal::swpctx(pcb);
        }
    }
    #[inline]
    fn cycles(&self) -> u64 {
        clock::cycles()
    }
    fn cycle_freq(&self) -> u64 {
        clock::cycle_freq()
    }
}

impl Hooks for AlphaPlatform {
    fn on_message(&self, msg: IpiMessage) {
        if msg == IpiMessage::CPU_STOP {
            machine::park_this_cpu();
        }
    }
    fn report_corruption(&self, what: &'static str, value: u64) {
        println!(
            "error: corrupt {what} ({value:#x}) on CPU {}; flushed everything locally instead",
            cpus::this()
        );
    }
    fn report_stall(&self, r: &StallReport) {
        // When the watchdog fired, before the report's own console time
        // (about a third of a second per report at 9600 baud, more behind
        // other CPUs' reports): what a time to detection is measured to.
        if let Some(at) = LAST_STALL_REPORT_NS.get(r.waiter) {
            at.store(clock::now_ns(), Ordering::Relaxed);
        }
        let t = &percpu::CPUS[r.target];
        let waits = WaitsFor(r.target_waiting_for);
        println!(
            "watchdog: CPU {} (physical {}) waited {} us for CPU {} (physical {}) to run call {:#x}({:#x}) (report {}): target mailbox {:?}, queue {}, IPL {}, {} in interrupt, {}",
            r.waiter,
            Phys(r.waiter),
            clock::cycles_to_ns(r.waited_cycles) / 1000,
            r.target,
            Phys(r.target),
            r.func,
            r.arg,
            r.nth,
            r.target_mailbox,
            if r.target_queue_pending {
                "pending"
            } else {
                "empty"
            },
            cpus::ipl_of(r.target),
            if t.irq_depth.load(Ordering::Relaxed) > 0 {
                ""
            } else {
                "not"
            },
            waits,
        );
    }
}

/// The kernel's MMU state (ASNs per CPU, shootdown requests).
pub static MMU: alphasmp::tlb::Mmu<AlphaPlatform, MAX_CPUS> = alphasmp::tlb::Mmu::new(&SMP);

/// A logical CPU's physical id, or `?` if it has none.
struct Phys(usize);

impl core::fmt::Display for Phys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match cpus::physical(self.0) {
            Some(p) => write!(f, "{p}"),
            None => write!(f, "?"),
        }
    }
}

/// "waits for CPU n" / "not waiting", for any CPU number.
struct WaitsFor(Option<usize>);

impl core::fmt::Display for WaitsFor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(c) => write!(f, "waits for CPU {c}"),
            None => write!(f, "not waiting"),
        }
    }
}

/// The physical id to interrupt for an IPI to logical `cpu`, or None when
/// the fault injection drops it (counted on the target).
///
/// Fault injection (inject=edge_loss): EV7/IO7 deliver wripir as an edge
/// that is lost when the target sits at IPL 7 inside an interrupt handler
/// (docs/cross-calls.md §1.2); edge_loss_masked: lost whenever the target
/// is at IPL 7, a napping or masked waiter too (its IPL as last set by
/// software). The mailbox bits stay set.
#[inline(always)]
fn injected_physical(cpu: usize) -> Option<usize> {
    let (Some(target), Some(phys)) = (percpu::CPUS.get(cpu), cpus::physical(cpu)) else {
        // The core range-checks against its online mask first.
        panic!("IPI to CPU {cpu}, which is not in the CPU map");
    };
    // The target's state is read only when an injection asks for it (two
    // loads and a PAL-noted IPL off every IPI's path otherwise).
    let edge_loss = INJECT_EDGE_LOSS.load(Ordering::Relaxed);
    let edge_loss_masked = INJECT_EDGE_LOSS_MASKED.load(Ordering::Relaxed);
    if edge_loss || edge_loss_masked {
        let in_handler = target.irq_depth.load(Ordering::Acquire) > 0;
        let masked = in_handler || cpus::ipl_of(cpu) >= crate::ipl::HIGH;
        if (edge_loss && in_handler) || (edge_loss_masked && masked) {
            target.dropped_ipis.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    }
    Some(phys)
}
