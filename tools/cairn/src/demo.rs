//! `cairn demo`: the reference scenario end to end on embedded defaults (docs/demo.md).
//!
//! A temporary SoftHSM2 token, a 3-of-5 custodian ceremony, releases 2.4.0 (the rollback target)
//! and 2.4.1 signed, the reference fleet decided (8,203 approved), the plan signed, the log carried
//! to the relay in a transfer bundle; the relay (its engine, MQTT link and dashboard) and a local
//! Mosquitto run in this process, the simulated fleet (`cairn-fleet-sim`, 8,400 devices each with
//! its own certificate and the device boot check) in another; the rollout runs through the AWS IoT
//! Jobs device API (the relay plays the Jobs service, each device is a Jobs client: docs/jobs.md).
//! The canary waits for a gate
//! approval the custodians sign; in wave-1 6 % of the devices fail their first install, the relay
//! pauses on the failure threshold, the custodians sign a resume, the failed devices are retried.
//! The relay's device-state log comes back across the air gap, the evidence pack is exported and
//! verified with the root certificate alone, and the audit summary printed.
//!
//! The custodians' passphrases are random and held in memory; a real ceremony has each custodian
//! type theirs (docs/ceremony.md). This module is the only part of the `cairn` binary that links
//! the relay; an appliance build leaves it out (`--no-default-features`).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cairn_relay::broker::{Broker, RELAY_CLIENT};
use cairn_relay::engine::Status;
use cairn_relay::{Config, Relay};
use cairn_signer::appliance::Appliance;
use cairn_signer::audit::{self, Summary};
use cairn_signer::ceremony::{self, CeremonyOptions, Custodian, TokenSource};
use cairn_signer::hsm::Module;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::rollout::{PlanReport, PlanSpec};
use cairn_signer::session::{ReleaseInput, Session};
use cairn_signer::shares::{KdfParams, Passphrase, ShareFile};
use cairn_signer::testfleet;
use cairn_verifier::campaign::ApprovalAction;
use cairn_verifier::custody::KeyRole;
use cairn_verifier::types::{UnixTime, Version};
use clap::Args;
use zeroize::Zeroizing;

use crate::custody::now;
use crate::output::{CliResult, Output, verification};

mod support;
mod witnesses;

use support::{Sim, note, wait_for, write_private};
use witnesses::Witnesses;

/// The demo's options.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Directory for everything the demo makes (token, signer home, relay, pack, report). Must
    /// not exist; default: a new directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Do not wait at the end with the dashboard up (the default without a terminal, and in CI).
    #[arg(long)]
    non_interactive: bool,
    /// Devices of wave-1 whose first install fails (the injected failure), percent.
    #[arg(long, default_value_t = 6)]
    wave_failure_percent: u8,
}

const CHILD: &str = "CAIRN_DEMO_DIR";
const ORIGIN: &str = "oem.example/cairn/log";
const CAMPAIGN: &str = "campaign-2026-11-2.4.1";
const RELEASE: &str = "controller-fw-2.4.1";
const ROLLBACK: &str = "controller-fw-2.4.0";
const CUSTODIANS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
/// The fleet simulator's sample of deliveries (`cairn-fleet-sim --capture`), in the demo's
/// directory.
const CAPTURE: &str = "fleet-capture";
const PLAN: &str = include_str!("../../../docs/examples/plan-2.4.1-demo.toml");

fn step(out: Output, n: u32, what: &str) {
    if !out.is_json() {
        eprintln!("\n== {n}. {what}");
    }
}

fn say(out: Output, line: &str) {
    if !out.is_json() {
        eprintln!("   {line}");
    }
}

