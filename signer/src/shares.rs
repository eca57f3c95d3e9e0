//! Custodian shares: the token's PINs come from a 32-byte master secret, split k-of-n with
//! Shamir's scheme over GF(256) (`blahaj`), each share sealed to its custodian with a key derived
//! from their passphrase by Argon2id (RFC 9106) and ChaCha20-Poly1305 (RFC 8439).
//!
//! Nothing here touches the HSM: every check a presented set of shares can fail (format, ceremony,
//! duplicates, count, passphrase, the rebuilt secret against the ceremony's check value) happens
//! before a login is attempted, so a wrong share never counts towards locking the token.
//! docs/ceremony.md, "Shares", documents the file format and the derivations.

use std::fmt;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use cairn_verifier::custody::CeremonyId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result, io, random};

/// The share file format name and version.
pub const SHARE_FORMAT: &str = "cairn-share/1";
/// Shortest passphrase accepted at a ceremony, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Least Argon2id memory a share may ask for, in KiB (below it the KDF is not memory-hard).
pub const MIN_KDF_MEMORY_KIB: u32 = 8 * 1024;
/// Most Argon2id memory a share may ask for, in KiB (an edited file must not exhaust memory
/// before its seal is checked).
pub const MAX_KDF_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const SECRET_LEN: usize = 32;

/// A passphrase: zeroized on drop, never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase (trailing newline removed, as read from a terminal or a pipe).
    pub fn new(mut s: String) -> Self {
        while s.ends_with('\n') || s.ends_with('\r') {
            s.pop();
        }
        Self(Zeroizing::new(s))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether two passphrases are the same (a confirmation prompt).
    pub fn same_as(&self, other: &Passphrase) -> bool {
        let (a, b) = (self.bytes(), other.bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Length in characters.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }

    /// The text as a PKCS#11 PIN, zeroized on drop like the passphrase: the initial user PIN a
    /// security officer hands over is read like a passphrase (`ceremony init --existing-token`).
    pub fn into_pin(self) -> AuthPin {
        AuthPin::from(self.0.as_str().to_owned())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// The secret the token PINs derive from. Zeroized on drop, never printed.
pub struct Master(Zeroizing<[u8; SECRET_LEN]>);

impl fmt::Debug for Master {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Master(<redacted>)")
    }
}

impl Master {
    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        random(secret.as_mut())?;
        Ok(Self(secret))
    }

    fn derive(&self, label: &[u8], ceremony: &CeremonyId) -> Zeroizing<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(label);
        h.update(ceremony);
        h.update(self.0.as_ref());
        Zeroizing::new(h.finalize().into())
    }

    fn pin(&self, label: &[u8], ceremony: &CeremonyId) -> AuthPin {
        let d = self.derive(label, ceremony);
        AuthPin::from(hex::encode(d.as_ref()))
    }

    /// The token's user PIN: hex of SHA-256("cairn/v1/user-pin\0" ‖ ceremony id ‖ secret).
    pub fn user_pin(&self, ceremony: &CeremonyId) -> AuthPin {
        self.pin(b"cairn/v1/user-pin\0", ceremony)
    }

    /// The token's security officer PIN: as the user PIN with label "cairn/v1/so-pin\0".
    pub fn so_pin(&self, ceremony: &CeremonyId) -> AuthPin {
        self.pin(b"cairn/v1/so-pin\0", ceremony)
    }

    /// The check value kept in the appliance's state: SHA-256("cairn/v1/pin-check\0" ‖ ceremony id ‖
    /// secret). Rebuilt shares must match it before any login (a 256-bit secret cannot be found
    /// from its hash).
    pub fn check_value(&self, ceremony: &CeremonyId) -> [u8; 32] {
        *self.derive(b"cairn/v1/pin-check\0", ceremony)
    }

    /// Splits the secret into `n` shares, any `threshold` of which rebuild it. Share `i` (from 0)
    /// has x-coordinate `i + 1`.
    pub fn split(&self, threshold: u8, n: u8) -> Vec<Zeroizing<Vec<u8>>> {
        blahaj::Sharks(threshold)
            .dealer(self.0.as_ref())
            .take(usize::from(n))
            .map(|share| Zeroizing::new(Vec::from(&share)))
            .collect()
    }
}

