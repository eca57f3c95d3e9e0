//! `cairn ceremony init --existing-token LABEL` as an OEM runs it on an HSM whose security
//! officer initialised the token: the SO's initial user PIN is read like a passphrase (first on
//! the descriptor), never printed, and replaced; the record and `ceremony verify` say so. Runs on
//! the module `CAIRN_TEST_PKCS11` chooses.

#![expect(clippy::unwrap_used, reason = "test code: a failure is a failed test")]

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use cairn_signer::testtoken::TestModule;

const INITIAL_PIN: &str = "handed-over-by-the-so-7731";
const CUSTODIANS: [&str; 3] = ["alice", "bob", "carol"];

fn passphrase(name: &str) -> String {
    format!("{name} keeps the third verse of the ceremony")
}

fn run(program: &str, args: &[&str], env: &[(&'static str, OsString)], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().cloned())
        .env_remove("CAIRN_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The security officer's step, with the module's own tool.
fn so_initialises(module: TestModule, env: &[(&'static str, OsString)], dir: &Path) {
    let out = match module {
        TestModule::SoftHsm2 => run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                "oem-hsm",
                "--so-pin",
                "so-pin-0001",
                "--pin",
                INITIAL_PIN,
            ],
            env,
            "",
        ),
        TestModule::Tpm2 => {
            let store = dir.join("token/tpm2-store");
            let store = store.to_str().unwrap();
            let init = run(
                "tpm2_ptool",
                &["init", "--primary-handle", "0x81000001", "--path", store],
                env,
                "",
            );
            assert!(init.status.success(), "{}", text(&init));
            run(
                "tpm2_ptool",
                &[
                    "addtoken",
                    "--pid",
                    "1",
                    "--label",
                    "oem-hsm",
                    "--sopin",
                    "so-pin-0001",
                    "--userpin",
                    INITIAL_PIN,
                    "--path",
                    store,
                ],
                env,
                "",
            )
        }
    };
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn an_existing_token_is_adopted_from_the_cli_and_the_so_pin_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (module, env) = cairn_signer::testtoken::child_env(&dir.path().join("token")).unwrap();
    so_initialises(module, &env, dir.path());
    let home = dir.path().join("signer");
    let custodians: Vec<String> = CUSTODIANS
        .iter()
        .map(|n| format!("{n}={}", dir.path().join(format!("{n}.share")).display()))
        .collect();
    let init = |home: &Path, initial: &str| {
        let mut args = vec![
            "--json",
            "ceremony",
            "init",
            "--home",
            home.to_str().unwrap(),
            "--existing-token",
            "oem-hsm",
            "--origin",
            "oem.example/cairn/log",
            "--organization",
            "OEM",
            "--threshold",
            "2",
            "--kdf-memory-mib",
            "8",
            "--kdf-passes",
            "1",
            "--passphrase-fd",
            "0",
        ];
        for c in &custodians {
            args.extend(["--custodian", c.as_str()]);
        }
        let mut stdin = format!("{initial}\n");
        for n in CUSTODIANS {
            stdin.push_str(&passphrase(n));
            stdin.push('\n');
        }
        run(env!("CARGO_BIN_EXE_cairn"), &args, &env, &stdin)
    };

    // A wrong initial PIN is refused at C_Login; the PIN is not echoed.
    let out = init(&dir.path().join("wrong"), "not-the-pin-0000");
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("C_Login"), "{t}");
    assert!(!t.contains("not-the-pin-0000"), "{t}");

    let out = init(&home, INITIAL_PIN);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains(INITIAL_PIN), "the SO's PIN in the output:\n{t}");
    for n in CUSTODIANS {
        assert!(!t.contains(&passphrase(n)), "{t}");
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["token_pin_rotated"], true, "{t}");
    assert_eq!(report["state"]["token"], "oem-hsm");

    let out = run(
        env!("CARGO_BIN_EXE_cairn"),
        &["ceremony", "verify", "--home", home.to_str().unwrap()],
        &env,
        "",
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("adopted; the security officer's initial user PIN was rotated"),
        "{t}"
    );
}
