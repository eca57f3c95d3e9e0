//! Encoding MCUboot images byte for byte as `imgtool sign --pad-header` 2.5.0 writes them for an
//! ECDSA P-256 key (imgtool `image.py`: `Image.create`, `add_header`, `_trailer_size`, `pad_to`),
//! in pieces, so a signer can stream the firmware through the hash and have the digest signed
//! elsewhere (an HSM):
//!
//! 1. [`Plan::new`] checks the layout and sizes; [`Plan::head`] is the header and its padding;
//! 2. the firmware follows; [`Plan::protected`] is the protected TLV area (security counter);
//! 3. the SHA-256 of everything so far is the image digest: the release key signs it;
//! 4. [`Plan::tail`] is the TLV area (SHA256, KEYHASH, ECDSA_SIG) and, with `pad`, the padding
//!    and swap trailer up to the slot size.

use alloc::vec::Vec;

use super::{
    HEADER_LEN, Header, ImageVersion, TLV_INFO_LEN, TLV_INFO_MAGIC, TLV_PROT_INFO_MAGIC, flags, tlv,
};
use crate::types::Hash;

/// Longest DER ECDSA P-256 signature: room reserved when checking the slot before signing.
pub const MAX_SIGNATURE_DER: usize = 72;

/// imgtool's `DEFAULT_MAX_SECTORS`.
pub const DEFAULT_MAX_SECTORS: u32 = 128;

/// The swap trailer magic for a maximum alignment of 8 (`boot_img_magic`).
const BOOT_MAGIC: [u8; 16] = [
    0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80,
];

/// Where and how the image goes into flash: imgtool's `--header-size`, `--slot-size`, `--align`,
/// `--max-align`, `--max-sectors`, `--pad`, `--confirm`, `--load-addr`, `--erased-val`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes before the firmware (header and its padding), at least 32.
    pub header_size: u16,
    /// Size of the secondary slot, if known: the image and trailer must fit.
    pub slot_size: Option<u64>,
    /// Flash write alignment for the swap status (1, 2, 4, 8, 16 or 32).
    pub align: u8,
    /// Largest write alignment of both slots (8, 16 or 32); `None` for `max(8, align)`.
    pub max_align: Option<u8>,
    /// Sectors the swap status has room for.
    pub max_sectors: u32,
    /// Pad the image to the slot size and write the trailer magic (needs `slot_size`).
    pub pad: bool,
    /// Mark the image confirmed (`image_ok`), so the swap is permanent; implies `pad`.
    pub confirm: bool,
    /// RAM load address (0: runs from flash).
    pub load_addr: u32,
    /// What erased flash reads as (header padding and slot padding are filled with it).
    pub erased_val: u8,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            header_size: 0x400,
            slot_size: None,
            align: 1,
            max_align: None,
            max_sectors: DEFAULT_MAX_SECTORS,
            pad: false,
            confirm: false,
            load_addr: 0,
            erased_val: 0xff,
        }
    }
}

/// Why an image cannot be laid out as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The header size is below 32 bytes.
    #[error("header size {0} is below the 32-byte header")]
    HeaderSize(u16),
    /// An alignment imgtool does not offer.
    #[error("alignment {align} (max alignment {max_align}) is not one imgtool offers")]
    Alignment {
        /// `--align`.
        align: u8,
        /// `--max-align`.
        max_align: u8,
    },
    /// `pad` or `confirm` without a slot size.
    #[error("padding to the slot needs a slot size")]
    PadWithoutSlot,
    /// The firmware is longer than the header's 32-bit image size.
    #[error("firmware of {0} bytes does not fit the header's 32-bit size")]
    FirmwareTooLarge(u64),
    /// The release version does not fit MCUboot's `major.minor.revision` (8, 8, 16 bits).
    #[error("version does not fit MCUboot's 8.8.16-bit version")]
    Version,
    /// Image, TLVs and trailer are larger than the slot.
    #[error("image of {image} bytes and trailer of {trailer} bytes exceed the {slot}-byte slot")]
    SlotTooSmall {
        /// Header, firmware and TLVs.
        image: u64,
        /// The swap trailer.
        trailer: u64,
        /// The slot size.
        slot: u64,
    },
    /// A signature longer than a DER ECDSA P-256 signature can be.
    #[error("signature of {0} bytes is not a DER ECDSA P-256 signature")]
    Signature(usize),
}

impl Layout {
    fn max_align(&self) -> u8 {
        self.max_align.unwrap_or(self.align.max(8))
    }

    /// Checks the options as imgtool's command line does.
    pub fn check(&self) -> Result<(), LayoutError> {
        if usize::from(self.header_size) < HEADER_LEN {
            return Err(LayoutError::HeaderSize(self.header_size));
        }
        let max_align = self.max_align();
        if ![1, 2, 4, 8, 16, 32].contains(&self.align)
            || ![8, 16, 32].contains(&max_align)
            || max_align < self.align
        {
            return Err(LayoutError::Alignment {
                align: self.align,
                max_align,
            });
        }
        if (self.pad || self.confirm) && self.slot_size.is_none() {
            return Err(LayoutError::PadWithoutSlot);
        }
        Ok(())
    }

    /// Length of the swap trailer (imgtool `_trailer_size`, swap mode, no encryption).
    pub fn trailer_size(&self) -> u64 {
        let max_align = u64::from(self.max_align());
        let magic = 16u64.div_ceil(max_align) * max_align;
        u64::from(self.max_sectors) * 3 * u64::from(self.align) + max_align * 4 + magic
    }

    /// The trailer magic for this maximum alignment.
    pub fn boot_magic(&self) -> [u8; 16] {
        let max_align = self.max_align();
        if max_align == 8 {
            return BOOT_MAGIC;
        }
        // The alignment as a little-endian u16, then imgtool's fixed 14 bytes.
        [
            max_align, 0, 0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f,
            0x1f, 0x8a,
        ]
    }

