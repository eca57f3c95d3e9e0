//! Corruption is found, named, and never turned into a wrong proof.
//!
//! Every case damages a healthy log (or its export) in one place and checks that the damage is
//! reported with what an auditor needs to find it (the SST file, the tile, the entry index, the
//! checkpoint, the exported file), and that `prove_inclusion` either refuses or returns a proof
//! that verifies against the original signed root with the original leaf hash: storage damage can
//! make the vault stop, never lie.

#![expect(clippy::cast_possible_truncation, reason = "test indices are small")]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a panic is a failed test"
)]

mod common;

use std::path::{Path, PathBuf};

use cairn_vault::{Error, Inconsistency, Vault, verify_export};
use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::{leaf_hash, verify_inclusion};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::test_support::public_key;
use cairn_verifier::types::Hash;
use common::{ORIGIN, log_key, manifest, release_entry};
use rocksdb::{DB, ErrorKind, Options, WriteOptions};

/// The vault's column families (docs/log.md "Storage layout").
const COLUMN_FAMILIES: [&str; 7] = [
    "meta",
    "bundles",
    "tiles",
    "leaves",
    "evidence",
    "checkpoints",
    "retention",
];

/// A healthy log and what it should contain.
struct Log {
    dir: tempfile::TempDir,
    entries: Vec<Vec<u8>>,
    /// Signed checkpoints (size, note) in order; the last is of the whole log.
    checkpoints: Vec<(u64, String)>,
}

impl Log {
    fn size(&self) -> u64 {
        self.entries.len() as u64
    }

    fn hashes(&self) -> Vec<Hash> {
        self.entries
            .iter()
            .map(|e| leaf_hash(&Software, e))
            .collect()
    }

    fn root(&self) -> Hash {
        let (_, note) = self.checkpoints.last().unwrap();
        Checkpoint::parse(note.as_bytes()).unwrap().root
    }

    /// A copy of the log directory to damage.
    fn copy(&self) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for file in std::fs::read_dir(self.dir.path()).unwrap() {
            let file = file.unwrap();
            if file.file_type().unwrap().is_file() {
                std::fs::copy(file.path(), copy.path().join(file.file_name())).unwrap();
            }
        }
        copy
    }

    /// The safety property, whatever the damage: every proof the vault still serves verifies
    /// against the original signed root with the original leaf hash, and every entry it still
    /// returns is the original.
    fn assert_never_lies(&self, vault: &Vault, what: &str) {
        let size = self.size();
        let (root, hashes) = (self.root(), self.hashes());
        for index in [0, 1, 5, 255, 256, size / 2, size - 1] {
            if let Ok(p) = vault.prove_inclusion(index, size) {
                assert_eq!(p.leaf_hash, hashes[index as usize], "{what}: leaf {index}");
                verify_inclusion(&hashes[index as usize], index, size, &p.proof, &root)
                    .unwrap_or_else(|e| panic!("{what}: served a bad proof for {index}: {e}"));
            }
            if let Ok(entry) = vault.entry(index) {
                assert_eq!(entry, self.entries[index as usize], "{what}: entry {index}");
            }
        }
    }
}

/// Appends `n` entries in batches of `batch`, signing a checkpoint after each batch.
fn build(n: u64, batch: u64) -> (Log, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    let entries: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            if i == 0 {
                release_entry()
            } else {
                manifest(i, &format!("campaign-{}", i / 700), 1_800_000_000 + i / 50)
            }
        })
        .collect();
    let mut checkpoints = Vec::new();
    for chunk in entries.chunks(batch as usize) {
        vault.append(chunk).unwrap();
        let note = vault.sign_checkpoint(&key, &sk).unwrap();
        checkpoints.push((vault.size(), note));
    }
    let log = Log {
        dir,
        entries,
        checkpoints,
    };
    (log, vault)
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn inconsistency(err: &Error) -> &Inconsistency {
    match err {
        Error::Inconsistent(i) => i,
        other => panic!("expected an fsck inconsistency, got {other}"),
    }
}

fn fsck(vault: &Vault) -> Result<cairn_vault::FsckReport, Error> {
    vault.fsck(&mut |_, _| {})
}

