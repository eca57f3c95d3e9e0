//! The signing appliance: its home directory, the key ceremony that creates it, and the signing
//! sessions custodians open on it (docs/ceremony.md).
//!
//! Home layout:
//! - `signer.json`: the ceremony's public facts (ceremony id, token label, custodians, threshold,
//!   key URIs and certificate fingerprints) and the PIN check value; no secret.
//! - `certs/root.pem`, `certs/release-<gen>.pem`, `certs/log-<gen>.pem`: the certificates.
//! - `log/`: the vault, whose entry 0 is the ceremony record.

use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};

use cairn_vault::{Query, Vault};
use cairn_verifier::cose::{CoseSign1, ReleaseKey};
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::{
    CeremonyId, CeremonyRecord, KeyAction, KeyRole, KeyStatement, SessionRecord, SignedEntry,
};
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Kind, ReleaseEntry, ReleaseStatement, Statement};
use cairn_verifier::types::{Hash, Id, Name, SecurityEpoch, TextList, UnixTime, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::certs;
use crate::error::{Error, Result, io, random};
use crate::hsm::{HsmKey, Module, Token};
use crate::shares::{self, Expected, KdfParams, Master, Passphrase, ShareFile};
use crate::uri::Pkcs11Uri;

/// The state file's format name and version.
pub const STATE_FORMAT: &str = "cairn-signer/1";
const STATE_FILE: &str = "signer.json";

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
    fn ceremony_id(&self) -> Result<CeremonyId> {
        hex::decode(&self.ceremony)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Home {
                path: STATE_FILE.into(),
                why: "ceremony is not 16 hex bytes".into(),
            })
    }

    fn pin_check(&self) -> Result<[u8; 32]> {
        hex::decode(&self.pin_check)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Home {
                path: STATE_FILE.into(),
                why: "pin_check is not 32 hex bytes".into(),
            })
    }

    fn key(&self, role: KeyRole) -> &KeyState {
        match role {
            KeyRole::Root => &self.keys.root,
            KeyRole::Release => &self.keys.release,
            KeyRole::Log => &self.keys.log,
        }
    }
}

/// One custodian at the ceremony.
#[derive(Debug)]
pub struct Custodian {
    /// Name as it appears in the record (a `Name`: 1-128 characters, no control characters).
    pub name: String,
    /// Where their share file is written (their removable medium).
    pub share_path: PathBuf,
    /// Their passphrase.
    pub passphrase: Passphrase,
}

/// What `ceremony init` needs.
#[derive(Debug)]
pub struct CeremonyOptions {
    /// The appliance home (created; must not exist or be empty).
    pub home: PathBuf,
    /// Token label (1-32 bytes).
    pub token: String,
    /// Log origin, e.g. `cairn.example/log`.
    pub origin: String,
    /// Organization for the certificates.
    pub organization: String,
    /// Shares needed (2 or more: no single custodian can unlock).
    pub threshold: u8,
    /// The custodians, in share order.
    pub custodians: Vec<Custodian>,
    /// Argon2id parameters for the shares.
    pub kdf: KdfParams,
    /// The ceremony's time.
    pub now: UnixTime,
}

/// What a ceremony produced (all public).
#[derive(Debug, Clone)]
pub struct CeremonyReport {
    /// Ceremony id.
    pub ceremony: CeremonyId,
    /// The checkpoint over the ceremony record.
    pub checkpoint: String,
    /// The state written to `signer.json`.
    pub state: State,
    /// Share files written, in custodian order.
    pub share_files: Vec<PathBuf>,
}

/// Name and SHA-256 of the running executable, for the ceremony record.
fn software() -> Result<(String, Hash)> {
    let exe = std::env::current_exe().map_err(io("locating the running executable", "."))?;
    let mut f = std::fs::File::open(&exe).map_err(io("reading", &exe))?;
    let digest = stream_sha256(&mut f, &exe)?.0;
    let name = exe
        .file_name()
        .map_or_else(|| "cairn".into(), |n| n.to_string_lossy().into_owned());
    Ok((
        format!("{name} (cairn {})", env!("CARGO_PKG_VERSION")),
        digest,
    ))
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

fn check_name<'a>(what: &str, s: &'a str) -> Result<Name<'a>> {
    Name::new(s).ok_or_else(|| {
        Error::Invalid(format!(
            "{what} {s:?} must be 1 to 128 characters, no control characters or outer spaces"
        ))
    })
}

