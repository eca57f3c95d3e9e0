//! The reference campaign end to end at full size: 8,203 eligible devices (197 rejected) under
//! the reference plan's stages (canary 50 behind an approval gate, wave-1 to 25 %, fleet to
//! 100 %), through the relay's engine and MQTT link, a real Mosquitto, and the fleet simulator's
//! 8,203 devices each with its own certificate running the device verifier. In wave-1, 6 % of
//! the devices fail their first install: the failure threshold (30‰) pauses the rollout, the
//! custodians record the relay's log with the pause in it, a resume approval signed offline
//! after that arrives in a bundle and resumes it, the failed devices are
//! retried and install. Every device's final state is in the relay's log.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and the test is one scenario"
)]

#[path = "../../relay/tests/common/mod.rs"]
mod relay_common;

#[path = "e2e/mod.rs"]
mod e2e;

use cairn_relay::engine::Status;
use cairn_vault::Query;
use cairn_verifier::campaign::{ApprovalAction, DeviceState};
use cairn_verifier::statement::Statement;
use e2e::{World, count, status, transfer, wait_for};
use relay_common::{CAMPAIGN, Policy};
use std::time::Instant;

#[test]
fn the_reference_campaign_runs_end_to_end_through_mosquitto() {
    let eligible: u64 = std::env::var("CAIRN_E2E_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_203);
    // One socket per device on each side; Mosquitto inherits the limit.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit > eligible + 200,
        "open-files limit {limit} is too low"
    );
    let dir = tempfile::tempdir().unwrap();
    let wave = eligible / 4;
    let signer = relay_common::signer_log(
        &dir.path().join("signer"),
        eligible,
        197,
        &[
            ("canary", 50, 0, 980, 20, true),
            ("wave-1", wave, 0, 950, 30, false),
            ("fleet", eligible, 0, 950, 50, false),
        ],
        Policy {
            max_attempts: 3,
            backoff_secs: 5,
            quarantine_after_failures: 3,
            quarantine_on_verification_failure: true,
        },
    );
    let world = World::start(dir.path(), "");
    let relay = &world.relay;

    let started = Instant::now();
    transfer(relay, &signer.vault);
    world.fleet_files(dir.path(), &signer);
    let sim = world.simulate(
        dir.path(),
        &["--install-failure", "1=6%", "--transient", "--seed", "7"],
    );

    // The canary installs; the approval gate holds wave-1 until the custodians approve it.
    wait_for("the canary to succeed and all 50 to install", 300, || {
        status(relay) == Status::WaitingApproval && count(relay, DeviceState::Installed) == 50
    });
    eprintln!("canary done: {:.1?}", started.elapsed());
    signer.approve(1, ApprovalAction::OpenStage);
    transfer(relay, &signer.vault);

    // wave-1: 6 % fail their first install, over the 30‰ threshold: paused by the rule.
    wait_for("the failure threshold to pause wave-1", 300, || {
        status(relay) == Status::Paused { by_rule: true }
    });
    eprintln!("wave-1 paused: {:.1?}", started.elapsed());
    assert_eq!(relay.engine().campaigns()[CAMPAIGN].stage(), 1);
    // The custodians record the relay's log (the pause in it), then sign the resume.
    signer.record_relay(relay.engine().log());
    signer.approve(1, ApprovalAction::Resume);
    transfer(relay, &signer.vault);

    wait_for("the campaign to complete", 600, || {
        status(relay) == Status::Completed && count(relay, DeviceState::Installed) == eligible
    });
    let wall = started.elapsed();
    eprintln!("reference campaign, {eligible} devices, end to end: {wall:.1?}");
    drop(sim);

    // Every device's final state is in the relay's log, and the log verifies as a bundle.
    let engine = relay.engine();
    let log = engine.log().vault();
    let mut retried = 0;
    for d in engine.campaigns()[CAMPAIGN].devices() {
        let (device, state) = (d.id(), d.state());
        assert_eq!(state, DeviceState::Installed, "{device}");
        let events = log.query_indices(Query::Device(device)).unwrap();
        let last = log.entry(*events.last().unwrap()).unwrap();
        let Statement::DeviceEvent(e) = Statement::decode(&last).unwrap() else {
            panic!("{device}: the last entry is not a device event");
        };
        assert_eq!(
            (e.state, e.actor.as_str()),
            (DeviceState::Installed, "device")
        );
        if e.attempt > 1 {
            retried += 1;
        }
    }
    // Over wave-1's failure threshold (30‰ of its devices), which is what paused it.
    assert!(
        retried * 1000 > (wave - 50) * 30,
        "{retried} devices retried in a wave of {}",
        wave - 50
    );
    let bundle = log.export_bundle(0).unwrap();
    let key = engine.log().log_key().unwrap();
    bundle.verify(&key, None).unwrap();
    eprintln!(
        "relay log: {} entries; {retried} devices installed on a retry",
        log.size()
    );
}
