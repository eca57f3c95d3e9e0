//! The relay's MQTT link through a real Mosquitto: the engine delivers a stage, each device with
//! its own certificate receives its own delivery and the device verifier accepts it; devices
//! report over their status topics; the broker restarts in the middle and nothing is lost; a
//! malformed status is counted and refused.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn_relay::Relay;
use cairn_relay::broker::{Broker, ClientFiles, delivery_topic, status_topic};
use cairn_relay::engine::Status;
use cairn_verifier::boot::{
    DeviceIdentity, MemoryImage, StoredState, TrustAnchors, verify_delivery,
};
use cairn_verifier::campaign::{DeviceState, Outcome, StatusReport};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::{Id, Version};
use common::{CAMPAIGN, RELEASE, transfer, wait_for};

fn tls(broker: &Broker, client: &ClientFiles) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        broker.port().to_string(),
        "--cafile".into(),
        broker.ca().display().to_string(),
        "--cert".into(),
        client.cert.display().to_string(),
        "--key".into(),
        client.key.display().to_string(),
    ]
}

/// Publishes `payload` (bytes, from a file) as `client` on `topic`, QoS 1.
fn publish(broker: &Broker, client: &ClientFiles, topic: &str, payload: &[u8], dir: &Path) {
    let file = dir.join(format!("payload-{}", topic.replace('/', "_")));
    std::fs::write(&file, payload).unwrap();
    let mut args = tls(broker, client);
    args.extend([
        "-q".into(),
        "1".into(),
        "-t".into(),
        topic.into(),
        "-f".into(),
    ]);
    args.push(file.display().to_string());
    let out = Command::new("mosquitto_pub").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn count(relay: &Relay, state: DeviceState) -> u64 {
    relay.engine().campaigns()[CAMPAIGN].totals()[state]
}

#[test]
fn deliveries_and_status_reports_go_through_the_broker_and_survive_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker")).unwrap();
    let signer = common::signer_log(
        &dir.path().join("signer"),
        6,
        1,
        &[("all", 6, 0, 1000, 1000, false)],
        common::Policy::default(),
    );
    let config = common::mqtt_config(dir.path(), &broker, "[rollout]\ntick_millis = 50\n");
    let relay = Arc::new(Relay::open(&config).unwrap());
    let runner = relay.start().unwrap();
    transfer(&relay, &signer.vault);

    // Every delivery is acknowledged by the broker.
    wait_for("6 deliveries acknowledged", 30, || {
        count(&relay, DeviceState::Delivered) == 6
    });

    // The broker restarts; the retained deliveries are still there, each for its device only.
    broker.restart().unwrap();
    let anchors = TrustAnchors {
        log: common::log_key(),
        release: ReleaseKey::new(public_key(&test_key(Fixture::RELEASE_KEY)), &Software),
        witnesses: cairn_verifier::witness::WitnessPolicy::unwitnessed(),
    };
    let mut files = Vec::new();
    for device in &signer.devices {
        let client = broker.client(device).unwrap();
        let mut args = tls(&broker, &client);
        args.extend(
            [
                "-q",
                "1",
                "-t",
                &delivery_topic(device),
                "-C",
                "1",
                "-W",
                "10",
                "-N",
            ]
            .map(String::from),
        );
        let out = Command::new("mosquitto_sub").args(&args).output().unwrap();
        let identity = DeviceIdentity {
            device_id: device,
            product: "Smart Controller",
            family: "STM32H5",
            hardware_revision: "rev-c",
            current_version: Version::new(2, 3, 1),
        };
        verify_delivery(
            &out.stdout,
            &anchors,
            &identity,
            &StoredState::default(),
            &mut MemoryImage(&signer.update_image),
            &Software,
        )
        .unwrap_or_else(|e| panic!("{device}: {e}"));
        files.push(client);
    }

    // Half the devices report, the broker restarts, the other half report: the relay's link
    // reconnects and every report arrives.
    let report = |seq| {
        StatusReport {
            campaign: Id::new(CAMPAIGN).unwrap(),
            release_id: Id::new(RELEASE).unwrap(),
            outcome: Outcome::Installed,
            detail: Id::new("ok").unwrap(),
            sequence: seq,
        }
        .to_cbor()
    };
    for (device, client) in signer.devices.iter().zip(&files).take(3) {
        publish(
            &broker,
            client,
            &status_topic(device),
            &report(1),
            dir.path(),
        );
    }
    broker.restart().unwrap();
    for (device, client) in signer.devices.iter().zip(&files).skip(3) {
        publish(
            &broker,
            client,
            &status_topic(device),
            &report(1),
            dir.path(),
        );
    }
    // A malformed status is counted and changes nothing.
    publish(
        &broker,
        &files[0],
        &status_topic(&signer.devices[0]),
        b"garbage",
        dir.path(),
    );
    wait_for("6 devices installed", 30, || {
        count(&relay, DeviceState::Installed) == 6
    });
    wait_for("the malformed status counted", 10, || {
        relay.engine().stats().malformed == 1
    });
    wait_for("the campaign completed", 10, || {
        relay.engine().campaigns()[CAMPAIGN].status() == Status::Completed
    });
    drop(runner);
    assert!(relay.engine().stats().reports >= 6);
}
