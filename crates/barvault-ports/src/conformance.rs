//! The behavioural contract of the ports, as plain async functions every adapter's tests call.
//!
//! A trait signature says what can be called, not what must happen: that a merge keeps
//! every row, that an unchanged write touches nothing, that `1m` and `1M` never share a
//! file, that `-0.0` comes back as `-0.0`. Writing those promises down once, as
//! executable cases, keeps the memory, CSV, Parquet and dual stores from each growing
//! their own idea of them. Cases panic with a message naming the broken promise, so they
//! read like assertions inside any `#[tokio::test]`, and need no harness.
//!
//! Every case uses its own symbols (all starting with `CF`), so the cases can share one
//! store and run in any order; the store must start without any of those series.

use std::time::Duration;

use barvault_domain::{
    Bars, CORE_COLUMNS, ExtraColumn, Instrument, InstrumentKind, MergePolicy, Period, SeriesKey, TimeRange,
    nanos_to_datetime,
};

use crate::context::OpContext;
use crate::error::StorageError;
use crate::lock::SeriesLocks;
use crate::metadata::{DateRange, FileMetadata, Fingerprint, MetadataStore};
use crate::store::{BackupPolicy, BarStore, FileInfo, PersistOptions, SeriesTail, StageHint, StorageReceipt};

/// One bar: timestamp, open, high, low, close, volume.
pub type Row = (i64, f64, f64, f64, f64, f64);

/// 2024-01-02T00:00:00Z in nanoseconds, the default start of fixtures.
pub const BASE_NS: i64 = 1_704_153_600_000_000_000;
/// One day in nanoseconds.
pub const DAY_NS: i64 = 86_400_000_000_000;

/// Floats that text and binary formats commonly fail to round-trip bit-exactly. The last is
/// `123456789.123456789` as the nearest f64 (written shorter so clippy accepts it).
pub const EXTREME_FLOATS: [f64; 8] =
    [1e-12, 1e300, -37.63, 0.1 + 0.2, 0.000_008_71, 5e-324, -0.0, 123_456_789.123_456_79];

/// SplitMix64: tiny, deterministic and good enough to make every float distinct.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with all 53 mantissa bits used.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` valid bars (high ≥ max(open, close), low ≤ min(open, close), volume ≥ 0) at
/// `start_ns + i * step_ns`. Equal arguments give equal bars; different seeds give
/// different values at every row. Prices use full-precision floats so lossy formats show.
///
/// # Panics
/// If `step_ns < 1` or a timestamp overflows `i64` (a misuse of the fixture).
pub fn sample_bars(n: usize, start_ns: i64, step_ns: i64, seed: u64) -> Bars {
    assert!(step_ns >= 1, "sample_bars: step_ns must be positive, got {step_ns}");
    let mut rng = SplitMix(seed ^ 0x5EED_F0BA_2500);
    let mut price = 50.0 + 100.0 * rng.unit();
    let rows: Vec<Row> = (0..n)
        .map(|i| {
            let ts = i64::try_from(i)
                .ok()
                .and_then(|i| i.checked_mul(step_ns))
                .and_then(|off| start_ns.checked_add(off))
                .expect("sample_bars: timestamp overflows i64");
            let open = price;
            let close = (open * (0.97 + 0.06 * rng.unit())).max(0.01);
            let high = open.max(close) * (1.0 + 0.02 * rng.unit());
            let low = open.min(close) * (1.0 - 0.02 * rng.unit());
            let volume = (1_000_000.0 * rng.unit()).floor() + rng.unit();
            price = close;
            (ts, open, high, low, close, volume)
        })
        .collect();
    bars_from_rows(&rows)
}

/// Bars from rows given in strictly increasing timestamp order.
///
/// # Panics
/// If the timestamps are not strictly increasing.
pub fn bars_from_rows(rows: &[Row]) -> Bars {
    Bars::new(
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1).collect(),
        rows.iter().map(|r| r.2).collect(),
        rows.iter().map(|r| r.3).collect(),
        rows.iter().map(|r| r.4).collect(),
        rows.iter().map(|r| r.5).collect(),
        vec![],
    )
    .expect("bars_from_rows: timestamps must be strictly increasing")
}

/// The core rows of `bars` (extras left out).
pub fn rows_of(bars: &Bars) -> Vec<Row> {
    (0..bars.len())
        .map(|i| {
            (bars.timestamps()[i], bars.open()[i], bars.high()[i], bars.low()[i], bars.close()[i], bars.volume()[i])
        })
        .collect()
}

/// `bars` with one more extra column.
///
/// # Panics
/// If the name is invalid or taken, or `values` has the wrong length.
pub fn with_extra(bars: &Bars, name: &str, values: Vec<Option<f64>>) -> Bars {
    let mut extras = bars.extras().to_vec();
    extras.push(ExtraColumn::new(name, values).expect("with_extra: invalid column name"));
    Bars::new(
        bars.timestamps().to_vec(),
        bars.open().to_vec(),
        bars.high().to_vec(),
        bars.low().to_vec(),
        bars.close().to_vec(),
        bars.volume().to_vec(),
        extras,
    )
    .expect("with_extra: column length or name clash")
}

/// A series key from parts.
///
/// # Panics
/// If the symbol is invalid for `kind`.
pub fn series(kind: InstrumentKind, symbol: &str, period: Period) -> SeriesKey {
    SeriesKey::new(Instrument::new(kind, symbol).expect("series: invalid symbol"), period)
}

/// A daily stock series.
pub fn stock(symbol: &str) -> SeriesKey {
    series(InstrumentKind::Stock, symbol, Period::D1)
}

/// Bars whose every column (and an `adj_close` extra) cycles through [`EXTREME_FLOATS`].
pub fn extreme_bars(start_ns: i64) -> Bars {
    let n = EXTREME_FLOATS.len();
    let col = |shift: usize| (0..n).map(|i| EXTREME_FLOATS[(i + shift) % n]).collect::<Vec<f64>>();
    let bars = Bars::new(
        (0..n as i64).map(|i| start_ns + i * DAY_NS).collect(),
        col(0),
        col(1),
        col(2),
        col(3),
        col(4),
        vec![],
    )
    .expect("extreme_bars: fixed timestamps are increasing");
    with_extra(&bars, "adj_close", col(5).into_iter().map(Some).collect())
}

