//! Eligibility and rollout evidence (formats.md §4.8, §4.9): the rejection of one device, with
//! every check it failed, and the signed rollout plan that covers a whole cohort.
//!
//! An eligible device's decision is its manifest (§4.4); a rejected device's is a [`Rejection`].
//! Both are plain entries authenticated by the checkpoint over them. The plan is signed by the
//! release key (COSE_Sign1, entry `{0: 1, 1: 7, 2: bstr}`) and binds the exact decisions it was
//! made with through a digest of their leaf hashes, so one HSM signature covers the cohort.

use crate::cbor::Reader;
use crate::entry::{EntryHeader, Kind};
use crate::error::{CborError, Context, Error, Item};
use crate::types::{Hash, Id, UnixTime};

pub mod jobs;

use jobs::JobsControls;

/// Most reasons one rejection lists (one per check).
pub const MAX_REASONS: u64 = 32;
/// Most stages one plan has.
pub const MAX_STAGES: u64 = 16;

/// Why a device was not eligible: one code per failed check (formats.md §4.8, reason registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The identity certificate does not chain to a trusted manufacturer CA (1).
    CertificateUntrusted,
    /// The identity certificate is not valid at decision time (2).
    CertificateExpired,
    /// The identity certificate is revoked (3).
    CertificateRevoked,
    /// The identity certificate names another device (4).
    CertificateNameMismatch,
    /// The lifecycle state is not `active` (5).
    LifecycleNotActive,
    /// Another product (6).
    WrongProduct,
    /// Another device family (7).
    WrongFamily,
    /// A hardware revision the release does not support (8).
    WrongHardware,
    /// The current firmware version is outside the scope's allowed range (9).
    VersionOutOfRange,
    /// The current firmware version is not below the release (10).
    VersionNotBelowRelease,
    /// Not in the scope's cohorts (11).
    NotInCohort,
    /// On the scope's exclusion list (12).
    Excluded,
    /// Quarantined (13).
    Quarantined,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 13] = [
        Reason::CertificateUntrusted,
        Reason::CertificateExpired,
        Reason::CertificateRevoked,
        Reason::CertificateNameMismatch,
        Reason::LifecycleNotActive,
        Reason::WrongProduct,
        Reason::WrongFamily,
        Reason::WrongHardware,
        Reason::VersionOutOfRange,
        Reason::VersionNotBelowRelease,
        Reason::NotInCohort,
        Reason::Excluded,
        Reason::Quarantined,
    ];

    /// The encoded value.
    pub fn code(self) -> u64 {
        match self {
            Reason::CertificateUntrusted => 1,
            Reason::CertificateExpired => 2,
            Reason::CertificateRevoked => 3,
            Reason::CertificateNameMismatch => 4,
            Reason::LifecycleNotActive => 5,
            Reason::WrongProduct => 6,
            Reason::WrongFamily => 7,
            Reason::WrongHardware => 8,
            Reason::VersionOutOfRange => 9,
            Reason::VersionNotBelowRelease => 10,
            Reason::NotInCohort => 11,
            Reason::Excluded => 12,
            Reason::Quarantined => 13,
        }
    }

    /// The reason of a code.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A short name for reports (`certificate-revoked`, …).
    pub fn name(self) -> &'static str {
        match self {
            Reason::CertificateUntrusted => "certificate-untrusted",
            Reason::CertificateExpired => "certificate-expired",
            Reason::CertificateRevoked => "certificate-revoked",
            Reason::CertificateNameMismatch => "certificate-name-mismatch",
            Reason::LifecycleNotActive => "lifecycle-not-active",
            Reason::WrongProduct => "wrong-product",
            Reason::WrongFamily => "wrong-family",
            Reason::WrongHardware => "wrong-hardware",
            Reason::VersionOutOfRange => "version-out-of-range",
            Reason::VersionNotBelowRelease => "version-not-below-release",
            Reason::NotInCohort => "not-in-cohort",
            Reason::Excluded => "excluded",
            Reason::Quarantined => "quarantined",
        }
    }
}

/// A set of reasons, as a bit mask over the codes (bit `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Reasons(pub u64);

