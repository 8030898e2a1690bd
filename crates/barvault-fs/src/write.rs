//! Writes of a [`FileStore`](crate::FileStore): stage a temp file (keeping the stored bytes
//! the token and the codec allow), then commit it after checking once more that the file
//! is the version the write expects.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use barvault_domain::{Bars, MergePolicy, SeriesKey, merge};
use barvault_ports::{
    BackupPolicy, BarCodec, CodecError, CodecInput, Continuation, Keep, OpContext, Persisted, PutMode, PutOptions,
    Revision, Rows, StagedWrite, StorageError, StoredBytes, Version,
};

use crate::atomic::{Staged, stage_atomic, stage_atomic_after};
use crate::keep::{Source, plan};
use crate::proof::{Evidence, FileId};
use crate::store::{Inner, off_executor};

/// What a staged write checks again at commit.
#[derive(Debug)]
enum Expect {
    Nothing,
    /// The file with this identity.
    Identity(FileId),
    Anything,
}

/// A write staged by a file store: the temp file is fsynced, the target untouched.
#[derive(Debug)]
pub(crate) struct FileStaged<C: BarCodec + 'static> {
    inner: Arc<Inner<C>>,
    staged: Option<Staged>,
    series: SeriesKey,
    expect: Expect,
    backup: BackupPolicy,
    rows: usize,
    start: Instant,
    /// The committed length of the file replaced, when an interrupted append left bytes
    /// after it: they are cut right before the commit, so the `.backup` is the committed
    /// version its record's checksum describes.
    cut_to: Option<u64>,
    /// The block checksums of the staged file, recorded with its fingerprint.
    blocks: Option<barvault_ports::Blocks>,
}

impl<C: BarCodec + 'static> Drop for FileStaged<C> {
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            tracing::debug!(path = %staged.target().display(), "staged write dropped; temp file removed");
            staged.discard(self.inner.fs.as_ref());
        }
    }
}

fn conflict(path: &Path, why: impl Into<String>) -> StorageError {
    StorageError::version_conflict(path, why)
}

/// The identity of the file at `path` now (`None`: nothing there).
fn identity_now<C: BarCodec + 'static>(inner: &Inner<C>, path: &Path) -> Result<Option<FileId>, StorageError> {
    match inner.fs.metadata(path) {
        Ok(m) => Ok(Some(FileId::of(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(barvault_ports::IoStep::Stat, path, e)),
    }
}

/// Whether what is at `path` is what `expect` allows; a conflict naming why if not.
fn check<C: BarCodec + 'static>(inner: &Inner<C>, path: &Path, expect: &Expect) -> Result<(), StorageError> {
    match (expect, identity_now(inner, path)?) {
        (Expect::Anything, _) | (Expect::Nothing, None) => Ok(()),
        (Expect::Nothing, Some(_)) => Err(conflict(path, "a version exists where none was expected")),
        (Expect::Identity(want), Some(now)) if *want == now => Ok(()),
        (Expect::Identity(_), Some(_)) => Err(conflict(path, "the file was replaced or changed since it was read")),
        (Expect::Identity(_), None) => Err(conflict(path, "the file read was removed")),
    }
}

/// The token's evidence, if it is this store's token for `path`.
fn evidence_of<'v>(version: &'v Version, path: &Path) -> Result<&'v Evidence, StorageError> {
    match version.evidence::<Evidence>() {
        Some(e) if e.path == path => Ok(e),
        Some(e) => Err(conflict(path, format!("the version token names another file ({})", e.path.display()))),
        None => Err(conflict(path, format!("the version token {version} is not one of this store's"))),
    }
}

