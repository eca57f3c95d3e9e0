//! The eligibility and rollout formats (formats.md §4.8-4.12, §7) on arbitrary bytes: the
//! rejection, plan, approval, device and campaign event, relay checkpoint record and status report decoders never panic, whatever decodes re-encodes to exactly the input, and the
//! decoded values keep their schema's invariants.
#![no_main]

use cairn_verifier::campaign::{
    Approval, CampaignEvent, DeviceEvent, RelayCheckpoint, StatusReport,
};
use cairn_verifier::rollout::{Rejection, RolloutPlan};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
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
        if let Ok(a) = Approval::decode(data) {
            assert!(a.stage < 16);
            assert_eq!(a.to_cbor(), data, "approval re-encodes differently");
        }
        if let Ok(e) = DeviceEvent::decode(data) {
            assert_eq!(e.to_cbor(), data, "device event re-encodes differently");
        }
        if let Ok(e) = CampaignEvent::decode(data) {
            assert_eq!(e.to_cbor(), data, "campaign event re-encodes differently");
        }
        if let Ok(r) = RelayCheckpoint::decode(data) {
            assert!(!r.checkpoint.is_empty());
            assert_eq!(
                r.to_cbor(),
                data,
                "relay checkpoint record re-encodes differently"
            );
        }
        if let Ok(r) = StatusReport::decode(data) {
            assert_eq!(r.to_cbor(), data, "status report re-encodes differently");
        }
    });
});
