//! A full disk under the running `cairn-relay` (docs/log.md, "Faults in the relay's stores and the
//! device registry"): its data directory lives on a size-limited tmpfs that the test mounts (it
//! needs root, as CI has; elsewhere it says it was skipped) and that a filler file fills, before the
//! relay starts or once it listens, to a few headrooms. Transfer bundles then go in over HTTP.
//!
//! - On a disk too full to create its stores, the relay refuses to start, saying the disk is full.
//! - An import that hits `ENOSPC` answers 500 saying so; nothing is answered 200 that is not stored
//!   in both stores; a store's failed write stops the relay (exit 75, naming the store and the
//!   restart) instead of going on with a poisoned handle.
//! - Once space is freed, both stores reopen with every acknowledged entry, `fsck` passes, and the
//!   restarted relay takes the whole log.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;
#[path = "support/running.rs"]
mod running;
#[path = "../../../vault/tests/common/strace.rs"]
mod strace;
#[path = "../../../vault/tests/common/tmpfs.rs"]
mod tmpfs;

use std::path::Path;

use cairn_verifier::campaign::ApprovalAction;
use common::SignerLog;
use running::{Running, check_stores};
use tmpfs::{Tmpfs, fill_to};

const DISK_FULL: &str = "No space left on device";

/// The signer's log (1,000 devices) and its bundles: the whole log, then one gate approval each.
fn bundles(dir: &Path) -> (SignerLog, Vec<Vec<u8>>) {
    let signer = common::signer_log(
        &dir.join("signer"),
        1_000,
        0,
        &[
            ("canary", 50, 0, 1000, 500, true),
            ("fleet", 1_000, 0, 900, 500, false),
        ],
        common::Policy::default(),
    );
    let mut out = vec![signer.vault.export_bundle(0).unwrap().to_cbor()];
    for _ in 0..3 {
        let from = signer.vault.size();
        signer.approve(1, ApprovalAction::OpenStage);
        out.push(signer.vault.export_bundle(from).unwrap().to_cbor());
    }
    (signer, out)
}

/// When the disk is filled.
#[derive(Debug, Clone, Copy)]
enum When {
    BeforeStart,
    OnceListening,
    /// After the whole log's bundle was acknowledged: the approvals' bundles hit the full disk.
    AfterFirstImport,
}

/// Runs one case; what the relay did, for the summary.
fn run(signer: &SignerLog, bundles: &[Vec<u8>], when: When, headroom: u64) -> Option<String> {
    let fs = Tmpfs::mount("24m")?;
    let dir = fs.path();
    common::config(dir, "");
    let data = dir.join("data");
    let ctx = format!("{when:?}, headroom {headroom}");
    let (mut mirror_acked, mut state_acked) = (0u64, 0u64);
    let mut filler = None;
    if matches!(when, When::BeforeStart) {
        filler = Some(fill_to(dir, headroom));
    }
    let mut relay = Running::start(dir, None);
    let saw;
    if relay.port.is_none() {
        let code = relay.exit_code(30);
        let stderr = relay.stderr();
        assert!(
            code.is_some_and(|c| c != 0) && stderr.contains(DISK_FULL),
            "{ctx}: the relay neither listened nor said the disk is full ({code:?}): {stderr}"
        );
        saw = format!(
            "start refused: {}",
            stderr.lines().next().unwrap_or("").trim()
        );
    } else {
        let mut failed = None;
        for (i, bundle) in bundles.iter().enumerate() {
            let fill_now = match when {
                When::BeforeStart => false,
                When::OnceListening => i == 0,
                When::AfterFirstImport => i == 1,
            };
            if fill_now {
                filler = Some(fill_to(dir, headroom));
            }
            let (code, reply) = relay.import(bundle);
            if code == 200 {
                let body = &reply[reply.find('{').unwrap()..];
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                mirror_acked = v["size"].as_u64().unwrap();
                if let Some(n) = relay.state_log_size() {
                    state_acked = n;
                    continue;
                }
            }
            if code != 0 {
                assert_eq!(code, 500, "{ctx}: import {i}: {reply}");
                assert!(
                    reply.contains(DISK_FULL),
                    "{ctx}: import {i}: the 500 does not say the disk is full: {reply}"
                );
            }
            failed = Some((i, code, reply));
            break;
        }
        let (i, code, reply) =
            failed.unwrap_or_else(|| panic!("{ctx}: every import fitted: headroom too large"));
        saw = verdict(&mut relay, (i, code, &reply), &data, &ctx);
    }
    drop(relay);

    // Space freed: both stores reopen with everything acknowledged, fsck clean.
    std::fs::remove_file(filler.unwrap()).unwrap();
    check_stores(&data, mirror_acked, state_acked, &ctx, &saw);
    let relay = Running::start(dir, None);
    assert!(
        relay.port.is_some(),
        "{ctx}: the relay does not restart once space is freed: {}",
        relay.stderr()
    );
    let (code, reply) = relay.import(&signer.vault.export_bundle(0).unwrap().to_cbor());
    assert_eq!(
        code, 200,
        "{ctx}: the whole log after freeing space: {reply}"
    );
    assert!(
        reply.contains(&format!("\"size\":{}", signer.vault.size())),
        "{ctx}: after restart the mirror is not at the signer's size: {reply}"
    );
    assert!(
        relay.state_log_size().unwrap() >= state_acked,
        "{ctx}: the state log went back"
    );
    Some(format!(
        "{saw}; acknowledged before: mirror {mirror_acked}, state log {state_acked}"
    ))
}

/// After import `i` failed with `code` and `reply`: the relay stopped as a poisoned store asks
/// (exit 75, naming the store, the fault and the restart), or went on (a fault outside the stores).
fn verdict(
    relay: &mut Running,
    (i, code, reply): (usize, u16, &str),
    data: &Path,
    ctx: &str,
) -> String {
    let exit = relay.exit_code(10);
    let stderr = relay.stderr();
    match exit {
        Some(cairn_relay::EXIT_POISONED) => {
            let line = stderr
                .lines()
                .find(|l| l.starts_with("cairn-relay: stopping:"))
                .unwrap_or_else(|| panic!("{ctx}: no stopping message: {stderr}"));
            assert!(
                line.contains(&data.display().to_string())
                    && line.contains(DISK_FULL)
                    && line.contains("restart"),
                "{ctx}: the message does not name the store, the fault and what to do: {line}"
            );
            format!(
                "import {i}: {code}, exit 75: {}",
                line.trim_start_matches("cairn-relay: stopping: ")
            )
        }
        // Outside the stores (the tiles): the relay goes on, its stores unpoisoned.
        None => {
            let (_, body) = reply.split_once("\r\n\r\n").unwrap_or(("", reply));
            format!("import {i}: {code} ({}), the relay goes on", body.trim())
        }
        Some(other) => panic!("{ctx}: the relay exited {other}: {stderr}"),
    }
}

#[test]
fn a_full_disk_stops_the_relay_loses_nothing_acknowledged_and_it_goes_on_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, bundles) = bundles(dir.path());
    let cases = [
        (When::BeforeStart, 16 << 10),
        (When::OnceListening, 0),
        (When::OnceListening, 128 << 10),
        (When::OnceListening, 1 << 20),
        (When::AfterFirstImport, 0),
        (When::AfterFirstImport, 4 << 10),
    ];
    for (when, headroom) in cases {
        let Some(saw) = run(&signer, &bundles, when, headroom) else {
            println!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return;
        };
        println!("| {when:?} | {headroom} | {saw} |");
    }
}
