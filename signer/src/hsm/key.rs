//! A cairn key on the token as a RustCrypto signer: ECDSA P-256 over a SHA-256 digest computed on
//! the host, raw `r || s` for COSE and notes, DER for X.509.

use std::cell::Cell;
use std::fmt;

use cryptoki::context::Function;
use cryptoki::error::RvError;
use cryptoki::object::ObjectHandle;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier};

use super::Token;
use crate::error::{Error, Result};

/// A private key on the token, with its public key: a `signature::Signer` for ECDSA P-256 (raw
/// `r || s` for COSE and notes, DER for X.509), and an `x509-cert` builder signer.
pub struct HsmKey<'t> {
    pub(super) token: &'t Token,
    pub(super) private: ObjectHandle,
    pub(super) public: VerifyingKey,
    pub(super) uri: String,
    /// The PKCS#11 failure of the last signature, kept because `signature::Error` cannot carry it
    /// in a form the caller can match on.
    pub(super) failure: Cell<Option<(RvError, Function)>>,
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
