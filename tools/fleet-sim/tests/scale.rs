//! The reference fleet at full size (8,203 devices, or `FLEET_SIM_DEVICES`): every device
//! connects with its own certificate, receives its delivery, installs and reports. Ignored by
//! default (about a minute on two cores); run with
//! `cargo test -p cairn-fleet-sim --test scale -- --ignored --nocapture`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::time::{Duration, Instant};

use cairn_fleet_sim::Sim;
use cairn_verifier::campaign::Outcome;
use common::World;

#[test]
#[ignore = "the full reference fleet: about a minute on two cores"]
fn the_reference_fleet_installs_and_reports() {
    let n: u64 = std::env::var("FLEET_SIM_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_203);
    // Mosquitto inherits the limit: one socket per device on both sides.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit > 2 * n + 100,
        "open-files hard limit {limit} is too low for {n} devices"
    );
    let t = Instant::now();
    let world = World::new(n);
    eprintln!("log, fleet and broker for {n} devices: {:.1?}", t.elapsed());

    let t = Instant::now();
    let sim = Sim::start(world.config("state")).unwrap();
    eprintln!(
        "started ({} certificates issued): {:.1?}",
        sim.stats().certificates_issued,
        t.elapsed()
    );
    let long = Duration::from_secs(600);
    let stats = sim.wait_until(long, |s| s.connected == n).unwrap();
    eprintln!("{n} connected: {:.1?} ({stats:?})", t.elapsed());

    let t = Instant::now();
    world.deliver(&world.updates);
    eprintln!("{n} deliveries published: {:.1?}", t.elapsed());
    let reports = world.relay.reports(usize::try_from(n).unwrap());
    eprintln!("{n} reports received: {:.1?}", t.elapsed());
    assert_eq!(reports.len() as u64, n);
    assert!(
        reports
            .values()
            .all(|r| r.len() == 1 && r[0].outcome == Outcome::Installed && r[0].sequence == 1)
    );
    let stats = sim.wait_until(long, |s| s.reports_acked == n).unwrap();
    assert_eq!(
        (stats.installed, stats.connection_errors),
        (n, 0),
        "{stats:?}"
    );
    let t = Instant::now();
    let last = sim.stop();
    eprintln!("stopped: {:.1?} ({last:?})", t.elapsed());
    assert_eq!(last.connected, 0);
}
