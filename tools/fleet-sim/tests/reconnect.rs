//! Devices survive a broker restart: every connection drops, each device reconnects with backoff
//! to its persistent session (kept by the broker across the restart), and deliveries published
//! afterwards arrive and install.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use cairn_fleet_sim::Sim;
use cairn_verifier::campaign::Outcome;
use common::{PATIENCE, World};

#[test]
fn devices_reconnect_after_a_broker_restart_and_keep_their_sessions() {
    let mut world = World::new(10);
    let sim = Sim::start(world.config("state")).unwrap();
    sim.wait_until(PATIENCE, |s| s.connected == 10).unwrap();
    assert_eq!(sim.stats().connection_errors, 0);

    world.broker.restart().unwrap();
    let stats = sim
        .wait_until(PATIENCE, |s| s.connections == 20 && s.connected == 10)
        .expect("every device reconnects once");
    assert!(stats.connection_errors >= 10, "{stats:?}");
    assert_eq!(
        stats.sessions_resumed, 10,
        "the broker kept every session: {stats:?}"
    );
    world.relay.wait_subscribed();

    // The devices did not subscribe again (session present): the broker kept their
    // subscriptions, so the deliveries reach them.
    world.deliver(&world.updates);
    for (device, r) in world.relay.reports(10) {
        assert_eq!(
            (r[0].outcome, r[0].sequence),
            (Outcome::Installed, 1),
            "{device}"
        );
    }
    let stats = sim.wait_until(PATIENCE, |s| s.reports_acked == 10).unwrap();
    assert_eq!((stats.installed, stats.duplicates), (10, 0));
    sim.stop();
}
