//! A ceremony that fails after it changed a token names that token and how to reset it; the reset
//! it names works, and a new ceremony then succeeds on the same label.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report; the shared harness has long helpers"
)]

mod common;

use cairn_signer::Error;
use cairn_signer::ceremony::{self, TokenSource};
use cairn_signer::hsm::Module;
use common::{in_store, options, reset_token, so_initialises_token};
use cryptoki::types::AuthPin;

#[test]
fn a_failed_ceremony_names_the_token_it_left_and_its_reset_works() {
    in_store(
        "a_failed_ceremony_names_the_token_it_left_and_its_reset_works",
        |dir| {
            {
                let module = Module::from_env().unwrap();
                // The last share file cannot be written (its directory does not exist): the
                // ceremony fails after the token was initialised and the keys made.
                let mut opts = options(dir, "cairn", TokenSource::Fresh);
                opts.custodians[4].share_path = dir.join("no-such-medium/erin.share");
                let err = ceremony::init(&module, &opts).unwrap_err();
                let text = err.to_string();
                println!("{text}");
                let Error::CeremonyFailed {
                    token,
                    changed,
                    reset,
                    source,
                } = &err
                else {
                    panic!("not CeremonyFailed: {err:?}");
                };
                assert_eq!((token.as_str(), *changed), ("cairn", "initialised"));
                assert!(matches!(**source, Error::Io { .. }), "{source:?}");
                assert!(text.contains("token \"cairn\"") && text.contains(reset.as_str()));
                let tool = match common::test_module() {
                    common::TestModule::SoftHsm2 => "softhsm2-util --delete-token",
                    common::TestModule::Tpm2 => "tpm2_ptool rmtoken",
                };
                assert!(reset.contains(tool), "{reset}");
            }
            // The operator runs the reset it names; the module's tool then lists no such token.
            assert!(
                common::token_listed("cairn"),
                "the failed ceremony's token is listed"
            );
            reset_token("cairn");
            assert!(!common::token_listed("cairn"), "the reset left the token");
            std::fs::remove_dir_all(dir.join("cairn")).unwrap();
            for c in common::CUSTODIANS {
                let _ = std::fs::remove_file(common::share_path(dir, "cairn", c));
            }
        },
    );
}

#[test]
fn a_failed_adoption_names_the_token_and_the_security_officers_reset() {
    in_store(
        "a_failed_adoption_names_the_token_and_the_security_officers_reset",
        |dir| {
            so_initialises_token("oem-hsm", "so-officer-pin-0042", "initial-user-pin-0042");
            let module = Module::from_env().unwrap();
            let mut opts = options(
                dir,
                "oem-hsm",
                TokenSource::Existing {
                    initial_pin: AuthPin::from("initial-user-pin-0042".to_owned()),
                },
            );
            opts.custodians[0].share_path = dir.join("no-such-medium/alice.share");
            let err = ceremony::init(&module, &opts).unwrap_err();
            println!("{err}");
            let Error::CeremonyFailed {
                token,
                changed,
                reset,
                ..
            } = &err
            else {
                panic!("not CeremonyFailed: {err:?}");
            };
            assert_eq!(token, "oem-hsm");
            assert!(changed.contains("rotated"), "{changed}");
            assert!(
                reset.contains("security officer") && reset.contains("C_InitPIN"),
                "{reset}"
            );
        },
    );
}
