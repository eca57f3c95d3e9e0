//! The relay's MQTT client (docs/relay.md): deliveries published to each device's own topic,
//! retained with QoS 1, over TLS with the relay's client certificate; the same code talks to AWS
//! IoT Core (port 8883, X.509 client certificates) and to the local Mosquitto of the tests.

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};

use crate::broker::{delivery_topic, status_device};
use crate::engine::{Input, Outgoing as Delivery};

/// Why the MQTT link could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A certificate or key file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The certificates or the key are not what TLS needs.
    #[error("{what}: {source}")]
    Tls {
        /// Which item.
        what: &'static str,
        /// The error.
        source: native_tls::Error,
    },
}

/// What the MQTT link hands the engine: status messages acknowledged by their `Publish`.
pub type LinkInput = Input<rumqttc::Publish>;

/// Largest MQTT packet the relay's client reads (and writes). The broker's limit
/// ([`crate::broker::MAX_PACKET_BYTES`], AWS IoT Core's 128 KB) is below it, so every packet the
/// broker passes on is one the relay can read: an oversized status is refused at the broker, from
/// its sender, and never reaches the relay's session.
pub const MAX_PACKET_BYTES: usize = 256 * 1024;
const _: () = assert!(crate::broker::MAX_PACKET_BYTES < MAX_PACKET_BYTES);

/// Most inputs (status reports, delivery acknowledgements) waiting between the link and the
/// engine. A QoS 0 status arriving when it is full is dropped and counted; a QoS 1 one waits
/// (the broker holds the rest: the relay acknowledges only what it recorded).
pub const INPUT_QUEUE: usize = 10_000;

/// The link's counters (shown by `/metrics`).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Connection errors, each followed by a reconnect.
    pub errors: std::sync::atomic::AtomicU64,
    /// Packets larger than [`MAX_PACKET_BYTES`] received: each ends the connection, and the
    /// next connection starts a clean session so the broker does not send the packet again.
    pub oversized: std::sync::atomic::AtomicU64,
    /// QoS 0 status messages dropped because [`INPUT_QUEUE`] was full.
    pub dropped: std::sync::atomic::AtomicU64,
}

pub use crate::config::MqttConfig;

fn read(path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })
}

fn tls(what: &'static str) -> impl FnOnce(native_tls::Error) -> Error {
    move |source| Error::Tls { what, source }
}

/// The client options: TLS 1.2+ with the relay's certificate, a persistent session (so status
/// reports sent while the relay is away wait at the broker), 30 s keep-alive.
pub fn options(config: &MqttConfig) -> Result<MqttOptions, Error> {
    let identity = native_tls::Identity::from_pkcs8(&read(&config.cert)?, &read(&config.key)?)
        .map_err(tls("the relay's MQTT certificate and key"))?;
    let ca = native_tls::Certificate::from_pem(&read(&config.ca)?).map_err(tls("the MQTT CA"))?;
    let connector = native_tls::TlsConnector::builder()
        .identity(identity)
        .add_root_certificate(ca)
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .build()
        .map_err(tls("building the TLS connector"))?;
    let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
    options
        .set_transport(Transport::Tls(TlsConfiguration::NativeConnector(connector)))
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    Ok(options)
}

/// The relay's MQTT link, until `stop`: subscribes to every device's status topic (QoS 1) and
/// hands each message to the engine, which sends it back on `acks` once what it said is in the
/// relay log (the `PUBACK` goes out only then: a report the relay did not record stays with the
/// broker, which sends it again when the relay reconnects); publishes the engine's deliveries to
/// each device's own topic (retained, QoS 1) and reports each broker acknowledgement back. On a connection error it
/// reconnects with backoff; rumqttc sends unacknowledged publications again, and the persistent
/// session keeps the subscription and the status messages that arrive meanwhile.
///
/// A packet larger than [`MAX_PACKET_BYTES`] (only if the broker lets one through) ends the
/// connection; it is counted, and the next connection asks for a clean session, so the broker
/// does not send it again on every reconnect (the status messages queued for the relay at that
/// moment are lost with it; later ones arrive). `inputs` is bounded ([`INPUT_QUEUE`]): a QoS 0
/// status that finds it full is dropped and counted, anything else waits for room.
pub async fn link(
    options: MqttOptions,
    inputs: std::sync::mpsc::SyncSender<LinkInput>,
    outgoing: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    acks: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    counters: &LinkCounters,
) {
    let limits = crate::limits::BrokerLimits::unlimited();
    link_with_jobs(
        options, inputs, outgoing, acks, None, limits, stop, counters,
    )
    .await;
}

