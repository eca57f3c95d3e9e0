//! Property: the device boot check runs its checks in the order of design.md "Device boot check":
//! a delivery with several faults is rejected for the first, and the image is read only when
//! every check before it passed.

mod common;

use cairn_verifier::Error;
use cairn_verifier::boot::{DeviceIdentity, StoredState, verify_delivery};
use cairn_verifier::crypto::Software;
use cairn_verifier::error::{CborError, Item, NoteError, ProofError};
use cairn_verifier::test_support::{Fixture, Parts, Spec};
use cairn_verifier::types::{LeafIndex, SecurityEpoch, TreeSize, Version};

use common::boot::*;

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
