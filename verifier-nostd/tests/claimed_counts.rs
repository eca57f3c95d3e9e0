//! A count read from the input is a claim, not a budget (issue 20, item 6): every decoder that
//! collects items refuses a count the rest of its input cannot hold, with
//! `CborError::CountBeyondInput` naming the array, before it reserves anything for it. (The fuzz
//! targets check the same property as a bound on bytes allocated per input byte: docs/fuzzing.md.)

use cairn_verifier::cbor::CborError;
use cairn_verifier::pack::{MAX_ENTRIES, Pack};
use cairn_verifier::transfer::{MAX_BUNDLE_ENTRIES, TransferBundle};

/// A pack map of 7, version 1, campaign "", generated at 0, no certificates, no retention.
const HEAD: [u8; 11] = [
    0xa7, 0x00, 0x01, 0x01, 0x60, 0x02, 0x00, 0x03, 0x80, 0x04, 0x80,
];
/// `[origin "", checkpoint h''`, then the runs.
const SECTION: [u8; 3] = [0x84, 0x60, 0x40];

/// The shortest array head claiming `count` items (RFC 8949 §4.2.1).
fn huge(count: u64) -> Vec<u8> {
    let n = u32::try_from(count).unwrap_or(u32::MAX);
    match n {
        0..=23 => vec![0x80 | n.to_be_bytes()[3]],
        24..=0xff => vec![0x98, n.to_be_bytes()[3]],
        0x100..=0xffff => [&[0x99][..], &n.to_be_bytes()[2..]].concat(),
        _ => [&[0x9a][..], &n.to_be_bytes()[..]].concat(),
    }
}

#[test]
fn the_issues_twenty_byte_pack_is_refused_at_its_runs_count() {
    let pack = [
        0xa7, 0x00, 0x01, 0x01, 0x60, 0x02, 0x00, 0x03, 0x80, 0x04, 0x80, 0x05, 0x84, 0x60, 0x40,
        0x9a, 0x04, 0x00, 0x00, 0x00,
    ];
    assert_eq!(
        Pack::decode(&pack),
        Err(CborError::CountBeyondInput {
            offset: 15,
            count: MAX_ENTRIES,
            min_item: 3,
            left: 0
        })
    );
}

#[test]
fn every_collected_count_of_a_pack_is_capped_by_the_bytes_left() {
    let empty = [&SECTION[..], &[0x80, 0x80]].concat();
    let n = MAX_ENTRIES;
    // (what, bytes before the array head, smallest item) for every array the decoder collects.
    let cases: [(&str, Vec<u8>, usize); 8] = [
        ("certificates", HEAD[..8].to_vec(), 3),
        ("retention", [&HEAD[..9], &[0x04]].concat(), 4),
        ("signer runs", [&HEAD[..], &[0x05], &SECTION].concat(), 3),
        (
            "signer run entries",
            [&HEAD[..], &[0x05], &SECTION, &[0x81, 0x82, 0x00]].concat(),
            36,
        ),
        (
            "signer proof",
            [&HEAD[..], &[0x05], &SECTION, &[0x80]].concat(),
            34,
        ),
        (
            "relay runs",
            [&HEAD[..], &[0x05], &empty, &[0x06], &SECTION].concat(),
            3,
        ),
        (
            "relay run entries",
            [
                &HEAD[..],
                &[0x05],
                &empty,
                &[0x06],
                &SECTION,
                &[0x81, 0x82, 0x00],
            ]
            .concat(),
            36,
        ),
        (
            "relay proof",
            [&HEAD[..], &[0x05], &empty, &[0x06], &SECTION, &[0x80]].concat(),
            34,
        ),
    ];
    for (what, prefix, min_item) in cases {
        // Certificates and retention records allow at most 64: claim 64 with 10 bytes left.
        let count = if what == "certificates" || what == "retention" {
            64
        } else {
            n
        };
        let mut pack = prefix.clone();
        pack.extend(huge(count));
        pack.extend([0u8; 10]);
        assert_eq!(
            Pack::decode(&pack),
            Err(CborError::CountBeyondInput {
                offset: prefix.len(),
                count,
                min_item,
                left: 10
            }),
            "{what}"
        );
    }
}

#[test]
fn a_bundle_claiming_millions_of_entries_is_refused_at_its_count() {
    // A bundle map of 7, version 2, origin "", from 0, no left edge, then 4,000,000 entries.
    let mut bundle = vec![0xa7, 0x00, 0x02, 0x01, 0x60, 0x02, 0x00, 0x03, 0x80, 0x04];
    bundle.extend(huge(MAX_BUNDLE_ENTRIES));
    let err = TransferBundle::decode(&bundle).unwrap_err().to_string();
    assert!(
        err.contains("entries: array at byte 10 claims 4000000 items of at least 1 bytes, only 0 bytes follow"),
        "{err}"
    );
}
