//! The seed's DualStorageManager, rebuilt so that no path loses stored rows: one series lock
//! spans read → validate → merge → write both formats → record metadata; the stored state is
//! read with its checksum verified (falling back to the secondary copy when the primary is
//! missing, unparsable or disagrees with its metadata); each copy is written against the
//! version token of what was read, so a copy changed behind the manager's back is a
//! conflict that makes it read and merge again; and a write the merge does not need is
//! skipped unless a copy needs repair.
//!
//! `read` holds the read side (the stored state of a series, loads with fallback), `write`
//! the persist that stages both copies at once and publishes them primary first.

mod append;
mod concurrent;
mod read;
mod write;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use barvault_domain::{Bars, MergePolicy, SeriesKey, TimeRange, ValidationPolicy, ValidationReport};
use barvault_ports::{BarStore, FileInfo, MetadataStore, OpContext, SeriesLocks, StorageError};
use serde::Serialize;
use tracing::Instrument;

use crate::receipt::{PersistOptions, StorageReceipt};

/// How often a persist re-reads and merges again after another writer changed a copy
/// between its read and its write, before it gives up with the conflict.
pub const MAX_ATTEMPTS: usize = 5;

/// Policies of a dual manager.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DualSettings {
    pub lock_timeout: Duration,
    pub validation: ValidationPolicy,
    pub merge_policy: MergePolicy,
    /// Read the secondary copy first when its metadata record has the same generation as
    /// the primary's (so both hold the same bars) — the Parquet copy decodes several times
    /// faster than the CSV and hashes fewer bytes. A copy that fails its checksum or does not
    /// parse is never served; the other copy is tried as usual.
    pub prefer_secondary_reads: bool,
    /// How often a persist re-reads and merges after a version conflict before it gives up
    /// (at least 1); [`MAX_ATTEMPTS`] by default.
    pub max_attempts: usize,
    /// The pause before the first re-read after a conflict, doubled after each further one
    /// (up to 32×) and jittered to between half and all of it, so that writers that
    /// collided do not collide again in step. Zero (the default) retries at once: under a
    /// series lock a conflict means a writer outside the lock, not a race to sit out.
    pub retry_backoff: Duration,
    /// Writers of one series do not exclude each other (object storage, whose series locks
    /// exclude nobody). Every write is then
    /// conditional on the version read, the primary copy is where a version is committed
    /// (a primary that parses is the newest version even when its record lags behind it),
    /// and the secondary copy is brought up to the primary by whichever writer committed
    /// the primary last. See docs/DECISIONS.md, "Writers without locks".
    pub lock_free: bool,
    /// How many rows the primary copy may take by appends in place (bars that all follow
    /// the stored ones) before the secondary copy is written again: between those writes
    /// the secondary lags by the rows appended, which the primary's record states
    /// ([`barvault_ports::Appended`]). 0 writes both copies every time. See
    /// docs/DECISIONS.md, "Appends in place".
    pub append_lag_rows: u64,
}

/// The default of [`DualSettings::append_lag_rows`]: a bit under three days of minute bars
/// (a full write of a 1M-row series' Parquet copy every 4,096 appended bars).
pub const APPEND_LAG_ROWS: u64 = 4096;

impl Default for DualSettings {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(30),
            validation: ValidationPolicy::Strict,
            merge_policy: MergePolicy::KeepLast,
            prefer_secondary_reads: false,
            max_attempts: MAX_ATTEMPTS,
            retry_backoff: Duration::ZERO,
            lock_free: false,
            append_lag_rows: APPEND_LAG_ROWS,
        }
    }
}

impl DualSettings {
    /// Settings for writers that share a store without locks (object storage): 20
    /// attempts, 50 ms first backoff, conditional writes only.
    pub fn lock_free(mut self) -> Self {
        self.lock_free = true;
        self.prefer_secondary_reads = false;
        self.max_attempts = self.max_attempts.max(20);
        if self.retry_backoff.is_zero() {
            self.retry_backoff = Duration::from_millis(50);
        }
        self
    }
}

/// The result of [`DualStorageManager::persist_with_backup`]: the receipt plus what
/// validation removed and which generation was recorded.
#[derive(Debug, Clone, Serialize)]
pub struct PersistOutcome {
    pub receipt: StorageReceipt,
    pub validation: ValidationReport,
    /// The metadata generation recorded by this write; `None` when nothing was written.
    pub generation: Option<u64>,
    /// Copies that were rewritten because they were missing, damaged or stale.
    pub repaired: Vec<String>,
    /// How many times the write found a copy changed since it was read and merged again.
    pub retries: usize,
}

/// The series lock could not be had, so [`DualStorageManager::with_series_lock`] did not
/// run its closure: why.
#[derive(Debug)]
pub(crate) struct NoLock(pub(crate) StorageError);

impl From<NoLock> for StorageError {
    fn from(e: NoLock) -> Self {
        e.0
    }
}

/// A primary store, an optional secondary store in another format, metadata and locks.
#[derive(Debug, Clone)]
pub struct DualStorageManager {
    primary: Arc<dyn BarStore>,
    secondary: Option<Arc<dyn BarStore>>,
    metadata: Arc<dyn MetadataStore>,
    locks: Arc<dyn SeriesLocks>,
    settings: DualSettings,
    base_dir: Option<PathBuf>,
}

