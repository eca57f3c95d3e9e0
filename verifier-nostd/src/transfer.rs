//! Transfer bundles across the air gap (design.md Formats 7; formats.md §6): one file carrying a
//! range of log entries, the signed checkpoint after them, a consistency proof from the receiver's
//! last checkpoint, and the right edge of the receiver's tree. Device deliveries do not cross: the
//! relay builds each from its verified mirror (docs/relay.md, "One delivery path").
//!
//! The same format goes both ways: the signer's log to the relay's mirror, and the relay's
//! device-state log back to the signer. Import is verified before anything is written (signature,
//! consistency, every entry hashed into the signed root), atomic (entries
//! and checkpoint in one synced batch), and idempotent (entries the receiver already holds are
//! compared, not written again). This module owns the format and its verification; the vault
//! exports and imports (`cairn_vault::Vault::export_bundle`, `import_bundle`).
//!
//! Encoding: deterministic CBOR (RFC 8949 §4.2.1), a map with unsigned keys in order:
//!
//! | key | field | type |
//! |---|---|---|
//! | 0 | format version | `2` (version 1 also carried deliveries, key 7; it is refused) |
//! | 1 | origin | text: the log's origin |
//! | 2 | from | uint: entries the receiver already has (the bundle starts there) |
//! | 3 | left edge | `[* hash]`: the perfect subtrees covering `[0, from)`, left to right |
//! | 4 | entries | `[* bstr]`: entries `from .. from + n` |
//! | 5 | checkpoint | bstr: the signed note of size `from + n` |
//! | 6 | consistency | `[* hash]`: RFC 9162 proof from size `from` to `from + n` (empty if `from` is 0) |

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::cbor::Reader;
use crate::cbor::write::Writer;
use crate::crypto::Software;
use crate::merkle::{leaf_hash, node_hash, verify_consistency};
use crate::note::{Checkpoint, LogKey};
use crate::statement::Statement;
use crate::types::Hash;

/// Why a bundle was refused, naming the item at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BundleError(pub String);

type Result<T> = core::result::Result<T, BundleError>;

/// The bundle format version (2: without deliveries; 1 carried them and is refused).
pub const BUNDLE_VERSION: u64 = 2;
/// Most entries one bundle carries (a million-device cohort fits).
pub const MAX_BUNDLE_ENTRIES: u64 = 4_000_000;

/// A transfer bundle, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferBundle {
    /// The log's origin.
    pub origin: String,
    /// Entries the receiver already has.
    pub from: u64,
    /// Roots of the perfect subtrees covering `[0, from)`, left to right.
    pub left_edge: Vec<Hash>,
    /// The new entries.
    pub entries: Vec<Vec<u8>>,
    /// The signed checkpoint of size `from + entries.len()`.
    pub checkpoint: String,
    /// Consistency proof from `from` to the checkpoint's size.
    pub consistency: Vec<Hash>,
}

fn bad(what: impl Into<String>) -> BundleError {
    BundleError(what.into())
}

/// The perfect subtrees `(start, size)` covering `[0, n)`, left to right (the binary digits of
/// `n`): what a bundle's left edge holds.
pub fn edge_sizes(n: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut start = 0u64;
    (0..64).rev().filter_map(move |bit| {
        let size = 1u64 << bit;
        (n & size != 0).then(|| {
            let s = start;
            start += size;
            (s, size)
        })
    })
}

/// RFC 9162 root of a tree given as a stack of perfect subtree roots, left to right.
fn fold(stack: &[(Hash, u64)]) -> Option<Hash> {
    let mut it = stack.iter().rev();
    let mut acc = it.next()?.0;
    for (h, _) in it {
        acc = node_hash(&Software, h, &acc);
    }
    Some(acc)
}

/// Pushes a leaf onto a stack of perfect subtrees, merging equal sizes.
fn push(stack: &mut Vec<(Hash, u64)>, leaf: Hash) {
    let mut node = (leaf, 1u64);
    while let Some(&(top, size)) = stack.last() {
        if size != node.1 {
            break;
        }
        stack.pop();
        node = (node_hash(&Software, &top, &node.0), size.saturating_mul(2));
    }
    stack.push(node);
}

