//! Linux beside us: a small SMP Linux for QEMU's clipper, built from
//! Debian's `linux-source-6.12` with Debian's cross compiler, with the
//! benchmark suite of `xtask/linux/alphasmp_bench.c` built in, so
//! `cargo xtask bench --linux` boots it on the same QEMU command line as
//! our kernel and compares the two.
//!
//! The build: `make tinyconfig`, then the fragment
//! `xtask/linux/alphasmp_bench.config` merged over it (`make
//! alphasmp_bench.config`), the module copied into `arch/alpha/kernel/` as
//! obj-y, `xtask/linux/patches/*.patch` applied, `make vmlinux` under
//! `nice -n 19` with at most 2 jobs. The vmlinux is cached next to the
//! toolchain's stages (`linux-KEY/` under [`toolchain::cache_root`]), the
//! key covering the source package's version, the compiler, the fragment,
//! the module and the patches; a second run does not rebuild.

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::toolchain;
use crate::util::{Context, Error, Key, Result, err, mmss, output, repo_root, run_logged};

/// The Debian package with the Linux source tarball.
pub const SOURCE_PACKAGE: &str = "linux-source-6.12";
/// Where that package puts the tarball.
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
/// Debian's Alpha cross compiler (the `alpha-linux-gnu-gcc` command).
pub const COMPILER: &str = "alpha-linux-gnu-gcc";

/// Debian packages the Linux build needs beyond the toolchain's.
pub const PACKAGES: &[&str] = &[
    SOURCE_PACKAGE,
    "gcc-alpha-linux-gnu",
    "binutils-alpha-linux-gnu",
    "make",
    "bc",
    "flex",
    "bison",
    "patch",
    "xz-utils",
];

/// Bump to force a rebuild (a change in how the build is done).
const RECIPE: &str = "1";

/// The module's file name, in the repository and in the Linux tree.
pub const MODULE: &str = "alphasmp_bench.c";
/// The config fragment's file name.
pub const FRAGMENT: &str = "alphasmp_bench.config";
/// The line added to `arch/alpha/kernel/Makefile`.
pub const MAKEFILE_LINE: &str = "obj-y += alphasmp_bench.o";
/// The most `make` jobs the build runs.
pub const JOBS: u32 = 2;

/// About how many objects the build compiles and links (the progress
/// bar's length; the bar stops at its end if the build makes more).
const EXPECTED_STEPS: u64 = 760;

/// The boot argument that starts the built-in benchmark with N samples.
pub fn append(samples: u64) -> String {
    format!("console=ttyS0 alphasmp_bench={samples}")
}

/// A built Linux.
#[derive(Clone, Debug)]
pub struct Linux {
    pub vmlinux: PathBuf,
    /// `6.12.118` and the like.
    pub version: String,
    /// The cache key (the directory's suffix).
    pub key: String,
}

/// The inputs of the build from the repository.
pub fn inputs_dir() -> PathBuf {
    repo_root().join("xtask/linux")
}

