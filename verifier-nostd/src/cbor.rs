//! A strict reader (and, behind `alloc`, a writer) for the deterministic CBOR subset cairn uses.
//!
//! RFC 8949 §4.2.1 "Core Deterministic Encoding Requirements": every head is in its shortest form,
//! no indefinite lengths, and map keys are sorted by the bytewise order of their encodings. cairn
//! maps only ever use unsigned integer keys, for which that order is numeric order, so a map is read
//! field by field in ascending key order and any other encoding of the same data is rejected. The
//! reader never allocates and never panics: every length is checked against the input that is left.
//!
//! Supported: unsigned and negative integers (major types 0 and 1), byte strings (2), UTF-8 text
//! strings (3), arrays (4), maps (5) and tags (6). Floats and simple values (major type 7) are not
//! part of any cairn format and are rejected.

mod error;

pub use error::CborError;

const MAJOR_UINT: u8 = 0;
const MAJOR_NINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;

/// Encodes a head in its shortest form into a small buffer; returns the buffer and the length used.
pub(crate) fn head(major: u8, value: u64) -> ([u8; 9], usize) {
    let mut out = [0u8; 9];
    let m = major << 5;
    let be = value.to_be_bytes();
    let (info, width) = match value {
        0..=23 => (u8::try_from(value).unwrap_or(0), 0),
        24..=0xff => (24, 1),
        0x100..=0xffff => (25, 2),
        0x1_0000..=0xffff_ffff => (26, 4),
        _ => (27, 8),
    };
    let (first, rest) = out.split_at_mut(1);
    if let Some(b) = first.first_mut() {
        *b = m | info;
    }
    if let (Some(dst), Some(src)) = (
        rest.get_mut(..width),
        be.get(8usize.saturating_sub(width)..),
    ) {
        dst.copy_from_slice(src);
    }
    (out, width.saturating_add(1))
}

/// Most maps [`Reader::raw_item`] accepts nested inside each other (arrays and tags may nest
/// without bound). cairn's own formats nest none.
pub const MAX_MAP_DEPTH: usize = 16;

/// A map [`Reader::raw_item`] is inside of.
#[derive(Debug, Clone, Copy, Default)]
struct OpenMap {
    /// Keys and values not yet complete, counting the one being read.
    members: u64,
    /// The count of items owed at which the member being read is complete (`None` between
    /// members).
    member_end: Option<u64>,
    /// Offset of the member being read.
    member_start: usize,
    /// Where the previous key's encoding starts and ends.
    previous_key: Option<(usize, usize)>,
}

