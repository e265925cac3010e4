//! `cargo xtask profile`: where one operation's instructions go, function
//! by function, on every CPU.
//!
//! The kernel's benchmark runs one measurement (`bench=N bench_only=OP`)
//! under `-icount shift=0,sleep=off` (the vCPUs run one at a time, so the
//! trace is one interleaved history) with `-singlestep -d exec,nochain`:
//! QEMU logs one `Trace CPU: ... [cs/PC/flags/cflags]` line per executed
//! instruction. The log goes through a FIFO into [`Tracer`], so no file of
//! gigabytes is written. The CPU that issues the operations calls
//! `bench_window_open` before them and `bench_window_close` after them
//! (arch/alpha/src/run/bench.rs); every instruction any CPU runs between
//! those two calls is counted, for the kernel function it belongs to, or,
//! for PALcode (below the kernel's first byte), for the PAL call or the
//! trap entry or exit it was part of, named by the kernel code on either
//! side of it. Dividing by the operations the result line reports gives
//! instructions per operation.
//!
//! Counted instructions are not time: a vCPU halted in `wtint` runs none
//! (so `--wait nap` is the default: a spinning waiter would count the
//! spins that only wait for the round robin), and a load that misses in
//! every cache costs what an add costs. They are what host noise cannot
//! move, and they say which code runs how often.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use alphasmp_bootargs::lines::BENCH_RESULT;
use object::{Object, ObjectSymbol, SymbolKind};

use crate::qemu::{self, CpuModel, RunSpec};
use crate::util::{Context, Result, err};

/// The kernel's functions by address, with Rust paths for names.
pub struct Symbols {
    /// (start, end, name), sorted by start.
    funcs: Vec<(u64, u64, String)>,
    /// The kernel's lowest code address: PALcode lies below it.
    kernel_start: u64,
}

impl Symbols {
    /// Reads the function symbols of the kernel ELF `bytes`.
    pub fn from_elf(bytes: &[u8]) -> Result<Self> {
        let file = object::File::parse(bytes).map_err(|e| err(format!("kernel ELF: {e}")))?;
        let mut funcs: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                let name = format!("{:#}", rustc_demangle::demangle(name));
                Some((s.address(), s.address() + s.size().max(4), name))
            })
            .collect();
        funcs.sort_by_key(|f| (f.0, std::cmp::Reverse(f.1)));
        funcs.dedup_by_key(|f| f.0);
        let kernel_start = funcs
            .first()
            .map(|f| f.0)
            .ok_or_else(|| err("kernel ELF: no function symbols"))?;
        Ok(Symbols {
            funcs,
            kernel_start,
        })
    }

    /// From (address, size, name) triples (tests).
    pub fn from_list(list: &[(u64, u64, &str)]) -> Self {
        let mut funcs: Vec<_> = list
            .iter()
            .map(|(a, n, s)| (*a, a + n, s.to_string()))
            .collect();
        funcs.sort_by_key(|f| f.0);
        Symbols {
            kernel_start: funcs[0].0,
            funcs,
        }
    }

    fn find(&self, pc: u64) -> Option<usize> {
        let i = self.funcs.partition_point(|f| f.0 <= pc).checked_sub(1)?;
        (pc < self.funcs[i].1).then_some(i)
    }

    /// The address of the function called `name`.
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.funcs.iter().find(|f| f.2 == name).map(|f| f.0)
    }

    fn name(&self, i: usize) -> &str {
        &self.funcs[i].2
    }
}

/// Where an instruction is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// A kernel function (index into [`Symbols`]).
    Kernel(usize),
    /// PALcode run between kernel function `before` (None: none seen yet
    /// on that CPU) and kernel function `after`.
    Pal {
        before: Option<usize>,
        after: Option<usize>,
    },
    /// Above the kernel's first byte, in no function.
    Unknown,
}

/// One window: what every CPU ran while the opener issued operations.
#[derive(Debug, Default)]
pub struct Window {
    pub opener: usize,
    pub counts: HashMap<(usize, Place), u64>,
}

impl Window {
    /// Instructions per CPU.
    pub fn per_cpu(&self) -> BTreeMap<usize, u64> {
        let mut m = BTreeMap::new();
        for ((cpu, _), n) in &self.counts {
            *m.entry(*cpu).or_insert(0) += n;
        }
        m
    }
}

#[derive(Default, Clone, Copy)]
struct CpuState {
    last_kernel: Option<usize>,
    pal_before: Option<usize>,
    pal_run: u64,
}

