//! RFC 9162 §2.1 Merkle tree hashing and proof verification.
//!
//! Leaf hash `SHA-256(0x00 || entry)`, interior node `SHA-256(0x01 || left || right)`. Inclusion
//! proofs are verified with the algorithm of RFC 9162 §2.1.3.2 and consistency proofs with that of
//! §2.1.4.2, after checking that the proof has exactly the number of hashes the sizes require (the
//! checks of transparency-dev/merkle, whose vectors the tests run). Two policy rules are stricter than
//! the RFC text, as the vectors require: leaf hashes are exactly 32 bytes (enforced by the type) and
//! a consistency proof from size 0 is always an error.

use crate::crypto::{Crypto, Sha256, Software};
use crate::error::ProofError;
use crate::types::Hash;

/// RFC 9162 §2.1.1 domain separation prefix of a leaf.
pub const LEAF_PREFIX: u8 = 0x00;
/// RFC 9162 §2.1.1 domain separation prefix of an interior node.
pub const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(crypto: &impl Crypto, entry: &[u8]) -> Hash {
    let mut h = crypto.sha256();
    h.update(&[LEAF_PREFIX]);
    h.update(entry);
    h.finish()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(crypto: &impl Crypto, left: &Hash, right: &Hash) -> Hash {
    let mut h = crypto.sha256();
    h.update(&[NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finish()
}

/// Number of hashes in an inclusion proof for `index` in a tree of `size` leaves (`index < size`).
///
/// The proof has one hash per level where the path to the root has a sibling: the levels below
/// the point where `index` and `size - 1` diverge (inner) and, above it, the levels where the
/// path is a right child (border).
pub fn inclusion_proof_len(index: u64, size: u64) -> u64 {
    let inner = 64 - (index ^ size.saturating_sub(1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    u64::from(inner.saturating_add(border))
}

/// Number of hashes in a consistency proof from `size1` to `size2` (`0 < size1 < size2`).
pub fn consistency_proof_len(size1: u64, size2: u64) -> u64 {
    let level = size1.trailing_zeros();
    let index = size1.saturating_sub(1).checked_shr(level).unwrap_or(0);
    let size = size2
        .saturating_sub(1)
        .checked_shr(level)
        .unwrap_or(0)
        .saturating_add(1);
    let seed = u64::from(!size1.is_power_of_two());
    inclusion_proof_len(index, size).saturating_add(seed)
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1-4).
pub fn inclusion_root<C: Crypto, P>(
    crypto: &C,
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: P,
) -> Result<Hash, ProofError>
where
    P: IntoIterator<Item = Hash>,
    P::IntoIter: ExactSizeIterator,
{
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    let proof = proof.into_iter();
    let expected = inclusion_proof_len(index, size);
    let got = proof.len() as u64;
    if got != expected {
        return Err(ProofError::WrongLength { expected, got });
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength { expected, got });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(crypto, &p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(crypto, &r, &p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength { expected, got });
    }
    Ok(r)
}

/// Verifies that `leaf` (a leaf hash) is at `index` in the tree of `size` leaves with `root`.
pub fn verify_inclusion_with<C: Crypto, P>(
    crypto: &C,
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: P,
    root: &Hash,
) -> Result<(), ProofError>
where
    P: IntoIterator<Item = Hash>,
    P::IntoIter: ExactSizeIterator,
{
    let computed = inclusion_root(crypto, leaf, index, size, proof)?;
    if ct_eq(&computed, root) {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// [`verify_inclusion_with`] using the [`Software`] backend.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    verify_inclusion_with(&Software, leaf, index, size, proof.iter().copied(), root)
}

/// Verifies that the tree of `size1` leaves with `root1` is a prefix of the tree of `size2`
/// leaves with `root2` (RFC 9162 §2.1.4.2).
pub fn verify_consistency_with<C: Crypto, P>(
    crypto: &C,
    size1: u64,
    size2: u64,
    proof: P,
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError>
where
    P: IntoIterator<Item = Hash>,
    P::IntoIter: ExactSizeIterator,
{
    let mut proof = proof.into_iter();
    let got = proof.len() as u64;
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::BadSizes {
            from: size1,
            to: size2,
        });
    }
    if size1 == size2 {
        if got != 0 {
            return Err(ProofError::WrongLength { expected: 0, got });
        }
        return if ct_eq(root1, root2) {
            Ok(())
        } else {
            Err(ProofError::EqualSizeRootsDiffer)
        };
    }
    let expected = consistency_proof_len(size1, size2);
    if got != expected {
        return Err(ProofError::WrongLength { expected, got });
    }
    // Step 2: if size1 is a power of two, its root is the first node of the path.
    let first = if size1.is_power_of_two() {
        *root1
    } else {
        proof
            .next()
            .ok_or(ProofError::WrongLength { expected, got })?
    };
    // Steps 3-4.
    let mut f = size1 - 1;
    let mut s = size2 - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let mut fr = first;
    let mut sr = first;
    // Step 6.
    for c in proof {
        if s == 0 {
            return Err(ProofError::WrongLength { expected, got });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(crypto, &c, &fr);
            sr = node_hash(crypto, &c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(crypto, &sr, &c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if s == 0 && ct_eq(&fr, root1) && ct_eq(&sr, root2) {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// [`verify_consistency_with`] using the [`Software`] backend.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    verify_consistency_with(&Software, size1, size2, proof.iter().copied(), root1, root2)
}

/// Constant-time equality of two hashes (roots and digests are public, but there is no reason to
/// leak where they differ).
pub(crate) fn ct_eq(a: &Hash, b: &Hash) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_lengths_match_definition() {
        // sizes from the 8-leaf RFC 6962 example
        assert_eq!(inclusion_proof_len(0, 8), 3);
        assert_eq!(inclusion_proof_len(6, 7), 2);
        assert_eq!(inclusion_proof_len(0, 1), 0);
        assert_eq!(consistency_proof_len(3, 7), 4);
        assert_eq!(consistency_proof_len(4, 7), 1);
        assert_eq!(consistency_proof_len(6, 7), 3);
        assert_eq!(consistency_proof_len(1, 2), 1);
    }
}
