//! Scheduling: each step (`tick`) per campaign starts a new plan, applies the gate approvals it
//! waits for, retries failed devices after their backoff, rolls back by rule, checks the open
//! stage's thresholds and opens the next stage; and delivery: the deliveries built from the
//! verified mirror, queued, and handed to the transport at the configured rate.

use std::sync::Arc;

use cairn_vault::Vault;
use cairn_verifier::campaign::{Action, ApprovalAction, DeviceState};
use cairn_verifier::rollout::Gate;
use cairn_verifier::statement::Purpose;

use super::core::{ACTOR_CUSTODIANS, ACTOR_RULE, Engine, Outgoing};
use super::error::{Error, Result};
use super::model::{Device, Status};
use super::record::Change;

fn permille(n: u64, of: u64) -> u64 {
    (n * 1000).checked_div(of).unwrap_or(0)
}

impl Engine {
    /// Takes up what a bundle import added to the mirror: new plans start, new approvals apply.
    pub fn on_mirror(&mut self, mirror: &Vault, now: u64) -> Result<()> {
        self.scan_mirror(mirror)?;
        self.tick(mirror, now)
    }

    /// One step of every campaign at time `now`: start new campaigns, apply approvals, retry,
    /// roll back, check thresholds, advance.
    pub fn tick(&mut self, mirror: &Vault, now: u64) -> Result<()> {
        let ids: Vec<String> = self.campaigns.keys().cloned().collect();
        for campaign in ids {
            self.tick_campaign(mirror, &campaign, now)?;
        }
        Ok(())
    }

    fn tick_campaign(&mut self, mirror: &Vault, campaign: &str, now: u64) -> Result<()> {
        if self.campaign(campaign)?.started.is_none() {
            self.start(mirror, campaign, now)?;
        }
        self.apply_approvals(mirror, campaign, now)?;
        let c = self.campaign(campaign)?;
        // A completed campaign still retries and rolls back the devices that need it.
        let status = c.status();
        // Retries (not while paused) and rollbacks by rule (always: they restore a signed state).
        let mut retries = Vec::new();
        let mut rollbacks = Vec::new();
        // Devices the plan's retry criteria leave no retry (docs/jobs.md): `(device, why)`.
        let mut spent = Vec::new();
        for &i in &c.failed {
            let Some(d) = c.devices.get(i) else { continue };
            if d.rolling_back() {
                continue;
            }
            let criteria = d.retry_left(c.policy.jobs.as_ref());
            if d.attempt >= c.policy.max_attempts {
                rollbacks.push(i);
            } else if let Some((t, used, allowed)) =
                criteria.filter(|&(_, used, allowed)| used > u64::from(allowed))
            {
                spent.push((
                    i,
                    format!(
                        "retry criteria {}: {used} failures, {allowed} retries allowed: rollback target",
                        t.name()
                    ),
                ));
            } else if !matches!(status, Status::Paused { .. }) {
                let delay = c
                    .policy
                    .backoff_secs
                    .saturating_mul(1 << d.attempt.saturating_sub(1).min(20));
                if now >= d.failed_at.saturating_add(delay) {
                    retries.push(i);
                }
            }
        }
        let (max, stage) = (c.policy.max_attempts, c.stage);
        let jobs = c.policy.jobs;
        if !retries.is_empty() {
            self.deliver(
                mirror,
                campaign,
                &retries,
                Purpose::Update,
                ACTOR_RULE,
                &|d| match d.retry_left(jobs.as_ref()) {
                    Some((t, used, allowed)) => format!(
                        "retry: attempt {} of {max} after backoff (retry criteria {}: retry {used} of {allowed})",
                        d.attempt + 1,
                        t.name()
                    ),
                    None => format!("retry: attempt {} of {max} after backoff", d.attempt + 1),
                },
                now,
            )?;
        }
        if !spent.is_empty() {
            self.roll_back_spent(mirror, campaign, spent, stage, now)?;
        }
        if !rollbacks.is_empty() {
            self.campaign_event(
                campaign,
                Action::RollbackStarted,
                stage,
                rollbacks.len() as u64,
                ACTOR_RULE,
                &format!(
                    "{} devices failed {max} attempts: delivering the pre-signed rollback target",
                    rollbacks.len()
                ),
                now,
            )?;
            self.deliver(
                mirror,
                campaign,
                &rollbacks,
                Purpose::Rollback,
                ACTOR_RULE,
                &|_| format!("failed {max} attempts: rollback target"),
                now,
            )?;
        }
        self.controls(campaign, now)?;
        self.thresholds(mirror, campaign, now)
    }

