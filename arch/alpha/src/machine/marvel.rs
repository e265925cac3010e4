//! EV7/Marvel AlphaServers (ES47, ES80, GS1280) (docs/hardware.md §4).
//!
//! What the kernel does differently there, all of it through architected
//! interfaces:
//! - no legacy I/O ports: the console is the SRM callbacks (`srm.rs`);
//! - no RTC to program: the PALcode delivers the periodic type-1 interrupt
//!   at `intr_freq / 4096` Hz, taken as it comes;
//! - machine checks arrive with vectors 0x620..0x680 and an EV7 logout frame;
//!   each is reported with the frame's sub-packets decoded
//!   (`alphasmp_srm::ev7_logout`), and `wrmces(7)` releases the frame;
//! - the IO7s' interrupt lines are disabled at boot, their error sources
//!   sent to the boot CPU (`alphasmp_srm::io7`; the GCT lists the IO7s,
//!   and `io7=` may name more, as Linux's);
//! - device vectors name the IO7 (by PID) and its LSI/MSI number.
//!
//! CPU numbers are EV7 PIDs (sparse, boot CPU any), which `crate::cpus`
//! maps to dense logical ids for every machine alike.
//!
//! None of this has run on a Marvel; it runs on QEMU with `machine=marvel`
//! (which takes the same paths except that QEMU's PALcode reports machine
//! checks with vector 0 and there is no GCT), and the decoding, the GCT
//! walk and the IO7 writes are host-tested in `alphasmp_srm`.

use alphasmp_srm::hwrpb::Quads;
use alphasmp_srm::machine::{ST_DEC_MARVEL, cpu_type};
use alphasmp_srm::vectors::DeviceVectors;
use alphasmp_srm::{ev7_logout, io7};

use super::MachineVector;
use crate::console::println;
use crate::hwrpb::{self, Hwrpb, KSEG};
use alphasmp_bootargs::{BootConfig, WaitArg};

/// EV7/Marvel: ES47, ES80, GS1280.
pub static VECTOR: MachineVector = MachineVector {
    name: "marvel",
    models: "ES47, ES80, GS1280",
    sys_types: &[ST_DEC_MARVEL],
    qemu: None,
    cpu_types: &[cpu_type::EV7, cpu_type::EV79],
    // No legacy ports: the SRM callbacks are the console.
    uart: None,
    auto_console_uart: false,
    start_tick,
    probe: quiesce_io7s,
    device_vectors: DeviceVectors::Marvel,
    report_logout,
    signal_failure: super::no_failure_signal,
    exit_device,
    // No Cchip: EV7 interrupts go by `wripir` to each PID.
    request_ipis: super::wripir_each,
    default_wait: WaitArg::Spin,
    default_idle_poll_us: 0,
};

/// The EV7 PALcode's tick: nothing to program, its rate only known from
/// the HWRPB (docs/hardware.md §4.3: "the EV7 SRM rate is unknown; read
/// intr_freq"); implausible values fall back to 1024 Hz (NetBSD's rule),
/// see `clock::base_hz_from`.
fn start_tick(h: &Hwrpb) -> u64 {
    crate::clock::base_hz_from(h.intr_freq())
}

fn exit_device() -> &'static str {
    "halt to the SRM prompt"
}

/// A quadword load from KSEG.
fn load(addr: u64) -> u64 {
    // SAFETY: callers pass KSEG addresses of console memory (the HWRPB and
    // its GCT, a logout frame) or of an IO7's CSRs that the GCT reported.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Quiesces every IO7 the console's GCT lists, and those `io7=` names
/// (boot CPU, once): error and hot-plug sources to the boot CPU, every LSI
/// and MSI line disabled, as Linux's `init_io7_irqs` does
/// (docs/hardware.md §4). A line the console left enabled would otherwise
/// storm CPU 0 into the device-interrupt panic. Without a GCT (QEMU) and
/// without `io7=` nothing is touched, and the banner says so.
fn quiesce_io7s(h: &Hwrpb, cfg: &BootConfig<'_>) {
    let frut = h.mem().read(io7::hwrpb_off::FRUT_OFFSET);
    // PEs found, bit n for PE n; a PE number past 63 (not a real one) is
    // reported where the walk meets it.
    let mut pes = 0u64;
    // The tree lies in the console's heap, past the HWRPB's `size`
    // (`io7::gct_window`).
    match io7::gct_window(frut) {
        Some(window) => {
            let gct = hwrpb::base(h) + frut;
            let walked = io7::gct_io7_pes(
                |o| load(gct + o),
                window,
                |pe| match pe {
                    0..64 => pes |= 1 << pe,
                    _ => println!("io7: the GCT names PE {pe}, beyond any EV7's"),
                },
            );
            if let Err(e) = walked {
                println!("io7: {e}");
            }
        }
        None => println!("io7: no configuration tree (GCT) in the HWRPB"),
    }
    let named = cfg.io7 & !pes;
    if named != 0 {
        println!("io7: io7= adds PE mask {named:#x} to the GCT's {pes:#x}");
    }
    pes |= named;
    if pes == 0 {
        println!("io7: no IO7 known; IO7 interrupt lines left as the console set them");
        return;
    }
    let boot_pid = crate::pal::whami() as u64;
    let store = |addr: u64, value: u64| {
        // SAFETY: an IO7 control register of an IO7 the GCT reported or
        // `io7=` named, reached through KSEG; these writes only retarget or
        // disable interrupt lines (Linux's init_io7_irqs makes the same ones).
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
        crate::pal::mb();
    };
    for pe in alphasmp::cpumask::CpuMask(pes).iter() {
        let pe = pe as u64;
        // Errors the console's probing latched, cleared before the error
        // sources are aimed at this CPU (a 0x660 machine check is fatal
        // here), as Linux clears them once its own probing is done.
        let cleared = io7::clear_errors(pe, store);
        match cleared.and_then(|c| io7::quiesce_io7(pe, boot_pid, load, store).map(|n| (c, n))) {
            Ok((c, n)) => println!(
                "io7: PE {pe}: {c} error summaries cleared, {n} interrupt controls written: LSI and MSI lines off, error sources to PID {boot_pid}"
            ),
            Err(e) => println!("io7: PE {pe}: {e}"),
        }
    }
}

/// Prints the EV7 logout frame at KSEG address `logout`, one line per
/// sub-packet, bounded by the CPU's logout area from its HWRPB slot.
fn report_logout(h: &Hwrpb, logout: u64) {
    if logout == 0 {
        return;
    }
    let (area_pa, area_len) = h.slot(crate::pal::whami() as u64).logout_area();
    let area = KSEG | area_pa;
    let max = if area_len != 0 && (area..area + area_len).contains(&logout) {
        area + area_len - logout
    } else {
        ev7_logout::MAX_FRAME
    };
    for step in ev7_logout::subpackets(|o| load(logout + o), max) {
        crate::console::print_panic(format_args!("mchk: {step}\n"));
    }
}
