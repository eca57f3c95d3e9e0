//! The evidence pack file format, owned by `cairn_verifier::pack` with every other wire format
//! (docs/audit.md, "The evidence pack").

pub use cairn_verifier::pack::*;
