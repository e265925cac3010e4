//! The Hardware Restart Parameter Block: the SRM console's description of the
//! machine (CPUs, memory, clocks) and the mailbox used to start secondaries.
//!
//! Offsets follow the architected layout (Linux `asm/hwrpb.h`, checked against
//! qemu-palcode in docs: qemu-alpha.md 1.4 and 2.2).

/// KSEG base: physical address + this = a kernel virtual address.
pub const KSEG: u64 = 0xfffffc0000000000;

/// Where the console's page table maps the HWRPB's physical address.
const INIT_HWRPB: u64 = 0x10000000;

/// The HWRPB's identification quadword, "HWRPB" big-endian.
pub const HWRPB_ID: u64 = 0x4857525042000000;

mod off {
    pub const ID: u64 = 8;
    pub const PAGESIZE: u64 = 40;
    pub const MAX_ASN: u64 = 56;
    pub const SSN: u64 = 64;
    pub const SYS_TYPE: u64 = 80;
    pub const INTR_FREQ: u64 = 104;
    pub const CYCLE_FREQ: u64 = 112;
    pub const NR_PROCESSORS: u64 = 144;
    pub const PROCESSOR_SIZE: u64 = 152;
    pub const PROCESSOR_OFFSET: u64 = 160;
    pub const MDDT_OFFSET: u64 = 200;
    pub const CPU_RESTART: u64 = 256;
    pub const CPU_RESTART_DATA: u64 = 264;
    pub const CHKSUM: u64 = 288;
    pub const RXRDY: u64 = 296;
}

/// A validated HWRPB at a KSEG address.
#[derive(Clone, Copy, Debug)]
pub struct Hwrpb {
    base: u64,
}

/// A memory cluster from the memory data descriptor table.
#[derive(Clone, Copy, Debug)]
pub struct Cluster {
    pub start_pfn: u64,
    pub pages: u64,
    /// Non-zero: reserved for the console/PALcode.
    pub usage: u64,
}

impl Hwrpb {
    /// Finds the HWRPB through the console's mapping and checks its id.
    ///
    /// # Safety
    /// Must run while the console's page table (which maps `INIT_HWRPB`) is
    /// the active one, i.e. during boot.
    pub unsafe fn locate() -> Option<Hwrpb> {
        // SAFETY: the console maps INIT_HWRPB to the HWRPB page (caller).
        let phys = unsafe { core::ptr::read_volatile(INIT_HWRPB as *const u64) };
        let h = Hwrpb { base: KSEG | phys };
        (h.q(off::ID) == HWRPB_ID).then_some(h)
    }

    /// The KSEG address of the block.
    pub fn base(&self) -> u64 {
        self.base
    }

