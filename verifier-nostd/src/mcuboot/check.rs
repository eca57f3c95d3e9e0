//! Step 9 of the boot check for a release in MCUboot format: the image in flash is the very image
//! the STM32H5's secure boot (MCUboot / OEMiROT) will check again and swap in, and cairn checks
//! that it is the one the release statement speaks about, in this order:
//!
//! 1. its size is the release's image size;
//! 2. it parses as an MCUboot image (header, protected TLVs, TLVs; [`McubootError`]);
//! 3. its header version is the release version (`major.minor.patch+0`);
//! 4. its protected security counter is the release's security epoch;
//! 5. it names the pinned release key (KEYHASH = SHA-256 of its SubjectPublicKeyInfo, or PUBKEY);
//! 6. one pass over flash gives both SHA-256 digests that share a prefix: of the whole image (the
//!    release's image digest) and of header, firmware and protected TLVs (the SHA256 TLV, which
//!    must also be the value the release statement carries);
//! 7. its ECDSA_SIG TLV verifies over that digest with the pinned release key.
//!
//! Each failure is its own [`Error`] variant. The cheap checks run before the hash and the
//! signature; the hash runs once, whatever the image size.

use super::{Header, KeyRef, MAX_TLV_AREA, McubootError, TLV_INFO_LEN, Tlvs};
use crate::cose::ReleaseKey;
use crate::crypto::{Crypto, PublicKey, Sha256};
use crate::error::Error;
use crate::image::{CHUNK, ImageReader};
use crate::merkle::ct_eq;
use crate::statement::ReleaseStatement;
use crate::types::{Hash, SecurityEpoch, Version};

/// What a release statement says about its MCUboot image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stated {
    /// Length of the whole signed image.
    pub image_size: u64,
    /// SHA-256 of the whole signed image.
    pub image_digest: Hash,
    /// The release version (the header's must be its MCUboot form).
    pub version: Version,
    /// The release's security epoch (the security counter must equal it).
    pub security_epoch: SecurityEpoch,
    /// The image's SHA256 TLV (statement key 14).
    pub mcuboot_hash: Hash,
}

impl Stated {
    /// What `release` states, if it is an MCUboot-format release.
    pub fn of(release: &ReleaseStatement<'_>) -> Option<Self> {
        Some(Self {
            image_size: release.image_size,
            image_digest: release.image_digest,
            version: release.version,
            security_epoch: release.security_epoch,
            mcuboot_hash: release.mcuboot_hash?,
        })
    }
}

/// Checks the MCUboot image in `image` against what the release states and the pinned release
/// `key` (module documentation lists the steps).
pub fn check_image<C: Crypto, I: ImageReader>(
    image: &mut I,
    release: &Stated,
    key: &ReleaseKey,
    crypto: &C,
) -> Result<(), Error> {
    let size = image.len();
    if size != release.image_size {
        return Err(Error::ImageSize {
            expected: release.image_size,
            actual: size,
        });
    }
    let malformed = Error::MalformedImage;

    let mut head = [0u8; super::HEADER_LEN];
    if size < head.len() as u64 {
        return Err(malformed(McubootError::TooShort { len: size }));
    }
    image.read(0, &mut head).map_err(|_| Error::FlashRead)?;
    let header = Header::parse(&head).map_err(malformed)?;

    let mut area = [0u8; MAX_TLV_AREA];
    let tlvs_len = read_tlvs(image, &header, &mut area)?;
    let tlvs = Tlvs::parse(&header, area.get(..tlvs_len).unwrap_or_default()).map_err(malformed)?;

    if !header.version.is_release(release.version) {
        return Err(Error::McubootVersion {
            image: header.version,
            release: release.version,
        });
    }
    if tlvs.security_counter.map(u64::from) != Some(release.security_epoch.0) {
        return Err(Error::McubootSecurityCounter {
            image: tlvs.security_counter,
            release: release.security_epoch,
        });
    }
    let names_key = match tlvs.key {
        KeyRef::Hash(hash) => ct_eq(&hash, &key.kid),
        KeyRef::Full(spki) => PublicKey::from_spki_der(spki) == Some(key.public),
    };
    if !names_key {
        return Err(Error::McubootKey);
    }

    let (whole, hashed) = digests(image, size, header.hashed_len(), crypto)?;
    if !ct_eq(&whole, &release.image_digest) {
        return Err(Error::ImageDigest);
    }
    if !ct_eq(&hashed, &tlvs.hash) {
        return Err(Error::McubootHash);
    }
    if !ct_eq(&tlvs.hash, &release.mcuboot_hash) {
        return Err(Error::McubootHashNotStated);
    }
    if !crypto.verify_p256(&key.public, &tlvs.hash, &tlvs.signature) {
        return Err(Error::McubootSignature);
    }
    Ok(())
}

