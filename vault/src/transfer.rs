//! Transfer bundles (formats.md §6; the format and its verification are
//! `cairn_verifier::transfer`): exported from a log up to its latest checkpoint, imported into a
//! mirror all or nothing, verified in full first, idempotently. Bundles carry no deliveries:
//! `Vault::deliveries` builds them from the log, on the relay from its verified mirror.

use std::ops::{ControlFlow, Range};

use cairn_verifier::crypto::{Crypto as _, Software};
use cairn_verifier::delivery::{Delivery, ProofHashes};
use cairn_verifier::merkle::{leaf_hash, node_hash};
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{ReleaseEntry, Statement};
use cairn_verifier::transfer::edge_sizes;
pub use cairn_verifier::transfer::{BundleError, TransferBundle};
use cairn_verifier::types::{Hash, LeafIndex};

use crate::bundle::{self, BUNDLE_WIDTH};
use crate::error::{Error, Result};

/// Manifests whose entries [`Vault::each_delivery`] reads at once.
const DELIVERY_BATCH: usize = 4096;
use crate::index::Query;
use crate::tree::{TILE_WIDTH, TileBlob, TileId};
use crate::vault::Vault;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Entries written (0 when the bundle was already imported).
    pub appended: Range<u64>,
    /// Entries of the bundle the receiver already held (compared, not written).
    pub already_held: u64,
    /// The checkpoint size the receiver now has.
    pub size: u64,
    /// Manifests among the bundle's entries: the deliveries the receiver can build from them.
    pub manifests: u64,
}

/// The whole tree of a checkpoint in memory (every complete node, level by level), for proofs at
/// export scale: a million proofs read no tile.
struct MemTree {
    /// `levels[h][i]`: the complete node of height `h` at index `i`.
    levels: Vec<Vec<Hash>>,
    size: u64,
    /// RFC 9162 hashes of the non-complete suffixes `D[start:size]` the proofs need.
    suffixes: Vec<(u64, Hash)>,
}

