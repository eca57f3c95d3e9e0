//! The reference campaign's scenario through AWS IoT Jobs (docs/jobs.md): the relay with
//! `jobs = true` plays the Jobs service on Mosquitto and the fleet simulator's devices run in
//! Jobs mode (`--mode jobs`): each listens on `notify-next`, calls `start-next`, takes its
//! delivery out of the job document, runs the device verifier on it and updates its execution
//! (SUCCEEDED, or FAILED for wave-1's injected install failures, which pause the rollout on the
//! failure threshold until the custodians' resume; the failed devices' retries are the next
//! `executionNumber`). Every device ends `installed` by its own word in the relay log.
//!
//! 1,000 devices by default; `CAIRN_E2E_DEVICES=8203` runs it at the reference fleet's size.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "../../relay/tests/common/mod.rs"]
mod relay_common;

#[path = "e2e/mod.rs"]
mod e2e;

#[test]
fn the_reference_campaign_runs_through_aws_iot_jobs() {
    let eligible: u64 = std::env::var("CAIRN_E2E_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    e2e::reference_campaign(eligible, "jobs = true\n", &["--mode", "jobs"]);
}
