//! The log's contract: appends are durable and ordered, proofs and checkpoints verify with the
//! device verifier, queries answer from the index, and bad input changes nothing.

#![expect(clippy::cast_possible_truncation, reason = "test indices are small")]

mod common;

use cairn_vault::{Error, MAX_ENTRY_LEN, Query, Vault};
use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::Kind;
use cairn_verifier::test_support::{self, public_key, test_key};
use cairn_verifier::types::{Hash, UnixTime};
use common::{ORIGIN, log_key, manifest, release_entry};

fn leaves(entries: &[Vec<u8>]) -> Vec<Hash> {
    entries.iter().map(|e| leaf_hash(&Software, e)).collect()
}

#[test]
fn appended_entries_prove_against_signed_checkpoints_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let mut all = vec![release_entry()];
    let mut sizes = Vec::new();
    {
        let vault = Vault::create(dir.path(), ORIGIN).unwrap();
        assert_eq!(vault.append(&all).unwrap(), 0..1);
        vault.sign_checkpoint(&key, &sk).unwrap();
        sizes.push(1);
        for (batch, n) in [300u64, 1, 255, 2000].into_iter().enumerate() {
            let start = all.len() as u64;
            let entries: Vec<Vec<u8>> = (start..start + n)
                .map(|i| manifest(i, "campaign-a", 1000 + batch as u64))
                .collect();
            assert_eq!(vault.append(&entries).unwrap(), start..start + n);
            all.extend(entries);
            let note = vault.sign_checkpoint(&key, &sk).unwrap();
            let cp = Checkpoint::parse(note.as_bytes()).unwrap();
            cp.verify(&key, &Software).unwrap();
            assert_eq!(cp.size.0, all.len() as u64);
            assert_eq!(cp.root, test_support::mth(&leaves(&all)));
            sizes.push(all.len() as u64);
        }
    }
    let vault = Vault::open_origin(dir.path(), ORIGIN).unwrap();
    assert_eq!(vault.size(), all.len() as u64);
    assert_eq!(vault.checkpoint_sizes().unwrap(), sizes);
    let hashes = leaves(&all);
    for &size in &sizes {
        let note = vault.checkpoint(size).unwrap().unwrap();
        let cp = Checkpoint::parse(note.as_bytes()).unwrap();
        for index in [0, size / 2, size - 1] {
            let p = vault.prove_inclusion(index, size).unwrap();
            assert_eq!(p.leaf_hash, hashes[index as usize]);
            assert_eq!(
                p.proof,
                test_support::inclusion_proof(&hashes[..size as usize], index as usize)
            );
            verify_inclusion(&p.leaf_hash, index, size, &p.proof, &cp.root).unwrap();
            assert_eq!(vault.entry(index).unwrap(), all[index as usize]);
        }
    }
    for (i, &old) in sizes.iter().enumerate() {
        for &new in &sizes[i..] {
            let p = vault.prove_consistency(old, new).unwrap();
            let (o, n) = (
                Checkpoint::parse(p.old.as_bytes()).unwrap(),
                Checkpoint::parse(p.new.as_bytes()).unwrap(),
            );
            verify_consistency(old, new, &p.proof, &o.root, &n.root).unwrap();
        }
    }
    // by hash
    assert_eq!(vault.find_leaf(&hashes[42]).unwrap(), vec![42]);
    assert!(vault.find_leaf(&[0; 32]).unwrap().is_empty());
}

