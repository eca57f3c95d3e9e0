//! Retention (CRA Art. 13(8) and (13)): a record per release of how long its evidence is kept,
//! written with the release, and pruning of the entry bodies once that time has passed (their
//! leaf hashes stay in the tiles, so the log and its proofs stay verifiable).

use cairn_verifier::statement::Statement;
use cairn_verifier::types::UnixTime;
use rocksdb::WriteBatch;

use crate::bundle::{self, BUNDLE_WIDTH};
use crate::error::{Error, Result};
use crate::index::Query;
use crate::layout::{BUNDLES, RETENTION, index_key, u64_at};
use crate::vault::{Vault, lock};

/// Documentation is retained at least ten years after the product is placed on the market
/// (CRA Art. 13(13)); cairn counts from the release's issue time.
pub const DOCUMENTATION_RETENTION_SECS: u64 = 10 * 365 * 24 * 3600 + 3 * 24 * 3600;

/// The retention state of one release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Index of the release entry.
    pub release_index: u64,
    /// Nothing about the release may be deleted before this time.
    pub until: UnixTime,
}

impl Vault {
    /// The retention records of the releases in a batch starting at `start` (one per release,
    /// keyed by its id); refuses a release id already in the log or in `in_flight`. Returns the
    /// new release ids.
    pub(crate) fn retention_records(
        &self,
        batch: &mut WriteBatch,
        start: u64,
        statements: &[Statement<'_>],
        in_flight: &[String],
    ) -> Result<Vec<String>> {
        let retention = self.cf(RETENTION)?;
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

    /// Whether entry `index` was deleted after its retention period.
    pub fn pruned(&self, index: u64) -> Result<bool> {
        let mut key = vec![b'p'];
        key.extend_from_slice(&index_key(index));
        Ok(self.db.get_pinned_cf(self.cf(RETENTION)?, key)?.is_some())
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
        self.write_synced(batch)?;
        if let Some((bytes, count)) = partial {
            writer.bundle = bytes;
            writer.bundle_count = count;
        }
        Ok(indices.len() as u64)
    }
}
