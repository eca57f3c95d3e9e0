//! The evidence: every change is a device event (formats.md §4.11) or a campaign event (§4.12),
//! staged, applied to the model at once, and written with the step's other events in one synced
//! batch (`commit`). The same `apply_*` functions rebuild the model from the relay log on start
//! (`replay`) and after a failed write (`rebuild`), so the engine never holds what its evidence
//! does not.

use cairn_vault::Vault;
use cairn_verifier::campaign::{Action, CampaignEvent, DeviceEvent, DeviceState};
use cairn_verifier::statement::{Purpose, Statement};
use cairn_verifier::types::{Id, Name, UnixTime};

use super::core::{ACTOR_DEVICE, ACTOR_RULE, Engine, Outgoing};
use super::error::{Error, Result};

fn id<'a>(field: &'static str, s: &'a str) -> Result<Id<'a>> {
    Id::new(s).ok_or_else(|| Error::InvalidField {
        field,
        value: s.to_owned(),
    })
}

/// Makes `text` a valid `name` (formats.md §4.11 key 10): control characters become spaces, at
/// most 128 bytes.
pub(super) fn cause(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > 128 {
        let mut end = 125;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    let t = s.trim();
    if t.is_empty() { "-".into() } else { t.into() }
}

/// A device event to stage: the device's new state, by whom, why.
pub(super) struct Change<'a> {
    pub(super) state: DeviceState,
    pub(super) purpose: Purpose,
    pub(super) attempt: u64,
    pub(super) actor: &'a str,
    pub(super) why: &'a str,
}

