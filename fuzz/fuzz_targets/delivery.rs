//! `Delivery::decode` on arbitrary bytes: never panics, and whatever decodes re-encodes to exactly
//! the input (deterministic CBOR has one encoding per value, so decode then encode is the identity).
#![no_main]

use cairn_verifier::delivery::Delivery;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        if let Ok(delivery) = Delivery::decode(data) {
            // Every proof hash was checked at decode time, so iteration yields all of them.
            assert_eq!(delivery.proof.iter().count(), delivery.proof.len());
            assert_eq!(delivery.to_cbor(), data, "delivery re-encodes differently");
        }
    });
});
