//! Property: the log entry statements have exactly one encoding. ReleaseStatement, Manifest and
//! ReleaseEntry (statement.rs) and the entry header (entry.rs): each encoder's output decodes back
//! to the same value, an independent CBOR implementation (minicbor) reads it as the documented
//! structure and re-encodes it to the same bytes, and each decoder rejects every other encoding of
//! the data (non-canonical CBOR, schema violations) with the specific `Error` and byte offset.
//! The harness is in `common/` (shared with the other `encoding_*` files).

mod common;

use cairn_verifier::Error;
use cairn_verifier::error::{CborError, Item};
use cairn_verifier::statement::{
    EntryHeader, Kind, Manifest, Purpose, ReleaseEntry, ReleaseStatement,
};
use cairn_verifier::test_support::Fixture;
use cairn_verifier::types::{SecurityEpoch, TextList, UnixTime, Version};
use proptest::prelude::*;

use common::cbor::*;
use common::harness::*;
use common::values::*;

// =============================================================================================
// ReleaseStatement

#[test]
fn release_statement_round_trips() {
    check_release(&reference_release());

    // limits: 32 hardware revisions, 64 advisories, longest ids and names, largest numbers
    let hw: Vec<String> = (0..32).map(|i| format!("rev-{i:02}")).collect();
    let hw: Vec<&str> = hw.iter().map(String::as_str).collect();
    let adv: Vec<String> = (0..64).map(|i| format!("CVE-2026-{i:05}")).collect();
    let adv: Vec<&str> = adv.iter().map(String::as_str).collect();
    let long_id = "r".repeat(64);
    let long_name = "é".repeat(64); // 128 bytes
    check_release(&ReleaseStatement {
        release_id: id(&long_id),
        product: name(&long_name),
        family: name("STM32H5 · ✓"),
        hardware_revisions: TextList::Slice(&hw),
        version: Version::new(u32::MAX, u32::MAX, u32::MAX),
        security_epoch: SecurityEpoch(u64::MAX),
        image_digest: [0xff; 32],
        image_size: u64::MAX,
        support_until: UnixTime(u64::MAX),
        advisories: TextList::Slice(&adv),
        issued_at: UnixTime(0),
        artifact: id("a"),
        mcuboot_hash: Some([0xfe; 32]),
    });
    // no advisories, one hardware revision, zeros
    check_release(&ReleaseStatement {
        hardware_revisions: TextList::Slice(&["rev-a"]),
        advisories: TextList::Slice(&[]),
        version: Version::new(0, 0, 0),
        security_epoch: SecurityEpoch(0),
        image_size: 0,
        ..reference_release()
    });
}

#[test]
fn mcuboot_release_statement_rejects_other_encodings() {
    // A release has 14 pairs, or 15 with key 14 (an MCUboot image's SHA256 TLV): a 15-pair
    // release without its last pair is the valid 14-pair form.
    let mcuboot = Format::new(
        Item::Release,
        |b| ReleaseStatement::decode(b).map(|_| ()),
        ReleaseStatement {
            mcuboot_hash: Some([0x33; 32]),
            ..reference_release()
        }
        .to_cbor(),
    )
    .skipping("missing key, count adjusted");
    mcuboot.map_rules();
    mcuboot.rejects(
        "MCUboot hash of 31 bytes",
        &at_val(14),
        |v| *v.field(14) = B(vec![0x33; 31]),
        |offset, _| CborError::WrongLength {
            offset,
            expected: 32,
        },
    );
    // A 15-pair map without key 14 is refused at the key it has instead (it is the MCUboot form).
    Format::new(
        Item::Release,
        |b| ReleaseStatement::decode(b).map(|_| ()),
        reference_release().to_cbor(),
    )
    .rejects(
        "duplicate key, 15 pairs: the MCUboot form without key 14",
        &at_key(13),
        |v| {
            let dup = v.entries()[12].clone();
            v.entries().insert(13, dup);
        },
        unexpected_key(13, 12),
    );
}

