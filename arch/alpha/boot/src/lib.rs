//! What the stage-0 loader and the SRM-entry emulation share: console
//! output through the SRM callbacks, quadword access to memory at a
//! virtual address, and the panic handler. Layouts and decisions live in
//! `alphasmp_srm` (host-tested); this crate only touches the machine.

#![no_std]

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use alphasmp_srm::crb::{self, Aligned};
use alphasmp_srm::hwrpb::Quads;

unsafe extern "Rust" {
    fn crb_dispatch(desc: u64, code: u64, a1: u64, a2: u64, a3: u64, nargs: u64) -> u64;
}

/// KSEG base: physical address + this = a kernel virtual address.
pub const KSEG: u64 = 0xfffffc00_0000_0000;

/// Quadword tables at a virtual address (the HWRPB, the CRB, page tables
/// through the VPTB or KSEG, QEMU's parameter page), read and written
/// with volatile accesses.
#[derive(Clone, Copy)]
pub struct Va(u64);

impl Va {
    /// # Safety
    /// Every offset later read or written must be mapped, 8-byte aligned
    /// memory that this program may access that way for as long as the
    /// `Va` is used (console tables stay mapped on the console's page
    /// tables and through KSEG).
    pub const unsafe fn new(va: u64) -> Va {
        Va(va)
    }
}

impl Quads for Va {
    fn read(&self, offset: u64) -> u64 {
        // SAFETY: `Va::new`'s contract: the table is mapped and readable.
        unsafe { core::ptr::read_volatile((self.0 + offset) as *const u64) }
    }
    fn write(&self, offset: u64, value: u64) {
        // SAFETY: `Va::new`'s contract: the table is mapped and writable.
        unsafe { core::ptr::write_volatile((self.0 + offset) as *mut u64, value) }
    }
    fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_volatile((self.0 + offset) as *mut u32, value) }
    }
}

/// The console's callback dispatch descriptor (a VA), 0 until found.
static CRB_DESC: AtomicU64 = AtomicU64::new(0);

/// Finds the callback dispatcher through the HWRPB's CRB (`hwrpb` is the
/// HWRPB's VA). Returns false if the console has none.
pub fn console_init(hwrpb: u64, crb_offset: u64) -> bool {
    if crb_offset == 0 {
        return false;
    }
    // SAFETY: the CRB lies inside the HWRPB, which the console maps at
    // `hwrpb` (callers pass its console VA or its KSEG address).
    let desc = unsafe { Va::new(hwrpb + crb_offset) }.read(crb::off::DISPATCH_VA);
    CRB_DESC.store(desc, Ordering::Relaxed);
    desc != 0
}

/// One console callback. Single CPU, IPL 7: no lock needed.
pub fn crb_call(code: u64, a1: u64, a2: u64, a3: u64, nargs: u64) -> u64 {
    let desc = CRB_DESC.load(Ordering::Relaxed);
    if desc == 0 {
        return 1 << 63;
    }
    // SAFETY: `desc` is the console's own dispatch descriptor from its CRB,
    // mapped by the console's page tables we run on; the stub follows the
    // console's calling convention; buffers are live for the call.
    unsafe { crb_dispatch(desc, code, a1, a2, a3, nargs) }
}

/// Console output (unit 0), `\n` sent as `\r\n`.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split('\n').enumerate() {
            if i > 0 {
                puts(b"\r\n");
            }
            puts(part.as_bytes());
        }
        Ok(())
    }
}

fn puts(bytes: &[u8]) {
    let _ = crb::puts_all(bytes, |buf: &Aligned, n| {
        crb::Status(crb_call(
            crb::code::PUTS,
            0,
            buf.0.as_ptr() as u64,
            n as u64,
            4,
        ))
    });
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Console, $($arg)*);
    }};
}

/// The name each binary prints its lines with, and how it stops.
pub struct Identity {
    pub name: &'static str,
    pub halt: fn() -> !,
}

static IDENTITY: spin::Once<&'static Identity> = spin::Once::new();

/// Records who is running, for the panic handler.
pub fn set_identity(id: &'static Identity) {
    IDENTITY.call_once(|| id);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match IDENTITY.get().copied() {
        Some(id) => {
            println!("{}: FAIL: panic: {}", id.name, info.message());
            (id.halt)()
        }
        None => loop {
            core::hint::spin_loop();
        },
    }
}
