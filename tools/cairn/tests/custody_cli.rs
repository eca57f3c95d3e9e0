//! `cairn ceremony`, `cairn release`, `cairn key` end to end on SoftHSM2, as custodians run them
//! (docs/ceremony.md): a 3-of-5 ceremony, release 2.4.1 signed and verified, refused sessions,
//! a key rotation, and no secret in any output.

#![expect(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test helpers: a failure is a failed test; the ceremony is one scenario"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CUSTODIANS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn passphrase(name: &str) -> String {
    format!("{name} keeps the third verse of the ceremony")
}

struct Hsm {
    dir: tempfile::TempDir,
    /// The environment of the module under test (`CAIRN_TEST_PKCS11`).
    env: cairn_signer::testtoken::ChildEnv,
}

impl Hsm {
    /// A fresh token store of the module `CAIRN_TEST_PKCS11` chooses.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_, env) = cairn_signer::testtoken::child_env(dir.path()).unwrap();
        Self { dir, env }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs cairn with `stdin` as the passphrase descriptor's content.
    fn cairn(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .envs(self.env.iter().cloned())
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
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for name in CUSTODIANS.iter().chain(&["mallory"]) {
            assert!(
                !text.contains(&passphrase(name)),
                "passphrase of {name} in the output of {args:?}:\n{text}"
            );
        }
        out
    }
}

#[track_caller]
fn code(o: &Output, want: i32) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(want), "{text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn lines(names: &[&str]) -> String {
    names.iter().map(|n| passphrase(n) + "\n").collect()
}

fn sign_args<'a>(home: &'a str, shares: &'a [String], image: &'a str, id: &'a str) -> Vec<&'a str> {
    let mut args = vec!["release", "sign", "--home", home, "--passphrase-fd", "0"];
    for share in shares {
        args.extend(["--share", share.as_str()]);
    }
    args.extend([
        "--image",
        image,
        "--release-id",
        id,
        "--product",
        "Smart Controller",
        "--family",
        "STM32H5",
        "--hardware-revision",
        "rev-c",
        "--version",
        "2.4.1",
        "--security-epoch",
        "7",
        "--support-until",
        "2031-11-26",
        "--advisory",
        "CVE-2026-12345",
        // the raw format: this test is about the signing session (MCUboot: mcuboot_cli.rs)
        "--format",
        "raw",
    ]);
    args
}

