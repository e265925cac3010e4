//! The project's build tool, as a library so the host integration tests in
//! `tests/` can build and boot the kernel with the same code as `cargo xtask`.

pub mod ab;
pub mod bench;
pub mod gdb;
pub mod image;
pub mod kernel;
pub mod linux;
pub mod matrix;
pub mod profile;
pub mod qemu;
pub mod report;
pub mod rustnames;
pub mod symbolize;
pub mod testrun;
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

/// The kernel, the SRM-entry emulation and the two SRM images built from
/// them (written to `target/image/`).
pub struct Images {
    pub kernel: PathBuf,
    pub emulation: PathBuf,
    pub written: image::Written,
}

/// Builds (or, under `ALPHASMP_KERNEL`, takes) the kernel and the boot
/// binaries beside it, and writes the images.
pub fn images(quiet: bool) -> util::Result<Images> {
    let kernel = kernel_elf(quiet)?;
    let dir = kernel.parent().expect("the kernel ELF is in a directory");
    let loader = dir.join("loader");
    let emulation = dir.join("srmemu");
    for p in [&loader, &emulation] {
        if !p.exists() {
            return Err(util::err(format!(
                "{} is missing (built with the kernel by cargo xtask build)",
                p.display()
            )));
        }
    }
    let written = image::write(&loader, &kernel, &util::repo_root().join("target/image"))?;
    Ok(Images {
        kernel,
        emulation,
        written,
    })
}
