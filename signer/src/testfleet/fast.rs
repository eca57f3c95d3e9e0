//! The synthetic fleet at benchmark scale (millions of devices): the same identity certificates
//! as [`super::ManufacturerCa::issue`] would build, byte for byte up to the signature, at a
//! fraction of the cost.
//!
//! What made the builder slow (283 s for a million devices on two cores) was two RustCrypto
//! scalar multiplications per device and the generic builder around them. Here the device key's
//! public point is OpenSSL's fixed-base multiplication (its P-256 precomputed tables), the
//! certificate is the builder's own DER for one device with the three fields that differ
//! patched in (serial, common name, public point), and the CA's signature is OpenSSL's ECDSA.
//! The private keys are the builder's (same seeds), so the public keys are the same; the
//! signatures differ only in their random nonce. The unit test below checks the patched TBS
//! against the builder's for devices on both sides of every serial-length boundary.

use std::io::Write;

use base64ct::Encoding as _;
use cairn_verifier::types::UnixTime;
use der::{Decode as _, Encode as _};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use super::{ManufacturerCa, fail};
use crate::error::{Error, Result};
use crate::parallel;

/// Devices per parallel batch: the CSV of one batch (about 600 bytes a device) is what is held
/// in memory besides the CA, whatever the fleet's size.
const BATCH: u64 = 1 << 16;

fn ossl(what: &str) -> impl FnOnce(openssl::error::ErrorStack) -> Error + '_ {
    move |e| fail(what)(e.to_string())
}

/// The positive DER INTEGER content of `v` (big-endian, minimal, a leading zero when the top bit
/// is set), as `SerialNumber::from(u64)` encodes it.
fn integer(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    let mut out = Vec::with_capacity(9);
    if bytes[first] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[first..]);
    out
}

/// The builder's private key bytes of device `serial` (`key_from_seed("cairn test device", …)`).
fn device_scalar(serial: u64) -> [u8; 32] {
    let mut counter = 0u32;
    loop {
        let mut h = Sha256::new();
        h.update(b"cairn test device");
        h.update(serial.to_be_bytes());
        h.update(counter.to_be_bytes());
        let bytes: [u8; 32] = h.finalize().into();
        if p256::SecretKey::from_slice(&bytes).is_ok() {
            return bytes;
        }
        counter += 1;
    }
}

