//! One log section of a pack checked against its checkpoint (docs/audit.md, "How a pack is
//! verified"): the checkpoint's origin and signature, the entries' order and leaf hashes, the
//! multi-leaf proof to the root, and every entry decoded.

use cairn_vault::tree::{Leaves, MultiProofError, multi_root_of};
use cairn_verifier::crypto::{PublicKey, Software};
use cairn_verifier::merkle::leaf_hash;
use cairn_verifier::note::{Checkpoint, LogKey};
use cairn_verifier::statement::{Kind, Statement};

use super::facts::Fact;
use cairn_verifier::types::Hash;

use super::pack::Section;
use super::verified::Verified;

/// One entry of a section: `(index, its leaf hash and bytes in the pack's run, what it states)`;
/// a statement that did not decode is a finding and `None` here. The leaf hash and the bytes
/// are the pack's, borrowed, not copied (docs/scale.md).
pub(super) type Entry<'p> = (u64, &'p (Hash, &'p [u8]), Option<Fact<'p>>);

/// A log section with every entry's statement decoded.
pub(super) struct Decoded<'p> {
    /// The entries in the pack's order (log order unless a finding says otherwise).
    pub(super) entries: Vec<Entry<'p>>,
    /// Whether the indices are strictly increasing (what [`Decoded::range`] needs).
    ordered: bool,
    /// The positions of the entries that are not manifests (undecoded ones included), in order:
    /// the few the steps that look for a kind of statement walk, not the whole table.
    statements: Vec<usize>,
}

impl<'p> Decoded<'p> {
    pub(super) fn find(&self, index: u64) -> Option<&Entry<'p>> {
        self.entries
            .binary_search_by_key(&index, |e| e.0)
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The entries whose indices are in `want`, in index order, each at most once: a slice of the
    /// table (two searches, not one per index, and no copy) when the indices are strictly
    /// increasing, else [`Decoded::find`] per index.
    pub(super) fn range(&self, want: std::ops::Range<u64>) -> Batch<'_, 'p> {
        if self.ordered {
            let from = self.entries.partition_point(|e| e.0 < want.start);
            let to = self.entries.partition_point(|e| e.0 < want.end).max(from);
            Batch::Slice(&self.entries[from..to])
        } else {
            Batch::Found(want.filter_map(|i| self.find(i)).collect())
        }
    }

    /// The entries that are not manifests (undecoded ones included), in the table's order: every
    /// entry a step looking for releases, plans, approvals, key statements, relay checkpoint
    /// records or events, or counting kinds, could find.
    pub(super) fn statements(&self) -> impl DoubleEndedIterator<Item = &Entry<'p>> {
        self.statements.iter().map(|&i| &self.entries[i])
    }
}

/// The entries of [`Decoded::range`].
pub(super) enum Batch<'a, 'p> {
    /// A part of an ordered table.
    Slice(&'a [Entry<'p>]),
    /// Found one by one in a table out of order.
    Found(Vec<&'a Entry<'p>>),
}

impl<'a, 'p> Batch<'a, 'p> {
    pub(super) fn len(&self) -> usize {
        match self {
            Batch::Slice(s) => s.len(),
            Batch::Found(f) => f.len(),
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &'a Entry<'p>> + '_ {
        let (slice, found): (&'a [Entry<'p>], &[&'a Entry<'p>]) = match self {
            Batch::Slice(s) => (s, &[]),
            Batch::Found(f) => (&[], f),
        };
        slice.iter().chain(found.iter().copied())
    }
}

/// The table's entries as the leaves of the section's multi-leaf proof, read in place.
struct TableLeaves<'a, 'p>(&'a [Entry<'p>]);

impl Leaves for TableLeaves<'_, '_> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn index(&self, position: usize) -> u64 {
        self.0[position].0
    }
    fn hash(&self, position: usize) -> &Hash {
        &self.0[position].1.0
    }
}

pub(super) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// How a section's decoded statements become its table's facts, in the decoding pass, on every
/// core: a part of the table at a time, each part with what it sets aside for later (the relay's
/// device events become the summary's facts there, so the table does not keep them).
pub(super) trait Facts<'p>: Sync {
    /// What one part of the table sets aside.
    type Part: Send;
    /// An empty part for `len` entries.
    fn part(&self, len: usize) -> Self::Part;
    /// The fact of the entry at table position `position` (log index `index`), which decoded to
    /// `statement`.
    #[expect(
        clippy::large_types_passed_by_value,
        reason = "the statement is moved into its fact (boxed, or its fields taken), not copied"
    )]
    fn fact(
        &self,
        part: &mut Self::Part,
        position: usize,
        index: u64,
        statement: Statement<'p>,
    ) -> Fact<'p>;
}