    fn q(&self, offset: u64) -> u64 {
        // SAFETY: the HWRPB is console memory that stays mapped through KSEG
        // for the whole run; offsets used are inside the architected block.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }

    fn set_q(&self, offset: u64, value: u64) {
        // SAFETY: as in `q`; the fields written (restart address, rxrdy,
        // checksum, per-CPU slots) are the OS-writable ones.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u64, value) }
    }

    pub fn nr_processors(&self) -> u64 {
        self.q(off::NR_PROCESSORS)
    }
    pub fn cycle_freq(&self) -> u64 {
        self.q(off::CYCLE_FREQ)
    }
    /// Interval-timer frequency in Hz x 4096.
    pub fn intr_freq(&self) -> u64 {
        self.q(off::INTR_FREQ)
    }
    pub fn page_size(&self) -> u64 {
        self.q(off::PAGESIZE)
    }
    pub fn max_asn(&self) -> u64 {
        self.q(off::MAX_ASN)
    }
    pub fn sys_type(&self) -> u64 {
        self.q(off::SYS_TYPE)
    }

    /// The system serial number, trimmed ("QEMU" under QEMU).
    pub fn serial(&self) -> [u8; 16] {
        let mut s = [0u8; 16];
        for (i, chunk) in s.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&self.q(off::SSN + 8 * i as u64).to_le_bytes());
        }
        s
    }

    /// Memory clusters (at most 8 reported).
    pub fn clusters(&self) -> ([Cluster; 8], usize) {
        let mddt = self.base + self.q(off::MDDT_OFFSET);
        let mut out = [Cluster { start_pfn: 0, pages: 0, usage: 0 }; 8];
        // SAFETY: the MDDT lies inside the HWRPB block (offset from it).
        let n = unsafe { core::ptr::read_volatile((mddt + 16) as *const u64) } as usize;
        let n = n.min(out.len());
        for (i, c) in out.iter_mut().take(n).enumerate() {
            let at = mddt + 24 + 56 * i as u64;
            // SAFETY: cluster descriptors follow the MDDT header.
            unsafe {
                c.start_pfn = core::ptr::read_volatile(at as *const u64);
                c.pages = core::ptr::read_volatile((at + 8) as *const u64);
                c.usage = core::ptr::read_volatile((at + 48) as *const u64);
            }
        }
        (out, n)
    }

    /// Total memory in bytes over all clusters.
    pub fn memory_bytes(&self) -> u64 {
        let (c, n) = self.clusters();
        c[..n].iter().map(|c| c.pages * self.page_size()).sum()
    }

    /// The per-CPU slot of `cpu`.
    pub fn slot(&self, cpu: usize) -> CpuSlot {
        CpuSlot { base: self.base + self.q(off::PROCESSOR_OFFSET) + cpu as u64 * self.q(off::PROCESSOR_SIZE) }
    }

    pub fn set_cpu_restart(&self, pc: u64, data: u64) {
        self.set_q(off::CPU_RESTART, pc);
        self.set_q(off::CPU_RESTART_DATA, data);
    }

    /// Recomputes the checksum over the quadwords before it (real SRM checks it).
    pub fn update_checksum(&self) {
        let sum = (0..off::CHKSUM / 8).fold(0u64, |s, i| s.wrapping_add(self.q(8 * i)));
        self.set_q(off::CHKSUM, sum);
    }

    pub fn rxrdy(&self) -> u64 {
        self.q(off::RXRDY)
    }

    /// Atomically sets `bit` in rxrdy: the console polls and clears this word.
    pub fn post_rxrdy(&self, bit: u64) {
        let p = (self.base + off::RXRDY) as *const core::sync::atomic::AtomicU64;
        // SAFETY: rxrdy is an aligned quadword in console memory; the
        // console clears it with plain stores, so an atomic OR is the right
        // tool to avoid losing a concurrent update from our side.
        unsafe { (*p).fetch_or(bit, core::sync::atomic::Ordering::SeqCst) };
    }
}

/// A per-CPU slot of the HWRPB.
#[derive(Clone, Copy, Debug)]
pub struct CpuSlot {
    base: u64,
}

impl CpuSlot {
    const FLAGS: u64 = 0x80;
    const IPC_BUFFER: u64 = 0x128;
    /// Bootstrap-in-progress / acknowledged.
    pub const FLAG_BIP: u64 = 1;
    /// Processor available, present, valid, memory valid, loaded.
    pub const FLAGS_PRESENT: u64 = 0x1cc;

    fn q(&self, offset: u64) -> u64 {
        // SAFETY: the slot lies inside the HWRPB (see Hwrpb::slot).
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }
    fn set_q(&self, offset: u64, value: u64) {
        // SAFETY: as above; the OS owns the hwpcb, flags and ipc_buffer.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u64, value) }
    }
    pub fn flags(&self) -> u64 {
        self.q(Self::FLAGS)
    }
    pub fn set_flags(&self, v: u64) {
        self.set_q(Self::FLAGS, v)
    }
    /// Physical address of the slot's hardware PCB (its first field).
    pub fn hwpcb_phys(&self) -> u64 {
        self.base & !KSEG
    }
    /// Fills the hardware PCB the console loads before jumping to the
    /// restart address: kernel stack, page-table base (a PFN), FEN.
    pub fn set_hwpcb(&self, ksp: u64, ptbr_pfn: u64) {
        self.set_q(0x00, ksp);
        self.set_q(0x08, 0);
        self.set_q(0x10, ptbr_pfn);
        self.set_q(0x18, 0); // pcc, asn
        self.set_q(0x20, 0); // unique
        self.set_q(0x28, 1); // flags: FEN
    }
    /// Writes a console message ("START\r\n") into the slot's IPC buffer.
    pub fn set_message(&self, msg: &[u8]) {
        self.set_q(Self::IPC_BUFFER, msg.len() as u64);
        let mut words = [0u64; 4];
        for (i, b) in msg.iter().take(32).enumerate() {
            words[i / 8] |= u64::from(*b) << (8 * (i % 8));
        }
        for (i, w) in words.iter().enumerate() {
            self.set_q(Self::IPC_BUFFER + 8 + 8 * i as u64, *w);
        }
    }
}
