//! The storage port: stored versions of a series, read with a version token and written
//! against it.
//!
//! The model is object storage's conditional requests (the `object_store` crate's
//! `get_opts` / `put_opts` with `PutMode::Update`): a [`BarStore::load`] returns the data
//! with an opaque [`Version`] of what was read, and a write names what it expects to
//! replace ([`PutMode`]): nothing ([`PutMode::Create`]), exactly the version read
//! ([`PutMode::Update`]), or whatever is there ([`PutMode::Overwrite`]). A stale token is a
//! [`StorageError::VersionConflict`], never a wrong file, so a read–modify–write is safe
//! without any cache or call order between the two calls: re-read, re-merge, retry.
//!
//! An update may also say that the new version starts with rows of the version read
//! ([`Revision::skipped`], [`Keep`]): the token vouches for those bytes, so a store that
//! can keep them copies them instead of encoding and hashing years of history again.

use std::any::Any;
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::{Bars, SeriesKey, TimeRange};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context::OpContext;
use crate::error::StorageError;
use crate::metadata::{FileMetadata, Fingerprint};

/// An opaque token of one stored version of a series: what a load read, what an update
/// expects to replace.
///
/// Two tokens are equal when their tags are: the tag names the version (for files the
/// identity of the inode and its size and times; for an object store the ETag). A store
/// may attach evidence of its own to a token (for files: MD5 checkpoints along the bytes
/// read, and small files' bytes), which only that store can read and which lets an update
/// keep stored bytes without reading them again. A token from another store, or one whose
/// evidence does not fit, is treated as stale.
#[derive(Clone)]
pub struct Version {
    tag: Arc<str>,
    evidence: Option<Arc<dyn Any + Send + Sync>>,
}

impl Version {
    /// A token with a tag and no evidence.
    pub fn new(tag: impl Into<String>) -> Self {
        Self { tag: Arc::from(tag.into()), evidence: None }
    }

    /// A token carrying the store's own `evidence` of the version's bytes.
    pub fn with_evidence<T: Any + Send + Sync>(tag: impl Into<String>, evidence: T) -> Self {
        Self { tag: Arc::from(tag.into()), evidence: Some(Arc::new(evidence)) }
    }

    /// The name of the version, comparable across loads.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The evidence attached by the store that issued the token, if it is a `T`.
    pub fn evidence<T: Any>(&self) -> Option<&T> {
        self.evidence.as_ref()?.downcast_ref::<T>()
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.tag == other.tag
    }
}

impl Eq for Version {}

impl Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version").field("tag", &self.tag).field("evidence", &self.evidence.is_some()).finish()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag)
    }
}

/// Which rows a load decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rows {
    /// Every row.
    #[default]
    All,
    /// The rows inside the range, exactly.
    Range(TimeRange),
    /// Every row at or after the timestamp and, when the series has one, at least one row
    /// before it; the rows before the ones returned are counted in [`Loaded::skipped`]. A
    /// merge of bars from that timestamp on changes nothing earlier, so a store that can
    /// read a file's last blocks alone ([`Capabilities::tail_reads`]) serves a nightly
    /// update without decoding years of history; any other store returns every row.
    From(i64),
    /// No rows: the version, size and checksum only (proving a file without decoding it).
    Nothing,
}

/// Which stored copy a load reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Which {
    /// The current version.
    #[default]
    Current,
    /// The version the last write replaced, if the store keeps one ([`Capabilities::backups`]).
    Backup,
}

/// How a load establishes the checksum of what it read.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Checksum {
    /// No checksum.
    #[default]
    Skip,
    /// The MD5 of every byte.
    Compute,
    /// The caller's metadata record of the file: when its [`Fingerprint`] matches the bytes
    /// (size and CRC-32), its checksum stands for them; otherwise the MD5 is computed.
    ///
    /// A [`Rows::Range`] load of a file whose record has block checksums
    /// ([`Fingerprint::blocks`](crate::Fingerprint::blocks)) of the recorded size reads
    /// and proves only the footer and the blocks the range overlaps: each must have its
    /// recorded CRC-32 (else the load fails with [`StorageError::Corrupt`] naming the
    /// block), and then the record's checksum stands for the bytes read.
    Record(Box<FileMetadata>),
    /// The MD5 of every byte, and whether this fingerprint describes the file
    /// ([`Loaded::fingerprint_ok`]), from the same pass.
    Audit(Fingerprint),
}