/// Entry point: re-runs itself with the environment of a fresh token store (SoftHSM2, or the
/// module `CAIRN_TEST_PKCS11` chooses; the module reads it when it loads), then runs the scenario
/// in the child.
pub(crate) fn run(args: &DemoArgs, out: Output) -> CliResult {
    if let Some(dir) = std::env::var_os(CHILD) {
        return scenario(Path::new(&dir), args, out);
    }
    let dir = match &args.dir {
        Some(d) => {
            if d.exists() {
                return Err(anyhow::anyhow!(
                    "{} exists; the demo writes a new directory and never reuses one",
                    d.display()
                )
                .into());
            }
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("cairn-demo-")
            .tempdir()
            .context("creating the demo directory")?
            .keep(),
    };
    let dir = std::fs::canonicalize(&dir)?;
    // SoftHSM2 by default; CAIRN_TEST_PKCS11=tpm2 under tools/with-tpm2 for tpm2-pkcs11.
    let (_, module_env) = cairn_signer::testtoken::child_env(&dir.join("token"))
        .map_err(|e| anyhow::anyhow!("preparing the demo's token: {e}"))?;
    let status = Command::new(std::env::current_exe().context("locating cairn")?)
        .args(std::env::args_os().skip(1))
        .env(CHILD, &dir)
        .envs(module_env)
        .status()
        .context("running the demo")?;
    match status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(verification(anyhow::anyhow!(
            "the demo's evidence did not verify"
        ))),
        _ => Err(anyhow::anyhow!(
            "the demo failed ({status}); its files are in {}",
            dir.display()
        )
        .into()),
    }
}

fn random_passphrase() -> anyhow::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; 18]);
    getrandom::fill(bytes.as_mut()).map_err(|e| anyhow::anyhow!("random passphrase: {e}"))?;
    Ok(Zeroizing::new(hex::encode(bytes.as_ref())))
}

struct Custody {
    shares: Vec<(String, PathBuf)>,
    passphrases: Vec<Zeroizing<String>>,
}

impl Custody {
    fn present(&self, names: &[&str]) -> anyhow::Result<Vec<(ShareFile, Passphrase)>> {
        names
            .iter()
            .map(|n| {
                let i = CUSTODIANS
                    .iter()
                    .position(|c| c == n)
                    .context("custodian")?;
                Ok((
                    ShareFile::read(&self.shares[i].1)?,
                    Passphrase::new(self.passphrases[i].as_str().to_owned()),
                ))
            })
            .collect()
    }
}

/// Carries the signer's log, from where the relay's mirror stands, over in a transfer bundle file;
/// the relay forwards its checkpoint to the witnesses and delivers once two cosigned it
/// (docs/relay.md, "Witnesses"); their cosignatures come back to the signer from the relay's
/// `/log/checkpoint`, as `cairn witness attach` takes them. Returns the witnesses' standing on the
/// checkpoint carried, in one line.
fn transfer(scene: &Scene<'_>, relay: &Relay, n: &mut u32) -> anyhow::Result<String> {
    *n += 1;
    let bundle = scene
        .appliance
        .vault()
        .export_bundle(relay.vault().size())?;
    let file = scene.dir.join(format!("transfer-{n}.bundle"));
    std::fs::write(&file, bundle.to_cbor())?;
    relay.import_bundle_bytes(&std::fs::read(&file)?)?;
    let served = scene.dir.join("relay/tiles/checkpoint");
    let (size, quorum) = witnesses::through_relay(scene.appliance, relay, &served)?;
    Ok(format!("checkpoint {size}: {}", quorum.summary()))
}

/// The reference scenario, phase by phase, in the order an operator would follow it (docs/demo.md).
fn scenario(dir: &Path, args: &DemoArgs, out: Output) -> CliResult {
    let started = Instant::now();
    let module = Module::from_env().context("loading SoftHSM2 (run tools/setup)")?;
    let home = dir.join("signer");
    let t0 = now();
    let (custody, appliance, root_der) = key_ceremony(dir, &home, &module, out, t0)?;
    let relay_origin = format!("{ORIGIN}/relay");
    let witnesses = Witnesses::start(dir, &appliance, (&relay_origin, &dir.join("relay")))?;
    say(
        out,
        &format!(
            "witnesses: {} of {} must cosign every checkpoint devices accept; {} run as cairn-witness processes, the third is down",
            witnesses::THRESHOLD,
            witnesses.vkeys.len(),
            witnesses.running().collect::<Vec<_>>().join(" and ")
        ),
    );
    let scene = Scene {
        dir,
        home: &home,
        out,
        module: &module,
        custody: &custody,
        appliance: &appliance,
        witnesses: &witnesses,
    };
    let (session, images) = sign_releases(&scene, t0)?;
    let plan = decide_fleet(&scene, session, t0)?;
    let (broker, relay) = start_relay(&scene)?;
    let runner = relay.start()?;
    let mut bundles = 0;
    first_transfer(&scene, &relay, &mut bundles)?;
    roll_out(
        &scene,
        args,
        &broker,
        &relay,
        &images,
        plan.eligible,
        &mut bundles,
    )?;
    relay_log_back(&scene, &relay)?;
    let (summary, pack_file) = evidence(&scene, &root_der)?;
    report(&scene, args, &relay, &summary, &pack_file, started)?;
    drop(runner);
    drop(broker);
    if summary.verified {
        Ok(())
    } else {
        Err(verification(anyhow::anyhow!(
            "{} findings in the evidence pack",
            summary.findings.len()
        )))
    }
}

