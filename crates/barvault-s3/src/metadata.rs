//! Metadata records as objects: `{prefix}/.barvault/meta/{kind}/{period}/{SYMBOL}.{format}.meta`,
//! in the very format the file store keeps them on disk (two checksummed slots; legacy
//! `.json` records are read too), so a store copied between a disk and a bucket reads the
//! same records.
//!
//! Without a lock around read–merge–write, two writers of one series may record their
//! versions in either order. A record is therefore written only while it is true: the
//! record's PUT is conditional on the record read just before, and before it the data
//! object it describes is checked to still hold the recorded MD5 (from the object's own
//! metadata, a HEAD). A writer whose object another writer already replaced gets a
//! [`StorageError::VersionConflict`] instead of recording a version that is gone, and the
//! last record written describes the last object written.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::{Instrument, InstrumentKind, Period, SeriesKey};
use barvault_metadata::{LEGACY_EXT, META_DIR, RECORD_EXT, decode_record_file, encode_record_file, record_file_path};
use barvault_ports::{FileMetadata, IoStep, MetadataStore, OpContext, RecordList, StorageError, UnreadableRecord};
use bytes::Bytes;
use futures::StreamExt;

use crate::bucket::{Bucket, Condition, PutError};

/// Attempts at writing one record while other writers write it too.
const RECORD_ATTEMPTS: usize = 16;

/// Records read at once by `list`.
const READS_IN_FLIGHT: usize = 32;

/// Metadata records as objects in a bucket.
#[derive(Debug, Clone)]
pub struct ObjectMetadataStore {
    bucket: Bucket,
}

impl ObjectMetadataStore {
    pub fn new(bucket: Bucket) -> Self {
        Self { bucket }
    }

    /// `.barvault/meta/{kind}/{period}/{SYMBOL}.{format}.{ext}` inside the store.
    fn relative(series: &SeriesKey, format: &str, ext: &str) -> String {
        format!("{META_DIR}/{}.{format}.{ext}", series.relative_stem())
    }

    fn location(&self, relative: &str) -> PathBuf {
        PathBuf::from(self.bucket.location(relative))
    }

    /// The record at `relative` and the ETag it was read with; `None` if there is none.
    async fn read(&self, relative: &str) -> Result<Option<(FileMetadata, u64, String)>, StorageError> {
        let Some((bytes, info)) = self.bucket.get(relative).await? else { return Ok(None) };
        let location = self.location(relative);
        let legacy = relative.ends_with(&format!(".{LEGACY_EXT}"));
        let (meta, seq) = decode_record_file(&bytes, legacy).map_err(|e| e.at(&location))?;
        // A record is never trusted to address another file than the one its key names.
        let series = meta.try_series().map_err(|e| misplaced(&location, &e.to_string()))?;
        let ext = if legacy { LEGACY_EXT } else { RECORD_EXT };
        if Self::relative(&series, &meta.format, ext) != relative || meta.file_path != record_file_path(&meta)? {
            return Err(misplaced(&location, &meta.file_path));
        }
        Ok(Some((meta, seq, info.etag.unwrap_or_default())))
    }

    /// Whether the data object `meta` describes holds the bytes it records (or is gone,
    /// when there is nothing to disagree with).
    async fn still_describes(&self, meta: &FileMetadata) -> Result<bool, StorageError> {
        if meta.checksum.is_empty() {
            return Ok(true);
        }
        let Some(info) = self.bucket.head(&meta.file_path).await? else { return Ok(true) };
        if let Some(known) = info.holds_md5(&meta.checksum) {
            return Ok(known && info.size == meta.file_size);
        }
        // Uploaded by another tool in parts (or encrypted with KMS): only the bytes tell.
        let Some((bytes, _)) = self.bucket.get(&meta.file_path).await? else { return Ok(true) };
        Ok(barvault_fs::md5_hex(&bytes) == meta.checksum)
    }

    async fn write(&self, meta: &FileMetadata) -> Result<(), StorageError> {
        let series = meta.try_series()?;
        let relative = Self::relative(&series, &meta.format, RECORD_EXT);
        let location = self.location(&relative);
        for attempt in 0..RECORD_ATTEMPTS {
            let (condition, seq) = match self.read(&relative).await {
                Ok(Some((_, seq, etag))) => (Condition::Tagged(etag), seq),
                Ok(None) => (Condition::Absent, 0),
                // A damaged record is replaced; it still has an ETag to replace it against.
                Err(e) if e.is_data_error() => match self.bucket.head(&relative).await? {
                    Some(info) => (info.etag.map_or(Condition::Any, Condition::Tagged), 0),
                    None => (Condition::Absent, 0),
                },
                Err(e) => return Err(e),
            };
            if !self.still_describes(meta).await? {
                return Err(StorageError::version_conflict(
                    self.bucket.location(&meta.file_path),
                    "another writer replaced the object since this version was written; its record is theirs to write",
                ));
            }
            let bytes = encode_record_file(meta, seq.saturating_add(1)).map_err(|e| e.at(&location))?;
            let md5 = barvault_fs::md5_hex(&bytes);
            match self.bucket.put(&relative, Bytes::from(bytes), &md5, &condition).await {
                Ok(_) => {
                    if condition == Condition::Absent {
                        // A legacy record of the same file is superseded by this one.
                        self.bucket.delete(&Self::relative(&series, &meta.format, LEGACY_EXT)).await?;
                    }
                    tracing::debug!(path = %meta.file_path, attempt, "metadata recorded");
                    return Ok(());
                }
                Err(PutError::Conflict(reason)) => {
                    tracing::debug!(path = %meta.file_path, attempt, reason, "record written by another writer meanwhile");
                    tokio::time::sleep(Duration::from_millis(2 << attempt.min(6))).await;
                }
                Err(PutError::Failed(e)) => return Err(e.into()),
            }
        }
        Err(StorageError::version_conflict(
            location,
            format!("written by other writers {RECORD_ATTEMPTS} times in a row"),
        ))
    }
}

