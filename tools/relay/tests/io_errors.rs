//! A failure of the relay's own storage is the relay's fault, never the caller's: an operator
//! action or a bundle import whose relay-log write fails answers 500 (not 409, which says the
//! campaign's state forbids the action), changes nothing, and the same request succeeds once the
//! disk does. Needs the `fault-injection` feature (`cargo test --all-features`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use actix_web::{App, test as http_test, web};
use cairn_relay::{Relay, routes};
use cairn_verifier::campaign::ApprovalAction;
use common::{CAMPAIGN, TOKEN};

#[actix_web::test]
async fn a_failed_relay_log_write_is_a_500_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let signer = common::signer_log(
        &dir.path().join("signer"),
        6,
        0,
        &[
            ("canary", 2, 0, 1000, 500, true),
            ("fleet", 6, 0, 900, 500, false),
        ],
        common::Policy::default(),
    );
    let relay = web::Data::new(Relay::open(&common::config(dir.path(), "")).unwrap());
    let app = http_test::init_service(App::new().app_data(relay.clone()).configure(routes)).await;
    let post = |uri: &str, body: Vec<u8>| {
        http_test::TestRequest::post()
            .uri(uri)
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .set_payload(body)
            .to_request()
    };
    let log_size = || relay.engine().log().vault().size();
    let status = || relay.engine().campaigns()[CAMPAIGN].status().name();

    // An import whose engine step cannot be written: 500; the campaign is not taken up.
    let bundle = signer.vault.export_bundle(0).unwrap().to_cbor();
    relay.engine().log().fail_next_appends(1);
    let resp = http_test::call_service(&app, post("/api/v1/bundles", bundle.clone())).await;
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = http_test::read_body_json(resp).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("injected write failure"),
        "{body}"
    );
    assert_eq!(log_size(), 0);
    // The mirror holds the bundle; the next import takes the campaign up.
    signer.approve(1, ApprovalAction::OpenStage);
    let newer = signer
        .vault
        .export_bundle(relay.vault().size())
        .unwrap()
        .to_cbor();
    let resp = http_test::call_service(&app, post("/api/v1/bundles", newer)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(status(), "running");

    // A pause whose events cannot be written: 500, still running, nothing logged.
    let pause = format!("/api/v1/campaigns/{CAMPAIGN}/pause");
    let before = log_size();
    relay.engine().log().fail_next_appends(1);
    let resp = http_test::call_service(&app, post(&pause, br#"{"cause":"freeze"}"#.to_vec())).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(relay.engine().log().failed_appends(), 2);
    assert_eq!(log_size(), before);
    assert_eq!(status(), "running");

    // The same request once writes succeed: 200, paused, logged; again it is a 409 (the state).
    let resp = http_test::call_service(&app, post(&pause, br#"{"cause":"freeze"}"#.to_vec())).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(status(), "paused-by-operator");
    assert!(log_size() > before);
    let resp = http_test::call_service(&app, post(&pause, br#"{"cause":"again"}"#.to_vec())).await;
    assert_eq!(resp.status(), 409);

    // A quarantine whose write fails: 500, the device keeps its state.
    let device = common::device(3);
    let state = || {
        relay.engine().campaigns()[CAMPAIGN]
            .device(&device)
            .unwrap()
            .state()
    };
    let was = state();
    relay.engine().log().fail_next_appends(1);
    let body = format!(r#"{{"cause":"stolen","devices":["{device}"]}}"#).into_bytes();
    let quarantine = format!("/api/v1/campaigns/{CAMPAIGN}/quarantine");
    let resp = http_test::call_service(&app, post(&quarantine, body.clone())).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(state(), was);
    let resp = http_test::call_service(&app, post(&quarantine, body)).await;
    assert_eq!(resp.status(), 200);
    assert_ne!(state(), was);
}
