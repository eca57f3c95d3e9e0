//! Property: a device with a k-of-n witness policy accepts a checkpoint only if k distinct pinned
//! witnesses cosigned exactly that checkpoint (C2SP tlog-cosignature v1), and refuses every other
//! case with its own variant: k-1 cosignatures, a cosignature over another checkpoint, a replayed
//! or altered cosignature, a witness that is not pinned (ignored, so no quorum).

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

use base64ct::{Base64, Encoding};
use cairn_verifier::Error;
use cairn_verifier::boot::{MemoryImage, StoredState, verify_delivery};
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::error::PolicyError;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::test_support::{Fixture, WITNESSES, cosign, device, witness, witness_key};
use cairn_verifier::witness::{
    self, Cosignature, CosignatureError, MAX_TIMESTAMP, Quorum, WitnessKey, WitnessPolicy,
    verify_quorum,
};
use sha2::Digest;

const T: u64 = 1_795_000_500;

/// The fixture's default checkpoint (size 11), signed by the log.
fn checkpoint(f: &Fixture) -> String {
    f.build(&f.spec()).checkpoint
}

/// A checkpoint of another tree (size 10) from the same log key: the previous one, say.
fn older_checkpoint(f: &Fixture) -> String {
    let mut spec = f.spec();
    spec.tree_size = 10;
    f.build(&spec).checkpoint
}

fn quorum(note: &str) -> Result<Quorum, Error> {
    let f = Fixture::new();
    let anchors = f.witnessed_anchors();
    let cp = Checkpoint::parse(note.as_bytes()).unwrap();
    cp.verify(&anchors.log, &Software).unwrap();
    verify_quorum(&cp, &anchors.log, &anchors.witnesses, &Software)
}

/// The last signature line of `note`.
fn last_line(note: &str) -> String {
    let body = note.strip_suffix('\n').unwrap();
    format!("{}\n", body.rsplit_once('\n').unwrap().1)
}

#[test]
fn two_of_three_and_three_of_three_are_a_quorum() {
    let f = Fixture::new();
    let cp = checkpoint(&f);
    let two = cosign(&cosign(&cp, 0, T), 2, T + 1);
    assert_eq!(quorum(&two), Ok(Quorum { have: 2, need: 2 }));
    let three = cosign(&two, 1, T + 2);
    assert_eq!(quorum(&three), Ok(Quorum { have: 3, need: 2 }));
}

#[test]
fn k_minus_one_cosignatures_are_no_quorum() {
    let f = Fixture::new();
    let one = cosign(&checkpoint(&f), 1, T);
    assert_eq!(
        quorum(&one),
        Err(Error::NoQuorum {
            have: 1,
            need: 2,
            unknown: 0
        })
    );
    assert_eq!(
        quorum(&checkpoint(&f)),
        Err(Error::NoQuorum {
            have: 0,
            need: 2,
            unknown: 0
        })
    );
}

#[test]
fn one_witness_twice_counts_once() {
    let f = Fixture::new();
    let twice = cosign(&cosign(&checkpoint(&f), 0, T), 0, T + 60);
    assert_eq!(
        quorum(&twice),
        Err(Error::NoQuorum {
            have: 1,
            need: 2,
            unknown: 0
        })
    );
}

#[test]
fn a_cosignature_over_another_checkpoint_is_refused() {
    let f = Fixture::new();
    // Witness 2 cosigned the older checkpoint (size 10); its line is moved onto size 11.
    let replayed = last_line(&cosign(&older_checkpoint(&f), 2, T - 600));
    let note = format!("{}{replayed}", cosign(&checkpoint(&f), 0, T));
    assert_eq!(quorum(&note), Err(Error::BadCosignature { witness: 2 }));
}

