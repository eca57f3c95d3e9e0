//! What the benchmarks share: each runs on a token store of its own, on the module
//! `CAIRN_TEST_PKCS11` chooses (`cairn_signer::testtoken`), so it re-runs its own executable with
//! that module's environment (modules read it once per process).

use std::path::Path;
use std::process::Command;

/// Runs `body` in a child process of this benchmark with a fresh token store; in the child,
/// `body` gets the directory.
pub(crate) fn in_token(child_env: &str, body: impl FnOnce(&Path)) {
    if let Some(dir) = std::env::var_os(child_env) {
        body(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let (module, env) = cairn_signer::testtoken::child_env(dir.path()).expect("token store");
    eprintln!("PKCS#11 module under test: {}", module.name());
    let status = Command::new(std::env::current_exe().expect("benchmark executable"))
        .envs(env)
        .env(child_env, dir.path())
        .status()
        .expect("re-running the benchmark");
    assert!(status.success(), "benchmark failed");
}

/// Rate of `openssl speed -seconds 3 ecdsap256` on one core: (sign/s, verify/s).
pub(crate) fn openssl_speed() -> (f64, f64) {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap256"])
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        // " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  41235.6  13512.3"
        if line.contains("ecdsa (nistp256)") {
            let nums: Vec<f64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [.., sign, verify] = nums[..] {
                return (sign, verify);
            }
        }
    }
    panic!("unexpected openssl speed output:\n{text}");
}
