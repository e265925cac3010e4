//! The raw boot images an SRM console loads, as data: the image header the
//! stage-0 loader carries, the disk boot block, and where the loader may
//! copy the kernel (docs/hardware.md §1a-§1e, §2.4, §7).
//!
//! SRM cannot load an ELF. It places one raw image at virtual
//! [`LOAD_VA`] on its own page tables (the physical pages behind it need not
//! be contiguous) and jumps to its first byte: from the network (BOOTP) the
//! whole file, from a disk the blocks a boot block at LBN 0 names. The image
//! is the loader (linked at `LOAD_VA`) followed by the kernel's loadable
//! bytes, 512-byte aligned; the header in the loader's first bytes says
//! where the kernel goes. `cargo xtask image` writes it, `--check` and the
//! loader read it, and all three use this module.

use core::fmt;

/// The virtual address SRM loads a bootstrap image at.
pub const LOAD_VA: u64 = 0x2000_0000;
/// The HWRPB's virtual address on the console's page tables.
pub const HWRPB_VA: u64 = 0x1000_0000;
/// The VPTB a real SRM console uses (L1 slot 1 maps the L1 table itself).
pub const SRM_VPTB: u64 = 0x2_0000_0000;
/// Disk block size.
pub const BLOCK: u64 = 512;
/// Page size (the loader and kernel refuse anything else).
pub const PAGE: u64 = 8192;
/// Where the header sits in the loader: after one branch instruction and a
/// pad, so the image's first byte is code, as SRM requires.
pub const HEADER_OFFSET: usize = 8;
/// "ASMPBOOT", little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"ASMPBOOT");
pub const VERSION: u64 = 1;
/// KSEG: physical address + this = a kernel virtual address.
pub const KSEG: u64 = 0xfffffc00_0000_0000;
/// Quadwords in the header.
pub const HEADER_QUADS: usize = 9;
/// Linux's `KERNEL_START_PHYS` floor, "required: Wildfire/Titan/Marvel"
/// (docs/hardware.md §1e): the kernel is linked at or above it.
pub const MIN_KERNEL_PHYS: u64 = 0x100_0000;
/// The boot parameter page (command line, initrd) lies this far below the
/// kernel's first byte, as QEMU and Linux's loaders place it.
pub const ZERO_PAGE_BELOW: u64 = 0x6000;
/// Longest command line the parameter page holds (with its NUL).
pub const CMDLINE_MAX: u64 = 256;
/// Where in the parameter page the loader leaves the PCB the kernel is
/// entered on (128-byte aligned, after the initrd words at 0x100/0x108).
pub const ZERO_PAGE_PCB: u64 = 0x200;
/// Where in the parameter page the loader names the console's own PCB: a
/// tag quadword, then the PCB's physical address (see [`ConsolePcb`]).
pub const ZERO_PAGE_CONSOLE_PCB: u64 = 0x180;
// The two words sit between the initrd words (0x100, 0x108) and the
// kernel's PCB, inside the bytes the loader copies.
const _: () =
    assert!(ZERO_PAGE_CONSOLE_PCB >= 0x110 && ZERO_PAGE_CONSOLE_PCB + 16 <= ZERO_PAGE_PCB);

/// The console's own PCB, as the loader hands it to the kernel.
///
/// A console enters a bootstrap on the boot CPU's per-CPU slot HWPCB (DEC's
/// console sets the slot's halt PCBB to the slot itself; docs/hardware.md
/// §5). The loader must leave it for its own PCB to SWPPAL, and the kernel
/// runs on a copy of that one; before the final halt the kernel switches
/// back to the console's, as Linux's `srm_paging_stop` does with the PCB
/// it found at entry. QEMU's loader leaves these words zero, so a kernel
/// booted straight from QEMU finds no tag and stays on the PCB it entered
/// on, which is then qemu-palcode's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsolePcb(pub u64);

impl ConsolePcb {
    /// The tag before the address ("CONSPCB" and a NUL).
    pub const TAG: u64 = u64::from_le_bytes(*b"CONSPCB\0");

