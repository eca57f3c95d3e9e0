//! Test fixtures: software keys, a reference Merkle tree and a delivery builder.
//!
//! Used by this crate's tests and doctests, the fuzz seeds and the Cortex-M33 case generator. The
//! keys are fixed test scalars, never used outside tests. The tree code here is the textbook RFC 9162
//! §2.1 definition, written for clarity, not speed; the vault has the production implementation and
//! is tested against this one.

#![expect(
    clippy::indexing_slicing,
    reason = "test fixture; indices are in range by construction"
)]

use alloc::string::String;
use alloc::vec::Vec;

use p256::ecdsa::SigningKey;

use crate::boot::TrustAnchors;
use crate::cose::ReleaseKey;
use crate::crypto::{Crypto, PublicKey, Software};
use crate::delivery::{Delivery, ProofHashes};
use crate::merkle::{leaf_hash, node_hash};
use crate::note::LogKey;
use crate::statement::{Manifest, Purpose, ReleaseStatement};
use crate::types::{
    Hash, Id, LeafIndex, Name, SecurityEpoch, TextList, TreeSize, UnixTime, Version,
};

/// The origin of the test log.
pub const ORIGIN: &str = "cairn.test/log";
/// The device the default delivery is for.
pub const DEVICE: &str = "dev-000001";
/// Its hardware revision.
pub const HARDWARE: &str = "rev-c";
/// Hardware revisions of the test release.
pub const HARDWARE_REVISIONS: &[&str] = &["rev-b", "rev-c"];
/// The campaign sequence of the default delivery's manifest.
pub const CAMPAIGN_SEQUENCE: u64 = 4;
/// Advisories of the test release.
pub const ADVISORIES: &[&str] = &["CVE-2026-10001", "CAIRN-SA-2026-07"];

/// Names of the three test witnesses (the example: a notified body, the OEM's auditor, the
/// OEM's second site).
pub const WITNESSES: [&str; 3] = [
    "witness.test/notified-body",
    "witness.test/auditor",
    "witness.test/oem-site-2",
];

/// A fixed Ed25519 test witness key (never use outside tests). `n` selects one of several.
pub fn witness_key(n: u8) -> ed25519_dalek::SigningKey {
    let mut seed = [0x57u8; 32];
    seed[31] = n;
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// The pinned form of test witness `n`, named `name`.
pub fn witness(name: &'static str, n: u8) -> crate::witness::WitnessKey<'static> {
    crate::witness::WitnessKey::new(name, witness_key(n).verifying_key().to_bytes(), &Software)
        .unwrap_or_else(unreachable_witness)
}

#[expect(clippy::panic, reason = "test fixture: fixed valid names")]
fn unreachable_witness() -> crate::witness::WitnessKey<'static> {
    panic!("fixture witness name rejected")
}

/// `note` with a cosignature by test witness `n` (index into [`WITNESSES`]) at `timestamp` appended.
pub fn cosign(note: &str, n: usize, timestamp: u64) -> String {
    let name = WITNESSES.get(n).copied().unwrap_or(WITNESSES[0]);
    let key = witness_key(u8::try_from(n).unwrap_or(0));
    let text = note
        .find("\n\n")
        .and_then(|i| note.get(..=i))
        .unwrap_or(note);
    let line = crate::witness::write::cosign(
        text,
        &witness(name, u8::try_from(n).unwrap_or(0)),
        &key,
        timestamp,
    );
    let mut out = String::from(note);
    out.push_str(&line);
    out
}

/// The device of the fixture's default delivery ([`DEVICE`], on 2.3.0).
pub fn device() -> crate::boot::DeviceIdentity<'static> {
    crate::boot::DeviceIdentity {
        device_id: DEVICE,
        product: "Smart Controller",
        family: "STM32H5",
        hardware_revision: HARDWARE,
        current_version: Version::new(2, 3, 0),
    }
}

/// A fixed test key (never use outside tests). `n` selects one of several.
pub fn test_key(n: u8) -> SigningKey {
    let mut scalar = [0u8; 32];
    scalar[0] = 0x42;
    scalar[31] = n.max(1);
    SigningKey::from_slice(&scalar).unwrap_or_else(|_| unreachable_key())
}

#[expect(
    clippy::panic,
    reason = "test fixture: a fixed scalar that is always valid"
)]
fn unreachable_key() -> SigningKey {
    panic!("fixed test scalar rejected")
}

/// The public half of a signing key in this crate's form.
pub fn public_key(key: &SigningKey) -> PublicKey {
    let point = key.verifying_key().to_sec1_point(false);
    PublicKey::from_sec1_uncompressed(point.as_bytes()).unwrap_or(PublicKey([0; 64]))
}

