//! The store on object storage through the application: writers without locks racing on
//! object_store's `InMemory` store (whose conditional writes are atomic, so the retries
//! are proven under a true race), a writer stopped at each step of its write order, and a
//! store copied from disk into a bucket with plain uploads.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use barvault::{
    Bars, DualSettings, DualStorageManager, IssueKind, OpContext, PersistOptions, Scope, SecondaryStatus, SeriesKey,
    StorageConfig, StorageError, StorageFactory, ValidationPolicy, Vault,
};
use barvault_domain::{MergePolicy, merge};
use barvault_ports::conformance::{BASE_NS, DAY_NS, sample_bars, stock};
use barvault_ports::unreliable::{Injected, Op, UnreliableStore};
use barvault_ports::{FileMetadata, IoStep, MetadataStore, RecordList};
use barvault_s3::testing::MotoServer;
use barvault_s3::{Bucket, ConditionalWrites, ObjectBarStore, ObjectHousekeeping, ObjectMetadataStore};
use common::ctx;

fn config() -> StorageConfig {
    StorageConfig { validation: ValidationPolicy::Off, ..StorageConfig::with_output_directory("s3://memory/store") }
}

/// A vault over `bucket`, as one more machine would open it.
fn machine(bucket: &Bucket) -> Vault {
    StorageFactory::open_bucket(&config(), bucket.clone(), Arc::new(barvault::RealFs))
}

async fn load(vault: &Vault, s: &SeriesKey) -> Bars {
    vault.manager().load(s, None, &ctx()).await.expect("load").expect("stored")
}

async fn assert_clean(vault: &Vault, when: &str) {
    let report = vault.verify(Scope::All, true).await.expect("verify");
    assert!(report.is_clean(), "{when}: {:?}", report.issues);
}

/// Eight machines merge their own days into one series at once, three rounds: no day is
/// lost, the copies agree, and conflicts were met and retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_without_locks_lose_no_update() {
    let bucket = Bucket::in_memory("store");
    let s = stock("RACE");
    let first = machine(&bucket);
    first.manager().persist(&sample_bars(10, BASE_NS, DAY_NS, 1), &s, PersistOptions::default(), &ctx()).await.unwrap();
    let mut expected = sample_bars(10, BASE_NS, DAY_NS, 1);
    let mut retries = 0;
    for round in 0..3i64 {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8i64 {
            let vault = machine(&bucket);
            let bars = sample_bars(2, BASE_NS + (100 + round * 20 + w * 2) * DAY_NS, DAY_NS, (round * 8 + w) as u64);
            expected = merge(&expected, &bars, MergePolicy::KeepLast).unwrap().0;
            let s = s.clone();
            tasks.spawn(async move {
                let outcome = vault
                    .manager()
                    .persist_with_backup(&bars, &s, PersistOptions::default(), ValidationPolicy::Off, &ctx())
                    .await
                    .expect("a persist that only meets conflicts succeeds within its attempts");
                outcome.retries
            });
        }
        while let Some(r) = tasks.join_next().await {
            retries += r.unwrap();
        }
        assert_eq!(load(&first, &s).await, expected, "round {round}: an update was lost");
    }
    assert!(retries > 0, "24 writers in 3 rounds never met a conflict: the race was not run");
    assert_clean(&first, "after the races").await;
}

/// Records fail for one format a given number of times (a writer stopped there).
#[derive(Debug)]
struct FailingRecords {
    inner: Arc<dyn MetadataStore>,
    format: &'static str,
    left: AtomicUsize,
}

#[async_trait]
impl MetadataStore for FailingRecords {
    async fn record(&self, meta: &FileMetadata, ctx: &OpContext) -> Result<(), StorageError> {
        if meta.format == self.format
            && self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(StorageError::io(
                IoStep::WriteMetadata,
                &meta.file_path,
                std::io::Error::other("stopped here"),
            ));
        }
        self.inner.record(meta, ctx).await
    }

    async fn get(&self, s: &SeriesKey, f: &str, ctx: &OpContext) -> Result<Option<FileMetadata>, StorageError> {
        self.inner.get(s, f, ctx).await
    }

    async fn list(&self, ctx: &OpContext) -> Result<RecordList, StorageError> {
        self.inner.list(ctx).await
    }

    async fn remove(&self, s: &SeriesKey, f: &str, ctx: &OpContext) -> Result<bool, StorageError> {
        self.inner.remove(s, f, ctx).await
    }
}

