//! Safe wrappers around the PALcode calls and privileged instructions in
//! `asm/pal.S`.
//!
//! rustc has no C calling convention for Alpha, so the assembly routines are
//! declared `extern "Rust"`: with scalar arguments the GCC backend gives them
//! the Alpha C convention (arguments in $16-$21, result in $0).

/// KSEG: physical address + this = a kernel virtual address (the
/// architected constant; `hwrpb::KSEG` is the same, kept there for the
/// rest of the kernel, and this module stays below it).
const KSEG: u64 = 0xfffffc00_0000_0000;

unsafe extern "Rust" {
    fn pal_halt() -> !;
    fn pal_wripir(cpu: u64);
    fn pal_whami() -> u64;
    fn pal_rdps() -> u64;
    fn pal_wrent(entry: u64, which: u64);
    fn pal_tbi(kind: i64, va: u64);
    fn pal_imb();
    fn pal_wtint(skip: u64) -> u64;
    fn pal_cserve(selector: u64, a1: u64, a2: u64) -> u64;
    fn pal_wrmces(value: u64) -> u64;
    fn pal_swpctx(pcb_phys: u64) -> u64;
    fn pal_swpctx_keep_sp(pcb_phys: u64, pcb_kseg: u64) -> u64;
    fn cpu_mb();
    fn cpu_rpcc() -> u64;
    fn cpu_gp() -> u64;
    fn cpu_sp() -> u64;
    fn pal_swpipl_noted(ipl: u64) -> u64;
}

/// Stops the whole machine. Under QEMU this ends the emulator with exit status
/// 0, which the kernel uses only when every self-test passed.
pub fn halt() -> ! {
    // SAFETY: CALL_PAL halt takes no arguments and does not return.
    unsafe { pal_halt() }
}

/// Requests an interprocessor interrupt on `cpu` (CALL_PAL wripir).
///
/// The interrupt carries no payload; the receiver learns why from its mailbox.
#[inline]
pub fn wripir(cpu: usize) {
    // SAFETY: wripir only posts an interrupt request; on clipper PALcode takes
    // the target modulo 4, so any value is harmless (callers range-check).
    unsafe { pal_wripir(cpu as u64) }
}

/// This CPU's physical number (CALL_PAL whami): the HWRPB slot index, on
/// EV7 the PID. Kernel data is indexed by the dense logical id instead
/// (`crate::cpus::this`).
#[inline]
pub fn whami() -> usize {
    // SAFETY: whami reads a processor register and has no side effects.
    unsafe { pal_whami() as usize }
}

/// Sets the interrupt priority level (CALL_PAL swpipl), returning the
/// previous one, with the new level noted first in the running stack's IPL
/// word (`cpus::ipl_of`), in one leaf: no identity lookup. Use
/// [`crate::ipl`], whose guard restores the level on drop.
#[inline]
pub fn swpipl_noted(ipl: u8) -> u8 {
    // SAFETY: swpipl changes only which interrupts are deliverable (the
    // value is masked to the architected 0..=7); the note is the running
    // kernel stack's second quadword, which no frame uses while the stack
    // is in bounds.
    unsafe { pal_swpipl_noted(u64::from(ipl & 7)) as u8 }
}

/// The processor status: bits 2:0 are the current IPL.
#[inline]
pub fn rdps() -> u64 {
    // SAFETY: rdps reads a processor register and has no side effects.
    unsafe { pal_rdps() }
}

/// The six OSF/1 PALcode entry points, in `wrent` numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Entry {
    Interrupt = 0,
    Arithmetic = 1,
    MemoryManagement = 2,
    InstructionFault = 3,
    Unaligned = 4,
    SystemCall = 5,
}

/// Registers `handler` as this CPU's entry point `which`.
///
/// # Safety
/// `handler` must be one of the trap stubs in `asm/entry.S` (or code that
/// honours the same PALcode frame contract), and the kernel gp must already
/// be registered with wrkgp on this CPU.
pub unsafe fn wrent(handler: u64, which: Entry) {
    // SAFETY: the caller guarantees the handler contract.
    unsafe { pal_wrent(handler, which as u64) }
}

/// Kinds of translation-buffer invalidation (CALL_PAL tbi).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tbi {
    /// Every entry (tbia).
    All,
    /// Every entry without the ASM (global) bit (tbiap).
    AllProcess,
    /// One data-stream entry (tbisd).
    Data(u64),
    /// One entry in both streams (tbis).
    Both(u64),
}

/// Invalidates translation-buffer entries on this CPU.
pub fn tbi(kind: Tbi) {
    let (code, va) = match kind {
        Tbi::All => (-2, 0),
        Tbi::AllProcess => (-1, 0),
        Tbi::Data(va) => (2, va),
        Tbi::Both(va) => (3, va),
    };
    // SAFETY: dropping TLB entries is always safe: they are refilled from the
    // page tables on the next access.
    unsafe { pal_tbi(code, va) }
}

