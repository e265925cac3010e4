//! The machine layer: everything that differs between the AlphaServers
//! this kernel runs on, as one [`MachineVector`] per machine family (the
//! shape of Linux's `struct alpha_machine_vector`, one per `sys_*.c`), each
//! a `static` in its own file:
//!
//! | vector | file | serves | console (auto) | tick | exit on failure | a broadcast's IPIs |
//! |---|---|---|---|---|---|---|
//! | `clipper` | `clipper.rs` (Tsunami's functions, plus pvpanic and the alarm) | system type 34, serial "QEMU" | 16550 UART | RTC periodic (or `clock=alarm`) | pvpanic, halt | one Cchip MISC store |
//! | `tsunami` | `tsunami.rs` | system type 34 (DS10, DS20, ES40) | SRM callbacks | RTC periodic | halt to SRM | `wripir` each |
//! | `marvel` | `marvel.rs` | system type 39 (ES47, ES80, GS1280) | SRM callbacks | PAL periodic | halt to SRM | `wripir` each |
//!
//! The HWRPB's system type (and whether its serial says QEMU) picks the
//! first vector in [`VECTORS`] that serves it; `machine=NAME` picks one by
//! its own name. Adding a machine is one new file with its `static`
//! vector, one entry in [`VECTORS`], and the README: every field of the
//! vector must be given (the compiler names a missing one), and nothing
//! outside this directory names a machine. Everything architected (HWRPB,
//! PAL calls, trap entry, secondary start, IPIs) is shared code outside
//! this directory.
//!
//! What depends on the PALcode rather than the machine stays keyed on the
//! HWRPB's QEMU flag: the IPI level ([`ipi_ipl`]), QEMU's private alarm,
//! whether a halt ends the whole VM, and (since qemu-palcode makes no
//! periodic interrupt of its own) the RTC standing in for Marvel's PAL tick
//! under QEMU.

mod clipper;
mod marvel;
mod tsunami;

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alphasmp_bootargs::{BootConfig, ClockArg, ConsoleArg, WaitArg};
use alphasmp_srm::hwrpb::HaltRequest;
use alphasmp_srm::vectors::{Device, DeviceVectors, MachineCheck};

pub use alphasmp_srm::machine::{Identity, Unsupported};

use crate::console::Console;
use crate::console::println;
use crate::hwrpb::Hwrpb;
use crate::srm::SrmConsole;
use crate::{clock, cpus, hwrpb, ipl, pal, percpu};