impl Reasons {
    /// Adds a reason.
    pub fn insert(&mut self, r: Reason) {
        self.0 |= 1 << r.code();
    }

    /// Whether `r` is in the set.
    pub fn contains(self, r: Reason) -> bool {
        self.0 & (1 << r.code()) != 0
    }

    /// Whether the set is empty (the device is eligible).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many.
    pub fn len(self) -> u64 {
        u64::from(self.0.count_ones())
    }

    /// The reasons, in code order.
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

/// A device that is not eligible for a campaign, and every check it failed (kind 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection<'a> {
    /// Device id (key 2).
    pub device_id: Id<'a>,
    /// Release id (key 3).
    pub release_id: Id<'a>,
    /// Campaign (key 4).
    pub campaign: Id<'a>,
    /// Failed checks, at least one, codes ascending (key 5).
    pub reasons: Reasons,
    /// When decided (key 6).
    pub decided_at: UnixTime,
}

impl<'a> Rejection<'a> {
    const FIELDS: u64 = 7;

    /// Decodes a rejection entry.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::Rejection)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        EntryHeader::expect(r, Kind::REJECTION, Self::FIELDS)?;
        r.key(2)?;
        let device_id = Id::decode(r)?;
        r.key(3)?;
        let release_id = Id::decode(r)?;
        r.key(4)?;
        let campaign = Id::decode(r)?;
        r.key(5)?;
        let offset = r.position();
        let n = r.array_len()?;
        if n == 0 || n > MAX_REASONS {
            return Err(CborError::OutOfRange { offset });
        }
        let mut reasons = Reasons::default();
        let mut last = 0;
        for _ in 0..n {
            let offset = r.position();
            let code = r.u64()?;
            // Ascending and known: one encoding per set.
            let reason = Reason::from_code(code)
                .filter(|_| code > last)
                .ok_or(CborError::OutOfRange { offset })?;
            reasons.insert(reason);
            last = code;
        }
        r.key(6)?;
        let decided_at = UnixTime(r.u64()?);
        r.finish()?;
        Ok(Self {
            device_id,
            release_id,
            campaign,
            reasons,
            decided_at,
        })
    }

    /// The deterministic CBOR encoding (reasons must not be empty).
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let mut w = EntryHeader::writer(Kind::REJECTION, Self::FIELDS);
        w.u64(2).text(self.device_id.as_str());
        w.u64(3).text(self.release_id.as_str());
        w.u64(4).text(self.campaign.as_str());
        w.u64(5).array(self.reasons.len());
        for reason in self.reasons.iter() {
            w.u64(reason.code());
        }
        w.u64(6).u64(self.decided_at.0);
        w.into_bytes()
    }
}

/// How a stage is opened once the previous one met its success threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// By the relay, automatically (0).
    Automatic,
    /// By an approval signed offline by custodians and carried in a bundle (1).
    Approval,
}

/// One stage of a rollout (formats.md §4.9): `[name, devices, soak, success‰, failure‰, gate]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage<'a> {
    /// Stage name, e.g. `canary`.
    pub name: Id<'a>,
    /// Devices in the stage (cumulative: the stage ends when this many have been offered).
    pub devices: u64,
    /// Soak time before the stage may advance, seconds.
    pub soak_secs: u64,
    /// Installed share needed to advance, per mille (1 to 1000).
    pub success_permille: u16,
    /// Failed share that pauses the rollout, per mille (1 to 1000).
    pub failure_permille: u16,
    /// How the next stage opens.
    pub gate: Gate,
}

impl<'a> Stage<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        r.array_of(6)?;
        let name = Id::decode(r)?;
        let devices = r.u64()?;
        let soak_secs = r.u64()?;
        let permille = |r: &mut Reader<'a>| -> Result<u16, CborError> {
            let offset = r.position();
            u16::try_from(r.u64()?)
                .ok()
                .filter(|p| (1..=1000).contains(p))
                .ok_or(CborError::OutOfRange { offset })
        };
        let success_permille = permille(r)?;
        let failure_permille = permille(r)?;
        let offset = r.position();
        let gate = match r.u64()? {
            0 => Gate::Automatic,
            1 => Gate::Approval,
            _ => return Err(CborError::OutOfRange { offset }),
        };
        Ok(Self {
            name,
            devices,
            soak_secs,
            success_permille,
            failure_permille,
            gate,
        })
    }

    #[cfg(feature = "alloc")]
    fn encode(&self, w: &mut crate::cbor::write::Writer) {
        w.array(6).text(self.name.as_str());
        w.u64(self.devices).u64(self.soak_secs);
        w.u64(u64::from(self.success_permille));
        w.u64(u64::from(self.failure_permille));
        w.u64(match self.gate {
            Gate::Automatic => 0,
            Gate::Approval => 1,
        });
    }
}

