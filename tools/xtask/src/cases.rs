//! The deliveries the Cortex-M33 firmware checks: one valid, one per rejection reason of the boot
//! check, a depth-20 proof for measurement, and the installed-image re-check. Built with the
//! verifier's test fixture (fixed test keys) and written as a Rust file the firmware includes.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use cairn_verifier::boot::{Installed, StoredState};
use cairn_verifier::cose::{self, CoseSign1};
use cairn_verifier::crypto::{Crypto, PublicKey, Signature, Software};
use cairn_verifier::merkle::inclusion_proof_len;
use cairn_verifier::note;
use cairn_verifier::statement::ReleaseStatement;
use cairn_verifier::test_support::{self, Fixture, Parts, Spec, public_key};
use cairn_verifier::types::{Hash, SecurityEpoch, TreeSize, Version};

/// The device a case runs as.
#[derive(Debug, Clone)]
#[expect(
    clippy::struct_field_names,
    reason = "mirrors the verifier's DeviceIdentity"
)]
pub(crate) struct Device {
    pub(crate) device_id: &'static str,
    pub(crate) product: &'static str,
    pub(crate) family: &'static str,
    pub(crate) hardware_revision: &'static str,
    pub(crate) current_version: Version,
}

/// What a case checks on the device.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    /// `verify_delivery`.
    Delivery {
        delivery: Vec<u8>,
        image: Vec<u8>,
        device: Device,
        state: StoredState,
        /// Checked by a device with the fixture's 2-of-3 witness policy.
        witnessed: bool,
    },
    /// `verify_installed`.
    Installed { image: Vec<u8>, state: StoredState },
    /// A SHA-256-only pass over an image in `CHUNK`s (`boot::check_image`): the floor the
    /// boot check of an image that size is measured against.
    Sha256 { image: Vec<u8>, digest: Hash },
    /// One `Crypto::verify_ed25519` call on the backend.
    Ed25519 {
        key: [u8; 32],
        message: Vec<u8>,
        signature: [u8; 64],
    },
    /// One `Crypto::verify_p256` call on the backend.
    Verify {
        key: [u8; 64],
        digest: Hash,
        signature: [u8; 64],
    },
    /// A DER signature through `crypto::der_to_raw`, then `verify_p256` (Wycheproof).
    VerifyDer {
        key: [u8; 64],
        digest: Hash,
        der: Vec<u8>,
    },
    /// A raw signature, refused unless exactly 64 bytes, then `verify_p256` (Wycheproof P1363).
    VerifyRaw {
        key: [u8; 64],
        digest: Hash,
        signature: Vec<u8>,
    },
}

/// One case.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) check: Check,
    /// "accept" or an `Error::code()`; "valid" or "invalid" for `Verify`.
    pub(crate) expect: &'static str,
}

/// Index of the manifest in the depth-20 case's tree of 2^20 entries.
pub(crate) const DEPTH20_INDEX: u64 = 777_777;
/// Name of the case used for the instruction count of a whole boot check.
pub(crate) const MEASURE_CASE: &str = "valid-depth20";

pub(crate) fn default_device() -> Device {
    Device {
        device_id: test_support::DEVICE,
        product: "Smart Controller",
        family: "STM32H5",
        hardware_revision: test_support::HARDWARE,
        current_version: Version::new(2, 3, 0),
    }
}

