//! `cairn log …` end to end, as a custodian and an auditor use it: every command on a real log,
//! human and JSON output, and exit codes: 0 verified, 1 verification failed, 2 could not run.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, test_key};
use cairn_verifier::types::{Id, UnixTime, Version};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

const ORIGIN: &str = "oem.example/cairn/log";

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env_remove("CAIRN_LOG_DB")
        .output()
        .expect("run cairn")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[track_caller]
fn code(o: &Output, want: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).expect("JSON output")
}

fn manifest(i: u64, campaign: &str) -> Vec<u8> {
    let device = format!("dev-{i:06}");
    Manifest {
        device_id: Id::new(&device).unwrap(),
        release_id: Id::new("controller-fw-2.4.1").unwrap(),
        release_digest: [1; 32],
        hardware_revision: Id::new("rev-c").unwrap(),
        min_version: Version::new(2, 0, 0),
        max_version: Version::new(2, 4, 0),
        campaign: Id::new(campaign).unwrap(),
        purpose: Purpose::Update,
        decided_at: UnixTime(1_795_000_000 + i),
        campaign_sequence: 1,
    }
    .to_cbor()
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: String,
    key: String,
    public: String,
    other_public: String,
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// A log with a release and 600 manifests in three appends, checkpointed after each.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let sk = test_key(11);
    std::fs::write(
        root.join("log.key.pem"),
        sk.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        root.join("log.pub.pem"),
        sk.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let other = test_key(12);
    std::fs::write(
        root.join("other.pub.der"),
        other
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let s = Setup {
        db: path(&root.join("db")),
        key: path(&root.join("log.key.pem")),
        public: path(&root.join("log.pub.pem")),
        other_public: path(&root.join("other.pub.der")),
        root,
        _dir: dir,
    };
    ok(&cairn(&["log", "init", "--db", &s.db, "--origin", ORIGIN]));
    let f = Fixture::new();
    let release = ReleaseEntry {
        cose_sign1: &f.build(&f.spec()).release,
    }
    .to_cbor();
    let entries_dir = s.root.join("entries");
    std::fs::create_dir(&entries_dir).unwrap();
    let mut next = 0u64;
    for (batch, n) in [(0, 1u64), (1, 300), (2, 300)] {
        let mut files = Vec::new();
        for i in next..next + n {
            let bytes = if i == 0 {
                release.clone()
            } else {
                manifest(i, &format!("campaign-{batch}"))
            };
            let file = entries_dir.join(format!("{i:04}.cbor"));
            std::fs::write(&file, bytes).unwrap();
            files.push(path(&file));
        }
        let mut args = vec!["log", "append", "--db", &s.db];
        args.extend(files.iter().map(String::as_str));
        let out = ok(&cairn(&args));
        assert!(
            out.contains(&format!("indices {next}..{}", next + n)),
            "{out}"
        );
        next += n;
        let note = ok(&cairn(&["log", "sign", "--db", &s.db, "--key", &s.key]));
        assert!(note.starts_with(&format!("{ORIGIN}\n{next}\n")), "{note}");
    }
    s
}

#[test]
fn checkpoints_show_and_verify() {
    let s = setup();
    let shown = ok(&cairn(&["log", "checkpoint", "show", "--db", &s.db]));
    assert!(shown.contains("size   601"), "{shown}");
    let j = json(&cairn(&[
        "--json",
        "log",
        "checkpoint",
        "show",
        "--db",
        &s.db,
        "--size",
        "301",
    ]));
    assert_eq!(j["size"], 301);
    let note = j["note"].as_str().unwrap();
    let file = s.root.join("checkpoint");
    std::fs::write(&file, note).unwrap();
    let f = path(&file);

    let out = ok(&cairn(&[
        "log",
        "checkpoint",
        "verify",
        &f,
        "--key",
        &s.public,
    ]));
    assert!(
        out.contains("checkpoint OK") && out.contains("size 301"),
        "{out}"
    );
    // another key: verification failed
    let err = code(
        &cairn(&["log", "checkpoint", "verify", &f, "--key", &s.other_public]),
        1,
    );
    assert!(
        err.contains("no signature from the pinned log key"),
        "{err}"
    );
    // another origin
    let err = code(
        &cairn(&[
            "log",
            "checkpoint",
            "verify",
            &f,
            "--key",
            &s.public,
            "--origin",
            "other.example/log",
        ]),
        1,
    );
    assert!(err.contains("another log"), "{err}");
    // a tampered checkpoint
    std::fs::write(&file, note.replacen("\n301\n", "\n302\n", 1)).unwrap();
    code(
        &cairn(&["log", "checkpoint", "verify", &f, "--key", &s.public]),
        1,
    );
    // could not run: a missing file, a key file that is not a key
    let err = code(
        &cairn(&[
            "log",
            "checkpoint",
            "verify",
            "/nonexistent",
            "--key",
            &s.public,
        ]),
        2,
    );
    assert!(err.contains("/nonexistent"), "{err}");
    let err = code(
        &cairn(&["log", "checkpoint", "verify", &f, "--key", &s.db]),
        2,
    );
    assert!(err.contains("reading public key"), "{err}");
    // JSON failures are machine-readable
    let o = cairn(&[
        "--json",
        "log",
        "checkpoint",
        "verify",
        &f,
        "--key",
        &s.public,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (j["ok"].as_bool(), j["failure"].as_str()),
        (Some(false), Some("verification failed"))
    );
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
fn proofs_are_written_and_verified_offline() {
    let s = setup();
    let proof = path(&s.root.join("inclusion.json"));
    // by index, against the latest checkpoint
    ok(&cairn(&[
        "log",
        "prove",
        "inclusion",
        "--db",
        &s.db,
        "--index",
        "42",
        "--out",
        &proof,
    ]));
    let out = ok(&cairn(&["log", "verify-proof", &proof, "--key", &s.public]));
    assert!(
        out.contains("entry 42 is in oem.example/cairn/log at size 601"),
        "{out}"
    );
    assert!(out.contains("device dev-000042"), "{out}");
    // by entry file and by leaf hash, against an older checkpoint
    let entry = path(&s.root.join("entries/0007.cbor"));
    ok(&cairn(&[
        "log",
        "prove",
        "inclusion",
        "--db",
        &s.db,
        "--entry",
        &entry,
        "--size",
        "301",
        "--out",
        &proof,
    ]));
    let j = json(&cairn(&[
        "--json",
        "log",
        "verify-proof",
        &proof,
        "--key",
        &s.public,
    ]));
    assert_eq!(
        (j["index"].as_u64(), j["size"].as_u64()),
        (Some(7), Some(301))
    );
    let hash = j["leaf_hash"].as_str().unwrap().to_owned();
    let printed = ok(&cairn(&[
        "log",
        "prove",
        "inclusion",
        "--db",
        &s.db,
        "--leaf-hash",
        &hash,
    ]));
    assert!(printed.contains("\"index\": 7"), "{printed}");
    // an entry that is not the one proved
    let other = path(&s.root.join("entries/0008.cbor"));
    let err = code(
        &cairn(&[
            "log",
            "verify-proof",
            &proof,
            "--key",
            &s.public,
            "--entry",
            &other,
        ]),
        1,
    );
    assert!(
        err.contains("does not hash to the proof's leaf hash"),
        "{err}"
    );
    // a tampered proof hash, a wrong key, a proof that is not JSON
    let text = std::fs::read_to_string(&proof).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let first = v["proof"][0].as_str().unwrap();
    let flipped = format!(
        "{}{}",
        if first.starts_with('0') { "1" } else { "0" },
        &first[1..]
    );
    std::fs::write(&proof, text.replace(first, &flipped)).unwrap();
    let err = code(
        &cairn(&["log", "verify-proof", &proof, "--key", &s.public]),
        1,
    );
    assert!(err.contains("inclusion of entry 7"), "{err}");
    std::fs::write(&proof, &text).unwrap();
    code(
        &cairn(&["log", "verify-proof", &proof, "--key", &s.other_public]),
        1,
    );
    std::fs::write(&proof, "not a proof").unwrap();
    code(
        &cairn(&["log", "verify-proof", &proof, "--key", &s.public]),
        1,
    );
    // consistency between two checkpoints
    let cons = path(&s.root.join("consistency.json"));
    ok(&cairn(&[
        "log",
        "prove",
        "consistency",
        "--db",
        &s.db,
        "--from",
        "1",
        "--out",
        &cons,
    ]));
    let out = ok(&cairn(&["log", "verify-proof", &cons, "--key", &s.public]));
    assert!(out.contains("size 1 is a prefix of size 601"), "{out}");
    // sizes without a checkpoint, beyond the log: could not run, with the reason
    let err = code(
        &cairn(&["log", "prove", "consistency", "--db", &s.db, "--from", "2"]),
        2,
    );
    assert!(err.contains("no signed checkpoint of size 2"), "{err}");
    let err = code(
        &cairn(&["log", "prove", "inclusion", "--db", &s.db, "--index", "601"]),
        2,
    );
    assert!(err.contains("no entry 601"), "{err}");
}

#[test]
fn export_fsck_query_and_entries() {
    let s = setup();
    let out_dir = path(&s.root.join("tiles"));
    let out = ok(&cairn(&["log", "export", "--db", &s.db, "--out", &out_dir]));
    assert!(out.contains("size 0 -> 601"), "{out}");
    let out = ok(&cairn(&[
        "log",
        "verify-export",
        &out_dir,
        "--key",
        &s.public,
    ]));
    assert!(out.contains("export OK: 601 entries"), "{out}");
    // incremental: nothing new
    let j = json(&cairn(&[
        "--json", "log", "export", "--db", &s.db, "--out", &out_dir,
    ]));
    assert_eq!(
        (j["tiles"].as_u64(), j["bundles"].as_u64()),
        (Some(0), Some(0))
    );
    // a flipped byte in a tile is found, naming the file
    let tile = s.root.join("tiles/tile/0/000");
    let mut bytes = std::fs::read(&tile).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&tile, bytes).unwrap();
    let err = code(
        &cairn(&["log", "verify-export", &out_dir, "--key", &s.public]),
        1,
    );
    assert!(err.contains("tile/0/000"), "{err}");

    let out = ok(&cairn(&["log", "fsck", "--db", &s.db, "--quiet"]));
    assert!(out.contains("fsck OK: 601 entries re-hashed"), "{out}");
    let j = json(&cairn(&["--json", "log", "fsck", "--db", &s.db]));
    assert_eq!(
        (j["entries"].as_u64(), j["checkpoints"].as_u64()),
        (Some(601), Some(3))
    );

    let out = ok(&cairn(&[
        "log",
        "query",
        "--db",
        &s.db,
        "--campaign",
        "campaign-2",
    ]));
    assert_eq!(out.trim(), "300 entries: 301..601");
    let j = json(&cairn(&[
        "--json",
        "log",
        "query",
        "--db",
        &s.db,
        "--device",
        "dev-000005",
    ]));
    assert_eq!(j["runs"], serde_json::json!([[5, 6]]));
    let j = json(&cairn(&[
        "--json", "log", "query", "--db", &s.db, "--kind", "1",
    ]));
    assert_eq!(j["count"], 1);
    let j = json(&cairn(&[
        "--json",
        "log",
        "query",
        "--db",
        &s.db,
        "--from",
        "1795000001",
        "--to",
        "1795000010",
    ]));
    assert_eq!(j["count"], 10);
    let err = code(
        &cairn(&[
            "log", "query", "--db", &s.db, "--kind", "1", "--device", "x",
        ]),
        2,
    );
    assert!(err.contains("exactly one"), "{err}");

    let out = ok(&cairn(&["log", "entry", "--db", &s.db, "0"]));
    assert!(out.contains("release controller-fw-2.4.1"), "{out}");
    let raw = cairn(&["log", "entry", "--db", &s.db, "5", "--raw"]);
    assert_eq!(raw.stdout, manifest(5, "campaign-1"));
}

#[test]
fn bad_input_names_the_file_and_stores_nothing() {
    let s = setup();
    let bad = s.root.join("bad.cbor");
    std::fs::write(&bad, b"definitely not CBOR").unwrap();
    let good = path(&s.root.join("entries/0001.cbor"));
    let err = code(
        &cairn(&["log", "append", "--db", &s.db, &good, &path(&bad)]),
        2,
    );
    assert!(
        err.contains("bad.cbor") && err.contains("not a valid statement"),
        "{err}"
    );
    let j = json(&cairn(&["--json", "log", "fsck", "--db", &s.db]));
    assert_eq!(j["size"], 601);
    // a log directory that does not exist, and a second init over a log
    let err = code(&cairn(&["log", "fsck", "--db", "/nonexistent/db"]), 2);
    assert!(err.contains("/nonexistent/db"), "{err}");
    let err = code(
        &cairn(&["log", "init", "--db", &s.db, "--origin", ORIGIN]),
        2,
    );
    assert!(err.contains("already holds a log"), "{err}");
    // signing with a key that is not the log's pinned key changes nothing
    let other = s.root.join("other.key.pem");
    std::fs::write(
        &other,
        test_key(13)
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    code(
        &cairn(&["log", "sign", "--db", &s.db, "--key", &path(&other)]),
        2,
    );
    let j = json(&cairn(&[
        "--json",
        "log",
        "checkpoint",
        "show",
        "--db",
        &s.db,
    ]));
    assert_eq!(j["size"], 601);
}

#[test]
fn audit_verify_names_bad_input_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("campaign.pack");
    let root = dir.path().join("root.pem");
    // A missing pack: the command cannot run (2), and says which file.
    let o = cairn(&["audit", "verify", &path(&pack), "--root", &path(&root)]);
    assert!(code(&o, 2).contains("campaign.pack"), "{}", stderr(&o));
    // A root file that is not a certificate: named with its PEM label.
    std::fs::write(&pack, b"not a pack").unwrap();
    std::fs::write(
        &root,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let o = cairn(&["audit", "verify", &path(&pack), "--root", &path(&root)]);
    let err = code(&o, 2);
    assert!(
        err.contains("root.pem") && err.contains("CERTIFICATE"),
        "{err}"
    );
    // Bytes that are not a pack: a verification failure (1) naming the pack, and the file as it was.
    std::fs::write(&root, [0x30, 0x03, 0x02, 0x01, 0x01]).unwrap();
    let o = cairn(&["audit", "verify", &path(&pack), "--root", &path(&root)]);
    let err = code(&o, 1);
    assert!(err.contains("pack: not an evidence pack"), "{err}");
    assert_eq!(std::fs::read(&pack).unwrap(), b"not a pack");
}
