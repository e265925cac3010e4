//! Interrupt priority levels (IPL) as a small safe API.
//!
//! Alpha masks interrupts by level: at IPL n, every source at level <= n is
//! held off. Under OSF/1 PALcode on clipper (see docs/qemu.md §3.2):
//!
//! | IPL | masks |
//! |---|---|
//! | 0 | nothing: every interrupt can arrive |
//! | 4 | device interrupts ([`DEVICE`]) |
//! | 5 | the clock as well ([`CLOCK`]) |
//! | 6 | interprocessor interrupts as well ([`IPI`]) |
//! | 7 | everything asynchronous, machine checks included ([`HIGH`]) |
//!
//! On real EV6/EV7 consoles IPIs share the clock's level 5, so there they
//! are already masked at 5; the level below which IPIs can arrive is the
//! machine's (`machine::ipi_ipl`). Raising to [`IPI`] masks them on both.
//!
//! Only [`IplGuard`] changes the level: it raises (never lowers) and restores
//! the previous level when dropped, so guards nest. Two exceptions: boot
//! code and the idle loop [`set`] it, and an interrupt handler raises to
//! [`HIGH`] for the rest of the interrupt ([`raise_for_handler`]), whose
//! return restores the interrupted level.

use crate::pal;

/// Every interrupt enabled.
pub const ALL_ON: u8 = 0;
/// Device interrupts masked.
pub const DEVICE: u8 = 4;
/// Clock and device interrupts masked.
pub const CLOCK: u8 = 5;
/// IPIs, clock and devices masked (on every PALcode this kernel knows).
pub const IPI: u8 = 6;
/// All asynchronous interrupts masked.
pub const HIGH: u8 = 7;

/// Raises to at least `level` and returns the level before. To HIGH (the
/// most common raise) it is one PAL call, `swpipl`, whose answer is the
/// previous level: nothing is above HIGH, so it never lowers. Below HIGH
/// it reads the level first (`rdps`), so that a higher level is kept.
#[inline]
pub fn raise_to(level: u8) -> u8 {
    if level >= HIGH {
        return swap(HIGH);
    }
    let cur = current();
    if level > cur {
        swap(level);
    }
    cur
}

/// The current IPL of this CPU: its running stack's note
/// (`cpus::noted_ipl_here`), else `rdps`. The note is written by every
/// [`swap`] (before and after its `swpipl`) and by the return from every
/// interrupt; the processor's level differs from it only inside interrupt
/// entry, before the handler's [`raise_for_handler`], where nothing asks.
/// A load where `rdps` is a call to a PAL stub and back, which QEMU runs
/// as jumps looked up at run time, several times per cross-call (README
/// "Speed"). The self-tests `ipl.guard_nests` and
/// `ipl.note_agrees_with_rdps` compare the two.
#[inline]
pub fn current() -> u8 {
    crate::cpus::noted_ipl_here().unwrap_or_else(|| (pal::rdps() & 7) as u8)
}

/// Raises the IPL for the guard's lifetime, then restores the previous one.
/// A guard that found the level already at or above its own changes
/// nothing and restores nothing (a swpipl saved: under QEMU each one ends
/// a translation block); code inside a guard leaves the IPL as it found it.
#[must_use = "the IPL is restored when the guard is dropped"]
pub struct IplGuard {
    previous: u8,
    raised: bool,
    // Not Send: the saved level belongs to this CPU.
    _not_send: core::marker::PhantomData<*const ()>,
}

impl IplGuard {
    /// Raises to at least `level` (a higher current level is kept).
    #[inline]
    pub fn raise(level: u8) -> Self {
        let cur = raise_to(level);
        IplGuard {
            previous: cur,
            raised: cur < level,
            _not_send: core::marker::PhantomData,
        }
    }

    /// The level that is restored on drop.
    pub fn previous(&self) -> u8 {
        self.previous
    }
}

impl Drop for IplGuard {
    #[inline]
    fn drop(&mut self) {
        if self.raised {
            swap(self.previous);
        }
    }
}

/// Raises to [`HIGH`] until the interrupt handler that calls it returns:
/// no guard restores it, because the return from the interrupt (PALcode's
/// rti) restores the interrupted code's PS, IPL included, and asm/entry.S
/// notes that level first. One `swpipl` per interrupt, as Linux's
/// `do_entInt` (which never lowers either); a restore just before rti
/// would be a second PAL call doing nothing rti does not do. Only the
/// handlers' entries call it (`interrupt::dispatch`,
/// `interrupt::alpha_ipi_interrupt`).
#[inline]
pub fn raise_for_handler() {
    swap(HIGH);
}

/// Sets the IPL unconditionally (boot code and the idle loop only).
pub fn set(level: u8) -> u8 {
    swap(level)
}

/// The processor's level noted on the running stack as `rdps` reads it:
/// where a CPU first runs on its stack, before any [`swap`] (the note a new
/// stack starts with says 7, the level a console starts CPUs at).
pub fn note_from_rdps() {
    crate::cpus::note_ipl_here((pal::rdps() & 7) as u8);
}

/// swpipl, recording the level for other CPUs (the edge-loss injection and
/// watchdog reports read it; rti's restore is noted by asm/entry.S,
/// interrupt entry's raise is not seen before the handler's own).
#[inline]
pub fn swap(level: u8) -> u8 {
    let previous = pal::swpipl_noted(level);
    // Noted again after: an interrupt taken between the stub's note and
    // its `swpipl` returns through asm/entry.S, which notes the level it
    // returns to (the old one), and [`current`] reads the note.
    crate::cpus::note_ipl_here(level);
    previous
}
