//! Evidence for auditors (docs/audit.md): the evidence pack of one campaign, its offline
//! verification with the root certificate as the only trust anchor, and the CRA audit summary.
//!
//! - [`pack`]: the pack file (deterministic CBOR, docs/audit.md "The evidence pack").
//! - [`export`]: builds a campaign's pack from the signer's log and its relay-log mirror.
//! - [`verify`]: checks a pack, naming every item that fails; with a witness policy, also the
//!   signer checkpoint's witness quorum (`witnessed`).
//! - [`summary`]: the CRA table, signing record, eligibility, rollout history and final states of
//!   a verified pack, as JSON and as a self-contained HTML report.

mod complete;
pub mod export;
mod facts;
pub mod images;
pub mod pack;
mod relay_log;
mod report;
mod sections;
pub mod summary;
mod verified;
pub mod verify;
mod witnessed;

pub use export::{export, export_logs};
pub use pack::{Pack, Run, Section};
pub use summary::Summary;
pub use verify::{Finding, Verified, verify, verify_with_witnesses};
pub use witnessed::WitnessFacts;
