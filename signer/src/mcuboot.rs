//! Releases in MCUboot format (`cairn release sign --format mcuboot`): the image the STM32H5's
//! own secure boot (ST's OEMiROT / OEMuROT, which is MCUboot) checks, signed by the release key in
//! the HSM, and a release statement that binds exactly that image (docs/formats.md §8).
//!
//! Two inputs are accepted ([`McubootSource`]):
//!
//! - **raw firmware**: cairn lays out the image as `imgtool sign --pad-header` 2.5.0 would (header,
//!   firmware, protected security counter = the release's security epoch, version = the release
//!   version), hashing while it streams the firmware to the output once. The HSM signs the
//!   SHA256 TLV's digest with `CKM_ECDSA`; the `r || s` it returns is normalised to low S and
//!   written as DER. The statement's image digest and size are of the whole finished image; it also
//!   carries the SHA256 TLV (key 14). The output appears only after the release is logged: an image
//!   the release key signed but the log does not hold is never left behind.
//! - **a finished MCUboot image**, e.g. made by imgtool with
//!   `--vector-to-sign digest` and `--fix-sig` with a signature from this HSM: it is checked exactly
//!   as a device checks it (`cairn_verifier::mcuboot::check`: layout, version = the release version,
//!   security counter = the epoch, key = the release key, hash, signature) before anything is
//!   logged, and logged as it is.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use cairn_verifier::boot::ImageReader;
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::{Crypto as _, Signature, Software, raw_to_der};
use cairn_verifier::mcuboot::check::{Stated, check_image};
use cairn_verifier::mcuboot::write::{Layout, Plan};
use cairn_verifier::mcuboot::{IMAGE_MAGIC, ImageVersion, Tlvs};
use cairn_verifier::statement::ReleaseStatement;
use cairn_verifier::types::{Hash, SecurityEpoch, Version};
use sha2::{Digest as _, Sha256};

use crate::appliance::stream_sha256;
use crate::error::{Error, Result, io};
use crate::hsm::HsmKey;

/// What a release statement states about its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// SHA-256 of the whole image file.
    pub digest: Hash,
    /// Its length.
    pub size: u64,
    /// For an MCUboot image, its SHA256 TLV.
    pub mcuboot_hash: Option<Hash>,
}

/// What `release sign --format mcuboot` is given.
#[derive(Debug, Clone)]
pub enum McubootSource {
    /// Raw firmware, laid out and signed here.
    Firmware {
        /// The layout (imgtool's header size, slot size, alignment and pad options).
        layout: Layout,
        /// Where the signed image is written (must not exist).
        out: PathBuf,
    },
    /// A finished MCUboot image, signed with the release key outside cairn (imgtool with
    /// `--fix-sig` and this HSM's signature): checked, then logged as it is.
    Finished,
}

/// Bytes read and written per step while streaming the firmware.
const STREAM_CHUNK: usize = 1 << 20;

/// Whether `path` starts with the MCUboot image magic.
pub(crate) fn is_mcuboot_image(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path).map_err(io("opening image", path))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = f.read(&mut magic[got..]).map_err(io("reading", path))?;
        if n == 0 {
            return Ok(false);
        }
        got += n;
    }
    Ok(u32::from_le_bytes(magic) == IMAGE_MAGIC)
}

/// Streams `firmware` into `out` as a signed MCUboot image: one read of the firmware, one hash
/// pass that gives both the SHA256 TLV (the state is copied after the protected TLVs) and the
/// digest of the whole image.
pub(crate) fn build(
    firmware: &Path,
    layout: &Layout,
    version: ImageVersion,
    counter: u32,
    release: &HsmKey<'_>,
    out: &mut std::fs::File,
    out_name: &Path,
) -> Result<Measured> {
    let mut input = std::fs::File::open(firmware).map_err(io("opening image", firmware))?;
    let len = input
        .metadata()
        .map_err(io("reading the size of", firmware))?
        .len();
    let plan = Plan::new(layout, version, Some(counter), len)?;
    let mut h = Sha256::new();
    let mut w = std::io::BufWriter::with_capacity(STREAM_CHUNK, out);
    let mut put = |h: &mut Sha256, bytes: &[u8]| -> Result<()> {
        h.update(bytes);
        w.write_all(bytes)
            .map_err(io("writing the signed image", out_name))
    };
    put(&mut h, &plan.head())?;
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut read = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io("reading", firmware))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        put(&mut h, &buf[..n])?;
    }
    if read != len {
        return Err(Error::Invalid(format!(
            "{} changed while it was read ({len} bytes, then {read})",
            firmware.display()
        )));
    }
    put(&mut h, plan.protected())?;
    let hash: Hash = h.clone().finalize().into();
    let der = sign_hash(release, &hash)?;
    let tail = plan.tail(&hash, &release.key_id(), &der)?;
    put(&mut h, &tail)?;
    let size = plan.header.hashed_len() + tail.len() as u64;
    w.flush()
        .map_err(io("writing the signed image", out_name))?;
    Ok(Measured {
        digest: h.finalize().into(),
        size,
        mcuboot_hash: Some(hash),
    })
}

