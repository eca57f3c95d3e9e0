//! One device cannot stall status intake (issue 20, item 2), through a real Mosquitto:
//! - a 300 KiB status at QoS 1 is refused by the broker (its packet limit is below the relay
//!   client's), and another device's valid status is recorded within seconds;
//! - if a broker passes such a packet on anyway, the relay counts it and starts a clean session
//!   instead of taking it again on every reconnect, and the next status is recorded;
//! - a QoS 0 flood, while the engine is held, fills the bounded intake queue and the rest is
//!   dropped and counted: the engine sees at most the queue's worth.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_relay::Relay;
use cairn_relay::broker::{Broker, ClientFiles, status_topic};
use cairn_relay::mqtt::INPUT_QUEUE;
use cairn_verifier::campaign::{DeviceState, Outcome, StatusReport};
use cairn_verifier::types::Id;
use common::{CAMPAIGN, RELEASE, transfer, wait_for};

fn tls(broker: &Broker, client: &ClientFiles) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port().to_string(),
        "--cafile",
        &broker.ca().display().to_string(),
        "--cert",
        &client.cert.display().to_string(),
        "--key",
        &client.key.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// Publishes `payload` as `client` on `topic` with `qos`; whether the broker took it is not
/// checked (it disconnects a client whose packet is too large).
fn publish(
    broker: &Broker,
    client: &ClientFiles,
    topic: &str,
    payload: &[u8],
    qos: u8,
    dir: &Path,
) {
    let file = dir.join(format!("payload-{}", topic.replace('/', "_")));
    std::fs::write(&file, payload).unwrap();
    let mut args = tls(broker, client);
    args.extend(["-q", &qos.to_string(), "-t", topic, "-f"].map(String::from));
    args.push(file.display().to_string());
    let _ = Command::new("mosquitto_pub").args(&args).output().unwrap();
}

fn installed() -> Vec<u8> {
    StatusReport {
        campaign: Id::new(CAMPAIGN).unwrap(),
        release_id: Id::new(RELEASE).unwrap(),
        outcome: Outcome::Installed,
        detail: Id::new("ok").unwrap(),
        sequence: 1,
    }
    .to_cbor()
}

fn count(relay: &Relay, state: DeviceState) -> u64 {
    relay.engine().campaigns()[CAMPAIGN].totals()[state]
}

/// A relay linked to `broker`, its campaign's four devices delivered.
fn relay_with_deliveries(
    dir: &Path,
    broker: &Broker,
) -> (Arc<Relay>, cairn_relay::Runner, Vec<String>) {
    let signer = common::signer_log(
        &dir.join("signer"),
        4,
        1,
        &[("all", 4, 0, 1000, 1000, false)],
        common::Policy::default(),
    );
    let config = common::mqtt_config(dir, broker, "[rollout]\ntick_millis = 50\n");
    let relay = Arc::new(Relay::open(&config).unwrap());
    let runner = relay.start().unwrap();
    transfer(&relay, &signer.vault);
    wait_for("4 deliveries acknowledged", 30, || {
        count(&relay, DeviceState::Delivered) == 4
    });
    (relay, runner, signer.devices)
}

/// Device A's 300 KiB QoS 1 status, then device B's valid one: B is recorded within seconds, and
/// the relay's error counters stay where they are.
/// With `reaches_relay`, the broker passes A's status on: B publishes once the relay counted it
/// (what was queued for the relay at that moment goes with the session it leaves).
fn oversized_then_valid(dir: &Path, broker: &Broker, reaches_relay: bool) -> Arc<Relay> {
    let (relay, runner, devices) = relay_with_deliveries(dir, broker);
    let (a, b) = (&devices[0], &devices[1]);
    let (ca, cb) = (broker.client(a).unwrap(), broker.client(b).unwrap());
    publish(
        broker,
        &ca,
        &status_topic(a),
        &vec![0xa5; 300 << 10],
        1,
        dir,
    );
    if reaches_relay {
        wait_for("the oversized packet counted", 10, || {
            relay.metrics().mqtt.oversized.load(Ordering::Relaxed) >= 1
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    publish(broker, &cb, &status_topic(b), &installed(), 1, dir);
    wait_for("device B's status recorded", 10, || {
        count(&relay, DeviceState::Installed) == 1
    });
    let errors = relay.metrics().mqtt.errors.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    let later = relay.metrics().mqtt.errors.load(Ordering::Relaxed);
    assert!(
        errors <= u64::from(reaches_relay) && later == errors,
        "MQTT errors {errors}, then {later}"
    );
    drop(runner);
    relay
}

#[test]
fn an_oversized_status_is_refused_by_the_broker_and_others_still_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let relay = oversized_then_valid(dir.path(), &broker, false);
    // The relay never saw it.
    assert_eq!(relay.metrics().mqtt.oversized.load(Ordering::Relaxed), 0);
}

#[test]
fn a_relay_given_an_oversized_packet_counts_it_and_does_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    // A broker without a limit passes the 300 KiB status on to the relay.
    let broker = Broker::start_with_limit(&dir.path().join("broker"), None).unwrap();
    let relay = oversized_then_valid(dir.path(), &broker, true);
    assert_eq!(relay.metrics().mqtt.oversized.load(Ordering::Relaxed), 1);
}

#[test]
fn a_qos0_flood_is_bounded_by_the_intake_queue() {
    const FLOOD: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let (relay, runner, devices) = relay_with_deliveries(dir.path(), &broker);
    let (c, b) = (&devices[2], &devices[1]);
    let cc = broker.client(c).unwrap();
    {
        // The engine is held (as by a slow relay-log write) while device C floods at QoS 0.
        let _held = relay.engine();
        let mut args = tls(&broker, &cc);
        args.extend(["-q", "0", "-t", &status_topic(c), "-l"].map(String::from));
        let mut flood = Command::new("mosquitto_pub")
            .args(&args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = flood.stdin.take().unwrap();
        for i in 0..FLOOD {
            writeln!(stdin, "flood {i}").unwrap();
        }
        drop(stdin);
        assert!(flood.wait().unwrap().success());
        wait_for("the flood past the queue dropped", 30, || {
            relay.metrics().mqtt.dropped.load(Ordering::Relaxed)
                >= (FLOOD - INPUT_QUEUE) as u64 * 3 / 4
        });
        // Until the last of it has arrived: the count stands still for a second.
        let mut last = 0;
        wait_for("the flood over", 30, || {
            std::thread::sleep(Duration::from_secs(1));
            let now = relay.metrics().mqtt.dropped.load(Ordering::Relaxed);
            std::mem::replace(&mut last, now) == now
        });
    }
    let dropped = relay.metrics().mqtt.dropped.load(Ordering::Relaxed);
    // B's valid status, after the flood, is recorded.
    let cb = broker.client(b).unwrap();
    publish(&broker, &cb, &status_topic(b), &installed(), 1, dir.path());
    wait_for("device B's status recorded", 10, || {
        count(&relay, DeviceState::Installed) == 1
    });
    // The engine saw at most the queue's worth (and the one message in hand) of the flood.
    let malformed = relay.engine().stats().malformed;
    eprintln!("flood of {FLOOD}: {dropped} dropped, {malformed} taken (queue {INPUT_QUEUE})");
    assert!(malformed <= INPUT_QUEUE as u64 + 1, "{malformed} taken");
    drop(runner);
}