/// A metadata record for `series` in `format`; `generation` varies every derived field.
pub fn sample_metadata(series: &SeriesKey, format: &str, generation: u64) -> FileMetadata {
    let g = i64::try_from(generation % 1_000_000).unwrap_or(0);
    FileMetadata {
        file_path: format!("{}.{format}", series.relative_stem()),
        instrument_symbol: series.instrument.symbol().clone(),
        instrument_type: series.instrument.kind(),
        period: series.period,
        format: format.to_string(),
        row_count: 100 + generation,
        columns: CORE_COLUMNS.iter().map(|c| c.to_string()).chain(["adj_close".to_string()]).collect(),
        date_range: DateRange {
            start: Some(nanos_to_datetime(BASE_NS + g)),
            end: Some(nanos_to_datetime(1_700_000_000_123_456_789 + g)),
        },
        file_size: 4096 + generation,
        last_updated: nanos_to_datetime(1_700_000_000_123_456_789 + g * 1_000_000_007),
        checksum: format!("{:032x}", u128::from(generation).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834)),
        generation,
        backup_checksum: None,
        fingerprint: None,
    }
}

fn ctx() -> OpContext {
    OpContext::with_correlation_id(Some("conformance"))
}

async fn persist(store: &dyn BarStore, bars: &Bars, s: &SeriesKey, options: PersistOptions) -> StorageReceipt {
    store
        .persist(bars, s, options, &ctx())
        .await
        .unwrap_or_else(|e| panic!("[{}] persist {s} ({options:?}) failed: {e}", store.name()))
}

async fn load(store: &dyn BarStore, s: &SeriesKey, range: Option<TimeRange>) -> Option<Bars> {
    store.load(s, range, &ctx()).await.unwrap_or_else(|e| panic!("[{}] load {s} {range:?} failed: {e}", store.name()))
}

async fn load_all(store: &dyn BarStore, s: &SeriesKey) -> Bars {
    load(store, s, None).await.unwrap_or_else(|| panic!("[{}] {s}: persisted series loads as None", store.name()))
}

async fn exists(store: &dyn BarStore, s: &SeriesKey) -> bool {
    store.exists(s, &ctx()).await.unwrap_or_else(|e| panic!("[{}] exists {s} failed: {e}", store.name()))
}

async fn file_info(store: &dyn BarStore, s: &SeriesKey) -> Option<FileInfo> {
    store.file_info(s, &ctx()).await.unwrap_or_else(|e| panic!("[{}] file_info {s} failed: {e}", store.name()))
}

fn range(start: Option<i64>, end: Option<i64>) -> TimeRange {
    TimeRange::new(start, end).expect("conformance ranges are ordered")
}

fn assert_bars(store: &dyn BarStore, case: &str, actual: &Bars, expected: &Bars) {
    if actual != expected {
        let first_diff = rows_of(actual).iter().zip(rows_of(expected)).position(|(a, e)| {
            a.0 != e.0 || [a.1, a.2, a.3, a.4, a.5].map(f64::to_bits) != [e.1, e.2, e.3, e.4, e.5].map(f64::to_bits)
        });
        panic!(
            "[{}] {case}: loaded bars differ from expected ({} vs {} rows, columns {:?} vs {:?}, first differing \
             core row {first_diff:?})\nloaded:   {actual:?}\nexpected: {expected:?}",
            store.name(),
            actual.len(),
            expected.len(),
            actual.column_names(),
            expected.column_names(),
        );
    }
}

fn concat(parts: &[&Bars]) -> Bars {
    bars_from_rows(&parts.iter().flat_map(|b| rows_of(b)).collect::<Vec<_>>())
}

/// Persist then load returns the same bars; the receipt describes the write.
pub async fn round_trip(store: &dyn BarStore) {
    let s = stock("CF_ROUND");
    let bars = sample_bars(50, BASE_NS, DAY_NS, 1);
    let context = OpContext::with_correlation_id(Some("cf-round-trip"));
    let receipt = store
        .persist(&bars, &s, PersistOptions::default(), &context)
        .await
        .unwrap_or_else(|e| panic!("[{}] round_trip: persist failed: {e}", store.name()));
    assert!(receipt.written, "[{}] round_trip: first write of a series reports written=false", store.name());
    assert_eq!(receipt.rows_written, 50, "[{}] round_trip: rows_written", store.name());
    assert_eq!(receipt.merge.rows_added, 50, "[{}] round_trip: merge.rows_added", store.name());
    assert_eq!(receipt.correlation_id, "cf-round-trip", "[{}] round_trip: receipt correlation id", store.name());
    assert!(
        !receipt.location.is_empty() && !receipt.format.is_empty(),
        "[{}] round_trip: empty location",
        store.name()
    );
    assert_bars(store, "round_trip", &load_all(store, &s).await, &bars);
}

/// Two batches overlapping on a fixture: `a` has 10 rows, `b` re-sends a's last 3 with
/// other values and adds 2.
fn overlapping_batches(seed: u64) -> (Bars, Bars) {
    let a = sample_bars(10, BASE_NS, DAY_NS, seed);
    let b = sample_bars(5, BASE_NS + 7 * DAY_NS, DAY_NS, seed + 1000);
    assert!(
        rows_of(&a)[7..].iter().zip(rows_of(&b)).all(|(x, y)| x.4.to_bits() != y.4.to_bits()),
        "fixture: overlapping rows must differ"
    );
    (a, b)
}

/// Keep-last: on overlap the new values win; every row survives; stats count it right.
pub async fn keep_last_merge(store: &dyn BarStore) {
    let s = stock("CF_KEEPLAST");
    let (a, b) = overlapping_batches(2);
    persist(store, &a, &s, PersistOptions::default()).await;
    let r = persist(store, &b, &s, PersistOptions::merge(MergePolicy::KeepLast)).await;
    assert!(r.written, "[{}] keep_last_merge: changing merge reports written=false", store.name());
    assert_eq!(r.rows_written, 12, "[{}] keep_last_merge: rows_written", store.name());
    let m = r.merge;
    assert_eq!(
        (m.existing_rows, m.new_rows, m.result_rows, m.duplicates_removed, m.rows_added, m.rows_changed, m.unchanged),
        (10, 5, 12, 3, 2, 3, false),
        "[{}] keep_last_merge: merge stats (existing, new, result, duplicates, added, changed, unchanged)",
        store.name()
    );
    let expected = concat(&[&a.slice_rows(0, 7), &b]);
    assert_bars(store, "keep_last_merge", &load_all(store, &s).await, &expected);
}

