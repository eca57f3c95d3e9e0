//! The relay's parser of AWS IoT Jobs requests (docs/jobs.md; `tools/relay/src/jobs/`, compiled
//! here from the relay's own source files) on arbitrary bytes: the input is a request topic's
//! tail (what follows `$aws/things/<thing>/jobs/`), a NUL byte, then the payload. Neither
//! `topics::parse` nor `Fields::parse` and its accessors panic; a parsed request's topic splits
//! and parses back to the same request; a payload is accepted only if it is blank or a JSON
//! object; accepted `statusDetails` keep AWS's limits; a status a device may not set is never
//! returned.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

// The relay's modules, from its source files (the relay crate itself links RocksDB, which the
// sanitizer build does not need); `messages` names its sibling as `super::execution`.
#[expect(
    dead_code,
    reason = "the fuzz target uses the parsers, not the whole service"
)]
#[path = "../../tools/relay/src/jobs/execution.rs"]
mod execution;
#[expect(
    dead_code,
    reason = "the fuzz target uses the parsers, not the whole service"
)]
#[path = "../../tools/relay/src/jobs/messages.rs"]
mod messages;
#[expect(
    dead_code,
    reason = "the fuzz target uses the parsers, not the whole service"
)]
#[path = "../../tools/relay/src/jobs/topics.rs"]
mod topics;

use messages::{ErrorCode, Fields};

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        let (topic, payload) = match data.iter().position(|&b| b == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &[][..]),
        };
        if let Ok(rest) = std::str::from_utf8(topic) {
            if let Ok(request) = topics::parse(rest) {
                let full = request.topic("sc-0000001");
                assert_eq!(topics::split(&full), Some(("sc-0000001", rest)));
                assert_eq!(topics::parse(rest), Ok(request));
            }
            let _ = topics::split(rest);
        }
        match Fields::parse(payload) {
            Ok(fields) => {
                let blank = payload.iter().all(u8::is_ascii_whitespace);
                assert!(
                    blank
                        || matches!(
                            serde_json::from_slice::<serde_json::Value>(payload),
                            Ok(serde_json::Value::Object(_))
                        ),
                    "a payload that is not a JSON object was accepted"
                );
                if let Some(t) = fields.client_token() {
                    assert!(t.len() <= 64);
                }
                let _ = fields.check_client_token();
                let _ = fields.number("expectedVersion");
                let _ = fields.flag("includeJobDocument");
                let _ = fields.flag_or("includeJobExecutionState", true);
                match fields.status() {
                    Ok(s) => assert!(s.device_may_set()),
                    Err(r) => assert!(matches!(
                        r.code,
                        ErrorCode::InvalidRequest | ErrorCode::InvalidStateTransition
                    )),
                }
                if let Ok(details) = fields.status_details() {
                    assert!(details.len() <= 10);
                    for (k, v) in &details {
                        assert!((1..=128).contains(&k.len()) && v.len() <= 1024);
                    }
                    let _ = messages::words(&details);
                }
                let _ = fields
                    .check_client_token()
                    .map_err(|r| r.to_json(fields.client_token(), 0));
            }
            Err(r) => assert_eq!(r.code, ErrorCode::InvalidJson),
        }
    });
});
