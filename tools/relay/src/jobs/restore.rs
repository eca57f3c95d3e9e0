//! Executions rebuilt from the relay log after a restart (docs/jobs.md, "After a restart"). The
//! Jobs service keeps its executions in memory; what the relay log holds of them is each recorded
//! transition's device event, whose cause `engine/jobs.rs` writes as
//! `job <STATUS> v<versionNumber> #<executionNumber>[: k=v, k=v ...]` (the device's
//! `statusDetails`, the cause cut at 128 bytes) at the time of the transition. An IN_PROGRESS
//! execution is rebuilt from its `delivered` event (versionNumber, executionNumber,
//! statusDetails, startedAt and lastUpdatedAt) and the `pending` event before it (queuedAt). A
//! device waiting for a retry gets its last execution back as it ended (FAILED, TIMED_OUT), so
//! that the retry is the next execution number, as before the restart.

use std::sync::Arc;

use super::{Execution, JobStatus, Service, StatusDetails};

/// What a Jobs transition's cause in the relay log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTransition {
    /// The status the execution entered.
    pub status: JobStatus,
    /// `versionNumber` after the transition.
    pub version: u64,
    /// `executionNumber`.
    pub execution_number: u64,
    /// The device's `statusDetails` as recorded: a pair the 128-byte cut ended inside is kept
    /// as far as it was recorded (its value ends in `...`), one cut inside its key is dropped.
    pub details: StatusDetails,
}

/// Reads a cause written for a Jobs transition; `None` for any other cause (a status report's,
/// a broker acknowledgement's, a rule's).
pub fn parse_cause(cause: &str) -> Option<RecordedTransition> {
    let rest = cause.strip_prefix("job ")?;
    let (head, words) = match rest.split_once(": ") {
        Some((h, w)) => (h, Some(w)),
        None => (rest, None),
    };
    let mut parts = head.split(' ');
    let status = JobStatus::parse(parts.next()?)?;
    let version = parts.next()?.strip_prefix('v')?.parse().ok()?;
    let execution_number = parts.next()?.strip_prefix('#')?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let details = words
        .into_iter()
        .flat_map(|w| w.split(", "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(RecordedTransition {
        status,
        version,
        execution_number,
        details,
    })
}

/// An IN_PROGRESS execution as the relay log records it, with the delivery it carries.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The campaign.
    pub campaign: String,
    /// The thing (device).
    pub thing: String,
    /// The release delivered.
    pub release: String,
    /// The last IN_PROGRESS transition recorded.
    pub transition: RecordedTransition,
    /// When it was queued: the time of the device's `pending` event before it.
    pub queued_at: u64,
    /// When it became IN_PROGRESS: the time of its `delivered` event.
    pub started_at: u64,
    /// The delivery envelope its job document carries.
    pub delivery: Arc<[u8]>,
}

/// A device's last execution of a job as it ended, recorded in the relay log: what the retry's
/// execution number follows.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The campaign.
    pub campaign: String,
    /// The thing (device).
    pub thing: String,
    /// The release the job delivered.
    pub release: String,
    /// The terminal transition recorded.
    pub transition: RecordedTransition,
    /// When it ended: the time of that event.
    pub at: u64,
}

impl Service {
    /// Puts back a job's last execution on a thing as it ended (after a restart), unless the
    /// thing already has an execution of that job: the next execution queued for the job gets
    /// the number after it. Its job document is not kept (`null`): nothing reads an ended
    /// execution's document but `DescribeJobExecution`, and the retry carries its own.
    pub fn restore_ended(&mut self, e: &Ended) {
        if !e.transition.status.is_terminal() {
            return;
        }
        let job_id = super::topics::job_id(&e.campaign, &e.release);
        let list = self.things.entry(e.thing.clone()).or_default();
        if list.iter().any(|x| x.job_id == job_id) {
            return;
        }
        let t = &e.transition;
        list.push(Execution {
            job_id,
            thing: e.thing.clone(),
            campaign: e.campaign.clone(),
            release: e.release.clone(),
            status: t.status,
            status_details: t.details.clone(),
            queued_at: e.at,
            started_at: None,
            last_updated_at: e.at,
            version_number: t.version,
            execution_number: t.execution_number,
            document: Arc::new(serde_json::Value::Null),
            step_deadline: None,
            in_progress_deadline: None,
        });
    }