fn check_id<'a>(what: &str, s: &'a str) -> Result<Id<'a>> {
    Id::new(s).ok_or_else(|| {
        Error::Invalid(format!(
            "{what} {s:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit"
        ))
    })
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
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
fn write_state(home: &Path, state: &State) -> Result<()> {
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

/// Checks a ceremony's parameters before anything is created; returns the number of custodians.
fn validate(opts: &CeremonyOptions) -> Result<u8> {
    let n = opts.custodians.len();
    if !(2..=usize::try_from(cairn_verifier::custody::MAX_CUSTODIANS).unwrap_or(32)).contains(&n) {
        return Err(Error::Invalid(format!(
            "{n} custodian(s): a ceremony needs 2 to 32"
        )));
    }
    let n = u8::try_from(n).unwrap_or(u8::MAX);
    if opts.threshold < 2 || opts.threshold > n {
        return Err(Error::Invalid(format!(
            "threshold {} out of range: 2 to {n} (no single custodian may unlock the token)",
            opts.threshold
        )));
    }
    for (i, c) in opts.custodians.iter().enumerate() {
        check_name("custodian name", &c.name)?;
        if opts.custodians[..i].iter().any(|d| d.name == c.name) {
            return Err(Error::Invalid(format!(
                "custodian {:?} is listed twice",
                c.name
            )));
        }
        if opts.custodians[..i]
            .iter()
            .any(|d| d.share_path == c.share_path)
        {
            return Err(Error::Invalid(format!(
                "custodians {:?} and another share one file {}",
                c.name,
                c.share_path.display()
            )));
        }
        if c.passphrase.chars() < shares::MIN_PASSPHRASE_CHARS {
            return Err(Error::Invalid(format!(
                "custodian {:?}: passphrase too short ({} characters, at least {})",
                c.name,
                c.passphrase.chars(),
                shares::MIN_PASSPHRASE_CHARS
            )));
        }
        if c.share_path.exists() {
            return Err(Error::Invalid(format!(
                "custodian {:?}: share file {} already exists; shares are never overwritten",
                c.name,
                c.share_path.display()
            )));
        }
    }
    check_name("log origin", &opts.origin)?;
    check_name("token label", &opts.token)?;
    if opts.token.len() > 32 {
        return Err(Error::Invalid(format!(
            "token label {:?} is {} bytes; PKCS#11 labels hold 32",
            opts.token,
            opts.token.len()
        )));
    }
    // The origin is also the checkpoint key name (C2SP signed-note: no spaces, no '+').
    if opts.origin.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(Error::Invalid(format!(
            "log origin {:?} is also the checkpoint key name: no spaces or '+' (C2SP signed-note)",
            opts.origin
        )));
    }
    certs::subject(KeyRole::Root, &opts.organization)?;
    Ok(n)
}

