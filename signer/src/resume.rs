//! A signing session killed part way (docs/ceremony.md, "An interrupted signing session").
//!
//! A session writes one thing that counts: the synced batch of its session record, its entries
//! and the checkpoint over them (`Session::log_with`). Before that write nothing is logged and a
//! new session simply runs again; after it the work is done, and the next run must neither sign
//! it a second time (a release id is logged once) nor refuse forever. The only output file, the
//! MCUboot image built from raw firmware, is staged beside its destination under
//! [`staged_path`] and synced before the log write, and moved to its name only after it: so no
//! image exists under its name that the log does not hold, and a kill between the two leaves
//! the staged image, which [`Appliance::earlier_release`] checks against the log and moves.

use std::path::{Path, PathBuf};

use cairn_verifier::cose::CoseSign1;
use cairn_verifier::statement::ReleaseStatement;
use cairn_verifier::types::Hash;

use crate::appliance::{Appliance, stream_sha256};
use crate::error::{Error, Result, io};
use crate::mcuboot::McubootSource;

/// Where a signed MCUboot image is staged until its release is logged: `.<name>.cairn-staged`
/// beside `out`.
pub fn staged_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.cairn-staged"))
}

/// Moves the staged image to `out` (never over an existing file) and syncs the directory.
pub(crate) fn move_staged(staged: &Path, out: &Path) -> Result<()> {
    std::fs::hard_link(staged, out)
        .and_then(|()| std::fs::remove_file(staged))
        .map_err(io(
            "moving the signed image (logged; still staged beside it) to",
            out,
        ))?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::interrupted::sync_dir(dir)
}

/// A release an earlier session logged: what the next `release sign` of the same id finds.
#[derive(Debug, Clone)]
pub struct EarlierRelease {
    /// Index of the release entry.
    pub index: u64,
    /// The signed image: the one given, or the MCUboot image at `out`.
    pub image: PathBuf,
    /// Its SHA-256, as logged.
    pub image_digest: Hash,
    /// Its size, as logged.
    pub image_size: u64,
    /// Whether this run moved the staged MCUboot image to its name (the earlier session was killed
    /// between its log write and the move).
    pub completed: bool,
}

impl Appliance {
    /// Before a `release sign` session: whether `release_id` is already logged. `Ok(None)`: it is
    /// not, and a session signs it (a staged image an earlier session left unlogged is removed
    /// first: it was never logged, so it is never handed out). `Ok(Some)`: it is, and its image is
    /// the one given (or, for an MCUboot image built from firmware, the one at `out`, moved there
    /// now from where an interrupted session staged it); nothing is to be signed. An error: it is
    /// logged with another image, or its staged image is not there; the message says what to do.
    pub fn earlier_release(
        &self,
        release_id: &str,
        image: &Path,
        source: Option<&McubootSource>,
    ) -> Result<Option<EarlierRelease>> {
        let out = match source {
            Some(McubootSource::Firmware { out, .. }) => Some(out.as_path()),
            _ => None,
        };
        let (index, cose) = match self.vault().release_entry(release_id) {
            Ok(found) => found,
            Err(cairn_vault::Error::UnknownRelease(_)) => {
                if let Some(out) = out {
                    let staged = staged_path(out);
                    match std::fs::remove_file(&staged) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(io("removing the unlogged", &staged)(e));
                        }
                        _ => {}
                    }
                }
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let cose = CoseSign1::decode(&cose)?;
        let statement = ReleaseStatement::decode(cose.payload)?;
        let logged = |image: PathBuf, completed| EarlierRelease {
            index,
            image,
            image_digest: statement.image_digest,
            image_size: statement.image_size,
            completed,
        };
        let taken = |why: String| Error::ReleaseLogged {
            release: release_id.to_owned(),
            index,
            why,
        };
        let Some(out) = out else {
            return if digest_of(image)? == (statement.image_digest, statement.image_size) {
                Ok(Some(logged(image.to_owned(), false)))
            } else {
                Err(taken(format!(
                    "with another image (SHA-256 {}, {} bytes), not {}: a release id is signed \
                     once; choose the next id",
                    hex::encode(statement.image_digest),
                    statement.image_size,
                    image.display()
                )))
            };
        };
        if out.exists() {
            return if digest_of(out)? == (statement.image_digest, statement.image_size) {
                // Killed between the link and the removal of the staged name.
                let _ = std::fs::remove_file(staged_path(out));
                Ok(Some(logged(out.to_owned(), false)))
            } else {
                Err(taken(format!(
                    "with another image (SHA-256 {}), not {}: a release id is signed once; \
                     choose the next id",
                    hex::encode(statement.image_digest),
                    out.display()
                )))
            };
        }
        let staged = staged_path(out);
        if staged.exists() && digest_of(&staged)? == (statement.image_digest, statement.image_size)
        {
            move_staged(&staged, out)?;
            return Ok(Some(logged(out.to_owned(), true)));
        }
        Err(taken(format!(
            "but its signed image is neither at {} nor staged at {}: find the image with SHA-256 \
             {} (the session that signed it wrote it there), or sign the firmware again under the \
             next release id",
            out.display(),
            staged.display(),
            hex::encode(statement.image_digest)
        )))
    }
}

fn digest_of(path: &Path) -> Result<(Hash, u64)> {
    let mut f = std::fs::File::open(path).map_err(io("opening image", path))?;
    stream_sha256(&mut f, path)
}
