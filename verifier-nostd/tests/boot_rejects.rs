//! Property: the device boot check (`boot::verify_delivery`) rejects every delivery that fails one
//! of the checks of design.md "Device boot check", with that check's own error variant and
//! evidence: one test per rejection reason, in design order.
//!
//! Every case starts from `Fixture::spec()` (a valid delivery for `dev-000001` on 2.3.0) and
//! changes one thing.

mod common;

use cairn_verifier::Error;
use cairn_verifier::boot::{DeviceIdentity, StoredState, check_image, verify_delivery};
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::error::{CborError, Item, NoteError, ProofError};
use cairn_verifier::merkle::inclusion_proof_len;
use cairn_verifier::statement::Manifest;
use cairn_verifier::test_support::{Fixture, Parts, Spec};
use cairn_verifier::types::{Id, LeafIndex, SecurityEpoch, TreeSize, Version};

use common::boot::*;

// ---------------------------------------------------------------------------------------------
// One test per rejection reason, in design order

#[test]
fn malformed_delivery() {
    let f = Fixture::new();
    let mut delivery = f.delivery();
    let len = delivery.len();
    delivery.push(0x00);
    assert_eq!(
        run(&f, &delivery, &device(), &StoredState::default(), &f.image).map(|_| ()),
        Err(Error::Malformed {
            item: Item::Delivery,
            cause: CborError::TrailingBytes { offset: len },
        })
    );
    delivery.truncate(len - 1);
    assert!(matches!(
        run(&f, &delivery, &device(), &StoredState::default(), &f.image),
        Err(Error::Malformed {
            item: Item::Delivery,
            cause: CborError::UnexpectedEnd { .. },
        })
    ));
    assert!(matches!(
        run(&f, &[], &device(), &StoredState::default(), &f.image),
        Err(Error::Malformed {
            item: Item::Delivery,
            cause: CborError::UnexpectedEnd { offset: 0 },
        })
    ));
}

#[test]
fn malformed_checkpoint() {
    let f = Fixture::new();
    let mut parts = f.build(&f.spec());
    parts.checkpoint = parts.checkpoint.replacen("\n\n", "\n", 1);
    assert_eq!(
        verdict_of_parts(&f, &parts),
        Err(Error::MalformedCheckpoint(NoteError::NoSignatureBlock))
    );
}

#[test]
fn checkpoint_origin() {
    let f = Fixture::new();
    let spec = Spec {
        origin: "cairn.test/other-log",
        ..f.spec()
    };
    assert_eq!(verdict_of(&f, &spec), Err(Error::CheckpointOrigin));
}

#[test]
fn checkpoint_key_missing() {
    let f = Fixture::new();
    // signed by another key under the pinned name: its key id differs
    let spec = Spec {
        log_key: 3,
        ..f.spec()
    };
    assert_eq!(verdict_of(&f, &spec), Err(Error::CheckpointKeyMissing));
}

#[test]
fn checkpoint_signature() {
    let f = Fixture::new();
    // the signed text changed after signing: an extension line added
    let mut parts = f.build(&f.spec());
    parts.checkpoint = parts.checkpoint.replacen("\n\n", "\nextra\n\n", 1);
    assert_eq!(
        verdict_of_parts(&f, &parts),
        Err(Error::CheckpointSignature)
    );
    // the tree size changed after signing (caught before the proof is even looked at)
    let spec = f.spec();
    let mut parts = f.build(&spec);
    let size = spec.tree_size.to_string();
    parts.checkpoint = parts.checkpoint.replacen(
        &format!("\n{size}\n"),
        &format!("\n{}\n", spec.tree_size + 1),
        1,
    );
    assert_eq!(
        verdict_of_parts(&f, &parts),
        Err(Error::CheckpointSignature)
    );
}

#[test]
fn checkpoint_stale() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let size = f.spec().tree_size;
    let state = StoredState {
        checkpoint_size: TreeSize(size + 1),
        ..StoredState::default()
    };
    assert_eq!(
        run(&f, &delivery, &device(), &state, &f.image).map(|_| ()),
        Err(Error::CheckpointStale {
            stored: TreeSize(size + 1),
            received: TreeSize(size),
        })
    );
}

#[test]
fn not_included_tampered_proof_hash() {
    let f = Fixture::new();
    let spec = f.spec();
    let parts = f.build(&spec);
    for i in 0..parts.proof.len() {
        let mut bad = parts.clone();
        bad.proof[i][31] ^= 0x80;
        assert_eq!(
            verdict_of_parts(&f, &bad),
            Err(Error::NotIncluded {
                index: LeafIndex(spec.index),
                cause: ProofError::RootMismatch,
            }),
            "proof[{i}]"
        );
    }
}

