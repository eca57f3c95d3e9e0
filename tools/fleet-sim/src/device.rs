//! What one simulated device does with a delivery (formats.md §5), without the network: the same
//! boot check the firmware runs (`cairn_verifier::boot::verify_delivery`, software crypto), the
//! injected faults, the install, the new persistent state and the status report (§7).
//!
//! The device states, one delivery at a time:
//!
//! ```text
//! delivery ──► same bytes as the install on record? ──yes──► ignored (a retained copy, a resend)
//!                 │ no
//!                 ▼
//!              envelope and manifest decode? ──no──► counted as malformed, nothing reported
//!                 │ yes
//!                 ▼
//!              image for the manifest's release? ──no──► InstallFailed "image-unavailable"
//!                 │ yes
//!                 ▼
//!              boot check (after any injected tampering) ──fails──► VerificationFailed <code>
//!                 │ passes
//!                 ▼
//!              install (an injected fault fails the update) ──fails──► InstallFailed "flash-write"
//!                 │ installed
//!                 ▼
//!              state := StoredState::after(verdict), version := the release's ──► Installed "ok"
//! ```
//!
//! Every handled delivery takes the next report sequence number and is persisted before the report
//! leaves; a silent device persists the same but keeps its counter and reports nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_verifier::boot::{
    DeviceIdentity, ImageReader, MemoryImage, TrustAnchors, verify_delivery,
};
use cairn_verifier::campaign::{Outcome, StatusReport};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::delivery::Delivery;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose};
use cairn_verifier::types::{Hash, Id};
use cairn_verifier::witness::report::Vkey;
use cairn_verifier::witness::{WitnessKey, WitnessPolicy, check_policy};
use sha2::{Digest, Sha256};

use crate::faults::{DeviceFaults, FLASH_WRITE, Faults};
use crate::fleet::DeviceRow;
use crate::state::{DeviceState, LastDelivery};

/// The detail reported when the simulator has no image for the delivered release.
pub const IMAGE_UNAVAILABLE: &str = "image-unavailable";

/// What every device pins and downloads.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The log's origin (and checkpoint key name).
    pub origin: String,
    /// The log key.
    pub log_key: PublicKey,
    /// The release key.
    pub release_key: PublicKey,
    /// The witnesses that must have cosigned a delivery's checkpoint (docs/witness.md).
    pub witnesses: Witnesses,
}

/// The k-of-n witness policy every device enforces: `threshold` of `keys` (no key: unwitnessed,
/// what cairn devices did before witnesses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Witnesses {
    keys: Vec<Vkey>,
    threshold: usize,
}

/// Most witnesses a simulated device pins (the policy is a const generic on the device).
pub const MAX_WITNESSES: usize = 8;

impl Witnesses {
    /// `threshold` of the witnesses with the C2SP verifier keys `vkeys` (`cairn-witness vkey`);
    /// checked as a device checks its policy. No key and a threshold of 0: unwitnessed.
    pub fn new(vkeys: &[String], threshold: usize) -> crate::Result<Self> {
        if vkeys.is_empty() && threshold == 0 {
            return Ok(Self::default());
        }
        let bad = |reason: String| crate::Error::Config {
            what: "--witness",
            reason,
        };
        let keys = vkeys
            .iter()
            .map(|v| Vkey::parse(v, &Software).map_err(|e| bad(e.to_string())))
            .collect::<crate::Result<Vec<_>>>()?;
        if keys.len() > MAX_WITNESSES {
            return Err(bad(format!("at most {MAX_WITNESSES} witnesses")));
        }
        let pinned: Vec<WitnessKey<'_>> = keys.iter().filter_map(|k| k.key(&Software)).collect();
        check_policy(&pinned, threshold).map_err(|e| bad(e.to_string()))?;
        Ok(Self { keys, threshold })
    }

    /// k (0 when unwitnessed).
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The pinned witnesses, in policy order.
    pub fn keys(&self) -> &[Vkey] {
        &self.keys
    }

