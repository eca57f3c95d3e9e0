//! What the fault tests share (`faults.rs`: failed syscalls; `power.rs`: power cuts): a writer
//! whose entries are a pure function of their index and which says what it acknowledged, and the
//! check of a recovered log against what the writer acknowledged.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "test helpers shared by two test files, each using a subset; a panic is a failed test"
)]

use std::collections::BTreeSet;
use std::ops::Range;

use cairn_vault::Vault;
use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use cairn_verifier::note::Checkpoint;

use crate::common::{ORIGIN, log_key, manifest, release_entry};

/// Marks the writer's protocol lines (libtest writes its own lines to the same stdout).
pub const MARK: &str = "cairn-writer:";

/// xorshift64*: tiny, seeded, good enough to pick sizes and points.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams and 0 is not stuck
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A seed from the clock, or from `var` to replay a run.
pub fn seed(var: &str) -> u64 {
    std::env::var(var).map_or_else(
        |_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (now.as_secs() << 30) ^ u64::from(now.subsec_nanos())
        },
        |s| s.parse().unwrap_or_else(|e| panic!("{var}={s}: {e}")),
    )
}

/// Entry `i` of the log: a pure function of `i`, so the checker can recompute what was appended.
pub fn entry(i: u64) -> Vec<u8> {
    if i == 0 {
        return release_entry();
    }
    manifest(i, &format!("campaign-{}", i / 3000), 1_800_000_000 + i / 64)
}

/// One line of the writer's protocol: each operation is announced before it starts and
/// acknowledged after it returned `Ok`; `Failed` is an operation that returned an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Open(u64),
    Append(u64, u64),
    /// An append with its checkpoint in one write (`append_signed`, as the relay's state log).
    AppendSigned(u64, u64),
    Ack(u64, u64),
    Sign(u64),
    Checkpoint(u64),
    Flush,
    Flushed,
    /// The mirror log was opened at this size.
    MirrorOpen(u64),
    /// A transfer bundle of the log from..to is imported into the mirror (`import_bundle`).
    Import(u64, u64),
    Imported(u64, u64),
    /// An operation failed with this error.
    Failed(String),
    /// The write tried after a failure was refused with this error.
    Refused(String),
    /// The write tried after a failure succeeded: the vault went on on a poisoned database.
    Continued,
}

impl Event {
    pub fn line(&self) -> String {
        let body = match self {
            Self::Open(n) => format!("open {n}"),
            Self::Append(a, b) => format!("append {a} {b}"),
            Self::AppendSigned(a, b) => format!("append-signed {a} {b}"),
            Self::MirrorOpen(n) => format!("mirror-open {n}"),
            Self::Import(a, b) => format!("import {a} {b}"),
            Self::Imported(a, b) => format!("imported {a} {b}"),
            Self::Ack(a, b) => format!("ack {a} {b}"),
            Self::Sign(n) => format!("sign {n}"),
            Self::Checkpoint(n) => format!("checkpoint {n}"),
            Self::Flush => "flush".into(),
            Self::Flushed => "flushed".into(),
            Self::Failed(e) => format!("failed {}", e.replace('\n', " ")),
            Self::Refused(e) => format!("refused {}", e.replace('\n', " ")),
            Self::Continued => "continued".into(),
        };
        format!("{MARK} {body}")
    }

    pub fn parse(line: &str) -> Option<Self> {
        let rest = line[line.find(MARK)? + MARK.len()..].trim_start();
        let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let nums: Vec<u64> = tail
            .split_whitespace()
            .map_while(|w| w.parse().ok())
            .collect();
        let num = |i: usize| -> u64 { nums[i] };
        Some(match word {
            "open" => Self::Open(num(0)),
            "append" => Self::Append(num(0), num(1)),
            "append-signed" => Self::AppendSigned(num(0), num(1)),
            "mirror-open" => Self::MirrorOpen(num(0)),
            "import" => Self::Import(num(0), num(1)),
            "imported" => Self::Imported(num(0), num(1)),
            "ack" => Self::Ack(num(0), num(1)),
            "sign" => Self::Sign(num(0)),
            "checkpoint" => Self::Checkpoint(num(0)),
            "flush" => Self::Flush,
            "flushed" => Self::Flushed,
            "failed" => Self::Failed(tail.into()),
            "refused" => Self::Refused(tail.into()),
            "continued" => Self::Continued,
            other => panic!("unknown writer line {other:?}"),
        })
    }
}

