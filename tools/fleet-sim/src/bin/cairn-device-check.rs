//! `cairn-device-check`: one device's boot check on one delivery, from the command line, for a
//! device agent that is not written in Rust (the AWS IoT Device SDK for Python in
//! `tools/jobs-device.py`, docs/jobs.md). It runs exactly what a simulated device runs
//! (`cairn_fleet_sim::device::handle`, which calls `cairn_verifier::boot::verify_delivery` with
//! software crypto) for the device as the fleet file describes it before its first install.
//!
//! Prints one JSON line `{"outcome", "detail", "release", "purpose"}`; exits 0 when the device
//! installs the delivery, 1 when the boot check refuses it (`verification-failed` and the
//! verifier's error code), 2 when the install fails, 3 when the delivery does not decode or an
//! argument is wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use cairn_fleet_sim::device::{Handled, handle};
use cairn_fleet_sim::fleet::Fleet;
use cairn_fleet_sim::state::DeviceState;
use cairn_fleet_sim::{DeviceFaults, Faults, Trust, Witnesses, load_images};
use cairn_verifier::campaign::Outcome;
use clap::Parser;

/// Runs the device boot check on one delivery.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The delivery envelope (formats.md §5), as the device received it.
    #[arg(long)]
    delivery: PathBuf,
    /// The device that checks it.
    #[arg(long)]
    device: String,
    /// Fleet CSV with the device's row (`cairn devices generate`).
    #[arg(long)]
    fleet: PathBuf,
    /// The log's origin, as the device pins it.
    #[arg(long)]
    origin: String,
    /// Log key: certificate or public key (PEM).
    #[arg(long)]
    log_key: PathBuf,
    /// Release key: certificate or public key (PEM).
    #[arg(long)]
    release_key: PathBuf,
    /// The image the device downloads for a release: RELEASE-ID=PATH (repeatable).
    #[arg(long = "image", value_name = "RELEASE-ID=PATH", value_parser = parse_image, required = true)]
    images: Vec<(String, PathBuf)>,
    /// A witness the device pins: its C2SP verifier key, as `cairn-witness vkey` prints it
    /// (repeatable; none: the device checks no cosignature).
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many of the pinned witnesses must have cosigned the checkpoint.
    #[arg(long, value_name = "K", requires = "witnesses")]
    witness_threshold: Option<usize>,
}

fn parse_image(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((id, path)) if !id.is_empty() && !path.is_empty() => {
            Ok((id.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("{s:?} is not RELEASE-ID=PATH")),
    }
}

fn run(args: &Args) -> anyhow::Result<u8> {
    let trust = Trust {
        origin: args.origin.clone(),
        log_key: cairn_relay::read_key(&args.log_key).context("--log-key")?,
        release_key: cairn_relay::read_key(&args.release_key).context("--release-key")?,
        witnesses: Witnesses::new(
            &args.witnesses,
            args.witness_threshold.unwrap_or(args.witnesses.len()),
        )?,
    };
    let images = load_images(&args.images).context("--image")?;
    let fleet = Fleet::read(&args.fleet).context("--fleet")?;
    let Some(row) = fleet.devices.iter().find(|d| d.id == args.device) else {
        bail!("device {} is not in {}", args.device, args.fleet.display());
    };
    let bytes = std::fs::read(&args.delivery)
        .with_context(|| format!("reading {}", args.delivery.display()))?;
    let state = DeviceState::new(row.version);
    let handled = handle(
        &trust,
        &images,
        &Faults::default(),
        row,
        DeviceFaults::default(),
        &state,
        &bytes,
    );
    let (outcome, detail, release, purpose) = match handled {
        Handled::Done {
            outcome,
            purpose,
            detail,
            state,
            ..
        } => (
            outcome,
            detail.to_owned(),
            state.last.map(|l| l.release).unwrap_or_default(),
            purpose,
        ),
        Handled::Malformed(e) => {
            println!(
                "{}",
                serde_json::json!({"outcome": "malformed", "detail": e.code()})
            );
            return Ok(3);
        }
        Handled::Duplicate => bail!("a fresh device state cannot hold a duplicate"),
    };
    println!(
        "{}",
        serde_json::json!({
            "outcome": outcome.name(),
            "detail": detail,
            "release": release,
            "purpose": format!("{purpose:?}").to_lowercase(),
        })
    );
    Ok(match outcome {
        Outcome::Installed => 0,
        Outcome::VerificationFailed => 1,
        Outcome::InstallFailed => 2,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cairn-device-check: {e:#}");
            ExitCode::from(3)
        }
    }
}
