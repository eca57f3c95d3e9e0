//! Jobs mode (`--mode jobs`): each simulated device takes its deliveries through the AWS IoT Jobs
//! device API (docs/jobs.md; AWS IoT developer guide, "Jobs device MQTT API operations") instead
//! of cairn's own topics, as a device running an AWS IoT Device SDK's Jobs client does:
//!
//! ```text
//! CONNACK ──► subscribe notify-next, start-next/accepted|rejected, +/update/accepted|rejected
//!    │        (a new session only), then publish start-next
//!    ▼
//! start-next/accepted ── no execution ──► wait for notify-next (an execution: start-next again)
//!    │ an execution (IN_PROGRESS), with its job document
//!    ▼
//! document's delivery (base64) ──► the device boot check (`device::handle`), state persisted
//!    │
//!    ▼
//! update <jobId>: SUCCEEDED (installed, or the same bytes already installed) | FAILED (install
//!    failed) | REJECTED (the boot check refused it, or the document is malformed), with
//!    expectedVersion, executionNumber, statusDetails and a clientToken; silent devices send none
//!    │
//!    ▼
//! update/accepted ──► counted as the relay's acknowledgement; notify-next brings the next one
//! ```
//!
//! Every message is acknowledged (PUBACK) only after it was handled and the device state persisted,
//! as in the own-topic mode. Nothing in a job document is trusted: the delivery inside it goes
//! through the same boot check as on the own topics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cairn_verifier::campaign::Outcome;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::device::Handled;
use crate::sim::{REQUESTS, Shared, SimDevice, add, backoff, check_delivery, disconnect};
use crate::state::DeviceState;

/// How the devices take their deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// cairn's own topics: `cairn/<device>/delivery` in, CBOR status reports out.
    #[default]
    Topics,
    /// The AWS IoT Jobs device API under `$aws/things/<device>/jobs/`.
    Jobs,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "topics" => Ok(Mode::Topics),
            "jobs" => Ok(Mode::Jobs),
            _ => Err(format!("{s:?} is not a mode (jobs or topics)")),
        }
    }
}

/// The largest job document the device takes: AWS IoT Jobs' limit (32 KB), plus the answer's
/// envelope; anything larger is refused before it is decoded.
pub const MAX_ANSWER_BYTES: usize = 40 * 1024;

/// Why a Jobs message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Larger than [`MAX_ANSWER_BYTES`].
    #[error("the message has {0} bytes (at most {MAX_ANSWER_BYTES})")]
    TooLarge(usize),
    /// Not a JSON object.
    #[error("the message is not a JSON object")]
    NotJson,
    /// A field is missing or of the wrong type.
    #[error("{0} is missing or not what the Jobs API says")]
    Field(&'static str),
    /// The delivery in the job document is not base64, or its size or SHA-256 do not match.
    #[error("the job document's delivery: {0}")]
    Delivery(&'static str),
}

/// A job execution as the device reads it (the `JobExecution` object of start-next's answer or
/// of notify-next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// `jobId`.
    pub job_id: String,
    /// `status`.
    pub status: String,
    /// `versionNumber`.
    pub version: u64,
    /// `executionNumber`.
    pub execution: u64,
    /// The delivery the job document carries (`None` without a document), or why it cannot be
    /// taken out of it.
    pub delivery: Option<Result<Vec<u8>, MessageError>>,
}

/// Reads the `execution` of a start-next answer or a notify-next message: `Ok(None)` when there
/// is none (nothing pending).
pub fn parse_execution(payload: &[u8]) -> Result<Option<Offer>, MessageError> {
    if payload.len() > MAX_ANSWER_BYTES {
        return Err(MessageError::TooLarge(payload.len()));
    }
    let v: Value = serde_json::from_slice(payload).map_err(|_| MessageError::NotJson)?;
    let obj = v.as_object().ok_or(MessageError::NotJson)?;
    let Some(e) = obj.get("execution") else {
        return Ok(None);
    };
    let e = e.as_object().ok_or(MessageError::Field("execution"))?;
    let text = |name: &'static str| {
        e.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(MessageError::Field(name))
    };
    let number = |name: &'static str| {
        e.get(name)
            .and_then(Value::as_u64)
            .ok_or(MessageError::Field(name))
    };
    let job_id = text("jobId")?;
    if !cairn_relay::jobs::topics::valid_job_id(&job_id) {
        return Err(MessageError::Field("jobId"));
    }
    Ok(Some(Offer {
        job_id,
        status: text("status")?,
        version: number("versionNumber")?,
        execution: number("executionNumber")?,
        delivery: e.get("jobDocument").map(delivery_of),
    }))
}

