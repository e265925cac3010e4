//! The one-boot experiment's report (`cargo xtask report LOG [--out DIR]`):
//! a serial console capture of a boot with `experiment=native|injected|all`
//! turned into tables.
//!
//! The kernel prints an `experiment-begin:` line (the machine's identity and
//! the parameters), one `experiment-cell:` line per run of a cell, an
//! `experiment-end:` line and the verdict line `alphasmp: PASS (...)` or
//! `alphasmp: FAIL (...)`, all of them `key=value` words in format version
//! [`FORMAT_VERSION`]. A capture holds more than that: the SRM console's and
//! the loader's lines, terminal escape sequences, CR/LF endings and stray
//! CRs, noise before a line's text, and perhaps several boots (on 2 and on
//! 4 CPUs, say), and a capture at 9600 baud may garble a line or stop
//! early. [`parse`] finds every begin..end block; a cell or probe line it
//! cannot read exactly costs that line, noted (`capture_notes`), and a
//! block the capture ends inside is a partial report; it refuses, on one
//! line, only what leaves nothing to report (no experiment, a begin line of
//! another format version, a block with no readable line); [`markdown`]
//! and [`json`] write the tables, keyed by CPU count, the notes first;
//! [`run_cli`] does all of it for a file.

use std::fmt::{self, Write as _};
use std::path::Path;

use alphasmp_bootargs::experiment::{
    Expect, FAULTS, FIXES, FORMAT_VERSION, NATIVE_FAULTS, predict_for,
};
use alphasmp_bootargs::lines::{
    CLOCK_CHECK, EDGE_PROBE, EXPERIMENT_BEGIN, EXPERIMENT_CELL, EXPERIMENT_END, Kind,
};

use crate::matrix::json_str;
use crate::util::{Context, Result, err};

/// The line tags of `alphasmp_bootargs::lines` with their colon (a test
/// checks they agree).
const BEGIN: &str = "experiment-begin:";
const CELL: &str = "experiment-cell:";
const END: &str = "experiment-end:";
const PROBE: &str = "edge-probe:";
const CLOCK: &str = "clock-check:";
const BANNER: &str = "hwrpb: system ";
const PASS: &str = "alphasmp: PASS";
const FAIL: &str = "alphasmp: FAIL";

/// The begin keys that identify the machine (the others are parameters).
const IDENTITY_KEYS: &[&str] = &[
    "system", "member", "cpu_type", "cpu", "pal", "machine", "cpus", "kernel",
];

/// Outcomes in the order a repeated cell's counts are listed.
const OUTCOMES: &[&str] = &["completed", "deadlock", "crawl", "error", "unrecovered"];

/// The value of one `key=value` word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// An unsigned number (`done=399`).
    Count(u64),
    /// A number that may be negative (`detect_ms=-1`).
    Signed(i64),
    /// Comma-separated numbers (`done_per_cpu=114,87,113,85`).
    List(Vec<u64>),
    /// Any other word (`fault=edge_loss`, `pal=0x10001`).
    Text(String),
}

impl Value {
    fn parse(text: &str, kind: Kind) -> Option<Value> {
        match kind {
            Kind::Count => text.parse().ok().map(Value::Count),
            Kind::Signed => text.parse().ok().map(Value::Signed),
            Kind::List => text
                .split(',')
                .map(|n| n.parse().ok())
                .collect::<Option<Vec<u64>>>()
                .map(Value::List),
            Kind::Text => (!text.is_empty()).then(|| Value::Text(text.to_string())),
        }
    }

    /// A key this tool does not know: a number if it reads as one.
    fn infer(text: &str) -> Value {
        Value::parse(text, Kind::Count)
            .or_else(|| Value::parse(text, Kind::Signed))
            .unwrap_or_else(|| Value::Text(text.to_string()))
    }

    fn json(&self) -> String {
        match self {
            Value::Count(n) => n.to_string(),
            Value::Signed(n) => n.to_string(),
            Value::List(l) => format!(
                "[{}]",
                l.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Text(s) => json_str(s),
        }
    }
}

impl fmt::Display for Value {
    /// As the kernel prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Count(n) => write!(f, "{n}"),
            Value::Signed(n) => write!(f, "{n}"),
            Value::List(l) => {
                for (i, n) in l.iter().enumerate() {
                    write!(f, "{}{n}", if i > 0 { "," } else { "" })?;
                }
                Ok(())
            }
            Value::Text(s) => write!(f, "{s}"),
        }
    }
}

/// A line's `key=value` words, in the order printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, Value)>);

impl Fields {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A count (0 if absent or not a count; parsed lines have every
    /// required key).
    pub fn count(&self, key: &str) -> u64 {
        match self.get(key) {
            Some(Value::Count(n)) => *n,
            Some(Value::Signed(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        }
    }

    /// A word ("" if absent or not text).
    pub fn text(&self, key: &str) -> &str {
        match self.get(key) {
            Some(Value::Text(s)) => s,
            _ => "",
        }
    }
}

/// One run of a cell: an `experiment-cell:` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Its line number in the log (from 1).
    pub line: usize,
    /// Every `key=value` word of the line, `v` first.
    pub fields: Fields,
    /// `predicted=`, read.
    pub predicted: Expect,
}

impl Run {
    /// The cell's number in the set (`n=`, from 1).
    pub fn n(&self) -> u64 {
        self.fields.count("n")
    }
    /// Which run of the cell this is (`run=`, from 1).
    pub fn run(&self) -> u64 {
        self.fields.count("run")
    }
    /// How many runs the cell has (`runs=`).
    pub fn runs(&self) -> u64 {
        self.fields.count("runs")
    }
    /// The fault row (`fault=`).
    pub fn fault(&self) -> &str {
        self.fields.text("fault")
    }
    /// The fix set (`fix=`).
    pub fn fix(&self) -> &str {
        self.fields.text("fix")
    }
    /// A cell of the native set (`native=1`).
    pub fn native(&self) -> bool {
        self.fields.count("native") == 1
    }
    /// `outcome=`: completed, deadlock, crawl, error or unrecovered.
    pub fn outcome(&self) -> &str {
        self.fields.text("outcome")
    }
    /// Whether the prediction admits the outcome.
    pub fn as_predicted(&self) -> bool {
        self.predicted.admits(self.outcome())
    }
    /// The row label: the fault, `(native)` for the native set's rows.
    pub fn row(&self) -> String {
        row_label(self.fault(), self.native())
    }
}

/// One experiment: an `experiment-begin:` .. `experiment-end:` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Experiment {
    /// The begin line's number in the log (from 1).
    pub line: usize,
    /// The begin line's fields: identity and parameters.
    pub begin: Fields,
    /// The serial number from the `hwrpb:` banner of the same boot, if any.
    pub serial: Option<String>,
    /// The clock check's lines (one per CPU), before the probe.
    pub clocks: Vec<Fields>,
    /// The lost-edge probe's lines (one per target CPU), before the cells.
    pub probes: Vec<Fields>,
    /// Every run of every cell, in log order.
    pub runs: Vec<Run>,
    /// The end line's number in the log.
    pub end_line: usize,
    /// The end line's fields: the kernel's own totals.
    pub end: Fields,
    /// The verdict line's text after `alphasmp: ` (`PASS (...)`), if
    /// printed.
    pub verdict: Option<String>,
    /// What the capture lacked or garbled, one line each (a cell line that
    /// did not read, a lost line, the end that never came): the report is
    /// made from the rest, and says so.
    pub capture_notes: Vec<String>,
    /// The capture ends before the experiment's end line: `end` is empty.
    pub partial: bool,
}

impl Experiment {
    /// The CPU count the experiment ran on.
    pub fn cpus(&self) -> u64 {
        self.begin.count("cpus")
    }
    /// Runs whose outcome the prediction does not admit.
    pub fn not_as_predicted(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| !r.as_predicted())
    }
}

