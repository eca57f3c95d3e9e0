//! The indexes written with every batch: the leaf-hash lookup (hash prefix to index, per bucket)
//! and the evidence index (runs by kind, release, campaign and time; device records per bucket),
//! and the queries answered from them, never by scanning the log. Layout: docs/log.md.

use std::ops::{ControlFlow, Range};

use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::{Hash, UnixTime};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::bundle;
use crate::error::{Error, Result};
use crate::layout::{
    self, Dimension, EVIDENCE, EvidenceValue, LEAVES, bucket_key, evidence_prefix, u64_at,
};
use crate::vault::Vault;

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

impl Vault {
    /// The leaf-hash lookup records of a batch: per bucket (first byte of the hash), the sorted
    /// 8-byte hash prefixes with their indices. A batch costs at most 256 records however large it
    /// is; a lookup reads one bucket's records and confirms candidates against the tiles.
    pub(crate) fn leaf_buckets(
        &self,
        batch: &mut WriteBatch,
        start: u64,
        hashes: &[Hash],
    ) -> Result<()> {
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

    /// Evidence index runs for a batch starting at `start`, then its retention records
    /// ([`Vault::retention_records`]); returns the new release ids.
    pub(crate) fn index_batch(
        &self,
        batch: &mut WriteBatch,
        start: u64,
        statements: &[Statement<'_>],
        in_flight: &[String],
    ) -> Result<Vec<String>> {
        type ValueOf = for<'s, 'e> fn(&'s Statement<'e>) -> Option<EvidenceValue<'e>>;
        let evidence = self.cf(EVIDENCE)?;
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
        self.retention_records(batch, start, statements, in_flight)
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

    /// The runs of entries matching `query`, in log order.
    pub fn query(&self, query: Query<'_>) -> Result<Vec<Range<u64>>> {
        let mut runs = Vec::new();
        self.each_run(query, &mut |run| {
            runs.push(run);
            Ok(ControlFlow::Continue(()))
        })?;
        runs.sort_by_key(|r| r.start);
        Ok(runs)
    }

    /// The runs of entries matching `query`, handed to `f` as the index yields them (in log order
    /// but for `Query::Time`, whose runs come by time) until `f` breaks: a lookup that needs the
    /// first match reads one key, not every run. A release's manifests alternate with its
    /// rollback target's in a plan, so a release of a million devices has a million runs
    /// (docs/scale.md, fix 11).
    pub(crate) fn each_run(
        &self,
        query: Query<'_>,
        f: &mut dyn FnMut(Range<u64>) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
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
            Query::Device(d) => {
                for run in self.device_entries(d)? {
                    if f(run)?.is_break() {
                        break;
                    }
                }
                return Ok(());
            }
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
            if first < size && f(first..end.min(size))?.is_break() {
                break;
            }
        }
        Ok(())
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
