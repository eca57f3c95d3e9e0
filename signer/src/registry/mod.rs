//! The device registry (docs/eligibility.md): every device of the fleet with its identity
//! certificate, checked against the manufacturer CAs at import; revocations from CRLs; every
//! change kept as history.
//!
//! Stored in RocksDB under the signer home (`registry/`): column families `devices` (device id →
//! record, JSON), `certs` (device id → certificate DER), `history` (import number ‖ device id →
//! what changed), `anchors` (CA fingerprint → CA certificate DER), `revoked` (CA fingerprint ‖
//! serial → revocation time). An import is parsed and checked in full, then written in one synced
//! batch: a bad row anywhere means nothing is written ([`import`]: parsing, checking and building
//! that batch overlap, in bounded batches of rows).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cairn_verifier::types::{UnixTime, Version};
use der::{Decode, Encode};
use p256::ecdsa::DerSignature;
use p256::ecdsa::signature::Verifier as _;
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

use crate::certs;
use crate::error::{Error, Result};
use crate::parallel;

mod import;

const CFS: [&str; 5] = ["devices", "certs", "history", "anchors", "revoked"];

/// Lifecycle state of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Built, not yet provisioned.
    Manufactured,
    /// Provisioned with its identity, not yet in service.
    Provisioned,
    /// In service: the only state eligible for updates.
    Active,
    /// Taken out of service for now.
    Suspended,
    /// Retired for good.
    Decommissioned,
}

impl Lifecycle {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "manufactured" => Lifecycle::Manufactured,
            "provisioned" => Lifecycle::Provisioned,
            "active" => Lifecycle::Active,
            "suspended" => Lifecycle::Suspended,
            "decommissioned" => Lifecycle::Decommissioned,
            _ => return None,
        })
    }
}

/// What the registry found about a device's identity certificate at import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertCheck {
    /// SHA-256 fingerprint (hex) of the trusted CA whose signature verifies, if any.
    pub ca: Option<String>,
    /// Serial number (hex).
    pub serial: String,
    /// Subject common name.
    pub subject_cn: String,
    /// Validity start (Unix seconds).
    pub not_before: u64,
    /// Validity end (Unix seconds).
    pub not_after: u64,
}

/// One device as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Device id.
    pub id: String,
    /// Product.
    pub product: String,
    /// Device family.
    pub family: String,
    /// Hardware revision.
    pub hardware_revision: String,
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    /// Current firmware version.
    #[serde(with = "version_text")]
    pub version: Version,
    /// Cohort tags.
    pub cohorts: Vec<String>,
    /// The certificate check.
    pub cert: CertCheck,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// Import number (1 for the first).
    pub import: u64,
    /// Devices in the file.
    pub devices: u64,
    /// New devices.
    pub added: u64,
    /// Devices whose record changed.
    pub changed: u64,
    /// Devices unchanged.
    pub unchanged: u64,
    /// Certificates that verify with a trusted CA.
    pub trusted: u64,
    /// Seconds the parsing thread spent reading the file's rows (overlapping the checks).
    pub parse_secs: f64,
    /// Seconds from the start until every row was parsed, checked (on every core), compared with
    /// the stored record and in the write batch: the three overlap.
    pub check_secs: f64,
    /// Seconds spent writing the batch (synced).
    pub write_secs: f64,
}

/// The device registry.
#[derive(Debug)]
pub struct Registry {
    db: DB,
    path: PathBuf,
    /// The failed write's error, if one failed: later writes are refused.
    poisoned: std::sync::Mutex<Option<String>>,
}

#[expect(clippy::needless_pass_by_value, reason = "the shape `map_err` takes")]
fn storage(e: rocksdb::Error) -> Error {
    Error::Registry(format!("storage: {e}"))
}

fn row_error(row: usize, why: impl std::fmt::Display) -> Error {
    Error::Registry(format!("row {row}: {why}"))
}

/// A trusted CA: its fingerprint and certificate.
#[derive(Clone)]
pub struct Anchor {
    /// SHA-256 fingerprint, hex.
    pub fingerprint: String,
    /// The certificate.
    pub cert: Certificate,
    key: p256::ecdsa::VerifyingKey,
    /// The same key for OpenSSL, which verifies device certificates at fleet scale.
    fast: openssl::ec::EcKey<openssl::pkey::Public>,
}

