//! The relay's state, shared by every request and the engine thread: the mirror of the signer's
//! log, the rollout engine, the operators' credentials, the counters. The operations the HTTP API
//! and the console share live here, so both make the same engine calls: bundle import
//! (`import_bundle_bytes`) and operator actions (`act`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_vault::{TransferBundle, Vault};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::note::LogKey;
use cairn_verifier::transfer::BundleError;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::{self, Config, HttpConfig, RolloutConfig, read_key};
use crate::engine::{self, Engine, Selection, Status};
use crate::metrics::Metrics;
use crate::mqtt::MqttConfig;
use crate::session::Sessions;
use crate::throttle::Throttle;

/// The exit status of `cairn-relay` when a store failed a write (`Relay::poisoned`): 75,
/// `EX_TEMPFAIL` of sysexits.h, "try again later": a restart reopens the store and recovers.
pub const EXIT_POISONED: i32 = 75;

/// Why the relay could not open its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A key file named by the configuration.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The configured origin is not a valid log origin.
    #[error("{0:?} is not a valid log origin")]
    Origin(String),
    /// The data directory could not be created.
    #[error("creating {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The mirror could not be opened or created.
    #[error("opening the mirror at {path}: {source}")]
    Mirror {
        /// Its directory.
        path: PathBuf,
        /// The error.
        source: cairn_vault::Error,
    },
    /// The rollout engine could not start (its log, or replaying it).
    #[error("starting the rollout engine: {0}")]
    Engine(#[from] engine::Error),
    /// The witness policy (`[witnesses] policy`) cannot be used, or the mirror's checkpoints
    /// could not be checked against it.
    #[error("the witnesses: {0}")]
    Witnesses(cairn_vault::Error),
    /// The mirror's tiles could not be published up to its latest checkpoint.
    #[error("publishing the mirror's tiles in {path}: {source}")]
    Tiles {
        /// The tiles directory.
        path: PathBuf,
        /// The error.
        source: cairn_vault::Error,
    },
}

/// Why a transfer bundle was not imported. Nothing was written to the mirror unless the variant
/// says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The body is not a transfer bundle (formats.md §6).
    #[error("not a transfer bundle: {0}")]
    NotABundle(BundleError),
    /// The bundle failed verification (a bad signature, an altered entry, a gap, …).
    #[error("{0}")]
    Refused(cairn_vault::Error),
    /// The bundle contradicts what the mirror accepted (a fork): kept as evidence.
    #[error("{source}; kept as evidence at {kept}")]
    Fork {
        /// What the vault found.
        source: cairn_vault::Error,
        /// Where the bundle was kept (or why it could not be).
        kept: String,
    },
    /// The mirror's storage failed.
    #[error("the mirror: {0}")]
    Mirror(cairn_vault::Error),
    /// The configured origin is not a valid key name (checked when the relay opened).
    #[error("{0:?} is not a valid log origin")]
    Origin(String),
    /// The bundle was imported, but the rollout engine failed taking it up.
    #[error("imported, but the rollout engine failed: {0}")]
    Engine(engine::Error),
    /// The bundle was imported, but its tiles could not be published.
    #[error("imported, but publishing tiles failed: {0}")]
    Tiles(cairn_vault::Error),
}

/// What an operator asks of a campaign (the API's and the console's actions).
#[derive(Debug, Clone)]
pub enum OperatorAction {
    /// Pause the campaign.
    Pause,
    /// Resume a pause of an operator.
    Resume,
    /// Quarantine these devices, the failing cohort, or a stage.
    Quarantine(Selection),
    /// Deliver the pre-signed rollback target.
    Rollback(Selection),
}

impl OperatorAction {
    /// Its name in the API's paths.
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::Pause => "pause",
            OperatorAction::Resume => "resume",
            OperatorAction::Quarantine(_) => "quarantine",
            OperatorAction::Rollback(_) => "rollback",
        }
    }
}

/// What an operator action did.
#[derive(Debug, Clone)]
pub struct Acted {
    /// The actor recorded: `operator:<name>`.
    pub actor: String,
    /// Devices it changed (quarantine, rollback).
    pub devices: u64,
    /// The campaign's status after it.
    pub status: Status,
}

