//! The relay as the witnesses' online forwarder (docs/witness.md §2): real `cairn-witness serve`
//! processes, the relay's forwarding thread, Mosquitto. A checkpoint imported from the signer goes
//! to every witness of the relay's 2-of-3 policy; deliveries flow once two cosigned (one witness
//! down does not stop them), wait with a status naming the missing witnesses while fewer than two
//! can, and flow when one comes back; a witness answering with a cosignature that does not verify
//! is named and nothing of it is attached; a witness that names another size (409) is asked again
//! from it; a restarted relay keeps what it gathered; the cosigned checkpoint goes back to the
//! signer as a file `cairn witness attach` takes.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report"
)]

mod common;
mod witnesses;

use std::sync::Arc;

use cairn_relay::broker::Broker;
use cairn_relay::witness::{Answer, WitnessUrl, WitnessView};
use cairn_relay::{Relay, Runner};
use cairn_vault::witness::Policy;
use cairn_verifier::boot::{
    DeviceIdentity, MemoryImage, StoredState, TrustAnchors, verify_delivery,
};
use cairn_verifier::campaign::{ApprovalAction, DeviceState};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::statement::Purpose;
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::Version;
use cairn_verifier::witness::WitnessPolicy;
use common::{CAMPAIGN, SignerLog, wait_for};
use witnesses::{SECTION, TestWitness, forging_proxy, get, policy, tls_proxy};

const NAMES: [&str; 3] = [
    "witness.test/notified-body",
    "witness.test/oem-auditor",
    "witness.test/oem-site-2",
];
const DEVICES: u64 = 6;

struct Setup {
    dir: tempfile::TempDir,
    broker: Broker,
    signer: SignerLog,
    witnesses: Vec<TestWitness>,
}

/// The signer's log (one campaign of 6 devices in one stage), the broker, three witness keys (none
/// running yet), the relay's configuration with `urls` in its 2-of-3 policy (`None`: each
/// witness's own URL).
fn setup(urls: Option<Vec<String>>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let signer = common::single_stage(&dir.path().join("signer"), DEVICES, 1);
    let witnesses: Vec<TestWitness> = NAMES
        .iter()
        .map(|n| TestWitness::new(&dir.path().join("witnesses"), n))
        .collect();
    let urls = urls.unwrap_or_else(|| witnesses.iter().map(TestWitness::url).collect());
    policy(dir.path(), 2, &witnesses.iter().collect::<Vec<_>>(), &urls);
    let setup = Setup {
        dir,
        broker,
        signer,
        witnesses,
    };
    setup.config();
    setup
}

impl Setup {
    fn config(&self) -> cairn_relay::Config {
        common::mqtt_config(
            self.dir.path(),
            &self.broker,
            &format!("[rollout]\ntick_millis = 50\n{SECTION}"),
        )
    }

    fn relay(&self) -> (Arc<Relay>, Runner) {
        let relay = Arc::new(Relay::open(&self.config()).unwrap());
        let runner = relay.start().unwrap();
        (relay, runner)
    }

    /// Carries the signer's log from where the relay's mirror stands, through the import API.
    fn import(&self, relay: &Relay) -> serde_json::Value {
        let bundle = self
            .signer
            .vault
            .export_bundle(relay.vault().size())
            .unwrap()
            .to_cbor();
        relay.import_bundle_bytes(&bundle).unwrap()
    }

    fn start(&mut self, i: usize) {
        let dir = self.dir.path().to_owned();
        self.witnesses[i].start_for_signer(&dir);
    }

    /// Writes the relay's 2-of-3 policy again with witness `i` reached at `url` (a proxy).
    fn reach(&self, i: usize, url: String) {
        let mut urls: Vec<String> = self.witnesses.iter().map(TestWitness::url).collect();
        urls[i] = url;
        policy(
            self.dir.path(),
            2,
            &self.witnesses.iter().collect::<Vec<_>>(),
            &urls,
        );
    }

    fn policy(&self) -> Policy {
        Policy::read(&self.dir.path().join("witnesses.toml"))
            .unwrap()
            .unwrap()
    }
}

fn delivered(relay: &Relay) -> u64 {
    relay
        .engine()
        .campaigns()
        .get(CAMPAIGN)
        .map_or(0, |c| c.totals()[DeviceState::Delivered])
}

fn view(relay: &Relay) -> WitnessView {
    relay.witness_view().unwrap()
}

