//! Narrow paths of the dual manager, pinned with mockall mocks of every port: which copy
//! is consulted when, which errors fall back and which are returned, and that a failed
//! step stops everything after it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use barvault::{DualSettings, DualStorageManager, OpContext, PersistOptions, StorageError, ValidationPolicy};
use barvault_ports::conformance::{BASE_NS, DAY_NS, sample_bars, stock};
use barvault_ports::{BarStore, IoStep, MockBarStore, MockMetadataStore, MockSeriesLocks, SeriesGuard};

#[derive(Debug)]
struct Guard;
impl SeriesGuard for Guard {}

fn named(name: &str) -> MockBarStore {
    let mut m = MockBarStore::new();
    m.expect_name().return_const(name.to_string());
    m
}

fn no_metadata() -> MockMetadataStore {
    let mut m = MockMetadataStore::new();
    m.expect_get().returning(|_, _, _| Ok(None));
    m
}

fn free_locks() -> MockSeriesLocks {
    let mut l = MockSeriesLocks::new();
    l.expect_lock().returning(|_, _, _| Ok(Box::new(Guard)));
    l
}

fn manager(
    primary: MockBarStore,
    secondary: MockBarStore,
    meta: MockMetadataStore,
    locks: MockSeriesLocks,
) -> DualStorageManager {
    let settings = DualSettings { validation: ValidationPolicy::Off, ..DualSettings::default() };
    DualStorageManager::new(Arc::new(primary), Some(Arc::new(secondary)), Arc::new(meta), Arc::new(locks), settings)
}

fn decode_error() -> StorageError {
    StorageError::Decode {
        path: "stocks/1d/AAPL.csv".into(),
        line: Some(7),
        column: Some("close".into()),
        value: Some("x".into()),
        reason: "not a number".into(),
    }
}

fn denied() -> StorageError {
    StorageError::io(IoStep::Read, "stocks/1d/AAPL.csv", io::Error::from(io::ErrorKind::PermissionDenied))
}

#[tokio::test]
async fn bad_primary_falls_back_to_the_secondary() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 1);
    let mut primary = named("csv");
    primary.expect_load_with_checksum().times(1).returning(|_, _, _| Err(decode_error()));
    let mut secondary = named("parquet");
    let served = bars.clone();
    secondary.expect_load_with_checksum().times(1).returning(move |_, _, _| Ok(Some((served.clone(), None))));
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    let loaded = m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap();
    assert_eq!(loaded, Some(bars));
}

#[tokio::test]
async fn good_primary_never_loads_the_secondary() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 2);
    let mut primary = named("csv");
    let served = bars.clone();
    primary.expect_load_with_checksum().times(1).returning(move |_, _, _| Ok(Some((served.clone(), None))));
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum().never();
    secondary.expect_load().never();
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    assert_eq!(m.load(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}

#[tokio::test]
async fn an_io_error_of_the_primary_is_returned_not_hidden_by_the_fallback() {
    let mut primary = named("csv");
    primary.expect_load_with_checksum().times(1).returning(|_, _, _| Err(denied()));
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum().never();
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    let err = m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Io { step: IoStep::Read, source, .. } if source.kind() == io::ErrorKind::PermissionDenied),
        "{err:?}"
    );
}

#[tokio::test]
async fn both_copies_bad_is_unreadable_naming_both_causes() {
    let mut primary = named("csv");
    primary.expect_load_with_checksum().returning(|_, _, _| Err(decode_error()));
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum().returning(|_, _, _| {
        Err(StorageError::Corrupt { path: "stocks/1d/AAPL.parquet".into(), reason: "bad footer".into() })
    });
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    let err = m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StorageError::Unreadable { .. }), "{text}");
    assert!(text.contains("not a number") && text.contains("bad footer"), "{text}");
}

#[tokio::test]
async fn a_failed_primary_write_touches_neither_the_secondary_nor_metadata() {
    let mut primary = named("csv");
    primary.expect_load_with_checksum().returning(|_, _, _| Ok(None));
    primary.expect_persist().times(1).returning(|_, _, _, _| {
        Err(StorageError::io(IoStep::WriteTemp, "stocks/1d/AAPL.csv", io::Error::from_raw_os_error(28)))
    });
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum().returning(|_, _, _| Ok(None));
    secondary.expect_persist().never();
    let mut meta = no_metadata();
    meta.expect_record().never();
    let m = manager(primary, secondary, meta, free_locks());
    let bars = sample_bars(3, BASE_NS, DAY_NS, 3);
    let err = m.persist(&bars, &stock("AAPL"), PersistOptions::default(), &OpContext::new()).await.unwrap_err();
    assert!(matches!(err, StorageError::Io { step: IoStep::WriteTemp, .. }), "{err:?}");
}

