//! User-range mappings in the three-level page table, for testing TLB
//! shootdown against real translations.
//!
//! Every CPU runs on the console's page table (PTBR from its PCB). Its L1
//! maps the HWRPB pointer at VA 0x10000000 (L1 slot 0) and itself at slot
//! 1023 (the VPTB self-map). We hang our own L2/L3 tables off L1 slot 1, so
//! user VAs from 0x2_0000_0000 map to frames we choose, on every CPU.
//!
//! Alpha: 8 KB pages, 43-bit VAs, 10 bits per level; a PTE holds the PFN in
//! bits 63:32 and permission bits below (docs: qemu-alpha.md 1.3).

use alloc::alloc::{Layout, alloc_zeroed};

use crate::hwrpb::KSEG;
use crate::pal;

pub const PAGE: u64 = 8192;
/// First VA of the test window (L1 slot 1).
pub const USER_BASE: u64 = 1 << 33;
/// Pages in the window (one L3 table).
pub const USER_PAGES: u64 = 1024;

const PTE_VALID: u64 = 1 << 0;
const PTE_KRE: u64 = 1 << 8;
const PTE_KWE: u64 = 1 << 12;

static L3: spin::Once<u64> = spin::Once::new();

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
pub fn init(console_ptbr_pfn: u64) {
    L3.call_once(|| {
        let l1 = KSEG | (console_ptbr_pfn << 13);
        let l2 = alloc_page();
        let l3 = alloc_page();
        // SAFETY: l2 and l1 are page-table pages in KSEG; slot 0 of the new
        // L2 and slot 1 of L1 are unused (the console maps only slots 0 and
        // 1023 of L1).
        unsafe {
            core::ptr::write_volatile(l2 as *mut u64, pte(pfn(l3), PTE_VALID | PTE_KRE | PTE_KWE));
            let slot1 = (l1 + 8) as *mut u64;
            assert_eq!(core::ptr::read_volatile(slot1), 0, "L1 slot 1 already in use");
            core::ptr::write_volatile(slot1, pte(pfn(l2), PTE_VALID | PTE_KRE | PTE_KWE));
        }
        pal::mb();
        l3
    });
}

/// Points window page `index` at the frame `frame_kseg` (or unmaps it).
/// No TLB flush: that is the caller's job, which is what the tests test.
pub fn set(index: u64, frame_kseg: Option<u64>) {
    assert!(index < USER_PAGES, "window page {index} out of range");
    let l3 = *L3.get().expect("mm::init ran");
    let value = frame_kseg.map_or(0, |f| pte(pfn(f), PTE_VALID | PTE_KRE | PTE_KWE));
    // SAFETY: `index` is within the L3 page built by `init`.
    unsafe { core::ptr::write_volatile((l3 + 8 * index) as *mut u64, value) };
    pal::mb();
}

/// The VA of window page `index`.
pub fn va(index: u64) -> u64 {
    USER_BASE + index * PAGE
}

/// Reads the first quadword of window page `index` through the TLB.
pub fn read(index: u64) -> u64 {
    // SAFETY: the window is mapped by the test before it reads (an unmapped
    // read would be a reported memory-management fault, not UB in Rust's
    // sense, but tests only read mapped pages).
    unsafe { core::ptr::read_volatile(va(index) as *const u64) }
}
