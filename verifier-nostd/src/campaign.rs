//! Rollout execution evidence (formats.md §4.10 to §4.12, §7): the gate approval custodians sign
//! offline, the status report a device publishes after a delivery, and the two kinds of events the
//! relay logs in its own log, one per device state transition and one per campaign action.
//!
//! The relay chooses among options the signed plan (§4.9) allows and records each choice with its
//! actor and cause; these are the formats of those records.

use crate::cbor::Reader;
use crate::entry::{EntryHeader, Kind};
use crate::error::{CborError, Context, Error, Item};
use crate::types::{Hash, Id, Name, UnixTime};

macro_rules! coded_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal, $text:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The encoded value.
            pub const fn code(self) -> u64 {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            /// The value of a code.
            pub fn from_code(code: u64) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// A short name for reports and APIs.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value of a short name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name() == name)
            }

            fn read(r: &mut Reader<'_>) -> Result<Self, CborError> {
                let offset = r.position();
                Self::from_code(r.u64()?).ok_or(CborError::OutOfRange { offset })
            }
        }
    };
}

coded_enum! {
    /// A device's update state (design.md, "Device update states").
    DeviceState {
        /// Its stage is open; the delivery waits to be handed to the broker (1).
        Pending = 1, "pending";
        /// Approved by the signed plan; its stage has not opened yet (2).
        Eligible = 2, "eligible";
        /// The broker acknowledged the delivery (3).
        Delivered = 3, "delivered";
        /// The device reported the update installed (4).
        Installed = 4, "installed";
        /// The device reported a failure (5).
        Failed = 5, "failed";
        /// Held back: the campaign is paused (6).
        Paused = 6, "paused";
        /// The device installed the pre-signed rollback target (7).
        RolledBack = 7, "rolled-back";
        /// Not eligible (its decision is a rejection, §4.8) (8).
        Rejected = 8, "rejected";
        /// Taken out of the campaign: nothing more is delivered to it (9).
        Quarantined = 9, "quarantined";
    }
}

coded_enum! {
    /// What a device reports after a delivery (§7).
    Outcome {
        /// The delivered image passed the boot check and runs (1).
        Installed = 1, "installed";
        /// The boot check passed but installing failed (2).
        InstallFailed = 2, "install-failed";
        /// The boot check refused the delivery or the image (3).
        VerificationFailed = 3, "verification-failed";
    }
}

coded_enum! {
    /// A campaign-level action of the relay (§4.12).
    Action {
        /// The relay took the signed plan up (1).
        Started = 1, "started";
        /// A stage opened: its devices are offered the update (2).
        StageOpened = 2, "stage-opened";
        /// A stage met its success threshold after its soak (3).
        StageSucceeded = 3, "stage-succeeded";
        /// The rollout is paused (4).
        Paused = 4, "paused";
        /// The rollout resumed (5).
        Resumed = 5, "resumed";
        /// A signed gate approval was applied (6).
        ApprovalApplied = 6, "approval-applied";
        /// The pre-signed rollback target is being delivered (7).
        RollbackStarted = 7, "rollback-started";
        /// Devices were quarantined (8).
        Quarantined = 8, "quarantined";
        /// Every stage is done (9).
        Completed = 9, "completed";
        /// The plan's exponential rollout rate stepped up; `devices` holds the new rate, things
        /// per minute (10).
        RateIncreased = 10, "rate-increased";
    }
}

coded_enum! {
    /// What a gate approval allows (§4.10).
    ApprovalAction {
        /// Open the stage (its previous stage's gate is `approval`) (1).
        OpenStage = 1, "open-stage";
        /// Resume a rollout the relay paused on a failure threshold in the stage (2).
        Resume = 2, "resume";
    }
}

/// Longest stage index a statement may name: plans have at most 16 stages.
const MAX_STAGE: u64 = crate::rollout::MAX_STAGES - 1;

fn read_stage(r: &mut Reader<'_>) -> Result<u64, CborError> {
    let offset = r.position();
    let stage = r.u64()?;
    (stage <= MAX_STAGE)
        .then_some(stage)
        .ok_or(CborError::OutOfRange { offset })
}

