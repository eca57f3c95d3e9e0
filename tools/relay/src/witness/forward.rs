//! A forwarding round: each witness that has not cosigned the mirror's latest checkpoint and whose
//! backoff has run out is sent an `add-checkpoint` request (all at once, one thread each), a 409
//! naming its size is answered once with a request from that size, a cosignature that verifies is
//! attached to the mirror, and, once k witnesses cosigned a checkpoint, the rollout engine is let
//! use it (deliveries are built against it) and the tiles are published again with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::client::{self, Answer};
use super::{Error, Forwarder, WitnessStatus, WitnessedLog};
use crate::relay::{ImportError, Relay};

/// The longest the forwarding thread sleeps between two looks at its stop flag.
const NAP: Duration = Duration::from_millis(250);

/// What asking one witness gave: the size it named in a 409 (if any), and the size it cosigned.
type Asked = (Option<u64>, Result<u64, Error>);

/// How the witnesses stand against the policy, for the pages and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessView {
    /// The log they witness.
    pub log: WitnessedLog,
    /// k.
    pub threshold: usize,
    /// The log's latest checkpoint.
    pub latest: u64,
    /// The latest checkpoint with a quorum: for the signer log, the one deliveries are built
    /// against; for the relay log, where the device-state bundle ends.
    pub witnessed: u64,
    /// Each witness, in policy order.
    pub witnesses: Vec<WitnessStatus>,
}

impl WitnessView {
    /// Whether the log's latest checkpoint waits for cosignatures (for the signer's log:
    /// deliveries of it wait).
    pub fn waiting(&self) -> bool {
        self.witnessed < self.latest
    }

    /// Whether an operator should look: deliveries wait (the signer's log), or the relay log's
    /// witnesses that answer are fewer than k (it is normal for the relay log's latest checkpoint
    /// to wait a round for them).
    pub fn troubled(&self) -> bool {
        match self.log {
            WitnessedLog::Signer => self.waiting(),
            WitnessedLog::Relay => {
                self.waiting()
                    && self.witnesses.iter().filter(|w| w.failures == 0).count() < self.threshold
            }
        }
    }

    /// One line for people: what deliveries (or the device-state bundle) wait for, and why.
    pub fn summary(&self) -> String {
        let have = self
            .witnesses
            .iter()
            .filter(|w| w.cosigned >= self.latest)
            .count();
        if self.log == WitnessedLog::Relay {
            return self.relay_log_summary(have);
        }
        if !self.waiting() {
            return format!(
                "checkpoint {} cosigned by {have} witnesses ({} needed): deliveries flow",
                self.latest, self.threshold
            );
        }
        let missing = self.missing();
        format!(
            "deliveries wait: checkpoint {} has {have} of the {} cosignatures needed \
             (deliveries use checkpoint {}); waiting for {}",
            self.latest,
            self.threshold,
            self.witnessed,
            missing.join(", ")
        )
    }

    /// The witnesses that have not cosigned the latest checkpoint, with their last error.
    fn missing(&self) -> Vec<String> {
        self.witnesses
            .iter()
            .filter(|w| w.cosigned < self.latest)
            .map(|w| match &w.last_error {
                Some(e) => format!("{} ({e})", w.name),
                None => w.name.clone(),
            })
            .collect()
    }

    fn relay_log_summary(&self, have: usize) -> String {
        let cut = if self.witnessed == 0 {
            "no checkpoint of it has a quorum yet: the device-state bundle waits".to_owned()
        } else {
            format!("the device-state bundle ends at {}", self.witnessed)
        };
        if !self.waiting() {
            return format!(
                "relay log checkpoint {} cosigned by {have} witnesses ({} needed)",
                self.latest, self.threshold
            );
        }
        format!(
            "relay log checkpoint {} has {have} of the {} cosignatures needed ({cut}); \
             not cosigned yet by {}",
            self.latest,
            self.threshold,
            self.missing().join(", ")
        )
    }
}

impl Forwarder {
    /// Its witnesses against the policy, the log witnessed up to `witnessed`.
    fn view(&self, witnessed: u64) -> WitnessView {
        WitnessView {
            log: self.log,
            threshold: self.policy.threshold(),
            latest: latest_size(&self.vault).unwrap_or(0),
            witnessed,
            witnesses: self.status(),
        }
    }
}

impl Relay {
    /// The signer log's witnesses against the policy (`None` without `[witnesses]`): witnessed up
    /// to what the engine uses.
    pub fn witness_view(&self) -> Option<WitnessView> {
        let f = self.witnesses.as_ref()?;
        Some(f.view(self.engine().published_limit().unwrap_or(0)))
    }

