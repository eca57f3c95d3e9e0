//! A device cannot knock another off the broker (issue 20, item 7): the broker binds each
//! client's id to its certificate's common name (Mosquitto's `use_username_as_clientid` with
//! `use_identity_as_username`, as AWS IoT Core binds it to the thing name), so device A asking
//! for device B's client id never gets B's session: B stays connected, and A is connected only
//! as itself.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_relay::broker::{Broker, ClientFiles, RELAY_CLIENT, delivery_topic};

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

/// The broker's log lines that record a connection under `id`.
fn connections_as(log: &str, id: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("New client connected") && l.contains(&format!(" as {id} ")))
        .count()
}

#[test]
fn a_device_asking_for_another_devices_client_id_cannot_take_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let (a, b) = ("sc-0000001", "sc-0000002");
    let (ca, cb) = (broker.client(a).unwrap(), broker.client(b).unwrap());
    let relay = broker.client(RELAY_CLIENT).unwrap();

    // B connects with its own id and waits for its delivery (a persistent session, no reconnect:
    // if the broker closed it, this process would end).
    let mut args = tls(&broker, &cb);
    args.extend(
        [
            "-i",
            b,
            "-c",
            "--quiet",
            "-q",
            "1",
            "-t",
            &delivery_topic(b),
            "-C",
            "1",
        ]
        .map(String::from),
    );
    let mut subscriber = Command::new("mosquitto_sub")
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let log_path = dir.path().join("broker/mosquitto.log");
    let started = Instant::now();
    while connections_as(&std::fs::read_to_string(&log_path).unwrap(), b) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B did not connect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A connects three times asking for B's id (and a persistent session, to take B's queue).
    for _ in 0..3 {
        let mut args = tls(&broker, &ca);
        args.extend(
            [
                "-i",
                b,
                "-c",
                "-q",
                "1",
                "-t",
                &delivery_topic(a),
                "-W",
                "1",
            ]
            .map(String::from),
        );
        let _ = Command::new("mosquitto_sub").args(&args).output().unwrap();
    }

    // B is still connected, on its first connection, and gets the delivery published now.
    assert!(
        subscriber.try_wait().unwrap().is_none(),
        "B was disconnected"
    );
    let mut args = tls(&broker, &relay);
    args.extend(["-q", "1", "-t", &delivery_topic(b), "-m", "for B"].map(String::from));
    assert!(
        Command::new("mosquitto_pub")
            .args(&args)
            .status()
            .unwrap()
            .success()
    );
    let mut line = String::new();
    BufReader::new(subscriber.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "for B");
    assert!(subscriber.wait().unwrap().success());

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("already connected"), "{log}");
    assert_eq!(connections_as(&log, b), 1, "{log}");
    // A's three connections were A's own.
    assert_eq!(connections_as(&log, a), 3, "{log}");
}
