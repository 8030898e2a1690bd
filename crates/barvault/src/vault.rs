//! The store as operators use it: the factory that wires adapters from a
//! [`StorageConfig`], and the operations that read or write whole series (import, export,
//! info, list). Integrity, recovery, health and cleanup live in their own modules but act on
//! the same [`Vault`], through the same ports.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use barvault_csv::CsvCodec;
use barvault_domain::{Instrument, InstrumentKind, MergePolicy, Period, SeriesKey, TimeRange, ValidationPolicy};
use barvault_fs::{FileLocks, FileStore, Fs, FsHousekeeping, RealFs, write_atomic_unrecorded};
use barvault_metadata::FileMetadataStore;
use barvault_parquet::ParquetCodec;
use barvault_ports::{
    BarCodec, BarStore, CodecError, FileMetadata, Housekeeping, IoStep, MetadataStore, OpContext, SeriesLocks,
    StorageError,
};
use serde::Serialize;
use tracing::Instrument as _;

use crate::config::StorageConfig;
use crate::dual::{DualSettings, DualStorageManager};
use crate::input::InputOptions;
use crate::receipt::{PersistOptions, WriteMode};

/// Builds stores from a [`StorageConfig`] (the seed's StorageFactory).
#[derive(Debug, Clone, Copy)]
pub struct StorageFactory;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Formats {
    Dual,
    CsvOnly,
    ParquetOnly,
}

impl StorageFactory {
    /// The dual CSV + Parquet manager (CSV only when `backup_enabled` is false).
    pub fn create_storage(config: &StorageConfig) -> Result<DualStorageManager, StorageError> {
        Ok(Self::open(config)?.manager)
    }

    /// A CSV-only store (the seed's create_csv_only_storage), with metadata and locking.
    pub fn create_csv_only(config: &StorageConfig) -> Result<DualStorageManager, StorageError> {
        Ok(Self::build(config, Formats::CsvOnly, Arc::new(RealFs))?.manager)
    }

    /// A Parquet-only store (the seed's create_parquet_only_storage), with metadata and locking.
    pub fn create_parquet_only(config: &StorageConfig) -> Result<DualStorageManager, StorageError> {
        Ok(Self::build(config, Formats::ParquetOnly, Arc::new(RealFs))?.manager)
    }

    /// The whole store with every operator operation: on files, or on object storage when
    /// `output_directory` is `s3://BUCKET/PREFIX`.
    pub fn open(config: &StorageConfig) -> Result<Vault, StorageError> {
        Self::open_with_fs(config, Arc::new(RealFs))
    }

    /// Like [`StorageFactory::open`], with every file operation going through `fs` (a
    /// `FaultyFs` in failure-injection tests): the store's files and the user's input and
    /// output files alike.
    pub fn open_with_fs(config: &StorageConfig, fs: Arc<dyn Fs>) -> Result<Vault, StorageError> {
        let formats = if config.backup_enabled { Formats::Dual } else { Formats::CsvOnly };
        Self::build(config, formats, fs)
    }

    /// A CSV-only or Parquet-only [`Vault`].
    pub fn open_single_format(config: &StorageConfig, parquet: bool) -> Result<Vault, StorageError> {
        Self::build(config, if parquet { Formats::ParquetOnly } else { Formats::CsvOnly }, Arc::new(RealFs))
    }

