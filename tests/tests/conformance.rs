//! The ports' behavioural contract, run against every adapter and composition the
//! application wires: each format's file store, the dual manager over in-memory stores,
//! the real dual manager from the factory, and the file metadata store.

mod common;

use barvault::{CsvCodec, ParquetCodec, StorageFactory};
use barvault_fs::FileStore;
use barvault_metadata::FileMetadataStore;
use barvault_ports::conformance::{metadata_run_all, run_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    run_all(&FileStore::new(dir.path(), CsvCodec).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    run_all(&FileStore::new(dir.path(), ParquetCodec::default()).unwrap()).await;
}

#[tokio::test]
async fn in_memory_dual_manager_conforms() {
    let dual = common::memory_dual();
    run_all(&dual.manager).await;
    // Every series the suite left behind is in both copies, equal.
    let ctx = common::ctx();
    let listed = dual.csv.list(&ctx).await.unwrap();
    assert!(!listed.is_empty());
    assert_eq!(listed, dual.parquet.list(&ctx).await.unwrap());
    for s in &listed {
        assert_eq!(common::load(dual.csv.as_ref(), s).await, common::load(dual.parquet.as_ref(), s).await, "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factory_dual_manager_conforms_and_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let manager = StorageFactory::create_storage(&common::config(dir.path())).unwrap();
    assert!(manager.backup_enabled());
    run_all(&manager).await;
    let vault = common::vault(dir.path());
    let report = vault.verify(barvault::Scope::All, true).await.unwrap();
    assert!(report.series_checked > 5, "{report:?}");
    // The only leftovers of the suite are the lock files of the series it removed.
    assert!(!report.issues.is_empty());
    for i in &report.issues {
        assert_eq!(i.kind, barvault::IssueKind::StaleLock, "{i:?}");
        assert_eq!(i.series.as_deref(), Some("stock:CF_REMOVE@1d"), "{i:?}");
    }
    let recovered = vault.recover(barvault::Scope::All).await.unwrap();
    assert!(recovered.unrecoverable.is_empty(), "{recovered:?}");
    assert_eq!(recovered.actions.len(), report.issues.len(), "{recovered:?}");
    for i in &report.issues {
        assert!(!i.path.exists(), "{} survived recover", i.path.display());
    }
    let after = vault.verify(barvault::Scope::All, true).await.unwrap();
    assert!(after.is_clean(), "{:#?}", after.issues);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_metadata_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    metadata_run_all(&FileMetadataStore::new(dir.path())).await;
}