/// RFC 9162 §2.1.1 MTH over leaf hashes (recursive definition).
pub fn mth(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Software.sha256_of(&[]),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            node_hash(&Software, &mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Largest power of two smaller than `n` (`n > 1`).
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]).
pub fn inclusion_proof(leaves: &[Hash], m: usize) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    let (mut path, sibling) = if m < k {
        (inclusion_proof(&leaves[..k], m), mth(&leaves[k..]))
    } else {
        (inclusion_proof(&leaves[k..], m - k), mth(&leaves[..k]))
    };
    path.push(sibling);
    path
}

/// RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete {
                Vec::new()
            } else {
                alloc::vec![mth(leaves)]
            };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &leaves[..k], complete);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }
    subproof(m, leaves, true)
}

/// Root and inclusion path for one leaf of a large tree, computed level by level in O(n).
///
/// Bottom-up hashing where an unpaired last node is promoted gives the RFC 9162 root and audit path.
pub fn root_and_path(mut level: Vec<Hash>, mut index: usize) -> (Hash, Vec<Hash>) {
    if level.is_empty() {
        return (Software.sha256_of(&[]), Vec::new());
    }
    let mut path = Vec::new();
    while level.len() > 1 {
        let sibling = index ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node_hash(&Software, l, r),
                [one] => *one,
                _ => [0; 32],
            })
            .collect();
        index /= 2;
    }
    (level[0], path)
}

/// A filler leaf hash for position `i` (stands for some other entry of the log).
pub fn filler_leaf(i: u64) -> Hash {
    Software.sha256_of(&[b"cairn filler entry", &i.to_be_bytes()])
}

/// The parts of a delivery before encoding, so tests can tamper with any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// The signed checkpoint note.
    pub checkpoint: String,
    /// The release COSE_Sign1.
    pub release: Vec<u8>,
    /// The manifest entry.
    pub manifest: Vec<u8>,
    /// The manifest's leaf index.
    pub index: u64,
    /// The inclusion proof.
    pub proof: Vec<Hash>,
}

impl Parts {
    /// Encodes the delivery envelope.
    pub fn encode(&self) -> Vec<u8> {
        Delivery {
            checkpoint: self.checkpoint.as_bytes(),
            release: &self.release,
            manifest: &self.manifest,
            leaf_index: LeafIndex(self.index),
            proof: ProofHashes::Slice(&self.proof),
        }
        .to_cbor()
    }
}

/// Everything that goes into one test delivery; change any field, then [`Fixture::build`].
#[derive(Debug, Clone)]
pub struct Spec {
    /// Release id.
    pub release_id: &'static str,
    /// Product.
    pub product: &'static str,
    /// Family.
    pub family: &'static str,
    /// Hardware revisions of the release.
    pub hardware_revisions: &'static [&'static str],
    /// Release version.
    pub version: Version,
    /// Release security epoch.
    pub security_epoch: u64,
    /// The image the release states (digest and size are computed from it).
    pub image: Vec<u8>,
    /// Manifest: device.
    pub device_id: &'static str,
    /// Manifest: hardware revision.
    pub hardware_revision: &'static str,
    /// Manifest: allowed current versions.
    pub min_version: Version,
    /// Manifest: allowed current versions.
    pub max_version: Version,
    /// Manifest: bound to another release digest instead of the real one.
    pub release_digest_override: Option<Hash>,
    /// Which test key signs the release.
    pub release_key: u8,
    /// Which test key signs the checkpoint.
    pub log_key: u8,
    /// The checkpoint origin.
    pub origin: &'static str,
    /// Entries in the log (the manifest is one of them).
    pub tree_size: u64,
    /// The manifest's leaf index.
    pub index: u64,
    /// The release states an MCUboot image whose SHA256 TLV is this (statement key 14).
    pub mcuboot_hash: Option<Hash>,
    /// Manifest: update or rollback.
    pub purpose: Purpose,
    /// Manifest: the campaign's sequence (formats.md §5.1).
    pub campaign_sequence: u64,
    /// The checkpoint carries `cairn-campaign-floor <product>/<family> <n>` for the release's class.
    pub floor_line: Option<u64>,
}

impl Spec {
    /// The same spec for `image`, an MCUboot image: the statement's digest and size become the
    /// image's, and it carries the image's SHA256 TLV (or zeros if the image does not parse).
    #[must_use]
    pub fn with_mcuboot(mut self, image: Vec<u8>) -> Self {
        self.mcuboot_hash = Some(
            crate::mcuboot::Image::parse(&image)
                .map(|i| i.tlvs.hash)
                .unwrap_or_default(),
        );
        self.image = image;
        self
    }
}

