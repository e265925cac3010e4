//! An emulation of the state SRM leaves for a bootstrap, so that the raw
//! images run under QEMU, which cannot run SRM (docs/hardware.md §1b-§1d).
//!
//! QEMU loads this with `-kernel`, the image with `-initrd`, and gives
//! `-append "DEVICE FLAGS..."`: DEVICE is `dka0` (the image is a disk:
//! check the boot block at LBN 0 as SRM does, then load the blocks it
//! names) or `ewa0` (the image is a BOOTP file, loaded whole), optionally
//! `@0xVA` to load it at another address than 0x20000000, `+foreignpcb`
//! to leave the boot slot's PCB naming another page table once it is
//! current (a test of the kernel's switch back at halt), or `+levels4`
//! to report the VPTB of 4-level page tables (tests of the loader's
//! refusals); the rest is what `boot -flags` would put in
//! BOOTED_OSFLAGS. Then, as a console would:
//! - the image goes to virtual 0x20000000 on the console's page tables,
//!   backed by physical pages in reverse order with a gap between each and
//!   inside the range the kernel is linked for (the worst a console may do:
//!   not contiguous, and in the loader's way);
//! - a few stack pages are mapped right after the image ("virtually beyond
//!   the end of the loaded image") and `$30` points at their top;
//! - the VPTB becomes 0x200000000 (L1 slot 1 maps the L1 table; the HWRPB
//!   says so, with a new checksum), and qemu-palcode's slot 1023 self-map
//!   is removed;
//! - this program marks itself console memory in the memory cluster table
//!   and stays resident to answer GET_ENV(BOOTED_OSFLAGS) in the callbacks;
//! - the boot CPU's slot HWPCB is the current PCB (this stack, the
//!   console's L1, FEN), as a console enters a bootstrap;
//! - every register but `$30` holds garbage at the jump.
//!
//! What it cannot emulate: the console's PALcode stays qemu-palcode's
//! OSF/1 (the loader's SWPPAL lands in qemu-palcode's, which switches to
//! OSF/1 again), and nothing checks that no OSF/1 call runs before it.

#![no_std]
#![no_main]

use alphasmp_boot::{Identity, KSEG, Va, println};
use alphasmp_srm::crb;
use alphasmp_srm::hwrpb::{self, Hwrpb, Quads};
use alphasmp_srm::image::{self, HWRPB_VA, LOAD_VA, PAGE, SRM_VPTB};

unsafe extern "Rust" {
    static __emu_start: u8;
    static __emu_end: u8;
    static emu_crb_desc: [u64; 2];
    static mut emu_crb_next: u64;
    static mut emu_env_len: u64;
    static mut emu_env: [u8; 256];
    fn emu_enter(sp: u64, pc: u64, pcb_phys: u64, pcb_kseg: u64, ptbr_after: u64) -> !;
    fn emu_wrvptptr(vptb: u64);
    fn emu_tbia();
    fn emu_halt() -> !;
}

static ME: Identity = Identity {
    name: "srm-emu",
    halt,
};

fn halt() -> ! {
    // SAFETY: CALL_PAL halt ends the emulation (QEMU exits).
    unsafe { emu_halt() }
}

fn fail(why: core::fmt::Arguments<'_>) -> ! {
    // The words a console prints when a bootstrap cannot start.
    println!("srm-emu: bootstrap failure: {why}");
    halt()
}

/// Stack pages mapped after the image.
const STACK_PAGES: u64 = 4;
/// Where the scattered backing pages start: 128 KiB into the range the
/// kernel is linked for, so the loader must stage its copy.
const SCATTER_BASE: u64 = image::MIN_KERNEL_PHYS + 0x2_0000;
/// Page-table pages this emulation may add (each maps 8 MiB).
const MAX_L3: usize = 8;

/// Page-aligned pages for new L3 tables, inside this (reserved) program.
#[repr(C, align(8192))]
struct Tables([[u64; 1024]; MAX_L3]);
static mut TABLES: Tables = Tables([[0; 1024]; MAX_L3]);

/// PTE bits: valid, kernel read, kernel write.
const PTE_KRW: u64 = 0x1 | 0x100 | 0x1000;

fn kseg_phys(va: u64) -> u64 {
    va - KSEG
}

