//! Building the Cortex-M33 firmware with Debian's Rust (which can build `core` for
//! thumbv8m.main-none-eabihf), running it under QEMU, and measuring it.
//!
//! Instruction counting: QEMU runs with `-icount shift=0`, so virtual time advances exactly 1 ns per
//! instruction and SysTick (clocked from the core clock) ticks at a fixed number of instructions.
//! The firmware measures that ratio with a calibration loop of exactly 2,000,000 instructions and
//! reports ticks per case; instructions = ticks × 2,000,000 / calibration ticks. The count has the
//! SysTick resolution (50 instructions on mps2-an505) and is deterministic from run to run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cairn_verifier::test_support::Fixture;
use object::read::elf::{ElfFile32, ProgramHeader};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::cases;

const TARGET: &str = "thumbv8m.main-none-eabihf";
const FLASH: std::ops::Range<u64> = 0x1000_0000..0x1040_0000;
const QEMU_TIMEOUT: Duration = Duration::from_secs(600);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// One case's result as the firmware printed it.
#[derive(Debug, Clone)]
struct Outcome {
    verdict: String,
    expected: String,
    ticks: u64,
    stack: u64,
}

pub(crate) fn run(args: &[String], measure: bool) -> Result<()> {
    let mut backend = "software".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => backend = it.next().context("--backend needs a value")?.clone(),
            other => bail!("unknown argument {other:?}"),
        }
    }
    ensure!(backend == "software", "unknown backend {backend:?}");

    let work = target_dir().join("m33");
    let fixture = Fixture::new();
    let all = cases::all(&fixture)?;
    let cases_rs = cases::write(&work.join("cases"), &fixture, &all)?;
    println!("m33: {} cases written to {}", all.len(), cases_rs.parent().unwrap_or(&work).display());

    let elf = build(&work, &cases_rs, &[])?;
    let (calibration, outcomes) = qemu(&elf)?;

    let per_tick = 2_000_000.0 / calibration as f64;
    let mut failed = Vec::new();
    println!("{:<30} {:<26} {:>12} {:>8}", "case", "verdict", "instructions", "stack");
    for case in &all {
        let Some(o) = outcomes.get(case.name) else {
            failed.push(format!("{}: no verdict printed", case.name));
            continue;
        };
        let mark = if o.verdict == o.expected && o.expected == case.expect { "" } else { "  UNEXPECTED" };
        if !mark.is_empty() {
            failed.push(format!("{}: got {}, expected {}", case.name, o.verdict, case.expect));
        }
        println!(
            "{:<30} {:<26} {:>12.0} {:>8}{mark}",
            case.name,
            o.verdict,
            o.ticks as f64 * per_tick,
            o.stack
        );
    }
    if !failed.is_empty() {
        bail!("Cortex-M33 boot check: {} unexpected verdicts:\n  {}", failed.len(), failed.join("\n  "));
    }
    println!("m33: every verdict as expected ({} cases, QEMU mps2-an505, Cortex-M33)", all.len());

    if measure {
        report(&work, &cases_rs, &elf, calibration, &outcomes, &backend)?;
    }
    Ok(())
}

