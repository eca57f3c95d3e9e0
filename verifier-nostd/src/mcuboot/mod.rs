//! The MCUboot image format: what the STM32H5's own secure boot (ST's OEMiROT / OEMuROT, which is
//! MCUboot) checks before it swaps an image in.
//!
//! Layout (MCUboot `docs/design.md`, "Image format"; little-endian, as imgtool 2.5.0 writes it):
//!
//! ```text
//! 0                    header (32 bytes: magic 0x96f3b83d, load address, header size,
//!                      protected TLV size, image size, flags, version, reserved)
//! 32 .. header_size    header padding (hashed)
//! header_size          the firmware, image_size bytes
//! + image_size         protected TLV area: info {0x6908, total}, then TLVs (security counter
//!                      0x50, dependencies 0x40, ...): present when the header's protected TLV size
//!                      is not zero, and exactly that long
//! + protected size     TLV area: info {0x6907, total}, then SHA256 (0x10) over everything before
//!                      this area, KEYHASH (0x01) or PUBKEY (0x02), ECDSA_SIG (0x22, DER)
//! TLV end .. slot end  optional padding and the swap trailer (imgtool --pad), not hashed
//! ```
//!
//! Decoding needs no heap and never panics: every length read from the input is checked against
//! the input before it is used, and a malformed image is a [`McubootError`] naming what was wrong
//! and at which byte. [`Header::parse`] and [`Tlvs::parse`] work on the pieces a device reads from
//! flash; [`Image::parse`] on a whole image in memory. The device check of an MCUboot-format
//! release is in [`check`]; the encoder (signer side) in `write`, behind the `alloc` feature.

pub mod check;
#[cfg(feature = "alloc")]
pub mod write;

use crate::crypto::{Signature, der_to_raw};
use crate::types::{Hash, Version};

/// `IMAGE_MAGIC`: the first four bytes of every image.
pub const IMAGE_MAGIC: u32 = 0x96f3_b83d;
/// Length of the header structure (`struct image_header`).
pub const HEADER_LEN: usize = 32;
/// Magic of the TLV info that opens the (unprotected) TLV area.
pub const TLV_INFO_MAGIC: u16 = 0x6907;
/// Magic of the TLV info that opens the protected TLV area.
pub const TLV_PROT_INFO_MAGIC: u16 = 0x6908;
/// Length of a TLV info (`struct image_tlv_info`: magic, total length).
pub const TLV_INFO_LEN: usize = 4;
/// Length of a TLV header (`struct image_tlv`: type, length).
pub const TLV_HEADER_LEN: usize = 4;
/// Longest TLV area (protected and unprotected together) a device reads into its stack buffer:
/// imgtool's areas for a P-256 image with a security counter are 12 + 152 bytes (+ 59 with the
/// full public key instead of its hash, + 16 per dependency).
pub const MAX_TLV_AREA: usize = 512;

/// TLV types (MCUboot `bootutil/image.h`, imgtool `TLV_VALUES`).
pub mod tlv {
    /// SHA-256 of the signing key's DER SubjectPublicKeyInfo.
    pub const KEYHASH: u16 = 0x01;
    /// The signing key itself (DER SubjectPublicKeyInfo).
    pub const PUBKEY: u16 = 0x02;
    /// SHA-256 of header, header padding, firmware and protected TLV area.
    pub const SHA256: u16 = 0x10;
    /// ECDSA signature over the SHA256 TLV's digest, ASN.1 DER.
    pub const ECDSA_SIG: u16 = 0x22;
    /// A dependency on another image's version (protected).
    pub const DEPENDENCY: u16 = 0x40;
    /// The security counter for hardware rollback protection (protected, 4 bytes).
    pub const SEC_CNT: u16 = 0x50;
}