/// Stages `revision` as the next version of `series` under `options` (blocking).
pub(crate) fn stage<C: BarCodec + 'static>(
    inner: &Arc<Inner<C>>,
    series: &SeriesKey,
    revision: &Revision,
    options: PutOptions,
) -> Result<FileStaged<C>, StorageError> {
    let start = Instant::now();
    let path = inner.layout.data_path(series);
    let (expect, evidence) = match &options.mode {
        PutMode::Create => (Expect::Nothing, None),
        PutMode::Overwrite => (Expect::Anything, None),
        PutMode::Update(v) => {
            let evidence = evidence_of(v, &path)?;
            (Expect::Identity(evidence.id.clone()), Some(evidence))
        }
    };
    if revision.skipped > 0 && evidence.is_none() {
        return Err(StorageError::invalid(format!(
            "{}: a revision that skips stored rows needs an update of the version read",
            path.display()
        )));
    }
    check(inner, &path, &expect)?;
    let cut_to = evidence.filter(|e| e.committed < e.id.len).map(|e| e.committed);
    let staged = match evidence {
        Some(evidence) if revision.skipped > 0 || revision.keep.is_some() => {
            stage_update(inner, series, &path, revision, evidence)?
        }
        _ => stage_whole(inner, series, &path, &revision.bars)?,
    };
    let blocks = match inner.blocks_of(staged.temp(), staged.size()) {
        Ok(blocks) => blocks,
        Err(e) => {
            staged.discard(inner.fs.as_ref());
            return Err(e);
        }
    };
    Ok(FileStaged {
        inner: Arc::clone(inner),
        staged: Some(staged),
        series: series.clone(),
        expect,
        backup: options.backup,
        rows: revision.rows(),
        start,
        cut_to,
        blocks,
    })
}

fn stage_whole<C: BarCodec + 'static>(
    inner: &Inner<C>,
    series: &SeriesKey,
    path: &Path,
    bars: &Bars,
) -> Result<Staged, StorageError> {
    stage_atomic(inner.fs.as_ref(), path, |w| inner.codec.encode(bars, series, w))
}

/// An update that may keep the stored bytes of its unchanged leading rows, and must keep
/// the rows it skips: from the stored bytes the codec lets it keep, or else by decoding
/// them from the file the token names.
fn stage_update<C: BarCodec + 'static>(
    inner: &Inner<C>,
    series: &SeriesKey,
    path: &Path,
    revision: &Revision,
    evidence: &Evidence,
) -> Result<Staged, StorageError> {
    let source = Arc::new(open_source(inner, path, evidence)?);
    let next = Continuation { bars: &revision.bars, skipped: revision.skipped, series };
    let keep = revision.keep.unwrap_or(Keep { stored_rows: 0, unchanged: 0 });
    let planned = plan(&inner.codec, evidence, &source, next, keep)
        .map_err(|e| StorageError::io(barvault_ports::IoStep::Read, path, e))?;
    if let Some((prefix, kept)) = planned {
        let source = Arc::clone(&source);
        let kept_write = stage_atomic_after(inner.fs.as_ref(), path, prefix, |w| {
            inner.codec.encode_after(source.as_ref(), kept, next, w)
        });
        match kept_write {
            Ok(staged) => {
                tracing::debug!(path = %path.display(), rows_kept = kept.rows, bytes_kept = kept.bytes, "stored bytes kept");
                return Ok(staged);
            }
            // The codec could not keep what it planned to (its temp file is gone): the file
            // is encoded whole, which is never worse. An I/O error stands.
            Err(e @ StorageError::Io { .. }) => return Err(e),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "stored bytes not kept; encoding every row"),
        }
    }
    if revision.skipped == 0 {
        return stage_whole(inner, series, path, &revision.bars);
    }
    let whole = with_skipped_rows(inner, path, source.as_ref(), revision)?;
    stage_whole(inner, series, path, &whole)
}

/// The stored file the token names, open, after checking it is that very file.
fn open_source<C: BarCodec + 'static>(
    inner: &Inner<C>,
    path: &Path,
    evidence: &Evidence,
) -> Result<Source, StorageError> {
    if let Some(bytes) = &evidence.bytes
        && bytes.len() as u64 == evidence.committed
    {
        return Ok(Source::Memory(Arc::clone(bytes)));
    }
    let Some((file, meta)) = inner.open(path)? else {
        return Err(conflict(path, "the file read was removed"));
    };
    if FileId::of(&meta) != evidence.id {
        return Err(conflict(path, "the file was replaced or changed since it was read"));
    }
    // Only the committed bytes: what an interrupted append left after them is never kept.
    Ok(Source::file(file, evidence.committed.min(meta.len())))
}

