//! Injected faults. Every choice is a function of the seed, the fault and the device id
//! (`SHA-256("cairn fleet-sim" || seed || fault || 0x00 || device id)`), so a run is reproducible
//! and a test can ask [`Faults::for_device`] which devices a fault selected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The detail a device reports for an injected install failure (formats.md §7, key 4).
pub const FLASH_WRITE: &str = "flash-write";

/// A fraction of devices, from 0 (none) to 1 (all).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Rate(f64);

impl Rate {
    /// No device.
    pub const NONE: Rate = Rate(0.0);
    /// Every device.
    pub const ALL: Rate = Rate(1.0);

    /// A rate in `[0, 1]`; `None` outside it (or NaN).
    pub fn new(fraction: f64) -> Option<Self> {
        (0.0..=1.0).contains(&fraction).then_some(Self(fraction))
    }

    /// The fraction.
    pub const fn fraction(self) -> f64 {
        self.0
    }

    fn selects(self, draw: f64) -> bool {
        draw < self.0
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `0.05` or `5%`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (number, scale) = match s.strip_suffix('%') {
            Some(p) => (p, 100.0),
            None => (s, 1.0),
        };
        number
            .parse::<f64>()
            .ok()
            .and_then(|f| Rate::new(f / scale))
            .ok_or_else(|| format!("{s:?} is not a rate between 0 and 1 (or 0% and 100%)"))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The faults to inject, and the inputs that select devices for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Seed of every selection.
    pub seed: u64,
    /// Per rollout stage: the rate of its devices whose install of the campaign's update fails
    /// (`--install-failure STAGE=RATE`). Rollback installs never fail.
    pub install_failure: BTreeMap<u64, Rate>,
    /// Each device's stage (`--stages FILE`); a device not in it has no stage and never fails.
    pub stages: BTreeMap<String, u64>,
    /// Injected install failures happen on the first attempt only, so a retry succeeds.
    pub transient: bool,
    /// Devices that flip one byte of the image before the boot check.
    pub tamper_image: Rate,
    /// Devices that flip one byte of the delivery's manifest (authenticated by the checkpoint
    /// signature through its inclusion proof) before the boot check.
    pub tamper_delivery: Rate,
    /// Devices that never connect.
    pub offline: Rate,
    /// Devices that install but never report.
    pub silent: Rate,
}

/// What the faults select for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent faults: any combination can be selected"
)]
pub struct DeviceFaults {
    /// Never connects.
    pub offline: bool,
    /// Installs but never reports.
    pub silent: bool,
    /// Fails to install the campaign's update (every attempt, or the first if transient).
    pub install_failure: bool,
    /// Flips a byte of the image.
    pub tamper_image: bool,
    /// Flips a byte of the delivery.
    pub tamper_delivery: bool,
}

impl Faults {
    /// Which faults apply to `device`.
    pub fn for_device(&self, device: &str) -> DeviceFaults {
        let pick = |rate: Rate, fault: &str| rate.selects(self.draw(fault, device));
        let install_rate = self
            .stages
            .get(device)
            .and_then(|stage| self.install_failure.get(stage))
            .copied()
            .unwrap_or(Rate::NONE);
        DeviceFaults {
            offline: pick(self.offline, "offline"),
            silent: pick(self.silent, "silent"),
            install_failure: pick(install_rate, "install-failure"),
            tamper_image: pick(self.tamper_image, "tamper-image"),
            tamper_delivery: pick(self.tamper_delivery, "tamper-delivery"),
        }
    }

    /// Checks the settings fit together: install failures need the stages file.
    pub fn validate(&self) -> Result<()> {
        if self.install_failure.values().any(|r| r.fraction() > 0.0) && self.stages.is_empty() {
            return Err(Error::Config {
                what: "--install-failure",
                reason: "needs --stages FILE naming each device's stage (empty or missing)".into(),
            });
        }
        Ok(())
    }

    /// Reads a stages file: a JSON object `{"<device id>": <stage index>, ...}`.
    pub fn read_stages(path: &Path) -> Result<BTreeMap<String, u64>> {
        let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Stages {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// A position in `0..len` for `device`'s tampering of `what` (`len` > 0).
    pub(crate) fn position(&self, what: &str, device: &str, len: usize) -> usize {
        let h = self.hash(what, device);
        let n = u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        usize::try_from(n % len.max(1) as u64).unwrap_or(0)
    }

    /// A uniform draw in `[0, 1)` for `fault` and `device`.
    fn draw(&self, fault: &str, device: &str) -> f64 {
        let h = self.hash(fault, device);
        let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) >> 11;
        #[expect(
            clippy::cast_precision_loss,
            reason = "53-bit integers are exact in an f64"
        )]
        let draw = n as f64 / (1u64 << 53) as f64;
        draw
    }

    fn hash(&self, what: &str, device: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"cairn fleet-sim");
        h.update(self.seed.to_be_bytes());
        h.update(what.as_bytes());
        h.update([0]);
        h.update(device.as_bytes());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_fractions_or_percentages() {
        assert_eq!("0.25".parse::<Rate>(), Ok(Rate(0.25)));
        assert_eq!("5%".parse::<Rate>(), Ok(Rate(0.05)));
        assert_eq!("1".parse::<Rate>(), Ok(Rate::ALL));
        for bad in ["1.5", "-0.1", "NaN", "", "abc", "200%"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn selection_is_deterministic_and_close_to_the_rate() {
        let faults = Faults {
            seed: 7,
            tamper_image: Rate(0.2),
            offline: Rate::ALL,
            ..Faults::default()
        };
        let ids: Vec<String> = (0..10_000).map(|i| format!("sc-{i:07}")).collect();
        let picked = ids
            .iter()
            .filter(|id| faults.for_device(id).tamper_image)
            .count();
        assert!((1_850..=2_150).contains(&picked), "{picked}");
        assert!(ids.iter().all(|id| faults.for_device(id).offline));
        assert!(ids.iter().all(|id| !faults.for_device(id).silent));
        // Same seed, same choice; another seed, another.
        let again = Faults { ..faults.clone() };
        let other = Faults {
            seed: 8,
            ..faults.clone()
        };
        let chosen = |f: &Faults| -> Vec<bool> {
            ids.iter().map(|id| f.for_device(id).tamper_image).collect()
        };
        assert_eq!(chosen(&faults), chosen(&again));
        assert_ne!(chosen(&faults), chosen(&other));
    }

    #[test]
    fn install_failures_follow_the_stage() {
        let faults = Faults {
            install_failure: BTreeMap::from([(1, Rate::ALL)]),
            stages: BTreeMap::from([("a".into(), 0), ("b".into(), 1)]),
            ..Faults::default()
        };
        assert!(!faults.for_device("a").install_failure);
        assert!(faults.for_device("b").install_failure);
        assert!(!faults.for_device("c").install_failure);
        assert!(faults.validate().is_ok());
        let no_stages = Faults {
            stages: BTreeMap::new(),
            ..faults
        };
        assert!(matches!(
            no_stages.validate(),
            Err(Error::Config {
                what: "--install-failure",
                ..
            })
        ));
    }
}
