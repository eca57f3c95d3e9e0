//! The world the integration tests run in: a real Mosquitto (`cairn_relay::broker::Broker`), a
//! signed log with an update and a rollback target for every device, a fleet CSV, and a stand-in
//! for the relay that publishes deliveries (retained, QoS 1) and collects status reports, with
//! the relay's own certificate.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    reason = "shared test helpers: each test file uses a part; a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_fleet_sim::{Images, SimConfig, Trust};
use cairn_relay::broker::{Broker, RELAY_CLIENT, delivery_topic};
use cairn_vault::Vault;
use cairn_verifier::campaign::{Outcome, StatusReport};
use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::{Id, UnixTime, Version};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use sha2::{Digest, Sha256};

pub const ORIGIN: &str = "oem.example/cairn/log";
pub const CAMPAIGN: &str = "campaign-2026-11";
pub const UPDATE: &str = "controller-fw-2.4.1";
pub const ROLLBACK: &str = "controller-fw-2.3.2";
/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn device(i: u64) -> String {
    format!("sc-{i:07}")
}

/// A status report as the relay receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// From the topic.
    pub device: String,
    pub campaign: String,
    pub release: String,
    pub outcome: Outcome,
    pub detail: String,
    pub sequence: u64,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub devices: Vec<String>,
    /// Update deliveries against the first, smaller checkpoint.
    pub old_updates: BTreeMap<String, Vec<u8>>,
    /// Update deliveries against the latest checkpoint.
    pub updates: BTreeMap<String, Vec<u8>>,
    /// Rollback deliveries against the latest checkpoint.
    pub rollbacks: BTreeMap<String, Vec<u8>>,
    pub latest_size: u64,
    pub update_image: Vec<u8>,
    pub rollback_image: Vec<u8>,
    pub fleet: PathBuf,
    pub relay: Relay,
}

fn manifest(device: &str, release: &str, cose: &[u8], purpose: Purpose) -> Vec<u8> {
    let max = match purpose {
        Purpose::Update => Version::new(2, 4, 0),
        Purpose::Rollback => Version::new(2, 4, 1),
    };
    Manifest {
        device_id: Id::new(device).unwrap(),
        release_id: Id::new(release).unwrap(),
        release_digest: Sha256::digest(cose).into(),
        hardware_revision: Id::new("rev-c").unwrap(),
        min_version: Version::new(2, 0, 0),
        max_version: max,
        campaign: Id::new(CAMPAIGN).unwrap(),
        purpose,
        decided_at: UnixTime(1_795_651_200),
        campaign_sequence: 1,
    }
    .to_cbor()
}

