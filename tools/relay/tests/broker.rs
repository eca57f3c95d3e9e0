//! The local Mosquitto broker as the relay and the tests use it: TLS with client certificates only,
//! and ACLs so a device reads only its own delivery topic and writes only its own status topic;
//! retained deliveries survive a broker restart.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::process::{Command, Output};

use cairn_relay::broker::{Broker, ClientFiles, RELAY_CLIENT, delivery_topic, status_topic};

fn tls_args<'a>(
    broker: &'a Broker,
    ca: &'a str,
    client: &'a ClientFiles,
    port: &'a str,
) -> Vec<&'a str> {
    let _ = broker;
    vec![
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "--cafile",
        ca,
        "--cert",
        client.cert.to_str().unwrap(),
        "--key",
        client.key.to_str().unwrap(),
    ]
}

fn publish(
    broker: &Broker,
    client: &ClientFiles,
    topic: &str,
    message: &str,
    retain: bool,
) -> Output {
    let ca = broker.ca();
    let port = broker.port().to_string();
    let mut args = tls_args(broker, ca.to_str().unwrap(), client, &port);
    args.extend(["-q", "1", "-t", topic, "-m", message]);
    if retain {
        args.push("-r");
    }
    Command::new("mosquitto_pub").args(&args).output().unwrap()
}

/// The messages `client` receives on `topic` within `seconds` (at most `count`).
fn receive(
    broker: &Broker,
    client: &ClientFiles,
    topic: &str,
    count: u32,
    seconds: u32,
) -> Vec<String> {
    let ca = broker.ca();
    let port = broker.port().to_string();
    let (c, w) = (count.to_string(), seconds.to_string());
    let mut args = tls_args(broker, ca.to_str().unwrap(), client, &port);
    args.extend(["-q", "1", "-t", topic, "-C", &c, "-W", &w]);
    let out = Command::new("mosquitto_sub").args(&args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn devices_see_only_their_own_topics_and_retained_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path()).unwrap();
    let relay = broker.client(RELAY_CLIENT).unwrap();
    let a = broker.client("sc-0000001").unwrap();
    let b = broker.client("sc-0000002").unwrap();

    // The relay publishes each device's delivery, retained.
    for (device, payload) in [
        ("sc-0000001", "delivery-for-a"),
        ("sc-0000002", "delivery-for-b"),
    ] {
        let out = publish(&broker, &relay, &delivery_topic(device), payload, true);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A device reads its own delivery, and not another's.
    assert_eq!(
        receive(&broker, &a, &delivery_topic("sc-0000001"), 1, 5),
        ["delivery-for-a"]
    );
    assert!(receive(&broker, &a, &delivery_topic("sc-0000002"), 1, 2).is_empty());
    // A device cannot publish a delivery (its own or another's).
    publish(&broker, &a, &delivery_topic("sc-0000002"), "forged", true);
    assert_eq!(
        receive(&broker, &b, &delivery_topic("sc-0000002"), 1, 5),
        ["delivery-for-b"]
    );

    // Status: the relay sees a device's own status, not one written under another device's name.
    let watcher = {
        let ca = broker.ca();
        let port = broker.port().to_string();
        let args: Vec<String> = tls_args(&broker, ca.to_str().unwrap(), &relay, &port)
            .into_iter()
            .map(str::to_owned)
            .chain(
                [
                    "-q",
                    "1",
                    "-t",
                    "cairn/+/status",
                    "-v",
                    "-C",
                    "1",
                    "-W",
                    "10",
                ]
                .map(str::to_owned),
            )
            .collect();
        Command::new("mosquitto_sub")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    publish(&broker, &a, &status_topic("sc-0000002"), "spoofed", false);
    publish(&broker, &a, &status_topic("sc-0000001"), "installed", false);
    let seen = watcher.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout).trim(),
        "cairn/sc-0000001/status installed"
    );

    // Without a client certificate, no connection.
    let port = broker.port().to_string();
    let ca = broker.ca();
    let anonymous = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--cafile",
            ca.to_str().unwrap(),
            "-t",
            "cairn/x/status",
            "-m",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!anonymous.status.success());

    // Restart: the retained delivery is still there.
    broker.restart().unwrap();
    assert_eq!(
        receive(&broker, &b, &delivery_topic("sc-0000002"), 1, 5),
        ["delivery-for-b"]
    );
}
