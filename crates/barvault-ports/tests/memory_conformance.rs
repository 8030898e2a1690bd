//! The memory adapters against the conformance suite, plus proof that the suite can fail.

use barvault_ports::BarStoreExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::{Bars, InstrumentKind, Period};
use barvault_ports::conformance::{self, BASE_NS, DAY_NS, sample_bars, series, stock};
use barvault_ports::memory::{InMemoryBarStore, InMemoryLocks, InMemoryMetadataStore};
use barvault_ports::unreliable::{Injected, Op, UnreliableStore};
use barvault_ports::{
    BarStore, Capabilities, FileInfo, LoadOptions, Loaded, MetadataStore, OpContext, PutMode, PutOptions, Revision,
    SeriesLocks, StagedWrite, StorageError,
};

#[tokio::test]
async fn memory_store_passes_run_all() {
    conformance::run_all(&InMemoryBarStore::new()).await;
}

#[tokio::test]
async fn cases_share_one_store_in_reverse_order() {
    let store = InMemoryBarStore::new();
    conformance::run_capabilities(&store).await;
    conformance::from_and_nothing_reads(&store).await;
    conformance::series_never_collide(&store).await;
    conformance::extreme_floats(&store).await;
    conformance::nanosecond_timestamps(&store).await;
    conformance::extra_columns_with_missing_values(&store).await;
    conformance::range_load(&store).await;
    conformance::a_stale_token_is_a_conflict_never_a_wrong_file(&store).await;
    conformance::staged_write_is_invisible_until_commit(&store).await;
    conformance::overwrite_replaces_whatever_is_stored(&store).await;
    conformance::update_against_the_version_read(&store).await;
    conformance::create_refuses_an_existing_series(&store).await;
    conformance::missing_and_empty_series(&store).await;
    conformance::round_trip(&store).await;
}

/// The unreliable wrapper forwards everything, so the whole suite passes through it.
#[tokio::test]
async fn the_unreliable_wrapper_without_rules_passes_run_all() {
    let store = UnreliableStore::new(Arc::new(InMemoryBarStore::new()));
    conformance::run_all(&store).await;
    assert!(store.calls(Op::Load) > 0 && store.calls(Op::Commit) > 0 && store.calls(Op::FileInfo) > 0);
    assert_eq!(store.injected(), 0);
}

/// Rules fail exactly the calls they name, with errors that say what failed, and a failed
/// commit publishes nothing.
#[tokio::test]
async fn the_unreliable_wrapper_fails_the_calls_it_names() {
    let store = UnreliableStore::new(Arc::new(InMemoryBarStore::new()));
    let (s, other, c) = (stock("UNRELIABLE"), stock("UNRELIABLE_B"), OpContext::new());
    let bars = sample_bars(3, BASE_NS, DAY_NS, 1);
    store.fail_once(Op::Commit, 1, Injected::Io(28));
    let err = store.persist(&s, &Revision::whole(bars.clone()), &PutOptions::create(), &c).await.unwrap_err();
    assert!(err.to_string().contains("os error 28"), "{err}");
    assert!(store.file_info(&s, &c).await.expect("info").is_none(), "a failed commit published");
    store.persist(&s, &Revision::whole(bars.clone()), &PutOptions::create(), &c).await.expect("second commit");
    store.fail_series(Op::Load, &other, 1, Injected::Corrupt);
    assert!(store.load(&s, &LoadOptions::default(), &c).await.is_ok(), "another series is not failed");
    store.persist(&other, &Revision::whole(bars), &PutOptions::create(), &c).await.expect("other");
    assert!(store.load(&other, &LoadOptions::default(), &c).await.unwrap_err().is_data_error());
    store.fail_times(Op::Stage, 1, 2, Injected::Conflict);
    for _ in 0..2 {
        let err = store.stage(&s, &Revision::whole(Bars::empty()), &PutOptions::overwrite(), &c).await.unwrap_err();
        assert!(err.is_version_conflict(), "{err}");
    }
    assert!(store.stage(&s, &Revision::whole(Bars::empty()), &PutOptions::overwrite(), &c).await.is_ok());
    assert_eq!(store.injected(), 4);
    store.fail_from(Op::List, 1, Injected::Io(5));
    assert!(store.list(&c).await.is_err() && store.list(&c).await.is_err());
    store.heal();
    assert_eq!(store.list(&c).await.expect("healed").len(), 2);
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
    let r = store.persist(&s, &Revision::whole(bars), &PutOptions::create(), &OpContext::new()).await.expect("persist");
    assert_eq!(r.info.location, "memory://stocks/1M/AAPL");
    assert_eq!((r.info.format.as_str(), r.checksum.as_deref(), r.backup_created), ("memory", None, false));
    let info = store.file_info(&s, &OpContext::new()).await.expect("info").expect("stored");
    assert_eq!(info, r.info);
    assert_eq!(info.size, 4 * 6 * 8, "estimate: eight bytes per core cell");
    assert!(info.modified.is_some());
    assert_eq!(store.len(), 1);
}

