//! Retention: bars older than `retention_days` leave every series through the same locked,
//! durable write path as any other write, and temp files and backups older than the
//! retention are deleted. A dry run computes exactly the same plan and changes nothing.
//!
//! A bar store keeps history, so nothing here deletes by default: without `retention_days`
//! cleanup refuses (there is no retention to apply), and a plan that would remove every row
//! of a series, or more than [`MAX_UNCONFIRMED_SHARE`] of all stored rows, is carried out
//! only when confirmed ([`CleanupOptions::confirm`], `--confirm-removal`). A nightly cleanup
//! of a steady store removes a day of each series and never needs the confirmation; a
//! mistyped retention or a first cleanup of a long history does.

use std::path::PathBuf;
use std::time::Duration;

use barvault_domain::{Bars, TimeRange, datetime_to_nanos};
use barvault_ports::{EntryKind, OpContext, StorageError};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::receipt::PersistOptions;
use crate::vault::Vault;

/// A plan removing more than this share of the rows stored (over every series) needs
/// confirmation: a steady daily cleanup removes far less, a wrong retention far more.
pub const MAX_UNCONFIRMED_SHARE: f64 = 0.5;

/// Rows one series loses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesTrim {
    pub series: String,
    pub rows_removed: usize,
    pub rows_kept: usize,
}

/// What cleanup removes (or would remove, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupPlan {
    /// Bars before this instant go.
    pub cutoff: Option<String>,
    pub series: Vec<SeriesTrim>,
    pub temp_files: Vec<PathBuf>,
    pub backups: Vec<PathBuf>,
    /// Rows stored in every series before the cleanup.
    pub rows_stored: usize,
    /// Rows the plan removes, over every series.
    pub rows_removed: usize,
}

impl CleanupPlan {
    /// Why carrying out this plan needs confirmation, or `None`.
    pub fn needs_confirmation(&self) -> Option<String> {
        let emptied: Vec<&str> = self.series.iter().filter(|t| t.rows_kept == 0).map(|t| t.series.as_str()).collect();
        if !emptied.is_empty() {
            return Some(format!(
                "it removes every row of {} series ({})",
                emptied.len(),
                emptied.iter().take(5).copied().collect::<Vec<_>>().join(", ")
                    + if emptied.len() > 5 { ", …" } else { "" }
            ));
        }
        if self.rows_removed as f64 > MAX_UNCONFIRMED_SHARE * self.rows_stored as f64 {
            return Some(format!(
                "it removes {} of the {} rows stored ({:.0}%, more than {:.0}%)",
                self.rows_removed,
                self.rows_stored,
                100.0 * self.rows_removed as f64 / self.rows_stored.max(1) as f64,
                100.0 * MAX_UNCONFIRMED_SHARE
            ));
        }
        None
    }
}

/// How a cleanup runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupOptions {
    /// Only report the plan.
    pub dry_run: bool,
    /// Run although `cleanup_enabled` is false.
    pub force: bool,
    /// Carry out a plan that removes a whole series or more than [`MAX_UNCONFIRMED_SHARE`]
    /// of the rows stored.
    pub confirm: bool,
}

/// The plan and whether it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupReport {
    pub dry_run: bool,
    /// The retention applied, in days.
    pub retention_days: u32,
    pub plan: CleanupPlan,
    /// Whether the plan was carried out (false for a dry run and a refused plan).
    pub applied: bool,
    /// Why the plan needs `confirm` (a dry run reports it too; a real run without
    /// `confirm` then changed nothing).
    pub needs_confirmation: Option<String>,
}

impl Vault {
    /// Applies the retention policy (`retention_days`). Refuses unless `cleanup_enabled`
    /// or `force`; with `dry_run` only reports. Never removes a whole series or most of the
    /// store (see [`Vault::cleanup_with`] for the confirmation).
    pub async fn cleanup(&self, dry_run: bool, force: bool, ctx: &OpContext) -> Result<CleanupReport, StorageError> {
        self.cleanup_with(Utc::now(), CleanupOptions { dry_run, force, confirm: false }, ctx).await
    }

    /// [`Vault::cleanup`] as if the time were `now` (for tests and reproducible runs).
    pub async fn cleanup_at(
        &self,
        now: DateTime<Utc>,
        dry_run: bool,
        force: bool,
        ctx: &OpContext,
    ) -> Result<CleanupReport, StorageError> {
        self.cleanup_with(now, CleanupOptions { dry_run, force, confirm: false }, ctx).await
    }

