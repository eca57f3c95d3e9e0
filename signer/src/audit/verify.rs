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
use std::ops::Range;

use cairn_vault::DOCUMENTATION_RETENTION_SECS;
use cairn_verifier::campaign::ApprovalAction;
use cairn_verifier::cose::{CoseSign1, ReleaseKey};
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::custody::{KeyAction, KeyRole};
use cairn_verifier::rollout::{Gate, RolloutPlan};
use cairn_verifier::statement::{Purpose, Statement};
use cairn_verifier::types::Hash;
use sha2::{Digest, Sha256};

use super::complete::check_counted_kinds;
use super::facts::{Fact, whole};
use super::pack::Pack;
use super::relay_log::check_relay_log;
use super::sections::{Decoded, Plain, check_section, checkpoint_root, gaps};
pub use super::verified::{
    ApprovalFacts, CampaignEventFacts, DeviceEventFacts, Finding, PlanFacts, ReleaseFacts,
    StageFacts, Verified,
};
use super::witnessed::check_witnesses;
use crate::ceremony::verify_ceremony_entry;
use crate::certs;
use crate::witness::Policy;

/// Verifies an evidence pack against `root_der`, the root certificate the custodians published.
/// Never fails as a function: everything wrong is a [`Finding`] in the result.
pub fn verify(bytes: &[u8], root_der: &[u8]) -> Verified {
    verify_pack(bytes, root_der, None)
}

/// [`verify`], and the signer checkpoint's witness quorum against `policy` (the one the devices
/// enforce): a missing quorum is a finding naming the missing witnesses (docs/witness.md).
pub fn verify_with_witnesses(bytes: &[u8], root_der: &[u8], policy: &Policy) -> Verified {
    verify_pack(bytes, root_der, Some(policy))
}

fn verify_pack(bytes: &[u8], root_der: &[u8], policy: Option<&Policy>) -> Verified {
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
    if let Some(policy) = policy {
        check_witnesses(&mut v, &pack, policy);
    }
    v
}
/// Checks the chain of trust in the order docs/audit.md gives, one function per step; each step
/// hands the later ones what it established.
fn check<'p>(v: &mut Verified, pack: &'p Pack<'p>, root_der: &[u8]) {
    let anchor = check_certificates(v, pack, root_der);
    let (signer, mut release_keys) = check_signer_log(v, pack, root_der);
    check_counted_kinds(v, pack, &signer);
    check_key_statements(v, pack, anchor.as_ref(), &signer, &mut release_keys);
    let release_cose = check_releases(v, pack, &signer, &release_keys);
    let (eligible, plan_digest) = check_plan(v, pack, &signer, &release_keys, &release_cose);
    check_approvals(v, pack, &signer, &release_keys, plan_digest);
    check_relay_log(v, pack, &signer, &eligible);
}

