//! cairn's online relay (docs/relay.md): it holds no release or log key. It imports transfer
//! bundles from the air-gapped signer only after verifying them in full, keeps a mirror of the log,
//! serves it over HTTP as C2SP tlog-tiles, and answers operators who authenticate with a bearer
//! token. Refused bundles that contradict the mirror (a fork, a conflicting checkpoint) are kept as
//! evidence.

pub mod broker;
pub mod dashboard;
pub mod engine;
pub mod mqtt;
pub mod statelog;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::{Context, bail};
use cairn_vault::{TransferBundle, Vault};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::note::LogKey;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The relay's configuration file (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Where the mirror, the served tiles and refused bundles live.
    pub data_dir: PathBuf,
    /// The signer's log.
    pub log: LogConfig,
    /// Who may use the operator API.
    pub operators: Operators,
    /// The MQTT broker deliveries go through (AWS IoT Core, or the local Mosquitto).
    pub mqtt: Option<mqtt::MqttConfig>,
    /// The rollout engine and the relay's own log.
    #[serde(default)]
    pub rollout: RolloutConfig,
}

/// `[rollout]`: how the engine runs.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Origin of the relay's own device-state log (default: the signer log's origin + `/relay`).
    pub origin: Option<String>,
    /// Most deliveries handed to the broker per second (AWS IoT Core allows 100 publishes a
    /// second per connection); unlimited when absent.
    pub max_deliveries_per_sec: Option<u32>,
    /// How often the engine steps, milliseconds (default 200).
    pub tick_millis: Option<u64>,
}

/// The log the relay mirrors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Its origin.
    pub origin: String,
    /// Its checkpoint key: the log key certificate (PEM) or public key (PEM SPKI).
    pub key: PathBuf,
    /// The release key certificate (or public key): plans and gate approvals must verify with it.
    pub release_key: PathBuf,
}

/// Operator credentials: each operator's name and the SHA-256 (hex) of their bearer token; the
/// tokens themselves are never stored. The name is the actor of what they do (`operator:<name>`).
pub type Operators = BTreeMap<String, String>;

impl Config {
    /// Reads and checks a configuration file; relative paths are relative to it.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.log.key = base.join(&config.log.key);
        config.log.release_key = base.join(&config.log.release_key);
        if let Some(m) = config.mqtt.as_mut() {
            m.ca = base.join(&m.ca);
            m.cert = base.join(&m.cert);
            m.key = base.join(&m.key);
        }
        if config.operators.is_empty() {
            bail!(
                "{}: [operators] is empty: nobody could use the operator API",
                path.display()
            );
        }
        for (name, t) in &config.operators {
            if cairn_verifier::types::Id::new(&format!("operator:{name}")).is_none() {
                bail!(
                    "{}: operator name {name:?} must be letters, digits, '.', '_', '-' (at most 55)",
                    path.display()
                );
            }
            if hex::decode(t).map(|b| b.len()) != Ok(32) {
                bail!(
                    "{}: the token hash of operator {name} is not 64 hex digits",
                    path.display()
                );
            }
        }
        Ok(config)
    }
}

/// Reads a P-256 public key from a certificate or public key PEM.
pub fn read_key(path: &Path) -> anyhow::Result<PublicKey> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (label, der) = der::pem::decode_vec(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not PEM ({e})", path.display()))?;
    let spki = match label {
        "PUBLIC KEY" => der,
        "CERTIFICATE" => {
            use der::{Decode as _, Encode as _};
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|e| anyhow::anyhow!("{}: not a certificate ({e})", path.display()))?;
            cert.tbs_certificate()
                .subject_public_key_info()
                .to_der()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        other => bail!(
            "{}: PEM label {other}, expected CERTIFICATE or PUBLIC KEY",
            path.display()
        ),
    };
    PublicKey::from_spki_der(&spki)
        .with_context(|| format!("{}: not an ECDSA P-256 public key", path.display()))
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    bundles_imported: AtomicU64,
    deliveries_published: AtomicU64,
    bundles_refused: AtomicU64,
    entries_imported: AtomicU64,
    unauthorized: AtomicU64,
    mqtt_errors: AtomicU64,
}

