//! Building the kernel ELF with the project's Alpha toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::toolchain::Toolchain;
use crate::util::{Context, Error, Result, err, repo_root};

/// `cargo SUBCOMMAND` over the Alpha workspace (kernel and boot binaries)
/// with the project's toolchain, release profile, into `target_dir`.
fn alpha_cargo(tc: &Toolchain, subcommand: &str, target_dir: &Path) -> Command {
    let root = repo_root();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root)
        .env("RUSTUP_TOOLCHAIN", &tc.rust_toolchain)
        .env("CARGO_ENCODED_RUSTFLAGS", tc.rustflags().join("\x1f"))
        .env("ALPHASMP_LIBGCC", &tc.libgcc)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .args([
            subcommand,
            "--release",
            "--workspace",
            "-Zjson-target-spec",
            "--manifest-path",
        ])
        .arg(root.join("arch/alpha/Cargo.toml"))
        .arg("--target")
        .arg(&tc.target_json)
        .arg("--target-dir")
        .arg(target_dir);
    cmd
}

/// Runs clippy over the Alpha workspace with every warning an error and
/// the unsafe-documentation lint on (the host crates get it from the
/// repository's workspace lints).
pub fn clippy(tc: &Toolchain) -> Result<()> {
    let root = repo_root();
    let mut cmd = alpha_cargo(tc, "clippy", &root.join("target/alpha-clippy"));
    cmd.args([
        "--",
        "-D",
        "warnings",
        "-D",
        "clippy::undocumented_unsafe_blocks",
    ]);
    let status = cmd
        .status()
        .context(|| "starting cargo clippy for the kernel".into())?;
    if status.success() {
        Ok(())
    } else {
        Err(err("clippy found problems in the Alpha crates (above)"))
    }
}

/// Builds `arch/alpha` (release profile) and returns the kernel ELF's path.
pub fn build(tc: &Toolchain) -> Result<PathBuf> {
    build_in(tc, &repo_root().join("target/alpha"), None)
}

/// Builds the kernel with the code after the assembly shifted by `pad`
/// bytes (linker.ld's `__text_pad`), in a target directory of its own so
/// the usual build stays as it is, and returns the ELF's path there.
pub fn build_layout(tc: &Toolchain, pad: u64) -> Result<PathBuf> {
    if !pad.is_multiple_of(4) || pad > 1 << 20 {
        return Err(err(format!(
            "text pad {pad}: not a multiple of 4 bytes up to 1 MiB"
        )));
    }
    build_in(tc, &repo_root().join("target/alpha-layouts"), Some(pad))
}