/// Step 1, certificates: the anchor, then the ceremony's, then rotations'. Returns the anchor, if
/// it parses.
fn check_certificates(
    v: &mut Verified,
    pack: &Pack<'_>,
    root_der: &[u8],
) -> Option<x509_cert::Certificate> {
    let anchor = match certs::from_der(root_der, "root") {
        Ok(c) => Some(c),
        Err(e) => {
            v.fail("trust anchor", e.to_string());
            None
        }
    };
    match pack_certificate(pack, "root") {
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
    anchor
}

/// Step 2, the signer log: entry 0 is the ceremony record the anchor signed, which gives the log
/// key that signs the checkpoint and the first release key. Returns the decoded section and the
/// release keys so far.
fn check_signer_log<'p>(
    v: &mut Verified,
    pack: &'p Pack<'p>,
    root_der: &[u8],
) -> (Decoded<'p>, Vec<ReleaseKeyAt>) {
    let signer_origin = pack.signer.origin;
    let mut log_key = None;
    let mut release_keys: Vec<ReleaseKeyAt> = Vec::new();
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
                match pack_certificate(pack, name) {
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
                release_keys.push(("release-0".into(), k, None));
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
    let (signer, _) = check_section(v, "signer log", &pack.signer, signer_root, &Plain);
    (signer, release_keys)
}

/// Step 3, key statements (root-signed): rotations add release keys.
fn check_key_statements(
    v: &mut Verified,
    pack: &Pack<'_>,
    anchor: Option<&x509_cert::Certificate>,
    signer: &Decoded<'_>,
    release_keys: &mut Vec<ReleaseKeyAt>,
) {
    let root_key = anchor
        .and_then(|a| certs::verifier_key(a, "root").ok())
        .map(|k| ReleaseKey::new(k, &Software));
    let mut generation = 0;
    for (index, _, s) in signer.statements() {
        let Some(Statement::Key { entry, statement }) = whole(s.as_ref()) else {
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
        // A rotation or revocation of a release key retires the key it names from this index
        // on (formats.md §4.7: key 5 is the SHA-256 of the key's SubjectPublicKeyInfo).
        if verified && statement.role == KeyRole::Release {
            for (_, key, retired) in release_keys.iter_mut() {
                if retired.is_none()
                    && <[u8; 32]>::from(Sha256::digest(key.spki_der())) == statement.key_id
                {
                    *retired = Some(*index);
                }
            }
        }
        if statement.action == KeyAction::Rotate && statement.role == KeyRole::Release {
            generation += 1;
            let name = format!("release-{generation}");
            if pack_certificate(pack, &name) != Some(statement.new_certificate) {
                v.fail(
                    format!("certificate {name}"),
                    format!("missing or not the one key statement {index} certifies"),
                );
            }
            if let Ok(k) = certs::from_der(statement.new_certificate, &name)
                .and_then(|c| certs::verifier_key(&c, &name))
            {
                release_keys.push((name, k, None));
            }
        }
    }
}

/// Step 4, releases, and their retention. Returns each release's signer log index and the
/// SHA-256 of its signed statement, by release id.
fn check_releases(
    v: &mut Verified,
    pack: &Pack<'_>,
    signer: &Decoded<'_>,
    release_keys: &[ReleaseKeyAt],
) -> BTreeMap<String, (u64, Hash)> {
    let mut release_cose: BTreeMap<String, (u64, Hash)> = BTreeMap::new();
    for (index, _, s) in signer.statements() {
        let Some(Statement::Release { entry, statement }) = whole(s.as_ref()) else {
            continue;
        };
        let key = match signed_by(entry.cose_sign1, release_keys, *index) {
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
        // An MCUboot release's statement must be able to be its image's header and counter.
        if statement.mcuboot_hash.is_some()
            && (cairn_verifier::mcuboot::ImageVersion::of_release(statement.version).is_none()
                || u32::try_from(statement.security_epoch.0).is_err())
        {
            v.fail(
                format!("signer log entry {index} (release {id})"),
                format!(
                    "an MCUboot release whose version {} or security epoch {} no MCUboot header can carry",
                    statement.version, statement.security_epoch
                ),
            );
        }
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
            custodians: session_before(signer, *index),
            public_key: release_keys
                .iter()
                .find(|(name, _, _)| *name == key)
                .map(|(_, k, _)| *k),
            key,
            mcuboot_hash: statement.mcuboot_hash.map(hex::encode),
            security_epoch: statement.security_epoch.0,
        });
    }
    release_cose
}

/// Step 5, the campaign's plan, its batch and every decision. Returns the devices eligible for
/// the update and the SHA-256 of the signed plan.
fn check_plan<'a>(
    v: &mut Verified,
    pack: &Pack<'_>,
    signer: &'a Decoded<'_>,
    release_keys: &[ReleaseKeyAt],
    release_cose: &BTreeMap<String, (u64, Hash)>,
) -> (HashSet<&'a str>, Option<Hash>) {
    let plans: Vec<_> = signer
        .statements()
        .filter_map(|(i, _, s)| match whole(s.as_ref()) {
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
            if let Err(e) = signed_by(entry.cose_sign1, release_keys, p) {
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
            let session = session_before(signer, p);
            if session.is_empty() {
                v.fail(
                    format!("signer log entry {}", p.saturating_sub(1)),
                    "missing or not a session record: the plan's batch starts with the custodians who signed it",
                );
            }
            let (decided, want) = check_decisions(v, pack, signer, p, plan, &item);
            super::complete::check_campaign_sequence(v, pack, signer, plan, want.clone(), &item);
            eligible = decided;
            v.plan = Some(plan_facts(p, plan, &want, session));
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
    (eligible, plan_digest)
}

/// Step 5, the plan's batch: the `2 × eligible + rejected` entries right after plan `p` are its
/// update and rollback manifests and rejections, all of this campaign, and the plan's decisions
/// digest and counts are theirs. Returns the devices eligible for the update and the batch's
/// indices.
#[expect(
    clippy::many_single_char_names,
    reason = "p the plan's index, k its decisions, as in the step before it"
)]
fn check_decisions<'a>(
    v: &mut Verified,
    pack: &Pack<'_>,
    signer: &'a Decoded<'_>,
    p: u64,
    plan: &RolloutPlan<'_>,
    item: &str,
) -> (HashSet<&'a str>, Range<u64>) {
    let mut eligible = HashSet::new();
    let k = 2 * plan.eligible + plan.rejected;
    let want = p + 1..p + 1 + k;
    let missing = gaps(signer, want.clone());
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
    let batch = signer.range(want.clone());
    // An update and a rollback manifest a device: sized once, not grown a million times.
    eligible.reserve(batch.len() / 2);
    for e in batch.iter() {
        let (i, s) = (e.0, &e.2);
        digest.update(e.1.0);
        match (s, whole(s.as_ref())) {
            (Some(Fact::Manifest(m)), _) if m.campaign.as_str() == pack.campaign => {
                if m.purpose == Purpose::Update {
                    updates += 1;
                    eligible.insert(m.device_id.as_str());
                } else {
                    rollbacks += 1;
                }
            }
            (_, Some(Statement::Rejection(r))) if r.campaign.as_str() == pack.campaign => {
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
            item,
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
            item,
            format!(
                "it counts {} eligible and {} rejected; its batch holds {updates} update and {rollbacks} rollback manifests and {rejections} rejections",
                plan.eligible, plan.rejected
            ),
        );
    }
    (eligible, want)
}

/// What the summary shows of plan `p`, whose batch is `decisions` and whose session had
/// `session`'s custodians.
fn plan_facts(
    p: u64,
    plan: &RolloutPlan<'_>,
    decisions: &Range<u64>,
    session: Vec<String>,
) -> PlanFacts {
    PlanFacts {
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
        jobs_controls: plan.jobs.map(|j| j.to_string()),
        eligible: plan.eligible,
        rejected: plan.rejected,
        created_at: plan.created_at.0,
        decisions: [decisions.start, decisions.end],
        custodians: session,
    }
}

/// Step 6, gate approvals: signed by a release key, for the campaign's plan.
fn check_approvals(
    v: &mut Verified,
    pack: &Pack<'_>,
    signer: &Decoded<'_>,
    release_keys: &[ReleaseKeyAt],
    plan_digest: Option<Hash>,
) {
    for (index, _, s) in signer.statements() {
        let Some(Statement::Approval { entry, approval }) = whole(s.as_ref()) else {
            continue;
        };
        if approval.campaign.as_str() != pack.campaign {
            continue;
        }
        let item = format!("signer log entry {index} (gate approval)");
        if let Err(e) = signed_by(entry.cose_sign1, release_keys, *index) {
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
            custodians: session_before(signer, *index),
        });
    }
}

