//! Behaviour of the Parquet codec through its public API: round trips, metadata, pruning,
//! lenient import of foreign files and clear errors for files that are not bars.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Date32Array, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use barvault_domain::{Bars, ExtraColumn, Instrument, MergePolicy, Period, RawBars, SeriesKey, TimeRange};
use barvault_parquet::{DecodeStats, ParquetCodec, ParquetCompression};
use barvault_ports::{BarCodec, CodecError, CodecInput};
use parquet::arrow::ArrowWriter;
use parquet::basic::Encoding;
use parquet::column::page::Page;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use proptest::prelude::*;

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("brk.b").unwrap(), Period::M1)
}

/// Values a lossy writer would mangle; -0.0 and 0.0 (and two NaN payloads) share columns,
/// so a dictionary keyed by float equality instead of bits would merge them.
const TRICKY: [f64; 12] = [
    1e-12,
    1e300,
    -37.63,
    0.1 + 0.2,
    0.00000871,
    5e-324,
    -0.0,
    f64::MAX,
    f64::MIN_POSITIVE,
    f64::from_bits(0xfff8_0000_0000_0001),
    0.0,
    123456.789,
];

fn tricky_bars() -> Bars {
    let ts = vec![i64::MIN, -1_000_000_000_000, -1, 0, 1, 1_700_000_000_123_456_789, i64::MAX - 1, i64::MAX];
    let n = ts.len();
    let pick = |shift: usize| (0..n).map(|i| TRICKY[(i + shift) % TRICKY.len()]).collect::<Vec<f64>>();
    let mut close = pick(3);
    close[2] = f64::NAN;
    close[4] = f64::NEG_INFINITY;
    let adj = (0..n).map(|i| if i % 3 == 1 { None } else { Some(TRICKY[(i + 7) % TRICKY.len()]) }).collect();
    let oi = (0..n).map(|i| if i == 0 { Some(-0.0) } else { None }).collect();
    let empty_extra = vec![None; n];
    Bars::new(
        ts,
        pick(0),
        pick(1),
        pick(2),
        close,
        pick(4),
        vec![
            ExtraColumn::new("open_interest", oi).unwrap(),
            ExtraColumn::new("adj_close", adj).unwrap(),
            ExtraColumn::new("all_missing", empty_extra).unwrap(),
        ],
    )
    .unwrap()
}

/// Regular one-minute bars from `start`, values derived from the row so pruning results can be checked.
fn minute_bars(n: usize, start: i64) -> Bars {
    let ts: Vec<i64> = (0..n as i64).map(|i| start + i * 60_000_000_000).collect();
    let base: Vec<f64> = (0..n).map(|i| 100.0 + (i as f64) * 0.01).collect();
    let hi = base.iter().map(|v| v + 0.5).collect();
    let lo = base.iter().map(|v| v - 0.5).collect();
    let vol = (0..n).map(|i| (i % 1000) as f64).collect();
    let adj = ExtraColumn::new("adj_close", (0..n).map(|i| (i % 5 != 0).then_some(i as f64)).collect()).unwrap();
    Bars::new(ts, base.clone(), hi, lo, base, vol, vec![adj]).unwrap()
}

fn encode(codec: &ParquetCodec, bars: &Bars) -> Vec<u8> {
    let mut out = Vec::new();
    codec.encode(bars, &series(), &mut out).unwrap();
    out
}

fn to_bars(raw: RawBars) -> Bars {
    raw.into_bars(MergePolicy::ErrorOnConflict).unwrap().0
}

fn decode(bytes: &[u8], range: Option<TimeRange>) -> Result<(RawBars, DecodeStats), CodecError> {
    ParquetCodec::default().decode_with_stats(CodecInput::Bytes(bytes), range)
}

#[test]
fn tricky_values_round_trip_bit_exactly_with_every_compression() {
    let bars = tricky_bars();
    for compression in ParquetCompression::ALL {
        let codec = ParquetCodec::new(compression);
        let bytes = encode(&codec, &bars);
        let back = to_bars(codec.decode(CodecInput::Bytes(&bytes), barvault_ports::Rows::All).map(|d| d.raw).unwrap());
        assert_eq!(back, bars, "{compression}");
        assert_eq!(back.close()[2].to_bits(), f64::NAN.to_bits());
        assert_eq!(back.open()[6].to_bits(), (-0.0f64).to_bits());
        assert!(back.extra("all_missing").unwrap().values().iter().all(Option::is_none));

        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let codec_name = format!("{:?}", reader.metadata().row_group(0).column(1).compression());
        let expected = match compression {
            ParquetCompression::Snappy => "SNAPPY",
            ParquetCompression::Zstd => "ZSTD",
            ParquetCompression::Lz4 => "LZ4_RAW",
            ParquetCompression::Gzip => "GZIP",
            ParquetCompression::None => "UNCOMPRESSED",
        };
        assert!(codec_name.starts_with(expected), "{compression}: file says {codec_name}");
    }
}

#[test]
fn decodes_from_an_open_file() {
    let bars = minute_bars(1000, -5_000_000_000);
    let mut file = tempfile::tempfile().unwrap();
    ParquetCodec::default().encode(&bars, &series(), &mut file).unwrap();
    file.flush().unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let raw = ParquetCodec::default().decode(CodecInput::File(file), barvault_ports::Rows::All).map(|d| d.raw).unwrap();
    assert_eq!(to_bars(raw), bars);
}

#[test]
fn empty_bars_round_trip() {
    let bars = Bars::empty();
    let bytes = encode(&ParquetCodec::default(), &bars);
    let (raw, stats) = decode(&bytes, None).unwrap();
    assert!(raw.is_empty());
    assert_eq!(stats.row_groups_total, 0);
}