    /// A new plan: `started`, every device `eligible`, and the first stage opens.
    fn start(&mut self, mirror: &Vault, campaign: &str, now: u64) -> Result<()> {
        let c = self.campaign(campaign)?;
        let (n, plan_index) = (c.devices.len(), c.evidence.plan_index);
        self.campaign_event(
            campaign,
            Action::Started,
            0,
            n as u64,
            ACTOR_RULE,
            &format!("signed plan at mirror index {plan_index} taken up"),
            now,
        )?;
        let why = format!("approved by the plan at mirror index {plan_index}");
        for i in 0..n {
            let change = Change {
                state: DeviceState::Eligible,
                purpose: Purpose::Update,
                attempt: 0,
                actor: ACTOR_RULE,
                why: &why,
            };
            self.device_event(campaign, i, &change, now)?;
        }
        self.open_stage(
            mirror,
            campaign,
            0,
            ACTOR_RULE,
            "the first stage opens with the plan",
            now,
        )
    }

    fn thresholds(&mut self, mirror: &Vault, campaign: &str, now: u64) -> Result<()> {
        let c = self.campaign(campaign)?;
        let stage = c.stage;
        let Some(plan) = c.stages.get(stage).cloned() else {
            return Ok(());
        };
        if c.completed {
            return Ok(());
        }
        let size = c.stage_size(stage);
        let failed_all = c.troubled.get(stage).copied().unwrap_or(0);
        let failed = if c.resumed_with.0 == stage {
            failed_all.saturating_sub(c.resumed_with.1)
        } else {
            failed_all
        };
        let installed = c.stage_counts(stage).installed;
        if c.paused.is_none() && failed * 1000 > u64::from(plan.failure_permille) * size {
            let why = format!(
                "failure threshold of stage {}: {failed} of {size} failed ({}‰ > {}‰)",
                plan.name,
                permille(failed, size),
                plan.failure_permille
            );
            return self.pause(campaign, ACTOR_RULE, &why, now);
        }
        if c.status() != Status::Running || c.stage_succeeded(stage) {
            return Ok(());
        }
        if now < c.stage_opened_at.saturating_add(plan.soak_secs)
            || installed * 1000 < u64::from(plan.success_permille) * size
        {
            return Ok(());
        }
        let last = stage + 1 == c.stages.len();
        self.campaign_event(
            campaign,
            Action::StageSucceeded,
            stage,
            installed,
            ACTOR_RULE,
            &format!(
                "stage {}: {installed} of {size} installed ({}‰ >= {}‰) after {} s soak",
                plan.name,
                permille(installed, size),
                plan.success_permille,
                plan.soak_secs
            ),
            now,
        )?;
        if last {
            let total = self.campaign(campaign)?.totals().installed;
            return self.campaign_event(
                campaign,
                Action::Completed,
                stage,
                total,
                ACTOR_RULE,
                "every stage met its success threshold",
                now,
            );
        }
        if plan.gate == Gate::Automatic {
            return self.open_stage(
                mirror,
                campaign,
                stage + 1,
                ACTOR_RULE,
                &format!("automatic gate after stage {}", plan.name),
                now,
            );
        }
        self.apply_approvals(mirror, campaign, now)
    }

