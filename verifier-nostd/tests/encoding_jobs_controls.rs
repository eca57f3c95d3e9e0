//! Property: the rollout plan's AWS IoT Jobs controls (formats.md §4.9, key 17) have exactly one
//! encoding, the one formats.md shows byte for byte; a plan without them is the 16-pair plan it
//! always was; and the decoder refuses every value outside AWS's bounds (botocore's `iot` model:
//! `MaxJobExecutionsPerMin`, `RolloutRatePerMinute`, `IncrementFactor`, `NumberOfThings`,
//! `InProgressTimeoutInMinutes`, `AbortThresholdPercentage`, `MinimumNumberOfExecutedThings`,
//! `RetryableFailureType`, `NumberOfRetries`) with `OutOfRange` at the offending value.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is the failure report"
)]

use cairn_verifier::Error;
use cairn_verifier::error::{CborError, Item};
use cairn_verifier::rollout::jobs::{
    AbortCriterion, ExponentialRate, FailureType, JobsControls, RateIncrease, RetryCriterion,
};
use cairn_verifier::rollout::{Gate, RolloutPlan, Stage, Stages};
use cairn_verifier::types::{Id, UnixTime};

/// docs/examples/jobs-controls.toml, as signed.
fn example() -> JobsControls {
    JobsControls {
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
    }
}

/// Key 17 and its value for `example()`, as formats.md §4.9 shows them.
const EXAMPLE_KEY_17: &str = "11 a5 01 1864 02 84 1832 14 01 14 03 183c \
     04 82 83 01 1903e8 14 83 03 1909f6 14 05 82 82 01 01 82 03 02";

fn plan_bytes(jobs: Option<JobsControls>) -> Vec<u8> {
    let stages = [Stage {
        name: Id::new("fleet").unwrap(),
        devices: 300,
        soak_secs: 0,
        success_permille: 950,
        failure_permille: 50,
        gate: Gate::Automatic,
    }];
    RolloutPlan {
        campaign: Id::new("campaign-2026-11-2.4.1").unwrap(),
        release_id: Id::new("controller-fw-2.4.1").unwrap(),
        release_digest: [1; 32],
        rollback_release_id: Id::new("controller-fw-2.4.0").unwrap(),
        rollback_digest: [2; 32],
        stages: Stages::Slice(&stages),
        max_attempts: 3,
        backoff_secs: 600,
        quarantine_after_failures: 2,
        quarantine_on_verification_failure: true,
        eligible: 300,
        rejected: 0,
        decisions_digest: [3; 32],
        created_at: UnixTime(1_795_651_200),
        campaign_sequence: 1,
        jobs,
    }
    .to_cbor()
}

fn hex(s: &str) -> Vec<u8> {
    ::hex::decode(s.replace(' ', "")).unwrap()
}

fn refused(bytes: &[u8]) -> CborError {
    match RolloutPlan::decode(bytes) {
        Err(Error::Malformed {
            item: Item::Plan,
            cause,
        }) => cause,
        other => panic!("not refused as a malformed plan: {other:?}"),
    }
}

/// The plan with `controls` is refused `OutOfRange` at a value encoded as `at` (hex).
fn out_of_range_at(controls: JobsControls, at: &str) {
    let bytes = plan_bytes(Some(controls));
    let want = hex(at);
    match refused(&bytes) {
        CborError::OutOfRange { offset } => assert!(
            bytes[offset..].starts_with(&want),
            "{controls:?}: refused at {offset}, which holds {}, not {at}",
            ::hex::encode(&bytes[offset..(offset + 4).min(bytes.len())])
        ),
        other => panic!("{controls:?}: {other:?}, not OutOfRange"),
    }
}

