//! `cairn`: the command line for key custodians, release operators and auditors.
//!
//! Output is for people by default and JSON with `--json`. Exit codes: 0 when everything checked
//! out, 1 when a verification failed (a signature, a proof, fsck), 2 when the command could not run
//! (bad arguments, unreadable files, storage errors).

mod audit;
mod awsjobs;
mod bundle;
mod custody;
#[cfg(feature = "demo")]
mod demo;
mod fleet;
mod keys;
mod log;
mod mcuboot;
mod output;
mod passphrase;
mod witness;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cairn: signed firmware security updates with a verifiable evidence trail.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, long_about = None)]
struct Cli {
    /// Machine-readable JSON on standard output instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The transparency log: checkpoints, proofs, export, fsck, evidence queries.
    #[command(subcommand)]
    Log(log::LogCommand),
    /// Key ceremonies: set up the signer's token, keys, certificates and custodian shares.
    #[command(subcommand)]
    Ceremony(custody::CeremonyCommand),
    /// Firmware releases: sign one in a custodian session, verify a logged one.
    #[command(subcommand)]
    Release(custody::ReleaseCommand),
    /// The device registry: manufacturer CAs, fleet imports, CRLs, history.
    #[command(subcommand)]
    Devices(fleet::DevicesCommand),
    /// Rollouts: eligibility for every device and the signed plan.
    #[command(subcommand)]
    Rollout(fleet::RolloutCommand),
    /// Transfer bundles across the air gap: export, verify, import.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Key rotation and revocation, signed by the root key.
    #[command(subcommand)]
    Key(custody::KeyCommand),
    /// Evidence for auditors: export a campaign's pack, verify one offline, the CRA summary.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Witnesses: requests for the latest checkpoint, cosignatures brought back, quorum status.
    #[command(subcommand)]
    Witness(witness::WitnessCommand),
    /// The whole reference scenario on embedded defaults: ceremony, signing, eligibility, staged
    /// rollout through the relay and a simulated fleet, evidence pack verified, audit summary.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json, cli.quiet);
    let result = match cli.command {
        Command::Log(cmd) => log::run(cmd, out),
        Command::Ceremony(cmd) => custody::run_ceremony(cmd, out),
        Command::Release(cmd) => custody::run_release(cmd, out),
        Command::Key(cmd) => custody::run_key(&cmd, out),
        Command::Bundle(cmd) => bundle::run(cmd, out),
        Command::Devices(cmd) => fleet::run_devices(cmd, out),
        Command::Rollout(cmd) => fleet::run_rollout(cmd, out),
        Command::Audit(cmd) => audit::run(cmd, out),
        Command::Witness(cmd) => witness::run(cmd, out),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&args, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => out.fail(&failure),
    }
}
