//! Which machine the HWRPB describes, and the `machine=` override.
//!
//! | machine | HWRPB | what differs (arch/alpha/src/machine/) |
//! |---|---|---|
//! | `clipper` | system type 34, serial "QEMU" | QEMU's Typhoon: 16550 UART, RTC tick, pvpanic, `cserve` alarm |
//! | `tsunami` | system type 34 | DS10/DS20/ES40: same chipset, no pvpanic, halt to SRM |
//! | `marvel` | system type 39 | ES47/ES80/GS1280 (EV7): no legacy ports, CRB console, PAL tick, EV7 vectors |
//!
//! (docs/hardware.md §2.2 and §7, step 13.)

use core::fmt;

use crate::hwrpb::{Hwrpb, Quads};

pub const ST_DEC_TSUNAMI: u64 = 34;
pub const ST_DEC_MARVEL: u64 = 39;

/// CPU types (low half of a slot's type quadword).
pub mod cpu_type {
    pub const EV6: u32 = 8;
    pub const EV67: u32 = 11;
    pub const EV68CB: u32 = 12;
    pub const EV68AL: u32 = 13;
    pub const EV68CX: u32 = 14;
    pub const EV7: u32 = 15;
    pub const EV79: u32 = 16;
    pub const EV69: u32 = 17;

    /// A printable name.
    pub fn name(t: u32) -> &'static str {
        match t {
            EV6 => "EV6",
            EV67 => "EV67",
            EV68CB => "EV68CB",
            EV68AL => "EV68AL",
            EV68CX => "EV68CX",
            EV7 => "EV7",
            EV79 => "EV79",
            EV69 => "EV69",
            _ => "unknown",
        }
    }
}

/// The machines this kernel knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// QEMU's `-M clipper` (a Typhoon with QEMU's extras).
    Clipper,
    /// A real Tsunami/Typhoon AlphaServer (DS10, DS20, ES40).
    Tsunami,
    /// EV7/Marvel (ES47, ES80, GS1280).
    Marvel,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Clipper => "clipper",
            Machine::Tsunami => "tsunami",
            Machine::Marvel => "marvel",
        }
    }

    /// Parses a `machine=` value (`auto` is None).
    pub fn parse(s: &str) -> Result<Option<Machine>, ()> {
        match s {
            "auto" => Ok(None),
            "clipper" => Ok(Some(Machine::Clipper)),
            "tsunami" => Ok(Some(Machine::Tsunami)),
            "marvel" => Ok(Some(Machine::Marvel)),
            _ => Err(()),
        }
    }
}

/// What the HWRPB says about the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub sys_type: u64,
    pub member: u64,
    /// The boot CPU's type.
    pub cpu_type: u32,
    pub qemu: bool,
}

impl Identity {
    pub fn read<M: Quads>(h: &Hwrpb<M>) -> Identity {
        let boot = h.boot_cpu();
        let cpu_type = if boot < h.nr_processors() { h.slot(boot).cpu_type() } else { 0 };
        Identity { sys_type: h.sys_type(), member: h.sys_member(), cpu_type, qemu: h.is_qemu() }
    }

    /// The machine this identity describes, if this kernel supports it.
    pub fn detect(&self) -> Result<Machine, Unsupported> {
        match self.sys_type {
            ST_DEC_TSUNAMI if self.qemu => Ok(Machine::Clipper),
            ST_DEC_TSUNAMI => Ok(Machine::Tsunami),
            ST_DEC_MARVEL => Ok(Machine::Marvel),
            other => Err(Unsupported { sys_type: other }),
        }
    }
}

/// A system type this kernel has no machine layer for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub sys_type: u64,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "system type {} is not supported (known: 34 Tsunami/Typhoon, 39 Marvel); boot with machine=tsunami or machine=marvel to force one",
            self.sys_type
        )
    }
}

/// How the machine was chosen, for the banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Detected(Machine),
    /// `machine=` named it; `detected` is what the HWRPB said, if anything.
    Forced { machine: Machine, detected: Option<Machine> },
}

impl Choice {
    pub fn machine(self) -> Machine {
        match self {
            Choice::Detected(m) | Choice::Forced { machine: m, .. } => m,
        }
    }
}

/// Picks the machine: the override if given, else what the HWRPB says.
pub fn choose(id: &Identity, forced: Option<Machine>) -> Result<Choice, Unsupported> {
    match forced {
        Some(machine) => Ok(Choice::Forced { machine, detected: id.detect().ok() }),
        None => id.detect().map(Choice::Detected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hwrpb::fake::Spec;
    use crate::hwrpb::flags::STARTABLE;

    fn id(sys_type: i64, serial: &[u8], cpu: u32) -> Identity {
        let mem = Spec { sys_type, member: 0, serial, boot_cpu: 0, slots: &[(STARTABLE, cpu)], clusters: &[(0, 1, 1)], intr_freq: 0 }.build();
        Identity::read(&Hwrpb::new(&mem).unwrap())
    }

    #[test]
    fn detects_each_machine() {
        assert_eq!(id(34, b"QEMU", cpu_type::EV67).detect(), Ok(Machine::Clipper));
        assert_eq!(id(34, b"NI91234567", cpu_type::EV6).detect(), Ok(Machine::Tsunami));
        assert_eq!(id(-34, b"NI91234567", cpu_type::EV6).detect(), Ok(Machine::Tsunami), "negated system type");
        let m = id(39, b"AY00112233", cpu_type::EV7);
        assert_eq!(m.detect(), Ok(Machine::Marvel));
        assert_eq!(cpu_type::name(m.cpu_type), "EV7");
    }

    #[test]
    fn unknown_system_is_refused_in_one_line() {
        let e = id(38, b"TITAN", cpu_type::EV68CB).detect().unwrap_err();
        assert_eq!(e.sys_type, 38);
        let text = std::format!("{e}");
        assert!(text.contains("system type 38") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn override_wins_and_keeps_what_was_detected() {
        let q = id(34, b"QEMU", cpu_type::EV67);
        assert_eq!(choose(&q, None), Ok(Choice::Detected(Machine::Clipper)));
        let c = choose(&q, Some(Machine::Marvel)).unwrap();
        assert_eq!(c, Choice::Forced { machine: Machine::Marvel, detected: Some(Machine::Clipper) });
        assert_eq!(c.machine(), Machine::Marvel);
        let titan = id(38, b"", 12);
        assert_eq!(choose(&titan, Some(Machine::Tsunami)).unwrap().machine(), Machine::Tsunami);
        assert!(choose(&titan, None).is_err());
    }

    #[test]
    fn machine_names_parse_back() {
        for m in [Machine::Clipper, Machine::Tsunami, Machine::Marvel] {
            assert_eq!(Machine::parse(m.name()), Ok(Some(m)));
        }
        assert_eq!(Machine::parse("auto"), Ok(None));
        assert!(Machine::parse("titan").is_err());
    }
}
