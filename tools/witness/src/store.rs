//! The witness's durable state: for each log (by origin), the latest checkpoint it cosigned; and
//! the evidence of every refused inconsistent checkpoint.
//!
//! ```text
//! <state>/logs/<hex SHA-256(origin)>.note     the latest cosigned checkpoint (the signed note)
//! <state>/evidence/<origin hash>-<stored size>-<new size>-<unix ns>/
//!     stored.note  submitted.note  request  reason
//! ```
//!
//! A checkpoint is written to a temporary file, `fsync`ed, renamed over the old one, and the
//! directory `fsync`ed, before any cosignature over it leaves the witness (C2SP tlog-witness: "MUST
//! persist the new checkpoint before responding"). A crash at any point leaves the old or the new
//! checkpoint, never a mix, never nothing. A state file that does not parse is an error, never an
//! empty state: an empty state would let the witness cosign any history.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use cairn_verifier::note::Checkpoint;
use sha2::{Digest, Sha256};

/// A storage failure (the witness answers 500 and cosigns nothing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The stored checkpoint of a log does not parse or names another log.
    #[error("stored checkpoint {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Evidence of an inconsistent checkpoint, as the store kept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The directory holding it.
    pub dir: PathBuf,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl Store {
    /// Opens (creating if needed) the state directory `root`, and removes temporary files a crash
    /// left behind.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for dir in [root.join("logs"), root.join("evidence")] {
            fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        let logs = root.join("logs");
        for entry in fs::read_dir(&logs).map_err(io("listing", &logs))? {
            let path = entry.map_err(io("listing", &logs))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(io("removing", &path))?;
            }
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn file(&self, origin: &str) -> PathBuf {
        self.root
            .join("logs")
            .join(format!("{}.note", origin_hash(origin)))
    }

    /// The latest cosigned checkpoint of `origin`, if any.
    pub fn latest(&self, origin: &str) -> Result<Option<String>, StoreError> {
        let path = self.file(origin);
        let note = match fs::read(&path) {
            Ok(note) => note,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let parsed = Checkpoint::parse(&note).map_err(|e| corrupt(e.to_string()))?;
        if parsed.origin != origin {
            return Err(corrupt(format!("it names the log {:?}", parsed.origin)));
        }
        String::from_utf8(note)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// Makes `note` the latest checkpoint of `origin`, durably.
    pub fn put(&self, origin: &str, note: &str) -> Result<(), StoreError> {
        let path = self.file(origin);
        let tmp = path.with_extension("tmp");
        write_synced(&tmp, note.as_bytes())?;
        fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
        sync_dir(&self.root.join("logs"))
    }

    /// Keeps the evidence of a refused checkpoint: the stored one, the submitted one, the whole
    /// request (with its proof) and why it was refused.
    pub fn keep_evidence(
        &self,
        origin: &str,
        stored: &str,
        submitted: &[u8],
        request: &[u8],
        reason: &str,
        sizes: (u64, u64),
    ) -> Result<Evidence, StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let hash = origin_hash(origin);
        let name = format!(
            "{}-{}-{}-{nanos}",
            hash.get(..16).unwrap_or(&hash),
            sizes.0,
            sizes.1
        );
        let dir = self.root.join("evidence").join(name);
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        write_synced(&dir.join("stored.note"), stored.as_bytes())?;
        write_synced(&dir.join("submitted.note"), submitted)?;
        write_synced(&dir.join("request"), request)?;
        write_synced(&dir.join("reason"), format!("{reason}\n").as_bytes())?;
        sync_dir(&dir)?;
        sync_dir(&self.root.join("evidence"))?;
        Ok(Evidence { dir })
    }

    /// Every evidence directory kept so far.
    pub fn evidence(&self) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.root.join("evidence");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io("listing", &dir))? {
            out.push(entry.map_err(io("listing", &dir))?.path());
        }
        out.sort();
        Ok(out)
    }
}

/// Hex SHA-256 of an origin: a file name for any origin line.
fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let mut file = File::create(path).map_err(io("creating", path))?;
    file.write_all(data).map_err(io("writing", path))?;
    file.sync_all().map_err(io("syncing", path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}
