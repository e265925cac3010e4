//! The Console Callback Routines: the CRB's layout, function codes and
//! result words, and the PUTS retry rule (docs/hardware.md §3).
//!
//! The call itself is assembly (arch/alpha/asm/crb.S, OpenVMS convention);
//! this module decides what to pass and what a result means, so the rules
//! are tested on the host against consoles that write partially or fail.

use core::fmt;

/// CRB offsets (from the CRB's start, `hwrpb + crb_offset`).
pub mod off {
    /// VA of the dispatch routine's procedure descriptor.
    pub const DISPATCH_VA: u64 = 0x00;
    pub const DISPATCH_PA: u64 = 0x08;
    pub const FIXUP_VA: u64 = 0x10;
    pub const FIXUP_PA: u64 = 0x18;
    pub const MAP_ENTRIES: u64 = 0x20;
    pub const MAP_PAGES: u64 = 0x28;
}

/// Function codes.
pub mod code {
    pub const GETC: u64 = 0x01;
    pub const PUTS: u64 = 0x02;
    pub const RESET_TERM: u64 = 0x03;
    pub const GET_ENV: u64 = 0x22;
}

/// Environment variable ids for GET_ENV.
pub mod env {
    pub const BOOTED_DEV: u64 = 0x04;
    pub const BOOTED_FILE: u64 = 0x06;
    /// The `-flags` string of the `boot` command: our boot arguments.
    pub const BOOTED_OSFLAGS: u64 = 0x08;
    pub const TTY_DEV: u64 = 0x0f;
}

/// A callback's result word: count (or character) in bits 31:0, unit in
/// 39:32, status in 63:61 (bit 63: error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u64);

impl Status {
    pub const fn count(self) -> u32 {
        self.0 as u32
    }
    pub const fn status(self) -> u8 {
        (self.0 >> 61) as u8
    }
    /// Bit 63. QEMU's PALcode answers unsupported calls with 0xc000...,
    /// real consoles set it on failure.
    pub const fn is_error(self) -> bool {
        self.0 >> 63 != 0
    }
    /// Status 100, "terminal not ready, nothing written": the console's
    /// direct-UART PUTS answers so whenever the transmitter is still busy
    /// with the previous character. The caller asks again.
    pub const fn is_not_ready(self) -> bool {
        self.status() == STATUS_NOT_READY
    }
}

/// PUTS status (bits 63:61) 100: terminal not ready, no bytes written.
pub const STATUS_NOT_READY: u8 = 0b100;
/// PUTS status 110: terminal error (also QEMU's answer to an unsupported
/// call).
pub const STATUS_TERMINAL_ERROR: u8 = 0b110;

/// Why console output stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutsError {
    /// The console returned an error status after `written` bytes.
    Failed { written: usize, status: Status },
    /// It accepted nothing (or was not ready) [`MAX_STALLS`] times in a row.
    Stalled { written: usize },
}

impl fmt::Display for PutsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutsError::Failed { written, status } => write!(
                f,
                "console PUTS failed after {written} bytes (status {:#x})",
                status.0
            ),
            PutsError::Stalled { written } => write!(
                f,
                "console PUTS accepted nothing {MAX_STALLS} times after {written} bytes"
            ),
        }
    }
}

/// Zero-length answers tolerated in a row before giving up: a console that
/// is busy returns 0 and is asked again, one that is wedged must not hang
/// the kernel.
pub const MAX_STALLS: u32 = 100_000;

/// Bytes handed to one PUTS call: the text is copied into an 8-byte
/// aligned buffer of this size first (aboot: some SRMs fail otherwise).
pub const CHUNK: usize = 128;

/// An 8-byte aligned buffer for callback arguments.
#[repr(C, align(8))]
pub struct Aligned(pub [u8; CHUNK]);

/// Writes all of `bytes` through `puts`, which makes one PUTS call with an
/// aligned buffer and returns the console's result. Partial writes are
/// continued from where the console stopped, and "terminal not ready" is
/// asked again like an empty answer; any other error status, or too many
/// empty answers in a row, end the attempt.
pub fn puts_all(
    bytes: &[u8],
    mut puts: impl FnMut(&Aligned, usize) -> Status,
) -> Result<(), PutsError> {
    let mut written = 0;
    let mut stalls = 0;
    let mut buf = Aligned([0; CHUNK]);
    while written < bytes.len() {
        let n = (bytes.len() - written).min(CHUNK);
        buf.0[..n].copy_from_slice(&bytes[written..written + n]);
        let s = puts(&buf, n);
        if s.is_error() && !s.is_not_ready() {
            return Err(PutsError::Failed { written, status: s });
        }
        // A console never reports more than it was given; clamp anyway.
        // "Not ready" wrote nothing, whatever its count says.
        let took = if s.is_not_ready() {
            0
        } else {
            (s.count() as usize).min(n)
        };
        if took == 0 {
            stalls += 1;
            if stalls >= MAX_STALLS {
                return Err(PutsError::Stalled { written });
            }
            continue;
        }
        stalls = 0;
        written += took;
    }
    Ok(())
}

