//! The rollout engine against a signed plan, step by step with explicit times: stages, soak,
//! gates, approvals (and a forged one), retries with backoff, rollback by rule and by operator,
//! quarantine by rule and by operator, pauses by threshold and by operator, status reports that
//! are malformed, replayed or from strangers, and the state rebuilt from the relay log alone.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and each test is one scenario"
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cairn_relay::engine::{Engine, Outgoing, Selection, Status};
use cairn_vault::{Query, Vault};
use cairn_verifier::campaign::{
    ApprovalAction, DeviceState, Outcome, StatusReport, stage_order_key,
};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::statement::Statement;
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::Id;
use common::{CAMPAIGN, Policy, RELEASE, ROLLBACK, SignerLog, signer_log};

const RELAY_ORIGIN: &str = "oem.example/cairn/relay";

fn release_key() -> ReleaseKey {
    ReleaseKey::new(public_key(&test_key(Fixture::RELEASE_KEY)), &Software)
}

/// The relay's engine on the signer's log, its state under `dir/relay` (kept across reopenings).
fn open(dir: &Path, signer: &SignerLog) -> Engine {
    Engine::open(
        &dir.join("relay"),
        RELAY_ORIGIN,
        release_key(),
        &signer.vault,
    )
    .unwrap()
}

fn report(release: &str, outcome: Outcome, detail: &str, sequence: u64) -> Vec<u8> {
    StatusReport {
        campaign: Id::new(CAMPAIGN).unwrap(),
        release_id: Id::new(release).unwrap(),
        outcome,
        detail: Id::new(detail).unwrap(),
        sequence,
    }
    .to_cbor()
}

struct Run<'a> {
    engine: Engine,
    mirror: &'a Vault,
    seq: BTreeMap<String, u64>,
}

impl Run<'_> {
    /// One engine step at `t`: tick, commit, and the deliveries handed out (acknowledged at once).
    fn step(&mut self, t: u64) -> Vec<Outgoing> {
        self.engine.tick(self.mirror, t).unwrap();
        let out = self
            .engine
            .commit(self.mirror, Duration::from_secs(1), true)
            .unwrap();
        for o in &out {
            self.engine
                .acked(&o.campaign, &o.device, &o.release, t)
                .unwrap();
        }
        self.engine
            .commit(self.mirror, Duration::ZERO, false)
            .unwrap();
        out
    }

    fn say(&mut self, device: &str, release: &str, outcome: Outcome, detail: &str, t: u64) {
        let seq = self.seq.entry(device.to_owned()).or_default();
        *seq += 1;
        let payload = report(release, outcome, detail, *seq);
        self.engine.report(device, &payload, t).unwrap();
    }

    fn state(&self, device: &str) -> DeviceState {
        self.engine.campaigns()[CAMPAIGN]
            .device(device)
            .unwrap()
            .state()
    }

    fn status(&self) -> Status {
        self.engine.campaigns()[CAMPAIGN].status()
    }
}

fn devices_of(out: &[Outgoing]) -> Vec<String> {
    out.iter().map(|o| o.device.clone()).collect()
}

/// Every device's latest event in the relay log names the state the engine holds.
fn log_agrees(engine: &Engine) {
    let log = engine.log().vault();
    for d in engine.campaigns()[CAMPAIGN].devices() {
        let (device, state) = (d.id(), d.state());
        let last = *log
            .query_indices(Query::Device(device))
            .unwrap()
            .last()
            .unwrap();
        let entry = log.entry(last).unwrap();
        let Statement::DeviceEvent(e) = Statement::decode(&entry).unwrap() else {
            panic!("entry {last} is not a device event");
        };
        assert_eq!(e.state, state, "{device}");
    }
}