/// Where a line is, for messages: `LOG, line 12`.
struct At<'a> {
    name: &'a str,
    line: usize,
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, line {}", self.name, self.line)
    }
}

/// Parses every experiment in a console capture, in log order. A cell or
/// probe line that does not parse is skipped and noted, an experiment the
/// capture ends inside is kept as partial; refuses, on one line, a log
/// without an experiment, a begin line that does not parse (another format
/// version), an experiment with nothing readable before the capture ends.
pub fn parse(text: &str) -> std::result::Result<Vec<Experiment>, String> {
    parse_named(text, "the log")
}

/// [`parse`], with `name` for the log in messages.
fn parse_named(text: &str, name: &str) -> std::result::Result<Vec<Experiment>, String> {
    let mut done: Vec<Experiment> = Vec::new();
    let mut open: Option<Experiment> = None;
    let mut serial: Option<String> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let at = At { name, line: i + 1 };
        // A stray CR returns the carriage: what follows it may be another
        // line of its own.
        for segment in raw.split('\r') {
            let clean = strip_escapes(segment);
            let Some((prefix, body)) = find_prefix(&clean) else {
                continue;
            };
            match prefix {
                BANNER => serial = serial_of(body),
                BEGIN => {
                    if let Some(o) = open.take() {
                        done.push(partial(name, o, Some(at.line))?);
                    }
                    let begin = fields_of(body, "experiment-begin", EXPERIMENT_BEGIN.keys(), &at)?;
                    open = Some(Experiment {
                        line: at.line,
                        begin,
                        serial: serial.take(),
                        clocks: Vec::new(),
                        probes: Vec::new(),
                        runs: Vec::new(),
                        end_line: 0,
                        end: Fields::default(),
                        verdict: None,
                        capture_notes: Vec::new(),
                        partial: false,
                    });
                }
                CLOCK => {
                    if let Some(o) = open.as_mut() {
                        match fields_of(body, "clock-check", CLOCK_CHECK.keys(), &at) {
                            Ok(f) => o.clocks.push(f),
                            Err(why) => o.capture_notes.push(format!("{why}; skipped")),
                        }
                    }
                }
                PROBE => {
                    // The probe of an experiment (a probe run on its own,
                    // `edge_probe=N`, has no experiment to belong to).
                    if let Some(o) = open.as_mut() {
                        match fields_of(body, "edge-probe", EDGE_PROBE.keys(), &at) {
                            Ok(f) => o.probes.push(f),
                            Err(why) => o.capture_notes.push(format!("{why}; skipped")),
                        }
                    }
                }
                CELL => {
                    let Some(o) = open.as_mut() else {
                        return Err(format!(
                            "{at}: experiment-cell line outside an experiment (no {BEGIN} line before it)"
                        ));
                    };
                    // A line the capture garbled (noise at 9600 baud, two
                    // lines run together) costs that run, not the report.
                    match run_of(body, &at, &o.begin) {
                        Ok(run) => o.runs.push(run),
                        Err(why) => o.capture_notes.push(format!("{why}; skipped")),
                    }
                }
                END => {
                    let Some(mut o) = open.take() else {
                        return Err(format!(
                            "{at}: experiment-end line without an experiment (no {BEGIN} line before it)"
                        ));
                    };
                    o.end = fields_of(body, "experiment-end", EXPERIMENT_END.keys(), &at)?;
                    o.end_line = at.line;
                    let said = o.end.count("runs");
                    if said != o.runs.len() as u64 {
                        o.capture_notes.push(format!(
                            "{at}: experiment-end says runs={said}, but the experiment begun at line {} has {} readable experiment-cell line(s) (lines lost or garbled in the capture)",
                            o.line,
                            o.runs.len()
                        ));
                    }
                    done.push(o);
                }
                _ => {
                    // The verdict: the open experiment's (a panic), or the
                    // one just ended.
                    let text = body.strip_prefix("alphasmp: ").unwrap_or(body);
                    let verdict = Some(text.trim().to_string());
                    match (&mut open, done.last_mut()) {
                        (Some(o), _) => o.verdict = verdict,
                        (None, Some(e)) if e.verdict.is_none() => e.verdict = verdict,
                        _ => {}
                    }
                }
            }
        }
    }
    if let Some(o) = open.take() {
        done.push(partial(name, o, None)?);
    }
    if done.is_empty() {
        return Err(format!(
            "no experiment in {name}: no line contains `{BEGIN}` (the kernel prints it when booted with experiment=native, injected or all)"
        ));
    }
    Ok(done)
}

/// An experiment without its end line, kept as a partial report if the
/// capture holds something of it (a probe line or a cell), else refused.
fn partial(
    name: &str,
    mut o: Experiment,
    next_begin: Option<usize>,
) -> std::result::Result<Experiment, String> {
    let why = unfinished(name, &o, next_begin);
    if o.runs.is_empty() && o.probes.is_empty() && o.clocks.is_empty() {
        return Err(why);
    }
    o.capture_notes.push(format!("{why}: a partial report"));
    o.partial = true;
    Ok(o)
}

/// Why an experiment has no end line.
fn unfinished(name: &str, o: &Experiment, next_begin: Option<usize>) -> String {
    let cells = o.begin.count("cells");
    let at = match o.runs.last() {
        None => format!("before the first of its {cells} cells"),
        Some(r) => format!(
            "after cell {} of {cells} ({} x {}{})",
            r.n(),
            r.row(),
            r.fix(),
            if r.runs() > 1 {
                format!(", run {} of {}", r.run(), r.runs())
            } else {
                String::new()
            }
        ),
    };
    let verdict = o
        .verdict
        .as_ref()
        .map(|v| format!("; the kernel's verdict: {v}"))
        .unwrap_or_default();
    match next_begin {
        None => format!(
            "{name} ends {at} of the experiment begun at line {}, without its {END} line (a truncated capture?){verdict}",
            o.line
        ),
        Some(next) => format!(
            "{name}: the experiment begun at line {} stops {at} without its {END} line; another begins at line {next}{verdict}",
            o.line
        ),
    }
}

/// Splits a line's words into fields, checking the version and that every
/// key of `keys` is there with a value of its kind.
fn fields_of(
    body: &str,
    what: &str,
    keys: &[(&str, Kind)],
    at: &At<'_>,
) -> std::result::Result<Fields, String> {
    let mut raw: Vec<(&str, &str)> = Vec::new();
    for word in body.split_whitespace() {
        if let Some((k, v)) = word.split_once('=')
            && !k.is_empty()
            && !raw.iter().any(|(seen, _)| *seen == k)
        {
            raw.push((k, v));
        }
    }
    let find = |key: &str| raw.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let Some(v) = find("v") else {
        return Err(format!(
            "{at}: {what} line has no `v=` (format version); this tool reads v={FORMAT_VERSION}"
        ));
    };
    if v.parse::<u32>().ok() != Some(FORMAT_VERSION) {
        return Err(format!(
            "{at}: {what} line is format v={v}; this tool reads v={FORMAT_VERSION} only"
        ));
    }
    if let Some((key, _)) = keys.iter().find(|(key, _)| find(key).is_none()) {
        return Err(format!("{at}: {what} line has no `{key}=`"));
    }
    let mut fields = Vec::with_capacity(raw.len());
    for (k, text) in raw {
        let value = match keys.iter().find(|(key, _)| *key == k) {
            Some(&(_, kind)) => Value::parse(text, kind).ok_or_else(|| {
                format!(
                    "{at}: {what} line, key `{k}`: `{text}` is {}",
                    kind.expected()
                )
            })?,
            None => Value::infer(text),
        };
        fields.push((k.to_string(), value));
    }
    Ok(Fields(fields))
}

