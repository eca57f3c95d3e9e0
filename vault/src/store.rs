//! Appending (single and pipelined batches, with or without a checkpoint), checkpoints, and
//! reading entries back checked against the tiles. The durability protocol is in `vault.rs`'s
//! module documentation and docs/log.md.

use std::ops::Range;
use std::sync::atomic::Ordering;

use cairn_verifier::counts::{self, COUNTED, KindCounts};
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::{self, Checkpoint, LogKey};
use cairn_verifier::statement::{EntryHeader, Statement};
use cairn_verifier::types::{Hash, TreeSize};
use rocksdb::{IteratorMode, WriteBatch};

use crate::bundle::{self, BUNDLE_WIDTH};
use crate::error::{Error, Result};
use crate::index::Query;
use crate::layout::{
    BUNDLES, CHECKPOINTS, COLUMN_FAMILIES, META, META_LOG_KEY, META_SIZE, TILES, index_key,
    tile_key, u64_at,
};
use crate::tree::{TileBlob, locate};
use crate::vault::{Vault, Writer, lock};

/// Largest entry: C2SP tlog-tiles entry bundles prefix each entry with a 16-bit length.
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Entries between the intermediate checkpoints [`Vault::append_signed`] signs inside one large
/// append: every multiple of this size the append crosses gets a checkpoint of its own, so the log
/// can be cut there into transfer bundles of at most `MAX_BUNDLE_ENTRIES` (formats.md §6,
/// "Ranged bundles"). A power of two, so the cuts fall on tile boundaries.
pub const CHECKPOINT_SPAN: u64 = 1 << 20;

/// One batch, ready to be written.
struct Prepared {
    batch: WriteBatch,
    /// The writer state once it is written.
    next: Writer,
    range: Range<u64>,
    /// Release ids it adds.
    releases: Vec<String>,
    /// The roots of the tree at the sizes `build` was asked to cut at, in order.
    cut_roots: Vec<Hash>,
}

