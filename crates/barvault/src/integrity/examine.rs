//! One copy of one series, looked at against its record.

use std::path::PathBuf;

use barvault_domain::SeriesKey;
use barvault_ports::{BadBlock, BarStore, Checksum, FileMetadata, LoadOptions, OpContext, Rows, StorageError, Which};

use super::{CopyState, Issue, IssueKind, issue};
use crate::dual::DualStorageManager;

/// What examining one copy found: its state, the bytes hashed, and the issues.
#[derive(Debug)]
pub(crate) struct Examined {
    pub(crate) state: CopyState,
    pub(crate) bytes: u64,
    pub(crate) issues: Vec<Issue>,
    pub(crate) path: PathBuf,
}

impl Examined {
    /// The record's fingerprint does not describe the file: its CRC-32, checkpoints or
    /// block checksums (`recover` then records the file again).
    pub(crate) fn bad_fingerprint(&self) -> bool {
        self.issues.iter().any(|i| matches!(i.kind, IssueKind::BadFingerprint | IssueKind::BadBlock))
    }

    /// The file holds bytes after its committed length (its record's size).
    pub(crate) fn uncommitted_tail(&self) -> bool {
        self.issues.iter().any(|i| i.kind == IssueKind::UncommittedTail)
    }
}

/// One issue for each recorded block whose bytes do not have its CRC-32.
fn bad_blocks(series: &SeriesKey, path: &std::path::Path, bad: &[BadBlock]) -> Vec<Issue> {
    bad.iter().map(|b| issue(IssueKind::BadBlock, Some(series), path, b.to_string())).collect()
}

fn bad_fingerprint(series: &SeriesKey, path: &std::path::Path) -> Issue {
    issue(
        IssueKind::BadFingerprint,
        Some(series),
        path,
        "the record's fingerprint (CRC-32, MD5 checkpoints) does not describe the file, although its MD5 does",
    )
}

/// The MD5 of a copy (or its backup) without decoding it; `None` if there is none.
pub(crate) async fn checksum_of(
    store: &dyn BarStore,
    series: &SeriesKey,
    which: Which,
    ctx: &OpContext,
) -> Result<Option<String>, StorageError> {
    let options = LoadOptions { rows: Rows::Nothing, which, checksum: Checksum::Compute };
    Ok(store.load(series, &options, ctx).await?.and_then(|l| l.checksum))
}

/// Looks at one copy of a series. The shallow check hashes the file and parses it only on
/// disagreement; `deep` parses every file and checks fingerprints, row counts and backups.
/// Fingerprints are never believed here: every MD5 is computed.
pub(crate) async fn examine(
    store: &dyn BarStore,
    base: &std::path::Path,
    series: &SeriesKey,
    record: Option<&FileMetadata>,
    deep: bool,
    lock_free: bool,
    ctx: &OpContext,
) -> Result<Examined, StorageError> {
    let mut issues = Vec::new();
    let expected = record.map(|r| r.checksum.as_str()).filter(|c| !c.is_empty());
    let fingerprint = record.and_then(|r| r.fingerprint.clone());
    let audit = |rows: Rows| LoadOptions {
        rows,
        which: Which::Current,
        checksum: fingerprint.clone().map_or(Checksum::Compute, Checksum::Audit),
    };
    // Fast path: a matching checksum proves the content; parse only on disagreement. The
    // fingerprint, if any, is checked in the same pass. The same read tells a missing file.
    let (info, proof) = match (expected, deep) {
        (Some(_), false) => match store.load(series, &audit(Rows::Nothing), ctx).await {
            Ok(Some(l)) => (Some(l.info.clone()), Some(l)),
            Ok(None) => (None, None),
            // Not even openable as a file of the store (a planted symbolic link).
            Err(e) if e.is_data_error() => {
                let path = base.join(DualStorageManager::relative_path(series, store.name()));
                issues.push(issue(IssueKind::Unparsable, Some(series), &path, e.to_string()));
                return Ok(Examined { state: CopyState::Broken, bytes: 0, issues, path });
            }
            Err(e) => return Err(e),
        },
        _ => (store.file_info(series, ctx).await?, None),
    };
    let Some(info) = info else {
        let path = base.join(DualStorageManager::relative_path(series, store.name()));
        if let Some(r) = record {
            let detail = format!("recorded (generation {}) but missing", r.generation);
            issues.push(issue(IssueKind::MissingFile, Some(series), &path, detail));
        }
        return Ok(Examined { state: CopyState::Missing, bytes: 0, issues, path });
    };
    let path = PathBuf::from(&info.location);
    let size = info.size;
    if let (Some(r), Some(e)) = (record, expected)
        && size > r.file_size
        && let Some(found) = committed_part(store, series, r, e, &path, size, ctx).await?
    {
        return Ok(found);
    }
    if let Some(proof) = proof
        && proof.checksum.as_deref() == expected
    {
        if !proof.bad_blocks.is_empty() {
            issues.extend(bad_blocks(series, &path, &proof.bad_blocks));
        } else if proof.fingerprint_ok == Some(false) {
            issues.push(bad_fingerprint(series, &path));
        }
        return Ok(Examined { state: CopyState::Proven, bytes: size, issues, path });
    }
    let read = store.load(series, &audit(Rows::All), ctx).await;
    let state = match read {
        Ok(Some(loaded)) => {
            // A damaged block is named whether or not the MD5 also disagrees: it says
            // which rows a range read cannot take from this copy.
            issues.extend(bad_blocks(series, &path, &loaded.bad_blocks));
            if deep
                && loaded.bad_blocks.is_empty()
                && loaded.fingerprint_ok == Some(false)
                && loaded.checksum.as_deref() == expected
            {
                issues.push(bad_fingerprint(series, &path));
            }
            let md5 = loaded.checksum.clone().unwrap_or_default();
            let bars = loaded.into_bars();
            match expected {
                Some(e) if e == md5 => CopyState::Good(bars),
                Some(e) => {
                    let detail = format!("file has MD5 {md5}, metadata records {e}");
                    issues.push(issue(IssueKind::ChecksumMismatch, Some(series), &path, detail));
                    CopyState::Parses(bars)
                }
                None => {
                    if record.is_none() {
                        issues.push(issue(IssueKind::MissingMetadata, Some(series), &path, "no metadata record"));
                    }
                    CopyState::Parses(bars)
                }
            }
        }
        Ok(None) => CopyState::Missing,
        Err(e) if e.is_data_error() => {
            // A file that cannot even be hashed (a planted symbolic link, never followed)
            // is reported as unparsable only. The hash pass also names damaged blocks.
            let proof = match store.load(series, &audit(Rows::Nothing), ctx).await {
                Ok(proof) => proof,
                Err(e) if e.is_data_error() => None,
                Err(e) => return Err(e),
            };
            if let Some(p) = &proof {
                issues.extend(bad_blocks(series, &path, &p.bad_blocks));
            }
            let md5 = proof.and_then(|p| p.checksum);
            if let (Some(e2), Some(md5)) = (expected, md5)
                && e2 != md5
            {
                let detail = format!("file has MD5 {md5}, metadata records {e2}");
                issues.push(issue(IssueKind::ChecksumMismatch, Some(series), &path, detail));
            }
            issues.push(issue(IssueKind::Unparsable, Some(series), &path, e.to_string()));
            CopyState::Broken
        }
        Err(e) => return Err(e),
    };
    if deep && let (Some(r), CopyState::Good(b) | CopyState::Parses(b)) = (record, &state) {
        if r.row_count != b.len() as u64 {
            let detail = format!("{} rows, metadata records {}", b.len(), r.row_count);
            issues.push(issue(IssueKind::ChecksumMismatch, Some(series), &path, detail));
        }
        let backup = PathBuf::from(format!("{}.backup", path.display()));
        check_backup(store, series, r, &backup, lock_free, ctx, &mut issues).await?;
    }
    Ok(Examined { state, bytes: size, issues, path })
}

