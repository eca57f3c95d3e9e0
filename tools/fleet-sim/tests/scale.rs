//! The reference fleet at full size (8,203 devices, or `FLEET_SIM_DEVICES`), through the binary
//! as an operator runs it: every device connects with its own certificate, receives its retained
//! delivery, passes the boot check, installs and reports; Ctrl-C (SIGINT) stops the run and the
//! summary is printed. Ignored by default (about 30 s on two cores); run with
//! `cargo test -p cairn-fleet-sim --test scale -- --ignored --nocapture`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_verifier::campaign::Outcome;
use common::World;

#[test]
#[ignore = "the full reference fleet: about 30 s on two cores"]
fn the_reference_fleet_installs_and_reports() {
    let n: u64 = std::env::var("FLEET_SIM_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_203);
    // Mosquitto inherits the limit: one socket per device on each side.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit > n + 100,
        "open-files hard limit {limit} is too low for {n} devices"
    );
    let t = Instant::now();
    let world = World::new(n);
    eprintln!("log, fleet and broker for {n} devices: {:.1?}", t.elapsed());
    let t = Instant::now();
    world.deliver(&world.updates);
    eprintln!("{n} retained deliveries published: {:.1?}", t.elapsed());

    let t = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_cairn-fleet-sim"))
        .args(world.cli_args())
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let reports = world
        .relay
        .reports_within(usize::try_from(n).unwrap(), Duration::from_secs(900));
    eprintln!("{n} reports received after start: {:.1?}", t.elapsed());
    assert_eq!(reports.len() as u64, n);
    assert!(
        reports
            .values()
            .all(|r| r.len() == 1 && r[0].outcome == Outcome::Installed && r[0].sequence == 1)
    );
    // Let the last acknowledgements arrive, then Ctrl-C.
    std::thread::sleep(Duration::from_secs(1));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: unknown");
    eprintln!("simulator memory, {peak}");
    let t = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    eprintln!("stopped: {:.1?}", t.elapsed());
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{summary}");
    for key in [
        "devices",
        "installed",
        "reports_acked",
        "connected",
        "max_connected",
    ] {
        assert_eq!(summary[key], n, "{key}: {summary}");
    }
    assert_eq!(summary["certificates_issued"], n);
}
