//! `EntryHeader::peek` and the entry decoders behind it (`ReleaseEntry`, `Manifest`, the custody
//! entries, and
//! `Statement`, which the vault indexes every entry with) on arbitrary bytes: never panic; an entry
//! that decodes has the header `peek` reports, and re-encodes to exactly the input.
#![no_main]

use cairn_verifier::statement::{
    EntryHeader, FORMAT_VERSION, Kind, Manifest, ReleaseEntry, Statement,
};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        let header = EntryHeader::peek(data);
        if let Ok(h) = header {
            assert_eq!(h.version, FORMAT_VERSION);
        }
        if let Ok(entry) = ReleaseEntry::decode(data) {
            let h = header.expect("a decoded release entry has a header");
            assert_eq!((h.kind, h.fields), (Kind::RELEASE, 3));
            assert_eq!(
                entry.to_cbor(),
                data,
                "release entry re-encodes differently"
            );
        }
        if let Ok(manifest) = Manifest::decode(data) {
            let h = header.expect("a decoded manifest has a header");
            assert_eq!((h.kind, h.fields), (Kind::MANIFEST, 12));
            assert_eq!(manifest.to_cbor(), data, "manifest re-encodes differently");
        }
        if let Ok(statement) = Statement::decode(data) {
            let h = header.expect("a decoded statement has a header");
            assert_eq!(statement.kind(), h.kind);
            match statement {
                Statement::Release { entry, .. } => assert_eq!(entry.to_cbor(), data),
                Statement::Manifest(m) => assert_eq!(m.to_cbor(), data),
                Statement::Session(s) => assert_eq!(s.to_cbor(), data),
                Statement::Rejection(r) => {
                    assert!(!r.reasons.is_empty());
                    assert_eq!(r.to_cbor(), data);
                }
                Statement::Ceremony { entry, .. }
                | Statement::Key { entry, .. }
                | Statement::Plan { entry, .. } => {
                    assert_eq!(entry.to_cbor(), data);
                }
                _ => panic!("a statement of a kind the fuzz target does not know"),
            }
        }
    });
});
