//! The chunked, parallel decoder against the reference: the whole input through csv's
//! reader on one thread, its records decoded by the same header layout and rows. What is
//! compared is the framing — pieces cut at line ends, records split without csv's reader,
//! regions of the final columns, line numbers counted per piece — which is where the fast
//! path could go wrong. Tiny pieces put boundaries everywhere, so a line miscounted across
//! a boundary, a row out of order or a later error winning shows up.

use std::io::{self, Read};

use proptest::prelude::*;

use super::scan::{STOP, canonical_record, next_stop};
use super::*;
use crate::timestamp::TimestampParser;

/// Everything a decode returns, comparable: the rows (floats shown exactly by Debug's
/// shortest round-trip form) or the error with its line, column, value and reason.
fn outcome(r: Result<RawBars, CodecError>) -> String {
    match r {
        Ok(b) => format!("{b:?}"),
        Err(e) => format!("{e:?}"),
    }
}

/// The whole input through csv's reader on one thread.
fn reference_decode(input: &[u8], range: Option<TimeRange>) -> Result<RawBars, CodecError> {
    let mut decoder = Decoder::new(range.unwrap_or_else(TimeRange::all), 0);
    decoder.feed_csv(input, 0)?;
    decoder.finish()
}

fn reference(input: &[u8], range: Option<TimeRange>) -> String {
    outcome(reference_decode(input, range))
}

/// `input` decodes as the reference does from memory, from a reader and from a reader
/// that hands out `step` bytes at a time, under tuning `t`.
fn decodes_as_the_reference_every_way(
    input: &[u8],
    range: Option<TimeRange>,
    t: Tuning,
    step: usize,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let expected = reference(input, range);
    proptest::prop_assert_eq!(&outcome(decode_slice_with(input, range, t)), &expected);
    proptest::prop_assert_eq!(&outcome(decode_reader_with(input, input.len(), range, t)), &expected);
    let trickle = Trickle { data: input, step, fail_at: None, pos: 0 };
    proptest::prop_assert_eq!(&outcome(decode_reader_with(trickle, 0, range, t)), &expected);
    Ok(())
}

fn tuning(chunk: usize, workers: usize) -> Tuning {
    Tuning { chunk, workers, parallel_min: 0 }
}

/// A reader that hands out at most `step` bytes per call, and fails after `fail_at` bytes.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
    fail_at: Option<usize>,
    pos: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.fail_at.is_some_and(|at| self.pos >= at) {
            return Err(io::Error::other("disk on fire"));
        }
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len()).min(self.step.max(1));
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// Decodes `input` every way: from a slice and from a reader (whole reads and tiny ones),
/// on 1 to 3 threads, with pieces from 1 byte to larger than the input; all must agree
/// with the reference.
fn check_all_ways(input: &[u8], range: Option<TimeRange>) {
    let expected = reference(input, range);
    for chunk in [1, 2, 3, 7, 16, 50, 64, 200, 4096] {
        for workers in [1, 2, 3] {
            let t = tuning(chunk, workers);
            let got = outcome(decode_slice_with(input, range, t));
            assert_eq!(got, expected, "slice, chunk {chunk}, {workers} workers\n{}", String::from_utf8_lossy(input));
            let got = outcome(decode_reader_with(input, input.len(), range, t));
            assert_eq!(got, expected, "reader, chunk {chunk}, {workers} workers");
            let trickle = Trickle { data: input, step: chunk % 5 + 1, fail_at: None, pos: 0 };
            let got = outcome(decode_reader_with(trickle, 0, range, t));
            assert_eq!(got, expected, "trickled reader, chunk {chunk}, {workers} workers");
        }
    }
    assert_eq!(outcome(decode_slice(input, range)), expected, "default tuning");
}

/// `rows` minute bars, one per line, row `i` at minute `i` with open `i`.
fn minute_file(rows: usize, line_end: &str) -> String {
    let mut s = format!("timestamp,open,high,low,close,volume{line_end}");
    for i in 0..rows {
        let (h, m) = (i / 60 % 24, i % 60);
        let day = 2 + i / 1440;
        s.push_str(&format!("2024-01-{day:02} {h:02}:{m:02}:00,{i},{i}.5,{i}.25,{i}.125,{i}{line_end}"));
    }
    s
}

