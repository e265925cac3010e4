//! `cargo xtask gdb`: the kernel under QEMU's gdb stub, with gdb-multiarch
//! attached and the kernel's symbols loaded.
//!
//! QEMU starts with every vCPU stopped before the first instruction (`-S`)
//! and its stub on a free loopback port; the stub shows each vCPU as a
//! thread. The serial console goes to a log file (symbolized like every
//! other run's output), because gdb owns the terminal.
//!
//! Interactive sessions: QEMU runs in its own process group and this process
//! ignores SIGINT while gdb runs, so Ctrl-C reaches only gdb (which stops the
//! guest) and not QEMU or the tool. With commands given (`--ex`), gdb runs
//! them in batch mode and the session's output is returned; the tests use
//! that.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::qemu::{self, RunSpec};
use crate::symbolize::Symbolizer;
use crate::util::{Context, Result, err};

/// What to debug.
#[derive(Clone, Debug)]
pub struct Session<'a> {
    pub spec: RunSpec<'a>,
    /// gdb commands to run in batch mode; empty: an interactive session.
    pub commands: Vec<String>,
    /// Where the serial console is written.
    pub serial_log: PathBuf,
}

/// How a batch session ended.
#[derive(Debug)]
pub struct BatchResult {
    /// gdb's standard output and error, in order of arrival per stream.
    pub gdb_output: String,
    /// The kernel's serial output up to the end of the session.
    pub serial: String,
    /// gdb exited with status 0 (a failing command in batch mode makes it
    /// exit non-zero) and was not killed at the timeout.
    pub success: bool,
}

/// A free TCP port on loopback for the gdb stub.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .context(|| "finding a free port for the gdb stub".into())?;
    Ok(l.local_addr().context(|| "reading the port".into())?.port())
}

/// Kills QEMU when dropped, whichever way the session ends.
struct Guest(Child);

impl Drop for Guest {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start_guest(s: &Session<'_>, port: u16) -> Result<(Guest, std::thread::JoinHandle<String>)> {
    qemu::check_smp(s.spec.smp)?;
    qemu::check_mem(s.spec.mem)?;
    qemu::check_append_len(s.spec.append)?;
    let mut cmd = qemu::command(&s.spec);
    cmd.args(["-S", "-gdb", &format!("tcp:127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group: Ctrl-C at the gdb prompt must not kill it.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .context(|| "starting qemu-system-alpha".into())?;
    let stdout = child.stdout.take().expect("piped");
    if let Some(dir) = s.serial_log.parent() {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    let mut log = fs::File::create(&s.serial_log)
        .context(|| format!("creating {}", s.serial_log.display()))?;
    let mut symbols = Symbolizer::new(s.spec.kernel).ok();
    let copier = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            let line = match symbols.as_mut() {
                Some(s) if s.wants(&line) => s.annotate_line(&line),
                _ => line,
            };
            writeln!(log, "{line}").ok();
            log.flush().ok();
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // The stub listens once QEMU has set up the machine.
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().context(|| "waiting for QEMU".into())? {
            return Err(err(format!(
                "QEMU ended before its gdb stub listened ({status})"
            )));
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(err(format!(
                "QEMU's gdb stub did not listen on port {port} within 20 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((Guest(child), copier))
}

/// The kernel as gdb reads it: a copy beside it whose function names are
/// Rust paths (`crate::rustnames`), so `break kernel::smp::finish` and
/// the stop lines read as Rust. Written anew for each session.
pub fn rust_named_copy(kernel: &Path) -> Result<PathBuf> {
    let mut elf = fs::read(kernel).context(|| format!("reading {}", kernel.display()))?;
    crate::rustnames::rustify(&mut elf)?;
    let mut name = kernel.as_os_str().to_owned();
    name.push(".rust-names");
    let copy = PathBuf::from(name);
    fs::write(&copy, &elf).context(|| format!("writing {}", copy.display()))?;
    Ok(copy)
}

fn gdb_command(kernel: &Path, port: u16) -> Command {
    let mut gdb = Command::new("gdb-multiarch");
    gdb.arg("-q")
        .args(["-ex", "set pagination off"])
        .arg("-ex")
        .arg(format!(
            "source {}",
            crate::util::repo_root().join("xtask/gdb/rust.py").display()
        ))
        .arg("-ex")
        .arg(format!("target remote 127.0.0.1:{port}"))
        .arg(kernel);
    gdb
}

/// An interactive session on this terminal; returns gdb's exit status.
pub fn interactive(s: &Session<'_>) -> Result<i32> {
    let port = free_port()?;
    let (guest, copier) = start_guest(s, port)?;
    eprintln!(
        "==> QEMU is stopped before the first instruction; gdb stub on 127.0.0.1:{port}, {} vCPU(s) as threads",
        s.spec.smp
    );
    eprintln!(
        "==> serial console: {} (follow it with: tail -f {})",
        s.serial_log.display(),
        s.serial_log.display()
    );
    eprintln!(
        "==> try: break alpha_boot_main, break kernel::smp::finish, continue, info threads, next; Ctrl-C stops the guest, quit ends the session"
    );
    let _sigint = IgnoreSigint::new();
    let status = gdb_command(&rust_named_copy(s.spec.kernel)?, port)
        .status()
        .context(|| "starting gdb-multiarch".into())?;
    drop(guest);
    copier.join().ok();
    eprintln!(
        "==> session over; serial console kept in {}",
        s.serial_log.display()
    );
    Ok(status.code().unwrap_or(1))
}

/// Runs `s.commands` in gdb's batch mode against a fresh guest.
pub fn batch(s: &Session<'_>, timeout: Duration) -> Result<BatchResult> {
    let port = free_port()?;
    let (guest, copier) = start_guest(s, port)?;
    let mut gdb = gdb_command(&rust_named_copy(s.spec.kernel)?, port);
    gdb.args(["-nx", "-batch"]);
    for c in &s.commands {
        gdb.arg("-ex").arg(c);
    }
    let mut child = gdb
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| "starting gdb-multiarch".into())?;
    let (mut out, mut errs) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut errs, &mut s).ok();
        s
    });
    let start = Instant::now();
    let (timed_out, status_ok) = loop {
        if let Some(st) = child.try_wait().context(|| "waiting for gdb".into())? {
            break (false, st.success());
        }
        if start.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            break (true, false);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(guest);
    let mut gdb_output = out_reader.join().unwrap_or_default();
    gdb_output.push_str(&err_reader.join().unwrap_or_default());
    if timed_out {
        gdb_output.push_str(&format!(
            "\n(gdb session killed after {} s)\n",
            timeout.as_secs()
        ));
    }
    let serial = copier.join().unwrap_or_default();
    Ok(BatchResult {
        gdb_output,
        serial,
        success: status_ok && !timed_out,
    })
}

/// Ignores SIGINT in this process while alive (gdb, its child, installs its
/// own handler, so it still sees Ctrl-C).
struct IgnoreSigint(libc::sighandler_t);

impl IgnoreSigint {
    fn new() -> Self {
        // SAFETY: signal() with SIG_IGN installs no Rust code as a handler;
        // the previous disposition is restored in Drop.
        IgnoreSigint(unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) })
    }
}

impl Drop for IgnoreSigint {
    fn drop(&mut self) {
        // SAFETY: puts back the disposition that signal() returned.
        unsafe { libc::signal(libc::SIGINT, self.0) };
    }
}
