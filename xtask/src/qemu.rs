//! Booting the kernel under `qemu-system-alpha -M clipper` and reading its
//! verdict: QEMU's exit status (0 from CALL_PAL halt after a pass, 1 from
//! the pvpanic device after a failure) plus the kernel's closing summary line
//! `N passed, M failed`. Every run is bounded by a timeout.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::symbolize::Symbolizer;
use crate::util::{Context, Result, err};

/// The most CPUs the clipper machine has.
pub const MAX_SMP: u32 = 4;

/// Guest memory when no `--mem` is given (MiB).
pub const DEFAULT_MEM_MIB: u32 = 256;
/// The smallest guest memory the kernel is tested with (MiB).
pub const MIN_MEM_MIB: u32 = 64;
/// The largest the kernel is tested with (MiB).
pub const MAX_MEM_MIB: u32 = 2048;

/// What to boot.
#[derive(Clone, Debug)]
pub struct RunSpec<'a> {
    pub kernel: &'a Path,
    pub smp: u32,
    /// Guest memory in MiB ([`MIN_MEM_MIB`]..=[`MAX_MEM_MIB`]).
    pub mem: u32,
    pub append: &'a str,
    pub timeout: Duration,
    /// Copy the serial output to stdout while it arrives.
    pub echo: bool,
    /// Boot a raw SRM image through the SRM-entry emulation instead of
    /// handing QEMU the kernel ELF (`kernel` still names the kernel, for
    /// symbols).
    pub image: Option<ImageBoot<'a>>,
    /// The emulated CPU and schedule.
    pub cpu: CpuModel,
}

/// `--icount`'s setting: 4 ns of guest time per instruction (the 250 MHz
/// cycle clock the HWRPB announces), and idle time passing at once
/// instead of in real time (`sleep=off`). `shift=auto` adapts the rate to
/// the host but QEMU documents it as incompatible with `sleep=off`; with
/// it, idle guest time passed in real time (the two suite boots of
/// `selftests_pass_under_icount` took 4.2 s and 7.0 s, against 0.5 s and
/// 0.9 s now).
pub const ICOUNT: &str = "shift=2,sleep=off";

/// Which Alpha CPU QEMU emulates, and how it schedules the vCPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuModel {
    /// `-cpu NAME`; None: QEMU's default (`ev67`).
    pub name: Option<&'static str>,
    /// `-icount` ([`ICOUNT`]): guest time counts instructions and QEMU runs
    /// the vCPUs one at a time, round robin, so a CPU may use up a bound
    /// in guest time before another runs at all (a legal schedule that
    /// parallel vCPUs rarely show).
    pub icount: bool,
    /// `-icount shift=0,sleep=off` instead: one instruction is one
    /// nanosecond of guest time and idle time jumps to the next timer, so
    /// a run is the same whatever the host does, and a time measured on the
    /// guest's cycle counter counts the instructions every vCPU ran
    /// meanwhile (`cargo xtask bench --instructions`).
    pub count_instructions: bool,
}

/// The CPU models `--cpu` takes: the three generations the kernel claims
/// (21264, 21264A, 21264B; QEMU has no EV7, whose core is the EV68's).
pub const CPU_MODELS: &[&str] = &["ev6", "ev67", "ev68"];

impl CpuModel {
    /// The EV6 (21264) without the count extension: DS10, DS20, early ES40.
    pub const EV6: CpuModel = CpuModel {
        name: Some("ev6"),
        icount: false,
        count_instructions: false,
    };

    /// Parses a `--cpu` value.
    pub fn parse(name: &str) -> Result<&'static str> {
        CPU_MODELS
            .iter()
            .find(|m| **m == name)
            .copied()
            .ok_or_else(|| {
                err(format!(
                    "--cpu {name}: expected one of {}",
                    CPU_MODELS.join(", ")
                ))
            })
    }
}

