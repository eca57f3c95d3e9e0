//! `cairn bundle …`: transfer bundles across the air gap (docs/bundles.md). The signer exports
//! what the relay does not have yet; the relay's device-state log comes back the same way and is
//! imported into a mirror on the signer. Every bundle is verified in full before anything is
//! written.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use cairn_vault::{TransferBundle, Vault};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::transfer::MAX_BUNDLE_ENTRIES;
use clap::Subcommand;
use serde_json::json;

use crate::keys;
use crate::output::{CliResult, Output, verification};

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Write everything after the receiver's last checkpoint, up to the latest checkpoint, with
    /// a consistency proof (no deliveries: the relay builds them from its verified mirror).
    Export {
        /// The log (a signer home's `log/`, or any cairn log).
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        /// The receiver's last checkpoint (the note it last accepted); omit for a first bundle.
        #[arg(long, value_name = "FILE", conflicts_with = "since")]
        receiver_checkpoint: Option<PathBuf>,
        /// Or the size of the receiver's last checkpoint.
        #[arg(long, value_name = "SIZE")]
        since: Option<u64>,
        /// The bundle file to write (never overwritten). When the entries need more than one
        /// bundle, `FILE.1`, `FILE.2`, … instead, to be imported in that order.
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
        /// Most entries one bundle carries: a longer range is cut at the log's checkpoints.
        #[arg(long, value_name = "N", default_value_t = MAX_BUNDLE_ENTRIES,
              value_parser = clap::value_parser!(u64).range(1..=MAX_BUNDLE_ENTRIES))]
        max_entries: u64,
    },
    /// Verify a bundle offline: checkpoint signature, entries against the signed root,
    /// consistency with the receiver's checkpoint, every entry a known statement.
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// The log's public key (PEM/DER SPKI) or its key certificate (PEM).
        #[arg(long, value_name = "KEY_OR_CERT")]
        key: PathBuf,
        /// The receiver's last checkpoint, for a bundle that does not start at 0.
        #[arg(long, value_name = "FILE")]
        receiver_checkpoint: Option<PathBuf>,
    },
    /// Import a bundle into a mirror of its log (created on first import), all or nothing.
    Import {
        /// The bundle.
        bundle: PathBuf,
        /// The mirror's database directory.
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        /// The log's public key (PEM/DER SPKI) or its key certificate (PEM); the mirror pins it.
        #[arg(long, value_name = "KEY_OR_CERT")]
        key: PathBuf,
    },
}

fn read_bundle(path: &PathBuf) -> anyhow::Result<TransferBundle> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    TransferBundle::decode(&bytes).with_context(|| format!("{}", path.display()))
}

/// Where the bundle starts: the receiver's checkpoint size, checked to be one this log signed.
fn export_from(
    vault: &Vault,
    receiver_checkpoint: Option<PathBuf>,
    since: Option<u64>,
) -> CliResult<u64> {
    let from = match (receiver_checkpoint, since) {
        (Some(path), _) => {
            let note = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let theirs = Checkpoint::parse(note.as_bytes())
                .map_err(|e| anyhow!("{}: not a checkpoint ({e})", path.display()))?;
            let ours = vault.checkpoint(theirs.size.0)?.ok_or_else(|| {
                anyhow!(
                    "the receiver's checkpoint of size {} is not one this log signed",
                    theirs.size.0
                )
            })?;
            // The signed text decides: witnesses' cosignatures added on either side since do not
            // make another checkpoint.
            let same = Checkpoint::parse(ours.as_bytes()).is_ok_and(|o| o.text == theirs.text);
            if !same {
                return Err(verification(anyhow!(
                    "the receiver's checkpoint of size {} differs from this log's: the receiver has forked",
                    theirs.size.0
                )));
            }
            theirs.size.0
        }
        (None, Some(n)) => n,
        (None, None) => 0,
    };
    Ok(from)
}

/// A bundle written to its file.
struct Written {
    file: PathBuf,
    origin: String,
    from: u64,
    to: u64,
    manifests: u64,
    bytes: usize,
}

/// Writes `bundle` to `file`, which must not exist yet: to a temporary name beside it first,
/// synced, then linked to its name (never over an existing file) and the directory synced, so a
/// kill or a power cut leaves the whole bundle under its name or nothing (a part left under the
/// temporary name is replaced by the next export).
fn write_bundle(bundle: &TransferBundle, file: PathBuf) -> anyhow::Result<Written> {
    let bytes = bundle.to_cbor();
    if file.exists() {
        bail!(
            "{} exists: a bundle is never overwritten; choose another name",
            file.display()
        );
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = file.with_file_name(format!(".{name}.cairn-partial"));
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::create(&partial)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::hard_link(&partial, &file))
        .and_then(|()| std::fs::remove_file(&partial))
        .and_then(|()| std::fs::File::open(&dir)?.sync_all())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(Written {
        file,
        origin: bundle.origin.clone(),
        from: bundle.from,
        to: bundle.to(),
        manifests: bundle.manifests(),
        bytes: bytes.len(),
    })
}

