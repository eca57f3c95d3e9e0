//! Where the boot check's flash goes: the sizes of the firmware's symbols in flash, grouped by what
//! they implement (from their mangled names, which keep the crate and module path), each group
//! minus the same group in the baseline build (same harness and data, no verifier).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use object::{Object, ObjectSymbol, SymbolKind};

/// The mps2-an505 board's flash (design.md: FLASH 0x10000000, 4 MiB).
pub(crate) const FLASH: std::ops::Range<u64> = 0x1000_0000..0x1040_0000;

/// Groups, first match wins: (label, substrings of the mangled symbol name).
const GROUPS: &[(&str, &[&str])] = &[
    (
        "witness cosignatures, Ed25519, SHA-512 (witness, ed25519-dalek, curve25519-dalek, salty)",
        &[
            "7witness",
            "ed25519",
            "curve25519",
            "salty",
            "sha512",
            "compress512",
        ],
    ),
    (
        "ECDSA P-256 (p256, primeorder, crypto-bigint, ecdsa)",
        &[
            "p256",
            "P256_",
            "primeorder",
            "crypto_bigint",
            "elliptic_curve",
            "primefield",
            "ecdsa",
            "ctutils",
            "subtle",
        ],
    ),
    ("SHA-256 (sha2)", &["sha2", "compress256"]),
    ("MCUboot image check (mcuboot)", &["mcuboot"]),
    (
        "checkpoint note, base64 (note, base64ct)",
        &["4note", "base64ct"],
    ),
    (
        "CBOR, COSE, statements, delivery",
        &[
            "cbor",
            "statement",
            "4cose",
            "delivery",
            "5types",
            "custody",
        ],
    ),
    ("Merkle proofs (merkle)", &["merkle"]),
    ("boot check (boot)", &["4boot", "5error"]),
    (
        "harness main, with verify_delivery inlined in it",
        &[
            "cairn_firmware_qemu",
            "cortex_m",
            "semihosting",
            "__INTERRUPTS",
            "Reset",
        ],
    ),
];

/// The last group: everything else with a name (core, fmt, compiler-builtins, memcpy, ...).
const REST: &str = "core, fmt, compiler-builtins";

/// Bytes per group in `elf` (text and rodata symbols in flash).
fn groups(elf: &Path) -> Result<BTreeMap<&'static str, u64>> {
    let data = std::fs::read(elf)?;
    let file = object::File::parse(&*data)?;
    let mut out = BTreeMap::new();
    for sym in file.symbols() {
        if !matches!(sym.kind(), SymbolKind::Text | SymbolKind::Data) || sym.size() == 0 {
            continue;
        }
        if !FLASH.contains(&sym.address()) {
            continue;
        }
        let name = sym.name().unwrap_or_default();
        // Anonymous constants (".Lanon.*") are test data of the harness, in both builds.
        if name.starts_with(".L") {
            continue;
        }
        let group = GROUPS
            .iter()
            .find(|(_, keys)| keys.iter().any(|k| name.contains(k)))
            .map_or(REST, |(label, _)| label);
        *out.entry(group).or_default() += sym.size();
    }
    Ok(out)
}

/// Bytes of the witness group (cosignature parsing, Ed25519, SHA-512) in `elf`: the baseline
/// links none of it.
pub(crate) fn witness_bytes(elf: &Path) -> Result<u64> {
    let label = GROUPS.first().map_or("", |(label, _)| label);
    Ok(groups(elf)?.get(label).copied().unwrap_or(0))
}

/// The table of what the boot check adds per group: `elf` minus `baseline`.
pub(crate) fn breakdown(elf: &Path, baseline: &Path, total: u64) -> Result<String> {
    let with = groups(elf)?;
    let without = groups(baseline)?;
    let mut rows: Vec<(&str, i64)> = GROUPS
        .iter()
        .map(|(label, _)| *label)
        .chain([REST])
        .map(|g| {
            let a = i64::try_from(with.get(g).copied().unwrap_or(0)).unwrap_or(0);
            let b = i64::try_from(without.get(g).copied().unwrap_or(0)).unwrap_or(0);
            (g, a - b)
        })
        .collect();
    let named: i64 = rows.iter().map(|(_, n)| n).sum();
    rows.push((
        "unnamed (alignment, literal pools, constants)",
        i64::try_from(total).unwrap_or(0) - named,
    ));
    let mut s = String::new();
    for (label, bytes) in rows {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a size in KiB for people to read"
        )]
        let kib = bytes as f64 / 1024.0;
        writeln!(s, "  {label:<48} {bytes:>7} B {kib:>6.1} KiB")?;
    }
    Ok(s)
}
