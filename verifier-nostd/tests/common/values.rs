//! Values used in the round trips.

use cairn_verifier::statement::{EntryHeader, Kind, Manifest, Purpose, ReleaseStatement};
use cairn_verifier::types::{Id, Name, SecurityEpoch, TextList, UnixTime, Version};

use super::cbor::*;

// =============================================================================================
// Values used in the round trips

pub(crate) fn id(s: &str) -> Id<'_> {
    Id::new(s).unwrap()
}

pub(crate) fn name(s: &str) -> Name<'_> {
    Name::new(s).unwrap()
}

pub(crate) const HW: &[&str] = &["rev-b", "rev-c"];
pub(crate) const ADVISORIES: &[&str] = &["CVE-2026-10001", "CAIRN-SA-2026-07"];

pub(crate) fn reference_release() -> ReleaseStatement<'static> {
    ReleaseStatement {
        release_id: id("controller-fw-2.4.1"),
        product: name("Smart Controller"),
        family: name("STM32H5"),
        hardware_revisions: TextList::Slice(HW),
        version: Version::new(2, 4, 1),
        security_epoch: SecurityEpoch(3),
        image_digest: [0x11; 32],
        image_size: 6 * 1024,
        support_until: UnixTime(1_956_528_000),
        advisories: TextList::Slice(ADVISORIES),
        issued_at: UnixTime(1_795_000_000),
        artifact: id("controller-fw-2.4.1-security.bin"),
        mcuboot_hash: None,
    }
}

pub(crate) fn release_tree(s: &ReleaseStatement<'_>) -> V {
    let mut fields = vec![
        (0, U(1)),
        (1, U(1)),
        (2, t(s.release_id.as_str())),
        (3, t(s.product.as_str())),
        (4, t(s.family.as_str())),
        (5, texts(&s.hardware_revisions)),
        (6, version(s.version)),
        (7, U(s.security_epoch.0)),
        (8, B(s.image_digest.to_vec())),
        (9, U(s.image_size)),
        (10, U(s.support_until.0)),
        (11, texts(&s.advisories)),
        (12, U(s.issued_at.0)),
        (13, t(s.artifact.as_str())),
    ];
    if let Some(hash) = s.mcuboot_hash {
        fields.push((14, B(hash.to_vec())));
    }
    map(fields)
}

pub(crate) fn reference_manifest() -> Manifest<'static> {
    Manifest {
        device_id: id("dev-000001"),
        release_id: id("controller-fw-2.4.1"),
        release_digest: [0x22; 32],
        hardware_revision: id("rev-c"),
        min_version: Version::new(2, 0, 0),
        max_version: Version::new(2, 4, 0),
        campaign: id("campaign-2026-11"),
        purpose: Purpose::Update,
        decided_at: UnixTime(1_795_000_100),
        campaign_sequence: 1,
    }
}

pub(crate) fn manifest_tree(m: &Manifest<'_>) -> V {
    map(vec![
        (0, U(1)),
        (1, U(2)),
        (2, t(m.device_id.as_str())),
        (3, t(m.release_id.as_str())),
        (4, B(m.release_digest.to_vec())),
        (5, t(m.hardware_revision.as_str())),
        (6, version(m.min_version)),
        (7, version(m.max_version)),
        (8, t(m.campaign.as_str())),
        (
            9,
            U(match m.purpose {
                Purpose::Update => 0,
                Purpose::Rollback => 1,
            }),
        ),
        (10, U(m.decided_at.0)),
        (11, U(m.campaign_sequence)),
    ])
}

pub(crate) fn check_release(s: &ReleaseStatement<'_>) {
    let bytes = s.to_cbor();
    let decoded = ReleaseStatement::decode(&bytes).unwrap();
    assert_eq!(&decoded, s);
    assert_eq!(decoded.to_cbor(), bytes);
    assert_eq!(
        decoded.hardware_revisions.iter().collect::<Vec<_>>(),
        s.hardware_revisions.iter().collect::<Vec<_>>()
    );
    cross_check(&bytes, &release_tree(s));
    assert_eq!(
        EntryHeader::peek(&bytes),
        Ok(EntryHeader {
            version: 1,
            kind: Kind::RELEASE,
            fields: if s.mcuboot_hash.is_some() { 15 } else { 14 }
        })
    );
}

pub(crate) fn check_manifest(m: &Manifest<'_>) {
    let bytes = m.to_cbor();
    let decoded = Manifest::decode(&bytes).unwrap();
    assert_eq!(&decoded, m);
    assert_eq!(decoded.to_cbor(), bytes);
    cross_check(&bytes, &manifest_tree(m));
    assert_eq!(
        EntryHeader::peek(&bytes),
        Ok(EntryHeader {
            version: 1,
            kind: Kind::MANIFEST,
            fields: 12
        })
    );
}