#[test]
fn evidence_queries_come_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    vault.append(&[release_entry()]).unwrap();
    let a: Vec<Vec<u8>> = (1..=10).map(|i| manifest(i, "campaign-a", 2000)).collect();
    let b: Vec<Vec<u8>> = (11..=15).map(|i| manifest(i, "campaign-b", 3000)).collect();
    vault.append(&a).unwrap();
    vault.append(&b).unwrap();
    // device 3 again, in campaign b
    vault.append(&[manifest(3, "campaign-b", 4000)]).unwrap();

    assert_eq!(
        vault.query_indices(Query::Kind(Kind::RELEASE)).unwrap(),
        vec![0]
    );
    assert_eq!(
        vault.query_indices(Query::Kind(Kind::MANIFEST)).unwrap(),
        (1..=16).collect::<Vec<_>>()
    );
    assert_eq!(
        vault.query(Query::Campaign("campaign-a")).unwrap(),
        vec![1..11]
    );
    assert_eq!(
        vault.query_indices(Query::Campaign("campaign-b")).unwrap(),
        vec![11, 12, 13, 14, 15, 16]
    );
    assert_eq!(
        vault.query_indices(Query::Device("dev-0000003")).unwrap(),
        vec![3, 16]
    );
    assert_eq!(
        vault
            .query_indices(Query::Release("controller-fw-2.4.1"))
            .unwrap(),
        (0..=16).collect::<Vec<_>>()
    );
    assert_eq!(
        vault
            .query_indices(Query::Time {
                from: UnixTime(2500),
                to: UnixTime(3000)
            })
            .unwrap(),
        (11..=15).collect::<Vec<_>>()
    );
    assert_eq!(
        vault
            .query_indices(Query::Time {
                from: UnixTime(0),
                to: UnixTime(u64::MAX)
            })
            .unwrap(),
        (0..=16).collect::<Vec<_>>()
    );
    assert!(
        vault
            .query_indices(Query::Device("dev-9999999"))
            .unwrap()
            .is_empty()
    );
    // a cohort of one campaign in one batch is one run in the campaign dimension
    assert_eq!(vault.query(Query::Campaign("campaign-a")).unwrap().len(), 1);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    vault
        .append(&[release_entry(), manifest(1, "c", 1)])
        .unwrap();
    let note = vault.sign_checkpoint(&key, &sk).unwrap();
    let before = (vault.size(), vault.latest_checkpoint().unwrap());

    // oversized entry, in the middle of a batch
    let big = vec![0u8; MAX_ENTRY_LEN + 1];
    let err = vault.append(&[manifest(2, "c", 1), big]).unwrap_err();
    assert!(
        matches!(err, Error::EntryTooLarge { position: 1, len, max } if len == MAX_ENTRY_LEN + 1 && max == MAX_ENTRY_LEN),
        "{err}"
    );
    // unknown kind
    let mut unknown = manifest(3, "c", 1);
    unknown[4] = 0x09; // key 1 (kind) = 9
    let err = vault.append(&[unknown]).unwrap_err();
    assert!(matches!(err, Error::BadEntry { position: 0, .. }), "{err}");
    // garbage
    assert!(matches!(
        vault.append(&[b"not cbor".to_vec()]).unwrap_err(),
        Error::BadEntry { position: 0, .. }
    ));
    // the same release twice
    let err = vault
        .append(&[manifest(4, "c", 1), release_entry()])
        .unwrap_err();
    assert!(
        matches!(err, Error::DuplicateRelease { position: 1, .. }),
        "{err}"
    );
    // empty batch
    assert!(matches!(
        vault.append::<Vec<u8>>(&[]).unwrap_err(),
        Error::EmptyBatch
    ));
    // proofs beyond the tree, sizes beyond the log, sizes without a checkpoint
    assert!(matches!(
        vault.prove_inclusion(2, 2).unwrap_err(),
        Error::BeyondTree { index: 2, size: 2 }
    ));
    assert!(matches!(
        vault.at(3).unwrap_err(),
        Error::SizeBeyondLog {
            size: 3,
            log_size: 2
        }
    ));
    assert!(matches!(
        vault.prove_inclusion(0, 1).unwrap_err(),
        Error::NoCheckpoint { size: 1 }
    ));
    assert!(matches!(
        vault.at(2).unwrap().consistency_proof(0).unwrap_err(),
        Error::BadSizes { from: 0, to: 2 }
    ));
    // a checkpoint key of another origin, or another key for this origin
    let other = LogKey::new(
        "cairn.test/other",
        "cairn.test/other",
        public_key(&sk),
        &Software,
    )
    .unwrap();
    assert!(matches!(
        vault.sign_checkpoint(&other, &sk).unwrap_err(),
        Error::WrongOrigin { .. }
    ));
    let sk2 = test_key(8);
    let key2 = LogKey::new(ORIGIN, ORIGIN, public_key(&sk2), &Software).unwrap();
    assert!(vault.sign_checkpoint(&key2, &sk2).is_err());
    // a signer whose key is not the pinned one cannot produce a checkpoint that is stored
    assert!(matches!(
        vault.sign_checkpoint(&key, &sk2).unwrap_err(),
        Error::SignatureInvalid
    ));

    assert_eq!((vault.size(), vault.latest_checkpoint().unwrap()), before);
    assert_eq!(before.1.as_deref(), Some(note.as_str()));
    assert_eq!(vault.fsck(&mut |_, _| {}).unwrap().entries, 2);
    // opening with the wrong origin, or creating over an existing log
    drop(vault);
    assert!(matches!(
        Vault::open_origin(dir.path(), "cairn.test/other").unwrap_err(),
        Error::WrongOrigin { .. }
    ));
    assert!(matches!(
        Vault::create(dir.path(), ORIGIN).unwrap_err(),
        Error::AlreadyExists(_)
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Vault::open(empty.path()).unwrap_err(),
        Error::NotALog(_)
    ));
}

