//! `EntryHeader::peek` and the entry decoders behind it (`ReleaseEntry`, `Manifest`) on arbitrary
//! bytes: never panic; an entry that decodes has the header `peek` reports, and re-encodes to
//! exactly the input.
#![no_main]

use cairn_verifier::statement::{EntryHeader, FORMAT_VERSION, Kind, Manifest, ReleaseEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
        assert_eq!((h.kind, h.fields), (Kind::MANIFEST, 11));
        assert_eq!(manifest.to_cbor(), data, "manifest re-encodes differently");
    }
});