/// The whole new version of a revision: the stored file's first `skipped` rows, decoded
/// from `source`, then the revision's rows.
fn with_skipped_rows<C: BarCodec + 'static>(
    inner: &Inner<C>,
    path: &Path,
    source: &Source,
    revision: &Revision,
) -> Result<Bars, StorageError> {
    let bytes = source.all().map_err(|e| StorageError::io(barvault_ports::IoStep::Read, path, e))?;
    let decoded = inner.codec.decode(CodecInput::Bytes(&bytes), Rows::All).map_err(|e| e.at(path))?;
    let domain = |e| CodecError::Domain(e).at(path);
    let (stored, _) = decoded.raw.into_bars(MergePolicy::KeepLast).map_err(domain)?;
    if stored.len() < revision.skipped {
        return Err(conflict(
            path,
            format!("the stored file has {} rows, fewer than the {} skipped", stored.len(), revision.skipped),
        ));
    }
    let head = stored.slice_rows(0, revision.skipped);
    if let (Some(a), Some(b)) = (head.last_timestamp(), revision.bars.first_timestamp())
        && a >= b
    {
        return Err(StorageError::invalid(format!(
            "{}: a revision's rows must follow the rows it skips",
            path.display()
        )));
    }
    tracing::debug!(path = %path.display(), skipped = revision.skipped, "stored rows decoded to make the whole version");
    let (whole, _) = merge(&head, &revision.bars, MergePolicy::KeepLast).map_err(StorageError::from)?;
    Ok(whole)
}

impl<C: BarCodec + 'static> FileStaged<C> {
    /// Checks the expected version and publishes (blocking), under the series lock when
    /// the store takes it itself.
    fn commit_blocking(mut self) -> Result<Persisted, StorageError> {
        let Some(staged) = self.staged.take() else {
            return Err(StorageError::invalid("staged write committed twice"));
        };
        let inner = Arc::clone(&self.inner);
        let path = staged.target().to_path_buf();
        let _guard = match &inner.commit_lock {
            Some((locks, timeout)) => match locks.lock_blocking(&self.series, *timeout) {
                Ok(g) => Some(g),
                Err(e) => {
                    staged.discard(inner.fs.as_ref());
                    return Err(e);
                }
            },
            None => None,
        };
        if let Err(e) = check(&inner, &path, &self.expect) {
            staged.discard(inner.fs.as_ref());
            return Err(e);
        }
        if let (Some(committed), Expect::Identity(id)) = (self.cut_to, &self.expect) {
            match crate::append::cut_uncommitted(inner.fs.as_ref(), &path, id, committed) {
                Ok(cut) => self.expect = Expect::Identity(cut),
                Err(e) => {
                    staged.discard(inner.fs.as_ref());
                    return Err(e);
                }
            }
        }
        let keep_backup = inner.keep_backups && self.backup == BackupPolicy::Keep;
        let outcome = staged.commit(inner.fs.as_ref(), keep_backup)?;
        let meta = inner.fs.metadata(&path).map_err(|e| StorageError::io(barvault_ports::IoStep::Stat, &path, e))?;
        let info = inner.file_info(&path, &meta, Evidence::identity(&path, &meta));
        let persisted = Persisted {
            info,
            rows: self.rows,
            checksum: Some(outcome.md5_hex),
            fingerprint: Some(barvault_ports::Fingerprint { blocks: self.blocks.take(), ..outcome.fingerprint }),
            backup_created: outcome.backup_created,
            duration: self.start.elapsed(),
        };
        log_written(&path, &persisted);
        Ok(persisted)
    }
}

fn log_written(path: &Path, p: &Persisted) {
    tracing::info!(
        path = %path.display(),
        rows = p.rows,
        size = p.info.size,
        backup_created = p.backup_created,
        duration_ms = u64::try_from(p.duration.as_millis()).unwrap_or(u64::MAX),
        "persisted"
    );
}

#[async_trait]
impl<C: BarCodec + 'static> StagedWrite for FileStaged<C> {
    async fn commit(self: Box<Self>, ctx: &OpContext) -> Result<Persisted, StorageError> {
        let span = ctx.span("commit", Some(&self.series));
        let path = self.inner.layout.data_path(&self.series);
        off_executor(barvault_ports::IoStep::Rename, path, span, move || self.commit_blocking()).await
    }
}
