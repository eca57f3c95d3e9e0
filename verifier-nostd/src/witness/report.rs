//! The host's view of a witness policy (the signer after collecting cosignatures, `cairn audit
//! verify`, the simulated fleet's configuration): witnesses pinned from their C2SP verifier keys,
//! and a checkpoint's standing against a k-of-n policy witness by witness, so that a missing
//! quorum names the witnesses that are missing.
//!
//! The lines are sorted by the same rule as the device's [`super::verify_quorum`]: a checkpoint
//! meets a policy here exactly when a device with that policy accepts its cosignatures.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;

use base64ct::{Base64, Encoding};

use super::{COSIGNATURE_V1_ALG, Line, WitnessKey, check_policy, classify, key_id};
use crate::crypto::Crypto;
use crate::error::PolicyError;
use crate::note::{Checkpoint, LogKey};

/// Why a verifier key (`<name>+<hex key id>+<base64(0x04 || Ed25519 public key)>`, C2SP
/// signed-note "Verifier keys") cannot pin a witness.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VkeyError {
    /// Not three `+`-separated fields with a valid key name.
    #[error("not a verifier key <name>+<hex key id>+<base64 key>: {0:?}")]
    Syntax(String),
    /// The key is not an Ed25519 cosignature/v1 key (type 0x04, 32 bytes).
    #[error("verifier key of {0:?} is not an Ed25519 cosignature/v1 key (type 0x04, 32 bytes)")]
    NotCosignatureV1(String),
    /// The key id is not the one the name and key give (C2SP tlog-cosignature "Format").
    #[error("verifier key of {0:?}: the key id does not match the name and key")]
    KeyId(String),
}

/// A witness as its verifier key names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vkey {
    /// The witness's key name.
    pub name: String,
    /// Its Ed25519 public key.
    pub public: [u8; 32],
}

impl Vkey {
    /// Parses and checks a C2SP verifier key of type 0x04 (what `cairn-witness vkey` prints).
    pub fn parse(vkey: &str, crypto: &impl Crypto) -> Result<Self, VkeyError> {
        let syntax = || VkeyError::Syntax(vkey.to_string());
        // The base64 key may hold `+`; the name and the hex key id cannot.
        let mut fields = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(syntax());
        };
        if !crate::note::valid_key_name(name) || id.len() != 8 {
            return Err(syntax());
        }
        let material = Base64::decode_vec(key).map_err(|_| syntax())?;
        let (Some(&COSIGNATURE_V1_ALG), Ok(public)) = (
            material.first(),
            <[u8; 32]>::try_from(material.get(1..).unwrap_or_default()),
        ) else {
            return Err(VkeyError::NotCosignatureV1(name.to_string()));
        };
        let mut expected = [0u8; 8];
        for (hex, byte) in expected
            .chunks_exact_mut(2)
            .zip(key_id(name, &public, crypto))
        {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            for (h, nibble) in hex.iter_mut().zip([byte >> 4, byte & 0xf]) {
                *h = DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
            }
        }
        if !id.eq_ignore_ascii_case(core::str::from_utf8(&expected).unwrap_or_default()) {
            return Err(VkeyError::KeyId(name.to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            public,
        })
    }

    /// The pinned form (borrows the name).
    pub fn key(&self, crypto: &impl Crypto) -> Option<WitnessKey<'_>> {
        WitnessKey::new(&self.name, self.public, crypto)
    }
}

/// One pinned witness's cosignature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The witness's name.
    pub name: String,
    /// When it cosigned (POSIX seconds, the witness's clock).
    pub timestamp: u64,
}

/// A checkpoint against a k-of-n policy, witness by witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReport {
    /// k: how many distinct pinned witnesses must have cosigned.
    pub threshold: usize,
    /// The pinned witnesses whose cosignature verified, in policy order.
    pub cosigned: Vec<Cosigned>,
    /// The pinned witnesses with no cosignature on the checkpoint, in policy order.
    pub missing: Vec<String>,
    /// The pinned witnesses with a line (their name and key id) that does not verify: a device
    /// refuses the checkpoint whatever the count (`Error::BadCosignature`).
    pub bad: Vec<String>,
    /// Signature lines from neither the log nor a pinned witness (ignored, as devices do).
    pub unknown: usize,
}

impl QuorumReport {
    /// Whether a device with this policy accepts the checkpoint's cosignatures.
    pub fn met(&self) -> bool {
        self.bad.is_empty() && self.cosigned.len() >= self.threshold
    }

    /// One line for people: `2 of 3 cosigned (2 needed): a, b; missing: c`.
    pub fn summary(&self) -> String {
        let n = self.cosigned.len() + self.missing.len() + self.bad.len();
        let mut s = alloc::format!(
            "{} of {n} pinned witnesses cosigned ({} needed)",
            self.cosigned.len(),
            self.threshold
        );
        if !self.cosigned.is_empty() {
            let names: Vec<&str> = self.cosigned.iter().map(|c| c.name.as_str()).collect();
            s.push_str(": ");
            s.push_str(&names.join(", "));
        }
        if !self.missing.is_empty() {
            s.push_str("; missing: ");
            s.push_str(&self.missing.join(", "));
        }
        if !self.bad.is_empty() {
            s.push_str("; cosignature does not verify: ");
            s.push_str(&self.bad.join(", "));
        }
        if self.unknown > 0 {
            let _ = write!(s, "; {} lines from keys not pinned ignored", self.unknown);
        }
        s
    }
}

/// How `checkpoint` stands against the policy "`threshold` of `witnesses`" (checked as
/// [`super::WitnessPolicy::new`] checks it). The log's own signature is not checked here
/// ([`Checkpoint::verify`] does that).
pub fn report(
    checkpoint: &Checkpoint<'_>,
    log: &LogKey<'_>,
    witnesses: &[WitnessKey<'_>],
    threshold: usize,
    crypto: &impl Crypto,
) -> Result<QuorumReport, PolicyError> {
    check_policy(witnesses, threshold)?;
    let mut cosigned: Vec<Option<u64>> = alloc::vec![None; witnesses.len()];
    let mut bad = alloc::vec![false; witnesses.len()];
    let mut unknown = 0usize;
    for line in checkpoint.signature_lines() {
        // `Checkpoint::parse` checked every signature line already.
        let Ok(line) = line else { continue };
        match classify(&line, log, witnesses) {
            Line::Log => {}
            Line::Unknown => unknown = unknown.saturating_add(1),
            Line::Malformed(i) => {
                if let Some(b) = bad.get_mut(i) {
                    *b = true;
                }
            }
            Line::Witness(i, witness, cosignature) => {
                // As on the device: a witness's first line counts, a later one is skipped.
                let (Some(seen), Some(b)) = (cosigned.get_mut(i), bad.get_mut(i)) else {
                    continue;
                };
                if seen.is_some() || *b {
                    continue;
                }
                if cosignature.verifies(witness, checkpoint.text, crypto) {
                    *seen = Some(cosignature.timestamp);
                } else {
                    *b = true;
                }
            }
        }
    }
    let mut out = QuorumReport {
        threshold,
        cosigned: Vec::new(),
        missing: Vec::new(),
        bad: Vec::new(),
        unknown,
    };
    for ((w, seen), b) in witnesses.iter().zip(cosigned).zip(bad) {
        match (b, seen) {
            (true, _) => out.bad.push(w.name.to_string()),
            (false, Some(timestamp)) => out.cosigned.push(Cosigned {
                name: w.name.to_string(),
                timestamp,
            }),
            (false, None) => out.missing.push(w.name.to_string()),
        }
    }
    Ok(out)
}
