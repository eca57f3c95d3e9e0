//! From the vault to the device: a release and per-device manifests are logged, a checkpoint is
//! signed, and each device's delivery, assembled from the vault's own inclusion proof, passes the
//! device boot check — for that device only, and still after the log has grown.

use cairn_vault::Vault;
use cairn_verifier::boot::{DeviceIdentity, MemoryImage, StoredState, verify_delivery};
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::delivery::{Delivery, ProofHashes};
use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, ORIGIN, public_key};
use cairn_verifier::types::{Id, LeafIndex, TreeSize, UnixTime, Version};
use cairn_verifier::{Error, note::LogKey};

const DEVICES: u64 = 300;

fn device_id(i: u64) -> String {
    format!("dev-{i:06}")
}

fn manifest(i: u64, release: &[u8]) -> Vec<u8> {
    let id = device_id(i);
    Manifest {
        device_id: Id::new(&id).expect("device ids are valid"),
        release_id: Id::new("controller-fw-2.4.1").expect("valid id"),
        release_digest: Software.sha256_of(&[release]),
        hardware_revision: Id::new("rev-c").expect("valid id"),
        min_version: Version::new(2, 0, 0),
        max_version: Version::new(2, 4, 0),
        campaign: Id::new("campaign-2026-11").expect("valid id"),
        purpose: Purpose::Update,
        decided_at: UnixTime(1_795_000_000),
        campaign_sequence: 1,
    }
    .to_cbor()
}

fn identity(id: &str) -> DeviceIdentity<'_> {
    DeviceIdentity {
        device_id: id,
        product: "Smart Controller",
        family: "STM32H5",
        hardware_revision: "rev-c",
        current_version: Version::new(2, 3, 1),
    }
}

/// The delivery of entry `index` against the checkpoint of `size`, from the vault's proof.
fn delivery(vault: &Vault, release: &[u8], index: u64, size: u64) -> Vec<u8> {
    let p = vault
        .prove_inclusion(index, size)
        .expect("the vault proves its entries");
    let manifest = vault.entry(index).expect("the vault serves its entries");
    Delivery {
        checkpoint: p.checkpoint.as_bytes(),
        release,
        manifest: &manifest,
        leaf_index: LeafIndex(index),
        proof: ProofHashes::Slice(&p.proof),
    }
    .to_cbor()
}

#[test]
fn every_device_boots_its_own_delivery_from_the_vault() {
    let f = Fixture::new();
    let release = f.build(&f.spec()).release;
    let anchors = f.anchors();
    let log_key = LogKey::new(ORIGIN, ORIGIN, public_key(&f.log_key), &Software).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    vault
        .append(&[ReleaseEntry {
            cose_sign1: &release,
        }
        .to_cbor()])
        .unwrap();
    let manifests: Vec<Vec<u8>> = (1..=DEVICES).map(|i| manifest(i, &release)).collect();
    assert_eq!(vault.append(&manifests).unwrap(), 1..DEVICES + 1);
    vault.sign_checkpoint(&log_key, &f.log_key).unwrap();
    let size = vault.size();

    for i in 1..=DEVICES {
        let d = delivery(&vault, &release, i, size);
        let id = device_id(i);
        let verdict = verify_delivery(
            &d,
            &anchors,
            &identity(&id),
            &StoredState::default(),
            &mut MemoryImage(&f.image),
            &Software,
        )
        .unwrap_or_else(|e| panic!("device {id}: {e}"));
        assert_eq!(verdict.checkpoint_size, TreeSize(size));
        // Another device refuses it.
        let other = device_id(i % DEVICES + 1);
        let err = verify_delivery(
            &d,
            &anchors,
            &identity(&other),
            &StoredState::default(),
            &mut MemoryImage(&f.image),
            &Software,
        )
        .unwrap_err();
        assert_eq!(err, Error::WrongDevice);
    }

    // The log grows; a delivery against the old checkpoint still boots on a device that has not
    // seen the newer one, and a device that has is refused it (freshness), but accepts the new one.
    vault
        .append(
            &(DEVICES + 1..DEVICES + 1000)
                .map(|i| manifest(i, &release))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    vault.sign_checkpoint(&log_key, &f.log_key).unwrap();
    let newer = vault.size();
    let id = device_id(7);
    let old = delivery(&vault, &release, 7, size);
    let new = delivery(&vault, &release, 7, newer);
    let state = StoredState::default();
    let verdict = verify_delivery(
        &new,
        &anchors,
        &identity(&id),
        &state,
        &mut MemoryImage(&f.image),
        &Software,
    )
    .unwrap();
    let seen = state.after(&verdict);
    assert!(
        verify_delivery(
            &old,
            &anchors,
            &identity(&id),
            &state,
            &mut MemoryImage(&f.image),
            &Software
        )
        .is_ok()
    );
    let err = verify_delivery(
        &old,
        &anchors,
        &identity(&id),
        &seen,
        &mut MemoryImage(&f.image),
        &Software,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::CheckpointStale {
            stored: TreeSize(newer),
            received: TreeSize(size)
        }
    );
}
