//! The rollout plan file (docs/eligibility.md, "The plan file"; `signer/src/rollout/spec.rs` and
//! its `[jobs]` section `jobs.rs`, compiled here from the signer's source files) on arbitrary
//! text: parsing and `PlanSpec::check` never panic, and a file they accept becomes, for any
//! number of eligible devices its stages and Jobs rules fit, a plan that `cairn-verifier`'s decoder
//! accepts and re-encodes byte for byte, with the file's stages, counts and retry numbers: the
//! signer never signs a plan a device or the relay would refuse (`plan_rollout` also decodes what
//! it is about to sign, as a last guard; this target shows the guard never fires).
#![no_main]

use cairn_verifier::rollout::{RolloutPlan, Stages};
use cairn_verifier::types::UnixTime;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

/// The signer's plan file and its `[jobs]` section, from their source files (the signer crate
/// links PKCS#11 and RocksDB, which the sanitizer build does not need); `spec` names
/// `super::jobs` and `jobs` names `super::spec`, which resolve to these two at the crate root.
#[path = "../../signer/src/rollout/jobs.rs"]
mod jobs;
#[expect(dead_code, reason = "the fuzz target uses the checks, not every accessor")]
#[path = "../../signer/src/rollout/spec.rs"]
mod spec;

/// The `toml` crate keeps the errors it recovers from (docs/fuzzing.md, the `relay_config`
/// finding): the same linear budget as the relay's configuration.
const TOML_BYTES_PER_INPUT_BYTE: usize = 1024;

/// Fleet sizes tried for a file the checks accept: tiny, the reference fleet, 3 M, and AWS's
/// largest count.
const ELIGIBLE: [u64; 5] = [1, 17, 8_203, 3_000_000, 2_147_483_647];

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded_by(TOML_BYTES_PER_INPUT_BYTE, data.len(), || {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(spec) = spec::PlanSpec::from_toml(text) else {
            return;
        };
        let Ok(checked) = spec.check() else {
            return;
        };
        assert!(checked.min_version <= checked.max_version);
        assert_eq!(checked.stage_names.len(), spec.stages.len());
        for eligible in ELIGIBLE {
            let Ok(counts) = spec.stage_counts(eligible) else {
                continue;
            };
            assert_eq!(counts.last(), Some(&eligible));
            let Ok(jobs) = spec.jobs_controls(eligible) else {
                continue;
            };
            let stages = spec.stages(&counts, &checked.stage_names);
            let plan = RolloutPlan {
                campaign: checked.campaign,
                release_id: checked.campaign,
                release_digest: [1; 32],
                rollback_release_id: checked.campaign,
                rollback_digest: [2; 32],
                stages: Stages::Slice(&stages),
                max_attempts: spec.max_attempts,
                backoff_secs: spec.backoff_secs,
                quarantine_after_failures: spec.quarantine_after_failures,
                quarantine_on_verification_failure: spec.quarantine_on_verification_failure,
                eligible,
                rejected: 0,
                decisions_digest: [3; 32],
                created_at: UnixTime(1_767_225_600),
                campaign_sequence: 1,
                jobs,
            };
            let bytes = plan.to_cbor();
            let decoded = RolloutPlan::decode(&bytes)
                .unwrap_or_else(|e| panic!("a checked plan does not decode: {e:?}"));
            assert_eq!(decoded.to_cbor(), bytes, "the plan re-encodes differently");
            assert_eq!(decoded.stages.iter().count(), stages.len());
            assert_eq!(decoded.max_attempts, spec.max_attempts);
            assert_eq!(decoded.jobs, jobs);
        }
    });
});
