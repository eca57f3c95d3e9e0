//! Witness cosignatures on checkpoints (C2SP tlog-cosignature v1, Ed25519) and the device's k-of-n
//! witness policy.
//!
//! A witness cosigns a checkpoint only after checking it is consistent with the last one it saw for
//! that log (C2SP tlog-witness). A device that needs `k` of its `n` pinned witnesses to have cosigned
//! a checkpoint can only be shown a split view if `k` witnesses collude with the log's key holder
//! (docs/witness.md).
//!
//! ```text
//! — <witness name> base64(key_id[4] || timestamp[8, big-endian] || Ed25519 signature[64])
//! ```
//!
//! - key id: the first four bytes of `SHA-256(name || "\n" || 0x04 || public key)`
//!   (C2SP tlog-cosignature "Format", signed-note algorithm 0x04);
//! - signed message: `"cosignature/v1\n" || "time " || decimal(timestamp) || "\n" || note text`, the
//!   note text being the whole checkpoint body with its final newline and without signature lines
//!   (C2SP tlog-cosignature "Ed25519 signed message");
//! - the timestamp is POSIX seconds and must not exceed 2^63 - 1.
//!
//! Lines that do not match a pinned witness's name and key id are ignored, as C2SP signed-note and
//! tlog-witness require of verifiers (a witness that rotates its key, or a witness this device does
//! not know, must not make a checkpoint unusable); they are counted, so that a missing quorum can
//! say so. A line that does match a pinned witness but does not verify makes the check fail
//! (`Error::BadCosignature`), as Go's `note.Open` does for a known key.

use base64ct::{Base64, Encoding};

use crate::crypto::Crypto;
use crate::error::{Error, PolicyError};
use crate::note::{Checkpoint, LogKey};

/// The signed-note signature type of an Ed25519 cosignature/v1 (C2SP signed-note, "Signature types").
pub const COSIGNATURE_V1_ALG: u8 = 0x04;
/// Bytes of a decoded cosignature: key id, timestamp, Ed25519 signature.
pub const COSIGNATURE_LEN: usize = 4 + 8 + 64;
/// Base64 characters of an encoded cosignature (76 bytes, padded).
pub const COSIGNATURE_BASE64_LEN: usize = 104;
/// The header line of the signed message (domain separation).
pub const COSIGNATURE_HEADER: &str = "cosignature/v1\n";
/// Largest timestamp a cosignature may carry (C2SP tlog-cosignature: at most 2^63 - 1).
pub const MAX_TIMESTAMP: u64 = u64::MAX >> 1;

/// A witness a device pins: its name (the key name on signature lines) and Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessKey<'a> {
    /// The witness's key name (a schema-less URL, by C2SP convention).
    pub name: &'a str,
    /// The Ed25519 public key (RFC 8032 §5.1.5 encoding).
    pub public: [u8; 32],
    /// `SHA-256(name || "\n" || 0x04 || public)[..4]`.
    pub key_id: [u8; 4],
}

impl<'a> WitnessKey<'a> {
    /// Pins `public` as the key of the witness `name`. Returns `None` if the name could not appear on
    /// a signature line (C2SP signed-note: non-empty, no spaces, no `+`).
    pub fn new(name: &'a str, public: [u8; 32], crypto: &impl Crypto) -> Option<Self> {
        if !crate::note::valid_key_name(name) {
            return None;
        }
        Some(Self {
            name,
            public,
            key_id: key_id(name, &public, crypto),
        })
    }
}

/// The signed-note key id of an Ed25519 cosigner (C2SP tlog-cosignature "Format").
pub fn key_id(name: &str, public: &[u8; 32], crypto: &impl Crypto) -> [u8; 4] {
    let hash = crypto.sha256_of(&[name.as_bytes(), b"\n", &[COSIGNATURE_V1_ALG], public]);
    [hash[0], hash[1], hash[2], hash[3]]
}

/// The witnesses a device pins and how many of them must have cosigned a checkpoint.
///
/// `N` is the number of pinned witnesses (a const generic: the policy lives in flash, no heap).
/// [`WitnessPolicy::unwitnessed`] is the policy of a device that checks no cosignature, and says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessPolicy<'a, const N: usize> {
    witnesses: [WitnessKey<'a>; N],
    threshold: usize,
}

