//! Property: the device boot check (`boot::verify_delivery`) rejects every delivery that fails one
//! of the checks of design.md "Device boot check", with that check's own error variant and evidence,
//! runs the checks in the design order, and accepts the valid delivery.
//!
//! Every case starts from `Fixture::spec()` (a valid delivery for `dev-000001` on 2.3.0) and
//! changes one thing.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

use cairn_verifier::Error;
use cairn_verifier::boot::{
    DeviceIdentity, ImageReader, Installed, MemoryImage, StoredState, Verdict, check_image,
    verify_delivery, verify_installed,
};
use cairn_verifier::cose::CoseSign1;
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::error::{CborError, Item, NoteError, ProofError};
use cairn_verifier::merkle::{inclusion_proof_len, leaf_hash};
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose};
use cairn_verifier::test_support::{
    DEVICE, Fixture, HARDWARE, Parts, Spec, filler_leaf, public_key, root_and_path, test_key,
};
use cairn_verifier::types::{Hash, Id, LeafIndex, SecurityEpoch, TreeSize, Version};

/// The device the fixture's default delivery is for.
fn device() -> DeviceIdentity<'static> {
    DeviceIdentity {
        device_id: DEVICE,
        product: "Smart Controller",
        family: "STM32H5",
        hardware_revision: HARDWARE,
        current_version: Version::new(2, 3, 0),
    }
}

fn run<'a>(
    f: &Fixture,
    delivery: &'a [u8],
    device: &DeviceIdentity<'_>,
    state: &StoredState,
    image: &[u8],
) -> Result<Verdict<'a>, Error> {
    verify_delivery(
        delivery,
        &f.anchors(),
        device,
        state,
        &mut MemoryImage(image),
        &Software,
    )
}

/// Builds `spec`, runs the default device and a fresh state against the fixture image.
fn verdict_of(f: &Fixture, spec: &Spec) -> Result<(), Error> {
    let delivery = f.build(spec).encode();
    run(f, &delivery, &device(), &StoredState::default(), &f.image).map(|_| ())
}

fn verdict_of_parts(f: &Fixture, parts: &Parts) -> Result<(), Error> {
    let delivery = parts.encode();
    run(f, &delivery, &device(), &StoredState::default(), &f.image).map(|_| ())
}

/// Replaces the manifest of `parts` and rebuilds the tree, proof and signed checkpoint around it,
/// as an honest log would for that manifest.
fn reseal(spec: &Spec, parts: &mut Parts, manifest: Vec<u8>) {
    let leaves: Vec<Hash> = (0..spec.tree_size)
        .map(|i| {
            if i == spec.index {
                leaf_hash(&Software, &manifest)
            } else {
                filler_leaf(i)
            }
        })
        .collect();
    let (root, proof) = root_and_path(leaves, usize::try_from(spec.index).unwrap());
    let log_key = test_key(spec.log_key);
    let key = LogKey::new(spec.origin, spec.origin, public_key(&log_key), &Software).unwrap();
    let body = cairn_verifier::note::write::body(spec.origin, TreeSize(spec.tree_size), &root, &[]);
    parts.checkpoint = cairn_verifier::note::write::sign(&body, &key, &log_key).unwrap();
    parts.manifest = manifest;
    parts.proof = proof;
}

/// The release COSE_Sign1 of `parts` with its payload changed after signing.
fn tamper_release_payload(parts: &mut Parts) {
    let cose = CoseSign1::decode(&parts.release).unwrap();
    let mut payload = cose.payload.to_vec();
    let last = payload.len() - 1; // last byte of the artifact name
    payload[last] ^= 0x01;
    parts.release =
        cairn_verifier::cose::write::assemble(cose.protected, &payload, &cose.signature.0);
}

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

/// Flash that fails every read at or after `fail_from`.
struct FailingFlash<'a> {
    image: &'a [u8],
    fail_from: u64,
    reads: usize,
}

impl ImageReader for FailingFlash<'_> {
    type Error = &'static str;

    fn len(&self) -> u64 {
        self.image.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        self.reads += 1;
        if offset >= self.fail_from {
            return Err("ECC error");
        }
        let start = usize::try_from(offset).unwrap();
        buf.copy_from_slice(&self.image[start..start + buf.len()]);
        Ok(())
    }
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

// ---------------------------------------------------------------------------------------------
// Ordering

/// Everything one boot check depends on, so faults can be stacked.
struct Scenario {
    spec: Spec,
    state: StoredState,
    device: DeviceIdentity<'static>,
    image: Vec<u8>,
    fail_flash: bool,
    edit_parts: Vec<fn(&mut Parts)>,
    trailing_byte: bool,
}

