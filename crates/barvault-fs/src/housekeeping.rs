//! The [`Housekeeping`] port on a directory tree: what the layout holds besides current
//! versions (backups, temp files of interrupted writes, lock files, foreign entries), the
//! space left, and a write probe — every call through the [`Fs`] seam.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use barvault_ports::{Capacity, Entry, EntryKind, Housekeeping, IoStep, OpContext, StorageError, Survey};
use chrono::{DateTime, Utc};

use crate::atomic::remove_durable;
use crate::fs::Fs;
use crate::layout::{Layout, Scan, TempFile};
use crate::lock::FileLocks;
use crate::store::off_executor;

/// Temp files older than this are stale even if their writer's pid is alive (pids are reused).
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Housekeeping of the file store under one base directory.
#[derive(Debug, Clone)]
pub struct FsHousekeeping {
    base: PathBuf,
    fs: Arc<dyn Fs>,
    locks: FileLocks,
    lock_timeout: Duration,
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

fn modified(t: Option<SystemTime>) -> Option<DateTime<Utc>> {
    t.map(DateTime::<Utc>::from)
}

/// A temp file whose writer is gone (or that is older than any write takes).
fn stale(t: &TempFile) -> bool {
    t.pid.is_none_or(|p| p != std::process::id() && !pid_alive(p)) || t.age > STALE_TEMP_AGE
}

impl FsHousekeeping {
    /// Housekeeping of the store under `base`; lock files are removed only while held,
    /// waiting at most `lock_timeout`.
    pub fn new(base: impl Into<PathBuf>, fs: Arc<dyn Fs>, lock_timeout: Duration) -> Self {
        let base = base.into();
        let locks = FileLocks::new(Arc::clone(&fs), base.clone());
        Self { base, fs, locks, lock_timeout }
    }

    /// The scan of the layout, as the port's entries.
    pub fn survey_blocking(&self) -> Result<Survey, StorageError> {
        let scan = Layout::new(self.base.clone(), "csv")?.scan(self.fs.as_ref())?;
        Ok(survey_of(scan))
    }

    /// [`Housekeeping::discard`] on the calling thread.
    pub fn discard_blocking(&self, entry: &Entry) -> Result<bool, StorageError> {
        match entry.kind {
            EntryKind::Leftover | EntryKind::Backup => remove_durable(self.fs.as_ref(), &entry.location),
            EntryKind::Lock => match &entry.series {
                Some(series) => self.locks.remove_lock_file(series, &entry.location, self.lock_timeout),
                None => {
                    Err(StorageError::invalid(format!("{}: a lock entry without its series", entry.location.display())))
                }
            },
            EntryKind::Data | EntryKind::Foreign => Err(StorageError::invalid(format!(
                "{}: housekeeping removes leftovers, backups and locks only, not {:?} entries",
                entry.location.display(),
                entry.kind
            ))),
        }
    }

    fn probe_blocking(&self) -> Result<(), StorageError> {
        crate::atomic::create_dir_durable(self.fs.as_ref(), &self.base)?;
        let probe = self.base.join(format!(".barvault-health-probe.{}", std::process::id()));
        let written = (|| {
            let mut f = self.fs.create_new(&probe).map_err(|e| StorageError::io(IoStep::CreateTemp, &probe, e))?;
            std::io::Write::write_all(&mut f, b"probe").map_err(|e| StorageError::io(IoStep::WriteTemp, &probe, e))?;
            f.sync_all().map_err(|e| StorageError::io(IoStep::FsyncTemp, &probe, e))
        })();
        let removed = self.fs.remove_file(&probe);
        written?;
        removed.map_err(|e| StorageError::io(IoStep::Remove, &probe, e))
    }
}

/// The port's view of a layout scan, sorted by location.
fn survey_of(scan: Scan) -> Survey {
    let mut entries = Vec::new();
    for (kind, files) in [(EntryKind::Data, scan.data), (EntryKind::Backup, scan.backups)] {
        for d in files {
            let detail = match kind {
                EntryKind::Backup => format!("previous version of {}.{}", d.series.instrument.symbol(), d.ext),
                _ => format!("{} copy of {}", d.ext, d.series),
            };
            entries.push(Entry {
                kind,
                location: d.path,
                series: Some(d.series),
                format: Some(d.ext),
                size: d.size,
                modified: modified(d.modified),
                stale: false,
                detail,
            });
        }
    }
    for t in scan.temps {
        let owner = t.pid.map_or_else(|| "unknown writer".to_string(), |p| format!("pid {p}"));
        let detail =
            format!("temp file of an interrupted write of {} ({owner}, {} s old)", t.target_name, t.age.as_secs());
        entries.push(Entry {
            kind: EntryKind::Leftover,
            stale: stale(&t),
            location: t.path,
            series: t.series,
            format: None,
            size: 0,
            modified: SystemTime::now().checked_sub(t.age).map(DateTime::<Utc>::from),
            detail,
        });
    }
    for l in scan.locks {
        let detail = match &l.ext {
            Some(ext) => format!("lock file of {} ({ext} lock of an earlier version)", l.series),
            None => format!("lock file of {}", l.series),
        };
        entries.push(Entry {
            kind: EntryKind::Lock,
            location: l.path,
            series: Some(l.series),
            format: l.ext,
            size: 0,
            modified: None,
            stale: false,
            detail,
        });
    }
    for f in scan.foreign {
        entries.push(Entry {
            kind: EntryKind::Foreign,
            location: f.path,
            series: f.series,
            format: None,
            size: 0,
            modified: None,
            stale: false,
            detail: f.why,
        });
    }
    entries.sort_by(|a, b| a.location.cmp(&b.location));
    Survey { entries }
}

#[async_trait]
impl Housekeeping for FsHousekeeping {
    async fn survey(&self, ctx: &OpContext) -> Result<Survey, StorageError> {
        let this = self.clone();
        off_executor(IoStep::List, self.base.clone(), ctx.span("survey", None), move || this.survey_blocking()).await
    }

    async fn discard(&self, entry: &Entry, ctx: &OpContext) -> Result<bool, StorageError> {
        let (this, entry) = (self.clone(), entry.clone());
        let span = ctx.span("discard", entry.series.as_ref());
        off_executor(IoStep::Remove, entry.location.clone(), span, move || this.discard_blocking(&entry)).await
    }

    async fn capacity(&self, ctx: &OpContext) -> Result<Option<Capacity>, StorageError> {
        let (fs, base) = (Arc::clone(&self.fs), self.base.clone());
        off_executor(IoStep::Stat, self.base.clone(), ctx.span("capacity", None), move || {
            let space = fs.capacity(&base).map_err(|e| StorageError::io(IoStep::Stat, &base, e))?;
            Ok(Some(Capacity { total_bytes: space.total, available_bytes: space.available, free_bytes: space.free }))
        })
        .await
    }

    async fn probe(&self, ctx: &OpContext) -> Result<(), StorageError> {
        let this = self.clone();
        off_executor(IoStep::WriteTemp, self.base.clone(), ctx.span("probe", None), move || this.probe_blocking()).await
    }
}