#[test]
fn retention_refuses_early_deletion_and_pruning_keeps_the_log_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    vault.append(&[release_entry()]).unwrap();
    vault
        .append(&(1..=5).map(|i| manifest(i, "c", 10)).collect::<Vec<_>>())
        .unwrap();
    vault.sign_checkpoint(&key, &sk).unwrap();
    let retention = vault.retention("controller-fw-2.4.1").unwrap().unwrap();
    assert_eq!(retention.release_index, 0);
    // the fixture's support period ends 2032-01-01; issued 2026-11 + 10 years is later
    assert!(retention.until.0 > 1_956_528_000);

    let err = vault
        .prune_release("controller-fw-2.4.1", UnixTime(retention.until.0 - 1))
        .unwrap_err();
    assert!(matches!(err, Error::RetentionActive { .. }), "{err}");
    assert_eq!(vault.entry(3).unwrap(), manifest(3, "c", 10));
    assert!(matches!(
        vault
            .prune_release("no-such-release", UnixTime(u64::MAX))
            .unwrap_err(),
        Error::UnknownRelease(_)
    ));

    assert_eq!(
        vault
            .prune_release("controller-fw-2.4.1", retention.until)
            .unwrap(),
        6
    );
    assert!(vault.pruned(3).unwrap());
    assert!(vault.entry(3).is_err());
    // proofs still verify: the leaf hashes stay in the tiles
    let p = vault.prove_inclusion(3, 6).unwrap();
    assert_eq!(p.leaf_hash, leaf_hash(&Software, &manifest(3, "c", 10)));
    let report = vault.fsck(&mut |_, _| {}).unwrap();
    assert_eq!((report.entries, report.pruned), (0, 6));
}

#[test]
fn fsck_passes_on_a_healthy_log() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    vault.sign_checkpoint(&key, &sk).unwrap(); // an empty-tree checkpoint
    vault.append(&[release_entry()]).unwrap();
    for b in 0..5u64 {
        vault
            .append(
                &(b * 20_000 + 1..=(b + 1) * 20_000)
                    .map(|i| manifest(i, "c", b))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        vault.sign_checkpoint(&key, &sk).unwrap();
    }
    let report = vault.fsck(&mut |_, _| {}).unwrap();
    assert_eq!(report.size, 100_001);
    assert_eq!(report.entries, 100_001);
    assert_eq!(report.checkpoints, 6);
    assert!(report.rs_merkle_tiles >= 390, "{report:?}");
    let _ = test_key(1);
}

#[test]
fn pipelined_batches_make_the_same_log_and_stop_at_the_first_bad_batch() {
    let batches: Vec<Vec<Vec<u8>>> = [1u64, 3000, 1, 700, 5000, 2]
        .iter()
        .scan(1u64, |next, &n| {
            let batch = (*next..*next + n)
                .map(|i| manifest(i, "campaign-p", *next))
                .collect();
            *next += n;
            Some(batch)
        })
        .collect();
    let sequential = tempfile::tempdir().unwrap();
    let pipelined = tempfile::tempdir().unwrap();
    let a = Vault::create(sequential.path(), ORIGIN).unwrap();
    let b = Vault::create(pipelined.path(), ORIGIN).unwrap();
    a.append(&[release_entry()]).unwrap();
    b.append(&[release_entry()]).unwrap();
    for batch in &batches {
        a.append(batch).unwrap();
    }
    let mut acks = Vec::new();
    let n = b.append_batches(batches.iter(), |r| acks.push(r)).unwrap();
    assert_eq!(n, 8704);
    let expected: Vec<_> = batches
        .iter()
        .scan(1u64, |s, b| {
            let r = *s..*s + b.len() as u64;
            *s = r.end;
            Some(r)
        })
        .collect();
    assert_eq!(acks, expected);
    assert_eq!(a.size(), b.size());
    assert_eq!(
        a.at(a.size()).unwrap().root().unwrap(),
        b.at(b.size()).unwrap().root().unwrap()
    );
    assert_eq!(
        a.query(Query::Device("dev-0004000")).unwrap(),
        b.query(Query::Device("dev-0004000")).unwrap()
    );
    assert_eq!(
        a.query(Query::Campaign("campaign-p")).unwrap().len(),
        b.query(Query::Campaign("campaign-p")).unwrap().len()
    );
    assert_eq!(b.entry(4321).unwrap(), manifest(4321, "campaign-p", 3703));
    b.fsck(&mut |_, _| {}).unwrap();

    // A bad entry in the third batch: the first two are acknowledged and kept, nothing after.
    let size = b.size();
    let mut bad = vec![manifest(90_000, "c", 1), manifest(90_001, "c", 1)];
    bad.push(b"not a statement".to_vec());
    let more = [
        vec![manifest(80_000, "c", 1)],
        vec![manifest(80_001, "c", 1)],
        bad,
        vec![manifest(80_002, "c", 1)],
    ];
    let mut acks = Vec::new();
    let err = b.append_batches(more.iter(), |r| acks.push(r)).unwrap_err();
    assert!(matches!(err, Error::BadEntry { position: 2, .. }), "{err}");
    assert_eq!(acks, vec![size..size + 1, size + 1..size + 2]);
    assert_eq!(b.size(), size + 2);
    // A release twice in batches in flight together is refused too.
    let size = b.size();
    let twice = [
        vec![release_entry_of("2.4.2")],
        vec![manifest(70_000, "c", 1)],
        vec![release_entry_of("2.4.2")],
    ];
    let err = b.append_batches(twice.iter(), |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::DuplicateRelease { position: 0, .. }),
        "{err}"
    );
    assert_eq!(b.size(), size + 2);
    b.fsck(&mut |_, _| {}).unwrap();
}

