//! Writes of bars an embedding holds in memory (the Python package's `persist`): the rows of a
//! frame are merged into a series exactly as `import` merges the rows of a file, and counted
//! the same way.

use barvault_domain::{RawBars, SeriesKey};
use barvault_ports::{OpContext, StorageError};
use serde::Serialize;
use tracing::Instrument as _;

use crate::dual::PersistOutcome;
use crate::receipt::{PersistOptions, SecondaryStatus};
use crate::vault::{ImportOptions, Vault};

/// What merging one batch of rows into a series did (the counts of [`crate::FileImport`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowsPersisted {
    pub series: String,
    /// Rows given, before repeats were folded and invalid rows dropped.
    pub rows_read: usize,
    /// Timestamps that were not stored before.
    pub added: usize,
    /// Stored rows whose values changed.
    pub replaced: usize,
    /// Rows that were already stored with the same values.
    pub unchanged: usize,
    /// Rows whose timestamp an earlier row given already had: folded into it under the
    /// merge policy (keep-last: the later row's values win, cell by cell).
    pub duplicates: usize,
    /// Stored rows the new bars did not keep (a replace).
    pub removed: usize,
    /// Rows removed by the `drop` validation policy.
    pub dropped_invalid: usize,
    /// Why rows were dropped, by rule: `high < low: 2, not on the series' time grid: 1`.
    pub dropped_why: String,
    /// Rows in the series afterwards.
    pub rows_stored: usize,
    /// Whether any file was written (false when the rows changed nothing).
    pub written: bool,
    /// The primary (CSV) file of the series.
    pub location: String,
    /// Whether the primary's previous version was kept as `.backup`.
    pub backup_created: bool,
    /// Set when the secondary (Parquet) copy could not be written.
    pub warning: Option<String>,
    pub correlation_id: String,
}

impl RowsPersisted {
    /// The counts of a persist of `rows_read` rows, `duplicates` of them folded into
    /// others, that ended in `outcome`.
    pub fn of(series: &SeriesKey, rows_read: usize, duplicates: usize, outcome: &PersistOutcome) -> Self {
        let stats = outcome.receipt.merge;
        let dropped = outcome.validation.dropped;
        let warning = match &outcome.receipt.secondary {
            Some(SecondaryStatus::Failed { format, error, .. }) => Some(format!("{format} copy not written: {error}")),
            _ => None,
        };
        Self {
            series: series.to_string(),
            rows_read,
            added: stats.rows_added,
            replaced: stats.rows_changed,
            unchanged: rows_read.saturating_sub(duplicates + dropped + stats.rows_added + stats.rows_changed),
            duplicates,
            removed: stats.rows_removed(),
            dropped_invalid: dropped,
            dropped_why: outcome.validation.summary(),
            rows_stored: outcome.receipt.rows_written,
            written: outcome.receipt.written,
            location: outcome.receipt.location.clone(),
            backup_created: outcome.receipt.backup_created,
            warning,
            correlation_id: outcome.receipt.correlation_id.clone(),
        }
    }
}

