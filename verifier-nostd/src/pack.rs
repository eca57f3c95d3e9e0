//! The evidence pack file (docs/audit.md, "The evidence pack"): one deterministic CBOR map
//! (RFC 8949 §4.2.1) holding the certificates, the retention record, and a section per log (the
//! signer's and the relay's) with its signed checkpoint, the entries the campaign's evidence
//! needs, each with its RFC 9162 leaf hash, and one multi-leaf proof.
//!
//! Decoding borrows from the file's bytes (a million-device pack is about a gigabyte) and checks
//! the shape only; `cairn_signer::audit::verify` checks the content (docs/audit.md).

use alloc::vec;
use alloc::vec::Vec;

use crate::cbor::Reader;
use crate::cbor::write::Writer;
use crate::error::CborError;
use crate::types::{Hash, UnixTime};

/// Pack format version (key 0).
pub const PACK_VERSION: u64 = 1;
/// Most entries one section may hold.
pub const MAX_ENTRIES: u64 = 64 << 20;
/// Most certificates.
pub const MAX_CERTIFICATES: u64 = 64;

/// A run of consecutive log entries, each with its leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<'a> {
    /// Index of the first entry.
    pub start: u64,
    /// `(leaf hash, entry)` for `start, start + 1, …`.
    pub entries: Vec<(Hash, &'a [u8])>,
}

/// One log's part of the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    /// The log's origin.
    pub origin: &'a str,
    /// Its signed checkpoint note.
    pub checkpoint: &'a [u8],
    /// The entries, in runs of consecutive indices, in log order.
    pub runs: Vec<Run<'a>>,
    /// The multi-leaf proof of every entry of the runs against the checkpoint.
    pub proof: Vec<Hash>,
}

impl Section<'_> {
    /// Every entry's index, in order.
    pub fn indices(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs
            .iter()
            .flat_map(|r| (0..r.entries.len() as u64).map(move |i| r.start + i))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.runs.iter().map(|r| r.entries.len()).sum()
    }

    /// True when the section holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A release's retention as the pack records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRecord<'a> {
    /// The release.
    pub release: &'a str,
    /// End of its support period (the signed release statement's).
    pub support_until: UnixTime,
    /// Nothing about it may be deleted before this time (the vault's rule).
    pub retain_until: UnixTime,
}

/// A decoded evidence pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack<'a> {
    /// The campaign it is the evidence of.
    pub campaign: &'a str,
    /// When it was exported.
    pub generated_at: UnixTime,
    /// `(name, DER)`: `root`, `release-0`, `log`, and `release-<n>` for each rotation.
    pub certificates: Vec<(&'a str, &'a [u8])>,
    /// Retention of the campaign's release and its rollback target.
    pub retention: Vec<RetentionRecord<'a>>,
    /// The signer's log.
    pub signer: Section<'a>,
    /// The relay's device-state log.
    pub relay: Section<'a>,
}

impl<'a> Pack<'a> {
    /// Decodes a pack, checking its shape (not its content). The error names the byte offset.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, CborError> {
        let mut r = Reader::new(bytes);
        r.map_of(7)?;
        r.key(0)?;
        let at = r.position();
        if r.u64()? != PACK_VERSION {
            return Err(CborError::Unsupported { offset: at });
        }
        r.key(1)?;
        let campaign = r.text()?;
        r.key(2)?;
        let generated_at = UnixTime(r.u64()?);
        r.key(3)?;
        let n = bounded(&mut r, MAX_CERTIFICATES, MIN_CERTIFICATE)?;
        let mut certificates = Vec::with_capacity(n);
        for _ in 0..n {
            r.array_of(2)?;
            certificates.push((r.text()?, r.bytes()?));
        }
        r.key(4)?;
        let n = bounded(&mut r, MAX_CERTIFICATES, MIN_RETENTION)?;
        let mut retention = Vec::with_capacity(n);
        for _ in 0..n {
            r.array_of(3)?;
            retention.push(RetentionRecord {
                release: r.text()?,
                support_until: UnixTime(r.u64()?),
                retain_until: UnixTime(r.u64()?),
            });
        }
        r.key(5)?;
        let signer = Section::read(&mut r)?;
        r.key(6)?;
        let relay = Section::read(&mut r)?;
        r.finish()?;
        Ok(Self {
            campaign,
            generated_at,
            certificates,
            retention,
            signer,
            relay,
        })
    }

    /// The deterministic CBOR encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        let size = self.signer.len() + self.relay.len();
        let mut w = Writer::with_capacity(size * 300 + 16 * 1024);
        w.map(7);
        w.u64(0).u64(PACK_VERSION);
        w.u64(1).text(self.campaign);
        w.u64(2).u64(self.generated_at.0);
        w.u64(3).array(self.certificates.len() as u64);
        for (name, der) in &self.certificates {
            w.array(2).text(name).bytes(der);
        }
        w.u64(4).array(self.retention.len() as u64);
        for r in &self.retention {
            w.array(3)
                .text(r.release)
                .u64(r.support_until.0)
                .u64(r.retain_until.0);
        }
        w.u64(5);
        self.signer.write(&mut w);
        w.u64(6);
        self.relay.write(&mut w);
        w.into_bytes()
    }
}

