// SPDX-License-Identifier: GPL-2.0
//! Shared plumbing: errors, paths, running commands, timing stages.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A harness error: a message for the user, already explaining what failed.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error`] from format arguments.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::util::Error(format!($($arg)*))) };
}

/// Adds what was being done to an I/O error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

/// The repository root (the parent of the xtask crate).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Where kernel sources, trees and builds are kept between runs.
///
/// `FOLIO_MIGRATE_CACHE` overrides; otherwise the XDG cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FOLIO_MIGRATE_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("folio-migrate");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache").join("folio-migrate")
}

/// Generated output of the repository (results, images), never committed.
pub fn target_dir() -> PathBuf {
    repo_root().join("target")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with inherited output; fails with the command line.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout; stderr goes into the error.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a command runs and exits 0 (output discarded).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a long command with its output in `log`, printing a progress line
/// at most every `every`, and the log's tail if it fails.
pub fn run_logged(cmd: &mut Command, log: &Path, label: &str, every: Duration) -> Result<()> {
    let mut file =
        std::fs::File::create(log).context(|| format!("cannot create {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| format!("cannot start `{}`", describe(cmd)))?;
    let stderr = child.stderr.take();
    let err_log = log.with_extension("stderr");
    let err_thread = std::thread::spawn(move || -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(e) = stderr {
            for line in BufReader::new(e).lines().map_while(|l| l.ok()) {
                lines.push(line);
            }
        }
        lines
    });
    let start = Instant::now();
    let mut last = Instant::now();
    let mut count = 0usize;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            let _ = writeln!(file, "{line}");
            count += 1;
            if last.elapsed() >= every {
                last = Instant::now();
                eprintln!(
                    "    {label}: {count} steps, {:>4}s, {}",
                    start.elapsed().as_secs(),
                    line.trim()
                );
            }
        }
    }
    let status = child.wait()?;
    let err_lines = err_thread.join().unwrap_or_default();
    let _ = std::fs::write(&err_log, err_lines.join("\n"));
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for l in tail.iter().rev() {
            eprintln!("    | {l}");
        }
        for l in err_lines.iter().rev().take(40).rev() {
            eprintln!("    ! {l}");
        }
        bail!("{label} failed ({status}); full log: {}", log.display());
    }
    Ok(())
}

static STAGES: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

/// Runs one named stage, printing its start and wall time.
pub fn stage<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("==> {name}");
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    let verdict = if r.is_ok() { "done" } else { "FAILED" };
    eprintln!("<== {name}: {verdict} in {:.1}s", took.as_secs_f64());
    if let Ok(mut s) = STAGES.lock() {
        s.push((name.to_string(), took));
    }
    r
}

/// Prints the wall time of every stage run so far.
pub fn print_stage_times() {
    if let Ok(s) = STAGES.lock() {
        if s.is_empty() {
            return;
        }
        eprintln!("stage wall times:");
        for (name, took) in s.iter() {
            eprintln!("    {:>8.1}s  {name}", took.as_secs_f64());
        }
    }
}

/// Writes `data` to `path` only when it differs, so make sees no change.
pub fn write_if_changed(path: &Path, data: &[u8]) -> Result<bool> {
    if std::fs::read(path).ok().as_deref() == Some(data) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, data).context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

/// Number of parallel make jobs: one per CPU plus one.
pub fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        + 1
}
