//! The raw images SRM boots (`cargo xtask image`) and their check
//! (`cargo xtask image --check FILE`). The layout is
//! `alphasmp_srm::image` (shared with the loader that reads it):
//!
//! - `alphasmp.bootp`: the stage-0 loader (its file bytes, then its bss as
//!   zeros, padded to 512), then the kernel's loadable bytes padded to 512.
//!   A BOOTP/TFTP server hands this file to `boot ewa0`.
//! - `alphasmp.img`: a disk: the boot block at LBN 0 naming the same bytes
//!   from LBN 1. `dd` it to a disk for `boot dka0`.

use std::path::{Path, PathBuf};

use alphasmp_srm::image::{self, BLOCK, Header, ImageError, round_up};

use crate::util::{Result, err};

use alphasmp_srm::image::KSEG;
const LABEL: &[u8] = b"alphasmp boot block";

/// The single loadable segment of an ELF64 (Alpha) file.
#[derive(Debug)]
pub struct Segment {
    pub entry: u64,
    pub vaddr: u64,
    pub bytes: Vec<u8>,
    pub mem_len: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the one PT_LOAD segment of `path` (SRM images are one raw
/// segment, as Linux's objstrip requires too).
pub fn load_segment(path: &Path) -> Result<Segment> {
    let b = std::fs::read(path).map_err(|e| err(format!("reading {}: {e}", path.display())))?;
    let bad = || {
        err(format!(
            "{}: not a 64-bit little-endian ELF file",
            path.display()
        ))
    };
    if b.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(bad());
    }
    let entry = u64_at(&b, 24).ok_or_else(bad)?;
    let phoff = u64_at(&b, 32).ok_or_else(bad)? as usize;
    let phentsize = u16_at(&b, 54).ok_or_else(bad)? as usize;
    let phnum = u16_at(&b, 56).ok_or_else(bad)? as usize;
    let mut loads = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(&b, ph).ok_or_else(bad)? == 1 {
            let off = u64_at(&b, ph + 8).ok_or_else(bad)? as usize;
            let vaddr = u64_at(&b, ph + 16).ok_or_else(bad)?;
            let filesz = u64_at(&b, ph + 32).ok_or_else(bad)? as usize;
            let memsz = u64_at(&b, ph + 40).ok_or_else(bad)?;
            let bytes = b.get(off..off + filesz).ok_or_else(bad)?.to_vec();
            loads.push(Segment {
                entry,
                vaddr,
                bytes,
                mem_len: memsz,
            });
        }
    }
    match loads.len() {
        1 => Ok(loads.pop().unwrap()),
        n => Err(err(format!(
            "{}: {n} loadable segments; a raw image needs exactly one",
            path.display()
        ))),
    }
}

/// The bytes of a BOOTP image: loader (with its header filled in) and
/// kernel payload.
pub fn bootp_bytes(loader: &Segment, kernel: &Segment) -> Result<Vec<u8>> {
    if loader.vaddr != image::LOAD_VA || loader.entry != image::LOAD_VA {
        return Err(err(format!(
            "the loader is linked at {:#x} (entry {:#x}), not {:#x}",
            loader.vaddr,
            loader.entry,
            image::LOAD_VA
        )));
    }
    if kernel.vaddr & KSEG != KSEG {
        return Err(err(format!(
            "the kernel is linked at {:#x}, not a KSEG address",
            kernel.vaddr
        )));
    }
    let load_phys = kernel.vaddr - KSEG;
    if load_phys < image::MIN_KERNEL_PHYS {
        return Err(err(format!(
            "the kernel is linked for physical {load_phys:#x}; real machines need {:#x} or above",
            image::MIN_KERNEL_PHYS
        )));
    }
    let payload_offset = round_up(loader.mem_len, BLOCK);
    let mut out = loader.bytes.clone();
    out.resize(payload_offset as usize, 0);
    let at = image::HEADER_OFFSET;
    if out.get(at..at + 8) != Some(&image::MAGIC.to_le_bytes()[..]) {
        return Err(err(format!(
            "the loader has no header placeholder (magic) at byte {at}"
        )));
    }
    out.extend_from_slice(&kernel.bytes);
    out.resize(round_up(out.len() as u64, BLOCK) as usize, 0);
    let mut h = Header {
        image_len: out.len() as u64,
        payload_offset,
        payload_len: kernel.bytes.len() as u64,
        load_phys,
        entry: kernel.entry,
        mem_len: kernel.mem_len,
        sum: 0,
    };
    h.sum = h.sum_of(&kernel.bytes);
    h.validate().map_err(|e| err(e.to_string()))?;
    for (i, q) in h.to_quads().iter().enumerate() {
        out[at + 8 * i..at + 8 * i + 8].copy_from_slice(&q.to_le_bytes());
    }
    Ok(out)
}

