//! The vault: one RFC 9162 log in one RocksDB database, one writer and any number of readers.
//!
//! Durability protocol (docs/log.md): a batch of entries, their leaf-hash lookups, evidence index
//! runs, every tile it touches and the new tree size go into one RocksDB `WriteBatch`, written with
//! the WAL synced (`fsync`) before [`Vault::append`] returns. The in-memory size that readers and
//! the checkpoint signer see is advanced only after that. A checkpoint is signed over that size and
//! root, so it can only commit to entries that are already durable; it is then stored with its own
//! synced write.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use cairn_verifier::note::{self, Checkpoint, LogKey};
use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::{Hash, TreeSize, UnixTime};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction,
    IteratorMode, Options, WriteBatch, WriteOptions,
};

use crate::bundle::{self, BUNDLE_WIDTH};
use crate::error::{Error, Result, io};
use crate::layout::{
    self, BUNDLES, CHECKPOINTS, COLUMN_FAMILIES, Dimension, EVIDENCE, EvidenceValue, LEAVES, META,
    META_FORMAT, META_LOG_KEY, META_ORIGIN, META_SIZE, RETENTION, TILES, bucket_key,
    evidence_prefix, index_key, tile_key, u64_at,
};
use crate::tree::{self, Frontier, NodeSource, TILE_HEIGHT, TILE_WIDTH, TileBlob, TileId, locate};

/// Largest entry: C2SP tlog-tiles entry bundles prefix each entry with a 16-bit length.
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;
/// Documentation is retained at least ten years after the product is placed on the market
/// (CRA Art. 13(13)); cairn counts from the release's issue time.
pub const DOCUMENTATION_RETENTION_SECS: u64 = 10 * 365 * 24 * 3600 + 3 * 24 * 3600;
/// Full upper-level tiles kept in memory (each at most 16 KiB).
const TILE_CACHE_LIMIT: usize = 16 * 1024;

/// An inclusion proof checked against a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The signed checkpoint the proof is for.
    pub checkpoint: String,
    /// The tree size of that checkpoint.
    pub size: u64,
    /// The entry's index.
    pub index: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// The audit path.
    pub proof: Vec<Hash>,
}

/// A consistency proof between two signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older checkpoint.
    pub old: String,
    /// The newer checkpoint.
    pub new: String,
    /// The proof hashes.
    pub proof: Vec<Hash>,
}

/// An evidence query: answered from the index, never by scanning the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query<'a> {
    /// Entries of one kind.
    Kind(Kind),
    /// Entries about one release.
    Release(&'a str),
    /// Entries about one device.
    Device(&'a str),
    /// Entries of one campaign.
    Campaign(&'a str),
    /// Entries whose statement time is in `from..=to`.
    Time {
        /// First second.
        from: UnixTime,
        /// Last second.
        to: UnixTime,
    },
}

/// The retention state of one release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Index of the release entry.
    pub release_index: u64,
    /// Nothing about the release may be deleted before this time.
    pub until: UnixTime,
}

/// One batch, ready to be written.
struct Prepared {
    batch: WriteBatch,
    /// The writer state once it is written.
    next: Writer,
    range: Range<u64>,
    /// Release ids it adds.
    releases: Vec<String>,
}

/// What the single writer keeps between appends: the right edge of the tree and of the entries.
#[derive(Debug, Clone, Default)]
struct Writer {
    frontier: Frontier,
    /// The partial entry bundle (fewer than 256 entries), as stored.
    bundle: Vec<u8>,
    /// Entries in it.
    bundle_count: usize,
}

/// A transparency log on RocksDB.
pub struct Vault {
    db: DB,
    path: PathBuf,
    origin: String,
    /// Durable tree size, published to readers after each synced append.
    size: AtomicU64,
    /// The single writer's state.
    writer: Mutex<Writer>,
    /// Full tiles of level 1 and up (immutable once full), for proofs.
    cache: RwLock<HashMap<TileId, Arc<[u8]>>>,
    /// Stored checkpoints, parsed (immutable once stored), for proofs.
    checkpoints: RwLock<HashMap<u64, (Arc<str>, Hash)>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("origin", &self.origin)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.create_missing_column_families(true);
    opts.set_paranoid_checks(true);
    // A torn record at the end of the WAL was never acknowledged (its sync had not returned), so
    // it may be dropped; corruption anywhere else stops the open instead of silently losing data.
    opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    opts.set_max_background_jobs(2);
    opts.set_write_buffer_size(128 << 20);
    opts.set_max_write_buffer_number(4);
    opts.set_level_compaction_dynamic_level_bytes(true);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(256 << 20));
    table.set_block_size(16 << 10);
    opts.set_block_based_table_factory(&table);
    opts
}

