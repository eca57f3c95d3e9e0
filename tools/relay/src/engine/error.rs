//! What can go wrong in the engine, grouped by who is at fault: the caller named something the
//! relay does not hold (`UnknownCampaign`, `UnknownDevice`), the campaign's state does not allow
//! the action (`Completed` … `NothingToRollBack`), or the relay itself failed (`Log`, `Mirror`,
//! `CorruptLog`, `InvalidField`, `DeliveryMismatch`): an I/O or storage failure is never the
//! caller's fault. The API maps each variant to its status (docs/relay.md, "Errors").

use crate::statelog;

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An engine failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No campaign of that id.
    #[error("no campaign {0:?} in the relay")]
    UnknownCampaign(String),
    /// The device is not in the campaign.
    #[error("device {device:?} is not in campaign {campaign}")]
    UnknownDevice {
        /// The campaign.
        campaign: String,
        /// The device asked for.
        device: String,
    },
    /// The campaign is completed: nothing more to pause.
    #[error("campaign {0} is completed")]
    Completed(String),
    /// The campaign is paused already.
    #[error("campaign {0} is already paused")]
    AlreadyPaused(String),
    /// The campaign is not paused: nothing to resume.
    #[error("campaign {0} is not paused")]
    NotPaused(String),
    /// The failure threshold paused the campaign: only a signed approval resumes it.
    #[error(
        "campaign {campaign} was paused by the failure threshold of stage {stage}: only a gate approval signed offline resumes it (cairn rollout approve --campaign {campaign} --stage {stage} --resume)"
    )]
    PausedByRule {
        /// The campaign.
        campaign: String,
        /// Its open stage.
        stage: usize,
    },
    /// The device's state does not allow a rollback.
    #[error(
        "device {device} is {state}: only a delivered, installed or failed device is rolled back"
    )]
    NotRollbackable {
        /// The device.
        device: String,
        /// Its state's name.
        state: &'static str,
    },
    /// The selection matched no device that is not quarantined already.
    #[error("no device of campaign {0} matches: nothing to quarantine")]
    NothingToQuarantine(String),
    /// The selection matched no device that can be rolled back.
    #[error("no device of campaign {0} matches: nothing to roll back")]
    NothingToRollBack(String),
    /// Writing or reading the relay log failed. The engine rebuilt its state from the log.
    #[error("the relay log: {0}")]
    Log(#[from] statelog::Error),
    /// Reading the mirror of the signer's log failed.
    #[error("the mirror: {0}")]
    Mirror(#[from] cairn_vault::Error),
    /// A mirror entry has no valid header (the mirror verified it on import: its storage is
    /// damaged).
    #[error("mirror entry {index}: {cause}")]
    CorruptMirror {
        /// The entry's index.
        index: u64,
        /// Why it does not decode.
        cause: cairn_verifier::Error,
    },
    /// A relay log entry is not a relay event the engine can apply.
    #[error("relay log entry {index}: {what}")]
    CorruptLog {
        /// The entry's index.
        index: u64,
        /// What is wrong with it.
        what: String,
    },
    /// A value the engine was to record is not a valid event field (a bug: plans, devices and
    /// operators are checked before they reach the engine).
    #[error("{field} {value:?} is not a valid event field")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// The mirror built a delivery for another device than the one asked for.
    #[error("delivery for {found} built where {expected} was expected")]
    DeliveryMismatch {
        /// The device asked for.
        expected: String,
        /// The device of the delivery.
        found: String,
    },
}

/// Why a plan or an approval in the mirror was not taken up: a refusal (shown as a problem, never
/// acted on), or `Mirror`, a storage failure that stops the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Reading the mirror failed: not a refusal of the plan.
    #[error("the mirror: {0}")]
    Mirror(#[from] cairn_vault::Error),
    /// The plan, a release or a manifest does not decode.
    #[error("{0}")]
    Malformed(#[from] cairn_verifier::Error),
    /// A signature does not verify with the release key.
    #[error("{what} is not signed by the release key")]
    Signature {
        /// The plan, or which release at which index.
        what: String,
    },
    /// The plan's decisions do not fit in the mirror.
    #[error("the plan's {count} decisions end beyond the mirror's {size} entries")]
    DecisionsBeyondMirror {
        /// Decisions the plan announces.
        count: u64,
        /// The mirror's size.
        size: u64,
    },
    /// A release the plan names (with its digest) is not in the mirror.
    #[error("release {0} with the plan's digest is not in the mirror")]
    ReleaseMissing(String),
    /// The decisions after the plan are not what its digest and counts say.
    #[error("{0}")]
    Decisions(String),
}
