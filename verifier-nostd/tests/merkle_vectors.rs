//! Property: the RFC 9162 proof verifiers accept exactly the proofs transparency-dev/merkle's
//! known-answer vectors say are valid, and the reference tree functions in `test_support` (which
//! other tests use to build deliveries) reproduce the classic RFC 6962 8-leaf tree literally.
//!
//! The vectors are an in-repo copy of `../shared/vectors` (provenance in `tests/vectors/README.md`),
//! so this suite runs without the shared directory; [`in_repo_copy_matches_shared_vectors`] checks
//! that the copy has not drifted whenever the shared directory is present.
//!
//! Vector policy (shared/vectors/README.md), stricter than the RFC text:
//! - a leaf hash that is not exactly 32 bytes, or a proof element that is not 32 bytes, is an error
//!   (our API takes `[u8; 32]`, so a failed conversion is the expected error);
//! - a consistency proof from size 0 is always an error.
//!
//! A few vectors use placeholder roots that are not 32 bytes ("don't care 1"). A root is only ever
//! compared for equality, so such a root is passed as SHA-256 of its bytes: two placeholders stay
//! equal exactly when their bytes are, and none can equal a computed 32-byte root.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::merkle::{
    NODE_PREFIX, consistency_proof_len, inclusion_proof_len, leaf_hash, node_hash,
    verify_consistency, verify_inclusion,
};
use cairn_verifier::test_support::{consistency_proof, inclusion_proof, mth, root_and_path};
use cairn_verifier::types::Hash;
use serde::Deserialize;

/// Files per case folder in transparency-dev/merkle `testdata/` at commit 417fb0c3 (counted when
/// the vectors were imported). A folder that goes missing or is skipped fails the tests.
const INCLUSION_FOLDERS: &[(&str, usize)] = &[
    ("0", 13),
    ("1", 18),
    ("2", 18),
    ("3", 15),
    ("4", 18),
    ("additional/0", 3),
    ("additional/1", 3),
    ("additional/2", 3),
    ("additional/3", 3),
    ("single-entry", 4),
];
const CONSISTENCY_FOLDERS: &[(&str, usize)] = &[
    ("0", 1),
    ("1", 21),
    ("2", 21),
    ("3", 20),
    ("4", 21),
    ("additional", 14),
];

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn shared_vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

/// Every `*.json` under `dir`, recursively, keyed by the path relative to `root`.
fn json_files(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, path);
        }
    }
}

fn all_files(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, fs::read(&path).unwrap());
        }
    }
}

fn b64(s: &str) -> Vec<u8> {
    Base64::decode_vec(s).unwrap_or_else(|e| panic!("bad base64 {s:?} in a vector: {e}"))
}

/// A vector's hash field under the policy: exactly 32 bytes or an error.
fn hash32(bytes: &[u8]) -> Option<Hash> {
    Hash::try_from(bytes).ok()
}

