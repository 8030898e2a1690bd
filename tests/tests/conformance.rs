//! The ports' behavioural contract, run against every adapter the application wires: each
//! format's file store (alone, and locked by its caller as the factory builds it) and the
//! file metadata store.

mod common;

use barvault::{CsvCodec, ParquetCodec};
use barvault_fs::FileStore;
use barvault_metadata::FileMetadataStore;
use barvault_ports::BarStore;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_stores_locked_by_their_caller_conform() {
    let dir = tempfile::tempdir().unwrap();
    let csv = FileStore::builder(dir.path(), CsvCodec).locked_by_caller().build().unwrap();
    assert!(!csv.capabilities().atomic_updates);
    run_all(&csv).await;
    let parquet = FileStore::builder(dir.path(), ParquetCodec::default()).locked_by_caller().build().unwrap();
    run_all(&parquet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_metadata_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    metadata_run_all(&FileMetadataStore::new(dir.path())).await;
}
