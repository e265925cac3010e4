//! The Marvel IO7's interrupt controls (ES47, ES80, GS1280), as addresses
//! and the sequence of accesses that quiesces them, and how to find which
//! processors have an IO7.
//!
//! # Where an IO7's CSRs are
//!
//! Every EV7 (PE, the processor id, = PID = whami) may have one IO7 on its
//! I/O port. Its physical address space is selected by the PE, inverted
//! (Linux `arch/alpha/include/asm/core_marvel.h`, macros `EV7_IPE`,
//! `IO7_IPORT`, `IO7_HOSE`, `IO7_CSR_PHYS`, `IO7_PORT7_CSRS_PHYS`):
//!
//! ```text
//!   bits 43:35  ~pe & 0x1ff      (bit 43 set = I/O space, so pe < 256)
//!   bits 34:32  ~port & 7        (ports 0..3 are the PCI/AGP hoses; port 7,
//!                                 which inverts to 0, is the IO7 itself)
//!   + 0xff80_0000                the CSR window of that port
//!   + 0x0030_0000                the "port 7" CSRs (struct io7_port7_csrs)
//! ```
//!
//! so the IO7's own CSRs begin at `(~pe & 0x1ff) << 35 | 0xffb0_0000`
//! ([`io7_csr_base`]); for PE 0 that is 0xff8_ffb0_0000. Each CSR is a
//! quadword in a 64-byte slot (`io7_csr`, aligned 64). Counting slots in
//! `io7_port7_csrs` (and matching the offsets its comments give), from that
//! base:
//!
//! | register | offset | count |
//! |---|---|---|
//! | `PO7_LSI_CTL[i]` | 0x1_0000 + 64 i | 128 (0x31.0000 in Linux's notation) |
//! | `HLT_CTL` | 0x1_3ec0 | 1 |
//! | `HPI_CTL` | 0x1_3f00 | 1 |
//! | `CRD_CTL` | 0x1_3f40 | 1 |
//! | `STV_CTL` | 0x1_3f80 | 1 |
//! | `HEI_CTL` | 0x1_3fc0 | 1 |
//! | `PO7_MSI_CTL[i]` | 0x1_4000 + 64 i | 16 |
//!
//! (Past `PO7_MSI_CTL` the struct's padding no longer matches its own
//! offset comments, e.g. `MISC_PND`; nothing here uses those registers.)
//!
//! Bit fields (Linux `arch/alpha/kernel/sys_marvel.c`): `PO7_LSI_CTL` and
//! `PO7_MSI_CTL` hold the target PID in bits 22:14 and the enable in bit 24
//! (`io7_enable_irq`, `init_one_io7_lsi`); the five error/event controls
//! (halt, hot plug, correctable, starvation, hard error) hold the target
//! PID in bits 32:24 (`io7_redirect_irq`), their other bits being kept.
//!
//! # The kernel's view: KSEG with the 43-bit superpage
//!
//! Linux reaches these CSRs through KSEG as `0xfffffc00_00000000 | (pa &
//! (2^41 - 1))` (`EV7_KERN_ADDR`): physical bits 43:41 are dropped and come
//! back as copies of bit 40. That only works when bits 43:40 are all equal,
//! which for an IO7 means `~pe` has bits 8:5 set, i.e. **pe < 32**; hence
//! Linux's `MARVEL_MAX_PIDS 32` "as long as we rely on 43-bit superpage".
//! [`kseg`] applies that rule and refuses other addresses; [`quiesce_io7`]
//! refuses PEs from 32 up (a GS1280 with more CPUs needs page-table
//! mappings for those IO7s, which this module does not provide).
//! Reading "bits 43:41 come back as copies of bit 40" out of the macro and
//! the comment is an inference; the macro itself is Linux's.
//!
//! # The quiesce
//!
//! Linux's `init_io7_irqs` (sys_marvel.c), per IO7 at boot:
//! 1. retargets HLT, HPI, CRD, STV and HEI (in that order) to the boot CPU:
//!    read, replace bits 32:24 with the boot PID, write, `mb`, read back;
//! 2. writes `boot_pid << 14` (enable clear) to `PO7_LSI_CTL[i]` for the
//!    implemented LSIs, 0..=0x5f then 0x74 and 0x75, each followed by `mb`
//!    and a read back;
//! 3. likewise `PO7_MSI_CTL[0..16]`.
//!
//! [`quiesce_io7`] performs exactly those accesses, in that order. The
//! error/event sources stay as enabled as the console left them, now aimed
//! at the boot CPU; what they deliver is not described in Linux beyond
//! "error irqs" (presumably the 0x620/0x660/0x680 machine-check vectors;
//! an inference). Linux later moves a CPU's local IO7 to it
//! (`marvel_smp_callin`); a kernel that drives no device needs not.
//!
//! # Which PEs have an IO7
//!
//! Linux walks the console's configuration tree (the GCT, "galaxy
//! configuration tree", at `hwrpb + frut_offset`; `arch/alpha/kernel/gct.c`
//! `gct6_find_nodes`, `arch/alpha/include/asm/gct.h`): every node of type
//! `GCT_TYPE_HOSE` (0x0e) and subtype `GCT_SUBTYPE_IO_PORT_MODULE` (0x2c) is
//! an IO7 at PE `(id >> 8) & 0xff` (`marvel_io7_present` in
//! `arch/alpha/kernel/core_marvel.c`). Nodes are 0x80 bytes; `next` and
//! `child` are byte offsets from the tree's start (0 = none); each node ends
//! with the magic "GLXY". For an incomplete tree Linux takes `io7=a,b,...`
//! on the command line (`marvel_specify_io7`). [`gct_io7_pes`] and
//! [`parse_io7_list`] are those two.
//!
//! There is deliberately no fallback from the HWRPB's CPU slots: not every
//! EV7 has an IO7, and a store to the CSRs of one that has none is a
//! reference to non-existent I/O space, which on an EV7 presumably ends in a
//! machine check (an inference; Linux never touches an IO7 the GCT or the
//! user did not name).

