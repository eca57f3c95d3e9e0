//! The signed plan's AWS IoT Jobs rollout controls (formats.md §4.9 key 17, docs/jobs.md), in the
//! engine, step by step on a simulated clock, through the Jobs transport: the rollout rate and
//! its exponential ramp hand deliveries out no faster than the plan says and step up as it says;
//! the in-progress timeout makes a silent device's execution TIMED_OUT; the retry criteria retry
//! each failure type as often as the plan allows and no more; each abort criterion (FAILED,
//! REJECTED, TIMED_OUT, ALL) pauses the campaign once its threshold and minimum are reached, and
//! not before. Every firing is an event in the relay log, and a restarted engine gets the ramp
//! back from it.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and each test is one scenario"
)]

mod common;

use std::time::Duration;

use cairn_relay::engine::{Engine, Status};
use cairn_relay::jobs::topics::job_id;
use cairn_relay::jobs::{JobStatus, Service};
use cairn_verifier::campaign::DeviceState;
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::rollout::jobs::{
    AbortCriterion, ExponentialRate, FailureType, JobsControls, RateIncrease, RetryCriterion,
};
use cairn_verifier::statement::Statement;
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use common::{CAMPAIGN, Policy, RELEASE, SignerLog, device, signer_log_with_jobs};
use serde_json::json;

const T0: u64 = 1_900_000_000;

struct World {
    _dir: tempfile::TempDir,
    signer: SignerLog,
    relay_dir: std::path::PathBuf,
    engine: Engine,
    jobs: Service,
}

impl World {
    fn new(devices: u64, policy: Policy, controls: JobsControls) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer_log_with_jobs(
            &dir.path().join("signer"),
            devices,
            0,
            &[("all", devices, 0, 1000, 1000, false)],
            policy,
            Some(controls),
        );
        let relay_dir = dir.path().join("relay");
        let engine = open(&relay_dir, &signer);
        Self {
            _dir: dir,
            signer,
            relay_dir,
            engine,
            jobs: Service::new(),
        }
    }

    /// One step at `t`, `elapsed` after the last: tick, commit, hand out, queue executions.
    /// Returns the devices handed out.
    fn step(&mut self, t: u64, elapsed: Duration) -> Vec<String> {
        self.engine.tick(&self.signer.vault, t).unwrap();
        let out = self
            .engine
            .commit(&self.signer.vault, elapsed, true)
            .unwrap();
        let handed = out.iter().map(|o| o.device.clone()).collect();
        self.engine.jobs_commit(&mut self.jobs, out, t);
        handed
    }

    /// A device's request on `jobs/<rest>`, recorded as the runner records it.
    fn send(&mut self, thing: &str, rest: &str, body: &serde_json::Value, t: u64) {
        let h = self
            .jobs
            .handle(thing, rest, body.to_string().as_bytes(), t);
        assert_eq!(h.rejected, None, "{thing} {rest} {body}");
        if let Some(tr) = &h.transition {
            self.engine.job_transition(tr, t).unwrap();
        }
    }

    fn update(&mut self, thing: &str, status: &str, t: u64) {
        let job = job_id(CAMPAIGN, RELEASE);
        self.send(
            thing,
            &format!("{job}/update"),
            &json!({ "status": status }),
            t,
        );
    }

    fn state(&self, d: &str) -> DeviceState {
        self.engine.campaigns()[CAMPAIGN].device(d).unwrap().state()
    }

    fn status(&self) -> Status {
        self.engine.campaigns()[CAMPAIGN].status()
    }

    /// The causes of the campaign events with `action` in the relay log, oldest first.
    fn campaign_causes(&self, action: &str) -> Vec<String> {
        let log = self.engine.log().vault();
        (0..log.size())
            .filter_map(|i| match Statement::decode(&log.entry(i).unwrap()) {
                Ok(Statement::CampaignEvent(e)) if e.action.name() == action => {
                    Some(e.cause.as_str().to_owned())
                }
                _ => None,
            })
            .collect()
    }

    fn last_cause(&self, d: &str) -> (DeviceState, String, String) {
        let e = self
            .engine
            .device_history(CAMPAIGN, d)
            .unwrap()
            .events
            .pop()
            .unwrap();
        (e.state, e.actor, e.cause)
    }
}

