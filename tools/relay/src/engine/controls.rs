//! The plan's AWS IoT Jobs rollout controls (formats.md §4.9 key 17; docs/jobs.md, "Rollout
//! controls"), enforced for every transport, each firing an event in the relay log:
//!
//! | control (AWS name) | what the relay does | evidence |
//! |---|---|---|
//! | `maximumPerMinute`, `exponentialRate` | hands a campaign's deliveries to the transport at the plan's rate (things a minute, a token bucket holding one minute); the ramp steps the rate up by `incrementFactor` each time `numberOfNotifiedThings` more devices were notified (their delivery acknowledged or their execution started) or `numberOfSucceededThings` more installed, up to `maximumPerMinute` (else 1000) | campaign event `rate-increased`, the new rate in `devices` |
//! | `inProgressTimeoutInMinutes` | a device delivered (execution `IN_PROGRESS`) that long without an answer fails as `TIMED_OUT` | device event `failed` by `rule` |
//! | `jobExecutionsRetryConfig` | a failure is retried only while its type's `numberOfRetries` (else `ALL`'s) is not spent, and the plan's `max_attempts` allows; `REJECTED` is never retried; otherwise the device gets the rollback target | the retry's `pending` event, or `rollback-started` |
//! | `abortConfig` | once `minNumberOfExecutedThings` devices executed (installed or failed at least once), a failure type's share of them at or above `thresholdPercentage` pauses the campaign (AWS cancels the job); custodians resume it with a signed approval, and the criteria then count from the resume | campaign event `paused` by `rule` |
//!
//! The counters behind them are rebuilt from the relay log on replay (`record.rs`), so a
//! restarted relay goes on where it stopped; only the token bucket starts full again.

use cairn_verifier::campaign::{Action, DeviceState, Outcome};
use cairn_verifier::rollout::jobs::{FailureType, JobsControls, RateIncrease};
use cairn_verifier::statement::Purpose;

use super::core::{ACTOR_RULE, Engine};
use super::error::Result;
use super::model::Device;

/// A failure type's slot in per-type counters (`All` has none: it is their union).
pub(super) fn slot(t: FailureType) -> usize {
    match t {
        FailureType::Failed | FailureType::All => 0,
        FailureType::Rejected => 1,
        FailureType::TimedOut => 2,
    }
}

/// The failure type of a `failed` device event: `TIMED_OUT` when the relay's rule recorded it
/// (an in-progress or step timer ran out: the only failures not reported by the device),
/// `REJECTED` when the device's boot check refused the delivery, `FAILED` otherwise.
pub(super) fn failure_type(actor: &str, cause: &str) -> FailureType {
    if actor == ACTOR_RULE {
        FailureType::TimedOut
    } else if cause.starts_with(&format!("reported {}", Outcome::VerificationFailed.name())) {
        FailureType::Rejected
    } else {
        FailureType::Failed
    }
}

/// What the abort criteria count (AWS: executed things, and those that failed by type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Executed {
    /// Devices whose update delivery reached an end at least once (installed or failed).
    pub things: u64,
    /// Devices that failed at least once, per type (`FAILED`, `REJECTED`, `TIMED_OUT`).
    pub failed: [u64; 3],
    /// Devices that failed at least once, of any type.
    pub any: u64,
}

impl Executed {
    /// Devices that failed with `t` (`ALL`: any).
    pub fn failed_of(&self, t: FailureType) -> u64 {
        if t == FailureType::All {
            self.any
        } else {
            self.failed.get(slot(t)).copied().unwrap_or(0)
        }
    }

    /// The counts since `base` was taken.
    pub(super) fn since(&self, base: &Executed) -> Executed {
        let mut since = Executed {
            things: self.things.saturating_sub(base.things),
            any: self.any.saturating_sub(base.any),
            failed: [0; 3],
        };
        for ((out, now), then) in since.failed.iter_mut().zip(self.failed).zip(base.failed) {
            *out = now.saturating_sub(then);
        }
        since
    }
}

/// A campaign's rollout rate and ramp.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    /// Things a minute the plan allows now (`None`: no rate in the plan).
    pub rate: Option<u64>,
    /// Times the ramp stepped up.
    pub increases: u64,
    /// Update deliveries acknowledged or started (notified things).
    pub notified: u64,
    /// Update deliveries installed (succeeded things).
    pub succeeded: u64,
    /// The ramp's counter at its last step.
    pub(super) baseline: u64,
    /// Deliveries the bucket holds, in thousandths.
    pub(super) tokens_milli: u64,
}

impl Rollout {
    /// The rate the plan starts at, with a full bucket.
    pub(super) fn new(controls: Option<&JobsControls>) -> Self {
        let rate = controls.and_then(JobsControls::initial_rate);
        Self {
            rate,
            tokens_milli: rate.unwrap_or(0) * 1000,
            ..Self::default()
        }
    }

    /// Refills the bucket for `millis` elapsed: `rate` a minute, at most one minute's worth.
    pub(super) fn refill(&mut self, millis: u64) {
        if let Some(rate) = self.rate {
            self.tokens_milli = self
                .tokens_milli
                .saturating_add(rate.saturating_mul(millis) / 60)
                .min(rate * 1000);
        }
    }

    /// Takes one delivery from the bucket, if the rate allows it now.
    pub(super) fn take(&mut self) -> bool {
        if self.rate.is_none() {
            return true;
        }
        if self.tokens_milli < 1000 {
            return false;
        }
        self.tokens_milli -= 1000;
        true
    }
}

