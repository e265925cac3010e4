//! `cargo xtask <command>`: the project's commands (see README).

use std::process::{Command, ExitCode};
use std::time::Duration;

use xtask::qemu::{self, RunSpec};
use xtask::util::{Result, err, repo_root};

const USAGE: &str = "usage: cargo xtask <command>
  run [--smp N] [--mem MIB] [--append \"ARGS\"] [--timeout SECS]
                 build, boot on QEMU (default 4 CPUs), run the self-tests, exit with their verdict
  test [--long]  everything CI runs: host/simulator/model tests, QEMU boots and the
                 fault x fix matrix, loom, Miri (--long: more seeds and rounds)
  matrix [--per-cpu N] [--smp 2,4] [--out DIR] [--check]
                 fault x fix matrix, one QEMU boot per cell; writes DIR/matrix.md and .json (default results/)
  bench [--per-cpu N] [--reps N] [--smp 2,4] [--out DIR]
                 cost of each fix with no fault: time per shootdown, repeated; writes DIR/bench.md and .json
  stress [--per-cpu N] [--smp N] [--append \"ARGS\"]
                 long stress: edge loss injected, all fixes on; zero watchdog reports required
  build          build the kernel ELF and print its path
  toolchain      install packages and build the Alpha toolchain (cached)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("build") => build(&args[1..]),
        Some("matrix") => matrix(&args[1..]),
        Some("stress") => stress(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("toolchain") => toolchain(&args[1..]),
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

/// Parses a `--smp` value: a CPU count the clipper machine can have.
fn parse_smp(v: &str) -> Result<u32> {
    let n = v.parse().map_err(|_| err(format!("--smp {v}: not a number (the clipper machine has 1 to {} CPUs)", qemu::MAX_SMP)))?;
    qemu::check_smp(n)?;
    Ok(n)
}

/// Parses a `--mem` value in MiB.
fn parse_mem(v: &str) -> Result<u32> {
    let n = v.parse().map_err(|_| {
        err(format!("--mem {v}: not a whole number of MiB ({} to {})", qemu::MIN_MEM_MIB, qemu::MAX_MEM_MIB))
    })?;
    qemu::check_mem(n)?;
    Ok(n)
}

/// Parses a whole number greater than zero for option `name`.
fn parse_positive(name: &str, v: &str) -> Result<u64> {
    v.parse().ok().filter(|n| *n > 0).ok_or_else(|| err(format!("{name} {v}: expected a whole number > 0")))
}

struct RunArgs {
    smp: u32,
    mem: u32,
    append: String,
    timeout: u64,
}

fn parse_run_args(args: &[String]) -> Result<RunArgs> {
    let mut r = RunArgs { smp: 4, mem: qemu::DEFAULT_MEM_MIB, append: String::new(), timeout: 120 };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| err(format!("{name} needs a value")));
        match a.as_str() {
            "--smp" => r.smp = parse_smp(&value("--smp")?)?,
            "--mem" => r.mem = parse_mem(&value("--mem")?)?,
            "--append" => r.append = value("--append")?,
            "--timeout" => r.timeout = parse_positive("--timeout", &value("--timeout")?)?,
            other => return Err(err(format!("unknown option '{other}' for run\n{USAGE}"))),
        }
    }
    Ok(r)
}

fn run(args: &[String]) -> Result<ExitCode> {
    // Refuse bad options before any building or booting.
    let r = parse_run_args(args)?;
    let elf = xtask::kernel_elf(false)?;
    eprintln!("==> booting {} on qemu-system-alpha -M clipper -smp {} (timeout {} s)", elf.display(), r.smp, r.timeout);
    let result = qemu::run(&RunSpec { kernel: &elf, smp: r.smp, mem: r.mem, append: &r.append, timeout: Duration::from_secs(r.timeout), echo: true })?;
    eprintln!("==> {}", result.describe());
    Ok(if result.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn test(args: &[String]) -> Result<ExitCode> {
    let long = match args.first().map(String::as_str) {
        None => false,
        Some("--long") if args.len() == 1 => true,
        Some(a) => return Err(err(format!("unexpected argument '{a}' for test (only --long)"))),
    };
    let tc = xtask::toolchain::ensure(false)?;
    let elf = xtask::kernel::build(&tc)?;
    eprintln!("==> kernel: {}", elf.display());
    let root = repo_root();
    let cargo = |what: &str, args: &[&str], envs: &[(&str, &str)]| -> Result<()> {
        eprintln!("==> {what}: cargo {}", args.join(" "));
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root).env("ALPHASMP_KERNEL", &elf).args(args);
        if long {
            cmd.env("ALPHASMP_LONG", "1");
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let status = cmd.status().map_err(|e| err(format!("starting cargo: {e}")))?;
        if status.success() { Ok(()) } else { Err(err(format!("{what} failed"))) }
    };
    // 1. Host unit tests, simulator, spin models, QEMU boots and the matrix.
    cargo("host tests, simulator, spin models, QEMU boots", &["test", "--workspace"], &[])?;
    // 2. loom: the lock-free modules compiled against loom's atomics.
    let loom_dir = root.join("target/loom");
    cargo("loom", &["test", "--release", "--test", "loom"], &[("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", &loom_dir.display().to_string())])?;
    // 3. Miri over the unit tests of src/.
    let miri_dir = root.join("target/miri");
    cargo("miri", &["miri", "test", "--lib"], &[("CARGO_TARGET_DIR", &miri_dir.display().to_string())])?;
    eprintln!("==> all test stages passed{}", if long { " (long mode)" } else { "" });
    Ok(ExitCode::SUCCESS)
}

fn matrix(args: &[String]) -> Result<ExitCode> {
    let mut p = xtask::matrix::Params::default();
    let mut out = repo_root().join("results");
    let mut check = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| err(format!("{name} needs a value")));
        match a.as_str() {
            "--per-cpu" => p.per_cpu = parse_positive("--per-cpu", &value("--per-cpu")?)?,
            "--smp" => p.smps = value("--smp")?.split(',').map(parse_smp).collect::<Result<_>>()?,
            "--out" => out = value("--out")?.into(),
            "--check" => check = true,
            other => return Err(err(format!("unknown option '{other}' for matrix"))),
        }
    }
    let elf = xtask::kernel_elf(false)?;
    eprintln!("==> fault x fix matrix: {} cells, {}", p.smps.len() * 20, p.common_args());
    let cells = xtask::matrix::run_all(&elf, &p, |c| println!("{}", xtask::matrix::describe(c)))?;
    xtask::matrix::write(&out, &cells, &p)?;
    let wrong = cells.iter().filter(|c| !c.as_predicted()).count();
    eprintln!("==> wrote {}/matrix.md and matrix.json; {} of {} cells as predicted", out.display(), cells.len() - wrong, cells.len());
    Ok(if check && wrong > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn stress(args: &[String]) -> Result<ExitCode> {
    let (mut per_cpu, mut smp, mut extra) = (250_000u64, 4u32, String::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| err(format!("{name} needs a value")));
        match a.as_str() {
            "--per-cpu" => per_cpu = parse_positive("--per-cpu", &value("--per-cpu")?)?,
            "--smp" => smp = parse_smp(&value("--smp")?)?,
            "--append" => extra = value("--append")?,
            other => return Err(err(format!("unknown option '{other}' for stress"))),
        }
    }
    let elf = xtask::kernel_elf(false)?;
    let append = format!("stress={per_cpu} inject=edge_loss ipi_lock=on ipi_poll=on watchdog_ms=1000 tick_hz=1000 irq_load_us=100 {extra}");
    eprintln!("==> stress: {smp} CPUs, {append}");
    let r = qemu::run(&RunSpec { kernel: &elf, smp, mem: qemu::DEFAULT_MEM_MIB, append: append.trim(), timeout: Duration::from_secs(3 * 3600), echo: true })?;
    let fields = xtask::matrix::parse_result(&r.output).unwrap_or_default();
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("-");
    let ok = get("outcome") == "completed" && get("stalls") == "0";
    eprintln!(
        "==> stress {}: {} shootdowns ({} cross-calls) in {} ms, watchdog reports {}, dropped {}, rescued {}",
        if ok { "PASS" } else { "FAIL" },
        get("done"),
        get("done").parse::<u64>().map(|d| (d * u64::from(smp - 1)).to_string()).unwrap_or_default(),
        get("elapsed_ms"),
        get("stalls"),
        get("dropped"),
        get("rescued_call")
    );
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn bench(args: &[String]) -> Result<ExitCode> {
    let (mut per_cpu, mut reps, mut smps, mut out) = (1000u64, 5usize, vec![2u32, 4], repo_root().join("results"));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| err(format!("{name} needs a value")));
        match a.as_str() {
            "--per-cpu" => per_cpu = parse_positive("--per-cpu", &value("--per-cpu")?)?,
            "--reps" => reps = parse_positive("--reps", &value("--reps")?)? as usize,
            "--smp" => smps = value("--smp")?.split(',').map(parse_smp).collect::<Result<_>>()?,
            "--out" => out = value("--out")?.into(),
            other => return Err(err(format!("unknown option '{other}' for bench"))),
        }
    }
    let elf = xtask::kernel_elf(false)?;
    let rows = xtask::bench::run(&elf, &smps, per_cpu, reps, |smp, fix, us| println!("smp={smp} fix={fix:<15} {us:.1} us per shootdown"))?;
    xtask::bench::write(&out, &rows, per_cpu, reps)?;
    println!("{}", xtask::bench::markdown(&rows, per_cpu, reps));
    Ok(ExitCode::SUCCESS)
}
