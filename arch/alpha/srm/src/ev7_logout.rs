//! The EV7 machine-check logout frame (ES47, ES80, GS1280), walked safely
//! and summarized one line per sub-packet.
//!
//! # Layout
//!
//! On EV7 the PALcode hands the machine-check handler (entInt type 2,
//! vectors 0x620..0x680) a frame in `a2` that is a sequence of
//! "sub-packets", each starting with one quadword of header (Linux
//! `arch/alpha/include/asm/err_common.h`, `struct el_subpacket`; little-endian
//! u16s):
//!
//! ```text
//!   bits 15:0   length     bytes of the whole sub-packet, header included
//!   bits 31:16  class      5 header, 14 PAL, 0 termination, ...
//!   bits 47:32  type       meaning within the class
//!   bits 63:48  revision
//! ```
//!
//! and the next sub-packet follows at `+length`. A Marvel frame is (Linux
//! `arch/alpha/kernel/err_ev7.c`, `ev7_collect_logout_frame_subpackets`):
//! a class-5 type-19 "logout frame header" (`frame_length`, `frame_flags`,
//! `cpu_offset`, `system_offset`, u32s at +8..+24), then one class-14
//! type-1 "PAL logout frame" sub-packet (`struct ev7_pal_logout_subpacket`
//! in `arch/alpha/include/asm/err_ev7.h`: `mchk_code` and `subpacket_count`
//! u32s at +8, then quadwords `whami` +16, `rbox_whami` +24, `rbox_int` +32,
//! `exc_addr` +40, a timestamp +48, `halt_code` +56), then
//! `subpacket_count` class-14 sub-packets: EV7 processor (type 4), ZBOX
//! (5), RBOX (6), IO (7), environmental (10..16).
//!
//! The EV7 processor sub-packet holds 24 registers, one quadword each from
//! +8 (`struct ev7_pal_processor_subpacket`; names as Linux prints them in
//! `el_ev7_processor_subpacket_annotation`, err_ev7.c): I_STAT, DC_STAT,
//! C_ADDR, C_SYNDROME_1, C_SYNDROME_0, C_STAT, C_STS, MM_STAT, EXC_ADDR,
//! IER_CM, ISUM, PAL_BASE, I_CTL, PROCESS_CONTEXT, CBOX_CTL, CBOX_STP_CTL,
//! CBOX_ACC_CTL, CBOX_LCL_SET, CBOX_GLB_SET, BBOX_CTL, BBOX_ERR_STS,
//! BBOX_ERR_IDX, CBOX_DDP_ERR_STS, BBOX_DAT_RMP. Linux's Marvel handler
//! decides on C_STAT, C_STS and C_ADDR (`marvel_process_logout_frame` in
//! `arch/alpha/kernel/err_marvel.c`); the one-line summary shows those and
//! the other status registers.
//! Environmental sub-packets (`struct ev7_pal_environmental_subpacket`)
//! carry cabinet and drawer (u16s at +8) and module type, unit and
//! condition (bytes at +16, +17, +19), which Linux prints for 0x680 system
//! events (`marvel_print_680_frame`).
//!
//! # Walking it safely
//!
//! Linux follows `length` blindly. [`subpackets`] reads only whole
//! quadwords at 8-aligned offsets below `max_len`, and ends with one
//! [`End`] saying why:
//! - cleanly: the sub-packets the PAL logout packet announced are done, or
//!   the logout frame header's `frame_length` is reached (Linux's
//!   `el_process_header_subpacket` takes the next header at `+length +
//!   frame_length`), or a termination (class 0) sub-packet, or `max_len`
//!   exactly;
//! - or it stops on a length of 0, one not a multiple of 8 or shorter than
//!   the header, one that runs past the frame, a class this table does not
//!   know (Linux aborts there too: "Unexpected header CLASS"), or more than
//!   [`MAX_SUBPACKETS`] sub-packets.
//!
//! Inferences: that lengths are multiples of 8 (every structure is made of
//! quadwords, and Linux's dump walks them by quadword); that a zero
//! `frame_length` means "not given" rather than an empty frame; that a
//! frame stays within the CPU's HWRPB logout area (`logout_area_pa`,
//! `logout_area_len`, slot offsets 0xd8 and 0xe0) when `a2` points into it,
//! and within [`MAX_FRAME`] bytes otherwise (a full EV7 frame as laid out
//! above is under 1.5 KiB).

use core::fmt;

/// Sub-packet classes (`EL_CLASS__*`).
pub mod class {
    pub const TERMINATION: u16 = 0;
    pub const HEADER: u16 = 5;
    pub const GENERAL_NOTIFICATION: u16 = 9;
    pub const PCI_ERROR_FRAME: u16 = 11;
    pub const REGATTA_FAMILY: u16 = 12;
    pub const PAL: u16 = 14;
}

