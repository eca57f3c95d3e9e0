//! Test harness: every test runs in its own process with a token store of its own, on the module
//! `CAIRN_TEST_PKCS11` chooses (SoftHSM2 by default, `tpm2` under tools/with-tpm2; see
//! `cairn_signer::testtoken`).
//!
//! Modules read their configuration once, at `C_Initialize`, and a process can initialize a
//! module once; so a test re-runs its own test binary, filtered to itself, with a fresh
//! configuration in the environment, and the parent checks the child's exit status and output.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

pub mod relay_log;

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_signer::ceremony::{self, CeremonyOptions, CeremonyReport, Custodian, TokenSource};
use cairn_signer::hsm::Module;
use cairn_signer::shares::{KdfParams, Passphrase, ShareFile};
pub use cairn_signer::testtoken::TestModule;
use cairn_verifier::types::UnixTime;

const CHILD: &str = "CAIRN_SIGNER_TEST_DIR";

/// The ceremony's time in the tests: 2026-11-26T00:00:00Z.
pub const NOW: UnixTime = UnixTime(1_795_651_200);

/// The cheapest Argon2id the shares accept (the tests open many shares).
pub const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 8 * 1024,
    iterations: 1,
    parallelism: 1,
};

pub const CUSTODIANS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// Custodian `name`'s passphrase.
pub fn passphrase_text(name: &str) -> String {
    format!("correct horse battery staple of {name}")
}

pub fn passphrase(name: &str) -> Passphrase {
    Passphrase::new(passphrase_text(name))
}

/// The module `CAIRN_TEST_PKCS11` chooses.
pub fn test_module() -> TestModule {
    TestModule::from_env().expect("CAIRN_TEST_PKCS11")
}

/// Runs `body` in a child process with a fresh token store of the module under test. Returns the
/// child's combined output (in the parent) so tests can scan it.
pub fn in_token(test: &str, body: impl FnOnce(&Module, &Path)) -> Option<String> {
    in_store(test, |dir| {
        let module = Module::from_env().expect("the PKCS#11 module loads (run tools/setup)");
        body(&module, dir);
    })
}

/// As [`in_token`], but the child's `body` loads the module itself (after, say, a security
/// officer's tool has initialised a token in the store).
pub fn in_store(test: &str, body: impl FnOnce(&Path)) -> Option<String> {
    if let Some(dir) = std::env::var_os(CHILD) {
        body(Path::new(&dir));
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, env) = cairn_signer::testtoken::child_env(dir.path()).expect("test token store");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .envs(env)
        .env(CHILD, dir.path())
        .output()
        .expect("re-running the test binary");
    let captured = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "child test {test} failed:\n{captured}"
    );
    assert!(
        captured.contains("1 passed"),
        "child did not run {test} (filter mismatch?):\n{captured}"
    );
    Some(captured)
}

pub fn share_path(dir: &Path, tag: &str, name: &str) -> PathBuf {
    dir.join(format!("{tag}-{name}.share"))
}

/// A 3-of-5 ceremony on token `token` with home `dir/<token>`.
pub fn ceremony(module: &Module, dir: &Path, token: &str) -> CeremonyReport {
    ceremony::init(module, &options(dir, token, TokenSource::Fresh)).expect("ceremony")
}

/// The options of [`ceremony`], on a token from `source`.
pub fn options(dir: &Path, token: &str, source: TokenSource) -> CeremonyOptions {
    CeremonyOptions {
        home: dir.join(token),
        source,
        token: token.into(),
        origin: format!("{token}.example/log"),
        organization: "Smart Controller OEM".into(),
        threshold: 3,
        custodians: CUSTODIANS
            .iter()
            .map(|name| Custodian {
                name: (*name).into(),
                share_path: share_path(dir, token, name),
                passphrase: passphrase(name),
            })
            .collect(),
        kdf: TEST_KDF,
        now: NOW,
    }
}

/// The share files and passphrases of `names` for the ceremony on `token`.
pub fn present(dir: &Path, token: &str, names: &[&str]) -> Vec<(ShareFile, Passphrase)> {
    names
        .iter()
        .map(|n| {
            (
                ShareFile::read(&share_path(dir, token, n)).expect("share file"),
                passphrase(n),
            )
        })
        .collect()
}

/// Runs a module's own administration tool (the security officer's, not cairn), in the child's
/// environment; panics with its output if it fails.
pub fn admin_tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// The security officer initialises token `label` with the module's own tool (no cairn code):
/// `softhsm2-util --init-token`, or `tpm2_ptool init` + `addtoken`.
pub fn so_initialises_token(label: &str, so_pin: &str, user_pin: &str) {
    match test_module() {
        TestModule::SoftHsm2 => {
            admin_tool(
                "softhsm2-util",
                &[
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--so-pin",
                    so_pin,
                    "--pin",
                    user_pin,
                ],
            );
        }
        TestModule::Tpm2 => {
            let store = std::env::var("TPM2_PKCS11_STORE").expect("TPM2_PKCS11_STORE");
            // One primary object per store (tools/with-tpm2 persisted the TPM's SRK).
            if !Path::new(&store).join("tpm2_pkcs11.sqlite3").exists() {
                admin_tool(
                    "tpm2_ptool",
                    &["init", "--primary-handle", "0x81000001", "--path", &store],
                );
            }
            admin_tool(
                "tpm2_ptool",
                &[
                    "addtoken",
                    "--pid",
                    "1",
                    "--label",
                    label,
                    "--sopin",
                    so_pin,
                    "--userpin",
                    user_pin,
                    "--path",
                    &store,
                ],
            );
        }
    }
}

/// The reset command a failed ceremony's error names, run as the operator would.
pub fn reset_token(label: &str) {
    match test_module() {
        TestModule::SoftHsm2 => {
            admin_tool("softhsm2-util", &["--delete-token", "--token", label]);
        }
        TestModule::Tpm2 => {
            let store = std::env::var("TPM2_PKCS11_STORE").expect("TPM2_PKCS11_STORE");
            admin_tool(
                "tpm2_ptool",
                &["rmtoken", "--label", label, "--path", &store],
            );
        }
    }
}

/// Whether the module's own administration tool, in a fresh process, lists token `label`.
pub fn token_listed(label: &str) -> bool {
    let text = match test_module() {
        TestModule::SoftHsm2 => admin_tool("softhsm2-util", &["--show-slots"]),
        TestModule::Tpm2 => {
            let store = std::env::var("TPM2_PKCS11_STORE").expect("TPM2_PKCS11_STORE");
            admin_tool(
                "tpm2_ptool",
                &["listtokens", "--pid", "1", "--path", &store],
            )
        }
    };
    text.lines().any(|line| {
        let line = line.trim().trim_start_matches("- ");
        line.to_ascii_lowercase()
            .strip_prefix("label:")
            .is_some_and(|rest| rest.trim() == label)
    })
}