#[test]
fn a_3_of_5_ceremony_signs_release_2_4_1_and_every_step_verifies() {
    let hsm = Hsm::new();
    let home = hsm.path("signer");
    let share = |n: &str| s(&hsm.path(&format!("{n}.share"))).to_owned();
    let mut init = vec![
        "--json",
        "ceremony",
        "init",
        "--home",
        s(&home),
        "--origin",
        "oem.example/cairn/log",
        "--organization",
        "Smart Controller OEM",
        "--threshold",
        "3",
        "--kdf-memory-mib",
        "8",
        "--kdf-passes",
        "1",
        "--passphrase-fd",
        "0",
    ];
    let custodian_args: Vec<String> = CUSTODIANS
        .iter()
        .map(|n| format!("{n}={}", share(n)))
        .collect();
    for c in &custodian_args {
        init.extend(["--custodian", c.as_str()]);
    }
    let out = hsm.cairn(&init, &lines(&CUSTODIANS));
    code(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["state"]["threshold"], 3);
    assert_eq!(report["share_files"].as_array().unwrap().len(), 5);
    let root_fp = report["state"]["keys"]["root"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    // The fingerprint the custodians write down is the one openssl computes.
    let openssl = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            s(&home.join("certs/root.pem")),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&openssl.stdout).contains(&root_fp));
    let text = code(
        &hsm.cairn(
            &[
                "ceremony",
                "verify",
                "--home",
                s(&home),
                "--root-fingerprint",
                &root_fp,
            ],
            "",
        ),
        0,
    );
    assert!(text.contains("ceremony record OK"), "{text}");
    let wrong = "00".repeat(32);
    let text = code(
        &hsm.cairn(
            &[
                "ceremony",
                "verify",
                "--home",
                s(&home),
                "--root-fingerprint",
                &wrong,
            ],
            "",
        ),
        1,
    );
    assert!(text.contains("fingerprint"), "{text}");

    // Release 2.4.1 signed by alice, carol and erin.
    let image = hsm.path("controller-fw-2.4.1-security.bin");
    std::fs::write(&image, vec![0xa5u8; 1 << 20]).unwrap();
    let shares: Vec<String> = ["alice", "carol", "erin"]
        .iter()
        .map(|n| share(n))
        .collect();
    let mut args = vec!["--json"];
    args.extend(sign_args(
        s(&home),
        &shares,
        s(&image),
        "controller-fw-2.4.1",
    ));
    let out = hsm.cairn(&args, &lines(&["alice", "carol", "erin"]));
    code(&out, 0);
    let signed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(signed["index"], 2);
    assert_eq!(
        signed["custodians"],
        serde_json::json!(["alice", "carol", "erin"])
    );
    let text = code(
        &hsm.cairn(
            &[
                "release",
                "verify",
                "--home",
                s(&home),
                "--release-id",
                "controller-fw-2.4.1",
                "--image",
                s(&image),
            ],
            "",
        ),
        0,
    );
    assert!(text.contains("image matches"), "{text}");
    std::fs::write(hsm.path("tampered.bin"), vec![0xa4u8; 1 << 20]).unwrap();
    let text = code(
        &hsm.cairn(
            &[
                "release",
                "verify",
                "--home",
                s(&home),
                "--release-id",
                "controller-fw-2.4.1",
                "--image",
                s(&hsm.path("tampered.bin")),
            ],
            "",
        ),
        1,
    );
    assert!(text.contains("is not the signed"), "{text}");
    // The log's own tooling checks the same log: fsck is clean.
    code(
        &hsm.cairn(&["log", "fsck", "--db", s(&home.join("log"))], ""),
        0,
    );

    // Refusals, each before any login: k-1 shares, a wrong passphrase, a share twice.
    let two: Vec<String> = ["alice", "bob"].iter().map(|n| share(n)).collect();
    let text = code(
        &hsm.cairn(
            &sign_args(s(&home), &two, s(&image), "fw-x"),
            &lines(&["alice", "bob"]),
        ),
        2,
    );
    assert!(
        text.contains("2 share(s) presented, the token needs 3"),
        "{text}"
    );
    let three: Vec<String> = ["alice", "bob", "dave"].iter().map(|n| share(n)).collect();
    let text = code(
        &hsm.cairn(
            &sign_args(s(&home), &three, s(&image), "fw-x"),
            &lines(&["alice", "mallory", "dave"]),
        ),
        2,
    );
    assert!(text.contains("custodian bob"), "{text}");
    let twice: Vec<String> = ["alice", "bob", "alice"].iter().map(|n| share(n)).collect();
    let text = code(
        &hsm.cairn(
            &sign_args(s(&home), &twice, s(&image), "fw-x"),
            &lines(&["alice", "bob", "alice"]),
        ),
        2,
    );
    assert!(text.contains("given twice"), "{text}");
    let text = code(
        &hsm.cairn(
            &sign_args(s(&home), &three, s(&image), "fw-x"),
            &lines(&["alice"]),
        ),
        2,
    );
    assert!(
        text.contains("ended before the passphrase for custodian bob"),
        "{text}"
    );

    // Rotation, then a release under the new key; both releases still verify.
    let mut rotate = vec![
        "key",
        "rotate",
        "--home",
        s(&home),
        "--passphrase-fd",
        "0",
        "--reason",
        "annual rotation",
    ];
    for sh in &three {
        rotate.extend(["--share", sh.as_str()]);
    }
    let text = code(&hsm.cairn(&rotate, &lines(&["alice", "bob", "dave"])), 0);
    assert!(text.contains("cairn-release-1"), "{text}");
    let out = hsm.cairn(
        &sign_args(s(&home), &three, s(&image), "controller-fw-2.4.2"),
        &lines(&["alice", "bob", "dave"]),
    );
    code(&out, 0);
    for id in ["controller-fw-2.4.1", "controller-fw-2.4.2"] {
        code(
            &hsm.cairn(
                &[
                    "release",
                    "verify",
                    "--home",
                    s(&home),
                    "--release-id",
                    id,
                    "--image",
                    s(&image),
                ],
                "",
            ),
            0,
        );
    }
}