/// Reads QEMU's `-d exec` lines and counts the windows' instructions.
pub struct Tracer<'a> {
    syms: &'a Symbols,
    open: u64,
    close: u64,
    cpus: Vec<CpuState>,
    current: Option<Window>,
    pub windows: Vec<Window>,
    /// Lines that were not instruction lines (QEMU's own messages).
    pub other_lines: u64,
}

/// The CPU and PC of a `Trace N: HOST [CS/PC/FLAGS/CFLAGS] ...` line.
pub fn parse_trace_line(line: &str) -> Option<(usize, u64)> {
    let rest = line.strip_prefix("Trace ")?;
    let (cpu, rest) = rest.split_once(':')?;
    let fields = rest.split_once('[')?.1.split_once(']')?.0;
    let pc = fields.split('/').nth(1)?;
    Some((cpu.trim().parse().ok()?, u64::from_str_radix(pc, 16).ok()?))
}

impl<'a> Tracer<'a> {
    pub fn new(syms: &'a Symbols, open: u64, close: u64) -> Self {
        Tracer {
            syms,
            open,
            close,
            cpus: Vec::new(),
            current: None,
            windows: Vec::new(),
            other_lines: 0,
        }
    }

    pub fn line(&mut self, line: &str) {
        match parse_trace_line(line) {
            Some((cpu, pc)) => self.instruction(cpu, pc),
            None => self.other_lines += 1,
        }
    }

    fn instruction(&mut self, cpu: usize, pc: u64) {
        if self.cpus.len() <= cpu {
            self.cpus.resize(cpu + 1, CpuState::default());
        }
        if pc == self.open && self.current.is_none() {
            self.current = Some(Window {
                opener: cpu,
                counts: HashMap::new(),
            });
            for s in &mut self.cpus {
                s.pal_run = 0;
            }
        } else if pc == self.close && self.current.as_ref().is_some_and(|w| w.opener == cpu) {
            let mut w = self.current.take().expect("open");
            for (c, s) in self.cpus.iter_mut().enumerate() {
                if s.pal_run > 0 {
                    let at = Place::Pal {
                        before: s.pal_before,
                        after: None,
                    };
                    *w.counts.entry((c, at)).or_insert(0) += s.pal_run;
                    s.pal_run = 0;
                }
            }
            self.windows.push(w);
        }
        let pal = pc < self.syms.kernel_start;
        let state = &mut self.cpus[cpu];
        let Some(w) = self.current.as_mut() else {
            if !pal {
                state.last_kernel = self.syms.find(pc);
            }
            return;
        };
        if pal {
            if state.pal_run == 0 {
                state.pal_before = state.last_kernel;
            }
            state.pal_run += 1;
            return;
        }
        let f = self.syms.find(pc);
        if state.pal_run > 0 {
            let at = Place::Pal {
                before: state.pal_before,
                after: f,
            };
            *w.counts.entry((cpu, at)).or_insert(0) += state.pal_run;
            state.pal_run = 0;
        }
        state.last_kernel = f;
        let at = f.map_or(Place::Unknown, Place::Kernel);
        *w.counts.entry((cpu, at)).or_insert(0) += 1;
    }

    /// What a place is called in the report, and the area it counts for.
    pub fn describe(&self, place: Place) -> (String, String) {
        describe(self.syms, place)
    }
}

/// A place's name and its area (the module for kernel code, the kind of
/// entry for PALcode).
pub fn describe(syms: &Symbols, place: Place) -> (String, String) {
    match place {
        Place::Kernel(i) => {
            let name = syms.name(i).to_string();
            (name.clone(), area_of(&name))
        }
        Place::Unknown => ("(unknown)".into(), "(unknown)".into()),
        Place::Pal { before, after } => {
            let b = before.map(|i| syms.name(i));
            let a = after.map(|i| syms.name(i));
            match (b, a) {
                (Some(b), Some(a)) if a.starts_with("ent_") => (
                    format!("PAL: trap entry to {a} (from {b})"),
                    "PAL: trap entry".into(),
                ),
                (Some(b), _) if b.starts_with("pal_") && (a == Some(b) || a.is_none()) => (
                    format!("PAL: {}", b.trim_start_matches("pal_")),
                    format!("PAL: {}", b.trim_start_matches("pal_")),
                ),
                (Some("trap_common"), a) => (
                    format!("PAL: rti (back to {})", a.unwrap_or("?")),
                    "PAL: rti".into(),
                ),
                (b, a) => (
                    format!("PAL: between {} and {}", b.unwrap_or("?"), a.unwrap_or("?")),
                    "PAL: other".into(),
                ),
            }
        }
    }
}

