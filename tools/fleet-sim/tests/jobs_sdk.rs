//! The relay speaks AWS IoT Jobs to a device written with the AWS IoT Device SDK for Python (a
//! Jobs client nobody here wrote: `awsiotsdk`, pinned in tools/requirements.txt, in the project's
//! `.venv`), over MQTT/TLS with the device's own client certificate, through Mosquitto:
//!
//! - device 1 gets notify-next / start-next, receives the job document, verifies the delivery
//!   with the host build of the verifier (`cairn-device-check`) and updates the execution to
//!   SUCCEEDED; then its bad requests (invalid JSON, a wrong expectedVersion, a move out of a
//!   terminal state, a job it has no execution of) come back with AWS's codes and change nothing,
//!   and its update on device 4's topic is dropped by the ACL (device 4 still waits);
//! - device 2 reports FAILED, the relay retries (executionNumber 2), it then SUCCEEDS;
//! - device 3's delivery is tampered: the boot check refuses it, it REJECTS the job, and the plan
//!   quarantines it;
//! - device 5 starts its execution and never answers: the relay's in-progress timeout (here 8 s,
//!   `jobs_in_progress_timeout_secs`) makes it TIMED_OUT, recorded as a failure by the relay's
//!   rule, and the device hears of it on notify-next (the retry is the next execution);
//! - every transition is a device event in the relay log with the device's own words.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and the test is one scenario"
)]

#[path = "../../relay/tests/common/mod.rs"]
mod relay_common;

#[path = "e2e/mod.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cairn_relay::jobs::JobStatus;
use cairn_relay::jobs::topics::job_id;
use cairn_verifier::campaign::DeviceState;
use e2e::{World, count, transfer, wait_for};
use relay_common::{CAMPAIGN, ORIGIN, RELEASE, ROLLBACK, device};
use serde_json::Value;

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python3");
    assert!(
        p.exists(),
        "{} not found: tools/setup installs the AWS IoT Device SDK for Python (tools/requirements.txt) \
         into the project's .venv",
        p.display()
    );
    p
}

