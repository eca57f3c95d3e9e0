//! The relay's configuration file (TOML, docs/relay.md "Configuration") and the public keys it
//! names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_verifier::crypto::PublicKey;
use serde::Deserialize;

/// The largest configuration file the relay reads: a real one is a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;

/// Why a configuration or a key file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is larger than any configuration ([`MAX_CONFIG_BYTES`]).
    #[error(
        "{path}: {size} bytes, larger than any relay configuration (at most {MAX_CONFIG_BYTES})"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, or at least how much of it was read.
        size: u64,
    },
    /// The file is not the configuration's TOML.
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        source: toml::de::Error,
    },
    /// `[operators]` is empty.
    #[error("{0}: [operators] is empty: nobody could use the operator API")]
    NoOperators(PathBuf),
    /// An operator name that cannot be an actor.
    #[error("{path}: operator name {name:?} must be letters, digits, '.', '_', '-' (at most 55)")]
    OperatorName {
        /// The file.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// An operator's token hash that is not SHA-256 hex.
    #[error("{path}: the token hash of operator {name} is not 64 hex digits")]
    TokenHash {
        /// The file.
        path: PathBuf,
        /// The operator.
        name: String,
    },
    /// Only one of `[http] tls_cert` and `tls_key` is set.
    #[error("{0}: [http] needs both tls_cert and tls_key, or neither")]
    TlsPair(PathBuf),
    /// A listener beyond the loopback interface without TLS.
    #[error(
        "{path}: refusing to serve {listen} without TLS (operator tokens and sessions would cross \
         the network in the clear): set [http] tls_cert and tls_key, or listen on 127.0.0.1"
    )]
    PlainHttp {
        /// The file.
        path: PathBuf,
        /// The configured address.
        listen: String,
    },
    /// `[broker] max_inflight` 0: nothing could ever be published.
    #[error("{0}: [broker] max_inflight must be 1 to 65535 (AWS IoT Core allows 100)")]
    Inflight(PathBuf),
    /// `[witnesses]` timings that cannot work.
    #[error(
        "{0}: [witnesses] needs retry_min_secs ≥ 1, retry_max_secs ≥ retry_min_secs and \
         timeout_secs ≥ 1"
    )]
    WitnessTiming(PathBuf),
    /// A key file that is not a P-256 public key or certificate (PEM).
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

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
    pub mqtt: Option<MqttConfig>,
    /// The rollout engine and the relay's own log.
    #[serde(default)]
    pub rollout: RolloutConfig,
    /// The HTTP server: body limits, TLS, which routes are public.
    #[serde(default)]
    pub http: HttpConfig,
    /// The broker's per-connection limits (AWS IoT Core's by default).
    #[serde(default)]
    pub broker: crate::limits::BrokerLimits,
    /// The witnesses the relay forwards the signer's checkpoints to (docs/witness.md §2): with
    /// it, deliveries wait for a quorum of cosignatures.
    pub witnesses: Option<WitnessConfig>,
}

/// `[witnesses]`: the relay as the witnesses' online forwarder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness policy file, in the signer's format (`witnesses.toml`: `threshold` and each
    /// witness's `vkey` and `url`); the devices' policy.
    pub policy: PathBuf,
    /// The first wait before asking a witness that failed again (seconds; doubled after each
    /// failure up to `retry_max_secs`).
    #[serde(default = "default_retry_min_secs")]
    pub retry_min_secs: u64,
    /// The longest wait between two requests to a witness that keeps failing (seconds).
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
    /// How long a witness may take to connect, and to answer (seconds).
    #[serde(default = "default_witness_timeout_secs")]
    pub timeout_secs: u64,
    /// Whether the witnesses cosign the relay's own device-state log too (docs/witness.md §2,
    /// "The relay's log witnessed"): each witness must then follow the relay log's origin and key
    /// (`cairn-witness serve --log ORIGIN=relay-key.pub.pem`), and the device-state bundle ends at
    /// the relay log's latest checkpoint with a quorum.
    #[serde(default)]
    pub relay_log: bool,
    /// With `relay_log`: the shortest time between two requests to one witness for the relay log
    /// (seconds), which signs a checkpoint at every rollout step.
    #[serde(default = "default_relay_log_every_secs")]
    pub relay_log_every_secs: u64,
    /// A CA certificate (PEM) trusted for `https://` witness URLs beside the system's roots: a
    /// witness behind a TLS terminator with a private CA.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

