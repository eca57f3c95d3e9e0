//! `add-checkpoint` (C2SP tlog-witness "add-checkpoint"), the checks in the spec's order:
//!
//! 1. the body parses (400);
//! 2. the origin is a log this witness follows (404);
//! 3. the checkpoint carries a valid signature by that log's pinned key (403);
//! 4. under one lock, so that check and update are atomic (the spec's rollback race):
//!    the old size is the size of the latest checkpoint cosigned for that log, or 0 (409 with that
//!    size); for equal sizes the root hashes are equal (409, evidence kept: a fork); otherwise the
//!    consistency proof from the old checkpoint verifies (422, evidence kept);
//! 5. the checkpoint is stored durably, then cosigned (200 with the cosignature line).

use std::sync::Mutex;

use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::error::ProofError;
use cairn_verifier::merkle::verify_consistency_with;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::tlog_witness::{AddCheckpoint, RequestError};

use crate::key::WitnessSecret;
use crate::store::{Evidence, Store, StoreError};

/// A log this witness follows: its origin and its checkpoint key (the name on its signature line is
/// the origin, as cairn's logs sign).
#[derive(Debug, Clone)]
pub struct TrustedLog {
    /// The origin line.
    pub origin: String,
    /// The key name on its signature lines.
    pub name: String,
    /// The ECDSA P-256 public key.
    pub public: PublicKey,
}

/// Why a checkpoint was not cosigned; each maps to one HTTP status ([`AddError::status`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The body is not an `add-checkpoint` request (400).
    #[error("bad request: {0}")]
    BadRequest(#[from] RequestError),
    /// The checkpoint is for a log this witness does not follow (404).
    #[error("unknown log {0:?}")]
    UnknownLog(String),
    /// No signature on the checkpoint verifies with the log's pinned key (403).
    #[error("the checkpoint is not signed by the key of log {0:?}")]
    NotSigned(String),
    /// The old size is not the size of the latest checkpoint this witness cosigned (409).
    #[error("old size {old} is not the witness's size {size}")]
    Conflict {
        /// The request's old size.
        old: u64,
        /// The size of the latest cosigned checkpoint (the 409 body).
        size: u64,
    },
    /// A checkpoint of the size the witness holds, with another root hash: a fork (409).
    #[error("checkpoint of size {size} with another root than the cosigned one: evidence in {}", evidence.dir.display())]
    Fork {
        /// The size both have.
        size: u64,
        /// Where the evidence is.
        evidence: Evidence,
    },
    /// The consistency proof from the witness's checkpoint does not verify (422).
    #[error("consistency proof from size {old} does not verify ({cause}): evidence in {}", evidence.dir.display())]
    BadProof {
        /// The witness's size.
        old: u64,
        /// Why the proof failed.
        cause: ProofError,
        /// Where the evidence is.
        evidence: Evidence,
    },
    /// The state could not be read or written (500); nothing was cosigned.
    #[error("witness storage: {0}")]
    Storage(#[from] StoreError),
}

impl AddError {
    /// The HTTP status C2SP tlog-witness assigns.
    pub fn status(&self) -> u16 {
        match self {
            AddError::BadRequest(_) => 400,
            AddError::NotSigned(_) => 403,
            AddError::UnknownLog(_) => 404,
            AddError::Conflict { .. } | AddError::Fork { .. } => 409,
            AddError::BadProof { .. } => 422,
            AddError::Storage(_) => 500,
        }
    }
}

/// What a cosigned checkpoint came back as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The response body: the cosignature line(s).
    pub lines: String,
    /// The submitted checkpoint with the cosignature appended.
    pub note: String,
}

/// A witness: its key, the logs it follows, its state.
#[derive(Debug)]
pub struct Witness {
    secret: WitnessSecret,
    logs: Vec<TrustedLog>,
    store: Store,
    lock: Mutex<()>,
}

impl Witness {
    /// A witness signing with `secret`, following `logs`, keeping its state in `store`.
    pub fn new(secret: WitnessSecret, logs: Vec<TrustedLog>, store: Store) -> Self {
        Self {
            secret,
            logs,
            store,
            lock: Mutex::new(()),
        }
    }

    /// The witness's key and name.
    pub fn secret(&self) -> &WitnessSecret {
        &self.secret
    }

    /// The state.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Handles one `add-checkpoint` body at `now` (POSIX seconds, the cosignature's timestamp).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<Cosigned, AddError> {
        let request = AddCheckpoint::parse(body)?;
        let checkpoint = request.checkpoint;
        let log = self
            .logs
            .iter()
            .find(|l| l.origin == checkpoint.origin)
            .ok_or_else(|| AddError::UnknownLog(checkpoint.origin.to_owned()))?;
        let key = LogKey::new(&log.origin, &log.name, log.public, &Software)
            .ok_or_else(|| AddError::UnknownLog(checkpoint.origin.to_owned()))?;
        checkpoint
            .verify(&key, &Software)
            .map_err(|_| AddError::NotSigned(log.origin.clone()))?;

        // Check and update under one lock (the spec's rollback race). A poisoned lock only means
        // another request panicked; the state on disk is what counts.
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stored = self.store.latest(&log.origin)?;
        let stored = match &stored {
            Some(note) => Some((
                note.as_str(),
                Checkpoint::parse(note.as_bytes()).map_err(|e| StoreError::Corrupt {
                    path: log.origin.clone().into(),
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        let size = stored.as_ref().map_or(0, |(_, c)| c.size.0);
        let old = request.old.0;
        if old != size {
            return Err(AddError::Conflict { old, size });
        }
        if let Some((stored_note, stored_cp)) = &stored {
            let evidence = |reason: &str| {
                self.store.keep_evidence(
                    &log.origin,
                    stored_note,
                    request.checkpoint_bytes,
                    body,
                    reason,
                    (size, checkpoint.size.0),
                )
            };
            if checkpoint.size.0 == size {
                if stored_cp.root != checkpoint.root {
                    let evidence = evidence("fork: same size, another root hash")?;
                    return Err(AddError::Fork { size, evidence });
                }
            } else if let Err(cause) = verify_consistency_with(
                &Software,
                size,
                checkpoint.size.0,
                request.proof(),
                &stored_cp.root,
                &checkpoint.root,
            ) {
                let evidence = evidence(&format!(
                    "consistency proof from size {size} to {} does not verify: {cause}",
                    checkpoint.size.0
                ))?;
                return Err(AddError::BadProof {
                    old: size,
                    cause,
                    evidence,
                });
            }
        }
        let note = core::str::from_utf8(request.checkpoint_bytes)
            .map_err(|_| AddError::NotSigned(log.origin.clone()))?;
        // Durable before any cosignature leaves the witness.
        self.store.put(&log.origin, note)?;
        let lines = self.secret.cosign(checkpoint.text, now);
        Ok(Cosigned {
            note: format!("{note}{lines}"),
            lines,
        })
    }
}

/// POSIX seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
