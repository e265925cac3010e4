//! Boot arguments: `key=value` words from the kernel command line (QEMU
//! `-append`), parsed into a typed [`BootConfig`].
//!
//! Every key is listed in [`KEYS`] (and in the README). An unknown key, a
//! word without `=`, a repeated key or a bad value is an error naming the
//! word: the kernel prints it on one line and ends the run with a failure
//! status, so a typo can never silently change what a run measured.

use core::fmt;

/// Every accepted key with a one-line description (printed on error).
pub const KEYS: &[(&str, &str)] = &[
    ("tests", "comma-separated self-test name prefixes to run (default: all)"),
    ("force_fail", "yes: add a self-test that fails, to prove failures reach the exit status"),
    ("fault", "deliberate fault after the self-tests: none|breakpoint|illegal|overflow|unmapped|unaligned|callsys|panic|panic_stuck|ending"),
    ("tick_hz", "per-CPU clock tick rate in Hz, 10..=1000 (default 100)"),
    ("verbose", "yes: print per-test detail lines"),
    ("storm_rounds", "synchronous calls per CPU in xcall.concurrent_storm, 1..=10000000 (default 5000)"),
    ("ipi_lock", "on|off: serialize waiting cross-calls with the lock-and-drain loop (the series' lock-and-drain fix; default off)"),
    ("ipi_poll", "on|off: poll the IPI mailbox after every non-IPI interrupt and when idle (the series' in-interrupt poll; default on)"),
    ("resend", "on|off: the watchdog re-sends the IPI of a stalled call (Linux csdlock_debug; default off)"),
    ("watchdog_ms", "report a cross-call waiter stalled this long, 0 = off (default 1000)"),
    ("inject", "none|edge_loss|masked_wait|both: emulate EV7 IPI edge loss and/or waiters at IPL 7 (default none)"),
    ("irq_load_us", "extra time each clock interrupt spends at IPL 7, 0..=5000 (default 0)"),
    ("stress", "run only the stress workload: this many synchronous shootdowns per CPU, then report and halt"),
    ("machine", "auto|clipper|tsunami|marvel: the machine layer to use (default auto: from the HWRPB)"),
    ("console", "auto|srm|uart: console output through the SRM callbacks or the 16550 (default auto: the machine's)"),
    ("clock", "periodic|alarm: the architected periodic tick, or QEMU's private cserve alarm (default periodic)"),
    ("cpus", "comma-separated physical CPU ids (whami) to bring up, the boot CPU included (default: every present CPU)"),
    ("wait", "spin|nap: waiters for a cross-call, the serialization lock or posted work spin, or nap in wtint until woken (default nap: faster on QEMU, see README)"),
    ("nap_after_us", "with wait=nap, spin this long before the first nap of a wait, 0..=10000 (default 0: nap at once)"),
    ("bench", "run only the benchmark suite, this many samples per measurement (1000..=100000), then report and halt"),
    ("wtint", "waits|returns: returns makes every wait-for-interrupt return at once without calling the PALcode, as DEC's EV6 OSF PALcode does, so the idle loop and naps spin (default waits)"),
    ("clock_skew_us", "fault injection: logical CPU k's cycle-derived clock runs k x this many us behind CPU 0's, as unsynchronised counters do on real SMP machines, 0..=10000000 (default 0)"),
];

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
}

impl Fault {
    const NAMES: &'static [(&'static str, Fault)] = &[
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
    ];

    /// The boot-argument spelling.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("?")
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
}

impl Inject {
    pub const NAMES: &'static [(&'static str, Inject)] = &[
        ("none", Inject { edge_loss: false, masked_wait: false }),
        ("edge_loss", Inject { edge_loss: true, masked_wait: false }),
        ("masked_wait", Inject { edge_loss: false, masked_wait: true }),
        ("both", Inject { edge_loss: true, masked_wait: true }),
    ];
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, i)| *i == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// `machine=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MachineArg {
    #[default]
    Auto,
    Clipper,
    Tsunami,
    Marvel,
}

impl MachineArg {
    pub const NAMES: &'static [(&'static str, MachineArg)] =
        &[("auto", MachineArg::Auto), ("clipper", MachineArg::Clipper), ("tsunami", MachineArg::Tsunami), ("marvel", MachineArg::Marvel)];
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
    pub const NAMES: &'static [(&'static str, ConsoleArg)] = &[("auto", ConsoleArg::Auto), ("srm", ConsoleArg::Srm), ("uart", ConsoleArg::Uart)];
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
    pub const NAMES: &'static [(&'static str, ClockArg)] = &[("periodic", ClockArg::Periodic), ("alarm", ClockArg::Alarm)];
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
}