impl<'a, const N: usize> WitnessPolicy<'a, N> {
    /// A policy needing `threshold` of `witnesses`. Refuses a threshold of zero or above `N`, and two
    /// witnesses with the same name or the same public key (one witness must never count twice:
    /// the Ed25519 cosignature does not commit to the witness name, C2SP tlog-cosignature).
    pub fn new(witnesses: [WitnessKey<'a>; N], threshold: usize) -> Result<Self, PolicyError> {
        check_policy(&witnesses, threshold)?;
        Ok(Self {
            witnesses,
            threshold,
        })
    }

    /// The pinned witnesses.
    pub fn witnesses(&self) -> &[WitnessKey<'a>] {
        &self.witnesses
    }

    /// How many distinct pinned witnesses must have cosigned.
    pub fn threshold(&self) -> usize {
        self.threshold
    }
}

impl WitnessPolicy<'_, 0> {
    /// No witness is pinned and no cosignature is checked: the device trusts the log key holder
    /// alone not to show it a split view (what cairn devices did before witnesses).
    pub const fn unwitnessed() -> Self {
        Self {
            witnesses: [],
            threshold: 0,
        }
    }
}

/// The rules every policy obeys, with `N` pinned witnesses or a list of them (the host's
/// [`report`]): at least one witness, a threshold within `1..=n`, no two witnesses with the same
/// name or the same public key.
pub fn check_policy(witnesses: &[WitnessKey<'_>], threshold: usize) -> Result<(), PolicyError> {
    let n = witnesses.len();
    if n == 0 {
        return Err(PolicyError::NoWitnesses);
    }
    if threshold == 0 || threshold > n {
        return Err(PolicyError::Threshold {
            threshold,
            witnesses: n,
        });
    }
    for (i, a) in witnesses.iter().enumerate() {
        for b in witnesses.iter().skip(i.saturating_add(1)) {
            if a.name == b.name || a.public == b.public {
                return Err(PolicyError::DuplicateWitness);
            }
        }
    }
    Ok(())
}

/// A decoded cosignature (the base64 of a signature line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosignature {
    /// The signed-note key id.
    pub key_id: [u8; 4],
    /// POSIX seconds at which the witness cosigned.
    pub timestamp: u64,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

/// Why a signature line's base64 is not a cosignature/v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// Not 104 characters of canonical base64 of 76 bytes (key id, timestamp, signature).
    #[error("not a cosignature/v1: {len} base64 characters, 104 expected")]
    Length {
        /// The base64 length found.
        len: usize,
    },
    /// Not canonical base64.
    #[error("cosignature is not canonical base64")]
    Base64,
    /// The timestamp exceeds 2^63 - 1.
    #[error("cosignature timestamp {0} exceeds 2^63 - 1")]
    Timestamp(u64),
}

impl Cosignature {
    /// Decodes the base64 part of a signature line.
    pub fn parse(base64: &str) -> Result<Self, CosignatureError> {
        if base64.len() != COSIGNATURE_BASE64_LEN {
            return Err(CosignatureError::Length { len: base64.len() });
        }
        let mut buf = [0u8; COSIGNATURE_LEN];
        let decoded = Base64::decode(base64, &mut buf).map_err(|_| CosignatureError::Base64)?;
        let (key_id, rest) = decoded
            .split_first_chunk::<4>()
            .ok_or(CosignatureError::Base64)?;
        let (timestamp, signature) = rest
            .split_first_chunk::<8>()
            .ok_or(CosignatureError::Base64)?;
        let signature = <[u8; 64]>::try_from(signature).map_err(|_| CosignatureError::Base64)?;
        let timestamp = u64::from_be_bytes(*timestamp);
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::Timestamp(timestamp));
        }
        Ok(Self {
            key_id: *key_id,
            timestamp,
            signature,
        })
    }

    /// Whether this is `witness`'s valid cosignature over the note text `text`.
    pub fn verifies(&self, witness: &WitnessKey<'_>, text: &str, crypto: &impl Crypto) -> bool {
        if self.key_id != witness.key_id {
            return false;
        }
        let mut digits = [0u8; 20];
        let time = decimal(self.timestamp, &mut digits);
        crypto.verify_ed25519(
            &witness.public,
            &[
                COSIGNATURE_HEADER.as_bytes(),
                b"time ",
                time,
                b"\n",
                text.as_bytes(),
            ],
            &self.signature,
        )
    }
}

/// `n` in ASCII decimal without leading zeros, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    while let Some(i) = start.checked_sub(1) {
        start = i;
        if let Some(d) = buf.get_mut(i) {
            // n % 10 < 10: the cast cannot truncate.
            *d = b'0'.saturating_add(u8::try_from(n % 10).unwrap_or(0));
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

/// The outcome of a satisfied policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    /// Distinct pinned witnesses whose cosignature verified.
    pub have: usize,
    /// The policy's threshold.
    pub need: usize,
}