    /// The two quadwords the loader writes at [`ZERO_PAGE_CONSOLE_PCB`].
    pub fn words(self) -> [u64; 2] {
        [Self::TAG, self.0]
    }

    /// The PCB the words name: None without the tag, or when the address
    /// cannot be a PCB (zero, or not quadword aligned; slot HWPCBs need
    /// not be 128-byte aligned: qemu-palcode's sit at 0x40 past a 128-byte
    /// boundary, and its `swpctx` takes them).
    pub fn from_words(words: [u64; 2]) -> Option<Self> {
        (words[0] == Self::TAG && words[1] != 0 && words[1].is_multiple_of(8))
            .then_some(Self(words[1]))
    }
}

/// The loader's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes of the whole image (loader, padding and payload), a multiple
    /// of [`BLOCK`].
    pub image_len: u64,
    /// Byte offset of the kernel payload in the image ([`BLOCK`]-aligned).
    pub payload_offset: u64,
    /// Bytes of kernel payload (its loadable segment's file bytes).
    pub payload_len: u64,
    /// Physical address of the payload's first byte.
    pub load_phys: u64,
    /// The kernel's entry (a KSEG virtual address).
    pub entry: u64,
    /// Bytes the kernel occupies once running (payload plus bss).
    pub mem_len: u64,
    /// [`Header::sum_of`]: FNV-1a over the fields above and the payload,
    /// so a changed load address or entry is caught like a changed byte.
    pub sum: u64,
}

impl Header {
    pub fn to_quads(&self) -> [u64; HEADER_QUADS] {
        [
            MAGIC,
            VERSION,
            self.image_len,
            self.payload_offset,
            self.payload_len,
            self.load_phys,
            self.entry,
            self.mem_len,
            self.sum,
        ]
    }

    /// Reads a header from its quadwords (`q(i)` is quadword `i`).
    pub fn from_quads(q: impl Fn(usize) -> u64) -> Result<Header, ImageError> {
        if q(0) != MAGIC {
            return Err(ImageError::NoHeader);
        }
        if q(1) != VERSION {
            return Err(ImageError::Version(q(1)));
        }
        let h = Header {
            image_len: q(2),
            payload_offset: q(3),
            payload_len: q(4),
            load_phys: q(5),
            entry: q(6),
            mem_len: q(7),
            sum: q(8),
        };
        h.validate()?;
        Ok(h)
    }

    /// The checksum of this header's fields (all but the sum itself) and
    /// `payload`.
    pub fn sum_of(&self, payload: &[u8]) -> u64 {
        let mut f = Fnv::new();
        for q in [
            self.image_len,
            self.payload_offset,
            self.payload_len,
            self.load_phys,
            self.entry,
            self.mem_len,
        ] {
            f.update(&q.to_le_bytes());
        }
        f.update(payload);
        f.0
    }

    /// Internal consistency (not whether the payload matches its sum).
    pub fn validate(&self) -> Result<(), ImageError> {
        let payload_end = self
            .payload_offset
            .checked_add(self.payload_len)
            .ok_or(ImageError::Layout("payload end overflows"))?;
        if self.payload_offset == 0 || !self.payload_offset.is_multiple_of(BLOCK) {
            return Err(ImageError::Layout(
                "payload offset is not a nonzero multiple of 512",
            ));
        }
        if !self.image_len.is_multiple_of(BLOCK) || payload_end > self.image_len {
            return Err(ImageError::Layout(
                "payload does not fit in the image length",
            ));
        }
        if !self.load_phys.is_multiple_of(PAGE) || self.load_phys < ZERO_PAGE_BELOW {
            return Err(ImageError::LoadAddress(self.load_phys));
        }
        if self.mem_len < self.payload_len {
            return Err(ImageError::Layout("memory size is below the payload size"));
        }
        // The entry is a KSEG address inside the payload's code.
        let entry_phys = self.entry.wrapping_sub(KSEG);
        if self.entry & KSEG != KSEG
            || entry_phys < self.load_phys
            || entry_phys >= self.load_phys + self.payload_len
        {
            return Err(ImageError::Entry {
                entry: self.entry,
                load: self.load_phys,
            });
        }
        Ok(())
    }

