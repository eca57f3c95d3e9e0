//! What the API and the dashboard read: owned snapshots of the engine (`View`, `CampaignView`),
//! taken under the engine's lock and rendered after it is released, and one device's history read
//! back from the relay log (`DeviceHistory`).

use cairn_vault::Query;
use cairn_verifier::campaign::DeviceState;
use cairn_verifier::delivery::Delivery;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::statement::{Purpose, Statement};
use cairn_verifier::types::Hash;
use serde_json::json;

use super::core::Engine;
use super::error::{Error, Result};
use super::model::{Campaign, Device, PlanEvidence, Policy, StagePlan, StateCounts, Status};

/// The engine at one moment.
#[derive(Debug, Clone)]
pub struct View {
    /// The relay log's origin.
    pub log_origin: String,
    /// Entries in the relay log.
    pub log_size: u64,
    /// Every campaign.
    pub campaigns: Vec<CampaignView>,
    /// Problems found in the mirror.
    pub problems: Vec<String>,
}

/// One stage as it stands.
#[derive(Debug, Clone)]
pub struct StageView {
    /// What the plan says of it.
    pub plan: StagePlan,
    /// Devices in it.
    pub devices: u64,
    /// Its devices per state.
    pub counts: StateCounts,
    /// When it opened.
    pub opened_at: Option<u64>,
    /// Whether it met its success threshold.
    pub succeeded: bool,
}

/// One device as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Its id.
    pub id: String,
    /// Its stage.
    pub stage: usize,
    /// Its state.
    pub state: DeviceState,
    /// The attempt of its latest delivery.
    pub attempt: u64,
    /// Failures it reported.
    pub failures: u64,
    /// Whether its latest delivery is of the rollback target.
    pub rolling_back: bool,
}

impl From<&Device> for DeviceEntry {
    fn from(d: &Device) -> Self {
        Self {
            id: d.id().to_owned(),
            stage: d.stage(),
            state: d.state(),
            attempt: d.attempt(),
            failures: d.failures(),
            rolling_back: d.rolling_back(),
        }
    }
}

/// Which devices a view lists: those in `state` (if given) of `stage` (if given), at most
/// `limit` of them (a view of a million-device campaign need not copy a million rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Only devices in this state.
    pub state: Option<DeviceState>,
    /// Only devices of this stage.
    pub stage: Option<usize>,
    /// At most this many (0: none).
    pub limit: usize,
}

impl DeviceQuery {
    /// Every device.
    pub const ALL: Self = Self {
        state: None,
        stage: None,
        limit: usize::MAX,
    };

    fn matches(&self, d: &Device) -> bool {
        self.state.is_none_or(|s| d.state() == s) && self.stage.is_none_or(|s| d.stage() == s)
    }
}

/// One campaign as it stands.
#[derive(Debug, Clone)]
pub struct CampaignView {
    /// Campaign id.
    pub id: String,
    /// The release rolled out.
    pub release_id: String,
    /// Its pre-signed rollback target.
    pub rollback_id: String,
    /// SHA-256 of the plan's COSE_Sign1.
    pub plan_digest: Hash,
    /// Where it stands.
    pub status: Status,
    /// The open stage.
    pub stage: usize,
    /// When it was taken up.
    pub started_at: Option<u64>,
    /// Its stages.
    pub stages: Vec<StageView>,
    /// Devices per state, rejected included.
    pub totals: StateCounts,
    /// Eligible devices.
    pub eligible: u64,
    /// Retries and quarantine rules.
    pub policy: Policy,
    /// What the relay checked before taking the plan up.
    pub evidence: PlanEvidence,
    /// Status reports taken.
    pub reports: u64,
    /// Verification failures reported.
    pub verification_failures: u64,
    /// The plan's rollout rate now, things a minute (`None`: the plan sets none).
    pub rate_per_minute: Option<u64>,
    /// Times the plan's exponential ramp stepped up.
    pub rate_increases: u64,
    /// Executed and failed things as the abort criteria count them, since the last resume.
    pub executed: crate::engine::Executed,
    /// `(time, devices per state)` after each change.
    pub history: Vec<(u64, StateCounts)>,
    /// The latest events, newest first: `(time, text)`.
    pub recent: Vec<(u64, String)>,
    /// The devices the view's `DeviceQuery` selects, in stage order, at most its limit.
    pub devices: Vec<DeviceEntry>,
    /// How many devices the query matches (the limit aside).
    pub matching: u64,
}

