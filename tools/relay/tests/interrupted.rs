//! The running `cairn-relay` killed with `SIGKILL` at every step boundary of a bundle import
//! (`POST /api/v1/bundles`: mirror written, state log written, tiles published) and of the
//! state-bundle export (`GET /api/v1/state-bundle`: bundle built, nothing sent). The relay kills
//! itself at the step `CAIRN_TEST_KILL_AFTER` names (`cairn_relay::interrupted::reached`, the
//! `test-hooks` feature), so each boundary is hit exactly. After each kill:
//!
//! - nothing was answered (no 200 for an import whose steps did not all finish);
//! - both stores reopen and pass `fsck`; the mirror holds the bundle whole (the kill came after
//!   its synced write) and the state log what the engine committed;
//! - the restarted relay serves the mirror's tiles up to its latest checkpoint (published at
//!   start), and its engine takes the mirror up by itself;
//! - the same bundle posted again is answered 200, every entry taken as held; the later bundles
//!   import; and the state log ends as an uninterrupted relay's does;
//! - an export killed before it sent anything leaves both stores as they were; the next export is
//!   whole and verifies with the relay key; and no part of a bundle decodes as one (what
//!   `cairn rollout record-state` relies on to refuse a download cut short).
//!
//! docs/relay.md ("A relay killed part way") has the table.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;
#[path = "support/running.rs"]
mod running;
#[path = "../../../vault/tests/common/strace.rs"]
mod strace;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_relay::interrupted::{EXPORT_STEPS, IMPORT_STEPS};
use cairn_vault::{TransferBundle, Vault};
use cairn_verifier::campaign::ApprovalAction;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use common::{ORIGIN, SignerLog, TOKEN};
use running::Running;

/// The signer's log and its bundles: the whole log (plan, decisions), then two gate approvals.
fn bundles(dir: &Path) -> (SignerLog, Vec<Vec<u8>>) {
    let signer = common::signer_log(
        &dir.join("signer"),
        6,
        0,
        &[
            ("canary", 2, 0, 1000, 500, true),
            ("fleet", 6, 0, 900, 500, false),
        ],
        common::Policy::default(),
    );
    let mut out = vec![signer.vault.export_bundle(0).unwrap().to_cbor()];
    for _ in 0..2 {
        let from = signer.vault.size();
        signer.approve(1, ApprovalAction::OpenStage);
        out.push(signer.vault.export_bundle(from).unwrap().to_cbor());
    }
    (signer, out)
}