/// A release entry of the fixture's release under another version and id.
fn release_entry_of(version: &'static str) -> Vec<u8> {
    use cairn_verifier::statement::ReleaseEntry;
    use cairn_verifier::test_support::Fixture;
    let f = Fixture::new();
    let mut spec = f.spec();
    spec.release_id = match version {
        "2.4.2" => "controller-fw-2.4.2",
        other => panic!("no test release {other}"),
    };
    let parts = f.build(&spec);
    ReleaseEntry {
        cose_sign1: &parts.release,
    }
    .to_cbor()
}

#[test]
fn create_finishes_an_interrupted_create_and_needs_a_new_or_empty_directory() {
    let parent = tempfile::tempdir().unwrap();
    let path = parent.path().join("log");
    // What a crash inside `create` can leave: a RocksDB directory without a single key.
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        drop(rocksdb::DB::open(&opts, &path).unwrap());
    }
    assert!(matches!(Vault::open(&path).unwrap_err(), Error::NotALog(_)));
    let vault = Vault::create(&path, ORIGIN).unwrap();
    assert_eq!((vault.size(), vault.origin()), (0, ORIGIN));
    vault.append(&[release_entry()]).unwrap();
    drop(vault);
    // A log with content is never re-created.
    assert!(matches!(
        Vault::create(&path, ORIGIN).unwrap_err(),
        Error::AlreadyExists(_)
    ));
    assert_eq!(Vault::open(&path).unwrap().size(), 1);
    // A directory with other files is refused and left alone.
    let busy = parent.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), b"keep me").unwrap();
    let err = Vault::create(&busy, ORIGIN).unwrap_err();
    assert!(matches!(err, Error::NotEmpty(_)), "{err}");
    assert_eq!(std::fs::read(busy.join("notes.txt")).unwrap(), b"keep me");
    assert!(matches!(
        Vault::create(parent.path().join("x"), "").unwrap_err(),
        Error::WrongOrigin { .. }
    ));
}

#[test]
fn readers_prove_while_the_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    vault.append(&[release_entry()]).unwrap();
    vault.sign_checkpoint(&key, &sk).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let proved = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for b in 0..40u64 {
                let first = 1 + b * 500;
                vault
                    .append(
                        &(first..first + 500)
                            .map(|i| manifest(i, "c", b))
                            .collect::<Vec<_>>(),
                    )
                    .unwrap();
                vault.sign_checkpoint(&key, &sk).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        for reader in 0..2u64 {
            let (vault, done, proved, key) = (&vault, &done, &proved, &key);
            s.spawn(move || {
                let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ reader;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let size = *vault.checkpoint_sizes().unwrap().last().unwrap();
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let index = x % size;
                    let p = vault.prove_inclusion(index, size).unwrap();
                    let cp = Checkpoint::parse(p.checkpoint.as_bytes()).unwrap();
                    cp.verify(key, &Software).unwrap();
                    verify_inclusion(&p.leaf_hash, index, size, &p.proof, &cp.root).unwrap();
                    assert_eq!(
                        leaf_hash(&Software, &vault.entry(index).unwrap()),
                        p.leaf_hash
                    );
                    proved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert!(
        proved.into_inner() > 100,
        "the readers ran alongside the writer"
    );
    assert_eq!(vault.size(), 20_001);
    vault.fsck(&mut |_, _| {}).unwrap();
}