    /// n.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no witness is pinned.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Images by release id, loaded once and shared by every device.
pub type Images = BTreeMap<String, Arc<[u8]>>;

/// Loads each `(release id, path)` image once.
pub fn load_images(specs: &[(String, std::path::PathBuf)]) -> crate::Result<Images> {
    let mut images = Images::new();
    for (release, path) in specs {
        if Id::new(release).is_none() {
            return Err(crate::Error::Config {
                what: "--image",
                reason: format!("{release:?} is not a release id"),
            });
        }
        let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
        if images.insert(release.clone(), Arc::from(bytes)).is_some() {
            return Err(crate::Error::Config {
                what: "--image",
                reason: format!("release {release} given twice"),
            });
        }
    }
    Ok(images)
}

/// The outcome of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// The same bytes as the delivery of the install on record: nothing to do.
    Duplicate,
    /// Not a delivery envelope, or its manifest does not decode: nobody to report to about what.
    Malformed(cairn_verifier::Error),
    /// The device handled it; `report` is the status report to publish (`None`: silent device).
    Done {
        /// What happened.
        outcome: Outcome,
        /// Update or rollback (from the manifest).
        purpose: Purpose,
        /// `ok`, the boot check's error code, or the install error.
        detail: &'static str,
        /// The encoded report, unless the device is silent.
        report: Option<Vec<u8>>,
        /// The state to persist before reporting.
        state: Box<DeviceState>,
    },
}

/// Runs one delivery through `device` in `state`.
pub fn handle(
    trust: &Trust,
    images: &Images,
    faults: &Faults,
    device: &DeviceRow,
    selected: DeviceFaults,
    state: &DeviceState,
    bytes: &[u8],
) -> Handled {
    let digest: Hash = Sha256::digest(bytes).into();
    if state
        .stored
        .installed
        .is_some_and(|i| i.delivery_digest == digest)
    {
        return Handled::Duplicate;
    }
    let envelope = match Delivery::decode(bytes) {
        Ok(d) => d,
        Err(e) => return Handled::Malformed(e),
    };
    let manifest = match Manifest::decode(envelope.manifest) {
        Ok(m) => m,
        Err(e) => return Handled::Malformed(e),
    };
    let release = manifest.release_id.as_str();
    let mut next = state.clone();

    let (outcome, detail) = match images.get(release) {
        None => (Outcome::InstallFailed, IMAGE_UNAVAILABLE),
        Some(image) => {
            let tampered;
            let checked: &[u8] = if selected.tamper_delivery {
                tampered = tamper_manifest(faults, &device.id, bytes, envelope.manifest);
                &tampered
            } else {
                bytes
            };
            let flip = selected
                .tamper_image
                .then(|| faults.position("tamper-image-byte", &device.id, image.len()));
            let mut reader = FlippedImage {
                image: MemoryImage(image),
                flip,
            };
            let verdict = run_check(trust, device, state, checked, &mut reader)
                .map(|v| (state.stored.after(&v), v.installed.version));
            match verdict {
                Err(e) => (Outcome::VerificationFailed, e.code()),
                Ok((stored, version)) => {
                    let purpose = manifest.purpose;
                    if let Err(e) = install(faults.transient, selected, purpose, release, &mut next)
                    {
                        (Outcome::InstallFailed, e)
                    } else {
                        next.stored = stored;
                        next.version = version;
                        (Outcome::Installed, "ok")
                    }
                }
            }
        }
    };
    next.last = Some(LastDelivery {
        digest,
        campaign: manifest.campaign.as_str().to_owned(),
        release: release.to_owned(),
        outcome,
        detail: detail.to_owned(),
    });
    // Every detail is an identifier (the verifier's error codes, "ok", this module's constants),
    // as §7 requires; one that were not could not be encoded.
    let report = (!selected.silent)
        .then(|| Id::new(detail))
        .flatten()
        .map(|detail| {
            next.sequence = state.sequence.saturating_add(1);
            StatusReport {
                campaign: manifest.campaign,
                release_id: manifest.release_id,
                outcome,
                detail,
                sequence: next.sequence,
            }
            .to_cbor()
        });
    Handled::Done {
        outcome,
        purpose: manifest.purpose,
        detail,
        report,
        state: Box::new(next),
    }
}

