//! Ranged transfer bundles (formats.md §6, "Ranged bundles"): a large append signs intermediate
//! checkpoints, the log is cut at them into bundles of at most a given number of entries, and a
//! mirror imports them one after the other, each verified against the checkpoint chain; a gap or
//! an overlap that does not start at one of the mirror's checkpoints is refused, naming it.

#![expect(clippy::unwrap_used, reason = "helpers panic to fail the test")]

mod common;

use cairn_vault::{CHECKPOINT_SPAN, TransferBundle, Vault};
use cairn_verifier::counts;
use cairn_verifier::note::Checkpoint;
use common::{ORIGIN, log_key, manifest, release_entry};

/// A log of a release and 300 manifests appended in one signed append with a checkpoint every
/// 64 entries (sizes 64, 128, 192, 256 and 301); and an empty mirror.
fn logs() -> (tempfile::TempDir, Vault, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let source = Vault::create(dir.path().join("source"), ORIGIN).unwrap();
    let mut entries = vec![release_entry()];
    entries.extend((1..=300).map(|i| manifest(i, "campaign-a", 1000)));
    let (range, note) = source.append_signed_every(&entries, &key, &sk, 64).unwrap();
    assert_eq!(range, 0..301);
    assert_eq!(Checkpoint::parse(note.as_bytes()).unwrap().size.0, 301);
    let mirror = Vault::create(dir.path().join("mirror"), ORIGIN).unwrap();
    (dir, source, mirror)
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
fn a_large_append_signs_a_checkpoint_at_every_span_it_crosses() {
    let (_dir, source, _mirror) = logs();
    let (_, key) = log_key();
    assert_eq!(
        source.checkpoint_sizes().unwrap(),
        vec![64, 128, 192, 256, 301]
    );
    for size in [64, 128, 192, 256, 301] {
        let note = source.checkpoint(size).unwrap().unwrap();
        let checkpoint = Checkpoint::parse(note.as_bytes()).unwrap();
        checkpoint
            .verify(&key, &cairn_verifier::crypto::Software)
            .unwrap();
        assert_eq!(checkpoint.size.0, size);
        // Each commits to the tree of its own size, as the tiles hold it.
        assert_eq!(
            checkpoint.root,
            source.at(size).unwrap().root().unwrap(),
            "root of size {size}"
        );
        // Its kind counts are those of its own prefix (no key statement in this log).
        let kinds = counts::parse(checkpoint.extensions).unwrap();
        assert!(kinds.iter().all(|k| k.count == 0), "{size}: {kinds:?}");
    }
    source.fsck(&mut |_, _| {}).unwrap();

    // The default span is a power of two of a million entries: an ordinary append gets no
    // intermediate checkpoint.
    assert!(CHECKPOINT_SPAN.is_power_of_two() && CHECKPOINT_SPAN >= 1 << 20);
    let (sk, key) = log_key();
    let entries: Vec<Vec<u8>> = (301..400)
        .map(|i| manifest(i, "campaign-b", 2000))
        .collect();
    source.append_signed(&entries, &key, &sk).unwrap();
    assert_eq!(
        source.checkpoint_sizes().unwrap(),
        vec![64, 128, 192, 256, 301, 400]
    );
}

#[test]
fn the_log_is_cut_at_its_checkpoints_and_the_bundles_imported_in_order() {
    let (_dir, source, mirror) = logs();
    let (_, key) = log_key();
    assert_eq!(
        source.bundle_ranges(0, 130).unwrap(),
        vec![0..128, 128..256, 256..301]
    );
    assert_eq!(
        source.bundle_ranges(128, 64).unwrap(),
        vec![128..192, 192..256, 256..301]
    );
    assert_eq!(source.bundle_ranges(0, 1000).unwrap(), vec![0..301]);
    assert_eq!(source.bundle_ranges(301, 10).unwrap(), vec![]);
    let bundles: Vec<TransferBundle> = source
        .bundle_ranges(0, 130)
        .unwrap()
        .into_iter()
        .map(|r| {
            let b = source.export_bundle_to(r.start, r.end).unwrap();
            assert_eq!((b.from, b.to()), (r.start, r.end));
            TransferBundle::decode(&b.to_cbor()).unwrap()
        })
        .collect();

    // Out of order: the second before the first is a gap.
    let err = mirror.import_bundle(&bundles[1], &key).unwrap_err();
    assert!(
        err.to_string()
            .contains("starts at 128, this log has only 0 entries: an earlier bundle is missing"),
        "{err}"
    );
    assert_eq!(mirror.size(), 0);

    let report = mirror.import_bundle(&bundles[0], &key).unwrap();
    assert_eq!((report.appended, report.manifests), (0..128, 127));
    // Skipping one is a gap too.
    let err = mirror.import_bundle(&bundles[2], &key).unwrap_err();
    assert!(
        err.to_string().contains("an earlier bundle is missing"),
        "{err}"
    );
    // A bundle starting inside what the mirror holds, not at its checkpoint, overlaps.
    let overlapping = source.export_bundle_to(64, 192).unwrap();
    let err = mirror.import_bundle(&overlapping, &key).unwrap_err();
    assert!(
        err.to_string().contains(
            "starts at 64, inside the 128 entries this log holds but at none of its checkpoints"
        ),
        "{err}"
    );
    assert_eq!(mirror.size(), 128);

    let report = mirror.import_bundle(&bundles[1], &key).unwrap();
    assert_eq!(report.appended, 128..256);
    let report = mirror.import_bundle(&bundles[2], &key).unwrap();
    assert_eq!((report.appended, report.size), (256..301, 301));
    same_log(&source, &mirror);
    assert_eq!(mirror.checkpoint_sizes().unwrap(), vec![128, 256, 301]);
    mirror.fsck(&mut |_, _| {}).unwrap();

    // Importing one again changes nothing (idempotent).
    let report = mirror.import_bundle(&bundles[0], &key).unwrap();
    assert_eq!((report.appended, report.already_held), (301..301, 128));
    same_log(&source, &mirror);
}

#[test]
fn a_log_that_cannot_be_cut_and_bad_ranges_are_refused_naming_the_sizes() {
    let (_dir, source, _mirror) = logs();
    let err = source.bundle_ranges(0, 50).unwrap_err();
    assert!(
        err.to_string().contains(
            "no checkpoint between sizes 0 and 50: entries 0..64 cannot be cut into bundles of \
             at most 50 entries"
        ),
        "{err}"
    );
    let err = source.bundle_ranges(100, 1000).unwrap_err();
    assert!(
        err.to_string().contains("no signed checkpoint of size 100"),
        "{err}"
    );
    let err = source.export_bundle_to(0, 100).unwrap_err();
    assert!(
        err.to_string().contains("no signed checkpoint of size 100"),
        "{err}"
    );
    let err = source.export_bundle_to(128, 64).unwrap_err();
    assert!(
        err.to_string().contains("must not end before it starts"),
        "{err}"
    );
    let err = source.export_bundle_to(0, 500).unwrap_err();
    assert!(err.to_string().contains("beyond the log"), "{err}");
}