fn open(dir: &std::path::Path, signer: &SignerLog) -> Engine {
    Engine::open(
        dir,
        "oem.example/cairn/relay",
        ReleaseKey::new(public_key(&test_key(Fixture::RELEASE_KEY)), &Software),
        &signer.vault,
    )
    .unwrap()
}

#[test]
fn the_rollout_rate_and_its_exponential_ramp_hold_to_the_plan() {
    let controls = JobsControls {
        maximum_per_minute: Some(40),
        exponential_rate: Some(ExponentialRate {
            base_per_minute: 10,
            increment_tenths: 20,
            increase: RateIncrease::Notified(10),
        }),
        ..JobsControls::default()
    };
    let mut w = World::new(100, Policy::default(), controls);
    // The bucket starts with one minute's worth: 10 deliveries, then one every 6 s.
    let mut handed = w.step(T0, Duration::ZERO);
    assert_eq!(handed.len(), 10);
    let first = handed.clone();
    for (t, elapsed, want, why) in [
        (T0 + 1, 1, 0, "under 1 a second"),
        (T0 + 7, 6, 1, "one every 6 s"),
        (T0 + 67, 60, 10, "a minute: 10"),
        (T0 + 187, 120, 10, "never more than a minute's worth"),
    ] {
        let out = w.step(t, Duration::from_secs(elapsed));
        assert_eq!(out.len(), want, "{why}");
        handed.extend(out);
    }
    assert_eq!(
        w.campaign_causes("rate-increased").len(),
        0,
        "no device notified yet"
    );

    // 10 devices start their execution (notified): the ramp steps up to 20 a minute.
    for d in &first {
        w.send(d, "start-next", &json!({}), T0 + 190);
    }
    w.step(T0 + 190, Duration::ZERO);
    let ramp = w.campaign_causes("rate-increased");
    assert_eq!(ramp.len(), 1, "{ramp:?}");
    assert!(
        ramp[0].contains("exponential rate: 10 -> 20 things/min after 10 more notified things"),
        "{ramp:?}"
    );
    assert_eq!(w.engine.campaigns()[CAMPAIGN].rollout().rate, Some(20));
    let out = w.step(T0 + 250, Duration::from_secs(60));
    assert_eq!(out.len(), 20, "20 a minute now");
    handed.extend(out);

    // 21 more notified: 20 -> 40, the cap; then no step beyond it.
    for d in handed.iter().skip(10).take(21) {
        w.send(d, "start-next", &json!({}), T0 + 260);
    }
    w.step(T0 + 260, Duration::ZERO);
    w.step(T0 + 261, Duration::ZERO);
    let ramp = w.campaign_causes("rate-increased");
    assert_eq!(ramp.len(), 2, "{ramp:?}");
    assert!(ramp[1].contains("20 -> 40 things/min"), "{ramp:?}");
    assert_eq!(w.step(T0 + 321, Duration::from_secs(60)).len(), 40);

    // A restarted engine gets the rate back from the relay log.
    let World {
        _dir,
        signer,
        relay_dir,
        engine,
        ..
    } = w;
    drop(engine);
    let engine = open(&relay_dir, &signer);
    let c = &engine.campaigns()[CAMPAIGN];
    assert_eq!((c.rollout().rate, c.rollout().increases), (Some(40), 2));
}

