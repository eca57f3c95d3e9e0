//! Rollback and quarantine end to end, through the relay's engine, a real Mosquitto and the
//! fleet simulator's devices, each running the device verifier on every delivery:
//!
//! - devices whose install keeps failing are retried up to the plan's limit, then get the
//!   pre-signed rollback target, verify it, install it and report it: `rolled-back`;
//! - devices that receive a tampered delivery refuse it at the boot check and report a
//!   verification failure: the plan quarantines them at once, and nothing more goes to them;
//! - an operator quarantines devices before their stage opens: they never get a delivery;
//! - an operator rolls back devices that installed the update: they verify and install the
//!   target.
//!
//! Each device's final state, and how it got there, is checked in the relay's log.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and the test is one scenario"
)]

#[path = "../../relay/tests/common/mod.rs"]
mod relay_common;

#[path = "e2e/mod.rs"]
mod e2e;

use std::collections::BTreeMap;

use cairn_fleet_sim::{Faults, Rate};
use cairn_relay::engine::{Selection, Status};
use cairn_vault::Query;
use cairn_verifier::campaign::{DeviceEvent, DeviceState};
use cairn_verifier::statement::Statement;
use e2e::{World, count, status, transfer, wait_for};
use relay_common::{CAMPAIGN, Policy, RELEASE, ROLLBACK};

const SEED: &str = "5";

/// The device's events in the relay log, oldest first.
fn events(relay: &cairn_relay::Relay, device: &str) -> Vec<(DeviceState, String, String, u64)> {
    let engine = relay.engine();
    let log = engine.log().vault();
    log.query_indices(Query::Device(device))
        .unwrap()
        .into_iter()
        .map(|i| {
            let entry = log.entry(i).unwrap();
            let Statement::DeviceEvent(DeviceEvent {
                state,
                release_id,
                actor,
                attempt,
                ..
            }) = Statement::decode(&entry).unwrap()
            else {
                panic!("relay log entry {i} is not a device event");
            };
            (
                state,
                release_id.as_str().to_owned(),
                actor.as_str().to_owned(),
                attempt,
            )
        })
        .collect()
}

