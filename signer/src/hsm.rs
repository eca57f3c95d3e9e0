//! The PKCS#11 boundary: loading the module, initializing and opening a token, generating the
//! ceremony's keys inside it, and signing with them (docs/ceremony.md, "Keys on the token").
//!
//! Keys are EC P-256 pairs generated on the token with `CKA_SENSITIVE` and without
//! `CKA_EXTRACTABLE`; a private key never leaves it. Objects are labelled `cairn-<role>-<gen>` and
//! carry `CKA_ID = [role, gen]` (role 0 root, 1 release, 2 log; `gen` counts rotations from 0), and
//! are addressed by RFC 7512 `pkcs11:` URIs built from both.
//!
//! Signing hashes the message with SHA-256 on the host and asks the token for a raw `CKM_ECDSA`
//! signature of the digest: large inputs stream through the host's SHA-256 (SHA-NI) and only 32
//! bytes cross the PKCS#11 boundary.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

use cairn_verifier::custody::KeyRole;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier};

use crate::error::{Error, Result, pkcs11};
use crate::uri::Pkcs11Uri;

/// Where SoftHSM2 installs its module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Environment variable naming the PKCS#11 module (default [`SOFTHSM_MODULE`]).
pub const MODULE_ENV: &str = "CAIRN_PKCS11_MODULE";

/// Writes a SoftHSM2 configuration whose token directory is `dir/tokens` (created) and returns
/// its path, for `SOFTHSM2_CONF`: each test, benchmark and demonstration gets its own tokens.
pub fn softhsm_config(dir: &Path) -> std::io::Result<PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )?;
    Ok(conf)
}