    fn build(config: &StorageConfig, formats: Formats, fs: Arc<dyn Fs>) -> Result<Vault, StorageError> {
        if let Some(url) = crate::on_bucket::bucket_of(config)? {
            let parquet_only = match formats {
                Formats::Dual => None,
                Formats::CsvOnly => Some(false),
                Formats::ParquetOnly => Some(true),
            };
            return Self::build_on_bucket(config, &url, parquet_only, fs);
        }
        let base = config.output_directory.clone();
        barvault_fs::create_dir_durable(fs.as_ref(), &base)?;
        let timeout = config.lock_timeout();
        // The manager holds the series lock around every read-merge-write, so the stores
        // take none of their own.
        let store = |codec| -> Result<Arc<dyn BarStore>, StorageError> {
            Ok(match codec {
                Formats::CsvOnly => Arc::new(
                    FileStore::builder(base.clone(), CsvCodec::with_utc_marker(config.csv_utc_marker))
                        .fs(Arc::clone(&fs))
                        .locked_by_caller()
                        .build()?,
                ),
                _ => Arc::new(
                    FileStore::builder(base.clone(), ParquetCodec::new(config.compression))
                        .fs(Arc::clone(&fs))
                        .locked_by_caller()
                        .build()?,
                ),
            })
        };
        let (primary, secondary) = match formats {
            Formats::Dual => (store(Formats::CsvOnly)?, Some(store(Formats::ParquetOnly)?)),
            Formats::CsvOnly => (store(Formats::CsvOnly)?, None),
            Formats::ParquetOnly => (store(Formats::ParquetOnly)?, None),
        };
        let metadata: Arc<dyn MetadataStore> = Arc::new(FileMetadataStore::with_fs(base.clone(), Arc::clone(&fs)));
        let locks: Arc<dyn SeriesLocks> = Arc::new(FileLocks::new(Arc::clone(&fs), base.clone()));
        let housekeeping: Arc<dyn Housekeeping> = Arc::new(FsHousekeeping::new(base.clone(), Arc::clone(&fs), timeout));
        let settings = DualSettings {
            lock_timeout: timeout,
            validation: config.validation,
            merge_policy: config.merge_policy,
            prefer_secondary_reads: formats == Formats::Dual,
            ..DualSettings::default()
        };
        let manager = DualStorageManager::new(primary, secondary, metadata, locks, settings).with_base_dir(base);
        Ok(Vault::from_parts(config.clone(), manager, housekeeping, fs))
    }
}

/// The store with every operator operation: the dual manager, the housekeeping of its
/// namespace, and the filesystem of the user's own input and output files.
#[derive(Debug, Clone)]
pub struct Vault {
    pub(crate) config: StorageConfig,
    pub(crate) manager: DualStorageManager,
    pub(crate) housekeeping: Arc<dyn Housekeeping>,
    /// Where `import` reads and `export -o` writes the user's files.
    pub(crate) io: Arc<dyn Fs>,
}

/// How much a multi-file import ([`Vault::import_many`]) runs at once: at most `series`
/// series, and input files of at most about `bytes` in total (a series counts for its
/// largest file, and for at least `bytes / series`). Small daily files then run many at a
/// time, which keeps both cores busy while others wait on fsyncs; large ones few at a
/// time, which bounds memory (a series holds its file's bars, about the file's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    pub series: usize,
    pub bytes: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self { series: 32, bytes: 256 << 20 }
    }
}

impl ImportLimits {
    /// Permits (out of `series`) a series whose largest input file has `len` bytes takes.
    pub fn weight(&self, len: u64) -> u32 {
        let series = self.series.max(1) as u64;
        let unit = (self.bytes / series).max(1);
        u32::try_from(len.div_ceil(unit).clamp(1, series)).unwrap_or(u32::MAX)
    }
}

/// How `import` treats each file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImportOptions {
    pub validation: ValidationPolicy,
    pub mode: WriteMode,
    pub policy: MergePolicy,
    /// How inputs are read (the zone of naive timestamps, progress).
    pub input: InputOptions,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            validation: ValidationPolicy::Strict,
            mode: WriteMode::Merge,
            policy: MergePolicy::KeepLast,
            input: InputOptions::default(),
        }
    }
}

/// What importing one file did.
#[derive(Debug, Clone, Serialize)]
pub struct FileImport {
    pub file: PathBuf,
    pub series: String,
    /// Data rows in the file.
    pub rows_read: usize,
    /// Timestamps that were not stored before.
    pub added: usize,
    /// Stored rows whose values changed.
    pub replaced: usize,
    /// Rows that were already stored with the same values.
    pub unchanged: usize,
    /// Rows whose timestamp an earlier row of the same file already had: folded into it
    /// under the merge policy (keep-last: the later row's values win, cell by cell).
    pub duplicates: usize,
    /// Stored rows the file's bars did not keep (`--replace`).
    pub removed: usize,
    /// Rows removed by `--on-invalid drop`.
    pub dropped_invalid: usize,
    /// Why rows were dropped, by rule: `high < low: 2, not on the series' time grid: 1`.
    pub dropped_why: String,
    /// Up to ten of the dropped rows, each as `line N (TIME)[: rule]`.
    pub dropped_rows: Vec<String>,
    /// Rows in the series afterwards.
    pub rows_stored: usize,
    pub written: bool,
    pub location: String,
    /// Set when the secondary (Parquet) copy could not be written.
    pub warning: Option<String>,
}

