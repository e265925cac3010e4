//! Small helpers shared by the xtask commands: errors, running commands with a
//! log file and a progress heartbeat, hashing of inputs.

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// An xtask failure: one line for the user, optionally the log to read.
#[derive(Debug)]
pub struct Error {
    pub message: String,
    pub log: Option<PathBuf>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(log) = &self.log {
            write!(f, " (full log: {})", log.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error`] from anything printable.
pub fn err(message: impl Into<String>) -> Error {
    Error {
        message: message.into(),
        log: None,
    }
}

/// Adds context to I/O errors.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| err(format!("{}: {e}", what())))
    }
}

/// The repository root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo")
        .to_path_buf()
}

/// Hex SHA-256 over a sequence of labelled inputs.
#[derive(Default)]
pub struct Key(Sha256);

impl Key {
    pub fn new(stage: &str) -> Self {
        let mut k = Key(Sha256::new());
        k.add("stage", stage.as_bytes());
        k
    }
    pub fn add(&mut self, label: &str, bytes: &[u8]) {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let bytes = fs::read(path).context(|| format!("reading {}", path.display()))?;
        self.add(
            &path.file_name().unwrap_or_default().to_string_lossy(),
            &bytes,
        );
        Ok(())
    }
    /// First 16 hex digits: plenty to tell toolchain inputs apart.
    pub fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Runs `cmd`, returns its stdout; on failure the error names `what`.
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a long step with all of its output in `log`, printing a heartbeat
/// every `every` with the elapsed time and the last log line, so a 13-minute
/// build is visibly alive. On failure the error names the step and the log.
pub fn run_logged(step: &str, cmd: &mut Command, log: &Path, every: Duration) -> Result<()> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .context(|| format!("opening {}", log.display()))?;
    writeln!(file, "\n=== {step}: {cmd:?}").ok();
    let stdout = file.try_clone().context(|| "log".into())?;
    let stderr = file.try_clone().context(|| "log".into())?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| Error {
            message: format!("{step}: cannot start {:?}: {e}", cmd.get_program()),
            log: Some(log.into()),
        })?;
    let done = Arc::new(AtomicBool::new(false));
    let beat = {
        let done = done.clone();
        let log = log.to_path_buf();
        let step = step.to_string();
        std::thread::spawn(move || {
            let mut next = every;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if start.elapsed() >= next {
                    next += every;
                    let last = last_line(&log).unwrap_or_default();
                    eprintln!(
                        "  [{step}] {} elapsed ... {}",
                        mmss(start.elapsed()),
                        shorten(&last, 90)
                    );
                }
            }
        })
    };
    let status = child.wait();
    done.store(true, Ordering::Relaxed);
    beat.join().ok();
    let status = status.map_err(|e| Error {
        message: format!("{step}: {e}"),
        log: Some(log.into()),
    })?;
    if !status.success() {
        return Err(Error {
            message: format!("step '{step}' failed ({status})"),
            log: Some(log.into()),
        });
    }
    eprintln!("  [{step}] done in {}", mmss(start.elapsed()));
    Ok(())
}

fn last_line(path: &Path) -> Option<String> {
    let mut f = fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut buf = Vec::new();
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(len.saturating_sub(4096)))
        .ok()?;
    f.read_to_end(&mut buf).ok()?;
    BufReader::new(&buf[..])
        .lines()
        .map_while(|l| l.ok())
        .filter(|l| !l.trim().is_empty())
        .last()
}

fn shorten(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// Formats a duration as `4m05s`.
pub fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}
