//! `cargo xtask bench`: boots the kernel's benchmark suite (`bench=N`,
//! arch/alpha/src/run/bench.rs) once per CPU count, fix set and wait policy,
//! collects its `bench-result:` lines and writes results/bench.md (tables),
//! results/bench.json and results/bench.svg (latency against CPU count,
//! throughput against issuers). Numbers are reported, never asserted: they
//! depend on the host.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use alphasmp_bootargs::lines::{BENCH_RESULT, WAIT_PROBE, value};

use plotters::prelude::*;

use crate::linux;
use crate::matrix::FIXES;
use crate::qemu::{self, RunSpec};
use crate::util::{Context, Result, err};

/// What to measure.
pub struct Config {
    pub samples: u64,
    pub smps: Vec<u32>,
    pub fixes: Vec<(&'static str, &'static str)>,
    pub waits: Vec<&'static str>,
    /// Boots of Linux and of ours per CPU count for the comparison
    /// (`--linux-boots`; used with `--linux`).
    pub linux_boots: u32,
    /// How QEMU runs every boot (`--instructions`: counted instructions
    /// instead of time).
    pub cpu: qemu::CpuModel,
}

impl Config {
    pub fn boots(&self) -> usize {
        self.smps.len() * self.fixes.len() * self.waits.len()
    }
}

/// The kernel's default policy: the configuration the README's main table
/// shows (ipi_poll=on is the default fix set, wait=auto clipper's
/// default wait).
pub const DEFAULT_FIX: &str = "poll";
pub const DEFAULT_WAIT: &str = "auto";

/// One `bench-result:` line, with the boot it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub smp: u32,
    pub fix: String,
    pub wait: String,
    pub name: String,
    /// `idle` or `busy` targets; empty for throughput.
    pub target: String,
    /// Throughput: CPUs issuing at once; else 1.
    pub issuers: u32,
    pub n: u64,
    pub median_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    /// Throughput only: shootdowns per second, whole machine.
    pub per_s: u64,
}

impl Measurement {
    /// `name (target)` or `name, k issuers`.
    pub fn label(&self) -> String {
        if self.target.is_empty() {
            format!("{} x{}", self.name, self.issuers)
        } else {
            format!("{} ({})", self.name, self.target)
        }
    }
}

/// Parses the `bench-result:` lines of one boot
/// (`alphasmp_bootargs::lines::BENCH_RESULT` and `BENCH_THROUGHPUT`).
pub fn parse(output: &str, smp: u32, fix: &str, wait: &str) -> Vec<Measurement> {
    output
        .lines()
        .filter_map(|l| BENCH_RESULT.strip(l))
        .filter_map(|rest| {
            let get = |k: &str| alphasmp_bootargs::lines::value(rest, k);
            let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
            Some(Measurement {
                smp,
                fix: fix.into(),
                wait: wait.into(),
                name: get("name")?.into(),
                target: get("target").unwrap_or("").into(),
                issuers: num("issuers").unwrap_or(1) as u32,
                n: num("n")?,
                median_ns: num("median_ns").unwrap_or(0),
                p90_ns: num("p90_ns").unwrap_or(0),
                p99_ns: num("p99_ns").unwrap_or(0),
                per_s: num("per_s").unwrap_or(0),
            })
        })
        .collect()
}

/// The configuration of ours that Linux is compared with: the default fix
/// set and wait policy where selected, else the first of each.
pub fn compared(cfg: &Config) -> ((&'static str, &'static str), &'static str) {
    let fix = cfg
        .fixes
        .iter()
        .copied()
        .find(|f| f.0 == DEFAULT_FIX)
        .unwrap_or(cfg.fixes[0]);
    let wait = cfg
        .waits
        .iter()
        .copied()
        .find(|w| *w == DEFAULT_WAIT)
        .unwrap_or(cfg.waits[0]);
    (fix, wait)
}

/// Linux and ours, booted in turn on the same QEMU command line.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Linux's release (`6.12.118`).
    pub version: String,
    /// Our configuration compared (fix set, wait policy).
    pub fix: String,
    pub wait: String,
    /// Per CPU count, per boot, in boot order: Linux's measurements and
    /// ours; boot i of each ran back to back (Linux first).
    pub linux: Vec<(u32, Vec<Vec<Measurement>>)>,
    pub ours: Vec<(u32, Vec<Vec<Measurement>>)>,
    /// Per CPU count, per boot of ours: what `wait=auto` settled on
    /// ([`settled_wait`]; empty for another wait policy).
    pub settled: Vec<(u32, Vec<String>)>,
}

/// One `wait-probe:` line of a boot (`wait=auto`'s probe,
/// `alphasmp_bootargs::lines::WAIT_PROBE`): its verdict and the policy in
/// force after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitProbe {
    /// `own`, `shared`, `one` (one CPU) or `unknown` (the probe did not
    /// finish).
    pub cores: String,
    /// `spin`, `adaptive` or `nap`.
    pub wait: String,
    /// The whole line's words, for messages.
    pub words: String,
}

/// Every `wait-probe:` line of a boot's output, in order (a line without
/// `cores=` or `wait=` reads as an empty word there).
pub fn wait_probes(output: &str) -> Vec<WaitProbe> {
    output
        .lines()
        .filter_map(|l| WAIT_PROBE.strip(l))
        .map(|words| WaitProbe {
            cores: value(words, "cores").unwrap_or_default().to_string(),
            wait: value(words, "wait").unwrap_or_default().to_string(),
            words: words.to_string(),
        })
        .collect()
}

/// What a boot with `wait=auto` settled on (its first probe line's
/// policy); None when no probe ran.
pub fn settled_wait(output: &str) -> Option<String> {
    wait_probes(output).into_iter().next().map(|p| p.wait)
}

/// One row of the comparison: a shape measured on both sides.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub smp: u32,
    pub label: String,
    /// Throughput rows compare time per shootdown (1 / per_s).
    pub throughput: bool,
    /// Medians over boots of each boot's median (ns; throughput: ns per
    /// operation, whole machine).
    pub ours_ns: f64,
    pub linux_ns: f64,
    /// "x Linux": ours / Linux of each back-to-back pair of boots, the
    /// median over pairs and its spread.
    pub ratio: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
    /// Linux's own p90 and p99 (medians over boots; latency rows).
    pub linux_p90_ns: f64,
    pub linux_p99_ns: f64,
}