/// One machine family's layer. Every field is required.
pub struct MachineVector {
    /// The name `machine=` takes and the banner prints.
    pub name: &'static str,
    /// The machines it is, for people.
    pub models: &'static str,
    /// HWRPB system types it serves (the absolute value of the field).
    pub sys_types: &'static [u64],
    /// Whether it serves a HWRPB whose serial number says QEMU (`Some(true)`),
    /// one that does not (`Some(false)`), or either (`None`).
    pub qemu: Option<bool>,
    /// The CPU types (`alphasmp_srm::machine::cpu_type`) it is built with;
    /// another is noted at boot, not refused.
    pub cpu_types: &'static [u32],
    /// Its legacy UART, if it has one (`console=uart`).
    pub uart: Option<&'static dyn Console>,
    /// Whether `console=auto` takes the UART (else the SRM callbacks).
    pub auto_console_uart: bool,
    /// Starts the periodic clock interrupt (boot CPU, once) and returns its
    /// rate in Hz.
    pub start_tick: fn(&Hwrpb) -> u64,
    /// Probes and quiesces its devices (boot CPU, once, before the banner).
    pub probe: fn(&Hwrpb, &BootConfig<'_>),
    /// How its chipset numbers device interrupt vectors.
    pub device_vectors: DeviceVectors,
    /// Reports a machine check's logout frame (KSEG address; 0: none).
    pub report_logout: fn(&Hwrpb, u64),
    /// Signals a failed run to whoever watches, before the halt.
    pub signal_failure: fn(),
    /// The exit path, for the banner.
    pub exit_device: fn() -> &'static str,
    /// Interrupts every CPU in a mask of physical ids (one call's target,
    /// or a broadcast's targets; the mailbox bits are posted and the
    /// barrier issued): [`wripir_each`] unless the interrupt controller
    /// takes them in one store.
    pub request_ipis: fn(u64),
    /// How waiters wait when `wait=` is not given. Napping pays where
    /// vCPUs share host cores (QEMU: auto, a probe at boot that picks
    /// adaptive, a short spin and then a nap, measured best there, and
    /// spin where every vCPU has a host core); on a real machine a nap costs a
    /// wake-up IPI per wait, and if EV7 loses IPI edges whenever IPL 7
    /// masks them, every wake of a napper is lost and each wait lasts until
    /// the next tick (the simulator and spin model's `edge_loss_masked`
    /// runs, README "Speed").
    pub default_wait: WaitArg,
    /// How long an idle CPU polls after an IPI when `idle_poll_us=` is not
    /// given (`alphasmp::idlepoll`). Where waking a halted vCPU costs more
    /// than the call (QEMU) polling pays; on a real machine it costs power
    /// and Linux does not poll, so real machines do not either.
    pub default_idle_poll_us: u64,
}

impl fmt::Debug for MachineVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Every machine vector, in the order detection tries them.
pub static VECTORS: &[&MachineVector] = &[&clipper::VECTOR, &tsunami::VECTOR, &marvel::VECTOR];

impl MachineVector {
    /// Whether this vector serves the machine `id` describes.
    pub fn serves(&self, id: &Identity) -> bool {
        self.sys_types.contains(&id.sys_type) && self.qemu.is_none_or(|q| q == id.qemu)
    }
}

/// A function for vectors with nothing to do.
pub fn nothing_to_report(_: &Hwrpb, _: u64) {}
/// A function for vectors without a failure signal: the verdict line is it.
pub fn no_failure_signal() {}

/// How the machine was chosen, for the banner.
#[derive(Clone, Copy, Debug)]
pub enum Choice {
    Detected(&'static MachineVector),
    /// `machine=` named it; `detected` is what the HWRPB said, if anything.
    Forced {
        machine: &'static MachineVector,
        detected: Option<&'static MachineVector>,
    },
}

impl Choice {
    pub fn machine(self) -> &'static MachineVector {
        match self {
            Choice::Detected(m) | Choice::Forced { machine: m, .. } => m,
        }
    }
}

/// Why no machine layer was chosen.
#[derive(Clone, Copy, Debug)]
pub enum IdentifyError<'a> {
    /// No vector serves the HWRPB's system type.
    Unsupported(Unsupported),
    /// `machine=` names no vector.
    UnknownName(&'a str),
}

impl fmt::Display for IdentifyError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifyError::Unsupported(u) => write!(f, "{u}")?,
            IdentifyError::UnknownName(n) => write!(
                f,
                "boot argument machine={n}: no machine layer has that name"
            )?,
        }
        write!(f, " (machine layers:")?;
        for v in VECTORS {
            write!(f, " {} [{}]", v.name, v.models)?;
        }
        write!(f, ")")
    }
}

static CURRENT: spin::Once<&'static MachineVector> = spin::Once::new();
/// The HWRPB says QEMU: CALL_PAL halt on any CPU ends the whole VM.
static QEMU: AtomicBool = AtomicBool::new(false);

/// Identifies the machine (boot CPU, once); `forced` is `machine=`.
pub fn identify<'a>(
    h: &Hwrpb,
    forced: Option<&'a str>,
) -> Result<(Choice, Identity), IdentifyError<'a>> {
    let id = Identity::read(h);
    QEMU.store(id.qemu, Ordering::Relaxed);
    let detected = VECTORS.iter().copied().find(|v| v.serves(&id));
    let choice = match forced {
        Some(name) => {
            let machine = VECTORS
                .iter()
                .copied()
                .find(|v| v.name == name)
                .ok_or(IdentifyError::UnknownName(name))?;
            Choice::Forced { machine, detected }
        }
        None => Choice::Detected(detected.ok_or(IdentifyError::Unsupported(Unsupported {
            sys_type: id.sys_type,
        }))?),
    };
    CURRENT.call_once(|| choice.machine());
    Ok((choice, id))
}

/// The lowest IPL at which IPIs are masked. It is the PALcode's choice:
/// qemu-palcode takes IPIs only at IPL <= 5 (masked from 6), while the
/// EV6/EV7 OSF PALcode of real consoles puts them at the clock's level 5
/// (Linux's IPL_TIMER; docs/hardware.md §9). Before the HWRPB is read the
/// lower, real-hardware value is assumed: it counts more callers as
/// masked, which is the safe side.
#[inline]
pub fn ipi_ipl() -> u8 {
    use alphasmp::platform::ipl::{IPI_OSF_PALCODE, IPI_QEMU_PALCODE};
    if QEMU.load(Ordering::Relaxed) {
        IPI_QEMU_PALCODE
    } else {
        IPI_OSF_PALCODE
    }
}

