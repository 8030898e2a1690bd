//! Wiring a store that lives on object storage (`output_directory = "s3://BUCKET/PREFIX"`):
//! the object adapters in place of the file ones, no series locks (every write is
//! conditional), and a manager whose writers of one series may run on different machines.

use std::sync::Arc;

use barvault_csv::CsvCodec;
use barvault_fs::Fs;
use barvault_parquet::ParquetCodec;
use barvault_ports::{BarStore, Housekeeping, MetadataStore, SeriesLocks, StorageError};
use barvault_s3::{
    Bucket, ConditionalWrites, ObjectBarStore, ObjectHousekeeping, ObjectMetadataStore, S3Options, S3Url,
};

use crate::config::StorageConfig;
use crate::dual::{DualSettings, DualStorageManager};
use crate::vault::{StorageFactory, Vault};

/// The bucket a configuration names, if it names one; an `s3://` address that does not
/// parse is a configuration error rather than a directory of that name.
pub(crate) fn bucket_of(config: &StorageConfig) -> Result<Option<S3Url>, StorageError> {
    let Some(text) = config.output_directory.to_str() else { return Ok(None) };
    if !S3Url::is_object_url(text) {
        return Ok(None);
    }
    S3Url::parse(text).map(Some).map_err(|message| StorageError::Config { field: "output_directory".into(), message })
}

impl StorageFactory {
    /// A [`Vault`] over the bucket `url`: CSV (and Parquet, with `backup_enabled`) objects,
    /// records and housekeeping in the bucket; `io` is still where the user's own input and
    /// output files are.
    pub(crate) fn build_on_bucket(
        config: &StorageConfig,
        url: &S3Url,
        parquet_only: Option<bool>,
        io: Arc<dyn Fs>,
    ) -> Result<Vault, StorageError> {
        let options = S3Options::new(config.object_store.clone());
        let bucket = Bucket::open(url, &options)?;
        Ok(Self::vault_on(config, bucket, parquet_only, io))
    }

    /// A [`Vault`] over an already connected `bucket` (the in-memory one in tests).
    /// `parquet_only`: `None` for the configured formats (CSV, plus Parquet with
    /// `backup_enabled`), `Some(true)` for Parquet alone, `Some(false)` for CSV alone.
    pub fn open_bucket(config: &StorageConfig, bucket: Bucket, io: Arc<dyn Fs>) -> Vault {
        Self::vault_on(config, bucket, None, io)
    }

    fn vault_on(config: &StorageConfig, bucket: Bucket, parquet_only: Option<bool>, io: Arc<dyn Fs>) -> Vault {
        let csv = || -> Arc<dyn BarStore> {
            Arc::new(ObjectBarStore::new(bucket.clone(), CsvCodec::with_utc_marker(config.csv_utc_marker)))
        };
        let parquet = || -> Arc<dyn BarStore> {
            Arc::new(ObjectBarStore::new(bucket.clone(), ParquetCodec::new(config.compression)))
        };
        let (primary, secondary) = match parquet_only {
            None if config.backup_enabled => (csv(), Some(parquet())),
            None | Some(false) => (csv(), None),
            Some(true) => (parquet(), None),
        };
        let metadata: Arc<dyn MetadataStore> = Arc::new(ObjectMetadataStore::new(bucket.clone()));
        let locks: Arc<dyn SeriesLocks> = Arc::new(ConditionalWrites);
        let housekeeping: Arc<dyn Housekeeping> = Arc::new(ObjectHousekeeping::new(bucket.clone()));
        let settings = DualSettings {
            lock_timeout: config.lock_timeout(),
            validation: config.validation,
            merge_policy: config.merge_policy,
            ..DualSettings::default()
        }
        .lock_free();
        let manager = DualStorageManager::new(primary, secondary, metadata, locks, settings)
            .with_base_dir(bucket.location("").trim_end_matches('/'));
        Vault::from_parts(config.clone(), manager, housekeeping, io)
    }

    /// Whether the store `config` names exists: its directory, or anything stored under
    /// its bucket's prefix (an error when the bucket itself cannot be reached). Only
    /// `import` creates a store; every other command refuses a missing one, so a mistyped
    /// address is never reported as an empty, clean store.
    pub async fn store_exists(config: &StorageConfig) -> Result<bool, StorageError> {
        match bucket_of(config)? {
            Some(url) => Bucket::open(&url, &S3Options::new(config.object_store.clone()))?.has_objects().await,
            None => Ok(barvault_fs::RealFs.metadata(&config.output_directory).is_ok_and(|m| m.is_dir())),
        }
    }
}