fn default_retry_min_secs() -> u64 {
    2
}

fn default_retry_max_secs() -> u64 {
    300
}

fn default_witness_timeout_secs() -> u64 {
    10
}

fn default_relay_log_every_secs() -> u64 {
    10
}

/// Default `[http] max_bundle_bytes`: 256 MiB. The largest real bundle is a million-device
/// cohort's: the reference fleet's bundle (format version 2) is 2,049,976 bytes for 8,400 devices,
/// about 244 bytes a device, so about 244 MB for a million (docs/relay.md, "Bundle import").
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 256 << 20;

/// Default `[http] max_auth_failures`: failed authentications a source may make a minute.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 10;

/// `[http]`: the HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest transfer bundle body `POST /api/v1/bundles` reads (bytes); a larger one is `413`.
    #[serde(default = "default_max_bundle_bytes")]
    pub max_bundle_bytes: u64,
    /// The server's certificate chain (PEM): with `tls_key`, the relay serves HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// The server's private key (PEM, PKCS#8 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Routes readable without a token or session beyond the main log's tiles (public by
    /// design): any of `state` (the relay log's tiles), `dashboard`, `metrics`.
    #[serde(default)]
    pub public: Vec<PublicRoute>,
    /// Failed authentications (a wrong token, on the API or the sign-in form) one source may
    /// make in a minute; beyond, its requests that need authentication are `429` until the
    /// minute is over.
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
}

/// A route that `[http] public` can open to readers without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicRoute {
    /// `GET /state/…`: the relay log's tiles and key.
    State,
    /// `GET /dashboard…`: the pages (acting still needs a session).
    Dashboard,
    /// `GET /metrics`.
    Metrics,
}

fn default_max_bundle_bytes() -> u64 {
    DEFAULT_MAX_BUNDLE_BYTES
}

fn default_max_auth_failures() -> u32 {
    DEFAULT_MAX_AUTH_FAILURES
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            tls_cert: None,
            tls_key: None,
            public: Vec::new(),
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
        }
    }
}

impl HttpConfig {
    /// The certificate and key files, if the relay serves HTTPS.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }
}

/// Whether every address `listen` names is a loopback address.
fn loopback_only(listen: &str) -> bool {
    use std::net::ToSocketAddrs as _;
    listen.to_socket_addrs().is_ok_and(|mut addrs| {
        let mut any = false;
        addrs.all(|a| {
            any = true;
            a.ip().is_loopback()
        }) && any
    })
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

/// `[mqtt]` in the relay's configuration (the link itself: `crate::mqtt`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host (`127.0.0.1`, or the IoT Core endpoint).
    pub host: String,
    /// Broker port (8883 for IoT Core).
    pub port: u16,
    /// CA certificate (PEM) the broker's certificate chains to.
    pub ca: PathBuf,
    /// The relay's client certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// MQTT client id.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Deliver through the AWS IoT Jobs device API (docs/jobs.md) instead of the devices' own
    /// delivery topics.
    #[serde(default)]
    pub jobs: bool,
    /// With `jobs`: how long an execution may stay IN_PROGRESS before the relay makes it
    /// `TIMED_OUT` (seconds, 1 to 7 days; AWS's `inProgressTimeoutInMinutes`); none when absent
    /// (a device's own `stepTimeoutInMinutes` still applies).
    #[serde(default)]
    pub jobs_in_progress_timeout_secs: Option<crate::limits::InProgressTimeout>,
}