#[test]
fn release_statement_rejects_other_encodings() {
    // The generic rules that a 15-pair map breaks are checked by the test above.
    let f = Format::new(
        Item::Release,
        |b| ReleaseStatement::decode(b).map(|_| ()),
        reference_release().to_cbor(),
    )
    .skipping("duplicate key, count adjusted")
    .skipping("unknown extra key, count adjusted");
    f.map_rules();
    f.kind_rules(&[0, 2, 3, u64::MAX]);
    f.text_field("release id", &at_val(2), set_field(2));
    f.text_field("product", &at_val(3), set_field(3));
    f.text_field("artifact", &at_val(13), set_field(13));
    for bad in ids_invalid() {
        for k in [2, 13] {
            f.rejects(
                &format!("invalid id {bad:?} at key {k}"),
                &at_val(k),
                |v| *v.field(k as u64) = T(bad.clone()),
                |offset, _| CborError::InvalidText { offset },
            );
        }
    }
    for bad in names_invalid() {
        for k in [3, 4] {
            f.rejects(
                &format!("invalid name {bad:?} at key {k}"),
                &at_val(k),
                |v| *v.field(k as u64) = T(bad.clone()),
                |offset, _| CborError::InvalidText { offset },
            );
        }
    }
    // hardware revisions: 1 to 32 identifiers
    let hw = at_val(5);
    f.rejects(
        "no hardware revisions",
        &hw,
        |v| v.field(5).items().clear(),
        |offset, _| CborError::OutOfRange { offset },
    );
    f.rejects(
        "33 hardware revisions",
        &hw,
        |v| *v.field(5) = A((0..33).map(|i| T(format!("rev-{i}"))).collect()),
        |offset, _| CborError::OutOfRange { offset },
    );
    f.rejects(
        "invalid hardware revision",
        &[hw.clone(), vec![1]].concat(),
        |v| v.field(5).items()[1] = t("rev c"),
        |offset, _| CborError::InvalidText { offset },
    );
    f.rejects(
        "hardware revision not text",
        &[hw.clone(), vec![0]].concat(),
        |v| v.field(5).items()[0] = U(3),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "text string",
        },
    );
    f.rejects_same_data(
        "hardware revisions indefinite",
        &hw,
        |v| v.field(5).wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    f.rejects_same_data(
        "hardware revision indefinite",
        &[hw.clone(), vec![0]].concat(),
        |v| v.field(5).items()[0].wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    f.rejects(
        "hardware revisions as text",
        &hw,
        |v| *v.field(5) = t("rev-b"),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "array",
        },
    );
    // advisories: 0 to 64 names
    f.rejects(
        "65 advisories",
        &at_val(11),
        |v| *v.field(11) = A((0..65).map(|i| T(format!("CVE-{i}"))).collect()),
        |offset, _| CborError::OutOfRange { offset },
    );
    f.rejects(
        "invalid advisory",
        &[at_val(11), vec![0]].concat(),
        |v| v.field(11).items()[0] = t(" CVE"),
        |offset, _| CborError::InvalidText { offset },
    );
    f.version_field("version", 6);
    f.uint_field("security epoch", 7);
    f.hash_field("image digest", &at_val(8), set_field(8));
    f.uint_field("image size", 9);
    f.uint_field("support until", 10);
    f.uint_field("issued at", 12);
}

// =============================================================================================
// Manifest

#[test]
fn manifest_round_trips() {
    check_manifest(&reference_manifest());
    check_manifest(&Manifest {
        purpose: Purpose::Rollback,
        min_version: Version::new(2, 4, 1),
        max_version: Version::new(2, 4, 1),
        decided_at: UnixTime(u64::MAX),
        campaign_sequence: u64::MAX,
        device_id: id(&"d".repeat(64)),
        ..reference_manifest()
    });
}

#[test]
fn a_manifest_without_a_campaign_sequence_is_malformed() {
    // The 11-key manifest of before issue 20 item 4 (formats.md §4.4): the same bytes without
    // key 11, map(11). Never read as a manifest of some default campaign sequence.
    let new = Manifest {
        campaign_sequence: 4,
        ..reference_manifest()
    }
    .to_cbor();
    assert_eq!((new[0], &new[new.len() - 2..]), (0xac, &[0x0b, 0x04][..]));
    let mut old = new[..new.len() - 2].to_vec();
    old[0] = 0xab;
    assert!(matches!(
        Manifest::decode(&old),
        Err(Error::Malformed {
            item: Item::Manifest,
            cause: CborError::WrongLength { offset: 0, .. }
        })
    ));
}

#[test]
fn manifest_rejects_other_encodings() {
    let f = Format::new(
        Item::Manifest,
        |b| Manifest::decode(b).map(|_| ()),
        reference_manifest().to_cbor(),
    );
    f.map_rules();
    f.kind_rules(&[0, 1, 3, u64::MAX]);
    for (k, what) in [
        (2, "device id"),
        (3, "release id"),
        (5, "hardware revision"),
        (8, "campaign"),
    ] {
        f.text_field(what, &at_val(k), set_field(k as u64));
        for bad in ids_invalid() {
            f.rejects(
                &format!("invalid {what} {bad:?}"),
                &at_val(k),
                |v| *v.field(k as u64) = T(bad.clone()),
                |offset, _| CborError::InvalidText { offset },
            );
        }
    }
    f.hash_field("release digest", &at_val(4), set_field(4));
    f.version_field("min version", 6);
    f.version_field("max version", 7);
    f.rejects(
        "max version below min version",
        &at_val(7),
        |v| *v.field(7) = version(Version::new(1, 9, 9)),
        |offset, _| CborError::OutOfRange { offset },
    );
    for purpose in [2, 255, u64::MAX] {
        f.rejects(
            "unknown purpose",
            &at_val(9),
            |v| *v.field(9) = U(purpose),
            |offset, _| CborError::OutOfRange { offset },
        );
    }
    f.uint_field("purpose", 9);
    f.uint_field("decided at", 10);
    f.uint_field("campaign sequence", 11);
}

