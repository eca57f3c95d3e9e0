//! A CBOR value model: what minicbor reads, and what the mutations change.

use cairn_verifier::types::{TextList, Version};
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};

// =============================================================================================
// A CBOR value model: what minicbor reads, and what the mutations change

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum V {
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

pub(crate) use V::{A, B, M, N, T, U};

pub(crate) fn t(s: &str) -> V {
    T(s.to_owned())
}

pub(crate) fn map(entries: Vec<(u64, V)>) -> V {
    M(entries.into_iter().map(|(k, v)| (U(k), v)).collect())
}

pub(crate) fn version(v: Version) -> V {
    A(vec![
        U(v.major.into()),
        U(v.minor.into()),
        U(v.patch.into()),
    ])
}

pub(crate) fn texts(list: &TextList<'_>) -> V {
    A(list.iter().map(t).collect())
}

impl V {
    pub(crate) fn entries(&mut self) -> &mut Vec<(V, V)> {
        match self {
            M(e) => e,
            other => panic!("not a map: {other:?}"),
        }
    }

    pub(crate) fn items(&mut self) -> &mut Vec<V> {
        match self {
            A(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    /// The value of map key `key`.
    pub(crate) fn field(&mut self, key: u64) -> &mut V {
        let entries = self.entries();
        let at = entries.iter().position(|(k, _)| *k == U(key)).unwrap();
        &mut entries[at].1
    }

    pub(crate) fn wrap(&mut self, f: impl FnOnce(V) -> V) {
        let inner = std::mem::replace(self, U(0));
        *self = f(inner);
    }
}

/// Path to the value of the `i`th entry of a map (children of a map are key, value, key, ...).
pub(crate) fn at_val(i: usize) -> Vec<usize> {
    vec![2 * i + 1]
}

pub(crate) fn at_key(i: usize) -> Vec<usize> {
    vec![2 * i]
}

pub(crate) struct Enc {
    e: Encoder<Vec<u8>>,
    path: Vec<usize>,
    target: Vec<usize>,
    mark: Option<usize>,
}

impl Enc {
    pub(crate) fn pos(&self) -> usize {
        self.e.writer().len()
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.e.writer_mut().extend_from_slice(bytes);
    }

    pub(crate) fn node(&mut self, v: &V) {
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
    pub(crate) fn head(&mut self, v: &V) {
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
    pub(crate) fn children(&mut self, v: &V) {
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

    pub(crate) fn child(&mut self, i: usize, v: &V) {
        self.path.push(i);
        self.node(v);
        self.path.pop();
    }
}

/// Major type and argument of a node's head.
pub(crate) fn head_of(v: &V) -> (u8, u64) {
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
pub(crate) fn encode_marked(v: &V, target: &[usize]) -> (Vec<u8>, usize) {
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

pub(crate) fn encode(v: &V) -> Vec<u8> {
    encode_marked(v, &[]).0
}

/// Reads one item with minicbor, leniently (it accepts non-shortest heads and indefinite lengths,
/// so a non-canonical encoding reads as the same data).
pub(crate) fn read(d: &mut Decoder<'_>) -> V {
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
pub(crate) fn parse(bytes: &[u8]) -> V {
    let mut d = Decoder::new(bytes);
    let v = read(&mut d);
    assert_eq!(d.position(), bytes.len(), "minicbor: trailing bytes");
    v
}

/// RFC 8949 §4.2.1: map keys sorted by their encodings, recursively.
pub(crate) fn assert_keys_sorted(v: &V) {
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
pub(crate) fn cross_check(bytes: &[u8], expected: &V) {
    assert_eq!(&parse(bytes), expected, "minicbor reads other values");
    assert_keys_sorted(expected);
    assert_eq!(encode(expected), bytes, "not the deterministic encoding");
}
