//! Witnesses of a log (docs/witness.md §2, §5), shared by the signer (its authoritative log) and
//! the relay (its mirror, which forwards requests online): the k-of-n policy file, the C2SP
//! tlog-witness `add-checkpoint` requests that carry the latest checkpoint to each witness (as
//! files across the air gap, for `cairn-witness cosign`, or over HTTP), and the cosigned
//! checkpoints brought back, checked against the policy and added to the stored checkpoint, so
//! that transfer bundles, deliveries and evidence packs carry them.
//!
//! It lives in the vault because both sides of the air gap hold a vault and neither may link the
//! other's code: the relay must not link the signer (deny.toml), and nothing here signs. Every
//! check is the device's own rule (`cairn_verifier::witness::report`).
//!
//! `witnesses.toml` (in the signer's home; the relay names its copy in `[witnesses] policy`):
//!
//! ```toml
//! threshold = 2
//! [[witness]]
//! vkey = "witness.example/notified-body+1a2b3c4d+BF...="   # `cairn-witness vkey`
//! url = "https://witness.notified-body.example/"          # optional: the online path
//! ```
//!
//! No file means no witness: the log is unwitnessed, as before issue 18.

use std::path::{Path, PathBuf};

use cairn_verifier::crypto::Software;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::tlog_witness;
use cairn_verifier::witness::WitnessKey;
use cairn_verifier::witness::report::{QuorumReport, Vkey, report};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vault::Vault;

/// The policy file's name in the signer's home.
pub const POLICY_FILE: &str = "witnesses.toml";

/// The largest policy file read: a policy of a dozen witnesses is about 2 KiB (the TOML parser's
/// error recovery costs hundreds of bytes per input byte, so the size is bounded first).
pub const MAX_POLICY_BYTES: u64 = 64 << 10;

/// `witnesses.toml` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// k: how many distinct witnesses must cosign a checkpoint.
    pub threshold: usize,
    /// The n witnesses.
    pub witness: Vec<WitnessEntry>,
}

/// One witness of the policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// Its C2SP verifier key (`cairn-witness vkey`).
    pub vkey: String,
    /// Its tlog-witness base URL, if it is reachable online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A checked policy: n witnesses pinned by their verifier keys, and k.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    threshold: usize,
    witnesses: Vec<(Vkey, Option<String>)>,
}

impl Policy {
    /// Parses and checks a policy file's text (`path` names it in errors): every verifier key an
    /// Ed25519 cosignature/v1 key whose key id matches, k within 1..=n, no witness twice.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let bad = |why: String| Error::WitnessPolicy {
            path: path.to_owned(),
            why,
        };
        if text.len() as u64 > MAX_POLICY_BYTES {
            return Err(bad(format!("larger than {MAX_POLICY_BYTES} bytes")));
        }
        let file: PolicyFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut witnesses = Vec::with_capacity(file.witness.len());
        for w in file.witness {
            let vkey = Vkey::parse(&w.vkey, &Software).map_err(|e| bad(e.to_string()))?;
            witnesses.push((vkey, w.url));
        }
        let policy = Self {
            threshold: file.threshold,
            witnesses,
        };
        cairn_verifier::witness::check_policy(&policy.keys(), policy.threshold)
            .map_err(|e| bad(e.to_string()))?;
        Ok(policy)
    }

    /// Reads `home/witnesses.toml`; `None` if there is none (an unwitnessed log).
    pub fn load(home: &Path) -> Result<Option<Self>> {
        Self::read(&home.join(POLICY_FILE))
    }

    /// Reads the policy file at `path` (at most [`MAX_POLICY_BYTES`]); `None` if there is none.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        use std::io::Read as _;
        let failed = |e: std::io::Error| Error::WitnessPolicy {
            path: path.to_owned(),
            why: e.to_string(),
        };
        let mut text = String::new();
        match std::fs::File::open(path) {
            Ok(f) => f
                .take(MAX_POLICY_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(failed)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        Self::from_toml(&text, path).map(Some)
    }

    /// k.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The witnesses' names, in policy order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.witnesses.iter().map(|(v, _)| v.name.as_str())
    }

    /// The witnesses' verifier keys and URLs, in policy order.
    pub fn witnesses(&self) -> &[(Vkey, Option<String>)] {
        &self.witnesses
    }

    /// The pinned form of every witness (what devices hold).
    pub fn keys(&self) -> Vec<WitnessKey<'_>> {
        self.witnesses
            .iter()
            .filter_map(|(v, _)| v.key(&Software))
            .collect()
    }

    /// How the signed note `note` of `log` stands against this policy, witness by witness.
    pub fn report(&self, note: &str, log: &LogKey<'_>) -> Result<QuorumReport> {
        let cp = Checkpoint::parse(note.as_bytes())
            .map_err(|e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))?;
        cp.verify(log, &Software).map_err(Error::Checkpoint)?;
        report(&cp, log, &self.keys(), self.threshold, &Software).map_err(|e| {
            Error::WitnessPolicy {
                path: PathBuf::from(POLICY_FILE),
                why: e.to_string(),
            }
        })
    }
}

