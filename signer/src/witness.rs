//! Witnesses of the signer's log (docs/witness.md §2, §5): the k-of-n policy in the appliance's
//! home (`witnesses.toml`), the C2SP tlog-witness `add-checkpoint` requests that carry the latest
//! checkpoint to each witness (as files across the air gap, for `cairn-witness cosign`, or over
//! HTTP), and the cosigned checkpoints brought back (from a witness, or from the relay, which
//! forwards the requests online), checked against the policy and added to the stored checkpoint,
//! so that transfer bundles, deliveries and evidence packs carry them.
//!
//! The code is `cairn_vault::witness`, shared with the relay (which must not link the signer);
//! this module names its refusals as the signer's errors.

use cairn_vault::Vault;
pub use cairn_vault::witness::{
    Attached, MAX_POLICY_BYTES, POLICY_FILE, Policy, PolicyFile, Request, WitnessEntry,
};
use cairn_verifier::note::LogKey;

use crate::error::{Error, Result};

/// A vault error, with the witness refusals as the signer's own variants.
fn lift(e: cairn_vault::Error) -> Error {
    match e {
        cairn_vault::Error::WitnessPolicy { path, why } => Error::WitnessPolicy { path, why },
        cairn_vault::Error::Cosignature { from, why } => Error::Cosignature { from, why },
        cairn_vault::Error::WitnessAhead { .. } => Error::Invalid(e.to_string()),
        e => Error::Vault(e),
    }
}

/// The log's pinned key, as the vault has it.
pub fn log_key(vault: &Vault) -> Result<LogKey<'_>> {
    cairn_vault::witness::log_key(vault).map_err(lift)
}

/// One request per witness of `policy` ([`cairn_vault::witness::requests`]).
pub fn requests(vault: &Vault, policy: &Policy, old: Option<(&str, u64)>) -> Result<Vec<Request>> {
    cairn_vault::witness::requests(vault, policy, old).map_err(lift)
}

/// Adds the verified cosignatures of pinned witnesses on `cosigned` to the stored checkpoint
/// ([`cairn_vault::witness::attach`]); a note that is not over a checkpoint this log signed, or
/// a pinned witness's line that does not verify, is refused ([`Error::Cosignature`]).
pub fn attach(vault: &Vault, policy: &Policy, cosigned: &str, from: &str) -> Result<Attached> {
    cairn_vault::witness::attach(vault, policy, cosigned, from).map_err(lift)
}

/// The latest checkpoint against the policy.
pub fn status(vault: &Vault, policy: &Policy) -> Result<Attached> {
    cairn_vault::witness::status(vault, policy).map_err(lift)
}

/// Refuses a checkpoint brought by `from` that carries a pinned witness's line that does not
/// verify ([`cairn_vault::witness::check_cosignatures`]).
pub fn check_cosignatures(policy: &Policy, note: &str, log: &LogKey<'_>, from: &str) -> Result<()> {
    cairn_vault::witness::check_cosignatures(policy, note, log, from).map_err(lift)
}

/// The appliance's policy (`witnesses.toml` in `home`), if it has one.
pub fn load_policy(home: &std::path::Path) -> Result<Option<Policy>> {
    Policy::load(home).map_err(lift)
}
