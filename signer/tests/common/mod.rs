//! Test harness: every test runs in its own process with its own SoftHSM2 token directory.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, at `C_Initialize`, and a process can initialize a module
//! once; so a test re-runs its own test binary, filtered to itself, with a fresh configuration in
//! the environment, and the parent checks the child's exit status and captured output.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

pub mod relay_log;

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_signer::ceremony::{self, CeremonyOptions, CeremonyReport, Custodian};
use cairn_signer::hsm::Module;
use cairn_signer::shares::{KdfParams, Passphrase, ShareFile};
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

/// Runs `body` in a child process with a fresh SoftHSM token directory. Returns the child's
/// combined output (in the parent) so tests can scan it.
pub fn in_softhsm(test: &str, body: impl FnOnce(&Module, &Path)) -> Option<String> {
    if let Some(dir) = std::env::var_os(CHILD) {
        let module = Module::from_env().expect("SoftHSM2 loads (run tools/setup)");
        body(&module, Path::new(&dir));
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = cairn_signer::hsm::softhsm_config(dir.path()).expect("softhsm2.conf");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
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
    let opts = CeremonyOptions {
        home: dir.join(token),
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
    };
    ceremony::init(module, &opts).expect("ceremony")
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
