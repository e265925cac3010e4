//! The seam between the portable SMP core and the hardware.
//!
//! `arch/alpha` implements it with PAL calls (wripir, swpipl, whami, tbi,
//! imb, rpcc); the host simulator (`sim`) implements it with threads and a
//! per-CPU simulated IPL and IPI line. Everything in `xcall` and `tlb` goes
//! through this trait and nothing else, so both run the same protocol code.

use crate::cpumask::CpuMask;

/// Interrupt priority levels (Alpha numbering). The level at which IPIs
/// are masked is the platform's ([`Platform::ipi_ipl`]); the two known
/// values are here for implementations to name.
pub mod ipl {
    /// Everything enabled.
    pub const ALL_ON: u8 = 0;
    /// IPIs masked from this IPL on under qemu-palcode (it takes an IPI
    /// only at IPL <= 5; docs/qemu.md §3.2).
    pub const IPI_QEMU_PALCODE: u8 = 6;
    /// IPIs masked from this IPL on under EV6/EV7 OSF PALcode, where they
    /// share the clock's level (Linux's IPL_TIMER; docs/hardware.md §9).
    pub const IPI_OSF_PALCODE: u8 = 5;
    /// Everything masked.
    pub const HIGH: u8 = 7;
}

/// One translation-buffer invalidation on the local CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbOp {
    /// Every entry, global (ASM) ones included: CALL_PAL tbi -2 (tbia).
    All,
    /// Every non-global entry: tbi -1 (tbiap).
    AllProcess,
    /// One page in the data stream: tbi 2 (tbisd).
    Page(u64),
    /// One page in both streams: tbi 3 (tbis), for executable mappings.
    PageBoth(u64),
}

/// What the SMP core needs from a machine.
pub trait Platform: Sync {
    /// The calling CPU's number (whami).
    fn cpu_id(&self) -> usize;
    /// Interrupts `cpu` (wripir). The mailbox bits are already set; the
    /// implementation issues the memory barrier that must precede the
    /// interrupt request.
    fn send_ipi(&self, cpu: usize);
    /// [`send_ipi`](Self::send_ipi) for the core's messages, saying whether
    /// the request was really issued: false when a fault injection or a
    /// simulated lossy line dropped it on purpose (the census's ground
    /// truth, `crate::census`). Real hardware never knows of a loss, so
    /// the default issues it and says true.
    fn request_ipi(&self, cpu: usize) -> bool {
        self.send_ipi(cpu);
        true
    }
    /// [`request_ipi`](Self::request_ipi) for every CPU in `targets` (the
    /// CPUs of a broadcast that need an interrupt, one or more: listening
    /// ones are left out), returning those whose request was issued. The mailbox bits of all of them are already set. A machine
    /// whose interrupt controller takes several requests in one store
    /// overrides it (Alpha: QEMU's clipper, one Cchip MISC store for all,
    /// where waking halted vCPUs one `wripir` at a time cost the sender
    /// most of a broadcast); the default requests them one by one.
    fn request_ipis(&self, targets: CpuMask) -> CpuMask {
        request_each(self, targets)
    }
    /// Raises this CPU's IPL to at least `level`; returns the previous IPL.
    fn raise_ipl(&self, level: u8) -> u8;
    /// Restores an IPL returned by `raise_ipl`.
    fn restore_ipl(&self, previous: u8);
    /// This CPU's current IPL.
    fn ipl(&self) -> u8;
    /// The lowest IPL at which this machine's IPIs are masked: at
    /// `ipl() >= ipi_ipl()` an IPI stays pending. The core raises to it to
    /// hold IPIs off, and treats a caller at or above it as unable to take
    /// IPIs (see `crate::xcall`). Depends on the PALcode and the machine
    /// ([`ipl::IPI_QEMU_PALCODE`], [`ipl::IPI_OSF_PALCODE`]), so the core
    /// has no constant for it.
    fn ipi_ipl(&self) -> u8;
    /// Whether the caller runs in an interrupt handler.
    fn in_interrupt(&self) -> bool;
    /// [`in_interrupt`](Self::in_interrupt) for a caller that knows it runs
    /// on logical CPU `cpu` (a platform may then skip its own lookup).
    #[inline]
    fn in_interrupt_on(&self, cpu: usize) -> bool {
        let _ = cpu;
        self.in_interrupt()
    }
    /// Invalidates translation-buffer entries on this CPU.
    fn invalidate_tlb(&self, op: TlbOp);
    /// Instruction memory barrier on this CPU (CALL_PAL imb).
    fn imb(&self);
    /// Loads hardware ASN `asn` for this CPU's current context (Alpha:
    /// write it into the CPU's PCB and swpctx to it, as Linux reloads a
    /// thread's context).
    fn load_asn(&self, asn: u64);
    /// A monotonic per-CPU cycle count.
    fn cycles(&self) -> u64;
    /// Cycles per second of `cycles`.
    fn cycle_freq(&self) -> u64;
    /// Called in every spin-wait iteration (a pause hint; the simulator
    /// uses it as an interrupt-delivery and scheduling point).
    fn relax(&self) {
        core::hint::spin_loop();
    }
    /// A point where the hardware may take an interrupt as anywhere else,
    /// named so that the simulator takes pending ones here too: inside a
    /// window whose interrupts a test must reach (a listening CPU's stop,
    /// between the stop and its last look). Default: nothing.
    #[inline(always)]
    fn may_interrupt(&self) {}
    /// Waits for an interrupt without running (Alpha: CALL_PAL wtint).
    /// Called with every interrupt masked (IPL 7); returns when one is
    /// pending, delivered or not: an IPI, or at the latest the next clock
    /// interrupt, which bounds every nap. The caller then lowers the IPL
    /// and the pending interrupt is taken. The default only relaxes.
    fn nap(&self) {
        self.relax();
    }
    /// Interrupts `cpu` to end its nap: an IPI without a message.
    fn wake(&self, cpu: usize) {
        self.send_ipi(cpu);
    }
}