impl Vault {
    /// Appends a batch of entries, atomically and durably: when this returns `Ok`, every entry is
    /// on disk (WAL synced) with its tiles and index; on `Err`, nothing of the batch was stored.
    ///
    /// Every entry must be a statement of a known kind (`cairn_verifier::statement::Statement`) no
    /// larger than [`MAX_ENTRY_LEN`]; release ids must be new. Returns the indices assigned.
    pub fn append<E: AsRef<[u8]> + Sync>(&self, entries: &[E]) -> Result<Range<u64>> {
        let mut writer = lock(&self.writer);
        let prepared = self.build(&writer, entries, &[], &[])?;
        self.write_synced(prepared.batch)?;
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
                    let prepared = self.build(&state, batch.as_ref(), &in_flight, &[]);
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
                self.write_synced(prepared.batch)?;
                *writer = prepared.next;
                self.size.store(prepared.range.end, Ordering::Release);
                ack(prepared.range);
            }
            Ok(writer.frontier.size() - first)
        })
    }

    /// Everything one batch writes, built from the writer state `state` without touching it.
    /// `in_flight`: release ids of batches prepared but not yet written. `cuts`: tree sizes
    /// strictly inside the batch, ascending, whose roots are returned in `cut_roots`.
    fn build<E: AsRef<[u8]> + Sync>(
        &self,
        state: &Writer,
        entries: &[E],
        in_flight: &[String],
        cuts: &[u64],
    ) -> Result<Prepared> {
        if entries.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let (statements, hashes) = prepare(entries)?;
        let start = state.frontier.size();
        let end = start + entries.len() as u64;
        let mut next = state.clone();
        let mut tiles = Vec::new();
        let mut cut_roots = Vec::with_capacity(cuts.len());
        let mut done = 0usize;
        for &cut in cuts {
            let at = usize::try_from(cut.saturating_sub(start))
                .unwrap_or(usize::MAX)
                .clamp(done, hashes.len());
            tiles.extend(next.frontier.append(&hashes[done..at]));
            cut_roots.push(next.frontier.root());
            done = at;
        }
        tiles.extend(next.frontier.append(&hashes[done..]));
        if !cuts.is_empty() {
            // A tile rewritten after a cut: only its last blob counts.
            let mut seen = std::collections::HashSet::new();
            tiles.reverse();
            tiles.retain(|(id, _)| seen.insert(*id));
            tiles.reverse();
        }

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
            cut_roots,
        })
    }

    /// Writes RocksDB's memtables to table (SST) files and waits for it. Appends do not need this:
    /// they are durable once their synced WAL write returns. It only moves what the WAL holds into
    /// table files, so the next open replays less (and tests can reach the table files).
    pub fn flush(&self) -> Result<()> {
        let mut poisoned = lock(&self.poisoned);
        if let Some(cause) = poisoned.as_ref() {
            return Err(Error::Poisoned {
                path: self.path.clone(),
                cause: cause.clone(),
            });
        }
        for name in COLUMN_FAMILIES {
            if let Err(e) = self.db.flush_cf(self.cf(name)?) {
                *poisoned = Some(e.to_string());
                return Err(Error::Storage(e));
            }
        }
        Ok(())
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
        let counts = self.kind_counts::<&[u8]>(size, &[])?;
        let floors = self.campaign_floors::<&[u8]>(size, &[])?;
        let note =
            self.signed_note(key, signer, size, &writer.frontier.root(), &counts, &floors)?;
        let mut batch = WriteBatch::default();
        self.put_checkpoint(&mut batch, size, &note, pin.as_deref())?;
        self.write_synced(batch)?;
        drop(writer);
        Ok(note)
    }

    /// Appends `entries` and a checkpoint over them in one synced write: the checkpoint is signed
    /// over the tree as it will be once the entries are in, *before* anything is written, so a
    /// signer that fails (an HSM error, a wrong key) leaves the log exactly as it was.
    ///
    /// An append that crosses multiples of [`CHECKPOINT_SPAN`] also gets a checkpoint at each
    /// of them, in the same write, so the log can be cut there into transfer bundles
    /// ([`Vault::bundle_ranges`]).
    ///
    /// The same checks as [`Vault::append`] and [`Vault::sign_checkpoint`] apply. Returns the
    /// indices assigned and the signed note of the whole append.
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
        self.append_signed_every(entries, key, signer, CHECKPOINT_SPAN)
    }

    /// [`Vault::append_signed`] with intermediate checkpoints at every multiple of `span` the
    /// append crosses (`u64::MAX`: none).
    pub fn append_signed_every<E, S>(
        &self,
        entries: &[E],
        key: &LogKey<'_>,
        signer: &S,
        span: u64,
    ) -> Result<(Range<u64>, String)>
    where
        E: AsRef<[u8]> + Sync,
        S: signature::Signer<p256::ecdsa::Signature>,
    {
        let pin = self.check_log_key(key)?;
        let mut writer = lock(&self.writer);
        let start = writer.frontier.size();
        let end = start.saturating_add(entries.len() as u64);
        let span = span.max(1);
        let cuts: Vec<u64> = (start / span + 1..)
            .map_while(|k| k.checked_mul(span).filter(|&c| c < end))
            .collect();
        let mut counts = self.kind_counts::<&[u8]>(start, &[])?;
        let mut prepared = self.build(&writer, entries, &[], &cuts)?;
        let mut counted = start;
        for (&cut, root) in cuts.iter().zip(&prepared.cut_roots) {
            add_counts(
                &mut counts,
                counted,
                &entries[pos(counted - start)..pos(cut - start)],
            );
            counted = cut;
            let floors = self.campaign_floors(start, &entries[..pos(cut - start)])?;
            let note = self.signed_note(key, signer, cut, root, &counts, &floors)?;
            self.put_checkpoint(&mut prepared.batch, cut, &note, pin.as_deref())?;
        }
        add_counts(&mut counts, counted, &entries[pos(counted - start)..]);
        let floors = self.campaign_floors(start, entries)?;
        let size = prepared.next.frontier.size();
        let root = prepared.next.frontier.root();
        let note = self.signed_note(key, signer, size, &root, &counts, &floors)?;
        self.put_checkpoint(&mut prepared.batch, size, &note, pin.as_deref())?;
        self.write_synced(prepared.batch)?;
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
        let mut prepared = self.build(&writer, entries, &[], &[])?;
        let size = prepared.next.frontier.size();
        if checkpoint.size.0 != size || checkpoint.root != prepared.next.frontier.root() {
            return Err(Error::BadBundle(format!(
                "the checkpoint (size {}) does not commit to this log with these entries (size {size})",
                checkpoint.size.0
            )));
        }
        self.put_checkpoint(&mut prepared.batch, size, note, pin.as_deref())?;
        self.write_synced(prepared.batch)?;
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

    /// The counted kinds (`counts::COUNTED`: key statements, relay checkpoint records) in the
    /// first `durable` entries (all indexed) and `pending` (about to be appended after them), for
    /// the checkpoint's `cairn-kinds` line (formats.md §2.1).
    fn kind_counts<E: AsRef<[u8]>>(&self, durable: u64, pending: &[E]) -> Result<KindCounts> {
        let mut counts = KindCounts::default();
        for (kind, count) in COUNTED.iter().zip(&mut counts) {
            for index in self.query_indices(Query::Kind(*kind))? {
                if index < durable {
                    count.add(index);
                }
            }
        }
        add_counts(&mut counts, durable, pending);
        Ok(counts)
    }

    /// Signs the checkpoint of (`size`, `root`), with the `cairn-kinds` extension line of
    /// `counts` and the `cairn-campaign-floor` lines of `floors` (formats.md §2.2), and verifies the signature before returning it, so a faulty signer cannot leave a
    /// bad checkpoint behind.
    fn signed_note<S>(
        &self,
        key: &LogKey<'_>,
        signer: &S,
        size: u64,
        root: &Hash,
        counts: &KindCounts,
        floors: &crate::floors::Floors,
    ) -> Result<String>
    where
        S: signature::Signer<p256::ecdsa::Signature>,
    {
        let kinds = counts::line(counts);
        let floor_lines = crate::floors::lines(floors);
        let mut extensions = vec![kinds.as_str()];
        extensions.extend(floor_lines.iter().map(String::as_str));
        let body = note::write::body(&self.origin, TreeSize(size), root, &extensions);
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

/// Adds the counted kinds among `entries` (the first at index `first`) to `counts`.
fn add_counts<E: AsRef<[u8]>>(counts: &mut KindCounts, first: u64, entries: &[E]) {
    for (index, entry) in (first..).zip(entries) {
        let Ok(header) = EntryHeader::peek(entry.as_ref()) else {
            continue; // refused by `build` before anything is signed
        };
        for (kind, count) in COUNTED.iter().zip(counts.iter_mut()) {
            if header.kind == *kind {
                count.add(index);
            }
        }
    }
}

/// A position in a batch (its length fits in memory, so in `usize`).
fn pos(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