/// Options of one [`BarStore::load`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadOptions {
    pub rows: Rows,
    pub which: Which,
    pub checksum: Checksum,
}

impl LoadOptions {
    /// Every row of the current version, checked against `record` if there is one.
    pub fn checked(record: Option<&FileMetadata>) -> Self {
        Self { checksum: Self::checksum_for(record), ..Self::default() }
    }

    /// The checksum mode for a caller holding `record` (or none).
    pub fn checksum_for(record: Option<&FileMetadata>) -> Checksum {
        match record {
            Some(r) => Checksum::Record(Box::new(r.clone())),
            None => Checksum::Compute,
        }
    }

    pub fn rows(mut self, rows: Rows) -> Self {
        self.rows = rows;
        self
    }

    pub fn which(mut self, which: Which) -> Self {
        self.which = which;
        self
    }

    pub fn checksum(mut self, checksum: Checksum) -> Self {
        self.checksum = checksum;
        self
    }
}

/// What is known about one stored version without reading its content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    /// The file (or `memory://…`, `s3://…`) that holds the version.
    pub location: String,
    /// The store's format name.
    pub format: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
    #[serde(serialize_with = "version_tag")]
    pub version: Version,
}

fn version_tag<S: serde::Serializer>(v: &Version, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.tag())
}

/// The result of a [`BarStore::load`].
#[derive(Debug, Clone)]
pub struct Loaded {
    pub info: FileInfo,
    /// The rows asked for (`None` for [`Rows::Nothing`]), sorted with unique timestamps.
    pub bars: Option<Bars>,
    /// For [`Rows::From`]: rows of the version before `bars`, each earlier than all of them.
    pub skipped: usize,
    /// The first timestamp of the whole version (also when rows were skipped).
    pub first: Option<i64>,
    /// The MD5 (lower-case hex) of the bytes read, under [`LoadOptions::checksum`]; `None`
    /// when skipped or when the store holds no bytes.
    pub checksum: Option<String>,
    /// Under [`Checksum::Audit`]: whether the fingerprint describes the file.
    pub fingerprint_ok: Option<bool>,
    /// Under [`Checksum::Audit`] of a fingerprint with block checksums: the blocks whose
    /// bytes do not have their recorded CRC-32 (empty otherwise).
    pub bad_blocks: Vec<BadBlock>,
}

/// A block of a file whose bytes do not have the CRC-32 its record states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BadBlock {
    /// The row group (0-based, as the record lists them); `None` for the footer.
    pub group: Option<usize>,
    pub offset: u64,
    pub len: u64,
    /// The CRC-32 of the bytes found (`None`: the file ends before the block does).
    pub found: Option<u32>,
    pub recorded: u32,
}

impl fmt::Display for BadBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.group {
            Some(g) => write!(f, "row group {g}")?,
            None => f.write_str("the footer")?,
        }
        write!(f, " (bytes {}..{}): ", self.offset, self.offset.saturating_add(self.len))?;
        match self.found {
            Some(found) => write!(f, "CRC-32 {found:08x}, the record states {:08x}", self.recorded),
            None => f.write_str("the file ends before it does"),
        }
    }
}

impl Loaded {
    /// The version's rows in all (`skipped` + the rows read).
    pub fn rows(&self) -> usize {
        self.skipped + self.bars.as_ref().map_or(0, Bars::len)
    }

    /// The bars read; an empty frame for [`Rows::Nothing`].
    pub fn into_bars(self) -> Bars {
        self.bars.unwrap_or_default()
    }
}

