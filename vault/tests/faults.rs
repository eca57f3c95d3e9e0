//! Failed syscalls: `fsync`, `fdatasync` and `write` of the writing process fail with `EIO` or
//! `ENOSPC` at chosen points, injected by `strace --inject` (Debian's `strace`, installed by
//! `tools/setup`). After each:
//!
//! - the operation that hit the fault returns an error that names the errno (and, for RocksDB's
//!   data files, the file);
//! - a fault in the log's data files (WAL, MANIFEST, table files, `CURRENT`, the directory) is never
//!   swallowed: the writer sees a failed operation, and nothing is acknowledged after the fault;
//! - the vault does not go on on a poisoned database: the next write through the same handle is
//!   refused with `Error::Poisoned` (fsyncgate: after a failed `fsync` the kernel may have dropped
//!   the pages it could not write, so the only safe continuation is to reopen);
//! - a reopen (without faults) recovers every acknowledged entry and checkpoint, all or nothing of
//!   the batch in flight, `fsck` passes, and the log takes new appends and checkpoints.
//!
//! The writer runs the operations of `common/durable.rs`: appends, `append_signed` (as the relay's
//! state log appends), checkpoints, memtable flushes, and imports of transfer bundles into a
//! mirror log (as the signer's mirror imports the relay's bundles); the next write after a failure
//! goes through the handle that failed (the log's or the mirror's).
//!
//! The writer is this test binary re-executed under `strace` with `CAIRN_FAULT_DIR` set. It prints
//! its protocol lines with `writev` on its own descriptor of stdout, so that `write` faults land in
//! the log's files (and RocksDB's info log) rather than in the protocol. strace counts `when=N` per
//! thread, so one case can fault the writer thread and a background flush thread alike; the trace
//! (`-y`) tells which files were hit. The table the test prints is the one in docs/log.md.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a panic is a failed test"
)]

mod common;
#[path = "common/durable.rs"]
mod durable;
#[path = "common/strace.rs"]
mod strace;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use cairn_vault::Vault;
use common::log_key;
use durable::{Acked, Event, Rng, check, entry, seeded_log};
use strace::Fault;

/// Set in the child: the log directory.
const CHILD_DIR: &str = "CAIRN_FAULT_DIR";
/// The child's seed.
const CHILD_SEED: &str = "CAIRN_FAULT_CHILD_SEED";
/// Replays a run.
const SEED: &str = "CAIRN_FAULT_SEED";
/// Appends per writer.
const OPS: u64 = 40;

/// The writer, under strace. Without `CAIRN_FAULT_DIR` (a normal test run) it returns at once.
#[test]
fn fault_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    // Our own descriptor of the stdout pipe, written with `writev` (`write_vectored` on a `File`):
    // `write` faults must not land in the protocol.
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/fd/1")
        .unwrap();
    let mut say = |event: Event| {
        let line = format!("\n{}\n", event.line());
        let n = out
            .write_vectored(&[std::io::IoSlice::new(line.as_bytes())])
            .unwrap_or(0);
        if n != line.len() {
            std::process::exit(3); // the parent is gone, or the pipe is broken
        }
    };
    let dir = Path::new(&dir);
    let vault = match Vault::open(dir.join("log")) {
        Ok(v) => v,
        Err(e) => return say(Event::Failed(format!("open: {e}"))),
    };
    say(Event::Open(vault.size()));
    let mirror = match Vault::open(dir.join("mirror")) {
        Ok(v) => v,
        Err(e) => return say(Event::Failed(format!("open: the mirror: {e}"))),
    };
    let failed = std::cell::Cell::new(false);
    let mut say = |event: Event| {
        failed.set(failed.get() || matches!(event, Event::Failed(_)));
        say(event);
    };
    durable::write(&vault, Some(&mirror), &mut Rng::new(seed), OPS, 8, &mut say);
    if !failed.get() {
        // A fault in a background flush or compaction that ran after the last operation shows
        // in the next write: one more, after they have had time to finish.
        std::thread::sleep(std::time::Duration::from_millis(300));
        durable::write(&vault, Some(&mirror), &mut Rng::new(seed), 1, 1, &mut say);
    }
}