/// Output format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Parquet,
    /// One JSON object per line: `{"timestamp": "...", "open": ..., ...}`.
    Json,
}

/// One series as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesSummary {
    pub instrument_type: InstrumentKind,
    pub symbol: String,
    pub period: Period,
    pub rows: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub formats: Vec<String>,
    pub generation: u64,
}

/// Everything `info` shows about one series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesInfo {
    pub series: String,
    pub rows: usize,
    pub first: Option<String>,
    pub last: Option<String>,
    pub columns: Vec<String>,
    pub files: Vec<FileMetadataView>,
}

/// The stored file of a series, as the seed's `get_file_info` described it: where it is,
/// its size and time, and the rows, range and columns it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesFile {
    pub location: String,
    pub format: String,
    pub size: u64,
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
    pub rows: usize,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub columns: Vec<String>,
}

/// One file of a series, from its metadata record and the file system.
#[derive(Debug, Clone, Serialize)]
pub struct FileMetadataView {
    pub format: String,
    pub path: String,
    pub exists: bool,
    pub size: Option<u64>,
    pub record: Option<FileMetadata>,
}

impl Vault {
    /// A vault over any adapters (the factory wires the file ones): `manager` keeps the
    /// series, `housekeeping` surveys its namespace, `io` reads and writes the user's files.
    pub fn from_parts(
        config: StorageConfig,
        manager: DualStorageManager,
        housekeeping: Arc<dyn Housekeeping>,
        io: Arc<dyn Fs>,
    ) -> Self {
        Self { config, manager, housekeeping, io }
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// The dual manager.
    pub fn manager(&self) -> &DualStorageManager {
        &self.manager
    }

    pub fn housekeeping(&self) -> &Arc<dyn Housekeeping> {
        &self.housekeeping
    }

    pub fn base(&self) -> &Path {
        &self.config.output_directory
    }

    /// The formats stored, primary first.
    pub fn formats(&self) -> Vec<String> {
        self.manager.copies().iter().map(|c| c.name().to_string()).collect()
    }

    /// The data file of `series` in each format, primary first.
    pub fn paths_of(&self, series: &SeriesKey) -> Vec<PathBuf> {
        self.formats().iter().map(|f| self.base().join(DualStorageManager::relative_path(series, f))).collect()
    }

    /// Reads one input file (CSV in any dialect the reader accepts, or `.parquet`) and
    /// merges it into `series`. Nothing is written when the file does not parse.
    pub async fn import_file(
        &self,
        file: &Path,
        series: &SeriesKey,
        options: ImportOptions,
        ctx: &OpContext,
    ) -> Result<FileImport, StorageError> {
        let span = ctx.span("import", Some(series));
        async {
            let crate::input::Input { raw, mut origin } = read_input(Arc::clone(&self.io), file, options.input).await?;
            origin.remember_order(&raw);
            let rows_read = raw.len();
            let (bars, duplicates) = raw.into_bars(options.policy).map_err(|e| match e {
                barvault_domain::DomainError::Conflict { .. } => StorageError::merge_failed(series, e),
                other => CodecError::Domain(other).at(file),
            })?;
            let keep_last = options.policy == MergePolicy::KeepLast;
            let persist = PersistOptions { mode: options.mode, policy: options.policy };
            let outcome = match self.manager.persist_with_backup(&bars, series, persist, options.validation, ctx).await
            {
                Ok(outcome) => outcome,
                Err(e) => {
                    if matches!(e, StorageError::Validation { .. }) {
                        self.forget_refused_new_series(series, ctx).await;
                    }
                    return Err(crate::input::located_refusal(e, file, &origin, &bars, keep_last));
                }
            };
            let counts = crate::RowsPersisted::of(series, rows_read, duplicates, &outcome);
            let dropped_rows =
                origin.locate(&bars, &outcome.validation.samples, keep_last).into_iter().map(|l| l.text).collect();
            let result = FileImport {
                file: file.to_path_buf(),
                series: counts.series,
                rows_read,
                added: counts.added,
                replaced: counts.replaced,
                unchanged: counts.unchanged,
                duplicates,
                removed: counts.removed,
                dropped_invalid: counts.dropped_invalid,
                dropped_why: counts.dropped_why,
                dropped_rows,
                rows_stored: counts.rows_stored,
                written: counts.written,
                location: counts.location,
                warning: counts.warning,
            };
            tracing::info!(
                file = %file.display(),
                rows_read,
                added = result.added,
                replaced = result.replaced,
                "imported"
            );
            Ok(result)
        }
        .instrument(span)
        .await
    }

    /// Imports many files, several series at a time. Files of the same series are imported
    /// one after another in the order given (keep-last depends on it); different series run
    /// concurrently within `limits`, so their fsyncs overlap instead of queueing.
    /// `on_done` sees every file's result, in the order the files were given.
    pub async fn import_many(
        &self,
        jobs: Vec<(PathBuf, SeriesKey)>,
        options: ImportOptions,
        limits: ImportLimits,
        ctx: &OpContext,
        mut on_done: impl FnMut(&Path, Result<FileImport, StorageError>),
    ) {
        // Group by series, remembering each file's position for ordered reporting.
        let mut groups: Vec<(SeriesKey, Vec<(usize, PathBuf)>)> = Vec::new();
        let mut index: BTreeMap<SeriesKey, usize> = BTreeMap::new();
        for (i, (file, series)) in jobs.into_iter().enumerate() {
            let g = *index.entry(series.clone()).or_insert_with(|| {
                groups.push((series.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push((i, file));
        }
        let total: usize = groups.iter().map(|(_, files)| files.len()).sum();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(limits.series.max(1)));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        for (series, files) in groups {
            let (vault, ctx, tx, semaphore) = (self.clone(), ctx.clone(), tx.clone(), Arc::clone(&semaphore));
            // A series holds the bars of one of its files at a time: weigh it by its largest.
            let largest = files.iter().map(|(_, f)| self.io.metadata(f).map_or(0, |m| m.len())).max();
            let weight = limits.weight(largest.unwrap_or(0));
            tasks.spawn(async move {
                // The semaphore is never closed, so acquiring cannot fail.
                let _permit = semaphore.acquire_many_owned(weight).await.ok();
                for (i, file) in files {
                    let result = vault.import_file(&file, &series, options, &ctx).await;
                    if tx.send((i, file, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, (PathBuf, Result<FileImport, StorageError>)> = BTreeMap::new();
        let mut next = 0;
        while next < total {
            let Some((i, file, result)) = rx.recv().await else { break };
            pending.insert(i, (file, result));
            while let Some((file, result)) = pending.remove(&next) {
                on_done(&file, result);
                next += 1;
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Deletes a series: its data files, backups and metadata records (under the series
    /// lock), then its lock files, so nothing of it is left for `verify` to call stale.
    /// Returns whether anything was stored.
    pub async fn remove_series(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        let removed = self.manager.remove(series, ctx).await?;
        self.discard_locks(series, ctx).await?;
        Ok(removed)
    }

    /// Removes the lock files of a removed series (each while held).
    pub(crate) async fn discard_locks(&self, series: &SeriesKey, ctx: &OpContext) -> Result<(), StorageError> {
        let survey = self.housekeeping.survey(ctx).await?;
        for lock in survey.of(barvault_ports::EntryKind::Lock).filter(|e| e.series.as_ref() == Some(series)) {
            self.housekeeping.discard(lock, ctx).await?;
        }
        Ok(())
    }

    /// The series an input file goes to: `symbol`, or the one its name gives (see
    /// [`crate::symbol_from_file_name`]; standard input needs `symbol`).
    pub fn series_for_file(
        file: &Path,
        kind: InstrumentKind,
        symbol: Option<&str>,
        period: Period,
    ) -> Result<SeriesKey, StorageError> {
        let symbol = match symbol {
            Some(s) => s.to_string(),
            None if crate::input::is_stdin(file) => {
                return Err(StorageError::invalid("standard input (-) has no file name: give --symbol"));
            }
            None => crate::input::symbol_from_file_name(file, period).ok_or_else(|| {
                StorageError::invalid(format!("{}: cannot take a symbol from this file name", file.display()))
            })?,
        };
        let instrument =
            Instrument::new(kind, &symbol).map_err(|e| StorageError::invalid(format!("{}: {e}", file.display())))?;
        Ok(SeriesKey::new(instrument, period))
    }

    /// Writes the stored bars of `series` (within `range`) to `out` (`None` = standard output)
    /// in `format`. A file is written atomically; returns the rows written.
    pub async fn export(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        format: ExportFormat,
        out: Option<&Path>,
        ctx: &OpContext,
    ) -> Result<usize, StorageError> {
        let bars = self
            .manager
            .load_with_fallback(series, range, ctx)
            .await?
            .ok_or_else(|| StorageError::NotFound { what: series.to_string() })?;
        let rows = bars.len();
        let encode = |w: &mut (dyn Write + Send)| -> Result<(), CodecError> {
            match format {
                ExportFormat::Csv => CsvCodec::with_utc_marker(self.config.csv_utc_marker).encode(&bars, series, w),
                ExportFormat::Parquet => ParquetCodec::new(self.config.compression).encode(&bars, series, w),
                ExportFormat::Json => crate::export::write_json_lines(&bars, w),
            }
        };
        match out {
            Some(path) => {
                write_atomic_unrecorded(self.io.as_ref(), path, encode)?;
            }
            None => {
                let mut sink = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
                encode(&mut sink).map_err(|e| e.at(Path::new("<stdout>")))?;
                sink.flush().map_err(|e| StorageError::io(IoStep::WriteTemp, "<stdout>", e))?;
            }
        }
        Ok(rows)
    }

    /// The primary file of `series` (or the secondary, when there is no primary), with the
    /// rows, range and columns its metadata record gives (or a read of the series, for a
    /// file without a record); `None` when nothing is stored.
    pub async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<SeriesFile>, StorageError> {
        let Some(info) = self.manager.file_info(series, ctx).await? else { return Ok(None) };
        let record = self.manager.metadata().get(series, &info.format, ctx).await?;
        let nanos = |t: Option<chrono::DateTime<chrono::Utc>>| t.and_then(|t| t.timestamp_nanos_opt());
        let (rows, first, last, columns) = match record {
            Some(r) if r.file_size == info.size => {
                (r.row_count as usize, nanos(r.date_range.start), nanos(r.date_range.end), r.columns)
            }
            _ => {
                let bars = self.manager.load_with_fallback(series, None, ctx).await?.unwrap_or_default();
                (bars.len(), bars.first_timestamp(), bars.last_timestamp(), bars.column_names())
            }
        };
        Ok(Some(SeriesFile {
            location: info.location,
            format: info.format,
            size: info.size,
            modified: info.modified,
            rows,
            first,
            last,
            columns,
        }))
    }

    /// Rows, range, columns, files, sizes, checksums and generation of one series.
    pub async fn info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<SeriesInfo>, StorageError> {
        let mut files = Vec::new();
        for copy in self.manager.copies() {
            let info = copy.file_info(series, ctx).await?;
            let record = self.manager.metadata().get(series, copy.name(), ctx).await?;
            let path = self.base().join(DualStorageManager::relative_path(series, copy.name()));
            files.push(FileMetadataView {
                format: copy.name().to_string(),
                path: info.as_ref().map_or_else(|| path.display().to_string(), |i| i.location.clone()),
                exists: info.is_some(),
                size: info.map(|i| i.size),
                record,
            });
        }
        if files.iter().all(|f| !f.exists && f.record.is_none()) {
            return Ok(None);
        }
        let bars = self.manager.load_with_fallback(series, None, ctx).await?.unwrap_or_default();
        Ok(Some(SeriesInfo {
            series: series.to_string(),
            rows: bars.len(),
            first: bars.first_timestamp().map(barvault_domain::format_timestamp),
            last: bars.last_timestamp().map(barvault_domain::format_timestamp),
            columns: bars.column_names(),
            files,
        }))
    }

    /// Every stored series (from metadata records, plus data files that have none),
    /// optionally filtered by kind and period.
    pub async fn list(
        &self,
        kind: Option<InstrumentKind>,
        period: Option<Period>,
        ctx: &OpContext,
    ) -> Result<Vec<SeriesSummary>, StorageError> {
        let records = self.manager.metadata().list(ctx).await?.records;
        let mut by_series: BTreeMap<SeriesKey, SeriesSummary> = BTreeMap::new();
        for r in records {
            let Ok(series) = r.try_series() else { continue };
            let entry = by_series.entry(series.clone()).or_insert_with(|| summary_of(&series));
            if r.generation >= entry.generation {
                entry.generation = r.generation;
                entry.rows = r.row_count;
                entry.first = r.date_range.start.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
                entry.last = r.date_range.end.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            }
            entry.formats.push(r.format.clone());
        }
        for series in self.manager.list(ctx).await? {
            if by_series.contains_key(&series) {
                continue;
            }
            let mut s = summary_of(&series);
            for copy in self.manager.copies() {
                let Some(loaded) = copy.load(&series, &barvault_ports::LoadOptions::default(), ctx).await? else {
                    continue;
                };
                if s.formats.is_empty() {
                    let bars = loaded.into_bars();
                    s.rows = bars.len() as u64;
                    s.first = bars.first_timestamp().map(barvault_domain::format_timestamp);
                    s.last = bars.last_timestamp().map(barvault_domain::format_timestamp);
                }
                s.formats.push(copy.name().to_string());
            }
            by_series.insert(series, s);
        }
        Ok(by_series
            .into_iter()
            .filter(|(k, _)| kind.is_none_or(|x| k.instrument.kind() == x) && period.is_none_or(|p| k.period == p))
            .map(|(_, v)| v)
            .collect())
    }
}

fn summary_of(series: &SeriesKey) -> SeriesSummary {
    SeriesSummary {
        instrument_type: series.instrument.kind(),
        symbol: series.instrument.symbol().to_string(),
        period: series.period,
        rows: 0,
        first: None,
        last: None,
        formats: Vec::new(),
        generation: 0,
    }
}

/// Reads one input (see [`crate::input`]) on the blocking pool, through `io`.
async fn read_input(io: Arc<dyn Fs>, file: &Path, options: InputOptions) -> Result<crate::input::Input, StorageError> {
    let path = file.to_path_buf();
    tokio::task::spawn_blocking(move || crate::input::read(io, &path, options))
        .await
        .map_err(|e| StorageError::io(IoStep::Read, file, std::io::Error::other(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_weights_grow_with_file_size_within_the_series_limit() {
        let limits = ImportLimits::default();
        assert_eq!(limits.weight(0), 1);
        assert_eq!(limits.weight(300_000), 1, "a daily series runs 32 at a time");
        assert_eq!(limits.weight(8 << 20), 1);
        assert_eq!(limits.weight((8 << 20) + 1), 2);
        assert_eq!(limits.weight(49_000_000), 6, "a year of minutes runs 5 at a time");
        assert_eq!(limits.weight(u64::MAX), 32, "never more than every permit");
        assert_eq!(ImportLimits { series: 0, bytes: 0 }.weight(10), 1);
    }

    /// Series that each take every permit run one after another, and every file's result is
    /// reported once, in the order given.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn import_many_reports_every_file_in_order_under_tight_limits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let vault =
            StorageFactory::open(&StorageConfig::with_output_directory(dir.path().join("store"))).expect("open store");
        let mut jobs = Vec::new();
        for (i, symbol) in ["AAA", "BBB", "AAA", "CCC"].into_iter().enumerate() {
            let file = dir.path().join(format!("{i}.csv"));
            let day = 10 + i;
            std::fs::write(
                &file,
                format!("timestamp,open,high,low,close,volume\n2024-01-{day} 00:00:00,1,2,0.5,1.5,{i}\n"),
            )
            .expect("write input");
            jobs.push((file, SeriesKey::new(Instrument::stock(symbol).expect("symbol"), Period::D1)));
        }
        let expected: Vec<PathBuf> = jobs.iter().map(|(f, _)| f.clone()).collect();
        let mut seen = Vec::new();
        let limits = ImportLimits { series: 2, bytes: 1 };
        assert_eq!(limits.weight(60), 2, "each series takes every permit");
        let options = ImportOptions::default();
        vault
            .import_many(jobs, options, limits, &OpContext::new(), |file, result| {
                let r = result.expect("import");
                assert_eq!(r.rows_read, 1);
                seen.push(file.to_path_buf());
            })
            .await;
        assert_eq!(seen, expected);
        let aaa = SeriesKey::new(Instrument::stock("AAA").expect("symbol"), Period::D1);
        let stored = vault.manager().load_with_fallback(&aaa, None, &OpContext::new()).await.expect("load");
        assert_eq!(stored.map(|b| b.len()), Some(2), "both files of AAA stored");
    }
}
