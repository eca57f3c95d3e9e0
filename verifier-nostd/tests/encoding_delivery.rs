//! Property: the delivery envelope (delivery.rs) has exactly one encoding: it round-trips, minicbor
//! reads it as documented, and every other encoding is rejected with the specific `Error` and byte
//! offset. The harness is in `common/`.

mod common;

use cairn_verifier::delivery::{Delivery, ProofHashes};
use cairn_verifier::error::{CborError, Item};
use cairn_verifier::test_support::Fixture;
use cairn_verifier::types::{Hash, LeafIndex};

use common::cbor::*;
use common::harness::*;

// =============================================================================================
// Delivery

fn delivery_tree(d: &Delivery<'_>) -> V {
    map(vec![
        (0, U(1)),
        (1, B(d.checkpoint.to_vec())),
        (2, B(d.release.to_vec())),
        (3, B(d.manifest.to_vec())),
        (4, U(d.leaf_index.0)),
        (5, A(d.proof.iter().map(|h| B(h.to_vec())).collect())),
    ])
}

#[test]
fn delivery_round_trips() {
    let f = Fixture::new();
    let parts = f.build(&f.spec());
    let bytes = parts.encode();
    let d = Delivery::decode(&bytes).unwrap();
    assert_eq!(d.checkpoint, parts.checkpoint.as_bytes());
    assert_eq!(d.release, &parts.release[..]);
    assert_eq!(d.manifest, &parts.manifest[..]);
    assert_eq!(d.leaf_index, LeafIndex(parts.index));
    assert_eq!(d.proof.iter().collect::<Vec<Hash>>(), parts.proof);
    assert_eq!(d.proof, ProofHashes::Slice(&parts.proof));
    assert_eq!(d.proof.len(), parts.proof.len());
    assert_eq!(d.to_cbor(), bytes);
    cross_check(&bytes, &delivery_tree(&d));

    // edge values: empty proof, 64-hash proof, largest index
    let proof: Vec<Hash> = (0..64u8).map(|i| [i; 32]).collect();
    for (index, proof) in [(0, &[][..]), (u64::MAX, &proof[..])] {
        let d = Delivery {
            leaf_index: LeafIndex(index),
            proof: ProofHashes::Slice(proof),
            ..d
        };
        let bytes = d.to_cbor();
        let back = Delivery::decode(&bytes).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.proof.iter().len(), proof.len());
        cross_check(&bytes, &delivery_tree(&d));
    }
}

#[test]
fn delivery_rejects_other_encodings() {
    let f = Fixture::new();
    let fmt = Format::new(
        Item::Delivery,
        |b| Delivery::decode(b).map(|_| ()),
        f.delivery(),
    );
    fmt.map_rules();
    for k in 1..=3 {
        fmt.rejects_same_data(
            "embedded item length widened",
            &at_val(k),
            |v| v.field(k as u64).wrap(|x| V::Wide(Box::new(x))),
            |offset, _| CborError::NonCanonical { offset },
        );
        fmt.rejects_same_data(
            "embedded item in indefinite-length bytes",
            &at_val(k),
            |v| v.field(k as u64).wrap(|x| V::Indef(Box::new(x))),
            |offset, _| CborError::IndefiniteLength { offset },
        );
        fmt.rejects(
            "embedded item as text",
            &at_val(k),
            |v| *v.field(k as u64) = t("x"),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "byte string",
            },
        );
    }
    fmt.uint_field("leaf index", 4);
    let proof = at_val(5);
    let elem = |i| [proof.clone(), vec![i]].concat();
    fmt.hash_field("proof hash", &elem(1), |v, x| v.field(5).items()[1] = x);
    fmt.rejects(
        "65 proof hashes",
        &proof,
        |v| *v.field(5) = A(vec![B(vec![0; 32]); 65]),
        |offset, _| CborError::OutOfRange { offset },
    );
    fmt.rejects(
        "proof count beyond the input",
        &proof,
        |v| v.field(5).wrap(|x| V::Count(64, Box::new(x))),
        |_, len| CborError::UnexpectedEnd { offset: len },
    );
    fmt.rejects_same_data(
        "indefinite-length proof",
        &proof,
        |v| v.field(5).wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    fmt.rejects(
        "proof as one byte string",
        &proof,
        |v| *v.field(5) = B(vec![0; 32]),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "array",
        },
    );
}
