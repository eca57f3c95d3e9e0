//! Device state survives a restart of the simulator: the stored checkpoint size refuses an older
//! checkpoint (anti-rollback of the log view), the same delivery is not installed twice, report
//! sequence numbers keep increasing, client certificates are reused, and deliveries published
//! while the fleet was down arrive through the persistent MQTT sessions.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::time::Duration;

use cairn_fleet_sim::Sim;
use cairn_verifier::campaign::Outcome;
use cairn_verifier::types::Version;
use common::{PATIENCE, ROLLBACK, UPDATE, World, state_of};
use sha2::{Digest, Sha256};

#[test]
fn a_restarted_fleet_continues_from_its_stored_state() {
    let world = World::new(5);
    let config = world.config("state");
    let state_dir = config.state.clone();

    let sim = Sim::start(config.clone()).unwrap();
    sim.wait_until(PATIENCE, |s| s.connected == 5).unwrap();
    world.deliver(&world.updates);
    for (device, r) in world.relay.reports(5) {
        assert_eq!(
            (r[0].release.as_str(), r[0].outcome, r[0].sequence),
            (UPDATE, Outcome::Installed, 1),
            "{device}"
        );
    }
    sim.wait_until(PATIENCE, |s| s.reports_acked == 5).unwrap();
    sim.stop();

    for (device, delivery) in &world.updates {
        let s = state_of(&state_dir, device).unwrap();
        assert_eq!(s.version, Version::new(2, 4, 1));
        assert_eq!(s.sequence, 1);
        assert_eq!(s.stored.checkpoint_size.0, world.latest_size);
        let installed = s.stored.installed.unwrap();
        assert_eq!(
            installed.delivery_digest,
            <[u8; 32]>::from(Sha256::digest(delivery))
        );
        assert_eq!(installed.image_size, world.update_image.len() as u64);
    }

    // While the fleet is down the relay sends each device an update proven by an older, smaller
    // checkpoint: the broker queues it in the device's session.
    world.deliver(&world.old_updates);
    assert!(
        world
            .old_updates
            .values()
            .all(|d| !world.updates.values().any(|u| u == d))
    );

    let sim = Sim::start(config).unwrap();
    assert_eq!(
        sim.stats().certificates_issued,
        0,
        "certificates come from the cache"
    );
    for (device, r) in world.relay.reports(5) {
        assert_eq!(
            (
                r[0].release.as_str(),
                r[0].outcome,
                r[0].detail.as_str(),
                r[0].sequence
            ),
            (UPDATE, Outcome::VerificationFailed, "checkpoint-stale", 2),
            "{device}"
        );
    }
    let stats = sim.wait_until(PATIENCE, |s| s.connected == 5).unwrap();
    assert_eq!(stats.sessions_resumed, 5);

    // The relay retries the delivery that is installed: the same bytes, ignored.
    world.deliver(&world.updates);
    let stats = sim.wait_until(PATIENCE, |s| s.duplicates == 5).unwrap();
    assert_eq!((stats.installed, stats.verification_failed), (0, 5));
    world.relay.quiet(Duration::from_secs(1));
    for device in &world.devices {
        assert_eq!(state_of(&state_dir, device).unwrap().sequence, 2);
    }

    world.deliver(&world.rollbacks);
    for (device, r) in world.relay.reports(5) {
        assert_eq!(
            (r[0].release.as_str(), r[0].outcome, r[0].sequence),
            (ROLLBACK, Outcome::Installed, 3),
            "{device}"
        );
    }
    let stats = sim.wait_until(PATIENCE, |s| s.reports_acked == 10).unwrap();
    assert_eq!(stats.rolled_back, 5);
    sim.stop();
}