/// Instruction memory barrier: makes this CPU's instruction stream coherent
/// with earlier stores (CALL_PAL imb).
pub fn imb() {
    // SAFETY: imb has no operands and only synchronises the I-stream.
    unsafe { pal_imb() }
}

/// Waits for any interrupt (CALL_PAL wtint). Returns at once if one is
/// pending, whatever the IPL, so callers loop on their condition. It may
/// also return at once with nothing pending: DEC's EV6 OSF PALcode does
/// for a skip count of 0 (docs/hardware.md, "wtint on DEC's EV6
/// PALcode"), and `wtint=returns` makes every call do so; so no caller may
/// rely on a real sleep.
#[inline]
pub fn wtint() {
    if WTINT_RETURNS.load(core::sync::atomic::Ordering::Relaxed) {
        cpu_relax();
        return;
    }
    // SAFETY: wtint only idles the processor until an interrupt is pending.
    unsafe {
        pal_wtint(0);
    }
}

/// `wtint=returns`: [`wtint`] returns at once without calling the PALcode
/// (set by the boot CPU before the secondaries start).
pub static WTINT_RETURNS: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// A short pause of a spinning wait.
fn cpu_relax() {
    for _ in 0..64 {
        core::hint::spin_loop();
    }
}

/// The console service call (CALL_PAL cserve). Its selectors are
/// platform-private: only QEMU's alarm (machine/clipper.rs) uses it.
pub fn cserve(selector: u64, a1: u64, a2: u64) -> u64 {
    // SAFETY: the selectors used by this kernel (timer and clock queries)
    // only read or arm per-CPU timer state.
    unsafe { pal_cserve(selector, a1, a2) }
}

/// Writes the machine-check error summary register.
pub fn wrmces(value: u64) {
    // SAFETY: wrmces only clears/sets machine-check reporting bits.
    unsafe {
        pal_wrmces(value);
    }
}

/// Full memory barrier (`mb`).
#[inline]
pub fn mb() {
    // SAFETY: a barrier instruction has no operands.
    unsafe { cpu_mb() }
}

/// The low 32 bits of the process cycle counter (`rpcc`).
#[inline]
pub fn rpcc32() -> u32 {
    // SAFETY: rpcc reads a counter and has no side effects.
    unsafe { cpu_rpcc() as u32 }
}

/// The global pointer of the running code (for wrkgp checks).
/// The stack pointer ($30) of the caller.
#[inline]
pub fn sp() -> u64 {
    // SAFETY: reads $30, no side effects.
    unsafe { cpu_sp() }
}

/// The first quadword of the 64 KiB-aligned stack the caller runs on
/// (`cpus::this`'s guard word).
///
/// Found from the address of a local, which lies on that stack, in Rust:
/// a call to an assembly leaf would cost its return, which
/// under QEMU is an indirect jump looked up at run time, and the kernel
/// asks for its CPU's identity many times per cross-call. The address goes
/// through `black_box`, so the compiler cannot tie the load to the local
/// (it knows nothing of the aligned stack beneath it).
#[inline]
pub fn stack_guard() -> u64 {
    // SAFETY: the running kernel stack is STACK_SIZE (64 KiB) long and
    // aligned, so its lowest quadword is mapped and holds the guard (or,
    // for a stack the kernel did not give out, some word that
    // `cpus::this` rejects).
    unsafe { core::ptr::read_volatile(running_stack_base() as *const u64) }
}

/// The lowest address of the 64 KiB-aligned stack the caller runs on, from
/// the address of a local ([`stack_guard`]'s way, without a call).
#[inline]
pub fn running_stack_base() -> u64 {
    let probe = 0u64;
    let here = core::hint::black_box(core::ptr::addr_of!(probe)) as u64;
    here & !0xffff
}

pub fn gp() -> u64 {
    // SAFETY: reads $29, no side effects.
    unsafe { cpu_gp() }
}

/// Switches to the hardware context at physical address `pcb_phys`
/// (CALL_PAL swpctx), returning the previous PCB's physical address.
///
/// # Safety
/// `pcb_phys` must be the physical address of a valid PCB whose kernel
/// stack, page table and flags are the ones this CPU may run on; switching
/// to the CPU's own current PCB (to reload its ASN) satisfies this.
pub unsafe fn swpctx(pcb_phys: u64) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { pal_swpctx(pcb_phys) }
}

/// Switches to the hardware context at physical address `pcb_phys` while
/// staying on the current stack: the new PCB's `ksp` is set to this
/// stack's pointer first (CALL_PAL swpctx loads `$sp` from it). Returns the
/// previous PCB's physical address.
///
/// # Safety
/// `pcb_phys` must be the physical address of a valid PCB whose page table
/// maps this stack and this code (the one in use), and whose `ksp` no one
/// else relies on.
pub unsafe fn swpctx_keep_stack(pcb_phys: u64) -> u64 {
    // SAFETY: guaranteed by the caller; KSEG reaches every physical address.
    unsafe { pal_swpctx_keep_sp(pcb_phys, KSEG | pcb_phys) }
}