/// A gate approval (kind 8; the COSE_Sign1 payload by the release key, entry `{0: 1, 1: 8, 2:
/// bstr}`): custodians, in a signing session, let a campaign open a stage or resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval<'a> {
    /// Campaign (key 2).
    pub campaign: Id<'a>,
    /// SHA-256 of the plan's COSE_Sign1 bytes: the approval is for that exact plan (key 3).
    pub plan_digest: Hash,
    /// The stage, counted from 0 (key 4).
    pub stage: u64,
    /// What it allows (key 5).
    pub action: ApprovalAction,
    /// When (key 6).
    pub approved_at: UnixTime,
}

impl<'a> Approval<'a> {
    const FIELDS: u64 = 7;

    /// Decodes an approval (a COSE_Sign1 payload).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::Approval)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        EntryHeader::expect(r, Kind::APPROVAL, Self::FIELDS)?;
        r.key(2)?;
        let campaign = Id::decode(r)?;
        r.key(3)?;
        let plan_digest = r.bytes_fixed::<32>()?;
        r.key(4)?;
        let stage = read_stage(r)?;
        r.key(5)?;
        let action = ApprovalAction::read(r)?;
        r.key(6)?;
        let approved_at = UnixTime(r.u64()?);
        r.finish()?;
        Ok(Self {
            campaign,
            plan_digest,
            stage,
            action,
            approved_at,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(Kind::APPROVAL, Self::FIELDS);
        w.u64(2).text(self.campaign.as_str());
        w.u64(3).bytes(&self.plan_digest);
        w.u64(4).u64(self.stage);
        w.u64(5).u64(self.action.code());
        w.u64(6).u64(self.approved_at.0);
        w.into_bytes()
    }
}

/// One device state transition, logged by the relay in its own log (kind 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceEvent<'a> {
    /// Campaign (key 2).
    pub campaign: Id<'a>,
    /// Device (key 3).
    pub device_id: Id<'a>,
    /// The release concerned: the campaign's, or its rollback target (key 4).
    pub release_id: Id<'a>,
    /// The state entered (key 5).
    pub state: DeviceState,
    /// The device's stage, counted from 0 (key 6).
    pub stage: u64,
    /// Deliveries of the release made to the device so far (key 7).
    pub attempt: u64,
    /// When (key 8).
    pub at: UnixTime,
    /// Who acted: `rule`, `device`, `broker`, `operator:<name>` or `custodians` (key 9).
    pub actor: Id<'a>,
    /// Why, in words (key 10).
    pub cause: Name<'a>,
    /// The device's status-report sequence number when the event records a report (actor
    /// `device`), else 0 (key 11). The relay rebuilds its replay protection from it.
    pub report: u64,
}

impl<'a> DeviceEvent<'a> {
    const FIELDS: u64 = 12;