impl World {
    /// `n` devices on 2.3.1 (rev-c), two unusable fleet rows, the log, the broker, the relay.
    pub fn new(n: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(&dir.path().join("broker")).unwrap();
        let f = Fixture::new();
        let update = f.build(&f.spec()).release;
        let rollback_image: Vec<u8> = f.image.iter().rev().copied().collect();
        let rollback = f
            .build(&cairn_verifier::test_support::Spec {
                release_id: ROLLBACK,
                version: Version::new(2, 3, 2),
                image: rollback_image.clone(),
                ..f.spec()
            })
            .release;
        let devices: Vec<String> = (1..=n).map(device).collect();

        // The log: both releases and the updates, signed; then the rollback targets, signed.
        let sk = test_key(Fixture::LOG_KEY);
        let key = LogKey::new(ORIGIN, ORIGIN, public_key(&sk), &Software).unwrap();
        let vault = Vault::create(dir.path().join("log"), ORIGIN).unwrap();
        let mut entries = vec![
            ReleaseEntry {
                cose_sign1: &update,
            }
            .to_cbor(),
            ReleaseEntry {
                cose_sign1: &rollback,
            }
            .to_cbor(),
        ];
        entries.extend(
            devices
                .iter()
                .map(|d| manifest(d, UPDATE, &update, Purpose::Update)),
        );
        let updates_at = vault.append(&entries).unwrap();
        vault.sign_checkpoint(&key, &sk).unwrap();
        let update_indices: Vec<u64> = (updates_at.start + 2..updates_at.end).collect();
        let old_updates = vault.deliveries(&update_indices).unwrap();
        let rollbacks_at = vault
            .append(
                &devices
                    .iter()
                    .map(|d| manifest(d, ROLLBACK, &rollback, Purpose::Rollback))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        vault.sign_checkpoint(&key, &sk).unwrap();
        let updates = vault.deliveries(&update_indices).unwrap();
        let rollbacks = vault.deliveries(&rollbacks_at.collect::<Vec<_>>()).unwrap();

        let fleet = dir.path().join("fleet.csv");
        let mut csv = String::from(
            "device_id,product,family,hardware_revision,lifecycle,firmware_version,cohorts,certificate\n",
        );
        for d in &devices {
            writeln!(
                csv,
                "{d},Smart Controller,STM32H5,rev-c,active,2.3.1,eu-west,TUlJQg=="
            )
            .unwrap();
        }
        csv.push_str("not an id,Smart Controller,STM32H5,rev-c,active,2.3.1,,\n");
        csv.push_str("sc-9999999,Smart Controller,STM32H5,rev-c,active,two,,\n");
        std::fs::write(&fleet, csv).unwrap();

        let relay = Relay::connect(&broker);
        Self {
            latest_size: vault.size(),
            dir,
            broker,
            devices,
            old_updates: old_updates.into_iter().collect(),
            updates: updates.into_iter().collect(),
            rollbacks: rollbacks.into_iter().collect(),
            update_image: f.image.clone(),
            rollback_image,
            fleet,
            relay,
        }
    }

    pub fn broker_dir(&self) -> PathBuf {
        self.dir.path().join("broker")
    }

    pub fn trust() -> Trust {
        Trust {
            origin: ORIGIN.into(),
            log_key: public_key(&test_key(Fixture::LOG_KEY)),
            release_key: public_key(&test_key(Fixture::RELEASE_KEY)),
            witnesses: cairn_fleet_sim::Witnesses::default(),
        }
    }

    pub fn images(&self) -> Images {
        Images::from([
            (UPDATE.to_owned(), self.update_image.clone().into()),
            (ROLLBACK.to_owned(), self.rollback_image.clone().into()),
        ])
    }

    /// The simulator's configuration, state in `state` (under the test's directory).
    pub fn config(&self, state: &str) -> SimConfig {
        SimConfig::new(
            "127.0.0.1",
            self.broker.port(),
            self.broker.ca(),
            self.broker_dir().join("ca.key"),
            &self.fleet,
            Self::trust(),
            self.images(),
            self.dir.path().join(state),
        )
    }

    /// The binary's arguments for this world (keys and images written to files), state in
    /// `state`.
    pub fn cli_args(&self) -> Vec<String> {
        use p256::pkcs8::{EncodePublicKey as _, LineEnding};
        let d = self.dir.path();
        for (name, n) in [
            ("log.pem", Fixture::LOG_KEY),
            ("release.pem", Fixture::RELEASE_KEY),
        ] {
            let pem = p256::ecdsa::VerifyingKey::from(&test_key(n))
                .to_public_key_pem(LineEnding::LF)
                .unwrap();
            std::fs::write(d.join(name), pem).unwrap();
        }
        std::fs::write(d.join("update.bin"), &self.update_image).unwrap();
        std::fs::write(d.join("rollback.bin"), &self.rollback_image).unwrap();
        let p = |s: &str| d.join(s).display().to_string();
        vec![
            "--broker-port".to_owned(),
            self.broker.port().to_string(),
            "--ca".into(),
            self.broker.ca().display().to_string(),
            "--ca-key".into(),
            self.broker_dir().join("ca.key").display().to_string(),
            "--fleet".into(),
            self.fleet.display().to_string(),
            "--origin".into(),
            ORIGIN.into(),
            "--log-key".into(),
            p("log.pem"),
            "--release-key".into(),
            p("release.pem"),
            "--image".into(),
            format!("{UPDATE}={}", p("update.bin")),
            "--image".into(),
            format!("{ROLLBACK}={}", p("rollback.bin")),
            "--state".into(),
            p("state"),
        ]
    }

    /// Publishes these deliveries (retained, QoS 1) and waits for the broker's acknowledgements.
    pub fn deliver<'a>(&self, deliveries: impl IntoIterator<Item = (&'a String, &'a Vec<u8>)>) {
        let list: Vec<(String, Vec<u8>)> = deliveries
            .into_iter()
            .map(|(d, b)| (d.clone(), b.clone()))
            .collect();
        self.relay.publish(&list);
    }
}

