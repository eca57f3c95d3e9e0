//! The signer's steps of the scale benchmark, each run in its own process (`scale.rs` re-runs
//! itself with `CAIRN_SCALE_STEP`) so that its peak memory is its own. State passes between
//! steps through the work directory, as it does between `cairn` commands.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use cairn_signer::appliance::Appliance;
use cairn_signer::audit;
use cairn_signer::ceremony::{self, CeremonyOptions, Custodian, TokenSource};
use cairn_signer::hsm::Module;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::rollout::PlanSpec;
use cairn_signer::session::{ReleaseInput, Session};
use cairn_signer::shares::{KdfParams, Passphrase, ShareFile};
use cairn_signer::testfleet;
use cairn_vault::Vault;
use cairn_verifier::campaign::ApprovalAction;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::custody::KeyRole;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Purpose, Statement};
use cairn_verifier::types::{UnixTime, Version};
use der::EncodePem as _;
use serde_json::json;

use super::probe;
use crate::relay_log::RelayLog;

pub(crate) const NOW: UnixTime = UnixTime(1_795_651_200);
pub(crate) const ORIGIN: &str = "scale.bench.example/log";
const CAMPAIGN: &str = "campaign-2026-11-2.4.1";
const RELEASE: &str = "controller-fw-2.4.1";
const ROLLBACK: &str = "controller-fw-2.4.0";
const CUSTODIANS: [&str; 2] = ["alice", "bob"];
const RELAY_ORIGIN: &str = "scale.bench.example/log/relay";
/// Entries per batch where a step reads or writes the log in batches.
const BATCH: usize = 100_000;
/// The reference plan, the file `cairn rollout plan --plan` reads (docs/eligibility.md).
const PLAN: &str = include_str!("../../../docs/examples/plan-2.4.1.toml");

fn passphrase(name: &str) -> Passphrase {
    Passphrase::new(format!("benchmark passphrase of {name}"))
}

/// Runs step `step` on the work directory `dir` (`fleet`: the fleet cache directory).
pub(crate) fn run(step: &str, dir: &Path, fleet: &Path, n: u64) {
    let t = Instant::now();
    let extra = match step {
        "fleet" => generate(fleet, n),
        "setup" => setup(dir),
        "import" => import(dir, fleet, n),
        "plan" => plan(dir, n),
        "deliveries" => deliveries(dir),
        "approve" => approve(dir),
        "bundle" => bundle(dir),
        "relay-log" => relay_log(dir),
        "pack-export" => pack_export(dir),
        "pack-verify" => pack_verify(dir, n),
        other => panic!("unknown step {other}"),
    };
    probe::report(t.elapsed().as_secs_f64(), &extra);
}