/// Builds every case.
#[expect(
    clippy::too_many_lines,
    reason = "a flat list of cases reads best in one place"
)]
pub(crate) fn all(f: &Fixture) -> Result<Vec<Case>> {
    let spec = f.spec();
    let valid = f.build(&spec);
    let image = f.image.clone();
    let state = StoredState::default();
    let mut cases = Vec::new();
    let mut push =
        |name, parts: &Parts, image: &[u8], device: Device, state: StoredState, expect| {
            let check = Check::Delivery {
                delivery: parts.encode(),
                image: image.to_vec(),
                device,
                state,
                witnessed: false,
            };
            cases.push(Case {
                name,
                check,
                expect,
            });
        };

    push("valid", &valid, &image, default_device(), state, "accept");

    let mut s = spec.clone();
    s.tree_size = 1 << 20;
    s.index = DEPTH20_INDEX;
    ensure!(
        inclusion_proof_len(s.index, s.tree_size) == 20,
        "depth-20 case has another depth"
    );
    push(
        MEASURE_CASE,
        &f.build(&s),
        &image,
        default_device(),
        state,
        "accept",
    );

    let mut p = valid.clone();
    p.checkpoint = p.checkpoint.replacen('\n', "\n0", 1); // size line gets a leading zero
    push(
        "malformed-checkpoint",
        &p,
        &image,
        default_device(),
        state,
        "malformed-checkpoint",
    );

    let mut s = spec.clone();
    s.origin = "cairn.test/another-log";
    push(
        "checkpoint-origin",
        &f.build(&s),
        &image,
        default_device(),
        state,
        "checkpoint-origin",
    );

    let mut s = spec.clone();
    s.log_key = 3;
    push(
        "checkpoint-key-missing",
        &f.build(&s),
        &image,
        default_device(),
        state,
        "checkpoint-key-missing",
    );

    // The pinned key's signature, but over a different text (the next tree size).
    let mut p = valid.clone();
    p.checkpoint = resign_other_text(f, &valid.checkpoint)?;
    push(
        "checkpoint-signature",
        &p,
        &image,
        default_device(),
        state,
        "checkpoint-signature",
    );

    let behind = StoredState {
        checkpoint_size: TreeSize(spec.tree_size + 1),
        ..state
    };
    push(
        "checkpoint-stale",
        &valid,
        &image,
        default_device(),
        behind,
        "checkpoint-stale",
    );

    let mut p = valid.clone();
    p.proof[0][0] ^= 1;
    push(
        "not-included",
        &p,
        &image,
        default_device(),
        state,
        "not-included",
    );

    let mut s = spec.clone();
    s.release_key = 3;
    push(
        "release-key-unknown",
        &f.build(&s),
        &image,
        default_device(),
        state,
        "release-key-unknown",
    );

    let mut p = valid.clone();
    p.release = change_payload_keep_signature(&valid.release)?;
    push(
        "release-signature",
        &p,
        &image,
        default_device(),
        state,
        "release-signature",
    );

    let mut s = spec.clone();
    s.release_digest_override = Some([0x55; 32]);
    push(
        "manifest-not-for-release",
        &f.build(&s),
        &image,
        default_device(),
        state,
        "manifest-not-for-release",
    );

    let mut s = spec.clone();
    s.device_id = "dev-000002";
    push(
        "wrong-device",
        &f.build(&s),
        &image,
        default_device(),
        state,
        "wrong-device",
    );

    let mut s = spec.clone();
    s.family = "STM32U5";
    push(
        "wrong-device-class",
        &f.build(&s),
        &image,
        default_device(),
        state,
        "wrong-device-class",
    );

    let device = Device {
        hardware_revision: "rev-a",
        ..default_device()
    };
    push(
        "wrong-hardware-revision",
        &valid,
        &image,
        device,
        state,
        "wrong-hardware-revision",
    );

    let device = Device {
        current_version: Version::new(1, 9, 0),
        ..default_device()
    };
    push(
        "version-out-of-range",
        &valid,
        &image,
        device,
        state,
        "version-out-of-range",
    );

    let newer = StoredState {
        security_epoch: SecurityEpoch(spec.security_epoch + 1),
        ..state
    };
    push(
        "security-epoch-rollback",
        &valid,
        &image,
        default_device(),
        newer,
        "security-epoch-rollback",
    );

    let mut longer = image.clone();
    longer.push(0);
    push(
        "image-size",
        &valid,
        &longer,
        default_device(),
        state,
        "image-size",
    );

    let mut tampered = image.clone();
    tampered[image.len() / 2] ^= 0x80;
    push(
        "image-digest",
        &valid,
        &tampered,
        default_device(),
        state,
        "image-digest",
    );

    replay_cases(f, &image, &mut push);

    // Later boots: only the installed image's digest is checked again.
    let installed = StoredState {
        checkpoint_size: TreeSize(spec.tree_size),
        security_epoch: SecurityEpoch(spec.security_epoch),
        campaign_floor: spec.campaign_sequence,
        installed: Some(Installed {
            image_digest: Software.sha256_of(&[&image]),
            image_size: image.len() as u64,
            version: spec.version,
            security_epoch: SecurityEpoch(spec.security_epoch),
            delivery_digest: Software.sha256_of(&[&valid.encode()]),
            campaign_sequence: spec.campaign_sequence,
        }),
    };
    let mut truncated = valid.encode();
    truncated.truncate(truncated.len() / 2);
    let check = Check::Delivery {
        delivery: truncated,
        image: image.clone(),
        device: default_device(),
        state,
        witnessed: false,
    };
    cases.push(Case {
        name: "malformed-delivery",
        check,
        expect: "malformed",
    });

    let mut recheck = |name, image: &[u8], state, expect| {
        cases.push(Case {
            name,
            check: Check::Installed {
                image: image.to_vec(),
                state,
            },
            expect,
        });
    };
    recheck("installed-recheck", &image, installed, "accept");
    recheck(
        "installed-recheck-tampered",
        &tampered,
        installed,
        "image-digest",
    );
    recheck(
        "installed-recheck-nothing",
        &image,
        state,
        "nothing-installed",
    );

    cases.extend(conformance(f)?);
    cases.extend(crate::witness_cases::all(f)?);
    Ok(cases)
}

