//! The relay as the witnesses' online forwarder (docs/witness.md §2, "The relay as forwarder"):
//! when an import brings a new checkpoint of the signer's log, the relay sends each witness of its
//! policy (`[witnesses] policy`, the signer's `witnesses.toml` format) a C2SP tlog-witness
//! `add-checkpoint` request from the last size that witness cosigned, with a consistency proof
//! from its mirror; it checks every cosignature that comes back against the pinned key, attaches
//! the good ones to the mirror's checkpoint, and lets the rollout engine use that checkpoint only
//! once k witnesses cosigned it. Witnesses that fail are asked again with backoff.
//!
//! The relay forwards but cannot forge: a cosignature is an Ed25519 signature by the witness's
//! own key over the log's signed checkpoint, checked here as devices check it
//! (`cairn_vault::witness`, `cairn_verifier::witness::report`).
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the forwarder's state: the policy, each witness's status, the wake-up |
//! | `client.rs` | the HTTP client: `POST add-checkpoint`, the answer read under a cap |
//! | `forward.rs` | a round: requests, 409 answers, cosignatures attached, the quorum published |
//! | `state.rs` | the relay's own log witnessed (`[witnesses] relay_log`): the device-state bundle's cut |
//!
//! With `[witnesses] relay_log = true` a second forwarder carries the relay's own device-state log
//! to the same witnesses (issue 18 item 4): nothing waits for it, but the device-state bundle ends
//! at its latest checkpoint with a quorum, so the relay checkpoint the custodians record, and
//! every evidence pack built on it, carries k cosignatures (`cairn audit verify --witnesses`).

mod client;
mod forward;
mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cairn_vault::Vault;
use cairn_vault::witness::Policy;

pub use client::{Answer, MAX_ANSWER_BYTES, WitnessUrl, add_checkpoint, connector};
pub use forward::WitnessView;
pub use state::StateBundleError;

use crate::config::WitnessConfig;

/// Why a witness could not be asked, or its answer not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A witness URL in the policy that the relay cannot use.
    #[error("witness URL {url:?}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// Connecting, writing or reading failed (the witness is down, or too slow).
    #[error("{0}")]
    Io(String),
    /// The TLS connection to the witness failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The answer is larger than any witness's ([`MAX_ANSWER_BYTES`]).
    #[error("the answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    /// The answer is not HTTP/1.1 as a witness sends it.
    #[error("a malformed answer: {0}")]
    Malformed(String),
    /// The witness refused the request (its status and words).
    #[error("answered {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// Its cosignature does not verify with its pinned key, or its answer carries none: nothing
    /// was attached.
    #[error("{0}")]
    BadCosignature(String),
    /// The log's store (the mirror, or the relay's own log) could not make the request or store
    /// the cosignature.
    #[error("the relay's store: {0}")]
    Mirror(String),
}

/// One witness as the relay sees it (the dashboard, `/metrics`, `GET /api/v1/witnesses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessStatus {
    /// Its name (its key name).
    pub name: String,
    /// Its URL, if the policy gives one (without, the relay does not ask it).
    pub url: Option<String>,
    /// The largest checkpoint of the mirror it cosigned (0 if none).
    pub cosigned: u64,
    /// The size the witness last said it holds (a 409 answer), if it differs from `cosigned`.
    pub claimed: Option<u64>,
    /// The last failure, if the last request failed.
    pub last_error: Option<String>,
    /// When it was last asked (POSIX seconds).
    pub last_attempt: Option<u64>,
    /// When it last cosigned (POSIX seconds, the relay's clock).
    pub last_cosigned_at: Option<u64>,
    /// Requests failed in a row.
    pub failures: u32,
}

/// The log a forwarder carries to the witnesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitnessedLog {
    /// The signer's log, as the relay's mirror holds it: deliveries wait for its quorum.
    Signer,
    /// The relay's own device-state log (`[witnesses] relay_log`): the device-state bundle ends
    /// at its quorum.
    Relay,
}

/// The forwarder's state, shared by the forwarding thread, imports and the pages.
#[derive(Debug)]
pub struct Forwarder {
    log: WitnessedLog,
    vault: Arc<Vault>,
    /// The largest checkpoint of `vault` with a quorum, as last seen.
    witnessed: AtomicU64,
    /// The shortest time between two requests to one witness that answered.
    every: Duration,
    policy: Policy,
    urls: Vec<Option<WitnessUrl>>,
    retry_min: Duration,
    retry_max: Duration,
    timeout: Duration,
    /// The TLS client of `https://` witnesses (`[witnesses] ca`).
    tls: native_tls::TlsConnector,
    status: Mutex<Vec<(WitnessStatus, Instant)>>,
    wake: (Mutex<bool>, Condvar),
}

