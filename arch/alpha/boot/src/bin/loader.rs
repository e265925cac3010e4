//! Stage-0 loader: the first bytes of the raw images SRM boots (docs/hardware.md
//! §1d, §1e, §7; README "Booting on a real AlphaServer").
//!
//! Entered from `asm/loader.S` at virtual 0x20000000 on the console's page
//! tables, under the console's OpenVMS PALcode, on a stack inside the image.
//! In order:
//! 1. under the console's PALcode (no OSF/1 PAL call runs: they are methods
//!    of [`Osf`], a token this file makes in one place, right after a
//!    successful SWPPAL; a convention of this file, not something the
//!    compiler enforces): read the
//!    HWRPB at its VA, check the payload against the header's sum, read
//!    the boot flags with GET_ENV(BOOTED_OSFLAGS), find the physical page
//!    behind every page of the image through the VPTB, and SWPPAL to OSF/1;
//! 2. under OSF/1: record the PALcode in the boot CPU's slot, `tbia`, check
//!    that the kernel's range is usable memory and pick a staging area away
//!    from it and from the image's pages (`alphasmp_srm::image`, host-tested),
//!    copy the payload there with a trampoline and the parameter page after
//!    it, and let the trampoline copy the kernel into place and enter it as
//!    QEMU's PALcode does (`$27` = entry, `$18` = its PCB, IPL 7), naming
//!    in the parameter page the console's own PCB, which the kernel
//!    returns to before it halts.
//!
//! Every refusal is one line `alphasmp loader: FAIL: ...`, then a halt back
//! to the console.

#![no_std]
#![no_main]

use alphasmp_boot::{Identity, KSEG, Va, println};
use alphasmp_srm::crb;
use alphasmp_srm::hwrpb::{Hwrpb, Quads};
use alphasmp_srm::image::{self, HWRPB_VA, Header, LOAD_VA, PAGE};

unsafe extern "Rust" {
    static image_header: [u64; image::HEADER_QUADS];
    static tramp_start: u8;
    static tramp_end: u8;
    fn loader_swppal(pcb: *mut Pcb, pcb_pa: u64, vptb: u64) -> u64;
    fn loader_halt() -> !;
    fn osf_tbia();
    fn osf_imb();
    fn osf_swpipl(ipl: u64) -> u64;
}

static ME: Identity = Identity {
    name: "alphasmp loader",
    halt,
};

fn halt() -> ! {
    // SAFETY: CALL_PAL halt (0x00, the same in both PALcode flavours)
    // returns to the console; it never comes back here.
    unsafe { loader_halt() }
}

fn fail(why: core::fmt::Arguments<'_>) -> ! {
    println!("alphasmp loader: FAIL: {why}");
    halt()
}

/// A hardware PCB (128 bytes, 128-byte aligned).
#[repr(C, align(128))]
struct Pcb([u64; 16]);

/// Offsets in the PCB, in quadwords.
const PCB_KSP: usize = 0;
const PCB_PTBR: usize = 2;
const PCB_FLAGS: usize = 5;

/// The most image pages tracked (a 32 MiB image).
const MAX_PAGES: usize = 4096;

/// Bytes of the parameter page the trampoline copies (command line at 0,
/// initrd words at 0x100/0x108, the console's PCB at ZERO_PAGE_CONSOLE_PCB,
/// the kernel's PCB at ZERO_PAGE_PCB).
const PARAM_BYTES: usize = 0x400;

/// Proof that OSF/1 PALcode runs: made only in [`loader_main`], after
/// `loader_swppal` succeeded.
struct Osf(());

impl Osf {
    fn tbia(&self) {
        // SAFETY: OSF/1 tbi(-2) invalidates every translation; harmless.
        unsafe { osf_tbia() }
    }
    fn imb(&self) {
        // SAFETY: OSF/1 imb only synchronises the instruction stream.
        unsafe { osf_imb() }
    }
    fn swpipl(&self, ipl: u64) -> u64 {
        // SAFETY: OSF/1 swpipl; raising to 7 masks interrupts we have no
        // vectors for yet.
        unsafe { osf_swpipl(ipl) }
    }
}

/// The physical address behind virtual `va` on the console's page tables,
/// read through the VPTB (its linear view of the L3 entries).
fn phys_of(vptb: u64, va: u64) -> u64 {
    // SAFETY: the VPTB maps every L3 entry of the console's page tables
    // (its self-map), and `va` lies in the image or its stack, which are
    // mapped.
    let pte = unsafe { Va::new(vptb) }.read((va >> 13) * 8);
    if pte & 1 == 0 {
        fail(format_args!(
            "virtual {va:#x} is not mapped by the console (PTE {pte:#x})"
        ));
    }
    ((pte >> 32) << 13) | (va & (PAGE - 1))
}

