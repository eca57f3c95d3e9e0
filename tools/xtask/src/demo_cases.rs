//! `cargo xtask m33-deliveries --dir DEMO_DIR`: the Cortex-M33 firmware under QEMU on deliveries
//! a real run produced (issue 18, docs/witness.md §2). The firmware pins what the demo's
//! simulated devices pinned (log origin and key, release key, the three witnesses and the 2-of-3
//! threshold: `cairn-fleet-sim --capture`, tools/xtask/src/capture.rs) and checks, as the device it
//! was sent to in the state that device was in:
//!
//! - each captured delivery as the relay published it (accepted: two cosignatures);
//! - the first one with the cosignatures of the pinned witnesses that did not cosign added, from
//!   their key files in the demo directory (accepted: three);
//! - each with one cosignature left (refused: `no-quorum`), with one cosignature's signature
//!   altered (refused: `bad-cosignature`), and with only a cosignature by a witness it does not
//!   pin (refused: `no-quorum`, the stranger's line is ignored).
//!
//! Every expected verdict is first checked on the host with the same boot check and the portable
//! backend; then the firmware is built as devices ship it (p256-cm4, ed25519-dalek) and must give
//! the same verdict on every case.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use base64ct::{Base64, Encoding};
use cairn_verifier::boot::{DeviceIdentity, MemoryImage, TrustAnchors, verify_delivery};
use cairn_verifier::cose::ReleaseKey;
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::delivery::Delivery;
use cairn_verifier::note::{LogKey, SIGNATURE_PREFIX};
use cairn_verifier::witness::{WitnessKey, WitnessPolicy, write};
use ed25519_dalek::SigningKey;

use crate::capture::{Capture, Captured};
use crate::cases::{self, Anchors, Case, Check, FIRMWARE_WITNESSES};
use crate::m33;

/// What a derived case does to the checkpoint's cosignatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    AsDelivered,
    AllWitnesses,
    OneLeft,
    Altered,
    UnknownOnly,
}

impl Change {
    fn suffix(self) -> &'static str {
        match self {
            Change::AsDelivered => "as-delivered",
            Change::AllWitnesses => "all-witnesses",
            Change::OneLeft => "one-cosignature-left",
            Change::Altered => "cosignature-altered",
            Change::UnknownOnly => "unknown-witness-only",
        }
    }

    fn expect(self, delivered: &'static str) -> &'static str {
        match self {
            Change::AsDelivered | Change::AllWitnesses => delivered,
            Change::OneLeft | Change::UnknownOnly => "no-quorum",
            Change::Altered => "bad-cosignature",
        }
    }
}

/// The task: reads the capture under `--dir`, builds the cases, runs the firmware.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = Some(it.next().context("--dir needs a value")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let dir = Path::new(dir.context("--dir DEMO_DIR is required")?);
    let capture = crate::capture::read(&dir.join("fleet-capture")).context(
        "the demo's captured deliveries (cairn demo --dir DIR keeps them in DIR/fleet-capture)",
    )?;
    ensure!(
        !capture.deliveries.is_empty(),
        "{}: no delivery was captured",
        dir.display()
    );
    let extra = witness_keys(&dir.join("witnesses"), &capture.anchors)?;
    let all = derive(&capture, &extra, now())?;
    host_check(&capture.anchors, &all)?;

    let work = m33::target_dir().join("m33");
    let cases_rs = cases::write(&work.join("demo-cases"), &capture.anchors, &all)?;
    println!(
        "m33-deliveries: {} cases from {} deliveries of {} written to {}",
        all.len(),
        capture.deliveries.len(),
        dir.display(),
        work.join("demo-cases").display()
    );
    let variant = m33::Variant::SHIPPED;
    let elf = work.join(format!("boot-check-demo-{}.elf", variant.label()));
    m33::build_and_run(&work, &cases_rs, variant, &all, &elf)?;
    println!("{}", summary(&capture.anchors, &all, &variant.label()));
    Ok(())
}