#[test]
fn a_campaign_runs_as_its_signed_plan_says() {
    let dir = tempfile::tempdir().unwrap();
    let signer: SignerLog = signer_log(
        &dir.path().join("signer"),
        10,
        2,
        &[
            ("canary", 2, 10, 1000, 500, true),
            ("wave-1", 6, 0, 750, 600, false),
            ("fleet", 10, 0, 750, 300, false),
        ],
        Policy {
            max_attempts: 2,
            backoff_secs: 5,
            quarantine_after_failures: 5,
            quarantine_on_verification_failure: true,
        },
    );
    let engine = open(dir.path(), &signer);
    let mut run = Run {
        engine,
        mirror: &signer.vault,
        seq: BTreeMap::new(),
    };

    // The stages hold the devices in the order of SHA-256(campaign || 0 || device).
    let mut order = signer.devices.clone();
    order.sort_by_key(|d| stage_order_key(&Software, CAMPAIGN, d));
    let canary = run.step(1000);
    assert_eq!(devices_of(&canary), order[..2]);
    assert_eq!(run.status(), Status::Running);
    assert_eq!(
        run.engine.campaigns()[CAMPAIGN].totals()[DeviceState::Rejected],
        2,
        "rejected"
    );
    for d in &order[..2] {
        assert_eq!(run.state(d), DeviceState::Delivered);
        run.say(d, RELEASE, Outcome::Installed, "ok", 1001);
    }
    // Not before the soak is over; then the approval gate holds the next stage.
    assert!(run.step(1005).is_empty());
    assert_eq!(run.status(), Status::Running);
    assert!(run.step(1010).is_empty());
    assert_eq!(run.status(), Status::WaitingApproval);

    // An approval not signed by the release key changes nothing.
    signer.approve_with(1, ApprovalAction::OpenStage, 3);
    run.engine.on_mirror(&signer.vault, 1011).unwrap();
    assert_eq!(run.engine.stats().approvals_refused, 1);
    assert!(run.step(1011).is_empty());
    signer.approve(1, ApprovalAction::OpenStage);
    run.engine.on_mirror(&signer.vault, 1012).unwrap();
    let wave = run.step(1012);
    assert_eq!(devices_of(&wave), order[2..6]);

    // wave-1: two install, one fails once then installs on the retry after its backoff, one
    // reports tampering and is quarantined by the plan's rule.
    let (ok1, ok2, flaky, tampered) = (&order[2], &order[3], &order[4], &order[5]);
    run.say(ok1, RELEASE, Outcome::Installed, "ok", 1013);
    run.say(ok2, RELEASE, Outcome::Installed, "ok", 1013);
    run.say(flaky, RELEASE, Outcome::InstallFailed, "flash-write", 1013);
    run.say(
        tampered,
        RELEASE,
        Outcome::VerificationFailed,
        "image-digest",
        1013,
    );
    assert_eq!(run.state(flaky), DeviceState::Failed);
    assert_eq!(run.state(tampered), DeviceState::Quarantined);
    assert!(run.step(1014).is_empty(), "backoff 5 s");
    let retry = run.step(1018);
    assert_eq!(devices_of(&retry), std::slice::from_ref(flaky));
    assert_eq!(
        run.engine.campaigns()[CAMPAIGN]
            .device(flaky)
            .unwrap()
            .attempt(),
        2
    );
    run.say(flaky, RELEASE, Outcome::Installed, "ok", 1019);

    // 3 of 4 installed: 750‰ meets the threshold, the automatic gate opens the last stage.
    let fleet = run.step(1020);
    assert_eq!(devices_of(&fleet), order[6..10]);
    let (broken, regret, f3, f4) = (&order[6], &order[7], &order[8], &order[9]);
    run.say(broken, RELEASE, Outcome::InstallFailed, "flash-write", 1021);
    run.say(regret, RELEASE, Outcome::Installed, "ok", 1021);
    run.say(f3, RELEASE, Outcome::Installed, "ok", 1021);
    run.say(f4, RELEASE, Outcome::Installed, "ok", 1021);
    // The second failure exhausts max_attempts: the rule delivers the pre-signed target.
    let retry = run.step(1026);
    assert_eq!(
        devices_of(&retry),
        std::slice::from_ref(broken),
        "{:#}",
        run.engine.summary(CAMPAIGN).unwrap()
    );
    run.say(broken, RELEASE, Outcome::InstallFailed, "flash-write", 1027);
    let back = run.step(1027);
    assert_eq!(devices_of(&back), std::slice::from_ref(broken));
    assert_eq!(back[0].release, ROLLBACK);
    run.say(broken, ROLLBACK, Outcome::Installed, "ok", 1028);
    assert_eq!(run.state(broken), DeviceState::RolledBack);
    run.step(1029);
    assert_eq!(run.status(), Status::Completed);

    // An operator rolls an installed device back; a device still eligible cannot be.
    let n = run
        .engine
        .rollback(
            &signer.vault,
            CAMPAIGN,
            &Selection::Devices(vec![regret.clone()]),
            "operator:alice",
            "field report: reboot loop",
            1030,
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(run.step(1030)[0].release, ROLLBACK);
    run.say(regret, ROLLBACK, Outcome::Installed, "ok", 1031);
    assert_eq!(run.state(regret), DeviceState::RolledBack);
    let err = run
        .engine
        .rollback(
            &signer.vault,
            CAMPAIGN,
            &Selection::Devices(vec!["sc-9999999".into()]),
            "operator:alice",
            "x",
            1032,
        )
        .unwrap_err();
    assert!(err.to_string().contains("not in campaign"), "{err}");

    // Reports that are not what they should be are counted and change nothing.
    run.engine
        .commit(&signer.vault, Duration::ZERO, false)
        .unwrap();
    let before = run.engine.log().vault().size();
    run.engine.report(f3, b"\xa0not cbor", 1033).unwrap();
    run.engine
        .report(f3, &report(RELEASE, Outcome::InstallFailed, "x", 1), 1033)
        .unwrap();
    run.engine
        .report(
            "sc-7777777",
            &report(RELEASE, Outcome::Installed, "ok", 9),
            1033,
        )
        .unwrap();
    run.engine
        .report(
            f4,
            &report("controller-fw-9.9.9", Outcome::Installed, "ok", 99),
            1033,
        )
        .unwrap();
    run.engine
        .commit(&signer.vault, Duration::ZERO, false)
        .unwrap();
    let stats = run.engine.stats();
    assert_eq!((stats.malformed, stats.replayed, stats.refused), (1, 1, 2));
    assert_eq!(run.engine.log().vault().size(), before);
    assert_eq!(run.state(f3), DeviceState::Installed);

    // Final states, as the relay log has them.
    let totals = run.engine.campaigns()[CAMPAIGN].totals();
    let count = |s: DeviceState| totals[s];
    assert_eq!(count(DeviceState::Installed), 7);
    assert_eq!(count(DeviceState::RolledBack), 2);
    assert_eq!(count(DeviceState::Quarantined), 1);
    log_agrees(&run.engine);
    // The relay log's entries are all relay events, in a signed tree.
    let log = run.engine.log().vault();
    assert!(log.latest_checkpoint().unwrap().is_some());
    let summary = run.engine.summary(CAMPAIGN).unwrap();

    // A restarted relay gets the same state back from its log alone.
    drop(run);
    let engine = open(dir.path(), &signer);
    let again = engine.summary(CAMPAIGN).unwrap();
    for key in ["status", "stage", "states", "stages"] {
        assert_eq!(again[key], summary[key], "{key}");
    }
    log_agrees(&engine);
}

#[test]
fn the_failure_threshold_pauses_and_only_a_signed_approval_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let signer = signer_log(
        &dir.path().join("signer"),
        10,
        0,
        &[
            ("canary", 2, 0, 500, 500, false),
            ("fleet", 10, 0, 500, 200, false),
        ],
        Policy::default(),
    );
    let engine = open(dir.path(), &signer);
    let mut run = Run {
        engine,
        mirror: &signer.vault,
        seq: BTreeMap::new(),
    };
    for o in run.step(100) {
        run.say(&o.device, RELEASE, Outcome::Installed, "ok", 101);
    }
    let fleet = run.step(102);
    assert_eq!(fleet.len(), 8);
    // A resume signed in advance, before anything failed: it must not lift the pause to come.
    signer.approve(1, ApprovalAction::Resume);
    run.engine.on_mirror(&signer.vault, 102).unwrap();
    // One failure of eight (125‰) is under 200‰; the second (250‰) pauses.
    run.say(
        &fleet[0].device,
        RELEASE,
        Outcome::InstallFailed,
        "flash-write",
        103,
    );
    run.step(103);
    assert_eq!(run.status(), Status::Running);
    run.say(
        &fleet[1].device,
        RELEASE,
        Outcome::InstallFailed,
        "flash-write",
        104,
    );
    run.step(104);
    assert_eq!(
        run.status(),
        Status::Paused { by_rule: true },
        "{:#}",
        run.engine.summary(CAMPAIGN).unwrap()
    );
    // Paused: no retry goes out (backoff 0), an operator cannot resume it.
    assert!(run.step(110).is_empty());
    let err = run
        .engine
        .resume(CAMPAIGN, "operator:alice", "looks fine", 111)
        .unwrap_err();
    assert!(err.to_string().contains("cairn rollout approve"), "{err}");
    // The resume signed in advance was refused when the pause came, and says why.
    assert_eq!(run.engine.stats().approvals_refused, 1);
    assert!(
        run.engine
            .problems
            .iter()
            .any(|p| p.contains("signed before the custodians recorded the relay log")),
        "{:?}",
        run.engine.problems
    );
    // A resume approval for another stage does not apply; one for this stage signed without
    // the pause recorded does not either; after the custodians record the relay log (the pause
    // included), a new one does.
    signer.approve(0, ApprovalAction::Resume);
    run.engine.on_mirror(&signer.vault, 112).unwrap();
    assert_eq!(run.status(), Status::Paused { by_rule: true });
    signer.approve(1, ApprovalAction::Resume);
    run.engine.on_mirror(&signer.vault, 112).unwrap();
    assert_eq!(run.status(), Status::Paused { by_rule: true });
    assert_eq!(run.engine.stats().approvals_refused, 2);
    signer.record_relay(run.engine.log());
    run.engine.on_mirror(&signer.vault, 113).unwrap();
    assert_eq!(run.status(), Status::Paused { by_rule: true });
    signer.approve(1, ApprovalAction::Resume);
    run.engine.on_mirror(&signer.vault, 113).unwrap();
    assert_eq!(run.status(), Status::Running);
    // The failures the approval answered do not pause again; the retry held by the pause goes
    // out (the first failed device was retried at once, before the pause: backoff 0).
    let retries = run.step(113);
    assert_eq!(devices_of(&retries), [fleet[1].device.clone()]);
    assert_eq!(run.status(), Status::Running);
    for o in &fleet {
        run.say(&o.device, RELEASE, Outcome::Installed, "ok", 114);
    }
    run.step(115);
    assert_eq!(run.status(), Status::Completed);
    // The approval is recorded with the custodians as actor.
    let log = run.engine.log().vault();
    let applied = log
        .query_indices(Query::Campaign(CAMPAIGN))
        .unwrap()
        .into_iter()
        .filter_map(
            |i| match Statement::decode(&log.entry(i).unwrap()).unwrap() {
                Statement::CampaignEvent(e) => Some((e.action.name(), e.actor.as_str().to_owned())),
                _ => None,
            },
        )
        .filter(|(a, _)| *a == "approval-applied")
        .collect::<Vec<_>>();
    assert_eq!(applied, [("approval-applied", "custodians".to_owned())]);
    log_agrees(&run.engine);
}

