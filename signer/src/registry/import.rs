//! A fleet file's import (docs/eligibility.md, docs/scale.md): a pipeline of bounded batches.
//!
//! One thread parses the file into batches of [`BATCH_ROWS`] rows; every core checks batches
//! (identifiers, the certificate against the anchors, the record against the stored one); this
//! thread takes the checked batches back in file order, finds duplicate ids and appends each
//! device to the one write batch. Parsing, checking and building the write overlap, and only the
//! batches in flight are held, not the file's rows and every checked device besides.
//!
//! All or nothing is unchanged: nothing is written until every row parsed and checked, and then
//! the whole import is one synced RocksDB write batch. The error returned is the one the
//! sequential form returned: a row that does not parse (the first), else a row that does not
//! check (the first), else the first duplicate id.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_verifier::types::{Id, Version};
use rocksdb::WriteBatch;
use serde::Deserialize;

use super::{
    Anchor, Device, Format, ImportReport, Lifecycle, Registry, check_cert, diff, row_error, storage,
};
use crate::error::{Error, Result};

/// Rows per batch: a batch's hand-offs cost nothing beside its checks (about 60 µs of one core a
/// row), and the batches in flight (a few per core) are a few megabytes.
const BATCH_ROWS: usize = 2048;

/// A row of an import file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    device_id: String,
    product: String,
    family: String,
    hardware_revision: String,
    lifecycle: String,
    firmware_version: String,
    #[serde(default)]
    cohorts: String,
    certificate: String,
}

fn parse_certificate(text: &str) -> std::result::Result<Vec<u8>, String> {
    use base64ct::Encoding as _;
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        let (label, der) =
            der::pem::decode_vec(text.as_bytes()).map_err(|e| format!("bad PEM ({e})"))?;
        if label != "CERTIFICATE" {
            return Err(format!("PEM label {label}, expected CERTIFICATE"));
        }
        Ok(der)
    } else {
        base64ct::Base64::decode_vec(text)
            .map_err(|_| "certificate is neither PEM nor base64 DER".to_owned())
    }
}

impl Row {
    fn check(&self, row: usize, anchors: &[Anchor]) -> Result<(Device, Vec<u8>)> {
        let id = |what: &str, s: &str| -> Result<()> {
            Id::new(s)
                .map(|_| ())
                .ok_or_else(|| row_error(row, format!("{what} {s:?} is not a valid identifier")))
        };
        id("device_id", &self.device_id)?;
        id("hardware_revision", &self.hardware_revision)?;
        for (what, s) in [("product", &self.product), ("family", &self.family)] {
            cairn_verifier::types::Name::new(s)
                .ok_or_else(|| row_error(row, format!("{what} {s:?} is not a valid name")))?;
        }
        let lifecycle = Lifecycle::parse(self.lifecycle.trim()).ok_or_else(|| {
            row_error(
                row,
                format!(
                    "unknown lifecycle state {:?} (manufactured, provisioned, active, suspended, decommissioned)",
                    self.lifecycle
                ),
            )
        })?;
        let version = Version::parse(self.firmware_version.trim()).ok_or_else(|| {
            row_error(
                row,
                format!(
                    "firmware_version {:?} is not MAJOR.MINOR.PATCH",
                    self.firmware_version
                ),
            )
        })?;
        let cohorts: Vec<String> = self
            .cohorts
            .split([';', ' '])
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        for c in &cohorts {
            id("cohort", c)?;
        }
        let der = parse_certificate(&self.certificate).map_err(|e| row_error(row, e))?;
        let cert = check_cert(&der, anchors).map_err(|e| row_error(row, e))?;
        Ok((
            Device {
                id: self.device_id.clone(),
                product: self.product.clone(),
                family: self.family.clone(),
                hardware_revision: self.hardware_revision.clone(),
                lifecycle,
                version,
                cohorts,
                cert,
            },
            der,
        ))
    }
}

/// A checked device, ready to write.
struct Prepared {
    id: String,
    record: Vec<u8>,
    der: Vec<u8>,
    /// What changed (`None`: nothing).
    change: Option<String>,
    added: bool,
    trusted: bool,
}

/// A batch of parsed rows: its sequence number, the index of its first row in the file (0 for
/// the first device), and the rows.
type RowBatch = (usize, usize, Vec<Row>);
/// A checked batch: its sequence number and its devices, or the first row that failed; `None`
/// when it was skipped (an earlier batch failed, so its result cannot be the one returned).
type CheckedBatch = (usize, Option<Result<Vec<Prepared>>>);

