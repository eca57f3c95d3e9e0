//! Property: cairn's MCUboot images are the images MCUboot's own `imgtool` (PyPI 2.5.0, installed
//! by tools/setup into the project's `.venv`) makes and accepts, and the other way round.
//!
//! - `imgtool verify -k PUB.pem` accepts cairn's images for firmware of 0 B, 1 B, 4 KiB, 1 MiB and
//!   a full slot, and `imgtool dumpinfo` reads back their version and security counter;
//! - `imgtool sign --pad-header --vector-to-sign digest` gives the digest cairn signs, and
//!   `--fix-sig` with cairn's signature gives byte for byte cairn's image;
//! - images imgtool signs with its own key parse with cairn's parser and their signature verifies;
//! - one flipped bit anywhere in a signed image is refused by both imgtool and cairn's boot check.
//!
//! imgtool missing is a failure, not a skip: tools/test runs tools/setup, which installs it.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64ct::{Base64, Encoding as _};
use cairn_verifier::boot::{MemoryImage, StoredState, verify_delivery};
use cairn_verifier::crypto::{Crypto, PublicKey, Software};
use cairn_verifier::mcuboot::write::Layout;
use cairn_verifier::mcuboot::{Image, ImageVersion, KeyRef};
use cairn_verifier::test_support::{Fixture, device, mcuboot_image_with, public_key, test_key};

const V241: ImageVersion = ImageVersion {
    major: 2,
    minor: 4,
    revision: 1,
    build: 0,
};
/// The secondary slot of these tests: 2 MiB.
const SLOT: u64 = 0x20_0000;

/// The project's venv (tools/setup); a clear failure when it is missing.
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
        .expect("running imgtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = Base64::encode_string(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn write_public_pem(dir: &Path, key: &PublicKey) -> PathBuf {
    let path = dir.join("release.pem");
    std::fs::write(&path, pem("PUBLIC KEY", &key.spki_der())).unwrap();
    path
}

/// The test key `n` as a SEC 1 `ECPrivateKey` PEM (RFC 5915), which imgtool loads.
fn write_private_pem(dir: &Path, n: u8) -> PathBuf {
    let key = test_key(n);
    let mut der = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(&key.to_bytes());
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0xa1, 0x44, 0x03,
        0x42, 0x00, 0x04,
    ]);
    der.extend_from_slice(&public_key(&key).0);
    let path = dir.join(format!("key-{n}.pem"));
    std::fs::write(&path, pem("EC PRIVATE KEY", &der)).unwrap();
    path
}