/// The relay's state, shared by every request.
#[derive(Debug)]
pub struct Relay {
    pub(crate) vault: Arc<Vault>,
    origin: String,
    key: PublicKey,
    tokens: Vec<([u8; 32], String)>,
    engine: Mutex<Engine>,
    pub(crate) publisher: Mutex<Option<tokio::sync::mpsc::UnboundedSender<engine::Outgoing>>>,
    /// With `[mqtt] jobs = true`: the AWS IoT Jobs service the relay plays (docs/jobs.md) and
    /// the channel its messages go out on.
    pub(crate) jobs: Mutex<Option<crate::jobs::Service>>,
    pub(crate) jobs_out:
        Mutex<Option<tokio::sync::mpsc::UnboundedSender<crate::jobs::Publication>>>,
    pub(crate) rollout: RolloutConfig,
    pub(crate) tiles: PathBuf,
    pub(crate) state_tiles: PathBuf,
    pub(crate) data_dir: PathBuf,
    refused: PathBuf,
    pub(crate) mqtt: Option<MqttConfig>,
    /// The broker's per-connection limits (`[broker]`).
    pub(crate) broker: crate::limits::BrokerLimits,
    /// The HTTP server's settings (the bundle body limit, public routes).
    pub(crate) http: HttpConfig,
    pub(crate) metrics: Metrics,
    /// The console's signed-in sessions.
    pub(crate) sessions: Sessions,
    /// Failed authentications per source.
    pub(crate) throttle: Throttle,
    /// With `[witnesses]`: the forwarder of the signer's checkpoints to the witnesses; deliveries
    /// wait for a quorum (`crate::witness`).
    pub(crate) witnesses: Option<crate::witness::Forwarder>,
    /// With `[witnesses] relay_log`: the forwarder of the relay log's checkpoints to the same
    /// witnesses; the device-state bundle ends at their quorum (`crate::witness`).
    pub(crate) state_witnesses: Option<crate::witness::Forwarder>,
    /// One import at a time (the vault has one writer; exports follow imports).
    import: Mutex<()>,
}

/// With `[witnesses]`: the forwarder, and the mirror's latest checkpoint with a quorum (the engine
/// uses the mirror up to it).
fn open_witnesses(
    config: &Config,
    vault: &Arc<Vault>,
) -> Result<(Option<crate::witness::Forwarder>, Option<u64>), OpenError> {
    let Some(w) = &config.witnesses else {
        return Ok((None, None));
    };
    let forwarder =
        crate::witness::Forwarder::open(w, Arc::clone(vault), crate::witness::WitnessedLog::Signer)
            .map_err(OpenError::Witnesses)?;
    let published = forwarder.witnessed();
    Ok((Some(forwarder), Some(published)))
}

/// With `[witnesses] relay_log`: the forwarder of the relay's own log.
fn open_state_witnesses(
    config: &Config,
    engine: &Engine,
) -> Result<Option<crate::witness::Forwarder>, OpenError> {
    let Some(w) = config.witnesses.as_ref().filter(|w| w.relay_log) else {
        return Ok(None);
    };
    crate::witness::Forwarder::open(
        w,
        engine.log().shared_vault(),
        crate::witness::WitnessedLog::Relay,
    )
    .map(Some)
    .map_err(OpenError::Witnesses)
}

/// Whether a vault error on import is the bundle's fault (422) rather than the storage's (500).
fn bundle_at_fault(e: &cairn_vault::Error) -> bool {
    use cairn_vault::Error as E;
    matches!(
        e,
        E::BadBundle(_)
            | E::Checkpoint(_)
            | E::Cosignature { .. }
            | E::NoCheckpoint { .. }
            | E::BadEntry { .. }
            | E::EntryTooLarge { .. }
            | E::DuplicateRelease { .. }
            | E::SignatureInvalid
            | E::WrongOrigin { .. }
    )
}

