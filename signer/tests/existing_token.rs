//! `ceremony init --existing-token`: a token its security officer initialised with the module's
//! own tool is adopted without `C_InitToken` and without an SO PIN; the initial user PIN is
//! replaced once by the ceremony's, and the ceremony record says so.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report; the shared harness has long helpers"
)]

mod common;

use cairn_signer::Error;
use cairn_signer::appliance::Appliance;
use cairn_signer::ceremony::{self, TokenSource};
use cairn_signer::hsm::Module;
use cairn_verifier::custody::{KeyRole, TokenSetup};
use common::{NOW, in_store, options, present, so_initialises_token};
use cryptoki::types::AuthPin;

const SO_PIN: &str = "so-officer-pin-0042";
const INITIAL: &str = "initial-user-pin-0042";

fn initial() -> AuthPin {
    AuthPin::from(INITIAL.to_owned())
}

#[test]
fn an_existing_token_is_adopted_its_pin_rotated_and_the_record_says_so() {
    in_store(
        "an_existing_token_is_adopted_its_pin_rotated_and_the_record_says_so",
        |dir| {
            so_initialises_token("oem-hsm", SO_PIN, INITIAL);
            let module = Module::from_env().unwrap();

            // A wrong initial PIN: refused at C_Login, nothing changed, the right one still works.
            let wrong = TokenSource::Existing {
                initial_pin: AuthPin::from("not-the-initial-pin".to_owned()),
            };
            let err = ceremony::init(&module, &options(dir, "oem-hsm", wrong)).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Pkcs11 {
                        call: "C_Login",
                        ..
                    }
                ),
                "{err}"
            );
            std::fs::remove_dir_all(dir.join("oem-hsm")).unwrap();

            let source = TokenSource::Existing {
                initial_pin: initial(),
            };
            let report = ceremony::init(&module, &options(dir, "oem-hsm", source)).unwrap();
            assert_eq!(report.token_setup, TokenSetup::AdoptedPinRotated);

            // The record, root-signed, says the token was adopted and its PIN rotated.
            let appliance = Appliance::open(dir.join("oem-hsm")).unwrap();
            let verified = appliance.verify_ceremony(None).unwrap();
            assert_eq!(verified.token_setup, TokenSetup::AdoptedPinRotated);
            assert_eq!(verified.token, "oem-hsm");

            // The security officer's initial PIN no longer opens the token; k shares do.
            let err = module.login("oem-hsm", &initial()).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Pkcs11 {
                        call: "C_Login",
                        ..
                    }
                ),
                "{err}"
            );
            let session = appliance
                .unlock(
                    &module,
                    &present(dir, "oem-hsm", &["alice", "carol", "erin"]),
                    NOW,
                )
                .unwrap();
            let image = dir.join("fw.bin");
            std::fs::write(&image, vec![7u8; 2048]).unwrap();
            let key = session.key(KeyRole::Release).unwrap();
            let sig: p256::ecdsa::Signature = signature::Signer::sign(&key, b"adopted");
            signature::Verifier::verify(key.public(), b"adopted", &sig).unwrap();
            drop(session);

            // A token that already holds a ceremony's keys is not adopted again.
            let again = TokenSource::Existing {
                initial_pin: initial(),
            };
            let mut opts = options(dir, "oem-hsm", again);
            opts.home = dir.join("again");
            for c in &mut opts.custodians {
                c.share_path = dir.join(format!("again-{}", c.name));
            }
            let err = ceremony::init(&module, &opts).unwrap_err();
            // The initial PIN was rotated away: refused at C_Login before anything is touched.
            assert!(
                matches!(
                    err,
                    Error::Pkcs11 {
                        call: "C_Login",
                        ..
                    }
                ),
                "{err}"
            );
        },
    );
}

#[test]
fn a_token_with_a_ceremonys_keys_is_not_adopted() {
    in_store("a_token_with_a_ceremonys_keys_is_not_adopted", |dir| {
        so_initialises_token("oem-hsm", SO_PIN, INITIAL);
        let module = Module::from_env().unwrap();
        {
            let token = module.login("oem-hsm", &initial()).unwrap();
            token.generate_key(KeyRole::Root, 0).unwrap();
        }
        let source = TokenSource::Existing {
            initial_pin: initial(),
        };
        let err = ceremony::init(&module, &options(dir, "oem-hsm", source)).unwrap_err();
        assert!(
            matches!(&err, Error::KeyUnusable { why, .. } if why.contains("already holds")),
            "{err}"
        );
        // Refused before C_SetPIN: the security officer's PIN still opens the token.
        module.login("oem-hsm", &initial()).unwrap();
    });
}
