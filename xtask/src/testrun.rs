//! How `cargo xtask test` runs the host test binaries: most QEMU ones one at
//! a time and alone, everything else side by side.
//!
//! `cargo test --workspace` runs its test binaries one after another. Most
//! of ours are waits, not work (the simulators sleep and time out in real
//! time; the spin searches are one process each), so a 2-core host sat half
//! idle for most of the run. The QEMU boots are the opposite: a 4-CPU guest
//! fills both host cores, and the one-boot experiment's predictions assume
//! one machine per host. So the runner builds every test binary once, runs
//! the host-only ones (with loom, Miri and the doc tests) a few at a time,
//! the longest first, and then the QEMU ones in sequence with nothing
//! beside them.
//!
//! A binary runs alone when its source names `xtask::qemu` (it boots
//! QEMU) and does not say `xtask-test: beside host jobs` (`tests/boot.rs`,
//! whose checks allow for a shared host), or when it says `xtask-test:
//! alone` (the host-thread races of `tests/nap_fences.rs`, which need the
//! cores to themselves): the rule reads the test's own text, so a new QEMU
//! test is never run beside other work by accident.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{Context, Result, err};

/// One test binary from `cargo test --no-run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    /// `boot`, `alphasmp (unit)`, `xtask (bin unit)`, ...
    pub name: String,
    pub path: PathBuf,
    /// The package's directory: cargo runs a test binary there.
    pub dir: PathBuf,
    /// The integration test's source (None for unit tests).
    pub source: Option<PathBuf>,
}

impl Binary {
    /// True when the binary must run alone (see the module's header).
    /// A source that cannot be read is an error, not a guess.
    pub fn runs_alone(&self) -> Result<bool> {
        match &self.source {
            None => Ok(false),
            Some(p) => Ok(runs_alone(
                &std::fs::read_to_string(p).context(|| format!("reading {}", p.display()))?,
            )),
        }
    }
}

/// The rule behind [`Binary::runs_alone`], on a source text: any use of
/// the QEMU module (`xtask::qemu`, or `qemu::` after importing it) without
/// the [`BESIDE`] marker, or the [`ALONE`] marker.
pub fn runs_alone(source: &str) -> bool {
    let qemu = source.contains("xtask::qemu") || source.contains("qemu::");
    (qemu && !source.contains(BESIDE)) || source.contains(ALONE)
}

/// What a test's source says to run alone without booting QEMU.
pub const ALONE: &str = "xtask-test: alone";

/// What a QEMU test's source says to run beside the host jobs: its boots
/// assert no timing that another process on the host could move.
pub const BESIDE: &str = "xtask-test: beside host jobs";

/// The test binaries in `cargo test --no-run --message-format=json` output
/// (one JSON object per line; other lines are ignored).
pub fn parse_artifacts(json_lines: &str) -> Result<Vec<Binary>> {
    let mut out = Vec::new();
    for line in json_lines.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).context(|| format!("cargo's JSON: {line}"))?;
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        let target = &v["target"];
        let name = target["name"].as_str().unwrap_or("?");
        let kinds: Vec<&str> = target["kind"]
            .as_array()
            .map(|a| a.iter().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        let manifest = v["manifest_path"]
            .as_str()
            .ok_or_else(|| err(format!("no manifest_path in cargo's JSON: {line}")))?;
        let dir = Path::new(manifest)
            .parent()
            .ok_or_else(|| err(format!("manifest path without a directory: {manifest}")))?
            .to_path_buf();
        let (name, source) = if kinds.contains(&"test") {
            (
                name.to_string(),
                target["src_path"].as_str().map(PathBuf::from),
            )
        } else if kinds.contains(&"bin") {
            (format!("{name} (bin unit)"), None)
        } else {
            (format!("{name} (unit)"), None)
        };
        out.push(Binary {
            name,
            path: PathBuf::from(exe),
            dir,
            source,
        });
    }
    Ok(out)
}