/// What a measurement costs, as a time: the median latency, or the time
/// per operation of a throughput run.
pub fn cost_ns(m: &Measurement) -> f64 {
    if m.target.is_empty() {
        1e9 / m.per_s.max(1) as f64
    } else {
        m.median_ns as f64
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The rows of shapes both sides measured, per CPU count, in Linux's order.
pub fn rows(cmp: &Comparison) -> Vec<Row> {
    let mut out = Vec::new();
    for (smp, linux_boots) in &cmp.linux {
        let Some((_, our_boots)) = cmp.ours.iter().find(|(s, _)| s == smp) else {
            continue;
        };
        let mut seen: Vec<String> = Vec::new();
        for m in linux_boots.iter().flatten() {
            let label = m.label();
            if seen.contains(&label) {
                continue;
            }
            seen.push(label.clone());
            let pick = |boots: &[Vec<Measurement>]| -> Vec<Option<Measurement>> {
                boots
                    .iter()
                    .map(|b| b.iter().find(|m| m.label() == label).cloned())
                    .collect()
            };
            let l = pick(linux_boots);
            let o = pick(our_boots);
            let pairs: Vec<f64> = l
                .iter()
                .zip(&o)
                .filter_map(|(l, o)| Some(cost_ns(o.as_ref()?) / cost_ns(l.as_ref()?)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let costs = |v: &[Option<Measurement>], f: &dyn Fn(&Measurement) -> f64| {
                median(&v.iter().flatten().map(f).collect::<Vec<_>>())
            };
            out.push(Row {
                smp: *smp,
                throughput: m.target.is_empty(),
                ours_ns: costs(&o, &cost_ns),
                linux_ns: costs(&l, &cost_ns),
                ratio: median(&pairs),
                ratio_min: pairs.iter().copied().fold(f64::INFINITY, f64::min),
                ratio_max: pairs.iter().copied().fold(0.0, f64::max),
                linux_p90_ns: costs(&l, &|m| m.p90_ns as f64),
                linux_p99_ns: costs(&l, &|m| m.p99_ns as f64),
                label,
            });
        }
    }
    out
}

/// What `run` measured.
pub struct Outcome {
    /// Ours, one boot per CPU count, fix set and wait policy (with Linux:
    /// the compared configuration's first boot).
    pub ms: Vec<Measurement>,
    pub cmp: Option<Comparison>,
}

/// Boots of Linux per measurement before the run gives up. On 4 vCPUs
/// sharing 2 host cores, Linux 6.12 sometimes ends its boot early while it
/// probes PCI (QEMU exits 0 with no benchmark line: twice in five runs of
/// `bench --linux` here, the log in target/bench-failed.log); one such boot
/// should not throw the whole run away. Our boots are never retried: a
/// failed boot of ours is a defect to see.
const LINUX_ATTEMPTS: u32 = 3;

/// `f` until it succeeds, at most `attempts` times; `again(error, next
/// attempt)` before each retry. The last error if none succeeded.
fn retried<T>(
    attempts: u32,
    mut f: impl FnMut() -> Result<T>,
    mut again: impl FnMut(&crate::util::Error, u32),
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if attempt < attempts => {
                attempt += 1;
                again(&e, attempt);
            }
            Err(e) => return Err(e),
        }
    }
}

/// One benchmark boot; fails unless it reported.
fn boot(
    kernel: &Path,
    cpu: qemu::CpuModel,
    smp: u32,
    append: &str,
    what: &str,
) -> Result<qemu::RunResult> {
    boot_until(
        kernel,
        cpu,
        smp,
        append,
        what,
        "alphasmp: PASS (benchmark reported)",
    )
}

/// One boot; fails unless its output has `pass`.
fn boot_until(
    kernel: &Path,
    cpu: qemu::CpuModel,
    smp: u32,
    append: &str,
    what: &str,
    pass: &str,
) -> Result<qemu::RunResult> {
    let r = qemu::run(&RunSpec {
        kernel,
        smp,
        mem: qemu::DEFAULT_MEM_MIB,
        append,
        timeout: Duration::from_secs(900),
        echo: false,
        image: None,
        cpu,
    })?;
    if !r.output.contains(pass) {
        let log = crate::util::repo_root().join("target/bench-failed.log");
        std::fs::write(&log, &r.output).ok();
        return Err(crate::util::Error {
            message: format!("benchmark boot failed ({what}): {}", r.describe()),
            log: Some(log),
        });
    }
    Ok(r)
}

/// Boots every configuration, with a progress bar (plain lines without a
/// terminal). With `linux` and `cfg.linux_boots` = N: per CPU count, N
/// Linux boots and N of ours in the compared configuration, in turn (Linux,
/// ours, Linux, ours, ...), so both see the same host load; then ours in
/// the other configurations, once each.
pub fn run(kernel: &Path, cfg: &Config, linux: Option<&linux::Linux>) -> Result<Outcome> {
    let n = if linux.is_some() {
        cfg.linux_boots.max(1) as usize
    } else {
        0
    };
    let (cmp_fix, cmp_wait) = compared(cfg);
    let total = cfg.boots() + cfg.smps.len() * (2 * n).saturating_sub(1);
    let mut bar = linux::Progress::new("bench boots", total as u64);
    let started = Instant::now();
    let mut ms = Vec::new();
    let mut cmp = linux.map(|l| Comparison {
        version: l.version.clone(),
        fix: cmp_fix.0.into(),
        wait: cmp_wait.into(),
        ..Default::default()
    });
    let mut i = 0;
    let ours = |smp: u32,
                fix: (&str, &str),
                wait: &str|
     -> Result<(Vec<Measurement>, f64, Option<String>)> {
        // Under counted instructions a busy target would hold the round
        // robin for a whole slice per sample: idle targets only, and idle
        // targets that halt rather than poll (a poll's instructions are
        // waiting, not the cost of the path).
        let busy = if cfg.cpu.count_instructions {
            " bench_busy=off idle_poll_us=0"
        } else {
            ""
        };
        let append = format!(
            "bench={} watchdog_ms=0 wait={wait} {}{busy}",
            cfg.samples, fix.1
        );
        let t = Instant::now();
        let r = boot(
            kernel,
            cfg.cpu,
            smp,
            &append,
            &format!("smp {smp}, {}, wait={wait}", fix.0),
        )?;
        Ok((
            parse(&r.output, smp, fix.0, wait),
            t.elapsed().as_secs_f64(),
            settled_wait(&r.output),
        ))
    };
    let settled_note = |w: &Option<String>| {
        w.as_ref()
            .map_or(String::new(), |w| format!(" (settled: {w})"))
    };
    for &smp in &cfg.smps {
        if let (Some(l), Some(cmp)) = (linux, cmp.as_mut()) {
            let mut lb = Vec::new();
            let mut ob = Vec::new();
            let mut sb = Vec::new();
            for k in 0..n {
                i += 1;
                bar.set(
                    i as u64 - 1,
                    &format!("smp={smp}: Linux boot {}/{n}", k + 1),
                );
                let t = Instant::now();
                let r = retried(
                    LINUX_ATTEMPTS,
                    || {
                        boot(
                            &l.vmlinux,
                            cfg.cpu,
                            smp,
                            &linux::append(cfg.samples),
                            &format!("Linux {}, smp {smp}", l.version),
                        )
                    },
                    |e, next| {
                        bar.note(&format!(
                            "  {e}; booting Linux again (attempt {next} of {LINUX_ATTEMPTS})"
                        ))
                    },
                )?;
                let lm = parse(&r.output, smp, "linux", "linux");
                bar.step(&format!(
                    "[{i}/{total}] smp={smp} Linux {} boot {}/{n}: {} measurements in {:.1} s (total {:.0} s)",
                    l.version,
                    k + 1,
                    lm.len(),
                    t.elapsed().as_secs_f64(),
                    started.elapsed().as_secs_f64()
                ));
                lb.push(lm);
                i += 1;
                bar.set(i as u64 - 1, &format!("smp={smp}: our boot {}/{n}", k + 1));
                let (om, secs, settled) = ours(smp, cmp_fix, cmp_wait)?;
                bar.step(&format!(
                    "[{i}/{total}] smp={smp} fix={} wait={cmp_wait}{} boot {}/{n}: {} measurements in {secs:.1} s (total {:.0} s)",
                    cmp_fix.0,
                    settled_note(&settled),
                    k + 1,
                    om.len(),
                    started.elapsed().as_secs_f64()
                ));
                sb.extend(settled);
                if k == 0 {
                    ms.extend(om.iter().cloned());
                }
                ob.push(om);
            }
            cmp.linux.push((smp, lb));
            cmp.ours.push((smp, ob));
            cmp.settled.push((smp, sb));
        }
        for &fix in &cfg.fixes {
            for &wait in &cfg.waits {
                if linux.is_some() && fix == cmp_fix && wait == cmp_wait {
                    continue;
                }
                i += 1;
                bar.set(
                    i as u64 - 1,
                    &format!("smp={smp}: fix={} wait={wait}", fix.0),
                );
                let (om, secs, settled) = ours(smp, fix, wait)?;
                bar.step(&format!(
                    "[{i}/{total}] smp={smp} fix={} wait={wait}{}: {} measurements in {secs:.1} s (total {:.0} s)",
                    fix.0,
                    settled_note(&settled),
                    om.len(),
                    started.elapsed().as_secs_f64()
                ));
                ms.extend(om);
            }
        }
    }
    bar.finish();
    Ok(Outcome { ms, cmp })
}

fn us(ns: u64) -> String {
    if ns >= 100_000 {
        format!("{:.0}", ns as f64 / 1000.0)
    } else {
        format!("{:.1}", ns as f64 / 1000.0)
    }
}

fn find<'a>(
    ms: &'a [Measurement],
    smp: u32,
    fix: &str,
    wait: &str,
    label: &str,
) -> Option<&'a Measurement> {
    ms.iter()
        .find(|m| m.smp == smp && m.fix == fix && m.wait == wait && m.label() == label)
}

