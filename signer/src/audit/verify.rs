//! `cairn audit verify`: checks an evidence pack offline with the root certificate as the only
//! trust anchor (docs/audit.md, "How a pack is verified"), and names every item that fails.
//!
//! The chain: the root certificate (the anchor) → the ceremony record it signed (signer log entry
//! 0), which holds the release and log key certificates → the signer's checkpoint, signed by the
//! log key → every signer entry, by its leaf hash and the multi-leaf proof → the release, plan and
//! approvals, signed by a release key; the decisions, by the plan's decisions digest; the relay
//! checkpoint record (kind 11), which names the relay key → the relay's checkpoint → every relay
//! entry. Each entry carries its leaf hash so that an altered entry is named by its index, not
//! only found by a root that does not match.

use std::collections::{BTreeMap, HashSet};

use cairn_vault::DOCUMENTATION_RETENTION_SECS;
use cairn_vault::tree::{MultiProofError, multi_root};
use cairn_verifier::campaign::{Action, ApprovalAction, RelayCheckpoint};
use cairn_verifier::cose::{CoseSign1, ReleaseKey};
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::custody::{KeyAction, KeyRole};
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::rollout::Gate;
use cairn_verifier::statement::{Kind, Purpose, Statement};
use cairn_verifier::types::Hash;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::pack::{Pack, Section};
use crate::ceremony::verify_ceremony_entry;
use crate::certs;

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
}

impl Verified {
    fn fail(&mut self, item: impl Into<String>, problem: impl Into<String>) {
        self.findings.push(Finding {
            item: item.into(),
            problem: problem.into(),
        });
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::RELEASE => "release",
        Kind::MANIFEST => "device manifest",
        Kind::CEREMONY => "ceremony record",
        Kind::SESSION => "session record",
        Kind::KEY => "key statement",
        Kind::REJECTION => "rejection",
        Kind::PLAN => "rollout plan",
        Kind::APPROVAL => "gate approval",
        Kind::DEVICE_EVENT => "device event",
        Kind::CAMPAIGN_EVENT => "campaign event",
        Kind::RELAY_CHECKPOINT => "relay checkpoint record",
        _ => "entry",
    }
}

/// A log section with every entry's statement decoded.
struct Decoded<'p> {
    /// `(index, leaf hash, entry, statement)` in log order; a statement that did not decode is a
    /// finding and `None` here.
    entries: Vec<(u64, Hash, &'p [u8], Option<Statement<'p>>)>,
}

