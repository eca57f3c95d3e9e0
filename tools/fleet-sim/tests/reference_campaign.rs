//! The reference campaign end to end at full size: 8,203 eligible devices (197 rejected) under
//! the reference plan's stages (canary 50 behind an approval gate, wave-1 to 25 %, fleet to
//! 100 %), through the relay's engine and MQTT link, a real Mosquitto, and the fleet simulator's
//! 8,203 devices each with its own certificate running the device verifier. In wave-1, 6 % of
//! the devices fail their first install: the failure threshold (30‰) pauses the rollout, the
//! custodians record the relay's log with the pause in it, a resume approval signed offline
//! after that arrives in a bundle and resumes it, the failed devices are
//! retried and install. Every device's final state is in the relay's log.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and the test is one scenario"
)]

#[path = "../../relay/tests/common/mod.rs"]
mod relay_common;

#[path = "e2e/mod.rs"]
mod e2e;

#[test]
fn the_reference_campaign_runs_end_to_end_through_mosquitto() {
    let eligible: u64 = std::env::var("CAIRN_E2E_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_203);
    e2e::reference_campaign(eligible, "", &[]);
}
