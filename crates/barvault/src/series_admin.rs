//! Operations on whole series, by name: delete one (with everything barvault keeps for
//! it), rename or move one stored under the wrong name, forget one whose every copy is
//! gone, find the period of a symbol stored at one period only, and say what *is* stored
//! when a series is not.

use std::collections::BTreeSet;
use std::path::PathBuf;

use barvault_domain::{InstrumentKind, Period, SeriesKey, ValidationPolicy, check_grid};
use barvault_ports::{EntryKind, OpContext, StorageError};
use serde::Serialize;

use crate::integrity::{RecoveryAction, RecoveryReport, Scope};
use crate::receipt::{PersistOptions, WriteMode};
use crate::vault::{SeriesSummary, Vault};

/// What deleting a series removes (or would remove, in a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct DeleteReport {
    pub series: String,
    pub dry_run: bool,
    /// Every file of the series that existed: data files, backups, metadata records, lock
    /// files, spare files and temp files left by interrupted writes.
    pub files: Vec<PathBuf>,
}

/// What renaming a series did.
#[derive(Debug, Clone, Serialize)]
pub struct RenameReport {
    pub from: String,
    pub to: String,
    pub rows: usize,
}

/// The size of the edit between two short strings (insertions, deletions, substitutions).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Whether `stored` is a symbol someone typing `wanted` may have meant.
fn near_miss(wanted: &str, stored: &str) -> bool {
    let (w, s) = (wanted.len(), stored.len());
    let prefix = (stored.starts_with(wanted) || wanted.starts_with(stored)) && w.abs_diff(s) <= 3;
    prefix || edit_distance(wanted, stored) <= if w.min(s) >= 4 { 2 } else { 1 }
}

