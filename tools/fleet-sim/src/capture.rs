//! A sample of deliveries kept exactly as devices received them, with what each device pinned and
//! was, so the real device firmware can check them again: `cargo xtask m33-deliveries` runs them
//! on the Cortex-M33 firmware under QEMU (docs/witness.md §2, docs/demo.md).
//!
//! The directory (`--capture DIR`):
//!
//! ```text
//! trust.json            what every device pins: origin, log and release keys (raw P-256 x || y,
//!                       hex), the witnesses (name, Ed25519 key in hex) and their threshold, and
//!                       the image file of each release
//! delivery-NN.cbor      the delivery bytes as received (the job document's or the topic's)
//! delivery-NN.json      the device (id, product, family, hardware revision), its state before
//!                       the delivery in the simulator's own state format, the release, and
//!                       the verdict of its boot check ("accept")
//! ```
//!
//! Only deliveries the boot check accepted are kept, at most [`PER_CHECKPOINT`] for each
//! checkpoint (so a rollout that moves to a newer checkpoint is sampled on each), up to the limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cairn_verifier::campaign::Outcome;
use cairn_verifier::delivery::Delivery;
use cairn_verifier::types::Hash;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::device::{Handled, Trust};
use crate::error::{Error, Result, io};
use crate::fleet::DeviceRow;
use crate::state::DeviceState;

/// Deliveries kept for each distinct checkpoint (signed note, cosignatures included).
pub const PER_CHECKPOINT: usize = 2;

/// Where the sample goes, and how much of it is taken.
#[derive(Debug)]
pub struct Capture {
    dir: PathBuf,
    limit: usize,
    taken: Mutex<Taken>,
}

#[derive(Debug, Default)]
struct Taken {
    count: usize,
    per_checkpoint: BTreeMap<Hash, usize>,
}

#[derive(Serialize)]
struct TrustFile<'a> {
    format: u32,
    origin: &'a str,
    log_key: String,
    release_key: String,
    witness_threshold: usize,
    witnesses: Vec<WitnessFile<'a>>,
    images: BTreeMap<&'a str, PathBuf>,
}

#[derive(Serialize)]
struct WitnessFile<'a> {
    name: &'a str,
    key: String,
}

#[derive(Serialize)]
struct DeliveryFile<'a> {
    delivery: String,
    device_id: &'a str,
    product: &'a str,
    family: &'a str,
    hardware_revision: &'a str,
    release: &'a str,
    state: serde_json::Value,
    verdict: &'a str,
}