    /// The relay log's witnesses against the policy (`None` without `[witnesses] relay_log`).
    pub fn relay_log_witness_view(&self) -> Option<WitnessView> {
        let f = self.state_witnesses.as_ref()?;
        Some(f.view(f.witnessed()))
    }

    /// Both views that exist: the signer log's, then the relay log's.
    pub fn witness_views(&self) -> Vec<WitnessView> {
        self.witness_view()
            .into_iter()
            .chain(self.relay_log_witness_view())
            .collect()
    }

    /// The forwarding loop of `f` (a `witness-forwarder` thread) until `stop`.
    pub(crate) fn run_forwarder(&self, f: &Forwarder, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let wait = self.forward_round(f);
            f.sleep(wait.min(NAP));
        }
    }

    /// One round; returns how long until a witness is due again.
    pub(crate) fn forward_round(&self, f: &Forwarder) -> Duration {
        let latest = match latest_size(&f.vault) {
            Ok(size) => size,
            Err(e) => {
                crate::say!("cairn-relay: witnesses: reading {}: {e}", f.vault.origin());
                return f.retry_min;
            }
        };
        let now = Instant::now();
        let due: Vec<(usize, Option<u64>)> = f
            .lock()
            .iter()
            .enumerate()
            .filter(|(i, (s, next))| {
                latest > 0
                    && s.cosigned < latest
                    && now >= *next
                    && f.urls.get(*i).is_some_and(Option::is_some)
            })
            // From the size it named last, else the largest it is known to have cosigned (a
            // witness holding another answers 409 with its own): never a scan of the log's
            // checkpoints, which the relay's own log has one of per rollout step.
            .map(|(i, (s, _))| (i, s.claimed.or(Some(s.cosigned))))
            .collect();
        if !due.is_empty() {
            let asked: Vec<(usize, Asked)> = std::thread::scope(|scope| {
                let running: Vec<_> = due
                    .iter()
                    .map(|&(i, claimed)| (i, scope.spawn(move || ask(f, i, claimed))))
                    .collect();
                running
                    .into_iter()
                    .map(|(i, t)| {
                        let panicked = || (None, Err(Error::Io("the request panicked".into())));
                        (i, t.join().unwrap_or_else(|_| panicked()))
                    })
                    .collect()
            });
            let mut cosigned = record(f, asked);
            if !cosigned.is_empty() {
                let published = match f.log {
                    WitnessedLog::Signer => self.publish_witnessed().map(drop),
                    WitnessedLog::Relay => f
                        .raise_witnessed(&mut cosigned)
                        .map(drop)
                        .map_err(ImportError::Mirror),
                };
                if let Err(e) = published {
                    crate::say!(
                        "cairn-relay: witnesses: publishing the cosigned checkpoint of {}: {e}",
                        f.vault.origin()
                    );
                }
            }
        }
        // Until the next witness is due (a round finds nothing to do otherwise).
        let now = Instant::now();
        f.lock()
            .iter()
            .filter(|(s, _)| s.cosigned < latest)
            .map(|(_, next)| next.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(3600))
    }

    /// Publishes the tiles again (their `checkpoint` carries the cosignatures), then lets the engine
    /// use the mirror's latest checkpoint with a quorum; returns that checkpoint's size.
    pub(crate) fn publish_witnessed(&self) -> Result<u64, ImportError> {
        let Some(f) = self.witnesses.as_ref() else {
            return Ok(self.vault.size());
        };
        let _one = self.import_lock();
        let size = cairn_vault::witness::witnessed_size(&self.vault, f.policy())
            .map_err(ImportError::Mirror)?;
        f.witnessed.fetch_max(size, Ordering::SeqCst);
        // The tiles first: once deliveries of a checkpoint go, `/log/checkpoint` (what goes back to
        // the signer) carries its cosignatures.
        self.vault
            .export(&self.tiles, &mut |_, _| {})
            .map_err(ImportError::Tiles)?;
        {
            let mut engine = self.engine();
            if engine.published_limit().is_none_or(|p| p < size) {
                engine.set_published(Some(size));
                engine
                    .on_mirror(&self.vault, crate::engine::now())
                    .and_then(|()| self.commit(&mut engine, Duration::ZERO))
                    .map_err(ImportError::Engine)?;
            }
        }
        Ok(size)
    }
}

