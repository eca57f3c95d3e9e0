//! The body of a C2SP tlog-witness `add-checkpoint` request, which the witness parses and a log (or
//! the relay, or the offline witness command) writes:
//!
//! ```text
//! old <size>\n                 the size of the witness's latest checkpoint (0 if none)
//! <base64 hash>\n ...          0 to 63 consistency proof lines (RFC 6962 §2.1.2)
//! \n                           an empty line
//! <checkpoint signed note>     the new checkpoint, with its signatures
//! ```
//!
//! Parsing checks the syntax only (canonical decimal, canonical base64 of 32 bytes, at most 63
//! proof lines, a checkpoint that parses); the witness checks signatures, sizes and the proof.

use base64ct::{Base64, Encoding};

use crate::note::Checkpoint;
use crate::types::{Hash, TreeSize};

/// Most consistency proof lines a request may carry (C2SP tlog-witness: "MUST NOT send more
/// than 63").
pub const MAX_PROOF_LINES: usize = 63;

/// Why an `add-checkpoint` body is malformed (the witness answers 400 Bad Request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The first line is not `old <canonical decimal>`.
    #[error("line 1 is not \"old <size>\" in canonical decimal")]
    OldSize,
    /// A proof line is not the canonical base64 of 32 bytes.
    #[error("line {line} is not a base64 SHA-256 hash")]
    ProofLine {
        /// 1-based line number in the body.
        line: usize,
    },
    /// More than 63 proof lines.
    #[error("more than 63 consistency proof lines")]
    TooManyProofLines,
    /// No empty line between the proof and the checkpoint.
    #[error("no empty line before the checkpoint")]
    NoCheckpoint,
    /// The checkpoint does not parse.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(crate::error::NoteError),
    /// The old size is above the checkpoint's size.
    #[error("old size {old} is above the checkpoint size {new}")]
    OldAboveNew {
        /// The old size.
        old: u64,
        /// The checkpoint size.
        new: u64,
    },
    /// The old size is zero but a proof was sent.
    #[error("a consistency proof from size 0")]
    ProofFromZero,
}

/// A parsed `add-checkpoint` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    /// The size the client believes the witness has.
    pub old: TreeSize,
    /// The proof lines (each a canonical base64 hash with its newline).
    proof: &'a str,
    /// Number of proof lines.
    proof_len: usize,
    /// The checkpoint note's bytes.
    pub checkpoint_bytes: &'a [u8],
    /// The checkpoint, parsed.
    pub checkpoint: Checkpoint<'a>,
}

impl<'a> AddCheckpoint<'a> {
    /// Parses a request body.
    pub fn parse(body: &'a [u8]) -> Result<Self, RequestError> {
        let mut rest = body;
        let old = split_line(&mut rest)
            .and_then(|l| l.strip_prefix(b"old "))
            .and_then(|l| core::str::from_utf8(l).ok())
            .and_then(parse_size)
            .ok_or(RequestError::OldSize)?;
        let proof_start = body.len().saturating_sub(rest.len());
        let mut proof_len = 0usize;
        loop {
            let line = split_line(&mut rest).ok_or(RequestError::NoCheckpoint)?;
            if line.is_empty() {
                break;
            }
            proof_len = proof_len.saturating_add(1);
            if proof_len > MAX_PROOF_LINES {
                return Err(RequestError::TooManyProofLines);
            }
            if decode_hash(line).is_none() {
                return Err(RequestError::ProofLine {
                    line: proof_len.saturating_add(1),
                });
            }
        }
        let checkpoint_start = body.len().saturating_sub(rest.len());
        let proof = body
            .get(proof_start..checkpoint_start.saturating_sub(1))
            .and_then(|p| core::str::from_utf8(p).ok())
            .unwrap_or_default();
        let checkpoint_bytes = rest;
        let checkpoint = Checkpoint::parse(checkpoint_bytes).map_err(RequestError::Checkpoint)?;
        if old > checkpoint.size.0 {
            return Err(RequestError::OldAboveNew {
                old,
                new: checkpoint.size.0,
            });
        }
        if old == 0 && proof_len > 0 {
            return Err(RequestError::ProofFromZero);
        }
        Ok(Self {
            old: TreeSize(old),
            proof,
            proof_len,
            checkpoint_bytes,
            checkpoint,
        })
    }

    /// The consistency proof hashes, in order.
    pub fn proof(&self) -> ProofLines<'a> {
        ProofLines {
            lines: self.proof.split_terminator('\n'),
            left: self.proof_len,
        }
    }
}

/// The proof hashes of a request (validated when the request was parsed).
#[derive(Debug, Clone)]
pub struct ProofLines<'a> {
    lines: core::str::SplitTerminator<'a, char>,
    left: usize,
}

impl Iterator for ProofLines<'_> {
    type Item = Hash;

    fn next(&mut self) -> Option<Hash> {
        let line = self.lines.next()?;
        self.left = self.left.saturating_sub(1);
        decode_hash(line.as_bytes())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ProofLines<'_> {}

/// The next line of `rest` without its newline; `rest` moves past it. `None` if no newline is left.
fn split_line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = rest.iter().position(|b| *b == b'\n')?;
    let (line, tail) = rest.split_at(end);
    *rest = tail.get(1..).unwrap_or_default();
    Some(line)
}

fn decode_hash(line: &[u8]) -> Option<Hash> {
    let s = core::str::from_utf8(line).ok()?;
    let mut out = [0u8; 32];
    let decoded = Base64::decode(s, &mut out).ok()?;
    (decoded.len() == 32).then_some(out)
}

/// Canonical ASCII decimal (no leading zeros unless "0"), fitting in 64 bits.
fn parse_size(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// Writing a request body (host side: the log's client, the relay, tests).
#[cfg(feature = "alloc")]
pub mod write {
    use alloc::string::String;

    use base64ct::{Base64, Encoding};

    use crate::types::Hash;

    /// The `add-checkpoint` body for `checkpoint` (a signed note) from the witness's `old` size.
    pub fn add_checkpoint(old: u64, proof: &[Hash], checkpoint: &str) -> String {
        let mut body = alloc::format!("old {old}\n");
        for h in proof {
            body.push_str(&Base64::encode_string(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(checkpoint);
        body
    }
}