impl Capture {
    /// Creates `dir` (it must not hold a capture already) and writes what the devices pin and
    /// where each release's image is; keeps at most `limit` deliveries.
    pub fn create(
        dir: &Path,
        limit: usize,
        trust: &Trust,
        images: &[(String, PathBuf)],
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("trust.json");
        if path.exists() {
            return Err(Error::Config {
                what: "--capture",
                reason: format!("{} holds a capture already", dir.display()),
            });
        }
        let images = images
            .iter()
            .map(|(release, file)| {
                let absolute = std::fs::canonicalize(file).map_err(io(file))?;
                Ok((release.as_str(), absolute))
            })
            .collect::<Result<_>>()?;
        let file = TrustFile {
            format: 1,
            origin: &trust.origin,
            log_key: hex::encode(trust.log_key.0),
            release_key: hex::encode(trust.release_key.0),
            witness_threshold: trust.witnesses.threshold(),
            witnesses: trust
                .witnesses
                .keys()
                .iter()
                .map(|k| WitnessFile {
                    name: &k.name,
                    key: hex::encode(k.public),
                })
                .collect(),
            images,
        };
        write_json(&path, &file)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            limit,
            taken: Mutex::new(Taken::default()),
        })
    }

    /// Keeps `bytes` if the boot check of `device` in state `before` accepted it and the sample
    /// has room for its checkpoint.
    pub(crate) fn offer(
        &self,
        device: &DeviceRow,
        before: &DeviceState,
        bytes: &[u8],
        handled: &Handled,
    ) -> Result<()> {
        let Handled::Done {
            outcome: Outcome::Installed,
            state: after,
            ..
        } = handled
        else {
            return Ok(());
        };
        let (Ok(delivery), Some(last)) = (Delivery::decode(bytes), after.last.as_ref()) else {
            return Ok(());
        };
        let checkpoint: Hash = Sha256::digest(delivery.checkpoint).into();
        let n = {
            let mut taken = self
                .taken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = taken.count;
            let seen = taken.per_checkpoint.entry(checkpoint).or_default();
            if count >= self.limit || *seen >= PER_CHECKPOINT {
                return Ok(());
            }
            *seen += 1;
            taken.count += 1;
            count
        };
        let name = format!("delivery-{n:02}");
        let cbor = self.dir.join(format!("{name}.cbor"));
        std::fs::write(&cbor, bytes).map_err(io(&cbor))?;
        let json = self.dir.join(format!("{name}.json"));
        let state = before.to_json(&device.id).map_err(|e| Error::State {
            path: json.clone(),
            reason: e.to_string(),
        })?;
        write_json(
            &json,
            &DeliveryFile {
                delivery: format!("{name}.cbor"),
                device_id: &device.id,
                product: &device.product,
                family: &device.family,
                hardware_revision: &device.hardware_revision,
                release: &last.release,
                state,
                verdict: "accept",
            },
        )
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, bytes).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cairn_verifier::test_support::{DEVICE, Fixture, ORIGIN, public_key};
    use cairn_verifier::types::Version;

    use super::*;
    use crate::device::{Images, Witnesses, handle};
    use crate::faults::{DeviceFaults, Faults};

    /// Accepted deliveries are kept, two per checkpoint and up to the limit; refused ones never.
    #[test]
    fn keeps_accepted_deliveries_two_per_checkpoint_up_to_the_limit() {
        let f = Fixture::new();
        let trust = Trust {
            origin: ORIGIN.into(),
            log_key: public_key(&f.log_key),
            release_key: public_key(&f.release_key),
            witnesses: Witnesses::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image.bin");
        std::fs::write(&image, &f.image).unwrap();
        let capture = Capture::create(
            &dir.path().join("capture"),
            3,
            &trust,
            &[("controller-fw-2.4.1".into(), image)],
        )
        .unwrap();
        let images = Images::from([("controller-fw-2.4.1".to_owned(), Arc::from(&f.image[..]))]);
        let device = DeviceRow {
            id: DEVICE.into(),
            product: "Smart Controller".into(),
            family: "STM32H5".into(),
            hardware_revision: "rev-c".into(),
            version: Version::new(2, 3, 0),
        };
        let state = DeviceState::new(device.version);
        let offer = |bytes: &[u8]| {
            let handled = handle(
                &trust,
                &images,
                &Faults::default(),
                &device,
                DeviceFaults::default(),
                &state,
                bytes,
            );
            capture.offer(&device, &state, bytes, &handled).unwrap();
        };
        let delivery = f.delivery();
        let mut later = f.spec();
        later.tree_size += 1;
        let later = f.build(&later).encode();
        let mut refused = f.spec();
        refused.device_id = "dev-000002";
        let refused = f.build(&refused).encode();
        for bytes in [&delivery, &delivery, &delivery, &refused, &later, &later] {
            offer(bytes);
        }
        let files = |ext: &str| {
            let mut names: Vec<String> = std::fs::read_dir(dir.path().join("capture"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(ext) && n.starts_with("delivery-"))
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            files(".cbor"),
            ["delivery-00.cbor", "delivery-01.cbor", "delivery-02.cbor"]
        );
        let kept =
            |n: usize| std::fs::read(dir.path().join(format!("capture/delivery-{n:02}.cbor")));
        assert_eq!(kept(1).unwrap(), delivery);
        assert_eq!(kept(2).unwrap(), later);
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("capture/delivery-00.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["device_id"], DEVICE);
        assert_eq!(meta["verdict"], "accept");
        assert_eq!(meta["state"]["version"], "2.3.0");
        let trust_file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("capture/trust.json")).unwrap())
                .unwrap();
        assert_eq!(trust_file["origin"], ORIGIN);
        assert_eq!(trust_file["log_key"], hex::encode(trust.log_key.0));
        // A second capture into the same directory is refused.
        assert!(Capture::create(&dir.path().join("capture"), 3, &trust, &[]).is_err());
    }
}
