//! Property: the device's stored state only moves forward (anti-rollback), and an installed image
//! is checked against what was recorded when it was accepted.

mod common;

use cairn_verifier::Error;
use cairn_verifier::boot::{MemoryImage, StoredState, verify_installed};
use cairn_verifier::crypto::Software;
use cairn_verifier::test_support::{Fixture, Spec};
use cairn_verifier::types::{SecurityEpoch, TreeSize};

use common::boot::*;

// ---------------------------------------------------------------------------------------------
// Stored state and installed images

#[test]
fn stored_state_only_moves_forward() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let verdict = run(&f, &delivery, &device(), &StoredState::default(), &f.image).unwrap();

    // from a fresh state, both counters move up to the verdict's
    let fresh = StoredState::default().after(&verdict);
    assert_eq!(fresh.checkpoint_size, verdict.checkpoint_size);
    assert_eq!(fresh.security_epoch, verdict.installed.security_epoch);
    assert_eq!(fresh.installed, Some(verdict.installed));

    // from a state that is ahead on both counters, neither moves back
    let ahead = StoredState {
        checkpoint_size: TreeSize(1_000),
        security_epoch: SecurityEpoch(9),
        campaign_floor: 0,
        installed: None,
    };
    let next = ahead.after(&verdict);
    assert_eq!(next.checkpoint_size, TreeSize(1_000));
    assert_eq!(next.security_epoch, SecurityEpoch(9));
    assert_eq!(next.installed, Some(verdict.installed));

    // mixed: one counter ahead, the other behind
    let mixed = StoredState {
        checkpoint_size: TreeSize(2),
        security_epoch: SecurityEpoch(7),
        campaign_floor: 0,
        installed: None,
    };
    let next = mixed.after(&verdict);
    assert_eq!(next.checkpoint_size, verdict.checkpoint_size);
    assert_eq!(next.security_epoch, SecurityEpoch(7));

    // after accepting, the same delivery is still acceptable (equal size and epoch), but an older
    // checkpoint is not
    assert!(run(&f, &delivery, &device(), &fresh, &f.image).is_ok());
    let older = f
        .build(&Spec {
            tree_size: 9,
            index: 3,
            ..f.spec()
        })
        .encode();
    assert_eq!(
        run(&f, &older, &device(), &fresh, &f.image).map(|_| ()),
        Err(Error::CheckpointStale {
            stored: TreeSize(11),
            received: TreeSize(9),
        })
    );
}

#[test]
fn verify_installed_checks_the_recorded_image() {
    let f = Fixture::new();
    let delivery = f.delivery();
    let verdict = run(&f, &delivery, &device(), &StoredState::default(), &f.image).unwrap();
    let state = StoredState::default().after(&verdict);

    assert_eq!(
        verify_installed(&state, &mut MemoryImage(&f.image), &Software),
        Ok(verdict.installed)
    );
    let mut modified = f.image.clone();
    let last = modified.len() - 1;
    modified[last] ^= 0x80;
    assert_eq!(
        verify_installed(&state, &mut MemoryImage(&modified), &Software),
        Err(Error::ImageDigest)
    );
    modified.push(0);
    assert_eq!(
        verify_installed(&state, &mut MemoryImage(&modified), &Software),
        Err(Error::ImageSize {
            expected: f.image.len() as u64,
            actual: f.image.len() as u64 + 1,
        })
    );
    let mut flash = FailingFlash {
        image: &f.image,
        fail_from: 0,
        reads: 0,
    };
    assert_eq!(
        verify_installed(&state, &mut flash, &Software),
        Err(Error::FlashRead)
    );
}

#[test]
fn verify_installed_on_a_fresh_state() {
    let f = Fixture::new();
    assert_eq!(
        verify_installed(
            &StoredState::default(),
            &mut MemoryImage(&f.image),
            &Software
        ),
        Err(Error::NothingInstalled)
    );
}