/// Whether the HWRPB says QEMU (qemu-palcode is the console).
pub fn is_qemu() -> bool {
    QEMU.load(Ordering::Relaxed)
}

/// Every interprocessor interrupt request, one target's or a broadcast's,
/// in the chosen machine's way ([`wripir_each`] before one is chosen).
#[inline]
pub fn request_ipis(phys: u64) {
    match CURRENT.get() {
        Some(m) => (m.request_ipis)(phys),
        None => wripir_each(phys),
    }
}

/// A `wripir` for each physical id in the mask: the architected way, for
/// machines whose console PALcode is the only known way to interrupt.
pub fn wripir_each(phys: u64) {
    let mut rest = phys;
    while rest != 0 {
        let id = alphasmp::cpumask::lowest_bit(rest);
        rest &= rest - 1;
        pal::wripir(id);
    }
}

/// The machine chosen at boot (None before that).
pub fn current() -> Option<&'static MachineVector> {
    CURRENT.get().copied()
}

/// A remark when the boot CPU's type is not one the machine is built with.
pub fn cpu_type_note(m: &MachineVector, cpu_type: u32) -> Option<&'static str> {
    (!m.cpu_types.contains(&cpu_type)).then_some("the boot CPU's type is not one this machine is built with; continuing with the chosen machine layer")
}

/// The console device for `m` and `console=`.
pub fn console(
    m: &MachineVector,
    arg: ConsoleArg,
    srm: Option<&'static SrmConsole>,
) -> Result<&'static dyn Console, &'static str> {
    let want_srm = match arg {
        ConsoleArg::Auto => !m.auto_console_uart,
        ConsoleArg::Srm => true,
        ConsoleArg::Uart => false,
    };
    if want_srm {
        return srm
            .map(|s| s as &'static dyn Console)
            .ok_or("console=srm: the HWRPB has no console callback block");
    }
    m.uart
        .ok_or("console=uart: this machine has no legacy UART; use console=srm")
}

/// A console when nothing is known (no HWRPB): the ISA UART, which QEMU
/// and Tsunami-class machines have; elsewhere output is lost, and the run
/// halts anyway.
pub fn last_resort_console() {
    crate::console::set(&tsunami::COM1);
}

/// Probes and quiesces the machine's devices (boot CPU, once).
pub fn probe_devices(m: &MachineVector, h: &Hwrpb, cfg: &BootConfig<'_>) {
    (m.probe)(h, cfg)
}

/// The exit path, for the banner.
pub fn exit_device() -> &'static str {
    current().map_or("halt", |m| (m.exit_device)())
}

/// Starts the clock interrupt source (boot CPU, before any CPU lowers its
/// IPL) and configures the tick.
pub fn start_clock(
    m: &MachineVector,
    arg: ClockArg,
    tick_hz: u32,
    h: &Hwrpb,
) -> Result<clock::Source, &'static str> {
    let source = match arg {
        ClockArg::Alarm if !is_qemu() => {
            return Err("clock=alarm needs QEMU (its private cserve alarm)");
        }
        ClockArg::Alarm => clock::Source::OneShot,
        // QEMU's PALcode makes no periodic interrupt of its own, so under
        // QEMU the RTC stands in for any machine's tick; the kernel's side
        // (take type-1 interrupts as they come, divide) is the same.
        ClockArg::Periodic if is_qemu() => clock::Source::Periodic {
            base_hz: tsunami::start_rtc_tick(),
        },
        ClockArg::Periodic => clock::Source::Periodic {
            base_hz: (m.start_tick)(h),
        },
    };
    clock::configure(tick_hz, source);
    Ok(source)
}

/// Starts this CPU's part of the tick (every CPU, at bring-up).
pub fn start_clock_this_cpu() {
    if clock::base_hz() == 0 {
        clipper::start_alarm();
    } else {
        clock::start_periodic_this_cpu();
    }
}

/// A clock interrupt (entInt type 1): how many kernel ticks it makes.
pub fn on_clock_interrupt() -> u64 {
    if clock::base_hz() == 0 {
        clipper::rearm_alarm();
    }
    clock::on_clock_interrupt()
}

/// Unexpected device interrupts a CPU reports before it gives up.
const DEVICE_STORM: u64 = 1000;

