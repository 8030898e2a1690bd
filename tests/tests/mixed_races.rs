//! Readers and maintenance meeting a write in progress, made deterministic: the test holds
//! a series' lock the way a writer does and puts the store into the state a writer leaves
//! between its commit and its record (a copy renamed into place, its record not yet
//! written), starts `verify`, a load or `cleanup` from another vault over the same
//! directory, and only then finishes the "write" (the remaining copy and the records) and
//! releases the lock. What each one reports or keeps must be the committed state, never
//! what the half-way moment looked like (docs/RELIABILITY.md, guarantee 26).
//!
//! The finished write is taken from a copy of the store on which the same write really
//! ran, so every byte put into place is one barvault wrote.

mod common;

use std::path::Path;
use std::time::Duration;

use barvault::{Bars, CleanupOptions, Instrument, Period, PersistOptions, Scope, SeriesKey, StorageFactory, Vault};
use common::{config, ctx, paths, vault};

const MINUTE: i64 = 60_000_000_000;
const START: i64 = 1_704_186_000_000_000_000; // 2024-01-02 09:00 UTC

fn series() -> SeriesKey {
    SeriesKey::new(Instrument::stock("RACE").unwrap(), Period::M1)
}

/// Minute bars `lo..hi`; `tag` changes every value, so a revision of the same minutes is
/// a different version.
fn minutes(lo: usize, hi: usize, tag: usize) -> Bars {
    let ts: Vec<i64> = (lo..hi).map(|i| START + i as i64 * MINUTE).collect();
    let px: Vec<f64> = (lo..hi).map(|i| 100.0 + ((i + 7 * tag) * 37 % 1000) as f64 * 0.01).collect();
    let vol: Vec<f64> = (lo..hi).map(|i| ((i + tag) * 13 % 5000) as f64).collect();
    Bars::new(ts, px.clone(), px.clone(), px.clone(), px, vol, vec![]).unwrap()
}

async fn persist(v: &Vault, bars: &Bars) {
    v.manager().persist(bars, &series(), PersistOptions::default(), &ctx()).await.unwrap();
}

async fn stored(v: &Vault) -> Bars {
    v.manager().load_with_fallback(&series(), None, &ctx()).await.unwrap().expect("stored bars")
}

/// Every file under `from` (lock files aside) copied to the same place under `to`, each
/// through a temp file and a rename, as a writer puts a file into place.
fn put_into_place(from: &Path, to: &Path, only: Option<&Path>) {
    for entry in common::files_below(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let name = rel.file_name().unwrap().to_string_lossy();
        if name.ends_with(".lock") || only.is_some_and(|o| o != rel) {
            continue;
        }
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let temp = target.with_file_name(format!("{name}.copying"));
        std::fs::copy(&entry, &temp).unwrap();
        std::fs::rename(&temp, &target).unwrap();
    }
}

fn copy_store(from: &Path, to: &Path) {
    put_into_place(from, to, None);
}

/// A second vault over `dir`, with a retention for `cleanup`.
fn other_vault(dir: &Path) -> Vault {
    StorageFactory::open(&barvault::StorageConfig { retention_days: Some(30), ..config(dir) }).unwrap()
}

/// A write from state `a` to state `b` under the series lock of `a`: with `half`, its
/// primary copy (that path) is put in place first, as a writer between its commit and its
/// record leaves it; then `during` starts on another vault, must still be waiting 400 ms
/// later, and the write is finished and the lock released; `during`'s result.
async fn across_a_write<T: Send + 'static>(
    a: &Path,
    b: &Path,
    half: Option<&Path>,
    during: impl FnOnce(Vault) -> tokio::task::JoinHandle<T>,
) -> T {
    let writer = vault(a);
    let guard = writer.manager().locks().lock(&series(), Duration::from_secs(5), &ctx()).await.unwrap();
    if let Some(rel_csv) = half {
        put_into_place(b, a, Some(rel_csv));
    }
    let task = during(other_vault(a));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!task.is_finished(), "the operation did not wait for the write in progress");
    copy_store(b, a);
    drop(guard);
    tokio::time::timeout(Duration::from_secs(30), task).await.expect("finished after the lock was released").unwrap()
}

