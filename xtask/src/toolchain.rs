//! The Rust-to-Alpha toolchain, built once into a cache outside the repository.
//!
//! Four stages, each in its own cache directory named by a hash of its inputs,
//! so a change to one input rebuilds only what depends on it:
//!
//! | stage | inputs in the key | output |
//! |---|---|---|
//! | `libgccjit` | GCC source package version and tarball, `patches/gcc/*`, configure flags | `libgccjit.so` for `--target=alpha-linux-gnu` |
//! | `backend` | `rustc -vV`, `patches/backend/*` | `librustc_codegen_gcc.so`, built from the rustc-dev component |
//! | `sysroot` | `rustc -vV`, `patches/library/*`, the target JSON, [`CPU`], the two keys above | `core`, `compiler_builtins`, `alloc` rlibs plus libgccjit where the backend looks for it |
//!
//! A stage is complete when its `DONE` file exists; it is built in a scratch
//! directory and renamed into place, so an interrupted build never looks done.
//! The cache root is `$ALPHASMP_CACHE`, else `$XDG_CACHE_HOME/alphasmp`, else
//! `~/.cache/alphasmp`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{Context, Key, Result, err, output, repo_root, run_logged};

/// Debian packages the toolchain and the QEMU runs need.
pub const PACKAGES: &[&str] = &[
    "binutils-alpha-linux-gnu",
    "gcc-12-alpha-linux-gnu",
    "gcc-12-source",
    "libgmp-dev",
    "libmpfr-dev",
    "libmpc-dev",
    "qemu-system-misc",
    "make",
    "patch",
    "g++",
    "xz-utils",
    // The Promela model checker for the cross-call protocol model.
    "spin",
    // `cargo xtask gdb`: a gdb that knows Alpha.
    "gdb-multiarch",
];

/// The CPU the kernel, the loader and the sysroot are compiled for: the
/// 21264 (EV6), the oldest CPU of the machines the kernel claims (DS10,
/// DS20, early ES40). EV6 lacks the count extension (CIX: `ctpop`, `ctlz`,
/// `cttz`) that EV67, EV68 and EV7 have, and traps on it as an illegal
/// instruction, so code built for EV67 dies on those machines; code built
/// for EV6 runs on all of them (docs/hardware.md, "CPU generations").
/// `cargo xtask build` checks the ELFs for CIX instructions
/// ([`crate::kernel::check_no_cix`]).
pub const CPU: &str = "ev6";

/// Bump to force every stage to rebuild (a change in how stages are built).
const RECIPE: &str = "1";

/// Configure flags of the libgccjit build (part of its cache key).
const GCC_CONFIGURE: &[&str] = &[
    "--target=alpha-linux-gnu",
    "--enable-languages=jit",
    "--enable-host-shared",
    "--disable-bootstrap",
    "--disable-multilib",
    "--disable-nls",
    "--disable-libsanitizer",
    "--without-headers",
    "--enable-checking=release",
    "--with-as=/usr/bin/alpha-linux-gnu-as",
    "--with-ld=/usr/bin/alpha-linux-gnu-ld",
];

/// Where everything the kernel build needs lives.
#[derive(Clone, Debug)]
pub struct Toolchain {
    /// The pinned nightly (from `rust-toolchain.toml`).
    pub rust_toolchain: String,
    /// Sysroot holding the Alpha `core`/`alloc` and libgccjit.
    pub sysroot: PathBuf,
    /// `librustc_codegen_gcc.so`.
    pub backend: PathBuf,
    /// The cross compiler's `libgcc.a` (128-bit arithmetic helpers).
    pub libgcc: PathBuf,
    /// `alpha-unknown-none.json`.
    pub target_json: PathBuf,
}

impl Toolchain {
    /// RUSTFLAGS for target crates (one flag per element).
    pub fn rustflags(&self) -> Vec<String> {
        vec![
            "--sysroot".into(),
            self.sysroot.display().to_string(),
            format!("-Zcodegen-backend={}", self.backend.display()),
            format!("-Cllvm-args=-mcpu={CPU}"),
            "-Cpanic=abort".into(),
        ]
    }
}

/// Cache root directory.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ALPHASMP_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
        });
    base.join("alphasmp")
}

