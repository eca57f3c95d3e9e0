//! The operator API over TLS, who may read what, and failed authentications throttled (issue 20,
//! item 3), with a real client (`curl`, trusting the test CA):
//! - with `[http] tls_cert`/`tls_key` the relay serves HTTPS only: a client trusting the CA gets
//!   through, one that does not is refused, plain HTTP gets no answer;
//! - a listener beyond the loopback interface without TLS is refused at start;
//! - the main log's tiles and the relay key are public; the relay log's tiles, the dashboard and
//!   `/metrics` need a token (or a session) unless `[http] public` opens them;
//! - after `max_auth_failures` wrong tokens a source gets `429`, even with the right token, while
//!   another source is still served.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod browser;
mod common;

use std::path::Path;
use std::process::Command;

use browser::RelayProcess;
use common::TOKEN;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`: `ca.pem`, `server.pem`,
/// `server.key`.
fn pki(dir: &Path) {
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
        "30",
        "-subj",
        "/CN=relay test CA",
    ]);
    openssl(dir, &ca);
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
    openssl(dir, &csr);
    std::fs::write(dir.join("server.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
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
            "30",
            "-extfile",
            "server.ext",
        ],
    );
}

/// `curl` `url` with `args`: the status code (0 when no HTTP answer came) and the body.
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_operator_api_over_tls_protects_per_device_state_and_throttles_guessing() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    common::config(
        dir.path(),
        "[http]\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\nmax_auth_failures = 5\n",
    );
    let relay = RelayProcess::start(dir.path());
    let base = format!("https://127.0.0.1:{}", relay.port);
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let get = |path: &str, extra: &[&str]| {
        let mut args = vec!["--cacert", ca];
        args.extend(extra);
        curl(&format!("{base}{path}"), &args)
    };

    // HTTPS with the CA: served. Without trusting the CA: refused. Plain HTTP: no answer.
    assert_eq!(get("/healthz", &[]), (200, "ok\n".into()));
    assert_eq!(curl(&format!("{base}/healthz"), &[]).0, 0);
    let plain = curl(&format!("http://127.0.0.1:{}/healthz", relay.port), &[]);
    assert_ne!(plain.0, 200, "{plain:?}");
    let (code, body) = get("/api/v1/status", &["-H", &bearer]);
    assert_eq!(code, 200, "{body}");

    // Public by design: the main log's tiles and the relay key. Protected: the relay log's
    // tiles, the dashboard, the metrics (a token opens them; the dashboard shows a reader only
    // the sign-in form).
    assert_ne!(get("/log/checkpoint", &[]).0, 401);
    assert_eq!(get("/state/key.pem", &[]).0, 200);
    for path in ["/state/checkpoint", "/metrics", "/dashboard"] {
        let (code, body) = get(path, &[]);
        assert_eq!(code, 401, "{path}: {body}");
        assert!(
            !body.contains("cairn_relay_") && !body.contains("data-gate"),
            "{path}: {body}"
        );
        // (An empty relay log has no checkpoint yet: 503, but not 401.)
        let (code, body) = get(path, &["-H", &bearer]);
        assert!(
            code == 200 || (path == "/state/checkpoint" && code == 503),
            "{path}: {code} {body}"
        );
    }

    // Five wrong tokens from 127.0.0.1: 401 each; then 429, even with the right token.
    for _ in 0..5 {
        assert_eq!(
            get("/api/v1/status", &["-H", "Authorization: Bearer guess"]).0,
            401
        );
    }
    let (code, body) = get("/api/v1/status", &["-H", &bearer]);
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        get("/metrics", &["-H", "Authorization: Bearer guess"]).0,
        429
    );
    // Another source is served.
    let (code, body) = get(
        "/api/v1/status",
        &["-H", &bearer, "--interface", "127.0.0.2"],
    );
    assert_eq!(code, 200, "{body}");
    // The sign-in form is throttled too.
    let (code, _) = get(
        "/dashboard/sign-in",
        &[
            "-H",
            "Cookie: cairn_signin=x",
            "--data",
            &format!("csrf=x&token={}", TOKEN.replace(' ', "+")),
        ],
    );
    assert_eq!(code, 429);
}

#[test]
fn a_listener_beyond_loopback_without_tls_is_refused_and_public_routes_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    common::config(dir.path(), "");
    let path = dir.path().join("relay.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("127.0.0.1:0", "0.0.0.0:0")).unwrap();
    let err = cairn_relay::Config::load(&path).unwrap_err();
    assert!(
        matches!(err, cairn_relay::config::Error::PlainHttp { .. }),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("without TLS"), "{said}");

    // On loopback, plain HTTP is allowed; `[http] public` opens what it names, and only that.
    let dir = tempfile::tempdir().unwrap();
    common::config(
        dir.path(),
        "[http]\npublic = [\"metrics\", \"dashboard\"]\n",
    );
    let relay = RelayProcess::start(dir.path());
    let base = format!("http://127.0.0.1:{}", relay.port);
    assert_eq!(curl(&format!("{base}/metrics"), &[]).0, 200);
    let (code, body) = curl(&format!("{base}/dashboard"), &[]);
    assert_eq!(code, 200);
    assert!(body.contains("action=\"/dashboard/sign-in\""));
    assert_eq!(curl(&format!("{base}/state/checkpoint"), &[]).0, 401);
}
