//! `cargo xtask <command>`: the project's commands (see README).

use std::process::{Command, ExitCode};
use std::time::Duration;

use xtask::qemu::{self, RunSpec};
use xtask::util::{Result, err, repo_root};

const USAGE: &str = "usage: cargo xtask <command>
  run [--smp N] [--append \"ARGS\"] [--timeout SECS]
                 build, boot on QEMU (default 4 CPUs), run the self-tests, exit with their verdict
  test           host tests, then the QEMU boots in tests/ (everything CI runs)
  build          build the kernel ELF and print its path
  toolchain      install packages and build the Alpha toolchain (cached)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("build") => build(&args[1..]),
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

struct RunArgs {
    smp: u32,
    append: String,
    timeout: u64,
}

fn parse_run_args(args: &[String]) -> Result<RunArgs> {
    let mut r = RunArgs { smp: 4, append: String::new(), timeout: 120 };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| err(format!("{name} needs a value")));
        match a.as_str() {
            "--smp" => {
                let v = value("--smp")?;
                r.smp = v.parse().map_err(|_| err(format!("--smp {v}: not a number (the clipper machine has 1 to {} CPUs)", qemu::MAX_SMP)))?;
                qemu::check_smp(r.smp)?;
            }
            "--append" => r.append = value("--append")?,
            "--timeout" => {
                let v = value("--timeout")?;
                r.timeout = v.parse().ok().filter(|t| *t > 0).ok_or_else(|| err(format!("--timeout {v}: expected seconds > 0")))?;
            }
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
    let result = qemu::run(&RunSpec { kernel: &elf, smp: r.smp, append: &r.append, timeout: Duration::from_secs(r.timeout), echo: true })?;
    eprintln!("==> {}", result.describe());
    Ok(if result.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn test(args: &[String]) -> Result<ExitCode> {
    no_args(args)?;
    let tc = xtask::toolchain::ensure(false)?;
    let elf = xtask::kernel::build(&tc)?;
    eprintln!("==> kernel: {}", elf.display());
    eprintln!("==> host tests and QEMU boots: cargo test --workspace");
    let status = Command::new("cargo")
        .current_dir(repo_root())
        .env("ALPHASMP_KERNEL", &elf)
        .args(["test", "--workspace"])
        .status()
        .map_err(|e| err(format!("starting cargo test: {e}")))?;
    if !status.success() {
        return Err(err("cargo test failed"));
    }
    Ok(ExitCode::SUCCESS)
}
