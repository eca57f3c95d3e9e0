//! Transfer bundles (formats.md §6; the format and its verification are
//! `cairn_verifier::transfer`): exported from a log up to its latest checkpoint, imported into a
//! mirror all or nothing, verified in full first, idempotently.

use std::ops::Range;

use cairn_verifier::delivery::{Delivery, ProofHashes};
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{ReleaseEntry, Statement};
use cairn_verifier::transfer::edge_sizes;
pub use cairn_verifier::transfer::{BundleError, TransferBundle};
use cairn_verifier::types::LeafIndex;

use crate::error::{Error, Result};
use crate::vault::{Query, TreeAt, Vault};

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Entries written (0 when the bundle was already imported).
    pub appended: Range<u64>,
    /// Entries of the bundle the receiver already held (compared, not written).
    pub already_held: u64,
    /// The checkpoint size the receiver now has.
    pub size: u64,
    /// Deliveries checked.
    pub deliveries: u64,
}

/// One thread's share of an export.
struct Part {
    entries: Vec<Vec<u8>>,
    deliveries: Vec<Vec<u8>>,
}

fn bad(what: impl Into<String>) -> Error {
    Error::BadBundle(what.into())
}

impl From<BundleError> for Error {
    fn from(e: BundleError) -> Self {
        Error::BadBundle(e.0)
    }
}

impl Vault {
    /// A bundle of everything after `from` up to the latest signed checkpoint, with the
    /// deliveries of the manifests in that range (each against that checkpoint).
    pub fn export_bundle(&self, from: u64) -> Result<TransferBundle> {
        let sizes = self.checkpoint_sizes()?;
        let to = sizes
            .last()
            .copied()
            .ok_or(Error::NoCheckpoint { size: 0 })?;
        if from > to {
            return Err(Error::SizeBeyondLog {
                size: from,
                log_size: to,
            });
        }
        if from > 0 && !sizes.contains(&from) {
            return Err(Error::NoCheckpoint { size: from });
        }
        let checkpoint = self
            .checkpoint(to)?
            .ok_or(Error::NoCheckpoint { size: to })?;
        let tree = self.at(to)?;
        let left_edge = edge_sizes(from)
            .map(|(start, n)| tree.subtree(start, n))
            .collect::<Result<Vec<_>>>()?;
        // Entries, proofs and envelopes on every core, each thread a contiguous part of the range.
        let threads = std::thread::available_parallelism().map_or(2, usize::from) as u64;
        let step = (to - from).div_ceil(threads).max(1);
        let parts: Vec<Result<Part>> = std::thread::scope(|s| {
            let handles: Vec<_> = (from..to)
                .step_by(usize::try_from(step).unwrap_or(usize::MAX))
                .map(|start| {
                    let end = (start + step).min(to);
                    let checkpoint = checkpoint.as_str();
                    s.spawn(move || self.bundle_part(&tree, start..end, checkpoint))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Corrupt {
                            what: "a bundle export worker panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut entries = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0));
        let mut deliveries = Vec::new();
        for part in parts {
            let part = part?;
            entries.extend(part.entries);
            deliveries.extend(part.deliveries);
        }
        let consistency = if from == 0 {
            Vec::new()
        } else {
            tree.consistency_proof(from)?
        };
        Ok(TransferBundle {
            origin: self.origin().into(),
            from,
            left_edge,
            entries,
            checkpoint,
            consistency,
            deliveries,
        })
    }

    /// Entries `range` and the deliveries of the manifests among them, against `checkpoint`.
    fn bundle_part(&self, tree: &TreeAt<'_>, range: Range<u64>, checkpoint: &str) -> Result<Part> {
        let mut part = Part {
            entries: Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0)),
            deliveries: Vec::new(),
        };
        let mut releases: Vec<(String, Vec<u8>)> = Vec::new();
        for index in range {
            let entry = self.entry(index)?;
            if let Ok(Statement::Manifest(m)) = Statement::decode(&entry) {
                let release_id = m.release_id.as_str();
                if !releases.iter().any(|(id, _)| id == release_id) {
                    let cose = self.release_cose(release_id)?;
                    releases.push((release_id.to_owned(), cose));
                }
                let cose = releases
                    .iter()
                    .find(|(id, _)| id == release_id)
                    .map(|(_, c)| c.as_slice())
                    .unwrap_or_default();
                let proof = tree.inclusion_proof(index)?;
                part.deliveries.push(
                    Delivery {
                        checkpoint: checkpoint.as_bytes(),
                        release: cose,
                        manifest: &entry,
                        leaf_index: LeafIndex(index),
                        proof: ProofHashes::Slice(&proof),
                    }
                    .to_cbor(),
                );
            }
            part.entries.push(entry);
        }
        Ok(part)
    }

    /// The COSE_Sign1 of release `id`.
    fn release_cose(&self, id: &str) -> Result<Vec<u8>> {
        for index in self.query_indices(Query::Release(id))? {
            let entry = self.entry(index)?;
            if let Ok(release) = ReleaseEntry::decode(&entry) {
                return Ok(release.cose_sign1.to_vec());
            }
        }
        Err(Error::UnknownRelease(id.into()))
    }

    /// Imports a bundle into this log (a mirror of the bundle's log, pinned to `key`): verified
    /// in full first, then the entries it does not hold yet and the checkpoint in one synced
    /// batch. Entries it already holds must be identical; a bundle entirely held already changes
    /// nothing (idempotent).
    pub fn import_bundle(&self, bundle: &TransferBundle, key: &LogKey<'_>) -> Result<ImportReport> {
        let held = self.size();
        if bundle.from > held {
            return Err(bad(format!(
                "the bundle starts at {}, this log has only {held} entries: an earlier bundle is missing",
                bundle.from
            )));
        }
        let old = if bundle.from == 0 {
            None
        } else {
            Some(
                self.checkpoint(bundle.from)?
                    .ok_or(Error::NoCheckpoint { size: bundle.from })?,
            )
        };
        let leaves = bundle.verify(key, old.as_deref())?;
        // Entries held already: the same leaf hashes, or this log has forked from the bundle's.
        let overlap = (held - bundle.from).min(leaves.len() as u64);
        let tree = self.at(held)?;
        for (i, leaf) in leaves
            .iter()
            .take(usize::try_from(overlap).unwrap_or(usize::MAX))
            .enumerate()
        {
            let index = bundle.from + i as u64;
            if tree.leaf_hash(index)? != *leaf {
                return Err(bad(format!(
                    "entry {index} differs from the one this log holds: the logs have forked"
                )));
            }
        }
        let deliveries = bundle.deliveries.len() as u64;
        if held >= bundle.to() {
            // Already imported (or beyond): nothing to write, but the bundle's checkpoint must be
            // the one this log accepted for that size, if it holds one.
            if let Some(ours) = self.checkpoint(bundle.to())?
                && Checkpoint::parse(ours.as_bytes()).map(|c| c.root).ok()
                    != Checkpoint::parse(bundle.checkpoint.as_bytes())
                        .map(|c| c.root)
                        .ok()
            {
                return Err(bad(
                    "the bundle's checkpoint conflicts with the one this log holds",
                ));
            }
            return Ok(ImportReport {
                appended: held..held,
                already_held: bundle.entries.len() as u64,
                size: held,
                deliveries,
            });
        }
        let skip = usize::try_from(overlap).unwrap_or(usize::MAX);
        let appended =
            self.append_with_checkpoint(&bundle.entries[skip..], &bundle.checkpoint, key)?;
        Ok(ImportReport {
            appended,
            already_held: overlap,
            size: bundle.to(),
            deliveries,
        })
    }
}