/// Downgrade by replay (formats.md §5.1): a device that installed the fixture campaign's update
/// (sequence `s`, floor `s`) and now runs 2.4.1. Each delivery is proven against a fresh
/// checkpoint, as a replayer would build it from the public log.
fn replay_cases(
    f: &Fixture,
    image: &[u8],
    push: &mut impl FnMut(&'static str, &Parts, &[u8], Device, StoredState, &'static str),
) {
    let seq = test_support::CAMPAIGN_SEQUENCE;
    let installed = f.installed_state(seq, seq);
    let on_241 = Device {
        current_version: Version::new(2, 4, 1),
        ..default_device()
    };
    // The campaign's own rollback while it is the newest of its class: installs.
    let live = Spec {
        floor_line: Some(seq),
        ..f.rollback_spec()
    };
    push(
        "live-rollback",
        &f.build(&live),
        image,
        on_241.clone(),
        installed,
        "accept",
    );
    // The same rollback manifest after a later plan closed the campaign (floor line seq + 1).
    let closed = Spec {
        floor_line: Some(seq + 1),
        ..f.rollback_spec()
    };
    push(
        "replayed-rollback-after-close",
        &f.build(&closed),
        image,
        on_241.clone(),
        installed,
        "stale-decision",
    );
    // An older campaign's update whose window covers 2.4.1.
    let older = Spec {
        campaign_sequence: seq - 1,
        max_version: Version::new(2, 4, 1),
        floor_line: Some(seq),
        ..f.spec()
    };
    push(
        "replayed-update-older-campaign",
        &f.build(&older),
        image,
        on_241,
        installed,
        "stale-decision",
    );
}

/// The P-256 group order n (FIPS 186-5 / SEC 2).
const N: [u8; 32] = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/// The P-256 field prime p.
const P: [u8; 32] = hex32("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// `a - b` for 256-bit big-endian numbers (`a >= b`).
fn sub256(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256).to_le_bytes()[0];
    }
    out
}