/// Keep-first: stored values survive the overlap, new timestamps are still added.
pub async fn keep_first_merge(store: &dyn BarStore) {
    let s = stock("CF_KEEPFIRST");
    let (a, b) = overlapping_batches(3);
    persist(store, &a, &s, PersistOptions::default()).await;
    let r = persist(store, &b, &s, PersistOptions::merge(MergePolicy::KeepFirst)).await;
    assert!(r.written, "[{}] keep_first_merge: adding rows reports written=false", store.name());
    assert_eq!(
        (r.merge.rows_added, r.merge.duplicates_removed, r.merge.rows_changed),
        (2, 3, 0),
        "[{}] keep_first_merge: (rows_added, duplicates_removed, rows_changed)",
        store.name()
    );
    let expected = concat(&[&a, &b.slice_rows(3, 5)]);
    assert_bars(store, "keep_first_merge", &load_all(store, &s).await, &expected);

    let again = persist(store, &b.slice_rows(0, 3), &s, PersistOptions::merge(MergePolicy::KeepFirst)).await;
    assert!(!again.written, "[{}] keep_first_merge: only-overlapping keep-first batch was written", store.name());
    assert_bars(store, "keep_first_merge (overlap only)", &load_all(store, &s).await, &expected);
}

/// Error-on-conflict: differing values fail with `Conflict` and leave the stored data
/// untouched; equal values on the overlap are not a conflict.
pub async fn error_on_conflict(store: &dyn BarStore) {
    let s = stock("CF_CONFLICT");
    let (a, b) = overlapping_batches(4);
    persist(store, &a, &s, PersistOptions::default()).await;
    let policy = PersistOptions::merge(MergePolicy::ErrorOnConflict);
    match store.persist(&b, &s, policy, &ctx()).await {
        Err(StorageError::Conflict { series, .. }) => {
            assert_eq!(series, s, "[{}] error_on_conflict: Conflict names the wrong series", store.name())
        }
        Err(e) => panic!("[{}] error_on_conflict: expected StorageError::Conflict, got {e:?}", store.name()),
        Ok(r) => panic!("[{}] error_on_conflict: conflicting batch accepted: {r:?}", store.name()),
    }
    assert_bars(store, "error_on_conflict (after refusal)", &load_all(store, &s).await, &a);

    let agreeing = concat(&[&a.slice_rows(7, 10), &b.slice_rows(3, 5)]);
    let r = persist(store, &agreeing, &s, policy).await;
    assert!(r.written && r.merge.rows_added == 2, "[{}] error_on_conflict: equal overlap refused: {r:?}", store.name());
    let expected = concat(&[&a, &b.slice_rows(3, 5)]);
    assert_bars(store, "error_on_conflict (equal overlap)", &load_all(store, &s).await, &expected);
}

/// Batches that share no timestamp keep all their rows, including interleaved ones.
pub async fn non_overlapping_batches_keep_all_rows(store: &dyn BarStore) {
    let s = stock("CF_DISJOINT");
    let even = sample_bars(10, BASE_NS, 2 * DAY_NS, 5);
    let odd = sample_bars(10, BASE_NS + DAY_NS, 2 * DAY_NS, 6);
    let later = sample_bars(5, BASE_NS + 40 * DAY_NS, DAY_NS, 7);
    for batch in [&later, &even, &odd] {
        let r = persist(store, batch, &s, PersistOptions::default()).await;
        assert_eq!(r.merge.rows_added, batch.len(), "[{}] non_overlapping: rows_added", store.name());
    }
    let mut rows: Vec<Row> = [&even, &odd, &later].iter().flat_map(|b| rows_of(b)).collect();
    rows.sort_by_key(|r| r.0);
    assert_bars(store, "non_overlapping_batches_keep_all_rows", &load_all(store, &s).await, &bars_from_rows(&rows));
}

/// Replace writes exactly the given bars; replacing with the same bars writes nothing.
pub async fn replace_mode(store: &dyn BarStore) {
    let s = stock("CF_REPLACE");
    let (a, b) = overlapping_batches(8);
    persist(store, &a, &s, PersistOptions::default()).await;
    let r = persist(store, &b, &s, PersistOptions::replace()).await;
    assert!(r.written, "[{}] replace_mode: replace reports written=false", store.name());
    assert_eq!(r.rows_written, b.len(), "[{}] replace_mode: rows_written", store.name());
    assert_bars(store, "replace_mode", &load_all(store, &s).await, &b);
    let again = persist(store, &b, &s, PersistOptions::replace()).await;
    assert!(!again.written, "[{}] replace_mode: replacing with identical bars was written", store.name());
    assert_bars(store, "replace_mode (identical)", &load_all(store, &s).await, &b);
}

/// An empty frame writes nothing: a missing series stays missing, a stored one unchanged.
pub async fn empty_frame(store: &dyn BarStore) {
    let s = stock("CF_EMPTY");
    let r = persist(store, &Bars::empty(), &s, PersistOptions::default()).await;
    assert!(!r.written, "[{}] empty_frame: empty frame into a missing series was written", store.name());
    assert_eq!(r.rows_written, 0, "[{}] empty_frame: rows_written", store.name());
    assert!(!exists(store, &s).await, "[{}] empty_frame: series exists after an empty persist", store.name());
    assert!(load(store, &s, None).await.is_none(), "[{}] empty_frame: load of never-written series", store.name());
    assert!(file_info(store, &s).await.is_none(), "[{}] empty_frame: file_info of never-written series", store.name());

    let a = sample_bars(5, BASE_NS, DAY_NS, 9);
    persist(store, &a, &s, PersistOptions::default()).await;
    let r = persist(store, &Bars::empty(), &s, PersistOptions::default()).await;
    assert!(!r.written, "[{}] empty_frame: empty frame into a stored series was written", store.name());
    assert_eq!(r.rows_written, a.len(), "[{}] empty_frame: rows_written is the stored row count", store.name());
    assert_bars(store, "empty_frame", &load_all(store, &s).await, &a);
}

/// A series never written: load (with or without range) and file_info are None, exists false.
pub async fn missing_series(store: &dyn BarStore) {
    let s = series(InstrumentKind::Future, "CF_MISSING", Period::H4);
    assert!(load(store, &s, None).await.is_none(), "[{}] missing_series: load is not None", store.name());
    let r = Some(range(Some(0), Some(BASE_NS)));
    assert!(load(store, &s, r).await.is_none(), "[{}] missing_series: ranged load is not None", store.name());
    assert!(file_info(store, &s).await.is_none(), "[{}] missing_series: file_info is not None", store.name());
    assert!(!exists(store, &s).await, "[{}] missing_series: exists is true", store.name());
}