// The smallest encoding of each collected item, which caps every count (and the memory reserved
// for it) by what the rest of the file can hold: a 20-byte file never reserves a gigabyte.
/// `[name, DER]`: an array head and two empty strings.
const MIN_CERTIFICATE: usize = 3;
/// `[release, support_until, retain_until]`: an array head, an empty string, two small integers.
const MIN_RETENTION: usize = 4;
/// `[start, entries]`: an array head, a small integer, an empty array.
const MIN_RUN: usize = 3;
/// `[leaf hash, entry]`: an array head, a 32-byte string (2-byte head), an empty string.
const MIN_ENTRY: usize = 1 + 34 + 1;
/// A 32-byte string with its 2-byte head.
const MIN_HASH: usize = 34;

fn bounded(r: &mut Reader<'_>, max: u64, min_item: usize) -> Result<usize, CborError> {
    r.array_len_within(max, min_item)
}

impl<'a> Section<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        r.array_of(4)?;
        let origin = r.text()?;
        let checkpoint = r.bytes()?;
        let n = bounded(r, MAX_ENTRIES, MIN_RUN)?;
        let mut runs = Vec::with_capacity(n);
        let mut total = 0u64;
        for _ in 0..n {
            r.array_of(2)?;
            let start = r.u64()?;
            let m = bounded(r, MAX_ENTRIES, MIN_ENTRY)?;
            total = total.saturating_add(m as u64);
            if total > MAX_ENTRIES {
                return Err(CborError::OutOfRange {
                    offset: r.position(),
                });
            }
            let mut entries = Vec::with_capacity(m);
            for _ in 0..m {
                r.array_of(2)?;
                let hash = r.bytes_fixed::<32>()?;
                entries.push((hash, r.bytes()?));
            }
            runs.push(Run { start, entries });
        }
        let n = bounded(r, MAX_ENTRIES, MIN_HASH)?;
        let mut proof = Vec::with_capacity(n);
        for _ in 0..n {
            proof.push(r.bytes_fixed::<32>()?);
        }
        Ok(Self {
            origin,
            checkpoint,
            runs,
            proof,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.array(4).text(self.origin).bytes(self.checkpoint);
        w.array(self.runs.len() as u64);
        for run in &self.runs {
            w.array(2).u64(run.start).array(run.entries.len() as u64);
            for (hash, entry) in &run.entries {
                w.array(2).bytes(hash).bytes(entry);
            }
        }
        w.array(self.proof.len() as u64);
        for h in &self.proof {
            w.bytes(h);
        }
    }
}

/// Groups sorted, distinct indices with their entries into runs of consecutive indices.
pub fn runs_of<'a>(entries: impl IntoIterator<Item = (u64, Hash, &'a [u8])>) -> Vec<Run<'a>> {
    let mut runs: Vec<Run<'a>> = Vec::new();
    for (index, hash, entry) in entries {
        match runs.last_mut() {
            Some(run) if run.start + run.entries.len() as u64 == index => {
                run.entries.push((hash, entry));
            }
            _ => runs.push(Run {
                start: index,
                entries: vec![(hash, entry)],
            }),
        }
    }
    runs
}
