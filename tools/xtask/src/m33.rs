//! Building the Cortex-M33 firmware with Debian's Rust (which can build `core` for
//! thumbv8m.main-none-eabihf), running it under QEMU, and measuring it.
//!
//! Instruction counting: QEMU runs with `-icount shift=0`, so virtual time advances exactly 1 ns per
//! instruction and SysTick (clocked from the core clock) ticks once per fixed number of
//! instructions. The firmware measures that ratio with a calibration loop of exactly 2,000,000
//! instructions and reports ticks per case; instructions = ticks × 2,000,000 / calibration ticks.
//! The count has SysTick's resolution (50 instructions on mps2-an505) and is the same every run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cairn_verifier::test_support::Fixture;
use object::read::elf::{ElfFile32, ProgramHeader};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::cases::{self, Check};
use crate::toolchain::{TARGET, debian_rust};

const QEMU_TIMEOUT: Duration = Duration::from_secs(600);
/// Two p256-cm4 verifications on a Cortex-M4 (its README: ~1.23 M cycles each).
const TWO_P256_CM4_VERIFIES: u64 = 2 * 1_225_746;

/// The crypto backend the firmware links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// RustCrypto p256 0.14 (the verifier's own `Software`).
    Software,
    /// RustCrypto p256 0.13, for comparison.
    P256v013,
    /// p256-cm4 0.4.0 assembly, adapted to Armv8-M at build time.
    P256Cm4,
    /// p256-cm4, and salty for Ed25519 (witness cosignatures).
    P256Cm4Salty,
    /// p256-cm4, and ed25519-dalek with curve25519-dalek's precomputed tables.
    P256Cm4DalekFast,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Software => "software",
            Backend::P256v013 => "p256-013",
            Backend::P256Cm4 => "p256-cm4",
            Backend::P256Cm4Salty => "p256-cm4+salty",
            Backend::P256Cm4DalekFast => "p256-cm4+dalek-fast",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        [
            Backend::Software,
            Backend::P256v013,
            Backend::P256Cm4,
            Backend::P256Cm4Salty,
            Backend::P256Cm4DalekFast,
        ]
        .into_iter()
        .find(|b| b.name() == s)
        .with_context(|| {
            format!(
                "unknown backend {s:?} (software, p256-013, p256-cm4, p256-cm4+salty, \
                 p256-cm4+dalek-fast)"
            )
        })
    }

    fn features(self) -> &'static [&'static str] {
        match self {
            Backend::Software => &[],
            Backend::P256v013 => &["p256-013"],
            Backend::P256Cm4 => &["p256-cm4"],
            Backend::P256Cm4Salty => &["p256-cm4", "ed25519-salty"],
            Backend::P256Cm4DalekFast => &["p256-cm4", "ed25519-fast"],
        }
    }

    fn uses_p256_cm4(self) -> bool {
        self.features().contains(&"p256-cm4")
    }
}

/// One firmware build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variant {
    backend: Backend,
    /// sha2's compact (rolled) SHA-256 instead of the unrolled default: smaller, slower.
    compact_sha2: bool,
}

impl Variant {
    pub(crate) fn label(self) -> String {
        format!(
            "{}{}",
            self.backend.name(),
            if self.compact_sha2 {
                "+compact-sha2"
            } else {
                ""
            }
        )
    }
}

impl Variant {
    /// What devices ship: P-256 by p256-cm4, Ed25519 by the verifier's ed25519-dalek, the
    /// unrolled SHA-256 (docs/witness.md §7).
    pub(crate) const SHIPPED: Variant = Variant {
        backend: Backend::P256Cm4,
        compact_sha2: false,
    };
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_default()
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// One case's result as the firmware printed it.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) verdict: String,
    ticks: u64,
    stack: u64,
}

/// One variant's run.
pub(crate) struct Run {
    pub(crate) variant: Variant,
    calibration: u64,
    pub(crate) outcomes: BTreeMap<String, Outcome>,
    pub(crate) elf: PathBuf,
}

impl Run {
    pub(crate) fn instructions(&self, case: &str) -> Option<u64> {
        let o = self.outcomes.get(case)?;
        Some(o.ticks * 2_000_000 / self.calibration)
    }
}

