//! The relay's HTTP API: unauthenticated requests change nothing, bundles are verified before
//! anything is imported, imports are idempotent, a fork is refused and kept as evidence, and the
//! mirror is served as tlog-tiles; then the same through the real binary on a socket.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report"
)]

mod browser;
mod common;

use std::path::Path;

use actix_web::{App, test as http_test, web};
use browser::{RelayProcess, http};
use cairn_relay::{Config, Relay, routes};
use cairn_vault::Vault;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::{Id, UnixTime, Version};
use common::{ORIGIN, TOKEN};
use sha2::{Digest, Sha256};

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
        campaign_sequence: 1,
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
    let config = common::config(dir, "");
    let text = std::fs::read_to_string(dir.join("relay.toml"))
        .unwrap()
        .replace("127.0.0.1:0", listen);
    std::fs::write(dir.join("relay.toml"), text).unwrap();
    Config {
        listen: listen.into(),
        ..config
    }
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
    assert_eq!(body["manifests"], 300);
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
        http_test::TestRequest::get()
            .uri("/metrics")
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .to_request(),
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

#[test]
fn the_binary_serves_on_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let signer = source(&dir.path().join("signer"), 10, None);
    let bundle = signer.export_bundle(0).unwrap().to_cbor();
    config(dir.path(), "127.0.0.1:0");
    let relay = RelayProcess::start(dir.path());
    let health = http(
        relay.port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    relay.import(&bundle, TOKEN);
    let checkpoint = http(
        relay.port,
        b"GET /log/checkpoint HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        checkpoint.ends_with(&signer.latest_checkpoint().unwrap().unwrap()),
        "{checkpoint}"
    );
}