/// A DER ECDSA signature with low S over `digest` by `key`, as an MCUboot ECDSA_SIG TLV holds it.
pub fn mcuboot_signature(key: &SigningKey, digest: &Hash) -> Vec<u8> {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let Ok(sig): Result<p256::ecdsa::Signature, _> = key.sign_prehash(digest) else {
        return Vec::new();
    };
    let sig = sig.normalize_s();
    let raw = crate::crypto::Signature(sig.to_bytes().into());
    let mut der = [0u8; 72];
    let n = crate::crypto::raw_to_der(&raw, &mut der);
    der[..n].to_vec()
}

/// An MCUboot image of `firmware` (header size 0x400, no padding), version `version`, security
/// counter `counter`, signed by test key number `key`.
pub fn mcuboot_image(
    firmware: &[u8],
    version: crate::mcuboot::ImageVersion,
    counter: Option<u32>,
    key: u8,
) -> Vec<u8> {
    mcuboot_image_with(
        firmware,
        &crate::mcuboot::write::Layout::default(),
        version,
        counter,
        key,
    )
}

/// [`mcuboot_image`] with another layout.
pub fn mcuboot_image_with(
    firmware: &[u8],
    layout: &crate::mcuboot::write::Layout,
    version: crate::mcuboot::ImageVersion,
    counter: Option<u32>,
    key: u8,
) -> Vec<u8> {
    let key = test_key(key);
    let key_hash = public_key(&key).key_hash(&Software);
    crate::mcuboot::write::image::<crate::mcuboot::write::LayoutError>(
        firmware,
        layout,
        version,
        counter,
        &key_hash,
        |digest| Ok(mcuboot_signature(&key, digest)),
    )
    .unwrap_or_default()
}

