//! Naming kernel code in fault and panic reports, on the host.
//!
//! The kernel prints raw addresses (`pc=0xfffffc0000312340`) and Rust panic
//! locations (`at src/main.rs:225`); this module appends what they are, as
//! `<function+0xoffset (file:line)>`, to every line of the serial output
//! that carries one. It asks gdb-multiarch (installed with the toolchain)
//! about the kernel ELF's DWARF: `info line *ADDR` gives function, offset and
//! line of an address; `info line FILE:LINE` gives the first address of a
//! panic location, which names its function the same way.
//!
//! Why on the host and not a symbol table inside the kernel: the release
//! kernel already carries full DWARF (`debug = true`), which gives file and
//! line and knows inlining, while an in-kernel table would need a second link
//! pass and could only name functions. A log captured from a real machine's
//! console is annotated the same way afterwards (`cargo xtask symbolize`).

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Context, Result, err};

/// Annotates reports against one kernel ELF; answers are cached per query.
pub struct Symbolizer {
    elf: PathBuf,
    /// Executable address ranges of the ELF (its code sections).
    code: Vec<Range<u64>>,
    cache: HashMap<String, Option<String>>,
}

/// Markers of the lines that report a fault, a panic or a stalled call.
const REPORTS: &[&str] = &["FAULT ", "PANIC on CPU ", "panic: ", "watchdog: "];

/// What to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Query {
    Addr(u64),
    /// A panic location `file:line`.
    Location(String),
}

impl Query {
    fn gdb_arg(&self) -> String {
        match self {
            Query::Addr(a) => format!("info line *{a:#x}"),
            Query::Location(l) => format!("info line {l}"),
        }
    }
}

impl Symbolizer {
    /// Reads the code ranges of `elf`.
    pub fn new(elf: &Path) -> Result<Self> {
        let bytes = fs::read(elf).context(|| format!("reading {}", elf.display()))?;
        let code = code_ranges(&bytes).ok_or_else(|| {
            err(format!(
                "{} is not a 64-bit little-endian ELF",
                elf.display()
            ))
        })?;
        Ok(Symbolizer {
            elf: elf.to_path_buf(),
            code,
            cache: HashMap::new(),
        })
    }

    fn is_code(&self, a: u64) -> bool {
        self.code.iter().any(|r| r.contains(&a))
    }

    /// The queries one line asks for, with the byte offset after which each
    /// answer goes. Only reports are annotated: fault, panic and watchdog
    /// lines (other lines print addresses that are not code positions,
    /// such as the kernel's own bounds).
    fn queries(&self, line: &str) -> Vec<(usize, Query)> {
        let mut out = Vec::new();
        if !REPORTS.iter().any(|r| line.contains(r)) {
            return out;
        }
        let mut rest = 0;
        while let Some(i) = line[rest..].find("0x") {
            let start = rest + i + 2;
            let len = line[start..]
                .bytes()
                .take_while(u8::is_ascii_hexdigit)
                .count();
            if let Ok(a) = u64::from_str_radix(&line[start..start + len], 16)
                && len > 0
                && self.is_code(a)
            {
                out.push((start + len, Query::Addr(a)));
            }
            rest = start + len;
        }
        if let Some(loc) = panic_location(line) {
            out.push((line.len(), Query::Location(loc)));
        }
        out
    }

    /// Whether `line` names anything this module can annotate.
    pub fn wants(&self, line: &str) -> bool {
        !self.queries(line).is_empty()
    }

    /// `line` with `<function+0xoff (file:line)>` after every code address
    /// and at the end of a panic line. Lines without either come back as
    /// they are; so do answers gdb cannot give.
    pub fn annotate_line(&mut self, line: &str) -> String {
        let qs = self.queries(line);
        if qs.is_empty() {
            return line.to_string();
        }
        let missing: Vec<Query> = qs
            .iter()
            .map(|(_, q)| q.clone())
            .filter(|q| !self.cache.contains_key(&q.gdb_arg()))
            .collect();
        if !missing.is_empty() {
            let answers = self.ask_gdb(&missing);
            for (q, a) in missing.iter().zip(answers) {
                self.cache.insert(q.gdb_arg(), a);
            }
        }
        let mut out = String::with_capacity(line.len() + 64);
        let mut at = 0;
        for (end, q) in &qs {
            out.push_str(&line[at..*end]);
            at = *end;
            if let Some(Some(name)) = self.cache.get(&q.gdb_arg()) {
                out.push_str(&format!(" <{name}>"));
            }
        }
        out.push_str(&line[at..]);
        out
    }

