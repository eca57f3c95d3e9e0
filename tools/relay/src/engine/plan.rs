//! Plan loading: the mirror's new entries read in order. A plan becomes a campaign once its
//! signature, its releases and the decisions logged after it check out (formats.md §4.9); a gate
//! approval is kept once its signature does (§4.10); a record of this relay's checkpoint (§4.13)
//! tells which relay log sizes the custodians saw. Nothing here is logged.

use std::collections::{BTreeSet, HashMap, VecDeque};

use cairn_vault::Vault;
use cairn_verifier::campaign::{Approval, stage_order_key};
use cairn_verifier::cose::CoseSign1;
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::SignedEntry;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::rollout::RolloutPlan;
use cairn_verifier::statement::{EntryHeader, Kind, Purpose, Statement};
use cairn_verifier::types::Hash;
use sha2::{Digest, Sha256};

use super::core::{Engine, PendingApproval};
use super::error::{Error, PlanError, Result};
use super::model::{Campaign, Device, PlanEvidence, Policy, StagePlan, StateCounts};

type Loaded<T> = std::result::Result<T, PlanError>;

impl Engine {
    /// Reads the mirror's new entries: plans become campaigns (after their signature and decisions
    /// digest are checked), approvals are kept once their signature is. Does not log anything.
    /// A plan or approval that does not check out is a problem shown to operators; a mirror that
    /// cannot be read is an error.
    pub(super) fn scan_mirror(&mut self, mirror: &Vault) -> Result<()> {
        // Only the published part: a plan whose checkpoint waits for witnesses waits with it.
        let size = self.published(mirror);
        let mut index = self.mirror_seen;
        while index < size {
            let entry = mirror.entry(index)?;
            let kind = EntryHeader::peek(&entry)
                .map_err(|cause| Error::CorruptMirror { index, cause })?
                .kind;
            if kind == Kind::PLAN {
                match self.load_plan(mirror, index, &entry) {
                    Ok(c) => {
                        let next = c.evidence.decisions.end;
                        self.campaigns.insert(c.id.clone(), c);
                        index = next;
                        continue;
                    }
                    Err(PlanError::Mirror(e)) => return Err(Error::Mirror(e)),
                    // Its batch continues in a bundle not imported yet (a log cut into ranged
                    // bundles, formats.md §6.1): read again from the plan once it is.
                    Err(PlanError::DecisionsBeyondMirror { .. }) => {
                        self.mirror_seen = index;
                        return Ok(());
                    }
                    Err(e) => self
                        .problems
                        .push(format!("plan at mirror index {index} not taken up: {e}")),
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
                            .push(format!("approval at mirror index {index} refused: {e}"));
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

    fn load_approval(&self, entry: &[u8], index: u64) -> Loaded<PendingApproval> {
        let signed = SignedEntry::decode(entry, Kind::APPROVAL)?;
        let cose = CoseSign1::decode(signed.cose_sign1)?;
        cose.verify(&self.release_key, &Software)
            .map_err(|_| PlanError::Signature {
                what: "the approval".into(),
            })?;
        let a = Approval::decode(cose.payload)?;
        Ok(PendingApproval {
            index,
            campaign: a.campaign.as_str().to_owned(),
            plan_digest: a.plan_digest,
            stage: a.stage,
            action: a.action,
        })
    }

    /// The index of release `release` whose COSE_Sign1 has `digest`, checked to be signed by the
    /// release key.
    fn find_release(&self, mirror: &Vault, release: &str, digest: &Hash) -> Loaded<u64> {
        let published = self.published(mirror);
        for i in mirror.query_indices(cairn_vault::Query::Release(release))? {
            if i >= published {
                continue;
            }
            let e = mirror.entry(i)?;
            if let Ok(Statement::Release { entry, .. }) = Statement::decode(&e)
                && <[u8; 32]>::from(Sha256::digest(entry.cose_sign1)) == *digest
            {
                CoseSign1::decode(entry.cose_sign1)?
                    .verify(&self.release_key, &Software)
                    .map_err(|_| PlanError::Signature {
                        what: format!("release {release} at index {i}"),
                    })?;
                return Ok(i);
            }
        }
        Err(PlanError::ReleaseMissing(release.to_owned()))
    }

    fn load_plan(&self, mirror: &Vault, index: u64, entry: &[u8]) -> Loaded<Campaign> {
        let signed = SignedEntry::decode(entry, Kind::PLAN)?;
        let cose = CoseSign1::decode(signed.cose_sign1)?;
        cose.verify(&self.release_key, &Software)
            .map_err(|_| PlanError::Signature {
                what: "the plan".into(),
            })?;
        let plan = RolloutPlan::decode(cose.payload)?;
        let count = plan
            .eligible
            .checked_mul(2)
            .and_then(|n| n.checked_add(plan.rejected))
            .ok_or_else(|| PlanError::Decisions("the decision count overflows".into()))?;
        let decisions = index + 1..(index + 1).saturating_add(count);
        let published = self.published(mirror);
        if decisions.end > published {
            return Err(PlanError::DecisionsBeyondMirror {
                count,
                size: published,
            });
        }
        let release_index =
            self.find_release(mirror, plan.release_id.as_str(), &plan.release_digest)?;
        let rollback_index = self.find_release(
            mirror,
            plan.rollback_release_id.as_str(),
            &plan.rollback_digest,
        )?;
        let (updates, rollbacks) = manifests(mirror, &plan, decisions.clone())?;
        let campaign = plan.campaign.as_str();
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
        let (devices, by_id, counts) = seat(campaign, &stages, &updates, &rollbacks);
        Ok(Campaign {
            id: campaign.to_owned(),
            release_id: plan.release_id.as_str().to_owned(),
            rollback_id: plan.rollback_release_id.as_str().to_owned(),
            plan_digest: Sha256::digest(signed.cose_sign1).into(),
            succeeded: vec![false; stages.len()],
            troubled: vec![0; stages.len()],
            stages,
            policy: Policy {
                max_attempts: u64::from(plan.max_attempts),
                backoff_secs: plan.backoff_secs,
                quarantine_after_failures: u64::from(plan.quarantine_after_failures),
                quarantine_on_verification_failure: plan.quarantine_on_verification_failure,
                jobs: plan.jobs,
            },
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
            rollout: super::controls::Rollout::new(plan.jobs.as_ref()),
            executed: super::controls::Executed::default(),
            executed_at_resume: super::controls::Executed::default(),
        })
    }
}

/// Every eligible device in its stage, in the documented order (formats.md §4.9, "Stage
/// membership"): the devices, their positions by id, and the devices per state of each stage.
fn seat(
    campaign: &str,
    stages: &[StagePlan],
    updates: &HashMap<String, u64>,
    rollbacks: &HashMap<String, u64>,
) -> (Vec<Device>, HashMap<String, usize>, Vec<StateCounts>) {
    let mut order: Vec<(Hash, &String)> = updates
        .keys()
        .map(|d| (stage_order_key(&Software, campaign, d), d))
        .collect();
    order.sort_unstable();
    let mut counts = vec![StateCounts::default(); stages.len()];
    let mut devices = Vec::with_capacity(order.len());
    let mut by_id = HashMap::with_capacity(order.len());
    let mut stage = 0usize;
    for (position, (_, device)) in order.into_iter().enumerate() {
        while stages.get(stage).is_some_and(|s| position as u64 >= s.end) {
            stage += 1;
        }
        if let Some(c) = counts.get_mut(stage) {
            c.eligible += 1;
        }
        by_id.insert(device.clone(), devices.len());
        let rollback = rollbacks.get(device).copied().unwrap_or_default();
        devices.push(Device::new(
            device.clone(),
            stage,
            updates[device],
            rollback,
        ));
    }
    (devices, by_id, counts)
}

/// Decisions read at once by [`manifests`].
const READ_BATCH: usize = 4096;

/// The update and rollback manifests among the plan's decisions (device -> mirror index), checked
/// against the plan's decisions digest and counts.
fn manifests(
    mirror: &Vault,
    plan: &RolloutPlan<'_>,
    decisions: std::ops::Range<u64>,
) -> Loaded<(HashMap<String, u64>, HashMap<String, u64>)> {
    let mut digest = Sha256::new();
    let mut updates: HashMap<String, u64> = HashMap::new();
    let mut rollbacks: HashMap<String, u64> = HashMap::new();
    // A whole entry bundle and level-0 tile at a time (`Vault::entries_at` checks each entry
    // against the tiles as `Vault::entry` does, and gives its leaf hash): a read per index was a
    // third of the relay's first stage at 1 M devices (docs/scale.md, fix 12).
    let indices: Vec<u64> = decisions.collect();
    for chunk in indices.chunks(READ_BATCH) {
        for (&i, (hash, e)) in chunk.iter().zip(mirror.entries_at(chunk)?) {
            digest.update(hash);
            match Statement::decode(&e)? {
                Statement::Manifest(m) if m.campaign == plan.campaign => {
                    let map = if m.purpose == Purpose::Update {
                        &mut updates
                    } else {
                        &mut rollbacks
                    };
                    if map.insert(m.device_id.as_str().to_owned(), i).is_some() {
                        return Err(PlanError::Decisions(format!(
                            "device {} has two manifests of one purpose",
                            m.device_id
                        )));
                    }
                }
                Statement::Rejection(r) if r.campaign == plan.campaign => {}
                other => {
                    return Err(PlanError::Decisions(format!(
                        "entry {i} among the plan's decisions is a kind {} entry of another campaign",
                        other.kind().0
                    )));
                }
            }
        }
    }
    if <[u8; 32]>::from(digest.finalize()) != plan.decisions_digest {
        return Err(PlanError::Decisions(
            "the decisions logged after the plan do not have the plan's digest".into(),
        ));
    }
    if updates.len() as u64 != plan.eligible || rollbacks.len() != updates.len() {
        return Err(PlanError::Decisions(format!(
            "the plan says {} eligible; the mirror holds {} update and {} rollback manifests",
            plan.eligible,
            updates.len(),
            rollbacks.len()
        )));
    }
    if let Some(d) = updates.keys().find(|d| !rollbacks.contains_key(*d)) {
        return Err(PlanError::Decisions(format!(
            "device {d} has an update manifest and no rollback manifest"
        )));
    }
    Ok((updates, rollbacks))
}
