//! Each simulated device's persistent state: what a real device keeps in protected flash
//! ([`StoredState`]: newest checkpoint size, security epoch, install record), plus the version it
//! runs, its status report counter (formats.md §7, key 5) and what it did with its last delivery.
//!
//! One JSON file per device, `<state>/devices/<device id>.json` (device ids are identifiers, safe
//! as file names), replaced atomically (written to a temporary file, then renamed), so a simulator
//! that is killed leaves the old or the new state, never half of one. Not synced to disk: the
//! simulator survives being killed, not a power cut of the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_verifier::boot::{Installed, StoredState};
use cairn_verifier::campaign::Outcome;
use cairn_verifier::types::{Hash, SecurityEpoch, TreeSize, Version};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io};

const FORMAT: u32 = 2;

/// What a device did with the last delivery it handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDelivery {
    /// SHA-256 of the delivery bytes as received.
    pub digest: Hash,
    /// The manifest's campaign.
    pub campaign: String,
    /// The manifest's release.
    pub release: String,
    /// What the device reported (or would have, if silent).
    pub outcome: Outcome,
    /// The report's detail (`ok`, a boot check error code, `flash-write`).
    pub detail: String,
}

/// One device's persistent state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// The version it runs.
    pub version: Version,
    /// What the boot check keeps (`cairn_verifier::boot::StoredState`).
    pub stored: StoredState,
    /// Sequence number of the last status report published (0: none yet).
    pub sequence: u64,
    /// The last delivery handled.
    pub last: Option<LastDelivery>,
    /// Injected install failures so far, per release.
    pub install_failures: BTreeMap<String, u64>,
}

impl DeviceState {
    /// A device fresh from the factory, running `version`.
    pub fn new(version: Version) -> Self {
        Self {
            version,
            stored: StoredState::default(),
            sequence: 0,
            last: None,
            install_failures: BTreeMap::new(),
        }
    }

    /// The state file of `device` under the state directory `dir`.
    pub fn path(dir: &Path, device: &str) -> PathBuf {
        dir.join("devices").join(format!("{device}.json"))
    }

    /// Reads the state of `device`; `None` if it has none yet.
    pub fn load(dir: &Path, device: &str) -> Result<Option<Self>> {
        let path = Self::path(dir, device);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let corrupt = |reason: String| Error::State {
            path: path.clone(),
            reason,
        };
        let file: File = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.format != FORMAT {
            return Err(corrupt(format!(
                "format {}, expected {FORMAT}",
                file.format
            )));
        }
        if file.device != device {
            return Err(corrupt(format!("holds the state of {}", file.device)));
        }
        file.into_state().map(Some).map_err(corrupt)
    }

