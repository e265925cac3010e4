//! The kernel console: a small trait, one device chosen at boot.
//!
//! Devices: the 16550 UART at ISA port 0x3f8 (clipper and other
//! Tsunami-class machines, `machine/tsunami.rs`) and the SRM console
//! callbacks (`srm.rs`), which every SRM console has and which are the only
//! choice on Marvel (no legacy ports). The machine layer picks one
//! (`console=` overrides) and installs it with [`set`] before the banner.
//!
//! Output is serialised by a spin lock held at IPL 7, so an interrupt handler
//! that prints on the same CPU cannot deadlock against the code it
//! interrupted, and lines from different CPUs never interleave.

use core::fmt::{self, Write};

use spin::Mutex;

use crate::ipl::{self, IplGuard};

/// A byte sink that works from any context without allocating.
pub trait Console: Sync {
    /// Writes `bytes` as-is.
    fn write_bytes(&self, bytes: &[u8]);
    /// A short name for the banner.
    fn name(&self) -> &'static str;
}

struct Writer(&'static dyn Console);

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Output before a device is chosen goes nowhere.
struct Silent;

impl Console for Silent {
    fn write_bytes(&self, _: &[u8]) {}
    fn name(&self) -> &'static str {
        "none"
    }
}

/// The device, chosen once at boot.
static DEVICE: spin::Once<&'static dyn Console> = spin::Once::new();
/// Serialises output: held at IPL 7 for one formatted message.
static LOCK: Mutex<()> = Mutex::new(());

fn device() -> &'static dyn Console {
    DEVICE.get().copied().unwrap_or(&Silent)
}

/// Installs the console device (boot CPU, once; a second call is ignored).
pub fn set(device: &'static dyn Console) {
    DEVICE.call_once(|| device);
}

/// The console device in use.
pub fn device_name() -> &'static str {
    device().name()
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ipl = IplGuard::raise(ipl::HIGH);
    let _held = lock();
    Writer(device()).write_fmt(args).ok();
}

/// Takes the output lock. A CPU may wait here at IPL 7 for as long as the
/// other CPUs' lines take at 9600 baud (about 1 ms a character), so no
/// clock interrupt reads its cycle counter meanwhile: the wait reads it
/// itself, so the counter's 32-bit wrap is never missed.
fn lock() -> spin::MutexGuard<'static, ()> {
    let mut spins = 0u32;
    loop {
        if let Some(held) = LOCK.try_lock() {
            return held;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) {
            crate::clock::keep_counting();
        }
        core::hint::spin_loop();
    }
}

/// Prints on the panic path: takes the lock if it can within a bounded wait,
/// and otherwise writes anyway (the holder may be the CPU that panicked, or
/// a CPU that was stopped while holding it).
pub fn print_panic(args: fmt::Arguments<'_>) {
    let _ipl = IplGuard::raise(ipl::HIGH);
    for _ in 0..2_000_000 {
        if let Some(_held) = LOCK.try_lock() {
            Writer(device()).write_fmt(args).ok();
            return;
        }
        core::hint::spin_loop();
    }
    Writer(device()).write_fmt(args).ok();
}

/// Prints a line to the console (`use crate::console::println`).
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use println;
