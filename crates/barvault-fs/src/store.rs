//! The file-backed [`BarStore`], generic over the format so that CSV and Parquet get the
//! same locking, merge and durability code and differ only in their codec.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use barvault_domain::{Bars, DomainError, ExtraColumn, MergePolicy, MergeStats, RawBars, SeriesKey, TimeRange, merge};
use barvault_ports::{
    BackupPolicy, BarCodec, BarStore, CodecError, CodecInput, FileInfo, FileMetadata, Fingerprint, IoStep, OpContext,
    PersistOptions, SeriesTail, StageHint, StagedWrite, StorageError, StorageReceipt, WriteMode,
};
use chrono::{DateTime, Utc};

use crate::atomic::{Staged, WriteOutcome, remove_durable, stage_atomic, stage_atomic_after, write_atomic};
use crate::fs::{Fs, RealFs};
use crate::layout::{Layout, Scan};
use crate::lock::{FileLockGuard, FileLocks, LockScope};
use crate::reuse::{Proofs, Reuse, check_fingerprint, prove_against, prove_bytes_against, reuse};

/// A whole file read once and shared with the proof kept of it.
type SharedBytes = Arc<Vec<u8>>;

/// Default wait for a series lock held by another writer.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Stores each series as one file `{base}/{kind}/{period}/{SYMBOL}.{format}`.
///
/// Every write goes through [`write_atomic`] under the series' cross-process lock
/// ([`LockScope::Format`]); blocking file work runs on tokio's blocking pool.
#[derive(Debug)]
pub struct FileStore<C: BarCodec + 'static> {
    inner: Arc<Inner<C>>,
}

impl<C: BarCodec + 'static> Clone for FileStore<C> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

#[derive(Debug)]
struct Inner<C> {
    layout: Layout,
    codec: C,
    fs: Arc<dyn Fs>,
    locks: FileLocks,
    lock_timeout: Duration,
    keep_backups: bool,
    /// Checksum proofs of files about to be replaced, for [`crate::reuse`].
    proofs: Proofs,
}

/// Configuration of a [`FileStore`]; see [`FileStore::builder`].
#[derive(Debug)]
pub struct FileStoreBuilder<C> {
    base: PathBuf,
    codec: C,
    fs: Arc<dyn Fs>,
    lock_timeout: Duration,
    keep_backups: bool,
}

impl<C: BarCodec + 'static> FileStoreBuilder<C> {
    /// The filesystem to use (default [`RealFs`]; a [`crate::FaultyFs`] in failure tests).
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self
    }

    /// How long `persist` and `remove` wait for another writer (default 30 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Whether each write keeps the previous version as `.backup` (default true).
    pub fn keep_backups(mut self, keep: bool) -> Self {
        self.keep_backups = keep;
        self
    }

    /// Fails with [`StorageError::Config`] if the codec's format is not a valid extension.
    pub fn build(self) -> Result<FileStore<C>, StorageError> {
        let layout = Layout::new(self.base, self.codec.format())?;
        let locks = FileLocks::new(Arc::clone(&self.fs), layout.clone(), LockScope::Format);
        Ok(FileStore {
            inner: Arc::new(Inner {
                layout,
                codec: self.codec,
                fs: self.fs,
                locks,
                lock_timeout: self.lock_timeout,
                keep_backups: self.keep_backups,
                proofs: Proofs::default(),
            }),
        })
    }
}

fn join_error(step: IoStep, path: PathBuf, e: tokio::task::JoinError) -> StorageError {
    StorageError::io(step, path, io::Error::other(format!("background task failed: {e}")))
}

async fn off_executor<T: Send + 'static>(
    step: IoStep,
    path: PathBuf,
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| join_error(step, path, e))?
}

fn merge_error(series: &SeriesKey, e: DomainError) -> StorageError {
    StorageError::merge_failed(series, e)
}