/// The synthetic fleet's CSV and CA, written to the cache directory.
fn generate(fleet: &Path, n: u64) -> serde_json::Value {
    std::fs::create_dir_all(fleet).unwrap();
    let partial = fleet.join("fleet.csv.partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).unwrap());
    let ca = testfleet::write_synthetic(n, NOW, &mut out).unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    std::fs::write(fleet.join("ca.der"), &ca.der).unwrap();
    std::fs::rename(&partial, fleet.join("fleet.csv")).unwrap();
    json!({})
}

fn session<'a>(appliance: &'a Appliance, module: &'a Module, dir: &Path) -> Session<'a> {
    let shares: Vec<_> = CUSTODIANS
        .iter()
        .map(|c| {
            (
                ShareFile::read(&dir.join(format!("{c}.share"))).unwrap(),
                passphrase(c),
            )
        })
        .collect();
    appliance.unlock(module, &shares, NOW).unwrap()
}

/// The key ceremony and the two releases (not a step of the table: what precedes a rollout).
fn setup(dir: &Path) -> serde_json::Value {
    let module = Module::from_env().unwrap();
    ceremony::init(
        &module,
        &CeremonyOptions {
            home: dir.join("home"),
            token: "scale".into(),
            source: TokenSource::Fresh,
            origin: ORIGIN.into(),
            organization: "Bench OEM".into(),
            threshold: 2,
            custodians: CUSTODIANS
                .iter()
                .map(|c| Custodian {
                    name: (*c).into(),
                    share_path: dir.join(format!("{c}.share")),
                    passphrase: passphrase(c),
                })
                .collect(),
            kdf: KdfParams {
                memory_kib: 8 * 1024,
                iterations: 1,
                parallelism: 1,
            },
            now: NOW,
        },
    )
    .unwrap();
    let appliance = Appliance::open(dir.join("home")).unwrap();
    let session = session(&appliance, &module, dir);
    for (id, v) in [
        (ROLLBACK, Version::new(2, 4, 0)),
        (RELEASE, Version::new(2, 4, 1)),
    ] {
        let image = dir.join(id);
        std::fs::write(&image, id.as_bytes()).unwrap();
        session
            .sign_release(
                &image,
                &ReleaseInput {
                    release_id: id.into(),
                    product: "Smart Controller".into(),
                    family: "STM32H5".into(),
                    hardware_revisions: vec!["rev-b".into(), "rev-c".into()],
                    version: v,
                    security_epoch: 7,
                    support_until: UnixTime(NOW.0 + 5 * 365 * 86_400),
                    advisories: vec![],
                    artifact: None,
                },
                NOW,
            )
            .unwrap();
    }
    json!({})
}

/// `cairn devices import`: the CSV streamed from its file, parsed, every certificate verified, the
/// registry written.
fn import(dir: &Path, fleet: &Path, n: u64) -> serde_json::Value {
    let registry = Registry::open(dir.join("home/registry")).unwrap();
    registry
        .trust(&std::fs::read(fleet.join("ca.der")).unwrap())
        .unwrap();
    let t = Instant::now();
    // Streamed from the file as `cairn devices import` does: parsed as it is read.
    let csv = std::fs::File::open(fleet.join("fleet.csv")).unwrap();
    let csv_bytes = csv.metadata().unwrap().len();
    let report = registry.import_from(csv, Format::Csv).unwrap();
    assert_eq!(report.trusted, n);
    json!({
        "parse_secs": report.parse_secs,
        "check_secs": report.check_secs,
        "write_secs": report.write_secs,
        "import_secs": t.elapsed().as_secs_f64(),
        "csv_bytes": csv_bytes,
    })
}

/// `cairn rollout plan`: eligibility, manifests, the plan signed in the HSM, the log append and
/// its checkpoint.
fn plan(dir: &Path, n: u64) -> serde_json::Value {
    let module = Module::from_env().unwrap();
    let appliance = Appliance::open(dir.join("home")).unwrap();
    let session = session(&appliance, &module, dir);
    let registry = Registry::open(dir.join("home/registry")).unwrap();
    // Profiling the step again on a kept work directory needs a campaign the log does not hold
    // yet (docs/scale.md, "Profiling a step").
    let spec = match std::env::var("CAIRN_SCALE_CAMPAIGN") {
        Ok(campaign) => PlanSpec::from_toml(&PLAN.replace(CAMPAIGN, &campaign)),
        Err(_) => PlanSpec::from_toml(PLAN),
    }
    .unwrap();
    let t = Instant::now();
    let plan = session
        .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
        .unwrap();
    let plan_secs = t.elapsed().as_secs_f64();
    assert_eq!(
        (plan.eligible, plan.rejected),
        (n, 0),
        "every synthetic device is eligible"
    );
    let state = json!({
        "decisions": [plan.decisions.start, plan.decisions.end],
        "eligible": plan.eligible,
        "rejected": plan.rejected,
        "stages": plan.stages.iter().map(|(_, d)| *d).collect::<Vec<u64>>(),
    });
    std::fs::write(dir.join("plan.json"), state.to_string()).unwrap();
    json!({ "plan_secs": plan_secs, "hsm_signatures": plan.hsm_signatures })
}

/// `cairn rollout approve … open-stage 1`: the approval the canary's gate needs (a support
/// step: not in the table, but measured, since it finds the plan by reading the campaign's index).
fn approve(dir: &Path) -> serde_json::Value {
    let module = Module::from_env().unwrap();
    let appliance = Appliance::open(dir.join("home")).unwrap();
    let session = session(&appliance, &module, dir);
    let open = session
        .approve(CAMPAIGN, 1, ApprovalAction::OpenStage, NOW)
        .unwrap();
    let mut state = plan_state(dir);
    state["open"] = json!(open.index);
    std::fs::write(dir.join("plan.json"), state.to_string()).unwrap();
    json!({ "index": open.index })
}

fn plan_state(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap()).unwrap()
}

