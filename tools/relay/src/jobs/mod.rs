//! The AWS IoT Jobs device API, played by the relay on the broker it drives (docs/jobs.md): the
//! service side of `notify`, `notify-next`, `get`, `start-next`, `<jobId>/get` and
//! `<jobId>/update` as the AWS IoT developer guide documents them ("Jobs device MQTT API
//! operations"), so a device running an AWS IoT Device SDK's Jobs client takes its cairn delivery
//! as a job document. Pure protocol: it holds the executions and answers requests; the runner
//! records each transition in the relay log (`engine/jobs.rs`) before any answer is published.
//!
//! | room | what it holds |
//! |---|---|
//! | `topics.rs` | the topics: request parsing, answer and notification topics, job ids |
//! | `messages.rs` | the requests' JSON, AWS's error codes, the rejection payload |
//! | `execution.rs` | an execution, its statuses and the moves a device may make |
//! | `restore.rs` | IN_PROGRESS executions rebuilt from the relay log after a restart |

pub mod execution;
pub mod messages;
pub mod restore;
pub mod topics;

#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod timeout_tests;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

pub use execution::{Execution, JobStatus, StatusDetails};
use messages::Fields;
pub use messages::{ErrorCode, Rejection};
use topics::Request;

/// The job document limit of AWS IoT Jobs (32 KB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;

/// A message for the broker (QoS 1, not retained).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Topic.
    pub topic: String,
    /// Payload (JSON).
    pub payload: Vec<u8>,
}

fn publication(topic: String, v: &Value) -> Publication {
    Publication {
        topic,
        payload: v.to_string().into_bytes(),
    }
}

/// A change of an execution's status, to record in the relay log before anything is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The thing (device).
    pub thing: String,
    /// The job.
    pub job_id: String,
    /// The campaign.
    pub campaign: String,
    /// The release delivered.
    pub release: String,
    /// The status it had.
    pub from: JobStatus,
    /// The status it has now.
    pub to: JobStatus,
    /// The device's words (`statusDetails` after the change).
    pub details: StatusDetails,
    /// `versionNumber` after the change.
    pub version: u64,
    /// `executionNumber`.
    pub execution_number: u64,
}

/// What handling one request gives: answers to publish (after the transition is recorded), the
/// transition if the request made one, and the rejection's code if it was refused.
#[derive(Debug, Default)]
pub struct Handled {
    /// Answers and notifications.
    pub publish: Vec<Publication>,
    /// The transition to record.
    pub transition: Option<Transition>,
    /// The code of a refusal.
    pub rejected: Option<ErrorCode>,
}

/// The relay's in-progress timeout (`[mqtt] jobs_in_progress_timeout_secs`), a limit of the
/// configuration (`limits.rs`).
pub use crate::limits::InProgressTimeout;

/// The Jobs service's state: every thing's executions, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Service {
    things: HashMap<String, Vec<Execution>>,
    in_progress_timeout: Option<InProgressTimeout>,
}

impl Service {
    /// An empty service.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty service whose executions time out `timeout` after they became IN_PROGRESS.
    pub fn with_in_progress_timeout(timeout: Option<InProgressTimeout>) -> Self {
        Self {
            in_progress_timeout: timeout,
            ..Self::default()
        }
    }

    /// The execution of `job_id` on `thing`.
    pub fn execution(&self, thing: &str, job_id: &str) -> Option<&Execution> {
        self.things.get(thing)?.iter().find(|e| e.job_id == job_id)
    }

    /// Every execution that is not terminal.
    pub fn pending(&self) -> impl Iterator<Item = &Execution> {
        self.things
            .values()
            .flatten()
            .filter(|e| !e.status.is_terminal())
    }

    fn next_pending(list: &[Execution]) -> Option<usize> {
        list.iter()
            .position(|e| e.status == JobStatus::InProgress)
            .or_else(|| list.iter().position(|e| e.status == JobStatus::Queued))
    }

    fn next_key(&self, thing: &str) -> Option<(String, u64, u64)> {
        let list = self.things.get(thing)?;
        let e = &list[Self::next_pending(list)?];
        Some((e.job_id.clone(), e.execution_number, e.version_number))
    }