impl WaitArg {
    pub const NAMES: &'static [(&'static str, WaitArg)] = &[("spin", WaitArg::Spin), ("nap", WaitArg::Nap)];
}

/// The spelling of `value` in a name table.
pub fn name_of<T: PartialEq + Copy>(table: &[(&'static str, T)], value: T) -> &'static str {
    table.iter().find(|(_, v)| *v == value).map(|(n, _)| *n).unwrap_or("?")
}

fn choice<'a, T: Copy>(table: &[(&'static str, T)], key: &'a str, value: &'a str, expected: &'static str) -> Result<T, BootArgError<'a>> {
    table.iter().find(|(n, _)| *n == value).map(|(_, v)| *v).ok_or(BootArgError::BadValue { key, value, expected })
}

/// Maximum number of `tests=` prefixes.
pub const MAX_TEST_FILTERS: usize = 8;

/// The parsed boot configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// 0: normal self-test run.
    pub stress: u64,
    pub machine: MachineArg,
    pub console: ConsoleArg,
    pub clock: ClockArg,
    /// `cpus=`: physical CPU ids (bit n = whami n) to bring up; None: all.
    pub cpus: Option<crate::cpumask::CpuMask>,
    pub clock_skew_us: u64,
    pub wait: WaitArg,
    pub nap_after_us: u64,
    /// Samples per benchmark measurement; 0: no benchmark run.
    pub bench: u64,
    /// `wtint=returns`: wait-for-interrupt returns at once.
    pub wtint_returns: bool,
}

impl Default for BootConfig<'_> {
    fn default() -> Self {
        BootConfig { tests: [""; MAX_TEST_FILTERS], test_count: 0, force_fail: false, fault: Fault::None, tick_hz: 100, verbose: false, storm_rounds: 5000, ipi_lock: false, ipi_poll: true, resend: false, watchdog_ms: 1000, inject: Inject { edge_loss: false, masked_wait: false }, irq_load_us: 0, stress: 0, machine: MachineArg::Auto, console: ConsoleArg::Auto, clock: ClockArg::Periodic, cpus: None, clock_skew_us: 0, wait: WaitArg::Nap, nap_after_us: 0, bench: 0, wtint_returns: false }
    }
}

/// Why a command line was refused. Displays as one line naming the word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootArgError<'a> {
    /// A word without `=`.
    NotKeyValue(&'a str),
    UnknownKey(&'a str),
    Repeated(&'a str),
    BadValue { key: &'a str, value: &'a str, expected: &'static str },
}

impl fmt::Display for BootArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootArgError::NotKeyValue(w) => write!(f, "boot argument '{w}' is not key=value"),
            BootArgError::UnknownKey(k) => {
                write!(f, "unknown boot argument '{k}' (known:")?;
                for (name, _) in KEYS {
                    write!(f, " {name}")?;
                }
                write!(f, ")")
            }
            BootArgError::Repeated(k) => write!(f, "boot argument '{k}' given twice"),
            BootArgError::BadValue { key, value, expected } => {
                write!(f, "boot argument {key}={value}: expected {expected}")
            }
        }
    }
}

fn yes_no<'a>(key: &'a str, value: &'a str) -> Result<bool, BootArgError<'a>> {
    match value {
        "yes" | "on" | "1" => Ok(true),
        "no" | "off" | "0" => Ok(false),
        _ => Err(BootArgError::BadValue { key, value, expected: "yes or no" }),
    }
}

fn number<'a>(key: &'a str, value: &'a str, min: u64, max: u64) -> Result<u64, BootArgError<'a>> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or(BootArgError::BadValue { key, value, expected: "a whole number in the documented range" })
}

