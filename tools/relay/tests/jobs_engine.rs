//! The AWS IoT Jobs transport and the rollout engine, step by step on a simulated clock: each
//! execution transition becomes the device event it maps to (docs/jobs.md, "States"), with the
//! device's words; a step timer running out is TIMED_OUT, a failure by rule, and the plan's retry
//! is the next execution; a REJECTED delivery quarantines the device; a device quarantined by an
//! operator has its execution CANCELED, and nothing it sends afterwards is recorded.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and each test is one scenario"
)]

mod common;

use std::time::Duration;

use cairn_relay::engine::{Engine, Selection};
use cairn_relay::jobs::topics::job_id;
use cairn_relay::jobs::{ErrorCode, JobStatus, Service};
use cairn_verifier::campaign::DeviceState;
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use common::{CAMPAIGN, Policy, RELEASE, device, signer_log};
use serde_json::json;

fn state(engine: &Engine, d: &str) -> DeviceState {
    engine.campaigns()[CAMPAIGN].device(d).unwrap().state()
}

/// One step: the engine ticks and commits, and what it hands out becomes executions.
fn step(engine: &mut Engine, jobs: &mut Service, mirror: &cairn_vault::Vault, t: u64) {
    engine.tick(mirror, t).unwrap();
    let out = engine.commit(mirror, Duration::from_secs(1), true).unwrap();
    engine.jobs_commit(jobs, out, t);
}

/// A device's request, its transition recorded as the runner records it.
fn send(
    engine: &mut Engine,
    jobs: &mut Service,
    thing: &str,
    rest: &str,
    body: &serde_json::Value,
    t: u64,
) -> cairn_relay::jobs::Handled {
    let h = jobs.handle(thing, rest, body.to_string().as_bytes(), t);
    if let Some(tr) = &h.transition {
        engine.job_transition(tr, t).unwrap();
    }
    h
}

fn causes(engine: &Engine, d: &str) -> Vec<(DeviceState, String, String)> {
    engine
        .device_history(CAMPAIGN, d)
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.state, e.actor, e.cause))
        .collect()
}

/// Three devices in one stage, three attempts 30 s apart: the signer's log and the relay's
/// engine on it (in `dir/relay`).
fn setup(dir: &std::path::Path) -> (common::SignerLog, Engine) {
    let signer = signer_log(
        &dir.join("signer"),
        3,
        0,
        &[("all", 3, 0, 1000, 1000, false)],
        Policy {
            max_attempts: 3,
            backoff_secs: 30,
            quarantine_after_failures: 5,
            quarantine_on_verification_failure: true,
        },
    );
    let engine = open(dir, &signer);
    (signer, engine)
}

fn open(dir: &std::path::Path, signer: &common::SignerLog) -> Engine {
    Engine::open(
        &dir.join("relay"),
        "oem.example/cairn/relay",
        ReleaseKey::new(public_key(&test_key(Fixture::RELEASE_KEY)), &Software),
        &signer.vault,
    )
    .unwrap()
}

#[test]
fn a_retry_after_a_restart_is_the_next_execution() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, mut engine) = setup(dir.path());
    let mut jobs = Service::new();
    let mirror = &signer.vault;
    let job = job_id(CAMPAIGN, RELEASE);
    let d1 = device(1);
    let t0 = 1_900_000_000;
    step(&mut engine, &mut jobs, mirror, t0);
    send(
        &mut engine,
        &mut jobs,
        &d1,
        "start-next",
        &json!({}),
        t0 + 1,
    );
    let h = send(
        &mut engine,
        &mut jobs,
        &d1,
        &format!("{job}/update"),
        &json!({"status": "FAILED", "expectedVersion": 2, "statusDetails": {"flash": "erase"}}),
        t0 + 2,
    );
    assert_eq!(h.rejected, None);
    step(&mut engine, &mut jobs, mirror, t0 + 2);
    assert_eq!(state(&engine, &d1), DeviceState::Failed);

    // The relay restarts before the retry: the engine from its log, the Jobs service from what
    // the log says (as `Relay::open` does).
    drop(engine);
    let mut engine = open(dir.path(), &signer);
    let mut jobs = Service::new();
    for r in engine.jobs_in_progress(mirror).unwrap() {
        jobs.restore(&r);
    }
    let ended = engine.jobs_ended().unwrap();
    assert!(ended.is_empty(), "not yet waiting for the retry: {ended:?}");
    step(&mut engine, &mut jobs, mirror, t0 + 10);
    assert_eq!(state(&engine, &d1), DeviceState::Failed, "backoff");

    // And again once it waits: its ended execution comes back, the retry is execution 2.
    step(&mut engine, &mut jobs, mirror, t0 + 32);
    drop(engine);
    let mut engine = open(dir.path(), &signer);
    let mut jobs = Service::new();
    let ended = engine.jobs_ended().unwrap();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(
        (
            ended[0].transition.status,
            ended[0].transition.execution_number
        ),
        (JobStatus::Failed, 1)
    );
    for e in &ended {
        jobs.restore_ended(e);
    }
    step(&mut engine, &mut jobs, mirror, t0 + 33);
    let e = jobs.execution(&d1, &job).unwrap();
    assert_eq!(
        (e.status, e.execution_number, e.version_number),
        (JobStatus::Queued, 2, 1)
    );
}

