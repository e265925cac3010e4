//! The Hardware Restart Parameter Block: header, per-CPU slots, memory
//! clusters (docs/hardware.md §2.1, §2.3, §2.4; Linux `asm/hwrpb.h` and
//! NetBSD `rpb.h` agree on every offset used here).

use core::fmt;

/// Quadword access to the memory holding an HWRPB, by byte offset from its
/// start. The kernel implements it with volatile KSEG loads and stores; the
/// host tests with an array.
pub trait Quads {
    fn read(&self, offset: u64) -> u64;
    fn write(&self, offset: u64, value: u64);
    /// A 32-bit store at `offset` (4-byte aligned), leaving the other half
    /// of its quadword untouched: for a field that shares its quadword with
    /// one the console writes (the IPC buffer's `rxlen` beside `txlen`).
    fn write32(&self, offset: u64, value: u32);
}

/// The HWRPB's identification quadword, "HWRPB" big-endian.
pub const HWRPB_ID: u64 = 0x4857525042000000;

/// Header offsets.
pub mod off {
    pub const PHYS_ADDR: u64 = 0x00;
    pub const ID: u64 = 0x08;
    pub const REVISION: u64 = 0x10;
    pub const CPUID: u64 = 0x20;
    pub const PAGESIZE: u64 = 0x28;
    pub const MAX_ASN: u64 = 0x38;
    pub const SSN: u64 = 0x40;
    pub const SYS_TYPE: u64 = 0x50;
    pub const SYS_VARIATION: u64 = 0x58;
    pub const INTR_FREQ: u64 = 0x68;
    pub const CYCLE_FREQ: u64 = 0x70;
    pub const VPTB: u64 = 0x78;
    pub const NR_PROCESSORS: u64 = 0x90;
    pub const PROCESSOR_SIZE: u64 = 0x98;
    pub const PROCESSOR_OFFSET: u64 = 0xa0;
    pub const CRB_OFFSET: u64 = 0xc0;
    pub const MDDT_OFFSET: u64 = 0xc8;
    pub const CPU_RESTART: u64 = 0x100;
    pub const CPU_RESTART_DATA: u64 = 0x108;
    pub const CHKSUM: u64 = 0x120;
    pub const RXRDY: u64 = 0x128;
    pub const TXRDY: u64 = 0x130;
}

/// Per-CPU slot offsets (from the slot's start).
pub mod slot_off {
    pub const HWPCB: u64 = 0x00;
    pub const FLAGS: u64 = 0x80;
    pub const PAL_REVISION: u64 = 0xa8;
    pub const TYPE: u64 = 0xb0;
    pub const HALT_REASON: u64 = 0x118;
    /// The console's inter-processor communication buffer: `rxlen` (u32)
    /// at +0, `txlen` (u32) at +4, `rxbuf[80]` at +8 (OS to the slot's
    /// console), `txbuf[80]` at +0x58 (the slot's console to the OS).
    pub const IPC_BUFFER: u64 = 0x128;
    pub const IPC_RXBUF: u64 = IPC_BUFFER + 0x08;
    pub const IPC_TXBUF: u64 = IPC_BUFFER + 0x58;
    /// Bytes in each IPC text buffer.
    pub const IPC_TEXT: usize = 80;
}

/// Slot `flags` bits (docs/hardware.md §2.3).
pub mod flags {
    /// Bootstrap in progress; the console sets it to acknowledge START.
    pub const BIP: u64 = 0x1;
    /// Restart capable: with it set and no halt request, the console may
    /// restart the OS through CPU_restart instead of staying halted.
    pub const RC: u64 = 0x2;
    /// Available.
    pub const PA: u64 = 0x4;
    /// Present.
    pub const PP: u64 = 0x8;
    /// Operator halted.
    pub const OH: u64 = 0x10;
    /// Context valid.
    pub const CV: u64 = 0x20;
    /// PALcode valid.
    pub const PV: u64 = 0x40;
    /// PALcode memory valid.
    pub const PMV: u64 = 0x80;
    /// PALcode loaded.
    pub const PL: u64 = 0x100;
    /// What Linux requires of a CPU it starts: PA|PP|PV|PMV|PL.
    pub const STARTABLE: u64 = PA | PP | PV | PMV | PL;
    /// The halt-request field, bits 23:16.
    pub const HALT_REQUEST_SHIFT: u32 = 16;
    pub const HALT_REQUEST_MASK: u64 = 0xff << HALT_REQUEST_SHIFT;
}

/// What the console should do when a CPU halts (slot flags 23:16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HaltRequest {
    Default = 0,
    SaveExit = 1,
    ColdBoot = 2,
    WarmBoot = 3,
    /// Remain halted at the `>>>` prompt.
    StayHalted = 4,
}