/// Types of class 5, headers (`EL_TYPE__HEADER__*`).
pub mod header_type {
    pub const SYSTEM_ERROR_FRAME: u16 = 1;
    pub const SYSTEM_EVENT_FRAME: u16 = 2;
    pub const HALT_FRAME: u16 = 3;
    pub const LOGOUT_FRAME: u16 = 19;
}

/// Types of class 14, PAL (`EL_TYPE__PAL__*`).
pub mod pal_type {
    pub const LOGOUT_FRAME: u16 = 1;
    pub const EV7_PROCESSOR: u16 = 4;
    pub const EV7_ZBOX: u16 = 5;
    pub const EV7_RBOX: u16 = 6;
    pub const EV7_IO: u16 = 7;
    pub const ENV_AMBIENT_TEMPERATURE: u16 = 10;
    pub const ENV_AIRMOVER_FAN: u16 = 11;
    pub const ENV_VOLTAGE: u16 = 12;
    pub const ENV_INTRUSION: u16 = 13;
    pub const ENV_POWER_SUPPLY: u16 = 14;
    pub const ENV_LAN: u16 = 15;
    pub const ENV_HOT_PLUG: u16 = 16;
}

/// Per-CPU slot offsets of the logout area (Linux `asm/hwrpb.h`,
/// `percpu_struct`).
pub mod slot_off {
    pub const LOGOUT_AREA_PA: u64 = 0xd8;
    pub const LOGOUT_AREA_LEN: u64 = 0xe0;
}

/// Bytes of a sub-packet header.
pub const HEADER_LEN: u64 = 8;
/// Most sub-packets walked (a Marvel frame has at most a dozen or so).
pub const MAX_SUBPACKETS: u32 = 64;
/// A bound for `max_len` when the logout area's length is unknown.
pub const MAX_FRAME: u64 = 0x2000;

/// A printable name for a class and type.
pub fn name(class: u16, kind: u16) -> &'static str {
    use self::class as c;
    match (class, kind) {
        (c::TERMINATION, _) => "termination",
        (c::HEADER, header_type::SYSTEM_ERROR_FRAME) => "system error frame header",
        (c::HEADER, header_type::SYSTEM_EVENT_FRAME) => "system event frame header",
        (c::HEADER, header_type::HALT_FRAME) => "error halt frame header",
        (c::HEADER, header_type::LOGOUT_FRAME) => "logout frame header",
        (c::HEADER, _) => "frame header of unknown type",
        (c::GENERAL_NOTIFICATION, _) => "general notification",
        (c::PCI_ERROR_FRAME, _) => "PCI error frame",
        (c::REGATTA_FAMILY, 1) => "Regatta processor error frame",
        (c::REGATTA_FAMILY, 2) => "Regatta system error frame",
        (c::REGATTA_FAMILY, 3) => "Regatta environmental frame",
        (c::REGATTA_FAMILY, _) => "Regatta frame",
        (c::PAL, pal_type::LOGOUT_FRAME) => "PAL logout frame",
        (c::PAL, pal_type::EV7_PROCESSOR) => "EV7 processor",
        (c::PAL, pal_type::EV7_ZBOX) => "EV7 ZBOX",
        (c::PAL, pal_type::EV7_RBOX) => "EV7 RBOX",
        (c::PAL, pal_type::EV7_IO) => "EV7 IO",
        (c::PAL, pal_type::ENV_AMBIENT_TEMPERATURE) => "ambient temperature event",
        (c::PAL, pal_type::ENV_AIRMOVER_FAN) => "air mover/fan event",
        (c::PAL, pal_type::ENV_VOLTAGE) => "voltage event",
        (c::PAL, pal_type::ENV_INTRUSION) => "intrusion event",
        (c::PAL, pal_type::ENV_POWER_SUPPLY) => "power supply event",
        (c::PAL, pal_type::ENV_LAN) => "LAN event",
        (c::PAL, pal_type::ENV_HOT_PLUG) => "hot plug event",
        (c::PAL, _) => "PAL sub-packet of unknown type",
        _ => "unknown class",
    }
}

/// Whether the walk goes on past a sub-packet of this class.
const fn known_class(class: u16) -> bool {
    matches!(
        class,
        class::HEADER
            | class::GENERAL_NOTIFICATION
            | class::PCI_ERROR_FRAME
            | class::REGATTA_FAMILY
            | class::PAL
    )
}

/// A sub-packet's header quadword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubpacketHeader {
    /// Bytes, header included.
    pub length: u16,
    pub class: u16,
    /// The type within the class.
    pub kind: u16,
    pub revision: u16,
}

impl SubpacketHeader {
    pub const fn parse(q: u64) -> Self {
        SubpacketHeader {
            length: q as u16,
            class: (q >> 16) as u16,
            kind: (q >> 32) as u16,
            revision: (q >> 48) as u16,
        }
    }
    pub fn name(&self) -> &'static str {
        name(self.class, self.kind)
    }
}

