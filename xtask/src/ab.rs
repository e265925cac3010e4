//! `cargo xtask ab`: kernels against each other, boots taken in turn, and
//! `cargo xtask layouts`, which builds this tree's kernel in several code
//! placements.
//!
//! Under QEMU, where the code lands moves a busy call by up to 15% with no
//! change to what runs (docs/cross-calls.md §11), so one build against
//! another says little below about 10%. A label here may name several
//! builds of one kernel (`LABEL=ELF,ELF,...`, e.g. the output of
//! `layouts`): each is booted in every round, and the label's figure for a
//! measurement is the mean over its builds of each build's median over
//! rounds (a build's median over rounds is the median of its boots'
//! medians). The first label is the base: every other label also gets its
//! figure over the base's, and in how many rounds its boots were faster
//! than the base's, build by build in the order given.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bench::{Measurement, parse};
use crate::qemu::{self, CpuModel, RunSpec};
use crate::util::{Result, err};

/// One label and its kernel builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    pub label: String,
    pub kernels: Vec<PathBuf>,
}

/// Parses `LABEL=ELF[,ELF...]`.
pub fn parse_variant(arg: &str) -> Result<Variant> {
    let (label, files) = arg.split_once('=').ok_or_else(|| {
        err(format!(
            "{arg}: expected LABEL=ELF[,ELF...] (a name, then one or more kernel files)"
        ))
    })?;
    if label.is_empty() || files.is_empty() {
        return Err(err(format!("{arg}: an empty label or kernel list")));
    }
    let kernels: Vec<PathBuf> = files.split(',').map(PathBuf::from).collect();
    if let Some(missing) = kernels.iter().find(|k| !k.is_file()) {
        return Err(err(format!("{label}: {} is not a file", missing.display())));
    }
    Ok(Variant {
        label: label.into(),
        kernels,
    })
}

/// The boots' results: per variant, per build, per measurement key, each
/// boot's median in boot order.
pub type Samples = Vec<Vec<BTreeMap<String, Vec<f64>>>>;

/// A measurement's key: its name, then its target or issuers.
fn key(m: &Measurement) -> String {
    if m.target.is_empty() {
        format!("{} x{}", m.name, m.issuers)
    } else {
        format!("{} ({})", m.name, m.target)
    }
}

/// A measurement's figure: nanoseconds, or for throughput rows the time
/// per operation of the whole machine (1e9 / per second), so that lower
/// is faster in every row.
fn figure(m: &Measurement) -> f64 {
    if m.per_s > 0 {
        1e9 / m.per_s as f64
    } else {
        m.median_ns as f64
    }
}