/// Stores A (committed: `before`, then `appended` in place) and B (A plus `write`), and the
/// CSV's path relative to the store.
async fn two_states(
    root: &Path,
    before: &Bars,
    appended: Option<&Bars>,
    write: &Bars,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (root.join("a"), root.join("b"));
    let va = vault(&a);
    persist(&va, before).await;
    if let Some(more) = appended {
        persist(&va, more).await;
    }
    copy_store(&a, &b);
    let vb = vault(&b);
    persist(&vb, write).await;
    let (csv, _) = paths(&va, &series());
    let rel = csv.strip_prefix(&a).unwrap().to_path_buf();
    (a, b, rel)
}

/// `verify` started while a CSV is newer than its record waits for the series lock and
/// reports the finished write clean: no checksum mismatch, no generations n and n+1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_meeting_a_write_between_commit_and_record_reports_no_damage() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, rel) = two_states(root.path(), &minutes(0, 1000, 0), None, &minutes(500, 1100, 1)).await;
    let report =
        across_a_write(&a, &b, Some(&rel), |v| tokio::spawn(async move { v.verify(Scope::All, false).await.unwrap() }))
            .await;
    assert!(report.is_clean(), "verify reported damage that is not there: {:?}", report.issues);
    // The same half-way state left alone (the writer gone) is damage, and is reported.
    let root2 = tempfile::tempdir().unwrap();
    let (a2, b2, rel2) = two_states(root2.path(), &minutes(0, 1000, 0), None, &minutes(500, 1100, 1)).await;
    put_into_place(&b2, &a2, Some(&rel2));
    let report = other_vault(&a2).verify(Scope::All, false).await.unwrap();
    assert!(!report.is_clean(), "a CSV left newer than its record must be reported");
}

/// A load that meets a rewrite over a series whose Parquet copy lags by rows appended in
/// place does not serve the lagging copy (which lacks committed rows): it reads again
/// under the lock and serves the finished write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_meeting_a_rewrite_never_serves_a_lagging_copy() {
    let root = tempfile::tempdir().unwrap();
    let appended = minutes(1000, 1010, 0);
    let (a, b, rel) = two_states(root.path(), &minutes(0, 1000, 0), Some(&appended), &minutes(900, 1020, 2)).await;
    let expected = stored(&vault(&b)).await;
    assert_eq!(expected.len(), 1020);
    let served = across_a_write(&a, &b, Some(&rel), |v| {
        tokio::spawn(async move { v.manager().load_with_fallback(&series(), None, &ctx()).await.unwrap() })
    })
    .await
    .expect("bars");
    assert_eq!(served, expected, "the load served another state than the finished write");
}

/// `cleanup` plans from a read without the lock, then trims under the lock: a write that
/// committed between its plan and its trim keeps its bars (only bars older than the
/// cutoff go), where writing the planned bars back would have undone it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_never_writes_back_a_plan_older_than_a_commit() {
    let root = tempfile::tempdir().unwrap();
    // Old bars (2024) and the write's bars, both minutes of 2024: "now" is chosen so that
    // the first 600 minutes are past the retention and the rest are not.
    let (a, b, _) = two_states(root.path(), &minutes(0, 1000, 0), None, &minutes(1000, 1050, 3)).await;
    let cutoff = START + 600 * MINUTE;
    let now = barvault::domain::nanos_to_datetime(cutoff) + chrono::Duration::days(30);
    let options = CleanupOptions { dry_run: false, force: true, confirm: true };
    // The plan reads A (sound, so without the lock); the trim then waits for the lock,
    // behind which the write to B commits.
    let report = across_a_write(&a, &b, None, move |v| {
        tokio::spawn(async move { v.cleanup_with(now, options, &ctx()).await.unwrap() })
    })
    .await;
    assert!(report.applied);
    let kept = stored(&vault(&a)).await;
    let expected = stored(&vault(&b)).await.slice(&barvault::TimeRange { start: Some(cutoff), end: None });
    assert_eq!(kept.len(), 450, "1000 - 600 old + 50 committed meanwhile");
    assert_eq!(kept, expected, "cleanup lost the bars committed after its plan");
    assert_eq!(report.plan.series[0].rows_removed, 600);
    assert_eq!(report.plan.series[0].rows_kept, 450);
    let v = vault(&a).verify(Scope::All, true).await.unwrap();
    assert!(v.is_clean(), "{:?}", v.issues);
}

