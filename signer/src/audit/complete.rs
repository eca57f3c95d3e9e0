//! Completeness of the signer log's counted kinds (docs/audit.md step 5b, formats.md §2.1): the
//! signer checkpoint's `cairn-kinds` line says how many key statements and relay checkpoint
//! records the log holds up to its size, and where the last one is; the pack must hold exactly
//! those. A pack that leaves out a later relay checkpoint record (and pairs the newest signer
//! checkpoint with an older relay log) or a key statement is named here, with the index of the
//! entry the checkpoint says is last when that is the one missing.

use cairn_verifier::counts::{self, COUNTED, KindCount};
use cairn_verifier::note::Checkpoint;
use cairn_verifier::statement::EntryHeader;

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
        for (index, _, entry, _) in &signer.entries {
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
