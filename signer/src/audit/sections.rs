//! One log section of a pack checked against its checkpoint (docs/audit.md, "How a pack is
//! verified"): the checkpoint's origin and signature, the entries' order and leaf hashes, the
//! multi-leaf proof to the root, and every entry decoded.

use cairn_vault::tree::{MultiProofError, multi_root};
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{Kind, Statement};
use cairn_verifier::types::Hash;

use super::pack::Section;
use super::verified::Verified;

/// A log section with every entry's statement decoded.
pub(super) struct Decoded<'p> {
    /// `(index, leaf hash, entry, statement)` in log order; a statement that did not decode is a
    /// finding and `None` here.
    pub(super) entries: Vec<(u64, Hash, &'p [u8], Option<Statement<'p>>)>,
}

impl<'p> Decoded<'p> {
    pub(super) fn find(&self, index: u64) -> Option<&(u64, Hash, &'p [u8], Option<Statement<'p>>)> {
        self.entries
            .binary_search_by_key(&index, |e| e.0)
            .ok()
            .map(|i| &self.entries[i])
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Every entry's statement, decoded on every core (the table the later steps read: the largest
/// part of a large pack's verification when it was decoded on one core, docs/scale.md).
fn decode_all<'p>(entries: &[&'p [u8]]) -> Vec<Result<Statement<'p>, cairn_verifier::Error>> {
    let chunk = entries.len().div_ceil(threads()).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .map(|es| s.spawn(move || es.iter().map(|e| Statement::decode(e)).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Checks a section's runs, leaf hashes and proof against its checkpoint root (the checkpoint's
/// signature is checked by the caller), and decodes every entry.
pub(super) fn check_section<'p>(
    v: &mut Verified,
    log: &str,
    section: &Section<'p>,
    root: Option<(u64, Hash)>,
) -> Decoded<'p> {
    let mut indices = Vec::with_capacity(section.len());
    let mut hashes = Vec::with_capacity(section.len());
    let mut entries = Vec::with_capacity(section.len());
    let mut ordered = true;
    for run in &section.runs {
        for (i, (hash, entry)) in run.entries.iter().enumerate() {
            let index = run.start.saturating_add(i as u64);
            if indices.last().is_some_and(|&l| l >= index) {
                ordered = false;
            }
            indices.push(index);
            hashes.push(*hash);
            entries.push(*entry);
        }
    }
    if !ordered {
        v.fail(
            format!("{log} entries"),
            "the runs are not in strictly increasing index order",
        );
    }
    // Leaf hashes, on every core.
    let bad: Vec<usize> = {
        let chunk = entries.len().div_ceil(threads()).max(1);
        std::thread::scope(|s| {
            let workers: Vec<_> = entries
                .chunks(chunk)
                .zip(hashes.chunks(chunk))
                .enumerate()
                .map(|(c, (es, hs))| {
                    s.spawn(move || {
                        es.iter()
                            .zip(hs)
                            .enumerate()
                            .filter(|(_, (e, h))| leaf_hash(&Software, e) != **h)
                            .map(|(i, _)| c * chunk + i)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    for i in bad {
        v.fail(
            format!("{log} entry {}", indices[i]),
            "its bytes do not hash to the leaf hash recorded with it (the entry or the hash was altered)",
        );
    }
    if let Some((size, expected)) = root {
        match multi_root(&indices, &hashes, size, &section.proof, threads()) {
            Ok(got) if got == expected => {}
            Ok(got) => v.fail(
                format!("{log} proof"),
                format!(
                    "the entries and the {} proof hashes give root {}, not the checkpoint's {}",
                    section.proof.len(),
                    hex::encode(got),
                    hex::encode(expected)
                ),
            ),
            Err(MultiProofError::Leaves) => v.fail(
                format!("{log} entries"),
                format!(
                    "an index is repeated, out of order or beyond the checkpoint's size {size}"
                ),
            ),
            Err(e) => v.fail(format!("{log} proof"), e.to_string()),
        }
    }
    let statements = decode_all(&entries);
    let mut decoded = Vec::with_capacity(entries.len());
    for (((index, hash), entry), statement) in
        indices.into_iter().zip(hashes).zip(entries).zip(statements)
    {
        let statement = match statement {
            Ok(s) => Some(s),
            Err(e) => {
                v.fail(
                    format!("{log} entry {index}"),
                    format!("does not decode: {e}"),
                );
                None
            }
        };
        decoded.push((index, hash, entry, statement));
    }
    Decoded { entries: decoded }
}

/// Ranges of `want` not in `have` (whose entries are in index order), as `a..b` text: one walk
/// over the entries inside `want`, not a search per index.
pub(super) fn gaps(have: &Decoded<'_>, want: std::ops::Range<u64>) -> Vec<String> {
    let from = have.entries.partition_point(|e| e.0 < want.start);
    let mut out = Vec::new();
    let mut next = want.start;
    for e in have.entries[from..].iter().take_while(|e| e.0 < want.end) {
        if e.0 > next {
            out.push(format!("{next}..{}", e.0));
        }
        next = next.max(e.0 + 1);
    }
    if next < want.end {
        out.push(format!("{next}..{}", want.end));
    }
    out
}

pub(super) fn checkpoint_root(
    v: &mut Verified,
    item: &str,
    note: &[u8],
    origin: &str,
    key: Option<PublicKey>,
) -> Option<(u64, Hash)> {
    let cp = match Checkpoint::parse(note) {
        Ok(cp) => cp,
        Err(e) => {
            v.fail(item, format!("not a checkpoint note: {e}"));
            return None;
        }
    };
    if cp.origin != origin {
        v.fail(item, format!("origin {:?}, expected {origin:?}", cp.origin));
    }
    match key.map(|k| LogKey::new(origin, origin, k, &Software)) {
        Some(Some(k)) => {
            if let Err(e) = cp.verify(&k, &Software) {
                v.fail(item, format!("signature: {e}"));
            }
        }
        Some(None) => v.fail(item, format!("{origin:?} is not a valid key name")),
        None => v.fail(item, "no verified key to check its signature with"),
    }
    Some((cp.size.0, cp.root))
}

/// What an entry of this kind is called in a finding.
pub(super) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::RELEASE => "release",
        Kind::MANIFEST => "device manifest",
        Kind::CEREMONY => "ceremony record",
        Kind::SESSION => "session record",
        Kind::KEY => "key statement",
        Kind::REJECTION => "rejection",
        Kind::PLAN => "rollout plan",
        Kind::APPROVAL => "gate approval",
        Kind::DEVICE_EVENT => "device event",
        Kind::CAMPAIGN_EVENT => "campaign event",
        Kind::RELAY_CHECKPOINT => "relay checkpoint record",
        _ => "entry",
    }
}
