//! Property: a witness cosigns one history of a log and refuses a fork of it, whatever the fork's
//! size, keeping both checkpoints and the proof as evidence; a device that needs this witness's
//! cosignature then accepts the first history's checkpoint and refuses the fork's.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

mod common;

use cairn_verifier::Error;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::witness::{Quorum, WitnessPolicy, verify_quorum};
use cairn_witness::AddError;
use common::{History, log_key, witness};

const T: u64 = 1_795_000_500;

fn device_check(note: &str, w: &cairn_witness::Witness) -> Result<Quorum, Error> {
    let policy = WitnessPolicy::new([w.secret().pinned()], 1).unwrap();
    let cp = Checkpoint::parse(note.as_bytes()).unwrap();
    cp.verify(&log_key(), &Software).unwrap();
    verify_quorum(&cp, &log_key(), &policy, &Software)
}

#[test]
fn the_witness_cosigns_one_history_and_refuses_its_fork_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let a = History::new("a", 16);
    let b = a.fork(5, "b"); // same first 5 entries, then another history

    // History A: first sight (old 0), then growth with a proof.
    let first = w.add_checkpoint(a.request(0, 4).as_bytes(), T).unwrap();
    assert_eq!(
        device_check(&first.note, &w),
        Ok(Quorum { have: 1, need: 1 })
    );
    let second = w.add_checkpoint(a.request(4, 8).as_bytes(), T + 1).unwrap();
    assert_eq!(
        device_check(&second.note, &w),
        Ok(Quorum { have: 1, need: 1 })
    );

    // Fork B at the witness's size: same size, other root.
    let fork = w
        .add_checkpoint(b.request(8, 8).as_bytes(), T + 2)
        .unwrap_err();
    let AddError::Fork { size: 8, evidence } = &fork else {
        panic!("expected a fork, got {fork:?}");
    };
    assert_eq!(fork.status(), 409);
    let stored = std::fs::read_to_string(evidence.dir.join("stored.note")).unwrap();
    let submitted = std::fs::read_to_string(evidence.dir.join("submitted.note")).unwrap();
    assert_eq!(stored, a.checkpoint(8));
    assert_eq!(submitted, b.checkpoint(8));

    // Fork B larger, with B's own proof from 8: the proof cannot lead to A's root.
    let grown = w
        .add_checkpoint(b.request(8, 12).as_bytes(), T + 3)
        .unwrap_err();
    let AddError::BadProof {
        old: 8, evidence, ..
    } = &grown
    else {
        panic!("expected a bad proof, got {grown:?}");
    };
    assert_eq!(grown.status(), 422);
    let request = std::fs::read_to_string(evidence.dir.join("request")).unwrap();
    assert_eq!(request, b.request(8, 12));
    assert_eq!(
        std::fs::read_to_string(evidence.dir.join("stored.note")).unwrap(),
        a.checkpoint(8)
    );
    assert_eq!(w.store().evidence().unwrap().len(), 2);

    // Fork B claiming the witness is still at 4, where A and B agree: 409 with the real size.
    let stale = w
        .add_checkpoint(b.request(4, 12).as_bytes(), T + 4)
        .unwrap_err();
    assert!(
        matches!(stale, AddError::Conflict { old: 4, size: 8 }),
        "{stale:?}"
    );

    // History A goes on; a device shown B's checkpoint finds no cosignature from this witness.
    let third = w
        .add_checkpoint(a.request(8, 16).as_bytes(), T + 5)
        .unwrap();
    assert_eq!(
        device_check(&third.note, &w),
        Ok(Quorum { have: 1, need: 1 })
    );
    assert_eq!(
        device_check(&b.checkpoint(12), &w),
        Err(Error::NoQuorum {
            have: 0,
            need: 1,
            unknown: 0
        })
    );
    // Nor can A's cosignature be carried over to B's checkpoint of the same size.
    let carried = format!("{}{}", b.checkpoint(16), third.lines);
    assert_eq!(
        device_check(&carried, &w),
        Err(Error::BadCosignature { witness: 0 })
    );
}

#[test]
fn unknown_logs_unsigned_and_malformed_requests_get_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let a = History::new("a", 4);
    // Another origin.
    let other = a
        .request(0, 4)
        .replace("cairn.test/log\n", "cairn.test/other\n");
    let e = w.add_checkpoint(other.as_bytes(), T).unwrap_err();
    assert_eq!(
        (e.status(), matches!(e, AddError::UnknownLog(_))),
        (404, true)
    );
    // Signed by another key (the release key) under the log's name.
    let wrong = {
        use cairn_verifier::test_support::{Fixture, test_key};
        let full = a.checkpoint(4);
        let body = &full[..=full.find("\n\n").unwrap()];
        let note =
            cairn_verifier::note::write::sign(body, &log_key(), &test_key(Fixture::RELEASE_KEY))
                .unwrap();
        cairn_verifier::tlog_witness::write::add_checkpoint(0, &[], &note)
    };
    let e = w.add_checkpoint(wrong.as_bytes(), T).unwrap_err();
    assert_eq!(
        (e.status(), matches!(e, AddError::NotSigned(_))),
        (403, true)
    );
    // Malformed.
    let e = w.add_checkpoint(b"old 01\n\n", T).unwrap_err();
    assert_eq!(e.status(), 400);
    // Old size above the checkpoint size.
    let e = w
        .add_checkpoint(a.request(0, 4).replacen("old 0", "old 9", 1).as_bytes(), T)
        .unwrap_err();
    assert_eq!(e.status(), 400);
    // Nothing was stored by any of them: the first valid request needs old 0.
    assert!(w.add_checkpoint(a.request(0, 4).as_bytes(), T).is_ok());
}
