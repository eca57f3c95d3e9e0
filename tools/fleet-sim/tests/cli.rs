//! The `cairn-fleet-sim` binary: bad arguments are refused with an error naming the argument, and
//! a timed run installs the retained deliveries and prints its summary as JSON.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::process::{Command, Output};

use cairn_verifier::campaign::Outcome;
use common::World;

fn run(args: &[String], extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn-fleet-sim"))
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn bad_arguments_are_named() {
    let world = World::new(1);
    let args = world.cli_args();
    for (extra, code, named) in [
        (&["--tamper-image", "2"][..], 2, "--tamper-image"),
        (&["--offline", "ten"][..], 2, "--offline"),
        (&["--image", "no-equals-sign"][..], 2, "--image"),
        (&["--install-failure", "x=0.5"][..], 2, "--install-failure"),
        (&["--install-failure", "0=0.5"][..], 1, "--install-failure"),
        (&["--stages", "/nonexistent/stages.json"][..], 1, "--stages"),
        (
            &["--connect-concurrency", "0"][..],
            1,
            "--connect-concurrency",
        ),
    ] {
        let out = run(&args, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        assert!(stderr.contains(named), "{extra:?}: {stderr}");
    }
    // Values that parse but cannot be used: a key file that is not there, an origin no signed
    // note can carry.
    for (flag, value, expected) in [
        ("--log-key", "/nonexistent/log.pem", "/nonexistent/log.pem"),
        ("--origin", "two words", "cannot name a log"),
    ] {
        let mut changed = args.clone();
        let at = changed.iter().position(|a| a == flag).unwrap();
        changed[at + 1] = value.into();
        let out = run(&changed, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(expected),
            "{stderr}"
        );
    }
}

#[test]
fn a_timed_run_installs_the_retained_deliveries_and_prints_json() {
    let world = World::new(3);
    let args = world.cli_args();
    // Published before any device exists: retained, they arrive when each device subscribes.
    world.deliver(&world.updates);
    let out = run(&args, &["--duration", "5", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["devices"], 3, "{summary}");
    assert_eq!(summary["skipped_rows"], 2);
    assert_eq!(summary["installed"], 3);
    assert_eq!(summary["reports_acked"], 3);
    assert_eq!(summary["connected"], 3);
    for (device, r) in world.relay.reports(3) {
        assert_eq!(
            (r[0].outcome, r[0].sequence),
            (Outcome::Installed, 1),
            "{device}"
        );
    }
}