/// Slot flags for a deliberate halt with `request`: the request field set,
/// restart-capable (RC) and bootstrap-in-progress cleared, so the console
/// neither restarts the OS through CPU_restart nor waits for a bootstrap
/// (Linux `common_shutdown_1` clears 0x00ff0001, NetBSD `prom_halt` clears
/// RC and the request; RC cleared first is the safe reading of both, docs/hardware.md §5).
pub const fn halt_flags(current: u64, request: HaltRequest) -> u64 {
    (current & !(flags::HALT_REQUEST_MASK | flags::RC | flags::BIP))
        | ((request as u64) << flags::HALT_REQUEST_SHIFT)
}

/// A memory cluster of the memory data descriptor table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub start_pfn: u64,
    pub pages: u64,
    /// Bit 0: console/PAL reserved; bit 1: non-volatile.
    pub usage: u64,
}

impl Cluster {
    /// Memory the OS may use (no console/PAL or non-volatile use bits;
    /// Linux `setup_memory`, aboot `check_memory`).
    pub const fn usable(&self) -> bool {
        self.usage & 3 == 0
    }
    pub const fn start(&self, page_size: u64) -> u64 {
        self.start_pfn * page_size
    }
    pub const fn end(&self, page_size: u64) -> u64 {
        (self.start_pfn + self.pages) * page_size
    }
}

/// Why an HWRPB is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwrpbError {
    /// The identification quadword is not "HWRPB".
    BadId(u64),
    /// Loaders and this kernel need 8 KB pages.
    PageSize(u64),
    /// The slot table is smaller than the architected slot (0x270 bytes)
    /// or there is none.
    SlotSize(u64),
}

impl fmt::Display for HwrpbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HwrpbError::BadId(v) => write!(f, "HWRPB id is {v:#x}, not \"HWRPB\""),
            HwrpbError::PageSize(p) => write!(f, "HWRPB page size is {p}, this kernel needs 8192"),
            HwrpbError::SlotSize(s) => write!(
                f,
                "HWRPB per-CPU slot size {s:#x} is below the architected 0x270"
            ),
        }
    }
}

/// The smallest per-CPU slot (the architected struct; consoles may round
/// up, DEC 3000 to a multiple of 128, so always step by `processor_size`).
pub const MIN_SLOT_SIZE: u64 = 0x270;

/// Most memory clusters read (a console reports one or a few per memory
/// node; a 64-CPU GS1280 has up to 64 nodes).
pub const MAX_CLUSTERS: usize = 128;

/// An HWRPB in memory `M`.
pub struct Hwrpb<M> {
    mem: M,
}

impl<M: Quads> Hwrpb<M> {
    /// Checks the identification, page size and slot size.
    pub fn new(mem: M) -> Result<Self, HwrpbError> {
        let h = Hwrpb { mem };
        let id = h.q(off::ID);
        if id != HWRPB_ID {
            return Err(HwrpbError::BadId(id));
        }
        if h.page_size() != 8192 {
            return Err(HwrpbError::PageSize(h.page_size()));
        }
        if h.nr_processors() > 0 && h.q(off::PROCESSOR_SIZE) < MIN_SLOT_SIZE {
            return Err(HwrpbError::SlotSize(h.q(off::PROCESSOR_SIZE)));
        }
        Ok(h)
    }

    pub fn mem(&self) -> &M {
        &self.mem
    }

    fn q(&self, offset: u64) -> u64 {
        self.mem.read(offset)
    }

    pub fn phys_addr(&self) -> u64 {
        self.q(off::PHYS_ADDR)
    }
    pub fn revision(&self) -> u64 {
        self.q(off::REVISION)
    }
    /// The primary (boot) CPU's slot number, which is also its `whami`.
    pub fn boot_cpu(&self) -> u64 {
        self.q(off::CPUID)
    }
    pub fn page_size(&self) -> u64 {
        self.q(off::PAGESIZE)
    }
    pub fn max_asn(&self) -> u64 {
        self.q(off::MAX_ASN)
    }
    /// The system type, made positive: some white-box SRMs report it
    /// negated (Linux and NetBSD negate it back).
    pub fn sys_type(&self) -> u64 {
        let raw = self.q(off::SYS_TYPE) as i64;
        raw.unsigned_abs()
    }
    /// The variation's member number, `(sys_variation >> 10) & 0x3f`.
    pub fn sys_member(&self) -> u64 {
        (self.q(off::SYS_VARIATION) >> 10) & 0x3f
    }
    /// Interval-timer frequency in Hz x 4096.
    pub fn intr_freq(&self) -> u64 {
        self.q(off::INTR_FREQ)
    }
    pub fn cycle_freq(&self) -> u64 {
        self.q(off::CYCLE_FREQ)
    }
    pub fn vptb(&self) -> u64 {
        self.q(off::VPTB)
    }
    pub fn nr_processors(&self) -> u64 {
        self.q(off::NR_PROCESSORS)
    }
    pub fn crb_offset(&self) -> u64 {
        self.q(off::CRB_OFFSET)
    }

