//! The registry import as a pipeline of batches (docs/scale.md, "What was fixed"): on a file of
//! several batches, the error returned is the one the sequential import returned (a row that does
//! not parse before any row that does not check, a row that does not check before a duplicate
//! id, and the first of each), it names the right row wherever the batches were cut, and nothing
//! is written. A streamed file imports as its bytes do.

#![expect(clippy::unwrap_used, reason = "tests")]

use cairn_signer::registry::{Format, Registry};
use cairn_signer::testfleet;
use cairn_verifier::types::UnixTime;

const NOW: UnixTime = UnixTime(1_795_651_200);
/// More than two of the importer's batches (2,048 rows).
const DEVICES: u64 = 5_000;

/// A row (as a spreadsheet numbers it: the header is row 1) and what it becomes.
type Edit<'a> = (usize, &'a dyn Fn(&str) -> String);

struct Csv {
    lines: Vec<String>,
}

impl Csv {
    /// The file with the rows of `edits` changed.
    fn with(&self, edits: &[Edit<'_>]) -> String {
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let row = i + 1;
                edits
                    .iter()
                    .find(|(r, _)| *r == row)
                    .map_or_else(|| l.clone(), |(_, f)| f(l))
                    + "\n"
            })
            .collect()
    }
}

fn bad_lifecycle(l: &str) -> String {
    l.replacen(",active,", ",retired,", 1)
}

fn bad_column_count(l: &str) -> String {
    l.rsplit_once(',').unwrap().0.to_owned()
}

#[test]
fn the_first_error_of_the_first_kind_wherever_the_batches_cut() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = testfleet::synthetic(DEVICES, NOW).unwrap();
    let registry = Registry::open(dir.path().join("registry")).unwrap();
    registry.trust(&fleet.ca.der).unwrap();
    let csv = Csv {
        lines: fleet.csv.lines().map(str::to_owned).collect(),
    };
    let copy_of = |row: usize| {
        let line = csv.lines[row - 1].clone();
        move |_: &str| line.clone()
    };
    let (dup_of_3, dup_of_2100) = (copy_of(3), copy_of(2100));
    let cases: Vec<(String, &str)> = vec![
        // A bad row in the third batch, one in the second: the second's is named.
        (
            csv.with(&[(4500, &bad_lifecycle), (2060, &bad_lifecycle)]),
            "row 2060: unknown lifecycle state",
        ),
        // The last row of the first batch and the first of the second (rows 2049 and 2050).
        (
            csv.with(&[(2050, &bad_lifecycle), (2049, &bad_lifecycle)]),
            "row 2049: unknown lifecycle state",
        ),
        // A row that does not parse comes before any row that does not check, even an earlier one.
        (
            csv.with(&[(10, &bad_lifecycle), (4900, &bad_column_count)]),
            "row 4900",
        ),
        // A row that does not check comes before a duplicate id, even an earlier one.
        (
            csv.with(&[(20, &dup_of_3), (3000, &bad_lifecycle)]),
            "row 3000: unknown lifecycle state",
        ),
        // A duplicate across batches names both rows; the first duplicate is named.
        (
            csv.with(&[(4999, &dup_of_3), (4000, &dup_of_2100)]),
            "row 4000: device id sc-0002099 already given on row 2100",
        ),
    ];
    for (file, says) in cases {
        let err = registry.import(file.as_bytes(), Format::Csv).unwrap_err();
        assert!(err.to_string().contains(says), "{says}: {err}");
        assert_eq!(
            registry.devices().unwrap().len(),
            0,
            "{says}: a partial import"
        );
        assert_eq!(registry.imports().unwrap(), 0, "{says}: an import counted");
    }
    // The good file, streamed: every device, in one import.
    let report = registry
        .import_from(std::io::Cursor::new(fleet.csv.clone()), Format::Csv)
        .unwrap();
    assert_eq!(
        (report.import, report.added, report.trusted),
        (1, DEVICES, DEVICES)
    );
    assert_eq!(registry.devices().unwrap().len() as u64, DEVICES);
    // Again: every device unchanged, nothing written but the import's number.
    let again = registry.import(fleet.csv.as_bytes(), Format::Csv).unwrap();
    assert_eq!(
        (again.import, again.unchanged, again.added),
        (2, DEVICES, 0)
    );
}