/// Completes the receipt of a write that `outcome` reports done, and logs it.
fn written_receipt(
    mut receipt: StorageReceipt,
    outcome: &WriteOutcome,
    start: Instant,
    waited: Duration,
) -> StorageReceipt {
    receipt.written = true;
    receipt.backup_created = outcome.backup_created;
    receipt.checksum_md5 = Some(outcome.md5_hex.clone());
    receipt.fingerprint = Some(outcome.fingerprint.clone());
    receipt.file_size = Some(outcome.size);
    receipt.timestamp = Utc::now();
    receipt.duration = start.elapsed();
    tracing::info!(
        path = %receipt.location,
        rows = receipt.rows_written,
        rows_added = receipt.merge.rows_added,
        rows_changed = receipt.merge.rows_changed,
        size = outcome.size,
        backup_created = outcome.backup_created,
        lock_wait_ms = waited.as_millis() as u64,
        duration_ms = receipt.duration.as_millis() as u64,
        "persisted"
    );
    receipt
}

/// An overwrite staged by [`FileStore`]: the temp file is fsynced and the format lock is
/// held until `commit` publishes it or drop removes it.
#[derive(Debug)]
struct FileStaged<C: BarCodec + 'static> {
    inner: Arc<Inner<C>>,
    staged: Option<Staged>,
    guard: Option<FileLockGuard>,
    series: SeriesKey,
    rows: usize,
    start: Instant,
    waited: Duration,
}

impl<C: BarCodec + 'static> Drop for FileStaged<C> {
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            tracing::debug!(path = %staged.target().display(), "staged write dropped; temp file removed");
            staged.discard(self.inner.fs.as_ref());
        }
        // The lock is released only after the temp file is gone.
        self.guard.take();
    }
}

#[async_trait]
impl<C: BarCodec + 'static> StagedWrite for FileStaged<C> {
    async fn commit(
        mut self: Box<Self>,
        backup: BackupPolicy,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError> {
        let Some(staged) = self.staged.take() else {
            return Err(StorageError::invalid("staged write committed twice"));
        };
        let path = staged.target().to_path_buf();
        let stats = MergeStats { new_rows: self.rows, result_rows: self.rows, ..MergeStats::default() };
        let receipt =
            StorageReceipt::unwritten(path.display().to_string(), self.inner.layout.ext(), self.rows, stats, ctx);
        let span = ctx.span("commit", Some(&self.series));
        off_executor(IoStep::Rename, path, move || {
            span.in_scope(|| {
                let keep_backup = self.inner.keep_backups && backup == BackupPolicy::Keep;
                let outcome = staged.commit(self.inner.fs.as_ref(), keep_backup)?;
                let receipt = written_receipt(receipt, &outcome, self.start, self.waited);
                // Dropping `self` releases the lock, after the rename is durable.
                drop(self);
                Ok(receipt)
            })
        })
        .await
    }
}

