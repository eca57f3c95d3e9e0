//! The evidence pack end to end on a SoftHSM token: a 3-of-5 ceremony, two releases, a plan over
//! a synthetic fleet, gate approvals, a relay log (events under a software relay key) brought
//! back with `record_relay_state`, the pack exported and verified with the root certificate
//! alone; then every kind of alteration is named: each entry, recorded leaf hash, certificate,
//! checkpoint byte, proof hash, retention record, and missing entries (gaps).

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::path::Path;

use cairn_signer::appliance::Appliance;
use cairn_signer::audit::{self, Pack, Summary};
use cairn_signer::registry::{Format, Registry};
use cairn_signer::rollout::PlanSpec;
use cairn_signer::session::ReleaseInput;
use cairn_signer::testfleet;
use cairn_vault::Vault;
use cairn_verifier::campaign::ApprovalAction;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::custody::KeyRole;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{Purpose, Statement};
use cairn_verifier::test_support;
use cairn_verifier::types::{UnixTime, Version};
use common::relay_log::RelayLog;
use common::{NOW, ceremony, in_token, present};

const CAMPAIGN: &str = "campaign-2026-11-2.4.1";
const RELAY_ORIGIN: &str = "cairn.example/log/relay";

const PLAN: &str = r#"
campaign = "campaign-2026-11-2.4.1"
release = "controller-fw-2.4.1"
rollback_release = "controller-fw-2.4.0"
max_attempts = 3
backoff_secs = 600
quarantine_after_failures = 2
quarantine_on_verification_failure = true

[scope]
min_version = "2.0.0"
max_version = "2.4.0"

[[stages]]
name = "canary"
devices = 4
soak_secs = 0
success_permille = 980
failure_permille = 20
gate = "approval"

[[stages]]
name = "wave-1"
percent = 50
soak_secs = 0
success_permille = 900
failure_permille = 100
gate = "automatic"

[[stages]]
name = "fleet"
percent = 100
soak_secs = 0
success_permille = 900
failure_permille = 100
gate = "automatic"
"#;

fn release(id: &str, version: Version) -> ReleaseInput {
    ReleaseInput {
        release_id: id.into(),
        product: "Smart Controller".into(),
        family: "STM32H5".into(),
        hardware_revisions: vec!["rev-b".into(), "rev-c".into()],
        version,
        security_epoch: 7,
        support_until: UnixTime(NOW.0 + 5 * 365 * 86_400),
        advisories: vec!["CVE-2026-12345".into()],
        artifact: None,
    }
}

/// The relay's log for the campaign: every device delivered and installed, one device failing
/// once in wave-1 (a pause by rule, a signed resume, a retry), as the relay's engine writes it.
/// The relay's key and its (empty) log.
fn relay_vault(dir: &Path) -> (Vault, p256::ecdsa::SigningKey, PublicKey) {
    let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let public =
        PublicKey::from_sec1_uncompressed(key.verifying_key().to_sec1_point(false).as_bytes())
            .unwrap();
    let vault = Vault::create(dir.join("relay-state"), RELAY_ORIGIN).unwrap();
    (vault, key, public)
}

/// Appends relay events to the relay log under a checkpoint signed by the relay key.
fn relay_append(
    vault: &Vault,
    key: &p256::ecdsa::SigningKey,
    public: PublicKey,
    entries: &[Vec<u8>],
) {
    let log_key = LogKey::new(RELAY_ORIGIN, RELAY_ORIGIN, public, &Software).unwrap();
    vault.append_signed(entries, &log_key, key).unwrap();
}

/// The relay's events for the campaign: stages of 4 devices, half and all of them; the first
/// device of wave-1 fails once (a pause by rule, a signed resume, a retry).
fn relay_entries(devices: &[String], approvals: [u64; 2]) -> (Vec<Vec<u8>>, usize) {
    let n = devices.len() as u64;
    RelayLog {
        campaign: CAMPAIGN,
        release: "controller-fw-2.4.1",
        start: UnixTime(NOW.0 + 100),
        stages: &[4, n / 2, n],
        fails: &|i| i == 4,
        retry_after: 0,
    }
    .entries(devices, approvals)
}

