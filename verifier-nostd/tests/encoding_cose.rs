//! Property: COSE_Sign1 with ES256 (cose.rs, RFC 9052 §4.2, RFC 9053 §2.1) has exactly one
//! encoding and verifies only with the right key: round trips, minicbor cross-checks, and every
//! other encoding of the structure, its elements and its protected header rejected with the
//! specific `Error` and byte offset. The harness is in `common/`.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

mod common;

use cairn_verifier::Error;
use cairn_verifier::cose::{self, CoseSign1, ReleaseKey};
use cairn_verifier::crypto::{Crypto, P256_SPKI_PREFIX, Software};
use cairn_verifier::error::{CborError, Item};
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use p256::ecdsa::signature::Verifier;

use common::cbor::*;
use common::harness::*;
use common::values::*;

// =============================================================================================
// COSE_Sign1

/// The array inside the COSE_Sign1 tag.
fn arr(v: &mut V) -> &mut Vec<V> {
    match v {
        V::Tag(_, a) => a.items(),
        other => panic!("not a tag: {other:?}"),
    }
}

/// The valid COSE_Sign1 of the reference release, ready for mutations.
fn cose_format() -> (Format, ReleaseKey) {
    let (key, pinned) = release_signer();
    let payload = reference_release().to_cbor();
    let fmt = Format::new(
        Item::CoseSign1,
        |b| CoseSign1::decode(b).map(|_| ()),
        cose::write::sign(&payload, &pinned.kid, &key).unwrap(),
    );
    (fmt, pinned)
}

fn release_signer() -> (p256::ecdsa::SigningKey, ReleaseKey) {
    let key = test_key(Fixture::RELEASE_KEY);
    let pinned = ReleaseKey::new(public_key(&key), &Software);
    (key, pinned)
}

#[test]
fn cose_sign1_round_trips_and_verifies() {
    let (key, pinned) = release_signer();
    let payload = reference_release().to_cbor();
    let bytes = cose::write::sign(&payload, &pinned.kid, &key).unwrap();
    let c = CoseSign1::decode(&bytes).unwrap();
    assert_eq!(c.payload, &payload[..]);
    assert_eq!(c.kid, pinned.kid);
    assert_eq!(c.protected, &cose::write::protected_header(&pinned.kid)[..]);
    assert_eq!(c.verify(&pinned, &Software), Ok(()));
    assert_eq!(
        cose::write::assemble(c.protected, c.payload, &c.signature.0),
        bytes
    );

    // minicbor: 18([h'{1: -7, 4: kid}', {}, payload, sig])
    let protected = map(vec![(1, N(6)), (4, B(pinned.kid.to_vec()))]);
    cross_check(c.protected, &protected);
    let expected = V::Tag(
        18,
        Box::new(A(vec![
            B(encode(&protected)),
            M(vec![]),
            B(payload.clone()),
            B(c.signature.0.to_vec()),
        ])),
    );
    cross_check(&bytes, &expected);

    // the Sig_structure, built by minicbor, verified by p256 itself (RFC 9052 §4.4)
    let tbs = encode(&A(vec![
        t("Signature1"),
        B(c.protected.to_vec()),
        B(vec![]),
        B(payload.clone()),
    ]));
    assert_eq!(cose::write::sig_structure(c.protected, c.payload), tbs);
    let sig = p256::ecdsa::Signature::from_slice(&c.signature.0).unwrap();
    key.verifying_key().verify(&tbs, &sig).unwrap();
    assert_eq!(c.signed_digest(&Software), Software.sha256_of(&[&tbs]));

    // the kid is SHA-256 of the DER SubjectPublicKeyInfo (RFC 5480 prefix + uncompressed point)
    let spki = [
        hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap(),
        key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
    ]
    .concat();
    assert_eq!(spki.len(), 91);
    assert_eq!(&spki[..26], &P256_SPKI_PREFIX[..]);
    assert_eq!(pinned.kid, Software.sha256_of(&[&spki]));
}

