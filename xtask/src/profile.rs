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
//!
//! Linux's boot is too long to trace instruction by instruction (over 30
//! minutes), so its trace starts at a console line shortly before its
//! benchmark ([`System::trace_from`]): QEMU runs with unchained blocks and
//! no log until then, and the line makes xtask stop the machine through
//! QEMU's monitor, switch it to one instruction per block with the trace
//! on, and let it go on. Every line counted in a window must be a
//! one-instruction block, or the profile fails (the trace started late).

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
    /// Entries into each kernel function (its first instruction run).
    pub calls: HashMap<(usize, usize), u64>,
    /// Instructions per kernel address, per CPU (`--pcs`).
    pub pcs: HashMap<(usize, u64), u64>,
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
    last_pc: u64,
    /// The last PC in kernel code (looked up only when a PAL run starts).
    last_kernel_pc: u64,
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
    /// Lines inside a window whose block held more than one instruction
    /// (so the counts would be short): must stay 0.
    pub multi_instruction: u64,
}

/// The CPU and PC of a `Trace N: HOST [CS/PC/FLAGS/CFLAGS] ...` line
/// (byte by byte: a profile reads a few hundred million of them).
pub fn parse_trace_line(line: &str) -> Option<(usize, u64)> {
    let b = line.as_bytes().strip_prefix(b"Trace ")?;
    let mut i = 0;
    let mut cpu = 0usize;
    while i < b.len() && b[i].is_ascii_digit() {
        cpu = cpu * 10 + usize::from(b[i] - b'0');
        i += 1;
    }
    if i == 0 || b.get(i) != Some(&b':') {
        return None;
    }
    let open = i + b[i..].iter().position(|&c| c == b'[')?;
    let slash = open + b[open..].iter().position(|&c| c == b'/')?;
    let mut pc = 0u64;
    let mut digits = 0;
    for &c in &b[slash + 1..] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            b'/' => break,
            _ => return None,
        };
        pc = (pc << 4) | u64::from(d);
        digits += 1;
    }
    (digits > 0 && digits <= 16).then_some((cpu, pc))
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
            multi_instruction: 0,
        }
    }

    pub fn line(&mut self, line: &str) {
        match parse_trace_line(line) {
            Some((cpu, pc)) => {
                self.instruction(cpu, pc);
                if self.current.is_some() && !one_instruction(line) {
                    self.multi_instruction += 1;
                }
            }
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
                calls: HashMap::new(),
                pcs: HashMap::new(),
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
                state.last_kernel_pc = pc;
                state.last_kernel = None;
            }
            state.last_pc = pc;
            return;
        };
        if pal {
            if state.pal_run == 0 {
                state.pal_before = state
                    .last_kernel
                    .or_else(|| self.syms.find(state.last_kernel_pc));
            }
            state.pal_run += 1;
            state.last_pc = pc;
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
        state.last_kernel_pc = pc;
        // An entry: the first instruction, or the one after GCC's two-word
        // gp load (local callers branch past it) when not reached from it.
        if let Some(i) = f {
            let start = self.syms.funcs[i].0;
            if pc == start || (pc == start + 8 && state.last_pc != start + 4) {
                *w.calls.entry((cpu, i)).or_insert(0) += 1;
            }
        }
        state.last_pc = pc;
        let at = f.map_or(Place::Unknown, Place::Kernel);
        *w.counts.entry((cpu, at)).or_insert(0) += 1;
        *w.pcs.entry((cpu, pc)).or_insert(0) += 1;
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
        // Our assembly, and every function of a C kernel (Linux).
        _ => "unmangled (asm, C)".into(),
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
    /// Count translated blocks entered instead of instructions (`--blocks`):
    /// QEMU runs its usual blocks, unchained, and logs one line per block
    /// it enters. Every block ends at a jump, a call or return, a PAL call
    /// or its return, an IPL change (`swpipl` ends its block so that a
    /// pending interrupt is taken) or a page's end, and under TCG entering
    /// one that is not chained to the one before (a return, an indirect
    /// jump, a PAL call or return, an IPL change) costs a lookup at run
    /// time, so this counts where the emulator's own overhead goes, which
    /// the instruction count does not see (docs/cross-calls.md §11).
    pub blocks: bool,
    /// Measure busy targets too (`--busy`): each operation then also runs
    /// with its target spinning in a loop, as the benchmark's busy rows do.
    /// The target's spin is waiting, so only the issuing CPU's column and
    /// the target's handler functions say what the path costs.
    pub busy: bool,
    /// Operations per Linux boot: its waiters spin, and under `-icount`
    /// a spinning vCPU runs until its slice ends (up to the next timer,
    /// about a million instructions) before the target runs, so each of
    /// its operations traces that many lines.
    pub linux_samples: u64,
}

