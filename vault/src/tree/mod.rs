//! The Merkle tree kept as tiles (C2SP tlog-tiles), and RFC 9162 proofs computed from them.
//!
//! A tile at level `L` and index `N` holds up to 256 consecutive hashes of height `8L` (row 0,
//! exactly the C2SP tile contents); cairn stores, with each tile, the complete nodes above that
//! row inside the tile (rows 1 to 7), so any node of the tree is one lookup away:
//!
//! ```text
//! blob = width (u16, big-endian, 1..=256) || row 0 (width hashes) || row 1 (width/2) || ... || row 7
//! ```
//!
//! The node of height `h` and index `i` (covering leaves `i·2^h .. (i+1)·2^h`) lives in the tile at
//! level `h / 8`, index `(i << (h % 8)) / 256`, row `h % 8`. This module is storage-agnostic: the
//! vault reads tiles from RocksDB through [`NodeSource`].

use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::merkle::node_hash;
use cairn_verifier::types::Hash;

use crate::error::Error;

mod verify;
use verify::split;
pub use verify::{Leaves, MultiProofError, multi_proof_len, multi_root, multi_root_of};

/// Height of a tile in tree levels (C2SP tlog-tiles: 8).
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile row 0.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;
/// Length of the width prefix of a tile blob.
const WIDTH_LEN: usize = 2;

/// Address of a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileId {
    /// Tile level: row 0 holds hashes of height `8 × level`.
    pub level: u8,
    /// Index of the tile in its level.
    pub index: u64,
}

/// Where node `(height, index)` is stored: its tile, row and position in the row.
pub fn locate(height: u32, index: u64) -> (TileId, u32, usize) {
    let level = height / TILE_HEIGHT;
    let row = height % TILE_HEIGHT;
    let first = index << row; // leftmost descendant at the tile's row-0 height
    let tile = first >> TILE_HEIGHT;
    let position = index - (tile << (TILE_HEIGHT - row));
    // position < 256 >> row by construction
    (
        TileId {
            level: u8::try_from(level).unwrap_or(u8::MAX),
            index: tile,
        },
        row,
        usize::try_from(position).unwrap_or(usize::MAX),
    )
}

/// Number of hashes in rows 0..=7 of a tile whose row 0 has `width` hashes.
fn blob_hashes(width: usize) -> usize {
    (0..TILE_HEIGHT).map(|r| width >> r).sum()
}

fn row_offset(width: usize, row: u32) -> usize {
    (0..row).map(|r| width >> r).sum()
}

/// Builds the blob of a tile from its row 0.
pub fn build_tile(row0: &[Hash]) -> Vec<u8> {
    let width = row0.len();
    debug_assert!((1..=TILE_WIDTH).contains(&width));
    let mut blob = Vec::with_capacity(WIDTH_LEN + 32 * blob_hashes(width));
    blob.extend_from_slice(&u16::try_from(width).unwrap_or(0).to_be_bytes());
    let mut row: Vec<Hash> = row0.to_vec();
    for _ in 0..TILE_HEIGHT {
        for h in &row {
            blob.extend_from_slice(h);
        }
        row = row
            .chunks_exact(2)
            .map(|p| node_hash(&Software, &p[0], &p[1]))
            .collect();
    }
    blob
}

/// A tile blob, checked for a consistent length.
#[derive(Debug, Clone, Copy)]
pub struct TileBlob<'a> {
    width: usize,
    hashes: &'a [u8],
}

impl<'a> TileBlob<'a> {
    /// Parses a blob read from storage.
    pub fn parse(tile: TileId, blob: &'a [u8]) -> Result<Self, Error> {
        let bad = || Error::Corrupt {
            what: format!(
                "tile {}/{}: malformed blob of {} bytes",
                tile.level,
                tile.index,
                blob.len()
            ),
        };
        let (width, hashes) = blob.split_first_chunk::<WIDTH_LEN>().ok_or_else(bad)?;
        let width = usize::from(u16::from_be_bytes(*width));
        if width == 0 || width > TILE_WIDTH || hashes.len() != 32 * blob_hashes(width) {
            return Err(bad());
        }
        Ok(Self { width, hashes })
    }

    /// Hashes in row 0.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Node at `row`, `position`, if the tile holds it.
    pub fn node(&self, row: u32, position: usize) -> Option<Hash> {
        if row >= TILE_HEIGHT || position >= self.width >> row {
            return None;
        }
        let at = 32 * (row_offset(self.width, row) + position);
        self.hashes.get(at..at + 32).and_then(|s| s.try_into().ok())
    }

