//! Transfer bundles: exported from one log, imported into a mirror; verified in full before
//! anything is written, atomic, idempotent; every alteration, gap and fork refused.

#![expect(clippy::unwrap_used, reason = "helpers panic to fail the test")]

mod common;

use cairn_vault::{TransferBundle, Vault};
use cairn_verifier::delivery::Delivery;
use cairn_verifier::note::Checkpoint;
use common::{ORIGIN, log_key, manifest, release_entry};

/// A log with a release and `n` manifests, checkpointed; and an empty mirror.
fn logs(n: u64) -> (tempfile::TempDir, Vault, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let source = Vault::create(dir.path().join("source"), ORIGIN).unwrap();
    let mut entries = vec![release_entry()];
    entries.extend((1..=n).map(|i| manifest(i, "campaign-a", 1000)));
    source.append(&entries).unwrap();
    source.sign_checkpoint(&key, &sk).unwrap();
    let mirror = Vault::create(dir.path().join("mirror"), ORIGIN).unwrap();
    (dir, source, mirror)
}

fn grow(source: &Vault, from: u64, n: u64) {
    let (sk, key) = log_key();
    let entries: Vec<Vec<u8>> = (from..from + n)
        .map(|i| manifest(i, "campaign-b", 2000))
        .collect();
    source.append(&entries).unwrap();
    source.sign_checkpoint(&key, &sk).unwrap();
}

fn same_log(a: &Vault, b: &Vault) {
    assert_eq!(a.size(), b.size());
    assert_eq!(
        a.latest_checkpoint().unwrap(),
        b.latest_checkpoint().unwrap()
    );
    for i in 0..a.size() {
        assert_eq!(a.entry(i).unwrap(), b.entry(i).unwrap());
    }
}

#[test]
fn bundles_carry_a_log_to_a_mirror_incrementally_and_idempotently() {
    let (_dir, source, mirror) = logs(300);
    let (_, key) = log_key();

    let first = source.export_bundle(0).unwrap();
    assert_eq!((first.from, first.to()), (0, 301));
    let decoded = TransferBundle::decode(&first.to_cbor()).unwrap();
    assert_eq!(decoded, first);
    let report = mirror.import_bundle(&decoded, &key).unwrap();
    assert_eq!(report.appended, 0..301);
    assert_eq!(report.manifests, 300, "the deliveries the mirror can build");
    same_log(&source, &mirror);
    mirror.fsck(&mut |_, _| {}).unwrap();

    // Again: nothing changes.
    let report = mirror.import_bundle(&decoded, &key).unwrap();
    assert_eq!(report.appended, 301..301);
    assert_eq!(report.already_held, 301);
    same_log(&source, &mirror);

    // The next bundle starts at the mirror's checkpoint, with a consistency proof and left edge.
    grow(&source, 301, 1000);
    let second = source.export_bundle(301).unwrap();
    assert_eq!((second.from, second.to()), (301, 1301));
    assert!(!second.consistency.is_empty());
    assert_eq!(second.left_edge.len(), 301u64.count_ones() as usize);
    let report = mirror.import_bundle(&second, &key).unwrap();
    assert_eq!(report.appended, 301..1301);
    same_log(&source, &mirror);

    // A bundle overlapping what the mirror holds: the overlap is compared, the rest written.
    grow(&source, 1301, 10);
    let overlapping = source.export_bundle(301).unwrap();
    let report = mirror.import_bundle(&overlapping, &key).unwrap();
    assert_eq!((report.appended, report.already_held), (1301..1311, 1000));
    same_log(&source, &mirror);

    // The mirror builds each delivery from what it verified: against its latest checkpoint
    // (the source's), proving its manifest.
    let indices: Vec<u64> = (302..1302).step_by(37).collect();
    let built = mirror.deliveries(&indices).unwrap();
    assert_eq!(built, source.deliveries(&indices).unwrap());
    for ((_, d), index) in built.iter().zip(&indices) {
        let d = Delivery::decode(d).unwrap();
        assert_eq!(
            d.checkpoint,
            source.latest_checkpoint().unwrap().unwrap().as_bytes()
        );
        assert_eq!(d.leaf_index.0, *index);
        assert_eq!(d.manifest, source.entry(*index).unwrap());
    }
}

/// A bundle of format version 1 (it carried deliveries, key 7) is refused by name.
#[test]
fn a_version_1_bundle_is_refused_by_name() {
    let (_dir, source, _mirror) = logs(3);
    let v2 = source.export_bundle(0).unwrap().to_cbor();
    // A map of 7 fields, version 2 -> a map of 8, version 1, with an empty array under key 7.
    assert_eq!(&v2[..3], &[0xa7, 0x00, 0x02]);
    let mut v1 = vec![0xa8, 0x00, 0x01];
    v1.extend_from_slice(&v2[3..]);
    v1.extend_from_slice(&[0x07, 0x80]);
    let err = TransferBundle::decode(&v1).unwrap_err();
    assert!(
        err.to_string().contains("version 1 carried deliveries"),
        "{err}"
    );
}

