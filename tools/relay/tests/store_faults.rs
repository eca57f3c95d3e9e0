//! Failed syncs and writes in the relay's stores, injected by `strace --inject` into the running
//! `cairn-relay` (Debian's `strace`, installed by `tools/setup`): `fdatasync`, `fsync` and `write`
//! fail with `EIO` or `ENOSPC` at chosen calls while bundles are imported over HTTP. Each import
//! writes the mirror (the signer's log) and then the relay's own state log (the campaign's events).
//! After each fault:
//!
//! - the import that hit it answers 500 with an error naming the errno, and nothing is answered
//!   200 that is not durable in both stores;
//! - the relay does not go on on the poisoned store: it exits with status 75
//!   (`cairn_relay::EXIT_POISONED`) and a message naming the store's path and saying to restart;
//! - a restart without faults reopens both stores with every acknowledged entry (all or nothing of
//!   the import in flight), `fsck` passes on both, and the remaining bundles import.
//!
//! The table the test prints is the one in docs/log.md ("Faults in the relay's stores").

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;
#[path = "support/running.rs"]
mod running;
#[path = "../../../vault/tests/common/strace.rs"]
mod strace;

use std::path::Path;
use std::process::Command;

use cairn_verifier::campaign::ApprovalAction;
use common::SignerLog;
use running::{Phase, Running, check_stores};
use strace::Fault;

/// The cases: a few faults in the stores' creation, the rest in the imports.
fn faults() -> Vec<(Fault, Phase)> {
    let start = Fault::list(&[
        ("fdatasync", "EIO", &[1, 2]),
        ("fsync", "EIO", &[1, 8]),
        ("write", "EIO", &[40]),
    ]);
    let imports = Fault::list(&[
        ("fdatasync", "EIO", &[1, 2, 3, 4, 5, 6, 8, 10]),
        ("fdatasync", "ENOSPC", &[2, 5]),
        ("fsync", "EIO", &[1, 2, 3]),
        ("write", "EIO", &[2, 10, 40]),
        ("write", "ENOSPC", &[5, 20]),
    ]);
    start
        .into_iter()
        .map(|f| (f, Phase::Start))
        .chain(imports.into_iter().map(|f| (f, Phase::Imports)))
        .collect()
}

/// The signer's log and the bundles that carry it to the relay: the whole log, then one gate
/// approval per bundle.
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
    for _ in 0..3 {
        let from = signer.vault.size();
        signer.approve(1, ApprovalAction::OpenStage);
        out.push(signer.vault.export_bundle(from).unwrap().to_cbor());
    }
    (signer, out)
}

struct Outcome {
    fault: Fault,
    phase: Phase,
    landed: Vec<String>,
    saw: String,
    recovered: String,
}