/// The boot check with the trust anchors built from `trust`.
fn run_check<'a, I: ImageReader>(
    trust: &Trust,
    device: &DeviceRow,
    state: &DeviceState,
    bytes: &'a [u8],
    image: &mut I,
) -> Result<cairn_verifier::boot::Verdict<'a>, cairn_verifier::Error> {
    let log = LogKey::new(&trust.origin, &trust.origin, trust.log_key, &Software).ok_or(
        // An origin the verifier cannot pin can sign no checkpoint this device accepts.
        cairn_verifier::Error::CheckpointOrigin,
    )?;
    let release = ReleaseKey::new(trust.release_key, &Software);
    let identity = DeviceIdentity {
        device_id: &device.id,
        product: &device.product,
        family: &device.family,
        hardware_revision: &device.hardware_revision,
        current_version: state.version,
    };
    let check = Check {
        log,
        release,
        identity: &identity,
        state,
        bytes,
    };
    match trust.witnesses.len() {
        0 => check.run(WitnessPolicy::unwitnessed(), image),
        1 => check.witnessed::<1, I>(&trust.witnesses, image),
        2 => check.witnessed::<2, I>(&trust.witnesses, image),
        3 => check.witnessed::<3, I>(&trust.witnesses, image),
        4 => check.witnessed::<4, I>(&trust.witnesses, image),
        5 => check.witnessed::<5, I>(&trust.witnesses, image),
        6 => check.witnessed::<6, I>(&trust.witnesses, image),
        7 => check.witnessed::<7, I>(&trust.witnesses, image),
        _ => check.witnessed::<MAX_WITNESSES, I>(&trust.witnesses, image),
    }
}

/// One boot check's inputs but the witness policy, whose size is a const generic on the device.
struct Check<'a, 'b> {
    log: LogKey<'b>,
    release: ReleaseKey,
    identity: &'b DeviceIdentity<'b>,
    state: &'b DeviceState,
    bytes: &'a [u8],
}

impl<'a> Check<'a, '_> {
    fn run<I: ImageReader, const N: usize>(
        &self,
        witnesses: WitnessPolicy<'_, N>,
        image: &mut I,
    ) -> Result<cairn_verifier::boot::Verdict<'a>, cairn_verifier::Error> {
        let anchors = TrustAnchors {
            log: self.log,
            release: self.release,
            witnesses,
        };
        verify_delivery(
            self.bytes,
            &anchors,
            self.identity,
            &self.state.stored,
            image,
            &Software,
        )
    }

    /// With the `N` witnesses of `w` (`Witnesses::new` checked the policy; one that still fails
    /// here can accept nothing: no quorum).
    fn witnessed<const N: usize, I: ImageReader>(
        &self,
        w: &Witnesses,
        image: &mut I,
    ) -> Result<cairn_verifier::boot::Verdict<'a>, cairn_verifier::Error> {
        let no_quorum = || cairn_verifier::Error::NoQuorum {
            have: 0,
            need: w.threshold,
            unknown: 0,
        };
        let keys: Vec<WitnessKey<'_>> = w.keys.iter().filter_map(|k| k.key(&Software)).collect();
        let keys = <[WitnessKey<'_>; N]>::try_from(keys.as_slice()).map_err(|_| no_quorum())?;
        let policy = WitnessPolicy::new(keys, w.threshold).map_err(|_| no_quorum())?;
        self.run(policy, image)
    }
}

/// Writes the image to "flash": fails for a device selected for install failures when the
/// delivery is the campaign's update (every attempt, or only the first if `transient`).
fn install(
    transient: bool,
    selected: DeviceFaults,
    purpose: Purpose,
    release: &str,
    state: &mut DeviceState,
) -> Result<(), &'static str> {
    if selected.install_failure && purpose == Purpose::Update {
        let failures = state
            .install_failures
            .entry(release.to_owned())
            .or_default();
        if !transient || *failures == 0 {
            *failures += 1;
            return Err(FLASH_WRITE);
        }
    }
    Ok(())
}

/// `bytes` with one byte of the manifest inside it flipped: the manifest is authenticated by the
/// checkpoint signature through its inclusion proof, so the boot check must refuse it.
fn tamper_manifest(faults: &Faults, device: &str, bytes: &[u8], manifest: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    // The manifest is a sub-slice of `bytes` (the decoder borrows); find where.
    let start = (manifest.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize);
    let at = start.map(|s| s + faults.position("tamper-delivery-byte", device, manifest.len()));
    if let Some(b) = at.and_then(|i| out.get_mut(i)) {
        *b = !*b;
    }
    out
}