    /// Applies the approvals the campaign waits for. A resume lifts a pause by the failure
    /// threshold only if the custodians recorded the relay log up to that pause (a kind-11
    /// record covering the pause event) before they signed it: a resume signed in advance, or
    /// without looking at the failures, is refused (formats.md §4.10).
    fn apply_approvals(&mut self, mirror: &Vault, campaign: &str, now: u64) -> Result<()> {
        loop {
            let c = self.campaign(campaign)?;
            let status = c.status();
            let seen = |index: u64| {
                self.recorded
                    .iter()
                    .any(|&(at, size)| at < index && size > c.paused_entry)
            };
            let mut unseen = Vec::new();
            let found = self.approvals.iter().find(|a| {
                a.campaign == campaign
                    && a.plan_digest == c.plan_digest
                    && !c.approvals_applied.contains(&a.index)
                    && match a.action {
                        ApprovalAction::OpenStage => {
                            status == Status::WaitingApproval && a.stage == c.stage as u64 + 1
                        }
                        ApprovalAction::Resume => {
                            let due = status == (Status::Paused { by_rule: true })
                                && a.stage == c.stage as u64;
                            if due && !seen(a.index) {
                                unseen.push(a.index);
                            }
                            due && seen(a.index)
                        }
                    }
            });
            let found = found.cloned();
            let paused_entry = c.paused_entry;
            for index in unseen {
                if self.stale.insert(index) {
                    self.stats.approvals_refused += 1;
                    self.problems.push(format!(
                        "resume approval at mirror index {index} refused: it was signed before the custodians recorded the relay log up to the pause (relay log entry {paused_entry}); record the relay's state bundle (cairn rollout record-state), then approve the resume again"
                    ));
                }
            }
            let Some(a) = found else {
                return Ok(());
            };
            let stage = usize::try_from(a.stage).unwrap_or(usize::MAX);
            self.campaign_event(
                campaign,
                Action::ApprovalApplied,
                stage,
                a.index,
                ACTOR_CUSTODIANS,
                &format!(
                    "gate approval at mirror index {}: {} stage {}",
                    a.index,
                    a.action.name(),
                    a.stage
                ),
                now,
            )?;
            let why = format!("approval at mirror index {}", a.index);
            match a.action {
                ApprovalAction::OpenStage => {
                    self.open_stage(mirror, campaign, stage, ACTOR_CUSTODIANS, &why, now)?;
                }
                ApprovalAction::Resume => {
                    self.resume_unchecked(campaign, ACTOR_CUSTODIANS, &why, now)?;
                }
            }
        }
    }

    fn open_stage(
        &mut self,
        mirror: &Vault,
        campaign: &str,
        stage: usize,
        actor: &str,
        why: &str,
        now: u64,
    ) -> Result<()> {
        let c = self.campaign(campaign)?;
        let devices = c.in_stage(stage, DeviceState::Eligible);
        let name = c
            .stages
            .get(stage)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        self.campaign_event(
            campaign,
            Action::StageOpened,
            stage,
            devices.len() as u64,
            actor,
            &format!("stage {name} opened: {why}"),
            now,
        )?;
        self.deliver(
            mirror,
            campaign,
            &devices,
            Purpose::Update,
            actor,
            &|_| format!("stage {name} open"),
            now,
        )
    }

