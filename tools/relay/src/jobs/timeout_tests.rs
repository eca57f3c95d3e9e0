//! The relay's in-progress timeout (`[mqtt] jobs_in_progress_timeout_secs`, AWS's
//! `timeoutConfig.inProgressTimeoutInMinutes`) on a simulated clock: it starts when an execution
//! becomes IN_PROGRESS (by start-next or by an update), is not reset by later updates, and ends
//! the execution TIMED_OUT unless it reached a terminal status first.

use serde_json::json;

use super::{InProgressTimeout, JobStatus, Service};

const T: &str = "sc-0000001";

fn service(secs: u64) -> Service {
    let mut s = Service::with_in_progress_timeout(Some(InProgressTimeout::try_from(secs).unwrap()));
    s.queue(T, "job-1", "c", "r", json!({}), 100);
    s
}

fn send(s: &mut Service, rest: &str, body: &serde_json::Value, now: u64) {
    let h = s.handle(T, rest, body.to_string().as_bytes(), now);
    assert!(h.rejected.is_none(), "{:?}", h.publish);
}

#[test]
fn an_execution_left_in_progress_times_out_once() {
    let mut s = service(30);
    assert!(
        s.expire(10_000).0.is_empty(),
        "a QUEUED execution has no timer"
    );
    send(&mut s, "start-next", &json!({}), 200);
    // A progress update does not reset it.
    send(
        &mut s,
        "job-1/update",
        &json!({"status": "IN_PROGRESS", "statusDetails": {"step": "download"}}),
        220,
    );
    assert!(s.expire(229).0.is_empty());
    let (t, notices) = s.expire(230);
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].from, t[0].to),
        (JobStatus::InProgress, JobStatus::TimedOut)
    );
    assert_eq!(t[0].details["cairn"], "the in-progress timeout ran out");
    assert_eq!(
        t[0].details["step"], "download",
        "the device's words are kept"
    );
    assert_eq!(t[0].version, 4);
    assert!(notices.iter().any(|p| p.topic.ends_with("notify-next")));
    assert!(s.expire(10_000).0.is_empty(), "once");
    assert_eq!(s.execution(T, "job-1").unwrap().status, JobStatus::TimedOut);
}

#[test]
fn a_finished_execution_does_not_time_out_and_an_update_starts_the_timer() {
    let mut s = service(30);
    send(
        &mut s,
        "job-1/update",
        &json!({"status": "IN_PROGRESS"}),
        200,
    );
    send(&mut s, "job-1/update", &json!({"status": "SUCCEEDED"}), 229);
    assert!(s.expire(10_000).0.is_empty());

    let mut s = service(30);
    send(
        &mut s,
        "job-1/update",
        &json!({"status": "IN_PROGRESS"}),
        200,
    );
    assert_eq!(s.expire(230).0.len(), 1);

    // Without the setting, nothing times out but a device's own step timer.
    let mut s = Service::new();
    s.queue(T, "job-1", "c", "r", json!({}), 100);
    send(&mut s, "start-next", &json!({}), 200);
    assert!(s.expire(1_000_000).0.is_empty());
}

#[test]
fn the_setting_is_bounded() {
    assert!(InProgressTimeout::try_from(0).is_err());
    assert!(InProgressTimeout::try_from(InProgressTimeout::MAX_SECS + 1).is_err());
    assert_eq!(InProgressTimeout::try_from(1).unwrap().secs(), 1);
    let config = |secs: u64| {
        toml::from_str::<crate::mqtt::MqttConfig>(&format!(
            "host = \"h\"\nport = 1\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\njobs = true\n\
             jobs_in_progress_timeout_secs = {secs}\n"
        ))
    };
    let e = config(0).unwrap_err().to_string();
    assert!(
        e.contains("jobs_in_progress_timeout_secs 0 is not 1 to"),
        "{e}"
    );
    assert_eq!(
        config(5)
            .unwrap()
            .jobs_in_progress_timeout_secs
            .map(InProgressTimeout::secs),
        Some(5)
    );
}
