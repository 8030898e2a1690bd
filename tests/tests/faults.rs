//! Failures injected into real adapters: the ports' `UnreliableStore` wrapper around in-memory stores, and
//! `FaultyFs` under the file-backed vault failing one step of the CSV write, the Parquet
//! write or a metadata write. In every case no stored row is lost, the result tells the
//! truth (Err for the primary, `secondary: Failed` for the backup copy), health and verify
//! see the damage, and the next persist or `recover` repairs it.

mod common;

use std::sync::Arc;

use barvault::{
    Bars, HealthStatus, IssueKind, MergePolicy, MetadataStore, PersistOptions, Scope, SecondaryStatus, SeriesKey,
    StorageError, StorageFactory, StorageReceipt, Vault,
};
use barvault_domain::merge;
use barvault_fs::{Fault, FaultyFs, FsOp};
use barvault_ports::IoStep;
use barvault_ports::conformance::{BASE_NS, DAY_NS, sample_bars, stock};
use barvault_ports::memory::InMemoryBarStore;
use barvault_ports::unreliable::{Injected, Op, UnreliableStore};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// What is stored before the faulty call, and the batch the call tries to add.
fn batches() -> (Bars, Bars, Bars) {
    let before = sample_bars(20, BASE_NS, DAY_NS, 1);
    // Overlaps the last five stored rows (with other values) and adds five.
    let new = sample_bars(10, BASE_NS + 15 * DAY_NS, DAY_NS, 2);
    let (after, stats) = merge(&before, &new, MergePolicy::KeepLast).unwrap();
    assert!(stats.rows_added == 5 && stats.rows_changed == 5, "fixture: {stats:?}");
    (before, new, after)
}

struct FaultyDual {
    csv: Arc<UnreliableStore>,
    parquet: Arc<UnreliableStore>,
    dual: common::MemoryDual,
}

fn faulty_memory_dual() -> FaultyDual {
    let csv = Arc::new(UnreliableStore::new(Arc::new(InMemoryBarStore::named("csv"))));
    let parquet = Arc::new(UnreliableStore::new(Arc::new(InMemoryBarStore::named("parquet"))));
    let dual = common::memory_dual_over(Arc::clone(&csv) as _, Arc::clone(&parquet) as _);
    FaultyDual { csv, parquet, dual }
}

#[tokio::test]
async fn memory_secondary_failure_is_reported_and_repaired_by_the_next_persist() {
    let f = faulty_memory_dual();
    let (before, new, after) = batches();
    let (s, ctx) = (stock("AAPL"), common::ctx());
    f.dual.manager.persist(&before, &s, PersistOptions::default(), &ctx).await.unwrap();

    f.parquet.fail_once(Op::Stage, 1, Injected::Io(ENOSPC));
    let receipt = f.dual.manager.persist(&new, &s, PersistOptions::default(), &ctx).await.unwrap();
    assert_eq!(f.parquet.injected(), 1);
    assert!(receipt.written, "{receipt:?}");
    match &receipt.secondary {
        Some(SecondaryStatus::Failed { format, error, .. }) => {
            assert_eq!(format, "parquet");
            assert!(error.contains("write temp file"), "{error}");
        }
        other => panic!("secondary status should be Failed, got {other:?}"),
    }
    assert_eq!(common::served(&f.dual.manager, &s).await, Some(after.clone()));
    assert_eq!(common::load(f.dual.parquet.as_ref(), &s).await, Some(before.clone()), "backup copy changed");

    // Retrying the same batch changes no bar, but rewrites the stale copy.
    let outcome = f
        .dual
        .manager
        .persist_with_backup(&new, &s, PersistOptions::default(), barvault::ValidationPolicy::Off, &ctx)
        .await
        .unwrap();
    assert!(outcome.receipt.merge.unchanged, "{outcome:?}");
    assert!(matches!(outcome.receipt.secondary, Some(SecondaryStatus::Written { .. })), "{outcome:?}");
    assert_eq!(outcome.repaired.len(), 1, "{outcome:?}");
    assert_eq!(common::load(f.dual.parquet.as_ref(), &s).await, Some(after.clone()));
    assert_eq!(common::load(f.dual.csv.as_ref(), &s).await, Some(after));
    let (c, p) = (f.dual.metadata.get(&s, "csv", &ctx), f.dual.metadata.get(&s, "parquet", &ctx));
    let (c, p) = (c.await.unwrap().unwrap(), p.await.unwrap().unwrap());
    assert_eq!(c.generation, p.generation, "copies must share the generation after the repair");
}

