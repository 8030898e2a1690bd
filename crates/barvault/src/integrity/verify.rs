//! `verify`: every copy examined, the copies of each series compared, and the rest of the
//! namespace (backups, temp files, locks, foreign entries) checked; no data or metadata
//! is written (a second look under a series lock may create that series' lock file).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use barvault_domain::{Bars, SeriesKey};
use barvault_ports::{BarStore, EntryKind, OpContext, StorageError, Survey, UnreadableRecord};
use tracing::Instrument;

use super::examine::{Examined, examine};
use super::{CopyState, Records, Scope, VerifyReport, concurrently, issue};
use super::{Issue, IssueKind};
use crate::dual::NoLock;
use crate::vault::Vault;

/// Copies examined at once: each runs on the store's blocking pool.
fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

impl Vault {
    /// Checks every file in `scope` against its metadata and the other copy; writes no data
    /// or metadata (a series looked at again under its lock may get its lock file created).
    /// With `deep`, every file is parsed and copies are compared row by row even when their
    /// checksums match, and backups are checked too.
    pub async fn verify(&self, scope: Scope, deep: bool) -> Result<VerifyReport, StorageError> {
        let ctx = OpContext::new();
        let span = tracing::info_span!("verify", deep, correlation_id = %ctx.correlation_id());
        self.verify_with(&scope, deep, &ctx).instrument(span).await
    }