/// The EV7 processor sub-packet's registers, in frame order.
pub const EV7_PROCESSOR_REGS: [&str; 24] = [
    "I_STAT",
    "DC_STAT",
    "C_ADDR",
    "C_SYNDROME_1",
    "C_SYNDROME_0",
    "C_STAT",
    "C_STS",
    "MM_STAT",
    "EXC_ADDR",
    "IER_CM",
    "ISUM",
    "PAL_BASE",
    "I_CTL",
    "PROCESS_CONTEXT",
    "CBOX_CTL",
    "CBOX_STP_CTL",
    "CBOX_ACC_CTL",
    "CBOX_LCL_SET",
    "CBOX_GLB_SET",
    "BBOX_CTL",
    "BBOX_ERR_STS",
    "BBOX_ERR_IDX",
    "CBOX_DDP_ERR_STS",
    "BBOX_DAT_RMP",
];

/// The registers a one-line summary shows.
const EV7_SUMMARY: [&str; 8] = [
    "C_STAT", "C_STS", "C_ADDR", "EXC_ADDR", "I_STAT", "DC_STAT", "MM_STAT", "ISUM",
];

/// The registers of an EV7 processor sub-packet (as many as its length
/// holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ev7Processor {
    regs: [u64; 24],
    count: usize,
}

impl Ev7Processor {
    /// A register by its Linux name, if the sub-packet holds it.
    pub fn get(&self, name: &str) -> Option<u64> {
        EV7_PROCESSOR_REGS
            .iter()
            .take(self.count)
            .position(|n| *n == name)
            .map(|i| self.regs[i])
    }
    /// Every register present, by name.
    pub fn registers(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        EV7_PROCESSOR_REGS
            .iter()
            .copied()
            .zip(self.regs)
            .take(self.count)
    }
    /// Linux's one dismissible Marvel error: an error response (C_STAT
    /// 0x14) with a valid C_ADDR (C_STS bit 3 clear) in PCI configuration
    /// space (C_ADDR bit 42 set, bits 31:24 = 0xfe), which probing behind
    /// PCI-X bridges causes (`marvel_process_logout_frame`).
    pub fn is_config_probe_error(&self) -> bool {
        matches!((self.get("C_STAT"), self.get("C_STS"), self.get("C_ADDR")),
            (Some(0x14), Some(sts), Some(addr)) if sts & 0x8 == 0 && addr & 0x400_ff00_0000 == 0x400_fe00_0000)
    }
}

/// The PAL logout frame sub-packet (class 14 type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PalLogout {
    pub mchk_code: u32,
    pub subpacket_count: u32,
    pub whami: u64,
    pub rbox_whami: u64,
    pub rbox_int: u64,
    pub exc_addr: u64,
    /// Bytes: second, minute, hour, day, month, year (`el_timestamp`).
    pub timestamp: u64,
    pub halt_code: u64,
}

/// An environmental event (class 14, types 10..16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Environmental {
    pub cabinet: u16,
    pub drawer: u16,
    pub module_type: u8,
    pub unit_id: u8,
    pub condition: u8,
}

/// What was decoded past the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Nothing (a kind this module only names).
    None,
    /// Class 5 type 19.
    LogoutHeader {
        frame_length: u32,
        frame_flags: u32,
        cpu_offset: u32,
        system_offset: u32,
    },
    PalLogout(PalLogout),
    Ev7Processor(Ev7Processor),
    Environmental(Environmental),
    /// Shorter than its kind's fields.
    Truncated,
}

/// One sub-packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subpacket {
    /// Byte offset from the frame's start.
    pub offset: u64,
    pub header: SubpacketHeader,
    pub detail: Detail,
}

impl Subpacket {
    pub fn name(&self) -> &'static str {
        self.header.name()
    }
}

/// Why a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// All the sub-packets the PAL logout packet announced were walked.
    AllSubpackets { count: u32 },
    /// The logout frame header's length was reached.
    FrameEnd { offset: u64 },
    /// A termination sub-packet.
    Termination { offset: u64 },
    /// `max_len` reached exactly, with no frame length or count to go by.
    AreaEnd { offset: u64 },
    /// A zero length (a walk that would never advance).
    ZeroLength { offset: u64, class: u16, kind: u16 },
    /// A length below 8 or not a multiple of 8.
    BadLength { offset: u64, length: u16 },
    /// A sub-packet running past the frame (or `max_len`).
    PastEnd {
        offset: u64,
        length: u16,
        limit: u64,
    },
    /// Fewer than 8 bytes left before the limit.
    HeaderPastEnd { offset: u64, limit: u64 },
    /// A class this table does not know: not a sub-packet.
    UnknownClass { offset: u64, class: u16, kind: u16 },
    /// More than [`MAX_SUBPACKETS`].
    TooMany,
}

