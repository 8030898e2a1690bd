//! What a persist through the dual manager promises, whatever adapters it is wired to: the
//! seed's `persist` / `load` / `exists` / `file_info` with keep-last, keep-first and
//! error-on-conflict merges, replace, empty frames, exact values and separate series. Run
//! against the manager over in-memory stores, the factory's CSV + Parquet manager, and the
//! CSV-only and Parquet-only managers.

mod common;

use barvault::{DualStorageManager, FileInfo, PersistOptions, StorageError, StorageFactory, StorageReceipt};
use barvault_domain::{Bars, InstrumentKind, MergePolicy, Period, SeriesKey, TimeRange};
use barvault_ports::conformance::{
    BASE_NS, DAY_NS, Row, bars_from_rows, extreme_bars, rows_of, sample_bars, series, stock, with_extra,
};
use common::ctx;

fn name(m: &DualStorageManager) -> String {
    let formats: Vec<String> = m.copies().iter().map(|c| c.name().to_string()).collect();
    format!("manager({})", formats.join("+"))
}

async fn persist(m: &DualStorageManager, bars: &Bars, s: &SeriesKey, options: PersistOptions) -> StorageReceipt {
    m.persist(bars, s, options, &ctx())
        .await
        .unwrap_or_else(|e| panic!("[{}] persist {s} ({options:?}) failed: {e}", name(m)))
}

async fn load(m: &DualStorageManager, s: &SeriesKey, range: Option<TimeRange>) -> Option<Bars> {
    m.load(s, range, &ctx()).await.unwrap_or_else(|e| panic!("[{}] load {s} {range:?} failed: {e}", name(m)))
}

async fn load_all(m: &DualStorageManager, s: &SeriesKey) -> Bars {
    load(m, s, None).await.unwrap_or_else(|| panic!("[{}] {s}: persisted series loads as None", name(m)))
}

async fn exists(m: &DualStorageManager, s: &SeriesKey) -> bool {
    m.exists(s, &ctx()).await.unwrap_or_else(|e| panic!("[{}] exists {s} failed: {e}", name(m)))
}

async fn file_info(m: &DualStorageManager, s: &SeriesKey) -> Option<FileInfo> {
    m.file_info(s, &ctx()).await.unwrap_or_else(|e| panic!("[{}] file_info {s} failed: {e}", name(m)))
}

fn range(start: Option<i64>, end: Option<i64>) -> TimeRange {
    TimeRange::new(start, end).expect("ranges are ordered")
}

fn assert_bars(m: &DualStorageManager, case: &str, actual: &Bars, expected: &Bars) {
    assert!(
        actual == expected,
        "[{}] {case}: loaded bars differ ({} vs {} rows, columns {:?} vs {:?})",
        name(m),
        actual.len(),
        expected.len(),
        actual.column_names(),
        expected.column_names()
    );
}

fn concat(parts: &[&Bars]) -> Bars {
    bars_from_rows(&parts.iter().flat_map(|b| rows_of(b)).collect::<Vec<_>>())
}

