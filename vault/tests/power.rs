//! Power loss: everything that was not synced is gone. A SIGKILL (crash.rs) keeps what the kernel
//! accepted; a power cut keeps only what `fsync`/`fdatasync` made durable, and of a directory only
//! the entries a sync of the directory made durable (POSIX, and what ext4 guarantees without its
//! `auto_da_alloc` heuristics).
//!
//! The writers (this test binary re-executed with `CAIRN_POWER_DIR` set) run with the
//! `LD_PRELOAD` shim `common/powercut.c`, which journals every successful sync of a file in the log
//! (its inode and the length it covered) or of the log's directory (its entries), and keeps a hard
//! link to every file it saw. The writers append their own protocol lines (`append`, `ack`, `sign`,
//! `checkpoint`, `flush`) to the same journal after the call returned, so a cut after any journal
//! line is a moment of one ordered history. For each cut the test rebuilds the directory as the
//! power cut leaves it (the entries of the last directory sync, each file truncated to its last
//! synced length), opens it and checks: every entry acknowledged before the cut is there with its
//! bytes, all or nothing of the batch in flight, every acknowledged checkpoint is stored and
//! proves, no checkpoint is beyond the durable tree or was never signed, and `fsck` passes.
//!
//! Cuts are taken just before each sync record (the latest moment with that durable state, so
//! with the most acknowledgements to lose), sampled at random: `CAIRN_POWER_CUTS` (default 64)
//! and `CAIRN_POWER_SEED`. Writing appends without syncing the WAL makes this test fail.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a panic is a failed test"
)]

mod common;
#[path = "common/durable.rs"]
mod durable;
#[path = "common/strace.rs"]
mod strace;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cairn_vault::Vault;
use durable::{Event, Rng, check, seeded_log};

/// Set in the child (and read by the shim): the log directory, canonical.
const CHILD_DIR: &str = "CAIRN_POWER_DIR";
/// The journal (read by the shim too).
const JOURNAL: &str = "CAIRN_POWER_JOURNAL";
/// Where the shim keeps its hard links.
const GRAVE: &str = "CAIRN_POWER_GRAVE";
const CHILD_SEED: &str = "CAIRN_POWER_CHILD_SEED";
const SEED: &str = "CAIRN_POWER_SEED";
const CUTS: &str = "CAIRN_POWER_CUTS";
const DEFAULT_CUTS: usize = 64;
/// Operations per writer; a new writer reopens the log (recovery, new WAL, MANIFEST, OPTIONS).
const OPS: u64 = 60;

/// The writer, under the shim. Without `CAIRN_POWER_DIR` (a normal test run) it returns at once.
#[test]
fn power_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(std::env::var_os(JOURNAL).unwrap())
        .unwrap();
    let mut line = |text: String| {
        // One write per line, O_APPEND: ordered with the shim's lines.
        journal.write_all(format!("{text}\n").as_bytes()).unwrap();
    };
    line("start".into());
    let vault = Vault::open(&dir).unwrap();
    line(Event::Open(vault.size()).line());
    durable::write(&vault, None, &mut Rng::new(seed), OPS, 12, &mut |e| {
        assert!(
            !matches!(e, Event::Failed(_)),
            "the writer failed without a fault: {e:?}"
        );
        line(e.line());
    });
}

/// One journal line.
#[derive(Debug)]
enum Record {
    Sync { ino: u64, len: u64 },
    Dir(Vec<(String, u64)>),
    Start,
    Writer(Event),
}

fn parse_journal(text: &str) -> Vec<Record> {
    text.lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("sync") => Record::Sync {
                    ino: words.next().unwrap().parse().unwrap(),
                    len: words.next().unwrap().parse().unwrap(),
                },
                Some("dir") => Record::Dir(
                    words
                        .map(|w| {
                            let (name, ino) = w.split_once('=').unwrap();
                            (name.to_owned(), ino.parse().unwrap())
                        })
                        .collect(),
                ),
                Some("start") => Record::Start,
                _ => Record::Writer(
                    Event::parse(line).unwrap_or_else(|| panic!("journal line {line:?}")),
                ),
            }
        })
        .collect()
}

