//! `der_to_raw` on arbitrary bytes: never panics, and only strict DER decodes, so converting the
//! result back with `raw_to_der` gives exactly the input.
#![no_main]

use cairn_verifier::crypto::{der_to_raw, raw_to_der};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        if let Some(signature) = der_to_raw(data) {
            let mut der = [0u8; 72];
            let n = raw_to_der(&signature, &mut der);
            assert_eq!(
                &der[..n],
                data,
                "accepted DER that is not the strict encoding"
            );
        }
    });
});
