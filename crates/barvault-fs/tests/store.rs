//! FileStore and FileLocks: the ports' conformance suites, lock timeouts and the lock
//! inode check, failures through FaultyFs, damaged files.

mod common;

use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use barvault_domain::{MergePolicy, Period};
use barvault_fs::{
    Fault, FaultyFs, FileLocks, FileStore, Fs, FsFile, FsInPlace, Layout, LockScope, RealFs, parse_temp_name,
};
use barvault_ports::{BarStore, IoStep, OpContext, PersistOptions, StorageError, conformance};
use common::{TextCodec, bars_with, stock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path());
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_without_backups_on_a_faultless_faulty_fs() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyFs::real());
    let store = FileStore::builder(dir.path(), TextCodec).fs(faulty.clone()).keep_backups(false).build().unwrap();
    conformance::run_all(&store).await;
    assert!(faulty.calls(IoStep::FsyncDir) > 0 && faulty.calls(IoStep::Lock) > 0);
    assert_eq!(faulty.calls(IoStep::BackupLink), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_conformance_for_both_scopes() {
    let dir = tempfile::tempdir().unwrap();
    for scope in [LockScope::Format, LockScope::Series] {
        let locks = FileLocks::new(Arc::new(RealFs), Layout::new(dir.path(), "bvt").unwrap(), scope);
        conformance::locks_run_all(&locks).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_makes_persist_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(200);
    let store = FileStore::builder(dir.path(), TextCodec).lock_timeout(timeout).build().unwrap();
    let s = stock("HELD", Period::D1);
    let bars = bars_with(&[1, 2, 3], |t| t as f64);
    let guard = store.locks().lock_blocking(&s, Duration::from_secs(1)).unwrap();
    let start = Instant::now();
    match store.persist(&bars, &s, PersistOptions::default(), &OpContext::new()).await {
        Err(StorageError::Locked { series, path, waited }) => {
            assert_eq!(series, s);
            assert_eq!(path, store.layout().lock_path(&s));
            assert!(waited >= timeout && start.elapsed() >= timeout, "{waited:?}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(!store.exists(&s, &OpContext::new()).await.unwrap());
    drop(guard);
    let r = store.persist(&bars, &s, PersistOptions::default(), &OpContext::new()).await.unwrap();
    assert!(r.written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_lock_removal_waits_for_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path());
    let s = stock("STALE", Period::H1);
    let locks = store.locks().clone();
    let path = locks.path_of(&s);
    assert!(!locks.remove_stale_lock(&s, Duration::from_millis(10)).await.unwrap(), "no file yet");
    let guard = locks.lock_blocking(&s, Duration::from_secs(1)).unwrap();
    let refused = locks.remove_stale_lock(&s, Duration::from_millis(100)).await;
    assert!(matches!(refused, Err(StorageError::Locked { .. })), "{refused:?}");
    assert!(path.exists(), "a held lock file was removed");
    drop(guard);
    assert!(locks.remove_stale_lock(&s, Duration::from_millis(100)).await.unwrap());
    assert!(!path.exists());
    let _again = locks.lock_blocking(&s, Duration::from_millis(100)).unwrap();
    assert!(path.exists());
}

/// Real filesystem, except that the first lock file opened is unlinked right after the
/// open: the race where a cleanup removes the lock file between a waiter's open and its lock.
#[derive(Debug, Default)]
struct UnlinkFirstLock {
    opens: AtomicU64,
}

impl Fs for UnlinkFirstLock {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        RealFs.create_new(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        RealFs.hard_link(original, link)
    }
    fn copy(&self, from: &Path, to: &Path) -> io::Result<u64> {
        RealFs.copy(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<File> {
        RealFs.open_read(path)
    }
    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        RealFs.metadata(path)
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.read_dir(dir)
    }
    fn open_lock(&self, path: &Path) -> io::Result<File> {
        let file = RealFs.open_lock(path)?;
        if self.opens.fetch_add(1, Ordering::SeqCst) == 0 {
            std::fs::remove_file(path)?;
        }
        Ok(file)
    }
    fn open_in_place(&self, path: &Path) -> io::Result<Box<dyn FsInPlace>> {
        RealFs.open_in_place(path)
    }
}

#[test]
fn a_lock_on_an_unlinked_lock_file_is_not_trusted() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(UnlinkFirstLock::default());
    let locks = FileLocks::new(fs.clone(), Layout::new(dir.path(), "bvt").unwrap(), LockScope::Format);
    let s = stock("RACE", Period::D1);
    let guard = locks.lock_blocking(&s, Duration::from_secs(1)).unwrap();
    assert_eq!(fs.opens.load(Ordering::SeqCst), 2, "the lock on the unlinked file was kept");
    // The guard holds the file the path names now, so a newcomer is excluded.
    let named = std::fs::metadata(guard.path()).unwrap();
    let other = FileLocks::new(Arc::new(RealFs), Layout::new(dir.path(), "bvt").unwrap(), LockScope::Format);
    assert!(matches!(other.lock_blocking(&s, Duration::from_millis(30)), Err(StorageError::Locked { .. })));
    assert_eq!(std::fs::metadata(guard.path()).unwrap().ino(), named.ino());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_failures_keep_the_stored_series() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyFs::real());
    let store = FileStore::builder(dir.path(), TextCodec).fs(faulty.clone()).build().unwrap();
    let s = stock("FAULT", Period::M5);
    let ctx = OpContext::with_correlation_id(Some("fault-test"));
    let v1 = bars_with(&(0..500).collect::<Vec<_>>(), |t| t as f64);
    store.persist(&v1, &s, PersistOptions::default(), &ctx).await.unwrap();
    let v2 = bars_with(&(250..5000).collect::<Vec<_>>(), |t| -(t as f64));
    for step in [IoStep::CreateTemp, IoStep::WriteTemp, IoStep::FsyncTemp, IoStep::BackupLink, IoStep::Rename] {
        for errno in [libc::ENOSPC, libc::EIO, libc::EACCES] {
            // Without spares, so that every write creates its temp file and swaps no names
            // (durable.rs covers the recycling steps' own faults).
            faulty.inject(Fault::from_nth(IoStep::Recycle, 1, libc::EOPNOTSUPP));
            faulty.inject(Fault::from_nth(step, 1, errno));
            let err = store.persist(&v2, &s, PersistOptions::default(), &ctx).await.unwrap_err();
            faulty.clear();
            assert!(
                matches!(&err, StorageError::Io { source, .. } if source.raw_os_error() == Some(errno)),
                "{step:?}: {err:?}"
            );
            assert_eq!(store.load(&s, None, &ctx).await.unwrap(), Some(v1.clone()), "{step:?} {errno}");
            let scan = store.scan().await.unwrap();
            assert!(scan.temps.is_empty(), "{step:?}: {:?}", scan.temps);
        }
    }
    let r = store.persist(&v2, &s, PersistOptions::default(), &ctx).await.unwrap();
    assert!(r.written && r.backup_created);
    assert_eq!(r.merge.existing_rows, 500);
    assert_eq!(r.correlation_id, "fault-test");
    let on_disk = std::fs::read(store.path_of(&s)).unwrap();
    assert_eq!(r.file_size, Some(on_disk.len() as u64));
    let backup = store.read_path(&store.backup_path_of(&s), None).await.unwrap();
    assert_eq!(backup.ts, v1.timestamps());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_is_never_merged_over_but_can_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path());
    let s = stock("BROKEN", Period::D1);
    let ctx = OpContext::new();
    store.persist(&bars_with(&[1, 2, 3], |t| t as f64), &s, PersistOptions::default(), &ctx).await.unwrap();
    let path = store.path_of(&s);
    let mut damaged = std::fs::read(&path).unwrap();
    damaged.truncate(damaged.len() - 8);
    std::fs::write(&path, &damaged).unwrap();
    let err = store.persist(&bars_with(&[4], |_| 4.0), &s, PersistOptions::default(), &ctx).await.unwrap_err();
    assert!(err.is_data_error(), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), damaged, "merge wrote over a damaged file");
    assert!(store.load(&s, None, &ctx).await.unwrap_err().is_data_error());
    let fresh = bars_with(&[10, 20], |t| t as f64);
    let r = store.persist(&fresh, &s, PersistOptions::replace(), &ctx).await.unwrap();
    assert!(r.written && r.backup_created);
    assert_eq!(store.load(&s, None, &ctx).await.unwrap(), Some(fresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_name_the_series_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path());
    let s = stock("CONFL", Period::D1);
    let ctx = OpContext::new();
    let a = bars_with(&[1, 2], |t| t as f64);
    store.persist(&a, &s, PersistOptions::default(), &ctx).await.unwrap();
    let before = std::fs::read(store.path_of(&s)).unwrap();
    let b = bars_with(&[2, 3], |t| t as f64 + 0.5);
    let err = store.persist(&b, &s, PersistOptions::merge(MergePolicy::ErrorOnConflict), &ctx).await.unwrap_err();
    assert!(matches!(&err, StorageError::Conflict { series, .. } if *series == s), "{err:?}");
    assert_eq!(std::fs::read(store.path_of(&s)).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_ignores_other_formats_and_remove_takes_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path());
    let ctx = OpContext::new();
    let s = stock("LISTED", Period::W1);
    store.persist(&bars_with(&[1], |_| 1.0), &s, PersistOptions::default(), &ctx).await.unwrap();
    store.persist(&bars_with(&[2], |_| 2.0), &s, PersistOptions::default(), &ctx).await.unwrap();
    store.persist(&bars_with(&[3], |_| 3.0), &s, PersistOptions::default(), &ctx).await.unwrap();
    assert!(store.layout().spare_path(&s).exists(), "the third write keeps the first version's inode as a spare");
    std::fs::write(store.layout().series_dir(&s).join("OTHER.csv"), b"x").unwrap();
    assert_eq!(store.list(&ctx).await.unwrap(), vec![s.clone()]);
    assert!(store.backup_path_of(&s).exists());
    let raw = store.read_path(&store.path_of(&s), None).await.unwrap();
    assert_eq!(raw.ts, vec![1, 2, 3]);
    assert!(matches!(store.read_path(&dir.path().join("none.bvt"), None).await, Err(StorageError::NotFound { .. })));
    assert!(store.remove(&s, &ctx).await.unwrap());
    assert!(!store.backup_path_of(&s).exists());
    assert!(!store.layout().spare_path(&s).exists(), "remove leaves the spare behind");
    assert_eq!(store.list(&ctx).await.unwrap(), vec![]);
    let leftovers: Vec<String> =
        common::names_in(&store.layout().series_dir(&s)).into_iter().filter(|n| parse_temp_name(n).is_some()).collect();
    assert!(leftovers.is_empty());
}