proptest! {
    #[test]
    fn manifests_round_trip(
        device in "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
        release in "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
        hw in "[A-Za-z0-9][A-Za-z0-9._:-]{0,10}",
        campaign in "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
        digest in any::<[u8; 32]>(),
        min in any::<(u32, u32, u32)>(),
        max in any::<(u32, u32, u32)>(),
        rollback in any::<bool>(),
        decided in any::<u64>(),
        sequence in any::<u64>(),
    ) {
        let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
        check_manifest(&Manifest {
            device_id: id(&device),
            release_id: id(&release),
            release_digest: digest,
            hardware_revision: id(&hw),
            min_version: Version::new(lo.0, lo.1, lo.2),
            max_version: Version::new(hi.0, hi.1, hi.2),
            campaign: id(&campaign),
            purpose: if rollback { Purpose::Rollback } else { Purpose::Update },
            decided_at: UnixTime(decided),
            campaign_sequence: sequence,
        });
    }

    #[test]
    fn release_statements_round_trip(
        release in "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
        product in "[A-Za-z0-9]([A-Za-z0-9 äé€·-]{0,40}[A-Za-z0-9])?",
        hw in proptest::collection::vec("[a-z0-9][a-z0-9-]{0,8}", 1..=32),
        advisories in proptest::collection::vec("[A-Z][A-Z0-9-]{0,20}", 0..=64),
        v in any::<(u32, u32, u32)>(),
        epoch in any::<u64>(),
        digest in any::<[u8; 32]>(),
        size in any::<u64>(),
        times in any::<(u64, u64)>(),
    ) {
        let hw: Vec<&str> = hw.iter().map(String::as_str).collect();
        let advisories: Vec<&str> = advisories.iter().map(String::as_str).collect();
        check_release(&ReleaseStatement {
            release_id: id(&release),
            product: name(&product),
            family: name(&product),
            hardware_revisions: TextList::Slice(&hw),
            version: Version::new(v.0, v.1, v.2),
            security_epoch: SecurityEpoch(epoch),
            image_digest: digest,
            image_size: size,
            support_until: UnixTime(times.0),
            advisories: TextList::Slice(&advisories),
            issued_at: UnixTime(times.1),
            artifact: id(&release),
            mcuboot_hash: None,
        });
    }
}

// =============================================================================================
// ReleaseEntry

#[test]
fn release_entry_round_trips() {
    let f = Fixture::new();
    let parts = f.build(&f.spec());
    let entry = ReleaseEntry {
        cose_sign1: &parts.release,
    };
    let bytes = entry.to_cbor();
    let decoded = ReleaseEntry::decode(&bytes).unwrap();
    assert_eq!(decoded, entry);
    assert_eq!(decoded.to_cbor(), bytes);
    cross_check(
        &bytes,
        &map(vec![(0, U(1)), (1, U(1)), (2, B(parts.release.clone()))]),
    );
    assert_eq!(
        EntryHeader::peek(&bytes),
        Ok(EntryHeader {
            version: 1,
            kind: Kind::RELEASE,
            fields: 3
        })
    );
}

#[test]
fn release_entry_rejects_other_encodings() {
    let f = Fixture::new();
    let parts = f.build(&f.spec());
    let fmt = Format::new(
        Item::Entry,
        |b| ReleaseEntry::decode(b).map(|_| ()),
        ReleaseEntry {
            cose_sign1: &parts.release,
        }
        .to_cbor(),
    );
    fmt.map_rules();
    fmt.kind_rules(&[0, 2, 3]);
    fmt.rejects_same_data(
        "COSE_Sign1 length widened",
        &at_val(2),
        |v| v.field(2).wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects_same_data(
        "COSE_Sign1 in indefinite-length bytes",
        &at_val(2),
        |v| v.field(2).wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    fmt.rejects(
        "COSE_Sign1 embedded as an item instead of bytes",
        &at_val(2),
        |v| *v.field(2) = parse(&parts.release),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "byte string",
        },
    );
}

#[test]
fn entry_header_peek() {
    let bytes = reference_manifest().to_cbor();
    let mut v = parse(&bytes);
    *v.field(0) = U(2);
    let (bad, offset) = encode_marked(&v, &at_val(0));
    assert_eq!(
        EntryHeader::peek(&bad),
        Err(Error::Malformed {
            item: Item::Entry,
            cause: CborError::Unsupported { offset }
        })
    );
    // peek reads any kind: the kind is the caller's to dispatch on
    let mut v = parse(&bytes);
    *v.field(1) = U(77);
    assert_eq!(
        EntryHeader::peek(&encode(&v)),
        Ok(EntryHeader {
            version: 1,
            kind: Kind(77),
            fields: 12
        })
    );
}
