//! The derived cases on the fixture: a 2-of-3 delivery (witnesses 0 and 2), the third witness's
//! key at hand, as a demo capture would give them.

use std::sync::Arc;

use cairn_verifier::boot::StoredState;
use cairn_verifier::test_support::{Fixture, cosign, witness_key};

use super::*;
use crate::cases::default_device;

fn capture() -> Capture {
    let f = Fixture::new();
    let mut parts = f.build(&f.spec());
    parts.checkpoint = cosign(
        &cosign(&parts.checkpoint, 0, 1_795_000_500),
        2,
        1_795_000_501,
    );
    Capture {
        anchors: Anchors::of_fixture(&f),
        deliveries: vec![Captured {
            name: "delivery-00".into(),
            delivery: parts.encode(),
            image: Arc::new(f.image.clone()),
            device: default_device(),
            state: StoredState::default(),
            verdict: "accept",
        }],
    }
}

fn cosignatures(case: &Case) -> Vec<String> {
    let Check::Delivery { delivery, .. } = &case.check else {
        panic!("not a delivery");
    };
    let note = std::str::from_utf8(Delivery::decode(delivery).unwrap().checkpoint)
        .unwrap()
        .to_owned();
    note.lines()
        .filter_map(|l| line_name(&format!("{l}\n")).map(str::to_owned))
        .filter(|n| n != cairn_verifier::test_support::ORIGIN)
        .collect()
}

#[test]
fn each_change_gives_the_verdict_the_host_boot_check_gives() {
    let capture = capture();
    let all = derive(&capture, &[(1, witness_key(1))], 1_795_000_600).unwrap();
    let names: Vec<&str> = all.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "demo-delivery-00-as-delivered",
            "demo-delivery-00-all-witnesses",
            "demo-delivery-00-one-cosignature-left",
            "demo-delivery-00-cosignature-altered",
            "demo-delivery-00-unknown-witness-only",
        ]
    );
    let expect: Vec<&str> = all.iter().map(|c| c.expect).collect();
    assert_eq!(
        expect,
        [
            "accept",
            "accept",
            "no-quorum",
            "bad-cosignature",
            "no-quorum"
        ]
    );
    assert_eq!(cosignatures(&all[0]).len(), 2);
    assert_eq!(cosignatures(&all[1]).len(), 3);
    assert_eq!(cosignatures(&all[2]).len(), 1);
    assert_eq!(cosignatures(&all[3]).len(), 2);
    assert_eq!(cosignatures(&all[4]), ["witness.example/stranger"]);
    host_check(&capture.anchors, &all).unwrap();
    assert!(
        summary(&capture.anchors, &all, "p256-cm4").starts_with(
            "QEMU Cortex-M33 (p256-cm4): 1 demo deliveries accepted under 2-of-3 (1 more with every \
             witness's cosignature), 3 tampered refused"
        ),
        "{}",
        summary(&capture.anchors, &all, "p256-cm4")
    );
}

/// A policy that ignored the threshold (one cosignature enough) would accept what the cases
/// expect refused: the host check, like the firmware's run, names the case.
#[test]
fn a_policy_of_one_is_caught() {
    let capture = capture();
    let all = derive(&capture, &[], 1_795_000_600).unwrap();
    let lax = Anchors {
        threshold: 1,
        ..capture.anchors.clone()
    };
    let err = host_check(&lax, &all).unwrap_err().to_string();
    assert!(
        err.contains("demo-delivery-00-one-cosignature-left: the host's boot check says accept"),
        "{err}"
    );
}
