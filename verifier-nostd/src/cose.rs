//! COSE_Sign1 with ES256 (RFC 9052 §4.2, RFC 9053 §2.1), as cairn signs release statements.
//!
//! cairn accepts exactly one shape, so there is nothing to negotiate and nothing to confuse:
//!
//! ```text
//! 18([                                  COSE_Sign1_Tagged (RFC 9052 §4.2)
//!   h'A2 01 26 04 58 20 <kid>',         protected: {1 (alg): -7 (ES256), 4 (kid): bstr .size 32}
//!   {},                                 unprotected: empty
//!   h'<payload>',                       the statement, attached
//!   h'<r || s>'                         64 bytes (RFC 9053 §2.1)
//! ])
//! ```
//!
//! The signature is over `Sig_structure = ["Signature1", protected, h'', payload]` (RFC 9052
//! §4.4), hashed with SHA-256. The `kid` is SHA-256 of the signing key's DER SubjectPublicKeyInfo.

use crate::cbor::{Reader, head};
use crate::crypto::{Crypto, PublicKey, Sha256, Signature};
use crate::error::{CborError, Context, Error, Item};
use crate::types::Hash;

/// CBOR tag of COSE_Sign1_Tagged (RFC 9052 §2).
pub const TAG_COSE_SIGN1: u64 = 18;
/// COSE header label `alg` (RFC 9052 §3.1).
pub const HEADER_ALG: u64 = 1;
/// COSE header label `kid` (RFC 9052 §3.1).
pub const HEADER_KID: u64 = 4;
/// COSE algorithm ES256: ECDSA with SHA-256 (RFC 9053 §2.1).
pub const ALG_ES256: i64 = -7;
/// The Sig_structure context for COSE_Sign1 (RFC 9052 §4.4).
pub const CONTEXT_SIGNATURE1: &str = "Signature1";

/// A release-signing key as a device pins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseKey {
    /// The ECDSA P-256 public key.
    pub public: PublicKey,
    /// Its COSE `kid`: SHA-256 of its DER SubjectPublicKeyInfo.
    pub kid: Hash,
}

impl ReleaseKey {
    /// Pins `public`, computing its `kid`.
    pub fn new(public: PublicKey, crypto: &impl Crypto) -> Self {
        Self {
            public,
            kid: public.key_hash(crypto),
        }
    }
}

/// A decoded COSE_Sign1 (signature not yet verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoseSign1<'a> {
    /// The serialized protected header (signed as is).
    pub protected: &'a [u8],
    /// The key id from the protected header.
    pub kid: Hash,
    /// The payload.
    pub payload: &'a [u8],
    /// The signature, `r || s`.
    pub signature: Signature,
}

impl<'a> CoseSign1<'a> {
    /// Decodes the one COSE_Sign1 shape cairn accepts (see the module documentation).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        r.tag(TAG_COSE_SIGN1).within(Item::CoseSign1)?;
        r.array_of(4).within(Item::CoseSign1)?;
        let protected = r.bytes().within(Item::CoseSign1)?;
        let protected_start = r.position().saturating_sub(protected.len());
        let kid = decode_protected(protected).map_err(|e| match e {
            Error::Malformed { item, cause } => Error::Malformed {
                item,
                cause: cause.offset_by(protected_start),
            },
            other => other,
        })?;
        let offset = r.position();
        if r.map_len().within(Item::CoseSign1)? != 0 {
            // Nothing belongs in the unprotected header; anything there would be unauthenticated.
            return Err(Error::Malformed {
                item: Item::CoseSign1,
                cause: CborError::OutOfRange { offset },
            });
        }
        let payload = r.bytes().within(Item::CoseSign1)?;
        let signature = Signature(r.bytes_fixed::<64>().within(Item::CoseSign1)?);
        r.finish().within(Item::CoseSign1)?;
        Ok(Self {
            protected,
            kid,
            payload,
            signature,
        })
    }

    /// SHA-256 of the Sig_structure (RFC 9052 §4.4) this signature covers.
    pub fn signed_digest(&self, crypto: &impl Crypto) -> Hash {
        sig_structure_digest(crypto, self.protected, self.payload)
    }

    /// Verifies the signature with `key`.
    pub fn verify(&self, key: &ReleaseKey, crypto: &impl Crypto) -> Result<(), Error> {
        if !crate::merkle::ct_eq(&self.kid, &key.kid) {
            return Err(Error::ReleaseKeyUnknown);
        }
        let digest = self.signed_digest(crypto);
        if crypto.verify_p256(&key.public, &digest, &self.signature) {
            Ok(())
        } else {
            Err(Error::ReleaseSignature)
        }
    }
}

