//! cairn's online relay (docs/relay.md): it holds no release or log key. It imports transfer
//! bundles from the air-gapped signer only after verifying them in full, keeps a mirror of the log,
//! serves it over HTTP as C2SP tlog-tiles, and answers operators who authenticate with a bearer
//! token. Refused bundles that contradict the mirror (a fork, a conflicting checkpoint) are kept as
//! evidence.

pub mod broker;
pub mod mqtt;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::{Context, bail};
use cairn_vault::{TransferBundle, Vault};
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
}

/// The log the relay mirrors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Its origin.
    pub origin: String,
    /// Its checkpoint key: the log key certificate (PEM) or public key (PEM SPKI).
    pub key: PathBuf,
}

/// Operator credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operators {
    /// SHA-256 (hex) of each operator's bearer token: the tokens themselves are never stored.
    pub token_sha256: Vec<String>,
}

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
        if let Some(m) = config.mqtt.as_mut() {
            m.ca = base.join(&m.ca);
            m.cert = base.join(&m.cert);
            m.key = base.join(&m.key);
        }
        if config.operators.token_sha256.is_empty() {
            bail!(
                "{}: [operators] token_sha256 is empty: nobody could use the operator API",
                path.display()
            );
        }
        for t in &config.operators.token_sha256 {
            if hex::decode(t).map(|b| b.len()) != Ok(32) {
                bail!(
                    "{}: operator token hash {t:?} is not 64 hex digits",
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
}

/// The relay's state, shared by every request.
#[derive(Debug)]
pub struct Relay {
    vault: Vault,
    origin: String,
    key: PublicKey,
    tokens: Vec<[u8; 32]>,
    tiles: PathBuf,
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
            .token_sha256
            .iter()
            .filter_map(|t| hex::decode(t).ok()?.try_into().ok())
            .collect();
        Ok(Self {
            vault,
            origin: config.log.origin.clone(),
            key,
            tokens,
            tiles: config.data_dir.join("tiles"),
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

    fn log_key(&self) -> anyhow::Result<LogKey<'_>> {
        LogKey::new(&self.origin, &self.origin, self.key, &Software)
            .context("the configured log origin is not a valid key name")
    }

    /// Whether the request carries a bearer token whose SHA-256 is configured (compared in
    /// constant time).
    fn authorized(&self, req: &HttpRequest) -> bool {
        let Some(token) = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        self.tokens.iter().fold(false, |ok, t| {
            ok | (t.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
        })
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

/// `POST /api/v1/campaigns/{campaign}/deliver`: publish the update delivery of every eligible
/// device of the campaign to its MQTT topic (retained, QoS 1), against the mirror's latest
/// checkpoint.
async fn deliver(
    relay: web::Data<Relay>,
    req: HttpRequest,
    campaign: web::Path<String>,
) -> HttpResponse {
    if !relay.authorized(&req) {
        return unauthorized(&relay);
    }
    let Some(config) = relay.mqtt.clone() else {
        return HttpResponse::Conflict()
            .json(json!({ "ok": false, "error": "no [mqtt] broker is configured" }));
    };
    let campaign = campaign.into_inner();
    let relay2 = relay.clone();
    let deliveries = web::block(move || relay2.campaign_deliveries(&campaign)).await;
    let deliveries = match deliveries {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return HttpResponse::UnprocessableEntity()
                .json(json!({ "ok": false, "error": format!("{e:#}") }));
        }
        Err(e) => {
            return HttpResponse::InternalServerError()
                .json(json!({ "ok": false, "error": e.to_string() }));
        }
    };
    match mqtt::publish_deliveries(&config, &deliveries, std::time::Duration::from_secs(600)).await
    {
        Ok(n) => {
            relay
                .metrics
                .deliveries_published
                .fetch_add(n, Ordering::Relaxed);
            HttpResponse::Ok().json(json!({ "ok": true, "published": n }))
        }
        Err(e) => {
            HttpResponse::BadGateway().json(json!({ "ok": false, "error": format!("{e:#}") }))
        }
    }
}

impl Relay {
    /// The update deliveries of a campaign's eligible devices.
    fn campaign_deliveries(&self, campaign: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        use cairn_verifier::statement::{Purpose, Statement};
        let mut indices = Vec::new();
        for index in self
            .vault
            .query_indices(cairn_vault::Query::Campaign(campaign))?
        {
            let entry = self.vault.entry(index)?;
            if let Ok(Statement::Manifest(m)) = Statement::decode(&entry)
                && m.purpose == Purpose::Update
            {
                indices.push(index);
            }
        }
        if indices.is_empty() {
            bail!("campaign {campaign:?} has no eligible device in the mirror");
        }
        Ok(self.vault.deliveries(&indices)?)
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

/// `GET /log/<path>`: the mirror as static C2SP tlog-tiles (`checkpoint`, `tile/…`).
async fn tiles(relay: web::Data<Relay>, path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    // Only tlog-tiles names: segments of [A-Za-z0-9.], never `..`.
    let safe = !path.is_empty()
        && path.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        });
    if !safe {
        return HttpResponse::NotFound().finish();
    }
    match std::fs::read(relay.tiles.join(&path)) {
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
    .route(
        "/api/v1/campaigns/{campaign}/deliver",
        web::post().to(deliver),
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
