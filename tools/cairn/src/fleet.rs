//! `cairn devices …` and `cairn rollout plan`: the device registry and the eligibility step, on
//! the air-gapped signer (docs/eligibility.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use cairn_signer::registry::{Format, Registry};
use cairn_signer::rollout::PlanSpec;
#[cfg(feature = "testfleet")]
use cairn_signer::testfleet;
use cairn_verifier::types::UnixTime;
use clap::Subcommand;
use serde_json::json;

use crate::custody::{Presented, collect_shares, module, now, open, rfc3339};
use crate::output::{CliResult, Output};

#[derive(Debug, Subcommand)]
pub(crate) enum DevicesCommand {
    /// Trust a manufacturer CA (PEM or DER certificate) for device identity certificates.
    Trust {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// The CA certificate.
        ca: PathBuf,
    },
    /// Import a fleet (CSV or JSON, by extension): checked in full, then written at once.
    Import {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// The fleet file.
        file: PathBuf,
    },
    /// Apply a CRL (PEM or DER) signed by a trusted manufacturer CA.
    Revoke {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// The CRL.
        crl: PathBuf,
    },
    /// Show one device and its history.
    Show {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// Device id.
        id: String,
    },
    /// Write a test fleet: the reference fleet (8,400 devices, 8,203 eligible for 2.4.1) or a
    /// synthetic one, with its manufacturer CA and CRL. For tests and demonstrations only.
    #[cfg(feature = "testfleet")]
    Generate {
        /// Directory to write `fleet.csv`, `manufacturer-ca.pem` and `manufacturer.crl` into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A synthetic fleet of this many healthy devices instead of the reference fleet.
        #[arg(long)]
        synthetic: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RolloutCommand {
    /// Decide every registered device for a release, sign the plan, log it all.
    Plan {
        #[command(flatten)]
        session: Presented,
        /// The plan file (TOML: campaign, release, rollback target, scope, stages, retries).
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
    },
    /// Sign a gate approval: open a stage whose gate is `approval`, or resume a rollout the relay
    /// paused on a failure threshold. It reaches the relay in the next transfer bundle. The relay
    /// applies a resume only if the relay's log with the pause in it was recorded first
    /// (`cairn rollout record-state`).
    Approve {
        #[command(flatten)]
        session: Presented,
        /// The campaign.
        #[arg(long)]
        campaign: String,
        /// The stage, counted from 0 (0 is the first stage).
        #[arg(long)]
        stage: u64,
        /// Resume a paused rollout instead of opening the stage.
        #[arg(long)]
        resume: bool,
    },
    /// Bring the relay's device-state log across the air gap: verify a device-state bundle with
    /// the relay key, import it into the signer's relay-log mirror, and record the relay's
    /// checkpoint and key in the signer's log (an audit pack can then verify the relay's log from
    /// the root certificate alone).
    RecordState {
        #[command(flatten)]
        session: Presented,
        /// The device-state bundle (`GET /api/v1/state-bundle` on the relay).
        #[arg(long, value_name = "FILE")]
        bundle: PathBuf,
        /// The relay's public key (PEM), as the relay operator handed it over.
        #[arg(long, value_name = "FILE")]
        relay_key: PathBuf,
    },
    /// Write a campaign's signed plan as AWS IoT `CreateJob` request bodies, one job per stage
    /// (`<job id>.json`, for `aws iot create-job --cli-input-json file://…`), each targeting one
    /// thing group whose members are listed in `<job id>.things`; the plan's Jobs controls
    /// become the jobs' rollout, abort, timeout and retry configurations (docs/jobs.md). Reads
    /// the log only: no custodian, no HSM.
    ExportAwsJobs {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// The campaign.
        #[arg(long)]
        campaign: String,
        /// The AWS Region of the thing groups (`eu-central-1`).
        #[arg(long)]
        region: String,
        /// The AWS account id (12 digits).
        #[arg(long)]
        account: String,
        /// Where a device fetches its own delivery: an https:// URL with `{thingName}` in it.
        #[arg(long, value_name = "URL")]
        delivery_url: String,
        /// The directory to write the requests into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// A DER file, or the DER inside a PEM file whose label must be `label`.
pub(crate) fn read_der(path: &Path, label: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        let (found, der) = der::pem::decode_vec(&bytes)
            .map_err(|e| anyhow!("{}: bad PEM ({e})", path.display()))?;
        if found != label {
            bail!("{}: PEM label {found}, expected {label}", path.display());
        }
        Ok(der)
    } else {
        Ok(bytes)
    }
}

fn registry(home: &Path) -> anyhow::Result<Registry> {
    if !home.join("signer.json").exists() {
        bail!(
            "{} is not a signer home (run `cairn ceremony init`)",
            home.display()
        );
    }
    Registry::open(home.join("registry"))
        .with_context(|| format!("opening the registry in {}", home.display()))
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(feature = "testfleet")]
fn generate(dir: &Path, synthetic: Option<u64>, out: Output) -> CliResult {
    let fleet = match synthetic {
        Some(n) => testfleet::synthetic(n, now())?,
        None => testfleet::reference(now())?,
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("fleet.csv"), &fleet.csv)?;
    let pem = |label: &str, der: &[u8]| {
        der::pem::encode_string(label, der::pem::LineEnding::LF, der)
            .map_err(|e| anyhow!("PEM encoding failed ({e})"))
    };
    std::fs::write(
        dir.join("manufacturer-ca.pem"),
        pem("CERTIFICATE", &fleet.ca.der)?,
    )?;
    std::fs::write(dir.join("manufacturer.crl"), pem("X509 CRL", &fleet.crl)?)?;
    let defective = fleet.devices.iter().filter(|(_, d)| d.is_some()).count();
    out.emit(
        &format!(
            "wrote {} devices ({} with known defects) to {}",
            thousands(fleet.devices.len() as u64),
            defective,
            dir.display()
        ),
        &json!({ "ok": true, "devices": fleet.devices.len(), "defective": defective, "dir": dir }),
    );
    Ok(())
}

pub(crate) fn run_devices(cmd: DevicesCommand, out: Output) -> CliResult {
    match cmd {
        DevicesCommand::Trust { home, ca } => {
            let (fingerprint, verified) = registry(&home)?.trust(&read_der(&ca, "CERTIFICATE")?)?;
            out.emit(
                &format!("trusted manufacturer CA {fingerprint}; {verified} registered devices now verify"),
                &json!({ "ok": true, "fingerprint": fingerprint, "verified": verified }),
            );
        }
        DevicesCommand::Import { home, file } => {
            let format = Format::of(&file)
                .ok_or_else(|| anyhow!("{}: expected a .csv or .json file", file.display()))?;
            // Streamed: a CSV file is parsed as it is read, never held whole (docs/scale.md).
            let reader = std::fs::File::open(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let bar = out.progress("import", 1);
            let report = registry(&home)?
                .import_from(reader, format)
                .with_context(|| format!("{}", file.display()))?;
            bar.finish_and_clear();
            out.emit(
                &format!(
                    "import {}: {} devices ({} new, {} changed, {} unchanged); {} certificates verify with a trusted CA",
                    report.import,
                    thousands(report.devices),
                    thousands(report.added),
                    thousands(report.changed),
                    thousands(report.unchanged),
                    thousands(report.trusted)
                ),
                &json!({ "ok": true, "import": report.import, "devices": report.devices, "added": report.added, "changed": report.changed, "unchanged": report.unchanged, "trusted": report.trusted }),
            );
        }
        DevicesCommand::Revoke { home, crl } => {
            let n = registry(&home)?.import_crl(&read_der(&crl, "X509 CRL")?)?;
            out.emit(
                &format!("CRL applied: {n} certificates revoked"),
                &json!({ "ok": true, "revoked": n }),
            );
        }
        DevicesCommand::Show { home, id } => {
            let reg = registry(&home)?;
            let device = reg
                .device(&id)?
                .ok_or_else(|| anyhow!("no device {id:?} in the registry"))?;
            let revoked = reg.revoked_at(&device)?;
            let history = reg.history(&id)?;
            out.emit(
                &format!(
                    "{} {} {} {} {:?} firmware {} cohorts {}\ncertificate serial {} CN {} valid {} to {} CA {}{}\nhistory:\n{}",
                    device.id,
                    device.product,
                    device.family,
                    device.hardware_revision,
                    device.lifecycle,
                    device.version,
                    device.cohorts.join(","),
                    device.cert.serial,
                    device.cert.subject_cn,
                    rfc3339(UnixTime(device.cert.not_before)),
                    rfc3339(UnixTime(device.cert.not_after)),
                    device.cert.ca.as_deref().unwrap_or("(untrusted)"),
                    revoked.map(|t| format!(", revoked {}", rfc3339(t))).unwrap_or_default(),
                    history
                        .iter()
                        .map(|(n, c)| format!("  import {n}: {c}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                &json!({ "ok": true, "device": device, "revoked_at": revoked.map(|t| t.0), "history": history }),
            );
        }
        #[cfg(feature = "testfleet")]
        DevicesCommand::Generate {
            out: dir,
            synthetic,
        } => generate(&dir, synthetic, out)?,
    }
    Ok(())
}

pub(crate) fn run_rollout(cmd: RolloutCommand, out: Output) -> CliResult {
    let (session, plan) = match cmd {
        RolloutCommand::Plan { session, plan } => (session, plan),
        RolloutCommand::Approve {
            session,
            campaign,
            stage,
            resume,
        } => return approve(&session, &campaign, stage, resume, out),
        RolloutCommand::RecordState {
            session,
            bundle,
            relay_key,
        } => return record_state(&session, &bundle, &relay_key, out),
        RolloutCommand::ExportAwsJobs {
            home,
            campaign,
            region,
            account,
            delivery_url,
            out: dir,
        } => {
            let opts = cairn_signer::rollout::awsjob::ExportOptions {
                region,
                account,
                delivery_url,
            };
            return crate::awsjobs::export(&home, &campaign, &opts, &dir, out);
        }
    };
    let text =
        std::fs::read_to_string(&plan).with_context(|| format!("reading {}", plan.display()))?;
    let spec = PlanSpec::from_toml(&text).with_context(|| format!("{}", plan.display()))?;
    // Before any passphrase, and before a device is decided: the file's own checks.
    spec.check()
        .with_context(|| format!("{}: rollout plan refused", plan.display()))?;
    let appliance = open(&session.home)?;
    // Before any passphrase: a campaign the log holds (an interrupted `rollout plan` that logged
    // it is complete) is named with what to do.
    appliance.check_new_campaign(&spec.campaign)?;
    let reg = registry(&session.home)?;
    let shares = collect_shares(&appliance, &session)?;
    let module = module()?;
    let s = appliance.unlock(&module, &shares, now())?;
    drop(shares);
    let bar = out.progress("eligibility", 1);
    let report = s.plan_rollout(&reg, &spec, now(), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    let reasons: Vec<String> = report
        .by_reason
        .iter()
        .map(|(r, n)| format!("  {:<28}{:>8}", r.name(), thousands(*n)))
        .collect();
    let stages: Vec<String> = report
        .stages
        .iter()
        .map(|(name, n)| format!("  {name:<12}{:>8} devices", thousands(*n)))
        .collect();
    out.emit(
        &format!(
            "campaign {}: {} devices approved, {} rejected (of {})\nrejected by reason (a device may have several):\n{}\nstages:\n{}\nplan signed by the release key at log index {}, campaign sequence {} (earlier campaigns of the class are closed); {} decisions logged at {}..{}; {} HSM signatures\ncheckpoint:\n{}",
            spec.campaign,
            thousands(report.eligible),
            thousands(report.rejected),
            thousands(report.devices),
            reasons.join("\n"),
            stages.join("\n"),
            report.plan_index,
            report.campaign_sequence,
            thousands(report.decisions.end - report.decisions.start),
            report.decisions.start,
            report.decisions.end,
            report.hsm_signatures,
            report.checkpoint
        ),
        &json!({
            "ok": true,
            "campaign": spec.campaign,
            "devices": report.devices,
            "eligible": report.eligible,
            "rejected": report.rejected,
            "rejected_by_reason": report.by_reason.iter().map(|(r, n)| (r.name(), n)).collect::<std::collections::BTreeMap<_, _>>(),
            "stages": report.stages,
            "plan_index": report.plan_index,
            "campaign_sequence": report.campaign_sequence,
            "decisions": [report.decisions.start, report.decisions.end],
            "hsm_signatures": report.hsm_signatures,
            "checkpoint": report.checkpoint,
        }),
    );
    Ok(())
}

fn approve(
    session: &Presented,
    campaign: &str,
    stage: u64,
    resume: bool,
    out: Output,
) -> CliResult {
    use cairn_verifier::campaign::ApprovalAction;
    let action = if resume {
        ApprovalAction::Resume
    } else {
        ApprovalAction::OpenStage
    };
    let appliance = open(&session.home)?;
    let shares = collect_shares(&appliance, session)?;
    let module = module()?;
    let s = appliance.unlock(&module, &shares, now())?;
    drop(shares);
    let report = s.approve(campaign, stage, action, now())?;
    out.emit(
        &format!(
            "campaign {campaign}: {} stage {stage} ({}) approved by {}, signed by the release key at log index {} (plan at {})\ncheckpoint:\n{}",
            action.name(),
            report.stage_name,
            s.custodians().join(", "),
            report.index,
            report.plan_index,
            report.checkpoint
        ),
        &json!({
            "ok": true,
            "campaign": campaign,
            "action": action.name(),
            "stage": stage,
            "stage_name": report.stage_name,
            "custodians": s.custodians(),
            "index": report.index,
            "plan_index": report.plan_index,
            "checkpoint": report.checkpoint,
        }),
    );
    Ok(())
}

fn record_state(session: &Presented, bundle: &Path, relay_key: &Path, out: Output) -> CliResult {
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let b = cairn_verifier::transfer::TransferBundle::decode(&bytes).map_err(|e| {
        anyhow!(
            "{} is not a whole device-state bundle ({e}): a download cut short (the relay \
             stopped, the connection dropped) leaves part of one; fetch it again from the \
             relay's GET /api/v1/state-bundle (`curl --fail --remove-on-error -o FILE`)",
            bundle.display()
        )
    })?;
    let key = crate::keys::public_key(relay_key)?;
    let appliance = open(&session.home)?;
    let shares = collect_shares(&appliance, session)?;
    let module = module()?;
    let s = appliance.unlock(&module, &shares, now())?;
    drop(shares);
    let report = s.record_relay_state(&b, key, now())?;
    if report.already_recorded {
        out.emit(
            &format!(
                "relay log {}: its checkpoint of size {} is already recorded at log index {} \
                 (by an earlier session); nothing was logged now",
                b.origin, report.relay_size, report.index
            ),
            &json!({
                "ok": true,
                "origin": b.origin,
                "appended": [report.appended.start, report.appended.end],
                "relay_size": report.relay_size,
                "index": report.index,
                "already_recorded": true,
            }),
        );
        return Ok(());
    }
    out.emit(
        &format!(
            "relay log {}: {} new entries imported, now {} entries; its checkpoint recorded by {} at log index {}\ncheckpoint:\n{}",
            b.origin,
            report.appended.end - report.appended.start,
            report.relay_size,
            s.custodians().join(", "),
            report.index,
            report.checkpoint
        ),
        &json!({
            "ok": true,
            "origin": b.origin,
            "appended": [report.appended.start, report.appended.end],
            "relay_size": report.relay_size,
            "custodians": s.custodians(),
            "index": report.index,
            "checkpoint": report.checkpoint,
        }),
    );
    Ok(())
}