#[test]
fn the_in_progress_timeout_makes_a_silent_execution_timed_out() {
    let controls = JobsControls {
        in_progress_timeout_minutes: Some(2),
        ..JobsControls::default()
    };
    let policy = Policy {
        max_attempts: 2,
        backoff_secs: 30,
        ..Policy::default()
    };
    let mut w = World::new(2, policy, controls);
    let (d1, d2) = (device(1), device(2));
    w.step(T0, Duration::ZERO);
    w.send(&d1, "start-next", &json!({}), T0 + 10);
    w.send(&d2, "start-next", &json!({}), T0 + 10);
    w.update(&d2, "SUCCEEDED", T0 + 60);
    w.step(T0 + 129, Duration::from_secs(1));
    assert_eq!(w.state(&d1), DeviceState::Delivered, "119 s: not yet");
    w.step(T0 + 130, Duration::from_secs(1));
    assert_eq!(w.state(&d1), DeviceState::Failed);
    let (_, actor, cause) = w.last_cause(&d1);
    assert_eq!(actor, "rule");
    assert!(
        cause.contains("job TIMED_OUT: the plan's in-progress timeout of 2 min ran out"),
        "{cause}"
    );
    let job = job_id(CAMPAIGN, RELEASE);
    let e = w.jobs.execution(&d1, &job).unwrap();
    assert_eq!((e.status, e.execution_number), (JobStatus::TimedOut, 1));
    assert_eq!(
        w.state(&d2),
        DeviceState::Installed,
        "an answered device is not timed out"
    );
    // No retry criteria: the plan's retries apply as before (execution 2 after the backoff).
    w.step(T0 + 160, Duration::from_secs(30));
    let e = w.jobs.execution(&d1, &job).unwrap();
    assert_eq!((e.status, e.execution_number), (JobStatus::Queued, 2));
}

#[test]
fn retry_criteria_retry_each_failure_type_as_often_as_the_plan_allows() {
    let controls = JobsControls {
        retry: [
            Some(RetryCriterion {
                failure_type: FailureType::Failed,
                retries: 1,
            }),
            None,
        ],
        in_progress_timeout_minutes: Some(1),
        ..JobsControls::default()
    };
    let policy = Policy {
        max_attempts: 3,
        backoff_secs: 0,
        quarantine_after_failures: 10,
        quarantine_on_verification_failure: false,
    };
    let mut w = World::new(3, policy, controls);
    let (failing, silent, rejecting) = (device(1), device(2), device(3));
    let job = job_id(CAMPAIGN, RELEASE);
    w.step(T0, Duration::ZERO);
    w.update(&failing, "FAILED", T0 + 1);
    w.send(&silent, "start-next", &json!({}), T0 + 1);
    w.update(&rejecting, "REJECTED", T0 + 1);
    w.step(T0 + 2, Duration::ZERO);
    w.step(T0 + 3, Duration::ZERO);
    // FAILED has one retry: execution 2.
    assert_eq!(
        w.jobs.execution(&failing, &job).unwrap().execution_number,
        2
    );
    let (state, _, cause) = w.last_cause(&failing);
    assert_eq!(state, DeviceState::Pending);
    assert!(
        cause.contains("retry criteria FAILED: retry 1 of 1"),
        "{cause}"
    );
    // REJECTED is never retried: the rollback target, at once.
    let (state, _, cause) = w.last_cause(&rejecting);
    assert_eq!(state, DeviceState::Pending);
    assert!(
        cause.contains("retry criteria REJECTED: 1 failures, 0 retries allowed"),
        "{cause}"
    );
    assert!(
        w.engine.campaigns()[CAMPAIGN]
            .device(&rejecting)
            .unwrap()
            .rolling_back()
    );
    // TIMED_OUT has no criterion and there is no ALL: no retry either.
    w.step(T0 + 62, Duration::ZERO);
    w.step(T0 + 63, Duration::ZERO);
    let (state, _, cause) = w.last_cause(&silent);
    assert_eq!(state, DeviceState::Pending);
    assert!(
        cause.contains("retry criteria TIMED_OUT: 1 failures, 0 retries allowed"),
        "{cause}"
    );
    // The second FAILED spends the retry: rollback, though max_attempts (3) would allow one more.
    w.update(&failing, "FAILED", T0 + 70);
    w.step(T0 + 71, Duration::ZERO);
    w.step(T0 + 72, Duration::ZERO);
    let d = w.engine.campaigns()[CAMPAIGN].device(&failing).unwrap();
    assert!(d.rolling_back(), "{:?}", w.last_cause(&failing));
    assert_eq!(d.attempt(), 1, "the rollback's first attempt");
    let rollbacks = w.campaign_causes("rollback-started");
    assert!(
        rollbacks
            .iter()
            .any(|c| c.contains("no retry left under the plan's retry criteria")),
        "{rollbacks:?}"
    );
}