/// Device 1's delivery, checked as a device with the 2-of-3 policy checks it.
fn device_accepts(relay: &Relay, s: &Setup) -> u64 {
    let (device, delivery) = {
        let engine = relay.engine();
        let d = engine.campaigns()[CAMPAIGN].devices().next().unwrap();
        (
            d.id().to_owned(),
            d.delivery(Purpose::Update).unwrap().clone(),
        )
    };
    let vkeys: Vec<_> = s
        .witnesses
        .iter()
        .map(|w| cairn_verifier::witness::report::Vkey::parse(&w.vkey, &Software).unwrap())
        .collect();
    let keys: [_; 3] = std::array::from_fn(|i| vkeys[i].key(&Software).unwrap());
    let anchors = TrustAnchors {
        log: common::log_key(),
        release: ReleaseKey::new(public_key(&test_key(Fixture::RELEASE_KEY)), &Software),
        witnesses: WitnessPolicy::new(keys, 2).unwrap(),
    };
    let identity = DeviceIdentity {
        device_id: &device,
        product: "Smart Controller",
        family: "STM32H5",
        hardware_revision: "rev-c",
        current_version: Version::new(2, 3, 1),
    };
    verify_delivery(
        &delivery,
        &anchors,
        &identity,
        &StoredState::default(),
        &mut MemoryImage(&s.signer.update_image),
        &Software,
    )
    .unwrap()
    .checkpoint_size
    .0
}

#[test]
fn with_two_of_three_witnesses_up_deliveries_flow_and_the_cosignatures_go_back_to_the_signer() {
    let mut s = setup(None);
    s.start(0);
    s.start(1);
    // The third witness is down for the whole test.
    let (relay, runner) = s.relay();
    let imported = s.import(&relay);
    let size = imported["size"].as_u64().unwrap();
    wait_for("6 deliveries acknowledged", 30, || {
        delivered(&relay) == DEVICES
    });
    let v = view(&relay);
    assert_eq!((v.latest, v.witnessed, v.waiting()), (size, size, false));
    assert_eq!(v.witnesses[0].cosigned, size);
    assert_eq!(v.witnesses[1].cosigned, size);
    assert_eq!(v.witnesses[2].cosigned, 0);
    assert!(v.witnesses[2].last_error.is_some(), "{v:?}");
    // A device with the 2-of-3 policy accepts the delivery (the checkpoint carries two cosignatures).
    assert_eq!(device_accepts(&relay, &s), size);

    // The served checkpoint carries them: it goes back to the signer as a file for `cairn witness
    // attach` (which is cairn_vault::witness::attach with the signer's errors).
    let served = std::fs::read_to_string(s.dir.path().join("data/tiles/checkpoint")).unwrap();
    let policy = s.policy();
    let before = cairn_vault::witness::status(&s.signer.vault, &policy).unwrap();
    assert!(!before.report.met());
    let attached =
        cairn_vault::witness::attach(&s.signer.vault, &policy, &served, "relay").unwrap();
    assert!(attached.report.met(), "{}", attached.report.summary());
    assert_eq!(attached.report.missing, vec![NAMES[2].to_owned()]);

    // The log grows; witness 0 is sent the new checkpoint by someone else first (the signer's own
    // round): the relay's request from the old size is answered 409 with the new size, and the
    // relay asks again from it.
    s.signer.approve(0, ApprovalAction::OpenStage);
    let grown = s.signer.vault.checkpoint_sizes().unwrap();
    let new_size = *grown.last().unwrap();
    let direct =
        cairn_vault::witness::request(&s.signer.vault, &policy, NAMES[0], Some(size)).unwrap();
    let answer = cairn_relay::witness::add_checkpoint(
        &WitnessUrl::parse(&s.witnesses[0].url()).unwrap(),
        &direct.body,
        std::time::Duration::from_secs(5),
        &cairn_relay::witness::connector(None).unwrap(),
    )
    .unwrap();
    assert!(matches!(answer, Answer::Cosigned(_)), "{answer:?}");
    s.import(&relay);
    wait_for("the grown checkpoint cosigned by two", 20, || {
        view(&relay).witnessed == new_size
    });
    let v = view(&relay);
    assert_eq!(v.witnesses[0].cosigned, new_size);
    assert_eq!(v.witnesses[0].claimed, None);
    assert_eq!(v.witnesses[0].last_error, None);
    drop(runner);
}

