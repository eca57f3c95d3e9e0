//! `cargo bench -p cairn-vault --bench log`: the log's throughput figures, with their ceilings
//! measured in the same run on the same machine.
//!
//! 1. Append: 256-byte entries (per-device manifests) in batches of 10,000, durable (WAL synced per
//!    batch), tiles and index included. Ceilings: SHA-256 alone over the same leaves (the leaf
//!    hashes, on one core and on every core), and a raw RocksDB `WriteBatch` of the same entry bytes
//!    with sync, into a database with the same options.
//! 2. Inclusion proofs at 10,000,000 entries: proofs/s on every core, and the latency of one proof
//!    (p50, p99), each proof verified against the signed checkpoint as the vault always does.
//!
//! Environment: `CAIRN_BENCH_APPEND` (entries for the append figure, default 2,000,000),
//! `CAIRN_BENCH_PROOF_LOG` (log size for proofs, default 10,000,000), `CAIRN_BENCH_PROOFS`
//! (proofs measured, default 400,000).

#![expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines,
    reason = "a benchmark report: rates and percentiles are floats"
)]

use std::time::{Duration, Instant};

use cairn_vault::Vault;
use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose};
use cairn_verifier::test_support::{public_key, test_key};
use cairn_verifier::types::{Id, UnixTime, Version};

