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
use barvault_domain::{Bars, DomainError, MergeStats, SeriesKey, TimeRange, merge};
use chrono::{DateTime, Utc};

use crate::context::OpContext;
use crate::error::StorageError;
use crate::lock::{SeriesGuard, SeriesLocks};
use crate::metadata::{FileMetadata, MetadataStore};
use crate::store::{BackupPolicy, BarStore, FileInfo, PersistOptions, StagedWrite, StorageReceipt, WriteMode};

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
struct StoredSeries {
    bars: Bars,
    modified: DateTime<Utc>,
}

/// A [`BarStore`] that keeps every series in a map.
///
/// Merges use [`barvault_domain::merge`] with the caller's policy, exactly like the file
/// stores, so the two can be compared row for row. It holds no bytes, so receipts carry
/// no checksum and `file_info` reports an estimated size.
#[derive(Debug)]
pub struct InMemoryBarStore {
    series: Arc<SeriesMap>,
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

    /// A store that calls itself (and its receipts' format) `format`, so two in-memory
    /// stores can stand in for the CSV and Parquet stores of a dual manager.
    pub fn named(format: &str) -> Self {
        Self { series: Arc::new(RwLock::new(BTreeMap::new())), format: format.to_string() }
    }

    /// How many series are stored.
    pub fn len(&self) -> usize {
        read(&self.series).len()
    }

    pub fn is_empty(&self) -> bool {
        read(&self.series).is_empty()
    }

    /// The whole persist step, synchronous so no lock guard can live across an `.await`.
    fn persist_now(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
    ) -> Result<(usize, bool, MergeStats), DomainError> {
        persist_into(&self.series, bars, series, options)
    }
}

type SeriesMap = RwLock<BTreeMap<SeriesKey, StoredSeries>>;

fn persist_into(
    map: &SeriesMap,
    bars: &Bars,
    series: &SeriesKey,
    options: PersistOptions,
) -> Result<(usize, bool, MergeStats), DomainError> {
    let mut map = write(map);
    let existing = map.get(series).map(|s| &s.bars);
    let (result, stats) = match options.mode {
        WriteMode::Merge => {
            let empty = Bars::empty();
            merge(existing.unwrap_or(&empty), bars, options.policy)?
        }
        WriteMode::Replace => (bars.clone(), replace_stats(existing, bars)),
        WriteMode::Overwrite => {
            let mut stats = replace_stats(existing, bars);
            stats.unchanged = false;
            (bars.clone(), stats)
        }
    };
    // Nothing stored and nothing to store: the series must stay missing, not become empty.
    let written = match existing {
        None => !result.is_empty(),
        Some(_) => !stats.unchanged,
    };
    let rows = if written { result.len() } else { existing.map_or(0, Bars::len) };
    if written {
        map.insert(series.clone(), StoredSeries { bars: result, modified: Utc::now() });
    }
    Ok((rows, written, stats))
}

/// A staged overwrite of the memory store: the bars wait here until `commit` inserts them.
#[derive(Debug)]
struct MemoryStaged {
    map: Arc<SeriesMap>,
    series: SeriesKey,
    bars: Bars,
    format: String,
}

#[async_trait]
impl StagedWrite for MemoryStaged {
    async fn commit(self: Box<Self>, _backup: BackupPolicy, ctx: &OpContext) -> Result<StorageReceipt, StorageError> {
        let started = Instant::now();
        let (rows, written, stats) =
            persist_into(&self.map, &self.bars, &self.series, PersistOptions::overwrite(BackupPolicy::Keep))
                .map_err(|e| merge_error(e, &self.series))?;
        let mut receipt = StorageReceipt::unwritten(memory_location(&self.series), &self.format, rows, stats, ctx);
        receipt.written = written;
        receipt.duration = started.elapsed();
        Ok(receipt)
    }
}

/// A policy conflict names the series; any other domain refusal is bad input.
fn merge_error(e: DomainError, series: &SeriesKey) -> StorageError {
    StorageError::merge_failed(series, e)
}

