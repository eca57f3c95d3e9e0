//! `cairn audit …`: the evidence pack of a campaign, its offline verification, the CRA audit
//! summary, and retention (docs/audit.md).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use cairn_signer::audit::{self, Summary};
use cairn_signer::witness::Policy;
use cairn_vault::Vault;
use clap::Subcommand;
use serde_json::json;

use crate::custody::{now, open};
use crate::fleet::read_der;
use crate::output::{CliResult, Output, verification};

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Export a campaign's evidence pack: entries, certificates, both logs' checkpoints, proofs.
    Export {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// The campaign.
        #[arg(long)]
        campaign: String,
        /// The pack file to write (refused if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify an evidence pack offline, with the root certificate as the only trust anchor;
    /// print the audit summary it proves.
    Verify {
        /// The pack.
        pack: PathBuf,
        /// The root certificate (PEM or DER) the custodians published.
        #[arg(long, value_name = "FILE")]
        root: PathBuf,
        /// Also write the summary as a self-contained HTML report.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// An image file to check against the pack's releases (repeat for several); an MCUboot
        /// release's image gets the device's MCUboot check with the key that signed the release.
        #[arg(long = "image", value_name = "FILE")]
        images: Vec<PathBuf>,
        /// The witness policy devices enforce (`witnesses.toml`: the threshold and each witness's
        /// verifier key): the signer checkpoint must be cosigned by that quorum, and a missing one
        /// names the witnesses missing (docs/witness.md).
        #[arg(long, value_name = "FILE")]
        witnesses: Option<PathBuf>,
    },
    /// The CRA audit summary of a campaign, from the signer's log and relay-log mirror (built as
    /// a pack in memory and verified like one).
    Summary {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// The campaign.
        #[arg(long)]
        campaign: String,
        /// Also write the HTML report.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Delete the bodies of a release's evidence after its retention period (refused before).
    Prune {
        /// The log (a vault directory).
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        /// The release.
        #[arg(long)]
        release: String,
    },
}

/// Writes `bytes` to a new file `path` (refused if it exists), through a temporary file and a
/// rename so that a crash never leaves half a file under the name.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} exists; not overwriting it", path.display());
    }
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn report(
    summary: &Summary,
    images: &[(PathBuf, String)],
    html: Option<&Path>,
    out: Output,
    seconds: f64,
) -> CliResult {
    if let Some(path) = html {
        std::fs::write(path, summary.html())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut value = serde_json::to_value(summary).unwrap_or_default();
    value["ok"] = json!(summary.verified);
    value["seconds"] = json!(seconds);
    let mut text = summary.text();
    for (path, release) in images {
        let _ = write!(
            text,
            "\nimage {} is release {release}: checked",
            path.display()
        );
    }
    if !images.is_empty() {
        value["images"] = json!(
            images
                .iter()
                .map(|(p, r)| json!({ "image": p, "release": r }))
                .collect::<Vec<_>>()
        );
    }
    out.emit(&text, &value);
    if summary.verified {
        Ok(())
    } else {
        Err(verification(anyhow::anyhow!(
            "{} findings; the first: {}: {}",
            summary.findings.len(),
            summary.findings[0].item,
            summary.findings[0].problem
        )))
    }
}

pub(crate) fn run(cmd: AuditCommand, out: Output) -> CliResult {
    match cmd {
        AuditCommand::Export {
            home,
            campaign,
            out: file,
        } => {
            let appliance = open(&home)?;
            let bytes = audit::export(&appliance, &campaign, now())?;
            // A pack that does not verify is never handed out.
            let root = appliance.certificate(cairn_verifier::custody::KeyRole::Root)?;
            let root = der::Encode::to_der(&root).context("encoding the root certificate")?;
            let checked = audit::verify(&bytes, &root);
            if !checked.findings.is_empty() {
                return Err(verification(anyhow::anyhow!(
                    "the exported pack does not verify: {}: {}",
                    checked.findings[0].item,
                    checked.findings[0].problem
                )));
            }
            write_new(&file, &bytes)?;
            out.emit(
                &format!(
                    "evidence pack of campaign {campaign}: {} ({} bytes): {} signer log entries, {} relay log entries, verified",
                    file.display(),
                    bytes.len(),
                    checked.signer_log.2,
                    checked.relay_log.2
                ),
                &json!({ "ok": true, "file": file, "bytes": bytes.len(), "signer_entries": checked.signer_log.2, "relay_entries": checked.relay_log.2 }),
            );
            Ok(())
        }
        AuditCommand::Verify {
            pack,
            root,
            html,
            images,
            witnesses,
        } => {
            let bytes =
                std::fs::read(&pack).with_context(|| format!("reading {}", pack.display()))?;
            let root = read_der(&root, "CERTIFICATE")?;
            let policy = witnesses
                .map(|path| -> anyhow::Result<Policy> {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Ok(Policy::from_toml(&text, &path)?)
                })
                .transpose()?;
            let started = Instant::now();
            let mut verified = match &policy {
                Some(p) => audit::verify_with_witnesses(&bytes, &root, p),
                None => audit::verify(&bytes, &root),
            };
            let checked = audit::images::check_images(&mut verified, &images);
            let seconds = started.elapsed().as_secs_f64();
            report(
                &Summary::of(&verified),
                &checked,
                html.as_deref(),
                out,
                seconds,
            )
        }
        AuditCommand::Summary {
            home,
            campaign,
            html,
        } => {
            let appliance = open(&home)?;
            let started = Instant::now();
            let bytes = audit::export(&appliance, &campaign, now())?;
            let root = appliance.certificate(cairn_verifier::custody::KeyRole::Root)?;
            let root = der::Encode::to_der(&root).context("encoding the root certificate")?;
            let verified = audit::verify(&bytes, &root);
            report(
                &Summary::of(&verified),
                &[],
                html.as_deref(),
                out,
                started.elapsed().as_secs_f64(),
            )
        }
        AuditCommand::Prune { db, release } => {
            let vault =
                Vault::open(&db).with_context(|| format!("opening the log at {}", db.display()))?;
            let pruned = vault.prune_release(&release, now())?;
            out.emit(
                &format!("{pruned} entries of release {release} pruned; their leaf hashes stay in the tiles"),
                &json!({ "ok": true, "release": release, "pruned": pruned }),
            );
            Ok(())
        }
    }
}
