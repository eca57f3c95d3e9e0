//! `Reader::raw_item` then `Reader::finish` on arbitrary bytes: never panic (nor run away on
//! hostile counts); the item returned is the prefix the reader consumed and, read again on its own,
//! one complete item; and `raw_item` agrees with an independent, recursive reading of RFC 8949
//! §4.2.1 (shortest heads, definite lengths, no simple values or floats, valid UTF-8, map keys
//! strictly increasing in the bytewise order of their encodings): it accepts exactly the
//! deterministic items, except those nesting more than `MAX_MAP_DEPTH` maps.
#![no_main]

use cairn_verifier::cbor::{MAX_MAP_DEPTH, Reader};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded(data.len(), || {
        let mut reader = Reader::new(data);
        let raw = reader.raw_item();
        let reference = deterministic_item(data, 0);
        match (raw, reference) {
            (Ok(item), Some((end, maps))) => {
                assert_eq!(item.len(), end, "raw_item and the reference end elsewhere");
                assert!(maps <= MAX_MAP_DEPTH);
                assert_eq!(item, &data[..reader.position()]);
                assert_eq!(reader.finish().is_ok(), item.len() == data.len());
                let mut again = Reader::new(item);
                assert_eq!(again.raw_item(), Ok(item));
                assert_eq!(again.finish(), Ok(()));
            }
            (Ok(item), None) => panic!("raw_item accepted non-deterministic CBOR {item:02x?}"),
            (Err(e), Some((_, maps))) => assert!(
                maps > MAX_MAP_DEPTH,
                "raw_item rejected deterministic CBOR: {e:?}"
            ),
            (Err(_), None) => {}
        }
    });
});

/// The end of the deterministic item at `pos` and how many maps it nests, or `None`.
fn deterministic_item(data: &[u8], pos: usize) -> Option<(usize, usize)> {
    let (major, value, mut pos) = head(data, pos)?;
    match major {
        0 | 1 => Some((pos, 0)),
        2 | 3 => {
            let end = pos.checked_add(usize::try_from(value).ok()?)?;
            let bytes = data.get(pos..end)?;
            (major == 2 || std::str::from_utf8(bytes).is_ok()).then_some((end, 0))
        }
        4 => {
            let mut maps = 0;
            for _ in 0..value {
                let (end, m) = deterministic_item(data, pos)?;
                (pos, maps) = (end, maps.max(m));
            }
            Some((pos, maps))
        }
        5 => {
            let mut maps = 0;
            let mut previous: Option<&[u8]> = None;
            for _ in 0..value {
                let (key_end, key_maps) = deterministic_item(data, pos)?;
                let key = &data[pos..key_end];
                if previous.is_some_and(|p| p >= key) {
                    return None;
                }
                previous = Some(key);
                let (end, value_maps) = deterministic_item(data, key_end)?;
                (pos, maps) = (end, maps.max(key_maps).max(value_maps));
            }
            Some((pos, if value > 0 { maps + 1 } else { 0 }))
        }
        6 => deterministic_item(data, pos),
        _ => None,
    }
}

/// Major type, argument and the position after a head in its shortest form.
fn head(data: &[u8], pos: usize) -> Option<(u8, u64, usize)> {
    let initial = *data.get(pos)?;
    let (major, info) = (initial >> 5, initial & 0x1f);
    let width = match info {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let argument = data.get(pos + 1..pos + 1 + width)?;
    let value = if width == 0 {
        u64::from(info)
    } else {
        argument.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))
    };
    let shortest = match width {
        0 => true,
        1 => value >= 24,
        _ => value >> (4 * width) != 0,
    };
    (shortest && major != 7).then_some((major, value, pos + 1 + width))
}