/// `cairn bundle export`: one bundle, or several ranged ones named `<out>.1`, `<out>.2`, ...
fn export(
    db: &Path,
    receiver_checkpoint: Option<PathBuf>,
    since: Option<u64>,
    file: PathBuf,
    max_entries: u64,
) -> CliResult<Vec<Written>> {
    let vault = Vault::open(db).with_context(|| format!("opening the log at {}", db.display()))?;
    let from = export_from(&vault, receiver_checkpoint, since)?;
    let ranges = vault.bundle_ranges(from, max_entries)?;
    let mut written = Vec::new();
    if ranges.len() <= 1 {
        written.push(write_bundle(&vault.export_bundle(from)?, file)?);
    } else {
        for (k, range) in ranges.iter().enumerate() {
            let mut name = file.clone().into_os_string();
            name.push(format!(".{}", k + 1));
            let bundle = vault.export_bundle_to(range.start, range.end)?;
            written.push(write_bundle(&bundle, name.into())?);
        }
    }
    Ok(written)
}

/// Reports the bundles `export` wrote, in import order.
fn report_written(written: &[Written], out: Output) {
    let text: Vec<String> = written
        .iter()
        .map(|w| {
            format!(
                "bundle {}: entries {}..{} of {}, {} manifests, {} bytes",
                w.file.display(),
                w.from,
                w.to,
                w.origin,
                w.manifests,
                w.bytes
            )
        })
        .collect();
    let files: Vec<serde_json::Value> = written
        .iter()
        .map(|w| json!({ "file": w.file, "from": w.from, "to": w.to, "manifests": w.manifests, "bytes": w.bytes }))
        .collect();
    let first = &written[0];
    let last = &written[written.len() - 1];
    out.emit(
        &if written.len() > 1 {
            format!(
                "{} bundles, to be imported in this order:\n{}",
                written.len(),
                text.join("\n")
            )
        } else {
            text.join("\n")
        },
        &json!({
            "ok": true,
            "file": first.file,
            "origin": first.origin,
            "from": first.from,
            "to": last.to,
            "manifests": written.iter().map(|w| w.manifests).sum::<u64>(),
            "bytes": written.iter().map(|w| w.bytes).sum::<usize>(),
            "bundles": files,
        }),
    );
}

pub(crate) fn run(cmd: BundleCommand, out: Output) -> CliResult {
    match cmd {
        BundleCommand::Export {
            db,
            receiver_checkpoint,
            since,
            out: file,
            max_entries,
        } => {
            let written = export(&db, receiver_checkpoint, since, file, max_entries)?;
            report_written(&written, out);
            Ok(())
        }
        BundleCommand::Verify {
            bundle,
            key,
            receiver_checkpoint,
        } => {
            let b = read_bundle(&bundle)?;
            let public = keys::public_key(&key)?;
            let log_key = keys::log_key(&b.origin, public)?;
            let old = receiver_checkpoint
                .map(|p| {
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?;
            b.verify(&log_key, old.as_deref()).map_err(verification)?;
            out.emit(
                &format!(
                    "bundle OK: entries {}..{} of {} hash to the checkpoint signed by the log key{}; {} manifests",
                    b.from,
                    b.to(),
                    b.origin,
                    if b.from > 0 { ", consistent with the receiver's checkpoint" } else { "" },
                    b.manifests()
                ),
                &json!({ "ok": true, "origin": b.origin, "from": b.from, "to": b.to(), "manifests": b.manifests() }),
            );
            Ok(())
        }
        BundleCommand::Import { bundle, db, key } => {
            let b = read_bundle(&bundle)?;
            let public = keys::public_key(&key)?;
            let log_key = keys::log_key(&b.origin, public)?;
            let vault = if db.exists() {
                Vault::open_origin(&db, &b.origin)
            } else {
                Vault::create(&db, &b.origin)
            }
            .with_context(|| format!("opening the mirror at {}", db.display()))?;
            let report = vault.import_bundle(&b, &log_key).map_err(|e| match e {
                cairn_vault::Error::BadBundle(_)
                | cairn_vault::Error::Fork(_)
                | cairn_vault::Error::Checkpoint(_) => verification(e),
                e => e.into(),
            })?;
            out.emit(
                &format!(
                    "imported {} entries ({} already held) into {}: now at checkpoint size {}",
                    report.appended.end - report.appended.start,
                    report.already_held,
                    db.display(),
                    report.size
                ),
                &json!({ "ok": true, "appended": [report.appended.start, report.appended.end], "already_held": report.already_held, "size": report.size, "manifests": report.manifests }),
            );
            Ok(())
        }
    }
}