#[tokio::test]
async fn a_lock_timeout_is_returned_before_anything_is_read() {
    let mut primary = named("csv");
    primary.expect_load_with_checksum().never();
    primary.expect_persist().never();
    let mut secondary = named("parquet");
    secondary.expect_persist().never();
    let mut locks = MockSeriesLocks::new();
    locks.expect_lock().times(1).returning(|s, t, _| {
        Err(StorageError::Locked { series: s.clone(), path: "stocks/1d/.AAPL.lock".into(), waited: t })
    });
    let mut meta = MockMetadataStore::new();
    meta.expect_get().never();
    let m = manager(primary, secondary, meta, locks);
    let bars = sample_bars(3, BASE_NS, DAY_NS, 4);
    let err = m.persist(&bars, &stock("AAPL"), PersistOptions::default(), &OpContext::new()).await.unwrap_err();
    assert!(matches!(err, StorageError::Locked { waited, .. } if waited == Duration::from_secs(30)), "{err:?}");
}

#[tokio::test]
async fn a_read_error_under_the_lock_stops_the_persist() {
    let mut primary = named("csv");
    primary.expect_load_with_checksum().times(1).returning(|_, _, _| Err(denied()));
    primary.expect_persist().never();
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum().never();
    secondary.expect_persist().never();
    let m = manager(primary, secondary, no_metadata(), free_locks());
    let bars = sample_bars(3, BASE_NS, DAY_NS, 5);
    let err = m.persist(&bars, &stock("AAPL"), PersistOptions::default(), &OpContext::new()).await.unwrap_err();
    assert!(matches!(err, StorageError::Io { step: IoStep::Read, .. }), "{err:?}");
}

#[tokio::test]
async fn file_info_falls_back_on_a_data_error_only() {
    let s = stock("AAPL");
    let mut primary = named("csv");
    primary.expect_file_info().times(1).returning(|_, _| Err(decode_error()));
    let mut secondary = named("parquet");
    secondary.expect_file_info().times(1).returning(|_, _| Ok(None));
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    assert_eq!(m.file_info(&s, &OpContext::new()).await.unwrap(), None);

    let mut primary = named("csv");
    primary.expect_file_info().times(1).returning(|_, _| Err(denied()));
    let mut secondary = named("parquet");
    secondary.expect_file_info().never();
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    assert!(matches!(m.file_info(&s, &OpContext::new()).await, Err(StorageError::Io { .. })));
}

fn same_generation_records() -> MockMetadataStore {
    let mut m = MockMetadataStore::new();
    m.expect_get()
        .returning(|series, format, _| Ok(Some(barvault_ports::conformance::sample_metadata(series, format, 7))));
    m
}

/// A dual manager that reads the secondary first, over records of one generation.
fn preferring_secondary(primary: MockBarStore, secondary: MockBarStore) -> DualStorageManager {
    let settings =
        DualSettings { validation: ValidationPolicy::Off, prefer_secondary_reads: true, ..DualSettings::default() };
    DualStorageManager::new(
        Arc::new(primary),
        Some(Arc::new(secondary)),
        Arc::new(same_generation_records()),
        Arc::new(MockSeriesLocks::new()),
        settings,
    )
}

#[tokio::test]
async fn preferred_secondary_serves_reads_when_both_records_share_a_generation() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 3);
    let mut primary = named("csv");
    primary.expect_load_with_checksum().never();
    primary.expect_load().never();
    let mut secondary = named("parquet");
    let served = bars.clone();
    // No checksum from the store: the record's checksum cannot disagree with it.
    secondary.expect_load_with_checksum().times(1).returning(move |_, _, _| Ok(Some((served.clone(), None))));
    let m = preferring_secondary(primary, secondary);
    assert_eq!(m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}

#[tokio::test]
async fn a_damaged_preferred_secondary_falls_back_to_the_primary() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 4);
    let mut primary = named("csv");
    let served = bars.clone();
    primary.expect_load_with_checksum().times(1).returning(move |_, _, _| Ok(Some((served.clone(), None))));
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum().times(1).returning(|_, _, _| {
        Err(StorageError::Corrupt { path: "stocks/1d/AAPL.parquet".into(), reason: "bad footer".into() })
    });
    let m = preferring_secondary(primary, secondary);
    assert_eq!(m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}
