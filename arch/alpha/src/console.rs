//! The kernel console: a small trait so a platform can supply its own device.
//!
//! Clipper has a 16550 UART at ISA port 0x3f8 behind the Typhoon PCI I/O
//! window; Marvel has no legacy ports and will use the SRM console callback
//! (CRB) through the same trait (see docs: qemu-alpha.md 5 and 8).
//!
//! Output is serialised by a spin lock held at IPL 7, so an interrupt handler
//! that prints on the same CPU cannot deadlock against the code it
//! interrupted, and lines from different CPUs never interleave.

use core::fmt::{self, Write};
use core::ptr::NonNull;

use spin::Mutex;
use volatile::VolatilePtr;

use crate::ipl::{self, IplGuard};

/// A byte sink that works from any context without allocating.
pub trait Console: Sync {
    /// Writes `bytes` as-is.
    fn write_bytes(&self, bytes: &[u8]);
    /// A short name for the banner.
    fn name(&self) -> &'static str;
}

/// A 16550-compatible UART, polled.
pub struct Uart16550 {
    base: u64,
}

/// Line status register bit: transmit holding register empty.
const LSR_THRE: u8 = 0x20;

impl Uart16550 {
    /// COM1 on clipper: port 0x3f8 in the Pchip0 PCI I/O space (KSEG).
    pub const CLIPPER_COM1: Uart16550 = Uart16550 { base: 0xfffffd01fc0003f8 };

    fn reg(&self, offset: u64) -> VolatilePtr<'static, u8> {
        // SAFETY: `base` is the KSEG address of a UART whose registers
        // 0..=7 are byte-accessible device registers (PALcode configured
        // the port), valid for the whole run.
        unsafe { VolatilePtr::new(NonNull::new_unchecked((self.base + offset) as *mut u8)) }
    }

    fn put(&self, b: u8) {
        let mut spins = 0u32;
        // Bounded: a missing UART must not hang the kernel forever.
        while self.reg(5).read() & LSR_THRE == 0 && spins < 1_000_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        self.reg(0).write(b);
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

struct Writer(&'static dyn Console);

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_bytes(s.as_bytes());
        Ok(())
    }
}

static COM1: Uart16550 = Uart16550::CLIPPER_COM1;
static CONSOLE: Mutex<Writer> = Mutex::new(Writer(&COM1));

/// The console device in use.
pub fn device_name() -> &'static str {
    CONSOLE.lock().0.name()
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ipl = IplGuard::raise(ipl::HIGH);
    CONSOLE.lock().write_fmt(args).ok();
}

/// Prints on the panic path: takes the lock if it can within a bounded wait,
/// and otherwise writes anyway (the holder may be the CPU that panicked, or
/// a CPU that was stopped while holding it).
pub fn print_panic(args: fmt::Arguments<'_>) {
    let _ipl = IplGuard::raise(ipl::HIGH);
    for _ in 0..2_000_000 {
        if let Some(mut w) = CONSOLE.try_lock() {
            w.write_fmt(args).ok();
            return;
        }
        core::hint::spin_loop();
    }
    Writer(&COM1).write_fmt(args).ok();
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
