//! Property: a release signed in MCUboot format with the release key in the HSM (SoftHSM2) is the
//! image MCUboot's own `imgtool` 2.5.0 (the project's `.venv`, installed by tools/setup) verifies
//! with the release certificate's key, with the version and security counter the statement says;
//! imgtool's external-signing flow with an HSM signature gives images cairn checks and logs; and a
//! bad image is a named error with nothing logged.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and each test is one scenario"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64ct::{Base64, Encoding as _};
use cairn_signer::Error;
use cairn_signer::appliance::Appliance;
use cairn_signer::certs;
use cairn_signer::mcuboot::{McubootSource, sign_hash};
use cairn_signer::session::{ReleaseInput, verify_release_entry};
use cairn_verifier::cose::CoseSign1;
use cairn_verifier::custody::KeyRole;
use cairn_verifier::mcuboot::write::Layout;
use cairn_verifier::mcuboot::{Image, tlv};
use cairn_verifier::statement::ReleaseStatement;
use cairn_verifier::types::{UnixTime, Version};
use common::{NOW, ceremony, in_token, present};
use sha2::Digest as _;

const SLOT: u64 = 0x20_0000;

fn venv_bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} not found: MCUboot's imgtool 2.5.0 must be installed by tools/setup into the project's \
         .venv (run tools/setup)",
        path.display()
    );
    path
}

