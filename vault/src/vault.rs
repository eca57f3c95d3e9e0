//! The vault: one RFC 9162 log in one RocksDB database, one writer and any number of readers.
//!
//! Durability protocol (docs/log.md): a batch of entries, their leaf-hash lookups, evidence index
//! runs, every tile it touches and the new tree size go into one RocksDB `WriteBatch`, written with
//! the WAL synced (`fsync`) before [`Vault::append`] returns. The in-memory size that readers and
//! the checkpoint signer see is advanced only after that. A checkpoint is signed over that size and
//! root, so it can only commit to entries that are already durable; it is then stored with its own
//! synced write.
//!
//! This module holds the [`Vault`] itself (its state, create and open); each concern adds its own
//! `impl Vault` block: `store` (appends, checkpoints, entries), `index` (leaf-hash lookup and
//! evidence queries), `proofs` (the tree at a size, inclusion and consistency proofs), `retention`
//! (retention records and pruning), `fsck` and `export`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use cairn_verifier::types::Hash;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBRecoveryMode,
    IteratorMode, Options, WriteBatch, WriteOptions,
};

use crate::bundle::{self, BUNDLE_WIDTH};
use crate::error::{Error, Result, io};
use crate::layout::{self, COLUMN_FAMILIES, META, META_FORMAT, META_ORIGIN, META_SIZE, u64_at};
use crate::tree::{Frontier, TileBlob, TileId};

/// What the single writer keeps between appends: the right edge of the tree and of the entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Writer {
    pub(crate) frontier: Frontier,
    /// The partial entry bundle (fewer than 256 entries), as stored.
    pub(crate) bundle: Vec<u8>,
    /// Entries in it.
    pub(crate) bundle_count: usize,
}

/// A transparency log on RocksDB.
pub struct Vault {
    pub(crate) db: DB,
    pub(crate) path: PathBuf,
    pub(crate) origin: String,
    /// Durable tree size, published to readers after each synced append.
    pub(crate) size: AtomicU64,
    /// The single writer's state.
    pub(crate) writer: Mutex<Writer>,
    /// Full tiles of level 1 and up (immutable once full), for proofs.
    pub(crate) cache: RwLock<HashMap<TileId, Arc<[u8]>>>,
    /// Stored checkpoints, parsed (immutable once stored), for proofs.
    pub(crate) checkpoints: RwLock<HashMap<u64, (Arc<str>, Hash)>>,
    /// Set by the first failed write: the error, which every later write returns (fsyncgate).
    pub(crate) poisoned: Mutex<Option<String>>,
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

/// RocksDB info logs (`LOG`, `LOG.old.*`) kept beside a store.
const KEEP_INFO_LOGS: usize = 10;

fn options() -> Options {
    let mut opts = Options::default();
    opts.create_missing_column_families(true);
    opts.set_paranoid_checks(true);
    // A torn record at the end of the WAL was never acknowledged (its sync had not returned), so
    // it may be dropped; corruption anywhere else stops the open instead of silently losing data.
    opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    // What a power cut needs (docs/log.md, "Power loss"; vault/tests/power.rs checks the OPTIONS
    // file): every write goes through the WAL, a synced write reaches the WAL file and is synced
    // before it returns (no buffering in RocksDB until a manual `FlushWAL`). Flushes are atomic
    // across column families: a batch whose sync failed stays in the WAL, and RocksDB's recovery
    // from ENOSPC flushes memtables; flushing some column families only would let the next open
    // replay that batch into the others alone (an entry bundle or a checkpoint without its size).
    opts.set_manual_wal_flush(false);
    opts.set_atomic_flush(true);
    opts.set_max_background_jobs(2);
    // RocksDB's diagnostic log: a new `LOG` at every open, the old one renamed `LOG.old.<time>`
    // and, by default, 1,000 of them kept. An appliance opened once a command would keep a
    // thousand; ten are plenty to read what happened around a fault.
    opts.set_keep_log_file_num(KEEP_INFO_LOGS);
    opts.set_write_buffer_size(128 << 20);
    opts.set_max_write_buffer_number(4);
    opts.set_level_compaction_dynamic_level_bytes(true);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(256 << 20));
    table.set_block_size(16 << 10);
    opts.set_block_based_table_factory(&table);
    opts
}

pub(crate) fn sync() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        if !resuming && path.exists() && !only_create_leftovers(&path)? {
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
            poisoned: Mutex::new(None),
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

    /// Writes `batch` with the WAL synced, unless an earlier write failed.
    ///
    /// A failed write poisons this handle: after a failed `fsync` the kernel may have dropped the
    /// dirty pages it could not write and reports the next `fsync` as a success (PostgreSQL's
    /// "fsyncgate", 2018), so what RocksDB has in memory and what is on disk may differ. The only
    /// safe continuation is to reopen the log, which recovers from what is durable; until then
    /// every write returns [`Error::Poisoned`]. Reads of the published (acknowledged) state go on.
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<()> {
        let mut poisoned = lock(&self.poisoned);
        if let Some(cause) = poisoned.as_ref() {
            return Err(Error::Poisoned {
                path: self.path.clone(),
                cause: cause.clone(),
            });
        }
        self.db.write_opt(batch, &sync()).map_err(|e| {
            *poisoned = Some(e.to_string());
            Error::Storage(e)
        })
    }

    /// The error of the write that poisoned this handle, if one failed (see [`Error::Poisoned`]).
    pub fn poisoned(&self) -> Option<String> {
        lock(&self.poisoned).clone()
    }

    /// Raw access for fsck and export.
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }
}

/// Whether `path` (a directory with no RocksDB `CURRENT` file) holds nothing, or only what a
/// RocksDB create that failed before writing `CURRENT` leaves (a failed sync, a kill): its lock,
/// info log, identity, manifest, options and WAL files. Such a directory holds no log (RocksDB
/// reads nothing without `CURRENT`), so `create` may start it again; anything else is someone's
/// data and is refused.
fn only_create_leftovers(path: &Path) -> Result<bool> {
    for entry in std::fs::read_dir(path).map_err(io(path))? {
        let entry = entry.map_err(io(path))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let leftover = entry.file_type().map_err(io(path))?.is_file()
            && (name == "LOCK"
                || name == "IDENTITY"
                || name.starts_with("LOG")
                || name.starts_with("MANIFEST-")
                || name.starts_with("OPTIONS-")
                || name.ends_with(".log")
                || name.ends_with(".dbtmp"));
        if !leftover {
            return Ok(false);
        }
    }
    Ok(true)
}
