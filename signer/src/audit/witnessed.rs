//! Step 8 of the pack check, when the auditor gives a witness policy (`cairn audit verify
//! --witnesses FILE`, docs/witness.md): the signer checkpoint in the pack is cosigned by k of the
//! n pinned witnesses, by the same rule devices apply, and so is the relay checkpoint (the relay
//! log witnessed, docs/witness.md §2); a missing quorum names the witnesses that are missing.

use cairn_verifier::crypto::Software;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::witness::report::report;
use serde::Serialize;

use super::pack::Pack;
use super::verified::Verified;
use crate::certs;
use crate::witness::Policy;

/// The findings' items.
const ITEM: &str = "signer log checkpoint witnesses";
const RELAY_ITEM: &str = "relay log checkpoint witnesses";

/// The signer checkpoint's witnesses as the pack proves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WitnessFacts {
    /// k.
    pub threshold: usize,
    /// The pinned witnesses whose cosignature verified, with their timestamps.
    pub cosigned: Vec<(String, u64)>,
    /// The pinned witnesses with no cosignature on the checkpoint.
    pub missing: Vec<String>,
    /// The pinned witnesses whose line does not verify.
    pub bad: Vec<String>,
    /// Whether a device with this policy accepts the checkpoint's cosignatures.
    pub quorum: bool,
    /// One line for people.
    pub summary: String,
}

/// Checks the signer checkpoint of `pack` against `policy`, then the relay checkpoint (with the
/// relay key step 7 took from the relay checkpoint record).
pub(super) fn check_witnesses(v: &mut Verified, pack: &Pack<'_>, policy: &Policy) {
    let origin = pack.signer.origin;
    let log = pack
        .certificates
        .iter()
        .find(|(n, _)| *n == "log")
        .and_then(|(_, der)| {
            certs::from_der(der, "log")
                .and_then(|c| certs::verifier_key(&c, "log"))
                .ok()
        })
        .and_then(|k| LogKey::new(origin, origin, k, &Software));
    match log {
        Some(log) => v.witnesses = quorum(v, ITEM, pack.signer.checkpoint, &log, policy),
        None => v.fail(
            ITEM,
            "no log key to tell the log's line from the witnesses'",
        ),
    }
    let relay_origin = pack.relay.origin;
    // Without a relay key, step 7 named the missing record.
    let relay = v
        .relay_key
        .and_then(|k| LogKey::new(relay_origin, relay_origin, k, &Software));
    if let Some(relay) = relay {
        v.relay_witnesses = quorum(v, RELAY_ITEM, pack.relay.checkpoint, &relay, policy);
    }
}

/// The checkpoint note `note` of the log `log` against `policy`: its facts, and a finding under
/// `item` without a quorum.
fn quorum(
    v: &mut Verified,
    item: &str,
    note: &[u8],
    log: &LogKey<'_>,
    policy: &Policy,
) -> Option<WitnessFacts> {
    // Steps 2 and 7 name a checkpoint that does not parse.
    let cp = Checkpoint::parse(note).ok()?;
    let r = match report(&cp, log, &policy.keys(), policy.threshold(), &Software) {
        Ok(r) => r,
        Err(e) => {
            v.fail(item, format!("the witness policy: {e}"));
            return None;
        }
    };
    if !r.met() {
        let who = if item == ITEM {
            "a device with this policy refuses it"
        } else {
            "the relay could have shown auditors another history of device states \
             (a relay witnesses its log with [witnesses] relay_log)"
        };
        v.fail(
            item,
            format!("no quorum at size {}: {}; {who}", cp.size.0, r.summary()),
        );
    }
    Some(WitnessFacts {
        threshold: r.threshold,
        cosigned: r
            .cosigned
            .iter()
            .map(|c| (c.name.clone(), c.timestamp))
            .collect(),
        missing: r.missing.clone(),
        bad: r.bad.clone(),
        quorum: r.met(),
        summary: r.summary(),
    })
}