/// Persist then load returns the same bars; the receipt describes the write.
pub async fn round_trip(m: &DualStorageManager) {
    let s = stock("CF_ROUND");
    let bars = sample_bars(50, BASE_NS, DAY_NS, 1);
    let context = barvault::OpContext::with_correlation_id(Some("cf-round-trip"));
    let receipt = m
        .persist(&bars, &s, PersistOptions::default(), &context)
        .await
        .unwrap_or_else(|e| panic!("[{}] round_trip: persist failed: {e}", name(m)));
    assert!(receipt.written, "[{}] round_trip: first write of a series reports written=false", name(m));
    assert_eq!(receipt.rows_written, 50, "[{}] round_trip: rows_written", name(m));
    assert_eq!(receipt.merge.rows_added, 50, "[{}] round_trip: merge.rows_added", name(m));
    assert_eq!(receipt.correlation_id, "cf-round-trip", "[{}] round_trip: receipt correlation id", name(m));
    assert!(!receipt.location.is_empty() && !receipt.format.is_empty(), "[{}] round_trip: empty location", name(m));
    assert_bars(m, "round_trip", &load_all(m, &s).await, &bars);
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
pub async fn keep_last_merge(m: &DualStorageManager) {
    let s = stock("CF_KEEPLAST");
    let (a, b) = overlapping_batches(2);
    persist(m, &a, &s, PersistOptions::default()).await;
    let r = persist(m, &b, &s, PersistOptions::merge(MergePolicy::KeepLast)).await;
    assert!(r.written, "[{}] keep_last_merge: changing merge reports written=false", name(m));
    assert_eq!(r.rows_written, 12, "[{}] keep_last_merge: rows_written", name(m));
    let stats = r.merge;
    assert_eq!(
        (
            stats.existing_rows,
            stats.new_rows,
            stats.result_rows,
            stats.duplicates_removed,
            stats.rows_added,
            stats.rows_changed,
            stats.unchanged
        ),
        (10, 5, 12, 3, 2, 3, false),
        "[{}] keep_last_merge: merge stats (existing, new, result, duplicates, added, changed, unchanged)",
        name(m)
    );
    let expected = concat(&[&a.slice_rows(0, 7), &b]);
    assert_bars(m, "keep_last_merge", &load_all(m, &s).await, &expected);
}

/// Keep-first: stored values survive the overlap, new timestamps are still added.
pub async fn keep_first_merge(m: &DualStorageManager) {
    let s = stock("CF_KEEPFIRST");
    let (a, b) = overlapping_batches(3);
    persist(m, &a, &s, PersistOptions::default()).await;
    let r = persist(m, &b, &s, PersistOptions::merge(MergePolicy::KeepFirst)).await;
    assert!(r.written, "[{}] keep_first_merge: adding rows reports written=false", name(m));
    assert_eq!(
        (r.merge.rows_added, r.merge.duplicates_removed, r.merge.rows_changed),
        (2, 3, 0),
        "[{}] keep_first_merge: (rows_added, duplicates_removed, rows_changed)",
        name(m)
    );
    let expected = concat(&[&a, &b.slice_rows(3, 5)]);
    assert_bars(m, "keep_first_merge", &load_all(m, &s).await, &expected);

    let again = persist(m, &b.slice_rows(0, 3), &s, PersistOptions::merge(MergePolicy::KeepFirst)).await;
    assert!(!again.written, "[{}] keep_first_merge: only-overlapping keep-first batch was written", name(m));
    assert_bars(m, "keep_first_merge (overlap only)", &load_all(m, &s).await, &expected);
}

/// Error-on-conflict: differing values fail with `Conflict` and leave the stored data
/// untouched; equal values on the overlap are not a conflict.
pub async fn error_on_conflict(m: &DualStorageManager) {
    let s = stock("CF_CONFLICT");
    let (a, b) = overlapping_batches(4);
    persist(m, &a, &s, PersistOptions::default()).await;
    let policy = PersistOptions::merge(MergePolicy::ErrorOnConflict);
    match m.persist(&b, &s, policy, &ctx()).await {
        Err(StorageError::Conflict { series, .. }) => {
            assert_eq!(series, s, "[{}] error_on_conflict: Conflict names the wrong series", name(m))
        }
        Err(e) => panic!("[{}] error_on_conflict: expected StorageError::Conflict, got {e:?}", name(m)),
        Ok(r) => panic!("[{}] error_on_conflict: conflicting batch accepted: {r:?}", name(m)),
    }
    assert_bars(m, "error_on_conflict (after refusal)", &load_all(m, &s).await, &a);

    let agreeing = concat(&[&a.slice_rows(7, 10), &b.slice_rows(3, 5)]);
    let r = persist(m, &agreeing, &s, policy).await;
    assert!(r.written && r.merge.rows_added == 2, "[{}] error_on_conflict: equal overlap refused: {r:?}", name(m));
    let expected = concat(&[&a, &b.slice_rows(3, 5)]);
    assert_bars(m, "error_on_conflict (equal overlap)", &load_all(m, &s).await, &expected);
}

/// Batches that share no timestamp keep all their rows, including interleaved ones.
pub async fn non_overlapping_batches_keep_all_rows(m: &DualStorageManager) {
    let s = stock("CF_DISJOINT");
    let even = sample_bars(10, BASE_NS, 2 * DAY_NS, 5);
    let odd = sample_bars(10, BASE_NS + DAY_NS, 2 * DAY_NS, 6);
    let later = sample_bars(5, BASE_NS + 40 * DAY_NS, DAY_NS, 7);
    for batch in [&later, &even, &odd] {
        let r = persist(m, batch, &s, PersistOptions::default()).await;
        assert_eq!(r.merge.rows_added, batch.len(), "[{}] non_overlapping: rows_added", name(m));
    }
    let mut rows: Vec<Row> = [&even, &odd, &later].iter().flat_map(|b| rows_of(b)).collect();
    rows.sort_by_key(|r| r.0);
    assert_bars(m, "non_overlapping_batches_keep_all_rows", &load_all(m, &s).await, &bars_from_rows(&rows));
}

/// Replace writes exactly the given bars; replacing with the same bars writes nothing.
pub async fn replace_mode(m: &DualStorageManager) {
    let s = stock("CF_REPLACE");
    let (a, b) = overlapping_batches(8);
    persist(m, &a, &s, PersistOptions::default()).await;
    let r = persist(m, &b, &s, PersistOptions::replace()).await;
    assert!(r.written, "[{}] replace_mode: replace reports written=false", name(m));
    assert_eq!(r.rows_written, b.len(), "[{}] replace_mode: rows_written", name(m));
    assert_bars(m, "replace_mode", &load_all(m, &s).await, &b);
    let again = persist(m, &b, &s, PersistOptions::replace()).await;
    assert!(!again.written, "[{}] replace_mode: replacing with identical bars was written", name(m));
    assert_bars(m, "replace_mode (identical)", &load_all(m, &s).await, &b);
}

/// An empty frame writes nothing: a missing series stays missing, a stored one unchanged.
pub async fn empty_frame(m: &DualStorageManager) {
    let s = stock("CF_EMPTY");
    let r = persist(m, &Bars::empty(), &s, PersistOptions::default()).await;
    assert!(!r.written, "[{}] empty_frame: empty frame into a missing series was written", name(m));
    assert_eq!(r.rows_written, 0, "[{}] empty_frame: rows_written", name(m));
    assert!(!exists(m, &s).await, "[{}] empty_frame: series exists after an empty persist", name(m));
    assert!(load(m, &s, None).await.is_none(), "[{}] empty_frame: load of never-written series", name(m));
    assert!(file_info(m, &s).await.is_none(), "[{}] empty_frame: file_info of never-written series", name(m));

    let a = sample_bars(5, BASE_NS, DAY_NS, 9);
    persist(m, &a, &s, PersistOptions::default()).await;
    let r = persist(m, &Bars::empty(), &s, PersistOptions::default()).await;
    assert!(!r.written, "[{}] empty_frame: empty frame into a stored series was written", name(m));
    assert_eq!(r.rows_written, a.len(), "[{}] empty_frame: rows_written is the stored row count", name(m));
    assert_bars(m, "empty_frame", &load_all(m, &s).await, &a);
}

/// A series never written: load (with or without range) and file_info are None, exists false.
pub async fn missing_series(m: &DualStorageManager) {
    let s = series(InstrumentKind::Future, "CF_MISSING", Period::H4);
    assert!(load(m, &s, None).await.is_none(), "[{}] missing_series: load is not None", name(m));
    let r = Some(range(Some(0), Some(BASE_NS)));
    assert!(load(m, &s, r).await.is_none(), "[{}] missing_series: ranged load is not None", name(m));
    assert!(file_info(m, &s).await.is_none(), "[{}] missing_series: file_info is not None", name(m));
    assert!(!exists(m, &s).await, "[{}] missing_series: exists is true", name(m));
}

/// exists and file_info describe what was stored.
pub async fn exists_and_file_info(m: &DualStorageManager) {
    let s = series(InstrumentKind::Stock, "CF_INFO", Period::H1);
    let base = sample_bars(24, BASE_NS, 3_600_000_000_000, 10);
    let bars = with_extra(&base, "adj_close", (0..24).map(|i| (i % 3 != 0).then_some(i as f64 * 0.5)).collect());
    persist(m, &bars, &s, PersistOptions::default()).await;
    assert!(exists(m, &s).await, "[{}] exists_and_file_info: exists is false", name(m));
    let info =
        file_info(m, &s).await.unwrap_or_else(|| panic!("[{}] exists_and_file_info: file_info is None", name(m)));
    assert!(info.size > 0, "[{}] file_info.size is 0 for a stored series", name(m));
    assert!(!info.location.is_empty() && info.format == m.primary().name(), "[{}] file_info location/format", name(m));
    assert_bars(m, "exists_and_file_info", &load_all(m, &s).await, &bars);
}

/// Range loads: both bounds inclusive, open ends, and an empty (not missing) result.
pub async fn range_load(m: &DualStorageManager) {
    let s = stock("CF_RANGE");
    let bars = sample_bars(20, BASE_NS, DAY_NS, 11);
    persist(m, &bars, &s, PersistOptions::default()).await;
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
    for (case, r, lo, hi) in cases {
        let got = load(m, &s, Some(r))
            .await
            .unwrap_or_else(|| panic!("[{}] range_load {case}: stored series loads as None", name(m)));
        let want = bars.slice_rows(lo, hi);
        if lo == hi {
            assert!(got.is_empty(), "[{}] range_load {case}: expected no rows, got {}", name(m), got.len());
        } else {
            assert_bars(m, &format!("range_load {case}"), &got, &want);
        }
    }
}

/// Extra columns keep missing cells missing, a later batch lacking a column keeps the
/// stored values, and a new column appears with missing cells on older rows.
pub async fn extra_columns_with_missing_values(m: &DualStorageManager) {
    let s = stock("CF_EXTRAS");
    let base = sample_bars(6, BASE_NS, DAY_NS, 12);
    let adj = vec![Some(1.5), None, Some(-0.0), None, Some(2.25), Some(3.0)];
    let a = with_extra(&base, "adj_close", adj.clone());
    persist(m, &a, &s, PersistOptions::default()).await;
    assert_bars(m, "extra_columns (round trip)", &load_all(m, &s).await, &a);

    // b: re-sends the last two rows without adj_close, adds two rows with open_interest.
    let b_core = sample_bars(4, BASE_NS + 4 * DAY_NS, DAY_NS, 13);
    let b = with_extra(&b_core, "open_interest", vec![None, Some(7.0), Some(8.0), None]);
    persist(m, &b, &s, PersistOptions::merge(MergePolicy::KeepLast)).await;

    let core = concat(&[&base.slice_rows(0, 4), &b_core]);
    let mut adj_expected = adj;
    adj_expected.extend([None, None]);
    let expected = with_extra(
        &with_extra(&core, "adj_close", adj_expected),
        "open_interest",
        [vec![None; 4], vec![None, Some(7.0), Some(8.0), None]].concat(),
    );
    assert_bars(m, "extra_columns (later batch lacks a column)", &load_all(m, &s).await, &expected);
}

/// Nanosecond timestamps, including before 1970, survive storage and range bounds.
pub async fn nanosecond_timestamps(m: &DualStorageManager) {
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
    persist(m, &bars, &s, PersistOptions::default()).await;
    assert_bars(m, "nanosecond_timestamps", &load_all(m, &s).await, &bars);
    let one = load(m, &s, Some(range(Some(stamps[5]), Some(stamps[5])))).await;
    assert_eq!(
        one.map(|b| b.timestamps().to_vec()),
        Some(vec![stamps[5]]),
        "[{}] nanosecond_timestamps: a one-nanosecond range",
        name(m)
    );
    let negatives = load(m, &s, Some(range(None, Some(-1)))).await;
    assert_eq!(negatives.map(|b| b.len()), Some(3), "[{}] nanosecond_timestamps: rows before 1970", name(m));
    let all = load_all(m, &s).await;
    assert_eq!(
        (all.first_timestamp(), all.last_timestamp()),
        (Some(stamps[0]), Some(stamps[6])),
        "[{}] range",
        name(m)
    );
}

/// Extreme and awkward floats come back bit for bit, in core and extra columns.
pub async fn extreme_floats(m: &DualStorageManager) {
    let s = stock("CF_FLOATS");
    let bars = extreme_bars(BASE_NS);
    persist(m, &bars, &s, PersistOptions::default()).await;
    assert_bars(m, "extreme_floats", &load_all(m, &s).await, &bars);
}

/// Persisting what is already stored writes nothing, under every policy, and the file
/// is not touched.
pub async fn identical_data_is_unchanged(m: &DualStorageManager) {
    let s = stock("CF_SAME");
    let bars = with_extra(&sample_bars(8, BASE_NS, DAY_NS, 15), "adj_close", [Some(1.0), None].repeat(4));
    persist(m, &bars, &s, PersistOptions::default()).await;
    let before = file_info(m, &s).await.map(|i| (i.version, i.size));
    for policy in [MergePolicy::KeepLast, MergePolicy::KeepFirst, MergePolicy::ErrorOnConflict] {
        let r = persist(m, &bars, &s, PersistOptions::merge(policy)).await;
        assert!(!r.written, "[{}] identical_data ({policy}): written=true", name(m));
        assert!(r.merge.unchanged && r.merge.rows_added == 0, "[{}] identical_data ({policy}): {r:?}", name(m));
        assert_eq!(r.rows_written, bars.len(), "[{}] identical_data ({policy}): rows_written", name(m));
        let r = persist(m, &bars.slice_rows(2, 5), &s, PersistOptions::merge(policy)).await;
        assert!(!r.written, "[{}] identical_data ({policy}): a stored subset was written", name(m));
    }
    let after = file_info(m, &s).await.map(|i| (i.version, i.size));
    assert_eq!(after, before, "[{}] identical_data: the stored file changed", name(m));
    assert_bars(m, "identical_data_is_unchanged", &load_all(m, &s).await, &bars);
}

/// Kinds, periods (`1m` vs `1M`) and symbols each get their own series; symbols are
/// case-insensitive.
pub async fn series_never_collide(m: &DualStorageManager) {
    let keys = [
        series(InstrumentKind::Stock, "CF_X", Period::D1),
        series(InstrumentKind::Future, "CF_X", Period::D1),
        series(InstrumentKind::Stock, "CF_X", Period::M1),
        series(InstrumentKind::Stock, "CF_X", Period::Mo1),
        series(InstrumentKind::Stock, "CF_Y", Period::D1),
    ];
    let batches: Vec<Bars> = (0..keys.len()).map(|i| sample_bars(5 + i, BASE_NS, DAY_NS, 100 + i as u64)).collect();
    for (k, b) in keys.iter().zip(&batches) {
        let r = persist(m, b, k, PersistOptions::default()).await;
        assert!(r.written && r.merge.existing_rows == 0, "[{}] series_never_collide: {k} was not new", name(m));
    }
    let locations: std::collections::BTreeSet<String> = keys.iter().map(SeriesKey::relative_stem).collect();
    assert_eq!(locations.len(), keys.len(), "fixture: series stems must differ");
    for (k, b) in keys.iter().zip(&batches) {
        assert_bars(m, &format!("series_never_collide {k}"), &load_all(m, k).await, b);
    }
    let lower = series(InstrumentKind::Stock, "cf_x", Period::D1);
    assert_bars(m, "series_never_collide (lower-case symbol)", &load_all(m, &lower).await, &batches[0]);
}

/// `list` (if supported) includes every persisted series; `remove` (if supported)
/// deletes one and reports whether it existed.
pub async fn list_and_remove(m: &DualStorageManager) {
    let keys = [stock("CF_LIST_A"), series(InstrumentKind::Forex, "CFXUSD", Period::M5)];
    for (i, k) in keys.iter().enumerate() {
        persist(m, &sample_bars(3, BASE_NS, DAY_NS, 200 + i as u64), k, PersistOptions::default()).await;
    }
    let listed = m.list(&ctx()).await.unwrap_or_else(|e| panic!("[{}] list failed: {e}", name(m)));
    for k in &keys {
        assert!(listed.contains(k), "[{}] list: {k} missing from {listed:?}", name(m));
    }
    let s = stock("CF_REMOVE");
    persist(m, &sample_bars(3, BASE_NS, DAY_NS, 210), &s, PersistOptions::default()).await;
    let existed = m.remove(&s, &ctx()).await.unwrap_or_else(|e| panic!("[{}] remove failed: {e}", name(m)));
    assert!(existed, "[{}] remove of a stored series returned false", name(m));
    assert!(!exists(m, &s).await, "[{}] series exists after remove", name(m));
    assert!(load(m, &s, None).await.is_none(), "[{}] removed series still loads", name(m));
    let again = m.remove(&s, &ctx()).await;
    assert!(matches!(again, Ok(false)), "[{}] second remove: {again:?}", name(m));
}

async fn run_all(m: &DualStorageManager) {
    round_trip(m).await;
    keep_last_merge(m).await;
    keep_first_merge(m).await;
    error_on_conflict(m).await;
    non_overlapping_batches_keep_all_rows(m).await;
    replace_mode(m).await;
    empty_frame(m).await;
    missing_series(m).await;
    exists_and_file_info(m).await;
    range_load(m).await;
    extra_columns_with_missing_values(m).await;
    nanosecond_timestamps(m).await;
    extreme_floats(m).await;
    identical_data_is_unchanged(m).await;
    series_never_collide(m).await;
    list_and_remove(m).await;
}

#[tokio::test]
async fn the_manager_over_memory_stores_keeps_the_contract_and_both_copies_equal() {
    let dual = common::memory_dual();
    run_all(&dual.manager).await;
    let ctx = ctx();
    let listed = dual.csv.list(&ctx).await.unwrap();
    assert!(!listed.is_empty());
    assert_eq!(listed, dual.parquet.list(&ctx).await.unwrap());
    for s in &listed {
        assert_eq!(common::load(dual.csv.as_ref(), s).await, common::load(dual.parquet.as_ref(), s).await, "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_manager_keeps_the_contract_and_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let manager = StorageFactory::create_storage(&common::config(dir.path())).unwrap();
    assert!(manager.backup_enabled());
    run_all(&manager).await;
    let vault = common::vault(dir.path());
    let report = vault.verify(barvault::Scope::All, true).await.unwrap();
    assert!(report.series_checked > 5, "{report:?}");
    // The only leftovers are the lock files of the series removed.
    assert!(!report.issues.is_empty());
    for i in &report.issues {
        assert_eq!(i.kind, barvault::IssueKind::StaleLock, "{i:?}");
        assert_eq!(i.series.as_deref(), Some("stock:CF_REMOVE@1d"), "{i:?}");
    }
    let recovered = vault.recover(barvault::Scope::All).await.unwrap();
    assert!(recovered.unrecoverable.is_empty(), "{recovered:?}");
    assert_eq!(recovered.actions.len(), report.issues.len(), "{recovered:?}");
    for i in &report.issues {
        assert!(!i.path.exists(), "{} survived recover", i.path.display());
    }
    let after = vault.verify(barvault::Scope::All, true).await.unwrap();
    assert!(after.is_clean(), "{:#?}", after.issues);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_format_managers_keep_the_contract() {
    for parquet in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = common::config(dir.path());
        let manager = if parquet {
            StorageFactory::create_parquet_only(&config)
        } else {
            StorageFactory::create_csv_only(&config)
        };
        run_all(&manager.unwrap()).await;
    }
}
