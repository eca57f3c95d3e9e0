//! Deliveries through a real broker: the relay imports a bundle, publishes each eligible device's
//! delivery to its own topic over MQTT/TLS, and a device, with its own certificate, receives its
//! delivery and the device verifier accepts it, as at boot.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report"
)]

use std::path::Path;
use std::process::Command;

use actix_web::{App, test as http_test, web};
use cairn_relay::broker::{Broker, RELAY_CLIENT, delivery_topic};
use cairn_relay::{Config, Relay, routes};
use cairn_vault::Vault;
use cairn_verifier::boot::{
    DeviceIdentity, MemoryImage, StoredState, TrustAnchors, verify_delivery,
};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::note::LogKey;
use cairn_verifier::statement::{Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::{Id, UnixTime, Version};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

const ORIGIN: &str = "oem.example/cairn/log";
const TOKEN: &str = "operator token of the release team";
const CAMPAIGN: &str = "campaign-2026-11";

fn device(i: u64) -> String {
    format!("sc-{i:07}")
}

fn signer_log(dir: &Path, release: &[u8], n: u64) -> Vault {
    let sk = test_key(Fixture::LOG_KEY);
    let key = LogKey::new(ORIGIN, ORIGIN, public_key(&sk), &Software).unwrap();
    let vault = Vault::create(dir, ORIGIN).unwrap();
    let mut entries = vec![
        ReleaseEntry {
            cose_sign1: release,
        }
        .to_cbor(),
    ];
    for i in 1..=n {
        let id = device(i);
        for purpose in [Purpose::Update, Purpose::Rollback] {
            entries.push(
                Manifest {
                    device_id: Id::new(&id).unwrap(),
                    release_id: Id::new("controller-fw-2.4.1").unwrap(),
                    release_digest: Sha256::digest(release).into(),
                    hardware_revision: Id::new("rev-c").unwrap(),
                    min_version: Version::new(2, 0, 0),
                    max_version: Version::new(2, 4, 0),
                    campaign: Id::new(CAMPAIGN).unwrap(),
                    purpose,
                    decided_at: UnixTime(1_795_651_200),
                }
                .to_cbor(),
            );
        }
    }
    vault.append(&entries).unwrap();
    vault.sign_checkpoint(&key, &sk).unwrap();
    vault
}

#[actix_web::test]
async fn each_device_receives_its_own_delivery_over_mqtt_and_it_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker")).unwrap();
    let relay_files = broker.client(RELAY_CLIENT).unwrap();
    let f = Fixture::new();
    let release = f.build(&f.spec()).release;
    let signer = signer_log(&dir.path().join("signer"), &release, 20);

    let pem = p256::ecdsa::VerifyingKey::from(&test_key(Fixture::LOG_KEY))
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    std::fs::write(dir.path().join("log.pub.pem"), pem).unwrap();
    let token = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    std::fs::write(
        dir.path().join("relay.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[log]\norigin = \"{ORIGIN}\"\nkey = \"log.pub.pem\"\n\
             [operators]\ntoken_sha256 = [\"{token}\"]\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {}\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            broker.port(),
            broker.ca().display(),
            relay_files.cert.display(),
            relay_files.key.display()
        ),
    )
    .unwrap();
    let config = Config::load(&dir.path().join("relay.toml")).unwrap();
    let relay = web::Data::new(Relay::open(&config).unwrap());
    let app = http_test::init_service(App::new().app_data(relay.clone()).configure(routes)).await;
    let bearer = ("Authorization", format!("Bearer {TOKEN}"));

    let bundle = signer.export_bundle(0).unwrap().to_cbor();
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::post()
            .uri("/api/v1/bundles")
            .insert_header(bearer.clone())
            .set_payload(bundle)
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);

    // Without a token nothing is published.
    let uri = format!("/api/v1/campaigns/{CAMPAIGN}/deliver");
    let resp =
        http_test::call_service(&app, http_test::TestRequest::post().uri(&uri).to_request()).await;
    assert_eq!(resp.status(), 401);
    let resp = http_test::call_service(
        &app,
        http_test::TestRequest::post()
            .uri(&uri)
            .insert_header(bearer.clone())
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = http_test::read_body_json(resp).await;
    assert_eq!(body["published"], 20);

    // Device 7, with its own certificate, receives its retained delivery; it verifies at "boot".
    let files = broker.client(&device(7)).unwrap();
    let port = broker.port().to_string();
    let ca = broker.ca();
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--cafile",
            ca.to_str().unwrap(),
            "--cert",
            files.cert.to_str().unwrap(),
            "--key",
            files.key.to_str().unwrap(),
            "-q",
            "1",
            "-t",
            &delivery_topic(&device(7)),
            "-C",
            "1",
            "-W",
            "5",
            "-N",
        ])
        .output()
        .unwrap();
    let delivery = out.stdout;
    assert!(
        !delivery.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let anchors = TrustAnchors {
        log: LogKey::new(
            ORIGIN,
            ORIGIN,
            public_key(&test_key(Fixture::LOG_KEY)),
            &Software,
        )
        .unwrap(),
        release: ReleaseKey::new(public_key(&test_key(Fixture::RELEASE_KEY)), &Software),
    };
    let id = device(7);
    let identity = DeviceIdentity {
        device_id: &id,
        product: "Smart Controller",
        family: "STM32H5",
        hardware_revision: "rev-c",
        current_version: Version::new(2, 3, 1),
    };
    verify_delivery(
        &delivery,
        &anchors,
        &identity,
        &StoredState::default(),
        &mut MemoryImage(&f.image),
        &Software,
    )
    .expect("device 7 accepts its delivery");
    let other = device(8);
    let err = verify_delivery(
        &delivery,
        &anchors,
        &DeviceIdentity {
            device_id: &other,
            ..identity
        },
        &StoredState::default(),
        &mut MemoryImage(&f.image),
        &Software,
    )
    .unwrap_err();
    assert_eq!(err, cairn_verifier::Error::WrongDevice);
}
