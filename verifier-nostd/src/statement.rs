//! Typed evidence statements: the release statement and the per-device manifest (formats.md §4),
//! in deterministic CBOR (RFC 8949 §4.2.1) with unsigned integer keys, and [`Statement`], any log
//! entry decoded by its kind.
//!
//! Every log entry is a map whose key 0 is the format version and key 1 the kind ([`crate::entry`],
//! re-exported here); the remaining keys depend on the kind. Decoding is strict: fields appear in
//! ascending key order, none is missing, none is unknown, and every value is in its schema's range.
//! A new field means a new format version.

use crate::cbor::Reader;
pub use crate::entry::{EntryHeader, FORMAT_VERSION, Kind};
use crate::error::{CborError, Context, Error, Item};
use crate::types::{Hash, Id, Name, SecurityEpoch, TextList, UnixTime, Version};

/// Most hardware revisions one release can list.
pub const MAX_HARDWARE_REVISIONS: u64 = 32;
/// Most advisory references one release can list.
pub const MAX_ADVISORIES: u64 = 64;

/// What a release authorizes: one firmware image for one device class (formats.md §4.3). It is the
/// payload of a COSE_Sign1 by the release key, so its own header (kind 1) also tells a verifier
/// that the signed bytes are a release statement and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseStatement<'a> {
    /// Release id, unique in the log (key 2).
    pub release_id: Id<'a>,
    /// Product name (key 3).
    pub product: Name<'a>,
    /// Device family (key 4).
    pub family: Name<'a>,
    /// Hardware revisions the image runs on (key 5), 1 to 32.
    pub hardware_revisions: TextList<'a>,
    /// Firmware version (key 6).
    pub version: Version,
    /// Anti-rollback epoch (key 7).
    pub security_epoch: SecurityEpoch,
    /// SHA-256 of the image (key 8).
    pub image_digest: Hash,
    /// Image length in bytes (key 9).
    pub image_size: u64,
    /// End of the support period (key 10); evidence is retained at least until then.
    pub support_until: UnixTime,
    /// Security advisories and CVE ids this release addresses (key 11), 0 to 64.
    pub advisories: TextList<'a>,
    /// When the statement was made (key 12).
    pub issued_at: UnixTime,
    /// File name of the artifact (key 13).
    pub artifact: Id<'a>,
    /// For an MCUboot-format image (formats.md §4.3, §8): the value of its SHA256 TLV, the digest
    /// its own signature covers (key 14, present only then). The image digest and size above are
    /// of the whole signed MCUboot image.
    pub mcuboot_hash: Option<Hash>,
}

impl<'a> ReleaseStatement<'a> {
    const FIELDS: u64 = 14;
    /// With key 14 (MCUboot-format image).
    const FIELDS_MCUBOOT: u64 = 15;

    /// Decodes a release statement (a COSE_Sign1 payload).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::Release)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        // 15 pairs or more: the MCUboot form (and more than 15 is its wrong length).
        let fields = match r.clone().map_len() {
            Ok(n) if n >= Self::FIELDS_MCUBOOT => Self::FIELDS_MCUBOOT,
            _ => Self::FIELDS,
        };
        EntryHeader::expect(r, Kind::RELEASE, fields)?;
        r.key(2)?;
        let release_id = Id::decode(r)?;
        r.key(3)?;
        let product = Name::decode(r)?;
        r.key(4)?;
        let family = Name::decode(r)?;
        r.key(5)?;
        let offset = r.position();
        let hardware_revisions =
            TextList::decode(r, MAX_HARDWARE_REVISIONS, |s| Id::new(s).is_some())?;
        if hardware_revisions.is_empty() {
            return Err(CborError::OutOfRange { offset });
        }
        r.key(6)?;
        let version = Version::decode(r)?;
        r.key(7)?;
        let security_epoch = SecurityEpoch(r.u64()?);
        r.key(8)?;
        let image_digest = r.bytes_fixed::<32>()?;
        r.key(9)?;
        let image_size = r.u64()?;
        r.key(10)?;
        let support_until = UnixTime(r.u64()?);
        r.key(11)?;
        let advisories = TextList::decode(r, MAX_ADVISORIES, |s| Name::new(s).is_some())?;
        r.key(12)?;
        let issued_at = UnixTime(r.u64()?);
        r.key(13)?;
        let artifact = Id::decode(r)?;
        let mcuboot_hash = if fields == Self::FIELDS_MCUBOOT {
            r.key(14)?;
            Some(r.bytes_fixed::<32>()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            release_id,
            product,
            family,
            hardware_revisions,
            version,
            security_epoch,
            image_digest,
            image_size,
            support_until,
            advisories,
            issued_at,
            artifact,
            mcuboot_hash,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let fields = if self.mcuboot_hash.is_some() {
            Self::FIELDS_MCUBOOT
        } else {
            Self::FIELDS
        };
        let mut w = EntryHeader::writer(Kind::RELEASE, fields);
        w.u64(2).text(self.release_id.as_str());
        w.u64(3).text(self.product.as_str());
        w.u64(4).text(self.family.as_str());
        w.u64(5).array(self.hardware_revisions.len());
        for hw in &self.hardware_revisions {
            w.text(hw);
        }
        w.u64(6);
        self.version.encode(&mut w);
        w.u64(7).u64(self.security_epoch.0);
        w.u64(8).bytes(&self.image_digest);
        w.u64(9).u64(self.image_size);
        w.u64(10).u64(self.support_until.0);
        w.u64(11).array(self.advisories.len());
        for a in &self.advisories {
            w.text(a);
        }
        w.u64(12).u64(self.issued_at.0);
        w.u64(13).text(self.artifact.as_str());
        if let Some(hash) = &self.mcuboot_hash {
            w.u64(14).bytes(hash);
        }
        w.into_bytes()
    }
}

/// The log entry of a release: `{0: 1, 1: 1, 2: <COSE_Sign1 bytes>}` (formats.md §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseEntry<'a> {
    /// The COSE_Sign1 whose payload is a [`ReleaseStatement`].
    pub cose_sign1: &'a [u8],
}

