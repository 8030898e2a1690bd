//! FileStore and FileLocks: the ports' conformance suites, conditional commits under the
//! series lock, the lock inode check, failures through FaultyFs, damaged files.

mod common;

use barvault_ports::BarStoreExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barvault_domain::Period;
use barvault_fs::{Fault, FaultyFs, FileLocks, FileStore, FsHousekeeping, FsOp, RealFs};
use barvault_ports::{
    BarStore, EntryKind, Housekeeping, LoadOptions, OpContext, PutOptions, Revision, StorageError, Which, conformance,
};
use common::{TextCodec, bars_with, stock};

fn load_all(
    store: &FileStore<TextCodec>,
    s: &barvault_domain::SeriesKey,
) -> impl std::future::Future<Output = Option<barvault_domain::Bars>> {
    let (store, s) = (store.clone(), s.clone());
    async move { store.load(&s, &LoadOptions::default(), &OpContext::new()).await.unwrap().map(|l| l.into_bars()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path());
    assert!(store.capabilities().atomic_updates, "a store alone locks its commits");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_locked_by_the_caller_without_backups_on_a_faultless_faulty_fs() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyFs::real());
    let store = FileStore::builder(dir.path(), TextCodec)
        .fs(faulty.clone())
        .keep_backups(false)
        .locked_by_caller()
        .build()
        .unwrap();
    assert!(!store.capabilities().atomic_updates && !store.capabilities().backups);
    conformance::run_all(&store).await;
    assert!(faulty.calls(FsOp::FsyncDir) > 0);
    assert_eq!(faulty.calls(FsOp::Lock), 0, "a store locked by its caller takes no lock");
    assert_eq!(faulty.calls(FsOp::BackupLink), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let locks = FileLocks::new(Arc::new(RealFs), dir.path());
    conformance::locks_run_all(&locks).await;
}

/// A store alone takes the one series lock (`.{SYMBOL}.lock`) around its commit: a
/// commit waits for a holder and gives up with `Locked` naming that file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_series_lock_makes_a_commit_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(200);
    let store = FileStore::builder(dir.path(), TextCodec).lock_timeout(timeout).build().unwrap();
    let s = stock("HELD", Period::D1);
    let bars = bars_with(&[1, 2, 3], |t| t as f64);
    let locks = FileLocks::new(Arc::new(RealFs), dir.path());
    let guard = locks.lock_blocking(&s, Duration::from_secs(1)).unwrap();
    let start = Instant::now();
    let ctx = OpContext::new();
    match store.persist(&s, &Revision::whole(bars.clone()), &PutOptions::create(), &ctx).await {
        Err(StorageError::Locked { series, path, waited }) => {
            assert_eq!(series, s);
            assert_eq!(path, store.layout().series_lock_path(&s));
            assert!(path.file_name().is_some_and(|n| n == ".HELD.lock"), "{}", path.display());
            assert!(waited >= timeout && start.elapsed() >= timeout, "{waited:?}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(store.file_info(&s, &ctx).await.unwrap().is_none());
    assert!(common::names_in(&store.layout().series_dir(&s)).iter().all(|n| !n.contains(".tmp.")), "temp file left");
    drop(guard);
    let r = store.persist(&s, &Revision::whole(bars), &PutOptions::create(), &ctx).await.unwrap();
    assert_eq!(r.rows, 3);
}

#[test]
fn stale_lock_removal_waits_for_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let locks = FileLocks::new(Arc::new(RealFs), dir.path());
    let s = stock("STALE", Period::H1);
    let path = locks.path_of(&s);
    assert!(!locks.remove_stale_lock_blocking(&s, Duration::from_millis(10)).unwrap(), "no file yet");
    let guard = locks.lock_blocking(&s, Duration::from_secs(1)).unwrap();
    let other = FileLocks::new(Arc::new(RealFs), dir.path());
    let refused = other.remove_stale_lock_blocking(&s, Duration::from_millis(100));
    assert!(matches!(refused, Err(StorageError::Locked { .. })), "{refused:?}");
    assert!(path.exists(), "a held lock file was removed");
    drop(guard);
    assert!(other.remove_stale_lock_blocking(&s, Duration::from_millis(100)).unwrap());
    assert!(!path.exists());
    let _again = locks.lock_blocking(&s, Duration::from_millis(100)).unwrap();
    assert!(path.exists());
}

/// The race where a cleanup removes the lock file between a waiter's open and its lock:
/// the lock taken on the unlinked file is not trusted, the file the path names is locked.
#[test]
fn a_lock_on_an_unlinked_lock_file_is_not_trusted() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::real());
    fs.after_call(FsOp::Lock, 1, Arc::new(|path| std::fs::remove_file(path).expect("unlink the lock file")));
    let locks = FileLocks::new(fs.clone(), dir.path());
    let s = stock("RACE", Period::D1);
    let guard = locks.lock_blocking(&s, Duration::from_secs(1)).unwrap();
    assert_eq!(fs.calls(FsOp::Lock), 2, "the lock on the unlinked file was kept");
    // The guard holds the file the path names now, so a newcomer is excluded.
    let named = std::fs::metadata(guard.path()).unwrap();
    let other = FileLocks::new(Arc::new(RealFs), dir.path());
    assert!(matches!(other.lock_blocking(&s, Duration::from_millis(30)), Err(StorageError::Locked { .. })));
    assert_eq!(std::fs::metadata(guard.path()).unwrap().ino(), named.ino());
}