/// An `add-checkpoint` request for one witness (C2SP tlog-witness), as a file or an HTTP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The witness it is for.
    pub witness: String,
    /// The old size: the largest checkpoint of this log the witness is known to have cosigned.
    pub old: u64,
    /// The size of the checkpoint it carries (the log's latest).
    pub size: u64,
    /// The request body.
    pub body: String,
}

/// The log's pinned key, as the vault has it.
pub fn log_key(vault: &Vault) -> Result<LogKey<'_>> {
    let public = vault.log_key()?.ok_or(Error::NoCheckpoint { size: 0 })?;
    LogKey::new(vault.origin(), vault.origin(), public, &Software).ok_or_else(|| Error::Corrupt {
        what: format!("the log's origin {:?} cannot sign a note", vault.origin()),
    })
}

/// One request per witness of `policy`, carrying the log's latest checkpoint from the largest
/// size that witness is known to have cosigned (`old` overrides it for the witness named; a
/// witness answers a wrong one with its own size: HTTP 409, or `cairn-witness cosign`'s error).
pub fn requests(vault: &Vault, policy: &Policy, old: Option<(&str, u64)>) -> Result<Vec<Request>> {
    policy
        .names()
        .map(|name| {
            let old = old.and_then(|(n, o)| (n == name).then_some(o));
            request(vault, policy, name, old)
        })
        .collect()
}

/// The request for `witness` carrying the log's latest checkpoint from `old`, or, if `None`, from
/// the largest stored checkpoint that witness cosigned ([`last_cosigned`]).
pub fn request(vault: &Vault, policy: &Policy, witness: &str, old: Option<u64>) -> Result<Request> {
    let log = log_key(vault)?;
    let sizes = vault.checkpoint_sizes()?;
    let size = *sizes.last().ok_or(Error::NoCheckpoint { size: 0 })?;
    let latest = vault
        .checkpoint(size)?
        .ok_or(Error::NoCheckpoint { size })?;
    let old = match old {
        Some(o) => o,
        None => last_cosigned_in(vault, policy, &log, witness, &sizes)?,
    };
    if old > size {
        return Err(Error::WitnessAhead {
            witness: witness.to_owned(),
            size: old,
            latest: size,
        });
    }
    // C2SP tlog-witness "add-checkpoint": no proof from size 0 or to the same size.
    let proof = if old == 0 || old == size {
        Vec::new()
    } else {
        vault.at(size)?.consistency_proof(old)?
    };
    Ok(Request {
        witness: witness.to_owned(),
        old,
        size,
        body: tlog_witness::write::add_checkpoint(old, &proof, &latest),
    })
}

/// The largest stored checkpoint `witness` cosigned (0 if none).
pub fn last_cosigned(vault: &Vault, policy: &Policy, witness: &str) -> Result<u64> {
    let log = log_key(vault)?;
    last_cosigned_in(vault, policy, &log, witness, &vault.checkpoint_sizes()?)
}

fn last_cosigned_in(
    vault: &Vault,
    policy: &Policy,
    log: &LogKey<'_>,
    witness: &str,
    sizes: &[u64],
) -> Result<u64> {
    for &size in sizes.iter().rev() {
        let Some(note) = vault.checkpoint(size)? else {
            continue;
        };
        if signature_lines(&note) < 2 {
            // The log's own line only: nothing to verify (the relay's log signs a checkpoint per
            // step, and most are never cosigned).
            continue;
        }
        if policy
            .report(&note, log)?
            .cosigned
            .iter()
            .any(|c| c.name == witness)
        {
            return Ok(size);
        }
    }
    Ok(0)
}

