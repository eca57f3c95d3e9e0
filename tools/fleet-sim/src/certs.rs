//! Each device's MQTT client certificate (`CN=<device id>`, the broker's user name for its ACL,
//! docs/relay.md), issued in process by the broker's CA key: a fresh P-256 key per device, signed
//! with ECDSA-SHA256, on every core. Certificates are cached under `<state>/certs/` together with
//! the fingerprint of the CA that issued them, so a restart reuses them and a new CA (a new test
//! broker) reissues them all. `Broker::client` runs `openssl` twice per certificate; this issues
//! the 8,203 certificates of the reference fleet in seconds.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use der::{DateTime, Decode as _, Encode as _, EncodePem as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder as _, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension as _};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::error::{Error, Result, io};

/// How long issued certificates are valid.
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The broker's CA: its key signs device certificates.
pub struct Ca {
    key: SigningKey,
    subject: Name,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject.to_string())
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA certificate (PEM) and its private key (PKCS#8 PEM, as `openssl req -nodes`
    /// writes it), and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Self> {
        let bad = |path: &Path| {
            let path = path.to_path_buf();
            move |reason: String| Error::Ca { path, reason }
        };
        let pem = std::fs::read(cert).map_err(io(cert))?;
        let (label, der) =
            der::pem::decode_vec(&pem).map_err(|e| bad(cert)(format!("not PEM ({e})")))?;
        if label != "CERTIFICATE" {
            return Err(bad(cert)(format!(
                "PEM label {label}, expected CERTIFICATE"
            )));
        }
        let certificate = Certificate::from_der(&der).map_err(|e| bad(cert)(e.to_string()))?;
        let text = std::fs::read_to_string(key).map_err(io(key))?;
        let signing = SigningKey::from_pkcs8_pem(&text)
            .map_err(|e| bad(key)(format!("not a PKCS#8 P-256 private key ({e})")))?;
        let spki = certificate
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| bad(cert)(e.to_string()))?;
        let ours = VerifyingKey::from(&signing)
            .to_public_key_der()
            .map_err(|e| bad(key)(e.to_string()))?;
        if spki != ours.as_bytes() {
            return Err(bad(key)(format!(
                "is not the key of the certificate {}",
                cert.display()
            )));
        }
        Ok(Self {
            key: signing,
            subject: certificate.tbs_certificate().subject().clone(),
            fingerprint: Sha256::digest(&der).into(),
        })
    }

    /// Issues a client certificate for `device`: `(certificate PEM, PKCS#8 private key PEM)`.
    pub fn issue(&self, device: &str) -> Result<(String, String)> {
        let fail = |reason: String| Error::Certificate {
            device: device.to_owned(),
            reason,
        };
        let key = random_key().map_err(fail)?;
        let subject = Name::from_str(&format!("CN={device}")).map_err(|e| fail(e.to_string()))?;
        let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key())
            .map_err(|e| fail(e.to_string()))?;
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| fail(e.to_string()))?;
        serial[0] = (serial[0] & 0x7f) | 0x01; // positive, 16 bytes
        let serial = SerialNumber::new(&serial).map_err(|e| fail(e.to_string()))?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        // An hour of slack for a broker whose clock is behind.
        let from = now.saturating_sub(Duration::from_secs(3600));
        let time = |t: Duration| {
            DateTime::from_unix_duration(t)
                .map(Time::from)
                .map_err(|e| fail(e.to_string()))
        };
        let validity = Validity::new(time(from)?, time(now.saturating_add(VALIDITY))?);
        let profile = Client {
            subject,
            issuer: self.subject.clone(),
        };
        let cert = CertificateBuilder::new(profile, serial, validity, spki)
            .map_err(|e| fail(e.to_string()))?
            .build::<_, DerSignature>(&self.key)
            .map_err(|e| fail(e.to_string()))?;
        let cert_pem = cert
            .to_pem(LineEnding::LF)
            .map_err(|e| fail(e.to_string()))?;
        let key_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| fail(e.to_string()))?;
        Ok((cert_pem, key_pem.as_str().to_owned()))
    }
}

fn random_key() -> Result<SigningKey, String> {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
        // Out of range (about 2^-32 of draws): draw again.
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return Ok(key);
        }
    }
}

/// An end-entity TLS client certificate profile.
struct Client {
    subject: Name,
    issuer: Name,
}

impl BuilderProfile for Client {
    fn get_issuer(&self, _: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _: spki::SubjectPublicKeyInfoRef<'_>,
        _: spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let critical = |ext: Extension| Extension {
            critical: true,
            ..ext
        };
        Ok(vec![
            critical(
                BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                }
                .to_extension(subject, &[])?,
            ),
            critical(KeyUsage(KeyUsages::DigitalSignature.into()).to_extension(subject, &[])?),
            ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH])
                .to_extension(subject, &[])?,
        ])
    }
}

