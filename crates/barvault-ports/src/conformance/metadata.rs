//! The contract of a [`MetadataStore`].

use barvault_domain::{InstrumentKind, Period, SeriesKey};

use super::{ctx, sample_metadata, series, stock};
use crate::metadata::{FileMetadata, MetadataStore};

async fn meta_get(store: &dyn MetadataStore, s: &SeriesKey, format: &str) -> Option<FileMetadata> {
    store.get(s, format, &ctx()).await.unwrap_or_else(|e| panic!("metadata get {s} {format} failed: {e}"))
}

async fn meta_record(store: &dyn MetadataStore, m: &FileMetadata) {
    store.record(m, &ctx()).await.unwrap_or_else(|e| panic!("metadata record {} failed: {e}", m.file_path))
}

async fn meta_list(store: &dyn MetadataStore) -> Vec<FileMetadata> {
    let list = store.list(&ctx()).await.unwrap_or_else(|e| panic!("metadata list failed: {e}"));
    assert!(list.unreadable.is_empty(), "metadata: sound records listed as unreadable: {:?}", list.unreadable);
    list.records
}

async fn meta_remove(store: &dyn MetadataStore, s: &SeriesKey, format: &str) -> bool {
    store.remove(s, format, &ctx()).await.unwrap_or_else(|e| panic!("metadata remove {s} {format} failed: {e}"))
}

/// record → get → list → remove → get, every field preserved.
pub async fn metadata_round_trip(store: &dyn MetadataStore) {
    let s = stock("CF_META_RT");
    let m = sample_metadata(&s, "csv", 1);
    meta_record(store, &m).await;
    assert_eq!(meta_get(store, &s, "csv").await.as_ref(), Some(&m), "metadata_round_trip: get after record");
    assert!(meta_list(store).await.contains(&m), "metadata_round_trip: list lacks the record");
    assert!(meta_remove(store, &s, "csv").await, "metadata_round_trip: remove returned false");
    assert_eq!(meta_get(store, &s, "csv").await, None, "metadata_round_trip: get after remove");
    assert!(!meta_list(store).await.contains(&m), "metadata_round_trip: list still has the removed record");
}

/// The csv and parquet records of one series are separate.
pub async fn metadata_formats_are_separate(store: &dyn MetadataStore) {
    let s = series(InstrumentKind::Future, "CF_META_FMT", Period::M15);
    let csv = sample_metadata(&s, "csv", 2);
    let parquet = sample_metadata(&s, "parquet", 3);
    meta_record(store, &csv).await;
    meta_record(store, &parquet).await;
    assert_eq!(meta_get(store, &s, "csv").await.as_ref(), Some(&csv), "metadata: csv record overwritten");
    assert_eq!(meta_get(store, &s, "parquet").await.as_ref(), Some(&parquet), "metadata: parquet record lost");
    assert!(meta_remove(store, &s, "csv").await, "metadata: remove csv");
    assert_eq!(meta_get(store, &s, "parquet").await.as_ref(), Some(&parquet), "metadata: removing csv hit parquet");
}

/// Recording a series and format again replaces the record (one record per file).
pub async fn metadata_rerecord_replaces(store: &dyn MetadataStore) {
    let s = stock("CF_META_RE");
    let first = sample_metadata(&s, "parquet", 4);
    let second = sample_metadata(&s, "parquet", 5);
    meta_record(store, &first).await;
    meta_record(store, &second).await;
    assert_eq!(meta_get(store, &s, "parquet").await.as_ref(), Some(&second), "metadata: re-record did not replace");
    let same_path = meta_list(store).await.into_iter().filter(|m| m.file_path == second.file_path).count();
    assert_eq!(same_path, 1, "metadata: list holds {same_path} records for {}", second.file_path);
}

/// `list` is sorted by file_path whatever the recording order.
pub async fn metadata_list_sorted(store: &dyn MetadataStore) {
    let keys = [stock("CF_META_Z"), stock("CF_META_A"), series(InstrumentKind::Forex, "CFMJPY", Period::W1)];
    for (i, k) in keys.iter().enumerate() {
        meta_record(store, &sample_metadata(k, "csv", 10 + i as u64)).await;
    }
    let listed = meta_list(store).await;
    let paths: Vec<&str> = listed.iter().map(|m| m.file_path.as_str()).collect();
    assert!(paths.windows(2).all(|w| w[0] <= w[1]), "metadata: list not sorted by file_path: {paths:?}");
    for k in &keys {
        let p = format!("{}.csv", k.relative_stem());
        assert!(paths.contains(&p.as_str()), "metadata: list lacks {p}");
    }
}

/// get of a series never recorded, or of a format never recorded, is None.
pub async fn metadata_get_unknown_is_none(store: &dyn MetadataStore) {
    let s = stock("CF_META_NONE");
    assert_eq!(meta_get(store, &s, "csv").await, None, "metadata: get of unknown series");
    meta_record(store, &sample_metadata(&s, "csv", 20)).await;
    assert_eq!(meta_get(store, &s, "parquet").await, None, "metadata: get of unrecorded format");
}

/// remove returns whether a record existed.
pub async fn metadata_remove_reports_existence(store: &dyn MetadataStore) {
    let s = stock("CF_META_RM");
    assert!(!meta_remove(store, &s, "csv").await, "metadata: remove of unknown returned true");
    meta_record(store, &sample_metadata(&s, "csv", 30)).await;
    assert!(meta_remove(store, &s, "csv").await, "metadata: remove of a record returned false");
    assert!(!meta_remove(store, &s, "csv").await, "metadata: second remove returned true");
}

/// Every [`MetadataStore`] case, in order.
pub async fn metadata_run_all(store: &dyn MetadataStore) {
    metadata_round_trip(store).await;
    metadata_formats_are_separate(store).await;
    metadata_rerecord_replaces(store).await;
    metadata_list_sorted(store).await;
    metadata_get_unknown_is_none(store).await;
    metadata_remove_reports_existence(store).await;
}
