//! Release scope, per-device eligibility and the signed rollout plan (docs/eligibility.md).
//!
//! `cairn rollout plan` decides every registered device against the release's scope: an eligible
//! device gets a manifest for the release and one for the pre-signed rollback target; a rejected
//! device gets a rejection entry listing every check it failed. The plan (stages, thresholds,
//! gates, retries, quarantine, rollback target) is validated, bound to the exact decisions by a
//! digest of their leaf hashes, signed once by the release key, and logged with the session
//! record and every decision under one checkpoint signed by the log key: two HSM signatures per
//! rollout, whatever the fleet size.

use cairn_vault::Query;
use cairn_verifier::campaign::{Approval, ApprovalAction};
use cairn_verifier::cose::CoseSign1;
use cairn_verifier::crypto::{Crypto as _, Software};
use cairn_verifier::custody::{KeyRole, SignedEntry};
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::rollout::{Gate, Reason, Reasons, Rejection, RolloutPlan, Stage, Stages};
use cairn_verifier::statement::{EntryHeader, Kind, Manifest, Purpose, ReleaseStatement};
use cairn_verifier::types::{Hash, Id, UnixTime, Version};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::parallel;

pub mod awsjob;
mod jobs;
mod spec;

use crate::registry::{Device, Lifecycle, Registry};
use crate::session::Session;
pub use jobs::{AbortSpec, ExponentialRateSpec, JobsSpec, RetrySpec};
pub use spec::{Checked, PlanSpec, ScopeSpec, SpecError, StageSpec};

/// The scope with its versions parsed and the release's own constraints.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// Product (the release's).
    pub product: &'a str,
    /// Family (the release's).
    pub family: &'a str,
    /// Hardware revisions (the release's).
    pub hardware_revisions: Vec<&'a str>,
    /// Version range.
    pub min_version: Version,
    /// Version range.
    pub max_version: Version,
    /// The release's version.
    pub release_version: Version,
    /// The operator's part.
    pub spec: &'a ScopeSpec,
}

/// Every check of one device (docs/eligibility.md, "Checks"): the reasons it is not eligible,
/// empty when it is.
pub fn decide(
    device: &Device,
    revoked_at: Option<UnixTime>,
    scope: &Scope<'_>,
    now: UnixTime,
) -> Reasons {
    let mut r = Reasons::default();
    let cert = &device.cert;
    if cert.ca.is_none() {
        r.insert(Reason::CertificateUntrusted);
    }
    if now.0 < cert.not_before || now.0 > cert.not_after {
        r.insert(Reason::CertificateExpired);
    }
    if revoked_at.is_some_and(|t| t.0 <= now.0) {
        r.insert(Reason::CertificateRevoked);
    }
    if cert.subject_cn != device.id {
        r.insert(Reason::CertificateNameMismatch);
    }
    if device.lifecycle != Lifecycle::Active {
        r.insert(Reason::LifecycleNotActive);
    }
    if device.product != scope.product {
        r.insert(Reason::WrongProduct);
    }
    if device.family != scope.family {
        r.insert(Reason::WrongFamily);
    }
    if !scope
        .hardware_revisions
        .contains(&device.hardware_revision.as_str())
    {
        r.insert(Reason::WrongHardware);
    }
    if device.version < scope.min_version || device.version > scope.max_version {
        r.insert(Reason::VersionOutOfRange);
    }
    if device.version >= scope.release_version {
        r.insert(Reason::VersionNotBelowRelease);
    }
    let spec = scope.spec;
    let in_cohort = spec.cohorts.is_empty()
        || device.cohorts.iter().any(|c| spec.cohorts.contains(c))
        || spec.include.contains(&device.id);
    if !in_cohort {
        r.insert(Reason::NotInCohort);
    }
    if spec.exclude.contains(&device.id) {
        r.insert(Reason::Excluded);
    }
    if spec.quarantine.contains(&device.id) {
        r.insert(Reason::Quarantined);
    }
    r
}

