//! Boot arguments: `key=value` words from the kernel command line (SRM's
//! `boot -flags`, QEMU's `-append`), parsed into a typed [`BootConfig`].
//!
//! Every key is one entry of [`KEYS`]: its name, the values it takes, its
//! default, what it does, where its effect lands in the kernel, an example
//! value, and the function that sets the configuration from a value. The
//! parser, the refusal's list of keys, [`BootConfig::defaults`] and the
//! README's table ([`markdown_table`], checked by a host test) all come
//! from that table, so a key cannot be half added: a host test requires
//! every key's example to change the configuration and every key to be in
//! the README.
//!
//! An unknown key, a word without `=`, a repeated key or a bad value is an
//! error naming the word: the kernel prints it on one line and ends the run
//! with a failure status, so a typo can never silently change what a run
//! measured.

#![cfg_attr(not(test), no_std)]

use core::fmt;

use alphasmp::cpumask::CpuMask;

pub mod experiment;
pub mod lines;

/// One boot argument.
pub struct Key {
    pub name: &'static str,
    /// The values it takes, as the README shows them.
    pub values: &'static str,
    /// Its default as a value [`Key::set`] takes; None: off (or "all")
    /// unless given.
    pub default: Option<&'static str>,
    /// What it does.
    pub help: &'static str,
    /// Where its effect lands in the kernel.
    pub lands: &'static str,
    /// A value other than the default: the host tests require it to
    /// change the configuration.
    pub example: &'static str,
    /// Sets the configuration from a value, or says what was expected.
    pub set: for<'a> fn(&mut BootConfig<'a>, &'a str) -> Result<(), &'static str>,
}

/// The deliberate faults the kernel can raise (each must end in a report and
/// a failure status, never a hang).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// CALL_PAL bpt: instruction fault entry.
    Breakpoint,
    /// An unimplemented PAL call: instruction fault entry (OPCDEC).
    Illegal,
    /// `addqv` overflow: arithmetic trap entry.
    Overflow,
    /// Load from an unmapped address: memory-management fault entry.
    Unmapped,
    /// Misaligned quadword load: unaligned-access entry.
    Unaligned,
    /// `callsys` from kernel mode.
    Callsys,
    /// A Rust panic on a secondary CPU.
    Panic,
    /// A panic on a secondary CPU while CPU 0 sits at IPL 7, where the
    /// stop IPI cannot reach it.
    PanicStuck,
    /// A panic whose way out faults again: the illegal instruction is
    /// raised a second time while the panicking CPU stops the others.
    FaultWhileEnding,
    /// A load from a physical address nothing answers: a machine check.
    Mchk,
    /// The same load inside an SRM console call, with the console's locks
    /// held by the faulting CPU (`console=srm`): its report must still come
    /// out, not wait for locks its own CPU holds.
    MchkInConsole,
}

impl Fault {
    pub const NAMES: &'static [(&'static str, Fault)] = &[
        ("none", Fault::None),
        ("breakpoint", Fault::Breakpoint),
        ("illegal", Fault::Illegal),
        ("overflow", Fault::Overflow),
        ("unmapped", Fault::Unmapped),
        ("unaligned", Fault::Unaligned),
        ("callsys", Fault::Callsys),
        ("panic", Fault::Panic),
        ("panic_stuck", Fault::PanicStuck),
        ("ending", Fault::FaultWhileEnding),
        ("mchk", Fault::Mchk),
        ("mchk_in_console", Fault::MchkInConsole),
    ];

    /// The boot-argument spelling.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// Emulated faults of the IPI path (see the README's matrix section).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Inject {
    /// An IPI sent to a CPU inside an interrupt handler at IPL 7 is dropped
    /// (the mailbox bits stay set), as patch 2/3 reports for EV7/IO7.
    pub edge_loss: bool,
    /// Synchronous callers wait with every interrupt masked (IPL 7), the
    /// "spin_lock_irqsave callers" of patch 1/3.
    pub masked_wait: bool,
    /// An IPI sent to a CPU whose IPL is 7 for any reason (inside an
    /// interrupt handler, or a waiter napping or spinning with interrupts
    /// masked) is dropped: the lost edge keyed on the IPL, not on being in
    /// a handler.
    pub edge_loss_masked: bool,
}

impl Inject {
    pub const NAMES: &'static [(&'static str, Inject)] = &[
        (
            "none",
            Inject {
                edge_loss: false,
                masked_wait: false,
                edge_loss_masked: false,
            },
        ),
        (
            "edge_loss",
            Inject {
                edge_loss: true,
                masked_wait: false,
                edge_loss_masked: false,
            },
        ),
        (
            "masked_wait",
            Inject {
                edge_loss: false,
                masked_wait: true,
                edge_loss_masked: false,
            },
        ),
        (
            "both",
            Inject {
                edge_loss: true,
                masked_wait: true,
                edge_loss_masked: false,
            },
        ),
        (
            "edge_loss_masked",
            Inject {
                edge_loss: false,
                masked_wait: false,
                edge_loss_masked: true,
            },
        ),
        (
            "both_masked",
            Inject {
                edge_loss: false,
                masked_wait: true,
                edge_loss_masked: true,
            },
        ),
    ];
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, i)| *i == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// `console=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConsoleArg {
    #[default]
    Auto,
    /// The SRM Console Callback Routines (PUTS).
    Srm,
    /// The 16550 UART at ISA port 0x3f8.
    Uart,
}

impl ConsoleArg {
    pub const NAMES: &'static [(&'static str, ConsoleArg)] = &[
        ("auto", ConsoleArg::Auto),
        ("srm", ConsoleArg::Srm),
        ("uart", ConsoleArg::Uart),
    ];
}

/// `clock=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClockArg {
    /// The periodic type-1 interrupt every real console delivers (RTC
    /// programmed on Tsunami-class machines), divided down to `tick_hz`.
    #[default]
    Periodic,
    /// QEMU's private per-CPU one-shot alarm (`cserve` 6).
    Alarm,
}

impl ClockArg {
    pub const NAMES: &'static [(&'static str, ClockArg)] =
        &[("periodic", ClockArg::Periodic), ("alarm", ClockArg::Alarm)];
}