/// A store that breaks one promise, to show the suite notices.
#[derive(Debug, Clone, Copy)]
enum Broken {
    /// Rounds every price to f32 precision, as a careless text format would.
    LossyFloats,
    /// Treats every write as an overwrite: a stale token goes unnoticed.
    IgnoresVersions,
    /// Writes a revision's rows without the rows it skips.
    DropsSkippedRows,
    /// Claims backups and tail reads it does not have.
    OverclaimsCapabilities,
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

    fn capabilities(&self) -> Capabilities {
        match self.flaw {
            Broken::OverclaimsCapabilities => Capabilities { checksums: true, ..self.inner.capabilities() },
            _ => self.inner.capabilities(),
        }
    }

    async fn load(
        &self,
        series: &barvault_domain::SeriesKey,
        options: &LoadOptions,
        ctx: &OpContext,
    ) -> Result<Option<Loaded>, StorageError> {
        self.inner.load(series, options, ctx).await
    }

    async fn file_info(
        &self,
        series: &barvault_domain::SeriesKey,
        ctx: &OpContext,
    ) -> Result<Option<FileInfo>, StorageError> {
        self.inner.file_info(series, ctx).await
    }

    async fn stage(
        &self,
        series: &barvault_domain::SeriesKey,
        revision: &Revision,
        options: &PutOptions,
        ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        match self.flaw {
            Broken::LossyFloats => {
                let lossy = Revision { bars: Arc::new(to_f32(&revision.bars)), ..revision.clone() };
                self.inner.stage(series, &lossy, options, ctx).await
            }
            Broken::IgnoresVersions => {
                let any = PutOptions { mode: PutMode::Overwrite, ..options.clone() };
                let whole = if revision.skipped > 0 {
                    let stored = self.inner.load(series, &LoadOptions::default(), ctx).await?.map(Loaded::into_bars);
                    let head = stored.unwrap_or_default().slice_rows(0, revision.skipped);
                    let (all, _) = barvault_domain::merge(&head, &revision.bars, Default::default())?;
                    Revision::whole(all)
                } else {
                    revision.clone()
                };
                self.inner.stage(series, &whole, &any, ctx).await
            }
            Broken::DropsSkippedRows => {
                self.inner.stage(series, &Revision::whole(Arc::clone(&revision.bars)), options, ctx).await
            }
            Broken::OverclaimsCapabilities => self.inner.stage(series, revision, options, ctx).await,
        }
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
        panics(Broken::IgnoresVersions, |s| async move { conformance::update_against_the_version_read(&*s).await })
            .await
    );
    assert!(
        panics(Broken::IgnoresVersions, |s| async move {
            conformance::a_stale_token_is_a_conflict_never_a_wrong_file(&*s).await
        })
        .await
    );
    assert!(
        panics(Broken::IgnoresVersions, |s| async move { conformance::create_refuses_an_existing_series(&*s).await })
            .await
    );
    assert!(
        panics(Broken::DropsSkippedRows, |s| async move { conformance::revisions_keep_the_rows_they_skip(&*s).await })
            .await
    );
    assert!(
        panics(Broken::OverclaimsCapabilities, |s| async move {
            conformance::checksums_describe_the_stored_bytes(&*s).await
        })
        .await
    );
    // The same wrappers pass the cases their flaw does not touch.
    assert!(!panics(Broken::IgnoresVersions, |s| async move { conformance::range_load(&*s).await }).await);
    assert!(!panics(Broken::DropsSkippedRows, |s| async move { conformance::extreme_floats(&*s).await }).await);
}

#[tokio::test]
async fn metadata_store_refuses_a_record_whose_symbol_does_not_fit_its_kind() {
    let store = InMemoryMetadataStore::new();
    let mut m = conformance::sample_metadata(&stock("AAPL"), "csv", 1);
    m.instrument_type = InstrumentKind::Forex;
    let err = store.record(&m, &OpContext::new()).await.expect_err("AAPL is not a forex pair");
    assert!(matches!(err, StorageError::InvalidInput { .. }), "{err:?}");
    assert!(store.list(&OpContext::new()).await.expect("list").records.is_empty());
}

#[cfg(feature = "mock")]
#[tokio::test]
// Mock closures return StorageError by value, which clippy finds large (see lib docs).
async fn mocks_compile_and_answer() {
    use barvault_ports::{MockBarStore, MockMetadataStore, MockSeriesLocks};
    let mut store = MockBarStore::new();
    store.expect_name().return_const("mock".to_string());
    store.expect_file_info().times(1).returning(|_, _| Ok(None));
    let store: &dyn BarStore = &store;
    assert!(store.file_info(&stock("MOCK"), &OpContext::new()).await.expect("mocked").is_none());
    assert_eq!(store.name(), "mock");

    let mut meta = MockMetadataStore::new();
    meta.expect_list().returning(|_| Ok(Default::default()));
    assert!(meta.list(&OpContext::new()).await.expect("mocked").records.is_empty());

    let mut locks = MockSeriesLocks::new();
    locks
        .expect_lock()
        .returning(|s, t, _| Err(StorageError::Locked { series: s.clone(), path: "mock".into(), waited: t }));
    let err = locks.lock(&stock("MOCK"), Duration::from_millis(1), &OpContext::new()).await.unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }));
}
