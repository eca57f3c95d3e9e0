//! The campaign model: what the engine holds of each campaign and each device, rebuilt from the
//! relay log's events (`record.rs`) and read by the API and the dashboard through `view.rs`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::{Index, IndexMut, Range};
use std::sync::Arc;

use cairn_verifier::campaign::DeviceState;
use cairn_verifier::rollout::Gate;
use cairn_verifier::rollout::jobs::{FailureType, JobsControls};
use cairn_verifier::statement::Purpose;
use cairn_verifier::types::Hash;

use super::controls::{Executed, Rollout};
use super::error::Error;

/// How many recent events a campaign keeps for the dashboard.
const RECENT: usize = 40;
/// Most points a campaign's state history keeps (older ones are thinned out).
const HISTORY: usize = 2000;

/// Devices per state (design.md, "Device update states").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// `pending`.
    pub pending: u64,
    /// `eligible`.
    pub eligible: u64,
    /// `delivered`.
    pub delivered: u64,
    /// `installed`.
    pub installed: u64,
    /// `failed`.
    pub failed: u64,
    /// `paused`.
    pub paused: u64,
    /// `rolled-back`.
    pub rolled_back: u64,
    /// `rejected`.
    pub rejected: u64,
    /// `quarantined`.
    pub quarantined: u64,
}

impl StateCounts {
    /// Each state with its count, in code order.
    pub fn iter(&self) -> impl Iterator<Item = (DeviceState, u64)> + '_ {
        DeviceState::ALL.iter().map(|&s| (s, self[s]))
    }

    /// A device moved from one state to another.
    fn moved(&mut self, from: DeviceState, to: DeviceState) {
        self[from] = self[from].saturating_sub(1);
        self[to] += 1;
    }

    /// The largest count.
    pub fn max(&self) -> u64 {
        self.iter().map(|(_, n)| n).max().unwrap_or(0)
    }
}

impl std::ops::AddAssign for StateCounts {
    fn add_assign(&mut self, other: Self) {
        for (state, n) in other.iter() {
            self[state] += n;
        }
    }
}

impl Index<DeviceState> for StateCounts {
    type Output = u64;

    fn index(&self, state: DeviceState) -> &u64 {
        match state {
            DeviceState::Pending => &self.pending,
            DeviceState::Eligible => &self.eligible,
            DeviceState::Delivered => &self.delivered,
            DeviceState::Installed => &self.installed,
            DeviceState::Failed => &self.failed,
            DeviceState::Paused => &self.paused,
            DeviceState::RolledBack => &self.rolled_back,
            DeviceState::Rejected => &self.rejected,
            DeviceState::Quarantined => &self.quarantined,
        }
    }
}

impl IndexMut<DeviceState> for StateCounts {
    fn index_mut(&mut self, state: DeviceState) -> &mut u64 {
        match state {
            DeviceState::Pending => &mut self.pending,
            DeviceState::Eligible => &mut self.eligible,
            DeviceState::Delivered => &mut self.delivered,
            DeviceState::Installed => &mut self.installed,
            DeviceState::Failed => &mut self.failed,
            DeviceState::Paused => &mut self.paused,
            DeviceState::RolledBack => &mut self.rolled_back,
            DeviceState::Rejected => &mut self.rejected,
            DeviceState::Quarantined => &mut self.quarantined,
        }
    }
}

/// Where a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Delivering the open stage.
    Running,
    /// The open stage met its success threshold; the next one opens on a signed approval.
    WaitingApproval,
    /// Paused: by the failure threshold (a signed approval resumes it) or by an operator.
    Paused {
        /// Whether the failure threshold paused it.
        by_rule: bool,
    },
    /// Every stage succeeded.
    Completed,
}

impl Status {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::WaitingApproval => "waiting-approval",
            Status::Paused { by_rule: true } => "paused-by-rule",
            Status::Paused { by_rule: false } => "paused-by-operator",
            Status::Completed => "completed",
        }
    }
}

/// One stage of a signed plan.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Name.
    pub name: String,
    /// Devices offered by the end of this stage (cumulative).
    pub end: u64,
    /// Soak, seconds.
    pub soak_secs: u64,
    /// Success threshold, per mille.
    pub success_permille: u16,
    /// Failure threshold, per mille.
    pub failure_permille: u16,
    /// How the next stage opens.
    pub gate: Gate,
}

