//! The header every log entry starts with (formats.md §4.1): a deterministic CBOR map (RFC 8949
//! §4.2.1) whose key 0 is the format version and key 1 the [`Kind`]; the remaining keys depend on
//! the kind and are decoded by the module that owns it.

use crate::cbor::{CborError, Reader};
use crate::error::{Context, Error, Item};

/// The only entry format version defined so far.
pub const FORMAT_VERSION: u64 = 1;

/// The kind of a log entry (key 1 of every entry, formats.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(pub u64);

impl Kind {
    /// A release: the COSE_Sign1 release statement signed by the release key.
    pub const RELEASE: Kind = Kind(1);
    /// A per-device manifest: the eligibility decision "eligible" for one device.
    pub const MANIFEST: Kind = Kind(2);
    /// A key ceremony record, COSE_Sign1 by the root key (formats.md §4.5).
    pub const CEREMONY: Kind = Kind(3);
    /// A signing session record: which custodians unlocked the HSM, and why (formats.md §4.6).
    pub const SESSION: Kind = Kind(4);
    /// A key rotation or revocation, COSE_Sign1 by the root key (formats.md §4.7).
    pub const KEY: Kind = Kind(5);
    /// An eligibility rejection: a device and every check it failed (formats.md §4.8).
    pub const REJECTION: Kind = Kind(6);
    /// A rollout plan, COSE_Sign1 by the release key (formats.md §4.9).
    pub const PLAN: Kind = Kind(7);
    /// A gate approval, COSE_Sign1 by the release key (formats.md §4.10).
    pub const APPROVAL: Kind = Kind(8);
    /// A device state transition, in the relay's log (formats.md §4.11).
    pub const DEVICE_EVENT: Kind = Kind(9);
    /// A campaign action of the relay, in the relay's log (formats.md §4.12).
    pub const CAMPAIGN_EVENT: Kind = Kind(10);
    /// A relay checkpoint recorded in the signer's log (formats.md §4.13).
    pub const RELAY_CHECKPOINT: Kind = Kind(11);
}

/// The common header of every entry: format version and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    /// Format version (key 0).
    pub version: u64,
    /// Kind (key 1).
    pub kind: Kind,
    /// Number of map pairs in the entry, including the header's two.
    pub fields: u64,
}

impl EntryHeader {
    /// Reads the header of an entry without decoding the rest.
    pub fn peek(entry: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(entry);
        Self::read(&mut r).within(Item::Entry)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, CborError> {
        Self::read_with_kind_offset(r).map(|(header, _)| header)
    }

    /// Reads the header; also returns the offset of the kind value (for error reports).
    fn read_with_kind_offset(r: &mut Reader<'_>) -> Result<(Self, usize), CborError> {
        let fields = r.map_len()?;
        r.key(0)?;
        let offset = r.position();
        let version = r.u64()?;
        if version != FORMAT_VERSION {
            return Err(CborError::Unsupported { offset });
        }
        r.key(1)?;
        let kind_offset = r.position();
        let kind = Kind(r.u64()?);
        let header = Self {
            version,
            kind,
            fields,
        };
        Ok((header, kind_offset))
    }

    /// A writer holding the header of an entry of `kind` with `fields` map pairs (keys 0 and 1
    /// written; the caller writes keys 2 and up).
    #[cfg(feature = "alloc")]
    pub(crate) fn writer(kind: Kind, fields: u64) -> crate::cbor::write::Writer {
        let mut w = crate::cbor::write::Writer::new();
        w.map(fields).u64(0).u64(FORMAT_VERSION).u64(1).u64(kind.0);
        w
    }

    /// Reads the header and checks it is `kind` with `fields` or `or_fields` map pairs (a record
    /// with one optional field); returns the number of pairs.
    pub(crate) fn expect_one_of(
        r: &mut Reader<'_>,
        kind: Kind,
        fields: u64,
        or_fields: u64,
    ) -> Result<u64, CborError> {
        let start = r.position();
        let (header, kind_offset) = Self::read_with_kind_offset(r)?;
        if header.kind != kind {
            return Err(CborError::Unsupported {
                offset: kind_offset,
            });
        }
        if header.fields != fields && header.fields != or_fields {
            return Err(CborError::WrongLength {
                offset: start,
                expected: usize::try_from(fields).unwrap_or(0),
            });
        }
        Ok(header.fields)
    }

    /// Reads the header and checks it is `kind` with `fields` map pairs.
    pub(crate) fn expect(r: &mut Reader<'_>, kind: Kind, fields: u64) -> Result<(), CborError> {
        let start = r.position();
        let (header, kind_offset) = Self::read_with_kind_offset(r)?;
        if header.kind != kind {
            // `Unsupported` points at the field it is about (error.rs), here the kind value
            return Err(CborError::Unsupported {
                offset: kind_offset,
            });
        }
        if header.fields != fields {
            return Err(CborError::WrongLength {
                offset: start,
                expected: usize::try_from(fields).unwrap_or(0),
            });
        }
        Ok(())
    }
}