/// The pack's certificate `name` (`root`, `release-<n>`, `log`), DER.
fn pack_certificate<'p>(pack: &Pack<'p>, name: &str) -> Option<&'p [u8]> {
    pack.certificates
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

/// The name of the release key in `keys` whose signature `cose` carries.
/// A release key: its certificate's name in the pack, the key, and the signer-log index of the
/// key statement that retired it (a revocation, or a rotation to a new key), if any.
type ReleaseKeyAt = (String, PublicKey, Option<u64>);

/// The name of the release key that signed `cose`, logged at signer-log entry `index`. A key
/// retired by a key statement logged before `index` no longer signs: revocations are judged by
/// log position (the log orders them; the pack holds every key statement, step 5b).
fn signed_by(cose: &[u8], keys: &[ReleaseKeyAt], index: u64) -> Result<String, String> {
    let cose = CoseSign1::decode(cose).map_err(|e| e.to_string())?;
    let (name, _, retired) = keys
        .iter()
        .find(|(_, k, _)| {
            cose.verify(&ReleaseKey::new(*k, &Software), &Software)
                .is_ok()
        })
        .ok_or_else(|| "no release key of the pack verifies its signature".to_owned())?;
    match retired {
        Some(at) if *at < index => Err(format!(
            "signed by {name}, which key statement {at} retired before this entry was logged"
        )),
        _ => Ok(name.clone()),
    }
}

/// The custodians of the session record just before signer log entry `index` (the session that
/// signed it), if it is one.
fn session_before(signer: &Decoded<'_>, index: u64) -> Vec<String> {
    match index
        .checked_sub(1)
        .and_then(|i| signer.find(i))
        .and_then(|e| whole(e.2.as_ref()))
    {
        Some(Statement::Session(s)) => s.custodians.iter().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use cairn_verifier::test_support::{Fixture, public_key, test_key};

    use super::signed_by;

    #[test]
    fn a_release_key_signs_only_before_the_key_statement_that_retired_it() {
        let f = Fixture::new();
        let release = f.build(&f.spec()).release;
        let key = public_key(&test_key(Fixture::RELEASE_KEY));
        let keys = [("release-0".to_owned(), key, Some(40))];
        assert_eq!(signed_by(&release, &keys, 39), Ok("release-0".into()));
        let err = signed_by(&release, &keys, 41).unwrap_err();
        assert!(
            err.contains("release-0") && err.contains("key statement 40 retired"),
            "{err}"
        );
        let live = [("release-0".to_owned(), key, None)];
        assert_eq!(signed_by(&release, &live, 41), Ok("release-0".into()));
    }
}
