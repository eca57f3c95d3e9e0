//! A size read from the store is a claim, not a budget (issue 20, item 6): a forged durable size
//! costs fsck what the stored entries weigh, and the check ends with an inconsistency that names
//! the first bundle the size needs and the store does not hold.

#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

mod common;

use cairn_vault::{Error, Vault};
use common::{ORIGIN, manifest};
use rocksdb::{DB, Options, WriteOptions};

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

/// 2^48 entries: before the fix, fsck reserved 8 bytes of leaf-hash prefix and 80 bytes of
/// fingerprints per claimed entry (about 24 PiB), which the allocator refuses, and the process
/// aborted.
const FORGED_SIZE: u64 = 1 << 48;

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

/// A real log of 300 entries whose durable size is then forged to [`FORGED_SIZE`], with just what
/// `Vault::open` checks at that size made to fit: the one tile of the tree's right edge (a node of
/// height 48: tile 6/0, width 1) and a full bundle holding the last entry.
fn forged_log() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    {
        let vault = Vault::create(dir.path(), ORIGIN).unwrap();
        let entries: Vec<Vec<u8>> = (0..300)
            .map(|i| manifest(i, "campaign-0", 1_800_000_000))
            .collect();
        vault.append(&entries).unwrap();
    }
    let db = DB::open_cf(&Options::default(), dir.path(), COLUMN_FAMILIES).unwrap();
    let meta = db.cf_handle("meta").unwrap();
    db.put_cf_opt(&meta, b"size", FORGED_SIZE.to_be_bytes(), &synced())
        .unwrap();
    let tiles = db.cf_handle("tiles").unwrap();
    let mut blob = 1u16.to_be_bytes().to_vec();
    blob.extend_from_slice(&[0x5a; 32]);
    db.put_cf_opt(&tiles, tile_key(6, 0), &blob, &synced())
        .unwrap();
    let entry = manifest(0, "campaign-0", 1_800_000_000);
    let mut bundle = Vec::new();
    for _ in 0..256 {
        bundle.extend_from_slice(&u16::try_from(entry.len()).unwrap().to_be_bytes());
        bundle.extend_from_slice(&entry);
    }
    let bundles = db.cf_handle("bundles").unwrap();
    db.put_cf_opt(
        &bundles,
        ((FORGED_SIZE - 1) / 256).to_be_bytes(),
        &bundle,
        &synced(),
    )
    .unwrap();
    dir
}

#[test]
fn a_forged_durable_size_ends_fsck_with_a_named_inconsistency() {
    let dir = forged_log();
    let vault = Vault::open(dir.path()).unwrap();
    assert_eq!(vault.size(), FORGED_SIZE);
    let err = vault.fsck(&mut |_, _| {}).unwrap_err();
    let Error::Inconsistent(found) = &err else {
        panic!("expected an fsck inconsistency, got {err}");
    };
    // Bundle 1 holds the log's real 44 last entries; the forged size needs it full.
    assert_eq!(
        (found.check, found.location.as_str()),
        ("entry bundle length", "entry bundle 1"),
        "{found}"
    );
    assert_eq!(found.expected, "256 entries");
    assert_eq!(found.found, "44 entries");
}
