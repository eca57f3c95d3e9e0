//! `cairn ceremony …`, `cairn release …`, `cairn key …`: the custodians' commands on the
//! air-gapped signer (docs/ceremony.md).
//!
//! Passphrases come from the terminal or a descriptor, never from arguments or the environment
//! (`passphrase.rs`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use cairn_signer::appliance::Appliance;
use cairn_signer::ceremony::{self, CeremonyOptions, Custodian, TokenSource};
use cairn_signer::hsm::Module;
use cairn_signer::session::{ReleaseInput, verify_release_entry};
use cairn_signer::shares::{KdfParams, Passphrase, ShareFile};
use cairn_verifier::custody::{KeyRole, TokenSetup};
use cairn_verifier::types::{UnixTime, Version};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::keys;
use crate::output::{CliResult, Output, verification};
use crate::passphrase::{PassphraseSource, Secrets};

/// `cairn ceremony init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The appliance's home directory (created).
    #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
    home: PathBuf,
    /// PKCS#11 token label (a fresh token is initialized).
    #[arg(long, default_value = "cairn", conflicts_with = "existing_token")]
    token: String,
    /// Adopt this token, which its security officer initialised, instead of initialising one
    /// (HSMs that forbid C_InitToken from an application). The initial user PIN the security
    /// officer set is read first, like a passphrase, and replaced once by the ceremony's own.
    #[arg(long, value_name = "LABEL")]
    existing_token: Option<String>,
    /// The log's origin (its unique name).
    #[arg(long)]
    origin: String,
    /// Organization named in the certificates.
    #[arg(long)]
    organization: String,
    /// Custodians needed to unlock the token.
    #[arg(long)]
    threshold: u8,
    /// A custodian and the file their sealed share is written to, in share order.
    #[arg(long = "custodian", value_name = "NAME=SHARE_FILE", required = true)]
    custodians: Vec<String>,
    /// Argon2id memory per share, MiB (RFC 9106 recommends 64; at least 8).
    #[arg(long, default_value_t = 64)]
    kdf_memory_mib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = 3)]
    kdf_passes: u32,
    #[command(flatten)]
    secrets: Secrets,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CeremonyCommand {
    /// Run a key ceremony: initialize the token, generate the root, release and log keys in it,
    /// issue their certificates, split the token PIN among the custodians, and start the log with
    /// the signed ceremony record.
    Init(InitArgs),
    /// Verify the ceremony record (log entry 0): root signature, certificate chain, and that it
    /// describes this appliance.
    Verify {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// The root certificate's SHA-256 fingerprint as the custodians wrote it down (hex, colons
        /// allowed).
        #[arg(long, value_name = "HEX")]
        root_fingerprint: Option<String>,
    },
}

/// Share files presented for a session.
#[derive(Debug, Args)]
pub(crate) struct Presented {
    /// The appliance's home directory.
    #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// A custodian's share file (one per custodian present).
    #[arg(long = "share", value_name = "FILE", required = true)]
    shares: Vec<PathBuf>,
    #[command(flatten)]
    secrets: Secrets,
}

/// `cairn release sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    session: Presented,
    /// The firmware image.
    #[arg(long)]
    image: PathBuf,
    /// Release id, unique in the log (e.g. `controller-fw-2.4.1`).
    #[arg(long)]
    release_id: String,
    /// Product.
    #[arg(long)]
    product: String,
    /// Device family.
    #[arg(long)]
    family: String,
    /// A hardware revision the image runs on (repeat for several).
    #[arg(long = "hardware-revision", required = true)]
    hardware_revisions: Vec<String>,
    /// Version, `MAJOR.MINOR.PATCH`.
    #[arg(long)]
    version: String,
    /// Anti-rollback security epoch.
    #[arg(long)]
    security_epoch: u64,
    /// End of the support period (`YYYY-MM-DD`, UTC).
    #[arg(long, value_name = "DATE")]
    support_until: String,
    /// An advisory or CVE id (repeat for several).
    #[arg(long = "advisory")]
    advisories: Vec<String>,
    /// The artifact's file name in the statement (default: the image's).
    #[arg(long)]
    artifact: Option<String>,
    #[command(flatten)]
    format: crate::mcuboot::FormatArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReleaseCommand {
    /// Sign a firmware release in a custodian session and log it.
    Sign(Box<SignArgs>),
    /// Verify a logged release: the release key's signature, its certificate chain to the
    /// root, and optionally the image.
    Verify {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// The release id.
        #[arg(long)]
        release_id: String,
        /// The image to compare with the signed digest.
        #[arg(long)]
        image: Option<PathBuf>,
    },
}

