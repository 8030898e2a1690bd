//! `recover`: unreadable records and stale leftovers removed, every damaged series rebuilt
//! from the best evidence left, stale locks removed.

use barvault_ports::BarStoreExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use barvault_domain::{Bars, SeriesKey};
use barvault_ports::{
    BackupPolicy, BarStore, Checksum, DateRange, EntryKind, FileMetadata, Fingerprint, LoadOptions, OpContext,
    PutOptions, Revision, Rows, StorageError, Which,
};
use chrono::Utc;
use tracing::Instrument;

use super::examine::{Examined, checksum_of, examine};
use super::{CopyState, IssueKind, Records, RecoveryAction, RecoveryReport, Scope};
use crate::dual::DualStorageManager;
use crate::vault::Vault;

/// The bars a series is rebuilt from, the generation to record, and where they came from.
struct Best {
    bars: Bars,
    generation: u64,
    source: String,
}

fn action(series: Option<&SeriesKey>, path: impl Into<PathBuf>, what: impl Into<String>) -> RecoveryAction {
    RecoveryAction { series: series.map(ToString::to_string), path: path.into(), action: what.into() }
}

impl Vault {
    /// Repairs every series in `scope` and removes stale temp and lock files; reports what it did.
    pub async fn recover(&self, scope: Scope) -> Result<RecoveryReport, StorageError> {
        let ctx = OpContext::new();
        let span = tracing::info_span!("recover", correlation_id = %ctx.correlation_id());
        self.recover_in(&scope, &ctx).instrument(span).await
    }

    async fn recover_in(&self, scope: &Scope, ctx: &OpContext) -> Result<RecoveryReport, StorageError> {
        let mut report = RecoveryReport::default();
        self.forget_unreadable_records(scope, ctx, &mut report).await?;
        let verify = self.verify_with(scope, false, ctx).await?;
        let survey = self.housekeeping.survey(ctx).await?;
        for entry in survey.of(EntryKind::Leftover).filter(|e| e.stale) {
            if verify.issues.iter().any(|i| i.kind == IssueKind::StaleTemp && i.path == entry.location)
                && self.housekeeping.discard(entry, ctx).await?
            {
                report.actions.push(action(entry.series.as_ref(), &entry.location, "removed stale temp file"));
            }
        }
        let damaged: BTreeSet<&String> = verify
            .issues
            .iter()
            .filter(|i| {
                !matches!(
                    i.kind,
                    IssueKind::StaleTemp
                        | IssueKind::StaleLock
                        | IssueKind::OrphanedFile
                        | IssueKind::BadMetadata
                        | IssueKind::ForeignEntry
                )
            })
            .filter_map(|i| i.series.as_ref())
            .collect();
        let (records, _) = self.records(ctx).await?;
        let mut by_name: BTreeMap<String, SeriesKey> =
            records.keys().map(|(s, _)| (s.to_string(), s.clone())).collect();
        for d in survey.of(EntryKind::Data) {
            if let Some(s) = &d.series {
                by_name.insert(s.to_string(), s.clone());
            }
        }
        for name in damaged {
            let Some(series) = by_name.get(name) else { continue };
            // The records as the series' last writer left them: those read before the lock
            // may be older than a write committed since, and rebuilding from them would put
            // an older version back over it. A lock that cannot be had stops the recover.
            let rebuilt = self
                .manager
                .with_series_lock(series, ctx, || async {
                    let records = self.series_records(series, ctx).await?;
                    Ok::<_, StorageError>(self.recover_series(series, &records, ctx).await)
                })
                .await??;
            match rebuilt {
                Ok(mut actions) => report.actions.append(&mut actions),
                Err(reason) => report.unrecoverable.push((name.clone(), reason)),
            }
        }
        // Per-format lock files (`.{SYMBOL}.{ext}.lock`) were taken by earlier versions
        // beside the series lock; nothing takes them any more, so they go (each while held).
        for entry in survey.of(EntryKind::Lock).filter(|e| e.format.is_some()) {
            if entry.series.as_ref().is_some_and(|s| scope.covers(s)) && self.housekeeping.discard(entry, ctx).await? {
                report.actions.push(action(
                    entry.series.as_ref(),
                    &entry.location,
                    "removed a lock file of an earlier version",
                ));
            }
        }
        for i in verify.issues.iter().filter(|i| i.kind == IssueKind::StaleLock) {
            let entry = survey.of(EntryKind::Lock).find(|e| e.location == i.path);
            if let Some(entry) = entry
                && self.housekeeping.discard(entry, ctx).await?
            {
                report.actions.push(action(entry.series.as_ref(), &i.path, "removed stale lock file"));
            }
        }
        tracing::info!(actions = report.actions.len(), unrecoverable = report.unrecoverable.len(), "recovered");
        Ok(report)
    }

