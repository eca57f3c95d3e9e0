//! `cargo bench -p cairn-fleet-sim --bench jobs_fleet`: job executions driven per second through
//! Mosquitto by the fleet simulator in Jobs mode (notify-next, start-next and its answer with the
//! job document, the boot check, the update and its answer), against the same fleet on cairn's
//! own topics (the delivery, the boot check, the status report), in the same run: the relay's
//! engine and MQTT link, a real Mosquitto with TLS client certificates, every device its own
//! MQTT/TLS client running the device verifier. Each round: a fresh relay, broker and fleet of
//! `CAIRN_BENCH_DEVICES` devices (default 1,000) in one stage; the devices connect first, then
//! the signer's log crosses to the relay, and the clock runs from that transfer until the relay
//! has recorded every device `installed`. Medians of `CAIRN_BENCH_ROUNDS` (default 3), the two
//! modes alternating.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "benchmark code: a panic is the failure report; rates are shown as floats"
)]

#[path = "../../relay/tests/common/mod.rs"]
mod relay_common;

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::time::{Duration, Instant};

use cairn_fleet_sim::{Mode, Sim, SimConfig, Trust, load_images};
use cairn_verifier::campaign::DeviceState;
use e2e::{World, count, transfer, wait_for};
use relay_common::{ORIGIN, RELEASE, ROLLBACK};

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

/// One round: executions per second for `n` devices in `mode`.
fn round(n: u64, mode: Mode) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let extra = if mode == Mode::Jobs {
        "jobs = true\n"
    } else {
        ""
    };
    let world = World::start(dir, extra);
    let signer = relay_common::signer_log(
        &dir.join("signer"),
        n,
        0,
        &[("all", n, 0, 1000, 1000, false)],
        relay_common::Policy::default(),
    );
    let mut csv = String::from("device_id,product,family,hardware_revision,firmware_version\n");
    for d in &signer.devices {
        csv.push_str(d);
        csv.push_str(",Smart Controller,STM32H5,rev-c,2.3.1\n");
    }
    std::fs::write(dir.join("fleet.csv"), csv).unwrap();
    std::fs::write(dir.join("update.bin"), &signer.update_image).unwrap();
    std::fs::write(dir.join("rollback.bin"), &signer.rollback_image).unwrap();
    let trust = Trust {
        origin: ORIGIN.into(),
        log_key: cairn_relay::read_key(&dir.join("log.pub.pem")).unwrap(),
        release_key: cairn_relay::read_key(&dir.join("release.pub.pem")).unwrap(),
        witnesses: cairn_fleet_sim::Witnesses::default(),
    };
    let images = load_images(&[
        (RELEASE.to_owned(), dir.join("update.bin")),
        (ROLLBACK.to_owned(), dir.join("rollback.bin")),
    ])
    .unwrap();
    let mut config = SimConfig::new(
        "127.0.0.1",
        world.broker.port(),
        world.broker.ca(),
        dir.join("broker/ca.key"),
        dir.join("fleet.csv"),
        trust,
        images,
        dir.join("sim"),
    );
    config.mode = mode;
    let sim = Sim::start(config).unwrap();
    sim.wait_until(Duration::from_secs(600), |s| s.connected == n)
        .unwrap();
    // Subscriptions settle.
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    transfer(&world.relay, &signer.vault);
    wait_for("every device installed", 600, || {
        count(&world.relay, DeviceState::Installed) == n
    });
    let secs = started.elapsed().as_secs_f64();
    let stats = sim.stop();
    assert_eq!(stats.installed, n, "{stats:?}");
    n as f64 / secs
}

fn main() {
    let n = env("CAIRN_BENCH_DEVICES", 1_000);
    let rounds = env("CAIRN_BENCH_ROUNDS", 3);
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let (mut jobs, mut topics) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        jobs.push(round(n, Mode::Jobs));
        topics.push(round(n, Mode::Topics));
    }
    println!("executions driven through Mosquitto by the fleet simulator, {n} devices:");
    println!("  Jobs mode (start-next + update round trips): runs {jobs:.0?} /s");
    println!("  own topics (delivery + status report):       runs {topics:.0?} /s");
    let (j, t) = (median(jobs), median(topics));
    println!("  median {j:.0} /s vs {t:.0} /s: ratio {:.2}", j / t);
}
