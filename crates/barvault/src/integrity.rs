//! The seed's StorageRecoveryManager: `verify` proves every stored file against its
//! checksummed record without changing anything, and `recover` rebuilds damaged copies from
//! the best evidence left — a sound copy in the other format, then a sound `.backup`, then a
//! copy that parses — never replacing a good file with a worse one.
//!
//! Verification trusts a matching MD5 as proof of content (the bytes are exactly what was
//! encoded and parsed when written), so the common case hashes each file once; files whose
//! checksum disagrees, or that have no record, are parsed to say how bad they are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use barvault_domain::{Bars, SeriesKey};
use barvault_fs::{Layout, Scan};
use barvault_ports::{DateRange, FileMetadata, StorageError};
use chrono::Utc;
use serde::Serialize;

use crate::vault::{FileCopy, Vault};

/// Temp files older than this are stale even if their writer's pid is alive (pids are reused).
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Metadata records by series and format.
type Records = BTreeMap<(SeriesKey, String), FileMetadata>;

/// Which series an integrity operation covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Series(SeriesKey),
}

impl Scope {
    fn covers(&self, s: &SeriesKey) -> bool {
        match self {
            Scope::All => true,
            Scope::Series(k) => k == s,
        }
    }
}

/// What is wrong with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// The file's MD5 differs from its metadata record.
    ChecksumMismatch,
    /// The file does not parse.
    Unparsable,
    /// A metadata record names a file that does not exist.
    MissingFile,
    /// A data file has no metadata record.
    MissingMetadata,
    /// Backup (Parquet) copies are enabled but this series has none.
    MissingCopy,
    /// The copies of a series hold different generations or different bars.
    Inconsistent,
    /// A metadata record cannot be read.
    BadMetadata,
    /// A file in the tree that belongs to no series this store keeps.
    OrphanedFile,
    /// A `.backup` whose checksum differs from the one recorded.
    BadBackup,
    /// A record whose fingerprint (CRC-32, MD5 states) does not describe its file, although
    /// the MD5 does: the next write would trust wrong states. `recover` re-records the file.
    BadFingerprint,
    /// A temp file left by an interrupted write.
    StaleTemp,
    /// A lock file of a series that has no data.
    StaleLock,
}

impl IssueKind {
    /// The kind's name, as `verify`, `health` and their JSON output spell it (`missing_file`).
    pub const fn as_str(self) -> &'static str {
        match self {
            IssueKind::ChecksumMismatch => "checksum_mismatch",
            IssueKind::Unparsable => "unparsable",
            IssueKind::MissingFile => "missing_file",
            IssueKind::MissingMetadata => "missing_metadata",
            IssueKind::MissingCopy => "missing_copy",
            IssueKind::Inconsistent => "inconsistent",
            IssueKind::BadMetadata => "bad_metadata",
            IssueKind::OrphanedFile => "orphaned_file",
            IssueKind::BadBackup => "bad_backup",
            IssueKind::BadFingerprint => "bad_fingerprint",
            IssueKind::StaleTemp => "stale_temp",
            IssueKind::StaleLock => "stale_lock",
        }
    }
}