/// What the phases after the ceremony share: where the demo writes, how it reports, the token,
/// the custodians and the appliance.
#[derive(Clone, Copy)]
struct Scene<'a> {
    dir: &'a Path,
    home: &'a Path,
    out: Output,
    module: &'a Module,
    custody: &'a Custody,
    appliance: &'a Appliance,
    witnesses: &'a Witnesses,
}

/// Phase 1: the key ceremony. Returns the custodians' shares and passphrases, the appliance and
/// its root certificate (DER).
fn key_ceremony(
    dir: &Path,
    home: &Path,
    module: &Module,
    out: Output,
    t0: UnixTime,
) -> anyhow::Result<(Custody, Appliance, Vec<u8>)> {
    step(
        out,
        1,
        "key ceremony: 3 of 5 custodians on a fresh SoftHSM2 token",
    );
    std::fs::create_dir_all(dir.join("custodians"))?;
    let custody = Custody {
        shares: CUSTODIANS
            .iter()
            .map(|c| ((*c).to_owned(), dir.join(format!("custodians/{c}.share"))))
            .collect(),
        passphrases: CUSTODIANS
            .iter()
            .map(|_| random_passphrase())
            .collect::<anyhow::Result<_>>()?,
    };
    ceremony::init(
        module,
        &CeremonyOptions {
            home: home.to_path_buf(),
            source: TokenSource::Fresh,
            token: "cairn-demo".into(),
            origin: ORIGIN.into(),
            organization: "Smart Controller OEM".into(),
            threshold: 3,
            custodians: custody
                .shares
                .iter()
                .zip(&custody.passphrases)
                .map(|((name, path), p)| Custodian {
                    name: name.clone(),
                    share_path: path.clone(),
                    passphrase: Passphrase::new(p.as_str().to_owned()),
                })
                .collect(),
            kdf: KdfParams::default(),
            now: t0,
        },
    )?;
    let appliance = Appliance::open(home)?;
    let root_der = der::Encode::to_der(&appliance.certificate(KeyRole::Root)?)
        .context("encoding the root certificate")?;
    say(
        out,
        &format!(
            "root, release and log keys generated in the token; root fingerprint {}",
            cairn_signer::certs::fingerprint_text(&root_der)
        ),
    );
    say(
        out,
        &format!(
            "five sealed shares in {}; the log starts with the root-signed ceremony record (entry 0)",
            dir.join("custodians").display()
        ),
    );
    Ok((custody, appliance, root_der))
}

