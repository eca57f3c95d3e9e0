//! The rollout engine (docs/relay.md, "The rollout engine"): it runs each campaign exactly as its
//! signed plan says, and nothing else. It opens stages, waits out their soak, advances on the
//! success threshold, pauses on the failure threshold, retries failed devices with backoff up to
//! the plan's limit, rolls back to the pre-signed target, quarantines by the plan's rules, and
//! applies gate approvals the custodians signed offline. Operators may pause, resume (a pause of
//! their own), quarantine and roll back through the API.
//!
//! Every change is an event in the relay's own log (formats.md §4.11, §4.12) before it has any
//! effect: the engine's state is a function of those events, which is how a restarted relay gets
//! it back (`Engine::open` replays the log) and how an auditor can check what the relay did.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use cairn_vault::Vault;
use cairn_verifier::campaign::{
    Action, Approval, ApprovalAction, CampaignEvent, DeviceEvent, DeviceState, Outcome,
    StatusReport, stage_order_key,
};
use cairn_verifier::cose::{CoseSign1, ReleaseKey};
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::SignedEntry;
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::rollout::{Gate, RolloutPlan};
use cairn_verifier::statement::{EntryHeader, Kind, Purpose, Statement};
use cairn_verifier::types::{Hash, Id, Name, UnixTime};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::statelog::StateLog;

/// The relay applying the signed plan.
pub const ACTOR_RULE: &str = "rule";
/// A device's own status report.
pub const ACTOR_DEVICE: &str = "device";
/// The broker acknowledging a delivery.
pub const ACTOR_BROKER: &str = "broker";
/// A gate approval signed by the custodians.
pub const ACTOR_CUSTODIANS: &str = "custodians";

/// How many recent events a campaign keeps for the dashboard.
const RECENT: usize = 40;
/// Most points a campaign's state history keeps (older ones are thinned out).
const HISTORY: usize = 2000;

/// A delivery to hand to the broker.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Campaign.
    pub campaign: String,
    /// Device.
    pub device: String,
    /// Release of the delivery (the campaign's or its rollback target).
    pub release: String,
    /// The envelope (formats.md §5).
    pub delivery: Arc<[u8]>,
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

#[derive(Debug, Clone)]
struct Dev {
    id: String,
    stage: usize,
    state: DeviceState,
    attempt: u64,
    failures: u64,
    failed_at: u64,
    rollback: bool,
    update_index: u64,
    rollback_index: u64,
    update_delivery: Option<Arc<[u8]>>,
    rollback_delivery: Option<Arc<[u8]>>,
    last_sequence: Option<u64>,
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
    /// Install attempts per device.
    pub max_attempts: u64,
    /// First retry delay, seconds.
    pub backoff_secs: u64,
    /// Failures that quarantine a device.
    pub quarantine_after_failures: u64,
    /// Whether a verification failure quarantines at once.
    pub quarantine_on_verification_failure: bool,
    /// Rejected devices (their decisions are in the signer's log).
    pub rejected: u64,
    /// What was checked.
    pub evidence: PlanEvidence,
    devices: Vec<Dev>,
    by_id: HashMap<String, usize>,
    /// Per stage, devices per state (indexed by state code).
    counts: Vec<[u64; 10]>,
    /// Per stage, devices that failed and have not installed since: what the failure threshold
    /// counts (a device being retried still counts until it installs).
    troubled: Vec<u64>,
    started: Option<u64>,
    stage: usize,
    stage_opened_at: u64,
    succeeded: Vec<bool>,
    paused: Option<bool>,
    /// Relay log index of the event that paused the campaign.
    paused_entry: u64,
    completed: bool,
    approvals_applied: BTreeSet<u64>,
    failed: BTreeSet<usize>,
    /// Failures of the open stage already answered by a resume: `(stage, failed)`. The failure
    /// threshold then applies to the failures after it, or a resume would pause again at once.
    resumed_with: (usize, u64),
    /// `(time, devices per state)` after each change, for the dashboard's plot.
    pub history: Vec<(u64, [u64; 10])>,
    /// The latest events, newest last: `(time, text)`.
    pub recent: VecDeque<(u64, String)>,
    /// Status reports taken.
    pub reports: u64,
    /// Verification failures reported.
    pub verification_failures: u64,
    /// Stage openings `(stage, time)`, for the dashboard.
    pub stage_times: Vec<(usize, u64)>,
    changed: bool,
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
        self.succeeded.get(self.stage).copied().unwrap_or(false)
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

    /// Devices per state over the whole campaign (indexed by state code), rejected included.
    pub fn totals(&self) -> [u64; 10] {
        let mut t = [0u64; 10];
        for c in &self.counts {
            for (a, b) in t.iter_mut().zip(c) {
                *a += b;
            }
        }
        t[usize::try_from(DeviceState::Rejected.code()).unwrap_or(8)] = self.rejected;
        t
    }

    /// Devices per state in one stage.
    pub fn stage_counts(&self, stage: usize) -> [u64; 10] {
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

    /// Every device: id, stage, state.
    pub fn devices(&self) -> impl Iterator<Item = (&str, usize, DeviceState)> {
        self.devices
            .iter()
            .map(|d| (d.id.as_str(), d.stage, d.state))
    }

    /// One device's state, attempts and failures.
    pub fn device(&self, id: &str) -> Option<(usize, DeviceState, u64, u64)> {
        let d = self.devices.get(*self.by_id.get(id)?)?;
        Some((d.stage, d.state, d.attempt, d.failures))
    }

    fn note(&mut self, at: u64, text: String) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((at, text));
    }
}

impl Dev {
    /// Failed at least once and not installed since (quarantined or rolled back included).
    fn troubled(&self) -> bool {
        self.failures > 0 && self.state != DeviceState::Installed
    }
}

