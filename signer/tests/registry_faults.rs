//! Failed syscalls in the device registry's imports (docs/eligibility.md), injected by
//! `strace --inject` (the helpers of `vault/tests/common/strace.rs`): `fdatasync`, `fsync` and
//! `write` of the importing process fail with `EIO` or `ENOSPC` at chosen calls. After each:
//!
//! - the import that hit it returns an error naming the errno and the registry's path, and no
//!   import was acknowledged that is not durable;
//! - the same handle refuses the next import (`Error::RegistryPoisoned`): a failed `fsync` may
//!   have dropped what the kernel accepted, so only a reopen recovers from what is durable;
//! - a reopen without faults shows every acknowledged import (all or nothing of the one in
//!   flight: its devices are all there or none is), and the next import succeeds.
//!
//! The importer is this test binary re-executed under strace with `CAIRN_REGISTRY_FAULT_DIR` set;
//! it prints its protocol with `writev` on its own descriptor of stdout, so that `write` faults
//! land in the registry's files rather than in the protocol.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a panic is a failed test"
)]

#[path = "../../vault/tests/common/strace.rs"]
mod strace;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use cairn_signer::Error;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::testfleet;
use cairn_verifier::types::UnixTime;
use strace::Fault;

/// Set in the child: the directory with `registry/` and the import files.
const CHILD_DIR: &str = "CAIRN_REGISTRY_FAULT_DIR";
/// Imports per run; import `k` holds devices 1 to `DEVICES_PER_IMPORT * (k + 1)`.
const IMPORTS: u64 = 4;
const DEVICES_PER_IMPORT: u64 = 12;
const NOW: UnixTime = UnixTime(1_795_651_200);

/// Devices the registry holds after import `k`.
fn devices_after(k: u64) -> u64 {
    DEVICES_PER_IMPORT * (k + 1)
}

/// The importer, under strace. Without `CAIRN_REGISTRY_FAULT_DIR` it returns at once.
#[test]
fn registry_importer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/fd/1")
        .unwrap();
    let mut say = |line: String| {
        let line = format!("\nimporter: {line}\n");
        let n = out
            .write_vectored(&[std::io::IoSlice::new(line.as_bytes())])
            .unwrap_or(0);
        if n != line.len() {
            std::process::exit(3);
        }
    };
    let registry = match Registry::open(dir.join("registry")) {
        Ok(r) => r,
        Err(e) => return say(format!("failed open: {e}")),
    };
    for k in 0..IMPORTS {
        let csv = std::fs::read(dir.join(format!("import-{k}.csv"))).unwrap();
        say(format!("importing {k}"));
        match registry.import(&csv, Format::Csv) {
            Ok(r) => say(format!("ack {k} {}", r.import)),
            Err(e) => {
                say(format!("failed {k}: {e}"));
                // The same handle, again: refused, never written.
                match registry.import(&csv, Format::Csv) {
                    Err(e @ Error::RegistryPoisoned { .. }) => say(format!("refused: {e}")),
                    other => say(format!("continued: {other:?}")),
                }
                return;
            }
        }
    }
}

struct Outcome {
    fault: Fault,
    landed: Vec<String>,
    saw: String,
    reopened: String,
}

/// A trusted registry in `dir/registry` and the import files: import `k` holds devices 1 to
/// `devices_after(k)`.
fn prepare(dir: &Path) {
    let fleet = testfleet::synthetic(devices_after(IMPORTS - 1), NOW).unwrap();
    {
        let registry = Registry::open(dir.join("registry")).unwrap();
        registry.trust(&fleet.ca.der).unwrap();
    }
    let lines: Vec<&str> = fleet.csv.lines().collect();
    for k in 0..IMPORTS {
        let rows = usize::try_from(devices_after(k)).unwrap();
        let mut csv = lines[..=rows].join("\n");
        csv.push('\n');
        std::fs::write(dir.join(format!("import-{k}.csv")), csv).unwrap();
    }
}

/// What the importer said, checked line by line.
struct Protocol {
    /// Imports acknowledged.
    acked: u64,
    /// The import started and neither acknowledged nor failed.
    in_flight: Option<u64>,
    /// The error the importer saw, for the table.
    saw: String,
}