/// What a caller vouches for about the stored version an update replaces, so that a store
/// may keep the stored bytes of the unchanged leading rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// Rows of the version named by the update's token.
    pub stored_rows: usize,
    /// How many leading rows of the new version equal, value for value and with the same
    /// columns, the leading rows of that stored version.
    pub unchanged: usize,
}

/// The content of a write: a new version of a series.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The new version's rows from `skipped` on.
    pub bars: Arc<Bars>,
    /// Leading rows of the stored version named by [`PutMode::Update`]'s token that start
    /// the new version unchanged and are not in `bars` (each earlier than all of them).
    /// Needs an update and [`Capabilities::revisions`].
    pub skipped: usize,
    /// What the caller vouches for, to let the store keep stored bytes; only meaningful
    /// with [`PutMode::Update`]. A store ignores it when it cannot confirm it.
    pub keep: Option<Keep>,
}

impl Revision {
    /// A whole new version.
    pub fn whole(bars: impl Into<Arc<Bars>>) -> Self {
        Self { bars: bars.into(), skipped: 0, keep: None }
    }

    /// The new version's rows in all.
    pub fn rows(&self) -> usize {
        self.skipped + self.bars.len()
    }
}

/// What a write expects to replace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PutMode {
    /// Nothing: fails with [`StorageError::VersionConflict`] if a version exists.
    Create,
    /// Exactly this version: fails with [`StorageError::VersionConflict`] if the stored
    /// version is another one (or none).
    Update(Version),
    /// Whatever is stored (a repair, or a caller that holds the series lock and has
    /// nothing to compare against).
    #[default]
    Overwrite,
}

/// Whether a write keeps the version it replaces as the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupPolicy {
    #[default]
    Keep,
    /// Do not keep the replaced version: it is known to be damaged, and keeping it would
    /// push out a sound older backup.
    Skip,
}

/// Options of one write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutOptions {
    pub mode: PutMode,
    pub backup: BackupPolicy,
}

impl PutOptions {
    pub fn create() -> Self {
        Self { mode: PutMode::Create, backup: BackupPolicy::Keep }
    }

    pub fn update(version: Version) -> Self {
        Self { mode: PutMode::Update(version), backup: BackupPolicy::Keep }
    }

    pub fn overwrite() -> Self {
        Self::default()
    }

    /// Creates when there is no version, else updates `version`.
    pub fn replacing(version: Option<Version>) -> Self {
        match version {
            Some(v) => Self::update(v),
            None => Self::create(),
        }
    }

    pub fn backup(mut self, backup: BackupPolicy) -> Self {
        self.backup = backup;
        self
    }
}

/// The result of a committed write.
#[derive(Debug, Clone)]
pub struct Persisted {
    /// The new version.
    pub info: FileInfo,
    /// Rows in the new version.
    pub rows: usize,
    /// MD5 of the bytes written, computed while writing (`None` for stores without bytes).
    pub checksum: Option<String>,
    /// What the store offers to record with the checksum (see [`Fingerprint`]).
    pub fingerprint: Option<Fingerprint>,
    /// Whether the replaced version was kept as the backup.
    pub backup_created: bool,
    pub duration: Duration,
}

/// A version prepared by [`BarStore::stage`]: durable but not yet visible. Dropping it
/// uncommitted discards it and leaves nothing behind.
#[async_trait]
pub trait StagedWrite: Send + Sync + Debug {
    /// Publishes the staged version, after checking once more that the stored version is
    /// still the one the write expects ([`PutMode`]).
    async fn commit(self: Box<Self>, ctx: &OpContext) -> Result<Persisted, StorageError>;
}