/// Where `part` (a slice of `whole`) starts in `whole`.
fn offset(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// Takes entry `index` out of a section, splitting its run.
fn remove(section: &mut audit::Section<'_>, index: u64) {
    let at = section
        .runs
        .iter()
        .position(|r| (r.start..r.start + r.entries.len() as u64).contains(&index))
        .unwrap();
    let run = &mut section.runs[at];
    let k = usize::try_from(index - run.start).unwrap();
    let tail = run.entries.split_off(k + 1);
    run.entries.pop();
    let empty = run.entries.is_empty();
    if !tail.is_empty() {
        section.runs.insert(
            at + 1,
            audit::Run {
                start: index + 1,
                entries: tail,
            },
        );
    }
    if empty {
        section.runs.remove(at);
    }
}

fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x01;
    b
}

/// Verifies `bytes` and asserts a finding names `item` (exactly, or as a prefix ending at a
/// space or parenthesis).
fn assert_names(bytes: &[u8], root: &[u8], item: &str, what: &str) {
    let v = audit::verify(bytes, root);
    assert!(
        v.findings.iter().any(|f| f.item == item
            || f.item.starts_with(&format!("{item} ("))
            || f.item.starts_with(&format!("{item}:"))),
        "{what}: no finding names {item:?}; findings: {:#?}",
        v.findings
    );
}