impl Vault {
    /// Merges `rows` (in any order, timestamps possibly repeated) into `series`: repeats are
    /// folded under `options.policy`, then the bars are validated, merged and written to both
    /// copies under the series lock, as `import` does with the rows of one file. Nothing is
    /// written when the call fails.
    pub async fn persist_rows(
        &self,
        rows: RawBars,
        series: &SeriesKey,
        options: ImportOptions,
        ctx: &OpContext,
    ) -> Result<RowsPersisted, StorageError> {
        let span = ctx.span("persist_rows", Some(series));
        async {
            let rows_read = rows.len();
            let (bars, duplicates) =
                rows.into_bars(options.policy).map_err(|e| StorageError::merge_failed(series, e))?;
            let persist = PersistOptions { mode: options.mode, policy: options.policy };
            let outcome = self.manager().persist_with_backup(&bars, series, persist, options.validation, ctx).await?;
            Ok(RowsPersisted::of(series, rows_read, duplicates, &outcome))
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::WriteMode;
    use barvault_domain::{ExtraColumn, Instrument, MergePolicy, Period, ValidationPolicy};

    use super::*;
    use crate::{StorageConfig, StorageFactory};

    /// Rows at `secs` seconds after the epoch.
    fn rows(secs: &[i64], close: &[f64]) -> RawBars {
        let mut raw = RawBars::with_capacity(secs.len());
        for (&t, &c) in secs.iter().zip(close) {
            raw.push(t * 1_000_000_000, c, c + 1.0, c - 1.0, c, 10.0);
        }
        raw
    }

    fn options(validation: ValidationPolicy, mode: WriteMode, policy: MergePolicy) -> ImportOptions {
        ImportOptions { validation, mode, policy, ..ImportOptions::default() }
    }

    /// Counted as an import counts a file: a repeat folds keep-last and counts as a duplicate,
    /// a second batch adds and replaces, an identical batch writes nothing.
    #[tokio::test]
    async fn rows_merge_keep_last_and_are_counted_like_an_import() {
        let dir = tempfile::tempdir().unwrap();
        let vault = StorageFactory::open(&StorageConfig::with_output_directory(dir.path())).unwrap();
        let series = SeriesKey::new(Instrument::stock("AAA").unwrap(), Period::M1);
        let ctx = OpContext::with_correlation_id(Some("cid-1"));
        let opts = options(ValidationPolicy::Strict, WriteMode::Merge, MergePolicy::KeepLast);

        let first = vault.persist_rows(rows(&[60, 0, 60], &[5.0, 1.0, 6.0]), &series, opts, &ctx).await.unwrap();
        assert_eq!((first.rows_read, first.added, first.replaced, first.unchanged, first.duplicates), (3, 2, 0, 0, 1));
        assert_eq!((first.rows_stored, first.written, first.backup_created), (2, true, false));
        assert_eq!(first.correlation_id, "cid-1");
        assert!(first.location.ends_with("stocks/1m/AAA.csv"), "{}", first.location);

        let second = vault.persist_rows(rows(&[60, 120], &[7.0, 8.0]), &series, opts, &ctx).await.unwrap();
        assert_eq!((second.added, second.replaced, second.unchanged, second.rows_stored), (1, 1, 0, 3));
        assert!(second.backup_created);
        let stored = vault.manager().load_with_fallback(&series, None, &ctx).await.unwrap().unwrap();
        assert_eq!(stored.close(), &[1.0, 7.0, 8.0], "keep-last across the two batches");

        let again = vault.persist_rows(rows(&[60, 120], &[7.0, 8.0]), &series, opts, &ctx).await.unwrap();
        assert_eq!((again.written, again.unchanged), (false, 2));
    }

    #[tokio::test]
    async fn refused_rows_leave_the_store_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let vault = StorageFactory::open(&StorageConfig::with_output_directory(dir.path())).unwrap();
        let series = SeriesKey::new(Instrument::stock("BBB").unwrap(), Period::D1);
        let ctx = OpContext::new();
        let strict = options(ValidationPolicy::Strict, WriteMode::Merge, MergePolicy::KeepLast);
        let mut bad = rows(&[0, 86_400], &[1.0, 2.0]);
        bad.high[1] = 0.0; // high < low
        let err = vault.persist_rows(bad.clone(), &series, strict, &ctx).await.unwrap_err();
        assert!(matches!(err, StorageError::Validation { .. }), "{err}");
        assert!(err.to_string().contains("bar 2 at 1970-01-02"), "{err}");
        assert!(vault.manager().primary().file_info(&series, &ctx).await.unwrap().is_none());

        let conflict = options(ValidationPolicy::Strict, WriteMode::Merge, MergePolicy::ErrorOnConflict);
        let err = vault.persist_rows(rows(&[0, 0], &[1.0, 2.0]), &series, conflict, &ctx).await.unwrap_err();
        assert!(matches!(err, StorageError::Conflict { .. }), "{err}");

        let mut short = rows(&[0], &[1.0]);
        short.extras.push(ExtraColumn::new("oi", vec![]).unwrap());
        let err = vault.persist_rows(short, &series, strict, &ctx).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidInput { .. }), "{err}");

        let drop = options(ValidationPolicy::Drop, WriteMode::Merge, MergePolicy::KeepLast);
        let done = vault.persist_rows(bad, &series, drop, &ctx).await.unwrap();
        assert_eq!((done.dropped_invalid, done.added, done.unchanged), (1, 1, 0));
    }
}