#[tokio::test]
async fn memory_primary_failure_is_an_error_and_changes_nothing() {
    let f = faulty_memory_dual();
    let (before, new, after) = batches();
    let (s, ctx) = (stock("AAPL"), common::ctx());
    f.dual.manager.persist(&before, &s, PersistOptions::default(), &ctx).await.unwrap();

    f.csv.fail_once(Op::Commit, 1, Injected::Io(ENOSPC));
    let err = f.dual.manager.persist(&new, &s, PersistOptions::default(), &ctx).await.unwrap_err();
    assert!(matches!(&err, StorageError::Io { step: IoStep::Rename, .. }), "{err:?}");
    assert!(err.to_string().contains("AAPL"), "{err}");
    // Neither copy holds the refused batch: the caller was told it is not stored.
    assert_eq!(common::served(&f.dual.manager, &s).await, Some(before.clone()));
    assert_eq!(common::load(f.dual.csv.as_ref(), &s).await, Some(before.clone()));
    assert_eq!(common::load(f.dual.parquet.as_ref(), &s).await, Some(before.clone()));

    let receipt = f.dual.manager.persist(&new, &s, PersistOptions::default(), &ctx).await.unwrap();
    assert!(receipt.written && matches!(receipt.secondary, Some(SecondaryStatus::Written { .. })));
    assert_eq!(common::load(f.dual.csv.as_ref(), &s).await, Some(after.clone()));
    assert_eq!(common::load(f.dual.parquet.as_ref(), &s).await, Some(after));
}

#[tokio::test]
async fn memory_primary_failure_on_the_first_write_stores_nothing() {
    let f = faulty_memory_dual();
    let (before, _, _) = batches();
    let (s, ctx) = (stock("NEW"), common::ctx());
    f.csv.fail_once(Op::Stage, 1, Injected::Io(ENOSPC));
    assert!(f.dual.manager.persist(&before, &s, PersistOptions::default(), &ctx).await.is_err());
    assert_eq!(common::served(&f.dual.manager, &s).await, None, "a failed first write must not be served");
    assert!(!f.dual.manager.exists(&s, &ctx).await.unwrap());
}

// ---- the file-backed vault under FaultyFs ----

struct Seeded {
    _dir: tempfile::TempDir,
    vault: Vault,
    fs: FaultyFs,
    series: SeriesKey,
    before: Bars,
    new: Bars,
    after: Bars,
    csv_bytes: Vec<u8>,
    parquet_bytes: Vec<u8>,
}

/// A vault on a FaultyFs holding `before` for AAPL, both copies written and recorded.
async fn seeded() -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::real();
    let vault = StorageFactory::open_with_fs(&common::config(dir.path()), Arc::new(fs.clone())).unwrap();
    let (before, new, after) = batches();
    let series = stock("AAPL");
    vault.manager().persist(&before, &series, PersistOptions::default(), &common::ctx()).await.unwrap();
    let (csv, parquet) = common::paths(&vault, &series);
    let (csv_bytes, parquet_bytes) = (common::read(&csv), common::read(&parquet));
    Seeded { _dir: dir, vault, fs, series, before, new, after, csv_bytes, parquet_bytes }
}

impl Seeded {
    async fn persist_new(&self) -> Result<StorageReceipt, StorageError> {
        self.vault.manager().persist(&self.new, &self.series, PersistOptions::default(), &common::ctx()).await
    }

    async fn load(&self) -> Option<Bars> {
        common::served(self.vault.manager(), &self.series).await
    }

    /// Removes the spare files the first write left, so that the next write creates its
    /// temp files (the step a `CreateTemp` fault fails).
    fn drop_spares(&self) {
        let (csv, parquet) = common::paths(&self.vault, &self.series);
        for path in [csv, parquet] {
            let name = path.file_name().unwrap().to_str().unwrap();
            std::fs::remove_file(barvault_fs::spare_path_in(path.parent().unwrap(), name)).unwrap();
        }
    }

    /// Both copies, read by plain single-format stores.
    async fn copies(&self) -> (Option<Bars>, Option<Bars>) {
        let base = self.vault.base();
        let csv = barvault_fs::FileStore::new(base, barvault::CsvCodec).unwrap();
        let parquet = barvault_fs::FileStore::new(base, barvault::ParquetCodec::default()).unwrap();
        (common::load(&csv, &self.series).await, common::load(&parquet, &self.series).await)
    }

