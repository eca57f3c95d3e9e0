//! Reading keys from files: public keys as PEM or DER SubjectPublicKeyInfo (what the signer exports
//! and what `openssl pkey -pubout` writes), software private keys as PKCS#8 PEM.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::note::LogKey;
use p256::pkcs8::DecodePrivateKey;

/// A P-256 public key from a PEM (`-----BEGIN PUBLIC KEY-----`) or DER SPKI file, or from an
/// X.509 certificate in PEM (`-----BEGIN CERTIFICATE-----`, what the signer writes to `certs/`).
pub(crate) fn public_key(path: &Path) -> Result<PublicKey> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading public key {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN CERTIFICATE") {
        let text = std::str::from_utf8(&bytes).context("PEM file is not UTF-8")?;
        let der = pem_body(text, "CERTIFICATE")
            .with_context(|| format!("{}: no CERTIFICATE block", path.display()))?;
        let cert = cairn_signer::certs::from_der(&der, &path.display().to_string())?;
        return Ok(cairn_signer::certs::verifier_key(
            &cert,
            &path.display().to_string(),
        )?);
    }
    let der = if bytes.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(&bytes).context("PEM file is not UTF-8")?;
        pem_body(text, "PUBLIC KEY")
            .with_context(|| format!("{}: no PUBLIC KEY block", path.display()))?
    } else {
        bytes
    };
    PublicKey::from_spki_der(&der).with_context(|| {
        format!(
            "{}: not an ECDSA P-256 public key (uncompressed SubjectPublicKeyInfo)",
            path.display()
        )
    })
}

/// The log key for checkpoints of `origin` (cairn names its keys after the origin).
pub(crate) fn log_key(origin: &str, public: PublicKey) -> Result<LogKey<'_>> {
    LogKey::new(origin, origin, public, &Software)
        .with_context(|| format!("{origin:?} is not a valid origin and key name"))
}

/// A software signing key (PKCS#8 PEM), for logs whose key is not in an HSM (the relay's).
pub(crate) fn signing_key(path: &Path) -> Result<p256::ecdsa::SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading private key {}", path.display()))?;
    p256::ecdsa::SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a PKCS#8 ECDSA P-256 private key ({e})",
            path.display()
        )
    })
}

fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64ct::Base64::decode_vec(&b64).ok()
}

/// A 32-byte hash from hex.
pub(crate) fn hash_hex(s: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(s.trim()).with_context(|| format!("{s:?} is not hex"))?;
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(h) => Ok(h),
        Err(_) => bail!("{s:?} is {} bytes, a SHA-256 hash is 32", bytes.len()),
    }
}

use base64ct::Encoding as _;