/// `wait=`: how a CPU waits for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WaitArg {
    /// Spin, re-checking (Linux's csd_lock_wait).
    Spin,
    /// Nap in wtint at IPL 7 until an interrupt; whoever ends the wait
    /// wakes the napper with an IPI, and the clock bounds every nap.
    #[default]
    Nap,
    /// Per wait: spin while the wait is young and the awake CPUs fit the
    /// machine (`spin_cpus`), else nap (`alphasmp::xcall::Smp::spins`).
    Adaptive,
    /// Per boot: a probe once the CPUs are online tells whether each has a
    /// core of its own (`alphasmp::hostcores`): then `Spin`, else
    /// `Adaptive`.
    Auto,
}

impl WaitArg {
    pub const NAMES: &'static [(&'static str, WaitArg)] = &[
        ("spin", WaitArg::Spin),
        ("nap", WaitArg::Nap),
        ("adaptive", WaitArg::Adaptive),
        ("auto", WaitArg::Auto),
    ];
}

/// With `wait=adaptive` and `nap_after_us=0`, how long a wait spins at
/// most: long enough for a call to a running or idle CPU on 2 or 4 vCPUs
/// (5 to 15 us), short enough that a wait among more vCPUs than host cores
/// gives its core back soon (README "Speed": 20 us measured best of 20,
/// 50 and 100).
pub const ADAPTIVE_SPIN_US: u64 = 20;

/// With `wait=adaptive` and `spin_floor_us` not given, the least a CPU's
/// learned spin budget falls to (`alphasmp::xcall::learn_budget`): about
/// two round trips of a call to a running CPU under QEMU (README "Speed":
/// a fixed 5 us budget measured best of 1, 5, 10 and 20 us for the 4-CPU
/// storm, and worst of them for the 2-CPU one).
pub const ADAPTIVE_SPIN_FLOOR_US: u64 = 5;

/// With `wait=adaptive` and `spin_idle_us` not given, how long a wait for
/// a CPU that slept in its idle loop when called spins before it naps
/// (`alphasmp::xcall::Policy::spin_idle`): such a CPU needs a host core
/// only to wake, run the call and sleep again, and the waiter's own nap
/// would add a second wake (README "Speed": in interleaved boots the
/// 4-CPU idle `on_each_cpu` took 41 to 45 us with 320 us against 53
/// without the case, 12 rounds; 80 and 20 us measured no better than 320
/// in shorter runs).
pub const ADAPTIVE_SPIN_IDLE_US: u64 = 320;

/// The benchmark's measurements, in the order it runs them: the latency
/// measurements (`bench-result:` lines), then the two throughput ones. The
/// kernel's `run::bench` names its measurements from this table, and
/// `bench_only=` takes one of these names.
pub const BENCH_OPS: &[&str] = &[
    "ipi_rtt",
    "call_single_wait",
    "call_single_nowait",
    "on_each_cpu_wait",
    "flush_tlb_all",
    "flush_tlb_mm",
    "flush_tlb_mm_unused",
    "flush_tlb_page",
    "flush_icache",
    "free_proved",
    "free_always",
    "free_never",
    "free_proved_local",
    "free_always_local",
    "walk_own",
    "walk_foreign",
    "shootdown_throughput",
    "call_storm",
];

/// What `bench_only=` expected (every name of [`BENCH_OPS`]; a host test
/// keeps the two together).
const BENCH_OPS_EXPECTED: &str = "all, or one of ipi_rtt, call_single_wait, call_single_nowait, on_each_cpu_wait, flush_tlb_all, flush_tlb_mm, flush_tlb_mm_unused, flush_tlb_page, flush_icache, free_proved, free_always, free_never, free_proved_local, free_always_local, walk_own, walk_foreign, shootdown_throughput, call_storm";

/// The spelling of `value` in a name table.
pub fn name_of<T: PartialEq + Copy>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

/// Maximum number of `tests=` prefixes.
pub const MAX_TEST_FILTERS: usize = 8;

/// PINGs per target CPU of the lost-edge probe an experiment starts with.
pub const DEFAULT_EDGE_PROBE: u64 = 100;

/// The parsed boot configuration. `BootConfig::default()` is all zeroes;
/// [`BootConfig::defaults`] is what an empty command line gives.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BootConfig<'a> {
    /// Test-name prefixes; empty means every test.
    pub tests: [&'a str; MAX_TEST_FILTERS],
    pub test_count: usize,
    pub force_fail: bool,
    pub fault: Fault,
    pub tick_hz: u32,
    pub verbose: bool,
    pub storm_rounds: u64,
    pub ipi_lock: bool,
    pub ipi_poll: bool,
    pub resend: bool,
    pub watchdog_ms: u64,
    pub inject: Inject,
    pub irq_load_us: u64,
    /// `console_baud=`: an emulated serial console's speed (0: none).
    pub console_baud: u64,
    /// 0: no stress run.
    pub stress: u64,
    /// `machine=`: a machine vector's name, checked against the kernel's
    /// list of machine vectors at boot; None: `auto`.
    pub machine: Option<&'a str>,
    /// `io7=`: PEs with an IO7 to quiesce besides those the console's
    /// configuration tree lists (bit n: PE n; Marvel only).
    pub io7: u64,
    pub console: ConsoleArg,
    pub clock: ClockArg,
    /// `cpus=`: physical CPU ids (bit n = whami n) to bring up; None: all.
    pub cpus: Option<CpuMask>,
    pub clock_skew_us: u64,
    /// `wait=`; None: the machine vector's default.
    pub wait: Option<WaitArg>,
    pub nap_after_us: u64,
    /// `spin_cpus=`: under `wait=adaptive`, the most awake CPUs at which a
    /// waiter spins (0: no limit).
    pub spin_cpus: u64,
    /// `spin_floor_us=`: under `wait=adaptive`, the least a learned spin
    /// budget falls to (0: no learning); None: [`ADAPTIVE_SPIN_FLOOR_US`].
    pub spin_floor_us: Option<u64>,
    /// `spin_idle_us=`: under `wait=adaptive`, how long a wait for a CPU
    /// asleep in its idle loop spins (0: its usual budget); None:
    /// [`ADAPTIVE_SPIN_IDLE_US`].
    pub spin_idle_us: Option<u64>,
    /// `idle_poll_us=`: how long an idle CPU polls after an IPI before it
    /// waits for interrupts (`alphasmp::idlepoll`); None: the machine
    /// vector's choice.
    pub idle_poll_us: Option<u64>,
    /// `idle_poll_cpus=`: an idle CPU polls only while at most this many
    /// CPUs are busy: awake, called, or called within the window (0: no
    /// limit).
    pub idle_poll_cpus: u64,
    /// `lazy_flush=`: TLB flushes skip CPUs asleep in their idle loop,
    /// which catch up when they wake.
    pub lazy_flush: bool,
    /// `ipi_listen=`: CPUs spinning where they could take IPIs look at
    /// their mailbox, and senders skip their interrupt.
    pub ipi_listen: bool,
    /// Samples per benchmark measurement; 0: no benchmark run.
    pub bench: u64,
    /// `edge_probe=N`: the lost-edge probe alone, N PINGs per target CPU
    /// (0: not as a run mode; the experiment runs it with
    /// [`DEFAULT_EDGE_PROBE`] unless this is given).
    pub edge_probe: u64,
    /// Whether `edge_probe=` was given (with `experiment=`, `edge_probe=0`
    /// skips the probe).
    pub edge_probe_given: bool,
    /// `bench_busy=off`: the benchmark measures idle targets only.
    pub bench_busy: bool,
    /// `bench_only=`: the one measurement of [`BENCH_OPS`] to run (its
    /// index); None: all of them.
    pub bench_only: Option<usize>,
    /// `wtint=returns`: wait-for-interrupt returns at once.
    pub wtint_returns: bool,
    /// `experiment=`: the cells one boot runs (Off: no experiment).
    pub experiment: experiment::Set,
    /// `cell_size=`: shootdowns per CPU in each experiment cell; 0: the
    /// default for the CPU count ([`experiment::default_cell_size`]).
    pub cell_size: u64,
    /// `either_runs=`: how often the experiment runs a cell predicted
    /// "either".
    pub either_runs: u64,
    /// `ptfree_rounds=`: L3-table replacements in the page-table-free
    /// self-test.
    pub ptfree_rounds: u64,
}

