//! The factory's single-format stores, generations shared by both formats, writes that
//! change nothing touching nothing, and retention cleanup whose dry run is exactly the plan
//! a real run carries out.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use barvault::{
    CleanupOptions, IssueKind, MetadataStore, PersistOptions, Scope, StorageConfig, StorageError, StorageFactory,
    TimeRange, ValidationPolicy,
};
use barvault_domain::datetime_to_nanos;
use barvault_metadata::FileMetadataStore;
use barvault_ports::conformance::{BASE_NS, DAY_NS, sample_bars, stock};
use chrono::{DateTime, TimeZone, Utc};

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let entry = |p: PathBuf| {
        let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
        let bytes = common::read(&p);
        (p, (bytes, modified))
    };
    common::files_below(dir).into_iter().map(entry).collect()
}

fn data_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = snapshot(dir)
        .into_keys()
        .filter(|p| !p.to_string_lossy().contains(".barvault"))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_format_stores_write_only_their_format() {
    let bars = sample_bars(10, BASE_NS, DAY_NS, 1);
    let s = stock("AAPL");
    let ctx = common::ctx();
    for (parquet, ext) in [(false, "csv"), (true, "parquet")] {
        let dir = tempfile::tempdir().unwrap();
        let config = common::config(dir.path());
        let manager = if parquet {
            StorageFactory::create_parquet_only(&config)
        } else {
            StorageFactory::create_csv_only(&config)
        }
        .unwrap();
        assert!(!manager.backup_enabled());
        assert_eq!(manager.primary().name(), ext);
        let receipt = manager.persist(&bars, &s, PersistOptions::default(), &ctx).await.unwrap();
        assert_eq!(receipt.format, ext);
        assert!(receipt.secondary.is_none(), "{receipt:?}");
        assert!(receipt.location.ends_with(&format!("stocks/1d/AAPL.{ext}")), "{}", receipt.location);
        assert_eq!(data_files(dir.path()), vec![format!("AAPL.{ext}")]);
        assert_eq!(common::served(&manager, &s).await, Some(bars.clone()));
        let records = FileMetadataStore::new(dir.path()).list(&ctx).await.unwrap();
        assert_eq!(records.records.iter().map(|r| r.format.as_str()).collect::<Vec<_>>(), vec![ext]);
        assert_eq!(records.records[0].generation, 1);

        let vault = StorageFactory::open_single_format(&config, parquet).unwrap();
        assert_eq!(vault.formats(), vec![ext.to_string()]);
        let report = vault.verify(Scope::All, true).await.unwrap();
        assert!(report.is_clean(), "{ext}: {:#?}", report.issues);
    }
    let dir = tempfile::tempdir().unwrap();
    let dual = StorageFactory::create_storage(&common::config(dir.path())).unwrap();
    dual.persist(&bars, &s, PersistOptions::default(), &ctx).await.unwrap();
    assert_eq!(data_files(dir.path()), vec!["AAPL.csv".to_string(), "AAPL.parquet".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_increase_by_one_per_write_and_are_shared_by_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let vault = common::vault(dir.path());
    let meta = FileMetadataStore::new(dir.path());
    let (s, ctx) = (stock("AAPL"), common::ctx());
    let gens = || async {
        let c = meta.get(&s, "csv", &ctx).await.unwrap().map(|m| m.generation);
        let p = meta.get(&s, "parquet", &ctx).await.unwrap().map(|m| m.generation);
        (c, p)
    };
    assert_eq!(gens().await, (None, None));
    for k in 1..=4u64 {
        let batch = sample_bars(5, BASE_NS + (k as i64 - 1) * 3 * DAY_NS, DAY_NS, k);
        let outcome = vault
            .manager()
            .persist_with_backup(&batch, &s, PersistOptions::default(), ValidationPolicy::Strict, &ctx)
            .await
            .unwrap();
        assert_eq!(outcome.generation, Some(k), "{outcome:?}");
        assert_eq!(gens().await, (Some(k), Some(k)), "write {k}");
    }
    // A write that changes nothing records nothing.
    let all = common::served(vault.manager(), &s).await.unwrap();
    let outcome = vault
        .manager()
        .persist_with_backup(&all.slice_rows(3, 8), &s, PersistOptions::default(), ValidationPolicy::Strict, &ctx)
        .await
        .unwrap();
    assert_eq!(outcome.generation, None);
    assert_eq!(gens().await, (Some(4), Some(4)));
    let listed = vault.list(None, None, &ctx).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].generation, listed[0].rows), (4, all.len() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisting_identical_data_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vault = common::vault(dir.path());
    let (s, ctx) = (stock("AAPL"), common::ctx());
    let bars = sample_bars(12, BASE_NS, DAY_NS, 7);
    vault.manager().persist(&bars, &s, PersistOptions::default(), &ctx).await.unwrap();
    let before = snapshot(dir.path());
    // Give a rewrite a chance to show in the modification times.
    std::thread::sleep(Duration::from_millis(20));
    for options in [PersistOptions::default(), PersistOptions::replace()] {
        let receipt = vault.manager().persist(&bars, &s, options, &ctx).await.unwrap();
        assert!(!receipt.written && receipt.merge.unchanged, "{receipt:?}");
        assert!(matches!(receipt.secondary, Some(barvault::SecondaryStatus::Unchanged { .. })), "{receipt:?}");
    }
    let receipt = vault.manager().persist(&bars.slice_rows(2, 6), &s, PersistOptions::default(), &ctx).await.unwrap();
    assert!(!receipt.written);
    let after = snapshot(dir.path());
    let data: Vec<&PathBuf> =
        before.keys().filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect();
    assert!(data.len() >= 4, "data files and records: {data:?}");
    for p in data {
        let (b, a) = (&before[p], after.get(p).unwrap_or_else(|| panic!("{} vanished", p.display())));
        assert!(b.0 == a.0, "{} changed", p.display());
        assert_eq!(b.1, a.1, "{} was rewritten", p.display());
    }
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn ns(dt: DateTime<Utc>) -> i64 {
    datetime_to_nanos(&dt).unwrap()
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_dry_run_is_exactly_what_a_real_run_removes() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig { retention_days: Some(30), cleanup_enabled: false, ..common::config(dir.path()) };
    let vault = StorageFactory::open(&config).unwrap();
    let ctx = common::ctx();
    let now = at(2024, 6, 1);
    let cutoff = ns(now - chrono::Duration::days(30));
    let (trimmed, gone, kept) = (stock("TRIM"), stock("GONE"), stock("KEEP"));
    // TRIM straddles the cutoff (written twice, so it has a backup); GONE is all older; KEEP all newer.
    let trim_bars = sample_bars(90, ns(at(2024, 3, 3)), DAY_NS, 1);
    let m = vault.manager();
    m.persist(&trim_bars.slice_rows(0, 40), &trimmed, PersistOptions::default(), &ctx).await.unwrap();
    m.persist(&trim_bars, &trimmed, PersistOptions::default(), &ctx).await.unwrap();
    m.persist(&sample_bars(10, ns(at(2024, 1, 2)), DAY_NS, 2), &gone, PersistOptions::default(), &ctx).await.unwrap();
    let kept_bars = sample_bars(10, ns(at(2024, 5, 10)), DAY_NS, 3);
    m.persist(&kept_bars, &kept, PersistOptions::default(), &ctx).await.unwrap();

    let now_sys = SystemTime::from(now);
    let series_dir = vault.paths_of(&trimmed)[0].parent().unwrap().to_path_buf();
    let old_temp = series_dir.join(".TRIM.csv.tmp.999999.abcdef0123456789");
    let new_temp = series_dir.join(".KEEP.csv.tmp.999999.0123456789abcdef");
    for (p, age_days) in [(&old_temp, 40), (&new_temp, 1)] {
        std::fs::write(p, b"partial").unwrap();
        set_mtime(p, now_sys - Duration::from_secs(age_days * 86_400));
    }
    let backups: Vec<PathBuf> = vault.paths_of(&trimmed).iter().map(|p| barvault_fs::backup_path_of(p)).collect();
    for b in &backups {
        assert!(b.is_file(), "{}", b.display());
        set_mtime(b, now_sys - Duration::from_secs(31 * 86_400));
    }

    let refused = vault.cleanup_at(now, false, false, &ctx).await;
    assert!(matches!(refused, Err(StorageError::Config { .. })), "{refused:?}");

    let before = snapshot(dir.path());
    let dry = vault.cleanup_at(now, true, false, &ctx).await.unwrap();
    assert!(dry.dry_run);
    assert!(snapshot(dir.path()) == before, "a dry run changed files");
    let trims: BTreeMap<String, (usize, usize)> =
        dry.plan.series.iter().map(|t| (t.series.clone(), (t.rows_removed, t.rows_kept))).collect();
    let expected_kept = trim_bars.slice(&TimeRange { start: Some(cutoff), end: None });
    assert!(!expected_kept.is_empty() && expected_kept.len() < trim_bars.len(), "fixture must straddle the cutoff");
    assert_eq!(trims.len(), 2, "{trims:?}");
    assert_eq!(trims[&trimmed.to_string()], (90 - expected_kept.len(), expected_kept.len()));
    assert_eq!(trims[&gone.to_string()], (10, 0));
    assert_eq!(dry.plan.temp_files, vec![old_temp.clone()]);
    let mut planned_backups = dry.plan.backups.clone();
    planned_backups.sort();
    assert_eq!(planned_backups, backups);

    // GONE would lose every row: a dry run says so, and a run without confirmation
    // changes nothing.
    assert!(dry.needs_confirmation.as_deref().is_some_and(|w| w.contains("every row of 1 series")), "{dry:?}");
    let unconfirmed = vault.cleanup_at(now, false, true, &ctx).await.unwrap();
    assert!(!unconfirmed.applied && unconfirmed.needs_confirmation.is_some());
    assert!(snapshot(dir.path()) == before, "an unconfirmed cleanup changed files");

    let confirmed = CleanupOptions { dry_run: false, force: true, confirm: true };
    let real = vault.cleanup_with(now, confirmed, &ctx).await.unwrap();
    assert!(!real.dry_run && real.applied);
    assert_eq!(real.plan, dry.plan, "the real run planned differently");
    for p in real.plan.temp_files.iter().chain(&real.plan.backups) {
        assert!(!p.exists(), "{} survived cleanup", p.display());
    }
    assert!(new_temp.exists(), "a young temp file was removed");
    assert_eq!(common::served(m, &trimmed).await, Some(expected_kept.clone()));
    assert_eq!(common::served(m, &gone).await, None);
    assert_eq!(common::served(m, &kept).await, Some(kept_bars));
    for p in vault.paths_of(&kept) {
        assert!(before[&p] == snapshot(dir.path())[&p], "{} was touched", p.display());
    }
    for p in vault.paths_of(&gone) {
        assert!(!p.exists(), "{}", p.display());
    }

    // A second run has nothing left to do.
    let again = vault.cleanup_at(now, true, false, &ctx).await.unwrap();
    assert!(again.plan.series.is_empty() && again.plan.temp_files.is_empty(), "{again:?}");
    let report = vault.verify(Scope::All, true).await.unwrap();
    let unexpected: Vec<_> =
        report.issues.iter().filter(|i| !(i.kind == IssueKind::StaleTemp && i.path == new_temp)).collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

/// Without `retention_days` cleanup has nothing to apply and says how to opt in; with it,
/// removing more than half of the stored rows needs confirmation even when no series is
/// emptied, while a small trim does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_nothing_by_default_and_confirms_large_removals() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    let now = at(2024, 6, 1);
    let unset = StorageConfig { cleanup_enabled: true, ..common::config(dir.path()) };
    let vault = StorageFactory::open(&unset).unwrap();
    let history = sample_bars(100, ns(at(2024, 1, 1)), DAY_NS, 1);
    vault.manager().persist(&history, &stock("HIST"), PersistOptions::default(), &ctx).await.unwrap();
    let before = snapshot(dir.path());
    for dry_run in [true, false] {
        let refused = vault.cleanup_with(now, CleanupOptions { dry_run, force: true, confirm: true }, &ctx).await;
        match refused {
            Err(StorageError::Config { field, message }) => {
                assert_eq!(field, "retention_days");
                assert!(message.contains("removes nothing") && message.contains("retention_days = N"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert!(snapshot(dir.path()) == before);

    // 100 daily bars from January 1st (to April 9th): on June 1st, 101 days' retention
    // keeps those from February 21st on (51 of 100 removed), 150 days those from January
    // 3rd (2 removed).
    for (days, confirm_needed) in [(101, true), (150, false)] {
        let config = StorageConfig { retention_days: Some(days), ..unset.clone() };
        let vault = StorageFactory::open(&config).unwrap();
        let plan = vault.cleanup_with(now, CleanupOptions { dry_run: true, ..CleanupOptions::default() }, &ctx).await;
        let plan = plan.unwrap();
        assert_eq!(plan.plan.rows_stored, 100);
        assert_eq!(plan.needs_confirmation.is_some(), confirm_needed, "{days} days: {plan:?}");
        let run = vault.cleanup_with(now, CleanupOptions::default(), &ctx).await.unwrap();
        assert_eq!(run.applied, !confirm_needed, "{days} days");
        let stored = common::served(vault.manager(), &stock("HIST")).await.unwrap().len();
        let expected = if confirm_needed { 100 } else { 100 - plan.plan.rows_removed };
        assert_eq!(stored, expected, "{days} days");
    }
}
