//! The fault x fix matrix: every combination of an injected fault and a set
//! of fixes, on 2 and 4 CPUs, each in its own QEMU boot running the kernel's
//! stress workload (`stress=N`), compared with the outcome the protocol
//! predicts.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use alphasmp_bootargs::lines::STRESS_RESULT;

use crate::qemu::{self, Ending, RunSpec};
use crate::util::{Context, Result};

pub use alphasmp_bootargs::experiment::{Expect, FAULTS, FIXES, Fixes, predict};

/// [`predict_for`](alphasmp_bootargs::experiment::predict_for) with the
/// `wait=` spelling.
pub fn predict_for(fault: &str, fix: &str, smp: u32, wait: &str) -> Expect {
    // Adaptive waiters nap at times: the napping prediction holds for them.
    alphasmp_bootargs::experiment::predict_for(fault, fix, smp, wait != "spin")
}

/// One cell's measurement.
#[derive(Clone, Debug)]
pub struct Cell {
    pub smp: u32,
    pub fault: &'static str,
    pub fix: &'static str,
    pub expect: Expect,
    /// completed, deadlock, hang (QEMU killed at the timeout) or error.
    pub outcome: String,
    pub fields: Vec<(String, String)>,
    pub seconds: f64,
}

impl Cell {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Whether the outcome matches the prediction.
    pub fn as_predicted(&self) -> bool {
        self.expect.admits(&self.outcome)
    }
}

/// Matrix parameters.
#[derive(Clone, Debug)]
pub struct Params {
    pub per_cpu: u64,
    pub smps: Vec<u32>,
    pub watchdog_ms: u64,
    pub tick_hz: u32,
    pub irq_load_us: u64,
    /// `wait=`: `spin` by default, as Linux's waiters do (the series'
    /// deadlocks are about spinning waiters); `nap` changes cells (see
    /// [`predict_for`]).
    pub wait: &'static str,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            per_cpu: 300,
            smps: vec![2, 4],
            watchdog_ms: 500,
            tick_hz: 1000,
            irq_load_us: 100,
            wait: "spin",
        }
    }
}

/// 2-CPU cells run this many times `per_cpu` shootdowns. Under QEMU a
/// shootdown costs about 5 us on 2 CPUs against several ms on 4 (four
/// spin-waiting vCPUs share two host cores), so 300 shootdowns last about
/// 3 ms on 2 CPUs: three ticks, too few for an IPI to land in a handler
/// window. The factor gives 2-CPU cells comparable interrupt traffic.
pub const TWO_CPU_FACTOR: u64 = 50;

impl Params {
    /// Shootdowns per CPU for a cell on `smp` CPUs.
    pub fn per_cpu_for(&self, smp: u32) -> u64 {
        if smp <= 2 {
            self.per_cpu * TWO_CPU_FACTOR
        } else {
            self.per_cpu
        }
    }
    /// The boot arguments common to every cell (for `smp` CPUs).
    pub fn common_args_for(&self, smp: u32) -> String {
        format!(
            "stress={} watchdog_ms={} tick_hz={} irq_load_us={} wait={}",
            self.per_cpu_for(smp),
            self.watchdog_ms,
            self.tick_hz,
            self.irq_load_us,
            self.wait
        )
    }
    /// A description of the parameters.
    pub fn common_args(&self) -> String {
        format!(
            "stress={} on 4 CPUs ({}x on 2) watchdog_ms={} tick_hz={} irq_load_us={} wait={}",
            self.per_cpu,
            TWO_CPU_FACTOR,
            self.watchdog_ms,
            self.tick_hz,
            self.irq_load_us,
            self.wait
        )
    }
}