fn build_in(tc: &Toolchain, target_dir: &Path, pad: Option<u64>) -> Result<PathBuf> {
    let mut cmd = alpha_cargo(tc, "build", target_dir);
    match pad {
        Some(p) => cmd.env("ALPHASMP_TEXT_PAD", p.to_string()),
        None => cmd.env_remove("ALPHASMP_TEXT_PAD"),
    };
    let out = cmd
        .output()
        .context(|| "starting cargo for the kernel".into())?;
    if !out.status.success() {
        let log = target_dir.join("build-kernel.log");
        std::fs::create_dir_all(log.parent().unwrap()).ok();
        std::fs::write(&log, &out.stderr).ok();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Show the compiler's own diagnostics: they are what the user needs.
        eprintln!("{}", stderr.trim_end());
        return Err(Error {
            message: "kernel build failed".into(),
            log: Some(log),
        });
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("warning") {
        // Warnings are the compiler telling us something: never hide them.
        eprintln!("{}", stderr.trim_end());
    }
    let elf = target_dir.join("alpha-unknown-none/release/kernel");
    if !elf.exists() {
        return Err(err(format!(
            "kernel build succeeded but {} is missing",
            elf.display()
        )));
    }
    // The kernel and the boot binaries built beside it must run on EV6.
    for name in ["kernel", "loader", "srmemu"] {
        let bin = target_dir.join("alpha-unknown-none/release").join(name);
        if bin.exists() {
            check_no_cix_once(&bin)?;
        }
    }
    Ok(elf)
}

/// The count-extension (CIX) mnemonics: EV67 and later have them, EV6
/// traps on them as illegal instructions.
pub const CIX_MNEMONICS: &[&str] = &["ctpop", "ctlz", "cttz"];

/// The CIX instructions in an `objdump -d` listing, as `(function,
/// instruction line)` pairs in listing order.
pub fn cix_instructions(listing: &str) -> Vec<(String, String)> {
    instructions_where(listing, |m| CIX_MNEMONICS.contains(&m))
}

/// Whether an instruction (its mnemonic, `objdump`'s spelling, qualifiers
/// after a `/`) uses the floating-point unit: loads and stores of FP
/// registers, FP branches, operates, conversions, moves to and from the
/// FPCR and between register files, and `fnop` (an FP operate).
pub fn is_fp_mnemonic(mnemonic: &str) -> bool {
    let m = mnemonic.split('/').next().unwrap_or("");
    const EXACT: &[&str] = &[
        "ldf", "ldg", "lds", "ldt", "stf", "stg", "sts", "stt", "fbeq", "fbne", "fblt", "fble",
        "fbgt", "fbge", "cpys", "cpysn", "cpyse", "fnop", "fclr", "fmov", "fneg", "fabs",
        "mt_fpcr", "mf_fpcr", "adds", "addt", "addf", "addg", "subs", "subt", "subf", "subg",
        "muls", "mult", "mulf", "mulg", "divs", "divt", "divf", "divg",
    ];
    EXACT.contains(&m)
        || ["cvt", "fcmov", "cmpt", "cmpg", "sqrt", "itof", "ftoi"]
            .iter()
            .any(|p| m.starts_with(p))
}

/// The floating-point instructions in an `objdump -d` listing, as
/// [`cix_instructions`].
pub fn fp_instructions(listing: &str) -> Vec<(String, String)> {
    instructions_where(listing, is_fp_mnemonic)
}

fn instructions_where(listing: &str, hit: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut function = String::new();
    let mut found = Vec::new();
    for line in listing.lines() {
        // `0000000001010000 <name>:` opens a function.
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, n)| n)
        {
            function = name.to_string();
            continue;
        }
        // `    1010004:\t20 00 e0 73 \tcttz\tt0,t1`: the mnemonic is the
        // third tab-separated field.
        let mnemonic = line.split('\t').nth(2).map(str::trim).unwrap_or("");
        if !mnemonic.is_empty() && hit(mnemonic) {
            found.push((function.clone(), line.trim().to_string()));
        }
    }
    found
}

/// [`check_no_cix`], skipped for a binary already checked as it is now:
/// a stamp beside it (`NAME.cix-ok`) holds the length and modification
/// time it had when it passed; any rebuild changes them. (Disassembling
/// the three binaries was a quarter of a second of every `./x run`.)
pub fn check_no_cix_once(elf: &Path) -> Result<()> {
    let stamp = elf.with_extension("cix-ok");
    let now = identity(elf);
    if now.is_some() && std::fs::read_to_string(&stamp).ok() == now {
        return Ok(());
    }
    check_no_cix(elf)?;
    if let Some(id) = now {
        // Best effort: without the stamp the next build checks again.
        std::fs::write(&stamp, id).ok();
    }
    Ok(())
}

/// A file's length and modification time (ns), as one line; `None` when
/// they cannot be read.
fn identity(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{} {t}\n", m.len()))
}