fn sync() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the writer lock cannot leave the frontier half-updated (it is
    // replaced only after a successful write), so the state behind a poisoned lock is usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Vault {
    /// Creates a new, empty log for `origin` in the directory `path`.
    ///
    ///
    /// The log's metadata is written in one atomic batch, so a crash during `create` leaves either
    /// a complete empty log or a RocksDB directory with no keys at all; `create` finishes the
    /// latter. `path` must otherwise not exist or be an empty directory.
    pub fn create(path: impl AsRef<Path>, origin: &str) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if origin.is_empty() || origin.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(Error::WrongOrigin {
                expected: "a non-empty origin line".into(),
                found: origin.into(),
            });
        }
        let resuming = path.join("CURRENT").exists();
        if !resuming
            && path.exists()
            && std::fs::read_dir(&path)
                .map_err(io(&path))?
                .next()
                .is_some()
        {
            return Err(Error::NotEmpty(path));
        }
        let db = Self::open_db(&path, true)?;
        if resuming {
            let empty = COLUMN_FAMILIES.iter().all(|name| {
                db.cf_handle(name)
                    .is_some_and(|cf| db.iterator_cf(cf, IteratorMode::Start).next().is_none())
            });
            if !empty {
                return Err(Error::AlreadyExists(path));
            }
        }
        let meta = db
            .cf_handle(META)
            .ok_or_else(|| Error::NotALog(path.clone()))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, META_FORMAT, layout::FORMAT.to_be_bytes());
        batch.put_cf(meta, META_ORIGIN, origin.as_bytes());
        batch.put_cf(meta, META_SIZE, 0u64.to_be_bytes());
        db.write_opt(batch, &sync())?;
        Self::finish_open(db, path)
    }

    /// Opens an existing log.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.join("CURRENT").exists() {
            return Err(Error::NotALog(path));
        }
        let db = Self::open_db(&path, false)?;
        Self::finish_open(db, path)
    }

    /// Opens an existing log and checks it is the log of `origin`.
    pub fn open_origin(path: impl AsRef<Path>, origin: &str) -> Result<Self> {
        let vault = Self::open(path)?;
        if vault.origin != origin {
            return Err(Error::WrongOrigin {
                expected: origin.into(),
                found: vault.origin.clone(),
            });
        }
        Ok(vault)
    }

    fn open_db(path: &Path, create: bool) -> Result<DB> {
        let cfs = COLUMN_FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, options()));
        let mut opts = options();
        opts.create_if_missing(create);
        Ok(DB::open_cf_descriptors(&opts, path, cfs)?)
    }

    fn finish_open(db: DB, path: PathBuf) -> Result<Self> {
        let meta = db
            .cf_handle(META)
            .ok_or_else(|| Error::NotALog(path.clone()))?;
        let format = db
            .get_cf(meta, META_FORMAT)?
            .ok_or_else(|| Error::NotALog(path.clone()))?;
        if format != layout::FORMAT.to_be_bytes() {
            return Err(Error::Corrupt {
                what: format!(
                    "storage format {format:?}, this cairn reads {}",
                    layout::FORMAT
                ),
            });
        }
        let origin = db
            .get_cf(meta, META_ORIGIN)?
            .ok_or_else(|| Error::NotALog(path.clone()))?;
        let origin = String::from_utf8(origin).map_err(|_| Error::Corrupt {
            what: "origin is not UTF-8".into(),
        })?;
        let size = db
            .get_cf(meta, META_SIZE)?
            .and_then(|v| u64_at(&v, 0))
            .ok_or_else(|| Error::Corrupt {
                what: "no durable size".into(),
            })?;
        let vault = Self {
            db,
            path,
            origin,
            size: AtomicU64::new(size),
            writer: Mutex::new(Writer::default()),
            cache: RwLock::new(HashMap::new()),
            checkpoints: RwLock::new(HashMap::new()),
        };
        let frontier = Frontier::load(size, |id| {
            let blob = vault.tile(id)?.ok_or_else(|| Error::Corrupt {
                what: format!("tile {}/{} missing at size {size}", id.level, id.index),
            })?;
            let tile = TileBlob::parse(id, &blob)?;
            Ok(tile
                .row0()
                .chunks_exact(32)
                .filter_map(|c| c.try_into().ok())
                .collect())
        })?;
        // The bundle holding the last entry must hold exactly the entries up to the durable size:
        // it was written in the same batch as the size.
        let (mut bundle, mut bundle_count) = (Vec::new(), 0);
        if size > 0 {
            let last = (size - 1) / BUNDLE_WIDTH as u64;
            let stored = vault.stored_bundle(last)?.to_vec();
            let count = bundle::entries(last, &stored)?.len();
            let want = usize::try_from(size - last * BUNDLE_WIDTH as u64).unwrap_or(BUNDLE_WIDTH);
            if count != want {
                return Err(Error::Corrupt {
                    what: format!(
                        "entry bundle {last} holds {count} entries, the durable size {size} needs {want}"
                    ),
                });
            }
            if count < BUNDLE_WIDTH {
                (bundle, bundle_count) = (stored, count);
            }
        }
        *lock(&vault.writer) = Writer {
            frontier,
            bundle,
            bundle_count,
        };
        Ok(vault)
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| Error::Corrupt {
            what: format!("column family {name} missing"),
        })
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Appends a batch of entries, atomically and durably: when this returns `Ok`, every entry is
    /// on disk (WAL synced) with its tiles and index; on `Err`, nothing of the batch was stored.
    ///
    /// Every entry must be a statement of a known kind (`cairn_verifier::statement::Statement`) no
    /// larger than [`MAX_ENTRY_LEN`]; release ids must be new. Returns the indices assigned.
    pub fn append<E: AsRef<[u8]> + Sync>(&self, entries: &[E]) -> Result<Range<u64>> {
        let mut writer = lock(&self.writer);
        let prepared = self.build(&writer, entries, &[])?;
        self.db.write_opt(prepared.batch, &sync())?;
        *writer = prepared.next;
        self.size.store(prepared.range.end, Ordering::Release);
        Ok(prepared.range)
    }

    /// Appends many batches, pipelined: while one batch is written and synced, the next is
    /// checked, hashed and turned into its `WriteBatch` on another thread. Each batch is atomic and
    /// durable exactly as with [`Vault::append`], and `ack` is called with its indices, in order,
    /// once its synced write has returned.
    ///
    /// Stops at the first bad batch or failed write and returns its error; the batches acknowledged
    /// before it stay in the log, nothing of the failed one is stored. Returns the number of
    /// entries appended.
    pub fn append_batches<I, B, E>(
        &self,
        batches: I,
        mut ack: impl FnMut(Range<u64>),
    ) -> Result<u64>
    where
        I: IntoIterator<Item = B>,
        I::IntoIter: Send,
        B: AsRef<[E]> + Send,
        E: AsRef<[u8]> + Sync,
    {
        let mut writer = lock(&self.writer);
        let first = writer.frontier.size();
        let batches = batches.into_iter();
        let state = writer.clone();
        std::thread::scope(|scope| -> Result<u64> {
            // One prepared batch waits while another is written: two in flight at most.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Prepared>>(1);
            scope.spawn(move || {
                let mut state = state;
                let mut in_flight: Vec<String> = Vec::new();
                for batch in batches {
                    let prepared = self.build(&state, batch.as_ref(), &in_flight);
                    let stop = prepared.is_err();
                    if let Ok(p) = &prepared {
                        state = p.next.clone();
                        in_flight.extend(p.releases.iter().cloned());
                    }
                    if tx.send(prepared).is_err() || stop {
                        break;
                    }
                }
            });
            for prepared in rx {
                let prepared = prepared?;
                self.db.write_opt(prepared.batch, &sync())?;
                *writer = prepared.next;
                self.size.store(prepared.range.end, Ordering::Release);
                ack(prepared.range);
            }
            Ok(writer.frontier.size() - first)
        })
    }

    /// Everything one batch writes, built from the writer state `state` without touching it.
    /// `in_flight`: release ids of batches prepared but not yet written.
    fn build<E: AsRef<[u8]> + Sync>(
        &self,
        state: &Writer,
        entries: &[E],
        in_flight: &[String],
    ) -> Result<Prepared> {
        if entries.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let (statements, hashes) = prepare(entries)?;
        let start = state.frontier.size();
        let end = start + entries.len() as u64;
        let mut next = state.clone();
        let tiles = next.frontier.append(&hashes);

        let bytes: usize = entries.iter().map(|e| e.as_ref().len() + 2).sum();
        let mut batch =
            WriteBatch::with_capacity_bytes(bytes + tiles.len() * 16_500 + entries.len() * 96);
        let bundles = self.cf(BUNDLES)?;
        let mut bundle_index = start / BUNDLE_WIDTH as u64;
        for entry in entries {
            bundle::push(&mut next.bundle, entry.as_ref());
            next.bundle_count += 1;
            if next.bundle_count == BUNDLE_WIDTH {
                batch.put_cf(bundles, index_key(bundle_index), &next.bundle);
                next.bundle.clear();
                next.bundle_count = 0;
                bundle_index += 1;
            }
        }
        if next.bundle_count > 0 {
            batch.put_cf(bundles, index_key(bundle_index), &next.bundle);
        }
        self.leaf_buckets(&mut batch, start, &hashes)?;
        let releases = self.index_batch(&mut batch, start, &statements, in_flight)?;
        let tiles_cf = self.cf(TILES)?;
        for (id, blob) in &tiles {
            batch.put_cf(tiles_cf, tile_key(*id), blob);
        }
        batch.put_cf(self.cf(META)?, META_SIZE, end.to_be_bytes());
        Ok(Prepared {
            batch,
            next,
            range: start..end,
            releases,
        })
    }

    /// The leaf-hash lookup records of a batch: per bucket (first byte of the hash), the sorted
    /// 8-byte hash prefixes with their indices. A batch costs at most 256 records however large it
    /// is; a lookup reads one bucket's records and confirms candidates against the tiles.
    fn leaf_buckets(&self, batch: &mut WriteBatch, start: u64, hashes: &[Hash]) -> Result<()> {
        let leaves = self.cf(LEAVES)?;
        let mut buckets: Vec<Vec<[u8; 16]>> = vec![Vec::new(); 256];
        for (i, h) in hashes.iter().enumerate() {
            let mut pair = [0u8; 16];
            pair[..8].copy_from_slice(&h[..8]);
            pair[8..].copy_from_slice(&(start + i as u64).to_be_bytes());
            buckets[usize::from(h[0])].push(pair);
        }
        for (b, mut pairs) in buckets.into_iter().enumerate() {
            if pairs.is_empty() {
                continue;
            }
            pairs.sort_unstable();
            let bucket = u8::try_from(b).unwrap_or(u8::MAX);
            batch.put_cf(leaves, bucket_key(&[], bucket, start), pairs.concat());
        }
        Ok(())
    }

    /// Writes RocksDB's memtables to table (SST) files and waits for it. Appends do not need this:
    /// they are durable once their synced WAL write returns. It only moves what the WAL holds into
    /// table files, so the next open replays less (and tests can reach the table files).
    pub fn flush(&self) -> Result<()> {
        for name in COLUMN_FAMILIES {
            self.db.flush_cf(self.cf(name)?)?;
        }
        Ok(())
    }

    /// Evidence index runs and retention records for a batch starting at `start`.
    fn index_batch(
        &self,
        batch: &mut WriteBatch,
        start: u64,
        statements: &[Statement<'_>],
        in_flight: &[String],
    ) -> Result<Vec<String>> {
        type ValueOf = for<'s, 'e> fn(&'s Statement<'e>) -> Option<EvidenceValue<'e>>;
        let evidence = self.cf(EVIDENCE)?;
        let retention = self.cf(RETENTION)?;
        let dims: [(Dimension, ValueOf); 4] = [
            (Dimension::Kind, |s| Some(EvidenceValue::Number(s.kind().0))),
            (Dimension::Release, |s| {
                s.release_id().map(|v| EvidenceValue::Text(v.as_str()))
            }),
            (Dimension::Campaign, |s| {
                s.campaign().map(|v| EvidenceValue::Text(v.as_str()))
            }),
            (Dimension::Time, |s| Some(layout::time_value(s.time()))),
        ];
        for (dimension, value_of) in dims {
            // Consecutive entries with the same value form one run: a cohort of manifests for one
            // campaign costs one index record, not one per device.
            let mut run: Option<(EvidenceValue<'_>, u64)> = None;
            let flush =
                |batch: &mut WriteBatch, run: Option<(EvidenceValue<'_>, u64)>, end: u64| {
                    if let Some((value, first)) = run {
                        let mut key = evidence_prefix(dimension, &value);
                        key.extend_from_slice(&first.to_be_bytes());
                        batch.put_cf(evidence, key, end.to_be_bytes());
                    }
                };
            for (i, statement) in statements.iter().enumerate() {
                let index = start + i as u64;
                let value = value_of(statement);
                match (run, value) {
                    (Some((current, _)), Some(v)) if current == v => {}
                    _ => {
                        flush(batch, run.take(), index);
                        run = value.map(|v| (v, index));
                    }
                }
            }
            flush(batch, run, start + statements.len() as u64);
        }
        // Devices: one record per bucket and batch (a cohort of 10,000 manifests is at most 256
        // records, not 10,000 keys scattered through the index).
        let mut devices: Vec<Vec<(&str, u64)>> = vec![Vec::new(); 256];
        for (i, statement) in statements.iter().enumerate() {
            if let Some(d) = statement.device_id() {
                devices[usize::from(bundle::bucket(d.as_str().as_bytes()))]
                    .push((d.as_str(), start + i as u64));
            }
        }
        for (b, records) in devices.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            // In log order (the order they were pushed); a query reads the whole record.
            let mut value = Vec::with_capacity(records.len() * 80);
            for (device, index) in records {
                value.push(u8::try_from(device.len()).unwrap_or(u8::MAX));
                value.extend_from_slice(device.as_bytes());
                value.extend_from_slice(&index.to_be_bytes());
            }
            let bucket = u8::try_from(b).unwrap_or(u8::MAX);
            batch.put_cf(
                evidence,
                bucket_key(&[Dimension::Device as u8], bucket, start),
                value,
            );
        }
        let mut new_releases: Vec<&str> = Vec::new();
        for (i, statement) in statements.iter().enumerate() {
            if let Statement::Release {
                statement: release, ..
            } = statement
            {
                let id = release.release_id.as_str();
                let mut key = vec![b'r'];
                key.extend_from_slice(id.as_bytes());
                if new_releases.contains(&id)
                    || in_flight.iter().any(|r| r == id)
                    || self.db.get_pinned_cf(retention, &key)?.is_some()
                {
                    return Err(Error::DuplicateRelease {
                        position: i,
                        release: id.into(),
                    });
                }
                new_releases.push(id);
                let until = release.support_until.0.max(
                    release
                        .issued_at
                        .0
                        .saturating_add(DOCUMENTATION_RETENTION_SECS),
                );
                let mut value = until.to_be_bytes().to_vec();
                value.extend_from_slice(&(start + i as u64).to_be_bytes());
                batch.put_cf(retention, key, value);
            }
        }
        Ok(new_releases.into_iter().map(str::to_owned).collect())
    }

    /// Signs a checkpoint of the current durable size with `signer`, whose public key `key` pins;
    /// stores it (synced) and returns the signed note.
    ///
    /// The log remembers the key of its first checkpoint and refuses any other. The signature is
    /// verified before anything is stored, so a faulty signer cannot leave a bad checkpoint behind.
    pub fn sign_checkpoint<S>(&self, key: &LogKey<'_>, signer: &S) -> Result<String>
    where
        S: signature::Signer<p256::ecdsa::Signature>,
    {
        let pin = self.check_log_key(key)?;
        let writer = lock(&self.writer); // size and root of one state
        let size = writer.frontier.size();
        let note = self.signed_note(key, signer, size, &writer.frontier.root())?;
        let mut batch = WriteBatch::default();
        self.put_checkpoint(&mut batch, size, &note, pin.as_deref())?;
        self.db.write_opt(batch, &sync())?;
        drop(writer);
        Ok(note)
    }

    /// Appends `entries` and a checkpoint over them in one synced write: the checkpoint is signed
    /// over the tree as it will be once the entries are in, *before* anything is written, so a
    /// signer that fails (an HSM error, a wrong key) leaves the log exactly as it was.
    ///
    /// The same checks as [`Vault::append`] and [`Vault::sign_checkpoint`] apply. Returns the
    /// indices assigned and the signed note.
    pub fn append_signed<E, S>(
        &self,
        entries: &[E],
        key: &LogKey<'_>,
        signer: &S,
    ) -> Result<(Range<u64>, String)>
    where
        E: AsRef<[u8]> + Sync,
        S: signature::Signer<p256::ecdsa::Signature>,
    {
        let pin = self.check_log_key(key)?;
        let mut writer = lock(&self.writer);
        let mut prepared = self.build(&writer, entries, &[])?;
        let size = prepared.next.frontier.size();
        let note = self.signed_note(key, signer, size, &prepared.next.frontier.root())?;
        self.put_checkpoint(&mut prepared.batch, size, &note, pin.as_deref())?;
        self.db.write_opt(prepared.batch, &sync())?;
        *writer = prepared.next;
        self.size.store(prepared.range.end, Ordering::Release);
        Ok((prepared.range, note))
    }

    /// Appends `entries` with a checkpoint someone else signed (a mirror importing a transfer
    /// bundle): the note must be signed by `key` (pinned like [`Vault::sign_checkpoint`]'s) and
    /// commit to exactly the tree these entries make. Entries and checkpoint go in one synced
    /// write; on any mismatch nothing is written.
    pub fn append_with_checkpoint<E: AsRef<[u8]> + Sync>(
        &self,
        entries: &[E],
        note: &str,
        key: &LogKey<'_>,
    ) -> Result<Range<u64>> {
        let pin = self.check_log_key(key)?;
        let checkpoint = Checkpoint::parse(note.as_bytes())
            .map_err(|e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))?;
        checkpoint
            .verify(key, &Software)
            .map_err(Error::Checkpoint)?;
        let mut writer = lock(&self.writer);
        let mut prepared = self.build(&writer, entries, &[])?;
        let size = prepared.next.frontier.size();
        if checkpoint.size.0 != size || checkpoint.root != prepared.next.frontier.root() {
            return Err(Error::BadBundle(format!(
                "the checkpoint (size {}) does not commit to this log with these entries (size {size})",
                checkpoint.size.0
            )));
        }
        self.put_checkpoint(&mut prepared.batch, size, note, pin.as_deref())?;
        self.db.write_opt(prepared.batch, &sync())?;
        *writer = prepared.next;
        self.size.store(prepared.range.end, Ordering::Release);
        Ok(prepared.range)
    }

    /// Checks `key` is for this log and is the pinned log key; returns its SPKI if none is pinned
    /// yet (the checkpoint about to be stored pins it).
    fn check_log_key(&self, key: &LogKey<'_>) -> Result<Option<Vec<u8>>> {
        if key.origin != self.origin {
            return Err(Error::WrongOrigin {
                expected: self.origin.clone(),
                found: key.origin.into(),
            });
        }
        let pinned = self.db.get_cf(self.cf(META)?, META_LOG_KEY)?;
        let spki = key.public.spki_der();
        match pinned {
            Some(p) if p.as_slice() != spki.as_slice() => Err(Error::Checkpoint(
                cairn_verifier::Error::CheckpointKeyMissing,
            )),
            Some(_) => Ok(None),
            None => Ok(Some(spki.to_vec())),
        }
    }

    /// Signs the checkpoint of (`size`, `root`) and verifies the signature before returning it,
    /// so a faulty signer cannot leave a bad checkpoint behind.
    fn signed_note<S>(&self, key: &LogKey<'_>, signer: &S, size: u64, root: &Hash) -> Result<String>
    where
        S: signature::Signer<p256::ecdsa::Signature>,
    {
        let body = note::write::body(&self.origin, TreeSize(size), root, &[]);
        let note =
            note::write::sign(&body, key, signer).map_err(|e| Error::Signing(e.to_string()))?;
        Checkpoint::parse(note.as_bytes())
            .map_err(|e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))?
            .verify(key, &Software)
            .map_err(|_| Error::SignatureInvalid)?;
        Ok(note)
    }

    fn put_checkpoint(
        &self,
        batch: &mut WriteBatch,
        size: u64,
        note: &str,
        pin: Option<&[u8]>,
    ) -> Result<()> {
        batch.put_cf(self.cf(CHECKPOINTS)?, index_key(size), note.as_bytes());
        if let Some(spki) = pin {
            batch.put_cf(self.cf(META)?, META_LOG_KEY, spki);
        }
        Ok(())
    }

    /// The public key the log's checkpoints are signed with (set by the first checkpoint).
    pub fn log_key(&self) -> Result<Option<PublicKey>> {
        let spki = self.db.get_cf(self.cf(META)?, META_LOG_KEY)?;
        spki.map(|s| {
            PublicKey::from_spki_der(&s).ok_or_else(|| Error::Corrupt {
                what: "pinned log key is not a P-256 SPKI".into(),
            })
        })
        .transpose()
    }

    /// The stored checkpoint of `size`, if any.
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>> {
        self.db
            .get_cf(self.cf(CHECKPOINTS)?, index_key(size))?
            .map(|v| {
                String::from_utf8(v).map_err(|_| Error::Corrupt {
                    what: format!("checkpoint {size} is not UTF-8"),
                })
            })
            .transpose()
    }

    /// The newest stored checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<String>> {
        let mut it = self
            .db
            .iterator_cf(self.cf(CHECKPOINTS)?, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, v) = item?;
                String::from_utf8(v.to_vec())
                    .map(Some)
                    .map_err(|_| Error::Corrupt {
                        what: "latest checkpoint is not UTF-8".into(),
                    })
            }
        }
    }

    /// Sizes of every stored checkpoint, ascending.
    pub fn checkpoint_sizes(&self) -> Result<Vec<u64>> {
        self.db
            .iterator_cf(self.cf(CHECKPOINTS)?, IteratorMode::Start)
            .map(|item| {
                let (k, _) = item?;
                u64_at(&k, 0).ok_or_else(|| Error::Corrupt {
                    what: "checkpoint key".into(),
                })
            })
            .collect()
    }

    /// The entry at `index`, checked against its leaf hash in the tiles before it is returned:
    /// a tampered entry is an error, never served as evidence.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>> {
        let size = self.size();
        if index >= size {
            return Err(Error::BeyondTree { index, size });
        }
        if self.pruned(index)? {
            return Err(Error::Pruned { index });
        }
        let entry = self.stored_entry(index)?;
        let tiles = self.at(size)?.leaf_hash(index)?;
        if leaf_hash(&Software, &entry) != tiles {
            return Err(Error::Corrupt {
                what: format!("entry {index} does not hash to its leaf hash in the tiles"),
            });
        }
        Ok(entry)
    }

    /// The entries at `indices` (strictly increasing, below the size), each with its leaf hash,
    /// read one entry bundle and one level-0 tile at a time and checked against the tiles as
    /// [`Vault::entry`] checks one. For evidence packs: a million entries without a million
    /// tile reads.
    pub fn entries_at(&self, indices: &[u64]) -> Result<Vec<(Hash, Vec<u8>)>> {
        let size = self.size();
        let width = BUNDLE_WIDTH as u64;
        let mut out = Vec::with_capacity(indices.len());
        for group in indices.chunk_by(|a, b| a / width == b / width) {
            let b = group[0] / width;
            let last = group[group.len() - 1];
            if last >= size {
                return Err(Error::BeyondTree { index: last, size });
            }
            let stored = self.stored_bundle(b)?;
            let entries = bundle::entries(b, &stored)?;
            let (tile, _, _) = locate(0, b * width);
            let blob = self
                .db
                .get_pinned_cf(self.cf(TILES)?, tile_key(tile))?
                .ok_or_else(|| Error::Corrupt {
                    what: format!("level-0 tile {b} is missing"),
                })?;
            let tile = TileBlob::parse(tile, &blob)?;
            for &index in group {
                let at = usize::try_from(index % width).unwrap_or(BUNDLE_WIDTH);
                let entry = entries.get(at).ok_or_else(|| Error::Corrupt {
                    what: format!("entry bundle {b} has no entry {index}"),
                })?;
                if entry.is_empty() && self.pruned(index)? {
                    return Err(Error::Pruned { index });
                }
                let hash = leaf_hash(&Software, entry);
                if tile.node(0, at) != Some(hash) {
                    return Err(Error::Corrupt {
                        what: format!("entry {index} does not hash to its leaf hash in the tiles"),
                    });
                }
                out.push((hash, entry.to_vec()));
            }
        }
        Ok(out)
    }

    /// Entry bundle `b` as stored (pinned in the block cache, not copied).
    pub(crate) fn stored_bundle(&self, b: u64) -> Result<rocksdb::DBPinnableSlice<'_>> {
        self.db
            .get_pinned_cf(self.cf(BUNDLES)?, index_key(b))?
            .ok_or_else(|| Error::Corrupt {
                what: format!(
                    "entry bundle {b} (entries {} to {}) is missing",
                    b * BUNDLE_WIDTH as u64,
                    (b + 1) * BUNDLE_WIDTH as u64 - 1
                ),
            })
    }

    /// The stored bytes of entry `index`, unchecked.
    pub(crate) fn stored_entry(&self, index: u64) -> Result<Vec<u8>> {
        let b = index / BUNDLE_WIDTH as u64;
        let stored = self.stored_bundle(b)?;
        let entries = bundle::entries(b, &stored)?;
        let at = usize::try_from(index % BUNDLE_WIDTH as u64).unwrap_or(BUNDLE_WIDTH);
        entries
            .get(at)
            .map(|e| e.to_vec())
            .ok_or_else(|| Error::Corrupt {
                what: format!("entry bundle {b} has no entry {index}"),
            })
    }

    /// Whether entry `index` was deleted after its retention period.
    pub fn pruned(&self, index: u64) -> Result<bool> {
        let mut key = vec![b'p'];
        key.extend_from_slice(&index_key(index));
        Ok(self.db.get_pinned_cf(self.cf(RETENTION)?, key)?.is_some())
    }

    /// Indices of the entries whose leaf hash is `hash` (the same entry may be logged twice).
    ///
    /// Reads the records of one bucket (one per batch that had a leaf in it), finds the 8-byte
    /// prefix by binary search in each, and confirms every candidate against the tiles.
    pub fn find_leaf(&self, hash: &Hash) -> Result<Vec<u64>> {
        let size = self.size();
        let tree = self.at(size)?;
        let mut found = Vec::new();
        let prefix = &hash[..8];
        for item in self.db.prefix_iterator_cf(self.cf(LEAVES)?, [hash[0]]) {
            let (k, v) = item?;
            if k.first() != Some(&hash[0]) {
                break;
            }
            if v.len() % 16 != 0 {
                return Err(Error::Corrupt {
                    what: format!(
                        "leaf lookup record {} is {} bytes",
                        hex::encode(&k),
                        v.len()
                    ),
                });
            }
            let pairs: Vec<&[u8]> = v.chunks_exact(16).collect();
            let first = pairs.partition_point(|p| &p[..8] < prefix);
            for p in &pairs[first..] {
                if &p[..8] != prefix {
                    break;
                }
                let index = u64_at(p, 8).unwrap_or(u64::MAX);
                if index < size && tree.leaf_hash(index)? == *hash {
                    found.push(index);
                }
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    /// A view of the tree at `size` (at most the durable size) for computing roots and proofs.
    pub fn at(&self, size: u64) -> Result<TreeAt<'_>> {
        let log_size = self.size();
        if size > log_size {
            return Err(Error::SizeBeyondLog { size, log_size });
        }
        Ok(TreeAt { vault: self, size })
    }

    /// An inclusion proof of entry `index` in the stored checkpoint of size `size`, verified
    /// against that checkpoint's root before it is returned.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<InclusionProof> {
        let (checkpoint, root) = self.signed_root(size)?;
        self.at(size)?; // the size is within the log
        let tree = Memo::new(self);
        let proof = tree::inclusion_proof(&tree, index, size)?;
        let leaf_hash = tree.node(0, index)?;
        verify_inclusion(&leaf_hash, index, size, &proof, &root)
            .map_err(|cause| Error::ProofSelfCheck { size, cause })?;
        Ok(InclusionProof {
            checkpoint: checkpoint.to_string(),
            size,
            index,
            leaf_hash,
            proof,
        })
    }

    /// A consistency proof between the stored checkpoints of sizes `old` and `new`, verified
    /// against both roots before it is returned.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<ConsistencyProof> {
        let (old_cp, old_root) = self.signed_root(old)?;
        let (new_cp, new_root) = self.signed_root(new)?;
        self.at(new)?;
        let proof = tree::consistency_proof(&Memo::new(self), old, new)?;
        verify_consistency(old, new, &proof, &old_root, &new_root)
            .map_err(|cause| Error::ProofSelfCheck { size: new, cause })?;
        Ok(ConsistencyProof {
            old: old_cp.to_string(),
            new: new_cp.to_string(),
            proof,
        })
    }

    /// The stored checkpoint of `size` and its root, parsed once and then kept in memory.
    fn signed_root(&self, size: u64) -> Result<(Arc<str>, Hash)> {
        if let Some(found) = self
            .checkpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&size)
        {
            return Ok(found.clone());
        }
        let note = self.checkpoint(size)?.ok_or(Error::NoCheckpoint { size })?;
        let root = checkpoint_root(&note)?;
        let entry = (Arc::<str>::from(note), root);
        let mut cache = self
            .checkpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= TILE_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(size, entry.clone());
        Ok(entry)
    }

    /// The runs of entries matching `query`, in log order.
    pub fn query(&self, query: Query<'_>) -> Result<Vec<Range<u64>>> {
        let evidence = self.cf(EVIDENCE)?;
        let size = self.size();
        let (lower, upper) = match query {
            Query::Kind(k) => prefix_bounds(evidence_prefix(
                Dimension::Kind,
                &EvidenceValue::Number(k.0),
            )),
            Query::Release(r) => {
                prefix_bounds(evidence_prefix(Dimension::Release, &EvidenceValue::Text(r)))
            }
            Query::Device(d) => return self.device_entries(d),
            Query::Campaign(c) => prefix_bounds(evidence_prefix(
                Dimension::Campaign,
                &EvidenceValue::Text(c),
            )),
            Query::Time { from, to } => {
                let lower = evidence_prefix(Dimension::Time, &layout::time_value(from));
                let upper = match to.0.checked_add(1) {
                    Some(after) => {
                        evidence_prefix(Dimension::Time, &layout::time_value(UnixTime(after)))
                    }
                    None => vec![Dimension::Time as u8 + 1],
                };
                (lower, upper)
            }
        };
        let mut runs = Vec::new();
        for item in self
            .db
            .iterator_cf(evidence, IteratorMode::From(&lower, Direction::Forward))
        {
            let (k, v) = item?;
            if k.as_ref() >= upper.as_slice() {
                break;
            }
            let first = u64_at(&k, k.len().saturating_sub(8)).ok_or_else(|| Error::Corrupt {
                what: "evidence key".into(),
            })?;
            let end = u64_at(&v, 0).ok_or_else(|| Error::Corrupt {
                what: "evidence value".into(),
            })?;
            if first < size {
                runs.push(first..end.min(size));
            }
        }
        runs.sort_by_key(|r| r.start);
        Ok(runs)
    }

    /// Entries about device `d`, from its bucket's records.
    fn device_entries(&self, d: &str) -> Result<Vec<Range<u64>>> {
        let size = self.size();
        let prefix = [Dimension::Device as u8, bundle::bucket(d.as_bytes())];
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(EVIDENCE)?, prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            for (device, index) in device_records(&v)? {
                if device == d.as_bytes() && index < size {
                    out.push(index..index + 1);
                }
            }
        }
        out.sort_by_key(|r| r.start);
        Ok(out)
    }

    /// Every entry index matching `query`, in log order.
    pub fn query_indices(&self, query: Query<'_>) -> Result<Vec<u64>> {
        Ok(self.query(query)?.into_iter().flatten().collect())
    }

    /// The retention state of a release.
    pub fn retention(&self, release: &str) -> Result<Option<Retention>> {
        let mut key = vec![b'r'];
        key.extend_from_slice(release.as_bytes());
        Ok(self.db.get_cf(self.cf(RETENTION)?, key)?.and_then(|v| {
            Some(Retention {
                until: UnixTime(u64_at(&v, 0)?),
                release_index: u64_at(&v, 8)?,
            })
        }))
    }

    /// Deletes the bodies of every entry about `release` (the release statement, its manifests and
    /// other evidence), keeping their leaf hashes in the tiles so the log and its proofs stay
    /// verifiable. Refused before the release's retention period ends (CRA Art. 13(8) and (13)):
    /// nothing is deleted then. Returns the number of entries pruned.
    pub fn prune_release(&self, release: &str, now: UnixTime) -> Result<u64> {
        let retention = self
            .retention(release)?
            .ok_or_else(|| Error::UnknownRelease(release.into()))?;
        if now < retention.until {
            return Err(Error::RetentionActive {
                release: release.into(),
                until: retention.until,
                now,
            });
        }
        let mut writer = lock(&self.writer);
        let (bundles, keep) = (self.cf(BUNDLES)?, self.cf(RETENTION)?);
        let mut batch = WriteBatch::default();
        let indices = self.query_indices(Query::Release(release))?;
        // Rewrite each bundle with the pruned entries emptied (no statement is empty).
        let mut partial = None;
        for group in indices.chunk_by(|a, b| a / BUNDLE_WIDTH as u64 == b / BUNDLE_WIDTH as u64) {
            let b = group[0] / BUNDLE_WIDTH as u64;
            let stored = self
                .db
                .get_cf(bundles, index_key(b))?
                .ok_or_else(|| Error::Corrupt {
                    what: format!("entry bundle {b} is missing"),
                })?;
            let mut rewritten = Vec::with_capacity(stored.len());
            let entries = bundle::entries(b, &stored)?;
            for (i, e) in entries.iter().enumerate() {
                let index = b * BUNDLE_WIDTH as u64 + i as u64;
                bundle::push(&mut rewritten, if group.contains(&index) { &[] } else { e });
            }
            if entries.len() < BUNDLE_WIDTH {
                partial = Some((rewritten.clone(), entries.len()));
            }
            batch.put_cf(bundles, index_key(b), rewritten);
        }
        for index in &indices {
            let mut key = vec![b'p'];
            key.extend_from_slice(&index_key(*index));
            batch.put_cf(keep, key, now.0.to_be_bytes());
        }
        self.db.write_opt(batch, &sync())?;
        if let Some((bytes, count)) = partial {
            writer.bundle = bytes;
            writer.bundle_count = count;
        }
        Ok(indices.len() as u64)
    }

    /// A tile blob, full tiles of level ≥ 1 from the cache.
    pub(crate) fn tile(&self, id: TileId) -> Result<Option<Arc<[u8]>>> {
        if id.level > 0
            && let Some(t) = self
                .cache
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
        {
            return Ok(Some(Arc::clone(t)));
        }
        let Some(blob) = self.db.get_pinned_cf(self.cf(TILES)?, tile_key(id))? else {
            return Ok(None);
        };
        let blob: Arc<[u8]> = Arc::from(&*blob);
        if id.level > 0 && TileBlob::parse(id, &blob)?.width() == TILE_WIDTH {
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= TILE_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(id, Arc::clone(&blob));
        }
        Ok(Some(blob))
    }

    /// Reads one node through the tile that holds it (level-0 tiles without copying them).
    fn node(&self, height: u32, index: u64) -> Result<Hash> {
        let (id, row, position) = locate(height, index);
        let missing = || Error::Corrupt {
            what: format!(
                "node {height}/{index} missing from tile {}/{}",
                id.level, id.index
            ),
        };
        if id.level == 0 {
            let blob = self
                .db
                .get_pinned_cf(self.cf(TILES)?, tile_key(id))?
                .ok_or_else(missing)?;
            return TileBlob::parse(id, &blob)?
                .node(row, position)
                .ok_or_else(missing);
        }
        let blob = self.tile(id)?.ok_or_else(missing)?;
        TileBlob::parse(id, &blob)?
            .node(row, position)
            .ok_or_else(missing)
    }

    /// Raw access for fsck and export.
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }
}

