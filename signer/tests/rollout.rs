//! The reference scenario's eligibility step on a real token: the reference fleet imported into
//! the registry, release 2.4.1 scoped, every device decided (exactly 8,203 eligible, each rejected
//! device with its reasons), the plan signed and logged, and every delivery booted by the device
//! verifier as its device would, and refused by any other.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and each test is one scenario"
)]

mod common;

use std::path::Path;

use sha2::Digest as _;

use cairn_signer::Error;
use cairn_signer::appliance::Appliance;
use cairn_signer::certs;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::rollout::PlanSpec;
use cairn_signer::session::ReleaseInput;
use cairn_signer::testfleet::{self, REFERENCE_DEVICES, REFERENCE_ELIGIBLE};
use cairn_vault::Query;
use cairn_verifier::boot::{DeviceIdentity, Installed, StoredState, TrustAnchors, verify_delivery};
use cairn_verifier::campaign::ApprovalAction;
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::KeyRole;
use cairn_verifier::delivery::Delivery;
use cairn_verifier::note::LogKey;
use cairn_verifier::rollout::Reasons;
use cairn_verifier::statement::{Kind, Manifest, Purpose, Statement};
use cairn_verifier::types::{SecurityEpoch, UnixTime, Version};
use common::{NOW, ceremony, in_token, present};

/// The reference plan, the file `cairn rollout plan --plan` reads (docs/eligibility.md).
const PLAN: &str = include_str!("../../docs/examples/plan-2.4.1.toml");

fn release(id: &str, version: Version, epoch: u64) -> ReleaseInput {
    ReleaseInput {
        release_id: id.into(),
        product: "Smart Controller".into(),
        family: "STM32H5".into(),
        hardware_revisions: vec!["rev-b".into(), "rev-c".into()],
        version,
        security_epoch: epoch,
        support_until: UnixTime(NOW.0 + 5 * 365 * 86_400),
        advisories: vec!["CVE-2026-12345".into()],
        artifact: None,
    }
}