/// ECDSA edge cases every backend must answer like the portable one: the expected verdict is what
/// `Software` answers on the host, and the obvious ones are checked against intuition too.
fn conformance(f: &Fixture) -> Result<Vec<Case>> {
    type Row = (&'static str, [u8; 64], Hash, [u8; 64], Option<bool>);
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let digest = Software.sha256_of(&[b"cairn backend conformance"]);
    let sig: p256::ecdsa::Signature = f.log_key.sign_prehash(&digest)?;
    let good: [u8; 64] = sig.to_bytes().into();
    let key = public_key(&f.log_key).0;
    let other = public_key(&f.release_key).0;
    let (r, s): ([u8; 32], [u8; 32]) = (good[..32].try_into()?, good[32..].try_into()?);
    let join = |r: [u8; 32], s: [u8; 32]| -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&r);
        out[32..].copy_from_slice(&s);
        out
    };
    let mut off_curve = key;
    off_curve[63] ^= 1;
    let mut x_is_p = key;
    x_is_p[..32].copy_from_slice(&P);
    let mut wrong_digest = digest;
    wrong_digest[0] ^= 1;
    let list: [Row; 13] = [
        ("verify-valid", key, digest, good, Some(true)),
        ("verify-high-s", key, digest, join(r, sub256(&N, &s)), None),
        ("verify-wrong-digest", key, wrong_digest, good, Some(false)),
        ("verify-other-key", other, digest, good, Some(false)),
        ("verify-r-zero", key, digest, join([0; 32], s), Some(false)),
        ("verify-s-zero", key, digest, join(r, [0; 32]), Some(false)),
        ("verify-r-is-n", key, digest, join(N, s), Some(false)),
        ("verify-s-is-n", key, digest, join(r, N), Some(false)),
        (
            "verify-r-max",
            key,
            digest,
            join([0xff; 32], s),
            Some(false),
        ),
        (
            "verify-s-max",
            key,
            digest,
            join(r, [0xff; 32]),
            Some(false),
        ),
        ("verify-key-off-curve", off_curve, digest, good, Some(false)),
        ("verify-key-x-is-p", x_is_p, digest, good, Some(false)),
        ("verify-key-zero", [0; 64], digest, good, Some(false)),
    ];
    list.into_iter()
        .map(|(name, key, digest, signature, intuition)| {
            let host = Software.verify_p256(&PublicKey(key), &digest, &Signature(signature));
            if let Some(want) = intuition {
                ensure!(
                    host == want,
                    "{name}: the portable backend says {host} on the host"
                );
            }
            let expect = if host { "valid" } else { "invalid" };
            Ok(Case {
                name,
                check: Check::Verify {
                    key,
                    digest,
                    signature,
                },
                expect,
            })
        })
        .collect()
}

/// The checkpoint text of `note` with the log key's signature over a different text.
fn resign_other_text(f: &Fixture, signed: &str) -> Result<String> {
    let (text, _) = signed
        .split_once("\n\n")
        .context("checkpoint without signature block")?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let size: u64 = lines[1].parse()?;
    lines[1] = (size + 1).to_string();
    let other = format!("{}\n", lines.join("\n"));
    let anchors = f.anchors();
    let other_signed = note::write::sign(&other, &anchors.log, &f.log_key)?;
    let (_, sig_line) = other_signed.split_once("\n\n").context("signed note")?;
    Ok(format!("{text}\n\n{sig_line}"))
}

/// The release with a changed payload (next security epoch) under the original signature.
fn change_payload_keep_signature(release: &[u8]) -> Result<Vec<u8>> {
    let cose = CoseSign1::decode(release).map_err(anyhow::Error::msg)?;
    let mut statement = ReleaseStatement::decode(cose.payload).map_err(anyhow::Error::msg)?;
    statement.security_epoch = SecurityEpoch(statement.security_epoch.0 + 1);
    Ok(cose::write::assemble(
        cose.protected,
        &statement.to_cbor(),
        &cose.signature.0,
    ))
}

