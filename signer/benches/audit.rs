//! `cargo bench -p cairn-signer --bench audit`: evidence-pack verification at campaign scale
//! (issue "Evidence for auditors", Measure), with its baseline measured in the same run.
//!
//! For the reference campaign (8,400 devices, 8,203 eligible) and a synthetic one of
//! `CAIRN_BENCH_DEVICES` devices (default 1,000,000, every one eligible), each on its own 3-of-5
//! ceremony: two releases signed, the fleet imported, the plan signed and logged, two gate
//! approvals, and the relay's device-state log (delivered and installed for every device, about
//! 3% failing once and retried; started, stage, approval, pause and resume events) brought back
//! with `record_relay_state`. Then:
//!
//! 1. Pack export (`audit::export`, one run): time, size, bytes per eligible device.
//! 2. Pack verification (`audit::verify` from the root certificate alone, after reading the file
//!    written to the temporary directory): medians of `CAIRN_BENCH_ROUNDS` rounds (default 3),
//!    every one with no finding.
//! 3. The goal: the 1,000,000-device pack verified in 10 s or less.
//! 4. The baseline: RFC 9162 leaf hashes of every entry of the pack on one core (the hashing
//!    floor any verification pays), and where verification spends the rest (the pack's decoding,
//!    leaf hashes on every core, the multi-leaf proofs, decoding every statement), each timed
//!    alone.
//!
//! The token is a fresh store of the module `CAIRN_TEST_PKCS11` chooses (SoftHSM2 by default): the
//! benchmark re-runs itself with that environment (`cairn_signer::testtoken`).

#![expect(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    reason = "a benchmark report: a failure aborts it, rates are floats"
)]

#[expect(dead_code, reason = "the openssl baseline is the other benchmarks'")]
mod common;
#[path = "../tests/common/relay_log.rs"]
mod relay_log;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use cairn_signer::appliance::Appliance;
use cairn_signer::audit::{self, Pack, Section, Summary};
use cairn_signer::ceremony::{self, CeremonyOptions, Custodian, TokenSource};
use cairn_signer::hsm::Module;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::rollout::PlanSpec;
use cairn_signer::session::ReleaseInput;
use cairn_signer::shares::{KdfParams, Passphrase, ShareFile};
use cairn_signer::testfleet;
use cairn_vault::Vault;
use cairn_vault::tree::multi_root;
use cairn_verifier::campaign::ApprovalAction;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::custody::KeyRole;
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{Purpose, Statement};
use cairn_verifier::types::{Hash, UnixTime, Version};
use relay_log::RelayLog;

const CHILD: &str = "CAIRN_AUDIT_BENCH_DIR";
const NOW: UnixTime = UnixTime(1_795_651_200);
const CUSTODIANS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const CAMPAIGN: &str = "campaign-2026-11-2.4.1";
const RELEASE: &str = "controller-fw-2.4.1";
const ROLLBACK: &str = "controller-fw-2.4.0";
const RELAY_ORIGIN: &str = "bench.example/log/relay";
/// Relay log entries per append.
const BATCH: usize = 100_000;
/// One device in `RETRY_EVERY` fails its first install and is retried (about 3%).
const RETRY_EVERY: usize = 33;
const GOAL_SECS: f64 = 10.0;

/// The reference plan, the file `cairn rollout plan --plan` reads (docs/eligibility.md).
const PLAN: &str = include_str!("../../docs/examples/plan-2.4.1.toml");

fn passphrase(name: &str) -> Passphrase {
    Passphrase::new(format!("benchmark passphrase of {name}"))
}

fn main() {
    common::in_token(CHILD, run);
}

/// A fleet to import: its CSV, the manufacturer CA and, for the reference fleet, its CRL.
struct FleetInput {
    csv: String,
    ca: Vec<u8>,
    crl: Option<Vec<u8>>,
}

