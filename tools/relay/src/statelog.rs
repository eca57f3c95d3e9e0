//! The relay's own log of device-state evidence (docs/relay.md, "The device-state log"): a
//! `cairn_vault::Vault` with its own origin whose checkpoints are signed by the relay key, an
//! online software key the relay generates on first start. It is not an HSM key of the signer: it
//! can vouch only for what the relay observed, never for a release or a plan.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_vault::Vault;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::note::LogKey;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

/// File name of the relay key (PKCS#8 PEM, mode 0600) under the data directory.
pub const KEY_FILE: &str = "relay-key.pem";
/// File name of its public key (SPKI PEM), for whoever verifies the relay's checkpoints.
pub const PUBLIC_KEY_FILE: &str = "relay-key.pub.pem";

/// Why the relay log could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the relay key could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The relay key file does not hold a P-256 PKCS#8 key, or the key could not be encoded.
    #[error("the relay key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The system's random generator failed (generating the relay key).
    #[error("the system random generator failed: {0}")]
    Random(String),
    /// The configured origin is not a valid log origin.
    #[error("{0:?} is not a valid log origin for the relay log")]
    Origin(String),
    /// The log underneath (RocksDB, its files, its checkpoint) failed.
    #[error("the relay's state log: {0}")]
    Vault(#[from] cairn_vault::Error),
    /// An append of nothing.
    #[error("nothing to append")]
    Empty,
    /// A write failure made by `fail_next_appends` (the `fault-injection` feature, tests only).
    #[error("appending to the relay's state log: injected write failure")]
    Injected,
}

type Result<T> = std::result::Result<T, Error>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The relay's device-state log.
pub struct StateLog {
    vault: Arc<Vault>,
    origin: String,
    signing: SigningKey,
    public: PublicKey,
    /// Appends still to fail, and appends failed (the `fault-injection` feature, for tests).
    #[cfg(feature = "fault-injection")]
    faults: (std::sync::atomic::AtomicU32, std::sync::atomic::AtomicU64),
}

impl std::fmt::Debug for StateLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("StateLog")
            .field("origin", &self.origin)
            .field("size", &self.vault.size())
            .finish_non_exhaustive()
    }
}

impl StateLog {
    /// Opens (or creates, with a new relay key) the log in `dir` (`state/` and the key files).
    pub fn open(dir: &Path, origin: &str) -> Result<Self> {
        let (signing, public) = Self::load_key(dir)?;
        LogKey::new(origin, origin, public, &Software)
            .ok_or_else(|| Error::Origin(origin.into()))?;
        let path = dir.join("state");
        let vault = if path.exists() {
            // An interrupted create left no log: `create` resumes it (it refuses anything else).
            match Vault::open_origin(&path, origin) {
                Err(cairn_vault::Error::NotALog(_)) => Vault::create(&path, origin),
                other => other,
            }
        } else {
            Vault::create(&path, origin)
        }?;
        Ok(Self {
            vault: Arc::new(vault),
            origin: origin.to_owned(),
            signing,
            public,
            #[cfg(feature = "fault-injection")]
            faults: Default::default(),
        })
    }

    /// The relay key's public half for the relay whose data directory is `dir`, the key made
    /// first if there is none yet (as the relay's first start makes it): what a witness of the
    /// relay log is given before the relay runs (`cairn-witness serve --log`), with
    /// [`PUBLIC_KEY_FILE`] written beside it.
    pub fn public_key_of(dir: &Path) -> Result<PublicKey> {
        Self::load_key(dir).map(|(_, public)| public)
    }

    /// Loads the relay key of `dir` (made first if there is none), writes its public half to
    /// [`PUBLIC_KEY_FILE`].
    fn load_key(dir: &Path) -> Result<(SigningKey, PublicKey)> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key_path = dir.join(KEY_FILE);
        let key_error = |reason: String| Error::Key {
            path: key_path.clone(),
            reason,
        };
        let signing = if key_path.exists() {
            let pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| key_error(format!("not a P-256 PKCS#8 key ({e})")))?
        } else {
            let key = generate_key()?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| key_error(format!("encoding it: {e}")))?;
            write_private(&key_path, pem.as_bytes())?;
            key
        };
        let spki = signing
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| key_error(format!("encoding its public key: {e}")))?;
        let public = PublicKey::from_spki_der(spki.as_bytes())
            .ok_or_else(|| key_error("its public key is not a P-256 key".into()))?;
        let pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| key_error(format!("encoding its public key: {e}")))?;
        let public_path = dir.join(PUBLIC_KEY_FILE);
        std::fs::write(&public_path, pem).map_err(io(&public_path))?;
        Ok((signing, public))
    }

    /// Makes the next `n` appends fail as a failed disk write would, before anything is written
    /// (tests only: the `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_appends(&self, n: u32) {
        self.faults.0.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Appends that failed by `fail_next_appends`.
    #[cfg(feature = "fault-injection")]
    pub fn failed_appends(&self) -> u64 {
        self.faults.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The log.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The log, to read (or add cosignatures to) without the engine's lock: the vault has one
    /// writer lock of its own.
    pub fn shared_vault(&self) -> Arc<Vault> {
        Arc::clone(&self.vault)
    }

    /// Its origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The relay key's public half.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The key that verifies the log's checkpoints.
    pub fn log_key(&self) -> Result<LogKey<'_>> {
        LogKey::new(&self.origin, &self.origin, self.public, &Software)
            .ok_or_else(|| Error::Origin(self.origin.clone()))
    }

    /// Appends `entries` and a new checkpoint over them, signed by the relay key, in one synced
    /// write (nothing is written if anything fails).
    pub fn append(&self, entries: &[Vec<u8>]) -> Result<Range<u64>> {
        if entries.is_empty() {
            return Err(Error::Empty);
        }
        #[cfg(feature = "fault-injection")]
        {
            use std::sync::atomic::Ordering::SeqCst;
            let armed = self
                .faults
                .0
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
            if armed.is_ok() {
                self.faults.1.fetch_add(1, SeqCst);
                return Err(Error::Injected);
            }
        }
        let key = self.log_key()?;
        let (range, _note) = self.vault.append_signed(entries, &key, &self.signing)?;
        Ok(range)
    }
}

fn generate_key() -> Result<SigningKey> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    loop {
        getrandom::fill(seed.as_mut_slice()).map_err(|e| Error::Random(e.to_string()))?;
        // Below the group order with overwhelming probability; draw again otherwise.
        if let Ok(key) = SigningKey::from_slice(seed.as_slice()) {
            return Ok(key);
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}