fn read_protocol(said: &[&str], fault: Fault, dir: &Path) -> Protocol {
    let ctx = format!("{fault:?}");
    let mut acked = 0; // imports acknowledged
    let mut in_flight = None;
    let mut saw = "no error".to_owned();
    for line in said {
        if let Some(k) = line.strip_prefix("importing ") {
            in_flight = Some(k.parse::<u64>().unwrap());
        } else if line.starts_with("ack ") {
            acked += 1;
            in_flight = None;
        } else if let Some(e) = line.strip_prefix("failed open: ") {
            assert!(e.contains(fault.errno_text()), "{ctx}: {e}");
            saw = format!("open: {e}");
        } else if let Some(rest) = line.strip_prefix("failed ") {
            let registry = dir.join("registry").display().to_string();
            assert!(
                rest.contains(fault.errno_text()) && rest.contains(&registry),
                "{ctx}: the error does not name the errno and the registry: {rest}"
            );
            saw = format!("import {rest}");
        } else if let Some(e) = line.strip_prefix("refused: ") {
            assert!(
                e.contains("refuses writes until it is reopened"),
                "{ctx}: {e}"
            );
            saw.push_str("; next import refused (poisoned)");
        } else if line.starts_with("continued") {
            panic!("{ctx}: after a failed import the same handle went on: {line}");
        }
    }
    Protocol {
        acked,
        in_flight,
        saw,
    }
}

fn run_case(fault: Fault) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let ctx = format!("{fault:?}");
    prepare(dir.path());
    let trace = dir.path().with_extension("trace");
    let output = fault
        .command(std::env::current_exe().unwrap(), &trace)
        .args([
            "registry_importer_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("strace (tools/setup installs it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("importer: "))
        .collect();
    let mut landed: Vec<String> = strace::injected(&trace)
        .iter()
        .map(|p| strace::store_file(p, dir.path()))
        .collect();
    landed.dedup();

    let Protocol {
        acked,
        in_flight,
        saw,
    } = read_protocol(&said, fault, dir.path());
    if saw == "no error" {
        let swallowed: Vec<&String> = landed
            .iter()
            .filter(|k| k.starts_with("registry") && !k.ends_with("info log"))
            .collect();
        assert!(
            swallowed.is_empty(),
            "{ctx}: the fault landed in {swallowed:?} and every import succeeded: swallowed \
             ({said:?})"
        );
        assert_eq!(acked, IMPORTS, "{ctx}: {said:?}");
    }

    // Reopened without faults: every acknowledged import, all or nothing of the one in flight.
    let registry = Registry::open(dir.path().join("registry"))
        .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let imports = registry.imports().unwrap();
    let devices = registry.devices().unwrap().len() as u64;
    let in_flight_durable = match in_flight {
        Some(k) if imports == acked + 1 => {
            assert_eq!(devices, devices_after(k), "{ctx}: import {k} half there");
            true
        }
        _ => false,
    };
    assert!(
        imports == acked || in_flight_durable,
        "{ctx}: {imports} imports after reopening, {acked} acknowledged ({said:?})"
    );
    if !in_flight_durable && acked > 0 {
        assert_eq!(devices, devices_after(acked - 1), "{ctx}: devices");
    }
    // And it goes on.
    let last = std::fs::read(dir.path().join(format!("import-{}.csv", IMPORTS - 1))).unwrap();
    let report = registry
        .import(&last, Format::Csv)
        .unwrap_or_else(|e| panic!("{ctx}: import after reopen: {e}"));
    assert_eq!(report.devices, devices_after(IMPORTS - 1), "{ctx}");
    Outcome {
        fault,
        landed,
        saw,
        reopened: format!(
            "{imports} imports, {devices} devices ({acked} acknowledged{})",
            match (in_flight, in_flight_durable) {
                (Some(k), true) => format!(", import {k} in flight: durable"),
                (Some(k), false) => format!(", import {k} in flight: not stored"),
                _ => String::new(),
            }
        ),
    }
}

#[test]
fn failed_syncs_and_writes_in_registry_imports_lose_nothing_acknowledged() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let faults = Fault::list(&[
        ("fdatasync", "EIO", &[1, 2, 3, 4, 6]),
        ("fdatasync", "ENOSPC", &[2, 4]),
        ("fsync", "EIO", &[1, 2, 3, 5]),
        ("write", "EIO", &[3, 10, 30]),
        ("write", "ENOSPC", &[6, 20]),
    ]);
    let outcomes: Vec<Outcome> = faults.into_iter().map(run_case).collect();
    println!("| fault | landed in | the importer saw | reopened |");
    println!("|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| `{}` {} (call {}) | {} | {} | {} |",
            o.fault.syscall,
            o.fault.errno,
            o.fault.when,
            if o.landed.is_empty() {
                "not reached".into()
            } else {
                o.landed.join(", ")
            },
            o.saw,
            o.reopened
        );
    }
    let failed = outcomes.iter().filter(|o| o.saw != "no error").count();
    assert!(
        failed >= outcomes.len() / 3,
        "only {failed} of {} faults reached the importer: the injection is not working",
        outcomes.len()
    );
}
