//! Per-file metadata records, stored so that no crash, no format and no store size can
//! damage them: one small JSON file per data file *and format*
//! (`{base}/.barvault/meta/{kind}/{period}/{SYMBOL}.{format}.json`), each replaced through
//! the same durable write path as the data.
//!
//! Why not the seed's single `.vortex_metadata.json`? Rewriting one central file on every
//! write makes recording a series cost O(number of series) and turns every crash into a risk
//! for all records at once; the seed's `.meta` companions named `{SYMBOL}.meta` also made the
//! CSV and Parquet records overwrite each other. Here a record costs the same in a store of
//! 1 or 10,000 series, and the format is part of the record's name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use barvault_domain::{InstrumentKind, Period, SeriesKey};
use barvault_fs::{Fs, RealFs, remove_durable, write_atomic};
use barvault_ports::{CodecError, FileMetadata, IoStep, MetadataStore, OpContext, StorageError};
use thiserror::Error;

/// Directory (under the store's base) that holds the records.
pub const META_DIR: &str = ".barvault/meta";

/// Failures private to this adapter, mapped into [`StorageError`].
#[derive(Debug, Error)]
enum MetaError {
    #[error("record is not valid JSON metadata: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("record describes {found} but is stored as {expected}")]
    Misplaced { found: String, expected: String },
    #[error("background task failed: {0}")]
    Join(String),
}

impl MetaError {
    fn at(self, path: &Path) -> StorageError {
        match self {
            MetaError::Join(reason) => StorageError::Io {
                step: IoStep::WriteMetadata,
                path: path.to_path_buf(),
                source: std::io::Error::other(reason),
            },
            other => StorageError::Corrupt { path: path.to_path_buf(), reason: other.to_string() },
        }
    }
}

/// A record that could not be read, found by [`FileMetadataStore::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub path: PathBuf,
    pub reason: String,
}

/// Metadata records as JSON files under `{base}/.barvault/meta`.
#[derive(Debug, Clone)]
pub struct FileMetadataStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: PathBuf,
    fs: Arc<dyn Fs>,
}

impl FileMetadataStore {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self::with_fs(base, Arc::new(RealFs))
    }

    /// A store whose file operations go through `fs` (e.g. a `FaultyFs` in tests).
    pub fn with_fs(base: impl Into<PathBuf>, fs: Arc<dyn Fs>) -> Self {
        Self { inner: Arc::new(Inner { base: base.into(), fs }) }
    }

    pub fn base(&self) -> &Path {
        &self.inner.base
    }

    /// The record file of `series` in `format`.
    pub fn record_path(&self, series: &SeriesKey, format: &str) -> PathBuf {
        self.inner.base.join(META_DIR).join(format!("{}.{format}.json", series.relative_stem()))
    }

    /// Every record file, parsed, plus the ones that could not be read (for integrity checks).
    pub fn scan(&self) -> Result<(Vec<FileMetadata>, Vec<BadRecord>), StorageError> {
        self.inner.scan()
    }
}

impl Inner {
    fn read(&self, path: &Path) -> Result<Option<FileMetadata>, StorageError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(IoStep::Read, path, e)),
        };
        let meta: FileMetadata = serde_json::from_slice(&bytes).map_err(|e| MetaError::Parse(e).at(path))?;
        let expected = self.base.join(META_DIR).join(format!("{}.{}.json", meta.series().relative_stem(), meta.format));
        if expected != path {
            return Err(
                MetaError::Misplaced { found: meta.file_path.clone(), expected: path.display().to_string() }.at(path)
            );
        }
        Ok(Some(meta))
    }

    fn scan(&self) -> Result<(Vec<FileMetadata>, Vec<BadRecord>), StorageError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let root = self.base.join(META_DIR);
        for kind in InstrumentKind::ALL {
            for period in Period::ALL {
                let dir = root.join(kind.dir_name()).join(period.as_str());
                let entries = match self.fs.read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io(IoStep::List, &dir, e)),
                };
                for path in entries {
                    let is_record = path.extension().is_some_and(|e| e == "json");
                    if !is_record {
                        continue;
                    }
                    match self.read(&path) {
                        Ok(Some(m)) => good.push(m),
                        Ok(None) => {}
                        Err(e) => bad.push(BadRecord { path: path.clone(), reason: e.to_string() }),
                    }
                }
            }
        }
        good.sort_by(|a, b| a.file_path.cmp(&b.file_path));
        bad.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((good, bad))
    }
}

