//! The seed's StorageRecoveryManager: `verify` proves every stored file against its
//! checksummed record without changing anything, and `recover` rebuilds damaged copies from
//! the best evidence left — a sound copy in the other format, then a sound `.backup`, then a
//! copy that parses — never replacing a good file with a worse one.
//!
//! Verification trusts a matching MD5 as proof of content (the bytes are exactly what was
//! encoded and parsed when written), so the common case hashes each file once; files whose
//! checksum disagrees, or that have no record, are parsed to say how bad they are.
//!
//! Everything goes through the ports — each copy's [`BarStore`], the [`MetadataStore`] and
//! the [`Housekeeping`] of the namespace — so the same checks run on any backend and a
//! faulty adapter can fail any step of them. `examine` looks at one copy, `verify` puts the
//! copies of every series side by side, `recover` repairs.
//!
//! [`BarStore`]: barvault_ports::BarStore
//! [`MetadataStore`]: barvault_ports::MetadataStore
//! [`Housekeeping`]: barvault_ports::Housekeeping

mod examine;
mod recover;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use barvault_domain::{Bars, SeriesKey};
use barvault_ports::{FileMetadata, OpContext, StorageError, UnreadableRecord};
use serde::Serialize;

use crate::vault::Vault;

/// Metadata records by series and format.
pub(crate) type Records = BTreeMap<(SeriesKey, String), FileMetadata>;

/// Which series an integrity operation covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Series(SeriesKey),
}

impl Scope {
    pub(crate) fn covers(&self, s: &SeriesKey) -> bool {
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
    /// A record whose fingerprint (CRC-32, MD5 checkpoints) does not describe its file,
    /// although the MD5 does: the next write would trust wrong checkpoints. `recover`
    /// re-records the file.
    BadFingerprint,
    /// A temp file left by an interrupted write.
    StaleTemp,
    /// A lock file of a series that has no data.
    StaleLock,
    /// Something the store did not create where it keeps data (a symbolic link, a
    /// directory in place of a file); never followed or written through.
    ForeignEntry,
    /// Bytes after the committed length a data file's record names: an append interrupted
    /// before its record. Never read; the next write of the series or `recover` cuts them.
    UncommittedTail,
    /// A block of the file (a Parquet row group, or its footer) whose bytes do not have
    /// the CRC-32 its record states: a range read touching it fails over to the other copy.
    BadBlock,
    /// Not a problem (a note of [`VerifyReport::notes`]): the secondary copy lags the
    /// primary by rows appended in place, as the primary's record states; those rows are
    /// proven in the primary copy only until the secondary is written again.
    Lagging,
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
            IssueKind::ForeignEntry => "foreign_entry",
            IssueKind::UncommittedTail => "uncommitted_tail",
            IssueKind::BadBlock => "bad_block",
            IssueKind::Lagging => "lagging",
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
    /// What was proven in one copy only, and why (kind [`IssueKind::Lagging`]); not problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Issue>,
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
pub(crate) enum CopyState {
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

pub(crate) fn issue(kind: IssueKind, series: Option<&SeriesKey>, path: &Path, detail: impl Into<String>) -> Issue {
    Issue { kind, series: series.map(ToString::to_string), path: path.to_path_buf(), detail: detail.into() }
}

impl Vault {
    /// Every readable record by series and format, and the unreadable ones.
    pub(crate) async fn records(&self, ctx: &OpContext) -> Result<(Records, Vec<UnreadableRecord>), StorageError> {
        let list = self.manager.metadata().list(ctx).await?;
        let mut map = BTreeMap::new();
        let mut bad = list.unreadable;
        for r in list.records {
            match r.try_series() {
                Ok(s) => {
                    map.insert((s, r.format.clone()), r);
                }
                Err(e) => bad.push(UnreadableRecord {
                    location: PathBuf::from(&r.file_path),
                    series: None,
                    format: Some(r.format.clone()),
                    reason: e.to_string(),
                }),
            }
        }
        Ok((map, bad))
    }
}

impl Vault {
    /// The readable records of one series' copies, read now (under the series lock, they
    /// are what its last writer recorded); an unreadable record is left out, as
    /// [`Vault::records`] leaves it out of the map.
    pub(crate) async fn series_records(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Records, StorageError> {
        let mut map = BTreeMap::new();
        for c in self.manager.copies() {
            match self.manager.metadata().get(series, c.name(), ctx).await {
                Ok(Some(r)) => {
                    map.insert((series.clone(), c.name().to_string()), r);
                }
                Ok(None) => {}
                Err(e) if e.is_data_error() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(map)
    }
}

/// Runs `f` over `items` with at most `limit` at once, keeping their order: each copy's
/// checksum runs on the store's blocking pool, so a few at a time keep every core hashing.
pub(crate) async fn concurrently<'a, T, R, F, Fut>(items: &'a [T], limit: usize, f: F) -> Vec<R>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    use std::pin::Pin;
    use std::task::Poll;
    let mut pending: Vec<Option<Pin<Box<Fut>>>> = Vec::with_capacity(items.len());
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let mut started = 0;
    std::future::poll_fn(|cx| {
        loop {
            let running = pending.iter().filter(|p| p.is_some()).count();
            if running >= limit.max(1) || started == items.len() {
                break;
            }
            pending.push(Some(Box::pin(f(&items[started]))));
            started += 1;
        }
        let mut progressed = false;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(fut) = slot
                && let Poll::Ready(r) = fut.as_mut().poll(cx)
            {
                results[i] = Some(r);
                *slot = None;
                progressed = true;
            }
        }
        if results.iter().all(Option::is_some) {
            Poll::Ready(())
        } else if progressed {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Pending
        }
    })
    .await;
    results.into_iter().flatten().collect()
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
            ForeignEntry,
            UncommittedTail,
            Lagging,
        ];
        for kind in all {
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::Value::from(kind.as_str()));
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }
}
