//! Narrow paths of the dual manager, pinned with mockall mocks of every port: which copy
//! is consulted when, which errors fall back and which are returned, that a failed step
//! stops everything after it, and that a version conflict is a bounded re-read and re-merge.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use barvault::{
    DualSettings, DualStorageManager, MAX_ATTEMPTS, OpContext, PersistOptions, SecondaryStatus, StorageError,
    ValidationPolicy,
};
use barvault_domain::Bars;
use barvault_ports::conformance::{BASE_NS, DAY_NS, sample_bars, stock};
use barvault_ports::{
    FileInfo, IoStep, LoadOptions, Loaded, MockBarStore, MockMetadataStore, MockSeriesLocks, Persisted, PutMode, Rows,
    SeriesGuard, StagedWrite, Version,
};

#[derive(Debug)]
struct Guard;
impl SeriesGuard for Guard {}

fn info(format: &str, tag: &str) -> FileInfo {
    FileInfo {
        location: format!("stocks/1d/AAPL.{format}"),
        format: format.to_string(),
        size: 100,
        modified: None,
        version: Version::new(tag),
    }
}

/// What a store's load returns: `bars` (or only the version for `Rows::Nothing`).
fn loaded(format: &str, bars: &Bars, options: &LoadOptions) -> Loaded {
    let read = match options.rows {
        Rows::Nothing => None,
        _ => Some(bars.clone()),
    };
    Loaded {
        info: info(format, "v1"),
        bars: read,
        skipped: 0,
        first: bars.first_timestamp(),
        checksum: None,
        fingerprint_ok: None,
        bad_blocks: Vec::new(),
    }
}

fn store(name: &str) -> MockBarStore {
    let mut m = MockBarStore::new();
    m.expect_name().return_const(name.to_string());
    m.expect_capabilities().return_const(barvault_ports::Capabilities::default());
    m
}

/// What happened to the staged writes of one test.
#[derive(Debug, Default)]
struct StagedLog {
    committed: Vec<&'static str>,
    dropped: Vec<&'static str>,
    /// The mode of every stage, in order.
    modes: Vec<PutMode>,
}

/// A staged write that logs its commit (failing with `fails` when set) or its drop.
#[derive(Debug)]
struct Staged {
    format: &'static str,
    fails: Option<fn() -> StorageError>,
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
    async fn commit(mut self: Box<Self>, _ctx: &OpContext) -> Result<Persisted, StorageError> {
        self.done = true;
        self.log.lock().unwrap().committed.push(self.format);
        if let Some(error) = self.fails {
            return Err(error());
        }
        Ok(Persisted {
            info: info(self.format, "v2"),
            rows: 3,
            checksum: Some("0".repeat(32)),
            fingerprint: None,
            backup_created: false,
            duration: Duration::ZERO,
        })
    }
}

/// `store` stages successfully (a commit that fails with `commit_fails`) or fails to stage
/// with `stage_fails`, `times` times.
fn stages(
    store: &mut MockBarStore,
    format: &'static str,
    times: usize,
    stage_fails: Option<fn() -> StorageError>,
    commit_fails: Option<fn() -> StorageError>,
    log: &Arc<Mutex<StagedLog>>,
) {
    let log = Arc::clone(log);
    store.expect_stage().times(times).returning(move |_, _, options, _| {
        log.lock().unwrap().modes.push(options.mode.clone());
        if let Some(error) = stage_fails {
            return Err(error());
        }
        Ok(Box::new(Staged { format, fails: commit_fails, log: Arc::clone(&log), done: false }) as Box<dyn StagedWrite>)
    });
}

fn full_disk() -> StorageError {
    StorageError::io(IoStep::WriteTemp, "stocks/1d/AAPL.csv", io::Error::from_raw_os_error(28))
}

fn changed() -> StorageError {
    StorageError::version_conflict("stocks/1d/AAPL.csv", "the file was replaced or changed since it was read")
}