/// The cases: early calls (in `open`: MANIFEST, OPTIONS, `CURRENT`, directory), then calls
/// spread over the appends, checkpoints and flushes.
fn faults() -> Vec<Fault> {
    Fault::list(&[
        (
            "fdatasync",
            "EIO",
            &[1, 3, 5, 7, 9, 10, 11, 12, 13, 14, 16, 20, 25, 30, 40, 50],
        ),
        ("fdatasync", "ENOSPC", &[2, 6, 11, 15, 20, 35]),
        ("fsync", "EIO", &[1, 2, 3, 4, 6, 9, 12]),
        ("fsync", "ENOSPC", &[2, 9]),
        ("write", "EIO", &[3, 6, 12, 25, 50, 70, 100, 150, 200]),
        ("write", "ENOSPC", &[4, 20, 60, 90, 130]),
    ])
}

/// What one case showed, for the table.
struct Outcome {
    fault: Fault,
    /// Files the fault landed in (kinds: WAL, MANIFEST, table, ...), with the operation.
    hit: Vec<String>,
    /// The writer's operation that failed, and its error.
    failed: Option<String>,
    /// Size after reopening, and whether the batch in flight became durable.
    recovered: String,
}

/// The kind of file a traced call touched: the log's, or the mirror's.
fn file_kind(path: &Path, dir: &Path) -> String {
    let kind = strace::store_file(path, dir);
    match kind.split_once(' ') {
        Some(("mirror", file)) => format!("mirror's {file}"),
        Some(("log", file)) => file.to_owned(),
        _ => kind,
    }
}

