//! Ceremony, shares, sessions and releases against a real PKCS#11 token (SoftHSM2).

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::needless_pass_by_value,
    reason = "test code: a panic is the failure report, and each test is one scenario"
)]

mod common;

use std::path::Path;
use std::process::Command;

use base64ct::Encoding as _;
use cairn_signer::Error;
use cairn_signer::appliance::Appliance;
use cairn_signer::certs;
use cairn_signer::hsm::{LoginFailures, Module};
use cairn_signer::session::{ReleaseInput, verify_release_entry};
use cairn_signer::shares::ShareFile;
use cairn_verifier::cose::{CoseSign1, ReleaseKey};
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::{KeyAction, KeyRole};
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::{UnixTime, Version};
use common::{CUSTODIANS, NOW, ceremony, in_token, passphrase, passphrase_text, present};
use p256::ecdsa::signature::Verifier as _;
use sha2::Digest as _;

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn release_input(id: &str) -> ReleaseInput {
    ReleaseInput {
        release_id: id.into(),
        product: "Smart Controller".into(),
        family: "STM32H5".into(),
        hardware_revisions: vec!["rev-b".into(), "rev-c".into()],
        version: Version::new(2, 4, 1),
        security_epoch: 7,
        support_until: UnixTime(NOW.0 + 5 * 365 * 86_400),
        advisories: vec!["CVE-2026-12345".into(), "SC-SA-2026-004".into()],
        artifact: Some("controller-fw-2.4.1-security.bin".into()),
    }
}

fn checkpoint_verifies(appliance: &Appliance, note: &str) {
    let log_cert = appliance.certificate(KeyRole::Log).unwrap();
    let public = certs::verifier_key(&log_cert, "log").unwrap();
    let origin = appliance.state().origin.as_str();
    let key = LogKey::new(origin, origin, public, &Software).unwrap();
    Checkpoint::parse(note.as_bytes())
        .unwrap()
        .verify(&key, &Software)
        .expect("checkpoint verifies with the log certificate's key");
}