    /// Queues a delivery of the release (or the rollback target) to each device.
    #[expect(
        clippy::too_many_arguments,
        reason = "what, to whom, by whom, why, when"
    )]
    pub(super) fn deliver(
        &mut self,
        mirror: &Vault,
        campaign: &str,
        devices: &[usize],
        purpose: Purpose,
        actor: &str,
        why: &dyn Fn(&Device) -> String,
        now: u64,
    ) -> Result<()> {
        self.prepare(mirror, campaign, devices, purpose)?;
        for &i in devices {
            let Some(d) = self.campaign(campaign)?.devices.get(i) else {
                continue;
            };
            let attempt = if d.purpose == purpose {
                d.attempt + 1
            } else {
                1
            };
            let why = why(d);
            let change = Change {
                state: DeviceState::Pending,
                purpose,
                attempt,
                actor,
                why: &why,
            };
            self.device_event(campaign, i, &change, now)?;
            self.queue.push_back((campaign.to_owned(), i));
        }
        Ok(())
    }

    /// Builds the deliveries the listed devices lack, from the verified mirror against its latest
    /// checkpoint, or the published one (`Engine::set_published`; formats.md §5): the one place
    /// deliveries come from.
    pub(super) fn prepare(
        &mut self,
        mirror: &Vault,
        campaign: &str,
        devices: &[usize],
        purpose: Purpose,
    ) -> Result<()> {
        let c = self
            .campaigns
            .get_mut(campaign)
            .ok_or_else(|| Error::UnknownCampaign(campaign.to_owned()))?;
        let missing: Vec<usize> = devices
            .iter()
            .copied()
            .filter(|&i| {
                c.devices
                    .get(i)
                    .is_some_and(|d| d.track(purpose).delivery.is_none())
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let indices: Vec<u64> = missing
            .iter()
            .filter_map(|&i| c.devices.get(i))
            .map(|d| d.track(purpose).manifest)
            .collect();
        // Against the published checkpoint (the latest with a witness quorum), or the latest.
        let built = match self.published {
            Some(size) => mirror.deliveries_at(&indices, size)?,
            None => mirror.deliveries(&indices)?,
        };
        for (&i, (device, delivery)) in missing.iter().zip(built) {
            let Some(d) = c.devices.get_mut(i) else {
                continue;
            };
            if d.id != device {
                return Err(Error::DeliveryMismatch {
                    expected: d.id.clone(),
                    found: device,
                });
            }
            d.track_mut(purpose).delivery = Some(Arc::from(delivery));
        }
        Ok(())
    }

    /// Queues again, with their deliveries built, the devices a replayed log leaves `pending`
    /// (queued when the relay stopped, or when a write failed).
    pub(super) fn requeue(&mut self, mirror: &Vault) -> Result<()> {
        let mut pending: Vec<(String, Vec<usize>, Vec<usize>)> = Vec::new();
        for c in self.campaigns.values() {
            let (mut update, mut rollback) = (Vec::new(), Vec::new());
            for (i, d) in c.devices.iter().enumerate() {
                if d.state == DeviceState::Pending {
                    if d.rolling_back() {
                        rollback.push(i);
                    } else {
                        update.push(i);
                    }
                }
            }
            pending.push((c.id.clone(), update, rollback));
        }
        for (campaign, update, rollback) in pending {
            self.prepare(mirror, &campaign, &update, Purpose::Update)?;
            self.prepare(mirror, &campaign, &rollback, Purpose::Rollback)?;
            let mut all: Vec<usize> = update.into_iter().chain(rollback).collect();
            all.sort_unstable();
            self.queue
                .extend(all.into_iter().map(|i| (campaign.clone(), i)));
        }
        Ok(())
    }

    /// The queued deliveries the rate allows for a step of `elapsed` (none if nothing can
    /// publish), in order; devices paused or quarantined while queued are skipped.
    pub(super) fn hand_out(
        &mut self,
        elapsed: std::time::Duration,
        can_publish: bool,
    ) -> Vec<Outgoing> {
        let budget = match self.rate {
            _ if !can_publish => 0,
            Some(rate) => {
                let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                // At least one a step, so a slow tick never stalls a rollout.
                let n = u64::from(rate).saturating_mul(millis) / 1000;
                usize::try_from(n.max(1)).unwrap_or(usize::MAX)
            }
            None => usize::MAX,
        };
        // The plan's rollout rate (docs/jobs.md): each campaign's bucket fills with the time.
        let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        for c in self.campaigns.values_mut() {
            c.rollout.refill(millis);
        }
        let mut out = Vec::new();
        // Deliveries of campaigns whose rate allows none now keep their place in the queue.
        let mut held = Vec::new();
        let mut scanned = 0usize;
        let queued = self.queue.len();
        while out.len() < budget && scanned < queued {
            let Some((campaign, i)) = self.queue.pop_front() else {
                break;
            };
            scanned += 1;
            let Some(c) = self.campaigns.get_mut(&campaign) else {
                continue;
            };
            let Some(d) = c.devices.get(i) else { continue };
            if d.state != DeviceState::Pending {
                continue; // paused or quarantined while queued
            }
            let Some(delivery) = d.track(d.purpose).delivery.clone() else {
                continue;
            };
            if !c.rollout.take() {
                held.push((campaign, i));
                if self.campaigns.values().all(|c| c.rollout.rate.is_some()) {
                    // Every campaign is rate-limited: once all are empty, stop scanning.
                    let empty = self
                        .campaigns
                        .values()
                        .all(|c| c.rollout.tokens_milli < 1000);
                    if empty {
                        break;
                    }
                }
                continue;
            }
            out.push(Outgoing {
                campaign: campaign.clone(),
                device: d.id.clone(),
                release: c.release(d.purpose).to_owned(),
                delivery,
                queued_at: d.pending_at,
            });
        }
        for item in held.into_iter().rev() {
            self.queue.push_front(item);
        }
        self.stats.handed += out.len() as u64;
        out
    }
}