use core::fmt;

/// KSEG, the kernel's identity-mapped segment (Linux `IDENT_ADDR`).
pub const KSEG: u64 = 0xfffffc00_00000000;

/// The PE field (`EV7_PE_MASK`): 8 bits of PE plus the memory/I/O select.
pub const PE_MASK: u64 = 0x1ff;
/// Where the inverted PE sits in a physical address.
pub const PE_SHIFT: u32 = 35;
/// Where the inverted port number sits.
pub const PORT_SHIFT: u32 = 32;
/// The IO7's own "port" (its CSRs rather than a PCI hose).
pub const PORT7: u64 = 7;
/// A port's CSR window within its hose (`IO7_CSR_PHYS`).
pub const CSR_WINDOW: u64 = 0xff80_0000;
/// The port-7 CSRs within port 7's CSR window (`IO7_PORT7_CSRS_PHYS`).
pub const PORT7_CSRS: u64 = 0x30_0000;
/// One CSR per 64 bytes (`io7_csr`, aligned 64).
pub const CSR_STRIDE: u64 = 64;
/// The highest PE whose IO7 KSEG reaches, plus one (`MARVEL_MAX_PIDS`).
pub const MAX_KSEG_PE: u64 = 32;

/// Offsets from [`io7_csr_base`] (struct `io7_port7_csrs`).
pub mod off {
    use super::CSR_STRIDE;
    /// `PO7_LSI_CTL[0]`; 128 slots.
    pub const LSI_CTL: u64 = 1024 * CSR_STRIDE;
    pub const HLT_CTL: u64 = 1275 * CSR_STRIDE;
    pub const HPI_CTL: u64 = 1276 * CSR_STRIDE;
    pub const CRD_CTL: u64 = 1277 * CSR_STRIDE;
    pub const STV_CTL: u64 = 1278 * CSR_STRIDE;
    pub const HEI_CTL: u64 = 1279 * CSR_STRIDE;
    /// `PO7_MSI_CTL[0]`; 16 slots.
    pub const MSI_CTL: u64 = 1280 * CSR_STRIDE;
    /// The end of `PO7_MSI_CTL`: every interrupt control lies in
    /// `LSI_CTL..CTL_END`.
    pub const CTL_END: u64 = MSI_CTL + 16 * CSR_STRIDE;
}

/// The error summaries cleared at boot (write-1-to-clear; Linux
/// `io7_clear_errors`, which writes all ones to each).
pub mod err_off {
    use super::CSR_STRIDE;
    /// In each hose port's CSRs (`io7_ioport_csrs`, at [`super::io7_port_csr_base`]):
    /// `POx_ERR_SUM`, `POx_TLB_ERR`, `POx_SPL_COMPLT`, `POx_TRANS_SUM`.
    pub const PORT: [u64; 4] = [
        128 * CSR_STRIDE,
        131 * CSR_STRIDE,
        132 * CSR_STRIDE,
        133 * CSR_STRIDE,
    ];
    /// In the IO7's own CSRs (from [`super::io7_csr_base`]):
    /// `PO7_ERROR_SUM`, `PO7_UNCRR_SYM`, `PO7_CRRCT_SYM`.
    pub const PORT7: [u64; 3] = [128 * CSR_STRIDE, 132 * CSR_STRIDE, 133 * CSR_STRIDE];
}

/// The hose ports of an IO7 (`IO7_NUM_PORTS`).
pub const HOSE_PORTS: u64 = 4;

/// The error/event controls, in the order Linux retargets them.
pub const ERROR_CTLS: [u64; 5] = [
    off::HLT_CTL,
    off::HPI_CTL,
    off::CRD_CTL,
    off::STV_CTL,
    off::HEI_CTL,
];
/// `PO7_LSI_CTL` and `PO7_MSI_CTL`: interrupt enable.
pub const CTL_ENABLE: u64 = 1 << 24;
/// `PO7_LSI_CTL` and `PO7_MSI_CTL`: target PID, bits 22:14.
pub const CTL_TARGET_SHIFT: u32 = 14;
/// The error/event controls: target PID, bits 32:24.
pub const ERROR_TARGET_SHIFT: u32 = 24;
/// Width of a target PID field.
pub const TARGET_MASK: u64 = 0x1ff;
/// `PO7_MSI_CTL` slots.
pub const MSI_CTLS: u64 = 16;

/// The LSIs Linux disables ("the implemented irqs"): 0..=0x5f, 0x74, 0x75.
pub fn implemented_lsis() -> impl Iterator<Item = u64> {
    (0..0x60).chain([0x74, 0x75])
}

