//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/` (or the directory given
//! as the first argument): valid deliveries built from the test fixture and each of their parts.
//! Seeds are generated, not committed, so they always match the current formats.
//!
//! Run with `cargo run --manifest-path fuzz/Cargo.toml --no-default-features --bin seeds`
//! (`tools/fuzz-smoke` does).

use std::path::{Path, PathBuf};
use std::{env, fs, io};

use cairn_verifier::boot::{DeviceIdentity, MemoryImage, StoredState, verify_delivery};
use cairn_verifier::cbor::write::Writer;
use cairn_verifier::cose::CoseSign1;
use cairn_verifier::crypto::{Signature, Software, raw_to_der};
use cairn_verifier::note::LogKey;
use cairn_verifier::note::write::{body, sign};
use cairn_verifier::statement::ReleaseEntry;
use cairn_verifier::test_support::{
    DEVICE, Fixture, HARDWARE, ORIGIN, Parts, Spec, cosign, filler_leaf, public_key, root_and_path,
};
use cairn_verifier::types::{TreeSize, Version};

struct Corpus {
    root: PathBuf,
    written: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("seed-{name}")), bytes)?;
        self.written += 1;
        Ok(())
    }

    /// A delivery and all its parts, each into the corpus of the target that decodes it.
    fn delivery(&mut self, name: &str, parts: &Parts) -> io::Result<()> {
        let delivery = parts.encode();
        self.put("delivery", name, &delivery)?;
        self.put("boot_check", name, &delivery)?;
        self.put("checkpoint", name, parts.checkpoint.as_bytes())?;
        self.put("cose_sign1", name, &parts.release)?;
        self.put("manifest", name, &parts.manifest)?;
        self.put("entry_header", &format!("{name}-manifest"), &parts.manifest)?;
        let entry = ReleaseEntry {
            cose_sign1: &parts.release,
        }
        .to_cbor();
        self.put("entry_header", &format!("{name}-release"), &entry)?;
        self.put("cbor_raw_item", &format!("{name}-delivery"), &delivery)?;
        self.put(
            "cbor_raw_item",
            &format!("{name}-manifest"),
            &parts.manifest,
        )?;
        self.put("cbor_raw_item", &format!("{name}-release-entry"), &entry)?;
        if let Ok(cose) = CoseSign1::decode(&parts.release) {
            self.put("release_statement", name, cose.payload)?;
            self.put("cbor_raw_item", &format!("{name}-statement"), cose.payload)?;
            self.put("cbor_raw_item", &format!("{name}-cose"), &parts.release)?;
            self.put(
                "cbor_raw_item",
                &format!("{name}-protected"),
                cose.protected,
            )?;
            self.der(&format!("{name}-cose"), &cose.signature)?;
        }
        Ok(())
    }

    fn der(&mut self, name: &str, signature: &Signature) -> io::Result<()> {
        let mut der = [0u8; 72];
        let n = raw_to_der(signature, &mut der);
        self.put("der_signature", name, &der[..n])
    }
}

