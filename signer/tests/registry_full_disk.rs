//! A full disk under the device registry (docs/log.md, "Faults in the relay's stores and the
//! device registry"): the registry lives on a size-limited tmpfs that the test mounts (it needs
//! root, as CI has; elsewhere it says it was skipped) and that a filler file nearly fills. Imports
//! of new devices go on until the file system is full. Then:
//!
//! - the import that hit `ENOSPC` returns an error that says so and names the registry;
//! - the same handle refuses the next import (`Error::RegistryPoisoned`) instead of going on;
//! - the registry reopens while still full (or refuses to, saying the disk is full), and once space
//!   is freed it holds every acknowledged import, all or nothing of the one that failed, and takes
//!   the next import.
//!
//! Three headrooms (what the filler leaves free) put the failure at different points.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a panic is a failed test"
)]

#[path = "../../vault/tests/common/tmpfs.rs"]
mod tmpfs;

use cairn_signer::Error;
use cairn_signer::registry::{Format, Registry};
use cairn_signer::testfleet;
use cairn_verifier::types::UnixTime;
use tmpfs::{Tmpfs, fill_to};

const NOW: UnixTime = UnixTime(1_795_651_200);
/// New devices per import.
const PER_IMPORT: usize = 256;
/// Devices generated: more than the largest headroom can take.
const DEVICES: u64 = 12_288;

/// The fleet's CSV cut into imports of `PER_IMPORT` new devices each (header repeated).
fn imports(csv: &str) -> Vec<String> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    rows.chunks(PER_IMPORT)
        .map(|chunk| {
            let mut s = format!("{header}\n");
            for row in chunk {
                s.push_str(row);
                s.push('\n');
            }
            s
        })
        .collect()
}

/// What one run saw.
struct Outcome {
    acked: usize,
    error: String,
    reopened_full: String,
    in_flight: &'static str,
}

fn run(headroom: u64, fleet: &testfleet::Fleet, files: &[String]) -> Option<Outcome> {
    let fs = Tmpfs::mount("8m")?;
    let dir = fs.path().join("registry");
    let ctx = format!("headroom {headroom}");
    let registry = Registry::open(&dir).unwrap();
    registry.trust(&fleet.ca.der).unwrap();
    let filler = fill_to(fs.path(), headroom);

    let mut acked = 0;
    let mut error = None;
    for file in files {
        match registry.import(file.as_bytes(), Format::Csv) {
            Ok(report) => {
                assert_eq!(report.added, PER_IMPORT as u64, "{ctx}");
                acked += 1;
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let error = error.unwrap_or_else(|| panic!("{ctx}: the file system never filled"));
    assert!(
        error.contains("No space left on device"),
        "{ctx}: the import failed without saying the disk is full: {error}"
    );
    assert!(
        error.contains(&dir.display().to_string()),
        "{ctx}: the import failed without naming the registry: {error}"
    );
    // The handle does not go on.
    match registry.import(files[acked].as_bytes(), Format::Csv) {
        Err(Error::RegistryPoisoned { .. }) => {}
        other => panic!("{ctx}: after {error:?} the next import returned {other:?}"),
    }
    drop(registry);

    // Reopened while still full: it serves what was acknowledged, or says why not.
    let reopened_full = match Registry::open(&dir) {
        Ok(r) => {
            let imports = usize::try_from(r.imports().unwrap()).unwrap();
            assert!(
                imports >= acked,
                "{ctx}: reopened full with {imports} imports"
            );
            format!("reopens with {imports} imports")
        }
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("No space left on device"),
                "{ctx}: reopening the full registry failed: {e}"
            );
            "refuses to open: no space".into()
        }
    };

    // Space freed: every acknowledged import, all or nothing of the one that failed, and it goes on.
    std::fs::remove_file(&filler).unwrap();
    let registry = Registry::open(&dir).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let imports = usize::try_from(registry.imports().unwrap()).unwrap();
    let devices = registry.devices().unwrap().len();
    let in_flight = if imports == acked + 1 {
        "durable"
    } else {
        assert_eq!(imports, acked, "{ctx}: imports after reopening");
        "not stored"
    };
    assert_eq!(
        devices,
        imports * PER_IMPORT,
        "{ctx}: {imports} imports but {devices} devices: an import is half there"
    );
    let next = &files[imports];
    let report = registry
        .import(next.as_bytes(), Format::Csv)
        .unwrap_or_else(|e| panic!("{ctx}: import after freeing space: {e}"));
    assert_eq!(report.added, PER_IMPORT as u64, "{ctx}");
    Some(Outcome {
        acked,
        error,
        reopened_full,
        in_flight,
    })
}

#[test]
fn a_full_disk_loses_no_acknowledged_import_and_the_registry_goes_on_once_space_is_freed() {
    let fleet = testfleet::synthetic(DEVICES, NOW).unwrap();
    let files = imports(&fleet.csv);
    let mut seen = 0;
    for headroom in [48 << 10, 300 << 10, 1200 << 10] {
        let Some(o) = run(headroom, &fleet, &files) else {
            println!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return;
        };
        println!(
            "headroom {headroom} B: {} imports of {PER_IMPORT} acknowledged, then: {}; while \
             full the registry {}; the import in flight: {}",
            o.acked, o.error, o.reopened_full, o.in_flight
        );
        seen += 1;
    }
    assert_eq!(seen, 3);
}