fn yes_no(value: &str) -> Result<bool, &'static str> {
    match value {
        "yes" | "on" | "1" => Ok(true),
        "no" | "off" | "0" => Ok(false),
        _ => Err("yes or no"),
    }
}

fn number(value: &str, min: u64, max: u64, expected: &'static str) -> Result<u64, &'static str> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or(expected)
}

fn choice<T: Copy>(
    table: &[(&'static str, T)],
    value: &str,
    expected: &'static str,
) -> Result<T, &'static str> {
    table
        .iter()
        .find(|(n, _)| *n == value)
        .map(|(_, v)| *v)
        .ok_or(expected)
}

fn tests<'a>(c: &mut BootConfig<'a>, value: &'a str) -> Result<(), &'static str> {
    c.test_count = 0;
    for prefix in value.split(',').filter(|p| !p.is_empty()) {
        if c.test_count == MAX_TEST_FILTERS {
            return Err("at most 8 prefixes");
        }
        c.tests[c.test_count] = prefix;
        c.test_count += 1;
    }
    if c.test_count == 0 {
        return Err("one or more test name prefixes");
    }
    Ok(())
}

fn cpus(c: &mut BootConfig<'_>, value: &str) -> Result<(), &'static str> {
    let mut mask = CpuMask::EMPTY;
    for id in value.split(',') {
        let id = id
            .parse::<usize>()
            .ok()
            .filter(|n| *n < 64)
            .ok_or("comma-separated CPU ids from 0 to 63")?;
        if mask.contains(id) {
            return Err("each CPU id once");
        }
        mask.insert(id);
    }
    c.cpus = Some(mask);
    Ok(())
}

/// Every boot argument, in the order the README lists them.
pub const KEYS: &[Key] = &[
    Key {
        name: "tests",
        values: "comma-separated prefixes",
        default: None,
        help: "run only the self-tests whose names start with one of them (default: all); a prefix that selects no test is refused",
        lands: "run::selftest (kernel)",
        example: "smp,xcall",
        set: tests,
    },
    Key {
        name: "force_fail",
        values: "`yes`/`no`",
        default: Some("no"),
        help: "add a self-test that fails, to prove a failure reaches the exit status",
        lands: "run::tests::forced_failure",
        example: "yes",
        set: |c, v| {
            c.force_fail = yes_no(v)?;
            Ok(())
        },
    },
    Key {
        name: "fault",
        values: "`none`, `breakpoint`, `illegal`, `overflow`, `unmapped`, `unaligned`, `callsys`, `panic`, `panic_stuck`, `ending`, `mchk`, `mchk_in_console`",
        default: Some("none"),
        help: "after the self-tests, raise this fault (each must be reported and end the run with failure, never hang); `ending` faults a second time on the panic's way out, as a missing instruction would; `mchk` loads from a physical address nothing answers (a machine check), `mchk_in_console` does so inside an SRM console call with the console's locks held (needs `console=srm`)",
        lands: "run::raise_fault",
        example: "panic",
        set: |c, v| {
            c.fault = choice(
                Fault::NAMES,
                v,
                "none|breakpoint|illegal|overflow|unmapped|unaligned|callsys|panic|panic_stuck|ending|mchk|mchk_in_console",
            )?;
            Ok(())
        },
    },
    Key {
        name: "tick_hz",
        values: "10 to 1000",
        default: Some("100"),
        help: "per-CPU clock tick rate",
        lands: "clock::configure",
        example: "250",
        set: |c, v| {
            c.tick_hz = number(v, 10, 1000, "a whole number from 10 to 1000")? as u32;
            Ok(())
        },
    },
    Key {
        name: "storm_rounds",
        values: "1 to 10000000",
        default: Some("2000"),
        help: "synchronous calls per CPU in `xcall.concurrent_storm`",
        lands: "run::tests::xcall",
        example: "77",
        set: |c, v| {
            c.storm_rounds = number(v, 1, 10_000_000, "a whole number from 1 to 10000000")?;
            Ok(())
        },
    },
    Key {
        name: "ipi_lock",
        values: "`on`/`off`",
        default: Some("off"),
        help: "the series' lock-and-drain fix: serialize every waiting cross-call with one lock; a CPU that cannot take it drains its own mailbox with interrupts off and retries",
        lands: "SMP.policy.serialize (main.rs apply_policy)",
        example: "on",
        set: |c, v| {
            c.ipi_lock = yes_no(v)?;
            Ok(())
        },
    },
    Key {
        name: "ipi_poll",
        values: "`on`/`off`",
        default: Some("on"),
        help: "the series' in-interrupt poll: after every clock, device, machine-check or perf interrupt (and in the idle loop), handle what the mailbox holds; count it as rescued, in interrupts and in the idle loop apart (the series has only the first)",
        lands: "SMP.policy.poll_in_irq (main.rs apply_policy)",
        example: "off",
        set: |c, v| {
            c.ipi_poll = yes_no(v)?;
            Ok(())
        },
    },
    Key {
        name: "resend",
        values: "`on`/`off`",
        default: Some("off"),
        help: "the watchdog re-sends the IPI of a stalled call, as Linux's `csdlock_debug`",
        lands: "SMP.policy.resend (main.rs apply_policy)",
        example: "on",
        set: |c, v| {
            c.resend = yes_no(v)?;
            Ok(())
        },
    },
    Key {
        name: "watchdog_ms",
        values: "0 to 600000",
        default: Some("1000"),
        help: "a cross-call waiter stalled this long prints one report line (waiter, target, the target's mailbox bits, queue, IPL, whether it is in a handler and whom it waits for); 0 turns it off",
        lands: "SMP.policy.watchdog_cycles (main.rs apply_policy)",
        example: "250",
        set: |c, v| {
            c.watchdog_ms = number(v, 0, 600_000, "a whole number from 0 to 600000")?;
            Ok(())
        },
    },
    Key {
        name: "inject",
        values: "`none`, `edge_loss`, `masked_wait`, `both`, `edge_loss_masked`, `both_masked`",
        default: Some("none"),
        help: "fault injection: drop IPIs aimed at a CPU inside an interrupt handler at IPL 7 (`edge_loss`: EV7's lost edge, mailbox bits stay set) or at a CPU at IPL 7 for any reason, a napping waiter too (`edge_loss_masked`), and/or make synchronous callers wait at IPL 7 (`masked_wait`; `both` and `both_masked` combine)",
        lands: "platform::INJECT_EDGE_LOSS, INJECT_EDGE_LOSS_MASKED, SMP.policy.allow_masked_wait",
        example: "both",
        set: |c, v| {
            c.inject = choice(
                Inject::NAMES,
                v,
                "none|edge_loss|masked_wait|both|edge_loss_masked|both_masked",
            )?;
            Ok(())
        },
    },
    Key {
        name: "irq_load_us",
        values: "0 to 5000",
        default: Some("0"),
        help: "extra time each kernel tick's clock interrupt spends at IPL 7, to widen the lost-edge window",
        lands: "interrupt::IRQ_LOAD_NS",
        example: "40",
        set: |c, v| {
            c.irq_load_us = number(v, 0, 5_000, "a whole number from 0 to 5000")?;
            Ok(())
        },
    },
    Key {
        name: "console_baud",
        values: "0, or 300 to 115200",
        default: Some("0"),
        help: "emulate a serial console of this speed (0: as fast as the device is): each byte written costs 10 bit times at IPL 7 with the console held, as on a real SRM console at 9600 baud (about 1 ms a byte), so that QEMU runs show what console time does to a run; from the policy line on",
        lands: "console::BYTE_NS",
        example: "9600",
        set: |c, v| {
            c.console_baud = number(v, 0, 115_200, "0, or a whole number from 300 to 115200")?;
            if (1..300).contains(&c.console_baud) {
                return Err("0, or a whole number from 300 to 115200");
            }
            Ok(())
        },
    },
    Key {
        name: "stress",
        values: "1 to 100000000",
        default: None,
        help: "run only the stress workload: this many synchronous shootdowns per CPU from all CPUs at once, print a `stress-result:` line, halt",
        lands: "run::stress",
        example: "100",
        set: |c, v| {
            c.stress = number(v, 1, 100_000_000, "a whole number from 1 to 100000000")?;
            Ok(())
        },
    },
    Key {
        name: "verbose",
        values: "`yes`/`no`",
        default: Some("no"),
        help: "more detail lines",
        lands: "run::selftest",
        example: "yes",
        set: |c, v| {
            c.verbose = yes_no(v)?;
            Ok(())
        },
    },
    Key {
        name: "machine",
        values: "`auto`, or a machine vector's name: `clipper`, `tsunami`, `marvel`",
        default: Some("auto"),
        help: "the machine layer (`auto`: the first vector in `arch/alpha/src/machine/mod.rs`'s `VECTORS` that serves the HWRPB's system type and serial number); an unknown name is refused at boot with the list of vectors",
        lands: "machine::identify",
        example: "marvel",
        set: |c, v| {
            if v.is_empty() {
                return Err("auto or a machine layer's name");
            }
            c.machine = (v != "auto").then_some(v);
            Ok(())
        },
    },
    Key {
        name: "io7",
        values: "PEs 0 to 31, separated by commas (decimal or 0x-hex)",
        default: None,
        help: "Marvel: IO7s to quiesce besides those the console's configuration tree (GCT) lists, as Linux's `io7=` (`marvel_specify_io7`), for a tree that lacks one; name only PEs that have an IO7 (a store to the registers of one that has none is a reference to non-existent I/O space); other machines ignore it",
        lands: "machine::marvel (quiesce_io7s)",
        example: "0,2",
        set: |c, v| {
            c.io7 = alphasmp_srm::io7::parse_io7_list(v)
                .map_err(|_| "PEs 0 to 31, separated by commas (decimal or 0x-hex)")?;
            Ok(())
        },
    },
    Key {
        name: "console",
        values: "`auto`, `srm`, `uart`",
        default: Some("auto"),
        help: "output through the SRM console callbacks (PUTS) or the 16550 UART; `auto` is the machine vector's choice: the UART on QEMU's clipper, SRM on real machines (Marvel has no UART)",
        lands: "machine::console",
        example: "srm",
        set: |c, v| {
            c.console = choice(ConsoleArg::NAMES, v, "auto|srm|uart")?;
            Ok(())
        },
    },
    Key {
        name: "clock",
        values: "`periodic`, `alarm`",
        default: Some("periodic"),
        help: "the architected periodic clock interrupt divided down to `tick_hz`, or QEMU's private one-shot alarm",
        lands: "machine::start_clock",
        example: "alarm",
        set: |c, v| {
            c.clock = choice(ClockArg::NAMES, v, "periodic|alarm")?;
            Ok(())
        },
    },
    Key {
        name: "cpus",
        values: "comma-separated physical CPU ids",
        default: None,
        help: "bring up only these CPUs (the boot CPU must be one); they get dense logical ids (default: every present CPU)",
        lands: "smp::select_cpus",
        example: "0,2,3",
        set: cpus,
    },
    Key {
        name: "clock_skew_us",
        values: "0 to 10000000",
        default: Some("0"),
        help: "fault injection: logical CPU k's clock runs k x this many us behind CPU 0's, as unsynchronised cycle counters do on real SMP machines",
        lands: "clock::set_skew_us",
        example: "2500",
        set: |c, v| {
            c.clock_skew_us = number(v, 0, 10_000_000, "a whole number from 0 to 10000000")?;
            Ok(())
        },
    },
    Key {
        name: "wait",
        values: "`spin`, `nap`, `adaptive`, `auto`",
        default: None,
        help: "how a CPU waits for a synchronous call, the serialization lock or posted work: spin; nap in `wtint` until woken by the CPU that ends the wait (or the next clock interrupt); adaptive: spin a wait's first few microseconds (each CPU learns how long from its waits, between `spin_floor_us` and `nap_after_us`: 5 and 20 us), then nap; or auto: once the CPUs are online, a 20 ms probe tells whether each has a core of its own (spin) or they share fewer (adaptive); not given: the machine vector's choice (`auto` on QEMU's clipper, whose vCPUs may share host cores; `spin` on Tsunami and Marvel, see \"Speed\")",
        lands: "SMP.policy.nap (main.rs apply_policy, waitprobe::settle), MachineVector::default_wait",
        example: "spin",
        set: |c, v| {
            c.wait = Some(choice(WaitArg::NAMES, v, "spin|nap|adaptive|auto")?);
            Ok(())
        },
    },
    Key {
        name: "nap_after_us",
        values: "0 to 10000",
        default: Some("0"),
        help: "with `wait=nap`, spin this long before a wait's first nap; with `wait=adaptive`, the most a wait spins (0: 20 us)",
        lands: "SMP.policy.spin_before_nap (main.rs apply_policy)",
        example: "250",
        set: |c, v| {
            c.nap_after_us = number(v, 0, 10_000, "a whole number from 0 to 10000")?;
            Ok(())
        },
    },
    Key {
        name: "spin_cpus",
        values: "0 to 64",
        default: Some("0"),
        help: "with `wait=adaptive`, a waiter spins only while at most this many CPUs are awake (0: no limit; a limit of 2 on 4 vCPUs sharing 2 host cores measured worse than none, README \"Speed\")",
        lands: "SMP.policy.spin_cpus (main.rs apply_policy)",
        example: "4",
        set: |c, v| {
            c.spin_cpus = number(v, 0, 64, "a whole number from 0 to 64")?;
            Ok(())
        },
    },
    Key {
        name: "spin_floor_us",
        values: "0 to 10000",
        default: None,
        help: "with `wait=adaptive`, each CPU learns how long its call waits spin from how they ended, between this floor and `nap_after_us`: a wait that ended while spinning grows it by an eighth, one that napped and still ended within the most a wait spins doubles it, one that lasted past twice that halves it (`alphasmp::xcall::learn_budget`, README \"Speed\"); 0: no learning, every wait spins up to `nap_after_us`; not given: 5 us",
        lands: "SMP.policy.spin_floor (main.rs apply_policy)",
        example: "0",
        set: |c, v| {
            c.spin_floor_us = Some(number(v, 0, 10_000, "a whole number from 0 to 10000")?);
            Ok(())
        },
    },
    Key {
        name: "spin_idle_us",
        values: "0 to 10000",
        default: None,
        help: "with `wait=adaptive`, a call's wait for a CPU that was asleep in its idle loop when called spins this long before it naps, in place of the learned budget: that CPU wakes, runs the call and sleeps again, and the waiter's own nap would add a wake of its own (README \"Speed\"); 0: no such case; not given: 320 us, or 0 where `wait=auto`'s probe finds the CPUs running one at a time (`-icount`)",
        lands: "SMP.policy.spin_idle (main.rs apply_policy)",
        example: "0",
        set: |c, v| {
            c.spin_idle_us = Some(number(v, 0, 10_000, "a whole number from 0 to 10000")?);
            Ok(())
        },
    },
    Key {
        name: "idle_poll_us",
        values: "0 to 10000",
        default: None,
        help: "halt polling: an idle CPU that takes an IPI keeps polling this long (restarted by each IPI) before it waits in `wtint` again, so the next call finds it running (`alphasmp::idlepoll`; 0: never poll); not given: the machine vector's choice (200 on QEMU's clipper, where waking a vCPU costs more than the call; 0 on Tsunami and Marvel, as Linux)",
        lands: "smp::IDLE_POLL (main.rs apply_policy), MachineVector::default_idle_poll_us",
        example: "0",
        set: |c, v| {
            c.idle_poll_us = Some(number(v, 0, 10_000, "a whole number from 0 to 10000")?);
            Ok(())
        },
    },
    Key {
        name: "idle_poll_cpus",
        values: "0 to 64",
        default: Some("2"),
        help: "halt polling only while at most this many CPUs are busy, the poller included: awake, with a message waiting, or sent an IPI within the poll window (0: no limit); where vCPUs outnumber host cores a poller takes a core from the CPUs an IPI just went to",
        lands: "smp::IDLE_POLL (main.rs apply_policy)",
        example: "0",
        set: |c, v| {
            c.idle_poll_cpus = number(v, 0, 64, "a whole number from 0 to 64")?;
            Ok(())
        },
    },
    Key {
        name: "lazy_flush",
        values: "`on`/`off`",
        default: Some("on"),
        help: "TLB flushes (`flush_tlb_all`, and flushes of an address space a sleeping CPU still has current; not page migration) do not interrupt CPUs asleep in their idle loop; each catches up when it wakes, before it uses a translation: its whole TLB and a new ASN for its current space (`alphasmp::lazyflush`; off: those CPUs are interrupted, as Linux on Alpha does)",
        lands: "MMU.set_lazy_idle (main.rs apply_policy)",
        example: "off",
        set: |c, v| {
            c.lazy_flush = yes_no(v)?;
            Ok(())
        },
    },
    Key {
        name: "ipi_listen",
        values: "`on`/`off`",
        default: Some("on"),
        help: "a CPU that spins where it could take IPIs (a call waiter at IPL 0, an idle CPU halt polling) listens: it looks at its mailbox as it spins, and a sender that finds it listening posts the message without the interrupt (`alphasmp::listen`); off whenever a fault is injected and in the experiment, which count interrupts",
        lands: "SMP.policy.listen (main.rs apply_policy)",
        example: "off",
        set: |c, v| {
            c.ipi_listen = yes_no(v)?;
            Ok(())
        },
    },
    Key {
        name: "experiment",
        values: "`native`, `injected`, `all`",
        default: None,
        help: "run only the fault x fix experiment, every cell of the set in this one boot (`native`: no simulated hardware fault, waiters at IPL 0 and at IPL 7, each fix set; `injected`: the full matrix with the EV7 faults injected; `all`: both), with a clean machine between cells; prints a table and `experiment-*` lines for `cargo xtask report`, halts",
        lands: "run::experiment",
        example: "native",
        set: |c, v| {
            c.experiment = choice(experiment::Set::NAMES, v, "native|injected|all")?;
            Ok(())
        },
    },
    Key {
        name: "cell_size",
        values: "10 to 1000000",
        default: None,
        help: "shootdowns per CPU in each experiment cell (default: 300 on more than 2 CPUs, 15000 on 2)",
        lands: "run::experiment",
        example: "150",
        set: |c, v| {
            c.cell_size = number(v, 10, 1_000_000, "a whole number from 10 to 1000000")?;
            Ok(())
        },
    },
    Key {
        name: "either_runs",
        values: "1 to 20",
        default: Some("3"),
        help: "how often the experiment runs each cell the protocol predicts \"either\" for (it reports how often each outcome happened)",
        lands: "run::experiment",
        example: "5",
        set: |c, v| {
            c.either_runs = number(v, 1, 20, "a whole number from 1 to 20")?;
            Ok(())
        },
    },
    Key {
        name: "ptfree_rounds",
        values: "1 to 1000000",
        default: Some("200"),
        help: "how many times the self-test `ptfree.replace_l3_under_walkers` replaces the test window's L3 table (copy, relink, flush with proof, free, poison) while the other CPUs walk it",
        lands: "run::tests::ptfree",
        example: "10000",
        set: |c, v| {
            c.ptfree_rounds = number(v, 1, 1_000_000, "a whole number from 1 to 1000000")?;
            Ok(())
        },
    },
    Key {
        name: "bench",
        values: "100 to 100000",
        default: None,
        help: "run only the benchmark suite with this many samples per measurement, print `bench-result:` lines, halt",
        lands: "run::bench",
        example: "2000",
        set: |c, v| {
            c.bench = number(v, 100, 100_000, "a whole number from 100 to 100000")?;
            Ok(())
        },
    },
    Key {
        name: "edge_probe",
        values: "0 to 10000",
        default: None,
        help: "run only the lost-edge probe: this many PINGs to each other CPU, each sent the moment that CPU is seen inside a clock handler at IPL 7 (each held there 100 us), with no poll and nothing else sent to it until it takes the PING or two more clock interrupts (then the PING is lost); prints `edge-probe:` lines, halts; with `experiment=`, the probe's size there (default 100; 0 skips it)",
        lands: "run::probe",
        example: "200",
        set: |c, v| {
            c.edge_probe = number(v, 0, 10_000, "a whole number from 0 to 10000")?;
            c.edge_probe_given = true;
            Ok(())
        },
    },
    Key {
        name: "bench_busy",
        values: "`on`/`off`",
        default: Some("on"),
        help: "with `bench`, also measure with busy targets (off: idle targets only; under `-icount` a busy target holds the round robin for a whole slice per sample)",
        lands: "run::bench",
        example: "off",
        set: |c, v| {
            c.bench_busy = yes_no(v)?;
            Ok(())
        },
    },
    Key {
        name: "bench_only",
        values: "`all` or a measurement's name (`ipi_rtt`, `call_single_wait`, ... `call_storm`: README \"Speed\")",
        default: Some("all"),
        help: "with `bench`, run only this measurement (idle and busy as `bench_busy` says); what `cargo xtask profile` boots to count one operation's instructions function by function",
        lands: "run::bench",
        example: "call_single_wait",
        set: |c, v| {
            c.bench_only = match v {
                "all" => None,
                _ => Some(
                    BENCH_OPS
                        .iter()
                        .position(|n| *n == v)
                        .ok_or(BENCH_OPS_EXPECTED)?,
                ),
            };
            Ok(())
        },
    },
    Key {
        name: "wtint",
        values: "`waits`, `returns`",
        default: Some("waits"),
        help: "`returns` makes every wait for an interrupt return at once without calling the PALcode, as DEC's EV6 OSF PALcode does (docs/hardware.md, \"wtint on DEC's EV6 PALcode\"): the idle loop and naps spin",
        lands: "pal::WTINT_RETURNS",
        example: "returns",
        set: |c, v| {
            c.wtint_returns = choice(&[("waits", false), ("returns", true)], v, "waits|returns")?;
            Ok(())
        },
    },
];

/// Why a command line was refused. Displays as one line naming the word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootArgError<'a> {
    /// A word without `=`.
    NotKeyValue(&'a str),
    UnknownKey(&'a str),
    Repeated(&'a str),
    BadValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
}

impl fmt::Display for BootArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootArgError::NotKeyValue(w) => write!(f, "boot argument '{w}' is not key=value"),
            BootArgError::UnknownKey(k) => {
                write!(f, "unknown boot argument '{k}' (known:")?;
                for key in KEYS {
                    write!(f, " {}", key.name)?;
                }
                write!(f, ")")
            }
            BootArgError::Repeated(k) => write!(f, "boot argument '{k}' given twice"),
            BootArgError::BadValue {
                key,
                value,
                expected,
            } => {
                write!(f, "boot argument {key}={value}: expected {expected}")
            }
        }
    }
}

impl<'a> BootConfig<'a> {
    /// What an empty command line gives: every key's default applied.
    pub fn defaults() -> BootConfig<'a> {
        let mut cfg = BootConfig::default();
        for key in KEYS {
            if let Some(d) = key.default {
                // A default that does not parse fails every host test.
                let _ = (key.set)(&mut cfg, d);
            }
        }
        cfg
    }

    /// Parses a whole command line (words separated by spaces or tabs).
    pub fn parse(cmdline: &'a str) -> Result<BootConfig<'a>, BootArgError<'a>> {
        let mut cfg = BootConfig::defaults();
        let mut seen = [false; KEYS.len()];
        for word in cmdline.split([' ', '\t', '\n']).filter(|w| !w.is_empty()) {
            let (key, value) = word
                .split_once('=')
                .ok_or(BootArgError::NotKeyValue(word))?;
            let index = KEYS
                .iter()
                .position(|k| k.name == key)
                .ok_or(BootArgError::UnknownKey(key))?;
            if core::mem::replace(&mut seen[index], true) {
                return Err(BootArgError::Repeated(key));
            }
            (KEYS[index].set)(&mut cfg, value).map_err(|expected| BootArgError::BadValue {
                key,
                value,
                expected,
            })?;
        }
        Ok(cfg)
    }

    /// Whether the self-test `name` is selected by `tests=`.
    pub fn selects(&self, name: &str) -> bool {
        self.test_count == 0
            || self.tests[..self.test_count]
                .iter()
                .any(|p| name.starts_with(p))
    }
}

