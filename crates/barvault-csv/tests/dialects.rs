//! Each input dialect the reader promises to accept, and the errors it promises to give.

use barvault_csv::{CsvCodec, parse_timestamp};
use barvault_domain::{RawBars, TimeRange};
use barvault_ports::{BarCodec, CodecError, CodecInput};

fn decode(text: &str) -> Result<RawBars, CodecError> {
    CsvCodec.decode(CodecInput::Bytes(text.as_bytes()), barvault_ports::Rows::All).map(|d| d.raw)
}

fn ok(text: &str) -> RawBars {
    decode(text).unwrap_or_else(|e| panic!("{e}\n--- input ---\n{text}"))
}

fn ts(s: &str) -> i64 {
    parse_timestamp(s.as_bytes()).unwrap()
}

fn extra(b: &RawBars, name: &str) -> Vec<Option<f64>> {
    b.extras.iter().find(|e| e.name() == name).unwrap_or_else(|| panic!("no extra {name}")).values().to_vec()
}

/// (line, column, value, reason) of a parse error.
fn err(text: &str) -> (Option<u64>, Option<String>, Option<String>, String) {
    match decode(text) {
        Err(CodecError::Parse { line, column, value, reason }) => (line, column, value, reason),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn barvault_own_format() {
    let b = ok("timestamp,open,high,low,close,volume,adj_close\n\
                2024-01-02 00:00:00,1,2,0.5,1.5,100,\n\
                2024-01-03 00:00:00.000000001,8.71e-6,1e300,-0,NaN,0,1.25\n");
    assert_eq!(b.ts, vec![ts("2024-01-02"), ts("2024-01-02") + 86_400_000_000_000 + 1]);
    assert_eq!(b.open, vec![1.0, 0.00000871]);
    assert_eq!(b.high, vec![2.0, 1e300]);
    assert!(b.low[1] == 0.0 && b.low[1].is_sign_negative());
    assert!(b.close[1].is_nan());
    assert_eq!(extra(&b, "adj_close"), vec![None, Some(1.25)]);
}

#[test]
fn vortex_datetime_with_offset() {
    let b = ok("Datetime,Open,High,Low,Close,Volume\n\
                2024-11-01T05:00:00+0000,10,11,9,10.5,7\n\
                2024-11-01T07:00:00+02:00,10,11,9,10.5,7\n\
                2024-11-01T05:00:00Z,10,11,9,10.5,7\n");
    assert_eq!(b.ts, vec![ts("2024-11-01T05:00:00Z"); 3]);
}

#[test]
fn yahoo_daily_with_adj_close() {
    let b = ok("Date,Open,High,Low,Close,Adj Close,Volume\n\
                1999-01-22,1.750000,1.953125,1.552083,1.640625,1.518424,67867200\n");
    assert_eq!(b.ts, vec![ts("1999-01-22T00:00:00Z")]);
    assert_eq!(b.close, vec![1.640625]);
    assert_eq!(b.volume, vec![67_867_200.0]);
    assert_eq!(extra(&b, "adj_close"), vec![Some(1.518424)]);
}

#[test]
fn barchart_with_last_change_pct_and_footer() {
    let b = ok("Time,Open,High,Low,Last,Change,%Chg,Volume,Open Int\n\
                2024-03-15,100.5,101,99.5,100.75,+0.25,+0.25%,\"24,212\",1500\n\
                2024-03-18,100.75,101,99.5,100.75,unch,0.00%,900,\n\
                \"Downloaded from Barchart.com as of 03-19-2024 01:12am CDT\"\n");
    assert_eq!(b.len(), 2);
    assert_eq!(b.close, vec![100.75, 100.75]);
    assert_eq!(b.volume, vec![24_212.0, 900.0]);
    assert_eq!(extra(&b, "change"), vec![Some(0.25), Some(0.0)]);
    assert_eq!(extra(&b, "chg"), vec![Some(0.25), Some(0.0)]);
    assert_eq!(extra(&b, "open_interest"), vec![Some(1500.0), None]);
}

#[test]
fn header_aliases_case_and_spaces() {
    let b = ok(" DATE_TIME , OPEN,high ,Low,CLOSE,Vol,OI\n2024-01-01 00:00,1,1,1,1,2,3\n");
    assert_eq!(extra(&b, "open_interest"), vec![Some(3.0)]);
    assert_eq!(b.volume, vec![2.0]);
    for oi in ["Open Interest", "OpenInterest", "open int", "oi"] {
        let b = ok(&format!("timestamp,open,high,low,close,volume,{oi}\n2024-01-01,1,1,1,1,2,3\n"));
        assert_eq!(extra(&b, "open_interest"), vec![Some(3.0)], "{oi}");
    }
    for adj in ["Adj Close", "adj_close", "AdjClose"] {
        let b = ok(&format!("timestamp,open,high,low,close,volume,{adj}\n2024-01-01,1,1,1,1,2,3\n"));
        assert_eq!(extra(&b, "adj_close"), vec![Some(3.0)], "{adj}");
    }
}

#[test]
fn pandas_unnamed_index_column() {
    let b = ok(",open,high,low,close,volume\n2024-01-01 00:00:00,1,2,0.5,1.5,10\n");
    assert_eq!(b.ts, vec![ts("2024-01-01")]);
}

/// A volume that is not there is missing (NaN), never an invented 0: no column, an empty
/// cell, or one of the usual "no value" spellings.
#[test]
fn missing_volumes_read_as_nan() {
    let b = ok("timestamp,open,high,low,close\n2024-01-01,1,2,0.5,1.5\n");
    assert!(b.volume[0].is_nan(), "{:?}", b.volume);
    let b = ok("timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,\n2024-01-02,1,2,0.5,1.5, N/A \n\
                2024-01-03,1,2,0.5,1.5,7\n");
    assert!(b.volume[0].is_nan() && b.volume[1].is_nan(), "{:?}", b.volume);
    assert_eq!(b.volume[2], 7.0);
}

#[test]
fn crlf_bom_quotes_and_blank_rows() {
    let b = ok(
        "\u{feff}\"Date\",Open,High,Low,Close,Volume\r\n2024-01-01,1,2,0.5,1.5,10\r\n,,,,,\r\n\r\n2024-01-02,1,2,0.5,1.5,11\r\n",
    );
    assert_eq!(b.ts, vec![ts("2024-01-01"), ts("2024-01-02")]);
    assert_eq!(b.volume, vec![10.0, 11.0]);
}

#[test]
fn split_date_time_rows_under_one_date_header() {
    let b = ok("Date,Open,High,Low,Close,Volume,OpenInterest\r\n\
                2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0\r\n\
                2006-01-02,09:02:00,3600.00,3601.00,3598.00,3599.00,894,7\r\n");
    assert_eq!(b.ts, vec![ts("2006-01-02T09:01:00Z"), ts("2006-01-02T09:02:00Z")]);
    assert_eq!(b.open, vec![3602.0, 3600.0]);
    assert_eq!(b.volume, vec![5699.0, 894.0]);
    assert_eq!(extra(&b, "open_interest"), vec![Some(0.0), Some(7.0)]);
    // Once detected, a row in the header's shape is an error, not a silent reinterpretation.
    let (line, _, _, reason) = err("Date,Open,High,Low,Close,Volume\n\
                                    2006-01-02,09:01:00,1,1,1,1,5\n\
                                    2006-01-02 09:02:00,1,1,1,1,5\n");
    assert_eq!(line, Some(3));
    assert!(reason.contains("expected 7 fields, found 6"), "{reason}");
}

#[test]
fn separate_date_and_time_header_columns() {
    let b = ok("Date,Time,Open,High,Low,Close,Volume\n2024-01-02,14:30:00.25,1,2,0.5,1.5,10\n");
    assert_eq!(b.ts, vec![ts("2024-01-02T14:30:00.25Z")]);
}

#[test]
fn empty_extra_cells_are_missing_and_header_only_is_empty() {
    let b = ok("timestamp,open,high,low,close,volume,x\n2024-01-01,1,1,1,1,1,\n2024-01-02,1,1,1,1,1,N/A\n");
    assert_eq!(extra(&b, "x"), vec![None, None]);
    let b = ok("timestamp,open,high,low,close,volume,adj_close\n");
    assert!(b.is_empty());
    assert_eq!(b.extras.len(), 1);
}

#[test]
fn range_keeps_inclusive_rows_only() {
    let text = "timestamp,open,high,low,close,volume,e\n\
                2024-01-01,1,1,1,1,1,1\n2024-01-02,2,2,2,2,2,\n2024-01-03,3,3,3,3,3,3\n2024-01-04,4,4,4,4,4,4\n";
    let range = TimeRange::new(Some(ts("2024-01-02")), Some(ts("2024-01-03"))).unwrap();
    let b =
        CsvCodec.decode(CodecInput::Bytes(text.as_bytes()), barvault_ports::Rows::Range(range)).map(|d| d.raw).unwrap();
    assert_eq!(b.ts, vec![ts("2024-01-02"), ts("2024-01-03")]);
    assert_eq!(b.open, vec![2.0, 3.0]);
    assert_eq!(extra(&b, "e"), vec![None, Some(3.0)]);
    // Rows outside the range are still checked.
    let bad = format!("{text}2024-01-05,x,5,5,5,5,5\n");
    assert!(
        CsvCodec.decode(CodecInput::Bytes(bad.as_bytes()), barvault_ports::Rows::Range(range)).map(|d| d.raw).is_err()
    );
}

#[test]
fn header_errors_name_the_column() {
    let (line, column, _, reason) = err("timestamp,open,high,low,volume\n");
    assert_eq!((line, column.as_deref()), (Some(1), Some("close")));
    assert!(reason.contains("missing close"), "{reason}");

    let (_, column, _, reason) = err("open,high,low,close,volume\n");
    assert_eq!(column.as_deref(), Some("timestamp"));
    assert!(reason.contains("missing timestamp"), "{reason}");

    let (_, column, _, reason) = err("timestamp,open,high,low,close,Close\n");
    assert_eq!(column.as_deref(), Some("Close"));
    assert!(reason.contains("duplicate") && reason.contains("\"close\""), "{reason}");

    let (_, _, _, reason) = err("timestamp,open,high,low,close,last\n");
    assert!(reason.contains("duplicate"), "{reason}");
    let (_, _, _, reason) = err("Datetime,Date,open,high,low,close\n");
    assert!(reason.contains("both name the timestamp"), "{reason}");
    let (_, _, _, reason) = err("timestamp,open,high,low,close,OI,Open Interest\n");
    assert!(reason.contains("duplicate"), "{reason}");
    let (_, column, _, _) = err("timestamp,open,high,low,close,%\n");
    assert_eq!(column.as_deref(), Some("#6"));
    let (_, column, _, reason) = err("timestamp,open,high,low,close,9lives\n");
    assert_eq!(column.as_deref(), Some("9lives"));
    assert!(reason.contains("extra column"), "{reason}");
    let (line, _, _, reason) = err("");
    assert_eq!(line, Some(1));
    assert!(reason.contains("no header"), "{reason}");
    let (line, column, _, reason) = err("\n\ntimestamp,open,high,low,close,\u{fffd}\n");
    assert_eq!(column.as_deref(), Some("#6"), "{reason}");
    assert_eq!(line, Some(3), "blank lines before the header count");
}

#[test]
fn invalid_utf8_header_is_an_error() {
    let bytes = b"timestamp,open,high,low,close,vol\xffume\n";
    match CsvCodec.decode(CodecInput::Bytes(bytes), barvault_ports::Rows::All).map(|d| d.raw) {
        Err(CodecError::Parse { line: Some(1), column: Some(c), reason, .. }) => {
            assert_eq!(c, "#6");
            assert!(reason.contains("UTF-8"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn row_errors_name_line_column_and_value() {
    let head = "Date,Open,High,Low,Close,Volume\n2024-01-01,1,1,1,1,1\n";
    let cases: [(&str, Option<&str>, &str, &str); 9] = [
        ("2024-01-02,1,1,1,abc,1", Some("Close"), "abc", "not a number"),
        ("2024-01-02,1,,1,1,1", Some("High"), "", "empty value"),
        ("2024-01-02,1,1,1,1,x", Some("Volume"), "x", "not a number"),
        ("2024-13-02,1,1,1,1,1", Some("Date"), "2024-13-02", "invalid month"),
        ("1600-01-01,1,1,1,1,1", Some("Date"), "1600-01-01", "outside the range"),
        ("2300-01-01,1,1,1,1,1", Some("Date"), "2300-01-01", "outside the range"),
        ("02/01/2024,1,1,1,1,1", Some("Date"), "02/01/2024", "not a timestamp"),
        (",1,1,1,1,1", Some("Date"), "", "empty timestamp"),
        ("2024-01-02,1,1,1,1,1,1", None, "2024-01-02,1,1,1,1,1,1", "expected 6 fields, found 7"),
    ];
    for (row, column, value, reason) in cases {
        let e = err(&format!("{head}{row}\n"));
        assert_eq!(e.0, Some(3), "{row}");
        assert_eq!(e.1.as_deref(), column, "{row}");
        assert_eq!(e.2.as_deref(), Some(value), "{row}");
        assert!(e.3.contains(reason), "{row}: {}", e.3);
    }
    let e = err(&format!("{head}2024-01-02,1,1\n"));
    assert!(e.3.contains("expected 6 fields, found 3"), "{}", e.3);
    let e = err("timestamp,open,high,low,close,volume,e\n2024-01-01,1,1,1,1,1,1%x\n");
    assert_eq!((e.0, e.1.as_deref(), e.2.as_deref()), (Some(2), Some("e"), Some("1%x")));
}

#[test]
fn line_numbers_are_physical_with_crlf_and_quoted_newlines() {
    let text = "Date,Open,High,Low,Close,Volume,Note\r\n\
                2024-01-01,1,1,1,1,1,\"2\r\n\"\r\n\
                \r\n\
                2024-01-02,1,1,1,1,x,1\r\n";
    let (line, column, _, _) = err(text);
    assert_eq!((line, column.as_deref()), (Some(5), Some("Volume")));
}

#[test]
fn invalid_utf8_cell_is_reported_as_such() {
    let bytes = b"Date,Open,High,Low,Close,Volume\n2024-01-01,1,1,1,\xff\xfe,1\n";
    match CsvCodec.decode(CodecInput::Bytes(bytes), barvault_ports::Rows::All).map(|d| d.raw) {
        Err(CodecError::Parse { line, column, reason, .. }) => {
            assert_eq!((line, column.as_deref(), reason.as_str()), (Some(2), Some("Close"), "invalid UTF-8"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn decodes_from_a_file() {
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, b"timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n").unwrap();
    std::io::Seek::rewind(&mut file).unwrap();
    let b = CsvCodec.decode(CodecInput::File(file), barvault_ports::Rows::All).map(|d| d.raw).unwrap();
    assert_eq!(b.close, vec![1.5]);
    assert_eq!(CsvCodec.format(), "csv");
}