/// DER tag and length header of `len` content bytes.
fn header(tag: u8, len: usize, out: &mut Vec<u8>) {
    out.push(tag);
    match u8::try_from(len) {
        Ok(l) if l < 0x80 => out.push(l),
        Ok(l) => out.extend_from_slice(&[0x81, l]),
        Err(_) => {
            let l = u16::try_from(len).expect("a certificate under 64 KiB");
            out.push(0x82);
            out.extend_from_slice(&l.to_be_bytes());
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One device certificate's DER as the builder lays it out, with where the fields that differ
/// from device to device are.
struct Template {
    tbs: Vec<u8>,
    serial_at: usize,
    serial_len: usize,
    cn_at: usize,
    point_at: usize,
    algorithm: Vec<u8>,
}

impl Template {
    /// The builder's certificate of device `i` (serial `i + 1000`), taken apart.
    fn new(ca: &ManufacturerCa, i: u64, from: u64, until: u64) -> Result<Self> {
        let id = super::synthetic_id(i);
        let serial = i + 1000;
        let cert = Certificate::from_der(&ca.issue(&id, serial, from, until)?)
            .map_err(|e| fail("template")(e.to_string()))?;
        let tbs = cert
            .tbs_certificate()
            .to_der()
            .map_err(|e| fail("template")(e.to_string()))?;
        let algorithm = cert
            .signature_algorithm()
            .to_der()
            .map_err(|e| fail("template")(e.to_string()))?;
        let point = cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
            .to_vec();
        let serial_bytes = integer(serial);
        // TBSCertificate ::= SEQUENCE { [0] version (a0 03 02 01 02), serialNumber INTEGER, …
        let version = find(&tbs, &[0xa0, 0x03, 0x02, 0x01, 0x02])
            .ok_or_else(|| fail("template")("no version field".into()))?;
        let serial_at = version + 7;
        let missing = |what: &str| fail("template")(format!("{what} not found"));
        let length = u8::try_from(serial_bytes.len()).unwrap_or(0);
        if tbs.get(version + 5..serial_at) != Some(&[0x02, length][..])
            || tbs.get(serial_at..serial_at + serial_bytes.len()) != Some(&serial_bytes[..])
        {
            return Err(missing("serial"));
        }
        Ok(Self {
            serial_at,
            serial_len: serial_bytes.len(),
            cn_at: find(&tbs, id.as_bytes()).ok_or_else(|| missing("common name"))?,
            point_at: find(&tbs, &point).ok_or_else(|| missing("public key"))?,
            tbs,
            algorithm,
        })
    }

    /// The TBS of device `i` from this template (its serial must have the template's length).
    fn tbs(&self, i: u64, point: &[u8]) -> Vec<u8> {
        let mut tbs = self.tbs.clone();
        tbs[self.serial_at..self.serial_at + self.serial_len].copy_from_slice(&integer(i + 1000));
        let id = super::synthetic_id(i);
        tbs[self.cn_at..self.cn_at + id.len()].copy_from_slice(id.as_bytes());
        tbs[self.point_at..self.point_at + point.len()].copy_from_slice(point);
        tbs
    }
}

/// Per-thread OpenSSL state: the curve, the CA's key, a scratch context.
struct Signer {
    group: EcGroup,
    ca: EcKey<openssl::pkey::Private>,
    ctx: BigNumContext,
}

impl Signer {
    fn new(ca: &ManufacturerCa) -> Result<Self> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ossl("curve"))?;
        let mut ctx = BigNumContext::new().map_err(ossl("context"))?;
        let public = EcPoint::from_bytes(
            &group,
            ca.key.verifying_key().to_sec1_point(false).as_bytes(),
            &mut ctx,
        )
        .map_err(ossl("CA key"))?;
        let private = BigNum::from_slice(&ca.key.to_bytes()).map_err(ossl("CA key"))?;
        let ca =
            EcKey::from_private_components(&group, &private, &public).map_err(ossl("CA key"))?;
        Ok(Self { group, ca, ctx })
    }

    /// Device `serial`'s public point, uncompressed SEC1.
    fn point(&mut self, serial: u64) -> Result<Vec<u8>> {
        let scalar = BigNum::from_slice(&device_scalar(serial)).map_err(ossl("device key"))?;
        let mut point = EcPoint::new(&self.group).map_err(ossl("device key"))?;
        point
            .mul_generator2(&self.group, &scalar, &mut self.ctx)
            .map_err(ossl("device key"))?;
        point
            .to_bytes(
                &self.group,
                PointConversionForm::UNCOMPRESSED,
                &mut self.ctx,
            )
            .map_err(ossl("device key"))
    }

    /// The certificate: `tbs` signed by the CA (ECDSA with SHA-256).
    fn certificate(&self, tbs: &[u8], algorithm: &[u8]) -> Result<Vec<u8>> {
        let digest = Sha256::digest(tbs);
        let sig = EcdsaSig::sign(&digest, &self.ca)
            .and_then(|s| s.to_der())
            .map_err(ossl("signature"))?;
        let mut bits = Vec::with_capacity(sig.len() + 4);
        header(0x03, sig.len() + 1, &mut bits);
        bits.push(0);
        bits.extend_from_slice(&sig);
        let mut out = Vec::with_capacity(tbs.len() + algorithm.len() + bits.len() + 4);
        header(0x30, tbs.len() + algorithm.len() + bits.len(), &mut out);
        out.extend_from_slice(tbs);
        out.extend_from_slice(algorithm);
        out.extend_from_slice(&bits);
        Ok(out)
    }
}

/// Writes the CSV of the synthetic fleet of `n` healthy devices (the rows
/// [`super::synthetic`] returns, header first) to `out`, in batches on every core.
pub fn write_synthetic(n: u64, now: UnixTime, out: &mut impl Write) -> Result<ManufacturerCa> {
    let ca = ManufacturerCa::new("Smart Controller Device CA", 1, now)?;
    let year = 365 * 86_400;
    let (from, until) = (now.0 - 2 * year, now.0 + 10 * year);
    // One template per serial length the fleet's serials (1000 … n + 999) take, each built from
    // the first device whose serial has that length.
    let templates = (integer(1000).len()..=integer(n + 999).len())
        .map(|len| {
            let smallest = 1u64 << (8 * (len - 1)).saturating_sub(1);
            Template::new(&ca, smallest.max(1000) - 1000, from, until)
        })
        .collect::<Result<Vec<Template>>>()?;
    let io = |e: std::io::Error| Error::Registry(format!("writing the fleet: {e}"));
    out.write_all(super::CSV_HEADER.as_bytes()).map_err(io)?;
    let ids: Vec<u64> = (0..n).collect();
    for batch in ids.chunks(usize::try_from(BATCH).unwrap_or(usize::MAX)) {
        let parts = parallel::map_runs(
            batch,
            || Error::Registry("fleet worker panicked".into()),
            |_, part| {
                let mut signer = Signer::new(&ca)?;
                let mut csv = Vec::with_capacity(part.len() * 640);
                for &i in part {
                    let len = integer(i + 1000).len();
                    let template = templates
                        .iter()
                        .find(|t| t.serial_len == len)
                        .ok_or_else(|| fail("template")(format!("serial length {len}")))?;
                    let point = signer.point(i + 1000)?;
                    let der = signer.certificate(&template.tbs(i, &point), &template.algorithm)?;
                    csv.extend_from_slice(super::synthetic_fields(i).as_bytes());
                    csv.extend_from_slice(base64ct::Base64::encode_string(&der).as_bytes());
                    csv.push(b'\n');
                }
                Ok(csv)
            },
        )?;
        for part in parts {
            out.write_all(&part).map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime(1_795_651_200);

    #[test]
    fn integer_encoding_matches_der() {
        for v in [1000u64, 32_767, 32_768, 8_388_607, 8_388_608, u64::MAX] {
            let der =
                x509_cert::serial_number::SerialNumber::<x509_cert::certificate::Rfc5280>::from(v);
            assert_eq!(integer(v), der.as_bytes(), "{v}");
        }
    }

    /// The patched certificates are the builder's, byte for byte up to the signature, on both
    /// sides of the serial-length boundary (device 31,767 has serial 32,767), and every one
    /// verifies under the CA.
    #[test]
    fn same_certificates_as_the_builder() {
        let ca = ManufacturerCa::new("Smart Controller Device CA", 1, NOW).unwrap();
        let year = 365 * 86_400;
        let (from, until) = (NOW.0 - 2 * year, NOW.0 + 10 * year);
        let small = Template::new(&ca, 0, from, until).unwrap();
        let large = Template::new(&ca, 40_000, from, until).unwrap();
        let mut signer = Signer::new(&ca).unwrap();
        let ca_key = openssl::pkey::PKey::from_ec_key(
            EcKey::from_public_key(&signer.group, signer.ca.public_key()).unwrap(),
        )
        .unwrap();
        for i in [0u64, 1, 999, 31_766, 31_767, 31_768, 40_000, 2_999_999] {
            let t = if integer(i + 1000).len() == small.serial_len {
                &small
            } else {
                &large
            };
            let point = signer.point(i + 1000).unwrap();
            let ours = signer.certificate(&t.tbs(i, &point), &t.algorithm).unwrap();
            let theirs = ca
                .issue(&super::super::synthetic_id(i), i + 1000, from, until)
                .unwrap();
            let (ours, theirs) = (
                Certificate::from_der(&ours).unwrap(),
                Certificate::from_der(&theirs).unwrap(),
            );
            assert_eq!(
                ours.tbs_certificate().to_der().unwrap(),
                theirs.tbs_certificate().to_der().unwrap(),
                "device {i}"
            );
            let x509 = openssl::x509::X509::from_der(&ours.to_der().unwrap()).unwrap();
            assert!(x509.verify(&ca_key).unwrap(), "device {i}");
        }
    }

    /// The streamed CSV has the header and one row per device, each with its own certificate.
    #[test]
    fn writes_one_row_per_device() {
        let mut csv = Vec::new();
        write_synthetic(5, NOW, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], super::super::CSV_HEADER.trim_end());
        assert_eq!(lines.len(), 6);
        assert!(lines[5].starts_with("sc-0000005,Smart Controller,STM32H5,"));
    }
}
