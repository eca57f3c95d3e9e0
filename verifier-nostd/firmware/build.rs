//! Puts `memory.x` on the linker search path for cortex-m-rt's `link.x`, and makes the build depend
//! on the generated test cases (`CAIRN_CASES`, written by `cargo xtask m33`).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-env-changed=CAIRN_CASES");
    if let Some(cases) = env::var_os("CAIRN_CASES") {
        println!("cargo:rerun-if-changed={}", PathBuf::from(cases).display());
    }
}