impl<'a> ReleaseEntry<'a> {
    /// Decodes the entry (the COSE_Sign1 inside is not decoded): the signed-entry shape of
    /// formats.md §4.2, with kind 1.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        crate::custody::SignedEntry::decode(bytes, Kind::RELEASE).map(|e| Self {
            cose_sign1: e.cose_sign1,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        crate::custody::SignedEntry {
            kind: Kind::RELEASE,
            cose_sign1: self.cose_sign1,
        }
        .to_cbor()
    }
}

/// Why a manifest was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Purpose {
    /// The campaign's update (0).
    Update,
    /// The rollout plan's pre-signed rollback target (1).
    Rollback,
}

impl Purpose {
    /// The encoded value (key 9 of a manifest).
    pub fn code(self) -> u64 {
        match self {
            Purpose::Update => 0,
            Purpose::Rollback => 1,
        }
    }
}

/// The per-device manifest: "this device is eligible for this release in this campaign"
/// (formats.md §4.4). It is not signed by itself: the checkpoint signature and an inclusion proof
/// authenticate it, so one log-key signature covers a whole cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest<'a> {
    /// The device (key 2).
    pub device_id: Id<'a>,
    /// The release (key 3).
    pub release_id: Id<'a>,
    /// SHA-256 of the release's COSE_Sign1 bytes (key 4): binds the manifest to one signed release.
    pub release_digest: Hash,
    /// The device's hardware revision (key 5).
    pub hardware_revision: Id<'a>,
    /// Lowest current firmware version allowed to install (key 6), inclusive.
    pub min_version: Version,
    /// Highest current firmware version allowed to install (key 7), inclusive.
    pub max_version: Version,
    /// The campaign (rollout) the decision belongs to (key 8).
    pub campaign: Id<'a>,
    /// Update or rollback (key 9).
    pub purpose: Purpose,
    /// When the eligibility decision was made (key 10).
    pub decided_at: UnixTime,
    /// The campaign's sequence in its device class, from its plan (key 11, formats.md §5.1).
    pub campaign_sequence: u64,
}

impl<'a> Manifest<'a> {
    const FIELDS: u64 = 12;

    /// Decodes a manifest log entry.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::Manifest)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        EntryHeader::expect(r, Kind::MANIFEST, Self::FIELDS)?;
        r.key(2)?;
        let device_id = Id::decode(r)?;
        r.key(3)?;
        let release_id = Id::decode(r)?;
        r.key(4)?;
        let release_digest = r.bytes_fixed::<32>()?;
        r.key(5)?;
        let hardware_revision = Id::decode(r)?;
        r.key(6)?;
        let min_version = Version::decode(r)?;
        r.key(7)?;
        let offset = r.position();
        let max_version = Version::decode(r)?;
        if max_version < min_version {
            return Err(CborError::OutOfRange { offset });
        }
        r.key(8)?;
        let campaign = Id::decode(r)?;
        r.key(9)?;
        let offset = r.position();
        let purpose = match r.u64()? {
            0 => Purpose::Update,
            1 => Purpose::Rollback,
            _ => return Err(CborError::OutOfRange { offset }),
        };
        r.key(10)?;
        let decided_at = UnixTime(r.u64()?);
        r.key(11)?;
        let campaign_sequence = r.u64()?;
        r.finish()?;
        Ok(Self {
            device_id,
            release_id,
            release_digest,
            hardware_revision,
            min_version,
            max_version,
            campaign,
            purpose,
            decided_at,
            campaign_sequence,
        })
    }

    /// The deterministic CBOR encoding (the log entry bytes).
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(Kind::MANIFEST, Self::FIELDS);
        w.u64(2).text(self.device_id.as_str());
        w.u64(3).text(self.release_id.as_str());
        w.u64(4).bytes(&self.release_digest);
        w.u64(5).text(self.hardware_revision.as_str());
        w.u64(6);
        self.min_version.encode(&mut w);
        w.u64(7);
        self.max_version.encode(&mut w);
        w.u64(8).text(self.campaign.as_str());
        w.u64(9).u64(self.purpose.code());
        w.u64(10).u64(self.decided_at.0);
        w.u64(11).u64(self.campaign_sequence);
        w.into_bytes()
    }
}

