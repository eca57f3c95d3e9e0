//! Test fleets (tests, demo, benchmarks): a software manufacturer CA, device identity
//! certificates, CRLs, the reference fleet of the design brief (8,400 devices of which exactly
//! 8,203 pass eligibility for release 2.4.1, the rest rejected for known reasons) and synthetic
//! fleets of any size.
//!
//! Keys are derived from seeds, so a fleet is the same every time it is generated. Nothing here
//! is for production: the manufacturer CA key is a software key.

use std::time::Duration;

use base64ct::Encoding as _;
use cairn_verifier::rollout::{Reason, Reasons};
use cairn_verifier::types::UnixTime;
use der::{DateTime, Decode, Encode};
use p256::ecdsa::{DerSignature, SigningKey};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder, CrlBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::crl::RevokedCert;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::error::{Error, Result};
use crate::parallel;

mod fast;
pub use fast::write_synthetic;

/// The import CSV's header row.
const CSV_HEADER: &str =
    "device_id,product,family,hardware_revision,lifecycle,firmware_version,cohorts,certificate\n";

/// Device `i`'s id: `sc-0000001` for device 0.
fn synthetic_id(i: u64) -> String {
    format!("sc-{:07}", i + 1)
}

/// The CSV fields of healthy device `i` before its certificate (with the comma before it).
fn synthetic_fields(i: u64) -> String {
    let hw = if i.is_multiple_of(3) {
        "rev-b"
    } else {
        "rev-c"
    };
    fields(i, hw, "active", &healthy_version(i))
}

fn healthy_version(i: u64) -> String {
    format!("2.{}.{}", i % 4, i % 3)
}

/// The CSV fields of device `i` before its certificate (with the comma before it).
fn fields(i: u64, hw: &str, lifecycle: &str, version: &str) -> String {
    let region = ["eu-west", "eu-central", "us-east"][(i % 3) as usize];
    format!(
        "{},Smart Controller,STM32H5,{hw},{lifecycle},{version},evaluation;{region},",
        synthetic_id(i)
    )
}

fn fail(what: &str) -> impl FnOnce(String) -> Error + '_ {
    move |why| Error::Certificate {
        what: what.into(),
        why,
    }
}

fn key_from_seed(label: &str, seed: u64) -> SigningKey {
    let mut counter = 0u32;
    loop {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update(seed.to_be_bytes());
        h.update(counter.to_be_bytes());
        if let Ok(k) = SigningKey::from_slice(&h.finalize()) {
            return k;
        }
        counter += 1;
    }
}

fn time(t: u64) -> Result<Time> {
    DateTime::from_unix_duration(Duration::from_secs(t))
        .map(Time::from)
        .map_err(|e| fail("validity")(e.to_string()))
}

struct Profile {
    subject: Name,
    issuer: Name,
    ca: bool,
}

impl BuilderProfile for Profile {
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
        let usage = if self.ca {
            KeyUsages::KeyCertSign | KeyUsages::CRLSign
        } else {
            KeyUsages::DigitalSignature.into()
        };
        Ok(vec![
            BasicConstraints {
                ca: self.ca,
                path_len_constraint: self.ca.then_some(0),
            }
            .to_extension(subject, &[])?,
            KeyUsage(usage).to_extension(subject, &[])?,
        ])
    }
}

/// A software manufacturer CA.
pub struct ManufacturerCa {
    key: SigningKey,
    /// Its self-signed certificate.
    pub cert: Certificate,
    /// The certificate's DER.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for ManufacturerCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManufacturerCa")
            .field(
                "subject",
                &self.cert.tbs_certificate().subject().to_string(),
            )
            .finish_non_exhaustive()
    }
}