/// Labels in first-seen order.
fn labels(ms: &[Measurement], throughput: bool) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for m in ms.iter().filter(|m| m.target.is_empty() == throughput) {
        if !v.contains(&m.label()) {
            v.push(m.label());
        }
    }
    v
}

pub fn markdown(ms: &[Measurement], cfg: &Config, host: &str, cmp: Option<&Comparison>) -> String {
    let mut s = String::new();
    let smps = &cfg.smps;
    if cfg.cpu.count_instructions {
        writeln!(s, "Measured by `cargo xtask bench --instructions --samples {}` on {host}, every boot under `-icount shift=0,sleep=off`: QEMU runs the vCPUs one at a time and one instruction is one nanosecond of guest time, so each figure below counts **thousands of guest instructions** run by all CPUs during the operation (where the tables say microseconds), the same on any host. A spinning waiter's loop counts too (it runs until the round robin moves on), a napping one's does not. {} samples per cell.", cfg.samples, cfg.samples).ok();
    } else {
        writeln!(s, "Measured by `cargo xtask bench --samples {}` on {host}. In-kernel, on the issuing CPU's cycle counter, {} samples per cell; times in microseconds.", cfg.samples, cfg.samples).ok();
    }
    writeln!(s, "Targets idle: in the idle loop's wtint; busy: spinning at IPL 0. \"x IPI\": the median over the bare IPI round trip (idle target) of the same boot.\n").ok();
    for wait in &cfg.waits {
        let fix = if cfg.fixes.iter().any(|f| f.0 == DEFAULT_FIX) {
            DEFAULT_FIX
        } else {
            cfg.fixes[0].0
        };
        writeln!(
            s,
            "### Latency, fix set `{fix}`, wait={wait}: median (p90 / p99), x IPI\n"
        )
        .ok();
        write!(s, "| measurement |").ok();
        for smp in smps {
            write!(s, " {smp} CPUs |").ok();
        }
        writeln!(s).ok();
        writeln!(s, "|---|{}", "---|".repeat(smps.len())).ok();
        for label in labels(ms, false) {
            write!(s, "| {label} |").ok();
            for &smp in smps {
                let ipi = find(ms, smp, fix, wait, "ipi_rtt (idle)").map_or(0, |m| m.median_ns);
                match find(ms, smp, fix, wait, &label) {
                    Some(m) => write!(
                        s,
                        " {} ({} / {}), {:.1}x |",
                        us(m.median_ns),
                        us(m.p90_ns),
                        us(m.p99_ns),
                        m.median_ns as f64 / ipi.max(1) as f64
                    )
                    .ok(),
                    None => write!(s, " - |").ok(),
                };
            }
            writeln!(s).ok();
        }
        writeln!(s).ok();
    }
    let top = *smps.iter().max().unwrap_or(&4);
    writeln!(
        s,
        "### Throughput on {top} CPUs: operations per second, whole machine\n"
    )
    .ok();
    writeln!(s, "`shootdown_throughput xK`: K CPUs issue flush_tlb_page shootdowns at once; `call_storm xK`: K CPUs make synchronous calls to each other at once.\n").ok();
    write!(s, "| measurement |").ok();
    let combos: Vec<(&str, &str)> = cfg
        .waits
        .iter()
        .flat_map(|w| cfg.fixes.iter().map(move |f| (*w, f.0)))
        .collect();
    for (w, f) in &combos {
        write!(s, " {f}, {w} |").ok();
    }
    writeln!(s).ok();
    writeln!(s, "|---|{}", "---|".repeat(combos.len())).ok();
    for label in labels(ms, true)
        .into_iter()
        .filter(|l| combos.iter().any(|(w, f)| find(ms, top, f, w, l).is_some()))
    {
        write!(s, "| {label} |").ok();
        for (w, f) in &combos {
            match find(ms, top, f, w, &label) {
                Some(m) => write!(s, " {} |", m.per_s).ok(),
                None => write!(s, " - |").ok(),
            };
        }
        writeln!(s).ok();
    }
    writeln!(s).ok();
    writeln!(
        s,
        "### Each fix set on {top} CPUs, idle targets: median microseconds\n"
    )
    .ok();
    write!(s, "| measurement |").ok();
    for (w, f) in &combos {
        write!(s, " {f}, {w} |").ok();
    }
    writeln!(s).ok();
    writeln!(s, "|---|{}", "---|".repeat(combos.len())).ok();
    for label in labels(ms, false)
        .into_iter()
        .filter(|l| l.ends_with("(idle)"))
    {
        write!(s, "| {label} |").ok();
        for (w, f) in &combos {
            match find(ms, top, f, w, &label) {
                Some(m) => write!(s, " {} |", us(m.median_ns)).ok(),
                None => write!(s, " - |").ok(),
            };
        }
        writeln!(s).ok();
    }
    if let Some(cmp) = cmp {
        writeln!(s).ok();
        s.push_str(&markdown_linux(cmp));
    }
    s
}

