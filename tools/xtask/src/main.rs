//! cairn development tasks.
//!
//! ```text
//! cargo xtask m33         build the Cortex-M33 firmware, run every boot-check case under QEMU
//! cargo xtask bench-m33   the same, plus the measurements: flash, stack, heap, instructions
//! cargo xtask m33-deliveries --dir DEMO_DIR
//!                         the firmware under QEMU on the deliveries a `cairn demo` run captured
//! ```

mod capture;
mod cases;
mod demo_cases;
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
        Some("m33-deliveries") => demo_cases::run(&args[1..]),
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

  cargo xtask m33-deliveries --dir DEMO_DIR
      Build the firmware as devices ship it (p256-cm4, ed25519-dalek) with what the demo's devices
      pinned (its log and release keys, its three witnesses, 2-of-3) and run it under QEMU on the
      deliveries `cairn demo --dir DEMO_DIR` captured (DEMO_DIR/fleet-capture), each as delivered
      and with its cosignatures changed (one left, one altered, an unknown witness's only; the
      first also with every witness's); fails on any unexpected verdict.

Backends: software (RustCrypto p256 0.14 + sha2 0.11; Ed25519 by ed25519-dalek without tables),
p256-cm4+salty and p256-cm4+dalek-fast (Ed25519 by salty, or by ed25519-dalek with its
precomputed tables), p256-cm4 (p256-cm4 0.4.0 assembly,
adapted to Armv8-M at build time), p256-013 (RustCrypto p256 0.13, for comparison).
--compact-sha2 builds sha2 with its rolled (smaller, slower) SHA-256.
";
