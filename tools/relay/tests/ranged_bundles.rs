//! Ranged transfer bundles at the relay (docs/relay.md, "Importing a large log"): a log too long
//! for one bundle reaches the mirror as several, cut at the signer's checkpoints, imported one
//! after the other as `POST /api/v1/bundles` imports them, each verified against the checkpoint
//! the previous one left; one out of order, or one that overlaps without starting at the
//! mirror's checkpoint, is refused naming the sizes and changes nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use cairn_relay::{ImportError, Relay};
use cairn_vault::Vault;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::{Id, UnixTime, Version};
use common::ORIGIN;
use sha2::{Digest, Sha256};

/// A signer log of a release and 300 manifests in one signed append, with a checkpoint every
/// 64 entries.
fn signer(dir: &std::path::Path) -> Vault {
    let f = Fixture::new();
    let release = f.build(&f.spec()).release;
    let sk = test_key(Fixture::LOG_KEY);
    let key = LogKey::new(ORIGIN, ORIGIN, public_key(&sk), &Software).unwrap();
    let vault = Vault::create(dir, ORIGIN).unwrap();
    let mut entries = vec![
        ReleaseEntry {
            cose_sign1: &release,
        }
        .to_cbor(),
    ];
    entries.extend((1..=300u64).map(|i| {
        Manifest {
            device_id: Id::new(&format!("rg-{i:07}")).unwrap(),
            release_id: Id::new("controller-fw-2.4.1").unwrap(),
            release_digest: Sha256::digest(&release).into(),
            hardware_revision: Id::new("rev-c").unwrap(),
            min_version: Version::new(2, 0, 0),
            max_version: Version::new(2, 4, 0),
            campaign: Id::new("campaign-2026-11").unwrap(),
            purpose: Purpose::Update,
            decided_at: UnixTime(1_795_651_200),
            campaign_sequence: 1,
        }
        .to_cbor()
    }));
    vault.append_signed_every(&entries, &key, &sk, 64).unwrap();
    vault
}

fn appended(body: &serde_json::Value) -> (u64, u64) {
    let range = body["appended"].as_array().unwrap();
    (range[0].as_u64().unwrap(), range[1].as_u64().unwrap())
}

#[test]
fn the_relay_imports_ranged_bundles_in_order_and_refuses_a_gap_or_an_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let signer = signer(&dir.path().join("signer"));
    let relay = Relay::open(&common::config(dir.path(), "")).unwrap();
    let ranges = signer.bundle_ranges(0, 130).unwrap();
    assert_eq!(ranges, vec![0..128, 128..256, 256..301]);
    let bundles: Vec<Vec<u8>> = ranges
        .iter()
        .map(|r| signer.export_bundle_to(r.start, r.end).unwrap().to_cbor())
        .collect();

    // The last first: a gap, refused with the sizes, nothing written.
    let err = relay.import_bundle_bytes(&bundles[2]).unwrap_err();
    assert!(matches!(err, ImportError::Refused(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("starts at 256, this log has only 0 entries: an earlier bundle is missing"),
        "{err}"
    );
    assert_eq!(relay.vault().size(), 0);

    let body = relay.import_bundle_bytes(&bundles[0]).unwrap();
    assert_eq!(
        (appended(&body), body["size"].as_u64()),
        ((0, 128), Some(128))
    );

    // Overlapping what the mirror holds without starting at its checkpoint: refused.
    let overlap = signer.export_bundle_to(64, 256).unwrap().to_cbor();
    let err = relay.import_bundle_bytes(&overlap).unwrap_err();
    assert!(matches!(err, ImportError::Refused(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("starts at 64, inside the 128 entries"),
        "{err}"
    );
    assert_eq!(relay.vault().size(), 128);

    for (bundle, range) in bundles[1..].iter().zip([(128, 256), (256, 301)]) {
        let body = relay.import_bundle_bytes(bundle).unwrap();
        assert_eq!(appended(&body), range);
    }
    assert_eq!(relay.vault().size(), 301);
    assert_eq!(
        relay.vault().latest_checkpoint().unwrap(),
        signer.latest_checkpoint().unwrap()
    );
    for i in 0..301 {
        assert_eq!(relay.vault().entry(i).unwrap(), signer.entry(i).unwrap());
    }
    // A bundle replayed: nothing appended.
    let body = relay.import_bundle_bytes(&bundles[1]).unwrap();
    assert_eq!(appended(&body), (301, 301));
}

#[test]
fn a_plan_whose_batch_continues_in_the_next_bundle_is_taken_up_once_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = common::signer_log(
        &dir.path().join("built"),
        200,
        10,
        &[
            ("canary", 50, 3600, 980, 20, true),
            ("fleet", 200, 0, 950, 50, false),
        ],
        common::Policy::default(),
    );
    // The same entries in one signed append with a checkpoint every 64, so that the plan and the
    // start of its batch of 410 decisions are in one bundle and the rest in the next ones.
    let entries: Vec<Vec<u8>> = (0..campaign.vault.size())
        .map(|i| campaign.vault.entry(i).unwrap())
        .collect();
    let signer = Vault::create(dir.path().join("signer"), ORIGIN).unwrap();
    signer
        .append_signed_every(
            &entries,
            &common::log_key(),
            &test_key(Fixture::LOG_KEY),
            64,
        )
        .unwrap();
    let relay = Relay::open(&common::config(dir.path(), "")).unwrap();
    let ranges = signer.bundle_ranges(0, 130).unwrap();
    assert!(ranges.len() >= 4, "{ranges:?}");
    let plan = (0..signer.size())
        .find(|&i| {
            cairn_verifier::statement::EntryHeader::peek(&signer.entry(i).unwrap())
                .unwrap()
                .kind
                == cairn_verifier::statement::Kind::PLAN
        })
        .unwrap();
    let mut started_at = None;
    for range in &ranges {
        let bundle = signer.export_bundle_to(range.start, range.end).unwrap();
        relay.import_bundle_bytes(&bundle.to_cbor()).unwrap();
        let engine = relay.engine();
        assert!(engine.problems.is_empty(), "{:?}", engine.problems);
        if started_at.is_none() && !engine.campaigns().is_empty() {
            started_at = Some(range.end);
            assert_eq!(engine.queued(), 50, "the canary's deliveries are queued");
        }
    }
    // Not taken up while the batch was incomplete, then taken up with every device.
    let started_at = started_at.expect("the campaign was taken up");
    assert!(started_at >= plan + 1 + 410, "{started_at} {plan}");
    assert!(
        ranges
            .iter()
            .any(|r| r.end > plan + 1 && r.end < plan + 411),
        "a cut inside the plan's batch: {ranges:?}, plan at {plan}"
    );
    let engine = relay.engine();
    let c = &engine.campaigns()[common::CAMPAIGN];
    assert_eq!(c.evidence.decisions, plan + 1..plan + 411);
}
