//! The verifier's side of multi-leaf proofs (docs/audit.md, "Multi-leaf proofs"): the root of a
//! tree from some of its leaves and the proof [`super::multi_proof`] gives. Everything here reads
//! untrusted input (an evidence pack's sections), and depends on `cairn-verifier` only: the
//! `pack_proof` fuzz target compiles this file from its source.

use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::merkle::node_hash;
use cairn_verifier::types::Hash;

/// Largest power of two strictly smaller than `n` (`n >= 2`).
pub(crate) fn split(n: u64) -> u64 {
    1 << (n - 1).ilog2()
}

/// Why a multi-leaf proof did not give a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiProofError {
    /// The leaves are not strictly increasing or one is beyond the tree.
    Leaves,
    /// The proof has fewer hashes than the leaves need.
    TooShort,
    /// The proof has hashes left over.
    TooLong,
}

impl std::fmt::Display for MultiProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MultiProofError::Leaves => "the leaves are out of order or beyond the tree",
            MultiProofError::TooShort => "the proof has fewer hashes than the tree needs",
            MultiProofError::TooLong => "the proof has more hashes than the tree needs",
        })
    }
}

/// The leaves a multi-leaf proof is checked for: their indices (strictly increasing) and their
/// leaf hashes, by position. [`multi_root`] takes them as two slices; a caller that holds them
/// in a table of its own gives the table to [`multi_root_of`] rather than copy them out
/// (docs/scale.md).
pub trait Leaves: Sync {
    /// How many leaves.
    fn count(&self) -> usize;
    /// The index of the leaf at `position`.
    fn index(&self, position: usize) -> u64;
    /// The leaf hash of the leaf at `position`.
    fn hash(&self, position: usize) -> &Hash;
}

/// Indices and hashes in two slices of the same length.
struct Split<'a> {
    indices: &'a [u64],
    hashes: &'a [Hash],
}

impl Leaves for Split<'_> {
    fn count(&self) -> usize {
        self.indices.len()
    }
    fn index(&self, position: usize) -> u64 {
        self.indices[position]
    }
    fn hash(&self, position: usize) -> &Hash {
        &self.hashes[position]
    }
}

/// The first position in `lo..hi` whose index (`index`, increasing over `lo..hi`) is not below
/// `bound`: `partition_point` on a slice.
fn first_from(index: &impl Fn(usize) -> u64, lo: usize, hi: usize, bound: u64) -> usize {
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if index(mid) < bound {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The number of proof hashes [`multi_proof`] gives for `selected` in a tree of `n` leaves.
pub fn multi_proof_len(selected: &[u64], start: u64, n: u64) -> usize {
    proof_len(&|i| selected[i], 0, selected.len(), start, n)
}

/// [`multi_proof_len`] of the leaves at positions `lo..hi`, whose indices `index` gives.
fn proof_len(index: &impl Fn(usize) -> u64, lo: usize, hi: usize, start: u64, n: u64) -> usize {
    if lo == hi {
        return 1;
    }
    // Strictly increasing within the subtree: as many as its leaves means all of them.
    if (hi - lo) as u64 == n {
        return 0;
    }
    let k = split(n);
    let mid = first_from(index, lo, hi, start + k);
    proof_len(index, lo, mid, start, k) + proof_len(index, mid, hi, start + k, n - k)
}

/// Recomputes the root of the tree of `n` leaves from the leaf hashes of `leaves` (indices
/// strictly increasing, below `n`, with `hashes` in the same order) and a [`multi_proof`]. The
/// work is split over up to `threads` threads. The caller compares the result with a signed
/// checkpoint's root.
pub fn multi_root(
    indices: &[u64],
    hashes: &[Hash],
    n: u64,
    proof: &[Hash],
    threads: usize,
) -> Result<Hash, MultiProofError> {
    if indices.len() != hashes.len() {
        return Err(MultiProofError::Leaves);
    }
    multi_root_of(&Split { indices, hashes }, n, proof, threads)
}

/// [`multi_root`] of leaves the caller holds in a table of its own ([`Leaves`]).
pub fn multi_root_of<L: Leaves + ?Sized>(
    leaves: &L,
    n: u64,
    proof: &[Hash],
    threads: usize,
) -> Result<Hash, MultiProofError> {
    let count = leaves.count();
    if (1..count).any(|i| leaves.index(i - 1) >= leaves.index(i))
        || (count > 0 && leaves.index(count - 1) >= n)
    {
        return Err(MultiProofError::Leaves);
    }
    if n == 0 {
        return if proof.is_empty() {
            Ok(Software.sha256_of(&[]))
        } else {
            Err(MultiProofError::TooLong)
        };
    }
    let need = proof_len(&|i| leaves.index(i), 0, count, 0, n);
    match need.cmp(&proof.len()) {
        std::cmp::Ordering::Greater => return Err(MultiProofError::TooShort),
        std::cmp::Ordering::Less => return Err(MultiProofError::TooLong),
        std::cmp::Ordering::Equal => {}
    }
    let depth = threads.max(1).next_power_of_two().trailing_zeros();
    Ok(multi_fold(leaves, 0, count, 0, n, proof, depth))
}

/// The root of `start .. start + n` from the leaves at positions `lo..hi`, with `proof` exactly
/// the hashes this subtree needs.
fn multi_fold<L: Leaves + ?Sized>(
    leaves: &L,
    lo: usize,
    hi: usize,
    start: u64,
    n: u64,
    proof: &[Hash],
    depth: u32,
) -> Hash {
    if lo == hi {
        return proof[0];
    }
    if n == 1 {
        return *leaves.hash(lo);
    }
    let k = split(n);
    let index = |i| leaves.index(i);
    let mid = first_from(&index, lo, hi, start + k);
    let (lp, rp) = proof.split_at(proof_len(&index, lo, mid, start, k));
    let (left, right) = if depth > 0 && hi - lo > 4096 {
        std::thread::scope(|s| {
            let left = s.spawn(|| multi_fold(leaves, lo, mid, start, k, lp, depth - 1));
            let right = multi_fold(leaves, mid, hi, start + k, n - k, rp, depth - 1);
            (
                left.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                right,
            )
        })
    } else {
        (
            multi_fold(leaves, lo, mid, start, k, lp, 0),
            multi_fold(leaves, mid, hi, start + k, n - k, rp, 0),
        )
    };
    node_hash(&Software, &left, &right)
}
