//! A key ceremony killed part way (docs/ceremony.md, "An interrupted ceremony"). `ceremony init`
//! writes a journal, `ceremony.journal` in the home, before it touches the token or creates the
//! log, and removes it once `signer.json` is written. A journal without `signer.json` means a run
//! that did not finish: the next `ceremony init` finds it and refuses, naming what the interrupted
//! run left (the token, the log's record, share files, certificates) and what the operator does:
//! the token's secret lived only in the killed process, so nothing it made can be used; the token
//! is reset, the share files it wrote are destroyed and the home removed, then the ceremony runs
//! again.
//!
//! The order of `ceremony init` keeps what can be left consistent: share files are written only
//! after the log holds the ceremony record, so no share exists for a ceremony that is not logged;
//! `signer.json` (what makes a home an appliance) is written last, so a token with keys and no
//! record is never an appliance, only an interrupted ceremony that the next run names.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io};
use crate::hsm::Module;

/// The journal's file name under the home.
pub const JOURNAL_FILE: &str = "ceremony.journal";

/// What the journal records: enough to name what an interrupted run left.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// Ceremony id (hex).
    pub ceremony: String,
    /// Token label.
    pub token: String,
    /// Whether the ceremony adopts a token its security officer initialised.
    pub adopted: bool,
    /// Where the share files go.
    pub shares: Vec<PathBuf>,
}

/// The step boundaries of `ceremony init`, in order (what a test can stop the process at).
pub const STEPS: [&str; 6] = ["token", "keys", "certificates", "record", "shares", "state"];

/// The step boundaries of a signing session (docs/ceremony.md, "An interrupted signing
/// session"), in order; each command passes the ones it has: `unlocked` (shares rebuilt, logged
/// in to the token), `decided` (`rollout plan`: every device decided), `mirrored`
/// (`rollout record-state`: the relay's bundle imported into the mirror of its log), `generated`
/// (`key rotate`: the new key made on the token), `signed` (the statement signed by the HSM and
/// verified; for an MCUboot image built from firmware, the image is staged and synced before it),
/// `logged` (session record, entries and checkpoint in one synced write), `output` (the signed
/// MCUboot image moved to its name and the directory synced), `certificate` (`key rotate`: the
/// new certificate written), `state` (`key rotate`: `signer.json` names the new key).
pub const SESSION_STEPS: [&str; 9] = [
    "unlocked",
    "decided",
    "mirrored",
    "generated",
    "signed",
    "logged",
    "output",
    "certificate",
    "state",
];

/// Writes the journal (synced, and the home's directory entry with it) before the ceremony
/// changes anything.
pub(crate) fn begin(home: &Path, journal: &Journal) -> Result<()> {
    use std::io::Write as _;
    let path = home.join(JOURNAL_FILE);
    let text = serde_json::to_vec_pretty(journal).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io("creating", &path))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(io("writing", &path))?;
    sync_dir(home)
}

/// Removes the journal once `signer.json` is written.
pub(crate) fn finish(home: &Path) -> Result<()> {
    let path = home.join(JOURNAL_FILE);
    std::fs::remove_file(&path).map_err(io("removing", &path))?;
    sync_dir(home)
}

/// Syncs a directory, so that an entry created or renamed in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// Refuses to start over an interrupted ceremony in `home`, naming what it left and what to do.
pub(crate) fn refuse_if_interrupted(module: &Module, home: &Path) -> Result<()> {
    let path = home.join(JOURNAL_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    let journal: Journal = serde_json::from_slice(&text).map_err(|e| Error::Home {
        path: path.clone(),
        why: format!("not a ceremony journal ({e}): remove the home and start again"),
    })?;
    let mut left = Vec::new();
    let token_there = module.find_token(&journal.token).is_ok();
    if token_there {
        left.push(format!(
            "token {:?} {} (it may hold the ceremony's keys)",
            journal.token,
            if journal.adopted {
                "adopted, its user PIN rotated"
            } else {
                "initialised"
            }
        ));
    }
    let log = home.join("log");
    if log.exists() {
        match cairn_vault::Vault::open(&log) {
            Ok(v) if v.size() > 0 => left.push(format!(
                "the ceremony record logged as entry 0 of {}",
                log.display()
            )),
            Ok(_) => left.push(format!("an empty log at {}", log.display())),
            Err(e) => left.push(format!(
                "a log at {} that does not open ({e})",
                log.display()
            )),
        }
    }
    let shares: Vec<String> = journal
        .shares
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !shares.is_empty() {
        left.push(format!(
            "{} of {} share files ({})",
            shares.len(),
            journal.shares.len(),
            shares.join(", ")
        ));
    }
    let certs = std::fs::read_dir(home.join("certs"))
        .map_or(0, |d| d.filter_map(std::result::Result::ok).count());
    if certs > 0 {
        left.push(format!(
            "{certs} certificate files in {}",
            home.join("certs").display()
        ));
    }
    if left.is_empty() {
        left.push("nothing beyond its journal".into());
    }
    let mut todo = Vec::new();
    if token_there {
        let reset = module.profile(Some(&journal.token)).map_or_else(
            |_| {
                format!(
                    "re-initialise token {:?} with the module vendor's tool",
                    journal.token
                )
            },
            |p| p.reset_hint(&journal.token, journal.adopted),
        );
        todo.push(format!("reset the token: {reset}"));
    }
    if !shares.is_empty() {
        todo.push(format!("destroy the share files {}", shares.join(", ")));
    }
    todo.push(format!("remove {}", home.display()));
    Err(Error::CeremonyInterrupted {
        home: home.to_owned(),
        ceremony: journal.ceremony,
        left: left.join("; "),
        todo: todo.join(", then "),
    })
}

/// Marks that `ceremony init` or a signing session finished `step` (one of [`STEPS`] or
/// [`SESSION_STEPS`]). With the `test-hooks` feature, the process kills itself with `SIGKILL`
/// here when `CAIRN_TEST_KILL_AFTER` names the step: how the tests stop a ceremony or a session
/// at each boundary deterministically. Without it, nothing.
pub fn reached(step: &'static str) {
    debug_assert!(
        STEPS.contains(&step) || SESSION_STEPS.contains(&step),
        "unknown step {step}"
    );
    #[cfg(feature = "test-hooks")]
    if std::env::var("CAIRN_TEST_KILL_AFTER").is_ok_and(|s| s == step) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
