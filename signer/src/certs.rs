//! X.509 certificates for the ceremony's keys (RFC 5280), built with `x509-cert` and signed by the
//! root key on the token. `openssl verify` accepts the chain (tests check it).
//!
//! Profile (docs/ceremony.md, "Certificates"):
//! - root: self-signed; `basicConstraints` critical `CA:TRUE, pathlen:0` (it certifies keys, never
//!   another CA); `keyUsage` critical `keyCertSign, cRLSign, digitalSignature` (it also signs
//!   ceremony records and key statements); subject and authority key identifiers.
//! - release: `basicConstraints` critical `CA:FALSE`; `keyUsage` critical `digitalSignature`;
//!   `extendedKeyUsage` `codeSigning` (it authorizes firmware); key identifiers.
//! - log: as release, without an extended key usage (no registered purpose fits a checkpoint).
//!
//! Key identifiers are RFC 7093 §2 method 1: the leftmost 160 bits of SHA-256 of the
//! subjectPublicKey bits. Serial numbers are 16 random bytes (positive). Signatures are
//! ecdsa-with-SHA256 (RFC 5758 §3.2).

use std::str::FromStr;
use std::time::Duration;

use cairn_verifier::custody::KeyRole;
use cairn_verifier::types::UnixTime;
use der::asn1::OctetString;
use der::{DateTime, Decode, Encode, EncodePem};
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::{Certificate, TbsCertificate};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::error::{Error, Result, random};
use crate::hsm::HsmKey;

/// How long the root certificate is valid: 30 years, beyond the evidence retention of every
/// release it will sign for (CRA: 10 years of documentation after the support period).
pub const ROOT_VALIDITY: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
/// How long release and log key certificates are valid: 15 years.
pub const KEY_VALIDITY: Duration = Duration::from_secs(15 * 365 * 24 * 3600);

/// id-kp-codeSigning (RFC 5280 §4.2.1.12).
const CODE_SIGNING: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");

fn cert_error(what: &str) -> impl FnOnce(String) -> Error + '_ {
    move |why| Error::Certificate {
        what: what.into(),
        why,
    }
}

/// RFC 7093 §2 method 1 key identifier of a SubjectPublicKeyInfo.
fn key_identifier(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<OctetString> {
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    OctetString::new(&digest[..20]).map_err(|e| cert_error("key identifier")(e.to_string()))
}

/// The distinguished name of a cairn key certificate: `CN=cairn <role> key,O=<organization>`.
pub fn subject(role: KeyRole, organization: &str) -> Result<Name> {
    if organization.is_empty()
        || organization.len() > 64
        || organization.chars().any(|c| {
            c.is_control() || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '#')
        })
    {
        return Err(Error::Invalid(format!(
            "organization {organization:?} must be 1 to 64 characters without , + \" \\ < > ; = #"
        )));
    }
    let cn = match role {
        KeyRole::Root => "cairn root CA".to_owned(),
        r => format!("cairn {} key", r.name()),
    };
    Name::from_str(&format!("CN={cn},O={organization}"))
        .map_err(|e| cert_error("subject name")(e.to_string()))
}

struct Profile {
    role: KeyRole,
    subject: Name,
    issuer: Name,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let ski = key_identifier(&spk).map_err(|_| der::Error::from(der::ErrorKind::Failed))?;
        let aki =
            key_identifier(&issuer_spk).map_err(|_| der::Error::from(der::ErrorKind::Failed))?;
        let root = self.role == KeyRole::Root;
        let subject = tbs.subject();
        let mut exts: Vec<Extension> = Vec::new();
        let mut push = |ext: Extension, critical: bool| {
            exts.push(Extension { critical, ..ext });
        };
        push(
            BasicConstraints {
                ca: root,
                path_len_constraint: root.then_some(0),
            }
            .to_extension(subject, &[])?,
            true,
        );
        let usage = if root {
            KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature
        } else {
            KeyUsages::DigitalSignature.into()
        };
        push(KeyUsage(usage).to_extension(subject, &[])?, true);
        if self.role == KeyRole::Release {
            push(
                ExtendedKeyUsage(vec![CODE_SIGNING]).to_extension(subject, &[])?,
                false,
            );
        }
        push(SubjectKeyIdentifier(ski).to_extension(subject, &[])?, false);
        push(
            AuthorityKeyIdentifier {
                key_identifier: Some(aki),
                ..Default::default()
            }
            .to_extension(subject, &[])?,
            false,
        );
        Ok(exts)
    }
}

fn validity(now: UnixTime, lifetime: Duration) -> Result<Validity> {
    let at = |secs: u64| -> Result<Time> {
        let dt = DateTime::from_unix_duration(Duration::from_secs(secs))
            .map_err(|e| cert_error("validity")(e.to_string()))?;
        Ok(Time::from(dt))
    };
    Ok(Validity::new(
        at(now.0)?,
        at(now.0.saturating_add(lifetime.as_secs()))?,
    ))
}

fn serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    random(&mut bytes)?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and 16 bytes long
    SerialNumber::new(&bytes).map_err(|e| cert_error("serial number")(e.to_string()))
}

fn spki_of(key: &HsmKey<'_>) -> Result<SubjectPublicKeyInfoOwned> {
    SubjectPublicKeyInfoOwned::from_der(&key.spki_der())
        .map_err(|e| cert_error("public key")(e.to_string()))
}