/// Records what each witness answered; returns the sizes cosigned.
fn record(f: &Forwarder, asked: Vec<(usize, Asked)>) -> Vec<u64> {
    let now = crate::engine::now();
    let mut status = f.lock();
    let mut cosigned = Vec::new();
    for (i, (claimed, result)) in asked {
        let Some((s, next)) = status.get_mut(i) else {
            continue;
        };
        s.last_attempt = Some(now);
        if claimed.is_some() {
            s.claimed = claimed;
        }
        match result {
            Ok(size) => {
                cosigned.push(size);
                s.cosigned = s.cosigned.max(size);
                s.claimed = None;
                s.last_error = None;
                s.last_cosigned_at = Some(now);
                s.failures = 0;
                *next = Instant::now() + f.every;
            }
            Err(e) => {
                s.failures = s.failures.saturating_add(1);
                crate::say!(
                    "cairn-relay: witness {}: {e} (attempt {}, asked again in {} s)",
                    s.name,
                    s.failures,
                    f.backoff(s.failures).as_secs()
                );
                s.last_error = Some(e.to_string());
                *next = Instant::now() + f.backoff(s.failures);
            }
        }
    }
    cosigned
}

/// Asks witness `i` to cosign its log's latest checkpoint from the old size `old` (`None`: the
/// largest stored checkpoint it cosigned); attaches its cosignature.
fn ask(f: &Forwarder, i: usize, old: Option<u64>) -> Asked {
    let (Some((vkey, _)), Some(Some(url))) = (f.policy().witnesses().get(i), f.urls.get(i)) else {
        return (None, Err(Error::Io("not in the policy".into())));
    };
    let name = vkey.name.as_str();
    let mirror = |e: cairn_vault::Error| Error::Mirror(e.to_string());
    let mut old = old;
    let mut told = None;
    // The first request, and one more from the size a 409 names (C2SP tlog-witness).
    for _ in 0..2 {
        let request = match cairn_vault::witness::request(&f.vault, f.policy(), name, old) {
            Ok(r) => r,
            Err(e) => return (told, Err(mirror(e))),
        };
        match client::add_checkpoint(url, &request.body, f.timeout, &f.tls) {
            Ok(Answer::Cosigned(lines)) => {
                return (told, take(f, name, request.size, &lines));
            }
            Ok(Answer::Size(size)) if Some(size) != old => {
                told = Some(size);
                old = Some(size);
            }
            Ok(Answer::Size(size)) => {
                return (
                    told,
                    Err(Error::Refused {
                        status: 409,
                        body: format!("its size is {size}, the old size sent"),
                    }),
                );
            }
            Ok(Answer::Refused { status, body }) => {
                return (told, Err(Error::Refused { status, body }));
            }
            Err(e) => return (told, Err(e)),
        }
    }
    let size = told.unwrap_or_default();
    (
        told,
        Err(Error::Refused {
            status: 409,
            body: format!("its size is {size} again"),
        }),
    )
}

/// Attaches the cosignature lines `lines` of witness `name` over the checkpoint of `size`,
/// checked against its pinned key; returns the size.
fn take(f: &Forwarder, name: &str, size: u64, lines: &str) -> Result<u64, Error> {
    let mirror = |e: cairn_vault::Error| Error::Mirror(e.to_string());
    let note = f
        .vault
        .checkpoint(size)
        .map_err(mirror)?
        .ok_or_else(|| Error::Mirror(format!("the checkpoint of size {size} is gone")))?;
    let attached =
        cairn_vault::witness::attach(&f.vault, f.policy(), &format!("{note}{lines}"), name)
            .map_err(|e| match e {
                cairn_vault::Error::Cosignature { why, .. } => Error::BadCosignature(why),
                e => mirror(e),
            })?;
    if attached.report.cosigned.iter().any(|c| c.name == name) {
        Ok(size)
    } else {
        Err(Error::BadCosignature(
            "its answer carries no cosignature by its pinned key".into(),
        ))
    }
}

/// The size of the latest checkpoint of `vault` (0 if none).
fn latest_size(vault: &cairn_vault::Vault) -> Result<u64, cairn_vault::Error> {
    let Some(note) = vault.latest_checkpoint()? else {
        return Ok(0);
    };
    cairn_verifier::note::Checkpoint::parse(note.as_bytes())
        .map(|c| c.size.0)
        .map_err(|e| cairn_vault::Error::Checkpoint(cairn_verifier::Error::MalformedCheckpoint(e)))
}