fn ratio_cell(r: &Row) -> String {
    if r.ratio_min == r.ratio_max {
        format!("{:.2}x", r.ratio)
    } else {
        format!("{:.2}x ({:.2}-{:.2})", r.ratio, r.ratio_min, r.ratio_max)
    }
}

/// The comparison with Linux: per CPU count, ours, Linux and "x Linux".
pub fn markdown_linux(cmp: &Comparison) -> String {
    let mut s = String::new();
    let rows = rows(cmp);
    let boots = cmp.linux.first().map_or(0, |(_, b)| b.len());
    writeln!(
        s,
        "### Beside Linux {}: ours (fix set `{}`, wait={}) and Linux, booted in turn on the same QEMU command line\n",
        cmp.version, cmp.fix, cmp.wait
    )
    .ok();
    writeln!(s, "Linux {} (Debian's linux-source, tinyconfig plus xtask/linux/alphasmp_bench.config, HZ=1024) runs the same shapes as a built-in (xtask/linux/alphasmp_bench.c) on the same cycle counter. {boots} boot(s) of each per CPU count, in turn (Linux, ours, ...). Ours and Linux: the median over boots of each boot's median, microseconds (throughput rows: microseconds per shootdown or call, whole machine). \"x Linux\": our time over Linux's in each back-to-back pair of boots, the median over pairs (min-max); below 1 we are faster. Linux's busy targets take IPIs by interrupt, which QEMU on a loaded host often delivers to a spinning vCPU late (about 2 ms; ours shows the same with ipi_poll=off): the spread shows which boots met it. Ours run with ipi_poll=on (an interrupt also looks at the mailbox). The flushes name an address space the measuring CPU and every busy target run (Linux's threads adopt it with kthread_use_mm), so busy targets take a new ASN or drop the page on both sides; an idle Linux CPU runs no space and drops its ASN, and ours skips a CPU asleep in its idle loop. flush_tlb_mm_unused names a space no CPU has run: Linux calls every other CPU, ours none.\n", cmp.version).ok();
    let settled: Vec<String> = cmp
        .settled
        .iter()
        .filter(|(_, w)| !w.is_empty())
        .map(|(smp, w)| format!("{smp} CPUs: {}", w.join(", ")))
        .collect();
    if !settled.is_empty() {
        writeln!(
            s,
            "What `wait={}` settled on in each of our boots (its probe of the host's cores): {}.\n",
            cmp.wait,
            settled.join("; ")
        )
        .ok();
    }
    let smps: Vec<u32> = cmp.linux.iter().map(|(s, _)| *s).collect();
    write!(s, "| measurement |").ok();
    for smp in &smps {
        write!(s, " {smp} CPUs: ours | Linux (p90 / p99) | x Linux |").ok();
    }
    writeln!(s).ok();
    writeln!(s, "|---|{}", "---|---|---|".repeat(smps.len())).ok();
    let mut labels: Vec<String> = Vec::new();
    for r in &rows {
        if !labels.contains(&r.label) {
            labels.push(r.label.clone());
        }
    }
    for label in labels {
        write!(s, "| {label} |").ok();
        for &smp in &smps {
            match rows.iter().find(|r| r.smp == smp && r.label == label) {
                Some(r) if r.throughput => write!(
                    s,
                    " {:.1} | {:.1} | {} |",
                    r.ours_ns / 1000.0,
                    r.linux_ns / 1000.0,
                    ratio_cell(r)
                )
                .ok(),
                Some(r) => write!(
                    s,
                    " {} | {} ({} / {}) | {} |",
                    us(r.ours_ns as u64),
                    us(r.linux_ns as u64),
                    us(r.linux_p90_ns as u64),
                    us(r.linux_p99_ns as u64),
                    ratio_cell(r)
                )
                .ok(),
                None => write!(s, " - | - | - |").ok(),
            };
        }
        writeln!(s).ok();
    }
    // Linux-only shapes (the storm): Linux's numbers alone.
    let only: Vec<&Measurement> = cmp
        .linux
        .iter()
        .flat_map(|(_, b)| b.iter().flatten())
        .filter(|m| !rows.iter().any(|r| r.smp == m.smp && r.label == m.label()))
        .collect();
    if !only.is_empty() {
        writeln!(s, "\nLinux only (no row of ours in this run):\n").ok();
        writeln!(
            s,
            "| measurement | CPUs | Linux median over boots |\n|---|---|---|"
        )
        .ok();
        let mut done: Vec<(u32, String)> = Vec::new();
        for m in &only {
            let key = (m.smp, m.label());
            if done.contains(&key) {
                continue;
            }
            let costs: Vec<f64> = only
                .iter()
                .filter(|o| o.smp == m.smp && o.label() == key.1)
                .map(|o| cost_ns(o))
                .collect();
            let c = median(&costs);
            let shown = if m.target.is_empty() {
                let cpus = f64::from(m.issuers.max(1));
                format!(
                    "{:.0}/s ({:.1} us per call per CPU)",
                    1e9 / c,
                    c * cpus / 1000.0
                )
            } else {
                format!("{} us", us(c as u64))
            };
            writeln!(s, "| {} | {} | {shown} |", key.1, m.smp).ok();
            done.push(key);
        }
    }
    s
}

