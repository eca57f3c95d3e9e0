//! The device boot check (design.md "Device boot check"), in order:
//!
//! 1. the checkpoint is signed by the pinned log key (and names the pinned log), and cosigned by
//!    the quorum of pinned witnesses the device's witness policy needs (docs/witness.md);
//! 2. the checkpoint is not older than the newest one the device stored;
//! 3. the manifest is included in that checkpoint's tree;
//! 4. the release is signed by the pinned release key;
//! 5. the manifest is bound to that release (release id and digest of the signed release);
//! 6. device identity, class and hardware revision match;
//! 7. the current firmware version is in the manifest's allowed range;
//! 8. the release's security epoch is not below the stored one (anti-rollback);
//!
//!    8'. the decision is live (formats.md §5.1): the device's campaign floor, raised to the
//!    checkpoint's `cairn-campaign-floor` line for its class, is at most the manifest's campaign
//!    sequence (for an update and a rollback target alike);
//!
//! 9. the image read from flash has the release's size and SHA-256 digest; for a release in
//!    MCUboot format, also its header version, security counter, SHA256 TLV, key and signature
//!    ([`crate::mcuboot::check`]).
//!
//! The first failing check is returned as its own [`Error`] variant. Nothing here allocates or
//! panics; the board supplies flash access ([`ImageReader`]), persistent state ([`DeviceState`])
//! and, optionally, hardware crypto ([`Crypto`]).

use crate::cose::{CoseSign1, ReleaseKey};
use crate::crypto::{Crypto, Sha256};
use crate::delivery::Delivery;
use crate::error::Error;
use crate::merkle::{ct_eq, leaf_hash, verify_inclusion_with};
use crate::note::{Checkpoint, LogKey};
use crate::statement::{Manifest, Purpose, ReleaseStatement};
use crate::types::{Hash, Id, SecurityEpoch, TreeSize, Version};
use crate::witness::{WitnessPolicy, verify_quorum};

/// What the device trusts: keys pinned at manufacturing (in protected flash or OTP).
///
/// `W` is the number of pinned witnesses; the default, 0, goes with
/// [`WitnessPolicy::unwitnessed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustAnchors<'a, const W: usize = 0> {
    /// The log's checkpoint key and origin.
    pub log: LogKey<'a>,
    /// The release-signing key.
    pub release: ReleaseKey,
    /// The witnesses that must have cosigned a checkpoint, and how many of them.
    pub witnesses: WitnessPolicy<'a, W>,
}

/// Who the device is and what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIdentity<'a> {
    /// The device id (the subject of its identity certificate).
    pub device_id: &'a str,
    /// Product name.
    pub product: &'a str,
    /// Device family.
    pub family: &'a str,
    /// Hardware revision.
    pub hardware_revision: &'a str,
    /// Version of the firmware running now.
    pub current_version: Version,
}

/// The record of a verified install, kept in protected state so later boots can re-check only the
/// image digest ([`verify_installed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// SHA-256 of the installed image.
    pub image_digest: Hash,
    /// Its length in bytes.
    pub image_size: u64,
    /// Its version.
    pub version: Version,
    /// Its security epoch.
    pub security_epoch: SecurityEpoch,
    /// SHA-256 of the delivery that authorized it (links the device's state to the evidence).
    pub delivery_digest: Hash,
    /// The campaign sequence of the manifest that authorized it: the only campaign whose
    /// rollback the device accepts (formats.md §5.1).
    pub campaign_sequence: u64,
}

/// What a device stores across boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredState {
    /// Size of the newest checkpoint accepted.
    pub checkpoint_size: TreeSize,
    /// Highest security epoch accepted.
    pub security_epoch: SecurityEpoch,
    /// The lowest campaign sequence the device still accepts (formats.md §5.1).
    pub campaign_floor: u64,
    /// The last verified install, if any.
    pub installed: Option<Installed>,
}

