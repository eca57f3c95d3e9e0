//! `ceremony init` killed with `SIGKILL` at every step boundary (token initialised, keys
//! generated, certificates issued, record logged, shares written, state written): the process
//! kills itself at the step `CAIRN_TEST_KILL_AFTER` names (the `test-hooks` feature,
//! `cairn_signer::interrupted::reached`), so each boundary is hit exactly, not by timing. After
//! each kill:
//!
//! - no share file exists unless the log holds the ceremony record of the same ceremony;
//! - the home is never an appliance (`Appliance::open` refuses) unless the ceremony finished;
//! - the next `ceremony init` refuses with `Error::CeremonyInterrupted`, naming the token, the
//!   record, the share files it left and the reset command of the module; the operator does what
//!   it says (the reset, destroying the shares, removing the home) and the ceremony then succeeds;
//! - killed after `signer.json` was written, the ceremony is complete: the appliance opens and a
//!   new `ceremony init` on the home refuses as for any used home.
//!
//! docs/ceremony.md ("An interrupted ceremony") says what the operator sees after each.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Command;

use cairn_signer::appliance::Appliance;
use cairn_signer::ceremony::{self, TokenSource};
use cairn_signer::hsm::Module;
use cairn_signer::interrupted::{JOURNAL_FILE, STEPS};
use cairn_vault::Vault;
use cairn_verifier::cose::CoseSign1;
use cairn_verifier::custody::{CeremonyRecord, SignedEntry};
use cairn_verifier::statement::Kind;

/// Set in the child: the directory of the token store, the home and the share files.
const CHILD_DIR: &str = "CAIRN_INTERRUPT_DIR";
/// Set in the child: `run` (a ceremony), or `recover` (do what the refusal said, then a ceremony).
const CHILD_MODE: &str = "CAIRN_INTERRUPT_MODE";
const TOKEN: &str = "cairn";

/// The child: one ceremony (which may kill itself), or the operator's recovery and a ceremony.
#[test]
fn interrupted_ceremony_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let opts = common::options(dir, TOKEN, TokenSource::Fresh);
    // The operator's steps come before the module is loaded (a loaded module does not see a
    // token deleted under it by the vendor's tool).
    if std::env::var(CHILD_MODE).as_deref() == Ok("recover") {
        if common::token_listed(TOKEN) {
            common::reset_token(TOKEN);
        }
        for c in &opts.custodians {
            let _ = std::fs::remove_file(&c.share_path);
        }
        std::fs::remove_dir_all(&opts.home).unwrap();
    }
    let module = Module::from_env().unwrap();
    match ceremony::init(&module, &opts) {
        Ok(r) => {
            println!("ceremony-result: done {}", hex::encode(r.ceremony));
            Appliance::open(&opts.home).unwrap();
        }
        Err(e) => println!("ceremony-result: refused: {e}"),
    }
}

/// Runs the child with `env`; its status and what it said.
fn child(dir: &Path, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let (_, token_env) = cairn_signer::testtoken::child_env(&dir.join("store")).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "interrupted_ceremony_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(token_env)
        .env(CHILD_DIR, dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn result(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.split_once("ceremony-result: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("the child said nothing: {text}"))
}

/// The ceremony id of the record at entry 0 of the log under `home`, if there is one.
fn logged_ceremony(home: &Path) -> Option<String> {
    let log = home.join("log");
    if !log.exists() {
        return None;
    }
    let vault = Vault::open(&log).unwrap();
    if vault.size() == 0 {
        return None;
    }
    let entry = vault.entry(0).unwrap();
    let signed = SignedEntry::decode(&entry, Kind::CEREMONY).unwrap();
    let cose = CoseSign1::decode(signed.cose_sign1).unwrap();
    let record = CeremonyRecord::decode(cose.payload).unwrap();
    Some(hex::encode(record.ceremony_id))
}

#[test]
fn a_ceremony_killed_at_any_step_is_named_by_the_next_run_and_recovers() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let tool = match common::test_module() {
        common::TestModule::SoftHsm2 => "softhsm2-util --delete-token",
        common::TestModule::Tpm2 => "tpm2_ptool rmtoken",
    };
    for (i, step) in STEPS.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join(TOKEN);
        let (status, text) = child(dir.path(), &[("CAIRN_TEST_KILL_AFTER", step)]);
        assert_eq!(
            status.signal(),
            Some(9),
            "after {step}: the ceremony was not killed ({status}): {text}"
        );
        // What it left: shares only for a logged ceremony; no appliance before the state.
        let journal: serde_json::Value =
            serde_json::from_slice(&std::fs::read(home.join(JOURNAL_FILE)).unwrap()).unwrap();
        let id = journal["ceremony"].as_str().unwrap().to_owned();
        let shares = common::CUSTODIANS
            .iter()
            .filter(|c| common::share_path(dir.path(), TOKEN, c).exists())
            .count();
        let logged = logged_ceremony(&home);
        if shares > 0 {
            assert_eq!(
                logged.as_deref(),
                Some(id.as_str()),
                "after {step}: {shares} share files for a ceremony that is not logged"
            );
        }
        let record_at = STEPS.iter().position(|s| *s == "record").unwrap();
        assert_eq!(logged.is_some(), i >= record_at, "after {step}: the record");
        let opened = Appliance::open(&home).map(drop);
        assert_eq!(opened.is_ok(), *step == "state", "after {step}: {opened:?}");

        // The next run.
        let (status, text) = child(dir.path(), &[]);
        assert!(status.success(), "after {step}: {text}");
        let said = result(&text);
        println!("killed after {step}: the next ceremony init says: {said}");
        if *step == "state" {
            assert!(said.contains("already holds a ceremony"), "{said}");
            continue;
        }
        assert!(
            said.starts_with("refused:")
                && said.contains("was interrupted")
                && said.contains(&id)
                && said.contains(&format!("token {TOKEN:?} initialised"))
                && said.contains(tool)
                && said.contains(&home.display().to_string()),
            "after {step}: {said}"
        );
        assert_eq!(
            said.contains("ceremony record logged"),
            i >= record_at,
            "after {step}: {said}"
        );
        if shares > 0 {
            assert!(
                said.contains(&format!("{shares} of 5 share files"))
                    && said.contains("destroy the share files"),
                "after {step}: {said}"
            );
        }
        // The operator does what it says; the ceremony then runs.
        let (status, text) = child(dir.path(), &[(CHILD_MODE, "recover")]);
        assert!(status.success(), "recovering after {step}: {text}");
        assert!(
            result(&text).starts_with("done "),
            "recovering after {step}: {text}"
        );
        assert!(!home.join(JOURNAL_FILE).exists(), "the journal stayed");
    }
}