/// Phase 2: the two releases signed in one session. Returns the session (the next phase signs
/// the plan in it) and the images, by release id.
fn sign_releases<'a>(
    scene: &Scene<'a>,
    t0: UnixTime,
) -> anyhow::Result<(Session<'a>, Vec<(&'static str, PathBuf)>)> {
    let Scene {
        dir,
        out,
        module,
        custody,
        appliance,
        ..
    } = *scene;
    step(
        out,
        2,
        "signing 2.4.0 (the rollback target) and 2.4.1 with alice, carol and erin",
    );
    let session = appliance.unlock(
        module,
        &custody.present(&["alice", "carol", "erin"])?,
        now(),
    )?;
    let mut images = Vec::new();
    for (id, version) in [
        (ROLLBACK, Version::new(2, 4, 0)),
        (RELEASE, Version::new(2, 4, 1)),
    ] {
        let path = dir.join(format!("{id}.bin"));
        let mut image = vec![0u8; 4 << 20];
        getrandom::fill(&mut image).map_err(|e| anyhow::anyhow!("random image: {e}"))?;
        std::fs::write(&path, &image)?;
        // An MCUboot image, what the STM32H5's own secure boot (OEMiROT) checks (formats.md §8).
        let signed_path = dir.join(format!("{id}.signed.bin"));
        let source = cairn_signer::mcuboot::McubootSource::Firmware {
            layout: cairn_verifier::mcuboot::write::Layout::default(),
            out: signed_path.clone(),
        };
        let signed = session.sign_mcuboot_release(
            &path,
            &ReleaseInput {
                release_id: id.into(),
                product: "Smart Controller".into(),
                family: "STM32H5".into(),
                hardware_revisions: vec!["rev-b".into(), "rev-c".into()],
                version,
                security_epoch: 7,
                support_until: UnixTime(t0.0 + 5 * 365 * 86_400),
                advisories: if id == RELEASE {
                    vec!["CVE-2026-12345".into()]
                } else {
                    Vec::new()
                },
                artifact: (id == RELEASE).then(|| "controller-fw-2.4.1-security.bin".into()),
            },
            &source,
            now(),
        )?;
        say(
            out,
            &format!(
                "{id}: MCUboot image signed in the HSM, log entry {}; {}",
                signed.index,
                crate::mcuboot::imgtool_verify(appliance, &signed_path)?
            ),
        );
        images.push((id, signed_path));
    }
    Ok((session, images))
}

