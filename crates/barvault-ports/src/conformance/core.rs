//! What every [`BarStore`] must do: versions, conditional writes, staging, exact values.

use crate::BarStoreExt;
use std::sync::Arc;

use barvault_domain::{Bars, InstrumentKind, Period, SeriesKey, TimeRange};

use super::{BASE_NS, DAY_NS, ctx, extreme_bars, rows_of, sample_bars, series, stock, with_extra};
use crate::error::StorageError;
use crate::store::{BarStore, FileInfo, LoadOptions, Persisted, PutOptions, Revision, Rows, Version};

pub(crate) async fn put(store: &dyn BarStore, s: &SeriesKey, bars: &Bars, options: PutOptions) -> Persisted {
    let revision = Revision::whole(bars.clone());
    store
        .persist(s, &revision, &options, &ctx())
        .await
        .unwrap_or_else(|e| panic!("[{}] persist {s} ({options:?}) failed: {e}", store.name()))
}

/// Writes `bars` as the whole new version, whatever is stored.
pub(crate) async fn overwrite(store: &dyn BarStore, s: &SeriesKey, bars: &Bars) -> Persisted {
    put(store, s, bars, PutOptions::overwrite()).await
}

pub(crate) async fn load_with(store: &dyn BarStore, s: &SeriesKey, options: &LoadOptions) -> Option<crate::Loaded> {
    store
        .load(s, options, &ctx())
        .await
        .unwrap_or_else(|e| panic!("[{}] load {s} {options:?} failed: {e}", store.name()))
}

pub(crate) async fn load(store: &dyn BarStore, s: &SeriesKey, rows: Rows) -> Option<Bars> {
    load_with(store, s, &LoadOptions::default().rows(rows)).await.map(crate::Loaded::into_bars)
}

pub(crate) async fn load_all(store: &dyn BarStore, s: &SeriesKey) -> Bars {
    load(store, s, Rows::All).await.unwrap_or_else(|| panic!("[{}] {s}: a stored series loads as None", store.name()))
}

pub(crate) async fn version(store: &dyn BarStore, s: &SeriesKey) -> Version {
    load_with(store, s, &LoadOptions::default().rows(Rows::Nothing))
        .await
        .unwrap_or_else(|| panic!("[{}] {s}: no version of a stored series", store.name()))
        .info
        .version
}

async fn file_info(store: &dyn BarStore, s: &SeriesKey) -> Option<FileInfo> {
    store.file_info(s, &ctx()).await.unwrap_or_else(|e| panic!("[{}] file_info {s} failed: {e}", store.name()))
}

fn range(start: Option<i64>, end: Option<i64>) -> TimeRange {
    TimeRange::new(start, end).expect("conformance ranges are ordered")
}