/// The channel pinned in `rust-toolchain.toml`.
pub fn pinned_channel() -> Result<String> {
    let path = repo_root().join("rust-toolchain.toml");
    let text = fs::read_to_string(&path).context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(str::to_string)
        .next()
        .ok_or_else(|| err(format!("no channel in {}", path.display())))
}

/// Installs what is missing and builds (or reuses) every stage.
pub fn ensure(quiet: bool) -> Result<Toolchain> {
    let say = |s: &str| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    install_packages(PACKAGES, &say)?;
    let channel = pinned_channel()?;
    let rust_sysroot = ensure_rust_components(&channel)?;
    let rustc_version = output(
        Command::new("rustc")
            .env("RUSTUP_TOOLCHAIN", &channel)
            .arg("-vV"),
        "rustc -vV",
    )?;
    let root = cache_root();
    fs::create_dir_all(&root).context(|| format!("creating cache {}", root.display()))?;

    let (gcc_key, libgccjit) = libgccjit(&root, &say)?;
    let (backend_key, backend) = backend(&root, &channel, &rustc_version, &rust_sysroot, &say)?;
    let target_json = repo_root().join("alpha-unknown-none.json");
    let sysroot = sysroot(
        &root,
        &channel,
        &rustc_version,
        &rust_sysroot,
        &target_json,
        &gcc_key,
        &libgccjit,
        &backend_key,
        &backend,
        &say,
    )?;
    let libgcc = PathBuf::from(
        output(
            Command::new("alpha-linux-gnu-gcc-12").arg("-print-libgcc-file-name"),
            "locating libgcc.a",
        )?
        .trim(),
    );
    Ok(Toolchain {
        rust_toolchain: channel,
        sysroot,
        backend,
        libgcc,
        target_json,
    })
}

fn is_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the missing ones of `packages` with apt-get (the toolchain's,
/// and `linux`'s for `bench --linux`).
pub fn install_packages(packages: &[&str], say: &dyn Fn(&str)) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err(err(format!(
            "missing Debian packages {} and no apt-get: install them by hand",
            missing.join(" ")
        )));
    }
    say(&format!(
        "==> installing Debian packages: {}",
        missing.join(" ")
    ));
    let root = output(Command::new("id").arg("-u"), "id -u")?.trim() == "0";
    let apt = |args: &[&str]| -> Command {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    let log = cache_root().join("logs/apt.log");
    run_logged(
        "apt-get update",
        &mut apt(&["update"]),
        &log,
        Duration::from_secs(30),
    )?;
    let mut install = apt(&["install", "-y", "--no-install-recommends"]);
    install.args(&missing);
    run_logged(
        "apt-get install",
        &mut install,
        &log,
        Duration::from_secs(30),
    )?;
    Ok(())
}

/// Makes sure the pinned toolchain has rust-src, rustc-dev and miri; returns
/// its sysroot.
fn ensure_rust_components(channel: &str) -> Result<PathBuf> {
    let sysroot = |ch: &str| -> Result<PathBuf> {
        Ok(PathBuf::from(
            output(
                Command::new("rustc")
                    .env("RUSTUP_TOOLCHAIN", ch)
                    .args(["--print", "sysroot"]),
                "rustc --print sysroot",
            )?
            .trim(),
        ))
    };
    let have = |s: &Path| {
        cg_gcc_source(s).join("Cargo.toml").exists() && library_source(s).join("core").exists()
    };
    // Installing the toolchain itself happens through the rustup proxy on first use.
    let s = sysroot(channel)?;
    // rustup installs rust-toolchain.toml's components only with a new
    // toolchain, not into one that already exists; so check each here.
    let have_tools = ["cargo-miri", "rustfmt", "cargo-clippy"]
        .iter()
        .all(|t| s.join("bin").join(t).exists());
    if have(&s) && have_tools {
        return Ok(s);
    }
    eprintln!("==> adding rustup components rust-src rustc-dev miri rustfmt clippy to {channel}");
    output(
        Command::new("rustup").args([
            "component",
            "add",
            "--toolchain",
            channel,
            "rust-src",
            "rustc-dev",
            "miri",
            "rustfmt",
            "clippy",
        ]),
        "rustup component add",
    )?;
    let s = sysroot(channel)?;
    if !have(&s) {
        return Err(err(format!(
            "rust-src/rustc-dev of {channel} not found under {}",
            s.display()
        )));
    }
    Ok(s)
}

