//! The kernel heap: `linked_list_allocator` over the memory after the kernel
//! image, behind `alloc`'s global allocator.
//!
//! The allocator's spin lock is taken at IPL 7, so an interrupt handler that
//! allocates cannot deadlock against the code it interrupted on its CPU.

use core::alloc::{GlobalAlloc, Layout};

use linked_list_allocator::LockedHeap;

use crate::ipl::{self, IplGuard};

pub struct KernelHeap(LockedHeap);

// SAFETY: delegates to LockedHeap, which is a correct GlobalAlloc; the IPL
// guard only changes which interrupts may arrive meanwhile.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ipl = IplGuard::raise(ipl::HIGH);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ipl = IplGuard::raise(ipl::HIGH);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(LockedHeap::empty());

/// Hands `[start, start + size)` to the allocator.
///
/// # Safety
/// The range must be unused RAM, mapped (KSEG), and this must be called once.
pub unsafe fn init(start: u64, size: u64) {
    let _ipl = IplGuard::raise(ipl::HIGH);
    // SAFETY: guaranteed by the caller.
    unsafe { HEAP.0.lock().init(start as *mut u8, size as usize) };
}

/// Bytes currently allocated.
pub fn used() -> usize {
    let _ipl = IplGuard::raise(ipl::HIGH);
    HEAP.0.lock().used()
}

/// Total heap size in bytes.
pub fn size() -> usize {
    let _ipl = IplGuard::raise(ipl::HIGH);
    HEAP.0.lock().size()
}
