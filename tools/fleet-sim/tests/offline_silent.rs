//! Offline devices never connect (the broker's own log never names them) and keep no state;
//! silent devices install their update but publish nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_fleet_sim::{Rate, Sim};
use cairn_verifier::campaign::Outcome;
use cairn_verifier::types::Version;
use common::{PATIENCE, World, state_of};

#[test]
fn offline_devices_never_connect_and_silent_devices_install_without_reporting() {
    let world = World::new(20);
    let mut config = world.config("state");
    config.faults.seed = 5;
    config.faults.offline = Rate::new(0.25).unwrap();
    config.faults.silent = Rate::new(0.25).unwrap();
    let state_dir = config.state.clone();
    let pick = |f: fn(cairn_fleet_sim::DeviceFaults) -> bool| -> BTreeSet<String> {
        world
            .devices
            .iter()
            .filter(|d| f(config.faults.for_device(d)))
            .cloned()
            .collect()
    };
    let offline = pick(|f| f.offline);
    let silent = pick(|f| f.silent && !f.offline);
    let reporting = pick(|f| !f.silent && !f.offline);
    assert!(!offline.is_empty() && !silent.is_empty() && !reporting.is_empty());
    let online = (20 - offline.len()) as u64;

    let sim = Sim::start(config.clone()).unwrap();
    assert_eq!(sim.stats().offline, offline.len() as u64);
    assert_eq!(sim.stats().silent, silent.len() as u64);
    sim.wait_until(PATIENCE, |s| s.connected == online).unwrap();

    world.deliver(&world.updates);
    let reports = world.relay.reports(reporting.len());
    assert_eq!(reports.keys().cloned().collect::<BTreeSet<_>>(), reporting);
    assert!(reports.values().all(|r| r[0].outcome == Outcome::Installed));
    let stats = sim.wait_until(PATIENCE, |s| s.installed == online).unwrap();
    assert_eq!(stats.reports_sent, reporting.len() as u64);
    world.relay.quiet(Duration::from_secs(1));

    for device in &silent {
        let s = state_of(&state_dir, device).unwrap();
        assert_eq!(s.version, Version::new(2, 4, 1), "{device} installed");
        assert_eq!(s.sequence, 0, "{device} never reported");
    }
    for device in &offline {
        assert!(
            state_of(&state_dir, device).is_none(),
            "{device} handled nothing"
        );
    }
    // A second of extra time changes nothing: the offline devices stay away.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sim.stats().connected, online);
    sim.stop();

    let log = std::fs::read_to_string(world.broker_dir().join("mosquitto.log")).unwrap();
    for device in &world.devices {
        let seen = log.contains(&format!(" as {device} "));
        assert_eq!(
            seen,
            !offline.contains(device),
            "{device} in the broker's log:\n{log}"
        );
    }
}
