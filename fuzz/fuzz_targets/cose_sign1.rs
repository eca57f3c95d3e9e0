//! `CoseSign1::decode` on arbitrary bytes: never panics, and whatever decodes is exactly the
//! `COSE_Sign1` the host-side writer assembles from the decoded parts (one accepted shape, one
//! encoding).
#![no_main]

use cairn_verifier::cose::CoseSign1;
use cairn_verifier::cose::write::{assemble, protected_header};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        if let Ok(cose) = CoseSign1::decode(data) {
            assert_eq!(cose.protected, protected_header(&cose.kid).as_slice());
            assert_eq!(
                assemble(cose.protected, cose.payload, &cose.signature.0),
                data,
                "COSE_Sign1 re-encodes differently"
            );
        }
    });
});