/// What the firmware pins: the generated file's `LOG_ORIGIN`, `LOG_KEY`, `RELEASE_KEY` and its
/// witness policy (`WITNESS_NAMES`, `WITNESS_KEYS`, `WITNESS_THRESHOLD`).
#[derive(Debug, Clone)]
pub(crate) struct Anchors {
    /// The log's origin (and checkpoint key name).
    pub(crate) origin: String,
    /// The log's P-256 key, raw `x || y`.
    pub(crate) log_key: [u8; 64],
    /// The release key, raw `x || y`.
    pub(crate) release_key: [u8; 64],
    /// The pinned witnesses, name and Ed25519 key, in policy order (the firmware pins three).
    pub(crate) witnesses: Vec<(String, [u8; 32])>,
    /// How many of them must have cosigned.
    pub(crate) threshold: usize,
}

/// How many witnesses the firmware pins (`TrustAnchors<'_, 3>` in its `prepare`).
pub(crate) const FIRMWARE_WITNESSES: usize = 3;

impl Anchors {
    /// The test fixture's keys and its 2-of-3 policy.
    pub(crate) fn of_fixture(f: &Fixture) -> Self {
        let witnesses = f.witnessed_anchors().witnesses;
        Self {
            origin: f.anchors().log.origin.to_owned(),
            log_key: public_key(&f.log_key).0,
            release_key: public_key(&f.release_key).0,
            witnesses: witnesses
                .witnesses()
                .iter()
                .map(|w| (w.name.to_owned(), w.public))
                .collect(),
            threshold: witnesses.threshold(),
        }
    }

    fn write(&self, rs: &mut String) -> Result<()> {
        ensure!(
            self.witnesses.len() == FIRMWARE_WITNESSES,
            "the firmware pins {FIRMWARE_WITNESSES} witnesses, these anchors {}",
            self.witnesses.len()
        );
        writeln!(rs, "const LOG_ORIGIN: &str = {:?};", self.origin)?;
        writeln!(rs, "const LOG_KEY: [u8; 64] = {:?};", self.log_key)?;
        writeln!(rs, "const RELEASE_KEY: [u8; 64] = {:?};", self.release_key)?;
        let names: Vec<&str> = self.witnesses.iter().map(|(n, _)| n.as_str()).collect();
        let keys: Vec<[u8; 32]> = self.witnesses.iter().map(|(_, k)| *k).collect();
        writeln!(
            rs,
            "const WITNESS_NAMES: [&str; {FIRMWARE_WITNESSES}] = {names:?};"
        )?;
        writeln!(
            rs,
            "const WITNESS_KEYS: [[u8; 32]; {FIRMWARE_WITNESSES}] = {keys:?};"
        )?;
        writeln!(rs, "const WITNESS_THRESHOLD: usize = {};", self.threshold)?;
        Ok(())
    }
}

/// Images larger than this go to the board's 16 MiB PSRAM (`.bulk` in memory.x) instead of the
/// 4 MiB that stands in for flash: the demo's releases are 4 MiB.
const FLASH_IMAGE_MAX: usize = 2 << 20;