/// Physical address of hose `port` of the IO7 at `pe` (`IO7_HOSE`).
pub const fn io7_hose(pe: u64, port: u64) -> u64 {
    ((!pe & PE_MASK) << PE_SHIFT) | ((!port & 7) << PORT_SHIFT)
}

/// Physical base of the IO7's own CSRs (`IO7_PORT7_CSRS_PHYS(pe)`), what
/// Linux keeps as `io7->csrs`. Meaningful for `pe < 256`.
pub const fn io7_csr_base(pe: u64) -> u64 {
    io7_hose(pe, PORT7) | CSR_WINDOW | PORT7_CSRS
}

/// The KSEG address of physical `pa` under the 43-bit superpage
/// (`EV7_KERN_ADDR`), or None where KSEG cannot reach it: above 44 bits, or
/// bits 43:40 not all equal (see the module docs).
pub const fn kseg(pa: u64) -> Option<u64> {
    let top = (pa >> 40) & 0xf;
    if pa >> 44 != 0 || (top != 0 && top != 0xf) {
        return None;
    }
    Some(KSEG | (pa & ((1 << 41) - 1)))
}

/// Physical base of hose `port`'s CSRs (`IO7_CSRS_PHYS(pe, port)`).
pub const fn io7_port_csr_base(pe: u64, port: u64) -> u64 {
    io7_hose(pe, port) | CSR_WINDOW
}

/// KSEG base of the IO7's own CSRs, for `pe < 32`.
pub const fn io7_csr_base_kseg(pe: u64) -> Option<u64> {
    if pe >= MAX_KSEG_PE {
        return None;
    }
    kseg(io7_csr_base(pe))
}

/// The value that retargets an error/event control to `pid`, keeping its
/// other bits (`io7_redirect_irq`).
pub const fn retarget_error_ctl(old: u64, pid: u64) -> u64 {
    (old & !(TARGET_MASK << ERROR_TARGET_SHIFT)) | ((pid & TARGET_MASK) << ERROR_TARGET_SHIFT)
}

/// The value of a disabled LSI or MSI control aimed at `pid`
/// (`init_one_io7_lsi`, `init_one_io7_msi`).
pub const fn disabled_ctl(pid: u64) -> u64 {
    (pid & TARGET_MASK) << CTL_TARGET_SHIFT
}

/// Why an IO7 is not quiesced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io7Error {
    /// KSEG cannot reach the IO7 of this PE (32 and up).
    BeyondKseg(u64),
    /// The boot PID does not fit the 9-bit target fields.
    BadPid(u64),
}

impl fmt::Display for Io7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Io7Error::BeyondKseg(pe) => write!(
                f,
                "IO7 at PE {pe} is beyond KSEG's 43-bit superpage (PEs 0..31 only); left as the console set it"
            ),
            Io7Error::BadPid(pid) => write!(
                f,
                "boot PID {pid:#x} does not fit an IO7 target field (9 bits)"
            ),
        }
    }
}

/// Clears the errors the IO7 at `pe` has latched (the console's own
/// probing leaves some), as Linux's `io7_clear_errors` does: all ones to
/// each hose port's error summaries and then to the IO7's own. The
/// kernel does it before [`quiesce_io7`] aims the error sources at the
/// boot CPU, so that an error left from the console is not delivered to
/// it as a machine check. `write` is a volatile quadword store followed by
/// `mb`. Returns the number of writes (19), or an error before any.
pub fn clear_errors(pe: u64, mut write: impl FnMut(u64, u64)) -> Result<usize, Io7Error> {
    if pe >= MAX_KSEG_PE {
        return Err(Io7Error::BeyondKseg(pe));
    }
    let mut writes = 0;
    let mut clear = |pa: u64| {
        // Below 32, every PE's addresses are in KSEG's reach.
        if let Some(va) = kseg(pa) {
            write(va, u64::MAX);
            writes += 1;
        }
    };
    for port in 0..HOSE_PORTS {
        for off in err_off::PORT {
            clear(io7_port_csr_base(pe, port) + off);
        }
    }
    for off in err_off::PORT7 {
        clear(io7_csr_base(pe) + off);
    }
    Ok(writes)
}

/// Quiesces the IO7 at `pe` as Linux's `init_io7_irqs` does: the five
/// error/event controls retargeted to `boot_pid`, then every implemented
/// LSI and all 16 MSI controls disabled and aimed at `boot_pid` (see the
/// module docs for the order). Addresses are KSEG. `read` is a volatile
/// quadword load; `write` a volatile quadword store followed by `mb` (every
/// write is followed by a read back of the same CSR, as in Linux). Returns
/// the number of writes (119), or an error before any access.
pub fn quiesce_io7(
    pe: u64,
    boot_pid: u64,
    mut read: impl FnMut(u64) -> u64,
    mut write: impl FnMut(u64, u64),
) -> Result<usize, Io7Error> {
    let base = io7_csr_base_kseg(pe).ok_or(Io7Error::BeyondKseg(pe))?;
    if boot_pid > TARGET_MASK {
        return Err(Io7Error::BadPid(boot_pid));
    }
    let mut writes = 0;
    let mut store = |reg: u64, value: u64| {
        write(reg, value);
        writes += 1;
        reg
    };
    for ctl in ERROR_CTLS {
        let reg = base + ctl;
        let old = read(reg);
        let reg = store(reg, retarget_error_ctl(old, boot_pid));
        read(reg);
    }
    let lsis = implemented_lsis().map(|i| off::LSI_CTL + i * CSR_STRIDE);
    let msis = (0..MSI_CTLS).map(|i| off::MSI_CTL + i * CSR_STRIDE);
    for ctl in lsis.chain(msis) {
        let reg = store(base + ctl, disabled_ctl(boot_pid));
        read(reg);
    }
    Ok(writes)
}

