//! Property: witnesses' cosignatures added to a stored checkpoint travel with the log (deliveries,
//! transfer bundles, the mirror, the tiles' `checkpoint`), the signed note text and the log's own
//! line never change, and a note over another text is refused.

#![expect(clippy::unwrap_used, reason = "helpers panic to fail the test")]

mod common;

use cairn_vault::{Error, Vault};
use cairn_verifier::delivery::Delivery;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::test_support::{WITNESSES, witness, witness_key};
use cairn_verifier::witness::write;
use common::{ORIGIN, log_key, manifest, release_entry};

const T: u64 = 1_795_000_500;

fn text(note: &str) -> &str {
    &note[..=note.find("\n\n").unwrap()]
}

/// `note` with test witness `n`'s cosignature appended.
fn cosign(note: &str, n: u8) -> String {
    let w = witness(WITNESSES[usize::from(n)], n);
    format!(
        "{note}{}",
        write::cosign(text(note), &w, &witness_key(n), T)
    )
}

fn signature_names(note: &str) -> Vec<String> {
    let cp = Checkpoint::parse(note.as_bytes()).unwrap();
    cp.signature_lines()
        .map(|l| l.unwrap().name.to_owned())
        .collect()
}

#[test]
fn cosignatures_are_kept_and_travel_to_the_mirror_and_into_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let source = Vault::create(dir.path().join("source"), ORIGIN).unwrap();
    let mut entries = vec![release_entry()];
    entries.extend((1..=5).map(|i| manifest(i, "campaign-a", 1000)));
    source.append(&entries).unwrap();
    let plain = source.sign_checkpoint(&key, &sk).unwrap();

    // The tiles exported before any witness cosigned.
    let tiles = dir.path().join("tiles");
    source.export(&tiles, &mut |_, _| {}).unwrap();

    // Two witnesses return their notes separately (each over the plain note).
    let merged = source.add_cosignatures(&cosign(&plain, 0)).unwrap();
    let merged = {
        let again = source.add_cosignatures(&cosign(&plain, 2)).unwrap();
        assert!(again.starts_with(&merged), "lines are only appended");
        again
    };
    assert_eq!(
        signature_names(&merged),
        [ORIGIN, WITNESSES[0], WITNESSES[2]]
    );
    assert_eq!(source.latest_checkpoint().unwrap().unwrap(), merged);
    // The same witness again (another timestamp, a replay) adds nothing.
    assert_eq!(source.add_cosignatures(&cosign(&plain, 0)).unwrap(), merged);

    // The tiles' `checkpoint` is brought up to the cosigned note (same size, same text).
    source.export(&tiles, &mut |_, _| {}).unwrap();
    assert_eq!(
        std::fs::read_to_string(tiles.join("checkpoint")).unwrap(),
        merged
    );

    // Deliveries built afterwards carry the cosigned checkpoint.
    let deliveries = source.deliveries(&[1]).unwrap();
    let d = Delivery::decode(&deliveries[0].1).unwrap();
    assert_eq!(d.checkpoint, merged.as_bytes());

    // A mirror gets it with the bundle; a bundle carried again with one more cosignature adds it.
    let mirror = Vault::create(dir.path().join("mirror"), ORIGIN).unwrap();
    mirror
        .import_bundle(&source.export_bundle(0).unwrap(), &key)
        .unwrap();
    assert_eq!(mirror.latest_checkpoint().unwrap().unwrap(), merged);
    let three = source.add_cosignatures(&cosign(&plain, 1)).unwrap();
    let report = mirror
        .import_bundle(&source.export_bundle(0).unwrap(), &key)
        .unwrap();
    assert!(report.appended.is_empty());
    assert_eq!(mirror.latest_checkpoint().unwrap().unwrap(), three);
    mirror.fsck(&mut |_, _| {}).unwrap();
    source.fsck(&mut |_, _| {}).unwrap();
}

#[test]
fn a_note_over_another_text_or_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, key) = log_key();
    let log = Vault::create(dir.path().join("log"), ORIGIN).unwrap();
    log.append(&[release_entry()]).unwrap();
    let first = log.sign_checkpoint(&key, &sk).unwrap();
    log.append(&[manifest(1, "campaign-a", 1000)]).unwrap();
    let second = log.sign_checkpoint(&key, &sk).unwrap();

    // Another size's text under this size: refused, nothing written.
    let forged = first.replacen("\n1\n", "\n2\n", 1);
    let forged = cosign(&forged, 0);
    assert!(matches!(
        log.add_cosignatures(&forged),
        Err(Error::BadBundle(_))
    ));
    assert_eq!(log.latest_checkpoint().unwrap().unwrap(), second);
    // A size with no stored checkpoint.
    let beyond = cosign(&second.replacen("\n2\n", "\n3\n", 1), 0);
    assert!(matches!(
        log.add_cosignatures(&beyond),
        Err(Error::NoCheckpoint { size: 3 })
    ));
    // An older checkpoint can still be cosigned (a witness catching up).
    let older = log.add_cosignatures(&cosign(&first, 1)).unwrap();
    assert_eq!(signature_names(&older), [ORIGIN, WITNESSES[1]]);
}
