//! `cargo bench -p cairn-witness --bench cosign`: witness cosignatures per second (issue 18,
//! "Measure"; docs/witness.md §7).
//!
//! One witness, one log, `CAIRN_BENCH_COSIGNATURES` checkpoints (default 1,000), each one entry
//! larger than the last and submitted with the consistency proof from the previous one, as a log
//! that checkpoints after every ceremony would submit them. Each cosignature is the whole
//! production path of `Witness::add_checkpoint`: the body parsed, the log's ECDSA P-256 signature
//! verified, the old size compared under the lock, the consistency proof verified, the checkpoint
//! written, `fsync`ed, renamed and the directory `fsync`ed, then the Ed25519 cosignature. Requests
//! are built (and the log's checkpoints signed) before the clock starts.
//!
//! The state directory is on the disk the witness would use: `CAIRN_BENCH_DIR`, or a temporary
//! directory next to the build's target directory (not /tmp, which may be a RAM disk). For the
//! split of the cost, the same run also times the parts alone: the durable write (`Store::put`),
//! the Ed25519 signature, the P-256 verification; and the whole path with the state on
//! `/dev/shm` (a RAM disk: `fsync` costs nothing there), when it exists.

#![expect(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "a benchmark report: a failure aborts it, rates are floats"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_verifier::crypto::Software;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::test_support::ORIGIN;
use cairn_witness::Store;
use common::{History, log_key, witness};

fn main() {
    let n: usize = std::env::var("CAIRN_BENCH_COSIGNATURES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let base = bench_dir();
    println!(
        "cairn-witness: {n} cosignatures, one log, state in {}",
        base.display()
    );

    let history = History::new("bench", n + 1);
    let started = Instant::now();
    // Sizes 1..=n+1, each request from the previous size (the first from 0: no proof).
    let requests: Vec<String> = (0..=n).map(|i| history.request(i, i + 1)).collect();
    println!(
        "  {} requests built in {:.1} s (not timed)",
        requests.len(),
        started.elapsed().as_secs_f64()
    );

    let disk = run(&base.join("disk"), &requests);
    report("the whole add-checkpoint, state on disk", &disk);
    if Path::new("/dev/shm").is_dir() {
        let shm = tempfile::Builder::new()
            .prefix("cairn-witness-bench-")
            .tempdir_in("/dev/shm")
            .unwrap();
        let ram = run(shm.path(), &requests);
        report("the same, state on /dev/shm (fsync free)", &ram);
    }

    // The parts alone.
    let store = Store::open(&base.join("put")).unwrap();
    let notes: Vec<String> = (1..=n + 1).map(|s| history.checkpoint(s)).collect();
    let puts = time_each(&notes, |note| store.put(ORIGIN, note).unwrap());
    report("Store::put alone (write, fsync, rename, fsync dir)", &puts);
    let w = witness(&base.join("sign"));
    let texts: Vec<&str> = notes
        .iter()
        .map(|note| Checkpoint::parse(note.as_bytes()).unwrap().text)
        .collect();
    let signs = time_each(&texts, |text| {
        black_box(w.secret().cosign(text, 1_795_000_000));
    });
    report("Ed25519 cosignature alone (ed25519-dalek)", &signs);
    let key = log_key();
    let verifies = time_each(&notes, |note| {
        let cp = Checkpoint::parse(note.as_bytes()).unwrap();
        cp.verify(&key, &Software).unwrap();
    });
    report("the log's P-256 signature verified alone", &verifies);
    let _ = std::fs::remove_dir_all(&base);
}

/// A fresh witness on `dir`, every request submitted in order; the latency of each.
fn run(dir: &Path, requests: &[String]) -> Vec<Duration> {
    let w = witness(dir);
    let mut now = 1_795_000_000;
    time_each(requests, |body| {
        now += 1;
        w.add_checkpoint(body.as_bytes(), now).unwrap();
    })
}

fn time_each<T>(items: &[T], mut f: impl FnMut(&T)) -> Vec<Duration> {
    items
        .iter()
        .map(|item| {
            let t = Instant::now();
            f(item);
            t.elapsed()
        })
        .collect()
}

fn report(what: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let total: Duration = times.iter().sum();
    let at = |percent: usize| sorted[(sorted.len() - 1) * percent / 100];
    println!(
        "  {what}: {:.0}/s ({} in {:.2} s); median {:.3} ms, p99 {:.3} ms",
        times.len() as f64 / total.as_secs_f64(),
        times.len(),
        total.as_secs_f64(),
        at(50).as_secs_f64() * 1e3,
        at(99).as_secs_f64() * 1e3,
    );
}

/// `CAIRN_BENCH_DIR`, or a new directory under the target directory (on disk).
fn bench_dir() -> PathBuf {
    let parent = std::env::var_os("CAIRN_BENCH_DIR").map_or_else(
        || {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
                .unwrap_or_else(std::env::temp_dir)
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&parent).unwrap();
    tempfile::Builder::new()
        .prefix("cairn-witness-bench-")
        .tempdir_in(parent)
        .unwrap()
        .keep()
}