// ---- Finding the IO7s ----------------------------------------------------

/// The HWRPB's `size` (bytes) and `frut_offset` (where the GCT starts),
/// Linux `arch/alpha/include/asm/hwrpb.h`.
pub mod hwrpb_off {
    pub const SIZE: u64 = 0x18;
    pub const FRUT_OFFSET: u64 = 0xd8;
}

/// GCT node layout (`gct6_node`, Linux `asm/gct.h`).
pub mod gct {
    /// Bytes per node.
    pub const NODE_SIZE: u64 = 0x80;
    /// `type` (u8) at +0, `subtype` (u8) at +1.
    pub const TYPE: u64 = 0x00;
    pub const ID: u64 = 0x18;
    pub const NEXT: u64 = 0x48;
    pub const CHILD: u64 = 0x58;
    /// `checksum` (u32) at +0x78, `magic` (u32) at +0x7c: one quadword.
    pub const CHECKSUM_MAGIC: u64 = 0x78;
    /// "GLXY" as a little-endian u32.
    pub const MAGIC: u32 = 0x5958_4c47;
    pub const TYPE_HOSE: u8 = 0x0e;
    pub const SUBTYPE_IO_PORT_MODULE: u8 = 0x2c;
    /// Most nodes visited (a GS1280's tree has some hundreds).
    pub const MAX_NODES: u32 = 4096;
    /// Most siblings and children pending at once.
    pub const MAX_PENDING: usize = 256;
}

/// How many bytes from `hwrpb + frut` a GCT walk may read, given the
/// HWRPB's `frut_offset`; None: no tree (`frut_offset` 0, as qemu-palcode
/// leaves it).
///
/// Not `size - frut`: DEC's console builds the tree in its own heap, a
/// block of its own (32 KiB in the reference console), and sets
/// `frut_offset` to its distance from the HWRPB (`build_fru_table` in
/// `galaxy_config_tree.c`: `gct_base - 0x2000`, the HWRPB's physical
/// address), while `size` sums only the HWRPB's own tables (`hwrpb.c`:
/// the base, the hint block, the slots, the CTB, CRB and memory
/// descriptors, then the configuration and DSRDB blocks). So on a real
/// Marvel the tree lies past `size`, and Linux bounds its walk by nothing
/// but the nodes' magic (`gct6_find_nodes`). Here the bound is the most
/// nodes a walk visits ([`gct::MAX_NODES`], whole nodes each): the walk
/// only follows links out of nodes that carry the magic.
pub fn gct_window(frut: u64) -> Option<u64> {
    (frut != 0).then_some(u64::from(gct::MAX_NODES) * gct::NODE_SIZE)
}

/// Why a GCT walk stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GctError {
    /// A node without the "GLXY" magic (Linux: "GCT invalid").
    BadMagic { offset: u64, magic: u32 },
    /// A node handle that is misaligned or whose node does not fit in the
    /// bytes given.
    OutOfBounds { offset: u64 },
    /// More than [`gct::MAX_NODES`] nodes: a loop, or not a GCT.
    TooManyNodes,
    /// More than [`gct::MAX_PENDING`] nodes pending at once.
    TooWide,
}

impl fmt::Display for GctError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GctError::BadMagic { offset, magic } => write!(
                f,
                "GCT node at +{offset:#x} has magic {magic:#010x}, not \"GLXY\""
            ),
            GctError::OutOfBounds { offset } => write!(
                f,
                "GCT node handle +{offset:#x} is misaligned or past the table"
            ),
            GctError::TooManyNodes => {
                write!(f, "GCT has more than {} nodes (a loop?)", gct::MAX_NODES)
            }
            GctError::TooWide => write!(
                f,
                "GCT has more than {} nodes pending at once",
                gct::MAX_PENDING
            ),
        }
    }
}