#[test]
fn failing_devices_roll_back_and_tampered_ones_are_quarantined_through_mosquitto() {
    // 240 devices; `CAIRN_E2E_DEVICES=8203` runs it at the reference fleet's size.
    let devices: u64 = std::env::var("CAIRN_E2E_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(limit > devices + 200, "open-files limit {limit} is too low");
    let dir = tempfile::tempdir().unwrap();
    let signer = relay_common::signer_log(
        &dir.path().join("signer"),
        devices,
        0,
        &[
            ("first", devices / 2, 0, 700, 1000, false),
            ("rest", devices, 0, 700, 1000, false),
        ],
        Policy {
            max_attempts: 2,
            backoff_secs: 1,
            quarantine_after_failures: 5,
            quarantine_on_verification_failure: true,
        },
    );
    let world = World::start(dir.path(), "[rollout]\ntick_millis = 50\n");
    let relay = &world.relay;
    transfer(relay, &signer.vault);
    let stages_file = world.fleet_files(dir.path(), &signer);

    // What the simulator's faults select, computed the way it does.
    let faults = Faults {
        seed: SEED.parse().unwrap(),
        install_failure: BTreeMap::from([
            (0, Rate::new(0.1).unwrap()),
            (1, Rate::new(0.1).unwrap()),
        ]),
        stages: Faults::read_stages(&stages_file).unwrap(),
        tamper_delivery: Rate::new(0.05).unwrap(),
        ..Faults::default()
    };
    let stage_of = faults.stages.clone();
    let tampered: Vec<&String> = signer
        .devices
        .iter()
        .filter(|d| faults.for_device(d).tamper_delivery)
        .collect();
    let failing: Vec<&String> = signer
        .devices
        .iter()
        .filter(|d| {
            let f = faults.for_device(d);
            f.install_failure && !f.tamper_delivery
        })
        .collect();
    assert!(!tampered.is_empty() && !failing.is_empty());

    // An operator quarantines three clean devices of the second stage before it opens.
    let held: Vec<String> = signer
        .devices
        .iter()
        .filter(|d| {
            let f = faults.for_device(d);
            stage_of[*d] == 1 && !f.install_failure && !f.tamper_delivery
        })
        .take(3)
        .cloned()
        .collect();
    relay
        .engine()
        .quarantine(
            CAMPAIGN,
            &held,
            "operator:alice",
            "suspected tampering reported by the field team",
            cairn_relay::engine::now(),
        )
        .unwrap();

    let _sim = world.simulate(
        dir.path(),
        &[
            "--install-failure",
            "0=10%",
            "--install-failure",
            "1=10%",
            "--tamper-delivery",
            "5%",
            "--seed",
            SEED,
        ],
    );
    let settled = |relay: &cairn_relay::Relay| {
        count(relay, DeviceState::Installed)
            + count(relay, DeviceState::RolledBack)
            + count(relay, DeviceState::Quarantined)
    };
    wait_for(
        "every device to settle and the campaign to complete",
        180,
        || status(relay) == Status::Completed && settled(relay) == devices,
    );

    // An operator rolls back three devices that installed the update.
    let reverted: Vec<String> = signer
        .devices
        .iter()
        .filter(|d| {
            let f = faults.for_device(d);
            !f.install_failure && !f.tamper_delivery && !held.contains(d)
        })
        .take(3)
        .cloned()
        .collect();
    relay
        .engine()
        .rollback(
            relay.vault(),
            CAMPAIGN,
            &Selection::Devices(reverted.clone()),
            "operator:alice",
            "field reports of a regression",
            cairn_relay::engine::now(),
        )
        .unwrap();
    wait_for("the operator's rollbacks to be installed", 60, || {
        reverted.iter().all(|d| {
            relay.engine().campaigns()[CAMPAIGN]
                .device(d)
                .unwrap()
                .state()
                == DeviceState::RolledBack
        })
    });

    for device in &signer.devices {
        let evs = events(relay, device);
        let (state, release, actor, _) = evs.last().unwrap().clone();
        let delivered = |r: &str| {
            evs.iter()
                .any(|(s, rel, _, _)| *s == DeviceState::Delivered && rel == r)
        };
        if held.contains(device) {
            // Quarantined by the operator before anything was delivered.
            assert_eq!(
                (state, actor.as_str()),
                (DeviceState::Quarantined, "operator:alice"),
                "{device}"
            );
            assert!(
                !delivered(RELEASE) && !delivered(ROLLBACK),
                "{device}: {evs:?}"
            );
        } else if tampered.contains(&device) {
            // The device's verifier refused the tampered delivery; the plan quarantined it.
            assert_eq!(
                (state, actor.as_str()),
                (DeviceState::Quarantined, "rule"),
                "{device}"
            );
            assert!(
                evs.iter()
                    .any(|(s, _, a, _)| *s == DeviceState::Failed && a == "device"),
                "{device}: {evs:?}"
            );
            assert!(!delivered(ROLLBACK), "{device}: {evs:?}");
        } else if failing.contains(&device) {
            // Two failed attempts (the plan's limit), then the rollback target, verified and
            // installed by the device.
            let failures: Vec<u64> = evs
                .iter()
                .filter(|(s, rel, a, _)| {
                    *s == DeviceState::Failed && rel == RELEASE && a == "device"
                })
                .map(|e| e.3)
                .collect();
            assert_eq!(failures, [1, 2], "{device}: {evs:?}");
            assert!(delivered(ROLLBACK), "{device}: {evs:?}");
            assert_eq!(
                (state, release.as_str(), actor.as_str()),
                (DeviceState::RolledBack, ROLLBACK, "device"),
                "{device}"
            );
        } else if reverted.contains(device) {
            assert!(
                evs.iter()
                    .any(|(s, rel, _, _)| *s == DeviceState::Installed && rel == RELEASE),
                "{device}: {evs:?}"
            );
            assert_eq!(
                (state, release.as_str(), actor.as_str()),
                (DeviceState::RolledBack, ROLLBACK, "device"),
                "{device}"
            );
        } else {
            assert_eq!(
                (state, release.as_str()),
                (DeviceState::Installed, RELEASE),
                "{device}"
            );
        }
    }
    assert_eq!(
        count(relay, DeviceState::RolledBack),
        (failing.len() + 3) as u64
    );
    assert_eq!(
        count(relay, DeviceState::Quarantined),
        (tampered.len() + 3) as u64
    );
    eprintln!(
        "{} rolled back by rule, 3 by the operator; {} quarantined by rule, 3 by the operator",
        failing.len(),
        tampered.len()
    );
}