/// A disk image: boot block at LBN 0, the BOOTP bytes from LBN 1.
pub fn disk_bytes(bootp: &[u8]) -> Vec<u8> {
    let count = bootp.len() as u64 / BLOCK;
    let mut out = image::make_boot_block(count, 1, LABEL).to_vec();
    out.extend_from_slice(bootp);
    out
}

/// The two images, written to `dir`.
pub struct Written {
    pub bootp: PathBuf,
    pub disk: PathBuf,
    pub header: Header,
}

pub fn write(loader_elf: &Path, kernel_elf: &Path, dir: &Path) -> Result<Written> {
    let loader = load_segment(loader_elf)?;
    let kernel = load_segment(kernel_elf)?;
    let bootp = bootp_bytes(&loader, &kernel)?;
    let disk = disk_bytes(&bootp);
    std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    let w = Written {
        bootp: dir.join("alphasmp.bootp"),
        disk: dir.join("alphasmp.img"),
        header: header_of(&bootp).map_err(|e| err(e.to_string()))?,
    };
    std::fs::write(&w.bootp, &bootp)
        .map_err(|e| err(format!("writing {}: {e}", w.bootp.display())))?;
    std::fs::write(&w.disk, &disk)
        .map_err(|e| err(format!("writing {}: {e}", w.disk.display())))?;
    Ok(w)
}

fn header_of(bootstrap: &[u8]) -> std::result::Result<Header, ImageError> {
    let at = image::HEADER_OFFSET;
    Header::from_quads(|i| u64_at(bootstrap, at + 8 * i).unwrap_or(0))
}

/// What `--check` found.
#[derive(Debug)]
pub struct Report {
    pub kind: &'static str,
    pub header: Header,
}

