//! `tools/scale` (or `CAIRN_SCALE_RELAY=<relay import bench> cargo bench -p cairn-signer --bench
//! scale`): the whole offline path at fleet scale (issue 19), `CAIRN_SCALE_SIZES` devices
//! (default 10,000, 100,000, 1,000,000 and 3,000,000; comma-separated):
//!
//! registry import, plan, deliveries, bundle export, the relay's import of that bundle and its
//! first stage (in the relay's own benchmark executable: the signer never links the relay), the
//! evidence pack's export and its verification.
//!
//! Every step runs in its own process (this executable re-run with `CAIRN_SCALE_STEP`), so its
//! peak RSS (`VmHWM`) and bytes written (`/proc/self/io`) are its own; state passes between steps
//! through the work directory as between `cairn` commands. The registry import is set against
//! `openssl speed ecdsap256` verify/s times the cores, measured in the same run.
//!
//! The synthetic fleet is generated once per size (`testfleet::write_synthetic`) and cached in
//! `<temp>/cairn-scale-fleet-<n>-<now>`. Results are kept in `CAIRN_SCALE_OUT` (default
//! `<temp>/cairn-scale`) as `scale-results.json` (a run replaces the sizes it measured), with the
//! Markdown tables `scale-table.md` and the log-log plot `scale.svg` of every size measured.
//! `CAIRN_SCALE_KEEP=1` keeps each size's work directory (and prints its path), so that one step
//! can be run again on its own, e.g. under `perf record`.

#![expect(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::too_many_lines,
    reason = "a benchmark report: a failure aborts it, rates are floats, plot decades are small integers"
)]

#[expect(dead_code, reason = "the SoftHSM re-run is the other benchmarks'")]
mod common;
#[path = "scale/probe.rs"]
mod probe;
#[path = "../tests/common/relay_log.rs"]
mod relay_log;
#[path = "scale/report.rs"]
mod report;
#[path = "scale/steps.rs"]
mod steps;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use report::{Results, Run, Step};

const STEP: &str = "CAIRN_SCALE_STEP";
const DIR: &str = "CAIRN_SCALE_DIR";
const FLEET: &str = "CAIRN_SCALE_FLEET";
const DEVICES: &str = "CAIRN_SCALE_DEVICES";

fn main() {
    if let Ok(step) = std::env::var(STEP) {
        let var = |name| PathBuf::from(std::env::var_os(name).unwrap());
        let n = std::env::var(DEVICES).unwrap().parse().unwrap();
        steps::run(&step, &var(DIR), &var(FLEET), n);
        return;
    }
    let sizes: Vec<u64> = std::env::var("CAIRN_SCALE_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000,3000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("CAIRN_SCALE_SIZES: device counts"))
        .collect();
    let relay = PathBuf::from(std::env::var_os("CAIRN_SCALE_RELAY").expect(
        "CAIRN_SCALE_RELAY: the relay's import benchmark executable (tools/scale builds it and sets this)",
    ));
    let out = std::env::var_os("CAIRN_SCALE_OUT")
        .map_or_else(|| std::env::temp_dir().join("cairn-scale"), PathBuf::from);
    std::fs::create_dir_all(&out).unwrap();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let openssl_verify = common::openssl_speed().1;
    println!(
        "cairn scale benchmark: {sizes:?} devices, {cores} cores; openssl verify {openssl_verify:.0}/s on one core"
    );
    let path = out.join("scale-results.json");
    let mut results: Results = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for &n in &sizes {
        let run = size(n, &relay, cores, openssl_verify);
        results.insert(n, run);
        std::fs::write(&path, serde_json::to_vec_pretty(&results).unwrap()).unwrap();
        std::fs::write(out.join("scale-table.md"), report::table(&results)).unwrap();
        std::fs::write(out.join("scale.svg"), report::svg(&results)).unwrap();
    }
    println!("\n{}", report::table(&results));
    println!("(results, tables and plot in {})", out.display());
}

/// `openssl speed -multi <cores> ecdsap256` verify/s: every core verifying at once.
fn openssl_verify_all(cores: usize) -> f64 {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-seconds",
            "2",
            "-multi",
            &cores.to_string(),
            "ecdsap256",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("ecdsa (nistp256)"))
        .find_map(|l| {
            let nums: Vec<f64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            nums.last().copied()
        })
        .unwrap_or_else(|| panic!("unexpected openssl speed -multi output:\n{text}"))
}