impl Engine {
    /// Rebuilds every campaign's state from the relay log.
    pub(super) fn replay(&mut self) -> Result<()> {
        let size = self.log.vault().size();
        for index in 0..size {
            let entry = self
                .log
                .vault()
                .entry(index)
                .map_err(|e| Error::Log(e.into()))?;
            match Statement::decode(&entry) {
                Ok(Statement::DeviceEvent(e)) => self.apply_device(&e),
                Ok(Statement::CampaignEvent(e)) => self.apply_campaign(&e, index),
                Ok(other) => {
                    return Err(Error::CorruptLog {
                        index,
                        what: format!("a kind {} entry, not a relay event", other.kind().0),
                    });
                }
                Err(e) => {
                    return Err(Error::CorruptLog {
                        index,
                        what: format!("does not decode: {e}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Events staged and not committed yet.
    pub fn uncommitted(&self) -> usize {
        self.staged.len()
    }

    /// After a step failed part way: drops what it staged and rebuilds the state from the log,
    /// so the engine never holds what its evidence does not.
    pub fn recover(&mut self, mirror: &Vault) -> Result<()> {
        self.rebuild(mirror)
    }

    fn rebuild(&mut self, mirror: &Vault) -> Result<()> {
        self.staged.clear();
        self.campaigns.clear();
        self.approvals.clear();
        self.recorded.clear();
        self.queue.clear();
        self.mirror_seen = 0;
        self.scan_mirror(mirror)?;
        self.replay()?;
        self.requeue(mirror)
    }

    /// Writes the events of this step to the relay log (one synced batch, one checkpoint), then
    /// hands the queued deliveries that the rate allows over for publishing. If the write fails,
    /// the engine's state is rebuilt from the log, so it never runs ahead of its evidence.
    pub fn commit(
        &mut self,
        mirror: &Vault,
        elapsed: std::time::Duration,
        can_publish: bool,
    ) -> Result<Vec<Outgoing>> {
        if !self.staged.is_empty() {
            let staged = std::mem::take(&mut self.staged);
            if let Err(e) = self.log.append(&staged) {
                self.rebuild(mirror)?;
                return Err(e.into());
            }
        }
        Ok(self.hand_out(elapsed, can_publish))
    }

    // ---- events: every change goes through one of these two, live and on replay ----

    #[expect(
        clippy::many_single_char_names,
        reason = "merge of issue 16 and 21 work: to rename"
    )]
    pub(super) fn apply_device(&mut self, e: &DeviceEvent<'_>) {
        let Some(c) = self.campaigns.get_mut(e.campaign.as_str()) else {
            return;
        };
        let Some(&i) = c.by_id.get(e.device_id.as_str()) else {
            return;
        };
        let purpose = c.purpose_of(e.release_id.as_str());
        let Some(d) = c.devices.get_mut(i) else {
            return;
        };
        let (stage, from) = (d.stage, d.state);
        let was_troubled = d.troubled();
        if e.actor.as_str() == ACTOR_DEVICE {
            // The replay protection survives a restart: it is rebuilt from the log.
            d.last_sequence = Some(e.report);
        }
        d.state = e.state;
        d.attempt = e.attempt;
        d.purpose = purpose.unwrap_or(Purpose::Update);
        let update = d.purpose == Purpose::Update;
        if e.state == DeviceState::Failed {
            d.failures += 1;
            d.failed_at = e.at.0;
            let t = super::controls::failure_type(e.actor.as_str(), e.cause.as_str());
            d.last_failure = Some(t);
            if let Some(n) = d.failed_by.get_mut(super::controls::slot(t)) {
                *n += 1;
            }
            if update {
                let bit = 1u8 << t.code();
                if d.failed_types & bit == 0 {
                    if d.failed_types == 0 {
                        c.executed.any += 1;
                    }
                    d.failed_types |= bit;
                    if let Some(n) = c.executed.failed.get_mut(super::controls::slot(t)) {
                        *n += 1;
                    }
                }
            }
        }
        if e.state == DeviceState::Pending {
            d.pending_at = e.at.0;
        }
        if e.state == DeviceState::Delivered {
            d.delivered_at = e.at.0;
            if update {
                c.rollout.notified += 1;
            }
        }
        if e.state == DeviceState::Installed && update {
            c.rollout.succeeded += 1;
        }
        if update && matches!(e.state, DeviceState::Installed | DeviceState::Failed) && !d.executed
        {
            d.executed = true;
            c.executed.things += 1;
        }
        let troubled = d.troubled();
        if e.state == DeviceState::Failed {
            c.failed.insert(i);
        } else {
            c.failed.remove(&i);
        }
        c.count_move(stage, from, e.state);
        if let Some(t) = c.troubled.get_mut(stage) {
            match (was_troubled, troubled) {
                (false, true) => *t += 1,
                (true, false) => *t = t.saturating_sub(1),
                _ => {}
            }
        }
        if !matches!(
            e.state,
            DeviceState::Eligible | DeviceState::Pending | DeviceState::Delivered
        ) {
            c.note(
                e.at.0,
                format!(
                    "{} {} ({}, attempt {}) by {}: {}",
                    e.device_id,
                    e.state.name(),
                    e.release_id,
                    e.attempt,
                    e.actor,
                    e.cause
                ),
            );
        }
        c.sample(e.at.0);
    }

    pub(super) fn apply_campaign(&mut self, e: &CampaignEvent<'_>, index: u64) {
        let Some(c) = self.campaigns.get_mut(e.campaign.as_str()) else {
            return;
        };
        let stage = usize::try_from(e.stage).unwrap_or(usize::MAX);
        match e.action {
            Action::Started => c.started = Some(e.at.0),
            Action::StageOpened => {
                c.stage = stage;
                c.stage_opened_at = e.at.0;
                c.stage_times.push((stage, e.at.0));
            }
            Action::StageSucceeded => {
                if let Some(s) = c.succeeded.get_mut(stage) {
                    *s = true;
                }
            }
            Action::Paused => {
                c.paused = Some(e.actor.as_str() == ACTOR_RULE);
                c.paused_entry = index;
            }
            Action::Resumed => {
                c.paused = None;
                c.executed_at_resume = c.executed;
                c.resumed_with = (c.stage, c.troubled.get(c.stage).copied().unwrap_or(0));
            }
            Action::ApprovalApplied => {
                c.approvals_applied.insert(e.devices);
            }
            Action::Completed => c.completed = true,
            Action::RateIncreased => {
                c.rollout.rate = Some(e.devices);
                c.rollout.increases += 1;
                c.rollout.baseline = match c
                    .policy
                    .jobs
                    .and_then(|j| j.exponential_rate)
                    .map(|r| r.increase)
                {
                    Some(cairn_verifier::rollout::jobs::RateIncrease::Succeeded(_)) => {
                        c.rollout.succeeded
                    }
                    _ => c.rollout.notified,
                };
            }
            Action::RollbackStarted | Action::Quarantined => {}
        }
        c.note(
            e.at.0,
            format!(
                "campaign {} (stage {}, {} devices) by {}: {}",
                e.action.name(),
                e.stage,
                e.devices,
                e.actor,
                e.cause
            ),
        );
        c.sample(e.at.0);
    }

    /// Stages a device event and applies it.
    pub(super) fn device_event(
        &mut self,
        campaign: &str,
        device: usize,
        change: &Change<'_>,
        now: u64,
    ) -> Result<()> {
        let c = self.campaign(campaign)?;
        let d = c.devices.get(device).ok_or_else(|| Error::UnknownDevice {
            campaign: campaign.to_owned(),
            device: format!("#{device}"),
        })?;
        let why = cause(change.why);
        let event = DeviceEvent {
            campaign: id("campaign", &c.id)?,
            device_id: id("device", &d.id)?,
            release_id: id("release", c.release(change.purpose))?,
            state: change.state,
            stage: d.stage as u64,
            attempt: change.attempt,
            at: UnixTime(now),
            actor: id("actor", change.actor)?,
            cause: Name::new(&why).ok_or_else(|| Error::InvalidField {
                field: "cause",
                value: why.clone(),
            })?,
            // `report` set the device's sequence before it records what the report said.
            report: if change.actor == ACTOR_DEVICE {
                d.last_sequence.unwrap_or(0)
            } else {
                0
            },
        };
        let bytes = event.to_cbor();
        let e = DeviceEvent::decode(&bytes).map_err(|e| Error::InvalidField {
            field: "device event",
            value: e.to_string(),
        })?;
        self.apply_device(&e);
        self.staged.push(bytes);
        Ok(())
    }

    /// Stages a campaign event and applies it.
    #[expect(clippy::too_many_arguments, reason = "one event's fields")]
    pub(super) fn campaign_event(
        &mut self,
        campaign: &str,
        action: Action,
        stage: usize,
        devices: u64,
        actor: &str,
        why: &str,
        now: u64,
    ) -> Result<()> {
        let why = cause(why);
        let event = CampaignEvent {
            campaign: id("campaign", campaign)?,
            action,
            stage: stage as u64,
            devices,
            at: UnixTime(now),
            actor: id("actor", actor)?,
            cause: Name::new(&why).ok_or_else(|| Error::InvalidField {
                field: "cause",
                value: why.clone(),
            })?,
        };
        let bytes = event.to_cbor();
        // Its index once committed: the step's events are appended in order.
        let index = self.log.vault().size() + self.staged.len() as u64;
        let e = CampaignEvent::decode(&bytes).map_err(|e| Error::InvalidField {
            field: "campaign event",
            value: e.to_string(),
        })?;
        self.apply_campaign(&e, index);
        self.staged.push(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_valid_names() {
        assert_eq!(cause("  a\nb  "), "a b");
        assert_eq!(cause(""), "-");
        let long = "é".repeat(100);
        let c = cause(&long);
        assert!(c.len() <= 128 && Name::new(&c).is_some(), "{c}");
    }
}