#[test]
fn not_included_wrong_index() {
    let f = Fixture::new();
    let spec = f.spec();
    let parts = f.build(&spec);
    // another index whose proof has the same length: the path leads to another root
    let other = spec.index - 1;
    assert_eq!(
        inclusion_proof_len(other, spec.tree_size),
        parts.proof.len() as u64
    );
    let moved = Parts {
        index: other,
        ..parts.clone()
    };
    assert_eq!(
        verdict_of_parts(&f, &moved),
        Err(Error::NotIncluded {
            index: LeafIndex(other),
            cause: ProofError::RootMismatch,
        })
    );
    // an index outside the tree
    let beyond = Parts {
        index: spec.tree_size,
        ..parts
    };
    assert_eq!(
        verdict_of_parts(&f, &beyond),
        Err(Error::NotIncluded {
            index: LeafIndex(spec.tree_size),
            cause: ProofError::IndexBeyondSize {
                index: spec.tree_size,
                size: spec.tree_size,
            },
        })
    );
}

#[test]
fn not_included_proof_too_short_or_too_long() {
    let f = Fixture::new();
    let spec = f.spec();
    let parts = f.build(&spec);
    let n = parts.proof.len() as u64;
    assert!(n >= 2);
    let mut short = parts.clone();
    short.proof.pop();
    let mut long = parts.clone();
    long.proof.push([0x11; 32]);
    let mut empty = parts.clone();
    empty.proof.clear();
    for (bad, got) in [(short, n - 1), (long, n + 1), (empty, 0)] {
        assert_eq!(
            verdict_of_parts(&f, &bad),
            Err(Error::NotIncluded {
                index: LeafIndex(spec.index),
                cause: ProofError::WrongLength { expected: n, got },
            })
        );
    }
}

#[test]
fn release_key_unknown() {
    let f = Fixture::new();
    let spec = Spec {
        release_key: 3,
        ..f.spec()
    };
    assert_eq!(verdict_of(&f, &spec), Err(Error::ReleaseKeyUnknown));
}

#[test]
fn release_signature() {
    let f = Fixture::new();
    let mut parts = f.build(&f.spec());
    tamper_release_payload(&mut parts);
    // the manifest is re-bound to the tampered release, so only the signature can catch it
    let spec = f.spec();
    let digest = Software.sha256_of(&[&parts.release]);
    let bytes = parts.manifest.clone();
    let mut manifest = Manifest::decode(&bytes).unwrap();
    manifest.release_digest = digest;
    reseal(&spec, &mut parts, manifest.to_cbor());
    assert_eq!(verdict_of_parts(&f, &parts), Err(Error::ReleaseSignature));
    // a corrupted signature too
    let mut parts = f.build(&spec);
    let n = parts.release.len();
    parts.release[n - 1] ^= 0x01;
    assert_eq!(verdict_of_parts(&f, &parts), Err(Error::ReleaseSignature));
}

#[test]
fn manifest_not_for_release_digest() {
    let f = Fixture::new();
    let spec = Spec {
        release_digest_override: Some(Software.sha256_of(&[b"another release"])),
        ..f.spec()
    };
    assert_eq!(verdict_of(&f, &spec), Err(Error::ManifestNotForRelease));
}

#[test]
fn manifest_not_for_release_id() {
    let f = Fixture::new();
    let spec = f.spec();
    let mut parts = f.build(&spec);
    let bytes = parts.manifest.clone();
    let mut manifest = Manifest::decode(&bytes).unwrap();
    // the digest still names the signed release; only the release id differs
    manifest.release_id = Id::new("controller-fw-2.4.2").unwrap();
    reseal(&spec, &mut parts, manifest.to_cbor());
    assert_eq!(
        verdict_of_parts(&f, &parts),
        Err(Error::ManifestNotForRelease)
    );
}

#[test]
fn wrong_device() {
    let f = Fixture::new();
    let spec = Spec {
        device_id: "dev-000002",
        ..f.spec()
    };
    assert_eq!(verdict_of(&f, &spec), Err(Error::WrongDevice));
    // and the valid delivery presented to another device
    let delivery = f.delivery();
    let other = DeviceIdentity {
        device_id: "dev-000002",
        ..device()
    };
    assert_eq!(
        run(&f, &delivery, &other, &StoredState::default(), &f.image).map(|_| ()),
        Err(Error::WrongDevice)
    );
}

#[test]
fn wrong_device_class_product() {
    let f = Fixture::new();
    let spec = Spec {
        product: "Smart Thermostat",
        ..f.spec()
    };
    assert_eq!(verdict_of(&f, &spec), Err(Error::WrongDeviceClass));
}

#[test]
fn wrong_device_class_family() {
    let f = Fixture::new();
    let spec = Spec {
        family: "STM32U5",
        ..f.spec()
    };
    assert_eq!(verdict_of(&f, &spec), Err(Error::WrongDeviceClass));
    let delivery = f.delivery();
    let other = DeviceIdentity {
        family: "STM32U5",
        ..device()
    };
    assert_eq!(
        run(&f, &delivery, &other, &StoredState::default(), &f.image).map(|_| ()),
        Err(Error::WrongDeviceClass)
    );
}