impl<'a> BootConfig<'a> {
    /// Parses a whole command line (words separated by spaces or tabs).
    pub fn parse(cmdline: &'a str) -> Result<BootConfig<'a>, BootArgError<'a>> {
        let mut cfg = BootConfig::default();
        let mut seen = [false; KEYS.len()];
        for word in cmdline.split([' ', '\t', '\n']).filter(|w| !w.is_empty()) {
            let (key, value) = word.split_once('=').ok_or(BootArgError::NotKeyValue(word))?;
            let index = KEYS.iter().position(|(k, _)| *k == key).ok_or(BootArgError::UnknownKey(key))?;
            if core::mem::replace(&mut seen[index], true) {
                return Err(BootArgError::Repeated(key));
            }
            match key {
                "tests" => {
                    for prefix in value.split(',').filter(|p| !p.is_empty()) {
                        if cfg.test_count == MAX_TEST_FILTERS {
                            return Err(BootArgError::BadValue { key, value, expected: "at most 8 prefixes" });
                        }
                        cfg.tests[cfg.test_count] = prefix;
                        cfg.test_count += 1;
                    }
                    if cfg.test_count == 0 {
                        return Err(BootArgError::BadValue { key, value, expected: "one or more test name prefixes" });
                    }
                }
                "force_fail" => cfg.force_fail = yes_no(key, value)?,
                "verbose" => cfg.verbose = yes_no(key, value)?,
                "fault" => {
                    cfg.fault = Fault::NAMES
                        .iter()
                        .find(|(n, _)| *n == value)
                        .map(|(_, f)| *f)
                        .ok_or(BootArgError::BadValue { key, value, expected: "none|breakpoint|illegal|overflow|unmapped|unaligned|callsys|panic|panic_stuck|ending" })?;
                }
                "tick_hz" => {
                    cfg.tick_hz = value
                        .parse::<u32>()
                        .ok()
                        .filter(|hz| (10..=1000).contains(hz))
                        .ok_or(BootArgError::BadValue { key, value, expected: "a whole number from 10 to 1000" })?;
                }
                "storm_rounds" => cfg.storm_rounds = number(key, value, 1, 10_000_000)?,
                "ipi_lock" => cfg.ipi_lock = yes_no(key, value)?,
                "ipi_poll" => cfg.ipi_poll = yes_no(key, value)?,
                "resend" => cfg.resend = yes_no(key, value)?,
                "watchdog_ms" => cfg.watchdog_ms = number(key, value, 0, 600_000)?,
                "irq_load_us" => cfg.irq_load_us = number(key, value, 0, 5_000)?,
                "stress" => cfg.stress = number(key, value, 1, 100_000_000)?,
                "inject" => {
                    cfg.inject = Inject::NAMES
                        .iter()
                        .find(|(n, _)| *n == value)
                        .map(|(_, i)| *i)
                        .ok_or(BootArgError::BadValue { key, value, expected: "none|edge_loss|masked_wait|both" })?;
                }
                "clock_skew_us" => cfg.clock_skew_us = number(key, value, 0, 10_000_000)?,
                "machine" => cfg.machine = choice(MachineArg::NAMES, key, value, "auto|clipper|tsunami|marvel")?,
                "console" => cfg.console = choice(ConsoleArg::NAMES, key, value, "auto|srm|uart")?,
                "clock" => cfg.clock = choice(ClockArg::NAMES, key, value, "periodic|alarm")?,
                "wait" => cfg.wait = choice(WaitArg::NAMES, key, value, "spin|nap")?,
                "bench" => cfg.bench = number(key, value, 1000, 100_000)?,
                "nap_after_us" => cfg.nap_after_us = number(key, value, 0, 10_000)?,
                "wtint" => cfg.wtint_returns = choice(&[("waits", false), ("returns", true)], key, value, "waits|returns")?,
                "cpus" => {
                    let mut mask = crate::cpumask::CpuMask::EMPTY;
                    for id in value.split(',') {
                        let id = id
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n < 64)
                            .ok_or(BootArgError::BadValue { key, value, expected: "comma-separated CPU ids from 0 to 63" })?;
                        if mask.contains(id) {
                            return Err(BootArgError::BadValue { key, value, expected: "each CPU id once" });
                        }
                        mask.insert(id);
                    }
                    cfg.cpus = Some(mask);
                }
                _ => unreachable!("every key in KEYS is handled"),
            }
        }
        Ok(cfg)
    }

    /// Whether the self-test `name` is selected by `tests=`.
    pub fn selects(&self, name: &str) -> bool {
        self.test_count == 0 || self.tests[..self.test_count].iter().any(|p| name.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(BootConfig::parse("").unwrap(), BootConfig::default());
        assert_eq!(BootConfig::parse("   \t ").unwrap(), BootConfig::default());
    }

    #[test]
    fn parses_every_key() {
        let c = BootConfig::parse("tests=div,mem force_fail=yes fault=overflow tick_hz=250 verbose=on storm_rounds=77").unwrap();
        assert_eq!(c.storm_rounds, 77);
        assert_eq!(&c.tests[..c.test_count], &["div", "mem"]);
        assert!(c.force_fail && c.verbose);
        assert_eq!(c.fault, Fault::Overflow);
        assert_eq!(c.tick_hz, 250);
        assert!(c.selects("div.edges") && c.selects("mem.copy") && !c.selects("heap.vec"));
    }

    #[test]
    fn matrix_keys_parse() {
        let c = BootConfig::parse("ipi_lock=on ipi_poll=off resend=on watchdog_ms=250 inject=both irq_load_us=40 stress=100").unwrap();
        assert!(c.ipi_lock && !c.ipi_poll && c.resend);
        assert_eq!((c.watchdog_ms, c.irq_load_us, c.stress), (250, 40, 100));
        assert_eq!(c.inject, Inject { edge_loss: true, masked_wait: true });
        assert_eq!(c.inject.name(), "both");
        assert!(matches!(BootConfig::parse("inject=sometimes"), Err(BootArgError::BadValue { key: "inject", .. })));
        assert!(matches!(BootConfig::parse("stress=0"), Err(BootArgError::BadValue { key: "stress", .. })));
        assert_eq!(BootConfig::parse("").unwrap().wait, WaitArg::Nap);
        assert_eq!(BootConfig::parse("wait=spin").unwrap().wait, WaitArg::Spin);
        assert!(matches!(BootConfig::parse("wait=doze"), Err(BootArgError::BadValue { key: "wait", .. })));
        assert_eq!(BootConfig::parse("nap_after_us=250").unwrap().nap_after_us, 250);
        assert!(matches!(BootConfig::parse("nap_after_us=10001"), Err(BootArgError::BadValue { key: "nap_after_us", .. })));
        assert_eq!(BootConfig::parse("bench=2000").unwrap().bench, 2000);
        assert!(matches!(BootConfig::parse("bench=10"), Err(BootArgError::BadValue { key: "bench", .. })), "fewer than 1000 samples");
        assert!(matches!(BootConfig::parse("irq_load_us=9999"), Err(BootArgError::BadValue { .. })));
        assert!(!BootConfig::parse("").unwrap().wtint_returns);
        assert!(BootConfig::parse("wtint=returns").unwrap().wtint_returns);
        assert!(!BootConfig::parse("wtint=waits").unwrap().wtint_returns);
        assert!(matches!(BootConfig::parse("wtint=sleeps"), Err(BootArgError::BadValue { key: "wtint", .. })));
    }

    #[test]
    fn no_filter_selects_everything() {
        assert!(BootConfig::default().selects("anything"));
    }

    #[test]
    fn unknown_key_is_named_in_one_line() {
        let e = BootConfig::parse("tests=div bogus=1").unwrap_err();
        assert_eq!(e, BootArgError::UnknownKey("bogus"));
        let msg = e.to_string();
        assert!(msg.contains("'bogus'") && msg.contains("tick_hz") && !msg.contains('\n'), "{msg}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(matches!(BootConfig::parse("tick_hz=0"), Err(BootArgError::BadValue { key: "tick_hz", .. })));
        assert!(matches!(BootConfig::parse("tick_hz=5000"), Err(BootArgError::BadValue { .. })));
        assert!(matches!(BootConfig::parse("tick_hz=fast"), Err(BootArgError::BadValue { .. })));
        assert!(matches!(BootConfig::parse("force_fail=maybe"), Err(BootArgError::BadValue { .. })));
        assert!(matches!(BootConfig::parse("fault=explode"), Err(BootArgError::BadValue { .. })));
        assert!(matches!(BootConfig::parse("tests=,"), Err(BootArgError::BadValue { .. })));
        assert!(matches!(BootConfig::parse("tests=a,b,c,d,e,f,g,h,i"), Err(BootArgError::BadValue { .. })));
    }

    #[test]
    fn malformed_and_repeated_words_are_refused() {
        assert_eq!(BootConfig::parse("verbose"), Err(BootArgError::NotKeyValue("verbose")));
        assert_eq!(BootConfig::parse("verbose=yes verbose=no"), Err(BootArgError::Repeated("verbose")));
    }

    #[test]
    fn machine_console_clock_and_cpus() {
        let c = BootConfig::parse("machine=marvel console=srm clock=alarm cpus=0,2,3 clock_skew_us=2500").unwrap();
        assert_eq!(c.clock_skew_us, 2500);
        assert_eq!((c.machine, c.console, c.clock), (MachineArg::Marvel, ConsoleArg::Srm, ClockArg::Alarm));
        assert_eq!(c.cpus, Some(crate::cpumask::CpuMask(0b1101)));
        let d = BootConfig::parse("cpus=63,12").unwrap();
        assert_eq!(d.cpus, Some(crate::cpumask::CpuMask((1 << 63) | (1 << 12))));
        assert_eq!(name_of(ConsoleArg::NAMES, ConsoleArg::Uart), "uart");
        for bad in ["machine=titan", "console=vga", "clock=rtc", "cpus=", "cpus=64", "cpus=1,1", "cpus=0,x", "cpus=-1"] {
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
}
