//! Property: for a release in MCUboot format, the boot check accepts the image only if it is the
//! MCUboot image the release statement speaks about: its header version is the release version, its
//! security counter the release's epoch, it names the pinned release key, its SHA256 TLV is the
//! image read from flash and the value the statement carries, and its ECDSA signature verifies with
//! the pinned release key. Each mismatch is its own error; one flipped bit anywhere is refused.

#![expect(
    clippy::cast_possible_truncation,
    reason = "TLV lengths in these tests are small by construction"
)]

use cairn_verifier::Error;
use cairn_verifier::boot::{MemoryImage, StoredState, verify_delivery};
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::mcuboot::write::Layout;
use cairn_verifier::mcuboot::{Image, ImageVersion, McubootError, tlv};
use cairn_verifier::test_support::{
    Fixture, Spec, device, mcuboot_image, mcuboot_image_with, mcuboot_signature, test_key,
};
use cairn_verifier::types::{SecurityEpoch, Version};

const V241: ImageVersion = ImageVersion {
    major: 2,
    minor: 4,
    revision: 1,
    build: 0,
};

/// The boot check of the delivery `spec` describes, over `flash`.
fn check(f: &Fixture, spec: &Spec, flash: &[u8]) -> Result<(), Error> {
    let delivery = f.build(spec).encode();
    verify_delivery(
        &delivery,
        &f.anchors(),
        &device(),
        &StoredState::default(),
        &mut MemoryImage(flash),
        &Software,
    )
    .map(|_| ())
}

/// A spec whose release is the MCUboot image `image` (statement over exactly these bytes).
fn release_of(f: &Fixture, image: Vec<u8>) -> Spec {
    f.spec().with_mcuboot(image)
}

/// The fixture's firmware as an MCUboot image for 2.4.1, epoch 3 (the fixture's release).
fn good(f: &Fixture) -> Vec<u8> {
    mcuboot_image(&f.image, V241, Some(3), Fixture::RELEASE_KEY)
}

#[test]
fn the_release_image_is_accepted() {
    let f = Fixture::new();
    let image = good(&f);
    let spec = release_of(&f, image.clone());
    assert_eq!(check(&f, &spec, &image), Ok(()));
    // padded to a slot with the swap trailer: the same
    let layout = Layout {
        slot_size: Some(0x4000),
        pad: true,
        ..Layout::default()
    };
    let padded = mcuboot_image_with(&f.image, &layout, V241, Some(3), Fixture::RELEASE_KEY);
    assert_eq!(padded.len(), 0x4000);
    assert_eq!(check(&f, &release_of(&f, padded.clone()), &padded), Ok(()));
}

#[test]
fn header_version_must_be_the_release_version() {
    let f = Fixture::new();
    for version in [
        ImageVersion {
            revision: 2,
            ..V241
        },
        ImageVersion { build: 1, ..V241 },
    ] {
        let image = mcuboot_image(&f.image, version, Some(3), Fixture::RELEASE_KEY);
        assert_eq!(
            check(&f, &release_of(&f, image.clone()), &image),
            Err(Error::McubootVersion {
                image: version,
                release: Version::new(2, 4, 1)
            })
        );
    }
}

#[test]
fn security_counter_must_be_the_release_epoch() {
    let f = Fixture::new();
    for counter in [Some(4), Some(2), None] {
        let image = mcuboot_image(&f.image, V241, counter, Fixture::RELEASE_KEY);
        assert_eq!(
            check(&f, &release_of(&f, image.clone()), &image),
            Err(Error::McubootSecurityCounter {
                image: counter,
                release: SecurityEpoch(3)
            })
        );
    }
}

#[test]
fn image_must_name_and_be_signed_by_the_release_key() {
    let f = Fixture::new();
    // Signed by another key, and names it.
    let image = mcuboot_image(&f.image, V241, Some(3), 5);
    assert_eq!(
        check(&f, &release_of(&f, image.clone()), &image),
        Err(Error::McubootKey)
    );
    // Names the release key, but the signature is by another key.
    let other = test_key(5);
    let key_hash = f.anchors().release.kid;
    let image =
        cairn_verifier::mcuboot::write::image::<cairn_verifier::mcuboot::write::LayoutError>(
            &f.image,
            &Layout::default(),
            V241,
            Some(3),
            &key_hash,
            |digest| Ok(mcuboot_signature(&other, digest)),
        )
        .unwrap();
    assert_eq!(
        check(&f, &release_of(&f, image.clone()), &image),
        Err(Error::McubootSignature)
    );
}