fn image(dir: &Path, name: &str, fill: u8) -> (std::path::PathBuf, Vec<u8>) {
    let bytes = vec![fill; 20_000];
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
fn the_reference_fleet_gives_8203_eligible_and_every_delivery_boots_on_its_device() {
    in_token(
        "the_reference_fleet_gives_8203_eligible_and_every_delivery_boots_on_its_device",
        |module, dir| {
            ceremony(module, dir, "cairn");
            let appliance = Appliance::open(dir.join("cairn")).unwrap();
            let session = appliance
                .unlock(
                    module,
                    &present(dir, "cairn", &["alice", "bob", "carol"]),
                    NOW,
                )
                .unwrap();
            let (old_path, old_image) = image(dir, "controller-fw-2.4.0.bin", 0x40);
            let (new_path, new_image) = image(dir, "controller-fw-2.4.1-security.bin", 0x41);
            // 2.3.9 at the old epoch: no usable rollback target once 2.4.1 (epoch 7) is installed.
            session
                .sign_release(
                    &old_path,
                    &release("controller-fw-2.3.9", Version::new(2, 3, 9), 6),
                    NOW,
                )
                .unwrap();
            session
                .sign_release(
                    &old_path,
                    &release("controller-fw-2.4.0", Version::new(2, 4, 0), 7),
                    NOW,
                )
                .unwrap();
            session
                .sign_release(
                    &new_path,
                    &release("controller-fw-2.4.1", Version::new(2, 4, 1), 7),
                    NOW,
                )
                .unwrap();

            // The registry: the manufacturer CA trusted, the fleet imported, the CRL applied.
            let fleet = testfleet::reference(NOW).unwrap();
            let registry = Registry::open(dir.join("cairn/registry")).unwrap();
            registry.trust(&fleet.ca.der).unwrap();
            let report = registry.import(fleet.csv.as_bytes(), Format::Csv).unwrap();
            assert_eq!(
                (report.devices, report.added, report.trusted),
                (REFERENCE_DEVICES, REFERENCE_DEVICES, REFERENCE_DEVICES)
            );
            assert_eq!(registry.import_crl(&fleet.crl).unwrap(), 41);

            // An invalid plan is refused before anything is signed.
            let size = appliance.vault().size();
            for (bad, says) in [
                (
                    PLAN.replace("percent = 100", "percent = 90"),
                    "must cover them all",
                ),
                (
                    PLAN.replace(
                        "rollback_release = \"controller-fw-2.4.0\"",
                        "rollback_release = \"controller-fw-2.4.1\"",
                    ),
                    "earlier signed release",
                ),
                (
                    PLAN.replace("failure_permille = 50", "failure_permille = 0"),
                    "failure_permille 0",
                ),
                (
                    PLAN.replace(
                        "rollback_release = \"controller-fw-2.4.0\"",
                        "rollback_release = \"controller-fw-2.3.9\"",
                    ),
                    "anti-rollback",
                ),
                (
                    PLAN.replace("max_attempts = 3", "max_attempts = 0"),
                    "max_attempts",
                ),
                (
                    PLAN.replace("gate = \"approval\"", "gate = \"maybe\""),
                    "gate \"maybe\"",
                ),
                (
                    PLAN.replace(
                        "release = \"controller-fw-2.4.1\"",
                        "release = \"controller-fw-9.9.9\"",
                    ),
                    "not in the log",
                ),
            ] {
                let spec = PlanSpec::from_toml(&bad).unwrap();
                let err = session
                    .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
                    .unwrap_err();
                assert!(matches!(err, Error::Plan(_) | Error::PlanFile(_)), "{err}");
                assert!(err.to_string().contains(says), "{says}: {err}");
                assert_eq!(
                    appliance.vault().size(),
                    size,
                    "{says}: something was logged"
                );
            }

            let spec = PlanSpec::from_toml(PLAN).unwrap();
            let plan = session
                .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
                .unwrap();
            assert_eq!(
                (plan.devices, plan.eligible, plan.rejected),
                (REFERENCE_DEVICES, REFERENCE_ELIGIBLE, 197)
            );
            assert_eq!(plan.hsm_signatures, 2);
            // The first campaign of its class gets sequence 1, and the plan's checkpoint announces
            // it as the class's campaign floor (formats.md §5.1).
            assert_eq!(plan.campaign_sequence, 1);
            assert!(
                plan.checkpoint
                    .contains("\ncairn-campaign-floor Smart Controller/STM32H5 1\n"),
                "{}",
                plan.checkpoint
            );
            assert_eq!(
                plan.stages,
                [
                    ("canary".to_owned(), 50),
                    ("wave-1".to_owned(), 2051),
                    ("fleet".to_owned(), 8203)
                ]
            );
            // A campaign is planned once.
            let err = session
                .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
                .unwrap_err();
            assert!(err.to_string().contains("already exists"), "{err}");

            // Every decision is in the log; each rejected device has exactly its defect's reasons.
            let vault = appliance.vault();
            let decisions = vault
                .query_indices(Query::Campaign("campaign-2026-11-2.4.1"))
                .unwrap();
            assert_eq!(decisions.len() as u64, 1 + REFERENCE_ELIGIBLE * 2 + 197);
            for (id, defect) in &fleet.devices {
                let indices = vault.query_indices(Query::Device(id)).unwrap();
                let entries: Vec<Vec<u8>> =
                    indices.iter().map(|&i| vault.entry(i).unwrap()).collect();
                let kinds: Vec<Kind> = entries
                    .iter()
                    .map(|e| Statement::decode(e).unwrap().kind())
                    .collect();
                match defect {
                    None => assert_eq!(kinds, [Kind::MANIFEST, Kind::MANIFEST], "{id}"),
                    Some(defect) => {
                        assert_eq!(kinds, [Kind::REJECTION], "{id}");
                        let Statement::Rejection(r) = Statement::decode(&entries[0]).unwrap()
                        else {
                            unreachable!()
                        };
                        let want: Reasons = defect.reasons();
                        assert_eq!(r.reasons, want, "{id} ({defect:?})");
                    }
                }
            }

            // Deliveries for every eligible device, built from the log as the relay builds them
            // from its mirror; a sample boots on its device and on no other.
            let manifests = vault.query_indices(Query::Kind(Kind::MANIFEST)).unwrap();
            assert_eq!(manifests.len() as u64, REFERENCE_ELIGIBLE * 2);
            let deliveries: Vec<Vec<u8>> = vault
                .deliveries(&manifests.iter().copied().step_by(97).collect::<Vec<_>>())
                .unwrap()
                .into_iter()
                .map(|(_, d)| d)
                .collect();
            let log_cert = appliance.certificate(KeyRole::Log).unwrap();
            let release_cert = appliance.certificate(KeyRole::Release).unwrap();
            let origin = appliance.state().origin.clone();
            let anchors = TrustAnchors {
                log: LogKey::new(
                    &origin,
                    &origin,
                    certs::verifier_key(&log_cert, "log").unwrap(),
                    &Software,
                )
                .unwrap(),
                release: ReleaseKey::new(
                    certs::verifier_key(&release_cert, "release").unwrap(),
                    &Software,
                ),
                witnesses: cairn_verifier::witness::WitnessPolicy::unwitnessed(),
            };
            let registry_devices = registry.devices().unwrap();
            for d in &deliveries {
                let delivery = Delivery::decode(d).unwrap();
                let manifest = Manifest::decode(delivery.manifest).unwrap();
                let device = registry
                    .device(manifest.device_id.as_str())
                    .unwrap()
                    .unwrap();
                let identity = DeviceIdentity {
                    device_id: &device.id,
                    product: &device.product,
                    family: &device.family,
                    hardware_revision: &device.hardware_revision,
                    current_version: device.version,
                };
                let img: &[u8] = if manifest.purpose == Purpose::Update {
                    &new_image
                } else {
                    &old_image
                };
                assert_eq!(manifest.campaign_sequence, plan.campaign_sequence);
                // A rollback installs only on a device that installed from its campaign.
                let state = if manifest.purpose == Purpose::Update {
                    StoredState::default()
                } else {
                    StoredState {
                        installed: Some(Installed {
                            image_digest: sha2::Sha256::digest(&new_image).into(),
                            image_size: new_image.len() as u64,
                            version: device.version,
                            security_epoch: SecurityEpoch(0),
                            delivery_digest: [0; 32],
                            campaign_sequence: manifest.campaign_sequence,
                        }),
                        ..StoredState::default()
                    }
                };
                verify_delivery(
                    d,
                    &anchors,
                    &identity,
                    &state,
                    &mut cairn_verifier::boot::MemoryImage(img),
                    &Software,
                )
                .unwrap_or_else(|e| panic!("{}: {e}", device.id));
                let other = registry_devices
                    .iter()
                    .find(|o| o.id != device.id && o.hardware_revision == device.hardware_revision)
                    .unwrap();
                let other_identity = DeviceIdentity {
                    device_id: &other.id,
                    ..identity
                };
                let err = verify_delivery(
                    d,
                    &anchors,
                    &other_identity,
                    &StoredState::default(),
                    &mut cairn_verifier::boot::MemoryImage(img),
                    &Software,
                )
                .unwrap_err();
                assert_eq!(err, cairn_verifier::Error::WrongDevice);
            }

            // Gate approvals (formats.md §4.10): the canary's gate is `approval`, so stage 1 opens
            // by one; stage 2 opens automatically, stage 3 does not exist, another campaign has
            // no plan. Refusals log nothing.
            let campaign = "campaign-2026-11-2.4.1";
            let size = vault.size();
            for (campaign, stage, says) in [
                (campaign, 2, "automatic gate"),
                (campaign, 0, "or it is the first"),
                (campaign, 3, "there is no stage 3"),
                ("campaign-other", 1, "has no rollout plan"),
            ] {
                let err = session
                    .approve(campaign, stage, ApprovalAction::OpenStage, NOW)
                    .unwrap_err()
                    .to_string();
                assert!(err.contains(says), "{err}");
            }
            assert_eq!(vault.size(), size);
            let opened = session
                .approve(campaign, 1, ApprovalAction::OpenStage, NOW)
                .unwrap();
            let resumed = session
                .approve(campaign, 2, ApprovalAction::Resume, NOW)
                .unwrap();
            assert_eq!(
                (opened.stage_name.as_str(), resumed.index),
                ("wave-1", opened.index + 2)
            );
            let plan_entry = vault.entry(opened.plan_index).unwrap();
            let Statement::Plan { entry: plan, .. } = Statement::decode(&plan_entry).unwrap()
            else {
                panic!("entry {} is not the plan", opened.plan_index)
            };
            for (report, stage, action) in [
                (&opened, 1, ApprovalAction::OpenStage),
                (&resumed, 2, ApprovalAction::Resume),
            ] {
                let entry = vault.entry(report.index).unwrap();
                let Statement::Approval {
                    entry: signed,
                    approval,
                } = Statement::decode(&entry).unwrap()
                else {
                    panic!("entry {} is not an approval", report.index)
                };
                assert_eq!((approval.stage, approval.action), (stage, action));
                assert_eq!(
                    approval.plan_digest,
                    <[u8; 32]>::from(sha2::Sha256::digest(plan.cose_sign1))
                );
                // Signed by the release key the devices pin.
                cairn_verifier::cose::CoseSign1::decode(signed.cose_sign1)
                    .unwrap()
                    .verify(&anchors.release, &Software)
                    .unwrap();
            }
        },
    );
}

#[test]
fn bad_registry_input_names_the_row_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = testfleet::synthetic(20, NOW).unwrap();
    let registry = Registry::open(dir.path().join("registry")).unwrap();
    registry.trust(&fleet.ca.der).unwrap();
    let lines: Vec<&str> = fleet.csv.lines().collect();
    let with_line = |row: usize, f: &dyn Fn(&str) -> String| -> String {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| if i + 1 == row { f(l) } else { (*l).to_owned() } + "\n")
            .collect()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            with_line(5, &|l| l.replacen(",active,", ",retired,", 1)),
            "row 5: unknown lifecycle state \"retired\"",
        ),
        (
            with_line(7, &|l| {
                format!(
                    "{},{}",
                    &l[..l.rfind(',').unwrap()],
                    "-----BEGIN CERTIFICATE-----garbage"
                )
            }),
            "row 7: bad PEM",
        ),
        (
            with_line(9, &|l| l.rsplit_once(',').unwrap().0.to_owned()),
            "row 9",
        ),
        (
            with_line(12, &|_| lines[3].to_owned()),
            "row 12: device id sc-0000003 already given on row 4",
        ),
        (
            with_line(3, &|l| l.replacen(",2.", ",two.", 1)),
            "row 3: firmware_version",
        ),
        (
            with_line(6, &|l| {
                let (head, _) = l.rsplit_once(',').unwrap();
                format!("{head},AAAA")
            }),
            "row 6: certificate is not DER",
        ),
    ];
    for (csv, says) in cases {
        let err = registry.import(csv.as_bytes(), Format::Csv).unwrap_err();
        assert!(err.to_string().contains(says), "{says}: {err}");
        assert_eq!(
            registry.devices().unwrap().len(),
            0,
            "{says}: a partial import"
        );
    }
    let err = registry
        .import(b"[{\"device_id\": \"x\"}]", Format::Json)
        .unwrap_err();
    assert!(err.to_string().contains("JSON line 1"), "{err}");

    // A good import, then a re-import with changes: the history keeps what changed.
    registry.import(fleet.csv.as_bytes(), Format::Csv).unwrap();
    let changed = with_line(2, &|l| l.replacen(",active,", ",suspended,", 1));
    let report = registry.import(changed.as_bytes(), Format::Csv).unwrap();
    assert_eq!(
        (
            report.import,
            report.changed,
            report.unchanged,
            report.added
        ),
        (2, 1, 19, 0)
    );
    let history = registry.history("sc-0000001").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1], (2, "lifecycle: Active -> Suspended".to_owned()));
    // A CRL from an untrusted CA is refused.
    let other = testfleet::ManufacturerCa::new("Other CA", 9, NOW).unwrap();
    let err = registry
        .import_crl(&other.crl(&[1000], NOW).unwrap())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not signed by a trusted manufacturer CA"),
        "{err}"
    );
}