/// The tree at one size.
#[derive(Debug, Clone, Copy)]
pub struct TreeAt<'a> {
    vault: &'a Vault,
    size: u64,
}

impl TreeAt<'_> {
    /// The root of the perfect subtree of `n` leaves starting at leaf `start`.
    pub fn subtree(&self, start: u64, n: u64) -> Result<Hash> {
        tree::subtree_hash(self, start, n)
    }

    /// A multi-leaf proof of the `selected` leaves (strictly increasing) in this tree
    /// ([`tree::multi_proof`]).
    pub fn multi_proof(&self, selected: &[u64]) -> Result<Vec<Hash>> {
        tree::multi_proof(self, selected, self.size)
    }
}

impl NodeSource for TreeAt<'_> {
    fn node(&self, height: u32, index: u64) -> Result<Hash> {
        self.vault.node(height, index)
    }
}

impl TreeAt<'_> {
    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 9162 root hash.
    pub fn root(&self) -> Result<Hash> {
        tree::root(self, self.size)
    }

    /// The leaf hash of entry `index`, from the tiles.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash> {
        if index >= self.size {
            return Err(Error::BeyondTree {
                index,
                size: self.size,
            });
        }
        self.vault.node(0, index)
    }

    /// Inclusion proof of `index` (not checked against a checkpoint; see `Vault::prove_inclusion`).
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>> {
        tree::inclusion_proof(self, index, self.size)
    }

    /// Consistency proof from `old` to this size.
    pub fn consistency_proof(&self, old: u64) -> Result<Vec<Hash>> {
        tree::consistency_proof(self, old, self.size)
    }
}