/// Parses the kernel's `stress-result:` line
/// (`alphasmp_bootargs::lines::STRESS_RESULT`) into key/value pairs.
pub fn parse_result(output: &str) -> Option<Vec<(String, String)>> {
    let line = output.lines().rev().find_map(|l| STRESS_RESULT.strip(l))?;
    Some(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Runs one cell.
pub fn run_cell(
    kernel: &Path,
    p: &Params,
    smp: u32,
    fault: &'static str,
    fix: &'static str,
    args: &str,
) -> Result<Cell> {
    let append = format!("{} inject={fault} {args}", p.common_args_for(smp));
    // Generous: a completing cell takes seconds; a deadlocking one about
    // three watchdog periods; a resend cell one watchdog period per lost IPI
    // (over a minute on 4 CPUs); a hang is what the timeout is for.
    let timeout = Duration::from_secs(600);
    let r = qemu::run(&RunSpec {
        kernel,
        smp,
        mem: qemu::DEFAULT_MEM_MIB,
        append: &append,
        timeout,
        echo: false,
        image: None,
        cpu: Default::default(),
    })?;
    let mut fields = parse_result(&r.output).unwrap_or_default();
    let outcome = match (r.ending, fields.iter().find(|(k, _)| k == "outcome")) {
        (Ending::TimedOut, _) => "hang".to_string(),
        (Ending::Exited(0), Some((_, o))) => o.clone(),
        _ => "error".to_string(),
    };
    if outcome == "error" || outcome == "hang" {
        // Keep why: QEMU's ending and the last lines it printed.
        let tail: Vec<&str> = r.output.lines().rev().take(3).collect();
        fields.push((
            "why".into(),
            format!(
                "{:?}: {}",
                r.ending,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        ));
    }
    Ok(Cell {
        smp,
        fault,
        fix,
        expect: predict_for(fault, fix, smp, p.wait),
        outcome,
        fields,
        seconds: r.elapsed.as_secs_f64(),
    })
}

/// Runs every cell, reporting each as it finishes.
pub fn run_all(kernel: &Path, p: &Params, mut each: impl FnMut(&Cell)) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for &smp in &p.smps {
        for &fault in FAULTS {
            for f in FIXES {
                let cell = run_cell(kernel, p, smp, fault, f.name, f.args())?;
                each(&cell);
                cells.push(cell);
            }
        }
    }
    Ok(cells)
}

/// A one-line summary of a cell.
pub fn describe(c: &Cell) -> String {
    let f = |k: &str| c.field(k).unwrap_or("-").to_string();
    format!(
        "smp={} inject={:<11} fix={:<15} -> {:<9} (predicted {:<9}{}) detect_ms={} done={} dropped={} rescued={}+{} resends={} drains={} [{:.1} s]{}",
        c.smp,
        c.fault,
        c.fix,
        c.outcome,
        c.expect.name(),
        if c.as_predicted() { "" } else { ", MISMATCH" },
        f("detect_ms"),
        f("done"),
        f("dropped"),
        f("rescued_call"),
        f("idle_rescued_call"),
        f("resends"),
        f("lock_drains"),
        c.seconds,
        c.field("why")
            .map(|w| format!(" why: {w}"))
            .unwrap_or_default()
    )
}

/// The matrix as Markdown: one table per CPU count.
pub fn markdown(cells: &[Cell], p: &Params) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "Workload: every CPU issues {} synchronous `flush_tlb_page` shootdowns at once; `{}`.",
        p.per_cpu,
        p.common_args()
    )
    .ok();
    writeln!(s, "Cell: outcome (time to detection for a deadlock; IPIs dropped / CALL messages rescued by the poll in interrupts + by the idle loop's poll / re-sent / lock drains). The `poll` fix is both polls: the series' patch 2/3 polls only inside interrupts; this kernel's idle loop polls too, and its rescues are counted apart. `!` marks an outcome the protocol did not predict.").ok();
    for &smp in &p.smps {
        writeln!(s, "\n**{smp} CPUs**\n").ok();
        write!(s, "| fault \\ fix |").ok();
        for f in FIXES {
            write!(s, " {} |", f.name).ok();
        }
        writeln!(s).ok();
        write!(s, "|---|").ok();
        for _ in FIXES {
            write!(s, "---|").ok();
        }
        writeln!(s).ok();
        for &fault in FAULTS {
            write!(s, "| {fault} |").ok();
            for fix in FIXES.iter().map(|f| f.name) {
                let Some(c) = cells
                    .iter()
                    .find(|c| c.smp == smp && c.fault == fault && c.fix == fix)
                else {
                    write!(s, " |").ok();
                    continue;
                };
                let f = |k: &str| c.field(k).unwrap_or("-").to_string();
                let mark = if c.as_predicted() { "" } else { " !" };
                let head = match c.outcome.as_str() {
                    "deadlock" => format!("**deadlock** {} ms", f("detect_ms")),
                    other => other.to_string(),
                };
                write!(
                    s,
                    " {head}{mark} ({}/{}+{}/{}/{}) |",
                    f("dropped"),
                    f("rescued_call"),
                    f("idle_rescued_call"),
                    f("resends"),
                    f("lock_drains")
                )
                .ok();
            }
            writeln!(s).ok();
        }
    }
    s
}