/// A kernel to profile: this one, or the Linux built for the comparison.
pub struct System<'a> {
    /// `alphasmp` or `Linux 6.12.118`.
    pub name: String,
    pub elf: &'a Path,
    /// The boot arguments for one measurement.
    pub append: Box<dyn Fn(&str) -> String + 'a>,
    /// None: traced instruction by instruction from power-on. Some(line):
    /// run untraced until the console prints `line`, then stopped, switched
    /// to one instruction per block with the trace on (QEMU's monitor:
    /// `stop`, `singlestep on`, `log exec,nochain`, `cont`), for a system
    /// whose boot is too long to trace (Linux's: over 30 minutes).
    pub trace_from: Option<&'static str>,
}

impl<'a> System<'a> {
    /// This kernel, with `cfg`'s wait policy.
    pub fn ours(elf: &'a Path, cfg: &Config) -> Self {
        let (samples, wait) = (cfg.samples, cfg.wait.clone());
        let busy = if cfg.busy { "on" } else { "off" };
        System {
            name: "alphasmp".into(),
            elf,
            append: Box::new(move |op| {
                // Idle targets halt: a halt poll's instructions are
                // waiting, not the cost of the path.
                format!(
                    "bench={samples} bench_only={op} bench_busy={busy} wait={wait} idle_poll_us=0"
                )
            }),
            trace_from: None,
        }
    }

    /// The Linux of `cargo xtask bench --linux`, its built-in benchmark
    /// limited to `op`.
    pub fn linux(l: &'a crate::linux::Linux, cfg: &Config) -> Self {
        let samples = cfg.linux_samples;
        System {
            name: format!("Linux {}", l.version),
            elf: &l.vmlinux,
            append: Box::new(move |op| {
                format!("{} alphasmp_bench_only={op}", crate::linux::append(samples))
            }),
            // The last line before the built-in benchmark starts: far
            // enough from the window for the host to stop the machine
            // first (checked: every line counted in a window must be a
            // one-instruction block).
            trace_from: Some(LINUX_TRACE_FROM),
        }
    }
}

/// The console line of Linux's boot at which its trace starts.
pub const LINUX_TRACE_FROM: &str = "serial8250: ttyS1";

/// Whether a `Trace` line's block is one instruction (its CFLAGS' count
/// field is 1: `-singlestep`, or the monitor's `singlestep on`).
pub fn one_instruction(line: &str) -> bool {
    let Some(end) = line.find(']') else {
        return false;
    };
    let Some(slash) = line[..end].rfind('/') else {
        return false;
    };
    u32::from_str_radix(&line[slash + 1..end], 16).is_ok_and(|cflags| cflags & 0x1ff == 1)
}

/// One profiled measurement, with names resolved.
pub struct Profile {
    pub system: String,
    pub op: String,
    pub smp: u32,
    pub target: String,
    pub ops: u64,
    pub opener: usize,
    /// Instructions per CPU.
    pub per_cpu: BTreeMap<usize, u64>,
    /// Instructions per place (function or PAL run), per CPU.
    pub functions: BTreeMap<String, BTreeMap<usize, u64>>,
    /// Instructions per area, per CPU.
    pub areas: BTreeMap<String, BTreeMap<usize, u64>>,
    /// Entries per function, all CPUs.
    pub calls: BTreeMap<String, u64>,
    /// Instructions per kernel address, per CPU: (CPU, address) -> the
    /// count and the function the address is in.
    pub pcs: BTreeMap<(usize, u64), (u64, String)>,
}

