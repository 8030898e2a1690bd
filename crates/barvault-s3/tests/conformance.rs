//! The object adapters against the conformance suite: on object_store's `InMemory` store
//! (whose conditional writes are atomic, so the race case proves the retry logic on a store
//! that really races) and on a local S3 server (moto), where every request goes over HTTP
//! through the same client as against AWS.

use barvault_csv::CsvCodec;
use barvault_parquet::ParquetCodec;
use barvault_ports::conformance;
use barvault_s3::testing::MotoServer;
use barvault_s3::{Bucket, ObjectBarStore, ObjectMetadataStore};

async fn every_case(bucket: &Bucket) {
    let csv = ObjectBarStore::new(bucket.clone(), CsvCodec);
    conformance::run_all(&csv).await;
    let parquet = ObjectBarStore::new(bucket.clone(), ParquetCodec::default());
    conformance::run_all(&parquet).await;
    conformance::metadata_run_all(&ObjectMetadataStore::new(bucket.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_objects_pass_the_whole_suite() {
    every_case(&Bucket::in_memory("team/store")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_objects_without_backups_refuse_backup_reads() {
    let store = ObjectBarStore::with_backups(Bucket::in_memory("p"), CsvCodec, false);
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_on_a_local_s3_server_pass_the_whole_suite() {
    let Some(server) = MotoServer::start() else { return };
    every_case(&server.bucket("conformance", "desk/bars")).await;
    // At the bucket's root, too.
    conformance::run_core(&ObjectBarStore::new(server.bucket("conformance-root", ""), CsvCodec)).await;
}
