//! The one error type of the library: what could not be set up, named by whose input was wrong.
//!
//! A delivery a device cannot use is never an [`Error`]: the device reports it (formats.md §7) or
//! the simulator counts it ([`crate::Stats::malformed`]).

use std::path::PathBuf;

/// Why the simulator could not start or could not keep a device's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read, written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The fleet CSV cannot be used at all (no header, a required column missing). Single rows
    /// that cannot be used are skipped and counted instead ([`crate::Stats::skipped_rows`]).
    #[error("fleet file {}: {reason}", path.display())]
    Fleet {
        /// The CSV file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker CA's certificate or private key cannot sign device certificates.
    #[error("MQTT CA {}: {reason}", path.display())]
    Ca {
        /// The certificate or key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Issuing or loading a device's MQTT client certificate failed.
    #[error("client certificate of {device}: {reason}")]
    Certificate {
        /// The device.
        device: String,
        /// What failed.
        reason: String,
    },
    /// A device's persistent state file is not one the simulator wrote. It is never reset
    /// silently: its anti-rollback counters would be lost.
    #[error("device state {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The stages file is not a JSON object of device ids to stage indices.
    #[error("stages file {}: {reason}", path.display())]
    Stages {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value is out of range or inconsistent (the caller's mistake).
    #[error("{what}: {reason}")]
    Config {
        /// Which setting (named as the command-line flag).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A worker thread panicked (a bug in the simulator, not bad input).
    #[error("a {task} worker panicked")]
    WorkerPanicked {
        /// What the worker was doing.
        task: &'static str,
    },
    /// The async runtime could not be started.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An [`Error::Io`] for `path`.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