/// Stats of a replace, in the merge vocabulary: timestamps kept from before count as
/// duplicates, kept timestamps whose values differ as changed. Dropped stored rows show
/// as `existing_rows + rows_added - result_rows`.
fn replace_stats(existing: Option<&Bars>, new: &Bars) -> MergeStats {
    let empty = Bars::empty();
    let old = existing.unwrap_or(&empty);
    let mut rows_added = 0;
    let mut rows_changed = 0;
    for (j, ts) in new.timestamps().iter().enumerate() {
        match old.timestamps().binary_search(ts) {
            Ok(i) => rows_changed += usize::from(!same_row(old, i, new, j)),
            Err(_) => rows_added += 1,
        }
    }
    MergeStats {
        existing_rows: old.len(),
        new_rows: new.len(),
        result_rows: new.len(),
        duplicates_removed: new.len() - rows_added,
        rows_added,
        rows_changed,
        unchanged: match existing {
            Some(old) => old == new,
            None => new.is_empty(),
        },
    }
}

/// Bit-exact row comparison; an extra column one side lacks counts as missing there.
fn same_row(a: &Bars, i: usize, b: &Bars, j: usize) -> bool {
    let core =
        |x: &Bars, r: usize| [x.open()[r], x.high()[r], x.low()[r], x.close()[r], x.volume()[r]].map(f64::to_bits);
    let extra = |x: &Bars, r: usize, name: &str| x.extra(name).and_then(|e| e.values()[r]).map(f64::to_bits);
    core(a, i) == core(b, j)
        && a.extras().iter().chain(b.extras()).all(|e| extra(a, i, e.name()) == extra(b, j, e.name()))
}

/// A rough byte size: eight bytes per timestamp and core value, nine per extra cell.
fn estimated_size(bars: &Bars) -> u64 {
    let rows = bars.len() as u64;
    rows * 6 * 8 + rows * bars.extras().len() as u64 * 9
}

#[async_trait]
impl BarStore for InMemoryBarStore {
    fn name(&self) -> &str {
        &self.format
    }

    async fn persist(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError> {
        let started = Instant::now();
        let outcome = {
            let _span = ctx.span("persist", Some(series)).entered();
            let outcome = self.persist_now(bars, series, options);
            match &outcome {
                Ok((rows, written, _)) => tracing::debug!(rows, written, "persisted in memory"),
                Err(e) => tracing::debug!(error = %e, "persist refused"),
            }
            outcome
        };
        let (rows_written, written, merge) = outcome.map_err(|e| merge_error(e, series))?;
        let mut receipt = StorageReceipt::unwritten(memory_location(series), &self.format, rows_written, merge, ctx);
        receipt.written = written;
        receipt.duration = started.elapsed();
        Ok(receipt)
    }

    async fn stage(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        _ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        Ok(Box::new(MemoryStaged {
            map: Arc::clone(&self.series),
            series: series.clone(),
            bars: bars.clone(),
            format: self.format.clone(),
        }))
    }

    async fn load(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        _ctx: &OpContext,
    ) -> Result<Option<Bars>, StorageError> {
        let map = read(&self.series);
        Ok(map.get(series).map(|s| match range {
            Some(r) => s.bars.slice(&r),
            None => s.bars.clone(),
        }))
    }

    async fn exists(&self, series: &SeriesKey, _ctx: &OpContext) -> Result<bool, StorageError> {
        Ok(read(&self.series).contains_key(series))
    }

    async fn file_info(&self, series: &SeriesKey, _ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        let map = read(&self.series);
        Ok(map.get(series).map(|s| FileInfo {
            location: memory_location(series),
            format: self.format.clone(),
            size: estimated_size(&s.bars),
            modified: Some(s.modified),
            rows: s.bars.len(),
            first: s.bars.first_timestamp(),
            last: s.bars.last_timestamp(),
            columns: s.bars.column_names(),
        }))
    }

    async fn list(&self, _ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        Ok(read(&self.series).keys().cloned().collect())
    }

    async fn remove(&self, series: &SeriesKey, _ctx: &OpContext) -> Result<bool, StorageError> {
        Ok(write(&self.series).remove(series).is_some())
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

    async fn list(&self, _ctx: &OpContext) -> Result<Vec<FileMetadata>, StorageError> {
        let mut all: Vec<FileMetadata> = read(&self.records).values().cloned().collect();
        all.sort_by(|a, b| a.file_path.cmp(&b.file_path));
        Ok(all)
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
