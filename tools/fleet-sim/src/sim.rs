//! The fleet on the network: one MQTT/TLS client per device, each with its own certificate, on
//! a tokio runtime the [`Sim`] owns.
//!
//! Per device: connect (at most [`SimConfig::connect_concurrency`] TLS handshakes at once),
//! persistent session (`clean_session = false`), subscribe QoS 1 to `cairn/<device>/delivery`
//! when the broker holds no session; on each delivery run [`crate::device::handle`] on a blocking
//! thread (at most one per core at a time), persist the state, publish the status report QoS 1 on
//! `cairn/<device>/status`, and only then acknowledge the delivery (manual acks), so a delivery
//! that was not handled is sent again after a crash. Connection errors are retried with
//! exponential backoff (100 ms doubling to 30 s, with jitter).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_relay::broker::{delivery_topic, status_topic};
use cairn_verifier::campaign::Outcome;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::Purpose;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::capture::Capture;
use crate::certs::{self, Ca, ClientFiles};
use crate::device::{Handled, Images, Trust, handle};
use crate::error::{Error, Result, io};
use crate::faults::{DeviceFaults, Faults};
use crate::fleet::{DeviceRow, Fleet, Skipped};
use crate::jobs::Mode;
use crate::state::DeviceState;

/// Everything a simulation needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Broker host name or address (must match its certificate).
    pub broker_host: String,
    /// Broker port.
    pub broker_port: u16,
    /// The broker's CA certificate (PEM): trusted for the broker, and the issuer of device
    /// certificates.
    pub ca: std::path::PathBuf,
    /// The CA's private key (PKCS#8 PEM).
    pub ca_key: std::path::PathBuf,
    /// The fleet CSV (`cairn devices generate`).
    pub fleet: std::path::PathBuf,
    /// What the devices pin.
    pub trust: Trust,
    /// Images by release id.
    pub images: Images,
    /// State directory: `devices/` (persistent device state) and `certs/` (client certificates).
    pub state: std::path::PathBuf,
    /// Simulate only the first `n` usable rows of the fleet file.
    pub devices: Option<usize>,
    /// Faults to inject.
    pub faults: Faults,
    /// TLS handshakes in progress at most (default 64), so the broker is not flooded.
    pub connect_concurrency: usize,
    /// MQTT keep-alive (default 60 s).
    pub keep_alive: Duration,
    /// Runtime worker threads, certificate threads and concurrent boot checks (default: the
    /// number of cores).
    pub threads: usize,
    /// cairn's own topics (default) or the AWS IoT Jobs device API (`crate::jobs`).
    pub mode: Mode,
    /// Where a sample of accepted deliveries is kept (`--capture`), if anywhere.
    pub capture: Option<Arc<Capture>>,
}

impl SimConfig {
    /// A configuration with the defaults for everything optional.
    #[expect(
        clippy::too_many_arguments,
        reason = "the required settings, named by the caller"
    )]
    pub fn new(
        broker_host: impl Into<String>,
        broker_port: u16,
        ca: impl Into<std::path::PathBuf>,
        ca_key: impl Into<std::path::PathBuf>,
        fleet: impl Into<std::path::PathBuf>,
        trust: Trust,
        images: Images,
        state: impl Into<std::path::PathBuf>,
    ) -> Self {
        Self {
            broker_host: broker_host.into(),
            broker_port,
            ca: ca.into(),
            ca_key: ca_key.into(),
            fleet: fleet.into(),
            trust,
            images,
            state: state.into(),
            devices: None,
            faults: Faults::default(),
            connect_concurrency: 64,
            keep_alive: Duration::from_secs(60),
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            mode: Mode::Topics,
            capture: None,
        }
    }
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)+) => {
        /// Counters of a running simulation (a snapshot: [`Sim::stats`]).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Stats {
            $($(#[$doc])* pub $name: u64,)+
        }

        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)+
        }

        impl Counters {
            fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Ordering::Relaxed),)+ }
            }
        }
    };
}