#[test]
fn bad_ceremony_parameters_are_refused_before_the_token_is_touched() {
    let hsm = Hsm::new();
    let home = hsm.path("signer");
    let run_as = |threshold: &str, custodians: &[&str], pass: &str, origin: &str, token: &str| {
        let mut args = vec![
            "ceremony",
            "init",
            "--home",
            s(&home),
            "--token",
            token,
            "--origin",
            origin,
            "--organization",
            "OEM",
            "--threshold",
            threshold,
            "--kdf-memory-mib",
            "8",
            "--kdf-passes",
            "1",
            "--passphrase-fd",
            "0",
        ];
        for c in custodians {
            args.extend(["--custodian", c]);
        }
        hsm.cairn(&args, pass)
    };
    let run = |threshold: &str, custodians: &[&str], pass: &str| {
        run_as(threshold, custodians, pass, "o.example/log", "cairn")
    };
    let a = format!("alice={}", s(&hsm.path("a.share")));
    let b = format!("bob={}", s(&hsm.path("b.share")));
    let text = code(&run("1", &[&a, &b], &lines(&["alice", "bob"])), 2);
    assert!(text.contains("threshold 1 out of range"), "{text}");
    let text = code(&run("2", &[&a, &b], "short\nshort\n"), 2);
    assert!(text.contains("passphrase too short"), "{text}");
    assert!(!text.contains("short\n"), "{text}");
    let text = code(&run("2", &[&a, "bob"], &lines(&["alice", "bob"])), 2);
    assert!(text.contains("expected NAME=SHARE_FILE"), "{text}");
    // The origin is also the checkpoint key name (no spaces, no '+'); a label fits in 32 bytes.
    let two = lines(&["alice", "bob"]);
    let text = code(
        &run_as("2", &[&a, &b], &two, "o.example/my log", "cairn"),
        2,
    );
    assert!(text.contains("no spaces or '+'"), "{text}");
    let long = "t".repeat(33);
    let text = code(&run_as("2", &[&a, &b], &two, "o.example/log", &long), 2);
    assert!(text.contains("PKCS#11 labels hold 32"), "{text}");
    assert!(!home.exists(), "a refused ceremony created its home");
    // Nothing was created: a good ceremony still runs.
    assert!(!hsm.path("a.share").exists());
    code(&run("2", &[&a, &b], &lines(&["alice", "bob"])), 0);
}