/// Runs every step at `n` devices in a fresh work directory.
fn size(n: u64, relay: &Path, cores: usize, openssl_verify: f64) -> Run {
    println!("\n{n} devices");
    let fleet = std::env::temp_dir().join(format!("cairn-scale-fleet-{n}-{}", steps::NOW.0));
    let work = tempfile::tempdir().unwrap();
    // The module CAIRN_TEST_PKCS11 chooses, on a store of this run's own.
    let (_, token_env) = cairn_signer::testtoken::child_env(work.path()).unwrap();
    let me = std::env::current_exe().unwrap();
    let child = |exe: &Path, step: &str, env: &str| {
        let mut c = Command::new(exe);
        c.env(env, step)
            .env(DIR, work.path())
            .env(FLEET, &fleet)
            .env(DEVICES, n.to_string())
            .envs(token_env.iter().map(|(k, v)| (*k, v)));
        c
    };
    let mut run = Run {
        openssl_verify,
        cores,
        ..Run::default()
    };
    let mut steps: Vec<(&str, Command)> = Vec::new();
    if fleet.join("fleet.csv").exists() {
        println!("   (fleet from {})", fleet.display());
    } else {
        steps.push(("fleet", child(&me, "fleet", STEP)));
    }
    for step in ["setup", "import", "plan", "deliveries", "approve", "bundle"] {
        steps.push((step, child(&me, step, STEP)));
    }
    for step in ["import", "stage"] {
        let mut c = child(relay, step, "CAIRN_RELAY_SCALE_STEP");
        c.env("CAIRN_RELAY_SCALE_DIR", work.path());
        steps.push((
            if step == "import" {
                "relay-import"
            } else {
                "relay-stage"
            },
            c,
        ));
    }
    for step in ["relay-log", "pack-export", "pack-verify"] {
        steps.push((step, child(&me, step, STEP)));
    }
    let mut relay_failed = false;
    for (name, mut command) in steps {
        if relay_failed && name == "relay-stage" {
            continue;
        }
        // The import's reference: OpenSSL's verification on every core at once, just before and
        // just after the step, so that both see the same machine (a shared one drifts by 20 %
        // and more within a run; docs/scale.md).
        let around_import = name == "import";
        if around_import {
            run.openssl_verify_all.push(openssl_verify_all(cores));
        }
        let t = Instant::now();
        let output = command.stderr(Stdio::piped()).output().unwrap();
        if around_import {
            run.openssl_verify_all.push(openssl_verify_all(cores));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            // The relay's side failing is a finding (a bundle it refuses): recorded, and the
            // signer's steps go on; a signer step failing ends the benchmark.
            let why = err
                .lines()
                .skip_while(|l| !l.contains("panicked at"))
                .nth(1)
                .unwrap_or("no panic message")
                .to_owned();
            assert!(
                name.starts_with("relay-"),
                "step {name} failed:\n{text}\n{err}"
            );
            println!("   {name:<13} FAILED: {why}");
            run.failed.insert(name.to_owned(), why);
            relay_failed = true;
            continue;
        }
        let step: Step = text
            .lines()
            .find_map(|l| l.strip_prefix(probe::RESULT))
            .map_or_else(
                || panic!("step {name} printed no result:\n{text}"),
                |j| serde_json::from_str(j).unwrap(),
            );
        println!(
            "   {name:<13} {:>9.2} s  {:>8.0} MiB peak  {:>8.0} MiB written  ({:.2} s with its process) {}",
            step.secs,
            step.peak_bytes as f64 / 1_048_576.0,
            step.written as f64 / 1_048_576.0,
            t.elapsed().as_secs_f64(),
            step.extra
        );
        run.steps.insert(name.to_owned(), step);
    }
    if std::env::var_os("CAIRN_SCALE_KEEP").is_some() {
        // For profiling a step on its own afterwards (docs/scale.md, "Profiling a step").
        println!("   (work directory kept: {})", work.keep().display());
    }
    run
}