/// Where a device's certificate and key are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
}

impl ClientFiles {
    /// The files of `device` under the state directory `state`.
    pub fn of(state: &Path, device: &str) -> Self {
        let dir = state.join("certs");
        Self {
            cert: dir.join(format!("{device}.pem")),
            key: dir.join(format!("{device}.key")),
        }
    }
}

/// Ensures every device in `devices` has a certificate from `ca` under `state/certs`, issuing the
/// missing ones (all of them if the CA changed) on `threads` threads. Returns how many were issued.
pub fn ensure(ca: &Ca, state: &Path, devices: &[&str], threads: usize) -> Result<u64> {
    let dir = state.join("certs");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let marker = dir.join("ca.sha256");
    let fingerprint = hex::encode(ca.fingerprint);
    let same_ca = std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == fingerprint);
    if !same_ca {
        // Certificates of another CA are useless: the broker would refuse them.
        std::fs::remove_file(&marker)
            .or_else(ignore_missing)
            .map_err(io(&marker))?;
    }
    let missing: Vec<&str> = devices
        .iter()
        .copied()
        .filter(|d| {
            let files = ClientFiles::of(state, d);
            !same_ca || !files.cert.exists() || !files.key.exists()
        })
        .collect();
    let chunk = missing.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = missing
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().try_for_each(|d| issue_to(ca, state, d))))
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or(Err(Error::WorkerPanicked {
                task: "certificate",
            }))
        })
    })?;
    if !same_ca {
        std::fs::write(&marker, format!("{fingerprint}\n")).map_err(io(&marker))?;
    }
    Ok(missing.len() as u64)
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

fn issue_to(ca: &Ca, state: &Path, device: &str) -> Result<()> {
    let (cert, key) = ca.issue(device)?;
    let files = ClientFiles::of(state, device);
    // The key first, so a cached certificate always has its key.
    let tmp = files.key.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(key.as_bytes()).map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &files.key).map_err(io(&files.key))?;
    let tmp = files.cert.with_extension("pem.tmp");
    std::fs::write(&tmp, cert).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &files.cert).map_err(io(&files.cert))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA like the broker's (`openssl req -x509 -newkey ec ... -nodes`), written by us.
    fn test_ca(dir: &Path) -> (PathBuf, PathBuf) {
        let key = random_key().unwrap();
        let name = Name::from_str("CN=test CA").unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let validity = Validity::new(
            Time::from(DateTime::from_unix_duration(now).unwrap()),
            Time::from(DateTime::from_unix_duration(now + VALIDITY).unwrap()),
        );
        let cert = CertificateBuilder::new(
            Client {
                subject: name.clone(),
                issuer: name,
            },
            SerialNumber::from(1u32),
            validity,
            spki,
        )
        .unwrap()
        .build::<_, DerSignature>(&key)
        .unwrap();
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        std::fs::write(&cert_path, cert.to_pem(LineEnding::LF).unwrap()).unwrap();
        std::fs::write(
            &key_path,
            key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn issues_once_then_reuses_and_reissues_for_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = test_ca(dir.path());
        let ca = Ca::load(&cert, &key).unwrap();
        let state = dir.path().join("state");
        let devices = ["d-1", "d-2", "d-3"];
        assert_eq!(ensure(&ca, &state, &devices, 2).unwrap(), 3);
        let files = ClientFiles::of(&state, "d-2");
        let pem = std::fs::read(&files.cert).unwrap();
        let (_, der) = der::pem::decode_vec(&pem).unwrap();
        let issued = Certificate::from_der(&der).unwrap();
        assert_eq!(issued.tbs_certificate().subject().to_string(), "CN=d-2");
        assert_eq!(issued.tbs_certificate().issuer().to_string(), "CN=test CA");
        assert!(SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&files.key).unwrap()).is_ok());
        assert_eq!(ensure(&ca, &state, &devices, 2).unwrap(), 0);
        assert_eq!(ensure(&ca, &state, &["d-1", "d-4"], 2).unwrap(), 1);

        let other = tempfile::tempdir().unwrap();
        let (cert2, key2) = test_ca(other.path());
        let ca2 = Ca::load(&cert2, &key2).unwrap();
        assert_eq!(ensure(&ca2, &state, &devices, 2).unwrap(), 3);
        // A key that is not the certificate's is refused.
        let err = Ca::load(&cert, &key2).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not the key of the certificate"),
            "{err}"
        );
    }
}
