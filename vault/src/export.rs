//! Static export: the log as a C2SP tlog-tiles directory that any static host, CDN or object store
//! can serve as is.
//!
//! ```text
//! <dir>/checkpoint                      the signed checkpoint the directory is complete for
//! <dir>/tile/<L>/<N>                    full tile: 256 hashes of height 8L (8,192 bytes)
//! <dir>/tile/<L>/<N>.p/<W>              partial tile: its first W hashes
//! <dir>/tile/entries/<N>                entry bundle: 256 entries, each a big-endian u16 length + bytes
//! <dir>/tile/entries/<N>.p/<W>          partial entry bundle: its first W entries
//! ```
//!
//! `<N>` is written in groups of three digits, all but the last prefixed with `x`
//! (1234067 → `x001/x234/067`). Export is incremental: only tiles and bundles that are new since the
//! directory's checkpoint are written, every file is written to a temporary name and renamed, and the
//! `checkpoint` file is replaced last, so a reader never sees a checkpoint whose tiles are missing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cairn_verifier::note::Checkpoint;

use crate::bundle;
use crate::error::{Error, Result, io};

use crate::tree::{TILE_HEIGHT, TILE_WIDTH, TileBlob, TileId};
use crate::vault::Vault;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportReport {
    /// Tree size of the directory before.
    pub from_size: u64,
    /// Tree size of the directory now.
    pub to_size: u64,
    /// Tile files written (full and partial).
    pub tiles: u64,
    /// Entry bundle files written (full and partial).
    pub bundles: u64,
}

