//! Ending the run with a status the host can read.
//!
//! QEMU/clipper has no debug-exit port. CALL_PAL halt ends QEMU with status 0
//! (used only for a pass); a failure stores PVPANIC_PANICKED into the
//! `pvpanic-pci` device, which with `-action panic=exit-failure` ends QEMU
//! with status 1 (docs: qemu-alpha.md 6). Real hardware has neither: there
//! halt returns to the SRM console, which is the right end for both.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::pal;

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

/// Looks for the pvpanic device on PCI bus 0 (call once at boot).
pub fn probe() -> Option<u64> {
    for slot in 0..32 {
        if config_read32(slot, 0) == PVPANIC_VENDOR_DEVICE {
            let bar0 = u64::from(config_read32(slot, 0x10) & !0xf);
            if bar0 != 0 {
                let reg = PCI_MEMORY + bar0;
                PVPANIC.store(reg, Ordering::Relaxed);
                return Some(reg);
            }
        }
    }
    None
}

/// Ends the run successfully.
pub fn success() -> ! {
    pal::halt()
}

/// Ends the run with a failure status. Without a pvpanic device (real
/// hardware, or QEMU started without it) the machine halts to the console;
/// the host harness then judges by the printed summary instead.
pub fn failure() -> ! {
    let reg = PVPANIC.load(Ordering::Relaxed);
    if reg != 0 {
        // SAFETY: `reg` is BAR0 of the pvpanic device found by `probe`; a
        // byte store of PVPANIC_PANICKED is its documented interface.
        unsafe { core::ptr::write_volatile(reg as *mut u8, PVPANIC_PANICKED) };
        // QEMU exits asynchronously; give it time before falling back.
        for _ in 0..100_000_000u64 {
            core::hint::spin_loop();
        }
    }
    pal::halt()
}
