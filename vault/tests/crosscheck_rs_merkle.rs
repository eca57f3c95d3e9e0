//! Cross-check: `rs_merkle` (1.5) with RFC 9162 domain separation builds the RFC 9162 tree.
//!
//! `fsck` re-hashes every full tile with rs_merkle (`cairn_vault::fsck::rs_merkle_root`) as a check
//! independent of cairn's own tree code; that check only means something if rs_merkle's tree is the
//! RFC's. rs_merkle builds bottom-up and promotes an unpaired node to the next layer unchanged; with
//! leaves that are already `SHA-256(0x00 || entry)` and pairs hashed as `SHA-256(0x01 || l || r)`,
//! that is the RFC 9162 §2.1.1 tree (MTH splits at the largest power of two below n, which puts
//! exactly the bottom-up unpaired nodes on the right border). Shown here:
//!
//! 1. with the RFC 6962 8-leaf literals from transparency-dev/merkle
//!    (`verifier-nostd/tests/vectors/merkle/rfc6962-literals.json`), leaf hashes computed here with
//!    RustCrypto's `sha2`: `rs_merkle_root` gives the published root of every size 1..=8 (rs_merkle
//!    has no root for the empty tree; RFC 9162 defines it as `SHA-256("")`, and tiles are never
//!    empty), and rs_merkle verifies every published inclusion proof;
//! 2. for every size 1..=300: `rs_merkle_root` equals the textbook recursive
//!    `cairn_verifier::test_support::mth`;
//! 3. for every index of every tree of up to 70 leaves: rs_merkle's own proof
//!    (`MerkleTree::proof(&[i]).proof_hashes()`) is exactly the RFC 9162 §2.1.3.1 audit path
//!    `test_support::inclusion_proof` in the same order (leaf to root; rs_merkle omits the layers
//!    where the node is promoted unpaired, which are exactly the levels the RFC path skips), and
//!    rs_merkle's `MerkleProof::verify` accepts the RFC path.

#![expect(clippy::cast_possible_truncation, reason = "test sizes are small")]

use cairn_vault::fsck::rs_merkle_root;
use cairn_verifier::test_support;
use cairn_verifier::types::Hash;
use sha2_010::{Digest as _, Sha256};

/// RFC 9162 hashing for rs_merkle, written here independently of the one in `fsck`.
#[derive(Clone)]
struct Rfc9162;

impl rs_merkle::Hasher for Rfc9162 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => Sha256::new()
                .chain_update([0x01])
                .chain_update(left)
                .chain_update(right)
                .finalize()
                .into(),
            None => *left,
        }
    }
}

type Tree = rs_merkle::MerkleTree<Rfc9162>;

fn leaf(entry: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(entry)
        .finalize()
        .into()
}

fn hex32(s: &serde_json::Value) -> Hash {
    hex::decode(s.as_str().expect("a hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

fn literals() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../verifier-nostd/tests/vectors/merkle/rfc6962-literals.json"
    );
    serde_json::from_slice(&std::fs::read(path).expect("the RFC 6962 literals")).expect("JSON")
}

/// Deterministic distinct leaf hashes.
fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u32).map(|i| leaf(&i.to_be_bytes())).collect()
}

#[test]
fn rs_merkle_gives_the_rfc6962_roots_of_the_reference_tree() {
    let v = literals();
    let inputs: Vec<Vec<u8>> = v["leaf_inputs_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| hex::decode(s.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(inputs.len(), 8);
    let hashes: Vec<Hash> = inputs.iter().map(|e| leaf(e)).collect();
    let published: Vec<Hash> = v["node_hashes_by_level"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(hex32)
        .collect();
    assert_eq!(hashes, published, "leaf hashes");

    let roots: Vec<Hash> = v["root_hashes_by_tree_size"]
        .as_array()
        .unwrap()
        .iter()
        .map(hex32)
        .collect();
    assert_eq!(roots.len(), 9, "roots of sizes 0..=8");
    assert_eq!(roots[0], <[u8; 32]>::from(Sha256::digest(b"")));
    assert_eq!(
        rs_merkle_root(&[]),
        None,
        "rs_merkle has no empty-tree root"
    );
    for size in 1..=8 {
        assert_eq!(
            rs_merkle_root(&hashes[..size]),
            Some(roots[size]),
            "root of size {size}"
        );
        assert_eq!(test_support::mth(&hashes[..size]), roots[size]);
    }

    // rs_merkle verifies every published RFC 6962 inclusion proof, and produces the same one.
    let mut proofs = 0;
    for p in v["inclusion_proofs"].as_array().unwrap() {
        let index = p["leaf_index"].as_u64().unwrap() as usize;
        let size = p["tree_size"].as_u64().unwrap() as usize;
        let path: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(hex32).collect();
        let root = hex32(&p["root"]);
        assert_eq!(hex32(&p["leaf_hash"]), hashes[index]);
        assert!(
            rs_merkle::MerkleProof::<Rfc9162>::new(path.clone()).verify(
                root,
                &[index],
                &[hashes[index]],
                size
            ),
            "published proof of {index} in {size}"
        );
        assert_eq!(
            Tree::from_leaves(&hashes[..size])
                .proof(&[index])
                .proof_hashes(),
            path.as_slice()
        );
        proofs += 1;
    }
    assert_eq!(proofs, 7, "the published inclusion proofs");
}

#[test]
fn rs_merkle_root_is_the_rfc9162_root_for_every_size_up_to_300() {
    let all = leaves(300);
    for size in 1..=300 {
        assert_eq!(
            rs_merkle_root(&all[..size]),
            Some(test_support::mth(&all[..size])),
            "size {size}"
        );
    }
}

#[test]
fn rs_merkle_proofs_are_the_rfc9162_audit_paths() {
    let all = leaves(70);
    let mut checked = 0;
    for size in 1..=70 {
        let tree = Tree::from_leaves(&all[..size]);
        let root = test_support::mth(&all[..size]);
        assert_eq!(tree.root(), Some(root));
        for index in 0..size {
            let rfc = test_support::inclusion_proof(&all[..size], index);
            let ours = tree.proof(&[index]);
            assert_eq!(
                ours.proof_hashes(),
                rfc.as_slice(),
                "index {index} of {size}"
            );
            assert!(
                rs_merkle::MerkleProof::<Rfc9162>::new(rfc).verify(
                    root,
                    &[index],
                    &[all[index]],
                    size
                ),
                "rs_merkle rejects the RFC path of {index} in {size}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 70 * 71 / 2);
}