#[test]
fn wrong_hardware_revision_not_in_release_list() {
    let f = Fixture::new();
    // manifest and device agree on rev-a, but the release only lists rev-b and rev-c
    let spec = Spec {
        hardware_revision: "rev-a",
        ..f.spec()
    };
    let delivery = f.build(&spec).encode();
    let dev = DeviceIdentity {
        hardware_revision: "rev-a",
        ..device()
    };
    assert_eq!(
        run(&f, &delivery, &dev, &StoredState::default(), &f.image).map(|_| ()),
        Err(Error::WrongHardwareRevision)
    );
}

#[test]
fn wrong_hardware_revision_device_differs() {
    let f = Fixture::new();
    let delivery = f.delivery();
    // rev-b is in the release list, but the manifest was issued for rev-c
    let dev = DeviceIdentity {
        hardware_revision: "rev-b",
        ..device()
    };
    assert_eq!(
        run(&f, &delivery, &dev, &StoredState::default(), &f.image).map(|_| ()),
        Err(Error::WrongHardwareRevision)
    );
}

#[test]
fn version_out_of_range_below_min() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let spec = f.spec();
    let current = Version::new(1, 99, 99);
    let dev = DeviceIdentity {
        current_version: current,
        ..device()
    };
    assert_eq!(
        run(&f, &delivery, &dev, &StoredState::default(), &f.image).map(|_| ()),
        Err(Error::VersionOutOfRange {
            current,
            min: spec.min_version,
            max: spec.max_version,
        })
    );
}

#[test]
fn version_out_of_range_above_max() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let spec = f.spec();
    for current in [Version::new(2, 4, 1), Version::new(3, 0, 0)] {
        let dev = DeviceIdentity {
            current_version: current,
            ..device()
        };
        assert_eq!(
            run(&f, &delivery, &dev, &StoredState::default(), &f.image).map(|_| ()),
            Err(Error::VersionOutOfRange {
                current,
                min: spec.min_version,
                max: spec.max_version,
            })
        );
    }
}

#[test]
fn security_epoch_rollback() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let release = SecurityEpoch(f.spec().security_epoch);
    let stored = SecurityEpoch(release.0 + 1);
    let state = StoredState {
        security_epoch: stored,
        ..StoredState::default()
    };
    assert_eq!(
        run(&f, &delivery, &device(), &state, &f.image).map(|_| ()),
        Err(Error::SecurityEpochRollback { stored, release })
    );
    // the same epoch is not a rollback
    let state = StoredState {
        security_epoch: release,
        ..StoredState::default()
    };
    assert!(run(&f, &delivery, &device(), &state, &f.image).is_ok());
}

#[test]
fn image_size() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let expected = f.image.len() as u64;
    let mut longer = f.image.clone();
    longer.push(0xff);
    let shorter = &f.image[..f.image.len() - 1];
    for (image, actual) in [
        (&longer[..], expected + 1),
        (shorter, expected - 1),
        (&[][..], 0),
    ] {
        assert_eq!(
            run(&f, &delivery, &device(), &StoredState::default(), image).map(|_| ()),
            Err(Error::ImageSize { expected, actual })
        );
    }
}

#[test]
fn image_digest() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let mut image = f.image.clone();
    image[3000] ^= 0x04;
    assert_eq!(
        run(&f, &delivery, &device(), &StoredState::default(), &image).map(|_| ()),
        Err(Error::ImageDigest)
    );
    // an image of the right size for another release
    let spec = Spec {
        image: vec![0xa5; f.image.len()],
        ..f.spec()
    };
    let other = f.build(&spec).encode();
    assert_eq!(
        run(&f, &other, &device(), &StoredState::default(), &f.image).map(|_| ()),
        Err(Error::ImageDigest)
    );
}

#[test]
fn flash_read() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let last_chunk = (f.image.len() as u64 - 1) / 512 * 512;
    for fail_from in [0, 512, last_chunk] {
        let mut flash = FailingFlash {
            image: &f.image,
            fail_from,
            reads: 0,
        };
        let result = verify_delivery(
            &delivery,
            &f.anchors(),
            &device(),
            &StoredState::default(),
            &mut flash,
            &Software,
        );
        assert_eq!(result.map(|_| ()), Err(Error::FlashRead), "{fail_from}");
        assert!(flash.reads >= 1);
    }
    // the same reader with no failure accepts: the failure, not the reader, is what is rejected
    let mut flash = FailingFlash {
        image: &f.image,
        fail_from: u64::MAX,
        reads: 0,
    };
    let size = f.image.len() as u64;
    let digest = Software.sha256_of(&[&f.image]);
    assert_eq!(check_image(&mut flash, size, &digest, &Software), Ok(()));
    assert_eq!(flash.reads, f.image.len().div_ceil(512));
}
