//! Operator actions (docs/relay.md, "Operators"): pause, resume a pause of their own, quarantine
//! devices, roll devices back to the pre-signed target. Each is a campaign event naming the
//! operator and their cause, then one device event per device it changed. The API and the
//! console call these and nothing else.

use cairn_vault::Vault;
use cairn_verifier::campaign::{Action, DeviceState};
use cairn_verifier::statement::Purpose;

use super::core::Engine;
use super::error::{Error, Result};
use super::model::{Device, Selection, Status};
use super::record::Change;

/// Whether an operator may roll a device back: it got the update and is not rolling back.
fn rollbackable(d: &Device) -> bool {
    !d.rolling_back()
        && matches!(
            d.state,
            DeviceState::Delivered | DeviceState::Installed | DeviceState::Failed
        )
}

impl Engine {
    /// Pauses a campaign: nothing more is handed to the transport (devices queued become
    /// `paused`) and no retry starts; rollbacks by rule go on.
    pub fn pause(&mut self, campaign: &str, actor: &str, why: &str, now: u64) -> Result<()> {
        let c = self.campaign(campaign)?;
        match c.status() {
            Status::Completed => return Err(Error::Completed(campaign.to_owned())),
            Status::Paused { .. } => return Err(Error::AlreadyPaused(campaign.to_owned())),
            Status::Running | Status::WaitingApproval => {}
        }
        let stage = c.stage;
        let held: Vec<usize> = self
            .queue
            .iter()
            .filter(|(cid, _)| cid == campaign)
            .map(|(_, i)| *i)
            .collect();
        self.campaign_event(
            campaign,
            Action::Paused,
            stage,
            held.len() as u64,
            actor,
            why,
            now,
        )?;
        for i in held {
            let Some(d) = self.campaign(campaign)?.devices.get(i) else {
                continue;
            };
            if d.state != DeviceState::Pending || d.rolling_back() {
                continue; // a rollback is a safety action: it is not held
            }
            let change = Change {
                state: DeviceState::Paused,
                purpose: Purpose::Update,
                attempt: d.attempt,
                actor,
                why: "held back by the pause",
            };
            self.device_event(campaign, i, &change, now)?;
        }
        Ok(())
    }

    /// Resumes a campaign an operator paused. A pause by the failure threshold needs a signed
    /// approval (`cairn rollout approve --resume`).
    pub fn resume(&mut self, campaign: &str, actor: &str, why: &str, now: u64) -> Result<()> {
        let c = self.campaign(campaign)?;
        match c.status() {
            Status::Paused { by_rule: false } => self.resume_unchecked(campaign, actor, why, now),
            Status::Paused { by_rule: true } => Err(Error::PausedByRule {
                campaign: campaign.to_owned(),
                stage: c.stage,
            }),
            _ => Err(Error::NotPaused(campaign.to_owned())),
        }
    }

    /// Lifts a pause: the devices it held are queued again.
    pub(super) fn resume_unchecked(
        &mut self,
        campaign: &str,
        actor: &str,
        why: &str,
        now: u64,
    ) -> Result<()> {
        let c = self.campaign(campaign)?;
        let (stage, held) = (c.stage, c.held());
        self.campaign_event(
            campaign,
            Action::Resumed,
            stage,
            held.len() as u64,
            actor,
            why,
            now,
        )?;
        for i in held {
            let attempt = self
                .campaign(campaign)?
                .devices
                .get(i)
                .map_or(1, |d| d.attempt);
            let change = Change {
                state: DeviceState::Pending,
                purpose: Purpose::Update,
                attempt,
                actor,
                why: "resumed",
            };
            self.device_event(campaign, i, &change, now)?;
            self.queue.push_back((campaign.to_owned(), i));
        }
        Ok(())
    }