/// How an SRM image is booted under QEMU: the emulation of SRM's entry
/// state as `-kernel`, the image as `-initrd`, and `-append "DEVICE ARGS"`.
#[derive(Clone, Copy, Debug)]
pub struct ImageBoot<'a> {
    pub emulation: &'a Path,
    pub image: &'a Path,
    /// `dka0` (a disk image with its boot block) or `ewa0` (a BOOTP file).
    pub device: &'a str,
}

impl RunSpec<'_> {
    /// What QEMU's `-append` carries.
    pub fn append_line(&self) -> String {
        match &self.image {
            Some(i) => format!("{} {}", i.device, self.append),
            None => self.append.to_string(),
        }
    }
}

/// How the emulator ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    /// Killed after the timeout: the kernel hung.
    TimedOut,
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub ending: Ending,
    /// The kernel's serial output (PALcode's own `PCI:` lines removed).
    pub output: String,
    pub elapsed: Duration,
}

impl RunResult {
    /// The numbers of the closing `N passed, M failed` line, if printed.
    pub fn summary(&self) -> Option<(u32, u32)> {
        self.output.lines().rev().find_map(parse_summary)
    }

    /// Passed: exit status 0, and a summary line with no failed test (the
    /// self-tests), or, for the run modes that print none (the experiment,
    /// `stress=`, `bench=`), the kernel's PASS verdict.
    pub fn passed(&self) -> bool {
        self.ending == Ending::Exited(0)
            && match self.summary() {
                Some((p, f)) => p > 0 && f == 0,
                None => self.verdict().is_some_and(|v| v.starts_with("PASS")),
            }
    }

    /// The verdict line's text after `alphasmp: `, if printed.
    pub fn verdict(&self) -> Option<&str> {
        self.output
            .lines()
            .rev()
            .find_map(|l| l.trim_end().strip_prefix("alphasmp: "))
    }

    /// The first line that starts with `prefix` (a banner line).
    pub fn line_starting(&self, prefix: &str) -> Option<&str> {
        self.output.lines().find(|l| l.starts_with(prefix))
    }

    /// Lines containing `needle`.
    pub fn lines_with<'s>(&'s self, needle: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.output.lines().filter(move |l| l.contains(needle))
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        let ending = match self.ending {
            Ending::Exited(c) => format!("QEMU exit {c}"),
            Ending::TimedOut => "timed out (killed)".to_string(),
        };
        let summary = match self.summary() {
            Some((p, f)) => format!("{p} passed, {f} failed"),
            None => self
                .verdict()
                .unwrap_or("no summary or verdict line")
                .to_string(),
        };
        let summary = summary
            .strip_prefix("PASS (")
            .or_else(|| summary.strip_prefix("FAIL ("))
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or(&summary);
        format!(
            "{} ({summary}, {ending}, {:.1} s)",
            if self.passed() { "PASS" } else { "FAIL" },
            self.elapsed.as_secs_f64()
        )
    }
}

/// Parses the exact summary line `N passed, M failed`.
pub fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let (p, rest) = line.trim().split_once(" passed, ")?;
    let f = rest.strip_suffix(" failed")?;
    Some((p.parse().ok()?, f.parse().ok()?))
}

/// Checks `--smp` before anything is started.
pub fn check_smp(smp: u32) -> Result<()> {
    if (1..=MAX_SMP).contains(&smp) {
        Ok(())
    } else {
        Err(err(format!(
            "--smp {smp} is impossible: the clipper machine has 1 to {MAX_SMP} CPUs"
        )))
    }
}

/// QEMU copies at most 255 bytes of `-append` for the kernel.
pub fn check_append_len(append: &str) -> Result<()> {
    if append.len() > 255 {
        return Err(err(format!(
            "--append is {} bytes; QEMU passes at most 255",
            append.len()
        )));
    }
    Ok(())
}