impl Forwarder {
    /// Reads the policy file `config.policy` and each witness's last cosigned size from `vault`,
    /// the store of `log` (the mirror, or the relay's own log).
    pub fn open(
        config: &WitnessConfig,
        vault: Arc<Vault>,
        log: WitnessedLog,
    ) -> Result<Self, cairn_vault::Error> {
        let mirror = &*vault;
        let policy =
            Policy::read(&config.policy)?.ok_or_else(|| cairn_vault::Error::WitnessPolicy {
                path: config.policy.clone(),
                why: "no such file".into(),
            })?;
        let mut urls = Vec::new();
        let mut status = Vec::new();
        for (vkey, url) in policy.witnesses() {
            let parsed = url
                .as_deref()
                .map(WitnessUrl::parse)
                .transpose()
                .map_err(|e| cairn_vault::Error::WitnessPolicy {
                    path: config.policy.clone(),
                    why: e.to_string(),
                })?;
            urls.push(parsed);
            let cosigned = if mirror.latest_checkpoint()?.is_none() {
                0
            } else {
                cairn_vault::witness::last_cosigned(mirror, &policy, &vkey.name)?
            };
            status.push((
                WitnessStatus {
                    name: vkey.name.clone(),
                    url: url.clone(),
                    cosigned,
                    claimed: None,
                    last_error: None,
                    last_attempt: None,
                    last_cosigned_at: None,
                    failures: 0,
                },
                Instant::now(),
            ));
        }
        let witnessed = AtomicU64::new(cairn_vault::witness::witnessed_size(mirror, &policy)?);
        let tls =
            connector(config.ca.as_deref()).map_err(|e| cairn_vault::Error::WitnessPolicy {
                path: config.ca.clone().unwrap_or_default(),
                why: e.to_string(),
            })?;
        let every = match log {
            WitnessedLog::Signer => Duration::ZERO,
            WitnessedLog::Relay => Duration::from_secs(config.relay_log_every_secs),
        };
        Ok(Self {
            log,
            vault,
            witnessed,
            every,
            policy,
            urls,
            retry_min: Duration::from_secs(config.retry_min_secs),
            retry_max: Duration::from_secs(config.retry_max_secs),
            timeout: Duration::from_secs(config.timeout_secs),
            tls,
            status: Mutex::new(status),
            wake: (Mutex::new(false), Condvar::new()),
        })
    }

    /// The policy (the devices').
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The largest checkpoint of its log with a quorum, as last seen (0 if none).
    pub fn witnessed(&self) -> u64 {
        self.witnessed.load(Ordering::SeqCst)
    }

    /// Checks the stored checkpoints of `sizes` (just cosigned) and raises
    /// [`Forwarder::witnessed`] to the largest with a quorum.
    fn raise_witnessed(&self, sizes: &mut [u64]) -> Result<u64, cairn_vault::Error> {
        sizes.sort_unstable();
        let size = cairn_vault::witness::witnessed_among(
            &self.vault,
            &self.policy,
            sizes,
            self.witnessed(),
        )?;
        self.witnessed.fetch_max(size, Ordering::SeqCst);
        Ok(self.witnessed())
    }

    /// Every witness's status, in policy order.
    pub fn status(&self) -> Vec<WitnessStatus> {
        self.lock().iter().map(|(s, _)| s.clone()).collect()
    }

    /// Reads each witness's last cosigned size, and the latest checkpoint with a quorum, again
    /// from the log (an imported bundle may carry cosignatures gathered on the signer's side); a
    /// size never goes down. For the signer's log (an import), not the relay's own.
    pub fn refresh(&self, latest: u64) -> Result<(), cairn_vault::Error> {
        let behind: Vec<(usize, String)> = self
            .lock()
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| s.cosigned < latest)
            .map(|(i, (s, _))| (i, s.name.clone()))
            .collect();
        for (i, name) in behind {
            let size = cairn_vault::witness::last_cosigned(&self.vault, &self.policy, &name)?;
            if let Some((s, _)) = self.lock().get_mut(i) {
                s.cosigned = s.cosigned.max(size);
            }
        }
        // Every stored checkpoint, not only each witness's last: a quorum may stand on an older
        // one (the mirror holds a checkpoint per ceremony, so this is a short scan).
        let size = cairn_vault::witness::witnessed_size(&self.vault, &self.policy)?;
        self.witnessed.fetch_max(size, Ordering::SeqCst);
        Ok(())
    }

    /// Asks the forwarding thread for a round now (a new checkpoint was imported).
    pub fn wake(&self) {
        *self.wake.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.1.notify_all();
    }

    /// Waits for a wake-up or `timeout`.
    fn sleep(&self, timeout: Duration) {
        let woken = self.wake.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut woken, _) = self
            .wake
            .1
            .wait_timeout_while(woken, timeout, |w| !*w)
            .unwrap_or_else(PoisonError::into_inner);
        *woken = false;
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(WitnessStatus, Instant)>> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The wait before asking a witness again after `failures` failures in a row.
    fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .retry_min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled.min(self.retry_max)
    }
}