#[test]
fn every_stop_byte_is_flagged_by_the_word_scan() {
    for (b, &stop) in STOP.iter().enumerate() {
        assert!(!stop || b < 0x2D, "{b:#x}");
    }
    // Every position of a stop in a word, and bytes below 0x2D that are no stop before it.
    for len in 0..40 {
        for at in 0..=len {
            for stop in [b',', b'\r', b'\n', b'"'] {
                let mut text = vec![b'7'; len];
                for (i, b) in text.iter_mut().enumerate().take(at) {
                    *b = [b' ', b'+', b'%', b'1', 0xff, 0x80][i % 6];
                }
                let expected = if at < len {
                    text[at] = stop;
                    at
                } else {
                    len
                };
                assert_eq!(next_stop(&text, 0), expected, "{text:?}");
            }
        }
    }
}

#[test]
fn rows_stay_in_file_order_across_pieces() {
    let text = minute_file(5000, "\n");
    let expected = reference_decode(text.as_bytes(), None).unwrap();
    for (chunk, workers) in [(64, 2), (100, 3), (1000, 2), (333, 4)] {
        let got = decode_slice_with(text.as_bytes(), None, tuning(chunk, workers)).unwrap();
        assert_eq!(got.open, (0..5000).map(|i| i as f64).collect::<Vec<_>>());
        assert_eq!(format!("{got:?}"), format!("{expected:?}"));
        let got = decode_reader_with(text.as_bytes(), text.len(), None, tuning(chunk, workers)).unwrap();
        assert_eq!(format!("{got:?}"), format!("{expected:?}"));
    }
}