    /// The system serial number (16 bytes, NUL padded; "QEMU" under QEMU).
    pub fn serial(&self) -> [u8; 16] {
        let mut s = [0u8; 16];
        for (i, chunk) in s.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&self.q(off::SSN + 8 * i as u64).to_le_bytes());
        }
        s
    }

    /// Whether the serial number says QEMU (Linux `alpha_using_qemu`).
    pub fn is_qemu(&self) -> bool {
        self.serial().windows(4).any(|w| w == b"QEMU")
    }

    /// Byte offset of slot `i` from the HWRPB's start.
    pub fn slot_offset(&self, i: u64) -> u64 {
        self.q(off::PROCESSOR_OFFSET) + i * self.q(off::PROCESSOR_SIZE)
    }

    /// Slot `i` (0..nr_processors).
    pub fn slot(&self, i: u64) -> Slot<'_, M> {
        Slot {
            h: self,
            base: self.slot_offset(i),
            index: i,
        }
    }

    /// Every slot, present or not.
    pub fn slots(&self) -> impl Iterator<Item = Slot<'_, M>> {
        (0..self.nr_processors()).map(|i| self.slot(i))
    }

    /// The memory clusters (at most [`MAX_CLUSTERS`]).
    pub fn clusters(&self) -> impl Iterator<Item = Cluster> + '_ {
        let mddt = self.q(off::MDDT_OFFSET);
        let n = (self.q(mddt + 16) as usize).min(MAX_CLUSTERS);
        (0..n).map(move |i| {
            let at = mddt + 24 + 56 * i as u64;
            Cluster {
                start_pfn: self.q(at),
                pages: self.q(at + 8),
                usage: self.q(at + 48),
            }
        })
    }

    /// All memory the clusters describe, reserved or not (bytes).
    pub fn memory_bytes(&self) -> u64 {
        self.clusters().map(|c| c.pages * self.page_size()).sum()
    }

    /// The end of the usable cluster holding physical address `pa`, if any:
    /// the kernel's image and heap must stay below it.
    pub fn usable_end_containing(&self, pa: u64) -> Option<u64> {
        let ps = self.page_size();
        self.clusters()
            .find(|c| c.usable() && c.start(ps) <= pa && pa < c.end(ps))
            .map(|c| c.end(ps))
    }

    /// The checksum over the quadwords before it.
    pub fn compute_checksum(&self) -> u64 {
        (0..off::CHKSUM / 8).fold(0u64, |s, i| s.wrapping_add(self.q(8 * i)))
    }

    pub fn checksum_ok(&self) -> bool {
        self.compute_checksum() == self.q(off::CHKSUM)
    }

    /// Rewrites the checksum (needed after writing any field below it).
    pub fn update_checksum(&self) {
        self.mem.write(off::CHKSUM, self.compute_checksum());
    }

    pub fn set_cpu_restart(&self, pc: u64, data: u64) {
        self.mem.write(off::CPU_RESTART, pc);
        self.mem.write(off::CPU_RESTART_DATA, data);
        self.update_checksum();
    }

    pub fn rxrdy(&self) -> u64 {
        self.q(off::RXRDY)
    }
    pub fn txrdy(&self) -> u64 {
        self.q(off::TXRDY)
    }

    /// Takes the lines that secondary consoles posted for the OS: each
    /// CPU's console (a shell on its slot's IPC buffer) writes a line into
    /// `txbuf`, sets its bit in `txrdy`, interrupts the primary and waits
    /// until the OS clears the bit before it writes again (docs/hardware.md,
    /// "Secondary consoles"). Hands each pending line to `each(cpu, text)`
    /// and returns the bits taken; the caller clears exactly those bits in
    /// `txrdy` (atomically where another CPU may post meanwhile), which
    /// lets each of those consoles go on.
    pub fn take_secondary_lines(&self, mut each: impl FnMut(u64, &[u8])) -> u64 {
        let pending = self.txrdy();
        // The console writes its text, then its bit: the text is read after
        // the bit (Alpha may reorder two loads; `mb` here, as Linux's
        // reader). On a host, and under QEMU on one, loads stay in order,
        // so no test here can see this fence missing.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        let mut taken = 0;
        for cpu in (0..self.nr_processors().min(64)).filter(|c| pending & (1 << c) != 0) {
            let mut text = [0u8; slot_off::IPC_TEXT];
            let n = self.slot(cpu).tx_text(&mut text);
            each(cpu, &text[..n]);
            taken |= 1 << cpu;
        }
        taken
    }
}