/// Each failure type's criterion: 50 % of at least 4 executed things.
#[test]
fn each_abort_criterion_pauses_the_campaign_at_its_threshold_and_minimum() {
    for t in FailureType::ALL {
        let mut abort = [None; 4];
        abort[usize::try_from(t.code() - 1).unwrap()] = Some(AbortCriterion {
            failure_type: t,
            threshold_hundredths: 5000,
            min_executed: 4,
        });
        let controls = JobsControls {
            abort,
            in_progress_timeout_minutes: Some(1),
            ..JobsControls::default()
        };
        let policy = Policy {
            max_attempts: 1,
            quarantine_on_verification_failure: false,
            ..Policy::default()
        };
        let mut w = World::new(10, policy, controls);
        w.step(T0, Duration::ZERO);
        // A failure of the criterion's own type (ALL: FAILED), by `fail`.
        let fail = |w: &mut World, d: &str, at: u64| match t {
            FailureType::Failed | FailureType::All => w.update(d, "FAILED", at),
            FailureType::Rejected => w.update(d, "REJECTED", at),
            FailureType::TimedOut => {
                w.send(d, "start-next", &json!({}), at);
                w.step(at + 61, Duration::ZERO);
            }
        };
        // Another type, which only ALL counts.
        let other = |w: &mut World, d: &str, at: u64| match t {
            FailureType::Rejected => w.update(d, "FAILED", at),
            _ => w.update(d, "REJECTED", at),
        };
        let (d1, d2, d3, d4, d5) = (device(1), device(2), device(3), device(4), device(5));
        fail(&mut w, &d1, T0 + 1);
        other(&mut w, &d2, T0 + 100);
        w.update(&d3, "SUCCEEDED", T0 + 101);
        w.step(T0 + 102, Duration::ZERO);
        if t == FailureType::All {
            // 2 of 3 executed: above 50 %, but under the minimum of 4.
            assert_eq!(w.status(), Status::Running, "{t:?}: under the minimum");
        } else {
            assert_eq!(w.status(), Status::Running, "{t:?}: 1 of 3");
        }
        w.update(&d4, "SUCCEEDED", T0 + 103);
        w.step(T0 + 104, Duration::ZERO);
        if t == FailureType::All {
            // 2 of 4 failed (FAILED and REJECTED): 50 % >= 50 %.
            assert_eq!(w.status(), Status::Paused { by_rule: true }, "{t:?}");
        } else {
            // 1 of 4 of its type: 25 %. A second one makes 2 of 5: 40 %, still under.
            assert_eq!(w.status(), Status::Running, "{t:?}: 1 of 4");
            fail(&mut w, &d5, T0 + 110);
            w.step(T0 + 240, Duration::ZERO);
            assert_eq!(w.status(), Status::Running, "{t:?}: 2 of 5");
            let d6 = device(6);
            fail(&mut w, &d6, T0 + 250);
            w.step(T0 + 400, Duration::ZERO);
            // 3 of 6: 50 %.
            assert_eq!(
                w.status(),
                Status::Paused { by_rule: true },
                "{t:?}: 3 of 6"
            );
        }
        let paused = w.campaign_causes("paused");
        assert!(
            paused
                .iter()
                .any(|c| c.contains(&format!("abort criteria {}:", t.name()))
                    && c.contains("50.00% >= 50.00%, at least 4 executed")),
            "{t:?}: {paused:?}"
        );
    }
}
