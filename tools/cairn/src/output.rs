//! Human or JSON output, progress bars, and the two kinds of failure.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Why a command did not succeed: a check said no, or the command could not run at all.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A signature, proof or consistency check failed (exit code 1).
    Verification(anyhow::Error),
    /// Bad arguments, unreadable input, storage errors (exit code 2).
    Run(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Run(e.into())
    }
}

/// A verification failure.
pub(crate) fn verification(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Verification(e.into())
}

pub(crate) type CliResult<T = ()> = Result<T, Failure>;

/// Where results go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
    quiet: bool,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool) -> Self {
        Self { json, quiet }
    }

    /// Whether output is JSON.
    pub(crate) fn is_json(self) -> bool {
        self.json
    }

    /// Prints `human` for people, or `value` as JSON.
    pub(crate) fn emit(self, human: &str, value: &serde_json::Value) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else if !human.is_empty() {
            println!("{}", human.trim_end());
        }
    }

    /// A progress bar on standard error (hidden with `--json`, `--quiet` or without a terminal).
    pub(crate) fn progress(self, what: &str, total: u64) -> ProgressBar {
        if self.json || self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Reports a failure and returns its exit code.
    pub(crate) fn fail(self, failure: &Failure) -> ExitCode {
        let (code, kind, err) = match failure {
            Failure::Verification(e) => (1, "verification failed", e),
            Failure::Run(e) => (2, "error", e),
        };
        if self.json {
            let causes: Vec<String> = err.chain().map(ToString::to_string).collect();
            println!(
                "{}",
                serde_json::json!({ "ok": false, "failure": kind, "error": format!("{err:#}"), "causes": causes })
            );
        } else {
            eprintln!("cairn: {kind}: {err:#}");
        }
        ExitCode::from(code)
    }
}