/// Checks `--mem` before anything is started.
pub fn check_mem(mib: u32) -> Result<()> {
    if (MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mib) {
        Ok(())
    } else {
        Err(err(format!(
            "--mem {mib} is out of range: the kernel runs with {MIN_MEM_MIB} to {MAX_MEM_MIB} MiB"
        )))
    }
}

/// The QEMU command line for `spec` (without the I/O plumbing); also what
/// `cargo xtask gdb` starts, so every boot sees the same machine.
pub fn command(spec: &RunSpec<'_>) -> Command {
    let mut cmd = Command::new("qemu-system-alpha");
    cmd.args([
        "-M",
        "clipper",
        "-m",
        &spec.mem.to_string(),
        "-nographic",
        "-monitor",
        "none",
        "-no-reboot",
    ])
    // No VGA card and no NIC: the kernel uses neither, and their option
    // ROMs (seabios, ipxe-qemu) are only recommended by qemu-system-misc,
    // so a machine without recommends cannot start them.
    .args(["-vga", "none", "-nic", "none"])
    .args(["-smp", &spec.smp.to_string()]);
    if let Some(cpu) = spec.cpu.name {
        cmd.args(["-cpu", cpu]);
    }
    if spec.cpu.count_instructions {
        cmd.args(["-icount", "shift=0,sleep=off"]);
    } else if spec.cpu.icount {
        cmd.args(["-icount", ICOUNT]);
    }
    cmd.args(["-append", &spec.append_line()]);
    match &spec.image {
        Some(i) => cmd
            .arg("-kernel")
            .arg(i.emulation)
            .arg("-initrd")
            .arg(i.image),
        None => cmd.arg("-kernel").arg(spec.kernel),
    };
    cmd.args(["-device", "pvpanic-pci", "-action", "panic=exit-failure"])
        .args(["-rtc", "clock=vm"]);
    cmd
}

/// Boots the kernel and waits for the end (or the timeout).
pub fn run(spec: &RunSpec<'_>) -> Result<RunResult> {
    run_with_args(spec, &[])
}

/// [`run`] with more QEMU options after the machine's (`cargo xtask
/// profile` adds its instruction trace).
pub fn run_with_args(spec: &RunSpec<'_>, extra: &[&std::ffi::OsStr]) -> Result<RunResult> {
    run_watching(spec, extra, &mut |_| {})
}

