//! Cross-check: the `sigstore` crate (0.15, the Rust client of Sigstore's Rekor log) accepts the
//! vault's checkpoints, inclusion proofs and consistency proofs, and rejects tampered ones.
//!
//! sigstore shares no code with cairn: it parses the signed note itself, re-serializes the checkpoint
//! text, verifies the ECDSA P-256 signature with OpenSSL (its `native-tls` backend), hashes the leaf
//! itself and runs its own RFC 6962 verifiers. What is used:
//!
//! - `sigstore::crypto::CosignVerificationKey::try_from_der` on the log key's DER SubjectPublicKeyInfo
//!   (it identifies the key as ECDSA P-256 from the SPKI's OIDs);
//! - `sigstore::rekor::models::checkpoint::SignedCheckpoint`, deserialized from the note string
//!   through its serde `Deserialize` (its parser is crate-private), then its public fields
//!   (`note.origin`, `note.size`, `note.hash`, `signatures[..].{name, key_fingerprint}`) and
//!   `SignedCheckpoint::verify_signature`;
//! - `sigstore::rekor::models::InclusionProof::new(..).verify(entry, &key)`: the checkpoint's
//!   signature, that the checkpoint's size and root are the proof's, then
//!   `SHA-256(0x00 || entry)` and the RFC 6962 inclusion check;
//! - `sigstore::rekor::models::ConsistencyProof::new(..).verify(old_size, old_root, new_size,
//!   Some(new_root))` with both roots taken from sigstore's own parse of the two checkpoints.
//!
//! sigstore's checkpoint parser accepts exactly one signature line (it splits the signatures on
//! blank lines); cairn's logs sign with one. It does not look at the key id when verifying (it tries
//! each signature with the key), so the key id is compared here with `SHA-256(SPKI)[:4]` computed
//! with RustCrypto's `sha2`.

#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "test indices are small"
)]

mod common;

use std::sync::OnceLock;

use cairn_vault::Vault;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::{LogKey, write};
use cairn_verifier::test_support::{public_key, test_key};
use cairn_verifier::types::TreeSize;
use common::{ORIGIN, log_key, manifest, release_entry};
use sha2_010::Digest as _;
use sigstore::crypto::CosignVerificationKey;
use sigstore::errors::SigstoreError;
use sigstore::rekor::models::checkpoint::SignedCheckpoint;
use sigstore::rekor::models::{ConsistencyProof, InclusionProof};

/// The vault's sizes at each checkpoint: a single entry; exactly one full level-0 tile (256) and
/// one past it; 4,000 (15 full level-0 tiles and a partial level-1 tile); exactly one full level-1
/// tile (65,536) and one past it; and 70,001, with partial tiles at levels 0, 1 and 2.
const SIZES: [u64; 7] = [1, 256, 257, 4_000, 65_536, 65_537, 70_001];

struct Log {
    _dir: tempfile::TempDir,
    vault: Vault,
    entries: Vec<Vec<u8>>,
    key: CosignVerificationKey,
}

fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (sk, key) = log_key();
        let vault = Vault::create(dir.path(), ORIGIN).expect("create");
        let mut entries = vec![release_entry()];
        vault.append(&entries).expect("append");
        vault.sign_checkpoint(&key, &sk).expect("sign a checkpoint");
        for (batch, &size) in SIZES.iter().enumerate().skip(1) {
            let start = entries.len() as u64;
            let new: Vec<Vec<u8>> = (start..size)
                .map(|i| manifest(i, "campaign-x", 1_000 + batch as u64))
                .collect();
            vault.append(&new).expect("append");
            entries.extend(new);
            vault.sign_checkpoint(&key, &sk).expect("sign a checkpoint");
        }
        assert_eq!(vault.checkpoint_sizes().expect("checkpoint sizes"), SIZES);
        let spki = key.public.spki_der();
        let key = CosignVerificationKey::try_from_der(&spki).expect("sigstore reads the SPKI");
        assert!(
            matches!(key, CosignVerificationKey::ECDSA_P256_SHA256_ASN1(_)),
            "sigstore reads the log key as {key:?}"
        );
        Log {
            _dir: dir,
            vault,
            entries,
            key,
        }
    })
}

/// A signed note as sigstore parses it (its `decode` is crate-private; serde is the public door).
fn sigstore_checkpoint(note: &str) -> Result<SignedCheckpoint, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(note.to_owned()))
}