/// Builds the directory a power cut just before `records[cut]` leaves, in `out`.
fn rebuild(records: &[Record], cut: usize, grave: &Path, out: &Path) {
    let mut synced: HashMap<u64, u64> = HashMap::new();
    let mut dir: &[(String, u64)] = &[];
    for record in &records[..cut] {
        match record {
            Record::Sync { ino, len } => {
                synced.insert(*ino, *len);
            }
            Record::Dir(entries) => dir = entries,
            _ => {}
        }
    }
    for (name, ino) in dir {
        let len = synced.get(ino).copied().unwrap_or(0);
        let bytes = std::fs::read(grave.join(ino.to_string()))
            .unwrap_or_else(|e| panic!("the shim kept no copy of {name} (inode {ino}): {e}"));
        let len = usize::try_from(len).unwrap();
        assert!(
            bytes.len() >= len,
            "{name} (inode {ino}) shrank after it was synced: {} < {len} bytes; the model assumes \
             RocksDB only appends",
            bytes.len()
        );
        std::fs::write(out.join(name), &bytes[..len]).unwrap();
    }
}

/// Compiles the shim with the system C compiler.
fn build_shim(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/powercut.c");
    let lib = dir.join("libpowercut.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&lib)
        .arg(&source)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("cc: {e}"));
    assert!(status.success(), "compiling {}", source.display());
    lib
}

#[test]
fn power_cuts_lose_nothing_acknowledged() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let seed = durable::seed(SEED);
    let cuts: usize = std::env::var(CUTS).map_or(DEFAULT_CUTS, |s| s.parse().unwrap());
    println!("power test seed {seed}, {cuts} cuts (reproduce with {SEED}={seed})");
    let began = Instant::now();
    let mut rng = Rng::new(seed);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("log");
    let grave = work.path().join("grave");
    let journal = work.path().join("journal");
    std::fs::create_dir(&grave).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let seeded = seeded_log(&dir, 100);
    std::fs::write(&journal, b"").unwrap();
    let shim = build_shim(work.path());

    let (records, writers) = run_writers(&shim, &dir, &journal, &grave, cuts, &mut rng);

    // Names of inodes (for the summary), and the candidate cuts: just before each sync record.
    let mut names: HashMap<u64, &str> = HashMap::new();
    for record in &records {
        if let Record::Dir(entries) = record {
            for (name, ino) in entries {
                names.entry(*ino).or_insert(name);
            }
        }
    }
    let chosen = choose_cuts(&records, cuts, &mut rng);

    let mut phases: BTreeMap<String, u32> = BTreeMap::new();
    let (mut in_flight_kept, mut in_flight_lost) = (0, 0);
    let mut acked = seeded.clone();
    let mut phase = "open (recovery)";
    let mut next = 0;
    for &cut in &chosen {
        for record in &records[next..cut] {
            match record {
                Record::Start => phase = "open (recovery)",
                Record::Writer(e) => {
                    acked.take(e);
                    phase = match e {
                        Event::Append(..) => "append",
                        Event::AppendSigned(..) => "append_signed",
                        Event::Sign(_) => "checkpoint",
                        Event::Flush => "flush",
                        _ => "between operations",
                    };
                }
                _ => {}
            }
        }
        next = cut;
        let syncing = match records.get(cut) {
            Some(Record::Sync { ino, .. }) => {
                strace::file_kind(names.get(ino).copied().unwrap_or("?")).to_owned()
            }
            Some(Record::Dir(_)) => "directory".into(),
            _ => "end".into(),
        };
        *phases
            .entry(format!("{phase}, before a sync of the {syncing}"))
            .or_default() += 1;
        let out = tempfile::tempdir().unwrap();
        rebuild(&records, cut, &grave, out.path());
        let ctx = format!(
            "cut before journal line {cut} ({phase}, before a sync of the {syncing}; \
             acknowledged up to {}, in flight {:?})",
            acked.end, acked.in_flight
        );
        let vault = Vault::open(out.path()).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
        if check(&vault, &acked, &ctx) {
            in_flight_kept += 1;
        } else if acked.in_flight.is_some() {
            in_flight_lost += 1;
        }
    }
    for record in &records[next..] {
        if let Record::Writer(e) = record {
            acked.take(e);
        }
    }
    println!(
        "power test: {} cuts over {writers} writers ({} journal lines, {} acknowledged appends, \
         {} checkpoints), 0 acknowledged entries lost; batch in flight kept {in_flight_kept}, \
         lost {in_flight_lost}; {:.1} s",
        chosen.len(),
        records.len(),
        acked.appends,
        acked.checkpoints.len(),
        began.elapsed().as_secs_f64()
    );
    for (phase, n) in &phases {
        println!("  {n:5}  {phase}");
    }
    assert_eq!(chosen.len(), cuts);
}