/// Node reads for one proof: every tile it needs is read once (level-0 tiles pinned in RocksDB's
/// block cache, not copied; upper tiles from the vault's cache), however many nodes come from it.
struct Memo<'a> {
    vault: &'a Vault,
    tiles: std::cell::RefCell<Vec<(TileId, Tile<'a>)>>,
}

enum Tile<'a> {
    Pinned(rocksdb::DBPinnableSlice<'a>),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Tile<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Tile::Pinned(p) => p,
            Tile::Shared(s) => s,
        }
    }
}

impl<'a> Memo<'a> {
    fn new(vault: &'a Vault) -> Self {
        Self {
            vault,
            tiles: std::cell::RefCell::new(Vec::with_capacity(8)),
        }
    }
}

impl NodeSource for Memo<'_> {
    fn node(&self, height: u32, index: u64) -> Result<Hash> {
        let (id, row, position) = locate(height, index);
        let missing = || Error::Corrupt {
            what: format!(
                "node {height}/{index} missing from tile {}/{}",
                id.level, id.index
            ),
        };
        let mut tiles = self.tiles.borrow_mut();
        let at = if let Some(at) = tiles.iter().position(|(t, _)| *t == id) {
            at
        } else {
            let tile = if id.level == 0 {
                let cf = self.vault.cf(TILES)?;
                Tile::Pinned(
                    self.vault
                        .db
                        .get_pinned_cf(cf, tile_key(id))?
                        .ok_or_else(missing)?,
                )
            } else {
                Tile::Shared(self.vault.tile(id)?.ok_or_else(missing)?)
            };
            tiles.push((id, tile));
            tiles.len() - 1
        };
        TileBlob::parse(id, &tiles[at].1)?
            .node(row, position)
            .ok_or_else(missing)
    }
}

