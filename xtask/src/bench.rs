//! `cargo xtask bench`: boots the kernel's benchmark suite (`bench=N`,
//! arch/alpha/src/run/bench.rs) once per CPU count, fix set and wait policy,
//! collects its `bench-result:` lines and writes results/bench.md (tables),
//! results/bench.json and results/bench.svg (latency against CPU count,
//! throughput against issuers). Numbers are reported, never asserted: they
//! depend on the host.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::matrix::FIXES;
use crate::qemu::{self, RunSpec};
use crate::util::{Context, Result, err};

/// What to measure.
pub struct Config {
    pub samples: u64,
    pub smps: Vec<u32>,
    pub fixes: Vec<(&'static str, &'static str)>,
    pub waits: Vec<&'static str>,
}

impl Config {
    pub fn boots(&self) -> usize {
        self.smps.len() * self.fixes.len() * self.waits.len()
    }
}

/// The kernel's default policy: the configuration the README's main table
/// shows (ipi_poll=on is the default fix set, wait=nap the default wait).
pub const DEFAULT_FIX: &str = "poll";
pub const DEFAULT_WAIT: &str = "nap";

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

/// Parses the `bench-result:` lines of one boot.
pub fn parse(output: &str, smp: u32, fix: &str, wait: &str) -> Vec<Measurement> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("bench-result: "))
        .filter_map(|rest| {
            let get = |k: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            };
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

/// Boots every configuration; `progress` gets one line per boot.
pub fn run(
    kernel: &Path,
    cfg: &Config,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Measurement>> {
    let mut all = Vec::new();
    let total = cfg.boots();
    let started = Instant::now();
    let mut i = 0;
    for &smp in &cfg.smps {
        for &(fix, args) in &cfg.fixes {
            for &wait in &cfg.waits {
                i += 1;
                let append = format!("bench={} watchdog_ms=0 wait={wait} {args}", cfg.samples);
                let t = Instant::now();
                let r = qemu::run(&RunSpec {
                    kernel,
                    smp,
                    mem: qemu::DEFAULT_MEM_MIB,
                    append: &append,
                    timeout: Duration::from_secs(900),
                    echo: false,
                    image: None,
                    cpu: Default::default(),
                })?;
                if !r.output.contains("alphasmp: PASS (benchmark reported)") {
                    let log = crate::util::repo_root().join("target/bench-failed.log");
                    std::fs::write(&log, &r.output).ok();
                    return Err(crate::util::Error {
                        message: format!(
                            "benchmark boot failed (smp {smp}, {fix}, wait={wait}): {}",
                            r.describe()
                        ),
                        log: Some(log),
                    });
                }
                let ms = parse(&r.output, smp, fix, wait);
                progress(&format!(
                    "[{i}/{total}] smp={smp} fix={fix} wait={wait}: {} measurements in {:.1} s (total {:.0} s)",
                    ms.len(),
                    t.elapsed().as_secs_f64(),
                    started.elapsed().as_secs_f64()
                ));
                all.extend(ms);
            }
        }
    }
    Ok(all)
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

pub fn markdown(ms: &[Measurement], cfg: &Config, host: &str) -> String {
    let mut s = String::new();
    let smps = &cfg.smps;
    writeln!(s, "Measured by `cargo xtask bench --samples {}` on {host}. In-kernel, on the issuing CPU's cycle counter, {} samples per cell; times in microseconds.", cfg.samples, cfg.samples).ok();
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
    writeln!(s, "### Shootdown throughput on {top} CPUs: flush_tlb_page shootdowns per second, whole machine\n").ok();
    write!(s, "| issuers |").ok();
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
    for label in labels(ms, true) {
        write!(s, "| {} |", label.rsplit('x').next().unwrap_or("")).ok();
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
    s
}

fn jstr(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn json(ms: &[Measurement], cfg: &Config, host: &str) -> String {
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
    s.push_str("  ]\n}\n");
    s
}

/// The plot: left, median latency (log scale) against CPU count for the
/// main measurements with idle targets (solid: wait=nap, dashed:
/// wait=spin, fix set `poll`); right, throughput against issuers on the
/// largest machine. Hand-written SVG.
pub fn svg(ms: &[Measurement], cfg: &Config) -> String {
    const W: f64 = 920.0;
    const H: f64 = 400.0;
    let (pw, ph, top, left1, left2) = (330.0, 280.0, 50.0, 80.0, 560.0);
    let fix = if cfg.fixes.iter().any(|f| f.0 == DEFAULT_FIX) {
        DEFAULT_FIX
    } else {
        cfg.fixes[0].0
    };
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
    let series = [
        "call_single_wait (idle)",
        "on_each_cpu_wait (idle)",
        "flush_tlb_all (idle)",
        "flush_tlb_page (idle)",
        "ipi_rtt (idle)",
    ];
    let mut s = String::new();
    writeln!(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">").ok();
    writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>").ok();
    // Left panel: log10(us) from 1 us to 100 ms.
    let (lo, hi) = (0.0f64, 5.0f64);
    let smps = &cfg.smps;
    let (smin, smax) = (
        *smps.iter().min().unwrap_or(&2) as f64,
        *smps.iter().max().unwrap_or(&4) as f64,
    );
    let x1 = |c: f64| {
        left1
            + if smax > smin {
                (c - smin) / (smax - smin) * pw
            } else {
                pw / 2.0
            }
    };
    let y1 = |ns: u64| {
        top + ph - (((ns.max(1) as f64 / 1000.0).log10().clamp(lo, hi) - lo) / (hi - lo)) * ph
    };
    writeln!(s, "<text x=\"{}\" y=\"25\" font-size=\"14\">Median latency, idle targets (fix set {fix})</text>", left1).ok();
    writeln!(s, "<rect x=\"{left1}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>").ok();
    for e in 0..=5 {
        let y = top + ph - (e as f64 - lo) / (hi - lo) * ph;
        let lab = ["1 us", "10 us", "100 us", "1 ms", "10 ms", "100 ms"][e];
        writeln!(s, "<line x1=\"{left1}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{lab}</text>", left1 + pw, left1 - 6.0, y + 4.0).ok();
    }
    for &c in smps {
        writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{c} CPUs</text>",
            x1(c as f64),
            top + ph + 18.0
        )
        .ok();
    }
    for (i, name) in series.iter().enumerate() {
        for (wait, dash) in [("nap", ""), ("spin", " stroke-dasharray=\"5,4\"")] {
            let pts: Vec<String> = smps
                .iter()
                .filter_map(|&c| {
                    find(ms, c, fix, wait, name)
                        .map(|m| format!("{:.1},{:.1}", x1(c as f64), y1(m.median_ns)))
                })
                .collect();
            if pts.len() > 1 {
                writeln!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}/>", pts.join(" "), colors[i]).ok();
            }
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap();
                writeln!(
                    s,
                    "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{}\"/>",
                    colors[i]
                )
                .ok();
            }
        }
        writeln!(s, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>", left1, top + ph + 32.0 + 14.0 * i as f64, colors[i], left1 + 18.0, top + ph + 37.0 + 14.0 * i as f64, name.trim_end_matches(" (idle)")).ok();
    }
    writeln!(
        s,
        "<text x=\"{}\" y=\"{}\">solid: wait=nap; dashed: wait=spin</text>",
        left1 + 200.0,
        top + ph + 37.0
    )
    .ok();
    // Right panel: throughput (linear) against issuers.
    let big = *smps.iter().max().unwrap_or(&4);
    let tp: Vec<&Measurement> = ms
        .iter()
        .filter(|m| m.smp == big && m.fix == fix && m.target.is_empty())
        .collect();
    let ymax = tp.iter().map(|m| m.per_s).max().unwrap_or(1).max(1) as f64 * 1.1;
    let x2 = |k: f64| {
        left2
            + if big > 1 {
                (k - 1.0) / (big as f64 - 1.0) * pw
            } else {
                pw / 2.0
            }
    };
    let y2 = |v: u64| top + ph - v as f64 / ymax * ph;
    writeln!(s, "<text x=\"{left2}\" y=\"25\" font-size=\"14\">Shootdowns per second, {big} CPUs (fix set {fix})</text>").ok();
    writeln!(s, "<rect x=\"{left2}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>").ok();
    for t in 0..=4 {
        let v = (ymax / 4.0 * t as f64) as u64;
        writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            left2 - 6.0,
            y2(v) + 4.0
        )
        .ok();
    }
    for k in 1..=big {
        writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{k} issuing</text>",
            x2(k as f64),
            top + ph + 18.0
        )
        .ok();
    }
    for (wait, dash, color) in [
        ("nap", "", colors[0]),
        ("spin", " stroke-dasharray=\"5,4\"", colors[1]),
    ] {
        let mut pts: Vec<(u32, u64)> = tp
            .iter()
            .filter(|m| m.wait == wait)
            .map(|m| (m.issuers, m.per_s))
            .collect();
        pts.sort();
        let line: Vec<String> = pts
            .iter()
            .map(|(k, v)| format!("{:.1},{:.1}", x2(*k as f64), y2(*v)))
            .collect();
        if line.len() > 1 {
            writeln!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>", line.join(" ")).ok();
        }
        writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">wait={wait}</text>",
            left2 + 10.0,
            top + 16.0 + if wait == "nap" { 0.0 } else { 14.0 }
        )
        .ok();
    }
    s.push_str("</svg>\n");
    s
}

pub fn write(dir: &Path, ms: &[Measurement], cfg: &Config, host: &str) -> Result<()> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("bench.md"), markdown(ms, cfg, host))
        .context(|| "writing bench.md".into())?;
    std::fs::write(dir.join("bench.json"), json(ms, cfg, host))
        .context(|| "writing bench.json".into())?;
    std::fs::write(dir.join("bench.svg"), svg(ms, cfg)).context(|| "writing bench.svg".into())?;
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
            samples: 1000,
            smps: vec![2],
            fixes: fixes("poll").unwrap(),
            waits: vec!["nap"],
        };
        let ms = parse(OUT, 2, "poll", "nap");
        let md = markdown(&ms, &cfg, "test host");
        assert!(
            md.contains("| ipi_rtt (idle) | 26.1 (55.4 / 1648), 1.0x |"),
            "{md}"
        );
        assert!(md.contains("| 2 | 10463 |"), "{md}");
        let svg = svg(&ms, &cfg);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(json(&ms, &cfg, "h").contains("\"per_s\": 10463"));
        assert!(fixes("bogus").is_err());
    }
}
