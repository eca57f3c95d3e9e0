//! Property: ECDSA P-256 signatures and public keys have exactly one encoding: the strict DER form
//! of signatures (crypto.rs) matches the p256 crate's for real signatures and every non-strict
//! variant is refused; public keys only as P-256 SPKI or SEC1 uncompressed.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

mod common;

use cairn_verifier::crypto::{PublicKey, Signature, der_to_raw, raw_to_der};
use cairn_verifier::test_support::{public_key, test_key};
use p256::ecdsa::signature::Signer;
use proptest::prelude::*;

// =============================================================================================
// DER <-> raw ECDSA signatures

fn assert_der_matches_p256(sig: &p256::ecdsa::Signature) {
    let raw: [u8; 64] = sig.to_bytes().into();
    let theirs = sig.to_der();
    let mut ours = [0u8; 72];
    let n = raw_to_der(&Signature(raw), &mut ours);
    assert_eq!(&ours[..n], theirs.as_bytes(), "{raw:02x?}");
    assert_eq!(der_to_raw(theirs.as_bytes()), Some(Signature(raw)));
    assert_eq!(p256::ecdsa::Signature::from_der(&ours[..n]).unwrap(), *sig);
    for (what, ber) in non_strict_variants(theirs.as_bytes()) {
        assert_eq!(der_to_raw(&ber), None, "{what}: {ber:02x?}");
        assert!(
            p256::ecdsa::Signature::from_der(&ber).is_err(),
            "p256 accepts {what}"
        );
    }
}

/// BER encodings of the same signature that strict DER forbids (and one negative integer).
fn non_strict_variants(der: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    fn int(content: &[u8]) -> Vec<u8> {
        [&[0x02, u8::try_from(content.len()).unwrap()][..], content].concat()
    }
    fn seq(body: &[u8]) -> Vec<u8> {
        [&[0x30, u8::try_from(body.len()).unwrap()][..], body].concat()
    }
    let r_len = usize::from(der[3]);
    let r = &der[4..4 + r_len];
    let s = &der[4 + r_len + 2..];
    let mut out = vec![
        (
            "r with a redundant zero",
            seq(&[int(&[&[0], r].concat()), int(s)].concat()),
        ),
        (
            "s with a redundant zero",
            seq(&[int(r), int(&[&[0], s].concat())].concat()),
        ),
        (
            "long-form sequence length",
            [&[0x30, 0x81, der[1]][..], &der[2..]].concat(),
        ),
        (
            "long-form integer length",
            seq(&[&[0x02, 0x81, der[3]][..], r, &int(s)].concat()),
        ),
        (
            "indefinite-length sequence",
            [&[0x30, 0x80][..], &der[2..], &[0, 0]].concat(),
        ),
        ("trailing byte", [der, &[0]].concat()),
    ];
    if r[0] == 0 {
        out.push((
            "r without its sign pad",
            seq(&[int(&r[1..]), int(s)].concat()),
        ));
    }
    out
}

#[test]
fn der_matches_p256_for_real_signatures() {
    let mut lengths = std::collections::BTreeSet::new();
    for k in 1..=8u8 {
        let key = test_key(k);
        for i in 0..256u32 {
            let sig: p256::ecdsa::Signature = key.sign(&i.to_be_bytes());
            assert_der_matches_p256(&sig);
            lengths.insert(sig.to_der().as_bytes().len());
        }
    }
    // 2048 signatures reach DER lengths with and without sign padding
    assert!(
        lengths.contains(&70) && lengths.contains(&71) && lengths.contains(&72),
        "{lengths:?}"
    );
}

fn scalar_bytes() -> impl Strategy<Value = [u8; 32]> {
    // leading zero bytes (short integers), high bit set (sign padding), or anything
    (0usize..32, any::<[u8; 32]>(), any::<bool>()).prop_map(|(zeros, mut b, high)| {
        if high {
            b[0] |= 0x80;
            b[0] &= 0xfe; // stay below the group order
        }
        for x in &mut b[..zeros] {
            *x = 0;
        }
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn der_matches_p256_for_any_scalars(r in scalar_bytes(), s in scalar_bytes()) {
        let Ok(sig) = p256::ecdsa::Signature::from_scalars(r, s) else {
            // zero or beyond the group order: not a signature p256 can encode
            return Ok(());
        };
        assert_der_matches_p256(&sig);
    }

    #[test]
    fn der_to_raw_accepts_only_the_strict_encoding(
        r in scalar_bytes(),
        s in scalar_bytes(),
        edit in 0usize..4,
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        // a strict encoding with one edit: a byte changed, inserted or removed, or the end cut
        let mut der = [0u8; 72];
        let n = raw_to_der(&Signature([r, s].concat().try_into().unwrap()), &mut der);
        let mut bytes = der[..n].to_vec();
        match edit {
            0 => bytes[at % n] = byte,
            1 => bytes.insert(at % (n + 1), byte),
            2 => {
                bytes.remove(at % n);
            }
            _ => bytes.truncate(at % n),
        }
        // whatever is accepted must be the one strict encoding of the value returned
        if let Some(sig) = der_to_raw(&bytes) {
            let mut strict = [0u8; 72];
            let m = raw_to_der(&sig, &mut strict);
            prop_assert_eq!(&strict[..m], &bytes[..]);
        }
    }

    #[test]
    fn der_to_raw_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Some(sig) = der_to_raw(&bytes) {
            let mut der = [0u8; 72];
            let n = raw_to_der(&sig, &mut der);
            prop_assert_eq!(&der[..n], &bytes[..]);
        }
    }
}

#[test]
fn public_key_encodings() {
    let key = test_key(1);
    let point = key.verifying_key().to_sec1_point(false);
    let public = PublicKey::from_sec1_uncompressed(point.as_bytes()).unwrap();
    assert_eq!(public, public_key(&key));
    let spki = public.spki_der();
    assert_eq!(PublicKey::from_spki_der(&spki), Some(public));
    assert_eq!(&spki[26..], point.as_bytes());
    let compressed = key.verifying_key().to_sec1_point(true);
    assert_eq!(
        PublicKey::from_sec1_uncompressed(compressed.as_bytes()),
        None
    );
}