#[expect(
    clippy::too_many_lines,
    reason = "one fault's whole story: run, stop, restart, compare with what was acknowledged"
)]
fn run_case((fault, phase): (Fault, Phase)) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (signer, bundles) = bundles(dir.path());
    common::config(dir.path(), "");
    let data = dir.path().join("data");
    let trace = dir.path().join("trace");
    let ctx = format!("{fault:?} {phase:?}");

    let mut relay = Running::start(dir.path(), Some((&fault, &trace, phase)));
    // Acknowledged: the mirror's size in the last 200, and the state log's size after it.
    let (mut mirror_acked, mut state_acked) = (0u64, 0u64);
    let mut in_flight = None;
    let mut saw = String::new();
    if relay.port.is_none() {
        let code = relay.exit_code(30);
        assert!(
            code.is_some_and(|c| c != 0),
            "{ctx}: the relay neither listened nor failed: {}",
            relay.stderr()
        );
        let stderr = relay.stderr();
        saw = format!(
            "start refused: {}",
            stderr.lines().next().unwrap_or("").trim()
        );
    } else {
        for (i, bundle) in bundles.iter().enumerate() {
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
            in_flight = Some(i);
            // A store's failed write: 500 naming the errno (or, when the engine's own step hit
            // it, the relay is already gone); then the relay stops.
            if code != 0 && code != 200 {
                assert_eq!(code, 500, "{ctx}: import {i}: {reply}");
                let errno = fault.errno_text();
                assert!(
                    reply.contains(errno),
                    "{ctx}: the 500 does not say {errno:?}: {reply}"
                );
            }
            let http = if code == 0 {
                "no answer".to_owned()
            } else {
                code.to_string()
            };
            let exit = relay.exit_code(10);
            let stderr = relay.stderr();
            match exit {
                Some(cairn_relay::EXIT_POISONED) => {
                    let line = stderr
                        .lines()
                        .find(|l| l.starts_with("cairn-relay: stopping:"))
                        .unwrap_or_else(|| panic!("{ctx}: no stopping message: {stderr}"));
                    assert!(
                        line.contains(&data.display().to_string()) && line.contains("restart"),
                        "{ctx}: the message does not name the store and what to do: {line}"
                    );
                    saw = format!(
                        "import {i}: {http}, exit 75: {}",
                        line.trim_start_matches("cairn-relay: stopping: ")
                    );
                }
                // Goes on: the fault was outside the stores (checked below).
                None => saw = format!("import {i}: {http}, the relay goes on"),
                Some(other) => panic!("{ctx}: the relay exited {other}: {stderr}"),
            }
            break;
        }
        if in_flight.is_none() {
            saw = "no error".into();
        }
    }
    let relay_stderr = relay.stderr();
    drop(relay);
    let mut landed: Vec<String> = strace::injected(&trace)
        .iter()
        .map(|p| strace::store_file(p, &data))
        .collect();
    landed.dedup();
    if !saw.contains("exit 75") && !saw.starts_with("start refused") {
        let swallowed: Vec<&String> = landed
            .iter()
            .filter(|k| {
                (k.starts_with("mirror") || k.starts_with("state")) && !k.ends_with("info log")
            })
            .collect();
        assert!(
            swallowed.is_empty(),
            "{ctx}: the fault landed in {swallowed:?} and the relay did not stop: {saw}\n\
             its standard error:\n{relay_stderr}"
        );
    }

    // Reopened without faults: everything acknowledged, fsck clean on both stores.
    check_stores(&data, mirror_acked, state_acked, &ctx, &saw);
    let mut relay = Running::start(dir.path(), None);
    assert!(
        relay.port.is_some(),
        "{ctx}: the relay does not restart: {:?} {}",
        relay.exit_code(5),
        relay.stderr()
    );
    // The whole log again: what the mirror holds is taken as held, the rest appended.
    let (code, from) = relay.import(&signer.vault.export_bundle(0).unwrap().to_cbor());
    assert_eq!(
        code, 200,
        "{ctx}: importing the whole log after restart: {from}"
    );
    assert!(
        from.contains(&format!("\"size\":{}", signer.vault.size())),
        "{ctx}: after restart the mirror is not at the signer's size: {from}"
    );
    assert!(
        relay.state_log_size().unwrap() >= state_acked,
        "{ctx}: the state log went back"
    );
    Outcome {
        fault,
        phase,
        landed,
        saw,
        recovered: format!(
            "mirror {mirror_acked} acked; state log {state_acked} acked{}",
            in_flight.map_or(String::new(), |i| format!(", import {i} in flight"))
        ),
    }
}

#[test]
fn failed_syncs_and_writes_in_the_relay_stores_stop_the_relay_and_lose_nothing_acknowledged() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is missing (tools/setup installs it)"
    );
    let mut outcomes = Vec::new();
    for fault in faults() {
        outcomes.push(run_case(fault));
    }
    println!("| fault | armed | landed in | the relay | acknowledged before |");
    println!("|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| `{}` {} (call {}) | {} | {} | {} | {} |",
            o.fault.syscall,
            o.fault.errno,
            o.fault.when,
            match o.phase {
                Phase::Start => "at start",
                Phase::Imports => "in imports",
            },
            if o.landed.is_empty() {
                "not reached".into()
            } else {
                o.landed.join(", ")
            },
            o.saw,
            o.recovered
        );
    }
    let stopped = outcomes
        .iter()
        .filter(|o| o.saw.contains("exit 75"))
        .count();
    assert!(
        stopped >= outcomes.len() / 3,
        "only {stopped} of {} faults stopped the relay: the injection is not working",
        outcomes.len()
    );
}
