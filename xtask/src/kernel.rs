//! Building the kernel ELF with the project's Alpha toolchain.

use std::path::PathBuf;
use std::process::Command;

use crate::toolchain::Toolchain;
use crate::util::{Context, Error, Result, err, repo_root};

/// Builds `arch/alpha` (release profile) and returns the kernel ELF's path.
pub fn build(tc: &Toolchain) -> Result<PathBuf> {
    let root = repo_root();
    let target_dir = root.join("target/alpha");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root)
        .env("RUSTUP_TOOLCHAIN", &tc.rust_toolchain)
        .env("CARGO_ENCODED_RUSTFLAGS", tc.rustflags().join("\x1f"))
        .env("ALPHASMP_LIBGCC", &tc.libgcc)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .args(["build", "--release", "--workspace", "-Zjson-target-spec", "--manifest-path"])
        .arg(root.join("arch/alpha/Cargo.toml"))
        .arg("--target")
        .arg(&tc.target_json)
        .arg("--target-dir")
        .arg(&target_dir);
    let out = cmd.output().context(|| "starting cargo for the kernel".into())?;
    if !out.status.success() {
        let log = root.join("target/alpha/build-kernel.log");
        std::fs::create_dir_all(log.parent().unwrap()).ok();
        std::fs::write(&log, &out.stderr).ok();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Show the compiler's own diagnostics: they are what the user needs.
        eprintln!("{}", stderr.trim_end());
        return Err(Error { message: "kernel build failed".into(), log: Some(log) });
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("warning") {
        // Warnings are the compiler telling us something: never hide them.
        eprintln!("{}", stderr.trim_end());
    }
    let elf = target_dir.join("alpha-unknown-none/release/kernel");
    if !elf.exists() {
        return Err(err(format!("kernel build succeeded but {} is missing", elf.display())));
    }
    Ok(elf)
}
