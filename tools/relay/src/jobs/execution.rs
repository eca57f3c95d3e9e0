//! Job executions as the AWS IoT Jobs service keeps them (developer guide, "Jobs device
//! communication": job execution states and the `JobExecution` data type): one execution per
//! (thing, job) at a time, its status, the device's own `statusDetails`, the times it was queued,
//! started and last updated (integer seconds, as the AWS SDKs read them), a `versionNumber` that
//! every change increments, and an `executionNumber` that a retry increments.
//!
//! The states and the moves a device may make (`UpdateJobExecution`):
//!
//! ```text
//!            start-next / update IN_PROGRESS
//!   QUEUED ─────────────────────────────────► IN_PROGRESS ──┐ IN_PROGRESS (details, version+1)
//!     │  update SUCCEEDED | FAILED | REJECTED     │  ◄───────┘
//!     └───────────────────────────────┐           │ update SUCCEEDED | FAILED | REJECTED
//!                                     ▼           ▼
//!        terminal: SUCCEEDED, FAILED, REJECTED (the device); TIMED_OUT (the in-progress
//!        timeout), CANCELED and REMOVED (the service): nothing moves out of them
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

/// A job execution's status (the `JobExecutionStatus` enumeration of the AWS IoT API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for the device.
    Queued,
    /// The device started it.
    InProgress,
    /// The device installed the update.
    Succeeded,
    /// The device failed to install it.
    Failed,
    /// In progress for longer than the timeout.
    TimedOut,
    /// The device declined it (here: its boot check refused the delivery).
    Rejected,
    /// The thing was removed from the job's targets.
    Removed,
    /// The service canceled it (here: the device was quarantined, or its delivery replaced).
    Canceled,
}

impl JobStatus {
    /// Every status, in the API's order.
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::TimedOut,
        JobStatus::Rejected,
        JobStatus::Removed,
        JobStatus::Canceled,
    ];

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::TimedOut => "TIMED_OUT",
            JobStatus::Rejected => "REJECTED",
            JobStatus::Removed => "REMOVED",
            JobStatus::Canceled => "CANCELED",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.name() == s)
    }

    /// Nothing moves out of a terminal status.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::InProgress)
    }

    /// A status a device may set through `UpdateJobExecution`.
    pub fn device_may_set(self) -> bool {
        matches!(
            self,
            JobStatus::InProgress | JobStatus::Succeeded | JobStatus::Failed | JobStatus::Rejected
        )
    }
}

/// The device's own words about an execution (`statusDetails`: string keys to string values).
pub type StatusDetails = BTreeMap<String, String>;

/// One job execution.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The job.
    pub job_id: String,
    /// The thing (device).
    pub thing: String,
    /// The cairn campaign the job runs.
    pub campaign: String,
    /// The release it delivers (the campaign's, or its rollback target).
    pub release: String,
    /// Its status.
    pub status: JobStatus,
    /// The device's words.
    pub status_details: StatusDetails,
    /// When it was queued (seconds).
    pub queued_at: u64,
    /// When the device started it.
    pub started_at: Option<u64>,
    /// When it last changed.
    pub last_updated_at: u64,
    /// Incremented by every change.
    pub version_number: u64,
    /// Incremented by every retry of the job on this thing.
    pub execution_number: u64,
    /// The job document (a JSON object).
    pub document: Arc<serde_json::Value>,
    /// When the step timer the device set (`stepTimeoutInMinutes`) runs out: the execution is
    /// then `TIMED_OUT` unless it reached a terminal status.
    pub step_deadline: Option<u64>,
    /// When the relay's in-progress timeout runs out (`[mqtt] jobs_in_progress_timeout_secs`,
    /// started when the execution becomes IN_PROGRESS, never reset: AWS's
    /// `timeoutConfig.inProgressTimeoutInMinutes`): the execution is then `TIMED_OUT` unless it
    /// reached a terminal status.
    pub in_progress_deadline: Option<u64>,
}

impl Execution {
    /// The `JobExecution` object of the API (`execution` in start-next, describe, notify-next).
    pub fn to_json(&self, with_document: bool) -> serde_json::Value {
        let mut v = serde_json::json!({
            "jobId": self.job_id,
            "thingName": self.thing,
            "status": self.status.name(),
            "statusDetails": self.status_details,
            "queuedAt": self.queued_at,
            "lastUpdatedAt": self.last_updated_at,
            "versionNumber": self.version_number,
            "executionNumber": self.execution_number,
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(t) = self.started_at {
                obj.insert("startedAt".into(), t.into());
            }
            if with_document {
                obj.insert("jobDocument".into(), (*self.document).clone());
            }
        }
        v
    }

    /// The `JobExecutionSummary` object (`get`'s lists and `notify`).
    pub fn summary(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "jobId": self.job_id,
            "queuedAt": self.queued_at,
            "lastUpdatedAt": self.last_updated_at,
            "versionNumber": self.version_number,
            "executionNumber": self.execution_number,
        });
        if let (Some(t), Some(obj)) = (self.started_at, v.as_object_mut()) {
            obj.insert("startedAt".into(), t.into());
        }
        v
    }

    /// The `JobExecutionState` object (update's answers and rejections).
    pub fn state_json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": self.status.name(),
            "statusDetails": self.status_details,
            "versionNumber": self.version_number,
        })
    }

    /// Moves to `status` at `now` with `details` merged in (AWS merges `statusDetails`).
    pub fn change(&mut self, status: JobStatus, details: &StatusDetails, now: u64) {
        if status == JobStatus::InProgress && self.started_at.is_none() {
            self.started_at = Some(now);
        }
        self.status = status;
        for (k, v) in details {
            self.status_details.insert(k.clone(), v.clone());
        }
        self.last_updated_at = now;
        self.version_number += 1;
    }
}

/// A move a device asked for that the state machine refuses, with AWS's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The execution already reached a terminal status.
    TerminalStateReached,
    /// The move is not allowed from the current status.
    InvalidStateTransition,
}

/// Whether a device may move an execution from `from` to `to`.
pub fn check_move(from: JobStatus, to: JobStatus) -> Result<(), Refusal> {
    if from.is_terminal() {
        return Err(Refusal::TerminalStateReached);
    }
    if !to.device_may_set() {
        return Err(Refusal::InvalidStateTransition);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_terminal_states_are_final() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.name()), Some(s));
        }
        assert_eq!(JobStatus::parse("in_progress"), None);
        for s in JobStatus::ALL {
            let expected = !matches!(s, JobStatus::Queued | JobStatus::InProgress);
            assert_eq!(s.is_terminal(), expected, "{s:?}");
            if s.is_terminal() {
                assert_eq!(
                    check_move(s, JobStatus::InProgress),
                    Err(Refusal::TerminalStateReached)
                );
            }
        }
        assert_eq!(
            check_move(JobStatus::InProgress, JobStatus::Canceled),
            Err(Refusal::InvalidStateTransition)
        );
        assert_eq!(
            check_move(JobStatus::Queued, JobStatus::Queued),
            Err(Refusal::InvalidStateTransition)
        );
        assert_eq!(check_move(JobStatus::Queued, JobStatus::Rejected), Ok(()));
        assert_eq!(
            check_move(JobStatus::InProgress, JobStatus::InProgress),
            Ok(())
        );
    }
}
