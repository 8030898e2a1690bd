//! Per-file metadata records, stored so that no crash, no format and no store size can
//! damage them: one small record file per data file *and format*
//! (`{base}/.barvault/meta/{kind}/{period}/{SYMBOL}.{format}.meta`).
//!
//! Why not the seed's single `.vortex_metadata.json`? Rewriting one central file on every
//! write makes recording a series cost O(number of series) and turns every crash into a risk
//! for all records at once; the seed's `.meta` companions named `{SYMBOL}.meta` also made the
//! CSV and Parquet records overwrite each other. Here a record costs the same in a store of
//! 1 or 10,000 series, and the format is part of the record's name.
//!
//! Why two slots updated in place rather than a temp file renamed over the record? A
//! record is rewritten twice per persist of a series, and the temp-file route costs an
//! inode creation, a rename that frees another inode, and a directory fsync each time —
//! measured as a third of a nightly update of 300 small series. A slotted file is created
//! once (through the durable temp-file path) and then only overwritten in place, one slot
//! at a time, with `fdatasync`; see [`slots`] for why that is as crash-safe. Records written
//! by earlier versions as `{SYMBOL}.{format}.json` are still read, and replaced by a slotted
//! file at their next write.

mod slots;

#[cfg(test)]
mod hostile_tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use barvault_domain::{InstrumentKind, Period, SeriesKey};
use barvault_fs::{Fs, RealFs, remove_durable, write_atomic};
use barvault_ports::{
    CodecError, FileMetadata, IoStep, MetadataStore, OpContext, RecordList, StorageError, UnreadableRecord,
};
use thiserror::Error;

pub use slots::{HEADER_LEN, SLOT_UNIT};

/// Directory (under the store's base) that holds the records.
pub const META_DIR: &str = ".barvault/meta";

/// Extension of a record file (two slots).
pub const RECORD_EXT: &str = "meta";

/// Extension of a record written by barvault before slotted records: one JSON document,
/// replaced through a temp file. Read, never written.
pub const LEGACY_EXT: &str = "json";

/// Failures private to this adapter, mapped into [`StorageError`].
#[derive(Debug, Error)]
enum MetaError {
    #[error("record is not valid JSON metadata: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("record describes {found} but is stored as {expected}")]
    Misplaced { found: String, expected: String },
    #[error("{0}")]
    Slots(String),
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

/// The largest record file read: two slots of the largest size (legacy JSON records are
/// far smaller). A larger file is damaged, and is refused without being read.
const MAX_RECORD_FILE: u64 = 2 * slots::MAX_SLOT as u64;

/// Metadata records as slotted files under `{base}/.barvault/meta`.
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
        self.inner.path(series, format, RECORD_EXT)
    }

    /// Where an earlier version kept the record of `series` in `format`.
    pub fn legacy_record_path(&self, series: &SeriesKey, format: &str) -> PathBuf {
        self.inner.path(series, format, LEGACY_EXT)
    }

    /// Every record file, parsed, plus the ones that could not be read (for integrity checks).
    pub fn scan(&self) -> Result<RecordList, StorageError> {
        self.inner.scan()
    }

    /// [`MetadataStore::record`] on the calling thread (for callers that are already on a
    /// blocking thread, such as `recover`).
    pub fn record_blocking(&self, meta: &FileMetadata) -> Result<(), StorageError> {
        self.inner.write(meta)
    }
}

impl Inner {
    fn path(&self, series: &SeriesKey, format: &str, ext: &str) -> PathBuf {
        self.base.join(META_DIR).join(format!("{}.{format}.{ext}", series.relative_stem()))
    }

