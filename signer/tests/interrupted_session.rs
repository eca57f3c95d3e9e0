//! Signing sessions killed with `SIGKILL` at every step boundary (docs/ceremony.md, "An
//! interrupted signing session"): `release sign` of a raw image and of an MCUboot image built
//! from firmware, `rollout plan`, and `rollout record-state`. The process kills itself at the
//! step `CAIRN_TEST_KILL_AFTER` names (`cairn_signer::interrupted::reached`, the `test-hooks`
//! feature), so each boundary is hit exactly. Each child runs what the CLI runs: the check before
//! any passphrase (`Appliance::earlier_release`, `Appliance::check_new_campaign`), then the
//! session. After each kill:
//!
//! - the log opens and passes `fsck`, and holds the session's batch exactly when the kill came
//!   after `logged` (all of it or none);
//! - no signed image exists under its name that the log does not hold (the staged image is moved
//!   only after the log write);
//! - the relay-log mirror, if the kill came after it was written, opens and passes `fsck`;
//! - the next run completes the work (nothing signed twice: a logged release is found and its
//!   staged image moved to its name; a recorded relay checkpoint is reported, not logged again)
//!   or, for a plan already logged, refuses naming its entry and what to do; and the log then
//!   holds exactly what an uninterrupted run leaves.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_signer::appliance::Appliance;
use cairn_signer::hsm::Module;
use cairn_signer::interrupted::SESSION_STEPS;
use cairn_signer::mcuboot::McubootSource;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::resume::staged_path;
use cairn_signer::rollout::PlanSpec;
use cairn_signer::session::ReleaseInput;
use cairn_signer::testfleet;
use cairn_vault::{Query, TransferBundle, Vault};
use cairn_verifier::cose::CoseSign1;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::custody::KeyRole;
use cairn_verifier::mcuboot::write::Layout;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Kind, ReleaseStatement};
use cairn_verifier::types::{UnixTime, Version};
use common::relay_log::RelayLog;
use common::{NOW, present};
use sha2::Digest as _;

/// Set in the child: the directory (token store, home, shares, inputs).
const CHILD_DIR: &str = "CAIRN_SESSION_DIR";
/// Set in the child: `setup`, or the operation to run (`release`, `mcuboot`, `plan`, `record`).
const CHILD_OP: &str = "CAIRN_SESSION_OP";
const TOKEN: &str = "cairn";
const RELAY_ORIGIN: &str = "cairn.example/log/relay";
const PLAN: &str = include_str!("../../docs/examples/plan-2.4.1.toml");

fn release(id: &str, version: Version) -> ReleaseInput {
    ReleaseInput {
        release_id: id.into(),
        product: "Smart Controller".into(),
        family: "STM32H5".into(),
        hardware_revisions: vec!["rev-b".into(), "rev-c".into()],
        version,
        security_epoch: 7,
        support_until: UnixTime(NOW.0 + 5 * 365 * 86_400),
        advisories: Vec::new(),
        artifact: None,
    }
}

fn mcuboot_out(dir: &Path) -> PathBuf {
    dir.join("fw-2.5.1.signed.bin")
}

fn relay_key() -> (p256::ecdsa::SigningKey, PublicKey) {
    let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let public =
        PublicKey::from_sec1_uncompressed(key.verifying_key().to_sec1_point(false).as_bytes())
            .unwrap();
    (key, public)
}