fn firmware(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

fn layout(pad: bool) -> Layout {
    Layout {
        slot_size: Some(SLOT),
        pad,
        ..Layout::default()
    }
}

/// The largest firmware that fits the slot with the trailer and the longest signature.
fn full_slot_firmware() -> usize {
    let l = layout(true);
    let overhead = 0x400 + 12 + (4 + 36 + 36 + 4 + 72);
    usize::try_from(SLOT - l.trailer_size()).unwrap() - overhead
}

#[test]
fn imgtool_accepts_cairn_images_and_makes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let key = test_key(Fixture::RELEASE_KEY);
    let public = public_key(&key);
    let pub_pem = write_public_pem(dir.path(), &public);
    let key_hash = public.key_hash(&Software);
    for (n, pad) in [
        (0, false),
        (1, false),
        (4096, false),
        (1 << 20, false),
        (full_slot_firmware(), true),
    ] {
        let fw = firmware(n);
        let fw_path = dir.path().join(format!("fw-{n}.bin"));
        std::fs::write(&fw_path, &fw).unwrap();
        let ours = mcuboot_image_with(&fw, &layout(pad), V241, Some(7), Fixture::RELEASE_KEY);
        assert!(!ours.is_empty(), "{n} bytes: cairn built no image");
        if pad {
            assert_eq!(ours.len() as u64, SLOT, "full slot");
        }
        let parsed = Image::parse(&ours).unwrap();
        assert_eq!(parsed.tlvs.key, KeyRef::Hash(key_hash));
        let img_path = dir.path().join(format!("cairn-{n}.bin"));
        std::fs::write(&img_path, &ours).unwrap();

        // imgtool verify and dumpinfo on cairn's image
        let (ok, text) = imgtool(&[
            "verify",
            "-k",
            pub_pem.to_str().unwrap(),
            img_path.to_str().unwrap(),
        ]);
        assert!(
            ok,
            "{n} bytes: imgtool verify refused cairn's image:\n{text}"
        );
        assert!(text.contains("Image version: 2.4.1+0"), "{text}");
        assert!(
            text.contains(&format!("Image digest: {}", hex::encode(parsed.tlvs.hash))),
            "{text}"
        );
        let (ok, json) = imgtool(&["dumpinfo", "-f", "json", img_path.to_str().unwrap()]);
        assert!(ok, "{json}");
        let info: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(info["header"]["version"], "2.4.1+0");
        assert_eq!(info["header"]["img_size"], n);
        assert_eq!(info["tlv_area"]["tlvs_prot"][0]["type_name"], "SEC_CNT");
        assert_eq!(info["tlv_area"]["tlvs_prot"][0]["data"], "07000000");

        // imgtool's own external-signing flow gives the digest cairn signed, and with cairn's
        // signature, cairn's image byte for byte.
        let common = |out: &Path| {
            let mut a: Vec<String> = [
                "sign",
                "--pad-header",
                "-H",
                "0x400",
                "-S",
                &format!("{SLOT:#x}"),
                "-v",
                "2.4.1",
                "-s",
                "7",
                "--fix-sig-pubkey",
                pub_pem.to_str().unwrap(),
            ]
            .map(str::to_owned)
            .to_vec();
            if pad {
                a.push("--pad".into());
            }
            a.push(fw_path.to_str().unwrap().into());
            a.push(out.to_str().unwrap().into());
            a
        };
        let digest_path = dir.path().join("digest.bin");
        let mut args = common(&digest_path);
        args.retain(|a| a != "--pad"); // imgtool would pad the digest file to the slot
        args.splice(1..1, ["--vector-to-sign".into(), "digest".into()]);
        let (ok, text) = imgtool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{text}");
        assert!(
            std::fs::read(&digest_path).unwrap() == parsed.tlvs.hash,
            "{n} bytes: imgtool's digest to sign is not cairn's SHA256 TLV"
        );
        let sig_path = dir.path().join("sig.b64");
        std::fs::write(&sig_path, Base64::encode_string(parsed.tlvs.signature_der)).unwrap();
        let theirs_path = dir.path().join(format!("imgtool-{n}.bin"));
        let mut args = common(&theirs_path);
        args.splice(
            1..1,
            ["--fix-sig".into(), sig_path.to_str().unwrap().into()],
        );
        let (ok, text) = imgtool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{text}");
        let theirs = std::fs::read(&theirs_path).unwrap();
        let first_difference = theirs.iter().zip(&ours).position(|(a, b)| a != b);
        assert!(
            theirs == ours,
            "{n} bytes: imgtool's image with cairn's signature differs from cairn's: \
             {} vs {} bytes, first difference at {first_difference:?}",
            theirs.len(),
            ours.len()
        );
    }
}