/// Parses and checks an `experiment-cell:` line.
fn run_of(body: &str, at: &At<'_>, begin: &Fields) -> std::result::Result<Run, String> {
    let fields = fields_of(body, "experiment-cell", EXPERIMENT_CELL.keys(), at)?;
    let bad = |key: &str, why: String| {
        Err(format!(
            "{at}: experiment-cell line, key `{key}`: `{}` {why}",
            fields.get(key).map(|v| v.to_string()).unwrap_or_default()
        ))
    };
    let Some(predicted) = Expect::by_name(fields.text("predicted")) else {
        return bad("predicted", "is not completes, deadlocks or either".into());
    };
    if !FIXES.iter().any(|f| f.name == fields.text("fix")) {
        let names: Vec<&str> = FIXES.iter().map(|f| f.name).collect();
        return bad(
            "fix",
            format!("is not a fix set this tool knows ({})", names.join(", ")),
        );
    }
    if fields.count("native") > 1 {
        return bad("native", "is not 0 or 1".into());
    }
    let cells = begin.count("cells");
    if !(1..=cells).contains(&fields.count("n")) {
        return bad(
            "n",
            format!("is not a cell of this experiment (1 to {cells})"),
        );
    }
    let runs = fields.count("runs");
    if !(1..=runs).contains(&fields.count("run")) {
        return bad("run", format!("is not a run from 1 to runs={runs}"));
    }
    if let Some(Value::List(l)) = fields.get("done_per_cpu") {
        let cpus = fields.count("cpus");
        if l.len() as u64 != cpus {
            return bad(
                "done_per_cpu",
                format!("has {} number(s) for cpus={cpus}", l.len()),
            );
        }
    }
    Ok(Run {
        line: at.line,
        fields,
        predicted,
    })
}

/// The earliest kernel prefix in a line, and the text after it (for the
/// verdict, the text from `alphasmp: ` on).
fn find_prefix(line: &str) -> Option<(&'static str, &str)> {
    let (at, p) = [BEGIN, CELL, END, PROBE, CLOCK, BANNER, PASS, FAIL]
        .into_iter()
        .filter_map(|p| line.find(p).map(|at| (at, p)))
        .min_by_key(|&(at, _)| at)?;
    Some(match p {
        PASS | FAIL => (p, &line[at..]),
        _ => (p, &line[at + p.len()..]),
    })
}

/// The serial number from the `hwrpb:` banner (`... ssn 'QEMU', CPU type ...`).
fn serial_of(banner: &str) -> Option<String> {
    let rest = banner.split_once(" ssn '")?.1;
    let (ssn, _) = rest.rsplit_once("', CPU type")?;
    let ssn = ssn.trim();
    (!ssn.is_empty()).then(|| ssn.to_string())
}

/// Removes terminal escape sequences and control characters (a tab
/// becomes a space).
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next();
                            break;
                        }
                    }
                }
                // Character set designations take one more character.
                Some('(' | ')' | '*' | '+' | '#') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether bytes look like a text capture: at most one in ten of the first