/// Refuses an ELF that holds CIX instructions, which an EV6 CPU (DS10,
/// DS20, early ES40) cannot run ([`crate::toolchain::CPU`]), or
/// floating-point ones: DEC's console starts the secondary CPUs with
/// floating point disabled (FEN 0 in the PCB it loads; qemu-palcode takes
/// the slot's, where the kernel writes 1), so one would fault there only
/// on a real machine (docs/hardware.md §2).
pub fn check_no_cix(elf: &Path) -> Result<()> {
    let out = Command::new("alpha-linux-gnu-objdump")
        .arg("-d")
        .arg(elf)
        .output()
        .context(|| "starting alpha-linux-gnu-objdump (binutils-alpha-linux-gnu)".into())?;
    if !out.status.success() {
        return Err(err(format!(
            "alpha-linux-gnu-objdump -d {} failed",
            elf.display()
        )));
    }
    let found = cix_instructions(&String::from_utf8_lossy(&out.stdout));
    if let Some((function, line)) = found.first() {
        return Err(err(format!(
            "{} holds {} CIX instruction(s), which EV6 CPUs cannot run (first in {function}: {line}); build with -mcpu={}",
            elf.display(),
            found.len(),
            crate::toolchain::CPU
        )));
    }
    let fp = fp_instructions(&String::from_utf8_lossy(&out.stdout));
    if let Some((function, line)) = fp.first() {
        return Err(err(format!(
            "{} holds {} floating-point instruction(s), which fault on the secondary CPUs a DEC console starts with floating point disabled (first in {function}: {line})",
            elf.display(),
            fp.len(),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cix_instructions_are_found_by_mnemonic_and_function() {
        let listing = "\n\
0000000001010000 <_RNvNtCs1_6kernel3smp4boot>:\n\
 1010000:\t00 00 fe 2f \tunop\t\n\
 1010004:\t20 06 e1 73 \tcttz\tt0,t1\n\
\n\
0000000001010010 <other>:\n\
 1010010:\t20 06 e1 73 \tctpop\tt0,t1\n\
 1010014:\t01 04 e1 47 \tmov\tt0,t0\n\
 1010018:\t00 00 00 00 \thalt\t# the name cttz in a comment\n";
        let found = cix_instructions(listing);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "_RNvNtCs1_6kernel3smp4boot");
        assert!(found[0].1.contains("cttz"));
        assert_eq!(found[1].0, "other");
        assert!(cix_instructions("").is_empty());
    }

    #[test]
    fn fp_instructions_are_found_and_integer_lookalikes_are_not() {
        let listing = "\n\
0000000001010000 <f>:\n\
 1010000:\t00 00 fe 2f \tunop\t\n\
 1010004:\t00 00 5e 9c \tstt\t$f2,0(sp)\n\
 1010008:\t1f 04 ff 5f \tfnop\t\n\
 101000c:\t00 00 00 00 \tcvtqt/d\t$f1,$f2\n\
 1010010:\t02 04 22 40 \taddq\tt0,t1,t1\n\
 1010014:\t02 04 22 40 \tmull\tt0,t1,t1\n\
 1010018:\t02 04 22 40 \tsubl\tt0,t1,t1\n\
 101001c:\t00 00 00 00 \tmult/su\t$f1,$f2,$f3\n\
 1010020:\t00 00 00 00 \tldq\tt0,0(sp)\t# stt in a comment\n";
        let found: Vec<String> = fp_instructions(listing)
            .into_iter()
            .map(|(f, l)| {
                assert_eq!(f, "f");
                l.split('\t').nth(2).unwrap().to_string()
            })
            .collect();
        assert_eq!(found, ["stt", "fnop", "cvtqt/d", "mult/su"]);
        for m in [
            "ldt", "cpys", "mt_fpcr", "fcmoveq", "itoft", "ftoit", "sqrtt/su", "cmpteq",
        ] {
            assert!(is_fp_mnemonic(m), "{m}");
        }
        for m in [
            "addq", "subq", "mulq", "umulh", "cmpeq", "cmpult", "stq", "ldl", "s4addq",
        ] {
            assert!(!is_fp_mnemonic(m), "{m}");
        }
    }

    /// The check is skipped only for the very file it passed: a stamp
    /// that matches skips it, a changed file is checked again. (A file
    /// that is not an ELF makes the check itself fail, which is what shows
    /// that it ran.)
    #[test]
    fn a_stamp_skips_the_check_only_for_the_file_it_names() {
        let dir = std::env::temp_dir().join(format!("alphasmp-cix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("kernel");
        std::fs::write(&bin, b"not an ELF").unwrap();
        assert!(check_no_cix_once(&bin).is_err(), "no stamp: checked");
        let stamp = bin.with_extension("cix-ok");
        assert!(!stamp.exists(), "a failed check leaves no stamp");
        std::fs::write(&stamp, identity(&bin).unwrap()).unwrap();
        assert!(
            check_no_cix_once(&bin).is_ok(),
            "stamp of this file: skipped"
        );
        std::fs::write(&bin, b"not an ELF either").unwrap();
        assert!(
            check_no_cix_once(&bin).is_err(),
            "changed file: checked again"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