counters! {
    /// Devices simulated (usable fleet rows, at most `--devices`).
    devices,
    /// Fleet rows that could not be used.
    skipped_rows,
    /// Devices the `offline` fault keeps from ever connecting.
    offline,
    /// Devices the `silent` fault keeps from reporting.
    silent,
    /// Client certificates issued at start (the others came from the cache).
    certificates_issued,
    /// Devices connected now.
    connected,
    /// Most devices connected at once.
    max_connected,
    /// Successful connections (CONNACKs), reconnections included.
    connections,
    /// Connections that resumed the device's session on the broker (its subscription and the
    /// deliveries queued while it was away were kept).
    sessions_resumed,
    /// Failed connection attempts and dropped connections.
    connection_errors,
    /// Delivery messages received.
    deliveries,
    /// Deliveries ignored: the same bytes as the install on record (a retained copy, a resend).
    duplicates,
    /// Deliveries whose envelope or manifest does not decode (nothing reported).
    malformed,
    /// Updates installed.
    installed,
    /// Rollback targets installed.
    rolled_back,
    /// Installs that failed after the boot check passed (injected, or no image).
    install_failed,
    /// Deliveries the boot check refused.
    verification_failed,
    /// Status reports handed to the MQTT client (Jobs mode: execution updates).
    reports_sent,
    /// Status reports the broker acknowledged (Jobs mode: updates the Jobs service accepted).
    reports_acked,
    /// Jobs mode: executions the device started (start-next answered with an execution).
    jobs_started,
    /// Jobs mode: requests the Jobs service rejected.
    jobs_rejected,
    /// Device states that could not be written (the delivery is left unacknowledged).
    state_errors,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// One simulated device and the faults it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDevice {
    /// What the fleet file says about it.
    pub row: DeviceRow,
    /// Its faults.
    pub faults: DeviceFaults,
}

/// What the device tasks share.
pub(crate) struct Shared {
    trust: Trust,
    images: Images,
    pub(crate) faults: Faults,
    state: std::path::PathBuf,
    pub(crate) stats: Counters,
    pub(crate) connect: Semaphore,
    verify: Semaphore,
    capture: Option<Arc<Capture>>,
}

