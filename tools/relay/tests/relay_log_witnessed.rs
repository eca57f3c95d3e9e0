//! The relay's own device-state log witnessed (`[witnesses] relay_log`, docs/witness.md §2): real
//! `cairn-witness serve` processes following the relay log's origin and key cosign its
//! checkpoints as the relay signs them; the device-state bundle ends at the relay log's latest
//! checkpoint with a quorum (503 naming the missing witnesses while there is none beyond the
//! `from` asked, the whole log with `witnessed=false`); a witness that does not follow the relay
//! log is named in the status; a restarted relay finds the quorum it had.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report"
)]

mod common;
mod witnesses;

use std::sync::Arc;

use cairn_relay::broker::Broker;
use cairn_relay::statelog::{PUBLIC_KEY_FILE, StateLog};
use cairn_relay::{OperatorAction, Relay};
use cairn_vault::TransferBundle;
use cairn_vault::witness::Policy;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use common::{CAMPAIGN, ORIGIN, wait_for};
use witnesses::{SECTION, TestWitness, get, get_bytes, policy};

const NAMES: [&str; 3] = [
    "witness.test/notified-body",
    "witness.test/oem-auditor",
    "witness.test/oem-site-2",
];
const DEVICES: u64 = 4;
const RELAY_ORIGIN: &str = "oem.example/cairn/log/relay";

/// The relay log's checkpoint in `bundle` against `policy`, with the relay key of `data`.
fn report(
    bundle: &TransferBundle,
    policy: &Policy,
    data: &std::path::Path,
) -> cairn_verifier::witness::report::QuorumReport {
    let key = StateLog::public_key_of(data).unwrap();
    let log = LogKey::new(RELAY_ORIGIN, RELAY_ORIGIN, key, &Software).unwrap();
    policy.report(&bundle.checkpoint, &log).unwrap()
}

