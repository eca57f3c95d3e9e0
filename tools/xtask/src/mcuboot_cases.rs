//! The MCUboot-format cases of the Cortex-M33 firmware: a release whose image is an MCUboot image
//! (accepted), one case per MCUboot error variant of the boot check, and the measurement cases:
//! the whole boot check over 64 KiB, 256 KiB and 1 MiB MCUboot images, each next to a SHA-256-only
//! pass over the same image with the same backend (the floor).

use std::fmt::Write as _;

use anyhow::{Result, ensure};
use cairn_verifier::boot::StoredState;
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::mcuboot::write::{Layout, LayoutError};
use cairn_verifier::mcuboot::{Image, ImageVersion};
use cairn_verifier::test_support::{Fixture, Spec, mcuboot_image, mcuboot_signature, test_key};

use crate::cases::{Case, Check, default_device};

/// The image sizes measured (firmware bytes), with their case names: boot check, SHA-256 floor.
pub(crate) const MEASURED: [(usize, &str, &str); 3] = [
    (64 << 10, "mcuboot-64k", "sha256-64k"),
    (256 << 10, "mcuboot-256k", "sha256-256k"),
    (1 << 20, "mcuboot-1m", "sha256-1m"),
];

const V241: ImageVersion = ImageVersion {
    major: 2,
    minor: 4,
    revision: 1,
    build: 0,
};

fn delivery(
    f: &Fixture,
    spec: &Spec,
    name: &'static str,
    image: &[u8],
    expect: &'static str,
) -> Case {
    Case {
        name,
        check: Check::Delivery {
            delivery: f.build(spec).encode(),
            image: image.to_vec(),
            device: default_device(),
            state: StoredState::default(),
            witnessed: false,
        },
        expect,
    }
}

/// Firmware of `n` bytes (deterministic, not compressible).
fn firmware(n: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Every MCUboot case.
#[expect(
    clippy::too_many_lines,
    reason = "a flat list of cases reads best in one place"
)]
pub(crate) fn all(f: &Fixture) -> Result<Vec<Case>> {
    let key = Fixture::RELEASE_KEY;
    let epoch = u32::try_from(f.spec().security_epoch)?;
    let good = mcuboot_image(&f.image, V241, Some(epoch), key);
    ensure!(!good.is_empty(), "MCUboot image not built");
    let release = |image: &[u8]| f.spec().with_mcuboot(image.to_vec());
    let mut cases = vec![delivery(
        f,
        &release(&good),
        "mcuboot-valid",
        &good,
        "accept",
    )];

    let other_version = mcuboot_image(
        &f.image,
        ImageVersion {
            revision: 2,
            ..V241
        },
        Some(epoch),
        key,
    );
    cases.push(delivery(
        f,
        &release(&other_version),
        "mcuboot-version",
        &other_version,
        "mcuboot-version",
    ));
    let other_counter = mcuboot_image(&f.image, V241, Some(epoch + 1), key);
    cases.push(delivery(
        f,
        &release(&other_counter),
        "mcuboot-security-counter",
        &other_counter,
        "mcuboot-security-counter",
    ));
    let other_key = mcuboot_image(&f.image, V241, Some(epoch), 5);
    cases.push(delivery(
        f,
        &release(&other_key),
        "mcuboot-key",
        &other_key,
        "mcuboot-key",
    ));
    let mut stale_hash = good.clone();
    stale_hash[0x400 + 10] ^= 1;
    cases.push(delivery(
        f,
        &release(&stale_hash),
        "mcuboot-hash",
        &stale_hash,
        "mcuboot-hash",
    ));
    let mut not_stated = release(&good);
    not_stated.mcuboot_hash = Some([0x55; 32]);
    cases.push(delivery(
        f,
        &not_stated,
        "mcuboot-hash-not-stated",
        &good,
        "mcuboot-hash-not-stated",
    ));
    let forged = cairn_verifier::mcuboot::write::image::<LayoutError>(
        &f.image,
        &Layout::default(),
        V241,
        Some(epoch),
        &f.anchors().release.kid,
        |digest| Ok(mcuboot_signature(&test_key(5), digest)),
    )?;
    cases.push(delivery(
        f,
        &release(&forged),
        "mcuboot-signature",
        &forged,
        "mcuboot-signature",
    ));
    let mut overlapping = good.clone();
    overlapping[10] = 20; // protected TLV size no longer its info's
    cases.push(delivery(
        f,
        &release(&overlapping),
        "mcuboot-malformed",
        &overlapping,
        "mcuboot-malformed",
    ));
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01; // inside the signature TLV
    cases.push(delivery(
        f,
        &release(&good),
        "mcuboot-flipped-bit",
        &flipped,
        "image-digest",
    ));

    for (n, check_name, floor_name) in MEASURED {
        let image = mcuboot_image(&firmware(n), V241, Some(epoch), key);
        ensure!(
            Image::parse(&image).is_ok(),
            "{check_name}: image does not parse"
        );
        cases.push(delivery(f, &release(&image), check_name, &image, "accept"));
        cases.push(Case {
            name: floor_name,
            check: Check::Sha256 {
                digest: Software.sha256_of(&[&image]),
                image,
            },
            expect: "accept",
        });
    }
    Ok(cases)
}

/// One backend's MCUboot measurements: for each size, the whole boot check, the SHA-256 floor and
/// their ratio (text row and JSON).
pub(crate) fn measurements(
    label: &str,
    instructions: &dyn Fn(&str) -> Option<u64>,
) -> Result<(String, serde_json::Value)> {
    let mut row = format!("{label:<24}");
    let mut json = Vec::new();
    for (n, check_name, floor_name) in MEASURED {
        let check =
            instructions(check_name).ok_or_else(|| anyhow::anyhow!("{check_name} missing"))?;
        let floor =
            instructions(floor_name).ok_or_else(|| anyhow::anyhow!("{floor_name} missing"))?;
        // Instruction counts fit f64's mantissa many times over.
        let ratio = f64::from(u32::try_from(check)?) / f64::from(u32::try_from(floor)?.max(1));
        write!(row, " {check:>12} {floor:>12} {ratio:>6.3}")?;
        json.push(serde_json::json!({
            "firmware_bytes": n,
            "instructions_boot_check": check,
            "instructions_sha256_floor": floor,
            "ratio": ratio,
        }));
    }
    Ok((row, serde_json::Value::Array(json)))
}

/// The header of the [`measurements`] table.
pub(crate) fn header() -> String {
    let mut h = format!("{:<24}", "backend");
    for (n, _, _) in MEASURED {
        let k = n >> 10;
        let _ = write!(
            h,
            " {:>12} {:>12} {:>6}",
            format!("boot {k}K"),
            format!("sha256 {k}K"),
            "ratio"
        );
    }
    h
}
