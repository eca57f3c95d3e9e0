//! Property: the device boot check (`boot::verify_delivery`) accepts a valid delivery, with its
//! verdict, at every size and position it may take: a checkpoint equal to the stored size, every
//! version in the manifest's range, another listed hardware revision, a depth-20 proof.
//!
//! Every case starts from `Fixture::spec()` (a valid delivery for `dev-000001` on 2.3.0) and
//! changes one thing.

mod common;

use cairn_verifier::Error;
use cairn_verifier::boot::{DeviceIdentity, Installed, StoredState};
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::merkle::inclusion_proof_len;
use cairn_verifier::statement::Purpose;
use cairn_verifier::test_support::{Fixture, Parts, Spec};
use cairn_verifier::types::{SecurityEpoch, TreeSize, Version};

use common::boot::*;

// ---------------------------------------------------------------------------------------------
// The valid delivery

#[test]
fn valid_delivery_is_accepted_with_its_verdict() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let verdict = run(&f, &delivery, &device(), &StoredState::default(), &f.image).unwrap();
    assert_eq!(verdict.release_id.as_str(), "controller-fw-2.4.1");
    assert_eq!(verdict.campaign.as_str(), "campaign-2026-11");
    assert_eq!(verdict.purpose, Purpose::Update);
    assert_eq!(verdict.checkpoint_size, TreeSize(f.spec().tree_size));
    assert_eq!(
        verdict.installed,
        Installed {
            image_digest: Software.sha256_of(&[&f.image]),
            image_size: f.image.len() as u64,
            version: Version::new(2, 4, 1),
            security_epoch: SecurityEpoch(3),
            delivery_digest: Software.sha256_of(&[&delivery]),
            campaign_sequence: cairn_verifier::test_support::CAMPAIGN_SEQUENCE,
        }
    );
}

#[test]
fn checkpoint_equal_to_stored_size_is_accepted() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let state = StoredState {
        checkpoint_size: TreeSize(f.spec().tree_size),
        security_epoch: SecurityEpoch(3),
        campaign_floor: 0,
        installed: None,
    };
    assert!(run(&f, &delivery, &device(), &state, &f.image).is_ok());
}

#[test]
fn every_version_in_the_inclusive_range_is_accepted() {
    let f = Fixture::new();
    let delivery = f.delivery();
    for current in [
        Version::new(2, 0, 0),
        Version::new(2, 3, 0),
        Version::new(2, 4, 0),
    ] {
        let dev = DeviceIdentity {
            current_version: current,
            ..device()
        };
        assert!(
            run(&f, &delivery, &dev, &StoredState::default(), &f.image).is_ok(),
            "{current}"
        );
    }
}

#[test]
fn other_listed_hardware_revision_is_accepted_when_the_manifest_names_it() {
    let f = Fixture::new();
    let spec = Spec {
        hardware_revision: "rev-b",
        ..f.spec()
    };
    let delivery = f.build(&spec).encode();
    let dev = DeviceIdentity {
        hardware_revision: "rev-b",
        ..device()
    };
    assert!(run(&f, &delivery, &dev, &StoredState::default(), &f.image).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Large trees

#[test]
fn depth_20_proof_verifies() {
    let f = Fixture::new();
    let tree_size = (1u64 << 20) + 3;
    for index in [(1u64 << 19) + 12_345, tree_size - 1] {
        let spec = Spec {
            tree_size,
            index,
            ..f.spec()
        };
        let parts = f.build(&spec);
        assert_eq!(
            parts.proof.len() as u64,
            inclusion_proof_len(index, tree_size)
        );
        if index < 1 << 20 {
            assert!(parts.proof.len() > 20, "{}", parts.proof.len());
        }
        let delivery = parts.encode();
        let verdict = run(&f, &delivery, &device(), &StoredState::default(), &f.image).unwrap();
        assert_eq!(verdict.checkpoint_size, TreeSize(tree_size));
        // and the same delivery claiming a neighbouring index is rejected
        let moved = Parts {
            index: index - 1,
            ..parts
        };
        assert!(matches!(
            verdict_of_parts(&f, &moved),
            Err(Error::NotIncluded { .. })
        ));
    }
}