#[test]
fn cose_sign1_verify_rejects() {
    let (key, pinned) = release_signer();
    let payload = reference_release().to_cbor();
    let bytes = cose::write::sign(&payload, &pinned.kid, &key).unwrap();
    let c = CoseSign1::decode(&bytes).unwrap();
    // another pinned key
    let other = ReleaseKey::new(public_key(&test_key(9)), &Software);
    assert_eq!(c.verify(&other, &Software), Err(Error::ReleaseKeyUnknown));
    // signed by another key that claims the pinned kid
    let forged = cose::write::sign(&payload, &pinned.kid, &test_key(9)).unwrap();
    assert_eq!(
        CoseSign1::decode(&forged)
            .unwrap()
            .verify(&pinned, &Software),
        Err(Error::ReleaseSignature)
    );
    // payload changed, signature kept
    let mut changed = payload.clone();
    *changed.last_mut().unwrap() ^= 1;
    let tampered = cose::write::assemble(c.protected, &changed, &c.signature.0);
    assert_eq!(
        CoseSign1::decode(&tampered)
            .unwrap()
            .verify(&pinned, &Software),
        Err(Error::ReleaseSignature)
    );
    // r = 0 and s = 0 are not signatures
    let zero = cose::write::assemble(c.protected, &payload, &[0; 64]);
    assert_eq!(
        CoseSign1::decode(&zero).unwrap().verify(&pinned, &Software),
        Err(Error::ReleaseSignature)
    );
}

