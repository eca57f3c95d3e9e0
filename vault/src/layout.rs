//! What is stored where: RocksDB column families and key encodings (docs/log.md "Storage layout").
//!
//! All integers in keys are big-endian, so RocksDB's bytewise key order is numeric order and range
//! scans need no decoding.

use cairn_verifier::types::UnixTime;

use crate::tree::TileId;

/// Column family names, in creation order.
pub(crate) const COLUMN_FAMILIES: [&str; 7] = [
    META,
    BUNDLES,
    TILES,
    LEAVES,
    EVIDENCE,
    CHECKPOINTS,
    RETENTION,
];

/// Log-wide values: format version, origin, durable size, pinned log key.
pub(crate) const META: &str = "meta";
/// Entries, as C2SP entry bundles: `bundle index (u64)` → up to 256 length-prefixed entries.
pub(crate) const BUNDLES: &str = "bundles";
/// Tile blobs: `level (u8) || index (u64)` → blob (see `tree`).
pub(crate) const TILES: &str = "tiles";
/// Leaf hash lookup, bucketed by the hash's first byte, one record per bucket and batch:
/// `hash[0] (u8) || first index of the batch (u64)` → sorted `hash[0..8] || index (u64)` pairs.
pub(crate) const LEAVES: &str = "leaves";
/// Evidence index runs: `dimension (u8) || value || first index (u64)` → end index (u64, exclusive);
/// devices, bucketed: `3 || bucket (u8) || first index of the batch (u64)` → sorted
/// `length (u8) || device id || index (u64)` records.
pub(crate) const EVIDENCE: &str = "evidence";
/// Signed checkpoints: `size (u64)` → signed note.
pub(crate) const CHECKPOINTS: &str = "checkpoints";
/// Retention and pruning: `b'r' || release id` → retention end (u64) || release entry index (u64);
/// `b'p' || index (u64)` → pruning record of one entry.
pub(crate) const RETENTION: &str = "retention";

pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_ORIGIN: &[u8] = b"origin";
pub(crate) const META_SIZE: &[u8] = b"size";
pub(crate) const META_LOG_KEY: &[u8] = b"log-key";
/// The storage format this code reads and writes.
pub(crate) const FORMAT: u32 = 1;

pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn tile_key(id: TileId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = id.level;
    k[1..].copy_from_slice(&id.index.to_be_bytes());
    k
}

/// Key of a bucket record (leaf hashes, devices) of the batch starting at `first`.
pub(crate) fn bucket_key(prefix: &[u8], bucket: u8, first: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9);
    k.extend_from_slice(prefix);
    k.push(bucket);
    k.extend_from_slice(&first.to_be_bytes());
    k
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// An evidence index dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Dimension {
    Kind = 1,
    Release = 2,
    Device = 3,
    Campaign = 4,
    Time = 5,
}

/// The key prefix selecting every run of one value in one dimension.
pub(crate) fn evidence_prefix(dimension: Dimension, value: &EvidenceValue<'_>) -> Vec<u8> {
    let mut k = Vec::with_capacity(80);
    k.push(dimension as u8);
    match value {
        EvidenceValue::Number(n) => k.extend_from_slice(&n.to_be_bytes()),
        EvidenceValue::Text(t) => {
            // ids are at most 64 bytes (cairn_verifier::types::MAX_ID_LEN)
            k.push(u8::try_from(t.len()).unwrap_or(u8::MAX));
            k.extend_from_slice(t.as_bytes());
        }
    }
    k
}

/// One value in a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvidenceValue<'a> {
    Number(u64),
    Text(&'a str),
}

pub(crate) fn time_value(t: UnixTime) -> EvidenceValue<'static> {
    EvidenceValue::Number(t.0)
}