/// Every statement kept as its [`Fact`], nothing set aside.
pub(super) struct Plain;

impl<'p> Facts<'p> for Plain {
    type Part = ();
    fn part(&self, _: usize) {}
    fn fact(&self, (): &mut (), _: usize, _: u64, statement: Statement<'p>) -> Fact<'p> {
        Fact::from(statement)
    }
}

/// What one pass over a part of the table found: positions (in the table) of entries whose
/// bytes do not hash to their leaf hash, of entries that do not decode, with the error, and of
/// entries that are not manifests.
type PassFindings = (Vec<usize>, Vec<(usize, cairn_verifier::Error)>, Vec<usize>);

/// Each entry of `part` (at table position `first`) hashed against its leaf hash and decoded into
/// its slot, in one pass: the entry is read once while it is in the cache.
fn hash_and_decode<'p, F: Facts<'p>>(
    first: usize,
    part: &mut [Entry<'p>],
    facts: &F,
) -> (PassFindings, F::Part) {
    let (mut bad, mut undecoded, mut statements) = (Vec::new(), Vec::new(), Vec::new());
    let mut aside = facts.part(part.len());
    for (i, slot) in part.iter_mut().enumerate() {
        let (hash, entry) = (&slot.1.0, slot.1.1);
        if leaf_hash(&Software, entry) != *hash {
            bad.push(first + i);
        }
        match Statement::decode(entry) {
            Ok(st) => slot.2 = Some(facts.fact(&mut aside, first + i, slot.0, st)),
            Err(e) => undecoded.push((first + i, e)),
        }
        if !matches!(slot.2, Some(Fact::Manifest(_))) {
            statements.push(first + i);
        }
    }
    ((bad, undecoded, statements), aside)
}

/// Checks a section's runs, leaf hashes and proof against its checkpoint root (the checkpoint's
/// signature is checked by the caller), and decodes every entry, keeping its [`Fact`] as `facts`
/// makes it. Returns the table and what each part of it set aside, in the table's order.
///
/// The table is built once, in place: each entry is hashed and decoded on every core straight
/// into its slot (docs/scale.md: before, the statements were decoded into a table of their own
/// and then copied beside the indices, hashes and entries, two tables of every entry alive at
/// once). The proof is checked over the table (no copy of its indices and hashes). The findings
/// are the same, in the same order: runs, leaf hashes, proof, decoding.
pub(super) fn check_section<'p, F: Facts<'p>>(
    v: &mut Verified,
    log: &str,
    section: &'p Section<'p>,
    root: Option<(u64, Hash)>,
    facts: &F,
) -> (Decoded<'p>, Vec<F::Part>) {
    let mut table: Vec<Entry<'p>> = Vec::with_capacity(section.len());
    let mut ordered = true;
    for run in &section.runs {
        for (i, leaf) in run.entries.iter().enumerate() {
            let index = run.start.saturating_add(i as u64);
            if table.last().is_some_and(|l| l.0 >= index) {
                ordered = false;
            }
            table.push((index, leaf, None));
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
    let mut parts = Vec::new();
    let (bad, undecoded, statements): PassFindings = std::thread::scope(|s| {
        let workers: Vec<_> = table
            .chunks_mut(chunk)
            .enumerate()
            .map(|(c, part)| s.spawn(move || hash_and_decode(c * chunk, part, facts)))
            .collect();
        workers.into_iter().fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut bad, mut undecoded, mut statements), w| {
                let ((b, u, st), aside) = w.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                bad.extend(b);
                undecoded.extend(u);
                statements.extend(st);
                parts.push(aside);
                (bad, undecoded, statements)
            },
        )
    });
    for i in bad {
        v.fail(
            format!("{log} entry {}", table[i].0),
            "its bytes do not hash to the leaf hash recorded with it (the entry or the hash was altered)",
        );
    }
    if let Some((size, expected)) = root {
        match multi_root_of(&TableLeaves(&table), size, &section.proof, threads()) {
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
    (
        Decoded {
            entries: table,
            ordered,
            statements,
        },
        parts,
    )
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