    /// The physical range the kernel needs: its parameter page below it
    /// through the end of its bss.
    pub fn needed(&self) -> (u64, u64) {
        (
            self.load_phys - ZERO_PAGE_BELOW,
            round_up(self.load_phys + self.mem_len, PAGE),
        )
    }
}

/// Why an image (or its placement) is refused: one line each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    NoHeader,
    Version(u64),
    Layout(&'static str),
    LoadAddress(u64),
    /// The entry is not a KSEG address inside the payload.
    Entry {
        entry: u64,
        load: u64,
    },
    /// The header's and payload's sum is not the one recorded.
    Sum {
        stored: u64,
        computed: u64,
    },
    /// Part of the kernel's range is not in a usable memory cluster.
    NotUsable {
        start: u64,
        end: u64,
    },
    /// No free physical range for the staging copy.
    NoStaging {
        bytes: u64,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::NoHeader => write!(
                f,
                "no alphasmp loader header (magic \"ASMPBOOT\" at byte {HEADER_OFFSET})"
            ),
            ImageError::Version(v) => write!(f, "loader header version {v}, expected {VERSION}"),
            ImageError::Layout(why) => write!(f, "loader header: {why}"),
            ImageError::LoadAddress(a) => write!(
                f,
                "kernel load address {a:#x} is not page-aligned or lies below the parameter page"
            ),
            ImageError::Entry { entry, load } => write!(
                f,
                "kernel entry {entry:#x} is not a KSEG address inside the payload loaded at physical {load:#x}"
            ),
            ImageError::Sum { stored, computed } => {
                write!(
                    f,
                    "image checksum is {computed:#018x}, the header says {stored:#018x} (header or payload changed, or image truncated)"
                )
            }
            ImageError::NotUsable { start, end } => {
                write!(
                    f,
                    "kernel range {start:#x}..{end:#x} is not all in usable memory (console-reserved or absent); relink the kernel elsewhere"
                )
            }
            ImageError::NoStaging { bytes } => write!(
                f,
                "no free memory for a {bytes}-byte staging copy away from the image and the kernel"
            ),
        }
    }
}

pub const fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

/// FNV-1a, 64-bit: the payload's sum (cheap enough to run in the loader
/// before it trusts the payload).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Fnv {
    pub const fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut f = Fnv::new();
    f.update(bytes);
    f.0
}

/// The disk boot block at LBN 0 (docs/hardware.md §1c): bytes 480..512 are
/// the bootstrap's block count, its starting LBN, flags (0) and the sum of
/// quadwords 0..63.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootBlock {
    pub count: u64,
    pub start_lbn: u64,
    pub flags: u64,
    pub checksum: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootBlockError {
    Checksum { stored: u64, computed: u64 },
    Flags(u64),
    Empty,
}

impl fmt::Display for BootBlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootBlockError::Checksum { stored, computed } => {
                write!(
                    f,
                    "boot block checksum is {stored:#018x}, the sum of quadwords 0-62 is {computed:#018x}"
                )
            }
            BootBlockError::Flags(v) => write!(f, "boot block flags are {v:#x}, must be 0"),
            BootBlockError::Empty => write!(
                f,
                "boot block names no bootstrap (block count or start LBN is 0)"
            ),
        }
    }
}

fn quad(block: &[u8; 512], i: usize) -> u64 {
    u64::from_le_bytes(block[8 * i..8 * i + 8].try_into().unwrap())
}

/// The sum of quadwords 0..63 of a boot block.
pub fn boot_block_sum(block: &[u8; 512]) -> u64 {
    (0..63).fold(0u64, |s, i| s.wrapping_add(quad(block, i)))
}