impl StoredState {
    /// The state after accepting `verdict`: counters only move forward.
    #[must_use]
    pub fn after(&self, verdict: &Verdict<'_>) -> Self {
        Self {
            checkpoint_size: self.checkpoint_size.max(verdict.checkpoint_size),
            security_epoch: self.security_epoch.max(verdict.installed.security_epoch),
            campaign_floor: self.campaign_floor.max(verdict.campaign_floor),
            installed: Some(verdict.installed),
        }
    }
}

/// Persistent device state, backed by the board (flash, OTP counters, a secure element).
pub trait DeviceState {
    /// The board's error type.
    type Error;
    /// Reads the state.
    fn load(&mut self) -> Result<StoredState, Self::Error>;
    /// Writes the state; must be atomic (the old or the new state survives a power cut).
    fn store(&mut self, state: &StoredState) -> Result<(), Self::Error>;
}

pub use crate::image::{CHUNK, ImageReader, MemoryImage};

/// An accepted delivery: what to record once the image is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// The release accepted.
    pub release_id: Id<'a>,
    /// The campaign it came with.
    pub campaign: Id<'a>,
    /// Update or rollback.
    pub purpose: Purpose,
    /// Size of the checkpoint that proved the manifest.
    pub checkpoint_size: TreeSize,
    /// The campaign floor to keep once installed: the manifest's campaign sequence for an
    /// update, one more for a rollback (neither that campaign's update nor its rollback can be
    /// replayed afterwards), never below the floor the check applied.
    pub campaign_floor: u64,
    /// The install record to keep.
    pub installed: Installed,
}

/// Runs the whole boot check over one delivery (module documentation lists the steps).
pub fn verify_delivery<'a, C: Crypto, I: ImageReader, const W: usize>(
    delivery: &'a [u8],
    anchors: &TrustAnchors<'_, W>,
    device: &DeviceIdentity<'_>,
    state: &StoredState,
    image: &mut I,
    crypto: &C,
) -> Result<Verdict<'a>, Error> {
    let d = Delivery::decode(delivery)?;

    // 1. checkpoint signature
    let checkpoint = Checkpoint::parse(d.checkpoint).map_err(Error::MalformedCheckpoint)?;
    checkpoint.verify(&anchors.log, crypto)?;
    verify_quorum(&checkpoint, &anchors.log, &anchors.witnesses, crypto)?;

    // 2. freshness
    if checkpoint.size < state.checkpoint_size {
        return Err(Error::CheckpointStale {
            stored: state.checkpoint_size,
            received: checkpoint.size,
        });
    }

    // 3. inclusion of the manifest
    let leaf = leaf_hash(crypto, d.manifest);
    verify_inclusion_with(
        crypto,
        &leaf,
        d.leaf_index.0,
        checkpoint.size.0,
        d.proof.iter(),
        &checkpoint.root,
    )
    .map_err(|cause| Error::NotIncluded {
        index: d.leaf_index,
        cause,
    })?;
    let manifest = Manifest::decode(d.manifest)?;

    // 4. release signature
    let cose = CoseSign1::decode(d.release)?;
    cose.verify(&anchors.release, crypto)?;
    let release = ReleaseStatement::decode(cose.payload)?;

    // 5. manifest bound to this release
    let release_digest = crypto.sha256_of(&[d.release]);
    if !ct_eq(&manifest.release_digest, &release_digest)
        || manifest.release_id != release.release_id
    {
        return Err(Error::ManifestNotForRelease);
    }

    // 6. identity, class, hardware revision
    if manifest.device_id.as_str() != device.device_id {
        return Err(Error::WrongDevice);
    }
    if release.product.as_str() != device.product || release.family.as_str() != device.family {
        return Err(Error::WrongDeviceClass);
    }
    if manifest.hardware_revision.as_str() != device.hardware_revision
        || !release
            .hardware_revisions
            .contains(device.hardware_revision)
    {
        return Err(Error::WrongHardwareRevision);
    }

    // 7. current version in range
    let current = device.current_version;
    if current < manifest.min_version || current > manifest.max_version {
        return Err(Error::VersionOutOfRange {
            current,
            min: manifest.min_version,
            max: manifest.max_version,
        });
    }

    // 8. anti-rollback
    if release.security_epoch < state.security_epoch {
        return Err(Error::SecurityEpochRollback {
            stored: state.security_epoch,
            release: release.security_epoch,
        });
    }

    // 8'. a live decision, not a replayed one
    let campaign_floor = live_decision(&checkpoint, &manifest, device, state)?;

    // 9. image (for an MCUboot-format release, also its header, TLVs and signature)
    match crate::mcuboot::check::Stated::of(&release) {
        None => check_image(image, release.image_size, &release.image_digest, crypto)?,
        Some(stated) => {
            crate::mcuboot::check::check_image(image, &stated, &anchors.release, crypto)?;
        }
    }

    Ok(Verdict {
        release_id: release.release_id,
        campaign: manifest.campaign,
        purpose: manifest.purpose,
        checkpoint_size: checkpoint.size,
        campaign_floor,
        installed: Installed {
            image_digest: release.image_digest,
            image_size: release.image_size,
            version: release.version,
            security_epoch: release.security_epoch,
            delivery_digest: crypto.sha256_of(&[delivery]),
            campaign_sequence: manifest.campaign_sequence,
        },
    })
}

