//! Decoding pieces straight into regions of the final columns: the bound that sizes a
//! region, a region too small, and the joining of regions and pieces with columns of their own.

use proptest::prelude::*;

use super::parallel::{Dest, Part, decode_into, join_parts};
use super::scan::record_bound;
use super::sink::{Free, Sink};
use super::tests::canonical_layout;
use super::*;

/// The records `scan_records` finds in quote-free `text`.
fn records(text: &[u8]) -> usize {
    let mut n = 0usize;
    let ends = scan_records(
        text,
        &mut n,
        |_, _| None,
        |n, _, _| {
            *n += 1;
            Ok::<_, CodecError>(())
        },
    );
    assert!(matches!(ends, Ok(Some(_))), "quote-free text");
    n
}

fn quote_free_text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![4 => Just(b'a'), 1 => Just(b','), 2 => Just(b'\n'), 2 => Just(b'\r')], 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// The bound is never below the records, and is exact when no line is blank.
    #[test]
    fn record_bound_counts_records(text in quote_free_text()) {
        let n = records(&text);
        let bound = record_bound(&text);
        prop_assert!(bound >= n, "bound {} < {} records in {:?}", bound, n, String::from_utf8_lossy(&text));
        let blank_line = text.first().is_some_and(|b| matches!(b, b'\r' | b'\n'))
            || text.windows(2).any(|w| matches!(w, [b'\n', b'\r' | b'\n'] | [b'\r', b'\r']));
        if !blank_line {
            prop_assert_eq!(bound, n, "{:?}", String::from_utf8_lossy(&text));
        }
    }
}

#[test]
fn record_bound_of_long_texts() {
    for (line, per_line) in [("2024-01-02 00:00:00,1,2,3,4,5\n", 1), ("a\r\n", 1), ("a\r", 1), ("\n", 1), ("\r\n", 1)] {
        for lines in [0, 1, 31, 32, 33, 255, 256, 2000, 9000] {
            let text = line.repeat(lines);
            assert_eq!(record_bound(text.as_bytes()), lines * per_line, "{line:?} x {lines}");
            assert_eq!(record_bound(format!("{text}x").as_bytes()), lines * per_line + 1);
        }
    }
}

/// Columns of rows whose timestamps are `ts` (and every value the timestamp).
fn rows(ts: &[i64]) -> Columns {
    let mut c = Columns::default();
    for &t in ts {
        c.push(t, t as f64, t as f64, t as f64, t as f64, t as f64);
    }
    c
}

#[test]
fn a_region_too_small_decodes_the_piece_into_its_own_columns() {
    let layout = canonical_layout();
    let text = b"2024-01-02 00:00:00,1,1,1,1,1\n2024-01-02 00:01:00,2,2,2,2,2\n2024-01-02 00:02:00,x,3,3,3,3\n";
    let mut out = rows(&[0]).zero_extended(3);
    let mut free = Free::new(&mut out, 1);
    let region = free.take(1).expect("room for one row");
    assert!(free.take(2).is_none(), "one row was left");
    assert!(free.take(0).is_none(), "none is handed out after a refusal");
    let (part, result) = decode_into(&layout, TimeRange::all(), text, Dest::Region(region));
    let mut own = Columns::default();
    let expected = decode_piece(&layout, TimeRange::all(), text, &mut own);
    assert_eq!(format!("{result:?}"), format!("{expected:?}"));
    assert!(matches!(part, Part::Own(c) if c.bars.ts == own.bars.ts), "decoded again into columns of its own");
}

#[test]
fn parts_join_in_order() {
    // Head rows 1 and 2; a region at 4..6 (one row of gap before it) holding 3 and 4, and
    // one at 7 holding 5 after a gap; then columns of their own (6), and a region after
    // them (7), which is copied out.
    let mut out = rows(&[1, 2, -1, -1, 3, 4, -1, 5, -1, 7, -1]);
    out.extras = vec![(0..11).map(|i| Some(f64::from(i))).collect()];
    let mut own = rows(&[6]);
    own.extras = vec![vec![None]];
    let parts = vec![
        Part::Region { start: 4, rows: 2 },
        Part::Region { start: 7, rows: 1 },
        Part::Region { start: 8, rows: 0 },
        Part::Own(own),
        Part::Region { start: 9, rows: 1 },
    ];
    join_parts(&mut out, 2, parts).expect("in place");
    assert_eq!(out.bars.ts, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(out.bars.volume, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_eq!(out.extras, [vec![Some(0.0), Some(1.0), Some(4.0), Some(5.0), Some(7.0), None, Some(9.0)]]);
    let mut out = rows(&[1, 2]);
    assert!(join_parts(&mut out, 1, vec![Part::Region { start: 0, rows: 1 }]).is_err(), "before the rows so far");
    assert!(join_parts(&mut out, 1, vec![Part::Region { start: 1, rows: 2 }]).is_err(), "past the end");
}
