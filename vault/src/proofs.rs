//! The tree at a size, read through the stored tiles, and inclusion and consistency proofs
//! (RFC 9162 §2.1.3, §2.1.4) against stored checkpoints, each verified before it is returned.

use std::sync::{Arc, PoisonError};

use cairn_verifier::merkle::{verify_consistency, verify_inclusion};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::types::Hash;

use crate::error::{Error, Result};
use crate::layout::{TILES, tile_key};
use crate::tree::{self, NodeSource, TILE_WIDTH, TileBlob, TileId, locate};
use crate::vault::Vault;

/// Full upper-level tiles kept in memory (each at most 16 KiB).
const TILE_CACHE_LIMIT: usize = 16 * 1024;

/// An inclusion proof checked against a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The signed checkpoint the proof is for.
    pub checkpoint: String,
    /// The tree size of that checkpoint.
    pub size: u64,
    /// The entry's index.
    pub index: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// The audit path.
    pub proof: Vec<Hash>,
}

/// A consistency proof between two signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older checkpoint.
    pub old: String,
    /// The newer checkpoint.
    pub new: String,
    /// The proof hashes.
    pub proof: Vec<Hash>,
}

impl Vault {
    /// A view of the tree at `size` (at most the durable size) for computing roots and proofs.
    pub fn at(&self, size: u64) -> Result<TreeAt<'_>> {
        let log_size = self.size();
        if size > log_size {
            return Err(Error::SizeBeyondLog { size, log_size });
        }
        Ok(TreeAt { vault: self, size })
    }

    /// An inclusion proof of entry `index` in the stored checkpoint of size `size`, verified
    /// against that checkpoint's root before it is returned.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<InclusionProof> {
        let (checkpoint, root) = self.signed_root(size)?;
        self.at(size)?; // the size is within the log
        let tree = Memo::new(self);
        let proof = tree::inclusion_proof(&tree, index, size)?;
        let leaf_hash = tree.node(0, index)?;
        verify_inclusion(&leaf_hash, index, size, &proof, &root)
            .map_err(|cause| Error::ProofSelfCheck { size, cause })?;
        Ok(InclusionProof {
            checkpoint: checkpoint.to_string(),
            size,
            index,
            leaf_hash,
            proof,
        })
    }

    /// A consistency proof between the stored checkpoints of sizes `old` and `new`, verified
    /// against both roots before it is returned.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<ConsistencyProof> {
        let (old_cp, old_root) = self.signed_root(old)?;
        let (new_cp, new_root) = self.signed_root(new)?;
        self.at(new)?;
        let proof = tree::consistency_proof(&Memo::new(self), old, new)?;
        verify_consistency(old, new, &proof, &old_root, &new_root)
            .map_err(|cause| Error::ProofSelfCheck { size: new, cause })?;
        Ok(ConsistencyProof {
            old: old_cp.to_string(),
            new: new_cp.to_string(),
            proof,
        })
    }

    /// The stored checkpoint of `size` and its root, parsed once and then kept in memory.
    fn signed_root(&self, size: u64) -> Result<(Arc<str>, Hash)> {
        if let Some(found) = self
            .checkpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&size)
        {
            return Ok(found.clone());
        }
        let note = self.checkpoint(size)?.ok_or(Error::NoCheckpoint { size })?;
        let root = checkpoint_root(&note)?;
        let entry = (Arc::<str>::from(note), root);
        let mut cache = self
            .checkpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= TILE_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(size, entry.clone());
        Ok(entry)
    }

    /// A tile blob, full tiles of level ≥ 1 from the cache.
    pub(crate) fn tile(&self, id: TileId) -> Result<Option<Arc<[u8]>>> {
        if id.level > 0
            && let Some(t) = self
                .cache
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
        {
            return Ok(Some(Arc::clone(t)));
        }
        let Some(blob) = self.db.get_pinned_cf(self.cf(TILES)?, tile_key(id))? else {
            return Ok(None);
        };
        let blob: Arc<[u8]> = Arc::from(&*blob);
        if id.level > 0 && TileBlob::parse(id, &blob)?.width() == TILE_WIDTH {
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= TILE_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(id, Arc::clone(&blob));
        }
        Ok(Some(blob))
    }

    /// Reads one node through the tile that holds it (level-0 tiles without copying them).
    fn node(&self, height: u32, index: u64) -> Result<Hash> {
        let (id, row, position) = locate(height, index);
        let missing = || Error::Corrupt {
            what: format!(
                "node {height}/{index} missing from tile {}/{}",
                id.level, id.index
            ),
        };
        if id.level == 0 {
            let blob = self
                .db
                .get_pinned_cf(self.cf(TILES)?, tile_key(id))?
                .ok_or_else(missing)?;
            return TileBlob::parse(id, &blob)?
                .node(row, position)
                .ok_or_else(missing);
        }
        let blob = self.tile(id)?.ok_or_else(missing)?;
        TileBlob::parse(id, &blob)?
            .node(row, position)
            .ok_or_else(missing)
    }
}

