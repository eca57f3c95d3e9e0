//! The dashboard in a real browser: the relay binary serves a running campaign, headless Chromium
//! (Debian's `chromium`) loads `/dashboard`, and the rendered page shows the six workflow gates,
//! the devices per state and the plot. The screenshot is kept in the target directory
//! (`target/tmp/dashboard.png`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::{Duration, Instant};

fn http(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn chromium(profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    cmd.output()
        .expect("chromium is installed by tools/setup (Debian package chromium)")
}

#[test]
fn headless_chromium_shows_the_gates_and_counts_of_a_running_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let signer = common::signer_log(
        &dir.path().join("signer"),
        40,
        5,
        &[
            ("canary", 4, 3600, 1000, 250, true),
            ("fleet", 40, 0, 950, 50, false),
        ],
        common::Policy::default(),
    );
    let bundle = signer.vault.export_bundle(0).unwrap().to_cbor();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    common::config(dir.path(), "");
    let text = std::fs::read_to_string(dir.path().join("relay.toml"))
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(dir.path().join("relay.toml"), text).unwrap();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
        .arg("--config")
        .arg(dir.path().join("relay.toml"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 30, "the relay did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut request = format!(
        "POST /api/v1/bundles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        common::TOKEN,
        bundle.len()
    )
    .into_bytes();
    request.extend_from_slice(&bundle);
    let reply = http(port, &request);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let url = format!("http://127.0.0.1:{port}/dashboard");
    let out = chromium(&dir.path().join("profile"), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-campaign=\"campaign-2026-11-2.4.1\""),
        "{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("data-status=\"running\""));
    for gate in [
        "Signed artifact",
        "Eligibility checked",
        "Rollout configured",
        "Verification tracked",
        "Fallback path set",
        "Evidence retention enabled",
    ] {
        assert!(dom.contains(&format!("data-gate=\"{gate}\"")), "{gate}");
    }
    // No MQTT link: the canary's 4 deliveries wait, the other 36 devices are eligible.
    assert!(dom.contains("<td data-state=\"pending\">4</td>"), "{dom}");
    assert!(dom.contains("<td data-state=\"eligible\">36</td>"));
    assert!(dom.contains("<td data-state=\"rejected\">5</td>"));
    assert!(dom.contains("<svg class=\"plot\""));

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &dir.path().join("profile-2"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1600",
            &url,
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    relay.kill().unwrap();
    relay.wait().unwrap();
}