#[test]
fn the_relay_log_is_cosigned_and_the_state_bundle_ends_at_its_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let signer = common::single_stage(&dir.path().join("signer"), DEVICES, 1);
    let mut witnesses: Vec<TestWitness> = NAMES
        .iter()
        .map(|n| TestWitness::new(&dir.path().join("witnesses"), n))
        .collect();
    let urls: Vec<String> = witnesses.iter().map(TestWitness::url).collect();
    policy(dir.path(), 2, &witnesses.iter().collect::<Vec<_>>(), &urls);
    let config = || {
        common::mqtt_config(
            dir.path(),
            &broker,
            &format!(
                "[rollout]\ntick_millis = 50\n{SECTION}relay_log = true\nrelay_log_every_secs = 0\n"
            ),
        )
    };
    config();
    // The relay key before the relay's first start, as an operator gives it to the witnesses.
    let data = dir.path().join("data");
    StateLog::public_key_of(&data).unwrap();
    let relay_pem = data.join(PUBLIC_KEY_FILE);
    let signer_pem = dir.path().join("log.pub.pem");
    let both = [
        (ORIGIN, signer_pem.as_path()),
        (RELAY_ORIGIN, relay_pem.as_path()),
    ];
    witnesses[0].start(&both);
    witnesses[1].start(&both);
    // The third follows the signer's log only: it refuses the relay log's checkpoints.
    witnesses[2].start(&both[..1]);
    let policy = Policy::read(&dir.path().join("witnesses.toml"))
        .unwrap()
        .unwrap();

    let relay = Arc::new(Relay::open(&config()).unwrap());
    let runner = relay.start().unwrap();
    let bundle = signer.vault.export_bundle(0).unwrap().to_cbor();
    relay.import_bundle_bytes(&bundle).unwrap();
    let state_size = || relay.engine().log().vault().size();
    wait_for("the relay log cosigned where it stands", 30, || {
        let v = relay.relay_log_witness_view().unwrap();
        v.witnessed > 0 && v.witnessed == state_size()
    });
    let v = relay.relay_log_witness_view().unwrap();
    assert!(!v.waiting(), "{}", v.summary());
    assert!(
        v.summary().contains("cosigned by 2 witnesses"),
        "{}",
        v.summary()
    );
    assert!(v.witnesses[2].last_error.is_some(), "{v:?}");

    // The state bundle carries the relay's checkpoint with two cosignatures a device's policy
    // accepts, and the third witness named as missing. (The engine may still be appending: every
    // size below is read after what it bounds.)
    let quorum_size = v.witnessed;
    let (status, body) = get_bytes(&relay, "/api/v1/state-bundle?from=0");
    assert_eq!(status, 200);
    let first = TransferBundle::decode(&body).unwrap();
    let r = report(&first, &policy, &data);
    assert!(r.met(), "{}", r.summary());
    assert_eq!(r.missing, vec![NAMES[2].to_owned()]);
    assert!(size_of(&first) >= quorum_size);

    // The API and /metrics show it.
    let (status, api) = get(&relay, "/api/v1/witnesses");
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert!(
        api["relay_log"]["witnessed"].as_u64().unwrap() >= quorum_size,
        "{api}"
    );
    assert!(
        api["relay_log"]["witnesses"][2]["last_error"].is_string(),
        "{api}"
    );
    let (_, metrics) = get(&relay, "/metrics");
    let gauge: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_relay_log_witnessed_size "))
        .unwrap_or_else(|| panic!("no relay log gauge: {metrics}"))
        .parse()
        .unwrap();
    assert!(gauge >= quorum_size, "{metrics}");

    // With one of the two down, the relay log grows past its quorum: the bundle from the quorum
    // waits (503, naming who is missing), the whole log is there with witnessed=false, and the
    // bundle from 0 still ends at the quorum.
    witnesses[1].stop();
    relay
        .act("alice", CAMPAIGN, &OperatorAction::Pause, "witnesses test")
        .unwrap();
    wait_for("witness 1 seen down", 30, || {
        relay.relay_log_witness_view().unwrap().witnesses[1].failures > 0
    });
    let held = relay.relay_log_witness_view().unwrap().witnessed;
    let grown = state_size();
    assert!(grown > held);
    let (status, refused) = get(&relay, &format!("/api/v1/state-bundle?from={held}"));
    assert_eq!(status, 503, "{refused}");
    assert!(refused.contains(NAMES[1]), "{refused}");
    let (status, body) = get_bytes(&relay, "/api/v1/state-bundle?from=0&witnessed=false");
    assert_eq!(status, 200);
    let unwitnessed = TransferBundle::decode(&body).unwrap();
    assert!(size_of(&unwitnessed) >= grown);
    assert!(!report(&unwitnessed, &policy, &data).met());
    let (_, body) = get_bytes(&relay, "/api/v1/state-bundle?from=0");
    assert_eq!(size_of(&TransferBundle::decode(&body).unwrap()), held);

    // The witness comes back: the grown log is cosigned; a restarted relay finds that quorum.
    witnesses[1].start(&both);
    wait_for("the grown relay log cosigned", 30, || {
        relay.relay_log_witness_view().unwrap().witnessed >= grown
    });
    drop(runner);
    drop(relay);
    let relay = Arc::new(Relay::open(&config()).unwrap());
    let v = relay.relay_log_witness_view().unwrap();
    assert!(v.witnessed >= grown, "{}", v.summary());
    let (status, body) = get_bytes(&relay, &format!("/api/v1/state-bundle?from={held}"));
    assert_eq!(status, 200);
    let after = TransferBundle::decode(&body).unwrap();
    assert!(size_of(&after) >= grown);
    assert!(report(&after, &policy, &data).met());
}

/// The size of a bundle's checkpoint.
fn size_of(bundle: &TransferBundle) -> u64 {
    cairn_verifier::note::Checkpoint::parse(bundle.checkpoint.as_bytes())
        .unwrap()
        .size
        .0
}
