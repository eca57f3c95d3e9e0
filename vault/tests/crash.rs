//! Crash safety: a writer killed with SIGKILL at any point loses nothing it acknowledged, never
//! leaves half a batch, and never leaves a checkpoint that commits to more than is durable.
//!
//! The writer is a separate process: this test binary re-executed with `CAIRN_CRASH_DIR` set, which
//! turns [`crash_writer_child`] into an endless writer. It appends batches of 1 to 2000 entries
//! whose bytes are a pure function of their index, prints `append <start> <end>` before each
//! `append` and `ack <start> <end>` after it returned, and every few batches prints `sign <size>`,
//! signs a checkpoint and prints `checkpoint <size>` after `sign_checkpoint` returned. The parent
//! kills it after a random delay (while it starts and replays the WAL, in an append, in a checkpoint
//! signature, during RocksDB's flushes and compactions), reopens the log and checks:
//!
//! - `open` succeeds and the size is the last acknowledged end, or the end of the batch that was in
//!   flight (a batch is atomic: all of it or none);
//! - every entry, acknowledged in this round or any earlier one, has exactly its recomputed bytes;
//! - every acknowledged checkpoint is stored, byte for byte as first seen, verifies with the log key,
//!   proves inclusion of an entry and consistency with the previous acknowledged checkpoint;
//! - no other checkpoint is stored except the one being signed when the writer died, and none is
//!   beyond the durable size;
//! - `fsck` passes.
//!
//! The check is incremental, so that thousands of rounds (`tools/soak crash`) do not slow down as
//! the log grows: each round checks the entries and checkpoints that are new since the last round
//! in full, re-reads a random sample of 64 older entries and 8 older checkpoints, and every
//! `CAIRN_CRASH_FULL_EVERY` rounds (default 50) and in the last round re-reads every entry and
//! every checkpoint and runs `fsck`.
//!
//! The parent checks a copy of the directory; the next writer continues on the directory itself, so
//! it recovers the crashed state (and may be killed while it does), and later rounds recover a
//! log that was recovered, possibly halfway, before.
//! The seed is printed; `CAIRN_CRASH_SEED=<seed>` reproduces a run, `CAIRN_CRASH_ROUNDS` changes
//! the number of rounds.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a panic is a failed test"
)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_vault::Vault;
use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::types::Hash;
use common::{ORIGIN, log_key, manifest, release_entry};

/// Set in the child: the log directory. Its absence makes [`crash_writer_child`] a no-op.
const CHILD_DIR: &str = "CAIRN_CRASH_DIR";
/// The child's random seed (batch sizes, checkpoint cadence).
const CHILD_SEED: &str = "CAIRN_CRASH_CHILD_SEED";
/// Overrides the parent's seed.
const SEED: &str = "CAIRN_CRASH_SEED";
/// Overrides the number of rounds.
const ROUNDS: &str = "CAIRN_CRASH_ROUNDS";
const DEFAULT_ROUNDS: u32 = 48;
/// Overrides how often (in rounds) the whole log is re-checked and `fsck`ed.
const FULL_EVERY: &str = "CAIRN_CRASH_FULL_EVERY";
const DEFAULT_FULL_EVERY: u32 = 50;
/// Older entries re-read in a round that is not a full check.
const SAMPLE_ENTRIES: u64 = 64;
/// Older checkpoints re-read in a round that is not a full check.
const SAMPLE_CHECKPOINTS: usize = 8;
/// Largest batch.
const MAX_BATCH: u64 = 2000;
/// Marks the child's protocol lines (libtest writes its own lines to the same stdout).
const MARK: &str = "cairn-crash:";

/// xorshift64*: tiny, seeded, good enough to pick sizes and delays.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams and 0 is not stuck
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Roughly log-uniform in `1..=max`: as many batches of 1..10 as of 100..1000.
    fn log_uniform(&mut self, max: u64) -> u64 {
        let bits = 64 - max.leading_zeros();
        let top = 1u64 << (1 + self.below(u64::from(bits)));
        (1 + self.below(top)).min(max)
    }
}