#[test]
fn ceremony_keys_stay_in_the_token_and_the_record_verifies() {
    in_token(
        "ceremony_keys_stay_in_the_token_and_the_record_verifies",
        |module, dir| {
            let report = ceremony(module, dir, "cairn");
            assert_eq!(report.share_files.len(), 5);
            let appliance = Appliance::open(dir.join("cairn")).unwrap();
            let state = appliance.state();
            assert_eq!(state.threshold, 3);
            assert_eq!(state.custodians, CUSTODIANS);
            assert!(
                state
                    .keys
                    .release
                    .uri
                    .starts_with("pkcs11:token=cairn;object=cairn-release-0;id=%01%00")
            );

            // Entry 0 is the root-signed ceremony record; the checkpoint over it verifies.
            assert_eq!(appliance.vault().size(), 1);
            let root_fp = certs::fingerprint(
                &std::fs::read_to_string(dir.join("cairn/certs/root.pem"))
                    .map(|pem| der::pem::decode_vec(pem.as_bytes()).unwrap().1)
                    .unwrap(),
            );
            let verified = appliance.verify_ceremony(Some(&root_fp)).unwrap();
            assert_eq!(verified.custodians, CUSTODIANS);
            assert_eq!(verified.threshold, 3);
            assert!(verified.software.0.contains("cairn"));
            checkpoint_verifies(&appliance, &report.checkpoint);
            let wrong_fp = [0u8; 32];
            let err = appliance.verify_ceremony(Some(&wrong_fp)).unwrap_err();
            assert!(err.to_string().contains("fingerprint"), "{err}");

            // openssl accepts the chain, and the profile is what docs/ceremony.md says.
            let certs_dir = dir.join("cairn/certs");
            let root = certs_dir.join("root.pem");
            for leaf in ["release-0.pem", "log-0.pem"] {
                let (ok, out) = openssl(&[
                    "verify",
                    "-x509_strict",
                    "-CAfile",
                    root.to_str().unwrap(),
                    certs_dir.join(leaf).to_str().unwrap(),
                ]);
                assert!(ok, "openssl verify {leaf}: {out}");
            }
            let (ok, text) = openssl(&[
                "x509",
                "-noout",
                "-text",
                "-in",
                certs_dir.join("release-0.pem").to_str().unwrap(),
            ]);
            assert!(ok);
            assert!(
                text.contains("CA:FALSE")
                    && text.contains("Code Signing")
                    && text.contains("Digital Signature"),
                "{text}"
            );
            let (_, text) = openssl(&["x509", "-noout", "-text", "-in", root.to_str().unwrap()]);
            assert!(
                text.contains("CA:TRUE, pathlen:0") && text.contains("Certificate Sign"),
                "{text}"
            );

            // The private keys are sensitive, never extractable, and their value cannot be read.
            let session = appliance
                .unlock(
                    module,
                    &present(dir, "cairn", &["alice", "carol", "erin"]),
                    NOW,
                )
                .unwrap();
            for role in [KeyRole::Root, KeyRole::Release, KeyRole::Log] {
                let key = session.key(role).unwrap();
                let p = session.token().protection_of(key.private_handle()).unwrap();
                assert!(
                    p.sensitive && !p.extractable && p.always_sensitive && p.never_extractable,
                    "{role:?}: {p:?}"
                );
                assert_eq!(
                    session.token().private_value(key.private_handle()).unwrap(),
                    None,
                    "{role:?} value readable"
                );
            }

            // A second ceremony on the same token label is refused.
            let err = cairn_signer::ceremony::init(
                module,
                &cairn_signer::ceremony::CeremonyOptions {
                    home: dir.join("again"),
                    source: cairn_signer::ceremony::TokenSource::Fresh,
                    token: "cairn".into(),
                    origin: "again.example/log".into(),
                    organization: "Smart Controller OEM".into(),
                    threshold: 2,
                    custodians: ["x", "y"]
                        .iter()
                        .map(|n| cairn_signer::ceremony::Custodian {
                            name: (*n).into(),
                            share_path: dir.join(format!("again-{n}")),
                            passphrase: passphrase(n),
                        })
                        .collect(),
                    kdf: common::TEST_KDF,
                    now: NOW,
                },
            )
            .unwrap_err();
            assert!(matches!(err, Error::TokenExists(_)), "{err}");
        },
    );
}

/// Whether the token's module reports failed logins in the token flags (its profile).
fn reports_failed_logins(module: &Module, token: &str) -> bool {
    let profile = module.profile(Some(token)).unwrap();
    println!("module profile: {profile}");
    profile.login_failures == LoginFailures::Flags
}

/// Every error text a refused session produced, for the secret scan.
fn refused(
    appliance: &Appliance,
    module: &Module,
    dir: &Path,
    shares: Vec<(ShareFile, cairn_signer::shares::Passphrase)>,
) -> Error {
    let err = appliance.unlock(module, &shares, NOW).unwrap_err();
    // Print it: the parent scans this process's output for secrets.
    println!("refused: {err}\nrefused (debug): {err:?}");
    // Only a module that reports failed logins in its token flags can show that no C_Login was
    // attempted (the module profile says which; tpm2-pkcs11 does not).
    if reports_failed_logins(module, &appliance.state().token) {
        assert!(
            !module.failed_logins(&appliance.state().token).unwrap(),
            "a refused session reached C_Login: {err}"
        );
    }
    let _ = dir;
    err
}

