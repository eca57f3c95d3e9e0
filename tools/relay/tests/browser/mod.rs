//! What the browser tests share: the relay binary serving a signer's log on a free 127.0.0.1
//! port, raw HTTP/1.1 requests to it, and a WebDriver client for headless Chromium through
//! Debian's `chromedriver` (package `chromium-driver`, installed by tools/setup), with the flags
//! of design.md ("Real components").

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "shared by several test binaries, each using part of it; a panic is the failure report"
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The flags design.md gives for headless Chromium.
pub const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
];

fn wait_listening(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 30, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `response` holds a whole HTTP/1.1 response: its head, and its body by
/// `Content-Length` or to the last chunk.
fn complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let body = &response[end + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

/// Sends a raw HTTP/1.1 request and returns the response (read to its end, or until the server
/// closes; at most a minute).
pub fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while !complete(&out) {
        let n = s.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no whole response in time ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        });
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The relay binary, killed when dropped.
pub struct RelayProcess {
    pub port: u16,
    child: Child,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` with the stream `take` picks piped, and reads that stream until a line that
/// `port` finds a port in; the rest of the stream is drained by a thread. The program chose the
/// port itself (port 0), so parallel tests never race for one.
fn started_on(
    mut child: Child,
    stream: impl std::io::Read + Send + 'static,
    what: &str,
    port: impl Fn(&str) -> Option<u16>,
) -> (Child, u16) {
    use std::io::BufRead as _;
    let mut lines = std::io::BufReader::new(stream).lines();
    let started = Instant::now();
    let found = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("{what} exited before it listened");
        };
        if let Some(p) = port(&line) {
            break p;
        }
        assert!(started.elapsed().as_secs() < 30, "{what} did not start");
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, found)
}

impl RelayProcess {
    /// Starts `cairn-relay` with the `relay.toml` in `dir` (written by `common::config`, listening
    /// on `127.0.0.1:0`), and learns its port from what it prints.
    pub fn start(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
            .arg("--config")
            .arg(dir.join("relay.toml"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (child, port) = started_on(child, stderr, "the relay", |line| {
            line.split_once("listening on 127.0.0.1:")?
                .1
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        });
        wait_listening(port, "the relay");
        Self { port, child }
    }

    /// The relay process's id (its memory is read from `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Imports a transfer bundle with the operator token.
    pub fn import(&self, bundle: &[u8], token: &str) {
        let mut request = format!(
            "POST /api/v1/bundles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bundle.len()
        )
        .into_bytes();
        request.extend_from_slice(bundle);
        let reply = http(self.port, &request);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    /// A request with a body, returning the response.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
        use std::fmt::Write as _;
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (k, v) in headers {
            let _ = write!(request, "{k}: {v}\r\n");
        }
        let _ = write!(request, "Content-Length: {}\r\n\r\n{body}", body.len());
        http(self.port, request.as_bytes())
    }
}

/// The relay binary serving a running campaign: 40 eligible devices and 5 rejected, a canary of
/// 4 behind an approval gate (its deliveries wait: there is no MQTT link), then the fleet;
/// `extra` is added to its configuration.
pub fn serve_running_campaign(dir: &Path, extra: &str) -> RelayProcess {
    let signer = crate::common::signer_log(
        &dir.join("signer"),
        40,
        5,
        &[
            ("canary", 4, 3600, 1000, 250, true),
            ("fleet", 40, 0, 950, 50, false),
        ],
        crate::common::Policy::default(),
    );
    crate::common::config(dir, extra);
    let relay = RelayProcess::start(dir);
    relay.import(
        &signer.vault.export_bundle(0).unwrap().to_cbor(),
        crate::common::TOKEN,
    );
    relay
}

/// Runs `chromium` itself with the headless flags, a fresh profile and `args`.
pub fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium is installed by tools/setup (Debian package chromium)")
}

/// One WebDriver session of headless Chromium, through `chromedriver`.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Decodes a chunked HTTP body.
fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

impl Browser {
    /// Starts `chromedriver` on a free port and a headless Chromium session with a profile in
    /// `profile`.
    pub fn start(profile: &Path) -> Self {
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by tools/setup (Debian package chromium-driver)");
        let stdout = driver.stdout.take().unwrap();
        let (driver, port) = started_on(driver, stdout, "chromedriver", |line| {
            line.split_once("started successfully on port ")?
                .1
                .trim_end_matches('.')
                .parse()
                .ok()
        });
        wait_listening(port, "chromedriver");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push("--window-size=1200,1600".into());
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
        };
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
            }}})),
        );
        created["sessionId"]
            .as_str()
            .unwrap()
            .clone_into(&mut browser.session);
        browser
    }

    /// One WebDriver command (`path` after `/session/<id>`, or `/session` itself); its `value`.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = if path == "/session" {
            path.to_owned()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let response = http(self.port, request.as_bytes());
        let head = response
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let text = if head.contains("transfer-encoding: chunked") {
            unchunk(body_of(&response))
        } else {
            body_of(&response).to_owned()
        };
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}: {response}"));
        if path == "/session" {
            return v["value"].clone();
        }
        assert!(
            v["value"].get("error").is_none(),
            "WebDriver {method} {path}: {v}"
        );
        v["value"].clone()
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects (it must exist).
    pub fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Chooses the option of value `value` in the select `css` selects.
    pub fn choose(&self, css: &str, value: &str) {
        let e = self.find(&format!("{css} option[value=\"{value}\"]"));
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// The page's DOM as it stands.
    pub fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// The cookie `name` as the browser holds it (HttpOnly ones included).
    pub fn cookie(&self, name: &str) -> Value {
        self.call("GET", &format!("/cookie/{name}"), None)
    }

    /// Waits until `done` holds of the page's DOM, for at most `seconds`.
    pub fn wait_for(&self, what: &str, seconds: u64, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let dom = self.source();
            if done(&dom) {
                return dom;
            }
            assert!(
                started.elapsed().as_secs() < seconds,
                "timed out waiting for {what}:\n{dom}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64ct::Encoding as _;
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64ct::Base64::decode_vec(b64.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
    }
}