impl Profile {
    fn new(
        system: &str,
        op: &str,
        smp: u32,
        target: String,
        ops: u64,
        w: &Window,
        syms: &Symbols,
    ) -> Self {
        let mut p = Profile {
            system: system.to_string(),
            op: op.to_string(),
            smp,
            target,
            ops,
            opener: w.opener,
            per_cpu: w.per_cpu(),
            functions: BTreeMap::new(),
            areas: BTreeMap::new(),
            calls: BTreeMap::new(),
            pcs: w
                .pcs
                .iter()
                .map(|(k, n)| {
                    let f = syms.find(k.1).map_or("?", |i| syms.name(i));
                    (*k, (*n, f.to_string()))
                })
                .collect(),
        };
        for ((cpu, place), n) in &w.counts {
            let (name, area) = describe(syms, *place);
            *p.areas.entry(area).or_default().entry(*cpu).or_insert(0) += n;
            *p.functions
                .entry(name)
                .or_default()
                .entry(*cpu)
                .or_insert(0) += n;
        }
        for ((_, i), n) in &w.calls {
            *p.calls.entry(syms.name(*i).to_string()).or_insert(0) += n;
        }
        p
    }

    /// Instructions per operation, all CPUs.
    pub fn per_op(&self) -> f64 {
        self.per_cpu.values().sum::<u64>() as f64 / self.ops.max(1) as f64
    }

    /// One line per CPU and kernel address run in the window: CPU,
    /// address, instructions per operation, function (for `addr2line` or
    /// a disassembly beside it), in address order per CPU.
    pub fn pcs_text(&self) -> String {
        let mut s = format!(
            "# {} {} ({}) on {} CPUs: cpu address per_op function\n",
            self.system, self.op, self.target, self.smp
        );
        for ((cpu, pc), (n, f)) in &self.pcs {
            s.push_str(&format!(
                "{cpu} {pc:#x} {:.2} {f}\n",
                *n as f64 / self.ops.max(1) as f64
            ));
        }
        s
    }
}