/// Phase 3: the reference fleet decided against 2.4.1 and the plan signed; the session ends.
fn decide_fleet(
    scene: &Scene<'_>,
    session: Session<'_>,
    t0: UnixTime,
) -> anyhow::Result<PlanReport> {
    let Scene { dir, home, out, .. } = *scene;
    step(
        out,
        3,
        "eligibility: the Smart Controller Evaluation Fleet against 2.4.1",
    );
    let fleet = testfleet::reference(t0)?;
    std::fs::write(dir.join("fleet.csv"), &fleet.csv)?;
    let registry = Registry::open(home.join("registry"))?;
    registry.trust(&fleet.ca.der)?;
    registry.import(fleet.csv.as_bytes(), Format::Csv)?;
    registry.import_crl(&fleet.crl)?;
    let spec = PlanSpec::from_toml(PLAN).context("the demo plan")?;
    let bar = out.progress("eligibility", 1);
    let plan = session.plan_rollout(&registry, &spec, now(), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    say(
        out,
        &format!(
            "{} devices approved, {} rejected; plan signed by the release key at entry {}",
            plan.eligible, plan.rejected, plan.plan_index
        ),
    );
    drop(session);
    Ok(plan)
}

/// Phase 4: a local Mosquitto and the relay, configured with the log and release keys and a
/// random operator token.
fn start_relay(scene: &Scene<'_>) -> anyhow::Result<(Broker, Arc<Relay>)> {
    let Scene { dir, home, out, .. } = *scene;
    step(
        out,
        4,
        "the relay, a local Mosquitto, and the transfer bundle across the air gap",
    );
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if limit < 20_000 {
        say(
            out,
            &format!("note: open-files limit {limit}; 8,400 devices need about 17,000"),
        );
    }
    let broker = Broker::start(&dir.join("broker"))?;
    let relay_files = broker.client(RELAY_CLIENT)?;
    std::fs::copy(home.join("certs/log-0.pem"), dir.join("log.pem"))?;
    std::fs::copy(home.join("certs/release-0.pem"), dir.join("release.pem"))?;
    // The operator API's bearer token: random, its SHA-256 in the configuration (docs/relay.md).
    let token = random_passphrase()?;
    write_private(&dir.join("operator-token"), token.as_bytes())?;
    let token_hash = hex::encode(cairn_verifier::crypto::Crypto::sha256_of(
        &cairn_verifier::crypto::Software,
        &[token.as_bytes()],
    ));
    drop(token);
    // The demo's dashboard is open to whoever reaches 127.0.0.1 (docs/relay.md: a relay's pages
    // are for operators unless `[http] public` says otherwise). The local Mosquitto has no
    // per-connection publish limit, so the demo lifts AWS IoT Core's (`[broker]`, docs/relay.md).
    std::fs::write(
        dir.join("relay.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"relay\"\n\
             [operators]\noperator = \"{token_hash}\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"log.pem\"\nrelease_key = \"release.pem\"\n\
             [broker]\nmax_publishes_per_sec = 0\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {}\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\njobs = true\n\
             [http]\npublic = [\"dashboard\"]\n\
             [witnesses]\npolicy = \"{}\"\nretry_min_secs = 1\nretry_max_secs = 5\n\
             relay_log = true\nrelay_log_every_secs = 1\n",
            broker.port(),
            broker.ca().display(),
            relay_files.cert.display(),
            relay_files.key.display(),
            scene.witnesses.policy_file.display()
        ),
    )?;
    let relay = Arc::new(Relay::open(&Config::load(&dir.join("relay.toml"))?)?);
    Ok((broker, relay))
}

/// Phase 4, continued: the first transfer bundle across the air gap, and the stage of every
/// device for the simulator.
fn first_transfer(scene: &Scene<'_>, relay: &Relay, bundles: &mut u32) -> anyhow::Result<()> {
    let Scene { dir, out, .. } = *scene;
    let witnessed = transfer(scene, relay, bundles)?;
    say(out, &witnessed);
    say(
        out,
        &format!(
            "transfer-1.bundle verified and imported: the relay's mirror holds {} entries",
            relay.vault().size()
        ),
    );
    let stages: std::collections::BTreeMap<String, usize> = relay.engine().campaigns()[CAMPAIGN]
        .devices()
        .map(|d| (d.id().to_owned(), d.stage()))
        .collect();
    std::fs::write(dir.join("stages.json"), serde_json::to_vec(&stages)?)?;
    Ok(())
}

/// Phase 5: the staged rollout to the simulated fleet, with the custodians' approval of wave-1 and
/// their resume after the failure threshold paused it.
fn roll_out(
    scene: &Scene<'_>,
    args: &DemoArgs,
    broker: &Broker,
    relay: &Relay,
    images: &[(&str, PathBuf)],
    eligible: u64,
    bundles: &mut u32,
) -> anyhow::Result<()> {
    let Scene {
        dir,
        out,
        module,
        custody,
        appliance,
        ..
    } = *scene;
    step(
        out,
        5,
        "staged rollout to the simulated fleet (8,400 devices over MQTT/TLS, through AWS IoT Jobs)",
    );
    let mut sim = start_simulator(dir, args, broker, images, scene.witnesses)?;
    let bar = out.progress("installed", eligible);
    wait_for("the canary", 600, &bar, relay, |s, _| {
        s == Status::WaitingApproval
    })?;
    note(
        &bar,
        "   canary: 50 installed; its gate needs the custodians' approval",
    );
    let s = appliance.unlock(module, &custody.present(&["bob", "carol", "dave"])?, now())?;
    let a = s.approve(CAMPAIGN, 1, ApprovalAction::OpenStage, now())?;
    drop(s);
    let witnessed = transfer(scene, relay, bundles)?;
    note(
        &bar,
        format!(
            "   approval to open wave-1 signed by bob, carol and dave (entry {}), {witnessed}, carried over in transfer-{bundles}.bundle",
            a.index
        ),
    );
    wait_for("the failure threshold", 600, &bar, relay, |s, _| {
        s == Status::Paused { by_rule: true }
    })?;
    note(
        &bar,
        format!(
            "   wave-1 paused by its failure threshold: {}% of its devices failed their first install",
            args.wave_failure_percent
        ),
    );
    // The custodians look at the failures before they let the rollout go on: the relay's log,
    // the pause in it, is recorded on the signer first; the relay refuses a resume signed before.
    let (state, _) = witnesses::relay_state(relay, &scene.witnesses.policy_file)?;
    std::fs::write(dir.join("device-state-paused.bundle"), state.to_cbor())?;
    let relay_key = relay.engine().log().log_key()?.public;
    let s = appliance.unlock(module, &custody.present(&["alice", "bob", "erin"])?, now())?;
    let recorded = s.record_relay_state(&state, relay_key, now())?;
    let r = s.approve(CAMPAIGN, 1, ApprovalAction::Resume, now())?;
    drop(s);
    let witnessed = transfer(scene, relay, bundles)?;
    note(
        &bar,
        format!(
            "   the relay's log with the pause ({} entries) recorded at entry {}; resume signed by alice, bob and erin (entry {}), {witnessed}; failed devices are retried",
            recorded.relay_size, recorded.index, r.index
        ),
    );
    wait_for(
        "the campaign to complete",
        900,
        &bar,
        relay,
        |s, installed| s == Status::Completed && installed == eligible,
    )?;
    bar.finish_and_clear();
    say(
        out,
        &format!("campaign completed: {eligible} devices installed 2.4.1"),
    );
    std::fs::write(dir.join("dashboard.html"), relay.dashboard())?;
    drop(sim.stop());
    Ok(())
}

/// Phase 5: the simulated fleet (`cairn-fleet-sim`, next to `cairn`) on the broker, with the
/// images by release id and wave-1's injected install failures.
fn start_simulator(
    dir: &Path,
    args: &DemoArgs,
    broker: &Broker,
    images: &[(&str, PathBuf)],
    witnesses: &Witnesses,
) -> anyhow::Result<Sim> {
    let sim_bin = std::env::current_exe()?
        .parent()
        .map(|p| p.join("cairn-fleet-sim"))
        .filter(|p| p.exists())
        .context("cairn-fleet-sim is not next to cairn (cargo build -p cairn-fleet-sim)")?;
    let image_arg = |(id, path): &(&str, PathBuf)| format!("{id}={}", path.display());
    let mut sim = Command::new(sim_bin);
    // Every device pins the three witnesses and needs two of them (docs/witness.md).
    for vkey in &witnesses.vkeys {
        sim.arg("--witness").arg(vkey);
    }
    sim.args(["--witness-threshold", &witnesses::THRESHOLD.to_string()]);
    Ok(Sim(sim
        .args(["--broker-port", &broker.port().to_string()])
        .arg("--ca")
        .arg(broker.ca())
        .arg("--ca-key")
        .arg(dir.join("broker/ca.key"))
        .arg("--fleet")
        .arg(dir.join("fleet.csv"))
        .args(["--origin", ORIGIN])
        .arg("--log-key")
        .arg(dir.join("log.pem"))
        .arg("--release-key")
        .arg(dir.join("release.pem"))
        .args(["--image", &image_arg(&images[1])])
        .args(["--image", &image_arg(&images[0])])
        .arg("--state")
        .arg(dir.join("fleet-state"))
        // Every device takes its update through the AWS IoT Jobs device API (docs/jobs.md).
        .args(["--mode", "jobs"])
        // A sample of the deliveries as devices received them, for the Cortex-M33 firmware
        // under QEMU (`cargo xtask m33-deliveries --dir DIR`, which tools/demo runs next).
        .arg("--capture")
        .arg(dir.join(CAPTURE))
        .args([
            "--install-failure",
            &format!("1={}%", args.wave_failure_percent),
            "--transient",
            "--seed",
            "7",
        ])
        .arg("--stages")
        .arg(dir.join("stages.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting cairn-fleet-sim")?))
}

/// Phase 6: the relay's device-state log back across the air gap, recorded on the signer.
fn relay_log_back(scene: &Scene<'_>, relay: &Relay) -> anyhow::Result<()> {
    let Scene {
        out,
        module,
        custody,
        appliance,
        dir,
        ..
    } = *scene;
    step(
        out,
        6,
        "the relay's device-state log back across the air gap",
    );
    let (state, relay_quorum) = witnesses::relay_state(relay, &scene.witnesses.policy_file)?;
    std::fs::write(dir.join("device-state.bundle"), state.to_cbor())?;
    let relay_key = relay.engine().log().log_key()?.public;
    let s = appliance.unlock(module, &custody.present(&["carol", "dave", "erin"])?, now())?;
    let recorded = s.record_relay_state(&state, relay_key, now())?;
    drop(s);
    say(
        out,
        &format!(
            "{} relay entries imported on the signer; their checkpoint ({}) recorded at entry {}",
            recorded.relay_size,
            relay_quorum.summary(),
            recorded.index
        ),
    );
    Ok(())
}

/// Phase 7: the evidence pack exported, then verified with the root certificate alone. Returns
/// the summary and the pack's file.
fn evidence(scene: &Scene<'_>, root_der: &[u8]) -> anyhow::Result<(Summary, PathBuf)> {
    let Scene {
        dir,
        home,
        out,
        appliance,
        ..
    } = *scene;
    step(
        out,
        7,
        "the evidence pack: exported, then verified with the root certificate alone",
    );
    // The checkpoint of the relay's log recorded last never crosses to the relay: the signer's own
    // round has it cosigned (`cairn witness request`/`attach` over HTTP) before the pack is exported.
    let (size, quorum) = scene.witnesses.cosign(appliance)?;
    say(out, &format!("checkpoint {size}: {}", quorum.summary()));
    let pack = audit::export(appliance, CAMPAIGN, now())?;
    let pack_file = dir.join("evidence.pack");
    crate::audit::write_new(&pack_file, &pack)?;
    std::fs::write(
        dir.join("root.pem"),
        std::fs::read(home.join("certs/root.pem"))?,
    )?;
    let verify_started = Instant::now();
    let policy_text = std::fs::read_to_string(&scene.witnesses.policy_file)?;
    let policy =
        cairn_signer::witness::Policy::from_toml(&policy_text, &scene.witnesses.policy_file)?;
    let verified = audit::verify_with_witnesses(&std::fs::read(&pack_file)?, root_der, &policy);
    let verify_secs = verify_started.elapsed().as_secs_f64();
    let summary = Summary::of(&verified);
    std::fs::write(dir.join("audit-report.html"), summary.html())?;
    std::fs::write(
        dir.join("audit-summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    say(
        out,
        &format!(
            "{} ({} bytes) verified in {verify_secs:.2} s: `cairn audit verify {} --root {} --witnesses {}`",
            pack_file.display(),
            pack.len(),
            pack_file.display(),
            dir.join("root.pem").display(),
            scene.witnesses.policy_file.display()
        ),
    );
    Ok((summary, pack_file))
}

/// The end: the summary printed (or the JSON), and, on a terminal, the live dashboard until Enter.
fn report(
    scene: &Scene<'_>,
    args: &DemoArgs,
    relay: &Arc<Relay>,
    summary: &Summary,
    pack_file: &Path,
    started: Instant,
) -> anyhow::Result<()> {
    let Scene { dir, out, .. } = *scene;
    if out.is_json() {
        out.emit(
            "",
            &serde_json::json!({
                "ok": summary.verified,
                "dir": dir,
                "pack": pack_file,
                "report": dir.join("audit-report.html"),
                "dashboard": dir.join("dashboard.html"),
                "seconds": started.elapsed().as_secs_f64(),
                "summary": summary,
            }),
        );
    } else {
        println!("\n{}", summary.text());
        println!(
            "audit report (HTML): {}",
            dir.join("audit-report.html").display()
        );
        println!(
            "dashboard snapshot:  {}",
            dir.join("dashboard.html").display()
        );
        println!("evidence pack:       {}", pack_file.display());
        println!(
            "the whole demo took {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let interactive = !args.non_interactive
        && std::env::var_os("CI").is_none()
        && std::io::stdin().is_terminal()
        && !out.is_json();
    if interactive {
        let server = serve(relay)?;
        println!("\nthe relay's live dashboard: http://{server}/dashboard (press Enter to stop)");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    Ok(())
}

/// Serves the relay's routes (dashboard, API, tiles) on a free 127.0.0.1 port, in a thread.
fn serve(relay: &Arc<Relay>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let data = actix_web::web::Data::from(Arc::clone(relay));
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            if let Ok(server) = actix_web::HttpServer::new(move || {
                actix_web::App::new()
                    .app_data(data.clone())
                    .configure(cairn_relay::routes)
            })
            .listen(listener)
            {
                let _ = server.run().await;
            }
        });
    });
    Ok(addr)
}
