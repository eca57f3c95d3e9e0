//! The toolchain that builds the Cortex-M33 firmware: Debian's Rust, which can build `core` for
//! the target (design.md, "Cortex-M33 toolchain").

use std::process::Command;

/// The STM32H5's core: Armv8-M Mainline with the FPU.
pub(crate) const TARGET: &str = "thumbv8m.main-none-eabihf";

/// Debian's rustc-web is the toolchain with the library sources to build `core` for this target;
/// the rustup toolchain running this task has no thumbv8m standard library.
pub(crate) fn debian_rust(cmd: &mut Command) {
    for var in [
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1");
}