    /// An unreadable record says nothing; recovery writes a fresh one.
    async fn forget_unreadable_records(
        &self,
        scope: &Scope,
        ctx: &OpContext,
        report: &mut RecoveryReport,
    ) -> Result<(), StorageError> {
        let (_, bad) = self.records(ctx).await?;
        for b in bad {
            let (Some(series), Some(format)) = (&b.series, &b.format) else {
                let reason =
                    format!("{}: an unreadable record that names no series ({})", b.location.display(), b.reason);
                report.unrecoverable.push((b.location.display().to_string(), reason));
                continue;
            };
            if !scope.covers(series) {
                continue;
            }
            if self.manager.metadata().remove(series, format, ctx).await? {
                let what = format!("removed unreadable metadata record ({})", b.reason);
                report.actions.push(action(Some(series), &b.location, what));
            }
        }
        Ok(())
    }

    /// Rebuilds the copies of one series (the caller holds its lock). Errors are reasons.
    async fn recover_series(
        &self,
        series: &SeriesKey,
        records: &Records,
        ctx: &OpContext,
    ) -> Result<Vec<RecoveryAction>, String> {
        let copies = self.manager.copies();
        let rec = |c: &Arc<dyn BarStore>| records.get(&(series.clone(), c.name().to_string()));
        let mut examined = Vec::new();
        for c in &copies {
            let found = examine(c.as_ref(), self.base(), series, rec(c), true, self.manager.settings().lock_free, ctx)
                .await
                .map_err(|e| e.to_string())?;
            examined.push(found);
        }
        let max_gen = copies.iter().filter_map(|c| rec(c).map(|r| r.generation)).max().unwrap_or(0);
        let Some(best) = self.best_evidence(series, &copies, &examined, records, max_gen, ctx).await else {
            return Err("no copy, backup or parsable file is left".into());
        };
        let mut actions = Vec::new();
        for (c, found) in copies.iter().zip(&examined) {
            let r = rec(c);
            let sound = matches!(&found.state, CopyState::Good(b) if b == &best.bars)
                && r.is_some_and(|r| r.generation == best.generation)
                && !found.bad_fingerprint()
                && !found.uncommitted_tail();
            if sound {
                continue;
            }
            let what = self.rebuild_copy(c.as_ref(), series, found, r, &best, ctx).await.map_err(|e| e.to_string())?;
            tracing::warn!(path = %found.path.display(), action = %what, "recovered");
            actions.push(action(Some(series), &found.path, what));
        }
        // Copies whose content is already right keep their records; make their generation agree.
        for (c, found) in copies.iter().zip(&examined) {
            if let (CopyState::Good(b), Some(r)) = (&found.state, rec(c))
                && b == &best.bars
                && r.generation != best.generation
                && !actions.iter().any(|a| a.path == found.path)
            {
                let mut meta = r.clone();
                meta.generation = best.generation;
                meta.backup_checksum = backup_checksum_now(c.as_ref(), series, Some(r), ctx).await;
                self.manager.metadata().record(&meta, ctx).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(actions)
    }

    /// The best evidence of a series' bars: a copy whose checksum matches its record
    /// (newest generation first), else a `.backup` whose checksum matches the one recorded
    /// for it (the previous version), else a copy that parses although its checksum
    /// disagrees (e.g. its record was lost).
    async fn best_evidence(
        &self,
        series: &SeriesKey,
        copies: &[Arc<dyn BarStore>],
        examined: &[Examined],
        records: &Records,
        max_gen: u64,
        ctx: &OpContext,
    ) -> Option<Best> {
        let rec = |c: &Arc<dyn BarStore>| records.get(&(series.clone(), c.name().to_string()));
        // Without locks the primary is where versions are committed: one that parses but
        // disagrees with its record was written after it (its writer stopped before
        // recording), and putting an older copy back over it would undo a committed write.
        if self.manager.settings().lock_free
            && let (Some(c), Some(CopyState::Parses(b))) = (copies.first(), examined.first().map(|e| &e.state))
        {
            let source = format!("the {} copy (the newest version, written after its record)", c.name());
            return Some(Best { bars: b.clone(), generation: max_gen + 1, source });
        }
        let mut best: Option<Best> = None;
        for (c, found) in copies.iter().zip(examined) {
            if let CopyState::Good(b) = &found.state {
                let g = rec(c).map_or(0, |r| r.generation);
                if best.as_ref().is_none_or(|x| g > x.generation) {
                    let source = format!("the {} copy (generation {g})", c.name());
                    best = Some(Best { bars: b.clone(), generation: g, source });
                }
            }
        }
        if let Some(b) = best {
            return Some(unrecorded_primary_extending(copies, examined, records, series, &b, max_gen).unwrap_or(b));
        }
        for (c, found) in copies.iter().zip(examined) {
            let Some(expected) = rec(c).and_then(|r| r.backup_checksum.as_ref()) else { continue };
            if !c.capabilities().backups {
                continue;
            }
            let options = LoadOptions { rows: Rows::All, which: Which::Backup, checksum: Checksum::Compute };
            if let Ok(Some(loaded)) = c.load(series, &options, ctx).await
                && loaded.checksum.as_ref() == Some(expected)
            {
                let source = format!("{}.backup (the previous version)", found.path.display());
                return Some(Best { bars: loaded.into_bars(), generation: max_gen + 1, source });
            }
        }
        copies.iter().zip(examined).find_map(|(c, found)| match &found.state {
            CopyState::Parses(b) => Some(Best {
                bars: b.clone(),
                generation: max_gen + 1,
                source: format!("the {} copy as it parses", c.name()),
            }),
            _ => None,
        })
    }

    /// Makes one copy hold `best`: re-records a copy whose content already agrees (without a
    /// fingerprint, so its next write proves it by its MD5), rewrites any other.
    async fn rebuild_copy(
        &self,
        store: &dyn BarStore,
        series: &SeriesKey,
        found: &Examined,
        r: Option<&FileMetadata>,
        best: &Best,
        ctx: &OpContext,
    ) -> Result<String, StorageError> {
        // A file with bytes after its committed length is rewritten, which cuts them.
        let same_content = matches!(&found.state, CopyState::Good(b) | CopyState::Parses(b) if *b == best.bars)
            && !found.uncommitted_tail();
        let (size, md5, fingerprint, what): (u64, String, Option<Fingerprint>, String) = if same_content {
            let md5 = checksum_of(store, series, Which::Current, ctx).await?.unwrap_or_default();
            let size = store.file_info(series, ctx).await?.map_or(0, |i| i.size);
            (size, md5, None, format!("re-recorded metadata (content agrees with {})", best.source))
        } else {
            // A file with bytes after its committed length is not kept as the backup: the
            // backup before it stays, as its record says.
            let keep = matches!(found.state, CopyState::Good(_)) && !found.uncommitted_tail();
            let backup = if keep { BackupPolicy::Keep } else { BackupPolicy::Skip };
            let revision = Revision::whole(best.bars.clone());
            let out = store.persist(series, &revision, &PutOptions::overwrite().backup(backup), ctx).await?;
            let md5 = out.checksum.unwrap_or_default();
            (out.info.size, md5, out.fingerprint, format!("rewrote from {}", best.source))
        };
        let meta = FileMetadata {
            file_path: DualStorageManager::relative_path(series, store.name()),
            instrument_symbol: series.instrument.symbol().clone(),
            instrument_type: series.instrument.kind(),
            period: series.period,
            format: store.name().to_string(),
            row_count: best.bars.len() as u64,
            columns: best.bars.column_names(),
            date_range: DateRange {
                start: best.bars.first_timestamp().map(barvault_domain::nanos_to_datetime),
                end: best.bars.last_timestamp().map(barvault_domain::nanos_to_datetime),
            },
            file_size: size,
            last_updated: Utc::now(),
            checksum: md5,
            generation: best.generation,
            backup_checksum: backup_checksum_now(store, series, r, ctx).await,
            fingerprint,
            appended: None,
        };
        self.manager.metadata().record(&meta, ctx).await?;
        Ok(what)
    }
}

/// A primary copy that lost its record and parses into the bars of `best` (a recorded
/// secondary) followed by more: the shape appends in place leave while the secondary lags
/// (DECISIONS.md, "Appends in place"). `export` serves those rows, so they are committed
/// bars to keep, not to cut back to the lagging copy.
fn unrecorded_primary_extending(
    copies: &[Arc<dyn BarStore>],
    examined: &[Examined],
    records: &Records,
    series: &SeriesKey,
    best: &Best,
    max_gen: u64,
) -> Option<Best> {
    let (c, found) = (copies.first()?, examined.first()?);
    if records.contains_key(&(series.clone(), c.name().to_string())) {
        return None;
    }
    let CopyState::Parses(p) = &found.state else { return None };
    (p.len() > best.bars.len() && p.slice_rows(0, best.bars.len()) == best.bars).then(|| Best {
        bars: p.clone(),
        generation: max_gen + 1,
        source: format!(
            "the {} copy as it parses, {} rows appended after the lagging copy",
            c.name(),
            p.len() - best.bars.len()
        ),
    })
}

/// The checksum to record for the `.backup` of a copy whose previous record is `r`: a write
/// keeps the file in place as the backup before its rename, so a backup holding exactly the
/// recorded file (`r.checksum`) is that write's backup, also when the write was killed before
/// recording it; otherwise the recorded backup checksum stands.
async fn backup_checksum_now(
    store: &dyn BarStore,
    series: &SeriesKey,
    r: Option<&FileMetadata>,
    ctx: &OpContext,
) -> Option<String> {
    let r = r?;
    let on_disk = match store.capabilities().backups {
        true => checksum_of(store, series, Which::Backup, ctx).await.ok().flatten(),
        false => None,
    };
    if !r.checksum.is_empty() && on_disk.as_deref() == Some(r.checksum.as_str()) {
        Some(r.checksum.clone())
    } else {
        r.backup_checksum.clone()
    }
}
