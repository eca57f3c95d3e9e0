//! A signer's log built in software for the relay's tests: two releases (2.4.0, the rollback
//! target, and 2.4.1), a rollout plan signed by the test release key whose decisions digest is
//! right, every device's update and rollback manifests, some rejections, and gate approvals; and
//! the relay's configuration file.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::too_many_lines,
    clippy::unwrap_used,
    reason = "shared by several test binaries, each using part of it; a panic is the failure report"
)]

use std::path::Path;

use cairn_relay::broker::{Broker, RELAY_CLIENT};
use cairn_relay::{Config, Relay};
use cairn_vault::Vault;
use cairn_verifier::campaign::{Approval, ApprovalAction, RelayCheckpoint};
use cairn_verifier::crypto::Software;
use cairn_verifier::custody::SignedEntry;
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::LogKey;
use cairn_verifier::rollout::{Gate, Reason, Reasons, Rejection, RolloutPlan, Stage, Stages};
use cairn_verifier::statement::{Kind, Manifest, Purpose, ReleaseEntry};
use cairn_verifier::test_support::{Fixture, public_key, test_key};
use cairn_verifier::types::{Hash, Id, Name, UnixTime, Version};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

pub const ORIGIN: &str = "oem.example/cairn/log";
pub const TOKEN: &str = "operator token of the release team";
pub const CAMPAIGN: &str = "campaign-2026-11-2.4.1";
pub const RELEASE: &str = "controller-fw-2.4.1";
pub const ROLLBACK: &str = "controller-fw-2.4.0";
pub const DECIDED: UnixTime = UnixTime(1_795_651_200);

pub fn device(i: u64) -> String {
    format!("sc-{i:07}")
}

/// One stage: name, cumulative devices, soak, success ‰, failure ‰, approval gate.
pub type StageSpec = (&'static str, u64, u64, u16, u16, bool);

/// What the plan says besides its stages.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_attempts: u8,
    pub backoff_secs: u64,
    pub quarantine_after_failures: u8,
    pub quarantine_on_verification_failure: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_secs: 0,
            quarantine_after_failures: 5,
            quarantine_on_verification_failure: true,
        }
    }
}

/// The signer's log and what the devices need to check their deliveries.
pub struct SignerLog {
    pub vault: Vault,
    pub update_image: Vec<u8>,
    pub rollback_image: Vec<u8>,
    pub plan_digest: Hash,
    pub devices: Vec<String>,
}

fn id(s: &str) -> Id<'_> {
    Id::new(s).unwrap()
}

/// The test signer's log key, as the relay and the devices pin it.
pub fn log_key() -> LogKey<'static> {
    LogKey::new(
        ORIGIN,
        ORIGIN,
        public_key(&test_key(Fixture::LOG_KEY)),
        &Software,
    )
    .unwrap()
}

fn release_kid() -> Hash {
    public_key(&test_key(Fixture::RELEASE_KEY)).key_hash(&Software)
}

/// Builds the log in `dir`: `eligible` devices `sc-0000001…`, `rejected` more that are not.
pub fn signer_log(
    dir: &Path,
    eligible: u64,
    rejected: u64,
    stages: &[StageSpec],
    policy: Policy,
) -> SignerLog {
    signer_log_with_jobs(dir, eligible, rejected, stages, policy, None)
}

/// `signer_log` of one stage, `all`, of every eligible device (1,000 ‰ to succeed and to pause
/// at), with the default device policy.
pub fn single_stage(dir: &Path, eligible: u64, rejected: u64) -> SignerLog {
    signer_log(
        dir,
        eligible,
        rejected,
        &[("all", eligible, 0, 1000, 1000, false)],
        Policy::default(),
    )
}

