//! Cross-check: `tools/tlog-verify`, a standalone Python script written from RFC 9162, C2SP
//! tlog-tiles, C2SP signed-note and docs/formats.md §2 (no cairn code; `openssl dgst` checks the
//! signature), verifies the vault's exports, full and incremental, and names the file when one byte
//! of a tile, an entry bundle or the checkpoint signature is flipped.
//!
//! Needs `python3` and `openssl` on the PATH. Without them the tests are skipped with a message,
//! unless `CI` is set: every machine cairn targets has both, so there their absence is a failure.

#![expect(clippy::cast_possible_truncation, reason = "test sizes are small")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_vault::Vault;
use common::{ORIGIN, log_key, manifest, release_entry};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/tlog-verify")
}

/// Whether python3 and openssl are there; panics without them when `CI` is set.
fn tools_present() -> bool {
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = [("python3", "--version"), ("openssl", "version")]
        .into_iter()
        .filter(|(cmd, arg)| !runs(cmd, arg))
        .map(|(cmd, _)| cmd)
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tools/tlog-verify needs {} (CI is set, so this is a failure)",
        missing.join(" and ")
    );
    eprintln!(
        "SKIPPED: tools/tlog-verify needs {}, which is not installed",
        missing.join(" and ")
    );
    false
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The log key as a PEM SubjectPublicKeyInfo file.
fn write_pem(path: &Path, spki: &[u8]) {
    let b64 = base64(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    std::fs::write(path, pem).expect("write the PEM");
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new("python3")
        .arg(script())
        .arg(dir)
        .args(args)
        .output()
        .expect("run python3 tools/tlog-verify")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verifies(dir: &Path, pem: &Path, size: u64) {
    let o = run(dir, &["--key", pem.to_str().expect("a UTF-8 path")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("OK: {ORIGIN} size {size} ")), "{out}");
}

/// Runs the script on `dir` and expects exit 1 with `file` named in the message.
fn fails_naming(dir: &Path, pem: &Path, file: &str) -> String {
    let o = run(dir, &["--key", pem.to_str().expect("a UTF-8 path")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains(&format!("FAILED: {file}:")),
        "expected {file} named: {err}"
    );
    err
}

/// Flips one bit of byte `at` of `dir/file`, runs the script, restores the file.
fn flipped_fails(dir: &Path, pem: &Path, file: &str, at: usize) -> String {
    let path = dir.join(file);
    let good = std::fs::read(&path).expect("read the file");
    let mut bad = good.clone();
    bad[at] ^= 0x04;
    std::fs::write(&path, &bad).expect("alter the file");
    let err = fails_naming(dir, pem, file);
    std::fs::write(&path, &good).expect("restore the file");
    err
}

struct Log {
    _db: tempfile::TempDir,
    vault: Vault,
    next: u64,
}

impl Log {
    fn new() -> Self {
        let db = tempfile::tempdir().expect("a temporary directory");
        let vault = Vault::create(db.path(), ORIGIN).expect("create");
        vault.append(&[release_entry()]).expect("append");
        Self {
            _db: db,
            vault,
            next: 1,
        }
    }

    /// Appends up to `size` in batches of at most 20,000 and signs a checkpoint.
    fn grow_to(&mut self, size: u64) {
        let (sk, key) = log_key();
        while self.next < size {
            let end = size.min(self.next + 20_000);
            let batch: Vec<Vec<u8>> = (self.next..end)
                .map(|i| manifest(i, "campaign-t", 5_000 + i / 1000))
                .collect();
            self.vault.append(&batch).expect("append");
            self.next = end;
        }
        self.vault
            .sign_checkpoint(&key, &sk)
            .expect("sign a checkpoint");
    }

    fn pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("log.pub.pem");
        write_pem(
            &path,
            &self
                .vault
                .log_key()
                .expect("read the key")
                .expect("a pinned key")
                .spki_der(),
        );
        path
    }
}

#[test]
fn tlog_verify_accepts_full_and_incremental_exports() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut log = Log::new();
    log.grow_to(1_000);
    let pem = log.pem(work.path());
    let incremental = work.path().join("incremental");

    // 1,000: partial tiles at levels 0 (232 wide) and 1 (3 wide).
    let report = log.vault.export(&incremental, &mut |_, _| {}).unwrap();
    assert_eq!((report.from_size, report.to_size), (0, 1_000));
    verifies(&incremental, &pem, 1_000);
    assert!(incremental.join("tile/0/003.p/232").exists());
    assert!(incremental.join("tile/1/000.p/3").exists());

    // 65,536 = 256²: no partial tile at level 0 or 1, one full level-1 tile, level 2 one wide.
    log.grow_to(65_536);
    let report = log.vault.export(&incremental, &mut |_, _| {}).unwrap();
    assert_eq!((report.from_size, report.to_size), (1_000, 65_536));
    verifies(&incremental, &pem, 65_536);
    assert!(incremental.join("tile/1/000").exists());
    assert!(incremental.join("tile/2/000.p/1").exists());
    assert!(!incremental.join("tile/0/256.p").exists());

    // 70,001: partial tiles at levels 0, 1 and 2; earlier partial files are still there.
    log.grow_to(70_001);
    log.vault.export(&incremental, &mut |_, _| {}).unwrap();
    verifies(&incremental, &pem, 70_001);
    for leftover in [
        "tile/0/003.p/232",
        "tile/entries/003.p/232",
        "tile/1/000.p/3",
    ] {
        assert!(incremental.join(leftover).exists(), "{leftover}");
    }
    let o = run(&incremental, &["--key", pem.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("(3 earlier partial files are prefixes)"),
        "{}",
        text(&o)
    );

    // The same log exported in one go, and an export that is a multiple of 256 but not of 65,536.
    let full = work.path().join("full");
    log.vault.export(&full, &mut |_, _| {}).unwrap();
    verifies(&full, &pem, 70_001);
    assert!(full.join("tile/0/273.p/113").exists());
    assert!(full.join("tile/1/001.p/17").exists());
    assert!(full.join("tile/2/000.p/1").exists());
    log.grow_to(70_400);
    let o = run(&full, &["--key", pem.to_str().unwrap(), "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(o.stdout.is_empty());
    log.vault.export(&full, &mut |_, _| {}).unwrap();
    verifies(&full, &pem, 70_400);
    assert!(!full.join("tile/0/274.p").exists());
    assert!(full.join("tile/0/274").exists());
    assert!(full.join("tile/entries/274").exists());
}

#[test]
fn tlog_verify_accepts_an_empty_log() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("db");
    let vault = Vault::create(&db, ORIGIN).unwrap();
    let (sk, key) = log_key();
    vault.sign_checkpoint(&key, &sk).unwrap();
    let dir = work.path().join("export");
    vault.export(&dir, &mut |_, _| {}).unwrap();
    let pem = work.path().join("log.pub.pem");
    write_pem(&pem, &key.public.spki_der());
    verifies(&dir, &pem, 0);
}

/// A log exported at 700 entries, then incrementally at `size`, and the key's PEM.
fn exported(work: &Path, size: u64) -> (Log, PathBuf, PathBuf) {
    let mut log = Log::new();
    log.grow_to(700);
    let pem = log.pem(work);
    let dir = work.join("export");
    log.vault.export(&dir, &mut |_, _| {}).expect("export");
    log.grow_to(size);
    log.vault.export(&dir, &mut |_, _| {}).expect("export");
    verifies(&dir, &pem, size);
    (log, dir, pem)
}

#[test]
fn tlog_verify_names_the_tile_or_bundle_that_was_tampered_with() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (_log, dir, pem) = exported(work.path(), 66_000);

    let mut cases = 0;
    // Tiles: a full and a partial one at level 0, a full and a partial one at level 1, level 2.
    for file in [
        "tile/0/000",
        "tile/0/100",
        "tile/0/257.p/208",
        "tile/1/000",
        "tile/1/001.p/1",
        "tile/2/000.p/1",
    ] {
        let len = std::fs::metadata(dir.join(file)).unwrap().len() as usize;
        for at in [0, len / 2, len - 1] {
            let err = flipped_fails(&dir, &pem, file, at);
            assert!(err.contains(&format!("hash {} differs", at / 32)), "{err}");
            cases += 1;
        }
    }
    // A partial tile left by the first export, which must be a prefix of the current tile.
    flipped_fails(&dir, &pem, "tile/0/002.p/188", 100);
    cases += 1;
    // Entry bundles: a byte of an entry (its leaf hash no longer matches the level-0 tile, which
    // the checkpoint authenticates, so the bundle is named), and a length prefix (the bundle no
    // longer parses).
    for file in ["tile/entries/000", "tile/entries/257.p/208"] {
        let err = flipped_fails(&dir, &pem, file, 2 + 40);
        assert!(err.contains("entry 0 (log index "), "{err}");
        let err = flipped_fails(&dir, &pem, file, 1);
        assert!(
            ["entries, expected", "claims", "stray byte"]
                .iter()
                .any(|m| err.contains(m)),
            "{err}"
        );
        cases += 2;
    }
    // A partial bundle left by the first export.
    flipped_fails(&dir, &pem, "tile/entries/002.p/188", 50);
    cases += 1;
    // A missing tile or bundle.
    let moved = work.path().join("moved");
    for file in ["tile/0/042", "tile/entries/257.p/208"] {
        std::fs::rename(dir.join(file), &moved).unwrap();
        let err = fails_naming(&dir, &pem, file);
        assert!(err.contains("missing"), "{err}");
        std::fs::rename(&moved, dir.join(file)).unwrap();
        cases += 1;
    }
    verifies(&dir, &pem, 66_000);
    eprintln!("tlog-verify rejected {cases} altered tiles and bundles, each naming the file");
}

#[test]
fn tlog_verify_checks_the_checkpoint_signature_and_its_key() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (_log, dir, pem) = exported(work.path(), 1_000);

    // The checkpoint: one base64 character of the signature changed (a byte of the DER
    // signature), of the key id, and of the root in the text.
    let path = dir.join("checkpoint");
    let good = std::fs::read_to_string(&path).unwrap();
    let sig_start = good.rfind(' ').unwrap() + 1;
    for (at, what) in [
        (sig_start + 24, "does not verify"),
        (sig_start + 2, "no signature by key"),
        (good.find('\n').unwrap() + 8, "does not verify"),
    ] {
        let mut bad = good.clone().into_bytes();
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        std::fs::write(&path, &bad).unwrap();
        let err = fails_naming(&dir, &pem, "checkpoint");
        assert!(err.contains(what), "{err}");
    }
    // A cosignature by another key (a witness, say) is ignored, as C2SP signed-note requires.
    let witness = format!("\u{2014} witness.example {}\n", base64(&[7u8; 72]));
    std::fs::write(&path, format!("{good}{witness}")).unwrap();
    verifies(&dir, &pem, 1_000);
    std::fs::write(&path, &good).unwrap();
    verifies(&dir, &pem, 1_000);

    // Another key.
    let other = work.path().join("other.pem");
    write_pem(
        &other,
        &cairn_verifier::test_support::public_key(&cairn_verifier::test_support::test_key(8))
            .spki_der(),
    );
    let err = fails_naming(&dir, &other, "checkpoint");
    assert!(err.contains("no signature by key"), "{err}");
    // An origin other than the one required.
    let o = run(
        &dir,
        &["--key", pem.to_str().unwrap(), "--origin", "cairn.test/x"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = run(&dir, &["--key", pem.to_str().unwrap(), "--origin", ORIGIN]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Usage and I/O errors exit 2.
    for args in [
        vec![],
        vec!["--key", "/nonexistent/key.pem"],
        vec!["--key", pem.to_str().unwrap(), "--bogus"],
    ] {
        let o = run(&dir, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    let o = run(
        &work.path().join("nothing"),
        &["--key", pem.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(work.path(), &["--key", pem.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "no checkpoint: {}", text(&o));
}