    /// The cleanup as if the time were `now`, with every option.
    pub async fn cleanup_with(
        &self,
        now: DateTime<Utc>,
        options: CleanupOptions,
        ctx: &OpContext,
    ) -> Result<CleanupReport, StorageError> {
        let CleanupOptions { dry_run, force, confirm } = options;
        let Some(retention_days) = self.config.retention_days else {
            return Err(StorageError::Config {
                field: "retention_days".into(),
                message: "not set, so there is no retention to apply and cleanup removes nothing; to delete \
                          bars older than N days, opt in with retention_days = N (barvault.toml or \
                          BARVAULT_RETENTION_DAYS)"
                    .into(),
            });
        };
        if !self.config.cleanup_enabled && !force && !dry_run {
            return Err(StorageError::Config {
                field: "cleanup_enabled".into(),
                message: "cleanup is disabled; set cleanup_enabled = true, pass --force, or use --dry-run".into(),
            });
        }
        let retention = chrono::Duration::days(i64::from(retention_days));
        let cutoff_dt = now - retention;
        let cutoff = datetime_to_nanos(&cutoff_dt).unwrap_or(i64::MIN);
        let max_age = Duration::from_secs(u64::from(retention_days) * 86_400);
        let mut plan = CleanupPlan { cutoff: Some(cutoff_dt.to_rfc3339()), ..CleanupPlan::default() };

        let mut trims: Vec<barvault_domain::SeriesKey> = Vec::new();
        for series in self.manager.list(ctx).await? {
            let Some(bars) = self.manager.load_with_fallback(&series, None, ctx).await? else { continue };
            plan.rows_stored += bars.len();
            let keep_range = TimeRange { start: Some(cutoff), end: None };
            let (lo, _) = bars.range_bounds(&keep_range);
            if lo == 0 {
                continue;
            }
            let kept = bars.slice(&keep_range);
            plan.rows_removed += lo;
            plan.series.push(SeriesTrim { series: series.to_string(), rows_removed: lo, rows_kept: kept.len() });
            trims.push(series);
        }
        let survey = self.housekeeping.survey(ctx).await?;
        // File ages are measured from `now` too, so a run "as if the time were `now`" treats
        // bars and files alike.
        let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        let older_than_retention = |modified: Option<DateTime<Utc>>| modified.is_some_and(|m| now - m > max_age);
        let old: Vec<_> = survey
            .entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Leftover | EntryKind::Backup) && older_than_retention(e.modified))
            .collect();
        plan.temp_files = old.iter().filter(|e| e.kind == EntryKind::Leftover).map(|e| e.location.clone()).collect();
        plan.backups = old.iter().filter(|e| e.kind == EntryKind::Backup).map(|e| e.location.clone()).collect();

        let needs_confirmation = plan.needs_confirmation();
        let applied = !dry_run && (confirm || needs_confirmation.is_none());
        if applied {
            // The plan was made from reads without the lock; what is removed is decided
            // again under each series' lock by the trim (only bars still older than the
            // cutoff go), so an import committed since the plan's read is never undone.
            for (trim, series) in plan.series.iter_mut().zip(&trims) {
                let opts = PersistOptions::trim(cutoff);
                let off = barvault_domain::ValidationPolicy::Off;
                let outcome = self.manager.persist_with_backup(&Bars::empty(), series, opts, off, ctx).await?;
                let stats = outcome.receipt.merge;
                trim.rows_removed = stats.existing_rows.saturating_sub(stats.result_rows);
                trim.rows_kept = stats.result_rows;
                if stats.result_rows == 0 {
                    // The trim removed the series; its lock files go too.
                    self.discard_locks(series, ctx).await?;
                }
            }
            plan.rows_removed = plan.series.iter().map(|t| t.rows_removed).sum();
            for entry in old {
                self.housekeeping.discard(entry, ctx).await?;
            }
        }
        tracing::info!(
            dry_run,
            applied,
            series = plan.series.len(),
            rows_removed = plan.rows_removed,
            temp_files = plan.temp_files.len(),
            backups = plan.backups.len(),
            "cleanup"
        );
        Ok(CleanupReport { dry_run, retention_days, plan, applied, needs_confirmation })
    }
}
