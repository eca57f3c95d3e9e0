//! From the signer's log, through two independent witnesses, to a device with a 2-of-3 witness
//! policy (docs/witness.md): the signer writes an `add-checkpoint` request per witness
//! (`cairn_signer::witness`), two `cairn-witness` witnesses check and cosign them, the cosigned
//! checkpoints come back and are attached to the stored checkpoint, a transfer bundle carries it
//! to a mirror (the relay's), and the device accepts the mirror's delivery. With one cosignature
//! the status names the missing witnesses and the device refuses (no quorum). When the log grows,
//! each witness is sent a consistency proof from the last size it cosigned.

#![expect(clippy::unwrap_used, reason = "a panic is a failed test")]

use std::fmt::Write as _;
use std::path::Path;

use cairn_signer::witness::{self, Policy};
use cairn_vault::Vault;
use cairn_verifier::boot::{DeviceIdentity, MemoryImage, StoredState, verify_delivery};
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, ORIGIN, WITNESSES, public_key};
use cairn_verifier::types::{Id, UnixTime, Version};
use cairn_verifier::{Error, delivery::Delivery};
use cairn_witness::{Store, TrustedLog, Witness, WitnessSecret};

const T: u64 = 1_795_000_500;

fn manifest(i: u64, release: &[u8]) -> Vec<u8> {
    let id = format!("dev-{i:06}");
    Manifest {
        device_id: Id::new(&id).unwrap(),
        release_id: Id::new("controller-fw-2.4.1").unwrap(),
        release_digest: Software.sha256_of(&[release]),
        hardware_revision: Id::new("rev-c").unwrap(),
        min_version: Version::new(2, 0, 0),
        max_version: Version::new(2, 4, 0),
        campaign: Id::new("campaign-2026-11").unwrap(),
        purpose: Purpose::Update,
        decided_at: UnixTime(1_795_000_000),
        campaign_sequence: 1,
    }
    .to_cbor()
}

/// Test witness `n` (the keys `test_support::witness` pins), on its own state directory.
fn witness(n: u8, dir: &Path) -> Witness {
    let mut seed = [0x57u8; 32];
    seed[31] = n;
    let secret = WitnessSecret::from_seed(&seed, WITNESSES[usize::from(n)]).unwrap();
    let log = TrustedLog {
        origin: ORIGIN.into(),
        name: ORIGIN.into(),
        public: public_key(&Fixture::new().log_key),
    };
    Witness::new(
        secret,
        vec![log],
        Store::open(&dir.join(n.to_string())).unwrap(),
    )
}

fn policy(witnesses: &[Witness]) -> Policy {
    let mut toml = String::from("threshold = 2\n");
    for w in witnesses {
        let _ = write!(toml, "[[witness]]\nvkey = \"{}\"\n", w.secret().vkey());
    }
    Policy::from_toml(&toml, Path::new("witnesses.toml")).unwrap()
}

/// The request for witness `n`, sent to it; its response attached to the signer's log.
fn cosign(signer: &Vault, policy: &Policy, witnesses: &[Witness], n: usize) -> witness::Attached {
    let request = witness::requests(signer, policy, None)
        .unwrap()
        .into_iter()
        .find(|r| r.witness == WITNESSES[n])
        .unwrap();
    let cosigned = witnesses[n]
        .add_checkpoint(request.body.as_bytes(), T)
        .unwrap();
    witness::attach(signer, policy, &cosigned.note, WITNESSES[n]).unwrap()
}

/// Device 1's delivery from `mirror`, checked with the fixture's 2-of-3 witness policy.
fn boot(mirror: &Vault, release: &[u8], image: &[u8]) -> Result<u64, Error> {
    let f = Fixture::new();
    let (_, envelope) = mirror.deliveries(&[1]).unwrap().remove(0);
    let device = DeviceIdentity {
        device_id: "dev-000001",
        product: "Smart Controller",
        family: "STM32H5",
        hardware_revision: "rev-c",
        current_version: Version::new(2, 3, 1),
    };
    assert_eq!(Delivery::decode(&envelope).unwrap().release, release);
    verify_delivery(
        &envelope,
        &f.witnessed_anchors(),
        &device,
        &StoredState::default(),
        &mut MemoryImage(image),
        &Software,
    )
    .map(|v| v.checkpoint_size.0)
}