#[test]
fn schema_and_key_value_metadata_are_written() {
    let bytes = encode(&ParquetCodec::default(), &tricky_bars());
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    let kv: HashMap<String, String> = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(kv["barvault_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(kv["instrument_symbol"], "BRK.B");
    assert_eq!(kv["instrument_type"], "stock");
    assert_eq!(kv["period"], "1m");
    let created = chrono::DateTime::parse_from_rfc3339(&kv["created_at"]).unwrap();
    assert_eq!(created.offset().local_minus_utc(), 0);
    assert!(kv["created_at"].ends_with('Z'));
    assert!(!kv.contains_key("pandas"));

    let arrow =
        parquet::arrow::parquet_to_arrow_schema(reader.metadata().file_metadata().schema_descr(), None).unwrap();
    let f = arrow.field(0);
    assert_eq!(f.name(), "timestamp");
    assert_eq!(f.data_type(), &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())));
    let names: Vec<&str> = arrow.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["timestamp", "open", "high", "low", "close", "volume", "adj_close", "all_missing", "open_interest"]
    );
    for f in arrow.fields().iter().take(6) {
        assert!(!f.is_nullable(), "{} nullable", f.name());
    }
    for f in arrow.fields().iter().skip(6) {
        assert!(f.is_nullable() && f.data_type() == &DataType::Float64, "{f:?}");
    }
}

#[test]
fn range_reads_prune_row_groups_and_trim_inclusively() {
    let n = 10_000;
    let bars = minute_bars(n, 1_600_000_000_000_000_000);
    let codec = ParquetCodec::default().with_row_group_rows(1000);
    let bytes = encode(&codec, &bars);
    let ts = bars.timestamps();

    let (all, stats) = decode(&bytes, None).unwrap();
    assert_eq!(stats, DecodeStats { row_groups_total: 10, row_groups_read: 10, rows_read: n, rows_returned: n });
    assert_eq!(to_bars(all), bars);

    // Rows 2500..=3500 live in row groups 2 and 3.
    let range = TimeRange::new(Some(ts[2500]), Some(ts[3500])).unwrap();
    let (raw, stats) = decode(&bytes, Some(range)).unwrap();
    assert_eq!(stats.row_groups_read, 2);
    assert_eq!(stats.rows_read, 2000);
    assert_eq!(stats.rows_returned, 1001);
    assert_eq!(to_bars(raw), bars.slice(&range));

    // Bounds exactly on a row-group boundary, open ends, and a gap between rows.
    for (lo, hi) in [
        (Some(ts[999]), Some(ts[1000])),
        (None, Some(ts[0])),
        (Some(ts[n - 1]), None),
        (Some(ts[10] + 1), Some(ts[11] - 1)),
        (Some(ts[n - 1] + 1), None),
        (None, Some(ts[0] - 1)),
    ] {
        let range = TimeRange::new(lo, hi).unwrap();
        let (raw, stats) = decode(&bytes, Some(range)).unwrap();
        assert!(stats.row_groups_read <= 2, "{range:?}: {stats:?}");
        assert_eq!(to_bars(raw), bars.slice(&range), "{range:?}");
    }
    let outside = TimeRange::new(Some(ts[n - 1] + 1), None).unwrap();
    assert_eq!(decode(&bytes, Some(outside)).unwrap().1.row_groups_read, 0);
}

#[test]
fn default_row_groups_are_bounded() {
    let bars = minute_bars(300_000, 0);
    let bytes = encode(&ParquetCodec::default(), &bars);
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    let sizes: Vec<i64> = reader.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(sizes, [131_072, 131_072, 37_856]);
    let stats = reader.metadata().row_group(1).column(0).statistics().unwrap();
    assert!(stats.min_bytes_opt().is_some() && stats.max_bytes_opt().is_some());
}

/// The layout a compatible reader must handle (docs/FORMAT.md): row groups with min/max and
/// null counts on every column, timestamps delta-encoded, prices dictionary-encoded,
/// volumes BYTE_STREAM_SPLIT, extras nullable and dictionary-encoded; the Arrow schema in
/// the footer as the Arrow writer puts it.
#[test]
fn written_encodings_and_statistics_per_row_group() {
    let n = 2_500;
    let bars = minute_bars(n, 1_600_000_000_000_000_000);
    let codec = ParquetCodec::default().with_row_group_rows(1000);
    let bytes = encode(&codec, &bars);
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    let meta = reader.metadata();
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    assert!(kv.iter().any(|kv| kv.key == "ARROW:schema"), "{kv:?}");
    let sizes: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(sizes, [1000, 1000, 500]);

    let doubles = [bars.open(), bars.high(), bars.low(), bars.close(), bars.volume()];
    let adj = bars.extra("adj_close").unwrap().values();
    for (g, group) in meta.row_groups().iter().enumerate() {
        let rows = g * 1000..(g * 1000 + 1000).min(n);
        let names: Vec<String> = group.columns().iter().map(|c| c.column_path().string()).collect();
        assert_eq!(names, ["timestamp", "open", "high", "low", "close", "volume", "adj_close"]);
        let encodings = |c: usize| group.column(c).encodings().collect::<Vec<Encoding>>();

        assert!(encodings(0).contains(&Encoding::DELTA_BINARY_PACKED), "{:?}", encodings(0));
        assert!(group.column(0).dictionary_page_offset().is_none());
        match group.column(0).statistics().unwrap() {
            Statistics::Int64(s) => {
                let ts = &bars.timestamps()[rows.clone()];
                assert_eq!((s.min_opt(), s.max_opt()), (ts.first(), ts.last()));
                assert_eq!(s.null_count_opt(), Some(0));
            }
            other => panic!("{other:?}"),
        }

        for (c, values) in doubles.iter().enumerate().map(|(i, v)| (i + 1, &v[rows.clone()])) {
            let dictionary = group.column(c).dictionary_page_offset().is_some();
            if c == 5 {
                assert!(!dictionary && encodings(c).contains(&Encoding::BYTE_STREAM_SPLIT), "{:?}", encodings(c));
            } else {
                assert!(dictionary, "column {c}: {:?}", encodings(c));
            }
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            match group.column(c).statistics().unwrap() {
                Statistics::Double(s) => {
                    assert_eq!((s.min_opt(), s.max_opt()), (Some(&min), Some(&max)), "column {c}");
                    assert_eq!(s.null_count_opt(), Some(0));
                }
                other => panic!("{other:?}"),
            }
        }

        let adj = &adj[rows.clone()];
        let present: Vec<f64> = adj.iter().flatten().copied().collect();
        assert!(group.column(6).dictionary_page_offset().is_some());
        match group.column(6).statistics().unwrap() {
            Statistics::Double(s) => {
                let min = present.iter().copied().fold(f64::INFINITY, f64::min);
                let max = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                assert_eq!((s.min_opt(), s.max_opt()), (Some(&min), Some(&max)));
                assert_eq!(s.null_count_opt(), Some((adj.len() - present.len()) as u64));
            }
            other => panic!("{other:?}"),
        }
    }
}