/// The area of a kernel function: its crate and first module
/// (`alphasmp::xcall`, `kernel::ipi`), or `asm` for the assembly's
/// symbols.
fn area_of(name: &str) -> String {
    // Strip a leading `<Type as Trait>::` or generic arguments' paths.
    let path = name.trim_start_matches('<');
    let mut parts = path.split("::");
    match (parts.next(), parts.next()) {
        (Some(c), Some(m)) => {
            let m = m.split(['<', ' ', '>']).next().unwrap_or(m);
            format!("{c}::{m}")
        }
        _ => "asm".into(),
    }
}

/// What to profile.
pub struct Config {
    pub ops: Vec<String>,
    pub smps: Vec<u32>,
    pub wait: String,
    pub samples: u64,
    pub cpu: Option<&'static str>,
    pub top: usize,
}

/// One profiled measurement.
pub struct Profile {
    pub op: String,
    pub smp: u32,
    pub target: String,
    pub ops: u64,
    pub window: Window,
}

/// Boots each (op, CPU count) once with the instruction trace and returns
/// the windows with the operations they held.
pub fn run(cfg: &Config, kernel: &Path) -> Result<Vec<Profile>> {
    let bytes = std::fs::read(kernel).context(|| format!("reading {}", kernel.display()))?;
    let syms = Symbols::from_elf(&bytes)?;
    let open = syms
        .address_of("bench_window_open")
        .ok_or_else(|| err("the kernel has no bench_window_open"))?;
    let close = syms
        .address_of("bench_window_close")
        .ok_or_else(|| err("the kernel has no bench_window_close"))?;
    let mut out = Vec::new();
    for op in &cfg.ops {
        for &smp in &cfg.smps {
            let append = format!(
                "bench={} bench_only={op} bench_busy=off wait={}",
                cfg.samples, cfg.wait
            );
            alphasmp_bootargs::BootConfig::parse(&append)
                .map_err(|e| err(format!("profile: {e}")))?;
            eprintln!("==> profile: {op} on {smp} CPUs ({append})");
            let dir = fifo_dir()?;
            let fifo = dir.join("trace");
            crate::util::output(std::process::Command::new("mkfifo").arg(&fifo), "mkfifo")?;
            let reader = {
                let syms = &syms;
                let fifo = &fifo;
                std::thread::scope(|s| -> Result<(qemu::RunResult, Vec<Window>)> {
                    let h = s.spawn(move || -> Result<Vec<Window>> {
                        let f = std::fs::File::open(fifo)
                            .context(|| format!("opening {}", fifo.display()))?;
                        let mut t = Tracer::new(syms, open, close);
                        let mut r = BufReader::with_capacity(1 << 20, f);
                        let mut line = String::new();
                        loop {
                            line.clear();
                            match r.read_line(&mut line) {
                                Ok(0) => break,
                                Ok(_) => t.line(&line),
                                Err(e) => return Err(err(format!("reading the trace: {e}"))),
                            }
                        }
                        Ok(t.windows)
                    });
                    let spec = RunSpec {
                        kernel,
                        smp,
                        mem: qemu::DEFAULT_MEM_MIB,
                        append: &append,
                        timeout: Duration::from_secs(1800),
                        echo: false,
                        image: None,
                        cpu: CpuModel {
                            name: cfg.cpu,
                            icount: false,
                            count_instructions: true,
                        },
                    };
                    let extra = [
                        "-singlestep".as_ref(),
                        "-d".as_ref(),
                        "exec,nochain".as_ref(),
                        "-D".as_ref(),
                        fifo.as_os_str(),
                    ];
                    let r = qemu::run_with_args(&spec, &extra);
                    if r.is_err() {
                        // Unblock the reader if QEMU never opened the FIFO.
                        let _ = std::fs::OpenOptions::new().write(true).open(fifo);
                    }
                    let windows = h.join().map_err(|_| err("the trace reader panicked"))??;
                    Ok((r?, windows))
                })
            };
            std::fs::remove_dir_all(&dir).ok();
            let (r, windows) = reader?;
            if !r.verdict().is_some_and(|v| v.starts_with("PASS")) {
                return Err(err(format!(
                    "profile boot of {op} on {smp} CPUs failed: {}\n{}",
                    r.describe(),
                    r.output
                )));
            }
            let counts = operations(&r.output);
            if counts.len() != windows.len() {
                return Err(err(format!(
                    "{} result lines but {} trace windows",
                    counts.len(),
                    windows.len()
                )));
            }
            for ((target, ops), window) in counts.into_iter().zip(windows) {
                out.push(Profile {
                    op: op.clone(),
                    smp,
                    target,
                    ops,
                    window,
                });
            }
        }
    }
    Ok(out)
}