fn imgtool(args: &[&str]) -> (bool, String) {
    let out = Command::new(venv_bin("imgtool"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn input(id: &str, version: Version, epoch: u64) -> ReleaseInput {
    ReleaseInput {
        release_id: id.into(),
        product: "Smart Controller".into(),
        family: "STM32H5".into(),
        hardware_revisions: vec!["rev-c".into()],
        version,
        security_epoch: epoch,
        support_until: UnixTime(NOW.0 + 5 * 365 * 86_400),
        advisories: Vec::new(),
        artifact: None,
    }
}

/// The release certificate's public key as PEM (what an OEM gives imgtool and MCUboot).
fn release_pem(appliance: &Appliance, dir: &Path) -> PathBuf {
    let cert = appliance.certificate(KeyRole::Release).unwrap();
    let der = certs::verifier_key(&cert, "release").unwrap().spki_der();
    let b64 = Base64::encode_string(&der);
    let path = dir.join("release.pem");
    std::fs::write(
        &path,
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &b64[..64],
            &b64[64..]
        ),
    )
    .unwrap();
    path
}

fn firmware(n: usize) -> Vec<u8> {
    (0..n).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

fn statement_of(cose: &[u8]) -> ReleaseStatement<'_> {
    ReleaseStatement::decode(CoseSign1::decode(cose).unwrap().payload).unwrap()
}

#[test]
fn hsm_signed_mcuboot_releases_pass_imgtool() {
    in_token("hsm_signed_mcuboot_releases_pass_imgtool", |module, dir| {
        ceremony(module, dir, "cairn");
        let appliance = Appliance::open(dir.join("cairn")).unwrap();
        let session = appliance
            .unlock(
                module,
                &present(dir, "cairn", &["alice", "bob", "carol"]),
                NOW,
            )
            .unwrap();
        let pem = release_pem(&appliance, dir);
        let root = appliance.certificate(KeyRole::Root).unwrap();
        let release_cert = appliance.certificate(KeyRole::Release).unwrap();
        let trailer = Layout {
            slot_size: Some(SLOT),
            pad: true,
            ..Layout::default()
        }
        .trailer_size();
        let full = usize::try_from(SLOT - trailer).unwrap() - (0x400 + 12 + 152);
        for (i, (n, pad)) in [
            (0, false),
            (1, false),
            (4096, false),
            (1 << 20, false),
            (full, true),
        ]
        .into_iter()
        .enumerate()
        {
            let fw = dir.join(format!("fw-{n}.bin"));
            std::fs::write(&fw, firmware(n)).unwrap();
            let out = dir.join(format!("fw-{n}.signed.bin"));
            let source = McubootSource::Firmware {
                layout: Layout {
                    slot_size: Some(SLOT),
                    pad,
                    ..Layout::default()
                },
                out: out.clone(),
            };
            let version = Version::new(2, 4, u32::try_from(i).unwrap());
            let signed = session
                .sign_mcuboot_release(&fw, &input(&format!("r-{i}"), version, 7), &source, NOW)
                .unwrap();
            let bytes = std::fs::read(&out).unwrap();
            if pad {
                assert_eq!(bytes.len() as u64, SLOT);
            }
            // The statement binds the whole signed image and carries its SHA256 TLV.
            let statement = statement_of(&signed.cose_sign1);
            let image = Image::parse(&bytes).unwrap();
            assert_eq!(statement.image_size, bytes.len() as u64);
            assert_eq!(
                statement.image_digest,
                <[u8; 32]>::from(sha2::Sha256::digest(&bytes))
            );
            assert_eq!(statement.mcuboot_hash, Some(image.tlvs.hash));
            assert_eq!(statement.artifact.as_str(), format!("fw-{n}.signed.bin"));
            // imgtool, with the release certificate's key
            let (ok, text) =
                imgtool(&["verify", "-k", pem.to_str().unwrap(), out.to_str().unwrap()]);
            assert!(
                ok,
                "{n} bytes: imgtool verify refused the HSM-signed image:\n{text}"
            );
            assert!(
                text.contains(&format!("Image version: 2.4.{i}+0")),
                "{text}"
            );
            let (ok, json) = imgtool(&["dumpinfo", "-f", "json", out.to_str().unwrap()]);
            assert!(ok, "{json}");
            let info: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(info["header"]["version"], format!("{version}+0"));
            assert_eq!(info["tlv_area"]["tlvs_prot"][0]["data"], "07000000");
            // cairn's own offline check: the device's check on the file
            let entry = appliance.vault().entry(signed.index).unwrap();
            verify_release_entry(&entry, &root, &release_cert, Some(&out)).unwrap();
            // and one flipped bit in the file is refused by both
            let mut flipped = bytes.clone();
            flipped[bytes.len() / 2] ^= 0x10;
            let bad = dir.join("flipped.bin");
            std::fs::write(&bad, &flipped).unwrap();
            let (ok, _) = imgtool(&["verify", "-k", pem.to_str().unwrap(), bad.to_str().unwrap()]);
            assert!(!ok || pad, "{n} bytes: imgtool accepted a flipped bit");
            assert!(verify_release_entry(&entry, &root, &release_cert, Some(&bad)).is_err());
        }
    });
}

/// imgtool builds the image, the HSM signs the digest imgtool exports, imgtool puts the signature
/// in; `release sign` on that finished image checks and logs it. Then every bad variant of it
/// is refused with a named error and leaves the log as it was.
#[test]
fn imgtool_external_signing_with_the_hsm_and_bad_images() {
    in_token(
        "imgtool_external_signing_with_the_hsm_and_bad_images",
        |module, dir| {
            ceremony(module, dir, "cairn");
            let appliance = Appliance::open(dir.join("cairn")).unwrap();
            let session = appliance
                .unlock(
                    module,
                    &present(dir, "cairn", &["alice", "bob", "carol"]),
                    NOW,
                )
                .unwrap();
            let pem = release_pem(&appliance, dir);
            let fw = dir.join("fw.bin");
            std::fs::write(&fw, firmware(5000)).unwrap();
            let sign_args = |extra: &[&str], out: &Path| {
                let mut a = vec![
                    "sign",
                    "--pad-header",
                    "-H",
                    "0x400",
                    "-S",
                    "0x20000",
                    "-v",
                    "2.4.1",
                    "-s",
                    "7",
                    "--fix-sig-pubkey",
                    pem.to_str().unwrap(),
                ];
                a.extend_from_slice(extra);
                a.push(fw.to_str().unwrap());
                a.push(out.to_str().unwrap());
                a.into_iter().map(str::to_owned).collect::<Vec<_>>()
            };
            let run = |args: Vec<String>| {
                let (ok, text) = imgtool(&args.iter().map(String::as_str).collect::<Vec<_>>());
                assert!(ok, "{text}");
            };
            let digest_path = dir.join("digest.bin");
            run(sign_args(&["--vector-to-sign", "digest"], &digest_path));
            let digest: [u8; 32] = std::fs::read(&digest_path).unwrap().try_into().unwrap();
            let release_key = session.key(KeyRole::Release).unwrap();
            let der = sign_hash(&release_key, &digest).unwrap();
            let sig_path = dir.join("sig.b64");
            std::fs::write(&sig_path, Base64::encode_string(&der)).unwrap();
            let finished = dir.join("finished.bin");
            run(sign_args(
                &["--fix-sig", sig_path.to_str().unwrap()],
                &finished,
            ));
            let (ok, text) = imgtool(&[
                "verify",
                "-k",
                pem.to_str().unwrap(),
                finished.to_str().unwrap(),
            ]);
            assert!(ok, "{text}");
            let good = std::fs::read(&finished).unwrap();
            assert_eq!(Image::parse(&good).unwrap().tlvs.hash, digest);

            let size_before = appliance.vault().size();
            let second_sig = format!("second TLV of type {:#04x}", tlv::ECDSA_SIG);
            let info = 0x400 + 5000 + 12;
            let sig_tlv = good[info + 76..].to_vec();
            let variants: Vec<(&str, Vec<u8>, Version, u64, &str)> = vec![
                (
                    "size beyond the file",
                    {
                        let mut b = good.clone();
                        b[12..16].copy_from_slice(&(1u32 << 24).to_le_bytes());
                        b
                    },
                    Version::new(2, 4, 1),
                    7,
                    "firmware",
                ),
                (
                    "overlapping TLV areas",
                    {
                        let mut b = good.clone();
                        b[10] = 16;
                        b
                    },
                    Version::new(2, 4, 1),
                    7,
                    "overlap",
                ),
                (
                    "TLV length past the end",
                    {
                        let mut b = good.clone();
                        b[info + 6..info + 8].copy_from_slice(&300u16.to_le_bytes());
                        b
                    },
                    Version::new(2, 4, 1),
                    7,
                    "past the end",
                ),
                (
                    "second signature TLV",
                    {
                        let mut b = good.clone();
                        let total = u16::from_le_bytes([b[info + 2], b[info + 3]])
                            + u16::try_from(sig_tlv.len()).unwrap();
                        b[info + 2..info + 4].copy_from_slice(&total.to_le_bytes());
                        b.extend_from_slice(&sig_tlv);
                        b
                    },
                    Version::new(2, 4, 1),
                    7,
                    &second_sig,
                ),
                (
                    "wrong magic",
                    {
                        let mut b = good.clone();
                        b[0] ^= 0xff;
                        b
                    },
                    Version::new(2, 4, 1),
                    7,
                    "magic",
                ),
                (
                    "version disagrees with --version",
                    good.clone(),
                    Version::new(2, 4, 2),
                    7,
                    "is not the release version 2.4.2",
                ),
                (
                    "counter disagrees with --security-epoch",
                    good.clone(),
                    Version::new(2, 4, 1),
                    8,
                    "security counter Some(7) is not the release's security epoch 8",
                ),
            ];
            for (i, (name, bytes, version, epoch, says)) in variants.into_iter().enumerate() {
                let path = dir.join(format!("bad-{i}.bin"));
                std::fs::write(&path, &bytes).unwrap();
                let err = session
                    .sign_mcuboot_release(
                        &path,
                        &input("bad", version, epoch),
                        &McubootSource::Finished,
                        NOW,
                    )
                    .unwrap_err();
                let Error::Image { path: p, cause } = &err else {
                    panic!("{name}: {err}");
                };
                assert_eq!(p, &path);
                assert!(err.to_string().contains(says), "{name}: {err}");
                if name.starts_with("version") || name.starts_with("counter") {
                    assert!(
                        !matches!(cause, cairn_verifier::Error::MalformedImage(_)),
                        "{name}"
                    );
                } else {
                    assert!(
                        matches!(cause, cairn_verifier::Error::MalformedImage(_)),
                        "{name}: {cause:?}"
                    );
                }
                assert_eq!(
                    appliance.vault().size(),
                    size_before,
                    "{name}: something was logged"
                );
            }
            // raw firmware that already is an MCUboot image is not wrapped again
            let out = dir.join("twice.bin");
            let err = session
                .sign_mcuboot_release(
                    &finished,
                    &input("twice", Version::new(2, 4, 1), 7),
                    &McubootSource::Firmware {
                        layout: Layout::default(),
                        out: out.clone(),
                    },
                    NOW,
                )
                .unwrap_err();
            assert!(
                err.to_string().contains("already is an MCUboot image"),
                "{err}"
            );
            assert!(!out.exists());
            assert_eq!(appliance.vault().size(), size_before);

            // The good one is logged as it is.
            let signed = session
                .sign_mcuboot_release(
                    &finished,
                    &input("controller-fw-2.4.1", Version::new(2, 4, 1), 7),
                    &McubootSource::Finished,
                    NOW,
                )
                .unwrap();
            let statement = statement_of(&signed.cose_sign1);
            assert_eq!(statement.mcuboot_hash, Some(digest));
            assert_eq!(statement.image_size, good.len() as u64);
        },
    );
}
