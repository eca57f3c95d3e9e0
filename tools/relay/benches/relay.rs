//! `cargo bench -p cairn-relay --bench relay`: the relay's throughput, each figure beside its
//! baseline measured in the same run on this machine (medians of `CAIRN_BENCH_ROUNDS`, default 3).
//!
//! 1. Device-status events into the relay's log: status reports decoded, applied to the engine
//!    and logged (one synced batch and one relay-key checkpoint per step of 10,000), for a
//!    campaign of `CAIRN_BENCH_DEVICES` devices (default 100,000). Goal: at least 50,000 a second.
//! 2. Deliveries published to Mosquitto over MQTT/TLS, QoS 1, retained: the relay's link (with
//!    its acknowledgement bookkeeping) against a bare rumqttc publisher of the same payloads on
//!    the same broker, `CAIRN_BENCH_DELIVERIES` of them (default 20,000).

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "benchmark code: a panic is the failure report; rates are shown as floats"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cairn_relay::broker::{Broker, RELAY_CLIENT, delivery_topic};
use cairn_relay::engine::{Engine, Outgoing};
use cairn_relay::{Input, mqtt};
use cairn_verifier::campaign::{Outcome, StatusReport};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::Id;
use rumqttc::{AsyncClient, Event, Packet, QoS};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Status events into the relay log, per second, for one fresh campaign.
fn ingest(devices: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let signer = common::signer_log(
        &dir.path().join("signer"),
        devices,
        0,
        &[("all", devices, 0, 1000, 1000, false)],
        common::Policy::default(),
    );
    let key = ReleaseKey::new(public_key(&test_key(Fixture::RELEASE_KEY)), &Software);
    let mut engine =
        Engine::open(&dir.path().join("relay"), "bench/relay", key, &signer.vault).unwrap();
    engine.tick(&signer.vault, 1).unwrap();
    let out = engine.commit(&signer.vault, Duration::ZERO, true).unwrap();
    for o in &out {
        engine.acked(&o.campaign, &o.device, &o.release, 2).unwrap();
    }
    engine.commit(&signer.vault, Duration::ZERO, false).unwrap();
    let reports: Vec<(String, Vec<u8>)> = out
        .iter()
        .map(|o| {
            let r = StatusReport {
                campaign: Id::new(common::CAMPAIGN).unwrap(),
                release_id: Id::new(common::RELEASE).unwrap(),
                outcome: Outcome::Installed,
                detail: Id::new("ok").unwrap(),
                sequence: 1,
            }
            .to_cbor();
            (o.device.clone(), r)
        })
        .collect();
    let before = engine.log().vault().size();
    let started = Instant::now();
    for chunk in reports.chunks(10_000) {
        for (device, payload) in chunk {
            engine.report(device, payload, 3).unwrap();
        }
        engine.tick(&signer.vault, 3).unwrap();
        engine.commit(&signer.vault, Duration::ZERO, false).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let events = engine.log().vault().size() - before;
    assert!(events >= devices, "{events} events for {devices} reports");
    events as f64 / secs
}

fn deliveries(n: u64) -> Vec<Outgoing> {
    let payload: Arc<[u8]> = vec![0xa5; 1500].into();
    (0..n)
        .map(|i| Outgoing {
            campaign: "bench".into(),
            device: common::device(i),
            release: "bench".into(),
            delivery: Arc::clone(&payload),
            queued_at: 0,
        })
        .collect()
}

/// The relay's link: every delivery handed over until the broker acknowledged them all.
fn relay_link(options: rumqttc::MqttOptions, batch: &[Outgoing]) -> f64 {
    let (inputs, acks) = std::sync::mpsc::sync_channel(mqtt::INPUT_QUEUE);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // No status messages in this run, so nothing to acknowledge.
    let (_acks, to_ack) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = mqtt::LinkCounters::default();
    let stop2 = Arc::clone(&stop);
    let started = Instant::now();
    let mut elapsed = Duration::ZERO;
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(mqtt::link(options, inputs, rx, to_ack, stop2, &errors));
        });
        for o in batch {
            tx.send(o.clone()).unwrap();
        }
        let mut acked = 0;
        while acked < batch.len() {
            if let Input::Acked(burst) = acks.recv_timeout(Duration::from_secs(60)).unwrap() {
                acked += burst.len();
            }
        }
        // Timed at the last acknowledgement, as the baseline is, not after the link has stopped.
        elapsed = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    batch.len() as f64 / elapsed.as_secs_f64()
}

/// The baseline: bare rumqttc, the same payloads, QoS 1, retained, 100 in flight.
fn bare_rumqttc(mut options: rumqttc::MqttOptions, batch: &[Outgoing]) -> f64 {
    options.set_inflight(100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, mut events) = AsyncClient::new(options, 10_000);
        let started = Instant::now();
        let items: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|o| (delivery_topic(&o.device), o.delivery.to_vec()))
            .collect();
        let publisher = tokio::spawn({
            let client = client.clone();
            async move {
                for (topic, payload) in items {
                    client
                        .publish(topic, QoS::AtLeastOnce, true, payload)
                        .await
                        .unwrap();
                }
            }
        });
        let mut acked = 0;
        while acked < batch.len() {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
                acked += 1;
            }
        }
        publisher.await.unwrap();
        let rate = batch.len() as f64 / started.elapsed().as_secs_f64();
        client.disconnect().await.ok();
        rate
    })
}

fn main() {
    let rounds = env("CAIRN_BENCH_ROUNDS", 3);
    let devices = env("CAIRN_BENCH_DEVICES", 100_000);
    let n = env("CAIRN_BENCH_DELIVERIES", 20_000);

    println!("status events into the relay log, {devices} devices, medians of {rounds}:");
    let rates: Vec<f64> = (0..rounds).map(|_| ingest(devices)).collect();
    println!("  runs: {rates:.0?}");
    println!("  median {:.0} events/s (goal >= 50,000)", median(rates));

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path()).unwrap();
    let files = broker.client(RELAY_CLIENT).unwrap();
    let config = mqtt::MqttConfig {
        host: "127.0.0.1".into(),
        port: broker.port(),
        ca: broker.ca(),
        cert: files.cert,
        key: files.key,
        client_id: RELAY_CLIENT.into(),
        jobs: false,
        jobs_in_progress_timeout_secs: None,
    };
    let batch = deliveries(n);
    let mut link = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..rounds {
        link.push(relay_link(mqtt::options(&config).unwrap(), &batch));
        bare.push(bare_rumqttc(mqtt::options(&config).unwrap(), &batch));
    }
    println!("deliveries published to Mosquitto (TLS, QoS 1, retained, 1,500 B), {n} per run:");
    println!("  relay link:   runs {link:.0?}");
    println!("  bare rumqttc: runs {bare:.0?}");
    let (l, b) = (median(link), median(bare));
    println!("  median {l:.0} /s vs {b:.0} /s: ratio {:.2}", l / b);
}