fn cg_gcc_source(rust_sysroot: &Path) -> PathBuf {
    rust_sysroot.join("lib/rustlib/rustc-src/rust/compiler/rustc_codegen_gcc")
}

fn library_source(rust_sysroot: &Path) -> PathBuf {
    rust_sysroot.join("lib/rustlib/src/rust/library")
}

fn patches(dir: &str) -> Result<Vec<PathBuf>> {
    let dir = repo_root().join("xtask/patches").join(dir);
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    v.sort();
    Ok(v)
}

fn apply_patches(list: &[PathBuf], dir: &Path, log: &Path) -> Result<()> {
    for p in list {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        run_logged(
            &format!("patch {name}"),
            Command::new("patch")
                .args(["-p1", "--forward", "--batch", "-i"])
                .arg(p)
                .current_dir(dir),
            log,
            Duration::from_secs(60),
        )?;
    }
    Ok(())
}

/// A stage directory: returns `Some(dir)` if complete, else a fresh scratch dir.
struct Stage {
    done_dir: PathBuf,
    scratch: PathBuf,
    log: PathBuf,
}

impl Stage {
    fn new(root: &Path, name: &str, key: &str) -> Self {
        Stage {
            done_dir: root.join(format!("{name}-{key}")),
            scratch: root.join("work").join(format!("{name}-{key}")),
            log: root.join("logs").join(format!("{name}-{key}.log")),
        }
    }
    fn is_done(&self) -> bool {
        self.done_dir.join("DONE").exists()
    }
    fn begin(&self) -> Result<PathBuf> {
        let _ = fs::remove_dir_all(&self.scratch);
        let _ = fs::remove_file(&self.log);
        let out = self.scratch.join("out");
        fs::create_dir_all(&out).context(|| format!("creating {}", out.display()))?;
        Ok(out)
    }
    /// Moves the scratch `out/` into place and marks it done.
    fn finish(&self) -> Result<()> {
        let out = self.scratch.join("out");
        fs::write(out.join("DONE"), b"").context(|| "writing DONE".into())?;
        let _ = fs::remove_dir_all(&self.done_dir);
        fs::rename(&out, &self.done_dir)
            .context(|| format!("moving into {}", self.done_dir.display()))?;
        let _ = fs::remove_dir_all(&self.scratch);
        Ok(())
    }
}

fn gcc_tarball() -> Result<PathBuf> {
    let dir = Path::new("/usr/src/gcc-12");
    let found = fs::read_dir(dir)
        .context(|| format!("reading {} (is gcc-12-source installed?)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("gcc-") && n.ends_with(".tar.xz")
        });
    found.ok_or_else(|| err("no gcc-*.tar.xz in /usr/src/gcc-12"))
}

