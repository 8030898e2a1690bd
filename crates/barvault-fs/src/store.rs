//! The file-backed [`BarStore`], generic over the format so that CSV and Parquet get the
//! same versions, durability and locking code and differ only in their codec.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use barvault_domain::{Bars, SeriesKey};
use barvault_ports::{
    BarCodec, BarStore, Capabilities, FileInfo, FileMetadata, IoStep, LoadOptions, Loaded, OpContext, Persisted,
    PutOptions, Revision, StagedWrite, StorageError,
};
use chrono::{DateTime, Utc};

use crate::atomic::remove_durable;
use crate::fs::{Fs, RealFs};
use crate::layout::Layout;
use crate::lock::FileLocks;
use crate::proof::Evidence;

/// Default wait for a series lock held by another writer.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Stores each series as one file `{base}/{kind}/{period}/{SYMBOL}.{format}`, the version
/// it replaced as `{file}.backup`.
///
/// Loads return a [`Version`](barvault_ports::Version) naming the file's identity; writes
/// go temp file → fsync → backup link → rename → directory fsync and check, right before
/// the rename, that the file is still the version they expect. Used alone, a store takes
/// the series lock around that check and rename, so its conditional writes are atomic
/// against every other barvault writer ([`Capabilities::atomic_updates`]). A caller that
/// holds the series lock itself for a whole read–merge–write (the dual manager) builds
/// the store with [`FileStoreBuilder::locked_by_caller`]. Blocking file work runs on
/// tokio's blocking pool.
#[derive(Debug)]
pub struct FileStore<C: BarCodec + 'static> {
    pub(crate) inner: Arc<Inner<C>>,
}

impl<C: BarCodec + 'static> Clone for FileStore<C> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

#[derive(Debug)]
pub(crate) struct Inner<C> {
    pub(crate) layout: Layout,
    pub(crate) codec: C,
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) keep_backups: bool,
    /// The series lock taken around each commit, unless the caller holds it.
    pub(crate) commit_lock: Option<(FileLocks, Duration)>,
}

/// Configuration of a [`FileStore`]; see [`FileStore::builder`].
#[derive(Debug)]
pub struct FileStoreBuilder<C> {
    base: PathBuf,
    codec: C,
    fs: Arc<dyn Fs>,
    lock_timeout: Duration,
    keep_backups: bool,
    caller_locks: bool,
}

impl<C: BarCodec + 'static> FileStoreBuilder<C> {
    /// The filesystem to use (default [`RealFs`]; a [`crate::FaultyFs`] in failure tests).
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self
    }

    /// How long a commit waits for the series lock held by another writer (default 30 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Whether each write keeps the previous version as `.backup` (default true).
    pub fn keep_backups(mut self, keep: bool) -> Self {
        self.keep_backups = keep;
        self
    }

    /// Commits take no lock: the caller holds the series lock ([`FileLocks`] of the same
    /// base) around every write, as the dual manager does for its read–merge–write.
    pub fn locked_by_caller(mut self) -> Self {
        self.caller_locks = true;
        self
    }

    /// Fails with [`StorageError::Config`] if the codec's format is not a valid extension.
    pub fn build(self) -> Result<FileStore<C>, StorageError> {
        let layout = Layout::new(self.base.clone(), self.codec.format())?;
        let commit_lock =
            (!self.caller_locks).then(|| (FileLocks::new(Arc::clone(&self.fs), self.base), self.lock_timeout));
        Ok(FileStore {
            inner: Arc::new(Inner {
                layout,
                codec: self.codec,
                fs: self.fs,
                keep_backups: self.keep_backups,
                commit_lock,
            }),
        })
    }
}

pub(crate) fn join_error(step: IoStep, path: PathBuf, e: tokio::task::JoinError) -> StorageError {
    StorageError::io(step, path, io::Error::other(format!("background task failed: {e}")))
}

/// Runs blocking file work on tokio's blocking pool, in the caller's span.
pub(crate) async fn off_executor<T: Send + 'static>(
    step: IoStep,
    path: PathBuf,
    span: tracing::Span,
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let on_error = path.clone();
    tokio::task::spawn_blocking(move || span.in_scope(f)).await.map_err(|e| join_error(step, on_error, e))?
}

