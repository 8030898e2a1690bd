//! The object-backed [`BarStore`], generic over the format like the file store, so that a
//! series' CSV and Parquet objects are byte for byte the files the file store writes.
//!
//! A version is an object's ETag. A load returns it as the token; a write is a PUT
//! conditional on it (`If-Match`), or on there being no object (`If-None-Match: *`), so the
//! conditional write is atomic on the server against every other writer of the bucket, on
//! any machine, without a lock ([`Capabilities::atomic_updates`]). An update first copies
//! the object it replaces to `{key}.backup` on the server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use barvault_domain::SeriesKey;
use barvault_ports::{
    BackupPolicy, BarCodec, BarStore, Capabilities, Checksum, CodecInput, FileInfo, FileMetadata, Fingerprint, IoStep,
    LoadOptions, Loaded, OpContext, Persisted, PutMode, PutOptions, Revision, Rows, StagedWrite, StorageError, Version,
    Which,
};
use bytes::Bytes;
use chrono::Utc;

use crate::bucket::{Bucket, Condition, ObjectInfo, PutError};

const BACKUP_SUFFIX: &str = ".backup";

/// Stores each series as the object `{prefix}/{kind}/{period}/{SYMBOL}.{format}`, the
/// version it replaced as `{key}.backup`.
#[derive(Debug)]
pub struct ObjectBarStore<C: BarCodec + 'static> {
    inner: Arc<Inner<C>>,
}

impl<C: BarCodec + 'static> Clone for ObjectBarStore<C> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

#[derive(Debug)]
struct Inner<C> {
    bucket: Bucket,
    codec: C,
    keep_backups: bool,
}

impl<C: BarCodec + 'static> ObjectBarStore<C> {
    /// A store of `codec`'s format in `bucket`, keeping backups.
    pub fn new(bucket: Bucket, codec: C) -> Self {
        Self::with_backups(bucket, codec, true)
    }

    /// A store that keeps (or not) the replaced version of each object as `{key}.backup`.
    pub fn with_backups(bucket: Bucket, codec: C, keep_backups: bool) -> Self {
        Self { inner: Arc::new(Inner { bucket, codec, keep_backups }) }
    }

    pub fn bucket(&self) -> &Bucket {
        &self.inner.bucket
    }

    /// `{kind}/{period}/{SYMBOL}.{format}` inside the store.
    pub fn relative_key(&self, series: &SeriesKey) -> String {
        format!("{}.{}", series.relative_stem(), self.inner.codec.format())
    }

    /// `s3://bucket/prefix/{kind}/{period}/{SYMBOL}.{format}`.
    pub fn location_of(&self, series: &SeriesKey) -> String {
        self.inner.bucket.location(&self.relative_key(series))
    }
}

impl<C: BarCodec + 'static> Inner<C> {
    fn key(&self, series: &SeriesKey, which: Which) -> String {
        let key = format!("{}.{}", series.relative_stem(), self.codec.format());
        match which {
            Which::Current => key,
            Which::Backup => key + BACKUP_SUFFIX,
        }
    }

    fn file_info(&self, key: &str, info: &ObjectInfo) -> Result<FileInfo, StorageError> {
        Ok(FileInfo {
            location: self.bucket.location(key),
            format: self.codec.format().to_string(),
            size: info.size,
            modified: Some(info.modified),
            version: version_of(&self.bucket, key, info.etag.as_deref())?,
        })
    }

    fn conflict(&self, key: &str, reason: impl Into<String>) -> StorageError {
        StorageError::version_conflict(self.bucket.location(key), reason)
    }

    /// The checksum under `mode` of the `bytes` of an object `info` describes, and (for an
    /// audit) whether the fingerprint describes them. As the file store: a record's
    /// checksum stands for the bytes when their size and CRC-32 match its fingerprint, or
    /// when the object's own recorded MD5 is the record's; otherwise the MD5 is computed.
    fn checksum(bytes: &[u8], info: &ObjectInfo, mode: &Checksum) -> (Option<String>, Option<bool>) {
        match mode {
            Checksum::Skip => (None, None),
            Checksum::Compute => (Some(barvault_fs::md5_hex(bytes)), None),
            Checksum::Record(record) if vouched(record, info, Some(bytes)) => (Some(record.checksum.clone()), None),
            Checksum::Record(_) => (Some(barvault_fs::md5_hex(bytes)), None),
            Checksum::Audit(fingerprint) => {
                let (md5, ok) = barvault_fs::audit_bytes(bytes, fingerprint);
                (Some(md5), Some(ok))
            }
        }
    }

    async fn load(self: &Arc<Self>, series: &SeriesKey, options: &LoadOptions) -> Result<Option<Loaded>, StorageError> {
        let key = self.key(series, options.which);
        // What needs no bytes is answered by a HEAD.
        let head_only = match (&options.rows, &options.checksum) {
            (Rows::Nothing, Checksum::Skip) => true,
            (Rows::Nothing, Checksum::Record(record)) => {
                let Some(info) = self.bucket.head(&key).await? else { return Ok(None) };
                if vouched(record, &info, None) {
                    let info = self.file_info(&key, &info)?;
                    let checksum = Some(record.checksum.clone());
                    return Ok(Some(Loaded {
                        info,
                        bars: None,
                        skipped: 0,
                        first: None,
                        checksum,
                        fingerprint_ok: None,
                        bad_blocks: Vec::new(),
                    }));
                }
                false
            }
            _ => false,
        };
        if head_only {
            let Some(info) = self.bucket.head(&key).await? else { return Ok(None) };
            let info = self.file_info(&key, &info)?;
            return Ok(Some(Loaded {
                info,
                bars: None,
                skipped: 0,
                first: None,
                checksum: None,
                fingerprint_ok: None,
                bad_blocks: Vec::new(),
            }));
        }
        let Some((bytes, info)) = self.bucket.get(&key).await? else { return Ok(None) };
        let file_info = self.file_info(&key, &info)?;
        let location = PathBuf::from(&file_info.location);
        // This store reads every row (no tail reads): `Rows::From` is `Rows::All`.
        let rows = match options.rows {
            Rows::From(_) => Rows::All,
            rows => rows,
        };
        let mode = options.checksum.clone();
        let codec = Arc::clone(self);
        let decoded = tokio::task::spawn_blocking(move || {
            let codec = &codec.codec;
            let (checksum, fingerprint_ok) = Self::checksum(&bytes, &info, &mode);
            let bars = match rows {
                Rows::Nothing => None,
                rows => {
                    let decoded = codec.decode(CodecInput::Bytes(&bytes), rows).map_err(|e| e.at(&location))?;
                    Some(barvault_fs::decoded_into_bars(decoded, rows, &location)?.0)
                }
            };
            Ok::<_, StorageError>((checksum, fingerprint_ok, bars))
        })
        .await
        .map_err(|e| join_error(IoStep::Read, &file_info.location, e))?;
        let (checksum, fingerprint_ok, bars) = decoded?;
        let first = bars.as_ref().and_then(barvault_domain::Bars::first_timestamp);
        tracing::debug!(key, rows = bars.as_ref().map_or(0, |b| b.len()), checked = checksum.is_some(), "loaded");
        Ok(Some(Loaded { info: file_info, bars, skipped: 0, first, checksum, fingerprint_ok, bad_blocks: Vec::new() }))
    }
}