/// Nothing stored: loads find nothing.
fn empty(store: &mut MockBarStore) {
    store.expect_load().returning(|_, _, _| Ok(None));
    store.expect_file_info().returning(|_, _| Ok(None));
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

/// Both copies are staged at once; a primary that fails to stage or to commit leaves
/// the staged secondary uncommitted (dropped, i.e. discarded) and records nothing.
#[tokio::test]
async fn a_failed_primary_stage_or_commit_discards_the_staged_secondary() {
    for primary_commit_fails in [false, true] {
        let log = Arc::new(Mutex::new(StagedLog::default()));
        let mut primary = store("csv");
        empty(&mut primary);
        let (stage_fails, commit_fails) = match primary_commit_fails {
            true => (None, Some(full_disk as fn() -> StorageError)),
            false => (Some(full_disk as fn() -> StorageError), None),
        };
        stages(&mut primary, "csv", 1, stage_fails, commit_fails, &log);
        let mut secondary = store("parquet");
        empty(&mut secondary);
        stages(&mut secondary, "parquet", 1, None, None, &log);
        let mut meta = no_metadata();
        meta.expect_record().never();
        let m = manager(primary, secondary, meta, free_locks());
        let bars = sample_bars(3, BASE_NS, DAY_NS, 3);
        let err = m.persist(&bars, &stock("AAPL"), PersistOptions::default(), &OpContext::new()).await.unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
        let log = log.lock().unwrap();
        let committed: &[&str] = if primary_commit_fails { &["csv"] } else { &[] };
        assert_eq!(log.committed, committed, "primary commit fails: {primary_commit_fails}");
        assert_eq!(log.dropped, ["parquet"], "primary commit fails: {primary_commit_fails}");
        assert!(log.modes.iter().all(|m| *m == PutMode::Create), "a new series is created: {:?}", log.modes);
    }
}

/// The primary is committed and recorded before the secondary is committed; a secondary
/// that failed to stage is a failed secondary, not a failed call.
#[tokio::test]
async fn staged_copies_are_published_primary_first() {
    for secondary_stage_fails in [false, true] {
        let log = Arc::new(Mutex::new(StagedLog::default()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut primary = store("csv");
        empty(&mut primary);
        stages(&mut primary, "csv", 1, None, None, &log);
        let mut secondary = store("parquet");
        empty(&mut secondary);
        let fails = secondary_stage_fails.then_some(full_disk as fn() -> StorageError);
        stages(&mut secondary, "parquet", 1, fails, None, &log);
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

/// A copy changed since it was read (a conflict at stage or at the primary's commit) makes
/// the manager read and merge again, and a later attempt succeeds; nothing was published
/// by the attempts that conflicted.
#[tokio::test]
async fn a_conflict_is_read_and_merged_again() {
    for conflict_at_commit in [false, true] {
        let log = Arc::new(Mutex::new(StagedLog::default()));
        let mut primary = store("csv");
        let reads = Arc::new(Mutex::new(0));
        let r = Arc::clone(&reads);
        let stored = sample_bars(3, BASE_NS, DAY_NS, 8);
        primary.expect_load().returning(move |_, options, _| {
            *r.lock().unwrap() += 1;
            Ok(Some(loaded("csv", &stored, options)))
        });
        primary.expect_file_info().returning(|_, _| Ok(Some(info("csv", "v1"))));
        // The first two attempts conflict, the third goes through.
        let conflicting = Arc::clone(&log);
        let attempts = Arc::new(Mutex::new(0));
        primary.expect_stage().times(3).returning(move |_, _, options, _| {
            conflicting.lock().unwrap().modes.push(options.mode.clone());
            let mut n = attempts.lock().unwrap();
            *n += 1;
            if *n < 3 && !conflict_at_commit {
                return Err(changed());
            }
            let fails = (*n < 3).then_some(changed as fn() -> StorageError);
            Ok(Box::new(Staged { format: "csv", fails, log: Arc::clone(&conflicting), done: false })
                as Box<dyn StagedWrite>)
        });
        let mut secondary = store("parquet");
        secondary.expect_load().returning(|_, _, _| Ok(None));
        secondary.expect_file_info().returning(|_, _| Ok(None));
        stages(&mut secondary, "parquet", 3, None, None, &log);
        let mut meta = no_metadata();
        meta.expect_record().times(2).returning(|_, _| Ok(()));
        let m = manager(primary, secondary, meta, free_locks());
        let bars = sample_bars(2, BASE_NS + 10 * DAY_NS, DAY_NS, 9);
        let out = m
            .persist_with_backup(
                &bars,
                &stock("AAPL"),
                PersistOptions::default(),
                ValidationPolicy::Off,
                &OpContext::new(),
            )
            .await
            .unwrap();
        assert_eq!(out.retries, 2, "conflict at commit: {conflict_at_commit}");
        assert_eq!(out.receipt.rows_written, 5);
        assert_eq!(*reads.lock().unwrap(), 3, "every attempt reads again");
        let log = log.lock().unwrap();
        let committed: Vec<&str> =
            if conflict_at_commit { vec!["csv", "csv", "csv", "parquet"] } else { vec!["csv", "parquet"] };
        assert_eq!(log.committed, committed);
        assert_eq!(log.dropped.len(), 2, "the staged secondaries of the conflicting attempts are discarded");
        let csv_modes: Vec<&PutMode> = log.modes.iter().filter(|m| matches!(m, PutMode::Update(_))).collect();
        assert_eq!(csv_modes.len(), 3, "the primary is updated against the version read: {:?}", log.modes);
    }
}

/// A conflict that does not go away ends the call with the conflict after a bounded number
/// of attempts, having published nothing.
#[tokio::test]
async fn a_conflict_that_persists_fails_after_bounded_attempts() {
    let log = Arc::new(Mutex::new(StagedLog::default()));
    let mut primary = store("csv");
    empty(&mut primary);
    stages(&mut primary, "csv", MAX_ATTEMPTS, Some(changed), None, &log);
    let mut secondary = store("parquet");
    empty(&mut secondary);
    stages(&mut secondary, "parquet", MAX_ATTEMPTS, None, None, &log);
    let mut meta = no_metadata();
    meta.expect_record().never();
    let m = manager(primary, secondary, meta, free_locks());
    let bars = sample_bars(3, BASE_NS, DAY_NS, 3);
    let err = m.persist(&bars, &stock("AAPL"), PersistOptions::default(), &OpContext::new()).await.unwrap_err();
    assert!(err.is_version_conflict(), "{err:?}");
    assert!(log.lock().unwrap().committed.is_empty());
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
    // The first look takes no lock; a look that falls back is repeated under the series
    // lock (it may have met a writer between its commit and its record), and that look's
    // answer is served.
    let bars = sample_bars(5, BASE_NS, DAY_NS, 1);
    let mut primary = store("csv");
    primary.expect_load().times(2).returning(|_, _, _| Err(decode_error()));
    let mut secondary = store("parquet");
    let served = bars.clone();
    secondary.expect_load().times(2).returning(move |_, o, _| Ok(Some(loaded("parquet", &served, o))));
    let mut locks = MockSeriesLocks::new();
    locks.expect_lock().times(1).returning(|_, _, _| Ok(Box::new(Guard)));
    let m = manager(primary, secondary, no_metadata(), locks);
    let loaded = m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap();
    assert_eq!(loaded, Some(bars));
}

#[tokio::test]
async fn a_fallback_whose_lock_cannot_be_had_serves_the_first_look() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 1);
    let mut primary = store("csv");
    primary.expect_load().times(1).returning(|_, _, _| Err(decode_error()));
    let mut secondary = store("parquet");
    let served = bars.clone();
    secondary.expect_load().times(1).returning(move |_, o, _| Ok(Some(loaded("parquet", &served, o))));
    let mut locks = MockSeriesLocks::new();
    locks.expect_lock().times(1).returning(|s, t, _| {
        Err(StorageError::Locked { series: s.clone(), path: "stocks/1d/.AAPL.lock".into(), waited: t })
    });
    let m = manager(primary, secondary, no_metadata(), locks);
    let loaded = m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap();
    assert_eq!(loaded, Some(bars));
}

#[tokio::test]
async fn good_primary_never_loads_the_secondary() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 2);
    let mut primary = store("csv");
    let served = bars.clone();
    primary.expect_load().times(1).returning(move |_, o, _| Ok(Some(loaded("csv", &served, o))));
    let mut secondary = store("parquet");
    secondary.expect_load().never();
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    assert_eq!(m.load(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}

#[tokio::test]
async fn an_io_error_of_the_primary_is_returned_not_hidden_by_the_fallback() {
    let mut primary = store("csv");
    primary.expect_load().times(1).returning(|_, _, _| Err(denied()));
    let mut secondary = store("parquet");
    secondary.expect_load().never();
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    let err = m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Io { step: IoStep::Read, source, .. } if source.kind() == io::ErrorKind::PermissionDenied),
        "{err:?}"
    );
}

#[tokio::test]
async fn both_copies_bad_is_unreadable_naming_both_causes() {
    let mut primary = store("csv");
    primary.expect_load().returning(|_, _, _| Err(decode_error()));
    let mut secondary = store("parquet");
    secondary.expect_load().returning(|_, _, _| {
        Err(StorageError::Corrupt { path: "stocks/1d/AAPL.parquet".into(), reason: "bad footer".into() })
    });
    let m = manager(primary, secondary, no_metadata(), free_locks());
    let err = m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StorageError::Unreadable { .. }), "{text}");
    assert!(text.contains("not a number") && text.contains("bad footer"), "{text}");
}