/// A running simulation. Start and stop it from synchronous code (it owns its runtime).
pub struct Sim {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    devices: Vec<SimDevice>,
    skipped: Vec<Skipped>,
    nofile: Option<u64>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("devices", &self.devices.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Reads the fleet, issues missing client certificates, loads every device's state and
    /// connects the devices (in the background: watch [`Sim::stats`]).
    ///
    /// Each device gets its own native-tls context, and native-tls loads the CA bundle of
    /// `SSL_CERT_FILE` (or the system's) into each (about 40 ms here): for thousands of devices,
    /// start the process with `SSL_CERT_FILE` naming a small file such as the broker's CA, as the
    /// binary does. The devices trust only [`SimConfig::ca`] either way.
    pub fn start(config: SimConfig) -> Result<Self> {
        check(&config)?;
        let threads = config.threads.max(1);
        // One socket per device: the soft limit up to the hard one (safe wrapper, no unsafe here).
        let nofile = rlimit::increase_nofile_limit(u64::MAX).ok();

        let fleet = Fleet::read(&config.fleet)?;
        let devices: Vec<SimDevice> = fleet
            .devices
            .into_iter()
            .take(config.devices.unwrap_or(usize::MAX))
            .map(|row| SimDevice {
                faults: config.faults.for_device(&row.id),
                row,
            })
            .collect();
        std::fs::create_dir_all(&config.state).map_err(io(&config.state))?;
        let ca = Ca::load(&config.ca, &config.ca_key)?;
        let online: Vec<&SimDevice> = devices.iter().filter(|d| !d.faults.offline).collect();
        let ids: Vec<&str> = online.iter().map(|d| d.row.id.as_str()).collect();
        let issued = certs::ensure(&ca, &config.state, &ids, threads)?;
        let ca_pem = std::fs::read(&config.ca).map_err(io(&config.ca))?;

        let prepared = prepare_all(&config, &ca_pem, &online, threads)?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("fleet-sim")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let shared = Arc::new(Shared {
            trust: config.trust,
            images: config.images,
            faults: config.faults,
            state: config.state,
            stats: Counters::default(),
            connect: Semaphore::new(config.connect_concurrency),
            verify: Semaphore::new(threads),
            capture: config.capture,
        });
        let stats = &shared.stats;
        add(&stats.devices, devices.len() as u64);
        add(&stats.skipped_rows, fleet.skipped.len() as u64);
        add(&stats.certificates_issued, issued);
        add(
            &stats.offline,
            devices.iter().filter(|d| d.faults.offline).count() as u64,
        );
        add(
            &stats.silent,
            online.iter().filter(|d| d.faults.silent).count() as u64,
        );
        let (shutdown, watch) = watch::channel(false);
        let tasks = prepared
            .into_iter()
            .map(|(device, state, options)| {
                let shared = Arc::clone(&shared);
                let watch = watch.clone();
                match config.mode {
                    Mode::Topics => {
                        runtime.spawn(run_device(shared, device, state, options, watch))
                    }
                    Mode::Jobs => runtime.spawn(crate::jobs::run_device(
                        shared, device, state, options, watch,
                    )),
                }
            })
            .collect();
        Ok(Self {
            runtime: Some(runtime),
            shared,
            shutdown,
            tasks,
            devices,
            skipped: fleet.skipped,
            nofile,
        })
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// The simulated devices (offline ones included), in fleet file order.
    pub fn devices(&self) -> &[SimDevice] {
        &self.devices
    }

    /// The fleet rows that were skipped, with the reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The open-files limit after raising it (`None` if it could not be read or raised).
    pub fn nofile_limit(&self) -> Option<u64> {
        self.nofile
    }

    /// The runtime the devices run on (to spawn on it, e.g. a signal handler).
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    /// Polls the counters every 20 ms until `done` holds (`Ok`) or `timeout` passes (`Err` with
    /// the last counters).
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Stats) -> bool,
    ) -> Result<Stats, Box<Stats>> {
        let start = Instant::now();
        loop {
            let stats = self.stats();
            if done(&stats) {
                return Ok(stats);
            }
            if start.elapsed() > timeout {
                return Err(Box::new(stats));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Disconnects every device (a clean MQTT DISCONNECT, the session stays on the broker) and
    /// stops the runtime; returns the final counters. Device state is already on disk.
    pub fn stop(mut self) -> Stats {
        let _ = self.shutdown.send(true);
        if let Some(runtime) = self.runtime.take() {
            let tasks = std::mem::take(&mut self.tasks);
            runtime.block_on(async {
                let all = async {
                    for t in tasks {
                        let _ = t.await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(15), all).await;
            });
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
        self.stats()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Settings the simulator cannot run with.
fn check(config: &SimConfig) -> Result<()> {
    config.faults.validate()?;
    if config.connect_concurrency == 0 {
        return Err(Error::Config {
            what: "--connect-concurrency",
            reason: "must be at least 1".into(),
        });
    }
    let origin = &config.trust.origin;
    if LogKey::new(origin, origin, config.trust.log_key, &Software).is_none() {
        return Err(Error::Config {
            what: "--origin",
            reason: format!("{origin:?} cannot name a log in a signed note"),
        });
    }
    Ok(())
}

/// Each online device's state and MQTT options (its TLS context), on `threads` threads.
fn prepare_all(
    config: &SimConfig,
    ca_pem: &[u8],
    online: &[&SimDevice],
    threads: usize,
) -> Result<Vec<(SimDevice, DeviceState, MqttOptions)>> {
    let chunk = online.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = online
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|d| prepare(config, ca_pem, d))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(online.len());
        for w in workers {
            all.extend(w.join().map_err(|_| Error::WorkerPanicked {
                task: "TLS context",
            })??);
        }
        Ok::<_, Error>(all)
    })
}

/// Loads `device`'s state and builds its MQTT options with its own TLS identity.
fn prepare(
    config: &SimConfig,
    ca_pem: &[u8],
    device: &SimDevice,
) -> Result<(SimDevice, DeviceState, MqttOptions)> {
    let id = &device.row.id;
    let state = DeviceState::load(&config.state, id)?
        .unwrap_or_else(|| DeviceState::new(device.row.version));
    let files = ClientFiles::of(&config.state, id);
    let fail = |reason: String| Error::Certificate {
        device: id.clone(),
        reason,
    };
    let cert = std::fs::read(&files.cert).map_err(io(&files.cert))?;
    let key = std::fs::read(&files.key).map_err(io(&files.key))?;
    let identity =
        native_tls::Identity::from_pkcs8(&cert, &key).map_err(|e| fail(e.to_string()))?;
    let ca = native_tls::Certificate::from_pem(ca_pem).map_err(|e| Error::Ca {
        path: config.ca.clone(),
        reason: e.to_string(),
    })?;
    let connector = native_tls::TlsConnector::builder()
        .identity(identity)
        .add_root_certificate(ca)
        // Only the broker's CA: no system roots loaded 8,000 times.
        .disable_built_in_roots(true)
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut options = MqttOptions::new(id, &config.broker_host, config.broker_port);
    options
        .set_transport(Transport::Tls(TlsConfiguration::NativeConnector(connector)))
        .set_keep_alive(config.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(256 * 1024, 16 * 1024);
    Ok((device.clone(), state, options))
}

/// Backoff after `failures` consecutive connection failures: 100 ms doubling up to 30 s, plus
/// up to half of it again as jitter (from the device id, so devices spread out).
pub(crate) fn backoff(failures: u32, jitter_seed: u64) -> Duration {
    let base = (100u64 << failures.min(9)).min(30_000);
    Duration::from_millis(base + jitter_seed % (base / 2 + 1))
}

/// Requests the device may queue without polling: a subscription, then per delivery a report and
/// an acknowledgement; the broker sends at most 20 unacknowledged deliveries (Mosquitto's
/// `max_inflight_messages`).
pub(crate) const REQUESTS: usize = 64;

async fn run_device(
    shared: Arc<Shared>,
    device: SimDevice,
    mut state: DeviceState,
    options: MqttOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = device.row.id.clone();
    let delivery = delivery_topic(&id);
    let status = status_topic(&id);
    let jitter = shared.faults.position("backoff", &id, 1 << 20) as u64;
    let (client, mut events) = AsyncClient::new(options, REQUESTS);
    let counters = &shared.stats;
    let mut connected = false;
    let mut failures = 0u32;
    loop {
        let permit = if connected {
            None
        } else {
            tokio::select! {
                p = shared.connect.acquire() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
                _ = shutdown.changed() => break,
            }
        };
        let event = tokio::select! {
            e = events.poll() => e,
            _ = shutdown.changed() => break,
        };
        drop(permit);
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                failures = 0;
                self::connected(counters, ack.session_present);
                // A resumed session keeps its subscription (and its queued deliveries).
                if !ack.session_present {
                    let _ = client.subscribe(&delivery, QoS::AtLeastOnce).await;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if publish.topic == delivery
                    && !on_delivery(&shared, &device, &mut state, &client, &status, &publish).await
                {
                    // Not persisted: leave it unacknowledged, the broker sends it again.
                    continue;
                }
                let _ = client.ack(&publish).await;
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => add(&counters.reports_acked, 1),
            Ok(_) => {}
            Err(_) => {
                if connected {
                    connected = false;
                    counters.connected.fetch_sub(1, Ordering::Relaxed);
                }
                add(&counters.connection_errors, 1);
                failures = failures.saturating_add(1);
                tokio::select! {
                    () = tokio::time::sleep(backoff(failures, jitter)) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
    if connected {
        disconnect(&client, &mut events).await;
        counters.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a connection (CONNACK), and whether the broker resumed the device's session.
pub(crate) fn connected(counters: &Counters, session_present: bool) {
    add(&counters.connections, 1);
    let now = counters.connected.fetch_add(1, Ordering::Relaxed) + 1;
    counters.max_connected.fetch_max(now, Ordering::Relaxed);
    if session_present {
        add(&counters.sessions_resumed, 1);
    }
}

/// Sends DISCONNECT and waits (briefly) until it is written.
pub(crate) async fn disconnect(client: &AsyncClient, events: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Handles one delivery message; `false` if the new state could not be persisted.
async fn on_delivery(
    shared: &Arc<Shared>,
    device: &SimDevice,
    state: &mut DeviceState,
    client: &AsyncClient,
    status: &str,
    publish: &rumqttc::Publish,
) -> bool {
    let counters = &shared.stats;
    add(&counters.deliveries, 1);
    let Some(handled) = check_delivery(shared, device, state, publish.payload.clone()).await else {
        return false;
    };
    count(counters, &handled);
    if let Handled::Done {
        report,
        state: next,
        ..
    } = handled
    {
        *state = *next;
        if let Some(report) = report
            && client
                .publish(status, QoS::AtLeastOnce, false, report)
                .await
                .is_ok()
        {
            add(&counters.reports_sent, 1);
        }
    }
    true
}

/// Runs the boot check on `bytes` on a blocking thread (at most one per core at a time) and
/// persists the device's new state; `None` if it could not be persisted (the message is then left
/// unacknowledged).
pub(crate) async fn check_delivery(
    shared: &Arc<Shared>,
    device: &SimDevice,
    state: &DeviceState,
    bytes: impl AsRef<[u8]> + Send + 'static,
) -> Option<Handled> {
    let counters = &shared.stats;
    let _permit = shared.verify.acquire().await.ok()?;
    let job = {
        let shared = Arc::clone(shared);
        let device = device.clone();
        let current = state.clone();
        move || {
            let handled = handle(
                &shared.trust,
                &shared.images,
                &shared.faults,
                &device.row,
                device.faults,
                &current,
                bytes.as_ref(),
            );
            if let Some(capture) = &shared.capture
                && let Err(e) = capture.offer(&device.row, &current, bytes.as_ref(), &handled)
            {
                // A sample for later checks, never a reason to stop the device.
                eprintln!("{}: capture: {e}", device.row.id);
            }
            let stored = match &handled {
                Handled::Done { state, .. } => state.store(&shared.state, &device.row.id),
                _ => Ok(()),
            };
            (handled, stored)
        }
    };
    let Ok((handled, stored)) = tokio::task::spawn_blocking(job).await else {
        add(&counters.state_errors, 1);
        return None;
    };
    if let Err(e) = stored {
        eprintln!("{}: {e}", device.row.id);
        add(&counters.state_errors, 1);
        return None;
    }
    Some(handled)
}

/// Counts what the device made of a delivery.
pub(crate) fn count(counters: &Counters, handled: &Handled) {
    let counter = match handled {
        Handled::Duplicate => &counters.duplicates,
        Handled::Malformed(_) => &counters.malformed,
        Handled::Done {
            outcome, purpose, ..
        } => match (outcome, purpose) {
            (Outcome::Installed, Purpose::Update) => &counters.installed,
            (Outcome::Installed, Purpose::Rollback) => &counters.rolled_back,
            (Outcome::InstallFailed, _) => &counters.install_failed,
            (Outcome::VerificationFailed, _) => &counters.verification_failed,
        },
    };
    add(counter, 1);
}