/// Step 8' (formats.md §5.1): raises the stored floor to the checkpoint's `cairn-campaign-floor`
/// line for the device's class, then accepts an update or a rollback target of a campaign at or
/// above the floor: a live campaign's decision. A rollback target also reaches devices whose
/// update failed (the relay sends it once their attempts run out, docs/relay.md), so it is not
/// tied to the campaign the installed image came from. Returns the floor to store once the image
/// is installed: the campaign's sequence after an update, one above it after a rollback (neither
/// that campaign's update nor its rollback can be replayed afterwards).
fn live_decision(
    checkpoint: &Checkpoint<'_>,
    manifest: &Manifest<'_>,
    device: &DeviceIdentity<'_>,
    state: &StoredState,
) -> Result<u64, Error> {
    let announced = crate::floor::for_class(checkpoint.extensions, device.product, device.family)
        .map_err(Error::MalformedCheckpoint)?;
    let floor = state.campaign_floor.max(announced.unwrap_or(0));
    let sequence = manifest.campaign_sequence;
    if sequence < floor {
        return Err(Error::StaleDecision {
            floor,
            campaign_sequence: sequence,
        });
    }
    Ok(match manifest.purpose {
        Purpose::Update => floor.max(sequence),
        Purpose::Rollback => floor.max(sequence.saturating_add(1)),
    })
}

/// The boot check for an image that was already verified and installed: only its size and digest
/// are checked again, against the record kept in protected state. Both signature checks were done
/// when the record was written (the MCUboot practice of trusting a verdict kept in protected state).
pub fn verify_installed<C: Crypto, I: ImageReader>(
    state: &StoredState,
    image: &mut I,
    crypto: &C,
) -> Result<Installed, Error> {
    let installed = state.installed.ok_or(Error::NothingInstalled)?;
    check_image(image, installed.image_size, &installed.image_digest, crypto)?;
    Ok(installed)
}

/// Checks that `image` has `size` bytes whose SHA-256 is `digest`, reading it in [`CHUNK`]s.
pub fn check_image<C: Crypto, I: ImageReader>(
    image: &mut I,
    size: u64,
    digest: &Hash,
    crypto: &C,
) -> Result<(), Error> {
    if image.len() != size {
        return Err(Error::ImageSize {
            expected: size,
            actual: image.len(),
        });
    }
    let mut h = crypto.sha256();
    let mut buf = [0u8; CHUNK];
    let mut offset = 0u64;
    while offset < size {
        let n = usize::try_from((size - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
        let chunk = buf.get_mut(..n).ok_or(Error::FlashRead)?;
        image.read(offset, chunk).map_err(|_| Error::FlashRead)?;
        h.update(chunk);
        offset = offset.saturating_add(n as u64);
    }
    if ct_eq(&h.finish(), digest) {
        Ok(())
    } else {
        Err(Error::ImageDigest)
    }
}