#[tokio::test]
async fn a_lock_timeout_is_returned_before_anything_is_read() {
    let mut primary = store("csv");
    primary.expect_load().never();
    primary.expect_stage().never();
    primary.expect_file_info().returning(|_, _| Ok(Some(info("csv", "v1"))));
    let mut secondary = store("parquet");
    secondary.expect_stage().never();
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
    let mut primary = store("csv");
    primary.expect_load().times(1).returning(|_, _, _| Err(denied()));
    primary.expect_file_info().returning(|_, _| Ok(Some(info("csv", "v1"))));
    primary.expect_stage().never();
    let mut secondary = store("parquet");
    secondary.expect_load().never();
    secondary.expect_stage().never();
    let m = manager(primary, secondary, no_metadata(), free_locks());
    let bars = sample_bars(3, BASE_NS, DAY_NS, 5);
    let err = m.persist(&bars, &stock("AAPL"), PersistOptions::default(), &OpContext::new()).await.unwrap_err();
    assert!(matches!(err, StorageError::Io { step: IoStep::Read, .. }), "{err:?}");
}

#[tokio::test]
async fn file_info_asks_the_secondary_only_when_the_primary_has_nothing() {
    let s = stock("AAPL");
    let mut primary = store("csv");
    primary.expect_file_info().times(1).returning(|_, _| Ok(None));
    let mut secondary = store("parquet");
    secondary.expect_file_info().times(1).returning(|_, _| Ok(Some(info("parquet", "p1"))));
    let m = manager(primary, secondary, no_metadata(), MockSeriesLocks::new());
    assert_eq!(m.file_info(&s, &OpContext::new()).await.unwrap().map(|i| i.format), Some("parquet".into()));

    let mut primary = store("csv");
    primary.expect_file_info().times(1).returning(|_, _| Err(denied()));
    let mut secondary = store("parquet");
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
    let mut primary = store("csv");
    primary.expect_load().never();
    let mut secondary = store("parquet");
    let served = bars.clone();
    // No checksum from the store: the record's checksum cannot disagree with it.
    secondary.expect_load().times(1).returning(move |_, o, _| Ok(Some(loaded("parquet", &served, o))));
    let m = preferring_secondary(primary, secondary);
    assert_eq!(m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}

#[tokio::test]
async fn a_damaged_preferred_secondary_falls_back_to_the_primary() {
    let bars = sample_bars(5, BASE_NS, DAY_NS, 4);
    let mut primary = store("csv");
    let served = bars.clone();
    primary.expect_load().times(1).returning(move |_, o, _| Ok(Some(loaded("csv", &served, o))));
    let mut secondary = store("parquet");
    secondary.expect_load().times(1).returning(|_, _, _| {
        Err(StorageError::Corrupt { path: "stocks/1d/AAPL.parquet".into(), reason: "bad footer".into() })
    });
    let m = preferring_secondary(primary, secondary);
    assert_eq!(m.load_with_fallback(&stock("AAPL"), None, &OpContext::new()).await.unwrap(), Some(bars));
}