    /// `notify-next` (if the next pending execution is another one than `before`) and `notify`.
    fn notices(
        &self,
        thing: &str,
        before: Option<&(String, u64, u64)>,
        now: u64,
    ) -> Vec<Publication> {
        let list = self.things.get(thing).map_or(&[][..], Vec::as_slice);
        let next = Self::next_pending(list).and_then(|i| list.get(i));
        let after = next.map(|e| (e.job_id.clone(), e.execution_number));
        let mut out = Vec::new();
        if before.map(|(j, n, _)| (j.clone(), *n)) != after {
            let mut v = json!({ "timestamp": now });
            if let (Some(e), Some(obj)) = (next, v.as_object_mut()) {
                obj.insert("execution".into(), e.to_json(true));
            }
            out.push(publication(topics::notify_next(thing), &v));
        }
        let of = |s: JobStatus| -> Vec<Value> {
            list.iter()
                .filter(|e| e.status == s)
                .map(Execution::summary)
                .collect()
        };
        let v = json!({
            "timestamp": now,
            "jobs": { "QUEUED": of(JobStatus::Queued), "IN_PROGRESS": of(JobStatus::InProgress) },
        });
        out.push(publication(topics::notify(thing), &v));
        out
    }

    /// Queues the job `job_id` (delivering `release` of `campaign`) for `thing` with `document`:
    /// a new execution (its execution number one more than the last one's), or, while the last
    /// is still pending, the same one with the new document. Returns the notifications.
    pub fn queue(
        &mut self,
        thing: &str,
        job_id: &str,
        campaign: &str,
        release: &str,
        document: Value,
        now: u64,
    ) -> Vec<Publication> {
        let before = self.next_key(thing);
        let list = self.things.entry(thing.to_owned()).or_default();
        let document = Arc::new(document);
        match list.iter().position(|e| e.job_id == job_id) {
            Some(i) if !list[i].status.is_terminal() => {
                list[i].document = document;
                return Vec::new();
            }
            found => {
                let execution_number = found.map_or(1, |i| list.remove(i).execution_number + 1);
                list.push(Execution {
                    job_id: job_id.to_owned(),
                    thing: thing.to_owned(),
                    campaign: campaign.to_owned(),
                    release: release.to_owned(),
                    status: JobStatus::Queued,
                    status_details: StatusDetails::new(),
                    queued_at: now,
                    started_at: None,
                    last_updated_at: now,
                    version_number: 1,
                    execution_number,
                    document,
                    step_deadline: None,
                    in_progress_deadline: None,
                });
            }
        }
        self.notices(thing, before.as_ref(), now)
    }

    /// Ends the pending execution of `job_id` on `thing` with `status` (the service's own move:
    /// `CANCELED`, `REMOVED`, `TIMED_OUT`), with `details`; the transition and the
    /// notifications, or `None` if there is no pending execution of it.
    pub fn end(
        &mut self,
        thing: &str,
        job_id: &str,
        status: JobStatus,
        details: &StatusDetails,
        now: u64,
    ) -> Option<(Transition, Vec<Publication>)> {
        let before = self.next_key(thing);
        let e = self
            .things
            .get_mut(thing)?
            .iter_mut()
            .find(|e| e.job_id == job_id && !e.status.is_terminal())?;
        let from = e.status;
        e.change(status, details, now);
        let t = transition(e, from);
        Some((t, self.notices(thing, before.as_ref(), now)))
    }

