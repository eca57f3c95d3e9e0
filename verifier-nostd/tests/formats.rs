//! Property: every cairn wire format has exactly one encoding. Each encoder's output decodes back to
//! the same value, an independent CBOR implementation (minicbor) reads it as the documented
//! structure and re-encodes it to the same bytes, and each decoder rejects every other encoding of
//! the data (non-canonical CBOR, schema violations) with the specific `Error` and byte offset.
//!
//! Formats covered: ReleaseStatement, ReleaseEntry, Manifest (statement.rs), Delivery
//! (delivery.rs), COSE_Sign1 (cose.rs), the checkpoint signed note (note.rs) and the DER form of
//! ECDSA signatures (crypto.rs).
//!
//! Invalid encodings are built from a small CBOR value model ([`V`]) that minicbor fills from a
//! valid encoding; a mutation changes one node, and the expected error offset is where the encoder
//! wrote that node.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

use base64ct::{Base64, Encoding};
use cairn_verifier::Error;
use cairn_verifier::cose::{self, CoseSign1, ReleaseKey};
use cairn_verifier::crypto::{
    Crypto, P256_SPKI_PREFIX, PublicKey, Signature, Software, der_to_raw, raw_to_der,
};
use cairn_verifier::delivery::{Delivery, ProofHashes};
use cairn_verifier::error::{CborError, Item, NoteError};
use cairn_verifier::note::{self, Checkpoint, LogKey, MAX_NOTE_LEN, MAX_SIGNATURES};
use cairn_verifier::statement::{
    EntryHeader, FORMAT_VERSION, Kind, Manifest, Purpose, ReleaseEntry, ReleaseStatement,
};
use cairn_verifier::test_support::{Fixture, ORIGIN, public_key, test_key};
use cairn_verifier::types::{
    Hash, Id, LeafIndex, Name, SecurityEpoch, TextList, TreeSize, UnixTime, Version,
};
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use p256::ecdsa::signature::{Signer, Verifier};
use proptest::prelude::*;

// =============================================================================================
// A CBOR value model: what minicbor reads, and what the mutations change

#[derive(Clone, Debug, PartialEq)]
enum V {
    U(u64),
    /// Negative integer `-1 - n`.
    N(u64),
    B(Vec<u8>),
    T(String),
    A(Vec<V>),
    M(Vec<(V, V)>),
    Tag(u64, Box<V>),
    // Encodings of the same data that deterministic CBOR forbids, and foreign items:
    /// The node's head one size longer than its shortest form.
    Wide(Box<V>),
    /// The node (string, array or map) with indefinite length.
    Indef(Box<V>),
    /// An array or map whose head declares this count instead of the real one.
    Count(u64, Box<V>),
    Half(f32),
    Double(f64),
    Raw(Vec<u8>),
}

use V::{A, B, M, N, T, U};

fn t(s: &str) -> V {
    T(s.to_owned())
}

fn map(entries: Vec<(u64, V)>) -> V {
    M(entries.into_iter().map(|(k, v)| (U(k), v)).collect())
}

fn version(v: Version) -> V {
    A(vec![
        U(v.major.into()),
        U(v.minor.into()),
        U(v.patch.into()),
    ])
}

fn texts(list: &TextList<'_>) -> V {
    A(list.iter().map(t).collect())
}