/// The PFN of the console's L1 table: the VPTB's self-map entry, read
/// through the VPTB itself (docs/hardware.md §1d).
fn l1_pfn(vptb: u64) -> u64 {
    let slot = alphasmp_srm::pagetable::self_map_slot(vptb);
    let l1_va = vptb | (slot << 23) | (slot << 13);
    // SAFETY: the self-map makes the L1 page visible at `l1_va`.
    unsafe { Va::new(l1_va) }.read(slot * 8) >> 32
}

#[unsafe(no_mangle)]
pub fn loader_main() -> ! {
    alphasmp_boot::set_identity(&ME);
    // SAFETY: SRM maps the HWRPB at this VA for a bootstrap (docs/hardware.md §1d).
    let hwrpb = unsafe { Va::new(HWRPB_VA) };
    if !alphasmp_boot::console_init(HWRPB_VA, hwrpb.read(alphasmp_srm::hwrpb::off::CRB_OFFSET)) {
        halt(); // no console callbacks: nowhere to say anything
    }
    println!("\nalphasmp loader: running at {LOAD_VA:#x} under the console's PALcode");
    let h = match Hwrpb::new(hwrpb) {
        Ok(h) => h,
        Err(e) => fail(format_args!("{e}")),
    };
    // SAFETY: the header is the image's own bytes, written by `cargo xtask
    // image` before the console loaded them.
    let quads = unsafe { &image_header };
    let hdr = match Header::from_quads(|i| quads[i]) {
        Ok(hdr) => hdr,
        Err(e) => fail(format_args!("{e}")),
    };
    // SAFETY: the console loaded `image_len` bytes at LOAD_VA (the header
    // was validated so the payload lies inside them).
    let payload = unsafe {
        core::slice::from_raw_parts(
            (LOAD_VA + hdr.payload_offset) as *const u8,
            hdr.payload_len as usize,
        )
    };
    let sum = hdr.sum_of(payload);
    if sum != hdr.sum {
        fail(format_args!(
            "{}",
            image::ImageError::Sum {
                stored: hdr.sum,
                computed: sum
            }
        ));
    }

    let mut flags = [0u64; 32];
    let st = crb::Status(alphasmp_boot::crb_call(
        crb::code::GET_ENV,
        crb::env::BOOTED_OSFLAGS,
        flags.as_mut_ptr() as u64,
        255,
        4,
    ));
    let mut cmdline = [0u8; image::CMDLINE_MAX as usize];
    // SAFETY: `flags` is 256 bytes of plain memory.
    let fbytes = unsafe { core::slice::from_raw_parts(flags.as_ptr() as *const u8, 256) };
    let text = crb::env_text(fbytes, st).unwrap_or("");
    let n = text.len().min(cmdline.len() - 1);
    cmdline[..n].copy_from_slice(&text.as_bytes()[..n]);
    match crb::env_text(fbytes, st) {
        Some(t) => println!("alphasmp loader: BOOTED_OSFLAGS \"{t}\""),
        None => println!(
            "alphasmp loader: GET_ENV(BOOTED_OSFLAGS) unanswered (status {:#x}); no boot flags",
            st.0
        ),
    }

    let vptb = h.vptb();
    if let Err(e) = alphasmp_srm::pagetable::check_three_level(vptb) {
        fail(format_args!("{e}"));
    }
    let pages = (image::round_up(hdr.image_len, PAGE) / PAGE) as usize;
    if pages > MAX_PAGES {
        fail(format_args!(
            "image of {} bytes exceeds the loader's {} pages",
            hdr.image_len, MAX_PAGES
        ));
    }
    let mut sources = [0u64; MAX_PAGES];
    for (i, s) in sources[..pages].iter_mut().enumerate() {
        *s = phys_of(vptb, LOAD_VA + i as u64 * PAGE);
    }
    let sources = &sources[..pages];

    let mut pcb = Pcb([0; 16]);
    pcb.0[PCB_PTBR] = l1_pfn(vptb);
    pcb.0[PCB_FLAGS] = 1; // FEN
    let pcb_pa = phys_of(vptb, &raw const pcb as u64);
    println!(
        "alphasmp loader: {pages} image pages at physical {:#x}..., console L1 at PFN {:#x}; switching to OSF/1 PALcode",
        sources[0], pcb.0[PCB_PTBR]
    );
    // SAFETY: the PCB is ours, 128-byte aligned, at `pcb_pa`; the VPTB is
    // the console's. SWPPAL keeps the page tables and this stack.
    let status = unsafe { loader_swppal(&raw mut pcb, pcb_pa, vptb) };
    if status != 0 {
        fail(format_args!(
            "SWPPAL to OSF/1 PALcode failed with status {status:#x}"
        ));
    }
    let osf = Osf(());
    after_switch(&osf, &h, &hdr, sources, &cmdline, &pcb)
}