    /// Row 0: the C2SP tile contents.
    pub fn row0(&self) -> &'a [u8] {
        &self.hashes[..32 * self.width]
    }

    /// The hash of the whole tile (the node one level above row 7), if the tile is full.
    pub fn root(&self) -> Option<Hash> {
        if self.width != TILE_WIDTH {
            return None;
        }
        Some(node_hash(
            &Software,
            &self.node(TILE_HEIGHT - 1, 0)?,
            &self.node(TILE_HEIGHT - 1, 1)?,
        ))
    }
}

/// Read access to the complete nodes of a tree.
pub trait NodeSource {
    /// The hash of the complete subtree of height `height` at `index`. Only asked for nodes that
    /// are complete in the tree being proved.
    fn node(&self, height: u32, index: u64) -> Result<Hash, Error>;
}

/// RFC 9162 §2.1.1 MTH of the leaves `start .. start + n` (`n >= 1`; `start` a multiple of the
/// largest power of two not above `n`, as every subtree in the RFC recursion is).
pub fn subtree_hash(src: &impl NodeSource, start: u64, n: u64) -> Result<Hash, Error> {
    if n.is_power_of_two() {
        let height = n.trailing_zeros();
        return src.node(height, start >> height);
    }
    let k = split(n);
    let left = subtree_hash(src, start, k)?;
    let right = subtree_hash(src, start + k, n - k)?;
    Ok(node_hash(&Software, &left, &right))
}

/// The root of the tree of `size` leaves.
pub fn root(src: &impl NodeSource, size: u64) -> Result<Hash, Error> {
    if size == 0 {
        return Ok(Software.sha256_of(&[]));
    }
    subtree_hash(src, 0, size)
}

/// A multi-leaf proof (docs/audit.md, "Multi-leaf proofs"): with the leaf hashes of the
/// `selected` leaves (strictly increasing, each below `n`), the hashes that let a verifier
/// recompute the RFC 9162 root of the tree of `n` leaves. They are the MTH of every maximal
/// subtree of the RFC 9162 §2.1.1 recursion that holds no selected leaf, left to right. One
/// selected leaf gives exactly its inclusion proof's hashes (in another order); every leaf
/// selected gives none.
pub fn multi_proof(src: &impl NodeSource, selected: &[u64], n: u64) -> Result<Vec<Hash>, Error> {
    if let Some(&last) = selected.last()
        && last >= n
    {
        return Err(Error::BeyondTree {
            index: last,
            size: n,
        });
    }
    let mut out = Vec::new();
    if n > 0 {
        multi_walk(src, selected, 0, n, &mut out)?;
    }
    Ok(out)
}

fn multi_walk(
    src: &impl NodeSource,
    selected: &[u64],
    start: u64,
    n: u64,
    out: &mut Vec<Hash>,
) -> Result<(), Error> {
    if selected.is_empty() {
        out.push(subtree_hash(src, start, n)?);
        return Ok(());
    }
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    let mid = selected.partition_point(|&i| i < start + k);
    multi_walk(src, &selected[..mid], start, k, out)?;
    multi_walk(src, &selected[mid..], start + k, n - k, out)
}