fn idx(state: DeviceState) -> usize {
    usize::try_from(state.code()).unwrap_or(0)
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

#[derive(Debug, Clone)]
struct PendingApproval {
    index: u64,
    campaign: String,
    plan_digest: Hash,
    stage: u64,
    action: ApprovalAction,
}

/// The engine: campaigns, the relay log they are recorded in, and the queue of deliveries.
pub struct Engine {
    log: StateLog,
    release_key: ReleaseKey,
    campaigns: BTreeMap<String, Campaign>,
    approvals: Vec<PendingApproval>,
    /// This relay's checkpoints recorded by custodians in the signer's log (kind 11):
    /// `(mirror index of the record, relay log size it covers)`, oldest first.
    recorded: Vec<(u64, u64)>,
    /// Resume approvals refused because they were signed before the pause was recorded.
    stale: BTreeSet<u64>,
    mirror_seen: u64,
    staged: Vec<Vec<u8>>,
    /// Devices waiting to be handed to the broker, in order.
    queue: VecDeque<(String, usize)>,
    rate: Option<u32>,
    stats: Stats,
    /// Problems found in the mirror (a plan that does not verify): shown, never acted on.
    pub problems: Vec<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("log", &self.log)
            .field("campaigns", &self.campaigns.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn id(s: &str) -> anyhow::Result<Id<'_>> {
    Id::new(s).with_context(|| format!("{s:?} is not an identifier"))
}

/// Makes `text` a valid `name` (formats.md §4.11 key 10): control characters become spaces, at
/// most 128 bytes.
fn cause(text: &str) -> String {
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

fn permille(n: u64, of: u64) -> u64 {
    (n * 1000).checked_div(of).unwrap_or(0)
}

impl Engine {
    /// Opens the relay's state log in `dir`, takes the mirror's plans and approvals up, and
    /// replays the log to get every campaign's state back.
    pub fn open(
        dir: &Path,
        origin: &str,
        release_key: ReleaseKey,
        mirror: &Vault,
    ) -> anyhow::Result<Self> {
        let log = StateLog::open(dir, origin)?;
        let mut engine = Self {
            log,
            release_key,
            campaigns: BTreeMap::new(),
            approvals: Vec::new(),
            recorded: Vec::new(),
            stale: BTreeSet::new(),
            mirror_seen: 0,
            staged: Vec::new(),
            queue: VecDeque::new(),
            rate: None,
            stats: Stats::default(),
            problems: Vec::new(),
        };
        engine.scan_mirror(mirror)?;
        engine.replay()?;
        engine.requeue(mirror)?;
        Ok(engine)
    }

    /// Queues again, with their deliveries built, the devices a replayed log leaves `pending`
    /// (queued when the relay stopped, or when a write failed).
    fn requeue(&mut self, mirror: &Vault) -> anyhow::Result<()> {
        let mut pending: Vec<(String, Vec<usize>, Vec<usize>)> = Vec::new();
        for c in self.campaigns.values() {
            let (mut update, mut rollback) = (Vec::new(), Vec::new());
            for (i, d) in c.devices.iter().enumerate() {
                if d.state == DeviceState::Pending {
                    if d.rollback {
                        rollback.push(i);
                    } else {
                        update.push(i);
                    }
                }
            }
            pending.push((c.id.clone(), update, rollback));
        }
        for (campaign, update, rollback) in pending {
            self.prepare(mirror, &campaign, &update, false)?;
            self.prepare(mirror, &campaign, &rollback, true)?;
            let mut all: Vec<usize> = update.into_iter().chain(rollback).collect();
            all.sort_unstable();
            self.queue
                .extend(all.into_iter().map(|i| (campaign.clone(), i)));
        }
        Ok(())
    }

    /// Hands at most `per_sec` deliveries a second to the broker (AWS IoT Core: 100 publishes a
    /// second per connection); `None` hands every queued one at once.
    pub fn set_rate(&mut self, per_sec: Option<u32>) {
        self.rate = per_sec;
    }

    /// The relay's state log.
    pub fn log(&self) -> &StateLog {
        &self.log
    }

    /// The campaigns.
    pub fn campaigns(&self) -> &BTreeMap<String, Campaign> {
        &self.campaigns
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Deliveries waiting to be handed to the broker.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn replay(&mut self) -> anyhow::Result<()> {
        let size = self.log.vault().size();
        for index in 0..size {
            let entry = self.log.vault().entry(index)?;
            match Statement::decode(&entry)
                .with_context(|| format!("relay log entry {index} does not decode"))?
            {
                Statement::DeviceEvent(e) => self.apply_device(&e),
                Statement::CampaignEvent(e) => self.apply_campaign(&e, index),
                other => bail!(
                    "relay log entry {index} is a kind {} entry, not a relay event",
                    other.kind().0
                ),
            }
        }
        for c in self.campaigns.values_mut() {
            c.changed = false;
        }
        Ok(())
    }

    /// Reads the mirror's new entries: plans become campaigns (after their signature and decisions
    /// digest are checked), approvals are kept once their signature is. Does not log anything.
    fn scan_mirror(&mut self, mirror: &Vault) -> anyhow::Result<()> {
        let size = mirror.size();
        let mut index = self.mirror_seen;
        while index < size {
            let entry = mirror.entry(index)?;
            let kind = EntryHeader::peek(&entry)
                .with_context(|| format!("mirror entry {index}"))?
                .kind;
            if kind == Kind::PLAN {
                match self.load_plan(mirror, index, &entry) {
                    Ok(c) => {
                        let next = c.evidence.decisions.end;
                        self.campaigns.insert(c.id.clone(), c);
                        index = next;
                        continue;
                    }
                    Err(e) => self
                        .problems
                        .push(format!("plan at mirror index {index} not taken up: {e:#}")),
                }
            } else if kind == Kind::RELAY_CHECKPOINT {
                if let Some(size) = self.own_record(&entry) {
                    self.recorded.push((index, size));
                }
            } else if kind == Kind::APPROVAL {
                match self.load_approval(&entry, index) {
                    Ok(a) => self.approvals.push(a),
                    Err(e) => {
                        self.stats.approvals_refused += 1;
                        self.problems
                            .push(format!("approval at mirror index {index} refused: {e:#}"));
                    }
                }
            }
            index += 1;
        }
        self.mirror_seen = size;
        Ok(())
    }

    /// The relay log size a kind-11 record covers, if it records this relay's log (its origin,
    /// its key, a checkpoint that verifies with it); another relay's record is not ours to use.
    fn own_record(&self, entry: &[u8]) -> Option<u64> {
        let Ok(Statement::RelayCheckpoint(r)) = Statement::decode(entry) else {
            return None;
        };
        if r.origin.as_str() != self.log.origin() || r.relay_key != self.log.public_key() {
            return None;
        }
        let key = self.log.log_key().ok()?;
        let checkpoint = Checkpoint::parse(r.checkpoint).ok()?;
        checkpoint.verify(&key, &Software).ok()?;
        Some(checkpoint.size.0)
    }

    fn load_approval(&self, entry: &[u8], index: u64) -> anyhow::Result<PendingApproval> {
        let signed = SignedEntry::decode(entry, Kind::APPROVAL)?;
        let cose = CoseSign1::decode(signed.cose_sign1)?;
        cose.verify(&self.release_key, &Software)
            .context("its signature does not verify with the release key")?;
        let a = Approval::decode(cose.payload)?;
        Ok(PendingApproval {
            index,
            campaign: a.campaign.as_str().to_owned(),
            plan_digest: a.plan_digest,
            stage: a.stage,
            action: a.action,
        })
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one check after another, in the documented order"
    )]
    fn load_plan(&self, mirror: &Vault, index: u64, entry: &[u8]) -> anyhow::Result<Campaign> {
        let signed = SignedEntry::decode(entry, Kind::PLAN)?;
        let cose = CoseSign1::decode(signed.cose_sign1)?;
        cose.verify(&self.release_key, &Software)
            .context("the plan's signature does not verify with the release key")?;
        let plan = RolloutPlan::decode(cose.payload)?;
        let k = plan
            .eligible
            .checked_mul(2)
            .and_then(|n| n.checked_add(plan.rejected))
            .context("decision count overflows")?;
        let decisions = index + 1..index + 1 + k;
        if decisions.end > mirror.size() {
            bail!(
                "the plan's {k} decisions end at index {}, beyond the mirror's {} entries",
                decisions.end,
                mirror.size()
            );
        }
        let find = |release: &str, digest: &Hash| -> anyhow::Result<u64> {
            for i in mirror.query_indices(cairn_vault::Query::Release(release))? {
                let e = mirror.entry(i)?;
                if let Ok(Statement::Release { entry, .. }) = Statement::decode(&e)
                    && <[u8; 32]>::from(Sha256::digest(entry.cose_sign1)) == *digest
                {
                    CoseSign1::decode(entry.cose_sign1)?
                        .verify(&self.release_key, &Software)
                        .with_context(|| {
                            format!(
                                "release {release} at index {i} is not signed by the release key"
                            )
                        })?;
                    return Ok(i);
                }
            }
            bail!("release {release} with the plan's digest is not in the mirror")
        };
        let release_index = find(plan.release_id.as_str(), &plan.release_digest)?;
        let rollback_index = find(plan.rollback_release_id.as_str(), &plan.rollback_digest)?;
        let mut digest = Sha256::new();
        let mut updates: HashMap<String, u64> = HashMap::new();
        let mut rollbacks: HashMap<String, u64> = HashMap::new();
        for i in decisions.clone() {
            let e = mirror.entry(i)?;
            digest.update(leaf_hash(&Software, &e));
            match Statement::decode(&e)? {
                Statement::Manifest(m) if m.campaign == plan.campaign => {
                    let map = if m.purpose == Purpose::Update {
                        &mut updates
                    } else {
                        &mut rollbacks
                    };
                    if map.insert(m.device_id.as_str().to_owned(), i).is_some() {
                        bail!("device {} has two manifests of one purpose", m.device_id);
                    }
                }
                Statement::Rejection(r) if r.campaign == plan.campaign => {}
                other => bail!(
                    "entry {i} among the plan's decisions is a kind {} entry of another campaign",
                    other.kind().0
                ),
            }
        }
        if <[u8; 32]>::from(digest.finalize()) != plan.decisions_digest {
            bail!("the decisions logged after the plan do not have the plan's digest");
        }
        if updates.len() as u64 != plan.eligible || rollbacks.len() != updates.len() {
            bail!(
                "the plan says {} eligible; the mirror holds {} update and {} rollback manifests",
                plan.eligible,
                updates.len(),
                rollbacks.len()
            );
        }
        let campaign = plan.campaign.as_str();
        let mut order: Vec<(Hash, String)> = updates
            .keys()
            .map(|d| (stage_order_key(&Software, campaign, d), d.clone()))
            .collect();
        order.sort_unstable();
        let stages: Vec<StagePlan> = plan
            .stages
            .iter()
            .map(|s| StagePlan {
                name: s.name.as_str().to_owned(),
                end: s.devices,
                soak_secs: s.soak_secs,
                success_permille: s.success_permille,
                failure_permille: s.failure_permille,
                gate: s.gate,
            })
            .collect();
        let mut counts = vec![[0u64; 10]; stages.len()];
        let mut devices = Vec::with_capacity(order.len());
        let mut by_id = HashMap::with_capacity(order.len());
        let mut stage = 0usize;
        for (position, (_, device)) in order.into_iter().enumerate() {
            while stages.get(stage).is_some_and(|s| position as u64 >= s.end) {
                stage += 1;
            }
            if let Some(c) = counts.get_mut(stage) {
                c[idx(DeviceState::Eligible)] += 1;
            }
            by_id.insert(device.clone(), devices.len());
            devices.push(Dev {
                update_index: updates[&device],
                rollback_index: rollbacks[&device],
                id: device,
                stage,
                state: DeviceState::Eligible,
                attempt: 0,
                failures: 0,
                failed_at: 0,
                rollback: false,
                update_delivery: None,
                rollback_delivery: None,
                last_sequence: None,
            });
        }
        Ok(Campaign {
            id: campaign.to_owned(),
            release_id: plan.release_id.as_str().to_owned(),
            rollback_id: plan.rollback_release_id.as_str().to_owned(),
            plan_digest: Sha256::digest(signed.cose_sign1).into(),
            succeeded: vec![false; stages.len()],
            stages,
            max_attempts: u64::from(plan.max_attempts),
            backoff_secs: plan.backoff_secs,
            quarantine_after_failures: u64::from(plan.quarantine_after_failures),
            quarantine_on_verification_failure: plan.quarantine_on_verification_failure,
            rejected: plan.rejected,
            evidence: PlanEvidence {
                release_index,
                rollback_index,
                plan_index: index,
                decisions,
                update_manifests: updates.len() as u64,
                rollback_manifests: rollbacks.len() as u64,
            },
            devices,
            by_id,
            troubled: vec![0; counts.len()],
            counts,
            started: None,
            stage: 0,
            stage_opened_at: 0,
            paused: None,
            paused_entry: 0,
            completed: false,
            approvals_applied: BTreeSet::new(),
            failed: BTreeSet::new(),
            resumed_with: (0, 0),
            history: Vec::new(),
            recent: VecDeque::new(),
            reports: 0,
            verification_failures: 0,
            stage_times: Vec::new(),
            changed: false,
        })
    }

    // ---- events: every change goes through one of these two, live and on replay ----

    fn apply_device(&mut self, e: &DeviceEvent<'_>) {
        let Some(c) = self.campaigns.get_mut(e.campaign.as_str()) else {
            return;
        };
        let Some(&i) = c.by_id.get(e.device_id.as_str()) else {
            return;
        };
        let rollback_release = e.release_id.as_str() == c.rollback_id;
        let Some(d) = c.devices.get_mut(i) else {
            return;
        };
        if let Some(counts) = c.counts.get_mut(d.stage) {
            counts[idx(d.state)] = counts[idx(d.state)].saturating_sub(1);
            counts[idx(e.state)] += 1;
        }
        let was_troubled = d.troubled();
        if e.actor.as_str() == ACTOR_DEVICE {
            // The replay protection survives a restart: it is rebuilt from the log.
            d.last_sequence = Some(e.report);
        }
        d.state = e.state;
        d.attempt = e.attempt;
        d.rollback = rollback_release;
        if e.state == DeviceState::Failed {
            d.failures += 1;
            d.failed_at = e.at.0;
            c.failed.insert(i);
        } else {
            c.failed.remove(&i);
        }
        if let Some(t) = c.troubled.get_mut(d.stage) {
            match (was_troubled, d.troubled()) {
                (false, true) => *t += 1,
                (true, false) => *t = t.saturating_sub(1),
                _ => {}
            }
        }
        c.changed = true;
        let text = format!(
            "{} {} ({}, attempt {}) by {}: {}",
            e.device_id,
            e.state.name(),
            e.release_id,
            e.attempt,
            e.actor,
            e.cause
        );
        if e.state != DeviceState::Eligible
            && e.state != DeviceState::Pending
            && e.state != DeviceState::Delivered
        {
            c.note(e.at.0, text);
        }
        Self::sample(c, e.at.0);
    }

    fn apply_campaign(&mut self, e: &CampaignEvent<'_>, index: u64) {
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
                c.resumed_with = (c.stage, c.troubled.get(c.stage).copied().unwrap_or(0));
            }
            Action::ApprovalApplied => {
                c.approvals_applied.insert(e.devices);
            }
            Action::Completed => c.completed = true,
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
        c.changed = true;
        Self::sample(c, e.at.0);
    }

    fn sample(c: &mut Campaign, at: u64) {
        let totals = c.totals();
        match c.history.last_mut() {
            Some((t, counts)) if *t == at => *counts = totals,
            _ => c.history.push((at, totals)),
        }
        if c.history.len() > HISTORY {
            // Keep the first and last points, drop every other one in between.
            let last = c.history.len() - 1;
            let mut i = 0usize;
            c.history.retain(|_| {
                i += 1;
                i == 1 || i - 1 == last || i.is_multiple_of(2)
            });
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one event's fields")]
    fn device_event(
        &mut self,
        campaign: &str,
        device: usize,
        state: DeviceState,
        rollback: bool,
        attempt: u64,
        actor: &str,
        why: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        let c = self.campaigns.get(campaign).context("no such campaign")?;
        let d = c.devices.get(device).context("no such device")?;
        let release = if rollback {
            &c.rollback_id
        } else {
            &c.release_id
        };
        let why = cause(why);
        let event = DeviceEvent {
            campaign: id(&c.id)?,
            device_id: id(&d.id)?,
            release_id: id(release)?,
            state,
            stage: d.stage as u64,
            attempt,
            at: UnixTime(now),
            actor: id(actor)?,
            cause: Name::new(&why).context("cause")?,
            // `report` set the device's sequence before it records what the report said.
            report: if actor == ACTOR_DEVICE {
                d.last_sequence.unwrap_or(0)
            } else {
                0
            },
        };
        let bytes = event.to_cbor();
        self.staged.push(bytes.clone());
        let e = DeviceEvent::decode(&bytes)?;
        self.apply_device(&e);
        Ok(())
    }

    #[expect(clippy::too_many_arguments, reason = "one event's fields")]
    fn campaign_event(
        &mut self,
        campaign: &str,
        action: Action,
        stage: usize,
        devices: u64,
        actor: &str,
        why: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        let why = cause(why);
        let event = CampaignEvent {
            campaign: id(campaign)?,
            action,
            stage: stage as u64,
            devices,
            at: UnixTime(now),
            actor: id(actor)?,
            cause: Name::new(&why).context("cause")?,
        };
        let bytes = event.to_cbor();
        // Its index once committed: the step's events are appended in order.
        let index = self.log.vault().size() + self.staged.len() as u64;
        self.staged.push(bytes.clone());
        let e = CampaignEvent::decode(&bytes)?;
        self.apply_campaign(&e, index);
        Ok(())
    }

    /// Writes the events of this step to the relay log (one synced batch, one checkpoint), then
    /// hands the queued deliveries that the rate allows over for publishing. If the write fails,
    /// the engine's state is rebuilt from the log, so it never runs ahead of its evidence.
    pub fn commit(
        &mut self,
        mirror: &Vault,
        elapsed: std::time::Duration,
        can_publish: bool,
    ) -> anyhow::Result<Vec<Outgoing>> {
        if !self.staged.is_empty() {
            let staged = std::mem::take(&mut self.staged);
            if let Err(e) = self.log.append(&staged) {
                self.rebuild(mirror)?;
                return Err(e);
            }
        }
        for c in self.campaigns.values_mut() {
            c.changed = false;
        }
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
        let mut out = Vec::new();
        while out.len() < budget {
            let Some((campaign, i)) = self.queue.pop_front() else {
                break;
            };
            let Some(c) = self.campaigns.get(&campaign) else {
                continue;
            };
            let Some(d) = c.devices.get(i) else { continue };
            if d.state != DeviceState::Pending {
                continue; // paused or quarantined while queued
            }
            let delivery = if d.rollback {
                d.rollback_delivery.clone()
            } else {
                d.update_delivery.clone()
            };
            let Some(delivery) = delivery else {
                continue;
            };
            out.push(Outgoing {
                campaign: campaign.clone(),
                device: d.id.clone(),
                release: if d.rollback {
                    c.rollback_id.clone()
                } else {
                    c.release_id.clone()
                },
                delivery,
            });
        }
        self.stats.handed += out.len() as u64;
        Ok(out)
    }

    /// After a step failed part way: drops what it staged and rebuilds the state from the log,
    /// so the engine never holds what its evidence does not.
    pub fn recover(&mut self, mirror: &Vault) -> anyhow::Result<()> {
        self.rebuild(mirror)
    }

    fn rebuild(&mut self, mirror: &Vault) -> anyhow::Result<()> {
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

    /// Takes up what a bundle import added to the mirror: new plans start, new approvals apply.
    pub fn on_mirror(&mut self, mirror: &Vault, now: u64) -> anyhow::Result<()> {
        self.scan_mirror(mirror)?;
        self.tick(mirror, now)
    }

    /// Builds the deliveries the listed devices lack (against the mirror's latest checkpoint).
    fn prepare(
        &mut self,
        mirror: &Vault,
        campaign: &str,
        devices: &[usize],
        rollback: bool,
    ) -> anyhow::Result<()> {
        let Some(c) = self.campaigns.get_mut(campaign) else {
            return Ok(());
        };
        let missing: Vec<usize> = devices
            .iter()
            .copied()
            .filter(|&i| {
                c.devices.get(i).is_some_and(|d| {
                    if rollback {
                        d.rollback_delivery.is_none()
                    } else {
                        d.update_delivery.is_none()
                    }
                })
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let indices: Vec<u64> = missing
            .iter()
            .filter_map(|&i| c.devices.get(i))
            .map(|d| {
                if rollback {
                    d.rollback_index
                } else {
                    d.update_index
                }
            })
            .collect();
        let built = mirror
            .deliveries(&indices)
            .with_context(|| format!("building deliveries for campaign {campaign}"))?;
        for (&i, (device, delivery)) in missing.iter().zip(built) {
            let Some(d) = c.devices.get_mut(i) else {
                continue;
            };
            if d.id != device {
                bail!("delivery for {device} built where {} was expected", d.id);
            }
            let delivery: Arc<[u8]> = delivery.into();
            if rollback {
                d.rollback_delivery = Some(delivery);
            } else {
                d.update_delivery = Some(delivery);
            }
        }
        Ok(())
    }

    /// Queues a delivery of the release (or the rollback target) to each device.
    #[expect(
        clippy::too_many_arguments,
        reason = "what, to whom, by whom, why, when"
    )]
    fn deliver(
        &mut self,
        mirror: &Vault,
        campaign: &str,
        devices: &[usize],
        rollback: bool,
        actor: &str,
        why: &dyn Fn(&Dev) -> String,
        now: u64,
    ) -> anyhow::Result<()> {
        self.prepare(mirror, campaign, devices, rollback)?;
        for &i in devices {
            let (attempt, text) = {
                let c = self.campaigns.get(campaign).context("no such campaign")?;
                let d = c.devices.get(i).context("no such device")?;
                let attempt = if d.rollback == rollback {
                    d.attempt + 1
                } else {
                    1
                };
                (attempt, why(d))
            };
            self.device_event(
                campaign,
                i,
                DeviceState::Pending,
                rollback,
                attempt,
                actor,
                &text,
                now,
            )?;
            self.queue.push_back((campaign.to_owned(), i));
        }
        Ok(())
    }

    fn open_stage(
        &mut self,
        mirror: &Vault,
        campaign: &str,
        stage: usize,
        actor: &str,
        why: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        let (devices, name) = {
            let c = self.campaigns.get(campaign).context("no such campaign")?;
            let devices: Vec<usize> = c
                .devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.stage == stage && d.state == DeviceState::Eligible)
                .map(|(i, _)| i)
                .collect();
            let name = c
                .stages
                .get(stage)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            (devices, name)
        };
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
            false,
            actor,
            &|_| format!("stage {name} open"),
            now,
        )
    }

    /// One step of every campaign at time `now`: start new campaigns, apply approvals, retry,
    /// roll back, check thresholds, advance.
    pub fn tick(&mut self, mirror: &Vault, now: u64) -> anyhow::Result<()> {
        let ids: Vec<String> = self.campaigns.keys().cloned().collect();
        for campaign in ids {
            self.tick_campaign(mirror, &campaign, now)?;
        }
        Ok(())
    }

    fn tick_campaign(&mut self, mirror: &Vault, campaign: &str, now: u64) -> anyhow::Result<()> {
        let Some(c) = self.campaigns.get(campaign) else {
            return Ok(());
        };
        if c.started.is_none() {
            let n = c.devices.len();
            let plan_index = c.evidence.plan_index;
            self.campaign_event(
                campaign,
                Action::Started,
                0,
                n as u64,
                ACTOR_RULE,
                &format!("signed plan at mirror index {plan_index} taken up"),
                now,
            )?;
            for i in 0..n {
                self.device_event(
                    campaign,
                    i,
                    DeviceState::Eligible,
                    false,
                    0,
                    ACTOR_RULE,
                    &format!("approved by the plan at mirror index {plan_index}"),
                    now,
                )?;
            }
            self.open_stage(
                mirror,
                campaign,
                0,
                ACTOR_RULE,
                "the first stage opens with the plan",
                now,
            )?;
        }
        self.apply_approvals(mirror, campaign, now)?;
        let Some(c) = self.campaigns.get(campaign) else {
            return Ok(());
        };
        // A completed campaign still retries and rolls back the devices that need it.
        let status = c.status();
        // Retries (not while paused) and rollbacks by rule (always: they restore a signed state).
        let mut retries = Vec::new();
        let mut rollbacks = Vec::new();
        for &i in &c.failed {
            let Some(d) = c.devices.get(i) else { continue };
            if d.rollback {
                continue;
            }
            if d.attempt >= c.max_attempts {
                rollbacks.push(i);
            } else if !matches!(status, Status::Paused { .. }) {
                let delay = c
                    .backoff_secs
                    .saturating_mul(1 << d.attempt.saturating_sub(1).min(20));
                if now >= d.failed_at.saturating_add(delay) {
                    retries.push(i);
                }
            }
        }
        let max = c.max_attempts;
        if !retries.is_empty() {
            self.deliver(
                mirror,
                campaign,
                &retries,
                false,
                ACTOR_RULE,
                &|d| format!("retry: attempt {} of {max} after backoff", d.attempt + 1),
                now,
            )?;
        }
        if !rollbacks.is_empty() {
            let stage = self.campaigns.get(campaign).map_or(0, |c| c.stage);
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
                true,
                ACTOR_RULE,
                &|_| format!("failed {max} attempts: rollback target"),
                now,
            )?;
        }
        self.thresholds(mirror, campaign, now)
    }

    fn thresholds(&mut self, mirror: &Vault, campaign: &str, now: u64) -> anyhow::Result<()> {
        let Some(c) = self.campaigns.get(campaign) else {
            return Ok(());
        };
        let stage = c.stage;
        let Some(plan) = c.stages.get(stage).cloned() else {
            return Ok(());
        };
        let size = c.stage_size(stage);
        let counts = c.stage_counts(stage);
        let failed_all = c.troubled.get(stage).copied().unwrap_or(0);
        let failed = if c.resumed_with.0 == stage {
            failed_all.saturating_sub(c.resumed_with.1)
        } else {
            failed_all
        };
        let installed = counts[idx(DeviceState::Installed)];
        let status = c.status();
        if c.completed {
            return Ok(());
        }
        if c.paused.is_none() && failed * 1000 > u64::from(plan.failure_permille) * size {
            let why = format!(
                "failure threshold of stage {}: {failed} of {size} failed ({}‰ > {}‰)",
                plan.name,
                permille(failed, size),
                plan.failure_permille
            );
            return self.pause(campaign, ACTOR_RULE, &why, now);
        }
        if status != Status::Running || c.succeeded.get(stage).copied().unwrap_or(true) {
            return Ok(());
        }
        if now >= c.stage_opened_at.saturating_add(plan.soak_secs)
            && installed * 1000 >= u64::from(plan.success_permille) * size
        {
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
                let total = self
                    .campaigns
                    .get(campaign)
                    .map_or(0, |c| c.totals()[idx(DeviceState::Installed)]);
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
            return self.apply_approvals(mirror, campaign, now);
        }
        Ok(())
    }

    /// Applies the approvals the campaign waits for. A resume lifts a pause by the failure
    /// threshold only if the custodians recorded the relay log up to that pause (a kind-11
    /// record covering the pause event) before they signed it: a resume signed in advance, or
    /// without looking at the failures, is refused (formats.md §4.10).
    fn apply_approvals(&mut self, mirror: &Vault, campaign: &str, now: u64) -> anyhow::Result<()> {
        loop {
            let Some(c) = self.campaigns.get(campaign) else {
                return Ok(());
            };
            let status = c.status();
            let seen = |a: &PendingApproval| {
                self.recorded
                    .iter()
                    .any(|&(index, size)| index < a.index && size > c.paused_entry)
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
                            if due && !seen(a) {
                                unseen.push(a.index);
                            }
                            due && seen(a)
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
            match a.action {
                ApprovalAction::OpenStage => self.open_stage(
                    mirror,
                    campaign,
                    stage,
                    ACTOR_CUSTODIANS,
                    &format!("approval at mirror index {}", a.index),
                    now,
                )?,
                ApprovalAction::Resume => self.resume_unchecked(
                    campaign,
                    ACTOR_CUSTODIANS,
                    &format!("approval at mirror index {}", a.index),
                    now,
                )?,
            }
        }
    }

    fn campaign(&self, campaign: &str) -> anyhow::Result<&Campaign> {
        self.campaigns
            .get(campaign)
            .with_context(|| format!("no campaign {campaign:?}"))
    }

    /// Pauses a campaign: nothing more is handed to the broker (devices queued become `paused`)
    /// and no retry starts; rollbacks by rule go on.
    pub fn pause(
        &mut self,
        campaign: &str,
        actor: &str,
        why: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        let c = self.campaign(campaign)?;
        match c.status() {
            Status::Completed => bail!("campaign {campaign} is completed"),
            Status::Paused { .. } => bail!("campaign {campaign} is already paused"),
            _ => {}
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
            let (rollback, attempt) = {
                let d = self
                    .campaigns
                    .get(campaign)
                    .and_then(|c| c.devices.get(i))
                    .context("device")?;
                if d.state != DeviceState::Pending || d.rollback {
                    continue; // a rollback is a safety action: it is not held
                }
                (d.rollback, d.attempt)
            };
            self.device_event(
                campaign,
                i,
                DeviceState::Paused,
                rollback,
                attempt,
                actor,
                "held back by the pause",
                now,
            )?;
        }
        Ok(())
    }

    /// Resumes a campaign an operator paused. A pause by the failure threshold needs a signed
    /// approval (`cairn rollout approve --resume`).
    pub fn resume(
        &mut self,
        campaign: &str,
        actor: &str,
        why: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        let c = self.campaign(campaign)?;
        match c.status() {
            Status::Paused { by_rule: false } => self.resume_unchecked(campaign, actor, why, now),
            Status::Paused { by_rule: true } => bail!(
                "campaign {campaign} was paused by the failure threshold of stage {}: only a gate approval signed offline resumes it (cairn rollout approve --campaign {campaign} --stage {} --resume)",
                c.stage,
                c.stage
            ),
            _ => bail!("campaign {campaign} is not paused"),
        }
    }

    fn resume_unchecked(
        &mut self,
        campaign: &str,
        actor: &str,
        why: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        let (stage, held) = {
            let c = self.campaigns.get(campaign).context("no such campaign")?;
            let held: Vec<usize> = c
                .devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.state == DeviceState::Paused)
                .map(|(i, _)| i)
                .collect();
            (c.stage, held)
        };
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
                .campaigns
                .get(campaign)
                .and_then(|c| c.devices.get(i))
                .map_or(1, |d| d.attempt);
            self.device_event(
                campaign,
                i,
                DeviceState::Pending,
                false,
                attempt,
                actor,
                "resumed",
                now,
            )?;
            self.queue.push_back((campaign.to_owned(), i));
        }
        Ok(())
    }

    /// Quarantines devices: nothing more is delivered to them. Lifting a quarantine takes a new
    /// signed plan.
    pub fn quarantine(
        &mut self,
        campaign: &str,
        devices: &[String],
        actor: &str,
        why: &str,
        now: u64,
    ) -> anyhow::Result<u64> {
        let c = self.campaign(campaign)?;
        let mut found = Vec::with_capacity(devices.len());
        for d in devices {
            let i = *c
                .by_id
                .get(d)
                .with_context(|| format!("device {d:?} is not in campaign {campaign}"))?;
            if c.devices
                .get(i)
                .is_some_and(|d| d.state != DeviceState::Quarantined)
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
            let (rollback, attempt) = self
                .campaigns
                .get(campaign)
                .and_then(|c| c.devices.get(i))
                .map_or((false, 0), |d| (d.rollback, d.attempt));
            self.device_event(
                campaign,
                i,
                DeviceState::Quarantined,
                rollback,
                attempt,
                actor,
                why,
                now,
            )?;
        }
        Ok(found.len() as u64)
    }

    /// Delivers the pre-signed rollback target to the selected devices.
    pub fn rollback(
        &mut self,
        mirror: &Vault,
        campaign: &str,
        selection: &Selection,
        actor: &str,
        why: &str,
        now: u64,
    ) -> anyhow::Result<u64> {
        let c = self.campaign(campaign)?;
        let eligible = |d: &Dev| {
            !d.rollback
                && matches!(
                    d.state,
                    DeviceState::Delivered | DeviceState::Installed | DeviceState::Failed
                )
        };
        let devices: Vec<usize> = match selection {
            Selection::Devices(ids) => {
                let mut v = Vec::new();
                for d in ids {
                    let i = *c
                        .by_id
                        .get(d)
                        .with_context(|| format!("device {d:?} is not in campaign {campaign}"))?;
                    let dev = c.devices.get(i).context("device")?;
                    if !eligible(dev) {
                        bail!(
                            "device {d} is {}: only a delivered, installed or failed device is rolled back",
                            dev.state.name()
                        );
                    }
                    v.push(i);
                }
                v
            }
            Selection::Failed => c
                .failed
                .iter()
                .copied()
                .filter(|&i| c.devices.get(i).is_some_and(eligible))
                .collect(),
            Selection::Stage(s) => c
                .devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.stage == *s && eligible(d))
                .map(|(i, _)| i)
                .collect(),
        };
        if devices.is_empty() {
            bail!("no device of campaign {campaign} matches: nothing to roll back");
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
            true,
            actor,
            &|_| format!("rollback to {target}"),
            now,
        )?;
        Ok(devices.len() as u64)
    }

    /// The broker acknowledged the delivery of `release` to `device`.
    pub fn acked(
        &mut self,
        campaign: &str,
        device: &str,
        release: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        let Some(c) = self.campaigns.get(campaign) else {
            return Ok(());
        };
        let Some(&i) = c.by_id.get(device) else {
            return Ok(());
        };
        let Some(d) = c.devices.get(i) else {
            return Ok(());
        };
        let rollback = release == c.rollback_id;
        if d.state != DeviceState::Pending || d.rollback != rollback {
            return Ok(()); // a report already overtook the acknowledgement
        }
        let attempt = d.attempt;
        self.device_event(
            campaign,
            i,
            DeviceState::Delivered,
            rollback,
            attempt,
            ACTOR_BROKER,
            "the broker acknowledged the delivery (QoS 1)",
            now,
        )
    }

    /// A status message from `device` (its topic, authenticated by the broker).
    #[expect(
        clippy::too_many_lines,
        reason = "each refusal is counted where it is found"
    )]
    pub fn report(&mut self, device: &str, payload: &[u8], now: u64) -> anyhow::Result<()> {
        let Ok(report) = StatusReport::decode(payload) else {
            self.stats.malformed += 1;
            return Ok(());
        };
        let Some(c) = self.campaigns.get_mut(report.campaign.as_str()) else {
            self.stats.refused += 1;
            return Ok(());
        };
        let Some(&i) = c.by_id.get(device) else {
            self.stats.refused += 1;
            return Ok(());
        };
        let rollback = if report.release_id.as_str() == c.release_id {
            false
        } else if report.release_id.as_str() == c.rollback_id {
            true
        } else {
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
        let outstanding = d.rollback == rollback
            && matches!(
                d.state,
                DeviceState::Pending | DeviceState::Delivered | DeviceState::Paused
            );
        if !outstanding {
            self.stats.refused += 1;
            return Ok(());
        }
        d.last_sequence = Some(report.sequence);
        let attempt = d.attempt;
        let failures = d.failures;
        c.reports += 1;
        if report.outcome == Outcome::VerificationFailed {
            c.verification_failures += 1;
        }
        let (q_after, q_verif) = (
            c.quarantine_after_failures,
            c.quarantine_on_verification_failure,
        );
        self.stats.reports += 1;
        let campaign = report.campaign.as_str().to_owned();
        match report.outcome {
            Outcome::Installed => {
                let state = if rollback {
                    DeviceState::RolledBack
                } else {
                    DeviceState::Installed
                };
                self.device_event(
                    &campaign,
                    i,
                    state,
                    rollback,
                    attempt,
                    ACTOR_DEVICE,
                    &format!("reported installed ({})", report.detail),
                    now,
                )
            }
            Outcome::InstallFailed | Outcome::VerificationFailed => {
                let what = report.outcome.name();
                self.device_event(
                    &campaign,
                    i,
                    DeviceState::Failed,
                    rollback,
                    attempt,
                    ACTOR_DEVICE,
                    &format!("reported {what}: {}", report.detail),
                    now,
                )?;
                if rollback {
                    return Ok(());
                }
                if report.outcome == Outcome::VerificationFailed && q_verif {
                    self.device_event(
                        &campaign,
                        i,
                        DeviceState::Quarantined,
                        false,
                        attempt,
                        ACTOR_RULE,
                        &format!(
                            "reported a verification failure ({}): quarantined by the plan",
                            report.detail
                        ),
                        now,
                    )
                } else if failures + 1 >= q_after {
                    self.device_event(
                        &campaign,
                        i,
                        DeviceState::Quarantined,
                        false,
                        attempt,
                        ACTOR_RULE,
                        &format!(
                            "{} failures: quarantined by the plan (after {q_after})",
                            failures + 1
                        ),
                        now,
                    )
                } else {
                    Ok(())
                }
            }
        }
    }

    /// A campaign as JSON for the API and the dashboard.
    pub fn summary(&self, campaign: &str) -> Option<serde_json::Value> {
        let c = self.campaigns.get(campaign)?;
        let totals = c.totals();
        let per_state: serde_json::Map<String, serde_json::Value> = DeviceState::ALL
            .iter()
            .map(|s| (s.name().to_owned(), json!(totals[idx(*s)])))
            .collect();
        let stages: Vec<serde_json::Value> = c
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let counts = c.stage_counts(i);
                json!({
                    "name": s.name,
                    "devices": c.stage_size(i),
                    "cumulative": s.end,
                    "soak_secs": s.soak_secs,
                    "success_permille": s.success_permille,
                    "failure_permille": s.failure_permille,
                    "gate": if s.gate == Gate::Approval { "approval" } else { "automatic" },
                    "opened_at": c.stage_times.iter().find(|(st, _)| *st == i).map(|(_, t)| t),
                    "succeeded": c.stage_succeeded(i),
                    "installed": counts[idx(DeviceState::Installed)],
                    "failed": counts[idx(DeviceState::Failed)],
                    "quarantined": counts[idx(DeviceState::Quarantined)],
                    "rolled_back": counts[idx(DeviceState::RolledBack)],
                })
            })
            .collect();
        Some(json!({
            "campaign": c.id,
            "release": c.release_id,
            "rollback_release": c.rollback_id,
            "status": c.status().name(),
            "stage": c.stage,
            "eligible": c.devices.len(),
            "rejected": c.rejected,
            "states": per_state,
            "stages": stages,
            "max_attempts": c.max_attempts,
            "backoff_secs": c.backoff_secs,
            "quarantine_after_failures": c.quarantine_after_failures,
            "quarantine_on_verification_failure": c.quarantine_on_verification_failure,
            "reports": c.reports,
            "verification_failures": c.verification_failures,
            "evidence": {
                "plan_index": c.evidence.plan_index,
                "release_index": c.evidence.release_index,
                "rollback_index": c.evidence.rollback_index,
                "decisions": [c.evidence.decisions.start, c.evidence.decisions.end],
                "update_manifests": c.evidence.update_manifests,
                "rollback_manifests": c.evidence.rollback_manifests,
                "plan_digest": hex::encode(c.plan_digest),
            },
            "recent": c.recent.iter().rev().map(|(t, s)| json!({"at": t, "event": s})).collect::<Vec<_>>(),
        }))
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Decodes the device of a status topic `cairn/<device>/status`.
pub fn status_device(topic: &str) -> Option<&str> {
    let device = topic.strip_prefix("cairn/")?.strip_suffix("/status")?;
    Id::new(device).map(|d| d.as_str())
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

    #[test]
    fn status_topics() {
        assert_eq!(status_device("cairn/dev-1/status"), Some("dev-1"));
        assert_eq!(status_device("cairn/dev 1/status"), None);
        assert_eq!(status_device("cairn/a/b/status"), None);
        assert_eq!(status_device("cairn/dev-1/delivery"), None);
    }
}