/// What a plan decided.
#[derive(Debug, Clone)]
pub struct PlanReport {
    /// Devices considered.
    pub devices: u64,
    /// Eligible devices.
    pub eligible: u64,
    /// Rejected devices.
    pub rejected: u64,
    /// Rejected devices per reason (a device with two reasons counts under both).
    pub by_reason: Vec<(Reason, u64)>,
    /// Index of the plan entry.
    pub plan_index: u64,
    /// Indices of the decisions: `[first, end)`.
    pub decisions: std::ops::Range<u64>,
    /// The checkpoint over everything.
    pub checkpoint: String,
    /// Stage device counts.
    pub stages: Vec<(String, u64)>,
    /// HSM signatures made: the plan (release key) and the checkpoint (log key).
    pub hsm_signatures: u64,
    /// The campaign's sequence in its device class (formats.md §5.1).
    pub campaign_sequence: u64,
}

/// A release in the log: its statement's facts and its COSE digest.
struct LoggedRelease {
    index: u64,
    cose: Vec<u8>,
}

impl LoggedRelease {
    fn statement(&self) -> Result<ReleaseStatement<'_>> {
        let cose = CoseSign1::decode(&self.cose)?;
        Ok(ReleaseStatement::decode(cose.payload)?)
    }

    fn digest(&self) -> Hash {
        Software.sha256_of(&[&self.cose])
    }
}

