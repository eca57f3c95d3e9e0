//! RustCrypto's p256-cm4 backend made buildable for the Cortex-M33: its assembly written for
//! Armv7E-M, patched in a copy of the crate (see `p256_cm4_for_v8m`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::toolchain::{TARGET, debian_rust};

/// A copy of p256-cm4 0.4.0's sources adapted to Armv8-M Mainline, built in place of the
/// crates.io release. Two mechanical changes, both checked by count so that a different release
/// fails loudly instead of being half-adapted:
///
/// 1. every `naked_asm!` block starts with `.arch armv7e-m` and ends with `.arch armv8-m.main`:
///    `umaal` needs the DSP extension, which the Cortex-M33 has, but rustc assembles naked
///    functions as module-level assembly with the target's base features only (neither
///    `-C target-feature=+dsp` nor `-C target-cpu=cortex-m33` reaches it, and LLVM's assembler does
///    not know `.arch_extension dsp`);
/// 2. `ldm rN, {rM}` (one register, no writeback) becomes `ldr rM, [rN]`: that form only exists as
///    the 32-bit T2 encoding, where a one-register list is CONSTRAINED UNPREDICTABLE in Armv8-M
///    (and QEMU's Cortex-M33 takes it as UNDEFINED); the load is the same.
pub(crate) fn p256_cm4_for_v8m(work: &Path, firmware: &Path) -> Result<PathBuf> {
    let mut meta = Command::new("/usr/bin/cargo");
    meta.args([
        "metadata",
        "--format-version",
        "1",
        "--features",
        "p256-cm4",
        "--filter-platform",
        TARGET,
    ])
    .arg("--manifest-path")
    .arg(firmware.join("Cargo.toml"));
    debian_rust(&mut meta);
    let out = meta.output().context("cargo metadata for the firmware")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let manifest = json["packages"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["name"] == "p256-cm4" && p["version"] == "0.4.0")
        })
        .and_then(|p| p["manifest_path"].as_str())
        .context("p256-cm4 0.4.0 not in the firmware's dependency graph")?;
    let source = Path::new(manifest).parent().context("manifest path")?;

    let dest = work.join("p256-cm4-0.4.0-armv8m");
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    copy_dir(source, &dest)?;
    let (mut blocks, mut loads) = (0, 0);
    for entry in std::fs::read_dir(dest.join("src/asm"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let (text, b) = bracket_naked_asm(&text)?;
        let (text, l) = single_register_ldm(&text);
        blocks += b;
        loads += l;
        std::fs::write(&path, text)?;
    }
    ensure!(
        blocks == 35 && loads == 1,
        "p256-cm4 sources changed: {blocks} asm blocks, {loads} ldm"
    );
    Ok(dest)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Inserts `".arch armv7e-m",` after every `naked_asm!(` and `".arch armv8-m.main"` after the
/// block's last template string (templates come before operands and options).
fn bracket_naked_asm(src: &str) -> Result<(String, usize)> {
    const OPEN: &str = "naked_asm!(";
    let mut out = String::with_capacity(src.len() + 4096);
    let mut rest = src;
    let mut count = 0;
    while let Some(at) = rest.find(OPEN) {
        let (before, after) = rest.split_at(at + OPEN.len());
        out.push_str(before);
        out.push_str("\n        \".arch armv7e-m\",");
        // Skip the template strings (plain or raw), separated by commas and whitespace.
        let mut end = 0;
        let bytes = after.as_bytes();
        let mut i = 0;
        loop {
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\n' | b'\t' | b',') {
                i += 1;
            }
            let tail = &after[i..];
            let len = if let Some(raw) = tail.strip_prefix("r#\"") {
                raw.find("\"#").map(|e| e + 5)
            } else if tail.starts_with('"') {
                let mut j = 1;
                let b = tail.as_bytes();
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                Some(j + 1)
            } else {
                None
            };
            match len {
                Some(l) => {
                    i += l;
                    end = i;
                }
                None => break,
            }
        }
        ensure!(end > 0, "naked_asm! block without a template string");
        out.push_str(&after[..end]);
        out.push_str(",\n        \".arch armv8-m.main\"");
        rest = &after[end..];
        count += 1;
    }
    out.push_str(rest);
    Ok((out, count))
}

/// `ldm rN, {rM}` / `stm rN, {rM}` (no writeback, one register) to `ldr`/`str rM, [rN]`.
fn single_register_ldm(src: &str) -> (String, usize) {
    let mut count = 0;
    let out = src
        .lines()
        .map(|line| {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            for (multi, single) in [("ldm ", "ldr"), ("stm ", "str")] {
                if let Some(args) = t.strip_prefix(multi)
                    && let Some((base, list)) =
                        args.split_once(",{").or_else(|| args.split_once(", {"))
                {
                    let reg = list.trim_end().trim_end_matches('}');
                    let base = base.trim();
                    if !base.ends_with('!') && !reg.contains(',') && !reg.contains('-') {
                        count += 1;
                        return format!("{indent}{single} {reg}, [{base}]");
                    }
                }
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    (out + "\n", count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_every_naked_asm_block_before_operands() {
        let src =
            "naked_asm!(\n \"a\",\n r#\"b\"#,\n x = sym y,\n options(raw)\n)\nnaked_asm!(\"c\")";
        let (out, n) = bracket_naked_asm(src).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            out,
            "naked_asm!(\n        \".arch armv7e-m\",\n \"a\",\n r#\"b\"#,\n        \".arch armv8-m.main\",\n x = sym y,\n options(raw)\n)\n\
             naked_asm!(\n        \".arch armv7e-m\",\"c\",\n        \".arch armv8-m.main\")"
        );
    }

    #[test]
    fn rewrites_only_single_register_ldm_without_writeback() {
        let (out, n) = single_register_ldm(
            "  ldm r4,{r6}\n  ldm r6!, {r5}\n  ldm r0, {r1, r2}\n  stm r1, {lr}",
        );
        assert_eq!(n, 2);
        assert_eq!(
            out,
            "  ldr r6, [r4]\n  ldm r6!, {r5}\n  ldm r0, {r1, r2}\n  str lr, [r1]\n"
        );
    }
}