#[test]
fn an_error_just_after_a_piece_boundary_names_its_line() {
    for line_end in ["\n", "\r\n"] {
        let text = minute_file(2000, line_end);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        // Pieces of `chunk` bytes end at the first line end at or after each multiple: the
        // line after that is the first of a piece. Break exactly such a line.
        let chunk = 1000;
        let mut pos = 0;
        let mut first_of_piece = Vec::new();
        let mut next_cut = chunk;
        for (i, l) in lines.iter().enumerate() {
            pos += l.len();
            if pos > next_cut {
                first_of_piece.push(i + 1);
                next_cut = pos + chunk;
            }
        }
        for &victim in first_of_piece.iter().skip(3).take(5) {
            let mut broken: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            broken[victim] = broken[victim].replacen(",", ",oops", 1);
            let broken = broken.concat();
            for workers in [1, 2, 3] {
                for reader in [false, true] {
                    let r = if reader {
                        decode_reader_with(broken.as_bytes(), broken.len(), None, tuning(chunk, workers))
                    } else {
                        decode_slice_with(broken.as_bytes(), None, tuning(chunk, workers))
                    };
                    match r {
                        Err(CodecError::Parse { line, column, value, .. }) => {
                            assert_eq!(line, Some(victim as u64 + 1), "{workers} workers, reader {reader}");
                            assert_eq!(column.as_deref(), Some("open"));
                            assert!(value.is_some_and(|v| v.starts_with("oops")));
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
    }
}

#[test]
fn the_first_error_in_file_order_wins() {
    // Errors in many pieces, the first one early: whichever thread finishes first, the
    // error of the earliest line is the one reported.
    let text = minute_file(3000, "\n");
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    for i in (1500..3000).step_by(100) {
        lines[i] = lines[i].replacen(",", ",bad", 1);
    }
    lines[1200] = "2024-13-01 00:00:00,1,1,1,1,1\n".to_string();
    let text = lines.concat();
    for _ in 0..20 {
        match decode_slice_with(text.as_bytes(), None, tuning(128, 3)) {
            Err(CodecError::Parse { line, column, .. }) => {
                assert_eq!(line, Some(1201));
                assert_eq!(column.as_deref(), Some("timestamp"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(outcome(decode_slice_with(text.as_bytes(), None, tuning(128, 3))), reference(text.as_bytes(), None));
}

#[test]
fn a_parse_error_before_a_read_error_wins_and_a_read_error_is_reported() {
    let text = minute_file(3000, "\n");
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    lines[10] = lines[10].replacen(",", ",bad", 1);
    let broken = lines.concat();
    let fail_at = broken.len() / 2;
    let r = decode_reader_with(
        Trickle { data: broken.as_bytes(), step: 4096, fail_at: Some(fail_at), pos: 0 },
        broken.len(),
        None,
        tuning(256, 2),
    );
    assert!(matches!(r, Err(CodecError::Parse { line: Some(11), .. })), "{r:?}");
    let r = decode_reader_with(
        Trickle { data: text.as_bytes(), step: 4096, fail_at: Some(fail_at), pos: 0 },
        text.len(),
        None,
        tuning(256, 2),
    );
    assert!(matches!(&r, Err(CodecError::Io(e)) if e.to_string().contains("disk on fire")), "{r:?}");
}

#[test]
fn quotes_late_in_a_large_input_fall_back_to_csvs_reader() {
    let text = minute_file(3000, "\r\n");
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    // A quoted field spanning a line end, then an error whose line counts it.
    lines[2000] = "2024-01-03 09:20:00,\"1\n\",1,1,1,1\r\n".to_string();
    lines[2100] = "\"2024-01-03 11:00:00\",\"1,234\",1,1,1,1\r\n".to_string();
    let good = lines.concat();
    lines[2500] = lines[2500].replacen(",", ",bad", 1);
    let bad = lines.concat();
    for text in [&good, &bad] {
        let expected = reference(text.as_bytes(), None);
        for (chunk, workers) in [(64, 1), (64, 2), (1000, 3), (100_000, 2)] {
            let t = tuning(chunk, workers);
            assert_eq!(outcome(decode_slice_with(text.as_bytes(), None, t)), expected, "chunk {chunk}");
            assert_eq!(outcome(decode_reader_with(text.as_bytes(), text.len(), None, t)), expected, "chunk {chunk}");
        }
    }
    assert!(reference(bad.as_bytes(), None).contains("line: Some(2502)"), "{}", reference(bad.as_bytes(), None));
}

#[test]
fn dialects_agree_with_the_reference() {
    let cases: &[&str] = &[
        "",
        "\n\n",
        "timestamp,open,high,low,close,volume",
        "timestamp,open,high,low,close,volume\n",
        "\u{feff}Date,Open,High,Low,Close,Volume\r\n2024-01-02,1,2,0.5,1.5,10\r\n\r\n2024-01-03,1,2,0.5,1.5,10",
        "Date,Open,High,Low,Close,Volume,OpenInterest\r\n2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0\r\n\
         2006-01-02,09:02:00,3600.00,3601.00,3598.00,3599.00,894,\r\n2006-01-03,09:03:00.5,1e300,-0,8.71e-6,NaN,883,7\r\n",
        "Date,Time,Open,High,Low,Close\n2024-01-02,10:00,1,1,1,1\n2024-01-02,10:01,1,1,1,1\n2024-01-02,25:01,1,1,1,1\n",
        "Date,Open,High,Low,Close\n2024-01-02,10:00,1,1,1,1\n2024-01-03,1,1,1,1\n",
        "Time,Open,High,Low,Last,Change,%Chg,Volume\n2024-01-02,1,2,0.5,1.5,unch,+1.2%,10\n\
         2024-01-03,1,2,0.5,1.5,-0.5,-3.1%,20\n\"Downloaded from Barchart.com as of 01-02-2024 10:00am CST\"\n",
        "Time,Open,High,Low,Last,Volume\n2024-01-02,1,2,0.5,1.5,10\nDownloaded from Barchart.com as of 01-02-2024,,,,,\n",
        ",Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n,,,,,\n2024-01-03,1,1,1,1,1\n",
        "timestamp,open,high,low,close\r2024-01-02,1,1,1,1\r2024-01-03,x,1,1,1\r",
        "timestamp,open,high,low,close\n2024-01-02,1,1,1,1\r2024-01-03,1,1,1,1\n2024-01-04,1,,1,1\n",
        "timestamp,open,high,low,close,volume\n2024-01-02 00:00:00,1,2,3,4\n",
        "timestamp,open,high,low,close,volume\n2024-01-02 00:00:00,1,2,3,4,5,6\n",
        "timestamp,open,high,low,close,volume,adj_close\n2024-01-02,1,1,1,1,1,N/A\n2024-01-03,1,1,1,1,1,x\n",
        "timestamp,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n\n\n\n2024-01-03,1,1,1,1,\n",
        "timestamp,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n\u{feff}2024-01-03,1,1,1,1,1\n",
        "timestamp,open,high,low,close,volume\n2024-01-02,\"1\n2\",1,1,1,1\n2024-01-03,1,1,1,1,z\n",
        "timestamp,open,high,low,close,volume\n\n2024-01-02 00:00:00+01:00,1,1,1,1,1\n2024-01-02T00:00:00Z,1,1,1,1,1\n",
        "timestamp,open,high,low,close,vol\u{fffd}ume\n",
        "timestamp,timestamp,open\n",
    ];
    for case in cases {
        check_all_ways(case.as_bytes(), None);
    }
    let range = TimeRange::new(Some(parse_timestamp(b"2024-01-02 00:00:00")), Some(parse_timestamp(b"2024-01-03")));
    check_all_ways(minute_file(3000, "\n").as_bytes(), Some(range.unwrap()));
}

fn parse_timestamp(s: &[u8]) -> i64 {
    crate::parse_timestamp(s).unwrap()
}

#[test]
fn invalid_utf8_and_raw_bytes_agree_with_the_reference() {
    let mut bytes = minute_file(200, "\n").into_bytes();
    let at = bytes.len() / 2;
    bytes.splice(at..at, [0xff, 0xfe, b',']);
    check_all_ways(&bytes, None);
}

/// One cell: mostly valid, sometimes one of the things files get wrong.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => (0u32..100_000, 0u32..4).prop_map(|(v, k)| format!("{}", f64::from(v) / 10f64.powi(k as i32))),
        1 => Just(String::new()),
        1 => Just(" ".to_string()),
        1 => Just("x".to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("-0".to_string()),
        1 => Just("\"1,5\"".to_string()),
        1 => Just("\"7\n\"".to_string()),
        1 => Just("N/A".to_string()),
        1 => Just("\u{feff}".to_string()),
    ]
}

fn timestamp_cell() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => (0u32..28, 0u32..1440).prop_map(|(d, m)| format!("2024-02-{:02} {:02}:{:02}:00", d + 1, m / 60, m % 60)),
        3 => (0u32..28).prop_map(|d| format!("2024-02-{:02}", d + 1)),
        2 => (0u32..28, 0u32..1440).prop_map(|(d, m)| format!("2024-02-{:02},{:02}:{:02}", d + 1, m / 60, m % 60)),
        1 => Just("2024-02-30".to_string()),
        1 => Just(String::new()),
        1 => Just("Downloaded from Barchart.com".to_string()),
    ]
}

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![20 => Just("\n"), 6 => Just("\r\n"), 1 => Just("\r"), 1 => Just("\n\n"), 1 => Just("\r\n\r\n")]
}

fn row() -> impl Strategy<Value = String> {
    (timestamp_cell(), proptest::collection::vec(cell(), 3..8)).prop_map(|(ts, cells)| {
        let mut s = ts;
        for c in cells {
            s.push(',');
            s.push_str(&c);
        }
        s
    })
}

fn document() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just("timestamp,open,high,low,close,volume"),
        Just("Date,Open,High,Low,Close,Volume"),
        Just("Date,Open,High,Low,Close"),
        Just("\u{feff}Datetime,Open,High,Low,Close,Adj Close"),
        Just("date,time,open,high,low,close,volume"),
        Just(",open,high,low,close,volume,oi"),
    ];
    (header, proptest::collection::vec((row(), line_end()), 0..40), line_end(), any::<bool>())
        .prop_map(|(header, rows, end, final_end)| join_document(header, &rows, end, final_end))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_document_decodes_as_the_reference_does(
        doc in document(),
        chunk in 1usize..120,
        workers in 1usize..4,
        step in 1usize..9,
    ) {
        let input = doc.as_bytes();
        decodes_as_the_reference_every_way(input, None, tuning(chunk, workers), step)?;
    }

    #[test]
    fn any_bytes_decode_as_the_reference_does(
        bytes in proptest::collection::vec(
            prop_oneof![4 => Just(b','), 2 => Just(b'\n'), 1 => Just(b'\r'), 1 => Just(b'"'), 6 => b'0'..=b'9',
                        1 => Just(b'-'), 1 => Just(b':'), 1 => Just(b' '), 1 => Just(b'.'), 1 => any::<u8>()],
            0..300),
        chunk in 1usize..60,
        workers in 1usize..4,
    ) {
        let mut input = b"timestamp,open,high,low,close\n".to_vec();
        input.extend_from_slice(&bytes);
        let expected = reference(&input, None);
        prop_assert_eq!(&outcome(decode_slice_with(&input, None, tuning(chunk, workers))), &expected);
        prop_assert_eq!(&outcome(decode_reader_with(&input[..], input.len(), None, tuning(chunk, workers))), &expected);
    }
}

/// A record of the canonical layout as `Rows::row` decodes it: its row, or `None` when it is
/// skipped or refused.
fn row_of(text: &[u8]) -> Option<(i64, [u64; 5])> {
    let layout = canonical_layout();
    let mut rows = Rows::new(TimeRange::all());
    let mut out = Columns::default();
    let mut found = None;
    scan_records(
        text,
        &mut (),
        |_, _| None,
        |_, line, _| {
            found = Some(rows.row(&layout, line, || 1, &mut out));
            Ok::<_, CodecError>(())
        },
    )
    .ok()?;
    found?.ok()?;
    let b = &out.bars;
    let bits = |c: &Vec<f64>| c.first().map(|v| v.to_bits());
    Some((*b.ts.first()?, [bits(&b.open)?, bits(&b.high)?, bits(&b.low)?, bits(&b.close)?, bits(&b.volume)?]))
}

/// The layout of the canonical header (shared with the region tests).
pub(super) fn canonical_layout() -> Layout {
    let header = b"timestamp,open,high,low,close,volume";
    let mut layout = None;
    scan_records(
        header,
        &mut (),
        |_, _| None,
        |_, line, _| {
            layout = Some(Layout::from_header(line, 1)?);
            Ok::<_, CodecError>(())
        },
    )
    .expect("a valid header");
    layout.expect("one record")
}

#[test]
fn the_canonical_layout_is_recognized_and_only_it() {
    assert!(canonical_layout().is_canonical());
    let layout_of = |header: &[u8]| {
        let mut layout = None;
        scan_records(
            header,
            &mut (),
            |_, _| None,
            |_, line, _| {
                layout = Some(Layout::from_header(line, 1));
                Ok::<_, CodecError>(())
            },
        )
        .ok();
        layout.expect("one record").expect("a valid header")
    };
    for canonical in [&b",open,high,low,close,volume"[..], b"\xEF\xBB\xBFDate,Open,High,Low,Close,Vol"] {
        assert!(layout_of(canonical).is_canonical(), "{}", String::from_utf8_lossy(canonical));
    }
    for other in [
        &b"timestamp,open,high,low,close"[..],
        b"timestamp,open,high,low,close,volume,oi",
        b"timestamp,high,open,low,close,volume",
        b"open,high,low,close,volume,timestamp",
        b"date,time,open,high,low,close",
    ] {
        assert!(!layout_of(other).is_canonical(), "{}", String::from_utf8_lossy(other));
    }
    let mut split = canonical_layout();
    split.split_rows();
    assert!(!split.is_canonical());
}

#[test]
fn canonical_record_reads_common_lines_as_row_does() {
    let mut parser = TimestampParser::default();
    for line in [
        "2015-01-02 00:00:00,100.0,100.06,99.98,100.03,87741",
        "2015-01-02 00:00:00,100.0,100.06,99.98,100.03,87741\r\n",
        "2015-01-02T00:01:00,-0,0.000001,1,2,3\nnext",
        "2015-01-02,1,2,3,4,5",
        "2015-01-02 00:00:00,1234.567890123456,1,1,1,9007199254740992",
        "2015-01-02 00:00:00Z,100.0,100.06,99.98,100.03,87741.0",
        "2015-01-02T23:59:59Z,1,2,3,4,5\r\n",
    ] {
        let (ts, values, n) = canonical_record(line.as_bytes(), &mut parser).expect(line);
        let record = line.split(['\r', '\n']).next().unwrap_or_default();
        assert_eq!(n, record.len(), "{line}");
        let expected = row_of(record.as_bytes()).expect(line);
        assert_eq!((ts, values.map(f64::to_bits)), expected, "{line}");
    }
    for declined in [
        "2015-01-02 00:00:00,1,2,3,4",
        "2015-01-02 00:00:00,1,2,3,4,5,",
        "2015-01-02 00:00:00,1,2,3,4,5,6",
        "2015-01-02 00:00:00.5,1,2,3,4,5",
        "2015-01-02 00:00:00.5Z,1,2,3,4,5",
        "2015-01-02 00:00:00z,1,2,3,4,5",
        "2015-01-02Z,1,2,3,4,5",
        "2015-01-02 00:00:00+00:00,1,2,3,4,5",
        "2015-01-02 00:00,1,2,3,4,5",
        " 2015-01-02,1,2,3,4,5",
        "2015-02-29,1,2,3,4,5",
        "2015-01-02 24:00:00,1,2,3,4,5",
        "2015/01/02 00:00:00,1,2,3,4,5",
        "2015-01-02,1e5,2,3,4,5",
        "2015-01-02,1, 2,3,4,5",
        "2015-01-02,1,2 ,3,4,5",
        "2015-01-02,1,NaN,3,4,5",
        "2015-01-02,1,,3,4,5",
        "2015-01-02,+1,2,3,4,5",
        "2015-01-02,1.,2,3,4,5",
        "2015-01-02,.5,2,3,4,5",
        "2015-01-02,1,2,3,4,12345678901234567",
        "2015-01-02,1,2,3,4,5\"",
        "2015-01-02,1,2,3,4,5 ",
    ] {
        assert_eq!(canonical_record(declined.as_bytes(), &mut parser), None, "{declined}");
    }
}

/// A number cell of the canonical layout: mostly prices and volumes, sometimes the shapes
/// the fast path must leave to the general one.
fn number_cell() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => (0u64..10_000_000, 0usize..5).prop_map(|(m, k)| {
            let s = format!("{m:0>width$}", width = k + 1);
            let (int, frac) = s.split_at(s.len() - k);
            if k == 0 { int.to_string() } else { format!("{int}.{frac}") }
        }),
        2 => "-?[0-9]{1,22}(\\.[0-9]{1,22})?",
        1 => prop::sample::select(vec![
            "", " ", "-", "-0", "0.0", "+1", "1.", ".5", "1.2.3", "1e5", "1E-3", " 1", "1 ", "nan", "NaN", "inf",
            "-inf", "0x1", "1,5", "\u{feff}1", "9007199254740993", "9007199254740992", "x",
        ])
        .prop_map(str::to_string),
    ]
}

fn canonical_timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => (0u32..28, 0u32..1440, 0u32..60)
            .prop_map(|(d, m, s)| format!("2024-02-{:02} {:02}:{:02}:{s:02}", d + 1, m / 60, m % 60)),
        2 => (0u32..28).prop_map(|d| format!("2024-02-{:02}", d + 1)),
        1 => (0u32..28, 0u32..30, 0u32..70, 0u32..70).prop_map(|(d, h, m, s)| format!("2024-02-{:02}T{h:02}:{m:02}:{s:02}", d + 1)),
        1 => prop::sample::select(vec![
            "2024-02-03 04:05:06.5", "2024-02-03 04:05:06Z", "2024-02-03T04:05:06+01:00", "2024-02-03 04:05",
            " 2024-02-03 04:05:06", "2024-02-03 04:05:06 ", "2023-02-29 00:00:00", "2024-02-03 24:00:00",
            "2024/02/03 04:05:06", "20240203", "2024-02-30", "", "2024-02-03,04:05:06", "1677-09-21 00:12:43",
            "Downloaded from Barchart.com as of 02-03-2024",
        ])
        .prop_map(str::to_string),
    ]
}

