//! `cairn release sign --format …`: the release's image format, and the MCUboot options (those of
//! `imgtool sign`), docs/formats.md §7.

use std::path::{Path, PathBuf};

use anyhow::bail;
use cairn_signer::mcuboot::McubootSource;
use cairn_verifier::mcuboot::write::{DEFAULT_MAX_SECTORS, Layout};
use clap::{Args, ValueEnum};

/// The image format of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// The image as given; only cairn's release statement signs it.
    Raw,
    /// An MCUboot image (what STM32H5 OEMiROT / OEMuROT boots), signed by the release key.
    Mcuboot,
}

/// Families whose own secure boot is MCUboot: `--format` defaults to `mcuboot` for them.
const MCUBOOT_FAMILIES: &[&str] = &["STM32H5"];

/// The format options of `release sign`.
#[derive(Debug, Args)]
pub(crate) struct FormatArgs {
    /// Image format [default: mcuboot for family STM32H5, raw otherwise].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// MCUboot: the image given already is a finished MCUboot image (e.g. imgtool with `--fix-sig`
    /// and this HSM's signature); it is checked like a device checks it and logged as it is.
    #[arg(long)]
    finished_image: bool,
    /// MCUboot: where the signed image is written [default: next to the firmware,
    /// `<name>.signed.bin`].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// MCUboot (imgtool -H): bytes before the firmware, header included.
    #[arg(long, default_value = "0x400", value_parser = parse_u16)]
    header_size: u16,
    /// MCUboot (imgtool -S): the secondary slot's size; the image and trailer must fit.
    #[arg(long, value_parser = parse_u64)]
    slot_size: Option<u64>,
    /// MCUboot (imgtool --align): flash write alignment, 1 to 32.
    #[arg(long, default_value_t = 1)]
    align: u8,
    /// MCUboot (imgtool --max-align): largest alignment of both slots, 8, 16 or 32.
    #[arg(long)]
    max_align: Option<u8>,
    /// MCUboot (imgtool -M): sectors the swap status has room for.
    #[arg(long, default_value_t = DEFAULT_MAX_SECTORS)]
    max_sectors: u32,
    /// MCUboot (imgtool --pad): pad to the slot size and write the swap trailer.
    #[arg(long)]
    pad: bool,
    /// MCUboot (imgtool --confirm): with --pad, mark the image confirmed (permanent swap).
    #[arg(long)]
    confirm: bool,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("{s:?}: {e}"))
}

fn parse_u16(s: &str) -> Result<u16, String> {
    let v = parse_u64(s)?;
    u16::try_from(v).map_err(|_| format!("{s}: at most 65535"))
}

impl FormatArgs {
    /// The MCUboot source for `image` of `family`, or `None` for a raw release.
    pub(crate) fn source(
        &self,
        family: &str,
        image: &Path,
    ) -> anyhow::Result<Option<McubootSource>> {
        let format = self
            .format
            .unwrap_or(if MCUBOOT_FAMILIES.contains(&family) {
                Format::Mcuboot
            } else {
                Format::Raw
            });
        if format == Format::Raw {
            if self.finished_image || self.out.is_some() || self.pad || self.slot_size.is_some() {
                bail!(
                    "--finished-image, --out, --pad and --slot-size are MCUboot options; the format is raw"
                );
            }
            return Ok(None);
        }
        if self.finished_image {
            if self.out.is_some() || self.pad {
                bail!("a finished image is logged as it is: --out and --pad do not apply");
            }
            return Ok(Some(McubootSource::Finished));
        }
        let out = self.out.clone().unwrap_or_else(|| {
            let stem = image
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
            image.with_file_name(format!("{stem}.signed.bin"))
        });
        Ok(Some(McubootSource::Firmware {
            layout: Layout {
                header_size: self.header_size,
                slot_size: self.slot_size,
                align: self.align,
                max_align: self.max_align,
                max_sectors: self.max_sectors,
                pad: self.pad || self.confirm,
                confirm: self.confirm,
                ..Layout::default()
            },
            out,
        }))
    }
}
