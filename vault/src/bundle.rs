//! Entry bundles (C2SP tlog-tiles): up to 256 consecutive entries, each a big-endian u16 length
//! followed by the entry. The vault stores entries in this form, one RocksDB value per bundle, so
//! a batch of 10,000 entries is 40 writes rather than 10,000, and a static export copies bundles
//! as they are. An entry pruned after its retention period is kept as a zero-length entry (no
//! statement is empty, so the two cannot be confused) next to a pruning record.

use crate::error::{Error, Result};

/// Entries per full bundle.
pub(crate) const BUNDLE_WIDTH: usize = 256;

/// Appends one entry to a bundle.
pub(crate) fn push(bundle: &mut Vec<u8>, entry: &[u8]) {
    // Entries are at most u16::MAX bytes (checked before anything is appended).
    bundle.extend_from_slice(&u16::try_from(entry.len()).unwrap_or(u16::MAX).to_be_bytes());
    bundle.extend_from_slice(entry);
}

/// The entries of a bundle, in order; an error names the bundle and the position that does not
/// parse.
pub(crate) fn entries(index: u64, bundle: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(BUNDLE_WIDTH);
    let mut rest = bundle;
    while !rest.is_empty() {
        let bad = || Error::Corrupt {
            what: format!("entry bundle {index}: entry {} is truncated", out.len()),
        };
        let (len, tail) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let entry = tail.get(..len).ok_or_else(bad)?;
        out.push(entry);
        rest = &tail[len..];
        if out.len() > BUNDLE_WIDTH {
            return Err(Error::Corrupt {
                what: format!("entry bundle {index} holds more than {BUNDLE_WIDTH} entries"),
            });
        }
    }
    Ok(out)
}

/// The byte length of the first `count` entries of a bundle.
pub(crate) fn prefix_len(index: u64, bundle: &[u8], count: usize) -> Result<usize> {
    let all = entries(index, bundle)?;
    if all.len() < count {
        return Err(Error::Corrupt {
            what: format!(
                "entry bundle {index} has {} entries, {count} expected",
                all.len()
            ),
        });
    }
    Ok(all[..count].iter().map(|e| 2 + e.len()).sum())
}

/// The bucket of a value in the bucketed indexes (leaf hashes, devices): FNV-1a (64-bit) of its
/// bytes, low byte. Part of the storage format: it never changes.
pub(crate) fn bucket(bytes: &[u8]) -> u8 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.to_le_bytes()[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip_and_reject_truncation() {
        let mut b = Vec::new();
        for e in [&b"a"[..], b"", &[7u8; 300]] {
            push(&mut b, e);
        }
        assert_eq!(
            entries(0, &b).unwrap(),
            vec![&b"a"[..], b"", &[7u8; 300][..]]
        );
        assert_eq!(prefix_len(0, &b, 2).unwrap(), 5);
        assert!(prefix_len(0, &b, 4).is_err());
        assert!(entries(0, &b[..b.len() - 1]).is_err());
        assert!(entries(0, &[0]).is_err());
    }

    #[test]
    fn bucket_is_fnv1a() {
        // FNV-1a 64 of the empty string is the offset basis; of "a" it is 0xaf63dc4c8601ec8c.
        assert_eq!(bucket(b""), 0x25);
        assert_eq!(bucket(b"a"), 0x8c);
    }
}