impl<'p> Decoded<'p> {
    fn find(&self, index: u64) -> Option<&(u64, Hash, &'p [u8], Option<Statement<'p>>)> {
        self.entries
            .binary_search_by_key(&index, |e| e.0)
            .ok()
            .map(|i| &self.entries[i])
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Checks a section's runs, leaf hashes and proof against its checkpoint root (the checkpoint's
/// signature is checked by the caller), and decodes every entry.
fn check_section<'p>(
    v: &mut Verified,
    log: &str,
    section: &Section<'p>,
    root: Option<(u64, Hash)>,
) -> Decoded<'p> {
    let mut indices = Vec::with_capacity(section.len());
    let mut hashes = Vec::with_capacity(section.len());
    let mut entries = Vec::with_capacity(section.len());
    let mut ordered = true;
    for run in &section.runs {
        for (i, (hash, entry)) in run.entries.iter().enumerate() {
            let index = run.start.saturating_add(i as u64);
            if indices.last().is_some_and(|&l| l >= index) {
                ordered = false;
            }
            indices.push(index);
            hashes.push(*hash);
            entries.push(*entry);
        }
    }
    if !ordered {
        v.fail(
            format!("{log} entries"),
            "the runs are not in strictly increasing index order",
        );
    }
    // Leaf hashes, on every core.
    let bad: Vec<usize> = {
        let chunk = entries.len().div_ceil(threads()).max(1);
        std::thread::scope(|s| {
            let workers: Vec<_> = entries
                .chunks(chunk)
                .zip(hashes.chunks(chunk))
                .enumerate()
                .map(|(c, (es, hs))| {
                    s.spawn(move || {
                        es.iter()
                            .zip(hs)
                            .enumerate()
                            .filter(|(_, (e, h))| leaf_hash(&Software, e) != **h)
                            .map(|(i, _)| c * chunk + i)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    for i in bad {
        v.fail(
            format!("{log} entry {}", indices[i]),
            "its bytes do not hash to the leaf hash recorded with it (the entry or the hash was altered)",
        );
    }
    if let Some((size, expected)) = root {
        match multi_root(&indices, &hashes, size, &section.proof, threads()) {
            Ok(got) if got == expected => {}
            Ok(got) => v.fail(
                format!("{log} proof"),
                format!(
                    "the entries and the {} proof hashes give root {}, not the checkpoint's {}",
                    section.proof.len(),
                    hex::encode(got),
                    hex::encode(expected)
                ),
            ),
            Err(MultiProofError::Leaves) => v.fail(
                format!("{log} entries"),
                format!(
                    "an index is repeated, out of order or beyond the checkpoint's size {size}"
                ),
            ),
            Err(e) => v.fail(format!("{log} proof"), e.to_string()),
        }
    }
    let mut decoded = Vec::with_capacity(entries.len());
    for ((index, hash), entry) in indices.into_iter().zip(hashes).zip(entries) {
        let statement = match Statement::decode(entry) {
            Ok(s) => Some(s),
            Err(e) => {
                v.fail(
                    format!("{log} entry {index}"),
                    format!("does not decode: {e}"),
                );
                None
            }
        };
        decoded.push((index, hash, entry, statement));
    }
    Decoded { entries: decoded }
}

/// Ranges of `want` not in `have` (whose entries are in index order), as `a..b` text: one walk
/// over the entries inside `want`, not a search per index.
fn gaps(have: &Decoded<'_>, want: std::ops::Range<u64>) -> Vec<String> {
    let from = have.entries.partition_point(|e| e.0 < want.start);
    let mut out = Vec::new();
    let mut next = want.start;
    for e in have.entries[from..].iter().take_while(|e| e.0 < want.end) {
        if e.0 > next {
            out.push(format!("{next}..{}", e.0));
        }
        next = next.max(e.0 + 1);
    }
    if next < want.end {
        out.push(format!("{next}..{}", want.end));
    }
    out
}

fn checkpoint_root(
    v: &mut Verified,
    item: &str,
    note: &[u8],
    origin: &str,
    key: Option<PublicKey>,
) -> Option<(u64, Hash)> {
    let cp = match Checkpoint::parse(note) {
        Ok(cp) => cp,
        Err(e) => {
            v.fail(item, format!("not a checkpoint note: {e}"));
            return None;
        }
    };
    if cp.origin != origin {
        v.fail(item, format!("origin {:?}, expected {origin:?}", cp.origin));
    }
    match key.map(|k| LogKey::new(origin, origin, k, &Software)) {
        Some(Some(k)) => {
            if let Err(e) = cp.verify(&k, &Software) {
                v.fail(item, format!("signature: {e}"));
            }
        }
        Some(None) => v.fail(item, format!("{origin:?} is not a valid key name")),
        None => v.fail(item, "no verified key to check its signature with"),
    }
    Some((cp.size.0, cp.root))
}

/// Verifies an evidence pack against `root_der`, the root certificate the custodians published.
/// Never fails as a function: everything wrong is a [`Finding`] in the result.
pub fn verify(bytes: &[u8], root_der: &[u8]) -> Verified {
    let mut v = Verified::default();
    let pack = match Pack::decode(bytes) {
        Ok(p) => p,
        Err(e) => {
            v.fail("pack", format!("not an evidence pack: {e}"));
            return v;
        }
    };
    pack.campaign.clone_into(&mut v.campaign);
    v.generated_at = pack.generated_at.0;
    v.root_fingerprint = certs::fingerprint_text(root_der);
    check(&mut v, &pack, root_der);
    v
}

#[expect(
    clippy::too_many_lines,
    clippy::many_single_char_names,
    reason = "one pass over the chain of trust, in the order docs/audit.md gives"
)]
fn check(v: &mut Verified, pack: &Pack<'_>, root_der: &[u8]) {
    // 1. Certificates: the anchor, then the ceremony's, then rotations'.
    let cert = |name: &str| {
        pack.certificates
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| *d)
    };
    let anchor = match certs::from_der(root_der, "root") {
        Ok(c) => Some(c),
        Err(e) => {
            v.fail("trust anchor", e.to_string());
            None
        }
    };
    match cert("root") {
        Some(d) if d == root_der => {}
        Some(d) => v.fail(
            "certificate root",
            format!(
                "fingerprint {} is not the trust anchor's {}",
                certs::fingerprint_text(d),
                v.root_fingerprint
            ),
        ),
        None => v.fail("certificate root", "missing from the pack"),
    }
    for (name, der) in &pack.certificates {
        match (certs::from_der(der, name), &anchor) {
            (Ok(c), Some(a)) => {
                if let Err(e) = certs::verify_issued_by(&c, a, name) {
                    v.fail(format!("certificate {name}"), e.to_string());
                }
            }
            (Err(e), _) => v.fail(format!("certificate {name}"), e.to_string()),
            (Ok(_), None) => {}
        }
    }

    // 2. The signer log: entry 0 is the ceremony record the anchor signed.
    let signer_origin = pack.signer.origin;
    let mut log_key = None;
    let mut release_keys: Vec<(String, PublicKey)> = Vec::new();
    let first = pack.signer.runs.first().and_then(|r| {
        (r.start == 0)
            .then(|| r.entries.first())
            .flatten()
            .map(|(_, e)| *e)
    });
    let anchor_fp = certs::fingerprint(root_der);
    match first.map(|e| verify_ceremony_entry(e, Some(&anchor_fp))) {
        None => v.fail(
            "signer log entry 0",
            "missing: the ceremony record anchors every key",
        ),
        Some(Err(e)) => v.fail("signer log entry 0 (ceremony record)", e.to_string()),
        Some(Ok(c)) => {
            v.custodians.clone_from(&c.custodians);
            v.threshold = u64::from(c.threshold);
            if c.origin != signer_origin {
                v.fail(
                    "signer log",
                    format!(
                        "origin {signer_origin:?} is not the ceremony's {:?}",
                        c.origin
                    ),
                );
            }
            for (name, der) in [
                ("release-0", &c.certificates[1]),
                ("log", &c.certificates[2]),
            ] {
                match cert(name) {
                    Some(d) if d == der.as_slice() => {}
                    Some(_) => v.fail(
                        format!("certificate {name}"),
                        "differs from the one the ceremony record (signer log entry 0) holds",
                    ),
                    None => v.fail(format!("certificate {name}"), "missing from the pack"),
                }
            }
            let key = |der: &[u8], what: &str| {
                certs::from_der(der, what).and_then(|c| certs::verifier_key(&c, what))
            };
            log_key = key(&c.certificates[2], "log").ok();
            if let Ok(k) = key(&c.certificates[1], "release") {
                release_keys.push(("release-0".into(), k));
            }
        }
    }
    let signer_root = checkpoint_root(
        v,
        "signer log checkpoint",
        pack.signer.checkpoint,
        signer_origin,
        log_key,
    );
    v.signer_log = (
        signer_origin.to_owned(),
        signer_root.map_or(0, |r| r.0),
        pack.signer.len() as u64,
    );
    let signer = check_section(v, "signer log", &pack.signer, signer_root);

    // 3. Key statements (root-signed): rotations add release keys.
    let root_key = anchor
        .as_ref()
        .and_then(|a| certs::verifier_key(a, "root").ok())
        .map(|k| ReleaseKey::new(k, &Software));
    let signed_by = |cose: &[u8], keys: &[(String, PublicKey)]| -> Result<String, String> {
        let cose = CoseSign1::decode(cose).map_err(|e| e.to_string())?;
        keys.iter()
            .find(|(_, k)| {
                cose.verify(&ReleaseKey::new(*k, &Software), &Software)
                    .is_ok()
            })
            .map(|(n, _)| n.clone())
            .ok_or_else(|| "no release key of the pack verifies its signature".to_owned())
    };
    let mut generation = 0;
    for (index, _, _, s) in &signer.entries {
        let Some(Statement::Key { entry, statement }) = s else {
            continue;
        };
        let item = format!("signer log entry {index} (key statement)");
        let verified = root_key.as_ref().is_some_and(|k| {
            CoseSign1::decode(entry.cose_sign1).is_ok_and(|c| c.verify(k, &Software).is_ok())
        });
        if !verified {
            v.fail(&item, "the root key's signature does not verify");
        }
        v.key_statements.push((
            *index,
            match statement.action {
                KeyAction::Rotate => "rotate",
                KeyAction::Revoke => "revoke",
            }
            .into(),
            statement.role.name().into(),
            statement.reason.as_str().into(),
        ));
        if statement.action == KeyAction::Rotate && statement.role == KeyRole::Release {
            generation += 1;
            let name = format!("release-{generation}");
            if cert(&name) != Some(statement.new_certificate) {
                v.fail(
                    format!("certificate {name}"),
                    format!("missing or not the one key statement {index} certifies"),
                );
            }
            if let Ok(k) = certs::from_der(statement.new_certificate, &name)
                .and_then(|c| certs::verifier_key(&c, &name))
            {
                release_keys.push((name, k));
            }
        }
    }

    // 4. Releases, and their retention.
    let session_before = |index: u64| -> Vec<String> {
        match index.checked_sub(1).and_then(|i| signer.find(i)) {
            Some((_, _, _, Some(Statement::Session(s)))) => {
                s.custodians.iter().map(str::to_owned).collect()
            }
            _ => Vec::new(),
        }
    };
    let mut release_cose: BTreeMap<String, (u64, Hash)> = BTreeMap::new();
    for (index, _, _, s) in &signer.entries {
        let Some(Statement::Release { entry, statement }) = s else {
            continue;
        };
        let key = match signed_by(entry.cose_sign1, &release_keys) {
            Ok(k) => k,
            Err(e) => {
                v.fail(format!("signer log entry {index} (release)"), e);
                String::new()
            }
        };
        let id = statement.release_id.as_str().to_owned();
        release_cose.insert(
            id.clone(),
            (*index, Sha256::digest(entry.cose_sign1).into()),
        );
        let record = pack.retention.iter().find(|r| r.release == id);
        let rule = statement.support_until.0.max(
            statement
                .issued_at
                .0
                .saturating_add(DOCUMENTATION_RETENTION_SECS),
        );
        if let Some(r) = record
            && (r.support_until != statement.support_until || r.retain_until.0 != rule)
        {
            v.fail(
                format!("retention of {id}"),
                format!(
                    "the pack records support until {} and retention until {}; the signed release says support until {} and the rule gives {rule}",
                    r.support_until.0, r.retain_until.0, statement.support_until.0
                ),
            );
        }
        v.releases.push(ReleaseFacts {
            index: *index,
            release: id,
            version: statement.version.to_string(),
            product: statement.product.as_str().into(),
            advisories: statement.advisories.iter().map(str::to_owned).collect(),
            image_digest: hex::encode(statement.image_digest),
            image_size: statement.image_size,
            issued_at: statement.issued_at.0,
            support_until: statement.support_until.0,
            retain_until: record.map(|r| r.retain_until.0),
            custodians: session_before(*index),
            key,
        });
    }

    // 5. The campaign's plan, its batch and every decision.
    let plans: Vec<_> = signer
        .entries
        .iter()
        .filter_map(|(i, _, _, s)| match s {
            Some(Statement::Plan { entry, plan }) if plan.campaign.as_str() == pack.campaign => {
                Some((*i, entry, plan))
            }
            _ => None,
        })
        .collect();
    let mut eligible: HashSet<&str> = HashSet::new();
    let mut plan_digest = None;
    match plans.as_slice() {
        [] => v.fail(
            "signer log",
            format!(
                "the rollout plan of campaign {:?} is missing",
                pack.campaign
            ),
        ),
        [(p, entry, plan)] => {
            let p = *p;
            let item = format!("signer log entry {p} (rollout plan)");
            if let Err(e) = signed_by(entry.cose_sign1, &release_keys) {
                v.fail(&item, e);
            }
            plan_digest = Some(<[u8; 32]>::from(Sha256::digest(entry.cose_sign1)));
            for (id, digest, what) in [
                (plan.release_id, plan.release_digest, "release"),
                (
                    plan.rollback_release_id,
                    plan.rollback_digest,
                    "rollback target",
                ),
            ] {
                match release_cose.get(id.as_str()) {
                    None => v.fail(
                        "signer log",
                        format!(
                            "the plan's {what} {id} is missing (the entry of its release statement)"
                        ),
                    ),
                    Some((_, d)) if *d != digest => v.fail(
                        &item,
                        format!("its {what} digest is not the SHA-256 of {id}'s signed statement"),
                    ),
                    Some(_) => {}
                }
                if !pack.retention.iter().any(|r| r.release == id.as_str()) {
                    v.fail(format!("retention of {id}"), "missing from the pack");
                }
            }
            let session = session_before(p);
            if session.is_empty() {
                v.fail(
                    format!("signer log entry {}", p.saturating_sub(1)),
                    "missing or not a session record: the plan's batch starts with the custodians who signed it",
                );
            }
            let k = 2 * plan.eligible + plan.rejected;
            let want = p + 1..p + 1 + k;
            let missing = gaps(&signer, want.clone());
            if !missing.is_empty() {
                v.fail(
                    format!("signer log entries {}", missing.join(", ")),
                    format!(
                        "missing: the plan at {p} decided {k} devices' entries at {}..{}",
                        want.start, want.end
                    ),
                );
            }
            let mut digest = Sha256::new();
            let (mut updates, mut rollbacks, mut rejections) = (0u64, 0u64, 0u64);
            for i in want.clone() {
                let Some((_, hash, _, s)) = signer.find(i) else {
                    continue;
                };
                digest.update(hash);
                match s {
                    Some(Statement::Manifest(m)) if m.campaign.as_str() == pack.campaign => {
                        if m.purpose == Purpose::Update {
                            updates += 1;
                            eligible.insert(m.device_id.as_str());
                        } else {
                            rollbacks += 1;
                        }
                    }
                    Some(Statement::Rejection(r)) if r.campaign.as_str() == pack.campaign => {
                        rejections += 1;
                        for reason in r.reasons.iter() {
                            *v.rejected_by_reason
                                .entry(reason.name().to_owned())
                                .or_default() += 1;
                        }
                    }
                    _ => v.fail(
                        format!("signer log entry {i}"),
                        "not a decision of this campaign, inside the plan's batch",
                    ),
                }
            }
            if missing.is_empty() && <[u8; 32]>::from(digest.finalize()) != plan.decisions_digest {
                v.fail(
                    &item,
                    format!(
                        "its decisions digest is not the SHA-256 of the leaf hashes of entries {}..{}",
                        want.start, want.end
                    ),
                );
            }
            if (updates, rollbacks, rejections) != (plan.eligible, plan.eligible, plan.rejected)
                && missing.is_empty()
            {
                v.fail(
                    &item,
                    format!(
                        "it counts {} eligible and {} rejected; its batch holds {updates} update and {rollbacks} rollback manifests and {rejections} rejections",
                        plan.eligible, plan.rejected
                    ),
                );
            }
            v.plan = Some(PlanFacts {
                index: p,
                release: plan.release_id.as_str().into(),
                rollback: plan.rollback_release_id.as_str().into(),
                stages: plan
                    .stages
                    .iter()
                    .map(|s| StageFacts {
                        name: s.name.as_str().into(),
                        devices: s.devices,
                        soak_secs: s.soak_secs,
                        success_permille: s.success_permille,
                        failure_permille: s.failure_permille,
                        gate: if s.gate == Gate::Approval {
                            "approval"
                        } else {
                            "automatic"
                        },
                    })
                    .collect(),
                max_attempts: plan.max_attempts,
                backoff_secs: plan.backoff_secs,
                quarantine_after_failures: plan.quarantine_after_failures,
                quarantine_on_verification_failure: plan.quarantine_on_verification_failure,
                eligible: plan.eligible,
                rejected: plan.rejected,
                created_at: plan.created_at.0,
                decisions: [want.start, want.end],
                custodians: session,
            });
        }
        more => v.fail(
            "signer log",
            format!(
                "{} rollout plans name campaign {:?} (entries {:?}); a campaign has one",
                more.len(),
                pack.campaign,
                more.iter().map(|m| m.0).collect::<Vec<_>>()
            ),
        ),
    }

    // 6. Gate approvals.
    for (index, _, _, s) in &signer.entries {
        let Some(Statement::Approval { entry, approval }) = s else {
            continue;
        };
        if approval.campaign.as_str() != pack.campaign {
            continue;
        }
        let item = format!("signer log entry {index} (gate approval)");
        if let Err(e) = signed_by(entry.cose_sign1, &release_keys) {
            v.fail(&item, e);
        }
        if plan_digest.is_some_and(|d| d != approval.plan_digest) {
            v.fail(&item, "it approves another plan than the campaign's");
        }
        v.approvals.push(ApprovalFacts {
            index: *index,
            stage: approval.stage,
            action: match approval.action {
                ApprovalAction::OpenStage => "open-stage",
                ApprovalAction::Resume => "resume",
            },
            at: approval.approved_at.0,
            custodians: session_before(*index),
        });
    }

    // 7. The relay log, through the last relay checkpoint record.
    let record: Option<(u64, RelayCheckpoint<'_>)> =
        signer
            .entries
            .iter()
            .rev()
            .find_map(|(i, _, _, s)| match s {
                Some(Statement::RelayCheckpoint(r)) => Some((*i, *r)),
                _ => None,
            });
    let relay_origin = pack.relay.origin;
    let relay_root = match record {
        None => {
            v.fail(
                "signer log",
                "no relay checkpoint record (kind 11): nothing vouches for the relay key",
            );
            None
        }
        Some((i, r)) => {
            v.relay_record = Some(i);
            if r.origin.as_str() != relay_origin {
                v.fail(
                    "relay log",
                    format!(
                        "origin {relay_origin:?} is not the {:?} signer log entry {i} recorded",
                        r.origin.as_str()
                    ),
                );
            }
            if r.checkpoint != pack.relay.checkpoint {
                v.fail(
                    "relay log checkpoint",
                    format!("not the checkpoint signer log entry {i} recorded"),
                );
            }
            checkpoint_root(
                v,
                "relay log checkpoint",
                pack.relay.checkpoint,
                relay_origin,
                Some(r.relay_key),
            )
        }
    };
    v.relay_log = (
        relay_origin.to_owned(),
        relay_root.map_or(0, |r| r.0),
        pack.relay.len() as u64,
    );
    let relay = check_section(v, "relay log", &pack.relay, relay_root);
    if let Some((size, _)) = relay_root {
        let missing = gaps(&relay, 0..size);
        if !missing.is_empty() {
            v.fail(
                format!("relay log entries {}", missing.join(", ")),
                format!("missing: the pack holds the whole relay log, {size} entries"),
            );
        }
    }
    // The relay log sizes the custodians recorded, by signer log index: a resume must come
    // after a record that includes the pause it lifts (formats.md §4.10).
    let recorded: Vec<(u64, u64)> = signer
        .entries
        .iter()
        .filter_map(|(i, _, _, s)| match s {
            Some(Statement::RelayCheckpoint(r)) => {
                Checkpoint::parse(r.checkpoint).ok().map(|c| (*i, c.size.0))
            }
            _ => None,
        })
        .collect();
    let mut paused_by_rule: Option<u64> = None;
    for (index, _, _, s) in &relay.entries {
        match s {
            Some(Statement::DeviceEvent(e)) if e.campaign.as_str() == pack.campaign => {
                if v.plan.is_some() && !eligible.contains(e.device_id.as_str()) {
                    v.fail(
                        format!("relay log entry {index}"),
                        format!(
                            "device {} is not eligible in campaign {} (no update manifest)",
                            e.device_id, pack.campaign
                        ),
                    );
                }
                v.device_events.push(DeviceEventFacts {
                    index: *index,
                    device: e.device_id.as_str().into(),
                    state: e.state.name(),
                    stage: e.stage,
                    attempt: e.attempt,
                    at: e.at.0,
                    actor: e.actor.as_str().into(),
                    cause: e.cause.as_str().into(),
                    rollback: v
                        .plan
                        .as_ref()
                        .is_some_and(|p| p.rollback == e.release_id.as_str()),
                });
            }
            Some(Statement::CampaignEvent(e)) if e.campaign.as_str() == pack.campaign => {
                match e.action {
                    Action::Paused if e.actor.as_str() == "rule" => paused_by_rule = Some(*index),
                    Action::Resumed => paused_by_rule = None,
                    _ => {}
                }
                if e.action == Action::ApprovalApplied {
                    let approval = match signer.find(e.devices) {
                        Some((_, _, _, Some(Statement::Approval { approval, .. })))
                            if approval.campaign.as_str() == pack.campaign =>
                        {
                            Some(approval)
                        }
                        _ => None,
                    };
                    if let (Some(a), Some(pause)) = (approval, paused_by_rule)
                        && a.action == ApprovalAction::Resume
                        && !recorded
                            .iter()
                            .any(|&(i, size)| i < e.devices && size > pause)
                    {
                        v.fail(
                            format!("signer log entry {}", e.devices),
                            format!(
                                "a resume applied by relay log entry {index}, but signed before the custodians recorded the relay log with the pause it lifts (relay log entry {pause})"
                            ),
                        );
                    }
                    if approval.is_none() {
                        v.fail(
                            format!("signer log entry {}", e.devices),
                            format!(
                                "missing or not a gate approval of this campaign, yet relay log entry {index} applied it"
                            ),
                        );
                    }
                }
                v.campaign_events.push(CampaignEventFacts {
                    index: *index,
                    action: e.action.name(),
                    stage: e.stage,
                    devices: e.devices,
                    at: e.at.0,
                    actor: e.actor.as_str().into(),
                    cause: e.cause.as_str().into(),
                });
            }
            Some(Statement::DeviceEvent(_) | Statement::CampaignEvent(_)) | None => {}
            Some(other) => v.fail(
                format!("relay log entry {index}"),
                format!(
                    "a {} has no place in the relay's log",
                    kind_name(other.kind())
                ),
            ),
        }
    }
    for (index, _, _, s) in &signer.entries {
        if let Some(s) = s
            && matches!(s.kind(), Kind::DEVICE_EVENT | Kind::CAMPAIGN_EVENT)
        {
            v.fail(
                format!("signer log entry {index}"),
                format!("a {} has no place in the signer's log", kind_name(s.kind())),
            );
        }
    }
}