/// A device interrupt (entInt type 3): this kernel enables none (and masks
/// what it can at boot), so each is reported, decoded for the machine, and
/// otherwise ignored. A source that keeps firing (a level-triggered line
/// left enabled by the console, which the kernel cannot silence) would keep
/// the CPU from making progress: after [`DEVICE_STORM`] of them the CPU
/// panics with the report rather than spin unseen.
///
/// `n` is how many device interrupts this CPU has taken, this one included.
pub fn device_interrupt(vector: u64, n: u64) {
    let scheme = current().map_or(DeviceVectors::Tsunami, |m| m.device_vectors);
    let what = Device::decode(scheme, vector);
    if n <= 10 {
        println!(
            "note: unexpected device interrupt on CPU {}: {what}",
            cpus::this()
        );
    }
    if n >= DEVICE_STORM {
        panic!(
            "{n} unexpected device interrupts on this CPU (last: {what}); cannot mask the source"
        );
    }
}

/// Recoverable machine checks taken inside this CPU's own console write,
/// whose notes were not printed.
pub static MCHK_NOTES_UNPRINTED: AtomicU64 = AtomicU64::new(0);

/// A machine check (entInt type 2). Correctable errors and system events
/// are reported and their logout frame released with `wrmces(7)`; anything
/// else is reported, its frame released too, and panics (never a hang).
pub fn machine_check(vector: u64, logout: u64, pc: u64) {
    let kind = MachineCheck::from_vector(vector);
    // Inside this CPU's own console write (only a machine check comes in
    // there: writes run at IPL 7). A fatal check's report re-enters the
    // console (`alphasmp::cpulock`: its locks know their holder); a
    // recoverable one's is not worth that, and is counted instead.
    let quiet = kind.recoverable() && crate::console::held_here();
    if !is_qemu()
        && !quiet
        && let (Some(m), Some(h)) = (current(), hwrpb::get())
    {
        (m.report_logout)(h, logout);
    }
    if kind.recoverable() {
        if quiet {
            MCHK_NOTES_UNPRINTED.fetch_add(1, Ordering::Relaxed);
        } else {
            println!(
                "note: {} on CPU {} (vector {vector:#x}, logout {logout:#x}); continuing",
                kind.name(),
                cpus::this()
            );
        }
        pal::wrmces(7);
        return;
    }
    // The frame is read (reported above): released now, so that a second
    // machine check while the run ends (errors often come in pairs) is
    // taken and ends the run through the re-entered panic path, where
    // before the release the PALcode halts the CPU on it (a double machine
    // check, docs/hardware.md §9) before the verdict line is out.
    pal::wrmces(7);
    // A synchronous machine check reports the PC after the access; the
    // access is the instruction before it. print_panic: the check may have
    // hit this CPU inside a console write, holding the console lock.
    let at = pc.wrapping_sub(4);
    crate::console::print_panic(format_args!(
        "FAULT entInt ({}) on CPU {}: vector={vector:#x} logout={logout:#x} at={at:#018x} pc={pc:#018x}\n",
        kind.name(),
        cpus::this()
    ));
    panic!("{} at {at:#x}", kind.name());
}

/// Stops the calling CPU for good (a stop request from the CPU that ends
/// the run) after marking it stopped. On a real machine it asks the console
/// to keep it halted (request 4, RC cleared, docs/hardware.md §5) and halts; under QEMU a
/// halt would end the whole VM before the ending CPU reports its verdict,
/// so it spins at IPL 7 instead.
pub fn park_this_cpu() -> ! {
    let _ipl = ipl::IplGuard::raise(ipl::HIGH);
    request_halt_here();
    percpu::this().stopped.store(true, Ordering::Release);
    if !QEMU.load(Ordering::Relaxed) {
        pal::halt();
    }
    loop {
        core::hint::spin_loop();
    }
}

fn request_halt_here() {
    if let Some(h) = hwrpb::get() {
        h.slot(pal::whami() as u64)
            .request_halt(HaltRequest::StayHalted);
    }
}