/// One per-CPU slot.
pub struct Slot<'h, M> {
    h: &'h Hwrpb<M>,
    base: u64,
    index: u64,
}

impl<M: Quads> Slot<'_, M> {
    /// The slot number, which is the CPU's `whami` (on EV7: its PID).
    pub fn index(&self) -> u64 {
        self.index
    }
    /// Byte offset from the HWRPB's start.
    pub fn offset(&self) -> u64 {
        self.base
    }
    fn q(&self, o: u64) -> u64 {
        self.h.mem.read(self.base + o)
    }
    fn set(&self, o: u64, v: u64) {
        self.h.mem.write(self.base + o, v)
    }
    fn set32(&self, o: u64, v: u32) {
        self.h.mem.write32(self.base + o, v)
    }
    pub fn flags(&self) -> u64 {
        self.q(slot_off::FLAGS)
    }
    pub fn set_flags(&self, v: u64) {
        self.set(slot_off::FLAGS, v)
    }
    /// Present (PP): the slot describes a CPU that exists (NetBSD/OpenBSD's
    /// test).
    pub fn present(&self) -> bool {
        self.flags() & flags::PP != 0
    }
    /// Present with valid PALcode, the test Linux applies before it starts
    /// a CPU; a present CPU without it is reported and left in the console.
    pub fn startable(&self) -> bool {
        self.flags() & flags::STARTABLE == flags::STARTABLE
    }
    /// The CPU type (low half of the type quadword: EV6 8, EV67 11, EV7 15).
    pub fn cpu_type(&self) -> u32 {
        self.q(slot_off::TYPE) as u32
    }
    pub fn pal_revision(&self) -> u64 {
        self.q(slot_off::PAL_REVISION)
    }
    /// Records which PALcode the CPU should run: Linux copies the boot CPU's
    /// `pal_revision` (OSF after SWPPAL) into every slot it starts
    /// (`setup_smp`), presumably how SRM knows to start it in OSF PALcode.
    pub fn set_pal_revision(&self, v: u64) {
        self.set(slot_off::PAL_REVISION, v)
    }
    pub fn halt_reason(&self) -> u64 {
        self.q(slot_off::HALT_REASON)
    }
    /// Sets the halt request and clears RC and BIP (see [`halt_flags`]).
    pub fn request_halt(&self, request: HaltRequest) {
        self.set_flags(halt_flags(self.flags(), request));
    }
    /// Fills the hardware PCB the console loads before jumping to
    /// CPU_restart: kernel stack, page-table base (a PFN), FEN on.
    pub fn set_hwpcb(&self, ksp: u64, ptbr_pfn: u64) {
        let p = slot_off::HWPCB;
        self.set(p, ksp);
        self.set(p + 0x08, 0); // usp
        self.set(p + 0x10, ptbr_pfn);
        self.set(p + 0x18, 0); // pcc, asn
        self.set(p + 0x20, 0); // unique
        self.set(p + 0x28, 1); // flags: FEN
    }
    /// Writes a console message ("START\r\n") into the IPC buffer: its
    /// length in `rxlen` (the low half of the first quadword, by a 32-bit
    /// store of its own: `txlen`, the high half, is the slot's console's,
    /// which may store it at any time, so a read and write of the whole
    /// quadword could undo its store), the text in `rxbuf`.
    pub fn set_message(&self, msg: &[u8]) {
        self.set32(slot_off::IPC_BUFFER, msg.len().min(32) as u32);
        let mut words = [0u64; 4];
        for (i, b) in msg.iter().take(32).enumerate() {
            words[i / 8] |= u64::from(*b) << (8 * (i % 8));
        }
        for (i, w) in words.iter().enumerate() {
            self.set(slot_off::IPC_RXBUF + 8 * i as u64, *w);
        }
    }

    /// The slot's machine-check logout area: (physical address, bytes).
    pub fn logout_area(&self) -> (u64, u64) {
        (
            self.q(crate::ev7_logout::slot_off::LOGOUT_AREA_PA),
            self.q(crate::ev7_logout::slot_off::LOGOUT_AREA_LEN),
        )
    }

    /// What the slot's console does to post a line for the OS, before it
    /// sets its bit in `txrdy`: the text (at most 80 bytes) in `txbuf`,
    /// its length in `txlen` (the high half of the IPC buffer's first
    /// quadword; `rxlen`, the low half, is the OS's and is kept). The
    /// kernel's self-tests play a secondary console with it.
    pub fn set_tx_text(&self, line: &[u8]) {
        let len = line.len().min(slot_off::IPC_TEXT);
        let first = self.q(slot_off::IPC_BUFFER);
        self.set(
            slot_off::IPC_BUFFER,
            (first & 0xffff_ffff) | (len as u64) << 32,
        );
        let mut text = [0u8; slot_off::IPC_TEXT];
        text[..len].copy_from_slice(&line[..len]);
        for (i, w) in text.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.set(slot_off::IPC_TXBUF + 8 * i as u64, u64::from_le_bytes(word));
        }
    }

    /// The text the slot's console posted for the OS (`txlen` bytes of
    /// `txbuf`, at most 80), copied into `out`; returns its length.
    pub fn tx_text(&self, out: &mut [u8; slot_off::IPC_TEXT]) -> usize {
        let len = ((self.q(slot_off::IPC_BUFFER) >> 32) as usize).min(slot_off::IPC_TEXT);
        for i in 0..len.div_ceil(8) {
            let word = self.q(slot_off::IPC_TXBUF + 8 * i as u64).to_le_bytes();
            let n = (len - 8 * i).min(8);
            out[8 * i..8 * i + n].copy_from_slice(&word[..n]);
        }
        len
    }
}