#[test]
fn bad_shares_are_refused_before_any_login() {
    let output = in_token("bad_shares_are_refused_before_any_login", |module, dir| {
        ceremony(module, dir, "cairn");
        ceremony(module, dir, "other");
        let appliance = Appliance::open(dir.join("cairn")).unwrap();

        // k - 1 shares.
        let err = refused(
            &appliance,
            module,
            dir,
            present(dir, "cairn", &["alice", "bob"]),
        );
        assert!(
            matches!(err, Error::NotEnoughShares { got: 2, needed: 3 }),
            "{err}"
        );
        // A wrong passphrase.
        let mut shares = present(dir, "cairn", &["alice", "bob", "carol"]);
        shares[1].1 = passphrase("mallory");
        let err = refused(&appliance, module, dir, shares);
        assert!(
            matches!(&err, Error::WrongPassphrase { custodian, .. } if custodian == "bob"),
            "{err}"
        );
        // A share from another ceremony.
        let mut shares = present(dir, "cairn", &["alice", "bob"]);
        shares.extend(present(dir, "other", &["carol"]));
        let err = refused(&appliance, module, dir, shares);
        assert!(
            matches!(&err, Error::ForeignShare { custodian, .. } if custodian == "carol"),
            "{err}"
        );
        // The same share twice.
        let err = refused(
            &appliance,
            module,
            dir,
            present(dir, "cairn", &["alice", "bob", "alice"]),
        );
        assert!(
            matches!(&err, Error::DuplicateShare { custodian, .. } if custodian == "alice"),
            "{err}"
        );
        // A share file whose header was edited (custodian index moved) no longer opens.
        let path = common::share_path(dir, "cairn", "bob");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"index\": 2", "\"index\": 4")
            .replace("\"custodian\": \"bob\"", "\"custodian\": \"dave\"");
        let forged = ShareFile::parse(&text, &path).unwrap();
        let mut shares = present(dir, "cairn", &["alice", "carol"]);
        shares.push((forged, passphrase("bob")));
        let err = refused(&appliance, module, dir, shares);
        assert!(matches!(err, Error::WrongPassphrase { .. }), "{err}");
        // A substituted share: a well-formed share of this ceremony, sealed under bob's passphrase,
        // whose value is not bob's. It opens; the rebuilt secret fails the check value.
        let bob = ShareFile::read(&common::share_path(dir, "cairn", "bob")).unwrap();
        let mut value = vec![2u8];
        value.extend([0x5au8; 32]);
        let substitute = ShareFile::seal(
            dir.join("substitute.share"),
            bob.ceremony,
            &bob.token,
            &bob.custodian,
            bob.index,
            bob.threshold,
            bob.custodians,
            common::TEST_KDF,
            &value,
            &passphrase("bob"),
        )
        .unwrap();
        let mut shares = present(dir, "cairn", &["alice", "carol"]);
        shares.push((substitute, passphrase("bob")));
        let err = refused(&appliance, module, dir, shares);
        assert!(matches!(err, Error::SharesInconsistent), "{err}");
        // A share file asking for more Argon2id memory than the bound is refused before the KDF.
        let bob_path = common::share_path(dir, "cairn", "bob");
        let text = std::fs::read_to_string(&bob_path)
            .unwrap()
            .replace("\"memory_kib\": 8192", "\"memory_kib\": 8388608");
        let err = ShareFile::parse(&text, &bob_path).unwrap_err();
        assert!(
            err.to_string().contains("outside 8192 to 4194304 KiB"),
            "{err}"
        );
        // A malformed share file names the file.
        let err =
            ShareFile::parse("{\"format\": 1}", Path::new("/media/bob/bob.share")).unwrap_err();
        assert!(err.to_string().contains("/media/bob/bob.share"), "{err}");

        // The control: a wrong PIN at C_Login is what the check above would have caught, where
        // the module reports failed logins at all. (tools/with-tpm2 relaxed the TPM's lockout.)
        let wrong = cryptoki::types::AuthPin::from("0000".to_owned());
        let err = module.login("cairn", &wrong).unwrap_err();
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
        if reports_failed_logins(module, "cairn") {
            assert!(
                module.failed_logins("cairn").unwrap(),
                "the module profile says failed logins show in the token flags"
            );
        }
        // And k good shares from any three custodians unlock.
        let session = appliance
            .unlock(
                module,
                &present(dir, "cairn", &["erin", "bob", "dave"]),
                NOW,
            )
            .unwrap();
        assert_eq!(session.custodians(), ["bob", "dave", "erin"]);
    });
    if let Some(text) = output {
        assert!(text.contains("refused: "), "the child printed its errors");
        for name in CUSTODIANS.iter().chain(["mallory"].iter()) {
            assert!(
                !text.contains(&passphrase_text(name)),
                "passphrase of {name} in the output"
            );
        }
        for line in text.lines() {
            // No hex run long enough to be a PIN (64), a sealed share (98) or a secret.
            let longest = line
                .split(|c: char| !c.is_ascii_hexdigit())
                .map(str::len)
                .max()
                .unwrap_or(0);
            assert!(longest < 40, "a long hex string in the output: {line}");
        }
    }
}

