//! One log section of a pack checked against its checkpoint (docs/audit.md, "How a pack is
//! verified"): the checkpoint's origin and signature, the entries' order and leaf hashes, the
//! multi-leaf proof to the root, and every entry decoded.

use cairn_vault::tree::{MultiProofError, multi_root};
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{Kind, Statement};

use super::facts::Fact;
use cairn_verifier::types::Hash;

use super::pack::Section;
use super::verified::Verified;

/// One entry of a section: `(index, leaf hash, entry, what it states)`; a statement that did not
/// decode is a finding and `None` here.
pub(super) type Entry<'p> = (u64, Hash, &'p [u8], Option<Fact<'p>>);

/// A log section with every entry's statement decoded.
pub(super) struct Decoded<'p> {
    /// The entries in the pack's order (log order unless a finding says otherwise).
    pub(super) entries: Vec<Entry<'p>>,
    /// Whether the indices are strictly increasing (what [`Decoded::range`] needs).
    ordered: bool,
}

impl<'p> Decoded<'p> {
    pub(super) fn find(&self, index: u64) -> Option<&Entry<'p>> {
        self.entries
            .binary_search_by_key(&index, |e| e.0)
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The entries whose indices are in `want`, in index order, each at most once: a walk from the
    /// first (one search, not one per index) when the indices are strictly increasing, else
    /// [`Decoded::find`] per index.
    pub(super) fn range(&self, want: std::ops::Range<u64>) -> Vec<&Entry<'p>> {
        if self.ordered {
            let from = self.entries.partition_point(|e| e.0 < want.start);
            self.entries[from..]
                .iter()
                .take_while(|e| e.0 < want.end)
                .collect()
        } else {
            want.filter_map(|i| self.find(i)).collect()
        }
    }
}

pub(super) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// What one pass over a part of the table found: positions (in the table) of entries whose
/// bytes do not hash to their leaf hash, and of entries that do not decode, with the error.
type PassFindings = (Vec<usize>, Vec<(usize, cairn_verifier::Error)>);

/// Each entry of `part` (at table position `first`) hashed against its leaf hash and decoded into
/// its slot, in one pass: the entry is read once while it is in the cache.
fn hash_and_decode(first: usize, part: &mut [Entry<'_>]) -> PassFindings {
    let (mut bad, mut undecoded) = (Vec::new(), Vec::new());
    for (i, slot) in part.iter_mut().enumerate() {
        if leaf_hash(&Software, slot.2) != slot.1 {
            bad.push(first + i);
        }
        match Statement::decode(slot.2) {
            Ok(st) => slot.3 = Some(Fact::from(st)),
            Err(e) => undecoded.push((first + i, e)),
        }
    }
    (bad, undecoded)
}

/// Checks a section's runs, leaf hashes and proof against its checkpoint root (the checkpoint's
/// signature is checked by the caller), and decodes every entry, keeping its [`Fact`].
///
/// The table is built once, in place: each entry is hashed and decoded on every core straight
/// into its slot (docs/scale.md: before, the statements were decoded into a table of their own
/// and then copied beside the indices, hashes and entries, two tables of every entry alive at
/// once). The findings are the same, in the same order: runs, leaf hashes, proof, decoding.
pub(super) fn check_section<'p>(
    v: &mut Verified,
    log: &str,
    section: &Section<'p>,
    root: Option<(u64, Hash)>,
) -> Decoded<'p> {
    let mut table: Vec<Entry<'p>> = Vec::with_capacity(section.len());
    let mut ordered = true;
    for run in &section.runs {
        for (i, (hash, entry)) in run.entries.iter().enumerate() {
            let index = run.start.saturating_add(i as u64);
            if table.last().is_some_and(|l| l.0 >= index) {
                ordered = false;
            }
            table.push((index, *hash, *entry, None));
        }
    }
    if !ordered {
        v.fail(
            format!("{log} entries"),
            "the runs are not in strictly increasing index order",
        );
    }
    // Leaf hashes and statements, on every core, each part of the table by one thread.
    let chunk = table.len().div_ceil(threads()).max(1);
    let (bad, undecoded): PassFindings = std::thread::scope(|s| {
        let workers: Vec<_> = table
            .chunks_mut(chunk)
            .enumerate()
            .map(|(c, part)| s.spawn(move || hash_and_decode(c * chunk, part)))
            .collect();
        workers
            .into_iter()
            .fold((Vec::new(), Vec::new()), |(mut bad, mut undecoded), w| {
                let (b, u) = w.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                bad.extend(b);
                undecoded.extend(u);
                (bad, undecoded)
            })
    });
    for i in bad {
        v.fail(
            format!("{log} entry {}", table[i].0),
            "its bytes do not hash to the leaf hash recorded with it (the entry or the hash was altered)",
        );
    }
    if let Some((size, expected)) = root {
        let indices: Vec<u64> = table.iter().map(|e| e.0).collect();
        let hashes: Vec<Hash> = table.iter().map(|e| e.1).collect();
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
    for (i, e) in undecoded {
        v.fail(
            format!("{log} entry {}", table[i].0),
            format!("does not decode: {e}"),
        );
    }
    Decoded {
        entries: table,
        ordered,
    }
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