    /// The record at `path` (slotted or legacy, by extension); `None` if there is no file.
    /// A file larger than any record is refused unread, so a hostile one costs no memory.
    fn read(&self, path: &Path) -> Result<Option<FileMetadata>, StorageError> {
        let mut file = match barvault_fs::open_read_no_follow(self.fs.as_ref(), path, "the metadata record") {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // A planted link is an unreadable record (replaced by the next write of it).
            Err(e) if barvault_fs::is_symlink_refused(&e) => {
                return Err(StorageError::Corrupt { path: path.to_path_buf(), reason: e.to_string() });
            }
            Err(e) => return Err(StorageError::io(IoStep::Read, path, e)),
        };
        let len = file.metadata().map_err(|e| StorageError::io(IoStep::Stat, path, e))?.len();
        if len > MAX_RECORD_FILE {
            return Err(MetaError::Slots(format!("{len} bytes, more than any record ({MAX_RECORD_FILE})")).at(path));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, MAX_RECORD_FILE + 1), &mut bytes)
            .map_err(|e| StorageError::io(IoStep::Read, path, e))?;
        let legacy = path.extension().is_some_and(|e| e == LEGACY_EXT);
        let (meta, _) = decode_record_file(&bytes, legacy).map_err(|e| e.at(path))?;
        let ext = if legacy { LEGACY_EXT } else { RECORD_EXT };
        let series = meta.try_series().map_err(|e| {
            MetaError::Misplaced { found: e.to_string(), expected: path.display().to_string() }.at(path)
        })?;
        // A record is never trusted to address a file: its path field must name exactly
        // the data file its own location belongs to.
        if self.path(&series, &meta.format, ext) != path || meta.file_path != record_file_path(&meta)? {
            return Err(
                MetaError::Misplaced { found: meta.file_path.clone(), expected: path.display().to_string() }.at(path)
            );
        }
        Ok(Some(meta))
    }

    /// The record of `series` in `format`: the slotted file, else a legacy one.
    fn get(&self, series: &SeriesKey, format: &str) -> Result<Option<FileMetadata>, StorageError> {
        match self.read(&self.path(series, format, RECORD_EXT))? {
            Some(meta) => Ok(Some(meta)),
            None => self.read(&self.path(series, format, LEGACY_EXT)),
        }
    }

    /// Writes `meta` into the slot of its record file that does not hold the newest record,
    /// or creates the file (durably, through a temp file) when there is none, when neither
    /// slot is valid, or when the record outgrew the slots.
    fn write(&self, meta: &FileMetadata) -> Result<(), StorageError> {
        let path = self.path(&meta.try_series()?, &meta.format, RECORD_EXT);
        let mut payload = serde_json::to_vec_pretty(meta).map_err(|e| MetaError::Parse(e).at(&path))?;
        payload.push(b'\n');
        let at = &path;
        let io = |step: IoStep| move |e: std::io::Error| StorageError::io(step, at, e);
        if self.fs.symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            // Planted: replaced by a new record file (renamed over the link), never written through.
            tracing::warn!(path = %path.display(), "metadata record is a symbolic link; replacing the link");
            return self.create(&path, 1, &payload);
        }
        let mut file = match self.fs.open_in_place(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.create(&path, 1, &payload),
            Err(e) => return Err(io(IoStep::WriteMetadata)(e)),
        };
        let len = file.size().map_err(io(IoStep::Read))?;
        let unit = 2 * SLOT_UNIT as u64;
        if len == 0 || !len.is_multiple_of(unit) || len / 2 > slots::MAX_SLOT as u64 {
            tracing::warn!(path = %path.display(), len, "record file has no slot layout; writing it anew");
            return self.create(&path, 1, &payload);
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(0, &mut bytes).map_err(io(IoStep::Read))?;
        let current = slots::Slots::split(&bytes).map_err(|r| MetaError::Slots(r).at(&path))?;
        let slot_size = current.slot_size;
        let Some((newest, seq, _)) = current.newest() else {
            tracing::warn!(path = %path.display(), reason = %current.reasons(), "record file has no valid slot; writing it anew");
            return self.create(&path, 1, &payload);
        };
        let seq = seq.saturating_add(1);
        if slots::slot_size_for(payload.len()) > slot_size {
            return self.create(&path, seq, &payload);
        }
        let offset = (1 - newest) * slot_size;
        let old = bytes[offset..offset + slot_size].to_vec();
        let new = slots::encode(seq, &payload, slot_size);
        let written = file
            .write_all_at(offset as u64, &new)
            .map_err(io(IoStep::WriteMetadata))
            .and_then(|()| file.sync_data().map_err(io(IoStep::WriteMetadata)));
        if let Err(e) = written {
            // The slot written held the older of the two records; putting it back keeps the
            // newest record what readers see, as it was before the call (a torn slot would
            // be skipped anyway, but one fully written and not synced would be served).
            if let Err(again) = file.write_all_at(offset as u64, &old).and_then(|()| file.sync_data()) {
                tracing::warn!(path = %path.display(), error = %again, "could not restore the record's slot after a failed write");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Creates (or replaces) the record file with `payload` in its first slot.
    fn create(&self, path: &Path, seq: u64, payload: &[u8]) -> Result<(), StorageError> {
        let slot_size = slots::slot_size_for(payload.len());
        let first = slots::encode(seq, payload, slot_size);
        write_atomic(self.fs.as_ref(), path, false, |w| {
            w.write_all(&first)?;
            w.write_all(&vec![0; slot_size]).map_err(CodecError::from)
        })?;
        let legacy = path.with_extension(LEGACY_EXT);
        if let Err(e) = remove_durable(self.fs.as_ref(), &legacy) {
            // The slotted record is durable and is what readers take; the old one is inert.
            tracing::warn!(path = %legacy.display(), error = %e, "could not remove the superseded JSON record");
        }
        Ok(())
    }

    fn scan(&self) -> Result<RecordList, StorageError> {
        let mut list = RecordList::default();
        let root = self.base.join(META_DIR);
        for kind in InstrumentKind::ALL {
            for period in Period::ALL {
                let dir = root.join(kind.dir_name()).join(period.as_str());
                let entries = match self.fs.read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io(IoStep::List, &dir, e)),
                };
                let slotted: HashSet<&PathBuf> =
                    entries.iter().filter(|p| p.extension().is_some_and(|e| e == RECORD_EXT)).collect();
                for path in &entries {
                    let is_record = match path.extension() {
                        Some(e) if e == RECORD_EXT => true,
                        // A legacy record counts only while no slotted record replaced it.
                        Some(e) if e == LEGACY_EXT => !slotted.contains(&path.with_extension(RECORD_EXT)),
                        _ => false,
                    };
                    if !is_record {
                        continue;
                    }
                    match self.read(path) {
                        Ok(Some(m)) => list.records.push(m),
                        Ok(None) => {}
                        Err(e) => {
                            let (series, format) = named_by(kind, period, path);
                            list.unreadable.push(UnreadableRecord {
                                location: path.clone(),
                                series,
                                format,
                                reason: e.to_string(),
                            })
                        }
                    }
                }
            }
        }
        list.records.sort_by(|a, b| a.file_path.cmp(&b.file_path));
        list.unreadable.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(list)
    }
}

