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

/// The number of proof hashes [`multi_proof`] gives for `selected` in a tree of `n` leaves.
pub fn multi_proof_len(selected: &[u64], start: u64, n: u64) -> usize {
    if selected.is_empty() {
        return 1;
    }
    // Strictly increasing within the subtree: as many as its leaves means all of them.
    if selected.len() as u64 == n {
        return 0;
    }
    let k = split(n);
    let mid = selected.partition_point(|&i| i < start + k);
    multi_proof_len(&selected[..mid], start, k)
        + multi_proof_len(&selected[mid..], start + k, n - k)
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
    if indices.len() != hashes.len()
        || indices.windows(2).any(|w| w[0] >= w[1])
        || indices.last().is_some_and(|&i| i >= n)
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
    let need = multi_proof_len(indices, 0, n);
    match need.cmp(&proof.len()) {
        std::cmp::Ordering::Greater => return Err(MultiProofError::TooShort),
        std::cmp::Ordering::Less => return Err(MultiProofError::TooLong),
        std::cmp::Ordering::Equal => {}
    }
    let depth = threads.max(1).next_power_of_two().trailing_zeros();
    Ok(multi_fold(indices, hashes, 0, n, proof, depth))
}

/// The root of `start .. start + n`, with `proof` exactly the hashes this subtree needs.
fn multi_fold(
    indices: &[u64],
    hashes: &[Hash],
    start: u64,
    n: u64,
    proof: &[Hash],
    depth: u32,
) -> Hash {
    if indices.is_empty() {
        return proof[0];
    }
    if n == 1 {
        return hashes[0];
    }
    let k = split(n);
    let mid = indices.partition_point(|&i| i < start + k);
    let (li, ri) = indices.split_at(mid);
    let (lh, rh) = hashes.split_at(mid);
    let (lp, rp) = proof.split_at(multi_proof_len(li, start, k));
    let (left, right) = if depth > 0 && indices.len() > 4096 {
        std::thread::scope(|s| {
            let left = s.spawn(|| multi_fold(li, lh, start, k, lp, depth - 1));
            let right = multi_fold(ri, rh, start + k, n - k, rp, depth - 1);
            (
                left.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                right,
            )
        })
    } else {
        (
            multi_fold(li, lh, start, k, lp, 0),
            multi_fold(ri, rh, start + k, n - k, rp, 0),
        )
    };
    node_hash(&Software, &left, &right)
}
