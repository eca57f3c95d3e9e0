//! The dashboard in a real browser: the relay binary serves a running campaign, headless Chromium
//! (Debian's `chromium`) loads `/dashboard`, and the rendered page shows the six workflow gates,
//! the devices per state and the plot. The screenshot is kept in the target directory
//! (`target/tmp/dashboard.png`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod browser;
mod common;

use browser::{chromium, serve_running_campaign};

#[test]
fn headless_chromium_shows_the_gates_and_counts_of_a_running_campaign() {
    let dir = tempfile::tempdir().unwrap();
    // Open to readers, as the demo's is (`[http] public`; by default a reader gets only the
    // sign-in form: tests/operator_tls.rs, tests/console.rs).
    let relay = serve_running_campaign(dir.path(), "[http]\npublic = [\"dashboard\"]\n");

    let url = format!("http://127.0.0.1:{}/dashboard", relay.port);
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
}