impl MemTree {
    fn load(vault: &Vault, size: u64) -> Result<Self> {
        // Reserved up to a bound, then grown with the tiles actually read: the size is a stored
        // value, and a forged one must not reserve more than the tiles it names could fill.
        let mut leaves: Vec<Hash> =
            Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
        let tree = vault.at(size)?;
        let width = TILE_WIDTH as u64;
        for t in 0..size.div_ceil(width) {
            let id = TileId { level: 0, index: t };
            let want = usize::try_from((size - t * width).min(width)).unwrap_or(TILE_WIDTH);
            let blob = vault.tile(id)?;
            let row = blob
                .as_deref()
                .and_then(|b| TileBlob::parse(id, b).ok())
                .map(|b| b.row0().to_vec())
                .unwrap_or_default();
            if row.len() >= want * 32 {
                leaves.extend(row.chunks_exact(32).take(want).map(|c| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    h
                }));
            } else {
                for i in t * width..t * width + want as u64 {
                    leaves.push(tree.leaf_hash(i)?);
                }
            }
        }
        let mut levels = vec![leaves];
        while let Some(last) = levels.last().filter(|l| l.len() > 1) {
            let next: Vec<Hash> = last
                .chunks_exact(2)
                .map(|p| node_hash(&Software, &p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        let mut tree = Self {
            levels,
            size,
            suffixes: Vec::new(),
        };
        // The suffixes of the RFC recursion: after each perfect subtree of the decomposition.
        let mut suffixes = Vec::new();
        for (s, n) in edge_sizes(size) {
            let start = s + n;
            if start < size {
                suffixes.push((start, tree.mth(start, size - start)));
            }
        }
        tree.suffixes = suffixes;
        Ok(tree)
    }

    fn leaf(&self, index: u64) -> Hash {
        self.node(0, index)
    }

    fn node(&self, height: u32, index: u64) -> Hash {
        self.levels
            .get(height as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .unwrap_or([0; 32])
    }

    /// MTH of `D[start : start + n]` (RFC 9162 §2.1.1).
    fn mth(&self, start: u64, n: u64) -> Hash {
        if n.is_power_of_two() {
            let h = n.trailing_zeros();
            return self.node(h, start >> h);
        }
        if start + n == self.size
            && let Some((_, h)) = self.suffixes.iter().find(|(s, _)| *s == start)
        {
            return *h;
        }
        let k = 1u64 << (n - 1).ilog2();
        node_hash(&Software, &self.mth(start, k), &self.mth(start + k, n - k))
    }

    fn root(&self) -> Hash {
        if self.size == 0 {
            return Software.sha256_of(&[]);
        }
        self.mth(0, self.size)
    }

    /// RFC 9162 §2.1.3.1 `PATH(m, D[size])`.
    fn proof(&self, m: u64) -> Vec<Hash> {
        let mut path = Vec::with_capacity(64);
        let (mut start, mut m, mut n) = (0u64, m, self.size);
        while n > 1 {
            let k = 1u64 << (n - 1).ilog2();
            if m < k {
                path.push(self.mth(start + k, n - k));
                n = k;
            } else {
                path.push(self.mth(start, k));
                start += k;
                m -= k;
                n -= k;
            }
        }
        path.reverse();
        path
    }
}

/// Delivery envelopes against one checkpoint, each release's COSE_Sign1 looked up once.
struct Envelopes<'a> {
    vault: &'a Vault,
    checkpoint: &'a str,
    tree: &'a MemTree,
    releases: Vec<(String, Vec<u8>)>,
}

impl<'a> Envelopes<'a> {
    fn new(vault: &'a Vault, checkpoint: &'a str, tree: &'a MemTree) -> Self {
        Self {
            vault,
            checkpoint,
            tree,
            releases: Vec::new(),
        }
    }

    /// The device id and delivery of `entry` (at `index`) if it is a manifest.
    fn delivery(&mut self, index: u64, entry: &[u8]) -> Result<Option<(String, Vec<u8>)>> {
        let Ok(Statement::Manifest(m)) = Statement::decode(entry) else {
            return Ok(None);
        };
        let release_id = m.release_id.as_str();
        let position = if let Some(p) = self.releases.iter().position(|(id, _)| id == release_id) {
            p
        } else {
            let (_, cose) = self.vault.release_entry(release_id)?;
            self.releases.push((release_id.to_owned(), cose));
            self.releases.len() - 1
        };
        let proof = self.tree.proof(index);
        let delivery = Delivery {
            checkpoint: self.checkpoint.as_bytes(),
            release: &self.releases[position].1,
            manifest: entry,
            leaf_index: LeafIndex(index),
            proof: ProofHashes::Slice(&proof),
        }
        .to_cbor();
        Ok(Some((m.device_id.as_str().to_owned(), delivery)))
    }
}

fn bad(what: impl Into<String>) -> Error {
    Error::BadBundle(what.into())
}

/// A bundle starts at 0 or at a checkpoint of the log, within it.
fn check_from(sizes: &[u64], from: u64) -> Result<()> {
    let latest = sizes.last().copied().unwrap_or(0);
    if from > latest {
        return Err(Error::SizeBeyondLog {
            size: from,
            log_size: latest,
        });
    }
    if from > 0 && !sizes.contains(&from) {
        return Err(Error::NoCheckpoint { size: from });
    }
    Ok(())
}

impl From<BundleError> for Error {
    fn from(e: BundleError) -> Self {
        Error::BadBundle(e.0)
    }
}

impl Vault {
    /// A bundle of everything after `from` up to the latest signed checkpoint.
    pub fn export_bundle(&self, from: u64) -> Result<TransferBundle> {
        let to = self
            .checkpoint_sizes()?
            .last()
            .copied()
            .ok_or(Error::NoCheckpoint { size: 0 })?;
        self.export_bundle_to(from, to)
    }

    /// The ranges `from..to` of the bundles that carry everything after `from` up to the latest
    /// signed checkpoint, in import order, each of at most `max_entries` entries (formats.md §6,
    /// "Ranged bundles"): each ends at a signed checkpoint, each starts where the previous one
    /// ended, so a receiver imports them one after the other. The cuts are the largest
    /// checkpoint sizes that fit; a stretch of the log longer than `max_entries` with no
    /// checkpoint inside it is an error naming it.
    pub fn bundle_ranges(&self, from: u64, max_entries: u64) -> Result<Vec<Range<u64>>> {
        let sizes = self.checkpoint_sizes()?;
        let latest = sizes
            .last()
            .copied()
            .ok_or(Error::NoCheckpoint { size: 0 })?;
        check_from(&sizes, from)?;
        let max = max_entries.max(1);
        let mut ranges = Vec::new();
        let mut at = from;
        while at < latest {
            let limit = at.saturating_add(max);
            let end = sizes
                .iter()
                .copied()
                .filter(|&s| s > at && s <= limit)
                .max()
                .ok_or_else(|| {
                    let next = sizes.iter().copied().find(|&s| s > at).unwrap_or(latest);
                    bad(format!(
                        "the log has no checkpoint between sizes {at} and {limit}: entries \
                         {at}..{next} cannot be cut into bundles of at most {max} entries"
                    ))
                })?;
            ranges.push(at..end);
            at = end;
        }
        Ok(ranges)
    }

    /// A bundle of the entries `from..to`: both ends must be checkpoint sizes of this log (`from`
    /// may be 0), `to` the size of the checkpoint the bundle carries.
    pub fn export_bundle_to(&self, from: u64, to: u64) -> Result<TransferBundle> {
        let sizes = self.checkpoint_sizes()?;
        let latest = sizes.last().copied().unwrap_or(0);
        if to > latest {
            return Err(Error::SizeBeyondLog {
                size: to,
                log_size: latest,
            });
        }
        if from > to {
            return Err(bad(format!(
                "a bundle from size {from} to size {to}: it must not end before it starts"
            )));
        }
        check_from(&sizes, from)?;
        if !sizes.contains(&to) {
            return Err(Error::NoCheckpoint { size: to });
        }
        let (checkpoint, memory) = self.signed_tree(to)?;
        let left_edge = edge_sizes(from)
            .map(|(start, n)| memory.mth(start, n))
            .collect();
        // Entries on every core, each thread a contiguous part of the range.
        let threads = std::thread::available_parallelism().map_or(2, usize::from) as u64;
        let step = (to - from).div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<Vec<u8>>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (from..to)
                .step_by(usize::try_from(step).unwrap_or(usize::MAX))
                .map(|start| {
                    let end = (start + step).min(to);
                    let memory = &memory;
                    s.spawn(move || self.bundle_part(memory, start..end))
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
        for part in parts {
            entries.extend(part?);
        }
        let consistency = if from == 0 {
            Vec::new()
        } else {
            self.at(to)?.consistency_proof(from)?
        };
        Ok(TransferBundle {
            origin: self.origin().into(),
            from,
            left_edge,
            entries,
            checkpoint,
            consistency,
        })
    }

    /// Entries `range`, read a whole entry bundle at a time and checked against the leaf hashes
    /// of `tree`.
    fn bundle_part(&self, tree: &MemTree, range: Range<u64>) -> Result<Vec<Vec<u8>>> {
        let mut part = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
        let width = BUNDLE_WIDTH as u64;
        let mut index = range.start;
        while index < range.end {
            let b = index / width;
            let stored = self.stored_bundle(b)?;
            let in_bundle = bundle::entries(b, &stored)?;
            let end = range.end.min((b + 1) * width);
            for i in index..end {
                let at = usize::try_from(i - b * width).unwrap_or(usize::MAX);
                let entry = match in_bundle.get(at) {
                    Some(e) if leaf_hash(&Software, e) == tree.leaf(i) => e.to_vec(),
                    // Pruned or damaged: `entry` says which.
                    _ => self.entry(i)?,
                };
                part.push(entry);
            }
            index = end;
        }
        Ok(part)
    }

    /// The device deliveries (formats.md §5) of the manifests at `indices`, against the latest
    /// signed checkpoint, with their device ids. An index that is not a manifest is an error.
    pub fn deliveries(&self, indices: &[u64]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::with_capacity(indices.len());
        self.each_delivery(indices, &mut |device, envelope| {
            out.push((device, envelope));
        })?;
        Ok(out)
    }

    /// [`Vault::deliveries`], each handed to `sink` as it is built instead of collected: the tree
    /// is loaded once however many manifests there are, and memory holds one batch of entries,
    /// not every envelope (a campaign of millions streams its deliveries in one call).
    pub fn each_delivery(
        &self,
        indices: &[u64],
        sink: &mut dyn FnMut(String, Vec<u8>),
    ) -> Result<()> {
        let to = self
            .checkpoint_sizes()?
            .last()
            .copied()
            .ok_or(Error::NoCheckpoint { size: 0 })?;
        self.each_delivery_at(indices, to, sink)
    }

    /// [`Vault::deliveries`] against the stored checkpoint of size `to` rather than the latest
    /// (the relay delivers against the latest checkpoint with a witness quorum).
    pub fn deliveries_at(&self, indices: &[u64], to: u64) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::with_capacity(indices.len());
        self.each_delivery_at(indices, to, &mut |device, envelope| {
            out.push((device, envelope));
        })?;
        Ok(out)
    }

    /// [`Vault::each_delivery`] against the stored checkpoint of size `to`.
    pub fn each_delivery_at(
        &self,
        indices: &[u64],
        to: u64,
        sink: &mut dyn FnMut(String, Vec<u8>),
    ) -> Result<()> {
        let (checkpoint, memory) = self.signed_tree(to)?;
        let mut envelopes = Envelopes::new(self, &checkpoint, &memory);
        if let Some(&index) = indices.iter().find(|&&i| i >= to) {
            return Err(Error::BeyondTree { index, size: to });
        }
        for chunk in indices.chunks(DELIVERY_BATCH) {
            // Increasing indices are read a bundle at a time; any other order one by one.
            let entries = if chunk.is_sorted_by(|a, b| a < b) {
                self.entries_at(chunk)?
                    .into_iter()
                    .map(|(_, e)| e)
                    .collect()
            } else {
                chunk
                    .iter()
                    .map(|&i| self.entry(i))
                    .collect::<Result<Vec<_>>>()?
            };
            for (&index, entry) in chunk.iter().zip(&entries) {
                let (device, envelope) = envelopes
                    .delivery(index, entry)?
                    .ok_or_else(|| bad(format!("entry {index} is not a manifest")))?;
                sink(device, envelope);
            }
        }
        Ok(())
    }

    /// The signed checkpoint of `size` and the whole tree of that size in memory, checked to
    /// hash to the checkpoint's root.
    fn signed_tree(&self, size: u64) -> Result<(String, MemTree)> {
        let checkpoint = self.checkpoint(size)?.ok_or(Error::NoCheckpoint { size })?;
        let memory = MemTree::load(self, size)?;
        let signed = Checkpoint::parse(checkpoint.as_bytes())
            .map_err(|e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))?
            .root;
        if memory.root() != signed {
            return Err(Error::Corrupt {
                what: format!("the tiles do not hash to the signed checkpoint of size {size}"),
            });
        }
        Ok((checkpoint, memory))
    }

    /// The release entry of release `id`: its index and its COSE_Sign1.
    /// The release entry comes before every manifest that names it (a plan needs it in the log),
    /// so this reads the first run of the release's index, not its million manifests.
    pub fn release_entry(&self, id: &str) -> Result<(u64, Vec<u8>)> {
        let mut found = None;
        self.each_run(Query::Release(id), &mut |run| {
            for index in run {
                let entry = self.entry(index)?;
                if let Ok(release) = ReleaseEntry::decode(&entry) {
                    found = Some((index, release.cose_sign1.to_vec()));
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        found.ok_or_else(|| Error::UnknownRelease(id.into()))
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
            Some(self.checkpoint(bundle.from)?.ok_or_else(|| {
                if bundle.from == held {
                    return Error::NoCheckpoint { size: held };
                }
                bad(format!(
                    "the bundle starts at {}, inside the {held} entries this log holds but at none \
                     of its checkpoints: it overlaps the bundles imported so far (export the next \
                     bundle from this log's last checkpoint)",
                    bundle.from
                ))
            })?)
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
                return Err(Error::Fork(format!(
                    "entry {index} differs from the one this log holds: the logs have forked"
                )));
            }
        }
        let manifests = bundle.manifests();
        if held >= bundle.to() {
            // Already imported (or beyond): nothing to write, but the bundle's checkpoint must be
            // the one this log accepted for that size, if it holds one.
            if let Some(ours) = self.checkpoint(bundle.to())?
                && Checkpoint::parse(ours.as_bytes()).map(|c| c.root).ok()
                    != Checkpoint::parse(bundle.checkpoint.as_bytes())
                        .map(|c| c.root)
                        .ok()
            {
                return Err(Error::Fork(
                    "the bundle's checkpoint conflicts with the one this log holds".into(),
                ));
            }
            // The same checkpoint, carried again with witnesses' cosignatures added since: they
            // are kept (devices check them; the relay cannot forge one).
            if let Some(ours) = self.checkpoint(bundle.to())?
                && Checkpoint::parse(ours.as_bytes()).map(|c| c.text).ok()
                    == Checkpoint::parse(bundle.checkpoint.as_bytes())
                        .map(|c| c.text)
                        .ok()
            {
                self.add_cosignatures(&bundle.checkpoint)?;
            }
            return Ok(ImportReport {
                appended: held..held,
                already_held: bundle.entries.len() as u64,
                size: held,
                manifests,
            });
        }
        let skip = usize::try_from(overlap).unwrap_or(usize::MAX);
        let appended =
            self.append_with_checkpoint(&bundle.entries[skip..], &bundle.checkpoint, key)?;
        Ok(ImportReport {
            appended,
            already_held: overlap,
            size: bundle.to(),
            manifests,
        })
    }
}