/// The config options a fragment sets: its `CONFIG_X=v` and `# CONFIG_X is
/// not set` lines, as (name, value) with `n` for the latter.
pub fn fragment_options(fragment: &str) -> Vec<(String, String)> {
    fragment
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            if let Some(name) = l
                .strip_prefix("# ")
                .and_then(|r| r.strip_suffix(" is not set"))
            {
                return name
                    .starts_with("CONFIG_")
                    .then(|| (name.to_string(), "n".to_string()));
            }
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            k.starts_with("CONFIG_")
                .then(|| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The fragment's options the final `.config` does not have as asked
/// (Kconfig drops an option whose dependencies are unmet, silently).
pub fn missing_options(fragment: &str, config: &str) -> Vec<String> {
    let set: Vec<(String, String)> = fragment_options(config);
    fragment_options(fragment)
        .into_iter()
        .filter(|(name, value)| {
            let have = set
                .iter()
                .find(|(n, _)| n == name)
                .map_or("n", |(_, v)| v.as_str());
            have != value
        })
        .map(|(n, v)| format!("{n}={v}"))
        .collect()
}

/// The cache key from the build's inputs, each given as bytes.
pub fn cache_key(
    package_version: &str,
    compiler_version: &str,
    fragment: &[u8],
    module: &[u8],
    patches: &[(String, Vec<u8>)],
) -> String {
    let mut key = Key::new("linux");
    key.add("recipe", RECIPE.as_bytes());
    key.add(SOURCE_PACKAGE, package_version.as_bytes());
    key.add("compiler", compiler_version.as_bytes());
    key.add("makefile line", MAKEFILE_LINE.as_bytes());
    key.add(FRAGMENT, fragment);
    key.add(MODULE, module);
    for (name, bytes) in patches {
        key.add(name, bytes);
    }
    key.finish()
}

/// The patches to the Linux source, in order.
fn patches() -> Result<Vec<(String, Vec<u8>)>> {
    let dir = inputs_dir().join("patches");
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    v.sort();
    v.into_iter()
        .map(|p| {
            let bytes = fs::read(&p).context(|| format!("reading {}", p.display()))?;
            Ok((
                p.file_name().unwrap_or_default().to_string_lossy().into(),
                bytes,
            ))
        })
        .collect()
}

/// Installs what is missing and builds (or reuses) the Linux.
pub fn ensure(say: &dyn Fn(&str)) -> Result<Linux> {
    toolchain::install_packages(PACKAGES, say)?;
    let package_version = output(
        Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]),
        "dpkg-query",
    )?;
    let compiler_version = output(Command::new(COMPILER).arg("--version"), COMPILER)?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let dir = inputs_dir();
    let fragment_path = dir.join(FRAGMENT);
    let module_path = dir.join(MODULE);
    let fragment =
        fs::read(&fragment_path).context(|| format!("reading {}", fragment_path.display()))?;
    let module = fs::read(&module_path).context(|| format!("reading {}", module_path.display()))?;
    let patches = patches()?;
    let key = cache_key(
        &package_version,
        &compiler_version,
        &fragment,
        &module,
        &patches,
    );
    let root = toolchain::cache_root();
    let done_dir = root.join(format!("linux-{key}"));
    let vmlinux = done_dir.join("vmlinux");
    let version_file = done_dir.join("VERSION");
    if done_dir.join("DONE").exists() {
        let version = fs::read_to_string(&version_file).unwrap_or_default();
        say(&format!(
            "==> Linux {} with the benchmark built in: cached ({})",
            version.trim(),
            done_dir.display()
        ));
        return Ok(Linux {
            vmlinux,
            version: version.trim().into(),
            key,
        });
    }
    let scratch = root.join("work").join(format!("linux-{key}"));
    let log = root.join("logs").join(format!("linux-{key}.log"));
    say(&format!(
        "==> building Linux ({SOURCE_PACKAGE} {package_version}) with the benchmark built in (a few minutes on 2 cores; log: {})",
        log.display()
    ));
    let started = Instant::now();
    let _ = fs::remove_dir_all(&scratch);
    let _ = fs::remove_file(&log);
    let src_parent = scratch.join("src");
    let build = scratch.join("build");
    let out = scratch.join("out");
    for d in [&src_parent, &build, &out] {
        fs::create_dir_all(d).context(|| format!("creating {}", d.display()))?;
    }
    run_logged(
        "unpack linux",
        Command::new("tar")
            .arg("xf")
            .arg(SOURCE_TARBALL)
            .arg("-C")
            .arg(&src_parent),
        &log,
        Duration::from_secs(30),
    )?;
    let src = fs::read_dir(&src_parent)
        .context(|| "reading the unpacked Linux".into())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .ok_or_else(|| err("the Linux tarball unpacked to nothing"))?;
    for (name, _) in &patches {
        run_logged(
            &format!("patch {name}"),
            Command::new("patch")
                .args(["-p1", "--forward", "--batch", "-i"])
                .arg(dir.join("patches").join(name))
                .current_dir(&src),
            &log,
            Duration::from_secs(60),
        )?;
    }
    add_module(&src, &module, &fragment)?;
    let make = |args: &[&str]| -> Command {
        let mut c = Command::new("nice");
        c.args(["-n", "19", "make"])
            .arg(format!("O={}", build.display()))
            .args(["ARCH=alpha", "CROSS_COMPILE=alpha-linux-gnu-"])
            .args(args)
            .current_dir(&src);
        c
    };
    run_logged(
        "make tinyconfig",
        &mut make(&["tinyconfig"]),
        &log,
        Duration::from_secs(30),
    )?;
    run_logged(
        &format!("make {FRAGMENT}"),
        &mut make(&[FRAGMENT]),
        &log,
        Duration::from_secs(30),
    )?;
    let config_path = build.join(".config");
    let config = fs::read_to_string(&config_path)
        .context(|| format!("reading {}", config_path.display()))?;
    let missing = missing_options(&String::from_utf8_lossy(&fragment), &config);
    if !missing.is_empty() {
        return Err(Error {
            message: format!(
                "the Linux config dropped {} (unmet dependencies?)",
                missing.join(", ")
            ),
            log: Some(log),
        });
    }
    let mut cmd = make(&[&format!("-j{JOBS}"), "vmlinux"]);
    run_with_bar("make vmlinux", &mut cmd, &log, EXPECTED_STEPS, say)?;
    let built = build.join("vmlinux");
    if !built.exists() {
        return Err(Error {
            message: format!("make finished but {} is missing", built.display()),
            log: Some(log),
        });
    }
    let version = output(
        make(&["-s", "kernelrelease"]).stderr(Stdio::null()),
        "make kernelrelease",
    )?
    .trim()
    .to_string();
    fs::copy(&built, out.join("vmlinux")).context(|| "copying vmlinux".into())?;
    fs::copy(&config_path, out.join("config")).context(|| "copying .config".into())?;
    fs::write(out.join("VERSION"), format!("{version}\n")).context(|| "writing VERSION".into())?;
    fs::write(out.join("DONE"), b"").context(|| "writing DONE".into())?;
    let _ = fs::remove_dir_all(&done_dir);
    fs::rename(&out, &done_dir).context(|| format!("moving into {}", done_dir.display()))?;
    let _ = fs::remove_dir_all(&scratch);
    say(&format!(
        "==> Linux {version} built in {} ({})",
        mmss(started.elapsed()),
        done_dir.display()
    ));
    Ok(Linux {
        vmlinux,
        version,
        key,
    })
}

