//! Downgrade by replay (issue 20 item 4, formats.md §5.1): the boot check tells a live decision
//! from a stale one by the manifest's campaign sequence, the device's stored campaign floor and
//! the checkpoint's `cairn-campaign-floor` line, without a clock.
//!
//! The fixture's campaign has sequence `CAMPAIGN_SEQUENCE` (4). A replay is an old manifest
//! presented with a fresh checkpoint and inclusion proof (anyone can build those from the public
//! log), so each case gives the old manifest the newest checkpoint.

mod common;

use cairn_verifier::Error;
use cairn_verifier::boot::{DeviceIdentity, StoredState};
use cairn_verifier::crypto::Software;
use cairn_verifier::error::NoteError;
use cairn_verifier::note::{self, Checkpoint, LogKey};
use cairn_verifier::statement::Purpose;
use cairn_verifier::test_support::{CAMPAIGN_SEQUENCE, Fixture, Spec, public_key, test_key};
use cairn_verifier::types::{TreeSize, Version};

use common::boot::*;

const SEQ: u64 = CAMPAIGN_SEQUENCE;

/// The device once it runs 2.4.1.
fn on_241() -> DeviceIdentity<'static> {
    DeviceIdentity {
        current_version: Version::new(2, 4, 1),
        ..device()
    }
}

fn check(
    f: &Fixture,
    spec: &Spec,
    device: &DeviceIdentity<'_>,
    state: &StoredState,
) -> Result<StoredState, Error> {
    let delivery = f.build(spec).encode();
    run(f, &delivery, device, state, &f.image).map(|v| state.after(&v))
}

#[test]
fn live_rollback_is_accepted_and_then_cannot_be_replayed() {
    let f = Fixture::new();
    // Installed the campaign's update: floor = its sequence.
    let update = f.spec();
    let after_update = check(&f, &update, &device(), &StoredState::default()).unwrap();
    assert_eq!(after_update.campaign_floor, SEQ);
    assert_eq!(after_update.installed.unwrap().campaign_sequence, SEQ);
    // The campaign's rollback, live (the campaign is the newest of its class): accepted.
    let rollback = Spec {
        floor_line: Some(SEQ),
        ..f.rollback_spec()
    };
    let after_rollback = check(&f, &rollback, &on_241(), &after_update).unwrap();
    assert_eq!(after_rollback.campaign_floor, SEQ + 1);
    assert_eq!(
        after_rollback.installed.unwrap().version,
        Version::new(2, 4, 0)
    );
    // Replayed once the device rolled back: neither the rollback nor the update installs again.
    let stale = Err(Error::StaleDecision {
        floor: SEQ + 1,
        campaign_sequence: SEQ,
    });
    assert_eq!(check(&f, &rollback, &on_241(), &after_rollback), stale);
    let on_240 = DeviceIdentity {
        current_version: Version::new(2, 4, 0),
        ..device()
    };
    assert_eq!(check(&f, &update, &on_240, &after_rollback), stale);
}

#[test]
fn replayed_rollback_after_close_is_stale() {
    let f = Fixture::new();
    let installed = f.installed_state(SEQ, SEQ);
    // A later plan of the class (sequence SEQ + 1) closed the campaign: every checkpoint after
    // it carries the raised floor, and the old rollback manifest proven against one is refused.
    let replay = Spec {
        floor_line: Some(SEQ + 1),
        ..f.rollback_spec()
    };
    assert_eq!(
        check(&f, &replay, &on_241(), &installed),
        Err(Error::StaleDecision {
            floor: SEQ + 1,
            campaign_sequence: SEQ,
        })
    );
    // The same manifest before the close was live (the floor line is what refuses it).
    let live = Spec {
        floor_line: Some(SEQ),
        ..f.rollback_spec()
    };
    assert!(check(&f, &live, &on_241(), &installed).is_ok());
}

