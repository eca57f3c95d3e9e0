//! The relay's device-state log on the air-gapped side (docs/audit.md, "The relay log").
//!
//! A device-state bundle (formats.md §6) exported by the relay is verified with the relay key and
//! imported into a mirror under the signer's home (`relay-log/`), then custodians, in a session,
//! record the mirror's new checkpoint and the relay key in the signer's own log (kind 11,
//! formats.md §4.13). From then on the relay's log hangs from the root certificate: root → log key
//! certificate → signer checkpoint → inclusion of the record → relay key and checkpoint → relay
//! entries. The first record pins the relay key; a bundle under another key is refused.

use std::path::PathBuf;

use cairn_vault::Vault;
use cairn_verifier::campaign::RelayCheckpoint;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::Statement;
use cairn_verifier::transfer::TransferBundle;
use cairn_verifier::types::{Name, UnixTime};

use crate::appliance::Appliance;
use crate::error::{Error, Result};
use crate::session::Session;

/// The mirror of the relay's log, under the signer's home.
pub const RELAY_LOG_DIR: &str = "relay-log";

/// What [`Session::record_relay_state`] did.
#[derive(Debug, Clone)]
pub struct RelayStateReport {
    /// Entries the bundle added to the mirror.
    pub appended: std::ops::Range<u64>,
    /// The mirror's size now: the relay checkpoint recorded.
    pub relay_size: u64,
    /// Index of the kind-11 record in the signer's log.
    pub index: u64,
    /// The signer's checkpoint over it.
    pub checkpoint: String,
    /// Whether the record was logged before (by an interrupted `rollout record-state` of the same
    /// bundle): nothing was logged now, and `index` and `checkpoint` are the earlier record's.
    pub already_recorded: bool,
}

/// The last relay checkpoint recorded in the signer's log: its index and decoded record.
#[derive(Debug, Clone)]
pub struct RecordedRelay {
    /// Index of the record in the signer's log.
    pub index: u64,
    /// The relay log's origin.
    pub origin: String,
    /// The relay key.
    pub key: PublicKey,
    /// The relay's signed checkpoint note.
    pub checkpoint: String,
}

impl Appliance {
    /// Where the relay log mirror lives.
    pub fn relay_log_path(&self) -> PathBuf {
        self.home().join(RELAY_LOG_DIR)
    }

    /// The relay log mirror, if a device-state bundle was ever recorded.
    pub fn relay_log(&self, origin: &str) -> Result<Option<Vault>> {
        let path = self.relay_log_path();
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(Vault::open_origin(path, origin)?))
    }

    /// Every relay checkpoint recorded in the signer's log, oldest first.
    pub fn relay_records(&self) -> Result<Vec<RecordedRelay>> {
        relay_records(self.vault())
    }
}

/// Every relay checkpoint recorded in a signer's log, oldest first.
pub fn relay_records(vault: &Vault) -> Result<Vec<RecordedRelay>> {
    let mut out = Vec::new();
    for index in vault.query_indices(cairn_vault::Query::Kind(
        cairn_verifier::statement::Kind::RELAY_CHECKPOINT,
    ))? {
        let entry = vault.entry(index)?;
        if let Statement::RelayCheckpoint(r) = Statement::decode(&entry)? {
            out.push(RecordedRelay {
                index,
                origin: r.origin.as_str().to_owned(),
                key: r.relay_key,
                checkpoint: String::from_utf8_lossy(r.checkpoint).into_owned(),
            });
        }
    }
    Ok(out)
}

impl Session<'_> {
    /// `cairn rollout record-state`: verifies a device-state bundle from the relay with
    /// `relay_key`, imports it into the relay log mirror (all or nothing, idempotent), and logs
    /// the mirror's checkpoint and the relay key as a kind-11 record with the session record. A
    /// key other than the one recorded before is refused. A bundle that adds nothing since the
    /// last record logs nothing: the report says it was recorded already (how a retry after a
    /// session killed past its log write ends).
    pub fn record_relay_state(
        &self,
        bundle: &TransferBundle,
        relay_key: PublicKey,
        now: UnixTime,
    ) -> Result<RelayStateReport> {
        let appliance = self.appliance();
        let origin = Name::new(&bundle.origin).ok_or_else(|| {
            Error::Invalid(format!(
                "the bundle's origin {:?} is not a valid log origin",
                bundle.origin
            ))
        })?;
        let records = appliance.relay_records()?;
        if let Some(last) = records.last() {
            if last.key != relay_key {
                return Err(Error::Verification {
                    what: "relay key".into(),
                    why: format!(
                        "entry {} of the signer's log recorded relay key {}, this one is {}; a new relay key needs a new relay log",
                        last.index,
                        hex::encode(last.key.key_hash(&Software)),
                        hex::encode(relay_key.key_hash(&Software))
                    ),
                });
            }
            if last.origin != bundle.origin {
                return Err(Error::Verification {
                    what: "relay log origin".into(),
                    why: format!(
                        "entry {} recorded the relay log {:?}, this bundle is from {:?}",
                        last.index, last.origin, bundle.origin
                    ),
                });
            }
        }
        let key =
            LogKey::new(&bundle.origin, &bundle.origin, relay_key, &Software).ok_or_else(|| {
                Error::Invalid(format!(
                    "relay log origin {:?} is not a valid key name",
                    bundle.origin
                ))
            })?;
        if let Some(policy) = crate::witness::load_policy(appliance.home())? {
            // A forged line under a pinned witness's name would stay in the relay log's mirror.
            crate::witness::check_cosignatures(
                &policy,
                &bundle.checkpoint,
                &key,
                "the device-state bundle",
            )?;
        }
        let path = appliance.relay_log_path();
        let mirror = if path.exists() {
            Vault::open_origin(&path, &bundle.origin)?
        } else {
            Vault::create(&path, &bundle.origin)?
        };
        let imported = mirror.import_bundle(bundle, &key)?;
        let checkpoint = mirror
            .latest_checkpoint()?
            .ok_or_else(|| Error::Verification {
                what: "relay log".into(),
                why: "the mirror holds no checkpoint after the import".into(),
            })?;
        crate::interrupted::reached("mirrored");
        if let Some(last) = records.last()
            && last.checkpoint == checkpoint
        {
            // Recorded already (a session killed after its log write, or the same bundle again):
            // nothing new to record, and nothing is.
            return Ok(RelayStateReport {
                appended: imported.appended,
                relay_size: imported.size,
                index: last.index,
                checkpoint: self
                    .appliance()
                    .vault()
                    .latest_checkpoint()?
                    .unwrap_or_default(),
                already_recorded: true,
            });
        }
        let record = RelayCheckpoint {
            origin,
            relay_key,
            checkpoint: checkpoint.as_bytes(),
            recorded_at: now,
        };
        let (first, signer_checkpoint) = self.log_entries(
            &format!("rollout record-state {}", bundle.origin),
            vec![record.to_cbor()],
        )?;
        Ok(RelayStateReport {
            appended: imported.appended,
            relay_size: imported.size,
            index: first + 1,
            checkpoint: signer_checkpoint,
            already_recorded: false,
        })
    }
}