impl End {
    /// The frame ended where it said it would.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            End::AllSubpackets { .. }
                | End::FrameEnd { .. }
                | End::Termination { .. }
                | End::AreaEnd { .. }
        )
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            End::AllSubpackets { count } => write!(
                f,
                "end of frame: all {count} sub-packets the logout packet announced"
            ),
            End::FrameEnd { offset } => {
                write!(f, "end of frame: frame length reached at +{offset:#x}")
            }
            End::Termination { offset } => {
                write!(f, "end of frame: termination sub-packet at +{offset:#x}")
            }
            End::AreaEnd { offset } => write!(f, "end of frame: logout area ends at +{offset:#x}"),
            End::ZeroLength {
                offset,
                class,
                kind,
            } => write!(
                f,
                "frame walk stopped: zero length at +{offset:#x} (class {class} type {kind})"
            ),
            End::BadLength { offset, length } => write!(
                f,
                "frame walk stopped: length {length} at +{offset:#x} is not a multiple of 8 of at least 8"
            ),
            End::PastEnd {
                offset,
                length,
                limit,
            } => {
                write!(
                    f,
                    "frame walk stopped: {length} bytes at +{offset:#x} run past the frame end +{limit:#x}"
                )
            }
            End::HeaderPastEnd { offset, limit } => write!(
                f,
                "frame walk stopped: no room for a header at +{offset:#x} (frame ends at +{limit:#x})"
            ),
            End::UnknownClass {
                offset,
                class,
                kind,
            } => write!(
                f,
                "frame walk stopped: unknown class {class} type {kind} at +{offset:#x}, not a sub-packet"
            ),
            End::TooMany => write!(
                f,
                "frame walk stopped: more than {MAX_SUBPACKETS} sub-packets"
            ),
        }
    }
}

/// One step of a walk: a sub-packet, or (last) why the walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Packet(Subpacket),
    End(End),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Packet(p) => fmt::Display::fmt(p, f),
            Step::End(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for Subpacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        write!(
            f,
            "+{:#05x} {} (class {} type {} rev {}, {} bytes)",
            self.offset,
            h.name(),
            h.class,
            h.kind,
            h.revision,
            h.length
        )?;
        match &self.detail {
            Detail::None => Ok(()),
            Detail::Truncated => write!(f, ": too short to decode"),
            Detail::LogoutHeader {
                frame_length,
                frame_flags,
                cpu_offset,
                system_offset,
            } => {
                write!(
                    f,
                    ": frame length {frame_length:#x}, flags {frame_flags:#x}, cpu offset {cpu_offset:#x}, system offset {system_offset:#x}"
                )
            }
            Detail::PalLogout(l) => {
                write!(
                    f,
                    ": MCHK code {:#x}, {} sub-packets, whami {}, RBOX whami {:#x}, RBOX_INT {:#x}, EXC_ADDR {:#018x}, halt code {:#x}",
                    l.mchk_code,
                    l.subpacket_count,
                    l.whami,
                    l.rbox_whami,
                    l.rbox_int,
                    l.exc_addr,
                    l.halt_code
                )?;
                if l.timestamp != 0 {
                    let b = l.timestamp.to_le_bytes();
                    write!(
                        f,
                        ", at {}/{}/{:02} {}:{:02}:{:02}",
                        b[4], b[3], b[5], b[2], b[1], b[0]
                    )?;
                }
                Ok(())
            }
            Detail::Ev7Processor(p) => {
                write!(f, ":")?;
                for name in EV7_SUMMARY {
                    if let Some(v) = p.get(name) {
                        write!(f, " {name} {v:#x}")?;
                    }
                }
                Ok(())
            }
            Detail::Environmental(e) => write!(
                f,
                ": cabinet {}, drawer {}, module type {:#x}, unit {:#x}, condition {:#x}",
                e.cabinet, e.drawer, e.module_type, e.unit_id, e.condition
            ),
        }
    }
}

/// Walks the sub-packets of a frame of at most `max_len` bytes. `read`
/// takes a byte offset from the frame's start (8-aligned, the quadword
/// entirely below `max_len`) and returns the quadword there. Yields each
/// sub-packet, then exactly one [`Step::End`], then nothing.
pub fn subpackets<R: Fn(u64) -> u64>(read: R, max_len: u64) -> Walk<R> {
    Walk {
        read,
        off: 0,
        limit: max_len,
        frame_bound: false,
        remaining: None,
        announced: 0,
        seen: 0,
        done: false,
    }
}

/// A walk over a frame; see [`subpackets`].
pub struct Walk<R> {
    read: R,
    off: u64,
    limit: u64,
    /// `limit` comes from a logout frame header.
    frame_bound: bool,
    /// Sub-packets still announced by the PAL logout packet.
    remaining: Option<u32>,
    announced: u32,
    seen: u32,
    done: bool,
}

impl<R: Fn(u64) -> u64> Walk<R> {
    fn q(&self, at: u64) -> u64 {
        (self.read)(at)
    }