/// Checks that at least `policy.threshold()` distinct pinned witnesses cosigned `checkpoint`.
///
/// The log's own signature is not checked here ([`Checkpoint::verify`] does that, first). Every
/// pinned witness's first matching line is verified, so at most `N` Ed25519 verifications run
/// whatever the note holds; a later line from a witness already counted is skipped.
pub fn verify_quorum<const N: usize>(
    checkpoint: &Checkpoint<'_>,
    log: &LogKey<'_>,
    policy: &WitnessPolicy<'_, N>,
    crypto: &impl Crypto,
) -> Result<Quorum, Error> {
    let need = policy.threshold;
    if N == 0 {
        return Ok(Quorum { have: 0, need });
    }
    let mut counted = [false; N];
    let mut unknown = 0usize;
    for line in checkpoint.signature_lines() {
        let line = line.map_err(Error::MalformedCheckpoint)?;
        match classify(&line, log, &policy.witnesses) {
            Line::Log => {}
            Line::Unknown => unknown = unknown.saturating_add(1),
            Line::Malformed(index) => return Err(Error::BadCosignature { witness: index }),
            Line::Witness(index, witness, cosignature) => {
                let Some(seen) = counted.get_mut(index) else {
                    continue;
                };
                if *seen {
                    continue;
                }
                if !cosignature.verifies(witness, checkpoint.text, crypto) {
                    return Err(Error::BadCosignature { witness: index });
                }
                *seen = true;
            }
        }
    }
    let have = counted.iter().filter(|c| **c).count();
    if have >= need {
        Ok(Quorum { have, need })
    } else {
        Err(Error::NoQuorum {
            have,
            need,
            unknown,
        })
    }
}

/// What one signature line of a checkpoint is to a policy.
enum Line<'p, 'w> {
    /// The log's own line.
    Log,
    /// Neither the log's nor a pinned witness's key (another name, or the name with another key
    /// id or signature type): ignored, counted.
    Unknown,
    /// A line with a pinned witness's name and key id that does not decode as a cosignature/v1:
    /// tampered.
    Malformed(usize),
    /// A cosignature/v1 with a pinned witness's name and key id, not yet verified.
    Witness(usize, &'p WitnessKey<'w>, Cosignature),
}

/// Sorts one signature line: the one rule the device ([`verify_quorum`]) and the host
/// (`report::report`) share.
fn classify<'p, 'w>(
    line: &crate::note::NoteSignature<'_>,
    log: &LogKey<'_>,
    witnesses: &'p [WitnessKey<'w>],
) -> Line<'p, 'w> {
    if line.name == log.name {
        return Line::Log;
    }
    let Some((index, witness)) = witnesses
        .iter()
        .enumerate()
        .find(|(_, w)| w.name == line.name)
    else {
        return Line::Unknown;
    };
    // Another signature type or another key under the same name: not this pinned key.
    let Ok(cosignature) = Cosignature::parse(line.base64) else {
        if line.base64.len() == COSIGNATURE_BASE64_LEN && key_id_prefix(line.base64, witness) {
            return Line::Malformed(index);
        }
        return Line::Unknown;
    };
    if cosignature.key_id != witness.key_id {
        return Line::Unknown;
    }
    Line::Witness(index, witness, cosignature)
}

/// Whether the first four decoded bytes of `base64` are `witness`'s key id (a line that claims to
/// be this witness's cosignature even though the rest does not decode, for example an out-of-range
/// timestamp).
fn key_id_prefix(base64: &str, witness: &WitnessKey<'_>) -> bool {
    let mut buf = [0u8; 6];
    let Some(head) = base64.get(..8) else {
        return false;
    };
    Base64::decode(head, &mut buf)
        .ok()
        .and_then(|b| b.first_chunk::<4>().copied())
        == Some(witness.key_id)
}

#[cfg(feature = "alloc")]
pub mod report;

/// Producing cosignatures (host side: the witness, tests).
#[cfg(feature = "alloc")]
pub mod write {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use base64ct::{Base64, Encoding};

    use super::{COSIGNATURE_HEADER, COSIGNATURE_LEN, WitnessKey};
    use crate::note::SIGNATURE_PREFIX;

    /// The message a witness signs for the note text `text` at `timestamp`.
    pub fn signed_message(text: &str, timestamp: u64) -> Vec<u8> {
        format!("{COSIGNATURE_HEADER}time {timestamp}\n{text}").into_bytes()
    }

    /// The signature line carrying `signature` by `witness` at `timestamp`.
    pub fn line(witness: &WitnessKey<'_>, timestamp: u64, signature: &[u8; 64]) -> String {
        let mut blob = Vec::with_capacity(COSIGNATURE_LEN);
        blob.extend_from_slice(&witness.key_id);
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(signature);
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            witness.name,
            Base64::encode_string(&blob)
        )
    }

    /// Cosigns the note text `text` with the Ed25519 key `key` (whose public half `witness` pins)
    /// at `timestamp`; returns the signature line.
    pub fn cosign(
        text: &str,
        witness: &WitnessKey<'_>,
        key: &ed25519_dalek::SigningKey,
        timestamp: u64,
    ) -> String {
        use ed25519_dalek::Signer;
        let signature = key.sign(&signed_message(text, timestamp)).to_bytes();
        line(witness, timestamp, &signature)
    }
}