/// Entry `i` of the log: a pure function of `i`, so the parent can recompute what was appended.
fn entry(i: u64) -> Vec<u8> {
    static RELEASE: OnceLock<Vec<u8>> = OnceLock::new();
    if i == 0 {
        return RELEASE.get_or_init(release_entry).clone();
    }
    manifest(i, &format!("campaign-{}", i / 3000), 1_800_000_000 + i / 64)
}

/// The writer. Without `CAIRN_CRASH_DIR` (a normal test run) it returns at once.
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let mut rng = Rng::new(seed);
    let (sk, key) = log_key();
    let mut out = std::io::stdout().lock();
    // A write error means the parent is gone: stop.
    let mut say = |line: String| {
        if writeln!(out, "\n{MARK} {line}")
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(3);
        }
    };
    let vault = Vault::open(&dir).unwrap();
    say(format!("open {}", vault.size()));
    loop {
        let start = vault.size();
        let n = batch_size(&mut rng);
        let batch: Vec<Vec<u8>> = (start..start + n).map(entry).collect();
        say(format!("append {start} {}", start + n));
        let range = vault.append(&batch).unwrap();
        say(format!("ack {} {}", range.start, range.end));
        if rng.below(8) == 0 {
            say(format!("sign {}", vault.size()));
            let note = vault.sign_checkpoint(&key, &sk).unwrap();
            let size = Checkpoint::parse(note.as_bytes()).unwrap().size.0;
            say(format!("checkpoint {size}"));
        }
    }
}

/// One line of the writer's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Open(u64),
    Append(u64, u64),
    Ack(u64, u64),
    Sign(u64),
    Checkpoint(u64),
}

fn parse(line: &str) -> Option<Event> {
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> u64 { words[i].parse().unwrap() };
    Some(match words[0] {
        "open" => Event::Open(num(1)),
        "append" => Event::Append(num(1), num(2)),
        "ack" => Event::Ack(num(1), num(2)),
        "sign" => Event::Sign(num(1)),
        "checkpoint" => Event::Checkpoint(num(1)),
        other => panic!("unknown writer line {other:?}"),
    })
}

/// When to kill the writer.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// This long after spawning it: in process start-up, RocksDB's WAL replay and recovery flush.
    AfterSpawn(Duration),
    /// This long after RocksDB's info log shows the WAL replay started (or 300 ms after spawning).
    InRecovery(Duration),
    /// This long after the info log shows a compaction running (or 300 ms after spawning; the
    /// open triggers compactions about every fourth round, when enough level-0 files have built up).
    InCompaction(Duration),
    /// This long after its `n`-th acknowledged batch.
    AfterAcks(usize, Duration),
}

fn plan(rng: &mut Rng) -> Plan {
    let ms = Duration::from_millis;
    let us = Duration::from_micros;
    match rng.below(8) {
        // start-up takes a few ms, `Vault::open` (WAL replay, recovery flush) tens of ms
        0 => Plan::AfterSpawn(ms(rng.below(150))),
        1 => Plan::InRecovery(us(rng.below(3000))),
        2 | 3 => Plan::InCompaction(us(rng.below(8000))),
        // early, while what the open started runs
        4 => Plan::AfterAcks(
            1 + usize::try_from(rng.below(3)).unwrap(),
            us(rng.below(30_000)),
        ),
        _ => {
            let acks = 1 + usize::try_from(rng.below(200)).unwrap();
            let delay = match rng.below(10) {
                0..=2 => Duration::ZERO,
                3..=5 => us(rng.below(5000)),
                6..=8 => ms(rng.below(40)),
                _ => ms(40 + rng.below(300)),
            };
            Plan::AfterAcks(acks, delay)
        }
    }
}

/// A batch size in `1..=MAX_BATCH`, mostly small: thousands of appends (and as many points to be
/// killed at) while the log stays small enough to be checked in full after every kill.
fn batch_size(rng: &mut Rng) -> u64 {
    if rng.below(32) == 0 {
        rng.log_uniform(MAX_BATCH)
    } else {
        rng.log_uniform(32)
    }
}