impl CampaignView {
    fn of(c: &Campaign, query: &DeviceQuery) -> Self {
        let mut matching = 0u64;
        let mut devices = Vec::with_capacity(query.limit.min(c.devices.len()));
        for d in c.devices.iter().filter(|d| query.matches(d)) {
            matching += 1;
            if devices.len() < query.limit {
                devices.push(DeviceEntry::from(d));
            }
        }
        Self {
            id: c.id.clone(),
            release_id: c.release_id.clone(),
            rollback_id: c.rollback_id.clone(),
            plan_digest: c.plan_digest,
            status: c.status(),
            stage: c.stage(),
            started_at: c.started_at(),
            stages: c
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| StageView {
                    plan: s.clone(),
                    devices: c.stage_size(i),
                    counts: c.stage_counts(i),
                    opened_at: c
                        .stage_times
                        .iter()
                        .find(|(st, _)| *st == i)
                        .map(|(_, t)| *t),
                    succeeded: c.stage_succeeded(i),
                })
                .collect(),
            totals: c.totals(),
            eligible: c.devices.len() as u64,
            policy: c.policy.clone(),
            evidence: c.evidence.clone(),
            reports: c.reports,
            verification_failures: c.verification_failures,
            rate_per_minute: c.rollout().rate,
            rate_increases: c.rollout().increases,
            executed: c.executed(),
            history: c.history.clone(),
            recent: c.recent.iter().rev().cloned().collect(),
            devices,
            matching,
        }
    }

    /// The campaign as JSON for the API (`GET /api/v1/campaigns/<c>`).
    pub fn to_json(&self) -> serde_json::Value {
        let per_state: serde_json::Map<String, serde_json::Value> = self
            .totals
            .iter()
            .map(|(s, n)| (s.name().to_owned(), json!(n)))
            .collect();
        let stages: Vec<serde_json::Value> = self
            .stages
            .iter()
            .map(|s| {
                json!({
                    "name": s.plan.name,
                    "devices": s.devices,
                    "cumulative": s.plan.end,
                    "soak_secs": s.plan.soak_secs,
                    "success_permille": s.plan.success_permille,
                    "failure_permille": s.plan.failure_permille,
                    "gate": s.plan.gate_name(),
                    "opened_at": s.opened_at,
                    "succeeded": s.succeeded,
                    "installed": s.counts.installed,
                    "failed": s.counts.failed,
                    "quarantined": s.counts.quarantined,
                    "rolled_back": s.counts.rolled_back,
                })
            })
            .collect();
        let ev = &self.evidence;
        json!({
            "campaign": self.id,
            "release": self.release_id,
            "rollback_release": self.rollback_id,
            "status": self.status.name(),
            "stage": self.stage,
            "eligible": self.eligible,
            "rejected": self.totals.rejected,
            "states": per_state,
            "stages": stages,
            "max_attempts": self.policy.max_attempts,
            "backoff_secs": self.policy.backoff_secs,
            "quarantine_after_failures": self.policy.quarantine_after_failures,
            "quarantine_on_verification_failure": self.policy.quarantine_on_verification_failure,
            "reports": self.reports,
            "verification_failures": self.verification_failures,
            "jobs_controls": self.policy.jobs.map(|j| j.to_string()),
            "rate_per_minute": self.rate_per_minute,
            "rate_increases": self.rate_increases,
            "executed_things": self.executed.things,
            "failed_things": {
                "FAILED": self.executed.failed[0],
                "REJECTED": self.executed.failed[1],
                "TIMED_OUT": self.executed.failed[2],
                "ALL": self.executed.any,
            },
            "evidence": {
                "plan_index": ev.plan_index,
                "release_index": ev.release_index,
                "rollback_index": ev.rollback_index,
                "decisions": [ev.decisions.start, ev.decisions.end],
                "update_manifests": ev.update_manifests,
                "rollback_manifests": ev.rollback_manifests,
                "plan_digest": hex::encode(self.plan_digest),
            },
            "recent": self.recent.iter().map(|(t, s)| json!({"at": t, "event": s})).collect::<Vec<_>>(),
        })
    }
}