/// Argon2id parameters of one share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// RFC 9106 §4, second recommended option: 64 MiB, 3 passes, 4 lanes.
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    fn check(&self) -> std::result::Result<Params, String> {
        if !(MIN_KDF_MEMORY_KIB..=MAX_KDF_MEMORY_KIB).contains(&self.memory_kib) {
            return Err(format!(
                "Argon2id memory {} KiB is outside {MIN_KDF_MEMORY_KIB} to {MAX_KDF_MEMORY_KIB} KiB",
                self.memory_kib
            ));
        }
        if self.iterations == 0
            || self.iterations > 64
            || self.parallelism == 0
            || self.parallelism > 16
        {
            return Err(format!(
                "Argon2id passes {} / lanes {} out of range (1-64 / 1-16)",
                self.iterations, self.parallelism
            ));
        }
        Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| format!("Argon2id parameters refused: {e}"))
    }

    fn derive(
        &self,
        passphrase: &Passphrase,
        salt: &[u8; 16],
    ) -> std::result::Result<Zeroizing<[u8; 32]>, String> {
        let params = self.check()?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.bytes(), salt, key.as_mut())
            .map_err(|e| format!("Argon2id failed: {e}"))?;
        Ok(key)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    algorithm: String,
    version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareJson {
    format: String,
    ceremony: String,
    token: String,
    custodian: String,
    index: u8,
    threshold: u8,
    custodians: u8,
    kdf: KdfJson,
    nonce: String,
    sealed: String,
}

/// One custodian's sealed share, as written to their file.
#[derive(Clone)]
pub struct ShareFile {
    /// Where it was read from or written to.
    pub path: PathBuf,
    /// The ceremony it belongs to.
    pub ceremony: CeremonyId,
    /// The token label.
    pub token: String,
    /// The custodian's name.
    pub custodian: String,
    /// The share's x-coordinate, 1-based (custodian order in the ceremony record).
    pub index: u8,
    /// Shares needed.
    pub threshold: u8,
    /// Shares made.
    pub custodians: u8,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    salt: [u8; 16],
    nonce: [u8; 12],
    sealed: Vec<u8>,
}

impl fmt::Debug for ShareFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareFile")
            .field("path", &self.path)
            .field("ceremony", &hex::encode(self.ceremony))
            .field("custodian", &self.custodian)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    hex::decode(s).ok()?.try_into().ok()
}

impl ShareFile {
    /// Seals `share` for `custodian` under a key derived from `passphrase`.
    #[expect(clippy::too_many_arguments, reason = "every field of the share header")]
    pub fn seal(
        path: PathBuf,
        ceremony: CeremonyId,
        token: &str,
        custodian: &str,
        index: u8,
        threshold: u8,
        custodians: u8,
        kdf: KdfParams,
        share: &[u8],
        passphrase: &Passphrase,
    ) -> Result<Self> {
        let mut file = Self {
            path,
            ceremony,
            token: token.into(),
            custodian: custodian.into(),
            index,
            threshold,
            custodians,
            kdf,
            salt: [0; 16],
            nonce: [0; 12],
            sealed: Vec::new(),
        };
        random(&mut file.salt)?;
        random(&mut file.nonce)?;
        let key = kdf.derive(passphrase, &file.salt).map_err(Error::Invalid)?;
        let aad = file.aad();
        file.sealed = ChaCha20Poly1305::new(&Key::from(*key))
            .encrypt(
                &Nonce::from(file.nonce),
                Payload {
                    msg: share,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Invalid("sealing a share failed".into()))?;
        Ok(file)
    }

    /// The header the seal authenticates: everything in the file but the ciphertext, so a share
    /// moved to another ceremony, custodian or index no longer opens.
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(128);
        aad.extend_from_slice(SHARE_FORMAT.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.ceremony);
        for s in [&self.token, &self.custodian] {
            aad.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(s.as_bytes());
        }
        aad.extend_from_slice(&[self.index, self.threshold, self.custodians]);
        for v in [
            self.kdf.memory_kib,
            self.kdf.iterations,
            self.kdf.parallelism,
        ] {
            aad.extend_from_slice(&v.to_be_bytes());
        }
        aad.extend_from_slice(&self.salt);
        aad
    }