/// How a seed delivery differs from the reference one.
type Variant = (&'static str, fn(&mut Spec));

/// Variants that each stop the boot check at a different step or take another path through the
/// decoders.
const VARIANTS: [Variant; 10] = [
    ("one-leaf", |s| {
        s.tree_size = 1;
        s.index = 0;
    }),
    ("deep-tree", |s| {
        s.tree_size = 5000;
        s.index = 4321;
    }),
    ("unknown-log-key", |s| s.log_key = 9),
    ("unknown-release-key", |s| s.release_key = 9),
    ("not-for-release", |s| {
        s.release_digest_override = Some([7; 32]);
    }),
    ("other-device", |s| {
        s.device_id = "dev-000002";
        s.min_version = Version::new(0, 0, 0);
        s.max_version = Version::new(u32::MAX, u32::MAX, u32::MAX);
    }),
    ("other-product", |s| s.product = "Smart Sensor"),
    ("other-hardware", |s| s.hardware_revision = "rev-b"),
    ("version-window", |s| {
        s.min_version = Version::new(3, 0, 0);
        s.max_version = Version::new(3, 0, 0);
    }),
    ("other-image", |s| {
        s.image = b"not the image in flash".to_vec();
    }),
];

fn main() -> io::Result<()> {
    let root = env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        PathBuf::from,
    );
    let mut corpus = Corpus { root, written: 0 };
    let fixture = Fixture::new();
    deliveries(&mut corpus, &fixture)?;
    checkpoints(&mut corpus, &fixture)?;
    der_edges(&mut corpus)?;
    cbor_items(&mut corpus)?;
    custody(&mut corpus)?;
    bundles(&mut corpus)?;
    rollout(&mut corpus)?;
    pack(&mut corpus)?;
    mcuboot(&mut corpus, &fixture)?;
    relay_inputs(&mut corpus)?;
    plan_files(&mut corpus)?;
    println!(
        "seeds: wrote {} seeds into {}",
        corpus.written,
        corpus.root.display()
    );
    Ok(())
}

/// The reference delivery, which the boot check must accept (or the `boot_check` target would never
/// get past its first failure), then the [`VARIANTS`].
fn deliveries(corpus: &mut Corpus, fixture: &Fixture) -> io::Result<()> {
    let spec = fixture.spec();
    let valid = fixture.build(&spec);
    let valid_bytes = valid.encode();
    let device = DeviceIdentity {
        device_id: DEVICE,
        product: spec.product,
        family: spec.family,
        hardware_revision: HARDWARE,
        current_version: spec.min_version,
    };
    verify_delivery(
        &valid_bytes,
        &fixture.anchors(),
        &device,
        &StoredState::default(),
        &mut MemoryImage(&fixture.image),
        &Software,
    )
    .map_err(|e| io::Error::other(format!("the valid seed delivery is rejected: {e}")))?;
    corpus.delivery("valid", &valid)?;
    for (name, change) in VARIANTS {
        let mut variant = spec.clone();
        change(&mut variant);
        corpus.delivery(name, &fixture.build(&variant))?;
    }
    Ok(())
}

/// A checkpoint with extension lines, and the same with a second (witness) signature line.
fn checkpoints(corpus: &mut Corpus, fixture: &Fixture) -> io::Result<()> {
    let (root, _) = root_and_path((0..3).map(filler_leaf).collect(), 0);
    let text = body(ORIGIN, TreeSize(3), &root, &["ext one", "ext:two"]);
    let signed = |name: &str, key| {
        let pinned = LogKey::new(ORIGIN, name, public_key(key), &Software)
            .ok_or_else(|| io::Error::other("test log key rejected"))?;
        sign(&text, &pinned, key).map_err(io::Error::other)
    };
    let note = signed(ORIGIN, &fixture.log_key)?;
    corpus.put("checkpoint", "extensions", note.as_bytes())?;
    let witness = signed("witness.test", &fixture.release_key)?;
    let witness_line = witness.rsplit_once("\n\n").map_or("", |(_, line)| line);
    corpus.put(
        "checkpoint",
        "witnessed",
        format!("{note}{witness_line}").as_bytes(),
    )?;
    // Cosigned by witnesses 0 and 2 of the fixture's 2-of-3 policy (a quorum), and by 1 only.
    let plain = fixture.build(&fixture.spec()).checkpoint;
    let two = cosign(&cosign(&plain, 0, 1_795_000_500), 2, 1_795_000_501);
    corpus.put("cosignature", "quorum", two.as_bytes())?;
    corpus.put(
        "cosignature",
        "one",
        cosign(&plain, 1, 1_795_000_500).as_bytes(),
    )?;
    corpus.put("cosignature", "log-only", plain.as_bytes())?;
    let proof = [[0x11u8; 32], [0x22; 32]];
    corpus.put(
        "witness_request",
        "grow",
        cairn_verifier::tlog_witness::write::add_checkpoint(5, &proof, &two).as_bytes(),
    )?;
    corpus.put(
        "witness_request",
        "first",
        cairn_verifier::tlog_witness::write::add_checkpoint(0, &[], &plain).as_bytes(),
    )
}

