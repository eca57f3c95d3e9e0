//! Injected install failures, by rollout stage: the selected devices of a stage report
//! InstallFailed `flash-write` for the campaign's update on every attempt, or with `transient`
//! only on the first, so the relay's retry (the same delivery published again) installs; the
//! rollback target always installs.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cairn_fleet_sim::{Faults, Rate, Sim, SimConfig};
use cairn_verifier::campaign::Outcome;
use common::{PATIENCE, ROLLBACK, UPDATE, World, state_of};

/// Devices 1 to 10 in stage 0, 11 to 20 in stage 1; every stage-0 device fails, and half of the
/// stage-1 devices (by the seed), read from a stages file as the relay will serve it.
fn failing(world: &World, transient: bool) -> (SimConfig, BTreeSet<String>) {
    let stages: BTreeMap<String, u64> = world
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.clone(), u64::from(i >= 10)))
        .collect();
    let file = world.dir.path().join("stages.json");
    std::fs::write(&file, serde_json::to_vec(&stages).unwrap()).unwrap();
    let mut config = world.config("state");
    config.faults = Faults {
        seed: 11,
        install_failure: BTreeMap::from([(0, Rate::ALL), (1, Rate::new(0.5).unwrap())]),
        stages: Faults::read_stages(&file).unwrap(),
        transient,
        ..Faults::default()
    };
    let failing: BTreeSet<String> = world
        .devices
        .iter()
        .filter(|d| config.faults.for_device(d).install_failure)
        .cloned()
        .collect();
    let in_stage_one = failing.iter().filter(|d| stages[*d] == 1).count();
    assert!(
        in_stage_one > 0 && in_stage_one < 10,
        "seed 11 selects some of stage 1: {in_stage_one}"
    );
    assert!(world.devices[..10].iter().all(|d| failing.contains(d)));
    (config, failing)
}

#[test]
fn permanent_failures_fail_every_attempt_but_never_the_rollback() {
    let world = World::new(20);
    let (config, failing) = failing(&world, false);
    let state_dir = config.state.clone();
    let sim = Sim::start(config).unwrap();
    sim.wait_until(PATIENCE, |s| s.connected == 20).unwrap();
    world.deliver(&world.updates);
    for (device, r) in world.relay.reports(20) {
        let expected = if failing.contains(&device) {
            (Outcome::InstallFailed, "flash-write")
        } else {
            (Outcome::Installed, "ok")
        };
        assert_eq!((r[0].outcome, r[0].detail.as_str()), expected, "{device}");
    }

    // The relay retries the failed devices: they fail again.
    let retry: Vec<(String, Vec<u8>)> = failing
        .iter()
        .map(|d| (d.clone(), world.updates[d].clone()))
        .collect();
    world.relay.publish(&retry);
    for (device, r) in world.relay.reports(failing.len()) {
        assert_eq!(
            (
                r[0].release.as_str(),
                r[0].outcome,
                r[0].detail.as_str(),
                r[0].sequence
            ),
            (UPDATE, Outcome::InstallFailed, "flash-write", 2),
            "{device}"
        );
        assert_eq!(
            state_of(&state_dir, &device).unwrap().install_failures[UPDATE],
            2
        );
    }

    // The rollback target installs on every device, failing ones included.
    world.deliver(&world.rollbacks);
    for (device, r) in world.relay.reports(20) {
        assert_eq!(
            (r[0].release.as_str(), r[0].outcome),
            (ROLLBACK, Outcome::Installed),
            "{device}"
        );
    }
    let stats = sim
        .wait_until(PATIENCE, |s| s.reports_acked == 40 + failing.len() as u64)
        .unwrap();
    assert_eq!(stats.install_failed, 2 * failing.len() as u64);
    assert_eq!(stats.installed, 20 - failing.len() as u64);
    assert_eq!(stats.rolled_back, 20);
    sim.stop();
}

#[test]
fn transient_failures_succeed_when_the_relay_retries() {
    let world = World::new(20);
    let (config, failing) = failing(&world, true);
    let sim = Sim::start(config).unwrap();
    sim.wait_until(PATIENCE, |s| s.connected == 20).unwrap();
    world.deliver(&world.updates);
    let first = world.relay.reports(20);
    let failed: BTreeSet<String> = first
        .iter()
        .filter(|(_, r)| r[0].outcome == Outcome::InstallFailed)
        .map(|(d, _)| d.clone())
        .collect();
    assert_eq!(failed, failing);
    let retry: Vec<(String, Vec<u8>)> = failed
        .iter()
        .map(|d| (d.clone(), world.updates[d].clone()))
        .collect();
    world.relay.publish(&retry);
    for (device, r) in world.relay.reports(failed.len()) {
        assert_eq!(
            (
                r[0].release.as_str(),
                r[0].outcome,
                r[0].detail.as_str(),
                r[0].sequence
            ),
            (UPDATE, Outcome::Installed, "ok", 2),
            "{device}"
        );
    }
    let stats = sim
        .wait_until(PATIENCE, |s| s.reports_acked == 20 + failing.len() as u64)
        .unwrap();
    assert_eq!(stats.installed, 20);
    assert_eq!(stats.install_failed, failing.len() as u64);
    sim.stop();
}