fn find_release(session: &Session<'_>, id: &str) -> Result<LoggedRelease> {
    match session.appliance().vault().release_entry(id) {
        Ok((index, cose)) => Ok(LoggedRelease { index, cose }),
        Err(cairn_vault::Error::UnknownRelease(_)) => Err(Error::Plan(format!(
            "release {id:?} is not in the log (sign it first)"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn id<'a>(what: &str, s: &'a str) -> Result<Id<'a>> {
    Id::new(s).ok_or_else(|| Error::Plan(format!("{what} {s:?} is not a valid identifier")))
}

/// What the plan's manifests point at.
struct Targets<'a> {
    /// Release id, COSE digest and version of the release.
    release: (Id<'a>, Hash, Version),
    /// Release id and COSE digest of the rollback target.
    rollback: (Id<'a>, Hash),
    campaign: Id<'a>,
    /// The campaign's sequence in its class (formats.md §5.1).
    sequence: u64,
}

/// Every device decided, in id order.
struct Decided {
    decisions: Vec<Vec<u8>>,
    eligible: u64,
    total: u64,
    by_reason: [u64; 14],
}

/// Decides every registered device: two manifests (update, rollback) for an eligible one, a
/// rejection with every failed check for the others. Devices are decided on every core, in
/// contiguous runs, and the decisions kept in device-id order.
fn decide_all(
    registry: &Registry,
    scope: &Scope<'_>,
    targets: &Targets<'_>,
    now: UnixTime,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Decided> {
    let devices = registry.devices()?;
    let revocations = registry.revocations()?;
    let total = devices.len() as u64;
    progress(0, total);
    let parts = parallel::map_runs(
        &devices,
        || Error::Plan("an eligibility worker panicked".into()),
        |_, part| decide_part(part, &revocations, scope, targets, now),
    )?;
    let mut all = Decided {
        decisions: Vec::with_capacity(devices.len() * 2),
        eligible: 0,
        total,
        by_reason: [0; 14],
    };
    let mut decided = 0;
    for part in parts {
        all.decisions.extend(part.decisions);
        all.eligible += part.eligible;
        for (a, b) in all.by_reason.iter_mut().zip(part.by_reason) {
            *a += b;
        }
        decided += part.total;
        progress(decided, total);
    }
    progress(total, total);
    Ok(all)
}

fn decide_part(
    devices: &[Device],
    revocations: &std::collections::HashMap<String, UnixTime>,
    scope: &Scope<'_>,
    targets: &Targets<'_>,
    now: UnixTime,
) -> Result<Decided> {
    let mut out = Decided {
        decisions: Vec::with_capacity(devices.len() * 2),
        eligible: 0,
        total: devices.len() as u64,
        by_reason: [0; 14],
    };
    let (release_id, release_digest, release_version) = targets.release;
    let (rollback_id, rollback_digest) = targets.rollback;
    for device in devices {
        let revoked_at = device.cert.ca.as_ref().and_then(|ca| {
            revocations
                .get(&format!("{ca}:{}", device.cert.serial))
                .copied()
        });
        let reasons = decide(device, revoked_at, scope, now);
        let device_id = id("device id", &device.id)?;
        if reasons.is_empty() {
            out.eligible += 1;
            let hardware_revision = id("hardware revision", &device.hardware_revision)?;
            for (purpose, digest, release_id, max) in [
                (
                    Purpose::Update,
                    release_digest,
                    release_id,
                    scope.max_version,
                ),
                (
                    Purpose::Rollback,
                    rollback_digest,
                    rollback_id,
                    release_version,
                ),
            ] {
                out.decisions.push(
                    Manifest {
                        device_id,
                        release_id,
                        release_digest: digest,
                        hardware_revision,
                        min_version: scope.min_version,
                        max_version: max,
                        campaign: targets.campaign,
                        purpose,
                        decided_at: now,
                        campaign_sequence: targets.sequence,
                    }
                    .to_cbor(),
                );
            }
        } else {
            for r in reasons.iter() {
                out.by_reason[usize::try_from(r.code()).unwrap_or(0)] += 1;
            }
            out.decisions.push(
                Rejection {
                    device_id,
                    release_id,
                    campaign: targets.campaign,
                    reasons,
                    decided_at: now,
                }
                .to_cbor(),
            );
        }
    }
    Ok(out)
}

/// SHA-256 over the leaf hashes of `decisions`, in order (the leaf hashes on every core).
fn decisions_digest(decisions: &[Vec<u8>]) -> Result<Hash> {
    let leaves = parallel::map_runs(
        decisions,
        || Error::Plan("a digest worker panicked".into()),
        |_, part| {
            Ok(part
                .iter()
                .map(|d| leaf_hash(&Software, d))
                .collect::<Vec<Hash>>())
        },
    )?;
    let mut digest = Sha256::new();
    for leaf in leaves.iter().flatten() {
        digest.update(leaf);
    }
    Ok(digest.finalize().into())
}

impl crate::appliance::Appliance {
    /// Refuses a campaign id the log already holds (a campaign is planned once), naming where its
    /// plan is and what to do; `rollout plan` checks it before any passphrase is asked.
    pub fn check_new_campaign(&self, campaign: &str) -> Result<()> {
        id("campaign", campaign)?;
        let vault = self.vault();
        let indices = vault.query_indices(Query::Campaign(campaign))?;
        if indices.is_empty() {
            return Ok(());
        }
        let mut plan = None;
        for &index in &indices {
            if EntryHeader::peek(&vault.entry(index)?)?.kind == Kind::PLAN {
                plan = Some(index);
                break;
            }
        }
        Err(Error::Plan(match plan {
            Some(index) => format!(
                "campaign {campaign:?} already exists in the log: its plan is entry {index}. A \
                 campaign is planned once: if an interrupted `rollout plan` logged it, it is \
                 complete (take it to the relay with `cairn bundle export`); otherwise choose a \
                 new campaign id"
            ),
            None => format!("campaign {campaign:?} already exists in the log"),
        }))
    }
}

impl Session<'_> {
    /// Checks the plan's campaign is new, and its release and rollback
    /// target are in the log, the target an earlier release of the same product and family.
    fn plan_releases(&self, spec: &PlanSpec) -> Result<(LoggedRelease, LoggedRelease)> {
        self.appliance().check_new_campaign(&spec.campaign)?;
        let release = find_release(self, &spec.release)?;
        let rollback = find_release(self, &spec.rollback_release)?;
        let statement = release.statement()?;
        let back = rollback.statement()?;
        if back.security_epoch < statement.security_epoch {
            return Err(Error::Plan(format!(
                "rollback target {} has security epoch {}, below the release's {}: a device that installed {} would refuse it at boot (anti-rollback); sign the rollback target at epoch {} or more",
                spec.rollback_release,
                back.security_epoch.0,
                statement.security_epoch.0,
                spec.release,
                statement.security_epoch.0
            )));
        }
        if let Some(hw) = statement
            .hardware_revisions
            .iter()
            .find(|hw| !back.hardware_revisions.contains(hw))
        {
            return Err(Error::Plan(format!(
                "rollback target {} does not run on hardware revision {hw}, which the release covers",
                spec.rollback_release
            )));
        }
        if rollback.index >= release.index
            || back.version >= statement.version
            || back.product != statement.product
            || back.family != statement.family
        {
            return Err(Error::Plan(format!(
                "rollback target {} ({}) must be an earlier signed release of {} {} below {}",
                spec.rollback_release,
                back.version,
                statement.product,
                statement.family,
                statement.version
            )));
        }
        Ok((release, rollback))
    }

    /// `cairn rollout plan`: decides every registered device, validates and signs the plan, and
    /// logs plan and decisions under one checkpoint. Nothing is signed if anything is invalid.
    pub fn plan_rollout(
        &self,
        registry: &Registry,
        spec: &PlanSpec,
        now: UnixTime,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PlanReport> {
        // The file's own checks first: a bad plan is refused before a device is decided.
        let checked = spec.check()?;
        let (release, rollback) = self.plan_releases(spec)?;
        let statement = release.statement()?;
        let back = rollback.statement()?;
        let hardware: Vec<&str> = statement.hardware_revisions.iter().collect();
        let scope = Scope {
            product: statement.product.as_str(),
            family: statement.family.as_str(),
            hardware_revisions: hardware,
            min_version: checked.min_version,
            max_version: checked.max_version,
            release_version: statement.version,
            spec: &spec.scope,
        };

        let (release_digest, rollback_digest) = (release.digest(), rollback.digest());
        // Strictly increasing per class, from the log: this plan closes every earlier campaign of
        // the class (its checkpoint carries the new `cairn-campaign-floor`, formats.md §5.1).
        let sequence = self
            .appliance()
            .vault()
            .next_campaign_sequence(scope.product, scope.family)?;
        let targets = Targets {
            release: (statement.release_id, release_digest, statement.version),
            rollback: (back.release_id, rollback_digest),
            campaign: checked.campaign,
            sequence,
        };
        let Decided {
            decisions,
            eligible,
            total,
            by_reason,
        } = decide_all(registry, &scope, &targets, now, progress)?;
        crate::interrupted::reached("decided");
        let counts = spec.stage_counts(eligible)?;
        let jobs = spec.jobs_controls(eligible)?;

        // The plan binds the decisions through their leaf hashes.
        let decisions_digest = decisions_digest(&decisions)?;
        let stages = spec.stages(&counts, &checked.stage_names);
        let rejected = total - eligible;
        let plan = RolloutPlan {
            campaign: checked.campaign,
            release_id: statement.release_id,
            release_digest,
            rollback_release_id: back.release_id,
            rollback_digest,
            stages: Stages::Slice(&stages),
            max_attempts: spec.max_attempts,
            backoff_secs: spec.backoff_secs,
            quarantine_after_failures: spec.quarantine_after_failures,
            quarantine_on_verification_failure: spec.quarantine_on_verification_failure,
            eligible,
            rejected,
            decisions_digest,
            created_at: now,
            campaign_sequence: sequence,
            jobs,
        };
        let plan_bytes = plan.to_cbor();
        // The encoder and the decoder agree on every rule before anything is signed.
        RolloutPlan::decode(&plan_bytes)?;
        let cose = self.sign_with(KeyRole::Release, &plan_bytes)?;
        crate::interrupted::reached("signed");
        let entry = SignedEntry {
            kind: Kind::PLAN,
            cose_sign1: &cose,
        }
        .to_cbor();
        let mut entries = Vec::with_capacity(decisions.len() + 1);
        entries.push(entry);
        entries.extend(decisions);
        let (first, checkpoint) =
            self.log_entries(&format!("rollout plan {}", spec.campaign), entries)?;
        let plan_index = first + 1;
        Ok(PlanReport {
            devices: total,
            eligible,
            rejected,
            by_reason: Reason::ALL
                .into_iter()
                .map(|r| (r, by_reason[usize::try_from(r.code()).unwrap_or(0)]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            plan_index,
            decisions: plan_index + 1..plan_index + 1 + total + eligible,
            checkpoint,
            stages: spec
                .stages
                .iter()
                .map(|s| s.name.clone())
                .zip(counts)
                .collect(),
            hsm_signatures: 2,
            campaign_sequence: sequence,
        })
    }
    /// `cairn rollout approve`: signs a gate approval (formats.md §4.10) for the campaign's plan,
    /// opening `stage` (whose previous stage has an approval gate) or resuming a rollout the relay
    /// paused in `stage`, and logs it with the session record. The relay acts on it once a bundle
    /// carries it over.
    pub fn approve(
        &self,
        campaign: &str,
        stage: u64,
        action: ApprovalAction,
        now: UnixTime,
    ) -> Result<ApprovalReport> {
        let campaign_id = id("campaign", campaign)?;
        let vault = self.appliance().vault();
        let mut plan_entry = None;
        for index in vault.query_indices(Query::Campaign(campaign))? {
            let entry = vault.entry(index)?;
            if EntryHeader::peek(&entry)?.kind == Kind::PLAN {
                plan_entry = Some((index, entry));
                break;
            }
        }
        let (plan_index, entry) = plan_entry.ok_or_else(|| {
            Error::Plan(format!(
                "campaign {campaign:?} has no rollout plan in the log"
            ))
        })?;
        let signed = SignedEntry::decode(&entry, Kind::PLAN)?;
        let cose = CoseSign1::decode(signed.cose_sign1)?;
        let plan = RolloutPlan::decode(cose.payload)?;
        let stages: Vec<Stage<'_>> = plan.stages.iter().collect();
        let Some(target) = stages.get(usize::try_from(stage).unwrap_or(usize::MAX)) else {
            return Err(Error::Plan(format!(
                "campaign {campaign:?} has {} stages (0 to {}); there is no stage {stage}",
                stages.len(),
                stages.len().saturating_sub(1)
            )));
        };
        if action == ApprovalAction::OpenStage {
            let gated = stage
                .checked_sub(1)
                .and_then(|p| stages.get(usize::try_from(p).ok()?))
                .is_some_and(|p| p.gate == Gate::Approval);
            if !gated {
                return Err(Error::Plan(format!(
                    "stage {stage} ({}) of campaign {campaign:?} opens without an approval: the stage before it has an automatic gate, or it is the first",
                    target.name
                )));
            }
        }
        let approval = Approval {
            campaign: campaign_id,
            plan_digest: Sha256::digest(signed.cose_sign1).into(),
            stage,
            action,
            approved_at: now,
        };
        let cose = self.sign_with(KeyRole::Release, &approval.to_cbor())?;
        let entry = SignedEntry {
            kind: Kind::APPROVAL,
            cose_sign1: &cose,
        }
        .to_cbor();
        let (first, checkpoint) = self.log_entries(
            &format!("rollout approve {campaign} {} {stage}", action.name()),
            vec![entry],
        )?;
        Ok(ApprovalReport {
            plan_index,
            index: first + 1,
            stage_name: target.name.as_str().to_owned(),
            checkpoint,
        })
    }
}

/// What `cairn rollout approve` logged.
#[derive(Debug, Clone)]
pub struct ApprovalReport {
    /// Index of the plan approved.
    pub plan_index: u64,
    /// Index of the approval entry.
    pub index: u64,
    /// The stage's name.
    pub stage_name: String,
    /// The checkpoint over it.
    pub checkpoint: String,
}
