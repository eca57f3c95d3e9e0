//! The two primitives every check rests on (SHA-256 and ECDSA P-256 verification), behind a trait
//! so a board can route them to hardware (the STM32H5 HASH and PKA blocks) or another library,
//! plus the key and signature encodings the formats use.

use crate::types::Hash;

/// An ECDSA P-256 public key as the 64 bytes `x || y` (SEC 1 uncompressed point without the 0x04
/// prefix). Whether the point is on the curve is checked by the backend when it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 64]);

/// DER prefix of a P-256 `SubjectPublicKeyInfo` (RFC 5480 §2: id-ecPublicKey, secp256r1) up to and
/// including the BIT STRING header; the uncompressed point (0x04 || x || y) follows.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Length of a P-256 `SubjectPublicKeyInfo` in DER.
pub const P256_SPKI_LEN: usize = 91;

impl PublicKey {
    /// From a SEC 1 uncompressed point (65 bytes, starting with 0x04).
    pub fn from_sec1_uncompressed(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x04, rest @ ..] => Some(Self(<[u8; 64]>::try_from(rest).ok()?)),
            _ => None,
        }
    }

    /// From a DER `SubjectPublicKeyInfo` for a P-256 key with an uncompressed point.
    pub fn from_spki_der(der: &[u8]) -> Option<Self> {
        let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
        Self::from_sec1_uncompressed(point)
    }

    /// The DER `SubjectPublicKeyInfo` of this key.
    pub fn spki_der(&self) -> [u8; P256_SPKI_LEN] {
        let mut out = [0u8; P256_SPKI_LEN];
        let (prefix, rest) = out.split_at_mut(P256_SPKI_PREFIX.len());
        prefix.copy_from_slice(&P256_SPKI_PREFIX);
        if let Some((tag, point)) = rest.split_first_mut() {
            *tag = 0x04;
            point.copy_from_slice(&self.0);
        }
        out
    }

    /// `SHA-256(DER SubjectPublicKeyInfo)`: the full key identifier. Its first four bytes are the
    /// checkpoint signature key id (Rekor's rule, design.md Formats 2) and the whole value is the
    /// COSE `kid` of release signatures (formats.md §4.2).
    pub fn key_hash(&self, crypto: &impl Crypto) -> Hash {
        let mut h = crypto.sha256();
        h.update(&self.spki_der());
        h.finish()
    }
}

/// An ECDSA P-256 signature as the 64 bytes `r || s` (each a 32-byte big-endian integer). This is
/// the COSE encoding (RFC 9053 §2.1); checkpoints carry the DER form, see [`der_to_raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

/// An incremental SHA-256 computation. `Clone` copies the running state: the MCUboot image check
/// forks one pass over flash into two digests that share a prefix (a hardware hash block such as
/// the STM32H5 HASH saves and restores its context through its context-swap registers).
pub trait Sha256: Clone {
    /// Absorbs `data`.
    fn update(&mut self, data: &[u8]);
    /// The digest of everything absorbed.
    fn finish(self) -> Hash;
}

/// The cryptographic backend: SHA-256 and ECDSA P-256 (FIPS 186-5) verification.
///
/// [`Software`] implements it with RustCrypto's `sha2` and `p256`. A board crate can implement it
/// with its hash and public-key accelerators; the test suite runs every backend against the same
/// deliveries.
pub trait Crypto {
    /// The hashing context type.
    type Sha256: Sha256;
    /// Starts a SHA-256 computation.
    fn sha256(&self) -> Self::Sha256;
    /// Whether `signature` is a valid ECDSA P-256 signature by `key` over the message whose SHA-256
    /// digest is `digest`. Must return `false` (never panic) for keys that are not on the curve and
    /// for `r` or `s` outside `1..n`.
    fn verify_p256(&self, key: &PublicKey, digest: &Hash, signature: &Signature) -> bool;

    /// Whether `signature` is a valid Ed25519 signature (RFC 8032 §5.1.7) by `key` over the
    /// concatenation of `message` (witness cosignatures, C2SP tlog-cosignature). The message is
    /// given in parts so a backend can stream it into SHA-512 without a buffer. Must return `false`
    /// (never panic) for a key that is not a valid point encoding and for a non-canonical `S`.
    fn verify_ed25519(&self, key: &[u8; 32], message: &[&[u8]], signature: &[u8; 64]) -> bool;

    /// SHA-256 of the concatenation of `parts`.
    fn sha256_of(&self, parts: &[&[u8]]) -> Hash {
        let mut h = self.sha256();
        for p in parts {
            h.update(p);
        }
        h.finish()
    }
}

/// Pure-software backend: `sha2` and `p256` from RustCrypto.
#[derive(Debug, Clone, Copy, Default)]
pub struct Software;

impl Sha256 for sha2::Sha256 {
    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(self, data);
    }

    fn finish(self) -> Hash {
        sha2::Digest::finalize(self).into()
    }
}

impl Crypto for Software {
    type Sha256 = sha2::Sha256;

    fn sha256(&self) -> sha2::Sha256 {
        <sha2::Sha256 as sha2::Digest>::new()
    }