    fn check_slot(&self, image: u64) -> Result<(), LayoutError> {
        match self.slot_size {
            Some(slot) if image.saturating_add(self.trailer_size()) > slot => {
                Err(LayoutError::SlotTooSmall {
                    image,
                    trailer: self.trailer_size(),
                    slot,
                })
            }
            _ => Ok(()),
        }
    }
}

/// The protected TLV area for a security counter (imgtool: info, then SEC_CNT).
fn protected_area(security_counter: Option<u32>) -> Vec<u8> {
    let Some(counter) = security_counter else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&TLV_PROT_INFO_MAGIC.to_le_bytes());
    out.extend_from_slice(&12u16.to_le_bytes());
    push_tlv(&mut out, tlv::SEC_CNT, &counter.to_le_bytes());
    out
}

fn push_tlv(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(value);
}

/// Length of the unprotected TLV area with a signature of `sig_len` bytes.
fn unprotected_len(sig_len: usize) -> u64 {
    (TLV_INFO_LEN + 3 * 4 + 32 + 32 + sig_len) as u64
}

/// One image's layout, decided before the firmware is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The header the image will have.
    pub header: Header,
    layout: Layout,
    protected: Vec<u8>,
}

impl Plan {
    /// Plans an image of `firmware_len` bytes. Fails if the options are not ones imgtool takes, the
    /// version does not fit, or the image could not fit the slot even with the longest signature.
    pub fn new(
        layout: &Layout,
        version: ImageVersion,
        security_counter: Option<u32>,
        firmware_len: u64,
    ) -> Result<Self, LayoutError> {
        layout.check()?;
        let image_size =
            u32::try_from(firmware_len).map_err(|_| LayoutError::FirmwareTooLarge(firmware_len))?;
        let protected = protected_area(security_counter);
        let header = Header {
            load_addr: layout.load_addr,
            header_size: layout.header_size,
            protected_tlv_size: u16::try_from(protected.len()).unwrap_or(0),
            image_size,
            flags: if layout.load_addr == 0 {
                0
            } else {
                flags::RAM_LOAD
            },
            version,
        };
        layout.check_slot(header.hashed_len() + unprotected_len(MAX_SIGNATURE_DER))?;
        Ok(Self {
            header,
            layout: *layout,
            protected,
        })
    }

    /// The header and its padding (`header_size` bytes; the padding is the erased value, as
    /// imgtool's `--pad-header` writes it).
    pub fn head(&self) -> Vec<u8> {
        let mut out = alloc::vec![self.layout.erased_val; usize::from(self.header.header_size)];
        for (slot, byte) in out.iter_mut().zip(self.header.to_bytes()) {
            *slot = byte;
        }
        out
    }

    /// The protected TLV area (after the firmware, inside the hash).
    pub fn protected(&self) -> &[u8] {
        &self.protected
    }

    /// The TLV area after the hash (SHA256, KEYHASH, ECDSA_SIG in imgtool's order), then, with
    /// `pad`, the padding and trailer up to the slot size.
    pub fn tail(
        &self,
        hash: &Hash,
        key_hash: &Hash,
        signature_der: &[u8],
    ) -> Result<Vec<u8>, LayoutError> {
        if signature_der.len() > MAX_SIGNATURE_DER {
            return Err(LayoutError::Signature(signature_der.len()));
        }
        let total = unprotected_len(signature_der.len());
        let image = self.header.hashed_len() + total;
        self.layout.check_slot(image)?;
        let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        out.extend_from_slice(&TLV_INFO_MAGIC.to_le_bytes());
        out.extend_from_slice(&u16::try_from(total).unwrap_or(0).to_le_bytes());
        push_tlv(&mut out, tlv::SHA256, hash);
        push_tlv(&mut out, tlv::KEYHASH, key_hash);
        push_tlv(&mut out, tlv::ECDSA_SIG, signature_der);
        // `confirm` implies `pad`, as in imgtool.
        let pad = self.layout.pad || self.layout.confirm;
        if let (true, Some(slot)) = (pad, self.layout.slot_size) {
            let pad = usize::try_from(slot - image).unwrap_or(0);
            let start = out.len();
            out.resize(start + pad, self.layout.erased_val);
            let magic = self.layout.boot_magic();
            let end = out.len();
            if let Some(m) = out.get_mut(end.saturating_sub(magic.len())..) {
                m.copy_from_slice(&magic);
            }
            if self.layout.confirm {
                // image_ok sits one max-align unit before the aligned magic.
                let max_align = usize::from(self.layout.max_align());
                let magic_aligned = 16usize.div_ceil(max_align) * max_align;
                if let Some(b) = out.get_mut(end.saturating_sub(magic_aligned + max_align)) {
                    *b = 0x01;
                }
            }
        }
        Ok(out)
    }
}

/// Builds a whole signed image in memory: `sign` gets the image digest and returns the DER
/// signature (the signer and tests use it for small images; large ones are streamed).
pub fn image<E: From<LayoutError>>(
    firmware: &[u8],
    layout: &Layout,
    version: ImageVersion,
    security_counter: Option<u32>,
    key_hash: &Hash,
    sign: impl FnOnce(&Hash) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let plan = Plan::new(layout, version, security_counter, firmware.len() as u64)?;
    let mut out = plan.head();
    out.extend_from_slice(firmware);
    out.extend_from_slice(plan.protected());
    let hash: Hash =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&out)).into();
    let signature = sign(&hash)?;
    out.extend(plan.tail(&hash, key_hash, &signature)?);
    Ok(out)
}