    pub(crate) async fn verify_with(
        &self,
        scope: &Scope,
        deep: bool,
        ctx: &OpContext,
    ) -> Result<VerifyReport, StorageError> {
        let survey = self.housekeeping.survey(ctx).await?;
        let (records, bad_records) = self.records(ctx).await?;
        let copies = self.manager.copies();
        let formats: BTreeSet<String> = copies.iter().map(|c| c.name().to_string()).collect();
        let mut report = VerifyReport::default();

        let mut all_series: BTreeSet<SeriesKey> = records.keys().map(|(s, _)| s.clone()).collect();
        for d in survey.of(EntryKind::Data) {
            let (Some(series), Some(format)) = (&d.series, &d.format) else { continue };
            if formats.contains(format) {
                all_series.insert(series.clone());
            } else if scope.covers(series) {
                let detail = format!("a .{format} file, a format this store does not keep");
                report.issues.push(issue(IssueKind::OrphanedFile, Some(series), &d.location, detail));
            }
        }
        let series: Vec<SeriesKey> = all_series.into_iter().filter(|s| scope.covers(s)).collect();
        report.series_checked = series.len();

        let jobs: Vec<(SeriesKey, Arc<dyn BarStore>)> =
            series.iter().flat_map(|s| copies.iter().map(move |c| (s.clone(), Arc::clone(c)))).collect();
        let base = self.base().to_path_buf();
        let lock_free = self.manager.settings().lock_free;
        let examined = concurrently(&jobs, parallelism(), |(s, store)| {
            let record = records.get(&(s.clone(), store.name().to_string()));
            let base = &base;
            async move { examine(store.as_ref(), base, s, record, deep, lock_free, ctx).await }
        })
        .await;
        let mut states: BTreeMap<SeriesKey, Vec<(String, Examined)>> = BTreeMap::new();
        for ((s, store), result) in jobs.iter().zip(examined) {
            let mut found = result?;
            if !matches!(found.state, CopyState::Missing) {
                report.files_checked += 1;
                report.bytes_checked += found.bytes;
            }
            report.issues.append(&mut found.issues);
            states.entry(s.clone()).or_default().push((store.name().to_string(), found));
        }
        if copies.len() > 1 {
            for s in &series {
                let found = states.get(s).map(Vec::as_slice).unwrap_or_default();
                let (issues, lag) = compare_copies(s, found, &records);
                report.issues.extend(issues);
                report.notes.extend(lag);
            }
        }
        if !self.manager.settings().lock_free {
            self.settle(&series, deep, &mut report, ctx).await;
        }
        report.issues.extend(bad_records.iter().map(bad_metadata));
        report.issues.extend(namespace_issues(&survey, scope, &records));
        if !self.manager.settings().lock_free {
            self.settle_locks(&survey, &mut report, ctx).await;
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
}

/// Issues of a series' copies that a write in progress also shows to a look without the
/// lock: a copy renamed into place before its record (checksum mismatch, a record longer
/// or shorter than its file), records of generations n and n+1, a copy not yet created.
fn settles(kind: IssueKind) -> bool {
    matches!(
        kind,
        IssueKind::ChecksumMismatch
            | IssueKind::Unparsable
            | IssueKind::MissingFile
            | IssueKind::MissingMetadata
            | IssueKind::MissingCopy
            | IssueKind::Inconsistent
            | IssueKind::BadFingerprint
            | IssueKind::BadBlock
            | IssueKind::BadBackup
            | IssueKind::UncommittedTail
    )
}

impl Vault {
    /// Looks again, under its lock, at every series whose copies the first look found
    /// damaged, and reports what that look finds instead: verify never reports damage
    /// that is not there (a write in progress between its commit and its record), and a
    /// series that is damaged stays reported. A series whose lock cannot be had (a writer
    /// holding it past the timeout, a store this process may not lock) keeps the first
    /// look's findings.
    async fn settle(&self, series: &[SeriesKey], deep: bool, report: &mut VerifyReport, ctx: &OpContext) {
        let flagged: BTreeSet<String> =
            report.issues.iter().filter(|i| settles(i.kind)).filter_map(|i| i.series.clone()).collect();
        for s in series.iter().filter(|s| flagged.contains(&s.to_string())) {
            let name = s.to_string();
            match self.manager.with_series_lock(s, ctx, || self.examine_series(s, deep, ctx)).await {
                Ok(Ok((issues, note))) => {
                    let mine = |i: &Issue| i.series.as_deref() == Some(name.as_str());
                    report.issues.retain(|i| !(mine(i) && settles(i.kind)));
                    report.notes.retain(|i| !mine(i));
                    report.issues.extend(issues);
                    report.notes.extend(note);
                }
                Ok(Err(e)) | Err(NoLock(e)) => {
                    tracing::warn!(series = %name, error = %e, "could not look again under the series lock; reporting the first look")
                }
            }
        }
    }

    /// A lock file of a series without data is also what the first write of a new series
    /// shows before its data lands: each one reported is looked at again under the series
    /// lock, and dropped when the series now has data or a record.
    async fn settle_locks(&self, survey: &Survey, report: &mut VerifyReport, ctx: &OpContext) {
        let stale: Vec<(std::path::PathBuf, SeriesKey)> = report
            .issues
            .iter()
            .filter(|i| i.kind == IssueKind::StaleLock)
            .filter_map(|i| {
                let entry = survey.of(EntryKind::Lock).find(|e| e.location == i.path && e.format.is_none())?;
                Some((i.path.clone(), entry.series.clone()?))
            })
            .collect();
        for (path, series) in stale {
            match self.manager.with_series_lock(&series, ctx, || self.manager.has_trace(&series, ctx)).await {
                Ok(Ok(true)) => report.issues.retain(|i| !(i.kind == IssueKind::StaleLock && i.path == path)),
                Ok(Ok(false)) => {}
                Ok(Err(e)) | Err(NoLock(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not look at a lock file again under its lock")
                }
            }
        }
    }

    /// The copies of one series examined and compared against its records read now (the
    /// caller holds its lock): the issues, and the note of a recorded lag.
    async fn examine_series(
        &self,
        series: &SeriesKey,
        deep: bool,
        ctx: &OpContext,
    ) -> Result<(Vec<Issue>, Option<Issue>), StorageError> {
        let records = self.series_records(series, ctx).await?;
        let mut issues = Vec::new();
        let mut found = Vec::new();
        for c in self.manager.copies() {
            let record = records.get(&(series.clone(), c.name().to_string()));
            let mut e =
                examine(c.as_ref(), self.base(), series, record, deep, self.manager.settings().lock_free, ctx).await?;
            issues.append(&mut e.issues);
            found.push((c.name().to_string(), e));
        }
        let mut note = None;
        if found.len() > 1 {
            let (more, lag) = compare_copies(series, &found, &records);
            issues.extend(more);
            note = lag;
        }
        Ok((issues, note))
    }
}

fn bad_metadata(b: &UnreadableRecord) -> Issue {
    issue(IssueKind::BadMetadata, b.series.as_ref(), &b.location, b.reason.clone())
}

/// What is wrong between the copies of one series: a copy missing without a record,
/// records of different generations (unless the primary's record states the secondary's
/// lag, which is then the note returned), or copies of one generation holding different bars.
fn compare_copies(s: &SeriesKey, found: &[(String, Examined)], records: &Records) -> (Vec<Issue>, Option<Issue>) {
    let mut issues = Vec::new();
    let present = found.iter().filter(|(_, e)| !matches!(e.state, CopyState::Missing)).count();
    for (format, e) in found {
        let recorded = records.contains_key(&(s.clone(), format.clone()));
        if matches!(e.state, CopyState::Missing) && !recorded && present > 0 {
            issues.push(issue(IssueKind::MissingCopy, Some(s), &e.path, format!("no {format} copy")));
        }
    }
    let Some((_, primary)) = found.first() else { return (issues, None) };
    let gens: BTreeSet<u64> = found
        .iter()
        .filter_map(|(format, _)| records.get(&(s.clone(), format.clone())).map(|r| r.generation))
        .collect();
    if gens.len() > 1 {
        if let Some(note) = recorded_lag(s, found, records) {
            return (issues, Some(note));
        }
        let detail = format!("copies record different generations {gens:?}: the last write reached only one format");
        issues.push(issue(IssueKind::Inconsistent, Some(s), &primary.path, detail));
        return (issues, None);
    }
    let bars: Vec<&Bars> = found
        .iter()
        .filter_map(|(_, e)| match &e.state {
            CopyState::Good(b) | CopyState::Parses(b) => Some(b),
            _ => None,
        })
        .collect();
    if bars.len() > 1 && bars.windows(2).any(|w| w[0] != w[1]) {
        issues.push(issue(
            IssueKind::Inconsistent,
            Some(s),
            &primary.path,
            "the CSV and Parquet copies hold different bars",
        ));
    }
    (issues, None)
}

/// The note for a secondary copy that lags exactly as the primary's record states (see
/// [`barvault_ports::Appended`]): the secondary's record is of the stated base generation
/// and row count, and — when both copies were decoded (`--deep`, or a copy that was read) —
/// its bars are the primary's first rows. `None` for any other difference of generations.
fn recorded_lag(s: &SeriesKey, found: &[(String, Examined)], records: &Records) -> Option<Issue> {
    let [(pformat, primary), (sformat, secondary)] = found else { return None };
    let p = records.get(&(s.clone(), pformat.clone()))?;
    let q = records.get(&(s.clone(), sformat.clone()))?;
    let lag = p.appended?;
    if lag.base_generation != q.generation || p.row_count.checked_sub(lag.rows) != Some(q.row_count) {
        return None;
    }
    let sound = |e: &Examined| matches!(e.state, CopyState::Good(_) | CopyState::Proven);
    if !sound(primary) || !sound(secondary) {
        return None;
    }
    if let (CopyState::Good(a), CopyState::Good(b)) = (&primary.state, &secondary.state)
        && (b.len() > a.len() || a.slice_rows(0, b.len()) != *b)
    {
        return None;
    }
    let detail = format!(
        "the {sformat} copy lags by {} rows appended in place since generation {} (its record's): they are held and proven in the {pformat} copy only until the next write of both",
        lag.rows, lag.base_generation
    );
    Some(issue(IssueKind::Lagging, Some(s), &secondary.path, detail))
}

/// Backups of files that no longer exist, stale temp files, lock files of series without
/// data and foreign entries, within `scope`.
fn namespace_issues(survey: &Survey, scope: &Scope, records: &Records) -> Vec<Issue> {
    let in_scope = |s: Option<&SeriesKey>| match scope {
        Scope::All => true,
        Scope::Series(_) => s.is_some_and(|s| scope.covers(s)),
    };
    let data_series: BTreeSet<&SeriesKey> = survey.of(EntryKind::Data).filter_map(|d| d.series.as_ref()).collect();
    let recorded: BTreeSet<&SeriesKey> = records.keys().map(|(s, _)| s).collect();
    let mut issues = Vec::new();
    for e in &survey.entries {
        let series = e.series.as_ref();
        if !in_scope(series) {
            continue;
        }
        let found = match e.kind {
            EntryKind::Backup if series.is_some_and(|s| !data_series.contains(s)) => {
                Some((IssueKind::OrphanedFile, "backup of a file that no longer exists".to_string()))
            }
            EntryKind::Leftover if e.stale => Some((IssueKind::StaleTemp, e.detail.clone())),
            EntryKind::Lock if series.is_some_and(|s| !data_series.contains(s) && !recorded.contains(s)) => {
                Some((IssueKind::StaleLock, "lock file of a series with no data".to_string()))
            }
            EntryKind::Foreign => Some((IssueKind::ForeignEntry, e.detail.clone())),
            _ => None,
        };
        if let Some((kind, detail)) = found {
            issues.push(issue(kind, series, &e.location, detail));
        }
    }
    issues
}