fn canonical_line() -> impl Strategy<Value = String> {
    let cells = prop_oneof![20 => Just(5usize), 1 => Just(4usize), 1 => Just(6usize), 1 => Just(0usize)];
    (canonical_timestamp(), cells.prop_flat_map(|n| proptest::collection::vec(number_cell(), n)), 0u8..40).prop_map(
        |(ts, cells, odd)| match odd {
            0 => ",,,,,".to_string(),
            1 => "     ".to_string(),
            2 => format!("{ts},{},", cells.join(",")),
            _ if cells.is_empty() => ts,
            _ => format!("{ts},{}", cells.join(",")),
        },
    )
}

/// A header and rows joined by their line ends; the last row's end only with `final_end`.
fn join_document(header: &str, rows: &[(String, &str)], end: &str, final_end: bool) -> String {
    let mut s = format!("{header}{end}");
    for (i, (row, end)) in rows.iter().enumerate() {
        s.push_str(row);
        if i + 1 < rows.len() || final_end {
            s.push_str(end);
        }
    }
    s
}

fn canonical_document() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        8 => Just("timestamp,open,high,low,close,volume"),
        1 => Just(",open,high,low,close,volume"),
        1 => Just("\u{feff}Date,Open,High,Low,Close,Volume"),
    ];
    (header, proptest::collection::vec((canonical_line(), line_end()), 0..60), line_end(), any::<bool>())
        .prop_map(|(header, rows, end, final_end)| join_document(header, &rows, end, final_end))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Line by line: the one-pass reader declines, or gives exactly the row (timestamp and
    /// float bits) that `Rows::row` makes of the same record, and reads it to its end.
    #[test]
    fn canonical_record_is_row_or_declines(line in canonical_line(), end in line_end()) {
        let text = format!("{line}{end}");
        if let Some((ts, values, n)) = canonical_record(text.as_bytes(), &mut TimestampParser::default()) {
            prop_assert_eq!(n, line.len());
            prop_assert_eq!(Some((ts, values.map(f64::to_bits))), row_of(line.as_bytes()), "{:?}", line);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Whole canonical documents with odd lines, every way and with a range: the same rows
    /// (bits, via Debug's round-trip form) or the same error as the reference decoder.
    #[test]
    fn any_canonical_document_decodes_as_the_reference_does(
        doc in canonical_document(),
        chunk in 1usize..400,
        workers in 1usize..4,
        step in 1usize..9,
        range in proptest::option::of((0u32..30, 0u32..30)),
    ) {
        let input = doc.as_bytes();
        let day = |d: u32| parse_timestamp(b"2024-02-01") + i64::from(d) * 86_400_000_000_000;
        let range = range.map(|(a, b)| TimeRange::new(Some(day(a.min(b))), Some(day(a.max(b)))).expect("ordered"));
        decodes_as_the_reference_every_way(input, range, tuning(chunk, workers), step)?;
    }
}

#[test]
fn a_canonical_file_with_every_odd_line_decodes_as_the_reference_does() {
    let mut text = minute_file(3000, "\n");
    for (i, odd) in [
        "2024-01-03 00:00:00,1e5,1,1,1,1\n",
        "\r\n",
        "2024-01-03 00:00:00.25,1,1,1,1,1\r\n",
        "2024-01-03T00:00:00Z,1,1,1,1,12345678901234567890123\r",
        ",,,,,\n",
        "2024-01-03 00:00:00, 1,1 ,1,1,1\n",
        "Downloaded from Barchart.com as of 01-03-2024\n",
        "2024-01-03 00:00:00,-0,0.1234567890123456789,1,1,-9007199254740993\n",
    ]
    .iter()
    .enumerate()
    {
        let at = text.match_indices('\n').nth(200 + i * 300).map_or(text.len(), |(p, _)| p + 1);
        text.insert_str(at, odd);
    }
    check_all_ways(text.as_bytes(), None);
    let mut broken = text.clone();
    let at = broken.match_indices('\n').nth(2500).map_or(0, |(p, _)| p + 1);
    broken.insert_str(at, "2024-01-03 00:00:00,1,1,1,1,1,\n");
    check_all_ways(broken.as_bytes(), None);
    assert!(reference(broken.as_bytes(), None).contains("expected 6 fields, found 7"));
}