/// Runs writers under the shim until there are enough sync points to cut at (at least two
/// writers, so that a writer recovers what the one before left). Returns the journal, parsed.
fn run_writers(
    shim: &Path,
    dir: &Path,
    journal: &Path,
    grave: &Path,
    cuts: usize,
    rng: &mut Rng,
) -> (Vec<Record>, u32) {
    let mut records = Vec::new();
    let mut writers = 0;
    while writers < 2 || records.iter().filter(|r| is_sync(r)).count() < cuts * 2 {
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "power_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LD_PRELOAD", shim)
            .env(CHILD_DIR, dir)
            .env(JOURNAL, journal)
            .env(GRAVE, grave)
            .env(CHILD_SEED, rng.next().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "writer {writers}: {status}");
        writers += 1;
        records = parse_journal(&std::fs::read_to_string(journal).unwrap());
    }
    (records, writers)
}

/// `cuts` cut points at random among the moments just before each sync record after the shim's
/// record of the log as the test created it, and the end; ascending.
fn choose_cuts(records: &[Record], cuts: usize, rng: &mut Rng) -> Vec<usize> {
    // The first `dir` line ends the shim's record of the log as the test created it.
    let first = 1 + records
        .iter()
        .position(|r| matches!(r, Record::Dir(_)))
        .unwrap();
    let mut candidates: Vec<usize> = (first..records.len())
        .filter(|&i| is_sync(&records[i]))
        .chain([records.len()])
        .collect();
    let mut chosen = Vec::new();
    while chosen.len() < cuts && !candidates.is_empty() {
        let at = usize::try_from(rng.below(candidates.len() as u64)).unwrap();
        chosen.push(candidates.swap_remove(at));
    }
    chosen.sort_unstable();
    chosen
}

fn is_sync(record: &Record) -> bool {
    matches!(record, Record::Sync { .. } | Record::Dir(_))
}

/// The RocksDB options the durability protocol relies on are the ones the vault runs with, as
/// RocksDB itself recorded them in the log's `OPTIONS` file (docs/log.md, "Power loss").
#[test]
fn rocksdb_options_for_durability_are_set() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    drop(Vault::create(dir.path(), common::ORIGIN).unwrap());
    let newest = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("OPTIONS-"))
        .max_by_key(|n| n["OPTIONS-".len()..].parse::<u64>().unwrap_or(0))
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join(newest)).unwrap();
    let db_options: HashMap<&str, &str> = text
        .split("[DBOptions]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .collect();
    for (option, want) in [
        // a synced write is flushed from RocksDB's buffer to the WAL file, then synced
        ("manual_wal_flush", "false"),
        // a torn last record (never acknowledged) is dropped; corruption before it stops the open
        ("wal_recovery_mode", "kTolerateCorruptedTailRecords"),
        ("paranoid_checks", "true"),
        // a write whose sync failed stays in the WAL; a flush of some column families only
        // (RocksDB's recovery from ENOSPC flushes) would let the open replay it into the others
        // alone: the entry bundle of a batch without its size (tools/relay/tests/store_faults.rs)
        ("atomic_flush", "true"),
        // the WAL is replayed into memtables and flushed on open, before anything is acknowledged
        ("avoid_flush_during_recovery", "false"),
        // no WAL file is reused, so a recovered WAL never holds an older log's records
        ("recycle_log_file_num", "0"),
        // ten diagnostic logs, not RocksDB's default thousand (one is added at every open)
        ("keep_log_file_num", "10"),
    ] {
        assert_eq!(
            db_options.get(option).copied(),
            Some(want),
            "RocksDB option {option} (OPTIONS file of a new vault)"
        );
    }
}