/// The deliveries of every manifest (an inclusion proof and an envelope each, as the relay builds
/// them from its mirror), streamed by `Vault::each_delivery`, each envelope dropped once counted.
fn deliveries(dir: &Path) -> serde_json::Value {
    let appliance = Appliance::open(dir.join("home")).unwrap();
    let state = plan_state(dir);
    let (start, end) = (
        state["decisions"][0].as_u64().unwrap(),
        state["decisions"][1].as_u64().unwrap(),
    );
    // Every synthetic device is eligible (the plan step checks it): every decision is one of its
    // two manifests.
    let manifests: Vec<u64> = (start..end).collect();
    let (mut count, mut bytes) = (0u64, 0u64);
    appliance
        .vault()
        .each_delivery(&manifests, &mut |_, envelope| {
            count += 1;
            bytes += envelope.len() as u64;
        })
        .unwrap();
    assert_eq!(count, 2 * state["eligible"].as_u64().unwrap());
    json!({ "envelopes": count, "envelope_bytes": bytes })
}

/// `cairn bundle export`: the transfer bundles of the whole log, cut at its checkpoints into
/// bundles of at most `MAX_BUNDLE_ENTRIES` (`bundle-1.cbor`, `bundle-2.cbor`, … in import order),
/// written to files; and the relay's configuration naming the log and release keys (not timed).
fn bundle(dir: &Path) -> serde_json::Value {
    let appliance = Appliance::open(dir.join("home")).unwrap();
    let t = Instant::now();
    let vault = appliance.vault();
    let ranges = vault
        .bundle_ranges(0, cairn_verifier::transfer::MAX_BUNDLE_ENTRIES)
        .unwrap();
    let mut sizes = Vec::new();
    for (k, range) in ranges.iter().enumerate() {
        let bytes = vault
            .export_bundle_to(range.start, range.end)
            .unwrap()
            .to_cbor();
        let mut file = std::fs::File::create(dir.join(format!("bundle-{}.cbor", k + 1))).unwrap();
        file.write_all(&bytes).unwrap();
        file.sync_all().unwrap();
        sizes.push(bytes.len());
    }
    let secs = t.elapsed().as_secs_f64();
    let relay = dir.join("relay");
    std::fs::create_dir_all(&relay).unwrap();
    for (name, role) in [("log.pem", KeyRole::Log), ("release.pem", KeyRole::Release)] {
        let pem = appliance
            .certificate(role)
            .unwrap()
            .to_pem(der::pem::LineEnding::LF)
            .unwrap();
        std::fs::write(relay.join(name), pem).unwrap();
    }
    let token = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"scale operator"));
    std::fs::write(
        relay.join("relay.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
             [log]\norigin = \"{ORIGIN}\"\nkey = \"log.pem\"\nrelease_key = \"release.pem\"\n\
             [operators]\nscale = \"{token}\"\n"
        ),
    )
    .unwrap();
    json!({
        "export_secs": secs,
        "bundle_bytes": sizes.iter().sum::<usize>(),
        "bundles": ranges.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>(),
    })
}