/// The text GET_ENV returned into `buf`: `count` bytes, cut at a NUL and
/// trimmed; None on an error status or if it is not UTF-8.
pub fn env_text(buf: &[u8], s: Status) -> Option<&str> {
    if s.is_error() {
        return None;
    }
    let n = (s.count() as usize).min(buf.len());
    let text = &buf[..n];
    let text = &text[..text.iter().position(|b| *b == 0).unwrap_or(n)];
    core::str::from_utf8(text).ok().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const TNR: u64 = 0x8000_0000_0000_0000;

    #[test]
    fn result_words() {
        let s = Status(0xc000_0000_0000_0000);
        assert!(s.is_error());
        assert_eq!(s.status(), 6);
        let ok = Status(0x0000_0003_0000_0011);
        assert!(!ok.is_error());
        assert_eq!(ok.count(), 0x11);
    }

    #[test]
    fn partial_writes_are_continued_in_order() {
        let text: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut out = Vec::new();
        let mut calls = 0;
        puts_all(&text, |buf, n| {
            calls += 1;
            assert_eq!(buf.0.as_ptr() as usize % 8, 0, "aligned buffer");
            // Takes at most 7 bytes, and nothing every third call.
            let take = if calls % 3 == 0 { 0 } else { n.min(7) };
            out.extend_from_slice(&buf.0[..take]);
            Status(take as u64)
        })
        .unwrap();
        assert_eq!(out, text);
        assert!(calls > 300 / 7);
    }

    /// A console whose PUTS writes one character straight to the UART
    /// answers "terminal not ready" (status 100, count 0) while the UART is
    /// busy: that is a retry, not a failure.
    #[test]
    fn terminal_not_ready_is_retried() {
        let text = b"alphasmp: PASS (28 passed, 0 failed)\r\n";
        let mut out = Vec::new();
        let mut calls = 0;
        puts_all(text, |buf, n| {
            calls += 1;
            if calls % 2 == 1 {
                return Status(TNR);
            }
            // One character per call, as the direct-UART PUTS does.
            let _ = n;
            out.push(buf.0[0]);
            Status(1)
        })
        .unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn a_console_that_is_never_ready_does_not_hang() {
        let r = puts_all(b"x", |_, _| Status(TNR));
        assert_eq!(r, Err(PutsError::Stalled { written: 0 }));
    }

    #[test]
    fn terminal_error_stops_and_says_how_far() {
        let mut calls = 0;
        let te = 0xc000_0000_0000_0000;
        let r = puts_all(b"hello world", |_, n| {
            calls += 1;
            if calls == 1 {
                Status(5.min(n as u64))
            } else {
                Status(te)
            }
        });
        assert_eq!(
            r,
            Err(PutsError::Failed {
                written: 5,
                status: Status(te)
            })
        );
    }

    #[test]
    fn a_console_that_takes_nothing_does_not_hang() {
        let r = puts_all(b"x", |_, _| Status(0));
        assert_eq!(r, Err(PutsError::Stalled { written: 0 }));
        assert!(!std::format!("{}", r.unwrap_err()).contains('\n'));
    }

    #[test]
    fn over_reporting_console_is_clamped() {
        let mut seen = 0;
        puts_all(b"abc", |_, n| {
            seen += n;
            Status(1000)
        })
        .unwrap();
        assert_eq!(seen, 3);
    }

    #[test]
    fn environment_text() {
        let mut buf = [0u8; 16];
        buf[..12].copy_from_slice(b"tests=smp \0x");
        assert_eq!(env_text(&buf, Status(12)), Some("tests=smp"));
        assert_eq!(
            env_text(&buf, Status(0xc000_0000_0000_0000)),
            None,
            "unsupported (QEMU)"
        );
        assert_eq!(env_text(&buf, Status(0)), Some(""));
        assert_eq!(
            env_text(&buf, Status(99)),
            Some("tests=smp"),
            "count past the buffer is clamped"
        );
    }
}