impl StagePlan {
    /// How the next stage opens: `approval` or `automatic`.
    pub fn gate_name(&self) -> &'static str {
        if self.gate == Gate::Approval {
            "approval"
        } else {
            "automatic"
        }
    }
}

/// One device of a campaign: where it stands, its two manifests in the mirror, and the
/// deliveries built from them (kept once built).
#[derive(Debug, Clone)]
pub struct Device {
    pub(super) id: String,
    pub(super) stage: usize,
    pub(super) state: DeviceState,
    pub(super) attempt: u64,
    pub(super) failures: u64,
    pub(super) failed_at: u64,
    /// Which release its latest delivery is of: the campaign's, or the rollback target.
    pub(super) purpose: Purpose,
    pub(super) update: Track,
    pub(super) rollback: Track,
    pub(super) last_sequence: Option<u64>,
    /// When its latest delivery was acknowledged or its execution started (the in-progress
    /// timeout counts from there).
    pub(super) delivered_at: u64,
    /// When its latest delivery was queued (its latest `pending` event): an AWS IoT Jobs
    /// execution's `queuedAt`, the same before and after a restart.
    pub(super) pending_at: u64,
    /// Its failures per type (`FAILED`, `REJECTED`, `TIMED_OUT`): the retry criteria's count.
    pub(super) failed_by: [u64; 3],
    /// The type of its latest failure.
    pub(super) last_failure: Option<FailureType>,
    /// Whether its update delivery reached an end at least once (an executed thing).
    pub(super) executed: bool,
    /// The failure types it had on its update delivery, bit `code` per type.
    pub(super) failed_types: u8,
}

/// One of a device's two manifests: its index in the mirror and its delivery, once built.
#[derive(Debug, Clone)]
pub(super) struct Track {
    pub(super) manifest: u64,
    pub(super) delivery: Option<Arc<[u8]>>,
}