impl Device {
    /// Whether the plan's retry criteria (if any) leave a retry for its latest failure: the
    /// failures of that type so far (the latest included) at most its `numberOfRetries`, or,
    /// without a criterion of its own, `ALL`'s over `FAILED` and `TIMED_OUT` failures.
    pub(super) fn retry_left(
        &self,
        controls: Option<&JobsControls>,
    ) -> Option<(FailureType, u64, u8)> {
        let c = controls?;
        c.retry_criteria().next()?;
        let t = self.last_failure.unwrap_or(FailureType::Failed);
        let own = c.retry_criteria().any(|r| r.failure_type == t);
        let used = if own || !t.retryable() {
            self.failed_by.get(slot(t)).copied().unwrap_or(0)
        } else {
            self.failed_by
                .get(slot(FailureType::Failed))
                .copied()
                .unwrap_or(0)
                + self
                    .failed_by
                    .get(slot(FailureType::TimedOut))
                    .copied()
                    .unwrap_or(0)
        };
        Some((t, used, c.retries_for(t)))
    }
}

impl Engine {
    /// Delivers the rollback target to the devices the plan's retry criteria leave no retry,
    /// each with why (`(device, why)`), after a `rollback-started` event.
    pub(super) fn roll_back_spent(
        &mut self,
        mirror: &cairn_vault::Vault,
        campaign: &str,
        spent: Vec<(usize, String)>,
        stage: usize,
        now: u64,
    ) -> Result<()> {
        let devices: Vec<usize> = spent.iter().map(|(i, _)| *i).collect();
        self.campaign_event(
            campaign,
            Action::RollbackStarted,
            stage,
            devices.len() as u64,
            ACTOR_RULE,
            &format!(
                "{} devices have no retry left under the plan's retry criteria: delivering the pre-signed rollback target",
                devices.len()
            ),
            now,
        )?;
        let c = self.campaign(campaign)?;
        let why: std::collections::HashMap<String, String> = spent
            .into_iter()
            .filter_map(|(i, why)| c.devices.get(i).map(|d| (d.id.clone(), why)))
            .collect();
        self.deliver(
            mirror,
            campaign,
            &devices,
            Purpose::Rollback,
            ACTOR_RULE,
            &|d| why.get(&d.id).cloned().unwrap_or_default(),
            now,
        )
    }

    /// One step of the campaign's Jobs controls at `now`: the ramp, the in-progress timeout, the
    /// abort criteria (in that order: a timeout can fire an abort in the same step).
    pub(super) fn controls(&mut self, campaign: &str, now: u64) -> Result<()> {
        let Some(jobs) = self.campaign(campaign)?.policy.jobs else {
            return Ok(());
        };
        self.ramp(campaign, &jobs, now)?;
        self.time_out(campaign, &jobs, now)?;
        self.abort(campaign, &jobs, now)
    }

    fn ramp(&mut self, campaign: &str, jobs: &JobsControls, now: u64) -> Result<()> {
        let Some(e) = jobs.exponential_rate else {
            return Ok(());
        };
        let c = self.campaign(campaign)?;
        let (Some(rate), cap) = (c.rollout.rate, jobs.rate_cap()) else {
            return Ok(());
        };
        let counter = match e.increase {
            RateIncrease::Notified(_) => c.rollout.notified,
            RateIncrease::Succeeded(_) => c.rollout.succeeded,
        };
        let step = u64::from(e.increase.things());
        if rate >= cap || counter.saturating_sub(c.rollout.baseline) < step {
            return Ok(());
        }
        let next = e.next(rate, cap);
        let stage = c.stage;
        let what = match e.increase {
            RateIncrease::Notified(_) => "notified",
            RateIncrease::Succeeded(_) => "succeeded",
        };
        self.campaign_event(
            campaign,
            Action::RateIncreased,
            stage,
            next,
            ACTOR_RULE,
            &format!(
                "exponential rate: {rate} -> {next} things/min after {step} more {what} things ({counter} in all; factor {}.{}, cap {cap})",
                e.increment_tenths / 10,
                e.increment_tenths % 10
            ),
            now,
        )
    }

    fn time_out(&mut self, campaign: &str, jobs: &JobsControls, now: u64) -> Result<()> {
        let Some(minutes) = jobs.in_progress_timeout_minutes else {
            return Ok(());
        };
        let limit = u64::from(minutes) * 60;
        let c = self.campaign(campaign)?;
        let due: Vec<(usize, Purpose)> = c
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                d.state == DeviceState::Delivered && now >= d.delivered_at.saturating_add(limit)
            })
            .map(|(i, d)| (i, d.purpose))
            .collect();
        for (i, purpose) in due {
            let detail = format!(
                "job TIMED_OUT: the plan's in-progress timeout of {minutes} min ran out (inProgressTimeoutInMinutes)"
            );
            self.settle(
                campaign,
                i,
                purpose,
                Outcome::InstallFailed,
                &detail,
                ACTOR_RULE,
                now,
            )?;
        }
        Ok(())
    }

    fn abort(&mut self, campaign: &str, jobs: &JobsControls, now: u64) -> Result<()> {
        let c = self.campaign(campaign)?;
        if c.paused.is_some() || c.completed {
            return Ok(());
        }
        let counts = c.executed();
        let Some(fired) = jobs
            .abort_criteria()
            .find(|a| a.fires(counts.failed_of(a.failure_type), counts.things))
        else {
            return Ok(());
        };
        let failed = counts.failed_of(fired.failure_type);
        let why = format!(
            "abort criteria {}: {failed} of {} executed things ({}.{:02}% >= {}.{:02}%, at least {} executed)",
            fired.failure_type.name(),
            counts.things,
            failed * 100 / counts.things.max(1),
            (failed * 10_000 / counts.things.max(1)) % 100,
            fired.threshold_hundredths / 100,
            fired.threshold_hundredths % 100,
            fired.min_executed
        );
        self.pause(campaign, ACTOR_RULE, &why, now)
    }
}
