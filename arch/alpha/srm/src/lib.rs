//! What an SRM console hands a kernel, as plain data.
//!
//! The HWRPB (with its per-CPU slots and memory clusters), the machine it
//! describes, and the result words of the Console Callback Routines are
//! architected layouts (docs/hardware.md §2 and §3). This crate reads
//! them through a small memory trait and decides from them, and nothing
//! here touches hardware, so the same code runs in the kernel over KSEG
//! pointers and in host tests over synthetic tables shaped like real
//! consoles' (Marvel's sparse CPU slots, reserved clusters, negative system
//! types).

#![cfg_attr(not(test), no_std)]

pub mod cchip;
pub mod crb;
pub mod ev7_logout;
pub mod hwrpb;
pub mod image;
pub mod io7;
pub mod isa;
pub mod machine;
pub mod pagetable;
pub mod start;
pub mod vectors;
