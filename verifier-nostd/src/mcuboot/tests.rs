#![expect(
    clippy::cast_possible_truncation,
    reason = "tests: lengths and test bytes are small by construction"
)]

use alloc::vec::Vec;

use super::write::{Layout, LayoutError, Plan};
use super::*;
use crate::crypto::{Crypto, Software};
use crate::test_support::{mcuboot_image, mcuboot_image_with, public_key, test_key};

const V241: ImageVersion = ImageVersion {
    major: 2,
    minor: 4,
    revision: 1,
    build: 0,
};

fn firmware(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn image(n: usize) -> Vec<u8> {
    mcuboot_image(&firmware(n), V241, Some(7), 2)
}

/// Offset of the unprotected TLV info of an image made by [`image`] with `n` bytes of firmware.
fn tlv_info_at(n: usize) -> usize {
    0x400 + n + 12
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The header of MCUboot docs/design.md "Image format", written out field by field.
#[test]
fn header_known_answer() {
    let h = Header {
        load_addr: 0x2000_0000,
        header_size: 0x400,
        protected_tlv_size: 12,
        image_size: 0x0001_2345,
        flags: flags::RAM_LOAD,
        version: ImageVersion {
            major: 2,
            minor: 4,
            revision: 0x0102,
            build: 0x0a0b_0c0d,
        },
    };
    let expected: [u8; 32] = [
        0x3d, 0xb8, 0xf3, 0x96, // ih_magic
        0x00, 0x00, 0x00, 0x20, // ih_load_addr
        0x00, 0x04, // ih_hdr_size
        0x0c, 0x00, // ih_protect_tlv_size
        0x45, 0x23, 0x01, 0x00, // ih_img_size
        0x20, 0x00, 0x00, 0x00, // ih_flags
        0x02, 0x04, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, // ih_ver
        0x00, 0x00, 0x00, 0x00, // _pad1
    ];
    assert_eq!(h.to_bytes(), expected);
    assert_eq!(Header::parse(&expected), Ok(h));
}

#[test]
fn round_trip_and_layout() {
    for n in [0, 1, 4096] {
        let bytes = image(n);
        let img = Image::parse(&bytes).unwrap();
        assert_eq!(img.header.version, V241);
        assert_eq!(img.header.image_size as usize, n);
        assert_eq!(img.header.protected_tlv_size, 12);
        assert_eq!(img.firmware, &firmware(n)[..]);
        assert_eq!(img.tlvs.security_counter, Some(7));
        assert_eq!(img.tlvs.dependencies, 0);
        assert!(img.trailer.is_empty());
        // header padding is the erased value, as imgtool --pad-header writes it
        assert!(bytes[32..0x400].iter().all(|&b| b == 0xff));
        let key = public_key(&test_key(2));
        assert_eq!(img.tlvs.key, KeyRef::Hash(key.key_hash(&Software)));
        assert_eq!(
            img.tlvs.hash,
            Software.sha256_of(&[&bytes[..0x400 + n + 12]])
        );
        assert!(Software.verify_p256(&key, &img.tlvs.hash, &img.tlvs.signature));
        assert_eq!(img.signed_len(), bytes.len() as u64);
    }
}

#[test]
fn padded_image_ends_with_trailer() {
    let layout = Layout {
        slot_size: Some(0x2_0000),
        pad: true,
        confirm: true,
        ..Layout::default()
    };
    let bytes = mcuboot_image_with(&firmware(100), &layout, V241, Some(7), 2);
    assert_eq!(bytes.len(), 0x2_0000);
    let img = Image::parse(&bytes).unwrap();
    let t = img.trailer;
    assert_eq!(&t[t.len() - 16..], &layout.boot_magic());
    // image_ok: one max-align unit (8) before the 16-byte magic
    assert_eq!(t[t.len() - 24], 0x01);
    assert_eq!(layout.trailer_size(), 128 * 3 + 8 * 4 + 16);
}

#[test]
fn layout_errors() {
    let plan = |layout: Layout, n| Plan::new(&layout, V241, Some(1), n).map(|_| ());
    assert_eq!(
        plan(
            Layout {
                header_size: 31,
                ..Layout::default()
            },
            1
        ),
        Err(LayoutError::HeaderSize(31))
    );
    assert!(matches!(
        plan(
            Layout {
                align: 3,
                ..Layout::default()
            },
            1
        ),
        Err(LayoutError::Alignment { .. })
    ));
    assert_eq!(
        plan(
            Layout {
                pad: true,
                ..Layout::default()
            },
            1
        ),
        Err(LayoutError::PadWithoutSlot)
    );
    assert!(matches!(
        plan(
            Layout {
                slot_size: Some(0x1000),
                ..Layout::default()
            },
            0x1000
        ),
        Err(LayoutError::SlotTooSmall { .. })
    ));
    assert_eq!(
        plan(Layout::default(), 1 << 32),
        Err(LayoutError::FirmwareTooLarge(1 << 32))
    );
}

#[test]
#[expect(clippy::too_many_lines, reason = "a flat table of cases")]
fn malformed_images_are_named() {
    let n = 64;
    let good = image(n);
    let info = tlv_info_at(n);
    let cases: Vec<(&str, Vec<u8>, McubootError)> = alloc::vec![
        ("empty", Vec::new(), McubootError::TooShort { len: 0 }),
        (
            "magic",
            {
                let mut b = good.clone();
                b[0] ^= 1;
                b
            },
            McubootError::BadMagic { found: 0x96f3_b83c }
        ),
        (
            "header size",
            {
                let mut b = good.clone();
                put_u16(&mut b, 8, 16);
                b
            },
            McubootError::HeaderSize { size: 16 }
        ),
        (
            "encrypted",
            {
                let mut b = good.clone();
                put_u32(&mut b, 16, flags::ENCRYPTED_AES128);
                b
            },
            McubootError::UnsupportedFlags {
                flags: flags::ENCRYPTED_AES128
            }
        ),
        (
            "reserved",
            {
                let mut b = good.clone();
                b[31] = 1;
                b
            },
            McubootError::ReservedNotZero
        ),
        (
            "image size beyond the file",
            {
                let mut b = good.clone();
                put_u32(&mut b, 12, 1 << 20);
                b
            },
            McubootError::BeyondInput {
                what: "firmware",
                stated: 0x400 + (1 << 20),
                len: good.len() as u64
            }
        ),
        (
            "truncated TLVs",
            good[..good.len() - 1].to_vec(),
            McubootError::BeyondInput {
                what: "TLV area",
                stated: good.len() as u64,
                len: good.len() as u64 - 1
            }
        ),
        (
            "protected size larger than its info: areas overlap",
            {
                let mut b = good.clone();
                put_u16(&mut b, 10, 16);
                b
            },
            McubootError::OverlappingAreas {
                header: 16,
                info: 12
            }
        ),
        (
            "protected size smaller than its info: areas overlap",
            {
                let mut b = good.clone();
                put_u16(&mut b, 10, 8);
                b
            },
            McubootError::OverlappingAreas {
                header: 8,
                info: 12
            }
        ),
        (
            "no protected area in the header",
            {
                let mut b = good.clone();
                put_u16(&mut b, 10, 0);
                b
            },
            McubootError::TlvInfoMagic {
                area: Area::Unprotected,
                offset: 0x400 + n as u64,
                found: TLV_PROT_INFO_MAGIC
            }
        ),
        (
            "TLV info magic",
            {
                let mut b = good.clone();
                b[info] ^= 1;
                b
            },
            McubootError::TlvInfoMagic {
                area: Area::Unprotected,
                offset: info as u64,
                found: TLV_INFO_MAGIC ^ 1
            }
        ),
        (
            "TLV area total below its info",
            {
                let mut b = good.clone();
                put_u16(&mut b, info + 2, 3);
                b
            },
            McubootError::TlvAreaLength {
                area: Area::Unprotected,
                offset: info as u64,
                total: 3
            }
        ),
        (
            "TLV length past the end",
            {
                let mut b = good.clone();
                put_u16(&mut b, info + 6, 200);
                b
            },
            McubootError::TlvPastEnd {
                area: Area::Unprotected,
                offset: info as u64 + 4
            }
        ),
        (
            "protected TLV length past the end",
            {
                let mut b = good.clone();
                put_u16(&mut b, 0x400 + n + 6, 9);
                b
            },
            McubootError::TlvPastEnd {
                area: Area::Protected,
                offset: 0x400 + n as u64 + 4
            }
        ),
        (
            "security counter of the wrong length",
            {
                let mut b = good.clone();
                put_u16(&mut b, 0x400 + n + 2, 8);
                put_u16(&mut b, 10, 8);
                put_u16(&mut b, 0x400 + n + 6, 0);
                b
            },
            McubootError::TlvLength {
                kind: tlv::SEC_CNT,
                offset: 0x400 + n as u64 + 4,
                len: 0
            }
        ),
        (
            "hash of the wrong type",
            {
                let mut b = good.clone();
                b[info + 4] = 0x11;
                b
            },
            McubootError::UnexpectedTlv {
                area: Area::Unprotected,
                kind: 0x11,
                offset: info as u64 + 4
            }
        ),
        (
            "type's upper byte set",
            {
                let mut b = good.clone();
                b[info + 5] = 1;
                b
            },
            McubootError::UnexpectedTlv {
                area: Area::Unprotected,
                kind: 0x0110,
                offset: info as u64 + 4
            }
        ),
        (
            "key hash turned into a second hash",
            {
                let mut b = good.clone();
                b[info + 40] = 0x10;
                b
            },
            McubootError::DuplicateTlv {
                area: Area::Unprotected,
                kind: tlv::SHA256,
                offset: info as u64 + 40
            }
        ),
        (
            "signature not DER",
            {
                let mut b = good.clone();
                b[info + 80] = 0x31;
                b
            },
            McubootError::SignatureEncoding {
                offset: info as u64 + 76
            }
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(Image::parse(&bytes), Err(expected), "{name}");
    }
}

/// Appends a TLV to the unprotected area of `bytes` (an image of [`image`] with `n` bytes).
fn with_extra_tlv(n: usize, kind: u16, value: &[u8]) -> Vec<u8> {
    let mut b = image(n);
    let info = tlv_info_at(n);
    let total = u16::from_le_bytes([b[info + 2], b[info + 3]]);
    put_u16(&mut b, info + 2, total + 4 + value.len() as u16);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&(value.len() as u16).to_le_bytes());
    b.extend_from_slice(value);
    b
}

#[test]
fn second_signature_and_misplaced_tlvs_are_refused() {
    let n = 10;
    let good = image(n);
    let sig = Image::parse(&good).unwrap().tlvs.signature_der.to_vec();
    let at = good.len() as u64;
    assert_eq!(
        Image::parse(&with_extra_tlv(n, tlv::ECDSA_SIG, &sig)),
        Err(McubootError::DuplicateTlv {
            area: Area::Unprotected,
            kind: tlv::ECDSA_SIG,
            offset: at
        })
    );
    assert_eq!(
        Image::parse(&with_extra_tlv(n, tlv::SEC_CNT, &[9, 0, 0, 0])),
        Err(McubootError::UnexpectedTlv {
            area: Area::Unprotected,
            kind: tlv::SEC_CNT,
            offset: at
        })
    );
    assert_eq!(
        Image::parse(&with_extra_tlv(n, tlv::PUBKEY, &[1; 91])),
        Err(McubootError::DuplicateTlv {
            area: Area::Unprotected,
            kind: tlv::PUBKEY,
            offset: at
        })
    );
}

#[test]
fn missing_tlvs_and_order() {
    let n = 3;
    let good = image(n);
    let info = tlv_info_at(n);
    // Cut the area after the hash (drop key hash and signature).
    let mut b = good[..info + 4 + 36].to_vec();
    put_u16(&mut b, info + 2, 40);
    assert_eq!(
        Image::parse(&b),
        Err(McubootError::MissingTlv { kind: tlv::KEYHASH })
    );
    // Only the hash and the key: no signature.
    let mut b = good[..info + 4 + 72].to_vec();
    put_u16(&mut b, info + 2, 76);
    assert_eq!(
        Image::parse(&b),
        Err(McubootError::MissingTlv {
            kind: tlv::ECDSA_SIG
        })
    );
    // Signature before the key hash: swap the two TLVs.
    let mut b = good.clone();
    let key = good[info + 40..info + 76].to_vec();
    let sig = good[info + 76..].to_vec();
    b.truncate(info + 40);
    b.extend_from_slice(&sig);
    b.extend_from_slice(&key);
    assert_eq!(
        Image::parse(&b),
        Err(McubootError::TlvOrder {
            offset: info as u64 + 40
        })
    );
}

#[test]
fn full_public_key_and_dependencies_parse() {
    // PUBKEY instead of KEYHASH, and a dependency in the protected area.
    let n = 5;
    let good = image(n);
    let info = tlv_info_at(n);
    let key = public_key(&test_key(2));
    let mut b = good[..0x400 + n].to_vec();
    b.extend_from_slice(&TLV_PROT_INFO_MAGIC.to_le_bytes());
    b.extend_from_slice(&28u16.to_le_bytes());
    b.extend_from_slice(&good[0x400 + n + 4..0x400 + n + 12]); // SEC_CNT
    b.extend_from_slice(&tlv::DEPENDENCY.to_le_bytes());
    b.extend_from_slice(&12u16.to_le_bytes());
    b.extend_from_slice(&[1, 0, 0, 0, 2, 4, 0, 0, 0, 0, 0, 0]);
    put_u16(&mut b, 10, 28);
    let spki = key.spki_der();
    let sig = &good[info + 76..];
    let total = 4 + 36 + 4 + spki.len() + sig.len();
    b.extend_from_slice(&TLV_INFO_MAGIC.to_le_bytes());
    b.extend_from_slice(&(total as u16).to_le_bytes());
    b.extend_from_slice(&good[info + 4..info + 40]); // SHA256 (now wrong, shape only)
    b.extend_from_slice(&tlv::PUBKEY.to_le_bytes());
    b.extend_from_slice(&(spki.len() as u16).to_le_bytes());
    b.extend_from_slice(&spki);
    b.extend_from_slice(sig);
    let img = Image::parse(&b).unwrap();
    assert_eq!(img.tlvs.dependencies, 1);
    assert_eq!(img.tlvs.key, KeyRef::Full(&spki[..]));
}

#[test]
fn areas_len_reads_the_unprotected_info() {
    let n = 7;
    let bytes = image(n);
    let header = Header::parse(&bytes).unwrap();
    let info = tlv_info_at(n);
    let len = Tlvs::areas_len(&header, &bytes[info..info + 4]).unwrap();
    assert_eq!(header.tlv_offset() + len, bytes.len() as u64);
}

#[test]
fn release_versions_map_to_mcuboot_versions() {
    assert_eq!(ImageVersion::of_release(Version::new(2, 4, 1)), Some(V241));
    assert_eq!(ImageVersion::of_release(Version::new(256, 0, 0)), None);
    assert_eq!(ImageVersion::of_release(Version::new(0, 0, 65_536)), None);
    assert!(V241.is_release(Version::new(2, 4, 1)));
    let with_build = ImageVersion { build: 1, ..V241 };
    assert!(!with_build.is_release(Version::new(2, 4, 1)));
    assert_eq!(alloc::format!("{with_build}"), "2.4.1+1");
}