/// exists and file_info describe what was stored: rows, first, last, columns.
pub async fn exists_and_file_info(store: &dyn BarStore) {
    let s = series(InstrumentKind::Stock, "CF_INFO", Period::H1);
    let base = sample_bars(24, BASE_NS, 3_600_000_000_000, 10);
    let bars = with_extra(&base, "adj_close", (0..24).map(|i| (i % 3 != 0).then_some(i as f64 * 0.5)).collect());
    persist(store, &bars, &s, PersistOptions::default()).await;
    assert!(exists(store, &s).await, "[{}] exists_and_file_info: exists is false", store.name());
    let info = file_info(store, &s)
        .await
        .unwrap_or_else(|| panic!("[{}] exists_and_file_info: file_info is None", store.name()));
    assert_eq!(info.rows, 24, "[{}] file_info.rows", store.name());
    assert_eq!(info.first, bars.first_timestamp(), "[{}] file_info.first", store.name());
    assert_eq!(info.last, bars.last_timestamp(), "[{}] file_info.last", store.name());
    assert_eq!(info.columns, bars.column_names(), "[{}] file_info.columns", store.name());
    assert!(info.size > 0, "[{}] file_info.size is 0 for a stored series", store.name());
    assert!(!info.location.is_empty() && !info.format.is_empty(), "[{}] file_info location/format", store.name());
}

/// Range loads: both bounds inclusive, open ends, and an empty (not missing) result.
pub async fn range_load(store: &dyn BarStore) {
    let s = stock("CF_RANGE");
    let bars = sample_bars(20, BASE_NS, DAY_NS, 11);
    persist(store, &bars, &s, PersistOptions::default()).await;
    let ts = bars.timestamps();
    let cases = [
        ("inclusive bounds", range(Some(ts[5]), Some(ts[10])), 5, 11),
        ("open start", range(None, Some(ts[3])), 0, 4),
        ("open end", range(Some(ts[15]), None), 15, 20),
        ("single instant", range(Some(ts[7]), Some(ts[7])), 7, 8),
        ("between bars", range(Some(ts[5] + 1), Some(ts[6] - 1)), 6, 6),
        ("after the end", range(Some(ts[19] + 1), None), 20, 20),
        ("before the start", range(None, Some(ts[0] - 1)), 0, 0),
        ("unbounded", TimeRange::all(), 0, 20),
    ];
    for (name, r, lo, hi) in cases {
        let got = load(store, &s, Some(r))
            .await
            .unwrap_or_else(|| panic!("[{}] range_load {name}: stored series loads as None", store.name()));
        let want = bars.slice_rows(lo, hi);
        if lo == hi {
            assert!(got.is_empty(), "[{}] range_load {name}: expected no rows, got {}", store.name(), got.len());
        } else {
            assert_bars(store, &format!("range_load {name}"), &got, &want);
        }
    }
}

/// Extra columns keep missing cells missing, a later batch lacking a column keeps the
/// stored values, and a new column appears with missing cells on older rows.
pub async fn extra_columns_with_missing_values(store: &dyn BarStore) {
    let s = stock("CF_EXTRAS");
    let base = sample_bars(6, BASE_NS, DAY_NS, 12);
    let adj = vec![Some(1.5), None, Some(-0.0), None, Some(2.25), Some(3.0)];
    let a = with_extra(&base, "adj_close", adj.clone());
    persist(store, &a, &s, PersistOptions::default()).await;
    assert_bars(store, "extra_columns (round trip)", &load_all(store, &s).await, &a);

    // b: re-sends the last two rows without adj_close, adds two rows with open_interest.
    let b_core = sample_bars(4, BASE_NS + 4 * DAY_NS, DAY_NS, 13);
    let b = with_extra(&b_core, "open_interest", vec![None, Some(7.0), Some(8.0), None]);
    persist(store, &b, &s, PersistOptions::merge(MergePolicy::KeepLast)).await;

    let core = concat(&[&base.slice_rows(0, 4), &b_core]);
    let mut adj_expected = adj;
    adj_expected.extend([None, None]);
    let expected = with_extra(
        &with_extra(&core, "adj_close", adj_expected),
        "open_interest",
        [vec![None; 4], vec![None, Some(7.0), Some(8.0), None]].concat(),
    );
    assert_bars(store, "extra_columns (later batch lacks a column)", &load_all(store, &s).await, &expected);
}

/// Nanosecond timestamps, including before 1970, survive storage and range bounds.
pub async fn nanosecond_timestamps(store: &dyn BarStore) {
    let s = series(InstrumentKind::Stock, "CF_NANOS", Period::M1);
    let stamps = [
        -1_000_000_000_123_456_789,
        -86_400_000_000_001,
        -1,
        0,
        1,
        1_700_000_000_123_456_789,
        1_700_000_000_123_456_790,
    ];
    let template = rows_of(&sample_bars(stamps.len(), 0, 1, 14));
    let rows: Vec<Row> = stamps.iter().zip(template).map(|(&ts, r)| (ts, r.1, r.2, r.3, r.4, r.5)).collect();
    let bars = bars_from_rows(&rows);
    persist(store, &bars, &s, PersistOptions::default()).await;
    assert_bars(store, "nanosecond_timestamps", &load_all(store, &s).await, &bars);
    let one = load(store, &s, Some(range(Some(stamps[5]), Some(stamps[5])))).await;
    assert_eq!(
        one.map(|b| b.timestamps().to_vec()),
        Some(vec![stamps[5]]),
        "[{}] nanosecond_timestamps: a one-nanosecond range",
        store.name()
    );
    let negatives = load(store, &s, Some(range(None, Some(-1)))).await;
    assert_eq!(negatives.map(|b| b.len()), Some(3), "[{}] nanosecond_timestamps: rows before 1970", store.name());
    let info = file_info(store, &s).await.unwrap_or_else(|| panic!("[{}] file_info is None", store.name()));
    assert_eq!((info.first, info.last), (Some(stamps[0]), Some(stamps[6])), "[{}] file_info range", store.name());
}

/// Extreme and awkward floats come back bit for bit, in core and extra columns.
pub async fn extreme_floats(store: &dyn BarStore) {
    let s = stock("CF_FLOATS");
    let bars = extreme_bars(BASE_NS);
    persist(store, &bars, &s, PersistOptions::default()).await;
    assert_bars(store, "extreme_floats", &load_all(store, &s).await, &bars);
}