fn default_client_id() -> String {
    crate::broker::RELAY_CLIENT.into()
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
    pub fn load(path: &Path) -> Result<Self, Error> {
        use std::io::Read as _;
        let read = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        Self::parse(&text, path)
    }

    /// Parses and checks the text of the configuration file at `path` (which names it in errors
    /// and is what relative paths are relative to); reads nothing (`fuzz/fuzz_targets/relay_config.rs`).
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        // The TOML parser keeps every error it recovers from: about 300 heap bytes per byte of a
        // malformed file (fuzz/fuzz_targets/relay_config.rs), so the size is bounded first.
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(Error::TooLarge {
                path: path.to_owned(),
                size: text.len() as u64,
            });
        }
        let mut config: Config = toml::from_str(text).map_err(|source| Error::Toml {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.log.key = base.join(&config.log.key);
        config.log.release_key = base.join(&config.log.release_key);
        if let Some(m) = config.mqtt.as_mut() {
            m.ca = base.join(&m.ca);
            m.cert = base.join(&m.cert);
            m.key = base.join(&m.key);
        }
        if let Some(w) = config.witnesses.as_mut() {
            w.policy = base.join(&w.policy);
            w.ca = w.ca.as_ref().map(|ca| base.join(ca));
            if w.retry_min_secs == 0 || w.retry_max_secs < w.retry_min_secs || w.timeout_secs == 0 {
                return Err(Error::WitnessTiming(path.to_owned()));
            }
        }
        for f in [&mut config.http.tls_cert, &mut config.http.tls_key]
            .into_iter()
            .flatten()
        {
            *f = base.join(&*f);
        }
        if config.http.tls_cert.is_some() != config.http.tls_key.is_some() {
            return Err(Error::TlsPair(path.to_owned()));
        }
        if config.broker.max_inflight == 0 {
            return Err(Error::Inflight(path.to_owned()));
        }
        if config.http.tls().is_none() && !loopback_only(&config.listen) {
            return Err(Error::PlainHttp {
                path: path.to_owned(),
                listen: config.listen.clone(),
            });
        }
        if config.operators.is_empty() {
            return Err(Error::NoOperators(path.to_owned()));
        }
        for (name, t) in &config.operators {
            if cairn_verifier::types::Id::new(&format!("operator:{name}")).is_none() {
                return Err(Error::OperatorName {
                    path: path.to_owned(),
                    name: name.clone(),
                });
            }
            if hex::decode(t).map(|b| b.len()) != Ok(32) {
                return Err(Error::TokenHash {
                    path: path.to_owned(),
                    name: name.clone(),
                });
            }
        }
        Ok(config)
    }
}

/// Reads a P-256 public key from a certificate or public key PEM.
pub fn read_key(path: &Path) -> Result<PublicKey, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let key = |reason: String| Error::Key {
        path: path.to_owned(),
        reason,
    };
    let (label, der) = der::pem::decode_vec(&bytes).map_err(|e| key(format!("not PEM ({e})")))?;
    let spki = match label {
        "PUBLIC KEY" => der,
        "CERTIFICATE" => {
            use der::{Decode as _, Encode as _};
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|e| key(format!("not a certificate ({e})")))?;
            cert.tbs_certificate()
                .subject_public_key_info()
                .to_der()
                .map_err(|e| key(e.to_string()))?
        }
        other => {
            return Err(key(format!(
                "PEM label {other}, expected CERTIFICATE or PUBLIC KEY"
            )));
        }
    };
    PublicKey::from_spki_der(&spki).ok_or_else(|| key("not an ECDSA P-256 public key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `relay_config` in the long fuzz run (issue 21): a malformed file of 477 bytes
    /// made the TOML parser's error recovery hold 351 KB. It is refused, naming the file.
    #[test]
    fn the_fuzz_found_malformed_file_is_refused_naming_it() {
        let input: &[u8] = b"liste\x1a .......ivr0...................ivr0....................CCCCCCCCCCCCCCCCCCC\
              \x00\x00\x00\x00CCCCCCCCCCCCCCCCCCCCCCCCC........el={ n.....................ivr0............\
              ................1:80lisCCCC........el={ n....te8.................ivr0...........\
              .............CCCCCCCCCCCCCCCCCCC\x00\x00\x00\x00CCCCCCCCCCCCCCCCCCCCCCCCC........el={ n.....\
              ................ivr0............................1:80lisCCCC........el={ n....te8\
              .................ivr0...................................................\"\"\"iw";
        assert_eq!(input.len(), 477, "the fuzzer's input, byte for byte");
        let text = std::str::from_utf8(input).expect("UTF-8");
        let path = Path::new("/etc/cairn/relay.toml");
        match Config::parse(text, path) {
            Err(e @ Error::Toml { .. }) => {
                assert!(e.to_string().starts_with("/etc/cairn/relay.toml:"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_larger_than_any_configuration_is_refused_before_parsing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.toml");
        let mut text = "# padding\n".repeat(7_000);
        text.push_str("listen = \"127.0.0.1:0\"\n");
        std::fs::write(&path, &text).expect("write");
        match Config::load(&path) {
            Err(e @ Error::TooLarge { size, .. }) => {
                assert_eq!(size, MAX_CONFIG_BYTES + 1);
                assert!(e.to_string().contains("relay.toml"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}