/// The relay's state, shared by every request.
#[derive(Debug)]
pub struct Relay {
    vault: Vault,
    origin: String,
    key: PublicKey,
    tokens: Vec<([u8; 32], String)>,
    engine: Mutex<engine::Engine>,
    publisher: Mutex<Option<tokio::sync::mpsc::UnboundedSender<engine::Outgoing>>>,
    rollout: RolloutConfig,
    tiles: PathBuf,
    state_tiles: PathBuf,
    data_dir: PathBuf,
    refused: PathBuf,
    mqtt: Option<mqtt::MqttConfig>,
    metrics: Metrics,
    /// One import at a time (the vault has one writer; exports follow imports).
    import: Mutex<()>,
}

impl Relay {
    /// Opens (or creates) the relay's state under `config.data_dir`.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let key = read_key(&config.log.key)?;
        LogKey::new(&config.log.origin, &config.log.origin, key, &Software)
            .with_context(|| format!("{:?} is not a valid log origin", config.log.origin))?;
        let mirror = config.data_dir.join("mirror");
        let vault = if mirror.exists() {
            Vault::open_origin(&mirror, &config.log.origin)
        } else {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            Vault::create(&mirror, &config.log.origin)
        }
        .with_context(|| format!("opening the mirror at {}", mirror.display()))?;
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
        let mut engine = engine::Engine::open(&config.data_dir, &state_origin, release_key, &vault)
            .context("starting the rollout engine")?;
        engine.set_rate(config.rollout.max_deliveries_per_sec);
        Ok(Self {
            vault,
            origin: config.log.origin.clone(),
            key,
            tokens,
            engine: Mutex::new(engine),
            publisher: Mutex::new(None),
            rollout: config.rollout.clone(),
            tiles: config.data_dir.join("tiles"),
            state_tiles: config.data_dir.join("state-tiles"),
            data_dir: config.data_dir.clone(),
            refused: config.data_dir.join("refused"),
            mqtt: config.mqtt.clone(),
            metrics: Metrics::default(),
            import: Mutex::new(()),
        })
    }

    /// The mirror.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The signer log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn log_key(&self) -> anyhow::Result<LogKey<'_>> {
        LogKey::new(&self.origin, &self.origin, self.key, &Software)
            .context("the configured log origin is not a valid key name")
    }

    /// The rollout engine (locked).
    pub fn engine(&self) -> MutexGuard<'_, engine::Engine> {
        self.engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The operator whose bearer token the request carries (compared in constant time with every
    /// configured hash), if any.
    fn operator(&self, req: &HttpRequest) -> Option<String> {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let mut found = None;
        for (t, name) in &self.tokens {
            if t.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
                found = Some(name.clone());
            }
        }
        found
    }

    fn authorized(&self, req: &HttpRequest) -> bool {
        self.operator(req).is_some()
    }

    /// Commits the engine's pending events and hands what may be published to the MQTT link.
    fn commit(
        &self,
        engine: &mut engine::Engine,
        elapsed: std::time::Duration,
    ) -> anyhow::Result<()> {
        let publisher = self
            .publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let out = engine.commit(&self.vault, elapsed, publisher.is_some())?;
        if let Some(p) = publisher {
            for o in out {
                if p.send(o).is_err() {
                    self.metrics.mqtt_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

fn unauthorized(relay: &Relay) -> HttpResponse {
    relay.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Unauthorized()
        .insert_header(("WWW-Authenticate", "Bearer"))
        .json(json!({ "ok": false, "error": "an operator bearer token is required" }))
}

/// `POST /api/v1/bundles`: verify and import a transfer bundle, then publish the new tiles.
async fn import_bundle(
    relay: web::Data<Relay>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if !relay.authorized(&req) {
        return unauthorized(&relay);
    }
    let relay2 = relay.clone();
    let result = web::block(move || relay2.import_blocking(&body)).await;
    match result {
        Ok(Ok(report)) => HttpResponse::Ok().json(report),
        Ok(Err((status, message))) => {
            relay
                .metrics
                .bundles_refused
                .fetch_add(1, Ordering::Relaxed);
            HttpResponse::build(status).json(json!({ "ok": false, "error": message }))
        }
        Err(e) => {
            HttpResponse::InternalServerError().json(json!({ "ok": false, "error": e.to_string() }))
        }
    }
}

impl Relay {
    /// Imports a transfer bundle's bytes exactly as `POST /api/v1/bundles` does: verified, written
    /// to the mirror, handed to the rollout engine (`cairn demo` runs the relay in-process).
    pub fn import_bundle_bytes(&self, body: &[u8]) -> anyhow::Result<serde_json::Value> {
        self.import_blocking(body)
            .map_err(|(status, message)| anyhow::anyhow!("bundle refused ({status}): {message}"))
    }

    fn import_blocking(&self, body: &[u8]) -> Result<serde_json::Value, (StatusCode, String)> {
        let _one = self
            .import
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bundle = TransferBundle::decode(body).map_err(|e| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("not a transfer bundle: {e}"),
            )
        })?;
        let key = self
            .log_key()
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let report = match self.vault.import_bundle(&bundle, &key) {
            Ok(r) => r,
            Err(e) => {
                let message = e.to_string();
                // A bundle that contradicts what the mirror accepted is evidence: keep it.
                if matches!(e, cairn_vault::Error::Fork(_)) {
                    let name = hex::encode(Sha256::digest(body));
                    let path = self.refused.join(format!("{name}.bundle"));
                    let kept = std::fs::create_dir_all(&self.refused)
                        .and_then(|()| std::fs::write(&path, body))
                        .map_or_else(
                            |e| format!("(could not keep it: {e})"),
                            |()| path.display().to_string(),
                        );
                    return Err((
                        StatusCode::CONFLICT,
                        format!("{message}; kept as evidence at {kept}"),
                    ));
                }
                return Err((StatusCode::UNPROCESSABLE_ENTITY, message));
            }
        };
        let appended = report.appended.end - report.appended.start;
        {
            let mut engine = self.engine();
            let taken = engine
                .on_mirror(&self.vault, engine::now())
                .and_then(|()| self.commit(&mut engine, std::time::Duration::ZERO));
            if let Err(e) = taken {
                return Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("imported, but the rollout engine failed: {e:#}"),
                ));
            }
        }
        self.metrics
            .bundles_imported
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .entries_imported
            .fetch_add(appended, Ordering::Relaxed);
        let export = self
            .vault
            .export(&self.tiles, &mut |_, _| {})
            .map_err(|e| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("publishing tiles: {e}"),
                )
            })?;
        Ok(json!({
            "ok": true,
            "appended": [report.appended.start, report.appended.end],
            "already_held": report.already_held,
            "size": report.size,
            "deliveries": report.deliveries,
            "tiles_written": export.tiles,
        }))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    /// Why (recorded as the event's cause).
    cause: String,
    /// Devices (quarantine, rollback).
    #[serde(default)]
    devices: Vec<String>,
    /// Rollback scope instead of devices: `failed` or `stage:<n>`.
    #[serde(default)]
    scope: Option<String>,
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "callers build the message for it"
)]
fn refuse(status: StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "ok": false, "error": message }))
}

