//! The witness's Ed25519 key: a file holding the 32-byte seed in hex, read into zeroized memory,
//! never logged, never printed (`Debug` shows the name and key id only).

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64ct::{Base64, Encoding};
use cairn_verifier::crypto::Software;
use cairn_verifier::witness::{COSIGNATURE_V1_ALG, WitnessKey, key_id};
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits (and an optional newline).
    #[error("key file {path} does not hold a 32-byte seed in hex")]
    Format {
        /// The file.
        path: String,
    },
    /// The witness name could not appear on a signature line (C2SP signed-note).
    #[error("witness name {0:?} is not a valid key name (non-empty, no spaces, no '+')")]
    Name(String),
    /// The system's random number generator failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// The witness's name and signing key.
pub struct WitnessSecret {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl fmt::Debug for WitnessSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessSecret")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl WitnessSecret {
    /// Reads the key file at `path` for the witness `name`.
    pub fn load(path: &Path, name: &str) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim_end_matches('\n'), seed.as_mut_slice()).map_err(|_| {
            KeyError::Format {
                path: path.display().to_string(),
            }
        })?;
        Self::from_seed(&seed, name)
    }

    /// Generates a new key, writes it to `path` (created, never overwritten, mode 0600) and
    /// returns it.
    pub fn generate(path: &Path, name: &str) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|e| KeyError::Random(e.to_string()))?;
        let secret = Self::from_seed(&seed, name)?;
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(seed.as_slice())));
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(secret)
    }

    /// The key for `seed` (tests, and the two constructors above).
    pub fn from_seed(seed: &[u8; 32], name: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_bytes(seed);
        let public = key.verifying_key().to_bytes();
        WitnessKey::new(name, public, &Software).ok_or_else(|| KeyError::Name(name.to_owned()))?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &public, &Software),
            key,
        })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The pinned form of this witness, as devices and auditors hold it.
    pub fn pinned(&self) -> WitnessKey<'_> {
        WitnessKey {
            name: &self.name,
            public: self.public(),
            key_id: self.key_id,
        }
    }

    /// The C2SP signed-note verifier key: `<name>+<hex key id>+<base64(0x04 || public key)>`.
    pub fn vkey(&self) -> String {
        let mut material = vec![COSIGNATURE_V1_ALG];
        material.extend_from_slice(&self.public());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            Base64::encode_string(&material)
        )
    }

    /// The cosignature line over the note text `text` at `timestamp`.
    pub fn cosign(&self, text: &str, timestamp: u64) -> String {
        cairn_verifier::witness::write::cosign(text, &self.pinned(), &self.key, timestamp)
    }
}
