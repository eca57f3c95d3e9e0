//! The relay's MQTT link keeps to the broker's per-connection limits (`[broker]`, docs/relay.md
//! "Broker limits"; AWS IoT Core's by default: 100 publishes a second, 100 QoS 1 messages in
//! flight): the client's in-flight window is the configured one, and through a real broker
//! (Mosquitto) the relay publishes no faster than `max_publishes_per_sec`, where the same link
//! without the limit goes several times faster.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cairn_relay::broker::{Broker, RELAY_CLIENT};
use cairn_relay::engine::{Input, Outgoing};
use cairn_relay::limits::BrokerLimits;
use cairn_relay::mqtt;

fn config(dir: &std::path::Path, broker: &Broker, limits: &str) -> cairn_relay::Config {
    let relay = broker.client(RELAY_CLIENT).unwrap();
    common::config(
        dir,
        &format!(
            "{limits}[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            broker.port(),
            broker.ca().display(),
            relay.cert.display(),
            relay.key.display()
        ),
    )
}

/// Publishes `n` deliveries through the relay's link under `limits`: the time until the broker
/// acknowledged the last one.
fn publish(config: &cairn_relay::Config, limits: BrokerLimits, n: u64) -> Duration {
    let options = mqtt::options_with(config.mqtt.as_ref().unwrap(), &limits).unwrap();
    let (inputs, acks) = std::sync::mpsc::sync_channel(mqtt::INPUT_QUEUE);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (_acks, to_ack) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let counters = mqtt::LinkCounters::default();
    let payload: Arc<[u8]> = vec![0xa5; 200].into();
    let mut elapsed = Duration::ZERO;
    std::thread::scope(|s| {
        let stop2 = Arc::clone(&stop);
        let counters = &counters;
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(mqtt::link_with_jobs(
                options, inputs, rx, to_ack, None, limits, stop2, counters,
            ));
        });
        let started = Instant::now();
        for i in 0..n {
            tx.send(Outgoing {
                campaign: "limits".into(),
                device: common::device(i),
                release: "limits".into(),
                delivery: Arc::clone(&payload),
                queued_at: 0,
            })
            .unwrap();
        }
        let mut acked = 0;
        while acked < n {
            if let Input::Acked(burst) = acks.recv_timeout(Duration::from_secs(30)).unwrap() {
                acked += burst.len() as u64;
            }
        }
        elapsed = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    elapsed
}

#[test]
fn the_inflight_window_is_the_configured_one_and_iot_core_s_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let defaults = config(dir.path(), &broker, "");
    assert_eq!(defaults.broker, BrokerLimits::default());
    let options = mqtt::options_with(defaults.mqtt.as_ref().unwrap(), &defaults.broker).unwrap();
    assert_eq!(options.inflight(), 100);
    let set = config(
        dir.path(),
        &broker,
        "[broker]\nmax_publishes_per_sec = 0\nmax_inflight = 20\n",
    );
    assert_eq!(
        (set.broker.max_publishes_per_sec, set.broker.max_inflight),
        (0, 20)
    );
    let options = mqtt::options_with(set.mqtt.as_ref().unwrap(), &set.broker).unwrap();
    assert_eq!(options.inflight(), 20);
    // A window of 0 would publish nothing: refused when the file is loaded.
    let text = std::fs::read_to_string(dir.path().join("relay.toml"))
        .unwrap()
        .replace("max_inflight = 20", "max_inflight = 0");
    std::fs::write(dir.path().join("relay.toml"), text).unwrap();
    let err = cairn_relay::Config::load(&dir.path().join("relay.toml")).unwrap_err();
    assert!(
        err.to_string().contains("max_inflight must be 1 to 65535"),
        "{err}"
    );
}

#[test]
fn the_relay_publishes_no_faster_than_the_configured_rate() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let config = config(dir.path(), &broker, "");
    let n = 120;
    // 20 a second: the first second's 20 at once, then one every 50 ms: at least 5 s for 120.
    let limited = publish(
        &config,
        BrokerLimits {
            max_publishes_per_sec: 20,
            max_inflight: 100,
        },
        n,
    );
    assert!(
        limited >= Duration::from_millis(4_900),
        "{n} publishes at 20/s took {limited:?}"
    );
    assert!(limited < Duration::from_secs(15), "{limited:?}");
    // The same link without the limit.
    let free = publish(&config, BrokerLimits::unlimited(), n);
    eprintln!(
        "{n} deliveries through Mosquitto: {limited:?} at max_publishes_per_sec = 20 ({:.1}/s), {free:?} without the limit ({:.0}/s)",
        f64::from(u32::try_from(n).unwrap()) / limited.as_secs_f64(),
        f64::from(u32::try_from(n).unwrap()) / free.as_secs_f64()
    );
    assert!(
        free * 3 < limited,
        "unlimited {free:?} is not well under limited {limited:?}"
    );
}
