//! What the demo's phases share: waiting on the relay with a progress bar, private files, the
//! fleet simulator's process.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_relay::Relay;
use cairn_relay::engine::Status;
use cairn_verifier::campaign::DeviceState;
use indicatif::ProgressBar;

use super::CAMPAIGN;

pub(super) fn wait_for(
    what: &str,
    seconds: u64,
    bar: &ProgressBar,
    relay: &Relay,
    mut done: impl FnMut(Status, u64) -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (status, installed) = {
            let engine = relay.engine();
            let c = &engine.campaigns()[CAMPAIGN];
            (c.status(), c.totals()[DeviceState::Installed])
        };
        bar.set_position(installed);
        bar.set_message(format!("{status:?}"));
        if done(status, installed) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(seconds) {
            bail!(
                "timed out after {seconds} s waiting for {what} (status {status:?}, {installed} installed)"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A line above the progress bar, or on standard error when the bar is hidden (no terminal).
pub(super) fn note(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}

/// Writes a file only its owner can read.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// The fleet simulator's process, stopped (SIGINT, then waited for) when dropped.
pub(super) struct Sim(pub(super) Child);

impl Sim {
    pub(super) fn stop(&mut self) -> std::io::Result<()> {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        self.0.wait().map(drop)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.stop();
        }
    }
}