/// Whether a record's checksum stands for an object's bytes without hashing them: the
/// object's own recorded MD5 (or plain-MD5 ETag) is the record's, or the bytes (when
/// read) have the size and CRC-32 of the record's fingerprint.
fn vouched(record: &FileMetadata, info: &ObjectInfo, bytes: Option<&[u8]>) -> bool {
    if record.checksum.len() != 32 {
        return false;
    }
    if info.holds_md5(&record.checksum) == Some(true) && info.size == record.file_size {
        return true;
    }
    match (bytes, &record.fingerprint) {
        (Some(bytes), Some(Fingerprint { crc32, .. })) => {
            bytes.len() as u64 == record.file_size && crc32fast::hash(bytes) == *crc32
        }
        _ => false,
    }
}

fn version_of(bucket: &Bucket, key: &str, etag: Option<&str>) -> Result<Version, StorageError> {
    match etag {
        Some(etag) => Ok(Version::new(etag)),
        None => {
            Err(bucket.unusable(IoStep::Stat, key, "the server gave no ETag, so writes cannot be conditional").into())
        }
    }
}

pub(crate) fn join_error(step: IoStep, location: &str, e: tokio::task::JoinError) -> StorageError {
    StorageError::io(step, location, std::io::Error::other(format!("background task failed: {e}")))
}

/// A version encoded and hashed, not yet written: dropping it leaves nothing behind.
#[derive(Debug)]
struct ObjectStaged<C: BarCodec + 'static> {
    inner: Arc<Inner<C>>,
    series: SeriesKey,
    bytes: Bytes,
    md5: String,
    fingerprint: Fingerprint,
    condition: Condition,
    backup: BackupPolicy,
    rows: usize,
    start: Instant,
}

#[async_trait]
impl<C: BarCodec + 'static> StagedWrite for ObjectStaged<C> {
    async fn commit(self: Box<Self>, ctx: &OpContext) -> Result<Persisted, StorageError> {
        let span = ctx.span("commit", Some(&self.series));
        self.commit_in(span).await
    }
}