/// The step a writer stops before.
#[derive(Debug, Clone, Copy)]
enum Stop {
    PrimaryCommit,
    PrimaryRecord,
    SecondaryCommit,
    SecondaryRecord,
}

/// A vault over `bucket` whose next write stops at `stop`.
fn stopping(bucket: &Bucket, stop: Stop) -> Vault {
    let csv = UnreliableStore::new(Arc::new(ObjectBarStore::new(bucket.clone(), barvault::CsvCodec)));
    let parquet =
        UnreliableStore::new(Arc::new(ObjectBarStore::new(bucket.clone(), barvault::ParquetCodec::default())));
    let (mut csv_fails, mut parquet_fails) = ("", "");
    match stop {
        Stop::PrimaryCommit => {
            csv.fail_once(Op::Commit, 1, Injected::Io(5));
        }
        Stop::SecondaryCommit => {
            parquet.fail_once(Op::Commit, 1, Injected::Io(5));
        }
        Stop::PrimaryRecord => csv_fails = "csv",
        Stop::SecondaryRecord => parquet_fails = "parquet",
    }
    let format = if csv_fails.is_empty() { parquet_fails } else { csv_fails };
    let records = Arc::new(ObjectMetadataStore::new(bucket.clone()));
    let metadata =
        Arc::new(FailingRecords { inner: records, format, left: AtomicUsize::new(usize::from(!format.is_empty())) });
    let settings = DualSettings { validation: ValidationPolicy::Off, ..DualSettings::default() }.lock_free();
    let manager = DualStorageManager::new(
        Arc::new(csv),
        Some(Arc::new(parquet)),
        metadata,
        Arc::new(ConditionalWrites),
        settings,
    )
    .with_base_dir("s3://memory/store");
    let housekeeping = Arc::new(ObjectHousekeeping::new(bucket.clone()));
    Vault::from_parts(config(), manager, housekeeping, Arc::new(barvault::RealFs))
}

/// A writer stopped at any step of its write order leaves a whole version readable (the
/// previous one until its primary is committed, its own from then on), verify names what
/// is inconsistent, and recover makes the store clean again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stopped_at_any_step_leaves_a_readable_version_that_recover_makes_whole() {
    for stop in [Stop::PrimaryCommit, Stop::PrimaryRecord, Stop::SecondaryCommit, Stop::SecondaryRecord] {
        let bucket = Bucket::in_memory("store");
        let s = stock("STOPPED");
        let healthy = machine(&bucket);
        let old = sample_bars(30, BASE_NS, DAY_NS, 1);
        healthy.manager().persist(&old, &s, PersistOptions::default(), &ctx()).await.unwrap();
        let update = sample_bars(5, BASE_NS + 30 * DAY_NS, DAY_NS, 2);
        let new = merge(&old, &update, MergePolicy::KeepLast).unwrap().0;
        let result = stopping(&bucket, stop).manager().persist(&update, &s, PersistOptions::default(), &ctx()).await;
        let (committed, issues) = match stop {
            Stop::PrimaryCommit => {
                assert!(result.is_err(), "{stop:?}");
                (&old, vec![])
            }
            Stop::PrimaryRecord => {
                assert!(result.is_err(), "{stop:?}");
                (&new, vec![IssueKind::ChecksumMismatch])
            }
            Stop::SecondaryCommit => {
                let receipt = result.expect("the primary is committed and recorded");
                assert!(matches!(receipt.secondary, Some(SecondaryStatus::Failed { .. })), "{stop:?}");
                (&new, vec![IssueKind::Inconsistent])
            }
            Stop::SecondaryRecord => {
                let receipt = result.expect("the primary is committed and recorded");
                assert!(matches!(receipt.secondary, Some(SecondaryStatus::Failed { .. })), "{stop:?}");
                (&new, vec![IssueKind::ChecksumMismatch])
            }
        };
        assert_eq!(&load(&healthy, &s).await, committed, "{stop:?}: the version read");
        let report = healthy.verify(Scope::All, false).await.unwrap();
        let kinds: Vec<IssueKind> = report.issues.iter().map(|i| i.kind).collect();
        for kind in &issues {
            assert!(kinds.contains(kind), "{stop:?}: verify names {kind:?}: {:?}", report.issues);
        }
        if issues.is_empty() {
            assert!(report.is_clean(), "{stop:?}: {:?}", report.issues);
        }
        let recovered = healthy.recover(Scope::All).await.unwrap();
        assert!(recovered.unrecoverable.is_empty(), "{stop:?}: {recovered:?}");
        assert_clean(&healthy, &format!("{stop:?}, after recover")).await;
        assert_eq!(&load(&healthy, &s).await, committed, "{stop:?}: recover kept the committed version");
        // And the next write merges onto it as usual.
        let more = sample_bars(1, BASE_NS + 90 * DAY_NS, DAY_NS, 3);
        healthy.manager().persist(&more, &s, PersistOptions::default(), &ctx()).await.unwrap();
        assert_eq!(load(&healthy, &s).await, merge(committed, &more, MergePolicy::KeepLast).unwrap().0, "{stop:?}");
        assert_clean(&healthy, &format!("{stop:?}, after the next write")).await;
    }
}