/// The appliance the operations run on: a ceremony, releases 2.4.0 and 2.4.1, a registry of 400
/// devices, the images to sign, and a device-state bundle from a relay log.
fn setup(module: &Module, dir: &Path) {
    common::ceremony(module, dir, TOKEN);
    let appliance = Appliance::open(dir.join(TOKEN)).unwrap();
    let session = appliance
        .unlock(
            module,
            &present(dir, TOKEN, &["alice", "bob", "carol"]),
            NOW,
        )
        .unwrap();
    std::fs::write(dir.join("old.bin"), vec![0x40; 20_000]).unwrap();
    std::fs::write(dir.join("new.bin"), vec![0x41; 20_000]).unwrap();
    std::fs::write(dir.join("next.bin"), vec![0x42; 20_000]).unwrap();
    std::fs::write(dir.join("fw.bin"), vec![0x5a; 6_000]).unwrap();
    for (id, image, version) in [
        ("controller-fw-2.4.0", "old.bin", Version::new(2, 4, 0)),
        ("controller-fw-2.4.1", "new.bin", Version::new(2, 4, 1)),
    ] {
        session
            .sign_release(&dir.join(image), &release(id, version), NOW)
            .unwrap();
    }
    let fleet = testfleet::synthetic(400, NOW).unwrap();
    let registry = Registry::open(dir.join(TOKEN).join("registry")).unwrap();
    registry.trust(&fleet.ca.der).unwrap();
    registry.import(fleet.csv.as_bytes(), Format::Csv).unwrap();

    let (key, public) = relay_key();
    let relay = Vault::create(dir.join("relay-state"), RELAY_ORIGIN).unwrap();
    let devices: Vec<String> = fleet.devices.iter().take(8).map(|d| d.0.clone()).collect();
    let (entries, _) = RelayLog {
        campaign: "campaign-2026-11-2.4.1",
        release: "controller-fw-2.4.1",
        start: UnixTime(NOW.0 + 100),
        stages: &[4, 8],
        fails: &|_| false,
        retry_after: 0,
    }
    .entries(&devices, [0, 0]);
    let log_key = LogKey::new(RELAY_ORIGIN, RELAY_ORIGIN, public, &Software).unwrap();
    relay.append_signed(&entries, &log_key, &key).unwrap();
    std::fs::write(
        dir.join("relay.bundle"),
        relay.export_bundle(0).unwrap().to_cbor(),
    )
    .unwrap();
}

/// One operation as the CLI runs it; what it says, on one line.
fn operation(module: &Module, dir: &Path, op: &str) -> String {
    let appliance = Appliance::open(dir.join(TOKEN)).unwrap();
    let shares = || present(dir, TOKEN, &["alice", "bob", "carol"]);
    match op {
        "release" | "mcuboot" => {
            let (id, image, source) = if op == "release" {
                ("controller-fw-2.5.0", dir.join("next.bin"), None)
            } else {
                let source = McubootSource::Firmware {
                    layout: Layout::default(),
                    out: mcuboot_out(dir),
                };
                ("controller-fw-2.5.1", dir.join("fw.bin"), Some(source))
            };
            match appliance.earlier_release(id, &image, source.as_ref()) {
                Ok(Some(e)) => return format!("already {} completed={}", e.index, e.completed),
                Ok(None) => {}
                Err(e) => return format!("refused: {e}"),
            }
            let s = appliance.unlock(module, &shares(), NOW).unwrap();
            let input = release(id, Version::new(2, 5, u32::from(op == "mcuboot")));
            let signed = match &source {
                None => s.sign_release(&image, &input, NOW),
                Some(source) => s.sign_mcuboot_release(&image, &input, source, NOW),
            };
            signed.map_or_else(|e| format!("refused: {e}"), |r| format!("done {}", r.index))
        }
        "plan" => {
            let spec = PlanSpec::from_toml(&PLAN.replace("devices = 50", "devices = 5")).unwrap();
            if let Err(e) = appliance.check_new_campaign(&spec.campaign) {
                return format!("refused: {e}");
            }
            let registry = Registry::open(dir.join(TOKEN).join("registry")).unwrap();
            let s = appliance.unlock(module, &shares(), NOW).unwrap();
            s.plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
                .map_or_else(
                    |e| format!("refused: {e}"),
                    |r| format!("done {}", r.plan_index),
                )
        }
        "record" => {
            let bytes = std::fs::read(dir.join("relay.bundle")).unwrap();
            let bundle = TransferBundle::decode(&bytes).unwrap();
            let s = appliance.unlock(module, &shares(), NOW).unwrap();
            s.record_relay_state(&bundle, relay_key().1, NOW)
                .map_or_else(
                    |e| format!("refused: {e}"),
                    |r| format!("done {} already={}", r.index, r.already_recorded),
                )
        }
        "rotate" => {
            let rotated = {
                let s = appliance.unlock(module, &shares(), NOW).unwrap();
                s.rotate_release_key("scheduled rotation", NOW)
            };
            drop(appliance);
            match rotated {
                Ok(r) => format!("done {} {}", r.index, release_key(module, dir)),
                Err(e) => format!("refused: {e}"),
            }
        }
        // What a session finds after a rotation: the release key it signs with.
        "rotated" => {
            drop(appliance);
            release_key(module, dir)
        }
        other => panic!("unknown operation {other}"),
    }
}

