//! The write side of the dual manager: one persist, as a bounded loop of attempts.
//!
//! An attempt reads the stored state (the Parquet copy by its last row groups when it can),
//! merges, stages both copies at once against the versions it read, and publishes them
//! primary first: CSV commit, CSV record, Parquet commit, Parquet record. A copy that
//! changed since it was read makes its stage or commit a version conflict before anything
//! is published, and the attempt starts again from a fresh read; an error always means
//! nothing new was stored.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use barvault_domain::{
    Bars, MergeStats, SeriesKey, TimeRange, ValidationPolicy, ValidationReport, merge, off_grid, replace_stats,
    validate,
};
use barvault_ports::{
    DateRange, FileMetadata, Keep, OpContext, Persisted, Revision, StagedWrite, StorageError, Version,
};
use chrono::Utc;

use super::read::{CopyState, StoredState};
use super::{DualStorageManager, PersistOutcome};
use crate::receipt::{PersistOptions, SecondaryStatus, StorageReceipt, WriteMode};

/// The next version of a series: `bars` after `skipped` stored rows, the first at `first`.
#[derive(Debug, Clone)]
struct Next {
    bars: Arc<Bars>,
    skipped: usize,
    first: Option<i64>,
}

impl Next {
    fn rows(&self) -> usize {
        self.skipped + self.bars.len()
    }
}

/// What one attempt did, for the outcome.
#[derive(Debug)]
struct Attempt {
    receipt: StorageReceipt,
    generation: Option<u64>,
    repaired: Vec<String>,
    /// What the time grid check of this attempt found (see [`on_grid`]).
    grid: ValidationReport,
    /// The attempt removed the series (a trim of every bar).
    removed: bool,
}

/// A staged write of one copy, or why it could not be staged.
type StageResult = Result<Box<dyn StagedWrite>, StorageError>;