/// `s` as a JSON string literal (quotes, backslashes and control
/// characters escaped); also the report's (`crate::report`).
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The matrix as JSON (numbers where the kernel printed numbers).
pub fn json(cells: &[Cell], p: &Params) -> String {
    let mut s = String::from("{\n");
    writeln!(
        s,
        "  \"per_cpu\": {},\n  \"boot_args\": {},\n  \"cells\": [",
        p.per_cpu,
        json_str(&p.common_args())
    )
    .ok();
    for (i, c) in cells.iter().enumerate() {
        write!(
            s,
            "    {{\"smp\": {}, \"fault\": {}, \"fix\": {}, \"predicted\": {}, \"outcome\": {}, \"as_predicted\": {}, \"seconds\": {:.2}",
            c.smp,
            json_str(c.fault),
            json_str(c.fix),
            json_str(c.expect.name()),
            json_str(&c.outcome),
            c.as_predicted(),
            c.seconds
        )
        .ok();
        for (k, v) in &c.fields {
            if k == "outcome" {
                continue;
            }
            let value = if v.parse::<i64>().is_ok() {
                v.clone()
            } else {
                json_str(v)
            };
            write!(s, ", {}: {}", json_str(k), value).ok();
        }
        writeln!(s, "}}{}", if i + 1 < cells.len() { "," } else { "" }).ok();
    }
    s.push_str("  ]\n}\n");
    s
}

/// Writes `matrix.md` and `matrix.json` into `dir`.
pub fn write(dir: &Path, cells: &[Cell], p: &Params) -> Result<()> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("matrix.md"), markdown(cells, p))
        .context(|| "writing matrix.md".into())?;
    std::fs::write(dir.join("matrix.json"), json(cells, p))
        .context(|| "writing matrix.json".into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_written() {
        let p = Params::default();
        let cell = |fault, fix, outcome: &str, expect| Cell {
            smp: 4,
            fault,
            fix,
            expect,
            outcome: outcome.to_string(),
            fields: vec![
                ("detect_ms".into(), "512".into()),
                ("why".into(), "a \"b\"".into()),
            ],
            seconds: 1.0,
        };
        let cells = [
            cell("edge_loss", "none", "deadlock", Expect::Deadlocks),
            cell("edge_loss", "poll", "deadlock", Expect::Completes),
        ];
        let md = markdown(&cells, &p);
        assert!(
            md.contains("| edge_loss | **deadlock** 512 ms (") && md.contains(" ! ("),
            "{md}"
        );
        assert_eq!(
            md.matches(" ! (").count(),
            1,
            "only the unexpected cell is marked"
        );
        let js = json(&cells, &p);
        assert_eq!(js.matches("\"smp\":").count(), 2);
        assert!(
            js.contains("\"detect_ms\": 512") && js.contains("\"why\": \"a \\\"b\\\"\""),
            "{js}"
        );
    }

    #[test]
    fn result_line_is_parsed() {
        let out = "x\nstress-result: outcome=deadlock cpus=4 detect_ms=512\nmore\n";
        let f = parse_result(out).unwrap();
        assert_eq!(f[0], ("outcome".to_string(), "deadlock".to_string()));
        assert_eq!(f[2], ("detect_ms".to_string(), "512".to_string()));
        assert!(parse_result("nothing").is_none());
    }
}
