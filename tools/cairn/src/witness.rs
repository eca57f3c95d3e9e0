//! `cairn witness …`: the signer's side of witnessing (docs/witness.md §2): write the
//! `add-checkpoint` request for each witness of the policy (`witnesses.toml` in the signer's
//! home), carry them across the air gap to `cairn-witness cosign`, bring the cosigned checkpoints
//! back and attach them, and see which witnesses the latest checkpoint still waits for.
//! No custodian session is needed: cosignatures are added to a checkpoint the log key already
//! signed, and only lines that verify against the pinned witness keys are kept.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use cairn_signer::witness::{self, Policy};
use clap::Subcommand;
use serde_json::json;

use crate::output::{CliResult, Output, verification};

#[derive(Debug, Subcommand)]
pub(crate) enum WitnessCommand {
    /// Write one `add-checkpoint` request per witness for the log's latest checkpoint, from the
    /// largest size that witness has cosigned (`<DIR>/<witness>.request`, for
    /// `cairn-witness cosign --request`).
    Request {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// Directory to write the requests to (created).
        #[arg(long, short, value_name = "DIR")]
        out: PathBuf,
        /// The old size of one witness, when it answered that its size is not the one assumed
        /// (`NAME=SIZE`).
        #[arg(long, value_name = "NAME=SIZE")]
        old: Option<String>,
    },
    /// Add the cosignatures of the checkpoints witnesses returned to the stored checkpoint.
    Attach {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
        /// A cosigned checkpoint (`cairn-witness cosign --out`), one per witness.
        #[arg(required = true, value_name = "FILE")]
        cosigned: Vec<PathBuf>,
    },
    /// The latest checkpoint against the policy: who cosigned, who is missing (exit code 1
    /// without a quorum).
    Status {
        /// The appliance's home directory.
        #[arg(long, env = "CAIRN_HOME", value_name = "DIR")]
        home: PathBuf,
    },
}

pub(crate) fn run(cmd: WitnessCommand, out: Output) -> CliResult {
    match cmd {
        WitnessCommand::Request {
            home,
            out: dir,
            old,
        } => request(&home, &dir, old.as_deref(), out),
        WitnessCommand::Attach { home, cosigned } => attach(&home, &cosigned, out),
        WitnessCommand::Status { home } => status(&home, out),
    }
}

fn policy(home: &Path) -> anyhow::Result<Policy> {
    Policy::load(home)?.ok_or_else(|| {
        anyhow!(
            "no witness policy: {} does not exist (docs/witness.md §2)",
            home.join(witness::POLICY_FILE).display()
        )
    })
}

/// A witness name as a file name (`witness.example/auditor` → `witness.example_auditor`).
pub(crate) fn file_name(witness: &str) -> String {
    witness
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn request(home: &Path, dir: &Path, old: Option<&str>, out: Output) -> CliResult {
    let appliance = crate::custody::open(home)?;
    let policy = policy(home)?;
    let old = old
        .map(|o| -> anyhow::Result<(&str, u64)> {
            let (name, size) = o.rsplit_once('=').context("--old NAME=SIZE")?;
            Ok((name, size.parse().context("--old NAME=SIZE: size")?))
        })
        .transpose()?;
    let requests = witness::requests(appliance.vault(), &policy, old)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let mut human = String::new();
    for r in &requests {
        let file = dir.join(format!("{}.request", file_name(&r.witness)));
        std::fs::write(&file, &r.body).with_context(|| format!("writing {}", file.display()))?;
        let _ = writeln!(
            human,
            "{}: {} (from size {} to {})",
            r.witness,
            file.display(),
            r.old,
            r.size
        );
        written.push(json!({"witness": r.witness, "file": file, "old": r.old, "size": r.size}));
    }
    out.emit(&human, &json!({"ok": true, "requests": written}));
    Ok(())
}

fn attach(home: &Path, files: &[PathBuf], out: Output) -> CliResult {
    let appliance = crate::custody::open(home)?;
    let policy = policy(home)?;
    let mut last = None;
    for file in files {
        let note =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let attached = witness::attach(
            appliance.vault(),
            &policy,
            &note,
            &file.display().to_string(),
        )
        .map_err(|e| verification(anyhow!(e)))?;
        last = Some(attached);
    }
    let attached = last.context("no cosigned checkpoint given")?;
    let r = &attached.report;
    out.emit(
        &format!("checkpoint {}: {}", attached.size, r.summary()),
        &json!({"ok": true, "size": attached.size, "quorum": r.met(), "summary": r.summary()}),
    );
    Ok(())
}

fn status(home: &Path, out: Output) -> CliResult {
    let appliance = crate::custody::open(home)?;
    let policy = policy(home)?;
    let s = witness::status(appliance.vault(), &policy)?;
    let r = &s.report;
    out.emit(
        &format!(
            "latest checkpoint {}: {}{}",
            s.size,
            r.summary(),
            if r.met() {
                ""
            } else {
                "\nno quorum: devices refuse deliveries of this checkpoint until the missing witnesses cosign it"
            }
        ),
        &json!({
            "ok": r.met(),
            "size": s.size,
            "quorum": r.met(),
            "threshold": r.threshold,
            "cosigned": r.cosigned.iter().map(|c| json!({"witness": c.name, "timestamp": c.timestamp})).collect::<Vec<_>>(),
            "missing": r.missing,
            "bad": r.bad,
        }),
    );
    if r.met() {
        Ok(())
    } else {
        Err(verification(anyhow!(
            "checkpoint {} has no witness quorum: {}",
            s.size,
            r.summary()
        )))
    }
}