/// Boots each (op, CPU count) of each system once with the instruction
/// trace and returns its windows.
pub fn run(cfg: &Config, systems: &[System<'_>]) -> Result<Vec<Profile>> {
    let mut out = Vec::new();
    for op in &cfg.ops {
        for &smp in &cfg.smps {
            for sys in systems {
                out.extend(profile_one(cfg, sys, op, smp)?);
            }
        }
    }
    Ok(out)
}

fn profile_one(cfg: &Config, sys: &System<'_>, op: &str, smp: u32) -> Result<Vec<Profile>> {
    let bytes = std::fs::read(sys.elf).context(|| format!("reading {}", sys.elf.display()))?;
    let syms = Symbols::from_elf(&bytes)?;
    let mark = |name: &str| {
        syms.address_of(name)
            .ok_or_else(|| err(format!("{}: no function {name}", sys.elf.display())))
    };
    let (open, close) = (mark("bench_window_open")?, mark("bench_window_close")?);
    let append = (sys.append)(op);
    eprintln!("==> profile: {op} on {smp} CPUs, {} ({append})", sys.name);
    let dir = fifo_dir()?;
    let fifo = dir.join("trace");
    crate::util::output(std::process::Command::new("mkfifo").arg(&fifo), "mkfifo")?;
    let syms_ref = &syms;
    let fifo_ref = &fifo;
    let dir_ref = &dir;
    let result = std::thread::scope(|s| -> Result<(qemu::RunResult, Vec<Window>)> {
        let h = s.spawn(move || -> Result<(Vec<Window>, u64)> {
            let f = std::fs::File::open(fifo_ref)
                .context(|| format!("opening {}", fifo_ref.display()))?;
            let mut t = Tracer::new(syms_ref, open, close);
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
            Ok((t.windows, t.multi_instruction))
        });
        let spec = RunSpec {
            kernel: sys.elf,
            smp,
            mem: qemu::DEFAULT_MEM_MIB,
            append: &append,
            timeout: Duration::from_secs(3600),
            echo: false,
            image: None,
            cpu: CpuModel {
                name: cfg.cpu,
                icount: false,
                count_instructions: true,
            },
        };
        let monitor = format!(
            "unix:{},server=on,wait=off",
            dir_ref.join("monitor").display()
        );
        let extra: Vec<&std::ffi::OsStr> = match sys.trace_from {
            None if cfg.blocks => vec![
                "-d".as_ref(),
                "exec,nochain".as_ref(),
                "-D".as_ref(),
                fifo_ref.as_os_str(),
            ],
            None => vec![
                "-singlestep".as_ref(),
                "-d".as_ref(),
                "exec,nochain".as_ref(),
                "-D".as_ref(),
                fifo_ref.as_os_str(),
            ],
            // Unchained blocks from the start: a block is looked up again
            // at every jump, and the lookup's key holds the single-step
            // flag, so `singlestep on` applies at the next jump.
            Some(_) => vec![
                "-d".as_ref(),
                "nochain".as_ref(),
                "-D".as_ref(),
                fifo_ref.as_os_str(),
                "-monitor".as_ref(),
                monitor.as_ref(),
            ],
        };
        let mut started = sys.trace_from.is_none();
        let mut start_error = None;
        let mut watch = |line: &str| {
            if started || !sys.trace_from.is_some_and(|t| line.contains(t)) {
                return;
            }
            started = true;
            if let Err(e) = start_trace(&dir_ref.join("monitor"), cfg.blocks) {
                start_error = Some(e);
            }
        };
        let r = qemu::run_watching(&spec, &extra, &mut watch);
        // Unblock the reader if QEMU never opened the FIFO (it failed, or
        // the trace never started); without a reader left, no effect.
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo_ref);
        }
        let (windows, multi) = h.join().map_err(|_| err("the trace reader panicked"))??;
        if let Some(e) = start_error {
            return Err(e);
        }
        if !started {
            return Err(err(format!(
                "{}: the console never printed {:?}, where the trace starts",
                sys.name,
                sys.trace_from.unwrap_or_default()
            )));
        }
        if multi > 0 && !cfg.blocks {
            return Err(err(format!(
                "{}: {multi} trace lines inside the windows were blocks of several \
                 instructions, so the counts would be short (the trace started too late)",
                sys.name
            )));
        }
        Ok((r?, windows))
    });
    std::fs::remove_dir_all(&dir).ok();
    let (r, windows) = result?;
    if !r.verdict().is_some_and(|v| v.starts_with("PASS")) {
        return Err(err(format!(
            "profile boot of {op} on {smp} CPUs ({}) failed: {}\n{}",
            sys.name,
            r.describe(),
            r.output
        )));
    }
    let counts = operations(&r.output);
    if counts.len() != windows.len() {
        return Err(err(format!(
            "{}: {} result lines but {} trace windows",
            sys.name,
            counts.len(),
            windows.len()
        )));
    }
    Ok(counts
        .into_iter()
        .zip(windows)
        .map(|((target, ops), w)| Profile::new(&sys.name, op, smp, target, ops, &w, &syms))
        .collect())
}

/// Stops the machine, switches QEMU to one instruction per block (unless
/// `blocks`: blocks as they are) with the trace on, and lets it go on
/// (through its monitor socket).
fn start_trace(socket: &Path, blocks: bool) -> Result<()> {
    use std::io::Write as _;
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .context(|| format!("connecting to QEMU's monitor at {}", socket.display()))?;
    let commands: &[&str] = if blocks {
        &["stop", "log exec,nochain", "cont"]
    } else {
        &["stop", "singlestep on", "log exec,nochain", "cont"]
    };
    for &c in commands {
        s.write_all(format!("{c}\n").as_bytes())
            .context(|| format!("monitor command {c}"))?;
        // The monitor takes one command per line; a pause keeps them from
        // being read before the previous one ran.
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
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

/// A directory of its own for one profile boot's FIFO: per process and per
/// boot, since one process (the test suite) may run several at once.
fn fifo_dir() -> Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("alphasmp-profile-{}-{n}", std::process::id()));
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

/// What a profile counts: `instructions`, or `blocks` ([`Config::blocks`]).
pub fn unit(cfg: &Config) -> &'static str {
    if cfg.blocks { "blocks" } else { "instructions" }
}

