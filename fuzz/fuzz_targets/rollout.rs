//! The eligibility formats (formats.md §4.8-4.9) on arbitrary bytes: `Rejection::decode` and
//! `RolloutPlan::decode` never panic, whatever decodes re-encodes to exactly the input, and the
//! decoded values keep their schema's invariants.
#![no_main]

use cairn_verifier::rollout::{Rejection, RolloutPlan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Rejection::decode(data) {
        assert!(!r.reasons.is_empty());
        assert_eq!(r.to_cbor(), data, "rejection re-encodes differently");
    }
    if let Ok(plan) = RolloutPlan::decode(data) {
        let mut last = 0;
        for stage in plan.stages.iter() {
            assert!(stage.devices > last);
            assert!((1..=1000).contains(&stage.success_permille));
            last = stage.devices;
        }
        assert_eq!(last, plan.eligible);
        assert_eq!(plan.to_cbor(), data, "plan re-encodes differently");
    }
});