/// [`run_with_args`], showing `watch` each console line as it comes
/// (`cargo xtask profile` starts Linux's trace at one).
pub fn run_watching(
    spec: &RunSpec<'_>,
    extra: &[&std::ffi::OsStr],
    watch: &mut dyn FnMut(&str),
) -> Result<RunResult> {
    check_smp(spec.smp)?;
    check_append_len(&spec.append_line())?;
    check_mem(spec.mem)?;
    let mut cmd = command(spec);
    cmd.args(extra);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .context(|| "starting qemu-system-alpha (is qemu-system-misc installed?)".into())?;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tx2.send(format!("qemu: {line}")).is_err() {
                break;
            }
        }
    });
    let mut output = String::new();
    // Fault, panic and watchdog lines get their code addresses named.
    let mut symbols = Symbolizer::new(spec.kernel).ok();
    let mut take = |line: String, output: &mut String| {
        if line.starts_with("PCI: ") {
            return; // PALcode's own enumeration messages
        }
        watch(&line);
        let line = match symbols.as_mut() {
            Some(s) if s.wants(&line) => s.annotate_line(&line),
            _ => line,
        };
        if spec.echo {
            println!("{line}");
            std::io::stdout().flush().ok();
        }
        output.push_str(&line);
        output.push('\n');
    };
    let ending = loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(20)) {
            take(line, &mut output);
        }
        if let Some(status) = child.try_wait().context(|| "waiting for QEMU".into())? {
            break Ending::Exited(status.code().unwrap_or(-1));
        }
        if start.elapsed() > spec.timeout {
            child.kill().ok();
            child.wait().ok();
            break Ending::TimedOut;
        }
    };
    reader.join().ok();
    err_reader.join().ok();
    while let Ok(line) = rx.try_recv() {
        take(line, &mut output);
    }
    Ok(RunResult {
        ending,
        output,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_parsed_exactly() {
        assert_eq!(parse_summary("12 passed, 0 failed"), Some((12, 0)));
        assert_eq!(parse_summary("3 passed, 2 failed\r"), Some((3, 2)));
        assert_eq!(parse_summary("test x ... ok"), None);
        assert_eq!(parse_summary("a passed, 0 failed"), None);
    }

    fn result(exit: i32, output: &str) -> RunResult {
        RunResult {
            ending: Ending::Exited(exit),
            output: output.to_string(),
            elapsed: Duration::from_millis(100),
        }
    }

    /// Every run mode's verdict: the self-tests' summary, else the
    /// kernel's verdict line (`stress=` and `bench=` print no summary; a
    /// stress boot that passed once read "FAIL (no summary line)").
    #[test]
    fn each_run_mode_is_judged_by_its_verdict() {
        let stress = "stress-result: outcome=completed\nalphasmp: PASS (stress run reported)\n";
        assert!(result(0, stress).passed());
        assert_eq!(
            result(0, stress).describe(),
            "PASS (stress run reported, QEMU exit 0, 0.1 s)"
        );
        assert!(!result(1, stress).passed(), "a failure exit");
        let failed = "alphasmp: FAIL (stress: 3 shootdown(s) refused)\n";
        assert!(!result(0, failed).passed());
        assert!(!result(0, "kernel: ...\n").passed(), "no verdict at all");
        assert_eq!(
            result(0, "kernel: ...\n").describe(),
            "FAIL (no summary or verdict line, QEMU exit 0, 0.1 s)"
        );
        let tests = "3 passed, 0 failed\nalphasmp: PASS (3 passed, 0 failed)\n";
        assert!(result(0, tests).passed());
        let failing = "2 passed, 1 failed\nalphasmp: PASS (a lie)\n";
        assert!(!result(0, failing).passed(), "the summary decides");
        assert!(
            !result(
                0,
                "0 passed, 0 failed\nalphasmp: PASS (0 passed, 0 failed)\n"
            )
            .passed(),
            "no test ran"
        );
    }

    #[test]
    fn cpu_model_and_icount_reach_the_command_line() {
        let kernel = Path::new("kernel");
        let spec = |cpu| RunSpec {
            kernel,
            smp: 2,
            mem: DEFAULT_MEM_MIB,
            append: "",
            timeout: Duration::from_secs(1),
            echo: false,
            image: None,
            cpu,
        };
        let args = |cpu| {
            command(&spec(cpu))
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let default = args(CpuModel::default());
        assert!(
            !default.contains("-cpu") && !default.contains("-icount"),
            "{default}"
        );
        assert!(args(CpuModel::EV6).contains("-cpu ev6"));
        let both = args(CpuModel {
            name: Some("ev68"),
            icount: true,
            count_instructions: false,
        });
        assert!(
            both.contains("-cpu ev68") && both.contains(&format!("-icount {ICOUNT}")),
            "{both}"
        );
        let counted = args(CpuModel {
            count_instructions: true,
            ..Default::default()
        });
        assert!(
            counted.contains("-icount shift=0,sleep=off") && !counted.contains(ICOUNT),
            "{counted}"
        );
        assert_eq!(CpuModel::parse("ev6").unwrap(), "ev6");
        assert!(
            CpuModel::parse("ev5")
                .unwrap_err()
                .to_string()
                .contains("ev6, ev67, ev68")
        );
    }

    #[test]
    fn smp_range_is_checked() {
        assert!(check_smp(1).is_ok() && check_smp(4).is_ok());
        let e = check_smp(5).unwrap_err().to_string();
        assert!(e.contains("--smp 5") && !e.contains('\n'), "{e}");
        assert!(check_smp(0).is_err());
    }
}