#[test]
fn cose_sign1_rejects_other_encodings() {
    let (fmt, _) = cose_format();
    fmt.rejects(
        "untagged",
        &[],
        |v| {
            let V::Tag(_, inner) = v.clone() else {
                panic!()
            };
            *v = *inner;
        },
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "tag",
        },
    );
    for tag in [98, 17, 24] {
        fmt.rejects(
            "another tag",
            &[],
            |v| {
                if let V::Tag(t, _) = v {
                    *t = tag;
                }
            },
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "a different tag",
            },
        );
    }
    fmt.rejects_same_data(
        "tag widened",
        &[],
        |v| v.wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects_same_data(
        "array head widened",
        &[0],
        |v| {
            if let V::Tag(_, a) = v {
                a.wrap(|x| V::Wide(Box::new(x)));
            }
        },
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects_same_data(
        "indefinite-length array",
        &[0],
        |v| {
            if let V::Tag(_, a) = v {
                a.wrap(|x| V::Indef(Box::new(x)));
            }
        },
        |offset, _| CborError::IndefiniteLength { offset },
    );
    for n in [3, 5] {
        fmt.rejects(
            "wrong number of elements",
            &[0],
            |v| arr(v).resize(n, B(vec![])),
            |offset, _| CborError::WrongLength {
                offset,
                expected: 4,
            },
        );
    }
}

#[test]
fn cose_sign1_elements_reject_other_encodings() {
    let (fmt, pinned) = cose_format();
    let inner = |i: usize| vec![0, i];
    let len = fmt.bytes.len();
    fmt.rejects(
        "protected header as a map",
        &inner(0),
        |v| arr(v)[0] = map(vec![(1, N(6))]),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "byte string",
        },
    );
    fmt.rejects(
        "unprotected header not empty",
        &inner(1),
        |v| arr(v)[1] = map(vec![(4, B(pinned.kid.to_vec()))]),
        |offset, _| CborError::OutOfRange { offset },
    );
    fmt.rejects_same_data(
        "unprotected header widened",
        &inner(1),
        |v| arr(v)[1].wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects(
        "unprotected header as bytes",
        &inner(1),
        |v| arr(v)[1] = B(vec![]),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "map",
        },
    );
    fmt.rejects_same_data(
        "payload length widened",
        &inner(2),
        |v| arr(v)[2].wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects_same_data(
        "indefinite-length payload",
        &inner(2),
        |v| arr(v)[2].wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    fmt.rejects(
        "detached payload (nil)",
        &inner(2),
        |v| arr(v)[2] = V::Raw(vec![0xf6]),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "no simple values or floats",
        },
    );
    for n in [0, 63, 65, 72] {
        fmt.rejects(
            "signature length",
            &inner(3),
            |v| arr(v)[3] = B(vec![1; n]),
            |offset, _| CborError::WrongLength {
                offset,
                expected: 64,
            },
        );
    }
    fmt.rejects_same_data(
        "signature length widened",
        &inner(3),
        |v| arr(v)[3].wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    let mut trailing = fmt.bytes.clone();
    trailing.push(0);
    fmt.rejects_bytes(
        "trailing byte",
        &trailing,
        CborError::TrailingBytes { offset: len },
    );
    fmt.rejects_bytes("empty", &[], CborError::UnexpectedEnd { offset: 0 });
    for cut in 0..len {
        assert!(
            CoseSign1::decode(&fmt.bytes[..cut]).is_err(),
            "truncated to {cut}"
        );
    }
}

/// Puts the mutated protected header into the valid COSE_Sign1 and checks the decoder reports
/// `cause` at the offset of the mutated node, counted from the start of the COSE_Sign1.
fn protected_rejects(
    fmt: &Format,
    header: &V,
    what: &str,
    at: &[usize],
    mutate: &dyn Fn(&mut V),
    cause: &dyn Fn(usize, usize) -> CborError,
) {
    let mut h = header.clone();
    mutate(&mut h);
    let (h_bytes, h_mark) = encode_marked(&h, at);
    let mut v = fmt.valid.clone();
    arr(&mut v)[0] = B(h_bytes.clone());
    let (bytes, start) = encode_marked(&v, &[0, 0]);
    let content = start + encode(&B(h_bytes.clone())).len() - h_bytes.len();
    assert_eq!(
        CoseSign1::decode(&bytes),
        Err(Error::Malformed {
            item: Item::CoseSign1,
            cause: cause(content + h_mark, content + h_bytes.len()),
        }),
        "protected header: {what}"
    );
}

/// Inside the protected header: offsets are relative to the COSE_Sign1.
#[test]
fn cose_sign1_protected_header_rejects_other_encodings() {
    let (fmt, pinned) = cose_format();
    let header = parse(&cose::write::protected_header(&pinned.kid));
    protected_rejects(
        &fmt,
        &header,
        "alg widened",
        &at_val(0),
        &|h| h.field(1).wrap(|x| V::Wide(Box::new(x))),
        &|offset, _| CborError::NonCanonical { offset },
    );
    protected_rejects(
        &fmt,
        &header,
        "keys out of order",
        &at_key(0),
        &|h| h.entries().swap(0, 1),
        &|offset, _| CborError::UnexpectedKey {
            offset,
            expected: 1,
            found: 4,
        },
    );
    protected_rejects(
        &fmt,
        &header,
        "extra header (crit)",
        &[],
        &|h| h.entries().push((U(2), A(vec![U(1)]))),
        &|offset, _| CborError::WrongLength {
            offset,
            expected: 2,
        },
    );
    protected_rejects(
        &fmt,
        &header,
        "kid missing",
        &[],
        &|h| {
            h.entries().pop();
        },
        &|offset, _| CborError::WrongLength {
            offset,
            expected: 2,
        },
    );
    for n in [0, 16, 31, 33] {
        protected_rejects(
            &fmt,
            &header,
            "kid length",
            &at_val(1),
            &|h| *h.field(4) = B(vec![7; n]),
            &|offset, _| CborError::WrongLength {
                offset,
                expected: 32,
            },
        );
    }
    protected_rejects(
        &fmt,
        &header,
        "indefinite map",
        &[],
        &|h| h.wrap(|x| V::Indef(Box::new(x))),
        &|offset, _| CborError::IndefiniteLength { offset },
    );
    protected_rejects(
        &fmt,
        &header,
        "trailing byte",
        &[],
        &|h| *h = V::Raw([encode(h), vec![0]].concat()),
        &|_, end| CborError::TrailingBytes { offset: end - 1 },
    );
    protected_rejects(
        &fmt,
        &header,
        "empty protected header",
        &[],
        &|h| *h = V::Raw(vec![]),
        &|offset, _| CborError::UnexpectedEnd { offset },
    );
    protected_rejects(
        &fmt,
        &header,
        "alg as text",
        &at_val(0),
        &|h| *h.field(1) = t("ES256"),
        &|offset, _| CborError::UnexpectedType {
            offset,
            expected: "integer",
        },
    );
}

/// Another algorithm is not malformed: it is refused as an algorithm.
#[test]
fn cose_sign1_other_algorithms_are_refused() {
    let (fmt, pinned) = cose_format();
    let header = parse(&cose::write::protected_header(&pinned.kid));
    for alg in [N(34), N(36), U(7), N(7)] {
        let mut h = header.clone();
        *h.field(1) = alg;
        let mut v = fmt.valid.clone();
        arr(&mut v)[0] = B(encode(&h));
        assert_eq!(
            CoseSign1::decode(&encode(&v)),
            Err(Error::ReleaseAlgorithm),
            "{h:?}"
        );
    }
}
