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
//!
//! With `CAIRN_RELAY_SCALE_STEP` (`import` or `stage`) and `CAIRN_RELAY_SCALE_DIR` set, it is
//! instead one step of the signer's scale benchmark (`tools/scale`, signer/benches/scale.rs), run
//! in its own process: the relay configured by `<dir>/relay/relay.toml` imports `<dir>/bundle-1.cbor`,
//! `bundle-2.cbor`, … in order (decode, verify, write to the mirror), or takes up its mirror and prepares the first stage.
//! The signer never links the relay, so the relay's side of that path runs here.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "benchmark code: a panic is the failure report; times are shown as floats"
)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../../signer/benches/scale/probe.rs"]
mod probe;

use std::time::{Duration, Instant};

use cairn_relay::Relay;
use cairn_vault::TransferBundle;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One relay step of the signer's scale benchmark; prints its `probe` result line.
fn scale_step(step: &str, dir: &std::path::Path) {
    let config = cairn_relay::Config::load(&dir.join("relay/relay.toml")).unwrap();
    let started = Instant::now();
    let relay = Relay::open(&config).unwrap();
    let extra = match step {
        "import" => {
            let key = cairn_verifier::note::LogKey::new(
                &config.log.origin,
                &config.log.origin,
                cairn_relay::read_key(&config.log.key).unwrap(),
                &cairn_verifier::crypto::Software,
            )
            .unwrap();
            // The bundles in order (`bundle-1.cbor`, `bundle-2.cbor`, …), each decoded, verified
            // against the mirror's last checkpoint and written before the next is read.
            let (mut size, mut manifests, mut bundles) = (0, 0, 0);
            while let Ok(bytes) = std::fs::read(dir.join(format!("bundle-{}.cbor", bundles + 1))) {
                let bundle = TransferBundle::decode(&bytes).unwrap();
                drop(bytes);
                let report = relay.vault().import_bundle(&bundle, &key).unwrap();
                size = report.size;
                manifests += report.manifests;
                bundles += 1;
            }
            assert!(bundles > 0, "no bundle-1.cbor in {}", dir.display());
            // Published as `POST /api/v1/bundles` publishes them (`Relay::import`); before the
            // fourth session's run F, the next step's `Relay::open` did it and was charged for it.
            let tiles = relay
                .vault()
                .export(&config.data_dir.join("tiles"), &mut |_, _| {})
                .unwrap();
            serde_json::json!({
                "size": size, "manifests": manifests, "bundles": bundles, "tiles": tiles.tiles
            })
        }
        "stage" => {
            let mut engine = relay.engine();
            engine
                .on_mirror(relay.vault(), cairn_relay::engine::now())
                .unwrap();
            engine.commit(relay.vault(), Duration::ZERO, false).unwrap();
            assert_eq!(engine.queued(), 50, "the canary's deliveries are queued");
            serde_json::json!({ "queued": engine.queued() })
        }
        other => panic!("unknown relay step {other}"),
    };
    probe::report(started.elapsed().as_secs_f64(), &extra);
}

fn main() {
    if let (Some(step), Some(dir)) = (
        std::env::var_os("CAIRN_RELAY_SCALE_STEP"),
        std::env::var_os("CAIRN_RELAY_SCALE_DIR"),
    ) {
        scale_step(&step.to_string_lossy(), std::path::Path::new(&dir));
        return;
    }
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