/// `signer_log` with the plan's AWS IoT Jobs rollout controls (formats.md §4.9 key 17).
pub fn signer_log_with_jobs(
    dir: &Path,
    eligible: u64,
    rejected: u64,
    stages: &[StageSpec],
    policy: Policy,
    jobs: Option<cairn_verifier::rollout::jobs::JobsControls>,
) -> SignerLog {
    let f = Fixture::new();
    let mut spec = f.spec();
    spec.release_id = ROLLBACK;
    spec.version = Version::new(2, 4, 0);
    spec.image = vec![0x40; 4096];
    let rollback = f.build(&spec).release;
    let rollback_image = spec.image.clone();
    let mut spec = f.spec();
    spec.release_id = RELEASE;
    spec.version = Version::new(2, 4, 1);
    spec.image = vec![0x41; 4096];
    let release = f.build(&spec).release;
    let update_image = spec.image.clone();

    let devices: Vec<String> = (1..=eligible).map(device).collect();
    let mut decisions = Vec::new();
    for d in &devices {
        for (purpose, rel, max) in [
            (Purpose::Update, (RELEASE, &release), Version::new(2, 4, 0)),
            (
                Purpose::Rollback,
                (ROLLBACK, &rollback),
                Version::new(2, 4, 1),
            ),
        ] {
            decisions.push(
                Manifest {
                    device_id: id(d),
                    release_id: id(rel.0),
                    release_digest: Sha256::digest(rel.1).into(),
                    hardware_revision: id("rev-c"),
                    min_version: Version::new(2, 0, 0),
                    max_version: max,
                    campaign: id(CAMPAIGN),
                    purpose,
                    decided_at: DECIDED,
                    campaign_sequence: 1,
                }
                .to_cbor(),
            );
        }
    }
    for i in 0..rejected {
        let d = device(eligible + 1 + i);
        let mut reasons = Reasons::default();
        reasons.insert(Reason::CertificateRevoked);
        decisions.push(
            Rejection {
                device_id: id(&d),
                release_id: id(RELEASE),
                campaign: id(CAMPAIGN),
                reasons,
                decided_at: DECIDED,
            }
            .to_cbor(),
        );
    }
    let mut digest = Sha256::new();
    for d in &decisions {
        digest.update(leaf_hash(&Software, d));
    }
    let stages: Vec<Stage<'_>> = stages
        .iter()
        .map(|&(name, devices, soak, success, failure, approval)| Stage {
            name: id(name),
            devices,
            soak_secs: soak,
            success_permille: success,
            failure_permille: failure,
            gate: if approval {
                Gate::Approval
            } else {
                Gate::Automatic
            },
        })
        .collect();
    let plan = RolloutPlan {
        campaign: id(CAMPAIGN),
        release_id: id(RELEASE),
        release_digest: Sha256::digest(&release).into(),
        rollback_release_id: id(ROLLBACK),
        rollback_digest: Sha256::digest(&rollback).into(),
        stages: Stages::Slice(&stages),
        max_attempts: policy.max_attempts,
        backoff_secs: policy.backoff_secs,
        quarantine_after_failures: policy.quarantine_after_failures,
        quarantine_on_verification_failure: policy.quarantine_on_verification_failure,
        eligible,
        rejected,
        decisions_digest: digest.finalize().into(),
        created_at: DECIDED,
        campaign_sequence: 1,
        jobs,
    };
    let plan_cose = cairn_verifier::cose::write::sign(
        &plan.to_cbor(),
        &release_kid(),
        &test_key(Fixture::RELEASE_KEY),
    )
    .unwrap();
    let mut entries = vec![
        ReleaseEntry {
            cose_sign1: &rollback,
        }
        .to_cbor(),
        ReleaseEntry {
            cose_sign1: &release,
        }
        .to_cbor(),
        SignedEntry {
            kind: Kind::PLAN,
            cose_sign1: &plan_cose,
        }
        .to_cbor(),
    ];
    entries.extend(decisions);
    let vault = Vault::create(dir, ORIGIN).unwrap();
    vault.append(&entries).unwrap();
    vault
        .sign_checkpoint(&log_key(), &test_key(Fixture::LOG_KEY))
        .unwrap();
    SignerLog {
        vault,
        update_image,
        rollback_image,
        plan_digest: Sha256::digest(&plan_cose).into(),
        devices,
    }
}