pub(crate) fn run(args: &[String], measure: bool) -> Result<()> {
    let mut variants = Vec::new();
    let mut compact = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => {
                let name = it.next().context("--backend needs a value")?;
                variants.push(Backend::parse(name)?);
            }
            "--compact-sha2" => compact = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    let variants: Vec<Variant> = if variants.is_empty() {
        if measure {
            // Everything side by side, in one run.
            vec![
                Variant {
                    backend: Backend::Software,
                    compact_sha2: false,
                },
                Variant {
                    backend: Backend::Software,
                    compact_sha2: true,
                },
                Variant {
                    backend: Backend::P256v013,
                    compact_sha2: false,
                },
                Variant {
                    backend: Backend::P256Cm4,
                    compact_sha2: false,
                },
                Variant {
                    backend: Backend::P256Cm4,
                    compact_sha2: true,
                },
            ]
        } else {
            // The backends a device would ship, each against the same cases.
            vec![
                Variant {
                    backend: Backend::Software,
                    compact_sha2: compact,
                },
                Variant {
                    backend: Backend::P256Cm4,
                    compact_sha2: compact,
                },
            ]
        }
    } else {
        variants
            .into_iter()
            .map(|backend| Variant {
                backend,
                compact_sha2: compact,
            })
            .collect()
    };

    let work = target_dir().join("m33");
    let fixture = Fixture::new();
    let all = all_cases(&fixture)?;
    let cases_rs = cases::write(
        &work.join("cases"),
        &cases::Anchors::of_fixture(&fixture),
        &all,
    )?;
    println!(
        "m33: {} cases written to {}",
        all.len(),
        work.join("cases").display()
    );

    let mut runs = Vec::new();
    for variant in variants {
        let kept = work.join(format!("boot-check-{}.elf", variant.label()));
        runs.push(build_and_run(&work, &cases_rs, variant, &all, &kept)?);
    }
    if measure {
        report(&work, &cases_rs, &runs)?;
    }
    Ok(())
}

/// Builds the firmware with the cases of `cases_rs` (written by [`cases::write`]), runs it under
/// QEMU (the ELF kept as `kept`) and fails unless every verdict is the expected one.
pub(crate) fn build_and_run(
    work: &Path,
    cases_rs: &Path,
    variant: Variant,
    all: &[cases::Case],
    kept: &Path,
) -> Result<Run> {
    let elf = build(work, cases_rs, variant, false)?;
    std::fs::copy(&elf, kept)?;
    let (calibration, outcomes) = qemu(kept)?;
    let run = Run {
        variant,
        calibration,
        outcomes,
        elf: kept.to_path_buf(),
    };
    check_verdicts(&run, all)?;
    Ok(run)
}

fn check_verdicts(run: &Run, all: &[cases::Case]) -> Result<()> {
    let mut failed = Vec::new();
    let width = all
        .iter()
        .filter(|c| !c.name.starts_with(crate::wycheproof_cases::PREFIX))
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max(30);
    println!(
        "{:<width$} {:<26} {:>12} {:>7}",
        "case", "verdict", "instructions", "stack"
    );
    let (mut wycheproof, mut wycheproof_valid) = (0usize, 0usize);
    for case in all {
        let Some(o) = run.outcomes.get(case.name) else {
            failed.push(format!("{}: no verdict printed", case.name));
            continue;
        };
        let mark = if o.verdict == case.expect {
            ""
        } else {
            "  UNEXPECTED"
        };
        if !mark.is_empty() {
            failed.push(format!(
                "{}: got {}, expected {}",
                case.name, o.verdict, case.expect
            ));
        }
        if case.name.starts_with(crate::wycheproof_cases::PREFIX) {
            // Hundreds of them: counted here, each one named only if it disagrees.
            wycheproof += 1;
            wycheproof_valid += usize::from(case.expect == "valid");
            continue;
        }
        let instructions = run.instructions(case.name).unwrap_or_default();
        println!(
            "{:<width$} {:<26} {instructions:>12} {:>7}{mark}",
            case.name, o.verdict, o.stack
        );
    }
    if wycheproof > 0 {
        println!(
            "{:<width$} {wycheproof} cases ({wycheproof_valid} valid accepted, {} invalid refused) unless named above",
            "wycheproof (ECDSA P-256)",
            wycheproof - wycheproof_valid
        );
    }
    ensure!(
        failed.is_empty(),
        "Cortex-M33 boot check, backend {}: {} unexpected verdicts:\n  {}",
        run.variant.label(),
        failed.len(),
        failed.join("\n  ")
    );
    println!(
        "m33: backend {}: every verdict as expected ({} cases, QEMU mps2-an505, Cortex-M33)",
        run.variant.label(),
        all.len()
    );
    Ok(())
}

