//! Narrow paths of the dual manager, pinned with mockall mocks of every port: which copy
//! is consulted when, which errors fall back and which are returned, and that a failed
//! step stops everything after it.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use barvault::{DualSettings, DualStorageManager, OpContext, PersistOptions, StorageError, ValidationPolicy};
use barvault_domain::MergeStats;
use barvault_ports::conformance::{BASE_NS, DAY_NS, sample_bars, stock};
use barvault_ports::{
    BackupPolicy, BarStore, IoStep, MockBarStore, MockMetadataStore, MockSeriesLocks, SecondaryStatus, SeriesGuard,
    StagedWrite, StorageReceipt,
};

#[derive(Debug)]
struct Guard;
impl SeriesGuard for Guard {}

/// A store that cannot stage: the manager writes its copies one after the other.
fn named(name: &str) -> MockBarStore {
    let mut m = staging(name);
    let unsupported = name.to_string();
    m.expect_stage_with().returning(move |_, _, _, _| Err(StorageError::unsupported("stage", unsupported.clone())));
    m
}

/// A store whose `stage_with` expectations the test sets.
fn staging(name: &str) -> MockBarStore {
    let mut m = MockBarStore::new();
    m.expect_name().return_const(name.to_string());
    m
}

/// What happened to the [`Staged`] writes of one test.
#[derive(Debug, Default)]
struct StagedLog {
    committed: Vec<&'static str>,
    dropped: Vec<&'static str>,
}

/// A staged write that logs its commit (failing when `fails`) or its drop.
#[derive(Debug)]
struct Staged {
    format: &'static str,
    fails: bool,
    log: Arc<Mutex<StagedLog>>,
    done: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            self.log.lock().unwrap().dropped.push(self.format);
        }
    }
}

