//! User-range mappings in the three-level page table, for testing TLB
//! shootdown against real translations.
//!
//! Every CPU runs on the console's page table (PTBR from its PCB). Its L1
//! maps the HWRPB pointer at VA 0x10000000 (L1 slot 0) and itself at the
//! VPTB's slot: 1023 under qemu-palcode (VPTB 0xfffffffe00000000), but 1
//! on a real SRM console (VPTB 0x200000000, docs/hardware.md §1d). We hang our
//! own L2/L3 tables off the first L1 slot that is empty and is not the
//! self-map's, so a window of user VAs maps to frames we choose, on every
//! CPU; `release` empties the slot again before the machine returns to the
//! console, so SRM gets its page table back as it left it.
//!
//! Alpha: 8 KB pages, 43-bit VAs, 10 bits per level; a PTE holds the PFN in
//! bits 63:32 and permission bits below (docs/qemu.md §1.3).

use alloc::alloc::{Layout, alloc_zeroed};

use crate::hwrpb::KSEG;
use crate::pal;

pub const PAGE: u64 = 8192;
use alphasmp_srm::pagetable::{self, L1_SPAN};
/// Pages in the window (one L3 table).
pub const USER_PAGES: u64 = 1024;

const PTE_VALID: u64 = 1 << 0;
const PTE_KRE: u64 = 1 << 8;
const PTE_KWE: u64 = 1 << 12;

/// The window: the L1 entry we filled (its KSEG address), the window's
/// first VA and its L3 table.
struct Window {
    l1_entry: u64,
    base: u64,
    /// The L2 table: its first entry points to the L3 table.
    l2: u64,
}

/// The window's L3 table (KSEG address); `relink_l3` replaces it.
static L3: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

static WINDOW: spin::Once<Window> = spin::Once::new();

/// A zeroed, page-aligned page from the heap (never freed): its KSEG VA.
pub fn alloc_page() -> u64 {
    let layout = Layout::from_size_align(PAGE as usize, PAGE as usize).expect("page layout");
    // SAFETY: the layout has non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null(), "out of memory for a page");
    p as u64
}

/// The PFN of a KSEG address.
pub fn pfn(kseg: u64) -> u64 {
    (kseg & !KSEG) >> 13
}

fn pte(pfn: u64, flags: u64) -> u64 {
    (pfn << 32) | flags
}

/// Builds the L2/L3 tables for the window, once (boot CPU, before tests).
/// `vptb` is the HWRPB's: its L1 slot is the self-map and is never taken.
/// Returns the window's first VA.
pub fn init(console_ptbr_pfn: u64, vptb: u64) -> Result<u64, &'static str> {
    let l1 = KSEG | (console_ptbr_pfn << 13);
    let slot = pagetable::free_slot(vptb, |s| {
        // SAFETY: reading an L1 entry (s < 1024) of the live console page
        // table, a page in KSEG.
        unsafe { core::ptr::read_volatile((l1 + 8 * s) as *const u64) }
    });
    let Some(slot) = slot else {
        return Err("no free L1 slot in the console's page table");
    };
    let w = WINDOW.call_once(|| {
        let l2 = alloc_page();
        let l3 = alloc_page();
        let entry = l1 + 8 * slot;
        // SAFETY: l2 is a fresh page-table page; `entry` is an L1 slot the
        // console left empty and that is not its self-map.
        unsafe {
            core::ptr::write_volatile(l2 as *mut u64, pte(pfn(l3), PTE_VALID | PTE_KRE | PTE_KWE));
            core::ptr::write_volatile(
                entry as *mut u64,
                pte(pfn(l2), PTE_VALID | PTE_KRE | PTE_KWE),
            );
        }
        pal::mb();
        L3.store(l3, core::sync::atomic::Ordering::Release);
        Window {
            l1_entry: entry,
            base: slot * L1_SPAN,
            l2,
        }
    });
    Ok(w.base)
}

/// Empties the L1 slot the window took (the CPU that ends the run, before
/// it halts to the console; the other CPUs are stopped by then) and drops
/// its translations.
pub fn release() {
    if let Some(w) = WINDOW.get() {
        // SAFETY: the entry is the one `init` filled; nothing runs in the
        // window any more.
        unsafe { core::ptr::write_volatile(w.l1_entry as *mut u64, 0) };
        pal::mb();
        pal::tbi(pal::Tbi::All);
    }
}

/// Points window page `index` at the frame `frame_kseg` (or unmaps it).
/// No TLB flush: that is the caller's job, which is what the tests test.
pub fn set(index: u64, frame_kseg: Option<u64>) {
    assert!(index < USER_PAGES, "window page {index} out of range");
    let l3 = l3();
    let value = frame_kseg.map_or(0, |f| pte(pfn(f), PTE_VALID | PTE_KRE | PTE_KWE));
    // SAFETY: `index` is within the L3 page built by `init`.
    unsafe { core::ptr::write_volatile((l3 + 8 * index) as *mut u64, value) };
    pal::mb();
}

/// The VA of window page `index`.
pub fn va(index: u64) -> u64 {
    WINDOW.get().expect("mm::init ran").base + index * PAGE
}

/// Reads the first quadword of window page `index` through the TLB.
pub fn read(index: u64) -> u64 {
    // SAFETY: the window is mapped by the test before it reads (an unmapped
    // read would be a reported memory-management fault, not UB in Rust's
    // sense, but tests only read mapped pages).
    unsafe { core::ptr::read_volatile(va(index) as *const u64) }
}

/// The window's current L3 table (KSEG address).
pub fn l3() -> u64 {
    assert!(WINDOW.get().is_some(), "mm::init ran");
    L3.load(core::sync::atomic::Ordering::Acquire)
}

/// Points the window's L2 entry at the L3 table `new_kseg` (a page the
/// caller filled) and returns the old table: the unlink. No TLB flush and
/// no free: that is the caller's (`alphasmp::ptfree`).
pub fn relink_l3(new_kseg: u64) -> u64 {
    let w = WINDOW.get().expect("mm::init ran");
    // The new table's contents before the entry that makes it reachable.
    pal::mb();
    // SAFETY: `w.l2` is the L2 page built by `init`; entry 0 maps the window.
    unsafe {
        core::ptr::write_volatile(
            w.l2 as *mut u64,
            pte(pfn(new_kseg), PTE_VALID | PTE_KRE | PTE_KWE),
        )
    };
    pal::mb();
    L3.swap(new_kseg, core::sync::atomic::Ordering::AcqRel)
}

/// A software walk of the live page table for window page `index`, as a
/// lockless walker does it (the caller holds the walk guard): L1 entry, L2
/// table, L2 entry, L3 table, L3 entry. Returns the L3 table's KSEG address
/// and the PTE read there.
pub fn walk(index: u64) -> (u64, u64) {
    let w = WINDOW.get().expect("mm::init ran");
    let kseg_of = |pte: u64| KSEG | ((pte >> 32) << 13);
    // SAFETY: every address is a KSEG address of a page-table page reached
    // from the window's L1 entry, which `init` filled and only `release`
    // empties at the end of the run; page-table pages are never returned to
    // the heap (freed ones are poisoned and kept by their owner).
    unsafe {
        let l1e = core::ptr::read_volatile(w.l1_entry as *const u64);
        let l2 = kseg_of(l1e);
        let l2e = core::ptr::read_volatile(l2 as *const u64);
        let l3 = kseg_of(l2e);
        let pte = core::ptr::read_volatile((l3 + 8 * (index & (USER_PAGES - 1))) as *const u64);
        (l3, pte)
    }
}