/// Options for a client with the relay's certificate.
fn relay_options(broker: &Broker, client_id: &str) -> MqttOptions {
    let files = broker.client(RELAY_CLIENT).unwrap();
    let identity = native_tls::Identity::from_pkcs8(
        &std::fs::read(&files.cert).unwrap(),
        &std::fs::read(&files.key).unwrap(),
    )
    .unwrap();
    let ca = native_tls::Certificate::from_pem(&std::fs::read(broker.ca()).unwrap()).unwrap();
    let connector = native_tls::TlsConnector::builder()
        .identity(identity)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port());
    options
        .set_transport(Transport::Tls(TlsConfiguration::NativeConnector(connector)))
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(256 * 1024, 256 * 1024);
    options
}

/// The relay's side of MQTT: a publisher and a status subscriber on one connection.
pub struct Relay {
    publisher: Client,
    acks: mpsc::Receiver<()>,
    reports: mpsc::Receiver<Report>,
    subscribed: mpsc::Receiver<()>,
}

impl Relay {
    fn connect(broker: &Broker) -> Self {
        // One connection, as the relay has: the broker gives a client the id of its certificate's
        // name (broker.rs), so a second connection with the same certificate would end the first.
        let (publisher, mut connection) = Client::new(relay_options(broker, RELAY_CLIENT), 100);
        let (ack_tx, acks) = mpsc::channel();
        let (report_tx, reports) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let resubscribe = publisher.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    // A clean session on every connection: subscribe each time (a broker restart).
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        resubscribe
                            .try_subscribe("cairn/+/status", QoS::AtLeastOnce)
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if ack_tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let device = p
                            .topic
                            .strip_prefix("cairn/")
                            .and_then(|t| t.strip_suffix("/status"))
                            .unwrap()
                            .to_owned();
                        let r = StatusReport::decode(&p.payload)
                            .unwrap_or_else(|e| panic!("{device} sent a bad report: {e}"));
                        let report = Report {
                            device,
                            campaign: r.campaign.as_str().into(),
                            release: r.release_id.as_str().into(),
                            outcome: r.outcome,
                            detail: r.detail.as_str().into(),
                            sequence: r.sequence,
                        };
                        if report_tx.send(report).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        let relay = Self {
            publisher,
            acks,
            reports,
            subscribed: ready,
        };
        relay.wait_subscribed();
        relay
    }

    /// Waits until the status subscriber (re)subscribed, e.g. after a broker restart.
    pub fn wait_subscribed(&self) {
        self.subscribed
            .recv_timeout(PATIENCE)
            .expect("the relay subscribes to cairn/+/status");
    }

    /// Publishes each `(device, bytes)` to the device's delivery topic, retained, QoS 1, and
    /// waits until the broker acknowledged them all.
    pub fn publish(&self, deliveries: &[(String, Vec<u8>)]) {
        for (device, bytes) in deliveries {
            self.publisher
                .publish(
                    delivery_topic(device),
                    QoS::AtLeastOnce,
                    true,
                    bytes.clone(),
                )
                .unwrap();
        }
        for _ in deliveries {
            self.acks
                .recv_timeout(PATIENCE * 5)
                .expect("the broker acknowledges every delivery");
        }
    }

    /// Waits for `n` reports, by device (several per device in arrival order).
    pub fn reports(&self, n: usize) -> BTreeMap<String, Vec<Report>> {
        self.reports_within(n, PATIENCE)
    }

    /// Waits up to `patience` for `n` reports.
    pub fn reports_within(&self, n: usize, patience: Duration) -> BTreeMap<String, Vec<Report>> {
        let deadline = Instant::now() + patience;
        let mut out: BTreeMap<String, Vec<Report>> = BTreeMap::new();
        for i in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self
                .reports
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{i} of {n} reports arrived: {out:?}"));
            out.entry(r.device.clone()).or_default().push(r);
        }
        out
    }

    /// Asserts that no report arrives for `wait`.
    pub fn quiet(&self, wait: Duration) {
        if let Ok(r) = self.reports.recv_timeout(wait) {
            panic!("unexpected report {r:?}");
        }
    }
}

/// The simulator's state of `device` under `state`.
pub fn state_of(state: &Path, device: &str) -> Option<cairn_fleet_sim::state::DeviceState> {
    cairn_fleet_sim::state::DeviceState::load(state, device).unwrap()
}
