//! cairn development tasks.
//!
//! ```text
//! cargo xtask m33         build the Cortex-M33 firmware, run every boot-check case under QEMU
//! cargo xtask bench-m33   the same, plus the measurements: flash, stack, heap, instructions
//! ```

mod cases;
mod m33;

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

  cargo xtask m33 [--backend NAME]        build the Cortex-M33 firmware and run every boot-check
                                          case under QEMU mps2-an505; fails on any unexpected verdict
  cargo xtask bench-m33 [--backend NAME]  the same, then report flash (text + rodata), peak stack,
                                          heap and instructions per boot check (also written to
                                          target/m33/report.json)

Backends: software (default; RustCrypto p256 0.14 + sha2 0.11).
";
