//! Every call this package makes into the application crate, and nothing else: plain Rust
//! in, plain Rust out, no Python. The functions block (they run the crate's async operations
//! on a process-wide runtime), so callers release the GIL around them, and they never
//! unwind: a panic becomes [`Failure::Internal`].
//!
//! Kept to this one file so that changes of the application crate's API touch one place.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use barvault::arrow::{FrameColumn, FrameOptions, bars_to_record_batch, frame_to_raw_bars, record_batch_columns};
use barvault::{
    Bars, ConfigSources, ImportOptions, InstrumentKind, MergePolicy, OpContext, Period, RecoveryReport, RowsPersisted,
    Scope, SeriesFile, SeriesKey, SeriesSummary, StorageConfig, StorageFactory, TimeRange, ValidationPolicy, Vault,
    VerifyReport, WriteMode,
};
use tokio::runtime::Runtime;

use crate::errors::{Failure, panic_message};

/// The runtime of this process, rebuilt in a child after `fork` (whose copy of the parent's
/// runtime has no threads): the pid it was built in, and the runtime.
static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The process-wide runtime: async work on two worker threads, file I/O on a blocking pool
/// bounded as the CLI bounds it. Any number of Python threads may block on it at once.
fn runtime() -> Result<Arc<Runtime>, Failure> {
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = std::process::id();
    if let Some((built_in, rt)) = slot.as_ref()
        && *built_in == pid
    {
        return Ok(Arc::clone(rt));
    }
    if let Some((_, inherited)) = slot.take() {
        // A forked child's copy of the parent's runtime refers to threads that do not exist
        // here; dropping it would wait for them forever.
        std::mem::forget(inherited);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, 2))
        // File I/O of a few calls at a time: a bounded pool (8 threads a core, at least 16),
        // as the CLI's runtime, instead of tokio's 512.
        .max_blocking_threads(cores.saturating_mul(8).max(16))
        .thread_name("barvault")
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    let rt = Arc::new(rt);
    *slot = Some((pid, Arc::clone(&rt)));
    Ok(rt)
}

/// Runs `work` and turns a panic into [`Failure::Internal`].
fn guarded<T>(work: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| Err(Failure::Internal(panic_message(panic.as_ref()))))
}

/// Blocks on `fut` on the runtime, panics caught.
fn block_on<T>(fut: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    guarded(|| runtime()?.block_on(fut))
}

/// What `open` was given besides the store's path.
#[derive(Debug, Default)]
pub struct OpenOptions {
    pub config_file: Option<PathBuf>,
    pub backup_enabled: Option<bool>,
    pub compression: Option<String>,
    pub validation: Option<String>,
}

/// The configuration as the CLI layers it (defaults < config file < `BARVAULT_*`
/// environment < explicit values), with `path` as the output directory, then the store.
pub fn open(path: PathBuf, options: OpenOptions) -> Result<Vault, Failure> {
    guarded(|| {
        let path = path
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| Failure::Invalid(format!("store path {}: not valid UTF-8", path.display())))?;
        let mut overrides = vec![("output_directory".to_string(), path)];
        if let Some(b) = options.backup_enabled {
            overrides.push(("backup_enabled".into(), b.to_string()));
        }
        if let Some(c) = options.compression {
            overrides.push(("compression".into(), c));
        }
        if let Some(v) = options.validation {
            overrides.push(("validation".into(), v));
        }
        let sources = ConfigSources { file: options.config_file, working_dir: None, overrides };
        let loaded = StorageConfig::load(&sources)?;
        Ok(StorageFactory::open(&loaded.config)?)
    })
}

/// The store's base directory.
pub fn base_dir(vault: &Vault) -> String {
    vault.base().display().to_string()
}

/// Whether the store keeps the Parquet copy.
pub fn backup_enabled(vault: &Vault) -> bool {
    vault.config().backup_enabled
}

/// The series named by a kind, a symbol and a period as the CLI spells them.
pub fn series_key(kind: &str, symbol: &str, period: &str) -> Result<SeriesKey, Failure> {
    let kind: InstrumentKind = kind.parse()?;
    let period: Period = period.parse()?;
    let instrument = barvault::Instrument::new(kind, symbol)?;
    Ok(SeriesKey::new(instrument, period))
}

