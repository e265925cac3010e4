//! The fault x fix matrix in QEMU, reduced to a short workload per cell:
//! every cell must end the way the protocol predicts (xtask::matrix::predict,
//! reasoning in the README), and the Markdown/JSON writers must produce the
//! table. `cargo xtask matrix` runs the full-size version for the README.

use std::path::PathBuf;
use std::sync::OnceLock;

use xtask::matrix::{self, Expect, Params};

fn kernel() -> &'static PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        xtask::kernel_elf(true).unwrap_or_else(|e| panic!("cannot build the kernel: {e}"))
    })
}

#[test]
fn every_cell_ends_as_predicted() {
    // Shorter cells by default; the full size with `cargo xtask test --long`.
    // Not much shorter: without a fix, 2 CPUs first lost an edge after 35 to
    // 100 shootdowns in full runs, and a predicted deadlock needs one loss.
    let per_cpu = if std::env::var_os("ALPHASMP_LONG").is_some() {
        Params::default().per_cpu
    } else {
        150
    };
    let p = Params {
        per_cpu,
        ..Params::default()
    };
    let cells =
        matrix::run_all(kernel(), &p, |c| eprintln!("{}", matrix::describe(c))).expect("QEMU runs");
    assert_eq!(cells.len(), 2 * matrix::FAULTS.len() * matrix::FIXES.len());
    let wrong: Vec<String> = cells
        .iter()
        .filter(|c| !c.as_predicted())
        .map(matrix::describe)
        .collect();
    assert!(
        wrong.is_empty(),
        "cells not as predicted:\n{}",
        wrong.join("\n")
    );
    // The reproductions really reproduce: a predicted deadlock was detected
    // by the watchdog (not a hang), and the rescue counters show the fix
    // doing the work where it is the only thing that can.
    for c in &cells {
        if c.outcome == "deadlock" {
            let ms: i64 = c
                .field("detect_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            assert!(
                ms >= 0,
                "deadlock without a detection time: {}",
                matrix::describe(c)
            );
        }
        if c.fault == "edge_loss" && c.fix == "poll" {
            // Rescues by the in-interrupt poll and by the idle loop's poll.
            let n = |k: &str| c.field(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let rescued = n("rescued_call") + n("idle_rescued_call");
            let dropped: u64 = c.field("dropped").and_then(|v| v.parse().ok()).unwrap_or(0);
            // Whatever was dropped, the poll rescued something. On 2 CPUs a
            // cell can finish within a tick or two (about 5 us a shootdown)
            // and lose nothing; on 4 CPUs it runs for seconds and must.
            assert!(
                dropped == 0 || rescued > 0,
                "edges were dropped but nothing rescued: {}",
                matrix::describe(c)
            );
            if c.smp == 4 {
                assert!(
                    dropped > 0,
                    "no edge lost in a 4-CPU run: the window is not exercised: {}",
                    matrix::describe(c)
                );
            }
        }
    }
    assert!(
        cells
            .iter()
            .any(|c| c.expect == Expect::Deadlocks && c.outcome == "deadlock")
    );
    let dir = std::env::temp_dir().join(format!("alphasmp-matrix-{}", std::process::id()));
    matrix::write(&dir, &cells, &p).unwrap();
    let md = std::fs::read_to_string(dir.join("matrix.md")).unwrap();
    let json = std::fs::read_to_string(dir.join("matrix.json")).unwrap();
    assert!(md.contains("| edge_loss |") && md.contains("**deadlock**"));
    assert_eq!(json.matches("\"smp\":").count(), cells.len());
    let _ = std::fs::remove_dir_all(dir);
}

/// Napping waiters (wait=nap) on the lossy line, 4 CPUs: the poll and the
/// full fix set still complete every run; without the poll a deadlock is
/// no longer certain (a completed call's wake IPI drains the caller's
/// mailbox, lost CALL bits included), so those cells may go either way,
/// and the masked-wait cells are unchanged (`matrix::predict_for`).
#[test]
fn napping_waiters_on_the_lossy_line() {
    let p = Params {
        per_cpu: 150,
        smps: vec![4],
        wait: "nap",
        ..Params::default()
    };
    let mut cells = Vec::new();
    for &(fix, args) in matrix::FIXES {
        for fault in ["edge_loss", "masked_wait"] {
            let c = matrix::run_cell(kernel(), &p, 4, fault, fix, args).expect("QEMU runs");
            eprintln!("wait=nap {}", matrix::describe(&c));
            cells.push(c);
        }
    }
    let wrong: Vec<String> = cells
        .iter()
        .filter(|c| !c.as_predicted())
        .map(matrix::describe)
        .collect();
    assert!(
        wrong.is_empty(),
        "cells not as predicted with wait=nap:\n{}",
        wrong.join("\n")
    );
    let lossy_poll = cells
        .iter()
        .find(|c| c.fault == "edge_loss" && c.fix == "poll")
        .unwrap();
    assert_eq!(lossy_poll.outcome, "completed");
}

/// Detection time is measured on each CPU's own clock: with the CPUs'
/// counters deliberately unsynchronised (3 s apart), a deadlocking cell
/// still reports a time between one and a few watchdog periods.
#[test]
fn detection_time_survives_unsynchronised_clocks() {
    let append = "stress=150 inject=edge_loss ipi_lock=off ipi_poll=off resend=off watchdog_ms=500 tick_hz=1000 irq_load_us=100 clock_skew_us=3000000 wait=spin";
    let r = xtask::qemu::run(&xtask::qemu::RunSpec {
        kernel: kernel(),
        smp: 4,
        mem: xtask::qemu::DEFAULT_MEM_MIB,
        append,
        timeout: std::time::Duration::from_secs(300),
        echo: false,
        image: None,
        cpu: Default::default(),
    })
    .expect("QEMU runs");
    let fields = matrix::parse_result(&r.output)
        .unwrap_or_else(|| panic!("no stress-result line:\n{}", r.output));
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("outcome"), "deadlock", "{}", r.output);
    let ms: i64 = get("detect_ms").parse().unwrap_or(-1);
    assert!(
        (500..5000).contains(&ms),
        "detection after {ms} ms with a 500 ms watchdog:\n{}",
        r.output
    );
}