/// A key that statements can name.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    /// The release key.
    Release,
    /// The log key.
    Log,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Rotate the release key: a new key in the token, certified by the root, announced by a
    /// root-signed statement in the log.
    Rotate {
        #[command(flatten)]
        session: Presented,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// Revoke the release or log key with a root-signed statement; nothing more is signed with it.
    Revoke {
        #[command(flatten)]
        session: Presented,
        /// Which key.
        #[arg(long)]
        role: RoleArg,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
}

pub(crate) fn now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// `YYYY-MM-DD` (UTC midnight) to Unix seconds (days from civil, H. Hinnant's algorithm).
pub(crate) fn parse_date(s: &str) -> anyhow::Result<UnixTime> {
    let bad = || anyhow!("{s:?} is not a date of the form YYYY-MM-DD");
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400)
        .map(UnixTime)
        .map_err(|_| bad())
}

/// Unix seconds as an RFC 3339 UTC timestamp (civil from days, H. Hinnant's algorithm).
pub(crate) fn rfc3339(time: UnixTime) -> String {
    let secs = i64::try_from(time.0).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let doe = shifted - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(crate) fn module() -> anyhow::Result<Module> {
    Module::from_env().context("loading the PKCS#11 module (set CAIRN_PKCS11_MODULE)")
}

pub(crate) fn open(home: &Path) -> anyhow::Result<Appliance> {
    Appliance::open(home).with_context(|| format!("opening the signer at {}", home.display()))
}

/// Reads the share files, checks them against the appliance (before any passphrase), then asks
/// for each custodian's passphrase.
pub(crate) fn collect_shares(
    appliance: &Appliance,
    presented: &Presented,
) -> anyhow::Result<Vec<(ShareFile, Passphrase)>> {
    let files = presented
        .shares
        .iter()
        .map(|p| ShareFile::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    appliance.check_shares(&files)?;
    let mut source = PassphraseSource::new(&presented.secrets)?;
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let passphrase = source.next(&format!("custodian {}", file.custodian), false)?;
        out.push((file, passphrase));
    }
    Ok(out)
}

/// The custodians of `--custodian NAME=SHARE_FILE`, each with the passphrase they chose, in order.
fn ceremony_custodians(
    custodians: &[String],
    source: &mut PassphraseSource,
) -> anyhow::Result<Vec<Custodian>> {
    let mut list = Vec::with_capacity(custodians.len());
    for c in custodians {
        let (name, file) = c
            .split_once('=')
            .ok_or_else(|| anyhow!("--custodian {c:?}: expected NAME=SHARE_FILE"))?;
        let passphrase = source.next(&format!("custodian {name}"), true)?;
        list.push(Custodian {
            name: name.into(),
            share_path: file.into(),
            passphrase,
        });
    }
    Ok(list)
}

fn ceremony_init(args: InitArgs, out: Output) -> CliResult {
    let InitArgs {
        home,
        token,
        existing_token,
        origin,
        organization,
        threshold,
        custodians,
        kdf_memory_mib,
        kdf_passes,
        secrets,
    } = args;
    let mut source = PassphraseSource::new(&secrets)?;
    // The security officer's initial user PIN comes first, before the custodians' passphrases.
    let (token, token_source) = match existing_token {
        None => (token, TokenSource::Fresh),
        Some(label) => {
            let initial = source.next(
                &format!("the initial user PIN of token {label:?} (from its security officer)"),
                false,
            )?;
            (
                label,
                TokenSource::Existing {
                    initial_pin: initial.into_pin(),
                },
            )
        }
    };
    let list = ceremony_custodians(&custodians, &mut source)?;
    let opts = CeremonyOptions {
        home: home.clone(),
        token,
        source: token_source,
        origin,
        organization,
        threshold,
        custodians: list,
        kdf: KdfParams {
            memory_kib: kdf_memory_mib.saturating_mul(1024),
            iterations: kdf_passes,
            ..KdfParams::default()
        },
        now: now(),
    };
    let module = module()?;
    let report = ceremony::init(&module, &opts).context("the ceremony failed")?;
    let s = &report.state;
    let human = format!(
        "ceremony {} complete: {}-of-{} custodians ({})\n\
         token {:?}{}, log {:?}: ceremony record is entry 0\n\
         root    {}  {}\n\
         release {}  {}\n\
         log     {}  {}\n\
         share files:\n  {}\n\
         Write down the root fingerprint; `cairn ceremony verify --root-fingerprint` checks it.",
        s.ceremony,
        s.threshold,
        s.custodians.len(),
        s.custodians.join(", "),
        s.token,
        match report.token_setup {
            TokenSetup::Initialised => " (initialised by the ceremony)",
            TokenSetup::AdoptedPinRotated => {
                " (adopted: the security officer's initial user PIN was replaced and is void)"
            }
        },
        s.origin,
        s.keys.root.fingerprint,
        s.keys.root.uri,
        s.keys.release.fingerprint,
        s.keys.release.uri,
        s.keys.log.fingerprint,
        s.keys.log.uri,
        report
            .share_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n  "),
    );
    out.emit(
        &human,
        &json!({
            "ok": true,
            "ceremony": s.ceremony,
            "home": home,
            "state": s,
            "checkpoint": report.checkpoint,
            "share_files": report.share_files,
            "token_pin_rotated": report.token_setup == TokenSetup::AdoptedPinRotated,
        }),
    );
    Ok(())
}

pub(crate) fn run_ceremony(cmd: CeremonyCommand, out: Output) -> CliResult {
    match cmd {
        CeremonyCommand::Init(args) => ceremony_init(args, out),
        CeremonyCommand::Verify {
            home,
            root_fingerprint,
        } => {
            let appliance = open(&home)?;
            let expected = root_fingerprint
                .map(|f| keys::hash_hex(&f.replace(':', "")))
                .transpose()?;
            let v = appliance
                .verify_ceremony(expected.as_ref())
                .map_err(verification)?;
            let human = format!(
                "ceremony record OK: ceremony {} at {} by {} ({}-of-{})\n\
                 signed by the root key; release and log certificates issued by it\n\
                 token {:?}: {}\n\
                 software {} sha256 {}\n\
                 root    {}\nrelease {}\nlog     {}",
                hex::encode(v.ceremony),
                rfc3339(v.performed_at),
                v.custodians.join(", "),
                v.threshold,
                v.custodians.len(),
                v.token,
                match v.token_setup {
                    TokenSetup::Initialised => "initialised by the ceremony",
                    TokenSetup::AdoptedPinRotated => {
                        "adopted; the security officer's initial user PIN was rotated"
                    }
                },
                v.software.0,
                hex::encode(v.software.1),
                v.fingerprints[0],
                v.fingerprints[1],
                v.fingerprints[2],
            );
            out.emit(
                &human,
                &json!({
                    "ok": true,
                    "ceremony": hex::encode(v.ceremony),
                    "performed_at": v.performed_at.0,
                    "custodians": v.custodians,
                    "threshold": v.threshold,
                    "token": v.token,
                    "token_pin_rotated": v.token_setup == TokenSetup::AdoptedPinRotated,
                    "software": v.software.0,
                    "software_sha256": hex::encode(v.software.1),
                    "fingerprints": { "root": v.fingerprints[0], "release": v.fingerprints[1], "log": v.fingerprints[2] },
                }),
            );
            Ok(())
        }
    }
}

fn release_sign(args: SignArgs, out: Output) -> CliResult {
    let SignArgs {
        session,
        image,
        release_id,
        product,
        family,
        hardware_revisions,
        version,
        security_epoch,
        support_until,
        advisories,
        artifact,
        format,
    } = args;
    let source = format.source(&family, &image)?;
    let input = ReleaseInput {
        release_id,
        product,
        family,
        hardware_revisions,
        version: Version::parse(&version)
            .ok_or_else(|| anyhow!("--version {version:?}: expected MAJOR.MINOR.PATCH"))?,
        security_epoch,
        support_until: parse_date(&support_until)?,
        advisories,
        artifact,
    };
    let appliance = open(&session.home)?;
    // A session killed after its log write signed this release already (docs/ceremony.md, "An
    // interrupted signing session"): complete it, before any passphrase is asked.
    if let Some(earlier) = appliance.earlier_release(&input.release_id, &image, source.as_ref())? {
        report_earlier(&input.release_id, &earlier, out);
        return Ok(());
    }
    let shares = collect_shares(&appliance, &session)?;
    let module = module()?;
    let s = appliance.unlock(&module, &shares, now())?;
    drop(shares);
    let (signed, image, mcuboot) = match &source {
        None => (s.sign_release(&image, &input, now())?, image, None),
        Some(source) => {
            let signed = s.sign_mcuboot_release(&image, &input, source, now())?;
            let image = match source {
                cairn_signer::mcuboot::McubootSource::Firmware { out, .. } => out.clone(),
                cairn_signer::mcuboot::McubootSource::Finished => image,
            };
            let cose = cairn_verifier::cose::CoseSign1::decode(&signed.cose_sign1)?;
            let hash =
                cairn_verifier::statement::ReleaseStatement::decode(cose.payload)?.mcuboot_hash;
            (signed, image, hash)
        }
    };
    let human = format!(
        "release {} signed in the HSM by the release key and logged at index {}\n\
         {}image {} ({} bytes) sha256 {}\n\
         session of {} logged at index {}\n\
         new checkpoint:\n{}",
        input.release_id,
        signed.index,
        mcuboot.map_or_else(String::new, |h| format!(
            "MCUboot image, version {}+0, security counter {}, SHA256 TLV {}\n",
            input.version,
            input.security_epoch,
            hex::encode(h)
        )),
        image.display(),
        signed.image_size,
        hex::encode(signed.image_digest),
        s.custodians().join(", "),
        signed.session_index,
        signed.checkpoint,
    );
    out.emit(
        &human,
        &json!({
            "ok": true,
            "release_id": input.release_id,
            "index": signed.index,
            "session_index": signed.session_index,
            "custodians": s.custodians(),
            "image_sha256": hex::encode(signed.image_digest),
            "image_size": signed.image_size,
            "image": image,
            "format": if mcuboot.is_some() { "mcuboot" } else { "raw" },
            "mcuboot_sha256_tlv": mcuboot.map(hex::encode),
            "checkpoint": signed.checkpoint,
        }),
    );
    Ok(())
}

/// `release sign` of a release an earlier session logged: what is there, nothing signed.
fn report_earlier(release_id: &str, earlier: &cairn_signer::resume::EarlierRelease, out: Output) {
    out.emit(
        &format!(
            "release {release_id} was signed and logged at index {} by an earlier session; \
             nothing was signed now\n{}image {} ({} bytes) sha256 {}",
            earlier.index,
            if earlier.completed {
                "the interrupted session's signed image was moved to its name\n"
            } else {
                ""
            },
            earlier.image.display(),
            earlier.image_size,
            hex::encode(earlier.image_digest),
        ),
        &json!({
            "ok": true,
            "release_id": release_id,
            "index": earlier.index,
            "already_logged": true,
            "completed_output": earlier.completed,
            "image": earlier.image,
            "image_sha256": hex::encode(earlier.image_digest),
            "image_size": earlier.image_size,
        }),
    );
}

pub(crate) fn run_release(cmd: ReleaseCommand, out: Output) -> CliResult {
    match cmd {
        ReleaseCommand::Sign(args) => release_sign(*args, out),
        ReleaseCommand::Verify {
            home,
            release_id,
            image,
        } => {
            let appliance = open(&home)?;
            let index = match appliance.vault().release_entry(&release_id) {
                Ok((index, _)) => index,
                Err(cairn_vault::Error::UnknownRelease(_)) => {
                    return Err(anyhow!("no release {release_id:?} in the log").into());
                }
                Err(e) => return Err(e.into()),
            };
            let entry = appliance.vault().entry(index)?;
            let root = appliance.certificate(KeyRole::Root)?;
            let release_certs = release_certificates(&appliance)?;
            // Any of the release key's generations may have signed it.
            let mut last = None;
            for cert in &release_certs {
                match verify_release_entry(&entry, &root, cert, image.as_deref()) {
                    Ok((id, digest)) => {
                        out.emit(
                            &format!(
                                "release {id} OK: log index {index}, signed by the release key certified by the root{}\nimage sha256 {}",
                                if image.is_some() { ", image matches" } else { "" },
                                hex::encode(digest)
                            ),
                            &json!({ "ok": true, "release_id": id, "index": index, "image_sha256": hex::encode(digest), "image_checked": image.is_some() }),
                        );
                        return Ok(());
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(verification(last.map_or_else(
                || anyhow!("no release certificate"),
                anyhow::Error::from,
            )))
        }
    }
}

/// Every release key certificate the appliance has had (`certs/release-<gen>.pem`).
fn release_certificates(appliance: &Appliance) -> anyhow::Result<Vec<x509_cert::Certificate>> {
    let mut out = Vec::new();
    for generation in 0..=appliance.state().keys.release.generation {
        let path = appliance
            .home()
            .join(format!("certs/release-{generation}.pem"));
        let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (_, der) =
            der::pem::decode_vec(&pem).map_err(|e| anyhow!("{}: not PEM ({e})", path.display()))?;
        out.push(cairn_signer::certs::from_der(&der, "release")?);
    }
    Ok(out)
}

pub(crate) fn run_key(cmd: &KeyCommand, out: Output) -> CliResult {
    let (session, action) = match cmd {
        KeyCommand::Rotate { session, .. } => (session, "rotate"),
        KeyCommand::Revoke { session, .. } => (session, "revoke"),
    };
    let appliance = open(&session.home)?;
    let shares = collect_shares(&appliance, session)?;
    let module = module()?;
    let s = appliance.unlock(&module, &shares, now())?;
    drop(shares);
    let done = match cmd {
        KeyCommand::Rotate { reason, .. } => s.rotate_release_key(reason, now())?,
        KeyCommand::Revoke { role, reason, .. } => s.revoke(
            match role {
                RoleArg::Release => KeyRole::Release,
                RoleArg::Log => KeyRole::Log,
            },
            reason,
            now(),
        )?,
    };
    out.emit(
        &format!(
            "key {action} logged at index {} (signed by the root key){}",
            done.index,
            done.new_uri
                .as_ref()
                .map(|u| format!(
                    "\nnew key {u}\nnew certificate fingerprint {}",
                    done.new_fingerprint.as_deref().unwrap_or_default()
                ))
                .unwrap_or_default()
        ),
        &json!({ "ok": true, "action": action, "index": done.index, "new_uri": done.new_uri, "new_fingerprint": done.new_fingerprint, "checkpoint": done.checkpoint }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        for (date, secs) in [
            ("1970-01-01", 0),
            ("2000-02-29", 951_782_400),
            ("2026-11-26", 1_795_651_200),
            ("2031-11-26", 1_953_417_600),
        ] {
            assert_eq!(parse_date(date).unwrap(), UnixTime(secs), "{date}");
            assert_eq!(rfc3339(UnixTime(secs)), format!("{date}T00:00:00Z"));
        }
        assert_eq!(rfc3339(UnixTime(1_795_689_840)), "2026-11-26T10:44:00Z");
        for bad in ["2026-13-01", "2026-1", "26-11-2026x", "", "1969-12-31"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