#[test]
fn the_example_has_the_documented_bytes_and_round_trips() {
    let without = plan_bytes(None);
    let with = plan_bytes(Some(example()));
    assert_eq!(without[0], 0xb1, "17 pairs without the controls");
    assert_eq!(with[0], 0xb2, "18 with them");
    assert_eq!(
        &with[1..without.len()],
        &without[1..],
        "keys 0 to 16 unchanged"
    );
    assert_eq!(
        ::hex::encode(&with[without.len()..]),
        ::hex::encode(hex(EXAMPLE_KEY_17))
    );
    assert_eq!(RolloutPlan::decode(&with).unwrap().jobs, Some(example()));
    assert_eq!(RolloutPlan::decode(&without).unwrap().jobs, None);
    // Empty controls are not encoded: the plan has no key 17.
    assert_eq!(plan_bytes(Some(JobsControls::default())), without);
    // Each member alone.
    let e = example();
    for one in [
        JobsControls {
            maximum_per_minute: e.maximum_per_minute,
            ..JobsControls::default()
        },
        JobsControls {
            exponential_rate: Some(ExponentialRate {
                increase: RateIncrease::Notified(1),
                ..e.exponential_rate.unwrap()
            }),
            ..JobsControls::default()
        },
        JobsControls {
            in_progress_timeout_minutes: Some(10_080),
            ..JobsControls::default()
        },
        JobsControls {
            abort: [
                None,
                None,
                None,
                Some(AbortCriterion {
                    failure_type: FailureType::All,
                    threshold_hundredths: 10_000,
                    min_executed: 2_147_483_647,
                }),
            ],
            ..JobsControls::default()
        },
        JobsControls {
            retry: [
                Some(RetryCriterion {
                    failure_type: FailureType::All,
                    retries: 0,
                }),
                None,
            ],
            ..JobsControls::default()
        },
    ] {
        assert_eq!(
            RolloutPlan::decode(&plan_bytes(Some(one))).unwrap().jobs,
            Some(one)
        );
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one table: a case per bound of AWS's CreateJob model, read top to bottom"
)]
fn values_outside_aws_bounds_are_refused_at_the_value() {
    let e = example();
    let rate = e.exponential_rate.unwrap();
    let abort = e.abort[0].unwrap();
    let retry = e.retry[0].unwrap();
    let cases: Vec<(JobsControls, &str)> = vec![
        (
            JobsControls {
                maximum_per_minute: Some(0),
                ..e
            },
            "00 02",
        ),
        (
            JobsControls {
                maximum_per_minute: Some(1001),
                ..e
            },
            "1903e9",
        ),
        (
            JobsControls {
                maximum_per_minute: None,
                exponential_rate: Some(ExponentialRate {
                    base_per_minute: 0,
                    ..rate
                }),
                ..e
            },
            "00 14",
        ),
        (
            JobsControls {
                maximum_per_minute: None,
                exponential_rate: Some(ExponentialRate {
                    base_per_minute: 1001,
                    ..rate
                }),
                ..e
            },
            "1903e9",
        ),
        // The ramp's base above maximumPerMinute: refused at the base.
        (
            JobsControls {
                maximum_per_minute: Some(40),
                ..e
            },
            "1832 14",
        ),
        (
            JobsControls {
                exponential_rate: Some(ExponentialRate {
                    increment_tenths: 10,
                    ..rate
                }),
                ..e
            },
            "0a 01",
        ),
        (
            JobsControls {
                exponential_rate: Some(ExponentialRate {
                    increment_tenths: 51,
                    ..rate
                }),
                ..e
            },
            "1833",
        ),
        (
            JobsControls {
                exponential_rate: Some(ExponentialRate {
                    increase: RateIncrease::Succeeded(0),
                    ..rate
                }),
                ..e
            },
            "00 03",
        ),
        (
            JobsControls {
                in_progress_timeout_minutes: Some(0),
                ..e
            },
            "00 04",
        ),
        (
            JobsControls {
                in_progress_timeout_minutes: Some(10_081),
                ..e
            },
            "192761",
        ),
        (
            JobsControls {
                abort: [
                    Some(AbortCriterion {
                        threshold_hundredths: 0,
                        ..abort
                    }),
                    None,
                    None,
                    None,
                ],
                ..e
            },
            "00 14",
        ),
        (
            JobsControls {
                abort: [
                    Some(AbortCriterion {
                        threshold_hundredths: 10_001,
                        ..abort
                    }),
                    None,
                    None,
                    None,
                ],
                ..e
            },
            "192711",
        ),
        (
            JobsControls {
                abort: [
                    Some(AbortCriterion {
                        min_executed: 0,
                        ..abort
                    }),
                    None,
                    None,
                    None,
                ],
                ..e
            },
            "00 05",
        ),
        // Failure types in code order, each once.
        (
            JobsControls {
                abort: [e.abort[2], e.abort[0], None, None],
                ..e
            },
            "01 1903e8",
        ),
        (
            JobsControls {
                abort: [e.abort[0], e.abort[0], None, None],
                ..e
            },
            "01 1903e8 14 05",
        ),
        // REJECTED is not a RetryableFailureType.
        (
            JobsControls {
                retry: [
                    Some(RetryCriterion {
                        failure_type: FailureType::Rejected,
                        retries: 1,
                    }),
                    None,
                ],
                ..e
            },
            "02 01",
        ),
        (
            JobsControls {
                retry: [
                    Some(RetryCriterion {
                        retries: 11,
                        ..retry
                    }),
                    None,
                ],
                ..e
            },
            "0b",
        ),
    ];
    for (controls, at) in cases {
        out_of_range_at(controls, at);
    }
}

#[test]
fn other_shapes_of_key_17_are_refused() {
    let without = plan_bytes(None);
    let with = plan_bytes(Some(example()));
    let start = without.len();
    // An empty map: OutOfRange at its head.
    let mut empty = with[..start].to_vec();
    empty.extend(hex("11 a0"));
    assert_eq!(refused(&empty), CborError::OutOfRange { offset: start + 1 });
    // A member key other than 1 to 5, or out of order.
    let mut unknown = with.clone();
    let at = unknown.len() - 8; // the `05` before the retry criteria
    assert_eq!(unknown[at], 0x05);
    unknown[at] = 0x06;
    assert!(matches!(
        refused(&unknown),
        CborError::UnexpectedKey { found: 6, .. }
    ));
    // Key 16 (the campaign sequence) again where 17 must be.
    let mut sixteen = with.clone();
    sixteen[start] = 0x10;
    assert_eq!(
        refused(&sixteen),
        CborError::UnexpectedKey {
            offset: start,
            expected: 17,
            found: 16
        }
    );
    // 19 pairs.
    let mut nineteen = with;
    nineteen[0] = 0xb3;
    assert!(matches!(refused(&nineteen), CborError::WrongLength { .. }));
}