impl DualStorageManager {
    pub(super) async fn persist_inner(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        validation: ValidationPolicy,
        ctx: &OpContext,
    ) -> Result<PersistOutcome, StorageError> {
        let started = Instant::now();
        if matches!(options.mode, WriteMode::Trim { .. }) && !bars.is_empty() {
            return Err(StorageError::invalid(format!(
                "{series}: a trim removes stored bars and takes none, but {} were given",
                bars.len()
            )));
        }
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
            log_dropped(&report);
            let outcome =
                PersistOutcome { receipt, validation: report, generation: None, repaired: Vec::new(), retries: 0 };
            return Ok(outcome);
        }
        let guard = self.locks.lock(series, self.settings.lock_timeout, ctx).await?;
        if let Some(mut outcome) = self.try_append(&bars, series, options, validation, ctx).await? {
            report.absorb(std::mem::take(&mut outcome.validation));
            outcome.validation = report;
            outcome.receipt.duration = started.elapsed();
            return Ok(outcome);
        }
        // A merge reads only the stored rows from the new bars' first timestamp on when the
        // stores can read by the tail and write revisions that skip stored rows (see
        // `Rows::From`); anything else reads the series whole.
        let from = match options.mode {
            WriteMode::Merge if self.revisions_everywhere() && !self.settings.lock_free => bars.first_timestamp(),
            WriteMode::Merge | WriteMode::Replace | WriteMode::Trim { .. } => None,
        };
        let mut retries = 0;
        let attempt = loop {
            match self.attempt(&bars, series, options, validation, from, ctx).await {
                Err(e) if e.is_version_conflict() && retries + 1 < self.settings.max_attempts.max(1) => {
                    retries += 1;
                    let pause = self.backoff(retries);
                    tracing::warn!(error = %e, retries, pause_ms = pause.as_millis() as u64, "a copy changed since it was read; reading and merging again");
                    tokio::time::sleep(pause).await;
                }
                other => break other?,
            }
        };
        if attempt.removed {
            // The series is gone: its lock file goes while still held, so that no verify
            // finds it unlocked without data (cleanup's `discard_locks` would come later).
            match tokio::task::spawn_blocking(move || guard.release_removed()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the removed series' lock file could not be removed"),
                Err(e) => tracing::warn!(error = %e, "the removed series' lock file could not be removed"),
            }
        } else {
            drop(guard);
        }
        report.absorb(attempt.grid);
        log_dropped(&report);
        let mut receipt = attempt.receipt;
        receipt.duration = started.elapsed();
        receipt.correlation_id = ctx.correlation_id().to_string();
        tracing::info!(
            rows = receipt.rows_written,
            added = receipt.merge.rows_added,
            changed = receipt.merge.rows_changed,
            written = receipt.written,
            retries,
            path = %receipt.location,
            duration_ms = receipt.duration.as_secs_f64() * 1000.0,
            "persisted"
        );
        Ok(PersistOutcome {
            receipt,
            validation: report,
            generation: attempt.generation,
            repaired: attempt.repaired,
            retries,
        })
    }

    /// One read → merge → stage → publish.
    async fn attempt(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        validation: ValidationPolicy,
        from: Option<i64>,
        ctx: &OpContext,
    ) -> Result<Attempt, StorageError> {
        let mut state = self.read_state(series, from, ctx).await?;
        if state.skipped > 0 && !(state.primary.ok && state.secondary.ok) {
            // A copy to repair is written whole, so every row is needed.
            tracing::debug!("a copy needs repair; reading the series whole");
            state = self.read_state(series, None, ctx).await?;
        }
        let (bars, grid) = on_grid(bars, series, &state, options.mode, validation)?;
        let (result, stats) = self.combine(&state, &bars, series, options)?;
        if matches!(options.mode, WriteMode::Trim { .. })
            && result.is_empty()
            && state.bars.as_ref().is_some_and(|b| !b.is_empty())
        {
            // A trim of every bar removes the series under the same lock, records first
            // (see `remove`), rather than writing a series of no bars.
            self.remove_locked(series, ctx).await?;
            let pformat = self.primary.name().to_string();
            let mut receipt = StorageReceipt::unwritten(self.location(series, &pformat), pformat, 0, stats, ctx);
            receipt.written = true;
            return Ok(Attempt { receipt, generation: None, repaired: Vec::new(), grid, removed: true });
        }
        let first = if state.skipped > 0 { state.first } else { result.first_timestamp() };
        let next = Next { bars: Arc::new(result), skipped: state.skipped, first };
        let (staged_primary, staged_secondary) = self.stage_copies(&state, &next, stats, series, ctx).await?;

        let pformat = self.primary.name().to_string();
        let mut repaired = Vec::new();
        if stats.unchanged && !state.primary.ok && staged_primary.is_some() {
            repaired.push(self.location(series, &pformat));
        }
        // The primary version this attempt left (for the secondary's handover without locks).
        let mut primary_version = state.primary.version.clone();
        let mut receipt = match staged_primary {
            Some(staged) => {
                let (receipt, version) = self.publish_primary(series, &state, &next, staged, stats, ctx).await?;
                primary_version = Some(version);
                receipt
            }
            None => {
                StorageReceipt::unwritten(self.location(series, &pformat), pformat.clone(), next.rows(), stats, ctx)
            }
        };
        receipt.merge = stats;
        if let Some(sec) = &self.secondary {
            let primary = primary_version.as_ref();
            let status =
                self.publish_secondary(sec, series, &state, &next, staged_secondary, (&receipt, primary), ctx).await;
            if let SecondaryStatus::Written { location, .. } = &status
                && stats.unchanged
            {
                repaired.push(location.clone());
            }
            receipt.secondary = Some(status);
        }
        let recorded = receipt.written.then_some(state.generation + 1);
        Ok(Attempt { receipt, generation: recorded, repaired, grid, removed: false })
    }

    /// Stages the copies the merge needs written, both at once (one core each) against the
    /// versions read. Nothing is published yet, so a conflict on either copy is an error
    /// the caller answers with a fresh attempt.
    async fn stage_copies(
        &self,
        state: &StoredState,
        next: &Next,
        stats: MergeStats,
        series: &SeriesKey,
        ctx: &OpContext,
    ) -> Result<(Option<StageResult>, Option<StageResult>), StorageError> {
        let (need_primary, need_secondary) = self.needs(state, next.rows(), stats);
        let stage = |store: &Arc<dyn barvault_ports::BarStore>, copy: &CopyState| {
            let revision = Self::revision_for(state, copy, next);
            let options = self.put_options_for(copy);
            let store = Arc::clone(store);
            async move { store.stage(series, &revision, &options, ctx).await }
        };
        let (primary, secondary) = tokio::join!(
            async {
                match need_primary {
                    true => Some(stage(&self.primary, &state.primary).await),
                    false => None,
                }
            },
            async {
                match (&self.secondary, need_secondary) {
                    (Some(s), true) => Some(stage(s, &state.secondary).await),
                    _ => None,
                }
            }
        );
        let conflict = [&primary, &secondary]
            .into_iter()
            .flatten()
            .find_map(|r| r.as_ref().err().filter(|e| e.is_version_conflict()));
        if let Some(e) = conflict {
            return Err(StorageError::version_conflict(series.relative_stem(), e.to_string()));
        }
        Ok((primary, secondary))
    }

    /// Commits and records the staged primary: the call's success, and the version written.
    /// A failure is the call's error, with nothing new stored (the staged secondary is
    /// dropped, i.e. discarded).
    async fn publish_primary(
        &self,
        series: &SeriesKey,
        state: &StoredState,
        next: &Next,
        staged: StageResult,
        stats: MergeStats,
        ctx: &OpContext,
    ) -> Result<(StorageReceipt, Version), StorageError> {
        let written = match staged {
            Ok(staged) => staged.commit(ctx).await,
            Err(e) => Err(e),
        };
        let written =
            written.inspect_err(|e| tracing::error!(error = %e, "primary write failed; stored data unchanged"))?;
        let generation = state.generation + 1;
        if let Err(e) = self.record(series, next, &written, generation, state.primary.meta.as_ref(), ctx).await {
            // A stored series keeps its old record, which no longer matches the file, so
            // reads fall back to the untouched secondary. A new series has no record to
            // disagree with: its file would be served although the call failed, so it is
            // removed (best effort; `verify` reports it if that fails too).
            // Without locks a new primary may already hold another writer's merge on top of
            // it: it is never removed again.
            if state.bars.is_none() && !self.settings.lock_free {
                match self.primary.remove(series, ctx).await {
                    Ok(_) => tracing::warn!("primary record failed; the new series' file was removed"),
                    Err(undo) => {
                        tracing::error!(error = %undo, "primary record failed and the new file could not be removed")
                    }
                }
            }
            return Err(e);
        }
        Ok((written_receipt(&written, next.rows(), stats, ctx), written.info.version.clone()))
    }

    /// Commits and records the staged secondary (if any). The primary is stored and
    /// recorded, so the call has succeeded: a failure here is a failed secondary, repaired
    /// by the next persist or `recover`, which see its checksum disagree.
    #[allow(clippy::too_many_arguments)]
    async fn publish_secondary(
        &self,
        store: &Arc<dyn barvault_ports::BarStore>,
        series: &SeriesKey,
        state: &StoredState,
        next: &Next,
        staged: Option<StageResult>,
        (primary, primary_version): (&StorageReceipt, Option<&Version>),
        ctx: &OpContext,
    ) -> SecondaryStatus {
        let format = store.name().to_string();
        let location = self.location(series, &format);
        let Some(staged) = staged else { return SecondaryStatus::Unchanged { format, location } };
        let written = match staged {
            Ok(staged) => self.commit_secondary(store, series, &next.bars, staged, primary_version, ctx).await,
            Err(e) => Err(e),
        };
        let written = match written {
            Ok(Some(w)) => w,
            Ok(None) => return SecondaryStatus::Unchanged { format, location },
            Err(e) => {
                tracing::error!(error = %e, "secondary write failed; the series is inconsistent until the next persist or recover");
                return SecondaryStatus::Failed { format, location, error: e.to_string() };
            }
        };
        // When the primary did not change, the secondary's record must carry the primary's
        // generation to be recognised as consistent with it.
        let generation = if primary.written {
            state.generation + 1
        } else {
            state.primary_generation().unwrap_or(state.generation + 1)
        };
        match self.record(series, next, &written, generation, state.secondary.meta.as_ref(), ctx).await {
            Ok(()) => SecondaryStatus::Written { format, location: written.info.location },
            Err(e) if self.settings.lock_free && e.is_version_conflict() => {
                // Another writer's secondary replaced this one before its record: the record
                // is theirs to write.
                tracing::info!(error = %e, "secondary replaced by a newer writer before its record");
                SecondaryStatus::Written { format, location: written.info.location }
            }
            Err(e) => {
                tracing::error!(error = %e, "secondary metadata write failed; the series is inconsistent until the next persist or recover");
                SecondaryStatus::Failed { format, location: written.info.location, error: e.to_string() }
            }
        }
    }

    /// Whether every store accepts revisions that skip stored rows.
    fn revisions_everywhere(&self) -> bool {
        self.copies().iter().all(|c| c.capabilities().revisions)
    }

    /// What a copy is given to write: the next version's rows after the skipped ones, and
    /// — for a copy whose bytes were just proven — what the caller vouches for about its
    /// unchanged leading rows, so the store may keep their stored bytes.
    fn revision_for(state: &StoredState, copy: &CopyState, next: &Next) -> Revision {
        let keep = match (&state.bars, copy.ok && copy.proven) {
            (Some(old), true) => Some(Keep {
                stored_rows: state.skipped + old.len(),
                unchanged: state.skipped + old.common_prefix_len(&next.bars),
            }),
            _ => None,
        };
        Revision { bars: Arc::clone(&next.bars), skipped: next.skipped, keep }
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
            WriteMode::Replace => (bars.clone(), replace_stats(existing, bars)),
            WriteMode::Trim { before } => {
                let kept = existing.slice(&TimeRange { start: Some(before), end: None });
                let stats = replace_stats(existing, &kept);
                (kept, stats)
            }
        };
        stats.existing_rows += state.skipped;
        stats.result_rows += state.skipped;
        Ok((result, stats))
    }

    /// Which copies need writing, given what the merge changed and which copies were sound.
    fn needs(&self, state: &StoredState, rows: usize, stats: MergeStats) -> (bool, bool) {
        let empty_new_series = state.bars.is_none() && rows == 0;
        let need_primary = !empty_new_series && (!stats.unchanged || !state.primary.ok);
        let need_secondary = self.secondary.is_some() && !empty_new_series && (!stats.unchanged || !state.secondary.ok);
        (need_primary, need_secondary)
    }

    async fn record(
        &self,
        series: &SeriesKey,
        next: &Next,
        written: &Persisted,
        generation: u64,
        previous: Option<&FileMetadata>,
        ctx: &OpContext,
    ) -> Result<(), StorageError> {
        let meta = FileMetadata {
            file_path: Self::relative_path(series, &written.info.format),
            instrument_symbol: series.instrument.symbol().clone(),
            instrument_type: series.instrument.kind(),
            period: series.period,
            format: written.info.format.clone(),
            row_count: next.rows() as u64,
            columns: next.bars.column_names(),
            date_range: DateRange {
                start: next.first.map(barvault_domain::nanos_to_datetime),
                end: next.bars.last_timestamp().map(barvault_domain::nanos_to_datetime),
            },
            file_size: written.info.size,
            last_updated: Utc::now(),
            checksum: written.checksum.clone().unwrap_or_default(),
            generation,
            backup_checksum: if written.backup_created { previous.map(|p| p.checksum.clone()) } else { None },
            fingerprint: written.fingerprint.clone(),
            appended: None,
        };
        self.metadata.record(&meta, ctx).await
    }
}

