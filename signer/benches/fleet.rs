//! `cargo bench -p cairn-signer --bench fleet`: the eligibility step at fleet scale (issue
//! "Release scope, device registry…", Measure), with its baseline measured in the same run:
//!
//! 1. Registry import of `CAIRN_BENCH_DEVICES` devices (default 1,000,000; CSV parsing, every
//!    identity certificate verified against the manufacturer CA, one synced write), in devices/s,
//!    against `openssl speed ecdsap256` verify/s times the cores.
//! 2. Plan time: eligibility of every device, manifests and rejections, the plan signed in the HSM,
//!    the log append with its checkpoint; then the deliveries (an inclusion proof and an envelope
//!    per manifest, as the relay builds them from its mirror: `Vault::deliveries`).
//! 3. HSM signatures per rollout.
//!
//! The token is a fresh store of the module `CAIRN_TEST_PKCS11` chooses (SoftHSM2 by default): the
//! benchmark re-runs itself with that environment (`cairn_signer::testtoken`).

#![expect(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    reason = "a benchmark report: a failure aborts it, rates are floats"
)]

mod common;

use std::path::Path;
use std::time::Instant;

use cairn_signer::appliance::Appliance;
use cairn_signer::ceremony::{self, CeremonyOptions, Custodian, TokenSource};
use cairn_signer::hsm::Module;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::rollout::PlanSpec;
use cairn_signer::session::ReleaseInput;
use cairn_signer::shares::{KdfParams, Passphrase, ShareFile};
use cairn_signer::testfleet;
use cairn_verifier::types::{UnixTime, Version};

const CHILD: &str = "CAIRN_FLEET_BENCH_DIR";
const NOW: UnixTime = UnixTime(1_795_651_200);

fn passphrase(name: &str) -> Passphrase {
    Passphrase::new(format!("benchmark passphrase of {name}"))
}

fn main() {
    common::in_token(CHILD, run);
}

/// The synthetic fleet of `n` devices: generated once (minutes at a million) and kept in the
/// system's temporary directory, since it is the same every time.
fn fleet(n: u64) -> (String, Vec<u8>) {
    let cache = std::env::temp_dir().join(format!("cairn-bench-fleet-{n}-{}", NOW.0));
    if let (Ok(csv), Ok(ca)) = (
        std::fs::read_to_string(cache.join("fleet.csv")),
        std::fs::read(cache.join("ca.der")),
    ) {
        println!("   (fleet of {n} from {})", cache.display());
        return (csv, ca);
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
    (fleet.csv, fleet.ca.der)
}

fn run(dir: &Path) {
    let n: u64 = std::env::var("CAIRN_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    println!("cairn fleet benchmark: {n} devices, {cores} cores");

    let (csv, ca) = fleet(n);

    // 1. Registry import against openssl verify × cores.
    let registry = Registry::open(dir.join("registry")).unwrap();
    registry.trust(&ca).unwrap();
    let t = Instant::now();
    let report = registry.import(csv.as_bytes(), Format::Csv).unwrap();
    let import = t.elapsed().as_secs_f64();
    assert_eq!(report.trusted, n);
    let openssl = common::openssl_speed().1 * cores as f64;
    let rate = n as f64 / import;
    println!();
    println!("1. registry import (parse, verify every certificate, one synced write)");
    println!("   cairn devices import          {rate:>10.0} devices/s ({import:.2} s)");
    println!(
        "   openssl verify x {cores} cores     {openssl:>10.0} /s   ratio {:.3} (goal >= 0.6)",
        rate / openssl
    );
    println!(
        "   (reading rows {:.2} s, checks and diffs on every core {:.2} s, synced write {:.2} s)",
        report.parse_secs, report.check_secs, report.write_secs
    );
    drop(csv);

    // 2. Plan time.
    let module = Module::from_env().unwrap();
    let names = ["alice", "bob"];
    ceremony::init(
        &module,
        &CeremonyOptions {
            home: dir.join("home"),
            source: TokenSource::Fresh,
            token: "bench".into(),
            origin: "bench.example/log".into(),
            organization: "Bench OEM".into(),
            threshold: 2,
            custodians: names
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
    let shares: Vec<_> = names
        .iter()
        .map(|c| {
            (
                ShareFile::read(&dir.join(format!("{c}.share"))).unwrap(),
                passphrase(c),
            )
        })
        .collect();
    let session = appliance.unlock(&module, &shares, NOW).unwrap();
    for (id, v) in [
        ("fw-2.4.0", Version::new(2, 4, 0)),
        ("fw-2.4.1", Version::new(2, 4, 1)),
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
    let spec = PlanSpec::from_toml(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/plan-2.4.1.toml"),
        )
        .unwrap()
        .replace("controller-fw-2.4.1", "fw-2.4.1")
        .replace("controller-fw-2.4.0", "fw-2.4.0"),
    )
    .unwrap();
    let t = Instant::now();
    let plan = session
        .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
        .unwrap();
    let planned = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let manifests: Vec<u64> = plan
        .decisions
        .clone()
        .filter(|&i| {
            matches!(
                cairn_verifier::statement::Statement::decode(&appliance.vault().entry(i).unwrap()),
                Ok(cairn_verifier::statement::Statement::Manifest(_))
            )
        })
        .collect();
    let built = appliance.vault().deliveries(&manifests).unwrap();
    let deliveries = t.elapsed().as_secs_f64();
    assert_eq!(built.len() as u64, plan.eligible * 2);
    println!();
    println!(
        "2. plan for {} eligible devices ({} decisions)",
        plan.eligible,
        plan.decisions.end - plan.decisions.start
    );
    println!("   eligibility + manifests + HSM + log append  {planned:>7.2} s");
    println!(
        "   deliveries ({} envelopes with proofs)     {deliveries:>7.2} s",
        built.len()
    );
    println!(
        "   total                                        {:>7.2} s (goal <= 10 s)",
        planned + deliveries
    );
    println!();
    println!(
        "3. HSM signatures per rollout: {} (the plan by the release key, the checkpoint by the log key), whatever the fleet size",
        plan.hsm_signatures
    );
}
