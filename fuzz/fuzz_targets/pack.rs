//! The evidence pack decoder (docs/audit.md) on arbitrary bytes: it never panics, and whatever
//! decodes re-encodes to exactly the input (one encoding per pack, deterministic CBOR).
#![no_main]

use cairn_verifier::pack::Pack;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        if let Ok(pack) = Pack::decode(data) {
            assert_eq!(pack.to_cbor(), data, "pack re-encodes differently");
            assert_eq!(
                pack.signer.indices().count() + pack.relay.indices().count(),
                pack.signer.len() + pack.relay.len()
            );
        }
    });
});
