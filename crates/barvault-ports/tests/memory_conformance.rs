//! The memory adapters against the conformance suite, plus proof that the suite can fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::{Bars, InstrumentKind, MergePolicy, Period, SeriesKey, TimeRange};
use barvault_ports::conformance::{self, BASE_NS, DAY_NS, sample_bars, series, stock};
use barvault_ports::memory::{InMemoryBarStore, InMemoryLocks, InMemoryMetadataStore};
use barvault_ports::{
    BarStore, FileInfo, MetadataStore, OpContext, PersistOptions, SeriesLocks, StorageError, StorageReceipt,
};

#[tokio::test]
async fn memory_store_passes_run_all() {
    conformance::run_all(&InMemoryBarStore::new()).await;
}

#[tokio::test]
async fn cases_share_one_store_in_reverse_order() {
    let store = InMemoryBarStore::new();
    conformance::load_with_checksum_matches_load(&store).await;
    conformance::list_and_remove(&store).await;
    conformance::series_never_collide(&store).await;
    conformance::identical_data_is_unchanged(&store).await;
    conformance::extreme_floats(&store).await;
    conformance::nanosecond_timestamps(&store).await;
    conformance::extra_columns_with_missing_values(&store).await;
    conformance::range_load(&store).await;
    conformance::exists_and_file_info(&store).await;
    conformance::missing_series(&store).await;
    conformance::empty_frame(&store).await;
    conformance::replace_mode(&store).await;
    conformance::non_overlapping_batches_keep_all_rows(&store).await;
    conformance::error_on_conflict(&store).await;
    conformance::keep_first_merge(&store).await;
    conformance::keep_last_merge(&store).await;
    conformance::round_trip(&store).await;
}

#[tokio::test]
async fn memory_metadata_passes_run_all() {
    conformance::metadata_run_all(&InMemoryMetadataStore::new()).await;
}

#[tokio::test]
async fn memory_locks_pass_run_all() {
    let locks = InMemoryLocks::new();
    conformance::locks_run_all(&locks).await;
    assert_eq!(locks.active(), 0, "released and timed-out entries are pruned");
}