impl std::fmt::Display for IssueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found by `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub kind: IssueKind,
    /// `kind:SYMBOL@period`, when the issue belongs to a series.
    pub series: Option<String>,
    pub path: PathBuf,
    pub detail: String,
}

/// The result of `verify`: what was checked and every issue found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub series_checked: usize,
    pub files_checked: usize,
    pub bytes_checked: u64,
    pub issues: Vec<Issue>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }
}

/// One repair made by `recover`.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryAction {
    pub series: Option<String>,
    pub path: PathBuf,
    pub action: String,
}

/// The result of `recover`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    pub actions: Vec<RecoveryAction>,
    /// Series that could not be repaired, with the reason.
    pub unrecoverable: Vec<(String, String)>,
}

/// How one copy of a series looked.
#[derive(Debug)]
enum CopyState {
    Missing,
    /// Checksum matches the record; not parsed (the fast path of a shallow verify).
    Proven,
    /// Checksum matches the record, and parsed.
    Good(Bars),
    /// Parses, but no record or a different checksum.
    Parses(Bars),
    /// Does not parse.
    Broken,
}

fn issue(kind: IssueKind, series: Option<&SeriesKey>, path: &Path, detail: impl Into<String>) -> Issue {
    Issue { kind, series: series.map(ToString::to_string), path: path.to_path_buf(), detail: detail.into() }
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

impl Vault {
    fn scan_tree(&self) -> Result<Scan, StorageError> {
        Layout::new(self.base().to_path_buf(), "csv")?.scan(self.fs.as_ref())
    }

    fn records(&self) -> Result<(Records, Vec<barvault_metadata::BadRecord>), StorageError> {
        let (good, bad) = self.metadata.scan()?;
        let mut map = BTreeMap::new();
        let mut bad = bad;
        for r in good {
            match r.try_series() {
                Ok(s) => {
                    map.insert((s, r.format.clone()), r);
                }
                Err(e) => {
                    bad.push(barvault_metadata::BadRecord { path: PathBuf::from(&r.file_path), reason: e.to_string() })
                }
            }
        }
        Ok((map, bad))
    }

    /// Checks every file in `scope` against its metadata and the other copy; changes nothing.
    /// With `deep`, every file is parsed and copies are compared row by row even when their
    /// checksums match, and backups are checked too.
    pub async fn verify(&self, scope: Scope, deep: bool) -> Result<VerifyReport, StorageError> {
        let this = self.clone();
        let span = tracing::info_span!("verify", deep);
        tokio::task::spawn_blocking(move || span.in_scope(|| this.verify_blocking(&scope, deep))).await.map_err(
            |e| StorageError::io(barvault_ports::IoStep::Read, "verify", std::io::Error::other(e.to_string())),
        )?
    }

    fn verify_blocking(&self, scope: &Scope, deep: bool) -> Result<VerifyReport, StorageError> {
        let scan = self.scan_tree()?;
        let (records, bad_records) = self.records()?;
        let formats: BTreeSet<String> = self.copies.iter().map(|c| c.format().to_string()).collect();
        let mut report = VerifyReport::default();
        let mut all_series: BTreeSet<SeriesKey> = records.keys().map(|(s, _)| s.clone()).collect();
        for d in &scan.data {
            if formats.contains(&d.ext) {
                all_series.insert(d.series.clone());
            } else if scope.covers(&d.series) {
                report.issues.push(issue(
                    IssueKind::OrphanedFile,
                    Some(&d.series),
                    &d.path,
                    format!("a .{} file, a format this store does not keep", d.ext),
                ));
            }
        }
        let series: Vec<SeriesKey> = all_series.into_iter().filter(|s| scope.covers(s)).collect();
        report.series_checked = series.len();

        // Hash every file on all cores: the checksum pass is the bulk of the work.
        let jobs: Vec<(SeriesKey, Arc<dyn FileCopy>)> =
            series.iter().flat_map(|s| self.copies.iter().map(move |c| (s.clone(), Arc::clone(c)))).collect();
        let results = parallel_map(&jobs, |(s, copy)| {
            let rec = records.get(&(s.clone(), copy.format().to_string()));
            examine(copy.as_ref(), s, rec, deep)
        });
        let mut states: BTreeMap<SeriesKey, Vec<(String, CopyState)>> = BTreeMap::new();
        for ((s, copy), result) in jobs.iter().zip(results) {
            let (state, bytes, mut found) = result?;
            if !matches!(state, CopyState::Missing) {
                report.files_checked += 1;
                report.bytes_checked += bytes;
            }
            report.issues.append(&mut found);
            states.entry(s.clone()).or_default().push((copy.format().to_string(), state));
        }

        for s in &series {
            let copies = states.get(s).map(Vec::as_slice).unwrap_or_default();
            let present: Vec<&(String, CopyState)> =
                copies.iter().filter(|(_, st)| !matches!(st, CopyState::Missing)).collect();
            if self.copies.len() > 1 {
                for (format, st) in copies {
                    let recorded = records.contains_key(&(s.clone(), format.clone()));
                    if matches!(st, CopyState::Missing) && !recorded && !present.is_empty() {
                        let copy = self.copies.iter().find(|c| c.format() == format);
                        let path = copy.map(|c| c.path_of(s)).unwrap_or_default();
                        report.issues.push(issue(IssueKind::MissingCopy, Some(s), &path, format!("no {format} copy")));
                    }
                }
                let gens: BTreeSet<u64> = self
                    .copies
                    .iter()
                    .filter_map(|c| records.get(&(s.clone(), c.format().to_string())).map(|r| r.generation))
                    .collect();
                let path = self.copies[0].path_of(s);
                if gens.len() > 1 {
                    report.issues.push(issue(
                        IssueKind::Inconsistent,
                        Some(s),
                        &path,
                        format!("copies record different generations {gens:?}: the last write reached only one format"),
                    ));
                } else {
                    let bars: Vec<&Bars> = copies
                        .iter()
                        .filter_map(|(_, st)| match st {
                            CopyState::Good(b) | CopyState::Parses(b) => Some(b),
                            _ => None,
                        })
                        .collect();
                    if bars.len() > 1 && bars.windows(2).any(|w| w[0] != w[1]) {
                        report.issues.push(issue(
                            IssueKind::Inconsistent,
                            Some(s),
                            &path,
                            "the CSV and Parquet copies hold different bars",
                        ));
                    }
                }
            }
        }

        for b in bad_records {
            report.issues.push(issue(IssueKind::BadMetadata, None, &b.path, b.reason));
        }
        let data_series: BTreeSet<&SeriesKey> = scan.data.iter().map(|d| &d.series).collect();
        for b in &scan.backups {
            if scope.covers(&b.series) && !data_series.contains(&b.series) {
                report.issues.push(issue(
                    IssueKind::OrphanedFile,
                    Some(&b.series),
                    &b.path,
                    "backup of a file that no longer exists",
                ));
            }
        }
        for t in &scan.temps {
            // A series' own verify reports its temp files; `--all` every one.
            let owner = self.temp_series(t);
            if !(*scope == Scope::All || owner.as_ref().is_some_and(|s| scope.covers(s))) {
                continue;
            }
            let dead = t.pid.is_none_or(|p| !pid_alive(p));
            if dead || t.age > STALE_TEMP_AGE {
                report.issues.push(issue(
                    IssueKind::StaleTemp,
                    owner.as_ref(),
                    &t.path,
                    format!("temp file of an interrupted write of {} ({}s old)", t.target_name, t.age.as_secs()),
                ));
            }
        }
        let recorded: BTreeSet<&SeriesKey> = records.keys().map(|(s, _)| s).collect();
        for l in &scan.locks {
            if scope.covers(&l.series) && !data_series.contains(&l.series) && !recorded.contains(&l.series) {
                report.issues.push(issue(
                    IssueKind::StaleLock,
                    Some(&l.series),
                    &l.path,
                    "lock file of a series with no data",
                ));
            }
        }
        report.issues.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
        tracing::info!(
            series = report.series_checked,
            files = report.files_checked,
            bytes = report.bytes_checked,
            issues = report.issues.len(),
            "verified"
        );
        Ok(report)
    }

    /// Repairs every series in `scope` and removes stale temp and lock files; reports what it did.
    pub async fn recover(&self, scope: Scope) -> Result<RecoveryReport, StorageError> {
        let this = self.clone();
        let span = tracing::info_span!("recover");
        tokio::task::spawn_blocking(move || span.in_scope(|| this.recover_blocking(&scope))).await.map_err(|e| {
            StorageError::io(barvault_ports::IoStep::Read, "recover", std::io::Error::other(e.to_string()))
        })?
    }

    fn recover_blocking(&self, scope: &Scope) -> Result<RecoveryReport, StorageError> {
        let mut report = RecoveryReport::default();
        let (_, bad_records) = self.records()?;
        for b in bad_records {
            // An unreadable record says nothing; recovery below writes a fresh one.
            barvault_fs::remove_durable(self.fs.as_ref(), &b.path)?;
            report.actions.push(RecoveryAction {
                series: None,
                path: b.path.clone(),
                action: format!("removed unreadable metadata record ({})", b.reason),
            });
        }
        let verify = self.verify_blocking(scope, false)?;
        let mut damaged: BTreeSet<String> = BTreeSet::new();
        for i in &verify.issues {
            match i.kind {
                IssueKind::StaleTemp => {
                    barvault_fs::remove_durable(self.fs.as_ref(), &i.path)?;
                    report.actions.push(RecoveryAction {
                        series: None,
                        path: i.path.clone(),
                        action: "removed stale temp file".into(),
                    });
                }
                IssueKind::StaleLock | IssueKind::OrphanedFile | IssueKind::BadMetadata => {}
                _ => {
                    if let Some(s) = &i.series {
                        damaged.insert(s.clone());
                    }
                }
            }
        }
        let (records, _) = self.records()?;
        let mut by_name: BTreeMap<String, SeriesKey> = BTreeMap::new();
        for (s, _) in records.keys() {
            by_name.insert(s.to_string(), s.clone());
        }
        for d in &self.scan_tree()?.data {
            by_name.insert(d.series.to_string(), d.series.clone());
        }
        for name in damaged {
            let Some(series) = by_name.get(&name) else { continue };
            let guard = self.series_locks.lock_blocking(series, self.config.lock_timeout())?;
            match self.recover_series(series, &records) {
                Ok(mut actions) => report.actions.append(&mut actions),
                Err(reason) => report.unrecoverable.push((name.clone(), reason)),
            }
            drop(guard);
        }
        for i in verify.issues.iter().filter(|i| i.kind == IssueKind::StaleLock) {
            if let Some(series) = i.series.as_ref().and_then(|n| by_name.get(n)) {
                if self.series_locks.remove_stale_lock_blocking(series, self.config.lock_timeout())? {
                    report.actions.push(RecoveryAction {
                        series: Some(series.to_string()),
                        path: i.path.clone(),
                        action: "removed stale lock file".into(),
                    });
                }
            } else if barvault_fs::remove_durable(self.fs.as_ref(), &i.path)? {
                report.actions.push(RecoveryAction {
                    series: None,
                    path: i.path.clone(),
                    action: "removed stale lock file".into(),
                });
            }
        }
        tracing::info!(actions = report.actions.len(), unrecoverable = report.unrecoverable.len(), "recovered");
        Ok(report)
    }

    /// Rebuilds the copies of one series (the caller holds its lock). Errors are reasons.
    fn recover_series(&self, series: &SeriesKey, records: &Records) -> Result<Vec<RecoveryAction>, String> {
        let rec = |c: &Arc<dyn FileCopy>| records.get(&(series.clone(), c.format().to_string()));
        let examined: Vec<(CopyState, bool)> = self
            .copies
            .iter()
            .map(|c| {
                examine(c.as_ref(), series, rec(c), true)
                    .map(|(st, _, issues)| (st, issues.iter().any(|i| i.kind == IssueKind::BadFingerprint)))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let bad_fingerprints: Vec<bool> = examined.iter().map(|(_, bad)| *bad).collect();
        let states: Vec<CopyState> = examined.into_iter().map(|(st, _)| st).collect();
        let max_gen = self.copies.iter().filter_map(|c| rec(c).map(|r| r.generation)).max().unwrap_or(0);

        // 1. A copy whose checksum matches its record, newest generation first.
        let mut best: Option<(Bars, u64, String)> = None;
        for (c, st) in self.copies.iter().zip(&states) {
            if let CopyState::Good(b) = st {
                let g = rec(c).map_or(0, |r| r.generation);
                if best.as_ref().is_none_or(|(_, bg, _)| g > *bg) {
                    best = Some((b.clone(), g, format!("the {} copy (generation {g})", c.format())));
                }
            }
        }
        // 2. A `.backup` whose checksum matches the one recorded for it (the previous version).
        if best.is_none() {
            for c in &self.copies {
                let Some(r) = rec(c) else { continue };
                let Some(expected) = &r.backup_checksum else { continue };
                let path = c.backup_path_of(series);
                if let Ok(Some((bars, md5))) = c.read_checked(&path)
                    && &md5 == expected
                {
                    best = Some((bars, max_gen + 1, format!("{} (the previous version)", path.display())));
                    break;
                }
            }
        }
        // 3. A copy that parses although its checksum disagrees (e.g. its record was lost).
        if best.is_none() {
            for (c, st) in self.copies.iter().zip(&states) {
                if let CopyState::Parses(b) = st {
                    best = Some((b.clone(), max_gen + 1, format!("the {} copy as it parses", c.format())));
                    break;
                }
            }
        }
        let Some((bars, generation, source)) = best else {
            return Err("no copy, backup or parsable file is left".into());
        };

        let mut actions = Vec::new();
        for ((c, st), bad_fingerprint) in self.copies.iter().zip(&states).zip(&bad_fingerprints) {
            let path = c.path_of(series);
            let r = rec(c);
            let sound = matches!(st, CopyState::Good(b) if *b == bars)
                && r.is_some_and(|r| r.generation == generation)
                && !bad_fingerprint;
            if sound {
                continue;
            }
            let same_content = matches!(st, CopyState::Good(b) | CopyState::Parses(b) if *b == bars);
            // A file re-recorded as it is gets no fingerprint: its next write then proves
            // it by its MD5, as before fingerprints existed.
            let (size, md5, fingerprint, what) = if same_content {
                let md5 = c.checksum(&path).map_err(|e| e.to_string())?.unwrap_or_default();
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                (size, md5, None, format!("re-recorded metadata (content agrees with {source})"))
            } else {
                let keep = matches!(st, CopyState::Good(_));
                let out = c.write(&bars, series, keep).map_err(|e| e.to_string())?;
                (out.size, out.md5_hex, Some(out.fingerprint), format!("rewrote from {source}"))
            };
            let meta = FileMetadata {
                file_path: crate::dual::DualStorageManager::relative_path(series, c.format()),
                instrument_symbol: series.instrument.symbol().clone(),
                instrument_type: series.instrument.kind(),
                period: series.period,
                format: c.format().to_string(),
                row_count: bars.len() as u64,
                columns: bars.column_names(),
                date_range: DateRange {
                    start: bars.first_timestamp().map(barvault_domain::nanos_to_datetime),
                    end: bars.last_timestamp().map(barvault_domain::nanos_to_datetime),
                },
                file_size: size,
                last_updated: Utc::now(),
                checksum: md5,
                generation,
                backup_checksum: backup_checksum_now(c.as_ref(), series, r),
                fingerprint,
            };
            self.record_blocking(&meta).map_err(|e| e.to_string())?;
            tracing::warn!(path = %path.display(), action = %what, "recovered");
            actions.push(RecoveryAction { series: Some(series.to_string()), path, action: what });
        }
        // Copies whose content is already right keep their records; make their generation agree.
        for (c, st) in self.copies.iter().zip(&states) {
            if let (CopyState::Good(b), Some(r)) = (st, rec(c))
                && *b == bars
                && r.generation != generation
                && !actions.iter().any(|a| a.path == c.path_of(series))
            {
                let mut meta = r.clone();
                meta.generation = generation;
                meta.backup_checksum = backup_checksum_now(c.as_ref(), series, Some(r));
                self.record_blocking(&meta).map_err(|e| e.to_string())?;
            }
        }
        Ok(actions)
    }

    fn record_blocking(&self, meta: &FileMetadata) -> Result<(), StorageError> {
        self.metadata.record_blocking(meta)
    }
}

/// The checksum to record for the `.backup` of a copy whose previous record is `r`: a write
/// keeps the file in place as the backup before its rename, so a backup holding exactly the
/// recorded file (`r.checksum`) is that write's backup, also when the write was killed before
/// recording it; otherwise the recorded backup checksum stands.
fn backup_checksum_now(copy: &dyn FileCopy, series: &SeriesKey, r: Option<&FileMetadata>) -> Option<String> {
    let r = r?;
    let on_disk = copy.checksum(&copy.backup_path_of(series)).ok().flatten();
    if !r.checksum.is_empty() && on_disk.as_deref() == Some(r.checksum.as_str()) {
        Some(r.checksum.clone())
    } else {
        r.backup_checksum.clone()
    }
}

/// Looks at one copy of a series: its state, the bytes hashed, and the issues found.
fn examine(
    copy: &dyn FileCopy,
    series: &SeriesKey,
    record: Option<&FileMetadata>,
    deep: bool,
) -> Result<(CopyState, u64, Vec<Issue>), StorageError> {
    let path = copy.path_of(series);
    let mut issues = Vec::new();
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(r) = record {
                issues.push(issue(
                    IssueKind::MissingFile,
                    Some(series),
                    &path,
                    format!("recorded (generation {}) but missing", r.generation),
                ));
            }
            return Ok((CopyState::Missing, 0, issues));
        }
        Err(e) => return Err(StorageError::io(barvault_ports::IoStep::Stat, &path, e)),
    };
    let expected = record.map(|r| r.checksum.as_str()).filter(|c| !c.is_empty());
    let fingerprint = record.and_then(|r| r.fingerprint.as_ref());
    let bad_fingerprint = |issues: &mut Vec<Issue>| {
        issues.push(issue(
            IssueKind::BadFingerprint,
            Some(series),
            &path,
            "the record's fingerprint (CRC-32, MD5 states) does not describe the file, although its MD5 does",
        ))
    };
    if let (Some(expected), false) = (expected, deep) {
        // Fast path: a matching checksum proves the content; parse only on disagreement.
        // The fingerprint, if any, is checked in the same pass.
        let (sum, agrees) = match fingerprint {
            Some(fp) => copy.checksum_checking(&path, fp)?.map_or((None, true), |(sum, ok)| (Some(sum), ok)),
            None => (copy.checksum(&path)?, true),
        };
        if sum.as_deref() == Some(expected) {
            if !agrees {
                bad_fingerprint(&mut issues);
            }
            return Ok((CopyState::Proven, size, issues));
        }
    }
    let state = match copy.read_checked(&path) {
        Ok(Some((bars, md5))) => match expected {
            Some(e) if e == md5 => CopyState::Good(bars),
            Some(e) => {
                issues.push(issue(
                    IssueKind::ChecksumMismatch,
                    Some(series),
                    &path,
                    format!("file has MD5 {md5}, metadata records {e}"),
                ));
                CopyState::Parses(bars)
            }
            None => {
                if record.is_none() {
                    issues.push(issue(IssueKind::MissingMetadata, Some(series), &path, "no metadata record"));
                }
                CopyState::Parses(bars)
            }
        },
        Ok(None) => CopyState::Missing,
        Err(e) if e.is_data_error() => {
            let md5 = copy.checksum(&path)?.unwrap_or_default();
            if let Some(e2) = expected
                && e2 != md5
            {
                issues.push(issue(
                    IssueKind::ChecksumMismatch,
                    Some(series),
                    &path,
                    format!("file has MD5 {md5}, metadata records {e2}"),
                ));
            }
            issues.push(issue(IssueKind::Unparsable, Some(series), &path, e.to_string()));
            CopyState::Broken
        }
        Err(e) => return Err(e),
    };
    if deep
        && let (CopyState::Good(_), Some(fp)) = (&state, fingerprint)
        && let Some((_, false)) = copy.checksum_checking(&path, fp)?
    {
        bad_fingerprint(&mut issues);
    }
    if deep && let (Some(r), CopyState::Good(b) | CopyState::Parses(b)) = (record, &state) {
        if r.row_count != b.len() as u64 {
            issues.push(issue(
                IssueKind::ChecksumMismatch,
                Some(series),
                &path,
                format!("{} rows, metadata records {}", b.len(), r.row_count),
            ));
        }
        let backup = copy.backup_path_of(series);
        if let Some(expected) = &r.backup_checksum
            && let Ok(Some(md5)) = copy.checksum(&backup)
            && &md5 != expected
            // A backup holding the recorded file itself is what a write interrupted between
            // keeping its backup and its rename leaves: a sound copy, not a damaged one.
            && md5 != r.checksum
        {
            issues.push(issue(
                IssueKind::BadBackup,
                Some(series),
                &backup,
                format!("backup has MD5 {md5}, metadata records {expected}"),
            ));
        }
    }
    Ok((state, size, issues))
}

/// Runs `f` over `items` on up to `available_parallelism` threads, keeping order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|c| scope.spawn(|| c.iter().map(&f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

#[cfg(test)]
mod kind_names {
    use super::IssueKind;

    /// `health` and `verify` print kinds with `as_str`, `--json` with serde: one vocabulary.
    #[test]
    fn kind_names_are_the_json_names() {
        use IssueKind::*;
        let all = [
            ChecksumMismatch,
            Unparsable,
            MissingFile,
            MissingMetadata,
            MissingCopy,
            Inconsistent,
            BadMetadata,
            OrphanedFile,
            BadBackup,
            BadFingerprint,
            StaleTemp,
            StaleLock,
        ];
        for kind in all {
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::Value::from(kind.as_str()));
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }
}