const BATCH: usize = 10_000;
const ENTRY_LEN: usize = 256;
const ORIGIN: &str = "cairn.bench/log";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A 256-byte manifest for device `i`.
fn entry(i: u64) -> Vec<u8> {
    let device = format!("device-{i:0>57}");
    let campaign = format!(
        "campaign-2026-11-security-update-2.4.1-smart-controller-eval-{:03}",
        0
    );
    let mut hw_len = 40;
    loop {
        let hw = format!("rev-c-{}", "x".repeat(hw_len - 6));
        let bytes = Manifest {
            device_id: Id::new(&device).expect("id"),
            release_id: Id::new("controller-fw-2.4.1").expect("id"),
            release_digest: [7; 32],
            hardware_revision: Id::new(&hw).expect("id"),
            min_version: Version::new(2, 0, 0),
            max_version: Version::new(2, 4, 0),
            campaign: Id::new(&campaign[..64]).expect("id"),
            purpose: Purpose::Update,
            decided_at: UnixTime(1_795_000_000),
            campaign_sequence: 1,
        }
        .to_cbor();
        match bytes.len() {
            ENTRY_LEN => return bytes,
            n if n > ENTRY_LEN => hw_len -= n - ENTRY_LEN,
            n => hw_len += ENTRY_LEN - n,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let append_entries = usize::try_from(env("CAIRN_BENCH_APPEND", 2_000_000)).unwrap_or(2_000_000);
    let proof_log = env("CAIRN_BENCH_PROOF_LOG", 10_000_000);
    let proofs = usize::try_from(env("CAIRN_BENCH_PROOFS", 400_000)).unwrap_or(400_000);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    println!("cairn-vault bench: {threads} cores, batches of {BATCH} entries of {ENTRY_LEN} bytes");

    let batches: Vec<Vec<Vec<u8>>> = (0..append_entries / BATCH)
        .map(|b| (0..BATCH).map(|i| entry((b * BATCH + i) as u64)).collect())
        .collect();

    // Ceiling 1: SHA-256 over the same leaves.
    let mut one_core = Vec::new();
    let mut all_cores = Vec::new();
    for batch in &batches {
        let t = Instant::now();
        let hashes: Vec<_> = batch.iter().map(|e| leaf_hash(&Software, e)).collect();
        one_core.push(rate(BATCH, t.elapsed()));
        std::hint::black_box(hashes);
        let t = Instant::now();
        std::thread::scope(|s| {
            for chunk in batch.chunks(BATCH.div_ceil(threads)) {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|e| leaf_hash(&Software, e))
                        .collect::<Vec<_>>()
                });
            }
        });
        all_cores.push(rate(BATCH, t.elapsed()));
    }
    let sha_one = median(one_core);
    let sha_all = median(all_cores);

    // Ceiling 2: raw RocksDB WriteBatch of the same bytes, synced.
    let raw_dir = tempfile::tempdir().expect("tempdir");
    let raw = {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(128 << 20);
        opts.set_max_write_buffer_number(4);
        opts.set_max_background_jobs(2);
        let db = rocksdb::DB::open(&opts, raw_dir.path()).expect("open raw db");
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        let mut rates = Vec::new();
        let mut index = 0u64;
        for batch in &batches {
            let t = Instant::now();
            let mut wb = rocksdb::WriteBatch::default();
            for e in batch {
                wb.put(index.to_be_bytes(), e);
                index += 1;
            }
            db.write_opt(wb, &w).expect("raw write");
            rates.push(rate(BATCH, t.elapsed()));
        }
        median(rates)
    };
    drop(raw_dir);

    // The vault.
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::create(dir.path(), ORIGIN).expect("create");
    let mut rates = Vec::new();
    let started = Instant::now();
    for batch in &batches {
        let t = Instant::now();
        vault.append(batch).expect("append");
        rates.push(rate(BATCH, t.elapsed()));
    }
    let total = started.elapsed();
    let ours = median(rates);
    drop(vault);
    drop(dir);

    // The same batches through the pipelined bulk append (each batch still durable before its ack).
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::create(dir.path(), ORIGIN).expect("create");
    let started = Instant::now();
    let mut last = Instant::now();
    let mut acks = Vec::new();
    vault
        .append_batches(batches.iter(), |range| {
            acks.push(rate(
                usize::try_from(range.end - range.start).unwrap_or(0),
                last.elapsed(),
            ));
            last = Instant::now();
        })
        .expect("append_batches");
    let pipelined_total = started.elapsed();
    let pipelined = median(acks);
    drop(vault);
    drop(dir);
    let ceiling = sha_all.min(raw);
    println!();
    println!(
        "append ({append_entries} entries, median over {} batches):",
        batches.len()
    );
    println!(
        "  cairn-vault append, durable, tiles + index: {:>12.0} entries/s  (whole run {:.0}/s)",
        ours,
        rate(append_entries, total)
    );
    println!(
        "  ceiling: SHA-256 of the leaves, {threads} cores:   {sha_all:>12.0} entries/s  (one core {sha_one:.0}/s)"
    );
    println!("  ceiling: raw RocksDB WriteBatch, synced:     {raw:>12.0} entries/s");
    println!(
        "  ratio to the lower ceiling:                  {:>12.2}",
        ours / ceiling
    );
    println!(
        "  cairn-vault append_batches, pipelined:      {pipelined:>12.0} entries/s  (whole run {:.0}/s)",
        rate(append_entries, pipelined_total)
    );
    println!(
        "  ratio to the lower ceiling:                  {:>12.2}",
        pipelined / ceiling
    );
    drop(batches);

    // Inclusion proofs at `proof_log` entries.
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::create(dir.path(), ORIGIN).expect("create");
    let t = Instant::now();
    let mut next = 0u64;
    while next < proof_log {
        let n = (proof_log - next).min(BATCH as u64);
        let batch: Vec<Vec<u8>> = (next..next + n).map(entry).collect();
        vault.append(&batch).expect("append");
        next += n;
    }
    let sk = test_key(9);
    let key = LogKey::new(ORIGIN, ORIGIN, public_key(&sk), &Software).expect("key");
    vault.sign_checkpoint(&key, &sk).expect("checkpoint");
    println!();
    println!(
        "inclusion proofs in a log of {proof_log} entries (built in {:.1} s):",
        t.elapsed().as_secs_f64()
    );
    // Deterministic pseudo-random indices (xorshift), so runs are comparable.
    let indices: Vec<u64> = {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..proofs)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % proof_log
            })
            .collect()
    };
    // Warm the caches the way a serving process would be warm.
    for &i in indices.iter().take(proofs / 10) {
        vault.prove_inclusion(i, proof_log).expect("proof");
    }
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for chunk in indices.chunks(proofs.div_ceil(threads)) {
                let vault = &vault;
                s.spawn(move || {
                    for &i in chunk {
                        std::hint::black_box(vault.prove_inclusion(i, proof_log).expect("proof"));
                    }
                });
            }
        });
        runs.push(rate(proofs, t.elapsed()));
    }
    let mut latencies: Vec<f64> = indices
        .iter()
        .take(100_000)
        .map(|&i| {
            let t = Instant::now();
            std::hint::black_box(vault.prove_inclusion(i, proof_log).expect("proof"));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "  proofs/s on {threads} cores (median of 3 runs of {proofs}): {:.0}",
        median(runs)
    );
    println!(
        "  latency of one proof, one thread: p50 {:.1} µs, p99 {:.1} µs",
        pct(0.5),
        pct(0.99)
    );
}
