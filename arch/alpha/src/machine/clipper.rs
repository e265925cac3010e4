//! QEMU's `-M clipper`: a Typhoon (see `tsunami.rs`) plus what only QEMU
//! has: the `pvpanic-pci` device that gives a failing run a non-zero exit
//! status, and the per-CPU one-shot alarm of `cserve` 5-7 (docs/qemu.md
//! §4, §6 and §7). Nothing here exists on a real machine.

use core::sync::atomic::{AtomicU64, Ordering};

use alphasmp_srm::machine::ST_DEC_TSUNAMI;
use alphasmp_srm::vectors::DeviceVectors;

use super::{MachineVector, tsunami};
use crate::hwrpb::Hwrpb;
use crate::{clock, pal, percpu};
use alphasmp_bootargs::{BootConfig, WaitArg};

/// QEMU's clipper: Tsunami's functions wherever the two agree (console
/// UART, RTC tick, Cchip masking, vectors), plus pvpanic.
pub static VECTOR: MachineVector = MachineVector {
    name: "clipper",
    models: "QEMU -M clipper",
    sys_types: &[ST_DEC_TSUNAMI],
    qemu: Some(true),
    cpu_types: tsunami::CPU_TYPES,
    uart: Some(&tsunami::COM1),
    auto_console_uart: true,
    start_tick: tsunami::start_tick,
    probe,
    device_vectors: DeviceVectors::Tsunami,
    report_logout: super::nothing_to_report,
    signal_failure: pvpanic_failure,
    exit_device,
    request_ipis,
    // Probe at boot whether each vCPU has a host core: spin if so (as
    // Linux does), else spin a wait's first microseconds, then nap
    // (README "Speed": measured best where vCPUs share host cores).
    default_wait: WaitArg::Auto,
    // Poll 200 us after each IPI before halting again: a halted vCPU's
    // wake-up costs more than the call (README "Speed").
    default_idle_poll_us: 200,
};

fn probe(h: &Hwrpb, cfg: &BootConfig<'_>) {
    tsunami::probe(h, cfg);
    probe_pvpanic();
}

/// Interprocessor interrupts in one store of their IPREQ bits to the
/// Cchip's MISC register (`alphasmp_srm::cchip`), for one target as for a
/// broadcast's. qemu-palcode's `wripir` is that same store for one CPU
/// (docs/qemu.md §3.1), so the targets see what a `wripir` each would give
/// them. A broadcast's sender pays one emulated device access instead of
/// one per target, where each wakes a halted vCPU thread (README "Speed":
/// the idle broadcast on 4 CPUs). A single IPI takes the same store, so
/// that every IPI on clipper goes one way; without the PAL call it
/// measured no faster (docs/cross-calls.md §11). A real Tsunami keeps `wripir`
/// (`tsunami.rs`): what its console's PALcode does for `wripir` is not
/// known here (docs/hardware.md §6).
fn request_ipis(phys: u64) {
    let rest = alphasmp_srm::cchip::request_ipis(phys, |reg, value| {
        // SAFETY: `reg` is the Cchip's MISC register, mapped through KSEG
        // on clipper; a quadword store of IPREQ bits and zeros elsewhere is
        // what qemu-palcode's `wripir` stores for one CPU, with more IPREQ
        // bits: it requests those CPUs' interprocessor interrupts and has
        // no effect `wripir` would not have.
        unsafe { core::ptr::write_volatile(reg as *mut u64, value) };
    });
    super::wripir_each(rest);
}

fn exit_device() -> &'static str {
    if PVPANIC.load(Ordering::Relaxed) != 0 {
        "pvpanic (failure), halt (pass)"
    } else {
        "halt (no pvpanic: every end reads as QEMU status 0)"
    }
}

// ---- pvpanic ---------------------------------------------------------------

/// PCI configuration space of bus 0 in KSEG (Typhoon Pchip0).
const PCI_CONFIG: u64 = 0xfffffd01fe000000;
/// PCI memory space in KSEG.
const PCI_MEMORY: u64 = 0xfffffd0000000000;
const PVPANIC_VENDOR_DEVICE: u32 = 0x0011_1b36;
const PVPANIC_PANICKED: u8 = 1;

/// KSEG address of the pvpanic register, 0 if there is no such device.
static PVPANIC: AtomicU64 = AtomicU64::new(0);

fn config_read32(slot: u64, reg: u64) -> u32 {
    let addr = PCI_CONFIG | (slot << 11) | reg;
    // SAFETY: configuration space reads on bus 0 are side-effect free and
    // read all-ones (or 0) for an empty slot; the window is always mapped
    // through KSEG on Typhoon.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Looks for the pvpanic device on PCI bus 0 (boot CPU, once).
fn probe_pvpanic() -> bool {
    for slot in 0..32 {
        if config_read32(slot, 0) == PVPANIC_VENDOR_DEVICE {
            let bar0 = u64::from(config_read32(slot, 0x10) & !0xf);
            if bar0 != 0 {
                PVPANIC.store(PCI_MEMORY + bar0, Ordering::Relaxed);
                return true;
            }
        }
    }
    false
}

/// Reports a failure through pvpanic (QEMU then exits with status 1).
/// Returns if there is no device or QEMU did not act in time.
pub fn pvpanic_failure() {
    let reg = PVPANIC.load(Ordering::Relaxed);
    if reg == 0 {
        return;
    }
    // SAFETY: `reg` is BAR0 of the pvpanic device found by the probe; a byte
    // store of PVPANIC_PANICKED is its documented interface.
    unsafe { core::ptr::write_volatile(reg as *mut u8, PVPANIC_PANICKED) };
    // QEMU exits asynchronously; give it time before the caller halts.
    for _ in 0..100_000_000u64 {
        core::hint::spin_loop();
    }
}

// ---- The one-shot alarm (clock=alarm) ----------------------------------------
//
// Each CPU arms its own alarm with an absolute deadline on the VM clock
// (cserve 6; cserve 7 reads that clock); it arrives as entInt type 1 and the
// handler re-arms it. Deadlines advance by exactly one period from the
// previous deadline, so interrupt latency does not accumulate into drift.

const CSERVE_SET_ALARM_ABSOLUTE: u64 = 6;
const CSERVE_VM_TIME_NS: u64 = 7;

fn vm_time_ns() -> u64 {
    pal::cserve(CSERVE_VM_TIME_NS, 0, 0)
}

/// Arms the calling CPU's first alarm.
pub fn start_alarm() {
    let next = vm_time_ns() + clock::tick_period_ns();
    percpu::this().next_tick_ns.store(next, Ordering::Relaxed);
    pal::cserve(CSERVE_SET_ALARM_ABSOLUTE, next, 0);
}

/// Re-arms the alarm one period after the previous deadline.
pub fn rearm_alarm() {
    let me = percpu::this();
    let period = clock::tick_period_ns();
    let mut next = me.next_tick_ns.load(Ordering::Relaxed) + period;
    let now = vm_time_ns();
    if next <= now {
        // Fell more than a period behind (the CPU sat at a high IPL): skip.
        next = now + period;
    }
    me.next_tick_ns.store(next, Ordering::Relaxed);
    pal::cserve(CSERVE_SET_ALARM_ABSOLUTE, next, 0);
}
