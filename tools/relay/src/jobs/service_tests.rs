//! The Jobs service against the API's documented behaviour, with a simulated clock (`now` is an
//! argument everywhere): known answers for each request, AWS's codes for each refusal, and no
//! transition from a refused request.

use serde_json::{Value, json};

use super::{ErrorCode, Handled, JobStatus, Publication, Service};

const T: &str = "sc-0000001";

fn parse(p: &Publication) -> Value {
    serde_json::from_slice(&p.payload).unwrap()
}

fn answer<'a>(h: &'a Handled, suffix: &str) -> &'a Publication {
    h.publish
        .iter()
        .find(|p| p.topic.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} in {:?}", h.publish))
}

fn queued() -> Service {
    let mut s = Service::new();
    let n = s.queue(T, "job-1", "c", "r", json!({"delivery": "x"}), 100);
    assert_eq!(n[0].topic, "$aws/things/sc-0000001/jobs/notify-next");
    let next = parse(&n[0]);
    assert_eq!(next["execution"]["status"], "QUEUED");
    assert_eq!(next["execution"]["jobDocument"]["delivery"], "x");
    assert_eq!(next["execution"]["versionNumber"], 1);
    assert_eq!(next["execution"]["queuedAt"], 100);
    assert_eq!(parse(&n[1])["jobs"]["QUEUED"][0]["jobId"], "job-1");
    s
}

fn request(s: &mut Service, rest: &str, body: &Value, now: u64) -> Handled {
    s.handle(T, rest, body.to_string().as_bytes(), now)
}

#[test]
fn start_next_starts_and_update_finishes() {
    let mut s = queued();
    let h = request(
        &mut s,
        "start-next",
        &json!({"clientToken": "a", "statusDetails": {"k": "v"}}),
        105,
    );
    let t = h.transition.clone().unwrap();
    assert_eq!(
        (t.from, t.to, t.version, t.execution_number),
        (JobStatus::Queued, JobStatus::InProgress, 2, 1)
    );
    let a = parse(answer(&h, "start-next/accepted"));
    assert_eq!(a["clientToken"], "a");
    assert_eq!(a["timestamp"], 105);
    assert_eq!(a["execution"]["startedAt"], 105);
    assert_eq!(a["execution"]["statusDetails"]["k"], "v");
    assert_eq!(a["execution"]["jobDocument"]["delivery"], "x");
    // start-next again: the same execution, no transition.
    let h = request(&mut s, "start-next", &json!({}), 106);
    assert!(h.transition.is_none());
    assert_eq!(
        parse(answer(&h, "start-next/accepted"))["execution"]["versionNumber"],
        2
    );
    // get: one in progress.
    let h = request(&mut s, "get", &json!({"clientToken": "g"}), 107);
    let a = parse(answer(&h, "jobs/get/accepted"));
    assert_eq!(a["inProgressJobs"][0]["jobId"], "job-1");
    assert_eq!(a["queuedJobs"], json!([]));
    assert_eq!(a["clientToken"], "g");
    // describe $next, without the document.
    let h = request(
        &mut s,
        "$next/get",
        &json!({"includeJobDocument": false}),
        107,
    );
    let a = parse(answer(&h, "$next/get/accepted"));
    assert_eq!(a["execution"]["jobId"], "job-1");
    assert!(a["execution"].get("jobDocument").is_none());
    // update SUCCEEDED with the right version.
    let h = request(
        &mut s,
        "job-1/update",
        &json!({"status": "SUCCEEDED", "expectedVersion": 2, "includeJobExecutionState": true,
                "statusDetails": {"boot-check": "ok"}, "clientToken": "u"}),
        110,
    );
    let t = h.transition.clone().unwrap();
    assert_eq!(
        (t.from, t.to, t.version),
        (JobStatus::InProgress, JobStatus::Succeeded, 3)
    );
    assert_eq!(t.details["boot-check"], "ok");
    assert_eq!(t.details["k"], "v", "statusDetails merge");
    let a = parse(answer(&h, "job-1/update/accepted"));
    assert_eq!(a["executionState"]["status"], "SUCCEEDED");
    assert_eq!(a["clientToken"], "u");
    // Nothing pending now: notify-next without an execution; start-next without one.
    let next = parse(answer(&h, "notify-next"));
    assert!(next.get("execution").is_none(), "{next}");
    let h = request(&mut s, "start-next", &json!({}), 111);
    assert!(
        parse(answer(&h, "start-next/accepted"))
            .get("execution")
            .is_none()
    );
}

fn refused(h: &Handled, code: ErrorCode) -> Value {
    assert!(h.transition.is_none(), "{h:?}");
    assert_eq!(h.rejected, Some(code), "{h:?}");
    let r = h
        .publish
        .iter()
        .find(|p| p.topic.ends_with("/rejected"))
        .unwrap();
    let v = parse(r);
    assert_eq!(v["code"], code.name());
    v
}