/// Persisting what is already stored writes nothing, under every policy, and the file
/// is not touched.
pub async fn identical_data_is_unchanged(store: &dyn BarStore) {
    let s = stock("CF_SAME");
    let bars = with_extra(&sample_bars(8, BASE_NS, DAY_NS, 15), "adj_close", [Some(1.0), None].repeat(4));
    persist(store, &bars, &s, PersistOptions::default()).await;
    let before = file_info(store, &s).await;
    for policy in [MergePolicy::KeepLast, MergePolicy::KeepFirst, MergePolicy::ErrorOnConflict] {
        let r = persist(store, &bars, &s, PersistOptions::merge(policy)).await;
        assert!(!r.written, "[{}] identical_data ({policy}): written=true", store.name());
        assert!(r.merge.unchanged && r.merge.rows_added == 0, "[{}] identical_data ({policy}): {r:?}", store.name());
        assert_eq!(r.rows_written, bars.len(), "[{}] identical_data ({policy}): rows_written", store.name());
        let r = persist(store, &bars.slice_rows(2, 5), &s, PersistOptions::merge(policy)).await;
        assert!(!r.written, "[{}] identical_data ({policy}): a stored subset was written", store.name());
    }
    assert_eq!(file_info(store, &s).await, before, "[{}] identical_data: file_info changed", store.name());
    assert_bars(store, "identical_data_is_unchanged", &load_all(store, &s).await, &bars);
}

/// Kinds, periods (`1m` vs `1M`) and symbols each get their own series; symbols are
/// case-insensitive.
pub async fn series_never_collide(store: &dyn BarStore) {
    let keys = [
        series(InstrumentKind::Stock, "CF_X", Period::D1),
        series(InstrumentKind::Future, "CF_X", Period::D1),
        series(InstrumentKind::Stock, "CF_X", Period::M1),
        series(InstrumentKind::Stock, "CF_X", Period::Mo1),
        series(InstrumentKind::Stock, "CF_Y", Period::D1),
    ];
    let batches: Vec<Bars> = (0..keys.len()).map(|i| sample_bars(5 + i, BASE_NS, DAY_NS, 100 + i as u64)).collect();
    for (k, b) in keys.iter().zip(&batches) {
        let r = persist(store, b, k, PersistOptions::default()).await;
        assert!(r.written && r.merge.existing_rows == 0, "[{}] series_never_collide: {k} was not new", store.name());
    }
    let locations: std::collections::BTreeSet<String> = keys.iter().map(SeriesKey::relative_stem).collect();
    assert_eq!(locations.len(), keys.len(), "fixture: series stems must differ");
    for (k, b) in keys.iter().zip(&batches) {
        assert_bars(store, &format!("series_never_collide {k}"), &load_all(store, k).await, b);
    }
    let lower = series(InstrumentKind::Stock, "cf_x", Period::D1);
    assert_bars(store, "series_never_collide (lower-case symbol)", &load_all(store, &lower).await, &batches[0]);
}

/// `list` (if supported) includes every persisted series; `remove` (if supported)
/// deletes one and reports whether it existed.
pub async fn list_and_remove(store: &dyn BarStore) {
    let keys = [stock("CF_LIST_A"), series(InstrumentKind::Forex, "CFXUSD", Period::M5)];
    for (i, k) in keys.iter().enumerate() {
        persist(store, &sample_bars(3, BASE_NS, DAY_NS, 200 + i as u64), k, PersistOptions::default()).await;
    }
    match store.list(&ctx()).await {
        Ok(listed) => {
            for k in &keys {
                assert!(listed.contains(k), "[{}] list: {k} missing from {listed:?}", store.name());
            }
        }
        Err(StorageError::Unsupported { .. }) => {}
        Err(e) => panic!("[{}] list failed: {e}", store.name()),
    }
    let s = stock("CF_REMOVE");
    persist(store, &sample_bars(3, BASE_NS, DAY_NS, 210), &s, PersistOptions::default()).await;
    match store.remove(&s, &ctx()).await {
        Ok(existed) => {
            assert!(existed, "[{}] remove of a stored series returned false", store.name());
            assert!(!exists(store, &s).await, "[{}] series exists after remove", store.name());
            assert!(load(store, &s, None).await.is_none(), "[{}] removed series still loads", store.name());
            let again = store.remove(&s, &ctx()).await;
            assert!(matches!(again, Ok(false)), "[{}] second remove: {again:?}", store.name());
        }
        Err(StorageError::Unsupported { .. }) => {}
        Err(e) => panic!("[{}] remove failed: {e}", store.name()),
    }
}

/// `load_with_checksum` returns what `load` returns, and its checksum (if any) is the
/// one `checksum` reports (if supported) and changes when the data does.
pub async fn load_with_checksum_matches_load(store: &dyn BarStore) {
    let s = stock("CF_CHECKSUM");
    let c = ctx();
    let missing = store.load_with_checksum(&s, None, &c).await;
    assert!(matches!(missing, Ok(None)), "[{}] load_with_checksum of a missing series: {missing:?}", store.name());
    let bars = sample_bars(6, BASE_NS, DAY_NS, 300);
    persist(store, &bars, &s, PersistOptions::default()).await;
    let (loaded, sum) = store
        .load_with_checksum(&s, None, &c)
        .await
        .unwrap_or_else(|e| panic!("[{}] load_with_checksum failed: {e}", store.name()))
        .unwrap_or_else(|| panic!("[{}] load_with_checksum of a stored series is None", store.name()));
    assert_bars(store, "load_with_checksum", &loaded, &bars);
    let r = Some(range(Some(bars.timestamps()[2]), None));
    let ranged = store.load_with_checksum(&s, r, &c).await.ok().flatten().map(|(b, _)| b);
    assert_eq!(ranged, Some(bars.slice_rows(2, 6)), "[{}] load_with_checksum with a range", store.name());
    let Some(sum) = sum else { return };
    assert!(
        sum.len() == 32 && sum.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "[{}] checksum {sum:?} is not lower-case hex MD5",
        store.name()
    );
    match store.checksum(&s, &c).await {
        Ok(direct) => assert_eq!(direct.as_deref(), Some(sum.as_str()), "[{}] checksum vs load", store.name()),
        Err(StorageError::Unsupported { .. }) => {}
        Err(e) => panic!("[{}] checksum failed: {e}", store.name()),
    }
    persist(store, &sample_bars(1, BASE_NS + 10 * DAY_NS, DAY_NS, 301), &s, PersistOptions::default()).await;
    let after = store.load_with_checksum(&s, None, &c).await.ok().flatten().and_then(|(_, sum)| sum);
    assert!(after.is_some_and(|a| a != sum), "[{}] checksum did not change with the data", store.name());
}