#[test]
fn the_campaign_pack_verifies_from_the_root_alone_and_names_every_alteration() {
    in_token(
        "the_campaign_pack_verifies_from_the_root_alone_and_names_every_alteration",
        |module, dir| {
            ceremony(module, dir, "cairn");
            let appliance = Appliance::open(dir.join("cairn")).unwrap();
            let session = appliance
                .unlock(
                    module,
                    &present(dir, "cairn", &["alice", "carol", "erin"]),
                    NOW,
                )
                .unwrap();
            let image = dir.join("fw.bin");
            std::fs::write(&image, vec![0x41; 10_000]).unwrap();
            // 2.3.9 is not the campaign's: its entries stay out of the pack, under the proof.
            session
                .sign_release(
                    &image,
                    &release("controller-fw-2.3.9", Version::new(2, 3, 9)),
                    NOW,
                )
                .unwrap();
            session
                .sign_release(
                    &image,
                    &release("controller-fw-2.4.0", Version::new(2, 4, 0)),
                    NOW,
                )
                .unwrap();
            session
                .sign_release(
                    &image,
                    &release("controller-fw-2.4.1", Version::new(2, 4, 1)),
                    NOW,
                )
                .unwrap();
            let fleet = testfleet::synthetic(24, NOW).unwrap();
            let registry = Registry::open(dir.join("cairn/registry")).unwrap();
            registry.trust(&fleet.ca.der).unwrap();
            registry.import(fleet.csv.as_bytes(), Format::Csv).unwrap();
            let spec = PlanSpec::from_toml(PLAN).unwrap();
            let plan = session
                .plan_rollout(&registry, &spec, NOW, &mut |_, _| {})
                .unwrap();
            assert_eq!(plan.eligible, 24);
            let open = session
                .approve(CAMPAIGN, 1, ApprovalAction::OpenStage, NOW)
                .unwrap();

            // The relay's log, in the order the stages hold the devices.
            let mut devices: Vec<String> = Vec::new();
            for i in plan.decisions.clone() {
                if let Statement::Manifest(m) =
                    Statement::decode(&appliance.vault().entry(i).unwrap()).unwrap()
                    && m.purpose == Purpose::Update
                {
                    devices.push(m.device_id.as_str().to_owned());
                }
            }
            // The relay runs up to the pause; the custodians record its log, then sign the
            // resume; the relay goes on.
            let (relay, relay_key, public) = relay_vault(dir);
            let (entries, after_pause) = relay_entries(&devices, [open.index, 0]);
            relay_append(&relay, &relay_key, public, &entries[..after_pause]);
            let paused = session
                .record_relay_state(&relay.export_bundle(0).unwrap(), public, NOW)
                .unwrap();
            let resume = session
                .approve(CAMPAIGN, 1, ApprovalAction::Resume, NOW)
                .unwrap();
            let (entries, _) = relay_entries(&devices, [open.index, resume.index]);
            relay_append(&relay, &relay_key, public, &entries[after_pause..]);
            let bundle = relay.export_bundle(0).unwrap();
            let recorded = session.record_relay_state(&bundle, public, NOW).unwrap();
            assert_eq!(recorded.relay_size, relay.size());
            // The same bundle again adds nothing: nothing is logged, the report names the
            // earlier record; another key is refused.
            let size = appliance.vault().size();
            let again = session.record_relay_state(&bundle, public, NOW).unwrap();
            assert!(again.already_recorded);
            assert_eq!(again.index, recorded.index);
            assert_eq!(appliance.vault().size(), size);
            let other = PublicKey::from_sec1_uncompressed(
                p256::ecdsa::SigningKey::from_slice(&[8; 32])
                    .unwrap()
                    .verifying_key()
                    .to_sec1_point(false)
                    .as_bytes(),
            )
            .unwrap();
            assert!(session.record_relay_state(&bundle, other, NOW).is_err());

            // The pack verifies with the root certificate alone.
            let bytes = audit::export(&appliance, CAMPAIGN, NOW).unwrap();
            let root = der::Encode::to_der(&appliance.certificate(KeyRole::Root).unwrap()).unwrap();
            let v = audit::verify(&bytes, &root);
            assert!(v.findings.is_empty(), "{:#?}", v.findings);
            let plan_facts = v.plan.clone().unwrap();
            assert_eq!((plan_facts.eligible, plan_facts.rejected), (24, 0));
            assert_eq!(plan_facts.custodians, ["alice", "carol", "erin"]);
            assert_eq!(v.approvals.len(), 2);
            assert_eq!(v.releases.len(), 2);
            assert_eq!(v.relay_log.1, relay.size());
            let summary = Summary::of(&v);
            assert!(summary.verified);
            assert_eq!(summary.cra.len(), 6);
            assert_eq!(summary.final_states.get("installed"), Some(&24));
            assert_eq!(summary.retries, 1);
            assert_eq!(summary.stages[1].failures, 1);
            assert_eq!(summary.stages[1].retried, 1);
            assert!(summary.history.iter().any(|h| h.what.starts_with("paused")));
            assert!(
                summary
                    .history
                    .iter()
                    .any(|h| h.what.starts_with("gate approval signed: resume"))
            );
            let html = summary.html();
            assert!(html.contains("<svg") && html.contains("Firmware authenticity"));
            assert!(summary.text().contains("evidence VERIFIED"));

            // Another ceremony's root certificate is not the anchor.
            ceremony(module, dir, "other");
            let foreign = der::Encode::to_der(
                &Appliance::open(dir.join("other"))
                    .unwrap()
                    .certificate(KeyRole::Root)
                    .unwrap(),
            )
            .unwrap();
            assert_names(&bytes, &foreign, "certificate root", "foreign root");
            assert_names(&bytes, &foreign, "signer log entry 0", "foreign root");

            let pack = Pack::decode(&bytes).unwrap();
            // Every byte of both checkpoints.
            for (item, note) in [
                ("signer log checkpoint", pack.signer.checkpoint),
                ("relay log checkpoint", pack.relay.checkpoint),
            ] {
                let at = offset(&bytes, note);
                for i in 0..note.len() {
                    assert_names(
                        &flipped(&bytes, at + i),
                        &root,
                        item,
                        &format!("{item} byte {i}"),
                    );
                }
            }
            // Every 7th byte of every certificate.
            for (name, der) in &pack.certificates {
                let at = offset(&bytes, der);
                for i in (0..der.len()).step_by(7) {
                    assert_names(
                        &flipped(&bytes, at + i),
                        &root,
                        &format!("certificate {name}"),
                        &format!("certificate {name} byte {i}"),
                    );
                }
            }
            // Every entry (first, middle, last byte) and every recorded leaf hash, both logs.
            for (log, section) in [("signer log", &pack.signer), ("relay log", &pack.relay)] {
                for run in &section.runs {
                    for (k, (hash, entry)) in run.entries.iter().enumerate() {
                        let item = format!("{log} entry {}", run.start + k as u64);
                        let at = offset(&bytes, entry);
                        for i in [0, entry.len() / 2, entry.len() - 1] {
                            assert_names(&flipped(&bytes, at + i), &root, &item, &item);
                        }
                        // The hash is the 32 bytes before the entry's bstr head.
                        let head = if entry.len() < 24 {
                            1
                        } else if entry.len() < 256 {
                            2
                        } else if entry.len() < 65_536 {
                            3
                        } else {
                            5
                        };
                        let hash_at = at - head - 32;
                        assert_eq!(&bytes[hash_at..hash_at + 32], hash);
                        assert_names(
                            &flipped(&bytes, hash_at + 31),
                            &root,
                            &item,
                            &format!("{item} leaf hash"),
                        );
                    }
                }
            }
            // Every proof hash.
            assert!(!pack.signer.proof.is_empty());
            for h in &pack.signer.proof {
                let at = bytes.windows(32).position(|w| w == h).unwrap();
                assert_names(
                    &flipped(&bytes, at + 5),
                    &root,
                    "signer log proof",
                    "proof hash",
                );
            }
            // A retention record that does not match the signed release.
            let mut changed = pack.clone();
            changed.retention[0].retain_until = UnixTime(changed.retention[0].retain_until.0 - 1);
            assert_names(
                &changed.to_cbor(),
                &root,
                &format!("retention of {}", pack.retention[0].release),
                "retention",
            );
            // Gaps: a decision of the plan, a relay event, a gate approval the relay applied.
            let decision = plan_facts.decisions[0] + 3;
            let mut gap = pack.clone();
            remove(&mut gap.signer, decision);
            assert_names(
                &gap.to_cbor(),
                &root,
                &format!("signer log entries {decision}..{}", decision + 1),
                "missing decision",
            );
            let mut gap = pack.clone();
            remove(&mut gap.relay, 10);
            assert_names(
                &gap.to_cbor(),
                &root,
                "relay log entries 10..11",
                "missing relay event",
            );
            let mut gap = pack.clone();
            remove(&mut gap.signer, resume.index);
            assert_names(
                &gap.to_cbor(),
                &root,
                &format!("signer log entry {}", resume.index),
                "missing approval the relay applied",
            );
            // Without the record of the relay log with the pause, the pack no longer shows that
            // the custodians saw the failures before they signed the resume: named.
            let mut unseen = pack.clone();
            remove(&mut unseen.signer, paused.index);
            let v = audit::verify(&unseen.to_cbor(), &root);
            assert!(
                v.findings
                    .iter()
                    .any(|f| f.item == format!("signer log entry {}", resume.index)
                        && f.problem
                            .contains("signed before the custodians recorded the relay log")),
                "{:#?}",
                v.findings
            );
            // A stale pack (issue 20, item 5): the newest signer checkpoint, the last relay
            // checkpoint record left out with the signer proof recomputed without it, and the
            // relay log as the earlier record recorded it. Every entry left is genuine and
            // proven; the checkpoint's kind counts name the record left out.
            let signer_size = Checkpoint::parse(pack.signer.checkpoint).unwrap().size.0;
            let mut stale = pack.clone();
            remove(&mut stale.signer, recorded.index);
            let kept: Vec<u64> = stale.signer.indices().collect();
            stale.signer.proof = appliance
                .vault()
                .at(signer_size)
                .unwrap()
                .multi_proof(&kept)
                .unwrap();
            let old_note = relay.checkpoint(paused.relay_size).unwrap().unwrap();
            let old_all: Vec<u64> = (0..paused.relay_size).collect();
            let old_entries = relay.entries_at(&old_all).unwrap();
            stale.relay.checkpoint = old_note.as_bytes();
            stale.relay.runs = audit::pack::runs_of(
                old_all
                    .iter()
                    .zip(&old_entries)
                    .map(|(&i, (h, e))| (i, *h, e.as_slice())),
            );
            stale.relay.proof = relay
                .at(paused.relay_size)
                .unwrap()
                .multi_proof(&old_all)
                .unwrap();
            let v = audit::verify(&stale.to_cbor(), &root);
            let item = format!(
                "signer log entry {} (relay checkpoint record)",
                recorded.index
            );
            assert!(
                v.findings.iter().any(|f| f.item == item),
                "no finding names {item:?}: {:#?}",
                v.findings
            );
            assert_eq!(v.findings.len(), 1, "{:#?}", v.findings);
            // Truncation is a decoding failure of the pack.
            assert_names(&bytes[..bytes.len() - 1], &root, "pack", "truncated");

            check_witnessed_pack(&appliance, &session, &relay, public, &root);
        },
    );
}