impl DualStorageManager {
    pub fn new(
        primary: Arc<dyn BarStore>,
        secondary: Option<Arc<dyn BarStore>>,
        metadata: Arc<dyn MetadataStore>,
        locks: Arc<dyn SeriesLocks>,
        settings: DualSettings,
    ) -> Self {
        Self { primary, secondary, metadata, locks, settings, base_dir: None }
    }

    /// Sets the base directory used to report absolute locations.
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    pub fn settings(&self) -> &DualSettings {
        &self.settings
    }

    pub fn backup_enabled(&self) -> bool {
        self.secondary.is_some()
    }

    pub fn primary(&self) -> &Arc<dyn BarStore> {
        &self.primary
    }

    pub fn secondary(&self) -> Option<&Arc<dyn BarStore>> {
        self.secondary.as_ref()
    }

    /// The stores, primary first.
    pub fn copies(&self) -> Vec<Arc<dyn BarStore>> {
        std::iter::once(Arc::clone(&self.primary)).chain(self.secondary.iter().cloned()).collect()
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    pub fn locks(&self) -> &Arc<dyn SeriesLocks> {
        &self.locks
    }

    /// Relative path of `series` in `format`: `stocks/1d/AAPL.csv`.
    pub fn relative_path(series: &SeriesKey, format: &str) -> String {
        format!("{}.{}", series.relative_stem(), format)
    }

    pub(crate) fn location(&self, series: &SeriesKey, format: &str) -> String {
        let rel = Self::relative_path(series, format);
        match &self.base_dir {
            Some(b) => b.join(rel).display().to_string(),
            None => format!("{format}://{rel}"),
        }
    }

    /// Validates, merges and writes `bars` to both formats under the series lock.
    pub async fn persist_with_backup(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        validation: ValidationPolicy,
        ctx: &OpContext,
    ) -> Result<PersistOutcome, StorageError> {
        let span = ctx.span("persist", Some(series));
        self.persist_inner(bars, series, options, validation, ctx).instrument(span).await
    }

    /// [`DualStorageManager::persist_with_backup`] with the configured validation: the
    /// seed's `persist`.
    pub async fn persist(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError> {
        Ok(self.persist_with_backup(bars, series, options, self.settings.validation, ctx).await?.receipt)
    }

    /// [`DualStorageManager::load_with_fallback`]: the seed's `load`.
    pub async fn load(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<Bars>, StorageError> {
        self.load_with_fallback(series, range, ctx).await
    }

    /// Whether any copy of `series` is stored.
    pub async fn exists(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        Ok(self.file_info(series, ctx).await?.is_some())
    }

    /// Location, size, modification time and version of the primary copy, or of the
    /// secondary when there is no primary; `None` when neither is stored.
    pub async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        if let Some(info) = self.primary.file_info(series, ctx).await? {
            return Ok(Some(info));
        }
        match &self.secondary {
            Some(s) => s.file_info(series, ctx).await,
            None => Ok(None),
        }
    }

    /// Every series stored in either format.
    pub async fn list(&self, ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        let mut all = self.primary.list(ctx).await?;
        if let Some(s) = &self.secondary {
            all.extend(s.list(ctx).await?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Deletes both copies, their backups and their records under the series lock; whether
    /// anything was stored. The records go first: a removal stopped half-way (a SIGKILL)
    /// leaves either files without records, which are served and which `recover` records
    /// again, or nothing; never a record whose every copy is gone, which `recover` would
    /// call unrecoverable.
    pub async fn remove(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        let _guard = self.locks.lock(series, self.settings.lock_timeout, ctx).await?;
        self.remove_locked(series, ctx).await
    }

    /// [`Self::remove`], under the lock the caller holds.
    pub(super) async fn remove_locked(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        self.metadata.remove(series, self.primary.name(), ctx).await?;
        if let Some(s) = &self.secondary {
            self.metadata.remove(series, s.name(), ctx).await?;
        }
        let mut removed = self.primary.remove(series, ctx).await?;
        if let Some(s) = &self.secondary {
            removed |= s.remove(series, ctx).await?;
        }
        Ok(removed)
    }

    /// Runs `f` under the series lock of `series` (taken with the configured timeout and
    /// released when `f` is done) and returns what `f` returns.
    ///
    /// This is the one way a reader or maintenance operation looks again at a series it
    /// first looked at without the lock: under the lock every copy and record is as its
    /// last writer left it. When the lock cannot be had (a writer holding it past the
    /// timeout, a store this process may not lock) `f` does not run and the error comes
    /// back as [`NoLock`], apart from any error of `f`'s own, so a caller can keep its
    /// first look (a load, `verify`) or give up (`recover`, through `?`).
    pub(crate) async fn with_series_lock<T, F, Fut>(
        &self,
        series: &SeriesKey,
        ctx: &OpContext,
        f: F,
    ) -> Result<T, NoLock>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let guard = self.locks.lock(series, self.settings.lock_timeout, ctx).await.map_err(NoLock)?;
        let out = f().await;
        drop(guard);
        Ok(out)
    }

    /// Whether any file or metadata record of `series` exists, in any format.
    pub(crate) async fn has_trace(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        if self.exists(series, ctx).await? || self.metadata.get(series, self.primary.name(), ctx).await?.is_some() {
            return Ok(true);
        }
        match &self.secondary {
            Some(s) => Ok(self.metadata.get(series, s.name(), ctx).await?.is_some()),
            None => Ok(false),
        }
    }
}