impl Device {
    pub(super) fn new(id: String, stage: usize, update: u64, rollback: u64) -> Self {
        Self {
            id,
            stage,
            state: DeviceState::Eligible,
            attempt: 0,
            failures: 0,
            failed_at: 0,
            purpose: Purpose::Update,
            update: Track {
                manifest: update,
                delivery: None,
            },
            rollback: Track {
                manifest: rollback,
                delivery: None,
            },
            last_sequence: None,
            delivered_at: 0,
            pending_at: 0,
            failed_by: [0; 3],
            last_failure: None,
            executed: false,
            failed_types: 0,
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its stage (counted from 0).
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// Its state.
    pub fn state(&self) -> DeviceState {
        self.state
    }

    /// The attempt of its latest delivery (1 for the first).
    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    /// Failures it reported.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Whether its latest delivery is of the rollback target.
    pub fn rolling_back(&self) -> bool {
        self.purpose == Purpose::Rollback
    }

    /// The mirror index of its manifest for `purpose`.
    pub fn manifest(&self, purpose: Purpose) -> u64 {
        self.track(purpose).manifest
    }

    /// Its delivery for `purpose`, if built.
    pub fn delivery(&self, purpose: Purpose) -> Option<&Arc<[u8]>> {
        self.track(purpose).delivery.as_ref()
    }

    pub(super) fn track(&self, purpose: Purpose) -> &Track {
        if purpose == Purpose::Rollback {
            &self.rollback
        } else {
            &self.update
        }
    }

    pub(super) fn track_mut(&mut self, purpose: Purpose) -> &mut Track {
        if purpose == Purpose::Rollback {
            &mut self.rollback
        } else {
            &mut self.update
        }
    }

    /// Failed at least once and not installed since (quarantined or rolled back included).
    pub(super) fn troubled(&self) -> bool {
        self.failures > 0 && self.state != DeviceState::Installed
    }
}

/// Evidence the relay checked before taking a plan up (the dashboard's gates).
#[derive(Debug, Clone)]
pub struct PlanEvidence {
    /// Index of the release entry in the mirror.
    pub release_index: u64,
    /// Index of the rollback target's entry.
    pub rollback_index: u64,
    /// Index of the plan entry.
    pub plan_index: u64,
    /// Decision entries whose leaf hashes the plan's digest covers.
    pub decisions: Range<u64>,
    /// Update manifests found (one per eligible device).
    pub update_manifests: u64,
    /// Rollback manifests found.
    pub rollback_manifests: u64,
}

/// What the signed plan says besides its stages.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Install attempts per device.
    pub max_attempts: u64,
    /// First retry delay, seconds.
    pub backoff_secs: u64,
    /// Failures that quarantine a device.
    pub quarantine_after_failures: u64,
    /// Whether a verification failure quarantines at once.
    pub quarantine_on_verification_failure: bool,
    /// The AWS IoT Jobs rollout controls (plan key 17), if the plan has them.
    pub jobs: Option<JobsControls>,
}

/// A campaign the relay runs.
#[derive(Debug)]
pub struct Campaign {
    /// Campaign id.
    pub id: String,
    /// The release rolled out.
    pub release_id: String,
    /// Its pre-signed rollback target.
    pub rollback_id: String,
    /// SHA-256 of the plan's COSE_Sign1.
    pub plan_digest: Hash,
    /// The stages.
    pub stages: Vec<StagePlan>,
    /// Retries and quarantine rules.
    pub policy: Policy,
    /// Rejected devices (their decisions are in the signer's log).
    pub rejected: u64,
    /// What was checked.
    pub evidence: PlanEvidence,
    pub(super) devices: Vec<Device>,
    pub(super) by_id: HashMap<String, usize>,
    /// Per stage, devices per state.
    pub(super) counts: Vec<StateCounts>,
    /// Per stage, devices that failed and have not installed since: what the failure threshold
    /// counts (a device being retried still counts until it installs).
    pub(super) troubled: Vec<u64>,
    pub(super) started: Option<u64>,
    pub(super) stage: usize,
    pub(super) stage_opened_at: u64,
    pub(super) succeeded: Vec<bool>,
    pub(super) paused: Option<bool>,
    /// Relay log index of the event that paused the campaign.
    pub(super) paused_entry: u64,
    pub(super) completed: bool,
    pub(super) approvals_applied: BTreeSet<u64>,
    pub(super) failed: BTreeSet<usize>,
    /// Failures of the open stage already answered by a resume: `(stage, failed)`. The failure
    /// threshold then applies to the failures after it, or a resume would pause again at once.
    pub(super) resumed_with: (usize, u64),
    /// `(time, devices per state)` after each change, for the dashboard's plot.
    pub(super) history: Vec<(u64, StateCounts)>,
    /// The latest events, newest last: `(time, text)`.
    pub(super) recent: VecDeque<(u64, String)>,
    /// Status reports taken.
    pub(super) reports: u64,
    /// Verification failures reported.
    pub(super) verification_failures: u64,
    /// Stage openings `(stage, time)`, for the dashboard.
    pub(super) stage_times: Vec<(usize, u64)>,
    /// The rollout rate and its ramp (`controls.rs`).
    pub(super) rollout: Rollout,
    /// What the abort criteria count.
    pub(super) executed: Executed,
    /// `executed` when the campaign last resumed: the abort criteria count from there.
    pub(super) executed_at_resume: Executed,
}

impl Campaign {
    /// Where the campaign stands.
    pub fn status(&self) -> Status {
        if self.completed {
            Status::Completed
        } else if let Some(by_rule) = self.paused {
            Status::Paused { by_rule }
        } else if self.waiting() {
            Status::WaitingApproval
        } else {
            Status::Running
        }
    }

    fn waiting(&self) -> bool {
        self.stage_succeeded(self.stage)
            && self.stage + 1 < self.stages.len()
            && self.stages.get(self.stage).map(|s| s.gate) == Some(Gate::Approval)
    }

    /// The open stage (counted from 0).
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// When the campaign was taken up.
    pub fn started_at(&self) -> Option<u64> {
        self.started
    }

    /// Devices per state over the whole campaign, rejected included.
    pub fn totals(&self) -> StateCounts {
        let mut t = StateCounts::default();
        for c in &self.counts {
            t += *c;
        }
        t.rejected = self.rejected;
        t
    }

