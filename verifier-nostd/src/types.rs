//! Small value types that can only hold valid values ("parse, don't validate").

use core::fmt;

use crate::cbor::CborError;
use crate::cbor::Reader;

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// Number of leaves in a Merkle tree (RFC 9162 §2.1: `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TreeSize(pub u64);

/// Zero-based index of a leaf in a Merkle tree (RFC 9162 §2.1.3: `m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeafIndex(pub u64);

/// Monotonic anti-rollback counter carried by a release and stored by the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SecurityEpoch(pub u64);

/// Seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(pub u64);

impl fmt::Display for TreeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for LeafIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for SecurityEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A firmware version `major.minor.patch`, ordered numerically field by field.
///
/// Encoded as a CBOR array of three unsigned integers (formats.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible features.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

impl Version {
    /// A version from its three parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `major.minor.patch` (decimal, no leading zeros, no other characters).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let mut next = || -> Option<u32> {
            let p = parts.next()?;
            if p.is_empty()
                || (p.len() > 1 && p.starts_with('0'))
                || !p.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            p.parse().ok()
        };
        let v = Self::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            None
        } else {
            Some(v)
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, CborError> {
        r.array_of(3)?;
        Ok(Self::new(r.u32()?, r.u32()?, r.u32()?))
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn encode(&self, w: &mut crate::cbor::write::Writer) {
        w.array(3)
            .u64(u64::from(self.major))
            .u64(u64::from(self.minor))
            .u64(u64::from(self.patch));
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Longest identifier (device id, release id, campaign id, hardware revision), in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest display name (product, family), in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// An identifier: 1 to 64 bytes of `A-Z a-z 0-9 . _ : -`, starting with a letter or digit.
///
/// Device ids, release ids, campaign ids and hardware revisions are identifiers. The restricted
/// alphabet keeps them safe in MQTT topics, file names, URLs and log lines without escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id<'a>(&'a str);

impl<'a> Id<'a> {
    /// Checks `s` and wraps it.
    pub fn new(s: &'a str) -> Option<Self> {
        let b = s.as_bytes();
        let first_ok = b.first().is_some_and(u8::is_ascii_alphanumeric);
        let all_ok = b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
        (first_ok && all_ok && b.len() <= MAX_ID_LEN).then_some(Self(s))
    }

    /// The identifier text.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    pub(crate) fn decode(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let offset = r.position();
        Self::new(r.text()?).ok_or(CborError::InvalidText { offset })
    }
}

impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A display name: 1 to 128 bytes of UTF-8 without control characters or leading/trailing spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name<'a>(&'a str);

impl<'a> Name<'a> {
    /// Checks `s` and wraps it.
    pub fn new(s: &'a str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME_LEN
            && !s.chars().any(char::is_control)
            && s.trim() == s;
        ok.then_some(Self(s))
    }

    /// The name text.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    pub(crate) fn decode(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let offset = r.position();
        Self::new(r.text()?).ok_or(CborError::InvalidText { offset })
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A list of text items kept in its validated CBOR encoding (decoding needs no allocator), or
/// given as a slice by a host that builds a statement to encode.
#[derive(Debug, Clone, Copy)]
pub enum TextList<'a> {
    /// The encoded elements (after the array head) and their count; every element was checked
    /// when the list was decoded.
    Encoded {
        /// The element encodings, back to back.
        elements: &'a [u8],
        /// How many there are.
        count: u64,
    },
    /// Items supplied by the caller.
    Slice(&'a [&'a str]),
}

impl<'a> TextList<'a> {
    /// Decodes an array of text items, each checked by `check`, at most `max` of them.
    pub(crate) fn decode(
        r: &mut Reader<'a>,
        max: u64,
        check: fn(&'a str) -> bool,
    ) -> Result<Self, CborError> {
        let offset = r.position();
        let count = r.array_len()?;
        if count > max {
            return Err(CborError::OutOfRange { offset });
        }
        let start = r.position();
        for _ in 0..count {
            let item_offset = r.position();
            if !check(r.text()?) {
                return Err(CborError::InvalidText {
                    offset: item_offset,
                });
            }
        }
        let elements = r.slice_from(start);
        Ok(TextList::Encoded { elements, count })
    }

    /// Number of items.
    pub fn len(&self) -> u64 {
        match self {
            TextList::Encoded { count, .. } => *count,
            TextList::Slice(s) => s.len() as u64,
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items, in order.
    pub fn iter(&self) -> TextListIter<'a> {
        match *self {
            TextList::Encoded { elements, count } => TextListIter::Encoded {
                reader: Reader::new(elements),
                left: count,
            },
            TextList::Slice(s) => TextListIter::Slice(s.iter()),
        }
    }

    /// Whether `item` is in the list.
    pub fn contains(&self, item: &str) -> bool {
        self.iter().any(|i| i == item)
    }
}

impl<'a> IntoIterator for &TextList<'a> {
    type Item = &'a str;
    type IntoIter = TextListIter<'a>;

    fn into_iter(self) -> TextListIter<'a> {
        self.iter()
    }
}

impl PartialEq for TextList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for TextList<'_> {}

/// Iterator over a [`TextList`].
#[derive(Debug, Clone)]
pub enum TextListIter<'a> {
    /// Over encoded items.
    Encoded {
        /// Positioned at the next item.
        reader: Reader<'a>,
        /// Items left.
        left: u64,
    },
    /// Over a slice.
    Slice(core::slice::Iter<'a, &'a str>),
}

impl<'a> Iterator for TextListIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            TextListIter::Encoded { reader, left } => {
                *left = left.checked_sub(1)?;
                // Validated at decode time; a failure here would mean the list was built by hand
                // from bad bytes, and ending the iteration is the safe answer.
                reader.text().ok()
            }
            TextListIter::Slice(it) => it.next().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parse_and_order() {
        assert_eq!(Version::parse("2.4.1"), Some(Version::new(2, 4, 1)));
        assert!(Version::new(2, 4, 1) > Version::new(2, 3, 99));
        assert!(Version::new(10, 0, 0) > Version::new(9, 99, 99));
        for bad in [
            "",
            "2.4",
            "2.4.1.0",
            "02.4.1",
            "2.4.x",
            "2..1",
            "-1.0.0",
            "4294967296.0.0",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert!(Id::new("dev-000123").is_some());
        assert!(Id::new("controller-fw-2.4.1").is_some());
        for bad in ["", "-x", "a b", "a/b", "a+b", "é", &"x".repeat(65)] {
            assert!(Id::new(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(Name::new("Smart Controller").is_some());
        for bad in ["", " x", "x ", "a\nb", "a\tb", &"x".repeat(129)] {
            assert!(Name::new(bad).is_none(), "{bad:?}");
        }
    }
}