    /// Decodes a device event entry.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::DeviceEvent)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        EntryHeader::expect(r, Kind::DEVICE_EVENT, Self::FIELDS)?;
        r.key(2)?;
        let campaign = Id::decode(r)?;
        r.key(3)?;
        let device_id = Id::decode(r)?;
        r.key(4)?;
        let release_id = Id::decode(r)?;
        r.key(5)?;
        let state = DeviceState::read(r)?;
        r.key(6)?;
        let in_stage = read_stage(r)?;
        r.key(7)?;
        let attempt = r.u64()?;
        r.key(8)?;
        let at = UnixTime(r.u64()?);
        r.key(9)?;
        let actor = Id::decode(r)?;
        r.key(10)?;
        let cause = Name::decode(r)?;
        r.key(11)?;
        let report = r.u64()?;
        r.finish()?;
        Ok(Self {
            campaign,
            device_id,
            release_id,
            state,
            stage: in_stage,
            attempt,
            at,
            actor,
            cause,
            report,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(Kind::DEVICE_EVENT, Self::FIELDS);
        w.u64(2).text(self.campaign.as_str());
        w.u64(3).text(self.device_id.as_str());
        w.u64(4).text(self.release_id.as_str());
        w.u64(5).u64(self.state.code());
        w.u64(6).u64(self.stage);
        w.u64(7).u64(self.attempt);
        w.u64(8).u64(self.at.0);
        w.u64(9).text(self.actor.as_str());
        w.u64(10).text(self.cause.as_str());
        w.u64(11).u64(self.report);
        w.into_bytes()
    }
}

/// A checkpoint of the relay's device-state log, recorded by custodians in the signer's log when a
/// device-state bundle came back across the air gap (kind 11, formats.md §4.13). Not signed by
/// itself: the signer's checkpoint and an inclusion proof authenticate it, and with it the relay
/// key it names, so an auditor who trusts only the root certificate can verify the relay's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayCheckpoint<'a> {
    /// The relay log's origin (key 2).
    pub origin: Name<'a>,
    /// The relay key, DER SubjectPublicKeyInfo of a P-256 key (key 3).
    pub relay_key: crate::crypto::PublicKey,
    /// The relay's signed checkpoint note (key 4).
    pub checkpoint: &'a [u8],
    /// When the custodians recorded it (key 5).
    pub recorded_at: UnixTime,
}

impl<'a> RelayCheckpoint<'a> {
    const FIELDS: u64 = 6;

    /// Decodes a relay checkpoint record.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::RelayCheckpoint)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        EntryHeader::expect(r, Kind::RELAY_CHECKPOINT, Self::FIELDS)?;
        r.key(2)?;
        let origin = Name::decode(r)?;
        r.key(3)?;
        let offset = r.position();
        let relay_key = crate::crypto::PublicKey::from_spki_der(r.bytes()?)
            .ok_or(CborError::OutOfRange { offset })?;
        r.key(4)?;
        let offset = r.position();
        let checkpoint = r.bytes()?;
        if checkpoint.is_empty() || checkpoint.len() > crate::note::MAX_NOTE_LEN {
            return Err(CborError::OutOfRange { offset });
        }
        r.key(5)?;
        let recorded_at = UnixTime(r.u64()?);
        r.finish()?;
        Ok(Self {
            origin,
            relay_key,
            checkpoint,
            recorded_at,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(Kind::RELAY_CHECKPOINT, Self::FIELDS);
        w.u64(2).text(self.origin.as_str());
        w.u64(3).bytes(&self.relay_key.spki_der());
        w.u64(4).bytes(self.checkpoint);
        w.u64(5).u64(self.recorded_at.0);
        w.into_bytes()
    }
}

/// One campaign action, logged by the relay in its own log (kind 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignEvent<'a> {
    /// Campaign (key 2).
    pub campaign: Id<'a>,
    /// What happened (key 3).
    pub action: Action,
    /// The stage concerned, counted from 0 (key 4).
    pub stage: u64,
    /// Devices concerned (key 5).
    pub devices: u64,
    /// When (key 6).
    pub at: UnixTime,
    /// Who acted (key 7), as in [`DeviceEvent::actor`].
    pub actor: Id<'a>,
    /// Why, in words (key 8).
    pub cause: Name<'a>,
}

impl<'a> CampaignEvent<'a> {
    const FIELDS: u64 = 9;