/// The root hash of a checkpoint note (its signature is checked by whoever stored it).
fn checkpoint_root(note: &str) -> Result<Hash> {
    Checkpoint::parse(note.as_bytes())
        .map(|c| c.root)
        .map_err(|e| Error::Corrupt {
            what: format!("stored checkpoint does not parse: {e}"),
        })
}

fn prefix_bounds(prefix: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let mut upper = prefix.clone();
    // The prefix never ends in 0xff for text values (length byte then ASCII) or numbers followed
    // by the 8-byte first index, but be exact anyway: increment with carry.
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            break;
        }
    }
    (prefix, upper)
}

/// The `(device id, index)` records of one device bucket record.
pub(crate) fn device_records(value: &[u8]) -> Result<Vec<(&[u8], u64)>> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        let (Some(device), Some(index)) = (tail.get(..len), u64_at(tail, len)) else {
            return Err(Error::Corrupt {
                what: "device index record is truncated".into(),
            });
        };
        out.push((device, index));
        rest = &tail[len + 8..];
    }
    Ok(out)
}

/// Checks, decodes and hashes a batch: on every core for large batches. The error is the first
/// bad entry's, by position.
fn prepare<E: AsRef<[u8]> + Sync>(entries: &[E]) -> Result<(Vec<Statement<'_>>, Vec<Hash>)> {
    const PER_THREAD_MIN: usize = 1024;
    fn one<E: AsRef<[u8]>>(offset: usize, chunk: &[E]) -> Result<Vec<(Statement<'_>, Hash)>> {
        chunk
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let (position, entry) = (offset + i, entry.as_ref());
                if entry.len() > MAX_ENTRY_LEN {
                    return Err(Error::EntryTooLarge {
                        position,
                        len: entry.len(),
                        max: MAX_ENTRY_LEN,
                    });
                }
                let statement = Statement::decode(entry)
                    .map_err(|cause| Error::BadEntry { position, cause })?;
                Ok((statement, leaf_hash(&Software, entry)))
            })
            .collect()
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let parts: Vec<Result<Vec<(Statement<'_>, Hash)>>> =
        if entries.len() < 2 * PER_THREAD_MIN || threads == 1 {
            vec![one(0, entries)]
        } else {
            let chunk = entries.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = entries
                    .chunks(chunk)
                    .enumerate()
                    .map(|(n, c)| s.spawn(move || one(n * chunk, c)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
    let mut statements = Vec::with_capacity(entries.len());
    let mut hashes = Vec::with_capacity(entries.len());
    for part in parts {
        for (statement, hash) in part? {
            statements.push(statement);
            hashes.push(hash);
        }
    }
    Ok((statements, hashes))
}

/// Number of hashes of height `8 × level` complete in a tree of `size` leaves.
pub(crate) fn complete_at_level(size: u64, level: u8) -> u64 {
    let shift = TILE_HEIGHT * u32::from(level);
    if shift >= 64 { 0 } else { size >> shift }
}