/// Runs a key ceremony (docs/ceremony.md, "Ceremony init"): initializes the token with PINs
/// derived from a fresh secret, generates the root, release and log keys on it, issues their
/// certificates, splits the secret into sealed custodian shares, and starts the log with the
/// root-signed ceremony record as entry 0 under a log-key checkpoint.
///
/// Everything is checked before the token is touched; share files and `signer.json` are written
/// only once the log holds the record.
pub fn init(module: &Module, opts: &CeremonyOptions) -> Result<CeremonyReport> {
    // 1. Parameters.
    let n = validate(opts)?;
    let home = &opts.home;
    if home.join(STATE_FILE).exists() {
        return Err(Error::Home {
            path: home.clone(),
            why: "already holds a ceremony (signer.json exists)".into(),
        });
    }
    std::fs::create_dir_all(home.join("certs")).map_err(io("creating", home.join("certs")))?;
    let vault = Vault::create(home.join("log"), &opts.origin)?;
    let (software, software_digest) = software()?;

    // 2. Secret and token.
    let mut ceremony: CeremonyId = [0; 16];
    random(&mut ceremony)?;
    let master = Master::generate()?;
    module.init_token(
        &opts.token,
        &master.so_pin(&ceremony),
        &master.user_pin(&ceremony),
    )?;
    let token = module.login(&opts.token, &master.user_pin(&ceremony))?;

    // 3. Keys and certificates.
    let root = token.generate_key(KeyRole::Root, 0)?;
    let release = token.generate_key(KeyRole::Release, 0)?;
    let log = token.generate_key(KeyRole::Log, 0)?;
    let root_cert = certs::root_certificate(&root, &opts.organization, opts.now)?;
    let issue = |key: &HsmKey<'_>, role| {
        certs::key_certificate(&root, &root_cert, key, role, &opts.organization, opts.now)
    };
    let release_cert = issue(&release, KeyRole::Release)?;
    let log_cert = issue(&log, KeyRole::Log)?;
    // The HSM's certificate signatures are checked before anything depends on them.
    certs::verify_issued_by(&root_cert, &root_cert, "root (self-signed)")?;
    certs::verify_issued_by(&release_cert, &root_cert, "release")?;
    certs::verify_issued_by(&log_cert, &root_cert, "log")?;
    let ders = [
        certs::to_der(&root_cert)?,
        certs::to_der(&release_cert)?,
        certs::to_der(&log_cert)?,
    ];

    // 4. The record, signed by the root, logged under a log-key checkpoint.
    let names: Vec<&str> = opts.custodians.iter().map(|c| c.name.as_str()).collect();
    let record = CeremonyRecord {
        ceremony_id: ceremony,
        performed_at: opts.now,
        threshold: opts.threshold,
        custodians: TextList::Slice(&names),
        token: check_name("token label", &opts.token)?,
        origin: check_name("log origin", &opts.origin)?,
        root_certificate: &ders[0],
        release_certificate: &ders[1],
        log_certificate: &ders[2],
        software: check_name("software", &software)?,
        software_digest,
    };
    let cose = sign_cose(&record.to_cbor(), &root)?;
    let entry = SignedEntry {
        kind: Kind::CEREMONY,
        cose_sign1: &cose,
    }
    .to_cbor();
    let log_key = log_key_of(&opts.origin, &log)?;
    let (_, checkpoint) = vault.append_signed(&[entry], &log_key, &log)?;

    // 5. Shares, certificates, state.
    let share_files = write_shares(opts, &ceremony, &master, n)?;
    let state = State {
        format: STATE_FORMAT.into(),
        ceremony: hex::encode(ceremony),
        token: opts.token.clone(),
        origin: opts.origin.clone(),
        organization: opts.organization.clone(),
        threshold: opts.threshold,
        custodians: opts.custodians.iter().map(|c| c.name.clone()).collect(),
        pin_check: hex::encode(master.check_value(&ceremony)),
        keys: Keys {
            root: initial_key_state(KeyRole::Root, &root, &ders[0]),
            release: initial_key_state(KeyRole::Release, &release, &ders[1]),
            log: initial_key_state(KeyRole::Log, &log, &ders[2]),
        },
    };
    for (ks, cert) in [
        (&state.keys.root, &root_cert),
        (&state.keys.release, &release_cert),
        (&state.keys.log, &log_cert),
    ] {
        write_new(&home.join(&ks.certificate), certs::to_pem(cert)?.as_bytes())?;
    }
    write_state(home, &state)?;
    Ok(CeremonyReport {
        ceremony,
        checkpoint,
        state,
        share_files,
    })
}

/// The state of a key made at the ceremony (generation 0).
fn initial_key_state(role: KeyRole, key: &HsmKey<'_>, der: &[u8]) -> KeyState {
    let certificate = if role == KeyRole::Root {
        "certs/root.pem".to_owned()
    } else {
        format!("certs/{}-0.pem", role.name())
    };
    KeyState {
        uri: key.uri().into(),
        generation: 0,
        certificate,
        fingerprint: certs::fingerprint_text(der),
    }
}

/// Splits the secret and writes each custodian's sealed share file.
fn write_shares(
    opts: &CeremonyOptions,
    ceremony: &CeremonyId,
    master: &Master,
    n: u8,
) -> Result<Vec<PathBuf>> {
    let raw_shares = master.split(opts.threshold, n);
    let mut share_files = Vec::with_capacity(usize::from(n));
    for ((c, share), index) in opts.custodians.iter().zip(&raw_shares).zip(1u8..) {
        let file = ShareFile::seal(
            c.share_path.clone(),
            *ceremony,
            &opts.token,
            &c.name,
            index,
            opts.threshold,
            n,
            opts.kdf,
            share,
            &c.passphrase,
        )?;
        file.write()?;
        share_files.push(c.share_path.clone());
    }
    Ok(share_files)
}

