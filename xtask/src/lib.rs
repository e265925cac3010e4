//! The project's build tool, as a library so the host integration tests in
//! `tests/` can build and boot the kernel with the same code as `cargo xtask`.

pub mod toolchain;
pub mod util;
