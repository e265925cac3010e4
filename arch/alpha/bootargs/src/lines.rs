//! The result lines the kernel prints and the host reads: one definition
//! of each, used on both sides.
//!
//! A line is a tag and `key=value` words: `stress-result: outcome=deadlock
//! cpus=4 ...`. Each [`Format`] lists its keys, in the order printed, with
//! the kind of value each takes. The kernel prints a line through
//! [`Format::line`], which takes exactly one value per key (the array's
//! length is the format's, so a value without a key, or a key without a
//! value, does not compile); xtask's readers (`cargo xtask matrix`,
//! `bench`, `report`) find lines with [`Format::strip`] and check values
//! against the kinds. Adding a key is one entry here and one value at the
//! printing site; a reader that needs it asks for it by name.

use core::fmt;

/// What a key's value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An unsigned number.
    Count,
    /// A number that may be negative (`detect_ms=-1`: no detection).
    Signed,
    /// Comma-separated unsigned numbers.
    List,
    /// Any non-empty word.
    Text,
}

impl Kind {
    /// What a value of the wrong shape is, in a refusal.
    pub fn expected(self) -> &'static str {
        match self {
            Kind::Count | Kind::Signed => "not a number",
            Kind::List => "not a comma-separated list of numbers",
            Kind::Text => "empty",
        }
    }

    /// `text` is a value of this kind.
    pub fn admits(self, text: &str) -> bool {
        match self {
            Kind::Count => text.parse::<u64>().is_ok(),
            Kind::Signed => text.parse::<i64>().is_ok(),
            Kind::List => text.split(',').all(|n| n.parse::<u64>().is_ok()),
            Kind::Text => !text.is_empty() && !text.contains(char::is_whitespace),
        }
    }
}

/// One kind of line: its tag and its keys, in the order printed.
pub struct Format<const N: usize> {
    /// `stress-result` (printed as `stress-result:`).
    pub tag: &'static str,
    pub keys: [(&'static str, Kind); N],
}

impl<const N: usize> Format<N> {
    /// The keys, in the order printed.
    pub fn keys(&self) -> &[(&'static str, Kind)] {
        &self.keys
    }

    /// The kind of `key`, if the format has it.
    pub fn kind(&self, key: &str) -> Option<Kind> {
        self.keys
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, kind)| *kind)
    }

    /// The line with these values, one per key in the table's order.
    pub fn line<'a>(&'a self, values: [&'a dyn fmt::Display; N]) -> Line<'a, N> {
        Line {
            format: self,
            values,
        }
    }

    /// The `key=value` words of `line` if it is one of these (the tag may
    /// follow other text on the line: a console's noise, a prompt).
    pub fn strip<'l>(&self, line: &'l str) -> Option<&'l str> {
        let at = line.find(self.tag)?;
        let rest = line[at + self.tag.len()..].strip_prefix(':')?;
        Some(rest.trim())
    }
}

/// A line ready to print (`Display`).
pub struct Line<'a, const N: usize> {
    format: &'a Format<N>,
    values: [&'a dyn fmt::Display; N],
}

impl<const N: usize> fmt::Display for Line<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.format.tag)?;
        for ((key, _), value) in self.format.keys.iter().zip(self.values.iter()) {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

/// The value of `key` among `key=value` words (the first if repeated).
pub fn value<'l>(words: &'l str, key: &str) -> Option<&'l str> {
    words
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

use Kind::{Count, List, Signed, Text};

/// The page-table frees a workload made (`alphasmp::ptfree`): how many,
/// how many freed without a sync round or with one, how many waited on the
/// deferred list because their flush stalled, how many of those a later
/// sync freed, and how many are still waiting.
macro_rules! pt_keys {
    () => {
        [
            ("pt_frees", Count),
            ("pt_elided", Count),
            ("pt_synced", Count),
            ("pt_deferred", Count),
            ("pt_freed_late", Count),
            ("pt_waiting", Count),
        ]
    };
}

/// The core's counters a stress run reports.
macro_rules! counter_keys {
    () => {
        [
            ("stalls", Count),
            ("resends", Count),
            ("dropped", Count),
            ("lock_drains", Count),
            ("rescued_call", Count),
            ("idle_rescued_call", Count),
            ("rescued_other", Count),
        ]
    };
}

