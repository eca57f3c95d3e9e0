//! Step 7 of the pack check: the relay log, through the last relay checkpoint record the signer
//! log holds, and the relay's events against the plan and the approvals.

use std::collections::HashSet;

use cairn_verifier::campaign::{Action, ApprovalAction, CampaignEvent, RelayCheckpoint};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::Hash;

use super::facts::{Fact, whole};
use super::pack::Pack;
use super::sections::{Decoded, Facts, check_section, checkpoint_root, gaps, kind_name};
use super::verified::{CampaignEventFacts, DeviceEventFacts, Verified};

/// Step 7, the relay log, through the last relay checkpoint record.
pub(super) fn check_relay_log<'p>(
    v: &mut Verified,
    pack: &'p Pack<'p>,
    signer: &Decoded<'_>,
    eligible: &HashSet<&str>,
) {
    let relay_origin = pack.relay.origin;
    let relay_root = relay_checkpoint(v, pack, signer);
    v.relay_log = (
        relay_origin.to_owned(),
        relay_root.map_or(0, |r| r.0),
        pack.relay.len() as u64,
    );
    // The device events (two a device) are checked and turned into the summary's facts in the
    // decoding pass, on every core, so the table does not keep them (docs/scale.md); what
    // depends on what came before (campaign events: a pause and its resume) and every finding
    // come from one pass over what the parts set aside, in log order, after the section's own
    // findings: the findings' order is the sequential one.
    let rollback = v.plan.as_ref().map(|p| p.rollback.clone());
    let scan = Scan {
        campaign: pack.campaign,
        has_plan: v.plan.is_some(),
        rollback: rollback.as_deref(),
        eligible,
    };
    let (relay, parts) = check_section(v, "relay log", &pack.relay, relay_root, &scan);
    if let Some((size, _)) = relay_root {
        let missing = gaps(&relay, 0..size);
        if !missing.is_empty() {
            v.fail(
                format!("relay log entries {}", missing.join(", ")),
                format!("missing: the pack holds the whole relay log, {size} entries"),
            );
        }
    }
    check_relay_entries(v, pack, signer, &relay, parts);
    check_no_relay_events(v, signer);
}