pub(crate) fn assert_bars(store: &dyn BarStore, case: &str, actual: &Bars, expected: &Bars) {
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

pub(crate) fn assert_conflict(store: &dyn BarStore, case: &str, result: Result<impl std::fmt::Debug, StorageError>) {
    match result {
        Err(StorageError::VersionConflict { .. }) => {}
        other => panic!("[{}] {case}: expected a version conflict, got {other:?}", store.name()),
    }
}

/// A created series loads back exactly; the receipt and `file_info` describe the new
/// version, and a load reports the same version.
pub async fn round_trip(store: &dyn BarStore) {
    let s = stock("CF_ROUND");
    let bars = sample_bars(50, BASE_NS, DAY_NS, 1);
    let receipt = put(store, &s, &bars, PutOptions::create()).await;
    assert_eq!(receipt.rows, 50, "[{}] receipt rows", store.name());
    assert_eq!(receipt.info.format, store.name(), "[{}] receipt format", store.name());
    assert!(!receipt.backup_created, "[{}] a new series has no previous version to keep", store.name());
    assert_bars(store, "round trip", &load_all(store, &s).await, &bars);
    let info = file_info(store, &s).await.unwrap_or_else(|| panic!("[{}] file_info of a stored series", store.name()));
    assert_eq!(info.version, receipt.info.version, "[{}] file_info version vs receipt", store.name());
    assert_eq!(info.location, receipt.info.location, "[{}] file_info location vs receipt", store.name());
    assert!(info.size > 0, "[{}] file_info size", store.name());
    assert_eq!(version(store, &s).await, receipt.info.version, "[{}] load version vs receipt", store.name());
}

/// Nothing stored: load, file_info are `None`; an empty frame is a version like any other.
pub async fn missing_and_empty_series(store: &dyn BarStore) {
    let s = stock("CF_MISSING");
    assert!(load(store, &s, Rows::All).await.is_none(), "[{}] load of a missing series", store.name());
    assert!(file_info(store, &s).await.is_none(), "[{}] file_info of a missing series", store.name());
    let empty = stock("CF_EMPTY");
    put(store, &empty, &Bars::empty(), PutOptions::create()).await;
    let loaded = load(store, &empty, Rows::All).await;
    assert_eq!(loaded.map(|b| b.len()), Some(0), "[{}] an empty version loads as zero rows", store.name());
}

/// `Create` refuses a series that exists and changes nothing.
pub async fn create_refuses_an_existing_series(store: &dyn BarStore) {
    let s = stock("CF_CREATE");
    let first = sample_bars(5, BASE_NS, DAY_NS, 2);
    put(store, &s, &first, PutOptions::create()).await;
    let second = sample_bars(5, BASE_NS, DAY_NS, 3);
    let again = store.persist(&s, &Revision::whole(second), &PutOptions::create(), &ctx()).await;
    assert_conflict(store, "create over an existing series", again);
    assert_bars(store, "after a refused create", &load_all(store, &s).await, &first);
}

/// `Update` succeeds against the version read and refuses any other version (or none),
/// changing nothing; each write gives a new version.
pub async fn update_against_the_version_read(store: &dyn BarStore) {
    let s = stock("CF_UPDATE");
    let v1 = put(store, &s, &sample_bars(5, BASE_NS, DAY_NS, 4), PutOptions::create()).await.info.version;
    let second = sample_bars(6, BASE_NS, DAY_NS, 5);
    let v2 = put(store, &s, &second, PutOptions::update(v1.clone())).await.info.version;
    assert_ne!(v1, v2, "[{}] a write must change the version", store.name());
    let third = Revision::whole(sample_bars(7, BASE_NS, DAY_NS, 6));
    let stale = store.persist(&s, &third, &PutOptions::update(v1), &ctx()).await;
    assert_conflict(store, "update against a replaced version", stale);
    assert_bars(store, "after a refused update", &load_all(store, &s).await, &second);
    let missing = stock("CF_UPDATE_NONE");
    let none = store.persist(&missing, &Revision::whole(second.clone()), &PutOptions::update(v2), &ctx()).await;
    assert_conflict(store, "update of a series that does not exist", none);
    assert!(file_info(store, &missing).await.is_none(), "[{}] a refused update created the series", store.name());
}

/// `Overwrite` replaces whatever is stored, or creates.
pub async fn overwrite_replaces_whatever_is_stored(store: &dyn BarStore) {
    let s = stock("CF_OVERWRITE");
    overwrite(store, &s, &sample_bars(9, BASE_NS, DAY_NS, 7)).await;
    let second = sample_bars(3, BASE_NS + 100 * DAY_NS, DAY_NS, 8);
    overwrite(store, &s, &second).await;
    assert_bars(store, "overwrite (not a merge)", &load_all(store, &s).await, &second);
}

/// A staged write publishes nothing until commit; a dropped one leaves no trace; a commit
/// checks the expected version again, so a write in between makes it a conflict.
pub async fn staged_write_is_invisible_until_commit(store: &dyn BarStore) {
    let s = stock("CF_STAGE");
    let c = ctx();
    let old = sample_bars(4, BASE_NS, DAY_NS, 400);
    let v = put(store, &s, &old, PutOptions::create()).await.info.version;
    let new = sample_bars(3, BASE_NS + 20 * DAY_NS, DAY_NS, 401);
    let staged = store.stage(&s, &Revision::whole(new.clone()), &PutOptions::update(v.clone()), &c).await;
    let staged = staged.unwrap_or_else(|e| panic!("[{}] stage failed: {e}", store.name()));
    assert_bars(store, "staged, not committed", &load_all(store, &s).await, &old);
    assert_eq!(version(store, &s).await, v, "[{}] staging changed the version", store.name());
    drop(staged);
    assert_bars(store, "staged write dropped", &load_all(store, &s).await, &old);
    let staged = store.stage(&s, &Revision::whole(new.clone()), &PutOptions::update(v.clone()), &c).await;
    let staged = staged.unwrap_or_else(|e| panic!("[{}] second stage failed: {e}", store.name()));
    let receipt = staged.commit(&c).await.unwrap_or_else(|e| panic!("[{}] commit failed: {e}", store.name()));
    assert_eq!(receipt.rows, new.len(), "[{}] commit receipt rows", store.name());
    assert_bars(store, "committed", &load_all(store, &s).await, &new);

    // A commit whose expected version was replaced after staging is refused.
    let v2 = receipt.info.version;
    let loser = store.stage(&s, &Revision::whole(old.clone()), &PutOptions::update(v2.clone()), &c).await;
    let loser = loser.unwrap_or_else(|e| panic!("[{}] stage failed: {e}", store.name()));
    let winner = sample_bars(2, BASE_NS, DAY_NS, 402);
    put(store, &s, &winner, PutOptions::update(v2)).await;
    assert_conflict(store, "commit after another write", loser.commit(&c).await);
    assert_bars(store, "the write in between stands", &load_all(store, &s).await, &winner);

    let fresh = stock("CF_STAGE_NEW");
    let staged = store.stage(&fresh, &Revision::whole(new), &PutOptions::create(), &c).await;
    drop(staged.unwrap_or_else(|e| panic!("[{}] stage of a new series failed: {e}", store.name())));
    assert!(file_info(store, &fresh).await.is_none(), "[{}] a dropped staged write created the series", store.name());
}

/// Two readers of one version: the first update wins, the second is a conflict (even one
/// that claims the stored rows it read are unchanged), never a mixed or wrong version.
pub async fn a_stale_token_is_a_conflict_never_a_wrong_file(store: &dyn BarStore) {
    let s = stock("CF_STALE");
    let base = sample_bars(300, BASE_NS, DAY_NS, 9);
    let v = put(store, &s, &base, PutOptions::create()).await.info.version;
    let a = {
        let mut rows = base.slice_rows(0, 290);
        let (merged, _) =
            barvault_domain::merge(&rows, &sample_bars(20, BASE_NS + 290 * DAY_NS, DAY_NS, 10), Default::default())
                .expect("merge");
        rows = merged;
        rows
    };
    put(store, &s, &a, PutOptions::update(v.clone())).await;
    let b = sample_bars(305, BASE_NS, DAY_NS, 9);
    let keep = crate::Keep { stored_rows: base.len(), unchanged: base.common_prefix_len(&b) };
    let revision = Revision { bars: Arc::new(b), skipped: 0, keep: Some(keep) };
    let late = store.persist(&s, &revision, &PutOptions::update(v), &ctx()).await;
    assert_conflict(store, "update with the token the other writer replaced", late);
    assert_bars(store, "the first update stands", &load_all(store, &s).await, &a);
}

/// Ranges are inclusive at both ends; a range with no rows loads as zero rows.
pub async fn range_load(store: &dyn BarStore) {
    let s = stock("CF_RANGE");
    let bars = sample_bars(30, BASE_NS, DAY_NS, 11);
    overwrite(store, &s, &bars).await;
    let ts = bars.timestamps();
    let r = range(Some(ts[5]), Some(ts[9]));
    let got = load(store, &s, Rows::Range(r)).await.unwrap_or_default();
    assert_bars(store, "range [5, 9]", &got, &bars.slice_rows(5, 10));
    let before = range(None, Some(ts[0] - 1));
    assert_eq!(load(store, &s, Rows::Range(before)).await.map(|b| b.len()), Some(0), "[{}] empty range", store.name());
    let open_end = range(Some(ts[25]), None);
    assert_bars(
        store,
        "open end",
        &load(store, &s, Rows::Range(open_end)).await.unwrap_or_default(),
        &bars.slice_rows(25, 30),
    );
}

/// Extra columns, with missing values, come back by name with the gaps where they were.
pub async fn extra_columns_with_missing_values(store: &dyn BarStore) {
    let s = stock("CF_EXTRA");
    let bars = sample_bars(6, BASE_NS, DAY_NS, 12);
    let bars = with_extra(&bars, "adj_close", vec![Some(1.5), None, Some(-0.0), None, Some(1e-300), Some(3.0)]);
    let bars = with_extra(&bars, "open_interest", vec![None; 6]);
    overwrite(store, &s, &bars).await;
    let loaded = load_all(store, &s).await;
    assert_eq!(loaded.extra("adj_close"), bars.extra("adj_close"), "[{}] adj_close", store.name());
    assert_bars(store, "extras", &loaded, &bars);
}

/// Nanosecond timestamps, also before 1970 and far after 2200, survive exactly.
pub async fn nanosecond_timestamps(store: &dyn BarStore) {
    let s = series(InstrumentKind::Future, "CF_NANOS", Period::M1);
    let ts = [-1_000_000_000_123_456_789, -1, 0, 1, 1_700_000_000_123_456_789, 7_258_118_400_000_000_001];
    let n = ts.len();
    let bars = Bars::new(ts.to_vec(), vec![1.0; n], vec![2.0; n], vec![0.5; n], vec![1.5; n], vec![0.0; n], vec![])
        .expect("increasing timestamps");
    overwrite(store, &s, &bars).await;
    assert_bars(store, "nanosecond timestamps", &load_all(store, &s).await, &bars);
}

/// Floats that text formats often lose (1e-12, 1e300, -0.0, 5e-324, 0.1 + 0.2) are exact.
pub async fn extreme_floats(store: &dyn BarStore) {
    let s = stock("CF_FLOATS");
    let bars = extreme_bars(BASE_NS);
    overwrite(store, &s, &bars).await;
    assert_bars(store, "extreme floats", &load_all(store, &s).await, &bars);
}

/// Series differing only in kind, symbol or period (`1m` vs `1M`) never share storage.
pub async fn series_never_collide(store: &dyn BarStore) {
    let keys = [
        series(InstrumentKind::Stock, "CF_COLLIDE", Period::M1),
        series(InstrumentKind::Stock, "CF_COLLIDE", Period::Mo1),
        series(InstrumentKind::Future, "CF_COLLIDE", Period::M1),
        series(InstrumentKind::Stock, "CF_COLLIDE2", Period::M1),
    ];
    for (i, k) in keys.iter().enumerate() {
        overwrite(store, k, &sample_bars(3 + i, BASE_NS, DAY_NS, 20 + i as u64)).await;
    }
    for (i, k) in keys.iter().enumerate() {
        let expected = sample_bars(3 + i, BASE_NS, DAY_NS, 20 + i as u64);
        assert_bars(store, &format!("series {k}"), &load_all(store, k).await, &expected);
    }
}

/// `Rows::From` returns every stored row from the timestamp on and, when there is one, a row
/// before it, with the rows left out counted; `Rows::Nothing` decodes nothing but reports
/// the version. Stores without tail reads return every row.
pub async fn from_and_nothing_reads(store: &dyn BarStore) {
    let s = stock("CF_FROM");
    let bars = sample_bars(5_000, BASE_NS, DAY_NS, 13);
    let v = overwrite(store, &s, &bars).await.info.version;
    for at in [0usize, 1, 2_500, 4_998, 4_999] {
        let from = bars.timestamps()[at];
        let loaded = load_with(store, &s, &LoadOptions::default().rows(Rows::From(from))).await;
        let loaded = loaded.unwrap_or_else(|| panic!("[{}] from {at}: nothing", store.name()));
        let tail = loaded.bars.clone().unwrap_or_default();
        assert_eq!(loaded.rows(), bars.len(), "[{}] from {at}: skipped + read", store.name());
        assert_eq!(loaded.first, bars.first_timestamp(), "[{}] from {at}: first", store.name());
        assert_bars(store, &format!("from {at}"), &tail, &bars.slice_rows(loaded.skipped, bars.len()));
        if loaded.skipped > 0 {
            assert!(tail.timestamps()[0] < from, "[{}] from {at}: no row before it", store.name());
        }
        if !store.capabilities().tail_reads {
            assert_eq!(loaded.skipped, 0, "[{}] skipped rows without tail reads", store.name());
        }
        assert_eq!(loaded.info.version, v, "[{}] from {at}: version", store.name());
    }
    let nothing = load_with(store, &s, &LoadOptions::default().rows(Rows::Nothing)).await;
    let nothing = nothing.unwrap_or_else(|| panic!("[{}] Rows::Nothing of a stored series", store.name()));
    assert!(nothing.bars.is_none(), "[{}] Rows::Nothing decoded rows", store.name());
    assert_eq!(nothing.info.version, v, "[{}] Rows::Nothing version", store.name());
}

/// Every core case, in order.
pub async fn run_core(store: &dyn BarStore) {
    round_trip(store).await;
    missing_and_empty_series(store).await;
    create_refuses_an_existing_series(store).await;
    update_against_the_version_read(store).await;
    overwrite_replaces_whatever_is_stored(store).await;
    staged_write_is_invisible_until_commit(store).await;
    a_stale_token_is_a_conflict_never_a_wrong_file(store).await;
    range_load(store).await;
    extra_columns_with_missing_values(store).await;
    nanosecond_timestamps(store).await;
    extreme_floats(store).await;
    series_never_collide(store).await;
    from_and_nothing_reads(store).await;
}