/// Every alteration is refused and the mirror is left as it was.
#[test]
fn altered_incomplete_or_foreign_bundles_are_refused_and_change_nothing() {
    let (_dir, source, mirror) = logs(40);
    let (_, key) = log_key();
    let good = source.export_bundle(0).unwrap();

    let mut cases: Vec<(&str, TransferBundle, &str)> = Vec::new();
    let mut b = good.clone();
    b.entries[7][5] ^= 1;
    cases.push(("flipped entry byte", b, "entry 7"));
    let mut b = good.clone();
    b.entries.pop();
    cases.push(("missing last entry", b, "ends at"));
    let mut b = good.clone();
    b.entries.remove(3);
    b.entries.push(good.entries[3].clone());
    cases.push(("reordered entries", b, "do not hash"));
    let mut b = good.clone();
    b.checkpoint = b.checkpoint.replace("\n41\n", "\n40\n");
    cases.push(("checkpoint size edited", b, "checkpoint signature"));
    let mut b = good.clone();
    b.origin = "elsewhere.example/log".into();
    cases.push(("other origin", b, "elsewhere.example/log"));
    let mut b = good.clone();
    b.consistency.push([0; 32]);
    cases.push(("proof from size 0", b, "must be empty"));

    for (what, bundle, says) in cases {
        let err = mirror.import_bundle(&bundle, &key).unwrap_err();
        assert!(err.to_string().contains(says), "{what}: {err}");
        assert_eq!(mirror.size(), 0, "{what}: something was written");
        assert!(mirror.checkpoint_sizes().unwrap().is_empty());
    }

    // A bundle signed by another key.
    let other = cairn_verifier::test_support::test_key(99);
    let other_key = cairn_verifier::note::LogKey::new(
        ORIGIN,
        ORIGIN,
        cairn_verifier::test_support::public_key(&other),
        &cairn_verifier::crypto::Software,
    )
    .unwrap();
    let err = mirror.import_bundle(&good, &other_key).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");

    // Bytes that are not a bundle, or a truncated one, name the field.
    let bytes = good.to_cbor();
    let err = TransferBundle::decode(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(err.to_string().contains("input ends early"), "{err}");
    assert!(TransferBundle::decode(b"not cbor").is_err());

    // A gap: the second bundle before the first.
    mirror.import_bundle(&good, &key).unwrap();
    grow(&source, 41, 5);
    let second = source.export_bundle(41).unwrap();
    grow(&source, 46, 5);
    let third = source.export_bundle(46).unwrap();
    let err = mirror.import_bundle(&third, &key).unwrap_err();
    assert!(
        err.to_string().contains("an earlier bundle is missing"),
        "{err}"
    );
    assert_eq!(mirror.size(), 41);
    mirror.import_bundle(&second, &key).unwrap();
    mirror.import_bundle(&third, &key).unwrap();
    same_log(&source, &mirror);
}

#[test]
fn a_forked_mirror_refuses_the_bundle() {
    let (dir, source, _mirror) = logs(10);
    let (sk, key) = log_key();
    // A mirror that holds a different entry 5 under a checkpoint of the same key (a fork).
    let forked = Vault::create(dir.path().join("forked"), ORIGIN).unwrap();
    let mut entries: Vec<Vec<u8>> = (0..11).map(|i| source.entry(i).unwrap()).collect();
    entries[5] = manifest(999, "campaign-a", 1000);
    forked.append(&entries).unwrap();
    forked.sign_checkpoint(&key, &sk).unwrap();
    grow(&source, 11, 3);
    let bundle = source.export_bundle(0).unwrap();
    let err = forked.import_bundle(&bundle, &key).unwrap_err();
    assert!(err.to_string().contains("forked"), "{err}");
    assert_eq!(forked.size(), 11);
    // The standalone check, with the receiver's checkpoint, catches a forked left edge too.
    let incremental = source.export_bundle(11).unwrap();
    let theirs = forked.checkpoint(11).unwrap().unwrap();
    let err = incremental.verify(&key, Some(&theirs)).unwrap_err();
    assert!(err.to_string().contains("left edge"), "{err}");
    let ours = source.checkpoint(11).unwrap().unwrap();
    incremental.verify(&key, Some(&ours)).unwrap();
    assert_eq!(
        Checkpoint::parse(incremental.checkpoint.as_bytes())
            .unwrap()
            .size
            .0,
        14
    );
}
