//! A local Mosquitto broker, the stand-in for AWS IoT Core's MQTT data plane (design.md, "Real
//! components"): TLS only, client certificates required and used as the MQTT user name, and ACLs
//! so that a device reads only its own delivery topic and writes only its own status topic; a
//! client's id is its certificate's common name, whatever id it asks for, so no device can take
//! over (and disconnect) another's session.
//!
//! Tests and the demo start one with [`Broker::start`]: a fresh directory with a generated CA, a
//! server certificate for 127.0.0.1, client certificates on request (`openssl`), the configuration
//! and the ACL file, and `mosquitto` on a free 127.0.0.1 port, stopped when the value is dropped.
//!
//! Topics (docs/relay.md): `cairn/<device>/delivery` (the relay publishes, retained, QoS 1) and
//! `cairn/<device>/status` (the device publishes; the relay subscribes to `cairn/+/status`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the broker could not be started or a certificate issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// `openssl` failed.
    #[error("openssl {args}: {stderr}")]
    Openssl {
        /// Its arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// `mosquitto` exited while starting.
    #[error("mosquitto exited ({status}):\n{log}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log.
        log: String,
    },
    /// `mosquitto` did not listen in time.
    #[error("mosquitto did not listen on 127.0.0.1:{port} within 20 s")]
    NotListening {
        /// The port.
        port: u16,
    },
}

type Result<T> = std::result::Result<T, Error>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Largest MQTT packet the broker takes (`max_packet_size`): 64 KiB, below the relay client's
/// `mqtt::MAX_PACKET_BYTES` (and AWS IoT Core's 128 KB). A device that publishes more is
/// disconnected by the broker and the message goes nowhere, so it can never stall the relay's
/// session. A status report is under 1 KiB, a delivery a few KiB.
pub const MAX_PACKET_BYTES: usize = 64 * 1024;

/// Most bytes the broker queues for one client beyond what is in flight (`max_queued_bytes`):
/// with `max_queued_messages`, this bounds what devices can make it hold for the relay.
pub const MAX_QUEUED_BYTES: usize = 256 << 20;

/// The relay's MQTT identity (certificate common name, hence user name).
pub const RELAY_CLIENT: &str = "cairn-relay";
/// The filter the relay subscribes to: every device's status topic.
pub const STATUS_FILTER: &str = "cairn/+/status";

/// The delivery topic of `device`.
pub fn delivery_topic(device: &str) -> String {
    format!("cairn/{device}/delivery")
}

/// The status topic of `device`.
pub fn status_topic(device: &str) -> String {
    format!("cairn/{device}/status")
}

/// The device of a status topic `cairn/<device>/status`, if it is one and names a valid id.
pub fn status_device(topic: &str) -> Option<&str> {
    let device = topic.strip_prefix("cairn/")?.strip_suffix("/status")?;
    cairn_verifier::types::Id::new(device).map(|d| d.as_str())
}

/// The ACL: the relay writes every delivery topic and reads every status topic; a device
/// (`%u`, its certificate's common name) reads its delivery topic and writes its status topic.
/// For the AWS IoT Jobs device API (docs/jobs.md) the relay, playing the Jobs service, reads and
/// writes every thing's `$aws/things/<thing>/jobs/...`, and a device only its own, as an AWS IoT
/// policy with `${iot:Connection.Thing.ThingName}` allows.
pub fn acl() -> String {
    format!(
        "user {RELAY_CLIENT}\ntopic write cairn/+/delivery\ntopic read cairn/+/status\n\
         topic readwrite $aws/things/+/jobs/#\n\n\
         pattern read cairn/%u/delivery\npattern write cairn/%u/status\n\
         pattern readwrite $aws/things/%u/jobs/#\n"
    )
}

/// A running Mosquitto broker.
#[derive(Debug)]
pub struct Broker {
    dir: PathBuf,
    port: u16,
    child: Child,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(io("running openssl (tools/setup installs it)"))?;
    if !out.status.success() {
        return Err(Error::Openssl {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// A client's certificate files.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl Broker {
    /// Generates the PKI and configuration in `dir` and starts `mosquitto` on a free port, with
    /// packets limited to [`MAX_PACKET_BYTES`].
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_with_limit(dir, Some(MAX_PACKET_BYTES))
    }

    /// `start`, with another packet limit, or none (Mosquitto's default): only for testing what
    /// the relay does when a broker passes on a packet larger than it reads.
    pub fn start_with_limit(dir: &Path, max_packet_bytes: Option<usize>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=cairn test MQTT CA",
        ]);
        openssl(dir, &ca)?;
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(dir, &csr)?;
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n",
        )
        .map_err(io("writing server.ext"))?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "3650",
                "-extfile",
                "server.ext",
            ],
        )?;
        std::fs::write(dir.join("acl"), acl()).map_err(io("writing the ACL file"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("finding a free port"))?
            .port();
        // Started as root, mosquitto would drop to the `mosquitto` user, who cannot read our files.
        let user = Command::new("id")
            .arg("-un")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into());
        let conf = format!(
            "user {user}\npersistence true\npersistence_location {dir}/\nlog_dest stderr\nper_listener_settings false\n\
             max_inflight_messages 1000\nmax_queued_messages 1000000\nmax_queued_bytes {MAX_QUEUED_BYTES}\n{limit}\
             allow_anonymous false\nacl_file {dir}/acl\n\n\
             listener {port} 127.0.0.1\ncafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key\n\
             require_certificate true\nuse_identity_as_username true\nuse_username_as_clientid true\n\
             tls_version tlsv1.2\n",
            dir = dir.display(),
            limit = max_packet_bytes
                .map(|n| format!("max_packet_size {n}\n"))
                .unwrap_or_default(),
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).map_err(io("writing mosquitto.conf"))?;
        let mut broker = Self {
            dir: dir.to_path_buf(),
            port,
            child: Self::spawn(dir)?,
        };
        broker.wait_ready()?;
        Ok(broker)
    }

    fn spawn(dir: &Path) -> Result<Child> {
        let log = std::fs::File::create(dir.join("mosquitto.log"))
            .map_err(io("creating mosquitto.log"))?;
        Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io("starting mosquitto (tools/setup installs it)"))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait().map_err(io("waiting for mosquitto"))? {
                let log =
                    std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
                return Err(Error::Exited { status, log });
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(Error::NotListening { port: self.port });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops and starts the broker again on the same port, keeping its persistent state.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.child = Self::spawn(&self.dir)?;
        self.wait_ready()
    }

    fn stop(&mut self) {
        // SIGTERM lets mosquitto save its persistence file.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate clients trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a client certificate with common name `name` (the MQTT user name).
    pub fn client(&self, name: &str) -> Result<ClientFiles> {
        let key = format!("client-{name}.key");
        let csr = format!("client-{name}.csr");
        let cert = format!("client-{name}.pem");
        let subject = format!("/CN={name}");
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ],
        )?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "3650",
            ],
        )?;
        Ok(ClientFiles {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_topics() {
        assert_eq!(status_device(&status_topic("dev-1")), Some("dev-1"));
        assert_eq!(status_device("cairn/dev 1/status"), None);
        assert_eq!(status_device("cairn/a/b/status"), None);
        assert_eq!(status_device(&delivery_topic("dev-1")), None);
    }
}
