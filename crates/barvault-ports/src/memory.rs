//! In-memory adapters of every port.
//!
//! They exist for two reasons. First, they are the executable reference of the contract:
//! the conformance suite is proven against them before it judges a file adapter, so a
//! failing CSV or Parquet store points at the store, not at the test. Second, they are
//! the test doubles of the application layer, which needs real behaviour (merges,
//! conflicts, `written == false`, lock timeouts) rather than scripted mock answers.
//!
//! All state sits behind short synchronous critical sections that never span an
//! `.await`, so a `persist` is atomic with respect to every other call on the same store.
//! A poisoned lock is recovered rather than propagated: the maps are only mutated by
//! single `insert`/`remove` calls, so they are never left half-updated.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use barvault_domain::{Bars, SeriesKey, merge};
use chrono::{DateTime, Utc};

use crate::context::OpContext;
use crate::error::StorageError;
use crate::lock::{SeriesGuard, SeriesLocks};
use crate::metadata::{FileMetadata, MetadataStore, RecordList};
use crate::store::{
    BackupPolicy, BarStore, Capabilities, FileInfo, LoadOptions, Loaded, Persisted, PutMode, PutOptions, Revision,
    Rows, StagedWrite, Version, Which,
};

/// The `format` this store reports in receipts and file info.
pub const MEMORY_FORMAT: &str = "memory";

