//! A relay restarted mid-campaign keeps its AWS IoT Jobs executions (docs/jobs.md, "After a
//! restart"): the fleet simulator's devices in Jobs mode start their executions and fall silent
//! (IN_PROGRESS), the relay stops, and the relay opened again on the same data rebuilds each
//! execution from its relay log with the same versionNumber, executionNumber, statusDetails and
//! timestamps (queuedAt, startedAt, lastUpdatedAt) and the same job document. The devices come
//! back, start-next hands them the rebuilt execution, and their update with that execution's
//! expectedVersion is accepted: every device ends `installed`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "../../relay/tests/common/mod.rs"]
mod relay_common;

#[path = "e2e/mod.rs"]
mod e2e;

use std::sync::Arc;

use cairn_relay::Relay;
use cairn_relay::jobs::JobStatus;
use cairn_relay::jobs::topics::job_id;
use cairn_verifier::campaign::DeviceState;
use e2e::{World, count, transfer, wait_for};
use relay_common::{CAMPAIGN, RELEASE, device};

/// What a device sees of its execution.
type Seen = (
    JobStatus,
    u64,
    u64,
    Vec<(String, String)>,
    u64,
    Option<u64>,
    u64,
    serde_json::Value,
);

fn executions(relay: &Relay, devices: &[String]) -> Vec<Option<Seen>> {
    let jobs = relay.jobs_snapshot().unwrap();
    let job = job_id(CAMPAIGN, RELEASE);
    devices
        .iter()
        .map(|d| {
            jobs.execution(d, &job).map(|e| {
                (
                    e.status,
                    e.version_number,
                    e.execution_number,
                    e.status_details.clone().into_iter().collect(),
                    e.queued_at,
                    e.started_at,
                    e.last_updated_at,
                    (*e.document).clone(),
                )
            })
        })
        .collect()
}

#[test]
fn in_progress_executions_survive_a_relay_restart() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::start(dir.path(), "jobs = true\n");
    let signer = relay_common::signer_log(
        &dir.path().join("signer"),
        3,
        0,
        &[("all", 3, 0, 1000, 1000, false)],
        relay_common::Policy::default(),
    );
    transfer(&world.relay, &signer.vault);
    world.fleet_files(dir.path(), &signer);
    let devices: Vec<String> = (1..=3).map(device).collect();

    // Silent devices: each starts its execution, installs, and never updates it.
    let silent = world.simulate(dir.path(), &["--mode", "jobs", "--silent", "100%"]);
    wait_for("three executions IN_PROGRESS", 60, || {
        count(&world.relay, DeviceState::Delivered) == 3
            && executions(&world.relay, &devices)
                .iter()
                .all(|e| e.as_ref().is_some_and(|e| e.0 == JobStatus::InProgress))
    });
    drop(silent);
    let before = executions(&world.relay, &devices);
    assert!(
        before.iter().all(|e| e.as_ref().unwrap().1 == 2),
        "{before:?}"
    );

    // The relay stops; a second passes, so a rebuilt time taken from the clock would show.
    let World {
        runner,
        relay,
        broker,
    } = world;
    drop(runner);
    drop(relay);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let config = relay_common::mqtt_config(dir.path(), &broker, "jobs = true\n");
    let relay = Arc::new(Relay::open(&config).unwrap());
    assert_eq!(
        executions(&relay, &devices),
        before,
        "the executions as they were"
    );
    let world = World {
        runner: relay.start().unwrap(),
        relay,
        broker,
    };

    // The devices come back: start-next gives each its execution, already installed, and the
    // update at its versionNumber is accepted.
    let _sim = world.simulate(dir.path(), &["--mode", "jobs"]);
    wait_for("three devices installed", 60, || {
        count(&world.relay, DeviceState::Installed) == 3
    });
    for d in &devices {
        let events = world
            .relay
            .engine()
            .device_history(CAMPAIGN, d)
            .unwrap()
            .events;
        let last = events.last().unwrap();
        assert_eq!(last.state, DeviceState::Installed);
        // The report's words, as the engine records an `installed` report.
        assert_eq!(
            last.cause, "reported installed (job SUCCEEDED v3 #1: boot-check=already-installed)",
            "{d}"
        );
    }
}