/// Runs the writer on an open vault for `ops` operations: batches of 1 to 64 entries (one in
/// eight appended with its checkpoint in one write, as the relay's state log appends), a
/// checkpoint after one batch in four, a memtable flush after one in `flush_every` (so that table
/// files, new WAL files and MANIFEST updates are written, synced and deleted too), and with a
/// `mirror`, after one batch in three, an import of a transfer bundle of what the log signed since
/// the mirror's size (as the signer's mirror imports the relay's bundles). `say` is called with
/// each line before and after each operation. At the first failed operation it says `Failed`,
/// tries one more write through the same handle and says whether it was refused, and returns.
pub fn write(
    vault: &Vault,
    mirror: Option<&Vault>,
    rng: &mut Rng,
    ops: u64,
    flush_every: u64,
    say: &mut dyn FnMut(Event),
) {
    let (sk, key) = log_key();
    let fail = |say: &mut dyn FnMut(Event), e: cairn_vault::Error, handle: &Vault| {
        say(Event::Failed(e.to_string()));
        let start = handle.size();
        match handle.append(&[entry(start)]) {
            Err(e @ cairn_vault::Error::Poisoned { .. }) => say(Event::Refused(e.to_string())),
            Err(e) => say(Event::Refused(format!("(not as poisoned) {e}"))),
            Ok(_) => say(Event::Continued),
        }
    };
    if let Some(m) = mirror {
        say(Event::MirrorOpen(m.size()));
    }
    for _ in 0..ops {
        let start = vault.size();
        let n = 1 + rng.below(64);
        let batch: Vec<Vec<u8>> = (start..start + n).map(entry).collect();
        if rng.below(8) == 0 {
            say(Event::AppendSigned(start, start + n));
            match vault.append_signed(&batch, &key, &sk) {
                Ok((range, _)) => {
                    say(Event::Ack(range.start, range.end));
                    say(Event::Checkpoint(range.end));
                }
                Err(e) => return fail(say, e, vault),
            }
        } else {
            say(Event::Append(start, start + n));
            match vault.append(&batch) {
                Ok(range) => say(Event::Ack(range.start, range.end)),
                Err(e) => return fail(say, e, vault),
            }
        }
        if rng.below(4) == 0 {
            say(Event::Sign(vault.size()));
            match vault.sign_checkpoint(&key, &sk) {
                Ok(note) => say(Event::Checkpoint(
                    Checkpoint::parse(note.as_bytes()).map_or(u64::MAX, |c| c.size.0),
                )),
                Err(e) => return fail(say, e, vault),
            }
        }
        if rng.below(flush_every) == 0 {
            say(Event::Flush);
            match vault.flush() {
                Ok(()) => say(Event::Flushed),
                Err(e) => return fail(say, e, vault),
            }
        }
        if let Some(m) = mirror
            && rng.below(3) == 0
        {
            let from = m.size();
            let bundle = vault.export_bundle(from).unwrap();
            let to = bundle.to();
            if to > from {
                say(Event::Import(from, to));
                match m.import_bundle(&bundle, &key) {
                    Ok(report) => say(Event::Imported(report.appended.start, report.size)),
                    Err(e) => return fail(say, e, m),
                }
            }
        }
    }
}

/// What a run of writers acknowledged, read from their lines in order.
#[derive(Debug, Default, Clone)]
pub struct Acked {
    /// End of the last acknowledged batch.
    pub end: u64,
    /// The batch announced and not acknowledged.
    pub in_flight: Option<Range<u64>>,
    /// Acknowledged checkpoints.
    pub checkpoints: BTreeSet<u64>,
    /// The checkpoint announced and not acknowledged.
    pub signing: Option<u64>,
    pub appends: u64,
}

impl Acked {
    /// Takes one line into account. `Open` starts a new writer: what the last one had in flight
    /// is then decided by what the new one found.
    pub fn take(&mut self, event: &Event) {
        match *event {
            Event::Open(size) => {
                assert!(
                    size == self.end || self.in_flight.as_ref().is_some_and(|r| r.end == size),
                    "a writer opened at size {size}; acknowledged {} in flight {:?}",
                    self.end,
                    self.in_flight
                );
                self.end = size;
                self.in_flight = None;
                self.signing = None;
            }
            Event::Append(a, b) => {
                assert_eq!(
                    a, self.end,
                    "append announced at {a}, acknowledged up to {}",
                    self.end
                );
                self.in_flight = Some(a..b);
            }
            Event::AppendSigned(a, b) => {
                self.take(&Event::Append(a, b));
                self.signing = Some(b);
            }
            Event::Ack(a, b) => {
                assert_eq!(Some(a..b), self.in_flight, "ack {a}..{b}");
                self.end = b;
                self.in_flight = None;
                self.appends += 1;
            }
            Event::Sign(size) => self.signing = Some(size),
            Event::Checkpoint(size) => {
                assert_eq!(Some(size), self.signing, "checkpoint {size}");
                self.checkpoints.insert(size);
                self.signing = None;
            }
            _ => {}
        }
    }
}