/// A 2-of-3 ceremony; returns the home directory.
fn small_ceremony(hsm: &Hsm) -> PathBuf {
    let home = hsm.path("signer");
    let mut args = vec![
        "ceremony",
        "init",
        "--home",
        s(&home),
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
    let custodians: Vec<String> = CUSTODIANS[..3]
        .iter()
        .map(|n| format!("{n}={}", s(&hsm.path(&format!("{n}.share")))))
        .collect();
    for c in &custodians {
        args.extend(["--custodian", c.as_str()]);
    }
    code(&hsm.cairn(&args, &lines(&CUSTODIANS[..3])), 0);
    home
}

#[test]
fn bundles_cross_the_air_gap_verified_and_all_or_nothing() {
    let hsm = Hsm::new();
    let home = small_ceremony(&hsm);
    let image = hsm.path("fw.bin");
    std::fs::write(&image, b"firmware").unwrap();
    let shares: Vec<String> = ["alice", "bob"]
        .iter()
        .map(|n| s(&hsm.path(&format!("{n}.share"))).to_owned())
        .collect();
    code(
        &hsm.cairn(
            &sign_args(s(&home), &shares, s(&image), "controller-fw-2.4.1"),
            &lines(&["alice", "bob"]),
        ),
        0,
    );
    let db = home.join("log");
    let log_cert = home.join("certs/log-0.pem");
    let mirror = hsm.path("relay-mirror");

    // First bundle: everything; verified with the log key certificate; imported into a mirror.
    let first = hsm.path("first.bundle");
    let text = code(
        &hsm.cairn(
            &["bundle", "export", "--db", s(&db), "--out", s(&first)],
            "",
        ),
        0,
    );
    assert!(text.contains("entries 0..3"), "{text}");
    let text = code(
        &hsm.cairn(&["bundle", "verify", s(&first), "--key", s(&log_cert)], ""),
        0,
    );
    assert!(text.contains("bundle OK"), "{text}");
    code(
        &hsm.cairn(
            &[
                "bundle",
                "import",
                s(&first),
                "--db",
                s(&mirror),
                "--key",
                s(&log_cert),
            ],
            "",
        ),
        0,
    );
    let text = code(
        &hsm.cairn(
            &[
                "bundle",
                "import",
                s(&first),
                "--db",
                s(&mirror),
                "--key",
                s(&log_cert),
            ],
            "",
        ),
        0,
    );
    assert!(
        text.contains("imported 0 entries (3 already held)"),
        "{text}"
    );
    // Never overwritten.
    let text = code(
        &hsm.cairn(
            &["bundle", "export", "--db", s(&db), "--out", s(&first)],
            "",
        ),
        2,
    );
    assert!(text.contains("first.bundle"), "{text}");

    // The next bundle continues from the mirror's checkpoint.
    code(
        &hsm.cairn(
            &sign_args(s(&home), &shares, s(&image), "controller-fw-2.4.2"),
            &lines(&["alice", "bob"]),
        ),
        0,
    );
    let second = hsm.path("second.bundle");
    code(
        &hsm.cairn(
            &[
                "bundle",
                "export",
                "--db",
                s(&db),
                "--since",
                "3",
                "--out",
                s(&second),
            ],
            "",
        ),
        0,
    );
    // The same bundle from the receiver's own checkpoint; a receiver whose checkpoint differs
    // from the log's (a fork) or that the log never signed is refused.
    let shown = hsm.cairn(
        &["--json", "log", "checkpoint", "show", "--db", s(&mirror)],
        "",
    );
    let note: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let receiver = hsm.path("relay-checkpoint.txt");
    std::fs::write(&receiver, note["note"].as_str().unwrap()).unwrap();
    let again = hsm.path("again.bundle");
    let args = |cp: &Path, out: &Path| {
        hsm.cairn(
            &[
                "bundle",
                "export",
                "--db",
                s(&db),
                "--receiver-checkpoint",
                s(cp),
                "--out",
                s(out),
            ],
            "",
        )
    };
    code(&args(&receiver, &again), 0);
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&second).unwrap()
    );
    let forked = hsm.path("forked-checkpoint.txt");
    let text = std::fs::read_to_string(&receiver).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    std::fs::write(&forked, lines.join("\n") + "\n").unwrap();
    let text = code(&args(&forked, &hsm.path("x.bundle")), 1);
    assert!(text.contains("the receiver has forked"), "{text}");
    let unknown = hsm.path("unknown-checkpoint.txt");
    std::fs::write(
        &unknown,
        std::fs::read_to_string(&receiver)
            .unwrap()
            .replacen("\n3\n", "\n4\n", 1),
    )
    .unwrap();
    let text = code(&args(&unknown, &hsm.path("y.bundle")), 2);
    assert!(text.contains("not one this log signed"), "{text}");
    // Tampered: one byte of an entry flipped; refused, and the mirror keeps its 3 entries.
    let mut bytes = std::fs::read(&second).unwrap();
    let at = bytes
        .windows(19)
        .position(|w| w == b"controller-fw-2.4.2")
        .unwrap();
    bytes[at + 18] ^= 1;
    let tampered = hsm.path("tampered.bundle");
    std::fs::write(&tampered, &bytes).unwrap();
    let text = code(
        &hsm.cairn(
            &[
                "bundle",
                "import",
                s(&tampered),
                "--db",
                s(&mirror),
                "--key",
                s(&log_cert),
            ],
            "",
        ),
        1,
    );
    assert!(text.contains("transfer bundle refused"), "{text}");
    let text = code(&hsm.cairn(&["log", "fsck", "--db", s(&mirror)], ""), 0);
    assert!(text.contains("3 entries"), "{text}");
    let text = code(
        &hsm.cairn(
            &[
                "bundle",
                "import",
                s(&second),
                "--db",
                s(&mirror),
                "--key",
                s(&log_cert),
            ],
            "",
        ),
        0,
    );
    assert!(text.contains("now at checkpoint size 5"), "{text}");
    // A bundle verified against the wrong key is refused.
    let root_cert = home.join("certs/root.pem");
    code(
        &hsm.cairn(&["bundle", "verify", s(&first), "--key", s(&root_cert)], ""),
        1,
    );
}