#[test]
fn with_k_witnesses_down_deliveries_wait_with_a_status_naming_them_then_flow() {
    let mut s = setup(None);
    s.start(0);
    let (relay, runner) = s.relay();
    let imported = s.import(&relay);
    assert_eq!(imported["waiting_for_witnesses"], true, "{imported}");
    let size = imported["size"].as_u64().unwrap();
    wait_for("witness 0 cosigned", 20, || {
        view(&relay).witnesses[0].cosigned == size
    });
    wait_for("two failed requests to each witness down", 20, || {
        view(&relay).witnesses[1..].iter().all(|w| w.failures >= 2)
    });
    // Nothing was delivered, nothing queued: the campaign is not even taken up.
    assert_eq!(delivered(&relay), 0);
    assert!(relay.engine().campaigns().is_empty());
    assert_eq!(relay.engine().queued(), 0);
    let v = view(&relay);
    assert!(v.waiting());
    assert_eq!(v.witnessed, 0);
    let summary = v.summary();
    assert!(summary.starts_with("deliveries wait"), "{summary}");
    for name in &NAMES[1..] {
        assert!(summary.contains(name), "{summary}");
    }
    assert!(relay.dashboard().contains("deliveries wait"));
    assert!(
        relay.dashboard().contains("data-waiting=\"true\""),
        "the dashboard shows the wait"
    );
    // The API and the metrics say the same.
    let (status, body) = get(&relay, "/api/v1/witnesses");
    assert_eq!(status, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api["waiting"], true);
    assert_eq!(api["witnessed"], 0);
    assert_eq!(api["witnesses"][0]["cosigned"], size);
    assert!(api["witnesses"][1]["last_error"].is_string(), "{api}");
    let (_, metrics) = get(&relay, "/metrics");
    assert!(
        metrics.contains("cairn_relay_witness_waiting 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "cairn_relay_witness_cosigned_size{{witness=\"{}\"}} {size}\n",
            NAMES[0]
        )),
        "{metrics}"
    );

    // One of them comes back: it is asked again (backoff at most 2 s) and deliveries flow.
    s.start(2);
    wait_for("6 deliveries acknowledged", 30, || {
        delivered(&relay) == DEVICES
    });
    let v = view(&relay);
    assert_eq!((v.witnessed, v.waiting()), (size, false));
    assert_eq!(v.witnesses[2].cosigned, size);
    assert_eq!(v.witnesses[2].last_error, None);
    assert_eq!(device_accepts(&relay, &s), size);
    let (_, metrics) = get(&relay, "/metrics");
    assert!(
        metrics.contains("cairn_relay_witness_waiting 0\n"),
        "{metrics}"
    );
    drop(runner);
}

#[test]
fn a_cosignature_that_does_not_verify_is_not_attached_and_the_witness_is_named() {
    // Witness 1 is reached through a proxy that alters its signature.
    let mut s = setup(None);
    s.start(0);
    s.start(1);
    s.reach(1, forging_proxy(s.witnesses[1].port));
    let (relay, runner) = s.relay();
    let size = s.import(&relay)["size"].as_u64().unwrap();
    wait_for("the forged answer recorded", 20, || {
        view(&relay).witnesses[1].last_error.is_some()
    });
    let v = view(&relay);
    let error = v.witnesses[1].last_error.clone().unwrap();
    assert!(error.contains("does not verify"), "{error}");
    assert!(error.contains(NAMES[1]), "{error}");
    assert_eq!(v.witnesses[1].cosigned, 0);
    assert!(v.waiting());
    // The mirror's checkpoint carries witness 0's line only.
    let note = relay.vault().checkpoint(size).unwrap().unwrap();
    assert!(note.contains(NAMES[0]));
    assert!(!note.contains(NAMES[1]), "{note}");
    assert_eq!(delivered(&relay), 0);
    drop(runner);
}

#[test]
fn a_restarted_relay_keeps_the_cosignatures_it_gathered() {
    let mut s = setup(None);
    s.start(0);
    s.start(1);
    let size = {
        let (relay, runner) = s.relay();
        let size = s.import(&relay)["size"].as_u64().unwrap();
        wait_for("6 deliveries acknowledged", 30, || {
            delivered(&relay) == DEVICES
        });
        drop(runner);
        size
    };
    // Every witness down: the restarted relay still has the quorum, from its mirror.
    s.witnesses[0].stop();
    s.witnesses[1].stop();
    let (relay, runner) = s.relay();
    let v = view(&relay);
    assert_eq!((v.latest, v.witnessed, v.waiting()), (size, size, false));
    assert_eq!(v.witnesses[0].cosigned, size);
    assert_eq!(v.witnesses[1].cosigned, size);
    assert_eq!(delivered(&relay), DEVICES);
    let kept = cairn_vault::witness::status(relay.vault(), &s.policy()).unwrap();
    assert_eq!(kept.size, size);
    assert!(kept.report.met(), "{}", kept.report.summary());
    drop(runner);
}

#[test]
fn a_bundle_carrying_a_forged_cosignature_is_refused_and_nothing_is_stored() {
    let mut s = setup(None);
    s.start(0);
    // Witness 0's genuine cosignature of the signer's checkpoint, gathered on the signer's side.
    let policy = s.policy();
    let request = cairn_vault::witness::request(&s.signer.vault, &policy, NAMES[0], None).unwrap();
    let Answer::Cosigned(lines) = cairn_relay::witness::add_checkpoint(
        &WitnessUrl::parse(&s.witnesses[0].url()).unwrap(),
        &request.body,
        std::time::Duration::from_secs(5),
        &cairn_relay::witness::connector(None).unwrap(),
    )
    .unwrap() else {
        panic!("witness 0 did not cosign");
    };
    let mut bundle = s.signer.vault.export_bundle(0).unwrap();
    let note = bundle.checkpoint.clone();
    // One base64 character of the signature changed by whoever carried the bundle.
    let mut forged = lines.clone().into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    bundle.checkpoint = format!("{note}{}", String::from_utf8(forged).unwrap());
    let relay = Relay::open(&s.config()).unwrap();
    let refused = relay.import_bundle_bytes(&bundle.to_cbor()).unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains(NAMES[0]) && text.contains("does not verify"),
        "{text}"
    );
    assert_eq!(relay.vault().size(), 0, "nothing stored");
    // The same bundle with the genuine line is taken, and the line kept.
    bundle.checkpoint = format!("{note}{lines}");
    relay.import_bundle_bytes(&bundle.to_cbor()).unwrap();
    let stored = relay.vault().checkpoint(request.size).unwrap().unwrap();
    assert!(stored.contains(NAMES[0]), "{stored}");
}