#[test]
fn images_imgtool_signs_pass_cairns_parser_and_boot_check() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let key_pem = write_private_pem(dir.path(), Fixture::RELEASE_KEY);
    for n in [0usize, 1, 4096] {
        let fw_path = dir.path().join("fw.bin");
        std::fs::write(&fw_path, firmware(n)).unwrap();
        let out = dir.path().join("signed.bin");
        let (ok, text) = imgtool(&[
            "sign",
            "-k",
            key_pem.to_str().unwrap(),
            "--pad-header",
            "-H",
            "0x400",
            "-S",
            "0x20000",
            "-v",
            "2.4.1",
            "-s",
            "3",
            fw_path.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        let image = std::fs::read(&out).unwrap();
        let parsed = Image::parse(&image).unwrap();
        assert_eq!(parsed.header.version, V241);
        assert_eq!(parsed.tlvs.security_counter, Some(3));
        assert_eq!(parsed.firmware, &firmware(n)[..]);
        assert_eq!(
            parsed.tlvs.key,
            KeyRef::Hash(f.anchors().release.kid),
            "imgtool's KEYHASH is SHA-256 of the DER SubjectPublicKeyInfo"
        );
        // The fixture's release (2.4.1, epoch 3) stating imgtool's image: the boot check accepts.
        let spec = f.spec().with_mcuboot(image.clone());
        let delivery = f.build(&spec).encode();
        let verdict = verify_delivery(
            &delivery,
            &f.anchors(),
            &device(),
            &StoredState::default(),
            &mut MemoryImage(&image),
            &Software,
        );
        assert!(verdict.is_ok(), "{n} bytes: {verdict:?}");
    }
}

/// Flips every bit of a small signed image in turn and asks imgtool (its `Image.verify`, what
/// `imgtool verify` runs, in one Python process) and cairn's boot check about each.
#[test]
fn one_flipped_bit_is_refused_by_imgtool_and_the_boot_check() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let layout = Layout {
        header_size: 32,
        ..Layout::default()
    };
    let image = mcuboot_image_with(&firmware(16), &layout, V241, Some(3), Fixture::RELEASE_KEY);
    let img_path = dir.path().join("image.bin");
    std::fs::write(&img_path, &image).unwrap();
    let pub_pem = write_public_pem(dir.path(), &public_key(&f.release_key));
    let script = r"
import sys
from imgtool import image, keys
from imgtool.main import load_key
key = load_key(sys.argv[2])
data = bytearray(open(sys.argv[1], 'rb').read())
probe = sys.argv[1] + '.flip'
accepted = []
for bit in range(len(data) * 8):
    data[bit // 8] ^= 1 << (bit % 8)
    open(probe, 'wb').write(data)
    try:
        ok = image.Image.verify(probe, key)[0] == image.VerifyResult.OK
    except Exception:
        ok = False
    if ok:
        accepted.append(bit)
    data[bit // 8] ^= 1 << (bit % 8)
print(len(data) * 8, ' '.join(map(str, accepted)))
";
    let out = Command::new(venv_bin("python"))
        .args([
            "-c",
            script,
            img_path.to_str().unwrap(),
            pub_pem.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut words = stdout.split_whitespace();
    let bits: usize = words.next().unwrap().parse().unwrap();
    assert_eq!(bits, image.len() * 8);
    let accepted: Vec<usize> = words.map(|w| w.parse().unwrap()).collect();
    // imgtool 2.5.0's `Image.verify` reads the hash TLV and the signature TLV and nothing else of
    // the unprotected area: it never compares KEYHASH with the key it was given, ignores the
    // second byte of each TLV type, and stops at the first signature that verifies whatever the
    // area's stated total or the signature TLV's stated length (it strips DER padding). Flips
    // there pass imgtool (MCUboot's bootutil checks KEYHASH against its built-in key; cairn's
    // boot check refuses them all, below). Every other bit must be refused by imgtool too.
    let parsed = Image::parse(&image).unwrap();
    let info = parsed.hashed.len();
    let sig_tlv = info + 4 + 36 + 36;
    let unchecked_by_imgtool = |byte: usize| {
        (info + 2..info + 4).contains(&byte) // TLV area total
            || (info + 4..info + 8).contains(&byte) // SHA256 TLV header
            || (info + 40..sig_tlv).contains(&byte) // KEYHASH TLV, header and value
            || (sig_tlv + 1..sig_tlv + 4).contains(&byte) // signature TLV: reserved byte, length
    };
    let checked_but_accepted: Vec<usize> = accepted
        .iter()
        .copied()
        .filter(|bit| !unchecked_by_imgtool(bit / 8))
        .collect();
    assert!(
        checked_but_accepted.is_empty(),
        "imgtool accepted flips of these bits it checks: {checked_but_accepted:?}"
    );
    // All of the hashed region, the hash value and the signature value are refused by imgtool.
    assert!(accepted.iter().all(|bit| bit / 8 >= info));

    let spec = f.spec().with_mcuboot(image.clone());
    let delivery = f.build(&spec).encode();
    let mut flash = image.clone();
    for bit in 0..bits {
        flash[bit / 8] ^= 1 << (bit % 8);
        let verdict = verify_delivery(
            &delivery,
            &f.anchors(),
            &device(),
            &StoredState::default(),
            &mut MemoryImage(&flash),
            &Software,
        );
        assert!(
            verdict.is_err(),
            "the boot check accepted bit {bit} flipped"
        );
        flash[bit / 8] ^= 1 << (bit % 8);
    }
    // and the unflipped image passes both
    let (ok, text) = imgtool(&[
        "verify",
        "-k",
        pub_pem.to_str().unwrap(),
        img_path.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let sig = Image::parse(&image).unwrap().tlvs;
    assert!(Software.verify_p256(&public_key(&f.release_key), &sig.hash, &sig.signature));
}
