//! A status report is never lost to a failed relay-log write: the relay acknowledges a status
//! message to the broker only once what it said is in the relay log. While writes fail, the
//! report is taken again at each step and recorded (once) when a write succeeds; if the relay
//! stops meanwhile, the broker still holds the message and hands it to the restarted relay.
//! Needs the `fault-injection` feature (`cargo test --all-features`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::process::Command;
use std::sync::Arc;

use cairn_relay::Relay;
use cairn_relay::broker::{Broker, ClientFiles, status_topic};
use cairn_vault::Query;
use cairn_verifier::campaign::{DeviceState, Outcome, StatusReport};
use cairn_verifier::statement::Statement;
use cairn_verifier::types::Id;
use common::{CAMPAIGN, RELEASE, transfer, wait_for};

fn state(relay: &Relay, device: &str) -> DeviceState {
    relay.engine().campaigns()[CAMPAIGN]
        .device(device)
        .unwrap()
        .state()
}

/// `device` reports its update installed (QoS 1, with its own certificate).
fn installed(broker: &Broker, client: &ClientFiles, device: &str, dir: &std::path::Path) {
    let file = dir.join(format!("{device}.status"));
    let report = StatusReport {
        campaign: Id::new(CAMPAIGN).unwrap(),
        release_id: Id::new(RELEASE).unwrap(),
        outcome: Outcome::Installed,
        detail: Id::new("ok").unwrap(),
        sequence: 1,
    };
    std::fs::write(&file, report.to_cbor()).unwrap();
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .arg("--cafile")
        .arg(broker.ca())
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .args(["-q", "1", "-t", &status_topic(device), "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The device's `installed` events in the relay log.
fn installed_events(relay: &Relay, device: &str) -> usize {
    let engine = relay.engine();
    let log = engine.log().vault();
    log.query_indices(Query::Device(device))
        .unwrap()
        .into_iter()
        .filter(|&i| {
            matches!(
                Statement::decode(&log.entry(i).unwrap()).unwrap(),
                Statement::DeviceEvent(e) if e.state == DeviceState::Installed
            )
        })
        .count()
}

#[test]
fn a_report_survives_failed_log_writes_and_a_relay_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let signer = common::signer_log(
        &dir.path().join("signer"),
        2,
        0,
        &[("all", 2, 0, 1000, 1000, false)],
        common::Policy::default(),
    );
    let config = common::mqtt_config(dir.path(), &broker, "[rollout]\ntick_millis = 50\n");
    let relay = Arc::new(Relay::open(&config).unwrap());
    let runner = relay.start().unwrap();
    transfer(&relay, &signer.vault);
    let (first, second) = (&signer.devices[0], &signer.devices[1]);
    wait_for("both deliveries acknowledged", 30, || {
        state(&relay, first) == DeviceState::Delivered
            && state(&relay, second) == DeviceState::Delivered
    });
    let clients: Vec<ClientFiles> = [first, second]
        .iter()
        .map(|d| broker.client(d).unwrap())
        .collect();

    // Three writes fail: the report is taken again at each step and recorded once after them.
    relay.engine().log().fail_next_appends(3);
    installed(&broker, &clients[0], first, dir.path());
    wait_for("the first report recorded", 30, || {
        state(&relay, first) == DeviceState::Installed
    });
    assert_eq!(relay.engine().log().failed_appends(), 3);
    assert_eq!(installed_events(&relay, first), 1);

    // Every write fails, and the relay stops before one succeeds: the report is not in the log,
    // the broker never had it acknowledged, and the restarted relay records it.
    relay.engine().log().fail_next_appends(u32::MAX);
    installed(&broker, &clients[1], second, dir.path());
    wait_for("writes to fail on the second report", 30, || {
        relay.engine().log().failed_appends() >= 5
    });
    assert_eq!(state(&relay, second), DeviceState::Delivered);
    drop(runner);
    let relay = Arc::into_inner(relay).expect("the runner's threads have stopped");
    assert_eq!(installed_events(&relay, second), 0);
    drop(relay);

    let relay = Arc::new(Relay::open(&config).unwrap());
    let runner = relay.start().unwrap();
    wait_for(
        "the broker to hand the report to the restarted relay",
        30,
        || state(&relay, second) == DeviceState::Installed,
    );
    assert_eq!(installed_events(&relay, second), 1);
    assert_eq!(installed_events(&relay, first), 1);
    drop(runner);
}