/// What an adapter can do beyond the required operations. The conformance suite reads it
/// and asserts both directions: what is declared works, what is not declared is refused
/// with [`StorageError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Capabilities {
    /// [`Rows::From`] may skip leading rows (else every row is returned).
    pub tail_reads: bool,
    /// Accepts [`Revision::skipped`] rows in updates.
    pub revisions: bool,
    /// Keeps the replaced version, readable with [`Which::Backup`].
    pub backups: bool,
    /// Reports MD5 checksums and fingerprints of the stored bytes.
    pub checksums: bool,
    /// A conditional write is atomic against every other writer of the store, without a
    /// series lock held around it.
    pub atomic_updates: bool,
    /// [`BarStore::list`] is supported.
    pub list: bool,
    /// [`BarStore::remove`] is supported.
    pub remove: bool,
    /// [`BarStore::append`] is supported: it appends rows later than the stored ones to a
    /// version this store wrote, in place. Without it, `append` is refused and the caller
    /// writes whole versions.
    pub appends: bool,
}

/// Keeps the versions of many series (the seed's DataStorageProtocol: persist, load,
/// exists — [`BarStore::file_info`] is `Some` — and file info).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait BarStore: Send + Sync + Debug {
    /// The format name, also the key of the series' metadata records: `csv`, `parquet`,
    /// `memory`.
    fn name(&self) -> &str;

    /// What this adapter supports beyond the required operations.
    fn capabilities(&self) -> Capabilities;

    /// The stored version of `series` as `options` ask; `None` if nothing is stored.
    async fn load(
        &self,
        series: &SeriesKey,
        options: &LoadOptions,
        ctx: &OpContext,
    ) -> Result<Option<Loaded>, StorageError>;

    /// Location, size, modification time and version of what is stored, without reading
    /// it; `None` if nothing is stored.
    async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<FileInfo>, StorageError>;

    /// Prepares `revision` as the next version of `series` without publishing it: loads
    /// keep returning the current version until [`StagedWrite::commit`]. Fails at once with
    /// [`StorageError::VersionConflict`] when the stored version is not what
    /// `options.mode` expects.
    ///
    /// It lets a caller that keeps several copies of a series encode and flush them at the
    /// same time yet publish them one after the other, in its own order.
    async fn stage(
        &self,
        series: &SeriesKey,
        revision: &Revision,
        options: &PutOptions,
        ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError>;

    /// Every stored series ([`Capabilities::list`]).
    async fn list(&self, _ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        Err(StorageError::unsupported("list", self.name()))
    }

    /// Deletes the stored series with its backup; whether anything was there
    /// ([`Capabilities::remove`]).
    async fn remove(&self, _series: &SeriesKey, _ctx: &OpContext) -> Result<bool, StorageError> {
        Err(StorageError::unsupported("remove", self.name()))
    }

    /// Appends `bars`, every one later than the last stored row, to the version `record`
    /// describes, in place: the stored bytes stay where they are and the new rows' bytes
    /// are written after the committed length (`record.file_size`), made durable, and
    /// returned as the new version to record. Any bytes a crashed append left after the
    /// committed length are cut first. `Ok(None)`: this store cannot append these rows to
    /// this version (no fingerprint to resume the checksums from, a stored style the codec
    /// would not continue, a file with more than one name...) and nothing was changed;
    /// the caller then writes a whole version. The caller holds the series lock, or the
    /// store takes it ([`Capabilities::appends`]; refused by default).
    async fn append(
        &self,
        _series: &SeriesKey,
        _bars: &Bars,
        _record: &FileMetadata,
        _ctx: &OpContext,
    ) -> Result<Option<Persisted>, StorageError> {
        Err(StorageError::unsupported("append", self.name()))
    }
}

/// What every [`BarStore`] can do through its required methods, kept out of the port so
/// that an adapter has nothing more to implement or forward (futures' `StreamExt` is the
/// model). Bring it into scope to call `store.persist(...)`.
#[async_trait]
pub trait BarStoreExt: BarStore {
    /// Stages and commits `revision` at once.
    async fn persist(
        &self,
        series: &SeriesKey,
        revision: &Revision,
        options: &PutOptions,
        ctx: &OpContext,
    ) -> Result<Persisted, StorageError> {
        self.stage(series, revision, options, ctx).await?.commit(ctx).await
    }
}

impl<T: BarStore + ?Sized> BarStoreExt for T {}