/// A lock file planted as a symbolic link to a file outside the store is refused at once
/// with a message that says so, and the outside file is not touched.
#[test]
fn a_symlinked_lock_file_is_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, b"precious").unwrap();
    let base = dir.path().join("store");
    let locks = FileLocks::new(Arc::new(RealFs), &base);
    let s = stock("LINKED", Period::D1);
    let path = locks.path_of(&s);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &path).unwrap();
    let start = Instant::now();
    let err = locks.lock_blocking(&s, Duration::from_secs(5)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1), "waited {:?} on itself", start.elapsed());
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
}

/// An I/O error at any step of a write fails it with that error, leaves the stored
/// version and leaves no temp file; the next write succeeds with a backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_failures_keep_the_stored_version() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyFs::real());
    let store = FileStore::builder(dir.path(), TextCodec).fs(faulty.clone()).build().unwrap();
    let housekeeping = FsHousekeeping::new(dir.path(), faulty.clone(), Duration::from_secs(1));
    let s = stock("FAULT", Period::M5);
    let ctx = OpContext::with_correlation_id(Some("fault-test"));
    let v1 = bars_with(&(0..500).collect::<Vec<_>>(), |t| t as f64);
    let mut version =
        store.persist(&s, &Revision::whole(v1.clone()), &PutOptions::create(), &ctx).await.unwrap().info.version;
    let v2 = bars_with(&(250..5000).collect::<Vec<_>>(), |t| -(t as f64));
    for step in [FsOp::CreateTemp, FsOp::WriteTemp, FsOp::FsyncTemp, FsOp::BackupLink, FsOp::Rename] {
        for errno in [libc::ENOSPC, libc::EIO, libc::EACCES] {
            // Without spares, so that every write creates its temp file and swaps no names
            // (durable.rs covers the recycling steps' own faults).
            faulty.inject(Fault::from_nth(FsOp::Recycle, 1, libc::EOPNOTSUPP));
            faulty.inject(Fault::from_nth(step, 1, errno));
            let update = PutOptions::update(version.clone());
            let err = store.persist(&s, &Revision::whole(v2.clone()), &update, &ctx).await.unwrap_err();
            faulty.clear();
            assert!(
                matches!(&err, StorageError::Io { source, .. } if source.raw_os_error() == Some(errno)),
                "{step:?}: {err:?}"
            );
            assert_eq!(load_all(&store, &s).await, Some(v1.clone()), "{step:?} {errno}");
            let survey = housekeeping.survey(&ctx).await.unwrap();
            assert_eq!(survey.of(EntryKind::Leftover).count(), 0, "{step:?}: {survey:?}");
            // A failed link of the backup may have changed the file's change time: the
            // version is read again, as a caller that got an error does.
            version = store.file_info(&s, &ctx).await.unwrap().unwrap().version;
        }
    }
    let r = store.persist(&s, &Revision::whole(v2.clone()), &PutOptions::update(version), &ctx).await.unwrap();
    assert!(r.backup_created);
    let on_disk = std::fs::read(store.path_of(&s)).unwrap();
    assert_eq!(r.info.size, on_disk.len() as u64);
    let backup = store.load(&s, &LoadOptions::default().which(Which::Backup), &ctx).await.unwrap().unwrap();
    assert_eq!(backup.into_bars(), v1);
}

/// A damaged file loads as a data error; a token read before the damage is stale (the
/// file changed), so no update can be built on it; an overwrite repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_is_a_data_error_and_a_token_from_before_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path());
    let s = stock("BROKEN", Period::D1);
    let ctx = OpContext::new();
    let v = store.persist(&s, &Revision::whole(bars_with(&[1, 2, 3], |t| t as f64)), &PutOptions::create(), &ctx).await;
    let v = v.unwrap().info.version;
    let path = store.path_of(&s);
    let mut damaged = std::fs::read(&path).unwrap();
    damaged.truncate(damaged.len() - 8);
    std::fs::write(&path, &damaged).unwrap();
    let err = store.load(&s, &LoadOptions::default(), &ctx).await.unwrap_err();
    assert!(err.is_data_error(), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    let late = store.persist(&s, &Revision::whole(bars_with(&[4], |_| 4.0)), &PutOptions::update(v), &ctx).await;
    assert!(matches!(late, Err(StorageError::VersionConflict { .. })), "{late:?}");
    assert_eq!(std::fs::read(&path).unwrap(), damaged, "an update was built on a file that changed");
    let fresh = bars_with(&[10, 20], |t| t as f64);
    store.persist(&s, &Revision::whole(fresh.clone()), &PutOptions::overwrite(), &ctx).await.unwrap();
    assert_eq!(load_all(&store, &s).await, Some(fresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_ignores_other_formats_and_remove_takes_the_backup_and_the_spare() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store(dir.path());
    let ctx = OpContext::new();
    let s = stock("LISTED", Period::W1);
    for i in 1..=3 {
        store
            .persist(&s, &Revision::whole(bars_with(&[i], |t| t as f64)), &PutOptions::overwrite(), &ctx)
            .await
            .unwrap();
    }
    assert!(store.layout().spare_path(&s).exists(), "the third write keeps the first version's inode as a spare");
    std::fs::write(store.layout().series_dir(&s).join("OTHER.csv"), b"x").unwrap();
    assert_eq!(store.list(&ctx).await.unwrap(), vec![s.clone()]);
    assert!(store.backup_path_of(&s).exists());
    assert!(store.remove(&s, &ctx).await.unwrap());
    assert!(!store.backup_path_of(&s).exists());
    assert!(!store.layout().spare_path(&s).exists(), "remove leaves the spare behind");
    assert_eq!(store.list(&ctx).await.unwrap(), vec![]);
    let leftovers: Vec<String> = common::names_in(&store.layout().series_dir(&s))
        .into_iter()
        .filter(|n| barvault_fs::parse_temp_name(n).is_some())
        .collect();
    assert!(leftovers.is_empty());
}