/// `n` bars whose prices take `distinct` values on a cent grid (a sawtooth), for checking
/// which encoding a price column gets at a given number of distinct values per row.
fn bars_with_distinct_prices(n: usize, distinct: usize) -> Bars {
    let ts: Vec<i64> = (0..n as i64).map(|i| i * 60_000_000_000).collect();
    let price: Vec<f64> = (0..n).map(|i| (5_000 + (i * 7) % distinct) as f64 / 100.0).collect();
    let vol = (0..n).map(|i| (i % 977) as f64).collect();
    Bars::new(ts, price.clone(), price.clone(), price.clone(), price, vol, vec![]).unwrap()
}

/// The encodings of the data pages of `close` in the first row group, in file order, and
/// whether the chunk starts with a dictionary page.
fn close_pages(bytes: &[u8]) -> (bool, Vec<Encoding>) {
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let mut pages = reader.get_row_group(0).unwrap().get_column_page_reader(4).unwrap();
    let (mut dictionary, mut data) = (false, Vec::new());
    while let Some(page) = pages.get_next_page().unwrap() {
        match page {
            Page::DictionaryPage { .. } => dictionary = true,
            other => data.push(other.encoding()),
        }
    }
    (dictionary, data)
}

/// A small file's row group (2,048 rows in a 5,000-row file) keeps the dictionary for
/// prices while they take at most one distinct value per 4 of its rows, and otherwise
/// falls back to plain pages part-way (the values before the fallback stay
/// dictionary-encoded); either way the bars read back exactly.
#[test]
fn small_files_drop_the_dictionary_for_high_cardinality_prices() {
    let n = 5_000;
    for (distinct, plain) in [(400, false), (500, false), (600, true), (1_000, true), (5_000, true)] {
        let bars = bars_with_distinct_prices(n, distinct);
        let bytes = encode(&ParquetCodec::default(), &bars);
        let (dictionary, data) = close_pages(&bytes);
        assert!(dictionary, "{distinct}");
        assert_eq!(data.contains(&Encoding::PLAIN), plain, "{distinct} distinct: {data:?}");
        assert_eq!(to_bars(decode(&bytes, None).unwrap().0), bars, "{distinct}");
    }
    // Large row groups keep the 128 KiB cap: 6,000 distinct prices in groups of 65,536 rows.
    let bars = bars_with_distinct_prices(262_144, 6_000);
    assert_eq!(ParquetCodec::default().group_rows(262_144), 65_536);
    let bytes = encode(&ParquetCodec::default(), &bars);
    let (dictionary, data) = close_pages(&bytes);
    assert!(dictionary && !data.contains(&Encoding::PLAIN), "{data:?}");
    assert_eq!(to_bars(decode(&bytes, None).unwrap().0), bars);
}

/// Reads of more rows than one decoded batch (65,536) append batch after batch; reads of
/// fewer take the one batch over. Both give the bars back, with and without a range.
#[test]
fn reads_of_one_and_of_several_batches_round_trip() {
    for n in [1, 65_535, 65_536, 65_537, 140_000] {
        let bars = minute_bars(n, 1_600_000_000_000_000_000);
        let bytes = encode(&ParquetCodec::default(), &bars);
        let (raw, stats) = decode(&bytes, None).unwrap();
        assert_eq!(stats.rows_returned, n);
        assert_eq!(to_bars(raw), bars, "{n} rows");
        let ts = bars.timestamps();
        let range = TimeRange::new(Some(ts[n / 3]), Some(ts[n - 1 - n / 3])).unwrap();
        assert_eq!(to_bars(decode(&bytes, Some(range)).unwrap().0), bars.slice(&range), "{n} rows, {range:?}");
    }
}