/// The markdown report of `profiles`: a summary table (instructions, or
/// blocks, per operation, per system), then each profile by area and by
/// function.
pub fn report(cfg: &Config, profiles: &[Profile]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n| measurement | CPUs | system | {} per operation | issuing CPU | other CPUs |",
        unit(cfg)
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|");
    for p in profiles {
        let mine = *p.per_cpu.get(&p.opener).unwrap_or(&0);
        let all: u64 = p.per_cpu.values().sum();
        let _ = writeln!(
            s,
            "| {} ({}) | {} | {} | {} | {} | {} |",
            p.op,
            p.target,
            p.smp,
            system_label(cfg, p),
            per_op(all, p.ops),
            per_op(mine, p.ops),
            per_op(all - mine, p.ops)
        );
    }
    for p in profiles {
        let cpus = &p.per_cpu;
        let all: u64 = cpus.values().sum();
        let _ = writeln!(
            s,
            "\n## {} ({} target), {} CPUs, {}: {} {} per operation\n",
            p.op,
            p.target,
            p.smp,
            system_label(cfg, p),
            per_op(all, p.ops),
            unit(cfg)
        );
        let _ = writeln!(
            s,
            "{} operations issued by CPU {}; counted on every CPU between the window's marks.\n",
            p.ops, p.opener
        );
        let header = |s: &mut String, first: &str, with_calls: bool| {
            let _ = write!(s, "| {first} |");
            for c in cpus.keys() {
                let _ = write!(s, " CPU {c} |");
            }
            let _ = write!(s, " all |");
            if with_calls {
                let _ = write!(s, " calls |");
            }
            let _ = writeln!(s);
            let _ = write!(s, "|---|");
            for _ in cpus.keys() {
                let _ = write!(s, "---:|");
            }
            let _ = write!(s, "---:|");
            if with_calls {
                let _ = write!(s, "---:|");
            }
            let _ = writeln!(s);
        };
        let rows = |s: &mut String,
                    map: &BTreeMap<String, BTreeMap<usize, u64>>,
                    top: usize,
                    calls: Option<&BTreeMap<String, u64>>| {
            let mut v: Vec<_> = map.iter().collect();
            v.sort_by_key(|(name, per)| {
                (
                    std::cmp::Reverse(per.values().sum::<u64>()),
                    (*name).clone(),
                )
            });
            let shown = v.len().min(top);
            for (name, per) in &v[..shown] {
                let _ = write!(s, "| {} |", name.replace('|', "\\|"));
                for c in cpus.keys() {
                    let _ = write!(s, " {} |", per_op(*per.get(c).unwrap_or(&0), p.ops));
                }
                let _ = write!(s, " {} |", per_op(per.values().sum(), p.ops));
                if let Some(calls) = calls {
                    let _ = write!(s, " {} |", per_op(*calls.get(*name).unwrap_or(&0), p.ops));
                }
                let _ = writeln!(s);
            }
            if v.len() > shown {
                let rest: u64 = v[shown..]
                    .iter()
                    .map(|(_, per)| per.values().sum::<u64>())
                    .sum();
                let _ = write!(
                    s,
                    "| ({} more) |{} {} |",
                    v.len() - shown,
                    " |".repeat(cpus.len()),
                    per_op(rest, p.ops)
                );
                if calls.is_some() {
                    let _ = write!(s, " |");
                }
                let _ = writeln!(s);
            }
        };
        header(&mut s, "area", false);
        rows(&mut s, &p.areas, usize::MAX, None);
        let _ = write!(s, "| **total** |");
        for n in cpus.values() {
            let _ = write!(s, " **{}** |", per_op(*n, p.ops));
        }
        let _ = writeln!(s, " **{}** |\n", per_op(all, p.ops));
        let _ = writeln!(
            s,
            "{} per operation by function on each CPU, and calls per operation \
             (entries at the function's first instruction, all CPUs).\n",
            if cfg.blocks {
                "Blocks entered"
            } else {
                "Instructions"
            }
        );
        header(&mut s, "function", true);
        rows(&mut s, &p.functions, cfg.top, Some(&p.calls));
    }
    s
}