/// Header flags (`IMAGE_F_*`).
pub mod flags {
    /// Position-independent code.
    pub const PIC: u32 = 0x01;
    /// Encrypted with AES-128 (not supported here).
    pub const ENCRYPTED_AES128: u32 = 0x04;
    /// Encrypted with AES-256 (not supported here).
    pub const ENCRYPTED_AES256: u32 = 0x08;
    /// Not bootable (a secondary image).
    pub const NON_BOOTABLE: u32 = 0x10;
    /// Loaded into RAM to run.
    pub const RAM_LOAD: u32 = 0x20;
    /// Built for a fixed flash address.
    pub const ROM_FIXED: u32 = 0x100;
    /// Flags that do not change what the hash and signature cover; any other flag (encryption,
    /// compression, unknown bits) is refused.
    pub const SUPPORTED: u32 = PIC | NON_BOOTABLE | RAM_LOAD | ROM_FIXED;
}

/// `struct image_version`: `major.minor.revision+build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ImageVersion {
    /// `iv_major`.
    pub major: u8,
    /// `iv_minor`.
    pub minor: u8,
    /// `iv_revision`.
    pub revision: u16,
    /// `iv_build_num`.
    pub build: u32,
}

impl ImageVersion {
    /// The MCUboot version of a release version (`major.minor.patch+0`), if each part fits.
    pub fn of_release(v: Version) -> Option<Self> {
        Some(Self {
            major: u8::try_from(v.major).ok()?,
            minor: u8::try_from(v.minor).ok()?,
            revision: u16::try_from(v.patch).ok()?,
            build: 0,
        })
    }

    /// Whether this is the MCUboot form of release version `v`: same three parts, build 0.
    pub fn is_release(&self, v: Version) -> bool {
        Self::of_release(v) == Some(*self)
    }
}

impl core::fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}.{}.{}+{}",
            self.major, self.minor, self.revision, self.build
        )
    }
}

/// Which TLV area something was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The protected area (inside the hash).
    Protected,
    /// The unprotected area (after the hash).
    Unprotected,
}

impl Area {
    fn name(self) -> &'static str {
        match self {
            Area::Protected => "protected TLV area",
            Area::Unprotected => "TLV area",
        }
    }
}