/// Walks the GCT as Linux's `gct6_find_nodes` does (a node, then its
/// siblings and their subtrees, then its children) and calls `found(pe)`
/// for each IO7 node (`marvel_io7_present`), in that order. `read` takes a
/// byte offset from the tree's start (`hwrpb + frut_offset`) and returns
/// the quadword there; it is only asked for offsets of whole nodes within
/// `max_len` bytes. Returns the number of nodes visited. On an error the
/// IO7s already reported came from valid nodes; the rest are unknown.
pub fn gct_io7_pes(
    read: impl Fn(u64) -> u64,
    max_len: u64,
    mut found: impl FnMut(u64),
) -> Result<u32, GctError> {
    let mut pending = [0u64; gct::MAX_PENDING];
    let mut n = 1; // pending[0] = 0, the root
    let mut visited = 0;
    while n > 0 {
        n -= 1;
        let at = pending[n];
        if at % 8 != 0
            || at
                .checked_add(gct::NODE_SIZE)
                .is_none_or(|end| end > max_len)
        {
            return Err(GctError::OutOfBounds { offset: at });
        }
        if visited == gct::MAX_NODES {
            return Err(GctError::TooManyNodes);
        }
        visited += 1;
        let magic = (read(at + gct::CHECKSUM_MAGIC) >> 32) as u32;
        if magic != gct::MAGIC {
            return Err(GctError::BadMagic { offset: at, magic });
        }
        let head = read(at + gct::TYPE);
        if head as u8 == gct::TYPE_HOSE && (head >> 8) as u8 == gct::SUBTYPE_IO_PORT_MODULE {
            found((read(at + gct::ID) >> 8) & 0xff);
        }
        // Children wait below the siblings, which are popped first.
        for link in [gct::CHILD, gct::NEXT] {
            let to = read(at + link);
            if to != 0 {
                *pending.get_mut(n).ok_or(GctError::TooWide)? = to;
                n += 1;
            }
        }
    }
    Ok(visited)
}

/// Why an `io7=` list is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError {
    /// Not a number (decimal or 0x-hex) at this byte position.
    NotANumber(usize),
    /// A PE that KSEG cannot reach (32 and up).
    BeyondKseg(u64),
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::NotANumber(at) => write!(f, "io7=: not a PE number at character {at}"),
            ListError::BeyondKseg(pe) => write!(f, "io7=: PE {pe} is beyond KSEG's reach (0..31)"),
        }
    }
}

