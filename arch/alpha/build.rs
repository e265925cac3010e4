//! Assembles arch/alpha/asm/*.S with the cross toolchain and links them, the
//! linker script and libgcc.a into the kernel. The Alpha toolchain's paths
//! come from `cargo xtask build` through ALPHASMP_LIBGCC.

use std::path::PathBuf;

include!("assemble.rs");

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let asm = dir.join("asm");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&asm)
        .expect("arch/alpha/asm")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "S"))
        .collect();
    sources.sort();
    let objects: Vec<PathBuf> = sources.iter().map(|src| assemble(src, &out)).collect();
    let linker_script = dir.join("../../linker.ld");
    println!("cargo:rerun-if-changed={}", linker_script.display());
    println!("cargo:rerun-if-env-changed=ALPHASMP_LIBGCC");
    // `cargo xtask layouts`: the code after the assembly shifted by this
    // many bytes (linker.ld's __text_pad), a multiple of 4. Before the
    // script: its DEFINED() sees only symbols defined ahead of it.
    println!("cargo:rerun-if-env-changed=ALPHASMP_TEXT_PAD");
    if let Ok(pad) = std::env::var("ALPHASMP_TEXT_PAD") {
        let bytes: u64 = pad
            .parse()
            .ok()
            .filter(|b| b % 4 == 0 && *b <= 1 << 20)
            .unwrap_or_else(|| {
                panic!("ALPHASMP_TEXT_PAD={pad}: not a multiple of 4 bytes up to 1 MiB")
            });
        println!("cargo:rustc-link-arg=--defsym=__text_pad={bytes}");
    }
    println!("cargo:rustc-link-arg=-T{}", linker_script.display());
    println!("cargo:rustc-link-arg=-nostdlib");
    // One loadable segment holds text and data: the kernel runs in KSEG,
    // which the MMU does not translate, so segment permissions would have
    // no effect anyway, and a single segment is what an SRM raw image is.
    println!("cargo:rustc-link-arg=--no-warn-rwx-segments");
    for obj in &objects {
        println!("cargo:rustc-link-arg={}", obj.display());
    }
    if let Ok(libgcc) = std::env::var("ALPHASMP_LIBGCC") {
        println!("cargo:rustc-link-arg={libgcc}");
    }
}