/// A cursor over one CBOR data item (and its nested items) that only accepts deterministic encoding.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`.
    pub const fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }

    /// Byte offset of the next item.
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte of the input has been consumed.
    pub fn finish(&self) -> Result<(), CborError> {
        if self.pos == self.input.len() {
            Ok(())
        } else {
            Err(CborError::TrailingBytes { offset: self.pos })
        }
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .input
            .get(self.pos)
            .ok_or(CborError::UnexpectedEnd { offset: self.pos })?;
        self.pos = self.pos.saturating_add(1);
        Ok(b)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], CborError> {
        let start = self.pos;
        let remaining = self.input.len().saturating_sub(start);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= remaining)
            .ok_or(CborError::UnexpectedEnd { offset: start })?;
        let end = start.saturating_add(len);
        let bytes = self
            .input
            .get(start..end)
            .ok_or(CborError::UnexpectedEnd { offset: start })?;
        self.pos = end;
        Ok(bytes)
    }

    /// Reads a head (major type and argument), enforcing the shortest form.
    fn head(&mut self) -> Result<(u8, u64), CborError> {
        let offset = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        if major == 7 {
            return Err(CborError::UnexpectedType {
                offset,
                expected: "no simple values or floats",
            });
        }
        let (value, min) = match info {
            0..=23 => (u64::from(info), 0),
            24 => (u64::from(self.byte()?), 24),
            25 => (u64::from(u16::from_be_bytes(self.array::<2>()?)), 0x100),
            26 => (u64::from(u32::from_be_bytes(self.array::<4>()?)), 0x1_0000),
            27 => (u64::from_be_bytes(self.array::<8>()?), 0x1_0000_0000),
            31 => return Err(CborError::IndefiniteLength { offset }),
            _ => return Err(CborError::Reserved { offset }),
        };
        if value < min {
            return Err(CborError::NonCanonical { offset });
        }
        Ok((major, value))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let bytes = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn expect_major(&mut self, want: u8, expected: &'static str) -> Result<u64, CborError> {
        let offset = self.pos;
        let (major, value) = self.head()?;
        if major == want {
            Ok(value)
        } else {
            Err(CborError::UnexpectedType { offset, expected })
        }
    }

    /// Reads an unsigned integer.
    pub fn u64(&mut self) -> Result<u64, CborError> {
        self.expect_major(MAJOR_UINT, "unsigned integer")
    }

    /// Reads an unsigned integer that must fit in 32 bits.
    pub fn u32(&mut self) -> Result<u32, CborError> {
        let offset = self.pos;
        u32::try_from(self.u64()?).map_err(|_| CborError::OutOfRange { offset })
    }

    /// Reads a (negative or non-negative) integer in `i64` range.
    pub fn i64(&mut self) -> Result<i64, CborError> {
        let offset = self.pos;
        let (major, value) = self.head()?;
        let magnitude = i64::try_from(value).map_err(|_| CborError::OutOfRange { offset })?;
        match major {
            MAJOR_UINT => Ok(magnitude),
            // RFC 8949 §3.1: major type 1 encodes -1 - n.
            MAJOR_NINT => (-1i64)
                .checked_sub(magnitude)
                .ok_or(CborError::OutOfRange { offset }),
            _ => Err(CborError::UnexpectedType {
                offset,
                expected: "integer",
            }),
        }
    }

    /// Reads a byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let len = self.expect_major(MAJOR_BYTES, "byte string")?;
        self.take(len)
    }

    /// Reads a byte string of exactly `N` bytes.
    pub fn bytes_fixed<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let offset = self.pos;
        let bytes = self.bytes()?;
        <[u8; N]>::try_from(bytes).map_err(|_| CborError::WrongLength {
            offset,
            expected: N,
        })
    }

    /// Reads a UTF-8 text string.
    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let len = self.expect_major(MAJOR_TEXT, "text string")?;
        let offset = self.pos;
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes).map_err(|_| CborError::InvalidUtf8 { offset })
    }

    /// Reads an array head and returns its length.
    pub fn array_len(&mut self) -> Result<u64, CborError> {
        self.expect_major(MAJOR_ARRAY, "array")
    }

    /// Reads an array head whose items are about to be collected: its length must be at most
    /// `max`, and the rest of the input must be able to hold that many items of at least
    /// `min_item` bytes each ([`CborError::CountBeyondInput`] otherwise). A caller may then
    /// reserve room for the returned count: it is bounded by the input's real size.
    pub fn array_len_within(&mut self, max: u64, min_item: usize) -> Result<usize, CborError> {
        let offset = self.pos;
        let count = self.array_len()?;
        if count > max {
            return Err(CborError::OutOfRange { offset });
        }
        let left = self.input.len().saturating_sub(self.pos);
        let room = (left / min_item.max(1)) as u64;
        if count > room {
            return Err(CborError::CountBeyondInput {
                offset,
                count,
                min_item,
                left,
            });
        }
        usize::try_from(count).map_err(|_| CborError::OutOfRange { offset })
    }

    /// Reads an array head whose length must be exactly `len`.
    pub fn array_of(&mut self, len: u64) -> Result<(), CborError> {
        let offset = self.pos;
        if self.array_len()? == len {
            Ok(())
        } else {
            Err(CborError::WrongLength {
                offset,
                expected: usize::try_from(len).unwrap_or(0),
            })
        }
    }

    /// Reads a map head and returns its number of pairs.
    pub fn map_len(&mut self) -> Result<u64, CborError> {
        self.expect_major(MAJOR_MAP, "map")
    }

    /// Reads a map head whose number of pairs must be exactly `len`.
    pub fn map_of(&mut self, len: u64) -> Result<(), CborError> {
        let offset = self.pos;
        if self.map_len()? == len {
            Ok(())
        } else {
            Err(CborError::WrongLength {
                offset,
                expected: usize::try_from(len).unwrap_or(0),
            })
        }
    }

    /// Reads a tag and checks it is `tag`.
    pub fn tag(&mut self, tag: u64) -> Result<(), CborError> {
        let offset = self.pos;
        if self.expect_major(MAJOR_TAG, "tag")? == tag {
            Ok(())
        } else {
            Err(CborError::UnexpectedType {
                offset,
                expected: "a different tag",
            })
        }
    }

    /// Reads the raw bytes of the next complete data item, checking it is deterministic: shortest
    /// heads, definite lengths, valid UTF-8, and the keys of every map strictly increasing in the
    /// bytewise order of their encodings (RFC 8949 §4.2.1; this also rejects duplicate keys).
    ///
    /// The walk uses a counter of items still owed rather than recursion, so hostile input cannot
    /// exhaust the stack; only maps need a record (their previous key), and at most
    /// [`MAX_MAP_DEPTH`] of them may be open at once.
    pub fn raw_item(&mut self) -> Result<&'a [u8], CborError> {
        const MAX_ITEMS: u64 = 1 << 20;
        let start = self.pos;
        let mut owed: u64 = 1;
        let mut seen: u64 = 0;
        let mut maps = [OpenMap::default(); MAX_MAP_DEPTH];
        let mut open = 0usize;
        loop {
            open = self.close_members(&mut maps, open, owed)?;
            if owed == 0 {
                break;
            }
            // Unless a member of the innermost open map is being read, this item is the next one.
            if let Some(map) = open.checked_sub(1).and_then(|i| maps.get_mut(i))
                && map.member_end.is_none()
            {
                map.member_start = self.pos;
                map.member_end = Some(owed - 1);
            }
            owed -= 1;
            seen = seen.saturating_add(1);
            if seen > MAX_ITEMS {
                return Err(CborError::OutOfRange { offset: self.pos });
            }
            let offset = self.pos;
            let (major, value) = self.head()?;
            match major {
                MAJOR_BYTES => {
                    self.take(value)?;
                }
                MAJOR_TEXT => {
                    let offset = self.pos;
                    let text = self.take(value)?;
                    core::str::from_utf8(text).map_err(|_| CborError::InvalidUtf8 { offset })?;
                }
                MAJOR_ARRAY => owed = owed.saturating_add(value),
                MAJOR_MAP => {
                    owed = owed.saturating_add(value.saturating_mul(2));
                    if value > 0 {
                        let slot = maps.get_mut(open).ok_or(CborError::OutOfRange { offset })?;
                        *slot = OpenMap {
                            members: value.saturating_mul(2),
                            ..OpenMap::default()
                        };
                        open = open.saturating_add(1);
                    }
                }
                MAJOR_TAG => owed = owed.saturating_add(1),
                _ => {}
            }
            // Every item takes at least one byte: a count beyond the input cannot be met (and
            // `owed` cannot saturate, which the member bookkeeping relies on).
            if owed > self.input.len().saturating_sub(self.pos) as u64 {
                return Err(CborError::UnexpectedEnd { offset });
            }
        }
        self.input
            .get(start..self.pos)
            .ok_or(CborError::UnexpectedEnd { offset: start })
    }

    /// The members of open maps that are complete once only `owed` items are left: each finished
    /// key must sort after the map's previous key, and a map with no members left is closed.
    /// Returns how many maps are still open.
    fn close_members(
        &self,
        maps: &mut [OpenMap; MAX_MAP_DEPTH],
        mut open: usize,
        owed: u64,
    ) -> Result<usize, CborError> {
        // A member ends exactly when `owed` first drops to one less than at its start; an inner
        // map ends no later than the member of the outer map that contains it.
        while let Some(map) = open.checked_sub(1).and_then(|i| maps.get_mut(i)) {
            if map.member_end != Some(owed) {
                break;
            }
            map.member_end = None;
            map.members = map.members.saturating_sub(1);
            // Members alternate key, value from an even count: an odd count left follows a key.
            if map.members % 2 == 1 {
                let key = (map.member_start, self.pos);
                if let Some(previous) = map.previous_key {
                    let sorted = match (
                        self.input.get(previous.0..previous.1),
                        self.input.get(key.0..key.1),
                    ) {
                        (Some(p), Some(k)) => p < k,
                        _ => false,
                    };
                    if !sorted {
                        return Err(CborError::UnsortedMapKey { offset: key.0 });
                    }
                }
                map.previous_key = Some(key);
            }
            if map.members > 0 {
                break;
            }
            open = open.saturating_sub(1);
        }
        Ok(open)
    }

    /// Reads a map key, which must be the unsigned integer `key`.
    ///
    /// Because cairn maps are read in ascending key order, a key that is smaller than expected
    /// means a duplicate or a misordered map and a larger one means a missing required field.
    pub fn key(&mut self, key: u64) -> Result<(), CborError> {
        let offset = self.pos;
        let found = self.u64()?;
        if found == key {
            Ok(())
        } else {
            Err(CborError::UnexpectedKey {
                offset,
                expected: key,
                found,
            })
        }
    }

    /// The input from `start` up to the current position.
    pub fn slice_from(&self, start: usize) -> &'a [u8] {
        self.input.get(start..self.pos).unwrap_or_default()
    }

    /// Peeks at the next map key without consuming it (`None` at end of input or if the next item
    /// is not an unsigned integer).
    pub fn peek_key(&self) -> Option<u64> {
        let mut probe = self.clone();
        probe.u64().ok()
    }
}