/// Row-group boundaries fall inside extras with nulls and inside runs of missing values;
/// every row must still land in its own row.
#[test]
fn extras_with_nulls_round_trip_across_row_groups() {
    let n: usize = 1_000;
    let ts: Vec<i64> = (0..n as i64).collect();
    let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let sparse = ExtraColumn::new("sparse", (0..n).map(|i| (i % 97 == 0).then_some(i as f64)).collect()).unwrap();
    let gaps =
        ExtraColumn::new("gaps", (0..n).map(|i| (!(300..700).contains(&i)).then_some(-(i as f64))).collect()).unwrap();
    let bars = Bars::new(ts, v.clone(), v.clone(), v.clone(), v.clone(), v, vec![gaps, sparse]).unwrap();
    for rows in [1, 7, 128, 333, 1_000, 5_000] {
        let bytes = encode(&ParquetCodec::default().with_row_group_rows(rows), &bars);
        let (raw, stats) = decode(&bytes, None).unwrap();
        assert_eq!(stats.row_groups_total, n.div_ceil(rows), "{rows}");
        assert_eq!(to_bars(raw), bars, "{rows}");
    }
}

/// Writes an arbitrary Arrow batch as Parquet, as another tool would.
fn foreign_file(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(2)).build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn f64s(v: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(v.to_vec()))
}

const SECS: [i64; 3] = [1_700_000_000, 1_700_000_060, 1_700_000_120];

#[test]
fn foreign_files_with_other_units_types_and_names_are_imported() {
    let ns: Vec<i64> = SECS.iter().map(|s| s * 1_000_000_000).collect();
    let variants: Vec<(&str, ArrayRef)> = vec![
        ("s utc", Arc::new(TimestampSecondArray::from(SECS.to_vec()).with_timezone("UTC"))),
        ("ms naive", Arc::new(TimestampMillisecondArray::from(SECS.iter().map(|s| s * 1000).collect::<Vec<_>>()))),
        (
            "us utc",
            Arc::new(
                TimestampMicrosecondArray::from(SECS.iter().map(|s| s * 1_000_000).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
        ),
        ("ns naive", Arc::new(TimestampNanosecondArray::from(ns.clone()))),
        ("ns new york", Arc::new(TimestampNanosecondArray::from(ns.clone()).with_timezone("America/New_York"))),
    ];
    for (what, ts) in variants {
        let bytes = foreign_file(vec![
            ("Date", ts),
            ("Open", Arc::new(Float32Array::from(vec![1.5f32, 2.25, 3.0]))),
            ("HIGH", Arc::new(Int64Array::from(vec![2, 3, 4]))),
            ("low", Arc::new(Int32Array::from(vec![1, 2, -3]))),
            ("Last", f64s(&[1.75, 2.5, 0.1])),
            ("Vol", Arc::new(Int64Array::from(vec![100, 0, 9_007_199_254_740_993]))),
            ("Adj Close", Arc::new(Float64Array::from(vec![Some(1.7), None, Some(0.09)]))),
            ("Open Interest", Arc::new(Int32Array::from(vec![None, Some(7), Some(8)]))),
            ("symbol", Arc::new(StringArray::from(vec!["A", "A", "A"]))),
        ]);
        let (raw, stats) = decode(&bytes, None).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(stats.row_groups_total, 2, "{what}");
        assert_eq!(raw.ts, ns, "{what}");
        assert_eq!(raw.open, [1.5, 2.25, 3.0]);
        assert_eq!(raw.high, [2.0, 3.0, 4.0]);
        assert_eq!(raw.low, [1.0, 2.0, -3.0]);
        assert_eq!(raw.close, [1.75, 2.5, 0.1]);
        assert_eq!(raw.volume, [100.0, 0.0, 9_007_199_254_740_992.0]);
        let extras: Vec<(&str, &[Option<f64>])> = raw.extras.iter().map(|e| (e.name(), e.values())).collect();
        assert_eq!(
            extras,
            [("adj_close", &[Some(1.7), None, Some(0.09)][..]), ("open_interest", &[None, Some(7.0), Some(8.0)][..])],
            "{what}"
        );
    }
}

#[test]
fn dates_count_as_midnight_utc_and_ranges_prune_by_converted_statistics() {
    let days: Vec<i32> = vec![19_000, 19_001, 19_002];
    let bytes = foreign_file(vec![
        ("date", Arc::new(Date32Array::from(days.clone()))),
        ("open", f64s(&[1.0, 2.0, 3.0])),
        ("high", f64s(&[1.0, 2.0, 3.0])),
        ("low", f64s(&[1.0, 2.0, 3.0])),
        ("close", f64s(&[1.0, 2.0, 3.0])),
        ("volume", f64s(&[1.0, 2.0, 3.0])),
    ]);
    let day = 86_400_000_000_000i64;
    let (raw, _) = decode(&bytes, None).unwrap();
    assert_eq!(raw.ts, days.iter().map(|&d| i64::from(d) * day).collect::<Vec<_>>());
    let (raw, stats) = decode(&bytes, Some(TimeRange::new(Some(19_002 * day), None).unwrap())).unwrap();
    assert_eq!((stats.row_groups_total, stats.row_groups_read), (2, 1));
    assert_eq!(raw.close, [3.0]);
}

fn err_text(bytes: &[u8]) -> (CodecError, String) {
    let e = decode(bytes, None).unwrap_err();
    let s = e.to_string();
    (e, s)
}

fn core_columns(ts: ArrayRef) -> Vec<(&'static str, ArrayRef)> {
    let v = f64s(&[1.0, 2.0, 3.0]);
    vec![("timestamp", ts), ("open", v.clone()), ("high", v.clone()), ("low", v.clone()), ("volume", v)]
}

#[test]
fn wrong_schemas_name_the_column_and_type() {
    let ts: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![1, 2, 3]));

    let (e, s) = err_text(&foreign_file(core_columns(ts.clone())));
    assert!(matches!(&e, CodecError::Parse { column: Some(c), .. } if c == "close"), "{e:?}");
    assert!(s.contains("missing") && s.contains("last"), "{s}");

    let strings: ArrayRef = Arc::new(StringArray::from(vec!["2024-01-01", "2024-01-02", "2024-01-03"]));
    let mut cols = core_columns(strings);
    cols.push(("close", f64s(&[1.0, 2.0, 3.0])));
    let (e, s) = err_text(&foreign_file(cols));
    assert!(matches!(&e, CodecError::Parse { column: Some(c), .. } if c == "timestamp"), "{e:?}");
    assert!(s.contains("Utf8"), "{s}");

    let mut cols = core_columns(ts.clone());
    cols.push(("close", Arc::new(StringArray::from(vec!["1", "2", "3"]))));
    let (e, s) = err_text(&foreign_file(cols));
    assert!(matches!(&e, CodecError::Parse { column: Some(c), .. } if c == "close"), "{e:?}");
    assert!(s.contains("Utf8") && s.contains("number"), "{s}");

    let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let mut cols = core_columns(ints);
    cols.push(("close", f64s(&[1.0, 2.0, 3.0])));
    let (_, s) = err_text(&foreign_file(cols));
    assert!(s.contains("timestamp") && s.contains("Int64"), "{s}");
}