#[test]
fn operators_pause_resume_and_quarantine_and_the_rate_limit_holds_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let signer = signer_log(
        &dir.path().join("signer"),
        8,
        0,
        &[("all", 8, 0, 500, 500, false)],
        Policy::default(),
    );
    let mut engine = open(dir.path(), &signer);
    engine.set_rate(Some(2));
    engine.tick(&signer.vault, 10).unwrap();
    let first = engine
        .commit(&signer.vault, Duration::from_secs(1), true)
        .unwrap();
    assert_eq!(first.len(), 2, "2 a second");
    engine
        .pause(CAMPAIGN, "operator:alice", "change freeze", 11)
        .unwrap();
    assert!(
        engine
            .pause(CAMPAIGN, "operator:alice", "again", 11)
            .is_err()
    );
    let c = &engine.campaigns()[CAMPAIGN];
    let held: Vec<String> = c
        .devices()
        .filter(|d| d.state() == DeviceState::Paused)
        .map(|d| d.id().to_owned())
        .collect();
    assert_eq!(held.len(), 6);
    assert!(
        engine
            .commit(&signer.vault, Duration::from_secs(10), true)
            .unwrap()
            .is_empty()
    );
    // Quarantine by an operator: the device is never delivered.
    assert_eq!(
        engine
            .quarantine(
                CAMPAIGN,
                &held[..1],
                "operator:alice",
                "returned to the lab",
                12
            )
            .unwrap(),
        1
    );
    assert!(
        engine
            .quarantine(CAMPAIGN, &["sc-0000099".into()], "operator:alice", "x", 12)
            .is_err()
    );
    engine
        .resume(CAMPAIGN, "operator:alice", "freeze over", 13)
        .unwrap();
    let rest = engine
        .commit(&signer.vault, Duration::from_secs(10), true)
        .unwrap();
    assert_eq!(rest.len(), 5);
    assert!(!rest.iter().any(|o| o.device == held[0]));
    assert_eq!(
        engine.campaigns()[CAMPAIGN]
            .device(&held[0])
            .unwrap()
            .state(),
        DeviceState::Quarantined
    );
    log_agrees(&engine);
}