#[test]
fn releases_are_signed_in_the_token_and_verify_with_p256_openssl_and_the_device_verifier() {
    in_token(
        "releases_are_signed_in_the_token_and_verify_with_p256_openssl_and_the_device_verifier",
        |module, dir| {
            ceremony(module, dir, "cairn");
            let appliance = Appliance::open(dir.join("cairn")).unwrap();
            let image = dir.join("controller-fw-2.4.1-security.bin");
            let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&image, &bytes).unwrap();
            let session = appliance
                .unlock(
                    module,
                    &present(dir, "cairn", &["alice", "bob", "carol"]),
                    NOW,
                )
                .unwrap();
            let signed = session
                .sign_release(&image, &release_input("controller-fw-2.4.1"), NOW)
                .unwrap();
            assert_eq!(signed.session_index, 1);
            assert_eq!(signed.index, 2);
            assert_eq!(signed.image_size, 300_000);
            checkpoint_verifies(&appliance, &signed.checkpoint);
            // The log key's checkpoint signature, with openssl and the log certificate's key.
            let cp = Checkpoint::parse(signed.checkpoint.as_bytes()).unwrap();
            let line = cp.signatures.lines().next().unwrap();
            let b64 = line.rsplit(' ').next().unwrap();
            let raw = base64ct::Base64::decode_vec(b64).unwrap();
            std::fs::write(dir.join("note.txt"), cp.text).unwrap();
            std::fs::write(dir.join("note.sig"), &raw[4..]).unwrap();
            let (ok, out) = openssl(&[
                "x509",
                "-pubkey",
                "-noout",
                "-in",
                dir.join("cairn/certs/log-0.pem").to_str().unwrap(),
                "-out",
                dir.join("log-pub.pem").to_str().unwrap(),
            ]);
            assert!(ok, "{out}");
            let (ok, out) = openssl(&[
                "dgst",
                "-sha256",
                "-verify",
                dir.join("log-pub.pem").to_str().unwrap(),
                "-signature",
                dir.join("note.sig").to_str().unwrap(),
                dir.join("note.txt").to_str().unwrap(),
            ]);
            assert!(
                ok && out.contains("Verified OK"),
                "openssl on the checkpoint: {out}"
            );

            // The session record names the custodians.
            let entry = appliance.vault().entry(1).unwrap();
            let Statement::Session(record) = Statement::decode(&entry).unwrap() else {
                panic!("entry 1 is not a session record");
            };
            assert_eq!(
                record.custodians.iter().collect::<Vec<_>>(),
                ["alice", "bob", "carol"]
            );
            assert_eq!(record.purpose.as_str(), "release sign controller-fw-2.4.1");

            // The device verifier, with the key from the release certificate.
            let root_cert = appliance.certificate(KeyRole::Root).unwrap();
            let release_cert = appliance.certificate(KeyRole::Release).unwrap();
            let entry = appliance.vault().entry(2).unwrap();
            let (id, digest) =
                verify_release_entry(&entry, &root_cert, &release_cert, Some(&image)).unwrap();
            assert_eq!(id, "controller-fw-2.4.1");
            assert_eq!(digest, <[u8; 32]>::from(sha2::Sha256::digest(&bytes)));
            let cose = CoseSign1::decode(&signed.cose_sign1).unwrap();
            let key = ReleaseKey::new(
                certs::verifier_key(&release_cert, "release").unwrap(),
                &Software,
            );
            cose.verify(&key, &Software).unwrap();
            // A different image is refused.
            std::fs::write(dir.join("other.bin"), b"not the image").unwrap();
            let err = verify_release_entry(
                &entry,
                &root_cert,
                &release_cert,
                Some(&dir.join("other.bin")),
            )
            .unwrap_err();
            assert!(err.to_string().contains("is not the signed"), "{err}");

            // p256 and openssl, on the COSE Sig_structure and on fresh messages.
            let public = certs::public_key(&release_cert, "release").unwrap();
            let tbs = cairn_verifier::cose::write::sig_structure(cose.protected, cose.payload);
            let sig = p256::ecdsa::Signature::from_slice(&cose.signature.0).unwrap();
            public
                .verify(&tbs, &sig)
                .expect("p256 verifies the release signature");
            let release_key = session.key(KeyRole::Release).unwrap();
            let mut messages = vec![tbs.clone()];
            messages.extend((0..20u8).map(|i| vec![i; usize::from(i) * 13]));
            for (i, msg) in messages.iter().enumerate() {
                let sig: p256::ecdsa::Signature = signature::Signer::sign(&release_key, msg);
                public.verify(msg, &sig).expect("p256 verifies");
                let data = dir.join(format!("msg-{i}"));
                let sig_file = dir.join(format!("msg-{i}.sig"));
                std::fs::write(&data, msg).unwrap();
                std::fs::write(&sig_file, sig.to_der().as_bytes()).unwrap();
                let pubkey = dir.join("release-pub.pem");
                let (ok, out) = openssl(&[
                    "x509",
                    "-pubkey",
                    "-noout",
                    "-in",
                    dir.join("cairn/certs/release-0.pem").to_str().unwrap(),
                    "-out",
                    pubkey.to_str().unwrap(),
                ]);
                assert!(ok, "{out}");
                let (ok, out) = openssl(&[
                    "dgst",
                    "-sha256",
                    "-verify",
                    pubkey.to_str().unwrap(),
                    "-signature",
                    sig_file.to_str().unwrap(),
                    data.to_str().unwrap(),
                ]);
                assert!(
                    ok && out.contains("Verified OK"),
                    "openssl on message {i}: {out}"
                );
            }

            // The same release id twice is refused by the log, and the log is unchanged.
            let size = appliance.vault().size();
            let err = session
                .sign_release(&image, &release_input("controller-fw-2.4.1"), NOW)
                .unwrap_err();
            assert!(err.to_string().contains("controller-fw-2.4.1"), "{err}");
            assert_eq!(appliance.vault().size(), size);
            // Bad input names the field.
            let mut bad = release_input("controller-fw-2.4.2");
            bad.hardware_revisions = vec!["rev c".into()];
            let err = session.sign_release(&image, &bad, NOW).unwrap_err();
            assert!(
                err.to_string().contains("hardware revision \"rev c\""),
                "{err}"
            );
        },
    );
}

