//! The [`Housekeeping`] port on a bucket: data objects, backups, foreign keys in the layout,
//! and the multipart uploads interrupted writers left pending (the bucket's leftovers:
//! their parts are billed until they are aborted). A bucket has no lock files and no
//! notion of free space.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use barvault_domain::SeriesKey;
use barvault_fs::Layout;
use barvault_ports::{Capacity, Entry, EntryKind, Housekeeping, IoStep, OpContext, StorageError, Survey};
use bytes::Bytes;
use chrono::Utc;

use crate::bucket::{Bucket, Condition};

const UPLOAD_MARK: &str = "?uploadId=";

/// Housekeeping of the store under one bucket and prefix.
#[derive(Debug, Clone)]
pub struct ObjectHousekeeping {
    bucket: Bucket,
}

impl ObjectHousekeeping {
    pub fn new(bucket: Bucket) -> Self {
        Self { bucket }
    }

    fn entry(&self, kind: EntryKind, relative: &str, series: Option<SeriesKey>, format: Option<String>) -> Entry {
        Entry {
            kind,
            location: PathBuf::from(self.bucket.location(relative)),
            series,
            format,
            size: 0,
            modified: None,
            stale: false,
            detail: String::new(),
        }
    }

    /// The relative key and upload id of a leftover's location (`s3://b/k?uploadId=ID`).
    fn upload_of(&self, location: &Path) -> Option<(String, String)> {
        let text = location.to_str()?;
        let (url, id) = text.split_once(UPLOAD_MARK)?;
        let key = url.strip_prefix(&format!("s3://{}/", self.bucket.url().bucket))?;
        Some((self.bucket.relative(key)?.to_string(), id.to_string()))
    }

    /// The entry of one listed key: data, backup or foreign; `None` for keys that are not
    /// the layout's business (records, other tools' files).
    fn classify(&self, relative: &str, size: u64, modified: chrono::DateTime<Utc>) -> Option<Entry> {
        let layout = Layout::new("", "csv").ok()?;
        if relative.starts_with(".barvault/") {
            return None;
        }
        let (path, is_backup) = match relative.strip_suffix(".backup") {
            Some(data) => (data, true),
            None => (relative, false),
        };
        let mut parts = path.splitn(4, '/');
        let (kind, period, name) = (parts.next()?, parts.next()?, parts.next()?);
        let nested = parts.next();
        let (series, format) = layout.parse(Path::new(&format!("{kind}/{period}/{name}")))?;
        if let Some(below) = nested {
            // `stocks/1d/AAPL.csv/x`: the data object's name is a folder here.
            let mut e = self.entry(EntryKind::Foreign, relative, Some(series), None);
            e.detail =
                format!("a key below a data object's name ({below:?} under {name}): a folder where a file belongs");
            return Some(e);
        }
        let kind = if is_backup { EntryKind::Backup } else { EntryKind::Data };
        let mut e = self.entry(kind, relative, Some(series.clone()), Some(format.clone()));
        e.size = size;
        e.modified = Some(modified);
        e.detail = match kind {
            EntryKind::Backup => format!("previous version of {}.{format}", series.instrument.symbol()),
            _ => format!("{format} copy of {series}"),
        };
        Some(e)
    }

    async fn uploads(&self) -> Result<Vec<Entry>, StorageError> {
        let layout = Layout::new("", "csv")?;
        let now = Utc::now();
        let stale_after = chrono::Duration::from_std(self.bucket.stale_upload_age()).unwrap_or(chrono::Duration::MAX);
        let mut out = Vec::new();
        for upload in self.bucket.pending_uploads().await? {
            let Some(relative) = self.bucket.relative(&upload.key) else { continue };
            let parsed = layout.parse(Path::new(relative.strip_suffix(".backup").unwrap_or(relative)));
            let age = upload.initiated.map(|t| now - t);
            let stale = age.is_none_or(|a| a >= stale_after);
            let mut e = self.entry(EntryKind::Leftover, relative, parsed.clone().map(|p| p.0), parsed.map(|p| p.1));
            e.location = PathBuf::from(format!("{}{UPLOAD_MARK}{}", self.bucket.location(relative), upload.id));
            e.modified = upload.initiated;
            e.stale = stale;
            e.detail = match age {
                Some(a) => format!("pending multipart upload of {relative} ({} s old)", a.num_seconds().max(0)),
                None => format!("pending multipart upload of {relative}"),
            };
            out.push(e);
        }
        Ok(out)
    }
}

#[async_trait]
impl Housekeeping for ObjectHousekeeping {
    async fn survey(&self, _ctx: &OpContext) -> Result<Survey, StorageError> {
        let mut entries: Vec<Entry> = self
            .bucket
            .list("")
            .await?
            .into_iter()
            .filter_map(|(rel, info)| self.classify(&rel, info.size, info.modified))
            .collect();
        entries.extend(self.uploads().await?);
        entries.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(Survey { entries })
    }

    async fn discard(&self, entry: &Entry, _ctx: &OpContext) -> Result<bool, StorageError> {
        match entry.kind {
            EntryKind::Leftover => {
                let Some((relative, id)) = self.upload_of(&entry.location) else {
                    return Err(StorageError::invalid(format!(
                        "{}: not a pending upload of this store",
                        entry.location.display()
                    )));
                };
                self.bucket.abort(&relative, &id).await?;
                tracing::info!(key = relative, upload = id, "aborted pending multipart upload");
                Ok(true)
            }
            EntryKind::Backup => {
                let text = entry.location.display().to_string();
                let prefix = format!("s3://{}/", self.bucket.url().bucket);
                let Some(relative) = text.strip_prefix(&prefix).and_then(|k| self.bucket.relative(k)) else {
                    return Err(StorageError::invalid(format!("{text}: not an object of this store")));
                };
                let existed = self.bucket.head(relative).await?.is_some();
                self.bucket.delete(relative).await?;
                Ok(existed)
            }
            EntryKind::Data | EntryKind::Foreign | EntryKind::Lock => Err(StorageError::invalid(format!(
                "{}: housekeeping of a bucket removes pending uploads and backups only, not {:?} entries",
                entry.location.display(),
                entry.kind
            ))),
        }
    }

    async fn capacity(&self, _ctx: &OpContext) -> Result<Option<Capacity>, StorageError> {
        Ok(None)
    }

    async fn probe(&self, _ctx: &OpContext) -> Result<(), StorageError> {
        let relative = format!(".barvault/health-probe.{}", uuid::Uuid::new_v4().simple());
        let written = self
            .bucket
            .put(&relative, Bytes::from_static(b"probe"), &barvault_fs::md5_hex(b"probe"), &Condition::Absent)
            .await;
        let removed = self.bucket.delete(&relative).await;
        match written {
            Ok(_) => removed.map_err(Into::into),
            Err(crate::bucket::PutError::Conflict(reason)) => {
                Err(StorageError::io(IoStep::WriteTemp, self.bucket.location(&relative), std::io::Error::other(reason)))
            }
            Err(crate::bucket::PutError::Failed(e)) => Err(e.into()),
        }
    }
}