impl<C: BarCodec + 'static> Inner<C> {
    /// What is at `path`, without following a symbolic link; `None` if nothing.
    pub(crate) fn info_at(&self, path: &Path) -> Result<Option<FileInfo>, StorageError> {
        let meta = match self.fs.metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(IoStep::Stat, path, e)),
        };
        if !meta.is_file() {
            return Err(StorageError::io(IoStep::Stat, path, io::Error::other("not a regular file")));
        }
        Ok(Some(self.file_info(path, &meta, Evidence::identity(path, &meta))))
    }

    pub(crate) fn file_info(&self, path: &Path, meta: &std::fs::Metadata, evidence: Evidence) -> FileInfo {
        FileInfo {
            location: path.display().to_string(),
            format: self.layout.ext().to_string(),
            size: meta.len(),
            modified: meta.modified().ok().map(DateTime::<Utc>::from),
            version: evidence.into_version(),
        }
    }

    fn list(&self) -> Result<Vec<SeriesKey>, StorageError> {
        let scan = self.layout.scan(self.fs.as_ref())?;
        let mut out: Vec<SeriesKey> =
            scan.data.into_iter().filter(|d| d.ext == self.layout.ext()).map(|d| d.series).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Deletes the data file, its backup and its spare: a removed series must not come back
    /// from a backup, and leaves nothing behind. The data file goes last, so a removal
    /// stopped half-way never leaves a backup of a file that no longer exists.
    fn remove(&self, series: &SeriesKey) -> Result<bool, StorageError> {
        let _guard = match &self.commit_lock {
            Some((locks, timeout)) => Some(locks.lock_blocking(series, *timeout)?),
            None => None,
        };
        remove_durable(self.fs.as_ref(), &self.layout.backup_path(series))?;
        remove_durable(self.fs.as_ref(), &self.layout.spare_path(series))?;
        let existed = remove_durable(self.fs.as_ref(), &self.layout.data_path(series))?;
        tracing::info!(path = %self.layout.data_path(series).display(), existed, "removed");
        Ok(existed)
    }
}

impl<C: BarCodec + 'static> FileStore<C> {
    /// A builder over `base` with `codec`, the real filesystem, a 30 s lock timeout,
    /// backups on and commits under the series lock.
    pub fn builder(base: impl Into<PathBuf>, codec: C) -> FileStoreBuilder<C> {
        FileStoreBuilder {
            base: base.into(),
            codec,
            fs: Arc::new(RealFs),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            keep_backups: true,
            caller_locks: false,
        }
    }

    /// A store with the default configuration.
    pub fn new(base: impl Into<PathBuf>, codec: C) -> Result<Self, StorageError> {
        Self::builder(base, codec).build()
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.inner.fs
    }

    pub fn keeps_backups(&self) -> bool {
        self.inner.keep_backups
    }

    /// The data file of `series`.
    pub fn path_of(&self, series: &SeriesKey) -> PathBuf {
        self.inner.layout.data_path(series)
    }

    /// Where the previous version of `series` is kept.
    pub fn backup_path_of(&self, series: &SeriesKey) -> PathBuf {
        self.inner.layout.backup_path(series)
    }
}

#[async_trait]
impl<C: BarCodec + 'static> BarStore for FileStore<C> {
    fn name(&self) -> &str {
        self.inner.codec.format()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tail_reads: true,
            revisions: true,
            backups: self.inner.keep_backups,
            checksums: true,
            atomic_updates: self.inner.commit_lock.is_some(),
            list: true,
            remove: true,
            appends: self.inner.codec.continues_files(),
        }
    }

    async fn load(
        &self,
        series: &SeriesKey,
        options: &LoadOptions,
        ctx: &OpContext,
    ) -> Result<Option<Loaded>, StorageError> {
        if options.which == barvault_ports::Which::Backup && !self.inner.keep_backups {
            return Err(StorageError::unsupported("backup reads", self.name()));
        }
        let span = ctx.span("load", Some(series));
        let path = self.inner.layout.path_for(series, options.which);
        let (inner, options, at) = (Arc::clone(&self.inner), options.clone(), path.clone());
        off_executor(IoStep::Read, path, span, move || inner.load(&at, &options)).await
    }

    async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        let span = ctx.span("file_info", Some(series));
        let (inner, path) = (Arc::clone(&self.inner), self.path_of(series));
        let at = path.clone();
        off_executor(IoStep::Stat, path, span, move || inner.info_at(&at)).await
    }

    async fn stage(
        &self,
        series: &SeriesKey,
        revision: &Revision,
        options: &PutOptions,
        ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        let span = ctx.span("stage", Some(series));
        let (inner, key, revision, options) =
            (Arc::clone(&self.inner), series.clone(), revision.clone(), options.clone());
        let staged = off_executor(IoStep::WriteTemp, self.path_of(series), span, move || {
            crate::write::stage(&inner, &key, &revision, options)
        })
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "stage failed"))?;
        Ok(Box::new(staged))
    }

    async fn list(&self, ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        let span = ctx.span("list", None);
        let inner = Arc::clone(&self.inner);
        off_executor(IoStep::List, self.inner.layout.base().to_path_buf(), span, move || {
            let series = inner.list()?;
            tracing::info!(count = series.len(), "listed");
            Ok(series)
        })
        .await
    }

    async fn remove(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        let span = ctx.span("remove", Some(series));
        let (inner, key) = (Arc::clone(&self.inner), series.clone());
        off_executor(IoStep::Remove, self.path_of(series), span, move || inner.remove(&key)).await
    }

    async fn append(
        &self,
        series: &SeriesKey,
        bars: &Bars,
        record: &FileMetadata,
        ctx: &OpContext,
    ) -> Result<Option<Persisted>, StorageError> {
        if !self.inner.codec.continues_files() {
            return Err(StorageError::unsupported("append", self.name()));
        }
        let span = ctx.span("append", Some(series));
        let (inner, key, bars, record) = (Arc::clone(&self.inner), series.clone(), bars.clone(), record.clone());
        off_executor(IoStep::Append, self.path_of(series), span, move || {
            crate::append::append(&inner, &key, &bars, &record)
        })
        .await
    }
}