/// The release key a new session on the appliance signs with (checked against its certificate
/// by `Session::key`), and the generation `signer.json` names.
fn release_key(module: &Module, dir: &Path) -> String {
    let appliance = Appliance::open(dir.join(TOKEN)).unwrap();
    let s = appliance
        .unlock(
            module,
            &present(dir, TOKEN, &["alice", "bob", "carol"]),
            NOW,
        )
        .unwrap();
    match s.key(KeyRole::Release) {
        Ok(key) => format!("key {}", key.uri()),
        Err(e) => format!("unusable: {e}"),
    }
}

/// The child: the setup, or one operation (which may kill itself).
#[test]
fn interrupted_session_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let op = std::env::var(CHILD_OP).unwrap();
    let module = Module::from_env().unwrap();
    if op == "setup" {
        setup(&module, dir);
        println!("session-result: set up");
        return;
    }
    println!("session-result: {}", operation(&module, dir, &op));
}

/// Runs the child on `dir` with `env`; its status and what it said.
fn child(dir: &Path, op: &str, kill_after: Option<&str>) -> (std::process::ExitStatus, String) {
    let (_, token_env) = cairn_signer::testtoken::child_env(&dir.join("store")).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "interrupted_session_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .envs(token_env)
    .env(CHILD_DIR, dir)
    .env(CHILD_OP, op)
    .env_remove("CAIRN_TEST_KILL_AFTER");
    if let Some(step) = kill_after {
        cmd.env("CAIRN_TEST_KILL_AFTER", step);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn result(text: &str) -> String {
    text.lines()
        .find_map(|l| l.split_once("session-result: ").map(|(_, r)| r.to_owned()))
        .unwrap_or_else(|| panic!("the child said nothing: {text}"))
}

/// A copy of the set-up directory (token store included) to run one case in.
fn copy_of(base: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", base.display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// Opens the log at `path`, runs `fsck`, and returns its size.
fn checked(path: &Path) -> u64 {
    let vault = Vault::open(path).unwrap();
    vault
        .fsck(&mut |_, _| {})
        .unwrap_or_else(|e| panic!("{}: fsck: {e}", path.display()));
    vault.size()
}

fn sha256(path: &Path) -> [u8; 32] {
    sha2::Sha256::digest(std::fs::read(path).unwrap()).into()
}

/// The logged statement of `release`, if the log at `home/log` holds it.
fn logged_digest(home: &Path, release: &str) -> Option<[u8; 32]> {
    let vault = Vault::open(home.join("log")).unwrap();
    let (_, cose) = vault.release_entry(release).ok()?;
    let cose = CoseSign1::decode(&cose).unwrap();
    Some(ReleaseStatement::decode(cose.payload).unwrap().image_digest)
}

/// The steps each operation passes, in order.
fn steps_of(op: &str) -> Vec<&'static str> {
    let has: &[&str] = match op {
        "release" => &["unlocked", "signed", "logged"],
        "mcuboot" => &["unlocked", "signed", "logged", "output"],
        "plan" => &["unlocked", "decided", "signed", "logged"],
        "record" => &["unlocked", "mirrored", "logged"],
        "rotate" => &[
            "unlocked",
            "generated",
            "signed",
            "logged",
            "certificate",
            "state",
        ],
        _ => &[],
    };
    SESSION_STEPS
        .iter()
        .copied()
        .filter(|s| has.contains(s))
        .collect()
}

/// What a kill after `step` of `op` left in `dir`, checked against the guarantees.
fn check_left(dir: &Path, op: &str, step: &str, before: u64, done: u64) {
    let home = dir.join(TOKEN);
    let size = checked(&home.join("log"));
    let logged = matches!(step, "logged" | "output" | "certificate" | "state");
    assert_eq!(
        size,
        if logged { done } else { before },
        "{op} killed after {step}: the log holds part of the session's batch, or not what it should"
    );
    match op {
        "mcuboot" => {
            let out = mcuboot_out(dir);
            let digest = logged_digest(&home, "controller-fw-2.5.1");
            assert_eq!(digest.is_some(), logged, "{op} after {step}");
            if out.exists() {
                assert_eq!(
                    Some(sha256(&out)),
                    digest,
                    "{op} after {step}: a signed image under its name that the log does not hold"
                );
            }
            assert_eq!(out.exists(), step == "output", "{op} after {step}");
        }
        "record" => {
            let mirror = home.join("relay-log");
            if mirror.exists() {
                let held = checked(&mirror);
                let mirrored = step != "unlocked";
                assert!(held == 0 || mirrored, "{op} after {step}: mirror of {held}");
            }
        }
        _ => {}
    }
}

/// What the next run said, checked; then what it left.
fn check_next(dir: &Path, op: &str, step: &str, said: &str, done: u64) {
    let home = dir.join(TOKEN);
    let logged = matches!(step, "logged" | "output" | "certificate" | "state");
    let ok = match (op, logged) {
        ("rotate", _) => {
            said.starts_with("done ") && said.ends_with("cairn-release-1;id=%01%01;type=private")
        }
        (_, false) => said.starts_with("done "),
        ("release", true) => said.starts_with("already ") && said.ends_with("completed=false"),
        ("mcuboot", true) => {
            said.starts_with("already ")
                && said.ends_with(if step == "output" {
                    "completed=false"
                } else {
                    "completed=true"
                })
        }
        ("plan", true) => {
            said.starts_with("refused: ")
                && said.contains("already exists in the log: its plan is entry")
                && said.contains("it is complete")
        }
        ("record", true) => said.starts_with("done ") && said.ends_with("already=true"),
        _ => false,
    };
    assert!(ok, "{op} killed after {step}: the next run said {said}");
    assert_eq!(
        checked(&home.join("log")),
        done,
        "{op} killed after {step}: after the next run, the log is not what one run leaves"
    );
    match op {
        "release" => assert_eq!(
            logged_digest(&home, "controller-fw-2.5.0"),
            Some(sha256(&dir.join("next.bin")))
        ),
        "mcuboot" => {
            let out = mcuboot_out(dir);
            assert_eq!(
                logged_digest(&home, "controller-fw-2.5.1"),
                Some(sha256(&out)),
                "{op} after {step}"
            );
            assert!(
                !staged_path(&out).exists(),
                "{op} after {step}: staged left"
            );
        }
        "plan" => {
            let vault = Vault::open(home.join("log")).unwrap();
            let plans = vault.query_indices(Query::Kind(Kind::PLAN)).unwrap().len();
            assert_eq!(plans, 1, "{op} after {step}");
        }
        "rotate" => {
            let vault = Vault::open(home.join("log")).unwrap();
            let keys = vault.query_indices(Query::Kind(Kind::KEY)).unwrap().len();
            assert_eq!(keys, 1, "{op} after {step}: rotation statements");
        }
        "record" => {
            let vault = Vault::open(home.join("log")).unwrap();
            let records = vault
                .query_indices(Query::Kind(Kind::RELAY_CHECKPOINT))
                .unwrap()
                .len();
            assert_eq!(records, 1, "{op} after {step}");
            let bundle =
                TransferBundle::decode(&std::fs::read(dir.join("relay.bundle")).unwrap()).unwrap();
            assert_eq!(checked(&home.join("relay-log")), bundle.to());
        }
        _ => {}
    }
}

#[test]
fn a_session_killed_at_any_step_is_completed_or_named_by_the_next_run() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let (status, text) = child(base.path(), "setup", None);
    assert!(status.success(), "setup: {text}");
    assert_eq!(result(&text), "set up", "{text}");
    let before = checked(&base.path().join(TOKEN).join("log"));
    for op in ["release", "mcuboot", "plan", "record", "rotate"] {
        // What one uninterrupted run leaves.
        let clean = copy_of(base.path());
        let (status, text) = child(clean.path(), op, None);
        assert!(status.success(), "{op}: {text}");
        assert!(result(&text).starts_with("done "), "{op}: {text}");
        let done = checked(&clean.path().join(TOKEN).join("log"));
        for step in steps_of(op) {
            let dir = copy_of(base.path());
            let (status, text) = child(dir.path(), op, Some(step));
            assert_eq!(
                status.signal(),
                Some(9),
                "{op} after {step}: not killed ({status}): {text}"
            );
            check_left(dir.path(), op, step, before, done);
            if (op, step) == ("rotate", "state") {
                // Complete: the next session signs with the new key. (`key rotate` again would
                // rotate again: a rotation names no id to find it by.)
                let (status, text) = child(dir.path(), "rotated", None);
                assert!(status.success(), "{op} after {step}: {text}");
                let said = result(&text);
                println!("{op} killed after {step}: the next session finds: {said}");
                assert!(
                    said.ends_with("cairn-release-1;id=%01%01;type=private"),
                    "{said}"
                );
                continue;
            }
            let (status, text) = child(dir.path(), op, None);
            assert!(status.success(), "{op} after {step}: {text}");
            let said = result(&text);
            println!("{op} killed after {step}: the next run says: {said}");
            check_next(dir.path(), op, step, &said, done);
        }
    }
}