/// Parses an `io7=` value, PEs separated by commas (decimal or 0x-hex;
/// Linux `marvel_specify_io7`), into a mask (bit n = an IO7 at PE n).
pub fn parse_io7_list(s: &str) -> Result<u64, ListError> {
    let mut mask = 0;
    let mut at = 0;
    for item in s.split(',') {
        let (digits, radix) = match item.strip_prefix("0x").or_else(|| item.strip_prefix("0X")) {
            Some(hex) => (hex, 16),
            None => (item, 10),
        };
        let pe = u64::from_str_radix(digits, radix).map_err(|_| ListError::NotANumber(at))?;
        if pe >= MAX_KSEG_PE {
            return Err(ListError::BeyondKseg(pe));
        }
        mask |= 1 << pe;
        at += item.len() + 1;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Access {
        Read(u64),
        Write(u64, u64),
    }

    /// A recording fake IO7: CSR values by address (unwritten ones read as
    /// `fill`), and every access in order.
    struct FakeIo7 {
        csrs: RefCell<BTreeMap<u64, u64>>,
        log: RefCell<Vec<Access>>,
        fill: u64,
    }

    impl FakeIo7 {
        fn new(fill: u64) -> Self {
            FakeIo7 {
                csrs: RefCell::new(BTreeMap::new()),
                log: RefCell::new(Vec::new()),
                fill,
            }
        }
        fn quiesce(&self, pe: u64, pid: u64) -> Result<usize, Io7Error> {
            quiesce_io7(
                pe,
                pid,
                |a| {
                    self.log.borrow_mut().push(Access::Read(a));
                    *self.csrs.borrow().get(&a).unwrap_or(&self.fill)
                },
                |a, v| {
                    self.log.borrow_mut().push(Access::Write(a, v));
                    self.csrs.borrow_mut().insert(a, v);
                },
            )
        }
        fn writes(&self) -> Vec<(u64, u64)> {
            self.log
                .borrow()
                .iter()
                .filter_map(|a| {
                    if let Access::Write(a, v) = a {
                        Some((*a, *v))
                    } else {
                        None
                    }
                })
                .collect()
        }
    }

    /// The physical address behind a KSEG address of I/O space.
    fn phys_of(va: u64) -> u64 {
        let low = va & ((1 << 41) - 1);
        if low & (1 << 40) != 0 {
            low | (7 << 41)
        } else {
            low
        }
    }

    #[test]
    fn layout_by_hand() {
        // PE 0: ~0 & 0x1ff = 0x1ff, << 35 = 0xff8_0000_0000; port 7 inverts
        // to 0; + 0xff80_0000 + 0x30_0000.
        assert_eq!(io7_csr_base(0), 0xff8_ffb0_0000);
        // PE 3: ~3 & 0x1ff = 0x1fc, << 35 = 0xfe0_0000_0000.
        assert_eq!(io7_csr_base(3), 0xfe0_ffb0_0000);
        // The offsets Linux's comments state.
        assert_eq!(off::LSI_CTL, 0x1_0000);
        assert_eq!(
            (off::HLT_CTL, off::HPI_CTL, off::MSI_CTL),
            (0x1_3ec0, 0x1_3f00, 0x1_4000)
        );
        // Hoses 0..3 of PE 0 at 0xff8_0000_0000 | (~port & 7) << 32.
        assert_eq!(io7_hose(0, 0), 0xfff_0000_0000);
        assert_eq!(io7_hose(0, 3), 0xffc_0000_0000);
    }

    #[test]
    fn kseg_follows_the_43_bit_rule() {
        assert_eq!(kseg(0x1000), Some(0xfffffc00_00001000), "memory");
        assert_eq!(
            kseg(0xff8_ffb0_0000),
            Some(0xfffffdf8_ffb0_0000),
            "PE 0's IO7"
        );
        assert_eq!(io7_csr_base_kseg(31), kseg(io7_csr_base(31)));
        assert!(io7_csr_base_kseg(31).is_some());
        // PE 32: ~32 & 0x1ff = 0x1df, bit 40 (its bit 5) clear under set 43:41.
        assert_eq!(kseg(io7_csr_base(32)), None);
        assert_eq!(io7_csr_base_kseg(32), None);
        assert_eq!(kseg(1 << 41), None, "bits 43:40 = 0010");
        assert_eq!(kseg(1 << 44), None, "beyond 44 bits");
    }

    #[test]
    fn quiesce_writes_linuxs_sequence() {
        let io7 = FakeIo7::new(0);
        assert_eq!(io7.quiesce(0, 4), Ok(5 + 98 + 16));
        let w = io7.writes();
        assert_eq!(w.len(), 119);
        let base = io7_csr_base_kseg(0).unwrap();
        // Error controls first, in Linux's order.
        let first: Vec<u64> = w[..5].iter().map(|(a, _)| a - base).collect();
        assert_eq!(first, [0x1_3ec0, 0x1_3f00, 0x1_3f40, 0x1_3f80, 0x1_3fc0]);
        // Then LSIs 0..=0x5f, 0x74, 0x75, then the 16 MSIs.
        let lsis: Vec<u64> = w[5..103]
            .iter()
            .map(|(a, _)| (a - base - 0x1_0000) / 64)
            .collect();
        let want: Vec<u64> = (0..0x60).chain([0x74, 0x75]).collect();
        assert_eq!(lsis, want);
        let msis: Vec<u64> = w[103..]
            .iter()
            .map(|(a, _)| (a - base - 0x1_4000) / 64)
            .collect();
        assert_eq!(msis, (0..16).collect::<Vec<u64>>());
        for (a, v) in &w[5..] {
            assert_eq!(v & CTL_ENABLE, 0, "enable set at {a:#x}");
            assert_eq!(v >> 14, 4, "target at {a:#x} is not PID 4 alone");
        }
    }

    #[test]
    fn every_write_is_read_back_and_error_controls_are_read_first() {
        let io7 = FakeIo7::new(0);
        io7.quiesce(2, 0).unwrap();
        let log = io7.log.borrow();
        let mut i = 0;
        let mut retargets = 0;
        while i < log.len() {
            match log[i] {
                Access::Read(a) => {
                    // A read before a write: the error controls' read-modify-write.
                    assert!(
                        matches!(log[i + 1], Access::Write(b, _) if b == a),
                        "read of {a:#x} not followed by its write"
                    );
                    retargets += 1;
                    i += 1;
                }
                Access::Write(a, _) => {
                    assert_eq!(log[i + 1], Access::Read(a), "write to {a:#x} not read back");
                    i += 2;
                }
            }
        }
        assert_eq!(retargets, 5);
    }

    #[test]
    fn error_controls_keep_their_other_bits() {
        // The console left every error control enabled (say bit 0 and bit
        // 40) and aimed at PID 0x1ff.
        let io7 = FakeIo7::new(1 | (1 << 40) | (0x1ff << 24));
        io7.quiesce(1, 6).unwrap();
        for (_, v) in &io7.writes()[..5] {
            assert_eq!(*v, 1 | (1 << 40) | (6 << 24));
        }
        // LSI/MSI controls are written whole, whatever they held.
        assert!(io7.writes()[5..].iter().all(|(_, v)| *v == 6 << 14));
    }

    #[test]
    fn addresses_are_distinct_and_inside_that_io7() {
        for pe in [0, 3, 31] {
            let io7 = FakeIo7::new(0);
            io7.quiesce(pe, 0).unwrap();
            let addrs: BTreeSet<u64> = io7.writes().iter().map(|(a, _)| *a).collect();
            assert_eq!(addrs.len(), 119, "PE {pe}: an address written twice");
            let base = io7_csr_base_kseg(pe).unwrap();
            for a in &addrs {
                assert!(
                    (base + off::LSI_CTL..base + off::CTL_END).contains(a),
                    "PE {pe}: {a:#x} outside"
                );
                assert_eq!(a % 64, 0);
                let pa = phys_of(*a);
                assert_eq!(
                    (pa >> 35) & 0x1ff,
                    !pe & 0x1ff,
                    "PE {pe}: {a:#x} decodes to another PE"
                );
                assert_eq!((pa >> 32) & 7, 0, "not port 7");
            }
        }
        let pe0: BTreeSet<u64> = {
            let io7 = FakeIo7::new(0);
            io7.quiesce(0, 0).unwrap();
            io7.writes().iter().map(|(a, _)| *a).collect()
        };
        let pe3: BTreeSet<u64> = {
            let io7 = FakeIo7::new(0);
            io7.quiesce(3, 0).unwrap();
            io7.writes().iter().map(|(a, _)| *a).collect()
        };
        assert!(pe0.is_disjoint(&pe3));
    }

    #[test]
    fn hand_computed_lsi_addresses() {
        // PE 0, LSI 0x74: 0xff8_0000_0000 | 0xffb0_0000 | 0x1_0000 + 0x74 * 64
        // (= 0x1d00) = phys 0xff8_ffb1_1d00; KSEG keeps bits 40:0 =
        // 0x1f8_ffb1_1d00 under 0xfffffc00_00000000.
        let io7 = FakeIo7::new(0);
        io7.quiesce(0, 2).unwrap();
        assert!(io7.writes().contains(&(0xfffffdf8_ffb1_1d00, 2 << 14)));
        // PE 3, LSI 5: 0xfe0_0000_0000 | 0xffb0_0000 | 0x1_0140 = phys
        // 0xfe0_ffb1_0140; bits 40:0 = 0x1e0_ffb1_0140.
        let io7 = FakeIo7::new(0);
        io7.quiesce(3, 2).unwrap();
        assert_eq!(io7.writes()[5 + 5], (0xfffffde0_ffb1_0140, 2 << 14));
        assert_eq!(phys_of(0xfffffde0_ffb1_0140), 0xfe0_ffb1_0140);
    }

    #[test]
    fn unreachable_pe_or_bad_pid_touches_nothing() {
        let io7 = FakeIo7::new(0);
        assert_eq!(io7.quiesce(32, 0), Err(Io7Error::BeyondKseg(32)));
        assert_eq!(io7.quiesce(0, 0x200), Err(Io7Error::BadPid(0x200)));
        assert!(io7.log.borrow().is_empty());
        let text = std::format!("{}", Io7Error::BeyondKseg(40));
        assert!(text.contains("PE 40") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn clearing_errors_writes_ones_to_the_summaries_linux_clears() {
        let mut w = Vec::new();
        assert_eq!(clear_errors(0, |a, v| w.push((a, v))), Ok(19));
        assert!(w.iter().all(|(_, v)| *v == u64::MAX));
        // PE 0, port 0: hose 0xfff_0000_0000 (PE and port inverted), CSR
        // window 0xff80_0000, POx_ERR_SUM +0x2000 (the 129th CSR of 64
        // bytes): phys 0xfff_ff80_2000, KSEG bits 40:0 = 0x1ff_ff80_2000.
        assert_eq!(w[0].0, 0xfffffdff_ff80_2000);
        // POx_TLB_ERR, POx_SPL_COMPLT, POx_TRANS_SUM: +0x20c0, +0x2100, +0x2140.
        assert_eq!(
            w[1..4].iter().map(|(a, _)| a - w[0].0).collect::<Vec<_>>(),
            [0xc0, 0x100, 0x140]
        );
        // Port 3: inverted port 4 in bits 34:32.
        assert_eq!(w[12].0, 0xfffffdfc_ff80_2000);
        // PO7_ERROR_SUM at the port-7 CSRs + 0x2000: 0xff8_ffb0_2000, then
        // PO7_UNCRR_SYM +0x2100 and PO7_CRRCT_SYM +0x2140 (Linux's comments:
        // 0x30.2000 and 0x30.2100).
        assert_eq!(
            w[16..].iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            [
                0xfffffdf8_ffb0_2000,
                0xfffffdf8_ffb0_2100,
                0xfffffdf8_ffb0_2140
            ]
        );
        // The LSI controls start at 0x31.0000 of the same base: the error
        // summaries lie below every interrupt control quiesce_io7 writes.
        assert!(err_off::PORT7.iter().all(|o| *o < off::LSI_CTL));
        assert_eq!(
            clear_errors(32, |_, _| panic!("no write")),
            Err(Io7Error::BeyondKseg(32))
        );
    }

    // ---- GCT ----

    /// A synthetic GCT: nodes of (type, subtype, id, next, child), node i at
    /// offset 0x80 * i.
    fn gct(nodes: &[(u8, u8, u64, u64, u64)]) -> Vec<u64> {
        let mut m = std::vec![0u64; nodes.len() * 16];
        for (i, (ty, sub, id, next, child)) in nodes.iter().enumerate() {
            let q = i * 16;
            m[q] = u64::from(*ty) | u64::from(*sub) << 8 | 0x80 << 16;
            m[q + 3] = *id;
            m[q + 9] = next * 0x80;
            m[q + 11] = child * 0x80;
            m[q + 15] = u64::from(gct::MAGIC) << 32 | 0x1234;
        }
        m
    }

    fn walk(mem: &[u64], max_len: u64) -> (Result<u32, GctError>, Vec<u64>) {
        let mut pes = Vec::new();
        let reads = RefCell::new(0u64);
        let r = gct_io7_pes(
            |off| {
                assert!(off % 8 == 0 && off + 8 <= max_len, "read at {off:#x}");
                *reads.borrow_mut() += 1;
                mem[(off / 8) as usize]
            },
            max_len,
            |pe| pes.push(pe),
        );
        (r, pes)
    }

    const HOSE: u8 = gct::TYPE_HOSE;
    const IOP: u8 = gct::SUBTYPE_IO_PORT_MODULE;

    #[test]
    fn gct_walk_finds_io7s_in_linuxs_order() {
        // 0 root -> child 1 (box A) -> next 2 (box B)
        // box A: children 3 (CPU), 4 (IO7 PE 0), 5 (IO7 PE 2)
        // box B: children 6 (IO7 PE 4), 7 (a hose of another subtype)
        let nodes = [
            (1, 0, 0, 0, 1),
            (2, 0, 0, 2, 3),
            (2, 0, 0, 0, 6),
            (0x0b, 0, 0, 4, 0),
            (HOSE, IOP, 0x0000, 5, 0),
            (HOSE, IOP, 0x0207, 0, 0),
            (HOSE, IOP, 0x0400, 7, 0),
            (HOSE, 0x2d, 0x0600, 0, 0),
        ];
        let mem = gct(&nodes);
        let (r, pes) = walk(&mem, mem.len() as u64 * 8);
        assert_eq!(r, Ok(8));
        // gct6_find_nodes: node, then its next chain (with subtrees), then
        // its child: box B's subtree (PE 4) comes before box A's children.
        assert_eq!(pes, [4, 0, 2]);
    }

    #[test]
    fn gct_walk_stops_on_damage() {
        let nodes = [
            (1, 0, 0, 0, 1),
            (HOSE, IOP, 0x100, 2, 0),
            (HOSE, IOP, 0x300, 0, 0),
        ];
        let mut mem = gct(&nodes);
        mem[2 * 16 + 15] = 0;
        let (r, pes) = walk(&mem, mem.len() as u64 * 8);
        assert_eq!(
            r,
            Err(GctError::BadMagic {
                offset: 0x100,
                magic: 0
            })
        );
        assert_eq!(pes, [1], "the valid node before the damage is reported");

        // A loop: node 1's next is itself.
        let mem = gct(&[(1, 0, 0, 0, 1), (HOSE, IOP, 0x100, 1, 0)]);
        let (r, pes) = walk(&mem, mem.len() as u64 * 8);
        assert_eq!(r, Err(GctError::TooManyNodes));
        assert_eq!(pes.len() as u32, gct::MAX_NODES - 1);

        // A handle past the bytes given, and a misaligned one.
        let mem = gct(&[(1, 0, 0, 0, 1), (HOSE, IOP, 0x100, 9, 0)]);
        assert_eq!(
            walk(&mem, mem.len() as u64 * 8).0,
            Err(GctError::OutOfBounds { offset: 9 * 0x80 })
        );
        let mut mem = gct(&[(1, 0, 0, 0, 1)]);
        mem[11] = 0x84;
        assert_eq!(
            walk(&mem, 0x200).0,
            Err(GctError::OutOfBounds { offset: 0x84 })
        );
        // No room even for the root.
        assert_eq!(walk(&mem, 0x40).0, Err(GctError::OutOfBounds { offset: 0 }));
        let text = std::format!(
            "{}",
            GctError::BadMagic {
                offset: 0x100,
                magic: 0
            }
        );
        assert!(text.contains("GLXY") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn gct_walk_bounds_pending_nodes() {
        // A chain of 300 siblings, each with a child: the children pile up.
        let mut nodes = std::vec![(1u8, 0u8, 0u64, 0u64, 1u64)];
        for i in 0..300u64 {
            let me = 1 + 2 * i;
            nodes.push((3, 0, 0, if i < 299 { me + 2 } else { 0 }, me + 1));
            nodes.push((HOSE, IOP, (i % 32) << 8, 0, 0));
        }
        let mem = gct(&nodes);
        assert_eq!(walk(&mem, mem.len() as u64 * 8).0, Err(GctError::TooWide));
    }

    /// DEC's console builds the GCT in its own heap and points the
    /// HWRPB's `frut_offset` at it (`build_fru_table`: `gct_base - 0x2000`,
    /// the HWRPB's physical address), while the HWRPB's `size` counts only
    /// the HWRPB's own tables (`hwrpb.c`). So the tree lies past `size`.
    #[test]
    fn the_gct_lies_outside_the_hwrpbs_size() {
        // An HWRPB of 0x1000 bytes (its `size`); the tree 0x3e000 bytes
        // past its end. (The rule before, a tree only below `size`, found
        // none here.)
        let (size, frut) = (0x1000u64, 0x40000u64);
        assert!(frut > size);
        let window = gct_window(frut).expect("a tree past the HWRPB's size is a tree");
        let nodes = [
            (1, 0, 0, 0, 1),
            (HOSE, IOP, 0x0000, 2, 0),
            (HOSE, IOP, 0x0200, 0, 0),
        ];
        let mem = gct(&nodes);
        assert!(window >= mem.len() as u64 * 8);
        // The walk reads only the nodes the links name, well inside it.
        let mut pes = Vec::new();
        let r = gct_io7_pes(|off| mem[(off / 8) as usize], window, |pe| pes.push(pe));
        assert_eq!((r, pes), (Ok(3), std::vec![0, 2]));
        // No tree: qemu-palcode leaves frut_offset 0.
        assert_eq!(gct_window(0), None);
        // The bound holds every node a walk may visit.
        assert_eq!(
            gct_window(frut),
            Some(u64::from(gct::MAX_NODES) * gct::NODE_SIZE)
        );
    }

    #[test]
    fn io7_list() {
        assert_eq!(parse_io7_list("0,2,0x1f"), Ok(1 | 4 | 1 << 31));
        assert_eq!(parse_io7_list("4"), Ok(1 << 4));
        assert_eq!(parse_io7_list("0,,2"), Err(ListError::NotANumber(2)));
        assert_eq!(parse_io7_list("1,x"), Err(ListError::NotANumber(2)));
        assert_eq!(parse_io7_list("32"), Err(ListError::BeyondKseg(32)));
    }
}