/// `{1: -7, 4: h'<32 bytes>'}`, in exactly that deterministic encoding.
fn decode_protected(protected: &[u8]) -> Result<Hash, Error> {
    let mut p = Reader::new(protected);
    p.map_of(2).within(Item::CoseSign1)?;
    p.key(HEADER_ALG).within(Item::CoseSign1)?;
    if p.i64().within(Item::CoseSign1)? != ALG_ES256 {
        return Err(Error::ReleaseAlgorithm);
    }
    p.key(HEADER_KID).within(Item::CoseSign1)?;
    let kid = p.bytes_fixed::<32>().within(Item::CoseSign1)?;
    p.finish().within(Item::CoseSign1)?;
    Ok(kid)
}

/// SHA-256 over `["Signature1", protected, h'', payload]`, streamed without building it.
fn sig_structure_digest(crypto: &impl Crypto, protected: &[u8], payload: &[u8]) -> Hash {
    let mut h = crypto.sha256();
    h.update(&[0x84]);
    let (buf, n) = head(3, CONTEXT_SIGNATURE1.len() as u64);
    h.update(buf.get(..n).unwrap_or_default());
    h.update(CONTEXT_SIGNATURE1.as_bytes());
    let (buf, n) = head(2, protected.len() as u64);
    h.update(buf.get(..n).unwrap_or_default());
    h.update(protected);
    h.update(&[0x40]);
    let (buf, n) = head(2, payload.len() as u64);
    h.update(buf.get(..n).unwrap_or_default());
    h.update(payload);
    h.finish()
}

/// Building and signing COSE_Sign1 (host side).
#[cfg(feature = "alloc")]
pub mod write {
    use alloc::vec::Vec;

    use super::{ALG_ES256, HEADER_ALG, HEADER_KID, TAG_COSE_SIGN1, sig_structure_digest};
    use crate::cbor::write::Writer;
    use crate::crypto::Software;
    use crate::types::Hash;

    /// The protected header for `kid`.
    pub fn protected_header(kid: &Hash) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(2)
            .u64(HEADER_ALG)
            .i64(ALG_ES256)
            .u64(HEADER_KID)
            .bytes(kid);
        w.into_bytes()
    }

    /// Assembles a COSE_Sign1 from its parts.
    pub fn assemble(protected: &[u8], payload: &[u8], signature: &[u8; 64]) -> Vec<u8> {
        let mut w = Writer::new();
        w.tag(TAG_COSE_SIGN1)
            .array(4)
            .bytes(protected)
            .map(0)
            .bytes(payload)
            .bytes(signature);
        w.into_bytes()
    }

    /// The exact bytes of the Sig_structure (RFC 9052 §4.4) for `protected` and `payload`: what
    /// an external signer that hashes internally (an HSM doing CKM_ECDSA_SHA256) must sign.
    pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        w.array(4)
            .text(super::CONTEXT_SIGNATURE1)
            .bytes(protected)
            .bytes(&[])
            .bytes(payload);
        w.into_bytes()
    }

    /// Signs `payload` with `signer`, whose key has COSE key id `kid`.
    pub fn sign<S>(payload: &[u8], kid: &Hash, signer: &S) -> Result<Vec<u8>, signature::Error>
    where
        S: signature::Signer<p256::ecdsa::Signature>,
    {
        let protected = protected_header(kid);
        let tbs = sig_structure(&protected, payload);
        debug_assert_eq!(
            crate::crypto::Crypto::sha256_of(&Software, &[&tbs]),
            sig_structure_digest(&Software, &protected, payload)
        );
        let sig = signer.try_sign(&tbs)?;
        let raw: [u8; 64] = sig.to_bytes().into();
        Ok(assemble(&protected, payload, &raw))
    }
}
