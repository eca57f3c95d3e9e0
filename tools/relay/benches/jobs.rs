//! `cargo bench -p cairn-relay --bench jobs`: what an AWS IoT Jobs round trip costs the relay
//! (docs/jobs.md), beside a cairn status report in the same run: for a campaign of
//! `CAIRN_BENCH_DEVICES` devices (default 20,000), every device's `start-next` and `update
//! SUCCEEDED` handled by the Jobs service, each transition recorded by the engine and committed
//! (one synced batch and one relay-key checkpoint per step of 10,000 requests), against the same
//! devices' `installed` status reports into the relay log. In process, without the broker: the
//! relay's side of the round trip only. Medians of `CAIRN_BENCH_ROUNDS` (default 3).

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "benchmark code: a panic is the failure report; rates are shown as floats"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cairn_relay::engine::Engine;
use cairn_relay::jobs::Service;
use cairn_relay::jobs::topics::job_id;
use cairn_verifier::campaign::{Outcome, StatusReport};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::Id;

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

/// A fresh campaign of `devices`, its deliveries handed out: the engine and the executions.
fn campaign(dir: &std::path::Path, devices: u64) -> (Engine, Service, common::SignerLog) {
    let signer = common::signer_log(
        &dir.join("signer"),
        devices,
        0,
        &[("all", devices, 0, 1000, 1000, false)],
        common::Policy::default(),
    );
    let key = ReleaseKey::new(public_key(&test_key(Fixture::RELEASE_KEY)), &Software);
    let mut engine = Engine::open(&dir.join("relay"), "bench/relay", key, &signer.vault).unwrap();
    engine.tick(&signer.vault, 1).unwrap();
    let out = engine.commit(&signer.vault, Duration::ZERO, true).unwrap();
    let mut jobs = Service::new();
    engine.jobs_commit(&mut jobs, out, 1);
    (engine, jobs, signer)
}

/// Jobs round trips (start-next, then update SUCCEEDED) per second.
fn jobs_round_trips(devices: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, mut jobs, signer) = campaign(dir.path(), devices);
    let job = job_id(common::CAMPAIGN, common::RELEASE);
    let update = format!("{job}/update");
    let things: Vec<String> = (1..=devices).map(common::device).collect();
    let started = Instant::now();
    for chunk in things.chunks(5_000) {
        for thing in chunk {
            let h = jobs.handle(thing, "start-next", br#"{"clientToken":"s"}"#, 2);
            engine.job_transition(&h.transition.unwrap(), 2).unwrap();
            let body = br#"{"status":"SUCCEEDED","expectedVersion":2,"statusDetails":{"boot-check":"ok"},"clientToken":"u"}"#;
            let h = jobs.handle(thing, &update, body, 3);
            engine.job_transition(&h.transition.unwrap(), 3).unwrap();
        }
        engine.tick(&signer.vault, 3).unwrap();
        let out = engine.commit(&signer.vault, Duration::ZERO, true).unwrap();
        engine.jobs_commit(&mut jobs, out, 3);
    }
    let secs = started.elapsed().as_secs_f64();
    let installed = engine.campaigns()[common::CAMPAIGN].totals()
        [cairn_verifier::campaign::DeviceState::Installed];
    assert_eq!(installed, devices);
    devices as f64 / secs
}

/// Status reports (delivered by the broker's acknowledgement, then `installed`) per second.
fn status_round_trips(devices: u64) -> f64 {
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
    let report = StatusReport {
        campaign: Id::new(common::CAMPAIGN).unwrap(),
        release_id: Id::new(common::RELEASE).unwrap(),
        outcome: Outcome::Installed,
        detail: Id::new("ok").unwrap(),
        sequence: 1,
    }
    .to_cbor();
    let started = Instant::now();
    for chunk in out.chunks(5_000) {
        for o in chunk {
            engine.acked(&o.campaign, &o.device, &o.release, 2).unwrap();
            engine.report(&o.device, &report, 3).unwrap();
        }
        engine.tick(&signer.vault, 3).unwrap();
        engine.commit(&signer.vault, Duration::ZERO, true).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let installed = engine.campaigns()[common::CAMPAIGN].totals()
        [cairn_verifier::campaign::DeviceState::Installed];
    assert_eq!(installed, devices);
    devices as f64 / secs
}

fn main() {
    let devices = env("CAIRN_BENCH_DEVICES", 20_000);
    let rounds = env("CAIRN_BENCH_ROUNDS", 3);
    let (mut jobs, mut status) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        jobs.push(jobs_round_trips(devices));
        status.push(status_round_trips(devices));
    }
    let (j, s) = (median(jobs), median(status));
    println!(
        "{devices} devices, medians of {rounds}:\n\
         Jobs round trips (start-next + update SUCCEEDED, two events) into the relay log: {j:.0} /s\n\
         status round trips (broker ack + installed report, two events) into the relay log: {s:.0} /s\n\
         ratio Jobs / status: {:.2}",
        j / s
    );
}