/// What the parent knows: the log as acknowledged so far.
#[derive(Default)]
struct Known {
    /// Leaf hashes of the recomputed entries (indices below `hashes.len()` have been checked).
    hashes: Vec<Hash>,
    /// End of the last acknowledged batch (after a check: the recovered size, which includes the
    /// batch that was in flight if it became durable).
    acked_end: u64,
    /// Acknowledged checkpoints, with their note as first read back.
    checkpoints: BTreeMap<u64, Option<String>>,
    /// Size of the log after the last check.
    size: u64,
    /// Full checks (every entry, every checkpoint, `fsck`) run.
    full_checks: u32,
}

/// Where the kills landed, as the writer's side sees it.
#[derive(Debug, Default)]
struct Kills {
    /// RocksDB was replaying the WAL (or flushing) when the writer died.
    in_recovery_or_flush: u32,
    /// RocksDB was compacting when the writer died.
    in_compaction: u32,
    /// Time spent running writers.
    time: Duration,
}

/// What the checks saw.
#[derive(Debug, Default)]
struct Checks {
    acked_appends: u64,
    acked_checkpoints: u64,
    kill_before_open: u32,
    kill_in_append_durable: u32,
    kill_in_append_lost: u32,
    kill_in_sign_stored: u32,
    kill_in_sign_lost: u32,
    kill_between: u32,
    /// Time spent checking (in parallel with the next writer).
    time: Duration,
}

/// One killed writer, handed to the checker.
struct Round {
    number: u32,
    plan: Plan,
    events: Vec<Event>,
    /// The directory as the writer left it.
    copy: tempfile::TempDir,
    /// Re-check everything and run `fsck` (otherwise: what is new, and a sample).
    full: bool,
}

#[test]
fn acknowledged_entries_and_checkpoints_survive_sigkill() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let seed = std::env::var(SEED).map_or_else(
        |_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (now.as_secs() << 30) ^ u64::from(now.subsec_nanos())
        },
        |s| s.parse().unwrap(),
    );
    let rounds: u32 = std::env::var(ROUNDS).map_or(DEFAULT_ROUNDS, |s| s.parse().unwrap());
    let full_every: u32 = std::env::var(FULL_EVERY)
        .map_or(DEFAULT_FULL_EVERY, |s| s.parse().unwrap())
        .max(1);
    println!("crash test seed {seed}, {rounds} rounds (reproduce with {SEED}={seed})");
    let mut rng = Rng::new(seed);
    let began = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    drop(Vault::create(dir.path(), ORIGIN).unwrap());
    // Each round is checked on a copy, in order, by a checker thread, while the next writer runs.
    let (to_checker, from_writers) = mpsc::sync_channel::<Round>(1);
    let checker = std::thread::spawn(move || {
        let mut known = Known::default();
        let mut checks = Checks::default();
        for round in from_writers {
            let t = Instant::now();
            check_round(&round, &mut known, &mut checks);
            checks.time += t.elapsed();
        }
        (known, checks)
    });
    let mut kills = Kills::default();
    for round in 0..rounds {
        let plan = plan(&mut rng);
        let t = Instant::now();
        let events = run_writer(dir.path(), rng.next(), plan, round, &mut kills);
        kills.time += t.elapsed();
        let copy = snapshot(dir.path());
        let round = Round {
            number: round,
            plan,
            events,
            copy,
            full: round % full_every == full_every - 1 || round + 1 == rounds,
        };
        if to_checker.send(round).is_err() {
            break; // the checker failed: its panic is reported below
        }
    }
    drop(to_checker);
    let (known, checks) = checker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    println!(
        "crash test: {rounds} rounds, {checks:?}, {kills:?}; log size {}, {} full checks; {:.1} s",
        known.size,
        known.full_checks,
        began.elapsed().as_secs_f64()
    );
    assert!(checks.acked_appends > 0 && checks.acked_checkpoints > 0);
}