type Fault = (&'static str, fn(&mut Scenario), fn(usize) -> Error);

/// Every rejection reason as one fault, in design order. Applying faults `k..` together must
/// report fault `k`: an earlier check always wins over a later one.
#[expect(
    clippy::too_many_lines,
    reason = "a table with one row per rejection reason, in design order"
)]
fn faults() -> Vec<Fault> {
    vec![
        (
            "malformed delivery",
            |s| s.trailing_byte = true,
            |len| Error::Malformed {
                item: Item::Delivery,
                cause: CborError::TrailingBytes { offset: len - 1 },
            },
        ),
        (
            "malformed checkpoint",
            |s| {
                s.edit_parts
                    .push(|p| p.checkpoint = p.checkpoint.replacen("\n\n", "\n", 1));
            },
            |_| Error::MalformedCheckpoint(NoteError::NoSignatureBlock),
        ),
        (
            "origin",
            |s| s.spec.origin = "cairn.test/other-log",
            |_| Error::CheckpointOrigin,
        ),
        (
            "log key",
            |s| s.spec.log_key = 3,
            |_| Error::CheckpointKeyMissing,
        ),
        (
            "checkpoint signature",
            |s| {
                s.edit_parts
                    .push(|p| p.checkpoint = p.checkpoint.replacen("\n\n", "\nextra\n\n", 1));
            },
            |_| Error::CheckpointSignature,
        ),
        (
            "stale",
            |s| s.state.checkpoint_size = TreeSize(12),
            |_| Error::CheckpointStale {
                stored: TreeSize(12),
                received: TreeSize(11),
            },
        ),
        (
            "inclusion",
            |s| s.edit_parts.push(|p| p.proof[0][0] ^= 1),
            |_| Error::NotIncluded {
                index: LeafIndex(7),
                cause: ProofError::RootMismatch,
            },
        ),
        (
            "release key",
            |s| s.spec.release_key = 3,
            |_| Error::ReleaseKeyUnknown,
        ),
        (
            "release signature",
            |s| s.edit_parts.push(tamper_release_payload),
            |_| Error::ReleaseSignature,
        ),
        (
            "binding",
            |s| s.spec.release_digest_override = Some([0x5a; 32]),
            |_| Error::ManifestNotForRelease,
        ),
        (
            "device",
            |s| s.spec.device_id = "dev-000002",
            |_| Error::WrongDevice,
        ),
        (
            "class",
            |s| s.spec.product = "Smart Thermostat",
            |_| Error::WrongDeviceClass,
        ),
        (
            "hardware",
            |s| s.device.hardware_revision = "rev-b",
            |_| Error::WrongHardwareRevision,
        ),
        (
            "version",
            |s| s.device.current_version = Version::new(1, 0, 0),
            |_| Error::VersionOutOfRange {
                current: Version::new(1, 0, 0),
                min: Version::new(2, 0, 0),
                max: Version::new(2, 4, 0),
            },
        ),
        (
            "epoch",
            |s| s.state.security_epoch = SecurityEpoch(4),
            |_| Error::SecurityEpochRollback {
                stored: SecurityEpoch(4),
                release: SecurityEpoch(3),
            },
        ),
        (
            "image size",
            |s| s.image.push(0),
            |_| Error::ImageSize {
                expected: 6 * 1024,
                actual: 6 * 1024 + 1,
            },
        ),
        ("flash", |s| s.fail_flash = true, |_| Error::FlashRead),
        ("image digest", |s| s.image[0] ^= 1, |_| Error::ImageDigest),
    ]
}

fn run_scenario(f: &Fixture, s: &Scenario) -> (Result<(), Error>, usize) {
    let mut parts = f.build(&s.spec);
    for edit in &s.edit_parts {
        edit(&mut parts);
    }
    let mut delivery = parts.encode();
    if s.trailing_byte {
        delivery.push(0);
    }
    let mut flash = FailingFlash {
        image: &s.image,
        fail_from: if s.fail_flash { 0 } else { u64::MAX },
        reads: 0,
    };
    let result = verify_delivery(
        &delivery,
        &f.anchors(),
        &s.device,
        &s.state,
        &mut flash,
        &Software,
    );
    (result.map(|_| ()), delivery.len())
}

