//! The signer's one error type. Variants say what the caller can do about it; none carries a PIN,
//! a share or a passphrase (their `Display` is checked by the tests for exactly that).

use std::path::PathBuf;

/// Everything that can go wrong in the signer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PKCS#11 call failed; `call` is the function, e.g. `C_Sign`.
    #[error("PKCS#11 {call} failed: {source}")]
    Pkcs11 {
        /// The PKCS#11 function that failed.
        call: &'static str,
        /// What the module returned.
        #[source]
        source: cryptoki::error::Error,
    },
    /// The PKCS#11 module could not be loaded.
    #[error("cannot load PKCS#11 module {path}: {source}")]
    Module {
        /// Module path.
        path: PathBuf,
        /// Why.
        #[source]
        source: cryptoki::error::Error,
    },
    /// No token with this label is present.
    #[error(
        "no PKCS#11 token labelled {0:?} (is the HSM connected, and is this the right module?)"
    )]
    TokenNotFound(String),
    /// A token with this label already exists; a ceremony never reuses one.
    #[error(
        "a PKCS#11 token labelled {0:?} is already initialized; a ceremony needs a fresh token"
    )]
    TokenExists(String),
    /// Every slot already holds an initialized token.
    #[error("no free PKCS#11 slot: every token is initialized")]
    NoFreeSlot,
    /// A key the signer needs is not on the token.
    #[error("key {uri} is not on the token")]
    KeyNotFound {
        /// Its `pkcs11:` URI.
        uri: String,
    },
    /// `release sign` of a release id the log already holds (an earlier session signed it), and
    /// the image is not the logged one, or its staged MCUboot image is gone: `why` says which and
    /// what to do. Nothing was signed.
    #[error("release {release} is already in the log at index {index}, {why}")]
    ReleaseLogged {
        /// The release id.
        release: String,
        /// Index of its release entry.
        index: u64,
        /// What differs, and what to do.
        why: String,
    },
    /// A key on the token is not what cairn generates (type, curve, or protection attributes).
    #[error("key {uri} is unusable: {why}")]
    KeyUnusable {
        /// Its `pkcs11:` URI.
        uri: String,
        /// What is wrong with it.
        why: String,
    },
    /// The module made (or holds) a key weaker than cairn requires: read back after generation,
    /// and before every use, `attribute` is not what cairn asked for. A key generated so is
    /// destroyed; nothing is signed with it.
    #[error(
        "the PKCS#11 module weakened key {uri}: it reports {attribute} {reported}, cairn requires {required}"
    )]
    KeyWeakened {
        /// Its `pkcs11:` URI.
        uri: String,
        /// The PKCS#11 attribute, e.g. `CKA_SENSITIVE`.
        attribute: &'static str,
        /// What the module reported (`true`, `false`, `not reported`).
        reported: &'static str,
        /// What cairn requires.
        required: &'static str,
    },
    /// A ceremony failed after it had changed a token: the token is left initialised (or, if
    /// adopted, with its user PIN rotated) under PINs nobody holds. `reset` says how to reset it.
    #[error(
        "the ceremony failed after it {changed} token {token:?}; that token is left behind under a PIN nobody holds. To reset it, {reset}. Cause: {source}"
    )]
    CeremonyFailed {
        /// The token's label.
        token: String,
        /// What the ceremony had done to it: `initialised` or `adopted and rotated the user PIN of`.
        changed: &'static str,
        /// How to reset it, for this module.
        reset: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// An earlier `ceremony init` in this home was interrupted (killed, or the machine lost
    /// power): its journal is there and `signer.json` is not (docs/ceremony.md, "An interrupted
    /// ceremony"). Nothing it made can be used: the token's secret died with it.
    #[error(
        "signer home {home}: an earlier ceremony init (ceremony {ceremony}) was interrupted and \
         left {left}. Nothing it made can be used (the token's secret was only in the \
         interrupted process). To start again: {todo}; then run ceremony init again"
    )]
    CeremonyInterrupted {
        /// The home.
        home: PathBuf,
        /// The interrupted ceremony's id (hex).
        ceremony: String,
        /// What it left: the token, the log's record, share files, certificates.
        left: String,
        /// What the operator does, in order.
        todo: String,
    },
    /// A `pkcs11:` URI that does not parse (RFC 7512), or asks for something cairn refuses.
    #[error("bad pkcs11 URI: {0}")]
    Uri(String),
    /// The HSM returned a signature that does not verify with the key's public key.
    #[error("the HSM's signature with {uri} does not verify")]
    BadSignature {
        /// The key.
        uri: String,
    },
    /// A ceremony or session parameter is out of range (threshold, custodian names, passphrases).
    #[error("{0}")]
    Invalid(String),
    /// A share file is malformed; `path` says which.
    #[error("share file {path}: {why}")]
    ShareFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A share belongs to another ceremony.
    #[error(
        "share file {path} (custodian {custodian}) is from ceremony {found}, this appliance was set up by ceremony {expected}"
    )]
    ForeignShare {
        /// The file.
        path: PathBuf,
        /// The custodian it names.
        custodian: String,
        /// This appliance's ceremony id (hex).
        expected: String,
        /// The share's ceremony id (hex).
        found: String,
    },
    /// The same share (same custodian) was presented twice.
    #[error("share of custodian {custodian} given twice ({first} and {second})")]
    DuplicateShare {
        /// The custodian.
        custodian: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// Fewer shares than the threshold.
    #[error("{got} share(s) presented, the token needs {needed} custodians")]
    NotEnoughShares {
        /// Presented.
        got: usize,
        /// The ceremony's threshold.
        needed: u8,
    },
    /// The passphrase does not open this custodian's share (or the file was altered).
    #[error(
        "the passphrase given for custodian {custodian} does not open {path} (wrong passphrase, or the file was altered)"
    )]
    WrongPassphrase {
        /// The custodian.
        custodian: String,
        /// The share file.
        path: PathBuf,
    },
    /// The shares opened but do not rebuild this appliance's PIN; the token was not touched.
    #[error(
        "the shares do not rebuild this ceremony's PIN (a share was replaced); no login was attempted"
    )]
    SharesInconsistent,
    /// The appliance's state directory is missing, incomplete or already used.
    #[error("signer home {path}: {why}")]
    Home {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A certificate could not be built, parsed or verified.
    #[error("certificate {what}: {why}")]
    Certificate {
        /// Which certificate.
        what: String,
        /// What went wrong.
        why: String,
    },
    /// A signed statement (ceremony record, release, key statement) does not verify.
    #[error("{what} does not verify: {why}")]
    Verification {
        /// What was checked.
        what: String,
        /// Why it failed.
        why: String,
    },
    /// The key is revoked by a key statement in the log.
    #[error("the {role} key {key_id} was revoked at log index {index}; it signs nothing more")]
    Revoked {
        /// Its role.
        role: &'static str,
        /// SHA-256 of its SPKI (hex).
        key_id: String,
        /// The revocation entry.
        index: u64,
    },
    /// The device registry refused an import or failed; the text names the row or item.
    #[error("device registry: {0}")]
    Registry(String),
    /// An earlier write to the device registry through this handle failed, so it refuses every
    /// write until the registry is reopened (after a failed `fsync` the kernel may have dropped
    /// what it could not write: reopening recovers from what is durable; docs/log.md, "Faults").
    #[error(
        "device registry {path}: an earlier write failed ({cause}); it refuses writes until it is \
         reopened (run the command again)"
    )]
    RegistryPoisoned {
        /// The registry's directory.
        path: PathBuf,
        /// The failed write's error.
        cause: String,
    },
    /// Eligibility or a rollout plan was refused before anything was signed.
    #[error("rollout plan refused: {0}")]
    Plan(String),
    /// The plan file is invalid: the field and why (`rollout::SpecError`); nothing was signed.
    #[error("rollout plan refused: {0}")]
    PlanFile(#[from] crate::rollout::SpecError),
    /// The log refused or failed (see the vault error).
    #[error(transparent)]
    Vault(#[from] cairn_vault::Error),
    /// A wire-format error from `cairn-verifier`.
    #[error(transparent)]
    Format(#[from] cairn_verifier::Error),
    /// Reading or writing a file.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An image given to sign or verify is refused: an MCUboot image that is malformed, or that
    /// disagrees with the release (version, security counter, key, hash, signature).
    #[error("image {path}: {cause}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What the MCUboot check found.
        cause: cairn_verifier::Error,
    },
    /// The MCUboot layout options (header size, slot size, alignment, padding) cannot hold the image.
    #[error("MCUboot layout: {0}")]
    McubootLayout(#[from] cairn_verifier::mcuboot::write::LayoutError),
    /// The witness policy (`witnesses.toml` in the signer's home) cannot be used.
    #[error("witness policy {path}: {why}")]
    WitnessPolicy {
        /// The policy file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A checkpoint brought back from a witness is refused: not over a checkpoint this log
    /// signed, or a pinned witness's cosignature on it does not verify. Nothing was stored.
    #[error("cosigned checkpoint from {from}: {why}")]
    Cosignature {
        /// Where it came from (a file, a witness's name).
        from: String,
        /// Why it is refused.
        why: String,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// The signer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}

pub(crate) fn pkcs11(call: &'static str) -> impl FnOnce(cryptoki::error::Error) -> Error {
    move |source| Error::Pkcs11 { call, source }
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Random(e.to_string()))
}