/// Waits for the relay, killed by its hook, to be gone; panics unless `SIGKILL` ended it.
fn killed(relay: &mut Running, what: &str) {
    let started = Instant::now();
    loop {
        if let Some(status) = relay.child.try_wait().unwrap() {
            assert_eq!(
                status.signal(),
                Some(9),
                "{what}: the relay ended otherwise ({status}): {}",
                relay.stderr()
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: the relay was not killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens the store, runs `fsck`, returns its size.
fn checked(path: &Path, what: &str) -> u64 {
    let vault = Vault::open(path).unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()));
    let report = vault
        .fsck(&mut |_, _| {})
        .unwrap_or_else(|e| panic!("{what}: fsck {}: {e}", path.display()));
    assert_eq!(report.size, vault.size(), "{what}");
    vault.size()
}

/// The size of the checkpoint in a tiles directory, if it has one.
fn tiles_size(tiles: &Path) -> Option<u64> {
    let note = std::fs::read_to_string(tiles.join("checkpoint")).ok()?;
    note.lines().nth(1)?.parse().ok()
}

/// Posts `bundle`, expecting 200; the reply's JSON.
fn imported(relay: &Running, bundle: &[u8], what: &str) -> serde_json::Value {
    let (code, reply) = relay.import(bundle);
    assert_eq!(code, 200, "{what}: {reply}");
    serde_json::from_str(&reply[reply.find('{').unwrap()..]).unwrap()
}

/// Waits until the state log's size (from `/metrics`) stops changing; that size.
fn settled_state(relay: &Running) -> u64 {
    let mut last = relay.state_log_size().unwrap();
    let mut since = Instant::now();
    let started = Instant::now();
    while since.elapsed() < Duration::from_millis(1500) {
        assert!(started.elapsed() < Duration::from_secs(60), "never settled");
        std::thread::sleep(Duration::from_millis(100));
        let now = relay.state_log_size().unwrap();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

/// Every bundle imported by one relay, uninterrupted: the state log's size at the end.
fn uninterrupted(bundles: &[Vec<u8>]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    common::config(dir.path(), "");
    let relay = Running::start(dir.path(), None);
    for (i, b) in bundles.iter().enumerate() {
        imported(&relay, b, &format!("uninterrupted import {i}"));
    }
    settled_state(&relay)
}

#[test]
fn an_import_killed_at_any_step_is_completed_by_the_restart_and_the_retry() {
    let scratch = tempfile::tempdir().unwrap();
    let (signer, bundles) = bundles(scratch.path());
    let expected_state = uninterrupted(&bundles);
    let whole = TransferBundle::decode(&bundles[0]).unwrap();
    for step in IMPORT_STEPS {
        let what = format!("import killed after {step}");
        let dir = tempfile::tempdir().unwrap();
        common::config(dir.path(), "");
        let data = dir.path().join("data");
        let mut relay = Running::start_env(dir.path(), None, &[("CAIRN_TEST_KILL_AFTER", step)]);
        let (code, reply) = relay.import(&bundles[0]);
        assert_eq!(code, 0, "{what}: answered: {reply}");
        killed(&mut relay, &what);
        drop(relay);

        // What it left: the mirror whole, the state log as far as the engine committed, the
        // tiles only once published.
        let mirror = checked(&data.join("mirror"), &what);
        assert_eq!(mirror, whole.to(), "{what}: the mirror");
        let state = checked(&data.join("state"), &what);
        assert_eq!(
            state > 0,
            step != "mirror",
            "{what}: the state log has {state}"
        );
        assert_eq!(
            tiles_size(&data.join("tiles")),
            (step == "tiles").then_some(mirror),
            "{what}: the tiles"
        );

        // The restart publishes the tiles and takes the mirror up; the retry is answered 200.
        let relay = Running::start(dir.path(), None);
        assert!(
            relay.port.is_some(),
            "{what}: no restart: {}",
            relay.stderr()
        );
        assert_eq!(tiles_size(&data.join("tiles")), Some(mirror), "{what}");
        let reply = imported(&relay, &bundles[0], &what);
        assert_eq!(
            reply["appended"][0], reply["appended"][1],
            "{what}: {reply}"
        );
        assert_eq!(
            reply["already_held"].as_u64(),
            Some(whole.entries.len() as u64),
            "{what}: {reply}"
        );
        for (i, b) in bundles.iter().enumerate().skip(1) {
            imported(&relay, b, &format!("{what}: import {i}"));
        }
        let state = settled_state(&relay);
        println!(
            "{what}: left mirror {mirror}, state log {}; the retry: {reply}",
            if step == "mirror" { "empty" } else { "written" }
        );
        drop(relay);
        assert_eq!(checked(&data.join("mirror"), &what), signer.vault.size());
        assert_eq!(checked(&data.join("state"), &what), state);
        assert_eq!(
            state, expected_state,
            "{what}: the state log is not what an uninterrupted relay's is"
        );
    }
}

#[test]
fn an_export_killed_before_it_sent_is_whole_the_next_time() {
    let scratch = tempfile::tempdir().unwrap();
    let (_signer, bundles) = bundles(scratch.path());
    for step in EXPORT_STEPS {
        let what = format!("export killed after {step}");
        let dir = tempfile::tempdir().unwrap();
        common::config(dir.path(), "");
        let data = dir.path().join("data");
        let mut relay = Running::start_env(dir.path(), None, &[("CAIRN_TEST_KILL_AFTER", step)]);
        imported(&relay, &bundles[0], &what);
        let before = settled_state(&relay);
        let get = format!(
            "GET /api/v1/state-bundle?from=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \
             {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        let answer = relay.send_bytes(get.as_bytes());
        assert!(answer.is_none(), "{what}: something was sent");
        killed(&mut relay, &what);
        drop(relay);
        checked(&data.join("mirror"), &what);
        assert_eq!(checked(&data.join("state"), &what), before, "{what}");

        let relay = Running::start(dir.path(), None);
        let answer = relay.send_bytes(get.as_bytes()).unwrap();
        let at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&answer[..at]);
        assert!(head.starts_with("HTTP/1.1 200"), "{what}: {head}");
        let body = &answer[at..];
        let bundle = TransferBundle::decode(body).unwrap();
        let key = cairn_relay::read_key(&data.join("relay-key.pub.pem")).unwrap();
        let origin = format!("{ORIGIN}/relay");
        let log_key = LogKey::new(&origin, &origin, key, &Software).unwrap();
        bundle.verify(&log_key, None).unwrap();
        assert!(bundle.to() >= before, "{what}: {} < {before}", bundle.to());
        // A download cut short is never taken for a bundle.
        let step_by = (body.len() / 97).max(1);
        for cut in (0..body.len())
            .step_by(step_by)
            .chain(body.len() - 8..body.len())
        {
            assert!(
                TransferBundle::decode(&body[..cut]).is_err(),
                "{what}: the first {cut} of {} bytes decode as a bundle",
                body.len()
            );
        }
        println!(
            "{what}: nothing sent, state log of {before} unchanged; the next export: {} entries, \
             {} bytes, verified",
            bundle.to(),
            body.len()
        );
    }
}
