//! The relay's HTTP API: unauthenticated requests change nothing, bundles are verified before
//! anything is imported, imports are idempotent, a fork is refused and kept as evidence, and the
//! mirror is served as tlog-tiles; then the same through the real binary on a socket.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report"
)]

use std::io::{Read as _, Write as _};
use std::path::Path;

use actix_web::{App, test as http_test, web};
use cairn_relay::{Config, Relay, routes};
use cairn_vault::Vault;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::{Id, UnixTime, Version};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

const ORIGIN: &str = "oem.example/cairn/log";
const TOKEN: &str = "operator token of the release team";

fn manifest(i: u64, release: &[u8]) -> Vec<u8> {
    let id = format!("sc-{i:07}");
    Manifest {
        device_id: Id::new(&id).unwrap(),
        release_id: Id::new("controller-fw-2.4.1").unwrap(),
        release_digest: Software.sha256_of_bytes(release),
        hardware_revision: Id::new("rev-c").unwrap(),
        min_version: Version::new(2, 0, 0),
        max_version: Version::new(2, 4, 0),
        campaign: Id::new("campaign-2026-11").unwrap(),
        purpose: Purpose::Update,
        decided_at: UnixTime(1_795_651_200),
    }
    .to_cbor()
}

trait Sha {
    fn sha256_of_bytes(&self, b: &[u8]) -> [u8; 32];
}

impl Sha for Software {
    fn sha256_of_bytes(&self, b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }
}

/// A signer-side log with a release and `n` manifests (entry `twist` altered if given).
fn source(dir: &Path, n: u64, twist: Option<u64>) -> Vault {
    let f = Fixture::new();
    let release = f.build(&f.spec()).release;
    let sk = test_key(Fixture::LOG_KEY);
    let key = LogKey::new(ORIGIN, ORIGIN, public_key(&sk), &Software).unwrap();
    let vault = Vault::create(dir, ORIGIN).unwrap();
    let mut entries = vec![
        ReleaseEntry {
            cose_sign1: &release,
        }
        .to_cbor(),
    ];
    entries
        .extend((1..=n).map(|i| manifest(if Some(i) == twist { i + 10_000 } else { i }, &release)));
    vault.append(&entries).unwrap();
    vault.sign_checkpoint(&key, &sk).unwrap();
    vault
}

fn config(dir: &Path, listen: &str) -> Config {
    let pem = p256::ecdsa::VerifyingKey::from(&test_key(Fixture::LOG_KEY))
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    std::fs::write(dir.join("log.pub.pem"), pem).unwrap();
    let token = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"{listen}\"\ndata_dir = \"data\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"log.pub.pem\"\n[operators]\ntoken_sha256 = [\"{token}\"]\n"
        ),
    )
    .unwrap();
    Config::load(&path).unwrap()
}

#[actix_web::test]
async fn operators_import_verified_bundles_and_the_mirror_is_served_as_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let signer = source(&dir.path().join("signer"), 300, None);
    let bundle = signer.export_bundle(0).unwrap().to_cbor();
    let relay = web::Data::new(Relay::open(&config(dir.path(), "127.0.0.1:0")).unwrap());
    let app = http_test::init_service(App::new().app_data(relay.clone()).configure(routes)).await;
    let post = |token: Option<&str>, body: Vec<u8>| {
        let mut req = http_test::TestRequest::post()
            .uri("/api/v1/bundles")
            .set_payload(body);
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        req.to_request()
    };

    // No token, a wrong token: 401, nothing imported.
    for token in [None, Some("guess")] {
        let resp = http_test::call_service(&app, post(token, bundle.clone())).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(relay.vault().size(), 0);
    }
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::get()
            .uri("/api/v1/status")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 401);

    // A tampered bundle: refused, nothing imported.
    let mut tampered = bundle.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    let resp = http_test::call_service(&app, post(Some(TOKEN), tampered)).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(relay.vault().size(), 0);

    // The bundle: imported, then again (idempotent).
    let resp = http_test::call_service(&app, post(Some(TOKEN), bundle.clone())).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = http_test::read_body_json(resp).await;
    assert_eq!(body["appended"], serde_json::json!([0, 301]));
    assert_eq!(body["deliveries"], 300);
    let resp = http_test::call_service(&app, post(Some(TOKEN), bundle.clone())).await;
    let body: serde_json::Value = http_test::read_body_json(resp).await;
    assert_eq!(body["appended"], serde_json::json!([301, 301]));

    // Served as tlog-tiles: the checkpoint is the signer's; tiles are immutable; no path escapes.
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::get()
            .uri("/log/checkpoint")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let note = http_test::read_body(resp).await;
    assert_eq!(
        note,
        signer.latest_checkpoint().unwrap().unwrap().as_bytes()
    );
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::get()
            .uri("/log/tile/0/000")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(http_test::read_body(resp).await.len(), 256 * 32);
    for bad in [
        "/log/../relay.toml",
        "/log/tile/../../relay.toml",
        "/log/",
        "/log/tile/0/%2e%2e",
    ] {
        let resp =
            http_test::call_service(&app, http_test::TestRequest::get().uri(bad).to_request())
                .await;
        assert_eq!(resp.status(), 404, "{bad}");
    }

    // A fork: the same key, a different entry 17. Refused (409) and kept as evidence.
    let forked = source(&dir.path().join("forked"), 300, Some(17));
    let fork = forked.export_bundle(0).unwrap().to_cbor();
    let resp = http_test::call_service(&app, post(Some(TOKEN), fork.clone())).await;
    assert_eq!(resp.status(), 409);
    let body: serde_json::Value = http_test::read_body_json(resp).await;
    assert!(body["error"].as_str().unwrap().contains("forked"), "{body}");
    let kept = dir
        .path()
        .join("data/refused")
        .join(format!("{}.bundle", hex::encode(Sha256::digest(&fork))));
    assert_eq!(std::fs::read(kept).unwrap(), fork);
    assert_eq!(relay.vault().size(), 301);

    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::get().uri("/metrics").to_request(),
    )
    .await;
    let text = String::from_utf8(http_test::read_body(resp).await.to_vec()).unwrap();
    for line in [
        "cairn_relay_log_size 301",
        "cairn_relay_bundles_imported_total 2",
        "cairn_relay_bundles_refused_total 2",
        "cairn_relay_unauthorized_total 3",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

fn http(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_binary_serves_on_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let signer = source(&dir.path().join("signer"), 10, None);
    let bundle = signer.export_bundle(0).unwrap().to_cbor();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config(dir.path(), &format!("127.0.0.1:{port}"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
        .arg("--config")
        .arg(dir.path().join("relay.toml"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 30, "the relay did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let health = http(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let mut request = format!(
        "POST /api/v1/bundles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bundle.len()
    )
    .into_bytes();
    request.extend_from_slice(&bundle);
    let reply = http(port, &request);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let checkpoint = http(
        port,
        b"GET /log/checkpoint HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        checkpoint.ends_with(&signer.latest_checkpoint().unwrap().unwrap()),
        "{checkpoint}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