/// RocksDB opened directly, under the vault, as an attacker with file access (or a bug) would.
fn raw_db(dir: &Path) -> DB {
    DB::open_cf(&Options::default(), dir, COLUMN_FAMILIES).unwrap()
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn tile_key(level: u8, index: u64) -> Vec<u8> {
    let mut k = vec![level];
    k.extend_from_slice(&index.to_be_bytes());
    k
}

// ---------------------------------------------------------------------------------------------
// RocksDB's own files

/// Where in a table to flip a byte.
type Offset<'a> = &'a dyn Fn(&Table) -> u64;

/// One SST file of one column family, with where its blocks are.
#[derive(Debug)]
struct Table {
    cf: String,
    path: PathBuf,
    len: u64,
    /// Data blocks are `0..data_end`; the index block follows (no filter block is configured).
    data_end: u64,
    index_len: u64,
}

/// The SST files of a flushed log: one per column family, located through RocksDB's properties.
fn tables(dir: &Path) -> Vec<Table> {
    let db = DB::open_cf_for_read_only(&Options::default(), dir, COLUMN_FAMILIES, false).unwrap();
    let files = db.live_files().unwrap();
    let mut tables = Vec::new();
    for cf in COLUMN_FAMILIES {
        let mine: Vec<_> = files
            .iter()
            .filter(|f| f.column_family_name == cf)
            .collect();
        if mine.is_empty() {
            continue;
        }
        assert_eq!(mine.len(), 1, "one flush, one table per column family");
        let props = db
            .property_value_cf(
                &db.cf_handle(cf).unwrap(),
                "rocksdb.aggregated-table-properties",
            )
            .unwrap()
            .unwrap();
        let number = |name: &str| -> u64 {
            let at = props
                .find(name)
                .unwrap_or_else(|| panic!("{name} in {props}"));
            let rest = &props[at..];
            let rest = &rest[rest.find('=').unwrap() + 1..];
            rest[..rest.find(';').unwrap_or(rest.len())]
                .trim()
                .parse()
                .unwrap()
        };
        assert_eq!(number("filter block size"), 0, "{props}");
        tables.push(Table {
            cf: cf.into(),
            path: dir.join(mine[0].name.trim_start_matches('/')),
            len: mine[0].size as u64,
            data_end: number("data block size"),
            index_len: number("index block size"),
        });
    }
    tables
}

/// Flips one byte of the table of `cf` in a copy of the log; returns who noticed ("open" or
/// "fsck") and the error, or `None` if nothing did.
fn damage_table(
    log: &Log,
    cf: &str,
    offset: impl Fn(&Table) -> u64,
    what: &str,
) -> Option<(&'static str, String)> {
    let copy = log.copy();
    let table = tables(copy.path())
        .into_iter()
        .find(|t| t.cf == cf)
        .unwrap();
    let at = offset(&table);
    let context = format!(
        "{what} ({cf} {}, byte {at} of {})",
        table.path.display(),
        table.len
    );
    flip(&table.path, at);
    let file = table.path.file_name().unwrap().to_str().unwrap().to_owned();
    let vault = match Vault::open(copy.path()) {
        Err(e) => {
            assert_storage_corruption(&e, &file, &context);
            return Some(("open", e.to_string()));
        }
        Ok(vault) => vault,
    };
    log.assert_never_lies(&vault, &context);
    match fsck(&vault) {
        Err(e) => {
            assert_storage_corruption(&e, &file, &context);
            Some(("fsck", e.to_string()))
        }
        Ok(_) => None,
    }
}

/// A checksum error from RocksDB that names the damaged file.
fn assert_storage_corruption(err: &Error, file: &str, context: &str) {
    match err {
        Error::Storage(e) => {
            assert_eq!(e.kind(), ErrorKind::Corruption, "{context}: {e}");
            assert!(
                e.to_string().contains(file),
                "{context}: {e} does not name {file}"
            );
        }
        other => panic!("{context}: expected a storage corruption error, got {other}"),
    }
}

#[test]
fn a_flipped_byte_in_an_sst_file_is_a_checksum_error_naming_the_file() {
    let (log, vault) = build(3000, 500);
    vault.flush().unwrap();
    drop(vault);
    let found = tables(log.dir.path());
    for cf in ["bundles", "tiles", "leaves", "checkpoints", "meta"] {
        assert!(
            found.iter().any(|t| t.cf == cf),
            "{cf} has a table: {found:?}"
        );
    }

    let mut report = Vec::new();
    for cf in [
        "bundles",
        "tiles",
        "leaves",
        "evidence",
        "checkpoints",
        "meta",
    ] {
        let cases: [(&str, Offset<'_>); 4] = [
            ("first data block", &|_| 20),
            ("middle data block", &|t| t.data_end / 2),
            ("index block", &|t| t.data_end + t.index_len / 2),
            ("last byte (footer magic)", &|t| t.len - 1),
        ];
        for (what, offset) in cases {
            // Every block is checksummed: a flip is always found, by `open` (which reads the index,
            // properties and meta-index blocks of every table, and the meta, tiles and last entry
            // it needs) or by `fsck`, which reads every entry, tile, leaf record, run and checkpoint.
            let (by, err) = damage_table(&log, cf, offset, what)
                .unwrap_or_else(|| panic!("{cf} {what}: the damage went unnoticed"));
            report.push(format!("{cf} {what}: found by {by}: {err}"));
        }
    }
    // And a sweep through the two tables proofs are made of: wherever the byte is, it is found.
    for cf in ["bundles", "tiles"] {
        for k in 1..24 {
            let what = format!("byte {k}/24 of the file");
            let (by, _) = damage_table(&log, cf, |t| t.len * k / 24, &what)
                .unwrap_or_else(|| panic!("{cf} {what}: the damage went unnoticed"));
            report.push(format!("{cf} {what}: found by {by}"));
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn a_torn_wal_tail_loses_only_the_torn_write_and_a_flipped_byte_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    let wal = || -> PathBuf {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        logs.pop().unwrap()
    };
    let wal_len = || std::fs::metadata(wal()).unwrap().len();
    // (write, WAL length when it returned, log size after it)
    let mut writes = vec![("create", wal_len(), 0u64)];
    let mut entries = vec![release_entry()];
    entries.extend((1..400).map(|i| manifest(i, "c", 10 + i / 100)));
    for (name, range) in [("batch 1", 0..100), ("batch 2", 100..250)] {
        vault.append(&entries[range]).unwrap();
        writes.push((name, wal_len(), vault.size()));
    }
    vault.sign_checkpoint(&key, &sk).unwrap();
    writes.push(("checkpoint 250", wal_len(), vault.size()));
    vault.append(&entries[250..400]).unwrap();
    writes.push(("batch 3", wal_len(), vault.size()));
    let wal_path = wal();
    drop(vault);
    assert!(
        !std::fs::read_dir(dir.path()).unwrap().any(|f| f
            .unwrap()
            .path()
            .extension()
            .is_some_and(|e| e == "sst")),
        "everything is still in the WAL"
    );
    let copy = |damage: &dyn Fn(&Path)| -> (tempfile::TempDir, Result<Vault, Error>) {
        let copy = tempfile::tempdir().unwrap();
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), copy.path().join(file.file_name())).unwrap();
        }
        damage(&copy.path().join(wal_path.file_name().unwrap()));
        let opened = Vault::open(copy.path());
        (copy, opened)
    };

    // A torn tail: the WAL cut inside the record of each write, from the last to the first.
    // Recovery keeps every write whose record is complete and drops the torn one whole; a crash
    // can only tear a write whose sync had not returned, so nothing acknowledged is lost.
    for pair in writes.windows(2).rev() {
        let ((_, before, size_before), (name, after, _)) = (pair[0], pair[1]);
        for cut in [before + 1, before.midpoint(after), after - 1] {
            let (_dir, opened) = copy(&|wal| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(wal)
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
            });
            let vault = opened.unwrap_or_else(|e| panic!("WAL torn in {name} at {cut}: {e}"));
            assert_eq!(vault.size(), size_before, "WAL torn in {name} at {cut}");
            let report = fsck(&vault).unwrap();
            assert_eq!(report.entries, size_before);
            let checkpoint_durable = name == "batch 3";
            assert_eq!(
                vault.checkpoint(250).unwrap().is_some(),
                checkpoint_durable,
                "WAL torn in {name}"
            );
            for i in [0, size_before / 2, size_before.saturating_sub(1)] {
                if i < size_before {
                    assert_eq!(vault.entry(i).unwrap(), entries[i as usize]);
                }
            }
        }
    }

    // A flipped byte inside any write, the last one included: not a torn tail but corruption,
    // which recovery refuses instead of replaying the log with a hole or a changed byte.
    for pair in writes.windows(2) {
        let ((_, before, _), (name, after, _)) = (pair[0], pair[1]);
        for at in [before + 7, before.midpoint(after), after - 1] {
            let (copy, opened) = copy(&|wal| flip(wal, at));
            let err = opened.expect_err(&format!("WAL byte {at} in {name} flipped"));
            match &err {
                Error::Storage(e) => assert_eq!(e.kind(), ErrorKind::Corruption, "{name}: {e}"),
                other => panic!("{name}: expected a storage corruption error, got {other}"),
            }
            // RocksDB's error does not name the file; its info log in the directory does.
            let info = std::fs::read_to_string(copy.path().join("LOG")).unwrap();
            let wal_name = wal_path.file_name().unwrap().to_str().unwrap();
            let line = info
                .lines()
                .find(|l| l.contains(wal_name) && l.contains("Corruption"))
                .unwrap_or_else(|| panic!("{name}: the info log does not name {wal_name}"));
            println!(
                "WAL byte {at} in {name} flipped: {err}; LOG: {}",
                line.rsplit("] ").next().unwrap()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The vault's own records, changed through RocksDB (which then has nothing to complain about)

#[test]
fn a_tampered_tile_is_named_by_fsck_and_no_proof_through_it_is_served() {
    let (log, vault) = build(1000, 1000);
    drop(vault);
    let hashes = log.hashes();
    let size = log.size();

    // Leaf hash 5 in tile 0/0 (row 0), then the node of height 2 over leaves 4..8 (row 2).
    for (row, position, through, unaffected) in
        [(0u32, 5usize, [4u64, 5], 700u64), (2, 1, [0, 3], 300)]
    {
        let copy = log.copy();
        let (original, tampered) = {
            let db = raw_db(copy.path());
            let tiles = db.cf_handle("tiles").unwrap();
            let mut blob = db.get_cf(&tiles, tile_key(0, 0)).unwrap().unwrap();
            // blob = width (u16) ‖ row 0 (width hashes) ‖ row 1 (width/2) ‖ …
            let width = usize::from(u16::from_be_bytes([blob[0], blob[1]]));
            assert_eq!(width, 256);
            let row_start: usize = (0..row).map(|r| width >> r).sum();
            let at = 2 + 32 * (row_start + position);
            let original = hex::encode(&blob[at..at + 32]);
            blob[at + 17] ^= 0x01;
            let tampered = hex::encode(&blob[at..at + 32]);
            db.put_cf_opt(&tiles, tile_key(0, 0), &blob, &synced())
                .unwrap();
            (original, tampered)
        };
        let vault = Vault::open(copy.path()).unwrap();
        let err = fsck(&vault).unwrap_err();
        let found = inconsistency(&err);
        assert_eq!(found.check, "tile hash", "{found}");
        let entry = if row == 0 {
            format!(" (entry {position})")
        } else {
            String::new()
        };
        assert_eq!(
            found.location,
            format!("tile 0/0 row {row} position {position}{entry}")
        );
        assert_eq!((&found.expected, &found.found), (&original, &tampered));
        println!("tile 0/0 row {row} position {position} tampered: {err}");

        for index in through {
            match vault.prove_inclusion(index, size) {
                Err(Error::ProofSelfCheck { size: s, .. }) => assert_eq!(s, size),
                other => panic!("proof of {index} through a tampered node: {other:?}"),
            }
        }
        // A leaf whose proof does not use the damaged node is still proved, correctly.
        let p = vault.prove_inclusion(unaffected, size).unwrap();
        verify_inclusion(
            &hashes[unaffected as usize],
            unaffected,
            size,
            &p.proof,
            &log.root(),
        )
        .unwrap();
        log.assert_never_lies(&vault, &format!("tile 0/0 row {row} tampered"));
    }
}

#[test]
fn a_tampered_entry_is_named_by_fsck_at_its_index() {
    let (log, vault) = build(600, 300);
    drop(vault);
    let replacement = manifest(7, "campaign-forged", 1);
    let forged_hash = leaf_hash(&Software, &replacement);

    // Entry 7 replaced inside its entry bundle (bundle 0), through RocksDB itself.
    let copy = log.copy();
    {
        let db = raw_db(copy.path());
        let bundles = db.cf_handle("bundles").unwrap();
        let stored = db.get_cf(&bundles, 0u64.to_be_bytes()).unwrap().unwrap();
        let mut rest = stored.as_slice();
        let mut rewritten = Vec::new();
        let mut i = 0;
        while let Some((len, tail)) = rest.split_first_chunk::<2>() {
            let len = usize::from(u16::from_be_bytes(*len));
            let entry = if i == 7 {
                replacement.as_slice()
            } else {
                &tail[..len]
            };
            rewritten.extend_from_slice(&u16::try_from(entry.len()).unwrap().to_be_bytes());
            rewritten.extend_from_slice(entry);
            rest = &tail[len..];
            i += 1;
        }
        db.put_cf_opt(&bundles, 0u64.to_be_bytes(), &rewritten, &synced())
            .unwrap();
    }
    let vault = Vault::open(copy.path()).unwrap();
    let err = fsck(&vault).unwrap_err();
    let found = inconsistency(&err);
    // The tile rebuilt from the entries differs from the stored one at leaf 7.
    assert_eq!(
        (found.check, found.location.as_str()),
        ("tile hash", "tile 0/0 row 0 position 7 (entry 7)"),
        "{found}"
    );
    assert_eq!(found.expected, hex::encode(forged_hash));
    assert_eq!(found.found, hex::encode(log.hashes()[7]));
    println!("entry 7 replaced: {err}");
    // The forged entry is never served as evidence: `entry` checks it against the tiles.
    let err = vault.entry(7).unwrap_err();
    assert!(
        err.to_string()
            .contains("entry 7 does not hash to its leaf hash"),
        "{err}"
    );
    assert_eq!(vault.entry(6).unwrap(), log.entries[6]);
    // The proof is still the original entry's.
    assert_eq!(
        vault.prove_inclusion(7, log.size()).unwrap().leaf_hash,
        log.hashes()[7]
    );
    log.assert_never_lies(&vault, "entry 7 forged");
}

#[test]
fn a_tampered_checkpoint_is_named_by_fsck() {
    let (log, vault) = build(600, 300);
    drop(vault);
    let size = log.size();
    let (_, note) = log.checkpoints.last().unwrap();

    // A signature byte: a base64 character in the middle of the signature changed to another.
    let signature = note.trim_end().rfind(' ').unwrap() + 1;
    let at = signature.midpoint(note.len());
    let mut forged = note.clone().into_bytes();
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    // The root: another valid root (the first checkpoint's), the signature left as it was.
    let root_line = |note: &str| note.split('\n').nth(2).unwrap().to_owned();
    let other = note.replacen(&root_line(note), &root_line(&log.checkpoints[0].1), 1);
    assert_ne!(&other, note);
    for (what, bytes) in [("signature", forged), ("root", other.into_bytes())] {
        let copy = log.copy();
        {
            let db = raw_db(copy.path());
            let checkpoints = db.cf_handle("checkpoints").unwrap();
            db.put_cf_opt(&checkpoints, size.to_be_bytes(), &bytes, &synced())
                .unwrap();
        }
        let vault = Vault::open(copy.path()).unwrap();
        let err = fsck(&vault).unwrap_err();
        let found = inconsistency(&err);
        assert_eq!(found.check, "checkpoint signature", "{what}: {found}");
        assert_eq!(found.location, format!("checkpoint {size}"));
        println!("checkpoint {size} {what} changed: {err}");
        if what == "root" {
            assert!(matches!(
                vault.prove_inclusion(3, size).unwrap_err(),
                Error::ProofSelfCheck { .. }
            ));
        }
        log.assert_never_lies(&vault, what);
    }
}

#[test]
fn a_signed_checkpoint_whose_kind_counts_contradict_the_log_is_named_by_fsck() {
    // The log key signed it, so only the entries can show the `cairn-kinds` line is false: a key
    // statement that is not there, or a line that does not parse (formats.md §2.1).
    let (log, vault) = build(600, 300);
    drop(vault);
    let size = log.size();
    let (sk, key) = log_key();
    let (_, note) = log.checkpoints.last().unwrap();
    let (text, _) = note.split_once("\n\n").unwrap();
    assert!(text.contains("\ncairn-kinds 5:0:- 11:0:-"), "{text}");
    for (what, line) in [
        (
            "a key statement that is not there",
            "cairn-kinds 5:1:3 11:0:-",
        ),
        ("a line that does not parse", "cairn-kinds 5:1"),
    ] {
        let forged = format!("{}\n", text.replacen("cairn-kinds 5:0:- 11:0:-", line, 1));
        let signed = cairn_verifier::note::write::sign(&forged, &key, &sk).unwrap();
        let copy = log.copy();
        {
            let db = raw_db(copy.path());
            let checkpoints = db.cf_handle("checkpoints").unwrap();
            db.put_cf_opt(
                &checkpoints,
                size.to_be_bytes(),
                signed.as_bytes(),
                &synced(),
            )
            .unwrap();
        }
        let vault = Vault::open(copy.path()).unwrap();
        let err = fsck(&vault).unwrap_err();
        let found = inconsistency(&err);
        assert_eq!(
            (found.check, found.location.as_str()),
            (
                "checkpoint kind counts",
                format!("checkpoint {size}").as_str()
            ),
            "{what}: {found}"
        );
        println!("checkpoint {size} with {what}: {err}");
    }
    // The healthy log passes.
    let copy = log.copy();
    let vault = Vault::open(copy.path()).unwrap();
    assert!(fsck(&vault).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The static export

/// A log of 700 entries and an export of it: tiles `0/000`, `0/001`, `0/002.p/188`, `1/000.p/2`;
/// bundles `000`, `001`, `002.p/188`.
struct Export {
    log: Log,
    vault: Vault,
    public: cairn_verifier::crypto::PublicKey,
}

impl Export {
    fn new() -> Self {
        let (log, vault) = build(700, 350);
        Self {
            log,
            vault,
            public: public_key(&log_key().0),
        }
    }

    /// A fresh export, to damage.
    fn fresh(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.vault.export(dir.path(), &mut |_, _| {}).unwrap();
        dir
    }

    fn verify(&self, dir: &Path) -> Result<cairn_vault::ExportCheck, Error> {
        verify_export(dir, &self.public, &mut |_, _| {})
    }
}

#[test]
fn a_flipped_byte_in_an_exported_tile_or_bundle_is_named_by_verify_export() {
    let export = Export::new();
    let clean = export.fresh();
    let check = export.verify(clean.path()).unwrap();
    assert_eq!(
        (check.size, check.root),
        (export.log.size(), export.log.root())
    );

    let cases: [(&str, u64); 6] = [
        ("tile/0/001", 32 * 9 + 3),
        ("tile/0/002.p/188", 100),
        ("tile/1/000.p/2", 40),
        ("tile/entries/000", 5000),
        ("tile/entries/002.p/188", 0), // a length prefix
        ("tile/entries/001", 20_000),
    ];
    for (rel, offset) in cases {
        let dir = export.fresh();
        flip(&dir.path().join(rel), offset);
        let err = export.verify(dir.path()).unwrap_err();
        let found = inconsistency(&err);
        assert_eq!(found.location, rel, "byte {offset} of {rel}: {err}");
        println!("byte {offset} of {rel} flipped: {err}");
    }

    // An entry changed in its bundle and its leaf hash in the level-0 tile to match: the two agree,
    // but the entries no longer rebuild the signed root (and the level-1 tile says so too).
    let dir = export.fresh();
    let entries = &export.log.entries;
    let forged = manifest(42, "campaign-9", 1_800_000_000);
    assert_eq!(forged.len(), entries[42].len());
    let bundle = dir.path().join("tile/entries/000");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = (0..42).map(|i| 2 + entries[i].len()).sum::<usize>() + 2;
    assert_eq!(&bytes[at..at + forged.len()], entries[42].as_slice());
    bytes[at..at + forged.len()].copy_from_slice(&forged);
    std::fs::write(&bundle, bytes).unwrap();
    let tile = dir.path().join("tile/0/000");
    let mut bytes = std::fs::read(&tile).unwrap();
    bytes[42 * 32..43 * 32].copy_from_slice(&leaf_hash(&Software, &forged));
    std::fs::write(&tile, bytes).unwrap();
    let err = export.verify(dir.path()).unwrap_err();
    let found = inconsistency(&err);
    assert_eq!(
        (found.check, found.location.as_str()),
        ("export root", "checkpoint"),
        "{err}"
    );
    println!("entry 42 and its tile hash forged together: {err}");
}

#[test]
fn a_changed_checkpoint_or_a_missing_file_is_named_by_verify_export() {
    let export = Export::new();
    // A base64 character of the signature or of the root, or the size, changed.
    for what in ["signature", "root", "size"] {
        let dir = export.fresh();
        let path = dir.path().join("checkpoint");
        let note = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = note.split('\n').collect();
        let changed = if what == "size" {
            note.replacen("\n700\n", "\n600\n", 1)
        } else {
            // The signature line follows the extension lines (the `cairn-kinds` counts).
            let signature = lines.iter().find(|l| l.starts_with('\u{2014}')).unwrap();
            let line = if what == "root" { lines[2] } else { signature };
            let mut forged = line.to_owned().into_bytes();
            let at = forged.len() / 2;
            forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
            note.replacen(line, std::str::from_utf8(&forged).unwrap(), 1)
        };
        assert_ne!(changed, note);
        std::fs::write(&path, &changed).unwrap();
        let err = export.verify(dir.path()).unwrap_err();
        assert!(
            matches!(err, Error::Checkpoint(_)),
            "checkpoint {what} changed: {err}"
        );
        println!("checkpoint {what} changed: {err}");
    }

    for rel in ["tile/0/000", "tile/1/000.p/2", "tile/entries/001"] {
        let dir = export.fresh();
        std::fs::remove_file(dir.path().join(rel)).unwrap();
        let err = export.verify(dir.path()).unwrap_err();
        assert_eq!(inconsistency(&err).location, rel, "{rel} deleted: {err}");
        println!("{rel} deleted: {err}");
    }
    let dir = export.fresh();
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let err = export.verify(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path.ends_with("checkpoint")),
        "{err}"
    );
    println!("checkpoint deleted: {err}");
}

#[test]
fn an_incremental_export_verifies() {
    let export = Export::new();
    let dir = export.fresh();
    export.verify(dir.path()).unwrap();
    let (sk, key) = log_key();
    let more: Vec<Vec<u8>> = (700..1100).map(|i| manifest(i, "c", 5)).collect();
    export.vault.append(&more).unwrap();
    export.vault.sign_checkpoint(&key, &sk).unwrap();
    let report = export.vault.export(dir.path(), &mut |_, _| {}).unwrap();
    assert_eq!((report.from_size, report.to_size), (700, 1100));
    let check = export.verify(dir.path()).unwrap();
    assert_eq!(check.size, 1100);
    assert_eq!(check.root, export.vault.at(1100).unwrap().root().unwrap());
    // and a byte flipped in a tile written by the increment is named
    flip(&dir.path().join("tile/0/003"), 77);
    let err = export.verify(dir.path()).unwrap_err();
    assert_eq!(inconsistency(&err).location, "tile/0/003", "{err}");
}