/// The cairn delivery inside a job document (docs/jobs.md, "The job document"): base64 data whose
/// decoded size and SHA-256 must be the document's. Only a transport check: the boot check
/// decides whether the delivery is trusted.
fn delivery_of(document: &Value) -> Result<Vec<u8>, MessageError> {
    use base64ct::Encoding as _;
    use sha2::Digest as _;
    let d = document
        .get("delivery")
        .and_then(Value::as_object)
        .ok_or(MessageError::Field("jobDocument.delivery"))?;
    let field = |name: &'static str| d.get(name).ok_or(MessageError::Field(name));
    if field("format")?.as_str() != Some("cairn-delivery-v1")
        || field("encoding")?.as_str() != Some("base64")
    {
        return Err(MessageError::Delivery("not a cairn-delivery-v1 in base64"));
    }
    let size = field("size")?
        .as_u64()
        .ok_or(MessageError::Field("delivery.size"))?;
    let data = field("data")?
        .as_str()
        .ok_or(MessageError::Field("delivery.data"))?;
    let bytes = base64ct::Base64::decode_vec(data).map_err(|_| MessageError::Delivery("base64"))?;
    if bytes.len() as u64 != size {
        return Err(MessageError::Delivery("size"));
    }
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    if field("sha256")?.as_str() != Some(digest.as_str()) {
        return Err(MessageError::Delivery("sha256"));
    }
    Ok(bytes)
}

/// The `UpdateJobExecution` request for what the device made of an execution: the status and the
/// device's words (`statusDetails`, short identifiers as the relay log keeps them).
pub fn update_request(offer: &Offer, handled: &Handled, token: &str) -> Option<Value> {
    let (status, details) = match handled {
        Handled::Duplicate => ("SUCCEEDED", json!({ "boot-check": "already-installed" })),
        Handled::Malformed(e) => ("REJECTED", json!({ "boot-check": e.code() })),
        Handled::Done { report: None, .. } => return None, // silent: never says a word
        Handled::Done {
            outcome, detail, ..
        } => match outcome {
            Outcome::Installed => ("SUCCEEDED", json!({ "boot-check": "ok" })),
            Outcome::InstallFailed => ("FAILED", json!({ "boot-check": "ok", "install": detail })),
            Outcome::VerificationFailed => ("REJECTED", json!({ "boot-check": detail })),
        },
    };
    Some(update_body(offer, status, &details, token))
}

fn update_body(offer: &Offer, status: &str, details: &Value, token: &str) -> Value {
    json!({
        "status": status,
        "statusDetails": details,
        "expectedVersion": offer.version,
        "executionNumber": offer.execution,
        "clientToken": token,
    })
}

/// The device's Jobs topics.
struct Topics {
    start_next: String,
    start_accepted: String,
    start_rejected: String,
    notify_next: String,
    update_accepted: String,
    update_rejected: String,
}

impl Topics {
    fn of(thing: &str) -> Self {
        let base = format!("$aws/things/{thing}/jobs");
        Self {
            start_next: format!("{base}/start-next"),
            start_accepted: format!("{base}/start-next/accepted"),
            start_rejected: format!("{base}/start-next/rejected"),
            notify_next: format!("{base}/notify-next"),
            update_accepted: format!("{base}/+/update/accepted"),
            update_rejected: format!("{base}/+/update/rejected"),
        }
    }

    fn filters(&self) -> Vec<SubscribeFilter> {
        [
            &self.notify_next,
            &self.start_accepted,
            &self.start_rejected,
            &self.update_accepted,
            &self.update_rejected,
        ]
        .into_iter()
        .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
        .collect()
    }

    fn update(&self, job: &str) -> String {
        format!(
            "{}/{job}/update",
            self.notify_next.trim_end_matches("/notify-next")
        )
    }

    fn is_update_answer(&self, topic: &str, answer: &str) -> bool {
        let base = self.notify_next.trim_end_matches("notify-next");
        topic
            .strip_prefix(base)
            .and_then(|rest| rest.strip_suffix(answer))
            .and_then(|rest| rest.strip_suffix("/update/"))
            .is_some_and(cairn_relay::jobs::topics::valid_job_id)
    }
}

/// What the device remembers between messages (not persisted: after a restart the relay's
/// answers say where each execution stands).
#[derive(Default)]
struct Session {
    /// A start-next is out and not answered yet.
    asking: bool,
    /// The last execution the device answered: (job, execution number).
    answered: Option<(String, u64)>,
    /// clientTokens issued.
    tokens: u64,
}

impl Session {
    fn token(&mut self, kind: &str) -> String {
        self.tokens += 1;
        format!("{kind}-{}", self.tokens)
    }
}