/// [`Platform::request_ipi`] for each CPU in `targets`: the default
/// [`Platform::request_ipis`], for implementations that count before it.
pub fn request_each<P: Platform + ?Sized>(p: &P, targets: CpuMask) -> CpuMask {
    let mut issued = CpuMask::EMPTY;
    for cpu in targets.iter() {
        if p.request_ipi(cpu) {
            issued.insert(cpu);
        }
    }
    issued
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// A platform that records every CPU `request_ipi` is asked for and
    /// reports CPU 2's as dropped (as a fault injection would).
    struct Asked(AtomicU64);

    impl Platform for Asked {
        fn cpu_id(&self) -> usize {
            0
        }
        fn send_ipi(&self, _cpu: usize) {}
        fn request_ipi(&self, cpu: usize) -> bool {
            self.0.fetch_or(1 << cpu, Ordering::Relaxed);
            cpu != 2
        }
        fn raise_ipl(&self, _level: u8) -> u8 {
            0
        }
        fn restore_ipl(&self, _previous: u8) {}
        fn ipl(&self) -> u8 {
            0
        }
        fn ipi_ipl(&self) -> u8 {
            ipl::IPI_QEMU_PALCODE
        }
        fn in_interrupt(&self) -> bool {
            false
        }
        fn invalidate_tlb(&self, _op: TlbOp) {}
        fn imb(&self) {}
        fn load_asn(&self, _asn: u64) {}
        fn cycles(&self) -> u64 {
            0
        }
        fn cycle_freq(&self) -> u64 {
            1
        }
    }

    #[test]
    fn the_default_request_ipis_asks_for_each_and_returns_those_issued() {
        let p = Asked(AtomicU64::new(0));
        assert_eq!(p.request_ipis(CpuMask(0b1110)), CpuMask(0b1010));
        assert_eq!(
            p.0.load(Ordering::Relaxed),
            0b1110,
            "each CPU asked for once"
        );
        assert_eq!(p.request_ipis(CpuMask::EMPTY), CpuMask::EMPTY);
        assert_eq!(p.0.load(Ordering::Relaxed), 0b1110, "none asked for");
    }
}