/// One device event of the relay log, with its index there.
#[derive(Debug, Clone)]
pub struct DeviceLogEntry {
    /// Its index in the relay log.
    pub index: u64,
    /// When.
    pub at: u64,
    /// The state it put the device in.
    pub state: DeviceState,
    /// The delivery's release.
    pub release: String,
    /// The attempt.
    pub attempt: u64,
    /// Who: `rule`, `device`, `broker`, `custodians`, `operator:<name>`.
    pub actor: String,
    /// Why, in the actor's words.
    pub cause: String,
    /// The sequence number of the status report it records (0 when not a report).
    pub report: u64,
}

/// A delivery the relay built for a device.
#[derive(Debug, Clone)]
pub struct DeliveryInfo {
    /// The release it delivers.
    pub release: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// The manifest's index in the mirror.
    pub leaf_index: u64,
    /// The size of the checkpoint it carries.
    pub checkpoint_size: u64,
}

/// One device's history: its state now, every event of it in the relay log, its manifests in
/// the mirror, and its current delivery.
#[derive(Debug, Clone)]
pub struct DeviceHistory {
    /// The campaign.
    pub campaign: String,
    /// The device as it stands.
    pub device: DeviceEntry,
    /// Its update manifest's index in the mirror.
    pub update_manifest: u64,
    /// Its rollback manifest's index in the mirror.
    pub rollback_manifest: u64,
    /// Its events in the relay log, oldest first.
    pub events: Vec<DeviceLogEntry>,
    /// Its latest delivery, if one was built.
    pub delivery: Option<DeliveryInfo>,
}

impl Engine {
    /// A snapshot of every campaign, with the devices `query` selects.
    pub fn view(&self, query: &DeviceQuery) -> View {
        View {
            log_origin: self.log.origin().to_owned(),
            log_size: self.log.vault().size(),
            campaigns: self
                .campaigns
                .values()
                .map(|c| CampaignView::of(c, query))
                .collect(),
            problems: self.problems.clone(),
        }
    }

    /// A snapshot of one campaign, with the devices `query` selects.
    pub fn campaign_view(&self, campaign: &str, query: &DeviceQuery) -> Result<CampaignView> {
        self.campaign(campaign).map(|c| CampaignView::of(c, query))
    }

    /// A campaign as JSON for the API and the dashboard.
    pub fn summary(&self, campaign: &str) -> Option<serde_json::Value> {
        self.campaign_view(campaign, &DeviceQuery::default())
            .ok()
            .map(|v| v.to_json())
    }

    /// One device's history, read back from the relay log.
    pub fn device_history(&self, campaign: &str, device: &str) -> Result<DeviceHistory> {
        let c = self.campaign(campaign)?;
        let d = c.device(device).ok_or_else(|| Error::UnknownDevice {
            campaign: campaign.to_owned(),
            device: device.to_owned(),
        })?;
        let log = self.log.vault();
        let mut events = Vec::new();
        for index in log
            .query_indices(Query::Device(device))
            .map_err(|e| Error::Log(e.into()))?
        {
            let entry = log.entry(index).map_err(|e| Error::Log(e.into()))?;
            match Statement::decode(&entry) {
                Ok(Statement::DeviceEvent(e)) if e.campaign.as_str() == campaign => {
                    events.push(DeviceLogEntry {
                        index,
                        at: e.at.0,
                        state: e.state,
                        release: e.release_id.as_str().to_owned(),
                        attempt: e.attempt,
                        actor: e.actor.as_str().to_owned(),
                        cause: e.cause.as_str().to_owned(),
                        report: e.report,
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::CorruptLog {
                        index,
                        what: format!("does not decode: {e}"),
                    });
                }
            }
        }
        let purpose = if d.rolling_back() {
            Purpose::Rollback
        } else {
            Purpose::Update
        };
        let delivery = d.delivery(purpose).and_then(|bytes| {
            let envelope = Delivery::decode(bytes).ok()?;
            Some(DeliveryInfo {
                release: c.release(purpose).to_owned(),
                bytes: bytes.len(),
                leaf_index: envelope.leaf_index.0,
                checkpoint_size: Checkpoint::parse(envelope.checkpoint).ok()?.size.0,
            })
        });
        Ok(DeviceHistory {
            campaign: campaign.to_owned(),
            device: DeviceEntry::from(d),
            update_manifest: d.manifest(Purpose::Update),
            rollback_manifest: d.manifest(Purpose::Rollback),
            events,
            delivery,
        })
    }
}
