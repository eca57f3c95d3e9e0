//! `cairn audit export`: a campaign's evidence pack from the signer's log and its relay-log mirror
//! (docs/audit.md, "What a pack holds").

use std::collections::BTreeSet;

use cairn_vault::{Query, Vault};
use cairn_verifier::custody::{KeyAction, KeyRole};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::statement::{EntryHeader, Kind, Statement};
use cairn_verifier::types::{Hash, UnixTime};

use super::pack::{Pack, RetentionRecord, Section, runs_of};
use crate::appliance::Appliance;
use crate::ceremony::verify_ceremony_entry;
use crate::error::{Error, Result};

/// The signer-log indices a campaign's evidence needs: the ceremony record (entry 0), every key
/// statement, the release and rollback target with their session records, the plan's batch
/// (session record, plan, every decision), the campaign's gate approvals, and every relay
/// checkpoint record. Returns them with the plan's index.
fn signer_selection(vault: &Vault, campaign: &str) -> Result<(BTreeSet<u64>, u64)> {
    let mut selected = BTreeSet::from([0]);
    let mut plan = None;
    for index in vault.query_indices(Query::Kind(Kind::PLAN))? {
        let entry = vault.entry(index)?;
        if let Statement::Plan { plan: p, .. } = Statement::decode(&entry)?
            && p.campaign.as_str() == campaign
        {
            let decisions = 2 * p.eligible + p.rejected;
            plan = Some((
                index,
                p.release_id.as_str().to_owned(),
                p.rollback_release_id.as_str().to_owned(),
            ));
            selected.extend(index.saturating_sub(1)..=index + decisions);
        }
    }
    for index in vault.query_indices(Query::Kind(Kind::APPROVAL))? {
        let entry = vault.entry(index)?;
        if Statement::decode(&entry)?
            .campaign()
            .is_some_and(|c| c.as_str() == campaign)
        {
            selected.insert(index);
        }
    }
    let (plan_index, release, rollback) = plan.ok_or_else(|| {
        Error::Plan(format!(
            "campaign {campaign:?} has no rollout plan in the log"
        ))
    })?;
    let mut signed: Vec<u64> = Vec::new();
    for id in [&release, &rollback] {
        signed.push(vault.release_entry(id)?.0);
    }
    signed.extend(vault.query_indices(Query::Kind(Kind::KEY))?);
    signed.extend(vault.query_indices(Query::Kind(Kind::RELAY_CHECKPOINT))?);
    signed.extend(selected.iter().copied().filter(|&i| i != 0));
    // Each with the session record that names the custodians who did it.
    for index in signed {
        selected.insert(index);
        if let Some(before) = index.checked_sub(1)
            && !selected.contains(&before)
            && EntryHeader::peek(&vault.entry(before)?)?.kind == Kind::SESSION
        {
            selected.insert(before);
        }
    }
    Ok((selected, plan_index))
}

fn section<'a>(
    vault: &Vault,
    origin: &'a str,
    checkpoint: &'a str,
    selected: &[u64],
    store: &'a [(Hash, Vec<u8>)],
) -> Result<Section<'a>> {
    let size = Checkpoint::parse(checkpoint.as_bytes())
        .map_err(|e| Error::Verification {
            what: format!("{origin} checkpoint"),
            why: e.to_string(),
        })?
        .size
        .0;
    let proof = vault.at(size)?.multi_proof(selected)?;
    Ok(Section {
        origin,
        checkpoint: checkpoint.as_bytes(),
        runs: runs_of(
            selected
                .iter()
                .zip(store)
                .map(|(&i, (h, e))| (i, *h, e.as_slice())),
        ),
        proof,
    })
}

/// Builds the evidence pack of `campaign` (docs/audit.md): every entry read back checked against
/// the tiles, a multi-leaf proof per log against its latest checkpoint. Refused when no relay
/// checkpoint was recorded yet (`cairn rollout record-state`): a pack without the rollout's
/// outcome is not the campaign's evidence.
pub fn export(appliance: &Appliance, campaign: &str, now: UnixTime) -> Result<Vec<u8>> {
    let record = appliance.relay_records()?.pop().ok_or_else(|| {
        Error::Invalid(format!(
            "no relay checkpoint is recorded in the signer's log: bring the relay's device-state bundle over with `cairn rollout record-state` before exporting campaign {campaign:?}"
        ))
    })?;
    let mirror = appliance.relay_log(&record.origin)?.ok_or_else(|| {
        Error::Invalid(format!(
            "entry {} records the relay log {:?} but {} does not exist",
            record.index,
            record.origin,
            appliance.relay_log_path().display()
        ))
    })?;
    export_logs(appliance.vault(), &mirror, campaign, now)
}