/// Runs one writer on `dir`, kills it as planned, and returns every line it printed.
fn run_writer(dir: &Path, seed: u64, plan: Plan, round: u32, kills: &mut Kills) -> Vec<Event> {
    // RocksDB starts a new info log (a new `LOG` file) when it opens: remember the old one.
    let old_log = log_inode(dir);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_writer_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Some(event) = parse(&line.unwrap()) else {
                continue;
            };
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    let mut events = Vec::new();
    match plan {
        Plan::AfterSpawn(delay) => std::thread::sleep(delay),
        Plan::InRecovery(delay) | Plan::InCompaction(delay) => {
            let deadline = Instant::now() + Duration::from_millis(300);
            while Instant::now() < deadline {
                let (recovering, compacting) = rocksdb_busy(dir, old_log);
                if match plan {
                    Plan::InRecovery(_) => recovering,
                    _ => compacting,
                } {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(delay);
        }
        Plan::AfterAcks(acks, delay) => {
            let mut acks_seen = 0;
            while acks_seen < acks {
                let event = rx
                    .recv_timeout(Duration::from_secs(60))
                    .unwrap_or_else(|e| {
                        let exit = child.try_wait();
                        panic!("round {round}: the writer stopped ({e}; {exit:?}) after {events:?}")
                    });
                acks_seen += usize::from(matches!(event, Event::Ack(..)));
                events.push(event);
            }
            std::thread::sleep(delay);
        }
    }
    child.kill().unwrap(); // SIGKILL
    let exit = child.wait().unwrap();
    assert_eq!(
        exit.signal(),
        Some(9),
        "round {round}: the writer died on its own: {exit:?}"
    );
    reader.join().unwrap();
    events.extend(rx.try_iter());
    let (flushing, compacting) = rocksdb_busy(dir, old_log);
    kills.in_recovery_or_flush += u32::from(flushing);
    kills.in_compaction += u32::from(compacting);
    events
}

/// Whether this writer's RocksDB info log shows a WAL recovery or memtable flush, or a compaction,
/// that started and had not finished (as far as the log reached the file before the kill: this is
/// for the summary, not a check).
fn rocksdb_busy(dir: &Path, old_log: Option<u64>) -> (bool, bool) {
    if log_inode(dir) == old_log {
        return (false, false); // not yet (or never) started by this writer
    }
    let log = std::fs::read_to_string(dir.join("LOG")).unwrap_or_default();
    let count = |event: &str| log.matches(&format!("\"event\": \"{event}\"")).count();
    (
        count("recovery_started") > count("recovery_finished")
            || count("flush_started") > count("flush_finished"),
        count("compaction_started") > count("compaction_finished"),
    )
}

fn log_inode(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir.join("LOG")).ok().map(|m| m.ino())
}

/// A copy of the directory as the killed writer left it (SST files are immutable: hard links).
fn snapshot(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(dir).unwrap() {
        let file = file.unwrap();
        let (from, to) = (file.path(), copy.path().join(file.file_name()));
        if !file.file_type().unwrap().is_file() {
            continue;
        }
        if from.extension().is_none_or(|e| e != "sst") || std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    copy
}

/// Reopens the log after a kill and checks it against what the writer acknowledged.
#[expect(clippy::too_many_lines, reason = "one check after another")]
fn check_round(round: &Round, known: &mut Known, stats: &mut Checks) {
    let Round {
        number: round,
        plan,
        ref events,
        ref copy,
        full,
    } = *round;
    let mut sample = durable_sample(round);
    let (_, key) = log_key();
    let ctx = format!("round {round} ({plan:?}, last lines {:?})", {
        let tail = events.len().saturating_sub(4);
        &events[tail..]
    });

    // What this writer acknowledged, and what it was doing when it died.
    let mut in_flight_append = None;
    let mut in_flight_sign = None;
    let mut new_checkpoints = Vec::new();
    for event in events {
        match *event {
            Event::Open(size) => assert_eq!(size, known.size, "{ctx}: the writer opened"),
            Event::Append(start, end) => {
                assert_eq!(start, known.acked_end, "{ctx}");
                in_flight_append = Some(end);
            }
            Event::Ack(start, end) => {
                assert_eq!(
                    (start, Some(end)),
                    (known.acked_end, in_flight_append),
                    "{ctx}"
                );
                known.acked_end = end;
                in_flight_append = None;
                stats.acked_appends += 1;
            }
            Event::Sign(size) => {
                assert_eq!(size, known.acked_end, "{ctx}");
                in_flight_sign = Some(size);
            }
            Event::Checkpoint(size) => {
                assert_eq!(Some(size), in_flight_sign, "{ctx}");
                in_flight_sign = None;
                known.checkpoints.insert(size, None);
                new_checkpoints.push(size);
                stats.acked_checkpoints += 1;
            }
        }
    }

    // Recover and check the copy: the next writer recovers the crashed directory itself.
    let vault =
        Vault::open(copy.path()).unwrap_or_else(|e| panic!("{ctx}: open after SIGKILL: {e}"));
    let size = vault.size();

    // The size: everything acknowledged, plus all or nothing of the batch in flight.
    assert!(
        size == known.acked_end || Some(size) == in_flight_append,
        "{ctx}: size {size}, acknowledged up to {}, in flight up to {in_flight_append:?}",
        known.acked_end
    );
    let (counter, killed) = match (events.first(), in_flight_append, in_flight_sign) {
        (None, ..) => (&mut stats.kill_before_open, "before open returned"),
        (_, Some(end), _) if size == end => (
            &mut stats.kill_in_append_durable,
            "in an append, which was durable",
        ),
        (_, Some(_), _) => (
            &mut stats.kill_in_append_lost,
            "in an append, which was lost",
        ),
        (_, None, Some(s)) if vault.checkpoint(s).unwrap().is_some() => (
            &mut stats.kill_in_sign_stored,
            "signing a checkpoint, which was stored",
        ),
        (_, None, Some(_)) => (
            &mut stats.kill_in_sign_lost,
            "signing a checkpoint, which was lost",
        ),
        _ => (&mut stats.kill_between, "between appends"),
    };
    *counter += 1;
    println!("round {round}: {plan:?}, killed {killed}; size {size}");
    // The writer printed `ack` only after `append` returned, and the batch in flight may have
    // become durable: every entry below the size is the writer's, acknowledged or not.
    known.acked_end = size;

    // Every new entry, a sample of the old ones (all of them in a full check), is exactly its
    // recomputed bytes.
    let checked = known.hashes.len() as u64;
    while (known.hashes.len() as u64) < size {
        known
            .hashes
            .push(leaf_hash(&Software, &entry(known.hashes.len() as u64)));
    }
    let old: Vec<u64> = if full {
        (0..checked.min(size)).collect()
    } else {
        (0..SAMPLE_ENTRIES.min(checked))
            .map(|_| sample.below(checked.min(size).max(1)))
            .collect()
    };
    for index in old.into_iter().chain(checked.min(size)..size) {
        let want = &known.hashes[usize::try_from(index).unwrap()];
        let stored = vault
            .entry(index)
            .unwrap_or_else(|e| panic!("{ctx}: entry {index}: {e}"));
        assert_eq!(
            &leaf_hash(&Software, &stored),
            want,
            "{ctx}: entry {index} changed"
        );
    }

    // Checkpoints: every acknowledged one is stored unchanged and verifies; nothing else is stored
    // but the one in flight; none is beyond the durable size.
    let stored = vault.checkpoint_sizes().unwrap();
    for s in &stored {
        assert!(
            *s <= size,
            "{ctx}: checkpoint {s} beyond the durable size {size}"
        );
        assert!(
            known.checkpoints.contains_key(s) || Some(*s) == in_flight_sign,
            "{ctx}: checkpoint {s} was never signed"
        );
    }
    if let Some(s) = in_flight_sign
        && stored.contains(&s)
    {
        known.checkpoints.insert(s, None); // durable now: later rounds must keep it
        new_checkpoints.push(s);
    }
    let mut previous: Option<u64> = None;
    let old_checkpoints: Vec<u64> = known
        .checkpoints
        .iter()
        .filter(|(s, seen)| seen.is_some() && !new_checkpoints.contains(s))
        .map(|(s, _)| *s)
        .collect();
    let sampled: Vec<u64> = (0..SAMPLE_CHECKPOINTS.min(old_checkpoints.len()))
        .map(|_| {
            old_checkpoints[usize::try_from(sample.below(old_checkpoints.len() as u64)).unwrap()]
        })
        .collect();
    for (&cp_size, first_seen) in &mut known.checkpoints {
        let recheck = full
            || first_seen.is_none()
            || new_checkpoints.contains(&cp_size)
            || sampled.contains(&cp_size)
            || old_checkpoints.last() == Some(&cp_size);
        if !recheck {
            previous = Some(cp_size);
            continue;
        }
        let note = vault
            .checkpoint(cp_size)
            .unwrap()
            .unwrap_or_else(|| panic!("{ctx}: acknowledged checkpoint {cp_size} is gone"));
        match first_seen {
            Some(seen) => assert_eq!(*seen, note, "{ctx}: checkpoint {cp_size} changed"),
            None => *first_seen = Some(note.clone()),
        }
        if new_checkpoints.contains(&cp_size) {
            let cp = Checkpoint::parse(note.as_bytes()).unwrap();
            cp.verify(&key, &Software)
                .unwrap_or_else(|e| panic!("{ctx}: checkpoint {cp_size}: {e}"));
            assert_eq!(cp.size.0, cp_size);
            let spread = (cp_size ^ u64::from(round)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
            for index in [spread % cp_size.max(1), cp_size.saturating_sub(1)] {
                if index >= cp_size {
                    continue; // the empty tree has no entries
                }
                let proof = vault.prove_inclusion(index, cp_size).unwrap();
                verify_inclusion(
                    &known.hashes[usize::try_from(index).unwrap()],
                    index,
                    cp_size,
                    &proof.proof,
                    &cp.root,
                )
                .unwrap_or_else(|e| panic!("{ctx}: inclusion of {index} in {cp_size}: {e}"));
            }
            if let Some(old) = previous.filter(|old| *old > 0) {
                let proof = vault.prove_consistency(old, cp_size).unwrap();
                let old_root = Checkpoint::parse(proof.old.as_bytes()).unwrap().root;
                verify_consistency(old, cp_size, &proof.proof, &old_root, &cp.root)
                    .unwrap_or_else(|e| panic!("{ctx}: consistency {old} → {cp_size}: {e}"));
            }
        }
        previous = Some(cp_size);
    }

    known.size = size;
    if !full {
        return;
    }
    // And the offline checker agrees: tiles, roots, signatures, index, all within the size.
    known.full_checks += 1;
    let report = vault
        .fsck(&mut |_, _| {})
        .unwrap_or_else(|e| panic!("{ctx}: fsck: {e}"));
    assert_eq!(report.size, size, "{ctx}");
    assert_eq!(report.entries, size, "{ctx}");
    assert_eq!(report.checkpoints, stored.len() as u64, "{ctx}");
}

/// The random sample of old entries and checkpoints a round re-reads.
fn durable_sample(round: u32) -> Rng {
    Rng::new(0x5eed ^ u64::from(round))
}

/// The entries are what the parent recomputes (a sanity check of the test itself).
#[test]
fn entries_are_a_function_of_their_index() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    assert_eq!(entry(0), release_entry());
    assert_eq!(entry(4321), entry(4321));
    assert_ne!(entry(4321), entry(4322));
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), ORIGIN).unwrap();
    vault
        .append(&(0..10).map(entry).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(vault.entry(9).unwrap(), entry(9));
}
