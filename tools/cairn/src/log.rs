//! `cairn log …`: the transparency log, for custodians (on the signer) and auditors (anywhere).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use base64ct::Encoding as _;
use cairn_vault::{Query, Vault};
use cairn_verifier::crypto::Software;
use cairn_verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::{Hash, UnixTime};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::keys;
use crate::output::{CliResult, Output, verification};

/// Where the log's database is.
#[derive(Debug, Args)]
pub(crate) struct Db {
    /// The log's database directory.
    #[arg(long, env = "CAIRN_LOG_DB", value_name = "DIR")]
    db: PathBuf,
}

impl Db {
    fn open(&self) -> anyhow::Result<Vault> {
        Vault::open(&self.db).with_context(|| format!("opening the log at {}", self.db.display()))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum LogCommand {
    /// Create an empty log.
    Init {
        #[command(flatten)]
        db: Db,
        /// The log's origin line (its unique name, e.g. `oem.example/cairn/log`).
        #[arg(long)]
        origin: String,
    },
    /// Append entries (each file is one CBOR evidence statement) in one durable batch.
    Append {
        #[command(flatten)]
        db: Db,
        /// Entry files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Sign a checkpoint of the current log with a software key (PKCS#8 PEM). Logs whose key is in
    /// the HSM are checkpointed by the signer in its ceremonies.
    Sign {
        #[command(flatten)]
        db: Db,
        /// The private key.
        #[arg(long, value_name = "PKCS8_PEM")]
        key: PathBuf,
    },
    /// Checkpoints: show one, or verify one against a public key.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Proofs from the log, checked against its signed checkpoints before they are written.
    #[command(subcommand)]
    Prove(ProveCommand),
    /// Verify a proof file offline, with only the log's public key.
    VerifyProof {
        /// The proof file (from `cairn log prove`).
        proof: PathBuf,
        /// The log's public key (PEM or DER SubjectPublicKeyInfo).
        #[arg(long, value_name = "PUBLIC_KEY")]
        key: PathBuf,
        /// The entry the inclusion proof is for, if it is not in the proof file.
        #[arg(long)]
        entry: Option<PathBuf>,
    },
    /// Write the log as a static C2SP tlog-tiles directory (incrementally).
    Export {
        #[command(flatten)]
        db: Db,
        /// The directory to write (empty, or an earlier export of this log).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Verify a static tiles directory offline: checkpoint signature, every entry, every tile.
    VerifyExport {
        /// The exported directory.
        dir: PathBuf,
        /// The log's public key (PEM or DER SubjectPublicKeyInfo).
        #[arg(long, value_name = "PUBLIC_KEY")]
        key: PathBuf,
    },
    /// Recompute every hash, tile and checkpoint root and compare with what is stored.
    Fsck {
        #[command(flatten)]
        db: Db,
    },
    /// Evidence entries by kind, release, device, campaign or time, from the index.
    Query {
        #[command(flatten)]
        db: Db,
        /// Entry kind number (1 release, 2 manifest, ...).
        #[arg(long)]
        kind: Option<u64>,
        /// Release id.
        #[arg(long)]
        release: Option<String>,
        /// Device id.
        #[arg(long)]
        device: Option<String>,
        /// Campaign id.
        #[arg(long)]
        campaign: Option<String>,
        /// From this Unix time (inclusive).
        #[arg(long, requires = "to")]
        from: Option<u64>,
        /// To this Unix time (inclusive).
        #[arg(long, requires = "from")]
        to: Option<u64>,
    },
    /// Show one entry, decoded (or its raw bytes with --raw).
    Entry {
        #[command(flatten)]
        db: Db,
        /// The entry's index.
        index: u64,
        /// Write the raw entry bytes to standard output.
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CheckpointCommand {
    /// Show the latest checkpoint (or the one of a given size).
    Show {
        #[command(flatten)]
        db: Db,
        /// Tree size of the checkpoint.
        #[arg(long)]
        size: Option<u64>,
    },
    /// Verify a checkpoint file against the log's public key.
    Verify {
        /// The checkpoint (signed note) file.
        checkpoint: PathBuf,
        /// The log's public key (PEM or DER SubjectPublicKeyInfo).
        #[arg(long, value_name = "PUBLIC_KEY")]
        key: PathBuf,
        /// The origin the checkpoint must have (default: the one it states).
        #[arg(long)]
        origin: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProveCommand {
    /// Inclusion of one entry (by index, leaf hash or entry file) in a signed checkpoint.
    Inclusion {
        #[command(flatten)]
        db: Db,
        /// The entry's index.
        #[arg(long, conflicts_with_all = ["leaf_hash", "entry"])]
        index: Option<u64>,
        /// The entry's leaf hash, SHA-256(0x00 || entry), in hex.
        #[arg(long, conflicts_with = "entry")]
        leaf_hash: Option<String>,
        /// The entry itself.
        #[arg(long)]
        entry: Option<PathBuf>,
        /// Tree size of the checkpoint to prove against (default: the latest).
        #[arg(long)]
        size: Option<u64>,
        /// Write the proof file here (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Consistency between two signed checkpoints.
    Consistency {
        #[command(flatten)]
        db: Db,
        /// The older tree size.
        #[arg(long)]
        from: u64,
        /// The newer tree size (default: the latest checkpoint).
        #[arg(long)]
        to: Option<u64>,
        /// Write the proof file here (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

/// A proof file (docs/log.md "Proof files").
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type")]
enum ProofFile {
    /// An entry's inclusion in a checkpoint.
    #[serde(rename = "cairn-inclusion-proof-v1")]
    Inclusion {
        checkpoint: String,
        index: u64,
        tree_size: u64,
        leaf_hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<String>,
        proof: Vec<String>,
    },
    /// Two checkpoints of one log, one a prefix of the other.
    #[serde(rename = "cairn-consistency-proof-v1")]
    Consistency {
        old: String,
        new: String,
        proof: Vec<String>,
    },
}

#[expect(clippy::too_many_lines, reason = "one arm per subcommand, each short")]
pub(crate) fn run(cmd: LogCommand, out: Output) -> CliResult {
    match cmd {
        LogCommand::Init { db, origin } => {
            let vault = Vault::create(&db.db, &origin)
                .with_context(|| format!("creating a log at {}", db.db.display()))?;
            out.emit(
                &format!("created log {origin:?} at {}", db.db.display()),
                &json!({ "ok": true, "origin": vault.origin(), "db": db.db }),
            );
        }
        LogCommand::Append { db, files } => {
            let vault = db.open()?;
            let entries = files
                .iter()
                .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let range = vault.append(&entries).map_err(|e| match e {
                cairn_vault::Error::BadEntry {
                    position,
                    ref cause,
                } => anyhow!(
                    "{}: not a valid statement: {cause}",
                    files[position].display()
                ),
                cairn_vault::Error::EntryTooLarge { position, len, max } => anyhow!(
                    "{}: {len} bytes, the limit is {max}",
                    files[position].display()
                ),
                other => anyhow!(other),
            })?;
            out.emit(
                &format!(
                    "appended {} entries: indices {}..{}",
                    entries.len(),
                    range.start,
                    range.end
                ),
                &json!({ "ok": true, "first": range.start, "end": range.end }),
            );
        }
        LogCommand::Sign { db, key } => {
            let vault = db.open()?;
            let sk = keys::signing_key(&key)?;
            let public = cairn_verifier::crypto::PublicKey::from_sec1_uncompressed(
                sk.verifying_key().to_sec1_point(false).as_bytes(),
            )
            .context("public key")?;
            let log_key = keys::log_key(vault.origin(), public)?;
            let note = vault.sign_checkpoint(&log_key, &sk)?;
            out.emit(
                &note,
                &json!({ "ok": true, "checkpoint": note, "size": vault.size() }),
            );
        }
        LogCommand::Checkpoint(CheckpointCommand::Show { db, size }) => {
            let vault = db.open()?;
            let note = match size {
                Some(s) => vault
                    .checkpoint(s)?
                    .ok_or_else(|| anyhow!("no checkpoint of size {s}"))?,
                None => vault
                    .latest_checkpoint()?
                    .ok_or_else(|| anyhow!("the log has no checkpoint yet"))?,
            };
            let cp = Checkpoint::parse(note.as_bytes())
                .map_err(|e| anyhow!("stored checkpoint: {e}"))?;
            let human = format!(
                "{note}\norigin {}\nsize   {}\nroot   {}",
                cp.origin,
                cp.size,
                hex::encode(cp.root)
            );
            out.emit(&human, &json!({ "ok": true, "origin": cp.origin, "size": cp.size.0, "root": hex::encode(cp.root), "note": note }));
        }
        LogCommand::Checkpoint(CheckpointCommand::Verify {
            checkpoint,
            key,
            origin,
        }) => {
            let note = std::fs::read(&checkpoint)
                .with_context(|| format!("reading {}", checkpoint.display()))?;
            let public = keys::public_key(&key)?;
            let cp = Checkpoint::parse(&note).map_err(|e| {
                verification(anyhow!(
                    "{}: malformed checkpoint: {e}",
                    checkpoint.display()
                ))
            })?;
            let origin = origin.unwrap_or_else(|| cp.origin.to_owned());
            let log_key = keys::log_key(&origin, public)?;
            cp.verify(&log_key, &Software)
                .map_err(|e| verification(anyhow!("{}: {e}", checkpoint.display())))?;
            out.emit(
                &format!("checkpoint OK: {} at size {}, root {}, signed by key id {}", cp.origin, cp.size, hex::encode(cp.root), hex::encode(log_key.key_id)),
                &json!({ "ok": true, "origin": cp.origin, "size": cp.size.0, "root": hex::encode(cp.root), "key_id": hex::encode(log_key.key_id) }),
            );
        }
        LogCommand::Prove(ProveCommand::Inclusion {
            db,
            index,
            leaf_hash: hash,
            entry,
            size,
            out: file,
        }) => {
            let vault = db.open()?;
            let (index, entry_bytes) = match (index, hash, entry) {
                (Some(i), None, None) => (i, None),
                (None, Some(h), None) => (first_with_hash(&vault, &keys::hash_hex(&h)?)?, None),
                (None, None, Some(path)) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    (
                        first_with_hash(&vault, &leaf_hash(&Software, &bytes))?,
                        Some(bytes),
                    )
                }
                _ => return Err(anyhow!("give one of --index, --leaf-hash or --entry").into()),
            };
            let size = match size {
                Some(s) => s,
                None => *vault
                    .checkpoint_sizes()?
                    .last()
                    .ok_or_else(|| anyhow!("the log has no checkpoint yet"))?,
            };
            let p = vault.prove_inclusion(index, size)?;
            let entry_b64 = entry_bytes
                .or_else(|| vault.entry(index).ok())
                .map(|e| base64ct::Base64::encode_string(&e));
            let proof = ProofFile::Inclusion {
                checkpoint: p.checkpoint,
                index,
                tree_size: size,
                leaf_hash: hex::encode(p.leaf_hash),
                entry: entry_b64,
                proof: p.proof.iter().map(hex::encode).collect(),
            };
            write_proof(
                &proof,
                file.as_deref(),
                out,
                &format!(
                    "inclusion of entry {index} in checkpoint {size}: {} hashes",
                    p.proof.len()
                ),
            )?;
        }
        LogCommand::Prove(ProveCommand::Consistency {
            db,
            from,
            to,
            out: file,
        }) => {
            let vault = db.open()?;
            let to = match to {
                Some(t) => t,
                None => *vault
                    .checkpoint_sizes()?
                    .last()
                    .ok_or_else(|| anyhow!("the log has no checkpoint yet"))?,
            };
            let p = vault.prove_consistency(from, to)?;
            let n = p.proof.len();
            let proof = ProofFile::Consistency {
                old: p.old,
                new: p.new,
                proof: p.proof.iter().map(hex::encode).collect(),
            };
            write_proof(
                &proof,
                file.as_deref(),
                out,
                &format!("consistency from checkpoint {from} to {to}: {n} hashes"),
            )?;
        }
        LogCommand::VerifyProof { proof, key, entry } => {
            verify_proof(&proof, &key, entry.as_deref(), out)?;
        }
        LogCommand::Export { db, out: dir } => {
            let vault = db.open()?;
            let bar = out.progress("export", 0);
            let report = vault.export(&dir, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            out.emit(
                &format!("exported {} to {}: size {} -> {}, {} tiles and {} entry bundles written", vault.origin(), dir.display(), report.from_size, report.to_size, report.tiles, report.bundles),
                &json!({ "ok": true, "from_size": report.from_size, "to_size": report.to_size, "tiles": report.tiles, "bundles": report.bundles }),
            );
        }
        LogCommand::VerifyExport { dir, key } => {
            let public = keys::public_key(&key)?;
            let bar = out.progress("verify", 0);
            let report = cairn_vault::export::verify_export(&dir, &public, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let report = report.map_err(|e| match e {
                e @ (cairn_vault::Error::Inconsistent(_) | cairn_vault::Error::Checkpoint(_)) => {
                    verification(e)
                }
                other => other.into(),
            })?;
            out.emit(
                &format!("export OK: {} entries, {} tiles, root {} matches the checkpoint signed by key id {}", report.size, report.tiles, hex::encode(report.root), hex::encode(report.key_id)),
                &json!({ "ok": true, "size": report.size, "tiles": report.tiles, "root": hex::encode(report.root) }),
            );
        }
        LogCommand::Fsck { db } => {
            let vault = db.open()?;
            let bar = out.progress("fsck", vault.size());
            let report = vault.fsck(&mut |done, _| bar.set_position(done));
            bar.finish_and_clear();
            let report = report.map_err(|e| match e {
                e @ cairn_vault::Error::Inconsistent(_) => verification(e),
                other => other.into(),
            })?;
            out.emit(
                &format!(
                    "fsck OK: {} entries re-hashed ({} pruned), {} tiles rebuilt, {} tiles re-hashed with rs_merkle, {} checkpoints, {} evidence runs",
                    report.entries, report.pruned, report.tiles, report.rs_merkle_tiles, report.checkpoints, report.evidence_runs
                ),
                &json!({ "ok": true, "size": report.size, "entries": report.entries, "pruned": report.pruned, "tiles": report.tiles, "rs_merkle_tiles": report.rs_merkle_tiles, "checkpoints": report.checkpoints, "evidence_runs": report.evidence_runs }),
            );
        }
        LogCommand::Query {
            db,
            kind,
            release,
            device,
            campaign,
            from,
            to,
        } => {
            let vault = db.open()?;
            let query = match (kind, release.as_deref(), device.as_deref(), campaign.as_deref(), from.zip(to)) {
                (Some(k), None, None, None, None) => Query::Kind(Kind(k)),
                (None, Some(r), None, None, None) => Query::Release(r),
                (None, None, Some(d), None, None) => Query::Device(d),
                (None, None, None, Some(c), None) => Query::Campaign(c),
                (None, None, None, None, Some((f, t))) => Query::Time { from: UnixTime(f), to: UnixTime(t) },
                _ => return Err(anyhow!("give exactly one of --kind, --release, --device, --campaign, or --from with --to").into()),
            };
            let runs = vault.query(query)?;
            let count: u64 = runs.iter().map(|r| r.end - r.start).sum();
            let human = runs
                .iter()
                .map(|r| {
                    if r.end - r.start == 1 {
                        r.start.to_string()
                    } else {
                        format!("{}..{}", r.start, r.end)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            out.emit(&format!("{count} entries: {human}"), &json!({ "ok": true, "count": count, "runs": runs.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>() }));
        }
        LogCommand::Entry { db, index, raw } => {
            let vault = db.open()?;
            let entry = vault.entry(index)?;
            if raw {
                use std::io::Write as _;
                std::io::stdout()
                    .write_all(&entry)
                    .context("writing to standard output")?;
            } else {
                let statement =
                    Statement::decode(&entry).map_err(|e| anyhow!("entry {index}: {e}"))?;
                out.emit(&describe(index, &statement), &json!({ "ok": true, "index": index, "kind": statement.kind().0, "leaf_hash": hex::encode(leaf_hash(&Software, &entry)), "cbor": hex::encode(&entry) }));
            }
        }
    }
    Ok(())
}

fn first_with_hash(vault: &Vault, hash: &Hash) -> anyhow::Result<u64> {
    vault
        .find_leaf(hash)?
        .first()
        .copied()
        .ok_or_else(|| anyhow!("no entry with leaf hash {}", hex::encode(hash)))
}

fn describe(index: u64, s: &Statement<'_>) -> String {
    match s {
        Statement::Release { statement: r, .. } => format!(
            "entry {index}: release {} ({} {} for {} {}), security epoch {}, image {} bytes sha256 {}",
            r.release_id,
            r.product,
            r.version,
            r.family,
            r.hardware_revisions.iter().collect::<Vec<_>>().join(","),
            r.security_epoch,
            r.image_size,
            hex::encode(r.image_digest)
        ),
        Statement::Manifest(m) => format!(
            "entry {index}: manifest: device {} ({}) eligible for {} in campaign {}, current version {}..={}",
            m.device_id,
            m.hardware_revision,
            m.release_id,
            m.campaign,
            m.min_version,
            m.max_version
        ),
        Statement::Ceremony { record, .. } => format!(
            "entry {index}: ceremony record {} ({}-of-{}: {}), token {}, log {}, signed by the root key",
            hex::encode(record.ceremony_id),
            record.threshold,
            record.custodians.len(),
            record.custodians.iter().collect::<Vec<_>>().join(", "),
            record.token,
            record.origin
        ),
        Statement::Session(r) => format!(
            "entry {index}: session of {} for {:?}",
            r.custodians.iter().collect::<Vec<_>>().join(", "),
            r.purpose.as_str()
        ),
        Statement::Key { statement: k, .. } => format!(
            "entry {index}: key statement: {:?} the {} key {} ({}), signed by the root key",
            k.action,
            k.role.name(),
            hex::encode(k.key_id),
            k.reason
        ),
        Statement::Rejection(r) => format!(
            "entry {index}: rejection: device {} not eligible for {} in campaign {}: {}",
            r.device_id,
            r.release_id,
            r.campaign,
            r.reasons
                .iter()
                .map(cairn_verifier::rollout::Reason::name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Statement::Plan { plan, .. } => format!(
            "entry {index}: rollout plan {} (campaign sequence {}) for {} (rollback {}): {} eligible, {} rejected, {} stages, signed by the release key",
            plan.campaign,
            plan.campaign_sequence,
            plan.release_id,
            plan.rollback_release_id,
            plan.eligible,
            plan.rejected,
            plan.stages.len()
        ),
        Statement::Approval { approval: a, .. } => format!(
            "entry {index}: gate approval for campaign {}: {} stage {}, signed by the release key",
            a.campaign,
            a.action.name(),
            a.stage
        ),
        Statement::DeviceEvent(e) => format!(
            "entry {index}: device {} {} ({} in campaign {}, stage {}, attempt {}) by {}: {}",
            e.device_id,
            e.state.name(),
            e.release_id,
            e.campaign,
            e.stage,
            e.attempt,
            e.actor,
            e.cause
        ),
        Statement::CampaignEvent(e) => format!(
            "entry {index}: campaign {} {} (stage {}, {} devices) by {}: {}",
            e.campaign,
            e.action.name(),
            e.stage,
            e.devices,
            e.actor,
            e.cause
        ),
        Statement::RelayCheckpoint(r) => format!(
            "entry {index}: relay log {} checkpoint recorded at {} (relay key {})",
            r.origin,
            r.recorded_at.0,
            hex::encode(&r.relay_key.key_hash(&Software)[..8])
        ),
        _ => format!("entry {index}: kind {}", s.kind().0),
    }
}

fn write_proof(proof: &ProofFile, file: Option<&Path>, out: Output, summary: &str) -> CliResult {
    let text = serde_json::to_string_pretty(proof).context("encoding the proof")?;
    match file {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            out.emit(
                &format!("{summary}; written to {}", path.display()),
                &json!({ "ok": true, "file": path }),
            );
        }
        None => println!("{text}"),
    }
    Ok(())
}

fn hash_of(s: &str, what: &str) -> CliResult<Hash> {
    keys::hash_hex(s).map_err(|e| verification(e.context(format!("{what} in the proof file"))))
}

fn verify_proof(path: &Path, key: &Path, entry: Option<&Path>, out: Output) -> CliResult {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let proof: ProofFile = serde_json::from_str(&text)
        .map_err(|e| verification(anyhow!("{}: not a cairn proof file: {e}", path.display())))?;
    let public = keys::public_key(key)?;
    let checked = |note: &str| -> CliResult<(String, u64, Hash)> {
        let cp = Checkpoint::parse(note.as_bytes())
            .map_err(|e| verification(anyhow!("malformed checkpoint in the proof file: {e}")))?;
        let log_key = keys::log_key(cp.origin, public)?;
        cp.verify(&log_key, &Software)
            .map_err(|e| verification(anyhow!("checkpoint {}: {e}", cp.size)))?;
        Ok((cp.origin.to_owned(), cp.size.0, cp.root))
    };
    match proof {
        ProofFile::Inclusion {
            checkpoint,
            index,
            tree_size,
            leaf_hash: lh,
            entry: embedded,
            proof,
        } => {
            let (origin, size, root) = checked(&checkpoint)?;
            if size != tree_size {
                return Err(verification(anyhow!(
                    "the proof is for tree size {tree_size}, its checkpoint is of size {size}"
                )));
            }
            let claimed = hash_of(&lh, "leaf_hash")?;
            let entry_bytes = match (entry, embedded) {
                (Some(p), _) => {
                    Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                }
                (None, Some(b64)) => Some(base64ct::Base64::decode_vec(&b64).map_err(|e| {
                    verification(anyhow!("entry in the proof file is not base64: {e}"))
                })?),
                (None, None) => None,
            };
            if entry_bytes
                .as_ref()
                .is_some_and(|e| leaf_hash(&Software, e) != claimed)
            {
                return Err(verification(anyhow!(
                    "the entry does not hash to the proof's leaf hash"
                )));
            }
            let hashes = proof
                .iter()
                .map(|h| hash_of(h, "proof hash"))
                .collect::<CliResult<Vec<_>>>()?;
            verify_inclusion(&claimed, index, size, &hashes, &root).map_err(|e| {
                verification(anyhow!(
                    "inclusion of entry {index} in checkpoint {size}: {e}"
                ))
            })?;
            let what = entry_bytes
                .as_deref()
                .and_then(|e| Statement::decode(e).ok())
                .map(|s| describe(index, &s));
            out.emit(
                &format!("inclusion proof OK: entry {index} is in {origin} at size {size}{}", what.map(|w| format!("\n{w}")).unwrap_or_default()),
                &json!({ "ok": true, "type": "inclusion", "origin": origin, "index": index, "size": size, "leaf_hash": lh }),
            );
        }
        ProofFile::Consistency { old, new, proof } => {
            let (origin_old, old_size, old_root) = checked(&old)?;
            let (origin_new, new_size, new_root) = checked(&new)?;
            if origin_old != origin_new {
                return Err(verification(anyhow!(
                    "the checkpoints are of two logs: {origin_old:?} and {origin_new:?}"
                )));
            }
            let hashes = proof
                .iter()
                .map(|h| hash_of(h, "proof hash"))
                .collect::<CliResult<Vec<_>>>()?;
            verify_consistency(old_size, new_size, &hashes, &old_root, &new_root).map_err(|e| {
                verification(anyhow!("consistency from {old_size} to {new_size}: {e}"))
            })?;
            out.emit(
                &format!("consistency proof OK: {origin_new} at size {old_size} is a prefix of size {new_size}"),
                &json!({ "ok": true, "type": "consistency", "origin": origin_new, "old_size": old_size, "new_size": new_size }),
            );
        }
    }
    Ok(())
}