/// Adds one boot's output for build `build` of variant `variant`.
pub fn record(samples: &mut Samples, variant: usize, build: usize, output: &str, smp: u32) {
    for m in parse(output, smp, "", "") {
        samples[variant][build]
            .entry(key(&m))
            .or_default()
            .push(figure(&m));
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The report: one table per measurement the base reported.
pub fn report(variants: &[Variant], samples: &Samples) -> String {
    let mut s = String::new();
    let Some(base) = samples.first() else {
        return s;
    };
    let keys: Vec<&String> = base
        .iter()
        .flat_map(|b| b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for k in keys {
        let _ = writeln!(s, "\n{k} (ns; lower is faster)\n");
        let _ = writeln!(
            s,
            "| label | mean over builds | each build's median over rounds | over the base | rounds faster than the base |"
        );
        let _ = writeln!(s, "|---|---:|---|---:|---:|");
        let base_builds: Vec<&[f64]> = base
            .iter()
            .map(|b| b.get(k).map_or(&[][..], |v| v.as_slice()))
            .collect();
        let base_mean = mean_of_medians(&base_builds);
        for (vi, v) in variants.iter().enumerate() {
            let builds: Vec<&[f64]> = samples[vi]
                .iter()
                .map(|b| b.get(k).map_or(&[][..], |v| v.as_slice()))
                .collect();
            let m = mean_of_medians(&builds);
            let each: Vec<String> = builds.iter().map(|b| format!("{:.0}", median(b))).collect();
            let (ratio, faster) = if vi == 0 {
                ("".to_string(), "".to_string())
            } else {
                let (mut wins, mut pairs) = (0, 0);
                for (bi, b) in builds.iter().enumerate() {
                    let Some(other) = base_builds.get(bi.min(base_builds.len() - 1)) else {
                        continue;
                    };
                    for (x, y) in b.iter().zip(other.iter()) {
                        pairs += 1;
                        wins += usize::from(x < y);
                    }
                }
                (
                    format!("{:.3}", m / base_mean),
                    format!("{wins} of {pairs}"),
                )
            };
            let _ = writeln!(
                s,
                "| {} | {m:.0} | {} | {ratio} | {faster} |",
                v.label,
                each.join(", ")
            );
        }
    }
    s
}

fn mean_of_medians(builds: &[&[f64]]) -> f64 {
    let meds: Vec<f64> = builds
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| median(b))
        .collect();
    if meds.is_empty() {
        f64::NAN
    } else {
        meds.iter().sum::<f64>() / meds.len() as f64
    }
}

/// Boots every build of every variant once per round, in turn.
pub fn run(
    variants: &[Variant],
    smp: u32,
    rounds: u32,
    append: &str,
    progress: &dyn Fn(&str),
) -> Result<Samples> {
    let mut samples: Samples = variants
        .iter()
        .map(|v| vec![BTreeMap::new(); v.kernels.len()])
        .collect();
    let total = rounds as usize * variants.iter().map(|v| v.kernels.len()).sum::<usize>();
    let mut done = 0;
    for _ in 0..rounds {
        for (vi, v) in variants.iter().enumerate() {
            for (bi, k) in v.kernels.iter().enumerate() {
                let out = boot(k, smp, append)?;
                record(&mut samples, vi, bi, &out, smp);
                done += 1;
                progress(&format!("[{done}/{total}] {} build {}", v.label, bi + 1));
            }
        }
    }
    measured(&samples, append)?;
    Ok(samples)
}

/// One clear line where no boot reported a measurement (the boot
/// arguments ran no benchmark), rather than an empty report.
fn measured(samples: &Samples, append: &str) -> Result<()> {
    if samples.iter().flatten().all(|b| b.is_empty()) {
        return Err(err(format!(
            "no boot reported a measurement: does --append include bench=N? ('{append}')"
        )));
    }
    Ok(())
}

fn boot(kernel: &Path, smp: u32, append: &str) -> Result<String> {
    let spec = RunSpec {
        kernel,
        smp,
        mem: qemu::DEFAULT_MEM_MIB,
        append,
        timeout: Duration::from_secs(300),
        echo: false,
        image: None,
        cpu: CpuModel::default(),
    };
    let r = qemu::run(&spec)?;
    if !r.verdict().is_some_and(|v| v.starts_with("PASS")) {
        return Err(err(format!(
            "{} with '{append}': {}",
            kernel.display(),
            r.describe()
        )));
    }
    Ok(r.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, target: &str, ns: u64) -> String {
        format!(
            "bench-result: name={name} target={target} n=1000 median_ns={ns} p90_ns={ns} p99_ns={ns}\n"
        )
    }

    #[test]
    fn a_variant_names_its_builds() {
        let dir = std::env::temp_dir().join(format!("alphasmp-ab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        std::fs::write(&a, b"x").unwrap();
        let v = parse_variant(&format!("new={0},{0}", a.display())).unwrap();
        assert_eq!(v.label, "new");
        assert_eq!(v.kernels.len(), 2);
        assert!(parse_variant("new").is_err(), "no '='");
        assert!(parse_variant("=x").is_err(), "no label");
        assert!(
            parse_variant(&format!("new={}", dir.join("missing").display())).is_err(),
            "a file that is not there"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn boots_without_a_measurement_are_an_error() {
        let mut s: Samples = vec![vec![BTreeMap::new(); 1]; 2];
        record(&mut s, 0, 0, "alphasmp: PASS (39 passed, 0 failed)\n", 2);
        let e = measured(&s, "wait=auto").unwrap_err();
        assert!(e.message.contains("bench=N"), "{}", e.message);
        record(&mut s, 1, 0, &line("ipi_rtt", "busy", 1800), 2);
        assert!(measured(&s, "bench=10").is_ok());
    }

    /// Two builds each: the figure is the mean of the builds' medians, the
    /// ratio is over the base's, and rounds are compared build by build.
    #[test]
    fn the_report_averages_builds_and_counts_rounds() {
        let variants = [
            Variant {
                label: "base".into(),
                kernels: vec!["a".into(), "b".into()],
            },
            Variant {
                label: "new".into(),
                kernels: vec!["c".into(), "d".into()],
            },
        ];
        let mut s: Samples = vec![vec![BTreeMap::new(); 2]; 2];
        // Build medians over three rounds: base 2000 and 2400 (mean 2200);
        // new 1800 and 2200 (mean 2000), faster in 5 of 6 pairs.
        for (b, n) in [(2000, 1800), (2000, 1800), (2100, 2300)] {
            record(&mut s, 0, 0, &line("call_single_wait", "busy", b), 2);
            record(&mut s, 1, 0, &line("call_single_wait", "busy", n), 2);
        }
        for (b, n) in [(2400, 2200), (2300, 2200), (2500, 2300)] {
            record(&mut s, 0, 1, &line("call_single_wait", "busy", b), 2);
            record(&mut s, 1, 1, &line("call_single_wait", "busy", n), 2);
        }
        let r = report(&variants, &s);
        assert!(r.contains("call_single_wait (busy)"), "{r}");
        assert!(r.contains("| base | 2200 | 2000, 2400 |  |  |"), "{r}");
        assert!(
            r.contains("| new | 2000 | 1800, 2200 | 0.909 | 5 of 6 |"),
            "{r}"
        );
    }
}