#[test]
fn nulls_in_core_columns_name_the_row_group_and_column() {
    let ts: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![1, 2, 3]));
    let mut cols = core_columns(ts);
    cols.push(("close", Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), None]))));
    let (e, s) = err_text(&foreign_file(cols));
    match &e {
        CodecError::Parse { line, column, .. } => {
            assert_eq!(*line, Some(2));
            assert_eq!(column.as_deref(), Some("close"));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.contains("row group 2 of 2") && s.contains("null"), "{s}");

    let ts: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![None, Some(2), Some(3)]));
    let mut cols = core_columns(ts);
    cols.push(("close", f64s(&[1.0, 2.0, 3.0])));
    let (e, _) = err_text(&foreign_file(cols));
    assert!(matches!(&e, CodecError::Parse { line: Some(1), column: Some(c), .. } if c == "timestamp"), "{e:?}");
}

#[test]
fn timestamps_beyond_the_nanosecond_range_are_refused() {
    let ts: ArrayRef = Arc::new(TimestampSecondArray::from(vec![0, 1, 10_000_000_000]));
    let mut cols = core_columns(ts);
    cols.push(("close", f64s(&[1.0, 2.0, 3.0])));
    let (e, s) = err_text(&foreign_file(cols));
    assert!(matches!(&e, CodecError::Parse { value: Some(v), .. } if v == "10000000000"), "{e:?}");
    assert!(s.contains("1677"), "{s}");
}

#[test]
fn truncated_and_garbage_files_are_corrupt() {
    let bytes = encode(&ParquetCodec::default(), &minute_bars(5000, 0));
    for cut in [0, 1, 4, 8, bytes.len() / 2, bytes.len() - 9, bytes.len() - 1] {
        let e = decode(&bytes[..cut], None).unwrap_err();
        assert!(matches!(e, CodecError::Corrupt(_)), "cut {cut}: {e:?}");
        assert!(e.to_string().contains("Parquet"), "{e}");
    }
    let e = decode(b"timestamp,open\n1,2\n", None).unwrap_err();
    assert!(matches!(e, CodecError::Corrupt(_)), "{e:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bit_patterns_round_trip(
        rows in proptest::collection::btree_map(any::<i64>(), (any::<[u64; 5]>(), any::<Option<u64>>()), 0..300),
        group_rows in 1usize..64,
    ) {
        let ts: Vec<i64> = rows.keys().copied().collect();
        let col = |k: usize| rows.values().map(|(v, _)| f64::from_bits(v[k] % 64)).collect::<Vec<_>>();
        let wide = |k: usize| rows.values().map(|(v, _)| f64::from_bits(v[k])).collect::<Vec<_>>();
        let extra = rows.values().map(|(_, e)| e.map(f64::from_bits)).collect();
        // Column 0 draws from 64 bit patterns (dictionary-encoded), the others from all of them.
        let bars = Bars::new(ts, col(0), wide(1), wide(2), wide(3), wide(4),
            vec![ExtraColumn::new("x", extra).unwrap()]).unwrap();
        let codec = ParquetCodec::default().with_row_group_rows(group_rows);
        let bytes = encode(&codec, &bars);
        let (raw, _) = decode(&bytes, None).unwrap();
        prop_assert_eq!(to_bars(raw), bars);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048), magic in any::<bool>()) {
        if magic {
            // Give the footer parser something to chew on.
            bytes.splice(0..0, *b"PAR1");
            bytes.extend_from_slice(b"PAR1");
        }
        prop_assert!(decode(&bytes, None).is_err());
    }

    #[test]
    fn truncations_and_flips_never_panic(cut in 0usize..10_000, flip in any::<(usize, u8)>(), lo in any::<i64>()) {
        let bars = minute_bars(300, 0);
        let bytes = encode(&ParquetCodec::default().with_row_group_rows(100), &bars);
        let cut = cut % bytes.len();
        prop_assert!(decode(&bytes[..cut], None).is_err());

        let mut flipped = bytes.clone();
        let at = flip.0 % flipped.len();
        flipped[at] ^= flip.1 | 1;
        let range = TimeRange::new(Some(lo % 20_000_000_000_000), None).unwrap();
        if let Ok((raw, _)) = decode(&flipped, Some(range)) {
            prop_assert!(raw.open.len() == raw.ts.len() && raw.close.len() == raw.ts.len());
        }
    }
}

/// Daily bars: a price walk on a cent grid, so that no two files of different length
/// share more than their rows.
fn daily_bars(n: usize, changed_from: usize) -> Bars {
    daily_bars_with(n, changed_from, vec![])
}

