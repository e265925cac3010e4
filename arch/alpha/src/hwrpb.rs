//! The HWRPB in this machine's memory: `alphasmp_srm::hwrpb` (the layout,
//! host-tested) over volatile KSEG loads and stores.

use alphasmp_srm::hwrpb::{self as layout, HwrpbError, Quads};

/// KSEG base: physical address + this = a kernel virtual address.
pub const KSEG: u64 = 0xfffffc0000000000;

/// Where the console's page table maps the HWRPB (Linux `INIT_HWRPB`).
const INIT_HWRPB: u64 = 0x10000000;

/// The HWRPB's memory, reached through KSEG.
#[derive(Clone, Copy, Debug)]
pub struct Kseg {
    base: u64,
}

impl Quads for Kseg {
    fn read(&self, offset: u64) -> u64 {
        // SAFETY: the HWRPB is console memory that stays mapped through KSEG
        // for the whole run; the layout code only reads offsets inside the
        // block, its slot table and its memory descriptor table.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }
    fn write(&self, offset: u64, value: u64) {
        // SAFETY: as in `read`; the layout code writes only the fields the
        // OS owns (restart address, checksum, slot PCBs, flags, IPC buffers).
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u64, value) }
    }
    fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as in `write`, a longword the OS owns (`rxlen`), 4-byte
        // aligned by the layout.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }
}

pub type Hwrpb = layout::Hwrpb<Kseg>;

/// Finds the HWRPB through the console's mapping and checks it.
///
/// # Safety
/// Must run while the console's page table (which maps `INIT_HWRPB`) is
/// the active one; this kernel never leaves it.
pub unsafe fn locate() -> Result<Hwrpb, HwrpbError> {
    // SAFETY: the console maps INIT_HWRPB to the HWRPB page (caller).
    let phys = unsafe { core::ptr::read_volatile(INIT_HWRPB as *const u64) };
    layout::Hwrpb::new(Kseg { base: KSEG | phys })
}

/// The KSEG address of the block.
pub fn base(h: &Hwrpb) -> u64 {
    h.mem().base
}

/// Atomically sets `bits` in rxrdy (physical CPU numbers): the console
/// polls this word and clears bits with plain stores, so an atomic OR keeps
/// a concurrent update from our side.
pub fn post_rxrdy(h: &Hwrpb, bits: u64) {
    let p = (base(h) + layout::off::RXRDY) as *const core::sync::atomic::AtomicU64;
    // SAFETY: rxrdy is an aligned quadword of the HWRPB, mapped for the run.
    unsafe { (*p).fetch_or(bits, core::sync::atomic::Ordering::SeqCst) };
}

/// Atomically sets `bits` in txrdy (physical CPU numbers): what a
/// secondary console does once its line is in its slot
/// (`Slot::set_tx_text`); the self-tests play such a console with it.
pub fn post_txrdy(h: &Hwrpb, bits: u64) {
    let p = (base(h) + layout::off::TXRDY) as *const core::sync::atomic::AtomicU64;
    // SAFETY: txrdy is an aligned quadword of the HWRPB, mapped for the run.
    unsafe { (*p).fetch_or(bits, core::sync::atomic::Ordering::SeqCst) };
}

/// Lines taken from secondary consoles (for the exit line).
pub static SECONDARY_LINES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Takes the lines secondary consoles posted (their `txrdy` bits), prints
/// each as `console CPU n: text`, and clears exactly those bits so each
/// console can go on (Linux and NetBSD clear them in the IPI handler too).
///
/// One drain at a time: a line is read, printed and only then released,
/// so two drains at once print it twice (seen with every CPU's IPI handler
/// draining: `smp.secondary_console_lines_once`). The boot CPU drains with
/// its interrupts masked (its IPI and clock handlers; the bring-up's wait,
/// raised to IPL 7), so its drains never nest; the CPU that ends the run
/// drains once more, and on a panic path the boot CPU may not have
/// stopped by then: a drain that finds another under way leaves the lines
/// to it and returns 0 (`DRAINING`).
pub fn drain_secondary_consoles(h: &Hwrpb) -> u64 {
    if DRAINING.swap(true, core::sync::atomic::Ordering::Acquire) {
        return 0;
    }
    let taken = h.take_secondary_lines(|cpu, text| {
        let text = core::str::from_utf8(text)
            .unwrap_or("(not text)")
            .trim_end_matches(['\r', '\n', '\0']);
        crate::console::print_panic(format_args!("console CPU {cpu}: {text}\n"));
        SECONDARY_LINES.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    });
    if taken != 0 {
        let p = (base(h) + layout::off::TXRDY) as *const core::sync::atomic::AtomicU64;
        // SAFETY: txrdy is an aligned quadword of the HWRPB, mapped for the
        // run; consoles set their own bits concurrently, so only the bits
        // taken are cleared, atomically.
        unsafe { (*p).fetch_and(!taken, core::sync::atomic::Ordering::SeqCst) };
    }
    DRAINING.store(false, core::sync::atomic::Ordering::Release);
    taken
}

/// Held by the drain under way ([`drain_secondary_consoles`]): set by a
/// swap (Acquire), cleared by its holder (Release).
static DRAINING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The HWRPB found at boot.
static FOUND: spin::Once<Hwrpb> = spin::Once::new();

/// Records the HWRPB for the rest of the run (boot CPU, once).
pub fn set(h: Hwrpb) -> &'static Hwrpb {
    FOUND.call_once(|| h)
}

/// The HWRPB found at boot (None only before `set`).
#[inline]
pub fn get() -> Option<&'static Hwrpb> {
    FOUND.get()
}