#[test]
fn checks_run_in_design_order() {
    let f = Fixture::new();
    let faults = faults();
    assert_eq!(f.spec().tree_size, 11);
    assert_eq!(f.spec().index, 7);
    for k in 0..=faults.len() {
        let mut s = Scenario {
            spec: f.spec(),
            state: StoredState::default(),
            device: device(),
            image: f.image.clone(),
            fail_flash: false,
            edit_parts: Vec::new(),
            trailing_byte: false,
        };
        for (_, apply, _) in &faults[k..] {
            apply(&mut s);
        }
        let (result, len) = run_scenario(&f, &s);
        match faults.get(k) {
            Some((what, _, expected)) => {
                assert_eq!(result, Err(expected(len)), "faults from {what:?} on");
            }
            None => assert_eq!(result, Ok(()), "no fault"),
        }
    }
    // and each fault alone is reported as itself
    for (what, apply, expected) in &faults {
        let mut s = Scenario {
            spec: f.spec(),
            state: StoredState::default(),
            device: device(),
            image: f.image.clone(),
            fail_flash: false,
            edit_parts: Vec::new(),
            trailing_byte: false,
        };
        apply(&mut s);
        let (result, len) = run_scenario(&f, &s);
        assert_eq!(result, Err(expected(len)), "{what:?} alone");
    }
}

#[test]
fn stale_and_for_another_device_reports_stale() {
    let f = Fixture::new();
    let spec = Spec {
        device_id: "dev-000002",
        ..f.spec()
    };
    let delivery = f.build(&spec).encode();
    let state = StoredState {
        checkpoint_size: TreeSize(spec.tree_size + 5),
        ..StoredState::default()
    };
    assert_eq!(
        run(&f, &delivery, &device(), &state, &f.image).map(|_| ()),
        Err(Error::CheckpointStale {
            stored: TreeSize(spec.tree_size + 5),
            received: TreeSize(spec.tree_size),
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Stored state and installed images

#[test]
fn stored_state_only_moves_forward() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let verdict = run(&f, &delivery, &device(), &StoredState::default(), &f.image).unwrap();

    // from a fresh state, both counters move up to the verdict's
    let fresh = StoredState::default().after(&verdict);
    assert_eq!(fresh.checkpoint_size, verdict.checkpoint_size);
    assert_eq!(fresh.security_epoch, verdict.installed.security_epoch);
    assert_eq!(fresh.installed, Some(verdict.installed));

    // from a state that is ahead on both counters, neither moves back
    let ahead = StoredState {
        checkpoint_size: TreeSize(1_000),
        security_epoch: SecurityEpoch(9),
        installed: None,
    };
    let next = ahead.after(&verdict);
    assert_eq!(next.checkpoint_size, TreeSize(1_000));
    assert_eq!(next.security_epoch, SecurityEpoch(9));
    assert_eq!(next.installed, Some(verdict.installed));

    // mixed: one counter ahead, the other behind
    let mixed = StoredState {
        checkpoint_size: TreeSize(2),
        security_epoch: SecurityEpoch(7),
        installed: None,
    };
    let next = mixed.after(&verdict);
    assert_eq!(next.checkpoint_size, verdict.checkpoint_size);
    assert_eq!(next.security_epoch, SecurityEpoch(7));

    // after accepting, the same delivery is still acceptable (equal size and epoch), but an older
    // checkpoint is not
    assert!(run(&f, &delivery, &device(), &fresh, &f.image).is_ok());
    let older = f
        .build(&Spec {
            tree_size: 9,
            index: 3,
            ..f.spec()
        })
        .encode();
    assert_eq!(
        run(&f, &older, &device(), &fresh, &f.image).map(|_| ()),
        Err(Error::CheckpointStale {
            stored: TreeSize(11),
            received: TreeSize(9),
        })
    );
}

#[test]
fn verify_installed_checks_the_recorded_image() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let verdict = run(&f, &delivery, &device(), &StoredState::default(), &f.image).unwrap();
    let state = StoredState::default().after(&verdict);

    assert_eq!(
        verify_installed(&state, &mut MemoryImage(&f.image), &Software),
        Ok(verdict.installed)
    );
    let mut modified = f.image.clone();
    let last = modified.len() - 1;
    modified[last] ^= 0x80;
    assert_eq!(
        verify_installed(&state, &mut MemoryImage(&modified), &Software),
        Err(Error::ImageDigest)
    );
    modified.push(0);
    assert_eq!(
        verify_installed(&state, &mut MemoryImage(&modified), &Software),
        Err(Error::ImageSize {
            expected: f.image.len() as u64,
            actual: f.image.len() as u64 + 1,
        })
    );
    let mut flash = FailingFlash {
        image: &f.image,
        fail_from: 0,
        reads: 0,
    };
    assert_eq!(
        verify_installed(&state, &mut flash, &Software),
        Err(Error::FlashRead)
    );
}

#[test]
fn verify_installed_on_a_fresh_state() {
    let f = Fixture::new();
    assert_eq!(
        verify_installed(
            &StoredState::default(),
            &mut MemoryImage(&f.image),
            &Software
        ),
        Err(Error::NothingInstalled)
    );
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