/// Test keys and the default reference release (2.4.1 for the Smart Controller, STM32H5).
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Key that signs checkpoints.
    pub log_key: SigningKey,
    /// Key that signs releases.
    pub release_key: SigningKey,
    /// The default firmware image.
    pub image: Vec<u8>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// Key number of the log key.
    pub const LOG_KEY: u8 = 1;
    /// Key number of the release key.
    pub const RELEASE_KEY: u8 = 2;

    /// The fixture with its fixed keys and a 6 KiB test image.
    pub fn new() -> Self {
        let image = (0..6 * 1024u32)
            .map(|i| i.wrapping_mul(31).to_le_bytes()[1])
            .collect();
        Self {
            log_key: test_key(Self::LOG_KEY),
            release_key: test_key(Self::RELEASE_KEY),
            image,
        }
    }

    /// The trust anchors a device of this fixture pins.
    pub fn anchors(&self) -> TrustAnchors<'static> {
        let log = LogKey::new(ORIGIN, ORIGIN, public_key(&self.log_key), &Software)
            .unwrap_or_else(unreachable_anchor);
        TrustAnchors {
            log,
            release: ReleaseKey::new(public_key(&self.release_key), &Software),
            witnesses: crate::witness::WitnessPolicy::unwitnessed(),
        }
    }

    /// The trust anchors of a device that needs 2 of the 3 [`WITNESSES`] to have cosigned.
    pub fn witnessed_anchors(&self) -> TrustAnchors<'static, 3> {
        let plain = self.anchors();
        let witnesses = [
            witness(WITNESSES[0], 0),
            witness(WITNESSES[1], 1),
            witness(WITNESSES[2], 2),
        ];
        TrustAnchors {
            log: plain.log,
            release: plain.release,
            witnesses: crate::witness::WitnessPolicy::new(witnesses, 2)
                .unwrap_or_else(|_| unreachable_policy()),
        }
    }

    /// The default spec: a valid delivery for [`DEVICE`], currently on 2.3.0.
    pub fn spec(&self) -> Spec {
        Spec {
            release_id: "controller-fw-2.4.1",
            product: "Smart Controller",
            family: "STM32H5",
            hardware_revisions: HARDWARE_REVISIONS,
            version: Version::new(2, 4, 1),
            security_epoch: 3,
            image: self.image.clone(),
            device_id: DEVICE,
            hardware_revision: HARDWARE,
            min_version: Version::new(2, 0, 0),
            max_version: Version::new(2, 4, 0),
            release_digest_override: None,
            release_key: Self::RELEASE_KEY,
            log_key: Self::LOG_KEY,
            origin: ORIGIN,
            tree_size: 11,
            index: 7,
            mcuboot_hash: None,
            purpose: Purpose::Update,
            campaign_sequence: CAMPAIGN_SEQUENCE,
            floor_line: None,
        }
    }

    /// Builds the parts of the delivery `spec` describes.
    pub fn build(&self, spec: &Spec) -> Parts {
        let digest = Software.sha256_of(&[&spec.image]);
        let statement = ReleaseStatement {
            release_id: id(spec.release_id),
            product: name(spec.product),
            family: name(spec.family),
            hardware_revisions: TextList::Slice(spec.hardware_revisions),
            version: spec.version,
            security_epoch: SecurityEpoch(spec.security_epoch),
            image_digest: digest,
            image_size: spec.image.len() as u64,
            support_until: UnixTime(1_956_528_000), // 2032-01-01
            advisories: TextList::Slice(ADVISORIES),
            issued_at: UnixTime(1_795_000_000),
            artifact: id("controller-fw-2.4.1-security.bin"),
            mcuboot_hash: spec.mcuboot_hash,
        };
        let release_key = test_key(spec.release_key);
        let kid = public_key(&release_key).key_hash(&Software);
        let release =
            crate::cose::write::sign(&statement.to_cbor(), &kid, &release_key).unwrap_or_default();
        let manifest = Manifest {
            device_id: id(spec.device_id),
            release_id: id(spec.release_id),
            release_digest: spec
                .release_digest_override
                .unwrap_or_else(|| Software.sha256_of(&[&release])),
            hardware_revision: id(spec.hardware_revision),
            min_version: spec.min_version,
            max_version: spec.max_version,
            campaign: id("campaign-2026-11"),
            purpose: spec.purpose,
            decided_at: UnixTime(1_795_000_100),
            campaign_sequence: spec.campaign_sequence,
        }
        .to_cbor();
        let leaves: Vec<Hash> = (0..spec.tree_size)
            .map(|i| {
                if i == spec.index {
                    leaf_hash(&Software, &manifest)
                } else {
                    filler_leaf(i)
                }
            })
            .collect();
        let index = usize::try_from(spec.index).unwrap_or(usize::MAX);
        let (root, proof) = root_and_path(leaves, index);
        let log_key = test_key(spec.log_key);
        let key = LogKey::new(spec.origin, spec.origin, public_key(&log_key), &Software)
            .unwrap_or_else(unreachable_anchor);
        let floor = spec
            .floor_line
            .map(|n| crate::floor::line(spec.product, spec.family, n));
        let extensions: Vec<&str> = floor.iter().map(String::as_str).collect();
        let body =
            crate::note::write::body(spec.origin, TreeSize(spec.tree_size), &root, &extensions);
        let checkpoint = crate::note::write::sign(&body, &key, &log_key).unwrap_or_default();
        Parts {
            checkpoint,
            release,
            manifest,
            index: spec.index,
            proof,
        }
    }

    /// The default valid delivery, encoded.
    pub fn delivery(&self) -> Vec<u8> {
        self.build(&self.spec()).encode()
    }

    /// The rollback manifest of the default campaign (formats.md §5.1): release 2.4.0 (same
    /// epoch, the fixture image) for a device that installed 2.4.1, the same campaign sequence.
    pub fn rollback_spec(&self) -> Spec {
        Spec {
            release_id: "controller-fw-2.4.0",
            version: Version::new(2, 4, 0),
            min_version: Version::new(2, 0, 0),
            max_version: Version::new(2, 4, 1),
            purpose: Purpose::Rollback,
            ..self.spec()
        }
    }

    /// The state of a device that installed the update of campaign `sequence` (the default
    /// release, 2.4.1 at epoch 3) and keeps campaign floor `floor`.
    pub fn installed_state(&self, sequence: u64, floor: u64) -> crate::boot::StoredState {
        let spec = Spec {
            campaign_sequence: sequence,
            ..self.spec()
        };
        crate::boot::StoredState {
            checkpoint_size: TreeSize(spec.tree_size),
            security_epoch: SecurityEpoch(spec.security_epoch),
            campaign_floor: floor,
            installed: Some(crate::boot::Installed {
                image_digest: Software.sha256_of(&[&self.image]),
                image_size: self.image.len() as u64,
                version: spec.version,
                security_epoch: SecurityEpoch(spec.security_epoch),
                delivery_digest: Software.sha256_of(&[&self.build(&spec).encode()]),
                campaign_sequence: sequence,
            }),
        }
    }
}

#[expect(clippy::panic, reason = "test fixture: a fixed valid policy")]
fn unreachable_policy() -> crate::witness::WitnessPolicy<'static, 3> {
    panic!("fixture witness policy rejected")
}

#[expect(clippy::panic, reason = "test fixture: fixed valid origin")]
fn unreachable_anchor() -> LogKey<'static> {
    panic!("fixture origin rejected")
}

#[expect(clippy::panic, reason = "test fixture: identifiers are literals")]
fn id(s: &'static str) -> Id<'static> {
    Id::new(s).unwrap_or_else(|| panic!("bad test id {s}"))
}

#[expect(clippy::panic, reason = "test fixture: names are literals")]
fn name(s: &'static str) -> Name<'static> {
    Name::new(s).unwrap_or_else(|| panic!("bad test name {s}"))
}