/// One device in Jobs mode, until `shutdown` (see the module's state diagram).
pub(crate) async fn run_device(
    shared: Arc<Shared>,
    device: SimDevice,
    mut state: DeviceState,
    options: MqttOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = device.row.id.clone();
    let topics = Topics::of(&id);
    let jitter = shared.faults.position("backoff", &id, 1 << 20) as u64;
    let (client, mut events) = AsyncClient::new(options, REQUESTS);
    let counters = &shared.stats;
    let mut connected = false;
    let mut failures = 0u32;
    let mut session = Session::default();
    loop {
        let permit = if connected {
            None
        } else {
            tokio::select! {
                p = shared.connect.acquire() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
                _ = shutdown.changed() => break,
            }
        };
        let event = tokio::select! {
            e = events.poll() => e,
            _ = shutdown.changed() => break,
        };
        drop(permit);
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                failures = 0;
                crate::sim::connected(counters, ack.session_present);
                if !ack.session_present {
                    let _ = client.subscribe_many(topics.filters()).await;
                }
                // Whatever was missed while away: ask where things stand.
                session.asking = true;
                let body = json!({ "clientToken": session.token("start") });
                let _ = client
                    .publish(
                        &topics.start_next,
                        QoS::AtLeastOnce,
                        false,
                        body.to_string(),
                    )
                    .await;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if !on_message(
                    &shared,
                    &device,
                    &mut state,
                    &client,
                    &topics,
                    &mut session,
                    &publish,
                )
                .await
                {
                    continue; // not persisted: unacknowledged, the broker sends it again
                }
                let _ = client.ack(&publish).await;
            }
            Ok(_) => {}
            Err(_) => {
                if connected {
                    connected = false;
                    counters.connected.fetch_sub(1, Ordering::Relaxed);
                }
                session.asking = false;
                add(&counters.connection_errors, 1);
                failures = failures.saturating_add(1);
                tokio::select! {
                    () = tokio::time::sleep(backoff(failures, jitter)) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
    if connected {
        disconnect(&client, &mut events).await;
        counters.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Handles one Jobs message; `false` if the device state could not be persisted.
async fn on_message(
    shared: &Arc<Shared>,
    device: &SimDevice,
    state: &mut DeviceState,
    client: &AsyncClient,
    topics: &Topics,
    session: &mut Session,
    publish: &rumqttc::Publish,
) -> bool {
    let counters = &shared.stats;
    let topic = publish.topic.as_str();
    if topic == topics.start_accepted {
        session.asking = false;
        let offer = match parse_execution(&publish.payload) {
            Ok(Some(o)) => o,
            Ok(None) => return true, // nothing pending: notify-next says when there is
            Err(_) => {
                add(&counters.malformed, 1);
                return true;
            }
        };
        if session.answered.as_ref() == Some(&(offer.job_id.clone(), offer.execution)) {
            return true; // answered already (a second start-next crossed the update)
        }
        add(&counters.jobs_started, 1);
        add(&counters.deliveries, 1);
        #[expect(
            clippy::single_match_else,
            reason = "the refusal path reads better as an arm"
        )]
        let handled = match &offer.delivery {
            Some(Ok(bytes)) => match check_delivery(shared, device, state, bytes.clone()).await {
                Some(h) => h,
                None => return false,
            },
            Some(Err(_)) | None => {
                add(&counters.malformed, 1);
                let token = session.token("update");
                let body = update_body(
                    &offer,
                    "REJECTED",
                    &json!({ "job-document": "malformed" }),
                    &token,
                );
                send_update(client, topics, &offer, &body, counters).await;
                session.answered = Some((offer.job_id, offer.execution));
                return true;
            }
        };
        crate::sim::count(counters, &handled);
        if let Handled::Done { state: next, .. } = &handled {
            *state = (**next).clone();
        }
        let token = session.token("update");
        if let Some(body) = update_request(&offer, &handled, &token) {
            send_update(client, topics, &offer, &body, counters).await;
        }
        session.answered = Some((offer.job_id, offer.execution));
    } else if topic == topics.notify_next {
        let next = parse_execution(&publish.payload).ok().flatten();
        let fresh = next
            .is_some_and(|o| session.answered.as_ref() != Some(&(o.job_id.clone(), o.execution)));
        if fresh && !session.asking {
            session.asking = true;
            let body = json!({ "clientToken": session.token("start") });
            let _ = client
                .publish(
                    &topics.start_next,
                    QoS::AtLeastOnce,
                    false,
                    body.to_string(),
                )
                .await;
        }
    } else if topics.is_update_answer(topic, "accepted") {
        add(&counters.reports_acked, 1);
    } else if topic == topics.start_rejected || topics.is_update_answer(topic, "rejected") {
        if topic == topics.start_rejected {
            session.asking = false;
        }
        add(&counters.jobs_rejected, 1);
    }
    true
}

async fn send_update(
    client: &AsyncClient,
    topics: &Topics,
    offer: &Offer,
    body: &Value,
    counters: &crate::sim::Counters,
) {
    if client
        .publish(
            topics.update(&offer.job_id),
            QoS::AtLeastOnce,
            false,
            body.to_string(),
        )
        .await
        .is_ok()
    {
        add(&counters.reports_sent, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(document: &Value) -> Vec<u8> {
        json!({
            "timestamp": 1,
            "clientToken": "start-1",
            "execution": {
                "jobId": "campaign-2026-11_controller-fw-2_4_1-0a1b2c3d",
                "thingName": "dev-000001",
                "status": "IN_PROGRESS",
                "versionNumber": 2,
                "executionNumber": 1,
                "queuedAt": 1, "startedAt": 1, "lastUpdatedAt": 1,
                "jobDocument": document,
            }
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn reads_the_relays_job_document_and_refuses_a_damaged_one() {
        let delivery = b"a cairn delivery envelope".to_vec();
        let doc = cairn_relay::jobs::document("campaign-2026-11", "controller-fw-2.4.1", &delivery);
        let offer = parse_execution(&answer(&doc)).unwrap().unwrap();
        assert_eq!(
            (offer.status.as_str(), offer.version, offer.execution),
            ("IN_PROGRESS", 2, 1)
        );
        assert_eq!(offer.delivery, Some(Ok(delivery.clone())));

        let mut bad = doc.clone();
        bad["delivery"]["sha256"] = json!("00");
        let offer = parse_execution(&answer(&bad)).unwrap().unwrap();
        assert_eq!(offer.delivery, Some(Err(MessageError::Delivery("sha256"))));
        let mut bad = doc.clone();
        bad["delivery"]["data"] = json!("%%%");
        assert_eq!(
            parse_execution(&answer(&bad)).unwrap().unwrap().delivery,
            Some(Err(MessageError::Delivery("base64")))
        );
        let mut bad = doc;
        bad["delivery"]["size"] = json!(3);
        assert_eq!(
            parse_execution(&answer(&bad)).unwrap().unwrap().delivery,
            Some(Err(MessageError::Delivery("size")))
        );
    }

    #[test]
    fn nothing_pending_and_bad_messages() {
        assert_eq!(parse_execution(br#"{"timestamp":1}"#), Ok(None));
        assert_eq!(parse_execution(b"{nope"), Err(MessageError::NotJson));
        assert_eq!(parse_execution(b"[1]"), Err(MessageError::NotJson));
        assert_eq!(
            parse_execution(br#"{"execution":{"jobId":"j","status":"QUEUED"}}"#),
            Err(MessageError::Field("versionNumber"))
        );
        assert_eq!(
            parse_execution(
                br#"{"execution":{"jobId":"a/b","status":"QUEUED","versionNumber":1,"executionNumber":1}}"#
            ),
            Err(MessageError::Field("jobId"))
        );
        let big = vec![b' '; MAX_ANSWER_BYTES + 1];
        assert_eq!(
            parse_execution(&big),
            Err(MessageError::TooLarge(MAX_ANSWER_BYTES + 1))
        );
    }

    #[test]
    fn updates_say_what_the_device_made_of_the_delivery() {
        let offer = Offer {
            job_id: "job-1".into(),
            status: "IN_PROGRESS".into(),
            version: 2,
            execution: 3,
            delivery: None,
        };
        let body = update_request(&offer, &Handled::Duplicate, "update-1").unwrap();
        assert_eq!(
            body,
            json!({
                "status": "SUCCEEDED",
                "statusDetails": { "boot-check": "already-installed" },
                "expectedVersion": 2,
                "executionNumber": 3,
                "clientToken": "update-1",
            })
        );
        let topics = Topics::of("dev-000001");
        assert_eq!(
            topics.update("job-1"),
            "$aws/things/dev-000001/jobs/job-1/update"
        );
        assert!(topics.is_update_answer(
            "$aws/things/dev-000001/jobs/job-1/update/accepted",
            "accepted"
        ));
        assert!(!topics.is_update_answer(
            "$aws/things/dev-000002/jobs/job-1/update/accepted",
            "accepted"
        ));
        assert!(!topics.is_update_answer(
            "$aws/things/dev-000001/jobs/start-next/accepted",
            "accepted"
        ));
    }
}
