//! What `audit verify` found: the findings, and the facts of a pack it checked, which the summary
//! reports (docs/audit.md).

use std::collections::BTreeMap;

use cairn_verifier::crypto::PublicKey;
use serde::Serialize;

/// One thing that failed, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The item: `certificate log`, `signer log checkpoint`, `relay log entry 812`,
    /// `signer log proof`, `signer log entries 40..52`, `retention of <release>`, …
    pub item: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A release as the pack proves it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseFacts {
    /// Signer log index.
    pub index: u64,
    /// Release id.
    pub release: String,
    /// Version.
    pub version: String,
    /// Product.
    pub product: String,
    /// Security advisories it fixes.
    pub advisories: Vec<String>,
    /// Image SHA-256, hex.
    pub image_digest: String,
    /// Image size.
    pub image_size: u64,
    /// Signed at.
    pub issued_at: u64,
    /// End of support.
    pub support_until: u64,
    /// Retained until (the pack's retention record, checked).
    pub retain_until: Option<u64>,
    /// The custodians of the session that signed it (its session record), if in the pack.
    pub custodians: Vec<String>,
    /// Index of the release key certificate that verified it (`release-<n>`).
    pub key: String,
    /// For a release in MCUboot format (formats.md §8): its image's SHA256 TLV, hex.
    pub mcuboot_hash: Option<String>,
    /// Its security epoch.
    pub security_epoch: u64,
    /// The release key that verified it (for image checks, `audit::images`).
    #[serde(skip)]
    pub public_key: Option<PublicKey>,
}

/// A stage of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct StageFacts {
    /// Name.
    pub name: String,
    /// Cumulative devices.
    pub devices: u64,
    /// Soak, seconds.
    pub soak_secs: u64,
    /// Success threshold, per mille.
    pub success_permille: u16,
    /// Failure threshold, per mille.
    pub failure_permille: u16,
    /// `automatic` or `approval`.
    pub gate: &'static str,
}

/// The plan as the pack proves it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanFacts {
    /// Signer log index.
    pub index: u64,
    /// Release rolled out.
    pub release: String,
    /// Pre-signed rollback target.
    pub rollback: String,
    /// Stages.
    pub stages: Vec<StageFacts>,
    /// Install attempts per device.
    pub max_attempts: u8,
    /// First retry delay.
    pub backoff_secs: u64,
    /// Failures that quarantine a device.
    pub quarantine_after_failures: u8,
    /// A verification failure quarantines at once.
    pub quarantine_on_verification_failure: bool,
    /// The AWS IoT Jobs rollout controls (plan key 17), in AWS's names; `None` without them.
    pub jobs_controls: Option<String>,
    /// Eligible devices.
    pub eligible: u64,
    /// Rejected devices.
    pub rejected: u64,
    /// Signed at.
    pub created_at: u64,
    /// Decisions: first and last + 1 index.
    pub decisions: [u64; 2],
    /// The session's custodians.
    pub custodians: Vec<String>,
}

/// A gate approval.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalFacts {
    /// Signer log index.
    pub index: u64,
    /// Stage.
    pub stage: u64,
    /// `open-stage` or `resume`.
    pub action: &'static str,
    /// Signed at.
    pub at: u64,
    /// The session's custodians.
    pub custodians: Vec<String>,
}

/// A device event of the relay log.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceEventFacts {
    /// Relay log index.
    pub index: u64,
    /// Device.
    pub device: String,
    /// State entered (`DeviceState::name`).
    pub state: &'static str,
    /// Stage.
    pub stage: u64,
    /// Attempt.
    pub attempt: u64,
    /// When.
    pub at: u64,
    /// Who.
    pub actor: String,
    /// Why.
    pub cause: String,
    /// Whether it is about the rollback target.
    pub rollback: bool,
}

/// A campaign event of the relay log.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignEventFacts {
    /// Relay log index.
    pub index: u64,
    /// Action (`Action::name`).
    pub action: &'static str,
    /// Stage.
    pub stage: u64,
    /// Devices (for an applied approval: the approval's signer log index).
    pub devices: u64,
    /// When.
    pub at: u64,
    /// Who.
    pub actor: String,
    /// Why.
    pub cause: String,
}

/// What a pack proves, and what failed. `findings` empty: everything verified.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verified {
    /// What failed (empty when the pack verified).
    pub findings: Vec<Finding>,
    /// Campaign.
    pub campaign: String,
    /// Exported at.
    pub generated_at: u64,
    /// Root certificate SHA-256 fingerprint (colon hex).
    pub root_fingerprint: String,
    /// Custodians of the ceremony and the threshold.
    pub custodians: Vec<String>,
    /// Shares needed.
    pub threshold: u64,
    /// Signer log origin, checkpoint size and entries in the pack.
    pub signer_log: (String, u64, u64),
    /// Relay log origin, checkpoint size and entries in the pack.
    pub relay_log: (String, u64, u64),
    /// Signer log index of the relay checkpoint record used.
    pub relay_record: Option<u64>,
    /// Key statements: index, action, role, reason.
    pub key_statements: Vec<(u64, String, String, String)>,
    /// The releases.
    pub releases: Vec<ReleaseFacts>,
    /// The plan.
    pub plan: Option<PlanFacts>,
    /// Rejections by reason (a device may have several).
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Gate approvals.
    pub approvals: Vec<ApprovalFacts>,
    /// The relay's device events of the campaign, in log order.
    pub device_events: Vec<DeviceEventFacts>,
    /// The relay's campaign events, in log order.
    pub campaign_events: Vec<CampaignEventFacts>,
    /// The signer checkpoint's witnesses, when verified with a witness policy.
    pub witnesses: Option<super::witnessed::WitnessFacts>,
    /// The relay checkpoint's witnesses, when verified with a witness policy.
    pub relay_witnesses: Option<super::witnessed::WitnessFacts>,
    /// The relay key of the relay checkpoint record used (step 7), for step 8.
    #[serde(skip)]
    pub(crate) relay_key: Option<PublicKey>,
}

impl Verified {
    /// Records a finding.
    pub(crate) fn fail(&mut self, item: impl Into<String>, problem: impl Into<String>) {
        self.findings.push(Finding {
            item: item.into(),
            problem: problem.into(),
        });
    }
}
