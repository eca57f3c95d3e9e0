//! The rejection harness: every other encoding of a format's data is refused with the specific
//! error and byte offset.

use cairn_verifier::Error;
use cairn_verifier::error::{CborError, Item};
use cairn_verifier::statement::FORMAT_VERSION;

use super::cbor::*;

// =============================================================================================
// The rejection harness

pub(crate) struct Format {
    pub(crate) item: Item,
    pub(crate) decode: fn(&[u8]) -> Result<(), Error>,
    pub(crate) valid: V,
    pub(crate) bytes: Vec<u8>,
    /// Generic rules that do not hold for this format (checked by the caller instead).
    pub(crate) skip: Vec<&'static str>,
}

impl Format {
    pub(crate) fn new(item: Item, decode: fn(&[u8]) -> Result<(), Error>, bytes: Vec<u8>) -> Self {
        assert_eq!(decode(&bytes), Ok(()), "the valid encoding");
        let valid = parse(&bytes);
        assert_eq!(encode(&valid), bytes);
        Self {
            item,
            decode,
            valid,
            bytes,
            skip: Vec::new(),
        }
    }

    /// The same format with the generic rule `what` left to the caller.
    pub(crate) fn skipping(mut self, what: &'static str) -> Self {
        self.skip.push(what);
        self
    }

    /// Mutates a copy of the valid value and checks its encoding is rejected with the error
    /// `cause(offset of the node at path at, encoded length)`. Returns the encoding.
    pub(crate) fn rejects(
        &self,
        what: &str,
        at: &[usize],
        mutate: impl FnOnce(&mut V),
        cause: impl FnOnce(usize, usize) -> CborError,
    ) -> Vec<u8> {
        let mut v = self.valid.clone();
        mutate(&mut v);
        let (bytes, mark) = encode_marked(&v, at);
        if self.skip.contains(&what) {
            return bytes;
        }
        let expected = Error::Malformed {
            item: self.item,
            cause: cause(mark, bytes.len()),
        };
        assert_eq!((self.decode)(&bytes), Err(expected), "{what}: {bytes:02x?}");
        bytes
    }

    /// Like [`Format::rejects`] for a mutation that keeps the data and only changes its encoding:
    /// also checks that a lenient decoder reads the same data.
    pub(crate) fn rejects_same_data(
        &self,
        what: &str,
        at: &[usize],
        mutate: impl FnOnce(&mut V),
        cause: impl FnOnce(usize, usize) -> CborError,
    ) {
        let bytes = self.rejects(what, at, mutate, cause);
        assert_eq!(parse(&bytes), self.valid, "{what}: not the same data");
    }

    pub(crate) fn rejects_bytes(&self, what: &str, bytes: &[u8], cause: CborError) {
        assert_eq!(
            (self.decode)(bytes),
            Err(Error::Malformed {
                item: self.item,
                cause
            }),
            "{what}"
        );
    }

    /// The rules every cairn map (entries and the delivery envelope) follows: key 0 is the format
    /// version, keys are 0..n in order, each exactly once, heads shortest, lengths definite.
    pub(crate) fn map_rules(&self) {
        let n = self.valid.clone().entries().len();
        let keys: Vec<V> = (0..n as u64).map(U).collect();
        assert_eq!(
            self.valid
                .clone()
                .entries()
                .iter()
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>(),
            keys
        );
        self.map_encoding_rules(n);
        self.map_key_rules(n);
        self.map_version_rules();
        self.map_envelope_rules();
    }

