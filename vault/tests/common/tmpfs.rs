//! A size-limited tmpfs for the full-disk tests (the vault's, the relay's and the device
//! registry's include this file with `#[path]`): mounted by the test, which needs root (CI runs as
//! root; elsewhere `Tmpfs::mount` answers `None` and the test says it was skipped).

#![allow(
    dead_code,
    unreachable_pub,
    reason = "test helpers shared by several test files, each using a subset"
)]

use std::path::Path;
use std::process::Command;

/// A tmpfs of a given size mounted on a new directory, unmounted on drop.
pub(crate) struct Tmpfs {
    mount: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` where this process may not mount (not root).
    pub(crate) fn mount(size: &str) -> Option<Self> {
        let mount = tempfile::tempdir().ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mount.path())
            .output()
            .ok()?;
        out.status.success().then_some(Self { mount })
    }

    pub(crate) fn path(&self) -> &Path {
        self.mount.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount.path()).status();
    }
}

/// Writes a file of `n` bytes at `path` (to fill the file system).
pub(crate) fn fill(path: &Path, n: u64) {
    let file = std::fs::File::create(path).expect("creating the filler");
    let mut w = std::io::BufWriter::new(file);
    let block = vec![0x5a_u8; 1 << 16];
    let mut left = n;
    while left > 0 {
        let k = usize::try_from(left.min(block.len() as u64)).expect("a block fits usize");
        std::io::Write::write_all(&mut w, &block[..k]).expect("writing the filler");
        left -= k as u64;
    }
    std::io::Write::flush(&mut w).expect("writing the filler");
}

/// Free bytes on the file system holding `path`.
pub(crate) fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df printed the free bytes")
}

/// Fills the file system holding `dir` (with `dir/filler`) until `headroom` bytes are free.
pub(crate) fn fill_to(dir: &Path, headroom: u64) -> std::path::PathBuf {
    let filler = dir.join("filler");
    fill(&filler, free_bytes(dir).saturating_sub(headroom));
    filler
}