/// How a persist treats its rows: validation (`None` = the store's setting), merge or replace.
pub fn persist_options(vault: &Vault, on_invalid: Option<&str>, replace: bool) -> Result<ImportOptions, Failure> {
    let validation = match on_invalid {
        None => vault.config().validation,
        Some("reject") => ValidationPolicy::Strict,
        Some("drop") => ValidationPolicy::Drop,
        Some(other) => {
            return Err(Failure::Invalid(format!("on_invalid={other:?}: expected \"reject\" or \"drop\"")));
        }
    };
    let policy: MergePolicy = vault.config().merge_policy;
    Ok(ImportOptions {
        validation,
        mode: if replace { WriteMode::Replace } else { WriteMode::Merge },
        policy,
        ..ImportOptions::default()
    })
}

/// Reads a frame's columns as rows and merges them into `series`.
pub fn persist(
    vault: &Vault,
    frame: &[FrameColumn],
    reading: FrameOptions,
    series: &SeriesKey,
    options: ImportOptions,
    correlation_id: Option<&str>,
) -> Result<RowsPersisted, Failure> {
    let ctx = OpContext::with_correlation_id(correlation_id);
    block_on(async {
        let rows = frame_to_raw_bars(frame, reading)?;
        Ok(vault.persist_rows(rows, series, options, &ctx).await?)
    })
}

/// The columns of record batches, as a frame.
pub fn batch_columns(schema: &Schema, batches: &[RecordBatch]) -> Vec<FrameColumn> {
    record_batch_columns(schema, batches)
}

/// Whether a frame column of this name is the time column.
pub fn is_time_column(name: &str) -> bool {
    barvault::arrow::is_time_column(name)
}

/// The bars as one Arrow record batch over their own buffers.
pub fn record_batch(bars: Bars) -> Result<RecordBatch, Failure> {
    guarded(|| bars_to_record_batch(bars).map_err(|e| Failure::Internal(format!("bars as Arrow: {e}"))))
}

/// A range bound typed as text, as the CLI's `--from` (`end` false) or `--to` reads it.
pub fn parse_bound(text: &str, end: bool) -> Result<i64, String> {
    if end { barvault::timearg::parse_to(text) } else { barvault::timearg::parse_from(text) }
}

pub fn load(vault: &Vault, series: &SeriesKey, range: Option<TimeRange>) -> Result<Option<Bars>, Failure> {
    block_on(async { Ok(vault.manager().load_with_fallback(series, range, &OpContext::new()).await?) })
}

pub fn exists(vault: &Vault, series: &SeriesKey) -> Result<bool, Failure> {
    block_on(async { Ok(vault.manager().exists(series, &OpContext::new()).await?) })
}

pub fn file_info(vault: &Vault, series: &SeriesKey) -> Result<Option<SeriesFile>, Failure> {
    block_on(async { Ok(vault.file_info(series, &OpContext::new()).await?) })
}

pub fn list(vault: &Vault) -> Result<Vec<SeriesSummary>, Failure> {
    block_on(async { Ok(vault.list(None, None, &OpContext::new()).await?) })
}

pub fn verify(vault: &Vault, deep: bool) -> Result<VerifyReport, Failure> {
    block_on(async { Ok(vault.verify(Scope::All, deep).await?) })
}

pub fn recover(vault: &Vault) -> Result<RecoveryReport, Failure> {
    block_on(async { Ok(vault.recover(Scope::All).await?) })
}

/// The health report as `barvault health --json` prints it.
pub fn health(vault: &Vault) -> Result<String, Failure> {
    block_on(async {
        let report = vault.check_health().await?;
        serde_json::to_string(&report).map_err(|e| Failure::Internal(format!("health report not serializable: {e}")))
    })
}

/// A range from optional inclusive bounds in UTC nanoseconds.
pub fn time_range(start: Option<i64>, end: Option<i64>) -> Result<Option<TimeRange>, Failure> {
    if start.is_none() && end.is_none() {
        return Ok(None);
    }
    Ok(Some(TimeRange::new(start, end)?))
}
