//! The cost of the fixes when nothing goes wrong: the stress workload with no
//! fault injected, per fix set, repeated, as time per synchronous shootdown.
//! Numbers are reported, never asserted (they depend on the host).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::matrix::{FIXES, parse_result};
use crate::qemu::{self, RunSpec};
use crate::util::{Context, Result, err};

/// One fix set's measurements on one CPU count.
pub struct Row {
    pub smp: u32,
    pub fix: &'static str,
    /// Microseconds per shootdown per CPU, one per repetition, sorted.
    pub us: Vec<f64>,
}

impl Row {
    pub fn median(&self) -> f64 {
        self.us[self.us.len() / 2]
    }
}

/// Runs `reps` boots per (CPU count, fix set); `each` sees every sample.
pub fn run(kernel: &Path, smps: &[u32], per_cpu: u64, reps: usize, mut each: impl FnMut(u32, &str, f64)) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &smp in smps {
        for &(fix, args) in FIXES {
            let mut us = Vec::new();
            for _ in 0..reps {
                let append = format!("stress={per_cpu} inject=none watchdog_ms=5000 {args}");
                let r = qemu::run(&RunSpec { kernel, smp, mem: qemu::DEFAULT_MEM_MIB, append: &append, timeout: Duration::from_secs(600), echo: false, image: None })?;
                let f = parse_result(&r.output).ok_or_else(|| err(format!("no stress-result line (smp {smp}, {fix}): {}", r.describe())))?;
                let get = |k: &str| f.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.parse::<f64>().ok());
                let (Some(us_total), Some(done)) = (get("elapsed_us"), get("done")) else {
                    return Err(err(format!("incomplete stress-result (smp {smp}, {fix})")));
                };
                if f.iter().any(|(k, v)| k == "outcome" && v != "completed") {
                    return Err(err(format!("a no-fault run did not complete (smp {smp}, {fix})")));
                }
                // Per CPU: each CPU did done/smp shootdowns in `ms`.
                let sample = us_total / (done / f64::from(smp)).max(1.0);
                each(smp, fix, sample);
                us.push(sample);
            }
            us.sort_by(f64::total_cmp);
            rows.push(Row { smp, fix, us });
        }
    }
    Ok(rows)
}

pub fn markdown(rows: &[Row], per_cpu: u64, reps: usize) -> String {
    let mut s = String::new();
    writeln!(s, "No fault injected; every CPU issues {per_cpu} synchronous `flush_tlb_page` shootdowns at once; {reps} boots per cell.").ok();
    writeln!(s, "Microseconds per shootdown per CPU: median (min to max), and the median relative to no fix.\n").ok();
    writeln!(s, "| CPUs | fix | us per shootdown | vs none |").ok();
    writeln!(s, "|---|---|---|---|").ok();
    for r in rows {
        let base = rows.iter().find(|b| b.smp == r.smp && b.fix == "none").map_or(f64::NAN, Row::median);
        writeln!(
            s,
            "| {} | {} | {:.1} ({:.1} to {:.1}) | {:.2}x |",
            r.smp,
            r.fix,
            r.median(),
            r.us[0],
            r.us[r.us.len() - 1],
            r.median() / base
        )
        .ok();
    }
    s
}

pub fn json(rows: &[Row], per_cpu: u64) -> String {
    let mut s = format!("{{\n  \"per_cpu\": {per_cpu},\n  \"rows\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let samples: Vec<String> = r.us.iter().map(|u| format!("{u:.2}")).collect();
        writeln!(s, "    {{\"smp\": {}, \"fix\": \"{}\", \"median_us\": {:.2}, \"samples_us\": [{}]}}{}", r.smp, r.fix, r.median(), samples.join(", "), if i + 1 < rows.len() { "," } else { "" }).ok();
    }
    s.push_str("  ]\n}\n");
    s
}

pub fn write(dir: &Path, rows: &[Row], per_cpu: u64, reps: usize) -> Result<()> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("bench.md"), markdown(rows, per_cpu, reps)).context(|| "writing bench.md".into())?;
    std::fs::write(dir.join("bench.json"), json(rows, per_cpu)).context(|| "writing bench.json".into())?;
    Ok(())
}
