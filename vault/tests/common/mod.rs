//! Shared helpers: deterministic entries and keys.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::{Id, UnixTime, Version};
use p256::ecdsa::SigningKey;

pub const ORIGIN: &str = "cairn.test/vault";

/// The log's signing key and its pinned form.
pub fn log_key() -> (SigningKey, LogKey<'static>) {
    let sk = test_key(7);
    let key = LogKey::new(ORIGIN, ORIGIN, public_key(&sk), &Software).expect("valid origin");
    (sk, key)
}

/// A manifest entry for device `i` of `campaign`, deterministic in its arguments.
pub fn manifest(i: u64, campaign: &str, time: u64) -> Vec<u8> {
    let device = format!("dev-{i:07}");
    Manifest {
        device_id: Id::new(&device).expect("id"),
        release_id: Id::new("controller-fw-2.4.1").expect("id"),
        release_digest: [7; 32],
        hardware_revision: Id::new("rev-c").expect("id"),
        min_version: Version::new(2, 0, 0),
        max_version: Version::new(2, 4, 0),
        campaign: Id::new(campaign).expect("id"),
        purpose: Purpose::Update,
        decided_at: UnixTime(time),
        campaign_sequence: 1,
    }
    .to_cbor()
}

/// The fixture's release entry (release `controller-fw-2.4.1`).
pub fn release_entry() -> Vec<u8> {
    let f = Fixture::new();
    let parts = f.build(&f.spec());
    ReleaseEntry {
        cose_sign1: &parts.release,
    }
    .to_cbor()
}
