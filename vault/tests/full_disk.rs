//! A full disk: the log lives on a size-limited tmpfs (mounted by the test: it runs as root, as CI
//! does; elsewhere it says it was skipped) that a filler file has nearly filled. Appends,
//! checkpoints and memtable flushes go on until the file system is full. Then:
//!
//! - the operation that hit `ENOSPC` returns an error that says so and names the file;
//! - nothing was acknowledged that is not stored, and the handle refuses further writes
//!   (`Error::Poisoned`) instead of going on;
//! - the log reopens (while still full, too, or fails to with an error naming `ENOSPC`), every
//!   acknowledged entry and checkpoint is there, and `fsck` passes;
//! - once space is freed, the reopened log takes new appends and checkpoints.
//!
//! Three headrooms (what the filler leaves free) put the failure in different operations.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a panic is a failed test"
)]

mod common;
#[path = "common/durable.rs"]
mod durable;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::path::PathBuf;

use cairn_vault::{Error, Vault};
use common::log_key;
use durable::{Event, check, entry, seeded_log};
use tmpfs::{Tmpfs, fill_to};

/// What one run saw.
struct Outcome {
    failed_in: &'static str,
    error: String,
    acked_end: u64,
    reopened_full: String,
}

fn run(headroom: u64) -> Option<Outcome> {
    let fs = Tmpfs::mount("8m")?;
    let dir: PathBuf = fs.path().join("log");
    let mut acked = seeded_log(&dir, 100);
    let ctx = format!("headroom {headroom}");
    let (sk, key) = log_key();
    // Opened first: the open replays the WAL into a table file, which needs room too.
    let vault = Vault::open(&dir).unwrap();
    let filler = fill_to(fs.path(), headroom);
    let mut failed_in = "";
    let mut error = String::new();
    for round in 0u64..100_000 {
        let start = vault.size();
        let batch: Vec<Vec<u8>> = (start..start + 32).map(entry).collect();
        acked.take(&Event::Append(start, start + 32));
        match vault.append(&batch) {
            Ok(r) => acked.take(&Event::Ack(r.start, r.end)),
            Err(e) => {
                (failed_in, error) = ("append", e.to_string());
                break;
            }
        }
        acked.take(&Event::Sign(vault.size()));
        match vault.sign_checkpoint(&key, &sk) {
            Ok(_) => acked.take(&Event::Checkpoint(vault.size())),
            Err(e) => {
                (failed_in, error) = ("checkpoint", e.to_string());
                break;
            }
        }
        if round % 16 == 15
            && let Err(e) = vault.flush()
        {
            (failed_in, error) = ("flush", e.to_string());
            break;
        }
    }
    assert!(!failed_in.is_empty(), "{ctx}: the file system never filled");
    assert!(
        error.contains("No space left on device"),
        "{ctx}: {failed_in} failed without saying the disk is full: {error}"
    );
    assert!(
        error.contains(&dir.display().to_string()),
        "{ctx}: {failed_in} failed without naming the file: {error}"
    );
    // The handle does not go on.
    let start = vault.size();
    match vault.append(&[entry(start)]) {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("{ctx}: after {error:?} the next append returned {other:?}"),
    }
    assert!(
        matches!(
            vault.sign_checkpoint(&key, &sk),
            Err(Error::Poisoned { .. })
        ),
        "{ctx}: a checkpoint after the failure was not refused"
    );
    drop(vault);

    // Reopen while still full: it works and serves what was acknowledged, or it says why not.
    let reopened_full = match Vault::open(&dir) {
        Ok(v) => {
            check(&v, &acked, &format!("{ctx}, reopened while full"));
            format!("reopens, size {}", v.size())
        }
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("No space left on device"),
                "{ctx}: reopening the full log failed: {e}"
            );
            "refuses to open: no space".into()
        }
    };

    // Free the space: everything acknowledged is there, and the log goes on.
    std::fs::remove_file(&filler).unwrap();
    let vault = Vault::open(&dir).unwrap_or_else(|e| panic!("{ctx}: reopen after freeing: {e}"));
    check(
        &vault,
        &acked,
        &format!("{ctx}, reopened after freeing space"),
    );
    let size = vault.size();
    vault
        .append(&(size..size + 100).map(entry).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{ctx}: append after freeing space: {e}"));
    vault.sign_checkpoint(&key, &sk).unwrap();
    vault.flush().unwrap();
    Some(Outcome {
        failed_in,
        error,
        acked_end: acked.end,
        reopened_full,
    })
}

#[test]
fn a_full_disk_loses_nothing_acknowledged_and_the_log_goes_on_once_space_is_freed() {
    let mut seen = Vec::new();
    for headroom in [48 << 10, 300 << 10, 1200 << 10] {
        let Some(outcome) = run(headroom) else {
            println!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return;
        };
        println!(
            "headroom {headroom} B: {} failed ({}); acknowledged up to {}; while full the log {}",
            outcome.failed_in, outcome.error, outcome.acked_end, outcome.reopened_full
        );
        seen.push(outcome.failed_in);
    }
    assert_eq!(seen.len(), 3);
}