/// The `_against` reads never believe a record that carries no fingerprint, nor one whose
/// fingerprint was written for other bytes: they report the stored data's own checksum,
/// exactly as `load_with_checksum` and `checksum` do, and the bars `load` returns.
pub async fn reads_against_a_record_trust_only_a_matching_fingerprint(store: &dyn BarStore) {
    let s = stock("CF_AGAINST");
    let c = ctx();
    let bars = sample_bars(8, BASE_NS, DAY_NS, 310);
    let receipt = persist(store, &bars, &s, PersistOptions::default()).await;
    let plain = store.load_with_checksum(&s, None, &c).await.ok().flatten().and_then(|(_, sum)| sum);
    let mut record = sample_metadata(&s, store.name(), 1);
    record.checksum = "f".repeat(32);
    record.file_size = receipt.file_size.unwrap_or(0);
    let foreign = Fingerprint { crc32: 0x0BAD_F00D, md5_states: Vec::new() };
    for fingerprint in [None, Some(foreign)] {
        record.fingerprint = fingerprint;
        let what = if record.fingerprint.is_some() { "a foreign fingerprint" } else { "no fingerprint" };
        let (loaded, sum) = store
            .load_with_checksum_against(&s, None, Some(&record), &c)
            .await
            .unwrap_or_else(|e| panic!("[{}] load_with_checksum_against failed: {e}", store.name()))
            .unwrap_or_else(|| panic!("[{}] load_with_checksum_against of a stored series is None", store.name()));
        assert_bars(store, "load_with_checksum_against", &loaded, &bars);
        assert_eq!(sum, plain, "[{}] load_with_checksum_against believed a record with {what}", store.name());
        match (store.checksum_against(&s, Some(&record), &c).await, store.checksum(&s, &c).await) {
            (Ok(against), Ok(direct)) => {
                assert_eq!(against, direct, "[{}] checksum_against believed a record with {what}", store.name())
            }
            (Err(StorageError::Unsupported { .. }), Err(StorageError::Unsupported { .. })) => {}
            (a, d) => panic!("[{}] checksum_against {a:?} vs checksum {d:?}", store.name()),
        }
    }
    let missing = store.load_with_checksum_against(&stock("CF_AGAINST_NONE"), None, Some(&record), &c).await;
    assert!(matches!(missing, Ok(None)), "[{}] a missing series: {missing:?}", store.name());
}

/// `stage` (if supported) publishes nothing until `commit`: loads keep returning the
/// current version, a dropped staged write leaves no trace, and a committed one is an
/// overwrite (no merge with what was stored) whose checksum is the one loads report.
pub async fn staged_write_is_invisible_until_commit(store: &dyn BarStore) {
    let s = stock("CF_STAGE");
    let c = ctx();
    let old = sample_bars(4, BASE_NS, DAY_NS, 400);
    persist(store, &old, &s, PersistOptions::default()).await;
    let new = sample_bars(3, BASE_NS + 20 * DAY_NS, DAY_NS, 401);
    let staged = match store.stage(&new, &s, &c).await {
        Ok(staged) => staged,
        Err(StorageError::Unsupported { .. }) => return,
        Err(e) => panic!("[{}] stage failed: {e}", store.name()),
    };
    assert_bars(store, "staged, not committed", &load_all(store, &s).await, &old);
    drop(staged);
    assert_bars(store, "staged write dropped", &load_all(store, &s).await, &old);
    let staged = store.stage(&new, &s, &c).await;
    let staged = staged.unwrap_or_else(|e| panic!("[{}] second stage failed: {e}", store.name()));
    assert_bars(store, "staged again, not committed", &load_all(store, &s).await, &old);
    let receipt =
        staged.commit(BackupPolicy::Keep, &c).await.unwrap_or_else(|e| panic!("[{}] commit failed: {e}", store.name()));
    assert!(receipt.written, "[{}] commit receipt says not written", store.name());
    assert_eq!(receipt.rows_written, new.len(), "[{}] commit receipt rows", store.name());
    assert_bars(store, "committed (an overwrite, not a merge)", &load_all(store, &s).await, &new);
    let loaded = store.load_with_checksum(&s, None, &c).await.ok().flatten().and_then(|(_, sum)| sum);
    assert_eq!(loaded, receipt.checksum_md5, "[{}] commit receipt checksum vs load", store.name());
    let fresh = stock("CF_STAGE_NEW");
    let staged = store.stage(&new, &fresh, &c).await;
    drop(staged.unwrap_or_else(|e| panic!("[{}] stage of a new series failed: {e}", store.name())));
    assert!(!exists(store, &fresh).await, "[{}] a dropped staged write created the series", store.name());
}

/// `stage_with` (if staging is supported) gives exactly the new bars whatever the store
/// makes of its hint: a true one after the stored file was proven by `checksum` (a store
/// may then keep stored bytes), and false ones, which it must detect or ignore.
pub async fn staged_write_with_a_hint_is_exact(store: &dyn BarStore) {
    let s = stock("CF_HINT");
    let c = ctx();
    let mut version = sample_bars(60, BASE_NS, DAY_NS, 500);
    persist(store, &version, &s, PersistOptions::default()).await;
    for (round, claim) in [(0usize, None), (1, Some(1usize)), (2, Some(7)), (3, None)] {
        // The last 3 rows revised and 2 appended.
        let n = version.len();
        let tail = sample_bars(5, version.timestamps()[n - 3], DAY_NS, 510 + round as u64);
        let (new, _) = barvault_domain::merge(&version, &tail, MergePolicy::KeepLast).expect("merge");
        let true_hint = StageHint { stored_rows: n, unchanged_prefix: version.common_prefix_len(&new) };
        let hint = match claim {
            None => true_hint,
            Some(extra) => StageHint { stored_rows: n + extra, ..true_hint },
        };
        match store.checksum(&s, &c).await {
            Ok(_) | Err(StorageError::Unsupported { .. }) => {}
            Err(e) => panic!("[{}] checksum failed: {e}", store.name()),
        }
        let staged = match store.stage_with(&new, &s, hint, &c).await {
            Ok(staged) => staged,
            Err(StorageError::Unsupported { .. }) => return,
            Err(e) => panic!("[{}] stage_with failed: {e}", store.name()),
        };
        let receipt = staged
            .commit(BackupPolicy::Keep, &c)
            .await
            .unwrap_or_else(|e| panic!("[{}] commit failed: {e}", store.name()));
        assert_bars(store, &format!("round {round}, hint {hint:?}"), &load_all(store, &s).await, &new);
        let loaded = store.load_with_checksum(&s, None, &c).await.ok().flatten().and_then(|(_, sum)| sum);
        assert_eq!(loaded, receipt.checksum_md5, "[{}] round {round}: receipt checksum vs load", store.name());
        version = new;
    }
}