/// A record file that cannot be read: what is wrong with it, without its location (the
/// store that read it adds that, as a [`StorageError::Corrupt`]).
#[derive(Debug, Error)]
#[error(transparent)]
pub struct RecordFileError(MetaError);

impl RecordFileError {
    /// The error, at the record file `location` (a path, or an object's URL).
    pub fn at(self, location: &Path) -> StorageError {
        self.0.at(location)
    }
}

/// The record a record file holds, and the sequence number of its slot (0 for a legacy JSON
/// record): the newest valid slot of a slotted `.meta` file, or the whole of a legacy
/// `.json` one. Shared by every store that keeps record files (on disk, in a bucket), so
/// that a record file copied from one to the other reads the same.
pub fn decode_record_file(bytes: &[u8], legacy: bool) -> Result<(FileMetadata, u64), RecordFileError> {
    if bytes.len() as u64 > MAX_RECORD_FILE {
        let reason = format!("{} bytes, more than any record ({MAX_RECORD_FILE})", bytes.len());
        return Err(RecordFileError(MetaError::Slots(reason)));
    }
    let (payload, seq) = if legacy {
        (bytes, 0)
    } else {
        let slots = slots::Slots::split(bytes).map_err(|r| RecordFileError(MetaError::Slots(r)))?;
        match slots.newest() {
            Some((_, seq, payload)) => (payload, seq),
            None => return Err(RecordFileError(MetaError::Slots(slots.reasons()))),
        }
    };
    let meta = serde_json::from_slice(payload).map_err(|e| RecordFileError(MetaError::Parse(e)))?;
    Ok((meta, seq))
}

/// A whole slotted record file holding `meta` in its first slot with sequence number `seq`
/// and an empty second slot: what a store that replaces record files whole (object
/// storage) writes, and what [`FileMetadataStore`] reads and then updates in place.
pub fn encode_record_file(meta: &FileMetadata, seq: u64) -> Result<Vec<u8>, RecordFileError> {
    let mut payload = serde_json::to_vec_pretty(meta).map_err(|e| RecordFileError(MetaError::Parse(e)))?;
    payload.push(b'\n');
    let slot_size = slots::slot_size_for(payload.len());
    let mut file = slots::encode(seq, &payload, slot_size);
    file.resize(2 * slot_size, 0);
    Ok(file)
}