fn run_case(fault: Fault, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = seeded_log(&dir.path().join("log"), 100);
    drop(Vault::create(dir.path().join("mirror"), common::ORIGIN).unwrap());
    let mut mirrored = Acked::default();
    let trace = dir.path().with_extension("trace");
    let output = fault
        .command(std::env::current_exe().unwrap(), &trace)
        .args([
            "fault_writer_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_SEED, seed.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("strace (tools/setup installs it): {e}"));
    let ctx = format!("{fault:?} (seed {seed})");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let events: Vec<Event> = stdout.lines().filter_map(Event::parse).collect();
    let hit: Vec<String> = strace::injected(&trace)
        .iter()
        .map(|p| file_kind(p, dir.path()))
        .collect();

    // What the writer acknowledged, and how it failed.
    let mut failed = None;
    let mut refused = None;
    let mut during = "open";
    for event in &events {
        assert!(
            failed.is_none() || matches!(event, Event::Refused(_) | Event::Continued),
            "{ctx}: the writer went on after a failure: {event:?} in {events:?}"
        );
        match event {
            Event::Failed(e) => failed = Some(e.clone()),
            Event::Refused(e) => refused = Some(e.clone()),
            Event::Continued => panic!(
                "{ctx}: after {failed:?} the same handle accepted another append: \
                 it went on on a poisoned database"
            ),
            Event::Append(..) => during = "append",
            Event::Sign(_) => during = "checkpoint",
            Event::Flush => during = "flush",
            Event::AppendSigned(..) => during = "append_signed",
            Event::Import(..) => during = "import into the mirror",
            _ => {}
        }
        acked.take(event);
        mirrored.take_mirror(event);
    }
    let data_hit = hit
        .iter()
        .any(|k| !k.starts_with("outside") && !k.ends_with("info log"));
    match &failed {
        Some(e) => {
            let text = fault.errno_text();
            assert!(
                e.contains(text),
                "{ctx}: the error does not say {text:?}: {e}"
            );
            if !e.starts_with("open:") {
                let r = refused.as_deref().unwrap_or_default();
                assert!(
                    r.contains("refuses writes until it is reopened"),
                    "{ctx}: after {e:?} the next write was not refused as poisoned: {r:?}"
                );
            }
        }
        None => assert!(
            !data_hit,
            "{ctx}: the fault hit {hit:?} and the writer saw no error: swallowed \
             (events {events:?})"
        ),
    }
    let failed = failed.map(|e| match e.strip_prefix("open: ") {
        Some(rest) => format!("open: {rest}"),
        None => format!("{during}: {e}"),
    });

    Outcome {
        fault,
        hit,
        failed,
        recovered: reopen_and_go_on(dir.path(), &acked, &mirrored, &ctx),
    }
}

/// Reopens the log without faults: everything acknowledged is there, and the log goes on.
/// Returns the size it reopened at, and what became of the batch in flight.
fn reopen_and_go_on(dir: &Path, acked: &Acked, mirrored: &Acked, ctx: &str) -> String {
    let vault = Vault::open(dir.join("log")).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let durable = check(&vault, acked, ctx);
    let size = vault.size();
    let mirror =
        Vault::open(dir.join("mirror")).unwrap_or_else(|e| panic!("{ctx}: reopen the mirror: {e}"));
    let mirror_durable = check(&mirror, mirrored, &format!("{ctx}, the mirror"));
    let mirror_size = mirror.size();
    let (sk, key) = log_key();
    vault
        .append(&(size..size + 5).map(entry).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{ctx}: append after reopen: {e}"));
    vault
        .sign_checkpoint(&key, &sk)
        .unwrap_or_else(|e| panic!("{ctx}: checkpoint after reopen: {e}"));
    let bundle = vault.export_bundle(mirror.size()).unwrap();
    mirror
        .import_bundle(&bundle, &key)
        .unwrap_or_else(|e| panic!("{ctx}: import into the reopened mirror: {e}"));
    let in_flight = |acked: &Acked, durable: bool| match &acked.in_flight {
        Some(r) if durable => format!(" (in flight {}..{} durable)", r.start, r.end),
        Some(r) => format!(" (in flight {}..{} not stored)", r.start, r.end),
        None => String::new(),
    };
    format!(
        "{size}{}; mirror {}{}",
        in_flight(acked, durable),
        mirror_size,
        in_flight(mirrored, mirror_durable)
    )
}

#[test]
fn failed_syncs_and_writes_lose_nothing_acknowledged_and_poison_the_handle() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let seed = durable::seed(SEED);
    println!("fault test seed {seed} (reproduce with {SEED}={seed})");
    let mut rng = Rng::new(seed);
    let mut outcomes = Vec::new();
    for fault in faults() {
        outcomes.push(run_case(fault, rng.next()));
    }
    println!("| fault | landed in | writer saw | reopened at |");
    println!("|---|---|---|---|");
    for o in &outcomes {
        let mut hit = o.hit.clone();
        hit.dedup();
        println!(
            "| `{}` {} (call {}) | {} | {} | {} |",
            o.fault.syscall,
            o.fault.errno,
            o.fault.when,
            if hit.is_empty() {
                "not reached".into()
            } else {
                hit.join(", ")
            },
            o.failed.as_deref().unwrap_or("no error"),
            o.recovered
        );
    }
    // The same, by the operation that failed and the fault (docs/log.md's table): cases, and
    // the files of the logs the faults landed in.
    let mut by_operation: std::collections::BTreeMap<(&str, String), (u32, Vec<&str>)> =
        std::collections::BTreeMap::new();
    for o in &outcomes {
        let operation = o.failed.as_deref().map_or("no error", |f| {
            if f.starts_with("open: the mirror") {
                "open (the mirror)"
            } else {
                f.split(':').next().unwrap_or("?")
            }
        });
        let fault = format!("{} {}", o.fault.syscall, o.fault.errno);
        let (cases, kinds) = by_operation.entry((operation, fault)).or_default();
        *cases += 1;
        kinds.extend(
            o.hit
                .iter()
                .filter(|k| !k.starts_with("outside") && !k.ends_with("info log"))
                .map(String::as_str),
        );
    }
    for ((operation, fault), (cases, mut kinds)) in by_operation {
        kinds.sort_unstable();
        kinds.dedup();
        println!("{operation:24} {fault:18} {cases:2}: {}", kinds.join(", "));
    }
    let failures = outcomes.iter().filter(|o| o.failed.is_some()).count();
    assert!(
        failures >= outcomes.len() / 2,
        "only {failures} of {} faults reached the writer: the injection is not working",
        outcomes.len()
    );
}
