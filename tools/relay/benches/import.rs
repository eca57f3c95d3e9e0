//! `cargo bench -p cairn-relay --bench import`: what one transfer bundle of the reference fleet
//! costs (docs/relay.md, "One delivery path"): 8,203 eligible devices (an update and a rollback
//! manifest each, 16,406 manifests) and 197 rejected, under the reference plan's stages (canary
//! 50 behind an approval gate, wave-1 to 25 %, fleet to 100 %). Medians of `CAIRN_BENCH_ROUNDS`
//! (default 5), each on a fresh relay:
//!
//! 1. the signer's export of the bundle (`Vault::export_bundle`, as `cairn bundle export` runs it)
//!    and its size;
//! 2. the relay's import: decode, verify in full and write to the mirror (`TransferBundle::decode`,
//!    `Vault::import_bundle`, as `POST /api/v1/bundles` runs them);
//! 3. the first stage: the engine takes the plan up (signature, decisions digest, every manifest
//!    read), records `started` and every device `eligible`, opens the canary and builds its 50
//!    deliveries from the verified mirror, and commits the step to the relay log.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "benchmark code: a panic is the failure report; times are shown as floats"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cairn_relay::Relay;
use cairn_vault::TransferBundle;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("CAIRN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let eligible = 8_203;
    let signer = common::signer_log(
        &dir.path().join("signer"),
        eligible,
        197,
        &[
            ("canary", 50, 3600, 980, 20, true),
            ("wave-1", eligible / 4, 7200, 970, 30, false),
            ("fleet", eligible, 0, 950, 50, false),
        ],
        common::Policy::default(),
    );
    let (mut export, mut import, mut first) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    for round in 0..rounds {
        let started = Instant::now();
        let bytes = signer.vault.export_bundle(0).unwrap().to_cbor();
        export.push(started.elapsed().as_secs_f64());
        size = bytes.len();

        let at = dir.path().join(format!("relay-{round}"));
        std::fs::create_dir_all(&at).unwrap();
        let relay = Relay::open(&common::config(&at, "")).unwrap();
        let started = Instant::now();
        let bundle = TransferBundle::decode(&bytes).unwrap();
        relay
            .vault()
            .import_bundle(&bundle, &common::log_key())
            .unwrap();
        import.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut engine = relay.engine();
        engine.on_mirror(relay.vault(), 1_000).unwrap();
        engine.commit(relay.vault(), Duration::ZERO, false).unwrap();
        first.push(started.elapsed().as_secs_f64());
        assert_eq!(engine.queued(), 50, "the canary's deliveries are queued");
    }
    println!(
        "reference fleet ({eligible} eligible, 197 rejected), medians of {rounds} runs:\n  \
         bundle {size} bytes\n  \
         signer export   {:.3} s  runs {export:.3?}\n  \
         relay import    {:.3} s  runs {import:.3?}\n  \
         first stage     {:.3} s  runs {first:.3?}",
        median(export.clone()),
        median(import.clone()),
        median(first.clone()),
    );
}