fn libgccjit(root: &Path, say: &dyn Fn(&str)) -> Result<(String, PathBuf)> {
    let tarball = gcc_tarball()?;
    let mut key = Key::new("libgccjit");
    key.add("recipe", RECIPE.as_bytes());
    let pkg_version = output(
        Command::new("dpkg-query").args(["-W", "-f=${Version}", "gcc-12-source"]),
        "dpkg-query",
    )?;
    key.add("gcc-12-source", pkg_version.as_bytes());
    key.add(
        "tarball",
        tarball.file_name().unwrap_or_default().as_encoded_bytes(),
    );
    key.add(
        "tarball-size",
        &fs::metadata(&tarball)
            .map(|m| m.len())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    key.add("configure", GCC_CONFIGURE.join(" ").as_bytes());
    let gcc_patches = patches("gcc")?;
    for p in &gcc_patches {
        key.add_file(p)?;
    }
    let key = key.finish();
    let stage = Stage::new(root, "libgccjit", &key);
    let lib = stage.done_dir.join("libgccjit.so");
    if stage.is_done() {
        return Ok((key, lib));
    }
    say(&format!(
        "==> building libgccjit for alpha-linux-gnu (about 13 minutes on 2 cores; log: {})",
        stage.log.display()
    ));
    let out = stage.begin()?;
    let src_parent = stage.scratch.join("src");
    fs::create_dir_all(&src_parent).context(|| "creating source dir".into())?;
    run_logged(
        "unpack gcc",
        Command::new("tar")
            .arg("xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&src_parent),
        &stage.log,
        Duration::from_secs(30),
    )?;
    let src = fs::read_dir(&src_parent)
        .context(|| "reading unpacked gcc".into())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .ok_or_else(|| err("gcc tarball unpacked to nothing"))?;
    apply_patches(&gcc_patches, &src, &stage.log)?;
    let build = stage.scratch.join("build");
    fs::create_dir_all(&build).context(|| "creating build dir".into())?;
    run_logged(
        "configure gcc",
        Command::new(src.join("configure"))
            .args(GCC_CONFIGURE)
            .arg(format!(
                "--prefix={}",
                stage.scratch.join("prefix").display()
            ))
            .current_dir(&build),
        &stage.log,
        Duration::from_secs(30),
    )?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    run_logged(
        "make libgccjit",
        Command::new("make")
            .arg(format!("-j{jobs}"))
            .args(["all-gcc", "MAKEINFO=true"])
            .current_dir(&build),
        &stage.log,
        Duration::from_secs(30),
    )?;
    let built = build.join("gcc/libgccjit.so.0.0.1");
    if !built.exists() {
        return Err(crate::util::Error {
            message: format!("make finished but {} is missing", built.display()),
            log: Some(stage.log.clone()),
        });
    }
    fs::copy(&built, out.join("libgccjit.so")).context(|| "copying libgccjit.so".into())?;
    run_logged(
        "strip libgccjit",
        Command::new("strip")
            .arg("--strip-unneeded")
            .arg(out.join("libgccjit.so")),
        &stage.log,
        Duration::from_secs(30),
    )?;
    stage.finish()?;
    Ok((key, lib))
}

fn backend(
    root: &Path,
    channel: &str,
    rustc_version: &str,
    rust_sysroot: &Path,
    say: &dyn Fn(&str),
) -> Result<(String, PathBuf)> {
    let backend_patches = patches("backend")?;
    let mut key = Key::new("backend");
    key.add("recipe", RECIPE.as_bytes());
    key.add("rustc", rustc_version.as_bytes());
    for p in &backend_patches {
        key.add_file(p)?;
    }
    let key = key.finish();
    let stage = Stage::new(root, "backend", &key);
    let so = stage.done_dir.join("librustc_codegen_gcc.so");
    if stage.is_done() {
        return Ok((key, so));
    }
    say(&format!(
        "==> building rustc_codegen_gcc (about 1 minute; log: {})",
        stage.log.display()
    ));
    let out = stage.begin()?;
    let src = stage.scratch.join("rustc_codegen_gcc");
    run_logged(
        "copy rustc_codegen_gcc",
        Command::new("cp")
            .arg("-r")
            .arg(cg_gcc_source(rust_sysroot))
            .arg(&src),
        &stage.log,
        Duration::from_secs(30),
    )?;
    // Its own rust-toolchain file names another nightly; we build with ours.
    let _ = fs::remove_file(src.join("rust-toolchain"));
    apply_patches(&backend_patches, &src, &stage.log)?;
    run_logged(
        "build rustc_codegen_gcc",
        Command::new("cargo")
            .env("RUSTUP_TOOLCHAIN", channel)
            .env_remove("RUSTFLAGS")
            // The backend links against the toolchain's own libLLVM, which
            // lives in <sysroot>/lib, outside rustc's default search path.
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                format!("-L\x1f{}", rust_sysroot.join("lib").display()),
            )
            .args([
                "build",
                "--release",
                "--no-default-features",
                "--target-dir",
            ])
            .arg(stage.scratch.join("target"))
            .current_dir(&src),
        &stage.log,
        Duration::from_secs(20),
    )?;
    fs::copy(
        stage.scratch.join("target/release/librustc_codegen_gcc.so"),
        out.join("librustc_codegen_gcc.so"),
    )
    .context(|| "copying librustc_codegen_gcc.so".into())?;
    stage.finish()?;
    Ok((key, so))
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, each input is part of the key"
)]
fn sysroot(
    root: &Path,
    channel: &str,
    rustc_version: &str,
    rust_sysroot: &Path,
    target_json: &Path,
    gcc_key: &str,
    libgccjit: &Path,
    backend_key: &str,
    backend: &Path,
    say: &dyn Fn(&str),
) -> Result<PathBuf> {
    let lib_patches = patches("library")?;
    let mut key = Key::new("sysroot");
    key.add("recipe", RECIPE.as_bytes());
    key.add("rustc", rustc_version.as_bytes());
    key.add("libgccjit", gcc_key.as_bytes());
    key.add("backend", backend_key.as_bytes());
    key.add("cpu", CPU.as_bytes());
    key.add_file(target_json)?;
    for p in &lib_patches {
        key.add_file(p)?;
    }
    let key = key.finish();
    let stage = Stage::new(root, "sysroot", &key);
    if stage.is_done() {
        return Ok(stage.done_dir);
    }
    say(&format!(
        "==> building the Alpha sysroot: core, compiler_builtins, alloc (about 1 minute; log: {})",
        stage.log.display()
    ));
    let out = stage.begin()?;
    let llvm_target = json_string_field(target_json, "llvm-target")?;
    let target_name = target_json
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let host = rustc_version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or_else(|| err("rustc -vV has no host line"))?
        .to_string();
    let jit_dir = out.join(format!(
        "lib/rustlib/{host}/codegen-backends/lib/{llvm_target}"
    ));
    fs::create_dir_all(&jit_dir).context(|| "creating codegen-backends dir".into())?;
    fs::copy(libgccjit, jit_dir.join("libgccjit.so")).context(|| "copying libgccjit.so".into())?;
    let libdir = out.join(format!("lib/rustlib/{target_name}/lib"));
    fs::create_dir_all(&libdir).context(|| "creating sysroot lib dir".into())?;

    let lib_src = stage.scratch.join("library");
    fs::create_dir_all(&lib_src).context(|| "creating library dir".into())?;
    // core includes stdarch and portable-simd by relative path.
    for krate in ["core", "alloc", "stdarch", "portable-simd"] {
        run_logged(
            &format!("copy {krate} source"),
            Command::new("cp")
                .arg("-r")
                .arg(library_source(rust_sysroot).join(krate))
                .arg(&lib_src),
            &stage.log,
            Duration::from_secs(30),
        )?;
    }
    apply_patches(&lib_patches, &lib_src, &stage.log)?;
    let cb = lib_src.join("compiler_builtins/lib.rs");
    fs::create_dir_all(cb.parent().unwrap()).context(|| "creating compiler_builtins".into())?;
    fs::write(
        &cb,
        "// Empty on purpose: the kernel provides mem*, strlen and GCC's division\n\
         // routines in assembly (arch/alpha/asm), libgcc.a the 128-bit helpers.\n\
         #![feature(compiler_builtins)]\n#![compiler_builtins]\n#![no_std]\n",
    )
    .context(|| "writing compiler_builtins".into())?;

    let build = |name: &str, src: &Path| -> Result<()> {
        run_logged(
            &format!("rustc {name}"),
            Command::new("rustc")
                .env("RUSTUP_TOOLCHAIN", channel)
                .args([
                    "--crate-name",
                    name,
                    "--crate-type",
                    "lib",
                    "--edition",
                    "2024",
                ])
                .arg(src)
                .arg("--target")
                .arg(target_json)
                .args([
                    "-Zunstable-options",
                    "-Zforce-unstable-if-unmarked",
                    "-Copt-level=3",
                    "-Cpanic=abort",
                ])
                .arg(format!("-Cllvm-args=-mcpu={CPU}"))
                .arg(format!("-Zcodegen-backend={}", backend.display()))
                .arg("--sysroot")
                .arg(&out)
                .arg("--out-dir")
                .arg(&libdir),
            &stage.log,
            Duration::from_secs(15),
        )
    };
    build("core", &lib_src.join("core/src/lib.rs"))?;
    build("compiler_builtins", &cb)?;
    build("alloc", &lib_src.join("alloc/src/lib.rs"))?;
    stage.finish()?;
    Ok(stage.done_dir)
}

/// Reads a top-level string field of a (flat) JSON file without a JSON parser.
fn json_string_field(path: &Path, field: &str) -> Result<String> {
    let text = fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    let needle = format!("\"{field}\"");
    let at = text
        .find(&needle)
        .ok_or_else(|| err(format!("{} has no {field}", path.display())))?;
    text[at + needle.len()..]
        .split('"')
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| err(format!("{}: {field} is not a string", path.display())))
}