#[cfg(test)]
pub mod fake {
    //! A synthetic HWRPB for host tests.
    use super::*;
    use core::cell::RefCell;
    use std::vec;
    use std::vec::Vec;

    extern crate std;

    /// Memory for a fake HWRPB: quadwords in a vector.
    pub struct Mem(pub RefCell<Vec<u64>>);

    impl Mem {
        /// A quadword, without the checks (for fakes built on this one).
        pub fn read_q(&self, offset: u64) -> u64 {
            self.0.borrow()[(offset / 8) as usize]
        }
    }

    impl Quads for &Mem {
        fn read(&self, offset: u64) -> u64 {
            assert_eq!(offset % 8, 0, "unaligned HWRPB read at {offset:#x}");
            self.0.borrow()[(offset / 8) as usize]
        }
        fn write(&self, offset: u64, value: u64) {
            assert_eq!(offset % 8, 0, "unaligned HWRPB write at {offset:#x}");
            self.0.borrow_mut()[(offset / 8) as usize] = value;
        }
        fn write32(&self, offset: u64, value: u32) {
            assert_eq!(offset % 4, 0, "unaligned HWRPB write at {offset:#x}");
            let q = &mut self.0.borrow_mut()[(offset / 8) as usize];
            let shift = 8 * (offset % 8);
            *q = (*q & !(0xffff_ffff << shift)) | u64::from(value) << shift;
        }
    }

    /// Where the fake puts its tables.
    pub const SLOT_TABLE: u64 = 0x800;
    pub const SLOT_SIZE: u64 = 0x280;