/// The counts in a test harness's `test result:` lines, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tally {
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
}

impl Tally {
    pub fn of(output: &str) -> Tally {
        let mut t = Tally::default();
        for line in output.lines().filter(|l| l.starts_with("test result:")) {
            for part in line.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u32>() else { continue };
                match kind {
                    "passed" => t.passed += n,
                    "failed" => t.failed += n,
                    "ignored" => t.ignored += n,
                    _ => {}
                }
            }
        }
        t
    }
}

impl std::fmt::Display for Tally {
    /// `5 passed, 1 failed, 1 ignored`, padded to the width asked for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = format!("{} passed", self.passed);
        if self.failed > 0 {
            text.push_str(&format!(", {} failed", self.failed));
        }
        if self.ignored > 0 {
            text.push_str(&format!(", {} ignored", self.ignored));
        }
        f.pad(&text)
    }
}

/// One command the side-by-side stage runs, its output captured.
pub struct Job {
    pub name: String,
    pub cmd: Command,
}

/// What a finished job left.
pub struct Finished {
    pub name: String,
    pub status: std::io::Result<ExitStatus>,
    pub output: String,
    pub took: Duration,
}

impl Finished {
    pub fn ok(&self) -> bool {
        self.status.as_ref().is_ok_and(|s| s.success())
    }
}

/// Runs `jobs` at most `width` at a time, in the order given, each with
/// stdout and stderr captured into one text; `done` sees each as it ends.
/// Every job runs even when one fails, so one run reports every failure.
/// Every `heartbeat` without a job ending it names the jobs still running
/// and for how long, so a hung one is visible while it hangs.
pub fn run_side_by_side(
    jobs: Vec<Job>,
    width: usize,
    heartbeat: Duration,
    mut done: impl FnMut(&Finished),
) -> Vec<Finished> {
    let (tx, rx) = mpsc::channel::<Finished>();
    let mut queue = jobs.into_iter();
    let mut running: Vec<(String, Instant, std::thread::JoinHandle<()>)> = Vec::new();
    let mut finished = Vec::new();
    let start_next =
        |queue: &mut std::vec::IntoIter<Job>,
         running: &mut Vec<(String, Instant, std::thread::JoinHandle<()>)>| {
            let Some(mut job) = queue.next() else {
                return;
            };
            let tx = tx.clone();
            let name = job.name.clone();
            let began = Instant::now();
            let handle = std::thread::spawn(move || {
                let (status, output) = capture(&mut job.cmd);
                tx.send(Finished {
                    name: job.name,
                    status,
                    output,
                    took: began.elapsed(),
                })
                .ok();
            });
            running.push((name, began, handle));
        };
    for _ in 0..width.max(1) {
        start_next(&mut queue, &mut running);
    }
    while !running.is_empty() {
        let f = match rx.recv_timeout(heartbeat) {
            Ok(f) => f,
            Err(_) => {
                // A thread that ended without a report (it panicked) is a
                // failed job, not a wait for ever.
                let Some(i) = running.iter().position(|(_, _, h)| h.is_finished()) else {
                    let names: Vec<String> = running
                        .iter()
                        .map(|(n, t, _)| format!("{n} ({} s)", t.elapsed().as_secs()))
                        .collect();
                    eprintln!("  ... still running: {}", names.join(", "));
                    continue;
                };
                // Its report may have arrived just now: take it if so.
                match rx.try_recv() {
                    Ok(f) => f,
                    Err(_) => {
                        let (name, began, _) = &running[i];
                        Finished {
                            name: name.clone(),
                            status: Err(std::io::Error::other("the job's runner thread panicked")),
                            output: String::new(),
                            took: began.elapsed(),
                        }
                    }
                }
            }
        };
        if let Some(i) = running.iter().position(|(n, _, _)| *n == f.name) {
            running.swap_remove(i);
        }
        done(&f);
        finished.push(f);
        start_next(&mut queue, &mut running);
    }
    finished
}

