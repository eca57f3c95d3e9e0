//! The AWS IoT Jobs transport's transitions in the relay log (docs/jobs.md, "States"): each
//! change of a job execution that a device makes, or the relay's in-progress timeout, becomes the
//! device event of the cairn state it maps to, with the device's own `statusDetails` in its cause:
//!
//! | execution | cairn device state | actor |
//! |---|---|---|
//! | `QUEUED` (the delivery handed to the transport) | `pending` | rule |
//! | `IN_PROGRESS` (start-next, or an update) | `delivered` | device |
//! | `SUCCEEDED` | `installed` (`rolled-back` for the rollback target) | device |
//! | `FAILED` | `failed` (then `quarantined` after the plan's failures) | device |
//! | `REJECTED` (the boot check refused the delivery) | `failed`, a verification failure (then `quarantined` if the plan says so) | device |
//! | `TIMED_OUT` | `failed` | rule |
//! | `CANCELED`, `REMOVED` | follow a cairn event already recorded (quarantine, pause, a newer delivery) | - |

use cairn_verifier::campaign::{DeviceState, Outcome};

use super::core::{ACTOR_DEVICE, ACTOR_RULE, Engine};
use super::error::Result;
use super::record::Change;
use crate::jobs::{JobStatus, Transition, messages::words};

impl Engine {
    /// Whether `device` of `campaign` still waits on its delivery of `release` (pending,
    /// delivered or paused on that release): a Jobs execution of anything else is canceled.
    pub fn awaits(&self, campaign: &str, device: &str, release: &str) -> bool {
        let Some(c) = self.campaigns.get(campaign) else {
            return false;
        };
        let (Some(d), Some(purpose)) = (c.device(device), c.purpose_of(release)) else {
            return false;
        };
        d.purpose == purpose
            && matches!(
                d.state,
                DeviceState::Pending | DeviceState::Delivered | DeviceState::Paused
            )
    }

    /// Records a Jobs execution's transition (table above). Returns `false`, recording nothing,
    /// when the device no longer waits on that delivery (the execution is then canceled).
    pub fn job_transition(&mut self, t: &Transition, now: u64) -> Result<bool> {
        if !self.awaits(&t.campaign, &t.thing, &t.release) {
            self.stats.refused += 1;
            return Ok(false);
        }
        let Some(c) = self.campaigns.get(&t.campaign) else {
            return Ok(false);
        };
        let (Some(&i), Some(purpose)) = (c.by_id.get(&t.thing), c.purpose_of(&t.release)) else {
            return Ok(false);
        };
        let Some(d) = c.devices.get(i) else {
            return Ok(false);
        };
        let said = words(&t.details);
        let detail = format!(
            "job {} v{} #{}{}{said}",
            t.to.name(),
            t.version,
            t.execution_number,
            if said.is_empty() { "" } else { ": " }
        );
        let (outcome, actor) = match t.to {
            JobStatus::InProgress => {
                if d.state != DeviceState::Pending {
                    return Ok(true); // already delivered: the device's words change only
                }
                let change = Change {
                    state: DeviceState::Delivered,
                    purpose,
                    attempt: d.attempt,
                    actor: ACTOR_DEVICE,
                    why: &detail,
                };
                self.device_event(&t.campaign, i, &change, now)?;
                return Ok(true);
            }
            JobStatus::Succeeded => (Outcome::Installed, ACTOR_DEVICE),
            JobStatus::Failed => (Outcome::InstallFailed, ACTOR_DEVICE),
            JobStatus::Rejected => (Outcome::VerificationFailed, ACTOR_DEVICE),
            JobStatus::TimedOut => (Outcome::InstallFailed, ACTOR_RULE),
            JobStatus::Queued | JobStatus::Canceled | JobStatus::Removed => return Ok(true),
        };
        self.settle(&t.campaign, i, purpose, outcome, &detail, actor, now)?;
        Ok(true)
    }
}

impl Engine {
    /// Whether `device`'s latest failure is the relay's `TIMED_OUT` and it has not moved since.
    fn timed_out(&self, campaign: &str, device: &str) -> bool {
        self.campaigns
            .get(campaign)
            .and_then(|c| c.device(device))
            .is_some_and(|d| {
                d.state == DeviceState::Failed
                    && d.last_failure == Some(cairn_verifier::rollout::jobs::FailureType::TimedOut)
            })
    }

    /// The Jobs side of a commit: executions of devices that no longer wait on them are
    /// `CANCELED` (quarantined, rolled back, moved to another release), then each delivery handed
    /// out becomes a `QUEUED` execution whose document carries it. Returns the notifications.
    pub fn jobs_commit(
        &self,
        service: &mut crate::jobs::Service,
        out: Vec<super::core::Outgoing>,
        now: u64,
    ) -> Vec<crate::jobs::Publication> {
        let stale: Vec<(String, String, bool)> = service
            .pending()
            .filter(|e| !self.awaits(&e.campaign, &e.thing, &e.release))
            .map(|e| {
                let timed_out =
                    e.status == JobStatus::InProgress && self.timed_out(&e.campaign, &e.thing);
                (e.thing.clone(), e.job_id.clone(), timed_out)
            })
            .collect();
        let mut publish = Vec::new();
        let why = crate::jobs::StatusDetails::from([(
            "cairn".to_owned(),
            "the relay no longer delivers this release to the device".to_owned(),
        )]);
        let timeout = crate::jobs::StatusDetails::from([(
            "cairn".to_owned(),
            "the plan's in-progress timeout ran out".to_owned(),
        )]);
        for (thing, job, timed_out) in stale {
            // The plan's in-progress timeout (controls.rs) ends the execution TIMED_OUT, as AWS
            // does; anything else the device no longer waits on is CANCELED.
            let (status, details) = if timed_out {
                (JobStatus::TimedOut, &timeout)
            } else {
                (JobStatus::Canceled, &why)
            };
            if let Some((_, p)) = service.end(&thing, &job, status, details, now) {
                publish.extend(p);
            }
        }
        for o in out {
            let document = crate::jobs::document(&o.campaign, &o.release, &o.delivery);
            let job = crate::jobs::topics::job_id(&o.campaign, &o.release);
            // `queuedAt` is the time of the device's `pending` event, which a restart rebuilds
            // (jobs_restore.rs); never later than now.
            let queued_at = o.queued_at.min(now);
            publish.extend(service.queue(
                &o.device,
                &job,
                &o.campaign,
                &o.release,
                document,
                queued_at,
            ));
        }
        publish
    }
}