#[test]
fn a_witness_behind_https_is_reached_with_the_configured_ca_and_refused_without_it() {
    // Witness 0 behind a TLS terminator whose certificate the test CA (the broker's) issued.
    let mut s = setup(None);
    s.start(0);
    s.start(1);
    let broker_dir = s.dir.path().join("broker");
    let https = tls_proxy(
        s.witnesses[0].port,
        &broker_dir.join("server.pem"),
        &broker_dir.join("server.key"),
    );
    s.reach(0, https);
    // Without the CA the relay does not trust the terminator: witness 0 fails with a TLS error
    // and deliveries wait.
    let (relay, runner) = s.relay();
    let size = s.import(&relay)["size"].as_u64().unwrap();
    wait_for("witness 0's TLS failure recorded", 20, || {
        view(&relay).witnesses[0].last_error.is_some()
    });
    let v = view(&relay);
    let error = v.witnesses[0].last_error.clone().unwrap();
    assert!(error.starts_with("TLS:"), "{error}");
    assert!(
        v.waiting() && v.witnesses[0].cosigned == 0,
        "{}",
        v.summary()
    );
    drop(runner);
    drop(relay);
    // With `[witnesses] ca`, the same witness cosigns over HTTPS and deliveries flow.
    let config = common::mqtt_config(
        s.dir.path(),
        &s.broker,
        &format!(
            "[rollout]\ntick_millis = 50\n{SECTION}ca = \"{}\"\n",
            broker_dir.join("ca.pem").display()
        ),
    );
    let relay = Arc::new(Relay::open(&config).unwrap());
    let runner = relay.start().unwrap();
    wait_for("witness 0 cosigned over HTTPS", 20, || {
        view(&relay).witnesses[0].cosigned == size
    });
    wait_for("6 deliveries acknowledged", 30, || {
        delivered(&relay) == DEVICES
    });
    assert_eq!(device_accepts(&relay, &s), size);
    drop(runner);
}