    /// The file's JSON text.
    pub fn to_json(&self) -> String {
        let json = ShareJson {
            format: SHARE_FORMAT.into(),
            ceremony: hex::encode(self.ceremony),
            token: self.token.clone(),
            custodian: self.custodian.clone(),
            index: self.index,
            threshold: self.threshold,
            custodians: self.custodians,
            kdf: KdfJson {
                algorithm: "argon2id".into(),
                version: 0x13,
                memory_kib: self.kdf.memory_kib,
                iterations: self.kdf.iterations,
                parallelism: self.kdf.parallelism,
                salt: hex::encode(self.salt),
            },
            nonce: hex::encode(self.nonce),
            sealed: hex::encode(&self.sealed),
        };
        let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the file (created new: an existing file is never overwritten), mode 0600.
    pub fn write(&self) -> Result<()> {
        use std::io::Write as _;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut f = options
            .open(&self.path)
            .map_err(io("creating share file", &self.path))?;
        f.write_all(self.to_json().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io("writing share file", &self.path))
    }

    /// Reads and parses a share file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io("reading share file", path))?;
        Self::parse(&text, path)
    }

    /// Parses a share file's text; `path` is for error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |why: String| Error::ShareFile {
            path: path.into(),
            why,
        };
        let j: ShareJson =
            serde_json::from_str(text).map_err(|e| bad(format!("not a cairn share file ({e})")))?;
        if j.format != SHARE_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {SHARE_FORMAT:?}",
                j.format
            )));
        }
        if j.kdf.algorithm != "argon2id" || j.kdf.version != 0x13 {
            return Err(bad(format!(
                "KDF {} version {:#x}, expected argon2id version 0x13",
                j.kdf.algorithm, j.kdf.version
            )));
        }
        let ceremony =
            hex_array(&j.ceremony).ok_or_else(|| bad("ceremony is not 16 hex bytes".into()))?;
        let salt =
            hex_array(&j.kdf.salt).ok_or_else(|| bad("kdf.salt is not 16 hex bytes".into()))?;
        let nonce = hex_array(&j.nonce).ok_or_else(|| bad("nonce is not 12 hex bytes".into()))?;
        let sealed = hex::decode(&j.sealed).map_err(|_| bad("sealed is not hex".into()))?;
        if sealed.len() != 1 + SECRET_LEN + 16 {
            return Err(bad(format!(
                "sealed share is {} bytes, expected {}",
                sealed.len(),
                1 + SECRET_LEN + 16
            )));
        }
        if j.threshold < 2 || j.custodians < j.threshold || j.index == 0 || j.index > j.custodians {
            return Err(bad(format!(
                "share {} of {} with threshold {} is out of range",
                j.index, j.custodians, j.threshold
            )));
        }
        let kdf = KdfParams {
            memory_kib: j.kdf.memory_kib,
            iterations: j.kdf.iterations,
            parallelism: j.kdf.parallelism,
        };
        kdf.check().map_err(bad)?;
        Ok(Self {
            path: path.into(),
            ceremony,
            token: j.token,
            custodian: j.custodian,
            index: j.index,
            threshold: j.threshold,
            custodians: j.custodians,
            kdf,
            salt,
            nonce,
            sealed,
        })
    }

    /// Opens the share with its custodian's passphrase.
    fn open(&self, passphrase: &Passphrase) -> Result<Zeroizing<Vec<u8>>> {
        let key = self
            .kdf
            .derive(passphrase, &self.salt)
            .map_err(|why| Error::ShareFile {
                path: self.path.clone(),
                why,
            })?;
        let aad = self.aad();
        let share = ChaCha20Poly1305::new(&Key::from(*key))
            .decrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: &self.sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::WrongPassphrase {
                custodian: self.custodian.clone(),
                path: self.path.clone(),
            })?;
        let share = Zeroizing::new(share);
        if share.first() != Some(&self.index) {
            return Err(Error::ShareFile {
                path: self.path.clone(),
                why: format!(
                    "sealed share has x = {:?}, the header says {}",
                    share.first(),
                    self.index
                ),
            });
        }
        Ok(share)
    }
}

