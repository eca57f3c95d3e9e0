//! The key ceremony (docs/ceremony.md, "Ceremony init"): a new token, its keys and
//! certificates, the custodians' sealed shares, and the root-signed ceremony record as entry 0 of
//! the log; and the verification of that record, on its own or against an appliance's state.

use std::path::PathBuf;

use cairn_vault::Vault;
use cairn_verifier::cose::{CoseSign1, ReleaseKey};
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::{CeremonyId, CeremonyRecord, KeyRole, SignedEntry, TokenSetup};
use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::{Hash, TextList, UnixTime};

use crate::appliance::{
    Appliance, KeyState, Keys, STATE_FILE, STATE_FORMAT, State, check_name, log_key_of, sign_cose,
    stream_sha256, write_new, write_state,
};
use crate::certs;
use crate::error::{Error, Result, io, random};
use crate::hsm::{HsmKey, Module, Token};
use crate::interrupted;
use crate::shares::{self, KdfParams, Master, Passphrase, ShareFile};

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

/// Where the ceremony's token comes from.
#[derive(Debug)]
pub enum TokenSource {
    /// A fresh token that the ceremony initialises (`C_InitToken`) with a security officer PIN
    /// and a user PIN both derived from its secret.
    Fresh,
    /// A token its security officer initialised, for modules and HSMs that forbid `C_InitToken`
    /// from an application (docs/ceremony.md, "Ceremony init on an existing token"): the ceremony
    /// logs in with the user PIN the security officer handed over and replaces it, once, by
    /// `C_SetPIN`, with the user PIN derived from its secret. cairn never holds an SO PIN.
    Existing {
        /// The initial user PIN the security officer set (zeroized on drop, never printed).
        initial_pin: cryptoki::types::AuthPin,
    },
}

/// What `ceremony init` needs.
#[derive(Debug)]
pub struct CeremonyOptions {
    /// The appliance home (created; must not exist or be empty).
    pub home: PathBuf,
    /// Token label (1-32 bytes).
    pub token: String,
    /// A fresh token, or one the security officer initialised.
    pub source: TokenSource,
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
    /// Whether the token was initialised, or adopted with its user PIN rotated (as the record
    /// says).
    pub token_setup: TokenSetup,
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
    // 1. The home first: a finished or an interrupted ceremony is named before anything it left
    // (its share files above all) can make the parameters look wrong. Then the parameters.
    let home = &opts.home;
    if home.join(STATE_FILE).exists() {
        return Err(Error::Home {
            path: home.clone(),
            why: "already holds a ceremony (signer.json exists)".into(),
        });
    }
    // A journal without signer.json: an earlier run was killed part way (interrupted.rs).
    interrupted::refuse_if_interrupted(module, home)?;
    let n = validate(opts)?;
    std::fs::create_dir_all(home.join("certs")).map_err(io("creating", home.join("certs")))?;
    let (software, software_digest) = software()?;
    let mut ceremony: CeremonyId = [0; 16];
    random(&mut ceremony)?;
    interrupted::begin(
        home,
        &interrupted::Journal {
            ceremony: hex::encode(ceremony),
            token: opts.token.clone(),
            adopted: matches!(opts.source, TokenSource::Existing { .. }),
            shares: opts
                .custodians
                .iter()
                .map(|c| c.share_path.clone())
                .collect(),
        },
    )?;
    let vault = Vault::create(home.join("log"), &opts.origin)?;

    // 2. Secret and token.
    let master = Master::generate()?;
    let (token, setup) = match &opts.source {
        TokenSource::Fresh => {
            module
                .init_token(
                    &opts.token,
                    &master.so_pin(&ceremony),
                    &master.user_pin(&ceremony),
                )
                .map_err(|e| match e {
                    // Refused before C_InitToken: nothing was changed.
                    Error::TokenExists(_) | Error::Invalid(_) | Error::NoFreeSlot => e,
                    // C_InitToken may have run (C_InitPIN failed after it).
                    e if module.find_token(&opts.token).is_ok() => {
                        left_behind(module, opts, TokenSetup::Initialised, e)
                    }
                    e => e,
                })?;
            let token = module
                .login(&opts.token, &master.user_pin(&ceremony))
                .map_err(|e| left_behind(module, opts, TokenSetup::Initialised, e))?;
            (token, TokenSetup::Initialised)
        }
        TokenSource::Existing { initial_pin } => {
            let token =
                module.adopt_token(&opts.token, initial_pin, &master.user_pin(&ceremony))?;
            (token, TokenSetup::AdoptedPinRotated)
        }
    };
    // From here on the token is changed: a failure names it and says how to reset it.
    interrupted::reached("token");
    let started = Started {
        vault: &vault,
        ceremony,
        master: &master,
        n,
        software: (software, software_digest),
    };
    keys_record_shares(opts, &token, setup, &started)
        .map_err(|e| left_behind(module, opts, setup, e))
}

/// The error of a ceremony that failed after it changed the token: names the token and how to
/// reset it on this module.
fn left_behind(module: &Module, opts: &CeremonyOptions, setup: TokenSetup, source: Error) -> Error {
    let adopted = setup == TokenSetup::AdoptedPinRotated;
    let reset = match module.profile(Some(&opts.token)) {
        Ok(profile) => profile.reset_hint(&opts.token, adopted),
        Err(_) => format!(
            "re-initialise token {:?} with the module vendor's tool",
            opts.token
        ),
    };
    Error::CeremonyFailed {
        token: opts.token.clone(),
        changed: if adopted {
            "adopted and rotated the user PIN of"
        } else {
            "initialised"
        },
        reset,
        source: Box::new(source),
    }
}

/// What [`init`] has before it makes the keys.
struct Started<'a> {
    vault: &'a Vault,
    ceremony: CeremonyId,
    master: &'a Master,
    n: u8,
    software: (String, Hash),
}

/// Steps 3 to 5 of [`init`], on the token the ceremony has just initialised or adopted.
fn keys_record_shares(
    opts: &CeremonyOptions,
    token: &Token,
    setup: TokenSetup,
    started: &Started<'_>,
) -> Result<CeremonyReport> {
    let Started {
        vault,
        ceremony,
        master,
        n,
        software: (software, software_digest),
    } = started;
    let (ceremony, n, software_digest) = (*ceremony, *n, *software_digest);
    let home = &opts.home;
    // 3. Keys and certificates.
    let root = token.generate_key(KeyRole::Root, 0)?;
    let release = token.generate_key(KeyRole::Release, 0)?;
    let log = token.generate_key(KeyRole::Log, 0)?;
    interrupted::reached("keys");
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
    interrupted::reached("certificates");

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
        software: check_name("software", software)?,
        software_digest,
        token_setup: setup,
    };
    let cose = sign_cose(&record.to_cbor(), &root)?;
    let entry = SignedEntry {
        kind: Kind::CEREMONY,
        cose_sign1: &cose,
    }
    .to_cbor();
    let log_key = log_key_of(&opts.origin, &log)?;
    let (_, checkpoint) = vault.append_signed(&[entry], &log_key, &log)?;
    interrupted::reached("record");

    // 5. Shares, certificates, state.
    let share_files = write_shares(opts, &ceremony, master, n)?;
    interrupted::reached("shares");
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
    interrupted::reached("state");
    interrupted::finish(home)?;
    Ok(CeremonyReport {
        ceremony,
        checkpoint,
        state,
        share_files,
        token_setup: setup,
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
    /// Whether the ceremony initialised the token or adopted it and rotated its user PIN.
    pub token_setup: TokenSetup,
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
        token_setup: record.token_setup,
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

impl Appliance {
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
}
