//! The simulated fleet, read from the CSV that `cairn devices generate` writes and the signer's
//! registry imports (columns `device_id, product, family, hardware_revision, lifecycle,
//! firmware_version, cohorts, certificate`, in any order).
//!
//! The simulator needs what a device knows about itself for the boot check (formats.md §5: its
//! id, product, family, hardware revision and running version). The header is parsed here, not
//! through `cairn-signer`: this is a device-side tool. A row that cannot be used (an id that is not
//! an identifier, an unparsable version, a repeated id, a short row) is skipped and reported, never
//! fatal; a file without the required columns is.

use std::collections::BTreeSet;
use std::path::Path;

use cairn_verifier::types::{Id, Version};

use crate::error::{Error, Result};

/// Columns the simulator reads; other columns (lifecycle, cohorts, certificate) are ignored.
pub const REQUIRED_COLUMNS: [&str; 5] = [
    "device_id",
    "product",
    "family",
    "hardware_revision",
    "firmware_version",
];

/// What one simulated device knows about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Device id: the MQTT client id and certificate common name, and the manifest's device.
    pub id: String,
    /// Product name.
    pub product: String,
    /// Device family.
    pub family: String,
    /// Hardware revision.
    pub hardware_revision: String,
    /// The firmware version it runs before its first install.
    pub version: Version,
}

/// A row that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Line number as a spreadsheet shows it (the header is line 1).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// The usable rows of a fleet file, in file order, and the rows skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    /// Usable devices.
    pub devices: Vec<DeviceRow>,
    /// Rows that could not be used.
    pub skipped: Vec<Skipped>,
}

impl Fleet {
    /// Reads a fleet CSV file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
        Self::parse(&bytes).map_err(|reason| Error::Fleet {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses fleet CSV text; `Err` only when the file as a whole is unusable.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(bytes);
        let header = reader
            .headers()
            .map_err(|e| format!("header row: {e}"))?
            .clone();
        let mut columns = [0usize; REQUIRED_COLUMNS.len()];
        for (slot, name) in columns.iter_mut().zip(REQUIRED_COLUMNS) {
            *slot = header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("no column {name:?} in the header row"))?;
        }
        let mut fleet = Fleet::default();
        let mut seen = BTreeSet::new();
        for (i, record) in reader.records().enumerate() {
            let line = i as u64 + 2;
            let row = record
                .map_err(|e| e.to_string())
                .and_then(|r| row(&r, &columns));
            match row {
                Ok(device) if seen.insert(device.id.clone()) => fleet.devices.push(device),
                Ok(device) => fleet.skipped.push(Skipped {
                    line,
                    reason: format!("device {} appears again", device.id),
                }),
                Err(reason) => fleet.skipped.push(Skipped { line, reason }),
            }
        }
        Ok(fleet)
    }
}

fn row(
    record: &csv::StringRecord,
    columns: &[usize; REQUIRED_COLUMNS.len()],
) -> Result<DeviceRow, String> {
    let field = |i: usize| -> Result<&str, String> {
        let column = columns.get(i).copied().unwrap_or(usize::MAX);
        let name = REQUIRED_COLUMNS.get(i).copied().unwrap_or("?");
        match record.get(column) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(format!("{name} is empty or missing")),
        }
    };
    let id = field(0)?;
    if Id::new(id).is_none() {
        return Err(format!("device_id {id:?} is not an identifier"));
    }
    let hardware_revision = field(3)?;
    if Id::new(hardware_revision).is_none() {
        return Err(format!(
            "hardware_revision {hardware_revision:?} is not an identifier"
        ));
    }
    let version = field(4)?;
    let version = Version::parse(version)
        .ok_or_else(|| format!("firmware_version {version:?} is not major.minor.patch"))?;
    Ok(DeviceRow {
        id: id.to_owned(),
        product: field(1)?.to_owned(),
        family: field(2)?.to_owned(),
        hardware_revision: hardware_revision.to_owned(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "device_id,product,family,hardware_revision,lifecycle,firmware_version,cohorts,certificate\n";

    #[test]
    fn reads_the_generated_layout_and_skips_unusable_rows() {
        let csv = format!(
            "{HEADER}sc-0000001,Smart Controller,STM32H5,rev-c,active,2.3.1,eu-west,AAAA\n\
             bad id,Smart Controller,STM32H5,rev-c,active,2.3.1,,AAAA\n\
             sc-0000003,Smart Controller,STM32H5,rev-b,active,2.x,,AAAA\n\
             sc-0000004,Smart Controller,STM32H5\n\
             sc-0000001,Smart Controller,STM32H5,rev-c,active,2.3.1,,AAAA\n\
             sc-0000006, Smart Controller ,STM32H5,rev-b,suspended,1.9.4,,\n"
        );
        let fleet = Fleet::parse(csv.as_bytes()).unwrap();
        assert_eq!(
            fleet.devices,
            vec![
                DeviceRow {
                    id: "sc-0000001".into(),
                    product: "Smart Controller".into(),
                    family: "STM32H5".into(),
                    hardware_revision: "rev-c".into(),
                    version: Version::new(2, 3, 1),
                },
                DeviceRow {
                    id: "sc-0000006".into(),
                    product: "Smart Controller".into(),
                    family: "STM32H5".into(),
                    hardware_revision: "rev-b".into(),
                    version: Version::new(1, 9, 4),
                },
            ]
        );
        let lines: Vec<u64> = fleet.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6]);
        assert!(fleet.skipped[0].reason.contains("not an identifier"));
        assert!(fleet.skipped[1].reason.contains("firmware_version"));
        assert!(fleet.skipped[2].reason.contains("hardware_revision"));
        assert!(fleet.skipped[3].reason.contains("appears again"));
    }

    #[test]
    fn columns_in_any_order() {
        let csv =
            "firmware_version,hardware_revision,family,product,device_id\n2.0.0,rev-a,F,P,d-1\n";
        let fleet = Fleet::parse(csv.as_bytes()).unwrap();
        assert_eq!(fleet.devices.len(), 1);
        assert_eq!(fleet.devices[0].id, "d-1");
        assert_eq!(fleet.devices[0].version, Version::new(2, 0, 0));
    }

    #[test]
    fn a_missing_column_is_fatal() {
        let err = Fleet::parse(b"device_id,product,family,lifecycle\n").unwrap_err();
        assert!(err.contains("hardware_revision"), "{err}");
    }
}
