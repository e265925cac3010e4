//! The call-function queue's lock-free parts: the call descriptor with its
//! lock flag, and each CPU's queue of descriptors (protocol in
//! `crate::xcall`'s module docs). Atomics come from `crate::sync`, so the
//! loom tests (tests/loom.rs) compile this very file against loom's.

use core::ptr;

use crate::sync::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// A function run on another CPU, with its argument.
pub type CallFn = fn(usize);

/// The descriptor is in use (queued, or being filled by its owner).
pub const LOCK: u32 = 1;
/// The caller waits: unlock only after the function ran.
pub const SYNC: u32 = 2;

/// A call descriptor (Linux's `call_single_data`).
#[repr(align(64))]
pub struct Csd {
    pub flags: AtomicU32,
    pub func: AtomicUsize,
    pub arg: AtomicUsize,
    pub next: AtomicPtr<Csd>,
    /// The CPU that queued it (whom to wake when a SYNC call is done).
    pub owner: AtomicUsize,
}

impl Csd {
    pub const fn new() -> Self {
        Csd {
            flags: AtomicU32::new(0),
            func: AtomicUsize::new(0),
            arg: AtomicUsize::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
            owner: AtomicUsize::new(0),
        }
    }
    /// Whether the descriptor is still in use (Acquire: a waiter that sees
    /// it unlocked sees everything the function did).
    #[inline]
    pub fn locked(&self) -> bool {
        self.flags.load(Ordering::Acquire) & LOCK != 0
    }
    /// [`locked`](Self::locked) without the Acquire, for a waiter's
    /// repeated looks: the wait that sees it unlocked issues one Acquire
    /// fence afterwards (Linux's `smp_cond_load_acquire` shape), instead
    /// of a barrier on every look.
    #[inline]
    pub fn locked_relaxed(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & LOCK != 0
    }
}

impl Default for Csd {
    fn default() -> Self {
        Self::new()
    }
}

/// A CPU's queue of pending calls: a Treiber stack that is only ever pushed
/// (by any CPU) and emptied whole (by its owner), so it has no ABA problem.
pub struct CallQueue {
    head: AtomicPtr<Csd>,
}

impl Default for CallQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl CallQueue {
    pub const fn new() -> Self {
        CallQueue {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes `csd` (Release: publishes its fields); returns true if the
    /// queue was empty, i.e. the caller must interrupt the owner.
    pub fn push(&self, csd: &Csd) -> bool {
        let new = csd as *const Csd as *mut Csd;
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            csd.next.store(head, Ordering::Relaxed);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return head.is_null(),
                Err(h) => head = h,
            }
        }
    }

    /// Takes the whole queue (Acquire), newest first.
    pub fn take_all(&self) -> *mut Csd {
        self.head.swap(ptr::null_mut(), Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Owner side: takes the queue and runs every descriptor in arrival
    /// order, unlocking each per its kind (SYNC after the call, async
    /// before). Returns the number run.
    ///
    /// # Safety
    /// Only the owner CPU may call this, and every queued descriptor must
    /// stay valid until it is unlocked (descriptors live in static or
    /// otherwise outliving storage, and their owners do not touch a locked
    /// descriptor).
    pub unsafe fn run_all(&self) -> usize {
        // SAFETY: the caller's contract is this function's.
        unsafe { self.run_all_then(|_| {}) }
    }

    /// [`run_all`](Self::run_all), calling `done(owner)` after each
    /// descriptor is unlocked (a SYNC call's waiter, or an owner waiting to
    /// reuse an async descriptor, may be napping: the caller wakes it).
    /// `owner` is read before the unlock, like `next`.
    ///
    /// # Safety
    /// As for [`run_all`](Self::run_all).
    pub unsafe fn run_all_then(&self, mut done: impl FnMut(usize)) -> usize {
        // Reverse the LIFO list into arrival order.
        let mut list = self.take_all();
        let mut fifo: *mut Csd = ptr::null_mut();
        while !list.is_null() {
            // SAFETY: queued descriptors are valid and locked (caller's
            // contract); we are the queue's only consumer.
            let csd = unsafe { &*list };
            let next = csd.next.load(Ordering::Relaxed);
            csd.next.store(fifo, Ordering::Relaxed);
            fifo = list;
            list = next;
        }
        let mut ran = 0;
        while !fifo.is_null() {
            // SAFETY: as above; still locked, so still ours to read.
            let csd = unsafe { &*fifo };
            // Read `next` before unlocking: from the unlock on, the owner
            // may reuse the descriptor.
            let next = csd.next.load(Ordering::Relaxed);
            let func = csd.func.load(Ordering::Relaxed);
            let arg = csd.arg.load(Ordering::Relaxed);
            // SAFETY: `func` was stored from a `CallFn` by the caller that
            // queued the descriptor.
            let f: CallFn = unsafe { core::mem::transmute::<usize, CallFn>(func) };
            ran += 1;
            let owner = csd.owner.load(Ordering::Relaxed);
            if csd.flags.load(Ordering::Relaxed) & SYNC != 0 {
                f(arg);
                csd.flags.store(0, Ordering::Release);
                done(owner);
            } else {
                csd.flags.store(0, Ordering::Release);
                // The owner may be napping until this descriptor is free
                // (its next call to this CPU waits for it).
                done(owner);
                f(arg);
            }
            fifo = next;
        }
        ran
    }
}

// Not under loom: tests/loom.rs compiles this file with loom's atomics,
// which only work inside a loom model.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// `is_empty` (the watchdog report's "queue pending", and
    /// `CpuState::call_pending`) follows pushes and takes, and only the push
    /// that finds the queue empty owes an interrupt.
    #[test]
    fn emptiness_follows_push_and_take() {
        let q = CallQueue::new();
        let (a, b) = (Csd::new(), Csd::new());
        assert!(q.is_empty());
        assert!(q.push(&a), "the first push owes the interrupt");
        assert!(!q.is_empty());
        assert!(!q.push(&b), "a push onto a non-empty queue piggybacks");
        let head = q.take_all();
        assert_eq!(head, &b as *const Csd as *mut Csd, "newest first");
        assert!(q.is_empty(), "taken");
        assert!(q.push(&a), "empty again: the next push owes an interrupt");
    }
}
