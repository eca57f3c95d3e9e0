//! The campaign floor a cairn log's checkpoint carries (formats.md §2.2, §5.1): for each device
//! class (product and family) that has a rollout plan in the tree, the campaign sequence of its
//! newest plan. One C2SP extension line per class (C2SP tlog-checkpoint: lines after the root hash
//! are extension lines, covered by the log key's signature like `cairn-kinds`):
//!
//! ```text
//! cairn-campaign-floor <product>/<family> <sequence>
//! ```
//!
//! A device that verifies a checkpoint raises its stored campaign floor to the line for its class
//! before it judges the manifest's campaign sequence, so a decision of a campaign that a newer plan
//! closed is refused as stale (`Error::StaleDecision`), whoever replays it. The sequence is the
//! last space-separated word, so product and family names may contain spaces; the class is
//! compared as the text `<product>/<family>`, and the signer numbers campaigns per that text
//! (two classes whose texts coincide share one counter, which can only close campaigns early).

use crate::error::NoteError;

/// The first word of the extension line.
pub const PREFIX: &str = "cairn-campaign-floor";

/// Every `cairn-campaign-floor` line among a checkpoint's extension lines, as (class text,
/// sequence). A line with the prefix that is not `<class> <sequence>` (a non-empty class, the
/// sequence in its shortest decimal spelling) is an error, never skipped.
pub fn lines(extensions: &str) -> impl Iterator<Item = Result<(&str, u64), NoteError>> {
    extensions.lines().filter_map(|l| {
        let rest = l.strip_prefix(PREFIX)?.strip_prefix(' ')?;
        Some(
            rest.rsplit_once(' ')
                .and_then(|(class, n)| {
                    let ok = !class.is_empty() && class.trim() == class;
                    ok.then_some(class).zip(number(n))
                })
                .ok_or(NoteError::BadFloorLine),
        )
    })
}

/// The floor the extension lines set for the class `product`/`family`: the largest sequence among
/// the lines naming it, `None` when none does.
pub fn for_class(extensions: &str, product: &str, family: &str) -> Result<Option<u64>, NoteError> {
    let mut floor = None;
    for line in lines(extensions) {
        let (class, sequence) = line?;
        let named = class
            .strip_prefix(product)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|f| f == family);
        if named {
            floor = Some(floor.map_or(sequence, |f: u64| f.max(sequence)));
        }
    }
    Ok(floor)
}

/// A decimal number in its shortest spelling (no sign, no leading zero).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// The extension line for `product`/`family` at `sequence` (without its newline).
#[cfg(feature = "alloc")]
pub fn line(product: &str, family: &str, sequence: u64) -> alloc::string::String {
    alloc::format!("{PREFIX} {product}/{family} {sequence}")
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn the_line_round_trips_and_names_its_class_only() {
        let l = line("Smart Controller", "STM32H5", 7);
        assert_eq!(l, "cairn-campaign-floor Smart Controller/STM32H5 7");
        let ext = format!(
            "cairn-kinds 5:0:- 11:0:-\n{l}\n{}\n",
            line("Smart Controller", "STM32U5", 9)
        );
        assert_eq!(for_class(&ext, "Smart Controller", "STM32H5"), Ok(Some(7)));
        assert_eq!(for_class(&ext, "Smart Controller", "STM32U5"), Ok(Some(9)));
        assert_eq!(for_class(&ext, "Smart", "Controller/STM32H5"), Ok(None));
        assert_eq!(for_class(&ext, "Smart Controller", "STM32"), Ok(None));
        assert_eq!(for_class("", "Smart Controller", "STM32H5"), Ok(None));
        // Two lines for one class: the higher counts.
        let two = format!("{l}\n{}\n", line("Smart Controller", "STM32H5", 3));
        assert_eq!(for_class(&two, "Smart Controller", "STM32H5"), Ok(Some(7)));
        // Another extension that merely starts alike is not a floor line.
        assert_eq!(
            for_class("cairn-campaign-floorish x 1\n", "x", "y"),
            Ok(None)
        );
    }

    #[test]
    fn a_malformed_floor_line_is_an_error() {
        for bad in [
            "cairn-campaign-floor Smart Controller/STM32H5",
            "cairn-campaign-floor Smart Controller/STM32H5 07",
            "cairn-campaign-floor Smart Controller/STM32H5 +7",
            "cairn-campaign-floor Smart Controller/STM32H5 -1",
            "cairn-campaign-floor Smart Controller/STM32H5 18446744073709551616",
            "cairn-campaign-floor 7",
            "cairn-campaign-floor  7",
            "cairn-campaign-floor  A/B 7",
            "cairn-campaign-floor A/B  7",
            "cairn-campaign-floor ",
        ] {
            assert_eq!(
                for_class(&format!("{bad}\n"), "Smart Controller", "STM32H5"),
                Err(NoteError::BadFloorLine),
                "{bad}"
            );
        }
    }
}
