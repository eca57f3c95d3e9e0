//! The witness cases the Cortex-M33 firmware checks (docs/witness.md): a device with the fixture's
//! 2-of-3 witness policy given the valid delivery with 0, 1, 2 and 3 cosignatures, a cosignature
//! over another checkpoint, one with an altered timestamp, one by a witness it does not pin, one
//! whose Ed25519 `s` is not below the group order (RFC 8032 §5.1.7); and
//! one Ed25519 verification on its own (the cost of one cosignature).

use anyhow::{Context, Result};
use base64ct::{Base64, Encoding};
use cairn_verifier::boot::StoredState;
use cairn_verifier::crypto::{Crypto, Software};
use cairn_verifier::test_support::{Fixture, WITNESSES, cosign, witness, witness_key};
use cairn_verifier::witness::write::{self, signed_message};

use crate::cases::{Case, Check, default_device};

/// Timestamp of the fixture's cosignatures (2026-11-19).
const T: u64 = 1_795_000_500;
/// The group order L of Ed25519, little-endian (RFC 8032 §5.1).
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The witness cases.
#[expect(clippy::too_many_lines, reason = "one list of cases: to split")]
pub(crate) fn all(f: &Fixture) -> Result<Vec<Case>> {
    let spec = f.spec();
    let valid = f.build(&spec);
    let plain = valid.checkpoint.clone();
    let text = plain
        .find("\n\n")
        .and_then(|i| plain.get(..=i))
        .context("fixture checkpoint has no blank line")?
        .to_owned();
    let mut older = spec.clone();
    older.tree_size = 10;
    let older = f.build(&older).checkpoint;

    let last_line = |note: &str| -> Result<String> {
        let body = note
            .strip_suffix('\n')
            .context("note without final newline")?;
        let (_, line) = body.rsplit_once('\n').context("note with one line")?;
        Ok(format!("{line}\n"))
    };
    let one = cosign(&plain, 1, T);
    let two = cosign(&cosign(&plain, 0, T), 2, T + 1);
    let three = cosign(&two, 1, T + 2);
    let other = format!(
        "{}{}",
        cosign(&plain, 0, T),
        last_line(&cosign(&older, 2, T - 600))?
    );
    let altered = {
        let line = last_line(&one)?;
        let (prefix, b64) = line.trim_end().rsplit_once(' ').context("signature line")?;
        let mut raw = Base64::decode_vec(b64).map_err(anyhow::Error::msg)?;
        raw.get_mut(4..12)
            .context("short cosignature")?
            .copy_from_slice(&(T + 86_400).to_be_bytes());
        format!(
            "{}{prefix} {}\n",
            cosign(&plain, 0, T),
            Base64::encode_string(&raw)
        )
    };
    // The last cosignature with s + L for s (RFC 8032 §5.1.7: refused; the same point).
    let malleated = {
        let two = cosign(&cosign(&plain, 0, T), 2, T + 1);
        let line = last_line(&two)?;
        let (prefix, b64) = line.trim_end().rsplit_once(' ').context("signature line")?;
        let mut raw = Base64::decode_vec(b64).map_err(anyhow::Error::msg)?;
        let s = raw.get_mut(4 + 8 + 32..).context("short cosignature")?;
        let mut carry = 0u16;
        for (b, l) in s.iter_mut().zip(ED25519_L) {
            let sum = u16::from(*b) + u16::from(l) + carry;
            *b = u8::try_from(sum & 0xff)?;
            carry = sum >> 8;
        }
        let head = two
            .strip_suffix(line.as_str())
            .context("last line")?
            .to_owned();
        format!("{head}{prefix} {}\n", Base64::encode_string(&raw))
    };
    let unknown = {
        let stranger = witness("witness.test/stranger", 9);
        format!(
            "{}{}",
            cosign(&plain, 0, T),
            write::cosign(&text, &stranger, &witness_key(9), T)
        )
    };

    let mut cases = Vec::new();
    for (name, note, expect) in [
        ("witness-0-of-3", plain.clone(), "no-quorum"),
        ("witness-1-of-3", one, "no-quorum"),
        ("witness-2-of-3", two, "accept"),
        ("witness-3-of-3", three, "accept"),
        ("witness-other-checkpoint", other, "bad-cosignature"),
        ("witness-altered-time", altered, "bad-cosignature"),
        ("witness-unknown-key", unknown, "no-quorum"),
        ("witness-s-not-canonical", malleated, "bad-cosignature"),
    ] {
        let mut parts = valid.clone();
        parts.checkpoint = note;
        cases.push(Case {
            name,
            check: Check::Delivery {
                delivery: parts.encode(),
                image: f.image.clone(),
                device: default_device(),
                state: StoredState::default(),
                witnessed: true,
            },
            expect,
        });
    }

    // One Ed25519 verification of a cosigned message (the checkpoint's, by witness 0).
    let message = signed_message(&text, T);
    let line = last_line(&cosign(&plain, 0, T))?;
    let b64 = line
        .trim_end()
        .rsplit_once(' ')
        .context("signature line")?
        .1;
    let raw = Base64::decode_vec(b64).map_err(anyhow::Error::msg)?;
    let signature: [u8; 64] = raw.get(12..).context("short cosignature")?.try_into()?;
    let key = witness(WITNESSES[0], 0).public;
    anyhow::ensure!(
        Software.verify_ed25519(&key, &[&message], &signature),
        "the fixture cosignature does not verify on the host"
    );
    let mut flipped = signature;
    flipped[0] ^= 1;
    for (name, signature, expect) in [
        ("ed25519-verify-valid", signature, "valid"),
        ("ed25519-verify-invalid", flipped, "invalid"),
    ] {
        cases.push(Case {
            name,
            check: Check::Ed25519 {
                key,
                message: message.clone(),
                signature,
            },
            expect,
        });
    }
    Ok(cases)
}

/// The witness table of `cargo xtask bench-m33`, one row per run; fills each run's `"witness"`
/// object in `json` (same order as `runs`).
pub(crate) fn report(runs: &[crate::m33::Run], json: &mut [serde_json::Value]) -> Result<String> {
    use std::fmt::Write as _;
    let mut table = String::new();
    writeln!(
        table,
        "{:<24} {:>12} {:>12} {:>12} {:>14} {:>14} {:>12}",
        "backend",
        "boot 0 cosig",
        "boot 2 cosig",
        "boot 3 cosig",
        "per cosig",
        "one Ed25519",
        "flash B"
    )?;
    for (run, out) in runs.iter().zip(json.iter_mut()) {
        let get = |case: &str| {
            run.instructions(case)
                .with_context(|| format!("case {case} missing"))
        };
        let zero = get("valid")?;
        let two = get("witness-2-of-3")?;
        let three = get("witness-3-of-3")?;
        let one_verify = get("ed25519-verify-valid")?;
        let per = three.saturating_sub(two);
        let flash = crate::flash::witness_bytes(&run.elf)?;
        writeln!(
            table,
            "{:<24} {zero:>12} {two:>12} {three:>12} {per:>14} {one_verify:>14} {flash:>12}",
            run.variant.label()
        )?;
        if let Some(obj) = out.as_object_mut() {
            obj.insert(
                "witness".into(),
                serde_json::json!({
                    "instructions_boot_check_0_cosignatures": zero,
                    "instructions_boot_check_2_cosignatures": two,
                    "instructions_boot_check_3_cosignatures": three,
                    "instructions_per_cosignature": per,
                    "instructions_one_ed25519_verify": one_verify,
                    "flash_witness_ed25519_sha512_bytes": flash,
                }),
            );
        }
    }
    Ok(table)
}