/// Writes the cases and the Rust file that includes them; returns the Rust file's path.
#[expect(
    clippy::too_many_lines,
    reason = "the replay and witness fields made it 125 lines: to split"
)]
pub(crate) fn write(dir: &Path, anchors: &Anchors, cases: &[Case]) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut rs = String::new();
    writeln!(rs, "// Generated by `cargo xtask m33`; do not edit.")?;
    anchors.write(&mut rs)?;
    let mut images: Vec<Vec<u8>> = Vec::new();
    for case in cases {
        if let Check::Delivery { image, .. }
        | Check::Installed { image, .. }
        | Check::Sha256 { image, .. } = &case.check
            && !images.contains(image)
        {
            images.push(image.clone());
        }
    }
    for (i, image) in images.iter().enumerate() {
        let path = dir.join(format!("image-{i}.bin"));
        std::fs::write(&path, image)?;
        let path = path.display().to_string();
        if image.len() > FLASH_IMAGE_MAX {
            writeln!(
                rs,
                "// SAFETY: `.bulk` is an output section of its own in PSRAM (memory.x), loaded from the\n\
                 // ELF; only these images are placed there.\n\
                 #[unsafe(link_section = \".bulk\")]\n\
                 static IMAGE_{i}_BYTES: [u8; {}] = *include_bytes!({path:?});\n\
                 static IMAGE_{i}: &[u8] = &IMAGE_{i}_BYTES;",
                image.len()
            )?;
        } else {
            writeln!(rs, "static IMAGE_{i}: &[u8] = include_bytes!({path:?});")?;
        }
    }
    writeln!(rs, "static CASES: &[Case] = &[")?;
    for (n, case) in cases.iter().enumerate() {
        let check = match &case.check {
            Check::Delivery {
                delivery,
                image,
                device: d,
                state,
                witnessed,
            } => {
                let path = dir.join(format!("case-{n:02}-{}.cbor", case.name));
                std::fs::write(&path, delivery)?;
                let v = d.current_version;
                format!(
                    "Check::Delivery {{ delivery: include_bytes!({:?}), image: IMAGE_{},\n        \
                     device: DeviceIdentity {{ device_id: {:?}, product: {:?}, family: {:?}, \
                     hardware_revision: {:?}, current_version: Version::new({}, {}, {}) }},\n        \
                     state: {}, witnessed: {witnessed} }}",
                    path.display().to_string(),
                    image_index(&images, image),
                    d.device_id,
                    d.product,
                    d.family,
                    d.hardware_revision,
                    v.major,
                    v.minor,
                    v.patch,
                    state_literal(state),
                )
            }
            Check::Installed { image, state } => format!(
                "Check::Installed {{ image: IMAGE_{}, state: {} }}",
                image_index(&images, image),
                state_literal(state)
            ),
            Check::Sha256 { image, digest } => format!(
                "Check::Sha256 {{ image: IMAGE_{}, digest: {digest:?} }}",
                image_index(&images, image),
            ),
            Check::Ed25519 {
                key,
                message,
                signature,
            } => {
                let path = dir.join(format!("case-{n:02}-{}.msg", case.name));
                std::fs::write(&path, message)?;
                format!(
                    "Check::Ed25519 {{ key: {key:?}, message: include_bytes!({:?}), signature: {signature:?} }}",
                    path.display().to_string()
                )
            }
            Check::Verify {
                key,
                digest,
                signature,
            } => {
                format!(
                    "Check::Verify {{ key: {key:?}, digest: {digest:?}, signature: {signature:?} }}"
                )
            }
            Check::VerifyDer { key, digest, der } => {
                format!("Check::VerifyDer {{ key: {key:?}, digest: {digest:?}, der: &{der:?} }}")
            }
            Check::VerifyRaw {
                key,
                digest,
                signature,
            } => format!(
                "Check::VerifyRaw {{ key: {key:?}, digest: {digest:?}, signature: &{signature:?} }}"
            ),
        };
        writeln!(
            rs,
            "    Case {{ name: {:?}, expect: {:?},\n        check: {check} }},",
            case.name, case.expect
        )?;
    }
    writeln!(rs, "];")?;
    let path = dir.join("cases.rs");
    std::fs::write(&path, rs)?;
    Ok(path)
}

fn image_index(images: &[Vec<u8>], image: &[u8]) -> usize {
    images.iter().position(|i| i == image).unwrap_or_default()
}

fn state_literal(s: &StoredState) -> String {
    let installed = match &s.installed {
        None => "None".to_owned(),
        Some(i) => format!(
            "Some(cairn_verifier::boot::Installed {{ image_digest: {:?}, image_size: {}, version: Version::new({}, {}, {}), \
             security_epoch: SecurityEpoch({}), delivery_digest: {:?}, campaign_sequence: {} }})",
            i.image_digest,
            i.image_size,
            i.version.major,
            i.version.minor,
            i.version.patch,
            i.security_epoch.0,
            i.delivery_digest,
            i.campaign_sequence
        ),
    };
    format!(
        "StoredState {{ checkpoint_size: TreeSize({}), security_epoch: SecurityEpoch({}), \
         campaign_floor: {}, installed: {installed} }}",
        s.checkpoint_size.0, s.security_epoch.0, s.campaign_floor
    )
}