/// The operations each result line reports, in order: (target, count).
/// Latency and throughput lines share the tag; a throughput line names its
/// issuers instead of a target.
fn operations(output: &str) -> Vec<(String, u64)> {
    output
        .lines()
        .filter_map(|line| BENCH_RESULT.strip(line))
        .map(|rest| {
            let target = value_of(rest, "target")
                .or_else(|| value_of(rest, "issuers").map(|i| format!("{i} issuing")))
                .unwrap_or_default();
            let n = value_of(rest, "n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (target, n)
        })
        .collect()
}

fn value_of(rest: &str, key: &str) -> Option<String> {
    rest.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

fn fifo_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("alphasmp-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn per_op(n: u64, ops: u64) -> String {
    let x = n as f64 / ops.max(1) as f64;
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// The markdown report of `profiles`.
pub fn report(cfg: &Config, syms: &Symbols, profiles: &[Profile]) -> String {
    let mut s = String::new();
    for p in profiles {
        let cpus = p.window.per_cpu();
        let all: u64 = cpus.values().sum();
        let _ = writeln!(
            s,
            "\n## {} ({} target), {} CPUs, wait={}: {} instructions per operation\n",
            p.op,
            p.target,
            p.smp,
            cfg.wait,
            per_op(all, p.ops)
        );
        let _ = writeln!(
            s,
            "{} operations issued by CPU {}; counted on every CPU between the window's marks.\n",
            p.ops, p.window.opener
        );
        let header = |s: &mut String, first: &str| {
            let _ = write!(s, "| {first} |");
            for c in cpus.keys() {
                let _ = write!(s, " CPU {c} |");
            }
            let _ = writeln!(s, " all |");
            let _ = write!(s, "|---|");
            for _ in cpus.keys() {
                let _ = write!(s, "---:|");
            }
            let _ = writeln!(s, "---:|");
        };
        // By area.
        let mut areas: BTreeMap<String, BTreeMap<usize, u64>> = BTreeMap::new();
        let mut funcs: BTreeMap<String, BTreeMap<usize, u64>> = BTreeMap::new();
        for ((cpu, place), n) in &p.window.counts {
            let (name, area) = describe(syms, *place);
            *areas.entry(area).or_default().entry(*cpu).or_insert(0) += n;
            *funcs.entry(name).or_default().entry(*cpu).or_insert(0) += n;
        }
        let rows = |s: &mut String, map: BTreeMap<String, BTreeMap<usize, u64>>, top: usize| {
            let mut v: Vec<_> = map.into_iter().collect();
            v.sort_by_key(|(name, per)| {
                (std::cmp::Reverse(per.values().sum::<u64>()), name.clone())
            });
            let shown = v.len().min(top);
            for (name, per) in &v[..shown] {
                let _ = write!(s, "| {} |", name.replace('|', "\\|"));
                for c in cpus.keys() {
                    let _ = write!(s, " {} |", per_op(*per.get(c).unwrap_or(&0), p.ops));
                }
                let _ = writeln!(s, " {} |", per_op(per.values().sum(), p.ops));
            }
            if v.len() > shown {
                let rest: u64 = v[shown..]
                    .iter()
                    .map(|(_, per)| per.values().sum::<u64>())
                    .sum();
                let _ = writeln!(
                    s,
                    "| ({} more) |{} {} |",
                    v.len() - shown,
                    " |".repeat(cpus.len()),
                    per_op(rest, p.ops)
                );
            }
        };
        header(&mut s, "area");
        rows(&mut s, areas, usize::MAX);
        let _ = write!(s, "| **total** |");
        for n in cpus.values() {
            let _ = write!(s, " **{}** |", per_op(*n, p.ops));
        }
        let _ = writeln!(s, " **{}** |\n", per_op(all, p.ops));
        header(&mut s, "function");
        rows(&mut s, funcs, cfg.top);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYMS: &[(u64, u64, &str)] = &[
        (0x1000, 0x10, "bench_window_open"),
        (0x1010, 0x10, "bench_window_close"),
        (0x1100, 0x40, "alphasmp::xcall::call_single"),
        (0x1200, 0x10, "pal_swpipl"),
        (0x1300, 0x100, "ent_int"),
        (0x1400, 0x100, "trap_common"),
        (0x1500, 0x80, "kernel::ipi::handle"),
    ];

    fn line(cpu: usize, pc: u64) -> String {
        format!("Trace {cpu}: 0x7f0000001000 [0000000000000000/{pc:016x}/01000001/ff020201] \n")
    }

    #[test]
    fn trace_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_trace_line(
                "Trace 3: 0x7fd3a0000340 [0000000000000000/fffffc00000032a8/01000001/ff020201] "
            ),
            Some((3, 0xfffffc00000032a8))
        );
        assert_eq!(parse_trace_line("Linking TBs 0x1 [0] index 0 -> 0x2"), None);
        assert_eq!(parse_trace_line("Trace x: [a/b]"), None);
    }

    #[test]
    fn counts_land_on_functions_and_pal_runs_on_their_neighbours() {
        let syms = Symbols::from_list(SYMS);
        let mut t = Tracer::new(&syms, 0x1000, 0x1010);
        let mut feed = |cpu, pc| t.line(&line(cpu, pc));
        // Before the window: not counted, but CPU 1's last function is noted.
        feed(1, 0x1500);
        feed(0, 0x1100);
        // The window opens on CPU 0.
        feed(0, 0x1000);
        feed(0, 0x1104);
        feed(0, 0x1200); // pal_swpipl wrapper
        feed(0, 0x200); // PALcode, 3 instructions
        feed(0, 0x204);
        feed(0, 0x208);
        feed(0, 0x1204); // back in the wrapper
        // CPU 1 takes an interrupt: PAL entry (2), the stub, rti (1).
        feed(1, 0x100);
        feed(1, 0x104);
        feed(1, 0x1300);
        feed(1, 0x1400);
        feed(1, 0x300);
        feed(1, 0x1504);
        // CPU 1 running the close address does not close CPU 0's window.
        feed(1, 0x1010);
        feed(0, 0x1010);
        // After the window: not counted.
        feed(0, 0x1100);
        assert_eq!(t.windows.len(), 1);
        let w = &t.windows[0];
        assert_eq!(w.opener, 0);
        let get = |cpu, place| *w.counts.get(&(cpu, place)).unwrap_or(&0);
        assert_eq!(get(0, Place::Kernel(0)), 1); // the open mark itself
        assert_eq!(get(0, Place::Kernel(2)), 1);
        assert_eq!(get(0, Place::Kernel(3)), 2);
        let swpipl = Place::Pal {
            before: Some(3),
            after: Some(3),
        };
        assert_eq!(get(0, swpipl), 3);
        assert_eq!(describe(&syms, swpipl).1, "PAL: swpipl");
        let entry = Place::Pal {
            before: Some(6),
            after: Some(4),
        };
        assert_eq!(get(1, entry), 2);
        assert_eq!(describe(&syms, entry).1, "PAL: trap entry");
        let rti = Place::Pal {
            before: Some(5),
            after: Some(6),
        };
        assert_eq!(get(1, rti), 1);
        assert_eq!(describe(&syms, rti).1, "PAL: rti");
        assert_eq!(get(1, Place::Kernel(1)), 1);
        assert_eq!(w.per_cpu(), BTreeMap::from([(0, 7), (1, 7)]));
    }

    #[test]
    fn areas_are_crate_and_module() {
        assert_eq!(
            area_of("alphasmp::xcall::Smp<P, 64>::call_single"),
            "alphasmp::xcall"
        );
        assert_eq!(
            area_of("<kernel::platform::AlphaPlatform as alphasmp::platform::Platform>::send_ipi"),
            "kernel::platform"
        );
        assert_eq!(area_of("trap_common"), "asm");
    }

    #[test]
    fn result_lines_give_the_operations_of_each_window() {
        let out = "bench: 2 CPU(s)\nbench-result: name=call_single_wait target=idle cpus=2 n=1000 median_ns=1 p90_ns=1 p99_ns=1 min_ns=1 max_ns=1\n";
        assert_eq!(operations(out), vec![("idle".to_string(), 1000)]);
        let out = "bench-result: name=call_storm issuers=2 cpus=2 n=10000 elapsed_ns=5 per_s=9\n";
        assert_eq!(operations(out), vec![("2 issuing".to_string(), 10000)]);
    }
}