/// The campaign's relay device-state log (every device delivered and installed, one in 33 failing
/// once; the relay-log builder the audit benchmark uses), brought back with `record_relay_state`
/// around a signed resume, as `cairn rollout record-state` does: what the pack then proves.
fn relay_log(dir: &Path) -> serde_json::Value {
    let module = Module::from_env().unwrap();
    let appliance = Appliance::open(dir.join("home")).unwrap();
    let session = session(&appliance, &module, dir);
    let state = plan_state(dir);
    let decisions: Vec<u64> = (state["decisions"][0].as_u64().unwrap()
        ..state["decisions"][1].as_u64().unwrap())
        .collect();
    let mut devices = Vec::new();
    for chunk in decisions.chunks(BATCH) {
        for (_, entry) in appliance.vault().entries_at(chunk).unwrap() {
            if let Ok(Statement::Manifest(m)) = Statement::decode(&entry)
                && m.purpose == Purpose::Update
            {
                devices.push(m.device_id.as_str().to_owned());
            }
        }
    }
    drop(decisions);
    let stages: Vec<u64> = serde_json::from_value(state["stages"].clone()).unwrap();
    let open = state["open"].as_u64().unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let public =
        PublicKey::from_sec1_uncompressed(key.verifying_key().to_sec1_point(false).as_bytes())
            .unwrap();
    let relay = Vault::create(dir.join("relay-state"), RELAY_ORIGIN).unwrap();
    let log = RelayLog {
        campaign: CAMPAIGN,
        release: RELEASE,
        start: UnixTime(NOW.0 + 100),
        stages: &stages,
        fails: &|i| i % 33 == 16,
        retry_after: 600,
    };
    let (entries, after_pause) = log.entries(&devices, [open, 0]);
    append(&relay, &key, &entries[..after_pause]);
    drop(entries);
    session
        .record_relay_state(&relay.export_bundle(0).unwrap(), public, NOW)
        .unwrap();
    let resume = session
        .approve(CAMPAIGN, 1, ApprovalAction::Resume, NOW)
        .unwrap();
    let (entries, _) = log.entries(&devices, [open, resume.index]);
    append(&relay, &key, &entries[after_pause..]);
    drop(entries);
    session
        .record_relay_state(&relay.export_bundle(0).unwrap(), public, NOW)
        .unwrap();
    json!({ "relay_entries": relay.size() })
}

fn append(vault: &Vault, key: &p256::ecdsa::SigningKey, entries: &[Vec<u8>]) {
    let public =
        PublicKey::from_sec1_uncompressed(key.verifying_key().to_sec1_point(false).as_bytes())
            .unwrap();
    let log_key = LogKey::new(RELAY_ORIGIN, RELAY_ORIGIN, public, &Software).unwrap();
    vault.append_batches(entries.chunks(BATCH), |_| {}).unwrap();
    vault.sign_checkpoint(&log_key, key).unwrap();
}

/// `cairn audit export`: the campaign's evidence pack, written to a file.
fn pack_export(dir: &Path) -> serde_json::Value {
    let appliance = Appliance::open(dir.join("home")).unwrap();
    let bytes = audit::export(&appliance, CAMPAIGN, NOW).unwrap();
    let mut file = std::fs::File::create(dir.join("campaign.pack")).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
    let root = der::Encode::to_der(&appliance.certificate(KeyRole::Root).unwrap()).unwrap();
    std::fs::write(dir.join("root.der"), root).unwrap();
    json!({ "pack_bytes": bytes.len() })
}

/// `cairn audit verify`: the pack read from its file and verified from the root certificate
/// alone, with no finding.
fn pack_verify(dir: &Path, n: u64) -> serde_json::Value {
    let root = std::fs::read(dir.join("root.der")).unwrap();
    let bytes = std::fs::read(dir.join("campaign.pack")).unwrap();
    let t = Instant::now();
    let verified = audit::verify(&bytes, &root);
    let verify_secs = t.elapsed().as_secs_f64();
    assert!(
        verified.findings.is_empty(),
        "{:#?}",
        &verified.findings[..verified.findings.len().min(20)]
    );
    assert_eq!(verified.plan.as_ref().unwrap().eligible, n);
    json!({ "verify_secs": verify_secs })
}