    /// Every pending execution whose step timer or in-progress timeout ran out by `now` becomes
    /// `TIMED_OUT`: the transitions (to record, actor `rule`) and the notifications.
    pub fn expire(&mut self, now: u64) -> (Vec<Transition>, Vec<Publication>) {
        let due: Vec<(String, String, &'static str)> = self
            .pending()
            .filter_map(|e| {
                let why = if e.step_deadline.is_some_and(|d| d <= now) {
                    "the step timer ran out"
                } else if e.in_progress_deadline.is_some_and(|d| d <= now) {
                    "the in-progress timeout ran out"
                } else {
                    return None;
                };
                Some((e.thing.clone(), e.job_id.clone(), why))
            })
            .collect();
        let (mut transitions, mut publish) = (Vec::new(), Vec::new());
        for (thing, job, why) in due {
            let why = StatusDetails::from([("cairn".to_owned(), why.to_owned())]);
            if let Some((t, p)) = self.end(&thing, &job, JobStatus::TimedOut, &why, now) {
                transitions.push(t);
                publish.extend(p);
            }
        }
        (transitions, publish)
    }

    /// Handles a request from `thing` on `jobs/<rest>` with `payload`.
    pub fn handle(&mut self, thing: &str, rest: &str, payload: &[u8], now: u64) -> Handled {
        let request = match topics::parse(rest) {
            Ok(r) => r,
            Err(why) => {
                let token = Fields::parse(payload).ok();
                let token = token.as_ref().and_then(Fields::client_token);
                let r = Rejection::new(ErrorCode::InvalidTopic, why);
                return Handled {
                    publish: vec![publication(
                        format!("$aws/things/{thing}/jobs/{rest}/rejected"),
                        &r.to_json(token, now),
                    )],
                    transition: None,
                    rejected: Some(r.code),
                };
            }
        };
        let topic = request.topic(thing);
        let fields = match Fields::parse(payload) {
            Ok(f) => f,
            Err(r) => return rejected(&topic, &r, None, now),
        };
        let token = fields.client_token().map(str::to_owned);
        if let Err(r) = fields.check_client_token() {
            return rejected(&topic, &r, None, now);
        }
        let before = self.next_key(thing);
        let answer = match &request {
            Request::GetPending => Ok((self.get_pending(thing), None)),
            Request::StartNext => self.start_next(thing, &fields, now),
            Request::Describe(job) => self.describe(thing, job, &fields),
            Request::Update(job) => self.update(thing, job, &fields, now),
        };
        match answer {
            Err(r) => rejected(&topic, &r, token.as_deref(), now),
            Ok((mut body, transition)) => {
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("timestamp".into(), now.into());
                    if let Some(t) = &token {
                        obj.insert("clientToken".into(), t.clone().into());
                    }
                }
                let mut publish = vec![publication(format!("{topic}/accepted"), &body)];
                if transition.is_some() {
                    publish.extend(self.notices(thing, before.as_ref(), now));
                }
                Handled {
                    publish,
                    transition,
                    rejected: None,
                }
            }
        }
    }

    fn get_pending(&self, thing: &str) -> Value {
        let list = self.things.get(thing).map_or(&[][..], Vec::as_slice);
        let of = |s: JobStatus| -> Vec<Value> {
            list.iter()
                .filter(|e| e.status == s)
                .map(Execution::summary)
                .collect()
        };
        json!({ "inProgressJobs": of(JobStatus::InProgress), "queuedJobs": of(JobStatus::Queued) })
    }

    fn start_next(&mut self, thing: &str, fields: &Fields, now: u64) -> Answer {
        let details = fields.status_details()?;
        let step = step_timeout(fields)?;
        let in_progress = self.in_progress_timeout.map(|t| now + t.secs());
        let Some(list) = self.things.get_mut(thing) else {
            return Ok((json!({}), None));
        };
        let Some(i) = Self::next_pending(list) else {
            return Ok((json!({}), None));
        };
        let e = &mut list[i];
        let mut t = None;
        if e.status == JobStatus::Queued {
            e.change(JobStatus::InProgress, &details, now);
            e.in_progress_deadline = in_progress;
            t = Some(transition(e, JobStatus::Queued));
        }
        if let Some(secs) = step {
            e.step_deadline = Some(now + secs);
        }
        Ok((json!({ "execution": e.to_json(true) }), t))
    }

    fn find(&self, thing: &str, job: &str, fields: &Fields) -> Result<&Execution, Rejection> {
        let number = fields.number("executionNumber")?;
        let list = self.things.get(thing).map_or(&[][..], Vec::as_slice);
        let found = if job == "$next" {
            Self::next_pending(list).and_then(|i| list.get(i))
        } else {
            list.iter().find(|e| e.job_id == job)
        };
        found
            .filter(|e| number.is_none_or(|n| n == e.execution_number))
            .ok_or_else(|| {
                Rejection::new(
                    ErrorCode::ResourceNotFound,
                    format!("no execution of job {job} for {thing}"),
                )
            })
    }

    fn describe(&self, thing: &str, job: &str, fields: &Fields) -> Answer {
        // `includeJobDocument` defaults to true (DescribeJobExecution).
        let with_document = fields.flag_or("includeJobDocument", true)?;
        let e = self.find(thing, job, fields)?;
        Ok((json!({ "execution": e.to_json(with_document) }), None))
    }