/// Reads both TLV areas into `area`; returns their length. Every offset comes from the header
/// and the TLV infos, and is checked against the image size and the buffer before it is read.
fn read_tlvs<I: ImageReader>(
    image: &mut I,
    header: &Header,
    area: &mut [u8; MAX_TLV_AREA],
) -> Result<usize, Error> {
    let size = image.len();
    let malformed = Error::MalformedImage;
    let beyond = |what, stated| {
        malformed(McubootError::BeyondInput {
            what,
            stated,
            len: size,
        })
    };
    let tlv_offset = header.tlv_offset();
    if tlv_offset > size {
        return Err(beyond("firmware", tlv_offset));
    }
    let mut info = [0u8; TLV_INFO_LEN];
    if header.protected_tlv_size != 0 {
        let info_end = tlv_offset + TLV_INFO_LEN as u64;
        if info_end > size {
            return Err(beyond("protected TLV area", info_end));
        }
        image
            .read(tlv_offset, &mut info)
            .map_err(|_| Error::FlashRead)?;
        Tlvs::protected_info(header, &info).map_err(malformed)?;
    }
    let info_at = header.hashed_len();
    let info_end = info_at + TLV_INFO_LEN as u64;
    if info_end > size {
        return Err(beyond("TLV area", info_end));
    }
    image
        .read(info_at, &mut info)
        .map_err(|_| Error::FlashRead)?;
    let len = Tlvs::areas_len(header, &info).map_err(malformed)?;
    if tlv_offset + len > size {
        return Err(beyond("TLV area", tlv_offset + len));
    }
    let n = usize::try_from(len)
        .ok()
        .filter(|&n| n <= MAX_TLV_AREA)
        .ok_or(malformed(McubootError::TlvAreaTooLarge {
            len,
            max: MAX_TLV_AREA,
        }))?;
    let buf = area.get_mut(..n).ok_or(Error::FlashRead)?;
    image.read(tlv_offset, buf).map_err(|_| Error::FlashRead)?;
    Ok(n)
}

/// One pass over the image in [`CHUNK`]s: the SHA-256 of all `size` bytes, and of the first
/// `prefix` bytes (the running state is copied at that point, so the prefix is hashed once).
fn digests<C: Crypto, I: ImageReader>(
    image: &mut I,
    size: u64,
    prefix: u64,
    crypto: &C,
) -> Result<(Hash, Hash), Error> {
    let mut h = crypto.sha256();
    let mut forked = None;
    let mut buf = [0u8; CHUNK];
    let mut offset = 0u64;
    while offset < size {
        // Stop each chunk at the prefix's end, so the state can be copied there.
        let stop = if offset < prefix { prefix } else { size };
        let n = usize::try_from((stop - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
        let chunk = buf.get_mut(..n).ok_or(Error::FlashRead)?;
        image.read(offset, chunk).map_err(|_| Error::FlashRead)?;
        h.update(chunk);
        offset = offset.saturating_add(n as u64);
        if offset == prefix {
            forked = Some(h.clone());
        }
    }
    let prefix_digest = forked.ok_or(Error::FlashRead)?.finish();
    Ok((h.finish(), prefix_digest))
}