impl core::fmt::Display for Area {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes are not a well-formed MCUboot image. Offsets are from the start of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum McubootError {
    /// Fewer bytes than a header.
    #[error("{len} bytes is shorter than the 32-byte MCUboot header")]
    TooShort {
        /// Bytes present.
        len: u64,
    },
    /// The first four bytes are not `IMAGE_MAGIC`.
    #[error("image magic is {found:#010x}, not 0x96f3b83d")]
    BadMagic {
        /// The value found.
        found: u32,
    },
    /// The header size is smaller than the header structure.
    #[error("header size {size} is below 32")]
    HeaderSize {
        /// The header's `ih_hdr_size`.
        size: u16,
    },
    /// Flags this verifier does not implement (encryption, compression, unknown bits).
    #[error("unsupported header flags {flags:#x}")]
    UnsupportedFlags {
        /// The flags that are not supported.
        flags: u32,
    },
    /// The reserved header word is not zero.
    #[error("reserved header word at byte 28 is not zero")]
    ReservedNotZero,
    /// Header size plus image size (plus the TLV areas) runs past the end of the input.
    #[error(
        "the header states {stated} bytes up to the end of the {what}, but the input has {len}"
    )]
    BeyondInput {
        /// What ends past the input.
        what: &'static str,
        /// Where the header (or a TLV info) says it ends.
        stated: u64,
        /// The input's length.
        len: u64,
    },
    /// A TLV info with the wrong magic.
    #[error("{area} at byte {offset}: info magic {found:#06x}")]
    TlvInfoMagic {
        /// Which area.
        area: Area,
        /// Offset of the info.
        offset: u64,
        /// The magic found.
        found: u16,
    },
    /// The protected TLV area as the header states it and as its own info states it differ, so
    /// the two areas would overlap (or leave a gap).
    #[error(
        "TLV areas overlap: the header says the protected area has {header} bytes, its info says {info}"
    )]
    OverlappingAreas {
        /// `ih_protect_tlv_size`.
        header: u16,
        /// The protected info's total.
        info: u16,
    },
    /// A TLV info whose total is below the info's own 4 bytes.
    #[error("{area} at byte {offset}: total {total} is below 4")]
    TlvAreaLength {
        /// Which area.
        area: Area,
        /// Offset of the info.
        offset: u64,
        /// The total found.
        total: u16,
    },
    /// The TLV areas are longer than a device reads at once ([`MAX_TLV_AREA`]).
    #[error("TLV areas of {len} bytes exceed the {max}-byte limit")]
    TlvAreaTooLarge {
        /// Their length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A TLV whose header or value runs past the end of its area.
    #[error("{area}: TLV at byte {offset} runs past the end of the area")]
    TlvPastEnd {
        /// Which area.
        area: Area,
        /// Offset of the TLV header.
        offset: u64,
    },
    /// A TLV of a type that may appear once appears again (a second signature, hash or key).
    #[error("{area}: second TLV of type {kind:#04x} at byte {offset}")]
    DuplicateTlv {
        /// Which area.
        area: Area,
        /// The TLV type.
        kind: u16,
        /// Offset of the second one.
        offset: u64,
    },
    /// A TLV in an area it must not be in (a security counter outside the protected area, a hash
    /// inside it) or of a type this verifier does not accept there.
    #[error("{area}: TLV of type {kind:#04x} at byte {offset} is not allowed there")]
    UnexpectedTlv {
        /// Which area.
        area: Area,
        /// The TLV type.
        kind: u16,
        /// Offset of the TLV header.
        offset: u64,
    },
    /// A TLV with a length its type does not have.
    #[error("TLV of type {kind:#04x} at byte {offset} has length {len}")]
    TlvLength {
        /// The TLV type.
        kind: u16,
        /// Offset of the TLV header.
        offset: u64,
        /// Its length.
        len: u16,
    },
    /// A TLV the image needs is not there (the hash, a key or key hash, the signature).
    #[error("no TLV of type {kind:#04x}")]
    MissingTlv {
        /// The TLV type.
        kind: u16,
    },
    /// The signature comes before the hash or the key it needs (MCUboot reads them in order).
    #[error("signature TLV at byte {offset} comes before the hash and key TLVs")]
    TlvOrder {
        /// Offset of the signature TLV.
        offset: u64,
    },
    /// The signature TLV is not a strict DER ECDSA P-256 signature.
    #[error("signature TLV at byte {offset} is not strict DER ECDSA-Sig-Value")]
    SignatureEncoding {
        /// Offset of the TLV header.
        offset: u64,
    },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// `struct image_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `ih_load_addr`.
    pub load_addr: u32,
    /// `ih_hdr_size`: bytes before the firmware (at least 32).
    pub header_size: u16,
    /// `ih_protect_tlv_size`: length of the protected TLV area, its info included (0: none).
    pub protected_tlv_size: u16,
    /// `ih_img_size`: length of the firmware.
    pub image_size: u32,
    /// `ih_flags`.
    pub flags: u32,
    /// `ih_ver`.
    pub version: ImageVersion,
}

impl Header {
    /// Parses the header from the first 32 bytes of `bytes` (more may follow).
    pub fn parse(bytes: &[u8]) -> Result<Self, McubootError> {
        let too_short = McubootError::TooShort {
            len: bytes.len() as u64,
        };
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(too_short)?;
        let word = |at| u32_at(b, at).ok_or(too_short);
        let half = |at| u16_at(b, at).ok_or(too_short);
        let magic = word(0)?;
        if magic != IMAGE_MAGIC {
            return Err(McubootError::BadMagic { found: magic });
        }
        let header = Self {
            load_addr: word(4)?,
            header_size: half(8)?,
            protected_tlv_size: half(10)?,
            image_size: word(12)?,
            flags: word(16)?,
            version: ImageVersion {
                major: *b.get(20).ok_or(too_short)?,
                minor: *b.get(21).ok_or(too_short)?,
                revision: half(22)?,
                build: word(24)?,
            },
        };
        if usize::from(header.header_size) < HEADER_LEN {
            return Err(McubootError::HeaderSize {
                size: header.header_size,
            });
        }
        let unsupported = header.flags & !flags::SUPPORTED;
        if unsupported != 0 {
            return Err(McubootError::UnsupportedFlags { flags: unsupported });
        }
        if word(28)? != 0 {
            return Err(McubootError::ReservedNotZero);
        }
        Ok(header)
    }

