//! The Alpha implementation of the portable core's platform seam, and the
//! kernel's one instance of the SMP core.

use core::sync::atomic::{AtomicBool, Ordering};

use alphasmp::mailbox::IpiMessage;
use alphasmp::platform::{Platform, TlbOp};
use alphasmp::xcall::{Hooks, Smp, StallReport};

use crate::hwrpb::KSEG;
use crate::pal::{self, Tbi};
use crate::percpu::{self, MAX_CPUS};
use crate::{clock, ipl, println, smp};

/// Clipper under qemu-palcode (Marvel will be a second implementation).
pub struct AlphaPlatform;

/// Fault injection: drop IPIs aimed at a CPU inside an interrupt handler.
pub static INJECT_EDGE_LOSS: AtomicBool = AtomicBool::new(false);

/// The kernel's SMP core.
pub static SMP: Smp<AlphaPlatform, MAX_CPUS> = Smp::new(AlphaPlatform);

impl Platform for AlphaPlatform {
    fn cpu_id(&self) -> usize {
        pal::whami()
    }
    fn send_ipi(&self, cpu: usize) {
        // The mailbox bits must be visible before the interrupt is taken.
        pal::mb();
        // Fault injection (inject=edge_loss): EV7/IO7 deliver wripir as an
        // edge that is lost when the target sits at IPL 7 inside an
        // interrupt handler (seed patch 2/3). The mailbox bits stay set.
        let target = &percpu::CPUS[cpu % MAX_CPUS];
        if INJECT_EDGE_LOSS.load(Ordering::Relaxed) && target.irq_depth.load(Ordering::Acquire) > 0 {
            target.dropped_ipis.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pal::wripir(cpu);
    }
    fn raise_ipl(&self, level: u8) -> u8 {
        let cur = ipl::current();
        if level > cur {
            pal::swpipl(level);
        }
        cur
    }
    fn restore_ipl(&self, previous: u8) {
        pal::swpipl(previous);
    }
    fn ipl(&self) -> u8 {
        ipl::current()
    }
    fn in_interrupt(&self) -> bool {
        percpu::this().irq_depth.load(Ordering::Relaxed) > 0
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
            smp::park();
        }
    }
    fn report_stall(&self, r: &StallReport) {
        let t = &percpu::CPUS[r.target];
        let mut waits = [0u8; 24];
        let waits = match r.target_waiting_for {
            Some(c) => {
                let s = b"waits for CPU ";
                waits[..s.len()].copy_from_slice(s);
                waits[s.len()] = b'0' + c as u8;
                core::str::from_utf8(&waits[..s.len() + 1]).unwrap_or("?")
            }
            None => "not waiting",
        };
        println!(
            "watchdog: CPU {} waited {} us for CPU {} to run call {:#x}({:#x}) (report {}): target mailbox {:?}, queue {}, IPL {}, {} in interrupt, {}",
            r.waiter,
            clock::cycles_to_ns(r.waited_cycles) / 1000,
            r.target,
            r.func,
            r.arg,
            r.nth,
            r.target_mailbox,
            if r.target_queue_pending { "pending" } else { "empty" },
            t.last_ipl.load(Ordering::Relaxed),
            if t.irq_depth.load(Ordering::Relaxed) > 0 { "" } else { "not" },
            waits,
        );
    }
}

/// The kernel's MMU state (ASNs per CPU, shootdown requests).
pub static MMU: alphasmp::tlb::Mmu<AlphaPlatform, MAX_CPUS> = alphasmp::tlb::Mmu::new(&SMP);