/// The line tools/demo prints.
fn summary(anchors: &Anchors, all: &[Case], backend: &str) -> String {
    let count = |change: Change| {
        all.iter()
            .filter(|c| c.name.ends_with(change.suffix()))
            .count()
    };
    let refused = count(Change::OneLeft) + count(Change::Altered) + count(Change::UnknownOnly);
    format!(
        "QEMU Cortex-M33 ({backend}): {} demo deliveries accepted under {}-of-{} ({} more with every \
         witness's cosignature), {refused} tampered refused ({} with one cosignature left and {} \
         cosigned by an unknown witness only: no-quorum; {} with a cosignature altered: \
         bad-cosignature)",
        count(Change::AsDelivered),
        anchors.threshold,
        anchors.witnesses.len(),
        count(Change::AllWitnesses),
        count(Change::OneLeft),
        count(Change::UnknownOnly),
        count(Change::Altered),
    )
}

/// Every case: each captured delivery as it is and changed; the first one also cosigned by the
/// pinned witnesses of `extra` that had not cosigned it.
pub(crate) fn derive(
    capture: &Capture,
    extra: &[(usize, SigningKey)],
    timestamp: u64,
) -> Result<Vec<Case>> {
    let mut out = Vec::new();
    for (n, captured) in capture.deliveries.iter().enumerate() {
        for change in [
            Change::AsDelivered,
            Change::AllWitnesses,
            Change::OneLeft,
            Change::Altered,
            Change::UnknownOnly,
        ] {
            if change == Change::AllWitnesses && (n > 0 || extra.is_empty()) {
                continue;
            }
            let delivery = changed(&capture.anchors, captured, change, extra, timestamp)?;
            out.push(Case {
                name: format!("demo-{}-{}", captured.name, change.suffix()).leak(),
                check: Check::Delivery {
                    delivery,
                    image: captured.image.to_vec(),
                    device: captured.device.clone(),
                    state: captured.state,
                    witnessed: true,
                },
                expect: change.expect(captured.verdict),
            });
        }
    }
    Ok(out)
}

/// The captured delivery with its checkpoint's cosignatures changed by `change`.
fn changed(
    anchors: &Anchors,
    captured: &Captured,
    change: Change,
    extra: &[(usize, SigningKey)],
    timestamp: u64,
) -> Result<Vec<u8>> {
    if change == Change::AsDelivered {
        return Ok(captured.delivery.clone());
    }
    let delivery = Delivery::decode(&captured.delivery)
        .map_err(|e| anyhow::anyhow!("{}: {e}", captured.name))?;
    let note = std::str::from_utf8(delivery.checkpoint)?;
    let split = note.find("\n\n").context("checkpoint without signatures")?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    let (log, mut cosignatures): (Vec<&str>, Vec<&str>) = signatures
        .split_inclusive('\n')
        .partition(|line| line_name(line) == Some(anchors.origin.as_str()));
    ensure!(
        !log.is_empty() && !cosignatures.is_empty(),
        "{}: the checkpoint has no log signature or no cosignature",
        captured.name
    );
    let mut added = Vec::new();
    match change {
        Change::AsDelivered => {}
        Change::AllWitnesses => {
            for (i, key) in extra {
                let (name, public) = &anchors.witnesses[*i];
                if !cosignatures.iter().any(|l| line_name(l) == Some(name)) {
                    let witness = WitnessKey::new(name, *public, &Software)
                        .context("a pinned witness name")?;
                    added.push(write::cosign(text, &witness, key, timestamp));
                }
            }
        }
        Change::OneLeft => cosignatures.truncate(1),
        Change::Altered => {
            // The first cosignature's Ed25519 signature with one bit flipped (its key id and
            // timestamp unchanged: still a line of a pinned witness).
            let line = cosignatures[0].trim_end();
            let (head, b64) = line.rsplit_once(' ').context("signature line")?;
            let mut raw = Base64::decode_vec(b64).map_err(anyhow::Error::msg)?;
            *raw.last_mut().context("empty cosignature")? ^= 1;
            added.push(format!("{head} {}\n", Base64::encode_string(&raw)));
            cosignatures.remove(0);
        }
        Change::UnknownOnly => {
            cosignatures.clear();
            let stranger = cairn_verifier::test_support::witness("witness.example/stranger", 9);
            added.push(write::cosign(
                text,
                &stranger,
                &cairn_verifier::test_support::witness_key(9),
                timestamp,
            ));
        }
    }
    let mut lines: Vec<String> = log.into_iter().map(str::to_owned).collect();
    lines.extend(added);
    lines.extend(cosignatures.into_iter().map(str::to_owned));
    let checkpoint = format!("{text}\n{}", lines.concat());
    Ok(Delivery {
        checkpoint: checkpoint.as_bytes(),
        ..delivery
    }
    .to_cbor())
}

