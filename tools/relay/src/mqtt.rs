//! The relay's MQTT client (docs/relay.md): deliveries published to each device's own topic,
//! retained with QoS 1, over TLS with the relay's client certificate; the same code talks to AWS
//! IoT Core (port 8883, X.509 client certificates) and to the local Mosquitto of the tests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde::Deserialize;

use crate::broker::delivery_topic;

/// `[mqtt]` in the relay's configuration.
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
}

fn default_client_id() -> String {
    crate::broker::RELAY_CLIENT.into()
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn options(config: &MqttConfig) -> anyhow::Result<MqttOptions> {
    let identity = native_tls::Identity::from_pkcs8(&read(&config.cert)?, &read(&config.key)?)
        .context("the relay's MQTT certificate and key")?;
    let ca = native_tls::Certificate::from_pem(&read(&config.ca)?).context("the MQTT CA")?;
    let connector = native_tls::TlsConnector::builder()
        .identity(identity)
        .add_root_certificate(ca)
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .build()
        .context("building the TLS connector")?;
    let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
    options
        .set_transport(Transport::Tls(TlsConfiguration::NativeConnector(connector)))
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_max_packet_size(256 * 1024, 256 * 1024);
    Ok(options)
}

/// Publishes each `(device, delivery)` to the device's delivery topic, retained, QoS 1, and
/// returns once the broker acknowledged every one. At most `in_flight` publications wait for
/// their acknowledgement at a time (backpressure); connection errors are retried with backoff up
/// to `deadline`.
pub async fn publish_deliveries(
    config: &MqttConfig,
    deliveries: &[(String, Vec<u8>)],
    deadline: Duration,
) -> anyhow::Result<u64> {
    let mut options = options(config)?;
    options.set_inflight(100);
    let (client, mut events) = AsyncClient::new(options, 64);
    let total = deliveries.len() as u64;
    let publisher = {
        let client = client.clone();
        let deliveries: Vec<(String, Vec<u8>)> = deliveries.to_vec();
        tokio::spawn(async move {
            for (device, delivery) in deliveries {
                client
                    .publish(delivery_topic(&device), QoS::AtLeastOnce, true, delivery)
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    let started = tokio::time::Instant::now();
    let mut acked = 0u64;
    let mut failures = 0u32;
    let mut publisher = Some(publisher);
    while acked < total {
        // A publisher that stopped early (the client closed) is an error now, not at the deadline.
        if let Some(task) = publisher.take_if(|t| t.is_finished()) {
            task.await.context("publisher task")??;
        }
        if started.elapsed() > deadline {
            bail!("{acked} of {total} deliveries acknowledged by the broker within {deadline:?}");
        }
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)) | Event::Outgoing(Outgoing::Publish(_)))) => {
                failures = 0;
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                // Reconnect with backoff; unacknowledged QoS 1 publications are sent again.
                failures += 1;
                if failures > 10 {
                    return Err(e).context("the MQTT connection keeps failing");
                }
                tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
            }
        }
    }
    if let Some(task) = publisher {
        task.await.context("publisher task")??;
    }
    client.disconnect().await.ok();
    Ok(acked)
}
