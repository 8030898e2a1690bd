// mockall's generated expectation closures return the (large) StorageError by value;
// the trait signatures are fixed, so the lint is silenced for the mocks only.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::{Bars, MergePolicy, MergeStats, SeriesKey, TimeRange};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context::OpContext;
use crate::error::StorageError;
use crate::metadata::{FileMetadata, Fingerprint};

/// Whether `persist` merges with what is stored or replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Read what is stored, merge the new bars in under the policy, write the result.
    #[default]
    Merge,
    /// Write exactly the given bars; what was stored survives only as the `.backup`.
    /// Writes nothing when the stored bars are already equal.
    Replace,
    /// Write exactly the given bars without reading or comparing what is stored: for a
    /// caller that holds the series lock and has already merged (the dual manager).
    Overwrite,
}

/// Whether a write keeps the version it replaces as `{file}.backup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupPolicy {
    #[default]
    Keep,
    /// Do not keep the replaced file: it is known to be damaged, and keeping it would
    /// overwrite a sound older backup.
    Skip,
}

/// Options of one `persist` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PersistOptions {
    pub mode: WriteMode,
    pub policy: MergePolicy,
    pub backup: BackupPolicy,
}

impl PersistOptions {
    pub fn merge(policy: MergePolicy) -> Self {
        Self { mode: WriteMode::Merge, policy, backup: BackupPolicy::Keep }
    }

    pub fn replace() -> Self {
        Self { mode: WriteMode::Replace, ..Self::default() }
    }

    pub fn overwrite(backup: BackupPolicy) -> Self {
        Self { mode: WriteMode::Overwrite, policy: MergePolicy::default(), backup }
    }
}

/// What happened to the secondary (backup-format) copy of a dual write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SecondaryStatus {
    Written { format: String, location: String },
    Unchanged { format: String, location: String },
    Failed { format: String, location: String, error: String },
}

/// The outcome of a successful `persist`.
#[derive(Debug, Clone, Serialize)]
pub struct StorageReceipt {
    /// The primary file (or `memory://…` for the in-memory store).
    pub location: String,
    pub format: String,
    /// Rows in the stored series after the call.
    pub rows_written: usize,
    /// False when the merge changed nothing and no file was touched.
    pub written: bool,
    pub merge: MergeStats,
    /// Whether the previous version was kept as `.backup`.
    pub backup_created: bool,
    /// MD5 of the bytes written, computed while writing (absent when nothing was written
    /// or the store has no bytes).
    pub checksum_md5: Option<String>,
    pub file_size: Option<u64>,
    /// What the store offers to record with the checksum (see [`Fingerprint`]).
    #[serde(skip)]
    pub fingerprint: Option<Fingerprint>,
    /// Set by dual stores.
    pub secondary: Option<SecondaryStatus>,
    pub correlation_id: String,
    pub timestamp: DateTime<Utc>,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
}

impl StorageReceipt {
    /// A receipt for a call that wrote no file (yet): the caller fills in what it writes.
    pub fn unwritten(
        location: impl Into<String>,
        format: impl Into<String>,
        rows: usize,
        merge: MergeStats,
        ctx: &OpContext,
    ) -> Self {
        Self {
            location: location.into(),
            format: format.into(),
            rows_written: rows,
            written: false,
            merge,
            backup_created: false,
            checksum_md5: None,
            file_size: None,
            fingerprint: None,
            secondary: None,
            correlation_id: ctx.correlation_id().to_string(),
            timestamp: Utc::now(),
            duration: Duration::ZERO,
        }
    }
}

mod duration_secs {
    use serde::Serializer;
    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// What is known about the stored file of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    pub location: String,
    pub format: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
    pub rows: usize,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub columns: Vec<String>,
}