/// The largest stored checkpoint of `vault` that meets `policy` (0 if none): what a device with
/// that policy accepts. Checkpoints with fewer signature lines than the log's own plus k are
/// passed over without a signature check.
pub fn witnessed_size(vault: &Vault, policy: &Policy) -> Result<u64> {
    witnessed_among(vault, policy, &vault.checkpoint_sizes()?, 0)
}

/// The largest of `sizes` (ascending) above `floor` whose stored checkpoint meets `policy`, or
/// `floor` if none does: [`witnessed_size`] over some checkpoints only (the relay's forwarder
/// checks the ones just cosigned).
pub fn witnessed_among(vault: &Vault, policy: &Policy, sizes: &[u64], floor: u64) -> Result<u64> {
    if sizes.last().is_none_or(|&s| s <= floor) {
        return Ok(floor);
    }
    let log = log_key(vault)?;
    for &size in sizes.iter().rev().take_while(|&&s| s > floor) {
        let Some(note) = vault.checkpoint(size)? else {
            continue;
        };
        if signature_lines(&note) <= policy.threshold() {
            continue;
        }
        if policy.report(&note, &log)?.met() {
            return Ok(size);
        }
    }
    Ok(floor)
}

/// How many signature lines a stored note carries (a stored note is well formed: one line per
/// `\n— `).
fn signature_lines(note: &str) -> usize {
    note.matches("\n\u{2014} ").count()
}

/// Refuses `note`, a checkpoint of `log` that `from` brought (a transfer bundle), if a line under
/// a pinned witness's name and key id does not verify over it: a device would refuse the
/// checkpoint (`BadCosignature`), and since a stored checkpoint's lines are only ever added to,
/// keeping the line would block that checkpoint's quorum for good. Lines of witnesses the policy
/// does not pin are left alone (devices ignore them).
pub fn check_cosignatures(policy: &Policy, note: &str, log: &LogKey<'_>, from: &str) -> Result<()> {
    let report = policy.report(note, log)?;
    if report.bad.is_empty() {
        return Ok(());
    }
    Err(Error::Cosignature {
        from: from.to_owned(),
        why: format!(
            "the cosignature of {} does not verify over this checkpoint: nothing was stored",
            report.bad.join(", ")
        ),
    })
}

/// What bringing cosigned checkpoints back did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The size of the checkpoint cosigned.
    pub size: u64,
    /// The stored checkpoint as it now stands against the policy.
    pub report: QuorumReport,
}

/// Adds the cosignatures of pinned witnesses on `cosigned` (a witness's response: the checkpoint
/// with its line appended; `from` names it in errors) to the stored checkpoint of that size.
/// Refused, with nothing stored, if the note is not over a checkpoint this log signed or if a
/// pinned witness's line on it does not verify. Lines from keys the policy does not pin are
/// dropped.
pub fn attach(vault: &Vault, policy: &Policy, cosigned: &str, from: &str) -> Result<Attached> {
    let log = log_key(vault)?;
    let refuse = |why: String| Error::Cosignature {
        from: from.to_owned(),
        why,
    };
    let theirs = policy
        .report(cosigned, &log)
        .map_err(|e| refuse(e.to_string()))?;
    if !theirs.bad.is_empty() {
        return Err(refuse(format!(
            "the cosignature of {} does not verify over this checkpoint",
            theirs.bad.join(", ")
        )));
    }
    let cp = Checkpoint::parse(cosigned.as_bytes())
        .map_err(|e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))?;
    // Only the verified lines of pinned witnesses are kept.
    let mut kept = format!("{}\n", cp.text);
    for (raw, line) in cp
        .signatures
        .split_inclusive('\n')
        .zip(cp.signature_lines())
    {
        let Ok(line) = line else { continue };
        if line.name == log.name || theirs.cosigned.iter().any(|c| c.name == line.name) {
            kept.push_str(raw);
        }
    }
    let stored = vault.add_cosignatures(&kept)?;
    Ok(Attached {
        size: cp.size.0,
        report: policy.report(&stored, &log)?,
    })
}

/// The latest checkpoint against the policy.
pub fn status(vault: &Vault, policy: &Policy) -> Result<Attached> {
    let log = log_key(vault)?;
    let note = vault
        .latest_checkpoint()?
        .ok_or(Error::NoCheckpoint { size: 0 })?;
    let size = Checkpoint::parse(note.as_bytes())
        .map_err(|e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))?
        .size
        .0;
    Ok(Attached {
        size,
        report: policy.report(&note, &log)?,
    })
}