#[test]
fn two_witnesses_cosign_the_signers_checkpoint_and_the_device_accepts_it() {
    let f = Fixture::new();
    let release = f.build(&f.spec()).release;
    let log_key = LogKey::new(ORIGIN, ORIGIN, public_key(&f.log_key), &Software).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = Vault::create(dir.path().join("signer"), ORIGIN).unwrap();
    signer
        .append(&[ReleaseEntry {
            cose_sign1: &release,
        }
        .to_cbor()])
        .unwrap();
    signer
        .append(&(1..=10).map(|i| manifest(i, &release)).collect::<Vec<_>>())
        .unwrap();
    signer.sign_checkpoint(&log_key, &f.log_key).unwrap();
    let witnesses: Vec<Witness> = (0..3).map(|n| witness(n, dir.path())).collect();
    let policy = policy(&witnesses);
    let mirror = Vault::create(dir.path().join("relay"), ORIGIN).unwrap();
    // From where the mirror stands; the whole log again when it holds everything (a checkpoint
    // it has, carried again with more cosignatures).
    let carry = || {
        let latest = *signer.checkpoint_sizes().unwrap().last().unwrap();
        let from = if mirror.size() < latest {
            mirror.size()
        } else {
            0
        };
        mirror
            .import_bundle(&signer.export_bundle(from).unwrap(), &log_key)
            .unwrap();
    };

    // One witness: the status names the two missing, the device refuses.
    let one = cosign(&signer, &policy, &witnesses, 0);
    assert_eq!(one.size, 11);
    assert!(!one.report.met());
    assert_eq!(one.report.missing, [WITNESSES[1], WITNESSES[2]]);
    carry();
    assert_eq!(
        boot(&mirror, &release, &f.image),
        Err(Error::NoQuorum {
            have: 1,
            need: 2,
            unknown: 0
        })
    );
    // The second: a quorum; the same bundle carried again brings the cosignature to the mirror.
    let two = cosign(&signer, &policy, &witnesses, 2);
    assert!(two.report.met(), "{}", two.report.summary());
    assert_eq!(two.report.missing, [WITNESSES[1]]);
    carry();
    assert_eq!(boot(&mirror, &release, &f.image), Ok(11));

    // The log grows: each witness is asked from the size it last cosigned, with a proof.
    signer
        .append(&(11..=20).map(|i| manifest(i, &release)).collect::<Vec<_>>())
        .unwrap();
    signer.sign_checkpoint(&log_key, &f.log_key).unwrap();
    let olds: Vec<u64> = witness::requests(&signer, &policy, None)
        .unwrap()
        .iter()
        .map(|r| r.old)
        .collect();
    assert_eq!(olds, [11, 0, 11]);
    cosign(&signer, &policy, &witnesses, 0);
    carry();
    assert!(matches!(
        boot(&mirror, &release, &f.image),
        Err(Error::NoQuorum { have: 1, .. })
    ));
    // The witness that was down catches up from 0 (no proof), and gives the quorum.
    let caught_up = cosign(&signer, &policy, &witnesses, 1);
    assert!(caught_up.report.met());
    carry();
    assert_eq!(boot(&mirror, &release, &f.image), Ok(21));
    mirror.fsck(&mut |_, _| {}).unwrap();
}

#[test]
fn a_cosignature_that_does_not_verify_is_not_attached() {
    let f = Fixture::new();
    let log_key = LogKey::new(ORIGIN, ORIGIN, public_key(&f.log_key), &Software).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = Vault::create(dir.path().join("signer"), ORIGIN).unwrap();
    signer.append(&[manifest(1, b"release")]).unwrap();
    let plain = signer.sign_checkpoint(&log_key, &f.log_key).unwrap();
    let witnesses: Vec<Witness> = (0..3).map(|n| witness(n, dir.path())).collect();
    let policy = policy(&witnesses);
    let request = witness::requests(&signer, &policy, None).unwrap().remove(0);
    let note = witnesses[0]
        .add_checkpoint(request.body.as_bytes(), T)
        .unwrap()
        .note;
    // A base64 character inside the Ed25519 signature changed.
    let mut forged = note.into_bytes();
    let at = forged.len() - 30;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(matches!(
        witness::attach(&signer, &policy, &forged, "forged"),
        Err(cairn_signer::Error::Cosignature { .. })
    ));
    assert_eq!(signer.latest_checkpoint().unwrap().unwrap(), plain);
}