fn sign_cose(payload: &[u8], key: &HsmKey<'_>) -> Result<Vec<u8>> {
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

fn log_key_of<'a>(origin: &'a str, log: &HsmKey<'_>) -> Result<LogKey<'a>> {
    LogKey::new(origin, origin, log.public_key(), &Software)
        .ok_or_else(|| Error::Invalid(format!("{origin:?} is not a valid log origin and key name")))
}

/// An appliance home: its state, certificates and log.
#[derive(Debug)]
pub struct Appliance {
    home: PathBuf,
    state: State,
    vault: Vault,
}

/// The certificates of a ceremony, as its record holds them.
#[derive(Debug, Clone)]
pub struct VerifiedCeremony {
    /// Ceremony id.
    pub ceremony: CeremonyId,
    /// When it ran.
    pub performed_at: UnixTime,
    /// Threshold.
    pub threshold: u8,
    /// Custodians in share order.
    pub custodians: Vec<String>,
    /// Token label.
    pub token: String,
    /// Log origin.
    pub origin: String,
    /// Software that ran it, and its SHA-256.
    pub software: (String, Hash),
    /// DER certificates: root, release, log.
    pub certificates: [Vec<u8>; 3],
    /// SHA-256 fingerprints of the three (colon hex).
    pub fingerprints: [String; 3],
}

/// Verifies a ceremony record entry on its own: the COSE signature by the root key its root
/// certificate holds, the root certificate self-signed, the release and log certificates issued by
/// it, and (if given) the root fingerprint an auditor or custodian wrote down.
pub fn verify_ceremony_entry(
    entry: &[u8],
    root_fingerprint: Option<&[u8; 32]>,
) -> Result<VerifiedCeremony> {
    let Statement::Ceremony {
        entry: signed,
        record,
    } = Statement::decode(entry)?
    else {
        return Err(Error::Verification {
            what: "ceremony record".into(),
            why: "the entry is not a ceremony record (kind 3)".into(),
        });
    };
    let root = certs::from_der(record.root_certificate, "root")?;
    let release = certs::from_der(record.release_certificate, "release")?;
    let log = certs::from_der(record.log_certificate, "log")?;
    if let Some(expected) = root_fingerprint {
        let got = certs::fingerprint(record.root_certificate);
        if &got != expected {
            return Err(Error::Verification {
                what: "root certificate".into(),
                why: format!(
                    "fingerprint {} is not the expected {}",
                    certs::fingerprint_text(record.root_certificate),
                    hex::encode(expected)
                ),
            });
        }
    }
    certs::verify_issued_by(&root, &root, "root (self-signed)")?;
    certs::verify_issued_by(&release, &root, "release")?;
    certs::verify_issued_by(&log, &root, "log")?;
    let root_key = ReleaseKey::new(certs::verifier_key(&root, "root")?, &Software);
    CoseSign1::decode(signed.cose_sign1)?
        .verify(&root_key, &Software)
        .map_err(|e| Error::Verification {
            what: "ceremony record".into(),
            why: format!("root signature: {e}"),
        })?;
    let ders = [
        record.root_certificate.to_vec(),
        record.release_certificate.to_vec(),
        record.log_certificate.to_vec(),
    ];
    Ok(VerifiedCeremony {
        ceremony: record.ceremony_id,
        performed_at: record.performed_at,
        threshold: record.threshold,
        custodians: record.custodians.iter().map(str::to_owned).collect(),
        token: record.token.as_str().into(),
        origin: record.origin.as_str().into(),
        software: (record.software.as_str().into(), record.software_digest),
        fingerprints: [
            certs::fingerprint_text(&ders[0]),
            certs::fingerprint_text(&ders[1]),
            certs::fingerprint_text(&ders[2]),
        ],
        certificates: ders,
    })
}

/// The inputs of a release statement other than the image (whose digest and size are measured).
#[derive(Debug, Clone)]
pub struct ReleaseInput {
    /// Release id, unique in the log.
    pub release_id: String,
    /// Product.
    pub product: String,
    /// Device family.
    pub family: String,
    /// Hardware revisions.
    pub hardware_revisions: Vec<String>,
    /// Version.
    pub version: Version,
    /// Anti-rollback epoch.
    pub security_epoch: u64,
    /// End of the support period.
    pub support_until: UnixTime,
    /// Advisory and CVE references.
    pub advisories: Vec<String>,
    /// Artifact file name (default: the image's file name).
    pub artifact: Option<String>,
}

/// A signed and logged release.
#[derive(Debug, Clone)]
pub struct SignedRelease {
    /// Index of the release entry.
    pub index: u64,
    /// Index of the session record logged with it.
    pub session_index: u64,
    /// The COSE_Sign1.
    pub cose_sign1: Vec<u8>,
    /// SHA-256 of the image.
    pub image_digest: Hash,
    /// Image length.
    pub image_size: u64,
    /// The new checkpoint.
    pub checkpoint: String,
}

/// A key statement that was signed and logged.
#[derive(Debug, Clone)]
pub struct SignedKeyStatement {
    /// Index of the statement entry.
    pub index: u64,
    /// The new key's URI (rotation).
    pub new_uri: Option<String>,
    /// The new certificate's fingerprint (rotation).
    pub new_fingerprint: Option<String>,
    /// The new checkpoint.
    pub checkpoint: String,
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

    /// Verifies the ceremony record (entry 0) and that it matches this appliance's state.
    pub fn verify_ceremony(&self, root_fingerprint: Option<&[u8; 32]>) -> Result<VerifiedCeremony> {
        let v = verify_ceremony_entry(&self.vault.entry(0)?, root_fingerprint)?;
        let mismatch = |why: String| Error::Verification {
            what: "ceremony record".into(),
            why,
        };
        if hex::encode(v.ceremony) != self.state.ceremony
            || v.custodians != self.state.custodians
            || v.threshold != self.state.threshold
        {
            return Err(mismatch(
                "it does not describe this appliance's ceremony (signer.json)".into(),
            ));
        }
        if v.fingerprints[0] != self.state.keys.root.fingerprint {
            return Err(mismatch(
                "its root certificate is not this appliance's".into(),
            ));
        }
        Ok(v)
    }

    fn expected<'a>(&'a self, ceremony: &'a CeremonyId, check: &'a [u8; 32]) -> Expected<'a> {
        Expected {
            ceremony,
            threshold: self.state.threshold,
            custodians: &self.state.custodians,
            check_value: check,
        }
    }

    /// Checks presented share files before passphrases are asked for (ceremony, duplicates,
    /// count). No secret is involved and the token is not touched.
    pub fn check_shares(&self, files: &[ShareFile]) -> Result<()> {
        let ceremony = self.state.ceremony_id()?;
        let check = self.state.pin_check()?;
        shares::check_presented(&self.expected(&ceremony, &check), files)
    }

    /// Opens a signing session: rebuilds the PIN from the shares (every check before any login),
    /// then logs in to the token.
    pub fn unlock(
        &self,
        module: &Module,
        shares: &[(ShareFile, Passphrase)],
        now: UnixTime,
    ) -> Result<Session<'_>> {
        // signer.json is not signed: it must describe the root-signed ceremony record.
        self.verify_ceremony(None)?;
        let ceremony = self.state.ceremony_id()?;
        let check = self.state.pin_check()?;
        let master = shares::rebuild(&self.expected(&ceremony, &check), shares)?;
        let token = module.login(&self.state.token, &master.user_pin(&ceremony))?;
        drop(master);
        let mut custodians: Vec<(u8, String)> = shares
            .iter()
            .map(|(f, _)| (f.index, f.custodian.clone()))
            .collect();
        custodians.sort();
        Ok(Session {
            appliance: self,
            token,
            ceremony,
            custodians: custodians.into_iter().map(|(_, c)| c).collect(),
            opened_at: now,
        })
    }

    /// Key statements in the log that revoke `key_id`: the index of the first, if any.
    fn revocation_of(&self, key_id: &Hash) -> Result<Option<u64>> {
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

/// An unlocked token and the custodians who unlocked it. Everything it signs is logged with its
/// session record.
#[derive(Debug)]
pub struct Session<'a> {
    appliance: &'a Appliance,
    token: Token,
    ceremony: CeremonyId,
    custodians: Vec<String>,
    opened_at: UnixTime,
}

