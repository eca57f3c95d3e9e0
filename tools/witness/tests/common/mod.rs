//! Shared by the witness's tests: a log's history (leaves, signed checkpoints, consistency proofs)
//! and a witness on a temporary state directory.

#![allow(
    dead_code,
    reason = "each test file uses its own subset of these helpers"
)]

use std::path::Path;

use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::{self, LogKey};
use cairn_verifier::test_support::{Fixture, ORIGIN, consistency_proof, mth, public_key, test_key};
use cairn_verifier::tlog_witness;
use cairn_verifier::types::{Hash, TreeSize};
use cairn_witness::{Store, TrustedLog, Witness, WitnessSecret};

/// The test witness's name.
pub(crate) const NAME: &str = "witness.test/notified-body";
/// Its seed (a test key, never used outside tests).
pub(crate) const SEED: [u8; 32] = [7; 32];

/// One history of the test log: the entries `"<label> <i>"`.
pub(crate) struct History {
    pub(crate) leaves: Vec<Hash>,
}

impl History {
    /// `n` entries labelled `label`; two labels give two histories that differ from entry 0, or
    /// from entry `shared` with [`History::fork`].
    pub(crate) fn new(label: &str, n: usize) -> Self {
        Self {
            leaves: (0..n)
                .map(|i| leaf_hash(&Software, format!("{label} {i}").as_bytes()))
                .collect(),
        }
    }

    /// A history with the first `shared` entries of `self`, then entries of its own.
    pub(crate) fn fork(&self, shared: usize, label: &str) -> Self {
        let mut leaves = self.leaves[..shared].to_vec();
        leaves.extend(
            (shared..self.leaves.len())
                .map(|i| leaf_hash(&Software, format!("{label} {i}").as_bytes())),
        );
        Self { leaves }
    }

    pub(crate) fn root(&self, size: usize) -> Hash {
        mth(&self.leaves[..size])
    }

    /// The checkpoint of the first `size` entries, signed by the log key.
    pub(crate) fn checkpoint(&self, size: usize) -> String {
        signed(size, &self.root(size))
    }

    /// The consistency proof from `from` to `to` entries.
    pub(crate) fn proof(&self, from: usize, to: usize) -> Vec<Hash> {
        if from == 0 || from == to {
            return Vec::new();
        }
        consistency_proof(&self.leaves[..to], from)
    }

    /// The add-checkpoint body taking a witness at `from` to `to`.
    pub(crate) fn request(&self, from: usize, to: usize) -> String {
        tlog_witness::write::add_checkpoint(
            from as u64,
            &self.proof(from, to),
            &self.checkpoint(to),
        )
    }
}

/// A checkpoint of `size` and `root` signed by the test log key.
pub(crate) fn signed(size: usize, root: &Hash) -> String {
    let key = test_key(Fixture::LOG_KEY);
    let pinned = log_key();
    let body = note::write::body(ORIGIN, TreeSize(size as u64), root, &[]);
    note::write::sign(&body, &pinned, &key).unwrap()
}

pub(crate) fn log_key() -> LogKey<'static> {
    LogKey::new(
        ORIGIN,
        ORIGIN,
        public_key(&test_key(Fixture::LOG_KEY)),
        &Software,
    )
    .unwrap()
}

pub(crate) fn trusted_log() -> TrustedLog {
    TrustedLog {
        origin: ORIGIN.to_owned(),
        name: ORIGIN.to_owned(),
        public: public_key(&test_key(Fixture::LOG_KEY)),
    }
}

/// The test witness on the state directory `dir`.
pub(crate) fn witness(dir: &Path) -> Witness {
    Witness::new(
        WitnessSecret::from_seed(&SEED, NAME).unwrap(),
        vec![trusted_log()],
        Store::open(dir).unwrap(),
    )
}

/// The log key as a PEM file (for the binary's --log ORIGIN=PEM).
pub(crate) fn log_key_pem(dir: &Path) -> std::path::PathBuf {
    use p256::pkcs8::EncodePublicKey;
    let path = dir.join("log.pem");
    let pem = test_key(Fixture::LOG_KEY)
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    std::fs::write(&path, pem).unwrap();
    path
}