/// DER of the P-256 curve OID (`prime256v1`, 1.2.840.10045.3.1.7) for `CKA_EC_PARAMS`.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A loaded and initialized PKCS#11 module.
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// Loads the module at `path` and initializes it (OS locking).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let ctx = Pkcs11::new(&path).map_err(|source| Error::Module {
            path: path.clone(),
            source,
        })?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(pkcs11("C_Initialize"))?;
        Ok(Self { ctx, path })
    }

    /// Loads the module named by `CAIRN_PKCS11_MODULE`, or SoftHSM2's.
    pub fn from_env() -> Result<Self> {
        Self::load(
            std::env::var_os(MODULE_ENV)
                .map_or_else(|| PathBuf::from(SOFTHSM_MODULE), PathBuf::from),
        )
    }

    /// The module's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slot holding the initialized token labelled `label`.
    pub fn find_token(&self, label: &str) -> Result<Slot> {
        for slot in self
            .ctx
            .get_slots_with_initialized_token()
            .map_err(pkcs11("C_GetSlotList"))?
        {
            let info = self
                .ctx
                .get_token_info(slot)
                .map_err(pkcs11("C_GetTokenInfo"))?;
            if info.label().trim_end() == label {
                return Ok(slot);
            }
        }
        Err(Error::TokenNotFound(label.into()))
    }

    /// Whether the token has seen a failed user login since the last good one
    /// (`CKF_USER_PIN_COUNT_LOW`), or is locked (`CKF_USER_PIN_LOCKED`).
    pub fn failed_logins(&self, label: &str) -> Result<bool> {
        let info = self
            .ctx
            .get_token_info(self.find_token(label)?)
            .map_err(pkcs11("C_GetTokenInfo"))?;
        Ok(info.user_pin_count_low() || info.user_pin_final_try() || info.user_pin_locked())
    }

    /// Initializes a fresh token labelled `label` with the security officer PIN `so_pin`, sets
    /// the user PIN to `user_pin`, and returns its slot. Refuses if a token with that label exists.
    pub fn init_token(&self, label: &str, so_pin: &AuthPin, user_pin: &AuthPin) -> Result<Slot> {
        if label.is_empty() || label.len() > 32 {
            return Err(Error::Invalid(format!(
                "token label {label:?} must be 1 to 32 bytes"
            )));
        }
        match self.find_token(label) {
            Ok(_) => return Err(Error::TokenExists(label.into())),
            Err(Error::TokenNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let all = self
            .ctx
            .get_slots_with_token()
            .map_err(pkcs11("C_GetSlotList"))?;
        let initialized = self
            .ctx
            .get_slots_with_initialized_token()
            .map_err(pkcs11("C_GetSlotList"))?;
        let free = all
            .into_iter()
            .find(|s| !initialized.contains(s))
            .ok_or(Error::NoFreeSlot)?;
        self.ctx
            .init_token(free, so_pin, label)
            .map_err(pkcs11("C_InitToken"))?;
        // SoftHSM moves an initialized token to a new slot id: find it again by label.
        let slot = self.find_token(label)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(pkcs11("C_OpenSession"))?;
        session
            .login(UserType::So, Some(so_pin))
            .map_err(pkcs11("C_Login"))?;
        session.init_pin(user_pin).map_err(pkcs11("C_InitPIN"))?;
        session.logout().map_err(pkcs11("C_Logout"))?;
        Ok(slot)
    }

    /// Opens a read-write session on the token labelled `label` and logs the user in.
    pub fn login(&self, label: &str, pin: &AuthPin) -> Result<Token> {
        let slot = self.find_token(label)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(pkcs11("C_OpenSession"))?;
        session
            .login(UserType::User, Some(pin))
            .map_err(pkcs11("C_Login"))?;
        Ok(Token {
            session,
            label: label.into(),
        })
    }
}

/// A logged-in session on a cairn token.
pub struct Token {
    session: Session,
    label: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// How a private key is protected, as the token reports it.
#[expect(
    clippy::struct_excessive_bools,
    reason = "the four PKCS#11 attributes, as the token reports them"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
}

impl Token {
    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The URI of key `role`/`generation` on this token.
    pub fn uri(&self, role: KeyRole, generation: u8) -> Pkcs11Uri {
        Pkcs11Uri::for_key(&self.label, role, generation)
    }

    /// Generates key `role`/`generation` on the token: EC P-256, sensitive, never extractable,
    /// private key usable for signing only.
    pub fn generate_key(&self, role: KeyRole, generation: u8) -> Result<HsmKey<'_>> {
        let uri = self.uri(role, generation);
        if self.find_private(&uri)?.is_some() {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: "a key with this label and id already exists".into(),
            });
        }
        let label = uri.object.clone().into_bytes();
        let id = uri.id.clone();
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Label(label.clone()),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Unwrap(false),
            Attribute::Label(label),
            Attribute::Id(id),
        ];
        self.session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(pkcs11("C_GenerateKeyPair"))?;
        self.key(role, generation)
    }

    /// Key `role`/`generation`, checked to be a P-256 signing key that cannot leave the token.
    pub fn key(&self, role: KeyRole, generation: u8) -> Result<HsmKey<'_>> {
        self.key_at(&self.uri(role, generation))
    }

    /// The key a `pkcs11:` URI names (its `object` and `id` attributes), checked as [`Token::key`].
    pub fn key_at(&self, uri: &Pkcs11Uri) -> Result<HsmKey<'_>> {
        if uri.token.as_deref().is_some_and(|t| t != self.label) {
            return Err(Error::Uri(format!(
                "{uri} names token {:?}, this session is on {:?}",
                uri.token.as_deref().unwrap_or_default(),
                self.label
            )));
        }
        let Some(private) = self.find_private(uri)? else {
            return Err(Error::KeyNotFound {
                uri: uri.to_string(),
            });
        };
        let protection = self.protection_of(private)?;
        if !protection.sensitive || protection.extractable || !protection.never_extractable {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: format!("its private key could leave the token ({protection:?})"),
            });
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(uri.object.clone().into_bytes()),
        ];
        if !uri.id.is_empty() {
            template.push(Attribute::Id(uri.id.clone()));
        }
        let publics = self
            .session
            .find_objects(&template)
            .map_err(pkcs11("C_FindObjects"))?;
        let [public_handle] = publics.as_slice() else {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: format!("{} public key objects match, expected 1", publics.len()),
            });
        };
        let attrs = self
            .session
            .get_attributes(
                *public_handle,
                &[AttributeType::EcParams, AttributeType::EcPoint],
            )
            .map_err(pkcs11("C_GetAttributeValue"))?;
        let mut params = None;
        let mut point = None;
        for a in attrs {
            match a {
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        if params.as_deref() != Some(&P256_PARAMS[..]) {
            return Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: "not a P-256 key".into(),
            });
        }
        let point = point.ok_or_else(|| Error::KeyUnusable {
            uri: uri.to_string(),
            why: "the token does not report CKA_EC_POINT".into(),
        })?;
        let public = parse_ec_point(&point).ok_or_else(|| Error::KeyUnusable {
            uri: uri.to_string(),
            why: "CKA_EC_POINT is not an uncompressed P-256 point".into(),
        })?;
        Ok(HsmKey {
            token: self,
            private,
            public,
            uri: uri.to_string(),
            failure: Cell::new(None),
        })
    }

    fn find_private(&self, uri: &Pkcs11Uri) -> Result<Option<ObjectHandle>> {
        let mut template = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Label(uri.object.clone().into_bytes()),
        ];
        if !uri.id.is_empty() {
            template.push(Attribute::Id(uri.id.clone()));
        }
        let found = self
            .session
            .find_objects(&template)
            .map_err(pkcs11("C_FindObjects"))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(Error::KeyUnusable {
                uri: uri.to_string(),
                why: format!("{} private keys match, expected 1", many.len()),
            }),
        }
    }

    /// The protection attributes of a private key object.
    pub fn protection_of(&self, private: ObjectHandle) -> Result<Protection> {
        let attrs = self
            .session
            .get_attributes(
                private,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                ],
            )
            .map_err(pkcs11("C_GetAttributeValue"))?;
        let mut p = Protection {
            sensitive: false,
            extractable: true,
            always_sensitive: false,
            never_extractable: false,
        };
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => p.sensitive = v,
                Attribute::Extractable(v) => p.extractable = v,
                Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                Attribute::NeverExtractable(v) => p.never_extractable = v,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Asks the token for a private key's `CKA_VALUE`: `Ok(None)` when the token withholds it, as
    /// it must for every cairn key (the tests assert it).
    pub fn private_value(&self, private: ObjectHandle) -> Result<Option<Vec<u8>>> {
        match self
            .session
            .get_attributes(private, &[AttributeType::Value])
        {
            Ok(attrs) => Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })),
            // CKR_ATTRIBUTE_SENSITIVE: the token refuses, which is the expected answer.
            Err(cryptoki::error::Error::Pkcs11(RvError::AttributeSensitive, _)) => Ok(None),
            Err(e) => Err(pkcs11("C_GetAttributeValue")(e)),
        }
    }

    /// Destroys an object. Tests use it to make the token fail mid-session.
    pub fn destroy(&self, object: ObjectHandle) -> Result<()> {
        self.session
            .destroy_object(object)
            .map_err(pkcs11("C_DestroyObject"))
    }

    /// The raw PKCS#11 session, for the benchmark's baseline (a bare `C_Sign` loop).
    pub fn raw_session(&self) -> &Session {
        &self.session
    }

    /// Fills `buf` from the token's random number generator.
    pub fn random(&self, buf: &mut [u8]) -> Result<()> {
        self.session
            .generate_random_slice(buf)
            .map_err(pkcs11("C_GenerateRandom"))
    }

    fn sign_digest(&self, key: ObjectHandle, digest: &[u8; 32]) -> Result<Signature> {
        let raw = self
            .session
            .sign(&Mechanism::Ecdsa, key, digest)
            .map_err(pkcs11("C_Sign"))?;
        Signature::from_slice(&raw).map_err(|_| Error::Pkcs11 {
            call: "C_Sign",
            source: cryptoki::error::Error::InvalidValue,
        })
    }
}

