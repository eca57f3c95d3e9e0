//! A module that makes a key weaker than cairn asks for is refused, with the attribute named:
//! the key is generated through the test hook at the PKCS#11 boundary with one attribute of the
//! private template changed, the real module makes it so, and the real read-back check refuses it.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report; the shared harness has long helpers"
)]

mod common;

use cairn_signer::Error;
use cairn_signer::hsm::LoginFailures;
use cairn_verifier::custody::KeyRole;
use common::{in_token, test_module};
use cryptoki::object::Attribute;
use cryptoki::types::AuthPin;

#[test]
fn a_weakened_key_is_refused_naming_the_attribute_and_not_left_on_the_token() {
    let out = in_token(
        "a_weakened_key_is_refused_naming_the_attribute_and_not_left_on_the_token",
        |module, _dir| {
            let pin = AuthPin::from("0123456789abcdef".to_owned());
            module
                .init_token("weak", &AuthPin::from("so-0123456789".to_owned()), &pin)
                .unwrap();
            let token = module.login("weak", &pin).unwrap();
            let cases = [
                (Attribute::Sensitive(false), "CKA_SENSITIVE"),
                (Attribute::Extractable(true), "CKA_EXTRACTABLE"),
                (Attribute::Decrypt(true), "CKA_DECRYPT"),
                (Attribute::Derive(true), "CKA_DERIVE"),
            ];
            let mut refused = 0;
            let count = cases.len();
            for (weak, name) in cases {
                match token.generate_key_weakened(KeyRole::Release, 0, std::slice::from_ref(&weak))
                {
                    Err(Error::KeyWeakened {
                        attribute,
                        reported,
                        ..
                    }) => {
                        assert_eq!(attribute, name, "{weak:?}");
                        println!("{name}: refused, the module reported {reported}");
                        refused += 1;
                    }
                    // A module may refuse the weaker template itself: nothing weak was made.
                    Err(Error::Pkcs11 {
                        call: "C_GenerateKeyPair",
                        source,
                    }) => println!("{name}: the module refused the template ({source})"),
                    Err(e) => panic!("{name}: unexpected error {e}"),
                    Ok(_) => panic!("{name}: a weakened key was accepted"),
                }
                // Nothing is left behind: the same key can still be generated properly.
                assert!(
                    matches!(
                        token.key(KeyRole::Release, 0),
                        Err(Error::KeyNotFound { .. })
                    ),
                    "{name}: the weakened key stayed on the token"
                );
            }
            // SoftHSM2 makes each weakened key as asked, so each is refused by the read-back.
            if test_module() == common::TestModule::SoftHsm2 {
                assert_eq!(refused, count);
            }
            assert!(refused >= 1, "no weakened key reached the read-back check");
            let key = token.generate_key(KeyRole::Release, 0).unwrap();
            let p = token.protection_of(key.private_handle()).unwrap();
            assert!(
                p.sensitive && !p.extractable && p.never_extractable,
                "{p:?}"
            );
        },
    );
    // What the module did with each weakened template (shown with --nocapture).
    print!("{}", out.unwrap_or_default());
}

#[test]
fn the_module_profile_is_probed_and_takes_cairns_pins() {
    let out = in_token(
        "the_module_profile_is_probed_and_takes_cairns_pins",
        |module, _dir| {
            let profile = module.profile(None).unwrap();
            println!("{profile}");
            // cairn's PINs are 64 hex characters (shares.rs).
            assert!(profile.accepts_pin_len(64), "{profile}");
            assert!(
                profile.ecdsa_key_bits.0 <= 256 && profile.ecdsa_key_bits.1 >= 256,
                "{profile}"
            );
            match test_module() {
                common::TestModule::SoftHsm2 => {
                    assert_eq!(profile.family, cairn_signer::hsm::ModuleFamily::SoftHsm2);
                    assert_eq!(profile.login_failures, LoginFailures::Flags);
                }
                common::TestModule::Tpm2 => {
                    assert_eq!(profile.family, cairn_signer::hsm::ModuleFamily::Tpm2Pkcs11);
                    assert_eq!(profile.login_failures, LoginFailures::NotReported);
                }
            }
        },
    );
    print!("{}", out.unwrap_or_default());
}
