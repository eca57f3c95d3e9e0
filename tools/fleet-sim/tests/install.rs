//! Twenty simulated devices, each with its own certificate, receive their deliveries through a
//! real Mosquitto, pass the boot check, install, and report Installed with increasing sequence
//! numbers; a malformed delivery is counted, not a crash; the rollback target installs next.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use cairn_fleet_sim::Sim;
use cairn_relay::broker::delivery_topic;
use cairn_verifier::campaign::Outcome;
use cairn_verifier::types::Version;
use common::{CAMPAIGN, PATIENCE, ROLLBACK, UPDATE, World, state_of};

#[test]
fn every_device_installs_its_update_then_its_rollback_and_reports_each() {
    let world = World::new(20);
    let config = world.config("state");
    let state_dir = config.state.clone();
    let sim = Sim::start(config).unwrap();
    let stats = sim.stats();
    assert_eq!(stats.devices, 20);
    assert_eq!(stats.skipped_rows, 2);
    assert_eq!(stats.certificates_issued, 20);
    assert_eq!(sim.skipped()[0].line, 22);
    let stats = sim
        .wait_until(PATIENCE, |s| s.connected == 20)
        .expect("all 20 devices connect");
    assert_eq!(stats.sessions_resumed, 0, "new devices, new sessions");

    world.deliver(&world.updates);
    let reports = world.relay.reports(20);
    assert_eq!(reports.len(), 20, "one report from each device");
    for (device, r) in &reports {
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!(
            (
                r.campaign.as_str(),
                r.release.as_str(),
                r.outcome,
                r.detail.as_str(),
                r.sequence
            ),
            (CAMPAIGN, UPDATE, Outcome::Installed, "ok", 1),
            "{device}"
        );
        let s = state_of(&state_dir, device).unwrap();
        assert_eq!(s.version, Version::new(2, 4, 1));
        assert_eq!(s.stored.checkpoint_size.0, world.latest_size);
        assert_eq!(s.stored.security_epoch.0, 3);
        assert_eq!(s.sequence, 1);
    }
    let stats = sim.wait_until(PATIENCE, |s| s.reports_acked == 20).unwrap();
    assert_eq!(
        (
            stats.deliveries,
            stats.installed,
            stats.verification_failed,
            stats.install_failed
        ),
        (20, 20, 0, 0)
    );

    // Garbage on a delivery topic: counted, nothing reported, the device keeps working.
    let first = &world.devices[0];
    world
        .relay
        .publish(&[(first.clone(), b"not a delivery".to_vec())]);
    sim.wait_until(PATIENCE, |s| s.malformed == 1)
        .expect("the malformed delivery is counted");
    world.relay.quiet(std::time::Duration::from_millis(500));
    assert_eq!(state_of(&state_dir, first).unwrap().sequence, 1);
    assert_eq!(delivery_topic(first), format!("cairn/{first}/delivery"));

    // The pre-signed rollback target, from 2.4.1 back to 2.3.2: the next sequence number.
    world.deliver(&world.rollbacks);
    let reports = world.relay.reports(20);
    for (device, r) in &reports {
        let r = &r[0];
        assert_eq!(
            (r.release.as_str(), r.outcome, r.sequence),
            (ROLLBACK, Outcome::Installed, 2),
            "{device}"
        );
        assert_eq!(
            state_of(&state_dir, device).unwrap().version,
            Version::new(2, 3, 2)
        );
    }
    let stats = sim.wait_until(PATIENCE, |s| s.reports_acked == 40).unwrap();
    assert_eq!(
        (stats.installed, stats.rolled_back, stats.malformed),
        (20, 20, 1)
    );
    assert_eq!(stats.connection_errors, 0);
    let last = sim.stop();
    assert_eq!(last.connected, 0);
    assert_eq!(last.max_connected, 20);
}
