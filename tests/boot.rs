//! Boots the kernel in QEMU and checks its self-tests end to end: the
//! verdict must come from the kernel (exit status plus summary line), and a
//! failing self-test or a refused boot argument must make the run fail.
//!
//! The kernel ELF comes from `cargo xtask test` (ALPHASMP_KERNEL) or, under
//! plain `cargo test`, is built here with the same code. QEMU boots are
//! serialised: with 4 vCPUs each, parallel boots on a 2-core machine would
//! only slow each other down.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use xtask::qemu::{self, Ending, RunResult, RunSpec};

fn kernel() -> &'static PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| xtask::kernel_elf(true).unwrap_or_else(|e| panic!("cannot build the kernel: {e}")))
}

fn boot(smp: u32, append: &str) -> RunResult {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let spec = RunSpec { kernel: kernel(), smp, append, timeout: Duration::from_secs(120), echo: false };
    let r = qemu::run(&spec).expect("QEMU starts");
    eprintln!("--- smp={smp} append='{append}': {}\n{}", r.describe(), r.output);
    r
}

fn assert_all_pass(smp: u32) {
    let r = boot(smp, "");
    assert!(r.passed(), "self-tests on {smp} CPU(s) did not pass: {}", r.describe());
    assert!(r.lines_with("FAILED").next().is_none(), "a test line says FAILED");
    let (passed, _) = r.summary().unwrap();
    let ok_lines = r.lines_with(" ... ok").count() as u32;
    assert_eq!(ok_lines, passed, "summary count matches the per-test lines");
}

#[test]
fn selftests_pass_on_1_cpu() {
    assert_all_pass(1);
}

#[test]
fn banner_reports_hwrpb_facts() {
    let r = boot(1, "tests=div.u64");
    let hw = r.lines_with("hwrpb:").next().expect("banner line");
    assert!(hw.contains("1 CPU(s)") && hw.contains("memory 256 MiB"), "{hw}");
    assert!(r.passed(), "{}", r.describe());
}

#[test]
fn forced_failure_fails_the_run() {
    let r = boot(1, "tests=selftest,div.u64 force_fail=yes");
    assert_eq!(r.ending, Ending::Exited(1), "pvpanic exit status: {}", r.describe());
    assert_eq!(r.summary(), Some((1, 1)), "one pass, one failure");
    assert!(r.lines_with("test selftest.forced_failure ... FAILED").next().is_some());
    assert!(!r.passed());
}

#[test]
fn unknown_boot_argument_is_refused() {
    let r = boot(1, "tests=div bogus=1");
    assert_eq!(r.ending, Ending::Exited(1), "{}", r.describe());
    let line = r.lines_with("error: unknown boot argument 'bogus'").next();
    assert!(line.is_some(), "one clear line naming the key");
    assert_eq!(r.summary(), None, "no tests ran");
}

#[test]
fn bad_boot_value_is_refused() {
    let r = boot(1, "tick_hz=0");
    assert_eq!(r.ending, Ending::Exited(1), "{}", r.describe());
    assert!(r.lines_with("error: boot argument tick_hz=0").next().is_some());
}