    /// Quarantines devices: nothing more is delivered to them. Lifting a quarantine takes a new
    /// signed plan. Returns how many were quarantined (those already quarantined are not again).
    pub fn quarantine(
        &mut self,
        campaign: &str,
        devices: &[String],
        actor: &str,
        why: &str,
        now: u64,
    ) -> Result<u64> {
        let c = self.campaign(campaign)?;
        let mut found = Vec::with_capacity(devices.len());
        let mut seen = std::collections::HashSet::with_capacity(devices.len());
        for d in devices {
            let i = c.position(d)?;
            if c.devices
                .get(i)
                .is_some_and(|d| d.state != DeviceState::Quarantined)
                && seen.insert(i)
            {
                found.push(i);
            }
        }
        let stage = c.stage;
        self.campaign_event(
            campaign,
            Action::Quarantined,
            stage,
            found.len() as u64,
            actor,
            why,
            now,
        )?;
        for &i in &found {
            let Some(d) = self.campaign(campaign)?.devices.get(i) else {
                continue;
            };
            let change = Change {
                state: DeviceState::Quarantined,
                purpose: d.purpose,
                attempt: d.attempt,
                actor,
                why,
            };
            self.device_event(campaign, i, &change, now)?;
        }
        Ok(found.len() as u64)
    }

    /// Quarantines the selected devices: these, every device that failed and has not installed
    /// since (the failing cohort), or every device of a stage. Returns how many.
    pub fn quarantine_selected(
        &mut self,
        campaign: &str,
        selection: &Selection,
        actor: &str,
        why: &str,
        now: u64,
    ) -> Result<u64> {
        let c = self.campaign(campaign)?;
        let open = |d: &&Device| d.state != DeviceState::Quarantined;
        let devices: Vec<String> = match selection {
            Selection::Devices(ids) => ids.clone(),
            Selection::Failed => c
                .failed
                .iter()
                .filter_map(|&i| c.devices.get(i))
                .filter(open)
                .map(|d| d.id.clone())
                .collect(),
            Selection::Stage(s) => c
                .devices
                .iter()
                .filter(|d| d.stage == *s)
                .filter(open)
                .map(|d| d.id.clone())
                .collect(),
        };
        if devices.is_empty() {
            return Err(Error::NothingToQuarantine(campaign.to_owned()));
        }
        self.quarantine(campaign, &devices, actor, why, now)
    }

    /// Delivers the pre-signed rollback target to the selected devices. Returns how many.
    pub fn rollback(
        &mut self,
        mirror: &Vault,
        campaign: &str,
        selection: &Selection,
        actor: &str,
        why: &str,
        now: u64,
    ) -> Result<u64> {
        let c = self.campaign(campaign)?;
        let devices: Vec<usize> = match selection {
            Selection::Devices(ids) => {
                let mut v = Vec::with_capacity(ids.len());
                let mut seen = std::collections::HashSet::with_capacity(ids.len());
                for id in ids {
                    let i = c.position(id)?;
                    let Some(d) = c.devices.get(i) else { continue };
                    if !rollbackable(d) {
                        return Err(Error::NotRollbackable {
                            device: id.clone(),
                            state: d.state.name(),
                        });
                    }
                    if seen.insert(i) {
                        v.push(i);
                    }
                }
                v
            }
            Selection::Failed => c
                .failed
                .iter()
                .copied()
                .filter(|&i| c.devices.get(i).is_some_and(rollbackable))
                .collect(),
            Selection::Stage(s) => c
                .devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.stage == *s && rollbackable(d))
                .map(|(i, _)| i)
                .collect(),
        };
        if devices.is_empty() {
            return Err(Error::NothingToRollBack(campaign.to_owned()));
        }
        let stage = c.stage;
        let target = c.rollback_id.clone();
        self.campaign_event(
            campaign,
            Action::RollbackStarted,
            stage,
            devices.len() as u64,
            actor,
            why,
            now,
        )?;
        self.deliver(
            mirror,
            campaign,
            &devices,
            Purpose::Rollback,
            actor,
            &|_| format!("rollback to {target}"),
            now,
        )?;
        Ok(devices.len() as u64)
    }
}
