// Shared by arch/alpha/build.rs and arch/alpha/boot/build.rs (`include!`):
// assembles one .S file with the cross toolchain.

/// Assembles `src` into `out/<stem>.o` and returns the object's path.
fn assemble(src: &std::path::Path, out: &std::path::Path) -> std::path::PathBuf {
    println!("cargo:rerun-if-changed={}", src.display());
    let obj = out.join(src.file_stem().unwrap()).with_extension("o");
    let status = std::process::Command::new("alpha-linux-gnu-gcc-12")
        // -mcpu=ev6: the oldest CPU the kernel claims (xtask's
        // toolchain::CPU); the assembler then refuses EV67-only
        // instructions. -g: line tables for the assembly too, so reports
        // and gdb name file:line inside it.
        .args(["-mcpu=ev6", "-g", "-c", "-x", "assembler-with-cpp"])
        .arg(src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("cannot run alpha-linux-gnu-gcc-12 (cargo xtask installs it)");
    assert!(status.success(), "assembling {} failed", src.display());
    obj
}
