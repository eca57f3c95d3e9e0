//! The evidence pack's log sections as `cairn audit verify` checks them (docs/audit.md, "How a pack
//! is verified"): the multi-leaf proof of each section (`vault/src/tree/verify.rs`, compiled here
//! from its source file) on arbitrary bytes, in two ways.
//!
//! 1. The input as a pack: for each section that decodes, `multi_root` over its runs and proof,
//!    at the size its checkpoint names (or just past its last index), never panics and allocates
//!    within the budget, whatever the indices, sizes and proof lengths.
//! 2. The input as a tree and a selection: a tree of 1 to 300 leaves, the selected leaves and a
//!    proof made by the RFC 9162 §2.1.1 recursion written out here (the oracle). `multi_root`
//!    gives the tree's root; with one proof hash or one leaf hash changed, or the proof one hash
//!    short or long, it never gives that root.
#![no_main]

use cairn_verifier::crypto::{Crypto as _, Software};
use cairn_verifier::merkle::{leaf_hash, node_hash};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::pack::{Pack, Section};
use cairn_verifier::types::Hash;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

/// The vault's multi-leaf proof verification, from its source file (the vault crate links
/// RocksDB, which the sanitizer build does not need).
#[path = "../../vault/src/tree/verify.rs"]
mod verify;

fn section_roots(section: &Section<'_>) {
    let (indices, hashes): (Vec<u64>, Vec<Hash>) = section
        .runs
        .iter()
        .flat_map(|r| {
            (r.start..)
                .zip(&r.entries)
                .map(|(i, (h, _))| (i, *h))
        })
        .unzip();
    let size = Checkpoint::parse(section.checkpoint).map_or_else(
        |_| indices.last().map_or(0, |&i| i.saturating_add(1)),
        |cp| cp.size.0,
    );
    let _ = verify::multi_root(&indices, &hashes, size, &section.proof, 2);
}

/// RFC 9162 §2.1.1 MTH of `leaves`.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Software.sha256_of(&[]),
        1 => leaves[0],
        n => {
            let k = 1 << (n - 1).ilog2();
            node_hash(&Software, &mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The hashes a verifier needs besides the selected leaves: the MTH of every maximal subtree
/// with no selected leaf, left to right.
fn oracle_proof(leaves: &[Hash], selected: &[bool], out: &mut Vec<Hash>) {
    if !selected.contains(&true) {
        out.push(mth(leaves));
    } else if leaves.len() > 1 {
        let k = 1 << (leaves.len() - 1).ilog2();
        oracle_proof(&leaves[..k], &selected[..k], out);
        oracle_proof(&leaves[k..], &selected[k..], out);
    }
}

fn tree_case(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let n = 1 + usize::from(first) + rest.first().map_or(0, |&b| usize::from(b % 45));
    let leaves: Vec<Hash> = (0..n)
        .map(|i| leaf_hash(&Software, &i.to_be_bytes()))
        .collect();
    let selected: Vec<bool> = (0..n)
        .map(|i| rest.get(1 + i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect();
    let (indices, hashes): (Vec<u64>, Vec<Hash>) = (0u64..)
        .zip(&leaves)
        .zip(&selected)
        .filter(|(_, s)| **s)
        .map(|((i, h), _)| (i, *h))
        .unzip();
    let mut proof = Vec::new();
    oracle_proof(&leaves, &selected, &mut proof);
    let size = n as u64;
    let root = mth(&leaves);
    assert_eq!(
        verify::multi_proof_len(&indices, 0, size),
        proof.len(),
        "proof length"
    );
    assert_eq!(verify::multi_root(&indices, &hashes, size, &proof, 2), Ok(root));
    let pick = rest.last().map_or(0, |&b| usize::from(b));
    if !proof.is_empty() {
        let mut bad = proof.clone();
        bad[pick % proof.len()][pick % 32] ^= 1;
        assert_ne!(verify::multi_root(&indices, &hashes, size, &bad, 2), Ok(root));
        assert!(verify::multi_root(&indices, &hashes, size, &proof[1..], 2).is_err());
    }
    if !hashes.is_empty() {
        let mut bad = hashes.clone();
        bad[pick % hashes.len()][pick % 32] ^= 0x80;
        assert_ne!(verify::multi_root(&indices, &bad, size, &proof, 2), Ok(root));
    }
    let mut long = proof.clone();
    long.push(root);
    assert!(verify::multi_root(&indices, &hashes, size, &long, 2).is_err());
}

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        if let Ok(pack) = Pack::decode(data) {
            section_roots(&pack.signer);
            section_roots(&pack.relay);
        }
        tree_case(data);
    });
});
