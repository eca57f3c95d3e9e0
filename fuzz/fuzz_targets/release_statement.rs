//! `ReleaseStatement::decode` on arbitrary bytes: never panics, whatever decodes re-encodes to
//! exactly the input, and the decoded lists are within their schema bounds.
#![no_main]

use cairn_verifier::statement::{
    EntryHeader, Kind, MAX_ADVISORIES, MAX_HARDWARE_REVISIONS, ReleaseStatement,
};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        if let Ok(release) = ReleaseStatement::decode(data) {
            let header = EntryHeader::peek(data).expect("a decoded statement has a header");
            assert_eq!(header.kind, Kind::RELEASE);
            assert!((1..=MAX_HARDWARE_REVISIONS).contains(&release.hardware_revisions.len()));
            assert!(release.advisories.len() <= MAX_ADVISORIES);
            assert_eq!(
                release.hardware_revisions.iter().count() as u64,
                release.hardware_revisions.len()
            );
            assert_eq!(
                release.advisories.iter().count() as u64,
                release.advisories.len()
            );
            assert_eq!(
                release.to_cbor(),
                data,
                "release statement re-encodes differently"
            );
        }
    });
});