    /// Devices per state in one stage.
    pub fn stage_counts(&self, stage: usize) -> StateCounts {
        self.counts.get(stage).copied().unwrap_or_default()
    }

    /// Devices in a stage.
    pub fn stage_size(&self, stage: usize) -> u64 {
        let end = self.stages.get(stage).map_or(0, |s| s.end);
        let start = stage
            .checked_sub(1)
            .and_then(|p| self.stages.get(p))
            .map_or(0, |s| s.end);
        end - start
    }

    /// Whether a stage met its success threshold after its soak.
    pub fn stage_succeeded(&self, stage: usize) -> bool {
        self.succeeded.get(stage).copied().unwrap_or(false)
    }

    /// The rollout rate and its ramp.
    pub fn rollout(&self) -> &Rollout {
        &self.rollout
    }

    /// Executed and failed things, as the abort criteria count them (since the last resume).
    pub fn executed(&self) -> Executed {
        self.executed.since(&self.executed_at_resume)
    }

    /// When each stage opened: `(stage, time)`.
    pub fn stage_times(&self) -> &[(usize, u64)] {
        &self.stage_times
    }

    /// Every device, in stage order.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter()
    }

    /// One device.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.get(*self.by_id.get(id)?)
    }

    /// The release of a delivery for `purpose`.
    pub fn release(&self, purpose: Purpose) -> &str {
        if purpose == Purpose::Rollback {
            &self.rollback_id
        } else {
            &self.release_id
        }
    }

    /// The purpose of a delivery of `release`, if it is one of the campaign's two.
    pub(super) fn purpose_of(&self, release: &str) -> Option<Purpose> {
        if release == self.release_id {
            Some(Purpose::Update)
        } else if release == self.rollback_id {
            Some(Purpose::Rollback)
        } else {
            None
        }
    }

    /// The position of a device, or `UnknownDevice`.
    pub(super) fn position(&self, device: &str) -> Result<usize, Error> {
        self.by_id
            .get(device)
            .copied()
            .ok_or_else(|| Error::UnknownDevice {
                campaign: self.id.clone(),
                device: device.to_owned(),
            })
    }

    /// Devices of a stage that are in `state`.
    pub(super) fn in_stage(&self, stage: usize, wanted: DeviceState) -> Vec<usize> {
        self.devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.stage == stage && d.state == wanted)
            .map(|(i, _)| i)
            .collect()
    }

    /// Devices a pause holds back.
    pub(super) fn held(&self) -> Vec<usize> {
        self.devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.state == DeviceState::Paused)
            .map(|(i, _)| i)
            .collect()
    }

    /// A device changed state: the counts and the failure threshold's count follow.
    pub(super) fn count_move(&mut self, stage: usize, from: DeviceState, to: DeviceState) {
        if let Some(counts) = self.counts.get_mut(stage) {
            counts.moved(from, to);
        }
    }

    pub(super) fn note(&mut self, at: u64, text: String) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((at, text));
    }

    /// Records the totals at `at` for the plot.
    pub(super) fn sample(&mut self, at: u64) {
        let totals = self.totals();
        match self.history.last_mut() {
            Some((t, counts)) if *t == at => *counts = totals,
            _ => self.history.push((at, totals)),
        }
        if self.history.len() > HISTORY {
            // Keep the first and last points, drop every other one in between.
            let last = self.history.len() - 1;
            let mut i = 0usize;
            self.history.retain(|_| {
                i += 1;
                i == 1 || i - 1 == last || i.is_multiple_of(2)
            });
        }
    }
}

/// Which devices an operator's rollback covers.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These devices.
    Devices(Vec<String>),
    /// Every device that failed.
    Failed,
    /// Every device of the stage that was delivered or installed the release.
    Stage(usize),
}

/// Counters of what the engine took in.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Status reports applied.
    pub reports: u64,
    /// Status messages that did not decode.
    pub malformed: u64,
    /// Status reports refused: unknown device or campaign, wrong release, nothing outstanding.
    pub refused: u64,
    /// Status reports whose sequence was not above the device's last one.
    pub replayed: u64,
    /// Gate approvals refused (bad signature, another plan).
    pub approvals_refused: u64,
    /// Deliveries handed to the broker.
    pub handed: u64,
}