#[async_trait]
impl StagedWrite for Staged {
    async fn commit(
        mut self: Box<Self>,
        _backup: BackupPolicy,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError> {
        self.done = true;
        self.log.lock().unwrap().committed.push(self.format);
        if self.fails {
            return Err(StorageError::io(IoStep::Rename, self.format, io::Error::from_raw_os_error(5)));
        }
        let mut r = StorageReceipt::unwritten(self.format, self.format, 3, MergeStats::default(), ctx);
        r.written = true;
        r.checksum_md5 = Some("0".repeat(32));
        Ok(r)
    }
}

fn stages(
    store: &mut MockBarStore,
    format: &'static str,
    outcome: Result<bool, StorageError>,
    log: &Arc<Mutex<StagedLog>>,
) {
    let log = Arc::clone(log);
    let mut outcome = Some(outcome);
    store.expect_stage_with().times(1).returning(move |_, _, _, _| {
        let fails = outcome.take().expect("one stage")?;
        Ok(Box::new(Staged { format, fails, log: Arc::clone(&log), done: false }) as Box<dyn StagedWrite>)
    });
}

fn full_disk(path: &str) -> StorageError {
    StorageError::io(IoStep::WriteTemp, path, io::Error::from_raw_os_error(28))
}

/// Both copies are staged at once; a primary that fails to stage or to commit leaves
/// the staged secondary uncommitted (dropped, i.e. discarded) and records nothing.
#[tokio::test]
async fn a_failed_primary_stage_or_commit_discards_the_staged_secondary() {
    for primary_commit_fails in [None, Some(true)] {
        let log = Arc::new(Mutex::new(StagedLog::default()));
        let mut primary = staging("csv");
        primary.expect_load_with_checksum_against().returning(|_, _, _, _| Ok(None));
        primary.expect_persist().never();
        let outcome = primary_commit_fails.ok_or_else(|| full_disk("stocks/1d/AAPL.csv"));
        stages(&mut primary, "csv", outcome, &log);
        let mut secondary = staging("parquet");
        secondary.expect_load_with_checksum_against().returning(|_, _, _, _| Ok(None));
        secondary.expect_persist().never();
        stages(&mut secondary, "parquet", Ok(false), &log);
        let mut meta = no_metadata();
        meta.expect_record().never();
        let m = manager(primary, secondary, meta, free_locks());
        let bars = sample_bars(3, BASE_NS, DAY_NS, 3);
        let err = m.persist(&bars, &stock("AAPL"), PersistOptions::default(), &OpContext::new()).await.unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
        let log = log.lock().unwrap();
        let committed: &[&str] = if primary_commit_fails.is_some() { &["csv"] } else { &[] };
        assert_eq!(log.committed, committed, "primary commit fails: {primary_commit_fails:?}");
        assert_eq!(log.dropped, ["parquet"], "primary commit fails: {primary_commit_fails:?}");
    }
}

/// The primary is committed and recorded before the secondary is committed; a secondary
/// that failed to stage is a failed secondary, not a failed call.
#[tokio::test]
async fn staged_copies_are_published_primary_first() {
    for secondary_stage_fails in [false, true] {
        let log = Arc::new(Mutex::new(StagedLog::default()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut primary = staging("csv");
        primary.expect_load_with_checksum_against().returning(|_, _, _, _| Ok(None));
        stages(&mut primary, "csv", Ok(false), &log);
        let mut secondary = staging("parquet");
        secondary.expect_load_with_checksum_against().returning(|_, _, _, _| Ok(None));
        let outcome = if secondary_stage_fails { Err(full_disk("stocks/1d/AAPL.parquet")) } else { Ok(false) };
        stages(&mut secondary, "parquet", outcome, &log);
        let mut meta = no_metadata();
        let (o, l) = (Arc::clone(&order), Arc::clone(&log));
        meta.expect_record().returning(move |m, _| {
            o.lock().unwrap().push((m.format.clone(), l.lock().unwrap().committed.clone()));
            Ok(())
        });
        let m = manager(primary, secondary, meta, free_locks());
        let bars = sample_bars(3, BASE_NS, DAY_NS, 3);
        let out = m.persist(&bars, &stock("AAPL"), PersistOptions::default(), &OpContext::new()).await.unwrap();
        let order = order.lock().unwrap().clone();
        if secondary_stage_fails {
            assert!(matches!(out.secondary, Some(SecondaryStatus::Failed { .. })), "{:?}", out.secondary);
            assert_eq!(order, [("csv".to_string(), vec!["csv"])]);
        } else {
            assert!(matches!(out.secondary, Some(SecondaryStatus::Written { .. })), "{:?}", out.secondary);
            // csv recorded after its commit and before parquet's; parquet recorded after its own.
            assert_eq!(order, [("csv".to_string(), vec!["csv"]), ("parquet".to_string(), vec!["csv", "parquet"])]);
        }
        assert_eq!(log.lock().unwrap().dropped, Vec::<&str>::new());
    }
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
    primary.expect_load_with_checksum_against().times(1).returning(|_, _, _, _| Err(decode_error()));
    let mut secondary = named("parquet");
    let served = bars.clone();
    secondary
        .expect_load_with_checksum_against()
        .times(1)
        .returning(move |_, _, _, _| Ok(Some((served.clone(), None))));
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    let loaded = m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap();
    assert_eq!(loaded, Some(bars));
}

#[tokio::test]
async fn good_primary_never_loads_the_secondary() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 2);
    let mut primary = named("csv");
    let served = bars.clone();
    primary.expect_load_with_checksum_against().times(1).returning(move |_, _, _, _| Ok(Some((served.clone(), None))));
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum_against().never();
    secondary.expect_load().never();
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    assert_eq!(m.load(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}

#[tokio::test]
async fn an_io_error_of_the_primary_is_returned_not_hidden_by_the_fallback() {
    let mut primary = named("csv");
    primary.expect_load_with_checksum_against().times(1).returning(|_, _, _, _| Err(denied()));
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum_against().never();
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
    primary.expect_load_with_checksum_against().returning(|_, _, _, _| Err(decode_error()));
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum_against().returning(|_, _, _, _| {
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
    primary.expect_load_with_checksum_against().returning(|_, _, _, _| Ok(None));
    primary.expect_persist().times(1).returning(|_, _, _, _| {
        Err(StorageError::io(IoStep::WriteTemp, "stocks/1d/AAPL.csv", io::Error::from_raw_os_error(28)))
    });
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum_against().returning(|_, _, _, _| Ok(None));
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
    primary.expect_load_with_checksum_against().never();
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
    primary.expect_load_with_checksum_against().times(1).returning(|_, _, _, _| Err(denied()));
    primary.expect_persist().never();
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum_against().never();
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
    primary.expect_load_with_checksum_against().never();
    primary.expect_load().never();
    let mut secondary = named("parquet");
    let served = bars.clone();
    // No checksum from the store: the record's checksum cannot disagree with it.
    secondary
        .expect_load_with_checksum_against()
        .times(1)
        .returning(move |_, _, _, _| Ok(Some((served.clone(), None))));
    let m = preferring_secondary(primary, secondary);
    assert_eq!(m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}

#[tokio::test]
async fn a_damaged_preferred_secondary_falls_back_to_the_primary() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 4);
    let mut primary = named("csv");
    let served = bars.clone();
    primary.expect_load_with_checksum_against().times(1).returning(move |_, _, _, _| Ok(Some((served.clone(), None))));
    let mut secondary = named("parquet");
    secondary.expect_load_with_checksum_against().times(1).returning(|_, _, _, _| {
        Err(StorageError::Corrupt { path: "stocks/1d/AAPL.parquet".into(), reason: "bad footer".into() })
    });
    let m = preferring_secondary(primary, secondary);
    assert_eq!(m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}
