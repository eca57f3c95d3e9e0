//! `AddCheckpoint::parse` (the C2SP tlog-witness add-checkpoint body) on arbitrary bytes: never
//! panics; a parsed request re-encodes to the same bytes (one spelling), its proof has at most 63
//! hashes, its old size is not above the checkpoint's, and no proof comes from size 0.
#![no_main]

use cairn_verifier::tlog_witness::{AddCheckpoint, MAX_PROOF_LINES, write::add_checkpoint};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        let Ok(request) = AddCheckpoint::parse(data) else {
            return;
        };
        let proof: Vec<[u8; 32]> = request.proof().collect();
        assert_eq!(proof.len(), request.proof().len());
        assert!(proof.len() <= MAX_PROOF_LINES);
        assert!(request.old.0 <= request.checkpoint.size.0);
        assert!(request.old.0 > 0 || proof.is_empty());
        let note = core::str::from_utf8(request.checkpoint_bytes).expect("a parsed note is UTF-8");
        assert_eq!(
            add_checkpoint(request.old.0, &proof, note).as_bytes(),
            data,
            "a request has one spelling"
        );
    });
});
