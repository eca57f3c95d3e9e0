//! The error of the CBOR codec: a violation of deterministic encoding (RFC 8949 §4.2.1) or of a
//! cairn schema, with its byte offset. [`crate::error::Error::Malformed`] carries it together with
//! the [`crate::error::Item`] it was found in.

/// A violation of the deterministic CBOR rules or of a cairn schema, with the byte offset where
/// it was found (relative to the start of the item named by [`crate::error::Item`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended in the middle of an item.
    #[error("input ends early at byte {offset}")]
    UnexpectedEnd {
        /// Offset of the item that needed more bytes.
        offset: usize,
    },
    /// A head was not in its shortest form (RFC 8949 §4.2.1).
    #[error("non-shortest encoding at byte {offset}")]
    NonCanonical {
        /// Offset of the head.
        offset: usize,
    },
    /// An indefinite-length item, which deterministic encoding forbids.
    #[error("indefinite length at byte {offset}")]
    IndefiniteLength {
        /// Offset of the head.
        offset: usize,
    },
    /// Reserved additional information (28..30).
    #[error("reserved additional information at byte {offset}")]
    Reserved {
        /// Offset of the head.
        offset: usize,
    },
    /// A different type was required here.
    #[error("expected {expected} at byte {offset}")]
    UnexpectedType {
        /// Offset of the item.
        offset: usize,
        /// What the schema requires.
        expected: &'static str,
    },
    /// A map key other than the expected one: missing, duplicated, unknown or out of order.
    #[error("expected map key {expected} at byte {offset}, found {found}")]
    UnexpectedKey {
        /// Offset of the key.
        offset: usize,
        /// The key the schema requires next.
        expected: u64,
        /// The key that was there.
        found: u64,
    },
    /// A map key that does not sort after the key before it (RFC 8949 §4.2.1: keys are unique
    /// and in the bytewise order of their encodings).
    #[error("map key at byte {offset} is out of order or repeated")]
    UnsortedMapKey {
        /// Offset of the key.
        offset: usize,
    },
    /// A byte string or array of the wrong length.
    #[error("wrong length at byte {offset} (expected {expected})")]
    WrongLength {
        /// Offset of the item.
        offset: usize,
        /// The required length.
        expected: usize,
    },
    /// A number or count outside the range the schema allows.
    #[error("value out of range at byte {offset}")]
    OutOfRange {
        /// Offset of the item.
        offset: usize,
    },
    /// A text string that is not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the string contents.
        offset: usize,
    },
    /// A text field whose contents the schema does not allow (empty, too long, bad characters).
    #[error("invalid text at byte {offset}")]
    InvalidText {
        /// Offset of the string.
        offset: usize,
    },
    /// Bytes left over after the top-level item.
    #[error("trailing bytes at byte {offset}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        offset: usize,
    },
    /// A format version or kind this verifier does not implement.
    #[error("unsupported version or kind at byte {offset}")]
    Unsupported {
        /// Offset of the field.
        offset: usize,
    },
    /// An array whose item count the rest of the input cannot hold: each item takes at least
    /// `min_item` bytes. Checked before anything is allocated for the items, so a count read from
    /// the input never sizes memory beyond what the input really carries.
    #[error(
        "array at byte {offset} claims {count} items of at least {min_item} bytes, only {left} bytes follow"
    )]
    CountBeyondInput {
        /// Offset of the array head.
        offset: usize,
        /// The item count the head claims.
        count: u64,
        /// The smallest encoding of one item, in bytes.
        min_item: usize,
        /// Bytes left in the input after the head.
        left: usize,
    },
}

impl CborError {
    /// The same error with its offset moved by `by` bytes (for errors found inside an embedded
    /// item, reported relative to the enclosing one).
    #[must_use]
    pub fn offset_by(self, by: usize) -> Self {
        use CborError as E;
        let s = |o: usize| o.saturating_add(by);
        match self {
            E::UnexpectedEnd { offset } => E::UnexpectedEnd { offset: s(offset) },
            E::NonCanonical { offset } => E::NonCanonical { offset: s(offset) },
            E::IndefiniteLength { offset } => E::IndefiniteLength { offset: s(offset) },
            E::Reserved { offset } => E::Reserved { offset: s(offset) },
            E::UnexpectedType { offset, expected } => E::UnexpectedType {
                offset: s(offset),
                expected,
            },
            E::UnexpectedKey {
                offset,
                expected,
                found,
            } => E::UnexpectedKey {
                offset: s(offset),
                expected,
                found,
            },
            E::UnsortedMapKey { offset } => E::UnsortedMapKey { offset: s(offset) },
            E::WrongLength { offset, expected } => E::WrongLength {
                offset: s(offset),
                expected,
            },
            E::OutOfRange { offset } => E::OutOfRange { offset: s(offset) },
            E::InvalidUtf8 { offset } => E::InvalidUtf8 { offset: s(offset) },
            E::InvalidText { offset } => E::InvalidText { offset: s(offset) },
            E::TrailingBytes { offset } => E::TrailingBytes { offset: s(offset) },
            E::Unsupported { offset } => E::Unsupported { offset: s(offset) },
            E::CountBeyondInput {
                offset,
                count,
                min_item,
                left,
            } => E::CountBeyondInput {
                offset: s(offset),
                count,
                min_item,
                left,
            },
        }
    }
}
