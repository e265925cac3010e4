//! Exception and interrupt entry from PALcode.
//!
//! `asm/entry.S` saves the registers into a [`TrapFrame`] and calls
//! [`alpha_trap`] (an IPI: `interrupt::alpha_ipi_interrupt`). Interrupts
//! are dispatched by type; every other entry (arithmetic trap,
//! memory-management fault, instruction fault, unaligned access, system
//! call) prints one diagnostic line and panics: a fault must never become
//! a silent hang.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::interrupt;
use crate::pal::{self, Entry};

/// The register state saved by `asm/entry.S` followed by PALcode's frame.
#[repr(C)]
pub struct TrapFrame {
    /// Registers by number; 16-18 hold the entry arguments a0-a2, 29 the
    /// kernel gp, 30 the interrupted $sp, 31 the entry number. An
    /// interrupt's frame leaves 9-15 (callee-saved, so preserved by
    /// `alpha_trap` itself) unwritten: read them for exceptions only.
    pub regs: [u64; 32],
    /// Processor status at the time of the exception (IPL in bits 2:0).
    pub ps: u64,
    /// Where execution resumes.
    pub pc: u64,
    pub gp: u64,
    /// The interrupted code's $16-$18.
    pub saved_a: [u64; 3],
}

impl TrapFrame {
    pub fn entry(&self) -> u64 {
        self.regs[31]
    }
    pub fn args(&self) -> (u64, u64, u64) {
        (self.regs[16], self.regs[17], self.regs[18])
    }
}

unsafe extern "Rust" {
    fn ent_int();
    fn ent_arith();
    fn ent_mm();
    fn ent_if();
    fn ent_una();
    fn ent_sys();
}

// The deliberate faults of `fault=` (asm/pal.S; run::raise_fault).
unsafe extern "Rust" {
    pub(crate) fn fault_breakpoint();
    pub(crate) fn fault_illegal();
    pub(crate) fn fault_overflow();
    pub(crate) fn fault_load(addr: u64) -> u64;
    pub(crate) fn fault_callsys();
}

/// A KSEG address whose physical address nothing answers on Tsunami,
/// Typhoon or QEMU's clipper (0x1f8_0000_0000, far above memory and the
/// chipset's CSRs): a load from it is a machine check (`fault=mchk`; for
/// fault injection only: on Marvel it is PE 0's IO7 CSR space).
pub const NXM_KSEG: u64 = 0xfffffc00_00000000 | 0x1f8_0000_0000;

/// Registers the six entry points on the calling CPU. Every CPU runs this
/// first thing, before it lowers its IPL or can fault.
pub fn install() {
    let entries: [(unsafe fn(), Entry); 6] = [
        (ent_int, Entry::Interrupt),
        (ent_arith, Entry::Arithmetic),
        (ent_mm, Entry::MemoryManagement),
        (ent_if, Entry::InstructionFault),
        (ent_una, Entry::Unaligned),
        (ent_sys, Entry::SystemCall),
    ];
    for (stub, which) in entries {
        // SAFETY: each stub is the matching routine of asm/entry.S, which
        // implements the PALcode frame contract; wrkgp ran in asm/head.S.
        unsafe { pal::wrent(stub as usize as u64, which) };
    }
}

fn entry_name(n: u64) -> &'static str {
    match n {
        0 => "entInt",
        1 => "entArith",
        2 => "entMM",
        3 => "entIF",
        4 => "entUna",
        5 => "entSys",
        _ => "entry?",
    }
}

/// GENTRAP's code for an integer divide by zero (`$16` at the trap).
const GEN_INTDIV: u64 = -2i64 as u64;

/// How many divide-by-zero GENTRAPs may return to the dividing code instead
/// of panicking (set by the `div.zero_divisor` self-test, which checks what
/// the division routine does after its trap returns), and how many did.
pub static RESUME_INTDIV: AtomicU32 = AtomicU32::new(0);
pub static INTDIV_RESUMED: AtomicU64 = AtomicU64::new(0);

/// Called by `asm/entry.S` for every exception and every interrupt but the
/// IPI (`interrupt::alpha_ipi_interrupt`).
#[unsafe(no_mangle)]
pub fn alpha_trap(frame: *mut TrapFrame) {
    // SAFETY: entry.S passes the frame it just built on this CPU's stack;
    // nothing else refers to it until we return.
    let frame = unsafe { &mut *frame };
    let (a0, a1, a2) = frame.args();
    if frame.entry() == 0 {
        interrupt::dispatch(a0, a1, a2, frame.pc, (frame.ps & 7) as u8);
        return;
    }
    if frame.entry() == 3
        && a0 == 2
        && frame.saved_a[0] == GEN_INTDIV
        && RESUME_INTDIV
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    {
        // The PC already points past the gentrap.
        INTDIV_RESUMED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let what = match (frame.entry(), a0) {
        (1, _) => "arithmetic trap",
        (2, _) => "memory-management fault",
        (3, 0) => "breakpoint",
        (3, 1) => "bugcheck",
        (3, 2) => "gentrap",
        (3, 3) => "floating-point disabled",
        (3, 4) => "illegal instruction",
        (3, _) => "instruction fault",
        (4, _) => "unaligned access",
        _ => "system call from kernel mode",
    };
    // The faulting instruction: PALcode reports the PC after it for
    // instruction faults, unaligned accesses and machine checks, and the
    // instruction itself for memory-management faults (which restart).
    let at = if frame.entry() == 2 {
        frame.pc
    } else {
        frame.pc.wrapping_sub(4)
    };
    // print_panic: the fault may have hit this CPU while it held the
    // console lock (inside a console write), where println would wait.
    crate::console::print_panic(format_args!(
        "FAULT {} ({what}) on CPU {}: at={at:#018x} pc={:#018x} a0={a0:#x} a1={a1:#x} a2={a2:#x} ra={:#018x}\n",
        entry_name(frame.entry()),
        crate::cpus::this(),
        frame.pc,
        frame.regs[26]
    ));
    panic!("unhandled {what} at {at:#x}");
}