impl TransferBundle {
    /// The checkpoint's size: `from` plus the entries.
    pub fn to(&self) -> u64 {
        self.from.saturating_add(self.entries.len() as u64)
    }

    /// Manifests among the entries (formats.md §4.4): the deliveries a receiver can build from
    /// them against its verified copy of the log.
    pub fn manifests(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| matches!(Statement::decode(e), Ok(Statement::Manifest(_))))
            .count() as u64
    }

    /// The deterministic CBOR encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(7).u64(0).u64(BUNDLE_VERSION);
        w.u64(1).text(&self.origin);
        w.u64(2).u64(self.from);
        w.u64(3).array(self.left_edge.len() as u64);
        for h in &self.left_edge {
            w.bytes(h);
        }
        w.u64(4).array(self.entries.len() as u64);
        for e in &self.entries {
            w.bytes(e);
        }
        w.u64(5).bytes(self.checkpoint.as_bytes());
        w.u64(6).array(self.consistency.len() as u64);
        for h in &self.consistency {
            w.bytes(h);
        }
        w.into_bytes()
    }

    /// Decodes a bundle (strict deterministic CBOR; every field present, in order).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let cbor = |field: &str, e: crate::error::CborError| bad(format!("{field}: {e}"));
        // The version first: a version-1 bundle (a map of 8) is named as such, not as bad CBOR.
        let fields = r.map_len().map_err(|e| cbor("bundle", e))?;
        r.key(0).map_err(|e| cbor("version", e))?;
        let version = r.u64().map_err(|e| cbor("version", e))?;
        if version != BUNDLE_VERSION {
            return Err(bad(format!(
                "format version {version}, expected {BUNDLE_VERSION}{}",
                if version == 1 {
                    " (version 1 carried deliveries: export the bundle again with this cairn)"
                } else {
                    ""
                }
            )));
        }
        if fields != 7 {
            return Err(bad(format!("bundle: a map of {fields} fields, expected 7")));
        }
        r.key(1).map_err(|e| cbor("origin", e))?;
        let origin = r.text().map_err(|e| cbor("origin", e))?.to_owned();
        r.key(2).map_err(|e| cbor("from", e))?;
        let from = r.u64().map_err(|e| cbor("from", e))?;
        let hashes = |r: &mut Reader<'_>, field: &str, max: u64| -> Result<Vec<Hash>> {
            let n = r.array_len().map_err(|e| cbor(field, e))?;
            if n > max {
                return Err(bad(format!("{field}: {n} hashes, at most {max}")));
            }
            (0..n)
                .map(|_| r.bytes_fixed::<32>().map_err(|e| cbor(field, e)))
                .collect()
        };
        r.key(3).map_err(|e| cbor("left edge", e))?;
        let left_edge = hashes(&mut r, "left edge", 64)?;
        r.key(4).map_err(|e| cbor("entries", e))?;
        let n = r.clone().array_len().map_err(|e| cbor("entries", e))?;
        if n > MAX_BUNDLE_ENTRIES {
            return Err(bad(format!("{n} entries, at most {MAX_BUNDLE_ENTRIES}")));
        }
        // Each entry is a byte string of at least its 1-byte head: the count is capped by the
        // bytes that follow before anything is reserved for it.
        let n = r
            .array_len_within(MAX_BUNDLE_ENTRIES, 1)
            .map_err(|e| cbor("entries", e))?;
        let mut entries = Vec::with_capacity(n);
        for i in 0..n as u64 {
            entries.push(
                r.bytes()
                    .map_err(|e| cbor(&format!("entry {}", from.saturating_add(i)), e))?
                    .to_vec(),
            );
        }
        r.key(5).map_err(|e| cbor("checkpoint", e))?;
        let checkpoint = core::str::from_utf8(r.bytes().map_err(|e| cbor("checkpoint", e))?)
            .map_err(|_| bad("checkpoint: not UTF-8"))?
            .to_owned();
        r.key(6).map_err(|e| cbor("consistency proof", e))?;
        let consistency = hashes(&mut r, "consistency proof", 128)?;
        r.finish().map_err(|e| cbor("bundle", e))?;
        Ok(Self {
            origin,
            from,
            left_edge,
            entries,
            checkpoint,
            consistency,
        })
    }

    /// Verifies the bundle on its own, against the log key and the receiver's last checkpoint
    /// (none when `from` is 0): the checkpoint signature; the left edge against the old root; the
    /// left edge and the entries hash to the new root; the consistency proof from the old to the
    /// new checkpoint; every entry decodes as a known statement.
    ///
    /// Returns the leaf hashes of the entries.
    pub fn verify(&self, key: &LogKey<'_>, old_checkpoint: Option<&str>) -> Result<Vec<Hash>> {
        if self.origin != key.origin {
            return Err(bad(format!(
                "the bundle is for log {:?}, the key is for {:?}",
                self.origin, key.origin
            )));
        }
        let new = Checkpoint::parse(self.checkpoint.as_bytes())
            .map_err(|e| bad(format!("checkpoint: {e}")))?;
        new.verify(key, &Software)
            .map_err(|e| bad(format!("checkpoint signature: {e}")))?;
        if new.size.0 != self.to() {
            return Err(bad(format!(
                "the checkpoint is of size {}, the bundle ends at {}",
                new.size.0,
                self.to()
            )));
        }
        // The left edge: its sizes are fixed by `from`; it folds to the old root.
        let sizes: Vec<(u64, u64)> = edge_sizes(self.from).collect();
        if sizes.len() != self.left_edge.len() {
            return Err(bad(format!(
                "left edge has {} hashes, size {} needs {}",
                self.left_edge.len(),
                self.from,
                sizes.len()
            )));
        }
        let mut stack: Vec<(Hash, u64)> = self
            .left_edge
            .iter()
            .zip(&sizes)
            .map(|(h, (_, n))| (*h, *n))
            .collect();
        let old_root = match (old_checkpoint, self.from) {
            (None, 0) => None,
            (None, from) => {
                return Err(bad(format!(
                    "the bundle continues from size {from}: the receiver's checkpoint of that size is needed"
                )));
            }
            (Some(note), from) => {
                let old = Checkpoint::parse(note.as_bytes())
                    .map_err(|e| bad(format!("receiver's checkpoint: {e}")))?;
                old.verify(key, &Software)
                    .map_err(|e| bad(format!("receiver's checkpoint signature: {e}")))?;
                if old.size.0 != from {
                    return Err(bad(format!(
                        "the receiver's checkpoint is of size {}, the bundle starts at {from}",
                        old.size.0
                    )));
                }
                if from > 0 && fold(&stack) != Some(old.root) {
                    return Err(bad("left edge does not hash to the receiver's root"));
                }
                Some(old.root)
            }
        };
        let mut leaves = Vec::with_capacity(self.entries.len());
        for (i, entry) in self.entries.iter().enumerate() {
            Statement::decode(entry)
                .map_err(|e| bad(format!("entry {}: {e}", self.from.saturating_add(i as u64))))?;
            let leaf = leaf_hash(&Software, entry);
            push(&mut stack, leaf);
            leaves.push(leaf);
        }
        if fold(&stack) != Some(new.root) && self.to() > 0 {
            return Err(bad(
                "entries do not hash to the checkpoint's root (an entry is altered, missing or extra)",
            ));
        }
        if let Some(old_root) = old_root.filter(|_| self.from > 0) {
            verify_consistency(
                self.from,
                self.to(),
                &self.consistency,
                &old_root,
                &new.root,
            )
            .map_err(|e| bad(format!("consistency proof: {e:?}")))?;
        } else if !self.consistency.is_empty() {
            return Err(bad("a consistency proof from size 0 must be empty"));
        }
        Ok(leaves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_sizes_are_the_binary_digits() {
        assert_eq!(edge_sizes(0).count(), 0);
        assert_eq!(
            edge_sizes(13).collect::<Vec<_>>(),
            [(0, 8), (8, 4), (12, 1)]
        );
        assert_eq!(edge_sizes(256).collect::<Vec<_>>(), [(0, 256)]);
    }
}