/// The tree at one size.
#[derive(Debug, Clone, Copy)]
pub struct TreeAt<'a> {
    vault: &'a Vault,
    size: u64,
}

impl TreeAt<'_> {
    /// The root of the perfect subtree of `n` leaves starting at leaf `start`.
    pub fn subtree(&self, start: u64, n: u64) -> Result<Hash> {
        tree::subtree_hash(self, start, n)
    }

    /// A multi-leaf proof of the `selected` leaves (strictly increasing) in this tree
    /// ([`tree::multi_proof`]).
    pub fn multi_proof(&self, selected: &[u64]) -> Result<Vec<Hash>> {
        tree::multi_proof(self, selected, self.size)
    }
}

impl NodeSource for TreeAt<'_> {
    fn node(&self, height: u32, index: u64) -> Result<Hash> {
        self.vault.node(height, index)
    }
}

impl TreeAt<'_> {
    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 9162 root hash.
    pub fn root(&self) -> Result<Hash> {
        tree::root(self, self.size)
    }

    /// The leaf hash of entry `index`, from the tiles.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash> {
        if index >= self.size {
            return Err(Error::BeyondTree {
                index,
                size: self.size,
            });
        }
        self.vault.node(0, index)
    }

    /// Inclusion proof of `index` (not checked against a checkpoint; see `Vault::prove_inclusion`).
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>> {
        tree::inclusion_proof(self, index, self.size)
    }

    /// Consistency proof from `old` to this size.
    pub fn consistency_proof(&self, old: u64) -> Result<Vec<Hash>> {
        tree::consistency_proof(self, old, self.size)
    }
}

/// Node reads for one proof: every tile it needs is read once (level-0 tiles pinned in RocksDB's
/// block cache, not copied; upper tiles from the vault's cache), however many nodes come from it.
struct Memo<'a> {
    vault: &'a Vault,
    tiles: std::cell::RefCell<Vec<(TileId, Tile<'a>)>>,
}

enum Tile<'a> {
    Pinned(rocksdb::DBPinnableSlice<'a>),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Tile<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Tile::Pinned(p) => p,
            Tile::Shared(s) => s,
        }
    }
}

impl<'a> Memo<'a> {
    fn new(vault: &'a Vault) -> Self {
        Self {
            vault,
            tiles: std::cell::RefCell::new(Vec::with_capacity(8)),
        }
    }
}

impl NodeSource for Memo<'_> {
    fn node(&self, height: u32, index: u64) -> Result<Hash> {
        let (id, row, position) = locate(height, index);
        let missing = || Error::Corrupt {
            what: format!(
                "node {height}/{index} missing from tile {}/{}",
                id.level, id.index
            ),
        };
        let mut tiles = self.tiles.borrow_mut();
        let at = if let Some(at) = tiles.iter().position(|(t, _)| *t == id) {
            at
        } else {
            let tile = if id.level == 0 {
                let cf = self.vault.cf(TILES)?;
                Tile::Pinned(
                    self.vault
                        .db
                        .get_pinned_cf(cf, tile_key(id))?
                        .ok_or_else(missing)?,
                )
            } else {
                Tile::Shared(self.vault.tile(id)?.ok_or_else(missing)?)
            };
            tiles.push((id, tile));
            tiles.len() - 1
        };
        TileBlob::parse(id, &tiles[at].1)?
            .node(row, position)
            .ok_or_else(missing)
    }
}

/// The root hash of a checkpoint note (its signature is checked by whoever stored it).
fn checkpoint_root(note: &str) -> Result<Hash> {
    Checkpoint::parse(note.as_bytes())
        .map(|c| c.root)
        .map_err(|e| Error::Corrupt {
            what: format!("stored checkpoint does not parse: {e}"),
        })
}