#[test]
fn bad_requests_get_aws_codes_and_change_nothing() {
    let mut s = queued();
    request(&mut s, "start-next", &json!({}), 101);
    refused(
        &s.handle(T, "job-1/update", b"{not json", 102),
        ErrorCode::InvalidJson,
    );
    let v = refused(
        &request(
            &mut s,
            "job-1/update",
            &json!({"status": "SUCCEEDED", "expectedVersion": 1, "clientToken": "t"}),
            102,
        ),
        ErrorCode::VersionMismatch,
    );
    assert_eq!(v["clientToken"], "t");
    assert_eq!(v["executionState"]["versionNumber"], 2);
    refused(
        &request(
            &mut s,
            "other-job/update",
            &json!({"status": "SUCCEEDED"}),
            102,
        ),
        ErrorCode::ResourceNotFound,
    );
    refused(
        &request(
            &mut s,
            "job-1/update",
            &json!({"status": "SUCCEEDED", "executionNumber": 2}),
            102,
        ),
        ErrorCode::ResourceNotFound,
    );
    refused(
        &request(&mut s, "job-1/update", &json!({"status": "QUEUED"}), 102),
        ErrorCode::InvalidStateTransition,
    );
    refused(
        &request(&mut s, "job-1/update", &json!({"status": 3}), 102),
        ErrorCode::InvalidRequest,
    );
    refused(
        &request(
            &mut s,
            "job-1/update",
            &json!({"status": "FAILED", "stepTimeoutInMinutes": 0}),
            102,
        ),
        ErrorCode::InvalidRequest,
    );
    let h = s.handle(T, "job-1/delete", b"{}", 102);
    assert_eq!(
        h.publish[0].topic,
        "$aws/things/sc-0000001/jobs/job-1/delete/rejected"
    );
    refused(&h, ErrorCode::InvalidTopic);
    assert_eq!(
        s.execution(T, "job-1").unwrap().version_number,
        2,
        "nothing changed"
    );
    // Terminal: nothing moves out.
    request(&mut s, "job-1/update", &json!({"status": "REJECTED"}), 103);
    let v = refused(
        &request(
            &mut s,
            "job-1/update",
            &json!({"status": "IN_PROGRESS"}),
            104,
        ),
        ErrorCode::TerminalStateReached,
    );
    assert_eq!(v["executionState"]["status"], "REJECTED");
    // Another thing has no execution of this job.
    let h = s.handle(
        "sc-0000002",
        "job-1/update",
        br#"{"status":"SUCCEEDED"}"#,
        104,
    );
    refused(&h, ErrorCode::ResourceNotFound);
}

#[test]
fn a_retry_is_a_new_execution_and_step_timers_time_out() {
    let mut s = queued();
    request(
        &mut s,
        "start-next",
        &json!({"stepTimeoutInMinutes": 2}),
        100,
    );
    assert!(s.expire(219).0.is_empty(), "the timer runs 120 s");
    // An update resets the timer.
    request(
        &mut s,
        "job-1/update",
        &json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 1}),
        200,
    );
    assert!(s.expire(259).0.is_empty());
    let (t, notices) = s.expire(260);
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].from, t[0].to),
        (JobStatus::InProgress, JobStatus::TimedOut)
    );
    assert!(notices.iter().any(|p| p.topic.ends_with("notify-next")));
    assert!(s.expire(10_000).0.is_empty(), "once");
    // The relay retries: execution 2, version 1, QUEUED again.
    s.queue(T, "job-1", "c", "r", json!({}), 300);
    let e = s.execution(T, "job-1").unwrap();
    assert_eq!(
        (e.status, e.execution_number, e.version_number),
        (JobStatus::Queued, 2, 1)
    );
    // Queued again while pending: the same execution.
    s.queue(T, "job-1", "c", "r", json!({"new": true}), 301);
    assert_eq!(s.execution(T, "job-1").unwrap().execution_number, 2);
    // The service cancels it.
    let (t, _) = s
        .end(
            T,
            "job-1",
            JobStatus::Canceled,
            &super::StatusDetails::new(),
            302,
        )
        .unwrap();
    assert_eq!(t.to, JobStatus::Canceled);
    assert!(s.pending().next().is_none());
}

/// Mutated requests (bytes flipped, cut, topics bent) never panic; every one is answered, and a
/// refused one makes no transition. A deterministic stand-in for a libFuzzer target, which the
/// fuzz crate cannot build while the Jobs service lives in the relay crate (RocksDB under the
/// sanitizers).
#[test]
fn mutated_requests_are_answered_and_refusals_change_nothing() {
    let payloads: [&[u8]; 4] = [
        br#"{"status":"SUCCEEDED","expectedVersion":2,"statusDetails":{"a":"b"},"clientToken":"t"}"#,
        br#"{"clientToken":"s","stepTimeoutInMinutes":5,"statusDetails":{"agent":"x"}}"#,
        br#"{"executionNumber":1,"includeJobDocument":true}"#,
        b"",
    ];
    let rests = [
        "job-1/update",
        "start-next",
        "$next/get",
        "get",
        "job-1/get",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000u64 {
        let mut s = queued();
        if round % 2 == 0 {
            request(&mut s, "start-next", &json!({}), 101);
        }
        let pick = usize::try_from(next() % 4).unwrap();
        let mut payload = payloads[pick].to_vec();
        for _ in 0..(next() % 4) {
            if payload.is_empty() {
                break;
            }
            let at = usize::try_from(next() % payload.len() as u64).unwrap();
            match next() % 3 {
                0 => payload[at] ^= 1 << (next() % 8),
                1 => payload.truncate(at),
                _ => payload.insert(at, b"{}[]\",:0\\"[usize::try_from(next() % 9).unwrap()]),
            }
        }
        let mut rest = rests[usize::try_from(next() % 5).unwrap()].to_owned();
        if next() % 5 == 0 {
            rest.insert(usize::try_from(next() % (rest.len() as u64)).unwrap(), '/');
        }
        let version = s.execution(T, "job-1").unwrap().version_number;
        let h = s.handle(T, &rest, &payload, 102);
        assert!(!h.publish.is_empty(), "{rest} {payload:?}: no answer");
        if h.rejected.is_some() {
            assert!(h.transition.is_none());
            assert_eq!(s.execution(T, "job-1").unwrap().version_number, version);
        }
    }
}