/// The synthetic fleet of `n` devices: generated once (minutes at a million) and kept in the
/// system's temporary directory, since it is the same every time (the cache `fleet.rs` keeps).
fn synthetic(n: u64) -> FleetInput {
    let cache = std::env::temp_dir().join(format!("cairn-bench-fleet-{n}-{}", NOW.0));
    if let (Ok(csv), Ok(ca)) = (
        std::fs::read_to_string(cache.join("fleet.csv")),
        std::fs::read(cache.join("ca.der")),
    ) {
        println!("   (fleet of {n} from {})", cache.display());
        return FleetInput { csv, ca, crl: None };
    }
    let t = Instant::now();
    let fleet = testfleet::synthetic(n, NOW).unwrap();
    println!(
        "   (fleet generated in {:.1} s: {} MB of CSV)",
        t.elapsed().as_secs_f64(),
        fleet.csv.len() >> 20
    );
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("ca.der"), &fleet.ca.der).unwrap();
    std::fs::write(cache.join("fleet.csv"), &fleet.csv).unwrap();
    FleetInput {
        csv: fleet.csv,
        ca: fleet.ca.der,
        crl: None,
    }
}

/// What one campaign's pack measured.
struct Figures {
    label: String,
    eligible: u64,
    signer_entries: u64,
    relay_entries: u64,
    pack_bytes: u64,
    export_secs: f64,
    read_secs: f64,
    verify_secs: f64,
    floor_secs: f64,
    summary_secs: f64,
}