/// The stages of a plan: kept encoded after decoding (no allocator), or given as a slice.
#[derive(Debug, Clone, Copy)]
pub enum Stages<'a> {
    /// Validated encodings, back to back, and their count.
    Encoded {
        /// The element encodings.
        elements: &'a [u8],
        /// How many.
        count: u64,
    },
    /// Stages supplied by the caller.
    Slice(&'a [Stage<'a>]),
}

impl<'a> Stages<'a> {
    /// How many stages.
    pub fn len(&self) -> u64 {
        match self {
            Stages::Encoded { count, .. } => *count,
            Stages::Slice(s) => s.len() as u64,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stages in order.
    pub fn iter(&self) -> impl Iterator<Item = Stage<'a>> + 'a {
        let (encoded, slice) = match *self {
            Stages::Encoded { elements, count } => (Some((Reader::new(elements), count)), None),
            Stages::Slice(s) => (None, Some(s.iter())),
        };
        let mut encoded = encoded;
        let mut slice = slice;
        core::iter::from_fn(move || {
            if let Some(it) = slice.as_mut() {
                return it.next().copied();
            }
            let (reader, left) = encoded.as_mut()?;
            *left = left.checked_sub(1)?;
            // Validated at decode time.
            Stage::read(reader).ok()
        })
    }
}

impl PartialEq for Stages<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for Stages<'_> {}

/// A signed rollout plan (kind 7; the COSE_Sign1 payload), decided offline: which release, for
/// which cohort, in which stages, with which safety net (design.md, "Rollout policy").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPlan<'a> {
    /// Campaign id (key 2).
    pub campaign: Id<'a>,
    /// Release id (key 3).
    pub release_id: Id<'a>,
    /// SHA-256 of the release's COSE_Sign1 (key 4).
    pub release_digest: Hash,
    /// Pre-signed rollback target: an earlier release id (key 5).
    pub rollback_release_id: Id<'a>,
    /// SHA-256 of the rollback release's COSE_Sign1 (key 6).
    pub rollback_digest: Hash,
    /// Stages, 1 to 16, device counts strictly increasing, the last equal to the eligible count
    /// (key 7).
    pub stages: Stages<'a>,
    /// Install attempts per device before it counts as failed, 1 to 10 (key 8).
    pub max_attempts: u8,
    /// First retry delay, seconds; doubled per attempt (key 9).
    pub backoff_secs: u64,
    /// Failures of one device that quarantine it, 1 to 10 (key 10).
    pub quarantine_after_failures: u8,
    /// Whether a device reporting a verification failure (tampering) is quarantined at once (key 11).
    pub quarantine_on_verification_failure: bool,
    /// Eligible devices: manifests in the cohort (key 12).
    pub eligible: u64,
    /// Rejected devices (key 13).
    pub rejected: u64,
    /// SHA-256 over the leaf hashes of every decision entry, in log order (key 14).
    pub decisions_digest: Hash,
    /// When the plan was made (key 15).
    pub created_at: UnixTime,
    /// The campaign's sequence in its device class (product and family of the release), strictly
    /// increasing from plan to plan; every manifest of the plan carries it (key 16, formats.md
    /// §5.1).
    pub campaign_sequence: u64,
    /// The AWS IoT Jobs rollout controls (key 17, optional: a plan without them has 17 pairs).
    pub jobs: Option<JobsControls>,
}

impl<'a> RolloutPlan<'a> {
    const FIELDS: u64 = 17;
    /// Fields of a plan with its Jobs controls (key 17).
    const FIELDS_WITH_JOBS: u64 = 18;