    /// Decodes a campaign event entry.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::CampaignEvent)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        EntryHeader::expect(r, Kind::CAMPAIGN_EVENT, Self::FIELDS)?;
        r.key(2)?;
        let campaign = Id::decode(r)?;
        r.key(3)?;
        let action = Action::read(r)?;
        r.key(4)?;
        let stage = read_stage(r)?;
        r.key(5)?;
        let devices = r.u64()?;
        r.key(6)?;
        let at = UnixTime(r.u64()?);
        r.key(7)?;
        let actor = Id::decode(r)?;
        r.key(8)?;
        let cause = Name::decode(r)?;
        r.finish()?;
        Ok(Self {
            campaign,
            action,
            stage,
            devices,
            at,
            actor,
            cause,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(Kind::CAMPAIGN_EVENT, Self::FIELDS);
        w.u64(2).text(self.campaign.as_str());
        w.u64(3).u64(self.action.code());
        w.u64(4).u64(self.stage);
        w.u64(5).u64(self.devices);
        w.u64(6).u64(self.at.0);
        w.u64(7).text(self.actor.as_str());
        w.u64(8).text(self.cause.as_str());
        w.into_bytes()
    }
}

/// What a device publishes on its status topic after handling a delivery (§7). The device's
/// identity is not in the message: it is the broker-authenticated topic `cairn/<device>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusReport<'a> {
    /// Campaign of the delivery (key 1).
    pub campaign: Id<'a>,
    /// Release of the delivery: the campaign's, or its rollback target (key 2).
    pub release_id: Id<'a>,
    /// What happened (key 3).
    pub outcome: Outcome,
    /// Detail: the boot check's error code (`image-digest`, …) or an install error, `ok` when
    /// installed (key 4).
    pub detail: Id<'a>,
    /// The device's report counter, increasing (key 5).
    pub sequence: u64,
}

impl<'a> StatusReport<'a> {
    const FIELDS: u64 = 6;

    /// Decodes a status report.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::StatusReport)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let start = r.position();
        if r.map_len()? != Self::FIELDS {
            return Err(CborError::WrongLength {
                offset: start,
                expected: 6,
            });
        }
        r.key(0)?;
        let offset = r.position();
        if r.u64()? != crate::entry::FORMAT_VERSION {
            return Err(CborError::Unsupported { offset });
        }
        r.key(1)?;
        let campaign = Id::decode(r)?;
        r.key(2)?;
        let release_id = Id::decode(r)?;
        r.key(3)?;
        let outcome = Outcome::read(r)?;
        r.key(4)?;
        let detail = Id::decode(r)?;
        r.key(5)?;
        let sequence = r.u64()?;
        r.finish()?;
        Ok(Self {
            campaign,
            release_id,
            outcome,
            detail,
            sequence,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = crate::cbor::write::Writer::with_capacity(96);
        w.map(Self::FIELDS).u64(0).u64(crate::entry::FORMAT_VERSION);
        w.u64(1).text(self.campaign.as_str());
        w.u64(2).text(self.release_id.as_str());
        w.u64(3).u64(self.outcome.code());
        w.u64(4).text(self.detail.as_str());
        w.u64(5).u64(self.sequence);
        w.into_bytes()
    }
}

/// The key that orders a campaign's eligible devices into its stages (formats.md §4.9, "Stage
/// membership"): `SHA-256(campaign || 0x00 || device id)`, compared as bytes. Stage `i` holds the
/// devices from position `stages[i-1].devices` up to `stages[i].devices` in that order, so the
/// canary is a pseudo-random sample every party can recompute, and nobody can choose it after the
/// plan is signed.
pub fn stage_order_key<C: crate::crypto::Crypto>(crypto: &C, campaign: &str, device: &str) -> Hash {
    crypto.sha256_of(&[campaign.as_bytes(), &[0], device.as_bytes()])
}

#[cfg(all(test, feature = "alloc"))]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;
    use crate::crypto::Software;