#[test]
fn fixtures_are_deterministic_and_valid() {
    let a = sample_bars(100, BASE_NS, DAY_NS, 7);
    assert_eq!(a, sample_bars(100, BASE_NS, DAY_NS, 7));
    assert_ne!(a, sample_bars(100, BASE_NS, DAY_NS, 8));
    let (checked, report) = barvault_domain::validate(a.clone(), barvault_domain::ValidationPolicy::Strict)
        .expect("sample bars pass strict validation");
    assert_eq!((checked, report.checked), (a, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_serialize_contending_tasks() {
    let locks = Arc::new(InMemoryLocks::new());
    let counter = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let s = stock("CONTEND");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (locks, counter, inside, s) = (locks.clone(), counter.clone(), inside.clone(), s.clone());
            tokio::spawn(async move {
                let _g = locks.lock(&s, Duration::from_secs(10), &OpContext::new()).await.expect("lock");
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                let seen = counter.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                counter.store(seen + 1, Ordering::SeqCst);
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(counter.load(Ordering::SeqCst), 16, "a read-modify-write under the lock was lost");
    assert_eq!(locks.active(), 0);
}

#[tokio::test]
async fn lock_timeout_gives_locked_with_location() {
    let locks = InMemoryLocks::new();
    let s = series(InstrumentKind::Future, "GC", Period::M1);
    let ctx = OpContext::new();
    let _held = locks.lock(&s, Duration::from_secs(1), &ctx).await.expect("first");
    let err = locks.lock(&s, Duration::from_millis(20), &ctx).await.expect_err("second must time out");
    match err {
        StorageError::Locked { series, path, waited } => {
            assert_eq!(series, s);
            assert_eq!(path.to_string_lossy(), "memory://futures/1m/GC");
            assert!(waited >= Duration::from_millis(20));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let err = locks.lock(&s, Duration::ZERO, &ctx).await.expect_err("zero timeout on a held lock");
    assert!(matches!(err, StorageError::Locked { .. }));
    assert_eq!(locks.active(), 1, "only the held series keeps an entry");
}

#[tokio::test]
async fn receipt_and_info_name_the_memory_location() {
    let store = InMemoryBarStore::new();
    let s = series(InstrumentKind::Stock, "aapl", Period::Mo1);
    let bars = sample_bars(4, BASE_NS, DAY_NS, 1);
    let r = store.persist(&bars, &s, PersistOptions::default(), &OpContext::new()).await.expect("persist");
    assert_eq!(r.location, "memory://stocks/1M/AAPL");
    assert_eq!((r.format.as_str(), r.checksum_md5.as_deref(), r.backup_created), ("memory", None, false));
    let info = store.file_info(&s, &OpContext::new()).await.expect("info").expect("stored");
    assert_eq!(info.location, r.location);
    assert_eq!(info.size, 4 * 6 * 8, "estimate: eight bytes per core cell");
    assert!(info.modified.is_some());
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn conflict_leaves_store_untouched_and_replace_counts_rows() {
    let store = InMemoryBarStore::new();
    let s = stock("RPL");
    let ctx = OpContext::new();
    let a = sample_bars(6, BASE_NS, DAY_NS, 1);
    let b = sample_bars(4, BASE_NS + 4 * DAY_NS, DAY_NS, 2);
    store.persist(&a, &s, PersistOptions::default(), &ctx).await.expect("a");
    let err = store.persist(&b, &s, PersistOptions::merge(MergePolicy::ErrorOnConflict), &ctx).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict { ref series, .. } if *series == s), "{err:?}");
    let r = store.persist(&b, &s, PersistOptions::replace(), &ctx).await.expect("replace");
    let m = r.merge;
    assert_eq!((m.existing_rows, m.new_rows, m.result_rows), (6, 4, 4));
    assert_eq!((m.rows_added, m.duplicates_removed, m.rows_changed, m.unchanged), (2, 2, 2, false));
    assert_eq!(store.load(&s, Some(TimeRange::all()), &ctx).await.expect("load"), Some(b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_merges_keep_every_row() {
    let store = Arc::new(InMemoryBarStore::new());
    let s = stock("PARALLEL");
    let tasks: Vec<_> = (0..8i64)
        .map(|i| {
            let (store, s) = (store.clone(), s.clone());
            tokio::spawn(async move {
                let bars = sample_bars(10, BASE_NS + i, 8, i as u64);
                store.persist(&bars, &s, PersistOptions::default(), &OpContext::new()).await.expect("persist");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let loaded = store.load(&s, None, &OpContext::new()).await.expect("load").expect("stored");
    assert_eq!(loaded.len(), 80);
}

/// A store that breaks one promise, to show the suite notices.
#[derive(Debug)]
enum Broken {
    /// Rounds every price to f32 precision, as a careless text format would.
    LossyFloats,
    /// Reports `written = true` even when nothing changed.
    AlwaysWritten,
    /// Ignores the merge policy and always replaces.
    NoMerge,
}

#[derive(Debug)]
struct BrokenStore {
    inner: InMemoryBarStore,
    flaw: Broken,
}

fn to_f32(bars: &Bars) -> Bars {
    let r = |v: &[f64]| v.iter().map(|&x| x as f32 as f64).collect::<Vec<_>>();
    Bars::new(
        bars.timestamps().to_vec(),
        r(bars.open()),
        r(bars.high()),
        r(bars.low()),
        r(bars.close()),
        r(bars.volume()),
        bars.extras().to_vec(),
    )
    .expect("same shape")
}

#[async_trait]
impl BarStore for BrokenStore {
    fn name(&self) -> &str {
        "broken"
    }

    async fn persist(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError> {
        match self.flaw {
            Broken::LossyFloats => self.inner.persist(&to_f32(bars), series, options, ctx).await,
            Broken::AlwaysWritten => {
                let mut r = self.inner.persist(bars, series, options, ctx).await?;
                r.written = true;
                Ok(r)
            }
            Broken::NoMerge => self.inner.persist(bars, series, PersistOptions::replace(), ctx).await,
        }
    }

    async fn load(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<Bars>, StorageError> {
        self.inner.load(series, range, ctx).await
    }

    async fn exists(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        self.inner.exists(series, ctx).await
    }

    async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        self.inner.file_info(series, ctx).await
    }
}

async fn panics<F, Fut>(flaw: Broken, case: F) -> bool
where
    F: FnOnce(Arc<BrokenStore>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let store = Arc::new(BrokenStore { inner: InMemoryBarStore::new(), flaw });
    tokio::spawn(case(store)).await.is_err_and(|e| e.is_panic())
}

#[tokio::test]
async fn suite_catches_broken_stores() {
    assert!(panics(Broken::LossyFloats, |s| async move { conformance::extreme_floats(&*s).await }).await);
    assert!(panics(Broken::LossyFloats, |s| async move { conformance::round_trip(&*s).await }).await);
    assert!(
        panics(Broken::AlwaysWritten, |s| async move { conformance::identical_data_is_unchanged(&*s).await }).await
    );
    assert!(panics(Broken::AlwaysWritten, |s| async move { conformance::empty_frame(&*s).await }).await);
    assert!(panics(Broken::NoMerge, |s| async move { conformance::keep_last_merge(&*s).await }).await);
    assert!(
        panics(Broken::NoMerge, |s| async move { conformance::non_overlapping_batches_keep_all_rows(&*s).await }).await
    );
    // The same wrapper without a flaw in the exercised path passes.
    assert!(!panics(Broken::AlwaysWritten, |s| async move { conformance::range_load(&*s).await }).await);
}

#[tokio::test]
async fn metadata_store_refuses_a_record_whose_symbol_does_not_fit_its_kind() {
    let store = InMemoryMetadataStore::new();
    let mut m = conformance::sample_metadata(&stock("AAPL"), "csv", 1);
    m.instrument_type = InstrumentKind::Forex;
    let err = store.record(&m, &OpContext::new()).await.expect_err("AAPL is not a forex pair");
    assert!(matches!(err, StorageError::InvalidInput { .. }), "{err:?}");
    assert!(store.list(&OpContext::new()).await.expect("list").is_empty());
}

#[cfg(feature = "mock")]
#[tokio::test]
// Mock closures return StorageError by value, which clippy finds large (see lib docs).
async fn mocks_compile_and_answer() {
    use barvault_ports::{MockBarStore, MockMetadataStore, MockSeriesLocks};
    let mut store = MockBarStore::new();
    store.expect_name().return_const("mock".to_string());
    store.expect_exists().times(1).returning(|_, _| Ok(true));
    let store: &dyn BarStore = &store;
    assert!(store.exists(&stock("MOCK"), &OpContext::new()).await.expect("mocked"));
    assert_eq!(store.name(), "mock");

    let mut meta = MockMetadataStore::new();
    meta.expect_list().returning(|_| Ok(vec![]));
    assert!(meta.list(&OpContext::new()).await.expect("mocked").is_empty());

    let mut locks = MockSeriesLocks::new();
    locks
        .expect_lock()
        .returning(|s, t, _| Err(StorageError::Locked { series: s.clone(), path: "mock".into(), waited: t }));
    let err = locks.lock(&stock("MOCK"), Duration::from_millis(1), &OpContext::new()).await.unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }));
}