/// Step 7, the relay's checkpoint: the one the last relay checkpoint record in the signer log
/// recorded, signed by the relay key it names. Returns its size and root.
fn relay_checkpoint(
    v: &mut Verified,
    pack: &Pack<'_>,
    signer: &Decoded<'_>,
) -> Option<(u64, Hash)> {
    let relay_origin = pack.relay.origin;
    let record: Option<(u64, RelayCheckpoint<'_>)> =
        signer
            .statements()
            .rev()
            .find_map(|(i, _, s)| match whole(s.as_ref()) {
                Some(Statement::RelayCheckpoint(r)) => Some((*i, *r)),
                _ => None,
            });
    match record {
        None => {
            v.fail(
                "signer log",
                "no relay checkpoint record (kind 11): nothing vouches for the relay key",
            );
            None
        }
        Some((i, r)) => {
            v.relay_record = Some(i);
            v.relay_key = Some(r.relay_key);
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
    }
}

/// Step 7, the relay's entries: device events only about eligible devices, applied approvals
/// that the signer log holds, and nothing but device and campaign events. `parts`: what the
/// decoding pass set aside, part by part in the table's order.
fn check_relay_entries(
    v: &mut Verified,
    pack: &Pack<'_>,
    signer: &Decoded<'_>,
    relay: &Decoded<'_>,
    parts: Vec<Part>,
) {
    // The relay log sizes the custodians recorded, by signer log index: a resume must come
    // after a record that includes the pause it lifts (formats.md §4.10).
    let recorded: Vec<(u64, u64)> = signer
        .statements()
        .filter_map(|(i, _, s)| match whole(s.as_ref()) {
            Some(Statement::RelayCheckpoint(r)) => {
                Checkpoint::parse(r.checkpoint).ok().map(|c| (*i, c.size.0))
            }
            _ => None,
        })
        .collect();
    let mut paused_by_rule: Option<u64> = None;
    for part in parts {
        // The first part's facts are moved, not copied (a million of them at 1 M devices).
        if v.device_events.is_empty() {
            v.device_events = part.devices;
        } else {
            v.device_events.extend(part.devices);
        }
        for (index, (_, entry), s) in part.aside.into_iter().map(|i| &relay.entries[i]) {
            match (s, whole(s.as_ref())) {
                (Some(Fact::DeviceEvent), _) => {
                    // Decoded once already; read again for its device on this path only.
                    if let Ok(Statement::DeviceEvent(e)) = Statement::decode(entry) {
                        v.fail(
                            format!("relay log entry {index}"),
                            format!(
                                "device {} is not eligible in campaign {} (no update manifest)",
                                e.device_id, pack.campaign
                            ),
                        );
                    }
                }
                (_, Some(Statement::CampaignEvent(e))) => {
                    match e.action {
                        Action::Paused if e.actor.as_str() == "rule" => {
                            paused_by_rule = Some(*index);
                        }
                        Action::Resumed => paused_by_rule = None,
                        _ => {}
                    }
                    if e.action == Action::ApprovalApplied {
                        check_applied_approval(
                            v,
                            pack,
                            signer,
                            &recorded,
                            *index,
                            e,
                            paused_by_rule,
                        );
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
                (Some(other), _) => v.fail(
                    format!("relay log entry {index}"),
                    format!(
                        "a {} has no place in the relay's log",
                        kind_name(other.kind())
                    ),
                ),
                (None, _) => {}
            }
        }
    }
}

/// What the relay's entries are checked against as they are decoded.
struct Scan<'a> {
    campaign: &'a str,
    /// Whether the pack's plan verified (without one, no device is named as not eligible).
    has_plan: bool,
    /// The plan's rollback target.
    rollback: Option<&'a str>,
    eligible: &'a HashSet<&'a str>,
}

/// One part of the relay's entries: the facts of its device events of the campaign, in order,
/// and the positions (in the table) of the entries the sequential pass looks at: the campaign's
/// campaign events, device events about a device not eligible, and entries of another kind.
struct Part {
    devices: Vec<DeviceEventFacts>,
    aside: Vec<usize>,
}

impl<'p> Facts<'p> for Scan<'_> {
    type Part = Part;

    fn part(&self, len: usize) -> Part {
        Part {
            // Two device events a device, and a few other entries: sized once.
            devices: Vec::with_capacity(len),
            aside: Vec::new(),
        }
    }

    fn fact(&self, part: &mut Part, position: usize, index: u64, st: Statement<'p>) -> Fact<'p> {
        match st {
            Statement::DeviceEvent(e) => {
                if e.campaign.as_str() == self.campaign {
                    if self.has_plan && !self.eligible.contains(e.device_id.as_str()) {
                        part.aside.push(position);
                    }
                    part.devices.push(DeviceEventFacts {
                        index,
                        device: e.device_id.as_str().into(),
                        state: e.state.name(),
                        stage: e.stage,
                        attempt: e.attempt,
                        at: e.at.0,
                        actor: e.actor.as_str().into(),
                        cause: e.cause.as_str().into(),
                        rollback: self.rollback == Some(e.release_id.as_str()),
                    });
                }
                Fact::DeviceEvent
            }
            Statement::CampaignEvent(e) => {
                if e.campaign.as_str() == self.campaign {
                    part.aside.push(position);
                }
                Fact::from(Statement::CampaignEvent(e))
            }
            other => {
                part.aside.push(position);
                Fact::from(other)
            }
        }
    }
}

/// A campaign event that applied a gate approval: the approval is in the signer log, for this
/// campaign, and a resume was signed after a relay checkpoint record that includes the pause it
/// lifts (`recorded`: the relay log sizes recorded, by signer log index; formats.md §4.10).
fn check_applied_approval(
    v: &mut Verified,
    pack: &Pack<'_>,
    signer: &Decoded<'_>,
    recorded: &[(u64, u64)],
    index: u64,
    e: &CampaignEvent<'_>,
    paused_by_rule: Option<u64>,
) {
    let approval = match signer.find(e.devices).and_then(|f| whole(f.2.as_ref())) {
        Some(Statement::Approval { approval, .. })
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

/// Relay events have no place in the signer's log.
fn check_no_relay_events(v: &mut Verified, signer: &Decoded<'_>) {
    for (index, _, s) in signer.statements() {
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