#[test]
fn a_cosignature_with_an_altered_timestamp_is_refused() {
    let f = Fixture::new();
    let cp = checkpoint(&f);
    let line = last_line(&cosign(&cp, 1, T));
    let (prefix, b64) = line.trim_end().rsplit_once(' ').unwrap();
    let mut raw = Base64::decode_vec(b64).unwrap();
    // A cosignature replayed with a later time: the signature covers the timestamp line.
    raw[4..12].copy_from_slice(&(T + 86_400).to_be_bytes());
    let altered = format!("{prefix} {}\n", Base64::encode_string(&raw));
    let note = format!("{}{altered}", cosign(&cp, 0, T));
    assert_eq!(quorum(&note), Err(Error::BadCosignature { witness: 1 }));
}

#[test]
fn a_timestamp_above_two_to_the_63_is_refused() {
    let f = Fixture::new();
    let cp = checkpoint(&f);
    let pinned = witness(WITNESSES[1], 1);
    let line = witness::write::cosign(
        &cp[..=cp.find("\n\n").unwrap()],
        &pinned,
        &witness_key(1),
        MAX_TIMESTAMP + 1,
    );
    let b64 = line.trim_end().rsplit_once(' ').unwrap().1;
    assert_eq!(
        Cosignature::parse(b64),
        Err(CosignatureError::Timestamp(MAX_TIMESTAMP + 1))
    );
    let note = format!("{}{line}", cosign(&cp, 0, T));
    assert_eq!(quorum(&note), Err(Error::BadCosignature { witness: 1 }));
}

#[test]
fn an_unknown_witness_is_ignored_and_does_not_count() {
    let f = Fixture::new();
    let cp = checkpoint(&f);
    let text = &cp[..=cp.find("\n\n").unwrap()];
    // A well-formed, valid cosignature by a witness the device does not pin.
    let stranger = witness("witness.test/stranger", 9);
    let line = witness::write::cosign(text, &stranger, &witness_key(9), T);
    let note = format!("{}{line}", cosign(&cp, 0, T));
    assert_eq!(
        quorum(&note),
        Err(Error::NoQuorum {
            have: 1,
            need: 2,
            unknown: 1
        })
    );
    // A pinned witness's name with another key (a rotated or impostor key): ignored as well.
    let impostor = witness(WITNESSES[2], 9);
    let line = witness::write::cosign(text, &impostor, &witness_key(9), T);
    let note = format!("{}{line}", cosign(&cp, 0, T));
    assert_eq!(
        quorum(&note),
        Err(Error::NoQuorum {
            have: 1,
            need: 2,
            unknown: 1
        })
    );
    // With the quorum there, unknown lines change nothing.
    let note = format!("{}{line}", cosign(&cosign(&cp, 0, T), 1, T));
    assert_eq!(quorum(&note), Ok(Quorum { have: 2, need: 2 }));
}

#[test]
fn the_boot_check_enforces_the_policy() {
    let f = Fixture::new();
    let anchors = f.witnessed_anchors();
    let mut parts = f.build(&f.spec());
    let plain = parts.checkpoint.clone();
    let boot = |delivery: &[u8]| {
        verify_delivery(
            delivery,
            &anchors,
            &device(),
            &StoredState::default(),
            &mut MemoryImage(&f.image),
            &Software,
        )
        .map(|v| v.release_id.as_str().to_owned())
    };
    parts.checkpoint = cosign(&plain, 1, T);
    assert_eq!(
        boot(&parts.encode()),
        Err(Error::NoQuorum {
            have: 1,
            need: 2,
            unknown: 0
        })
    );
    parts.checkpoint = cosign(&cosign(&plain, 1, T), 2, T);
    assert_eq!(boot(&parts.encode()).unwrap(), "controller-fw-2.4.1");
    // An unwitnessed device accepts both (the log signature alone).
    assert!(
        verify_delivery(
            &f.delivery(),
            &f.anchors(),
            &device(),
            &StoredState::default(),
            &mut MemoryImage(&f.image),
            &Software,
        )
        .is_ok()
    );
}