    /// Puts back an IN_PROGRESS execution the relay log records (after a restart), replacing
    /// any execution of the same job on the thing. Its in-progress timeout, if the service has
    /// one, runs from when it started, as before the restart; a device's own step timer is not
    /// in the log and is not restored.
    pub fn restore(&mut self, r: &Recorded) {
        let job_id = super::topics::job_id(&r.campaign, &r.release);
        let t = &r.transition;
        let execution = Execution {
            job_id: job_id.clone(),
            thing: r.thing.clone(),
            campaign: r.campaign.clone(),
            release: r.release.clone(),
            status: JobStatus::InProgress,
            status_details: t.details.clone(),
            queued_at: r.queued_at,
            started_at: Some(r.started_at),
            last_updated_at: r.started_at,
            version_number: t.version,
            execution_number: t.execution_number,
            document: Arc::new(super::document(&r.campaign, &r.release, &r.delivery)),
            step_deadline: None,
            in_progress_deadline: self.in_progress_timeout.map(|d| r.started_at + d.secs()),
        };
        let list = self.things.entry(r.thing.clone()).or_default();
        list.retain(|e| e.job_id != job_id);
        list.push(execution);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_causes_engine_jobs_writes() {
        let t = parse_cause("job IN_PROGRESS v2 #1: agent=awsiotsdk-python").unwrap();
        assert_eq!(
            (t.status, t.version, t.execution_number),
            (JobStatus::InProgress, 2, 1)
        );
        assert_eq!(t.details["agent"], "awsiotsdk-python");
        let t = parse_cause("job TIMED_OUT v3 #12").unwrap();
        assert_eq!(
            (t.status, t.version, t.execution_number, t.details.len()),
            (JobStatus::TimedOut, 3, 12, 0)
        );
        // Cut at 128 bytes: the last pair keeps what was recorded; a cut key is dropped.
        let t = parse_cause("job IN_PROGRESS v4 #2: a=1, step=downlo...").unwrap();
        assert_eq!(t.details["step"], "downlo...");
        let t = parse_cause("job IN_PROGRESS v4 #2: a=1, ste...").unwrap();
        assert_eq!(t.details.len(), 1);
    }

    #[test]
    fn other_causes_are_not_jobs_transitions() {
        for cause in [
            "broker acknowledged the delivery",
            "job",
            "job IN_PROGRESS",
            "job IN_PROGRESS v2",
            "job IN_PROGRESS 2 #1",
            "job IN_PROGRESS v2 1",
            "job NOPE v2 #1",
            "job IN_PROGRESS v2 #1 extra",
            "job IN_PROGRESS v-1 #1",
        ] {
            assert_eq!(parse_cause(cause), None, "{cause}");
        }
    }

    #[test]
    fn a_restored_execution_is_as_recorded() {
        let mut s = Service::with_in_progress_timeout(Some(
            super::super::InProgressTimeout::try_from(60).unwrap(),
        ));
        let r = Recorded {
            campaign: "c".into(),
            thing: "sc-0000001".into(),
            release: "r".into(),
            transition: parse_cause("job IN_PROGRESS v5 #2: step=flash").unwrap(),
            queued_at: 100,
            started_at: 130,
            delivery: Arc::from(&b"delivery"[..]),
        };
        s.restore(&r);
        let job = super::super::topics::job_id("c", "r");
        let e = s.execution("sc-0000001", &job).unwrap();
        assert_eq!(
            (
                e.status,
                e.version_number,
                e.execution_number,
                e.queued_at,
                e.started_at,
                e.last_updated_at
            ),
            (JobStatus::InProgress, 5, 2, 100, Some(130), 130)
        );
        assert_eq!(e.status_details["step"], "flash");
        assert_eq!(e.document["delivery"]["size"], 8);
        // The in-progress timeout runs from when it started.
        assert!(s.expire(189).0.is_empty());
        assert_eq!(s.expire(190).0.len(), 1);
    }
}