impl std::fmt::Debug for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchor")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Anchor {
    fn new(fingerprint: String, cert: Certificate) -> Result<Self> {
        let key = certs::public_key(&cert, "trust anchor")?;
        let spki = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| Error::Registry(format!("trust anchor key ({e})")))?;
        let fast = openssl::pkey::PKey::public_key_from_der(&spki)
            .and_then(|k| k.ec_key())
            .map_err(|e| Error::Registry(format!("trust anchor key for OpenSSL ({e})")))?;
        Ok(Self {
            fingerprint,
            cert,
            key,
            fast,
        })
    }

    /// Whether the anchor's key signed `tbs` (ECDSA P-256 with SHA-256, DER signature).
    fn signed(&self, tbs: &[u8], signature_der: &[u8]) -> bool {
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(tbs).into();
        openssl::ecdsa::EcdsaSig::from_der(signature_der)
            .and_then(|sig| sig.verify(&digest, &self.fast))
            .unwrap_or(false)
    }
}

/// The DER of the `tbsCertificate` inside a certificate (RFC 5280 §4.1: the first element of the
/// outer SEQUENCE), exactly as signed.
fn tbs_slice(der: &[u8]) -> Option<&[u8]> {
    // A DER header: tag, then a length in short or long form; returns (header length, content length).
    fn header(b: &[u8]) -> Option<(usize, usize)> {
        if *b.first()? != 0x30 {
            return None;
        }
        let first = *b.get(1)?;
        if first < 0x80 {
            return Some((2, usize::from(first)));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        Some((2 + n, len))
    }
    let (outer, _) = header(der)?;
    let inner = der.get(outer..)?;
    let (h, len) = header(inner)?;
    inner.get(..h + len)
}

/// Checks one device certificate against the anchors (signature by a trusted CA's key).
fn check_cert(der: &[u8], anchors: &[Anchor]) -> std::result::Result<CertCheck, String> {
    let cert =
        Certificate::from_der(der).map_err(|e| format!("certificate is not DER X.509 ({e})"))?;
    let tbs = cert.tbs_certificate();
    let subject_cn = common_name(tbs.subject()).unwrap_or_default();
    let v = tbs.validity();
    let mut check = CertCheck {
        ca: None,
        serial: hex::encode(tbs.serial_number().as_bytes()),
        subject_cn,
        not_before: v.not_before.to_unix_duration().as_secs(),
        not_after: v.not_after.to_unix_duration().as_secs(),
    };
    if cert.signature_algorithm().oid != ecdsa::ECDSA_SHA256_OID {
        return Ok(check); // not a signature any anchor can have made
    }
    let tbs_der = tbs_slice(der).ok_or("certificate has no tbsCertificate")?;
    let signature = cert.signature().raw_bytes();
    for anchor in anchors {
        if anchor.cert.tbs_certificate().subject() == tbs.issuer()
            && anchor.signed(tbs_der, signature)
        {
            check.ca = Some(anchor.fingerprint.clone());
            break;
        }
    }
    Ok(check)
}

/// The first common name of a distinguished name.
pub fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    use der::asn1::{PrintableStringRef, Utf8StringRef};
    for atv in name.iter() {
        if atv.oid == const_oid::db::rfc4519::CN {
            if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                return Some(s.as_str().to_owned());
            }
            if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                return Some(s.as_str().to_owned());
            }
        }
    }
    None
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row: `device_id,product,family,hardware_revision,lifecycle,firmware_version,cohorts,certificate`.
    Csv,
    /// A JSON array of objects with the same keys.
    Json,
}

impl Format {
    /// By file extension (`.csv`, `.json`).
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

impl Registry {
    /// Opens (or creates) the registry at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // As the vault's (docs/log.md, durability table): an import whose sync failed stays in
        // the WAL, and a flush of some column families only (RocksDB's recovery from ENOSPC)
        // would let the next open replay it into the others alone: devices without their import.
        opts.set_atomic_flush(true);
        // Ten RocksDB info logs, not the default thousand (a new one at every open).
        opts.set_keep_log_file_num(10);
        let cfs = CFS.map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, &path, cfs).map_err(storage)?;
        Ok(Self {
            db,
            path,
            poisoned: std::sync::Mutex::new(None),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Registry(format!("column family {name} missing")))
    }