/// The README's table of boot arguments, made from [`KEYS`].
pub fn markdown_table(out: &mut impl fmt::Write) -> fmt::Result {
    writeln!(out, "| key | values | default | meaning |")?;
    writeln!(out, "|---|---|---|---|")?;
    for k in KEYS {
        write!(out, "| `{}` | {} | ", k.name, k.values)?;
        match k.default {
            Some(d) => write!(out, "`{d}`")?,
            None => write!(out, "not given")?,
        }
        writeln!(out, " | {} |", k.help)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn io7_takes_a_list_of_pes() {
        assert_eq!(BootConfig::defaults().io7, 0);
        assert_eq!(
            BootConfig::parse("io7=0,2,0x1f").unwrap().io7,
            1 | 4 | 1 << 31
        );
        for bad in ["io7=32", "io7=a", "io7=0,,1", "io7="] {
            let e = BootConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains("PEs 0 to 31") && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(BootConfig::parse("").unwrap(), BootConfig::defaults());
        assert_eq!(BootConfig::parse("   \t ").unwrap(), BootConfig::defaults());
    }

    #[test]
    fn parses_every_key() {
        let c = BootConfig::parse(
            "tests=div,mem force_fail=yes fault=overflow tick_hz=250 verbose=on storm_rounds=77",
        )
        .unwrap();
        assert_eq!(c.storm_rounds, 77);
        assert_eq!(&c.tests[..c.test_count], &["div", "mem"]);
        assert!(c.force_fail && c.verbose);
        assert_eq!(c.fault, Fault::Overflow);
        assert_eq!(c.tick_hz, 250);
        assert!(c.selects("div.edges") && c.selects("mem.copy") && !c.selects("heap.vec"));
    }

    #[test]
    fn bench_only_takes_every_measurement_and_refuses_others() {
        assert_eq!(BootConfig::defaults().bench_only, None);
        for (i, name) in BENCH_OPS.iter().enumerate() {
            let line = std::format!("bench=1000 bench_only={name}");
            assert_eq!(BootConfig::parse(&line).unwrap().bench_only, Some(i));
            assert!(
                BENCH_OPS_EXPECTED.contains(name),
                "{name} not in the message"
            );
        }
        let e = BootConfig::parse("bench_only=call_single").unwrap_err();
        assert!(
            e.to_string().contains("call_single_wait") && !e.to_string().contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn matrix_keys_parse() {
        let c = BootConfig::parse("ipi_lock=on ipi_poll=off resend=on watchdog_ms=250 inject=both irq_load_us=40 stress=100").unwrap();
        assert!(c.ipi_lock && !c.ipi_poll && c.resend);
        assert_eq!((c.watchdog_ms, c.irq_load_us, c.stress), (250, 40, 100));
        assert_eq!(
            c.inject,
            Inject {
                edge_loss: true,
                masked_wait: true,
                edge_loss_masked: false
            }
        );
        let m = BootConfig::parse("inject=edge_loss_masked").unwrap().inject;
        assert!(m.edge_loss_masked && !m.edge_loss && !m.masked_wait);
        assert_eq!(
            BootConfig::parse("inject=both_masked")
                .unwrap()
                .inject
                .name(),
            "both_masked"
        );
        assert_eq!(c.inject.name(), "both");
        assert!(matches!(
            BootConfig::parse("inject=sometimes"),
            Err(BootArgError::BadValue { key: "inject", .. })
        ));
        assert!(matches!(
            BootConfig::parse("stress=0"),
            Err(BootArgError::BadValue { key: "stress", .. })
        ));
        assert_eq!(
            BootConfig::parse("").unwrap().wait,
            None,
            "the machine's choice"
        );
        assert_eq!(
            BootConfig::parse("wait=spin").unwrap().wait,
            Some(WaitArg::Spin)
        );
        assert_eq!(
            BootConfig::parse("wait=nap").unwrap().wait,
            Some(WaitArg::Nap)
        );
        assert_eq!(
            BootConfig::parse("wait=auto").unwrap().wait,
            Some(WaitArg::Auto)
        );
        assert!(matches!(
            BootConfig::parse("wait=doze"),
            Err(BootArgError::BadValue { key: "wait", .. })
        ));
        assert_eq!(
            BootConfig::parse("nap_after_us=250").unwrap().nap_after_us,
            250
        );
        assert!(matches!(
            BootConfig::parse("nap_after_us=10001"),
            Err(BootArgError::BadValue {
                key: "nap_after_us",
                ..
            })
        ));
        assert_eq!(BootConfig::parse("bench=2000").unwrap().bench, 2000);
        assert!(
            matches!(
                BootConfig::parse("bench=99"),
                Err(BootArgError::BadValue { key: "bench", .. })
            ),
            "fewer than 100 samples"
        );
        assert_eq!(BootConfig::parse("bench=100").unwrap().bench, 100);
        assert!(matches!(
            BootConfig::parse("irq_load_us=9999"),
            Err(BootArgError::BadValue { .. })
        ));
        assert!(!BootConfig::parse("").unwrap().wtint_returns);
        assert!(BootConfig::parse("wtint=returns").unwrap().wtint_returns);
        assert!(!BootConfig::parse("wtint=waits").unwrap().wtint_returns);
        assert!(matches!(
            BootConfig::parse("wtint=sleeps"),
            Err(BootArgError::BadValue { key: "wtint", .. })
        ));
        let d = BootConfig::parse("").unwrap();
        assert_eq!((d.idle_poll_us, d.idle_poll_cpus), (None, 2));
        let c = BootConfig::parse("idle_poll_us=0 idle_poll_cpus=4").unwrap();
        assert_eq!((c.idle_poll_us, c.idle_poll_cpus), (Some(0), 4));
        assert!(matches!(
            BootConfig::parse("idle_poll_us=10001"),
            Err(BootArgError::BadValue {
                key: "idle_poll_us",
                ..
            })
        ));
    }

    #[test]
    fn no_filter_selects_everything() {
        assert!(BootConfig::defaults().selects("anything"));
    }

    #[test]
    fn unknown_key_is_named_in_one_line() {
        let e = BootConfig::parse("tests=div bogus=1").unwrap_err();
        assert_eq!(e, BootArgError::UnknownKey("bogus"));
        let msg = e.to_string();
        assert!(
            msg.contains("'bogus'") && msg.contains("tick_hz") && !msg.contains('\n'),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(matches!(
            BootConfig::parse("tick_hz=0"),
            Err(BootArgError::BadValue { key: "tick_hz", .. })
        ));
        assert!(matches!(
            BootConfig::parse("tick_hz=5000"),
            Err(BootArgError::BadValue { .. })
        ));
        assert!(matches!(
            BootConfig::parse("tick_hz=fast"),
            Err(BootArgError::BadValue { .. })
        ));
        assert!(matches!(
            BootConfig::parse("force_fail=maybe"),
            Err(BootArgError::BadValue { .. })
        ));
        assert!(matches!(
            BootConfig::parse("fault=explode"),
            Err(BootArgError::BadValue { .. })
        ));
        assert!(matches!(
            BootConfig::parse("tests=,"),
            Err(BootArgError::BadValue { .. })
        ));
        assert!(matches!(
            BootConfig::parse("tests=a,b,c,d,e,f,g,h,i"),
            Err(BootArgError::BadValue { .. })
        ));
    }

    #[test]
    fn malformed_and_repeated_words_are_refused() {
        assert_eq!(
            BootConfig::parse("verbose"),
            Err(BootArgError::NotKeyValue("verbose"))
        );
        assert_eq!(
            BootConfig::parse("verbose=yes verbose=no"),
            Err(BootArgError::Repeated("verbose"))
        );
    }

    #[test]
    fn machine_console_clock_and_cpus() {
        let c = BootConfig::parse(
            "machine=marvel console=srm clock=alarm cpus=0,2,3 clock_skew_us=2500",
        )
        .unwrap();
        assert_eq!(c.clock_skew_us, 2500);
        assert_eq!(
            (c.machine, c.console, c.clock),
            (Some("marvel"), ConsoleArg::Srm, ClockArg::Alarm)
        );
        assert_eq!(BootConfig::parse("machine=auto").unwrap().machine, None);
        assert_eq!(c.cpus, Some(CpuMask(0b1101)));
        let d = BootConfig::parse("cpus=63,12").unwrap();
        assert_eq!(d.cpus, Some(CpuMask((1 << 63) | (1 << 12))));
        assert_eq!(name_of(ConsoleArg::NAMES, ConsoleArg::Uart), "uart");
        for bad in [
            "machine=",
            "console=vga",
            "clock=rtc",
            "cpus=",
            "cpus=64",
            "cpus=1,1",
            "cpus=0,x",
            "cpus=-1",
        ] {
            let e = BootConfig::parse(bad).unwrap_err();
            assert!(matches!(e, BootArgError::BadValue { .. }), "{bad}: {e:?}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn every_fault_name_round_trips() {
        for (name, fault) in Fault::NAMES {
            let line = std::format!("fault={name}");
            assert_eq!(BootConfig::parse(&line).unwrap().fault, *fault);
            assert_eq!(fault.name(), *name);
        }
    }

    /// Every key's example value parses and changes the configuration: a
    /// key that sets nothing cannot pass.
    #[test]
    fn every_key_has_an_effect() {
        for k in KEYS {
            let line = std::format!("{}={}", k.name, k.example);
            let c = BootConfig::parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_ne!(c, BootConfig::defaults(), "{line} changes nothing");
            assert!(
                !k.help.is_empty() && !k.lands.is_empty() && !k.values.is_empty(),
                "{}",
                k.name
            );
        }
    }

    /// Every default is a value its key takes.
    #[test]
    fn every_default_parses() {
        for k in KEYS {
            if let Some(d) = k.default {
                let mut c = BootConfig::default();
                assert_eq!((k.set)(&mut c, d), Ok(()), "{}={d}", k.name);
            }
        }
        let names: std::vec::Vec<_> = KEYS.iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a key is listed twice");
    }

    /// The README's table is exactly the one [`markdown_table`] makes.
    #[test]
    fn readme_table_comes_from_the_keys() {
        let mut table = std::string::String::new();
        markdown_table(&mut table).unwrap();
        let readme = include_str!("../../../../README.md");
        assert!(
            readme.contains(&table),
            "README.md's boot-argument table differs from the one KEYS makes; replace it with:\n{table}"
        );
    }
}