    fn update(&mut self, thing: &str, job: &str, fields: &Fields, now: u64) -> Answer {
        let status = fields.status()?;
        let details = fields.status_details()?;
        let expected = fields.number("expectedVersion")?;
        let with_state = fields.flag("includeJobExecutionState")?;
        let with_document = fields.flag("includeJobDocument")?;
        let step = step_timeout(fields)?;
        let in_progress = self.in_progress_timeout.map(|t| now + t.secs());
        let (job_id, number) = {
            let e = self.find(thing, job, fields)?;
            (e.job_id.clone(), e.execution_number)
        };
        let Some(e) = self.things.get_mut(thing).and_then(|l| {
            l.iter_mut()
                .find(|e| e.job_id == job_id && e.execution_number == number)
        }) else {
            return Err(Rejection::new(ErrorCode::ResourceNotFound, "gone"));
        };
        if let Some(v) = expected.filter(|&v| v != e.version_number) {
            return Err(Rejection {
                code: ErrorCode::VersionMismatch,
                message: format!(
                    "expected version {v}, the execution is at {}",
                    e.version_number
                ),
                state: Some(e.state_json()),
            });
        }
        if let Err(refusal) = execution::check_move(e.status, status) {
            let code = match refusal {
                execution::Refusal::TerminalStateReached => ErrorCode::TerminalStateReached,
                execution::Refusal::InvalidStateTransition => ErrorCode::InvalidStateTransition,
            };
            return Err(Rejection {
                code,
                message: format!("{} cannot move to {}", e.status.name(), status.name()),
                state: Some(e.state_json()),
            });
        }
        let from = e.status;
        e.change(status, &details, now);
        if from == JobStatus::Queued && status == JobStatus::InProgress {
            e.in_progress_deadline = in_progress;
        }
        if let Some(secs) = step {
            e.step_deadline = Some(now + secs);
        }
        let mut body = json!({});
        if let Some(obj) = body.as_object_mut() {
            if with_state {
                obj.insert("executionState".into(), e.state_json());
            }
            if with_document {
                obj.insert("jobDocument".into(), (*e.document).clone());
            }
        }
        Ok((body, Some(transition(e, from))))
    }
}

type Answer = Result<(Value, Option<Transition>), Rejection>;

/// `stepTimeoutInMinutes` in seconds: 1 to 10,080 minutes (AWS IoT API reference,
/// `StartNextPendingJobExecution`, `UpdateJobExecution`); a new value replaces the running timer.
fn step_timeout(fields: &Fields) -> Result<Option<u64>, Rejection> {
    match fields.number("stepTimeoutInMinutes")? {
        None => Ok(None),
        Some(m @ 1..=10_080) => Ok(Some(m * 60)),
        Some(m) => Err(Rejection::new(
            ErrorCode::InvalidRequest,
            format!("stepTimeoutInMinutes {m} is not 1 to 10080"),
        )),
    }
}

fn transition(e: &Execution, from: JobStatus) -> Transition {
    Transition {
        thing: e.thing.clone(),
        job_id: e.job_id.clone(),
        campaign: e.campaign.clone(),
        release: e.release.clone(),
        from,
        to: e.status,
        details: e.status_details.clone(),
        version: e.version_number,
        execution_number: e.execution_number,
    }
}

fn rejected(topic: &str, r: &Rejection, token: Option<&str>, now: u64) -> Handled {
    Handled {
        publish: vec![publication(
            format!("{topic}/rejected"),
            &r.to_json(token, now),
        )],
        transition: None,
        rejected: Some(r.code),
    }
}

/// The job document of a cairn delivery (docs/jobs.md, "The job document"): the campaign, the
/// release, and the delivery envelope (formats.md §5) in base64 with its size and SHA-256. The
/// device trusts none of it until its boot check has verified the envelope.
pub fn document(campaign: &str, release: &str, delivery: &[u8]) -> Value {
    use base64ct::Encoding as _;
    use sha2::Digest as _;
    json!({
        "operation": "cairn.install",
        "campaign": campaign,
        "release": release,
        "delivery": {
            "format": "cairn-delivery-v1",
            "encoding": "base64",
            "size": delivery.len(),
            "sha256": hex::encode(sha2::Sha256::digest(delivery)),
            "data": base64ct::Base64::encode_string(delivery),
        },
    })
}
