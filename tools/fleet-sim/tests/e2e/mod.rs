//! The real thing end to end, shared by the scenario tests: a signer's log (built in software by
//! the relay's test support), Mosquitto, the relay with its engine and MQTT link, and the fleet
//! simulator's binary, one process, each device with its own certificate running the device
//! verifier.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "shared by several test binaries, each using part of it; a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use cairn_relay::Relay;
use cairn_relay::broker::Broker;
use cairn_relay::engine::Status;
use cairn_verifier::campaign::DeviceState;

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