/// The self-signed root CA certificate of `root`, valid from `now` for [`ROOT_VALIDITY`].
pub fn root_certificate(
    root: &HsmKey<'_>,
    organization: &str,
    now: UnixTime,
) -> Result<Certificate> {
    let name = subject(KeyRole::Root, organization)?;
    let profile = Profile {
        role: KeyRole::Root,
        subject: name.clone(),
        issuer: name,
    };
    let builder = CertificateBuilder::new(
        profile,
        serial()?,
        validity(now, ROOT_VALIDITY)?,
        spki_of(root)?,
    )
    .map_err(|e| cert_error("root")(e.to_string()))?;
    builder
        .build::<_, DerSignature>(root)
        .map_err(|e| cert_error("root")(e.to_string()))
}

/// The certificate of `key` (release or log) issued by `root`, valid from `now` for
/// [`KEY_VALIDITY`].
pub fn key_certificate(
    root: &HsmKey<'_>,
    root_cert: &Certificate,
    key: &HsmKey<'_>,
    role: KeyRole,
    organization: &str,
    now: UnixTime,
) -> Result<Certificate> {
    let profile = Profile {
        role,
        subject: subject(role, organization)?,
        issuer: root_cert.tbs_certificate().subject().clone(),
    };
    let what = role.name();
    let builder = CertificateBuilder::new(
        profile,
        serial()?,
        validity(now, KEY_VALIDITY)?,
        spki_of(key)?,
    )
    .map_err(|e| cert_error(what)(e.to_string()))?;
    builder
        .build::<_, DerSignature>(root)
        .map_err(|e| cert_error(what)(e.to_string()))
}

/// DER encoding.
pub fn to_der(cert: &Certificate) -> Result<Vec<u8>> {
    cert.to_der()
        .map_err(|e| cert_error("encoding")(e.to_string()))
}

/// PEM encoding (`-----BEGIN CERTIFICATE-----`).
pub fn to_pem(cert: &Certificate) -> Result<String> {
    cert.to_pem(der::pem::LineEnding::LF)
        .map_err(|e| cert_error("encoding")(e.to_string()))
}

/// Parses a DER certificate.
pub fn from_der(der: &[u8], what: &str) -> Result<Certificate> {
    Certificate::from_der(der).map_err(|e| cert_error(what)(e.to_string()))
}

/// SHA-256 fingerprint of a DER certificate (what `openssl x509 -fingerprint -sha256` prints).
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Colon-separated upper-case hex, as custodians compare fingerprints on paper.
pub fn fingerprint_text(der: &[u8]) -> String {
    fingerprint(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The P-256 public key a certificate certifies.
pub fn public_key(cert: &Certificate, what: &str) -> Result<VerifyingKey> {
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| cert_error(what)(e.to_string()))?;
    VerifyingKey::from_public_key_der(&spki)
        .map_err(|e| cert_error(what)(format!("not an ECDSA P-256 key ({e})")))
}

/// The verifier's form of a certificate's key.
pub fn verifier_key(cert: &Certificate, what: &str) -> Result<cairn_verifier::crypto::PublicKey> {
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| cert_error(what)(e.to_string()))?;
    cairn_verifier::crypto::PublicKey::from_spki_der(&spki)
        .ok_or_else(|| cert_error(what)("not an uncompressed ECDSA P-256 key".into()))
}

/// Checks that `cert` was signed by `issuer`'s key (ecdsa-with-SHA256) and names it as issuer.
pub fn verify_issued_by(cert: &Certificate, issuer: &Certificate, what: &str) -> Result<()> {
    use signature::Verifier as _;
    let fail = |why: String| Error::Verification {
        what: format!("certificate {what}"),
        why,
    };
    if cert.signature_algorithm().oid != ecdsa::ECDSA_SHA256_OID {
        return Err(fail(format!(
            "signature algorithm {} is not ecdsa-with-SHA256",
            cert.signature_algorithm().oid
        )));
    }
    if cert.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return Err(fail(format!(
            "issuer {} is not {}",
            cert.tbs_certificate().issuer(),
            issuer.tbs_certificate().subject()
        )));
    }
    let key = public_key(issuer, "issuer")?;
    let tbs = cert
        .tbs_certificate()
        .to_der()
        .map_err(|e| fail(e.to_string()))?;
    let sig = DerSignature::from_bytes(cert.signature().raw_bytes())
        .map_err(|e| fail(format!("signature is not DER ECDSA ({e})")))?;
    key.verify(&tbs, &sig)
        .map_err(|_| fail("the issuer's signature does not verify".into()))
}

/// Checks `cert` is valid at `at` (notBefore ≤ at ≤ notAfter).
pub fn check_validity(cert: &Certificate, at: UnixTime, what: &str) -> Result<()> {
    let v = cert.tbs_certificate().validity();
    let from = v.not_before.to_unix_duration().as_secs();
    let until = v.not_after.to_unix_duration().as_secs();
    if at.0 < from || at.0 > until {
        return Err(Error::Verification {
            what: format!("certificate {what}"),
            why: format!(
                "not valid at {} (valid {from} to {until}, unix seconds)",
                at.0
            ),
        });
    }
    Ok(())
}