fn daily_bars_with(n: usize, changed_from: usize, extras: Vec<ExtraColumn>) -> Bars {
    let day = 86_400_000_000_000i64;
    let ts: Vec<i64> = (0..n as i64).map(|i| 1_136_160_000_000_000_000 + i * day).collect();
    let px: Vec<f64> =
        (0..n).map(|i| 100.0 + ((i * 37) % 1000) as f64 * 0.01 + if i >= changed_from { 0.5 } else { 0.0 }).collect();
    let vol = (0..n).map(|i| (1000 + i) as f64).collect();
    Bars::new(ts, px.clone(), px.clone(), px.clone(), px, vol, extras).unwrap()
}

fn group_sizes(bytes: &[u8]) -> Vec<i64> {
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    reader.metadata().row_groups().iter().map(|g| g.num_rows()).collect()
}

/// Row groups are a quarter of the file, rounded up to a power of two, from 1,024 rows up
/// to the codec's maximum, so that an update can keep all but the last one or two.
#[test]
fn row_groups_scale_with_the_file() {
    let codec = ParquetCodec::default();
    assert_eq!(group_sizes(&encode(&codec, &daily_bars(5_000, usize::MAX))), [2048, 2048, 904]);
    assert_eq!(group_sizes(&encode(&codec, &daily_bars(900, usize::MAX))), [900]);
    assert_eq!(group_sizes(&encode(&codec, &minute_bars(40_000, 0))), [16_384, 16_384, 7_232]);
    let small = ParquetCodec::default().with_row_group_rows(500);
    assert_eq!(group_sizes(&encode(&small, &daily_bars(1_200, usize::MAX))), [500, 500, 200]);
}

/// A nightly update keeps the row groups that hold only unchanged rows byte for byte:
/// the stored bytes up to the last such group, then what `encode_after` writes, make one
/// file that loads back as exactly the new bars and lists every group in its footer.
#[test]
fn unchanged_row_groups_are_kept_byte_for_byte() {
    let codec = ParquetCodec::default();
    let old = daily_bars(5_000, usize::MAX);
    let stored = encode(&codec, &old);
    let new = daily_bars(5_001, 4_998);
    let unchanged = old.common_prefix_len(&new);
    assert_eq!(unchanged, 4_998);
    let kept = keepable(&codec, &stored, &new, unchanged).expect("two groups can be kept");
    assert_eq!(kept.rows, 4_096);
    let mut file = stored[..kept.bytes as usize].to_vec();
    encode_after(&codec, &new, 0, &stored, kept, &mut file).unwrap();
    assert!(to_bars(decode(&file, None).unwrap().0) == new, "the file does not load back as the new bars");
    assert_eq!(group_sizes(&file), [2048, 2048, 905]);
    // The file is what a whole encode gives, bar the footer's creation time.
    assert!(to_bars(decode(&encode(&codec, &new), None).unwrap().0) == new);
    // Appending only: every stored group is kept.
    let appended = daily_bars(5_003, usize::MAX);
    let all = keepable(&codec, &stored, &appended, 5_000).expect("all groups kept");
    assert_eq!(all.rows, 5_000);
    let mut file = stored[..all.bytes as usize].to_vec();
    encode_after(&codec, &appended, 0, &stored, all, &mut file).unwrap();
    assert!(to_bars(decode(&file, None).unwrap().0) == appended);
}

/// The data pages of `close` in row group `group`: whether the chunk has a dictionary
/// page, and whether any data page is plain.
fn close_encoding(bytes: &[u8], group: usize) -> (bool, bool) {
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let mut pages = reader.get_row_group(group).unwrap().get_column_page_reader(4).unwrap();
    let (mut dictionary, mut plain) = (false, false);
    while let Some(page) = pages.get_next_page().unwrap() {
        match page {
            Page::DictionaryPage { .. } => dictionary = true,
            other => plain |= other.encoding() == Encoding::PLAIN,
        }
    }
    (dictionary, plain)
}

/// The row groups an update writes after the kept ones follow the last kept group: a
/// price column that fell back to plain there (daily prices) is written plain from its
/// first value, with no dictionary to hash and give up on; one that kept its dictionary
/// (few distinct prices) keeps it. Both files load back exactly.
#[test]
fn rewritten_groups_skip_the_dictionary_where_the_kept_group_gave_it_up() {
    let codec = ParquetCodec::default();
    for (distinct, dictionary) in [(5_000, false), (100, true)] {
        let old = bars_with_distinct_prices(5_000, distinct);
        let stored = encode(&codec, &old);
        assert_eq!(close_encoding(&stored, 1), (true, !dictionary), "{distinct}: as the full encode wrote it");
        // A whole encode of the tail's 905 rows would have tried the dictionary.
        let new = bars_with_distinct_prices(5_001, distinct);
        assert!(close_encoding(&encode(&codec, &new), 2).0, "{distinct}");
        // As if the last stored bar were revised: the third group is written again.
        let kept = keepable(&codec, &stored, &new, 4_999).expect("two groups kept");
        let mut file = stored[..kept.bytes as usize].to_vec();
        encode_after(&codec, &new, 0, &stored, kept, &mut file).unwrap();
        assert_eq!(group_sizes(&file), [2048, 2048, 905]);
        assert_eq!(close_encoding(&file, 2), (dictionary, !dictionary), "{distinct} distinct prices");
        assert!(to_bars(decode(&file, None).unwrap().0) == new, "{distinct}");
    }
}