/// Writer for deterministic CBOR.
#[cfg(feature = "alloc")]
pub mod write {
    use alloc::vec::Vec;

    /// Appends deterministic CBOR to a byte vector. Writing cannot fail.
    #[derive(Debug, Default, Clone)]
    pub struct Writer {
        out: Vec<u8>,
    }

    impl Writer {
        /// An empty writer.
        pub fn new() -> Self {
            Self::default()
        }

        /// An empty writer with room for `capacity` bytes (no reallocation up to it).
        pub fn with_capacity(capacity: usize) -> Self {
            Self {
                out: Vec::with_capacity(capacity),
            }
        }

        /// The encoded bytes.
        pub fn into_bytes(self) -> Vec<u8> {
            self.out
        }

        /// Writes a head in its shortest form (RFC 8949 §4.2.1).
        pub fn head(&mut self, major: u8, value: u64) -> &mut Self {
            let (buf, n) = super::head(major, value);
            self.out.extend_from_slice(buf.get(..n).unwrap_or_default());
            self
        }

        /// Writes an unsigned integer.
        pub fn u64(&mut self, v: u64) -> &mut Self {
            self.head(super::MAJOR_UINT, v)
        }

        /// Writes a signed integer.
        pub fn i64(&mut self, v: i64) -> &mut Self {
            if v >= 0 {
                self.head(super::MAJOR_UINT, v.unsigned_abs())
            } else {
                // -1 - n  <=>  n = -1 - v = |v| - 1
                self.head(super::MAJOR_NINT, v.unsigned_abs() - 1)
            }
        }

