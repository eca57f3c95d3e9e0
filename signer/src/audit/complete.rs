//! Completeness of the signer log's counted kinds (docs/audit.md step 5b, formats.md §2.1): the
//! signer checkpoint's `cairn-kinds` line says how many key statements and relay checkpoint
//! records the log holds up to its size, and where the last one is; the pack must hold exactly
//! those. A pack that leaves out a later relay checkpoint record (and pairs the newest signer
//! checkpoint with an older relay log) or a key statement is named here, with the index of the
//! entry the checkpoint says is last when that is the one missing.

use cairn_verifier::counts::{self, COUNTED, KindCount};
use cairn_verifier::floor;
use cairn_verifier::note::Checkpoint;
use cairn_verifier::rollout::RolloutPlan;
use cairn_verifier::statement::{EntryHeader, Statement};

use super::facts::{Fact, whole};
use super::pack::Pack;
use super::sections::Decoded;
use super::sections::kind_name;
use super::verified::Verified;

/// Step 5b: every key statement and relay checkpoint record up to the signer checkpoint is in the
/// pack. (Their inclusion is proven by step 5; distinct indices make the count exact.)
pub(super) fn check_counted_kinds(v: &mut Verified, pack: &Pack<'_>, signer: &Decoded<'_>) {
    let Ok(checkpoint) = Checkpoint::parse(pack.signer.checkpoint) else {
        return; // named by step 4
    };
    let Some(counted) = counts::parse(checkpoint.extensions) else {
        v.fail(
            "signer log checkpoint",
            format!(
                "no valid `{}` line: nothing proves the pack holds every key statement and relay checkpoint record",
                counts::PREFIX
            ),
        );
        return;
    };
    for (kind, want) in COUNTED.iter().zip(counted) {
        let mut held = KindCount::default();
        // Manifests are not counted kinds: the entries that are not (`Decoded::statements`) hold
        // every counted one, decoded or not.
        for (index, (_, entry), _) in signer.statements() {
            if EntryHeader::peek(entry).is_ok_and(|h| h.kind == *kind) {
                held.add(*index);
            }
        }
        if held == want {
            continue;
        }
        let name = kind_name(*kind);
        let missing = want.count.saturating_sub(held.count);
        match want.last {
            // The last one is named exactly: the checkpoint says where it is.
            Some(last) if held.last != Some(last) => v.fail(
                format!("signer log entry {last} ({name})"),
                format!(
                    "missing: the signer checkpoint counts {} {name}s up to its size, the last at entry {last}; the pack holds {}",
                    want.count, held.count
                ),
            ),
            _ => v.fail(
                format!("signer log {name}s"),
                format!(
                    "the signer checkpoint counts {} up to its size, the pack holds {} ({missing} left out{})",
                    want.count,
                    held.count,
                    held
                        .last
                        .map_or(String::new(), |l| format!(", before entry {l}"))
                ),
            ),
        }
    }
}

/// Step 5c (formats.md §5.1): the plan's campaign sequence was assigned from the log. The signer
/// checkpoint covers the plan, so its `cairn-campaign-floor` line for the release's class must be
/// at least the plan's sequence (equal while the campaign is the class's newest, above once a
/// later plan closed it); and every manifest of the batch carries the plan's sequence.
pub(super) fn check_campaign_sequence(
    v: &mut Verified,
    pack: &Pack<'_>,
    signer: &Decoded<'_>,
    plan: &RolloutPlan<'_>,
    batch: std::ops::Range<u64>,
    item: &str,
) {
    let sequence = plan.campaign_sequence;
    // One walk over the batch (`Decoded::range`), not a binary search of the whole table per
    // index: at 1 M devices that was 2 M searches, each missing the cache (docs/scale.md).
    for (i, _, s) in signer.range(batch).iter() {
        if let Some(Fact::Manifest(m)) = s
            && m.campaign_sequence != sequence
        {
            v.fail(
                format!("signer log entry {i}"),
                format!(
                    "its campaign sequence is {}, its plan's {sequence}",
                    m.campaign_sequence
                ),
            );
        }
    }
    let Ok(checkpoint) = Checkpoint::parse(pack.signer.checkpoint) else {
        return; // named by step 4
    };
    let class = signer
        .statements()
        .find_map(|(_, _, s)| match whole(s.as_ref()) {
            Some(Statement::Release { statement, .. })
                if statement.release_id == plan.release_id =>
            {
                Some((statement.product, statement.family))
            }
            _ => None,
        });
    let Some((product, family)) = class else {
        return; // the missing release is named by step 5
    };
    match floor::for_class(checkpoint.extensions, product.as_str(), family.as_str()) {
        Err(e) => v.fail("signer log checkpoint", e.to_string()),
        Ok(Some(f)) if f >= sequence => {}
        Ok(found) => v.fail(
            item,
            format!(
                "its campaign sequence {sequence} is above the signer checkpoint's `{}` for {product}/{family} ({}): the sequence was not assigned from the log",
                floor::PREFIX,
                found.map_or_else(|| "no line".to_owned(), |f| f.to_string())
            ),
        ),
    }
}