/// Keeps only the rows of `raw` inside `range` (codecs may skip rows, callers must trim).
fn trim_raw(raw: RawBars, range: &TimeRange) -> Result<RawBars, DomainError> {
    if raw.ts.iter().all(|&t| range.contains(t)) {
        return Ok(raw);
    }
    let keep: Vec<bool> = raw.ts.iter().map(|&t| range.contains(t)).collect();
    fn pick<T: Copy>(v: &[T], keep: &[bool]) -> Vec<T> {
        v.iter().zip(keep).filter(|(_, k)| **k).map(|(x, _)| *x).collect()
    }
    let extras = raw
        .extras
        .iter()
        .map(|e| ExtraColumn::new(e.name(), pick(e.values(), &keep)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RawBars {
        ts: pick(&raw.ts, &keep),
        open: pick(&raw.open, &keep),
        high: pick(&raw.high, &keep),
        low: pick(&raw.low, &keep),
        close: pick(&raw.close, &keep),
        volume: pick(&raw.volume, &keep),
        extras,
    })
}

impl<C: BarCodec + 'static> Inner<C> {
    /// Decodes the file at `path`; `None` if it does not exist. Also returns the size and
    /// modification time of the very file that was read.
    fn read_raw(
        &self,
        path: &Path,
        range: Option<TimeRange>,
    ) -> Result<Option<(RawBars, std::fs::Metadata)>, StorageError> {
        let file = match self.fs.open_read(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(IoStep::Read, path, e)),
        };
        let meta = file.metadata().map_err(|e| StorageError::io(IoStep::Stat, path, e))?;
        if !meta.is_file() {
            return Err(StorageError::io(IoStep::Read, path, io::Error::other("not a regular file")));
        }
        let raw = self.codec.decode(CodecInput::File(file), range).map_err(|e| e.at(path))?;
        let raw = match range {
            Some(r) => trim_raw(raw, &r).map_err(|e| CodecError::Domain(e).at(path))?,
            None => raw,
        };
        Ok(Some((raw, meta)))
    }

    /// The whole file at `path` and its MD5 (the record's, if its fingerprint vouches for
    /// the bytes), or `None` if there is no file. The proof taken along is kept for a
    /// staged write that may keep the file's leading blocks (see [`crate::reuse`]).
    fn read_bytes(
        &self,
        path: &Path,
        record: Option<&FileMetadata>,
    ) -> Result<Option<(SharedBytes, String)>, StorageError> {
        let mut file = match self.fs.open_read(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(IoStep::Read, path, e)),
        };
        let meta = file.metadata().map_err(|e| StorageError::io(IoStep::Stat, path, e))?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(|e| StorageError::io(IoStep::Read, path, e))?;
        let bytes = Arc::new(bytes);
        let (md5, proof) = prove_bytes_against(path, &meta, &bytes, record);
        self.proofs.put(proof);
        Ok(Some((bytes, md5)))
    }

    /// Decodes the file at `path` from one read that also yields its MD5 (see [`Inner::read_bytes`]).
    fn read_bars_checked(
        &self,
        path: &Path,
        range: Option<TimeRange>,
        record: Option<&FileMetadata>,
    ) -> Result<Option<(Bars, String)>, StorageError> {
        let Some((bytes, md5)) = self.read_bytes(path, record)? else {
            return Ok(None);
        };
        let raw = self.codec.decode(CodecInput::Bytes(&bytes), range).map_err(|e| e.at(path))?;
        let raw = match range {
            Some(r) => trim_raw(raw, &r).map_err(|e| CodecError::Domain(e).at(path))?,
            None => raw,
        };
        let (bars, _) = raw.into_bars(MergePolicy::KeepLast).map_err(|e| CodecError::Domain(e).at(path))?;
        Ok(Some((bars, md5)))
    }

    /// The rows of the file at `path` from about `from` on (see [`BarCodec::decode_tail`]),
    /// from one read that also yields its MD5, as [`Inner::read_bars_checked`] does.
    fn read_tail_checked(
        &self,
        path: &Path,
        from: i64,
        record: Option<&FileMetadata>,
    ) -> Result<Option<(SeriesTail, String)>, StorageError> {
        let Some((bytes, md5)) = self.read_bytes(path, record)? else {
            return Ok(None);
        };
        let tail = match self.codec.decode_tail(&bytes, from) {
            Some(tail) => tail.map_err(|e| e.at(path))?,
            None => return Err(StorageError::unsupported("load_tail", self.codec.format())),
        };
        let (bars, _) = tail.raw.into_bars(MergePolicy::KeepLast).map_err(|e| CodecError::Domain(e).at(path))?;
        let first = if tail.skipped == 0 { bars.first_timestamp() } else { tail.first };
        Ok(Some((SeriesTail { skipped: tail.skipped, first, bars }, md5)))
    }

    /// The MD5 of the file at `path`, streamed (the record's, if its fingerprint vouches
    /// for the bytes); with `keep`, the proof is kept for a staged write that may reuse the
    /// file's unchanged leading bytes (see [`crate::reuse`]).
    fn checksum(&self, path: &Path, keep: bool, record: Option<&FileMetadata>) -> Result<Option<String>, StorageError> {
        match prove_against(self.fs.as_ref(), path, record) {
            Ok(Some((md5, proof))) => {
                if keep {
                    self.proofs.put(proof);
                }
                Ok(Some(md5))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(StorageError::io(IoStep::Read, path, e)),
        }
    }

    /// The stored bars at `path`, sorted; repeated timestamps (a hand-edited file) fold
    /// keep-last, as the seed did.
    fn read_bars(
        &self,
        path: &Path,
        range: Option<TimeRange>,
    ) -> Result<Option<(Bars, std::fs::Metadata)>, StorageError> {
        let Some((raw, meta)) = self.read_raw(path, range)? else {
            return Ok(None);
        };
        let (bars, _) = raw.into_bars(MergePolicy::KeepLast).map_err(|e| CodecError::Domain(e).at(path))?;
        Ok(Some((bars, meta)))
    }

    fn persist(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError> {
        let start = Instant::now();
        let path = self.layout.data_path(series);
        // Replace takes the lock too: it then serializes with merges instead of racing one
        // whose read predates the replace and whose write would silently undo it.
        let _guard = self.locks.lock_blocking(series, self.lock_timeout)?;
        let waited = start.elapsed();
        let (merged, stats) = match options.mode {
            WriteMode::Merge => {
                let existing = self.read_bars(&path, None)?.map(|(b, _)| b).unwrap_or_default();
                let (merged, stats) = merge(&existing, bars, options.policy).map_err(|e| merge_error(series, e))?;
                (Some(merged), stats)
            }
            WriteMode::Replace => (None, self.replace_stats(&path, bars)?),
            WriteMode::Overwrite => {
                let n = bars.len();
                (None, MergeStats { new_rows: n, result_rows: n, ..MergeStats::default() })
            }
        };
        let out = merged.as_ref().unwrap_or(bars);
        let mut receipt =
            StorageReceipt::unwritten(path.display().to_string(), self.layout.ext(), out.len(), stats, ctx);
        if stats.unchanged {
            receipt.duration = start.elapsed();
            tracing::info!(path = %path.display(), rows = out.len(), "merge changed nothing; file untouched");
            return Ok(receipt);
        }
        let keep_backup = self.keep_backups && options.backup == BackupPolicy::Keep;
        let outcome = write_atomic(self.fs.as_ref(), &path, keep_backup, |w| self.codec.encode(out, series, w))?;
        Ok(written_receipt(receipt, &outcome, start, waited))
    }

    /// The first half of an overwrite: takes the lock and stages the encoded bars, reusing
    /// the stored bytes of unchanged leading rows when `hint` checks out (see [`crate::reuse`]).
    fn stage(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        hint: StageHint,
    ) -> Result<(Staged, FileLockGuard, Duration), StorageError> {
        let staged = self.stage_rows((bars, 0), series, hint)?;
        staged.ok_or_else(|| StorageError::Corrupt {
            path: self.layout.data_path(series),
            reason: "a whole version could not be staged".into(),
        })
    }

    /// [`Inner::stage`] of a version whose rows from `skipped` on are `bars` (the first
    /// `skipped` are the stored ones). With `skipped == 0` every row is at hand and a hint
    /// that does not check out means encoding them all; otherwise it means `None`: the
    /// caller must stage the whole version.
    fn stage_rows(
        &self,
        (bars, skipped): (&Bars, usize),
        series: &SeriesKey,
        hint: StageHint,
    ) -> Result<Option<(Staged, FileLockGuard, Duration)>, StorageError> {
        let start = Instant::now();
        let guard = self.locks.lock_blocking(series, self.lock_timeout)?;
        let waited = start.elapsed();
        let path = self.layout.data_path(series);
        let fs = self.fs.as_ref();
        let whole = || match skipped {
            0 => stage_atomic(fs, &path, |w| self.codec.encode(bars, series, w)).map(Some),
            _ => Ok(None),
        };
        let staged = match reuse(fs, &self.codec, &self.proofs, &path, (bars, skipped), hint) {
            Some(Reuse::Lines(prefix)) => {
                let (rows, bytes) = (prefix.rows, prefix.len);
                // `reuse` checked that the reused rows cover the skipped ones.
                let from = rows.saturating_sub(skipped);
                let staged = stage_atomic_after(fs, &path, prefix, |w| {
                    match self.codec.encode_part(bars, from..bars.len(), false, w) {
                        Some(done) => done,
                        None => Err(CodecError::Corrupt("the codec stopped writing parts".into())),
                    }
                })?;
                tracing::debug!(path = %path.display(), rows_kept = rows, bytes_kept = bytes, "stored leading rows reused");
                Some(staged)
            }
            Some(Reuse::Blocks { prefix, stored, kept }) => {
                let kept_blocks = stage_atomic_after(fs, &path, prefix, |w| {
                    match self.codec.encode_after(bars, skipped, series, &stored, kept, w) {
                        Some(done) => done,
                        None => Err(CodecError::Corrupt("the codec stopped keeping blocks".into())),
                    }
                });
                match kept_blocks {
                    Ok(staged) => {
                        tracing::debug!(path = %path.display(), rows_kept = kept.rows, bytes_kept = kept.bytes, "stored leading row groups kept");
                        Some(staged)
                    }
                    // The codec could not keep what it planned to (its temp file is gone):
                    // the file is encoded whole, which is never worse. An I/O error stands.
                    Err(e) if !matches!(e, StorageError::Io { .. }) => {
                        tracing::warn!(path = %path.display(), error = %e, "stored row groups not kept; encoding every row");
                        whole()?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => whole()?,
        };
        Ok(staged.map(|staged| (staged, guard, waited)))
    }

    /// What replacing the file at `path` with `bars` changes. An unreadable stored file
    /// does not stop a replace (replacing is how a damaged series is repaired); it counts
    /// as nothing stored.
    fn replace_stats(&self, path: &Path, bars: &Bars) -> Result<MergeStats, StorageError> {
        let existing = match self.read_bars(path, None) {
            Ok(found) => found.map(|(b, _)| b),
            Err(e) if e.is_data_error() => {
                tracing::warn!(path = %path.display(), error = %e, "stored file unreadable; replacing it");
                None
            }
            Err(e) => return Err(e),
        };
        let n = bars.len();
        let Some(existing) = existing else {
            return Ok(MergeStats {
                new_rows: n,
                result_rows: n,
                rows_added: n,
                unchanged: n == 0 && !self.fs_has(path)?,
                ..MergeStats::default()
            });
        };
        let known = existing.timestamps();
        let rows_added = bars.timestamps().iter().filter(|t| known.binary_search(t).is_err()).count();
        Ok(MergeStats {
            existing_rows: existing.len(),
            new_rows: n,
            result_rows: n,
            duplicates_removed: n - rows_added,
            rows_added,
            rows_changed: 0,
            unchanged: existing == *bars,
        })
    }

    /// Whether anything (even an unreadable file) is at `path`.
    fn fs_has(&self, path: &Path) -> Result<bool, StorageError> {
        match self.fs.metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(IoStep::Stat, path, e)),
        }
    }

    fn file_info(&self, series: &SeriesKey) -> Result<Option<FileInfo>, StorageError> {
        let path = self.layout.data_path(series);
        let Some((bars, meta)) = self.read_bars(&path, None)? else {
            return Ok(None);
        };
        Ok(Some(FileInfo {
            location: path.display().to_string(),
            format: self.layout.ext().to_string(),
            size: meta.len(),
            modified: meta.modified().ok().map(DateTime::<Utc>::from),
            rows: bars.len(),
            first: bars.first_timestamp(),
            last: bars.last_timestamp(),
            columns: bars.column_names(),
        }))
    }

    fn exists(&self, series: &SeriesKey) -> Result<bool, StorageError> {
        let path = self.layout.data_path(series);
        match self.fs.metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(IoStep::Stat, path, e)),
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
    /// from a backup, and leaves nothing behind.
    fn remove(&self, series: &SeriesKey) -> Result<bool, StorageError> {
        let _guard = self.locks.lock_blocking(series, self.lock_timeout)?;
        let existed = remove_durable(self.fs.as_ref(), &self.layout.data_path(series))?;
        remove_durable(self.fs.as_ref(), &self.layout.backup_path(series))?;
        remove_durable(self.fs.as_ref(), &self.layout.spare_path(series))?;
        tracing::info!(path = %self.layout.data_path(series).display(), existed, "removed");
        Ok(existed)
    }
}

impl<C: BarCodec + 'static> FileStore<C> {
    /// A builder over `base` with `codec`, the real filesystem, a 30 s lock timeout and backups on.
    pub fn builder(base: impl Into<PathBuf>, codec: C) -> FileStoreBuilder<C> {
        FileStoreBuilder {
            base: base.into(),
            codec,
            fs: Arc::new(RealFs),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            keep_backups: true,
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

    /// The locks `persist` and `remove` take ([`LockScope::Format`]).
    pub fn locks(&self) -> &FileLocks {
        &self.inner.locks
    }

    pub fn lock_timeout(&self) -> Duration {
        self.inner.lock_timeout
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

    /// Decodes any file with this store's codec (an import, a backup), rows in file order,
    /// trimmed to `range`. A missing file is [`StorageError::NotFound`].
    pub async fn read_path(&self, path: &Path, range: Option<TimeRange>) -> Result<RawBars, StorageError> {
        let (inner, owned) = (Arc::clone(&self.inner), path.to_path_buf());
        off_executor(IoStep::Read, path.to_path_buf(), move || {
            inner
                .read_raw(&owned, range)?
                .map(|(raw, _)| raw)
                .ok_or_else(|| StorageError::NotFound { what: owned.display().to_string() })
        })
        .await
    }

    /// Blocking: decodes the file at `path` (a data file or a backup) from one read that
    /// also yields the MD5 of its bytes; `None` if there is no file.
    pub fn read_file_checked(&self, path: &Path) -> Result<Option<(Bars, String)>, StorageError> {
        self.inner.read_bars_checked(path, None, None)
    }

    /// Blocking: the MD5 of the file at `path`, streamed; `None` if there is no file.
    pub fn file_checksum(&self, path: &Path) -> Result<Option<String>, StorageError> {
        self.inner.checksum(path, false, None)
    }

    /// Blocking: [`FileStore::file_checksum`], and whether `fingerprint` (from the file's
    /// record) describes the file, from the same pass.
    pub fn file_checksum_checking(
        &self,
        path: &Path,
        fingerprint: &Fingerprint,
    ) -> Result<Option<(String, bool)>, StorageError> {
        check_fingerprint(self.inner.fs.as_ref(), path, fingerprint)
            .map_err(|e| StorageError::io(IoStep::Read, path, e))
    }

    /// Blocking: writes `bars` as the data file of `series` through [`write_atomic`], without
    /// taking any lock (the caller holds the series lock) — the repair path of recovery.
    pub fn write_series_file(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        keep_backup: bool,
    ) -> Result<crate::WriteOutcome, StorageError> {
        let inner = &self.inner;
        write_atomic(inner.fs.as_ref(), &inner.layout.data_path(series), keep_backup, |w| {
            inner.codec.encode(bars, series, w)
        })
    }

    /// Data files, backups, temp files and locks of every format under the base.
    pub async fn scan(&self) -> Result<Scan, StorageError> {
        let inner = Arc::clone(&self.inner);
        off_executor(IoStep::List, self.inner.layout.base().to_path_buf(), move || inner.layout.scan(inner.fs.as_ref()))
            .await
    }
}

#[async_trait]
impl<C: BarCodec + 'static> BarStore for FileStore<C> {
    fn name(&self) -> &str {
        self.inner.codec.format()
    }

    async fn persist(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError> {
        let span = ctx.span("persist", Some(series));
        let (inner, bars, key, ctx) = (Arc::clone(&self.inner), bars.clone(), series.clone(), ctx.clone());
        off_executor(IoStep::WriteTemp, self.path_of(series), move || {
            span.in_scope(|| {
                let result = inner.persist(&bars, &key, options, &ctx);
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "persist failed");
                }
                result
            })
        })
        .await
    }

    async fn stage(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        self.stage_with(bars, series, StageHint::default(), ctx).await
    }

    async fn stage_with(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        hint: StageHint,
        ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        let span = ctx.span("stage", Some(series));
        let (inner, bars, key) = (Arc::clone(&self.inner), bars.clone(), series.clone());
        off_executor(IoStep::WriteTemp, self.path_of(series), move || {
            span.in_scope(|| {
                let start = Instant::now();
                let (staged, guard, waited) = inner.stage(&bars, &key, hint).inspect_err(|e| {
                    tracing::warn!(error = %e, "stage failed");
                })?;
                let staged: Box<dyn StagedWrite> = Box::new(FileStaged {
                    inner,
                    staged: Some(staged),
                    guard: Some(guard),
                    series: key,
                    rows: bars.len(),
                    start,
                    waited,
                });
                Ok(staged)
            })
        })
        .await
    }

    async fn load(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<Bars>, StorageError> {
        let span = ctx.span("load", Some(series));
        let (inner, path) = (Arc::clone(&self.inner), self.path_of(series));
        off_executor(IoStep::Read, path.clone(), move || {
            span.in_scope(|| {
                let start = Instant::now();
                let bars = inner.read_bars(&path, range)?.map(|(b, _)| b);
                let bars = match (bars, range) {
                    (Some(b), Some(r)) => Some(b.slice(&r)),
                    (b, _) => b,
                };
                tracing::info!(
                    path = %path.display(),
                    rows = bars.as_ref().map_or(0, Bars::len),
                    found = bars.is_some(),
                    duration_ms = start.elapsed().as_millis() as u64,
                    "loaded"
                );
                Ok(bars)
            })
        })
        .await
    }

    async fn load_with_checksum(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<(Bars, Option<String>)>, StorageError> {
        self.load_with_checksum_against(series, range, None, ctx).await
    }

    async fn load_with_checksum_against<'a>(
        &'a self,
        series: &'a SeriesKey,
        range: Option<TimeRange>,
        record: Option<&'a FileMetadata>,
        ctx: &'a OpContext,
    ) -> Result<Option<(Bars, Option<String>)>, StorageError> {
        let span = ctx.span("load", Some(series));
        let (inner, path, record) = (Arc::clone(&self.inner), self.path_of(series), record.cloned());
        off_executor(IoStep::Read, path.clone(), move || {
            span.in_scope(|| {
                let start = Instant::now();
                let found = inner.read_bars_checked(&path, range, record.as_ref())?;
                tracing::info!(
                    path = %path.display(),
                    rows = found.as_ref().map_or(0, |(b, _)| b.len()),
                    found = found.is_some(),
                    duration_ms = start.elapsed().as_millis() as u64,
                    "loaded with checksum"
                );
                Ok(found.map(|(b, md5)| (b, Some(md5))))
            })
        })
        .await
    }

    async fn checksum(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<String>, StorageError> {
        self.checksum_against(series, None, ctx).await
    }

    async fn load_tail_against<'a>(
        &'a self,
        series: &'a SeriesKey,
        from: i64,
        record: Option<&'a FileMetadata>,
        ctx: &'a OpContext,
    ) -> Result<Option<(SeriesTail, Option<String>)>, StorageError> {
        if !self.inner.codec.decodes_tails() {
            return Err(StorageError::unsupported("load_tail", self.name()));
        }
        let span = ctx.span("load", Some(series));
        let (inner, path, record) = (Arc::clone(&self.inner), self.path_of(series), record.cloned());
        off_executor(IoStep::Read, path.clone(), move || {
            span.in_scope(|| {
                let start = Instant::now();
                let found = inner.read_tail_checked(&path, from, record.as_ref())?;
                tracing::info!(
                    path = %path.display(),
                    rows = found.as_ref().map_or(0, |(t, _)| t.bars.len()),
                    skipped = found.as_ref().map_or(0, |(t, _)| t.skipped),
                    found = found.is_some(),
                    duration_ms = start.elapsed().as_millis() as u64,
                    "loaded the last rows with checksum"
                );
                Ok(found.map(|(t, md5)| (t, Some(md5))))
            })
        })
        .await
    }

    async fn stage_tail(
        &self,
        tail: &SeriesTail,
        series: &SeriesKey,
        hint: StageHint,
        ctx: &OpContext,
    ) -> Result<Option<Box<dyn StagedWrite>>, StorageError> {
        let span = ctx.span("stage", Some(series));
        let (inner, tail, key) = (Arc::clone(&self.inner), tail.clone(), series.clone());
        off_executor(IoStep::WriteTemp, self.path_of(series), move || {
            span.in_scope(|| {
                let start = Instant::now();
                let staged = inner.stage_rows((&tail.bars, tail.skipped), &key, hint).inspect_err(|e| {
                    tracing::warn!(error = %e, "stage failed");
                })?;
                let Some((staged, guard, waited)) = staged else {
                    tracing::debug!("stored bytes cannot start the new version; the whole version is needed");
                    return Ok(None);
                };
                let staged: Box<dyn StagedWrite> = Box::new(FileStaged {
                    inner,
                    staged: Some(staged),
                    guard: Some(guard),
                    series: key,
                    rows: tail.len(),
                    start,
                    waited,
                });
                Ok(Some(staged))
            })
        })
        .await
    }

    async fn checksum_against<'a>(
        &'a self,
        series: &'a SeriesKey,
        record: Option<&'a FileMetadata>,
        ctx: &'a OpContext,
    ) -> Result<Option<String>, StorageError> {
        let span = ctx.span("checksum", Some(series));
        let (inner, path, record) = (Arc::clone(&self.inner), self.path_of(series), record.cloned());
        // The proof is kept: this is how a writer checks the file it is about to replace.
        off_executor(IoStep::Read, path.clone(), move || span.in_scope(|| inner.checksum(&path, true, record.as_ref())))
            .await
    }

    async fn exists(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        let span = ctx.span("exists", Some(series));
        let (inner, key) = (Arc::clone(&self.inner), series.clone());
        off_executor(IoStep::Stat, self.path_of(series), move || span.in_scope(|| inner.exists(&key))).await
    }

    async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        let span = ctx.span("file_info", Some(series));
        let (inner, key) = (Arc::clone(&self.inner), series.clone());
        off_executor(IoStep::Read, self.path_of(series), move || span.in_scope(|| inner.file_info(&key))).await
    }

    async fn list(&self, ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        let span = ctx.span("list", None);
        let inner = Arc::clone(&self.inner);
        off_executor(IoStep::List, self.inner.layout.base().to_path_buf(), move || {
            span.in_scope(|| {
                let series = inner.list()?;
                tracing::info!(count = series.len(), "listed");
                Ok(series)
            })
        })
        .await
    }

    async fn remove(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        let span = ctx.span("remove", Some(series));
        let (inner, key) = (Arc::clone(&self.inner), series.clone());
        off_executor(IoStep::Remove, self.path_of(series), move || span.in_scope(|| inner.remove(&key))).await
    }
}