    fn decode(&self, at: u64, h: SubpacketHeader) -> Detail {
        let quads = u64::from(h.length) / 8;
        // Quadword k of the sub-packet (0 is the header), if it holds one.
        let body = |k: u64| {
            if k < quads {
                Some(self.q(at + 8 * k))
            } else {
                None
            }
        };
        match (h.class, h.kind) {
            (class::HEADER, header_type::LOGOUT_FRAME) => match (body(1), body(2)) {
                (Some(a), Some(b)) => Detail::LogoutHeader {
                    frame_length: a as u32,
                    frame_flags: (a >> 32) as u32,
                    cpu_offset: b as u32,
                    system_offset: (b >> 32) as u32,
                },
                _ => Detail::Truncated,
            },
            (class::PAL, pal_type::LOGOUT_FRAME) => {
                if quads < 8 {
                    return Detail::Truncated;
                }
                let first = self.q(at + 8);
                Detail::PalLogout(PalLogout {
                    mchk_code: first as u32,
                    subpacket_count: (first >> 32) as u32,
                    whami: self.q(at + 16),
                    rbox_whami: self.q(at + 24),
                    rbox_int: self.q(at + 32),
                    exc_addr: self.q(at + 40),
                    timestamp: self.q(at + 48),
                    halt_code: self.q(at + 56),
                })
            }
            (class::PAL, pal_type::EV7_PROCESSOR) => {
                let count = ((quads - 1) as usize).min(24);
                if count == 0 {
                    return Detail::Truncated;
                }
                let mut regs = [0u64; 24];
                for (i, r) in regs.iter_mut().enumerate().take(count) {
                    *r = self.q(at + 8 + 8 * i as u64);
                }
                Detail::Ev7Processor(Ev7Processor { regs, count })
            }
            (class::PAL, pal_type::ENV_AMBIENT_TEMPERATURE..=pal_type::ENV_HOT_PLUG) => {
                match (body(1), body(2)) {
                    (Some(a), Some(b)) => Detail::Environmental(Environmental {
                        cabinet: a as u16,
                        drawer: (a >> 16) as u16,
                        module_type: b as u8,
                        unit_id: (b >> 8) as u8,
                        condition: (b >> 24) as u8,
                    }),
                    _ => Detail::Truncated,
                }
            }
            _ => Detail::None,
        }
    }

    fn step(&mut self) -> Result<Subpacket, End> {
        let off = self.off;
        if self.remaining == Some(0) {
            return Err(End::AllSubpackets {
                count: self.announced,
            });
        }
        if off == self.limit {
            return Err(if self.frame_bound {
                End::FrameEnd { offset: off }
            } else {
                End::AreaEnd { offset: off }
            });
        }
        if self.limit - off < HEADER_LEN {
            return Err(End::HeaderPastEnd {
                offset: off,
                limit: self.limit,
            });
        }
        if self.seen == MAX_SUBPACKETS {
            return Err(End::TooMany);
        }
        let h = SubpacketHeader::parse(self.q(off));
        let len = u64::from(h.length);
        if len == 0 {
            return Err(End::ZeroLength {
                offset: off,
                class: h.class,
                kind: h.kind,
            });
        }
        if len < HEADER_LEN || len % 8 != 0 {
            return Err(End::BadLength {
                offset: off,
                length: h.length,
            });
        }
        if h.class == class::TERMINATION {
            return Err(End::Termination { offset: off });
        }
        if !known_class(h.class) {
            return Err(End::UnknownClass {
                offset: off,
                class: h.class,
                kind: h.kind,
            });
        }
        if len > self.limit - off {
            return Err(End::PastEnd {
                offset: off,
                length: h.length,
                limit: self.limit,
            });
        }
        let detail = self.decode(off, h);
        match detail {
            Detail::LogoutHeader { frame_length, .. } if frame_length != 0 => {
                let end = (off + len).saturating_add(u64::from(frame_length));
                if end <= self.limit {
                    self.limit = end;
                    self.frame_bound = true;
                }
            }
            Detail::PalLogout(l) => {
                self.remaining = Some(l.subpacket_count);
                self.announced = l.subpacket_count;
            }
            _ => self.remaining = self.remaining.map(|n| n - 1),
        }
        self.off = off + len;
        self.seen += 1;
        Ok(Subpacket {
            offset: off,
            header: h,
            detail,
        })
    }
}

