//! The seed's StorageHealthMonitor: one report an operator (or a monitoring probe) can act
//! on — disk space, write permission, consistency between copies, file counts, oversized and
//! stale files — with an overall status that maps to an exit code.

use barvault_ports::{Capacity, EntryKind, OpContext, StorageError};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::integrity::{IssueKind, Scope};
use crate::vault::Vault;

/// Overall health, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Warning,
    Error,
}

/// Space on the file system that holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiskUsage {
    pub total_gb: f64,
    pub used_gb: f64,
    pub available_gb: f64,
    pub usage_percentage: f64,
}

/// The result of `health`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub timestamp: DateTime<Utc>,
    pub overall_status: HealthStatus,
    pub issues: Vec<String>,
    pub disk_usage: Option<DiskUsage>,
    pub write_permission: bool,
    pub series: usize,
    pub total_files: usize,
    pub csv_files: usize,
    pub parquet_files: usize,
    pub backup_status: String,
    pub max_file_size_mb: u64,
    pub large_files: Vec<String>,
    pub stale_temp_files: Vec<String>,
    pub consistency_issues: Vec<String>,
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0 * 1024.0)
}

fn disk_usage(c: Capacity) -> DiskUsage {
    let used = c.total_bytes.saturating_sub(c.free_bytes);
    DiskUsage {
        total_gb: gb(c.total_bytes),
        used_gb: gb(used),
        available_gb: gb(c.available_bytes),
        usage_percentage: if c.total_bytes == 0 { 0.0 } else { used as f64 / c.total_bytes as f64 * 100.0 },
    }
}

impl Vault {
    /// Checks disk, permissions, consistency and files; never changes stored data.
    pub async fn check_health(&self) -> Result<HealthReport, StorageError> {
        let ctx = OpContext::new();
        let base = self.base().to_path_buf();
        let mut issues = Vec::new();
        let mut status = HealthStatus::Healthy;
        let raise = |s: HealthStatus, status: &mut HealthStatus| *status = (*status).max(s);

        let disk = match self.housekeeping.capacity(&ctx).await {
            Ok(Some(c)) => {
                let d = disk_usage(c);
                let min = self.config.min_free_space_gb;
                if d.available_gb < min {
                    issues.push(format!(
                        "low disk space: {:.2} GB available (min_free_space_gb = {min})",
                        d.available_gb
                    ));
                    raise(HealthStatus::Warning, &mut status);
                }
                Some(d)
            }
            Ok(None) => None,
            Err(e) => {
                issues.push(format!("cannot read disk usage of {}: {e}", base.display()));
                raise(HealthStatus::Error, &mut status);
                None
            }
        };
        let write_permission = match self.housekeeping.probe(&ctx).await {
            Ok(()) => true,
            Err(e) => {
                issues.push(format!("write permission denied in {}: {e}", base.display()));
                raise(HealthStatus::Error, &mut status);
                false
            }
        };

        let report = self.verify_with(&Scope::All, false, &ctx).await?;
        let mut consistency_issues = Vec::new();
        let mut stale_temp_files = Vec::new();
        for i in &report.issues {
            let line = format!("{}: {}: {}", i.kind, i.path.display(), i.detail);
            match i.kind {
                IssueKind::StaleTemp => {
                    stale_temp_files.push(i.path.display().to_string());
                    raise(HealthStatus::Warning, &mut status);
                }
                IssueKind::StaleLock
                | IssueKind::OrphanedFile
                | IssueKind::MissingCopy
                | IssueKind::ForeignEntry
                | IssueKind::UncommittedTail => {
                    raise(HealthStatus::Warning, &mut status);
                    consistency_issues.push(line);
                }
                _ => {
                    raise(HealthStatus::Error, &mut status);
                    consistency_issues.push(line);
                }
            }
        }
        if !consistency_issues.is_empty() {
            issues.push(format!("{} consistency issue(s); run `barvault verify --all`", consistency_issues.len()));
        }
        if !stale_temp_files.is_empty() {
            issues
                .push(format!("{} stale temp file(s); `barvault recover --all` removes them", stale_temp_files.len()));
        }

        let survey = self.housekeeping.survey(&ctx).await?;
        let data: Vec<_> = survey.of(EntryKind::Data).collect();
        let limit = self.config.max_file_size_mb * 1024 * 1024;
        let large_files: Vec<String> = data
            .iter()
            .filter(|d| d.size > limit)
            .map(|d| format!("{} ({:.1} MB)", d.location.display(), d.size as f64 / 1_048_576.0))
            .collect();
        if !large_files.is_empty() {
            issues.push(format!(
                "{} file(s) larger than max_file_size_mb = {}",
                large_files.len(),
                self.config.max_file_size_mb
            ));
            raise(HealthStatus::Warning, &mut status);
        }
        let count = |ext: &str| data.iter().filter(|d| d.format.as_deref() == Some(ext)).count();
        let report = HealthReport {
            timestamp: Utc::now(),
            overall_status: status,
            issues,
            disk_usage: disk,
            write_permission,
            series: report.series_checked,
            total_files: data.len(),
            csv_files: count("csv"),
            parquet_files: count("parquet"),
            backup_status: if self.manager.backup_enabled() { "enabled" } else { "disabled" }.to_string(),
            max_file_size_mb: self.config.max_file_size_mb,
            large_files,
            stale_temp_files,
            consistency_issues,
        };
        tracing::info!(status = ?report.overall_status, issues = report.issues.len(), "health checked");
        Ok(report)
    }
}