/// Nothing is kept when the first group changed, when the columns differ, or from a file
/// that is not Parquet; a plan that does not fit the stored file fails the write.
#[test]
fn row_groups_are_kept_only_when_they_fit() {
    let codec = ParquetCodec::default();
    let old = daily_bars(5_000, usize::MAX);
    let stored = encode(&codec, &old);
    assert_eq!(keepable(&codec, &stored, &daily_bars(5_000, 1_000), 1_000), None, "first group changed");
    let with_extra = daily_bars_with(5_000, usize::MAX, vec![ExtraColumn::new("oi", vec![Some(1.0); 5_000]).unwrap()]);
    assert_eq!(keepable(&codec, &stored, &with_extra, 4_999), None, "columns differ");
    assert_eq!(keepable(&codec, b"not parquet at all", &old, 4_999), None);
    assert_eq!(keepable(&codec, &stored[..stored.len() - 1], &old, 4_999), None, "truncated footer");
    let kept = keepable(&codec, &stored, &old, 4_999).unwrap();
    let wrong = barvault_ports::KeptPrefix { bytes: kept.bytes - 1, rows: kept.rows };
    let mut out = Vec::new();
    let err = encode_after(&codec, &old, 0, &stored, wrong, &mut out).unwrap_err();
    assert!(err.to_string().contains("cannot keep"), "{err}");
}

/// A tail read (`decode_tail`) of a 5,000-row daily file in groups of 2,048, 2,048 and
/// 904 rows: it leaves out the leading groups whose rows all come before `from`, but
/// always returns a row before `from` when the file has one, so a writer can check the
/// stored bytes of an unchanged row; the rows it returns are the file's rows from there.
#[test]
fn tail_reads_skip_the_leading_groups_before_from() {
    let codec = ParquetCodec::default();
    let bars = daily_bars(5_000, usize::MAX);
    let bytes = encode(&codec, &bars);
    let ts = bars.timestamps();
    let day = ts[1] - ts[0];
    // (from, rows skipped, groups read)
    let cases = [
        (ts[4_998], 4_096, 1),
        (ts[4_097], 4_096, 1),
        // The last group starts at `from`: the group before is read for its last row.
        (ts[4_096], 2_048, 2),
        (ts[4_999] + day, 4_096, 1),
        (ts[2_049], 2_048, 2),
        (ts[2_048], 0, 3),
        (ts[0], 0, 3),
        (ts[0] - day, 0, 3),
    ];
    for (from, skipped, groups) in cases {
        let (tail, stats) = codec.decode_tail_with_stats(CodecInput::Bytes(&bytes), from).unwrap();
        assert_eq!((tail.skipped, stats.row_groups_read), (skipped, groups), "from {from}");
        assert_eq!(tail.first, (skipped > 0).then_some(ts[0]), "from {from}");
        assert!(to_bars(tail.raw) == bars.slice_rows(skipped, 5_000), "from {from}");
    }
    // Through the trait, as a store calls it.
    let tail = codec.decode(CodecInput::Bytes(&bytes), barvault_ports::Rows::From(ts[4_998])).unwrap();
    assert_eq!(tail.skipped, 4_096);
}

/// A file whose row groups are not in time order (another tool wrote it) is read whole:
/// the rows after the skipped groups would not all come after them.
#[test]
fn tail_reads_of_files_out_of_order_read_every_row() {
    let ns = |v: &[i64]| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(v.iter().map(|s| s * 1_000_000_000).collect::<Vec<_>>()))
    };
    let cols = |ts: ArrayRef| {
        let n = ts.len();
        let px = f64s(&vec![1.0; n]);
        vec![
            ("timestamp", ts),
            ("open", px.clone()),
            ("high", px.clone()),
            ("low", px.clone()),
            ("close", px.clone()),
            ("volume", px),
        ]
    };
    // Groups of two rows: (1, 4), (2, 9), (5, 6).
    let bytes = foreign_file(cols(ns(&[1, 4, 2, 9, 5, 6])));
    let (tail, stats) =
        ParquetCodec::default().decode_tail_with_stats(CodecInput::Bytes(&bytes), 5_000_000_000).unwrap();
    assert_eq!((tail.skipped, tail.first, tail.raw.ts.len(), stats.row_groups_read), (0, None, 6, 3));
    // In order, the same layout skips the first group.
    let bytes = foreign_file(cols(ns(&[1, 2, 3, 4, 5, 6])));
    let (tail, _) = ParquetCodec::default().decode_tail_with_stats(CodecInput::Bytes(&bytes), 5_000_000_000).unwrap();
    assert_eq!((tail.skipped, tail.first, tail.raw.ts.len()), (2, Some(1_000_000_000), 4));
}

/// `encode_after` given only the last rows of the new file (`skipped` > 0) writes the same
/// file as when given all of them.
#[test]
fn encoding_after_kept_groups_needs_only_the_rows_after_them() {
    let codec = ParquetCodec::default();
    let old = daily_bars(5_000, usize::MAX);
    let stored = encode(&codec, &old);
    let new = daily_bars(5_001, 4_998);
    let kept = keepable(&codec, &stored, &new, 4_998).unwrap();
    let whole = {
        let mut out = Vec::new();
        encode_after(&codec, &new, 0, &stored, kept, &mut out).unwrap();
        out
    };
    for skipped in [4_096, 3_000] {
        let tail = new.slice_rows(skipped, new.len());
        let mut out = Vec::new();
        encode_after(&codec, &tail, skipped, &stored, kept, &mut out).unwrap();
        // The footers differ only in their creation time.
        let mut file = stored[..kept.bytes as usize].to_vec();
        file.extend_from_slice(&out);
        assert!(to_bars(decode(&file, None).unwrap().0) == new, "skipped {skipped}");
        assert_eq!(out.len(), whole.len(), "skipped {skipped}");
    }
    // Rows the kept groups do not cover must be in `bars`.
    let tail = new.slice_rows(4_097, new.len());
    let err = encode_after(&codec, &tail, 4_097, &stored, kept, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("cannot keep"), "{err}");
}

