//! The one error type of this crate, and the detail types its variants carry.
//!
//! Variants are grouped by who is at fault: the bytes were malformed (`Malformed`), a proof or
//! signature did not verify (the delivery or log is not authentic), or the delivery is authentic but
//! not meant for this device in its current state (wrong device, stale checkpoint, rollback). A board
//! can act on each differently: report malformed input, quarantine an unauthentic delivery, or simply
//! ignore one meant for somebody else.

use core::fmt;

pub use crate::cbor::CborError;
use crate::types::{LeafIndex, SecurityEpoch, TreeSize, Version};

/// Which structure a decoding error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// The device delivery envelope (formats.md §5).
    Delivery,
    /// The checkpoint signed note (formats.md §2).
    Checkpoint,
    /// The COSE_Sign1 envelope of a release (formats.md §4.2).
    CoseSign1,
    /// The release statement inside the COSE_Sign1 payload (formats.md §4.3).
    Release,
    /// A per-device manifest log entry (formats.md §4.4).
    Manifest,
    /// A log entry's common header (formats.md §4.1).
    Entry,
    /// An inclusion or consistency proof.
    Proof,
    /// A key ceremony record (formats.md §4.5).
    Ceremony,
    /// A signing session record (formats.md §4.6).
    Session,
    /// A key rotation or revocation statement (formats.md §4.7).
    KeyStatement,
    /// An eligibility rejection (formats.md §4.8).
    Rejection,
    /// A rollout plan (formats.md §4.9).
    Plan,
    /// A gate approval (formats.md §4.10).
    Approval,
    /// A device state event (formats.md §4.11).
    DeviceEvent,
    /// A campaign event (formats.md §4.12).
    CampaignEvent,
    /// A device status report (formats.md §7).
    StatusReport,
    /// A relay checkpoint recorded in the signer's log (formats.md §4.13).
    RelayCheckpoint,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Item::Delivery => "delivery envelope",
            Item::Checkpoint => "checkpoint",
            Item::CoseSign1 => "COSE_Sign1",
            Item::Release => "release statement",
            Item::Manifest => "device manifest",
            Item::Entry => "log entry",
            Item::Proof => "proof",
            Item::Ceremony => "ceremony record",
            Item::Session => "session record",
            Item::KeyStatement => "key statement",
            Item::Rejection => "rejection",
            Item::Plan => "rollout plan",
            Item::Approval => "gate approval",
            Item::DeviceEvent => "device event",
            Item::CampaignEvent => "campaign event",
            Item::StatusReport => "status report",
            Item::RelayCheckpoint => "relay checkpoint record",
        })
    }
}

/// Why a signed note (checkpoint) could not be parsed (C2SP signed-note, tlog-checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Not UTF-8, or contains a control character other than newline.
    #[error("note is not printable UTF-8 (byte {offset})")]
    NotText {
        /// Offset of the offending byte.
        offset: usize,
    },
    /// No blank line separating the text from the signatures.
    #[error("no blank line before the signatures")]
    NoSignatureBlock,
    /// The text has fewer than the three checkpoint lines.
    #[error("checkpoint body has fewer than three lines")]
    MissingLine,
    /// The origin line is empty.
    #[error("empty origin line")]
    EmptyOrigin,
    /// The tree size is not canonical decimal or does not fit in 64 bits.
    #[error("tree size is not a canonical decimal number")]
    BadSize,
    /// The root hash is not canonical base64 of 32 bytes.
    #[error("root hash is not base64 of 32 bytes")]
    BadRootHash,
    /// An empty extension line (a blank line inside the text).
    #[error("empty line inside the checkpoint text")]
    EmptyLine,
    /// A signature line does not have the form `— <name> <base64>`.
    #[error("malformed signature line {line}")]
    BadSignatureLine {
        /// 1-based signature line number.
        line: usize,
    },
    /// More signature lines than a verifier processes (C2SP signed-note allows rejecting > 100).
    #[error("too many signature lines")]
    TooManySignatures,
    /// The note is larger than a verifier accepts.
    #[error("note too large")]
    TooLarge,
    /// A `cairn-campaign-floor` extension line is not `cairn-campaign-floor <product>/<family>
    /// <sequence>` (formats.md §2.2).
    #[error("malformed cairn-campaign-floor line")]
    BadFloorLine,
}

/// Why a witness policy cannot be pinned (docs/witness.md "Policy").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy with no witness: use `WitnessPolicy::unwitnessed`, which says what it gives up.
    #[error("a witness policy needs at least one witness")]
    NoWitnesses,
    /// The threshold is zero or above the number of witnesses.
    #[error("threshold {threshold} is not within 1..={witnesses}")]
    Threshold {
        /// The threshold asked for.
        threshold: usize,
        /// The number of pinned witnesses.
        witnesses: usize,
    },
    /// Two pinned witnesses share a name or a public key, so one witness could count twice.
    #[error("two pinned witnesses share a name or a public key")]
    DuplicateWitness,
}

