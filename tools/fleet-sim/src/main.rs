//! `cairn-fleet-sim`: a simulated device fleet against an MQTT broker (see README.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_fleet_sim::{
    Capture, Faults, Mode, Rate, Sim, SimConfig, Stats, Trust, Witnesses, load_images,
};
use clap::Parser;

/// Simulated cairn devices: each connects over MQTT/TLS with its own client certificate, runs the
/// device boot check on every delivery, keeps its state across runs and reports its status.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Broker host (must match its certificate).
    #[arg(long, default_value = "127.0.0.1")]
    broker_host: String,
    /// Broker port.
    #[arg(long)]
    broker_port: u16,
    /// The broker's CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The CA's private key (PKCS#8 PEM): issues each device's client certificate.
    #[arg(long)]
    ca_key: PathBuf,
    /// Fleet CSV (`cairn devices generate`).
    #[arg(long)]
    fleet: PathBuf,
    /// The log's origin, as the devices pin it.
    #[arg(long)]
    origin: String,
    /// Log key: certificate or public key (PEM).
    #[arg(long)]
    log_key: PathBuf,
    /// Release key: certificate or public key (PEM).
    #[arg(long)]
    release_key: PathBuf,
    /// A witness every device pins: its C2SP verifier key, as `cairn-witness vkey` prints it
    /// (repeatable; none: devices check no cosignature, docs/witness.md).
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many of the pinned witnesses must have cosigned a delivery's checkpoint (default:
    /// all of them).
    #[arg(long, value_name = "K", requires = "witnesses")]
    witness_threshold: Option<usize>,
    /// The image devices download for a release: RELEASE-ID=PATH (repeatable).
    #[arg(long = "image", value_name = "RELEASE-ID=PATH", value_parser = parse_image, required = true)]
    images: Vec<(String, PathBuf)>,
    /// State directory (device state and client certificates), kept across runs.
    #[arg(long)]
    state: PathBuf,
    /// Simulate only the first N usable rows of the fleet file.
    #[arg(long, value_name = "N")]
    devices: Option<usize>,
    /// Seed of every fault selection.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Devices of rollout stage STAGE failing to install the update: STAGE=RATE (repeatable).
    #[arg(long = "install-failure", value_name = "STAGE=RATE", value_parser = parse_stage_rate)]
    install_failure: Vec<(u64, Rate)>,
    /// JSON object of device id to stage index (needed by --install-failure).
    #[arg(long, value_name = "FILE")]
    stages: Option<PathBuf>,
    /// Injected install failures happen on the first attempt only.
    #[arg(long)]
    transient: bool,
    /// Rate of devices that flip a byte of the image before the boot check.
    #[arg(long, value_name = "RATE", default_value = "0")]
    tamper_image: Rate,
    /// Rate of devices that flip a byte of the delivery's manifest before the boot check.
    #[arg(long, value_name = "RATE", default_value = "0")]
    tamper_delivery: Rate,
    /// Rate of devices that never connect.
    #[arg(long, value_name = "RATE", default_value = "0")]
    offline: Rate,
    /// Rate of devices that install but never report.
    #[arg(long, value_name = "RATE", default_value = "0")]
    silent: Rate,
    /// TLS handshakes in progress at most.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// How devices take their deliveries: `topics` (cairn's own, `cairn/<device>/delivery` and
    /// CBOR status reports) or `jobs` (the AWS IoT Jobs device API, docs/jobs.md; the relay needs
    /// `jobs = true` in `[mqtt]`).
    #[arg(long, value_name = "MODE", default_value = "topics")]
    mode: Mode,
    /// Keep a sample of the deliveries the boot check accepted, as received, in DIR (with what
    /// the devices pin and the images' files): what `cargo xtask m33-deliveries` runs on the
    /// Cortex-M33 firmware under QEMU.
    #[arg(long, value_name = "DIR")]
    capture: Option<PathBuf>,
    /// Most deliveries `--capture` keeps (at most two per checkpoint).
    #[arg(long, value_name = "N", default_value_t = 6, requires = "capture")]
    capture_count: usize,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Print the final summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_image(s: &str) -> Result<(String, PathBuf), String> {
    let (id, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not RELEASE-ID=PATH"))?;
    if id.is_empty() || path.is_empty() {
        return Err(format!("{s:?} is not RELEASE-ID=PATH"));
    }
    Ok((id.to_owned(), PathBuf::from(path)))
}

fn parse_stage_rate(s: &str) -> Result<(u64, Rate), String> {
    let (stage, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not STAGE=RATE"))?;
    let stage = stage
        .parse()
        .map_err(|_| format!("stage {stage:?} is not a stage index (0, 1, ...)"))?;
    Ok((stage, rate.parse()?))
}

fn config(args: &Args) -> anyhow::Result<SimConfig> {
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
    let mut install_failure = BTreeMap::new();
    for &(stage, rate) in &args.install_failure {
        if install_failure.insert(stage, rate).is_some() {
            bail!("--install-failure: stage {stage} given twice");
        }
    }
    let stages = match &args.stages {
        Some(path) => Faults::read_stages(path).context("--stages")?,
        None => BTreeMap::new(),
    };
    let mut config = SimConfig::new(
        &args.broker_host,
        args.broker_port,
        &args.ca,
        &args.ca_key,
        &args.fleet,
        trust,
        images,
        &args.state,
    );
    config.devices = args.devices;
    config.connect_concurrency = args.connect_concurrency;
    config.mode = args.mode;
    if let Some(dir) = &args.capture {
        config.capture = Some(Arc::new(
            Capture::create(dir, args.capture_count, &config.trust, &args.images)
                .context("--capture")?,
        ));
    }
    config.faults = Faults {
        seed: args.seed,
        install_failure,
        stages,
        transient: args.transient,
        tamper_image: args.tamper_image,
        tamper_delivery: args.tamper_delivery,
        offline: args.offline,
        silent: args.silent,
    };
    Ok(config)
}

fn line(s: &Stats) -> String {
    format!(
        "{}/{} connected, {} deliveries: {} installed, {} rolled back, {} install failed, \
         {} verification failed, {} duplicate, {} malformed; {} reports acknowledged{}",
        s.connected,
        s.devices - s.offline,
        s.deliveries,
        s.installed,
        s.rolled_back,
        s.install_failed,
        s.verification_failed,
        s.duplicates,
        s.malformed,
        s.reports_acked,
        if s.jobs_started > 0 || s.jobs_rejected > 0 {
            format!(
                "; {} job executions started, {} Jobs requests rejected",
                s.jobs_started, s.jobs_rejected
            )
        } else {
            String::new()
        },
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    fast_tls_contexts(&args);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Could not run (bad input, no broker CA, ...): 1. Usage errors are clap's 2.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// native-tls (OpenSSL) loads the CA bundle of `SSL_CERT_FILE` (or the system's) into every TLS
/// context it builds, about 40 ms each here: minutes for the reference fleet, whose devices trust
/// only the broker's CA anyway (their contexts drop those roots, `disable_built_in_roots`). So the
/// binary runs again (`exec`: the same process and arguments) with `SSL_CERT_FILE` pointing at
/// the broker's CA, and building a context takes about a millisecond. Nothing else in the
/// simulator uses OpenSSL's default roots.
fn fast_tls_contexts(args: &Args) {
    use std::os::unix::process::CommandExt as _;
    let (Ok(exe), Ok(ca)) = (std::env::current_exe(), args.ca.canonicalize()) else {
        return; // a missing --ca is reported by the run itself
    };
    if std::env::var_os("SSL_CERT_FILE").is_some_and(|f| f == ca.as_os_str()) {
        return;
    }
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("SSL_CERT_FILE", ca)
        .exec();
    eprintln!(
        "warning: could not run again with SSL_CERT_FILE set ({err}); TLS setup will be slow"
    );
}

fn run(args: &Args) -> anyhow::Result<()> {
    let config = config(args)?;
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message("reading the fleet, issuing client certificates");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let sim = Sim::start(config)?;
    spinner.finish_and_clear();
    let stats = sim.stats();
    eprintln!(
        "{} devices ({} offline, {} silent), {} fleet rows skipped, {} client certificates issued; \
         ready to connect after {:.1} s; open-files limit {}",
        stats.devices,
        stats.offline,
        stats.silent,
        stats.skipped_rows,
        stats.certificates_issued,
        started.elapsed().as_secs_f64(),
        sim.nofile_limit()
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
    );
    for s in sim.skipped().iter().take(5) {
        eprintln!("  skipped line {}: {}", s.line, s.reason);
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    if let Some(handle) = sim.handle() {
        let flag = Arc::clone(&interrupted);
        handle.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, Ordering::Relaxed);
            }
        });
    }
    let deadline = args.duration.map(Duration::from_secs);
    let online = stats.devices - stats.offline;
    let bar = indicatif::ProgressBar::new(online).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} connected  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let run = Instant::now();
    while !interrupted.load(Ordering::Relaxed) && deadline.is_none_or(|d| run.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(250));
        let s = sim.stats();
        bar.set_position(s.connected);
        bar.set_message(format!(
            "{} deliveries, {} installed, {} rolled back, {} failed, {} refused",
            s.deliveries, s.installed, s.rolled_back, s.install_failed, s.verification_failed
        ));
    }
    bar.finish_and_clear();
    let before = sim.stats();
    let mut last = sim.stop();
    // Connected devices as they were running, not after they disconnected.
    last.connected = before.connected;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&last)?);
    } else {
        println!("{}", line(&last));
    }
    Ok(())
}