async fn blocking<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| MetaError::Join(e.to_string()).at(&path))?
}

#[async_trait]
impl MetadataStore for FileMetadataStore {
    async fn record(&self, meta: &FileMetadata, ctx: &OpContext) -> Result<(), StorageError> {
        let path = self.record_path(&meta.series(), &meta.format);
        let json = serde_json::to_vec_pretty(meta).map_err(|e| MetaError::Parse(e).at(&path))?;
        let inner = self.inner.clone();
        let span = ctx.span("metadata_record", Some(&meta.series()));
        let target = path.clone();
        blocking(path, move || {
            let _enter = span.enter();
            write_atomic(inner.fs.as_ref(), &target, false, |w| {
                w.write_all(&json)?;
                w.write_all(b"\n").map_err(CodecError::from)
            })
            .map_err(|e| match e {
                StorageError::Io { step, path, source } if step != IoStep::WriteMetadata => {
                    tracing::warn!(%step, path = %path.display(), "metadata write failed");
                    StorageError::Io { step: IoStep::WriteMetadata, path, source }
                }
                other => other,
            })?;
            tracing::debug!(path = %target.display(), "metadata recorded");
            Ok(())
        })
        .await
    }

    async fn get(
        &self,
        series: &SeriesKey,
        format: &str,
        _ctx: &OpContext,
    ) -> Result<Option<FileMetadata>, StorageError> {
        let path = self.record_path(series, format);
        let inner = self.inner.clone();
        blocking(path.clone(), move || inner.read(&path)).await
    }

    async fn list(&self, ctx: &OpContext) -> Result<Vec<FileMetadata>, StorageError> {
        let inner = self.inner.clone();
        let span = ctx.span("metadata_list", None);
        let root = self.inner.base.join(META_DIR);
        blocking(root, move || {
            let (good, bad) = inner.scan()?;
            for b in &bad {
                let _enter = span.enter();
                tracing::warn!(path = %b.path.display(), reason = %b.reason, "unreadable metadata record skipped");
            }
            Ok(good)
        })
        .await
    }

    async fn remove(&self, series: &SeriesKey, format: &str, _ctx: &OpContext) -> Result<bool, StorageError> {
        let path = self.record_path(series, format);
        let inner = self.inner.clone();
        blocking(path.clone(), move || remove_durable(inner.fs.as_ref(), &path)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barvault_domain::Instrument;

    #[tokio::test]
    async fn passes_the_metadata_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMetadataStore::new(dir.path());
        barvault_ports::conformance::metadata_run_all(&store).await;
    }

    #[tokio::test]
    async fn csv_and_parquet_records_have_distinct_files_and_survive_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMetadataStore::new(dir.path());
        let series = SeriesKey::new(Instrument::stock("AAPL").unwrap(), Period::D1);
        let a = store.record_path(&series, "csv");
        let b = store.record_path(&series, "parquet");
        assert_ne!(a, b);
        assert!(a.ends_with(".barvault/meta/stocks/1d/AAPL.csv.json"), "{}", a.display());
        std::fs::create_dir_all(a.parent().unwrap()).unwrap();
        std::fs::write(&a, b"{ not json").unwrap();
        let ctx = OpContext::new();
        let err = store.get(&series, "csv", &ctx).await.unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("AAPL.csv.json"), "{err}");
        let (good, bad) = store.scan().unwrap();
        assert!(good.is_empty());
        assert_eq!(bad.len(), 1);
        assert!(store.list(&ctx).await.unwrap().is_empty());
    }
}