/// Runs `cmd` with stdout and stderr going to one pipe, in the order the
/// child wrote them.
fn capture(cmd: &mut Command) -> (std::io::Result<ExitStatus>, String) {
    let (mut reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return (Err(e), String::new()),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return (Err(e), String::new()),
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (Err(e), String::new()),
    };
    // The command still holds our copies of the write ends: replace them,
    // so the child (and its children) hold the only ones and reading to the
    // end returns when they exit.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut bytes = Vec::new();
    let read = reader.read_to_end(&mut bytes);
    let status = child.wait();
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if let Err(e) = read {
        text.push_str(&format!("\n(reading the output failed: {e})\n"));
    }
    (status, text)
}

/// How long each job took last time (`target/xtask/test-times`), so the
/// longest start first and the short ones fill in around them.
pub struct Times {
    path: PathBuf,
    seconds: BTreeMap<String, f64>,
}

impl Times {
    pub fn load(path: PathBuf) -> Times {
        let seconds = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (s, name) = l.split_once(' ')?;
                Some((name.to_string(), s.parse().ok()?))
            })
            .collect();
        Times { path, seconds }
    }

    /// Sorts `jobs` longest first; a job never timed goes first of all (it
    /// may be the longest).
    pub fn order(&self, jobs: &mut [Job]) {
        jobs.sort_by(|a, b| {
            let t = |j: &Job| self.seconds.get(&j.name).copied().unwrap_or(f64::INFINITY);
            t(b).total_cmp(&t(a))
        });
    }

    pub fn record(&mut self, name: &str, took: Duration) {
        self.seconds.insert(name.to_string(), took.as_secs_f64());
    }

    /// Forgets the jobs not in `names` (renamed, removed, now run alone).
    pub fn keep_only(&mut self, names: &[&str]) {
        self.seconds.retain(|n, _| names.contains(&n.as_str()));
    }

    /// Best effort: a cache that cannot be written costs only the order.
    pub fn save(&self) {
        let text: String = self
            .seconds
            .iter()
            .map(|(name, s)| format!("{s:.1} {name}\n"))
            .collect();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(&self.path, text).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///r#alphasmp@0.1.0","manifest_path":"/r/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"boot","src_path":"/r/tests/boot.rs","edition":"2024","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/r/target/debug/deps/boot-1"],"executable":"/r/target/debug/deps/boot-1","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///r/xtask#0.1.0","manifest_path":"/r/xtask/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"xtask","src_path":"/r/xtask/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/r/target/debug/deps/libxtask-2.rlib"],"executable":null,"fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///r/xtask#0.1.0","manifest_path":"/r/xtask/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"xtask","src_path":"/r/xtask/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/r/target/debug/deps/xtask-3"],"executable":"/r/target/debug/deps/xtask-3","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///r/xtask#0.1.0","manifest_path":"/r/xtask/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"xtask","src_path":"/r/xtask/src/main.rs","edition":"2024","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/r/target/debug/deps/xtask-4"],"executable":"/r/target/debug/deps/xtask-4","fresh":true}
{"reason":"build-finished","success":true}
"#;

    #[test]
    fn test_binaries_are_read_from_cargos_json() {
        let b = parse_artifacts(JSON).unwrap();
        let names: Vec<&str> = b.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["boot", "xtask (unit)", "xtask (bin unit)"]);
        assert_eq!(b[0].path, Path::new("/r/target/debug/deps/boot-1"));
        assert_eq!(b[0].dir, Path::new("/r"));
        assert_eq!(b[0].source.as_deref(), Some(Path::new("/r/tests/boot.rs")));
        assert_eq!(b[1].dir, Path::new("/r/xtask"));
        assert_eq!(b[1].source, None);
        assert!(parse_artifacts("{not json").is_err());
    }

    /// The rule on this repository's own tests: the ones known to boot QEMU
    /// and the host-thread races are found, the simulators and models are
    /// not.
    #[test]
    fn the_tests_that_run_alone_are_found_by_their_text() {
        let tests = crate::util::repo_root().join("tests");
        let alone = |name: &str| {
            runs_alone(&std::fs::read_to_string(tests.join(format!("{name}.rs"))).unwrap())
        };
        for name in ["experiment", "image", "matrix", "nap_fences"] {
            assert!(alone(name), "{name}");
        }
        for name in ["boot", "model", "loom", "sim_nap", "tlb_sim", "xcall_sim"] {
            assert!(!alone(name), "{name}");
        }
        // However the module is imported.
        assert!(runs_alone("use xtask::{matrix, qemu};\nqemu::run(&spec);"));
        assert!(!runs_alone("// a simulator: no emulator here"));
        assert!(!runs_alone(
            "// xtask-test: beside host jobs\nqemu::run(&spec);"
        ));
    }

    /// Miri runs the core's unit tests (`cargo xtask test`) to find what
    /// only it can: undefined behaviour in unsafe code and data races. A
    /// module whose tests it skips (`cfg(all(test, not(miri)))` or
    /// `cfg_attr(miri, ignore)`) must have nothing of the kind: no
    /// `unsafe`, no atomics, no threads outside comments.
    #[test]
    fn the_modules_miri_skips_have_nothing_for_it() {
        let src = crate::util::repo_root().join("src");
        let mut skipped = Vec::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.contains("not(miri)") && !text.contains("cfg_attr(miri, ignore)") {
                continue;
            }
            let code: Vec<&str> = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect();
            for word in ["unsafe", "Atomic", "thread::"] {
                assert!(
                    !code.iter().any(|l| l.contains(word)),
                    "{} skips Miri but uses {word}",
                    path.display()
                );
            }
            skipped.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        skipped.sort();
        assert!(skipped.contains(&"hostcores.rs".to_string()), "{skipped:?}");
    }

    #[test]
    fn tallies_sum_every_result_line() {
        let out = "running 3 tests\n\
                   test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.5s\n";
        let t = Tally::of(out);
        assert_eq!(
            t,
            Tally {
                passed: 5,
                failed: 1,
                ignored: 1
            }
        );
        assert_eq!(t.to_string(), "5 passed, 1 failed, 1 ignored");
    }

    #[test]
    fn jobs_run_side_by_side_and_every_one_reports() {
        let sh = |name: &str, script: &str| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script]);
            Job {
                name: name.into(),
                cmd,
            }
        };
        let jobs = vec![
            sh("a", "echo out; echo err >&2"),
            sh("b", "exit 3"),
            sh("c", "echo c"),
        ];
        let mut seen = Vec::new();
        let done = run_side_by_side(jobs, 2, Duration::from_secs(60), |f| {
            seen.push(f.name.clone())
        });
        seen.sort();
        assert_eq!(seen, ["a", "b", "c"]);
        let get = |n: &str| done.iter().find(|f| f.name == n).unwrap();
        assert!(get("a").ok());
        assert_eq!(get("a").output, "out\nerr\n");
        assert!(!get("b").ok());
        assert_eq!(get("c").output, "c\n");
    }

    #[test]
    fn the_longest_job_starts_first_and_unknown_ones_before_it() {
        let dir = std::env::temp_dir().join(format!("alphasmp-times-{}", std::process::id()));
        let path = dir.join("test-times");
        let mut times = Times::load(path.clone());
        times.record("short", Duration::from_secs(1));
        times.record("long", Duration::from_secs(30));
        times.record("gone", Duration::from_secs(99));
        times.keep_only(&["short", "long", "new"]);
        times.save();
        let times = Times::load(path);
        let mut jobs: Vec<Job> = ["short", "new", "long"]
            .iter()
            .map(|n| Job {
                name: n.to_string(),
                cmd: Command::new("true"),
            })
            .collect();
        times.order(&mut jobs);
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["new", "long", "short"]);
        std::fs::remove_dir_all(dir).ok();
    }
}
