//! Step 8 of the pack check, when the auditor gives a witness policy (`cairn audit verify
//! --witnesses FILE`, docs/witness.md): the signer checkpoint in the pack is cosigned by k of the
//! n pinned witnesses, by the same rule devices apply; a missing quorum names the witnesses that
//! are missing.

use cairn_verifier::crypto::Software;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::witness::report::report;
use serde::Serialize;

use super::pack::Pack;
use super::verified::Verified;
use crate::certs;
use crate::witness::Policy;

/// The finding's item.
const ITEM: &str = "signer log checkpoint witnesses";

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

/// Checks the signer checkpoint of `pack` against `policy`.
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
    let Some(log) = log else {
        v.fail(
            ITEM,
            "no log key to tell the log's line from the witnesses'",
        );
        return;
    };
    let Ok(cp) = Checkpoint::parse(pack.signer.checkpoint) else {
        // Step 2 names a checkpoint that does not parse.
        return;
    };
    let r = match report(&cp, &log, &policy.keys(), policy.threshold(), &Software) {
        Ok(r) => r,
        Err(e) => {
            v.fail(ITEM, format!("the witness policy: {e}"));
            return;
        }
    };
    if !r.met() {
        v.fail(
            ITEM,
            format!(
                "no quorum at size {}: {}; a device with this policy refuses it",
                cp.size.0,
                r.summary()
            ),
        );
    }
    v.witnesses = Some(WitnessFacts {
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
    });
}