    /// Health is in error and names this series' files among the consistency issues.
    async fn assert_unhealthy(&self, kinds: &[IssueKind]) {
        let health = self.vault.check_health().await.unwrap();
        assert_eq!(health.overall_status, HealthStatus::Error, "{health:#?}");
        let report = self.vault.verify(Scope::All, false).await.unwrap();
        for kind in kinds {
            let found = report.issues.iter().find(|i| i.kind == *kind && i.series.as_deref() == Some("stock:AAPL@1d"));
            let i = found.unwrap_or_else(|| panic!("verify lacks {kind:?}: {:#?}", report.issues));
            let line = format!("{}: {}", i.kind, i.path.display());
            assert!(health.consistency_issues.iter().any(|c| c.starts_with(&line)), "{line} not in {health:#?}");
        }
    }

    async fn assert_clean(&self) {
        let report = self.vault.verify(Scope::All, true).await.unwrap();
        assert!(report.is_clean(), "{:#?}", report.issues);
        let health = self.vault.check_health().await.unwrap();
        assert_eq!(health.overall_status, HealthStatus::Healthy, "{health:#?}");
        let (csv, parquet) = self.copies().await;
        assert!(csv.is_some() && csv == parquet, "copies differ after repair");
    }
}

/// One failing step of the CSV data write: the fault, and whether the new file is
/// already in place when it fails (only the final directory fsync).
const CSV_FAULTS: [(FsOp, u64, &str, bool); 6] = [
    (FsOp::CreateTemp, 1, ".AAPL.csv.tmp.", false),
    (FsOp::WriteTemp, 1, ".AAPL.csv.tmp.", false),
    (FsOp::FsyncTemp, 1, ".AAPL.csv.tmp.", false),
    // A series' first update links its backup straight to `.backup` (there is none yet),
    // so its only rename is the temp file's over the data file.
    (FsOp::BackupLink, 1, "AAPL.csv.backup", false),
    (FsOp::Rename, 1, "1d/AAPL.csv", false),
    (FsOp::FsyncDir, 1, "stocks/1d", true),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_write_failures_are_errors_that_lose_nothing() {
    for (i, (step, nth, fragment, replaced)) in CSV_FAULTS.into_iter().enumerate() {
        let t = seeded().await;
        if step == FsOp::CreateTemp {
            t.drop_spares();
        }
        t.fs.inject(Fault::once(step, nth, EIO).on_paths_containing(fragment));
        let err = t.persist_new().await.expect_err("a failed CSV write must be an error");
        assert_eq!(t.fs.injected(), 1, "{step}: fault not hit");
        match &err {
            StorageError::Io { step: s, path, .. } => {
                let expected_step = step.step();
                assert_eq!(*s, expected_step, "{err}");
                assert!(path.to_string_lossy().contains("1d"), "{step}: error names {}", path.display());
            }
            other => panic!("{step}: expected an Io error, got {other:?}"),
        }
        // The caller was told the batch is not stored: what loads is exactly the previous content.
        assert_eq!(t.load().await, Some(t.before.clone()), "{step}: load after the failure");
        let (csv, parquet) = common::paths(&t.vault, &t.series);
        assert!(common::read(&parquet) == t.parquet_bytes, "{step}: Parquet copy changed by a failed call");
        if replaced {
            assert!(common::read(&csv) != t.csv_bytes, "{step}: expected the new CSV in place");
            t.assert_unhealthy(&[IssueKind::ChecksumMismatch]).await;
        } else {
            assert!(common::read(&csv) == t.csv_bytes, "{step}: CSV changed by a failed write");
            assert!(t.vault.verify(Scope::All, false).await.unwrap().is_clean(), "{step}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(csv.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{step}: temp files left: {leftovers:?}");

        t.fs.clear();
        if i % 2 == 0 {
            // Retrying the write repairs everything.
            let receipt = t.persist_new().await.unwrap();
            assert!(receipt.written && matches!(receipt.secondary, Some(SecondaryStatus::Written { .. })));
            assert_eq!(t.load().await, Some(t.after.clone()), "{step}");
        } else {
            let report = t.vault.recover(Scope::All).await.unwrap();
            assert!(report.unrecoverable.is_empty(), "{report:?}");
            assert_eq!(t.load().await, Some(t.before.clone()), "{step}: recover changed the bars");
        }
        t.assert_clean().await;
    }
}

const PARQUET_FAULTS: [(FsOp, u64, &str); 5] = [
    (FsOp::CreateTemp, 1, ".AAPL.parquet.tmp."),
    (FsOp::WriteTemp, 1, ".AAPL.parquet.tmp."),
    (FsOp::FsyncTemp, 1, ".AAPL.parquet.tmp."),
    (FsOp::Rename, 1, "1d/AAPL.parquet"),
    (FsOp::BackupLink, 1, "AAPL.parquet.backup"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_write_failures_are_reported_in_the_receipt_and_repaired() {
    for (i, (step, nth, fragment)) in PARQUET_FAULTS.into_iter().enumerate() {
        let t = seeded().await;
        if step == FsOp::CreateTemp {
            t.drop_spares();
        }
        t.fs.inject(Fault::once(step, nth, ENOSPC).on_paths_containing(fragment));
        let receipt = t.persist_new().await.expect("a failed backup copy is not a failed persist");
        assert_eq!(t.fs.injected(), 1, "{step}: fault not hit");
        assert!(receipt.written, "{step}: {receipt:?}");
        match &receipt.secondary {
            Some(SecondaryStatus::Failed { format, location, error }) => {
                assert_eq!(format, "parquet");
                assert!(location.ends_with("AAPL.parquet"), "{location}");
                assert!(error.contains(&step.to_string()), "{step}: {error}");
            }
            other => panic!("{step}: expected secondary Failed, got {other:?}"),
        }
        assert_eq!(t.load().await, Some(t.after.clone()), "{step}");
        let (_, parquet) = common::paths(&t.vault, &t.series);
        assert!(common::read(&parquet) == t.parquet_bytes, "{step}: Parquet changed by a failed write");
        assert_eq!(t.copies().await, (Some(t.after.clone()), Some(t.before.clone())), "{step}");
        t.assert_unhealthy(&[IssueKind::Inconsistent]).await;

        t.fs.clear();
        if i % 2 == 0 {
            let outcome = t
                .vault
                .manager()
                .persist_with_backup(
                    &t.new,
                    &t.series,
                    PersistOptions::default(),
                    barvault::ValidationPolicy::Off,
                    &common::ctx(),
                )
                .await
                .unwrap();
            assert!(outcome.receipt.merge.unchanged, "{outcome:?}");
            assert!(!outcome.receipt.written, "{step}: the sound CSV copy was rewritten");
            assert!(matches!(outcome.receipt.secondary, Some(SecondaryStatus::Written { .. })), "{outcome:?}");
            assert_eq!(outcome.repaired, vec![parquet.display().to_string()], "{step}");
        } else {
            let report = t.vault.recover(Scope::All).await.unwrap();
            assert!(report.unrecoverable.is_empty(), "{report:?}");
            assert!(report.actions.iter().any(|a| a.path == parquet), "{report:?}");
        }
        assert_eq!(t.load().await, Some(t.after.clone()), "{step}");
        t.assert_clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_metadata_failure_names_the_record_and_keeps_every_row() {
    for retry in [true, false] {
        let t = seeded().await;
        // The record exists, so it is updated in place: a torn write of its slot.
        t.fs.inject(Fault::once(FsOp::WriteInPlace, 1, EIO).on_paths_containing("AAPL.csv.meta"));
        let err = t.persist_new().await.expect_err("an unrecorded primary write is an error");
        assert_eq!(t.fs.injected(), 1);
        match &err {
            StorageError::Io { step: IoStep::WriteMetadata, path, .. } => {
                assert!(path.to_string_lossy().ends_with("AAPL.csv.meta"), "{}", path.display())
            }
            other => panic!("expected a WriteMetadata error, got {other:?}"),
        }
        // The CSV was replaced before its record failed, so it no longer matches the record;
        // the Parquet copy was not touched and still proves the previous content, which is
        // what loads (the caller was told the batch is not stored).
        let (csv, parquet) = common::paths(&t.vault, &t.series);
        assert!(common::read(&csv) != t.csv_bytes);
        assert!(common::read(&parquet) == t.parquet_bytes);
        assert_eq!(t.load().await, Some(t.before.clone()));
        t.assert_unhealthy(&[IssueKind::ChecksumMismatch]).await;
        t.fs.clear();
        if retry {
            t.persist_new().await.unwrap();
            assert_eq!(t.load().await, Some(t.after.clone()));
        } else {
            let report = t.vault.recover(Scope::All).await.unwrap();
            assert!(report.unrecoverable.is_empty(), "{report:?}");
            assert_eq!(report.actions.len(), 1, "{report:?}");
            assert_eq!(report.actions[0].path, csv, "{report:?}");
            assert_eq!(t.load().await, Some(t.before.clone()));
        }
        t.assert_clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_metadata_failure_is_a_failed_secondary_and_is_repaired() {
    for retry in [true, false] {
        let t = seeded().await;
        // A failed fdatasync after the slot was written (the record then reads as before).
        t.fs.inject(Fault::once(FsOp::SyncInPlace, 1, EIO).on_paths_containing("AAPL.parquet.meta"));
        let receipt = t.persist_new().await.expect("the primary copy was written and recorded");
        assert_eq!(t.fs.injected(), 1);
        match &receipt.secondary {
            Some(SecondaryStatus::Failed { format, error, .. }) => {
                assert_eq!(format, "parquet");
                assert!(error.contains("write metadata") && error.contains("AAPL.parquet.meta"), "{error}");
            }
            other => panic!("expected secondary Failed, got {other:?}"),
        }
        assert_eq!(t.load().await, Some(t.after.clone()));
        t.assert_unhealthy(&[IssueKind::ChecksumMismatch, IssueKind::Inconsistent]).await;
        t.fs.clear();
        if retry {
            let receipt = t.persist_new().await.unwrap();
            assert!(matches!(receipt.secondary, Some(SecondaryStatus::Written { .. })), "{receipt:?}");
        } else {
            let report = t.vault.recover(Scope::All).await.unwrap();
            assert!(report.unrecoverable.is_empty(), "{report:?}");
        }
        assert_eq!(t.load().await, Some(t.after.clone()));
        t.assert_clean().await;
    }
}

/// The first write of a series whose CSV record cannot be created fails, and nothing of it
/// is served afterwards: without a record to disagree with, the published CSV would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_first_csv_record_stores_nothing() {
    for step in [FsOp::CreateTemp, FsOp::FsyncTemp, FsOp::Rename] {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::real().with_fault(Fault::once(step, 1, EIO).on_paths_containing("NEW.csv.meta"));
        let vault = StorageFactory::open_with_fs(&common::config(dir.path()), Arc::new(fs.clone())).unwrap();
        let s = stock("NEW");
        let (before, _, _) = batches();
        let err = vault.manager().persist(&before, &s, PersistOptions::default(), &common::ctx()).await.unwrap_err();
        assert_eq!(fs.injected(), 1, "{step}");
        assert!(err.to_string().contains("write metadata") && err.to_string().contains("NEW.csv.meta"), "{err}");
        assert_eq!(common::served(vault.manager(), &s).await, None, "{step}: a refused first write is served");
        let (csv, parquet) = common::paths(&vault, &s);
        assert!(!csv.exists() && !parquet.exists(), "{step}: files of a refused write remain");
        let report = vault.verify(Scope::All, false).await.unwrap();
        assert!(report.issues.iter().all(|i| i.kind == IssueKind::StaleLock), "{step}: {:#?}", report.issues);
        vault.manager().persist(&before, &s, PersistOptions::default(), &common::ctx()).await.unwrap();
        assert_eq!(common::served(vault.manager(), &s).await, Some(before.clone()), "{step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_first_csv_write_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::real().with_fault(Fault::once(FsOp::WriteTemp, 1, ENOSPC).on_paths_containing(".NEW.csv.tmp."));
    let vault = StorageFactory::open_with_fs(&common::config(dir.path()), Arc::new(fs.clone())).unwrap();
    let s = stock("NEW");
    let (before, _, _) = batches();
    let err = vault.manager().persist(&before, &s, PersistOptions::default(), &common::ctx()).await.unwrap_err();
    assert!(matches!(err, StorageError::Io { step: IoStep::WriteTemp, .. }), "{err:?}");
    assert_eq!(common::served(vault.manager(), &s).await, None, "a failed first write must not be served");
    let (_, parquet) = common::paths(&vault, &s);
    assert!(!parquet.exists(), "the backup copy of a refused write exists");
    let report = vault.verify(Scope::All, false).await.unwrap();
    assert!(report.issues.iter().all(|i| i.kind == IssueKind::StaleLock), "{:#?}", report.issues);
}