/// The HSM's ECDSA signature over `hash`, low S, as DER; verified before it is used.
pub fn sign_hash(release: &HsmKey<'_>, hash: &Hash) -> Result<Vec<u8>> {
    let sig = release.sign_digest(hash)?;
    let sig = sig.normalize_s();
    let raw = Signature(sig.to_bytes().into());
    if !Software.verify_p256(&release.public_key(), hash, &raw) {
        return Err(Error::BadSignature {
            uri: release.uri().to_owned(),
        });
    }
    let mut der = [0u8; 72];
    let n = raw_to_der(&raw, &mut der);
    Ok(der[..n].to_vec())
}

/// A finished MCUboot image given to `release sign`: checked as a device checks it, against what
/// the release will state.
pub(crate) fn check_finished(
    path: &Path,
    version: Version,
    security_epoch: u64,
    key: &ReleaseKey,
) -> Result<Measured> {
    let mut f = std::fs::File::open(path).map_err(io("opening image", path))?;
    let (digest, size) = stream_sha256(&mut f, path)?;
    let mut reader = FileImage::new(path)?;
    let hash = tlv_hash(&mut reader).map_err(|cause| Error::Image {
        path: path.to_path_buf(),
        cause,
    })?;
    let stated = Stated {
        image_size: size,
        image_digest: digest,
        version,
        security_epoch: SecurityEpoch(security_epoch),
        mcuboot_hash: hash,
    };
    check_image(&mut reader, &stated, key, &Software).map_err(|cause| Error::Image {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(Measured {
        digest,
        size,
        mcuboot_hash: Some(hash),
    })
}

/// The SHA256 TLV of the image in `reader` (header and TLV areas read and parsed).
fn tlv_hash(reader: &mut FileImage) -> std::result::Result<Hash, cairn_verifier::Error> {
    use cairn_verifier::Error as E;
    use cairn_verifier::mcuboot::{Header, McubootError};
    let len = reader.len();
    let mut head = [0u8; cairn_verifier::mcuboot::HEADER_LEN];
    if len < head.len() as u64 {
        return Err(E::MalformedImage(McubootError::TooShort { len }));
    }
    reader.read(0, &mut head).map_err(|()| E::FlashRead)?;
    let header = Header::parse(&head).map_err(E::MalformedImage)?;
    let start = header.tlv_offset();
    let available = len.saturating_sub(start).min(64 * 1024 * 2);
    let mut area = vec![0u8; usize::try_from(available).unwrap_or(0)];
    if start > len {
        return Err(E::MalformedImage(McubootError::BeyondInput {
            what: "firmware",
            stated: start,
            len,
        }));
    }
    reader.read(start, &mut area).map_err(|()| E::FlashRead)?;
    Tlvs::parse(&header, &area)
        .map(|t| t.hash)
        .map_err(E::MalformedImage)
}

/// `release verify --image` for an MCUboot release: the device's check, on the file.
pub(crate) fn check_file(
    path: &Path,
    statement: &ReleaseStatement<'_>,
    key: &ReleaseKey,
) -> Result<()> {
    let stated =
        Stated::of(statement).ok_or_else(|| Error::Invalid("not an MCUboot release".into()))?;
    check_image(&mut FileImage::new(path)?, &stated, key, &Software).map_err(|cause| Error::Image {
        path: path.to_path_buf(),
        cause,
    })
}

/// An image file read at offsets, as a device reads its flash slot.
pub(crate) struct FileImage {
    file: std::fs::File,
    len: u64,
}

impl FileImage {
    pub(crate) fn new(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(io("opening image", path))?;
        let len = file
            .metadata()
            .map_err(io("reading the size of", path))?
            .len();
        Ok(Self { file, len })
    }
}

impl ImageReader for FileImage {
    type Error = ();

    fn len(&self) -> u64 {
        self.len
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), ()> {
        self.file.read_exact_at(buf, offset).map_err(|_| ())
    }
}