fn run(dir: &Path) {
    let n: u64 = std::env::var("CAIRN_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::var("CAIRN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    println!(
        "cairn audit benchmark: evidence packs of the reference campaign and of {n} devices, {cores} cores, medians of {rounds} rounds"
    );
    let module = Module::from_env().unwrap();

    let reference = testfleet::reference(NOW).unwrap();
    let small = campaign(
        &module,
        dir,
        "reference",
        FleetInput {
            csv: reference.csv,
            ca: reference.ca.der,
            crl: Some(reference.crl),
        },
        Some(testfleet::REFERENCE_ELIGIBLE),
        rounds,
    );
    println!();
    println!("synthetic campaign of {n} devices");
    let fleet = synthetic(n);
    let large = campaign(&module, dir, "synthetic", fleet, Some(n), rounds);

    println!();
    println!("report (medians of {rounds} rounds; {cores} cores)");
    let row = |what: &str, f: &dyn Fn(&Figures) -> String| {
        println!("   {what:<44} {:>16} {:>16}", f(&small), f(&large));
    };
    row("", &|f| f.label.clone());
    row("eligible devices", &|f| f.eligible.to_string());
    row("pack entries: signer log", &|f| {
        f.signer_entries.to_string()
    });
    row("pack entries: relay log", &|f| f.relay_entries.to_string());
    row("1. export (one run), s", &|f| {
        format!("{:.3}", f.export_secs)
    });
    row("   pack size, bytes", &|f| f.pack_bytes.to_string());
    row("   bytes per eligible device", &|f| {
        format!("{:.0}", f.pack_bytes as f64 / f.eligible as f64)
    });
    row("2. read the pack file, s", &|f| {
        format!("{:.3}", f.read_secs)
    });
    row("   verify (audit::verify, in memory), s", &|f| {
        format!("{:.3}", f.verify_secs)
    });
    row("   read + verify, s", &|f| {
        format!("{:.3}", f.read_secs + f.verify_secs)
    });
    row("   (Summary::of the verified pack, one run, s)", &|f| {
        format!("{:.3}", f.summary_secs)
    });
    row("4. leaf hashes of every entry, 1 core, s", &|f| {
        format!("{:.3}", f.floor_secs)
    });
    row("   verify / leaf-hash floor", &|f| {
        format!("{:.3}", f.verify_secs / f.floor_secs)
    });
    println!();
    let end_to_end = large.read_secs + large.verify_secs;
    println!(
        "3. goal: the {}-device pack verified in <= {GOAL_SECS:.0} s: verify {:.3} s (ratio {:.3}), read + verify {end_to_end:.3} s (ratio {:.3}){}",
        large.eligible,
        large.verify_secs,
        large.verify_secs / GOAL_SECS,
        end_to_end / GOAL_SECS,
        if n == 1_000_000 {
            ""
        } else {
            " (not the goal's size: set CAIRN_BENCH_DEVICES=1000000)"
        }
    );
}

/// Runs one campaign on its own ceremony (token and home `tag`) and measures its pack.
fn campaign(
    module: &Module,
    dir: &Path,
    tag: &str,
    fleet: FleetInput,
    expect_eligible: Option<u64>,
    rounds: usize,
) -> Figures {
    let home = dir.join(tag);
    let share = |c: &str| dir.join(format!("{tag}-{c}.share"));
    ceremony::init(
        module,
        &CeremonyOptions {
            home: home.clone(),
            source: TokenSource::Fresh,
            token: tag.into(),
            origin: format!("{tag}.bench.example/log"),
            organization: "Bench OEM".into(),
            threshold: 3,
            custodians: CUSTODIANS
                .iter()
                .map(|c| Custodian {
                    name: (*c).into(),
                    share_path: share(c),
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
    let appliance = Appliance::open(&home).unwrap();
    let shares: Vec<_> = ["alice", "carol", "erin"]
        .iter()
        .map(|c| (ShareFile::read(&share(c)).unwrap(), passphrase(c)))
        .collect();
    let session = appliance.unlock(module, &shares, NOW).unwrap();
    for (id, v) in [
        (ROLLBACK, Version::new(2, 4, 0)),
        (RELEASE, Version::new(2, 4, 1)),
    ] {
        let image = dir.join(format!("{tag}-{id}"));
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
                    advisories: vec!["CVE-2026-12345".into()],
                    artifact: None,
                },
                NOW,
            )
            .unwrap();
    }

    // The registry and the plan.
    let t = Instant::now();
    let registry = Registry::open(home.join("registry")).unwrap();
    registry.trust(&fleet.ca).unwrap();
    registry.import(fleet.csv.as_bytes(), Format::Csv).unwrap();
    if let Some(crl) = &fleet.crl {
        registry.import_crl(crl).unwrap();
    }
    drop(fleet);
    let spec = PlanSpec::from_toml(PLAN).unwrap();
    let plan = session
        .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
        .unwrap();
    if let Some(e) = expect_eligible {
        assert_eq!(plan.eligible, e, "eligible devices");
    }
    let open = session
        .approve(CAMPAIGN, 1, ApprovalAction::OpenStage, NOW)
        .unwrap();
    println!(
        "   {tag}: {} devices, {} eligible, {} rejected; registry and plan in {:.1} s",
        plan.devices,
        plan.eligible,
        plan.rejected,
        t.elapsed().as_secs_f64()
    );

    // The devices in the order of the plan's update manifests (the stages take them in order).
    let t = Instant::now();
    let decisions: Vec<u64> = plan.decisions.clone().collect();
    let mut devices: Vec<String> = Vec::with_capacity(usize::try_from(plan.eligible).unwrap());
    for chunk in decisions.chunks(BATCH) {
        for (_, entry) in appliance.vault().entries_at(chunk).unwrap() {
            if let Statement::Manifest(m) = Statement::decode(&entry).unwrap()
                && m.purpose == Purpose::Update
            {
                devices.push(m.device_id.as_str().to_owned());
            }
        }
    }
    drop(decisions);
    assert_eq!(devices.len() as u64, plan.eligible);
    let stages: Vec<u64> = plan.stages.iter().map(|(_, d)| *d).collect();

    // The relay's log, brought back into the appliance's mirror and recorded (kind 11).
    // Up to the pause, recorded; the resume signed after it; the rest.
    let relay_key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let public = PublicKey::from_sec1_uncompressed(
        relay_key.verifying_key().to_sec1_point(false).as_bytes(),
    )
    .unwrap();
    let relay = Vault::create(dir.join(format!("{tag}-relay")), RELAY_ORIGIN).unwrap();
    let (entries, after_pause) = relay_entries(&devices, &stages, [open.index, 0]);
    relay_append(&relay, &relay_key, &entries[..after_pause]);
    drop(entries);
    session
        .record_relay_state(&relay.export_bundle(0).unwrap(), public, NOW)
        .unwrap();
    let resume = session
        .approve(CAMPAIGN, 1, ApprovalAction::Resume, NOW)
        .unwrap();
    let (entries, _) = relay_entries(&devices, &stages, [open.index, resume.index]);
    relay_append(&relay, &relay_key, &entries[after_pause..]);
    drop(entries);
    drop(devices);
    let bundle = relay.export_bundle(0).unwrap();
    let recorded = session.record_relay_state(&bundle, public, NOW).unwrap();
    assert_eq!(recorded.relay_size, relay.size());
    drop(bundle);
    println!(
        "   {tag}: relay log of {} entries made, exported and recorded in {:.1} s",
        relay.size(),
        t.elapsed().as_secs_f64()
    );
    drop(relay);

    // 1. Export.
    let t = Instant::now();
    let bytes = audit::export(&appliance, CAMPAIGN, NOW).unwrap();
    let export_secs = t.elapsed().as_secs_f64();
    let pack_bytes = bytes.len() as u64;
    let path = dir.join(format!("{tag}.pack"));
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let root = der::Encode::to_der(&appliance.certificate(KeyRole::Root).unwrap()).unwrap();
    println!(
        "   {tag}: pack exported in {export_secs:.3} s: {pack_bytes} bytes ({:.0} per eligible device)",
        pack_bytes as f64 / plan.eligible as f64
    );

    // 2. Verification: read the file, verify from the root certificate alone.
    let mut read_times = Vec::with_capacity(rounds);
    let mut verify_times = Vec::with_capacity(rounds);
    let mut summary_secs = 0.0;
    for round in 0..rounds {
        let t = Instant::now();
        let bytes = std::fs::read(&path).unwrap();
        read_times.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let verified = audit::verify(&bytes, &root);
        verify_times.push(t.elapsed().as_secs_f64());
        assert!(
            verified.findings.is_empty(),
            "{:#?}",
            &verified.findings[..verified.findings.len().min(20)]
        );
        let facts = verified.plan.as_ref().unwrap();
        assert_eq!(
            (facts.eligible, facts.rejected),
            (plan.eligible, plan.rejected)
        );
        assert_eq!(verified.approvals.len(), 2);
        if round == 0 {
            let t = Instant::now();
            let summary = Summary::of(&verified);
            summary_secs = t.elapsed().as_secs_f64();
            assert!(summary.verified);
            assert_eq!(summary.final_states.get("installed"), Some(&plan.eligible));
        }
        println!(
            "   {tag}: round {}: read {:.3} s, verify {:.3} s, no finding",
            round + 1,
            read_times[round],
            verify_times[round]
        );
    }

    // 4. The baseline, and where verification spends its time.
    let bytes = std::fs::read(&path).unwrap();
    let t = Instant::now();
    let pack = Pack::decode(&bytes).unwrap();
    let decode_secs = t.elapsed().as_secs_f64();
    let entries: Vec<&[u8]> = [&pack.signer, &pack.relay]
        .into_iter()
        .flat_map(|s| {
            s.runs
                .iter()
                .flat_map(|r| r.entries.iter().map(|(_, e)| *e))
        })
        .collect();
    let entry_bytes: usize = entries.iter().map(|e| e.len()).sum();
    let mut floors = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let mut acc = 0u8;
        for e in &entries {
            acc ^= black_box(leaf_hash(&Software, e))[0];
        }
        black_box(acc);
        floors.push(t.elapsed().as_secs_f64());
    }
    let floor_secs = median(floors);
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let t = Instant::now();
    let hashes = leaf_hashes(&entries, cores);
    let parallel_secs = t.elapsed().as_secs_f64();
    let mut proof_secs = 0.0;
    let mut offset = 0;
    for section in [&pack.signer, &pack.relay] {
        let len = section.len();
        let t = Instant::now();
        assert!(multi_root_matches(
            section,
            &hashes[offset..offset + len],
            cores
        ));
        proof_secs += t.elapsed().as_secs_f64();
        offset += len;
    }
    drop(hashes);
    let t = Instant::now();
    let mut decoded = 0usize;
    for e in &entries {
        decoded += usize::from(Statement::decode(e).is_ok());
    }
    let statements_secs = t.elapsed().as_secs_f64();
    assert_eq!(decoded, entries.len());
    let verify_secs = median(verify_times);
    let parts = decode_secs + parallel_secs + proof_secs + statements_secs;
    println!(
        "   {tag}: {} entries, {} MB of entry bytes; leaf hashes on 1 core {floor_secs:.3} s ({:.0} MB/s)",
        entries.len(),
        entry_bytes >> 20,
        entry_bytes as f64 / floor_secs / 1e6
    );
    println!(
        "   {tag}: verify's parts, each timed alone: pack decoding {decode_secs:.3} s, leaf hashes on {cores} cores {parallel_secs:.3} s, multi-leaf proofs {proof_secs:.3} s, statement decoding {statements_secs:.3} s; the rest of verify (storing the decoded entries, the checks, the facts) {:.3} s",
        verify_secs - parts
    );
    Figures {
        label: tag.to_owned(),
        eligible: plan.eligible,
        signer_entries: pack.signer.len() as u64,
        relay_entries: pack.relay.len() as u64,
        pack_bytes,
        export_secs,
        read_secs: median(read_times),
        verify_secs,
        floor_secs,
        summary_secs,
    }
}

/// The relay's device-state log of the campaign (`stages`: cumulative device counts), one device
/// in [`RETRY_EVERY`] failing once and retried 10 minutes later; `approvals`: the signer-log
/// indices of the stage-1 opening and resume (`RelayLog::entries`).
fn relay_entries(devices: &[String], stages: &[u64], approvals: [u64; 2]) -> (Vec<Vec<u8>>, usize) {
    RelayLog {
        campaign: CAMPAIGN,
        release: RELEASE,
        start: UnixTime(NOW.0 + 100),
        stages,
        fails: &|i| i % RETRY_EVERY == RETRY_EVERY / 2,
        retry_after: 600,
    }
    .entries(devices, approvals)
}

/// Appends relay events in batches and signs a checkpoint over them with the relay key.
fn relay_append(vault: &Vault, key: &p256::ecdsa::SigningKey, entries: &[Vec<u8>]) {
    let public =
        PublicKey::from_sec1_uncompressed(key.verifying_key().to_sec1_point(false).as_bytes())
            .unwrap();
    let log_key = LogKey::new(RELAY_ORIGIN, RELAY_ORIGIN, public, &Software).unwrap();
    vault.append_batches(entries.chunks(BATCH), |_| {}).unwrap();
    vault.sign_checkpoint(&log_key, key).unwrap();
}

/// Leaf hashes of `entries` on `threads` threads, in order.
fn leaf_hashes(entries: &[&[u8]], threads: usize) -> Vec<Hash> {
    let chunk = entries.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|e| leaf_hash(&Software, e))
                        .collect::<Vec<Hash>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<Hash>>()
    })
}

/// Whether the section's entries (`hashes`) and proof give its checkpoint's root.
fn multi_root_matches(section: &Section<'_>, hashes: &[Hash], threads: usize) -> bool {
    let checkpoint = Checkpoint::parse(section.checkpoint).unwrap();
    let indices: Vec<u64> = section.indices().collect();
    multi_root(&indices, hashes, checkpoint.size.0, &section.proof, threads).unwrap()
        == checkpoint.root
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