        /// Writes a byte string.
        pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.head(super::MAJOR_BYTES, b.len() as u64);
            self.out.extend_from_slice(b);
            self
        }

        /// Writes a text string.
        pub fn text(&mut self, s: &str) -> &mut Self {
            self.head(super::MAJOR_TEXT, s.len() as u64);
            self.out.extend_from_slice(s.as_bytes());
            self
        }

        /// Writes an array head.
        pub fn array(&mut self, len: u64) -> &mut Self {
            self.head(super::MAJOR_ARRAY, len)
        }

        /// Writes a map head.
        pub fn map(&mut self, len: u64) -> &mut Self {
            self.head(super::MAJOR_MAP, len)
        }

        /// Writes a tag.
        pub fn tag(&mut self, tag: u64) -> &mut Self {
            self.head(super::MAJOR_TAG, tag)
        }

        /// Appends an already encoded item verbatim.
        pub fn raw(&mut self, item: &[u8]) -> &mut Self {
            self.out.extend_from_slice(item);
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_heads_accepted() {
        assert_eq!(Reader::new(&[0x17]).u64(), Ok(23));
        assert_eq!(Reader::new(&[0x18, 24]).u64(), Ok(24));
        assert_eq!(Reader::new(&[0x19, 0x01, 0x00]).u64(), Ok(256));
        assert_eq!(Reader::new(&[0x1a, 0, 1, 0, 0]).u64(), Ok(65536));
        assert_eq!(
            Reader::new(&[0x1b, 0, 0, 0, 1, 0, 0, 0, 0]).u64(),
            Ok(1 << 32)
        );
        assert_eq!(Reader::new(&[0x20]).i64(), Ok(-1));
        assert_eq!(Reader::new(&[0x26]).i64(), Ok(-7));
    }

    #[test]
    fn non_shortest_heads_rejected() {
        for bad in [
            &[0x18, 23][..],
            &[0x19, 0x00, 0xff],
            &[0x1a, 0, 0, 0xff, 0xff],
            &[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(
                Reader::new(bad).u64(),
                Err(CborError::NonCanonical { offset: 0 }),
                "{bad:x?}"
            );
        }
        // a byte string whose length is not in shortest form
        assert_eq!(
            Reader::new(&[0x58, 0x01, 0xaa]).bytes(),
            Err(CborError::NonCanonical { offset: 0 })
        );
    }

    #[test]
    fn indefinite_reserved_and_simple_rejected() {
        assert_eq!(
            Reader::new(&[0x5f, 0x41, 0, 0xff]).bytes(),
            Err(CborError::IndefiniteLength { offset: 0 })
        );
        assert_eq!(
            Reader::new(&[0x9f, 0xff]).array_len(),
            Err(CborError::IndefiniteLength { offset: 0 })
        );
        assert_eq!(
            Reader::new(&[0x1c]).u64(),
            Err(CborError::Reserved { offset: 0 })
        );
        assert!(matches!(
            Reader::new(&[0xf5]).u64(),
            Err(CborError::UnexpectedType { .. })
        ));
        assert!(matches!(
            Reader::new(&[0xf9, 0, 0]).raw_item(),
            Err(CborError::UnexpectedType { .. })
        ));
    }

    #[test]
    fn lengths_beyond_input_rejected() {
        assert_eq!(
            Reader::new(&[0x43, 1, 2]).bytes(),
            Err(CborError::UnexpectedEnd { offset: 1 })
        );
        assert_eq!(
            Reader::new(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).bytes(),
            Err(CborError::UnexpectedEnd { offset: 9 })
        );
        assert_eq!(
            Reader::new(&[]).u64(),
            Err(CborError::UnexpectedEnd { offset: 0 })
        );
    }

    #[test]
    fn text_must_be_utf8() {
        assert_eq!(
            Reader::new(&[0x62, 0xc3, 0x28]).text(),
            Err(CborError::InvalidUtf8 { offset: 1 })
        );
        assert_eq!(Reader::new(&[0x62, b'h', b'i']).text(), Ok("hi"));
    }

    #[test]
    fn keys_must_come_in_order() {
        let mut r = Reader::new(&[0xa2, 0x01, 0x00, 0x00, 0x00]);
        assert_eq!(r.map_len(), Ok(2));
        assert_eq!(
            r.key(0),
            Err(CborError::UnexpectedKey {
                offset: 1,
                expected: 0,
                found: 1
            })
        );
    }

    #[test]
    fn raw_item_spans_nested_items() {
        // [1, {2: h'ff'}, "a"] followed by trailing 0x00
        let input = [0x83, 0x01, 0xa1, 0x02, 0x41, 0xff, 0x61, b'a', 0x00];
        let mut r = Reader::new(&input);
        assert_eq!(r.raw_item(), Ok(&input[..8]));
        assert_eq!(r.finish(), Err(CborError::TrailingBytes { offset: 8 }));
    }

    #[test]
    fn raw_item_bounds_hostile_counts() {
        // an array claiming 2^64-1 elements must fail on missing input, not loop forever
        let input = [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(Reader::new(&input).raw_item().is_err());
    }

    #[test]
    fn raw_item_requires_sorted_unique_map_keys() {
        // Found by the cbor_raw_item fuzz target: {0: h'', 0: 0, 0: 0, 0: 0, 0: 0, -5: -5}
        let fuzzed = [
            0xa6, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x24, 0x24,
        ];
        assert_eq!(
            Reader::new(&fuzzed).raw_item(),
            Err(CborError::UnsortedMapKey { offset: 3 })
        );
        for (bad, offset) in [
            (&[0xa2, 0x01, 0x00, 0x00, 0x00][..], 3),   // {1: 0, 0: 0}
            (&[0xa2, 0x20, 0x00, 0x18, 0x18, 0x00], 3), // {-1: 0, 24: 0}: 0x20 > 0x18
            // {0: {2: 0, 1: 0}, 1: 0}: inside a nested map
            (&[0xa2, 0x00, 0xa2, 0x02, 0x00, 0x01, 0x00, 0x01, 0x00], 5),
            // {1: {0: 0}, 0: 0}: the inner map's keys do not reset the outer map's order
            (&[0xa2, 0x01, 0xa1, 0x00, 0x00, 0x00, 0x00], 5),
            // {{1: 0}: 0, {0: 0}: 0}: keys that are maps compare by their encodings
            (&[0xa2, 0xa1, 0x01, 0x00, 0x00, 0xa1, 0x00, 0x00, 0x00], 5),
            (&[0x81, 0xa2, 0x61, b'b', 0x00, 0x61, b'a', 0x00], 5), // [{"b": 0, "a": 0}]
        ] {
            assert_eq!(
                Reader::new(bad).raw_item(),
                Err(CborError::UnsortedMapKey { offset }),
                "{bad:x?}"
            );
        }
        for good in [
            &[0xa3, 0x00, 0x00, 0x20, 0x00, 0x61, b'a', 0x00][..], // {0: 0, -1: 0, "a": 0}
            &[0xa2, 0x18, 0x18, 0x00, 0x20, 0x00],                 // {24: 0, -1: 0}
            &[0xa2, 0x00, 0xa2, 0x01, 0x00, 0x02, 0x00, 0x01, 0x00], // {0: {1: 0, 2: 0}, 1: 0}
            &[0xa2, 0xa1, 0x00, 0x00, 0x00, 0xa1, 0x01, 0x00, 0x00], // {{0: 0}: 0, {1: 0}: 0}
            &[0xa2, 0x00, 0xa0, 0x01, 0xa1, 0x00, 0xa0],           // {0: {}, 1: {0: {}}}
        ] {
            let mut r = Reader::new(good);
            assert_eq!(r.raw_item(), Ok(good), "{good:x?}");
            assert_eq!(r.finish(), Ok(()));
        }
    }

    #[test]
    fn raw_item_bounds_map_nesting() {
        // MAX_MAP_DEPTH maps nested in each other ({0: {0: ... 0}}) are accepted, one more is not.
        let nested = |depth: usize| {
            let mut v = [0xa1, 0x00].repeat(depth);
            v.push(0x00);
            v
        };
        let ok = nested(MAX_MAP_DEPTH);
        assert_eq!(Reader::new(&ok).raw_item(), Ok(&ok[..]));
        let deep = nested(MAX_MAP_DEPTH + 1);
        assert_eq!(
            Reader::new(&deep).raw_item(),
            Err(CborError::OutOfRange {
                offset: 2 * MAX_MAP_DEPTH
            })
        );
        // arrays and tags need no record and nest freely
        let mut arrays = [0x81, 0xd2].repeat(1000);
        arrays.push(0x00);
        assert_eq!(Reader::new(&arrays).raw_item(), Ok(&arrays[..]));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn writer_round_trips_every_head_width() {
        use super::write::Writer;
        for v in [
            0u64,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX,
        ] {
            let mut w = Writer::new();
            w.u64(v);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.u64(), Ok(v));
            assert_eq!(r.finish(), Ok(()));
        }
        for v in [-1i64, -24, -25, -256, -257, i64::MIN, 0, i64::MAX] {
            let mut w = Writer::new();
            w.i64(v);
            let bytes = w.into_bytes();
            assert_eq!(Reader::new(&bytes).i64(), Ok(v), "{v}");
        }
    }
}