/// The key name of a signature line.
fn line_name(line: &str) -> Option<&str> {
    Some(
        line.strip_prefix(SIGNATURE_PREFIX)?
            .trim_end()
            .rsplit_once(' ')?
            .0,
    )
}

/// Each expected verdict as the boot check gives it on the host (portable backend), so that the
/// firmware is held to verdicts that are right, not merely to what it answered before.
pub(crate) fn host_check(anchors: &Anchors, all: &[Case]) -> Result<()> {
    let log = LogKey::new(
        &anchors.origin,
        &anchors.origin,
        PublicKey(anchors.log_key),
        &Software,
    )
    .context("the log origin cannot be pinned")?;
    let keys: Vec<WitnessKey<'_>> = anchors
        .witnesses
        .iter()
        .map(|(name, key)| WitnessKey::new(name, *key, &Software).context("a witness name"))
        .collect::<Result<_>>()?;
    let keys = <[WitnessKey<'_>; FIRMWARE_WITNESSES]>::try_from(keys)
        .map_err(|_| anyhow::anyhow!("the firmware pins {FIRMWARE_WITNESSES} witnesses"))?;
    let trust = TrustAnchors {
        log,
        release: ReleaseKey::new(PublicKey(anchors.release_key), &Software),
        witnesses: WitnessPolicy::new(keys, anchors.threshold)
            .map_err(|e| anyhow::anyhow!("the witness policy: {e}"))?,
    };
    for case in all {
        let Check::Delivery {
            delivery,
            image,
            device,
            state,
            ..
        } = &case.check
        else {
            continue;
        };
        let identity = DeviceIdentity {
            device_id: device.device_id,
            product: device.product,
            family: device.family,
            hardware_revision: device.hardware_revision,
            current_version: device.current_version,
        };
        let verdict = verify_delivery(
            delivery,
            &trust,
            &identity,
            state,
            &mut MemoryImage(image),
            &Software,
        )
        .map_or_else(|e| e.code(), |_| "accept");
        ensure!(
            verdict == case.expect,
            "{}: the host's boot check says {verdict}, the case expects {}",
            case.name,
            case.expect
        );
    }
    Ok(())
}

/// The keys of pinned witnesses found in the demo's `witnesses/*/key` files (32-byte seeds in
/// hex, `cairn-witness keygen`), with their index in the policy.
fn witness_keys(dir: &Path, anchors: &Anchors) -> Result<Vec<(usize, SigningKey)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries {
        let path = entry?.path().join("key");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let text = text.trim();
        let mut seed = [0u8; 32];
        ensure!(text.len() == 64, "{}: not a 32-byte seed", path.display());
        for (b, pair) in seed.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *b = u8::from_str_radix(std::str::from_utf8(pair)?, 16)
                .with_context(|| format!("{}: not hex", path.display()))?;
        }
        let key = SigningKey::from_bytes(&seed);
        let public = key.verifying_key().to_bytes();
        if let Some(i) = anchors.witnesses.iter().position(|(_, k)| *k == public) {
            out.push((i, key));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
