//! Property: simulated devices enforce the k-of-n witness policy they are given, as the real boot
//! check does: with 2 of 3 pinned, a checkpoint cosigned by two is installed, by one refused
//! (`no-quorum`); an unwitnessed device takes either; a policy that could count one witness twice
//! is refused when the fleet is configured.

use std::sync::Arc;

use base64ct::{Base64, Encoding};
use cairn_fleet_sim::device::{Handled, handle};
use cairn_fleet_sim::fleet::DeviceRow;
use cairn_fleet_sim::state::DeviceState;
use cairn_fleet_sim::{DeviceFaults, Faults, Images, Trust, Witnesses};
use cairn_verifier::campaign::Outcome;
use cairn_verifier::crypto::Software;
use cairn_verifier::test_support::{
    DEVICE, Fixture, ORIGIN, WITNESSES, cosign, public_key, witness,
};
use cairn_verifier::types::Version;
use cairn_verifier::witness::{COSIGNATURE_V1_ALG, key_id};

const T: u64 = 1_795_000_500;

/// Test witness `n`'s verifier key, as `cairn-witness vkey` prints it.
fn vkey(n: u8) -> String {
    let w = witness(WITNESSES[usize::from(n)], n);
    let mut material = vec![COSIGNATURE_V1_ALG];
    material.extend_from_slice(&w.public);
    let id = key_id(w.name, &w.public, &Software);
    format!(
        "{}+{}+{}",
        w.name,
        hex::encode(id),
        Base64::encode_string(&material)
    )
}

fn trust(witnesses: Witnesses) -> Trust {
    let f = Fixture::new();
    Trust {
        origin: ORIGIN.into(),
        log_key: public_key(&f.log_key),
        release_key: public_key(&f.release_key),
        witnesses,
    }
}

/// The outcome and detail of the fixture's delivery, its checkpoint cosigned by `cosigners`.
fn check(trust: &Trust, cosigners: &[usize]) -> (Outcome, &'static str) {
    let f = Fixture::new();
    let mut parts = f.build(&f.spec());
    for (i, &n) in cosigners.iter().enumerate() {
        parts.checkpoint = cosign(&parts.checkpoint, n, T + i as u64);
    }
    let images = Images::from([("controller-fw-2.4.1".to_owned(), Arc::from(&f.image[..]))]);
    let device = DeviceRow {
        id: DEVICE.into(),
        product: "Smart Controller".into(),
        family: "STM32H5".into(),
        hardware_revision: "rev-c".into(),
        version: Version::new(2, 3, 0),
    };
    match handle(
        trust,
        &images,
        &Faults::default(),
        &device,
        DeviceFaults::default(),
        &DeviceState::new(device.version),
        &parts.encode(),
    ) {
        Handled::Done {
            outcome, detail, ..
        } => (outcome, detail),
        other => panic!("not handled: {other:?}"),
    }
}

#[test]
fn two_of_three_pinned_devices_need_two_cosignatures() {
    let policy = Witnesses::new(&[vkey(0), vkey(1), vkey(2)], 2).unwrap();
    let t = trust(policy);
    assert_eq!(check(&t, &[0, 2]), (Outcome::Installed, "ok"));
    assert_eq!(check(&t, &[0, 1, 2]), (Outcome::Installed, "ok"));
    assert_eq!(check(&t, &[1]), (Outcome::VerificationFailed, "no-quorum"));
    assert_eq!(check(&t, &[]), (Outcome::VerificationFailed, "no-quorum"));
    // One witness cosigning twice is one witness.
    assert_eq!(
        check(&t, &[2, 2]),
        (Outcome::VerificationFailed, "no-quorum")
    );
}

#[test]
fn unwitnessed_devices_ignore_cosignatures() {
    let t = trust(Witnesses::default());
    assert_eq!(check(&t, &[]), (Outcome::Installed, "ok"));
    assert_eq!(check(&t, &[1]), (Outcome::Installed, "ok"));
}

#[test]
fn a_policy_that_could_not_be_met_or_counts_twice_is_refused() {
    assert!(Witnesses::new(&[vkey(0), vkey(1)], 3).is_err());
    assert!(Witnesses::new(&[vkey(0), vkey(0)], 1).is_err());
    assert!(Witnesses::new(&["not a vkey".into()], 1).is_err());
    assert!(Witnesses::new(&[vkey(0)], 0).is_err());
}