/// `load_tail_against` (if supported) returns every stored row from `from` on, a row
/// before it when there is one, and nothing that differs from a whole load, with the same
/// checksum. `stage_tail` (if supported), after a read proved the file, commits exactly
/// the merged version given by its last rows, or declines (`None`), and then the whole
/// version is staged instead. A store without tail reads gets tails cut from a whole load.
pub async fn tail_reads_and_stages_are_exact(store: &dyn BarStore) {
    let s = stock("CF_TAIL");
    let c = ctx();
    let mut version = sample_bars(5_000, BASE_NS, DAY_NS, 600);
    persist(store, &version, &s, PersistOptions::default()).await;
    for round in 0..3u64 {
        let n = version.len();
        let from = version.timestamps()[n - 2];
        let whole = store.load_with_checksum(&s, None, &c).await;
        let (whole, whole_sum) = whole.ok().flatten().unwrap_or_else(|| panic!("[{}] whole load", store.name()));
        let tail = match store.load_tail_against(&s, from, None, &c).await {
            Ok(Some((tail, sum))) => {
                assert_eq!(sum, whole_sum, "[{}] round {round}: tail checksum", store.name());
                tail
            }
            Ok(None) => panic!("[{}] round {round}: no tail of a stored series", store.name()),
            Err(StorageError::Unsupported { .. }) => {
                let skipped = n - 100;
                SeriesTail { skipped, first: whole.first_timestamp(), bars: whole.slice_rows(skipped, n) }
            }
            Err(e) => panic!("[{}] round {round}: load_tail failed: {e}", store.name()),
        };
        assert_eq!(tail.len(), n, "[{}] round {round}: tail rows", store.name());
        assert_eq!(tail.first, whole.first_timestamp(), "[{}] round {round}: tail first", store.name());
        assert!(tail.bars == whole.slice_rows(tail.skipped, n), "[{}] round {round}: tail rows differ", store.name());
        if tail.skipped > 0 {
            assert!(tail.bars.timestamps()[0] < from, "[{}] round {round}: no row before `from`", store.name());
        }
        let update = sample_bars(3, from, DAY_NS, 610 + round);
        let (new, _) = barvault_domain::merge(&version, &update, MergePolicy::KeepLast).expect("merge");
        let (bars, _) = barvault_domain::merge(&tail.bars, &update, MergePolicy::KeepLast).expect("merge");
        let next = SeriesTail { bars, ..tail };
        let hint = StageHint { stored_rows: n, unchanged_prefix: version.common_prefix_len(&new) };
        let staged = match store.stage_tail(&next, &s, hint, &c).await {
            Ok(Some(staged)) => Some(staged),
            Ok(None) | Err(StorageError::Unsupported { .. }) => match store.stage_with(&new, &s, hint, &c).await {
                Ok(staged) => Some(staged),
                Err(StorageError::Unsupported { .. }) => None,
                Err(e) => panic!("[{}] round {round}: stage_with failed: {e}", store.name()),
            },
            Err(e) => panic!("[{}] round {round}: stage_tail failed: {e}", store.name()),
        };
        let receipt = match staged {
            Some(staged) => {
                let receipt = staged.commit(BackupPolicy::Keep, &c).await;
                let receipt =
                    receipt.unwrap_or_else(|e| panic!("[{}] round {round}: commit failed: {e}", store.name()));
                let loaded = store.load_with_checksum(&s, None, &c).await.ok().flatten().and_then(|(_, sum)| sum);
                assert_eq!(loaded, receipt.checksum_md5, "[{}] round {round}: receipt checksum vs load", store.name());
                receipt
            }
            None => persist(store, &new, &s, PersistOptions::replace()).await,
        };
        assert_eq!(receipt.rows_written, new.len(), "[{}] round {round}: receipt rows", store.name());
        assert_bars(store, &format!("tail round {round}"), &load_all(store, &s).await, &new);
        version = new;
    }
}

/// Every [`BarStore`] case, in order.
pub async fn run_all(store: &dyn BarStore) {
    round_trip(store).await;
    keep_last_merge(store).await;
    keep_first_merge(store).await;
    error_on_conflict(store).await;
    non_overlapping_batches_keep_all_rows(store).await;
    replace_mode(store).await;
    empty_frame(store).await;
    missing_series(store).await;
    exists_and_file_info(store).await;
    range_load(store).await;
    extra_columns_with_missing_values(store).await;
    nanosecond_timestamps(store).await;
    extreme_floats(store).await;
    identical_data_is_unchanged(store).await;
    series_never_collide(store).await;
    list_and_remove(store).await;
    load_with_checksum_matches_load(store).await;
    reads_against_a_record_trust_only_a_matching_fingerprint(store).await;
    staged_write_is_invisible_until_commit(store).await;
    staged_write_with_a_hint_is_exact(store).await;
    tail_reads_and_stages_are_exact(store).await;
}

async fn meta_get(store: &dyn MetadataStore, s: &SeriesKey, format: &str) -> Option<FileMetadata> {
    store.get(s, format, &ctx()).await.unwrap_or_else(|e| panic!("metadata get {s} {format} failed: {e}"))
}

async fn meta_record(store: &dyn MetadataStore, m: &FileMetadata) {
    store.record(m, &ctx()).await.unwrap_or_else(|e| panic!("metadata record {} failed: {e}", m.file_path))
}

async fn meta_list(store: &dyn MetadataStore) -> Vec<FileMetadata> {
    store.list(&ctx()).await.unwrap_or_else(|e| panic!("metadata list failed: {e}"))
}

async fn meta_remove(store: &dyn MetadataStore, s: &SeriesKey, format: &str) -> bool {
    store.remove(s, format, &ctx()).await.unwrap_or_else(|e| panic!("metadata remove {s} {format} failed: {e}"))
}

