//! Operations on whole series, by name: delete one (with everything barvault keeps for
//! it), rename or move one stored under the wrong name, forget one whose every copy is
//! gone, find the period of a symbol stored at one period only, and say what *is* stored
//! when a series is not.

use std::collections::BTreeSet;
use std::path::PathBuf;

use barvault_domain::{InstrumentKind, Period, SeriesKey, ValidationPolicy, check_grid};
use barvault_fs::{Layout, TempFile};
use barvault_ports::{BarStore, MetadataStore, OpContext, PersistOptions, StorageError, WriteMode};
use serde::Serialize;

use crate::integrity::{RecoveryAction, RecoveryReport, Scope};
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
    /// The series whose temp file `t` is (`None` for a temp file of no series this layout
    /// names).
    pub(crate) fn temp_series(&self, t: &TempFile) -> Option<SeriesKey> {
        let dir = t.path.parent()?.strip_prefix(self.base()).ok()?;
        let target = t.target_name.strip_suffix(".backup").unwrap_or(&t.target_name);
        Layout::new(self.base().to_path_buf(), "csv").ok()?.parse(&dir.join(target)).map(|(s, _)| s)
    }

    /// Every file barvault keeps for `series` that exists now.
    fn files_of(&self, series: &SeriesKey) -> Result<Vec<PathBuf>, StorageError> {
        let mut files = Vec::new();
        let base = self.base().to_path_buf();
        for copy in &self.copies {
            let layout = Layout::new(base.clone(), copy.format())?;
            files.extend([
                layout.data_path(series),
                layout.backup_path(series),
                layout.spare_path(series),
                layout.lock_path(series),
                self.metadata.record_path(series, copy.format()),
                self.metadata.legacy_record_path(series, copy.format()),
            ]);
        }
        let layout = Layout::new(base, "csv")?;
        files.push(layout.series_lock_path(series));
        let scan = layout.scan(self.fs.as_ref())?;
        files
            .extend(scan.temps.iter().filter(|t| self.temp_series(t).as_ref() == Some(series)).map(|t| t.path.clone()));
        let mut existing: Vec<PathBuf> = files.into_iter().filter(|p| self.fs.metadata(p).is_ok()).collect();
        existing.sort();
        existing.dedup();
        Ok(existing)
    }

    /// Deletes `series`: its data files, backups, metadata records, lock files, spare
    /// files and the temp files of interrupted writes, under the series lock. With
    /// `dry_run` only lists them. A series with no file at all is not found.
    pub async fn delete_series(
        &self,
        series: &SeriesKey,
        dry_run: bool,
        ctx: &OpContext,
    ) -> Result<DeleteReport, StorageError> {
        let files = self.files_of(series)?;
        if files.is_empty() {
            return Err(self.not_found(series, ctx).await);
        }
        if !dry_run {
            self.remove_series(series, ctx).await?;
            // Temp files left by dead writers (the lock is free again, so no writer is running).
            for path in self.files_of(series)? {
                barvault_fs::remove_durable(self.fs.as_ref(), &path)?;
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
        let ctx = OpContext::new();
        let mut left = Vec::new();
        let keys = if report.unrecoverable.is_empty() { Vec::new() } else { self.stored_keys(&ctx).await? };
        for (name, reason) in std::mem::take(&mut report.unrecoverable) {
            let Some(series) = keys.iter().find(|k| k.to_string() == name).cloned() else {
                left.push((name, reason));
                continue;
            };
            let data_left = self.copies.iter().any(|c| {
                self.fs.metadata(&c.path_of(&series)).is_ok() || self.fs.metadata(&c.backup_path_of(&series)).is_ok()
            });
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
    /// data. Best effort: a lock another writer holds (the series is being created) is left.
    pub(crate) async fn forget_refused_new_series(&self, series: &SeriesKey, ctx: &OpContext) {
        let stored = BarStore::exists(&self.manager, series, ctx).await.unwrap_or(true);
        let mut recorded = false;
        for copy in &self.copies {
            recorded |= !matches!(self.metadata.get(series, copy.format(), ctx).await, Ok(None));
        }
        if stored || recorded {
            return;
        }
        let (this, key) = (self.clone(), series.clone());
        let removed = tokio::task::spawn_blocking(move || {
            // The series lock first, without waiting: held, it means another writer.
            this.series_locks.remove_stale_lock_blocking(&key, std::time::Duration::ZERO)?;
            for copy in &this.copies {
                copy.remove_lock_file(&key)?;
            }
            Ok::<(), StorageError>(())
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::debug!(error = %e, "lock files of a refused new series left in place");
        }
    }

    /// The series keys the store knows (from records and data files).
    async fn stored_keys(&self, ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        let mut keys: BTreeSet<SeriesKey> = BarStore::list(&self.manager, ctx).await?.into_iter().collect();
        for r in self.metadata.list(ctx).await? {
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