    /// The 32 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let fields: [&[u8]; 9] = [
            &IMAGE_MAGIC.to_le_bytes(),
            &self.load_addr.to_le_bytes(),
            &self.header_size.to_le_bytes(),
            &self.protected_tlv_size.to_le_bytes(),
            &self.image_size.to_le_bytes(),
            &self.flags.to_le_bytes(),
            &[self.version.major, self.version.minor],
            &self.version.revision.to_le_bytes(),
            &self.version.build.to_le_bytes(),
        ];
        let mut at = out.iter_mut();
        for byte in fields.iter().flat_map(|f| f.iter()) {
            if let Some(slot) = at.next() {
                *slot = *byte;
            }
        }
        out
    }

    /// Offset of the first TLV area (the end of the firmware).
    pub fn tlv_offset(&self) -> u64 {
        u64::from(self.header_size) + u64::from(self.image_size)
    }

    /// Length of the hashed region: header, padding, firmware and protected TLV area.
    pub fn hashed_len(&self) -> u64 {
        self.tlv_offset() + u64::from(self.protected_tlv_size)
    }
}

/// The signer's public key as the image names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// KEYHASH: SHA-256 of the key's DER SubjectPublicKeyInfo (imgtool's default).
    Hash(Hash),
    /// PUBKEY: the key's DER SubjectPublicKeyInfo.
    Full(&'a [u8]),
}

/// The TLVs an image carries, checked for shape: each known type at most once, in its area, with
/// its length; the hash, a key reference and the signature present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlvs<'a> {
    /// SEC_CNT (protected), if present.
    pub security_counter: Option<u32>,
    /// Number of DEPENDENCY TLVs (protected); not evaluated by cairn's check.
    pub dependencies: u16,
    /// The SHA256 TLV's value.
    pub hash: Hash,
    /// KEYHASH or PUBKEY.
    pub key: KeyRef<'a>,
    /// The ECDSA_SIG TLV's value (strict DER).
    pub signature_der: &'a [u8],
    /// The signature as `r || s`.
    pub signature: Signature,
    /// Length of both areas together (from the header's TLV offset to the end of the last TLV).
    pub len: u64,
}

/// What the TLV walk has collected so far.
#[derive(Default)]
struct Found<'a> {
    security_counter: Option<u32>,
    dependencies: u16,
    hash: Option<Hash>,
    key: Option<KeyRef<'a>>,
    signature: Option<(&'a [u8], Signature)>,
}

impl<'a> Tlvs<'a> {
    /// Parses both TLV areas. `area` holds the bytes from the header's TLV offset onward (at least
    /// the areas; more may follow); `offset` is where `area` starts in the image, for error
    /// reports.
    pub fn parse(header: &Header, area: &'a [u8]) -> Result<Self, McubootError> {
        let base = header.tlv_offset();
        let mut found = Found::default();
        let mut at = 0usize;
        if header.protected_tlv_size != 0 {
            let total = read_info(area, 0, base, Area::Protected)?;
            if total != header.protected_tlv_size {
                return Err(McubootError::OverlappingAreas {
                    header: header.protected_tlv_size,
                    info: total,
                });
            }
            walk(area, 0, total, base, Area::Protected, &mut found)?;
            at = usize::from(total);
        }
        let total = read_info(area, at, base, Area::Unprotected)?;
        walk(area, at, total, base, Area::Unprotected, &mut found)?;
        let end = at.saturating_add(usize::from(total));
        let hash = found
            .hash
            .ok_or(McubootError::MissingTlv { kind: tlv::SHA256 })?;
        let key = found
            .key
            .ok_or(McubootError::MissingTlv { kind: tlv::KEYHASH })?;
        let (signature_der, signature) = found.signature.ok_or(McubootError::MissingTlv {
            kind: tlv::ECDSA_SIG,
        })?;
        Ok(Self {
            security_counter: found.security_counter,
            dependencies: found.dependencies,
            hash,
            key,
            signature_der,
            signature,
            len: end as u64,
        })
    }

