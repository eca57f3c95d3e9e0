//! Failed syscalls injected by `strace --inject` (Debian's `strace`, installed by `tools/setup`),
//! shared by every fault test of the workspace: the vault's (`vault/tests/faults.rs`), the
//! relay's stores (`tools/relay/tests/store_faults.rs`) and the signer's device registry
//! (`signer/tests/registry_faults.rs`), which include this file with `#[path]`.
//!
//! A [`Fault`] makes the `when`-th call of one syscall fail with one errno; strace counts `when`
//! per thread, so one case can fault a writer thread and a background thread alike. The trace
//! (`-y`) tells which files the injected calls were on ([`injected`]).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "test helpers shared by several test files, each using a subset; a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// One fault: the `when`-th call of `syscall` (in each thread) fails with `errno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// `fsync`, `fdatasync`, `write`, `pwrite64`, ...
    pub syscall: &'static str,
    /// `EIO` or `ENOSPC`.
    pub errno: &'static str,
    /// The call that fails, counted per thread from 1.
    pub when: u32,
}

impl Fault {
    /// Every `(syscall, errno, whens)` of `cases`, one fault per `when`.
    pub fn list(cases: &[(&'static str, &'static str, &[u32])]) -> Vec<Self> {
        cases
            .iter()
            .flat_map(|&(syscall, errno, whens)| {
                whens.iter().map(move |&when| Self {
                    syscall,
                    errno,
                    when,
                })
            })
            .collect()
    }

    /// strace with this fault, tracing only its syscall (every thread and child, `-f`) into
    /// `trace`; `more` are its options before the program or `-p`.
    fn strace(&self, trace: &Path, more: &[&str]) -> Command {
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-y"])
            .args(more)
            .arg("-o")
            .arg(trace)
            .args(["-e", &format!("trace={}", self.syscall)])
            .args([
                "-e",
                &format!(
                    "inject={}:error={}:when={}",
                    self.syscall, self.errno, self.when
                ),
            ]);
        c
    }

    /// `program` run under strace with this fault, tracing only its syscall (every thread and
    /// child, `-f`) into `trace`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, trace: &Path) -> Command {
        let mut c = self.strace(trace, &["--seccomp-bpf"]);
        c.arg(program);
        c
    }

    /// strace attached to the running process `pid` (every thread, and those it starts) with this
    /// fault, tracing only its syscall into `trace`: calls are counted from the attach on, so a
    /// fault lands in what the process does next rather than in its start. Wait for
    /// [`traced`] before driving the process. (`--seccomp-bpf` needs strace to start the
    /// program, so an attached strace stops at every call of the traced syscall.)
    pub fn attach(&self, pid: u32, trace: &Path) -> Command {
        let mut c = self.strace(trace, &[]);
        c.args(["-p", &pid.to_string()]);
        c
    }

    /// What `strerror` says for the errno: an error that reports the fault contains it.
    pub fn errno_text(&self) -> &'static str {
        match self.errno {
            "EIO" => "Input/output error",
            "ENOSPC" => "No space left on device",
            other => panic!("no text for {other}"),
        }
    }
}

/// The paths of the calls in `trace` that got the injected error, in order (the trace file is
/// removed). A call on something that is not a file (a pipe, a socket) gives its `-y` text.
pub fn injected(trace: &Path) -> Vec<PathBuf> {
    let traced = std::fs::read_to_string(trace).unwrap_or_default();
    std::fs::remove_file(trace).ok();
    traced
        .lines()
        .filter(|l| l.contains("(INJECTED)"))
        .map(|l| PathBuf::from(traced_path(l)))
        .collect()
}

/// The path strace's `-y` annotation gives for the call's descriptor: `fdatasync(12</d/x.log>)`.
pub fn traced_path(line: &str) -> &str {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or("?", |(p, _)| p)
}

/// What kind of RocksDB file `name` (a file name in a store's directory; empty: the directory
/// itself) is.
pub fn file_kind(name: &str) -> &'static str {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    match (name, ext) {
        ("", _) => "directory",
        ("LOG", _) => "info log",
        ("CURRENT", _) => "CURRENT",
        (_, "log") => "WAL",
        (_, "sst") => "table file",
        (_, "dbtmp") => "CURRENT or OPTIONS (temporary)",
        (n, _) if n.starts_with("MANIFEST") => "MANIFEST",
        (n, _) if n.starts_with("OPTIONS") => "OPTIONS",
        _ => "other",
    }
}

/// Where `path` is, for a table: `<store> <kind>` for a file of one of the stores under `root`
/// (`<store>` the first component below `root`), `outside the stores (<path>)` otherwise.
pub fn store_file(path: &Path, root: &Path) -> String {
    let Ok(rel) = path.strip_prefix(root) else {
        return format!("outside the stores ({})", path.display());
    };
    let rel = rel.to_string_lossy();
    let (store, file) = rel.split_once('/').unwrap_or((&rel, ""));
    format!("{store} {}", file_kind(file))
}

/// Stops a program started by [`Fault::command`]: kills the traced program and its children first
/// (`SIGKILL`), then strace, and reaps strace. Killing strace alone would detach the program and
/// leave it running, holding its stores' locks (and any file descriptor it inherited).
pub fn kill_traced(strace: &mut std::process::Child) {
    let mut pids = Vec::new();
    let mut todo = vec![strace.id()];
    while let Some(pid) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                pids.push(child);
                todo.push(child);
            }
        }
    }
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .status();
    }
    // strace exits once every traced thread is gone, and with them the program's files (and its
    // stores' locks); a zombie leader alone does not say its other threads are gone.
    let started = std::time::Instant::now();
    while !pids.is_empty()
        && started.elapsed() < std::time::Duration::from_secs(10)
        && matches!(strace.try_wait(), Ok(None))
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = strace.kill();
    let _ = strace.wait();
}

/// Whether every thread of `pid` is traced (after [`Fault::attach`]).
pub fn traced(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("TracerPid:"))
                    .map(|p| p.trim() != "0")
            })
            .unwrap_or(false)
    })
}
