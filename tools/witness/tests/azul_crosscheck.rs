//! Cross-check with Cloudflare azul (`signed_note` 0.2, `tlog_tiles` 0.2), an implementation of
//! C2SP signed-note, tlog-checkpoint and the Go tlog proofs nobody here wrote:
//!
//! - azul parses the witness's cosigned checkpoints, finds the cosignature under the key id azul
//!   computes for the witness (`signed_note::key_id` over the 0x04 key), and verifies it through its
//!   `Note::verify` (unknown keys ignored, a known key's bad signature refused);
//! - azul's `tlog_tiles::Checkpoint` reads the same origin, size and root as cairn;
//! - consistency proofs azul computes (`prove_tree`) are accepted by the witness, and azul's
//!   `check_tree` accepts the proofs cairn computes;
//! - cairn's device check accepts cosignatures azul's `Note::add_sigs` writes.
//!
//! azul 0.2 has no cosignature/v1 type: the Ed25519 message rule (`cosignature/v1`, `time` line,
//! note text) is spelled out here from the C2SP text, once for azul's verifier and signer.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

mod common;

use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::test_support::mth;
use cairn_verifier::witness::{Quorum, WitnessPolicy, verify_quorum};
use common::{History, NAME, SEED, log_key, signed, witness};
use ed25519_dalek::{Signer as _, Verifier as _};
use signed_note::{Note, VerifierList};
use tlog_tiles::{Hash as AzulHash, HashReader};

const T: u64 = 1_795_000_500;

/// The cosignature/v1 message (C2SP tlog-cosignature "Ed25519 signed message").
fn message(text: &[u8], timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(text);
    m
}

fn azul_key_id(public: &[u8; 32]) -> u32 {
    let mut material = vec![0x04];
    material.extend_from_slice(public);
    signed_note::key_id(NAME, &material)
}

struct CosignatureVerifier(ed25519_dalek::VerifyingKey);

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        NAME
    }
    fn key_id(&self) -> u32 {
        azul_key_id(self.0.as_bytes())
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((ts, sig)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.0
            .verify(&message(msg, u64::from_be_bytes(*ts)), &sig)
            .is_ok()
    }
}

struct CosignatureSigner(ed25519_dalek::SigningKey);

impl signed_note::Signer for CosignatureSigner {
    fn name(&self) -> &str {
        NAME
    }
    fn key_id(&self) -> u32 {
        azul_key_id(self.0.verifying_key().as_bytes())
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        let mut out = T.to_be_bytes().to_vec();
        out.extend_from_slice(&self.0.sign(&message(msg, T)).to_bytes());
        Ok(out)
    }
}

fn azul_verifiers() -> VerifierList {
    let key = ed25519_dalek::SigningKey::from_bytes(&SEED).verifying_key();
    VerifierList::new(vec![Box::new(CosignatureVerifier(key))])
}

#[test]
fn azul_verifies_the_witness_cosignatures() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let a = History::new("a", 9);
    w.add_checkpoint(a.request(0, 3).as_bytes(), T).unwrap();
    let cosigned = w.add_checkpoint(a.request(3, 9).as_bytes(), T + 7).unwrap();

    let note = Note::from_bytes(cosigned.note.as_bytes()).unwrap();
    let (verified, unverified) = note.verify(&azul_verifiers()).unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].name(), NAME);
    assert_eq!(verified[0].id().to_be_bytes(), w.secret().pinned().key_id);
    assert_eq!(&verified[0].signature()[..8], &(T + 7).to_be_bytes());
    assert_eq!(
        unverified.len(),
        1,
        "the log's own ECDSA line is an unknown key to azul"
    );

    let cp = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
    let ours = Checkpoint::parse(cosigned.note.as_bytes()).unwrap();
    assert_eq!(cp.origin(), ours.origin);
    assert_eq!(cp.size(), ours.size.0);
    assert_eq!(cp.hash().0, ours.root);

    // A flipped bit in the cosignature: azul refuses it (a known key's bad signature).
    let line = cosigned.lines.trim_end();
    let (prefix, b64) = line.rsplit_once(' ').unwrap();
    let mut raw = <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64).unwrap();
    raw[20] ^= 1;
    let bad = format!(
        "{}{prefix} {}\n",
        a.checkpoint(9),
        <base64ct::Base64 as base64ct::Encoding>::encode_string(&raw)
    );
    let note = Note::from_bytes(bad.as_bytes()).unwrap();
    assert!(matches!(
        note.verify(&azul_verifiers()),
        Err(signed_note::NoteError::InvalidSignature { .. })
    ));
}

#[test]
fn cairn_verifies_cosignatures_azul_writes() {
    let a = History::new("a", 6);
    let mut note = Note::from_bytes(a.checkpoint(6).as_bytes()).unwrap();
    let signer = CosignatureSigner(ed25519_dalek::SigningKey::from_bytes(&SEED));
    note.add_sigs(&[&signer]).unwrap();
    let bytes = note.to_bytes();

    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let policy = WitnessPolicy::new([w.secret().pinned()], 1).unwrap();
    let cp = Checkpoint::parse(&bytes).unwrap();
    cp.verify(&log_key(), &Software).unwrap();
    assert_eq!(
        verify_quorum(&cp, &log_key(), &policy, &Software),
        Ok(Quorum { have: 1, need: 1 })
    );
}

/// azul's hash storage for a tree of `data` records.
struct Storage(Vec<AzulHash>);

impl HashReader for Storage {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<AzulHash>, tlog_tiles::Error> {
        Ok(indexes
            .iter()
            .map(|i| self.0[usize::try_from(*i).unwrap()])
            .collect())
    }
}

#[test]
fn consistency_proofs_agree_with_azul_both_ways() {
    let data: Vec<Vec<u8>> = (0..37).map(|i| format!("entry {i}").into_bytes()).collect();
    let mut storage = Storage(Vec::new());
    for (n, d) in data.iter().enumerate() {
        let hashes = tlog_tiles::stored_hashes(n as u64, d, &storage).unwrap();
        storage.0.extend(hashes);
    }
    let leaves: Vec<_> = data.iter().map(|d| leaf_hash(&Software, d)).collect();
    let history = History { leaves };

    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let mut at = 0u64;
    for to_n in [1usize, 2, 3, 7, 8, 13, 16, 17, 31, 32, 37] {
        let to = to_n as u64;
        let root = tlog_tiles::tree_hash(to, &storage).unwrap();
        assert_eq!(root.0, mth(&history.leaves[..to_n]), "tree hash of {to}");
        let proof: Vec<[u8; 32]> = if at == 0 {
            Vec::new()
        } else {
            tlog_tiles::prove_tree(to, at, &storage)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect()
        };
        // The witness accepts azul's proof...
        let body =
            cairn_verifier::tlog_witness::write::add_checkpoint(at, &proof, &signed(to_n, &root.0));
        w.add_checkpoint(body.as_bytes(), T).unwrap();
        // ...and azul accepts cairn's.
        if at > 0 {
            let ours: Vec<AzulHash> = history
                .proof(usize::try_from(at).unwrap(), to_n)
                .into_iter()
                .map(AzulHash)
                .collect();
            let old_root = tlog_tiles::tree_hash(at, &storage).unwrap();
            tlog_tiles::check_tree(&ours, to, root, at, old_root).unwrap();
        }
        at = to;
    }
}