/// A copy longer than its record's committed length whose committed bytes are what the
/// record describes (their MD5 computed, never believed): sound, with the bytes after them
/// reported. `None` when the committed bytes disagree too (then it is examined as usual).
async fn committed_part(
    store: &dyn BarStore,
    series: &SeriesKey,
    r: &FileMetadata,
    expected: &str,
    path: &std::path::Path,
    size: u64,
    ctx: &OpContext,
) -> Result<Option<Examined>, StorageError> {
    let options =
        LoadOptions { rows: Rows::All, which: Which::Current, checksum: Checksum::Record(Box::new(r.clone())) };
    let loaded = match store.load(series, &options, ctx).await {
        Ok(Some(l)) if l.checksum.as_deref() == Some(expected) => l,
        Ok(_) => return Ok(None),
        Err(e) if e.is_data_error() => return Ok(None),
        Err(e) => return Err(e),
    };
    let detail = format!(
        "{} bytes after the committed length {} (an append interrupted before its record): never read; the next write or `recover` cuts them",
        size - r.file_size,
        r.file_size
    );
    let issues = vec![issue(IssueKind::UncommittedTail, Some(series), path, detail)];
    let state = CopyState::Good(loaded.into_bars());
    Ok(Some(Examined { state, bytes: r.file_size, issues, path: path.to_path_buf() }))
}

/// A `.backup` whose MD5 is neither the recorded backup checksum nor that of the recorded
/// file itself (what a write interrupted between keeping its backup and its rename leaves:
/// a sound copy, not a damaged one) is a bad backup.
///
/// Without locks (`lock_free`, object storage) writers keep backups concurrently: a writer
/// that loses the race for the object has already copied the winner's version to the
/// backup, which is a previous version of the series whose checksum no record keeps. There
/// a backup only has to parse.
async fn check_backup(
    store: &dyn BarStore,
    series: &SeriesKey,
    r: &FileMetadata,
    path: &std::path::Path,
    lock_free: bool,
    ctx: &OpContext,
    issues: &mut Vec<Issue>,
) -> Result<(), StorageError> {
    let (Some(expected), true) = (&r.backup_checksum, store.capabilities().backups) else { return Ok(()) };
    let md5 = match checksum_of(store, series, Which::Backup, ctx).await {
        Ok(Some(md5)) => md5,
        Ok(None) => return Ok(()),
        Err(e) if e.is_data_error() => return Ok(()),
        Err(e) => return Err(e),
    };
    if &md5 == expected || md5 == r.checksum {
        return Ok(());
    }
    if lock_free {
        let options = LoadOptions { rows: Rows::All, which: Which::Backup, checksum: Checksum::Skip };
        return match store.load(series, &options, ctx).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_data_error() => {
                let detail = format!("backup does not parse: {e}");
                issues.push(issue(IssueKind::BadBackup, Some(series), path, detail));
                Ok(())
            }
            Err(e) => Err(e),
        };
    }
    let detail = format!("backup has MD5 {md5}, metadata records {expected}");
    issues.push(issue(IssueKind::BadBackup, Some(series), path, detail));
    Ok(())
}