/// What the appliance knows about its ceremony, to judge presented shares.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Ceremony id.
    pub ceremony: &'a CeremonyId,
    /// Shares needed.
    pub threshold: u8,
    /// The custodians, in share order.
    pub custodians: &'a [String],
    /// The rebuilt secret's check value.
    pub check_value: &'a [u8; 32],
}

/// Checks presented share files before any passphrase is asked for: each belongs to this
/// ceremony and to a custodian of it, none is given twice, and there are at least `threshold`.
pub fn check_presented(expected: &Expected<'_>, files: &[ShareFile]) -> Result<()> {
    for (i, f) in files.iter().enumerate() {
        if &f.ceremony != expected.ceremony {
            return Err(Error::ForeignShare {
                path: f.path.clone(),
                custodian: f.custodian.clone(),
                expected: hex::encode(expected.ceremony),
                found: hex::encode(f.ceremony),
            });
        }
        let position = usize::from(f.index) - 1;
        if expected.custodians.get(position) != Some(&f.custodian)
            || f.threshold != expected.threshold
            || usize::from(f.custodians) != expected.custodians.len()
        {
            return Err(Error::ShareFile {
                path: f.path.clone(),
                why: format!(
                    "share {} of custodian {:?} does not match this ceremony's custodian list",
                    f.index, f.custodian
                ),
            });
        }
        if let Some(first) = files.iter().take(i).find(|g| g.index == f.index) {
            return Err(Error::DuplicateShare {
                custodian: f.custodian.clone(),
                first: first.path.clone(),
                second: f.path.clone(),
            });
        }
    }
    if files.len() < usize::from(expected.threshold) {
        return Err(Error::NotEnoughShares {
            got: files.len(),
            needed: expected.threshold,
        });
    }
    Ok(())
}

/// Opens each share with its passphrase and rebuilds the secret, checked against the ceremony's
/// check value. Call [`check_presented`] first (this calls it again).
pub fn rebuild(expected: &Expected<'_>, shares: &[(ShareFile, Passphrase)]) -> Result<Master> {
    let files: Vec<ShareFile> = shares.iter().map(|(f, _)| f.clone()).collect();
    check_presented(expected, &files)?;
    let mut opened = Vec::with_capacity(shares.len());
    for (file, passphrase) in shares {
        let bytes = file.open(passphrase)?;
        let share = blahaj::Share::try_from(bytes.as_slice()).map_err(|e| Error::ShareFile {
            path: file.path.clone(),
            why: e.into(),
        })?;
        opened.push(share);
    }
    let mut secret = blahaj::Sharks(expected.threshold)
        .recover(&opened)
        .map_err(|e| Error::Invalid(format!("recovering the secret failed: {e}")))?;
    let mut master = Zeroizing::new([0u8; SECRET_LEN]);
    let ok = secret.len() == SECRET_LEN;
    if ok {
        master.copy_from_slice(&secret);
    }
    secret.zeroize();
    let master = Master(master);
    if !ok || &master.check_value(expected.ceremony) != expected.check_value {
        return Err(Error::SharesInconsistent);
    }
    Ok(master)
}