/// The devices' witness policy file: 2 of the 3 test witnesses.
fn witness_policy() -> String {
    use base64ct::Encoding as _;
    use std::fmt::Write as _;
    let mut toml = String::from("threshold = 2\n");
    for (n, name) in test_support::WITNESSES.iter().enumerate() {
        let key = test_support::witness(name, u8::try_from(n).unwrap());
        let mut raw = vec![0x04];
        raw.extend_from_slice(&key.public);
        let _ = write!(
            toml,
            "[[witness]]\nvkey = \"{name}+{}+{}\"\n",
            hex::encode(key.key_id),
            base64ct::Base64::encode_string(&raw)
        );
    }
    toml
}

/// Step 8 with the devices' witness policy (docs/witness.md): a pack whose checkpoints nobody
/// cosigned names both; once two witnesses cosign the relay's checkpoint (recorded again by the
/// custodians) and the signer's, both quorums verify and the summary reports them; with the relay
/// checkpoint's cosignatures stripped, the relay's quorum alone is named.
fn check_witnessed_pack(
    appliance: &Appliance,
    session: &cairn_signer::session::Session<'_>,
    relay: &Vault,
    public: PublicKey,
    root: &[u8],
) {
    let toml = witness_policy();
    let policy =
        cairn_signer::witness::Policy::from_toml(&toml, Path::new("witnesses.toml")).unwrap();
    // The appliance has the devices' policy: a relay checkpoint brought with a forged line under a
    // pinned witness's name is refused, and nothing is logged.
    std::fs::write(
        appliance.home().join(cairn_signer::witness::POLICY_FILE),
        &toml,
    )
    .unwrap();
    let note = relay.latest_checkpoint().unwrap().unwrap();
    let mut forged = relay.export_bundle(0).unwrap();
    let line = test_support::cosign(&note, 0, NOW.0);
    let mut bad = line.into_bytes();
    let at = bad.len() - 10;
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    forged.checkpoint = String::from_utf8(bad).unwrap();
    let logged = appliance.vault().size();
    let refused = session
        .record_relay_state(&forged, public, NOW)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(test_support::WITNESSES[0]) && refused.contains("does not verify"),
        "{refused}"
    );
    assert_eq!(appliance.vault().size(), logged);
    let items = |bytes: &[u8]| -> Vec<String> {
        audit::verify_with_witnesses(bytes, root, &policy)
            .findings
            .into_iter()
            .map(|f| f.item)
            .collect()
    };
    let bytes = audit::export(appliance, CAMPAIGN, NOW).unwrap();
    assert_eq!(
        items(&bytes),
        [
            "signer log checkpoint witnesses",
            "relay log checkpoint witnesses"
        ]
    );

    relay
        .add_cosignatures(&test_support::cosign(
            &test_support::cosign(&note, 0, NOW.0),
            1,
            NOW.0,
        ))
        .unwrap();
    let bundle = relay.export_bundle(0).unwrap();
    let recorded = session.record_relay_state(&bundle, public, NOW).unwrap();
    assert!(
        !recorded.already_recorded,
        "the cosigned checkpoint is a new record"
    );
    let signer = appliance.vault().latest_checkpoint().unwrap().unwrap();
    appliance
        .vault()
        .add_cosignatures(&test_support::cosign(
            &test_support::cosign(&signer, 1, NOW.0),
            2,
            NOW.0,
        ))
        .unwrap();
    let bytes = audit::export(appliance, CAMPAIGN, NOW).unwrap();
    let v = audit::verify_with_witnesses(&bytes, root, &policy);
    assert!(v.findings.is_empty(), "{:#?}", v.findings);
    let relay_quorum = v.relay_witnesses.clone().unwrap();
    assert!(relay_quorum.quorum);
    assert_eq!(relay_quorum.missing, [test_support::WITNESSES[2]]);
    assert!(v.witnesses.clone().unwrap().quorum);
    let text = Summary::of(&v).text();
    assert!(
        text.contains("witnesses of the relay checkpoint:") && text.contains("(quorum)"),
        "{text}"
    );

    // The relay checkpoint as the record holds it, without its cosignatures: the record no
    // longer matches, and the relay's quorum is missing.
    let mut pack = Pack::decode(&bytes).unwrap();
    let bare = note.clone();
    pack.relay.checkpoint = bare.as_bytes();
    let found = items(&pack.to_cbor());
    assert!(
        found.iter().any(|i| i == "relay log checkpoint witnesses"),
        "{found:?}"
    );
    assert!(!found.iter().any(|i| i == "signer log checkpoint witnesses"));
}