impl<C: BarCodec + 'static> ObjectStaged<C> {
    async fn commit_in(self: Box<Self>, span: tracing::Span) -> Result<Persisted, StorageError> {
        use tracing::Instrument;
        async move { self.publish().await }.instrument(span).await
    }

    async fn publish(self: Box<Self>) -> Result<Persisted, StorageError> {
        let inner = &self.inner;
        let key = inner.key(&self.series, Which::Current);
        let on_conflict = |e: PutError| match e {
            PutError::Conflict(reason) => inner.conflict(&key, reason),
            PutError::Failed(e) => StorageError::from(e),
        };
        // Staging checked the condition a moment ago; the PUT checks it again, atomically.
        // A writer that loses the race in between has copied the winner's version to the
        // backup, which is a previous version of the series all the same.
        let keep = inner.keep_backups && self.backup == BackupPolicy::Keep && self.condition != Condition::Absent;
        let backup_created = match keep {
            true => inner.bucket.copy(&key, &(key.clone() + BACKUP_SUFFIX)).await?,
            false => false,
        };
        let size = self.bytes.len() as u64;
        let etag = inner.bucket.put(&key, self.bytes.clone(), &self.md5, &self.condition).await.map_err(on_conflict)?;
        let version = version_of(&inner.bucket, &key, etag.as_deref())?;
        let info = FileInfo {
            location: inner.bucket.location(&key),
            format: inner.codec.format().to_string(),
            size,
            modified: Some(Utc::now()),
            version,
        };
        let persisted = Persisted {
            info,
            rows: self.rows,
            checksum: Some(self.md5.clone()),
            fingerprint: Some(self.fingerprint.clone()),
            backup_created,
            duration: self.start.elapsed(),
        };
        tracing::info!(
            key,
            rows = persisted.rows,
            size,
            backup_created,
            duration_ms = u64::try_from(persisted.duration.as_millis()).unwrap_or(u64::MAX),
            "persisted"
        );
        Ok(persisted)
    }
}

#[async_trait]
impl<C: BarCodec + 'static> BarStore for ObjectBarStore<C> {
    fn name(&self) -> &str {
        self.inner.codec.format()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tail_reads: false,
            revisions: false,
            backups: self.inner.keep_backups,
            checksums: true,
            atomic_updates: true,
            list: true,
            remove: true,
            appends: false,
        }
    }

    async fn load(
        &self,
        series: &SeriesKey,
        options: &LoadOptions,
        ctx: &OpContext,
    ) -> Result<Option<Loaded>, StorageError> {
        if options.which == Which::Backup && !self.inner.keep_backups {
            return Err(StorageError::unsupported("backup reads", self.name()));
        }
        use tracing::Instrument;
        self.inner.load(series, options).instrument(ctx.span("load", Some(series))).await
    }

    async fn file_info(&self, series: &SeriesKey, _ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        let key = self.inner.key(series, Which::Current);
        match self.inner.bucket.head(&key).await? {
            Some(info) => Ok(Some(self.inner.file_info(&key, &info)?)),
            None => Ok(None),
        }
    }

    async fn stage(
        &self,
        series: &SeriesKey,
        revision: &Revision,
        options: &PutOptions,
        ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        if revision.skipped > 0 {
            return Err(StorageError::unsupported("revisions that skip stored rows", self.name()));
        }
        let start = Instant::now();
        let key = self.inner.key(series, Which::Current);
        let condition = match &options.mode {
            PutMode::Create => Condition::Absent,
            PutMode::Update(v) => Condition::Tagged(v.tag().to_string()),
            PutMode::Overwrite => Condition::Any,
        };
        // A stale token fails here, before anything is encoded.
        let location = self.inner.bucket.location(&key);
        self.inner.bucket.check(&key, &condition).await.map_err(|e| match e {
            PutError::Conflict(reason) => StorageError::version_conflict(&location, reason),
            PutError::Failed(e) => e.into(),
        })?;
        let (inner, bars, key_series) = (Arc::clone(&self.inner), Arc::clone(&revision.bars), series.clone());
        let encoded = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(bars.len() * 64);
            inner.codec.encode(&bars, &key_series, &mut out)?;
            let (md5, fingerprint) = barvault_fs::fingerprint_bytes(&out);
            Ok::<_, barvault_ports::CodecError>((out, md5, fingerprint))
        })
        .await
        .map_err(|e| join_error(IoStep::WriteTemp, &location, e))?;
        let (encoded, md5, fingerprint) = encoded.map_err(|e| e.at(&PathBuf::from(&location)))?;
        tracing::debug!(parent: &ctx.span("stage", Some(series)), key, size = encoded.len(), "staged");
        Ok(Box::new(ObjectStaged {
            inner: Arc::clone(&self.inner),
            series: series.clone(),
            bytes: Bytes::from(encoded),
            md5,
            fingerprint,
            condition,
            backup: options.backup,
            rows: revision.rows(),
            start,
        }))
    }

    async fn list(&self, _ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        let layout = barvault_fs::Layout::new("", self.inner.codec.format())?;
        let mut out: Vec<SeriesKey> = self
            .inner
            .bucket
            .list("")
            .await?
            .into_iter()
            .filter_map(|(rel, _)| layout.parse(std::path::Path::new(&rel)))
            .filter(|(_, ext)| ext == self.inner.codec.format())
            .map(|(series, _)| series)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn remove(&self, series: &SeriesKey, _ctx: &OpContext) -> Result<bool, StorageError> {
        let key = self.inner.key(series, Which::Current);
        let existed = self.inner.bucket.head(&key).await?.is_some();
        self.inner.bucket.delete(&key).await?;
        self.inner.bucket.delete(&(key.clone() + BACKUP_SUFFIX)).await?;
        tracing::info!(key, existed, "removed");
        Ok(existed)
    }
}