/// Starts the SDK device for `thing` with `extra` arguments; its stdout is piped.
fn sdk_device(world: &World, dir: &Path, thing: &str, extra: &[String]) -> Child {
    let client = world.broker.client(thing).unwrap();
    let check = serde_json::json!([
        env!("CARGO_BIN_EXE_cairn-device-check"),
        "--device",
        thing,
        "--fleet",
        dir.join("fleet.csv"),
        "--origin",
        ORIGIN,
        "--log-key",
        dir.join("log.pub.pem"),
        "--release-key",
        dir.join("release.pub.pem"),
        "--image",
        format!("{RELEASE}={}", dir.join("update.bin").display()),
        "--image",
        format!("{ROLLBACK}={}", dir.join("rollback.bin").display()),
    ]);
    Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs-device/device.py"))
        .args(["--port", &world.broker.port().to_string()])
        .arg("--ca")
        .arg(world.broker.ca())
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .args(["--thing", thing, "--check", &check.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the device and returns its JSON events.
fn events(child: Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK device failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// The device's events in the relay log: (state, actor, cause).
fn history(world: &World, d: &str) -> Vec<(DeviceState, String, String)> {
    world
        .relay
        .engine()
        .device_history(CAMPAIGN, d)
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.state, e.actor, e.cause))
        .collect()
}

#[test]
fn sdk_devices_take_their_update_through_aws_iot_jobs() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough for devices 1 to 3 to check their delivery and answer on a busy machine.
    let world = World::start(
        dir.path(),
        "jobs = true\njobs_in_progress_timeout_secs = 8\n",
    );
    let signer = relay_common::signer_log(
        &dir.path().join("signer"),
        5,
        0,
        &[("all", 5, 0, 1000, 1000, false)],
        relay_common::Policy::default(),
    );
    transfer(&world.relay, &signer.vault);
    world.fleet_files(dir.path(), &signer);
    let job = job_id(CAMPAIGN, RELEASE);
    let (d1, d2, d3, d4, d5) = (device(1), device(2), device(3), device(4), device(5));
    wait_for("the five executions queued", 30, || {
        let jobs = world.relay.jobs_snapshot();
        [&d1, &d2, &d3, &d4, &d5]
            .iter()
            .all(|d| jobs.as_ref().and_then(|s| s.execution(d, &job)).is_some())
    });

    let probe: Vec<String> = [
        "--probe",
        "--foreign-job",
        &job_id(CAMPAIGN, ROLLBACK),
        "--other-thing",
        &d4,
        "--other-job",
        &job,
    ]
    .map(String::from)
    .to_vec();
    let one = sdk_device(&world, dir.path(), &d1, &probe);
    let two = sdk_device(
        &world,
        dir.path(),
        &d2,
        &["--executions", "2", "--fail-first", "1"].map(String::from),
    );
    let three = sdk_device(&world, dir.path(), &d3, &["--tamper".to_owned()]);
    let five = sdk_device(&world, dir.path(), &d5, &["--never-answer".to_owned()]);
    let (one, two, three, five) = (events(one), events(two), events(three), events(five));

    // Device 1: QUEUED (v1) -> IN_PROGRESS (v2) by start-next, then SUCCEEDED (v3).
    let started = of(&one, "started");
    assert_eq!(started.len(), 1, "{one:?}");
    let s = started[0];
    assert_eq!(
        (&s["job"], &s["status"], &s["version"], &s["execution"]),
        (
            &Value::from(job.clone()),
            &Value::from("IN_PROGRESS"),
            &Value::from(2),
            &Value::from(1)
        ),
    );
    assert_eq!(s["release"], RELEASE);
    assert!(s["started_at"].as_u64().unwrap() >= s["queued_at"].as_u64().unwrap());
    assert_eq!(s["token"], "start-1", "clientToken echoed");
    let updated = of(&one, "updated");
    assert_eq!(updated[0]["status"], "SUCCEEDED");
    assert_eq!(updated[0]["version"], 3);
    assert_eq!(updated[0]["token"], "update-2");
    assert_eq!(updated[0]["details"]["boot-check"], "ok");
    // Its bad requests: AWS's codes, nothing accepted, nothing of device 4's seen.
    let mut probes: Vec<(String, String)> = of(&one, "probe")
        .iter()
        .map(|p| {
            (
                p["token"].as_str().unwrap_or("-").to_owned(),
                p["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    probes.sort();
    assert_eq!(
        probes,
        [
            ("-", "InvalidJson"),
            ("foreign-job", "ResourceNotFound"),
            ("out-of-terminal", "TerminalStateReached"),
            ("wrong-version", "VersionMismatch"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(of(&one, "probe-accepted").is_empty(), "{one:?}");
    assert!(
        of(&one, "leak").is_empty(),
        "device 1 read device 4's jobs: {one:?}"
    );

    // Device 2: FAILED on execution 1, retried as execution 2, SUCCEEDED.
    let started: Vec<u64> = of(&two, "started")
        .iter()
        .map(|s| s["execution"].as_u64().unwrap())
        .collect();
    assert_eq!(started, [1, 2], "{two:?}");
    let statuses: Vec<&str> = of(&two, "updated")
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["FAILED", "SUCCEEDED"]);

    // Device 3: its tampered delivery refused at the boot check; REJECTED.
    let checked = of(&three, "checked");
    assert_eq!(checked[0]["exit"], 1, "{three:?}");
    assert_eq!(of(&three, "updated")[0]["status"], "REJECTED");

    wait_for("device 3 quarantined", 10, || {
        count(&world.relay, DeviceState::Quarantined) == 1
    });
    assert_eq!(count(&world.relay, DeviceState::Installed), 2);

    // The relay log: every transition with the device's words; the probes added nothing.
    let h1 = history(&world, &d1);
    let states: Vec<DeviceState> = h1.iter().map(|e| e.0).collect();
    assert_eq!(
        states,
        [
            DeviceState::Eligible,
            DeviceState::Pending,
            DeviceState::Delivered,
            DeviceState::Installed
        ],
        "{h1:?}"
    );
    assert_eq!(h1[2].1, "device");
    assert!(h1[2].2.contains("job IN_PROGRESS v2 #1"), "{h1:?}");
    assert!(h1[2].2.contains("agent=awsiotsdk-python"), "{h1:?}");
    assert!(h1[3].2.contains("job SUCCEEDED v3 #1"), "{h1:?}");
    assert!(h1[3].2.contains("boot-check=ok"), "{h1:?}");
    let h2: Vec<DeviceState> = history(&world, &d2).iter().map(|e| e.0).collect();
    assert_eq!(
        h2,
        [
            DeviceState::Eligible,
            DeviceState::Pending,
            DeviceState::Delivered,
            DeviceState::Failed,
            DeviceState::Pending,
            DeviceState::Delivered,
            DeviceState::Installed
        ]
    );
    let h3 = history(&world, &d3);
    let failed = h3.iter().find(|e| e.0 == DeviceState::Failed).unwrap();
    assert!(failed.2.contains("job REJECTED"), "{h3:?}");
    assert!(failed.2.contains("boot-check="), "{h3:?}");
    assert_eq!(h3.last().unwrap().0, DeviceState::Quarantined);

    // Device 5: started, never answered, TIMED_OUT by the relay's rule; the retry is queued as
    // execution 2.
    let started = of(&five, "started");
    assert_eq!(
        (&started[0]["status"], &started[0]["execution"]),
        (&Value::from("IN_PROGRESS"), &Value::from(1)),
        "{five:?}"
    );
    assert!(of(&five, "updated").is_empty(), "{five:?}");
    // notify-next: execution 1 is no longer the next one (none, or already the retry).
    assert_eq!(of(&five, "moved-on").len(), 1, "{five:?}");
    let h5 = history(&world, &d5);
    let states: Vec<DeviceState> = h5.iter().map(|e| e.0).collect();
    assert_eq!(
        states,
        [
            DeviceState::Eligible,
            DeviceState::Pending,
            DeviceState::Delivered,
            DeviceState::Failed,
            DeviceState::Pending
        ],
        "{h5:?}"
    );
    assert_eq!(h5[3].1, "rule", "{h5:?}");
    assert!(h5[3].2.contains("job TIMED_OUT v3 #1"), "{h5:?}");
    assert!(
        h5[3].2.contains("cairn=the in-progress timeout ran out"),
        "{h5:?}"
    );
    assert_eq!(
        world
            .relay
            .jobs_snapshot()
            .unwrap()
            .execution(&d5, &job)
            .map(|e| (e.status, e.execution_number)),
        Some((JobStatus::Queued, 2))
    );

    // Device 4: device 1's update on its topic was dropped; it still waits, then installs.
    let h4: Vec<DeviceState> = history(&world, &d4).iter().map(|e| e.0).collect();
    assert_eq!(h4, [DeviceState::Eligible, DeviceState::Pending]);
    let four = events(sdk_device(&world, dir.path(), &d4, &[]));
    assert_eq!(of(&four, "updated")[0]["status"], "SUCCEEDED");
    wait_for("device 4 installed", 10, || {
        count(&world.relay, DeviceState::Installed) == 3
    });
}
