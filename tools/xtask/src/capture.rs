//! Reading what `cairn-fleet-sim --capture DIR` kept (tools/fleet-sim/src/capture.rs): the trust
//! anchors every simulated device pinned, and each delivery as a device received it with that
//! device's identity, its state before the delivery, the release image and the verdict of its
//! boot check.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use cairn_verifier::boot::{Installed, StoredState};
use cairn_verifier::types::{SecurityEpoch, TreeSize, Version};
use serde_json::Value;

use crate::cases::{Anchors, Device};

/// One captured delivery.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    /// The file stem (`delivery-00`).
    pub(crate) name: String,
    /// The delivery bytes as received.
    pub(crate) delivery: Vec<u8>,
    /// The release image it installs.
    pub(crate) image: Arc<Vec<u8>>,
    /// The device it was for.
    pub(crate) device: Device,
    /// The device's state before the delivery.
    pub(crate) state: StoredState,
    /// The verdict of the simulated device's boot check (`accept`).
    pub(crate) verdict: &'static str,
}

/// A whole capture.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    pub(crate) anchors: Anchors,
    pub(crate) deliveries: Vec<Captured>,
}

/// Reads the capture in `dir` (`trust.json`, then every `delivery-NN.json` in name order).
pub(crate) fn read(dir: &Path) -> Result<Capture> {
    let trust = json(&dir.join("trust.json"))?;
    ensure!(
        trust["format"] == 1,
        "{}: not a capture of format 1",
        dir.display()
    );
    let witnesses = trust["witnesses"]
        .as_array()
        .context("trust.json: witnesses")?
        .iter()
        .map(|w| Ok((string(&w["name"], "witness name")?, hex(&w["key"])?)))
        .collect::<Result<_>>()?;
    let anchors = Anchors {
        origin: string(&trust["origin"], "origin")?,
        log_key: hex(&trust["log_key"])?,
        release_key: hex(&trust["release_key"])?,
        witnesses,
        threshold: usize::try_from(number(&trust["witness_threshold"])?)?,
    };
    let mut images: BTreeMap<String, Arc<Vec<u8>>> = BTreeMap::new();
    for (release, path) in trust["images"].as_object().context("trust.json: images")? {
        let path = path.as_str().context("trust.json: image path")?;
        let bytes = std::fs::read(path).with_context(|| format!("image of {release}: {path}"))?;
        images.insert(release.clone(), Arc::new(bytes));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.starts_with("delivery-") && Path::new(n).extension().is_some_and(|e| e == "json")
        })
        .collect();
    names.sort();
    let deliveries = names
        .iter()
        .map(|n| delivery(dir, n, &images))
        .collect::<Result<_>>()?;
    Ok(Capture {
        anchors,
        deliveries,
    })
}

fn delivery(dir: &Path, file: &str, images: &BTreeMap<String, Arc<Vec<u8>>>) -> Result<Captured> {
    let meta = json(&dir.join(file))?;
    let release = string(&meta["release"], "release")?;
    let image = images
        .get(&release)
        .with_context(|| format!("{file}: no image for release {release}"))?;
    let state = &meta["state"];
    let bytes = dir.join(string(&meta["delivery"], "delivery")?);
    let installed = match &state["installed"] {
        Value::Null => None,
        i => Some(Installed {
            image_digest: hex(&i["image_digest"])?,
            image_size: number(&i["image_size"])?,
            version: version(&i["version"])?,
            security_epoch: SecurityEpoch(number(&i["security_epoch"])?),
            delivery_digest: hex(&i["delivery_digest"])?,
            campaign_sequence: number(&i["campaign_sequence"])?,
        }),
    };
    let verdict = match meta["verdict"].as_str() {
        Some("accept") => "accept",
        other => bail!("{file}: verdict {other:?}: only accepted deliveries are captured"),
    };
    Ok(Captured {
        name: file.trim_end_matches(".json").to_owned(),
        delivery: std::fs::read(&bytes).with_context(|| format!("{}", bytes.display()))?,
        image: Arc::clone(image),
        device: Device {
            device_id: leak(&meta["device_id"], "device_id")?,
            product: leak(&meta["product"], "product")?,
            family: leak(&meta["family"], "family")?,
            hardware_revision: leak(&meta["hardware_revision"], "hardware_revision")?,
            current_version: version(&state["version"])?,
        },
        state: StoredState {
            checkpoint_size: TreeSize(number(&state["checkpoint_size"])?),
            security_epoch: SecurityEpoch(number(&state["security_epoch"])?),
            campaign_floor: number(&state["campaign_floor"])?,
            installed,
        },
        verdict,
    })
}

fn json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn string(v: &Value, what: &str) -> Result<String> {
    Ok(v.as_str()
        .with_context(|| format!("{what}: not a string"))?
        .to_owned())
}

/// The cases' device names are `&'static str`, as the fixture's are: the few strings of a
/// capture live as long as the task.
fn leak(v: &Value, what: &str) -> Result<&'static str> {
    Ok(string(v, what)?.leak())
}

fn number(v: &Value) -> Result<u64> {
    v.as_u64().with_context(|| format!("{v}: not a number"))
}

fn version(v: &Value) -> Result<Version> {
    let text = v.as_str().context("version: not a string")?;
    Version::parse(text).with_context(|| format!("{text:?} is not major.minor.patch"))
}

fn hex<const N: usize>(v: &Value) -> Result<[u8; N]> {
    let text = v.as_str().context("key or digest: not a string")?;
    ensure!(text.len() == 2 * N, "{text:?}: not {N} bytes in hex");
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair)?;
        *byte = u8::from_str_radix(pair, 16).with_context(|| format!("{text:?}: not hex"))?;
    }
    Ok(out)
}