/// DER signatures at the edges: smallest scalars, both needing the sign pad, leading zero bytes.
fn der_edges(corpus: &mut Corpus) -> io::Result<()> {
    let mut edges = [[0u8; 64]; 4];
    edges[0][31] = 1;
    edges[0][63] = 1;
    edges[1] = [0xff; 64];
    edges[2][5] = 1;
    edges[2][32] = 0x7f;
    edges[3] = [0x80; 64];
    for (i, raw) in edges.into_iter().enumerate() {
        corpus.der(&format!("edge-{i}"), &Signature(raw))?;
    }
    Ok(())
}

/// Small CBOR items of every supported major type and head width (with a trailing item).
fn cbor_items(corpus: &mut Corpus) -> io::Result<()> {
    let mut w = Writer::new();
    w.array(5)
        .u64(23)
        .u64(24)
        .i64(-257)
        .map(1)
        .u64(0)
        .tag(18)
        .bytes(&[0xaa; 3])
        .text("é")
        .array(1)
        .u64(u64::MAX);
    corpus.put("cbor_raw_item", "all-majors", &w.into_bytes())
}

/// A ceremony record, session records and key statements (formats.md §4.5-4.7).
fn custody(corpus: &mut Corpus) -> io::Result<()> {
    use cairn_verifier::custody::{
        CeremonyRecord, KeyAction, KeyRole, KeyStatement, SessionRecord, TokenSetup,
    };
    use cairn_verifier::types::{Name, TextList, UnixTime};
    let name = |s| Name::new(s).expect("seed names are valid");
    let custodians = ["alice", "bob", "carol", "dave", "erin"];
    let cert = [0x30u8; 300];
    let record = CeremonyRecord {
        ceremony_id: [7; 16],
        performed_at: UnixTime(1_795_651_200),
        threshold: 3,
        custodians: TextList::Slice(&custodians),
        token: name("cairn"),
        origin: name(ORIGIN),
        root_certificate: &cert,
        release_certificate: &cert,
        log_certificate: &cert,
        software: name("cairn (cairn 0.1.0)"),
        software_digest: [9; 32],
        token_setup: TokenSetup::Initialised,
    };
    corpus.put("custody", "ceremony", &record.to_cbor())?;
    let adopted = CeremonyRecord {
        token_setup: TokenSetup::AdoptedPinRotated,
        ..record
    };
    corpus.put("custody", "ceremony-adopted", &adopted.to_cbor())?;
    let session = SessionRecord {
        ceremony_id: [7; 16],
        opened_at: UnixTime(1_795_651_300),
        custodians: TextList::Slice(&custodians[..3]),
        purpose: name("release sign controller-fw-2.4.1"),
    };
    corpus.put("custody", "session", &session.to_cbor())?;
    corpus.put("entry_header", "session", &session.to_cbor())?;
    for (tag, action, certificate) in [
        ("rotate", KeyAction::Rotate, &cert[..]),
        ("revoke", KeyAction::Revoke, &[][..]),
    ] {
        let statement = KeyStatement {
            ceremony_id: [7; 16],
            action,
            role: KeyRole::Release,
            key_id: [3; 32],
            new_certificate: certificate,
            reason: name("scheduled rotation"),
            issued_at: UnixTime(1_795_651_400),
        };
        corpus.put("custody", tag, &statement.to_cbor())?;
    }
    Ok(())
}