impl V {
    fn entries(&mut self) -> &mut Vec<(V, V)> {
        match self {
            M(e) => e,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn items(&mut self) -> &mut Vec<V> {
        match self {
            A(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    /// The value of map key `key`.
    fn field(&mut self, key: u64) -> &mut V {
        let entries = self.entries();
        let at = entries.iter().position(|(k, _)| *k == U(key)).unwrap();
        &mut entries[at].1
    }

    fn wrap(&mut self, f: impl FnOnce(V) -> V) {
        let inner = std::mem::replace(self, U(0));
        *self = f(inner);
    }
}

/// Path to the value of the `i`th entry of a map (children of a map are key, value, key, ...).
fn at_val(i: usize) -> Vec<usize> {
    vec![2 * i + 1]
}

fn at_key(i: usize) -> Vec<usize> {
    vec![2 * i]
}

struct Enc {
    e: Encoder<Vec<u8>>,
    path: Vec<usize>,
    target: Vec<usize>,
    mark: Option<usize>,
}

impl Enc {
    fn pos(&self) -> usize {
        self.e.writer().len()
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.e.writer_mut().extend_from_slice(bytes);
    }

    fn node(&mut self, v: &V) {
        if self.mark.is_none() && self.path == self.target {
            self.mark = Some(self.pos());
        }
        match v {
            U(_) | N(_) | B(_) | T(_) | A(_) | M(_) | V::Tag(..) => {
                self.head(v);
                self.children(v);
            }
            V::Wide(inner) => {
                let (major, arg) = head_of(inner);
                let m = major << 5;
                let wide = if arg < 24 {
                    vec![m | 0x18, u8::try_from(arg).unwrap()]
                } else if let Ok(a) = u8::try_from(arg) {
                    [vec![m | 0x19], u16::from(a).to_be_bytes().to_vec()].concat()
                } else if let Ok(a) = u16::try_from(arg) {
                    [vec![m | 0x1a], u32::from(a).to_be_bytes().to_vec()].concat()
                } else if let Ok(a) = u32::try_from(arg) {
                    [vec![m | 0x1b], u64::from(a).to_be_bytes().to_vec()].concat()
                } else {
                    panic!("no wider head for {arg}")
                };
                self.raw(&wide);
                match &**inner {
                    B(b) => self.raw(b),
                    T(s) => self.raw(s.as_bytes()),
                    other => self.children(other),
                }
            }
            V::Indef(inner) => match &**inner {
                B(b) => {
                    self.e
                        .begin_bytes()
                        .unwrap()
                        .bytes(b)
                        .unwrap()
                        .end()
                        .unwrap();
                }
                T(s) => {
                    self.e.begin_str().unwrap().str(s).unwrap().end().unwrap();
                }
                A(_) => {
                    self.e.begin_array().unwrap();
                    self.children(inner);
                    self.e.end().unwrap();
                }
                M(_) => {
                    self.e.begin_map().unwrap();
                    self.children(inner);
                    self.e.end().unwrap();
                }
                other => panic!("no indefinite form of {other:?}"),
            },
            V::Count(n, inner) => {
                match &**inner {
                    A(_) => self.e.array(*n).unwrap(),
                    M(_) => self.e.map(*n).unwrap(),
                    other => panic!("no count for {other:?}"),
                };
                self.children(inner);
            }
            V::Half(x) => {
                self.e.f16(*x).unwrap();
            }
            V::Double(x) => {
                self.e.f64(*x).unwrap();
            }
            V::Raw(bytes) => self.raw(bytes),
        }
    }

    /// The shortest head, written by minicbor's encoder (with the contents, for strings).
    fn head(&mut self, v: &V) {
        match v {
            U(n) => {
                self.e.u64(*n).unwrap();
            }
            N(n) => {
                let n = i64::try_from(*n).unwrap();
                self.e.i64(-1 - n).unwrap();
            }
            B(b) => {
                self.e.bytes(b).unwrap();
            }
            T(s) => {
                self.e.str(s).unwrap();
            }
            A(items) => {
                self.e.array(items.len() as u64).unwrap();
            }
            M(entries) => {
                self.e.map(entries.len() as u64).unwrap();
            }
            V::Tag(tag, _) => {
                self.e.tag(Tag::new(*tag)).unwrap();
            }
            other => panic!("no head for {other:?}"),
        }
    }

    /// The items that follow an array, map or tag head.
    fn children(&mut self, v: &V) {
        match v {
            A(items) => {
                for (i, x) in items.iter().enumerate() {
                    self.child(i, x);
                }
            }
            M(entries) => {
                for (i, (k, x)) in entries.iter().enumerate() {
                    self.child(2 * i, k);
                    self.child(2 * i + 1, x);
                }
            }
            V::Tag(_, inner) => self.child(0, inner),
            _ => {}
        }
    }

    fn child(&mut self, i: usize, v: &V) {
        self.path.push(i);
        self.node(v);
        self.path.pop();
    }
}

/// Major type and argument of a node's head.
fn head_of(v: &V) -> (u8, u64) {
    match v {
        U(n) => (0, *n),
        N(n) => (1, *n),
        B(b) => (2, b.len() as u64),
        T(s) => (3, s.len() as u64),
        A(items) => (4, items.len() as u64),
        M(entries) => (5, entries.len() as u64),
        V::Tag(tag, _) => (6, *tag),
        other => panic!("no head for {other:?}"),
    }
}

/// Encodes `v`; returns the bytes and the offset at which the node at `target` starts.
fn encode_marked(v: &V, target: &[usize]) -> (Vec<u8>, usize) {
    let mut enc = Enc {
        e: Encoder::new(Vec::new()),
        path: Vec::new(),
        target: target.to_vec(),
        mark: None,
    };
    enc.node(v);
    let bytes = enc.e.into_writer();
    let mark = enc.mark.unwrap_or_else(|| panic!("no node at {target:?}"));
    (bytes, mark)
}

fn encode(v: &V) -> Vec<u8> {
    encode_marked(v, &[]).0
}

/// Reads one item with minicbor, leniently (it accepts non-shortest heads and indefinite lengths,
/// so a non-canonical encoding reads as the same data).
fn read(d: &mut Decoder<'_>) -> V {
    match d.datatype().unwrap() {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => U(d.u64().unwrap()),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            let i = i128::from(d.int().unwrap());
            if i >= 0 {
                U(u64::try_from(i).unwrap())
            } else {
                N(u64::try_from(-1 - i).unwrap())
            }
        }
        Type::Bytes => B(d.bytes().unwrap().to_vec()),
        Type::BytesIndef => B(d
            .bytes_iter()
            .unwrap()
            .flat_map(|c| c.unwrap().to_vec())
            .collect()),
        Type::String => T(d.str().unwrap().to_owned()),
        Type::StringIndef => T(d.str_iter().unwrap().map(|c| c.unwrap()).collect()),
        Type::Array | Type::ArrayIndef => {
            if let Some(n) = d.array().unwrap() {
                A((0..n).map(|_| read(d)).collect())
            } else {
                let mut items = Vec::new();
                while d.datatype().unwrap() != Type::Break {
                    items.push(read(d));
                }
                d.set_position(d.position() + 1);
                A(items)
            }
        }
        Type::Map | Type::MapIndef => {
            if let Some(n) = d.map().unwrap() {
                M((0..n).map(|_| (read(d), read(d))).collect())
            } else {
                let mut entries = Vec::new();
                while d.datatype().unwrap() != Type::Break {
                    entries.push((read(d), read(d)));
                }
                d.set_position(d.position() + 1);
                M(entries)
            }
        }
        Type::Tag => {
            let tag = d.tag().unwrap().as_u64();
            V::Tag(tag, Box::new(read(d)))
        }
        other => panic!("unexpected {other} in a cairn encoding"),
    }
}

/// minicbor's reading of `bytes` (which must be exactly one item).
fn parse(bytes: &[u8]) -> V {
    let mut d = Decoder::new(bytes);
    let v = read(&mut d);
    assert_eq!(d.position(), bytes.len(), "minicbor: trailing bytes");
    v
}

/// RFC 8949 §4.2.1: map keys sorted by their encodings, recursively.
fn assert_keys_sorted(v: &V) {
    match v {
        M(entries) => {
            let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| encode(k)).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "map keys not sorted");
            for (k, x) in entries {
                assert_keys_sorted(k);
                assert_keys_sorted(x);
            }
        }
        A(items) => items.iter().for_each(assert_keys_sorted),
        V::Tag(_, inner) => assert_keys_sorted(inner),
        _ => {}
    }
}

/// The independent cross-check of one encoding: minicbor reads it as `expected`, and minicbor's
/// own (shortest-form) encoder writes `expected` as exactly these bytes.
fn cross_check(bytes: &[u8], expected: &V) {
    assert_eq!(&parse(bytes), expected, "minicbor reads other values");
    assert_keys_sorted(expected);
    assert_eq!(encode(expected), bytes, "not the deterministic encoding");
}

// =============================================================================================
// The rejection harness

struct Format {
    item: Item,
    decode: fn(&[u8]) -> Result<(), Error>,
    valid: V,
    bytes: Vec<u8>,
    /// Generic rules that do not hold for this format (checked by the caller instead).
    skip: Vec<&'static str>,
}

impl Format {
    fn new(item: Item, decode: fn(&[u8]) -> Result<(), Error>, bytes: Vec<u8>) -> Self {
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
    fn skipping(mut self, what: &'static str) -> Self {
        self.skip.push(what);
        self
    }

    /// Mutates a copy of the valid value and checks its encoding is rejected with the error
    /// `cause(offset of the node at path at, encoded length)`. Returns the encoding.
    fn rejects(
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
    fn rejects_same_data(
        &self,
        what: &str,
        at: &[usize],
        mutate: impl FnOnce(&mut V),
        cause: impl FnOnce(usize, usize) -> CborError,
    ) {
        let bytes = self.rejects(what, at, mutate, cause);
        assert_eq!(parse(&bytes), self.valid, "{what}: not the same data");
    }

    fn rejects_bytes(&self, what: &str, bytes: &[u8], cause: CborError) {
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
    fn map_rules(&self) {
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
    fn map_encoding_rules(&self, n: usize) {
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
    fn map_key_rules(&self, n: usize) {
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
    fn map_version_rules(&self) {
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
    fn map_envelope_rules(&self) {
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
    fn text_field(&self, what: &str, path: &[usize], set: impl Fn(&mut V, V)) {
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

    fn get(&self, path: &[usize]) -> V {
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
    fn uint_field(&self, what: &str, k: usize) {
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
    fn hash_field(&self, what: &str, path: &[usize], set: impl Fn(&mut V, V)) {
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
    fn version_field(&self, what: &str, k: usize) {
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
    fn kind_rules(&self, others: &[u64]) {
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

fn unexpected_key(expected: usize, found: usize) -> impl FnOnce(usize, usize) -> CborError {
    move |offset, _| CborError::UnexpectedKey {
        offset,
        expected: expected as u64,
        found: found as u64,
    }
}

fn set_field(k: u64) -> impl Fn(&mut V, V) {
    move |v: &mut V, x: V| *v.field(k) = x
}

fn ids_invalid() -> Vec<String> {
    vec![
        String::new(),
        "dev 000001".into(),
        "-dev".into(),
        "dev/1".into(),
        "dév".into(),
        "a".repeat(65),
    ]
}

fn names_invalid() -> Vec<String> {
    vec![
        String::new(),
        " Smart Controller".into(),
        "Smart Controller ".into(),
        "Smart\nController".into(),
        "Smart\u{7f}Controller".into(),
        "x".repeat(129),
    ]
}

// =============================================================================================
// Values used in the round trips

fn id(s: &str) -> Id<'_> {
    Id::new(s).unwrap()
}

fn name(s: &str) -> Name<'_> {
    Name::new(s).unwrap()
}

const HW: &[&str] = &["rev-b", "rev-c"];
const ADVISORIES: &[&str] = &["CVE-2026-10001", "CAIRN-SA-2026-07"];

fn reference_release() -> ReleaseStatement<'static> {
    ReleaseStatement {
        release_id: id("controller-fw-2.4.1"),
        product: name("Smart Controller"),
        family: name("STM32H5"),
        hardware_revisions: TextList::Slice(HW),
        version: Version::new(2, 4, 1),
        security_epoch: SecurityEpoch(3),
        image_digest: [0x11; 32],
        image_size: 6 * 1024,
        support_until: UnixTime(1_956_528_000),
        advisories: TextList::Slice(ADVISORIES),
        issued_at: UnixTime(1_795_000_000),
        artifact: id("controller-fw-2.4.1-security.bin"),
        mcuboot_hash: None,
    }
}

fn release_tree(s: &ReleaseStatement<'_>) -> V {
    let mut fields = vec![
        (0, U(1)),
        (1, U(1)),
        (2, t(s.release_id.as_str())),
        (3, t(s.product.as_str())),
        (4, t(s.family.as_str())),
        (5, texts(&s.hardware_revisions)),
        (6, version(s.version)),
        (7, U(s.security_epoch.0)),
        (8, B(s.image_digest.to_vec())),
        (9, U(s.image_size)),
        (10, U(s.support_until.0)),
        (11, texts(&s.advisories)),
        (12, U(s.issued_at.0)),
        (13, t(s.artifact.as_str())),
    ];
    if let Some(hash) = s.mcuboot_hash {
        fields.push((14, B(hash.to_vec())));
    }
    map(fields)
}

fn reference_manifest() -> Manifest<'static> {
    Manifest {
        device_id: id("dev-000001"),
        release_id: id("controller-fw-2.4.1"),
        release_digest: [0x22; 32],
        hardware_revision: id("rev-c"),
        min_version: Version::new(2, 0, 0),
        max_version: Version::new(2, 4, 0),
        campaign: id("campaign-2026-11"),
        purpose: Purpose::Update,
        decided_at: UnixTime(1_795_000_100),
    }
}

fn manifest_tree(m: &Manifest<'_>) -> V {
    map(vec![
        (0, U(1)),
        (1, U(2)),
        (2, t(m.device_id.as_str())),
        (3, t(m.release_id.as_str())),
        (4, B(m.release_digest.to_vec())),
        (5, t(m.hardware_revision.as_str())),
        (6, version(m.min_version)),
        (7, version(m.max_version)),
        (8, t(m.campaign.as_str())),
        (
            9,
            U(match m.purpose {
                Purpose::Update => 0,
                Purpose::Rollback => 1,
            }),
        ),
        (10, U(m.decided_at.0)),
    ])
}

fn check_release(s: &ReleaseStatement<'_>) {
    let bytes = s.to_cbor();
    let decoded = ReleaseStatement::decode(&bytes).unwrap();
    assert_eq!(&decoded, s);
    assert_eq!(decoded.to_cbor(), bytes);
    assert_eq!(
        decoded.hardware_revisions.iter().collect::<Vec<_>>(),
        s.hardware_revisions.iter().collect::<Vec<_>>()
    );
    cross_check(&bytes, &release_tree(s));
    assert_eq!(
        EntryHeader::peek(&bytes),
        Ok(EntryHeader {
            version: 1,
            kind: Kind::RELEASE,
            fields: if s.mcuboot_hash.is_some() { 15 } else { 14 }
        })
    );
}

fn check_manifest(m: &Manifest<'_>) {
    let bytes = m.to_cbor();
    let decoded = Manifest::decode(&bytes).unwrap();
    assert_eq!(&decoded, m);
    assert_eq!(decoded.to_cbor(), bytes);
    cross_check(&bytes, &manifest_tree(m));
    assert_eq!(
        EntryHeader::peek(&bytes),
        Ok(EntryHeader {
            version: 1,
            kind: Kind::MANIFEST,
            fields: 11
        })
    );
}

// =============================================================================================
// ReleaseStatement

#[test]
fn release_statement_round_trips() {
    check_release(&reference_release());

    // limits: 32 hardware revisions, 64 advisories, longest ids and names, largest numbers
    let hw: Vec<String> = (0..32).map(|i| format!("rev-{i:02}")).collect();
    let hw: Vec<&str> = hw.iter().map(String::as_str).collect();
    let adv: Vec<String> = (0..64).map(|i| format!("CVE-2026-{i:05}")).collect();
    let adv: Vec<&str> = adv.iter().map(String::as_str).collect();
    let long_id = "r".repeat(64);
    let long_name = "é".repeat(64); // 128 bytes
    check_release(&ReleaseStatement {
        release_id: id(&long_id),
        product: name(&long_name),
        family: name("STM32H5 · ✓"),
        hardware_revisions: TextList::Slice(&hw),
        version: Version::new(u32::MAX, u32::MAX, u32::MAX),
        security_epoch: SecurityEpoch(u64::MAX),
        image_digest: [0xff; 32],
        image_size: u64::MAX,
        support_until: UnixTime(u64::MAX),
        advisories: TextList::Slice(&adv),
        issued_at: UnixTime(0),
        artifact: id("a"),
        mcuboot_hash: Some([0xfe; 32]),
    });
    // no advisories, one hardware revision, zeros
    check_release(&ReleaseStatement {
        hardware_revisions: TextList::Slice(&["rev-a"]),
        advisories: TextList::Slice(&[]),
        version: Version::new(0, 0, 0),
        security_epoch: SecurityEpoch(0),
        image_size: 0,
        ..reference_release()
    });
}

#[test]
fn mcuboot_release_statement_rejects_other_encodings() {
    // A release has 14 pairs, or 15 with key 14 (an MCUboot image's SHA256 TLV): a 15-pair
    // release without its last pair is the valid 14-pair form.
    let mcuboot = Format::new(
        Item::Release,
        |b| ReleaseStatement::decode(b).map(|_| ()),
        ReleaseStatement {
            mcuboot_hash: Some([0x33; 32]),
            ..reference_release()
        }
        .to_cbor(),
    )
    .skipping("missing key, count adjusted");
    mcuboot.map_rules();
    mcuboot.rejects(
        "MCUboot hash of 31 bytes",
        &at_val(14),
        |v| *v.field(14) = B(vec![0x33; 31]),
        |offset, _| CborError::WrongLength {
            offset,
            expected: 32,
        },
    );
    // A 15-pair map without key 14 is refused at the key it has instead (it is the MCUboot form).
    Format::new(
        Item::Release,
        |b| ReleaseStatement::decode(b).map(|_| ()),
        reference_release().to_cbor(),
    )
    .rejects(
        "duplicate key, 15 pairs: the MCUboot form without key 14",
        &at_key(13),
        |v| {
            let dup = v.entries()[12].clone();
            v.entries().insert(13, dup);
        },
        unexpected_key(13, 12),
    );
}

#[test]
fn release_statement_rejects_other_encodings() {
    // The generic rules that a 15-pair map breaks are checked by the test above.
    let f = Format::new(
        Item::Release,
        |b| ReleaseStatement::decode(b).map(|_| ()),
        reference_release().to_cbor(),
    )
    .skipping("duplicate key, count adjusted")
    .skipping("unknown extra key, count adjusted");
    f.map_rules();
    f.kind_rules(&[0, 2, 3, u64::MAX]);
    f.text_field("release id", &at_val(2), set_field(2));
    f.text_field("product", &at_val(3), set_field(3));
    f.text_field("artifact", &at_val(13), set_field(13));
    for bad in ids_invalid() {
        for k in [2, 13] {
            f.rejects(
                &format!("invalid id {bad:?} at key {k}"),
                &at_val(k),
                |v| *v.field(k as u64) = T(bad.clone()),
                |offset, _| CborError::InvalidText { offset },
            );
        }
    }
    for bad in names_invalid() {
        for k in [3, 4] {
            f.rejects(
                &format!("invalid name {bad:?} at key {k}"),
                &at_val(k),
                |v| *v.field(k as u64) = T(bad.clone()),
                |offset, _| CborError::InvalidText { offset },
            );
        }
    }
    // hardware revisions: 1 to 32 identifiers
    let hw = at_val(5);
    f.rejects(
        "no hardware revisions",
        &hw,
        |v| v.field(5).items().clear(),
        |offset, _| CborError::OutOfRange { offset },
    );
    f.rejects(
        "33 hardware revisions",
        &hw,
        |v| *v.field(5) = A((0..33).map(|i| T(format!("rev-{i}"))).collect()),
        |offset, _| CborError::OutOfRange { offset },
    );
    f.rejects(
        "invalid hardware revision",
        &[hw.clone(), vec![1]].concat(),
        |v| v.field(5).items()[1] = t("rev c"),
        |offset, _| CborError::InvalidText { offset },
    );
    f.rejects(
        "hardware revision not text",
        &[hw.clone(), vec![0]].concat(),
        |v| v.field(5).items()[0] = U(3),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "text string",
        },
    );
    f.rejects_same_data(
        "hardware revisions indefinite",
        &hw,
        |v| v.field(5).wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    f.rejects_same_data(
        "hardware revision indefinite",
        &[hw.clone(), vec![0]].concat(),
        |v| v.field(5).items()[0].wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    f.rejects(
        "hardware revisions as text",
        &hw,
        |v| *v.field(5) = t("rev-b"),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "array",
        },
    );
    // advisories: 0 to 64 names
    f.rejects(
        "65 advisories",
        &at_val(11),
        |v| *v.field(11) = A((0..65).map(|i| T(format!("CVE-{i}"))).collect()),
        |offset, _| CborError::OutOfRange { offset },
    );
    f.rejects(
        "invalid advisory",
        &[at_val(11), vec![0]].concat(),
        |v| v.field(11).items()[0] = t(" CVE"),
        |offset, _| CborError::InvalidText { offset },
    );
    f.version_field("version", 6);
    f.uint_field("security epoch", 7);
    f.hash_field("image digest", &at_val(8), set_field(8));
    f.uint_field("image size", 9);
    f.uint_field("support until", 10);
    f.uint_field("issued at", 12);
}

// =============================================================================================
// Manifest

#[test]
fn manifest_round_trips() {
    check_manifest(&reference_manifest());
    check_manifest(&Manifest {
        purpose: Purpose::Rollback,
        min_version: Version::new(2, 4, 1),
        max_version: Version::new(2, 4, 1),
        decided_at: UnixTime(u64::MAX),
        device_id: id(&"d".repeat(64)),
        ..reference_manifest()
    });
}

#[test]
fn manifest_rejects_other_encodings() {
    let f = Format::new(
        Item::Manifest,
        |b| Manifest::decode(b).map(|_| ()),
        reference_manifest().to_cbor(),
    );
    f.map_rules();
    f.kind_rules(&[0, 1, 3, u64::MAX]);
    for (k, what) in [
        (2, "device id"),
        (3, "release id"),
        (5, "hardware revision"),
        (8, "campaign"),
    ] {
        f.text_field(what, &at_val(k), set_field(k as u64));
        for bad in ids_invalid() {
            f.rejects(
                &format!("invalid {what} {bad:?}"),
                &at_val(k),
                |v| *v.field(k as u64) = T(bad.clone()),
                |offset, _| CborError::InvalidText { offset },
            );
        }
    }
    f.hash_field("release digest", &at_val(4), set_field(4));
    f.version_field("min version", 6);
    f.version_field("max version", 7);
    f.rejects(
        "max version below min version",
        &at_val(7),
        |v| *v.field(7) = version(Version::new(1, 9, 9)),
        |offset, _| CborError::OutOfRange { offset },
    );
    for purpose in [2, 255, u64::MAX] {
        f.rejects(
            "unknown purpose",
            &at_val(9),
            |v| *v.field(9) = U(purpose),
            |offset, _| CborError::OutOfRange { offset },
        );
    }
    f.uint_field("purpose", 9);
    f.uint_field("decided at", 10);
}

proptest! {
    #[test]
    fn manifests_round_trip(
        device in "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
        release in "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
        hw in "[A-Za-z0-9][A-Za-z0-9._:-]{0,10}",
        campaign in "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
        digest in any::<[u8; 32]>(),
        min in any::<(u32, u32, u32)>(),
        max in any::<(u32, u32, u32)>(),
        rollback in any::<bool>(),
        decided in any::<u64>(),
    ) {
        let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
        check_manifest(&Manifest {
            device_id: id(&device),
            release_id: id(&release),
            release_digest: digest,
            hardware_revision: id(&hw),
            min_version: Version::new(lo.0, lo.1, lo.2),
            max_version: Version::new(hi.0, hi.1, hi.2),
            campaign: id(&campaign),
            purpose: if rollback { Purpose::Rollback } else { Purpose::Update },
            decided_at: UnixTime(decided),
        });
    }

    #[test]
    fn release_statements_round_trip(
        release in "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}",
        product in "[A-Za-z0-9]([A-Za-z0-9 äé€·-]{0,40}[A-Za-z0-9])?",
        hw in proptest::collection::vec("[a-z0-9][a-z0-9-]{0,8}", 1..=32),
        advisories in proptest::collection::vec("[A-Z][A-Z0-9-]{0,20}", 0..=64),
        v in any::<(u32, u32, u32)>(),
        epoch in any::<u64>(),
        digest in any::<[u8; 32]>(),
        size in any::<u64>(),
        times in any::<(u64, u64)>(),
    ) {
        let hw: Vec<&str> = hw.iter().map(String::as_str).collect();
        let advisories: Vec<&str> = advisories.iter().map(String::as_str).collect();
        check_release(&ReleaseStatement {
            release_id: id(&release),
            product: name(&product),
            family: name(&product),
            hardware_revisions: TextList::Slice(&hw),
            version: Version::new(v.0, v.1, v.2),
            security_epoch: SecurityEpoch(epoch),
            image_digest: digest,
            image_size: size,
            support_until: UnixTime(times.0),
            advisories: TextList::Slice(&advisories),
            issued_at: UnixTime(times.1),
            artifact: id(&release),
            mcuboot_hash: None,
        });
    }
}

// =============================================================================================
// ReleaseEntry

#[test]
fn release_entry_round_trips() {
    let f = Fixture::new();
    let parts = f.build(&f.spec());
    let entry = ReleaseEntry {
        cose_sign1: &parts.release,
    };
    let bytes = entry.to_cbor();
    let decoded = ReleaseEntry::decode(&bytes).unwrap();
    assert_eq!(decoded, entry);
    assert_eq!(decoded.to_cbor(), bytes);
    cross_check(
        &bytes,
        &map(vec![(0, U(1)), (1, U(1)), (2, B(parts.release.clone()))]),
    );
    assert_eq!(
        EntryHeader::peek(&bytes),
        Ok(EntryHeader {
            version: 1,
            kind: Kind::RELEASE,
            fields: 3
        })
    );
}

#[test]
fn release_entry_rejects_other_encodings() {
    let f = Fixture::new();
    let parts = f.build(&f.spec());
    let fmt = Format::new(
        Item::Entry,
        |b| ReleaseEntry::decode(b).map(|_| ()),
        ReleaseEntry {
            cose_sign1: &parts.release,
        }
        .to_cbor(),
    );
    fmt.map_rules();
    fmt.kind_rules(&[0, 2, 3]);
    fmt.rejects_same_data(
        "COSE_Sign1 length widened",
        &at_val(2),
        |v| v.field(2).wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects_same_data(
        "COSE_Sign1 in indefinite-length bytes",
        &at_val(2),
        |v| v.field(2).wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    fmt.rejects(
        "COSE_Sign1 embedded as an item instead of bytes",
        &at_val(2),
        |v| *v.field(2) = parse(&parts.release),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "byte string",
        },
    );
}

#[test]
fn entry_header_peek() {
    let bytes = reference_manifest().to_cbor();
    let mut v = parse(&bytes);
    *v.field(0) = U(2);
    let (bad, offset) = encode_marked(&v, &at_val(0));
    assert_eq!(
        EntryHeader::peek(&bad),
        Err(Error::Malformed {
            item: Item::Entry,
            cause: CborError::Unsupported { offset }
        })
    );
    // peek reads any kind: the kind is the caller's to dispatch on
    let mut v = parse(&bytes);
    *v.field(1) = U(77);
    assert_eq!(
        EntryHeader::peek(&encode(&v)),
        Ok(EntryHeader {
            version: 1,
            kind: Kind(77),
            fields: 11
        })
    );
}

// =============================================================================================
// Delivery

fn delivery_tree(d: &Delivery<'_>) -> V {
    map(vec![
        (0, U(1)),
        (1, B(d.checkpoint.to_vec())),
        (2, B(d.release.to_vec())),
        (3, B(d.manifest.to_vec())),
        (4, U(d.leaf_index.0)),
        (5, A(d.proof.iter().map(|h| B(h.to_vec())).collect())),
    ])
}

#[test]
fn delivery_round_trips() {
    let f = Fixture::new();
    let parts = f.build(&f.spec());
    let bytes = parts.encode();
    let d = Delivery::decode(&bytes).unwrap();
    assert_eq!(d.checkpoint, parts.checkpoint.as_bytes());
    assert_eq!(d.release, &parts.release[..]);
    assert_eq!(d.manifest, &parts.manifest[..]);
    assert_eq!(d.leaf_index, LeafIndex(parts.index));
    assert_eq!(d.proof.iter().collect::<Vec<Hash>>(), parts.proof);
    assert_eq!(d.proof, ProofHashes::Slice(&parts.proof));
    assert_eq!(d.proof.len(), parts.proof.len());
    assert_eq!(d.to_cbor(), bytes);
    cross_check(&bytes, &delivery_tree(&d));

    // edge values: empty proof, 64-hash proof, largest index
    let proof: Vec<Hash> = (0..64u8).map(|i| [i; 32]).collect();
    for (index, proof) in [(0, &[][..]), (u64::MAX, &proof[..])] {
        let d = Delivery {
            leaf_index: LeafIndex(index),
            proof: ProofHashes::Slice(proof),
            ..d
        };
        let bytes = d.to_cbor();
        let back = Delivery::decode(&bytes).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.proof.iter().len(), proof.len());
        cross_check(&bytes, &delivery_tree(&d));
    }
}

#[test]
fn delivery_rejects_other_encodings() {
    let f = Fixture::new();
    let fmt = Format::new(
        Item::Delivery,
        |b| Delivery::decode(b).map(|_| ()),
        f.delivery(),
    );
    fmt.map_rules();
    for k in 1..=3 {
        fmt.rejects_same_data(
            "embedded item length widened",
            &at_val(k),
            |v| v.field(k as u64).wrap(|x| V::Wide(Box::new(x))),
            |offset, _| CborError::NonCanonical { offset },
        );
        fmt.rejects_same_data(
            "embedded item in indefinite-length bytes",
            &at_val(k),
            |v| v.field(k as u64).wrap(|x| V::Indef(Box::new(x))),
            |offset, _| CborError::IndefiniteLength { offset },
        );
        fmt.rejects(
            "embedded item as text",
            &at_val(k),
            |v| *v.field(k as u64) = t("x"),
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "byte string",
            },
        );
    }
    fmt.uint_field("leaf index", 4);
    let proof = at_val(5);
    let elem = |i| [proof.clone(), vec![i]].concat();
    fmt.hash_field("proof hash", &elem(1), |v, x| v.field(5).items()[1] = x);
    fmt.rejects(
        "65 proof hashes",
        &proof,
        |v| *v.field(5) = A(vec![B(vec![0; 32]); 65]),
        |offset, _| CborError::OutOfRange { offset },
    );
    fmt.rejects(
        "proof count beyond the input",
        &proof,
        |v| v.field(5).wrap(|x| V::Count(64, Box::new(x))),
        |_, len| CborError::UnexpectedEnd { offset: len },
    );
    fmt.rejects_same_data(
        "indefinite-length proof",
        &proof,
        |v| v.field(5).wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    fmt.rejects(
        "proof as one byte string",
        &proof,
        |v| *v.field(5) = B(vec![0; 32]),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "array",
        },
    );
}

// =============================================================================================
// COSE_Sign1

/// The array inside the COSE_Sign1 tag.
fn arr(v: &mut V) -> &mut Vec<V> {
    match v {
        V::Tag(_, a) => a.items(),
        other => panic!("not a tag: {other:?}"),
    }
}

/// The valid COSE_Sign1 of the reference release, ready for mutations.
fn cose_format() -> (Format, ReleaseKey) {
    let (key, pinned) = release_signer();
    let payload = reference_release().to_cbor();
    let fmt = Format::new(
        Item::CoseSign1,
        |b| CoseSign1::decode(b).map(|_| ()),
        cose::write::sign(&payload, &pinned.kid, &key).unwrap(),
    );
    (fmt, pinned)
}

fn release_signer() -> (p256::ecdsa::SigningKey, ReleaseKey) {
    let key = test_key(Fixture::RELEASE_KEY);
    let pinned = ReleaseKey::new(public_key(&key), &Software);
    (key, pinned)
}

#[test]
fn cose_sign1_round_trips_and_verifies() {
    let (key, pinned) = release_signer();
    let payload = reference_release().to_cbor();
    let bytes = cose::write::sign(&payload, &pinned.kid, &key).unwrap();
    let c = CoseSign1::decode(&bytes).unwrap();
    assert_eq!(c.payload, &payload[..]);
    assert_eq!(c.kid, pinned.kid);
    assert_eq!(c.protected, &cose::write::protected_header(&pinned.kid)[..]);
    assert_eq!(c.verify(&pinned, &Software), Ok(()));
    assert_eq!(
        cose::write::assemble(c.protected, c.payload, &c.signature.0),
        bytes
    );

    // minicbor: 18([h'{1: -7, 4: kid}', {}, payload, sig])
    let protected = map(vec![(1, N(6)), (4, B(pinned.kid.to_vec()))]);
    cross_check(c.protected, &protected);
    let expected = V::Tag(
        18,
        Box::new(A(vec![
            B(encode(&protected)),
            M(vec![]),
            B(payload.clone()),
            B(c.signature.0.to_vec()),
        ])),
    );
    cross_check(&bytes, &expected);

    // the Sig_structure, built by minicbor, verified by p256 itself (RFC 9052 §4.4)
    let tbs = encode(&A(vec![
        t("Signature1"),
        B(c.protected.to_vec()),
        B(vec![]),
        B(payload.clone()),
    ]));
    assert_eq!(cose::write::sig_structure(c.protected, c.payload), tbs);
    let sig = p256::ecdsa::Signature::from_slice(&c.signature.0).unwrap();
    key.verifying_key().verify(&tbs, &sig).unwrap();
    assert_eq!(c.signed_digest(&Software), Software.sha256_of(&[&tbs]));

    // the kid is SHA-256 of the DER SubjectPublicKeyInfo (RFC 5480 prefix + uncompressed point)
    let spki = [
        hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap(),
        key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
    ]
    .concat();
    assert_eq!(spki.len(), 91);
    assert_eq!(&spki[..26], &P256_SPKI_PREFIX[..]);
    assert_eq!(pinned.kid, Software.sha256_of(&[&spki]));
}

#[test]
fn cose_sign1_verify_rejects() {
    let (key, pinned) = release_signer();
    let payload = reference_release().to_cbor();
    let bytes = cose::write::sign(&payload, &pinned.kid, &key).unwrap();
    let c = CoseSign1::decode(&bytes).unwrap();
    // another pinned key
    let other = ReleaseKey::new(public_key(&test_key(9)), &Software);
    assert_eq!(c.verify(&other, &Software), Err(Error::ReleaseKeyUnknown));
    // signed by another key that claims the pinned kid
    let forged = cose::write::sign(&payload, &pinned.kid, &test_key(9)).unwrap();
    assert_eq!(
        CoseSign1::decode(&forged)
            .unwrap()
            .verify(&pinned, &Software),
        Err(Error::ReleaseSignature)
    );
    // payload changed, signature kept
    let mut changed = payload.clone();
    *changed.last_mut().unwrap() ^= 1;
    let tampered = cose::write::assemble(c.protected, &changed, &c.signature.0);
    assert_eq!(
        CoseSign1::decode(&tampered)
            .unwrap()
            .verify(&pinned, &Software),
        Err(Error::ReleaseSignature)
    );
    // r = 0 and s = 0 are not signatures
    let zero = cose::write::assemble(c.protected, &payload, &[0; 64]);
    assert_eq!(
        CoseSign1::decode(&zero).unwrap().verify(&pinned, &Software),
        Err(Error::ReleaseSignature)
    );
}

#[test]
fn cose_sign1_rejects_other_encodings() {
    let (fmt, _) = cose_format();
    fmt.rejects(
        "untagged",
        &[],
        |v| {
            let V::Tag(_, inner) = v.clone() else {
                panic!()
            };
            *v = *inner;
        },
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "tag",
        },
    );
    for tag in [98, 17, 24] {
        fmt.rejects(
            "another tag",
            &[],
            |v| {
                if let V::Tag(t, _) = v {
                    *t = tag;
                }
            },
            |offset, _| CborError::UnexpectedType {
                offset,
                expected: "a different tag",
            },
        );
    }
    fmt.rejects_same_data(
        "tag widened",
        &[],
        |v| v.wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects_same_data(
        "array head widened",
        &[0],
        |v| {
            if let V::Tag(_, a) = v {
                a.wrap(|x| V::Wide(Box::new(x)));
            }
        },
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects_same_data(
        "indefinite-length array",
        &[0],
        |v| {
            if let V::Tag(_, a) = v {
                a.wrap(|x| V::Indef(Box::new(x)));
            }
        },
        |offset, _| CborError::IndefiniteLength { offset },
    );
    for n in [3, 5] {
        fmt.rejects(
            "wrong number of elements",
            &[0],
            |v| arr(v).resize(n, B(vec![])),
            |offset, _| CborError::WrongLength {
                offset,
                expected: 4,
            },
        );
    }
}

#[test]
fn cose_sign1_elements_reject_other_encodings() {
    let (fmt, pinned) = cose_format();
    let inner = |i: usize| vec![0, i];
    let len = fmt.bytes.len();
    fmt.rejects(
        "protected header as a map",
        &inner(0),
        |v| arr(v)[0] = map(vec![(1, N(6))]),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "byte string",
        },
    );
    fmt.rejects(
        "unprotected header not empty",
        &inner(1),
        |v| arr(v)[1] = map(vec![(4, B(pinned.kid.to_vec()))]),
        |offset, _| CborError::OutOfRange { offset },
    );
    fmt.rejects_same_data(
        "unprotected header widened",
        &inner(1),
        |v| arr(v)[1].wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects(
        "unprotected header as bytes",
        &inner(1),
        |v| arr(v)[1] = B(vec![]),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "map",
        },
    );
    fmt.rejects_same_data(
        "payload length widened",
        &inner(2),
        |v| arr(v)[2].wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    fmt.rejects_same_data(
        "indefinite-length payload",
        &inner(2),
        |v| arr(v)[2].wrap(|x| V::Indef(Box::new(x))),
        |offset, _| CborError::IndefiniteLength { offset },
    );
    fmt.rejects(
        "detached payload (nil)",
        &inner(2),
        |v| arr(v)[2] = V::Raw(vec![0xf6]),
        |offset, _| CborError::UnexpectedType {
            offset,
            expected: "no simple values or floats",
        },
    );
    for n in [0, 63, 65, 72] {
        fmt.rejects(
            "signature length",
            &inner(3),
            |v| arr(v)[3] = B(vec![1; n]),
            |offset, _| CborError::WrongLength {
                offset,
                expected: 64,
            },
        );
    }
    fmt.rejects_same_data(
        "signature length widened",
        &inner(3),
        |v| arr(v)[3].wrap(|x| V::Wide(Box::new(x))),
        |offset, _| CborError::NonCanonical { offset },
    );
    let mut trailing = fmt.bytes.clone();
    trailing.push(0);
    fmt.rejects_bytes(
        "trailing byte",
        &trailing,
        CborError::TrailingBytes { offset: len },
    );
    fmt.rejects_bytes("empty", &[], CborError::UnexpectedEnd { offset: 0 });
    for cut in 0..len {
        assert!(
            CoseSign1::decode(&fmt.bytes[..cut]).is_err(),
            "truncated to {cut}"
        );
    }
}

/// Puts the mutated protected header into the valid COSE_Sign1 and checks the decoder reports
/// `cause` at the offset of the mutated node, counted from the start of the COSE_Sign1.
fn protected_rejects(
    fmt: &Format,
    header: &V,
    what: &str,
    at: &[usize],
    mutate: &dyn Fn(&mut V),
    cause: &dyn Fn(usize, usize) -> CborError,
) {
    let mut h = header.clone();
    mutate(&mut h);
    let (h_bytes, h_mark) = encode_marked(&h, at);
    let mut v = fmt.valid.clone();
    arr(&mut v)[0] = B(h_bytes.clone());
    let (bytes, start) = encode_marked(&v, &[0, 0]);
    let content = start + encode(&B(h_bytes.clone())).len() - h_bytes.len();
    assert_eq!(
        CoseSign1::decode(&bytes),
        Err(Error::Malformed {
            item: Item::CoseSign1,
            cause: cause(content + h_mark, content + h_bytes.len()),
        }),
        "protected header: {what}"
    );
}

/// Inside the protected header: offsets are relative to the COSE_Sign1.
#[test]
fn cose_sign1_protected_header_rejects_other_encodings() {
    let (fmt, pinned) = cose_format();
    let header = parse(&cose::write::protected_header(&pinned.kid));
    protected_rejects(
        &fmt,
        &header,
        "alg widened",
        &at_val(0),
        &|h| h.field(1).wrap(|x| V::Wide(Box::new(x))),
        &|offset, _| CborError::NonCanonical { offset },
    );
    protected_rejects(
        &fmt,
        &header,
        "keys out of order",
        &at_key(0),
        &|h| h.entries().swap(0, 1),
        &|offset, _| CborError::UnexpectedKey {
            offset,
            expected: 1,
            found: 4,
        },
    );
    protected_rejects(
        &fmt,
        &header,
        "extra header (crit)",
        &[],
        &|h| h.entries().push((U(2), A(vec![U(1)]))),
        &|offset, _| CborError::WrongLength {
            offset,
            expected: 2,
        },
    );
    protected_rejects(
        &fmt,
        &header,
        "kid missing",
        &[],
        &|h| {
            h.entries().pop();
        },
        &|offset, _| CborError::WrongLength {
            offset,
            expected: 2,
        },
    );
    for n in [0, 16, 31, 33] {
        protected_rejects(
            &fmt,
            &header,
            "kid length",
            &at_val(1),
            &|h| *h.field(4) = B(vec![7; n]),
            &|offset, _| CborError::WrongLength {
                offset,
                expected: 32,
            },
        );
    }
    protected_rejects(
        &fmt,
        &header,
        "indefinite map",
        &[],
        &|h| h.wrap(|x| V::Indef(Box::new(x))),
        &|offset, _| CborError::IndefiniteLength { offset },
    );
    protected_rejects(
        &fmt,
        &header,
        "trailing byte",
        &[],
        &|h| *h = V::Raw([encode(h), vec![0]].concat()),
        &|_, end| CborError::TrailingBytes { offset: end - 1 },
    );
    protected_rejects(
        &fmt,
        &header,
        "empty protected header",
        &[],
        &|h| *h = V::Raw(vec![]),
        &|offset, _| CborError::UnexpectedEnd { offset },
    );
    protected_rejects(
        &fmt,
        &header,
        "alg as text",
        &at_val(0),
        &|h| *h.field(1) = t("ES256"),
        &|offset, _| CborError::UnexpectedType {
            offset,
            expected: "integer",
        },
    );
}

/// Another algorithm is not malformed: it is refused as an algorithm.
#[test]
fn cose_sign1_other_algorithms_are_refused() {
    let (fmt, pinned) = cose_format();
    let header = parse(&cose::write::protected_header(&pinned.kid));
    for alg in [N(34), N(36), U(7), N(7)] {
        let mut h = header.clone();
        *h.field(1) = alg;
        let mut v = fmt.valid.clone();
        arr(&mut v)[0] = B(encode(&h));
        assert_eq!(
            CoseSign1::decode(&encode(&v)),
            Err(Error::ReleaseAlgorithm),
            "{h:?}"
        );
    }
}

// =============================================================================================
// Checkpoint (C2SP tlog-checkpoint in a C2SP signed note)

fn log_signer() -> (p256::ecdsa::SigningKey, LogKey<'static>) {
    let key = test_key(Fixture::LOG_KEY);
    let pinned = LogKey::new(ORIGIN, ORIGIN, public_key(&key), &Software).unwrap();
    (key, pinned)
}

fn signed(body: &str) -> String {
    let (key, pinned) = log_signer();
    note::write::sign(body, &pinned, &key).unwrap()
}

/// The signature block (after the blank line) of a valid note.
fn signature_block() -> String {
    let root = [0x33; 32];
    let note = signed(&note::write::body(ORIGIN, TreeSize(5), &root, &[]));
    note.split_once("\n\n").unwrap().1.to_owned()
}

fn root_b64(root: &Hash) -> String {
    Base64::encode_string(root)
}

#[test]
fn checkpoint_round_trips_and_verifies() {
    let (key, pinned) = log_signer();
    for (size, ext) in [
        (0u64, &[][..]),
        (1, &["witness/extension one"][..]),
        (u64::MAX, &["a", "— not a signature in the text"][..]),
    ] {
        let root: Hash = Software.sha256_of(&[&size.to_be_bytes()]);
        let body = note::write::body(ORIGIN, TreeSize(size), &root, ext);
        assert_eq!(
            body,
            format!(
                "{ORIGIN}\n{size}\n{}\n{}",
                root_b64(&root),
                ext.iter().flat_map(|e| [*e, "\n"]).collect::<String>()
            )
        );
        let signed = note::write::sign(&body, &pinned, &key).unwrap();
        let c = Checkpoint::parse(signed.as_bytes()).unwrap();
        assert_eq!(c.origin, ORIGIN);
        assert_eq!(c.size, TreeSize(size));
        assert_eq!(c.root, root);
        assert_eq!(c.text, body);
        assert_eq!(
            c.extensions,
            ext.iter().flat_map(|e| [*e, "\n"]).collect::<String>()
        );
        assert_eq!(c.verify(&pinned, &Software), Ok(()));

        // independently: one line "— <name> base64(key id || DER)", the DER signature verifies
        // with p256 over the note text, and the key id is SHA-256(SPKI)[..4]
        let lines: Vec<_> = c.signature_lines().collect();
        assert_eq!(lines.len(), 1);
        let line = lines[0].unwrap();
        assert_eq!(line.name, ORIGIN);
        assert_eq!(signed, format!("{body}\n— {ORIGIN} {}\n", line.base64));
        let blob = Base64::decode_vec(line.base64).unwrap();
        let spki = [
            P256_SPKI_PREFIX.to_vec(),
            key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
        ]
        .concat();
        assert_eq!(blob[..4], Software.sha256_of(&[&spki])[..4]);
        assert_eq!(pinned.key_id[..], blob[..4]);
        let der = p256::ecdsa::Signature::from_der(&blob[4..]).unwrap();
        key.verifying_key().verify(body.as_bytes(), &der).unwrap();
    }
    // extension lines that would break the note are dropped by the writer
    let body = note::write::body(
        ORIGIN,
        TreeSize(3),
        &[0; 32],
        &["", "ok", "bad\nline", "tab\t"],
    );
    assert_eq!(
        Checkpoint::parse(signed(&body).as_bytes())
            .unwrap()
            .extensions,
        "ok\n"
    );
}

fn parse_err(note: &str) -> NoteError {
    Checkpoint::parse(note.as_bytes()).expect_err(note)
}

/// A valid signature block and root line to build notes from.
fn note_pieces() -> (String, String) {
    (signature_block(), root_b64(&[0x33; 32]))
}

#[test]
fn checkpoint_parser_rejects_bad_lines() {
    let (sigs, root) = note_pieces();
    let note = |body: &str| format!("{body}\n{sigs}");
    // sanity: the pieces make a valid note
    assert!(Checkpoint::parse(note(&format!("{ORIGIN}\n5\n{root}\n")).as_bytes()).is_ok());

    // no blank line between text and signatures
    assert_eq!(
        parse_err(&format!("{ORIGIN}\n5\n{root}\n{sigs}")),
        NoteError::NoSignatureBlock
    );
    assert_eq!(parse_err(""), NoteError::NoSignatureBlock);
    // too few lines
    assert_eq!(
        parse_err(&note(&format!("{ORIGIN}\n5\n"))),
        NoteError::MissingLine
    );
    // origin
    assert_eq!(
        parse_err(&note(&format!("\n5\n{root}\n"))),
        NoteError::EmptyOrigin
    );
    // size: canonical decimal u64
    for size in [
        "05",
        "00",
        "5a",
        "0x5",
        "+5",
        "-1",
        " 5",
        "5 ",
        "",
        "١",
        "18446744073709551616",
        "99999999999999999999",
        "100000000000000000000",
    ] {
        assert_eq!(
            parse_err(&note(&format!("{ORIGIN}\n{size}\n{root}\n"))),
            NoteError::BadSize,
            "{size:?}"
        );
    }
    let max = note(&format!("{ORIGIN}\n18446744073709551615\n{root}\n"));
    assert_eq!(
        Checkpoint::parse(max.as_bytes()).unwrap().size,
        TreeSize(u64::MAX)
    );
    // root: canonical standard base64 of exactly 32 bytes
    let mut non_canonical = root.clone().into_bytes();
    // 32 bytes end in a group of two: its third character carries two unused bits, which must
    // be zero ('M' = 12 here; 'N' = 13 decodes to the same bytes with a non-zero unused bit)
    assert_eq!(root.as_bytes()[42], b'M');
    non_canonical[42] = b'N';
    for bad in [
        "not base64!".to_owned(),
        root_b64(&[0x33; 32])[..43].to_owned(), // padding dropped
        Base64::encode_string(&[0x33; 31]),
        Base64::encode_string(&[0x33; 33]),
        Base64::encode_string(&[0x33; 64]),
        String::new(),
        String::from_utf8(non_canonical).unwrap(),
        Base64::encode_string(&[0xfb; 32])
            .replace('+', "-")
            .replace('/', "_"),
        format!(" {root}"),
    ] {
        assert_eq!(
            parse_err(&note(&format!("{ORIGIN}\n5\n{bad}\n"))),
            NoteError::BadRootHash,
            "{bad:?}"
        );
    }
}

#[test]
fn checkpoint_parser_rejects_bad_text() {
    let (sigs, root) = note_pieces();
    let note = |body: &str| format!("{body}\n{sigs}");
    // empty extension line
    assert_eq!(
        parse_err(&note(&format!("{ORIGIN}\n5\n{root}\next\n\nmore\n"))),
        NoteError::EmptyLine
    );
    assert_eq!(
        parse_err(&note(&format!("{ORIGIN}\n5\n{root}\n\n"))),
        NoteError::EmptyLine
    );
    // control characters, CR, invalid UTF-8
    for (bad, offset) in [
        ("cairn.test\tlog", 10),
        ("cairn.test\u{0}log", 10),
        ("cairn.test\u{1b}log", 10),
        ("cairn.test\u{7f}log", 10),
        ("cairn.test/log\r", 14),
    ] {
        assert_eq!(
            parse_err(&note(&format!("{bad}\n5\n{root}\n"))),
            NoteError::NotText { offset },
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_err(&format!("{ORIGIN}\r\n5\r\n{root}\r\n\r\n{sigs}")),
        NoteError::NotText {
            offset: ORIGIN.len()
        }
    );
    let mut bytes = note(&format!("{ORIGIN}\n5\n{root}\n")).into_bytes();
    bytes[3] = 0xff;
    assert_eq!(
        Checkpoint::parse(&bytes),
        Err(NoteError::NotText { offset: 3 })
    );
}

#[test]
fn checkpoint_parser_rejects_bad_signature_lines() {
    let (sigs, root) = note_pieces();
    let body = format!("{ORIGIN}\n5\n{root}\n");
    let b64 = sigs.trim_end().rsplit_once(' ').unwrap().1.to_owned();
    for (line, n) in [
        (format!("- {ORIGIN} {b64}\n"), 1),       // hyphen, not em dash
        (format!("– {ORIGIN} {b64}\n"), 1),       // en dash
        (format!("—{ORIGIN} {b64}\n"), 1),        // no space after the dash
        (format!("— {ORIGIN}\n"), 1),             // no signature
        (format!("—  {b64}\n"), 1),               // empty name
        (format!("— cairn test/log {b64}\n"), 1), // name with a space
        (format!("— cairn+test/log {b64}\n"), 1), // name with '+'
        (format!("— {ORIGIN} {b64} \n"), 1),      // trailing space
        (format!("— {ORIGIN} AAAA\n"), 1),        // too short to hold a key id
        (format!("— {ORIGIN} {b64}"), 1),         // no final newline
        (format!("{sigs}— {ORIGIN} {b64}!\n"), 2),
        (String::new(), 1), // no signature at all
    ] {
        assert_eq!(
            parse_err(&format!("{body}\n{line}")),
            NoteError::BadSignatureLine { line: n },
            "{line:?}"
        );
    }
}

#[test]
fn checkpoint_parser_limits() {
    let (sigs, root) = note_pieces();
    let body = format!("{ORIGIN}\n5\n{root}\n");
    // at most 100 signature lines
    let witness = "— w AAAAAAAA\n";
    let hundred = format!("{body}\n{}{sigs}", witness.repeat(MAX_SIGNATURES - 1));
    assert!(hundred.len() <= MAX_NOTE_LEN);
    let (_, pinned) = log_signer();
    assert_eq!(
        Checkpoint::parse(hundred.as_bytes())
            .unwrap()
            .verify(&pinned, &Software),
        Ok(())
    );
    let hundred_one = format!("{body}\n{}{sigs}", witness.repeat(MAX_SIGNATURES));
    assert_eq!(parse_err(&hundred_one), NoteError::TooManySignatures);

    // at most 8 KiB
    let mut at_limit = format!("{ORIGIN}\n5\n{root}\n");
    let tail = format!("\n{sigs}");
    at_limit.push_str(&"y".repeat(MAX_NOTE_LEN - at_limit.len() - tail.len() - 1));
    at_limit.push('\n');
    at_limit.push_str(&tail);
    assert_eq!(at_limit.len(), MAX_NOTE_LEN);
    assert!(Checkpoint::parse(at_limit.as_bytes()).is_ok());
    let over = at_limit.replacen("yy", "yyy", 1);
    assert_eq!(over.len(), MAX_NOTE_LEN + 1);
    assert_eq!(parse_err(&over), NoteError::TooLarge);
    assert_eq!(
        Checkpoint::parse(&vec![b'a'; 1 << 20]),
        Err(NoteError::TooLarge)
    );
}

#[test]
fn checkpoint_verify_rejects() {
    let (key, pinned) = log_signer();
    let root = [0x44; 32];
    let body = note::write::body(ORIGIN, TreeSize(9), &root, &[]);
    let ours = signed(&body);
    let our_line = ours.split_once("\n\n").unwrap().1.to_owned();
    let verify = |note: &str| {
        Checkpoint::parse(note.as_bytes())
            .unwrap()
            .verify(&pinned, &Software)
    };
    assert_eq!(verify(&ours), Ok(()));

    // another log's checkpoint, signed with the pinned key and name
    let other_origin = note::write::body("cairn.test/other", TreeSize(9), &root, &[]);
    assert_eq!(
        verify(&note::write::sign(&other_origin, &pinned, &key).unwrap()),
        Err(Error::CheckpointOrigin)
    );

    // signed by another key under the pinned name: the key id differs
    let impostor = LogKey::new(ORIGIN, ORIGIN, public_key(&test_key(7)), &Software).unwrap();
    assert_ne!(impostor.key_id, pinned.key_id);
    let forged = note::write::sign(&body, &impostor, &test_key(7)).unwrap();
    assert_eq!(verify(&forged), Err(Error::CheckpointKeyMissing));
    // the pinned key id under another name
    let renamed = LogKey {
        name: "cairn.test/renamed",
        ..pinned
    };
    let renamed_note = note::write::sign(&body, &renamed, &key).unwrap();
    assert_eq!(verify(&renamed_note), Err(Error::CheckpointKeyMissing));

    // the pinned key id, but the signature is not strict DER or not over this text
    let blob = Base64::decode_vec(our_line.trim_end().rsplit_once(' ').unwrap().1).unwrap();
    let (kid, der) = blob.split_at(4);
    let line_with = |der: &[u8]| {
        format!(
            "— {ORIGIN} {}\n",
            Base64::encode_string(&[kid, der].concat())
        )
    };
    // (corruptions that keep the blob within a DER signature's size, so the line is still read)
    let mut wrong_len = der.to_vec();
    wrong_len[1] -= 1;
    let mut not_integer = der.to_vec();
    not_integer[2] = 0x03;
    let mut bad_ders: Vec<Vec<u8>> = vec![
        der[..der.len() - 1].to_vec(), // truncated
        [&[0x31], &der[1..]].concat(), // SET, not SEQUENCE
        wrong_len,                     // sequence length disagrees
        not_integer,                   // BIT STRING, not INTEGER
        vec![0x30, 0x00],              // empty
    ];
    let mut flipped = der.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1; // still DER, another s
    bad_ders.push(flipped);
    for bad in &bad_ders {
        assert_eq!(
            verify(&format!("{body}\n{}", line_with(bad))),
            Err(Error::CheckpointSignature),
            "{bad:02x?}"
        );
    }
    // a valid signature over another text
    let other_text = signed(&note::write::body(ORIGIN, TreeSize(10), &root, &[]));
    let other_line = other_text.split_once("\n\n").unwrap().1;
    assert_eq!(
        verify(&format!("{body}\n{other_line}")),
        Err(Error::CheckpointSignature)
    );

    // other signatures are ignored: witnesses, unknown keys, our name with another key id or with
    // an undecodable blob
    let witness_key = test_key(8);
    let witness = LogKey::new(
        ORIGIN,
        "witness.example/w1",
        public_key(&witness_key),
        &Software,
    )
    .unwrap();
    let witness_line = note::write::sign(&body, &witness, &witness_key)
        .unwrap()
        .split_once("\n\n")
        .unwrap()
        .1
        .to_owned();
    let forged_line = forged.split_once("\n\n").unwrap().1.to_owned();
    let long_line = format!("— {ORIGIN} {}\n", Base64::encode_string(&[1u8; 120]));
    for lines in [
        vec![&witness_line, &our_line],
        vec![&our_line, &witness_line],
        vec![&forged_line, &our_line],
        vec![&long_line, &witness_line, &our_line],
    ] {
        let note = format!(
            "{body}\n{}",
            lines.iter().map(|l| l.as_str()).collect::<String>()
        );
        assert_eq!(verify(&note), Ok(()), "{note}");
    }
    assert_eq!(
        verify(&format!("{body}\n{witness_line}")),
        Err(Error::CheckpointKeyMissing)
    );

    // a pinned key must itself be valid in a note
    let public = public_key(&key);
    assert!(LogKey::new("", ORIGIN, public, &Software).is_none());
    assert!(LogKey::new("a\nb", ORIGIN, public, &Software).is_none());
    assert!(LogKey::new(ORIGIN, "a b", public, &Software).is_none());
    assert!(LogKey::new(ORIGIN, "a+b", public, &Software).is_none());
    assert!(LogKey::new(ORIGIN, "", public, &Software).is_none());
}

// =============================================================================================
// DER <-> raw ECDSA signatures

fn assert_der_matches_p256(sig: &p256::ecdsa::Signature) {
    let raw: [u8; 64] = sig.to_bytes().into();
    let theirs = sig.to_der();
    let mut ours = [0u8; 72];
    let n = raw_to_der(&Signature(raw), &mut ours);
    assert_eq!(&ours[..n], theirs.as_bytes(), "{raw:02x?}");
    assert_eq!(der_to_raw(theirs.as_bytes()), Some(Signature(raw)));
    assert_eq!(p256::ecdsa::Signature::from_der(&ours[..n]).unwrap(), *sig);
    for (what, ber) in non_strict_variants(theirs.as_bytes()) {
        assert_eq!(der_to_raw(&ber), None, "{what}: {ber:02x?}");
        assert!(
            p256::ecdsa::Signature::from_der(&ber).is_err(),
            "p256 accepts {what}"
        );
    }
}

/// BER encodings of the same signature that strict DER forbids (and one negative integer).
fn non_strict_variants(der: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    fn int(content: &[u8]) -> Vec<u8> {
        [&[0x02, u8::try_from(content.len()).unwrap()][..], content].concat()
    }
    fn seq(body: &[u8]) -> Vec<u8> {
        [&[0x30, u8::try_from(body.len()).unwrap()][..], body].concat()
    }
    let r_len = usize::from(der[3]);
    let r = &der[4..4 + r_len];
    let s = &der[4 + r_len + 2..];
    let mut out = vec![
        (
            "r with a redundant zero",
            seq(&[int(&[&[0], r].concat()), int(s)].concat()),
        ),
        (
            "s with a redundant zero",
            seq(&[int(r), int(&[&[0], s].concat())].concat()),
        ),
        (
            "long-form sequence length",
            [&[0x30, 0x81, der[1]][..], &der[2..]].concat(),
        ),
        (
            "long-form integer length",
            seq(&[&[0x02, 0x81, der[3]][..], r, &int(s)].concat()),
        ),
        (
            "indefinite-length sequence",
            [&[0x30, 0x80][..], &der[2..], &[0, 0]].concat(),
        ),
        ("trailing byte", [der, &[0]].concat()),
    ];
    if r[0] == 0 {
        out.push((
            "r without its sign pad",
            seq(&[int(&r[1..]), int(s)].concat()),
        ));
    }
    out
}

#[test]
fn der_matches_p256_for_real_signatures() {
    let mut lengths = std::collections::BTreeSet::new();
    for k in 1..=8u8 {
        let key = test_key(k);
        for i in 0..256u32 {
            let sig: p256::ecdsa::Signature = key.sign(&i.to_be_bytes());
            assert_der_matches_p256(&sig);
            lengths.insert(sig.to_der().as_bytes().len());
        }
    }
    // 2048 signatures reach DER lengths with and without sign padding
    assert!(
        lengths.contains(&70) && lengths.contains(&71) && lengths.contains(&72),
        "{lengths:?}"
    );
}

fn scalar_bytes() -> impl Strategy<Value = [u8; 32]> {
    // leading zero bytes (short integers), high bit set (sign padding), or anything
    (0usize..32, any::<[u8; 32]>(), any::<bool>()).prop_map(|(zeros, mut b, high)| {
        if high {
            b[0] |= 0x80;
            b[0] &= 0xfe; // stay below the group order
        }
        for x in &mut b[..zeros] {
            *x = 0;
        }
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn der_matches_p256_for_any_scalars(r in scalar_bytes(), s in scalar_bytes()) {
        let Ok(sig) = p256::ecdsa::Signature::from_scalars(r, s) else {
            // zero or beyond the group order: not a signature p256 can encode
            return Ok(());
        };
        assert_der_matches_p256(&sig);
    }

    #[test]
    fn der_to_raw_accepts_only_the_strict_encoding(
        r in scalar_bytes(),
        s in scalar_bytes(),
        edit in 0usize..4,
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        // a strict encoding with one edit: a byte changed, inserted or removed, or the end cut
        let mut der = [0u8; 72];
        let n = raw_to_der(&Signature([r, s].concat().try_into().unwrap()), &mut der);
        let mut bytes = der[..n].to_vec();
        match edit {
            0 => bytes[at % n] = byte,
            1 => bytes.insert(at % (n + 1), byte),
            2 => {
                bytes.remove(at % n);
            }
            _ => bytes.truncate(at % n),
        }
        // whatever is accepted must be the one strict encoding of the value returned
        if let Some(sig) = der_to_raw(&bytes) {
            let mut strict = [0u8; 72];
            let m = raw_to_der(&sig, &mut strict);
            prop_assert_eq!(&strict[..m], &bytes[..]);
        }
    }

    #[test]
    fn der_to_raw_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Some(sig) = der_to_raw(&bytes) {
            let mut der = [0u8; 72];
            let n = raw_to_der(&sig, &mut der);
            prop_assert_eq!(&der[..n], &bytes[..]);
        }
    }
}

#[test]
fn public_key_encodings() {
    let key = test_key(1);
    let point = key.verifying_key().to_sec1_point(false);
    let public = PublicKey::from_sec1_uncompressed(point.as_bytes()).unwrap();
    assert_eq!(public, public_key(&key));
    let spki = public.spki_der();
    assert_eq!(PublicKey::from_spki_der(&spki), Some(public));
    assert_eq!(&spki[26..], point.as_bytes());
    let compressed = key.verifying_key().to_sec1_point(true);
    assert_eq!(
        PublicKey::from_sec1_uncompressed(compressed.as_bytes()),
        None
    );
}
