//! The relay's background work: the engine thread and the transport that carries deliveries out
//! and status reports in. Today the one transport is the MQTT link on the devices' own topics
//! (`mqtt.rs`); a second (AWS IoT Jobs) plugs in beside it in `start`, handing the engine the
//! same `Input`s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::engine::{self, Input};
use crate::metrics::Metrics;
use crate::mqtt;
use crate::relay::Relay;

/// Why the background work could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The MQTT link's TLS configuration.
    #[error("the MQTT link: {0}")]
    Mqtt(#[from] mqtt::Error),
    /// A thread could not be started.
    #[error("starting the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// The relay's background work: the engine thread and, with `[mqtt]`, the MQTT link. Dropping it
/// stops both.
#[derive(Debug)]
pub struct Runner {
    stop: Arc<AtomicBool>,
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

/// Finds one of the relay's witness forwarders, if its configuration has it.
type PickForwarder = fn(&Relay) -> Option<&crate::witness::Forwarder>;

/// Sends a transport's acknowledgement handle back once what it carried is recorded.
type Acker<A> = tokio::sync::mpsc::UnboundedSender<A>;

impl Relay {
    /// Starts the engine thread (it steps every `tick_millis`, applying status reports and
    /// acknowledgements in batches: one relay-log write per step) and the MQTT link.
    pub fn start(self: &Arc<Self>) -> Result<Runner, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let (inputs, rx) = mpsc::sync_channel::<mqtt::LinkInput>(mqtt::INPUT_QUEUE);
        let mut threads = Vec::new();
        let mut acker = None;
        if let Some(config) = self.mqtt.clone() {
            let (publisher, outgoing) = tokio::sync::mpsc::unbounded_channel();
            let (acks, to_ack) = tokio::sync::mpsc::unbounded_channel();
            acker = Some(acks);
            let jobs = if config.jobs {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                *self
                    .jobs_out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
                Some(rx)
            } else {
                None
            };
            *self
                .publisher
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(publisher);
            let relay = Arc::clone(self);
            let stop = Arc::clone(&stop);
            let limits = self.broker;
            let options = mqtt::options_with(&config, &limits)?;
            let link = move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        crate::say!("cairn-relay: MQTT runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(mqtt::link_with_jobs(
                    options,
                    inputs,
                    outgoing,
                    to_ack,
                    jobs,
                    limits,
                    stop,
                    &relay.metrics.mqtt,
                ));
            };
            threads.push(spawn("mqtt-link", link)?);
        } else {
            drop(inputs);
        }
        // One thread per forwarder the configuration has: the signer log's, the relay log's.
        let forwarders: [(&str, PickForwarder); 2] = [
            ("witness-forwarder", |r| r.witnesses.as_ref()),
            ("relay-log-witness-forwarder", |r| {
                r.state_witnesses.as_ref()
            }),
        ];
        for (name, pick) in forwarders {
            if pick(self).is_none() {
                continue;
            }
            let relay = Arc::clone(self);
            let stop = Arc::clone(&stop);
            threads.push(spawn(name, move || {
                if let Some(f) = pick(&relay) {
                    relay.run_forwarder(f, &stop);
                }
            })?);
        }
        let relay = Arc::clone(self);
        let stop2 = Arc::clone(&stop);
        let tick = Duration::from_millis(self.rollout.tick_millis.unwrap_or(200).max(10));
        threads.push(spawn("rollout-engine", move || {
            relay.run_engine(&rx, acker.as_ref(), tick, &stop2);
        })?);
        Ok(Runner { stop, threads })
    }

    /// The engine loop. Each step applies the status reports and acknowledgements that arrived,
    /// ticks, and commits the step's events in one synced write; only then are the status
    /// messages acknowledged to the transport. If the write fails, the engine is rebuilt from
    /// the log and the step's status reports are applied again at the next step (and, should the
    /// relay stop meanwhile, the broker still holds them: they were never acknowledged).
    fn run_engine<A>(
        &self,
        rx: &mpsc::Receiver<Input<A>>,
        acker: Option<&Acker<A>>,
        tick: Duration,
        stop: &AtomicBool,
    ) {
        /// Status reports kept over failed writes, at most (beyond, the broker keeps them).
        const CARRY: usize = 1_000_000;
        let mut last = Instant::now();
        let mut disconnected = false;
        let mut carried: Vec<Input<A>> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut batch = std::mem::take(&mut carried);
            if disconnected || !batch.is_empty() {
                std::thread::sleep(tick);
            } else {
                match rx.recv_timeout(tick) {
                    Ok(i) => batch.push(i),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => disconnected = true,
                }
            }
            // Take what arrived meanwhile, up to a step's worth.
            while !disconnected && batch.len() < 200_000 {
                match rx.try_recv() {
                    Ok(i) => batch.push(i),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => disconnected = true,
                }
            }
            let elapsed = last.elapsed();
            last = Instant::now();
            match self.step(&batch, elapsed) {
                Ok(()) => {
                    for input in batch {
                        let ack = match input {
                            Input::Status { ack, .. } | Input::Jobs { ack, .. } => ack,
                            Input::Acked(_) => None,
                        };
                        if let (Some(p), Some(acker)) = (ack, acker) {
                            let _ = acker.send(p);
                        }
                    }
                }
                Err(e) => {
                    if let Some(why) = self.poisoned() {
                        // A store that failed a write is not written again by this process:
                        // nothing more is acknowledged; `cairn-relay` exits and restarts.
                        crate::say!("cairn-relay: rollout engine stopped: {why}");
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    crate::say!(
                        "cairn-relay: rollout engine step failed (state rebuilt from the relay log; \
                         its {} status reports are taken again): {e}",
                        batch.len()
                    );
                    // A broker acknowledgement is only a `delivered` event: a rebuilt engine
                    // finds the device pending and delivers again, which the device tolerates.
                    carried = batch
                        .into_iter()
                        .filter(|i| matches!(i, Input::Status { .. } | Input::Jobs { .. }))
                        .take(CARRY)
                        .collect();
                }
            }
        }
    }

    /// One engine step over `batch`; on failure the engine is rebuilt from the relay log (and
    /// the Jobs service put back as it was before the step, so its requests are taken again).
    fn step<A>(&self, batch: &[Input<A>], elapsed: Duration) -> Result<(), engine::Error> {
        let now = engine::now();
        let mut engine = self.engine();
        let mut jobs = self.jobs();
        let before = batch
            .iter()
            .any(|i| matches!(i, Input::Jobs { .. }))
            .then(|| jobs.clone())
            .flatten();
        let mut replies = Vec::new();
        let stepped = (|| {
            for input in batch {
                match input {
                    Input::Status {
                        device, payload, ..
                    } => engine.report(device, payload, now)?,
                    Input::Acked(acked) => {
                        for o in acked {
                            Metrics::count(&self.metrics.deliveries_published);
                            engine.acked(&o.campaign, &o.device, &o.release, now)?;
                        }
                    }
                    Input::Jobs {
                        thing,
                        rest,
                        payload,
                        ..
                    } => {
                        if let Some(service) = jobs.as_mut() {
                            let handled = service.handle(thing, rest, payload, now);
                            if let Some(t) = &handled.transition {
                                // A device that no longer waits on it: `jobs_commit` cancels it.
                                engine.job_transition(t, now)?;
                            }
                            replies.extend(handled.publish);
                        }
                    }
                }
            }
            if let Some(service) = jobs.as_mut() {
                // Step timers that ran out: TIMED_OUT, recorded with the relay's rule as actor.
                let (timed_out, notices) = service.expire(now);
                for t in &timed_out {
                    engine.job_transition(t, now)?;
                }
                replies.extend(notices);
            }
            engine.tick(&self.vault, now)?;
            self.commit_with(
                &mut engine,
                jobs.as_mut(),
                elapsed,
                std::mem::take(&mut replies),
                now,
            )
        })();
        if let Err(e) = stepped {
            if before.is_some() {
                *jobs = before;
            }
            if let Err(again) = engine.recover(&self.vault) {
                crate::say!("cairn-relay: rebuilding from the relay log failed too: {again}");
            }
            return Err(e);
        }
        Ok(())
    }
}

fn spawn(
    what: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(what.into())
        .spawn(f)
        .map_err(|source| Error::Thread { what, source })
}