/// A boot block naming `count` blocks from `start_lbn`, with `label` at
/// byte 0 (identification only; SRM ignores bytes 0..480).
pub fn make_boot_block(count: u64, start_lbn: u64, label: &[u8]) -> [u8; 512] {
    let mut b = [0u8; 512];
    let n = label.len().min(64);
    b[..n].copy_from_slice(&label[..n]);
    b[480..488].copy_from_slice(&count.to_le_bytes());
    b[488..496].copy_from_slice(&start_lbn.to_le_bytes());
    let sum = boot_block_sum(&b);
    b[504..512].copy_from_slice(&sum.to_le_bytes());
    b
}

/// What SRM checks before it reads the bootstrap.
pub fn check_boot_block(block: &[u8; 512]) -> Result<BootBlock, BootBlockError> {
    let bb = BootBlock {
        count: quad(block, 60),
        start_lbn: quad(block, 61),
        flags: quad(block, 62),
        checksum: quad(block, 63),
    };
    let computed = boot_block_sum(block);
    if computed != bb.checksum {
        return Err(BootBlockError::Checksum {
            stored: bb.checksum,
            computed,
        });
    }
    if bb.flags != 0 {
        return Err(BootBlockError::Flags(bb.flags));
    }
    if bb.count == 0 || bb.start_lbn == 0 {
        return Err(BootBlockError::Empty);
    }
    Ok(bb)
}

/// A physical memory cluster as placement sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

/// Checks that the kernel's whole range (parameter page through bss) lies
/// in usable memory, and chooses where to stage a copy of the payload:
/// `bytes` long, page-aligned, in usable memory, clear of the kernel's
/// range and of every page in `sources` (the physical pages behind the
/// loaded image, which the loader is still running from).
///
/// The loader copies the payload there first and then, from a trampoline
/// in the same staging area, to its final place: whatever pages the
/// console chose for the image, including pages inside the kernel's range,
/// nothing is overwritten before it has been read.
pub fn plan_staging(
    h: &Header,
    usable: &[Span],
    sources: &[u64],
    bytes: u64,
) -> Result<u64, ImageError> {
    let (need_start, need_end) = h.needed();
    let mut at = need_start;
    while at < need_end {
        match usable.iter().find(|c| c.start <= at && at < c.end) {
            Some(c) => at = c.end,
            None => {
                return Err(ImageError::NotUsable {
                    start: need_start,
                    end: need_end,
                });
            }
        }
    }
    let bytes = round_up(bytes, PAGE);
    for c in usable {
        let mut s = round_up(c.start, PAGE);
        while s.checked_add(bytes).is_some_and(|e| e <= c.end) {
            let e = s + bytes;
            if s < need_end && need_start < e {
                s = round_up(need_end, PAGE);
                continue;
            }
            match sources.iter().filter(|p| **p < e && s < **p + PAGE).max() {
                Some(p) => s = p + PAGE,
                None => return Ok(s),
            }
        }
    }
    Err(ImageError::NoStaging { bytes })
}