#[test]
fn executions_drive_the_campaign_as_the_plan_says() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, mut engine) = setup(dir.path());
    let mut jobs = Service::new();
    let mirror = &signer.vault;
    let job = job_id(CAMPAIGN, RELEASE);
    let (d1, d2, d3) = (device(1), device(2), device(3));
    let t0 = 1_900_000_000;
    step(&mut engine, &mut jobs, mirror, t0);
    for d in [&d1, &d2, &d3] {
        let e = jobs.execution(d, &job).unwrap();
        assert_eq!((e.status, e.execution_number), (JobStatus::Queued, 1));
        assert_eq!(e.document["release"], RELEASE);
        assert_eq!(state(&engine, d), DeviceState::Pending);
    }

    // Device 1 starts with a one-minute step timer and never finishes: TIMED_OUT at t0 + 61,
    // failed by rule; the plan's retry (backoff 30 s) queues execution 2.
    let h = send(
        &mut engine,
        &mut jobs,
        &d1,
        "start-next",
        &json!({"stepTimeoutInMinutes": 1}),
        t0 + 1,
    );
    assert!(h.transition.is_some());
    assert_eq!(state(&engine, &d1), DeviceState::Delivered);
    step(&mut engine, &mut jobs, mirror, t0 + 60);
    assert_eq!(state(&engine, &d1), DeviceState::Delivered, "not yet");
    let (timed_out, _) = jobs.expire(t0 + 61);
    assert_eq!(timed_out.len(), 1);
    for t in &timed_out {
        engine.job_transition(t, t0 + 61).unwrap();
    }
    step(&mut engine, &mut jobs, mirror, t0 + 61);
    assert_eq!(state(&engine, &d1), DeviceState::Failed);
    let last = causes(&engine, &d1).pop().unwrap();
    assert_eq!(last.1, "rule");
    assert!(last.2.contains("job TIMED_OUT v3 #1"), "{last:?}");
    step(&mut engine, &mut jobs, mirror, t0 + 61 + 30);
    let e = jobs.execution(&d1, &job).unwrap();
    assert_eq!(
        (e.status, e.execution_number, e.version_number),
        (JobStatus::Queued, 2, 1)
    );
    assert_eq!(state(&engine, &d1), DeviceState::Pending);
    send(
        &mut engine,
        &mut jobs,
        &d1,
        "start-next",
        &json!({}),
        t0 + 100,
    );
    let h = send(
        &mut engine,
        &mut jobs,
        &d1,
        &format!("{job}/update"),
        &json!({"status": "SUCCEEDED", "expectedVersion": 2, "statusDetails": {"boot-check": "ok"}}),
        t0 + 101,
    );
    assert_eq!(h.rejected, None);
    step(&mut engine, &mut jobs, mirror, t0 + 101);
    assert_eq!(state(&engine, &d1), DeviceState::Installed);
    let last = causes(&engine, &d1).pop().unwrap();
    assert_eq!(last.1, "device");
    assert!(
        last.2.contains("job SUCCEEDED v3 #2: boot-check=ok"),
        "{last:?}"
    );

    // Device 2 rejects its delivery (the boot check refused it): quarantined by the plan.
    send(
        &mut engine,
        &mut jobs,
        &d2,
        &format!("{job}/update"),
        &json!({"status": "REJECTED", "statusDetails": {"boot-check": "inclusion-proof"}}),
        t0 + 2,
    );
    step(&mut engine, &mut jobs, mirror, t0 + 2);
    assert_eq!(state(&engine, &d2), DeviceState::Quarantined);
    let h2 = causes(&engine, &d2);
    assert!(
        h2.iter().any(|e| e.0 == DeviceState::Failed
            && e.2
                .contains("verification-failed: job REJECTED v2 #1: boot-check=inclusion-proof")),
        "{h2:?}"
    );

    // Device 3 is quarantined by an operator: its execution is CANCELED, its later update is
    // refused and nothing is recorded.
    engine
        .quarantine_selected(
            CAMPAIGN,
            &Selection::Devices(vec![d3.clone()]),
            "operator:alice",
            "suspected theft",
            t0 + 3,
        )
        .unwrap();
    let out = engine.commit(mirror, Duration::ZERO, true).unwrap();
    let notices = engine.jobs_commit(&mut jobs, out, t0 + 3);
    assert!(
        notices
            .iter()
            .any(|p| p.topic.ends_with(&format!("{d3}/jobs/notify-next")))
    );
    assert_eq!(
        jobs.execution(&d3, &job).unwrap().status,
        JobStatus::Canceled
    );
    let before = engine.log().vault().size();
    let h = send(
        &mut engine,
        &mut jobs,
        &d3,
        &format!("{job}/update"),
        &json!({"status": "SUCCEEDED"}),
        t0 + 4,
    );
    assert_eq!(h.rejected, Some(ErrorCode::TerminalStateReached));
    engine.commit(mirror, Duration::ZERO, true).unwrap();
    assert_eq!(engine.log().vault().size(), before, "nothing recorded");
    assert_eq!(state(&engine, &d3), DeviceState::Quarantined);
}