#[test]
fn key_id_is_sha256_of_name_newline_0x04_key() {
    // C2SP tlog-cosignature "Format": SHA-256(<name> || "\n" || 0x04 || public key)[:4], computed
    // here with sha2 directly.
    let pinned = witness(WITNESSES[0], 0);
    let mut h = sha2::Sha256::new();
    h.update(WITNESSES[0].as_bytes());
    h.update(b"\n\x04");
    h.update(witness_key(0).verifying_key().as_bytes());
    assert_eq!(pinned.key_id, h.finalize()[..4]);
    assert_eq!(
        witness::key_id(WITNESSES[0], &pinned.public, &Software),
        pinned.key_id
    );
}

#[test]
fn the_c2sp_example_cosignature_parses() {
    // The example in C2SP tlog-cosignature: its timestamp is the "time 1679315147" of the spec's
    // example signed message.
    let c = Cosignature::parse(
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==",
    )
    .unwrap();
    assert_eq!(c.key_id, [0x8d, 0x66, 0xcf, 0x3f]);
    assert_eq!(c.timestamp, 1_679_315_147);
    // The log's ECDSA line of the same example is not a cosignature.
    assert_eq!(
        Cosignature::parse(
            "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8="
        ),
        Err(CosignatureError::Length { len: 92 })
    );
}

#[test]
fn ed25519_rfc8032_test_1_verifies_and_a_flipped_bit_does_not() {
    // RFC 8032 §7.1, TEST 1 (empty message).
    let public: [u8; 32] =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap()
            .try_into()
            .unwrap();
    let mut sig: [u8; 64] = hex::decode(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    )
    .unwrap()
    .try_into()
    .unwrap();
    assert!(Software.verify_ed25519(&public, &[], &sig));
    sig[0] ^= 1;
    assert!(!Software.verify_ed25519(&public, &[], &sig));
    // A non-canonical S (S + l) is refused, never panics.
    let mut big = [0xffu8; 64];
    big[..32].copy_from_slice(&sig[..32]);
    assert!(!Software.verify_ed25519(&public, &[b"x"], &big));
}

#[test]
fn policies_that_could_count_one_witness_twice_are_refused() {
    let a = witness(WITNESSES[0], 0);
    let b = witness(WITNESSES[1], 1);
    let same_key: WitnessKey<'_> = witness(WITNESSES[1], 0);
    let same_name = witness(WITNESSES[0], 1);
    assert_eq!(
        WitnessPolicy::new([a, same_key], 1),
        Err(PolicyError::DuplicateWitness)
    );
    assert_eq!(
        WitnessPolicy::new([a, same_name], 1),
        Err(PolicyError::DuplicateWitness)
    );
    assert_eq!(
        WitnessPolicy::new([a, b], 0),
        Err(PolicyError::Threshold {
            threshold: 0,
            witnesses: 2
        })
    );
    assert_eq!(
        WitnessPolicy::new([a, b], 3),
        Err(PolicyError::Threshold {
            threshold: 3,
            witnesses: 2
        })
    );
    assert_eq!(WitnessPolicy::new([], 0), Err(PolicyError::NoWitnesses));
    assert!(WitnessPolicy::new([a, b], 2).is_ok());
    assert!(WitnessKey::new("has space", [0; 32], &Software).is_none());
}

#[test]
fn a_cosignature_adds_its_name_plus_110_bytes_to_a_delivery() {
    // "— " (em dash: 3 bytes, and a space), the name, a space, 104 base64 characters, a newline;
    // the delivery's CBOR byte-string header may grow by a byte or two as the checkpoint grows.
    let f = Fixture::new();
    let mut parts = f.build(&f.spec());
    let plain = parts.checkpoint.clone();
    let base = parts.encode().len();
    let mut note = plain.clone();
    let mut sizes = vec![base];
    for (n, name) in WITNESSES.iter().enumerate() {
        note = cosign(&note, n, T);
        parts.checkpoint.clone_from(&note);
        let size = parts.encode().len();
        let added = size - sizes.last().unwrap();
        assert!(
            (name.len() + 110..=name.len() + 112).contains(&added),
            "{name}: {added} bytes"
        );
        sizes.push(size);
    }
    println!("delivery bytes with 0, 1, 2, 3 cosignatures: {sizes:?}");
}
