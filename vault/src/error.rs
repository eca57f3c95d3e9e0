//! The vault's error type. Variants say who is at fault: the caller's input (`BadEntry`,
//! `BeyondTree`, ...), the storage underneath (`Storage`, `Io`), or the stored log itself
//! (`Corrupt`: the vault stops rather than serve anything derived from it).

use std::path::PathBuf;

use cairn_verifier::types::UnixTime;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RocksDB reported an error (I/O, or a checksum mismatch in its own files).
    #[error("storage: {0}")]
    Storage(#[from] rocksdb::Error),
    /// An earlier write through this handle failed, so it refuses every write until the log is
    /// reopened (a failed `fsync` may have dropped data the kernel had accepted: reopening recovers
    /// from what is durable). `cause` is the first failure.
    #[error(
        "{path}: an earlier write failed ({cause}); the log refuses writes until it is reopened"
    )]
    Poisoned {
        /// The log's directory.
        path: PathBuf,
        /// The failed write's error.
        cause: String,
    },
    /// A file-system operation outside RocksDB failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The stored log contradicts itself; `what` names the item and the evidence.
    #[error("the log is corrupt: {what}")]
    Corrupt {
        /// What is inconsistent, with the values found.
        what: String,
    },
    /// `create` on a directory that already holds a log.
    #[error("{0} already holds a log")]
    AlreadyExists(PathBuf),
    /// `create` on a directory that holds other files.
    #[error("{0} is not empty; a log is created in a new or empty directory")]
    NotEmpty(PathBuf),
    /// `open` on a directory that holds no cairn log.
    #[error("{0} holds no cairn log")]
    NotALog(PathBuf),
    /// The log's origin is not what the caller expected.
    #[error("the log's origin is {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// What the caller asked for.
        expected: String,
        /// What the log says.
        found: String,
    },
    /// An entry of a batch is larger than an entry bundle can carry (C2SP tlog-tiles: 16-bit
    /// lengths). Nothing of the batch was stored.
    #[error("entry {position} of the batch is {len} bytes; the limit is {max}")]
    EntryTooLarge {
        /// Position in the batch (0-based).
        position: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An entry of a batch is not a statement of a known kind. Nothing of the batch was stored.
    #[error("entry {position} of the batch is not a valid statement: {cause}")]
    BadEntry {
        /// Position in the batch (0-based).
        position: usize,
        /// Why it was refused.
        cause: cairn_verifier::Error,
    },
    /// A release entry whose release id is already in the log (or twice in the batch). Nothing of
    /// the batch was stored.
    #[error("entry {position} of the batch: release {release} is already in the log")]
    DuplicateRelease {
        /// Position in the batch (0-based).
        position: usize,
        /// The release id.
        release: String,
    },
    /// An empty batch.
    #[error("nothing to append")]
    EmptyBatch,
    /// A leaf index at or beyond the tree size.
    #[error("no entry {index} in a tree of {size}")]
    BeyondTree {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A tree size beyond the log.
    #[error("tree size {size} is beyond the log ({log_size} entries)")]
    SizeBeyondLog {
        /// The size asked for.
        size: u64,
        /// The log's size.
        log_size: u64,
    },
    /// A consistency proof between sizes that have none (0, or the first larger than the second).
    #[error("no consistency proof from size {from} to size {to}")]
    BadSizes {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
    },
    /// No signed checkpoint of that size is stored.
    #[error("no signed checkpoint of size {size}")]
    NoCheckpoint {
        /// The size asked for.
        size: u64,
    },
    /// A witness policy file (`witnesses.toml`, [`crate::witness`]) cannot be used.
    #[error("witness policy {path}: {why}")]
    WitnessPolicy {
        /// The policy file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A checkpoint brought back from a witness is refused: not over a checkpoint this log
    /// signed, or a pinned witness's cosignature on it does not verify. Nothing was stored.
    #[error("cosigned checkpoint from {from}: {why}")]
    Cosignature {
        /// Where it came from (a file, a witness's name).
        from: String,
        /// Why it is refused.
        why: String,
    },
    /// A witness has cosigned a larger checkpoint of this log than this copy of it holds (the
    /// signer's side went ahead of a mirror): no consistency proof can be made for it.
    #[error("witness {witness} is at size {size}, beyond this log's latest checkpoint {latest}")]
    WitnessAhead {
        /// The witness.
        witness: String,
        /// The size it named.
        size: u64,
        /// This log's latest checkpoint.
        latest: u64,
    },
    /// The entry was pruned after its retention period: its leaf hash stays in the tiles, its
    /// bytes are gone.
    #[error("entry {index} was pruned after its retention period")]
    Pruned {
        /// The entry's index.
        index: u64,
    },
    /// No entry with that leaf hash.
    #[error("no entry with leaf hash {0}")]
    UnknownLeaf(String),
    /// A verified transfer bundle contradicts what this log holds (an entry differs, or its
    /// checkpoint for a size this log already signed): the two logs have forked. Nothing was
    /// written; the bundle is evidence.
    #[error("transfer bundle refused: {0}")]
    Fork(String),
    /// A transfer bundle failed verification; nothing of it was written. Says which item.
    #[error("transfer bundle refused: {0}")]
    BadBundle(String),
    /// The signer failed (an HSM error, for example). The log is unchanged.
    #[error("signing the checkpoint failed: {0}")]
    Signing(String),
    /// The signer returned a signature that does not verify with the log key. Nothing was stored.
    #[error("the signer's checkpoint signature does not verify with the log key")]
    SignatureInvalid,
    /// Deleting evidence of a release before its retention period ends.
    #[error("evidence of release {release} must be retained until {until:?} (now {now:?})")]
    RetentionActive {
        /// The release.
        release: String,
        /// End of its retention period.
        until: UnixTime,
        /// The time of the request.
        now: UnixTime,
    },
    /// A release the vault has no entry for.
    #[error("no release {0} in the log")]
    UnknownRelease(String),
    /// `fsck` found the stored log inconsistent with its own entries.
    #[error("fsck: {0}")]
    Inconsistent(Box<Inconsistency>),
    /// A checkpoint given to the vault is malformed or not from this log's key.
    #[error("checkpoint rejected: {0}")]
    Checkpoint(cairn_verifier::Error),
    /// A proof computed from storage does not verify against the signed checkpoint: the log is
    /// corrupt, and the proof is not served.
    #[error("refusing to serve a proof that does not verify against checkpoint {size}: {cause}")]
    ProofSelfCheck {
        /// The checkpoint size.
        size: u64,
        /// Why the proof failed.
        cause: cairn_verifier::error::ProofError,
    },
}

/// One inconsistency found by `fsck` or an export check, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistency {
    /// Which check failed.
    pub check: &'static str,
    /// Where: an entry index, a tile, a checkpoint size, an index run.
    pub location: String,
    /// What the recomputation says should be there.
    pub expected: String,
    /// What is stored.
    pub found: String,
}

impl std::fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {}: expected {}, found {}",
            self.check, self.location, self.expected, self.found
        )
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
