//! AWS IoT Jobs rollout controls in the signed plan (docs/jobs.md, "Rollout controls"), on a real
//! token: a plan whose ramp, timeout, abort or retry rule is invalid is refused before anything
//! is signed, the error naming the field; a valid one is signed with its controls as plan key 17;
//! and the `CreateJob` requests exported from it are accepted by AWS's own service model
//! (botocore's `iot` model and `ParamValidator`, through tools/aws/check-create-job.py in the
//! project's `.venv`), while requests broken on purpose are refused, each naming its member.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and each test is one scenario"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_signer::Error;
use cairn_signer::appliance::Appliance;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::rollout::PlanSpec;
use cairn_signer::rollout::awsjob::{ExportOptions, create_job_requests};
use cairn_signer::session::ReleaseInput;
use cairn_signer::testfleet;
use cairn_verifier::rollout::jobs::{
    AbortCriterion, ExponentialRate, FailureType, JobsControls, RateIncrease, RetryCriterion,
};
use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::{UnixTime, Version};
use common::{NOW, ceremony, in_token, present};

const PLAN: &str = include_str!("../../docs/examples/plan-2.4.1.toml");
/// The `[jobs]` section of docs/jobs.md's example.
const JOBS: &str = include_str!("../../docs/examples/jobs-controls.toml");
const DEVICES: u64 = 300;

/// A CreateJob request broken one way: its name, the break, what the checker must say.
type Broken = (&'static str, fn(&mut serde_json::Value), &'static str);

fn release(id: &str, version: Version) -> ReleaseInput {
    ReleaseInput {
        release_id: id.into(),
        product: "Smart Controller".into(),
        family: "STM32H5".into(),
        hardware_revisions: vec!["rev-b".into(), "rev-c".into()],
        version,
        security_epoch: 7,
        support_until: UnixTime(NOW.0 + 5 * 365 * 86_400),
        advisories: vec![],
        artifact: None,
    }
}

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3");
    assert!(
        p.exists(),
        "{} not found: tools/setup installs botocore (tools/requirements.txt) into the project's .venv",
        p.display()
    );
    p
}

/// Runs the checker on `files`: its exit status and output.
fn check(files: &[PathBuf]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/aws/check-create-job.py");
    let out = Command::new(python())
        .arg(script)
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        out.status.code(),
        Some(2),
        "the checker could not run: {text}"
    );
    (out.status.success(), text)
}

