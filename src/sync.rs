//! The atomics the lock-free modules use. The loom tests (tests/loom.rs)
//! compile `mailbox.rs`, `queue.rs` and `xcall.rs` with a `sync` module of
//! their own that supplies loom's checked atomics under the same names.

pub use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