/// The receipt of a persist whose primary copy was written.
pub(super) fn written_receipt(written: &Persisted, rows: usize, stats: MergeStats, ctx: &OpContext) -> StorageReceipt {
    let mut receipt = StorageReceipt::unwritten(&written.info.location, &written.info.format, rows, stats, ctx);
    receipt.written = true;
    receipt.backup_created = written.backup_created;
    receipt.checksum_md5 = written.checksum.clone();
    receipt.file_size = Some(written.info.size);
    receipt.fingerprint = written.fingerprint.clone();
    receipt
}

/// `bars` checked against the series' time grid (`check_grid`): for a merge, the grid of
/// the stored bars `state` holds (the series' own convention: its last rows when only
/// those were read), for a replace the grid of `bars` themselves.
fn on_grid<'a>(
    bars: &'a Bars,
    series: &SeriesKey,
    state: &StoredState,
    mode: WriteMode,
    validation: ValidationPolicy,
) -> Result<(Cow<'a, Bars>, ValidationReport), StorageError> {
    let stored = match mode {
        WriteMode::Merge => state.bars.as_ref(),
        WriteMode::Replace | WriteMode::Trim { .. } => None,
    };
    let (keep, report) =
        off_grid(bars, series.period, stored, validation).map_err(|e| StorageError::validation(series, e))?;
    let bars = match keep {
        None => Cow::Borrowed(bars),
        Some(keep) => {
            let mut kept = bars.clone();
            kept.retain_rows(&keep);
            Cow::Owned(kept)
        }
    };
    Ok((bars, report))
}

/// Dropped bars are logged readably: how many, by rule, and the first of them.
fn log_dropped(report: &ValidationReport) {
    if report.dropped > 0 {
        let first: Vec<String> = report.samples.iter().map(ToString::to_string).collect();
        tracing::info!(dropped = report.dropped, rules = %report.summary(), first = %first.join("; "), "invalid bars dropped");
    }
}
