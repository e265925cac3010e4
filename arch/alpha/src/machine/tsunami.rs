//! Tsunami/Typhoon AlphaServers (DS10, DS20, ES40), and the parts of them
//! QEMU's clipper emulates: the 16550 UART at ISA port 0x3f8 and the
//! MC146818 RTC at ports 0x70/0x71, reached through the Pchip0 PCI I/O
//! window in KSEG (docs/hardware.md §6, docs/qemu.md §5 and §7).

use core::ptr::NonNull;

use volatile::VolatilePtr;

use alphasmp_bootargs::BootConfig;
use alphasmp_srm::isa::{self, PortIo};
use alphasmp_srm::machine::{ST_DEC_TSUNAMI, cpu_type};
use alphasmp_srm::vectors::DeviceVectors;

use super::MachineVector;
use crate::console::Console;
use crate::hwrpb::Hwrpb;
use alphasmp_bootargs::WaitArg;

/// Real Tsunami/Typhoon AlphaServers: DS10, DS20 (2-CPU Tsunami), ES40
/// (4-CPU Typhoon). QEMU's clipper is the same chipset and reuses these
/// functions (`clipper.rs`).
pub static VECTOR: MachineVector = MachineVector {
    name: "tsunami",
    models: "DS10, DS20, ES40",
    sys_types: &[ST_DEC_TSUNAMI],
    qemu: Some(false),
    cpu_types: CPU_TYPES,
    uart: Some(&COM1),
    // SRM may own COM1 as its own console on a real machine.
    auto_console_uart: false,
    start_tick,
    probe,
    device_vectors: DeviceVectors::Tsunami,
    report_logout: super::nothing_to_report,
    signal_failure: super::no_failure_signal,
    exit_device,
    // The console's PALcode is the architected way to interrupt: whether
    // it does more than clipper's one MISC store is not known here
    // (docs/hardware.md §6), so a broadcast stays a `wripir` each.
    request_ipis: super::wripir_each,
    default_wait: WaitArg::Spin,
    default_idle_poll_us: 0,
};

/// The CPUs Tsunami-class machines are built with.
pub const CPU_TYPES: &[u32] = &[
    cpu_type::EV6,
    cpu_type::EV67,
    cpu_type::EV68CB,
    cpu_type::EV68AL,
    cpu_type::EV68CX,
    cpu_type::EV69,
];

/// The RTC as the periodic tick.
pub fn start_tick(_: &Hwrpb) -> u64 {
    start_rtc_tick()
}

/// Masks every device interrupt at the Cchip, for the CPUs present.
pub fn probe(h: &Hwrpb, _: &BootConfig<'_>) {
    let present = h
        .slots()
        .filter(|s| s.present() && s.index() < 64)
        .fold(1u64 << (crate::pal::whami() % 64), |mask, s| {
            mask | 1 << s.index()
        });
    mask_device_interrupts(present);
}

fn exit_device() -> &'static str {
    "halt to the SRM prompt"
}

/// KSEG address of ISA/PCI I/O port 0 behind Pchip0.
const PCI_IO: u64 = 0xfffffd01fc000000;

/// ISA ports behind Pchip0, for `alphasmp_srm::isa` (which puts each
/// access between barriers: Alpha may reorder I/O-space accesses).
pub struct IsaPorts;

impl IsaPorts {
    fn port(p: u64) -> VolatilePtr<'static, u8> {
        // SAFETY: ports 0..0x10000 of Pchip0's I/O window are
        // byte-accessible device registers on every Tsunami-class machine,
        // mapped through KSEG for the whole run; unassigned ports read 0
        // (docs/qemu.md §3.3).
        unsafe { VolatilePtr::new(NonNull::new_unchecked((PCI_IO + p) as *mut u8)) }
    }
}

impl PortIo for IsaPorts {
    fn store8(&self, port: u64, value: u8) {
        Self::port(port).write(value);
    }
    fn load8(&self, port: u64) -> u8 {
        Self::port(port).read()
    }
    fn mb(&self) {
        crate::pal::mb();
    }
}

/// A 16550-compatible UART, polled, at an ISA port.
pub struct Uart16550 {
    port: u64,
}

impl Uart16550 {
    /// COM1, ISA port 0x3f8 (on real machines SRM may own it as its own
    /// console, which is why `console=auto` picks SRM there).
    pub const COM1: Uart16550 = Uart16550 { port: isa::COM1 };

    fn put(&self, b: u8) {
        isa::uart_put(&IsaPorts, self.port, b);
    }
}

impl Console for Uart16550 {
    fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }
    fn name(&self) -> &'static str {
        "uart16550@0x3f8"
    }
}

// ---- Device interrupts --------------------------------------------------------

/// Masks every device interrupt at the Cchip (boot CPU, once): this kernel
/// drives no device by interrupt. The clock (RTC) and IPIs do not go
/// through DIM (docs/qemu.md §7, docs/hardware.md §6; Linux sends IPIs only with wripir). Only the
/// DIMs of CPUs the HWRPB reports present are written: a 2-CPU Cchip has
/// no DIM2/DIM3 (`alphasmp_srm::cchip`).
pub fn mask_device_interrupts(present: u64) {
    alphasmp_srm::cchip::mask_device_interrupts(present, &CchipCsrs);
}

/// The Cchip's CSRs through KSEG.
struct CchipCsrs;

impl alphasmp_srm::cchip::Csr for CchipCsrs {
    fn store(&self, addr: u64, value: u64) {
        // SAFETY: `addr` is the DIM register of a present CPU, a Cchip CSR
        // on every Tsunami/Typhoon machine, mapped through KSEG; a quadword
        // store of 0 masks all of that CPU's device interrupt sources and
        // has no other effect.
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
    }
    fn load(&self, addr: u64) -> u64 {
        // SAFETY: as for the store: a DIM register, which reads back what
        // was written and has no side effect when read.
        unsafe { core::ptr::read_volatile(addr as *const u64) }
    }
    fn mb(&self) {
        crate::pal::mb();
    }
}

/// COM1 as the console device.
pub static COM1: Uart16550 = Uart16550::COM1;

// ---- The MC146818 RTC as the periodic tick ---------------------------------

/// Turns on the RTC's periodic interrupt (boot CPU, once), which reaches
/// every CPU as entInt type 1 (`alphasmp_srm::isa::rtc_start_periodic`:
/// 1024 Hz unless a rate Linux accepts is set; PIE and SQWE on); QEMU
/// needs nothing more (docs/qemu.md §7). Returns the rate register A
/// selects, in Hz.
pub fn start_rtc_tick() -> u64 {
    isa::rtc_start_periodic(&IsaPorts).unwrap_or(crate::clock::FALLBACK_BASE_HZ)
}