    /// Annotates a whole log.
    pub fn annotate(&mut self, log: &str) -> String {
        log.lines().map(|l| self.annotate_line(l) + "\n").collect()
    }

    /// One gdb run for all of `qs`, then one addr2line run for the inline
    /// chains; an answer per query (None: unknown).
    fn ask_gdb(&self, qs: &[Query]) -> Vec<Option<String>> {
        const MARK: &str = "@@alphasmp-end@@";
        let mut cmd = Command::new("gdb-multiarch");
        cmd.args([
            "-nx",
            "-batch",
            "-ex",
            "set print asm-demangle on",
            "-ex",
            "set width 0",
        ]);
        for q in qs {
            cmd.arg("-ex")
                .arg(q.gdb_arg())
                .arg("-ex")
                .arg(format!("echo {MARK}\\n"));
        }
        cmd.arg(&self.elf);
        let Ok(out) = cmd.output() else {
            return vec![None; qs.len()];
        };
        // gdb writes "No line number information..." to stdout, errors to
        // stderr; each answer ends at its marker.
        let text = String::from_utf8_lossy(&out.stdout);
        let mut found: Vec<Option<InfoLine>> = text.split(MARK).map(parse_info_line).collect();
        found.resize(qs.len(), None);
        let addrs: Vec<u64> = found.iter().flatten().map(|f| f.addr).collect();
        let mut chains = self.inline_chains(&addrs).into_iter();
        found
            .into_iter()
            .map(|f| {
                let f = f?;
                Some(describe(&f, &chains.next().unwrap_or_default()))
            })
            .collect()
    }

    /// For each address, the functions that contain it from the innermost
    /// inlined one outwards, each with its file:line (addr2line -i), paths
    /// relative to the repository.
    fn inline_chains(&self, addrs: &[u64]) -> Vec<Vec<(String, String)>> {
        if addrs.is_empty() {
            return Vec::new();
        }
        let mut cmd = Command::new("alpha-linux-gnu-addr2line");
        cmd.args(["-f", "-i", "-C", "-a", "-e"]).arg(&self.elf);
        for a in addrs {
            cmd.arg(format!("{a:#x}"));
        }
        let Ok(out) = cmd.output() else {
            return vec![Vec::new(); addrs.len()];
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let root = crate::util::repo_root().display().to_string() + "/";
        // -a prints each address on its own line, then name/place pairs.
        let mut chains: Vec<Vec<(String, String)>> = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(l) = lines.next() {
            if l.starts_with("0x") {
                chains.push(Vec::new());
                continue;
            }
            let place = lines.next().unwrap_or_default().replace(&root, "");
            let place = place
                .split(" (discriminator")
                .next()
                .unwrap_or_default()
                .to_string();
            if let Some(c) = chains.last_mut()
                && l != "??"
            {
                c.push((l.to_string(), place));
            }
        }
        chains.resize(addrs.len(), Vec::new());
        chains
    }
}

/// What gdb said about one address or location.
#[derive(Clone, Debug, PartialEq, Eq)]
struct InfoLine {
    addr: u64,
    /// The ELF symbol containing it, demangled, and the offset into it.
    sym: String,
    off: u64,
    /// gdb's `file:line`, if it has line information.
    place: Option<String>,
}

/// `function+0xoff (file:line)`, or for code inlined into another function
/// `inner (file:line) inlined in outer+0xoff`.
fn describe(f: &InfoLine, chain: &[(String, String)]) -> String {
    match chain {
        [inner, .., outer] => format!(
            "{} ({}) inlined in {}+{:#x}",
            strip_hash(&inner.0),
            inner.1,
            outer_name(&f.sym, &outer.0),
            f.off
        ),
        // addr2line demangles Rust v0 names that gdb's symbol table prints
        // raw (`_RNv...`), so its name wins.
        [only] if !only.1.starts_with("??") => {
            format!("{}+{:#x} ({})", strip_hash(&only.0), f.off, only.1)
        }
        _ => match &f.place {
            Some(p) => format!("{}+{:#x} ({p})", f.sym, f.off),
            None => format!("{}+{:#x}", f.sym, f.off),
        },
    }
}

/// The name of the function an inlined one sits in: gdb's symbol, unless
/// that is a raw Rust v0 name (`_RNv...`, which gdb's symbol table prints
/// as it is), then addr2line's demangled name of the outermost function,
/// with the symbol's clone suffix (`.isra.0`, `.constprop.0`) kept, since
/// the offset counts from the clone.
fn outer_name(sym: &str, demangled: &str) -> String {
    if !sym.starts_with("_R") || demangled.is_empty() {
        return sym.to_string();
    }
    let suffix = sym.find('.').map_or("", |i| &sym[i..]);
    format!("{}{suffix}", strip_hash(demangled))
}

/// `file:line` of a kernel panic line (`PANIC on CPU n at FILE:LINE: msg`).
fn panic_location(line: &str) -> Option<String> {
    let rest = &line[line.find("PANIC on CPU ")?..];
    let after = &rest[rest.find(" at ")? + 4..];
    let (file, tail) = after.split_once(':')?;
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    (!file.is_empty() && !digits.is_empty() && !file.contains(' '))
        .then(|| format!("{file}:{digits}"))
}

/// Reads gdb's answer to `info line`. The shapes it prints:
/// - `Line 225 of "src/main.rs" starts at address 0x... <sym+64> and ends at 0x...`
/// - `Line 225 of "src/main.rs" is at address 0x... <sym+64> but contains no code.`
/// - `No line number information available for address 0x... <sym+4>`
fn parse_info_line(answer: &str) -> Option<InfoLine> {
    let text = answer.trim();
    let at = text.find("address 0x")? + "address ".len();
    let hex: String = text[at + 2..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    let addr = u64::from_str_radix(&hex, 16).ok()?;
    let open = text.find('<')?;
    let close = open + text[open..].find('>')?;
    let sym = &text[open + 1..close];
    let (func, off) = match sym.rsplit_once('+') {
        Some((f, o)) => (f, o.parse::<u64>().ok()?),
        None => (sym, 0),
    };
    let place = text.strip_prefix("Line ").and_then(|t| {
        let (line, rest) = t.split_once(" of \"")?;
        let (file, _) = rest.split_once('"')?;
        Some(format!("{file}:{line}"))
    });
    Some(InfoLine {
        addr,
        sym: strip_hash(func).to_string(),
        off,
        place,
    })
}

/// Drops a legacy Rust mangling hash (`::h0123456789abcdef`).
fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, h)) if h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()) => head,
        _ => name,
    }
}