#[test]
fn jobs_controls_are_validated_signed_and_exported_as_aws_accepts_them() {
    in_token(
        "jobs_controls_are_validated_signed_and_exported_as_aws_accepts_them",
        |module, dir| {
            ceremony(module, dir, "cairn");
            let appliance = Appliance::open(dir.join("cairn")).unwrap();
            let session = appliance
                .unlock(
                    module,
                    &present(dir, "cairn", &["alice", "bob", "carol"]),
                    NOW,
                )
                .unwrap();
            let image = dir.join("fw.bin");
            std::fs::write(&image, vec![0x41; 4096]).unwrap();
            for (id, v) in [
                ("controller-fw-2.4.0", Version::new(2, 4, 0)),
                ("controller-fw-2.4.1", Version::new(2, 4, 1)),
            ] {
                session.sign_release(&image, &release(id, v), NOW).unwrap();
            }
            let fleet = testfleet::synthetic(DEVICES, NOW).unwrap();
            let registry = Registry::open(dir.join("cairn/registry")).unwrap();
            registry.trust(&fleet.ca.der).unwrap();
            registry.import(fleet.csv.as_bytes(), Format::Csv).unwrap();
            let plan_text = format!("{PLAN}\n{JOBS}");

            // Invalid rules: refused before anything is signed, the field named.
            let size = appliance.vault().size();
            for (from, to, says) in [
                (
                    "increment_factor = 2.0",
                    "increment_factor = 5.5",
                    "jobs.exponential_rate.increment_factor: 5.5 is not 1.1 to 5",
                ),
                (
                    "increment_factor = 2.0",
                    "increment_factor = 1.05",
                    "jobs.exponential_rate.increment_factor: 1.05 has more than one digit",
                ),
                (
                    "base_rate_per_minute = 50",
                    "base_rate_per_minute = 2000",
                    "jobs.exponential_rate.base_rate_per_minute: 2000 is not 1 to 1000",
                ),
                (
                    "number_of_succeeded_things = 20",
                    "number_of_succeeded_things = 20\nnumber_of_notified_things = 20",
                    "jobs.exponential_rate: give exactly one",
                ),
                (
                    "in_progress_timeout_minutes = 60",
                    "in_progress_timeout_minutes = 10081",
                    "jobs.in_progress_timeout_minutes: 10081 is not 1 to 10080",
                ),
                (
                    "threshold_percentage = 10.0",
                    "threshold_percentage = 0",
                    "jobs.abort[0].threshold_percentage: 0 is not above 0",
                ),
                (
                    "failure_type = \"TIMED_OUT\"\nthreshold_percentage",
                    "failure_type = \"LOST\"\nthreshold_percentage",
                    "jobs.abort[1]: failure_type \"LOST\"",
                ),
                (
                    "min_number_of_executed_things = 20",
                    "min_number_of_executed_things = 301",
                    "jobs.abort[0].min_number_of_executed_things: 301 is above the 300 eligible devices",
                ),
                (
                    "number_of_retries = 1",
                    "number_of_retries = 5",
                    "jobs.retry[0].number_of_retries: 5 retries need 6 attempts",
                ),
                (
                    "failure_type = \"FAILED\"               # FAILED, TIMED_OUT or ALL",
                    "failure_type = \"REJECTED\"             # FAILED, TIMED_OUT or ALL",
                    "jobs.retry[0]: failure_type REJECTED cannot be retried",
                ),
            ] {
                assert!(plan_text.contains(from), "{from:?} not in the example");
                let bad = plan_text.replacen(from, to, 1);
                let spec = PlanSpec::from_toml(&bad).unwrap();
                let err = session
                    .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
                    .unwrap_err();
                assert!(matches!(err, Error::Plan(_) | Error::PlanFile(_)), "{err}");
                assert!(err.to_string().contains(says), "{says}: {err}");
                assert_eq!(
                    appliance.vault().size(),
                    size,
                    "{says}: something was logged"
                );
            }
            // An unknown key in the section is refused when the file is read.
            let err = PlanSpec::from_toml(&plan_text.replacen(
                "maximum_per_minute",
                "maximum_per_hour",
                1,
            ))
            .unwrap_err();
            assert!(err.to_string().contains("maximum_per_hour"), "{err}");

            // The valid plan: its controls are signed as key 17, exactly as written.
            let spec = PlanSpec::from_toml(&plan_text).unwrap();
            let report = session
                .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
                .unwrap();
            let entry = appliance.vault().entry(report.plan_index).unwrap();
            let Statement::Plan { plan, .. } = Statement::decode(&entry).unwrap() else {
                panic!("entry {} is not the plan", report.plan_index)
            };
            assert_eq!(Statement::decode(&entry).unwrap().kind(), Kind::PLAN);
            let want = JobsControls {
                maximum_per_minute: Some(100),
                exponential_rate: Some(ExponentialRate {
                    base_per_minute: 50,
                    increment_tenths: 20,
                    increase: RateIncrease::Succeeded(20),
                }),
                in_progress_timeout_minutes: Some(60),
                abort: [
                    Some(AbortCriterion {
                        failure_type: FailureType::Failed,
                        threshold_hundredths: 1000,
                        min_executed: 20,
                    }),
                    None,
                    Some(AbortCriterion {
                        failure_type: FailureType::TimedOut,
                        threshold_hundredths: 2550,
                        min_executed: 20,
                    }),
                    None,
                ],
                retry: [
                    Some(RetryCriterion {
                        failure_type: FailureType::Failed,
                        retries: 1,
                    }),
                    Some(RetryCriterion {
                        failure_type: FailureType::TimedOut,
                        retries: 2,
                    }),
                ],
            };
            assert_eq!(plan.jobs, Some(want));

            // The CreateJob export: one job per stage, every device in exactly one thing group,
            // each request accepted by AWS's model.
            let opts = ExportOptions {
                region: "eu-central-1".into(),
                account: "123456789012".into(),
                delivery_url: "https://updates.example.com/campaign-2026-11-2.4.1/{thingName}.cbor"
                    .into(),
            };
            let jobs =
                create_job_requests(appliance.vault(), "campaign-2026-11-2.4.1", &opts).unwrap();
            let sizes: Vec<usize> = jobs.iter().map(|j| j.things.len()).collect();
            assert_eq!(sizes, [50, 25, 225, 0]);
            // The rollback job: the plan's rollback target, continuous, no abort criteria.
            let rollback = &jobs[3];
            assert!(rollback.continuous && jobs[..3].iter().all(|j| !j.continuous));
            assert_eq!(rollback.body["targetSelection"], "CONTINUOUS");
            let document: serde_json::Value =
                serde_json::from_str(rollback.body["document"].as_str().unwrap()).unwrap();
            assert_eq!(
                (&document["operation"], &document["release"]),
                (&"cairn.rollback".into(), &"controller-fw-2.4.0".into())
            );
            assert!(rollback.body.get("abortConfig").is_none());
            let mut all: Vec<&String> = jobs.iter().flat_map(|j| &j.things).collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len() as u64, DEVICES);
            let out = dir.join("aws");
            std::fs::create_dir_all(&out).unwrap();
            let mut files = Vec::new();
            for j in &jobs {
                assert_eq!(
                    j.body["jobExecutionsRolloutConfig"]["exponentialRate"]["incrementFactor"],
                    2.0
                );
                if !j.continuous {
                    assert_eq!(
                        j.body["abortConfig"]["criteriaList"][1]["thresholdPercentage"],
                        25.5
                    );
                }
                assert_eq!(j.body["timeoutConfig"]["inProgressTimeoutInMinutes"], 60);
                let path = out.join(format!("{}.json", j.job_id));
                std::fs::write(&path, serde_json::to_vec_pretty(&j.body).unwrap()).unwrap();
                files.push(path);
            }
            let (ok, text) = check(&files);
            assert!(ok, "AWS's model refused the export:\n{text}");
            assert_eq!(text.matches(": ok (CreateJobRequest").count(), 4, "{text}");

            // The checker is no rubber stamp: each broken request is refused, naming its member.
            let good = jobs[0].body.clone();
            let broken: [Broken; 7] = [
                (
                    "factor",
                    |b| {
                        b["jobExecutionsRolloutConfig"]["exponentialRate"]["incrementFactor"] =
                            5.5.into();
                    },
                    "incrementFactor: 5.5 is above 5",
                ),
                (
                    "failure-type",
                    |b| b["abortConfig"]["criteriaList"][0]["failureType"] = "LOST".into(),
                    "failureType: 'LOST' is not one of",
                ),
                (
                    "retries",
                    |b| {
                        b["jobExecutionsRetryConfig"]["criteriaList"][0]["numberOfRetries"] =
                            11.into();
                    },
                    "numberOfRetries: 11 is above 10",
                ),
                (
                    "job-id",
                    |b| b["jobId"] = "campaign-2026.11".into(),
                    "jobId: 'campaign-2026.11' does not match",
                ),
                (
                    "targets",
                    |b| {
                        b.as_object_mut().unwrap().remove("targets");
                    },
                    "Missing required parameter in input: \"targets\"",
                ),
                (
                    "unknown",
                    |b| b["abortConfig"]["criteriaList"][0]["minimumExecuted"] = 1.into(),
                    "Unknown parameter in abortConfig.criteriaList[0]: \"minimumExecuted\"",
                ),
                (
                    "document",
                    |b| b["document"] = "x".repeat(32_769).into(),
                    "document: 32769 characters, more than 32768",
                ),
            ];
            for (name, breaks, says) in broken {
                let mut body = good.clone();
                breaks(&mut body);
                let path = out.join(format!("broken-{name}.json"));
                std::fs::write(&path, serde_json::to_vec(&body).unwrap()).unwrap();
                let (ok, text) = check(&[path]);
                assert!(!ok, "{name}: accepted");
                assert!(text.contains(says), "{name}: {text}");
            }
        },
    );
}
