//! The real thing end to end, shared by the scenario tests: a signer's log (built in software by
//! the relay's test support), Mosquitto, the relay with its engine and MQTT link, and the fleet
//! simulator's binary, one process, each device with its own certificate running the device
//! verifier.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "shared by several test binaries, each using part of it; a panic is the failure report; the reference campaign is one scenario"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use std::time::Instant;

use cairn_relay::Relay;
use cairn_relay::broker::Broker;
use cairn_relay::engine::Status;
use cairn_vault::Query;
use cairn_verifier::campaign::{ApprovalAction, DeviceState};
use cairn_verifier::statement::Statement;

use crate::relay_common::{CAMPAIGN, ORIGIN, RELEASE, ROLLBACK, SignerLog};
pub use crate::relay_common::{transfer, wait_for};

pub fn count(relay: &Relay, state: DeviceState) -> u64 {
    relay.engine().campaigns()[CAMPAIGN].totals()[state]
}

pub fn status(relay: &Relay) -> Status {
    relay.engine().campaigns()[CAMPAIGN].status()
}

/// Mosquitto and a started relay linked to it (stopped in that order: relay, then broker).
pub struct World {
    pub runner: cairn_relay::Runner,
    pub relay: Arc<Relay>,
    pub broker: Broker,
}

impl World {
    pub fn start(dir: &Path, extra: &str) -> Self {
        let broker = Broker::start(&dir.join("broker")).unwrap();
        let config = crate::relay_common::mqtt_config(dir, &broker, extra);
        let relay = Arc::new(Relay::open(&config).unwrap());
        let runner = relay.start().unwrap();
        Self {
            runner,
            relay,
            broker,
        }
    }

    /// Writes what the simulator reads (fleet, images, each device's stage as the relay has it)
    /// into `dir`, and returns the stages file.
    pub fn fleet_files(&self, dir: &Path, signer: &SignerLog) -> PathBuf {
        let mut csv = String::from("device_id,product,family,hardware_revision,firmware_version\n");
        for d in &signer.devices {
            csv.push_str(d);
            csv.push_str(",Smart Controller,STM32H5,rev-c,2.3.1\n");
        }
        std::fs::write(dir.join("fleet.csv"), csv).unwrap();
        std::fs::write(dir.join("update.bin"), &signer.update_image).unwrap();
        std::fs::write(dir.join("rollback.bin"), &signer.rollback_image).unwrap();
        let stages: BTreeMap<String, usize> = self.relay.engine().campaigns()[CAMPAIGN]
            .devices()
            .map(|d| (d.id().to_owned(), d.stage()))
            .collect();
        let file = dir.join("stages.json");
        std::fs::write(&file, serde_json::to_vec(&stages).unwrap()).unwrap();
        file
    }

    /// Starts `cairn-fleet-sim` on the files `fleet_files` wrote, with these fault arguments.
    pub fn simulate(&self, dir: &Path, faults: &[&str]) -> Sim {
        let image = |id: &str, file: &str| format!("{id}={}", dir.join(file).display());
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-fleet-sim"))
            .args(["--broker-port", &self.broker.port().to_string()])
            .arg("--ca")
            .arg(self.broker.ca())
            .arg("--ca-key")
            .arg(dir.join("broker/ca.key"))
            .arg("--fleet")
            .arg(dir.join("fleet.csv"))
            .args(["--origin", ORIGIN])
            .arg("--log-key")
            .arg(dir.join("log.pub.pem"))
            .arg("--release-key")
            .arg(dir.join("release.pub.pem"))
            .args(["--image", &image(RELEASE, "update.bin")])
            .args(["--image", &image(ROLLBACK, "rollback.bin")])
            .arg("--state")
            .arg(dir.join("sim"))
            .arg("--stages")
            .arg(dir.join("stages.json"))
            .args(faults)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Sim(child)
    }
}

/// The simulator's process; interrupted when dropped.
pub struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// The reference campaign's scenario (tests/reference_campaign.rs) for `eligible` devices, the
/// relay configured with `relay_extra` (`jobs = true` for AWS IoT Jobs) and the simulator with
/// `sim_extra` (`--mode jobs`); returns its wall time, from the first transfer to the last
/// device installed.
pub fn reference_campaign(
    eligible: u64,
    relay_extra: &str,
    sim_extra: &[&str],
) -> std::time::Duration {
    // One socket per device on each side; Mosquitto inherits the limit.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit > eligible + 200,
        "open-files limit {limit} is too low"
    );
    let dir = tempfile::tempdir().unwrap();
    let wave = eligible / 4;
    let signer = crate::relay_common::signer_log(
        &dir.path().join("signer"),
        eligible,
        197,
        &[
            ("canary", 50, 0, 980, 20, true),
            ("wave-1", wave, 0, 950, 30, false),
            ("fleet", eligible, 0, 950, 50, false),
        ],
        crate::relay_common::Policy {
            max_attempts: 3,
            backoff_secs: 5,
            quarantine_after_failures: 3,
            quarantine_on_verification_failure: true,
        },
    );
    let world = World::start(dir.path(), relay_extra);
    let relay = &world.relay;

    let started = Instant::now();
    transfer(relay, &signer.vault);
    world.fleet_files(dir.path(), &signer);
    let mut args = vec!["--install-failure", "1=6%", "--transient", "--seed", "7"];
    args.extend_from_slice(sim_extra);
    let sim = world.simulate(dir.path(), &args);

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
    eprintln!(
        "reference campaign, {eligible} devices, {relay_extra:?} {sim_extra:?}, end to end: {wall:.1?}"
    );
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
    wall
}