/// `memory://{kind dir}/{period}/{SYMBOL}`, the location of a series in the memory adapters.
pub fn memory_location(series: &SeriesKey) -> String {
    format!("memory://{}", series.relative_stem())
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn exclusive<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Stored {
    bars: Arc<Bars>,
    version: u64,
    modified: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    current: Option<Stored>,
    backup: Option<Stored>,
}

#[derive(Debug, Default)]
struct State {
    series: BTreeMap<SeriesKey, Slot>,
    /// The last version number given out: every commit takes the next one.
    last_version: u64,
}

/// A [`BarStore`] that keeps every series (and its backup) in a map.
///
/// It is the reference of the contract: versions are numbers that change with every
/// commit, a conditional commit checks and publishes under one short critical section (so
/// updates are atomic, [`Capabilities::atomic_updates`]), tail reads skip every row before
/// the last one earlier than the asked timestamp, and revisions keep the skipped rows of
/// the version they name. It holds no bytes, so it reports no checksums.
#[derive(Debug)]
pub struct InMemoryBarStore {
    state: Arc<Mutex<State>>,
    format: String,
}

impl Default for InMemoryBarStore {
    fn default() -> Self {
        Self::named(MEMORY_FORMAT)
    }
}

impl InMemoryBarStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that calls itself `format`, so two in-memory stores can stand in for the
    /// CSV and Parquet stores of a dual manager.
    pub fn named(format: &str) -> Self {
        Self { state: Arc::default(), format: format.to_string() }
    }

    /// How many series are stored.
    pub fn len(&self) -> usize {
        exclusive(&self.state).series.values().filter(|s| s.current.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn info(&self, series: &SeriesKey, stored: &Stored) -> FileInfo {
        FileInfo {
            location: memory_location(series),
            format: self.format.clone(),
            size: estimated_size(&stored.bars),
            modified: Some(stored.modified),
            version: version_of(stored.version),
        }
    }
}

fn version_of(n: u64) -> Version {
    Version::new(format!("memory:{n}"))
}

/// A rough byte size: eight bytes per timestamp and core value, nine per extra cell.
fn estimated_size(bars: &Bars) -> u64 {
    let rows = bars.len() as u64;
    rows * 6 * 8 + rows * bars.extras().len() as u64 * 9
}

/// `bars` as `rows` asks: the rows, the rows skipped before them, the first timestamp.
fn select(bars: &Bars, rows: Rows) -> (Option<Bars>, usize) {
    match rows {
        Rows::All => (Some(bars.clone()), 0),
        Rows::Range(r) => (Some(bars.slice(&r)), 0),
        Rows::Nothing => (None, 0),
        Rows::From(from) => {
            // Keep one row before `from`, as a store reading whole blocks would.
            let at = bars.timestamps().partition_point(|&t| t < from).saturating_sub(1);
            (Some(bars.slice_rows(at, bars.len())), at)
        }
    }
}

/// Whether the stored version is the one `mode` expects; why not, if it is not.
fn check_mode(mode: &PutMode, current: Option<&Stored>) -> Result<(), String> {
    match (mode, current) {
        (PutMode::Overwrite, _) | (PutMode::Create, None) => Ok(()),
        (PutMode::Create, Some(c)) => Err(format!("expected no version, found {}", version_of(c.version))),
        (PutMode::Update(v), Some(c)) if *v == version_of(c.version) => Ok(()),
        (PutMode::Update(v), Some(c)) => Err(format!("expected {v}, found {}", version_of(c.version))),
        (PutMode::Update(v), None) => Err(format!("expected {v}, found nothing")),
    }
}

/// A write of the memory store waiting for `commit`.
#[derive(Debug)]
struct MemoryStaged {
    state: Arc<Mutex<State>>,
    series: SeriesKey,
    revision: Revision,
    options: PutOptions,
    format: String,
}

#[async_trait]
impl StagedWrite for MemoryStaged {
    async fn commit(self: Box<Self>, _ctx: &OpContext) -> Result<Persisted, StorageError> {
        let started = Instant::now();
        let location = memory_location(&self.series);
        let mut state = exclusive(&self.state);
        let slot = state.series.get(&self.series).cloned().unwrap_or_default();
        check_mode(&self.options.mode, slot.current.as_ref())
            .map_err(|why| StorageError::version_conflict(&location, why))?;
        let bars = match (self.revision.skipped, &slot.current) {
            (0, _) => Arc::clone(&self.revision.bars),
            (k, Some(current)) if k <= current.bars.len() => {
                Arc::new(concat(&current.bars.slice_rows(0, k), &self.revision.bars)?)
            }
            (k, _) => {
                return Err(StorageError::invalid(format!(
                    "{location}: a revision skips {k} rows of a version that has fewer"
                )));
            }
        };
        state.last_version += 1;
        let stored = Stored { bars, version: state.last_version, modified: Utc::now() };
        let keep = self.options.backup == BackupPolicy::Keep && slot.current.is_some();
        let backup = if keep { slot.current.clone() } else { slot.backup.clone() };
        let rows = stored.bars.len();
        let info = FileInfo {
            location,
            format: self.format.clone(),
            size: estimated_size(&stored.bars),
            modified: Some(stored.modified),
            version: version_of(stored.version),
        };
        state.series.insert(self.series.clone(), Slot { current: Some(stored), backup });
        Ok(Persisted {
            info,
            rows,
            checksum: None,
            fingerprint: None,
            backup_created: keep,
            duration: started.elapsed(),
        })
    }
}

/// `head` followed by `tail`, which must start after it.
fn concat(head: &Bars, tail: &Bars) -> Result<Bars, StorageError> {
    if let (Some(a), Some(b)) = (head.last_timestamp(), tail.first_timestamp())
        && a >= b
    {
        return Err(StorageError::invalid("a revision's rows must follow the rows it skips"));
    }
    let (merged, _) = merge(head, tail, barvault_domain::MergePolicy::KeepLast).map_err(StorageError::from)?;
    Ok(merged)
}

#[async_trait]
impl BarStore for InMemoryBarStore {
    fn name(&self) -> &str {
        &self.format
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tail_reads: true,
            revisions: true,
            backups: true,
            checksums: false,
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
        _ctx: &OpContext,
    ) -> Result<Option<Loaded>, StorageError> {
        let state = exclusive(&self.state);
        let Some(slot) = state.series.get(series) else { return Ok(None) };
        let stored = match options.which {
            Which::Current => slot.current.as_ref(),
            Which::Backup => slot.backup.as_ref(),
        };
        let Some(stored) = stored else { return Ok(None) };
        let (bars, skipped) = select(&stored.bars, options.rows);
        Ok(Some(Loaded {
            info: self.info(series, stored),
            bars,
            skipped,
            first: stored.bars.first_timestamp(),
            checksum: None,
            fingerprint_ok: None,
            bad_blocks: Vec::new(),
        }))
    }

    async fn file_info(&self, series: &SeriesKey, _ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        let state = exclusive(&self.state);
        Ok(state.series.get(series).and_then(|s| s.current.as_ref()).map(|c| self.info(series, c)))
    }

    async fn stage(
        &self,
        series: &SeriesKey,
        revision: &Revision,
        options: &PutOptions,
        _ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        let location = memory_location(series);
        if revision.skipped > 0 && !matches!(options.mode, PutMode::Update(_)) {
            return Err(StorageError::invalid(format!("{location}: skipped rows need an update of a version")));
        }
        {
            let state = exclusive(&self.state);
            let current = state.series.get(series).and_then(|s| s.current.as_ref());
            check_mode(&options.mode, current).map_err(|why| StorageError::version_conflict(&location, why))?;
        }
        Ok(Box::new(MemoryStaged {
            state: Arc::clone(&self.state),
            series: series.clone(),
            revision: revision.clone(),
            options: options.clone(),
            format: self.format.clone(),
        }))
    }

    async fn list(&self, _ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        let state = exclusive(&self.state);
        Ok(state.series.iter().filter(|(_, s)| s.current.is_some()).map(|(k, _)| k.clone()).collect())
    }

    async fn remove(&self, series: &SeriesKey, _ctx: &OpContext) -> Result<bool, StorageError> {
        let removed = exclusive(&self.state).series.remove(series);
        Ok(removed.is_some_and(|s| s.current.is_some()))
    }
}

/// A [`MetadataStore`] keyed by series and format, so the CSV and Parquet records of one
/// series never overwrite each other.
#[derive(Debug, Default)]
pub struct InMemoryMetadataStore {
    records: RwLock<BTreeMap<(SeriesKey, String), FileMetadata>>,
}

impl InMemoryMetadataStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl MetadataStore for InMemoryMetadataStore {
    async fn record(&self, meta: &FileMetadata, _ctx: &OpContext) -> Result<(), StorageError> {
        let series = meta.try_series()?;
        write(&self.records).insert((series, meta.format.clone()), meta.clone());
        Ok(())
    }

    async fn get(
        &self,
        series: &SeriesKey,
        format: &str,
        _ctx: &OpContext,
    ) -> Result<Option<FileMetadata>, StorageError> {
        Ok(read(&self.records).get(&(series.clone(), format.to_string())).cloned())
    }

    async fn list(&self, _ctx: &OpContext) -> Result<RecordList, StorageError> {
        let mut records: Vec<FileMetadata> = read(&self.records).values().cloned().collect();
        records.sort_by(|a, b| a.file_path.cmp(&b.file_path));
        Ok(RecordList { records, unreadable: Vec::new() })
    }

    async fn remove(&self, series: &SeriesKey, format: &str, _ctx: &OpContext) -> Result<bool, StorageError> {
        Ok(write(&self.records).remove(&(series.clone(), format.to_string())).is_some())
    }
}

type LockTable = Mutex<HashMap<SeriesKey, Arc<tokio::sync::Mutex<()>>>>;

/// [`SeriesLocks`] for writers inside one process: one async mutex per series.
///
/// Waiting uses `tokio::time::timeout`, so `lock` must run on a Tokio runtime with the
/// time driver enabled. Entries are dropped when their last guard is released, so the
/// table only holds series that are locked or being waited for.
#[derive(Debug, Default)]
pub struct InMemoryLocks {
    table: Arc<LockTable>,
}

impl InMemoryLocks {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many series currently have a lock entry (held or awaited).
    pub fn active(&self) -> usize {
        exclusive(&self.table).len()
    }
}

/// Holds one series of an [`InMemoryLocks`]; dropping it releases the series.
#[derive(Debug)]
pub struct InMemoryGuard {
    series: SeriesKey,
    table: Arc<LockTable>,
    mutex: Arc<tokio::sync::Mutex<()>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl SeriesGuard for InMemoryGuard {}

impl Drop for InMemoryGuard {
    fn drop(&mut self) {
        let mut table = exclusive(&self.table);
        drop(self.held.take());
        prune(&mut table, &self.series, &self.mutex);
    }
}

/// Removes the entry of `series` when the caller's handle and the table's are its only
/// holders: nobody holds or awaits it, and nobody can clone it while `table` is locked.
fn prune(
    table: &mut HashMap<SeriesKey, Arc<tokio::sync::Mutex<()>>>,
    series: &SeriesKey,
    mutex: &Arc<tokio::sync::Mutex<()>>,
) {
    if Arc::strong_count(mutex) == 2 && table.get(series).is_some_and(|m| Arc::ptr_eq(m, mutex)) {
        table.remove(series);
    }
}

#[async_trait]
impl SeriesLocks for InMemoryLocks {
    async fn lock(
        &self,
        series: &SeriesKey,
        timeout: Duration,
        ctx: &OpContext,
    ) -> Result<Box<dyn SeriesGuard>, StorageError> {
        let started = Instant::now();
        let mutex = exclusive(&self.table).entry(series.clone()).or_default().clone();
        let held = match Arc::clone(&mutex).try_lock_owned() {
            Ok(held) => Ok(held),
            Err(_) => tokio::time::timeout(timeout, Arc::clone(&mutex).lock_owned()).await,
        };
        match held {
            Ok(held) => Ok(Box::new(InMemoryGuard {
                series: series.clone(),
                table: Arc::clone(&self.table),
                mutex,
                held: Some(held),
            })),
            Err(_) => {
                prune(&mut exclusive(&self.table), series, &mutex);
                let waited = started.elapsed();
                tracing::warn!(correlation_id = ctx.correlation_id(), %series, ?waited, "series lock timed out");
                Err(StorageError::Locked {
                    series: series.clone(),
                    path: PathBuf::from(memory_location(series)),
                    waited,
                })
            }
        }
    }
}