#[test]
fn rollback_of_an_older_campaign_than_the_installed_one_is_stale() {
    let f = Fixture::new();
    // Installed from campaign SEQ + 1 (floor SEQ + 1): campaign SEQ's rollback is stale.
    let installed = f.installed_state(SEQ + 1, SEQ + 1);
    assert_eq!(
        check(&f, &f.rollback_spec(), &on_241(), &installed),
        Err(Error::StaleDecision {
            floor: SEQ + 1,
            campaign_sequence: SEQ,
        })
    );
}

#[test]
fn a_device_whose_update_failed_accepts_the_live_rollback_target() {
    let f = Fixture::new();
    // Installed from an earlier campaign, or through no campaign at all: the relay sends the live
    // campaign's rollback target to devices whose update attempts ran out (docs/relay.md).
    for installed in [f.installed_state(SEQ - 1, SEQ - 1), StoredState::default()] {
        assert!(check(&f, &f.rollback_spec(), &on_241(), &installed).is_ok());
    }
}

#[test]
fn replayed_update_of_an_older_campaign_is_stale() {
    let f = Fixture::new();
    // An older campaign's update with a wide window (it covers 2.4.1 too).
    let older = Spec {
        campaign_sequence: SEQ - 1,
        max_version: Version::new(2, 4, 1),
        ..f.spec()
    };
    // A device that installed campaign SEQ refuses it by its stored floor ...
    let installed = f.installed_state(SEQ, SEQ);
    assert_eq!(
        check(&f, &older, &on_241(), &installed),
        Err(Error::StaleDecision {
            floor: SEQ,
            campaign_sequence: SEQ - 1,
        })
    );
    // ... and a device that never installed it, by the checkpoint's floor line.
    let replay = Spec {
        floor_line: Some(SEQ),
        ..older.clone()
    };
    assert_eq!(
        check(&f, &replay, &device(), &StoredState::default()),
        Err(Error::StaleDecision {
            floor: SEQ,
            campaign_sequence: SEQ - 1,
        })
    );
    // Without the line and with a fresh state, the older campaign is still the newest it knows.
    assert!(check(&f, &older, &device(), &StoredState::default()).is_ok());
}

#[test]
fn a_device_that_missed_a_campaign_accepts_the_next() {
    let f = Fixture::new();
    // Installed campaign SEQ - 2, missed SEQ - 1; campaign SEQ is offered with its floor line.
    let installed = f.installed_state(SEQ - 2, SEQ - 2);
    let next = Spec {
        floor_line: Some(SEQ),
        max_version: Version::new(2, 4, 1),
        ..f.spec()
    };
    let after = check(&f, &next, &on_241(), &installed).unwrap();
    assert_eq!(after.campaign_floor, SEQ);
    assert_eq!(after.installed.unwrap().campaign_sequence, SEQ);
    // The floor never moves back: a state ahead keeps its floor.
    let ahead = StoredState {
        campaign_floor: SEQ,
        ..installed
    };
    assert_eq!(
        check(&f, &next, &on_241(), &ahead).unwrap().campaign_floor,
        SEQ
    );
}

#[test]
fn a_malformed_floor_line_is_a_malformed_checkpoint() {
    let f = Fixture::new();
    let spec = f.spec();
    let mut parts = f.build(&spec);
    // A floor line the log key signed but that does not parse: refused, never skipped.
    let root = Checkpoint::parse(parts.checkpoint.as_bytes()).unwrap().root;
    let body = note::write::body(
        spec.origin,
        TreeSize(spec.tree_size),
        &root,
        &["cairn-campaign-floor Smart Controller/STM32H5 04"],
    );
    let log_key = test_key(spec.log_key);
    let key = LogKey::new(spec.origin, spec.origin, public_key(&log_key), &Software).unwrap();
    parts.checkpoint = note::write::sign(&body, &key, &log_key).unwrap();
    assert_eq!(
        verdict_of_parts(&f, &parts),
        Err(Error::MalformedCheckpoint(NoteError::BadFloorLine))
    );
    assert_eq!(spec.purpose, Purpose::Update);
}
