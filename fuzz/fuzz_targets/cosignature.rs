//! Witness cosignatures (C2SP tlog-cosignature v1) on arbitrary notes: `Cosignature::parse` on
//! every signature line never panics and a parsed cosignature is the canonical spelling of its
//! fields; `verify_quorum` under the fixture's 2-of-3 policy never panics, and accepts only with
//! at least two distinct pinned witnesses whose cosignatures verify.
#![no_main]

use base64ct::{Base64, Encoding};
use cairn_verifier::crypto::Software;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::test_support::Fixture;
use cairn_verifier::witness::{COSIGNATURE_LEN, Cosignature, verify_quorum};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        let Ok(checkpoint) = Checkpoint::parse(data) else {
            return;
        };
        for line in checkpoint.signature_lines().flatten() {
            if let Ok(c) = Cosignature::parse(line.base64) {
                let mut raw = [0u8; COSIGNATURE_LEN];
                raw[..4].copy_from_slice(&c.key_id);
                raw[4..12].copy_from_slice(&c.timestamp.to_be_bytes());
                raw[12..].copy_from_slice(&c.signature);
                assert_eq!(Base64::encode_string(&raw), line.base64, "non-canonical cosignature");
            }
        }
        let anchors = Fixture::new().witnessed_anchors();
        if let Ok(q) = verify_quorum(&checkpoint, &anchors.log, &anchors.witnesses, &Software) {
            assert!(q.have >= 2 && q.have <= 3 && q.need == 2);
        }
    });
});