    /// The length of both TLV areas (from the header's TLV offset to the end of the last TLV),
    /// from the header and the 4-byte info that opens the unprotected area (at
    /// `header.tlv_offset() + header.protected_tlv_size`): what a device reads before it reads the
    /// areas themselves.
    /// Call [`Tlvs::protected_info`] first when the header has a protected area.
    pub fn areas_len(header: &Header, info: &[u8]) -> Result<u64, McubootError> {
        let offset = header.tlv_offset() + u64::from(header.protected_tlv_size);
        let total = info_total(info, offset, Area::Unprotected)?;
        Ok(u64::from(header.protected_tlv_size) + u64::from(total))
    }

    /// Checks the 4-byte info at the header's TLV offset against a header with a protected area:
    /// its magic, and that its total is the header's protected TLV size.
    pub fn protected_info(header: &Header, info: &[u8]) -> Result<(), McubootError> {
        let total = info_total(info, header.tlv_offset(), Area::Protected)?;
        if total == header.protected_tlv_size {
            Ok(())
        } else {
            Err(McubootError::OverlappingAreas {
                header: header.protected_tlv_size,
                info: total,
            })
        }
    }
}

/// The total of the TLV info at the start of `info`, after checking its magic and that the total
/// covers at least the info itself. `offset` is where the info is in the image.
fn info_total(info: &[u8], offset: u64, which: Area) -> Result<u16, McubootError> {
    let (Some(magic), Some(total)) = (u16_at(info, 0), u16_at(info, 2)) else {
        return Err(McubootError::BeyondInput {
            what: which.name(),
            stated: offset + TLV_INFO_LEN as u64,
            len: offset + info.len() as u64,
        });
    };
    let expected = match which {
        Area::Protected => TLV_PROT_INFO_MAGIC,
        Area::Unprotected => TLV_INFO_MAGIC,
    };
    if magic != expected {
        return Err(McubootError::TlvInfoMagic {
            area: which,
            offset,
            found: magic,
        });
    }
    if usize::from(total) < TLV_INFO_LEN {
        return Err(McubootError::TlvAreaLength {
            area: which,
            offset,
            total,
        });
    }
    Ok(total)
}

/// Reads the TLV info at `area[at..]` ([`info_total`]) and checks the area fits in `area`;
/// returns its total.
fn read_info(area: &[u8], at: usize, base: u64, which: Area) -> Result<u16, McubootError> {
    let offset = base + at as u64;
    let total = info_total(area.get(at..).unwrap_or_default(), offset, which)?;
    if at.saturating_add(usize::from(total)) > area.len() {
        return Err(McubootError::BeyondInput {
            what: which.name(),
            stated: offset + u64::from(total),
            len: base + area.len() as u64,
        });
    }
    Ok(total)
}

/// Walks the TLVs of one area (`area[start..start + total]`, info included).
fn walk<'a>(
    area: &'a [u8],
    start: usize,
    total: u16,
    base: u64,
    which: Area,
    found: &mut Found<'a>,
) -> Result<(), McubootError> {
    let end = start.saturating_add(usize::from(total));
    let mut at = start.saturating_add(TLV_INFO_LEN);
    while at < end {
        let offset = base + at as u64;
        let past_end = McubootError::TlvPastEnd {
            area: which,
            offset,
        };
        let value_at = at.checked_add(TLV_HEADER_LEN).ok_or(past_end)?;
        if value_at > end {
            return Err(past_end);
        }
        let kind = u16_at(area, at).ok_or(past_end)?;
        let len = u16_at(area, at.saturating_add(2)).ok_or(past_end)?;
        let next = value_at.saturating_add(usize::from(len));
        if next > end {
            return Err(past_end);
        }
        let value = area.get(value_at..next).ok_or(past_end)?;
        take(kind, value, offset, which, found)?;
        at = next;
    }
    Ok(())
}