/// Transfer bundles of session records, signed with the fixture's log key, from 0 and from 2.
fn bundles(corpus: &mut Corpus) -> io::Result<()> {
    use cairn_verifier::custody::SessionRecord;
    use cairn_verifier::merkle::leaf_hash;
    use cairn_verifier::test_support::{consistency_proof, mth, test_key};
    use cairn_verifier::transfer::{TransferBundle, edge_sizes};
    use cairn_verifier::types::{Name, TextList, UnixTime};
    let names = ["alice", "bob"];
    let entries: Vec<Vec<u8>> = (0..5u64)
        .map(|i| {
            SessionRecord {
                ceremony_id: [7; 16],
                opened_at: UnixTime(1_795_651_200 + i),
                custodians: TextList::Slice(&names),
                purpose: Name::new("release sign").expect("valid"),
            }
            .to_cbor()
        })
        .collect();
    let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(&Software, e)).collect();
    let key_pair = test_key(Fixture::LOG_KEY);
    let key = LogKey::new(ORIGIN, ORIGIN, public_key(&key_pair), &Software).expect("fixture key");
    let note = sign(
        &body(ORIGIN, TreeSize(5), &mth(&leaves), &[]),
        &key,
        &key_pair,
    )
    .expect("signing");
    for from in [0usize, 2] {
        let left_edge = edge_sizes(from as u64)
            .map(|(start, n)| mth(&leaves[start as usize..(start + n) as usize]))
            .collect();
        let bundle = TransferBundle {
            origin: ORIGIN.into(),
            from: from as u64,
            left_edge,
            entries: entries[from..].to_vec(),
            checkpoint: note.clone(),
            consistency: if from == 0 {
                Vec::new()
            } else {
                consistency_proof(&leaves, from)
            },
        };
        corpus.put(
            "transfer_bundle",
            &format!("from-{from}"),
            &bundle.to_cbor(),
        )?;
    }
    Ok(())
}

/// A rejection and a rollout plan (formats.md §4.8-4.9).
fn rollout(corpus: &mut Corpus) -> io::Result<()> {
    use cairn_verifier::rollout::{Gate, Reason, Reasons, Rejection, RolloutPlan, Stage, Stages};
    use cairn_verifier::rollout::jobs::{
        AbortCriterion, ExponentialRate, FailureType, JobsControls, RateIncrease, RetryCriterion,
    };
    use cairn_verifier::types::{Id, UnixTime};
    let id = |s| Id::new(s).expect("seed ids are valid");
    let mut reasons = Reasons::default();
    reasons.insert(Reason::CertificateExpired);
    reasons.insert(Reason::WrongHardware);
    let rejection = Rejection {
        device_id: id("sc-0000050"),
        release_id: id("controller-fw-2.4.1"),
        campaign: id("campaign-2026-11-2.4.1"),
        reasons,
        decided_at: UnixTime(1_795_651_200),
    };
    corpus.put("rollout", "rejection", &rejection.to_cbor())?;
    corpus.put("entry_header", "rejection", &rejection.to_cbor())?;
    let stages = [
        Stage {
            name: id("canary"),
            devices: 50,
            soak_secs: 3600,
            success_permille: 980,
            failure_permille: 20,
            gate: Gate::Approval,
        },
        Stage {
            name: id("fleet"),
            devices: 8203,
            soak_secs: 0,
            success_permille: 950,
            failure_permille: 50,
            gate: Gate::Automatic,
        },
    ];
    let plan = RolloutPlan {
        campaign: id("campaign-2026-11-2.4.1"),
        release_id: id("controller-fw-2.4.1"),
        release_digest: [1; 32],
        rollback_release_id: id("controller-fw-2.4.0"),
        rollback_digest: [2; 32],
        stages: Stages::Slice(&stages),
        max_attempts: 3,
        backoff_secs: 600,
        quarantine_after_failures: 2,
        quarantine_on_verification_failure: true,
        eligible: 8203,
        rejected: 197,
        decisions_digest: [3; 32],
        created_at: UnixTime(1_795_651_200),
        campaign_sequence: 1,
        jobs: None,
    };
    corpus.put("rollout", "plan", &plan.to_cbor())?;
    // The same plan with every AWS IoT Jobs rollout control (key 17).
    let controls = JobsControls {
        maximum_per_minute: Some(1000),
        exponential_rate: Some(ExponentialRate {
            base_per_minute: 50,
            increment_tenths: 20,
            increase: RateIncrease::Succeeded(100),
        }),
        in_progress_timeout_minutes: Some(60),
        abort: [
            Some(AbortCriterion {
                failure_type: FailureType::Failed,
                threshold_hundredths: 1000,
                min_executed: 100,
            }),
            None,
            None,
            Some(AbortCriterion {
                failure_type: FailureType::All,
                threshold_hundredths: 2550,
                min_executed: 50,
            }),
        ],
        retry: [
            Some(RetryCriterion {
                failure_type: FailureType::Failed,
                retries: 2,
            }),
            Some(RetryCriterion {
                failure_type: FailureType::TimedOut,
                retries: 1,
            }),
        ],
    };
    let plan = RolloutPlan {
        jobs: Some(controls),
        ..plan
    };
    corpus.put("rollout", "plan-jobs", &plan.to_cbor())?;
    Ok(())
}