impl Session<'_> {
    /// The appliance the session is on.
    pub fn appliance(&self) -> &Appliance {
        self.appliance
    }

    /// A COSE_Sign1 of `payload` by the current `role` key, verified before it is returned.
    pub(crate) fn sign_with(&self, role: KeyRole, payload: &[u8]) -> Result<Vec<u8>> {
        sign_cose(payload, &self.key(role)?)
    }

    /// Logs `entries` after the session record, under one new checkpoint.
    pub(crate) fn log_entries(
        &self,
        purpose: &str,
        entries: Vec<Vec<u8>>,
    ) -> Result<(u64, String)> {
        self.log(purpose, entries)
    }

    /// The custodians present, in share order.
    pub fn custodians(&self) -> &[String] {
        &self.custodians
    }

    /// The token (tests inspect it).
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The current `role` key, refused if a key statement revoked it.
    pub fn key(&self, role: KeyRole) -> Result<HsmKey<'_>> {
        let uri: Pkcs11Uri = self.appliance.state.key(role).uri.parse()?;
        let key = self.token.key_at(&uri)?;
        let certified = certs::verifier_key(&self.appliance.certificate(role)?, role.name())?;
        if certified.spki_der() != key.public_key().spki_der() {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: format!(
                    "its public key is not the one {} certifies",
                    self.appliance.state.key(role).certificate
                ),
            });
        }
        if let Some(index) = self.appliance.revocation_of(&key.key_id())? {
            return Err(Error::Revoked {
                role: role.name(),
                key_id: hex::encode(key.key_id()),
                index,
            });
        }
        Ok(key)
    }

    fn session_record(&self, purpose: &str) -> Result<Vec<u8>> {
        let names: Vec<&str> = self.custodians.iter().map(String::as_str).collect();
        Ok(SessionRecord {
            ceremony_id: self.ceremony,
            opened_at: self.opened_at,
            custodians: TextList::Slice(&names),
            purpose: check_name("session purpose", purpose)?,
        }
        .to_cbor())
    }

    /// Appends `entries` after this session's record, under a new log-key checkpoint; nothing
    /// is written if any signature fails. Returns the first index (the session record's).
    fn log(&self, purpose: &str, entries: Vec<Vec<u8>>) -> Result<(u64, String)> {
        self.log_with(&self.key(KeyRole::Log)?, purpose, entries)
    }

    fn log_with(
        &self,
        log: &HsmKey<'_>,
        purpose: &str,
        entries: Vec<Vec<u8>>,
    ) -> Result<(u64, String)> {
        let log_key = log_key_of(&self.appliance.state.origin, log)?;
        let mut batch = vec![self.session_record(purpose)?];
        batch.extend(entries);
        let (range, note) = self
            .appliance
            .vault
            .append_signed(&batch, &log_key, log)
            .map_err(|e| match e {
                // The HSM error inside the signing failure names the PKCS#11 call.
                cairn_vault::Error::Signing(_) => log.last_error().unwrap_or(Error::Vault(e)),
                e => Error::Vault(e),
            })?;
        Ok((range.start, note))
    }

    /// `cairn release sign`: hashes the image as it streams, builds the release statement, signs
    /// it as COSE_Sign1 with the release key, and logs it with the session record under a new
    /// checkpoint. The HSM failing anywhere leaves the log unchanged.
    pub fn sign_release(
        &self,
        image: &Path,
        input: &ReleaseInput,
        issued_at: UnixTime,
    ) -> Result<SignedRelease> {
        let release = self.key(KeyRole::Release)?;
        let log = self.key(KeyRole::Log)?;
        self.sign_release_with(&release, &log, image, input, issued_at)
    }

    /// [`Session::sign_release`] with keys the caller already looked up (the tests use it to
    /// make the token fail between the two signatures).
    pub fn sign_release_with(
        &self,
        release: &HsmKey<'_>,
        log: &HsmKey<'_>,
        image: &Path,
        input: &ReleaseInput,
        issued_at: UnixTime,
    ) -> Result<SignedRelease> {
        self.sign_measured(release, log, image, input, issued_at, || {
            let mut f = std::fs::File::open(image).map_err(io("opening image", image))?;
            let (digest, size) = stream_sha256(&mut f, image)?;
            Ok(crate::mcuboot::Measured {
                digest,
                size,
                mcuboot_hash: None,
            })
        })
    }

    /// Checks `input`, then has `measure` produce the image (its digest, size and, for an MCUboot
    /// image, its SHA256 TLV), then signs and logs the release statement. `image` names the
    /// artifact unless `input` does.
    pub(crate) fn sign_measured(
        &self,
        release: &HsmKey<'_>,
        log: &HsmKey<'_>,
        image: &Path,
        input: &ReleaseInput,
        issued_at: UnixTime,
        measure: impl FnOnce() -> Result<crate::mcuboot::Measured>,
    ) -> Result<SignedRelease> {
        let artifact_name = match &input.artifact {
            Some(a) => a.clone(),
            None => image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let hw: Vec<&str> = input
            .hardware_revisions
            .iter()
            .map(String::as_str)
            .collect();
        let advisories: Vec<&str> = input.advisories.iter().map(String::as_str).collect();
        if hw.is_empty() || hw.len() > 32 {
            return Err(Error::Invalid(format!(
                "{} hardware revisions: a release names 1 to 32",
                hw.len()
            )));
        }
        for h in &hw {
            check_id("hardware revision", h)?;
        }
        if advisories.len() > 64 {
            return Err(Error::Invalid(format!(
                "{} advisories: at most 64",
                advisories.len()
            )));
        }
        for a in &advisories {
            check_name("advisory", a)?;
        }
        if input.support_until.0 <= issued_at.0 {
            return Err(Error::Invalid(format!(
                "support period end {} is not after the release time {}",
                input.support_until.0, issued_at.0
            )));
        }
        let release_id = check_id("release id", &input.release_id)?;
        let product = check_name("product", &input.product)?;
        let family = check_name("family", &input.family)?;
        let artifact = check_id("artifact file name", &artifact_name)?;
        let crate::mcuboot::Measured {
            digest: image_digest,
            size: image_size,
            mcuboot_hash,
        } = measure()?;
        let statement = ReleaseStatement {
            release_id,
            product,
            family,
            hardware_revisions: TextList::Slice(&hw),
            version: input.version,
            security_epoch: SecurityEpoch(input.security_epoch),
            image_digest,
            image_size,
            support_until: input.support_until,
            advisories: TextList::Slice(&advisories),
            issued_at,
            artifact,
            mcuboot_hash,
        };
        let cose = sign_cose(&statement.to_cbor(), release)?;
        let entry = ReleaseEntry { cose_sign1: &cose }.to_cbor();
        let (first, checkpoint) = self.log_with(
            log,
            &format!("release sign {}", input.release_id),
            vec![entry],
        )?;
        Ok(SignedRelease {
            index: first + 1,
            session_index: first,
            cose_sign1: cose,
            image_digest,
            image_size,
            checkpoint,
        })
    }

    /// Rotates the release key: a new key (next generation) on the token, its certificate from
    /// the root, and a root-signed rotation statement in the log. The log key is pinned by the log
    /// itself and is not rotated here (a new log key means a new log).
    pub fn rotate_release_key(&self, reason: &str, now: UnixTime) -> Result<SignedKeyStatement> {
        let old_state = self.appliance.state.keys.release.clone();
        let old = self.key(KeyRole::Release)?;
        let root = self.key(KeyRole::Root)?;
        let generation = old_state
            .generation
            .checked_add(1)
            .ok_or_else(|| Error::Invalid("the release key was rotated 255 times".into()))?;
        let reason_name = check_name("reason", reason)?;
        let root_cert = self.appliance.certificate(KeyRole::Root)?;
        let new = self.token.generate_key(KeyRole::Release, generation)?;
        let cert = certs::key_certificate(
            &root,
            &root_cert,
            &new,
            KeyRole::Release,
            &self.appliance.state.organization,
            now,
        )?;
        let der = certs::to_der(&cert)?;
        let statement = KeyStatement {
            ceremony_id: self.ceremony,
            action: KeyAction::Rotate,
            role: KeyRole::Release,
            key_id: old.key_id(),
            new_certificate: &der,
            reason: reason_name,
            issued_at: now,
        };
        let cose = sign_cose(&statement.to_cbor(), &root)?;
        let entry = SignedEntry {
            kind: Kind::KEY,
            cose_sign1: &cose,
        }
        .to_cbor();
        let (first, checkpoint) = match self.log("key rotate release", vec![entry]) {
            Ok(done) => done,
            Err(e) => {
                // Not logged, so not a key: remove it, so a retry can generate it again.
                let _ = self.token.destroy(new.private_handle());
                return Err(e);
            }
        };
        let file = format!("certs/release-{generation}.pem");
        write_new(
            &self.appliance.home.join(&file),
            certs::to_pem(&cert)?.as_bytes(),
        )?;
        let mut state = self.appliance.state.clone();
        state.keys.release = KeyState {
            uri: new.uri().into(),
            generation,
            certificate: file,
            fingerprint: certs::fingerprint_text(&der),
        };
        write_state(&self.appliance.home, &state)?;
        Ok(SignedKeyStatement {
            index: first + 1,
            new_uri: Some(new.uri().into()),
            new_fingerprint: Some(certs::fingerprint_text(&der)),
            checkpoint,
        })
    }

    /// Revokes the current `role` key (release or log) with a root-signed statement; the
    /// appliance refuses to sign with it from then on.
    pub fn revoke(&self, role: KeyRole, reason: &str, now: UnixTime) -> Result<SignedKeyStatement> {
        if role == KeyRole::Root {
            return Err(Error::Invalid(
                "the root key is not revoked by a statement it signs itself; retire it with a new ceremony".into(),
            ));
        }
        let key = self.key(role)?;
        let root = self.key(KeyRole::Root)?;
        let statement = KeyStatement {
            ceremony_id: self.ceremony,
            action: KeyAction::Revoke,
            role,
            key_id: key.key_id(),
            new_certificate: &[],
            reason: check_name("reason", reason)?,
            issued_at: now,
        };
        let cose = sign_cose(&statement.to_cbor(), &root)?;
        let entry = SignedEntry {
            kind: Kind::KEY,
            cose_sign1: &cose,
        }
        .to_cbor();
        // Revoking the log key: this is the last checkpoint it signs.
        let (first, checkpoint) = self.log(&format!("key revoke {}", role.name()), vec![entry])?;
        Ok(SignedKeyStatement {
            index: first + 1,
            new_uri: None,
            new_fingerprint: None,
            checkpoint,
        })
    }
}

