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
//! interrupted, and lines from different CPUs never interleave. Only a
//! machine check comes in at IPL 7: the lock knows its holder
//! (`alphasmp::cpulock`), so a machine check inside this CPU's own write
//! does not wait for itself.

use core::fmt::{self, Write};

use alphasmp::cpulock::{CpuGuard, CpuLock, Entry};

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
        let byte_ns = BYTE_NS.load(core::sync::atomic::Ordering::Relaxed);
        if byte_ns != 0 {
            // An emulated slow serial line (`console_baud`): the writer
            // waits as a UART's polled send would, lock held, at IPL 7.
            crate::clock::delay_ns(byte_ns * s.len() as u64);
        }
        Ok(())
    }
}

/// What each byte written costs on an emulated serial console
/// (`console_baud=`: ten bit times), 0 for none.
pub static BYTE_NS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

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
/// Serialises output: held at IPL 7 for one formatted message, by the CPU
/// its owner number names (its physical id: known from the first line of
/// the boot on).
static LOCK: CpuLock = CpuLock::new();

/// The owner number of the calling CPU for the console's locks.
pub fn owner_id() -> usize {
    crate::pal::whami()
}

/// Whether the calling CPU is inside a console write (only a machine check
/// can interrupt one: writes run at IPL 7).
pub fn held_here() -> bool {
    LOCK.holds(owner_id())
}

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
    // None: this CPU is inside its own write (a machine check's report);
    // it writes without the lock rather than wait for itself.
    let _held = lock();
    Writer(device()).write_fmt(args).ok();
}

/// Takes the output lock, or None if this CPU holds it already. A CPU may
/// wait here at IPL 7 for as long as the other CPUs' lines take at 9600
/// baud (about 1 ms a character), so no clock interrupt reads its cycle
/// counter meanwhile: the wait reads it itself, so the counter's 32-bit
/// wrap is never missed.
fn lock() -> Option<CpuGuard<'static>> {
    let me = owner_id();
    loop {
        match LOCK.lock_bounded(me, 4096) {
            Entry::Held(g) => return Some(g),
            Entry::Reentered => return None,
            Entry::Busy => crate::clock::keep_counting(),
        }
    }
}

/// Prints on the panic path: takes the lock if it can within a bounded wait,
/// and otherwise writes anyway (the holder may be the CPU that panicked, or
/// a CPU that was stopped while holding it).
pub fn print_panic(args: fmt::Arguments<'_>) {
    let _ipl = IplGuard::raise(ipl::HIGH);
    // Held, or not: this CPU holds it (a machine check inside its own
    // write) or the holder never let go within the wait.
    let _held = LOCK.lock_bounded(owner_id(), 2_000_000);
    Writer(device()).write_fmt(args).ok();
}

/// Prints a line to the console (`use crate::console::println`).
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use println;