/// A root is compared, never parsed: non-32-byte placeholders are mapped injectively.
fn root(bytes: &[u8]) -> Hash {
    hash32(bytes).unwrap_or_else(|| Software.sha256_of(&[b"placeholder root", bytes]))
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn unhex32(s: &str) -> Hash {
    Hash::try_from(unhex(s).as_slice()).unwrap()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InclusionCase {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsistencyCase {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

/// Runs one inclusion vector; returns whether the verifier rejected it.
fn run_inclusion(case: &InclusionCase) -> bool {
    let Some(leaf) = hash32(&b64(&case.leaf_hash)) else {
        return true; // policy: a leaf hash is exactly 32 bytes
    };
    let proof: Option<Vec<Hash>> = case
        .proof
        .iter()
        .flatten()
        .map(|p| hash32(&b64(p)))
        .collect();
    let Some(proof) = proof else {
        return true; // policy: every proof element is exactly 32 bytes
    };
    let root = root(&b64(&case.root));
    verify_inclusion(&leaf, case.leaf_idx, case.tree_size, &proof, &root).is_err()
}

/// Runs one consistency vector; returns whether the verifier rejected it.
fn run_consistency(case: &ConsistencyCase) -> bool {
    let proof: Option<Vec<Hash>> = case
        .proof
        .iter()
        .flatten()
        .map(|p| hash32(&b64(p)))
        .collect();
    let Some(proof) = proof else {
        return true; // policy: every proof element is exactly 32 bytes
    };
    let (root1, root2) = (root(&b64(&case.root1)), root(&b64(&case.root2)));
    let result = verify_consistency(case.size1, case.size2, &proof, &root1, &root2);
    if case.size1 == 0 {
        // policy: the verifier itself must refuse size 0, not merely fail to match
        assert!(
            matches!(
                result,
                Err(cairn_verifier::error::ProofError::BadSizes { from: 0, .. })
            ),
            "consistency from size 0 must be BadSizes, got {result:?}"
        );
    }
    result.is_err()
}

/// Loads every case of one kind, checks the folder counts, and returns (relative path, file).
fn cases(kind: &str, folders: &[(&str, usize)]) -> BTreeMap<String, PathBuf> {
    let root = vectors().join("merkle/testdata").join(kind);
    let mut files = BTreeMap::new();
    json_files(&root, &root, &mut files);
    let mut per_folder: BTreeMap<String, usize> = BTreeMap::new();
    for rel in files.keys() {
        let folder = Path::new(rel)
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        *per_folder.entry(folder).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> =
        folders.iter().map(|&(f, n)| (f.to_owned(), n)).collect();
    assert_eq!(per_folder, expected, "{kind} vector folders changed");
    files
}

#[test]
fn inclusion_vectors() {
    let files = cases("inclusion", INCLUSION_FOLDERS);
    let mut run = 0usize;
    let mut accepted = 0usize;
    for (rel, path) in &files {
        let case: InclusionCase = serde_json::from_slice(&fs::read(path).unwrap())
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        let rejected = run_inclusion(&case);
        assert_eq!(
            rejected, case.want_err,
            "inclusion/{rel} ({}): rejected = {rejected}",
            case.desc
        );
        run += 1;
        accepted += usize::from(!rejected);
    }
    let total: usize = INCLUSION_FOLDERS.iter().map(|&(_, n)| n).sum();
    assert_eq!(run, total);
    assert_eq!(run, 98);
    // every numbered folder and single-entry has a happy path; additional/* are all negative
    assert_eq!(accepted, 6, "positive inclusion cases");
}

#[test]
fn consistency_vectors() {
    let files = cases("consistency", CONSISTENCY_FOLDERS);
    let mut run = 0usize;
    let mut accepted = 0usize;
    for (rel, path) in &files {
        let case: ConsistencyCase = serde_json::from_slice(&fs::read(path).unwrap())
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        let want_err = case.want_err || case.size1 == 0;
        let rejected = run_consistency(&case);
        assert_eq!(
            rejected, want_err,
            "consistency/{rel} ({}): rejected = {rejected}",
            case.desc
        );
        run += 1;
        accepted += usize::from(!rejected);
    }
    let total: usize = CONSISTENCY_FOLDERS.iter().map(|&(_, n)| n).sum();
    assert_eq!(run, total);
    assert_eq!(run, 98);
    // one happy path per numbered folder, plus "sizes are equal (one) and proof is empty"
    assert_eq!(accepted, 6, "positive consistency cases");
}

/// The policy cases are real: a 31- or 33-byte leaf hash cannot even be expressed, and the
/// verifier rejects size-0 consistency even when everything else would match.
#[test]
fn policy_cases() {
    assert!(hash32(&[0u8; 31]).is_none());
    assert!(hash32(&[0u8; 33]).is_none());
    let empty = Software.sha256_of(&[]);
    assert!(verify_consistency(0, 0, &[], &empty, &empty).is_err());
    assert!(verify_consistency(0, 1, &[], &empty, &empty).is_err());
}

#[test]
fn in_repo_copy_matches_shared_vectors() {
    let shared = shared_vectors();
    if !shared.is_dir() {
        eprintln!(
            "{} not present; the in-repo copy is used as is",
            shared.display()
        );
        return;
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    all_files(&shared, &shared, &mut a);
    all_files(&vectors(), &vectors(), &mut b);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "file lists differ"
    );
    for (name, bytes) in &a {
        assert!(b[name] == *bytes, "{name} differs from ../shared/vectors");
    }
}

// ---------------------------------------------------------------------------------------------
// rfc6962-literals.json

#[derive(Deserialize)]
struct Literals {
    hasher: Vec<HasherCase>,
    leaf_inputs_hex: Vec<String>,
    node_hashes_by_level: Vec<Vec<String>>,
    root_hashes_by_tree_size: Vec<String>,
    inclusion_proofs: Vec<LiteralInclusion>,
    consistency_proofs: Vec<LiteralConsistency>,
}

#[derive(Deserialize)]
struct HasherCase {
    desc: String,
    leaf_hex: Option<String>,
    left_hex: Option<String>,
    right_hex: Option<String>,
    want: String,
}

#[derive(Deserialize)]
struct LiteralInclusion {
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    root: String,
    proof: Vec<String>,
}

#[derive(Deserialize)]
struct LiteralConsistency {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Vec<String>,
}

fn literals() -> Literals {
    let path = vectors().join("merkle/rfc6962-literals.json");
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn hashes(v: &[String]) -> Vec<Hash> {
    v.iter().map(|h| unhex32(h)).collect()
}

/// The leaf hashes of the 8-leaf tree, computed with our hasher from the leaf inputs.
fn leaves(l: &Literals) -> Vec<Hash> {
    l.leaf_inputs_hex
        .iter()
        .map(|x| leaf_hash(&Software, &unhex(x)))
        .collect()
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap()
}

#[test]
fn hasher_known_answers() {
    let l = literals();
    assert_eq!(l.hasher.len(), 4);
    let mut checked = 0;
    for case in &l.hasher {
        let want = unhex32(&case.want);
        let got = match (&case.leaf_hex, &case.left_hex, &case.right_hex) {
            (Some(leaf), None, None) => leaf_hash(&Software, &unhex(leaf)),
            // children here are raw bytes, not 32-byte hashes, so the node hash is formed by hand
            // from the crate's domain-separation prefix
            (None, Some(left), Some(right)) => {
                Software.sha256_of(&[&[NODE_PREFIX], &unhex(left), &unhex(right)])
            }
            (None, None, None) => mth(&[]),
            _ => panic!("unexpected hasher case {}", case.desc),
        };
        assert_eq!(got, want, "{}", case.desc);
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn node_hashes_and_roots() {
    let l = literals();
    let leaves = leaves(&l);
    assert_eq!(leaves.len(), 8);
    // level 0 is the leaf hashes; each next level is node_hash over pairs
    let mut level = leaves.clone();
    for (depth, want) in l.node_hashes_by_level.iter().enumerate() {
        assert_eq!(level, hashes(want), "level {depth}");
        level = level
            .chunks_exact(2)
            .map(|p| node_hash(&Software, &p[0], &p[1]))
            .collect();
    }
    assert_eq!(l.node_hashes_by_level.len(), 4);
    assert!(level.is_empty(), "the top level holds the root alone");
    // roots of every prefix, by the recursive MTH and by the bottom-up builder (any leaf)
    let roots = hashes(&l.root_hashes_by_tree_size);
    assert_eq!(roots.len(), 9);
    for (n, want) in roots.iter().enumerate() {
        assert_eq!(mth(&leaves[..n]), *want, "mth size {n}");
        assert_eq!(
            root_and_path(leaves[..n].to_vec(), 0).0,
            *want,
            "root_and_path size {n}"
        );
        for m in 0..n {
            assert_eq!(root_and_path(leaves[..n].to_vec(), m).0, *want);
        }
    }
}

#[test]
fn literal_inclusion_proofs() {
    let l = literals();
    let leaves = leaves(&l);
    assert_eq!(l.inclusion_proofs.len(), 7);
    for p in &l.inclusion_proofs {
        let (m, n) = (usize_of(p.leaf_index), usize_of(p.tree_size));
        let leaf = unhex32(&p.leaf_hash);
        let root = unhex32(&p.root);
        let proof = hashes(&p.proof);
        let what = format!("leaf {m} of {n}");
        assert_eq!(leaf, leaves[m], "{what}: leaf hash");
        assert_eq!(
            verify_inclusion(&leaf, p.leaf_index, p.tree_size, &proof, &root),
            Ok(())
        );
        assert_eq!(inclusion_proof(&leaves[..n], m), proof, "{what}: PATH");
        assert_eq!(
            root_and_path(leaves[..n].to_vec(), m),
            (root, proof.clone()),
            "{what}: root_and_path"
        );
        assert_eq!(
            proof.len() as u64,
            inclusion_proof_len(p.leaf_index, p.tree_size)
        );
        // the same proof for the neighbouring leaf or with one hash changed must fail
        if n > 1 {
            let other = (m + 1) % n;
            assert!(
                verify_inclusion(&leaves[other], p.leaf_index, p.tree_size, &proof, &root).is_err()
            );
            let mut bad = proof.clone();
            bad[0][0] ^= 1;
            assert!(verify_inclusion(&leaf, p.leaf_index, p.tree_size, &bad, &root).is_err());
        }
    }
}

#[test]
fn literal_consistency_proofs() {
    let l = literals();
    let leaves = leaves(&l);
    assert_eq!(l.consistency_proofs.len(), 5);
    for p in &l.consistency_proofs {
        let (m, n) = (usize_of(p.size1), usize_of(p.size2));
        let (root1, root2) = (unhex32(&p.root1), unhex32(&p.root2));
        let proof = hashes(&p.proof);
        let what = format!("{m} -> {n}");
        assert_eq!(mth(&leaves[..m]), root1, "{what}: root1");
        assert_eq!(mth(&leaves[..n]), root2, "{what}: root2");
        assert_eq!(
            verify_consistency(p.size1, p.size2, &proof, &root1, &root2),
            Ok(()),
            "{what}"
        );
        assert_eq!(consistency_proof(&leaves[..n], m), proof, "{what}: PROOF");
        if m < n {
            assert_eq!(proof.len() as u64, consistency_proof_len(p.size1, p.size2));
            assert!(verify_consistency(p.size1, p.size2, &proof, &root2, &root1).is_err());
        }
    }
}

/// Beyond the literals: on trees up to 70 leaves, the reference functions agree with each other
/// and every proof they produce verifies (and a wrong root does not).
#[test]
fn reference_functions_agree_on_larger_trees() {
    let leaves: Vec<Hash> = (0u32..70)
        .map(|i| leaf_hash(&Software, &i.to_be_bytes()))
        .collect();
    for n in 1..=leaves.len() {
        let tree = &leaves[..n];
        let root = mth(tree);
        let size = n as u64;
        for m in 0..n {
            let path = inclusion_proof(tree, m);
            assert_eq!(
                root_and_path(tree.to_vec(), m),
                (root, path.clone()),
                "{m} of {n}"
            );
            assert_eq!(
                verify_inclusion(&tree[m], m as u64, size, &path, &root),
                Ok(())
            );
            let wrong = mth(&leaves[..n - 1]);
            assert!(verify_inclusion(&tree[m], m as u64, size, &path, &wrong).is_err());
        }
        for m in 1..=n {
            let proof = consistency_proof(tree, m);
            let old = mth(&leaves[..m]);
            assert_eq!(
                verify_consistency(m as u64, size, &proof, &old, &root),
                Ok(()),
                "{m} -> {n}"
            );
            if m < n {
                let wrong = mth(&leaves[1..=m]);
                assert!(verify_consistency(m as u64, size, &proof, &wrong, &root).is_err());
            }
        }
    }
}