/// Verifies a release entry: its COSE_Sign1 by the key `release_cert` certifies, the certificate
/// issued by `root_cert`, and (if given) the image's digest and size. Returns the statement's
/// release id and the image digest.
pub fn verify_release_entry(
    entry: &[u8],
    root_cert: &x509_cert::Certificate,
    release_cert: &x509_cert::Certificate,
    image: Option<&Path>,
) -> Result<(String, Hash)> {
    certs::verify_issued_by(release_cert, root_cert, "release")?;
    let release = ReleaseEntry::decode(entry)?;
    let key = ReleaseKey::new(certs::verifier_key(release_cert, "release")?, &Software);
    let cose = CoseSign1::decode(release.cose_sign1)?;
    cose.verify(&key, &Software)
        .map_err(|e| Error::Verification {
            what: "release statement".into(),
            why: e.to_string(),
        })?;
    let statement = ReleaseStatement::decode(cose.payload)?;
    if let (Some(path), Some(_)) = (image, statement.mcuboot_hash) {
        crate::mcuboot::check_file(path, &statement, &key)?;
    } else if let Some(path) = image {
        let mut f = std::fs::File::open(path).map_err(io("opening image", path))?;
        let (digest, size) = stream_sha256(&mut f, path)?;
        if digest != statement.image_digest || size != statement.image_size {
            return Err(Error::Verification {
                what: format!("image {}", path.display()),
                why: format!(
                    "SHA-256 {} ({size} bytes) is not the signed {} ({} bytes)",
                    hex::encode(digest),
                    hex::encode(statement.image_digest),
                    statement.image_size
                ),
            });
        }
    }
    Ok((statement.release_id.as_str().into(), statement.image_digest))
}

/// Reads up to `limit` bytes of `r` as a passphrase line (for `--passphrase-fd`).
pub fn read_passphrase_line(r: &mut impl std::io::BufRead) -> Result<Option<Passphrase>> {
    // Room for the whole line up front: a reallocation would leave a copy behind.
    let mut line = zeroize::Zeroizing::new(String::with_capacity(4097));
    let n = r
        .by_ref()
        .take(4096)
        .read_line(&mut line)
        .map_err(io("reading a passphrase from", "the passphrase descriptor"))?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Passphrase::new(std::mem::take(&mut *line))))
}
