//! cairn development tasks.
//!
//! ```text
//! cargo xtask m33         build the Cortex-M33 firmware, run every boot-check case under QEMU
//! cargo xtask bench-m33   the same, plus the measurements: flash, stack, heap, instructions
//! ```

mod cases;
mod flash;
mod m33;
mod mcuboot_cases;
mod p256_cm4;
mod toolchain;
mod witness_cases;
mod wycheproof_cases;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("m33") => m33::run(&args[1..], false),
        Some("bench-m33") => m33::run(&args[1..], true),
        Some("help" | "--help" | "-h") | None => {
            println!("{}", HELP.trim());
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n\n{}", HELP.trim()),
    }
}

const HELP: &str = "
cairn development tasks

  cargo xtask m33 [--backend NAME]... [--compact-sha2]
      Build the Cortex-M33 firmware and run every boot-check case under QEMU mps2-an505, once
      per backend; fails on any unexpected verdict. Default backends: software and p256-cm4.

  cargo xtask bench-m33 [--backend NAME]... [--compact-sha2]
      The same, then the measurements side by side: flash of the boot check (text + rodata),
      peak stack, heap, instructions per boot check (also written to target/m33/report.json).
      Default: every backend, with and without --compact-sha2.

Backends: software (RustCrypto p256 0.14 + sha2 0.11; Ed25519 by ed25519-dalek without tables),
p256-cm4+salty and p256-cm4+dalek-fast (Ed25519 by salty, or by ed25519-dalek with its
precomputed tables), p256-cm4 (p256-cm4 0.4.0 assembly,
adapted to Armv8-M at build time), p256-013 (RustCrypto p256 0.13, for comparison).
--compact-sha2 builds sha2 with its rolled (smaller, slower) SHA-256.
";