    fn verify_p256(&self, key: &PublicKey, digest: &Hash, signature: &Signature) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let mut sec1 = [0u8; 65];
        let (tag, point) = sec1.split_at_mut(1);
        if let Some(t) = tag.first_mut() {
            *t = 0x04;
        }
        point.copy_from_slice(&key.0);
        let Ok(vk) = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1) else {
            return false;
        };
        let Ok(sig) = p256::ecdsa::Signature::from_slice(&signature.0) else {
            return false;
        };
        vk.verify_prehash(digest, &sig).is_ok()
    }

    fn verify_ed25519(&self, key: &[u8; 32], message: &[&[u8]], signature: &[u8; 64]) -> bool {
        let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        // `verify_stream` rejects a non-canonical S (>= l) when it is built.
        let Ok(mut stream) = vk.verify_stream(&sig) else {
            return false;
        };
        for part in message {
            stream.update(part);
        }
        stream.finalize_and_verify().is_ok()
    }
}

/// Converts a DER `ECDSA-Sig-Value` (RFC 5480 §2.2 / RFC 3279 §2.2.3: `SEQUENCE { r INTEGER,
/// s INTEGER }`) into `r || s`. Only strict DER is accepted: minimal lengths, minimal positive
/// integers, no trailing bytes. Returns `None` for anything else.
pub fn der_to_raw(der: &[u8]) -> Option<Signature> {
    let (&0x30, rest) = der.split_first()? else {
        return None;
    };
    let (&len, body) = rest.split_first()?;
    // A P-256 signature is at most 72 bytes, so the sequence length always has the short form.
    if len >= 0x80 || usize::from(len) != body.len() {
        return None;
    }
    let (r, body) = der_integer(body)?;
    let (s, body) = der_integer(body)?;
    if !body.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    let (ro, so) = out.split_at_mut(32);
    ro.get_mut(32usize.checked_sub(r.len())?..)?
        .copy_from_slice(r);
    so.get_mut(32usize.checked_sub(s.len())?..)?
        .copy_from_slice(s);
    Some(Signature(out))
}

/// One DER INTEGER that must be positive and fit in 32 bytes; returns its magnitude bytes without
/// the sign-padding zero, and the rest of the input.
fn der_integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&0x02, rest) = input.split_first()? else {
        return None;
    };
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if len == 0 || len > 33 || rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    let magnitude = match value {
        // negative numbers are not valid r or s
        [first, ..] if first & 0x80 != 0 => return None,
        // a leading zero is only allowed (and required) before a byte with the high bit set
        [0, second, ..] if second & 0x80 == 0 => return None,
        [0, tail @ ..] if !tail.is_empty() => tail,
        _ => value,
    };
    (magnitude.len() <= 32).then_some((magnitude, rest))
}

/// Converts `r || s` into strict DER, as checkpoints carry it. Written into `out`; returns the
/// number of bytes used (at most 72).
pub fn raw_to_der(sig: &Signature, out: &mut [u8; 72]) -> usize {
    fn integer(value: &[u8], out: &mut [u8], pos: &mut usize) {
        let start = value
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(value.len().saturating_sub(1));
        let magnitude = value.get(start..).unwrap_or(&[0]);
        let pad = magnitude.first().is_some_and(|b| b & 0x80 != 0);
        let len = magnitude.len().saturating_add(usize::from(pad));
        let mut put = |b: u8| {
            if let Some(slot) = out.get_mut(*pos) {
                *slot = b;
            }
            *pos = pos.saturating_add(1);
        };
        put(0x02);
        put(u8::try_from(len).unwrap_or(0));
        if pad {
            put(0);
        }
        for &b in magnitude {
            put(b);
        }
    }
    let (r, s) = sig.0.split_at(32);
    let mut pos = 2;
    integer(r, out, &mut pos);
    integer(s, out, &mut pos);
    out[0] = 0x30;
    out[1] = u8::try_from(pos.saturating_sub(2)).unwrap_or(0);
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_round_trip_edge_values() {
        let mut cases = [[0u8; 64]; 5];
        cases[0][31] = 1; // r = 1
        cases[0][63] = 1; // s = 1
        cases[1] = [0xff; 64]; // both need the sign pad
        cases[2][0] = 0x7f; // no pad, full length
        cases[2][32] = 0x80;
        cases[3][5] = 0x01; // leading zeros stripped
        cases[3][40] = 0x01;
        cases[4] = [0x80; 64];
        for raw in cases {
            let sig = Signature(raw);
            let mut der = [0u8; 72];
            let n = raw_to_der(&sig, &mut der);
            assert_eq!(der_to_raw(&der[..n]), Some(sig), "{raw:x?}");
        }
    }

    #[test]
    fn der_rejects_non_strict() {
        // r = 1, s = 1 in strict DER
        let good = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01];
        assert!(der_to_raw(&good).is_some());
        let bad: [&[u8]; 8] = [
            &[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01], // non-minimal zero pad
            &[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01],       // negative r
            &[0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00], // trailing byte inside
            &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00], // trailing byte outside
            &[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],       // wrong tag
            &[0x30, 0x06, 0x02, 0x00, 0x02, 0x01, 0x01, 0x00],       // empty integer
            &[0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01], // long-form length
            &[],
        ];
        for b in bad {
            assert_eq!(der_to_raw(b), None, "{b:x?}");
        }
        // 33 bytes of magnitude cannot be a P-256 scalar
        let mut long = [0u8; 2 + 2 + 34 + 3];
        long[..4].copy_from_slice(&[0x30, 39, 0x02, 34]);
        long[4] = 0x00;
        long[5] = 0x80;
        long[38..].copy_from_slice(&[0x02, 0x01, 0x01]);
        assert_eq!(der_to_raw(&long), None);
    }

    #[test]
    fn spki_round_trip() {
        let key = PublicKey([7u8; 64]);
        let der = key.spki_der();
        assert_eq!(PublicKey::from_spki_der(&der), Some(key));
        assert_eq!(PublicKey::from_spki_der(&der[..90]), None);
    }
}