/// Keeps the bars of many series (the seed's DataStorageProtocol).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait BarStore: Send + Sync + Debug {
    /// A short name for messages: `csv`, `parquet`, `memory`, `dual`.
    fn name(&self) -> &str;

    /// Stores `bars` for `series`: merged with what is stored (default) or replacing it.
    /// Persisting bars that change nothing writes nothing (`receipt.written == false`).
    async fn persist(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError>;

    /// The stored bars of `series`, restricted to `range` if given; `None` if nothing is stored.
    async fn load(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<Bars>, StorageError>;

    /// Whether anything is stored for `series`.
    async fn exists(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError>;

    /// Size, rows and range of the stored file; `None` if nothing is stored.
    async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<FileInfo>, StorageError>;

    /// Loads the series together with the MD5 (lower-case hex) of the bytes it was decoded
    /// from, computed in the same read, so a caller can compare it with recorded metadata
    /// without reading the file twice. Stores without bytes return `None` as checksum.
    async fn load_with_checksum(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<(Bars, Option<String>)>, StorageError> {
        Ok(self.load(series, range, ctx).await?.map(|b| (b, None)))
    }

    /// [`BarStore::load_with_checksum`] by a caller that holds the metadata record of the
    /// stored file. When the record carries a [`Fingerprint`] and the bytes read match its
    /// size and CRC-32, a store may return the record's checksum instead of computing the
    /// MD5; in every other case it returns the MD5 of the bytes. The default ignores the
    /// record.
    async fn load_with_checksum_against<'a>(
        &'a self,
        series: &'a SeriesKey,
        range: Option<TimeRange>,
        _record: Option<&'a FileMetadata>,
        ctx: &'a OpContext,
    ) -> Result<Option<(Bars, Option<String>)>, StorageError> {
        self.load_with_checksum(series, range, ctx).await
    }

    /// The MD5 of the stored file's bytes without decoding it; `None` if nothing is stored. Optional.
    async fn checksum(&self, _series: &SeriesKey, _ctx: &OpContext) -> Result<Option<String>, StorageError> {
        Err(StorageError::unsupported("checksum", self.name()))
    }

    /// [`BarStore::checksum`] by a caller that holds the metadata record of the stored
    /// file, with the same licence as [`BarStore::load_with_checksum_against`]. The default
    /// ignores the record.
    async fn checksum_against<'a>(
        &'a self,
        series: &'a SeriesKey,
        _record: Option<&'a FileMetadata>,
        ctx: &'a OpContext,
    ) -> Result<Option<String>, StorageError> {
        self.checksum(series, ctx).await
    }

    /// The stored rows of `series` from about `from` on, with the MD5 of the file they were
    /// read from, under the same licence as [`BarStore::load_with_checksum_against`];
    /// `None` if nothing is stored. Optional: a store that can read a file's last rows
    /// without decoding the rest returns at least every row at or after `from` and, when
    /// the series has one, a row before it (see [`SeriesTail`]).
    ///
    /// A merge of bars that start at `from` changes nothing earlier, so a nightly update
    /// reads its last block of rows instead of the whole history, and stages the result
    /// with [`BarStore::stage_tail`].
    async fn load_tail_against<'a>(
        &'a self,
        _series: &'a SeriesKey,
        _from: i64,
        _record: Option<&'a FileMetadata>,
        _ctx: &'a OpContext,
    ) -> Result<Option<(SeriesTail, Option<String>)>, StorageError> {
        Err(StorageError::unsupported("load_tail", self.name()))
    }

    /// [`BarStore::stage_with`] of a new version given by its last rows: the version's
    /// first `tail.skipped` rows are the stored version's first rows, unchanged, and
    /// `tail.bars` are the rest. `hint` counts rows of the whole versions. Only a store
    /// that can keep the stored bytes of those first rows can stage this; `Ok(None)` when
    /// it cannot here (the stored file is not the one proven, its bytes do not match), and
    /// the caller stages the whole bars instead. Optional.
    async fn stage_tail(
        &self,
        _tail: &SeriesTail,
        _series: &SeriesKey,
        _hint: StageHint,
        _ctx: &OpContext,
    ) -> Result<Option<Box<dyn StagedWrite>>, StorageError> {
        Err(StorageError::unsupported("stage_tail", self.name()))
    }

    /// Every stored series. Optional.
    async fn list(&self, _ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        Err(StorageError::unsupported("list", self.name()))
    }

    /// Deletes the stored series; returns whether anything was there. Optional.
    async fn remove(&self, _series: &SeriesKey, _ctx: &OpContext) -> Result<bool, StorageError> {
        Err(StorageError::unsupported("remove", self.name()))
    }

    /// Prepares `bars` as the next whole content of `series` (an overwrite: no merge, no
    /// comparison) without publishing it: loads keep returning the current version until
    /// [`StagedWrite::commit`]. Dropping the staged write uncommitted discards it.
    ///
    /// Optional. It lets a caller that keeps several copies of a series encode and flush
    /// them at the same time yet publish them one after the other, in its own order.
    async fn stage(
        &self,
        _bars: &Bars,
        _series: &SeriesKey,
        _ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        Err(StorageError::unsupported("stage", self.name()))
    }

    /// [`BarStore::stage`], told how `bars` relates to what is stored now, so that a store
    /// can reuse the bytes it holds for the unchanged leading rows instead of encoding and
    /// hashing them again (a nightly update changes the last rows of a long history).
    /// The default ignores the hint. A store must produce exactly the bytes a plain
    /// `stage` would have, or bytes that load back as exactly `bars`; when it cannot
    /// confirm the hint against its own evidence it must ignore it.
    async fn stage_with(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        _hint: StageHint,
        ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        self.stage(bars, series, ctx).await
    }
}

/// A series given by its last rows: rows `skipped..` are `bars`; the first `skipped` rows
/// are stored and not in memory, each earlier than every row of `bars`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesTail {
    pub skipped: usize,
    /// The first timestamp of the whole series (`None` for an empty one).
    pub first: Option<i64>,
    pub bars: Bars,
}

impl SeriesTail {
    /// A whole series: nothing skipped.
    pub fn whole(bars: Bars) -> Self {
        Self { skipped: 0, first: bars.first_timestamp(), bars }
    }

    /// Rows of the whole series.
    pub fn len(&self) -> usize {
        self.skipped + self.bars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn last_timestamp(&self) -> Option<i64> {
        self.bars.last_timestamp()
    }
}

/// What a caller of [`BarStore::stage_with`] knows about the new content of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageHint {
    /// Rows of the version the store holds now, as the caller last loaded and verified it.
    pub stored_rows: usize,
    /// How many leading rows of the new bars equal, value for value and with the same
    /// columns, the leading rows of that stored version.
    pub unchanged_prefix: usize,
}

/// A version of a series prepared by [`BarStore::stage`]: durable but not yet visible.
///
/// A store that supports staging keeps the series' write lock from `stage` until the
/// staged write is committed or dropped, so nothing else is written in between.
#[async_trait]
pub trait StagedWrite: Send + Sync + Debug {
    /// Publishes the staged version, keeping the replaced one as `.backup` under `backup`
    /// (decided only now, so a caller can still be proving the old version sound while the
    /// new one is staged). The receipt is that of an overwrite: it carries the checksum and
    /// size of what was staged, and `written == true`.
    async fn commit(self: Box<Self>, backup: BackupPolicy, ctx: &OpContext) -> Result<StorageReceipt, StorageError>;
}