/// The comparison as JSON: the rows and Linux's raw measurements.
pub fn json_linux(cmp: &Comparison) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "  \"linux\": {{\n    \"version\": {},\n    \"compared_fix\": {},\n    \"compared_wait\": {},\n    \"settled_waits\": {{{}}},\n    \"rows\": [",
        jstr(&cmp.version),
        jstr(&cmp.fix),
        jstr(&cmp.wait),
        cmp.settled
            .iter()
            .map(|(smp, w)| format!(
                "\"{smp}\": [{}]",
                w.iter().map(|w| jstr(w)).collect::<Vec<_>>().join(", ")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .ok();
    let rows = rows(cmp);
    for (i, r) in rows.iter().enumerate() {
        writeln!(
            s,
            "      {{\"cpus\": {}, \"label\": {}, \"throughput\": {}, \"ours_median_ns\": {:.0}, \"linux_median_ns\": {:.0}, \"linux_p90_ns\": {:.0}, \"linux_p99_ns\": {:.0}, \"x_linux\": {:.3}, \"x_linux_min\": {:.3}, \"x_linux_max\": {:.3}}}{}",
            r.smp,
            jstr(&r.label),
            r.throughput,
            r.ours_ns,
            r.linux_ns,
            r.linux_p90_ns,
            r.linux_p99_ns,
            r.ratio,
            r.ratio_min,
            r.ratio_max,
            if i + 1 < rows.len() { "," } else { "" }
        )
        .ok();
    }
    s.push_str("    ],\n    \"boots\": [\n");
    let boots: Vec<(u32, usize, &Vec<Measurement>)> = cmp
        .linux
        .iter()
        .flat_map(|(smp, b)| b.iter().enumerate().map(move |(k, v)| (*smp, k, v)))
        .collect();
    for (i, (smp, k, v)) in boots.iter().enumerate() {
        writeln!(
            s,
            "      {{\"cpus\": {smp}, \"boot\": {k}, \"measurements\": ["
        )
        .ok();
        for (j, m) in v.iter().enumerate() {
            writeln!(
                s,
                "        {{\"name\": {}, \"target\": {}, \"issuers\": {}, \"n\": {}, \"median_ns\": {}, \"p90_ns\": {}, \"p99_ns\": {}, \"per_s\": {}}}{}",
                jstr(&m.name),
                jstr(&m.target),
                m.issuers,
                m.n,
                m.median_ns,
                m.p90_ns,
                m.p99_ns,
                m.per_s,
                if j + 1 < v.len() { "," } else { "" }
            )
            .ok();
        }
        writeln!(s, "      ]}}{}", if i + 1 < boots.len() { "," } else { "" }).ok();
    }
    s.push_str("    ]\n  }");
    s
}

fn jstr(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn json(ms: &[Measurement], cfg: &Config, host: &str, cmp: Option<&Comparison>) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "{{\n  \"host\": {},\n  \"samples\": {},\n  \"measurements\": [",
        jstr(host),
        cfg.samples
    )
    .ok();
    for (i, m) in ms.iter().enumerate() {
        writeln!(
            s,
            "    {{\"cpus\": {}, \"fix\": {}, \"wait\": {}, \"name\": {}, \"target\": {}, \"issuers\": {}, \"n\": {}, \"median_ns\": {}, \"p90_ns\": {}, \"p99_ns\": {}, \"per_s\": {}}}{}",
            m.smp,
            jstr(&m.fix),
            jstr(&m.wait),
            jstr(&m.name),
            jstr(&m.target),
            m.issuers,
            m.n,
            m.median_ns,
            m.p90_ns,
            m.p99_ns,
            m.per_s,
            if i + 1 < ms.len() { "," } else { "" }
        )
        .ok();
    }
    s.push_str("  ]");
    if let Some(cmp) = cmp {
        s.push_str(",\n");
        s.push_str(&json_linux(cmp));
    }
    s.push_str("\n}\n");
    s
}

