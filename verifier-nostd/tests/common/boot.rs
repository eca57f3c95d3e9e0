//! What the boot check tests share: the fixture's device, a run of `boot::verify_delivery`, and
//! ways to change one thing of a delivery and reseal the rest as an honest log would.

use cairn_verifier::Error;
use cairn_verifier::boot::{
    DeviceIdentity, ImageReader, MemoryImage, StoredState, Verdict, verify_delivery,
};
use cairn_verifier::cose::CoseSign1;
use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::LogKey;
use cairn_verifier::test_support::{
    DEVICE, Fixture, HARDWARE, Parts, Spec, filler_leaf, public_key, root_and_path, test_key,
};
use cairn_verifier::types::{Hash, TreeSize, Version};

/// The device the fixture's default delivery is for.
pub(crate) fn device() -> DeviceIdentity<'static> {
    DeviceIdentity {
        device_id: DEVICE,
        product: "Smart Controller",
        family: "STM32H5",
        hardware_revision: HARDWARE,
        current_version: Version::new(2, 3, 0),
    }
}

pub(crate) fn run<'a>(
    f: &Fixture,
    delivery: &'a [u8],
    device: &DeviceIdentity<'_>,
    state: &StoredState,
    image: &[u8],
) -> Result<Verdict<'a>, Error> {
    verify_delivery(
        delivery,
        &f.anchors(),
        device,
        state,
        &mut MemoryImage(image),
        &Software,
    )
}

/// Builds `spec`, runs the default device and a fresh state against the fixture image.
pub(crate) fn verdict_of(f: &Fixture, spec: &Spec) -> Result<(), Error> {
    let delivery = f.build(spec).encode();
    run(f, &delivery, &device(), &StoredState::default(), &f.image).map(|_| ())
}

pub(crate) fn verdict_of_parts(f: &Fixture, parts: &Parts) -> Result<(), Error> {
    let delivery = parts.encode();
    run(f, &delivery, &device(), &StoredState::default(), &f.image).map(|_| ())
}

/// Replaces the manifest of `parts` and rebuilds the tree, proof and signed checkpoint around it,
/// as an honest log would for that manifest.
pub(crate) fn reseal(spec: &Spec, parts: &mut Parts, manifest: Vec<u8>) {
    let leaves: Vec<Hash> = (0..spec.tree_size)
        .map(|i| {
            if i == spec.index {
                leaf_hash(&Software, &manifest)
            } else {
                filler_leaf(i)
            }
        })
        .collect();
    let (root, proof) = root_and_path(leaves, usize::try_from(spec.index).unwrap());
    let log_key = test_key(spec.log_key);
    let key = LogKey::new(spec.origin, spec.origin, public_key(&log_key), &Software).unwrap();
    let body = cairn_verifier::note::write::body(spec.origin, TreeSize(spec.tree_size), &root, &[]);
    parts.checkpoint = cairn_verifier::note::write::sign(&body, &key, &log_key).unwrap();
    parts.manifest = manifest;
    parts.proof = proof;
}

/// The release COSE_Sign1 of `parts` with its payload changed after signing.
pub(crate) fn tamper_release_payload(parts: &mut Parts) {
    let cose = CoseSign1::decode(&parts.release).unwrap();
    let mut payload = cose.payload.to_vec();
    let last = payload.len() - 1; // last byte of the artifact name
    payload[last] ^= 0x01;
    parts.release =
        cairn_verifier::cose::write::assemble(cose.protected, &payload, &cose.signature.0);
}

/// Flash that fails every read at or after `fail_from`.
pub(crate) struct FailingFlash<'a> {
    pub(crate) image: &'a [u8],
    pub(crate) fail_from: u64,
    pub(crate) reads: usize,
}

impl ImageReader for FailingFlash<'_> {
    type Error = &'static str;

    fn len(&self) -> u64 {
        self.image.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        self.reads += 1;
        if offset >= self.fail_from {
            return Err("ECC error");
        }
        let start = usize::try_from(offset).unwrap();
        buf.copy_from_slice(&self.image[start..start + buf.len()]);
        Ok(())
    }
}