/// The indices checked in a tree of `size`: the ends, the tile boundaries, and pseudo-random ones.
fn indices(size: u64, random: usize) -> Vec<u64> {
    let mut out: Vec<u64> = [0, 1, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537]
        .into_iter()
        .chain([size / 2, size.saturating_sub(2), size - 1])
        .filter(|&i| i < size)
        .collect();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ size;
    for _ in 0..random {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x % size);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// sigstore's inclusion proof for the vault's proof of `index` in the checkpoint of `size`.
fn sigstore_inclusion(log: &Log, index: u64, size: u64) -> InclusionProof {
    let p = log
        .vault
        .prove_inclusion(index, size)
        .expect("the vault proves inclusion");
    let root = log
        .vault
        .at(size)
        .expect("a tree")
        .root()
        .expect("its root");
    InclusionProof::new(
        index as i64,
        root,
        size,
        p.proof.clone(),
        Some(sigstore_checkpoint(&p.checkpoint).expect("sigstore parses the checkpoint")),
    )
}

#[test]
fn sigstore_parses_and_verifies_every_checkpoint() {
    let log = log();
    let (_, key) = log_key();
    let key_id: [u8; 4] = sha2_010::Sha256::digest(key.public.spki_der())[..4]
        .try_into()
        .unwrap();
    for size in SIZES {
        let note = log.vault.checkpoint(size).unwrap().unwrap();
        let cp = sigstore_checkpoint(&note).unwrap();
        assert_eq!(cp.note.origin, ORIGIN);
        assert_eq!(cp.note.size, size);
        assert_eq!(cp.note.hash, log.vault.at(size).unwrap().root().unwrap());
        // The one extension line: the kind counts (formats.md §2.1), none of them in this log.
        assert_eq!(cp.note.other_content.len(), 1);
        assert!(note.contains("\ncairn-kinds 5:0:- 11:0:-\n"), "{note}");
        assert_eq!(cp.signatures.len(), 1);
        assert_eq!(cp.signatures[0].name, ORIGIN);
        assert_eq!(cp.signatures[0].key_fingerprint, key_id);
        cp.verify_signature(&log.key).unwrap();
    }
}

#[test]
fn sigstore_accepts_inclusion_proofs() {
    let log = log();
    let mut checked = 0;
    for size in SIZES {
        for index in indices(size, 40) {
            let proof = sigstore_inclusion(log, index, size);
            let entry = &log.entries[index as usize];
            if let Err(e) = proof.verify(entry, &log.key) {
                panic!("sigstore rejects the proof of {index} in {size}: {e:?}");
            }
            checked += 1;
        }
    }
    // 7 checkpoints, up to 13 fixed indices and 40 pseudo-random ones each
    assert!(checked >= 250, "{checked}");
    eprintln!("sigstore accepted {checked} inclusion proofs");
}

#[test]
fn sigstore_accepts_consistency_proofs_between_every_pair_of_checkpoints() {
    let log = log();
    let mut checked = 0;
    for (i, &old) in SIZES.iter().enumerate() {
        for &new in &SIZES[i..] {
            let p = log.vault.prove_consistency(old, new).unwrap();
            let (old_cp, new_cp) = (
                sigstore_checkpoint(&p.old).unwrap(),
                sigstore_checkpoint(&p.new).unwrap(),
            );
            old_cp.verify_signature(&log.key).unwrap();
            new_cp.verify_signature(&log.key).unwrap();
            assert_eq!((old_cp.note.size, new_cp.note.size), (old, new));
            let proof = ConsistencyProof::new(new_cp.note.hash, p.proof.clone());
            if let Err(e) = proof.verify(old, &old_cp.note.hash, new, Some(&new_cp.note.hash)) {
                panic!("sigstore rejects the consistency proof {old} -> {new}: {e:?}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, SIZES.len() * (SIZES.len() + 1) / 2);
}

#[test]
fn sigstore_rejects_a_flipped_proof_hash_or_root() {
    let log = log();
    let mut rejected = 0;
    for (index, size) in [(0, 257), (256, 4_000), (65_535, 70_001), (69_999, 70_001)] {
        let good = sigstore_inclusion(log, index, size);
        good.verify(&log.entries[index as usize], &log.key).unwrap();
        for at in 0..good.hashes.len() {
            for bit in [0, 7 * 8 + 3, 31 * 8 + 7] {
                let mut bad = good.clone();
                bad.hashes[at][bit / 8] ^= 1 << (bit % 8);
                let err = bad
                    .verify(&log.entries[index as usize], &log.key)
                    .unwrap_err();
                assert!(
                    matches!(err, SigstoreError::InclusionProofError(_)),
                    "{index}/{size} hash {at}: {err:?}"
                );
                rejected += 1;
            }
        }
        // a root that is not the checkpoint's
        let mut bad = good.clone();
        bad.root_hash[5] ^= 0x10;
        let err = bad
            .verify(&log.entries[index as usize], &log.key)
            .unwrap_err();
        assert!(
            matches!(err, SigstoreError::ConsistencyProofError(_)),
            "{err:?}"
        );
        // a proof one hash short or long
        let mut bad = good.clone();
        bad.hashes.pop();
        assert!(bad.verify(&log.entries[index as usize], &log.key).is_err());
        let mut bad = good.clone();
        bad.hashes.push([0; 32]);
        assert!(bad.verify(&log.entries[index as usize], &log.key).is_err());
        // another entry's bytes
        let other = &log.entries[(index as usize + 1) % size as usize];
        assert!(good.verify(other, &log.key).is_err());
        rejected += 4;
    }
    // consistency proofs with a flipped hash, or checked against the wrong sizes
    for (old, new) in [(257, 4_000), (4_000, 70_001), (65_537, 70_001)] {
        let p = log.vault.prove_consistency(old, new).unwrap();
        let old_root = log.vault.at(old).unwrap().root().unwrap();
        let new_root = log.vault.at(new).unwrap().root().unwrap();
        for at in 0..p.proof.len() {
            let mut hashes = p.proof.clone();
            hashes[at][17] ^= 0x01;
            let bad = ConsistencyProof::new(new_root, hashes);
            assert!(
                bad.verify(old, &old_root, new, Some(&new_root)).is_err(),
                "{old} -> {new} hash {at}"
            );
            rejected += 1;
        }
        let good = ConsistencyProof::new(new_root, p.proof.clone());
        assert!(
            good.verify(old + 1, &old_root, new, Some(&new_root))
                .is_err()
        );
        // (A new size of the same proof shape, such as `new + 1` here, verifies just as well: in
        // RFC 9162 the roots bind a proof, the sizes only fix its shape; the signed checkpoint binds
        // the size to the root.)
        assert!(
            good.verify(old, &old_root, 2 * new, Some(&new_root))
                .is_err()
        );
        assert!(good.verify(old, &new_root, new, Some(&old_root)).is_err());
        rejected += 3;
    }
    eprintln!("sigstore rejected {rejected} tampered proofs");
}

#[test]
fn sigstore_rejects_a_wrong_index() {
    let log = log();
    for (index, size) in [(0, 257), (255, 257), (256, 4_000), (65_536, 70_001)] {
        let good = sigstore_inclusion(log, index, size);
        let entry = &log.entries[index as usize];
        good.verify(entry, &log.key).unwrap();
        for wrong in [index as i64 - 1, index as i64 + 1, size as i64, -1] {
            let mut bad = good.clone();
            bad.log_index = wrong;
            assert!(
                bad.verify(entry, &log.key).is_err(),
                "{index}/{size} accepted as index {wrong}"
            );
        }
    }
}

#[test]
fn sigstore_rejects_a_checkpoint_of_another_key_or_with_altered_text() {
    let log = log();
    let (index, size) = (300, 4_000);
    let good = sigstore_inclusion(log, index, size);
    let entry = &log.entries[index as usize];
    good.verify(entry, &log.key).unwrap();

    // The same checkpoint text, signed by another P-256 key under the same name.
    let note = log.vault.checkpoint(size).unwrap().unwrap();
    let text = &note[..=note.find("\n\n").unwrap()];
    let other = test_key(8);
    let other_key = LogKey::new(ORIGIN, ORIGIN, public_key(&other), &Software).unwrap();
    let forged = write::sign(text, &other_key, &other).unwrap();
    let mut bad = good.clone();
    bad.checkpoint = Some(sigstore_checkpoint(&forged).unwrap());
    let err = bad.verify(entry, &log.key).unwrap_err();
    assert!(
        matches!(err, SigstoreError::CheckpointSignatureVerificationError),
        "{err:?}"
    );
    // ...which the other key does accept, so the note itself is well-formed.
    let other_spki = other_key.public.spki_der();
    let other_cosign = CosignVerificationKey::try_from_der(&other_spki).unwrap();
    bad.verify(entry, &other_cosign).unwrap();

    // Our signature over a text whose size or root was changed.
    let body = write::body(ORIGIN, TreeSize(size + 1), &good.root_hash, &[]);
    let sig_line = &note[note.find("\n\n").unwrap() + 1..];
    let altered = format!("{body}{sig_line}");
    let cp = sigstore_checkpoint(&altered).unwrap();
    assert!(matches!(
        cp.verify_signature(&log.key).unwrap_err(),
        SigstoreError::CheckpointSignatureVerificationError
    ));
    let mut root = good.root_hash;
    root[0] ^= 1;
    let altered = format!(
        "{}{sig_line}",
        write::body(ORIGIN, TreeSize(size), &root, &[])
    );
    assert!(
        sigstore_checkpoint(&altered)
            .unwrap()
            .verify_signature(&log.key)
            .is_err()
    );
    // A flipped byte in the DER signature.
    let mut cp = sigstore_checkpoint(&note).unwrap();
    cp.signatures[0].raw[10] ^= 0x40;
    assert!(cp.verify_signature(&log.key).is_err());

    // The checkpoint of another size than the proof's.
    let mut bad = good.clone();
    bad.checkpoint =
        Some(sigstore_checkpoint(&log.vault.checkpoint(257).unwrap().unwrap()).unwrap());
    assert!(matches!(
        bad.verify(entry, &log.key).unwrap_err(),
        SigstoreError::ConsistencyProofError(_)
    ));
    // No checkpoint at all.
    let mut bad = good;
    bad.checkpoint = None;
    assert!(bad.verify(entry, &log.key).is_err());
}
