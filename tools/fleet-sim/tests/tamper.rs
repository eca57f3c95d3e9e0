//! Tampering is caught by the real boot check on each device: a flipped image byte is refused as
//! `image-digest`, a flipped byte of the delivery's manifest as `not-included` (the manifest no
//! longer hashes to a leaf of the signed checkpoint's tree); nothing is installed, and the other
//! devices install normally.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use cairn_fleet_sim::{Rate, Sim};
use cairn_verifier::campaign::Outcome;
use cairn_verifier::types::Version;
use common::{PATIENCE, UPDATE, World, state_of};

#[test]
fn tampered_images_and_deliveries_are_refused_with_the_verifiers_code() {
    let world = World::new(20);
    let mut config = world.config("state");
    config.faults.seed = 3;
    config.faults.tamper_image = Rate::new(0.3).unwrap();
    config.faults.tamper_delivery = Rate::new(0.3).unwrap();
    let state_dir = config.state.clone();
    let expected = |device: &str| -> (Outcome, &'static str) {
        let f = config.faults.for_device(device);
        if f.tamper_delivery {
            (Outcome::VerificationFailed, "not-included")
        } else if f.tamper_image {
            (Outcome::VerificationFailed, "image-digest")
        } else {
            (Outcome::Installed, "ok")
        }
    };
    let count =
        |what: (Outcome, &str)| world.devices.iter().filter(|d| expected(d) == what).count();
    let (delivery, image, clean) = (
        count((Outcome::VerificationFailed, "not-included")),
        count((Outcome::VerificationFailed, "image-digest")),
        count((Outcome::Installed, "ok")),
    );
    assert!(
        delivery > 0 && image > 0 && clean > 0,
        "seed 3 selects each kind: {delivery} {image} {clean}"
    );

    let sim = Sim::start(config.clone()).unwrap();
    sim.wait_until(PATIENCE, |s| s.connected == 20).unwrap();
    world.deliver(&world.updates);
    let reports = world.relay.reports(20);
    for (device, r) in &reports {
        let r = &r[0];
        assert_eq!(r.release, UPDATE);
        assert_eq!((r.outcome, r.detail.as_str()), expected(device), "{device}");
        let s = state_of(&state_dir, device).unwrap();
        if r.outcome == Outcome::Installed {
            assert_eq!(s.version, Version::new(2, 4, 1));
        } else {
            assert_eq!(
                s.version,
                Version::new(2, 3, 1),
                "{device} installed nothing"
            );
            assert_eq!(s.stored.installed, None);
            assert_eq!(s.stored.checkpoint_size.0, 0);
        }
    }
    let stats = sim.wait_until(PATIENCE, |s| s.reports_acked == 20).unwrap();
    assert_eq!(stats.verification_failed, (delivery + image) as u64);
    assert_eq!(stats.installed, clean as u64);
    sim.stop();
}