    /// The state of `device` as its state file holds it (what `--capture` records beside a
    /// delivery).
    pub(crate) fn to_json(&self, device: &str) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(File::from_state(self, device))
    }

    /// Writes the state of `device` atomically (temporary file, then rename).
    pub fn store(&self, dir: &Path, device: &str) -> Result<()> {
        let path = Self::path(dir, device);
        let devices = dir.join("devices");
        std::fs::create_dir_all(&devices).map_err(io(&devices))?;
        let tmp = devices.join(format!(".{device}.json.tmp"));
        let json = serde_json::to_vec_pretty(&File::from_state(self, device)).map_err(|e| {
            Error::State {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        std::fs::write(&tmp, json).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}

/// The JSON layout.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: u32,
    device: String,
    version: String,
    checkpoint_size: u64,
    security_epoch: u64,
    campaign_floor: u64,
    installed: Option<InstalledFile>,
    sequence: u64,
    last: Option<LastFile>,
    #[serde(default)]
    install_failures: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstalledFile {
    image_digest: String,
    image_size: u64,
    version: String,
    security_epoch: u64,
    delivery_digest: String,
    campaign_sequence: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LastFile {
    delivery_digest: String,
    campaign: String,
    release: String,
    outcome: String,
    detail: String,
}

fn hash(text: &str, what: &str) -> Result<Hash, String> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(text, &mut h).map_err(|e| format!("{what}: {e}"))?;
    Ok(h)
}

fn version(text: &str, what: &str) -> Result<Version, String> {
    Version::parse(text).ok_or_else(|| format!("{what}: {text:?} is not major.minor.patch"))
}

impl File {
    fn from_state(s: &DeviceState, device: &str) -> Self {
        Self {
            format: FORMAT,
            device: device.to_owned(),
            version: s.version.to_string(),
            checkpoint_size: s.stored.checkpoint_size.0,
            security_epoch: s.stored.security_epoch.0,
            campaign_floor: s.stored.campaign_floor,
            installed: s.stored.installed.map(|i| InstalledFile {
                image_digest: hex::encode(i.image_digest),
                image_size: i.image_size,
                version: i.version.to_string(),
                security_epoch: i.security_epoch.0,
                delivery_digest: hex::encode(i.delivery_digest),
                campaign_sequence: i.campaign_sequence,
            }),
            sequence: s.sequence,
            last: s.last.as_ref().map(|l| LastFile {
                delivery_digest: hex::encode(l.digest),
                campaign: l.campaign.clone(),
                release: l.release.clone(),
                outcome: l.outcome.name().to_owned(),
                detail: l.detail.clone(),
            }),
            install_failures: s.install_failures.clone(),
        }
    }

    fn into_state(self) -> Result<DeviceState, String> {
        let installed = self
            .installed
            .map(|i| -> Result<Installed, String> {
                Ok(Installed {
                    image_digest: hash(&i.image_digest, "installed.image_digest")?,
                    image_size: i.image_size,
                    version: version(&i.version, "installed.version")?,
                    security_epoch: SecurityEpoch(i.security_epoch),
                    delivery_digest: hash(&i.delivery_digest, "installed.delivery_digest")?,
                    campaign_sequence: i.campaign_sequence,
                })
            })
            .transpose()?;
        let last = self
            .last
            .map(|l| -> Result<LastDelivery, String> {
                Ok(LastDelivery {
                    digest: hash(&l.delivery_digest, "last.delivery_digest")?,
                    outcome: Outcome::from_name(&l.outcome)
                        .ok_or_else(|| format!("last.outcome: unknown {:?}", l.outcome))?,
                    campaign: l.campaign,
                    release: l.release,
                    detail: l.detail,
                })
            })
            .transpose()?;
        Ok(DeviceState {
            version: version(&self.version, "version")?,
            stored: StoredState {
                checkpoint_size: TreeSize(self.checkpoint_size),
                security_epoch: SecurityEpoch(self.security_epoch),
                campaign_floor: self.campaign_floor,
                installed,
            },
            sequence: self.sequence,
            last,
            install_failures: self.install_failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DeviceState::load(dir.path(), "d-1").unwrap(), None);
        let state = DeviceState {
            version: Version::new(2, 4, 1),
            stored: StoredState {
                checkpoint_size: TreeSize(41),
                security_epoch: SecurityEpoch(3),
                campaign_floor: 2,
                installed: Some(Installed {
                    image_digest: [7; 32],
                    image_size: 6144,
                    version: Version::new(2, 4, 1),
                    security_epoch: SecurityEpoch(3),
                    delivery_digest: [9; 32],
                    campaign_sequence: 2,
                }),
            },
            sequence: 4,
            last: Some(LastDelivery {
                digest: [9; 32],
                campaign: "c-1".into(),
                release: "r-1".into(),
                outcome: Outcome::Installed,
                detail: "ok".into(),
            }),
            install_failures: BTreeMap::from([("r-1".into(), 1)]),
        };
        state.store(dir.path(), "d-1").unwrap();
        assert_eq!(
            DeviceState::load(dir.path(), "d-1").unwrap(),
            Some(state.clone())
        );

        // Another device's file under this name, a damaged file: refused, not reset.
        std::fs::copy(
            DeviceState::path(dir.path(), "d-1"),
            DeviceState::path(dir.path(), "d-2"),
        )
        .unwrap();
        let err = DeviceState::load(dir.path(), "d-2").unwrap_err();
        assert!(err.to_string().contains("holds the state of d-1"), "{err}");
        std::fs::write(DeviceState::path(dir.path(), "d-1"), b"{\"format\": 1").unwrap();
        assert!(matches!(
            DeviceState::load(dir.path(), "d-1"),
            Err(Error::State { .. })
        ));
    }
}