impl Vault {
    /// Every entry barvault keeps for `series` that exists now, sorted: its data files,
    /// backups, lock files and leftovers of interrupted writes (from the housekeeping
    /// survey) and its metadata records. Entries that are not barvault's (a symbolic link
    /// in place of a file) are not among them: a delete leaves those to a person.
    async fn files_of(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Vec<PathBuf>, StorageError> {
        let survey = self.housekeeping.survey(ctx).await?;
        let mut files: Vec<PathBuf> = (survey.entries.iter())
            .filter(|e| e.kind != EntryKind::Foreign && e.series.as_ref() == Some(series))
            .map(|e| e.location.clone())
            .collect();
        for format in self.formats() {
            files.extend(self.manager.metadata().locations(series, &format, ctx).await?);
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// Deletes `series`: its data files, backups, metadata records and lock files under
    /// the series lock, then the leftovers of interrupted writes whose writer is gone.
    /// With `dry_run` only lists them. A series with no file at all is not found.
    pub async fn delete_series(
        &self,
        series: &SeriesKey,
        dry_run: bool,
        ctx: &OpContext,
    ) -> Result<DeleteReport, StorageError> {
        let files = self.files_of(series, ctx).await?;
        if files.is_empty() {
            return Err(self.not_found(series, ctx).await);
        }
        if !dry_run {
            self.remove_series(series, ctx).await?;
            let survey = self.housekeeping.survey(ctx).await?;
            for leftover in survey.of(EntryKind::Leftover).filter(|e| e.stale && e.series.as_ref() == Some(series)) {
                self.housekeeping.discard(leftover, ctx).await?;
            }
            tracing::info!(series = %series, files = files.len(), "series deleted");
        }
        Ok(DeleteReport { series: series.to_string(), dry_run, files })
    }

    /// Stores the bars of `from` as `to` and deletes `from`, for a series imported under
    /// the wrong symbol, type or period. Refuses when `to` already holds other bars, and,
    /// when the period changes, when the bars are not on the new period's grid. The new
    /// series is written and read back before the old one is deleted, so an interruption
    /// leaves both (running the same rename again finishes it).
    pub async fn rename_series(
        &self,
        from: &SeriesKey,
        to: &SeriesKey,
        ctx: &OpContext,
    ) -> Result<RenameReport, StorageError> {
        if from == to {
            return Err(StorageError::invalid(format!("{from} is already its own name")));
        }
        let Some(bars) = self.manager.load_with_fallback(from, None, ctx).await? else {
            return Err(self.not_found(from, ctx).await);
        };
        if to.period != from.period {
            check_grid(bars.clone(), to.period, None, ValidationPolicy::Strict)
                .map_err(|e| StorageError::invalid(format!("{from} cannot become {to}: {e}")))?;
        }
        match self.manager.load_with_fallback(to, None, ctx).await? {
            Some(existing) if existing == bars => {
                tracing::info!(from = %from, to = %to, "already copied; finishing the rename");
            }
            Some(existing) => {
                return Err(StorageError::invalid(format!(
                    "{to} already holds {} bars: delete it first, or import into it",
                    existing.len()
                )));
            }
            None => {
                let options = PersistOptions { mode: WriteMode::Replace, ..PersistOptions::default() };
                self.manager.persist_with_backup(&bars, to, options, ValidationPolicy::Off, ctx).await?;
                let copied = self.manager.load_with_fallback(to, None, ctx).await?;
                if copied.as_ref() != Some(&bars) {
                    return Err(StorageError::invalid(format!(
                        "{to} does not read back as {from} did; {from} is kept (run `barvault verify`)"
                    )));
                }
            }
        }
        self.delete_series(from, false, ctx).await?;
        Ok(RenameReport { from: from.to_string(), to: to.to_string(), rows: bars.len() })
    }

    /// [`Vault::recover`], and then for a series that is unrecoverable because every copy
    /// of it is gone (no data file and no backup left, only records and locks): with
    /// `forget_missing`, its records and lock files are removed, so `verify` is clean
    /// again; without it, the reason says how to forget it.
    pub async fn recover_with(&self, scope: Scope, forget_missing: bool) -> Result<RecoveryReport, StorageError> {
        let mut report = self.recover(scope).await?;
        if report.unrecoverable.is_empty() {
            return Ok(report);
        }
        let ctx = OpContext::new();
        let keys = self.stored_keys(&ctx).await?;
        let survey = self.housekeeping.survey(&ctx).await?;
        let mut left = Vec::new();
        for (name, reason) in std::mem::take(&mut report.unrecoverable) {
            let Some(series) = keys.iter().find(|k| k.to_string() == name).cloned() else {
                left.push((name, reason));
                continue;
            };
            let data_left = (survey.entries.iter())
                .any(|e| matches!(e.kind, EntryKind::Data | EntryKind::Backup) && e.series.as_ref() == Some(&series));
            if data_left {
                left.push((name, reason));
            } else if forget_missing {
                for path in self.delete_series(&series, false, &ctx).await?.files {
                    report.actions.push(RecoveryAction {
                        series: Some(name.clone()),
                        path,
                        action: "removed: every copy of the series was gone (--forget-missing)".into(),
                    });
                }
            } else {
                left.push((
                    name,
                    format!(
                        "{reason}: every copy is gone; `barvault recover --forget-missing` removes what is left of it \
                         (its metadata records and lock files)"
                    ),
                ));
            }
        }
        report.unrecoverable = left;
        Ok(report)
    }

    /// After an import into a series that does not exist was refused: removes the lock
    /// files the attempt left, so that `verify` finds no stale lock of a series without
    /// data. Best effort: what it cannot remove is left for `recover`.
    pub(crate) async fn forget_refused_new_series(&self, series: &SeriesKey, ctx: &OpContext) {
        let forget = async {
            if self.manager.exists(series, ctx).await? {
                return Ok(());
            }
            for format in self.formats() {
                if self.manager.metadata().get(series, &format, ctx).await?.is_some() {
                    return Ok(());
                }
            }
            let survey = self.housekeeping.survey(ctx).await?;
            for lock in survey.of(EntryKind::Lock).filter(|e| e.series.as_ref() == Some(series)) {
                self.housekeeping.discard(lock, ctx).await?;
            }
            Ok::<(), StorageError>(())
        };
        if let Err(e) = forget.await {
            tracing::debug!(error = %e, "lock files of a refused new series left in place");
        }
    }

    /// The series keys the store knows (from records and data files).
    async fn stored_keys(&self, ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        let mut keys: BTreeSet<SeriesKey> = self.manager.list(ctx).await?.into_iter().collect();
        for r in self.manager.metadata().list(ctx).await?.records {
            if let Ok(s) = r.try_series() {
                keys.insert(s);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// The one period `symbol` of `kind` is stored at; an error naming what is stored when
    /// there is none or more than one.
    pub async fn only_period(
        &self,
        kind: InstrumentKind,
        symbol: &str,
        ctx: &OpContext,
    ) -> Result<Period, StorageError> {
        let instrument = barvault_domain::Instrument::new(kind, symbol).map_err(StorageError::from)?;
        let symbol = instrument.symbol().as_str();
        let stored = self.list(Some(kind), None, ctx).await?;
        let periods: Vec<Period> = stored.iter().filter(|s| s.symbol == symbol).map(|s| s.period).collect();
        match periods.as_slice() {
            [one] => Ok(*one),
            [] => {
                let stored = self.list(None, None, ctx).await.unwrap_or_default();
                let what = format!(
                    "series {}:{symbol} at any period{}",
                    kind.as_str(),
                    hint(&SeriesKey::new(instrument.clone(), Period::D1), &stored)
                );
                Err(StorageError::NotFound { what })
            }
            many => Err(StorageError::invalid(format!(
                "{} {symbol} is stored at {} periods ({}): give --period",
                kind.as_str(),
                many.len(),
                many.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// A not-found error for `series` that says what is stored instead: the periods of the
    /// same symbol, the same symbol under other types, and near-miss symbols.
    pub async fn not_found(&self, series: &SeriesKey, ctx: &OpContext) -> StorageError {
        let stored = self.list(None, None, ctx).await.unwrap_or_default();
        StorageError::NotFound { what: format!("series {series}{}", hint(series, &stored)) }
    }
}

/// ` (…)`: what is stored near `series`, or how to see what is.
fn hint(series: &SeriesKey, stored: &[SeriesSummary]) -> String {
    let (kind, symbol) = (series.instrument.kind(), series.instrument.symbol().as_str());
    let mut notes = Vec::new();
    let periods: Vec<&str> =
        stored.iter().filter(|s| s.instrument_type == kind && s.symbol == symbol).map(|s| s.period.as_str()).collect();
    if !periods.is_empty() {
        notes.push(format!("{} {symbol} is stored at {}", kind.as_str(), periods.join(", ")));
    }
    let kinds: BTreeSet<&str> = stored
        .iter()
        .filter(|s| s.instrument_type != kind && s.symbol == symbol)
        .map(|s| s.instrument_type.as_str())
        .collect();
    if !kinds.is_empty() {
        notes.push(format!("{symbol} is stored as {}", kinds.into_iter().collect::<Vec<_>>().join(", ")));
    }
    let near: BTreeSet<String> = stored
        .iter()
        .filter(|s| s.instrument_type == kind && s.symbol != symbol && near_miss(symbol, &s.symbol))
        .map(|s| format!("{}@{}", s.symbol, s.period))
        .collect();
    if !near.is_empty() {
        notes.push(format!("did you mean {}?", near.into_iter().take(5).collect::<Vec<_>>().join(", ")));
    }
    if notes.is_empty() {
        notes.push(match stored.len() {
            0 => "the store holds no series".to_string(),
            n => format!("the store holds {n} other series: `barvault list` shows them"),
        });
    }
    format!(" ({})", notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_typos_and_prefixes() {
        assert_eq!(edit_distance("NVDA", "NVDA"), 0);
        assert_eq!(edit_distance("NOVO", "NOVOL"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert!(near_miss("NVDA", "NVDA-1D"));
        assert!(near_miss("NOVO", "NOVOL"));
        assert!(near_miss("ORLC", "ORCL"));
        assert!(!near_miss("AAPL", "MSFT"));
    }
}
