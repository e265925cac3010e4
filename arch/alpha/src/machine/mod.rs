//! The machine layer: everything that differs between the machines this
//! kernel runs on, behind one set of functions. One file per machine:
//!
//! | machine | file | console (auto) | tick | exit |
//! |---|---|---|---|---|
//! | `clipper` (QEMU) | `clipper.rs` + `tsunami.rs` | 16550 UART | RTC periodic (or `clock=alarm`) | pvpanic on failure, halt |
//! | `tsunami` (DS10/DS20/ES40) | `tsunami.rs` | SRM callbacks | RTC periodic | halt to SRM |
//! | `marvel` (ES47/ES80/GS1280) | `marvel.rs` | SRM callbacks | PAL periodic | halt to SRM |
//!
//! The machine comes from the HWRPB (`alphasmp_srm::machine`), `machine=`
//! overrides it. Everything architected (HWRPB, PAL calls, trap entry,
//! secondary start, IPIs) is shared code outside this directory, free of
//! machine names.

mod clipper;
mod marvel;
mod tsunami;

use core::sync::atomic::{AtomicBool, Ordering};

use alphasmp::bootargs::{ClockArg, ConsoleArg, MachineArg};
use alphasmp_srm::hwrpb::HaltRequest;
use alphasmp_srm::vectors::{Device, MachineCheck};

pub use alphasmp_srm::machine::{Choice, Identity, Machine, Unsupported};

use crate::console::Console;
use crate::hwrpb::Hwrpb;
use crate::srm::SrmConsole;
use crate::{clock, cpus, hwrpb, ipl, pal, percpu};
use crate::console::println;

static CURRENT: spin::Once<Machine> = spin::Once::new();
/// The HWRPB says QEMU: CALL_PAL halt on any CPU ends the whole VM.
static QEMU: AtomicBool = AtomicBool::new(false);
/// A pvpanic device answered the PCI scan.
static PVPANIC: AtomicBool = AtomicBool::new(false);

/// Identifies the machine (boot CPU, once); `forced` is `machine=`.
pub fn identify(h: &Hwrpb, forced: MachineArg) -> Result<(Choice, Identity), Unsupported> {
    let id = Identity::read(h);
    let forced = match forced {
        MachineArg::Auto => None,
        MachineArg::Clipper => Some(Machine::Clipper),
        MachineArg::Tsunami => Some(Machine::Tsunami),
        MachineArg::Marvel => Some(Machine::Marvel),
    };
    let choice = alphasmp_srm::machine::choose(&id, forced)?;
    QEMU.store(id.qemu, Ordering::Relaxed);
    CURRENT.call_once(|| choice.machine());
    Ok((choice, id))
}

/// The lowest IPL at which IPIs are masked. It is the PALcode's choice:
/// qemu-palcode takes IPIs only at IPL <= 5 (masked from 6), while the
/// EV6/EV7 OSF PALcode of real consoles puts them at the clock's level 5
/// (Linux's IPL_TIMER; docs/hardware.md §9). Before the HWRPB is read the
/// lower, real-hardware value is assumed: it counts more callers as
/// masked, which is the safe side.
pub fn ipi_ipl() -> u8 {
    use alphasmp::platform::ipl::{IPI_OSF_PALCODE, IPI_QEMU_PALCODE};
    if QEMU.load(Ordering::Relaxed) { IPI_QEMU_PALCODE } else { IPI_OSF_PALCODE }
}

/// Whether the HWRPB says QEMU (qemu-palcode is the console).
pub fn is_qemu() -> bool {
    QEMU.load(Ordering::Relaxed)
}

/// The machine chosen at boot (clipper's rules before that).
pub fn current() -> Machine {
    CURRENT.get().copied().unwrap_or(Machine::Clipper)
}

/// A remark when the boot CPU's type is not one the machine is built with
/// (EV6/EV67/EV68 on Tsunami-class machines, EV7/EV79 on Marvel).
pub fn cpu_type_note(m: Machine, cpu_type: u32) -> Option<&'static str> {
    use alphasmp_srm::machine::cpu_type::*;
    let expected = match m {
        Machine::Clipper | Machine::Tsunami => matches!(cpu_type, EV6 | EV67 | EV68CB | EV68AL | EV68CX | EV69),
        Machine::Marvel => matches!(cpu_type, EV7 | EV79),
    };
    (!expected).then_some("the boot CPU's type is not one this machine is built with; continuing with the chosen machine layer")
}

fn tsunami_class(m: Machine) -> bool {
    matches!(m, Machine::Clipper | Machine::Tsunami)
}

