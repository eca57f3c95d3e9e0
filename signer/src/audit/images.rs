//! `cairn audit verify --image FILE`: image files checked against the releases a verified pack
//! proves. Each file must be the image of one of them (SHA-256 and size); the image of a release in
//! MCUboot format must also pass the device's own MCUboot check (formats.md §8: header version,
//! security counter, key, `SHA256` TLV, signature) with the release key that signed the release.

use std::path::{Path, PathBuf};

use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::mcuboot::check::{Stated, check_image};
use cairn_verifier::types::{SecurityEpoch, Version};

use super::verify::{ReleaseFacts, Verified};
use crate::appliance::stream_sha256;
use crate::mcuboot::FileImage;

/// Checks `images` against `v`'s releases; each problem becomes a finding of `v`. Returns the
/// images that passed, with the release each one is.
pub fn check_images(v: &mut Verified, images: &[PathBuf]) -> Vec<(PathBuf, String)> {
    let mut passed = Vec::new();
    for path in images {
        let item = format!("image {}", path.display());
        match check_one(&v.releases, path) {
            Ok(release) => passed.push((path.clone(), release)),
            Err(problem) => v.fail(item, problem),
        }
    }
    passed
}

fn check_one(releases: &[ReleaseFacts], path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let (digest, size) = stream_sha256(&mut f, path).map_err(|e| e.to_string())?;
    let hex_digest = hex::encode(digest);
    let r = releases
        .iter()
        .find(|r| r.image_digest == hex_digest && r.image_size == size)
        .ok_or_else(|| {
            format!(
                "SHA-256 {hex_digest} ({size} bytes) is not the image of any release in the pack"
            )
        })?;
    let Some(tlv) = &r.mcuboot_hash else {
        return Ok(r.release.clone());
    };
    let stated = Stated {
        image_size: size,
        image_digest: digest,
        version: Version::parse(&r.version).ok_or("unparsable release version")?,
        security_epoch: SecurityEpoch(r.security_epoch),
        mcuboot_hash: hex::decode(tlv)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("unparsable SHA256 TLV")?,
    };
    let public = r
        .public_key
        .ok_or_else(|| format!("release {}: no verified release key", r.release))?;
    let mut image = FileImage::new(path).map_err(|e| e.to_string())?;
    check_image(
        &mut image,
        &stated,
        &ReleaseKey::new(public, &Software),
        &Software,
    )
    .map_err(|e| format!("release {} (MCUboot): {e}", r.release))?;
    Ok(r.release.clone())
}

#[cfg(test)]
mod tests {
    use cairn_verifier::crypto::Crypto as _;
    use cairn_verifier::mcuboot::{Image, ImageVersion};
    use cairn_verifier::test_support::{mcuboot_image, public_key, test_key};

    use super::*;

    fn facts(image: &[u8], mcuboot: bool, key: u8) -> ReleaseFacts {
        ReleaseFacts {
            index: 2,
            release: "controller-fw-2.4.1".into(),
            version: "2.4.1".into(),
            product: "Smart Controller".into(),
            advisories: Vec::new(),
            image_digest: hex::encode(Software.sha256_of(&[image])),
            image_size: image.len() as u64,
            issued_at: 0,
            support_until: 0,
            retain_until: None,
            custodians: Vec::new(),
            key: "release-0".into(),
            mcuboot_hash: mcuboot.then(|| hex::encode(Image::parse(image).unwrap().tlvs.hash)),
            security_epoch: 7,
            public_key: Some(public_key(&test_key(key))),
        }
    }

    #[test]
    fn images_are_checked_against_the_releases_the_pack_proves() {
        let dir = tempfile::tempdir().unwrap();
        let v241 = ImageVersion::of_release(Version::new(2, 4, 1)).unwrap();
        let image = mcuboot_image(b"firmware", v241, Some(7), 2);
        let good = dir.path().join("good.bin");
        std::fs::write(&good, &image).unwrap();
        let mut flipped = image.clone();
        flipped[0x400 + 3] ^= 1;
        let bad = dir.path().join("flipped.bin");
        std::fs::write(&bad, &flipped).unwrap();
        let raw = dir.path().join("raw.bin");
        std::fs::write(&raw, b"raw image").unwrap();

        let mut v = Verified {
            releases: vec![facts(&image, true, 2), facts(b"raw image", false, 2)],
            ..Verified::default()
        };
        let passed = check_images(&mut v, &[good.clone(), raw.clone(), bad.clone()]);
        assert_eq!(
            passed,
            vec![
                (good.clone(), "controller-fw-2.4.1".into()),
                (raw, "controller-fw-2.4.1".into())
            ]
        );
        assert_eq!(v.findings.len(), 1);
        assert!(
            v.findings[0]
                .problem
                .contains("not the image of any release")
        );

        // The statement's digest matches, but the release key is another one than the image's.
        let mut v = Verified {
            releases: vec![facts(&image, true, 3)],
            ..Verified::default()
        };
        assert!(check_images(&mut v, &[good]).is_empty());
        assert!(
            v.findings[0].problem.contains("names another key"),
            "{}",
            v.findings[0].problem
        );
    }
}
