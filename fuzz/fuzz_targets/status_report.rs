//! A device's MQTT status report as the relay receives it (docs/relay.md, "Status reports"): the
//! topic, a NUL byte, then the payload. The relay's `broker::status_device` (compiled here from
//! the relay's source file) takes the device from the topic and `StatusReport::decode` the
//! report (formats.md §7): neither panics; a device taken from a topic is a valid id whose
//! `status_topic` is exactly that topic; a report that decodes re-encodes to exactly the payload.
#![no_main]

use cairn_verifier::campaign::StatusReport;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

/// The relay's topic helpers, from its source file (the relay crate links RocksDB, which the
/// sanitizer build does not need).
#[expect(
    dead_code,
    reason = "the fuzz target uses the topic functions, not the broker"
)]
#[path = "../../tools/relay/src/broker.rs"]
mod broker;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        let (topic, payload) = match data.iter().position(|&b| b == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (&[][..], data),
        };
        if let Ok(topic) = std::str::from_utf8(topic)
            && let Some(device) = broker::status_device(topic)
        {
            assert!(cairn_verifier::types::Id::new(device).is_some());
            assert_eq!(broker::status_topic(device), topic);
        }
        if let Ok(report) = StatusReport::decode(payload) {
            assert_eq!(
                report.to_cbor(),
                payload,
                "status report re-encodes differently"
            );
        }
    });
});