#[test]
#[cfg(feature = "testfleet")]
fn the_reference_eligibility_step_runs_from_the_cli() {
    let hsm = Hsm::new();
    let home = small_ceremony(&hsm);
    let shares: Vec<String> = ["bob", "carol"]
        .iter()
        .map(|n| s(&hsm.path(&format!("{n}.share"))).to_owned())
        .collect();
    for (id, version, fill) in [
        ("controller-fw-2.4.0", "2.4.0", 1u8),
        ("controller-fw-2.4.1", "2.4.1", 2),
    ] {
        let image = hsm.path(&format!("{id}.bin"));
        std::fs::write(&image, vec![fill; 4096]).unwrap();
        let mut args = sign_args(s(&home), &shares, s(&image), id);
        let v = args.iter().position(|a| *a == "2.4.1").unwrap();
        args[v] = version;
        args.extend(["--hardware-revision", "rev-b"]);
        code(&hsm.cairn(&args, &lines(&["bob", "carol"])), 0);
    }
    let fleet = hsm.path("fleet");
    let text = code(
        &hsm.cairn(&["devices", "generate", "--out", s(&fleet)], ""),
        0,
    );
    assert!(
        text.contains("wrote 8,400 devices (197 with known defects)"),
        "{text}"
    );
    code(
        &hsm.cairn(
            &[
                "devices",
                "trust",
                "--home",
                s(&home),
                s(&fleet.join("manufacturer-ca.pem")),
            ],
            "",
        ),
        0,
    );
    let text = code(
        &hsm.cairn(
            &[
                "devices",
                "import",
                "--home",
                s(&home),
                s(&fleet.join("fleet.csv")),
            ],
            "",
        ),
        0,
    );
    assert!(text.contains("8,400 devices (8,400 new"), "{text}");
    let text = code(
        &hsm.cairn(
            &[
                "devices",
                "revoke",
                "--home",
                s(&home),
                s(&fleet.join("manufacturer.crl")),
            ],
            "",
        ),
        0,
    );
    assert!(text.contains("41 certificates revoked"), "{text}");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/plan-2.4.1.toml");
    let mut args = vec![
        "rollout",
        "plan",
        "--home",
        s(&home),
        "--passphrase-fd",
        "0",
        "--plan",
        s(&plan),
    ];
    for sh in &shares {
        args.extend(["--share", sh.as_str()]);
    }
    let text = code(&hsm.cairn(&args, &lines(&["bob", "carol"])), 0);
    assert!(
        text.contains("8,203 devices approved, 197 rejected (of 8,400)"),
        "{text}"
    );
    assert!(
        text.contains("certificate-revoked") && text.contains("41"),
        "{text}"
    );
    assert!(text.contains("2 HSM signatures"), "{text}");
    let text = code(
        &hsm.cairn(&["devices", "show", "--home", s(&home), "sc-0000008"], ""),
        0,
    );
    assert!(text.contains("revoked"), "{text}");
    // A bad fleet file names the row and imports nothing new.
    let bad = hsm.path("bad.csv");
    let csv = std::fs::read_to_string(fleet.join("fleet.csv"))
        .unwrap()
        .replacen(",active,", ",asleep,", 1);
    std::fs::write(&bad, csv).unwrap();
    let text = code(
        &hsm.cairn(&["devices", "import", "--home", s(&home), s(&bad)], ""),
        2,
    );
    assert!(
        text.contains("row 2: unknown lifecycle state \"asleep\""),
        "{text}"
    );
}

