//! The MCUboot image parser on arbitrary bytes, both ways a verifier reads an image: whole, in
//! memory (`Image::parse`), and as the device reads it from flash, in pieces
//! (`mcuboot::check::check_image`, for a release stating exactly these bytes). Never panics; what
//! parses is self-consistent (its regions lie inside the input and its header re-encodes to the
//! same bytes), and the flash reader agrees with the in-memory parser on whether the image is
//! well formed.
#![no_main]

use std::sync::OnceLock;

use cairn_verifier::Error;
use cairn_verifier::boot::MemoryImage;
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::mcuboot::{HEADER_LEN, Image, MAX_TLV_AREA, check};
use cairn_verifier::test_support::Fixture;
use cairn_verifier::types::{SecurityEpoch, Version};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fn key() -> &'static ReleaseKey {
    static KEY: OnceLock<ReleaseKey> = OnceLock::new();
    KEY.get_or_init(|| Fixture::new().anchors().release)
}

fuzz_target!(|data: &[u8]| {
    // The fixture is built once, before the first run is measured.
    key();
    cairn_fuzz::bounded(data.len(), || {
        let parsed = Image::parse(data);
        if let Ok(image) = &parsed {
            assert_eq!(&data[..HEADER_LEN], &image.header.to_bytes()[..]);
            assert!(image.signed_len() <= data.len() as u64);
            assert_eq!(image.hashed.len() as u64, image.header.hashed_len());
            assert_eq!(
                image.hashed.len() + image.tlvs.len as usize
                    - image.header.protected_tlv_size as usize
                    + image.trailer.len(),
                data.len()
            );
        }

        // The flash path, for a release whose statement matches these bytes.
        let stated = check::Stated {
            image_size: data.len() as u64,
            image_digest: Software.sha256_of(&[data]),
            version: Version::new(2, 4, 1),
            security_epoch: SecurityEpoch(3),
            mcuboot_hash: parsed.as_ref().map(|i| i.tlvs.hash).unwrap_or_default(),
        };
        let result = check::check_image(&mut MemoryImage(data), &stated, key(), &Software);
        match (&parsed, result) {
            // Only an image whose TLV areas fit the device's buffer is read from flash.
            (Ok(image), Err(Error::MalformedImage(e))) => assert!(
                image.tlvs.len > MAX_TLV_AREA as u64,
                "parses in memory, refused from flash: {e}"
            ),
            (Err(e), Ok(())) => panic!("refused in memory ({e}), accepted from flash"),
            (Err(_), Err(Error::MalformedImage(_))) | (Ok(_), _) => {}
            (Err(e), Err(other)) => panic!("refused in memory ({e}), flash says {other}"),
        }
    });
});