    /// The same data, encoded otherwise.
    pub(crate) fn map_encoding_rules(&self, n: usize) {
        let m = n - 1; // the last entry
        self.rejects_same_data(
            "map head widened",
            &[],
            |v| v.wrap(|x| V::Wide(Box::new(x))),
            |offset, _| CborError::NonCanonical { offset },
        );
        self.rejects_same_data(
            "indefinite-length map",
            &[],
            |v| v.wrap(|x| V::Indef(Box::new(x))),
            |offset, _| CborError::IndefiniteLength { offset },
        );
        self.rejects_same_data(
            "key widened",
            &at_key(1),
            |v| v.entries()[1].0.wrap(|x| V::Wide(Box::new(x))),
            |offset, _| CborError::NonCanonical { offset },
        );
        self.rejects_same_data(
            "last key widened",
            &at_key(m),
            |v| v.entries()[m].0.wrap(|x| V::Wide(Box::new(x))),
            |offset, _| CborError::NonCanonical { offset },
        );
        self.rejects_same_data(
            "version widened",
            &at_val(0),
            |v| v.field(0).wrap(|x| V::Wide(Box::new(x))),
            |offset, _| CborError::NonCanonical { offset },
        );
    }

    /// Duplicate, missing, unknown and misordered keys.
    pub(crate) fn map_key_rules(&self, n: usize) {
        let m = n - 1; // the last entry
        let unexpected = unexpected_key;
        let wrong_count = |_: usize, _: usize| CborError::WrongLength {
            offset: 0,
            expected: n,
        };
        self.rejects(
            "keys out of order",
            &at_key(m - 1),
            |v| v.entries().swap(m - 1, m),
            unexpected(m - 1, m),
        );
        self.rejects(
            "first keys out of order",
            &at_key(0),
            |v| v.entries().swap(0, 1),
            unexpected(0, 1),
        );
        self.rejects(
            "duplicate key, count kept",
            &at_key(m),
            |v| v.entries()[m] = v.entries()[m - 1].clone(),
            unexpected(m, m - 1),
        );
        self.rejects(
            "duplicate key, count adjusted",
            &[],
            |v| {
                let dup = v.entries()[m - 1].clone();
                v.entries().insert(m, dup);
            },
            wrong_count,
        );
        self.rejects(
            "missing key, count kept",
            &at_key(m - 1),
            |v| {
                v.entries().remove(m - 1);
                v.wrap(|x| V::Count(n as u64, Box::new(x)));
            },
            unexpected(m - 1, m),
        );
        self.rejects(
            "missing key, count adjusted",
            &[],
            |v| {
                v.entries().remove(m);
            },
            wrong_count,
        );
        self.rejects(
            "missing last key, count kept",
            &[],
            |v| {
                v.entries().remove(m);
                v.wrap(|x| V::Count(n as u64, Box::new(x)));
            },
            |_, len| CborError::UnexpectedEnd { offset: len },
        );
        self.rejects(
            "unknown extra key, count adjusted",
            &[],
            |v| v.entries().push((U(n as u64), U(0))),
            wrong_count,
        );
        self.rejects(
            "unknown extra key, count kept",
            &at_key(n),
            |v| {
                v.entries().push((U(n as u64), U(0)));
                v.wrap(|x| V::Count(n as u64, Box::new(x)));
            },
            |offset, _| CborError::TrailingBytes { offset },
        );
        self.rejects(
            "unknown key instead of the last",
            &at_key(m),
            |v| v.entries()[m].0 = U(n as u64),
            unexpected(m, n),
        );
        self.rejects(
            "text key",
            &at_key(1),
            |v| v.entries()[1].0 = t("1"),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "unsigned integer",
            },
        );
        self.rejects(
            "negative key",
            &at_key(1),
            |v| v.entries()[1].0 = N(0),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "unsigned integer",
            },
        );
    }

    /// Key 0: the format version.
    pub(crate) fn map_version_rules(&self) {
        for bad in [0, FORMAT_VERSION + 1, u64::MAX] {
            self.rejects(
                "wrong version",
                &at_val(0),
                |v| *v.field(0) = U(bad),
                |offset, _| CborError::Unsupported { offset },
            );
        }
        self.rejects(
            "version as float",
            &at_val(0),
            |v| *v.field(0) = V::Half(1.0),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "no simple values or floats",
            },
        );
        self.rejects(
            "version as double",
            &at_val(0),
            |v| *v.field(0) = V::Double(1.0),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "no simple values or floats",
            },
        );
    }

    /// The map itself: type, trailing and missing bytes.
    pub(crate) fn map_envelope_rules(&self) {
        let len = self.bytes.len();
        self.rejects(
            "an array instead of a map",
            &[],
            |v| {
                let items = v.entries().iter().map(|(_, x)| x.clone()).collect();
                *v = A(items);
            },
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "map",
            },
        );
        self.rejects(
            "tagged map",
            &[],
            |v| v.wrap(|x| V::Tag(24, Box::new(x))),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "map",
            },
        );
        let mut trailing = self.bytes.clone();
        trailing.push(0x00);
        self.rejects_bytes(
            "trailing byte",
            &trailing,
            CborError::TrailingBytes { offset: len },
        );
        let mut trailing = self.bytes.clone();
        trailing.extend_from_slice(&self.bytes);
        self.rejects_bytes(
            "two items",
            &trailing,
            CborError::TrailingBytes { offset: len },
        );
        self.rejects_bytes("empty", &[], CborError::UnexpectedEnd { offset: 0 });
        for cut in 0..len {
            let result = (self.decode)(&self.bytes[..cut]);
            assert!(
                matches!(
                    result,
                    Err(Error::Malformed {
                        item,
                        cause: CborError::UnexpectedEnd { offset },
                    }) if item == self.item && offset <= cut
                ),
                "truncated to {cut}: {result:?}"
            );
        }
    }

    /// A text field: a widened or indefinite length, bytes, and invalid UTF-8 are rejected.
    pub(crate) fn text_field(&self, what: &str, path: &[usize], set: impl Fn(&mut V, V)) {
        self.rejects_same_data(
            &format!("{what}: length widened"),
            path,
            |v| set(v, V::Wide(Box::new(self.get(path)))),
            |offset, _| CborError::NonCanonical { offset },
        );
        self.rejects_same_data(
            &format!("{what}: indefinite length"),
            path,
            |v| set(v, V::Indef(Box::new(self.get(path)))),
            |offset, _| CborError::IndefiniteLength { offset },
        );
        self.rejects(
            &format!("{what}: bytes instead of text"),
            path,
            |v| set(v, B(b"dev-000001".to_vec())),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "text string",
            },
        );
        self.rejects(
            &format!("{what}: not UTF-8"),
            path,
            |v| set(v, V::Raw(vec![0x62, 0xc3, 0x28])),
            |offset, _| CborError::InvalidUtf8 { offset: offset + 1 },
        );
    }

    pub(crate) fn get(&self, path: &[usize]) -> V {
        let mut v = &self.valid;
        for &i in path {
            v = match v {
                A(items) => &items[i],
                M(entries) => {
                    if i % 2 == 0 {
                        &entries[i / 2].0
                    } else {
                        &entries[i / 2].1
                    }
                }
                V::Tag(_, inner) => inner,
                other => panic!("no child {i} in {other:?}"),
            };
        }
        v.clone()
    }

    /// An unsigned integer field: widened, float, negative and text values are rejected.
    pub(crate) fn uint_field(&self, what: &str, k: usize) {
        let wide = self.get(&at_val(k));
        self.rejects_same_data(
            &format!("{what}: widened"),
            &at_val(k),
            |v| *v.field(k as u64) = V::Wide(Box::new(wide)),
            |offset, _| CborError::NonCanonical { offset },
        );
        for float in [V::Half(1.0), V::Double(1_795_000_000.0)] {
            self.rejects(
                &format!("{what}: float"),
                &at_val(k),
                |v| *v.field(k as u64) = float,
                |offset, _| CborError::UnexpectedType {
                    offset,
                    expected: "no simple values or floats",
                },
            );
        }
        for other in [N(0), t("1"), B(vec![1])] {
            self.rejects(
                &format!("{what}: not an unsigned integer"),
                &at_val(k),
                |v| *v.field(k as u64) = other,
                |offset, _| CborError::UnexpectedType {
                    offset,
                    expected: "unsigned integer",
                },
            );
        }
    }

    /// A `bstr .size 32` field.
    pub(crate) fn hash_field(&self, what: &str, path: &[usize], set: impl Fn(&mut V, V)) {
        for len in [0, 31, 33] {
            self.rejects(
                &format!("{what}: {len} bytes"),
                path,
                |v| set(v, B(vec![0xab; len])),
                |offset, _| CborError::WrongLength {
                    offset,
                    expected: 32,
                },
            );
        }
        self.rejects_same_data(
            &format!("{what}: length widened"),
            path,
            |v| set(v, V::Wide(Box::new(self.get(path)))),
            |offset, _| CborError::NonCanonical { offset },
        );
        self.rejects_same_data(
            &format!("{what}: indefinite length"),
            path,
            |v| set(v, V::Indef(Box::new(self.get(path)))),
            |offset, _| CborError::IndefiniteLength { offset },
        );
        self.rejects(
            &format!("{what}: text"),
            path,
            |v| set(v, t(&"a".repeat(32))),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "byte string",
            },
        );
    }

    /// A Version field (`[major, minor, patch]`).
    pub(crate) fn version_field(&self, what: &str, k: usize) {
        let at = at_val(k);
        let elem = |i| [at.clone(), vec![i]].concat();
        self.rejects_same_data(
            &format!("{what}: indefinite array"),
            &at,
            |v| v.field(k as u64).wrap(|x| V::Indef(Box::new(x))),
            |offset, _| CborError::IndefiniteLength { offset },
        );
        self.rejects_same_data(
            &format!("{what}: array head widened"),
            &at,
            |v| v.field(k as u64).wrap(|x| V::Wide(Box::new(x))),
            |offset, _| CborError::NonCanonical { offset },
        );
        self.rejects_same_data(
            &format!("{what}: component widened"),
            &elem(1),
            |v| v.field(k as u64).items()[1].wrap(|x| V::Wide(Box::new(x))),
            |offset, _| CborError::NonCanonical { offset },
        );
        self.rejects(
            &format!("{what}: component beyond u32"),
            &elem(0),
            |v| v.field(k as u64).items()[0] = U(1 << 32),
            |offset, _| CborError::OutOfRange { offset },
        );
        self.rejects(
            &format!("{what}: component as float"),
            &elem(2),
            |v| v.field(k as u64).items()[2] = V::Half(0.0),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "no simple values or floats",
            },
        );
        for len in [2usize, 4] {
            self.rejects(
                &format!("{what}: {len} components"),
                &at,
                |v| v.field(k as u64).items().resize(len, U(0)),
                |offset, _| CborError::WrongLength {
                    offset,
                    expected: 3,
                },
            );
        }
        self.rejects(
            &format!("{what}: text"),
            &at,
            |v| *v.field(k as u64) = t("2.4.1"),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "array",
            },
        );
    }

    /// Entries (not the delivery): key 1 is the kind.
    pub(crate) fn kind_rules(&self, others: &[u64]) {
        for &kind in others {
            self.rejects(
                "wrong kind",
                &at_val(1),
                |v| *v.field(1) = U(kind),
                |offset, _| CborError::Unsupported { offset },
            );
        }
        self.uint_field("kind", 1);
    }
}

pub(crate) fn unexpected_key(
    expected: usize,
    found: usize,
) -> impl FnOnce(usize, usize) -> CborError {
    move |offset, _| CborError::UnexpectedKey {
        offset,
        expected: expected as u64,
        found: found as u64,
    }
}

pub(crate) fn set_field(k: u64) -> impl Fn(&mut V, V) {
    move |v: &mut V, x: V| *v.field(k) = x
}

pub(crate) fn ids_invalid() -> Vec<String> {
    vec![
        String::new(),
        "dev 000001".into(),
        "-dev".into(),
        "dev/1".into(),
        "dév".into(),
        "a".repeat(65),
    ]
}

pub(crate) fn names_invalid() -> Vec<String> {
    vec![
        String::new(),
        " Smart Controller".into(),
        "Smart Controller ".into(),
        "Smart\nController".into(),
        "Smart\u{7f}Controller".into(),
        "x".repeat(129),
    ]
}
