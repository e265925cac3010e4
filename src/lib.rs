//! Portable SMP core of the Alpha kernel.
//!
//! Everything here is `no_std` and free of Alpha specifics, so the same code
//! runs in the kernel (arch/alpha) and in host tests. The hardware is reached
//! only through the platform trait; see the README for the layering.

#![cfg_attr(not(test), no_std)]

pub mod census;
pub mod counter;
pub mod cpuid;
pub mod cpulock;
pub mod cpumask;
pub mod hostcores;
pub mod idlepoll;
pub mod lazyflush;
pub mod line;
pub mod listen;
pub mod mailbox;
pub mod platform;
pub mod ptfree;
pub mod queue;
pub mod recover;
pub mod rng;
pub mod scale;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sync;
pub mod task;
pub mod taskslot;
pub mod timefloor;
pub mod tlb;
pub mod xcall;