impl Acked {
    /// Takes one line into account for the mirror: an import is an append of the bundle's
    /// entries with the bundle's checkpoint, in one write.
    pub fn take_mirror(&mut self, event: &Event) {
        match *event {
            Event::MirrorOpen(size) => self.take(&Event::Open(size)),
            Event::Import(a, b) => self.take(&Event::AppendSigned(a, b)),
            Event::Imported(a, b) => {
                self.take(&Event::Ack(a, b));
                self.take(&Event::Checkpoint(b));
            }
            _ => {}
        }
    }
}

/// Checks a recovered log against what was acknowledged: the size is the acknowledged end or the
/// end of the batch in flight (never part of a batch); every entry below it has its recomputed
/// bytes; every acknowledged checkpoint is stored, verifies and proves inclusion of its last entry
/// and consistency with the one before; no other checkpoint is stored but the one in flight, none
/// beyond the size; `fsck` passes. Returns whether the batch in flight became durable.
pub fn check(vault: &Vault, acked: &Acked, ctx: &str) -> bool {
    let (_, key) = log_key();
    let size = vault.size();
    let in_flight_durable = acked.in_flight.as_ref().is_some_and(|r| r.end == size);
    assert!(
        size == acked.end || in_flight_durable,
        "{ctx}: size {size}, acknowledged up to {}, in flight {:?}",
        acked.end,
        acked.in_flight
    );
    for index in 0..size {
        let stored = vault
            .entry(index)
            .unwrap_or_else(|e| panic!("{ctx}: entry {index}: {e}"));
        assert!(stored == entry(index), "{ctx}: entry {index} changed");
    }
    let stored = vault.checkpoint_sizes().unwrap();
    for s in &stored {
        assert!(
            *s <= size,
            "{ctx}: checkpoint {s} beyond the durable size {size}"
        );
        assert!(
            acked.checkpoints.contains(s) || Some(*s) == acked.signing,
            "{ctx}: checkpoint {s} was never signed"
        );
    }
    let mut previous: Option<(u64, cairn_verifier::types::Hash)> = None;
    for &s in &acked.checkpoints {
        let note = vault
            .checkpoint(s)
            .unwrap()
            .unwrap_or_else(|| panic!("{ctx}: acknowledged checkpoint {s} is gone"));
        let cp = Checkpoint::parse(note.as_bytes()).unwrap();
        cp.verify(&key, &Software)
            .unwrap_or_else(|e| panic!("{ctx}: checkpoint {s}: {e}"));
        assert_eq!(cp.size.0, s, "{ctx}");
        if s > 0 {
            let proof = vault.prove_inclusion(s - 1, s).unwrap();
            verify_inclusion(
                &leaf_hash(&Software, &entry(s - 1)),
                s - 1,
                s,
                &proof.proof,
                &cp.root,
            )
            .unwrap_or_else(|e| panic!("{ctx}: inclusion of {} in {s}: {e}", s - 1));
        }
        if let Some((old, old_root)) = previous.filter(|(old, _)| *old > 0 && *old < s) {
            let proof = vault.prove_consistency(old, s).unwrap();
            verify_consistency(old, s, &proof.proof, &old_root, &cp.root)
                .unwrap_or_else(|e| panic!("{ctx}: consistency {old} → {s}: {e}"));
        }
        previous = Some((s, cp.root));
    }
    let report = vault
        .fsck(&mut |_, _| {})
        .unwrap_or_else(|e| panic!("{ctx}: fsck: {e}"));
    assert_eq!((report.size, report.entries), (size, size), "{ctx}");
    assert_eq!(report.checkpoints, stored.len() as u64, "{ctx}");
    in_flight_durable
}

/// A new log with `n` entries and a checkpoint over them, closed.
pub fn seeded_log(dir: &std::path::Path, n: u64) -> Acked {
    let (sk, key) = log_key();
    let vault = Vault::create(dir, ORIGIN).unwrap();
    vault
        .append(&(0..n).map(entry).collect::<Vec<_>>())
        .unwrap();
    vault.sign_checkpoint(&key, &sk).unwrap();
    let mut acked = Acked {
        end: n,
        ..Acked::default()
    };
    acked.checkpoints.insert(n);
    acked
}