/// Puts the benchmark into the tree: the source into `arch/alpha/kernel/`
/// with its obj-y line, the fragment where `make NAME.config` finds it.
fn add_module(src: &Path, module: &[u8], fragment: &[u8]) -> Result<()> {
    let kdir = src.join("arch/alpha/kernel");
    fs::write(kdir.join(MODULE), module).context(|| format!("writing {MODULE}"))?;
    let makefile = kdir.join("Makefile");
    let mut text =
        fs::read_to_string(&makefile).context(|| format!("reading {}", makefile.display()))?;
    if !text.lines().any(|l| l.trim() == MAKEFILE_LINE) {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(MAKEFILE_LINE);
        text.push('\n');
        fs::write(&makefile, text).context(|| format!("writing {}", makefile.display()))?;
    }
    let configs = src.join("arch/alpha/configs");
    fs::create_dir_all(&configs).context(|| format!("creating {}", configs.display()))?;
    fs::write(configs.join(FRAGMENT), fragment).context(|| format!("writing {FRAGMENT}"))
}

/// Build steps a line of kbuild's output names (`  CC      mm/slub.o`).
pub fn is_build_step(line: &str) -> bool {
    let mut words = line.split_whitespace();
    matches!(
        words.next(),
        Some("CC" | "AS" | "LD" | "AR" | "CPP" | "HOSTCC" | "HOSTLD" | "GEN" | "LDS" | "SYSMAP")
    ) && words.next().is_some()
        && line.starts_with("  ")
}