/// Checks an image: its form (disk or BOOTP), the boot block, the header,
/// sizes, the payload's sum, and that the payload, load address, entry and
/// size are those of `kernel_elf`. Errors are one line.
pub fn check(bytes: &[u8], kernel_elf: &Path) -> Result<Report> {
    let magic_at = |base: usize| {
        bytes.get(base + image::HEADER_OFFSET..base + image::HEADER_OFFSET + 8)
            == Some(&image::MAGIC.to_le_bytes()[..])
    };
    let (kind, bootstrap) = if magic_at(0) {
        ("BOOTP image", bytes)
    } else if bytes.len() >= BLOCK as usize {
        let block: &[u8; 512] = bytes[..512].try_into().unwrap();
        let bb = match image::check_boot_block(block) {
            Ok(bb) => bb,
            Err(e) if magic_at(512) => return Err(err(format!("disk image: {e}"))),
            Err(e) => {
                return Err(err(format!(
                    "not an alphasmp image: no loader header at byte {} and no valid boot block ({e})",
                    image::HEADER_OFFSET
                )));
            }
        };
        let end = bb
            .start_lbn
            .checked_add(bb.count)
            .and_then(|e| e.checked_mul(BLOCK))
            .filter(|e| *e <= bytes.len() as u64);
        let Some(end) = end else {
            return Err(err(format!(
                "disk image is truncated: the boot block names blocks {}..{} but the file has {} blocks",
                bb.start_lbn,
                bb.start_lbn.saturating_add(bb.count),
                bytes.len() as u64 / BLOCK
            )));
        };
        (
            "disk image",
            &bytes[(bb.start_lbn * BLOCK) as usize..end as usize],
        )
    } else {
        return Err(err(format!(
            "not an alphasmp image: {} bytes, no loader header and no boot block",
            bytes.len()
        )));
    };
    let h = header_of(bootstrap).map_err(|e| err(format!("{kind}: {e}")))?;
    if h.image_len > bootstrap.len() as u64 {
        return Err(err(format!(
            "{kind} is truncated: the header says {} bytes, there are {}",
            h.image_len,
            bootstrap.len()
        )));
    }
    if kind == "disk image" && h.image_len != bootstrap.len() as u64 {
        return Err(err(format!(
            "disk image: the boot block names {} bytes, the loader header {}",
            bootstrap.len(),
            h.image_len
        )));
    }
    let payload =
        &bootstrap[h.payload_offset as usize..(h.payload_offset + h.payload_len) as usize];
    let sum = h.sum_of(payload);
    if sum != h.sum {
        return Err(err(format!(
            "{kind}: {}",
            ImageError::Sum {
                stored: h.sum,
                computed: sum
            }
        )));
    }
    if h.load_phys < image::MIN_KERNEL_PHYS {
        return Err(err(format!(
            "{kind}: kernel load address {:#x} is below {:#x}, which real machines need",
            h.load_phys,
            image::MIN_KERNEL_PHYS
        )));
    }
    let k = load_segment(kernel_elf)?;
    let fields = [
        (
            "kernel load address",
            h.load_phys,
            k.vaddr.wrapping_sub(KSEG),
        ),
        ("entry", h.entry, k.entry),
        ("memory size", h.mem_len, k.mem_len),
        ("payload size", h.payload_len, k.bytes.len() as u64),
    ];
    if let Some((name, have, want)) = fields.iter().find(|(_, have, want)| have != want) {
        return Err(err(format!(
            "{kind} does not carry {}: its {name} is {have:#x}, the ELF's is {want:#x}",
            kernel_elf.display()
        )));
    }
    if payload != k.bytes.as_slice() {
        let at = payload
            .iter()
            .zip(&k.bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(err(format!(
            "{kind}: the payload differs from {} at byte {at}",
            kernel_elf.display()
        )));
    }
    Ok(Report { kind, header: h })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(vaddr: u64, entry: u64, bytes: Vec<u8>, mem_len: u64) -> Segment {
        Segment {
            entry,
            vaddr,
            bytes,
            mem_len,
        }
    }

    fn loader() -> Segment {
        let mut b = vec![0u8; 600];
        b[8..16].copy_from_slice(&image::MAGIC.to_le_bytes());
        b[16..24].copy_from_slice(&image::VERSION.to_le_bytes());
        seg(image::LOAD_VA, image::LOAD_VA, b, 5000)
    }

    fn kernel() -> Segment {
        seg(
            KSEG | 0x101_0000,
            KSEG | 0x101_0b30,
            (0..70_000u32).map(|i| (i * 7) as u8).collect(),
            200_000,
        )
    }

    #[test]
    fn bootp_layout_and_header() {
        let b = bootp_bytes(&loader(), &kernel()).unwrap();
        let h = header_of(&b).unwrap();
        assert_eq!(
            h.payload_offset, 5120,
            "after the loader's bss, 512-aligned"
        );
        assert_eq!(b.len() % 512, 0);
        assert_eq!(h.image_len, b.len() as u64);
        assert_eq!(
            (h.load_phys, h.entry, h.mem_len),
            (0x101_0000, KSEG | 0x101_0b30, 200_000)
        );
        assert_eq!(&b[5120..5120 + 70_000], kernel().bytes.as_slice());
        assert!(b[600..5120].iter().all(|x| *x == 0), "bss travels as zeros");
        let d = disk_bytes(&b);
        let bb = image::check_boot_block(d[..512].try_into().unwrap()).unwrap();
        assert_eq!((bb.count, bb.start_lbn), (b.len() as u64 / 512, 1));
        assert_eq!(&d[512..], b.as_slice());
    }

    #[test]
    fn kernels_linked_too_low_or_loaders_linked_elsewhere_are_refused() {
        let low = seg(KSEG | 0x31_0000, KSEG | 0x31_0000, vec![1; 10], 10);
        let e = bootp_bytes(&loader(), &low).unwrap_err().to_string();
        assert!(e.contains("0x1000000 or above"), "{e}");
        let mut l = loader();
        l.vaddr = 0x3000_0000;
        assert!(
            bootp_bytes(&l, &kernel())
                .unwrap_err()
                .to_string()
                .contains("not 0x20000000")
        );
    }
}