#[test]
fn an_hsm_failure_mid_session_leaves_the_log_unchanged_and_names_the_call() {
    in_token(
        "an_hsm_failure_mid_session_leaves_the_log_unchanged_and_names_the_call",
        |module, dir| {
            ceremony(module, dir, "cairn");
            let appliance = Appliance::open(dir.join("cairn")).unwrap();
            let image = dir.join("fw.bin");
            std::fs::write(&image, vec![0x5a; 4096]).unwrap();
            let session = appliance
                .unlock(
                    module,
                    &present(dir, "cairn", &["bob", "dave", "erin"]),
                    NOW,
                )
                .unwrap();
            let release = session.key(KeyRole::Release).unwrap();
            let log = session.key(KeyRole::Log).unwrap();
            let size = appliance.vault().size();
            let checkpoints = appliance.vault().checkpoint_sizes().unwrap();
            // The log key disappears from the token after the session found it: the release
            // signature succeeds, the checkpoint signature fails.
            session.token().destroy(log.private_handle()).unwrap();
            let err = session
                .sign_release_with(
                    &release,
                    &log,
                    &image,
                    &release_input("controller-fw-2.4.1"),
                    NOW,
                )
                .unwrap_err();
            assert!(
                matches!(err, Error::Pkcs11 { call: "C_Sign", .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("C_Sign"), "{err}");
            assert_eq!(appliance.vault().size(), size, "nothing appended");
            assert_eq!(
                appliance.vault().checkpoint_sizes().unwrap(),
                checkpoints,
                "no checkpoint"
            );
            let report = appliance.vault().fsck(&mut |_, _| {}).unwrap();
            assert_eq!(report.size, size);
        },
    );
}

#[test]
fn release_key_rotation_and_revocation_are_root_signed_and_enforced() {
    in_token(
        "release_key_rotation_and_revocation_are_root_signed_and_enforced",
        |module, dir| {
            ceremony(module, dir, "cairn");
            let image = dir.join("fw.bin");
            std::fs::write(&image, vec![1u8; 1000]).unwrap();
            let old_fp;
            {
                let appliance = Appliance::open(dir.join("cairn")).unwrap();
                old_fp = appliance.state().keys.release.fingerprint.clone();
                let session = appliance
                    .unlock(
                        module,
                        &present(dir, "cairn", &["alice", "bob", "carol"]),
                        NOW,
                    )
                    .unwrap();
                let rotated = session
                    .rotate_release_key("scheduled rotation", NOW)
                    .unwrap();
                assert!(
                    rotated
                        .new_uri
                        .as_deref()
                        .unwrap()
                        .contains("object=cairn-release-1;id=%01%01")
                );
                checkpoint_verifies(&appliance, &rotated.checkpoint);
                let entry = appliance.vault().entry(rotated.index).unwrap();
                let Statement::Key { statement, .. } = Statement::decode(&entry).unwrap() else {
                    panic!("not a key statement");
                };
                assert_eq!(statement.action, KeyAction::Rotate);
                assert_eq!(statement.reason.as_str(), "scheduled rotation");
            }
            // Reopened: the new key signs, its certificate chains to the root.
            let appliance = Appliance::open(dir.join("cairn")).unwrap();
            assert_ne!(appliance.state().keys.release.fingerprint, old_fp);
            let (ok, out) = openssl(&[
                "verify",
                "-CAfile",
                dir.join("cairn/certs/root.pem").to_str().unwrap(),
                dir.join("cairn/certs/release-1.pem").to_str().unwrap(),
            ]);
            assert!(ok, "{out}");
            let session = appliance
                .unlock(
                    module,
                    &present(dir, "cairn", &["carol", "dave", "erin"]),
                    NOW,
                )
                .unwrap();
            let signed = session
                .sign_release(&image, &release_input("fw-3.0.0"), NOW)
                .unwrap();
            let root_cert = appliance.certificate(KeyRole::Root).unwrap();
            let new_cert = appliance.certificate(KeyRole::Release).unwrap();
            verify_release_entry(
                &appliance.vault().entry(signed.index).unwrap(),
                &root_cert,
                &new_cert,
                Some(&image),
            )
            .unwrap();
            // Revoked: the appliance signs nothing more with it.
            let revoked = session
                .revoke(KeyRole::Release, "key compromise drill", NOW)
                .unwrap();
            let err = session
                .sign_release(&image, &release_input("fw-3.0.1"), NOW)
                .unwrap_err();
            assert!(
                matches!(err, Error::Revoked { index, .. } if index == revoked.index),
                "{err}"
            );
            assert_eq!(
                appliance
                    .vault()
                    .query_indices(cairn_vault::Query::Kind(Kind::KEY))
                    .unwrap()
                    .len(),
                2
            );
            // The root is not revoked by a statement.
            assert!(session.revoke(KeyRole::Root, "no", NOW).is_err());
        },
    );
}