/// Why an inclusion or consistency proof was rejected (RFC 9162 §2.1.3.2, §2.1.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexBeyondSize {
        /// The claimed leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof between sizes where the first is larger than the second, or is zero.
    #[error("no consistency proof from size {from} to size {to}")]
    BadSizes {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
    },
    /// The proof has a different number of hashes than the sizes require.
    #[error("proof has {got} hashes, sizes require {expected}")]
    WrongLength {
        /// Hashes required by the index and size.
        expected: u64,
        /// Hashes present.
        got: u64,
    },
    /// The proof does not lead to the expected root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// Proof for equal sizes but different roots, or a non-empty proof where none is needed.
    #[error("roots of equal-size trees differ")]
    EqualSizeRootsDiffer,
}

/// Everything that can go wrong in this crate.
///
/// The boot-check variants are listed in the order the checks run (design.md "Device boot check"):
/// the first failing check is the one reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes of `item` are not a valid encoding.
    #[error("malformed {item}: {cause}")]
    Malformed {
        /// Which structure.
        item: Item,
        /// What was wrong, and where.
        cause: CborError,
    },
    /// The checkpoint note could not be parsed.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(NoteError),
    /// The checkpoint is for a different log (origin line differs from the pinned one).
    #[error("checkpoint is for another log")]
    CheckpointOrigin,
    /// No signature line on the checkpoint is from the pinned log key (name and key id).
    #[error("checkpoint carries no signature from the pinned log key")]
    CheckpointKeyMissing,
    /// The pinned log key's signature on the checkpoint does not verify.
    #[error("checkpoint signature does not verify")]
    CheckpointSignature,
    /// A cosignature line from a pinned witness (its name and key id) is malformed or does not
    /// verify over this checkpoint (C2SP tlog-cosignature): a forged, altered or replayed line.
    #[error("cosignature of pinned witness {witness} does not verify over this checkpoint")]
    BadCosignature {
        /// Index of the witness in the device's witness policy.
        witness: usize,
    },
    /// Fewer pinned witnesses than the policy's threshold cosigned the checkpoint.
    #[error(
        "checkpoint cosigned by {have} of the pinned witnesses, the policy needs {need} \
         ({unknown} signature lines from keys not pinned were ignored)"
    )]
    NoQuorum {
        /// Distinct pinned witnesses whose cosignature verified.
        have: usize,
        /// The policy's threshold.
        need: usize,
        /// Signature lines from neither the log key nor a pinned witness (ignored, as C2SP
        /// signed-note requires; counted so the error can say a witness key may have rotated).
        unknown: usize,
    },
    /// The checkpoint is older than the newest one this device has already accepted.
    #[error("checkpoint size {received} is older than stored size {stored}")]
    CheckpointStale {
        /// The size the device stored.
        stored: TreeSize,
        /// The size of the delivered checkpoint.
        received: TreeSize,
    },
    /// The manifest is not included in the checkpoint's tree.
    #[error("manifest at index {index} is not included in the checkpoint: {cause}")]
    NotIncluded {
        /// The claimed leaf index.
        index: LeafIndex,
        /// Why the proof failed.
        cause: ProofError,
    },
    /// The release COSE_Sign1 uses an algorithm or header this verifier does not accept.
    #[error("release signature uses an unsupported algorithm or header")]
    ReleaseAlgorithm,
    /// The release is signed by a key other than the pinned release key.
    #[error("release is signed by an unknown key")]
    ReleaseKeyUnknown,
    /// The release signature does not verify with the pinned release key.
    #[error("release signature does not verify")]
    ReleaseSignature,
    /// The manifest names a different release (id or digest of the signed release).
    #[error("manifest is not bound to this release")]
    ManifestNotForRelease,
    /// The manifest is for another device.
    #[error("manifest is for another device")]
    WrongDevice,
    /// The release is for another product or device family.
    #[error("release is for another device class")]
    WrongDeviceClass,
    /// This device's hardware revision is not covered by the release and manifest.
    #[error("hardware revision not covered by the release")]
    WrongHardwareRevision,
    /// The device's current firmware version is outside the manifest's allowed range.
    #[error("current version {current} outside allowed range {min}..={max}")]
    VersionOutOfRange {
        /// The running version.
        current: Version,
        /// Lowest allowed current version.
        min: Version,
        /// Highest allowed current version.
        max: Version,
    },
    /// The release's security epoch is below the stored one (anti-rollback).
    #[error("security epoch {release} is below stored epoch {stored}")]
    SecurityEpochRollback {
        /// The device's stored epoch.
        stored: SecurityEpoch,
        /// The release's epoch.
        release: SecurityEpoch,
    },
    /// The manifest's decision is stale (formats.md §5.1): an update or a rollback of a campaign
    /// below the device's campaign floor (a later plan of its class closed it, the device
    /// installed a later campaign, or it already applied that campaign's rollback).
    #[error("stale decision: campaign sequence {campaign_sequence}, device floor {floor}")]
    StaleDecision {
        /// The device's campaign floor, raised by the checkpoint's `cairn-campaign-floor` line.
        floor: u64,
        /// The manifest's campaign sequence.
        campaign_sequence: u64,
    },
    /// The image in flash has a different size than the release states.
    #[error("image is {actual} bytes, release states {expected}")]
    ImageSize {
        /// The size in the release statement.
        expected: u64,
        /// The size of the image slot contents.
        actual: u64,
    },
    /// The image digest differs from the release statement.
    #[error("image digest does not match the release")]
    ImageDigest,
    /// Reading the image from flash failed.
    #[error("reading the image from flash failed")]
    FlashRead,
    /// A proof did not verify (host-side use of the proof verifiers).
    #[error("proof rejected: {0}")]
    Proof(ProofError),
    /// The device holds no verified install record, so there is nothing to fast-check.
    #[error("no verified install recorded")]
    NothingInstalled,
    /// The release is an MCUboot image, and the image in flash is not a well-formed one.
    #[error("malformed MCUboot image: {0}")]
    MalformedImage(crate::mcuboot::McubootError),
    /// The MCUboot header's version is not the release's version.
    #[error("MCUboot image version {image} is not the release version {release}")]
    McubootVersion {
        /// The header's version.
        image: crate::mcuboot::ImageVersion,
        /// The release statement's version.
        release: Version,
    },
    /// The MCUboot security counter TLV is missing or is not the release's security epoch.
    #[error("MCUboot security counter {image:?} is not the release's security epoch {release}")]
    McubootSecurityCounter {
        /// The protected SEC_CNT TLV's value, if any.
        image: Option<u32>,
        /// The release statement's epoch.
        release: SecurityEpoch,
    },
    /// The MCUboot image names another signing key (KEYHASH or PUBKEY) than the pinned release key.
    #[error("MCUboot image names another key than the pinned release key")]
    McubootKey,
    /// The MCUboot SHA256 TLV is not the SHA-256 of the image read from flash.
    #[error("MCUboot SHA256 TLV does not match the image read from flash")]
    McubootHash,
    /// The MCUboot SHA256 TLV is not the one the release statement carries.
    #[error("MCUboot SHA256 TLV is not the one the release states")]
    McubootHashNotStated,
    /// The MCUboot ECDSA signature TLV does not verify with the pinned release key.
    #[error("MCUboot signature does not verify with the pinned release key")]
    McubootSignature,
}

