//! Property: the host's quorum report (`witness::report`, what the signer and `cairn audit verify`
//! use) agrees with the device's `verify_quorum` on every case, and names the witnesses that
//! cosigned, are missing, or whose line does not verify; verifier keys are checked before a
//! witness is pinned from them.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

use base64ct::{Base64, Encoding};
use cairn_verifier::crypto::Software;
use cairn_verifier::error::PolicyError;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::test_support::{Fixture, WITNESSES, cosign, witness, witness_key};
use cairn_verifier::witness::report::{QuorumReport, Vkey, VkeyError, report};
use cairn_verifier::witness::{COSIGNATURE_V1_ALG, WitnessKey, key_id, verify_quorum, write};

const T: u64 = 1_795_000_500;

fn policy() -> [WitnessKey<'static>; 3] {
    [0u8, 1, 2].map(|i| witness(WITNESSES[usize::from(i)], i))
}

/// The report of `note` against the fixture's 2-of-3 policy, and whether the device accepts it.
fn both(note: &str) -> (QuorumReport, bool) {
    let f = Fixture::new();
    let anchors = f.witnessed_anchors();
    let cp = Checkpoint::parse(note.as_bytes()).unwrap();
    let r = report(&cp, &anchors.log, &policy(), 2, &Software).unwrap();
    let device = verify_quorum(&cp, &anchors.log, &anchors.witnesses, &Software).is_ok();
    (r, device)
}

fn plain() -> String {
    let f = Fixture::new();
    f.build(&f.spec()).checkpoint
}

fn names(r: &QuorumReport) -> Vec<&str> {
    r.cosigned.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn a_quorum_names_who_cosigned_and_who_is_missing() {
    let two = cosign(&cosign(&plain(), 0, T), 2, T + 1);
    let (r, device) = both(&two);
    assert!(r.met() && device);
    assert_eq!(names(&r), [WITNESSES[0], WITNESSES[2]]);
    assert_eq!(r.missing, [WITNESSES[1]]);
    assert_eq!(r.cosigned[1].timestamp, T + 1);
    assert!(r.summary().contains("missing: witness.test/"));
}

#[test]
fn k_minus_one_is_no_quorum_and_names_the_missing() {
    let one = cosign(&plain(), 1, T);
    let (r, device) = both(&one);
    assert!(!r.met() && !device);
    assert_eq!(names(&r), [WITNESSES[1]]);
    assert_eq!(r.missing, [WITNESSES[0], WITNESSES[2]]);
    let (r, device) = both(&plain());
    assert!(!r.met() && !device);
    assert_eq!(r.missing.len(), 3);
}

#[test]
fn a_cosignature_over_another_checkpoint_is_named_bad() {
    let f = Fixture::new();
    let mut spec = f.spec();
    spec.tree_size = 10;
    let older = cosign(&f.build(&spec).checkpoint, 2, T - 600);
    let moved = older.trim_end().rsplit_once('\n').unwrap().1;
    let note = format!("{}{moved}\n", cosign(&cosign(&plain(), 0, T), 1, T));
    let (r, device) = both(&note);
    assert!(!r.met() && !device, "two valid and one moved line: refused");
    assert_eq!(r.bad, [WITNESSES[2]]);
}

#[test]
fn an_unknown_witness_is_ignored_and_counted() {
    let text = plain();
    let text = &text[..=text.find("\n\n").unwrap()];
    let stranger = witness("witness.test/stranger", 9);
    let note = format!(
        "{}{}",
        cosign(&plain(), 0, T),
        write::cosign(text, &stranger, &witness_key(9), T)
    );
    let (r, device) = both(&note);
    assert!(!r.met() && !device);
    assert_eq!(r.unknown, 1);
}

#[test]
fn a_policy_that_could_count_one_witness_twice_is_refused() {
    let f = Fixture::new();
    let anchors = f.witnessed_anchors();
    let note = plain();
    let cp = Checkpoint::parse(note.as_bytes()).unwrap();
    let twice = [policy()[0], policy()[0]];
    assert_eq!(
        report(&cp, &anchors.log, &twice, 1, &Software),
        Err(PolicyError::DuplicateWitness)
    );
    assert_eq!(
        report(&cp, &anchors.log, &policy(), 4, &Software),
        Err(PolicyError::Threshold {
            threshold: 4,
            witnesses: 3
        })
    );
}

fn vkey(name: &str, public: &[u8; 32]) -> String {
    let mut material = vec![COSIGNATURE_V1_ALG];
    material.extend_from_slice(public);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, public, &Software)),
        Base64::encode_string(&material)
    )
}

#[test]
fn verifier_keys_are_checked_before_they_pin_a_witness() {
    let w = policy()[1];
    let good = vkey(w.name, &w.public);
    let parsed = Vkey::parse(&good, &Software).unwrap();
    assert_eq!(parsed.key(&Software), Some(w));
    // Another name with this key: the key id no longer matches.
    let (_, rest) = good.split_once('+').unwrap();
    assert!(matches!(
        Vkey::parse(&format!("witness.test/impostor+{rest}"), &Software),
        Err(VkeyError::KeyId(_))
    ));
    // An ECDSA (type 0x02) key, a truncated key, missing fields.
    let mut material = vec![0x02];
    material.extend_from_slice(&w.public);
    let id = hex::encode(key_id(w.name, &w.public, &Software));
    let typed = format!("{}+{id}+{}", w.name, Base64::encode_string(&material));
    assert!(matches!(
        Vkey::parse(&typed, &Software),
        Err(VkeyError::NotCosignatureV1(_))
    ));
    let short = format!("{}+{id}+{}", w.name, Base64::encode_string(&material[..20]));
    assert!(Vkey::parse(&short, &Software).is_err());
    assert!(matches!(
        Vkey::parse(w.name, &Software),
        Err(VkeyError::Syntax(_))
    ));
}

/// The group order L of Ed25519, little-endian (RFC 8032 §5.1).
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `note`'s last cosignature with `s + L` in place of `s`: the same point, a malleated encoding.
fn malleate_last(note: &str) -> String {
    let body = note.strip_suffix('\n').unwrap();
    let (head, line) = body.rsplit_once('\n').unwrap();
    let (prefix, b64) = line.rsplit_once(' ').unwrap();
    let mut raw = Base64::decode_vec(b64).unwrap();
    let s = &mut raw[4 + 8 + 32..];
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(L) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = u8::try_from(sum & 0xff).unwrap();
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    format!("{head}\n{prefix} {}\n", Base64::encode_string(&raw))
}

/// RFC 8032 §5.1.7: "if S is not in the range [0, L), reject" — on the host and on the device
/// (the QEMU case `witness-s-not-canonical` runs the same on every firmware backend).
#[test]
fn a_cosignature_with_s_not_below_the_group_order_is_bad() {
    let valid = cosign(&cosign(&plain(), 0, T), 2, T + 1);
    assert!(both(&valid).0.met());
    let malleated = malleate_last(&valid);
    assert_ne!(malleated, valid);
    let (r, device) = both(&malleated);
    assert!(!r.met() && !device);
    assert_eq!(r.bad, [WITNESSES[2]]);
}