/// `CKA_EC_POINT`: an uncompressed SEC1 point, DER-wrapped in an OCTET STRING (PKCS#11 2.40
/// §2.3.3) or, by some modules, bare.
fn parse_ec_point(value: &[u8]) -> Option<VerifyingKey> {
    let sec1 = match value {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        _ => value,
    };
    if sec1.len() != 65 {
        return None;
    }
    VerifyingKey::from_sec1_bytes(sec1).ok()
}

/// A private key on the token, with its public key: a `signature::Signer` for ECDSA P-256 (raw
/// `r || s` for COSE and notes, DER for X.509), and an `x509-cert` builder signer.
pub struct HsmKey<'t> {
    token: &'t Token,
    private: ObjectHandle,
    public: VerifyingKey,
    uri: String,
    /// The PKCS#11 failure of the last signature, kept because `signature::Error` cannot carry it
    /// in a form the caller can match on.
    failure: Cell<Option<(RvError, Function)>>,
}

impl fmt::Debug for HsmKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmKey")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl HsmKey<'_> {
    /// The key's `pkcs11:` URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The public key.
    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// The public key as cairn's verifier takes it.
    pub fn public_key(&self) -> cairn_verifier::crypto::PublicKey {
        let point = self.public.to_sec1_point(false);
        // An uncompressed point of a valid key: `from_sec1_uncompressed` cannot refuse it.
        cairn_verifier::crypto::PublicKey::from_sec1_uncompressed(point.as_bytes())
            .unwrap_or_else(|| unreachable_key(&self.uri))
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.public_key().spki_der().to_vec()
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo: the COSE `kid` and the key id of key statements.
    pub fn key_id(&self) -> [u8; 32] {
        Sha256::digest(self.spki_der()).into()
    }

    /// The private key object (tests inspect and destroy it).
    pub fn private_handle(&self) -> ObjectHandle {
        self.private
    }

    /// Signs a SHA-256 digest on the token.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<Signature> {
        let result = self.token.sign_digest(self.private, digest);
        if let Err(Error::Pkcs11 {
            source: cryptoki::error::Error::Pkcs11(rv, f),
            ..
        }) = &result
        {
            self.failure.set(Some((*rv, *f)));
        }
        result
    }

    /// The PKCS#11 error of the last failed signature through the `signature::Signer` traits.
    pub fn last_error(&self) -> Option<Error> {
        self.failure.get().map(|(rv, f)| Error::Pkcs11 {
            call: "C_Sign",
            source: cryptoki::error::Error::Pkcs11(rv, f),
        })
    }
}