/// Linux's median over boots of `f` for `label` on `smp` CPUs.
fn linux_value(
    cmp: Option<&Comparison>,
    smp: u32,
    label: &str,
    f: impl Fn(&Measurement) -> f64,
) -> Option<f64> {
    let (_, boots) = cmp?.linux.iter().find(|(s, _)| *s == smp)?;
    let v: Vec<f64> = boots
        .iter()
        .flatten()
        .filter(|m| m.label() == label)
        .map(f)
        .collect();
    (!v.is_empty()).then(|| median(&v))
}

/// Our median latency for `label`: over the compared boots where the
/// comparison has them (as its table), else the one boot's.
fn ours_value(
    cmp: Option<&Comparison>,
    ms: &[Measurement],
    smp: u32,
    fix: &str,
    wait: &str,
    label: &str,
) -> Option<f64> {
    let boots = cmp
        .filter(|c| c.fix == fix && c.wait == wait)
        .and_then(|c| c.ours.iter().find(|(s, _)| *s == smp));
    if let Some((_, boots)) = boots {
        let v: Vec<f64> = boots
            .iter()
            .flatten()
            .filter(|m| m.label() == label)
            .map(|m| m.median_ns as f64)
            .collect();
        if !v.is_empty() {
            return Some(median(&v));
        }
    }
    find(ms, smp, fix, wait, label).map(|m| m.median_ns as f64)
}

type Plot<'a, 'b> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

const COLORS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
];