/// `POST /api/v1/campaigns/{campaign}/{pause|resume|quarantine|rollback}`: an operator's action,
/// logged with the operator as actor and the body's cause.
async fn campaign_action(
    relay: web::Data<Relay>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(operator) = relay.operator(&req) else {
        return unauthorized(&relay);
    };
    let (campaign, action) = path.into_inner();
    let body: ActionBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be JSON {{\"cause\": \"...\", \"devices\": [...], \"scope\": \"failed\"|\"stage:N\"}}: {e}"
                ),
            );
        }
    };
    if body.cause.trim().is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a cause is required: it is recorded as evidence".into(),
        );
    }
    let relay2 = relay.clone();
    let result = web::block(move || {
        let actor = format!("operator:{operator}");
        let now = engine::now();
        let mut engine = relay2.engine();
        if !engine.campaigns().contains_key(&campaign) {
            return Err((StatusCode::NOT_FOUND, format!("no campaign {campaign:?} in the relay")));
        }
        let conflict = |e: anyhow::Error| (StatusCode::CONFLICT, format!("{e:#}"));
        let devices = match action.as_str() {
            "pause" => engine.pause(&campaign, &actor, &body.cause, now).map(|()| 0).map_err(conflict)?,
            "resume" => engine.resume(&campaign, &actor, &body.cause, now).map(|()| 0).map_err(conflict)?,
            "quarantine" => {
                if body.devices.is_empty() {
                    return Err((StatusCode::BAD_REQUEST, "quarantine needs \"devices\"".into()));
                }
                engine.quarantine(&campaign, &body.devices, &actor, &body.cause, now).map_err(conflict)?
            }
            "rollback" => {
                let selection = match (body.scope.as_deref(), body.devices.is_empty()) {
                    (None, false) => engine::Selection::Devices(body.devices.clone()),
                    (Some("failed"), true) => engine::Selection::Failed,
                    (Some(s), true) if s.starts_with("stage:") => match s["stage:".len()..].parse() {
                        Ok(n) => engine::Selection::Stage(n),
                        Err(_) => return Err((StatusCode::BAD_REQUEST, format!("scope {s:?}: expected stage:<number>"))),
                    },
                    _ => return Err((StatusCode::BAD_REQUEST, "rollback needs either \"devices\" or \"scope\": \"failed\" | \"stage:<n>\"".into())),
                };
                engine.rollback(&relay2.vault, &campaign, &selection, &actor, &body.cause, now).map_err(conflict)?
            }
            other => return Err((StatusCode::NOT_FOUND, format!("no campaign action {other:?} (pause, resume, quarantine, rollback)"))),
        };
        relay2
            .commit(&mut engine, std::time::Duration::ZERO)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        Ok(json!({ "ok": true, "campaign": campaign, "action": action, "devices": devices, "actor": actor,
            "status": engine.campaigns().get(&campaign).map(|c| c.status().name()) }))
    })
    .await;
    match result {
        Ok(Ok(v)) => HttpResponse::Ok().json(v),
        Ok(Err((status, message))) => refuse(status, message),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/campaigns`.
async fn campaigns(relay: web::Data<Relay>, req: HttpRequest) -> HttpResponse {
    if !relay.authorized(&req) {
        return unauthorized(&relay);
    }
    let engine = relay.engine();
    let list: Vec<serde_json::Value> = engine
        .campaigns()
        .keys()
        .filter_map(|c| engine.summary(c))
        .collect();
    HttpResponse::Ok().json(json!({ "ok": true, "campaigns": list, "problems": engine.problems }))
}

/// `GET /api/v1/campaigns/{campaign}`.
async fn campaign(
    relay: web::Data<Relay>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if !relay.authorized(&req) {
        return unauthorized(&relay);
    }
    match relay.engine().summary(&path) {
        Some(v) => HttpResponse::Ok().json(v),
        None => refuse(
            StatusCode::NOT_FOUND,
            format!("no campaign {:?} in the relay", path.as_str()),
        ),
    }
}

/// `GET /api/v1/campaigns/{campaign}/devices`: every device's stage and state.
async fn campaign_devices(
    relay: web::Data<Relay>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if !relay.authorized(&req) {
        return unauthorized(&relay);
    }
    let engine = relay.engine();
    let Some(c) = engine.campaigns().get(path.as_str()) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no campaign {:?} in the relay", path.as_str()),
        );
    };
    let devices: Vec<serde_json::Value> = c
        .devices()
        .map(|(id, stage, state)| json!({ "device": id, "stage": stage, "state": state.name() }))
        .collect();
    HttpResponse::Ok().json(json!({ "ok": true, "campaign": c.id, "devices": devices }))
}

#[derive(Debug, Deserialize)]
struct FromQuery {
    #[serde(default)]
    from: u64,
}

/// `GET /api/v1/state-bundle?from=N`: the relay's log from entry `N` as a transfer bundle
/// (formats.md §6), for the air-gapped signer's mirror (`cairn bundle import`).
async fn state_bundle(
    relay: web::Data<Relay>,
    req: HttpRequest,
    query: web::Query<FromQuery>,
) -> HttpResponse {
    if !relay.authorized(&req) {
        return unauthorized(&relay);
    }
    let relay2 = relay.clone();
    let from = query.from;
    let result = web::block(move || {
        let engine = relay2.engine();
        engine
            .log()
            .vault()
            .export_bundle(from)
            .map(|b| b.to_cbor())
    })
    .await;
    match result {
        Ok(Ok(bytes)) => HttpResponse::Ok()
            .content_type("application/cbor")
            .insert_header((
                "Content-Disposition",
                "attachment; filename=\"relay-state.bundle\"",
            ))
            .body(bytes),
        Ok(Err(e)) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/status`.
async fn status(relay: web::Data<Relay>, req: HttpRequest) -> HttpResponse {
    if !relay.authorized(&req) {
        return unauthorized(&relay);
    }
    let checkpoint = relay.vault.latest_checkpoint().ok().flatten();
    HttpResponse::Ok().json(json!({
        "ok": true,
        "origin": relay.origin,
        "size": relay.vault.size(),
        "checkpoint": checkpoint,
    }))
}

/// Whether `path` is a tlog-tiles name: segments of `[A-Za-z0-9.]`, never `.` or `..`.
fn tile_name(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        })
}