impl Error {
    /// A short stable identifier for each variant, for logs, telemetry and the QEMU harness.
    pub const fn code(&self) -> &'static str {
        match self {
            Error::Malformed { .. } => "malformed",
            Error::MalformedCheckpoint(_) => "malformed-checkpoint",
            Error::CheckpointOrigin => "checkpoint-origin",
            Error::CheckpointKeyMissing => "checkpoint-key-missing",
            Error::CheckpointSignature => "checkpoint-signature",
            Error::BadCosignature { .. } => "bad-cosignature",
            Error::NoQuorum { .. } => "no-quorum",
            Error::CheckpointStale { .. } => "checkpoint-stale",
            Error::NotIncluded { .. } => "not-included",
            Error::ReleaseAlgorithm => "release-algorithm",
            Error::ReleaseKeyUnknown => "release-key-unknown",
            Error::ReleaseSignature => "release-signature",
            Error::ManifestNotForRelease => "manifest-not-for-release",
            Error::WrongDevice => "wrong-device",
            Error::WrongDeviceClass => "wrong-device-class",
            Error::WrongHardwareRevision => "wrong-hardware-revision",
            Error::VersionOutOfRange { .. } => "version-out-of-range",
            Error::SecurityEpochRollback { .. } => "security-epoch-rollback",
            Error::StaleDecision { .. } => "stale-decision",
            Error::ImageSize { .. } => "image-size",
            Error::ImageDigest => "image-digest",
            Error::FlashRead => "flash-read",
            Error::Proof(_) => "proof",
            Error::NothingInstalled => "nothing-installed",
            Error::MalformedImage(_) => "mcuboot-malformed",
            Error::McubootVersion { .. } => "mcuboot-version",
            Error::McubootSecurityCounter { .. } => "mcuboot-security-counter",
            Error::McubootKey => "mcuboot-key",
            Error::McubootHash => "mcuboot-hash",
            Error::McubootHashNotStated => "mcuboot-hash-not-stated",
            Error::McubootSignature => "mcuboot-signature",
        }
    }
}

pub(crate) trait Context<T> {
    fn within(self, item: Item) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, CborError> {
    fn within(self, item: Item) -> Result<T, Error> {
        self.map_err(|cause| Error::Malformed { item, cause })
    }
}
