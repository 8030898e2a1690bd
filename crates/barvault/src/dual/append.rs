//! The append path of a persist: bars that all follow the stored series are written after
//! the primary copy's committed end, in place, and the secondary copy is left to lag by a
//! bounded, recorded number of rows (docs/DECISIONS.md, "Appends in place").
//!
//! It runs under the series lock before the read–merge–write attempts and decides from
//! the two metadata records alone: no stored row is read, so its cost does not depend on
//! the series' length. Anything it does not handle (a first write, a revision of stored
//! rows, a new column, bars off the series' grid, a secondary that is not exactly the
//! lagging prefix the primary's record states, a lag that would exceed the bound, a store
//! or file that cannot be appended to) falls through to the attempts, which write both
//! copies whole or by kept bytes and so bring the secondary up to date.

use barvault_domain::{Bars, MergeStats, SeriesKey, ValidationPolicy, ValidationReport, datetime_to_nanos, off_grid};
use barvault_ports::{Appended, FileMetadata, OpContext, StorageError};
use chrono::Utc;

use super::write::written_receipt;
use super::{DualStorageManager, PersistOutcome};
use crate::receipt::{PersistOptions, SecondaryStatus, WriteMode};

/// What the records say an append may build on.
struct Base {
    primary: FileMetadata,
    /// The lag the new record states, `None` without a secondary copy.
    lag: Option<Appended>,
    generation: u64,
}

impl DualStorageManager {
    /// Appends `bars` (validated) to the primary copy in place when the records allow it;
    /// `None` when this persist must take the read–merge–write path instead. The caller
    /// holds the series lock.
    pub(super) async fn try_append(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        options: PersistOptions,
        validation: ValidationPolicy,
        ctx: &OpContext,
    ) -> Result<Option<PersistOutcome>, StorageError> {
        if options.mode != WriteMode::Merge
            || self.settings.lock_free
            || bars.is_empty()
            || !self.primary.capabilities().appends
        {
            return Ok(None);
        }
        let Some(base) = self.append_base(bars, series, ctx).await? else { return Ok(None) };
        let Some(grid) = on_stored_grid(bars, series, &base.primary, validation)? else { return Ok(None) };
        let Some(written) = self.primary.append(series, bars, &base.primary, ctx).await? else {
            return Ok(None);
        };
        let old = &base.primary;
        let rows = old.row_count + bars.len() as u64;
        let meta = FileMetadata {
            row_count: rows,
            date_range: barvault_ports::DateRange {
                start: old.date_range.start,
                end: bars.last_timestamp().map(barvault_domain::nanos_to_datetime),
            },
            file_size: written.info.size,
            last_updated: Utc::now(),
            checksum: written.checksum.clone().unwrap_or_default(),
            generation: base.generation,
            // The backup is untouched: still the version before the last whole write.
            backup_checksum: old.backup_checksum.clone(),
            fingerprint: written.fingerprint.clone(),
            appended: base.lag,
            ..old.clone()
        };
        // Until this record is written, readers read the committed length: an error here
        // leaves the previous version served, with the appended bytes ignored and cut by
        // the next write.
        self.metadata.record(&meta, ctx).await?;
        let rows = usize::try_from(rows).unwrap_or(usize::MAX);
        let stats = MergeStats {
            existing_rows: rows - bars.len(),
            new_rows: bars.len(),
            result_rows: rows,
            duplicates_removed: 0,
            rows_added: bars.len(),
            rows_changed: 0,
            unchanged: false,
        };
        let mut receipt = written_receipt(&written, rows, stats, ctx);
        receipt.secondary = self.secondary.as_ref().map(|s| SecondaryStatus::Unchanged {
            format: s.name().to_string(),
            location: self.location(series, s.name()),
        });
        tracing::info!(
            rows = bars.len(),
            lag = base.lag.map_or(0, |l| l.rows),
            generation = base.generation,
            "appended in place; the secondary copy lags"
        );
        Ok(Some(PersistOutcome {
            receipt,
            validation: grid,
            generation: Some(base.generation),
            repaired: Vec::new(),
            retries: 0,
        }))
    }

    /// The primary's record to append to and the lag to record, if the records allow an
    /// append of `bars`: every bar after the recorded end, the same columns, a fingerprint
    /// to resume the checksums from, and a secondary that holds exactly the rows the
    /// primary held before its recorded lag, which stays within the bound.
    async fn append_base(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        ctx: &OpContext,
    ) -> Result<Option<Base>, StorageError> {
        let Some(primary) = self.metadata.get(series, self.primary.name(), ctx).await? else { return Ok(None) };
        let follows = match (primary.date_range.end, bars.first_timestamp()) {
            (Some(end), Some(first)) => datetime_to_nanos(&end).is_some_and(|end| first > end),
            _ => false,
        };
        if !follows || primary.fingerprint.is_none() || primary.columns != bars.column_names() {
            return Ok(None);
        }
        let Some(secondary) = &self.secondary else {
            let generation = primary.generation + 1;
            return Ok(Some(Base { primary, lag: None, generation }));
        };
        let Some(smeta) = self.metadata.get(series, secondary.name(), ctx).await? else { return Ok(None) };
        let lagging = match primary.appended {
            None if primary.generation == smeta.generation && primary.row_count == smeta.row_count => 0,
            Some(a)
                if a.base_generation == smeta.generation
                    && primary.row_count.checked_sub(a.rows) == Some(smeta.row_count) =>
            {
                a.rows
            }
            _ => return Ok(None),
        };
        let lag = lagging + bars.len() as u64;
        if lag > self.settings.append_lag_rows || smeta.checksum.is_empty() {
            return Ok(None);
        }
        let generation = primary.generation.max(smeta.generation) + 1;
        let lag = Some(Appended { base_generation: smeta.generation, rows: lag });
        Ok(Some(Base { primary, lag, generation }))
    }
}

/// The grid check of an append against the series' grid as its last stored bar gives it
/// (the whole path takes it from the stored rows it reads): the report when every bar is on
/// it, `None` when some are not (the whole path then drops or refuses them and says so).
fn on_stored_grid(
    bars: &Bars,
    series: &SeriesKey,
    record: &FileMetadata,
    validation: ValidationPolicy,
) -> Result<Option<ValidationReport>, StorageError> {
    let Some(end) = record.date_range.end.as_ref().and_then(datetime_to_nanos) else { return Ok(None) };
    let last = Bars::new(vec![end], vec![0.0], vec![0.0], vec![0.0], vec![0.0], vec![0.0], vec![])
        .map_err(|e| StorageError::validation(series, e))?;
    let (drop, report) =
        off_grid(bars, series.period, Some(&last), validation).map_err(|e| StorageError::validation(series, e))?;
    Ok(drop.is_none().then_some(report))
}