impl SignerLog {
    /// Logs a gate approval signed by `key` (the release key, or another to test refusals).
    pub fn approve_with(&self, stage: u64, action: ApprovalAction, key: u8) {
        let approval = Approval {
            campaign: id(CAMPAIGN),
            plan_digest: self.plan_digest,
            stage,
            action,
            approved_at: UnixTime(DECIDED.0 + 60),
        };
        let cose =
            cairn_verifier::cose::write::sign(&approval.to_cbor(), &release_kid(), &test_key(key))
                .unwrap();
        let entry = SignedEntry {
            kind: Kind::APPROVAL,
            cose_sign1: &cose,
        }
        .to_cbor();
        self.vault
            .append_signed(&[entry], &log_key(), &test_key(Fixture::LOG_KEY))
            .unwrap();
    }

    /// Logs a gate approval signed by the release key.
    pub fn approve(&self, stage: u64, action: ApprovalAction) {
        self.approve_with(stage, action, Fixture::RELEASE_KEY);
    }

    /// Logs a kind-11 record of the relay log's latest checkpoint, as `cairn rollout
    /// record-state` does when the relay's device-state bundle comes back.
    pub fn record_relay(&self, relay: &cairn_relay::statelog::StateLog) {
        let note = relay.vault().latest_checkpoint().unwrap().unwrap();
        let entry = RelayCheckpoint {
            origin: Name::new(relay.origin()).unwrap(),
            relay_key: relay.public_key(),
            checkpoint: note.as_bytes(),
            recorded_at: UnixTime(DECIDED.0 + 120),
        }
        .to_cbor();
        self.vault
            .append_signed(&[entry], &log_key(), &test_key(Fixture::LOG_KEY))
            .unwrap();
    }
}

/// Writes `relay.toml` in `dir` (keys as PEM beside it) and loads it.
pub fn config(dir: &Path, extra: &str) -> Config {
    for (name, key) in [
        ("log.pub.pem", Fixture::LOG_KEY),
        ("release.pub.pem", Fixture::RELEASE_KEY),
    ] {
        let pem = p256::ecdsa::VerifyingKey::from(&test_key(key))
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let token = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
             [log]\norigin = \"{ORIGIN}\"\nkey = \"log.pub.pem\"\nrelease_key = \"release.pub.pem\"\n\
             [operators]\nalice = \"{token}\"\n{extra}"
        ),
    )
    .unwrap();
    Config::load(&path).unwrap()
}

/// `config`, with the relay linked over MQTT/TLS to `broker` under its own client certificate,
/// without AWS IoT Core's publish limit (the local Mosquitto has none; docs/relay.md).
pub fn mqtt_config(dir: &Path, broker: &Broker, extra: &str) -> Config {
    let relay = broker.client(RELAY_CLIENT).unwrap();
    config(
        dir,
        &format!(
            "[broker]\nmax_publishes_per_sec = 0\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
            broker.port(),
            broker.ca().display(),
            relay.cert.display(),
            relay.key.display()
        ),
    )
}

/// Carries the signer's log over from where the relay's mirror stands, as a transfer bundle, and
/// lets the engine take it up (the HTTP import path is tested in api.rs).
pub fn transfer(relay: &Relay, signer: &Vault) {
    let bundle = signer.export_bundle(relay.vault().size()).unwrap();
    relay.vault().import_bundle(&bundle, &log_key()).unwrap();
    relay
        .engine()
        .on_mirror(relay.vault(), cairn_relay::engine::now())
        .unwrap();
}

/// Waits until `done`, for at most `seconds`.
pub fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(seconds),
            "timed out after {seconds} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