/// The client options for `config` under the broker's `limits`: those of [`options`], at most
/// `limits.max_inflight` QoS 1 publications awaiting their `PUBACK` (AWS IoT Core: 100).
pub fn options_with(
    config: &MqttConfig,
    limits: &crate::limits::BrokerLimits,
) -> Result<MqttOptions, Error> {
    let mut options = options(config)?;
    options.set_inflight(limits.max_inflight.max(1));
    Ok(options)
}

/// `link`, and with `jobs` the AWS IoT Jobs device API (docs/jobs.md): it also subscribes to
/// every thing's Jobs request topics (each explicitly: a first-level wildcard never matches
/// `$aws/...`), hands each request to the engine as `Input::Jobs`, and publishes what `jobs`
/// carries (the Jobs service's answers and notifications, QoS 1, not retained). Every publish is
/// paced to `limits.max_publishes_per_sec` (the in-flight window is the options', set by
/// [`options_with`]).
#[expect(
    clippy::too_many_lines,
    clippy::too_many_arguments,
    reason = "one event loop, its cases side by side; what it links, under which limits"
)]
#[expect(clippy::similar_names, reason = "`acked` beside `ack`: to rename")]
pub async fn link_with_jobs(
    mut options: MqttOptions,
    inputs: std::sync::mpsc::SyncSender<LinkInput>,
    mut outgoing: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    mut acks: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    jobs: Option<tokio::sync::mpsc::UnboundedReceiver<crate::jobs::Publication>>,
    limits: crate::limits::BrokerLimits,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    counters: &LinkCounters,
) {
    use std::collections::{HashMap, VecDeque};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    options.set_manual_acks(true);
    let mut pace = crate::limits::PublishPace::new(limits.max_publishes_per_sec);
    let (client, mut events) = AsyncClient::new(options, 10_000);
    // Publications handed to the client, in order, until the event loop assigns them a packet
    // id: a delivery (acknowledged back to the engine) or a Jobs message (`None`).
    let waiting: Arc<Mutex<VecDeque<Option<Delivery>>>> = Arc::default();
    let mut in_flight: HashMap<u16, Option<Delivery>> = HashMap::new();
    let with_jobs = jobs.is_some();
    let publisher = {
        let client = client.clone();
        let waiting = Arc::clone(&waiting);
        let mut jobs = jobs;
        tokio::spawn(async move {
            loop {
                // One task publishes both, so `waiting` keeps the order of the packet ids.
                let (topic, payload, retain, d) = tokio::select! {
                    d = outgoing.recv() => match d {
                        Some(d) => (delivery_topic(&d.device), d.delivery.to_vec(), true, Some(d)),
                        None => break,
                    },
                    Some(p) = async { match jobs.as_mut() { Some(j) => j.recv().await, None => None } } => {
                        (p.topic, p.payload, false, None)
                    }
                };
                let wait = pace.take(std::time::Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                waiting
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_back(d);
                if client
                    .publish(topic, QoS::AtLeastOnce, retain, payload)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let acker = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(p) = acks.recv().await {
                if client.ack(&p).await.is_err() {
                    break;
                }
            }
        })
    };
    // The broker's acknowledgements go to the engine in bursts: the event loop adds each to a
    // shared buffer and wakes a forwarder task (no system call), which runs when the event loop
    // waits for the socket and sends every acknowledgement that arrived meanwhile. One wake-up of
    // the engine thread per burst instead of one per delivery: that wake-up per delivery was most
    // of the link's gap to a bare publisher (docs/relay.md, "Benchmark"). Order is kept: before a
    // message from a device goes to the engine, the event loop sends the buffered
    // acknowledgements itself, so a device's report never overtakes the acknowledgement of the
    // delivery it answers (the buffer's lock is held while a burst is sent).
    let acked = Arc::new(AckBuffer::default());
    let forwarder = {
        let inputs = inputs.clone();
        let acked = Arc::clone(&acked);
        tokio::spawn(async move {
            loop {
                acked.ready.notified().await;
                if acked.flush(&inputs).is_err() {
                    return;
                }
            }
        })
    };
    // The event loop's `poll` is never cancelled while the link runs: dropping it part way
    // through a write would lose or truncate a packet. Only the stop signal interrupts it.
    let (mut stopping, watcher) = stop_signal(stop);
    let mut failures = 0u32;
    loop {
        let event = tokio::select! {
            biased;
            _ = stopping.changed() => break,
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                failures = 0;
                // After a clean start (below), sessions persist again.
                events.mqtt_options.set_clean_session(false);
                if !ack.session_present {
                    // Not awaited, for the same reason as `try_ack` below.
                    let _ = client.try_subscribe(crate::broker::STATUS_FILTER, QoS::AtLeastOnce);
                    if with_jobs {
                        for filter in crate::jobs::topics::REQUEST_FILTERS {
                            let _ = client.try_subscribe(filter, QoS::AtLeastOnce);
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if acked.flush(&inputs).is_err() {
                    break;
                }
                if let Some(p) = hand_over(p, &inputs, counters, with_jobs) {
                    // Not awaited: this task drives the event loop that drains the request queue.
                    let _ = client.try_ack(&p);
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                // A packet id already in flight is a retransmission after a reconnect.
                if let std::collections::hash_map::Entry::Vacant(e) = in_flight.entry(pkid)
                    && let Some(d) = waiting
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pop_front()
                {
                    e.insert(d);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(Some(d)) = in_flight.remove(&ack.pkid) {
                    acked.push(d);
                }
            }
            Ok(_) => {}
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                if oversized(&e) {
                    // The broker would send it again on every reconnect of this session.
                    counters.oversized.fetch_add(1, Ordering::Relaxed);
                    events.mqtt_options.set_clean_session(true);
                }
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    crate::say!("cairn-relay: MQTT connection: {e}; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(100 << failures.min(5))).await;
            }
        }
    }
    publisher.abort();
    acker.abort();
    watcher.abort();
    // The acknowledgements already taken still reach the engine.
    forwarder.abort();
    let _ = acked.flush(&inputs);
    let _ = client.disconnect().await;
}

/// Deliveries the broker acknowledged, not yet handed to the engine.
#[derive(Default)]
struct AckBuffer {
    pending: std::sync::Mutex<Vec<Delivery>>,
    ready: tokio::sync::Notify,
}

impl AckBuffer {
    fn push(&self, d: Delivery) {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(d);
        self.ready.notify_one();
    }

    /// Sends what is buffered as one input, holding the lock until it is sent (so no later input
    /// of the event loop overtakes it). `Err` when the engine is gone.
    fn flush(&self, inputs: &std::sync::mpsc::SyncSender<LinkInput>) -> Result<(), ()> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.is_empty() {
            return Ok(());
        }
        inputs
            .send(Input::Acked(std::mem::take(&mut *pending)))
            .map_err(|_| ())
    }
}

/// Hands a status message (or, with `with_jobs`, a Jobs request) to the engine; a message on any other topic (the ACL lets none through)
/// is given back, to be acknowledged and forgotten. A QoS 0 status that finds the queue full is
/// dropped and counted: nobody would send it again. A QoS 1 one waits for room: the engine drains
/// the queue every step, and the broker holds back the rest (the relay acknowledges only what it
/// recorded, so at most the broker's in-flight limit is unacknowledged).
fn hand_over(
    p: rumqttc::Publish,
    inputs: &std::sync::mpsc::SyncSender<LinkInput>,
    counters: &LinkCounters,
    with_jobs: bool,
) -> Option<rumqttc::Publish> {
    let qos = p.qos;
    let request = crate::jobs::topics::split(&p.topic)
        .filter(|_| with_jobs)
        .map(|(thing, rest)| (thing.to_owned(), rest.to_owned()));
    let input = if let Some((thing, rest)) = request {
        Input::Jobs {
            thing,
            rest,
            payload: p.payload.to_vec(),
            ack: Some(p),
        }
    } else if let Some(device) = status_device(&p.topic).map(str::to_owned) {
        Input::Status {
            device,
            payload: p.payload.to_vec(),
            ack: Some(p),
        }
    } else {
        return Some(p);
    };
    if qos == QoS::AtMostOnce {
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = inputs.try_send(input) {
            counters
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    } else {
        let _ = inputs.send(input);
    }
    None
}

/// Whether a connection error is a packet above the client's limit.
fn oversized(e: &rumqttc::ConnectionError) -> bool {
    matches!(
        e,
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)
        ))
    )
}

/// A channel that changes once `stop` is set (checked every 100 ms), and the task that watches.
fn stop_signal(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (
    tokio::sync::watch::Receiver<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stopped, stopping) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(async move {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stopped.send(true);
    });
    (stopping, watcher)
}