/// The rows of a fleet file, one at a time, numbered as the error messages name them.
fn rows<'r>(
    mut reader: impl Read + Send + 'r,
    format: Format,
) -> Result<Box<dyn Iterator<Item = Result<Row>> + Send + 'r>> {
    match format {
        Format::Json => {
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| Error::Registry(format!("reading the fleet file: {e}")))?;
            let rows: Vec<Row> = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Registry(format!("JSON line {} column {}: {e}", e.line(), e.column()))
            })?;
            Ok(Box::new(rows.into_iter().map(Ok)))
        }
        Format::Csv => {
            let reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .buffer_capacity(1 << 20)
                .from_reader(reader);
            // Row numbers as a spreadsheet shows them: the header is row 1.
            Ok(Box::new(reader.into_deserialize::<Row>().enumerate().map(
                |(i, record)| record.map_err(|e| row_error(i + 2, e)),
            )))
        }
    }
}

/// The parsing thread: the rows in batches to `jobs`, until the file ends, a row does not parse
/// (its error returned) or no checker is left. Returns the time spent parsing.
fn parse_batches(
    rows: impl Iterator<Item = Result<Row>>,
    jobs: &SyncSender<RowBatch>,
) -> Result<Duration> {
    let mut rows = rows.peekable();
    let (mut busy, mut seq, mut first) = (Duration::ZERO, 0, 0);
    while rows.peek().is_some() {
        let t = Instant::now();
        let batch = rows
            .by_ref()
            .take(BATCH_ROWS)
            .collect::<Result<Vec<Row>>>()?;
        busy += t.elapsed();
        let n = batch.len();
        if jobs.send((seq, first, batch)).is_err() {
            break; // every checker is gone (a panic): the collector reports it
        }
        seq += 1;
        first += n;
    }
    Ok(busy)
}

/// What one checker needs, shared by all.
struct Checker<'a> {
    registry: &'a Registry,
    anchors: &'a [Anchor],
    /// The spreadsheet row of the file's first device (2 in a CSV file, after the header).
    row_base: usize,
    /// Whether the registry is empty: a first import has nothing to compare with.
    empty: bool,
    /// The lowest sequence number of a batch that failed (`usize::MAX`: none).
    failed: AtomicUsize,
}

impl Checker<'_> {
    /// A checking thread: batches from `jobs` until it closes, each checked row by row (to its
    /// first bad row) and sent to `done`. A batch after one that failed is skipped.
    fn run(&self, jobs: &Mutex<Receiver<RowBatch>>, done: &SyncSender<CheckedBatch>) {
        loop {
            let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
            let Ok((seq, first, batch)) = job else {
                return;
            };
            let result = (seq < self.failed.load(Ordering::Relaxed)).then(|| {
                batch
                    .iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let (device, der) = row.check(first + i + self.row_base, self.anchors)?;
                        self.registry.prepare(device, der, self.empty)
                    })
                    .collect::<Result<Vec<Prepared>>>()
            });
            if matches!(result, Some(Err(_))) {
                self.failed.fetch_min(seq, Ordering::Relaxed);
            }
            drop(batch);
            if done.send((seq, result)).is_err() {
                return;
            }
        }
    }
}

/// The checked batches taken back in file order: duplicate ids found, every device tallied and,
/// while nothing failed, appended to the write batch.
struct Collector<'a> {
    import: u64,
    row_base: usize,
    cfs: [&'a rocksdb::ColumnFamily; 3],
    batch: WriteBatch,
    report: ImportReport,
    /// Every device id so far, with its index in the file.
    seen: HashMap<String, usize>,
    /// Batches that came back before an earlier one.
    waiting: BTreeMap<usize, Option<Result<Vec<Prepared>>>>,
    /// The next batch to take, and the index in the file of the next device.
    next: usize,
    index: usize,
    /// The first row that did not check, and the first duplicate id.
    check_error: Option<Error>,
    duplicate: Option<Error>,
}

impl Collector<'_> {
    fn take(&mut self, (seq, result): CheckedBatch) {
        self.waiting.insert(seq, result);
        while let Some(result) = self.waiting.remove(&self.next) {
            self.next += 1;
            if self.check_error.is_some() {
                continue; // an earlier row failed: it is the error, nothing is written
            }
            // `None`: skipped, because an earlier batch failed (its error comes first).
            match result {
                Some(Ok(devices)) => self.append(devices),
                Some(Err(e)) => self.check_error = Some(e),
                None => {}
            }
        }
    }

    fn append(&mut self, devices: Vec<Prepared>) {
        let [dev_cf, cert_cf, hist_cf] = self.cfs;
        for p in devices {
            let i = self.index;
            self.index += 1;
            self.report.devices += 1;
            if let Some(first) = self.seen.get(p.id.as_str()) {
                if self.duplicate.is_none() {
                    self.duplicate = Some(row_error(
                        i + self.row_base,
                        format!(
                            "device id {} already given on row {}",
                            p.id,
                            first + self.row_base
                        ),
                    ));
                }
                continue;
            }
            self.report.trusted += u64::from(p.trusted);
            match &p.change {
                None => self.report.unchanged += 1,
                Some(change) => {
                    if p.added {
                        self.report.added += 1;
                    } else {
                        self.report.changed += 1;
                    }
                    if self.duplicate.is_none() {
                        self.batch.put_cf(dev_cf, p.id.as_bytes(), &p.record);
                        self.batch.put_cf(cert_cf, p.id.as_bytes(), &p.der);
                        let mut key = self.import.to_be_bytes().to_vec();
                        key.extend_from_slice(p.id.as_bytes());
                        self.batch.put_cf(hist_cf, key, change.as_bytes());
                    }
                }
            }
            self.seen.insert(p.id, i);
        }
    }
}

