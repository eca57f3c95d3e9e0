//! The device delivery envelope (formats.md §5): everything one device needs to check an update
//! offline, in one deterministic CBOR map.
//!
//! ```text
//! {
//!   0: 1,                      format version
//!   1: h'<checkpoint note>',   signed checkpoint (formats.md §2)
//!   2: h'<COSE_Sign1>',        the release (formats.md §4.2)
//!   3: h'<manifest entry>',    this device's manifest, exactly the log entry bytes (§4.4)
//!   4: <leaf index>,           the manifest's index in the log
//!   5: [h'<32 bytes>', ...]    RFC 9162 inclusion proof of the manifest in the checkpoint's tree
//! }
//! ```

use crate::cbor::Reader;
use crate::entry::FORMAT_VERSION;
use crate::error::{CborError, Context, Error, Item};
use crate::types::{Hash, LeafIndex};

/// Most hashes an inclusion proof can have (a tree of 2^64 leaves has depth 64).
pub const MAX_PROOF_HASHES: u64 = 64;

/// A decoded delivery. Its parts are borrowed from the input and not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// The signed checkpoint note.
    pub checkpoint: &'a [u8],
    /// The release COSE_Sign1.
    pub release: &'a [u8],
    /// The manifest log entry.
    pub manifest: &'a [u8],
    /// Index of the manifest in the log.
    pub leaf_index: LeafIndex,
    /// Inclusion proof of the manifest in the checkpoint's tree.
    pub proof: ProofHashes<'a>,
}

impl<'a> Delivery<'a> {
    const FIELDS: u64 = 6;

    /// Decodes a delivery envelope.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::read(&mut Reader::new(bytes)).within(Item::Delivery)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let offset = r.position();
        if r.map_len()? != Self::FIELDS {
            return Err(CborError::WrongLength {
                offset,
                expected: 6,
            });
        }
        r.key(0)?;
        let offset = r.position();
        if r.u64()? != FORMAT_VERSION {
            return Err(CborError::Unsupported { offset });
        }
        r.key(1)?;
        let checkpoint = r.bytes()?;
        r.key(2)?;
        let release = r.bytes()?;
        r.key(3)?;
        let manifest = r.bytes()?;
        r.key(4)?;
        let leaf_index = LeafIndex(r.u64()?);
        r.key(5)?;
        let offset = r.position();
        let count = r.array_len()?;
        if count > MAX_PROOF_HASHES {
            return Err(CborError::OutOfRange { offset });
        }
        let start = r.position();
        for _ in 0..count {
            r.bytes_fixed::<32>()?;
        }
        let proof = ProofHashes::Encoded {
            elements: r.slice_from(start),
            count,
        };
        r.finish()?;
        Ok(Self {
            checkpoint,
            release,
            manifest,
            leaf_index,
            proof,
        })
    }

    /// The deterministic CBOR encoding.
    #[cfg(feature = "alloc")]
    pub fn to_cbor(&self) -> alloc::vec::Vec<u8> {
        // Exact up to the heads: 9 bytes covers the longest head of each item.
        let capacity = self.checkpoint.len()
            + self.release.len()
            + self.manifest.len()
            + self.proof.len() * 34
            + 64;
        let mut w = crate::cbor::write::Writer::with_capacity(capacity);
        w.map(Self::FIELDS).u64(0).u64(FORMAT_VERSION);
        w.u64(1).bytes(self.checkpoint);
        w.u64(2).bytes(self.release);
        w.u64(3).bytes(self.manifest);
        w.u64(4).u64(self.leaf_index.0);
        w.u64(5).array(self.proof.len() as u64);
        for h in &self.proof {
            w.bytes(&h);
        }
        w.into_bytes()
    }
}

/// The hashes of a proof: validated CBOR (as decoded) or a slice (as a host builds it).
#[derive(Debug, Clone, Copy)]
pub enum ProofHashes<'a> {
    /// Encoded `bstr .size 32` elements back to back, all checked at decode time.
    Encoded {
        /// The element encodings.
        elements: &'a [u8],
        /// How many.
        count: u64,
    },
    /// Hashes supplied by the caller.
    Slice(&'a [Hash]),
}

impl<'a> ProofHashes<'a> {
    /// Number of hashes.
    pub fn len(&self) -> usize {
        match self {
            ProofHashes::Encoded { count, .. } => usize::try_from(*count).unwrap_or(0),
            ProofHashes::Slice(s) => s.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hashes in order.
    pub fn iter(&self) -> ProofIter<'a> {
        ProofIter {
            hashes: *self,
            reader: None,
            next: 0,
        }
    }
}

impl<'a> IntoIterator for &ProofHashes<'a> {
    type Item = Hash;
    type IntoIter = ProofIter<'a>;

    fn into_iter(self) -> ProofIter<'a> {
        self.iter()
    }
}

impl PartialEq for ProofHashes<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for ProofHashes<'_> {}

/// Iterator over [`ProofHashes`]; exact-size, as the proof verifiers require.
#[derive(Debug, Clone)]
pub struct ProofIter<'a> {
    hashes: ProofHashes<'a>,
    reader: Option<Reader<'a>>,
    next: usize,
}

impl Iterator for ProofIter<'_> {
    type Item = Hash;

    fn next(&mut self) -> Option<Hash> {
        if self.next >= self.hashes.len() {
            return None;
        }
        self.next = self.next.saturating_add(1);
        match self.hashes {
            ProofHashes::Encoded { elements, .. } => {
                let reader = self.reader.get_or_insert_with(|| Reader::new(elements));
                reader.bytes_fixed::<32>().ok()
            }
            ProofHashes::Slice(s) => s.get(self.next.saturating_sub(1)).copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.hashes.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for ProofIter<'_> {}
