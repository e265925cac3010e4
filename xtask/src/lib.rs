//! The project's build tool, as a library so the host integration tests in
//! `tests/` can build and boot the kernel with the same code as `cargo xtask`.

pub mod bench;
pub mod gdb;
pub mod kernel;
pub mod matrix;
pub mod qemu;
pub mod symbolize;
pub mod toolchain;
pub mod util;

use std::path::PathBuf;

/// Ensures the toolchain and builds the kernel; returns the ELF path.
/// `ALPHASMP_KERNEL` (set by `cargo xtask test`) short-cuts both.
pub fn kernel_elf(quiet: bool) -> util::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ALPHASMP_KERNEL") {
        return Ok(PathBuf::from(path));
    }
    let tc = toolchain::ensure(quiet)?;
    kernel::build(&tc)
}
