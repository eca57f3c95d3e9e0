//! `fsck`: an offline check of a whole log.
//!
//! Recomputes every leaf hash from the entries, rebuilds every tile and compares it with the stored
//! one byte for byte, recomputes the root at every stored checkpoint's size and checks the
//! checkpoint's signature with the log's pinned key, checks that no checkpoint commits to more than
//! the durable size, and checks the leaf-hash lookup, the evidence index and the retention records
//! against the entries. Independently of cairn's own tree code, every full tile is also re-hashed
//! with `rs_merkle` and compared with the hash the tile above stores for it.
//!
//! The first inconsistency stops the check and is returned with its evidence (what was expected,
//! what was found, where). RocksDB verifies its own block checksums on every read, so a flipped byte
//! in its files surfaces as a storage error naming the file.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};

use cairn_verifier::counts::{self, COUNTED, KindCounts};
use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{EntryHeader, Statement};
use cairn_verifier::types::Hash;
use rocksdb::{DBIterator, IteratorMode};

use crate::bundle::{self, BUNDLE_WIDTH};
use crate::error::{Error, Inconsistency, Result};
use crate::index::device_records;
use crate::layout::{
    self, BUNDLES, CHECKPOINTS, Dimension, EVIDENCE, LEAVES, RETENTION, TILES, u64_at,
};
use crate::retention::DOCUMENTATION_RETENTION_SECS;
use crate::tree::{Frontier, TILE_WIDTH, TileBlob, TileId};
use crate::vault::Vault;

/// What a clean check covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsckReport {
    /// Durable tree size.
    pub size: u64,
    /// Entries re-hashed.
    pub entries: u64,
    /// Entries pruned after retention (their leaf hashes come from the tiles).
    pub pruned: u64,
    /// Tiles compared.
    pub tiles: u64,
    /// Full tiles re-hashed with rs_merkle.
    pub rs_merkle_tiles: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Evidence index runs verified.
    pub evidence_runs: u64,
}

/// RFC 9162 hashing for rs_merkle: its leaves are our (already 0x00-prefixed) leaf hashes, and
/// pairs hash with 0x01. rs_merkle promotes an unpaired node, which gives the RFC root.
#[derive(Clone)]
struct Rfc9162;

impl rs_merkle::Hasher for Rfc9162 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        use sha2_010::Digest;
        sha2_010::Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => {
                let mut buf = [0u8; 65];
                buf[0] = 0x01;
                buf[1..33].copy_from_slice(left);
                buf[33..].copy_from_slice(right);
                Self::hash(&buf)
            }
            None => *left,
        }
    }
}

/// The RFC 9162 root of `hashes` computed by rs_merkle.
pub fn rs_merkle_root(hashes: &[Hash]) -> Option<Hash> {
    rs_merkle::MerkleTree::<Rfc9162>::from_leaves(hashes).root()
}

/// A stored checkpoint: its size, root and `cairn-kinds` counts (if it has the line).
type Stored = (u64, Hash, Option<KindCounts>);

fn hex(h: &[u8]) -> String {
    hex::encode(h)
}

fn fail<T>(
    check: &'static str,
    location: impl Into<String>,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> Result<T> {
    Err(Error::Inconsistent(Box::new(Inconsistency {
        check,
        location: location.into(),
        expected: expected.into(),
        found: found.into(),
    })))
}

fn fingerprint(value: &layout::EvidenceValue<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    match value {
        layout::EvidenceValue::Number(n) => (0u8, n).hash(&mut h),
        layout::EvidenceValue::Text(t) => (1u8, t).hash(&mut h),
    }
    h.finish()
}

/// Entries reserved for before the scan (more are added as they are read).
const RESERVE_ENTRIES: u64 = 1 << 20;

/// Stands for "any value" at a pruned entry (a fingerprint collision with it only weakens the
/// check for one entry, with probability 2^-64).
const PRUNED: u64 = u64::MAX;

const DIMENSIONS: [Dimension; 5] = [
    Dimension::Kind,
    Dimension::Release,
    Dimension::Device,
    Dimension::Campaign,
    Dimension::Time,
];

fn dimension_values<'a>(s: &Statement<'a>) -> [Option<layout::EvidenceValue<'a>>; 5] {
    use layout::EvidenceValue::{Number, Text};
    [
        Some(Number(s.kind().0)),
        s.release_id().map(|v| Text(v.as_str())),
        s.device_id().map(|v| Text(v.as_str())),
        s.campaign().map(|v| Text(v.as_str())),
        Some(layout::time_value(s.time())),
    ]
}