    fn id(s: &str) -> Id<'_> {
        Id::new(s).unwrap()
    }

    #[test]
    fn every_format_round_trips_and_is_strict() {
        let approval = Approval {
            campaign: id("campaign-2026-11-2.4.1"),
            plan_digest: [7; 32],
            stage: 1,
            action: ApprovalAction::Resume,
            approved_at: UnixTime(1_790_000_000),
        };
        let bytes = approval.to_cbor();
        assert_eq!(Approval::decode(&bytes), Ok(approval));
        let event = DeviceEvent {
            campaign: id("c-1"),
            device_id: id("dev-000001"),
            release_id: id("controller-fw-2.4.1"),
            state: DeviceState::Failed,
            stage: 2,
            attempt: 1,
            at: UnixTime(5),
            actor: id("device"),
            cause: Name::new("reported install-failed: flash-write").unwrap(),
            report: 4,
        };
        let bytes = event.to_cbor();
        assert_eq!(DeviceEvent::decode(&bytes), Ok(event));
        // Another kind's decoder refuses it, at the kind.
        assert!(matches!(
            CampaignEvent::decode(&bytes),
            Err(Error::Malformed {
                item: Item::CampaignEvent,
                cause: CborError::Unsupported { .. }
            })
        ));
        let action = CampaignEvent {
            campaign: id("c-1"),
            action: Action::Paused,
            stage: 1,
            devices: 3,
            at: UnixTime(9),
            actor: id("rule"),
            cause: Name::new("failure threshold").unwrap(),
        };
        assert_eq!(CampaignEvent::decode(&action.to_cbor()), Ok(action));
        let report = StatusReport {
            campaign: id("c-1"),
            release_id: id("controller-fw-2.4.1"),
            outcome: Outcome::VerificationFailed,
            detail: id("image-digest"),
            sequence: 3,
        };
        let bytes = report.to_cbor();
        assert_eq!(StatusReport::decode(&bytes), Ok(report));
        // Trailing bytes, a truncation, an unknown outcome and a stage beyond 15 are refused.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(StatusReport::decode(&longer).is_err());
        assert!(StatusReport::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        // key 3, then outcome 3 (verification-failed)
        let at = bad.windows(2).position(|w| w == [0x03, 0x03]).unwrap() + 1;
        bad[at] = 9;
        assert!(StatusReport::decode(&bad).is_err(), "outcome 9");
        let far = DeviceEvent { stage: 16, ..event };
        assert!(matches!(
            DeviceEvent::decode(&far.to_cbor()),
            Err(Error::Malformed {
                cause: CborError::OutOfRange { .. },
                ..
            })
        ));
    }

    #[test]
    fn relay_checkpoint_round_trips_and_checks_its_key_and_note() {
        let key = crate::crypto::PublicKey([9; 64]);
        let note = b"oem.example/cairn/log/relay\n3\nAAAA\n\n\xe2\x80\x94 k x\n";
        let record = RelayCheckpoint {
            origin: Name::new("oem.example/cairn/log/relay").unwrap(),
            relay_key: key,
            checkpoint: note,
            recorded_at: UnixTime(1_795_651_200),
        };
        let bytes = record.to_cbor();
        assert_eq!(RelayCheckpoint::decode(&bytes), Ok(record));
        // (That `Statement::decode` reads it as a relay checkpoint is tested in statement.rs.)
        // A key that is not a P-256 SubjectPublicKeyInfo is refused at the key.
        let mut bad = bytes.clone();
        let at = bad.windows(3).position(|w| w == [0x03, 0x58, 91]).unwrap() + 3;
        bad[at] ^= 1;
        assert!(matches!(
            RelayCheckpoint::decode(&bad),
            Err(Error::Malformed {
                item: Item::RelayCheckpoint,
                cause: CborError::OutOfRange { offset }
            }) if offset == at - 2
        ));
        // An empty checkpoint note is refused.
        let empty = RelayCheckpoint {
            checkpoint: b"",
            ..record
        };
        assert!(RelayCheckpoint::decode(&empty.to_cbor()).is_err());
    }

    #[test]
    fn stage_order_key_is_the_documented_hash() {
        use sha2::Digest as _;
        let expected: [u8; 32] = sha2::Sha256::digest(b"c-1\x00dev-000001").into();
        assert_eq!(stage_order_key(&Software, "c-1", "dev-000001"), expected);
        assert_ne!(
            stage_order_key(&Software, "c-1", "dev-000001"),
            stage_order_key(&Software, "c-2", "dev-000001")
        );
    }

    #[test]
    fn names_and_codes_agree() {
        for s in DeviceState::ALL {
            assert_eq!(DeviceState::from_code(s.code()), Some(*s));
            assert_eq!(DeviceState::from_name(s.name()), Some(*s));
        }
        assert_eq!(DeviceState::from_code(0), None);
        assert_eq!(Outcome::from_name("installed"), Some(Outcome::Installed));
    }
}