/// The `file_path` a record of its series and format must carry, `{kind}/{period}/{SYMBOL}.{format}`:
/// a record is never trusted to address a file other than the one its location names.
pub fn record_file_path(meta: &FileMetadata) -> Result<String, StorageError> {
    Ok(format!("{}.{}", meta.try_series()?.relative_stem(), meta.format))
}

/// The series and format a record file's location names (`{SYMBOL}.{format}.meta` under
/// `{kind}/{period}`), when it names one.
fn named_by(kind: InstrumentKind, period: Period, path: &Path) -> (Option<SeriesKey>, Option<String>) {
    let stem = path.file_stem().and_then(|s| s.to_str());
    let Some((symbol, format)) = stem.and_then(|s| s.rsplit_once('.')) else { return (None, None) };
    let series = barvault_domain::Instrument::new(kind, symbol)
        .ok()
        .filter(|i| i.symbol().as_str() == symbol)
        .map(|i| SeriesKey::new(i, period));
    (series, Some(format.to_string()))
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
        let series = meta.try_series()?;
        let path = self.record_path(&series, &meta.format);
        let inner = self.inner.clone();
        let span = ctx.span("metadata_record", Some(&series));
        let meta = meta.clone();
        blocking(path, move || {
            let _enter = span.enter();
            inner.write(&meta).map_err(|e| match e {
                StorageError::Io { step, path, source } if step != IoStep::WriteMetadata => {
                    tracing::warn!(%step, path = %path.display(), "metadata write failed");
                    StorageError::Io { step: IoStep::WriteMetadata, path, source }
                }
                other => other,
            })?;
            tracing::debug!(path = %meta.file_path, "metadata recorded");
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
        let (series, format) = (series.clone(), format.to_string());
        blocking(path, move || inner.get(&series, &format)).await
    }

    async fn list(&self, ctx: &OpContext) -> Result<RecordList, StorageError> {
        let inner = self.inner.clone();
        let span = ctx.span("metadata_list", None);
        let root = self.inner.base.join(META_DIR);
        blocking(root, move || {
            let list = inner.scan()?;
            for b in &list.unreadable {
                let _enter = span.enter();
                tracing::warn!(path = %b.location.display(), reason = %b.reason, "unreadable metadata record");
            }
            Ok(list)
        })
        .await
    }

    async fn remove(&self, series: &SeriesKey, format: &str, _ctx: &OpContext) -> Result<bool, StorageError> {
        let path = self.record_path(series, format);
        let inner = self.inner.clone();
        let (series, format) = (series.clone(), format.to_string());
        blocking(path, move || {
            let slotted = remove_durable(inner.fs.as_ref(), &inner.path(&series, &format, RECORD_EXT))?;
            let legacy = remove_durable(inner.fs.as_ref(), &inner.path(&series, &format, LEGACY_EXT))?;
            Ok(slotted || legacy)
        })
        .await
    }

    async fn locations(
        &self,
        series: &SeriesKey,
        format: &str,
        _ctx: &OpContext,
    ) -> Result<Vec<PathBuf>, StorageError> {
        let inner = self.inner.clone();
        let (series, format) = (series.clone(), format.to_string());
        blocking(self.record_path(&series, &format), move || {
            let mut found = Vec::new();
            for path in [inner.path(&series, &format, RECORD_EXT), inner.path(&series, &format, LEGACY_EXT)] {
                match inner.fs.symlink_metadata(&path) {
                    Ok(_) => found.push(path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io(IoStep::Stat, &path, e)),
                }
            }
            Ok(found)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barvault_domain::Instrument;
    use barvault_fs::{Fault, FaultyFs, FsOp};
    use barvault_ports::conformance::sample_metadata;

    const EIO: i32 = 5;

    fn aapl() -> SeriesKey {
        SeriesKey::new(Instrument::stock("AAPL").unwrap(), Period::D1)
    }

    fn faulty(dir: &Path) -> (FaultyFs, FileMetadataStore) {
        let fs = FaultyFs::real();
        let store = FileMetadataStore::with_fs(dir, Arc::new(fs.clone()));
        (fs, store)
    }

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
        let series = aapl();
        let a = store.record_path(&series, "csv");
        let b = store.record_path(&series, "parquet");
        assert_ne!(a, b);
        assert!(a.ends_with(".barvault/meta/stocks/1d/AAPL.csv.meta"), "{}", a.display());
        std::fs::create_dir_all(a.parent().unwrap()).unwrap();
        std::fs::write(&a, b"{ not json").unwrap();
        let ctx = OpContext::new();
        let err = store.get(&series, "csv", &ctx).await.unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("AAPL.csv.meta") && err.to_string().contains("10 bytes"), "{err}");
        let list = store.scan().unwrap();
        assert!(list.records.is_empty());
        assert_eq!(list.unreadable.len(), 1);
        assert_eq!(list.unreadable[0].series.as_ref(), Some(&series), "the location names the series");
        assert_eq!(list.unreadable[0].format.as_deref(), Some("csv"));
        assert!(store.list(&ctx).await.unwrap().records.is_empty());
        // A record written over the garbage starts a sound file.
        store.record(&sample_metadata(&series, "csv", 4), &ctx).await.unwrap();
        assert_eq!(store.get(&series, "csv", &ctx).await.unwrap().unwrap().generation, 4);
    }

    /// After the file exists, a record is one write of one slot and one `fdatasync`: no temp
    /// file, rename or directory fsync; the slots alternate and the newest always wins.
    #[tokio::test]
    async fn records_after_the_first_are_written_in_place_in_alternating_slots() {
        let dir = tempfile::tempdir().unwrap();
        let (fs, store) = faulty(dir.path());
        let ctx = OpContext::new();
        let series = aapl();
        store.record(&sample_metadata(&series, "csv", 1), &ctx).await.unwrap();
        assert_eq!(fs.calls(FsOp::CreateTemp), 1);
        let path = store.record_path(&series, "csv");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * SLOT_UNIT as u64);
        fs.reset_counts();
        for generation in 2..=6 {
            store.record(&sample_metadata(&series, "csv", generation), &ctx).await.unwrap();
            assert_eq!(store.get(&series, "csv", &ctx).await.unwrap().unwrap().generation, generation);
            let bytes = std::fs::read(&path).unwrap();
            let slots = slots::Slots::split(&bytes).unwrap();
            let (index, seq, _) = slots.newest().unwrap();
            assert_eq!((index, seq), ((generation as usize - 1) % 2, generation), "generation {generation}");
            // The other slot still holds the previous record.
            assert!(matches!(slots.slots[1 - index], slots::Slot::Valid { seq, .. } if seq == generation - 1));
        }
        for step in [FsOp::CreateTemp, FsOp::Rename, FsOp::FsyncDir, FsOp::FsyncTemp] {
            assert_eq!(fs.calls(step), 0, "{step}");
        }
        assert_eq!((fs.calls(FsOp::WriteInPlace), fs.calls(FsOp::SyncInPlace)), (5, 5));
    }

    /// A write torn half-way (FaultyFs writes half the slot, then fails) or one whose
    /// `fdatasync` fails is an error, and readers keep getting the previous record; the
    /// next write succeeds.
    #[tokio::test]
    async fn a_failed_or_torn_slot_write_keeps_the_previous_record() {
        for step in [FsOp::OpenInPlace, FsOp::WriteInPlace, FsOp::SyncInPlace] {
            let dir = tempfile::tempdir().unwrap();
            let (fs, store) = faulty(dir.path());
            let ctx = OpContext::new();
            let series = aapl();
            store.record(&sample_metadata(&series, "csv", 1), &ctx).await.unwrap();
            store.record(&sample_metadata(&series, "csv", 2), &ctx).await.unwrap();
            fs.inject(Fault::once(step, 1, EIO));
            let err = store.record(&sample_metadata(&series, "csv", 3), &ctx).await.unwrap_err();
            assert_eq!(fs.injected(), 1, "{step}");
            let text = err.to_string();
            assert!(
                text.contains("write metadata") && text.contains("AAPL.csv.meta") && text.contains("os error 5"),
                "{text}"
            );
            assert_eq!(store.get(&series, "csv", &ctx).await.unwrap().unwrap().generation, 2, "{step}");
            let list = store.scan().unwrap();
            assert_eq!((list.records.len(), list.unreadable.len()), (1, 0), "{step}");
            store.record(&sample_metadata(&series, "csv", 3), &ctx).await.unwrap();
            assert_eq!(store.get(&series, "csv", &ctx).await.unwrap().unwrap().generation, 3, "{step}");
        }
    }

    /// What a crash in the middle of a slot write leaves on disk (a prefix of the new slot
    /// over the old one, at every 64th byte): the reader gets the previous record or the
    /// new one, and the next write repairs the file.
    #[tokio::test]
    async fn every_torn_prefix_reads_as_the_old_or_the_new_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMetadataStore::new(dir.path());
        let ctx = OpContext::new();
        let series = aapl();
        store.record(&sample_metadata(&series, "csv", 1), &ctx).await.unwrap();
        store.record(&sample_metadata(&series, "csv", 2), &ctx).await.unwrap();
        let path = store.record_path(&series, "csv");
        let before = std::fs::read(&path).unwrap();
        store.record(&sample_metadata(&series, "csv", 3), &ctx).await.unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(before[SLOT_UNIT..], after[SLOT_UNIT..], "slot 1 (generation 2) is not touched");
        for cut in (0..=SLOT_UNIT).step_by(64) {
            let mut torn = before.clone();
            torn[..cut].copy_from_slice(&after[..cut]);
            std::fs::write(&path, &torn).unwrap();
            let generation = store.get(&series, "csv", &ctx).await.unwrap().unwrap().generation;
            assert!(generation == 2 || generation == 3, "cut {cut}: generation {generation}");
            store.record(&sample_metadata(&series, "csv", 4), &ctx).await.unwrap();
            assert_eq!(store.get(&series, "csv", &ctx).await.unwrap().unwrap().generation, 4, "cut {cut}");
        }
    }

    #[tokio::test]
    async fn a_record_larger_than_its_slots_gets_a_larger_file() {
        let dir = tempfile::tempdir().unwrap();
        let (fs, store) = faulty(dir.path());
        let ctx = OpContext::new();
        let series = aapl();
        store.record(&sample_metadata(&series, "csv", 1), &ctx).await.unwrap();
        let mut big = sample_metadata(&series, "csv", 2);
        big.columns = (0..400).map(|i| format!("extra_column_{i}")).collect();
        store.record(&big, &ctx).await.unwrap();
        let path = store.record_path(&series, "csv");
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 2 * SLOT_UNIT as u64 && len % (2 * SLOT_UNIT as u64) == 0, "{len}");
        assert_eq!(store.get(&series, "csv", &ctx).await.unwrap().unwrap(), big);
        fs.reset_counts();
        store.record(&sample_metadata(&series, "csv", 3), &ctx).await.unwrap();
        assert_eq!(fs.calls(FsOp::CreateTemp), 0, "a smaller record fits the larger slots");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(store.get(&series, "csv", &ctx).await.unwrap().unwrap().generation, 3);
    }

    /// Records written by earlier versions (`.json`) are read, listed and removed; the next
    /// write replaces them with a slotted file, and a `.json` left beside a `.meta` (a crash
    /// between the two) is ignored.
    #[tokio::test]
    async fn legacy_json_records_are_read_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMetadataStore::new(dir.path());
        let ctx = OpContext::new();
        let series = aapl();
        let legacy = store.legacy_record_path(&series, "csv");
        assert!(legacy.ends_with(".barvault/meta/stocks/1d/AAPL.csv.json"), "{}", legacy.display());
        std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        let old = sample_metadata(&series, "csv", 7);
        std::fs::write(&legacy, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
        assert_eq!(store.get(&series, "csv", &ctx).await.unwrap(), Some(old.clone()));
        assert_eq!(store.list(&ctx).await.unwrap().records, vec![old.clone()]);
        store.record(&sample_metadata(&series, "csv", 8), &ctx).await.unwrap();
        assert!(!legacy.exists());
        assert!(store.record_path(&series, "csv").exists());
        std::fs::write(&legacy, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
        let both = vec![store.record_path(&series, "csv"), legacy.clone()];
        assert_eq!(store.locations(&series, "csv", &ctx).await.unwrap(), both, "a delete lists both");
        assert_eq!(store.get(&series, "csv", &ctx).await.unwrap().unwrap().generation, 8);
        let list = store.scan().unwrap();
        assert_eq!((list.records.len(), list.unreadable.len()), (1, 0));
        assert_eq!(list.records[0].generation, 8);
        assert!(store.remove(&series, "csv", &ctx).await.unwrap());
        assert!(!legacy.exists() && !store.record_path(&series, "csv").exists());
        assert!(store.locations(&series, "csv", &ctx).await.unwrap().is_empty());
        assert_eq!(store.get(&series, "csv", &ctx).await.unwrap(), None);
    }
}