/// Builds the firmware (release profile: opt-level "s", fat LTO) and returns the ELF's path.
fn build(work: &Path, cases_rs: &Path, variant: Variant, baseline: bool) -> Result<PathBuf> {
    let firmware = root().join("verifier-nostd/firmware");
    let target_dir = work.join("firmware-target");
    let mut features: Vec<&str> = variant.backend.features().to_vec();
    if baseline {
        features.push("baseline");
    }
    let mut cmd = Command::new("/usr/bin/cargo");
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "-Zbuild-std=core",
        "--target",
        TARGET,
    ])
    .arg("--manifest-path")
    .arg(firmware.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    debian_rust(&mut cmd);
    let mut rustflags = "-C linker=ld.lld -C link-arg=-Tlink.x".to_owned();
    if variant.compact_sha2 {
        rustflags.push_str(" --cfg sha2_backend_soft=\"compact\"");
    }
    cmd.env(
        "CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS",
        rustflags,
    )
    .env("CAIRN_CASES", cases_rs);

    // p256-cm4 is patched for this build only: keep the committed lock file as it is.
    let lock = firmware.join("Cargo.lock");
    let saved_lock = std::fs::read(&lock).ok();
    if variant.backend.uses_p256_cm4() {
        let patched = crate::p256_cm4::p256_cm4_for_v8m(work, &firmware)?;
        cmd.arg("--config").arg(format!(
            "patch.crates-io.p256-cm4.path={:?}",
            patched.display().to_string()
        ));
    }
    let started = Instant::now();
    let status = cmd
        .status()
        .context("running /usr/bin/cargo (is cargo-web installed? run tools/setup)");
    if let Some(saved) = saved_lock {
        std::fs::write(&lock, saved)?;
    }
    let status = status?;
    ensure!(status.success(), "firmware build failed ({status})");
    let elf = target_dir.join(TARGET).join("release/cairn-firmware-qemu");
    println!(
        "m33: built {}{} in {:.1} s",
        variant.label(),
        if baseline { " (baseline)" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(elf)
}

/// Runs the firmware under QEMU with instruction counting; returns the calibration ticks and the
/// outcome of each case.
fn qemu(elf: &Path) -> Result<(u64, BTreeMap<String, Outcome>)> {
    let mut child = Command::new("qemu-system-arm")
        .args([
            "-machine",
            "mps2-an505",
            "-cpu",
            "cortex-m33",
            "-nographic",
            "-monitor",
            "none",
        ])
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
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");

    let mut calibration = None;
    let mut outcomes = BTreeMap::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("calibration: 2000000 instructions = ") {
            calibration = rest.strip_suffix(" ticks").and_then(|t| t.parse().ok());
        } else if let Some(rest) = line.strip_prefix("case ") {
            let (name, outcome) =
                parse_case(rest).with_context(|| format!("unparsable firmware line {line:?}"))?;
            outcomes.insert(name, outcome);
        } else if line.starts_with("FAIL") {
            eprintln!("{line}");
        }
    }
    println!(
        "m33: QEMU ran {} for {:.1} s ({status})",
        elf.display(),
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        print!("{stdout}");
    }
    let calibration = calibration.context("no calibration line from the firmware")?;
    ensure!(
        calibration > 0,
        "calibration loop took no ticks: is -icount in effect?"
    );
    Ok((calibration, outcomes))
}

/// `NAME: VERDICT (expected X) ok ticks=T stack=S`
fn parse_case(rest: &str) -> Option<(String, Outcome)> {
    let (name, rest) = rest.split_once(": ")?;
    let (verdict, rest) = rest.split_once(" (expected ")?;
    let ticks = rest
        .split_once("ticks=")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stack = rest.split_once("stack=")?.1.trim().parse().ok()?;
    Some((
        name.to_owned(),
        Outcome {
            verdict: verdict.to_owned(),
            ticks,
            stack,
        },
    ))
}

/// What an ELF puts in flash.
struct FlashSize {
    /// Bytes of loadable segments whose load address is in flash.
    total: u64,
    text: u64,
    rodata: u64,
    allocator_symbols: Vec<String>,
}

fn flash_size(elf: &Path) -> Result<FlashSize> {
    let data = std::fs::read(elf)?;
    let file = ElfFile32::<object::Endianness>::parse(&*data)?;
    let endian = file.endian();
    let mut total = 0u64;
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == object::elf::PT_LOAD
            && crate::flash::FLASH.contains(&u64::from(ph.p_paddr(endian)))
        {
            total += u64::from(ph.p_filesz(endian));
        }
    }
    let section = |name: &str| file.section_by_name(name).map_or(0, |s| s.size());
    let allocator_symbols = file
        .symbols()
        .filter_map(|s| s.name().ok())
        .filter(|n| {
            n.contains("__rust_alloc") || n.contains("__rg_alloc") || n.contains("__rdl_alloc")
        })
        .map(str::to_owned)
        .collect();
    Ok(FlashSize {
        total,
        text: section(".text"),
        rodata: section(".rodata"),
        allocator_symbols,
    })
}

