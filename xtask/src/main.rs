//! `cargo xtask <command>`: the project's commands (see README).

use std::process::{Command, ExitCode};
use std::time::Duration;

use xtask::qemu::{self, RunSpec};
use xtask::util::{Context, Result, err, repo_root};

const USAGE: &str = "usage: cargo xtask <command>
  run [--smp N] [--mem MIB] [--append \"ARGS\"] [--timeout SECS] [--cpu ev6|ev67|ev68] [--icount]
      [--boot disk|bootp [--image FILE]]
                 build, boot on QEMU (default 4 CPUs), run the self-tests (or the run mode --append
                 picks), exit with the kernel's verdict;
                 --cpu: QEMU's CPU model (default ev67); --icount: guest time counts instructions
                 and the vCPUs run one at a time; --boot: boot the SRM image (default: the one
                 just built) through the emulation of SRM's entry state instead of giving QEMU the ELF
  image [--out DIR] | image --check FILE [--elf KERNEL]
                 write the SRM images alphasmp.bootp (BOOTP) and alphasmp.img (disk) (default
                 target/image/), or check an image against the kernel ELF it should carry
  gdb [--smp N] [--mem MIB] [--append \"ARGS\"] [--cpu ev6|ev67|ev68] [--icount] [--ex CMD]...
                 boot QEMU halted with its gdb stub and attach gdb-multiarch with the kernel's
                 symbols (each CPU a thread); with --ex, run those gdb commands in batch mode
  symbolize [--elf KERNEL] [FILE]
                 name the code addresses and panic locations in a captured serial log
                 (FILE or standard input) against the kernel ELF (default: build the current one;
                 give the ELF the log came from when it is an older build)
  test [--long]  everything CI runs: host/simulator/model tests, QEMU boots and the
                 one-boot experiment, loom, Miri (--long: more seeds and rounds)
  experiment [--set native|injected|all] [--smp 2,4] [--cell-size N] [--wait spin|nap] [--out DIR]
                 the fault x fix experiment, one QEMU boot per CPU count running every cell;
                 writes DIR/experiment.md and .json (default results/) through `report`
  report LOG [--out DIR]
                 tables from a captured console log of experiment boots (any machine; SRM's and
                 the loader's lines around them are skipped): DIR/experiment.md and .json
                 (default: the current directory)
  matrix [--per-cpu N] [--smp 2,4] [--out DIR] [--check]
                 fault x fix matrix, one QEMU boot per cell (a cross-check of the experiment);
                 writes DIR/matrix.md and .json (default results/)
  bench [--samples N] [--smp 2,3,4] [--fixes all|F,...] [--wait auto,adaptive,nap,spin] [--out DIR]
        [--linux [--linux-boots N]] [--instructions]
                 the benchmark suite (IPI, calls, flushes, throughput; median/p90/p99) per CPU
                 count, fix set and wait policy; writes DIR/bench.md, .json and .svg (default results/)
                 --linux: also a small SMP Linux (Debian's linux-source-6.12, built once into the
                 cache with xtask/linux/alphasmp_bench.c built in) on the same QEMU command line,
                 N boots (default 2) of it and of ours per CPU count in turn; adds the \"x Linux\"
                 ratio (ours / Linux) and Linux's medians to the results
                 --instructions: every boot under -icount shift=0,sleep=off: the vCPUs run one
                 at a time and a \"time\" counts the instructions all of them ran (host noise
                 cannot move it; spinning waiters inflate it, napping ones do not)
  profile [--op NAME,...] [--smp 2,4] [--wait nap|spin|adaptive|auto] [--samples N] [--cpu ev6|ev67|ev68]
          [--top N] [--linux [--linux-samples N]] [--blocks] [--busy] [--out FILE] [--pcs FILE]
                 where one operation's instructions go, function by function, on every CPU:
                 boots the benchmark with only that measurement (default call_single_wait, idle
                 target; default 2 CPUs, wait=nap, 1000 samples) under -icount with QEMU's
                 instruction trace, and writes FILE (default results/profile.md); --linux: the
                 same measurement of the Linux of bench --linux, beside ours (N operations,
                 default 20: its waiters spin, each through a whole -icount slice), traced
                 from its console line \"serial8250: ttyS1\" on (its boot is too long to trace);
                 --pcs: also writes each address's instructions per operation, per CPU
                 (to read beside a disassembly or addr2line); --blocks: counts translated
                 blocks entered instead of instructions (QEMU's usual blocks, unchained): each
                 return, PAL call and IPL change starts one, and each costs the emulator a
                 lookup, which the instruction count does not see; --busy: busy targets too
                 (the target spins in a loop: read the issuing CPU's column and the handler's rows)
  layouts [--pads P,P,...] [--out DIR]
                 build this tree's kernel once per code placement: the code after the
                 assembly shifted by P bytes (default 0,1092,2312), copied to DIR (default
                 target/layouts) as kernel-padP; prints the paths, for `ab`
  ab [--smp N] [--rounds N] [--append \"ARGS\"] LABEL=ELF[,ELF...] LABEL=ELF[,ELF...]...
                 kernels against each other, boots taken in turn (default 2 CPUs, 10 rounds,
                 append \"bench=1000 watchdog_ms=0 wait=auto ipi_lock=off ipi_poll=on\"): per
                 measurement each label's mean over its builds of their medians over rounds,
                 over the first label's, and the rounds faster than it; give each label
                 several layouts (see `layouts`): placement alone moves a busy call by up
                 to 15%
  stress [--per-cpu N] [--smp N] [--append \"ARGS\"]
                 long stress: edge loss injected, all fixes on; zero watchdog reports required
  mutants [--file src/F.rs]... [--jobs N] [--out DIR]
                 cargo-mutants over the portable core (src/) against its host tests (unit,
                 simulator); installs cargo-mutants if missing; hours for all of src/,
                 so shard it by file
  lint           cargo fmt --check and clippy (warnings are errors), host and Alpha crates
  build          build the kernel ELF and print its path
  toolchain      install packages and build the Alpha toolchain (cached)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("image") => image(&args[1..]),
        Some("gdb") => gdb(&args[1..]),
        Some("symbolize") => symbolize(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("build") => build(&args[1..]),
        Some("lint") => lint(&args[1..]),
        Some("matrix") => matrix(&args[1..]),
        Some("experiment") => experiment(&args[1..]),
        Some("report") => report(&args[1..]),
        Some("stress") => stress(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("profile") => profile(&args[1..]),
        Some("layouts") => layouts(&args[1..]),
        Some("ab") => ab(&args[1..]),
        Some("toolchain") => toolchain(&args[1..]),
        Some("mutants") => mutants(&args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(err(format!("unknown command '{other}'\n{USAGE}"))),
        None => Err(err(USAGE)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn no_args(args: &[String]) -> Result<()> {
    match args.first() {
        Some(a) => Err(err(format!("unexpected argument '{a}'"))),
        None => Ok(()),
    }
}

fn toolchain(args: &[String]) -> Result<ExitCode> {
    no_args(args)?;
    let tc = xtask::toolchain::ensure(false)?;
    println!("sysroot: {}", tc.sysroot.display());
    println!("backend: {}", tc.backend.display());
    Ok(ExitCode::SUCCESS)
}

fn build(args: &[String]) -> Result<ExitCode> {
    no_args(args)?;
    let tc = xtask::toolchain::ensure(false)?;
    let elf = xtask::kernel::build(&tc)?;
    println!("{}", elf.display());
    Ok(ExitCode::SUCCESS)
}

/// The value after option `name` on the command line (an error if none).
fn value(it: &mut std::slice::Iter<'_, String>, name: &str) -> Result<String> {
    it.next()
        .cloned()
        .ok_or_else(|| err(format!("{name} needs a value")))
}

/// Parses a `--smp` value: a CPU count the clipper machine can have.
fn parse_smp(v: &str) -> Result<u32> {
    let n = v.parse().map_err(|_| {
        err(format!(
            "--smp {v}: not a number (the clipper machine has 1 to {} CPUs)",
            qemu::MAX_SMP
        ))
    })?;
    qemu::check_smp(n)?;
    Ok(n)
}

/// Parses the experiment's `--wait`: its predictions are made for waiters
/// that spin or nap, not for the policies that choose between the two.
fn parse_experiment_wait(v: &str) -> Result<String> {
    match v {
        "spin" | "nap" => Ok(v.to_string()),
        _ => Err(err(format!(
            "--wait {v}: the experiment's waiters spin or nap (spin|nap)"
        ))),
    }
}

/// Parses a `--mem` value in MiB.
fn parse_mem(v: &str) -> Result<u32> {
    let n = v.parse().map_err(|_| {
        err(format!(
            "--mem {v}: not a whole number of MiB ({} to {})",
            qemu::MIN_MEM_MIB,
            qemu::MAX_MEM_MIB
        ))
    })?;
    qemu::check_mem(n)?;
    Ok(n)
}

/// Parses a whole number greater than zero for option `name`.
/// `--smp` of the benchmark commands: a list of CPU counts, each 2 or more.
fn bench_smps(v: &str) -> Result<Vec<u32>> {
    let smps: Vec<u32> = v.split(',').map(parse_smp).collect::<Result<_>>()?;
    if smps.contains(&1) {
        return Err(err("--smp 1: the benchmarks need 2 or more CPUs"));
    }
    Ok(smps)
}

/// `--samples` of the benchmark commands, as the kernel's `bench=` takes it.
fn bench_samples(v: &str) -> Result<u64> {
    Ok(alphasmp_bootargs::BootConfig::parse(&format!("bench={v}"))
        .map_err(|e| err(format!("--samples: {e}")))?
        .bench)
}

fn parse_positive(name: &str, v: &str) -> Result<u64> {
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| err(format!("{name} {v}: expected a whole number > 0")))
}

struct RunArgs {
    smp: u32,
    mem: u32,
    append: String,
    timeout: u64,
    /// gdb commands (`gdb` only).
    ex: Vec<String>,
    /// `run --boot`: the emulated console's boot device (`dka0`, `ewa0`).
    boot: Option<&'static str>,
    /// `run --image`: an image file instead of the one just built.
    image: Option<std::path::PathBuf>,
    /// `--cpu`, `--icount`.
    cpu: qemu::CpuModel,
}

/// Checks a boot command line with the kernel's own parser, so a bad
/// `--append` is refused here, in one line, before QEMU starts.
fn check_append(append: &str) -> Result<()> {
    qemu::check_append_len(append)?;
    alphasmp_bootargs::BootConfig::parse(append)
        .map(|_| ())
        .map_err(|e| err(format!("--append: {e}")))
}

/// Options of `run` and `gdb` (`gdb` also takes `--ex`, not `--timeout`).
fn parse_run_args(command: &str, args: &[String]) -> Result<RunArgs> {
    let mut r = RunArgs {
        smp: 4,
        mem: qemu::DEFAULT_MEM_MIB,
        append: String::new(),
        timeout: 120,
        ex: Vec::new(),
        boot: None,
        image: None,
        cpu: Default::default(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (command, a.as_str()) {
            (_, "--smp") => r.smp = parse_smp(&value(&mut it, "--smp")?)?,
            (_, "--mem") => r.mem = parse_mem(&value(&mut it, "--mem")?)?,
            (_, "--append") => r.append = value(&mut it, "--append")?,
            (_, "--cpu") => r.cpu.name = Some(qemu::CpuModel::parse(&value(&mut it, "--cpu")?)?),
            (_, "--icount") => r.cpu.icount = true,
            ("run", "--timeout") => {
                r.timeout = parse_positive("--timeout", &value(&mut it, "--timeout")?)?
            }
            ("gdb", "--ex") => r.ex.push(value(&mut it, "--ex")?),
            ("run", "--boot") => {
                r.boot = Some(match value(&mut it, "--boot")?.as_str() {
                    "disk" => "dka0",
                    "bootp" => "ewa0",
                    other => return Err(err(format!("--boot {other}: expected disk or bootp"))),
                })
            }
            ("run", "--image") => r.image = Some(value(&mut it, "--image")?.into()),
            (_, other) => {
                return Err(err(format!(
                    "unknown option '{other}' for {command}\n{USAGE}"
                )));
            }
        }
    }
    check_append(&r.append)?;
    if r.image.is_some() && r.boot.is_none() {
        return Err(err(
            "--image needs --boot disk or --boot bootp (which device the emulated console boots)",
        ));
    }
    Ok(r)
}

fn run(args: &[String]) -> Result<ExitCode> {
    // Refuse bad options before any building or booting.
    let r = parse_run_args("run", args)?;
    let Some(device) = r.boot else {
        let elf = xtask::kernel_elf(false)?;
        eprintln!(
            "==> booting {} on qemu-system-alpha -M clipper -smp {} (timeout {} s)",
            elf.display(),
            r.smp,
            r.timeout
        );
        let result = qemu::run(&RunSpec {
            kernel: &elf,
            smp: r.smp,
            mem: r.mem,
            append: &r.append,
            timeout: Duration::from_secs(r.timeout),
            echo: true,
            image: None,
            cpu: r.cpu,
        })?;
        eprintln!("==> {}", result.describe());
        return Ok(if result.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    };
    let images = xtask::images(false)?;
    let built = if device == "dka0" {
        &images.written.disk
    } else {
        &images.written.bootp
    };
    let image = r.image.as_ref().unwrap_or(built);
    eprintln!(
        "==> booting {} as {device} through the SRM-entry emulation on qemu-system-alpha -M clipper -smp {} (timeout {} s)",
        image.display(),
        r.smp,
        r.timeout
    );
    let boot = qemu::ImageBoot {
        emulation: &images.emulation,
        image,
        device,
    };
    let spec = RunSpec {
        kernel: &images.kernel,
        smp: r.smp,
        mem: r.mem,
        append: &r.append,
        timeout: Duration::from_secs(r.timeout),
        echo: true,
        image: Some(boot),
        cpu: r.cpu,
    };
    let result = qemu::run(&spec)?;
    eprintln!("==> {}", result.describe());
    Ok(if result.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn image(args: &[String]) -> Result<ExitCode> {
    let (mut out, mut check, mut elf) = (
        repo_root().join("target/image"),
        None::<std::path::PathBuf>,
        None::<std::path::PathBuf>,
    );
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = value(&mut it, "--out")?.into(),
            "--check" => check = Some(value(&mut it, "--check")?.into()),
            "--elf" => elf = Some(value(&mut it, "--elf")?.into()),
            other => return Err(err(format!("unknown option '{other}' for image"))),
        }
    }
    if let Some(file) = check {
        let bytes =
            std::fs::read(&file).map_err(|e| err(format!("reading {}: {e}", file.display())))?;
        let elf = match elf {
            Some(e) => e,
            None => xtask::kernel_elf(true)?,
        };
        let r = xtask::image::check(&bytes, &elf)
            .map_err(|e| err(format!("{}: {e}", file.display())))?;
        let h = r.header;
        println!(
            "{}: OK: {}, {} bytes; kernel {} bytes (+{} bss) for physical {:#x}, entry {:#x}, checksum {:#018x}; matches {}",
            file.display(),
            r.kind,
            h.image_len,
            h.payload_len,
            h.mem_len - h.payload_len,
            h.load_phys,
            h.entry,
            h.sum,
            elf.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if elf.is_some() {
        return Err(err("--elf goes with --check"));
    }
    let tc = xtask::toolchain::ensure(false)?;
    let kernel = xtask::kernel::build(&tc)?;
    let loader = kernel.with_file_name("loader");
    let w = xtask::image::write(&loader, &kernel, &out)?;
    for (p, what) in [
        (&w.bootp, "BOOTP image (boot ewa0 -file ...)"),
        (&w.disk, "disk image (dd to a disk; boot dka0)"),
    ] {
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        println!("{}: {what}, {len} bytes", p.display());
    }
    println!(
        "kernel: physical {:#x}, entry {:#x}, {} bytes + {} bss",
        w.header.load_phys,
        w.header.entry,
        w.header.payload_len,
        w.header.mem_len - w.header.payload_len
    );
    Ok(ExitCode::SUCCESS)
}

fn gdb(args: &[String]) -> Result<ExitCode> {
    let r = parse_run_args("gdb", args)?;
    let elf = xtask::kernel_elf(false)?;
    let session = xtask::gdb::Session {
        spec: RunSpec {
            kernel: &elf,
            smp: r.smp,
            mem: r.mem,
            append: &r.append,
            timeout: Duration::MAX,
            echo: false,
            image: None,
            cpu: r.cpu,
        },
        commands: r.ex,
        serial_log: repo_root().join("target/gdb-serial.log"),
    };
    if session.commands.is_empty() {
        let code = xtask::gdb::interactive(&session)?;
        return Ok(if code == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let out = xtask::gdb::batch(&session, Duration::from_secs(300))?;
    print!("{}", out.gdb_output);
    eprintln!("==> serial console: {}", session.serial_log.display());
    Ok(if out.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn symbolize(args: &[String]) -> Result<ExitCode> {
    let (elf, rest) = match args {
        [flag, path, rest @ ..] if flag == "--elf" => (Some(std::path::PathBuf::from(path)), rest),
        [flag] if flag == "--elf" => return Err(err("--elf needs a value")),
        rest => (None, rest),
    };
    let text = match rest {
        [] => std::io::read_to_string(std::io::stdin())
            .map_err(|e| err(format!("reading standard input: {e}")))?,
        [file] => std::fs::read_to_string(file).map_err(|e| err(format!("reading {file}: {e}")))?,
        [_, extra, ..] => {
            return Err(err(format!(
                "unexpected argument '{extra}' for symbolize (one FILE at most)"
            )));
        }
    };
    let elf = match elf {
        Some(e) => e,
        None => xtask::kernel_elf(true)?,
    };
    let mut s = xtask::symbolize::Symbolizer::new(&elf)?;
    print!("{}", s.annotate(&text));
    Ok(ExitCode::SUCCESS)
}

/// `cargo fmt --check` and clippy (every warning an error) over the host
/// workspace and the Alpha crates.
fn lint_all(tc: &xtask::toolchain::Toolchain) -> Result<()> {
    let root = repo_root();
    for manifest in ["Cargo.toml", "arch/alpha/Cargo.toml"] {
        eprintln!("==> format: cargo fmt --all --check --manifest-path {manifest}");
        let ok = Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--check", "--manifest-path", manifest])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(err(format!(
                "cargo fmt --check found unformatted code (run: cargo fmt --all --manifest-path {manifest})"
            )));
        }
    }
    eprintln!("==> clippy: cargo clippy --workspace --all-targets -- -D warnings");
    let ok = Command::new("cargo")
        .current_dir(&root)
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(err("clippy found problems in the host crates (above)"));
    }
    eprintln!("==> clippy: the Alpha crates");
    xtask::kernel::clippy(tc)
}

fn lint(args: &[String]) -> Result<ExitCode> {
    no_args(args)?;
    let tc = xtask::toolchain::ensure(false)?;
    lint_all(&tc)?;
    eprintln!("==> format and clippy clean");
    Ok(ExitCode::SUCCESS)
}

fn test(args: &[String]) -> Result<ExitCode> {
    let long = match args.first().map(String::as_str) {
        None => false,
        Some("--long") if args.len() == 1 => true,
        Some(a) => {
            return Err(err(format!(
                "unexpected argument '{a}' for test (only --long)"
            )));
        }
    };
    let tc = xtask::toolchain::ensure(false)?;
    let elf = xtask::kernel::build(&tc)?;
    eprintln!("==> kernel: {}", elf.display());
    let root = repo_root();
    let began = std::time::Instant::now();
    // Every command below sees the kernel and the mode.
    let env = |cmd: &mut Command| {
        cmd.env("ALPHASMP_KERNEL", &elf);
        if long {
            cmd.env("ALPHASMP_LONG", "1");
        }
    };
    // 0. Habits: formatting and clippy, host and Alpha crates.
    lint_all(&tc)?;
    // 1. Build every host test binary once (xtask/src/testrun.rs).
    eprintln!("==> build: cargo test --workspace --no-run");
    let mut build = Command::new("cargo");
    build.current_dir(&root).args([
        "test",
        "--workspace",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    env(&mut build);
    let json = xtask::util::output(
        build.stderr(std::process::Stdio::inherit()),
        "building the tests",
    )?;
    let (mut alone, mut host) = (Vec::new(), Vec::new());
    for b in xtask::testrun::parse_artifacts(&json)? {
        if b.runs_alone()? {
            alone.push(b);
        } else {
            host.push(b);
        }
    }
    // 2. Host-only work side by side: unit tests, simulators, spin models,
    //    the doc tests, loom (the lock-free modules against loom's
    //    atomics) and Miri (the unit tests of src/), longest first.
    let mut jobs: Vec<xtask::testrun::Job> = host
        .iter()
        .map(|b| {
            let mut cmd = Command::new(&b.path);
            cmd.current_dir(&b.dir);
            env(&mut cmd);
            xtask::testrun::Job {
                name: b.name.clone(),
                cmd,
            }
        })
        .collect();
    let mut cargo_job = |name: &str, args: &[&str], envs: &[(&str, String)]| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root).args(args);
        env(&mut cmd);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        jobs.push(xtask::testrun::Job {
            name: name.into(),
            cmd,
        });
    };
    cargo_job("doc tests", &["test", "--workspace", "--doc"], &[]);
    cargo_job(
        "loom models",
        &["test", "--release", "--test", "loom"],
        &[
            ("RUSTFLAGS", "--cfg loom".into()),
            (
                "CARGO_TARGET_DIR",
                root.join("target/loom").display().to_string(),
            ),
        ],
    );
    cargo_job(
        "miri",
        &["miri", "test", "--lib"],
        &[(
            "CARGO_TARGET_DIR",
            root.join("target/miri").display().to_string(),
        )],
    );
    let mut times = xtask::testrun::Times::load(root.join("target/xtask/test-times"));
    times.order(&mut jobs);
    let width = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!(
        "==> host tests, simulators, spin models, loom, Miri: {} jobs, {width} at a time",
        jobs.len()
    );
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let heartbeat = std::time::Duration::from_secs(60);
    let finished = xtask::testrun::run_side_by_side(jobs, width, heartbeat, |f| {
        let tally = xtask::testrun::Tally::of(&f.output);
        if f.ok() {
            eprintln!(
                "  ok      {:<22} {tally:<20} {:>6.1} s",
                f.name,
                f.took.as_secs_f64()
            );
        } else {
            eprintln!("---- {} ----\n{}", f.name, f.output.trim_end());
            let why = match &f.status {
                Ok(s) => s.to_string(),
                Err(e) => format!("cannot start: {e}"),
            };
            eprintln!(
                "  FAILED  {:<22} {tally} ({why}) {:>6.1} s",
                f.name,
                f.took.as_secs_f64()
            );
        }
    });
    // Passing runs in the default mode only: a failure's time, or a long
    // run's, says little about the next run's order.
    if !long {
        for f in finished.iter().filter(|f| f.ok()) {
            times.record(&f.name, f.took);
        }
        times.keep_only(&names.iter().map(String::as_str).collect::<Vec<_>>());
        times.save();
    }
    let failed: Vec<&str> = finished
        .iter()
        .filter(|f| !f.ok())
        .map(|f| f.name.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(err(format!("failed: {} (output above)", failed.join(", "))));
    }
    // 3. The QEMU boots (a 4-CPU guest fills both cores of a 2-core host)
    //    and the host-thread races, one binary at a time with nothing
    //    beside them, output as it comes.
    for b in &alone {
        eprintln!("==> alone: {}", b.name);
        let t = std::time::Instant::now();
        let mut cmd = Command::new(&b.path);
        cmd.current_dir(&b.dir);
        env(&mut cmd);
        let status = cmd
            .status()
            .map_err(|e| err(format!("starting {}: {e}", b.path.display())))?;
        if !status.success() {
            return Err(err(format!("{} failed", b.name)));
        }
        eprintln!(
            "  ok      {:<22} {:>6.1} s",
            b.name,
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "==> all test stages passed{} in {}",
        if long { " (long mode)" } else { "" },
        xtask::util::mmss(began.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

fn report(args: &[String]) -> Result<ExitCode> {
    let mut log = None;
    let mut out = std::path::PathBuf::from(".");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = it.next().ok_or_else(|| err("--out needs a value"))?.into(),
            other if other.starts_with("--") => {
                return Err(err(format!("unknown option '{other}' for report")));
            }
            file if log.is_none() => log = Some(std::path::PathBuf::from(file)),
            extra => return Err(err(format!("report reads one LOG; '{extra}' is a second"))),
        }
    }
    let log = log.ok_or_else(|| err("report needs a LOG: cargo xtask report LOG [--out DIR]"))?;
    let line = xtask::report::run_cli(&log, &out)?;
    eprintln!("==> {line}");
    Ok(ExitCode::SUCCESS)
}

fn experiment(args: &[String]) -> Result<ExitCode> {
    let (mut set, mut smps, mut size, mut wait) = (
        "injected".to_string(),
        vec![2u32, 4],
        None,
        "spin".to_string(),
    );
    let mut out = repo_root().join("results");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--set" => set = value(&mut it, "--set")?,
            "--smp" => {
                smps = value(&mut it, "--smp")?
                    .split(',')
                    .map(parse_smp)
                    .collect::<Result<_>>()?
            }
            "--cell-size" => {
                size = Some(parse_positive(
                    "--cell-size",
                    &value(&mut it, "--cell-size")?,
                )?)
            }
            "--wait" => wait = parse_experiment_wait(&value(&mut it, "--wait")?)?,
            "--out" => out = value(&mut it, "--out")?.into(),
            other => return Err(err(format!("unknown option '{other}' for experiment"))),
        }
    }
    let mut append =
        format!("experiment={set} wait={wait} watchdog_ms=500 tick_hz=1000 irq_load_us=100");
    if let Some(n) = size {
        append.push_str(&format!(" cell_size={n}"));
    }
    check_append(&append)?;
    let elf = xtask::kernel_elf(false)?;
    let mut log = String::new();
    let mut pass = true;
    for &smp in &smps {
        eprintln!("==> experiment on {smp} CPUs: {append}");
        let r = xtask::qemu::run(&xtask::qemu::RunSpec {
            kernel: &elf,
            smp,
            mem: xtask::qemu::DEFAULT_MEM_MIB,
            append: &append,
            timeout: std::time::Duration::from_secs(900),
            echo: true,
            image: None,
            cpu: Default::default(),
        })?;
        eprintln!("==> {}", r.describe());
        pass &= r.passed();
        log.push_str(&r.output);
        log.push('\n');
    }
    std::fs::create_dir_all(&out).context(|| format!("creating {}", out.display()))?;
    let capture = out.join("experiment.log");
    std::fs::write(&capture, &log).context(|| format!("writing {}", capture.display()))?;
    let line = xtask::report::run_cli(&capture, &out)?;
    eprintln!("==> {line}");
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn matrix(args: &[String]) -> Result<ExitCode> {
    let mut p = xtask::matrix::Params::default();
    let mut out = repo_root().join("results");
    let mut check = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--per-cpu" => p.per_cpu = parse_positive("--per-cpu", &value(&mut it, "--per-cpu")?)?,
            "--smp" => {
                p.smps = value(&mut it, "--smp")?
                    .split(',')
                    .map(parse_smp)
                    .collect::<Result<_>>()?
            }
            "--out" => out = value(&mut it, "--out")?.into(),
            "--check" => check = true,
            other => return Err(err(format!("unknown option '{other}' for matrix"))),
        }
    }
    let elf = xtask::kernel_elf(false)?;
    eprintln!(
        "==> fault x fix matrix: {} cells, {}",
        p.smps.len() * xtask::matrix::FAULTS.len() * xtask::matrix::FIXES.len(),
        p.common_args()
    );
    let cells = xtask::matrix::run_all(&elf, &p, |c| println!("{}", xtask::matrix::describe(c)))?;
    xtask::matrix::write(&out, &cells, &p)?;
    let wrong = cells.iter().filter(|c| !c.as_predicted()).count();
    eprintln!(
        "==> wrote {}/matrix.md and matrix.json; {} of {} cells as predicted",
        out.display(),
        cells.len() - wrong,
        cells.len()
    );
    Ok(if check && wrong > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn stress(args: &[String]) -> Result<ExitCode> {
    let (mut per_cpu, mut smp, mut extra) = (250_000u64, 4u32, String::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--per-cpu" => per_cpu = parse_positive("--per-cpu", &value(&mut it, "--per-cpu")?)?,
            "--smp" => smp = parse_smp(&value(&mut it, "--smp")?)?,
            "--append" => extra = value(&mut it, "--append")?,
            other => return Err(err(format!("unknown option '{other}' for stress"))),
        }
    }
    let elf = xtask::kernel_elf(false)?;
    let append = format!(
        "stress={per_cpu} inject=edge_loss ipi_lock=on ipi_poll=on watchdog_ms=1000 tick_hz=1000 irq_load_us=100 {extra}"
    );
    eprintln!("==> stress: {smp} CPUs, {append}");
    let r = qemu::run(&RunSpec {
        kernel: &elf,
        smp,
        mem: qemu::DEFAULT_MEM_MIB,
        append: append.trim(),
        timeout: Duration::from_secs(3 * 3600),
        echo: true,
        image: None,
        cpu: Default::default(),
    })?;
    let fields = xtask::matrix::parse_result(&r.output).unwrap_or_default();
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("-")
    };
    let ok = get("outcome") == "completed" && get("stalls") == "0";
    eprintln!(
        "==> stress {}: {} shootdowns ({} cross-calls) in {} ms, watchdog reports {}, dropped {}, rescued {}",
        if ok { "PASS" } else { "FAIL" },
        get("done"),
        get("done")
            .parse::<u64>()
            .map(|d| (d * u64::from(smp - 1)).to_string())
            .unwrap_or_default(),
        get("elapsed_ms"),
        get("stalls"),
        get("dropped"),
        get("rescued_call")
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The host tests a mutant of src/ must fail (everything but the QEMU
/// boots, which test the kernel, loom, which needs its own cfg, and the
/// spin model test, which checks tests/model/xcall.pml and reads nothing of
/// src/, so no mutant can change its result; it would add 27 s to each).
const MUTANT_TESTS: &[&str] = &[
    "--lib",
    "--test",
    "xcall_sim",
    "--test",
    "tlb_sim",
    "--test",
    "sim_deadlocks",
    "--test",
    "sim_scale",
    "--test",
    "sim_nap",
    "--test",
    "sim_experiment",
    "--test",
    "sim_ptfree",
    "--test",
    "sim_poll_gate",
];

/// Seconds a mutant's build or test may take before cargo-mutants counts it
/// as a hang (caught by timeout): about 8 times the unmutated test run
/// (11 s on 2 cores), room for a loaded machine.
const MUTANT_TIMEOUT: &str = "90";

fn mutants(args: &[String]) -> Result<ExitCode> {
    let mut files = Vec::new();
    let mut out = repo_root().join("target/mutants");
    let mut jobs = "1".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--file" => {
                let f = value(&mut it, "--file")?;
                if !repo_root().join(&f).is_file() || !f.starts_with("src/") {
                    return Err(err(format!(
                        "--file {f}: not a file of the portable core (src/...)"
                    )));
                }
                files.push(f);
            }
            "--out" => out = value(&mut it, "--out")?.into(),
            "--jobs" => jobs = parse_positive("--jobs", &value(&mut it, "--jobs")?)?.to_string(),
            other => return Err(err(format!("unknown option '{other}' for mutants"))),
        }
    }
    // No toolchain::ensure: the host tests need only the nightly that
    // rust-toolchain.toml pins (rustup fetches it), not the Alpha toolchain.
    let have = Command::new("cargo")
        .args(["mutants", "--version"])
        .current_dir(repo_root())
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("==> installing cargo-mutants (cargo install --locked)");
        let st = Command::new("cargo")
            .args(["install", "--locked", "cargo-mutants"])
            .status()
            .map_err(|e| err(format!("cargo install: {e}")))?;
        if !st.success() {
            return Err(err("cargo install cargo-mutants failed"));
        }
    }
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root())
        .args([
            "mutants",
            "-p",
            "alphasmp",
            "--timeout",
            MUTANT_TIMEOUT,
            "--jobs",
            &jobs,
            "--output",
        ])
        .arg(&out);
    for f in &files {
        cmd.args(["--file", f]);
    }
    cmd.arg("--").args(MUTANT_TESTS);
    eprintln!(
        "==> cargo mutants over {} against: cargo test {}",
        if files.is_empty() {
            "src/".to_string()
        } else {
            files.join(" ")
        },
        MUTANT_TESTS.join(" ")
    );
    let st = cmd
        .status()
        .map_err(|e| err(format!("starting cargo mutants: {e}")))?;
    eprintln!(
        "==> results in {}/mutants.out (missed.txt lists the surviving mutants)",
        out.display()
    );
    // cargo-mutants exits 2 when mutants were missed, 0 when all were caught.
    Ok(if st.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `layouts`: the pads (bytes) the code after the assembly is shifted by.
/// 1092 and 2312 move it within an 8 KB page and by a different amount
/// in each of the low address bits QEMU hashes its block cache on.
const DEFAULT_PADS: &[u64] = &[0, 1092, 2312];

fn layouts(args: &[String]) -> Result<ExitCode> {
    let mut pads = DEFAULT_PADS.to_vec();
    let mut out = repo_root().join("target/layouts");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pads" => {
                pads = value(&mut it, "--pads")?
                    .split(',')
                    .map(|p| {
                        p.parse::<u64>()
                            .map_err(|_| err(format!("--pads {p}: not a whole number of bytes")))
                    })
                    .collect::<Result<_>>()?;
            }
            "--out" => out = value(&mut it, "--out")?.into(),
            other => return Err(err(format!("unknown option '{other}' for layouts"))),
        }
    }
    let tc = xtask::toolchain::ensure(false)?;
    std::fs::create_dir_all(&out).context(|| format!("creating {}", out.display()))?;
    let mut paths = Vec::new();
    for pad in pads {
        eprintln!("==> kernel with the code shifted by {pad} bytes");
        let elf = xtask::kernel::build_layout(&tc, pad)?;
        let to = out.join(format!("kernel-pad{pad}"));
        std::fs::copy(&elf, &to).context(|| format!("copying to {}", to.display()))?;
        paths.push(to.display().to_string());
    }
    println!("{}", paths.join(","));
    Ok(ExitCode::SUCCESS)
}

fn ab(args: &[String]) -> Result<ExitCode> {
    let mut smp = 2;
    let mut rounds = 10;
    let mut append = "bench=1000 watchdog_ms=0 wait=auto ipi_lock=off ipi_poll=on".to_string();
    let mut variants = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smp" => smp = parse_smp(&value(&mut it, "--smp")?)?,
            "--rounds" => rounds = parse_positive("--rounds", &value(&mut it, "--rounds")?)? as u32,
            "--append" => {
                let v = value(&mut it, "--append")?;
                alphasmp_bootargs::BootConfig::parse(&v)
                    .map_err(|e| err(format!("--append: {e}")))?;
                append = v;
            }
            other if other.starts_with("--") => {
                return Err(err(format!("unknown option '{other}' for ab")));
            }
            other => variants.push(xtask::ab::parse_variant(other)?),
        }
    }
    if variants.len() < 2 {
        return Err(err(
            "ab needs two or more LABEL=ELF[,ELF...] (the first is the base)",
        ));
    }
    let samples = xtask::ab::run(&variants, smp, rounds, &append, &|m| eprintln!("{m}"))?;
    println!("# {} CPUs, {rounds} rounds, append \"{append}\"", smp);
    print!("{}", xtask::ab::report(&variants, &samples));
    Ok(ExitCode::SUCCESS)
}

fn profile(args: &[String]) -> Result<ExitCode> {
    let mut cfg = xtask::profile::Config {
        ops: vec!["call_single_wait".into()],
        smps: vec![2],
        wait: "nap".into(),
        samples: 1000,
        cpu: None,
        top: 25,
        linux_samples: 20,
        blocks: false,
        busy: false,
    };
    let mut out = repo_root().join("results/profile.md");
    let mut pcs: Option<std::path::PathBuf> = None;
    let mut with_linux = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--op" => {
                cfg.ops = value(&mut it, "--op")?
                    .split(',')
                    .map(str::to_string)
                    .collect();
                for op in &cfg.ops {
                    alphasmp_bootargs::BootConfig::parse(&format!("bench_only={op}"))
                        .map_err(|e| err(format!("--op: {e}")))?;
                }
            }
            "--smp" => cfg.smps = bench_smps(&value(&mut it, "--smp")?)?,
            "--wait" => {
                let w = value(&mut it, "--wait")?;
                alphasmp_bootargs::BootConfig::parse(&format!("wait={w}"))
                    .map_err(|e| err(format!("--wait: {e}")))?;
                cfg.wait = w;
            }
            "--samples" => cfg.samples = bench_samples(&value(&mut it, "--samples")?)?,
            "--cpu" => cfg.cpu = Some(qemu::CpuModel::parse(&value(&mut it, "--cpu")?)?),
            "--top" => cfg.top = parse_positive("--top", &value(&mut it, "--top")?)? as usize,
            "--out" => out = value(&mut it, "--out")?.into(),
            "--pcs" => pcs = Some(value(&mut it, "--pcs")?.into()),
            "--linux" => with_linux = true,
            "--blocks" => cfg.blocks = true,
            "--busy" => cfg.busy = true,
            "--linux-samples" => {
                cfg.linux_samples =
                    parse_positive("--linux-samples", &value(&mut it, "--linux-samples")?)?
            }
            other => return Err(err(format!("unknown option '{other}' for profile"))),
        }
    }
    let kernel = xtask::kernel_elf(false)?;
    let linux = if with_linux {
        Some(xtask::linux::ensure(&|m| eprintln!("==> {m}"))?)
    } else {
        None
    };
    let mut systems = vec![xtask::profile::System::ours(&kernel, &cfg)];
    if let Some(l) = &linux {
        systems.push(xtask::profile::System::linux(l, &cfg));
    }
    let profiles = xtask::profile::run(&cfg, &systems)?;
    let unit = xtask::profile::unit(&cfg);
    let mut text = format!("# Where the {unit} go\n\n");
    text.push_str(&format!(
        "Made by `cargo xtask profile {}` ({} counted in QEMU's trace under \
         `-icount shift=0,sleep=off`, per operation, on every CPU; see xtask/src/profile.rs).\n",
        args.join(" "),
        if cfg.blocks {
            "translated blocks entered, unchained,"
        } else {
            "instructions"
        }
    ));
    text.push_str(&xtask::profile::report(&cfg, &profiles));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    print!("{text}");
    std::fs::write(&out, text).context(|| format!("writing {}", out.display()))?;
    eprintln!("==> wrote {}", out.display());
    if let Some(file) = pcs {
        let lines: String = profiles.iter().map(|p| p.pcs_text()).collect();
        std::fs::write(&file, lines).context(|| format!("writing {}", file.display()))?;
        eprintln!("==> wrote {} (instructions per address)", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(args: &[String]) -> Result<ExitCode> {
    let mut cfg = xtask::bench::Config {
        samples: 1000,
        smps: vec![2, 3, 4],
        fixes: xtask::bench::fixes("all")?,
        waits: vec!["auto", "adaptive", "nap", "spin"],
        linux_boots: 2,
        cpu: Default::default(),
    };
    let mut with_linux = false;
    let mut out = repo_root().join("results");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--samples" => cfg.samples = bench_samples(&value(&mut it, "--samples")?)?,
            "--smp" => cfg.smps = bench_smps(&value(&mut it, "--smp")?)?,
            "--fixes" => cfg.fixes = xtask::bench::fixes(&value(&mut it, "--fixes")?)?,
            "--wait" => cfg.waits = value(&mut it, "--wait")?
                .split(',')
                .map(|w| match w {
                    "nap" => Ok("nap"),
                    "spin" => Ok("spin"),
                    "adaptive" => Ok("adaptive"),
                    "auto" => Ok("auto"),
                    other => Err(err(format!(
                        "--wait {other}: expected spin, nap, adaptive, auto or a list (spin,nap)"
                    ))),
                })
                .collect::<Result<_>>()?,
            "--out" => out = value(&mut it, "--out")?.into(),
            "--linux" => with_linux = true,
            "--instructions" => cfg.cpu.count_instructions = true,
            "--linux-boots" => {
                cfg.linux_boots = value(&mut it, "--linux-boots")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .ok_or_else(|| err("--linux-boots: expected a whole number from 1 to 50"))?
            }
            other => return Err(err(format!("unknown option '{other}' for bench"))),
        }
    }
    let started = std::time::Instant::now();
    if with_linux && cfg.cpu.count_instructions {
        return Err(err(
            "--instructions with --linux: Linux's suite measures busy targets too, and under counted instructions each busy sample holds the round robin for a whole slice",
        ));
    }
    let linux = if with_linux {
        Some(xtask::linux::ensure(&|s| eprintln!("{s}"))?)
    } else {
        None
    };
    let elf = xtask::kernel_elf(false)?;
    let host = host_description();
    let extra = if with_linux {
        cfg.smps.len() * (2 * cfg.linux_boots as usize - 1)
    } else {
        0
    };
    eprintln!(
        "==> {} benchmark boots ({} samples per measurement) on {host}",
        cfg.boots() + extra,
        cfg.samples
    );
    let r = xtask::bench::run(&elf, &cfg, linux.as_ref())?;
    xtask::bench::write(&out, &r.ms, &cfg, &host, r.cmp.as_ref())?;
    println!(
        "{}",
        xtask::bench::markdown(&r.ms, &cfg, &host, r.cmp.as_ref())
    );
    eprintln!("==> bench took {}", xtask::util::mmss(started.elapsed()));
    eprintln!(
        "==> wrote {0}/bench.md, {0}/bench.json and {0}/bench.svg",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// "N-core host (CPU model)", for the results' header.
fn host_description() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("a {cores}-core host ({model}), qemu-system-alpha -M clipper")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_experiment_waits_by_spinning_or_napping_only() {
        assert_eq!(parse_experiment_wait("spin").ok().as_deref(), Some("spin"));
        assert_eq!(parse_experiment_wait("nap").ok().as_deref(), Some("nap"));
        for bad in ["auto", "adaptive", "", "Spin"] {
            let e = parse_experiment_wait(bad).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains("spin|nap")),
                "{bad}: {e:?}"
            );
        }
    }

    fn refusal(command: &str, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse_run_args(command, &args) {
            Ok(_) => panic!("{command} {args:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_run_and_gdb_options_are_refused_in_one_line() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("run", &["--smp", "5"], "--smp 5 is impossible"),
            ("gdb", &["--smp", "0"], "--smp 0 is impossible"),
            ("run", &["--mem", "32"], "--mem 32 is out of range"),
            ("gdb", &["--mem", "4096"], "--mem 4096 is out of range"),
            ("run", &["--mem", "lots"], "--mem lots: not a whole number"),
            (
                "run",
                &["--append", "bogus=1"],
                "--append: unknown boot argument 'bogus'",
            ),
            (
                "gdb",
                &["--append", "tick_hz=0"],
                "--append: boot argument tick_hz=0",
            ),
            (
                "run",
                &["--append", "tests"],
                "--append: boot argument 'tests' is not key=value",
            ),
            (
                "run",
                &["--cpu", "ev5"],
                "--cpu ev5: expected one of ev6, ev67, ev68",
            ),
            ("gdb", &["--cpu"], "--cpu needs a value"),
            (
                "run",
                &["--ex", "info threads"],
                "unknown option '--ex' for run",
            ),
            (
                "gdb",
                &["--timeout", "5"],
                "unknown option '--timeout' for gdb",
            ),
        ];
        for (command, args, want) in cases {
            let e = refusal(command, args);
            let first = e.lines().next().unwrap_or_default();
            assert!(
                first.contains(want),
                "{command} {args:?}: got '{first}', want '{want}'"
            );
        }
        let long = "tests=".to_string() + &"a".repeat(300);
        assert!(refusal("run", &["--append", &long]).contains("at most 255"));
    }

    #[test]
    fn good_options_are_taken() {
        let args: Vec<String> = [
            "--smp",
            "2",
            "--mem",
            "64",
            "--append",
            "tests=smp tick_hz=200",
            "--ex",
            "info threads",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = parse_run_args("gdb", &args).expect("accepted");
        assert_eq!(
            (r.smp, r.mem, r.append.as_str(), r.ex.len()),
            (2, 64, "tests=smp tick_hz=200", 1)
        );
    }
}
