//! The seed's DualStorageManager, rebuilt so that no path loses stored rows: one series lock
//! spans read → validate → merge → write both formats → record metadata, the stored state is
//! read with its checksum verified (falling back to the secondary copy when the primary is
//! missing, unparsable or disagrees with its metadata), and a write the merge does not need is
//! skipped unless a copy needs repair.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use barvault_domain::{
    Bars, MergePolicy, MergeStats, SeriesKey, TimeRange, ValidationPolicy, ValidationReport, check_grid, merge,
    replace_stats, validate,
};
use barvault_ports::{
    BackupPolicy, BarStore, DateRange, FileInfo, FileMetadata, MetadataStore, OpContext, PersistOptions,
    SecondaryStatus, SeriesLocks, SeriesTail, StageHint, StagedWrite, StorageError, StorageReceipt, WriteMode,
};
use chrono::Utc;
use serde::Serialize;
use tracing::Instrument;

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
}

impl Default for DualSettings {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(30),
            validation: ValidationPolicy::Strict,
            merge_policy: MergePolicy::KeepLast,
            prefer_secondary_reads: false,
        }
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

/// How one stored copy looked when read under the lock.
#[derive(Debug)]
enum Copy {
    /// Nothing stored and nothing recorded.
    Absent,
    /// Parsed, and its checksum agrees with metadata (or metadata has none).
    Good(Bars),
    /// Parsed, but its checksum disagrees with metadata (e.g. metadata write was interrupted).
    Mismatch(Bars, String),
    /// Missing although recorded, or unparsable.
    Bad(String),
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

