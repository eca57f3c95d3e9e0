//! What the encoding tests share: a CBOR value model that minicbor fills from a valid encoding
//! and whose mutations build the invalid ones ([`cbor`]), the rejection harness that checks each
//! decoder names the right error and byte offset ([`harness`]), and the reference values of the
//! round trips ([`values`]); and the boot check tests' device and delivery helpers ([`boot`]).

#![allow(dead_code, reason = "each test file uses a different part")]
#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

pub(crate) mod boot;
pub(crate) mod cbor;
pub(crate) mod harness;
pub(crate) mod values;
