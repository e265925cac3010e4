//! Assembles each binary's entry code (asm/<bin>.S) and the CRB call stub
//! and string routines it shares with the kernel (../asm/crb.S,
//! ../asm/string.S), and links each binary with its own linker script:
//! the loader at the virtual address SRM loads images at, the SRM-entry
//! emulation in KSEG like the kernel. ALPHASMP_LIBGCC comes from
//! `cargo xtask build`.

use std::path::PathBuf;

include!("../assemble.rs");

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let shared: Vec<PathBuf> = ["crb.S", "string.S"]
        .iter()
        .map(|f| assemble(&dir.join("../asm").join(f), &out))
        .collect();
    println!("cargo:rerun-if-env-changed=ALPHASMP_LIBGCC");
    for bin in ["loader", "srmemu"] {
        let own = assemble(&dir.join("asm").join(format!("{bin}.S")), &out);
        let script = dir.join(format!("{bin}.ld"));
        println!("cargo:rerun-if-changed={}", script.display());
        println!("cargo:rustc-link-arg-bin={bin}=-T{}", script.display());
        println!("cargo:rustc-link-arg-bin={bin}=-nostdlib");
        println!("cargo:rustc-link-arg-bin={bin}=--no-warn-rwx-segments");
        for obj in std::iter::once(&own).chain(&shared) {
            println!("cargo:rustc-link-arg-bin={bin}={}", obj.display());
        }
        if let Ok(libgcc) = std::env::var("ALPHASMP_LIBGCC") {
            println!("cargo:rustc-link-arg-bin={bin}={libgcc}");
        }
    }
}