/// 64 KiB a control byte (other than tab, line endings, escape, bell,
/// backspace, form feed) or not UTF-8. Returns the text (invalid UTF-8
/// replaced) or why not.
fn text_of(bytes: &[u8]) -> std::result::Result<String, String> {
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    let control = sample
        .iter()
        .filter(|&&b| (b < 0x20 && !b"\t\n\r\x1b\x07\x08\x0c".contains(&b)) || b == 0x7f)
        .count();
    let invalid = String::from_utf8_lossy(sample)
        .chars()
        .filter(|&c| c == char::REPLACEMENT_CHARACTER)
        .count();
    if (control + invalid) * 10 > sample.len() {
        return Err(format!(
            "not a text console capture ({} of its first {} bytes are control bytes or not UTF-8)",
            control + invalid,
            sample.len()
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn row_label(fault: &str, native: bool) -> String {
    if native {
        format!("{fault} (native)")
    } else {
        fault.to_string()
    }
}

/// The table's rows, `(fault, native)`: the native set's rows, the injected
/// set's, then any other fault in log order.
fn rows(e: &Experiment) -> Vec<(&str, bool)> {
    let mut rows: Vec<(&str, bool)> = Vec::new();
    let canonical = NATIVE_FAULTS
        .iter()
        .map(|f| (*f, true))
        .chain(FAULTS.iter().map(|f| (*f, false)));
    for (fault, native) in canonical {
        if e.runs
            .iter()
            .any(|r| r.fault() == fault && r.native() == native)
        {
            rows.push((fault, native));
        }
    }
    for r in &e.runs {
        if !rows.contains(&(r.fault(), r.native())) {
            rows.push((r.fault(), r.native()));
        }
    }
    rows
}

/// A table cell: outcome(s), detection time, counters, census.
fn cell_text(runs: &[&Run]) -> String {
    let repeated = runs.len() > 1 || runs.iter().any(|r| r.runs() > 1);
    let mut outcomes: Vec<&str> = OUTCOMES
        .iter()
        .copied()
        .filter(|o| runs.iter().any(|r| r.outcome() == *o))
        .collect();
    for r in runs {
        if !outcomes.contains(&r.outcome()) {
            outcomes.push(r.outcome());
        }
    }
    let heads: Vec<String> = outcomes
        .iter()
        .map(|&outcome| {
            let these: Vec<&&Run> = runs.iter().filter(|r| r.outcome() == outcome).collect();
            let mut head = if outcome == "deadlock" {
                "**deadlock**".to_string()
            } else {
                md_escape(outcome)
            };
            if repeated {
                write!(head, " {}/{}", these.len(), runs.len()).ok();
            }
            if outcome == "deadlock" {
                let ms: Vec<i64> = these
                    .iter()
                    .filter_map(|r| match r.fields.get("detect_ms") {
                        Some(Value::Signed(ms)) if *ms >= 0 => Some(*ms),
                        _ => None,
                    })
                    .collect();
                match (ms.iter().min(), ms.iter().max()) {
                    (Some(lo), Some(hi)) if lo == hi => write!(head, " {lo} ms").ok(),
                    (Some(lo), Some(hi)) => write!(head, " {lo}-{hi} ms").ok(),
                    _ => write!(head, " ? ms").ok(),
                };
            }
            if these.first().is_some_and(|r| !r.as_predicted()) {
                head.push_str(" !");
            }
            head
        })
        .collect();
    let sum = |key: &str| runs.iter().map(|r| r.fields.count(key)).sum::<u64>();
    format!(
        "{} ({}/{}+{}/{}/{}) census {}/{}/{}",
        heads.join(", "),
        sum("dropped"),
        sum("rescued_call"),
        sum("idle_rescued_call"),
        sum("resends"),
        sum("lock_drains"),
        sum("census_delivered"),
        sum("census_late"),
        sum("census_stranded"),
    )
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The machine's identity, without the CPU count.
fn identity_text(e: &Experiment) -> String {
    let b = &e.begin;
    let mut s = format!(
        "system type {}, member {}; CPU {} (type {}); PAL revision {}; machine vector `{}`",
        b.count("system"),
        b.count("member"),
        b.text("cpu"),
        b.count("cpu_type"),
        b.text("pal"),
        b.text("machine"),
    );
    if let Some(ssn) = &e.serial {
        write!(s, "; serial number `{ssn}`").ok();
    }
    write!(s, "; kernel {}", b.text("kernel")).ok();
    s
}

/// The parameters, and any begin key this tool does not know.
fn params_text(e: &Experiment) -> String {
    let b = &e.begin;
    let mut s = format!(
        "{} shootdowns per CPU in each cell (`cell_size`); cells predicted \"either\" run {} times (`either_runs`); watchdog {} ms; tick {} Hz; interrupt load {} us; waiters `wait={}`",
        b.count("cell_size"),
        b.count("either_runs"),
        b.count("watchdog_ms"),
        b.count("tick_hz"),
        b.count("irq_load_us"),
        b.text("wait"),
    );
    for (k, v) in &b.0 {
        if k != "v" && !EXPERIMENT_BEGIN.keys().iter().any(|(key, _)| key == k) {
            write!(s, "; `{k}={v}`").ok();
        }
    }
    s
}

fn cpus_text(n: u64) -> String {
    if n == 1 {
        "1 CPU".into()
    } else {
        format!("{n} CPUs")
    }
}

/// The report as Markdown: the machine and the parameters, then one table
/// per experiment in the form of `results/matrix.md` (rows: faults,
/// columns: fix sets), ordered by CPU count, each with its census, verdict
/// and end line.
pub fn markdown(exps: &[Experiment]) -> String {
    let mut s = String::from("# One-boot experiment\n\n");
    let mut order: Vec<&Experiment> = exps.iter().collect();
    order.sort_by_key(|e| e.cpus());
    let Some(first) = order.first() else {
        s.push_str("No experiment.\n");
        return s;
    };
    let identity = identity_text(first);
    let mut counts: Vec<u64> = order.iter().map(|e| e.cpus()).collect();
    counts.dedup();
    let cpus = match counts.as_slice() {
        [one] => cpus_text(*one),
        more => format!(
            "{} CPUs",
            more.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    writeln!(s, "Machine: {identity}; {cpus}.\n").ok();
    let params = params_text(first);
    let same_params = order.iter().all(|e| params_text(e) == params);
    if same_params {
        writeln!(s, "Parameters: {params}.\n").ok();
    }
    writeln!(s, "Cell: outcome (for a cell predicted \"either\", run several times, how many runs ended each way, e.g. `deadlock 2/3, crawl 1/3`; the time to detection for a deadlock, a range over its runs), then (IPIs dropped / CALL messages rescued by the poll in interrupts + by the idle loop's poll / re-sent / lock drains) and the census `delivered/late/stranded`, both summed over the cell's runs. `!` marks an outcome the protocol did not predict; rows marked (native) ran with no injected hardware fault, so a `!` there is a finding about the machine.").ok();
    for e in &order {
        let twin = order
            .iter()
            .filter(|o| o.cpus() == e.cpus() && o.begin.text("set") == e.begin.text("set"))
            .count()
            > 1;
        write!(
            s,
            "\n**{}**, set `{}` ({} cells, {} runs",
            cpus_text(e.cpus()),
            e.begin.text("set"),
            e.begin.count("cells"),
            e.runs.len()
        )
        .ok();
        if twin {
            write!(s, "; log lines {}-{}", e.line, e.end_line).ok();
        }
        writeln!(s, ")\n").ok();
        let own = identity_text(e);
        if own != identity {
            writeln!(s, "Machine: {own}.\n").ok();
        }
        if !same_params {
            writeln!(s, "Parameters: {}.\n", params_text(e)).ok();
        }
        for note in &e.capture_notes {
            writeln!(s, "Capture: {}.\n", md_escape(note.trim_end_matches('.'))).ok();
        }
        clock(&mut s, e);
        probe(&mut s, e);
        table(&mut s, e);
        if !e.partial {
            census(&mut s, e);
            notes(&mut s, e);
        }
        match &e.verdict {
            Some(v) => writeln!(s, "\nVerdict: `alphasmp: {v}`").ok(),
            None => writeln!(s, "\nVerdict: none in the log").ok(),
        };
        if e.partial {
            writeln!(
                s,
                "\nEnd: none in the capture; a partial report of {} run(s) of {} cells.",
                e.runs.len(),
                e.begin.count("cells")
            )
            .ok();
            continue;
        }
        let end = &e.end;
        let unrecovered = match end.count("unrecovered") {
            0 => "no unrecovered cell".to_string(),
            n => format!("stopped at unrecovered cell {n}"),
        };
        writeln!(
            s,
            "\nEnd: {} runs, {} cells done; {} injected run(s) not as predicted, {} native finding(s); {unrecovered}; {} stranded IPIs; {:.1} s.",
            end.count("runs"),
            end.count("cells_done"),
            end.count("unexpected"),
            end.count("native_findings"),
            end.count("census_stranded"),
            end.count("elapsed_ms") as f64 / 1000.0
        )
        .ok();
    }
    s
}

/// The clock check: each CPU's interrupt rate against the one the kernel
/// uses, and a warning when they differ by more than a tenth.
fn clock(s: &mut String, e: &Experiment) {
    if e.clocks.is_empty() {
        return;
    }
    let stated = e.clocks[0].count("stated_hz");
    let mut rates = Vec::new();
    let mut off = Vec::new();
    for c in &e.clocks {
        let (cpu, n, cycles, hz) = (
            c.count("cpu"),
            c.count("interrupts"),
            c.count("cycles"),
            c.count("cycle_hz"),
        );
        let ms = (cycles * 1000).checked_div(hz).unwrap_or(0);
        let rate = (n * hz).checked_div(cycles).unwrap_or(0);
        rates.push(format!("CPU {cpu} {rate} Hz ({n} in {ms} ms)"));
        if rate * 10 < stated * 9 || rate * 10 > stated * 11 {
            off.push(cpu.to_string());
        }
    }
    writeln!(
        s,
        "Clock: the kernel times everything by {stated} Hz (the HWRPB's `intr_freq`); counted against each CPU's own cycle counter: {}.\n",
        rates.join(", ")
    )
    .ok();
    if !off.is_empty() {
        writeln!(
            s,
            "**Clock warning**: CPU(s) {} took their clock interrupts at a rate more than a tenth away from {stated} Hz, so the watchdog, the cells' bounds and the census's window run off by that ratio there (where the timer floor is on); an emulator that delivers interrupts late under host load shows this too.\n",
            off.join(", ")
        )
        .ok();
    }
}

/// The lost-edge probe's totals and what they answer.
fn probe(s: &mut String, e: &Experiment) {
    if e.probes.is_empty() {
        writeln!(
            s,
            "Lost-edge probe: not run (`edge_probe=0`, or a kernel before it).\n"
        )
        .ok();
        return;
    }
    let sum = |key: &str| e.probes.iter().map(|p| p.count(key)).sum::<u64>();
    let (sent, inside, taken, lost, dropped, missed) = (
        sum("sent"),
        sum("in_handler"),
        sum("taken"),
        sum("lost"),
        sum("dropped"),
        sum("missed"),
    );
    let unjudged = sum("unjudged");
    // Three clock periods at the rate the kernel took from the HWRPB.
    let window_us = e.probes[0].count("window_us");
    let hz = 3_000_000u64
        .checked_div(window_us)
        .map_or(String::new(), |hz| format!(", {hz} Hz"));
    writeln!(
        s,
        "Lost-edge probe: {sent} PINGs, each sent the moment its target CPU was seen inside its clock handler at IPL 7 ({inside} still inside right after the send), with the poll off and nothing else sent until it was taken or the target had taken two clock interrupts after it (three clock periods: {window_us} us{hz}): {taken} taken by their interrupt, {lost} lost (two clock interrupts taken, the PING not); {unjudged} unjudged (the target did not run for a second); {missed} not sent (the target not seen in a handler in time){}.\n",
        if dropped > 0 {
            format!("; {dropped} dropped on purpose by an injection (`inject=`), so this is no finding about the machine")
        } else {
            String::new()
        }
    )
    .ok();
    let answer = if sent == 0 {
        "Answer: none from the probe (no PING reached a target inside its handler; under `-icount` the CPUs take turns and never meet there).".to_string()
    } else if lost > 0 && dropped == 0 {
        format!(
            "Answer: **this machine loses IPI edges**: {lost} of {sent} IPIs sent into a handler were never taken by their own interrupt. The in-interrupt poll (`poll`, the series' second fix) takes such a message at the target's next interrupt; see the `poll` column below."
        )
    } else if lost > 0 {
        format!(
            "Answer: {lost} of {sent} lost, as the injection dropped them: the probe sees a lost edge."
        )
    } else {
        format!(
            "Answer: no lost edge in {sent} IPIs sent into a handler (with none lost in {sent} tries, a rate above {:.1}% is unlikely, at 95% confidence). The cells below still show the first deadlock (waiters with IPIs masked) on any machine.",
            300.0 / sent as f64
        )
    };
    writeln!(s, "{answer}\n").ok();
}

/// The fault x fix table of one experiment.
fn table(s: &mut String, e: &Experiment) {
    write!(s, "| fault \\ fix |").ok();
    for fix in FIXES {
        write!(s, " {} |", fix.name).ok();
    }
    writeln!(s).ok();
    write!(s, "|---|").ok();
    for _ in FIXES {
        write!(s, "---|").ok();
    }
    writeln!(s).ok();
    for (fault, native) in rows(e) {
        write!(s, "| {} |", md_escape(&row_label(fault, native))).ok();
        for fix in FIXES {
            let runs: Vec<&Run> = e
                .runs
                .iter()
                .filter(|r| r.fault() == fault && r.native() == native && r.fix() == fix.name)
                .collect();
            if runs.is_empty() {
                write!(s, " |").ok();
            } else {
                write!(s, " {} |", cell_text(&runs)).ok();
            }
        }
        writeln!(s).ok();
    }
}

/// The census line under a table.
fn census(s: &mut String, e: &Experiment) {
    let sum = |key: &str, dropped: Option<bool>| {
        e.runs
            .iter()
            .filter(|r| dropped.is_none_or(|d| (r.fields.count("census_dropped") > 0) == d))
            .map(|r| r.fields.count(key))
            .sum::<u64>()
    };
    write!(
        s,
        "\nCensus: {} delivered, {} late, {} stranded",
        sum("census_delivered", None),
        sum("census_late", None),
        sum("census_stranded", None)
    )
    .ok();
    let lossy = e
        .runs
        .iter()
        .filter(|r| r.fields.count("census_dropped") > 0)
        .count();
    if lossy > 0 {
        write!(
            s,
            "; in the {lossy} run(s) with IPIs dropped on purpose, {} stranded and {} unannounced (the injection's ground truth: equal when the census found every lost edge); in the others, {} stranded",
            sum("census_stranded", Some(true)),
            sum("census_unannounced", Some(true)),
            sum("census_stranded", Some(false)),
        )
        .ok();
    }
    // A run whose census left requests neither served nor judged (the
    // kernel's census_open, with an `experiment: census:` line per CPU in
    // the log) did not judge every request: its counts are not a verdict
    // on the machine's edges.
    let open: Vec<&Run> = e
        .runs
        .iter()
        .filter(|r| r.fields.count("census_open") > 0)
        .collect();
    if !open.is_empty() {
        let cells: Vec<String> = open.iter().map(|r| r.n().to_string()).collect();
        write!(
            s,
            "; **{} request(s) left open** (neither served nor judged by the end of the census's wait) in {} run(s), cell(s) {}: the log's `experiment: census:` lines say where each such CPU's census stood, and those runs' counts are incomplete",
            open.iter().map(|r| r.fields.count("census_open")).sum::<u64>(),
            open.len(),
            cells.join(", "),
        )
        .ok();
    }
    writeln!(s, ".").ok();
}

/// Runs not as predicted, and predictions this tool would make otherwise.
fn notes(s: &mut String, e: &Experiment) {
    for r in e.not_as_predicted() {
        writeln!(
            s,
            "\nNot as predicted: cell {} ({} x {}), run {} of {}: {} (predicted {}; log line {}).",
            r.n(),
            md_escape(&r.row()),
            r.fix(),
            r.run(),
            r.runs(),
            md_escape(r.outcome()),
            r.predicted.name(),
            r.line
        )
        .ok();
    }
    let nap = e.begin.text("wait") != "spin";
    let cpus = u32::try_from(e.cpus()).unwrap_or(u32::MAX);
    let mut seen: Vec<u64> = Vec::new();
    for r in &e.runs {
        let host = predict_for(r.fault(), r.fix(), cpus, nap);
        if host != r.predicted && !seen.contains(&r.n()) {
            seen.push(r.n());
            writeln!(
                s,
                "\nNote: cell {} ({} x {}): the kernel predicted {}, this tool predicts {} (a kernel of another version?).",
                r.n(),
                md_escape(&r.row()),
                r.fix(),
                r.predicted.name(),
                host.name()
            )
            .ok();
        }
    }
    let (injected, native) =
        e.not_as_predicted().fold(
            (0, 0),
            |(i, n), r| {
                if r.native() { (i, n + 1) } else { (i + 1, n) }
            },
        );
    let (said_i, said_n) = (e.end.count("unexpected"), e.end.count("native_findings"));
    if (injected, native) != (said_i, said_n) {
        writeln!(
            s,
            "\nNote: the kernel counted {said_i} injected run(s) not as predicted and {said_n} native finding(s); the cell lines give {injected} and {native}."
        )
        .ok();
    }
}

fn json_fields<'a>(fields: impl Iterator<Item = &'a (String, Value)>) -> String {
    fields
        .map(|(k, v)| format!("{}: {}", json_str(k), v.json()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as JSON: per experiment, the identity, the parameters, every
/// run with all of its fields (numbers as numbers, `done_per_cpu` as an
/// array) and `as_predicted`, the end line's fields and the verdict.
pub fn json(exps: &[Experiment]) -> String {
    let mut s = format!("{{\n  \"format\": {FORMAT_VERSION},\n  \"experiments\": [\n");
    for (i, e) in exps.iter().enumerate() {
        let identity = json_fields(
            e.begin
                .0
                .iter()
                .filter(|(k, _)| IDENTITY_KEYS.contains(&k.as_str())),
        );
        let params = json_fields(
            e.begin
                .0
                .iter()
                .filter(|(k, _)| k != "v" && !IDENTITY_KEYS.contains(&k.as_str())),
        );
        let ssn = e.serial.as_deref().map_or("null".to_string(), json_str);
        writeln!(
            s,
            "    {{\n      \"line\": {},\n      \"identity\": {{{identity}, \"ssn\": {ssn}}},\n      \"parameters\": {{{params}}},\n      \"edge_probe\": [{}],\n      \"runs\": [",
            e.line,
            e.probes
                .iter()
                .map(|p| format!("{{{}}}", json_fields(p.0.iter())))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .ok();
        for (j, r) in e.runs.iter().enumerate() {
            writeln!(
                s,
                "        {{\"line\": {}, {}, \"as_predicted\": {}}}{}",
                r.line,
                json_fields(r.fields.0.iter()),
                r.as_predicted(),
                if j + 1 < e.runs.len() { "," } else { "" }
            )
            .ok();
        }
        let verdict = e.verdict.as_deref().map_or("null".to_string(), json_str);
        let notes = e
            .capture_notes
            .iter()
            .map(|n| json_str(n))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            s,
            "      ],\n      \"partial\": {},\n      \"capture_notes\": [{notes}],\n      \"end\": {{\"line\": {}, {}}},\n      \"verdict\": {verdict}\n    }}{}",
            e.partial,
            e.end_line,
            json_fields(e.end.0.iter()),
            if i + 1 < exps.len() { "," } else { "" }
        )
        .ok();
    }
    s.push_str("  ]\n}\n");
    s
}

/// One line for the terminal: per experiment its CPU count, runs, how many
/// were not as predicted, and the verdict.
pub fn summary(exps: &[Experiment]) -> String {
    let parts: Vec<String> = exps
        .iter()
        .map(|e| {
            let bad = e.not_as_predicted().count();
            format!(
                "{}{}: {} runs of {} cells, {}, {}",
                cpus_text(e.cpus()),
                match (e.partial, e.capture_notes.len()) {
                    (true, _) => " (partial)".to_string(),
                    (false, 0) => String::new(),
                    (false, n) => format!(" ({n} capture note(s))"),
                },
                e.runs.len(),
                e.begin.count("cells"),
                if bad == 0 {
                    "all as predicted".to_string()
                } else {
                    format!("{bad} not as predicted")
                },
                e.verdict
                    .as_deref()
                    .and_then(|v| v.split_whitespace().next())
                    .unwrap_or("no verdict")
            )
        })
        .collect();
    format!(
        "{} experiment{} ({})",
        exps.len(),
        if exps.len() == 1 { "" } else { "s" },
        parts.join("; ")
    )
}

/// `cargo xtask report LOG --out DIR`: reads the capture, parses it, writes
/// `experiment.md` and `experiment.json` into `out` (created if needed) and
/// returns a one-line summary. On bad input nothing is written and the
/// error is one line saying what is missing.
pub fn run_cli(log: &Path, out: &Path) -> Result<String> {
    let bytes = std::fs::read(log).context(|| format!("cannot read {}", log.display()))?;
    let name = log.display().to_string();
    let text = text_of(&bytes).map_err(|why| err(format!("{name}: {why}")))?;
    let exps = parse_named(&text, &name).map_err(err)?;
    std::fs::create_dir_all(out).context(|| format!("creating {}", out.display()))?;
    let md = out.join("experiment.md");
    let js = out.join("experiment.json");
    std::fs::write(&md, markdown(&exps)).context(|| format!("writing {}", md.display()))?;
    std::fs::write(&js, json(&exps)).context(|| format!("writing {}", js.display()))?;
    Ok(format!(
        "{}; wrote {} and {}",
        summary(&exps),
        md.display(),
        js.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alphasmp_bootargs::experiment::{CellId, Set};

    fn begin(cpus: usize, set: &str, cells: usize) -> String {
        format!(
            "experiment-begin: v=2 kernel=0.1.0 set={set} cells={cells} system=34 member=5 cpu_type=11 cpu=EV67 pal=0x10001 machine=clipper cpus={cpus} cell_size=150 either_runs=3 watchdog_ms=500 tick_hz=1000 irq_load_us=100 wait=spin"
        )
    }

    /// A cell line; `dropped` IPIs lost, all of them stranded.
    fn cell(
        n: usize,
        (run, runs): (u64, u64),
        c: CellId,
        expect: Expect,
        outcome: &str,
        cpus: usize,
        dropped: u64,
    ) -> String {
        let per: Vec<String> = (0..cpus).map(|i| (100 + i).to_string()).collect();
        let done: usize = (0..cpus).map(|i| 100 + i).sum();
        let detect = if outcome == "deadlock" { 505 } else { -1 };
        format!(
            "experiment-cell: v=2 n={n} run={run} runs={runs} fault={} fix={} native={} predicted={} outcome={outcome} cpus={cpus} done={done} done_per_cpu={} aborted_cpus=0 cut=0 elapsed_ms=1200 detect_ms={detect} stalls=2 resends=3 dropped={dropped} lock_drains=4 rescued_call=5 idle_rescued_call=6 rescued_other=0 errors=0 recovered_calls=1 census_requests=1000 census_delivered=990 census_late=1 census_stranded={dropped} census_open=0 census_dropped={dropped} census_unannounced={dropped} pt_frees={done} pt_elided={done} pt_synced=0 pt_deferred=0 pt_freed_late=0 pt_waiting=0",
            c.fault,
            c.fixes.name,
            c.native as u8,
            expect.name(),
            per.join(","),
        )
    }

    /// A whole experiment's lines: predicted outcomes (an "either" cell:
    /// deadlock, deadlock, crawl) unless `outcome` says otherwise.
    fn experiment(
        cpus: usize,
        set: Set,
        outcome: impl Fn(usize, u64, Expect) -> Option<&'static str>,
    ) -> Vec<String> {
        let cells: Vec<CellId> = set.cells().collect();
        let mut lines = vec![begin(cpus, set.name(), cells.len())];
        let mut runs = 0;
        for (i, c) in cells.iter().enumerate() {
            let expect = predict_for(c.fault, c.fixes.name, cpus as u32, false);
            let n_runs = if expect == Expect::Either { 3 } else { 1 };
            for run in 1..=n_runs {
                let o = outcome(i + 1, run, expect).unwrap_or(match expect {
                    Expect::Completes => "completed",
                    Expect::Deadlocks => "deadlock",
                    Expect::Either if run < 3 => "deadlock",
                    Expect::Either => "crawl",
                });
                let dropped = if c.fault.contains("edge") { 7 } else { 0 };
                lines.push(cell(i + 1, (run, n_runs), *c, expect, o, cpus, dropped));
                runs += 1;
            }
        }
        lines.push(format!(
            "experiment-end: v=2 runs={runs} cells_done={} unexpected=0 native_findings=0 unrecovered=0 census_stranded=0 elapsed_ms=134042",
            cells.len()
        ));
        lines.push(format!(
            "alphasmp: PASS (experiment: {runs} runs of {} cells)",
            cells.len()
        ));
        lines
    }

    fn predicted(cpus: usize, set: Set) -> Vec<String> {
        experiment(cpus, set, |_, _, _| None)
    }

    /// A capture as a terminal records it: CRLF, escapes, the SRM
    /// console and the loader before, xtask's closing line after, noise
    /// before a kernel line.
    fn capture(kernel: &[String]) -> String {
        let mut lines: Vec<String> = vec![
            "==> booting the kernel under QEMU".into(),
            "\x1b[2J\x1b[H\x1b]0;console\x07P00>>>boot dka0 -flags \"experiment=injected\"".into(),
            "(boot dka0.0.0.0.0 -flags experiment=injected)".into(),
            "block 0 of dka0.0.0.0.0 is a valid boot block".into(),
            "loader: alphasmp image, kernel 812 KiB, entry 0xfffffc0000310000".into(),
            "alphasmp kernel: Rust on DEC Alpha".into(),
            "hwrpb: system 34 member 5 ssn 'QEMU', CPU type 11 (EV67), 4 CPU(s), memory 256 MiB (250 MiB usable), cycle 250 MHz, interval timer 1024 Hz, max ASN 127".into(),
        ];
        for (i, l) in kernel.iter().enumerate() {
            lines.push(match i % 5 {
                0 => format!("\x1b[0m\x1b[1;32m{l}\x1b[0m"),
                1 => format!("#@~garbage{l}"),
                2 => format!("{l}\r"),
                3 => format!("half a line\r{l}"),
                _ => l.clone(),
            });
        }
        lines.push("halted CPU 0".into());
        lines.push("==> PASS (experiment: 37 runs of 25 cells)".into());
        lines.join("\r\n") + "\r\n"
    }

    #[test]
    fn parses_a_realistic_capture() {
        let log = capture(&predicted(4, Set::Injected));
        let exps = parse(&log).unwrap();
        assert_eq!(exps.len(), 1);
        let e = &exps[0];
        assert_eq!(e.runs.len(), 37);
        assert_eq!(e.cpus(), 4);
        assert_eq!(e.begin.text("cpu"), "EV67");
        assert_eq!(e.begin.text("pal"), "0x10001");
        assert_eq!(e.begin.count("system"), 34);
        assert_eq!(e.serial.as_deref(), Some("QEMU"));
        assert_eq!(e.line, 8);
        assert_eq!(e.end.count("elapsed_ms"), 134042);
        assert!(
            e.verdict
                .as_deref()
                .unwrap()
                .starts_with("PASS (experiment")
        );
        let r = &e.runs[0];
        assert_eq!((r.n(), r.fault(), r.fix()), (1, "none", "none"));
        assert_eq!(
            r.fields.get("done_per_cpu"),
            Some(&Value::List(vec![100, 101, 102, 103]))
        );
        assert_eq!(r.fields.get("detect_ms"), Some(&Value::Signed(-1)));
        assert_eq!(r.fields.count("census_delivered"), 990);
        // The fields in the kernel's order, every one of them.
        assert_eq!(r.fields.0.len(), EXPERIMENT_CELL.keys().len());
        assert_eq!(r.fields.0[0].0, "v");
        assert!(e.runs.iter().all(|r| r.as_predicted()));
        let either = e.runs.iter().filter(|r| r.runs() == 3).count();
        assert_eq!(either, 18);
    }

    /// The probe's lines after the begin line, for targets 1..=3.
    fn with_probe(cpus: usize, lost: [u64; 3], dropped: u64) -> String {
        let mut lines = predicted(cpus, Set::Native);
        let probes: Vec<String> = lost
            .iter()
            .enumerate()
            .map(|(i, l)| {
                EDGE_PROBE
                    .line([
                        &FORMAT_VERSION,
                        &(i + 1),
                        &100,
                        &80,
                        &(100 - l),
                        l,
                        &0,
                        &if i == 0 { dropped } else { 0 },
                        &0,
                        &2929,
                    ])
                    .to_string()
            })
            .collect();
        lines.splice(1..1, probes);
        capture(&lines)
    }

    #[test]
    fn the_probe_answers_whether_the_machine_loses_edges() {
        let e = parse(&with_probe(4, [0, 0, 0], 0)).unwrap();
        assert_eq!(e[0].probes.len(), 3);
        let md = markdown(&e);
        assert!(md.contains("Lost-edge probe: 300 PINGs"), "{md}");
        assert!(
            md.contains("(three clock periods: 2929 us, 1024 Hz)"),
            "{md}"
        );
        assert!(md.contains("Answer: no lost edge in 300 IPIs"), "{md}");
        assert!(md.contains("above 1.0%"), "{md}");
        let md = markdown(&parse(&with_probe(4, [0, 2, 1], 0)).unwrap());
        assert!(
            md.contains("**this machine loses IPI edges**: 3 of 300"),
            "{md}"
        );
        // Lost as an injection dropped them: no finding about the machine.
        let md = markdown(&parse(&with_probe(4, [5, 0, 0], 5)).unwrap());
        assert!(md.contains("5 dropped on purpose"), "{md}");
        assert!(!md.contains("this machine loses"), "{md}");
        // A log from before the probe: said so, nothing else.
        let md = markdown(&parse(&capture(&predicted(4, Set::Native))).unwrap());
        assert!(md.contains("Lost-edge probe: not run"), "{md}");
        // The clock check: a CPU at half the stated rate is named.
        let mut lines = predicted(4, Set::Native);
        for (cpu, n) in [(1u64, 51u64), (0, 103)] {
            lines.insert(
                1,
                CLOCK_CHECK
                    .line([
                        &FORMAT_VERSION,
                        &cpu,
                        &n,
                        &25_000_000u64,
                        &250_000_000u64,
                        &1024u64,
                    ])
                    .to_string(),
            );
        }
        let md = markdown(&parse(&capture(&lines)).unwrap());
        assert!(md.contains("CPU 0 1030 Hz (103 in 100 ms)"), "{md}");
        assert!(md.contains("CPU 1 510 Hz (51 in 100 ms)"), "{md}");
        assert!(md.contains("**Clock warning**: CPU(s) 1 took"), "{md}");
        let json = json(&parse(&with_probe(4, [0, 2, 1], 0)).unwrap());
        assert!(
            json.contains("\"edge_probe\": [{\"v\": 2, \"target\": 1"),
            "{json}"
        );
    }

    #[test]
    fn requests_left_open_are_named_under_the_table() {
        let lines = predicted(4, Set::Injected);
        let clean = markdown(&parse(&lines.join("\n")).unwrap());
        assert!(!clean.contains("left open"), "{clean}");
        let mut marked = false;
        let lines: Vec<String> = lines
            .into_iter()
            .map(|l| {
                if !marked && l.starts_with("experiment-cell:") && l.contains(" n=3 ") {
                    marked = true;
                    l.replace("census_open=0", "census_open=2")
                } else {
                    l
                }
            })
            .collect();
        assert!(marked);
        let md = markdown(&parse(&lines.join("\n")).unwrap());
        assert!(
            md.contains("**2 request(s) left open**") && md.contains("in 1 run(s), cell(s) 3:"),
            "{md}"
        );
    }

    #[test]
    fn repeated_runs_are_counted() {
        let log = predicted(4, Set::Injected).join("\n");
        let e = &parse(&log).unwrap()[0];
        let md = markdown(std::slice::from_ref(e));
        let row = md.lines().find(|l| l.starts_with("| edge_loss |")).unwrap();
        let cols: Vec<&str> = row.split(" | ").collect();
        // edge_loss x resend: either, run 3 times.
        assert_eq!(
            cols[4],
            "**deadlock** 2/3 505 ms, crawl 1/3 (21/15+18/9/12) census 2970/3/21"
        );
        // A cell run once: the bare outcome.
        assert!(cols[3].starts_with("completed (7/5+6/3/4)"), "{}", cols[3]);
    }

    /// A capture that stops (a hung machine, a terminal closed) is a
    /// partial report of what it holds, saying where it stops; one with
    /// nothing of the experiment is refused.
    #[test]
    fn truncated_log_is_a_partial_report_naming_the_last_cell() {
        let lines = predicted(4, Set::Injected);
        let log = lines[..4].join("\r\n");
        let e = parse(&log).unwrap();
        assert!(e[0].partial);
        assert_eq!(e[0].runs.len(), 3);
        let why = &e[0].capture_notes[0];
        assert!(why.contains("ends after cell 3 of 25"), "{why}");
        assert!(why.contains("none x poll"), "{why}");
        assert!(
            why.ends_with("a partial report") && !why.contains('\n'),
            "{why}"
        );
        let md = markdown(&e);
        assert!(
            md.contains("End: none in the capture; a partial report of 3 run(s) of 25 cells."),
            "{md}"
        );
        assert!(
            summary(&e).contains("4 CPUs (partial): 3 runs"),
            "{}",
            summary(&e)
        );
        // Nothing but the begin line: nothing to report.
        let why = parse(&lines[..1].join("\n")).unwrap_err();
        assert!(why.contains("before the first of its 25 cells"), "{why}");
        // A second boot that begins before the first one ended.
        let mut two = lines[..3].to_vec();
        two.extend(predicted(2, Set::Injected));
        let e = parse(&two.join("\n")).unwrap();
        assert_eq!(e.len(), 2);
        let why = &e[0].capture_notes[0];
        assert!(why.contains("stops after cell 2 of 25"), "{why}");
        assert!(why.contains("line 4"), "{why}");
        assert!(e[0].partial && !e[1].partial);
    }

    #[test]
    fn other_versions_are_refused() {
        // One cell line of another version: that run is skipped, noted.
        let mut lines = predicted(4, Set::Native);
        lines[2] = lines[2].replace("v=2 ", "v=1 ");
        let e = parse(&lines.join("\n")).unwrap();
        let why = &e[0].capture_notes[0];
        assert!(why.contains("line 3"), "{why}");
        assert!(why.contains("v=1") && why.contains("reads v=2"), "{why}");
        // An experiment of another version: refused.
        let mut lines = predicted(4, Set::Native);
        lines[0] = lines[0].replace("v=2 ", "");
        let why = parse(&lines.join("\n")).unwrap_err();
        assert!(
            why.contains("line 1: experiment-begin line has no `v=`"),
            "{why}"
        );
    }

    #[test]
    fn no_experiment_is_refused() {
        let why = parse("P00>>>boot dka0\r\nalphasmp: PASS (28 passed, 0 failed)\r\n").unwrap_err();
        assert!(why.starts_with("no experiment in the log"), "{why}");
        assert!(why.contains("experiment-begin:"), "{why}");
        assert!(parse("").is_err());
    }

    /// A garbled cell line costs its run, named by line and key, not the
    /// report: the rest is made and the notes head it.
    #[test]
    fn bad_cell_lines_are_skipped_by_line_and_key() {
        let mut lines = predicted(4, Set::Native);
        lines[4] = lines[4].replace("outcome=completed ", "");
        lines[6] = lines[6].replace("done=406 ", "done=4x6 ");
        let e = parse(&lines.join("\n")).unwrap();
        assert_eq!(e[0].runs.len(), 8);
        let notes = &e[0].capture_notes;
        assert_eq!(
            notes[0],
            "the log, line 5: experiment-cell line has no `outcome=`; skipped"
        );
        assert!(notes[1].starts_with("the log, line 7:"), "{notes:?}");
        assert!(
            notes[1].contains("key `done`: `4x6` is not a number"),
            "{notes:?}"
        );
        // The end line counts 10 runs, the log holds 8 readable ones.
        assert!(
            notes[2].contains("runs=10") && notes[2].contains("has 8"),
            "{notes:?}"
        );
        let md = markdown(&e);
        assert!(
            md.contains(
                "Capture: the log, line 5: experiment-cell line has no `outcome=`; skipped"
            ),
            "{md}"
        );
        assert!(
            summary(&e).contains("(3 capture note(s))"),
            "{}",
            summary(&e)
        );
        let js = json(&e);
        assert!(
            js.contains("\"partial\": false")
                && js.contains("\"capture_notes\": [\"the log, line 5"),
            "{js}"
        );
    }

    #[test]
    fn binary_files_are_refused() {
        let elf: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        assert!(
            text_of(&elf)
                .unwrap_err()
                .contains("not a text console capture")
        );
        let noisy = [
            b"\x00\xff".as_slice(),
            &capture(&predicted(4, Set::Native)).into_bytes(),
        ]
        .concat();
        assert_eq!(parse(&text_of(&noisy).unwrap()).unwrap()[0].runs.len(), 10);
    }

    #[test]
    fn markdown_has_identity_and_marks_only_unpredicted_cells() {
        // Cell 6 (edge_loss x none on 4 CPUs, predicted to deadlock)
        // completes; cell 7's runs (either) include an unrecovered one.
        let lines = experiment(4, Set::Injected, |n, run, _| match (n, run) {
            (6, _) => Some("completed"),
            (7, 2) => Some("unrecovered"),
            _ => None,
        });
        let exps = parse(&capture(&lines)).unwrap();
        let md = markdown(&exps);
        for needed in [
            "system type 34, member 5",
            "CPU EV67 (type 11)",
            "PAL revision 0x10001",
            "`clipper`",
            "serial number `QEMU`",
            "kernel 0.1.0",
            "4 CPUs",
            "150 shootdowns per CPU",
            "watchdog 500 ms",
            "`wait=spin`",
            "Verdict: `alphasmp: PASS",
            "End: 37 runs, 25 cells done",
        ] {
            assert!(md.contains(needed), "{needed} missing in\n{md}");
        }
        let marked: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| "))
            .flat_map(|l| l.split(" | "))
            .filter(|c| c.contains('!'))
            .collect();
        assert_eq!(
            marked,
            [
                "completed ! (7/5+6/3/4) census 990/1/7",
                "**deadlock** 1/3 505 ms, crawl 1/3, unrecovered 1/3 ! (21/15+18/9/12) census 2970/3/21"
            ]
        );
        assert!(md.contains("Not as predicted: cell 6 (edge_loss x none), run 1 of 1: completed"));
        // The kernel's end line still says 0: the report says they differ.
        assert!(md.contains("the cell lines give 2 and 0"), "{md}");
    }

    #[test]
    fn native_rows_are_labelled_and_tables_keyed_by_cpus() {
        let mut lines = predicted(4, Set::All);
        lines.extend(predicted(2, Set::Native));
        let exps = parse(&lines.join("\n")).unwrap();
        assert_eq!(exps.len(), 2);
        let md = markdown(&exps);
        let two = md.find("**2 CPUs**, set `native`").unwrap();
        let four = md.find("**4 CPUs**, set `all`").unwrap();
        assert!(two < four);
        assert!(md.contains("2 and 4 CPUs"));
        let rows: Vec<&str> = md[four..]
            .lines()
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.split(" |").next())
            .collect();
        assert_eq!(
            rows,
            [
                "fault \\ fix",
                "none (native)",
                "masked_wait (native)",
                "none",
                "edge_loss",
                "masked_wait",
                "both",
                "edge_loss_masked"
            ]
        );
        assert!(
            summary(&exps).starts_with("2 experiments (4 CPUs: 47 runs of 35 cells"),
            "{}",
            summary(&exps)
        );
    }

    /// Braces and brackets outside strings balance and never go negative.
    fn balanced(s: &str) -> bool {
        let (mut depth, mut in_str, mut esc) = (0i64, false, false);
        for c in s.chars() {
            match (in_str, esc, c) {
                (true, true, _) => esc = false,
                (true, false, '\\') => esc = true,
                (true, false, '"') => in_str = false,
                (false, _, '"') => in_str = true,
                (false, _, '{' | '[') => depth += 1,
                (false, _, '}' | ']') => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return false;
            }
        }
        depth == 0 && !in_str
    }

    #[test]
    fn json_holds_every_run() {
        let lines = experiment(4, Set::Injected, |n, _, _| (n == 6).then_some("completed"));
        let mut lines = capture(&lines);
        lines = lines.replace("PASS (experiment", "PASS (\"experiment\\");
        let exps = parse(&lines).unwrap();
        let js = json(&exps);
        assert!(balanced(&js), "{js}");
        assert_eq!(js.matches("\"as_predicted\": ").count(), 37);
        assert_eq!(js.matches("\"as_predicted\": false").count(), 1);
        assert!(js.contains("\"done_per_cpu\": [100, 101, 102, 103]"));
        assert!(js.contains("\"detect_ms\": -1"));
        assert!(js.contains("\"pal\": \"0x10001\""));
        assert!(js.contains("\"ssn\": \"QEMU\""));
        assert!(js.contains("\"cell_size\": 150"));
        assert!(js.contains("\"verdict\": \"PASS (\\\"experiment\\\\: 37 runs"));
        for n in 1..=25 {
            assert!(js.contains(&format!("\"n\": {n}, ")), "cell {n}");
        }
        assert!(!balanced("{\"a\": [1, 2}"));
    }

    #[test]
    fn run_cli_writes_both_files_or_nothing() {
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("boot.log");
        std::fs::write(&log, capture(&predicted(4, Set::Native))).unwrap();
        let out = dir.join("out");
        let line = run_cli(&log, &out).unwrap();
        assert!(
            line.starts_with("1 experiment (4 CPUs: 10 runs of 10 cells, all as predicted, PASS)"),
            "{line}"
        );
        assert!(out.join("experiment.md").exists() && out.join("experiment.json").exists());
        let lines = predicted(4, Set::Native);
        std::fs::write(&log, lines[..1].join("\n")).unwrap();
        let refused = dir.join("refused");
        let why = run_cli(&log, &refused).unwrap_err().to_string();
        assert!(
            why.contains("boot.log ends before the first of its 10 cells"),
            "{why}"
        );
        assert!(!refused.exists());
        let why = run_cli(&dir.join("absent.log"), &refused)
            .unwrap_err()
            .to_string();
        assert!(
            why.starts_with("cannot read ") && !why.contains('\n'),
            "{why}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_prefixes_are_the_shared_formats_tags() {
        assert_eq!(BEGIN, format!("{}:", EXPERIMENT_BEGIN.tag));
        assert_eq!(CELL, format!("{}:", EXPERIMENT_CELL.tag));
        assert_eq!(END, format!("{}:", EXPERIMENT_END.tag));
    }
}