/// Concatenates key arrays into one (the formats below share groups).
const fn join<const A: usize, const B: usize, const C: usize>(
    a: [(&'static str, Kind); A],
    b: [(&'static str, Kind); B],
) -> [(&'static str, Kind); C] {
    assert!(A + B == C);
    let mut out = [("", Count); C];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < C {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// The stress run's one result line (`stress=N`).
pub static STRESS_RESULT: Format<24> = Format {
    tag: "stress-result",
    keys: join::<18, 6, 24>(
        join::<11, 7, 18>(
            [
                ("outcome", Text),
                ("cpus", Count),
                ("per_cpu", Count),
                ("done", Count),
                ("done_per_cpu", List),
                ("aborted_cpus", Count),
                ("cut", Count),
                ("elapsed_ms", Count),
                ("elapsed_us", Count),
                ("detect_ms", Signed),
                ("errors", Count),
            ],
            counter_keys!(),
        ),
        pt_keys!(),
    ),
};

/// A latency measurement of the benchmark suite (`bench=N`).
pub static BENCH_RESULT: Format<9> = Format {
    tag: "bench-result",
    keys: [
        ("name", Text),
        ("target", Text),
        ("cpus", Count),
        ("n", Count),
        ("median_ns", Count),
        ("p90_ns", Count),
        ("p99_ns", Count),
        ("min_ns", Count),
        ("max_ns", Count),
    ],
};

/// A throughput measurement of the benchmark suite: `issuers` CPUs issue
/// shootdowns at once. Its tag is `bench-result` too (its name says
/// `shootdown_throughput`).
pub static BENCH_THROUGHPUT: Format<6> = Format {
    tag: "bench-result",
    keys: [
        ("name", Text),
        ("issuers", Count),
        ("cpus", Count),
        ("n", Count),
        ("elapsed_ns", Count),
        ("per_s", Count),
    ],
};

/// What `wait=auto`'s probe of the host's cores found and chose
/// (`alphasmp::hostcores`): `cores=own` when some slice had every CPU
/// running at least `need_pct` of it, else `shared` (`one`: one CPU, no
/// probe); `slowest_pct`, what the CPU that ran least ran of the best
/// slice; `stolen_pct`, the mean share of the window the CPUs did not
/// run; `wait`, the policy in force afterwards.
pub static WAIT_PROBE: Format<8> = Format {
    tag: "wait-probe",
    keys: [
        ("cpus", Count),
        ("window_ms", Count),
        ("slice_ms", Count),
        ("need_pct", Count),
        ("slowest_pct", Count),
        ("stolen_pct", Count),
        ("cores", Text),
        ("wait", Text),
    ],
};

/// The lost-edge probe (`edge_probe=N`, and at the start of every
/// experiment), one line per target CPU: `sent` PINGs, each sent the moment
/// the target was seen inside its clock handler at IPL 7 (`in_handler`: of
/// those, how many found it still inside right after the send), with three
/// of the target's clock periods (`window_us`); `taken` by the target's IPI
/// interrupt, `lost` not, although the target took two clock interrupts
/// after the send (so it ran at an IPL that takes IPIs in between, and no
/// poll or other traffic could take the PING); `unjudged`, neither within
/// a second (the target did not run: a host that deschedules a vCPU);
/// `dropped`, the IPIs an injection dropped on purpose (the ground truth
/// under `inject=`; 0 on a machine's own run); `missed`, probes not sent
/// because the target was never seen in a handler in time. `v`: the experiment's format
/// version (`experiment::FORMAT_VERSION`; an experiment's log holds these
/// lines too).
pub static EDGE_PROBE: Format<10> = Format {
    tag: "edge-probe",
    keys: [
        ("v", Count),
        ("target", Count),
        ("sent", Count),
        ("in_handler", Count),
        ("taken", Count),
        ("lost", Count),
        ("unjudged", Count),
        ("dropped", Count),
        ("missed", Count),
        ("window_us", Count),
    ],
};

/// The clock check at the start of an experiment, one line per CPU: the
/// clock interrupts it took (`interrupts`) while its own cycle counter ran
/// `cycles` (read raw, uncorrected), at the HWRPB's cycle rate
/// (`cycle_hz`), against the interrupt rate the kernel uses (`stated_hz`,
/// from the HWRPB's `intr_freq`). Every timing of the experiment (the
/// watchdog, the cells' bounds, the census's one to two clock periods)
/// rests on that rate where the timer floor is on (real machines).
pub static CLOCK_CHECK: Format<6> = Format {
    tag: "clock-check",
    keys: [
        ("v", Count),
        ("cpu", Count),
        ("interrupts", Count),
        ("cycles", Count),
        ("cycle_hz", Count),
        ("stated_hz", Count),
    ],
};

/// The benchmark's page-table frees: sync rounds elided and sent.
pub static BENCH_PTFREE: Format<7> = Format {
    tag: "bench-ptfree",
    keys: [
        ("cpus", Count),
        ("frees", Count),
        ("elided", Count),
        ("elided_lazy", Count),
        ("sync_rounds", Count),
        ("sync_ipis", Count),
        ("deferred", Count),
    ],
};

/// The experiment's heading: its parameters and the machine's identity.
pub static EXPERIMENT_BEGIN: Format<17> = Format {
    tag: "experiment-begin",
    keys: [
        ("v", Count),
        ("kernel", Text),
        ("set", Text),
        ("cells", Count),
        ("system", Count),
        ("member", Count),
        ("cpu_type", Count),
        ("cpu", Text),
        ("pal", Text),
        ("machine", Text),
        ("cpus", Count),
        ("cell_size", Count),
        ("either_runs", Count),
        ("watchdog_ms", Count),
        ("tick_hz", Count),
        ("irq_load_us", Count),
        ("wait", Text),
    ],
};

/// The census of one run of a cell (`alphasmp::census`).
macro_rules! census_keys {
    () => {
        [
            ("census_requests", Count),
            ("census_delivered", Count),
            ("census_late", Count),
            ("census_stranded", Count),
            ("census_open", Count),
            ("census_dropped", Count),
            ("census_unannounced", Count),
        ]
    };
}

/// One run of one cell of the experiment.
pub static EXPERIMENT_CELL: Format<38> = Format {
    tag: "experiment-cell",
    keys: join::<32, 6, 38>(
        join::<25, 7, 32>(
            join::<18, 7, 25>(
                [
                    ("v", Count),
                    ("n", Count),
                    ("run", Count),
                    ("runs", Count),
                    ("fault", Text),
                    ("fix", Text),
                    ("native", Count),
                    ("predicted", Text),
                    ("outcome", Text),
                    ("cpus", Count),
                    ("done", Count),
                    ("done_per_cpu", List),
                    ("aborted_cpus", Count),
                    ("cut", Count),
                    ("elapsed_ms", Count),
                    ("detect_ms", Signed),
                    ("errors", Count),
                    ("recovered_calls", Count),
                ],
                counter_keys!(),
            ),
            census_keys!(),
        ),
        pt_keys!(),
    ),
};

/// The experiment's closing line.
pub static EXPERIMENT_END: Format<8> = Format {
    tag: "experiment-end",
    keys: [
        ("v", Count),
        ("runs", Count),
        ("cells_done", Count),
        ("unexpected", Count),
        ("native_findings", Count),
        ("unrecovered", Count),
        ("census_stranded", Count),
        ("elapsed_ms", Count),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn no_repeats(keys: &[(&str, Kind)]) {
        for (i, (k, _)) in keys.iter().enumerate() {
            assert!(!k.is_empty(), "an empty key at {i}");
            assert!(
                keys[i + 1..].iter().all(|(o, _)| o != k),
                "{k} appears twice"
            );
        }
    }

    #[test]
    fn every_format_has_distinct_nonempty_keys() {
        no_repeats(STRESS_RESULT.keys());
        no_repeats(BENCH_RESULT.keys());
        no_repeats(BENCH_THROUGHPUT.keys());
        no_repeats(BENCH_PTFREE.keys());
        no_repeats(EDGE_PROBE.keys());
        no_repeats(CLOCK_CHECK.keys());
        no_repeats(WAIT_PROBE.keys());
        no_repeats(EXPERIMENT_BEGIN.keys());
        no_repeats(EXPERIMENT_CELL.keys());
        no_repeats(EXPERIMENT_END.keys());
    }

    #[test]
    fn a_line_prints_its_keys_in_order_and_reads_back() {
        let (a, b, c, d, e, f, g) = (1u32, 2u32, 3u32, 4u32, 5u32, 6u32, 7u32);
        let line = format!("noise {}", BENCH_PTFREE.line([&a, &b, &c, &d, &e, &f, &g]));
        assert_eq!(
            line,
            "noise bench-ptfree: cpus=1 frees=2 elided=3 elided_lazy=4 sync_rounds=5 sync_ipis=6 deferred=7"
        );
        let words = BENCH_PTFREE.strip(&line).unwrap();
        assert_eq!(value(words, "sync_ipis"), Some("6"));
        assert_eq!(value(words, "elided"), Some("3"), "not elided_lazy's");
        assert_eq!(value(words, "missing"), None);
        assert!(BENCH_RESULT.strip(&line).is_none());
        assert!(BENCH_PTFREE.strip("bench-ptfreeX: cpus=1").is_none());
    }

    #[test]
    fn kinds_admit_their_values_only() {
        assert!(Kind::Count.admits("12") && !Kind::Count.admits("-1"));
        assert!(Kind::Signed.admits("-1") && !Kind::Signed.admits("x"));
        assert!(Kind::List.admits("1,2,3") && !Kind::List.admits("1,,2"));
        assert!(Kind::Text.admits("edge_loss") && !Kind::Text.admits(""));
        assert_eq!(EXPERIMENT_CELL.kind("detect_ms"), Some(Kind::Signed));
        assert_eq!(EXPERIMENT_CELL.kind("pt_deferred"), Some(Kind::Count));
        assert_eq!(STRESS_RESULT.kind("nonsense"), None);
    }
}