/// An image in memory with one byte flipped as it is read, so tampering copies nothing.
struct FlippedImage<'a> {
    image: MemoryImage<'a>,
    flip: Option<usize>,
}

impl ImageReader for FlippedImage<'_> {
    type Error = ();

    fn len(&self) -> u64 {
        self.image.len()
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ()> {
        self.image.read(offset, buf)?;
        if let Some(at) = self.flip {
            let at = at as u64;
            if let Some(i) = at.checked_sub(offset).and_then(|i| usize::try_from(i).ok())
                && let Some(b) = buf.get_mut(i)
            {
                *b = !*b;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cairn_verifier::test_support::{DEVICE, Fixture, ORIGIN, public_key};
    use cairn_verifier::types::Version;

    use super::*;

    fn setup() -> (Fixture, Trust, Images, DeviceRow, Vec<u8>) {
        let f = Fixture::new();
        let trust = Trust {
            origin: ORIGIN.into(),
            log_key: public_key(&f.log_key),
            release_key: public_key(&f.release_key),
            witnesses: Witnesses::default(),
        };
        let images = Images::from([("controller-fw-2.4.1".to_owned(), Arc::from(&f.image[..]))]);
        let device = DeviceRow {
            id: DEVICE.into(),
            product: "Smart Controller".into(),
            family: "STM32H5".into(),
            hardware_revision: "rev-c".into(),
            version: Version::new(2, 3, 0),
        };
        let delivery = f.delivery();
        (f, trust, images, device, delivery)
    }

    fn done(
        h: Handled,
    ) -> (
        Outcome,
        &'static str,
        Option<StatusReport<'static>>,
        DeviceState,
    ) {
        match h {
            Handled::Done {
                outcome,
                detail,
                report,
                state,
                ..
            } => {
                let report = report.map(|r| {
                    let r: &'static [u8] = Box::leak(r.into_boxed_slice());
                    StatusReport::decode(r).unwrap()
                });
                (outcome, detail, report, *state)
            }
            other => panic!("not handled: {other:?}"),
        }
    }

    #[test]
    fn installs_once_and_ignores_the_same_delivery_again() {
        let (_, trust, images, device, delivery) = setup();
        let state = DeviceState::new(device.version);
        let faults = Faults::default();
        let (outcome, detail, report, next) = done(handle(
            &trust,
            &images,
            &faults,
            &device,
            DeviceFaults::default(),
            &state,
            &delivery,
        ));
        assert_eq!((outcome, detail), (Outcome::Installed, "ok"));
        let report = report.unwrap();
        assert_eq!(report.sequence, 1);
        assert_eq!(report.release_id.as_str(), "controller-fw-2.4.1");
        assert_eq!(report.campaign.as_str(), "campaign-2026-11");
        assert_eq!(next.version, Version::new(2, 4, 1));
        assert_eq!(next.stored.checkpoint_size.0, 11);
        assert_eq!(next.stored.security_epoch.0, 3);
        let installed = next.stored.installed.unwrap();
        assert_eq!(
            installed.delivery_digest,
            <[u8; 32]>::from(Sha256::digest(&delivery))
        );
        assert_eq!(
            handle(
                &trust,
                &images,
                &faults,
                &device,
                DeviceFaults::default(),
                &next,
                &delivery
            ),
            Handled::Duplicate
        );
    }

    /// A release in MCUboot format (what the demo installs): the simulated device runs the
    /// MCUboot step of the boot check and installs it; a flipped bit of it is refused.
    #[test]
    fn installs_an_mcuboot_release_and_refuses_it_tampered() {
        use cairn_verifier::mcuboot::ImageVersion;
        let (f, trust, _, device, _) = setup();
        let v = ImageVersion::of_release(Version::new(2, 4, 1)).unwrap();
        let image = cairn_verifier::test_support::mcuboot_image(&f.image, v, Some(3), 2);
        let delivery = f.build(&f.spec().with_mcuboot(image.clone())).encode();
        let state = DeviceState::new(device.version);
        let run = |image: Vec<u8>| {
            let images = Images::from([("controller-fw-2.4.1".to_owned(), Arc::from(image))]);
            done(handle(
                &trust,
                &images,
                &Faults::default(),
                &device,
                DeviceFaults::default(),
                &state,
                &delivery,
            ))
        };
        let (outcome, detail, _, next) = run(image.clone());
        assert_eq!((outcome, detail), (Outcome::Installed, "ok"));
        assert_eq!(
            next.stored.installed.unwrap().image_size,
            image.len() as u64
        );
        let mut tampered = image;
        tampered[2000] ^= 4;
        let (outcome, detail, _, _) = run(tampered);
        assert_eq!(
            (outcome, detail),
            (Outcome::VerificationFailed, "image-digest")
        );
    }

    #[test]
    fn tampering_is_caught_by_the_boot_check() {
        let (_, trust, images, device, delivery) = setup();
        let state = DeviceState::new(device.version);
        let faults = Faults::default();
        for (selected, code) in [
            (
                DeviceFaults {
                    tamper_image: true,
                    ..DeviceFaults::default()
                },
                "image-digest",
            ),
            (
                DeviceFaults {
                    tamper_delivery: true,
                    ..DeviceFaults::default()
                },
                "not-included",
            ),
        ] {
            let (outcome, detail, report, next) = done(handle(
                &trust, &images, &faults, &device, selected, &state, &delivery,
            ));
            assert_eq!((outcome, detail), (Outcome::VerificationFailed, code));
            assert_eq!(report.unwrap().detail.as_str(), code);
            // Nothing installed; the counter moved.
            assert_eq!(next.stored, state.stored);
            assert_eq!(next.version, state.version);
            assert_eq!(next.sequence, 1);
        }
    }

    #[test]
    fn install_failures_are_permanent_or_transient_and_silent_devices_do_not_report() {
        let (_, trust, images, device, delivery) = setup();
        let selected = DeviceFaults {
            install_failure: true,
            ..DeviceFaults::default()
        };
        let state = DeviceState::new(device.version);
        for transient in [false, true] {
            let faults = Faults {
                transient,
                ..Faults::default()
            };
            let (outcome, detail, _, once) = done(handle(
                &trust, &images, &faults, &device, selected, &state, &delivery,
            ));
            assert_eq!((outcome, detail), (Outcome::InstallFailed, FLASH_WRITE));
            assert_eq!(once.stored.installed, None);
            let (outcome, _, report, twice) = done(handle(
                &trust, &images, &faults, &device, selected, &once, &delivery,
            ));
            let expected = if transient {
                Outcome::Installed
            } else {
                Outcome::InstallFailed
            };
            assert_eq!(outcome, expected);
            assert_eq!(report.unwrap().sequence, 2);
            assert_eq!(twice.stored.installed.is_some(), transient);
        }
        let silent = DeviceFaults {
            silent: true,
            ..DeviceFaults::default()
        };
        let (outcome, _, report, next) = done(handle(
            &trust,
            &images,
            &Faults::default(),
            &device,
            silent,
            &state,
            &delivery,
        ));
        assert_eq!(outcome, Outcome::Installed);
        assert!(report.is_none());
        assert_eq!(next.sequence, 0);
        assert!(next.stored.installed.is_some());
    }

    #[test]
    fn malformed_deliveries_and_missing_images() {
        let (_, trust, images, device, delivery) = setup();
        let state = DeviceState::new(device.version);
        let faults = Faults::default();
        let h = handle(
            &trust,
            &images,
            &faults,
            &device,
            DeviceFaults::default(),
            &state,
            b"\xa0junk",
        );
        assert!(matches!(h, Handled::Malformed(_)), "{h:?}");
        let (outcome, detail, _, next) = done(handle(
            &trust,
            &Images::new(),
            &faults,
            &device,
            DeviceFaults::default(),
            &state,
            &delivery,
        ));
        assert_eq!(
            (outcome, detail),
            (Outcome::InstallFailed, IMAGE_UNAVAILABLE)
        );
        assert_eq!(next.stored.installed, None);
        // Another device's delivery is refused by the boot check, not by the simulator.
        let other = DeviceRow {
            id: "dev-000002".into(),
            ..device
        };
        let (outcome, detail, ..) = done(handle(
            &trust,
            &images,
            &faults,
            &other,
            DeviceFaults::default(),
            &DeviceState::new(other.version),
            &delivery,
        ));
        assert_eq!(
            (outcome, detail),
            (Outcome::VerificationFailed, "wrong-device")
        );
    }
}
