//! cairn's online relay (docs/relay.md): it holds no release or log key. It imports transfer
//! bundles from the air-gapped signer only after verifying them in full, keeps a mirror of the log,
//! serves it over HTTP as C2SP tlog-tiles, runs each campaign as its signed plan says, and answers
//! operators who authenticate with a bearer token. Refused bundles that contradict the mirror (a
//! fork, a conflicting checkpoint) are kept as evidence.
//!
//! The rooms, from the top down (each imports only the rooms below it; this file only names them):
//!
//! | module | what it holds |
//! |---|---|
//! | `api` | HTTP: routes, operator authentication, handlers, the status each error answers with |
//! | `runner` | the background work: the engine thread and the transport (the MQTT link) |
//! | `relay` | the shared state (`Relay`): bundle import and operator actions, for API and console |
//! | `config`, `metrics`, `dashboard`, `session`, `throttle`, `tls` | the configuration file, the counters, the pages, the console's sessions, failed authentications per source, the HTTPS configuration |
//! | `mqtt`, `broker` | the MQTT link on the devices' own topics; a local Mosquitto for tests |
//! | `engine` | the rollout engine, a folder of rooms (its own table) |
//! | `jobs` | the AWS IoT Jobs device API, played on the broker (pure protocol, below the engine) |
//! | `statelog` | the relay's own device-state log |
//! | `interrupted` | the step boundaries of import and export, where the kill tests stop the relay |
//! | `witness` | the witnesses' online forwarder: requests, cosignatures checked and attached, the quorum that lets deliveries go |

/// Writes a line to standard error in one `write`, tried twice, and ignores a failed write: a
/// message must never stop the relay on its way (`eprintln!` panics when standard error fails,
/// e.g. on a full disk), least of all on its way out after a store failed.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("{}\n", format_args!($($arg)*));
        let mut err = std::io::stderr().lock();
        if err.write_all(line.as_bytes()).is_err() {
            let _ = err.write_all(line.as_bytes());
        }
    }};
}

pub mod api;
pub mod broker;
pub mod config;
pub mod dashboard;
pub mod engine;
pub mod interrupted;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod mqtt;
pub mod relay;
pub mod runner;
pub mod session;
pub mod statelog;
pub mod throttle;
pub mod tls;
pub mod witness;

pub use api::routes;
pub use config::{
    Config, HttpConfig, LogConfig, Operators, PublicRoute, RolloutConfig, WitnessConfig, read_key,
};
pub use engine::Input;
pub use relay::{EXIT_POISONED, ImportError, OpenError, OperatorAction, Relay};
pub use runner::Runner;