/// Any log entry of a known kind, decoded: what the evidence index needs from every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Statement<'a> {
    /// A release entry and the statement inside its COSE_Sign1 (signature not verified here).
    Release {
        /// The entry.
        entry: ReleaseEntry<'a>,
        /// The decoded payload.
        statement: ReleaseStatement<'a>,
    },
    /// A per-device manifest.
    Manifest(Manifest<'a>),
    /// A key ceremony record and its entry (root signature not verified here).
    Ceremony {
        /// The entry.
        entry: crate::custody::SignedEntry<'a>,
        /// The decoded payload.
        record: crate::custody::CeremonyRecord<'a>,
    },
    /// A signing session record.
    Session(crate::custody::SessionRecord<'a>),
    /// A key rotation or revocation and its entry (root signature not verified here).
    Key {
        /// The entry.
        entry: crate::custody::SignedEntry<'a>,
        /// The decoded payload.
        statement: crate::custody::KeyStatement<'a>,
    },
    /// A device found not eligible, with its reasons.
    Rejection(crate::rollout::Rejection<'a>),
    /// A rollout plan and its entry (release signature not verified here).
    Plan {
        /// The entry.
        entry: crate::custody::SignedEntry<'a>,
        /// The decoded payload.
        plan: crate::rollout::RolloutPlan<'a>,
    },
    /// A gate approval and its entry (release signature not verified here).
    Approval {
        /// The entry.
        entry: crate::custody::SignedEntry<'a>,
        /// The decoded payload.
        approval: crate::campaign::Approval<'a>,
    },
    /// A device state transition logged by the relay.
    DeviceEvent(crate::campaign::DeviceEvent<'a>),
    /// A campaign action logged by the relay.
    CampaignEvent(crate::campaign::CampaignEvent<'a>),
    /// A relay checkpoint the custodians recorded in the signer's log.
    RelayCheckpoint(crate::campaign::RelayCheckpoint<'a>),
}

impl<'a> Statement<'a> {
    /// Decodes an entry of any known kind. Unknown kinds and versions are `Unsupported`.
    pub fn decode(entry: &'a [u8]) -> Result<Self, Error> {
        let header = EntryHeader::peek(entry)?;
        match header.kind {
            Kind::RELEASE => {
                let release = ReleaseEntry::decode(entry)?;
                let cose = crate::cose::CoseSign1::decode(release.cose_sign1)?;
                let statement = ReleaseStatement::decode(cose.payload)?;
                Ok(Statement::Release {
                    entry: release,
                    statement,
                })
            }
            Kind::MANIFEST => Ok(Statement::Manifest(Manifest::decode(entry)?)),
            Kind::CEREMONY => {
                let signed = crate::custody::SignedEntry::decode(entry, Kind::CEREMONY)?;
                let cose = crate::cose::CoseSign1::decode(signed.cose_sign1)?;
                let record = crate::custody::CeremonyRecord::decode(cose.payload)?;
                Ok(Statement::Ceremony {
                    entry: signed,
                    record,
                })
            }
            Kind::SESSION => Ok(Statement::Session(crate::custody::SessionRecord::decode(
                entry,
            )?)),
            Kind::KEY => {
                let signed = crate::custody::SignedEntry::decode(entry, Kind::KEY)?;
                let cose = crate::cose::CoseSign1::decode(signed.cose_sign1)?;
                let statement = crate::custody::KeyStatement::decode(cose.payload)?;
                Ok(Statement::Key {
                    entry: signed,
                    statement,
                })
            }
            Kind::REJECTION => Ok(Statement::Rejection(crate::rollout::Rejection::decode(
                entry,
            )?)),
            Kind::PLAN => {
                let signed = crate::custody::SignedEntry::decode(entry, Kind::PLAN)?;
                let cose = crate::cose::CoseSign1::decode(signed.cose_sign1)?;
                let plan = crate::rollout::RolloutPlan::decode(cose.payload)?;
                Ok(Statement::Plan {
                    entry: signed,
                    plan,
                })
            }
            Kind::APPROVAL => {
                let signed = crate::custody::SignedEntry::decode(entry, Kind::APPROVAL)?;
                let cose = crate::cose::CoseSign1::decode(signed.cose_sign1)?;
                let approval = crate::campaign::Approval::decode(cose.payload)?;
                Ok(Statement::Approval {
                    entry: signed,
                    approval,
                })
            }
            Kind::DEVICE_EVENT => Ok(Statement::DeviceEvent(
                crate::campaign::DeviceEvent::decode(entry)?,
            )),
            Kind::CAMPAIGN_EVENT => Ok(Statement::CampaignEvent(
                crate::campaign::CampaignEvent::decode(entry)?,
            )),
            Kind::RELAY_CHECKPOINT => Ok(Statement::RelayCheckpoint(
                crate::campaign::RelayCheckpoint::decode(entry)?,
            )),
            Kind(_) => Err(Error::Malformed {
                item: Item::Entry,
                cause: CborError::Unsupported { offset: 0 },
            }),
        }
    }

    /// The entry's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Statement::Release { .. } => Kind::RELEASE,
            Statement::Manifest(_) => Kind::MANIFEST,
            Statement::Ceremony { .. } => Kind::CEREMONY,
            Statement::Session(_) => Kind::SESSION,
            Statement::Key { .. } => Kind::KEY,
            Statement::Rejection(_) => Kind::REJECTION,
            Statement::Plan { .. } => Kind::PLAN,
            Statement::Approval { .. } => Kind::APPROVAL,
            Statement::DeviceEvent(_) => Kind::DEVICE_EVENT,
            Statement::CampaignEvent(_) => Kind::CAMPAIGN_EVENT,
            Statement::RelayCheckpoint(_) => Kind::RELAY_CHECKPOINT,
        }
    }

    /// The release the statement is about, if any.
    pub fn release_id(&self) -> Option<Id<'a>> {
        match self {
            Statement::Release { statement, .. } => Some(statement.release_id),
            Statement::Manifest(m) => Some(m.release_id),
            Statement::Rejection(r) => Some(r.release_id),
            Statement::Plan { plan, .. } => Some(plan.release_id),
            Statement::DeviceEvent(e) => Some(e.release_id),
            Statement::Ceremony { .. }
            | Statement::Session(_)
            | Statement::Key { .. }
            | Statement::Approval { .. }
            | Statement::CampaignEvent(_)
            | Statement::RelayCheckpoint(_) => None,
        }
    }

    /// The device the statement is about, if any.
    pub fn device_id(&self) -> Option<Id<'a>> {
        match self {
            Statement::Manifest(m) => Some(m.device_id),
            Statement::Rejection(r) => Some(r.device_id),
            Statement::DeviceEvent(e) => Some(e.device_id),
            _ => None,
        }
    }

    /// The campaign the statement belongs to, if any.
    pub fn campaign(&self) -> Option<Id<'a>> {
        match self {
            Statement::Manifest(m) => Some(m.campaign),
            Statement::Rejection(r) => Some(r.campaign),
            Statement::Plan { plan, .. } => Some(plan.campaign),
            Statement::Approval { approval, .. } => Some(approval.campaign),
            Statement::DeviceEvent(e) => Some(e.campaign),
            Statement::CampaignEvent(e) => Some(e.campaign),
            _ => None,
        }
    }

    /// When the statement was made (by its own clock: issued, decided, observed).
    pub fn time(&self) -> UnixTime {
        match self {
            Statement::Release { statement, .. } => statement.issued_at,
            Statement::Manifest(m) => m.decided_at,
            Statement::Ceremony { record, .. } => record.performed_at,
            Statement::Session(s) => s.opened_at,
            Statement::Key { statement, .. } => statement.issued_at,
            Statement::Rejection(r) => r.decided_at,
            Statement::Plan { plan, .. } => plan.created_at,
            Statement::Approval { approval, .. } => approval.approved_at,
            Statement::DeviceEvent(e) => e.at,
            Statement::CampaignEvent(e) => e.at,
            Statement::RelayCheckpoint(r) => r.recorded_at,
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::campaign::RelayCheckpoint;

    #[test]
    fn a_relay_checkpoint_record_decodes_as_one() {
        let key = crate::crypto::PublicKey([9; 64]);
        let note = b"oem.example/cairn/log/relay\n3\nAAAA\n\n\xe2\x80\x94 k x\n";
        let record = RelayCheckpoint {
            origin: Name::new("oem.example/cairn/log/relay").unwrap(),
            relay_key: key,
            checkpoint: note,
            recorded_at: UnixTime(1_795_651_200),
        };
        let bytes = record.to_cbor();
        assert!(matches!(
            Statement::decode(&bytes),
            Ok(Statement::RelayCheckpoint(r)) if r == record
        ));
    }
}
