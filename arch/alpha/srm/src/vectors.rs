//! What the `a1` vector of a device or machine-check interrupt means, per
//! machine (docs/hardware.md §4.2, §6 and §9; docs/qemu.md §3.3).
//!
//! Machine checks arrive as entInt type 2 with the SRM vector in `a1` and
//! the logout frame's address in `a2`; device interrupts as type 3.

use core::fmt;

/// The kind of a machine check, by vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineCheck {
    /// 0x620: system correctable error (report, release the frame, go on).
    SystemCorrectable,
    /// 0x630: processor correctable error.
    ProcessorCorrectable,
    /// 0x660: system machine check (fatal).
    System,
    /// 0x670: processor machine check (fatal).
    Processor,
    /// 0x680: system event (environmental: fans, power; report and go on).
    SystemEvent,
    /// A vector this table does not know; treated as fatal. QEMU reports
    /// every machine check with vector 0.
    Unknown(u64),
}

impl MachineCheck {
    pub fn from_vector(v: u64) -> MachineCheck {
        match v {
            0x620 => MachineCheck::SystemCorrectable,
            0x630 => MachineCheck::ProcessorCorrectable,
            0x660 => MachineCheck::System,
            0x670 => MachineCheck::Processor,
            0x680 => MachineCheck::SystemEvent,
            other => MachineCheck::Unknown(other),
        }
    }

    /// Whether the kernel can go on after reporting it.
    pub fn recoverable(self) -> bool {
        matches!(
            self,
            MachineCheck::SystemCorrectable
                | MachineCheck::ProcessorCorrectable
                | MachineCheck::SystemEvent
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            MachineCheck::SystemCorrectable => "system correctable error",
            MachineCheck::ProcessorCorrectable => "processor correctable error",
            MachineCheck::System => "system machine check",
            MachineCheck::Processor => "processor machine check",
            MachineCheck::SystemEvent => "system event",
            MachineCheck::Unknown(_) => "machine check",
        }
    }
}

/// Where a device interrupt came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// Tsunami/Typhoon: ISA IRQ `n` through the PIC (vector 0x800 + 16n).
    Isa(u64),
    /// Tsunami/Typhoon: PCI, DRIR bit `n` (vector 0x900 + 16n).
    Pci(u64),
    /// Marvel: IO7 of processor `pid`, level-sensitive interrupt `irq`
    /// (vector low half 0x800..=0xff0).
    Io7Lsi { pid: u64, irq: u64 },
    /// Marvel: IO7 of processor `pid`, message-signalled interrupt `irq`
    /// (vector low half 0x1000..=0x2ff0).
    Io7Msi { pid: u64, irq: u64 },
    /// Not a vector this machine produces.
    Unknown(u64),
}

/// How a chipset numbers its device interrupt vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceVectors {
    /// Tsunami/Typhoon (DS10, DS20, ES40, QEMU's clipper): ISA through the
    /// PIC, PCI through the DRIR bits.
    Tsunami,
    /// Marvel (ES47, ES80, GS1280): the IO7's PID in bits 63:16, an LSI or
    /// MSI number in the low half.
    Marvel,
}

impl Device {
    pub fn decode(scheme: DeviceVectors, v: u64) -> Device {
        match scheme {
            DeviceVectors::Tsunami => match v {
                0x800..=0x8f0 if v.is_multiple_of(16) => Device::Isa((v - 0x800) / 16),
                0x900..=0xcf0 if v.is_multiple_of(16) => Device::Pci((v - 0x900) / 16),
                _ => Device::Unknown(v),
            },
            DeviceVectors::Marvel => {
                let (pid, low) = (v >> 16, v & 0xffff);
                match low {
                    0x800..=0xff0 => Device::Io7Lsi {
                        pid,
                        irq: (low - 0x800) >> 4,
                    },
                    0x1000..=0x2ff0 => Device::Io7Msi {
                        pid,
                        irq: (low - 0x1000) >> 4,
                    },
                    _ => Device::Unknown(v),
                }
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Isa(n) => write!(f, "ISA IRQ {n}"),
            Device::Pci(n) => write!(f, "PCI interrupt (DRIR bit {n})"),
            Device::Io7Lsi { pid, irq } => write!(f, "IO7 of PID {pid}, LSI {irq}"),
            Device::Io7Msi { pid, irq } => write!(f, "IO7 of PID {pid}, MSI {irq}"),
            Device::Unknown(v) => write!(f, "unknown vector {v:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_check_vectors() {
        assert_eq!(
            MachineCheck::from_vector(0x620),
            MachineCheck::SystemCorrectable
        );
        assert_eq!(MachineCheck::from_vector(0x670), MachineCheck::Processor);
        assert!(MachineCheck::from_vector(0x630).recoverable());
        assert!(MachineCheck::from_vector(0x680).recoverable());
        assert!(!MachineCheck::from_vector(0x660).recoverable());
        assert_eq!(
            MachineCheck::from_vector(0),
            MachineCheck::Unknown(0),
            "QEMU's vector"
        );
        assert!(!MachineCheck::Unknown(0).recoverable());
    }

    #[test]
    fn tsunami_device_vectors() {
        assert_eq!(
            Device::decode(DeviceVectors::Tsunami, 0x800 + 16 * 4),
            Device::Isa(4)
        );
        assert_eq!(
            Device::decode(DeviceVectors::Tsunami, 0x900 + 16 * 55),
            Device::Pci(55)
        );
        assert_eq!(
            Device::decode(DeviceVectors::Tsunami, 0x808),
            Device::Unknown(0x808)
        );
    }

    #[test]
    fn marvel_device_vectors() {
        assert_eq!(
            Device::decode(DeviceVectors::Marvel, (6 << 16) | (0x800 + 0x10 * 0x5f)),
            Device::Io7Lsi { pid: 6, irq: 0x5f }
        );
        assert_eq!(
            Device::decode(DeviceVectors::Marvel, (63 << 16) | (0x1000 + 0x10 * 15)),
            Device::Io7Msi { pid: 63, irq: 15 }
        );
        assert_eq!(
            Device::decode(DeviceVectors::Marvel, 0x620),
            Device::Unknown(0x620)
        );
        assert_eq!(
            std::format!(
                "{}",
                Device::decode(DeviceVectors::Marvel, (2 << 16) | 0x810)
            ),
            "IO7 of PID 2, LSI 1"
        );
    }
}