    /// A console description to build.
    pub struct Spec<'a> {
        pub sys_type: i64,
        pub member: u64,
        pub serial: &'a [u8],
        pub boot_cpu: u64,
        /// Per slot: its flags (0 = absent) and CPU type.
        pub slots: &'a [(u64, u32)],
        /// (start_pfn, pages, usage)
        pub clusters: &'a [(u64, u64, u64)],
        pub intr_freq: u64,
    }

    impl Spec<'_> {
        pub fn build(&self) -> Mem {
            let mddt = SLOT_TABLE + SLOT_SIZE * self.slots.len() as u64;
            let size = mddt + 24 + 56 * self.clusters.len() as u64 + 64;
            let mem = Mem(RefCell::new(vec![0; (size / 8) as usize]));
            let m = &mem;
            m.write(off::PHYS_ADDR, 0x2000);
            m.write(off::ID, HWRPB_ID);
            m.write(off::REVISION, 6);
            m.write(off::CPUID, self.boot_cpu);
            m.write(off::PAGESIZE, 8192);
            m.write(off::MAX_ASN, 255);
            let mut serial = [0u8; 16];
            serial[..self.serial.len()].copy_from_slice(self.serial);
            m.write(
                off::SSN,
                u64::from_le_bytes(serial[..8].try_into().unwrap()),
            );
            m.write(
                off::SSN + 8,
                u64::from_le_bytes(serial[8..].try_into().unwrap()),
            );
            m.write(off::SYS_TYPE, self.sys_type as u64);
            m.write(off::SYS_VARIATION, self.member << 10 | 1);
            m.write(off::INTR_FREQ, self.intr_freq);
            m.write(off::CYCLE_FREQ, 1_000_000_000);
            m.write(off::NR_PROCESSORS, self.slots.len() as u64);
            m.write(off::PROCESSOR_SIZE, SLOT_SIZE);
            m.write(off::PROCESSOR_OFFSET, SLOT_TABLE);
            m.write(off::MDDT_OFFSET, mddt);
            for (i, (fl, ty)) in self.slots.iter().enumerate() {
                let s = SLOT_TABLE + SLOT_SIZE * i as u64;
                m.write(s + slot_off::FLAGS, *fl);
                m.write(s + slot_off::TYPE, u64::from(*ty) | (3 << 32));
            }
            m.write(mddt + 16, self.clusters.len() as u64);
            for (i, (pfn, pages, usage)) in self.clusters.iter().enumerate() {
                let c = mddt + 24 + 56 * i as u64;
                m.write(c, *pfn);
                m.write(c + 8, *pages);
                m.write(c + 48, *usage);
            }
            let h = Hwrpb { mem: m };
            h.update_checksum();
            mem
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Mem, Spec};
    use super::*;

    const P: u64 = flags::STARTABLE;

    fn marvel_like() -> Mem {
        // Eight slots, PIDs 0,2,4,6 present (a sparse ES80-like box), boot
        // CPU 4; console memory first, then two usable clusters.
        Spec {
            sys_type: 39,
            member: 0,
            serial: b"AY12345678",
            boot_cpu: 4,
            slots: &[
                (P, 15),
                (0, 0),
                (P, 15),
                (0, 0),
                (P | flags::BIP, 15),
                (0, 0),
                (flags::PP, 16),
                (0, 0),
            ],
            clusters: &[(0, 256, 1), (256, 130_816, 0), (1 << 21, 1 << 20, 0)],
            intr_freq: 1024 * 4096,
        }
        .build()
    }

    #[test]
    fn header_fields_and_checksum() {
        let mem = marvel_like();
        let h = Hwrpb::new(&mem).expect("valid");
        assert_eq!(
            (
                h.sys_type(),
                h.sys_member(),
                h.boot_cpu(),
                h.nr_processors()
            ),
            (39, 0, 4, 8)
        );
        assert_eq!(h.intr_freq() / 4096, 1024);
        assert!(!h.is_qemu());
        assert!(h.checksum_ok());
        h.set_cpu_restart(0x1234, 0x5678);
        assert!(h.checksum_ok(), "set_cpu_restart re-sums");
        (&mem).write(off::VPTB, 0x200000000);
        assert!(!h.checksum_ok(), "a changed field shows in the checksum");
    }

    #[test]
    fn negative_system_type_is_negated() {
        let mem = Spec {
            sys_type: -34,
            member: 5,
            serial: b"QEMU",
            boot_cpu: 0,
            slots: &[(P, 11)],
            clusters: &[(0, 15, 1), (15, 16369, 0)],
            intr_freq: 0,
        }
        .build();
        let h = Hwrpb::new(&mem).unwrap();
        assert_eq!((h.sys_type(), h.sys_member()), (34, 5));
        assert!(h.is_qemu());
    }

    #[test]
    fn sparse_slots_present_and_startable() {
        let mem = marvel_like();
        let h = Hwrpb::new(&mem).unwrap();
        let present: std::vec::Vec<u64> = h
            .slots()
            .filter(|s| s.present())
            .map(|s| s.index())
            .collect();
        assert_eq!(present, [0, 2, 4, 6]);
        let startable: std::vec::Vec<u64> = h
            .slots()
            .filter(|s| s.startable())
            .map(|s| s.index())
            .collect();
        assert_eq!(
            startable,
            [0, 2, 4],
            "slot 6 is present without valid PALcode"
        );
        assert_eq!(
            h.slot(6).cpu_type(),
            16,
            "EV79, pass number in the high half ignored"
        );
        assert_eq!(
            h.slot(3).offset(),
            fake::SLOT_TABLE + 3 * fake::SLOT_SIZE,
            "slots step by processor_size"
        );
    }

    #[test]
    fn sixty_four_slots() {
        let slots: std::vec::Vec<(u64, u32)> = (0..64)
            .map(|i| (if i % 3 == 2 { 0 } else { P }, 15))
            .collect();
        let mem = Spec {
            sys_type: 39,
            member: 0,
            serial: b"GS1280",
            boot_cpu: 63,
            slots: &slots,
            clusters: &[(0, 1, 1)],
            intr_freq: 0,
        }
        .build();
        let h = Hwrpb::new(&mem).unwrap();
        assert_eq!(h.slots().filter(|s| s.present()).count(), 43);
        assert!(h.slot(63).present() && !h.slot(62).present());
    }

    #[test]
    fn memory_clusters() {
        let mem = marvel_like();
        let h = Hwrpb::new(&mem).unwrap();
        let c: std::vec::Vec<Cluster> = h.clusters().collect();
        assert_eq!(c.len(), 3);
        assert!(!c[0].usable() && c[1].usable());
        assert_eq!(h.memory_bytes(), (256 + 130_816 + (1 << 20)) * 8192);
        // The kernel at 16 MiB lies in cluster 1, which ends at 1 GiB.
        assert_eq!(h.usable_end_containing(0x100_0000), Some(131_072 * 8192));
        assert_eq!(
            h.usable_end_containing(0x1000),
            None,
            "console memory is not usable"
        );
        assert_eq!(h.usable_end_containing(1 << 40), None, "past every cluster");
    }

    #[test]
    fn bad_blocks_are_refused() {
        let mem = marvel_like();
        (&mem).write(off::ID, 0);
        assert_eq!(Hwrpb::new(&mem).err(), Some(HwrpbError::BadId(0)));
        let mem = marvel_like();
        (&mem).write(off::PAGESIZE, 4096);
        assert_eq!(Hwrpb::new(&mem).err(), Some(HwrpbError::PageSize(4096)));
        let mem = marvel_like();
        (&mem).write(off::PROCESSOR_SIZE, 0x100);
        let e = Hwrpb::new(&mem).err().unwrap();
        assert_eq!(e, HwrpbError::SlotSize(0x100));
        assert!(!std::format!("{e}").contains('\n'));
    }

    #[test]
    fn halt_request_clears_rc_and_bip() {
        let f = P | flags::RC | flags::BIP | flags::CV | (3 << 16);
        let h = halt_flags(f, HaltRequest::StayHalted);
        assert_eq!(h & flags::RC, 0);
        assert_eq!(h & flags::BIP, 0);
        assert_eq!((h & flags::HALT_REQUEST_MASK) >> 16, 4);
        assert_eq!(
            h & !(flags::HALT_REQUEST_MASK),
            P | flags::CV,
            "other bits kept"
        );
        let mem = marvel_like();
        let hw = Hwrpb::new(&mem).unwrap();
        hw.slot(2).request_halt(HaltRequest::StayHalted);
        assert_eq!(hw.slot(2).flags(), P | (4 << 16));
    }

    /// A model of a DEC secondary console's output side: a shell whose
    /// terminal is its slot's IPC buffer. It may write a line only while
    /// its TXRDY bit is clear; it then writes `txlen` and `txbuf`, sets
    /// the bit (and would interrupt the primary) and waits.
    struct SecondaryConsole {
        cpu: u64,
        lines: std::collections::VecDeque<&'static [u8]>,
    }

    impl SecondaryConsole {
        /// One step: posts the next line if the OS took the previous one.
        /// Returns false when it is blocked on a line not yet taken.
        fn step(&mut self, h: &Hwrpb<&fake::Mem>) -> bool {
            if h.txrdy() & (1 << self.cpu) != 0 {
                return self.lines.is_empty();
            }
            let Some(line) = self.lines.pop_front() else {
                return true;
            };
            h.slot(self.cpu).set_tx_text(line);
            let m = h.mem();
            m.write(off::TXRDY, h.txrdy() | 1 << self.cpu);
            true
        }
    }

    #[test]
    fn secondary_console_lines_are_taken_in_order_and_release_the_console() {
        let mem = marvel_like();
        let h = Hwrpb::new(&mem).unwrap();
        let mut consoles = [
            SecondaryConsole {
                cpu: 2,
                lines: [
                    &b"START\r\n"[..],
                    b"P02>>>",
                    b"warning -- a long line of console output\r\n",
                ]
                .into(),
            },
            SecondaryConsole {
                cpu: 5,
                lines: [&b"P05>>>"[..], b"halted CPU 5\r\n"].into(),
            },
        ];
        let mut seen: std::vec::Vec<(u64, std::vec::Vec<u8>)> = std::vec::Vec::new();
        for _ in 0..10 {
            for c in consoles.iter_mut() {
                c.step(&h);
            }
            // The OS's IPI handler on the primary.
            let taken = h.take_secondary_lines(|cpu, text| seen.push((cpu, text.to_vec())));
            h.mem().write(off::TXRDY, h.txrdy() & !taken);
        }
        assert!(
            consoles.iter().all(|c| c.lines.is_empty()),
            "a console is still blocked"
        );
        let of = |cpu| {
            seen.iter()
                .filter(|(c, _)| *c == cpu)
                .map(|(_, t)| std::string::String::from_utf8_lossy(t).into_owned())
                .collect::<std::vec::Vec<_>>()
        };
        assert_eq!(
            of(2),
            [
                "START\r\n",
                "P02>>>",
                "warning -- a long line of console output\r\n"
            ]
        );
        assert_eq!(of(5), ["P05>>>", "halted CPU 5\r\n"]);
        assert_eq!(h.txrdy(), 0);
    }

    #[test]
    fn without_a_drain_a_secondary_console_blocks() {
        let mem = marvel_like();
        let h = Hwrpb::new(&mem).unwrap();
        let mut c = SecondaryConsole {
            cpu: 2,
            lines: [&b"one\r\n"[..], b"two\r\n"].into(),
        };
        assert!(c.step(&h));
        assert!(
            !c.step(&h),
            "the second line waits for the OS to clear TXRDY"
        );
        assert_eq!(h.txrdy(), 1 << 2);
    }

    /// The OS's START goes into `rxlen`/`rxbuf` while the slot's console
    /// may have a line of its own pending in `txlen`/`txbuf`: writing the
    /// START must not cut that line off.
    #[test]
    fn start_message_keeps_the_consoles_pending_line() {
        let mem = marvel_like();
        let h = Hwrpb::new(&mem).unwrap();
        let mut c = SecondaryConsole {
            cpu: 2,
            lines: [&b"P02>>>"[..]].into(),
        };
        c.step(&h);
        h.slot(2).set_message(b"START\r\n");
        let mut lines = std::vec::Vec::new();
        h.take_secondary_lines(|cpu, text| lines.push((cpu, text.to_vec())));
        assert_eq!(lines, [(2, b"P02>>>".to_vec())]);
    }

    /// The console's side of a line: `txlen` in the high half, the OS's
    /// `rxlen` kept, the text read back whole, a longer line cut at 80.
    #[test]
    fn a_posted_line_reads_back_and_keeps_rxlen() {
        let mem = marvel_like();
        let h = Hwrpb::new(&mem).unwrap();
        let slot = h.slot(2);
        slot.set_message(b"START\r\n");
        slot.set_tx_text(b"P02>>> halted\r\n");
        let mut out = [0u8; slot_off::IPC_TEXT];
        let n = slot.tx_text(&mut out);
        assert_eq!(&out[..n], b"P02>>> halted\r\n");
        let base = slot.offset() + slot_off::IPC_BUFFER;
        assert_eq!((&mem).read(base) & 0xffff_ffff, 7, "rxlen kept");
        let long = [b'x'; 100];
        slot.set_tx_text(&long);
        assert_eq!(slot.tx_text(&mut out), 80);
        assert_eq!(out, [b'x'; 80]);
    }

    /// A console that stores its `txlen` (the IPC buffer's high half) just
    /// before the OS's access number `before` to that quadword (counting
    /// from 0), as a secondary console posting a line at that moment would.
    struct Racing<'a> {
        mem: &'a fake::Mem,
        at: u64,
        before: usize,
        seen: core::cell::Cell<usize>,
        posted: core::cell::Cell<bool>,
    }

    impl Racing<'_> {
        fn access(&self, offset: u64) {
            if offset & !7 == self.at {
                if self.seen.get() == self.before {
                    self.post();
                }
                self.seen.set(self.seen.get() + 1);
            }
        }
        fn post(&self) {
            (&self.mem).write32(self.at + 4, 15);
            self.posted.set(true);
        }
    }

    impl Quads for &Racing<'_> {
        fn read(&self, offset: u64) -> u64 {
            self.access(offset);
            self.mem.read_q(offset)
        }
        fn write(&self, offset: u64, value: u64) {
            self.access(offset);
            (&self.mem).write(offset, value)
        }
        fn write32(&self, offset: u64, value: u32) {
            self.access(offset);
            (&self.mem).write32(offset, value)
        }
    }

    /// The START message's length is stored alone: a line the slot's
    /// console posts at any moment keeps its `txlen`. (With a read and a
    /// write of the whole quadword, a post between the two was undone, and
    /// the line was then taken with the old length.)
    #[test]
    fn the_start_message_keeps_a_txlen_posted_meanwhile() {
        for before in 0..3 {
            let mem = marvel_like();
            let at = Hwrpb::new(&mem).unwrap().slot(2).offset() + slot_off::IPC_BUFFER;
            let racing = Racing {
                mem: &mem,
                at,
                before,
                seen: core::cell::Cell::new(0),
                posted: core::cell::Cell::new(false),
            };
            let h = Hwrpb::new(&racing).unwrap();
            h.slot(2).set_message(b"START\r\n");
            if !racing.posted.get() {
                racing.post();
            }
            assert_eq!(
                (&mem).read(at),
                15 << 32 | 7,
                "posted before access {before}: txlen 15 and rxlen 7"
            );
        }
    }

    #[test]
    fn start_message_layout() {
        let mem = marvel_like();
        let h = Hwrpb::new(&mem).unwrap();
        h.slot(2).set_message(b"START\r\n");
        let base = h.slot(2).offset() + slot_off::IPC_BUFFER;
        assert_eq!((&mem).read(base), 7);
        assert_eq!((&mem).read(base + 8).to_le_bytes(), *b"START\r\n\0");
    }
}