/// What the entry pass leaves for the index checks, per entry: the 8-byte prefix of its leaf hash,
/// and the fingerprint of its value in each evidence dimension (`PRUNED` for a pruned entry).
struct Scanned {
    prefixes: Vec<[u8; 8]>,
    fingerprints: Vec<[Option<u64>; 5]>,
}

impl Vault {
    /// Checks the whole log; `progress` is called with (entries done, entries total).
    ///
    /// In order: the checkpoints; the entries, with the tree rebuilt from them and compared with
    /// the stored tiles and every checkpoint's root; every full tile re-hashed by rs_merkle; the
    /// leaf-hash lookup; the evidence index.
    pub fn fsck(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<FsckReport> {
        let size = self.size();
        let mut report = FsckReport {
            size,
            ..FsckReport::default()
        };
        let checkpoints = self.fsck_checkpoints(size, &mut report)?;
        let scanned = self.fsck_entries(size, &checkpoints, &mut report, progress)?;
        self.fsck_rs_merkle(size, &mut report)?;
        self.fsck_leaf_lookup(size, &scanned.prefixes)?;
        self.fsck_evidence(size, &scanned.fingerprints, &mut report)?;
        Ok(report)
    }

    /// Checkpoints: parsed, signed by the pinned key, for this origin, within the durable size.
    /// Returns each one's size and root, ascending.
    fn fsck_checkpoints(&self, size: u64, report: &mut FsckReport) -> Result<Vec<Stored>> {
        let pinned = self.log_key()?;
        let mut checkpoints: Vec<Stored> = Vec::new();
        for item in self
            .db()
            .iterator_cf(self.cf(CHECKPOINTS)?, IteratorMode::Start)
        {
            let (k, v) = item?;
            let key_size = u64_at(&k, 0).unwrap_or(u64::MAX);
            let location = format!("checkpoint {key_size}");
            let cp = match Checkpoint::parse(&v) {
                Ok(cp) => cp,
                Err(e) => {
                    return fail(
                        "checkpoint parses",
                        location,
                        "a C2SP signed checkpoint",
                        e.to_string(),
                    );
                }
            };
            if cp.size.0 != key_size {
                return fail(
                    "checkpoint size",
                    location,
                    key_size.to_string(),
                    cp.size.0.to_string(),
                );
            }
            if key_size > size {
                return fail(
                    "checkpoint within durable size",
                    location,
                    format!("size <= {size}"),
                    key_size.to_string(),
                );
            }
            let Some(public) = pinned else {
                return fail(
                    "log key pinned",
                    location,
                    "the key of the first checkpoint",
                    "none",
                );
            };
            let key =
                LogKey::new(self.origin(), self.origin(), public, &Software).ok_or_else(|| {
                    Error::Corrupt {
                        what: "origin".into(),
                    }
                })?;
            if let Err(e) = cp.verify(&key, &Software) {
                return fail(
                    "checkpoint signature",
                    location,
                    "a valid signature by the log key",
                    e.to_string(),
                );
            }
            // Its `cairn-kinds` line (formats.md §2.1), when it has one, is compared with the
            // entries below its size by `fsck_entries`; one that does not parse is corrupt.
            let kinds = counts::parse(cp.extensions);
            let has_line = cp
                .extensions
                .lines()
                .any(|l| l.split(' ').next() == Some(counts::PREFIX));
            if has_line && kinds.is_none() {
                return fail(
                    "checkpoint kind counts",
                    location,
                    format!("a valid `{}` line", counts::PREFIX),
                    "a line that does not parse",
                );
            }
            checkpoints.push((key_size, cp.root, kinds));
            report.checkpoints += 1;
        }
        Ok(checkpoints)
    }

    /// Entries, in order: leaf hashes, statements, retention records; the tree rebuilt from them,
    /// its tiles compared with the stored ones and its root with every checkpoint's.
    fn fsck_entries(
        &self,
        size: u64,
        checkpoints: &[Stored],
        report: &mut FsckReport,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Scanned> {
        let mut kinds = KindCounts::default();
        let mut frontier = Frontier::default();
        let mut pending: Vec<Hash> = Vec::with_capacity(1 << 16);
        let mut next_checkpoint = checkpoints.iter().peekable();
        // The durable size is read from the store, which fsck exists to distrust: reserve for at
        // most a bounded number of entries up front, and grow only with entries actually read (a
        // missing bundle stops the scan), so a forged size costs what the stored entries weigh.
        let reserve = usize::try_from(size.min(RESERVE_ENTRIES)).unwrap_or(0);
        let mut scanned = Scanned {
            prefixes: Vec::with_capacity(reserve),
            fingerprints: Vec::with_capacity(reserve),
        };
        let mut stored = self
            .db()
            .iterator_cf(self.cf(BUNDLES)?, IteratorMode::Start);
        let mut bundle_entries: Vec<Vec<u8>> = Vec::new();
        for index in 0..size {
            let at = usize::try_from(index % BUNDLE_WIDTH as u64).unwrap_or(0);
            if at == 0 {
                bundle_entries = next_bundle(&mut stored, index, size)?;
            }
            let hash = self.fsck_entry(index, &bundle_entries[at], size, &mut scanned, report)?;
            if let Ok(header) = EntryHeader::peek(&bundle_entries[at]) {
                for (kind, count) in COUNTED.iter().zip(&mut kinds) {
                    if header.kind == *kind {
                        count.add(index);
                    }
                }
            }
            scanned
                .prefixes
                .push(hash[..8].try_into().unwrap_or([0; 8]));
            pending.push(hash);
            let reached = index + 1;
            if pending.len() == pending.capacity()
                || next_checkpoint
                    .peek()
                    .is_some_and(|(s, _, _)| *s == reached)
            {
                report.tiles += self.rebuild_tiles(&mut frontier, &mut pending, false)?;
            }
            while let Some((cp_size, root, stated)) = next_checkpoint.peek() {
                if *cp_size > reached {
                    break;
                }
                let below = if *cp_size == 0 {
                    KindCounts::default()
                } else {
                    kinds
                };
                if let Some(stated) = stated
                    && *stated != below
                {
                    return fail(
                        "checkpoint kind counts",
                        format!("checkpoint {cp_size}"),
                        counts::line(&below),
                        counts::line(stated),
                    );
                }
                let computed = if *cp_size == 0 {
                    Frontier::default().root()
                } else {
                    frontier.root()
                };
                if computed != *root {
                    return fail(
                        "checkpoint root",
                        format!("checkpoint {cp_size}"),
                        hex(&computed),
                        hex(root),
                    );
                }
                next_checkpoint.next();
            }
            if reached % 4096 == 0 {
                progress(reached, size);
            }
        }
        if let Some((cp_size, root, _)) = next_checkpoint.next() {
            // only a size-0 checkpoint can be left when the log is empty
            let computed = Frontier::default().root();
            if *cp_size != 0 || computed != *root {
                return fail(
                    "checkpoint root",
                    format!("checkpoint {cp_size}"),
                    hex(&computed),
                    hex(root),
                );
            }
        }
        if let Some(Ok((k, _))) = stored.next() {
            return fail(
                "no entry beyond the durable size",
                format!("entry bundle {}", u64_at(&k, 0).unwrap_or(u64::MAX)),
                format!("no bundle after entry {size}"),
                "a bundle",
            );
        }
        report.tiles += self.rebuild_tiles(&mut frontier, &mut pending, true)?;
        progress(size, size);
        Ok(scanned)
    }

    /// One entry: its leaf hash (from the tiles if it was pruned), its statement and, for a
    /// release, its retention record; its fingerprints go into `scanned`.
    fn fsck_entry(
        &self,
        index: u64,
        entry: &[u8],
        size: u64,
        scanned: &mut Scanned,
        report: &mut FsckReport,
    ) -> Result<Hash> {
        if entry.is_empty() {
            if !self.pruned(index)? {
                return fail(
                    "entry present",
                    format!("entry {index}"),
                    "the entry, or a pruning record",
                    "an empty entry",
                );
            }
            report.pruned += 1;
            // The index still records which runs the pruned entry was in; its values can no
            // longer be checked, and it needs no coverage.
            scanned.fingerprints.push([Some(PRUNED); 5]);
            return self.at(size)?.leaf_hash(index);
        }
        let hash = leaf_hash(&Software, entry);
        let statement = match Statement::decode(entry) {
            Ok(s) => s,
            Err(e) => {
                return fail(
                    "entry is a valid statement",
                    format!("entry {index}"),
                    "a statement of a known kind",
                    e.to_string(),
                );
            }
        };
        if let Statement::Release {
            statement: release, ..
        } = &statement
        {
            let mut key = vec![b'r'];
            key.extend_from_slice(release.release_id.as_str().as_bytes());
            let until = release.support_until.0.max(
                release
                    .issued_at
                    .0
                    .saturating_add(DOCUMENTATION_RETENTION_SECS),
            );
            let mut want = until.to_be_bytes().to_vec();
            want.extend_from_slice(&index.to_be_bytes());
            let found = self.db().get_cf(self.cf(RETENTION)?, &key)?;
            if found.as_deref() != Some(want.as_slice()) {
                return fail(
                    "retention record",
                    format!("release {} (entry {index})", release.release_id),
                    hex(&want),
                    found.map_or("none".into(), |f| hex(&f)),
                );
            }
        }
        scanned
            .fingerprints
            .push(dimension_values(&statement).map(|v| v.as_ref().map(fingerprint)));
        report.entries += 1;
        Ok(hash)
    }

    /// Appends `pending` to the rebuilt tree and compares the tiles it completes (all of them,
    /// partial ones at their final width, when `final_flush`) with the stored ones. Returns the
    /// number of tiles compared.
    fn rebuild_tiles(
        &self,
        frontier: &mut Frontier,
        pending: &mut Vec<Hash>,
        final_flush: bool,
    ) -> Result<u64> {
        let mut compared = 0;
        for (id, blob) in frontier.append(pending) {
            let full = TileBlob::parse(id, &blob)?.width() == TILE_WIDTH;
            if !full && !final_flush {
                continue; // compared when it is complete, or at the end at its final width
            }
            self.compare_tile(id, &blob)?;
            compared += 1;
        }
        pending.clear();
        Ok(compared)
    }

    /// Every full stored tile, re-hashed by rs_merkle, against the hash the level above stores.
    fn fsck_rs_merkle(&self, size: u64, report: &mut FsckReport) -> Result<()> {
        let tree = self.at(size)?;
        for item in self.db().iterator_cf(self.cf(TILES)?, IteratorMode::Start) {
            let (k, v) = item?;
            let id = TileId {
                level: k[0],
                index: u64_at(&k, 1).unwrap_or(u64::MAX),
            };
            let tile = TileBlob::parse(id, &v)?;
            if tile.width() != TILE_WIDTH {
                continue;
            }
            let row0: Vec<Hash> = tile
                .row0()
                .chunks_exact(32)
                .filter_map(|c| c.try_into().ok())
                .collect();
            let Some(root) = rs_merkle_root(&row0) else {
                continue;
            };
            let parent_height = (u32::from(id.level) + 1) * 8;
            let stored_parent = crate::tree::NodeSource::node(&tree, parent_height, id.index)?;
            if root != stored_parent {
                return fail(
                    "tile hash (rs_merkle)",
                    format!("tile {}/{}", id.level, id.index),
                    hex(&root),
                    hex(&stored_parent),
                );
            }
            report.rs_merkle_tiles += 1;
        }
        Ok(())
    }

    /// Leaf lookup records: every entry exactly once, under its hash's bucket and prefix.
    fn fsck_leaf_lookup(&self, size: u64, prefixes: &[[u8; 8]]) -> Result<()> {
        let mut looked_up = vec![false; prefixes.len()];
        for item in self.db().iterator_cf(self.cf(LEAVES)?, IteratorMode::Start) {
            let (k, v) = item?;
            let location = format!("leaf lookup record {}", hex(&k));
            if k.len() != 9 || v.len() % 16 != 0 {
                return fail(
                    "leaf lookup record",
                    location,
                    "a 9-byte key and 16-byte pairs",
                    format!("{} and {} bytes", k.len(), v.len()),
                );
            }
            for pair in v.chunks_exact(16) {
                let index = u64_at(pair, 8).unwrap_or(u64::MAX);
                let i = usize::try_from(index).unwrap_or(usize::MAX);
                let Some(prefix) = prefixes.get(i) else {
                    return fail(
                        "leaf lookup record",
                        location,
                        format!("indices below {size}"),
                        index.to_string(),
                    );
                };
                if pair[..8] != prefix[..] || k[0] != prefix[0] || looked_up[i] {
                    return fail(
                        "leaf lookup record",
                        location,
                        format!("entry {index} once, with prefix {}", hex(prefix)),
                        hex(&pair[..8]),
                    );
                }
                looked_up[i] = true;
            }
        }
        if let Some(i) = looked_up.iter().position(|seen| !seen) {
            return fail(
                "leaf hash lookup",
                format!("entry {i}"),
                format!("a lookup record for prefix {}", hex(&prefixes[i])),
                "none",
            );
        }
        Ok(())
    }

    /// Evidence runs: each covers entries with its value, and together they cover every entry
    /// exactly once in every dimension the entry has a value in.
    fn fsck_evidence(
        &self,
        size: u64,
        fingerprints: &[[Option<u64>; 5]],
        report: &mut FsckReport,
    ) -> Result<()> {
        let n = fingerprints.len();
        let mut covered = vec![[false; 5]; n];
        for item in self
            .db()
            .iterator_cf(self.cf(EVIDENCE)?, IteratorMode::Start)
        {
            let (k, v) = item?;
            if k.first() == Some(&(Dimension::Device as u8)) {
                check_device_record(&k, &v, fingerprints, &mut covered)?;
            } else {
                check_evidence_run(&k, &v, size, fingerprints, &mut covered)?;
            }
            report.evidence_runs += 1;
        }
        for (i, (fp, cov)) in fingerprints.iter().zip(&covered).enumerate() {
            for dim in 0..5 {
                if fp[dim].is_some_and(|f| f != PRUNED) && !cov[dim] {
                    return fail(
                        "evidence coverage",
                        format!("entry {i}"),
                        format!("a {:?} index run", DIMENSIONS[dim]),
                        "none",
                    );
                }
            }
        }
        Ok(())
    }

    fn compare_tile(&self, id: TileId, rebuilt: &[u8]) -> Result<()> {
        let location = format!("tile {}/{}", id.level, id.index);
        let Some(stored) = self
            .db()
            .get_pinned_cf(self.cf(TILES)?, layout::tile_key(id))?
        else {
            return fail("tile present", location, "a stored tile", "nothing");
        };
        if stored.as_ref() == rebuilt {
            return Ok(());
        }
        // Point at the first differing hash.
        let (Ok(want), Ok(got)) = (TileBlob::parse(id, rebuilt), TileBlob::parse(id, &stored))
        else {
            return fail(
                "tile blob",
                location,
                format!("{} bytes", rebuilt.len()),
                format!("{} bytes", stored.len()),
            );
        };
        if want.width() != got.width() {
            return fail(
                "tile width",
                location,
                want.width().to_string(),
                got.width().to_string(),
            );
        }
        for row in 0..crate::tree::TILE_HEIGHT {
            for position in 0..(want.width() >> row) {
                let (w, g) = (want.node(row, position), got.node(row, position));
                if w != g {
                    // Row 0 of a level-0 tile is the leaf hashes: name the entry too.
                    let entry = if id.level == 0 && row == 0 {
                        format!(
                            " (entry {})",
                            id.index * TILE_WIDTH as u64 + position as u64
                        )
                    } else {
                        String::new()
                    };
                    return fail(
                        "tile hash",
                        format!("{location} row {row} position {position}{entry}"),
                        w.map_or("none".into(), |h| hex(&h)),
                        g.map_or("none".into(), |h| hex(&h)),
                    );
                }
            }
        }
        fail("tile blob", location, hex(rebuilt), hex(&stored))
    }
}

/// Reads the entry bundle that starts at entry `index` from the bundles iterator, and checks it is
/// the next one and holds the entries the durable `size` says it must.
fn next_bundle(stored: &mut DBIterator<'_>, index: u64, size: u64) -> Result<Vec<Vec<u8>>> {
    let b = index / BUNDLE_WIDTH as u64;
    let location = format!("entry bundle {b}");
    let Some(item) = stored.next() else {
        return fail("entry bundle present", location, "the bundle", "nothing");
    };
    let (k, v) = item?;
    if u64_at(&k, 0) != Some(b) {
        return fail(
            "entry bundle present",
            location,
            "the bundle",
            format!("bundle {} next", hex(&k)),
        );
    }
    let want = usize::try_from((size - index).min(BUNDLE_WIDTH as u64)).unwrap_or(0);
    let bundle_entries: Vec<Vec<u8>> = match bundle::entries(b, &v) {
        Ok(e) => e.into_iter().map(<[u8]>::to_vec).collect(),
        Err(e) => {
            return fail(
                "entry bundle parses",
                location,
                "length-prefixed entries",
                e.to_string(),
            );
        }
    };
    if bundle_entries.len() != want {
        return fail(
            "entry bundle length",
            location,
            format!("{want} entries"),
            format!("{} entries", bundle_entries.len()),
        );
    }
    Ok(bundle_entries)
}

/// One device index record (key `k`, value `v`): every `(device, index)` in it is about that
/// device, in the record's bucket, and seen once.
fn check_device_record(
    k: &[u8],
    v: &[u8],
    fingerprints: &[[Option<u64>; 5]],
    covered: &mut [[bool; 5]],
) -> Result<()> {
    let dim = DIMENSIONS
        .iter()
        .position(|d| *d == Dimension::Device)
        .unwrap_or(2);
    let location = format!("device index record {}", hex(k));
    for (device, index) in device_records(v)? {
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        let want =
            std::str::from_utf8(device).map(|d| fingerprint(&layout::EvidenceValue::Text(d)));
        let ok = k.len() == 10
            && k[1] == bundle::bucket(device)
            && fingerprints
                .get(i)
                .is_some_and(|f| f[dim] == want.ok() || f[dim] == Some(PRUNED))
            && !covered[i][dim];
        if !ok {
            return fail(
                "device index record",
                location,
                format!(
                    "entry {index} once, about {}",
                    String::from_utf8_lossy(device)
                ),
                "another device, a repeat or an index beyond the log",
            );
        }
        covered[i][dim] = true;
    }
    Ok(())
}

/// One evidence run (key `k`, value `v`): within the log, not overlapping another run of its
/// dimension, and every entry in it has the run's value.
fn check_evidence_run(
    k: &[u8],
    v: &[u8],
    size: u64,
    fingerprints: &[[Option<u64>; 5]],
    covered: &mut [[bool; 5]],
) -> Result<()> {
    let dim = DIMENSIONS
        .iter()
        .position(|d| *d as u8 == k[0])
        .ok_or_else(|| Error::Corrupt {
            what: format!("evidence key with dimension {}", k[0]),
        })?;
    let value = match DIMENSIONS[dim] {
        Dimension::Kind | Dimension::Time => {
            layout::EvidenceValue::Number(u64_at(k, 1).unwrap_or(u64::MAX))
        }
        _ => {
            let len = usize::from(*k.get(1).unwrap_or(&0));
            layout::EvidenceValue::Text(
                k.get(2..2 + len)
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .unwrap_or(""),
            )
        }
    };
    let first = u64_at(k, k.len().saturating_sub(8)).unwrap_or(u64::MAX);
    let end = u64_at(v, 0).unwrap_or(u64::MAX);
    let location = format!(
        "evidence run {:?} {value:?} {first}..{end}",
        DIMENSIONS[dim]
    );
    if first >= end || end > size {
        return fail(
            "evidence run bounds",
            location,
            format!("a non-empty range within 0..{size}"),
            format!("{first}..{end}"),
        );
    }
    let want = fingerprint(&value);
    for index in first..end {
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        if covered[i][dim] {
            return fail(
                "evidence runs disjoint",
                location,
                format!("entry {index} in one run"),
                "two runs",
            );
        }
        covered[i][dim] = true;
        if fingerprints[i][dim] != Some(want) && fingerprints[i][dim] != Some(PRUNED) {
            return fail(
                "evidence run value",
                location,
                format!("entry {index} to have this value"),
                "another value",
            );
        }
    }
    Ok(())
}
