//! Every operation of the application goes through the `Fs` seam or a port, so a
//! `FaultyFs` under the vault can fail each of them: verify, recover, health, cleanup,
//! export and the reading of an input file each fail with an error (or a report) that
//! names the step and the file, and change nothing stored.

mod common;

use std::sync::Arc;

use barvault::{
    ExportFormat, FaultyFs, HealthStatus, ImportOptions, MergePolicy, PersistOptions, Scope, StorageConfig,
    StorageError, StorageFactory, ValidationPolicy, Vault, WriteMode,
};
use barvault_fs::{Fault, FsOp};
use barvault_ports::IoStep;
use barvault_ports::conformance::{BASE_NS, DAY_NS, sample_bars, stock};

const EIO: i32 = 5;

async fn seeded() -> (tempfile::TempDir, FaultyFs, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::real();
    let config = StorageConfig { retention_days: Some(30), ..common::config(&dir.path().join("store")) };
    let vault = StorageFactory::open_with_fs(&config, Arc::new(fs.clone())).unwrap();
    let bars = sample_bars(40, BASE_NS, DAY_NS, 1);
    vault.manager().persist(&bars, &stock("AAPL"), PersistOptions::default(), &common::ctx()).await.unwrap();
    (dir, fs, vault)
}

fn names(err: &StorageError, step: IoStep, fragment: &str) -> bool {
    matches!(err, StorageError::Io { step: s, path, source }
        if *s == step && path.to_string_lossy().contains(fragment) && source.raw_os_error() == Some(EIO))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_with_the_file_it_could_not_read() {
    let (_dir, fs, vault) = seeded().await;
    fs.inject(Fault::from_nth(FsOp::Read, 1, EIO).on_paths_containing("AAPL.csv"));
    let err = vault.verify(Scope::All, false).await.unwrap_err();
    assert!(names(&err, IoStep::Read, "AAPL.csv"), "{err:?}");
    fs.clear();
    assert!(vault.verify(Scope::All, true).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_reports_the_repair_it_could_not_write() {
    let (_dir, fs, vault) = seeded().await;
    let (csv, _) = common::paths(&vault, &stock("AAPL"));
    std::fs::write(&csv, b"garbage").unwrap();
    fs.inject(Fault::from_nth(FsOp::WriteTemp, 1, EIO).on_paths_containing(".AAPL.csv.tmp."));
    let report = vault.recover(Scope::All).await.unwrap();
    let (series, reason) = report.unrecoverable.first().expect("the repair failed");
    assert_eq!(series, "stock:AAPL@1d");
    assert!(reason.contains("write temp file") && reason.contains("AAPL.csv"), "{reason}");
    assert_eq!(common::read(&csv), b"garbage", "a failed repair left the file as it was");
    fs.clear();
    let report = vault.recover(Scope::All).await.unwrap();
    assert!(report.unrecoverable.is_empty(), "{report:?}");
    assert!(vault.verify(Scope::All, true).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_disk_it_cannot_measure_and_a_store_it_cannot_write() {
    let (_dir, fs, vault) = seeded().await;
    fs.inject(Fault::once(FsOp::Space, 1, EIO));
    fs.inject(Fault::once(FsOp::CreateTemp, 1, EIO).on_paths_containing("health-probe"));
    let health = vault.check_health().await.unwrap();
    assert_eq!(health.overall_status, HealthStatus::Error, "{health:#?}");
    assert!(health.disk_usage.is_none() && !health.write_permission, "{health:#?}");
    assert!(health.issues.iter().any(|i| i.contains("disk usage") && i.contains("os error 5")), "{:?}", health.issues);
    assert!(
        health.issues.iter().any(|i| i.contains("write permission") && i.contains("health-probe")),
        "{:?}",
        health.issues
    );
    assert_eq!(vault.check_health().await.unwrap().overall_status, HealthStatus::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_fails_with_the_directory_it_could_not_list() {
    let (_dir, fs, vault) = seeded().await;
    fs.inject(Fault::from_nth(FsOp::List, 1, EIO).on_paths_containing("stocks/1d"));
    let err = vault.cleanup(true, true, &common::ctx()).await.unwrap_err();
    assert!(names(&err, IoStep::List, "stocks/1d"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_fails_with_the_file_it_could_not_create_and_leaves_nothing() {
    let (dir, fs, vault) = seeded().await;
    let out = dir.path().join("out.csv");
    fs.inject(Fault::once(FsOp::CreateTemp, 1, EIO).on_paths_containing(".out.csv.tmp."));
    let err = vault.export(&stock("AAPL"), None, ExportFormat::Csv, Some(&out), &common::ctx()).await.unwrap_err();
    assert!(names(&err, IoStep::CreateTemp, "out.csv"), "{err:?}");
    assert!(!out.exists());
    assert_eq!(common::names_like(dir.path(), ".tmp."), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_file_that_cannot_be_read_is_named_and_stores_nothing() {
    let (dir, fs, vault) = seeded().await;
    let input = dir.path().join("input.csv");
    std::fs::write(&input, "timestamp,open,high,low,close,volume\n2030-01-02,1,2,0.5,1.5,10\n").unwrap();
    fs.inject(Fault::once(FsOp::Read, 1, EIO).on_paths_containing("input.csv"));
    let options = ImportOptions {
        validation: ValidationPolicy::Strict,
        mode: WriteMode::Merge,
        policy: MergePolicy::KeepLast,
        ..ImportOptions::default()
    };
    let err = vault.import_file(&input, &stock("AAPL"), options, &common::ctx()).await.unwrap_err();
    assert!(names(&err, IoStep::Read, "input.csv"), "{err:?}");
    assert_eq!(common::served(vault.manager(), &stock("AAPL")).await.map(|b| b.len()), Some(40));
}