#[test]
fn a_replayed_report_is_refused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let signer = signer_log(
        &dir.path().join("signer"),
        2,
        0,
        &[("all", 2, 0, 1000, 1000, false)],
        Policy {
            max_attempts: 3,
            backoff_secs: 5,
            quarantine_after_failures: 5,
            quarantine_on_verification_failure: false,
        },
    );
    let mut run = Run {
        engine: open(dir.path(), &signer),
        mirror: &signer.vault,
        seq: BTreeMap::new(),
    };
    let first = run.step(1000);
    assert_eq!(first.len(), 2);
    let device = first[0].device.clone();
    // Attempt 1 fails (report 1); the retry after the backoff is delivered (attempt 2).
    let failure = report(RELEASE, Outcome::InstallFailed, "flash-write", 1);
    run.engine.report(&device, &failure, 1001).unwrap();
    run.step(1001);
    assert_eq!(run.state(&device), DeviceState::Failed);
    let retry = run.step(1006);
    assert_eq!(devices_of(&retry), std::slice::from_ref(&device));
    assert_eq!(run.state(&device), DeviceState::Delivered);

    // The relay restarts; the broker hands it report 1 again (or someone replays it). The
    // restarted relay knows the device's last report from its log and refuses it, so attempt 2 is
    // not counted as failed.
    drop(run);
    let mut run = Run {
        engine: open(dir.path(), &signer),
        mirror: &signer.vault,
        seq: BTreeMap::new(),
    };
    assert_eq!(run.state(&device), DeviceState::Delivered);
    run.engine.report(&device, &failure, 1007).unwrap();
    run.step(1007);
    assert_eq!(run.engine.stats().replayed, 1);
    assert_eq!(run.state(&device), DeviceState::Delivered);
    // Its next report is taken, and the event records its sequence.
    run.engine
        .report(&device, &report(RELEASE, Outcome::Installed, "ok", 2), 1008)
        .unwrap();
    run.step(1008);
    assert_eq!(run.state(&device), DeviceState::Installed);
    let log = run.engine.log().vault();
    let last = *log
        .query_indices(Query::Device(&device))
        .unwrap()
        .last()
        .unwrap();
    let entry = log.entry(last).unwrap();
    let Statement::DeviceEvent(e) = Statement::decode(&entry).unwrap() else {
        panic!("entry {last} is not a device event");
    };
    assert_eq!(
        (e.state, e.actor.as_str(), e.report),
        (DeviceState::Installed, "device", 2)
    );
}

#[test]
fn devices_queued_when_the_relay_stopped_are_delivered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let signer = signer_log(
        &dir.path().join("signer"),
        3,
        0,
        &[("all", 3, 0, 1000, 1000, false)],
        Policy::default(),
    );
    // The stage opens and its devices are queued, but the relay stops before it publishes.
    let mut engine = open(dir.path(), &signer);
    engine.tick(&signer.vault, 1000).unwrap();
    let none = engine.commit(&signer.vault, Duration::ZERO, false).unwrap();
    assert!(none.is_empty());
    assert_eq!(engine.queued(), 3);
    drop(engine);

    // The restarted relay queues them again, with their deliveries, and hands them out.
    let mut engine = open(dir.path(), &signer);
    assert_eq!(engine.queued(), 3);
    let out = engine
        .commit(&signer.vault, Duration::from_secs(1), true)
        .unwrap();
    let mut devices = devices_of(&out);
    devices.sort();
    assert_eq!(devices, signer.devices);
    assert!(out.iter().all(|o| !o.delivery.is_empty()));
}