/// The console device for `m` and `console=`. `auto`: the UART on QEMU's
/// clipper, the SRM callbacks on real machines (Marvel has no UART; on a
/// real Tsunami SRM may own it).
pub fn console(m: Machine, arg: ConsoleArg, srm: Option<&'static SrmConsole>) -> Result<&'static dyn Console, &'static str> {
    let want_srm = match arg {
        ConsoleArg::Auto => m != Machine::Clipper,
        ConsoleArg::Srm => true,
        ConsoleArg::Uart => false,
    };
    if want_srm {
        return srm.map(|s| s as &'static dyn Console).ok_or("console=srm: the HWRPB has no console callback block");
    }
    if !tsunami_class(m) {
        return Err("console=uart: Marvel has no legacy UART; use console=srm");
    }
    Ok(&tsunami::COM1)
}

/// A console when nothing is known (no HWRPB): the ISA UART, which QEMU
/// and Tsunami-class machines have; elsewhere output is lost, and the run
/// halts anyway.
pub fn last_resort_console() {
    crate::console::set(&tsunami::COM1);
}

/// Probes and quiesces the devices the machine may have (boot CPU, once):
/// device interrupts masked at the Cchip and pvpanic on Tsunami-class PCI
/// (QEMU adds it; a real machine has none); on Marvel, which has no Typhoon
/// PCI window to scan, every IO7's interrupt lines disabled.
pub fn probe_devices(m: Machine, h: &Hwrpb) {
    if tsunami_class(m) {
        let present = h.slots().filter(|s| s.present() && s.index() < 64).fold(1u64 << (pal::whami() % 64), |mask, s| mask | 1 << s.index());
        tsunami::mask_device_interrupts(present);
        PVPANIC.store(clipper::probe_pvpanic(), Ordering::Relaxed);
    }
    if m == Machine::Marvel {
        marvel::quiesce_io7s(h);
    }
}

/// The exit device for the banner.
pub fn exit_device() -> &'static str {
    match (PVPANIC.load(Ordering::Relaxed), QEMU.load(Ordering::Relaxed)) {
        (true, _) => "pvpanic (failure), halt (pass)",
        (false, true) => "halt (no pvpanic: every end reads as QEMU status 0)",
        (false, false) => "halt to the SRM prompt",
    }
}

/// Starts the clock interrupt source (boot CPU, before any CPU lowers its
/// IPL) and configures the tick; returns a line describing it.
pub fn start_clock(m: Machine, arg: ClockArg, tick_hz: u32, h: &Hwrpb) -> Result<clock::Source, &'static str> {
    let source = match arg {
        ClockArg::Alarm if !QEMU.load(Ordering::Relaxed) => return Err("clock=alarm needs QEMU (its private cserve alarm)"),
        ClockArg::Alarm => clock::Source::OneShot,
        // QEMU's PALcode makes no periodic interrupt of its own, so under
        // QEMU the RTC stands in for Marvel's PAL tick too; the kernel's
        // side (take type-1 interrupts as they come, divide) is the same.
        ClockArg::Periodic if tsunami_class(m) || QEMU.load(Ordering::Relaxed) => clock::Source::Periodic { base_hz: tsunami::start_rtc_tick() },
        ClockArg::Periodic => clock::Source::Periodic { base_hz: marvel::tick_base_hz(h.intr_freq()) },
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
    let what = Device::decode(current(), vector);
    if n <= 10 {
        println!("note: unexpected device interrupt on CPU {}: {what}", cpus::this());
    }
    if n >= DEVICE_STORM {
        panic!("{n} unexpected device interrupts on this CPU (last: {what}); cannot mask the source");
    }
}

/// A machine check (entInt type 2). Correctable errors and system events
/// are reported and their logout frame released with `wrmces(7)`; anything
/// else is reported as a fault and panics (never a hang).
pub fn machine_check(vector: u64, logout: u64, pc: u64) {
    let kind = MachineCheck::from_vector(vector);
    if current() == Machine::Marvel
        && !is_qemu()
        && let Some(h) = hwrpb::get()
    {
        marvel::report_logout(h, logout);
    }
    if kind.recoverable() {
        println!("note: {} on CPU {} (vector {vector:#x}, logout {logout:#x}); continuing", kind.name(), cpus::this());
        pal::wrmces(7);
        return;
    }
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
        h.slot(pal::whami() as u64).request_halt(HaltRequest::StayHalted);
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
            (f & alphasmp_srm::hwrpb::flags::HALT_REQUEST_MASK) >> alphasmp_srm::hwrpb::flags::HALT_REQUEST_SHIFT,
            if f & alphasmp_srm::hwrpb::flags::RC != 0 { "set" } else { "clear" }
        ));
    }
    if !pass {
        clipper::pvpanic_failure();
    }
    pal::halt()
}

/// Ends a failed run with nothing that could fault again: the panic path
/// re-entered twice (a fault on every way out) comes here, at IPL 7
/// already. No console output, no halt request: only the failure signal
/// where a probe found one, then CALL_PAL halt.
pub fn end_run_now() -> ! {
    clipper::pvpanic_failure();
    pal::halt()
}