/// Every file below `dir` (lock and spare files included): its path relative to `dir`, and
/// its bytes.
fn files_below(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let relative = |p: &Path| p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
    common::files_below(dir).into_iter().map(|p| (relative(&p), std::fs::read(&p).unwrap())).collect()
}

/// Every file of a local store uploaded as it is (`aws s3 cp --recursive`: lock and spare
/// files included, one record in the legacy JSON form): the bucket opens, verifies clean,
/// lists and loads the same series, and takes the next write.
async fn copy_of_a_disk_store_verifies_clean(bucket: Bucket) {
    let dir = tempfile::tempdir().unwrap();
    let local = common::vault(dir.path());
    let daily = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/daily");
    let mut series = Vec::new();
    for name in ["NVDA", "ORCL"] {
        let s = stock(name);
        let options = barvault::ImportOptions {
            validation: ValidationPolicy::Strict,
            mode: barvault::WriteMode::Merge,
            policy: MergePolicy::KeepLast,
            ..barvault::ImportOptions::default()
        };
        local.import_file(&daily.join(format!("{name}.csv")), &s, options, &ctx()).await.unwrap();
        series.push(s);
    }
    let mut uploaded = 0;
    for (relative, bytes) in files_below(dir.path()) {
        if relative.ends_with("ORCL.parquet.meta") {
            // As an earlier version wrote it: one JSON document named `.json`.
            let (meta, _) = barvault_metadata::decode_record_file(&bytes, false).unwrap();
            let json = serde_json::to_vec_pretty(&meta).unwrap();
            bucket.upload(&relative.replace(".meta", ".json"), json).await;
        } else {
            bucket.upload(&relative, bytes).await;
        }
        uploaded += 1;
    }
    assert!(uploaded >= 8, "{uploaded} files uploaded");
    let remote = machine(&bucket);
    assert_clean(&remote, "a copy of a disk store").await;
    let listed: Vec<String> = remote.list(None, None, &ctx()).await.unwrap().into_iter().map(|s| s.symbol).collect();
    assert_eq!(listed, ["NVDA", "ORCL"]);
    for s in &series {
        assert_eq!(load(&remote, s).await, load(&local, s).await, "{s}");
    }
    let more = sample_bars(3, BASE_NS + 4000 * DAY_NS, DAY_NS, 9);
    remote.manager().persist(&more, &series[1], PersistOptions::default(), &ctx()).await.unwrap();
    assert_clean(&remote, "after a write to the copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_store_copied_into_memory_verifies_clean() {
    copy_of_a_disk_store_verifies_clean(Bucket::in_memory("copied/store")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_store_copied_into_a_bucket_verifies_clean() {
    let Some(server) = MotoServer::start() else { return };
    copy_of_a_disk_store_verifies_clean(server.bucket("copied", "desk/store")).await;
}

/// The kinds and details `verify --deep` reports, in order.
async fn deep_issues(vault: &Vault) -> Vec<(IssueKind, String)> {
    let report = vault.verify(Scope::All, true).await.expect("verify");
    report.issues.into_iter().map(|i| (i.kind, i.detail)).collect()
}

/// The `.backup` check of `verify --deep` with locks and without them (object storage),
/// on the same planted file. Without locks a writer that lost the race for the object has
/// already copied the winner's version to the backup, a previous version whose checksum no
/// record keeps, so there a backup only has to parse; with locks the backup must be the
/// version its record names (or the recorded file itself). A backup that does not parse is
/// a `bad_backup` in both. (Until now this was shown only by the eight-writer race.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_another_version_only_has_to_parse_without_locks() {
    let s = stock("BACKUP");
    let dir = tempfile::tempdir().unwrap();
    let local = common::vault(dir.path());
    let csv = dir.path().join(DualStorageManager::relative_path(&s, "csv"));
    let backup = dir.path().join(format!("{}.backup", DualStorageManager::relative_path(&s, "csv")));
    let mut older = None;
    for (round, n) in [10usize, 12, 14].into_iter().enumerate() {
        let bars = sample_bars(n, BASE_NS, DAY_NS, round as u64 + 1);
        local.manager().persist(&bars, &s, PersistOptions::default(), &ctx()).await.unwrap();
        // The first version: older than the backup the third write leaves (the second).
        older.get_or_insert_with(|| std::fs::read(&csv).unwrap());
    }
    let older = older.unwrap();
    assert_ne!(std::fs::read(&backup).unwrap(), older, "the backup is the second version, not the first");
    assert_clean(&local, "three writes").await;
    // What is planted as the backup, and whether it parses.
    let planted = [("older", older, true), ("unparsable", b"not a bar file\n".to_vec(), false)];
    for (what, bytes, parses) in planted {
        std::fs::write(&backup, &bytes).unwrap();
        let with_locks = deep_issues(&local).await;
        assert!(
            matches!(&with_locks[..], [(IssueKind::BadBackup, d)] if d.starts_with("backup has MD5")),
            "{what} backup, with locks: {with_locks:?}"
        );
        let bucket = Bucket::in_memory("planted");
        for (relative, bytes) in files_below(dir.path()) {
            bucket.upload(&relative, bytes).await;
        }
        let without_locks = deep_issues(&machine(&bucket)).await;
        if parses {
            assert!(without_locks.is_empty(), "{what} backup, without locks: {without_locks:?}");
        } else {
            assert!(
                matches!(&without_locks[..], [(IssueKind::BadBackup, d)] if d.starts_with("backup does not parse")),
                "{what} backup, without locks: {without_locks:?}"
            );
        }
    }
}

#[test]
fn an_s3_address_that_does_not_parse_is_a_configuration_error() {
    let config = StorageConfig::with_output_directory("s3://No_Such/x");
    let err = StorageFactory::open(&config).unwrap_err();
    assert!(matches!(err, StorageError::Config { .. }), "{err}");
    assert!(err.to_string().contains("bucket name"), "{err}");
}

/// A writer that meets a conflict on every attempt gives up after `max_attempts` with the
/// conflict (the CLI's exit 4), having waited between attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_on_every_attempt_end_in_a_conflict_after_the_configured_attempts() {
    let bucket = Bucket::in_memory("store");
    let csv = UnreliableStore::new(Arc::new(ObjectBarStore::new(bucket.clone(), barvault::CsvCodec)));
    csv.fail_from(Op::Stage, 1, Injected::Conflict);
    let settings = DualSettings {
        validation: ValidationPolicy::Off,
        max_attempts: 4,
        retry_backoff: std::time::Duration::from_millis(20),
        ..DualSettings::default()
    }
    .lock_free();
    assert_eq!(settings.max_attempts, 20, "lock-free settings raise the attempts to 20");
    let settings = DualSettings { max_attempts: 4, ..settings };
    let metadata = Arc::new(ObjectMetadataStore::new(bucket.clone()));
    let manager = DualStorageManager::new(Arc::new(csv.clone()), None, metadata, Arc::new(ConditionalWrites), settings);
    let started = std::time::Instant::now();
    let err =
        manager.persist(&sample_bars(3, BASE_NS, DAY_NS, 1), &stock("BUSY"), PersistOptions::default(), &ctx()).await;
    let err = err.expect_err("every attempt met a conflict");
    assert!(err.is_version_conflict(), "{err}");
    assert_eq!(csv.calls(Op::Stage), 4, "one stage per attempt");
    // Three pauses of at least 10, 20 and 40 ms (half of 20 × 1, 2, 4).
    assert!(started.elapsed() >= std::time::Duration::from_millis(70), "{:?}", started.elapsed());
}
