//! The kind counts a cairn log's checkpoint carries (formats.md §2.1): for each *counted* kind (key
//! statements, relay checkpoint records), how many entries of that kind the tree of the
//! checkpoint's size holds and the index of the last one. One C2SP extension line (C2SP
//! tlog-checkpoint: lines after the root hash are extension lines, covered by the signature):
//!
//! ```text
//! cairn-kinds 5:<count>:<last> 11:<count>:<last>
//! ```
//!
//! `<last>` is `-` when the count is 0. A selection of entries proven against the checkpoint is
//! complete for a counted kind exactly when it holds that many entries of the kind: each one's
//! inclusion is proven and their indices are distinct, so none can be left out without the count
//! showing it, and the last one is named. An evidence pack uses this to prove it holds every key
//! statement and every relay checkpoint record up to its signer checkpoint (docs/audit.md).

use crate::entry::Kind;

/// The first word of the extension line.
pub const PREFIX: &str = "cairn-kinds";

/// The counted kinds, in the order the line lists them.
pub const COUNTED: [Kind; 2] = [Kind::KEY, Kind::RELAY_CHECKPOINT];

/// How many entries of one counted kind a tree holds, and the last one's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindCount {
    /// Entries of the kind.
    pub count: u64,
    /// Index of the last of them (`None` when there is none).
    pub last: Option<u64>,
}

impl KindCount {
    /// Adds an entry of the kind at `index`.
    pub fn add(&mut self, index: u64) {
        self.count = self.count.saturating_add(1);
        self.last = Some(self.last.map_or(index, |l| l.max(index)));
    }
}

/// The counts of [`COUNTED`], in that order.
pub type KindCounts = [KindCount; COUNTED.len()];

/// Finds and parses the `cairn-kinds` line among a checkpoint's extension lines. `None` when
/// there is no such line, or it does not list exactly the counted kinds in order with a count and
/// a last index each (`-` exactly when the count is 0, and the count at most the last index + 1).
pub fn parse(extensions: &str) -> Option<KindCounts> {
    let line = extensions
        .lines()
        .find_map(|l| l.strip_prefix(PREFIX)?.strip_prefix(' '))?;
    let mut out = KindCounts::default();
    let mut fields = line.split(' ');
    for (kind, slot) in COUNTED.iter().zip(out.iter_mut()) {
        let mut parts = fields.next()?.split(':');
        if number(parts.next()?)? != kind.0 {
            return None;
        }
        let count = number(parts.next()?)?;
        let last = match parts.next()? {
            "-" => None,
            n => Some(number(n)?),
        };
        if parts.next().is_some() || (count == 0) != last.is_none() {
            return None;
        }
        if last.is_some_and(|l| count > l.saturating_add(1)) {
            return None;
        }
        *slot = KindCount { count, last };
    }
    fields.next().is_none().then_some(out)
}

/// A decimal number in its shortest spelling (no sign, no leading zero).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// The extension line for `counts` (without its newline).
#[cfg(feature = "alloc")]
pub fn line(counts: &KindCounts) -> alloc::string::String {
    use core::fmt::Write as _;
    let mut out = alloc::string::String::from(PREFIX);
    for (kind, c) in COUNTED.iter().zip(counts) {
        let _ = match c.last {
            Some(last) => write!(out, " {}:{}:{last}", kind.0, c.count),
            None => write!(out, " {}:{}:-", kind.0, c.count),
        };
    }
    out
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn the_line_round_trips_and_only_its_canonical_spelling_parses() {
        let counts = [
            KindCount {
                count: 2,
                last: Some(40),
            },
            KindCount::default(),
        ];
        let l = line(&counts);
        assert_eq!(l, "cairn-kinds 5:2:40 11:0:-");
        assert_eq!(parse(&format!("other ext\n{l}\n")), Some(counts));
        for bad in [
            "cairn-kinds 5:2:40",
            "cairn-kinds 5:2:40 11:0:- 12:0:-",
            "cairn-kinds 11:0:- 5:2:40",
            "cairn-kinds 5:02:40 11:0:-",
            "cairn-kinds 5:2:- 11:0:-",
            "cairn-kinds 5:0:3 11:0:-",
            "cairn-kinds 5:42:40 11:0:-",
            "cairn-kinds 5:2:40:1 11:0:-",
            "cairn-kinds  5:2:40 11:0:-",
            "cairn-kinds 5:+2:40 11:0:-",
        ] {
            assert_eq!(parse(&format!("{bad}\n")), None, "{bad}");
        }
        assert_eq!(parse(""), None);
    }
}