#[actix_web::test]
async fn operators_act_on_a_campaign_and_everything_they_do_is_evidence() {
    use cairn_verifier::campaign::ApprovalAction;
    use cairn_verifier::statement::Statement;
    let dir = tempfile::tempdir().unwrap();
    let signer = common::signer_log(
        &dir.path().join("signer"),
        12,
        3,
        &[
            ("canary", 2, 0, 1000, 500, true),
            ("fleet", 12, 0, 900, 100, false),
        ],
        common::Policy::default(),
    );
    let old_bundle = signer.vault.export_bundle(0).unwrap().to_cbor();
    let relay = web::Data::new(Relay::open(&common::config(dir.path(), "")).unwrap());
    let app = http_test::init_service(App::new().app_data(relay.clone()).configure(routes)).await;
    let bearer = ("Authorization", format!("Bearer {TOKEN}"));
    let post = |uri: &str, body: &str, auth: bool| {
        let mut req = http_test::TestRequest::post()
            .uri(uri)
            .set_payload(body.to_owned());
        if auth {
            req = req.insert_header(bearer.clone());
        }
        req.to_request()
    };
    let get = |uri: &str| {
        http_test::TestRequest::get()
            .uri(uri)
            .insert_header(bearer.clone())
            .to_request()
    };
    let resp = http_test::call_service(&app, {
        http_test::TestRequest::post()
            .uri("/api/v1/bundles")
            .insert_header(bearer.clone())
            .set_payload(old_bundle.clone())
            .to_request()
    })
    .await;
    assert_eq!(resp.status(), 200);
    let base = format!("/api/v1/campaigns/{}", common::CAMPAIGN);
    let body: serde_json::Value =
        http_test::read_body_json(http_test::call_service(&app, get(&base)).await).await;
    assert_eq!(body["status"], "running");
    assert_eq!(body["states"]["pending"], 2, "{body}");
    assert_eq!(body["states"]["eligible"], 10);
    assert_eq!(body["states"]["rejected"], 3);

    // No token: 401 and nothing logged. Bad bodies and unknown things: 400/404.
    let size = relay.engine().log().vault().size();
    let pause = format!("{base}/pause");
    let resp = http_test::call_service(&app, post(&pause, r#"{"cause":"x"}"#, false)).await;
    assert_eq!(resp.status(), 401);
    for (uri, body, status) in [
        (pause.as_str(), "not json", 400),
        (pause.as_str(), r#"{"cause":"  "}"#, 400),
        (pause.as_str(), r#"{"cause":"x","extra":1}"#, 400),
        ("/api/v1/campaigns/nope/pause", r#"{"cause":"x"}"#, 404),
        (&format!("{base}/explode"), r#"{"cause":"x"}"#, 404),
        (&format!("{base}/quarantine"), r#"{"cause":"x"}"#, 400),
        (
            &format!("{base}/rollback"),
            r#"{"cause":"x","scope":"everything"}"#,
            400,
        ),
        (&format!("{base}/resume"), r#"{"cause":"x"}"#, 409),
    ] {
        let resp = http_test::call_service(&app, post(uri, body, true)).await;
        assert_eq!(resp.status(), status, "{uri} {body}");
    }
    assert_eq!(relay.engine().log().vault().size(), size);

    // Pause, pause again (409), resume; quarantine a device: each an event naming alice.
    let resp =
        http_test::call_service(&app, post(&pause, r#"{"cause":"change freeze"}"#, true)).await;
    assert_eq!(resp.status(), 200);
    let resp = http_test::call_service(&app, post(&pause, r#"{"cause":"again"}"#, true)).await;
    assert_eq!(resp.status(), 409);
    let resume = format!("{base}/resume");
    let resp =
        http_test::call_service(&app, post(&resume, r#"{"cause":"freeze over"}"#, true)).await;
    assert_eq!(resp.status(), 200);
    let device = common::device(12);
    let resp = http_test::call_service(
        &app,
        post(
            &format!("{base}/quarantine"),
            &format!(r#"{{"cause":"stolen","devices":["{device}"]}}"#),
            true,
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = http_test::read_body_json(
        http_test::call_service(&app, get(&format!("{base}/devices"))).await,
    )
    .await;
    let entry = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == device.as_str())
        .unwrap();
    assert_eq!(entry["state"], "quarantined");
    let log = relay.engine().log().vault().size();
    let actors: Vec<String> = (size..log)
        .filter_map(|i| {
            match Statement::decode(&relay.engine().log().vault().entry(i).unwrap()).unwrap() {
                Statement::CampaignEvent(e) => {
                    Some(format!("{} {} {}", e.action.name(), e.actor, e.cause))
                }
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        actors,
        [
            "paused operator:alice change freeze",
            "resumed operator:alice freeze over",
            "quarantined operator:alice stolen"
        ]
    );

    // An approval in a newer bundle; an older bundle replayed afterwards changes nothing.
    signer.approve(1, ApprovalAction::OpenStage);
    let newer = signer
        .vault
        .export_bundle(relay.vault().size())
        .unwrap()
        .to_cbor();
    for (bundle, appended) in [(newer, 1), (old_bundle, 0)] {
        let resp = http_test::call_service(&app, {
            http_test::TestRequest::post()
                .uri("/api/v1/bundles")
                .insert_header(bearer.clone())
                .set_payload(bundle)
                .to_request()
        })
        .await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = http_test::read_body_json(resp).await;
        let range = body["appended"].as_array().unwrap();
        assert_eq!(
            range[1].as_u64().unwrap() - range[0].as_u64().unwrap(),
            appended
        );
    }

    // The dashboard shows the six gates and the counts (to an operator: with `[http] public`
    // empty, a reader gets only the sign-in form).
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::get().uri("/dashboard").to_request(),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let html = String::from_utf8(http_test::read_body(resp).await.to_vec()).unwrap();
    assert!(html.contains("action=\"/dashboard/sign-in\"") && !html.contains("data-gate"));
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::get()
            .uri("/dashboard")
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let html = String::from_utf8(http_test::read_body(resp).await.to_vec()).unwrap();
    for gate in [
        "Signed artifact",
        "Eligibility checked",
        "Rollout configured",
        "Verification tracked",
        "Fallback path set",
        "Evidence retention enabled",
    ] {
        assert!(html.contains(&format!("data-gate=\"{gate}\"")), "{gate}");
    }
    assert!(
        html.contains("<td data-state=\"quarantined\">1</td>"),
        "{html}"
    );
    assert!(html.contains("<svg class=\"plot\""));

    // The relay log leaves as a device-state bundle that verifies with the relay key alone
    // and imports into a mirror on the signer's side.
    let resp = http_test::call_service(&app, get("/api/v1/state-bundle?from=0")).await;
    assert_eq!(resp.status(), 200);
    let bytes = http_test::read_body(resp).await;
    let bundle = cairn_vault::TransferBundle::decode(&bytes).unwrap();
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::get()
            .uri("/state/key.pem")
            .to_request(),
    )
    .await;
    let pem = http_test::read_body(resp).await;
    std::fs::write(dir.path().join("relay.pub.pem"), &pem).unwrap();
    let relay_key = cairn_relay::read_key(&dir.path().join("relay.pub.pem")).unwrap();
    let origin = format!("{ORIGIN}/relay");
    let key = LogKey::new(&origin, &origin, relay_key, &Software).unwrap();
    let mirror = Vault::create(dir.path().join("state-mirror"), &origin).unwrap();
    let report = mirror.import_bundle(&bundle, &key).unwrap();
    assert_eq!(report.size, relay.engine().log().vault().size());
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::get()
            .uri("/state/checkpoint")
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let note = http_test::read_body(resp).await;
    assert!(String::from_utf8_lossy(&note).starts_with(&format!("{origin}\n")));
    // A bundle signed by anyone else is refused by that mirror.
    let other = LogKey::new(&origin, &origin, public_key(&test_key(7)), &Software).unwrap();
    let fresh = Vault::create(dir.path().join("state-mirror-2"), &origin).unwrap();
    assert!(fresh.import_bundle(&bundle, &other).is_err());
    assert_eq!(fresh.size(), 0);
}
