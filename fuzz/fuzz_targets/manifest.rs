//! `Manifest::decode` on arbitrary bytes: never panics, whatever decodes re-encodes to exactly the
//! input, and the decoded version range is not empty.
#![no_main]

use cairn_verifier::statement::{EntryHeader, Kind, Manifest};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        if let Ok(manifest) = Manifest::decode(data) {
            let header = EntryHeader::peek(data).expect("a decoded manifest has a header");
            assert_eq!(header.kind, Kind::MANIFEST);
            assert!(manifest.min_version <= manifest.max_version);
            assert_eq!(manifest.to_cbor(), data, "manifest re-encodes differently");
        }
    });
});