impl Relay {
    /// Opens (or creates) the relay's state under `config.data_dir`.
    pub fn open(config: &Config) -> Result<Self, OpenError> {
        let key = read_key(&config.log.key)?;
        LogKey::new(&config.log.origin, &config.log.origin, key, &Software)
            .ok_or_else(|| OpenError::Origin(config.log.origin.clone()))?;
        let mirror = config.data_dir.join("mirror");
        let vault = if mirror.exists() {
            // A create that was interrupted (a failed sync, a kill) left a directory with no log
            // in it: `create` resumes it (and refuses a directory that holds anything else).
            match Vault::open_origin(&mirror, &config.log.origin) {
                Err(cairn_vault::Error::NotALog(_)) => Vault::create(&mirror, &config.log.origin),
                other => other,
            }
        } else {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| OpenError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
            Vault::create(&mirror, &config.log.origin)
        }
        .map(Arc::new)
        .map_err(|source| OpenError::Mirror {
            path: mirror.clone(),
            source,
        })?;
        // The tiles up to the mirror's latest checkpoint: a relay killed in an import after the
        // mirror's write and before its tiles (docs/relay.md, "A relay killed part way") serves
        // them from its restart, not from the next import.
        let tiles = config.data_dir.join("tiles");
        if vault
            .latest_checkpoint()
            .map_err(|source| OpenError::Mirror {
                path: mirror.clone(),
                source,
            })?
            .is_some()
        {
            vault
                .export(&tiles, &mut |_, _| {})
                .map_err(|source| OpenError::Tiles {
                    path: tiles.clone(),
                    source,
                })?;
        }
        let tokens = config
            .operators
            .iter()
            .filter_map(|(name, t)| Some((hex::decode(t).ok()?.try_into().ok()?, name.clone())))
            .collect();
        let release_key = ReleaseKey::new(read_key(&config.log.release_key)?, &Software);
        let state_origin = config
            .rollout
            .origin
            .clone()
            .unwrap_or_else(|| format!("{}/relay", config.log.origin));
        let (witnesses, published) = open_witnesses(config, &vault)?;
        let mut engine = Engine::open_published(
            &config.data_dir,
            &state_origin,
            release_key,
            &vault,
            published,
        )?;
        engine.set_rate(config.rollout.max_deliveries_per_sec);
        let state_witnesses = open_state_witnesses(config, &engine)?;
        // The Jobs service, with the executions the relay log shows IN_PROGRESS (a restart).
        let jobs = match config.mqtt.as_ref().filter(|m| m.jobs) {
            Some(m) => {
                let mut service =
                    crate::jobs::Service::with_in_progress_timeout(m.jobs_in_progress_timeout_secs);
                for r in engine.jobs_in_progress(&vault)? {
                    service.restore(&r);
                }
                // And the last execution of each device waiting for a retry, so the retry is
                // the next execution number.
                for e in engine.jobs_ended()? {
                    service.restore_ended(&e);
                }
                Some(service)
            }
            None => None,
        };
        Ok(Self {
            vault,
            origin: config.log.origin.clone(),
            key,
            tokens,
            engine: Mutex::new(engine),
            publisher: Mutex::new(None),
            jobs: Mutex::new(jobs),
            jobs_out: Mutex::new(None),
            rollout: config.rollout.clone(),
            tiles,
            state_tiles: config.data_dir.join("state-tiles"),
            data_dir: config.data_dir.clone(),
            refused: config.data_dir.join("refused"),
            mqtt: config.mqtt.clone(),
            broker: config.broker,
            http: config.http.clone(),
            metrics: Metrics::default(),
            sessions: Sessions::default(),
            throttle: Throttle::new(config.http.max_auth_failures),
            witnesses,
            state_witnesses,
            import: Mutex::new(()),
        })
    }

    /// The mirror.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Why the relay must stop, if a write to one of its stores failed: the mirror's or the
    /// state log's handle refuses every write after a failed one (`cairn_vault::Error::Poisoned`:
    /// after a failed `fsync` the kernel may have dropped the pages it could not write), and the
    /// only safe continuation is to reopen the store, which recovers from what is durable. The
    /// relay does that by restarting: `cairn-relay` exits (status [`EXIT_POISONED`]) as soon as
    /// this is `Some`, and its service manager starts it again (docs/relay.md, "Storage faults").
    pub fn poisoned(&self) -> Option<String> {
        let mirror = self
            .vault
            .poisoned()
            .map(|cause| (self.vault.path().to_owned(), cause));
        mirror
            .or_else(|| {
                let engine = self.engine();
                let log = engine.log().vault();
                log.poisoned().map(|cause| (log.path().to_owned(), cause))
            })
            .map(|(path, cause)| {
                format!(
                    "a write to {} failed ({cause}); it refuses writes until it is reopened: \
                     restart the relay, which recovers from what is durable",
                    path.display()
                )
            })
    }