/// Builds the firmware (release profile: opt-level "s", fat LTO) and returns the ELF's path.
fn build(work: &Path, cases_rs: &Path, features: &[&str]) -> Result<PathBuf> {
    let manifest = root().join("verifier-nostd/firmware/Cargo.toml");
    let target_dir = work.join("firmware-target");
    let mut cmd = Command::new("/usr/bin/cargo");
    cmd.args(["build", "--quiet", "--release", "-Zbuild-std=core", "--target", TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    // Debian's rustc-web is the toolchain that has the library sources to build `core` for this
    // target; the rustup toolchain running this task has no thumbv8m standard library.
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
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS", "-C linker=ld.lld -C link-arg=-Tlink.x")
        .env("CAIRN_CASES", cases_rs);
    let started = Instant::now();
    let status = cmd.status().context("running /usr/bin/cargo (is cargo-web installed? run tools/setup)")?;
    ensure!(status.success(), "firmware build failed ({status})");
    let elf = target_dir.join(TARGET).join("release/cairn-firmware-qemu");
    println!(
        "m33: built {} in {:.1} s{}",
        elf.display(),
        started.elapsed().as_secs_f64(),
        if features.is_empty() { String::new() } else { format!(" (features: {})", features.join(",")) }
    );
    Ok(elf)
}

/// Runs the firmware under QEMU with instruction counting; returns the calibration ticks and the
/// outcome of each case.
fn qemu(elf: &Path) -> Result<(u64, BTreeMap<String, Outcome>)> {
    let mut child = Command::new("qemu-system-arm")
        .args(["-machine", "mps2-an505", "-cpu", "cortex-m33", "-nographic", "-monitor", "none"])
        .args(["-serial", "none", "-icount", "shift=0"])
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-arm (run tools/setup)")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > QEMU_TIMEOUT {
            child.kill()?;
            bail!("QEMU did not finish within {} s", QEMU_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    println!("m33: QEMU ran for {:.1} s, exit status {status}", started.elapsed().as_secs_f64());

    let mut calibration = None;
    let mut outcomes = BTreeMap::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("calibration: 2000000 instructions = ") {
            calibration = rest.strip_suffix(" ticks").and_then(|t| t.parse().ok());
        } else if let Some(rest) = line.strip_prefix("case ") {
            let parsed = parse_case(rest).with_context(|| format!("unparsable firmware line {line:?}"))?;
            outcomes.insert(parsed.0, parsed.1);
        }
    }
    ensure!(status.success(), "the firmware reported failure (exit status {status})");
    let calibration = calibration.context("no calibration line from the firmware")?;
    ensure!(calibration > 0, "calibration loop took no ticks: is -icount in effect?");
    Ok((calibration, outcomes))
}

/// `NAME: VERDICT (expected X) ok ticks=T stack=S`
fn parse_case(rest: &str) -> Option<(String, Outcome)> {
    let (name, rest) = rest.split_once(": ")?;
    let (verdict, rest) = rest.split_once(" (expected ")?;
    let (expected, rest) = rest.split_once(") ")?;
    let ticks = rest.split_once("ticks=")?.1.split_whitespace().next()?.parse().ok()?;
    let stack = rest.split_once("stack=")?.1.trim().parse().ok()?;
    Some((
        name.to_owned(),
        Outcome { verdict: verdict.to_owned(), expected: expected.to_owned(), ticks, stack },
    ))
}

/// Flash image size of an ELF: bytes of loadable segments whose load address is in flash, and
/// the sizes of `.text` and `.rodata`.
struct FlashSize {
    total: u64,
    text: u64,
    rodata: u64,
    allocator_symbols: Vec<String>,
    panic_symbols: usize,
}

fn flash_size(elf: &Path) -> Result<FlashSize> {
    let data = std::fs::read(elf)?;
    let file = ElfFile32::<object::Endianness>::parse(&*data)?;
    let endian = file.endian();
    let mut total = 0u64;
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == object::elf::PT_LOAD && FLASH.contains(&u64::from(ph.p_paddr(endian))) {
            total += u64::from(ph.p_filesz(endian));
        }
    }
    let section = |name: &str| file.section_by_name(name).map_or(0, |s| s.size());
    let mut allocator_symbols = Vec::new();
    let mut panic_symbols = 0;
    for sym in file.symbols() {
        let name = sym.name().unwrap_or_default();
        if name.contains("__rust_alloc") || name.contains("__rg_alloc") || name.contains("__rdl_alloc") {
            allocator_symbols.push(name.to_owned());
        }
        if name.contains("panicking") || name.contains("panic_bounds_check") {
            panic_symbols += 1;
        }
    }
    Ok(FlashSize { total, text: section(".text"), rodata: section(".rodata"), allocator_symbols, panic_symbols })
}

fn report(
    work: &Path,
    cases_rs: &Path,
    elf: &Path,
    calibration: u64,
    outcomes: &BTreeMap<String, Outcome>,
    backend: &str,
) -> Result<()> {
    let full_elf = work.join(format!("boot-check-{backend}.elf"));
    std::fs::copy(elf, &full_elf)?;
    let baseline_elf = build(work, cases_rs, &["baseline"])?;
    let full = flash_size(&full_elf)?;
    let base = flash_size(&baseline_elf)?;
    // Leave the firmware target dir holding the full build again for the next `m33` run.
    build(work, cases_rs, &[])?;

    let per_tick = 2_000_000.0 / calibration as f64;
    let m = outcomes.get(cases::MEASURE_CASE).context("measurement case missing")?;
    let valid = outcomes.get("valid").context("valid case missing")?;
    let recheck = outcomes.get("installed-recheck").context("recheck case missing")?;
    let boot_instructions = m.ticks as f64 * per_tick;
    let peak_stack = outcomes.values().map(|o| o.stack).max().unwrap_or(0);
    let image_len = Fixture::new().image.len();
    let p256_cm4_two = 2.0 * 1_230_000.0;
    let text_rodata = |f: &FlashSize| f.text + f.rodata;
    let boot_flash = text_rodata(&full).saturating_sub(text_rodata(&base));

    println!();
    println!("Cortex-M33 boot check, backend {backend} (opt-level \"s\", fat LTO, codegen-units 1, panic abort)");
    println!("  flash, boot check (text+rodata, full build minus baseline build): {boot_flash} bytes ({:.1} KiB)", boot_flash as f64 / 1024.0);
    println!("  flash, whole firmware: text {} + rodata {} bytes; baseline harness and test data: text {} + rodata {}", full.text, full.rodata, base.text, base.rodata);
    println!("  peak stack over all cases (painted): {peak_stack} bytes");
    println!(
        "  heap: 0 bytes (no allocator linked: {})",
        if full.allocator_symbols.is_empty() { "no __rust_alloc symbol in the ELF".to_owned() } else { format!("FOUND {:?}", full.allocator_symbols) }
    );
    println!("  panic-related symbols in the ELF: {} (baseline: {})", full.panic_symbols, base.panic_symbols);
    println!("  calibration: 2,000,000 instructions = {calibration} SysTick ticks ({:.1} instructions per tick)", per_tick);
    println!("  instructions, full boot check, depth-20 proof, {image_len}-byte image: {boot_instructions:.0}");
    println!("  instructions, full boot check, depth-3 proof: {:.0}", valid.ticks as f64 * per_tick);
    println!("  instructions, installed-image re-check (digest only): {:.0}", recheck.ticks as f64 * per_tick);
    println!("  ratio to two p256-cm4 verifies (~2.46 M cycles): {:.2}", boot_instructions / p256_cm4_two);
    ensure!(full.allocator_symbols.is_empty(), "an allocator is linked into the firmware");

    let json = serde_json::json!({
        "backend": backend,
        "flash_boot_check_bytes": boot_flash,
        "flash_text": full.text,
        "flash_rodata": full.rodata,
        "flash_total_loadable": full.total,
        "baseline_text": base.text,
        "baseline_rodata": base.rodata,
        "peak_stack_bytes": peak_stack,
        "heap_bytes": 0,
        "calibration_ticks_per_2m_instructions": calibration,
        "instructions_boot_check_depth20": boot_instructions.round(),
        "instructions_boot_check_depth3": (valid.ticks as f64 * per_tick).round(),
        "instructions_installed_recheck": (recheck.ticks as f64 * per_tick).round(),
        "image_bytes": image_len,
        "ratio_to_two_p256_cm4_verifies": boot_instructions / p256_cm4_two,
        "cases": outcomes.iter().map(|(k, o)| (k.clone(), serde_json::json!({
            "verdict": o.verdict, "instructions": (o.ticks as f64 * per_tick).round(), "stack": o.stack
        }))).collect::<serde_json::Map<_, _>>(),
    });
    let path = work.join(format!("report-{backend}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("  written to {}", path.display());
    Ok(())
}