/// An evidence pack (docs/audit.md): two runs in the signer section, one in the relay's.
fn pack(corpus: &mut Corpus) -> io::Result<()> {
    use cairn_verifier::pack::{Pack, RetentionRecord, Run, Section};
    use cairn_verifier::types::UnixTime;
    let entry: &[u8] = &[0xa2, 0x00, 0x01, 0x01, 0x04];
    let pack = Pack {
        campaign: "c-1",
        generated_at: UnixTime(1_795_651_200),
        certificates: vec![("root", &[0x30, 0x00][..])],
        retention: vec![RetentionRecord {
            release: "r-1",
            support_until: UnixTime(1),
            retain_until: UnixTime(2),
        }],
        signer: Section {
            origin: ORIGIN,
            checkpoint: b"o\n3\nAAAA\n\n",
            runs: vec![
                Run {
                    start: 0,
                    entries: vec![([1; 32], entry)],
                },
                Run {
                    start: 2,
                    entries: vec![([2; 32], entry)],
                },
            ],
            proof: vec![[3; 32]],
        },
        relay: Section {
            origin: "o/relay",
            checkpoint: b"o/relay\n1\nAAAA\n\n",
            runs: vec![Run {
                start: 0,
                entries: vec![([4; 32], entry)],
            }],
            proof: Vec::new(),
        },
    };
    corpus.put("pack_proof", "small", &pack.to_cbor())?;
    corpus.put("pack", "small", &pack.to_cbor())
}

/// MCUboot images: 0, 1 and 6 KiB of firmware, padded to a slot, and with the header's counter
/// missing (so the parser's paths past the header all have a seed).
fn mcuboot(corpus: &mut Corpus, fixture: &Fixture) -> io::Result<()> {
    use cairn_verifier::mcuboot::ImageVersion;
    use cairn_verifier::mcuboot::write::Layout;
    use cairn_verifier::test_support::{mcuboot_image, mcuboot_image_with};
    let v = ImageVersion {
        major: 2,
        minor: 4,
        revision: 1,
        build: 0,
    };
    let key = Fixture::RELEASE_KEY;
    corpus.put("mcuboot", "empty", &mcuboot_image(&[], v, Some(3), key))?;
    corpus.put("mcuboot", "one-byte", &mcuboot_image(&[1], v, Some(3), key))?;
    corpus.put(
        "mcuboot",
        "fixture",
        &mcuboot_image(&fixture.image, v, Some(3), key),
    )?;
    corpus.put(
        "mcuboot",
        "no-counter",
        &mcuboot_image(&[1, 2], v, None, key),
    )?;
    let padded = Layout {
        header_size: 32,
        slot_size: Some(0x1000),
        pad: true,
        ..Layout::default()
    };
    corpus.put(
        "mcuboot",
        "padded",
        &mcuboot_image_with(&[7; 100], &padded, v, Some(3), key),
    )
}

