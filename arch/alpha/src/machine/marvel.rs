//! EV7/Marvel AlphaServers (ES47, ES80, GS1280) (docs/hardware.md §4).
//!
//! What the kernel does differently there, all of it through architected
//! interfaces:
//! - no legacy I/O ports: the console is the SRM callbacks (`srm.rs`);
//! - no RTC to program: the PALcode delivers the periodic type-1 interrupt
//!   at `intr_freq / 4096` Hz, taken as it comes;
//! - machine checks arrive with vectors 0x620..0x680 and an EV7 logout frame;
//!   each is decoded and reported, and `wrmces(7)` releases the frame;
//! - device vectors name the IO7 (by PID) and its LSI/MSI number.
//! CPU numbers are EV7 PIDs (sparse, boot CPU any), which `crate::cpus`
//! maps to dense logical ids for every machine alike.
//!
//! None of this has run on a Marvel; it runs on QEMU with `machine=marvel`
//! (which takes the same paths except that QEMU's PALcode reports machine
//! checks with vector 0), and the decoding is host-tested in
//! `alphasmp_srm::vectors`.

/// The EV7 PALcode's tick rate is only known from the HWRPB (docs/hardware.md §4.3: "the
/// EV7 SRM rate is unknown; read intr_freq"); implausible values fall back
/// to 1024 Hz (NetBSD's rule), see `clock::base_hz_from`.
pub fn tick_base_hz(intr_freq: u64) -> u64 {
    crate::clock::base_hz_from(intr_freq)
}