/// `N` as C2SP tlog-tiles path elements.
pub fn index_path(n: u64) -> String {
    let digits = n.to_string();
    let pad = (3 - digits.len() % 3) % 3;
    let padded = format!("{}{digits}", "0".repeat(pad));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                (*g).to_owned()
            } else {
                format!("x{g}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Path of a tile (`level` 0..) or, with `level = None`, an entry bundle; `width < 256` is partial.
pub fn tile_path(level: Option<u8>, index: u64, width: usize) -> PathBuf {
    let level = level.map_or_else(|| "entries".to_owned(), |l| l.to_string());
    let mut p = format!("tile/{level}/{}", index_path(index));
    if width < TILE_WIDTH {
        p = format!("{p}.p/{width}");
    }
    PathBuf::from(p)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_extension("cairn-tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl Vault {
    /// Exports the log up to its latest signed checkpoint into `dir`, incrementally.
    ///
    /// The directory must be empty or an earlier export of this log (its `checkpoint` must be one
    /// of this log's stored checkpoints, byte for byte); anything else is refused. `progress` is
    /// called with (files written, files to write).
    pub fn export(&self, dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<ExportReport> {
        let checkpoint = self
            .latest_checkpoint()?
            .ok_or(Error::NoCheckpoint { size: self.size() })?;
        let size = Checkpoint::parse(checkpoint.as_bytes())
            .map_err(|e| Error::Corrupt {
                what: format!("latest checkpoint: {e}"),
            })?
            .size
            .0;
        let existing = dir.join("checkpoint");
        let from_size = if existing.exists() {
            let old = std::fs::read_to_string(&existing).map_err(io(&existing))?;
            let parsed = Checkpoint::parse(old.as_bytes())
                .map_err(|e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))?;
            // The signed text decides: witnesses' cosignatures added to the stored checkpoint
            // since the export (`Vault::add_cosignatures`) do not make it another checkpoint.
            let stored = self.checkpoint(parsed.size.0)?;
            let same = stored
                .as_deref()
                .and_then(|s| Checkpoint::parse(s.as_bytes()).ok())
                .is_some_and(|s| s.text == parsed.text);
            if parsed.origin != self.origin() || !same {
                return Err(Error::Checkpoint(cairn_verifier::Error::CheckpointOrigin));
            }
            parsed.size.0
        } else {
            0
        };
        if from_size > size {
            return Err(Error::SizeBeyondLog {
                size: from_size,
                log_size: size,
            });
        }

        // What to write: at every level, from the tile that was partial at `from_size` to the last.
        let mut work: Vec<(Option<u8>, u64, usize)> = Vec::new();
        let mut push = |level: Option<u8>, old: u64, count: u64| {
            if count == old || count == 0 {
                return;
            }
            for index in (old >> TILE_HEIGHT)..=((count - 1) >> TILE_HEIGHT) {
                let width = (count - index * TILE_WIDTH as u64).min(TILE_WIDTH as u64);
                work.push((level, index, usize::try_from(width).unwrap_or(TILE_WIDTH)));
            }
        };
        push(None, from_size, size);
        for level in 0..=u8::MAX {
            let count = complete_at_level(size, level);
            if count == 0 {
                break;
            }
            push(Some(level), complete_at_level(from_size, level), count);
        }

        let total = work.len() as u64;
        let mut report = ExportReport {
            from_size,
            to_size: size,
            ..ExportReport::default()
        };
        for (done, (level, index, width)) in work.into_iter().enumerate() {
            let path = dir.join(tile_path(level, index, width));
            if let Some(level) = level {
                let id = TileId { level, index };
                let blob = self.tile(id)?.ok_or_else(|| Error::Corrupt {
                    what: format!("tile {level}/{index} missing"),
                })?;
                let tile = TileBlob::parse(id, &blob)?;
                if tile.width() < width {
                    return Err(Error::Corrupt {
                        what: format!(
                            "tile {level}/{index} has {} hashes, needs {width}",
                            tile.width()
                        ),
                    });
                }
                write_atomic(&path, &tile.row0()[..32 * width])?;
                report.tiles += 1;
            } else {
                write_atomic(&path, &self.entry_bundle(index, width)?)?;
                report.bundles += 1;
            }
            progress(done as u64 + 1, total);
        }
        write_atomic(&existing, checkpoint.as_bytes())?;
        Ok(report)
    }

    /// The C2SP entry bundle of entries `256·index .. 256·index + width`, as stored (a prefix of the
    /// stored bundle if it has grown since). Refused if an entry in it was pruned.
    pub fn entry_bundle(&self, index: u64, width: usize) -> Result<Vec<u8>> {
        let stored = self.stored_bundle(index)?;
        let entries = bundle::entries(index, &stored)?;
        if entries.len() < width {
            return Err(Error::Corrupt {
                what: format!(
                    "entry bundle {index} has {} entries, {width} needed",
                    entries.len()
                ),
            });
        }
        if let Some(i) = entries[..width].iter().position(|e| e.is_empty()) {
            return Err(Error::Pruned {
                index: index * TILE_WIDTH as u64 + i as u64,
            });
        }
        Ok(stored[..bundle::prefix_len(index, &stored, width)?].to_vec())
    }
}

/// What [`verify_export`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCheck {
    /// Tree size of the directory's checkpoint.
    pub size: u64,
    /// The root hash it commits to, recomputed.
    pub root: cairn_verifier::types::Hash,
    /// Tile files compared.
    pub tiles: u64,
    /// Key id of the key that signed the checkpoint.
    pub key_id: [u8; 4],
}

/// Verifies an exported tiles directory with nothing but the log's public key: the checkpoint's
/// signature, then every entry bundle re-hashed and every tile rebuilt and compared byte for byte
/// with its file, then the recomputed root against the checkpoint's. This is what an auditor (or a
/// mirror) runs; it reads only the directory. A missing or malformed file is reported at once. A
/// tile file that differs from the tile rebuilt from the entry bundles is judged by the signed
/// root: if the bundles rebuild it, the tile file is wrong and is named; if they do not, the entry
/// bundle where the entries first disagree with the level-0 tiles is named.
#[expect(
    clippy::too_many_lines,
    reason = "one pass over the directory, each check where its data is"
)]
pub fn verify_export(
    dir: &Path,
    public: &cairn_verifier::crypto::PublicKey,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportCheck> {
    use cairn_verifier::crypto::Software;
    use cairn_verifier::merkle::leaf_hash;
    use cairn_verifier::note::LogKey;

    use crate::error::Inconsistency;
    use crate::tree::Frontier;

    let path = dir.join("checkpoint");
    let note = std::fs::read(&path).map_err(io(&path))?;
    let checkpoint = Checkpoint::parse(&note)
        .map_err(|e| Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))?;
    let key = LogKey::new(checkpoint.origin, checkpoint.origin, *public, &Software)
        .ok_or(Error::Checkpoint(cairn_verifier::Error::CheckpointOrigin))?;
    checkpoint
        .verify(&key, &Software)
        .map_err(Error::Checkpoint)?;
    let size = checkpoint.size.0;
    let mismatch = |file: &Path, expected: String, found: String| {
        Error::Inconsistent(Box::new(Inconsistency {
            check: "exported file",
            location: file.strip_prefix(dir).unwrap_or(file).display().to_string(),
            expected,
            found,
        }))
    };
    let read = |rel: PathBuf| -> Result<(PathBuf, Vec<u8>)> {
        let file = dir.join(&rel);
        match std::fs::read(&file) {
            Ok(bytes) => Ok((file, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(mismatch(&file, "the file".into(), "nothing".into()))
            }
            Err(e) => Err(io(&file)(e)),
        }
    };

    let mut frontier = Frontier::default();
    let mut tiles = 0u64;
    let bundles = size.div_ceil(TILE_WIDTH as u64);
    // The first tile file that differs from the rebuilt tile (any level, and level 0): which of the
    // two is wrong is decided by the signed root, once every bundle has been read.
    let mut differs: Option<Difference> = None;
    let mut leaf_differs: Option<Difference> = None;
    let mut compare = |blobs: Vec<(TileId, Vec<u8>)>, final_size: Option<u64>| -> Result<()> {
        for (id, blob) in blobs {
            let tile = TileBlob::parse(id, &blob)?;
            let complete = tile.width() == TILE_WIDTH;
            if !complete && final_size.is_none() {
                continue;
            }
            let (file, bytes) = read(tile_path(Some(id.level), id.index, tile.width()))?;
            if bytes != tile.row0() {
                let at = bytes
                    .iter()
                    .zip(tile.row0())
                    .position(|(a, b)| a != b)
                    .unwrap_or(bytes.len().min(tile.row0().len()));
                let difference = Difference {
                    id,
                    width: tile.width(),
                    file,
                    hash: at / 32,
                    rebuilt: (tile.row0().len(), hex32(tile.row0(), at / 32)),
                    stored: (bytes.len(), hex32(&bytes, at / 32)),
                };
                if id.level == 0 && leaf_differs.is_none() {
                    leaf_differs = Some(difference.clone());
                }
                differs.get_or_insert(difference);
                continue;
            }
            tiles += 1;
        }
        Ok(())
    };
    for bundle in 0..bundles {
        let width = usize::try_from((size - bundle * TILE_WIDTH as u64).min(TILE_WIDTH as u64))
            .unwrap_or(TILE_WIDTH);
        let (file, bytes) = read(tile_path(None, bundle, width))?;
        let mut rest = bytes.as_slice();
        let mut leaves = Vec::with_capacity(width);
        while let Some((len, tail)) = rest.split_first_chunk::<2>() {
            let len = usize::from(u16::from_be_bytes(*len));
            let entry = tail.get(..len).ok_or_else(|| {
                mismatch(
                    &file,
                    format!("an entry of {len} bytes"),
                    format!("{} bytes left", tail.len()),
                )
            })?;
            leaves.push(leaf_hash(&Software, entry));
            rest = &tail[len..];
        }
        if !rest.is_empty() || leaves.len() != width {
            return Err(mismatch(
                &file,
                format!("{width} length-prefixed entries"),
                format!("{} entries and {} stray bytes", leaves.len(), rest.len()),
            ));
        }
        compare(frontier.append(&leaves), None)?;
        progress(bundle + 1, bundles);
    }
    // The final partial tiles, at the checkpoint's size.
    let mut last = Frontier::default();
    std::mem::swap(&mut last, &mut frontier);
    let root = last.root();
    let partial = last.partial_tiles();
    compare(partial, Some(size))?;
    if root == checkpoint.root {
        // The entries rebuild the signed tree: a tile file that differs is wrong.
        if let Some(d) = differs {
            return Err(mismatch(
                &d.file,
                format!("{} bytes, hash {} = {}", d.rebuilt.0, d.hash, d.rebuilt.1),
                format!("{} bytes, hash {} = {}", d.stored.0, d.hash, d.stored.1),
            ));
        }
    } else if let Some(d) = leaf_differs {
        // They do not: the bundle where the entries first disagree with the level-0 tiles.
        let entry = d.id.index * TILE_WIDTH as u64 + d.hash as u64;
        return Err(mismatch(
            &dir.join(tile_path(None, d.id.index, d.width)),
            format!(
                "entry {entry} with leaf hash {} (as in {}); these entries do not rebuild the \
                 signed root",
                d.stored.1,
                d.file.strip_prefix(dir).unwrap_or(&d.file).display()
            ),
            format!("entry {entry} with leaf hash {}", d.rebuilt.1),
        ));
    }
    if root != checkpoint.root {
        return Err(Error::Inconsistent(Box::new(Inconsistency {
            check: "export root",
            location: "checkpoint".into(),
            expected: format!("root {} recomputed from the entries", hex32(&root, 0)),
            found: hex32(&checkpoint.root, 0),
        })));
    }
    Ok(ExportCheck {
        size,
        root,
        tiles,
        key_id: key.key_id,
    })
}

/// A tile file that differs from the tile rebuilt from the entry bundles.
#[derive(Clone)]
struct Difference {
    id: TileId,
    width: usize,
    file: PathBuf,
    /// Position of the first differing hash in row 0.
    hash: usize,
    /// (length, that hash) of the rebuilt tile and of the file.
    rebuilt: (usize, String),
    stored: (usize, String),
}

fn hex32(bytes: &[u8], hash: usize) -> String {
    bytes
        .get(32 * hash..32 * hash + 32)
        .map_or_else(|| "none".into(), hex::encode)
}

/// Number of hashes of height `8 × level` complete in a tree of `size` leaves.
pub(crate) fn complete_at_level(size: u64, level: u8) -> u64 {
    let shift = TILE_HEIGHT * u32::from(level);
    if shift >= 64 { 0 } else { size >> shift }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c2sp_index_paths() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(7), "007");
        assert_eq!(index_path(1234), "x001/234");
        assert_eq!(index_path(1_234_067), "x001/x234/067");
        assert_eq!(
            tile_path(Some(0), 1_234_067, 256),
            PathBuf::from("tile/0/x001/x234/067")
        );
        assert_eq!(
            tile_path(Some(1), 5, 128),
            PathBuf::from("tile/1/005.p/128")
        );
        assert_eq!(tile_path(None, 0, 3), PathBuf::from("tile/entries/000.p/3"));
    }
}