/// [`BarCodec::keepable`] of a whole stored file, for new rows none of which are skipped.
fn keepable(codec: &ParquetCodec, stored: &[u8], bars: &Bars, unchanged: usize) -> Option<barvault_ports::KeptPrefix> {
    let next = barvault_ports::Continuation { bars, skipped: 0, series: &series() };
    let keep = barvault_ports::Keep { stored_rows: unchanged, unchanged };
    codec.keepable(&stored, next, keep).expect("keepable never fails on bytes in memory")
}

/// [`BarCodec::encode_after`] of `bars` after `skipped` stored rows.
fn encode_after(
    codec: &ParquetCodec,
    bars: &Bars,
    skipped: usize,
    stored: &[u8],
    kept: barvault_ports::KeptPrefix,
    out: &mut Vec<u8>,
) -> Result<(), barvault_ports::CodecError> {
    let series = series();
    let next = barvault_ports::Continuation { bars, skipped, series: &series };
    codec.encode_after(&stored, kept, next, out)
}

/// Reads of a row group or more from memory decode half their columns on a second thread
/// and are one batch up to the reserve cap; from a file they stay on one thread. Every way
/// must give the rows written, also past the cap (many batches joined pair by pair).
#[test]
fn long_reads_decoded_on_two_threads_round_trip() {
    let codec = ParquetCodec::default();
    let start = 1_600_000_000_000_000_000;
    for n in [300_000usize, 1_250_000] {
        let bars = minute_bars(n, start);
        let bytes = encode(&codec, &bars);
        let (raw, stats) = decode(&bytes, None).unwrap();
        assert_eq!(stats.rows_read, n);
        assert_eq!(to_bars(raw), bars, "{n} rows from memory");

        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let raw = codec.decode(CodecInput::File(file), barvault_ports::Rows::All).unwrap().raw;
        assert_eq!(to_bars(raw), bars, "{n} rows from a file");

        // A range over the second and third row groups: two threads, trimmed exactly.
        let (lo, hi) = (150_000usize, 270_000usize);
        let range = TimeRange::new(Some(bars.timestamps()[lo]), Some(bars.timestamps()[hi])).unwrap();
        let (raw, stats) = decode(&bytes, Some(range)).unwrap();
        assert_eq!(stats.row_groups_read, 2);
        let back = to_bars(raw);
        assert_eq!(back.len(), hi - lo + 1);
        assert_eq!(back.timestamps(), &bars.timestamps()[lo..=hi]);
        assert_eq!(back.close(), &bars.close()[lo..=hi]);
        assert_eq!(back.extra("adj_close").unwrap().values(), &bars.extra("adj_close").unwrap().values()[lo..=hi]);
    }
}

/// The blocks a range read proves (issue 18, P10): the layout lists every row group with
/// its bytes and timestamps, and a decode of some groups from their pieces alone returns
/// exactly their rows in the range; a piece left out is an error, never a read elsewhere.
#[test]
fn layout_and_decode_of_some_row_groups_from_their_pieces_alone() {
    let codec = ParquetCodec::default().with_row_group_rows(1000);
    let ts: Vec<i64> = (0..5_000).map(|i| 1_700_000_000_000_000_000 + i * 60_000_000_000).collect();
    let v: Vec<f64> = (0..5_000).map(|i| 100.0 + f64::from(i % 89) * 0.25).collect();
    let bars = Bars::new(ts.clone(), v.clone(), v.clone(), v.clone(), v.clone(), v, vec![]).unwrap();
    let mut bytes = Vec::new();
    codec.encode(&bars, &series(), &mut bytes).unwrap();
    let layout = codec.layout(&bytes.as_slice()).unwrap().expect("a layout");
    assert_eq!(layout.groups.len(), 5);
    assert_eq!(layout.footer.0 + layout.footer.1, bytes.len() as u64);
    for (i, g) in layout.groups.iter().enumerate() {
        assert_eq!((g.rows, g.first, g.last), (1000, ts[i * 1000], ts[i * 1000 + 999]), "group {i}");
    }
    let piece =
        |offset: u64, len: u64| (offset, bytes::Bytes::copy_from_slice(&bytes[offset as usize..][..len as usize]));
    let footer = piece(layout.footer.0, layout.footer.1);
    let group = |g: usize| piece(layout.groups[g].offset, layout.groups[g].len);
    let range = TimeRange::new(Some(ts[2_500]), Some(ts[3_499])).unwrap();
    let read = barvault_ports::BlockRead {
        file_len: bytes.len() as u64,
        pieces: vec![footer.clone(), group(2), group(3)],
        groups: vec![2, 3],
    };
    let (raw, stats) = codec.decode_blocks_with_stats(read, range).unwrap();
    assert_eq!(raw.ts, ts[2_500..3_500].to_vec());
    // The other columns are decoded at the rows of the range only (a row filter on the timestamps).
    assert_eq!((stats.row_groups_total, stats.row_groups_read, stats.rows_read), (5, 2, 1_000));
    // Group 3 named but its piece left out: an error, not a panic or a read of other bytes.
    let missing =
        barvault_ports::BlockRead { file_len: bytes.len() as u64, pieces: vec![footer, group(2)], groups: vec![2, 3] };
    assert!(matches!(codec.decode_blocks(missing, range), Err(CodecError::Corrupt(_))));
}
