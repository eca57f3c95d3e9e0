//! `TransferBundle::decode` and `verify` on arbitrary bytes (formats.md §6): never panic, whatever
//! decodes re-encodes to exactly the input, and verification against the fixture's log key never
//! panics whatever the sizes, edges and proofs claim.
#![no_main]

use std::sync::OnceLock;

use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::note::LogKey;
use cairn_verifier::test_support::{Fixture, ORIGIN, public_key, test_key};
use cairn_verifier::transfer::TransferBundle;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fn log_public() -> PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    *KEY.get_or_init(|| public_key(&test_key(Fixture::LOG_KEY)))
}

fuzz_target!(|data: &[u8]| {
    // The fixture is built once, before the first run is measured.
    log_public();
    cairn_fuzz::bounded(data.len(), || {
        if let Ok(bundle) = TransferBundle::decode(data) {
            assert_eq!(bundle.to_cbor(), data, "bundle re-encodes differently");
            let key = LogKey::new(ORIGIN, ORIGIN, log_public(), &Software).expect("fixture key");
            if let Ok(leaves) = bundle.verify(&key, None) {
                assert_eq!(leaves.len(), bundle.entries.len());
            }
        }
    });
});