/// A progress display: an indicatif bar on a terminal, else a plain line
/// now and then.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    total: u64,
    pos: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// `what`: the bar's prefix; `total`: its length.
    pub fn new(what: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta}) {wide_msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(what.to_string());
            b.enable_steady_tick(Duration::from_millis(500));
            b
        });
        Progress {
            bar,
            what: what.into(),
            total,
            pos: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// Moves to `pos` with a message (plain output: at most every 30 s).
    pub fn set(&mut self, pos: u64, msg: &str) {
        self.pos = pos.min(self.total);
        match &self.bar {
            Some(b) => {
                b.set_position(self.pos);
                b.set_message(msg.to_string());
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(30) {
                    self.last_line = Instant::now();
                    eprintln!(
                        "  [{}] {}/{} after {} ... {msg}",
                        self.what,
                        self.pos,
                        self.total,
                        mmss(self.started.elapsed())
                    );
                }
            }
        }
    }

    /// One step done; `line` is printed above the bar (or as a line).
    pub fn step(&mut self, line: &str) {
        self.pos = (self.pos + 1).min(self.total);
        match &self.bar {
            Some(b) => {
                b.set_position(self.pos);
                b.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Prints `line` above the bar (or as a line) without moving it.
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Runs a build step with its output in `log` and a progress bar counting
/// kbuild's step lines.
fn run_with_bar(
    step: &str,
    cmd: &mut Command,
    log: &Path,
    expected: u64,
    say: &dyn Fn(&str),
) -> Result<()> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .context(|| format!("opening {}", log.display()))?;
    let stderr = file.try_clone().context(|| "log".into())?;
    let start = fs::metadata(log).map_or(0, |m| m.len());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .map_err(|e| Error {
            message: format!("{step}: cannot start {:?}: {e}", cmd.get_program()),
            log: Some(log.into()),
        })?;
    let mut bar = Progress::new(step, expected);
    let status = loop {
        if let Some(status) = child.try_wait().context(|| format!("waiting for {step}"))? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(300));
        let text = fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[(start as usize).min(text.len())..]).into_owned();
        let steps = text.lines().filter(|l| is_build_step(l)).count() as u64;
        let last = text.lines().rev().find(|l| is_build_step(l)).unwrap_or("");
        bar.set(steps, last.trim());
    };
    let elapsed = bar.started.elapsed();
    bar.finish();
    if !status.success() {
        return Err(Error {
            message: format!("step '{step}' failed ({status})"),
            log: Some(log.into()),
        });
    }
    say(&format!("  [{step}] done in {}", mmss(elapsed)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_options_read_set_and_unset_lines() {
        let frag =
            "# a comment\nCONFIG_SMP=y\nCONFIG_NR_CPUS=4\n# CONFIG_BLOCK is not set\n\nnoise\n";
        assert_eq!(
            fragment_options(frag),
            vec![
                ("CONFIG_SMP".into(), "y".into()),
                ("CONFIG_NR_CPUS".into(), "4".into()),
                ("CONFIG_BLOCK".into(), "n".into()),
            ]
        );
    }

    #[test]
    fn missing_options_are_those_the_config_lost() {
        let frag = "CONFIG_SMP=y\nCONFIG_NR_CPUS=4\nCONFIG_HZ_1024=y\n# CONFIG_BLOCK is not set\n";
        let config = "CONFIG_SMP=y\nCONFIG_NR_CPUS=32\n# CONFIG_HZ_1024 is not set\n";
        assert_eq!(
            missing_options(frag, config),
            vec!["CONFIG_NR_CPUS=4", "CONFIG_HZ_1024=y"]
        );
        assert!(
            missing_options(frag, "CONFIG_SMP=y\nCONFIG_NR_CPUS=4\nCONFIG_HZ_1024=y\n").is_empty()
        );
    }

    #[test]
    fn the_repository_fragment_asks_for_what_the_comparison_needs() {
        let frag = fs::read_to_string(inputs_dir().join(FRAGMENT)).unwrap();
        let opts = fragment_options(&frag);
        for want in [
            "CONFIG_SMP=y",
            "CONFIG_HZ_1024=y",
            "CONFIG_SERIAL_8250_CONSOLE=y",
            "CONFIG_PRINTK=y",
        ] {
            let (k, v) = want.split_once('=').unwrap();
            assert!(opts.contains(&(k.into(), v.into())), "{want}");
        }
        let cpus: u32 = opts
            .iter()
            .find(|(k, _)| k == "CONFIG_NR_CPUS")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!(cpus >= crate::qemu::MAX_SMP);
    }

    #[test]
    fn the_cache_key_follows_every_input() {
        let base = cache_key("6.12.118-1", "gcc 12", b"frag", b"module", &[]);
        assert_eq!(
            base,
            cache_key("6.12.118-1", "gcc 12", b"frag", b"module", &[])
        );
        assert_eq!(base.len(), 16);
        let others = [
            cache_key("6.12.119-1", "gcc 12", b"frag", b"module", &[]),
            cache_key("6.12.118-1", "gcc 13", b"frag", b"module", &[]),
            cache_key("6.12.118-1", "gcc 12", b"frag2", b"module", &[]),
            cache_key("6.12.118-1", "gcc 12", b"frag", b"module2", &[]),
            cache_key(
                "6.12.118-1",
                "gcc 12",
                b"frag",
                b"module",
                &[("0001.patch".into(), b"x".to_vec())],
            ),
        ];
        for k in others {
            assert_ne!(base, k);
        }
    }

    #[test]
    fn build_steps_are_counted_from_kbuild_lines() {
        assert!(is_build_step("  CC      mm/slub.o"));
        assert!(is_build_step("  LD      vmlinux"));
        assert!(!is_build_step("make[1]: Entering directory"));
        assert!(!is_build_step("  CC"));
    }
}