fn system_label(cfg: &Config, p: &Profile) -> String {
    if p.system == "alphasmp" {
        format!("alphasmp, wait={}", cfg.wait)
    } else {
        p.system.clone()
    }
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
        assert_eq!(
            parse_trace_line("Trace 12: 0x1 [0/ab/0/0]"),
            Some((12, 0xab))
        );
        assert_eq!(parse_trace_line("Trace 1: 0x1 [0/xyz/0/0]"), None);
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
        // A local call into call_single past its gp load (+8) is an entry;
        // falling through from +4 to +8 is not.
        feed(1, 0x1108);
        feed(1, 0x1100);
        feed(1, 0x1104);
        feed(1, 0x1108);
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
        assert_eq!(w.per_cpu(), BTreeMap::from([(0, 7), (1, 11)]));
        assert_eq!(w.calls.get(&(1, 2)), Some(&2));
        // Entries: the open mark and pal_swpipl on CPU 0 (0x1104 and 0x1204
        // are not first instructions); ent_int and trap_common on CPU 1.
        assert_eq!(w.calls.get(&(0, 3)), Some(&1));
        assert_eq!(w.calls.get(&(0, 2)), None);
        assert_eq!(w.calls.get(&(1, 4)), Some(&1));
        assert_eq!(w.calls.get(&(1, 5)), Some(&1));
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
        assert_eq!(area_of("trap_common"), "unmangled (asm, C)");
    }

    #[test]
    fn only_one_instruction_blocks_count() {
        // QEMU 7.2's lines: CFLAGS' low 9 bits are the block's instruction
        // limit, 1 under -singlestep or the monitor's `singlestep on`.
        let one = "Trace 0: 0x7fef48d11440 [0000000000000000/fffffc000031d1b4/01000000/ff020201] bench_window_open";
        let many = "Trace 0: 0x7fef48d11440 [0000000000000000/fffffc000031d1b4/01000000/ff020000] bench_window_open";
        assert!(one_instruction(one));
        assert!(!one_instruction(many));
        assert!(!one_instruction("Trace 0: no brackets"));
        // Inside a window a block of several instructions is counted as a
        // fault of the trace; outside, not.
        let syms = Symbols::from_list(&[
            (0x1000, 0x10, "bench_window_open"),
            (0x1010, 0x10, "bench_window_close"),
        ]);
        let mut t = Tracer::new(&syms, 0x1000, 0x1010);
        let line = |pc: u64, cflags: &str| {
            format!("Trace 0: 0x7f [0000000000000000/{pc:016x}/01000000/{cflags}] f")
        };
        t.line(&line(0x1010, "ff020000"));
        t.line(&line(0x1000, "ff020201"));
        t.line(&line(0x1004, "ff020000"));
        t.line(&line(0x1010, "ff020201"));
        assert_eq!(t.windows.len(), 1);
        assert_eq!(t.multi_instruction, 1);
    }

    #[test]
    fn result_lines_give_the_operations_of_each_window() {
        let out = "bench: 2 CPU(s)\nbench-result: name=call_single_wait target=idle cpus=2 n=1000 median_ns=1 p90_ns=1 p99_ns=1 min_ns=1 max_ns=1\n";
        assert_eq!(operations(out), vec![("idle".to_string(), 1000)]);
        let out = "bench-result: name=call_storm issuers=2 cpus=2 n=10000 elapsed_ns=5 per_s=9\n";
        assert_eq!(operations(out), vec![("2 issuing".to_string(), 10000)]);
    }

    #[test]
    fn busy_asks_the_kernel_for_busy_targets_too() {
        let mut cfg = Config {
            ops: vec!["call_single_wait".into()],
            smps: vec![2],
            wait: "spin".into(),
            samples: 100,
            cpu: None,
            top: 5,
            blocks: false,
            busy: false,
            linux_samples: 1,
        };
        let elf = Path::new("kernel");
        let append = |cfg: &Config| (System::ours(elf, cfg).append)("call_single_wait");
        let idle = append(&cfg);
        assert!(
            idle.contains(" bench_busy=off ") && idle.contains(" wait=spin "),
            "{idle}"
        );
        cfg.busy = true;
        let busy = append(&cfg);
        assert!(busy.contains(" bench_busy=on "), "{busy}");
        let parsed = alphasmp_bootargs::BootConfig::parse(&busy).map(|c| c.bench_busy);
        assert!(matches!(parsed, Ok(true)), "{busy}: {parsed:?}");
    }
}
