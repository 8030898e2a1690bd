//! The four real files in tests/data (daily/ and real/) parse with the right counts and values, and
//! survive a store round trip unchanged.

use std::path::PathBuf;

use barvault_csv::{CsvCodec, encode_to_vec, parse_timestamp};
use barvault_domain::{Bars, Instrument, MergePolicy, Period, RawBars, SeriesKey};
use barvault_ports::{BarCodec, CodecInput};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name)
}

fn load_raw(name: &str) -> RawBars {
    let file = std::fs::File::open(path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    CsvCodec
        .decode(CodecInput::File(file), barvault_ports::Rows::All)
        .map(|d| d.raw)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The file as a store would keep it. The tick file repeats one timestamp
/// (2015-09-23T20:58:22.316, two trades); the later row wins, as on import.
fn load(name: &str) -> Bars {
    let (bars, folded) = load_raw(name).into_bars(MergePolicy::KeepLast).unwrap();
    let expected_folded = usize::from(name.contains("ticks"));
    assert_eq!(folded, expected_folded, "{name}: repeated timestamps");
    bars
}

fn ts(s: &str) -> i64 {
    parse_timestamp(s.as_bytes()).unwrap()
}

/// One row as (timestamp, open, high, low, close, volume, extra).
type Row = (i64, f64, f64, f64, f64, f64, Option<f64>);

fn row(b: &RawBars, i: usize, extra: &str) -> Row {
    (
        b.ts[i],
        b.open[i],
        b.high[i],
        b.low[i],
        b.close[i],
        b.volume[i],
        b.extras.iter().find(|e| e.name() == extra).and_then(|e| e.values()[i]),
    )
}

fn data_lines(name: &str) -> usize {
    let text = std::fs::read(path(name)).unwrap();
    text.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()).count() - 1
}

fn check(name: &str, rows: usize, extra: &str, first: Row, last: Row) {
    let bars = load_raw(name);
    assert_eq!(bars.len(), rows, "{name}");
    assert_eq!(data_lines(name), rows, "{name}: rows counted from the file itself");
    assert_eq!(row(&bars, 0, extra), first, "{name} first row");
    assert_eq!(row(&bars, rows - 1, extra), last, "{name} last row");
    let names: Vec<&str> = bars.extras.iter().map(|e| e.name()).collect();
    assert_eq!(names, vec![extra], "{name}");
}

#[test]
fn nvda_daily() {
    check(
        "daily/NVDA.csv",
        4012,
        "adj_close",
        (ts("1999-01-22"), 1.75, 1.953125, 1.552083, 1.640625, 67_867_200.0, Some(1.518424)),
        (ts("2014-12-31"), 20.4, 20.51, 19.99, 20.049999, 4_157_500.0, Some(19.425875)),
    );
}

#[test]
fn orcl_daily() {
    check(
        "daily/ORCL.csv",
        5036,
        "adj_close",
        (ts("1995-01-03"), 2.179012, 2.191358, 2.117284, 2.117284, 36_301_200.0, Some(1.883304)),
        (ts("2014-12-31"), 45.450001, 45.560001, 44.970001, 44.970001, 13_269_200.0, Some(42.303135)),
    );
}

#[test]
fn estx50_minutes_with_split_date_time() {
    check(
        "real/ESTX50-2006-01-02-1m.txt",
        30889,
        "open_interest",
        (ts("2006-01-02 09:01:00"), 3602.0, 3603.0, 3597.0, 3599.0, 5699.0, Some(0.0)),
        (ts("2006-02-27 22:00:00"), 3840.0, 3840.0, 3838.0, 3838.0, 327.0, Some(0.0)),
    );
}

#[test]
fn ticks_with_milliseconds() {
    check(
        "real/ticks-2015-09-23.csv",
        135,
        "open_interest",
        (ts("2015-09-23T20:57:42.146Z"), 3067.0, 3067.0, 3067.0, 3067.0, 180.0, Some(0.0)),
        (ts("2015-09-23T21:00:00.238Z"), 3069.0, 3069.0, 3069.0, 3069.0, 1.0, Some(0.0)),
    );
    let bars = load("real/ticks-2015-09-23.csv");
    assert_eq!(bars.len(), 134);
    assert_eq!(bars.timestamps()[0] % 1_000_000_000, 146_000_000);
}

#[test]
fn real_files_round_trip_exactly() {
    let key = SeriesKey::new(Instrument::stock("TEST").unwrap(), Period::D1);
    for name in ["daily/NVDA.csv", "daily/ORCL.csv", "real/ESTX50-2006-01-02-1m.txt", "real/ticks-2015-09-23.csv"] {
        let bars = load(name);
        let mut encoded = Vec::new();
        CsvCodec.encode(&bars, &key, &mut encoded).unwrap();
        let back = CsvCodec.decode(CodecInput::Bytes(&encoded), barvault_ports::Rows::All).map(|d| d.raw).unwrap();
        let (back, _) = back.into_bars(MergePolicy::ErrorOnConflict).unwrap();
        assert_eq!(back, bars, "{name}: decode(encode(x)) == x");
        assert_eq!(encode_to_vec(&back), encoded, "{name}: encode is stable");
    }
}