/// What the relay parses from the network and its operator: MQTT status reports with their
/// topics, AWS IoT Jobs requests (topic tail, NUL, payload) and a configuration file.
fn relay_inputs(corpus: &mut Corpus) -> io::Result<()> {
    use cairn_verifier::campaign::{Outcome, StatusReport};
    use cairn_verifier::types::Id;
    let id = |s| Id::new(s).expect("seed ids are valid");
    for (name, outcome, detail) in [
        ("installed", Outcome::Installed, "ok"),
        ("refused", Outcome::VerificationFailed, "image-digest"),
    ] {
        let report = StatusReport {
            campaign: id("campaign-2026-11-2.4.1"),
            release_id: id("controller-fw-2.4.1"),
            outcome,
            detail: id(detail),
            sequence: 3,
        };
        let mut message = b"cairn/sc-0000001/status\0".to_vec();
        message.extend_from_slice(&report.to_cbor());
        corpus.put("status_report", name, &message)?;
    }
    for (name, request) in [
        ("get", &b"get\0"[..]),
        ("start-next", b"start-next\0{\"clientToken\":\"t-1\",\"stepTimeoutInMinutes\":5}"),
        (
            "describe",
            b"$next/get\0{\"includeJobDocument\":true,\"executionNumber\":1}",
        ),
        (
            "update",
            b"campaign-1_fw-2-0a1b2c3d/update\0{\"status\":\"IN_PROGRESS\",\"expectedVersion\":2,\
              \"statusDetails\":{\"step\":\"download\",\"progress\":\"40\"},\"clientToken\":\"x\"}",
        ),
        (
            "update-failed",
            b"job-7/update\0{\"status\":\"FAILED\",\"statusDetails\":{\"reason\":\"image-digest\"}}",
        ),
    ] {
        corpus.put("jobs_request", name, request)?;
    }
    let token = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    corpus.put(
        "relay_config",
        "plain",
        format!(
            "listen = \"127.0.0.1:8080\"\ndata_dir = \"data\"\n\
             [log]\norigin = \"oem.example/cairn/log\"\nkey = \"log.pub.pem\"\n\
             release_key = \"release.pub.pem\"\n[operators]\nalice = \"{token}\"\n"
        )
        .as_bytes(),
    )?;
    corpus.put(
        "relay_config",
        "full",
        format!(
            "listen = \"[::1]:8443\"\ndata_dir = \"/srv/relay\"\n\
             [log]\norigin = \"oem.example/cairn/log\"\nkey = \"log.pem\"\n\
             release_key = \"/etc/release.pem\"\n\
             [operators]\nalice = \"{token}\"\nbob.ops = \"{token}\"\n\
             [mqtt]\nhost = \"a1.iot.eu-west-1.amazonaws.com\"\nport = 8883\nca = \"ca.pem\"\n\
             cert = \"relay.pem\"\nkey = \"relay.key\"\njobs = true\n\
             [rollout]\nmax_deliveries_per_sec = 100\ntick_millis = 50\n\
             [http]\ntls_cert = \"tls.pem\"\ntls_key = \"tls.key\"\npublic = [\"state\", \"metrics\"]\n\
             max_bundle_bytes = 1048576\nmax_auth_failures = 5\n"
        )
        .as_bytes(),
    )?;
    Ok(())
}

/// The plan files of docs/examples: the reference plan, the demo's, and the reference plan with
/// the `[jobs]` section appended as that example says.
fn plan_files(corpus: &mut Corpus) -> io::Result<()> {
    const PLAN: &str = include_str!("../../../docs/examples/plan-2.4.1.toml");
    const DEMO: &str = include_str!("../../../docs/examples/plan-2.4.1-demo.toml");
    const JOBS: &str = include_str!("../../../docs/examples/jobs-controls.toml");
    corpus.put("plan_spec", "reference", PLAN.as_bytes())?;
    corpus.put("plan_spec", "demo", DEMO.as_bytes())?;
    corpus.put("plan_spec", "jobs", format!("{PLAN}\n{JOBS}").as_bytes())
}