    /// The relay's counters (what `/metrics` shows).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The signer log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The rollout engine (locked).
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The dashboard as it stands, read-only (the demo writes it to a file).
    pub fn dashboard(&self) -> String {
        let view = self.engine().view(&engine::DeviceQuery::default());
        crate::dashboard::render(&crate::dashboard::Page {
            origin: &self.origin,
            mirror_size: self.vault.size(),
            view: &view,
            access: crate::dashboard::Access::ReadOnly,
            filter: &crate::dashboard::Filter::default(),
            witnesses: &self.witness_views(),
        })
    }

    /// The operator whose bearer token this is (compared in constant time with every configured
    /// hash), if any.
    pub fn operator_of(&self, token: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let mut found = None;
        for (t, name) in &self.tokens {
            if t.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Commits the engine's pending events and hands what may be published to the transport.
    pub(crate) fn commit(
        &self,
        engine: &mut Engine,
        elapsed: std::time::Duration,
    ) -> Result<(), engine::Error> {
        let mut jobs = self.jobs();
        self.commit_with(engine, jobs.as_mut(), elapsed, Vec::new(), engine::now())
    }

    /// A copy of the Jobs service's executions (`None` without `[mqtt] jobs = true`), for tests
    /// and the demo.
    pub fn jobs_snapshot(&self) -> Option<crate::jobs::Service> {
        let _engine = self.engine(); // the lock order: engine, then jobs
        self.jobs().clone()
    }

    /// The Jobs service (locked after the engine, never before).
    pub(crate) fn jobs(&self) -> MutexGuard<'_, Option<crate::jobs::Service>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `commit`; with the Jobs service, the deliveries become job executions, and `replies` (the
    /// answers to the step's Jobs requests) go out once the step's events are in the relay log.
    /// `now` is the step's time: new executions are queued at the time their `pending` event
    /// records, which is what a restart reads back (`jobs::restore`).
    pub(crate) fn commit_with(
        &self,
        engine: &mut Engine,
        jobs: Option<&mut crate::jobs::Service>,
        elapsed: std::time::Duration,
        mut replies: Vec<crate::jobs::Publication>,
        now: u64,
    ) -> Result<(), engine::Error> {
        if let Some(service) = jobs {
            let jobs_out = self
                .jobs_out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let out = engine.commit(&self.vault, elapsed, jobs_out.is_some())?;
            replies.extend(engine.jobs_commit(service, out, now));
            if let Some(p) = jobs_out {
                for r in replies {
                    if p.send(r).is_err() {
                        Metrics::count(&self.metrics.mqtt.errors);
                    }
                }
            }
            return Ok(());
        }
        let publisher = self
            .publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let out = engine.commit(&self.vault, elapsed, publisher.is_some())?;
        if let Some(p) = publisher {
            for o in out {
                if p.send(o).is_err() {
                    Metrics::count(&self.metrics.mqtt.errors);
                }
            }
        }
        Ok(())
    }

    /// An operator's action on a campaign, recorded with `operator:<name>` as actor and `cause`
    /// (the operator's words) as its cause, and committed to the relay log before it returns.
    pub fn act(
        &self,
        operator: &str,
        campaign: &str,
        action: &OperatorAction,
        cause: &str,
    ) -> Result<Acted, engine::Error> {
        let actor = format!("operator:{operator}");
        let now = engine::now();
        let mut engine = self.engine();
        let done = match action {
            OperatorAction::Pause => engine.pause(campaign, &actor, cause, now).map(|()| 0),
            OperatorAction::Resume => engine.resume(campaign, &actor, cause, now).map(|()| 0),
            OperatorAction::Quarantine(selection) => {
                engine.quarantine_selected(campaign, selection, &actor, cause, now)
            }
            OperatorAction::Rollback(selection) => {
                engine.rollback(&self.vault, campaign, selection, &actor, cause, now)
            }
        };
        // A refused action stages nothing; one that failed part way may have: its events are
        // dropped and the state rebuilt from the log.
        let devices = match done {
            Ok(n) => n,
            Err(e) => {
                if engine.uncommitted() > 0 {
                    engine.recover(&self.vault)?;
                }
                return Err(e);
            }
        };
        self.commit(&mut engine, std::time::Duration::ZERO)?;
        let status = engine
            .campaign_view(campaign, &engine::DeviceQuery::default())?
            .status;
        Ok(Acted {
            actor,
            devices,
            status,
        })
    }

    /// Imports a transfer bundle's bytes as `POST /api/v1/bundles` does: verified, written to
    /// the mirror, handed to the rollout engine, its tiles published (`cairn demo` runs the relay
    /// in-process).
    pub fn import_bundle_bytes(&self, body: &[u8]) -> Result<serde_json::Value, ImportError> {
        let _one = self.import_lock();
        let result = self.import_locked(body);
        if result.is_err() {
            Metrics::count(&self.metrics.bundles_refused);
        }
        if let Some(f) = &self.witnesses {
            // A new checkpoint goes to the witnesses now, not at the next round.
            f.wake();
        }
        result
    }

    /// One import (or publication of a witnessed checkpoint) at a time.
    pub(crate) fn import_lock(&self) -> MutexGuard<'_, ()> {
        self.import
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn import_locked(&self, body: &[u8]) -> Result<serde_json::Value, ImportError> {
        let bundle = TransferBundle::decode(body).map_err(ImportError::NotABundle)?;
        // The origin was checked when the relay opened.
        let key = LogKey::new(&self.origin, &self.origin, self.key, &Software)
            .ok_or_else(|| ImportError::Origin(self.origin.clone()))?;
        if let Some(f) = &self.witnesses {
            // A forged line under a pinned witness's name would block the checkpoint's quorum.
            cairn_vault::witness::check_cosignatures(
                f.policy(),
                &bundle.checkpoint,
                &key,
                "the transfer bundle",
            )
            .map_err(ImportError::Refused)?;
        }
        let report = match self.vault.import_bundle(&bundle, &key) {
            Ok(r) => r,
            Err(e @ cairn_vault::Error::Fork(_)) => {
                // A bundle that contradicts what the mirror accepted is evidence: keep it.
                let path = self
                    .refused
                    .join(format!("{}.bundle", hex::encode(Sha256::digest(body))));
                let kept = std::fs::create_dir_all(&self.refused)
                    .and_then(|()| std::fs::write(&path, body))
                    .map_or_else(
                        |e| format!("(could not keep it: {e})"),
                        |()| path.display().to_string(),
                    );
                return Err(ImportError::Fork { source: e, kept });
            }
            Err(e) if bundle_at_fault(&e) => return Err(ImportError::Refused(e)),
            Err(e) => return Err(ImportError::Mirror(e)),
        };
        crate::interrupted::reached("mirror");
        // With witnesses: the latest checkpoint with a quorum (the bundle may carry cosignatures
        // gathered on the signer's side); a newer one waits for the forwarder.
        if let Some(f) = &self.witnesses {
            f.refresh(report.size).map_err(ImportError::Mirror)?;
        }
        let witnessed = self
            .witnesses
            .as_ref()
            .map(crate::witness::Forwarder::witnessed);
        {
            let mut engine = self.engine();
            if witnessed.is_some() {
                engine.set_published(witnessed);
            }
            engine
                .on_mirror(&self.vault, engine::now())
                .and_then(|()| self.commit(&mut engine, std::time::Duration::ZERO))
                .map_err(ImportError::Engine)?;
        }
        crate::interrupted::reached("state");
        Metrics::count(&self.metrics.bundles_imported);
        self.metrics.entries_imported.fetch_add(
            report.appended.end - report.appended.start,
            std::sync::atomic::Ordering::Relaxed,
        );
        let export = self
            .vault
            .export(&self.tiles, &mut |_, _| {})
            .map_err(ImportError::Tiles)?;
        crate::interrupted::reached("tiles");
        Ok(json!({
            "ok": true,
            "appended": [report.appended.start, report.appended.end],
            "already_held": report.already_held,
            "size": report.size,
            "manifests": report.manifests,
            "tiles_written": export.tiles,
            "witnessed": witnessed,
            "waiting_for_witnesses": witnessed.is_some_and(|w| w < report.size),
        }))
    }
}