/// MCUboot's imgtool in the project's venv (tools/setup); a clear failure when missing.
fn imgtool(args: &[&str]) -> (bool, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/imgtool");
    assert!(
        path.exists(),
        "{} not found: tools/setup installs MCUboot's imgtool 2.5.0 into the project's .venv",
        path.display()
    );
    let out = Command::new(path).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// For family STM32H5 `release sign` makes an MCUboot image by default: imgtool verifies it with
/// the release certificate's key, `release verify` checks it as a device does and refuses the raw
/// firmware; a finished image that disagrees with the flags is refused and nothing is logged.
#[test]
fn stm32h5_releases_are_mcuboot_images_that_imgtool_verifies() {
    let hsm = Hsm::new();
    let home = small_ceremony(&hsm);
    let firmware = hsm.path("controller-fw-2.4.1.bin");
    std::fs::write(&firmware, vec![0x5au8; 300_000]).unwrap();
    let shares: Vec<String> = ["alice", "bob"]
        .iter()
        .map(|n| s(&hsm.path(&format!("{n}.share"))).to_owned())
        .collect();
    let mut args = vec!["--json"];
    args.extend(sign_args(
        s(&home),
        &shares,
        s(&firmware),
        "controller-fw-2.4.1",
    ));
    args.truncate(args.len() - 2); // the default format, not --format raw
    args.extend(["--slot-size", "0x80000", "--pad"]);
    let out = hsm.cairn(&args, &lines(&["alice", "bob"]));
    code(&out, 0);
    let signed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(signed["format"], "mcuboot");
    let image = hsm.path("controller-fw-2.4.1.signed.bin");
    assert_eq!(signed["image"], s(&image));
    assert_eq!(signed["image_size"], 0x80000);

    let pubkey = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(home.join("certs/release-0.pem"))
        .output()
        .unwrap();
    let pem = hsm.path("release.pem");
    std::fs::write(&pem, &pubkey.stdout).unwrap();
    let (ok, text) = imgtool(&["verify", "-k", s(&pem), s(&image)]);
    assert!(ok && text.contains("Image version: 2.4.1+0"), "{text}");
    let (ok, text) = imgtool(&["dumpinfo", s(&image)]);
    assert!(
        ok && text.contains("SEC_CNT") && text.contains("0x07 0x00 0x00 0x00"),
        "{text}"
    );

    let verify = |image: &Path| {
        hsm.cairn(
            &[
                "release",
                "verify",
                "--home",
                s(&home),
                "--release-id",
                "controller-fw-2.4.1",
                "--image",
                s(image),
            ],
            "",
        )
    };
    let text = code(&verify(&image), 0);
    assert!(text.contains("image matches"), "{text}");
    let text = code(&verify(&firmware), 1);
    assert!(
        text.contains("image is 300000 bytes, release states 524288"),
        "{text}"
    );

    // The finished image again, under flags that disagree with it: refused, nothing logged.
    let size = |home: &Path| {
        let db = home.join("log");
        code(
            &hsm.cairn(&["log", "checkpoint", "show", "--db", s(&db)], ""),
            0,
        )
    };
    let before = size(&home);
    let mut args = sign_args(s(&home), &shares, s(&image), "controller-fw-2.4.2");
    args.truncate(args.len() - 2);
    args.push("--finished-image");
    let epoch = args.iter().position(|a| *a == "7").unwrap();
    args[epoch] = "8";
    let text = code(&hsm.cairn(&args, &lines(&["alice", "bob"])), 2);
    assert!(
        text.contains("security counter Some(7) is not the release's security epoch 8"),
        "{text}"
    );
    assert_eq!(size(&home), before, "a refused image changed the log");
}
