//! cairn's witness: an independent party's service that checks every new checkpoint of a log is
//! consistent with the last one it saw, keeps that checkpoint durably, and cosigns it
//! (C2SP tlog-witness, tlog-cosignature v1; docs/witness.md).
//!
//! | module | what |
//! |---|---|
//! | [`key`] | the witness's Ed25519 key file (zeroized, never printed) and its C2SP vkey |
//! | [`store`] | the latest checkpoint per log (fsync, atomic rename) and the evidence kept |
//! | [`witness`] | `add-checkpoint`: the checks, in the spec's order, under one lock |
//! | [`http`] | the HTTP interface (`POST /add-checkpoint`) and its status codes |
//!
//! The witness holds only its own key and the logs' public keys: it links neither the signer
//! (deny.toml) nor the relay or the vault.

pub mod http;
pub mod key;
pub mod store;
pub mod witness;

pub use key::WitnessSecret;
pub use store::Store;
pub use witness::{AddError, TrustedLog, Witness};