/// RFC 9162 §2.1.3.1 `PATH(m, D[n])`: the inclusion proof of leaf `m` in the tree of `n` leaves.
pub fn inclusion_proof(src: &impl NodeSource, m: u64, n: u64) -> Result<Vec<Hash>, Error> {
    if m >= n {
        return Err(Error::BeyondTree { index: m, size: n });
    }
    let mut path = Vec::with_capacity(64);
    let (mut start, mut m, mut n) = (0u64, m, n);
    // Walk down from the root; the siblings are collected top-down, so reverse at the end.
    while n > 1 {
        let k = split(n);
        if m < k {
            path.push(subtree_hash(src, start + k, n - k)?);
            n = k;
        } else {
            path.push(subtree_hash(src, start, k)?);
            start += k;
            m -= k;
            n -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// RFC 9162 §2.1.4.1 `PROOF(m, D[n])`: the consistency proof from size `m` to size `n`.
pub fn consistency_proof(src: &impl NodeSource, m: u64, n: u64) -> Result<Vec<Hash>, Error> {
    if m == 0 || m > n {
        return Err(Error::BadSizes { from: m, to: n });
    }
    // SUBPROOF(m, D[start..start+n], complete), unrolled: the recursion always descends into one
    // side, and each step appends the other side's hash after the deeper part of the proof.
    let mut tail = Vec::with_capacity(64);
    let (mut start, mut m, mut n, mut complete) = (0u64, m, n, true);
    let head = loop {
        if m == n {
            break if complete {
                None
            } else {
                Some(subtree_hash(src, start, n)?)
            };
        }
        let k = split(n);
        if m <= k {
            tail.push(subtree_hash(src, start + k, n - k)?);
            n = k;
        } else {
            tail.push(subtree_hash(src, start, k)?);
            start += k;
            m -= k;
            n -= k;
            complete = false;
        }
    };
    let mut proof: Vec<Hash> = head.into_iter().collect();
    proof.extend(tail.into_iter().rev());
    Ok(proof)
}

/// The right edge of the tree: the row 0 of the rightmost (partial) tile of every level.
///
/// This is all a writer needs to append: full tiles are never touched again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `partial[L]`: hashes of height `8L` not yet grouped into a full level-`L` tile.
    partial: Vec<Vec<Hash>>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves, read through `tile_row0` (the row 0 of a stored
    /// tile, which may be wider than needed if it was written at a larger size).
    pub fn load(
        size: u64,
        mut tile_row0: impl FnMut(TileId) -> Result<Vec<Hash>, Error>,
    ) -> Result<Self, Error> {
        let mut partial = Vec::new();
        let mut level = 0u32;
        loop {
            let shift = TILE_HEIGHT * level;
            let count = if shift >= 64 { 0 } else { size >> shift }; // complete nodes of height 8L
            let index = count >> TILE_HEIGHT;
            let width = usize::try_from(count & (TILE_WIDTH as u64 - 1)).unwrap_or(0);
            let level8 = u8::try_from(level).unwrap_or(u8::MAX);
            let row = if width == 0 {
                Vec::new()
            } else {
                let tile = TileId {
                    level: level8,
                    index,
                };
                let mut row = tile_row0(tile)?;
                if row.len() < width {
                    return Err(Error::Corrupt {
                        what: format!(
                            "tile {level}/{index} has {} hashes, tree size {size} needs {width}",
                            row.len()
                        ),
                    });
                }
                row.truncate(width);
                row
            };
            partial.push(row);
            if count >> TILE_HEIGHT == 0 {
                break;
            }
            level += 1;
        }
        Ok(Self { size, partial })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends leaf hashes; returns the blobs of every tile written or rewritten.
    pub fn append(&mut self, leaves: &[Hash]) -> Vec<(TileId, Vec<u8>)> {
        let mut dirty: Vec<(TileId, Vec<u8>)> = Vec::new();
        let mut carry: Vec<Hash> = leaves.to_vec();
        let mut level = 0usize;
        let mut level_size = self.size; // complete nodes at this level's height, before the append
        while !carry.is_empty() {
            if self.partial.len() <= level {
                self.partial.push(Vec::new());
            }
            let mut next = Vec::new();
            let mut tile_index = level_size >> TILE_HEIGHT;
            let row = &mut self.partial[level];
            let mut input = carry.as_slice();
            while !input.is_empty() {
                let take = (TILE_WIDTH - row.len()).min(input.len());
                row.extend_from_slice(&input[..take]);
                input = &input[take..];
                let blob = build_tile(row);
                let id = TileId {
                    level: u8::try_from(level).unwrap_or(u8::MAX),
                    index: tile_index,
                };
                if row.len() == TILE_WIDTH {
                    if let Some(root) = TileBlob::parse(id, &blob).ok().and_then(|t| t.root()) {
                        next.push(root);
                    }
                    row.clear();
                    tile_index += 1;
                }
                dirty.push((id, blob));
            }
            level_size >>= TILE_HEIGHT;
            carry = next;
            level += 1;
        }
        self.size += leaves.len() as u64;
        // Drop rewrites of the same tile within one batch: only the last blob counts.
        let mut seen = std::collections::HashSet::new();
        dirty.reverse();
        dirty.retain(|(id, _)| seen.insert(*id));
        dirty.reverse();
        dirty
    }

    /// The blobs of the current partial tiles (one per level that has one).
    pub fn partial_tiles(&self) -> Vec<(TileId, Vec<u8>)> {
        let mut out = Vec::new();
        let mut count = self.size;
        for (level, row) in self.partial.iter().enumerate() {
            if !row.is_empty() {
                let id = TileId {
                    level: u8::try_from(level).unwrap_or(u8::MAX),
                    index: count >> TILE_HEIGHT,
                };
                out.push((id, build_tile(row)));
            }
            count >>= TILE_HEIGHT;
        }
        out
    }

    /// The root of the tree, from the frontier alone.
    pub fn root(&self) -> Hash {
        // Complete subtrees from the right edge inwards: each level's partial row decomposes into
        // power-of-two runs; the smallest (rightmost) is folded first.
        let mut acc: Option<Hash> = None;
        for row in &self.partial {
            let mut end = row.len();
            for bit in 0..TILE_HEIGHT {
                if row.len() & (1 << bit) == 0 {
                    continue;
                }
                let start = end - (1 << bit);
                let sub = complete_root(&row[start..end]);
                acc = Some(match acc {
                    None => sub,
                    Some(right) => node_hash(&Software, &sub, &right),
                });
                end = start;
            }
        }
        acc.unwrap_or_else(|| Software.sha256_of(&[]))
    }
}

/// Root of a power-of-two run of hashes.
fn complete_root(hashes: &[Hash]) -> Hash {
    let mut row = hashes.to_vec();
    while row.len() > 1 {
        row = row
            .chunks_exact(2)
            .map(|p| node_hash(&Software, &p[0], &p[1]))
            .collect();
    }
    row[0]
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cairn_verifier::merkle::{verify_consistency, verify_inclusion};
    use cairn_verifier::test_support::{self, filler_leaf};

    use super::*;

    fn at(i: u64) -> usize {
        usize::try_from(i).unwrap()
    }

    /// Tiles in memory, as the vault keeps them in RocksDB.
    #[derive(Default)]
    struct Memory(HashMap<TileId, Vec<u8>>);

    impl NodeSource for Memory {
        fn node(&self, height: u32, index: u64) -> Result<Hash, Error> {
            let (tile, row, position) = locate(height, index);
            let blob = self.0.get(&tile).ok_or(Error::Corrupt {
                what: format!("missing tile {tile:?}"),
            })?;
            TileBlob::parse(tile, blob)?
                .node(row, position)
                .ok_or(Error::Corrupt {
                    what: format!("tile {tile:?} lacks node {height}/{index}"),
                })
        }
    }

    fn grow(memory: &mut Memory, frontier: &mut Frontier, leaves: &[Hash]) {
        for (id, blob) in frontier.append(leaves) {
            memory.0.insert(id, blob);
        }
    }

    #[test]
    fn multi_leaf_proofs_give_the_rfc_root_and_fail_when_altered() {
        let leaves: Vec<Hash> = (0..10_007).map(filler_leaf).collect();
        let mut memory = Memory::default();
        let mut frontier = Frontier::default();
        grow(&mut memory, &mut frontier, &leaves);
        let n = leaves.len() as u64;
        let expected = test_support::mth(&leaves);
        let pick = |sel: &[u64]| sel.iter().map(|&i| leaves[at(i)]).collect::<Vec<_>>();
        // One leaf: the inclusion proof's hashes.
        let one = multi_proof(&memory, &[777], n).unwrap();
        let mut path = inclusion_proof(&memory, 777, n).unwrap();
        path.sort_unstable();
        let mut sorted = one.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, path);
        let all: Vec<u64> = (0..n).collect();
        let runs: Vec<u64> = (0..n).filter(|i| i % 97 < 13 || *i > 9_990).collect();
        for (what, sel) in [
            ("one", vec![777]),
            ("first and last", vec![0, n - 1]),
            ("runs", runs),
            ("all", all),
            ("none", vec![]),
        ] {
            let proof = multi_proof(&memory, &sel, n).unwrap();
            assert_eq!(proof.len(), multi_proof_len(&sel, 0, n), "{what}");
            let hashes = pick(&sel);
            for threads in [1, 2, 8] {
                assert_eq!(
                    multi_root(&sel, &hashes, n, &proof, threads),
                    Ok(expected),
                    "{what}, {threads} threads"
                );
            }
            // Any altered hash, leaf or proof, changes the root.
            if let Some(first) = proof.first() {
                let mut bad = proof.clone();
                bad[0][0] ^= first[0] | 1;
                assert_ne!(
                    multi_root(&sel, &hashes, n, &bad, 2),
                    Ok(expected),
                    "{what}"
                );
                assert_eq!(
                    multi_root(&sel, &hashes, n, &proof[1..], 2),
                    Err(MultiProofError::TooShort)
                );
                let mut longer = proof.clone();
                longer.push([0; 32]);
                assert_eq!(
                    multi_root(&sel, &hashes, n, &longer, 2),
                    Err(MultiProofError::TooLong)
                );
            }
            if let Some(&i) = sel.last() {
                let mut bad = hashes.clone();
                bad[sel.len() - 1][31] ^= 1;
                assert_ne!(
                    multi_root(&sel, &bad, n, &proof, 2),
                    Ok(expected),
                    "leaf {i}"
                );
            }
        }
        assert_eq!(
            multi_root(&[3, 3], &[[0; 32]; 2], n, &[], 1),
            Err(MultiProofError::Leaves)
        );
        assert!(multi_proof(&memory, &[n], n).is_err());
    }

    #[test]
    fn roots_and_proofs_match_the_rfc_definition() {
        // Batches of awkward sizes, so tiles fill across batch boundaries at every level.
        let leaves: Vec<Hash> = (0..70_000).map(filler_leaf).collect();
        let mut memory = Memory::default();
        let mut frontier = Frontier::default();
        let mut at = 0;
        for batch in [1, 2, 253, 1, 512, 3000, 65_000, 1231] {
            grow(&mut memory, &mut frontier, &leaves[at..at + batch]);
            at += batch;
            let size = at as u64;
            assert_eq!(
                frontier.root(),
                test_support::mth(&leaves[..at]),
                "frontier root at {size}"
            );
            assert_eq!(
                root(&memory, size).unwrap(),
                frontier.root(),
                "tile root at {size}"
            );
        }
        let size = at as u64;
        let full = root(&memory, size).unwrap();
        for m in [
            0u64,
            1,
            255,
            256,
            257,
            65_535,
            65_536,
            65_537,
            size - 2,
            size - 1,
        ] {
            let proof = inclusion_proof(&memory, m, size).unwrap();
            assert_eq!(
                proof,
                test_support::inclusion_proof(&leaves[..at], self::at(m)),
                "PATH({m})"
            );
            verify_inclusion(&leaves[self::at(m)], m, size, &proof, &full).unwrap();
        }
        for old in [1u64, 2, 3, 255, 256, 257, 4096, 65_536, 69_999, size] {
            let proof = consistency_proof(&memory, old, size).unwrap();
            assert_eq!(
                proof,
                test_support::consistency_proof(&leaves[..at], self::at(old)),
                "PROOF({old})"
            );
            let old_root = root(&memory, old).unwrap();
            verify_consistency(old, size, &proof, &old_root, &full).unwrap();
        }
        // proofs at an older size are still served from the same tiles
        let proof = inclusion_proof(&memory, 100, 300).unwrap();
        assert_eq!(proof, test_support::inclusion_proof(&leaves[..300], 100));
    }

    #[test]
    fn frontier_reloads_from_tiles() {
        let leaves: Vec<Hash> = (0..66_000).map(filler_leaf).collect();
        let mut memory = Memory::default();
        let mut frontier = Frontier::default();
        grow(&mut memory, &mut frontier, &leaves);
        let loaded = Frontier::load(frontier.size(), |id| {
            let blob = TileBlob::parse(id, &memory.0[&id])?;
            Ok(blob
                .row0()
                .chunks(32)
                .map(|c| c.try_into().unwrap())
                .collect())
        })
        .unwrap();
        assert_eq!(loaded, frontier);
    }

    #[test]
    fn locate_maps_nodes_to_tiles() {
        assert_eq!(locate(0, 0), (TileId { level: 0, index: 0 }, 0, 0));
        assert_eq!(locate(0, 257), (TileId { level: 0, index: 1 }, 0, 1));
        assert_eq!(locate(3, 33), (TileId { level: 0, index: 1 }, 3, 1));
        assert_eq!(locate(8, 5), (TileId { level: 1, index: 0 }, 0, 5));
        assert_eq!(locate(15, 3), (TileId { level: 1, index: 1 }, 7, 1));
        assert_eq!(locate(16, 300), (TileId { level: 2, index: 1 }, 0, 44));
    }

    #[test]
    fn malformed_blobs_are_corrupt() {
        let id = TileId { level: 0, index: 0 };
        assert!(TileBlob::parse(id, &[]).is_err());
        assert!(TileBlob::parse(id, &[0, 0]).is_err());
        let mut blob = build_tile(&[[1; 32]; 3]);
        assert!(TileBlob::parse(id, &blob).is_ok());
        blob.pop();
        assert!(TileBlob::parse(id, &blob).is_err());
    }
}