fn misplaced(location: &std::path::Path, found: &str) -> StorageError {
    StorageError::Corrupt {
        path: location.to_path_buf(),
        reason: format!("record describes {found} but is stored as {}", location.display()),
    }
}

/// The series and format a record key names (`{kind}/{period}/{SYMBOL}.{format}.{ext}`
/// under the records folder), when it names one, and its extension.
fn named_by(relative: &str) -> Option<(Option<SeriesKey>, Option<String>, &str)> {
    let rest = relative.strip_prefix(META_DIR)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (kind, period, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (stem, ext) = name.rsplit_once('.')?;
    if ext != RECORD_EXT && ext != LEGACY_EXT {
        return None;
    }
    let kind = InstrumentKind::from_dir_name(kind)?;
    let period: Period = period.parse().ok()?;
    let Some((symbol, format)) = stem.rsplit_once('.') else { return Some((None, None, ext)) };
    let series =
        Instrument::new(kind, symbol).ok().filter(|i| i.symbol().as_str() == symbol).map(|i| SeriesKey::new(i, period));
    Some((series, Some(format.to_string()), ext))
}

#[async_trait]
impl MetadataStore for ObjectMetadataStore {
    async fn record(&self, meta: &FileMetadata, ctx: &OpContext) -> Result<(), StorageError> {
        use tracing::Instrument;
        let span = ctx.span("metadata_record", meta.try_series().ok().as_ref());
        self.write(meta).instrument(span).await.map_err(|e| match e {
            StorageError::Io { step, path, source } if step != IoStep::Read && step != IoStep::Stat => {
                StorageError::Io { step: IoStep::WriteMetadata, path, source }
            }
            other => other,
        })
    }

    async fn get(
        &self,
        series: &SeriesKey,
        format: &str,
        _ctx: &OpContext,
    ) -> Result<Option<FileMetadata>, StorageError> {
        if let Some((meta, _, _)) = self.read(&Self::relative(series, format, RECORD_EXT)).await? {
            return Ok(Some(meta));
        }
        Ok(self.read(&Self::relative(series, format, LEGACY_EXT)).await?.map(|(meta, _, _)| meta))
    }

    async fn list(&self, _ctx: &OpContext) -> Result<RecordList, StorageError> {
        let listed = self.bucket.list(META_DIR).await?;
        let keys: std::collections::BTreeSet<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
        let record_keys: Vec<(String, Option<SeriesKey>, Option<String>)> = listed
            .iter()
            .filter_map(|(rel, _)| {
                let (series, format, ext) = named_by(rel)?;
                // A legacy record counts only while no slotted record replaced it.
                let superseded = ext == LEGACY_EXT
                    && keys.contains(format!("{}.{RECORD_EXT}", &rel[..rel.len() - LEGACY_EXT.len() - 1]).as_str());
                (!superseded).then(|| (rel.clone(), series, format))
            })
            .collect();
        let reads = futures::stream::iter(record_keys)
            .map(|(rel, series, format)| async move { (self.read(&rel).await, rel, series, format) })
            .buffered(READS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let mut list = RecordList::default();
        for (read, rel, series, format) in reads {
            match read {
                Ok(Some((meta, _, _))) => list.records.push(meta),
                Ok(None) => {}
                Err(e) if matches!(e, StorageError::Io { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(key = %rel, reason = %e, "unreadable metadata record");
                    list.unreadable.push(UnreadableRecord {
                        location: self.location(&rel),
                        series,
                        format,
                        reason: e.to_string(),
                    });
                }
            }
        }
        list.records.sort_by(|a, b| a.file_path.cmp(&b.file_path));
        list.unreadable.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(list)
    }

    async fn remove(&self, series: &SeriesKey, format: &str, _ctx: &OpContext) -> Result<bool, StorageError> {
        let mut existed = false;
        for ext in [RECORD_EXT, LEGACY_EXT] {
            let relative = Self::relative(series, format, ext);
            if self.bucket.head(&relative).await?.is_some() {
                existed = true;
                self.bucket.delete(&relative).await?;
            }
        }
        Ok(existed)
    }

    async fn locations(
        &self,
        series: &SeriesKey,
        format: &str,
        _ctx: &OpContext,
    ) -> Result<Vec<std::path::PathBuf>, StorageError> {
        let mut found = Vec::new();
        for ext in [RECORD_EXT, LEGACY_EXT] {
            let relative = Self::relative(series, format, ext);
            if self.bucket.head(&relative).await?.is_some() {
                found.push(std::path::PathBuf::from(self.bucket.location(&relative)));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_name_their_series_and_format() {
        let (series, format, ext) = named_by(".barvault/meta/stocks/1d/AAPL.csv.meta").unwrap();
        assert_eq!(series.map(|s| s.to_string()).as_deref(), Some("stock:AAPL@1d"));
        assert_eq!((format.as_deref(), ext), (Some("csv"), "meta"));
        assert_eq!(named_by(".barvault/meta/stocks/1d/AAPL.parquet.json").map(|n| n.2), Some("json"));
        assert!(named_by(".barvault/meta/stocks/1d/AAPL.csv.tmp").is_none());
        assert!(named_by(".barvault/meta/stocks/1d/x/AAPL.csv.meta").is_none());
        assert!(named_by("stocks/1d/AAPL.csv").is_none());
        let (series, ..) = named_by(".barvault/meta/stocks/1d/aapl.csv.meta").unwrap();
        assert!(series.is_none(), "only the canonical spelling names a series");
    }
}