impl Registry {
    /// Imports a fleet file: every row parsed and checked first (a bad row anywhere, or a
    /// duplicate device id, is an error naming the row, and nothing is written); then new and
    /// changed devices and what changed, in one synced batch.
    pub fn import(&self, bytes: &[u8], format: Format) -> Result<ImportReport> {
        self.import_from(bytes, format)
    }

    /// [`Registry::import`] of a file read from `reader` as it is parsed (a CSV file is never
    /// held whole; a JSON file is). Parsing, the checks on every core and building the write
    /// batch overlap (the module's documentation); nothing is written before every row checked.
    pub fn import_from(&self, reader: impl Read + Send, format: Format) -> Result<ImportReport> {
        let started = Instant::now();
        let rows = rows(reader, format)?;
        let anchors = self.anchors()?;
        let empty = self
            .db
            .iterator_cf(self.cf("devices")?, rocksdb::IteratorMode::Start)
            .next()
            .is_none();
        let import = self.imports()? + 1;
        let row_base = if format == Format::Csv { 2 } else { 1 };
        let checker = Checker {
            registry: self,
            anchors: &anchors,
            row_base,
            empty,
            failed: AtomicUsize::new(usize::MAX),
        };
        let mut collector = Collector {
            import,
            row_base,
            cfs: [self.cf("devices")?, self.cf("certs")?, self.cf("history")?],
            batch: WriteBatch::default(),
            report: ImportReport {
                import,
                ..ImportReport::default()
            },
            seen: HashMap::new(),
            waiting: BTreeMap::new(),
            next: 0,
            index: 0,
            check_error: None,
            duplicate: None,
        };
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let (parsed, panicked) = std::thread::scope(|s| {
            let (jobs_tx, jobs_rx) = sync_channel::<RowBatch>(cores);
            let (done_tx, done_rx) = sync_channel::<CheckedBatch>(cores);
            // The receiving end lives as long as a checker does: if every checker is gone, the
            // parser's next send fails instead of waiting forever.
            let jobs_rx = Arc::new(Mutex::new(jobs_rx));
            let checkers: Vec<_> = (0..cores)
                .map(|_| {
                    let (jobs, done, checker) = (Arc::clone(&jobs_rx), done_tx.clone(), &checker);
                    s.spawn(move || checker.run(&jobs, &done))
                })
                .collect();
            drop((jobs_rx, done_tx));
            let parser = s.spawn(move || parse_batches(rows, &jobs_tx));
            for checked in done_rx {
                collector.take(checked);
            }
            let panicked = checkers.into_iter().any(|c| c.join().is_err());
            (parser.join(), panicked)
        });
        let parse = parsed.map_err(|_| Error::Registry("import parser panicked".into()))?;
        let parse_busy = parse?;
        if panicked {
            return Err(Error::Registry("import worker panicked".into()));
        }
        if let Some(e) = collector.check_error.or(collector.duplicate) {
            return Err(e);
        }
        let mut report = collector.report;
        report.parse_secs = parse_busy.as_secs_f64();
        report.check_secs = started.elapsed().as_secs_f64();
        let mut batch = collector.batch;
        drop(collector.seen);
        batch.put(b"imports", import.to_be_bytes());
        let writing = Instant::now();
        self.synced(batch)?;
        report.write_secs = writing.elapsed().as_secs_f64();
        Ok(report)
    }

    /// A checked device ready to write: its record, and what changed against the stored one.
    fn prepare(&self, device: Device, der: Vec<u8>, empty: bool) -> Result<Prepared> {
        let old = if empty {
            None
        } else {
            self.db
                .get_pinned_cf(self.cf("devices")?, device.id.as_bytes())
                .map_err(storage)?
                .and_then(|v| serde_json::from_slice::<Device>(&v).ok())
        };
        let (change, added) = match &old {
            None => (Some("added".to_owned()), true),
            Some(old) if *old == device => (None, false),
            Some(old) => (Some(diff(old, &device).join("; ")), false),
        };
        Ok(Prepared {
            trusted: device.cert.ca.is_some(),
            record: if change.is_some() {
                serde_json::to_vec(&device).unwrap_or_default()
            } else {
                Vec::new()
            },
            id: device.id,
            der,
            change,
            added,
        })
    }
}
