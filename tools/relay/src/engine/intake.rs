//! Device intake: status reports (formats.md §7) and the transport's delivery acknowledgements.
//! A report that does not decode, names another campaign or release, comes from a device outside
//! the campaign, has nothing outstanding or repeats an old sequence number is counted and changes
//! nothing.

use cairn_verifier::campaign::{DeviceState, Outcome, StatusReport};

use super::core::{ACTOR_BROKER, ACTOR_DEVICE, ACTOR_RULE, Engine};
use super::error::Result;
use super::record::Change;

impl Engine {
    /// The transport acknowledged the delivery of `release` to `device`.
    pub fn acked(&mut self, campaign: &str, device: &str, release: &str, now: u64) -> Result<()> {
        let Some(c) = self.campaigns.get(campaign) else {
            return Ok(());
        };
        let Some(d) = c.device(device) else {
            return Ok(());
        };
        let Some(purpose) = c.purpose_of(release) else {
            return Ok(());
        };
        if d.state != DeviceState::Pending || d.purpose != purpose {
            return Ok(()); // a report already overtook the acknowledgement
        }
        let (i, attempt) = (c.by_id[device], d.attempt);
        let change = Change {
            state: DeviceState::Delivered,
            purpose,
            attempt,
            actor: ACTOR_BROKER,
            why: "the broker acknowledged the delivery (QoS 1)",
        };
        self.device_event(campaign, i, &change, now)
    }

    /// A status message from `device` (authenticated by the transport: its own status topic).
    pub fn report(&mut self, device: &str, payload: &[u8], now: u64) -> Result<()> {
        let Ok(report) = StatusReport::decode(payload) else {
            self.stats.malformed += 1;
            return Ok(());
        };
        let Some(c) = self.campaigns.get_mut(report.campaign.as_str()) else {
            self.stats.refused += 1;
            return Ok(());
        };
        let (Some(&i), Some(purpose)) = (
            c.by_id.get(device),
            c.purpose_of(report.release_id.as_str()),
        ) else {
            self.stats.refused += 1;
            return Ok(());
        };
        let Some(d) = c.devices.get_mut(i) else {
            return Ok(());
        };
        if d.last_sequence.is_some_and(|s| report.sequence <= s) {
            self.stats.replayed += 1;
            return Ok(());
        }
        let outstanding = d.purpose == purpose
            && matches!(
                d.state,
                DeviceState::Pending | DeviceState::Delivered | DeviceState::Paused
            );
        if !outstanding {
            self.stats.refused += 1;
            return Ok(());
        }
        d.last_sequence = Some(report.sequence);
        let campaign = report.campaign.as_str().to_owned();
        let detail = report.detail.as_str().to_owned();
        self.settle(
            &campaign,
            i,
            purpose,
            report.outcome,
            &detail,
            ACTOR_DEVICE,
            now,
        )
    }

    /// What a device said of its outstanding delivery (`detail`: its words), recorded by `actor`
    /// (the device, or the relay's rule for an in-progress timeout): installed (or rolled back),
    /// or failed, and then quarantined if the plan says so. Shared by the status reports and the
    /// Jobs transport (`jobs.rs`).
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per transport, every argument named"
    )]
    pub(super) fn settle(
        &mut self,
        campaign: &str,
        i: usize,
        purpose: cairn_verifier::statement::Purpose,
        outcome: Outcome,
        detail: &str,
        actor: &str,
        now: u64,
    ) -> Result<()> {
        let Some(c) = self.campaigns.get_mut(campaign) else {
            return Ok(());
        };
        let Some(d) = c.devices.get(i) else {
            return Ok(());
        };
        let (attempt, failures) = (d.attempt, d.failures);
        c.reports += 1;
        if outcome == Outcome::VerificationFailed {
            c.verification_failures += 1;
        }
        let policy = c.policy.clone();
        self.stats.reports += 1;
        let rolling_back = purpose == cairn_verifier::statement::Purpose::Rollback;
        if outcome == Outcome::Installed {
            let why = format!("reported installed ({detail})");
            let change = Change {
                state: if rolling_back {
                    DeviceState::RolledBack
                } else {
                    DeviceState::Installed
                },
                purpose,
                attempt,
                actor,
                why: &why,
            };
            return self.device_event(campaign, i, &change, now);
        }
        let why = format!("reported {}: {detail}", outcome.name());
        let failed = Change {
            state: DeviceState::Failed,
            purpose,
            attempt,
            actor,
            why: &why,
        };
        self.device_event(campaign, i, &failed, now)?;
        if rolling_back {
            return Ok(());
        }
        let why = if outcome == Outcome::VerificationFailed
            && policy.quarantine_on_verification_failure
        {
            format!("reported a verification failure ({detail}): quarantined by the plan")
        } else if failures + 1 >= policy.quarantine_after_failures {
            format!(
                "{} failures: quarantined by the plan (after {})",
                failures + 1,
                policy.quarantine_after_failures
            )
        } else {
            return Ok(());
        };
        let quarantined = Change {
            state: DeviceState::Quarantined,
            purpose,
            attempt,
            actor: ACTOR_RULE,
            why: &why,
        };
        self.device_event(campaign, i, &quarantined, now)
    }
}