/// Left panel: median latency (log scale) against CPU count, idle targets.
fn plot_latency(
    area: &Plot<'_, '_>,
    ms: &[Measurement],
    cfg: &Config,
    cmp: Option<&Comparison>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let fix = compared(cfg).0.0;
    let series = [
        "call_single_wait (idle)",
        "on_each_cpu_wait (idle)",
        "flush_tlb_all (idle)",
        "flush_tlb_page (idle)",
        "ipi_rtt (idle)",
    ];
    let smin = *cfg.smps.iter().min().unwrap_or(&2) as f64;
    let smax = *cfg.smps.iter().max().unwrap_or(&4) as f64;
    let title = match cmp {
        Some(c) => format!(
            "Median latency, idle targets (ours: {fix}; Linux {})",
            c.version
        ),
        None => format!("Median latency, idle targets (fix set {fix})"),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(smin - 0.4..smax + 0.4, (1f64..100_000f64).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(cfg.smps.len().max(2))
        .x_label_formatter(&|x| format!("{x:.0} CPUs"))
        .y_desc("microseconds")
        .y_label_formatter(&|y| format!("{y}"))
        .light_line_style(WHITE)
        .draw()?;
    for (i, name) in series.iter().enumerate() {
        let color = COLORS[i];
        for wait in [DEFAULT_WAIT, "spin"] {
            let pts: Vec<(f64, f64)> = cfg
                .smps
                .iter()
                .filter_map(|&c| {
                    ours_value(cmp, ms, c, fix, wait, name)
                        .map(|v| (c as f64, (v / 1000.0).max(1.0)))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            let style = ShapeStyle::from(color).stroke_width(2);
            if wait == DEFAULT_WAIT {
                chart
                    .draw_series(LineSeries::new(pts.clone(), style))?
                    .label(name.trim_end_matches(" (idle)"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
            } else {
                chart.draw_series(DashedLineSeries::new(pts.clone(), 5, 4, style))?;
            }
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        let linux: Vec<(f64, f64)> = cfg
            .smps
            .iter()
            .filter_map(|&c| {
                // Beside ours, not on top of it.
                linux_value(cmp, c, name, |m| m.median_ns as f64)
                    .map(|v| (c as f64 + 0.12, (v / 1000.0).max(1.0)))
            })
            .collect();
        if !linux.is_empty() {
            chart.draw_series(LineSeries::new(
                linux.clone(),
                ShapeStyle::from(color.mix(0.5)).stroke_width(1),
            ))?;
            chart.draw_series(
                linux
                    .iter()
                    .map(|&p| TriangleMarker::new(p, 6, color.filled())),
            )?;
        }
    }
    if cmp.is_some() {
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("Linux: triangles, thin line")
            .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, BLACK.filled()));
    }
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label(format!("ours: solid wait={DEFAULT_WAIT}, dashed wait=spin"))
        .legend(|(x, y)| Circle::new((x + 8, y), 3, BLACK.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 11))
        .draw()?;
    Ok(())
}

/// Right panel: shootdowns per second against issuing CPUs on the largest
/// machine.
fn plot_throughput(
    area: &Plot<'_, '_>,
    ms: &[Measurement],
    cfg: &Config,
    cmp: Option<&Comparison>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let fix = compared(cfg).0.0;
    let big = *cfg.smps.iter().max().unwrap_or(&4);
    let tp: Vec<&Measurement> = ms
        .iter()
        .filter(|m| m.smp == big && m.fix == fix && m.name == "shootdown_throughput")
        .collect();
    let linux: Vec<(f64, f64)> = (1..=big)
        .filter_map(|k| {
            linux_value(cmp, big, &format!("shootdown_throughput x{k}"), |m| {
                m.per_s as f64
            })
            .map(|v| (f64::from(k), v))
        })
        .collect();
    // Headroom above the highest point for the legend.
    let ymax = tp
        .iter()
        .map(|m| m.per_s as f64)
        .chain(linux.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.5;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Shootdowns per second, {big} CPUs"),
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.6f64..f64::from(big) + 0.4, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_labels(big as usize)
        .x_label_formatter(&|x| format!("{x:.0} issuing"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE)
        .draw()?;
    for (i, wait) in [DEFAULT_WAIT, "spin"].into_iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = tp
            .iter()
            .filter(|m| m.wait == wait)
            .map(|m| (f64::from(m.issuers), m.per_s as f64))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if pts.is_empty() {
            continue;
        }
        let color = COLORS[i];
        let style = ShapeStyle::from(color).stroke_width(2);
        if wait == DEFAULT_WAIT {
            chart.draw_series(LineSeries::new(pts.clone(), style))?
        } else {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 5, 4, style))?
        }
        .label(format!("ours, {fix}, wait={wait}"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    if !linux.is_empty() {
        let color = COLORS[2];
        chart
            .draw_series(LineSeries::new(
                linux.clone(),
                ShapeStyle::from(color).stroke_width(2),
            ))?
            .label(format!(
                "Linux {}",
                cmp.map(|c| c.version.as_str()).unwrap_or("")
            ))
            .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 5, color.filled()));
        chart.draw_series(
            linux
                .iter()
                .map(|&p| TriangleMarker::new(p, 6, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 11))
        .draw()?;
    Ok(())
}

/// The plot (plotters, SVG backend, text as SVG text: no fonts needed):
/// left, median latency (log scale) against CPU count for the main
/// measurements with idle targets (solid: the default wait, dashed: wait=spin, the
/// compared fix set; Linux's medians as triangles); right, throughput
/// against issuers on the largest machine, Linux's beside ours.
pub fn svg(ms: &[Measurement], cfg: &Config, cmp: Option<&Comparison>) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 440)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let (left, right) = root.split_horizontally(540);
        if let Err(e) = plot_latency(&left, ms, cfg, cmp) {
            eprintln!("warning: the latency plot failed: {e}");
        }
        if let Err(e) = plot_throughput(&right, ms, cfg, cmp) {
            eprintln!("warning: the throughput plot failed: {e}");
        }
        let _ = root.present();
    }
    out
}

pub fn write(
    dir: &Path,
    ms: &[Measurement],
    cfg: &Config,
    host: &str,
    cmp: Option<&Comparison>,
) -> Result<()> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("bench.md"), markdown(ms, cfg, host, cmp))
        .context(|| "writing bench.md".into())?;
    std::fs::write(dir.join("bench.json"), json(ms, cfg, host, cmp))
        .context(|| "writing bench.json".into())?;
    std::fs::write(dir.join("bench.svg"), svg(ms, cfg, cmp))
        .context(|| "writing bench.svg".into())?;
    Ok(())
}

/// The fix sets named in `list` (comma-separated; `all`: every one).
pub fn fixes(list: &str) -> Result<Vec<(&'static str, &'static str)>> {
    if list == "all" {
        return Ok(FIXES.iter().map(|f| (f.name, f.args())).collect());
    }
    list.split(',')
        .map(|n| {
            FIXES
                .iter()
                .find(|f| f.name == n)
                .map(|f| (f.name, f.args()))
                .ok_or_else(|| {
                    err(format!(
                        "--fixes: unknown fix set '{n}' (known: {})",
                        FIXES.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_stops_at_the_first_success_or_the_last_attempt() {
        let mut calls = 0;
        let mut notes = Vec::new();
        let r = retried(
            3,
            || {
                calls += 1;
                if calls < 2 {
                    Err(err("no summary line"))
                } else {
                    Ok(calls)
                }
            },
            |e, next| notes.push(format!("{} {next}", e.message)),
        );
        assert_eq!(r.ok(), Some(2));
        assert_eq!(notes, ["no summary line 2"]);

        let mut calls = 0;
        let r: Result<()> = retried(
            3,
            || {
                calls += 1;
                Err(err(format!("failure {calls}")))
            },
            |_, _| {},
        );
        assert_eq!(calls, 3, "three attempts, no more");
        assert_eq!(r.err().map(|e| e.message), Some("failure 3".into()));
    }

    const OUT: &str = "bench: 2 CPU(s)\nbench-result: name=ipi_rtt target=idle cpus=2 n=1000 median_ns=26140 p90_ns=55360 p99_ns=1648112 min_ns=1 max_ns=2\nnoise\nbench-result: name=shootdown_throughput issuers=2 cpus=2 n=1000 elapsed_ns=95569484 per_s=10463\n";

    #[test]
    fn result_lines_parse() {
        let ms = parse(OUT, 2, "poll", "nap");
        assert_eq!(ms.len(), 2);
        assert_eq!(
            (
                ms[0].name.as_str(),
                ms[0].target.as_str(),
                ms[0].median_ns,
                ms[0].p99_ns
            ),
            ("ipi_rtt", "idle", 26140, 1648112)
        );
        assert_eq!(
            (ms[1].issuers, ms[1].per_s, ms[1].target.as_str()),
            (2, 10463, "")
        );
        assert_eq!(ms[1].label(), "shootdown_throughput x2");
    }

    #[test]
    fn tables_and_plot_show_what_was_measured() {
        let cfg = Config {
            cpu: Default::default(),
            samples: 1000,
            smps: vec![2],
            fixes: fixes("poll").unwrap(),
            waits: vec!["nap"],
            linux_boots: 2,
        };
        let ms = parse(OUT, 2, "poll", "nap");
        let md = markdown(&ms, &cfg, "test host", None);
        assert!(
            md.contains("| ipi_rtt (idle) | 26.1 (55.4 / 1648), 1.0x |"),
            "{md}"
        );
        // Each throughput row names its measurement: the storm is not a
        // shootdown, and a row measured on no CPU count shown is left out.
        assert!(md.contains("| shootdown_throughput x2 | 10463 |"), "{md}");
        let mut with_storm = ms.clone();
        with_storm.push(m(2, "call_storm", "", 2, 0, 777));
        with_storm.push(m(3, "call_storm", "", 3, 0, 555));
        let md2 = markdown(&with_storm, &cfg, "test host", None);
        assert!(md2.contains("| call_storm x2 | 777 |"), "{md2}");
        assert!(!md2.contains("call_storm x3"), "{md2}");
        assert!(!md2.contains("| 2 | 777 |"), "{md2}");
        let svg = svg(&ms, &cfg, None);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(json(&ms, &cfg, "h", None).contains("\"per_s\": 10463"));
        assert!(fixes("bogus").is_err());
    }

    /// What the Linux built-in (xtask/linux/alphasmp_bench.c) printed on
    /// QEMU clipper with 2 CPUs, console lines around it included.
    const LINUX: &str = "serial8250: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A\n\
bench: 2 CPU(s), 200 samples per measurement (Linux 6.12.118, cycle counter 250000000 Hz)\n\
bench-result: name=ipi_rtt target=idle cpus=2 n=200 median_ns=6088 p90_ns=6280 p99_ns=57952 min_ns=5988 max_ns=62216\n\
bench-result: name=ipi_rtt target=busy cpus=2 n=200 median_ns=1952872 p90_ns=1956776 p99_ns=4968280 min_ns=973280 max_ns=5868280\n\
bench-result: name=call_single_wait target=idle cpus=2 n=200 median_ns=6488 p90_ns=6836 p99_ns=1331656 min_ns=6308 max_ns=1445496\n\
bench-result: name=shootdown_throughput issuers=2 cpus=2 n=200 elapsed_ns=190400248 per_s=1050\n\
bench-result: name=call_storm issuers=2 cpus=2 n=10000 elapsed_ns=9808093804 per_s=1019\n\
alphasmp: PASS (benchmark reported)\n";

    fn m(smp: u32, name: &str, target: &str, issuers: u32, median: u64, per_s: u64) -> Measurement {
        Measurement {
            smp,
            fix: "poll".into(),
            wait: "nap".into(),
            name: name.into(),
            target: target.into(),
            issuers,
            n: 1000,
            median_ns: median,
            p90_ns: median * 2,
            p99_ns: median * 3,
            per_s,
        }
    }

    #[test]
    fn linux_output_reads_with_our_parser() {
        let ms = parse(LINUX, 2, "linux", "linux");
        let labels: Vec<String> = ms.iter().map(Measurement::label).collect();
        assert_eq!(
            labels,
            [
                "ipi_rtt (idle)",
                "ipi_rtt (busy)",
                "call_single_wait (idle)",
                "shootdown_throughput x2",
                "call_storm x2"
            ]
        );
        assert_eq!((ms[0].n, ms[0].median_ns, ms[0].p99_ns), (200, 6088, 57952));
        assert_eq!((ms[4].issuers, ms[4].per_s), (2, 1019));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_settled_wait_is_read_from_the_probe_line() {
        let out = "policy: ... wait=auto (the machine's)\r\nwait-probe: cpus=2 window_ms=20 slice_ms=2 need_pct=80 slowest_pct=96 stolen_pct=4 cores=own wait=spin\r\nbench: 2 CPU(s)\r\n";
        assert_eq!(settled_wait(out).as_deref(), Some("spin"));
        let p = wait_probes(out);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].cores.as_str(), p[0].wait.as_str()), ("own", "spin"));
        assert!(wait_probes("wait: auto: the probe did not finish on CPU 1\n").is_empty());
        assert_eq!(settled_wait("policy: ... wait=adaptive\n"), None);
        let mut cmp = Comparison {
            version: "6.12.118".into(),
            fix: "poll".into(),
            wait: "auto".into(),
            ..Default::default()
        };
        cmp.settled = vec![
            (2, vec!["spin".into(), "spin".into()]),
            (4, vec!["adaptive".into()]),
        ];
        let md = markdown_linux(&cmp);
        assert!(md.contains("2 CPUs: spin, spin; 4 CPUs: adaptive"), "{md}");
        let js = json_linux(&cmp);
        assert!(
            js.contains("\"settled_waits\": {\"2\": [\"spin\", \"spin\"], \"4\": [\"adaptive\"]}"),
            "{js}"
        );
    }

    #[test]
    fn the_ratio_is_ours_over_linux_per_pair_of_boots() {
        let cmp = Comparison {
            version: "6.12.118".into(),
            fix: "poll".into(),
            wait: "nap".into(),
            linux: vec![(
                2,
                vec![
                    vec![
                        m(2, "ipi_rtt", "idle", 1, 10_000, 0),
                        m(2, "shootdown_throughput", "", 1, 0, 1000),
                        m(2, "call_storm", "", 2, 0, 500),
                    ],
                    vec![
                        m(2, "ipi_rtt", "idle", 1, 20_000, 0),
                        m(2, "shootdown_throughput", "", 1, 0, 2000),
                    ],
                ],
            )],
            ours: vec![(
                2,
                vec![
                    vec![
                        m(2, "ipi_rtt", "idle", 1, 5_000, 0),
                        m(2, "shootdown_throughput", "", 1, 0, 4000),
                        m(2, "free_proved", "idle", 1, 1, 0),
                    ],
                    vec![
                        m(2, "ipi_rtt", "idle", 1, 30_000, 0),
                        m(2, "shootdown_throughput", "", 1, 0, 4000),
                    ],
                ],
            )],
            settled: Vec::new(),
        };
        let rows = rows(&cmp);
        // Only shapes both sides measured; Linux's order.
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["ipi_rtt (idle)", "shootdown_throughput x1"]);
        let ipi = &rows[0];
        // Pairs: 5/10 = 0.5 and 30/20 = 1.5.
        assert_eq!((ipi.ratio, ipi.ratio_min, ipi.ratio_max), (1.0, 0.5, 1.5));
        assert_eq!((ipi.ours_ns, ipi.linux_ns), (17_500.0, 15_000.0));
        assert_eq!(ipi.linux_p90_ns, 30_000.0);
        // Throughput compares time per shootdown: 250 us against 1000 and 500.
        let tp = &rows[1];
        assert!(tp.throughput);
        assert_eq!((tp.ratio_min, tp.ratio_max), (0.25, 0.5));
        assert_eq!(tp.ratio, 0.375);

        let md = markdown_linux(&cmp);
        assert!(
            md.contains("| ipi_rtt (idle) | 17.5 | 15.0 (30.0 / 45.0) | 1.00x (0.50-1.50) |"),
            "{md}"
        );
        assert!(
            md.contains("| shootdown_throughput x1 | 250.0 | 750.0 | 0.38x (0.25-0.50) |"),
            "{md}"
        );
        assert!(
            md.contains("| call_storm x2 | 2 | 500/s (4000.0 us per call per CPU) |"),
            "{md}"
        );
        let cfg = Config {
            cpu: Default::default(),
            samples: 1000,
            smps: vec![2],
            fixes: fixes("poll").unwrap(),
            waits: vec!["nap"],
            linux_boots: 2,
        };
        let j = json(&[], &cfg, "h", Some(&cmp));
        assert!(
            j.contains("\"x_linux\": 1.000, \"x_linux_min\": 0.500"),
            "{j}"
        );
        assert!(j.trim_end().ends_with('}'));
        let svg = svg(&cmp.ours[0].1[0], &cfg, Some(&cmp));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Linux 6.12.118"), "{svg}");
    }
}