    fn location(&self, series: &SeriesKey, format: &str) -> String {
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

    async fn persist_inner(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        validation: ValidationPolicy,
        ctx: &OpContext,
    ) -> Result<PersistOutcome, StorageError> {
        let started = Instant::now();
        let (bars, mut report) = validate(bars.clone(), validation).map_err(|e| StorageError::validation(series, e))?;
        // No bars for a series that has no file and no record: nothing to write, and taking
        // the lock would create the series directory and a lock file for a series without
        // data (which `verify` reports as a stale lock) — e.g. a header-only input file.
        if bars.is_empty() && !self.has_trace(series, ctx).await? {
            let (_, stats) =
                merge(&Bars::empty(), &bars, options.policy).map_err(|e| StorageError::merge_failed(series, e))?;
            let pformat = self.primary.name().to_string();
            let mut receipt = StorageReceipt::unwritten(self.location(series, &pformat), pformat, 0, stats, ctx);
            receipt.secondary = self.secondary.as_ref().map(|s| SecondaryStatus::Unchanged {
                format: s.name().to_string(),
                location: self.location(series, s.name()),
            });
            receipt.duration = started.elapsed();
            return Ok(PersistOutcome { receipt, validation: report, generation: None, repaired: Vec::new() });
        }
        let _guard = self.locks.lock(series, self.settings.lock_timeout, ctx).await?;
        // A merge reads only the stored rows from the new bars' first timestamp on when
        // both copies can (see `SeriesTail`); anything that needs the rest reads it whole.
        let from = match options.mode {
            WriteMode::Merge => bars.first_timestamp(),
            WriteMode::Replace | WriteMode::Overwrite => None,
        };
        let mut state = self.read_state(series, from, ctx).await?;
        let bars = on_grid(bars, series, &state, options.mode, validation, &mut report)?;
        let (next, stats, staged) = loop {
            let (result, stats) = self.combine(&state, &bars, series, options)?;
            if state.skipped > 0 {
                match self.stage_tails(&state, result, stats, series, ctx).await? {
                    Some(done) => break done,
                    None => {
                        tracing::debug!("the last rows alone cannot make the new version; reading it whole");
                        state = self.read_state(series, None, ctx).await?;
                        continue;
                    }
                }
            }
            let next = SeriesTail::whole(result);
            let staged = self.stage_whole(&state, &next.bars, stats, series, ctx).await;
            break (next, stats, staged);
        };
        let never_stored = state.bars.is_none();
        let pformat = self.primary.name().to_string();
        let mut repaired = Vec::new();
        if stats.unchanged && !state.primary_ok && staged.need_primary {
            repaired.push(self.location(series, &pformat));
        }
        let (pbackup, sbackup) = (backup_for(state.primary_ok), backup_for(state.secondary_ok));
        let Staged { need_primary, need_secondary, primary: staged_primary, secondary: mut staged_secondary } = staged;
        // The primary is published and recorded before the secondary is: a call that fails
        // on the primary then leaves both copies exactly as they were, so an error always
        // means "not stored" (a staged secondary is dropped, i.e. discarded, with it).
        // A version given by its last rows can only be committed from staged writes: a
        // plain overwrite would store the last rows alone.
        let whole = (next.skipped == 0).then_some(&next.bars);
        let p = match staged_primary {
            Some(Ok(staged)) => Some(staged.commit(pbackup, ctx).await),
            Some(Err(e)) => Some(Err(e)),
            None if need_primary => Some(match whole {
                Some(all) => self.primary.persist(all, series, PersistOptions::overwrite(pbackup), ctx).await,
                None => Err(StorageError::unsupported("persist of a tail", self.primary.name())),
            }),
            None => None,
        };
        let result = &next;

        let generation = state.generation + 1;
        let mut receipt = match p {
            Some(Err(e)) => {
                tracing::error!(error = %e, "primary write failed; stored data unchanged");
                return Err(e);
            }
            Some(Ok(r)) => {
                if let Err(e) = self.record(series, result, &r, generation, state.primary_meta.as_ref(), ctx).await {
                    // A stored series keeps its old record, which no longer matches the file,
                    // so reads fall back to the untouched secondary. A new series has no record
                    // to disagree with: its file would be served although the call failed, so
                    // it is removed (best effort; `verify` reports it if that fails too).
                    if never_stored {
                        match self.primary.remove(series, ctx).await {
                            Ok(_) => tracing::warn!("primary record failed; the new series' file was removed"),
                            Err(undo) => {
                                tracing::error!(error = %undo, "primary record failed and the new file could not be removed")
                            }
                        }
                    }
                    return Err(e);
                }
                r
            }
            None => {
                StorageReceipt::unwritten(self.location(series, &pformat), pformat.clone(), result.len(), stats, ctx)
            }
        };
        let s = match (&self.secondary, need_secondary) {
            (Some(s), true) => Some(match staged_secondary.take() {
                Some(Ok(staged)) => staged.commit(sbackup, ctx).await,
                Some(Err(e)) => Err(e),
                None => match whole {
                    Some(all) => s.persist(all, series, PersistOptions::overwrite(sbackup), ctx).await,
                    None => Err(StorageError::unsupported("persist of a tail", s.name())),
                },
            }),
            _ => None,
        };
        receipt.merge = stats;
        if let Some(sec) = &self.secondary {
            let sformat = sec.name().to_string();
            let slocation = self.location(series, &sformat);
            receipt.secondary = Some(match s {
                None => SecondaryStatus::Unchanged { format: sformat, location: slocation },
                Some(Ok(r)) => {
                    // When the primary did not change, the secondary's record must carry the
                    // primary's generation to be recognised as consistent with it.
                    let g = if receipt.written { generation } else { state.primary_generation.unwrap_or(generation) };
                    // The primary is stored and recorded, so the call has succeeded: a failed
                    // record of the secondary is a failed secondary (repaired by the next
                    // persist or `recover`, which see its checksum disagree), not an error.
                    match self.record(series, result, &r, g, state.secondary_meta.as_ref(), ctx).await {
                        Ok(()) => {
                            if stats.unchanged {
                                repaired.push(r.location.clone());
                            }
                            SecondaryStatus::Written { format: sformat, location: r.location }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "secondary metadata write failed; the series is inconsistent until the next persist or recover");
                            SecondaryStatus::Failed { format: sformat, location: r.location, error: e.to_string() }
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "secondary write failed; the series is inconsistent until the next persist or recover");
                    SecondaryStatus::Failed { format: sformat, location: slocation, error: e.to_string() }
                }
            });
        }
        receipt.duration = started.elapsed();
        receipt.correlation_id = ctx.correlation_id().to_string();
        tracing::info!(
            rows = receipt.rows_written,
            added = stats.rows_added,
            changed = stats.rows_changed,
            written = receipt.written,
            path = %receipt.location,
            duration_ms = receipt.duration.as_secs_f64() * 1000.0,
            "persisted"
        );
        let recorded = receipt.written.then_some(generation);
        Ok(PersistOutcome { receipt, validation: report, generation: recorded, repaired })
    }

    /// The merged (or replacing) bars and what changed, over the rows `state` holds; for a
    /// state of last rows, the counts include the rows before them.
    fn combine(
        &self,
        state: &StoredState,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
    ) -> Result<(Bars, MergeStats), StorageError> {
        let empty = Bars::empty();
        let existing = state.bars.as_ref().unwrap_or(&empty);
        let (result, mut stats) = match options.mode {
            WriteMode::Merge => {
                merge(existing, bars, options.policy).map_err(|e| StorageError::merge_failed(series, e))?
            }
            WriteMode::Replace | WriteMode::Overwrite => {
                let mut stats = replace_stats(existing, bars);
                stats.unchanged &= options.mode == WriteMode::Replace;
                (bars.clone(), stats)
            }
        };
        stats.existing_rows += state.skipped;
        stats.result_rows += state.skipped;
        Ok((result, stats))
    }

    /// Which copies need writing, given what the merge changed and which copies were sound.
    fn needs(&self, state: &StoredState, rows: usize, stats: MergeStats) -> (bool, bool) {
        let empty_new_series = state.bars.is_none() && rows == 0;
        let need_primary = !empty_new_series && (!stats.unchanged || !state.primary_ok);
        let need_secondary = self.secondary.is_some() && !empty_new_series && (!stats.unchanged || !state.secondary_ok);
        (need_primary, need_secondary)
    }

    /// Stages the copies a whole `result` needs. When both copies are written and both
    /// stores can stage, they are encoded and fsynced at the same time (one core each) but
    /// still published primary first: a staged secondary is dropped, i.e. discarded, when
    /// the primary fails. A store that cannot stage is written by `persist` instead.
    async fn stage_whole(
        &self,
        state: &StoredState,
        result: &Bars,
        stats: MergeStats,
        series: &SeriesKey,
        ctx: &OpContext,
    ) -> Staged {
        let (need_primary, need_secondary) = self.needs(state, result.len(), stats);
        let mut staged = Staged { need_primary, need_secondary, primary: None, secondary: None };
        if let (true, true, Some(sec)) = (need_primary, need_secondary, &self.secondary) {
            let unsupported =
                |r: &Result<Box<dyn StagedWrite>, StorageError>| matches!(r, Err(StorageError::Unsupported { .. }));
            // What each copy may reuse of its stored bytes: the leading rows the merge left
            // as they were, vouched for only for a copy just proven sound.
            let kept = state.bars.as_ref().map_or(0, |old| old.common_prefix_len(result));
            let hint = |ok: bool| match (&state.bars, ok) {
                (Some(old), true) => StageHint { stored_rows: old.len(), unchanged_prefix: kept },
                _ => StageHint::default(),
            };
            let (ps, ss) = tokio::join!(
                self.primary.stage_with(result, series, hint(state.primary_ok), ctx),
                sec.stage_with(result, series, hint(state.secondary_ok), ctx)
            );
            if !unsupported(&ps) && !unsupported(&ss) {
                staged.primary = Some(ps);
                staged.secondary = Some(ss);
            }
        }
        staged
    }

    /// [`Self::stage_whole`] for a state of last rows: both copies staged from their stored
    /// bytes and the merged last rows, or nothing to write; `None` when that is not
    /// possible (a copy was not proven sound; the merge added a column, which changes
    /// every row; a store cannot stage the tail), and the caller reads the series whole.
    async fn stage_tails(
        &self,
        state: &StoredState,
        result: Bars,
        stats: MergeStats,
        series: &SeriesKey,
        ctx: &OpContext,
    ) -> Result<Option<(SeriesTail, MergeStats, Staged)>, StorageError> {
        let Some(old) = &state.bars else { return Ok(None) };
        // A copy not proven sound must not lend its bytes (the whole path encodes it anew).
        if !(state.primary_ok && state.secondary_ok) || result.column_names() != old.column_names() {
            return Ok(None);
        }
        let next = SeriesTail { skipped: state.skipped, first: state.first, bars: result };
        let (need_primary, need_secondary) = self.needs(state, next.len(), stats);
        let mut staged = Staged { need_primary, need_secondary, primary: None, secondary: None };
        match (need_primary, need_secondary, &self.secondary) {
            (false, false, _) => Ok(Some((next, stats, staged))),
            (true, true, Some(sec)) => {
                let hint = StageHint {
                    stored_rows: state.skipped + old.len(),
                    unchanged_prefix: state.skipped + old.common_prefix_len(&next.bars),
                };
                let (ps, ss) = tokio::join!(
                    self.primary.stage_tail(&next, series, hint, ctx),
                    sec.stage_tail(&next, series, hint, ctx)
                );
                // Staged writes dropped here are discarded, and the locks they hold released.
                let usable = |r: Result<Option<Box<dyn StagedWrite>>, StorageError>| match r {
                    Ok(Some(w)) => Ok(Some(w)),
                    Ok(None) | Err(StorageError::Unsupported { .. }) => Ok(None),
                    Err(e) => Err(e),
                };
                match (usable(ps), usable(ss)) {
                    (Ok(Some(p)), Ok(Some(s))) => {
                        staged.primary = Some(Ok(p));
                        staged.secondary = Some(Ok(s));
                        Ok(Some((next, stats, staged)))
                    }
                    // As for a whole write: the primary failing is the call failing, and the
                    // secondary failing is a failed secondary.
                    (Err(e), _) => {
                        staged.primary = Some(Err(e));
                        Ok(Some((next, stats, staged)))
                    }
                    (Ok(Some(p)), Err(e)) => {
                        staged.primary = Some(Ok(p));
                        staged.secondary = Some(Err(e));
                        Ok(Some((next, stats, staged)))
                    }
                    _ => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    async fn record(
        &self,
        series: &SeriesKey,
        bars: &SeriesTail,
        receipt: &StorageReceipt,
        generation: u64,
        previous: Option<&FileMetadata>,
        ctx: &OpContext,
    ) -> Result<(), StorageError> {
        let meta = FileMetadata {
            file_path: Self::relative_path(series, &receipt.format),
            instrument_symbol: series.instrument.symbol().clone(),
            instrument_type: series.instrument.kind(),
            period: series.period,
            format: receipt.format.clone(),
            row_count: bars.len() as u64,
            columns: bars.bars.column_names(),
            date_range: DateRange {
                start: bars.first.map(barvault_domain::nanos_to_datetime),
                end: bars.last_timestamp().map(barvault_domain::nanos_to_datetime),
            },
            file_size: receipt.file_size.unwrap_or(0),
            last_updated: Utc::now(),
            checksum: receipt.checksum_md5.clone().unwrap_or_default(),
            generation,
            backup_checksum: if receipt.backup_created { previous.map(|p| p.checksum.clone()) } else { None },
            fingerprint: receipt.fingerprint.clone(),
        };
        self.metadata.record(&meta, ctx).await
    }

    /// The secondary store, when reads should prefer it: enabled, and both records exist
    /// with the same generation and a known checksum.
    fn same_generation_secondary(
        &self,
        pmeta: Option<&FileMetadata>,
        smeta: Option<&FileMetadata>,
    ) -> Option<&Arc<dyn BarStore>> {
        if !self.settings.prefer_secondary_reads {
            return None;
        }
        match (pmeta, smeta) {
            (Some(p), Some(s)) if p.generation == s.generation && !s.checksum.is_empty() => self.secondary.as_ref(),
            _ => None,
        }
    }

    /// Whether any file or metadata record of `series` exists, in any format.
    async fn has_trace(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        if self.exists(series, ctx).await? || self.metadata.get(series, self.primary.name(), ctx).await?.is_some() {
            return Ok(true);
        }
        match &self.secondary {
            Some(s) => Ok(self.metadata.get(series, s.name(), ctx).await?.is_some()),
            None => Ok(false),
        }
    }

    /// [`Self::read_copy`] of the rows from about `from` on where the store can read them
    /// alone, with the rows left out and the series' first timestamp (see [`SeriesTail`]).
    async fn read_copy_from(
        store: &dyn BarStore,
        meta: Option<&FileMetadata>,
        series: &SeriesKey,
        from: Option<i64>,
        ctx: &OpContext,
    ) -> Result<(Copy, usize, Option<i64>), StorageError> {
        if let Some(from) = from {
            match store.load_tail_against(series, from, meta, ctx).await {
                Ok(Some((tail, sum))) => {
                    let (skipped, first) = (tail.skipped, tail.first);
                    return Ok((Self::classify(meta, Ok(Some((tail.bars, sum))))?, skipped, first));
                }
                Err(StorageError::Unsupported { .. }) => {}
                other => {
                    return Ok((Self::classify(meta, other.map(|found| found.map(|(t, s)| (t.bars, s))))?, 0, None));
                }
            }
        }
        Ok((Self::read_copy(store, meta, series, None, ctx).await?, 0, None))
    }

    /// Reads one copy and classifies it against its metadata record.
    async fn read_copy(
        store: &dyn BarStore,
        meta: Option<&FileMetadata>,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Copy, StorageError> {
        Self::classify(meta, store.load_with_checksum_against(series, range, meta, ctx).await)
    }

    /// Classifies a read copy against its metadata record.
    fn classify(
        meta: Option<&FileMetadata>,
        read: Result<Option<(Bars, Option<String>)>, StorageError>,
    ) -> Result<Copy, StorageError> {
        match read {
            Ok(None) => Ok(match meta {
                None => Copy::Absent,
                Some(m) => Copy::Bad(format!("{} is recorded in metadata but missing", m.file_path)),
            }),
            Ok(Some((bars, sum))) => Ok(match (meta, sum) {
                (Some(m), Some(sum)) if !m.checksum.is_empty() && m.checksum != sum => Copy::Mismatch(
                    bars,
                    format!("{}: checksum {} differs from metadata {}", m.file_path, sum, m.checksum),
                ),
                _ => Copy::Good(bars),
            }),
            Err(e) if e.is_data_error() => Ok(Copy::Bad(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// What is stored, each copy classified against its record. With `from`, the preferred
    /// secondary copy may be read from about `from` on only (see [`SeriesTail`]).
    async fn read_state(
        &self,
        series: &SeriesKey,
        from: Option<i64>,
        ctx: &OpContext,
    ) -> Result<StoredState, StorageError> {
        let pmeta = self.metadata.get(series, self.primary.name(), ctx).await?;
        let smeta = match &self.secondary {
            Some(s) => self.metadata.get(series, s.name(), ctx).await?,
            None => None,
        };
        let generation = pmeta.iter().chain(smeta.iter()).map(|m| m.generation).max().unwrap_or(0);
        let primary_generation = pmeta.as_ref().map(|m| m.generation);
        let state = |bars: Option<Bars>, primary_ok: bool, secondary_ok: bool| StoredState {
            bars,
            skipped: 0,
            first: None,
            primary_ok,
            secondary_ok,
            generation,
            primary_generation,
            primary_meta: pmeta.clone(),
            secondary_meta: smeta.clone(),
        };
        if let Some(sec) = self.same_generation_secondary(pmeta.as_ref(), smeta.as_ref()) {
            // The primary is not decoded, but its checksum is still proved (in parallel), so a
            // damaged primary is rewritten and never kept as the `.backup`.
            let (copy, primary_sum) = tokio::join!(
                Self::read_copy_from(sec.as_ref(), smeta.as_ref(), series, from, ctx),
                self.primary.checksum_against(series, pmeta.as_ref(), ctx)
            );
            match copy? {
                (Copy::Good(bars), skipped, first) => {
                    let primary_ok = match primary_sum {
                        Ok(sum) => sum.is_some() && sum.as_deref() == pmeta.as_ref().map(|m| m.checksum.as_str()),
                        Err(StorageError::Unsupported { .. }) => self.primary.exists(series, ctx).await?,
                        Err(e) if e.is_data_error() => false,
                        Err(e) => return Err(e),
                    };
                    return Ok(StoredState { skipped, first, ..state(Some(bars), primary_ok, true) });
                }
                (other, _, _) => {
                    tracing::warn!(reason = ?other.reason(), "preferred secondary copy unusable; reading the primary")
                }
            }
        }
        let primary = Self::read_copy(self.primary.as_ref(), pmeta.as_ref(), series, None, ctx).await?;
        if let Copy::Good(bars) = primary {
            let secondary_ok = match &self.secondary {
                None => true,
                Some(s) => {
                    let same_generation = matches!((&pmeta, &smeta), (Some(p), Some(s)) if p.generation == s.generation)
                        || (pmeta.is_none() && smeta.is_none());
                    same_generation && s.exists(series, ctx).await?
                }
            };
            return Ok(state(Some(bars), true, secondary_ok));
        }
        let Some(sec) = &self.secondary else {
            return match primary {
                Copy::Absent => Ok(state(None, true, true)),
                Copy::Mismatch(bars, why) => {
                    // Without a second copy the parsed file is the best evidence there is.
                    tracing::warn!(reason = %why, "checksum mismatch with no second copy; using the file as stored");
                    Ok(state(Some(bars), false, true))
                }
                Copy::Bad(why) => Err(StorageError::Unreadable { series: series.clone(), causes: why }),
                Copy::Good(bars) => Ok(state(Some(bars), true, true)),
            };
        };
        let secondary = Self::read_copy(sec.as_ref(), smeta.as_ref(), series, None, ctx).await?;
        match (primary, secondary) {
            (Copy::Absent, Copy::Absent) => Ok(state(None, true, true)),
            (p, Copy::Good(bars)) => {
                tracing::warn!(primary = ?p.reason(), "primary copy unusable; merging onto the secondary copy");
                Ok(state(Some(bars), false, true))
            }
            (Copy::Mismatch(a, why_a), Copy::Mismatch(b, why_b)) if a == b => {
                tracing::warn!(primary = %why_a, secondary = %why_b, "both copies agree but metadata is stale; rewriting");
                Ok(state(Some(a), false, false))
            }
            (Copy::Mismatch(a, why), Copy::Absent) => {
                tracing::warn!(reason = %why, "checksum mismatch and no second copy; using the file as stored");
                Ok(state(Some(a), false, false))
            }
            (p, s) => Err(StorageError::Unreadable {
                series: series.clone(),
                causes: format!(
                    "primary: {}; secondary: {}",
                    p.reason().unwrap_or("missing"),
                    s.reason().unwrap_or("missing")
                ),
            }),
        }
    }

    /// Loads from the primary copy, falling back to the secondary when the primary is
    /// missing, unparsable or disagrees with its checksum; the reason is logged.
    pub async fn load_with_fallback(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<Bars>, StorageError> {
        let span = ctx.span("load", Some(series));
        async {
            let pmeta = self.metadata.get(series, self.primary.name(), ctx).await?;
            if self.settings.prefer_secondary_reads
                && let Some(sec) = &self.secondary
            {
                // An unreadable secondary record only means the secondary is not preferred:
                // the primary below may well be sound.
                let smeta = match self.metadata.get(series, sec.name(), ctx).await {
                    Ok(m) => m,
                    Err(e) if e.is_data_error() => None,
                    Err(e) => return Err(e),
                };
                if let Some(sec) = self.same_generation_secondary(pmeta.as_ref(), smeta.as_ref()) {
                    match Self::read_copy(sec.as_ref(), smeta.as_ref(), series, range, ctx).await? {
                        Copy::Good(bars) => {
                            tracing::debug!(rows = bars.len(), "loaded from the secondary copy");
                            return Ok(Some(bars));
                        }
                        other => {
                            tracing::warn!(reason = ?other.reason(), "preferred secondary copy unusable; reading the primary")
                        }
                    }
                }
            }
            let primary = Self::read_copy(self.primary.as_ref(), pmeta.as_ref(), series, range, ctx).await?;
            let primary = match primary {
                Copy::Good(bars) => {
                    tracing::debug!(rows = bars.len(), "loaded from primary");
                    return Ok(Some(bars));
                }
                other => other,
            };
            let Some(sec) = &self.secondary else {
                return match primary {
                    Copy::Absent => Ok(None),
                    Copy::Mismatch(bars, why) => {
                        tracing::warn!(reason = %why, "checksum mismatch with no second copy; serving the file as stored");
                        Ok(Some(bars))
                    }
                    other => Err(StorageError::Unreadable {
                        series: series.clone(),
                        causes: other.reason().unwrap_or("missing").to_string(),
                    }),
                };
            };
            if let Some(why) = primary.reason() {
                tracing::warn!(reason = %why, fallback = sec.name(), "primary copy unusable; falling back");
            }
            let smeta = self.metadata.get(series, sec.name(), ctx).await?;
            let secondary = Self::read_copy(sec.as_ref(), smeta.as_ref(), series, range, ctx).await?;
            match (primary, secondary) {
                (Copy::Absent, Copy::Absent) => Ok(None),
                (_, Copy::Good(bars)) => Ok(Some(bars)),
                (Copy::Mismatch(a, _), Copy::Mismatch(b, _)) if a == b => {
                    tracing::warn!("both copies agree but their metadata is stale; serving them");
                    Ok(Some(a))
                }
                (Copy::Mismatch(a, why), Copy::Absent) => {
                    tracing::warn!(reason = %why, "checksum mismatch and no second copy; serving the file as stored");
                    Ok(Some(a))
                }
                (p, s) => Err(StorageError::Unreadable {
                    series: series.clone(),
                    causes: format!(
                        "primary: {}; secondary: {}",
                        p.reason().unwrap_or("missing"),
                        s.reason().unwrap_or("missing")
                    ),
                }),
            }
        }
        .instrument(span)
        .await
    }
}

impl Copy {
    fn reason(&self) -> Option<&str> {
        match self {
            Copy::Absent | Copy::Good(_) => None,
            Copy::Mismatch(_, r) | Copy::Bad(r) => Some(r),
        }
    }
}

#[derive(Debug)]
/// The copies a persist writes, and their staged writes where the stores could stage.
struct Staged {
    need_primary: bool,
    need_secondary: bool,
    primary: Option<Result<Box<dyn StagedWrite>, StorageError>>,
    secondary: Option<Result<Box<dyn StagedWrite>, StorageError>>,
}

/// `bars` checked against the series' time grid (`check_grid`): for a merge, the grid of
/// the stored bars `state` holds (the series' own convention: its last rows when only
/// those were read), for a replace the grid of `bars` themselves. What it finds is added to
/// `report`, and dropped bars are logged readably.
fn on_grid(
    bars: Bars,
    series: &SeriesKey,
    state: &StoredState,
    mode: WriteMode,
    validation: ValidationPolicy,
    report: &mut ValidationReport,
) -> Result<Bars, StorageError> {
    let stored = match mode {
        WriteMode::Merge => state.bars.as_ref(),
        WriteMode::Replace | WriteMode::Overwrite => None,
    };
    let (bars, grid) =
        check_grid(bars, series.period, stored, validation).map_err(|e| StorageError::validation(series, e))?;
    report.absorb(grid);
    if report.dropped > 0 {
        let first: Vec<String> = report.samples.iter().map(ToString::to_string).collect();
        tracing::info!(dropped = report.dropped, rules = %report.summary(), first = %first.join("; "), "invalid bars dropped");
    }
    Ok(bars)
}

/// A copy that was damaged is not kept as `.backup`: it would push out a sound one.
fn backup_for(sound: bool) -> BackupPolicy {
    if sound { BackupPolicy::Keep } else { BackupPolicy::Skip }
}

struct StoredState {
    /// The stored bars, or only their last rows (see [`SeriesTail`]): `skipped` rows
    /// before them, the first at `first`.
    bars: Option<Bars>,
    skipped: usize,
    first: Option<i64>,
    primary_ok: bool,
    secondary_ok: bool,
    /// The highest generation recorded for any copy.
    generation: u64,
    /// The generation recorded for the primary copy.
    primary_generation: Option<u64>,
    primary_meta: Option<FileMetadata>,
    secondary_meta: Option<FileMetadata>,
}

#[async_trait]
impl BarStore for DualStorageManager {
    fn name(&self) -> &str {
        "dual"
    }

    async fn persist(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        ctx: &OpContext,
    ) -> Result<StorageReceipt, StorageError> {
        Ok(self.persist_with_backup(bars, series, options, self.settings.validation, ctx).await?.receipt)
    }

    async fn load(
        &self,
        series: &SeriesKey,
        range: Option<TimeRange>,
        ctx: &OpContext,
    ) -> Result<Option<Bars>, StorageError> {
        self.load_with_fallback(series, range, ctx).await
    }

    async fn exists(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        if self.primary.exists(series, ctx).await? {
            return Ok(true);
        }
        match &self.secondary {
            Some(s) => s.exists(series, ctx).await,
            None => Ok(false),
        }
    }

    async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        match self.primary.file_info(series, ctx).await {
            Ok(Some(info)) => return Ok(Some(info)),
            Ok(None) => {}
            Err(e) if e.is_data_error() && self.secondary.is_some() => {
                tracing::warn!(error = %e, "primary unreadable; file_info from secondary");
            }
            Err(e) => return Err(e),
        }
        match &self.secondary {
            Some(s) => s.file_info(series, ctx).await,
            None => Ok(None),
        }
    }

    async fn list(&self, ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        let mut all = self.primary.list(ctx).await?;
        if let Some(s) = &self.secondary {
            all.extend(s.list(ctx).await?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    async fn remove(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        let _guard = self.locks.lock(series, self.settings.lock_timeout, ctx).await?;
        let mut removed = self.primary.remove(series, ctx).await?;
        self.metadata.remove(series, self.primary.name(), ctx).await?;
        if let Some(s) = &self.secondary {
            removed |= s.remove(series, ctx).await?;
            self.metadata.remove(series, s.name(), ctx).await?;
        }
        Ok(removed)
    }
}