fn serve_tile(dir: &Path, path: &str) -> HttpResponse {
    if !tile_name(path) {
        return HttpResponse::NotFound().finish();
    }
    match std::fs::read(dir.join(path)) {
        Ok(bytes) => {
            let (content_type, cache) = if path == "checkpoint" {
                ("text/plain; charset=utf-8", "no-cache")
            } else if path.contains(".p/") {
                ("application/octet-stream", "no-cache")
            } else {
                // C2SP tlog-tiles: full tiles never change.
                (
                    "application/octet-stream",
                    "public, max-age=31536000, immutable",
                )
            };
            HttpResponse::Ok()
                .content_type(content_type)
                .insert_header(("Cache-Control", cache))
                .body(bytes)
        }
        Err(_) => HttpResponse::NotFound().finish(),
    }
}

/// `GET /log/<path>`: the mirror as static C2SP tlog-tiles (`checkpoint`, `tile/…`).
async fn tiles(relay: web::Data<Relay>, path: web::Path<String>) -> HttpResponse {
    serve_tile(&relay.tiles, &path)
}

/// `GET /state/<path>`: the relay's own device-state log as C2SP tlog-tiles, brought up to date
/// when its checkpoint is asked for; `GET /state/key.pem` is the relay key that signs it.
async fn state_tiles(relay: web::Data<Relay>, path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    if path == "key.pem" {
        return match std::fs::read(relay.data_dir.join(statelog::PUBLIC_KEY_FILE)) {
            Ok(pem) => HttpResponse::Ok()
                .content_type("application/x-pem-file")
                .body(pem),
            Err(_) => HttpResponse::NotFound().finish(),
        };
    }
    if path == "checkpoint" {
        let relay2 = relay.clone();
        let exported = web::block(move || {
            let engine = relay2.engine();
            engine
                .log()
                .vault()
                .export(&relay2.state_tiles, &mut |_, _| {})
                .map(|_| ())
        })
        .await;
        if !matches!(exported, Ok(Ok(()))) {
            return HttpResponse::ServiceUnavailable().finish();
        }
    }
    serve_tile(&relay.state_tiles, &path)
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(relay: web::Data<Relay>) -> HttpResponse {
    let m = &relay.metrics;
    let body = format!(
        "# HELP cairn_relay_log_size Entries in the relay's mirror of the signer's log.\n\
         # TYPE cairn_relay_log_size gauge\ncairn_relay_log_size {}\n\
         # HELP cairn_relay_bundles_imported_total Transfer bundles imported.\n\
         # TYPE cairn_relay_bundles_imported_total counter\ncairn_relay_bundles_imported_total {}\n\
         # HELP cairn_relay_bundles_refused_total Transfer bundles refused.\n\
         # TYPE cairn_relay_bundles_refused_total counter\ncairn_relay_bundles_refused_total {}\n\
         # HELP cairn_relay_deliveries_published_total Deliveries the broker acknowledged.\n\
         # TYPE cairn_relay_deliveries_published_total counter\ncairn_relay_deliveries_published_total {}\n\
         # HELP cairn_relay_entries_imported_total Log entries imported.\n\
         # TYPE cairn_relay_entries_imported_total counter\ncairn_relay_entries_imported_total {}\n\
         # HELP cairn_relay_unauthorized_total Operator API requests refused for lack of a valid token.\n\
         # TYPE cairn_relay_unauthorized_total counter\ncairn_relay_unauthorized_total {}\n",
        relay.vault.size(),
        m.bundles_imported.load(Ordering::Relaxed),
        m.bundles_refused.load(Ordering::Relaxed),
        m.deliveries_published.load(Ordering::Relaxed),
        m.entries_imported.load(Ordering::Relaxed),
        m.unauthorized.load(Ordering::Relaxed),
    );
    let mut body = body;
    {
        use std::fmt::Write as _;
        let engine = relay.engine();
        let st = engine.stats();
        let _ = write!(
            body,
            "# HELP cairn_relay_state_log_size Entries in the relay's device-state log.\n\
             # TYPE cairn_relay_state_log_size gauge\ncairn_relay_state_log_size {}\n\
             # HELP cairn_relay_status_reports_total Device status messages, by outcome of their intake.\n\
             # TYPE cairn_relay_status_reports_total counter\n\
             cairn_relay_status_reports_total{{result=\"applied\"}} {}\n\
             cairn_relay_status_reports_total{{result=\"malformed\"}} {}\n\
             cairn_relay_status_reports_total{{result=\"refused\"}} {}\n\
             cairn_relay_status_reports_total{{result=\"replayed\"}} {}\n\
             # HELP cairn_relay_deliveries_handed_total Deliveries handed to the MQTT link.\n\
             # TYPE cairn_relay_deliveries_handed_total counter\ncairn_relay_deliveries_handed_total {}\n\
             # HELP cairn_relay_deliveries_queued Deliveries waiting for the rate limit or the link.\n\
             # TYPE cairn_relay_deliveries_queued gauge\ncairn_relay_deliveries_queued {}\n\
             # HELP cairn_relay_approvals_refused_total Gate approvals that did not verify or were for another plan.\n\
             # TYPE cairn_relay_approvals_refused_total counter\ncairn_relay_approvals_refused_total {}\n\
             # HELP cairn_relay_mqtt_errors_total MQTT connection errors (each followed by a reconnect).\n\
             # TYPE cairn_relay_mqtt_errors_total counter\ncairn_relay_mqtt_errors_total {}\n\
             # HELP cairn_relay_campaign_devices Devices per campaign and state.\n\
             # TYPE cairn_relay_campaign_devices gauge\n",
            engine.log().vault().size(),
            st.reports,
            st.malformed,
            st.refused,
            st.replayed,
            st.handed,
            engine.queued(),
            st.approvals_refused,
            m.mqtt_errors.load(Ordering::Relaxed),
        );
        for (id, c) in engine.campaigns() {
            let totals = c.totals();
            for state in cairn_verifier::campaign::DeviceState::ALL {
                let _ = writeln!(
                    body,
                    "cairn_relay_campaign_devices{{campaign=\"{id}\",state=\"{}\"}} {}",
                    state.name(),
                    totals[usize::try_from(state.code()).unwrap_or(0)]
                );
            }
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// The relay's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/bundles")
            .app_data(web::PayloadConfig::new(MAX_BUNDLE_BYTES))
            .route(web::post().to(import_bundle)),
    )
    .route("/api/v1/status", web::get().to(status))
    .route("/api/v1/campaigns", web::get().to(campaigns))
    .route("/api/v1/campaigns/{campaign}", web::get().to(campaign))
    .route(
        "/api/v1/campaigns/{campaign}/devices",
        web::get().to(campaign_devices),
    )
    .route(
        "/api/v1/campaigns/{campaign}/{action}",
        web::post().to(campaign_action),
    )
    .route("/api/v1/state-bundle", web::get().to(state_bundle))
    .route("/state/{path:.*}", web::get().to(state_tiles))
    .route("/dashboard", web::get().to(dashboard::page))
    .route(
        "/",
        web::get().to(|| async {
            HttpResponse::Found()
                .insert_header(("Location", "/dashboard"))
                .finish()
        }),
    )
    .route("/log/{path:.*}", web::get().to(tiles))
    .route("/metrics", web::get().to(metrics))
    .route(
        "/healthz",
        web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
    );
}

/// Largest bundle accepted over HTTP (a million-device cohort's bundle is about 2.6 GB; larger
/// cohorts are split by the signer).
pub const MAX_BUNDLE_BYTES: usize = 4 << 30;

/// What the MQTT link hands the engine thread.
#[derive(Debug)]
pub enum Input {
    /// A message on `cairn/<device>/status`.
    Status {
        /// The device (from the topic).
        device: String,
        /// The payload.
        payload: Vec<u8>,
        /// The message, acknowledged to the broker once the report is recorded (or refused).
        ack: Option<rumqttc::Publish>,
    },
    /// The broker acknowledged a delivery.
    Acked(engine::Outgoing),
}

/// The relay's background work: the engine thread and, with `[mqtt]`, the MQTT link. Dropping it
/// stops both.
#[derive(Debug)]
pub struct Runner {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Relay {
    /// Starts the engine thread (it steps every `tick_millis`, applying status reports and
    /// acknowledgements in batches: one relay-log write per step) and the MQTT link.
    pub fn start(self: &Arc<Self>) -> anyhow::Result<Runner> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (inputs, rx) = std::sync::mpsc::channel::<Input>();
        let mut threads = Vec::new();
        let mut acker = None;
        if let Some(config) = self.mqtt.clone() {
            let (publisher, outgoing) = tokio::sync::mpsc::unbounded_channel();
            let (acks, to_ack) = tokio::sync::mpsc::unbounded_channel();
            acker = Some(acks);
            *self
                .publisher
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(publisher);
            let relay = Arc::clone(self);
            let stop = Arc::clone(&stop);
            let options = mqtt::options(&config)?;
            threads.push(
                std::thread::Builder::new()
                    .name("mqtt-link".into())
                    .spawn(move || {
                        let runtime = match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(r) => r,
                            Err(e) => {
                                eprintln!("cairn-relay: MQTT runtime: {e}");
                                return;
                            }
                        };
                        runtime.block_on(mqtt::link(
                            options,
                            inputs,
                            outgoing,
                            to_ack,
                            stop,
                            &relay.metrics.mqtt_errors,
                        ));
                    })
                    .context("starting the MQTT link")?,
            );
        } else {
            drop(inputs);
        }
        let relay = Arc::clone(self);
        let stop2 = Arc::clone(&stop);
        let tick =
            std::time::Duration::from_millis(self.rollout.tick_millis.unwrap_or(200).max(10));
        threads.push(
            std::thread::Builder::new()
                .name("rollout-engine".into())
                .spawn(move || relay.run_engine(&rx, acker.as_ref(), tick, &stop2))
                .context("starting the engine thread")?,
        );
        Ok(Runner { stop, threads })
    }

    /// The engine loop. Each step applies the status reports and acknowledgements that arrived,
    /// ticks, and commits the step's events in one synced write; only then are the status
    /// messages acknowledged to the broker. If the write fails, the engine is rebuilt from the log
    /// and the step's status reports are applied again at the next step (and, should the relay
    /// stop meanwhile, the broker still holds them: they were never acknowledged).
    fn run_engine(
        &self,
        rx: &std::sync::mpsc::Receiver<Input>,
        acker: Option<&tokio::sync::mpsc::UnboundedSender<rumqttc::Publish>>,
        tick: std::time::Duration,
        stop: &std::sync::atomic::AtomicBool,
    ) {
        /// Status reports kept over failed writes, at most (beyond, the broker keeps them).
        const CARRY: usize = 1_000_000;
        let mut last = std::time::Instant::now();
        let mut disconnected = false;
        let mut carried: Vec<Input> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut batch = std::mem::take(&mut carried);
            if disconnected || !batch.is_empty() {
                std::thread::sleep(tick);
            } else {
                match rx.recv_timeout(tick) {
                    Ok(i) => batch.push(i),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => disconnected = true,
                }
            }
            // Take what arrived meanwhile, up to a step's worth.
            while !disconnected && batch.len() < 200_000 {
                match rx.try_recv() {
                    Ok(i) => batch.push(i),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => disconnected = true,
                }
            }
            let elapsed = last.elapsed();
            last = std::time::Instant::now();
            let now = engine::now();
            let mut engine = self.engine();
            let stepped = (|| -> anyhow::Result<()> {
                for input in &batch {
                    match input {
                        Input::Status {
                            device, payload, ..
                        } => engine.report(device, payload, now)?,
                        Input::Acked(o) => {
                            self.metrics
                                .deliveries_published
                                .fetch_add(1, Ordering::Relaxed);
                            engine.acked(&o.campaign, &o.device, &o.release, now)?;
                        }
                    }
                }
                engine.tick(&self.vault, now)?;
                self.commit(&mut engine, elapsed)
            })();
            let stepped = stepped.map_err(|e| match engine.recover(&self.vault) {
                Ok(()) => e,
                Err(again) => e.context(format!(
                    "rebuilding from the relay log failed too: {again:#}"
                )),
            });
            drop(engine);
            match stepped {
                Ok(()) => {
                    for input in batch {
                        if let (Input::Status { ack: Some(p), .. }, Some(acker)) = (input, acker) {
                            let _ = acker.send(p);
                        }
                    }
                }
                Err(e) => {
                    eprintln!(
                        "cairn-relay: rollout engine step failed (state rebuilt from the relay log; \
                         its {} status reports are taken again): {e:#}",
                        batch.len()
                    );
                    // A broker acknowledgement is only a `delivered` event: a rebuilt engine
                    // finds the device pending and delivers again, which the device tolerates.
                    carried = batch
                        .into_iter()
                        .filter(|i| matches!(i, Input::Status { .. }))
                        .take(CARRY)
                        .collect();
                }
            }
        }
    }
}