#[test]
fn hash_tlv_must_match_flash_and_the_statement() {
    let f = Fixture::new();
    // A signer that states an image whose firmware no longer matches its own hash TLV.
    let mut image = good(&f);
    image[0x400 + 100] ^= 1;
    assert_eq!(
        check(&f, &release_of(&f, image.clone()), &image),
        Err(Error::McubootHash)
    );
    // The statement carries another hash TLV value than the image's.
    let image = good(&f);
    let mut spec = release_of(&f, image.clone());
    spec.mcuboot_hash = Some([0x55; 32]);
    assert_eq!(check(&f, &spec, &image), Err(Error::McubootHashNotStated));
}

#[test]
fn malformed_images_are_named() {
    let f = Fixture::new();
    let good = good(&f);
    let info = 0x400 + f.image.len() + 12;
    let mut beyond = good.clone();
    beyond[12..16].copy_from_slice(&(1u32 << 20).to_le_bytes());
    let mut past_end = good.clone();
    past_end[info + 6..info + 8].copy_from_slice(&200u16.to_le_bytes());
    let mut second_sig = good.clone();
    let sig = Image::parse(&good).unwrap().tlvs.signature_der.to_vec();
    let total = u16::from_le_bytes([good[info + 2], good[info + 3]]) + 4 + sig.len() as u16;
    second_sig[info + 2..info + 4].copy_from_slice(&total.to_le_bytes());
    second_sig.extend_from_slice(&tlv::ECDSA_SIG.to_le_bytes());
    second_sig.extend_from_slice(&(sig.len() as u16).to_le_bytes());
    second_sig.extend_from_slice(&sig);
    let mut magic = good.clone();
    magic[3] = 0;
    let mut overlap = good.clone();
    overlap[10] = 20;
    for (name, image, code) in [
        ("size beyond the file", beyond, "firmware"),
        ("TLV length past the end", past_end, "past"),
        ("second signature", second_sig, "second"),
        ("wrong magic", magic, "magic"),
        ("overlapping areas", overlap, "overlap"),
    ] {
        let result = check(&f, &release_of(&f, image.clone()), &image);
        let Err(Error::MalformedImage(e)) = result else {
            panic!("{name}: {result:?}");
        };
        let text = e.to_string();
        assert!(text.contains(code), "{name}: {text}");
    }
    let huge = {
        let mut b = good.clone();
        b[info + 2..info + 4].copy_from_slice(&600u16.to_le_bytes());
        b.resize(info + 600, 0);
        b
    };
    assert_eq!(
        check(&f, &release_of(&f, huge.clone()), &huge),
        Err(Error::MalformedImage(McubootError::TlvAreaTooLarge {
            len: 612,
            max: 512
        }))
    );
}

/// Every bit of a small signed image, flipped in flash: never accepted.
#[test]
fn one_flipped_bit_anywhere_is_refused() {
    let f = Fixture::new();
    let image = mcuboot_image(b"\x5a", V241, Some(3), Fixture::RELEASE_KEY);
    let spec = release_of(&f, image.clone());
    let delivery = f.build(&spec).encode();
    let anchors = f.anchors();
    assert_eq!(check(&f, &spec, &image), Ok(()));
    let mut flash = image.clone();
    for bit in 0..image.len() * 8 {
        flash[bit / 8] ^= 1 << (bit % 8);
        let verdict = verify_delivery(
            &delivery,
            &anchors,
            &device(),
            &StoredState::default(),
            &mut MemoryImage(&flash),
            &Software,
        );
        assert!(verdict.is_err(), "bit {bit} flipped was accepted");
        flash[bit / 8] ^= 1 << (bit % 8);
    }
    // The hashed region really is what the SHA256 TLV covers.
    let parsed = Image::parse(&image).unwrap();
    assert_eq!(Software.sha256_of(&[parsed.hashed]), parsed.tlvs.hash);
}