impl ManufacturerCa {
    /// A CA named `CN=<name>`, key from `seed`, valid from `now` - 1 year for 30 years.
    pub fn new(name: &str, seed: u64, now: UnixTime) -> Result<Self> {
        let key = key_from_seed("cairn test manufacturer CA", seed);
        let subject: Name = format!("CN={name},O=Smart Controller Manufacturing")
            .parse()
            .map_err(|e: der::Error| fail("CA name")(e.to_string()))?;
        let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key())
            .map_err(|e| fail("CA key")(e.to_string()))?;
        let validity = Validity::new(
            time(now.0.saturating_sub(365 * 86_400))?,
            time(now.0 + 30 * 365 * 86_400)?,
        );
        let cert = CertificateBuilder::new(
            Profile {
                subject: subject.clone(),
                issuer: subject,
                ca: true,
            },
            SerialNumber::from(seed.max(1)),
            validity,
            spki,
        )
        .map_err(|e| fail("CA")(e.to_string()))?
        .build::<_, DerSignature>(&key)
        .map_err(|e| fail("CA")(e.to_string()))?;
        let der = cert.to_der().map_err(|e| fail("CA")(e.to_string()))?;
        Ok(Self { key, cert, der })
    }

    /// The identity certificate of `device_id` (`CN=<device_id>`), its key from `seed`, serial
    /// `serial`, valid `from..until`.
    pub fn issue(&self, device_id: &str, serial: u64, from: u64, until: u64) -> Result<Vec<u8>> {
        let device_key = key_from_seed("cairn test device", serial);
        let subject: Name = format!("CN={device_id},O=Smart Controller")
            .parse()
            .map_err(|e: der::Error| fail("device name")(e.to_string()))?;
        let spki = SubjectPublicKeyInfoOwned::from_key(device_key.verifying_key())
            .map_err(|e| fail("device key")(e.to_string()))?;
        let cert = CertificateBuilder::new(
            Profile {
                subject,
                issuer: self.cert.tbs_certificate().subject().clone(),
                ca: false,
            },
            SerialNumber::from(serial),
            Validity::new(time(from)?, time(until)?),
            spki,
        )
        .map_err(|e| fail(device_id)(e.to_string()))?
        .build::<_, DerSignature>(&self.key)
        .map_err(|e| fail(device_id)(e.to_string()))?;
        cert.to_der().map_err(|e| fail(device_id)(e.to_string()))
    }

    /// A CRL revoking `serials` at `now`.
    pub fn crl(&self, serials: &[u64], now: UnixTime) -> Result<Vec<u8>> {
        let revoked = serials
            .iter()
            .map(|&s| {
                Ok(RevokedCert {
                    serial_number: SerialNumber::from(s),
                    revocation_date: time(now.0.saturating_sub(86_400))?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let builder = CrlBuilder::new_with_this_update(
            &self.cert,
            x509_cert::ext::pkix::CrlNumber::from(
                der::asn1::Uint::new(&[1]).map_err(|e| fail("CRL number")(e.to_string()))?,
            ),
            time(now.0)?,
        )
        .map_err(|e| fail("CRL")(e.to_string()))?
        .with_certificates(revoked.into_iter());
        let crl = builder
            .build::<_, DerSignature>(&self.key)
            .map_err(|e| fail("CRL")(e.to_string()))?;
        crl.to_der().map_err(|e| fail("CRL")(e.to_string()))
    }
}

/// What is wrong with a reference-fleet device, by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// Certificate revoked by the CA's CRL.
    Revoked,
    /// Certificate expired before the decision.
    Expired,
    /// Lifecycle suspended.
    Suspended,
    /// Lifecycle decommissioned.
    Decommissioned,
    /// Lifecycle provisioned (not yet active).
    Provisioned,
    /// Firmware 1.9.4, below the scope's 2.0.0.
    TooOld,
    /// Firmware 2.4.1 already: above the scope's 2.4.0 and not below the release.
    AlreadyUpdated,
    /// Hardware revision rev-a.
    WrongHardware,
    /// Expired certificate and rev-a hardware.
    ExpiredAndWrongHardware,
}

impl Defect {
    /// The reasons eligibility must give for it.
    pub fn reasons(self) -> Reasons {
        let mut r = Reasons::default();
        match self {
            Defect::Revoked => r.insert(Reason::CertificateRevoked),
            Defect::Expired => r.insert(Reason::CertificateExpired),
            Defect::Suspended | Defect::Decommissioned | Defect::Provisioned => {
                r.insert(Reason::LifecycleNotActive);
            }
            Defect::TooOld => r.insert(Reason::VersionOutOfRange),
            Defect::AlreadyUpdated => {
                r.insert(Reason::VersionOutOfRange);
                r.insert(Reason::VersionNotBelowRelease);
            }
            Defect::WrongHardware => r.insert(Reason::WrongHardware),
            Defect::ExpiredAndWrongHardware => {
                r.insert(Reason::CertificateExpired);
                r.insert(Reason::WrongHardware);
            }
        }
        r
    }
}

/// Devices in the reference fleet.
pub const REFERENCE_DEVICES: u64 = 8_400;
/// Of which eligible for 2.4.1.
pub const REFERENCE_ELIGIBLE: u64 = 8_203;

/// The reference fleet's defects: (defect, how many). 197 devices in all.
pub const REFERENCE_DEFECTS: [(Defect, u64); 9] = [
    (Defect::Revoked, 41),
    (Defect::Expired, 38),
    (Defect::Suspended, 20),
    (Defect::Decommissioned, 12),
    (Defect::Provisioned, 12),
    (Defect::TooOld, 30),
    (Defect::AlreadyUpdated, 16),
    (Defect::WrongHardware, 22),
    (Defect::ExpiredAndWrongHardware, 6),
];

/// A generated fleet: the import CSV, the CA, its CRL, and each device's defect.
#[derive(Debug)]
pub struct Fleet {
    /// The CSV to import.
    pub csv: String,
    /// The manufacturer CA.
    pub ca: ManufacturerCa,
    /// The CA's CRL.
    pub crl: Vec<u8>,
    /// Device ids and their defect, if any.
    pub devices: Vec<(String, Option<Defect>)>,
}

/// Device `i`'s defect in the reference fleet: every 42nd device from the 8th carries the next
/// defect of [`REFERENCE_DEFECTS`].
fn reference_defect(i: u64) -> Option<Defect> {
    if i < 7 || !(i - 7).is_multiple_of(42) {
        return None;
    }
    let mut n = (i - 7) / 42;
    for (defect, count) in REFERENCE_DEFECTS {
        if n < count {
            return Some(defect);
        }
        n -= count;
    }
    None
}

/// The reference fleet (8,400 devices) as of `now`.
pub fn reference(now: UnixTime) -> Result<Fleet> {
    generate(REFERENCE_DEVICES, now, reference_defect)
}

/// A synthetic fleet of `n` healthy devices (for benchmarks), built by [`write_synthetic`]: the
/// certificates [`ManufacturerCa::issue`] would build, but OpenSSL's signatures.
pub fn synthetic(n: u64, now: UnixTime) -> Result<Fleet> {
    let mut csv = Vec::new();
    let ca = write_synthetic(n, now, &mut csv)?;
    let csv = String::from_utf8(csv).map_err(|e| fail("fleet CSV")(e.to_string()))?;
    let crl = ca.crl(&[], now)?;
    Ok(Fleet {
        csv,
        ca,
        crl,
        devices: (0..n).map(|i| (synthetic_id(i), None)).collect(),
    })
}

fn generate(n: u64, now: UnixTime, defect_of: fn(u64) -> Option<Defect>) -> Result<Fleet> {
    let ca = ManufacturerCa::new("Smart Controller Device CA", 1, now)?;
    let ids: Vec<(u64, String, Option<Defect>)> =
        (0..n).map(|i| (i, synthetic_id(i), defect_of(i))).collect();
    // Certificates on every core.
    let rows = parallel::map_runs(
        &ids,
        || Error::Registry("fleet worker panicked".into()),
        |_, part| {
            part.iter()
                .map(|(i, id, defect)| row(&ca, now, *i, id, *defect))
                .collect::<Result<Vec<String>>>()
        },
    )?;
    let mut csv = String::from(CSV_HEADER);
    for part in rows {
        for row in part {
            csv.push_str(&row);
        }
    }
    let revoked: Vec<u64> = ids
        .iter()
        .filter(|(_, _, d)| *d == Some(Defect::Revoked))
        .map(|(i, _, _)| i + 1000)
        .collect();
    let crl = ca.crl(&revoked, now)?;
    // Re-parse check: the CA certificate round-trips.
    Certificate::from_der(&ca.der).map_err(|e| fail("CA")(e.to_string()))?;
    Ok(Fleet {
        csv,
        ca,
        crl,
        devices: ids.into_iter().map(|(_, id, d)| (id, d)).collect(),
    })
}

/// The CSV row of device `i` (`id`, with `defect`), its certificate issued by `ca`.
fn row(
    ca: &ManufacturerCa,
    now: UnixTime,
    i: u64,
    id: &str,
    defect: Option<Defect>,
) -> Result<String> {
    let year = 365 * 86_400;
    let expired = matches!(
        defect,
        Some(Defect::Expired | Defect::ExpiredAndWrongHardware)
    );
    let (from, until) = if expired {
        (now.0 - 6 * year, now.0 - 30 * 86_400)
    } else {
        (now.0 - 2 * year, now.0 + 10 * year)
    };
    let der = ca.issue(id, i + 1000, from, until)?;
    let lifecycle = match defect {
        Some(Defect::Suspended) => "suspended",
        Some(Defect::Decommissioned) => "decommissioned",
        Some(Defect::Provisioned) => "provisioned",
        _ => "active",
    };
    let version = match defect {
        Some(Defect::TooOld) => "1.9.4".to_owned(),
        Some(Defect::AlreadyUpdated) => "2.4.1".to_owned(),
        _ => healthy_version(i),
    };
    let hw = match defect {
        Some(Defect::WrongHardware | Defect::ExpiredAndWrongHardware) => "rev-a",
        _ if i.is_multiple_of(3) => "rev-b",
        _ => "rev-c",
    };
    Ok(format!(
        "{}{}\n",
        fields(i, hw, lifecycle, &version),
        base64ct::Base64::encode_string(&der)
    ))
}