/// Address ranges of the allocated, executable sections of an ELF64 LE file.
fn code_ranges(b: &[u8]) -> Option<Vec<Range<u64>>> {
    if b.get(..4)? != b"\x7fELF" || *b.get(4)? != 2 || *b.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    const SHF_ALLOC: u64 = 2;
    const SHF_EXECINSTR: u64 = 4;
    let mut out = Vec::new();
    for i in 0..shnum {
        let s = shoff + i * shentsize;
        let flags = u64_at(s + 8)?;
        let (addr, size) = (u64_at(s + 16)?, u64_at(s + 32)?);
        if flags & (SHF_ALLOC | SHF_EXECINSTR) == SHF_ALLOC | SHF_EXECINSTR && size > 0 {
            out.push(addr..addr + size);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_code(code: Range<u64>) -> Symbolizer {
        Symbolizer {
            elf: PathBuf::from("/nonexistent"),
            code: vec![code],
            cache: HashMap::new(),
        }
    }

    #[test]
    fn finds_code_addresses_and_panic_locations() {
        let s = with_code(0x1000..0x2000);
        let line = "FAULT entMM on CPU 0: pc=0x0000000000001234 a0=0x2000 ra=0x1ff0";
        let q: Vec<Query> = s.queries(line).into_iter().map(|(_, q)| q).collect();
        assert_eq!(
            q,
            vec![Query::Addr(0x1234), Query::Addr(0x1ff0)],
            "0x2000 is past the code"
        );
        let p = "PANIC on CPU 1 at src/main.rs:225: deliberate panic on CPU 1 (fault=panic)";
        assert_eq!(
            s.queries(p).into_iter().map(|(_, q)| q).collect::<Vec<_>>(),
            vec![Query::Location("src/main.rs:225".into())]
        );
        assert!(!s.wants("test ipl.guard_nests ... ok (3 us)"));
        assert!(
            !s.wants("kernel: 0x1000..0x1800, heap 32768 KiB, exit pvpanic (failure)"),
            "not a report"
        );
        assert!(s.wants("watchdog: CPU 1 waited 1000 us for CPU 2 to run call 0x1100(0x0)"));
    }

    #[test]
    fn gdb_answers_are_parsed() {
        let f = parse_info_line("Line 225 of \"src/main.rs\" starts at address 0xfffffc0000312340 <kernel::raise_fault::h0123456789abcdef+64> and ends at 0xfffffc0000312350 <kernel::raise_fault+80>.").unwrap();
        assert_eq!(
            f,
            InfoLine {
                addr: 0xfffffc0000312340,
                sym: "kernel::raise_fault".into(),
                off: 64,
                place: Some("src/main.rs:225".into())
            }
        );
        assert_eq!(
            describe(&f, &[]),
            "kernel::raise_fault+0x40 (src/main.rs:225)"
        );
        let g = parse_info_line("No line number information available for address 0xfffffc0000310104 <fault_breakpoint+4>").unwrap();
        assert_eq!(describe(&g, &[]), "fault_breakpoint+0x4");
        assert_eq!(parse_info_line("No symbol table is loaded."), None);
    }

    #[test]
    fn inlined_code_names_both_functions() {
        let f = InfoLine {
            addr: 0x10,
            sym: "alpha_secondary_main".into(),
            off: 0x1c8,
            place: Some("src/smp.rs:228".into()),
        };
        let chain = vec![
            (
                "kernel::smp::idle_loop".to_string(),
                "arch/alpha/src/smp.rs:228".to_string(),
            ),
            (
                "alpha_secondary_main".to_string(),
                "arch/alpha/src/smp.rs:214".to_string(),
            ),
        ];
        assert_eq!(
            describe(&f, &chain),
            "kernel::smp::idle_loop (arch/alpha/src/smp.rs:228) inlined in alpha_secondary_main+0x1c8"
        );
        assert_eq!(
            describe(&f, &chain[1..]),
            "alpha_secondary_main+0x1c8 (arch/alpha/src/smp.rs:214)"
        );
        let raw = InfoLine {
            addr: 0x10,
            sym: "_RNvNtCs1_6kernel7machine13machine_check".into(),
            off: 0x1b0,
            place: None,
        };
        let demangled = [(
            "kernel::machine::machine_check".to_string(),
            "arch/alpha/src/machine/mod.rs:148".to_string(),
        )];
        assert_eq!(
            describe(&raw, &demangled),
            "kernel::machine::machine_check+0x1b0 (arch/alpha/src/machine/mod.rs:148)"
        );
        // Inlined into a Rust function: the outer name is addr2line's
        // demangled one too, not gdb's raw symbol.
        let raw_outer = InfoLine {
            addr: 0x20,
            sym: "_RNvNtCs1_6kernel3run3run".into(),
            off: 0x4f4,
            place: None,
        };
        let chain = [
            (
                "kernel::run::raise_fault".to_string(),
                "arch/alpha/src/run/mod.rs:59".to_string(),
            ),
            (
                "kernel::run::run".to_string(),
                "arch/alpha/src/run/mod.rs:40".to_string(),
            ),
        ];
        assert_eq!(
            describe(&raw_outer, &chain),
            "kernel::run::raise_fault (arch/alpha/src/run/mod.rs:59) inlined in kernel::run::run+0x4f4"
        );
        let clone = InfoLine {
            sym: "_RNvNtCs1_6kernel3run3run.constprop.0".into(),
            ..raw_outer
        };
        assert_eq!(
            describe(&clone, &chain),
            "kernel::run::raise_fault (arch/alpha/src/run/mod.rs:59) inlined in kernel::run::run.constprop.0+0x4f4"
        );
    }

    #[test]
    fn annotations_go_after_each_address() {
        let mut s = with_code(0x1000..0x2000);
        s.cache
            .insert("info line *0x1234".into(), Some("f+0x4 (a.rs:1)".into()));
        s.cache.insert("info line *0x1ff0".into(), None);
        assert_eq!(
            s.annotate_line("FAULT pc=0x1234 ra=0x1ff0 x"),
            "FAULT pc=0x1234 <f+0x4 (a.rs:1)> ra=0x1ff0 x"
        );
    }
}