    /// Writes `batch` with the WAL synced, unless an earlier write failed: a failed write poisons
    /// this handle, as it does the vault's (only a reopen recovers from what is durable).
    fn synced(&self, batch: WriteBatch) -> Result<()> {
        let mut poisoned = self
            .poisoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cause) = poisoned.as_ref() {
            return Err(Error::RegistryPoisoned {
                path: self.path.clone(),
                cause: cause.clone(),
            });
        }
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(batch, &w).map_err(|e| {
            *poisoned = Some(e.to_string());
            Error::Registry(format!("{}: writing: {e}", self.path.display()))
        })
    }

    /// The error of the write that poisoned this handle, if one failed.
    pub fn poisoned(&self) -> Option<String> {
        self.poisoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The trusted manufacturer CAs.
    pub fn anchors(&self) -> Result<Vec<Anchor>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf("anchors")?, rocksdb::IteratorMode::Start)
        {
            let (fp, der) = item.map_err(storage)?;
            let cert = certs::from_der(&der, "trust anchor")?;
            out.push(Anchor::new(
                String::from_utf8_lossy(&fp).into_owned(),
                cert,
            )?);
        }
        Ok(out)
    }

    /// Trusts a manufacturer CA (PEM or DER certificate); devices whose certificate no anchor
    /// verified are checked again. Returns the CA fingerprint and how many devices it now verifies.
    pub fn trust(&self, ca_der: &[u8]) -> Result<(String, u64)> {
        let cert = certs::from_der(ca_der, "manufacturer CA")?;
        certs::verify_issued_by(&cert, &cert, "manufacturer CA (self-signed)")?;
        let fingerprint = hex::encode(certs::fingerprint(ca_der));
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf("anchors")?, fingerprint.as_bytes(), ca_der);
        let anchor = Anchor::new(fingerprint.clone(), cert)?;
        let mut verified = 0;
        for (device, der) in self.devices_with_certs()? {
            if device.cert.ca.is_none() {
                let check = check_cert(&der, std::slice::from_ref(&anchor))
                    .map_err(|why| Error::Registry(format!("device {}: {why}", device.id)))?;
                if check.ca.is_some() {
                    let d = Device {
                        cert: check,
                        ..device
                    };
                    batch.put_cf(
                        self.cf("devices")?,
                        d.id.as_bytes(),
                        serde_json::to_vec(&d).unwrap_or_default(),
                    );
                    verified += 1;
                }
            }
        }
        self.synced(batch)?;
        Ok((fingerprint, verified))
    }

    /// Imports a CRL (PEM or DER) signed by a trusted CA; returns how many serials it revokes.
    pub fn import_crl(&self, crl_der: &[u8]) -> Result<u64> {
        let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(crl_der)
            .map_err(|e| Error::Registry(format!("CRL is not DER ({e})")))?;
        let tbs = crl
            .tbs_cert_list
            .to_der()
            .map_err(|e| Error::Registry(format!("CRL re-encoding failed ({e})")))?;
        let sig = DerSignature::from_bytes(crl.signature.raw_bytes())
            .map_err(|e| Error::Registry(format!("CRL signature is not DER ECDSA ({e})")))?;
        let anchor = self
            .anchors()?
            .into_iter()
            .find(|a| {
                a.cert.tbs_certificate().subject() == &crl.tbs_cert_list.issuer
                    && a.key.verify(&tbs, &sig).is_ok()
            })
            .ok_or_else(|| {
                Error::Registry(format!(
                    "the CRL of {} is not signed by a trusted manufacturer CA",
                    crl.tbs_cert_list.issuer
                ))
            })?;
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for revoked in crl.tbs_cert_list.revoked_certificates.iter().flatten() {
            let mut key = anchor.fingerprint.clone().into_bytes();
            key.push(b':');
            key.extend_from_slice(hex::encode(revoked.serial_number.as_bytes()).as_bytes());
            let at = revoked.revocation_date.to_unix_duration().as_secs();
            batch.put_cf(self.cf("revoked")?, key, at.to_be_bytes());
            n += 1;
        }
        self.synced(batch)?;
        Ok(n)
    }

    /// When `device`'s certificate was revoked, if it was.
    pub fn revoked_at(&self, device: &Device) -> Result<Option<UnixTime>> {
        let Some(ca) = &device.cert.ca else {
            return Ok(None);
        };
        let key = format!("{ca}:{}", device.cert.serial);
        Ok(self
            .db
            .get_pinned_cf(self.cf("revoked")?, key.as_bytes())
            .map_err(storage)?
            .and_then(|v| <[u8; 8]>::try_from(&*v).ok())
            .map(|b| UnixTime(u64::from_be_bytes(b))))
    }

    /// Imports so far.
    pub fn imports(&self) -> Result<u64> {
        Ok(self
            .db
            .get_pinned(b"imports")
            .map_err(storage)?
            .and_then(|v| <[u8; 8]>::try_from(&*v).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// A device by id.
    pub fn device(&self, id: &str) -> Result<Option<Device>> {
        self.db
            .get_pinned_cf(self.cf("devices")?, id.as_bytes())
            .map_err(storage)?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| {
                    Error::Registry(format!("device {id}: stored record unreadable ({e})"))
                })
            })
            .transpose()
    }

    /// Every device, in id order (records decoded on every core).
    pub fn devices(&self) -> Result<Vec<Device>> {
        let mut raw: Vec<Box<[u8]>> = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf("devices")?, rocksdb::IteratorMode::Start)
        {
            raw.push(item.map_err(storage)?.1);
        }
        let parts = parallel::map_runs(
            &raw,
            || Error::Registry("registry reader panicked".into()),
            |_, part| {
                part.iter()
                    .map(|v| {
                        serde_json::from_slice(v)
                            .map_err(|e| Error::Registry(format!("stored record unreadable ({e})")))
                    })
                    .collect::<Result<Vec<Device>>>()
            },
        )?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Every revocation: `"<CA fingerprint>:<serial hex>"` → revocation time.
    pub fn revocations(&self) -> Result<HashMap<String, UnixTime>> {
        let mut out = HashMap::new();
        for item in self
            .db
            .iterator_cf(self.cf("revoked")?, rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(storage)?;
            if let Ok(t) = <[u8; 8]>::try_from(&*v) {
                out.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    UnixTime(u64::from_be_bytes(t)),
                );
            }
        }
        Ok(out)
    }

    fn devices_with_certs(&self) -> Result<Vec<(Device, Vec<u8>)>> {
        let cert_cf = self.cf("certs")?;
        self.devices()?
            .into_iter()
            .map(|d| {
                let der = self
                    .db
                    .get_cf(cert_cf, d.id.as_bytes())
                    .map_err(storage)?
                    .unwrap_or_default();
                Ok((d, der))
            })
            .collect()
    }

    /// What changed for `id`, import by import: `(import number, change)`.
    pub fn history(&self, id: &str) -> Result<Vec<(u64, String)>> {
        let mut out = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf("history")?, rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(storage)?;
            if k.len() > 8 && &k[8..] == id.as_bytes() {
                let mut n = [0u8; 8];
                n.copy_from_slice(&k[..8]);
                out.insert(
                    u64::from_be_bytes(n),
                    String::from_utf8_lossy(&v).into_owned(),
                );
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// The fields that differ, as `field: old -> new`.
fn diff(old: &Device, new: &Device) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: {a} -> {b}"));
        }
    };
    field("product", old.product.clone(), new.product.clone());
    field("family", old.family.clone(), new.family.clone());
    field(
        "hardware_revision",
        old.hardware_revision.clone(),
        new.hardware_revision.clone(),
    );
    field(
        "lifecycle",
        format!("{:?}", old.lifecycle),
        format!("{:?}", new.lifecycle),
    );
    field(
        "firmware_version",
        old.version.to_string(),
        new.version.to_string(),
    );
    field("cohorts", old.cohorts.join(";"), new.cohorts.join(";"));
    field(
        "certificate serial",
        old.cert.serial.clone(),
        new.cert.serial.clone(),
    );
    field(
        "certificate CA",
        format!("{:?}", old.cert.ca),
        format!("{:?}", new.cert.ca),
    );
    out
}

/// `Version` as `"MAJOR.MINOR.PATCH"` in stored records.
mod version_text {
    use cairn_verifier::types::Version;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Version, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let text = String::deserialize(d)?;
        Version::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("bad version {text:?}")))
    }
}