fn kib(bytes: u64) -> String {
    format!("{}.{}", bytes / 1024, bytes % 1024 * 10 / 1024)
}

#[expect(clippy::too_many_lines, reason = "one table and its JSON twin")]
fn report(work: &Path, cases_rs: &Path, runs: &[Run]) -> Result<()> {
    // The baseline links no verifier code, so one build serves every variant.
    let base_variant = Variant {
        backend: Backend::Software,
        compact_sha2: false,
    };
    let base_elf = work.join("boot-check-baseline.elf");
    std::fs::copy(build(work, cases_rs, base_variant, true)?, &base_elf)?;
    let base = flash_size(&base_elf)?;
    let mut breakdowns = String::new();
    let image_len = Fixture::new().image.len();
    let spec = Fixture::new().spec();
    let valid_depth = cairn_verifier::merkle::inclusion_proof_len(spec.index, spec.tree_size);
    let cases = all_cases(&Fixture::new())?;
    let delivery_cases: Vec<&str> = cases
        .iter()
        .filter(|c| matches!(c.check, Check::Delivery { .. }))
        .map(|c| c.name)
        .collect();

    let mut table = String::new();
    writeln!(
        table,
        "{:<24} {:>14} {:>11} {:>12} {:>12} {:>12} {:>9} {:>8}",
        "backend",
        "flash boot KiB",
        "peak stack",
        "boot d=20",
        "boot valid",
        "re-check",
        "vs 2×cm4",
        "heap"
    )?;
    let mut json = Vec::new();
    let mut mcuboot_table = crate::mcuboot_cases::header();
    for run in runs {
        let full = flash_size(&run.elf)?;
        let (mcuboot_row, mcuboot_json) =
            crate::mcuboot_cases::measurements(&run.variant.label(), &|case| {
                run.instructions(case)
            })?;
        mcuboot_table.push('\n');
        mcuboot_table.push_str(&mcuboot_row);
        ensure!(
            full.allocator_symbols.is_empty(),
            "an allocator is linked into the {} firmware: {:?}",
            run.variant.label(),
            full.allocator_symbols
        );
        let boot_flash = (full.text + full.rodata).saturating_sub(base.text + base.rodata);
        if !run.variant.compact_sha2 && run.variant.backend != Backend::P256v013 {
            write!(
                breakdowns,
                "{} ({} bytes):\n{}",
                run.variant.label(),
                boot_flash,
                crate::flash::breakdown(&run.elf, &base_elf, boot_flash)?
            )?;
        }
        let peak_stack = delivery_cases
            .iter()
            .filter_map(|c| run.outcomes.get(*c))
            .map(|o| o.stack)
            .max()
            .unwrap_or(0);
        let d20 = run
            .instructions(cases::MEASURE_CASE)
            .context("measurement case missing")?;
        let d3 = run.instructions("valid").context("valid case missing")?;
        let recheck = run
            .instructions("installed-recheck")
            .context("re-check case missing")?;
        let verify = run
            .instructions("verify-valid")
            .context("verify case missing")?;
        // Both fit in f64's 52-bit mantissa many times over.
        let ratio =
            f64::from(u32::try_from(d20)?) / f64::from(u32::try_from(TWO_P256_CM4_VERIFIES)?);
        writeln!(
            table,
            "{:<24} {:>14} {:>11} {:>12} {:>12} {:>12} {:>9.2} {:>8}",
            run.variant.label(),
            kib(boot_flash),
            peak_stack,
            d20,
            d3,
            recheck,
            ratio,
            0
        )?;
        json.push(serde_json::json!({
            "backend": run.variant.label(),
            "witness": {},
            "flash_boot_check_bytes": boot_flash,
            "flash_text_bytes": full.text,
            "flash_rodata_bytes": full.rodata,
            "flash_loadable_bytes": full.total,
            "peak_stack_bytes": peak_stack,
            "heap_bytes": 0,
            "calibration_ticks_per_2m_instructions": run.calibration,
            "instructions_boot_check_depth20": d20,
            "instructions_boot_check_valid": d3,
            "valid_proof_depth": valid_depth,
            "instructions_installed_recheck": recheck,
            "instructions_one_verify_call": verify,
            "ratio_to_two_p256_cm4_verifies": ratio,
            "mcuboot_boot_check_vs_sha256_floor": mcuboot_json,
            "cases": run.outcomes.iter().map(|(k, o)| (k.clone(), serde_json::json!({
                "verdict": o.verdict,
                "instructions": o.ticks * 2_000_000 / run.calibration,
                "stack": o.stack,
            }))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    println!();
    println!(
        "Cortex-M33 (QEMU mps2-an505), opt-level \"s\", fat LTO, codegen-units 1, panic abort."
    );
    println!(
        "flash boot: text+rodata of the firmware minus the same firmware without the verifier"
    );
    println!(
        "  (baseline: text {} + rodata {} bytes of harness and test data);",
        base.text, base.rodata
    );
    println!(
        "peak stack: painted, over every delivery case; instructions from SysTick under -icount shift=0"
    );
    println!(
        "  ({} ticks per 2,000,000 instructions); boot d=20: full boot check, proof depth 20,",
        runs.first().map_or(0, |r| r.calibration)
    );
    println!(
        "  {image_len}-byte image; boot valid: the same, proof depth {valid_depth}; re-check: installed"
    );
    println!("  image digest only; heap: no allocator is linked.");
    print!("{table}");
    println!();
    println!(
        "Witness cosignatures (C2SP tlog-cosignature, Ed25519), instructions: the whole boot check \
         with 0 (no policy), 2 and 3 cosignatures checked (2-of-3 policy), one Ed25519 \
         verification alone, and the flash of cosignature parsing + Ed25519 + SHA-512:"
    );
    print!("{}", crate::witness_cases::report(runs, &mut json)?);
    println!();
    println!(
        "MCUboot releases: the whole boot check (checkpoint, inclusion, release and MCUboot \
         signatures, one hash pass over the image) next to a SHA-256-only pass over the same image, \
         same backend, instructions:"
    );
    println!("{mcuboot_table}");
    println!();
    println!(
        "Where the boot check's flash goes (symbols by what they implement, minus the baseline):"
    );
    print!("{breakdowns}");
    let path = work.join("report.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::json!({
            "baseline_text_bytes": base.text,
            "baseline_rodata_bytes": base.rodata,
            "image_bytes": image_len,
            "variants": json,
        }))?,
    )?;
    println!("written to {}", path.display());
    Ok(())
}

/// Every case the firmware runs: the boot check's and the MCUboot image check's.
fn all_cases(f: &Fixture) -> Result<Vec<cases::Case>> {
    let mut all = cases::all(f)?;
    all.extend(crate::mcuboot_cases::all(f)?);
    all.extend(crate::wycheproof_cases::all()?);
    Ok(all)
}
