//! Retention: bars older than `retention_days` leave every series through the same locked,
//! durable write path as any other write, and temp files and backups older than the
//! retention are deleted. A dry run computes exactly the same plan and changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use barvault_domain::{Bars, TimeRange, datetime_to_nanos};
use barvault_ports::{EntryKind, OpContext, StorageError};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::receipt::PersistOptions;
use crate::vault::Vault;

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
}

/// The plan and whether it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupReport {
    pub dry_run: bool,
    pub plan: CleanupPlan,
}

impl Vault {
    /// Applies the retention policy (`retention_days`). Refuses unless `cleanup_enabled`
    /// or `force`; with `dry_run` only reports.
    pub async fn cleanup(&self, dry_run: bool, force: bool, ctx: &OpContext) -> Result<CleanupReport, StorageError> {
        self.cleanup_at(Utc::now(), dry_run, force, ctx).await
    }

    /// [`Vault::cleanup`] as if the time were `now` (for tests and reproducible runs).
    pub async fn cleanup_at(
        &self,
        now: DateTime<Utc>,
        dry_run: bool,
        force: bool,
        ctx: &OpContext,
    ) -> Result<CleanupReport, StorageError> {
        if !self.config.cleanup_enabled && !force && !dry_run {
            return Err(StorageError::Config {
                field: "cleanup_enabled".into(),
                message: "cleanup is disabled; set cleanup_enabled = true, pass --force, or use --dry-run".into(),
            });
        }
        let retention = chrono::Duration::days(i64::from(self.config.retention_days));
        let cutoff_dt = now - retention;
        let cutoff = datetime_to_nanos(&cutoff_dt).unwrap_or(i64::MIN);
        let max_age = Duration::from_secs(u64::from(self.config.retention_days) * 86_400);
        let mut plan = CleanupPlan { cutoff: Some(cutoff_dt.to_rfc3339()), ..CleanupPlan::default() };

        let mut trims: Vec<(barvault_domain::SeriesKey, Bars)> = Vec::new();
        for series in self.manager.list(ctx).await? {
            let Some(bars) = self.manager.load_with_fallback(&series, None, ctx).await? else { continue };
            let keep_range = TimeRange { start: Some(cutoff), end: None };
            let (lo, _) = bars.range_bounds(&keep_range);
            if lo == 0 {
                continue;
            }
            let kept = bars.slice(&keep_range);
            plan.series.push(SeriesTrim { series: series.to_string(), rows_removed: lo, rows_kept: kept.len() });
            trims.push((series, kept));
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

        if !dry_run {
            for (series, kept) in trims {
                if kept.is_empty() {
                    self.remove_series(&series, ctx).await?;
                } else {
                    let opts = PersistOptions::replace();
                    self.manager
                        .persist_with_backup(&kept, &series, opts, barvault_domain::ValidationPolicy::Off, ctx)
                        .await?;
                }
            }
            for entry in old {
                self.housekeeping.discard(entry, ctx).await?;
            }
        }
        tracing::info!(
            dry_run,
            series = plan.series.len(),
            temp_files = plan.temp_files.len(),
            backups = plan.backups.len(),
            "cleanup"
        );
        Ok(CleanupReport { dry_run, plan })
    }
}