/// Ends the run on the calling CPU once the others are stopped: the
/// console is asked to stay at its prompt (request 4, RC cleared), a
/// failure is signalled through pvpanic where the scan found one, then
/// CALL_PAL halt (QEMU: exit status 0; a real machine: the `>>>` prompt).
pub fn end_run(pass: bool) -> ! {
    let _ipl = ipl::IplGuard::raise(ipl::HIGH);
    crate::mm::release();
    if let Some(h) = hwrpb::get() {
        // Lines the secondary consoles posted since the last IPI: printed
        // now, before the verdict's exit line, and their consoles released.
        hwrpb::drain_secondary_consoles(h);
    }
    request_halt_here();
    if let Some(h) = hwrpb::get() {
        let f = h.slot(pal::whami() as u64).flags();
        crate::console::print_panic(format_args!(
            "exit: CPU {} slot flags {f:#x}: halt request {}, restart-capable {}\n",
            cpus::this(),
            (f & alphasmp_srm::hwrpb::flags::HALT_REQUEST_MASK)
                >> alphasmp_srm::hwrpb::flags::HALT_REQUEST_SHIFT,
            if f & alphasmp_srm::hwrpb::flags::RC != 0 {
                "set"
            } else {
                "clear"
            }
        ));
    }
    back_to_console_pcb();
    if !pass {
        fail_signal();
    }
    pal::halt()
}

/// The console's own PCB as the loader named it (physical; 0: none named),
/// and the PCB the boot CPU entered the kernel on.
static CONSOLE_PCB: AtomicU64 = AtomicU64::new(0);
static ENTRY_PCB: AtomicU64 = AtomicU64::new(0);

/// Records, at boot, the console's own PCB (where the SRM images' loader
/// named it) and the PCB the kernel was entered on.
pub fn note_console_pcb(console: Option<alphasmp_srm::image::ConsolePcb>, entry: u64) {
    ENTRY_PCB.store(entry, Ordering::Relaxed);
    CONSOLE_PCB.store(console.map_or(0, |c| c.0), Ordering::Relaxed);
}

/// Before the final halt, puts the console's own PCB back in place of the
/// loader's copy the kernel ran on (docs/hardware.md §5; Linux's
/// `srm_paging_stop` reloads the PCB it found at entry): the console then
/// takes the CPU back on the context it entered the bootstrap with. Only
/// the boot CPU, still on its entry PCB, switches, and only to a PCB on
/// the same page table (the kernel never left the console's); anything
/// else is said in one line and the halt happens where the CPU is.
fn back_to_console_pcb() {
    let console = CONSOLE_PCB.load(Ordering::Relaxed);
    let entry = ENTRY_PCB.load(Ordering::Relaxed);
    let here = percpu::this().pcb_phys.load(Ordering::Relaxed);
    if console == 0 || console == here || here != entry {
        return;
    }
    let ptbr = |pcb: u64| {
        // SAFETY: both are PCBs in RAM (the console's, named by the loader
        // and checked aligned; this CPU's current one), reached through
        // KSEG; the PTBR is their third quadword.
        unsafe { core::ptr::read_volatile((hwrpb::KSEG | (pcb + 0x10)) as *const u64) }
    };
    let (theirs, ours) = (ptbr(console), ptbr(here));
    if theirs != ours {
        crate::console::print_panic(format_args!(
            "exit: the console's PCB at {console:#x} names page table PFN {theirs:#x}, not this run's {ours:#x}: halting on the PCB at {here:#x}\n"
        ));
        return;
    }
    // SAFETY: the console's PCB maps the page table this CPU runs on (just
    // checked), so this code and stack stay mapped; its ksp is the
    // console's to overwrite (a halt saves the current context into the
    // current PCB anyway). IPL is 7 and the other CPUs are stopped.
    let left = unsafe { pal::swpctx_keep_stack(console) };
    // A switch to the current PCB returns it: the PAL's own word that the
    // console's PCB is the one in place.
    // SAFETY: `console` is now this CPU's current PCB, on this stack.
    let now = unsafe { pal::swpctx(console) };
    pal::tbi(pal::Tbi::All);
    percpu::this().pcb_phys.store(now, Ordering::Relaxed);
    crate::console::print_panic(format_args!(
        "exit: CPU {} halts on the console's PCB at {now:#x} (the kernel ran on {left:#x})\n",
        cpus::this()
    ));
}

fn fail_signal() {
    if let Some(m) = current() {
        (m.signal_failure)();
    }
}

/// Ends a failed run with nothing that could fault again: the panic path
/// re-entered twice (a fault on every way out) comes here, at IPL 7
/// already. No console output, no halt request: only the failure signal
/// where a probe found one, then CALL_PAL halt.
pub fn end_run_now() -> ! {
    fail_signal();
    pal::halt()
}
