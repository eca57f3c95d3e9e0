//! cairn's evidence vault: a durable RFC 9162 transparency log on RocksDB.
//!
//! - append-only entries, each a typed evidence statement (`cairn_verifier::statement`), appended
//!   in batches with one synced write per batch;
//! - the Merkle tree kept as 256-wide tiles (C2SP tlog-tiles), from which inclusion proofs (RFC 9162
//!   §2.1.3) and consistency proofs from any earlier size (§2.1.4) are computed;
//! - checkpoints (C2SP signed note, ECDSA P-256 with Rekor's key id) signed through any
//!   `signature::Signer<p256::ecdsa::Signature>` — an HSM key or a software key;
//! - an evidence index by kind, release, device, campaign and time, and retention per release;
//! - a static tlog-tiles export, and `fsck`;
//! - witnesses (`witness`): the k-of-n policy file, `add-checkpoint` requests, cosignatures
//!   checked and attached (shared by the signer and the relay).
//!
//! Storage layout, durability protocol and the append state machine: `docs/log.md`.

mod bundle;
mod cosigned;
mod error;
pub mod export;
pub mod floors;
pub mod fsck;
mod index;
mod layout;
mod proofs;
mod retention;
mod store;
pub mod transfer;
pub mod tree;
mod vault;
pub mod witness;

pub use error::{Error, Inconsistency, Result};
pub use export::{ExportCheck, ExportReport, verify_export};
pub use fsck::FsckReport;
pub use index::Query;
pub use proofs::{ConsistencyProof, InclusionProof, TreeAt};
pub use retention::{DOCUMENTATION_RETENTION_SECS, Retention};
pub use store::{CHECKPOINT_SPAN, MAX_ENTRY_LEN};
pub use transfer::{ImportReport, TransferBundle};
pub use vault::Vault;