impl<R: Fn(u64) -> u64> Iterator for Walk<R> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(p) => Some(Step::Packet(p)),
            Err(e) => {
                self.done = true;
                Some(Step::End(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn hdr(length: u64, class: u64, kind: u64, rev: u64) -> u64 {
        length | class << 16 | kind << 32 | rev << 48
    }

    /// Frame builder: sub-packets as quadword lists.
    fn frame(parts: &[Vec<u64>]) -> Vec<u64> {
        parts.concat()
    }

    fn logout_header(frame_length: u64) -> Vec<u64> {
        std::vec![
            hdr(24, 5, 19, 1),
            frame_length | 0x3 << 32,
            0x18 | 0x60 << 32
        ]
    }

    fn pal_logout(count: u64, whami: u64) -> Vec<u64> {
        // mchk code, count; whami, rbox whami, rbox int, exc addr, timestamp,
        // halt code, reserved.
        let ts = u64::from_le_bytes([5, 4, 3, 28, 2, 26, 0, 0]);
        std::vec![
            hdr(72, 14, 1, 1),
            0x670 | count << 32,
            whami,
            0x1f0 + whami,
            0x2000_0400,
            0xfffffc00_0031_2340,
            ts,
            0,
            0
        ]
    }

    /// The EV7 processor sub-packet with register i = 0x1000 + i, except
    /// C_STAT (index 5) = 0x14, C_STS (6) = 0, C_ADDR (2) in config space.
    fn ev7_processor() -> Vec<u64> {
        let mut v = std::vec![hdr(8 + 26 * 8, 14, 4, 1)];
        v.extend((0..26).map(|i| 0x1000 + i));
        v[1 + 5] = 0x14;
        v[1 + 6] = 0;
        v[1 + 2] = 0x7fe_fe00_0010 | 1 << 42;
        v
    }

    fn rbox() -> Vec<u64> {
        let mut v = std::vec![hdr(8 + 18 * 8, 14, 6, 1)];
        v.extend((0..18).map(|i| 0x2000 + i));
        v
    }

    /// Walks `mem` (quadwords) with max_len, checking that every read is an
    /// aligned, in-bounds quadword; returns the steps and the highest byte
    /// read.
    fn walk(mem: &[u64], max_len: u64) -> (Vec<Step>, u64) {
        let top = Cell::new(0);
        let steps: Vec<Step> = subpackets(
            |off| {
                assert!(off % 8 == 0, "unaligned read at {off:#x}");
                assert!(
                    off + 8 <= max_len,
                    "read at {off:#x} past max_len {max_len:#x}"
                );
                top.set(top.get().max(off + 8));
                mem.get((off / 8) as usize)
                    .copied()
                    .unwrap_or(0xdead_beef_dead_beef)
            },
            max_len,
        )
        .collect();
        let ends = steps.iter().filter(|s| matches!(s, Step::End(_))).count();
        assert_eq!(ends, 1, "one End per walk: {steps:?}");
        assert!(matches!(steps.last(), Some(Step::End(_))), "End comes last");
        for s in &steps {
            let line = s.to_string();
            assert!(!line.contains('\n') && !line.is_empty(), "{line:?}");
        }
        (steps, top.get())
    }

    fn packets(steps: &[Step]) -> Vec<Subpacket> {
        steps
            .iter()
            .filter_map(|s| {
                if let Step::Packet(p) = s {
                    Some(*p)
                } else {
                    None
                }
            })
            .collect()
    }

    fn end(steps: &[Step]) -> End {
        match steps.last() {
            Some(Step::End(e)) => *e,
            other => panic!("no end: {other:?}"),
        }
    }

    #[test]
    fn header_fields() {
        let h = SubpacketHeader::parse(0x0001_0004_000e_00d8);
        assert_eq!(
            h,
            SubpacketHeader {
                length: 0xd8,
                class: 14,
                kind: 4,
                revision: 1
            }
        );
        assert_eq!(h.name(), "EV7 processor");
        assert_eq!(name(5, 19), "logout frame header");
        assert_eq!(name(14, 7), "EV7 IO");
        assert_eq!(name(14, 99), "PAL sub-packet of unknown type");
        assert_eq!(name(77, 1), "unknown class");
    }

    #[test]
    fn a_marvel_frame_decodes_in_order() {
        let body = frame(&[pal_logout(2, 4), ev7_processor(), rbox()]);
        let mem = frame(&[logout_header(body.len() as u64 * 8), body]);
        let (steps, _) = walk(&mem, 0x1000);
        let p = packets(&steps);
        let names: Vec<&str> = p.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "logout frame header",
                "PAL logout frame",
                "EV7 processor",
                "EV7 RBOX"
            ]
        );
        let offsets: Vec<u64> = p.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [0, 24, 24 + 72, 24 + 72 + 216]);
        assert_eq!(end(&steps), End::AllSubpackets { count: 2 });
        assert!(end(&steps).is_clean());

        let Detail::PalLogout(l) = p[1].detail else {
            panic!("{:?}", p[1].detail)
        };
        assert_eq!(
            (l.mchk_code, l.subpacket_count, l.whami, l.rbox_int),
            (0x670, 2, 4, 0x2000_0400)
        );
        let Detail::Ev7Processor(cpu) = p[2].detail else {
            panic!("{:?}", p[2].detail)
        };
        assert_eq!(cpu.get("I_STAT"), Some(0x1000));
        assert_eq!(cpu.get("C_STAT"), Some(0x14));
        assert_eq!(cpu.get("EXC_ADDR"), Some(0x1008));
        assert_eq!(cpu.get("BBOX_DAT_RMP"), Some(0x1000 + 23));
        assert_eq!(cpu.get("NO_SUCH"), None);
        assert_eq!(cpu.registers().count(), 24);
        assert!(cpu.is_config_probe_error());

        let line = p[2].to_string();
        assert!(line.starts_with("+0x060 EV7 processor (class 14 type 4 rev 1, 216 bytes): C_STAT 0x14 C_STS 0x0 C_ADDR 0x"), "{line}");
        assert!(line.contains("EXC_ADDR 0x1008"), "{line}");
        let line = p[1].to_string();
        assert!(
            line.contains("whami 4")
                && line.contains("EXC_ADDR 0xfffffc0000312340")
                && line.contains("at 2/28/26 3:04:05"),
            "{line}"
        );
        assert!(p[0].to_string().contains("frame length 0x"), "{}", p[0]);
        assert_eq!(
            end(&steps).to_string(),
            "end of frame: all 2 sub-packets the logout packet announced"
        );
    }

    #[test]
    fn the_frame_length_bounds_the_walk() {
        // The header covers the PAL logout packet and the processor only;
        // the count (5) would go on into stale data.
        let body = frame(&[pal_logout(5, 0), ev7_processor()]);
        let mem = frame(&[logout_header(body.len() as u64 * 8), body, rbox()]);
        let (steps, top) = walk(&mem, 0x1000);
        assert_eq!(packets(&steps).len(), 3);
        assert_eq!(
            end(&steps),
            End::FrameEnd {
                offset: 24 + 72 + 216
            }
        );
        assert!(top <= 24 + 72 + 216, "read up to {top:#x}, past the frame");
    }

    #[test]
    fn termination_and_area_end_are_clean() {
        let mem = frame(&[ev7_processor(), std::vec![hdr(8, 0, 0, 0)]]);
        let (steps, _) = walk(&mem, 0x1000);
        assert_eq!(end(&steps), End::Termination { offset: 216 });
        let mem = ev7_processor();
        let (steps, _) = walk(&mem, 216);
        assert_eq!(end(&steps), End::AreaEnd { offset: 216 });
        assert!(end(&steps).is_clean());
    }

    #[test]
    fn environmental_events() {
        let env = std::vec![
            hdr(24, 14, 11, 1),
            3 | 2 << 16,
            0x21 | 0x05 << 8 | 0x07 << 24
        ];
        let mem = frame(&[pal_logout(1, 6), env]);
        let (steps, _) = walk(&mem, 0x1000);
        let p = packets(&steps);
        assert_eq!(
            p[1].detail,
            Detail::Environmental(Environmental {
                cabinet: 3,
                drawer: 2,
                module_type: 0x21,
                unit_id: 5,
                condition: 7
            })
        );
        assert_eq!(
            p[1].to_string(),
            "+0x048 air mover/fan event (class 14 type 11 rev 1, 24 bytes): cabinet 3, drawer 2, module type 0x21, unit 0x5, condition 0x7"
        );
        assert_eq!(end(&steps), End::AllSubpackets { count: 1 });
    }

    #[test]
    fn zero_length_stops() {
        let mem = frame(&[
            logout_header(0),
            pal_logout(3, 0),
            std::vec![hdr(0, 14, 4, 1), 0, 0],
        ]);
        let (steps, _) = walk(&mem, 0x1000);
        assert_eq!(packets(&steps).len(), 2);
        let e = end(&steps);
        assert_eq!(
            e,
            End::ZeroLength {
                offset: 96,
                class: 14,
                kind: 4
            }
        );
        assert!(!e.is_clean());
        assert_eq!(
            e.to_string(),
            "frame walk stopped: zero length at +0x60 (class 14 type 4)"
        );
        // An all-zero frame is a zero length too, not a termination.
        assert_eq!(
            end(&walk(&[0; 8], 64).0),
            End::ZeroLength {
                offset: 0,
                class: 0,
                kind: 0
            }
        );
    }

    #[test]
    fn a_length_past_max_len_is_not_read() {
        let mut big = ev7_processor();
        big[0] = hdr(0x400, 14, 4, 1);
        big.resize(0x400 / 8, 0);
        let (steps, top) = walk(&big, 0x100);
        assert_eq!(
            end(&steps),
            End::PastEnd {
                offset: 0,
                length: 0x400,
                limit: 0x100
            }
        );
        assert_eq!(top, 8, "only the header was read");
        assert!(packets(&steps).is_empty());
        // Past the frame length given by the header, within max_len.
        let mem = frame(&[logout_header(72), pal_logout(2, 0), ev7_processor()]);
        let (steps, _) = walk(&mem, 0x1000);
        assert_eq!(end(&steps), End::FrameEnd { offset: 96 });
        let mem = frame(&[logout_header(80), pal_logout(2, 0), ev7_processor()]);
        let (steps, top) = walk(&mem, 0x1000);
        assert_eq!(
            end(&steps),
            End::PastEnd {
                offset: 96,
                length: 216,
                limit: 104
            }
        );
        assert_eq!(top, 104);
    }

    #[test]
    fn a_short_tail_and_bad_lengths_stop() {
        let mem = [hdr(8, 14, 5, 1), hdr(8, 14, 5, 1)];
        let (steps, top) = walk(&mem, 12);
        assert_eq!(
            end(&steps),
            End::HeaderPastEnd {
                offset: 8,
                limit: 12
            }
        );
        assert_eq!(top, 8);
        assert_eq!(
            end(&walk(&[hdr(12, 14, 4, 1)], 64).0),
            End::BadLength {
                offset: 0,
                length: 12
            }
        );
        assert_eq!(
            end(&walk(&[hdr(4, 14, 4, 1)], 64).0),
            End::BadLength {
                offset: 0,
                length: 4
            }
        );
    }

    #[test]
    fn garbage_stops_with_a_reason() {
        // The console's fill pattern (Linux `marvel_find_io7_with_error`).
        let (steps, _) = walk(&[0x5555_5555_5555_5555; 16], 128);
        assert_eq!(
            end(&steps),
            End::BadLength {
                offset: 0,
                length: 0x5555
            }
        );
        // An aligned length with a class no frame has.
        let (steps, _) = walk(&[0x1234_5678_9abc_0040; 16], 128);
        assert_eq!(
            end(&steps),
            End::UnknownClass {
                offset: 0,
                class: 0x9abc,
                kind: 0x5678
            }
        );
        assert!(
            end(&steps).to_string().contains("unknown class 39612"),
            "{}",
            end(&steps)
        );
        // All ones: length 0xffff.
        assert_eq!(
            end(&walk(&[!0; 16], 128).0),
            End::BadLength {
                offset: 0,
                length: 0xffff
            }
        );
    }

    #[test]
    fn random_frames_always_end_in_bounds() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut reasons = std::collections::HashSet::new();
        for round in 0..3000 {
            let mem: Vec<u64> = (0..64)
                .map(|_| {
                    let r = rand();
                    // Every other round, plausible headers: class 14, small
                    // aligned lengths (sometimes 0), to reach the length rules.
                    if round % 2 == 0 {
                        hdr((r & 0x78) % 0x50, 14, (r >> 8) & 0x1f, 1)
                    } else {
                        r
                    }
                })
                .collect();
            let max_len = rand() % (64 * 8 + 1);
            let (steps, top) = walk(&mem, max_len);
            assert!(top <= max_len);
            assert!(steps.len() <= MAX_SUBPACKETS as usize + 1);
            reasons.insert(core::mem::discriminant(&end(&steps)));
        }
        assert!(
            reasons.len() >= 4,
            "the sweep reaches several ends: {reasons:?}"
        );
    }

    #[test]
    fn too_many_subpackets_stop_and_the_walk_stays_ended() {
        let mem: Vec<u64> = (0..200).map(|_| hdr(8, 14, 5, 1)).collect();
        let mut w = subpackets(|off| mem[(off / 8) as usize], 200 * 8);
        let steps: Vec<Step> = w.by_ref().collect();
        assert_eq!(packets(&steps).len(), MAX_SUBPACKETS as usize);
        assert_eq!(end(&steps), End::TooMany);
        assert_eq!(w.next(), None);
        assert_eq!(w.next(), None);
    }

    #[test]
    fn truncated_kinds_are_named_not_decoded() {
        // A PAL logout packet of 16 bytes: named, no count taken from it.
        let mem = frame(&[
            std::vec![hdr(16, 14, 1, 1), 0x670 | 1 << 32],
            ev7_processor(),
        ]);
        let (steps, _) = walk(&mem, 16 + 216);
        let p = packets(&steps);
        assert_eq!(p[0].detail, Detail::Truncated);
        assert!(
            p[0].to_string().ends_with("too short to decode"),
            "{}",
            p[0]
        );
        assert_eq!(p.len(), 2);
        assert_eq!(end(&steps), End::AreaEnd { offset: 232 });
        // A processor packet of 4 registers holds just those.
        let mut short = ev7_processor();
        short[0] = hdr(40, 14, 4, 1);
        short.truncate(5);
        let (steps, _) = walk(&short, 40);
        let Detail::Ev7Processor(cpu) = packets(&steps)[0].detail else {
            panic!()
        };
        assert_eq!(
            cpu.registers().map(|(n, _)| n).collect::<Vec<_>>(),
            ["I_STAT", "DC_STAT", "C_ADDR", "C_SYNDROME_1"]
        );
        assert_eq!(cpu.get("C_STAT"), None);
        assert!(!cpu.is_config_probe_error());
        let line: String = packets(&steps)[0].to_string();
        assert!(
            line.contains(" C_ADDR 0x") && !line.contains(" C_STAT"),
            "{line}"
        );
    }
}
