//! Witness processes for the relay's forwarding tests: `cairn-witness serve` started on
//! 127.0.0.1 (the binary next to `cairn-relay` in the target directory: `cargo test --workspace`
//! builds it, or `cargo build -p cairn-witness`), stopped and started again on the same port and
//! state; a forging proxy that relays requests to a real witness and alters the signature of
//! its answer; and a TLS terminator in front of a witness.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "test helpers shared by several test files, each using part of it"
)]

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cairn_relay::Relay;

use crate::common::ORIGIN;

/// The `cairn-witness` binary beside `cairn-relay`.
pub fn binary() -> PathBuf {
    let relay = PathBuf::from(env!("CARGO_BIN_EXE_cairn-relay"));
    let bin = relay.with_file_name("cairn-witness");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p cairn-witness` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A port free now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One witness: its key, state and port; its process while it runs.
pub struct TestWitness {
    pub name: String,
    pub vkey: String,
    pub port: u16,
    home: PathBuf,
    child: Option<Child>,
}

impl Drop for TestWitness {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TestWitness {
    /// Makes the witness's key in `dir/<n>` (not started). `logs` are the log public keys (PEM)
    /// it follows, by origin.
    pub fn new(dir: &Path, name: &str) -> Self {
        let home = dir.join(name.replace('/', "_"));
        std::fs::create_dir_all(&home).unwrap();
        let out = Command::new(binary())
            .args(["keygen", "--name", name, "--key"])
            .arg(home.join("key"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            name: name.to_owned(),
            vkey: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            port: free_port(),
            home,
            child: None,
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Starts `cairn-witness serve` on its port, following the logs `(origin, key PEM file)`.
    pub fn start(&mut self, logs: &[(&str, &Path)]) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--state")
            .arg(self.home.join("state"))
            .arg("--key")
            .arg(self.home.join("key"))
            .args(["--name", &self.name, "--listen"])
            .arg(format!("127.0.0.1:{}", self.port));
        for (origin, pem) in logs {
            cmd.arg("--log").arg(format!("{origin}={}", pem.display()));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains(" listening on "), "{}: {line}", self.name);
        std::thread::spawn(move || reader.lines().for_each(drop));
        self.child = Some(child);
    }

    /// Starts it following the signer's log only (its key `log.pub.pem` in `dir`).
    pub fn start_for_signer(&mut self, dir: &Path) {
        self.start(&[(ORIGIN, &dir.join("log.pub.pem"))]);
    }

    /// Stops it (a witness down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes the relay's witness policy (`witnesses.toml` in `dir`): `threshold` of `witnesses`,
/// each at `urls[i]` (its own URL unless replaced, e.g. by a proxy's).
pub fn policy(dir: &Path, threshold: usize, witnesses: &[&TestWitness], urls: &[String]) {
    let mut toml = format!("threshold = {threshold}\n");
    for (w, url) in witnesses.iter().zip(urls) {
        let _ = write!(
            toml,
            "[[witness]]\nvkey = \"{}\"\nurl = \"{url}\"\n",
            w.vkey
        );
    }
    std::fs::write(dir.join("witnesses.toml"), toml).unwrap();
}

/// The relay's `[witnesses]` section for `policy`, with short retries.
pub const SECTION: &str = "[witnesses]\npolicy = \"witnesses.toml\"\nretry_min_secs = 1\n\
                           retry_max_secs = 2\ntimeout_secs = 5\n";

/// A proxy on a free port in front of the witness on `port` that changes one base64 character of
/// the Ed25519 signature in every 200 answer: a cosignature with the witness's name and key id
/// that does not verify. Runs until the test ends.
pub fn forging_proxy(port: u16) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = pass_one(&mut client, port, true);
        }
    });
    url
}

/// A TLS terminator on a free port in front of the witness on `port` (as a witness is run on the
/// internet: C2SP tlog-witness over HTTPS), serving the certificate `cert` (PEM, for 127.0.0.1)
/// with its PKCS#8 key `key`. Returns its `https://` URL. Runs until the test ends.
pub fn tls_proxy(port: u16, cert: &Path, key: &Path) -> String {
    let identity = native_tls::Identity::from_pkcs8(
        &std::fs::read(cert).unwrap(),
        &std::fs::read(key).unwrap(),
    )
    .unwrap();
    let acceptor = native_tls::TlsAcceptor::new(identity).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
            // A client that does not trust the certificate ends the handshake: nothing to pass.
            let Ok(mut tls) = acceptor.accept(client) else {
                continue;
            };
            let _ = pass_one(&mut tls, port, false);
        }
    });
    url
}

/// Passes one request from `client` to the witness on `port` and its answer back, with the
/// signature of a 200 answer altered if `forge`.
fn pass_one(
    client: &mut (impl std::io::Read + std::io::Write),
    port: u16,
    forge: bool,
) -> std::io::Result<()> {
    // The relay's request: header, then Content-Length bytes.
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let mut upstream = TcpStream::connect(("127.0.0.1", port))?;
    upstream.write_all(&request)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    if forge && answer.starts_with(b"HTTP/1.1 200") {
        // The last line's signature: a character 30 from the end (inside the 64-byte signature).
        let at = answer.len() - 30;
        answer[at] = if answer[at] == b'A' { b'B' } else { b'A' };
    }
    client.write_all(&answer)?;
    client.flush()
}

/// `GET path` through the relay's routes with the operator's token: status and body.
pub fn get(relay: &Arc<Relay>, path: &str) -> (u16, String) {
    let (status, body) = get_bytes(relay, path);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// [`get`] of a body that is not text.
pub fn get_bytes(relay: &Arc<Relay>, path: &str) -> (u16, Vec<u8>) {
    use actix_web::{App, test as http_test, web};
    actix_web::rt::System::new().block_on(async {
        let data = web::Data::from(Arc::clone(relay));
        let app =
            http_test::init_service(App::new().app_data(data).configure(cairn_relay::routes)).await;
        let req = http_test::TestRequest::get()
            .uri(path)
            .insert_header(("Authorization", format!("Bearer {}", crate::common::TOKEN)))
            .to_request();
        let resp = http_test::call_service(&app, req).await;
        let status = resp.status().as_u16();
        let body = http_test::read_body(resp).await;
        (status, body.to_vec())
    })
}