/// A second look that cannot have the series lock (a writer holding it past
/// `lock_timeout`): `verify` keeps its first look and reports the half-way state it saw,
/// and `recover` stops with the lock error instead of repairing from a look without the
/// lock (DualStorageManager::with_series_lock's `NoLock`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lock_verify_keeps_its_first_look_and_recover_stops() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, rel) = two_states(root.path(), &minutes(0, 1000, 0), None, &minutes(500, 1100, 1)).await;
    let writer = vault(&a);
    let guard = writer.manager().locks().lock(&series(), Duration::from_secs(5), &ctx()).await.unwrap();
    put_into_place(&b, &a, Some(&rel));
    let impatient = StorageFactory::open(&barvault::StorageConfig { lock_timeout_secs: 0.2, ..config(&a) }).unwrap();
    let report = impatient.verify(Scope::All, false).await.unwrap();
    let name = series().to_string();
    assert!(
        !report.is_clean() && report.issues.iter().all(|i| i.series.as_deref() == Some(name.as_str())),
        "verify dropped its first look when the lock could not be had: {:?}",
        report.issues
    );
    let err = impatient.recover(Scope::All).await.unwrap_err();
    assert!(matches!(err, barvault::StorageError::Locked { .. }), "{err}");
    assert_eq!(std::fs::read(a.join(&rel)).unwrap(), std::fs::read(b.join(&rel)).unwrap(), "recover changed the CSV");
    drop(guard);
}

/// A trim of every bar removes the series under its lock and its lock file while the lock
/// is still held: right after the trim returns (before `cleanup`'s own `discard_locks`)
/// no lock file of a series without data is left for a concurrent `verify` to call stale
/// (reliability_mixed saw `stale_lock` in that window). A writer that waits for the lock
/// meanwhile still gets it (on the new lock file) and loses nothing, whichever of the two
/// gets the lock first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trim_of_every_bar_leaves_no_lock_file_and_a_waiting_writer_still_locks() {
    let root = tempfile::tempdir().unwrap();
    let v = vault(root.path());
    let lock_file = root.path().join("stocks/1m/.RACE.lock");
    let off = barvault::ValidationPolicy::Off;
    let cutoff = START + 1000 * MINUTE;
    persist(&v, &minutes(0, 100, 0)).await;
    assert!(lock_file.exists(), "a write leaves its lock file");
    let trim = PersistOptions::trim(cutoff);
    let outcome = v.manager().persist_with_backup(&Bars::empty(), &series(), trim, off, &ctx()).await.unwrap();
    assert_eq!(outcome.receipt.merge.result_rows, 0);
    assert!(!lock_file.exists(), "the trim left the removed series' lock file");
    let report = v.verify(Scope::All, false).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.issues);

    // Both wait behind a held lock, on the same lock file; one of them removes it.
    let later = minutes(1000, 1010, 2);
    for round in 0..4 {
        persist(&v, &minutes(0, 100, round)).await;
        let held = v.manager().locks().lock(&series(), Duration::from_secs(5), &ctx()).await.unwrap();
        let trimmer = {
            let v = v.clone();
            tokio::spawn(async move {
                let trim = PersistOptions::trim(cutoff);
                v.manager().persist_with_backup(&Bars::empty(), &series(), trim, off, &ctx()).await
            })
        };
        let writer = {
            let (v, later) = (v.clone(), later.clone());
            tokio::spawn(async move { v.manager().persist(&later, &series(), PersistOptions::default(), &ctx()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        trimmer.await.unwrap().unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(stored(&v).await, later, "round {round}: the waiting writer's bars were lost");
        let report = v.verify(Scope::All, true).await.unwrap();
        assert!(report.is_clean(), "round {round}: {:?}", report.issues);
        v.remove_series(&series(), &ctx()).await.unwrap();
    }
}