    /// Decodes a plan (a COSE_Sign1 payload).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::Plan)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let small = |r: &mut Reader<'a>| -> Result<u8, CborError> {
            let offset = r.position();
            u8::try_from(r.u64()?)
                .ok()
                .filter(|n| (1..=10).contains(n))
                .ok_or(CborError::OutOfRange { offset })
        };
        let fields =
            EntryHeader::expect_one_of(r, Kind::PLAN, Self::FIELDS, Self::FIELDS_WITH_JOBS)?;
        r.key(2)?;
        let campaign = Id::decode(r)?;
        r.key(3)?;
        let release_id = Id::decode(r)?;
        r.key(4)?;
        let release_digest = r.bytes_fixed::<32>()?;
        r.key(5)?;
        let rollback_release_id = Id::decode(r)?;
        r.key(6)?;
        let rollback_digest = r.bytes_fixed::<32>()?;
        r.key(7)?;
        let offset = r.position();
        let count = r.array_len()?;
        if count == 0 || count > MAX_STAGES {
            return Err(CborError::OutOfRange { offset });
        }
        let start = r.position();
        let mut last_devices = 0;
        for _ in 0..count {
            let offset = r.position();
            let stage = Stage::read(r)?;
            if stage.devices <= last_devices {
                return Err(CborError::OutOfRange { offset });
            }
            last_devices = stage.devices;
        }
        let stages = Stages::Encoded {
            elements: r.slice_from(start),
            count,
        };
        r.key(8)?;
        let max_attempts = small(r)?;
        r.key(9)?;
        let backoff_secs = r.u64()?;
        r.key(10)?;
        let quarantine_after_failures = small(r)?;
        r.key(11)?;
        let offset = r.position();
        let quarantine_on_verification_failure = match r.u64()? {
            0 => false,
            1 => true,
            _ => return Err(CborError::OutOfRange { offset }),
        };
        r.key(12)?;
        let offset = r.position();
        let eligible = r.u64()?;
        if eligible != last_devices {
            return Err(CborError::OutOfRange { offset });
        }
        r.key(13)?;
        let rejected = r.u64()?;
        r.key(14)?;
        let decisions_digest = r.bytes_fixed::<32>()?;
        r.key(15)?;
        let created_at = UnixTime(r.u64()?);
        r.key(16)?;
        let campaign_sequence = r.u64()?;
        let jobs = if fields == Self::FIELDS_WITH_JOBS {
            r.key(17)?;
            Some(JobsControls::read(r)?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            campaign,
            release_id,
            release_digest,
            rollback_release_id,
            rollback_digest,
            stages,
            max_attempts,
            backoff_secs,
            quarantine_after_failures,
            quarantine_on_verification_failure,
            eligible,
            rejected,
            decisions_digest,
            created_at,
            campaign_sequence,
            jobs,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        let jobs = self.jobs.filter(|j| !j.is_empty());
        let fields = if jobs.is_some() {
            Self::FIELDS_WITH_JOBS
        } else {
            Self::FIELDS
        };
        let mut w = EntryHeader::writer(Kind::PLAN, fields);
        w.u64(2).text(self.campaign.as_str());
        w.u64(3).text(self.release_id.as_str());
        w.u64(4).bytes(&self.release_digest);
        w.u64(5).text(self.rollback_release_id.as_str());
        w.u64(6).bytes(&self.rollback_digest);
        w.u64(7).array(self.stages.len());
        for stage in self.stages.iter() {
            stage.encode(&mut w);
        }
        w.u64(8).u64(u64::from(self.max_attempts));
        w.u64(9).u64(self.backoff_secs);
        w.u64(10).u64(u64::from(self.quarantine_after_failures));
        w.u64(11)
            .u64(u64::from(self.quarantine_on_verification_failure));
        w.u64(12).u64(self.eligible);
        w.u64(13).u64(self.rejected);
        w.u64(14).bytes(&self.decisions_digest);
        w.u64(15).u64(self.created_at.0);
        w.u64(16).u64(self.campaign_sequence);
        if let Some(jobs) = jobs {
            w.u64(17);
            jobs.encode(&mut w);
        }
        w.into_bytes()
    }
}
