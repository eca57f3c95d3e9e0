//! `cairn release sign --format …`: the release's image format, and the MCUboot options (those of
//! `imgtool sign`), docs/formats.md §8.

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

/// `imgtool verify -k <release key> IMAGE` with MCUboot's imgtool from the project's venv
/// (`CAIRN_IMGTOOL`, or `.venv/bin/imgtool` in the working directory or one above it): what it
/// said, or that it is not installed. An image imgtool refuses is an error.
#[cfg(feature = "demo")]
pub(crate) fn imgtool_verify(
    appliance: &cairn_signer::appliance::Appliance,
    image: &Path,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use base64ct::{Base64, Encoding as _};
    let found = std::env::var_os("CAIRN_IMGTOOL")
        .map(PathBuf::from)
        .or_else(|| {
            let cwd = std::env::current_dir().ok()?;
            cwd.ancestors()
                .map(|d| d.join(".venv/bin/imgtool"))
                .find(|p| p.exists())
        });
    let Some(imgtool) = found else {
        return Ok("imgtool not installed (tools/setup), not checked with it".into());
    };
    let cert = appliance.certificate(cairn_verifier::custody::KeyRole::Release)?;
    let spki = cairn_signer::certs::verifier_key(&cert, "release")?.spki_der();
    let b64 = Base64::encode_string(&spki);
    let (first, rest) = b64.split_at(64.min(b64.len()));
    let pem = image.with_extension("release-key.pem");
    std::fs::write(
        &pem,
        format!("-----BEGIN PUBLIC KEY-----\n{first}\n{rest}\n-----END PUBLIC KEY-----\n"),
    )?;
    let out = std::process::Command::new(&imgtool)
        .arg("verify")
        .arg("-k")
        .arg(&pem)
        .arg(image)
        .output()
        .with_context(|| format!("running {}", imgtool.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("imgtool refused {}: {text}", image.display());
    }
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Image version: "))
        .unwrap_or("?");
    Ok(format!(
        "imgtool 2.5.0 verifies it with the release key (version {version})"
    ))
}