fn after_switch(
    osf: &Osf,
    h: &Hwrpb<Va>,
    hdr: &Header,
    sources: &[u64],
    cmdline: &[u8],
    pcb: &Pcb,
) -> ! {
    osf.swpipl(7);
    // Tell the console (and the kernel's secondaries, which copy it) which
    // PALcode now runs: palcode_avail[2], the OSF/1 variant, in the boot
    // CPU's slot (docs/hardware.md §1e; Linux writes slot 0's).
    let slot = h.slot(h.boot_cpu());
    let osf_rev = h.mem().read(slot.offset() + 0x1d0 + 2 * 8);
    if osf_rev != 0 {
        slot.set_pal_revision(osf_rev);
    }
    osf.tbia();
    println!("alphasmp loader: OSF/1 PALcode running (revision {osf_rev:#x})");

    let mut usable = [image::Span { start: 0, end: 0 }; alphasmp_srm::hwrpb::MAX_CLUSTERS];
    let mut n = 0;
    for s in image::usable_spans(h.clusters(), h.page_size()) {
        usable[n] = s;
        n += 1;
    }
    let staged_len = image::round_up(hdr.payload_len, PAGE);
    let tail = PAGE; // trampoline, then the parameter page content
    let stage = match image::plan_staging(hdr, &usable[..n], sources, staged_len + tail) {
        Ok(s) => s,
        Err(e) => fail(format_args!("{e}")),
    };
    let tail_pa = stage + staged_len;

    // Copy the payload out of the image's pages into the staging area.
    // SAFETY: source: the loaded image at LOAD_VA (validated length);
    // destination: `staged_len` bytes of usable memory that no image page,
    // no console structure and no part of the kernel's range occupies
    // (plan_staging), reached through KSEG.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (LOAD_VA + hdr.payload_offset) as *const u8,
            (KSEG | stage) as *mut u8,
            hdr.payload_len as usize,
        );
    }
    let tramp_len = (&raw const tramp_end as usize) - (&raw const tramp_start as usize);
    // SAFETY: the trampoline's code bytes (this image) to the tail page of
    // the staging area (ours, see above); PARAM_BYTES fit after 0x1000.
    unsafe {
        core::ptr::copy_nonoverlapping(
            &raw const tramp_start,
            (KSEG | tail_pa) as *mut u8,
            tramp_len,
        );
    }
    let param = KSEG | (tail_pa + 0x1000);
    let mut page = [0u64; PARAM_BYTES / 8];
    // SAFETY: viewing the local array as bytes.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(page.as_mut_ptr() as *mut u8, PARAM_BYTES) };
    bytes[..cmdline.len()].copy_from_slice(cmdline);
    let k_pcb = image::ZERO_PAGE_PCB as usize / 8;
    page[k_pcb..k_pcb + 16].copy_from_slice(&pcb.0);
    // The kernel moves to its own stack at once; until then this is below
    // its first byte, inside the parameter page area.
    page[k_pcb + PCB_KSP] = KSEG | hdr.load_phys;
    // The PCB the console entered us on, which SWPPAL left behind: the
    // kernel returns to it before it halts (image::ConsolePcb).
    let console_pcb = image::ConsolePcb(h.phys_addr() + h.slot(h.boot_cpu()).offset());
    let at = image::ZERO_PAGE_CONSOLE_PCB as usize / 8;
    page[at..at + 2].copy_from_slice(&console_pcb.words());
    // SAFETY: `param` is in the staging tail page (ours), PARAM_BYTES long.
    unsafe { core::ptr::copy_nonoverlapping(page.as_ptr(), param as *mut u64, PARAM_BYTES / 8) };
    osf.imb();

    let zero_page = hdr.load_phys - image::ZERO_PAGE_BELOW;
    println!(
        "alphasmp loader: kernel {} bytes for physical {:#x} (entry {:#x}), staged at {stage:#x}; the console's PCB is {:#x}; entering it",
        hdr.payload_len, hdr.load_phys, hdr.entry, console_pcb.0
    );
    let tramp: fn(u64, u64, u64, u64, u64, u64) -> ! =
        // SAFETY: the trampoline was copied to `tail_pa` (instruction
        // stream synchronised by imb) and takes six scalar arguments in
        // $16..$21 as the Alpha convention passes them; it never returns.
        unsafe { core::mem::transmute::<u64, fn(u64, u64, u64, u64, u64, u64) -> !>(KSEG | tail_pa) };
    tramp(
        KSEG | stage,
        KSEG | hdr.load_phys,
        image::round_up(hdr.payload_len, 8),
        param,
        KSEG | zero_page,
        hdr.entry,
    )
}
