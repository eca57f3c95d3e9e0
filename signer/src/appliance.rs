//! The signing appliance: its home directory and state, and what the key ceremony (`ceremony`)
//! and the signing sessions (`session`) share: the checks of names and ids, atomic writes, and
//! the COSE signature by an HSM key checked before it is used (docs/ceremony.md).
//!
//! Home layout:
//! - `signer.json`: the ceremony's public facts (ceremony id, token label, custodians, threshold,
//!   key URIs and certificate fingerprints) and the PIN check value; no secret.
//! - `certs/root.pem`, `certs/release-<gen>.pem`, `certs/log-<gen>.pem`: the certificates.
//! - `log/`: the vault, whose entry 0 is the ceremony record.

use std::path::{Path, PathBuf};

use cairn_vault::{Query, Vault};
use cairn_verifier::cose::{CoseSign1, ReleaseKey};
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::{CeremonyId, KeyAction, KeyRole};
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::{Hash, Id, Name};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::certs;
use crate::error::{Error, Result, io};
use crate::hsm::HsmKey;

/// The state file's format name and version.
pub const STATE_FORMAT: &str = "cairn-signer/1";

pub(crate) const STATE_FILE: &str = "signer.json";

/// One key as the appliance records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    /// Its `pkcs11:` URI.
    pub uri: String,
    /// Rotation generation (0 for the ceremony's key).
    pub generation: u8,
    /// Certificate file, relative to the home directory.
    pub certificate: String,
    /// SHA-256 fingerprint of the certificate (colon hex).
    pub fingerprint: String,
}

/// The three current keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// The root CA key.
    pub root: KeyState,
    /// The release key.
    pub release: KeyState,
    /// The log key.
    pub log: KeyState,
}

/// `signer.json`: what the appliance needs to check shares and find its keys. No secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`STATE_FORMAT`].
    pub format: String,
    /// Ceremony id, hex.
    pub ceremony: String,
    /// Token label.
    pub token: String,
    /// Log origin (and checkpoint key name).
    pub origin: String,
    /// Organization named in the certificates.
    pub organization: String,
    /// Shares needed to unlock.
    pub threshold: u8,
    /// Custodians in share order.
    pub custodians: Vec<String>,
    /// Check value of the PIN secret, hex (see `shares::Master::check_value`).
    pub pin_check: String,
    /// Current keys.
    pub keys: Keys,
}

impl State {
    pub(crate) fn ceremony_id(&self) -> Result<CeremonyId> {
        hex::decode(&self.ceremony)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Home {
                path: STATE_FILE.into(),
                why: "ceremony is not 16 hex bytes".into(),
            })
    }

    pub(crate) fn pin_check(&self) -> Result<[u8; 32]> {
        hex::decode(&self.pin_check)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Home {
                path: STATE_FILE.into(),
                why: "pin_check is not 32 hex bytes".into(),
            })
    }

    pub(crate) fn key(&self, role: KeyRole) -> &KeyState {
        match role {
            KeyRole::Root => &self.keys.root,
            KeyRole::Release => &self.keys.release,
            KeyRole::Log => &self.keys.log,
        }
    }
}

/// SHA-256 and length of everything `r` yields, read in 1 MiB chunks.
pub fn stream_sha256(r: &mut impl std::io::Read, path: &Path) -> Result<(Hash, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf).map_err(io("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((h.finalize().into(), len))
}

pub(crate) fn check_name<'a>(what: &str, s: &'a str) -> Result<Name<'a>> {
    Name::new(s).ok_or_else(|| {
        Error::Invalid(format!(
            "{what} {s:?} must be 1 to 128 characters, no control characters or outer spaces"
        ))
    })
}

pub(crate) fn check_id<'a>(what: &str, s: &'a str) -> Result<Id<'a>> {
    Id::new(s).ok_or_else(|| {
        Error::Invalid(format!(
            "{what} {s:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit"
        ))
    })
}

pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io("creating", path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("writing", path))
}

/// Writes `signer.json` atomically (temporary file, fsync, rename).
pub(crate) fn write_state(home: &Path, state: &State) -> Result<()> {
    use std::io::Write as _;
    let path = home.join(STATE_FILE);
    let tmp = home.join(".signer.json.tmp");
    let mut text = serde_json::to_string_pretty(state).unwrap_or_default();
    text.push('\n');
    let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("replacing", &path))?;
    std::fs::File::open(home)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", home))
}

pub(crate) fn sign_cose(payload: &[u8], key: &HsmKey<'_>) -> Result<Vec<u8>> {
    let cose = cairn_verifier::cose::write::sign(payload, &key.key_id(), key).map_err(|e| {
        // The HSM's error names the PKCS#11 call.
        key.last_error().unwrap_or_else(|| Error::Verification {
            what: format!("signature by {}", key.uri()),
            why: e.to_string(),
        })
    })?;
    // Check the HSM's signature before it goes anywhere.
    let release_key = ReleaseKey::new(key.public_key(), &Software);
    CoseSign1::decode(&cose)?
        .verify(&release_key, &Software)
        .map_err(|_| Error::BadSignature {
            uri: key.uri().into(),
        })?;
    Ok(cose)
}

pub(crate) fn log_key_of<'a>(origin: &'a str, log: &HsmKey<'_>) -> Result<LogKey<'a>> {
    LogKey::new(origin, origin, log.public_key(), &Software)
        .ok_or_else(|| Error::Invalid(format!("{origin:?} is not a valid log origin and key name")))
}

/// An appliance home: its state, certificates and log.
#[derive(Debug)]
pub struct Appliance {
    pub(crate) home: PathBuf,
    pub(crate) state: State,
    pub(crate) vault: Vault,
}

impl Appliance {
    /// Opens the appliance at `home`.
    pub fn open(home: impl AsRef<Path>) -> Result<Self> {
        let home = home.as_ref().to_path_buf();
        let path = home.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Home {
            path: path.clone(),
            why: format!(
                "cannot read the appliance state ({e}); was `cairn ceremony init` run here?"
            ),
        })?;
        let state: State = serde_json::from_str(&text).map_err(|e| Error::Home {
            path: path.clone(),
            why: format!("not a cairn signer state file ({e})"),
        })?;
        if state.format != STATE_FORMAT {
            return Err(Error::Home {
                path,
                why: format!("format {:?}, expected {STATE_FORMAT:?}", state.format),
            });
        }
        let vault = Vault::open_origin(home.join("log"), &state.origin)?;
        Ok(Self { home, state, vault })
    }

    /// The state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The log.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The certificate of the current `role` key.
    pub fn certificate(&self, role: KeyRole) -> Result<x509_cert::Certificate> {
        let path = self.home.join(&self.state.key(role).certificate);
        let pem = std::fs::read(&path).map_err(io("reading", &path))?;
        let (label, der) = der::pem::decode_vec(&pem).map_err(|e| Error::Certificate {
            what: path.display().to_string(),
            why: e.to_string(),
        })?;
        if label != "CERTIFICATE" {
            return Err(Error::Certificate {
                what: path.display().to_string(),
                why: format!("PEM label {label}, expected CERTIFICATE"),
            });
        }
        certs::from_der(&der, role.name())
    }

    /// Key statements in the log that revoke `key_id`: the index of the first, if any.
    pub(crate) fn revocation_of(&self, key_id: &Hash) -> Result<Option<u64>> {
        for index in self.vault.query_indices(Query::Kind(Kind::KEY))? {
            let entry = self.vault.entry(index)?;
            if let Statement::Key { statement, .. } = Statement::decode(&entry)?
                && statement.action == KeyAction::Revoke
                && &statement.key_id == key_id
            {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }
}