/// Records one TLV, checking its area, length and uniqueness.
fn take<'a>(
    kind: u16,
    value: &'a [u8],
    offset: u64,
    which: Area,
    found: &mut Found<'a>,
) -> Result<(), McubootError> {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    let wrong_length = McubootError::TlvLength { kind, offset, len };
    let duplicate = McubootError::DuplicateTlv {
        area: which,
        kind,
        offset,
    };
    let unexpected = McubootError::UnexpectedTlv {
        area: which,
        kind,
        offset,
    };
    match (which, kind) {
        (Area::Protected, tlv::SEC_CNT) => {
            let v: [u8; 4] = value.try_into().map_err(|_| wrong_length)?;
            if found
                .security_counter
                .replace(u32::from_le_bytes(v))
                .is_some()
            {
                return Err(duplicate);
            }
        }
        (Area::Protected, tlv::DEPENDENCY) => {
            if value.len() != 12 {
                return Err(wrong_length);
            }
            found.dependencies = found.dependencies.saturating_add(1);
        }
        // Other protected TLVs (boot record, vendor TLVs) are signed and carry no meaning here.
        (Area::Protected, tlv::SHA256 | tlv::KEYHASH | tlv::PUBKEY | tlv::ECDSA_SIG) => {
            return Err(unexpected);
        }
        (Area::Protected, _) => {}
        (Area::Unprotected, tlv::SHA256) => {
            let v: Hash = value.try_into().map_err(|_| wrong_length)?;
            if found.hash.replace(v).is_some() {
                return Err(duplicate);
            }
        }
        (Area::Unprotected, tlv::KEYHASH | tlv::PUBKEY) => {
            let key = if kind == tlv::KEYHASH {
                KeyRef::Hash(value.try_into().map_err(|_| wrong_length)?)
            } else if value.is_empty() || value.len() > 256 {
                return Err(wrong_length);
            } else {
                KeyRef::Full(value)
            };
            if found.key.replace(key).is_some() {
                return Err(duplicate);
            }
        }
        (Area::Unprotected, tlv::ECDSA_SIG) => {
            if found.signature.is_some() {
                return Err(duplicate);
            }
            if found.hash.is_none() || found.key.is_none() {
                return Err(McubootError::TlvOrder { offset });
            }
            let raw = der_to_raw(value).ok_or(McubootError::SignatureEncoding { offset })?;
            found.signature = Some((value, raw));
        }
        // Anything else outside the hash is neither signed nor understood: refused.
        (Area::Unprotected, _) => return Err(unexpected),
    }
    Ok(())
}

/// A whole MCUboot image in memory, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image<'a> {
    /// The header.
    pub header: Header,
    /// The TLVs.
    pub tlvs: Tlvs<'a>,
    /// The hashed region: header, padding, firmware, protected TLV area.
    pub hashed: &'a [u8],
    /// The firmware.
    pub firmware: &'a [u8],
    /// Bytes after the last TLV: padding and swap trailer (empty unless padded to the slot).
    pub trailer: &'a [u8],
}

impl<'a> Image<'a> {
    /// Parses a whole image (trailing padding allowed).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, McubootError> {
        let header = Header::parse(bytes)?;
        let len = bytes.len() as u64;
        let tlv_offset = header.tlv_offset();
        let area = usize::try_from(tlv_offset)
            .ok()
            .and_then(|at| bytes.get(at..))
            .ok_or(McubootError::BeyondInput {
                what: "firmware",
                stated: tlv_offset,
                len,
            })?;
        let tlvs = Tlvs::parse(&header, area)?;
        let at = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let hashed = bytes.get(..at(header.hashed_len())).unwrap_or_default();
        let firmware = bytes
            .get(usize::from(header.header_size)..at(tlv_offset))
            .unwrap_or_default();
        let trailer = bytes.get(at(tlv_offset + tlvs.len)..).unwrap_or_default();
        Ok(Self {
            header,
            tlvs,
            hashed,
            firmware,
            trailer,
        })
    }

    /// Length of the image up to the end of its TLVs (without padding and trailer).
    pub fn signed_len(&self) -> u64 {
        self.header.tlv_offset() + self.tlvs.len
    }
}

#[cfg(test)]
mod tests;