/// The usable spans of a cluster list (console-reserved ones dropped).
pub fn usable_spans<'a>(
    clusters: impl Iterator<Item = crate::hwrpb::Cluster> + 'a,
    page_size: u64,
) -> impl Iterator<Item = Span> + 'a {
    clusters.filter(|c| c.usable()).map(move |c| Span {
        start: c.start(page_size),
        end: c.end(page_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(load: u64, payload: u64, mem: u64) -> Header {
        Header {
            image_len: round_up(8192 + payload, 512),
            payload_offset: 8192,
            payload_len: payload,
            load_phys: load,
            entry: 0xfffffc00_0000_0000 | load,
            mem_len: mem,
            sum: 0,
        }
    }

    #[test]
    fn console_pcb_words_round_trip_and_refuse_what_is_not_a_pcb() {
        // qemu-palcode's boot slot HWPCB (not 128-byte aligned).
        let pcb = ConsolePcb(0x1_8140);
        assert_eq!(ConsolePcb::from_words(pcb.words()), Some(pcb));
        // QEMU's loader leaves the page zero: no tag, no PCB.
        assert_eq!(ConsolePcb::from_words([0, 0]), None);
        assert_eq!(ConsolePcb::from_words([0, pcb.0]), None);
        assert_eq!(ConsolePcb::from_words([ConsolePcb::TAG, 0]), None);
        assert_eq!(ConsolePcb::from_words([ConsolePcb::TAG, pcb.0 + 4]), None);
    }

    #[test]
    fn header_round_trips_and_rejects_bad_fields() {
        let h = header(0x101_0000, 700_000, 900_000);
        let q = h.to_quads();
        assert_eq!(Header::from_quads(|i| q[i]), Ok(h));
        let mut bad = q;
        bad[0] ^= 1;
        assert_eq!(Header::from_quads(|i| bad[i]), Err(ImageError::NoHeader));
        let mut bad = q;
        bad[1] = 2;
        assert_eq!(Header::from_quads(|i| bad[i]), Err(ImageError::Version(2)));
        let mut bad = q;
        bad[5] = 0x101_0100; // not page-aligned
        assert_eq!(
            Header::from_quads(|i| bad[i]),
            Err(ImageError::LoadAddress(0x101_0100))
        );
        let mut bad = q;
        bad[2] = 512; // payload beyond the image
        assert!(matches!(
            Header::from_quads(|i| bad[i]),
            Err(ImageError::Layout(_))
        ));
        let mut bad = q;
        bad[7] = 1; // bss smaller than the payload
        assert!(matches!(
            Header::from_quads(|i| bad[i]),
            Err(ImageError::Layout(_))
        ));
        // An entry outside the payload, or not in KSEG.
        for entry in [KSEG | (0x101_0000 + 700_000), KSEG | 0x100_0000, 0x101_0000] {
            let mut bad = q;
            bad[6] = entry;
            assert!(
                matches!(
                    Header::from_quads(|i| bad[i]),
                    Err(ImageError::Entry { .. })
                ),
                "{entry:#x}"
            );
        }
        // The sum covers the fields: a moved load address changes it.
        let mut moved = h;
        moved.load_phys += 0x10_0000;
        moved.entry += 0x10_0000;
        assert_ne!(h.sum_of(b"kernel"), moved.sum_of(b"kernel"));
        assert_ne!(h.sum_of(b"kernel"), h.sum_of(b"kerneL"));
    }

    #[test]
    fn boot_block_checksum_and_fields() {
        let b = make_boot_block(1234, 1, b"alphasmp");
        let bb = check_boot_block(&b).expect("valid");
        assert_eq!((bb.count, bb.start_lbn, bb.flags), (1234, 1, 0));
        // Any changed byte in 0..504 breaks the sum.
        for at in [0, 100, 479, 480, 490, 500] {
            let mut c = b;
            c[at] ^= 0x40;
            assert!(
                matches!(check_boot_block(&c), Err(BootBlockError::Checksum { .. })),
                "byte {at}"
            );
        }
        let mut c = b;
        c[504] ^= 1;
        assert!(matches!(
            check_boot_block(&c),
            Err(BootBlockError::Checksum { .. })
        ));
        // Flags must be 0 even with a correct sum.
        let mut c = b;
        c[496] = 1;
        let s = boot_block_sum(&c);
        c[504..].copy_from_slice(&s.to_le_bytes());
        assert_eq!(check_boot_block(&c), Err(BootBlockError::Flags(1)));
        assert_eq!(
            check_boot_block(&make_boot_block(0, 1, b"")),
            Err(BootBlockError::Empty)
        );
    }

    #[test]
    fn sum_is_wrapping_over_all_63_quadwords() {
        let mut b = [0xffu8; 512];
        let s = boot_block_sum(&b);
        assert_eq!(s, (u64::MAX).wrapping_mul(63));
        b[504..].copy_from_slice(&s.to_le_bytes());
        b[496..504].fill(0);
        assert!(matches!(
            check_boot_block(&b),
            Err(BootBlockError::Checksum { .. })
        ));
    }

    #[test]
    fn fnv_is_the_reference_function() {
        // FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn staging_avoids_kernel_range_and_every_source_page() {
        let h = header(0x101_0000, 3 * PAGE, 5 * PAGE);
        let usable = [Span {
            start: 0x40_0000,
            end: 64 * MIB,
        }];
        // Sources scattered inside the kernel's range and right after it.
        let (ns, ne) = h.needed();
        let sources = [0x101_2000, ne, ne + 2 * PAGE, ne + 3 * PAGE, 0x40_0000];
        let s = plan_staging(&h, &usable, &sources, 4 * PAGE).expect("room");
        let e = s + 4 * PAGE;
        assert!(!(s < ne && ns < e), "staging {s:#x} overlaps the kernel");
        for p in sources {
            assert!(
                !(p < e && s < p + PAGE),
                "staging {s:#x} overlaps source page {p:#x}"
            );
        }
        assert!(usable[0].start <= s && e <= usable[0].end);
        assert_eq!(s, 0x40_2000, "first fit");
    }

    #[test]
    fn staging_skips_reserved_clusters_and_small_holes() {
        let h = header(0x101_0000, PAGE, PAGE);
        // A one-page usable hole, then the kernel's cluster.
        let usable = [
            Span {
                start: 0x20_0000,
                end: 0x20_2000,
            },
            Span {
                start: 0x100_0000,
                end: 0x200_0000,
            },
        ];
        let s = plan_staging(&h, &usable, &[], 2 * PAGE).expect("room");
        // Not the one-page hole; the room below the parameter page fits.
        assert_eq!(s, 0x100_0000);
        // With the room below taken by the image, the first fit after the
        // kernel's range.
        let s = plan_staging(&h, &usable, &[0x100_2000], 2 * PAGE).expect("room");
        assert_eq!(
            s, 0x100_4000,
            "two pages between the source page and the parameter page at 0x100a000"
        );
        let s = plan_staging(&h, &usable, &[0x100_2000, 0x100_6000], 2 * PAGE).expect("room");
        assert_eq!(s, h.needed().1);
    }

    #[test]
    fn kernel_outside_usable_memory_is_refused() {
        let h = header(0x101_0000, PAGE, 4 * MIB);
        let usable = [Span {
            start: 0x100_0000,
            end: 0x120_0000,
        }];
        assert!(matches!(
            plan_staging(&h, &usable, &[], PAGE),
            Err(ImageError::NotUsable { .. })
        ));
        // The parameter page below the kernel must be usable too.
        let usable = [Span {
            start: 0x101_0000,
            end: 64 * MIB,
        }];
        assert!(matches!(
            plan_staging(&h, &usable, &[], PAGE),
            Err(ImageError::NotUsable { .. })
        ));
        // Two adjacent usable clusters together are fine.
        let usable = [
            Span {
                start: 0x100_0000,
                end: 0x102_0000,
            },
            Span {
                start: 0x102_0000,
                end: 64 * MIB,
            },
        ];
        assert!(plan_staging(&h, &usable, &[], PAGE).is_ok());
    }

    #[test]
    fn no_room_is_an_error_not_an_overlap() {
        let h = header(0x101_0000, PAGE, PAGE);
        // Usable memory is the kernel's range plus one page, and that page
        // backs the image.
        let usable = [Span {
            start: 0x100_a000,
            end: 0x101_4000,
        }];
        let err = plan_staging(&h, &usable, &[0x101_2000], PAGE);
        assert_eq!(err, Err(ImageError::NoStaging { bytes: PAGE }));
    }

    #[test]
    fn every_error_is_one_line() {
        let errs = [
            ImageError::NoHeader,
            ImageError::Version(3),
            ImageError::Layout("x"),
            ImageError::LoadAddress(1),
            ImageError::Sum {
                stored: 1,
                computed: 2,
            },
            ImageError::Entry { entry: 1, load: 2 },
            ImageError::NotUsable { start: 1, end: 2 },
            ImageError::NoStaging { bytes: 3 },
        ];
        for e in errs {
            let s = alloc_free_format(e);
            assert!(!s.contains('\n') && !s.is_empty(), "{s}");
        }
    }

    fn alloc_free_format(e: ImageError) -> String {
        format!("{e}")
    }
}