/// record → get → list → remove → get, every field preserved.
pub async fn metadata_round_trip(store: &dyn MetadataStore) {
    let s = stock("CF_META_RT");
    let m = sample_metadata(&s, "csv", 1);
    meta_record(store, &m).await;
    assert_eq!(meta_get(store, &s, "csv").await.as_ref(), Some(&m), "metadata_round_trip: get after record");
    assert!(meta_list(store).await.contains(&m), "metadata_round_trip: list lacks the record");
    assert!(meta_remove(store, &s, "csv").await, "metadata_round_trip: remove returned false");
    assert_eq!(meta_get(store, &s, "csv").await, None, "metadata_round_trip: get after remove");
    assert!(!meta_list(store).await.contains(&m), "metadata_round_trip: list still has the removed record");
}

/// The csv and parquet records of one series are separate.
pub async fn metadata_formats_are_separate(store: &dyn MetadataStore) {
    let s = series(InstrumentKind::Future, "CF_META_FMT", Period::M15);
    let csv = sample_metadata(&s, "csv", 2);
    let parquet = sample_metadata(&s, "parquet", 3);
    meta_record(store, &csv).await;
    meta_record(store, &parquet).await;
    assert_eq!(meta_get(store, &s, "csv").await.as_ref(), Some(&csv), "metadata: csv record overwritten");
    assert_eq!(meta_get(store, &s, "parquet").await.as_ref(), Some(&parquet), "metadata: parquet record lost");
    assert!(meta_remove(store, &s, "csv").await, "metadata: remove csv");
    assert_eq!(meta_get(store, &s, "parquet").await.as_ref(), Some(&parquet), "metadata: removing csv hit parquet");
}

/// Recording a series and format again replaces the record (one record per file).
pub async fn metadata_rerecord_replaces(store: &dyn MetadataStore) {
    let s = stock("CF_META_RE");
    let first = sample_metadata(&s, "parquet", 4);
    let second = sample_metadata(&s, "parquet", 5);
    meta_record(store, &first).await;
    meta_record(store, &second).await;
    assert_eq!(meta_get(store, &s, "parquet").await.as_ref(), Some(&second), "metadata: re-record did not replace");
    let same_path = meta_list(store).await.into_iter().filter(|m| m.file_path == second.file_path).count();
    assert_eq!(same_path, 1, "metadata: list holds {same_path} records for {}", second.file_path);
}

/// `list` is sorted by file_path whatever the recording order.
pub async fn metadata_list_sorted(store: &dyn MetadataStore) {
    let keys = [stock("CF_META_Z"), stock("CF_META_A"), series(InstrumentKind::Forex, "CFMJPY", Period::W1)];
    for (i, k) in keys.iter().enumerate() {
        meta_record(store, &sample_metadata(k, "csv", 10 + i as u64)).await;
    }
    let listed = meta_list(store).await;
    let paths: Vec<&str> = listed.iter().map(|m| m.file_path.as_str()).collect();
    assert!(paths.windows(2).all(|w| w[0] <= w[1]), "metadata: list not sorted by file_path: {paths:?}");
    for k in &keys {
        let p = format!("{}.csv", k.relative_stem());
        assert!(paths.contains(&p.as_str()), "metadata: list lacks {p}");
    }
}

/// get of a series never recorded, or of a format never recorded, is None.
pub async fn metadata_get_unknown_is_none(store: &dyn MetadataStore) {
    let s = stock("CF_META_NONE");
    assert_eq!(meta_get(store, &s, "csv").await, None, "metadata: get of unknown series");
    meta_record(store, &sample_metadata(&s, "csv", 20)).await;
    assert_eq!(meta_get(store, &s, "parquet").await, None, "metadata: get of unrecorded format");
}

/// remove returns whether a record existed.
pub async fn metadata_remove_reports_existence(store: &dyn MetadataStore) {
    let s = stock("CF_META_RM");
    assert!(!meta_remove(store, &s, "csv").await, "metadata: remove of unknown returned true");
    meta_record(store, &sample_metadata(&s, "csv", 30)).await;
    assert!(meta_remove(store, &s, "csv").await, "metadata: remove of a record returned false");
    assert!(!meta_remove(store, &s, "csv").await, "metadata: second remove returned true");
}

/// Every [`MetadataStore`] case, in order.
pub async fn metadata_run_all(store: &dyn MetadataStore) {
    metadata_round_trip(store).await;
    metadata_formats_are_separate(store).await;
    metadata_rerecord_replaces(store).await;
    metadata_list_sorted(store).await;
    metadata_get_unknown_is_none(store).await;
    metadata_remove_reports_existence(store).await;
}

/// A held lock makes a second locker of the same series time out with `Locked`, does not
/// block other series, and is free again once dropped. Needs a Tokio runtime with time.
pub async fn locks_exclude_and_time_out(locks: &dyn SeriesLocks) {
    let s = stock("CF_LOCK");
    let other = stock("CF_LOCK_OTHER");
    let c = ctx();
    let held = locks.lock(&s, Duration::from_secs(5), &c).await.unwrap_or_else(|e| panic!("first lock failed: {e}"));
    let timeout = Duration::from_millis(50);
    match locks.lock(&s, timeout, &c).await {
        Err(StorageError::Locked { series, waited, .. }) => {
            assert_eq!(series, s, "locks: Locked names the wrong series");
            assert!(waited >= timeout, "locks: gave up after {waited:?}, before the {timeout:?} timeout");
        }
        Err(e) => panic!("locks: expected StorageError::Locked, got {e:?}"),
        Ok(_) => panic!("locks: a held series was locked twice"),
    }
    let unrelated = locks.lock(&other, timeout, &c).await;
    assert!(unrelated.is_ok(), "locks: another series is blocked: {unrelated:?}");
    drop(held);
    let again = locks.lock(&s, timeout, &c).await;
    assert!(again.is_ok(), "locks: series still locked after the guard was dropped: {again:?}");
}

/// A waiter gets the lock as soon as the holder releases it, within its timeout.
pub async fn locks_waiter_acquires_after_release(locks: &dyn SeriesLocks) {
    let s = stock("CF_LOCK_WAIT");
    let c = ctx();
    let held = locks.lock(&s, Duration::from_secs(5), &c).await.unwrap_or_else(|e| panic!("first lock failed: {e}"));
    let release = async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(held);
    };
    let (_, waited) = tokio::join!(release, locks.lock(&s, Duration::from_secs(5), &c));
    assert!(waited.is_ok(), "locks: waiter did not get the released lock: {waited:?}");
}

/// Every [`SeriesLocks`] case, in order.
pub async fn locks_run_all(locks: &dyn SeriesLocks) {
    locks_exclude_and_time_out(locks).await;
    locks_waiter_acquires_after_release(locks).await;
}