impl signature::Signer<Signature> for HsmKey<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, signature::Error> {
        let digest: [u8; 32] = Sha256::digest(msg).into();
        self.sign_digest(&digest)
            .map_err(signature::Error::from_source)
    }
}

impl signature::Signer<DerSignature> for HsmKey<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<DerSignature, signature::Error> {
        let sig: Signature = self.try_sign(msg)?;
        Ok(sig.to_der())
    }
}

impl signature::hazmat::PrehashSigner<Signature> for HsmKey<'_> {
    fn sign_prehash(&self, prehash: &[u8]) -> Result<Signature, signature::Error> {
        let digest: [u8; 32] = prehash.try_into().map_err(|_| signature::Error::new())?;
        self.sign_digest(&digest)
            .map_err(signature::Error::from_source)
    }
}

impl signature::Keypair for HsmKey<'_> {
    type VerifyingKey = VerifyingKey;

    fn verifying_key(&self) -> VerifyingKey {
        self.public
    }
}

impl DynSignatureAlgorithmIdentifier for HsmKey<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(AlgorithmIdentifierOwned {
            oid: ecdsa::ECDSA_SHA256_OID,
            parameters: None,
        })
    }
}

#[cold]
#[expect(
    clippy::panic,
    reason = "an invariant of p256's VerifyingKey, not an input"
)]
fn unreachable_key(uri: &str) -> ! {
    panic!("p256 verifying key of {uri} is not an uncompressed P-256 point")
}