/// [`export`] from the logs themselves: the signer's and the mirror of the relay's, whose
/// checkpoint the signer's log recorded last (kind 11).
pub fn export_logs(
    vault: &Vault,
    mirror: &Vault,
    campaign: &str,
    now: UnixTime,
) -> Result<Vec<u8>> {
    let checkpoint = vault
        .latest_checkpoint()?
        .ok_or_else(|| Error::Invalid("the signer's log has no checkpoint".into()))?;
    let size = Checkpoint::parse(checkpoint.as_bytes())
        .map_err(|e| Error::Verification {
            what: "signer checkpoint".into(),
            why: e.to_string(),
        })?
        .size
        .0;
    let (selected, plan_index) = signer_selection(vault, campaign)?;
    let selected: Vec<u64> = selected.into_iter().filter(|&i| i < size).collect();
    let signer_entries = vault.entries_at(&selected)?;

    let record = crate::relaystate::relay_records(vault)?
        .pop()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no relay checkpoint is recorded in the signer's log (campaign {campaign:?})"
            ))
        })?;
    let relay_size = Checkpoint::parse(record.checkpoint.as_bytes())
        .map_err(|e| Error::Verification {
            what: "relay checkpoint".into(),
            why: e.to_string(),
        })?
        .size
        .0;
    let all: Vec<u64> = (0..relay_size).collect();
    let relay_entries = mirror.entries_at(&all)?;

    // Certificates: the ceremony's three, then each release-key rotation's.
    let ceremony = verify_ceremony_entry(&signer_entries[0].1, None)?;
    let mut certificates: Vec<(String, Vec<u8>)> = ["root", "release-0", "log"]
        .into_iter()
        .map(str::to_owned)
        .zip(ceremony.certificates.iter().cloned())
        .collect();
    let mut generation = 0;
    for (_, entry) in &signer_entries {
        // Only key statements matter here: the header says which, without decoding the millions
        // of manifests around them.
        if EntryHeader::peek(entry)?.kind != Kind::KEY {
            continue;
        }
        if let Statement::Key { statement, .. } = Statement::decode(entry)?
            && statement.action == KeyAction::Rotate
            && statement.role == KeyRole::Release
        {
            generation += 1;
            certificates.push((
                format!("release-{generation}"),
                statement.new_certificate.to_vec(),
            ));
        }
    }

    let plan_entry = vault.entry(plan_index)?;
    let Statement::Plan { plan, .. } = Statement::decode(&plan_entry)? else {
        return Err(Error::Plan(format!("entry {plan_index} is not a plan")));
    };
    let mut retention = Vec::new();
    let mut releases = Vec::new();
    for id in [plan.release_id.as_str(), plan.rollback_release_id.as_str()] {
        let (index, _) = vault.release_entry(id)?;
        let entry = vault.entry(index)?;
        let Statement::Release { statement, .. } = Statement::decode(&entry)? else {
            return Err(Error::Plan(format!("entry {index} is not release {id:?}")));
        };
        let kept = vault
            .retention(id)?
            .ok_or_else(|| Error::Plan(format!("release {id:?} has no retention record")))?;
        releases.push((id.to_owned(), statement.support_until, kept.until));
    }
    for (id, support, until) in &releases {
        retention.push(RetentionRecord {
            release: id,
            support_until: *support,
            retain_until: *until,
        });
    }

    let pack = Pack {
        campaign,
        generated_at: now,
        certificates: certificates
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect(),
        retention,
        signer: section(
            vault,
            vault.origin(),
            &checkpoint,
            &selected,
            &signer_entries,
        )?,
        relay: section(
            mirror,
            &record.origin,
            &record.checkpoint,
            &all,
            &relay_entries,
        )?,
    };
    Ok(pack.to_cbor())
}