/// The command line QEMU left 0x6000 below this program.
fn cmdline() -> &'static str {
    let page = KSEG | (kseg_phys(&raw const __emu_start as u64) - image::ZERO_PAGE_BELOW);
    // SAFETY: QEMU's loader wrote a NUL-terminated string of at most 255
    // bytes there; the page is RAM nothing else uses.
    let bytes = unsafe { core::slice::from_raw_parts(page as *const u8, 256) };
    let n = bytes.iter().position(|b| *b == 0).unwrap_or(255);
    core::str::from_utf8(&bytes[..n]).unwrap_or("")
}

/// The `-initrd` file as QEMU placed it (parameter page +0x100/+0x108).
fn initrd() -> &'static [u8] {
    let page = KSEG | (kseg_phys(&raw const __emu_start as u64) - image::ZERO_PAGE_BELOW);
    // SAFETY: QEMU's parameter page, RAM below this program.
    let p = unsafe { Va::new(page) };
    let (start, len) = (p.read(0x100), p.read(0x108));
    if start == 0 || len == 0 {
        fail(format_args!("no image: give it with -initrd"));
    }
    // SAFETY: QEMU loaded `len` bytes at KSEG address `start`.
    unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) }
}

#[unsafe(no_mangle)]
pub fn srmemu_main(console_pcb: u64) -> ! {
    alphasmp_boot::set_identity(&ME);
    // SAFETY: qemu-palcode maps the HWRPB at its architected VA; its first
    // quadword is its physical address, and KSEG reaches all of it.
    let hw_phys = unsafe { Va::new(HWRPB_VA) }.read(0);
    // SAFETY: as above.
    let mem = unsafe { Va::new(KSEG | hw_phys) };
    alphasmp_boot::console_init(KSEG | hw_phys, mem.read(hwrpb::off::CRB_OFFSET));
    let h = match Hwrpb::new(mem) {
        Ok(h) => h,
        Err(e) => fail(format_args!("{e}")),
    };
    let line = cmdline();
    let (word, flags) = line.split_once(' ').unwrap_or((line, ""));
    // `DEVICE+levels4`: the HWRPB reports the VPTB of a console whose
    // `page_table_levels` is 4 (1 << 43), to show that the loader refuses
    // it before it walks anything (the tables stay 3-level underneath).
    let (word, levels4) = match word.strip_suffix("+levels4") {
        Some(w) => (w, true),
        None => (word, false),
    };
    let (word, foreign_pcb) = match word.strip_suffix("+foreignpcb") {
        Some(w) => (w, true),
        None => (word, false),
    };
    // `+txline`: the console of the first secondary CPU has posted a line
    // before the kernel starts (its slot's text and `txrdy` bit), as a
    // real secondary console may; its CPU starts only once the kernel has
    // taken it, and it is the first the kernel starts, before any other
    // wait of the bring-up could take the line.
    let (word, txline) = match word.strip_suffix("+txline") {
        Some(w) => (w, true),
        None => (word, false),
    };
    // `DEVICE@VA`: a console that loads the image somewhere else (to show
    // that the loader refuses to run there).
    let (device, load_va) = match word.split_once('@') {
        Some((d, va)) => match va
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .filter(|v| v % PAGE == 0 && *v >= 0x2000_0000 && *v < 0x1_0000_0000)
        {
            Some(va) => (d, va),
            None => fail(format_args!(
                "'{word}': the load address must be a page-aligned hex VA from 0x20000000 below 0x100000000"
            )),
        },
        None => (word, LOAD_VA),
    };
    let file = initrd();
    let image: &[u8] = match device {
        "dka0" => {
            let Some(block) = file.first_chunk::<512>() else {
                fail(format_args!("dka0: the disk is shorter than one block"))
            };
            let bb = match image::check_boot_block(block) {
                Ok(bb) => bb,
                Err(e) => fail(format_args!("dka0: {e}")),
            };
            let end = bb
                .start_lbn
                .checked_add(bb.count)
                .and_then(|e| e.checked_mul(512))
                .filter(|e| *e <= file.len() as u64);
            let Some(to) = end else {
                fail(format_args!(
                    "dka0: the boot block names blocks {}..{} but the disk has {}",
                    bb.start_lbn,
                    bb.start_lbn.saturating_add(bb.count),
                    file.len() / 512
                ))
            };
            let from = bb.start_lbn * 512;
            println!(
                "srm-emu: dka0: boot block OK, {} blocks from LBN {}",
                bb.count, bb.start_lbn
            );
            &file[from as usize..to as usize]
        }
        "ewa0" => {
            println!("srm-emu: ewa0: BOOTP file of {} bytes", file.len());
            file
        }
        _ => fail(format_args!(
            "unknown boot device '{device}' (first word of -append: dka0 or ewa0)"
        )),
    };

    let pages = image::round_up(image.len() as u64, PAGE) / PAGE;
    let total = pages + STACK_PAGES;
    let backing = |i: u64| SCATTER_BASE + (total - 1 - i) * 2 * PAGE;
    let (lo, hi) = (backing(total - 1), backing(0) + PAGE);
    let file_pa = kseg_phys(file.as_ptr() as u64);
    if lo < file_pa + file.len() as u64 && file_pa < hi || hi > h.memory_bytes() {
        fail(format_args!(
            "no room to scatter {total} pages at {lo:#x}..{hi:#x} (image at {file_pa:#x}, memory {:#x})",
            h.memory_bytes()
        ));
    }
    if total as usize > MAX_L3 * 1024 {
        fail(format_args!(
            "image of {} bytes is too large for this emulation",
            image.len()
        ));
    }
    for i in 0..total {
        let dst = (KSEG | backing(i)) as *mut u8;
        let from = ((i * PAGE) as usize).min(image.len());
        let n = (image.len() - from).min(PAGE as usize);
        // SAFETY: `dst` is a page of RAM outside this program, the image
        // file and the PALcode (checked above), reached through KSEG.
        unsafe {
            core::ptr::write_bytes(dst, 0, PAGE as usize);
            core::ptr::copy_nonoverlapping(image[from..].as_ptr(), dst, n);
        }
    }

    // The console's page tables: L1 from qemu-palcode's PCB, its slot 0
    // L2 (which maps the HWRPB), new L3 tables for 0x20000000 onward.
    // SAFETY: qemu-palcode's PCB (physical, from $18) and the L1 page its
    // PTBR names are PALcode memory, reachable through KSEG.
    let l1_pfn = unsafe { Va::new(KSEG | console_pcb) }.read(0x10);
    // SAFETY: as above.
    let l1 = unsafe { Va::new(KSEG | (l1_pfn << 13)) };
    let l2_pte = l1.read(0);
    if l2_pte & 1 == 0 {
        fail(format_args!("qemu-palcode's L1 slot 0 is empty"));
    }
    // SAFETY: a valid L1 entry names an L2 page of the console's tables.
    let l2 = unsafe { Va::new(KSEG | ((l2_pte >> 32) << 13)) };
    let tables = &raw mut TABLES;
    for i in 0..total {
        let va = load_va + i * PAGE;
        let (l2i, l3i) = ((va >> 23) & 1023, (va >> 13) & 1023);
        let t = (i as usize + ((load_va >> 13) & 1023) as usize) / 1024;
        if t >= MAX_L3 {
            fail(format_args!(
                "image of {} bytes at {load_va:#x} is too large for this emulation",
                image.len()
            ));
        }
        // SAFETY: TABLES is this program's own memory; only this loop
        // writes it, before anything can use the new mappings.
        let table = unsafe { &raw mut (*tables).0[t] };
        let want = (kseg_phys(table as u64) >> 13 << 32) | PTE_KRW;
        match l2.read(l2i * 8) {
            0 => l2.write(l2i * 8, want),
            e if e == want => {}
            e => fail(format_args!(
                "L2 entry {l2i} for {va:#x} is already in use by qemu-palcode ({e:#x})"
            )),
        }
        // SAFETY: as above.
        unsafe { (*table)[l3i as usize] = ((backing(i) >> 13) << 32) | PTE_KRW };
    }

    // VPTB 0x200000000: L1[1] maps L1; tell PALcode and the HWRPB; then
    // drop qemu-palcode's own self-map at slot 1023.
    l1.write(
        8 * alphasmp_srm::pagetable::self_map_slot(SRM_VPTB),
        (l1_pfn << 32) | PTE_KRW,
    );
    // SAFETY: the new self-map is in place, so PALcode's virtual page
    // table walks find the same entries at the new VPTB.
    unsafe {
        emu_wrvptptr(SRM_VPTB);
        emu_tbia();
    }
    h.mem()
        .write(hwrpb::off::VPTB, if levels4 { 1 << 43 } else { SRM_VPTB });
    h.update_checksum();
    l1.write(8 * 1023, 0);
    // SAFETY: nothing uses the old VPTB any more.
    unsafe { emu_tbia() };

    // This program is console memory from now on: extend the first
    // (PALcode) cluster over it and start the next one after it. (The
    // MDDT's own checksum, tested counts and bitmaps are left as
    // qemu-palcode set them: nothing here or in the kernel reads them.)
    let emu_end_pfn = kseg_phys(&raw const __emu_end as u64) / PAGE;
    let mddt = h.mem().read(hwrpb::off::MDDT_OFFSET);
    let at = |i: u64| mddt + 24 + 56 * i;
    let (c0, c1) = (h.clusters().next(), h.clusters().nth(1));
    match (c0, c1) {
        (Some(c0), Some(c1))
            if !c0.usable()
                && c1.usable()
                && c0.start_pfn + c0.pages <= emu_end_pfn
                && emu_end_pfn < c1.start_pfn + c1.pages =>
        {
            let end1 = c1.start_pfn + c1.pages;
            h.mem().write(at(0) + 8, emu_end_pfn - c0.start_pfn);
            h.mem().write(at(1), emu_end_pfn);
            h.mem().write(at(1) + 8, end1 - emu_end_pfn);
        }
        _ => fail(format_args!("unexpected memory clusters {c0:?} {c1:?}")),
    }

    // GET_ENV through this program's dispatcher.
    // SAFETY: the CRB lies inside the HWRPB, reached through KSEG.
    let crb_table = unsafe { Va::new(KSEG | (hw_phys + h.crb_offset())) };
    let n = flags.len().min(255);
    // SAFETY: the emulation's own data words in asm/srmemu.S, written once
    // here before anything calls the dispatcher.
    unsafe {
        core::ptr::copy_nonoverlapping(flags.as_ptr(), (&raw mut emu_env) as *mut u8, n);
        emu_env_len = n as u64;
        emu_crb_next = crb_table.read(crb::off::DISPATCH_VA);
    }
    let desc = &raw const emu_crb_desc as u64;
    crb_table.write(crb::off::DISPATCH_VA, desc);
    crb_table.write(crb::off::DISPATCH_PA, kseg_phys(desc));

    if txline {
        let boot = h.boot_cpu();
        if let Some(cpu) = h
            .slots()
            .filter(|c| c.present() && c.index() != boot && c.index() < 64)
            .map(|c| c.index())
            .next()
        {
            h.slot(cpu)
                .set_tx_text(b"a line this console posted before START");
            h.mem().write(hwrpb::off::TXRDY, h.txrdy() | 1 << cpu);
            println!("srm-emu: CPU {cpu}'s console posted a line (txrdy set)");
        }
    }

    let sp = load_va + total * PAGE - 64;
    // A console runs the bootstrap on the boot CPU's slot HWPCB (DEC's
    // console points the slot's halt PCBB at the slot itself): fill it with
    // this stack and the console's L1, and switch to it at the jump, so
    // that the loader leaves, and the kernel must come back to, the PCB a
    // real console would have.
    let slot = h.slot(h.boot_cpu());
    slot.set_hwpcb(sp, l1_pfn);
    let slot_pcb = hw_phys + slot.offset();
    println!(
        "srm-emu: {pages} image pages at {load_va:#x} backed by physical {:#x}, {:#x}, ... (descending, one page apart), {STACK_PAGES} stack pages after them; VPTB {SRM_VPTB:#x}; BOOTED_OSFLAGS \"{flags}\"; on the boot CPU's slot PCB at {slot_pcb:#x}; jumping to {load_va:#x}",
        backing(0),
        backing(1)
    );
    // `+foreignpcb`: once current, the slot's PCB names another page table
    // in memory (the live PTBR stays the console's), to show that the
    // kernel refuses to switch back to a PCB that does not map it.
    let ptbr_after = if foreign_pcb { l1_pfn + 1 } else { l1_pfn };
    // SAFETY: the image and its stack are mapped at `load_va` on the page
    // tables in use, and the slot's PCB names those tables and that stack;
    // this is the jump a console makes.
    unsafe { emu_enter(sp, load_va, slot_pcb, KSEG | slot_pcb, ptbr_after) }
}
