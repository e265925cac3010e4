//! What the HWRPB says about the machine: its system type, member, boot CPU
//! type and whether its serial number says QEMU (docs/hardware.md §2.2 and
//! §7, step 13). Which machine layer serves an identity is the kernel's
//! machine vectors' business (arch/alpha/src/machine/), each naming the
//! system types it serves.

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
        let cpu_type = if boot < h.nr_processors() {
            h.slot(boot).cpu_type()
        } else {
            0
        };
        Identity {
            sys_type: h.sys_type(),
            member: h.sys_member(),
            cpu_type,
            qemu: h.is_qemu(),
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
            "system type {} is served by no machine layer of this kernel; boot with machine=NAME to force one",
            self.sys_type
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hwrpb::fake::Spec;
    use crate::hwrpb::flags::STARTABLE;

    fn id(sys_type: i64, serial: &[u8], cpu: u32) -> Identity {
        let mem = Spec {
            sys_type,
            member: 0,
            serial,
            boot_cpu: 0,
            slots: &[(STARTABLE, cpu)],
            clusters: &[(0, 1, 1)],
            intr_freq: 0,
        }
        .build();
        Identity::read(&Hwrpb::new(&mem).unwrap())
    }

    #[test]
    fn identity_from_the_hwrpb() {
        let q = id(34, b"QEMU", cpu_type::EV67);
        assert_eq!(
            (q.sys_type, q.qemu, cpu_type::name(q.cpu_type)),
            (34, true, "EV67")
        );
        let t = id(-34, b"NI91234567", cpu_type::EV6);
        assert_eq!((t.sys_type, t.qemu), (34, false), "negated system type");
        let m = id(39, b"AY00112233", cpu_type::EV7);
        assert_eq!((m.sys_type, cpu_type::name(m.cpu_type)), (39, "EV7"));
    }

    #[test]
    fn unknown_system_is_refused_in_one_line() {
        let text = std::format!("{}", Unsupported { sys_type: 38 });
        assert!(
            text.contains("system type 38") && !text.contains('\n'),
            "{text}"
        );
    }
}
