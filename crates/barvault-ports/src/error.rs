use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use barvault_domain::{DomainError, SeriesKey};
use thiserror::Error;

/// The step of a durable write (or read) that failed; named in every I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoStep {
    CreateDir,
    CreateTemp,
    WriteTemp,
    FsyncTemp,
    Rename,
    FsyncDir,
    BackupLink,
    RemoveTemp,
    Read,
    Stat,
    Lock,
    Remove,
    WriteMetadata,
    List,
    /// Writing rows after the committed end of a data file, or making them durable.
    Append,
}

impl fmt::Display for IoStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoStep::CreateDir => "create directory",
            IoStep::CreateTemp => "create temp file",
            IoStep::WriteTemp => "write temp file",
            IoStep::FsyncTemp => "fsync temp file",
            IoStep::Rename => "rename temp file over target",
            IoStep::FsyncDir => "fsync directory",
            IoStep::BackupLink => "keep backup",
            IoStep::RemoveTemp => "remove temp file",
            IoStep::Read => "read",
            IoStep::Stat => "stat",
            IoStep::Lock => "lock",
            IoStep::Remove => "remove",
            IoStep::WriteMetadata => "write metadata",
            IoStep::List => "list directory",
            IoStep::Append => "append in place",
        })
    }
}

/// Every failure of a storage operation. Variants carry what an operator needs to act:
/// the series, the file, the line and the underlying cause.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A series or file that was required does not exist.
    #[error("{what}: not found")]
    NotFound { what: String },

    /// The caller passed something unusable (a bad symbol, range, option).
    #[error("invalid input: {message}")]
    InvalidInput {
        message: String,
        #[source]
        source: Option<Box<DomainError>>,
    },

    /// New bars broke validation rules under a strict policy.
    #[error("{series}: {source}")]
    Validation {
        series: SeriesKey,
        #[source]
        source: Box<DomainError>,
    },

    /// The merge policy refused differing values for one timestamp.
    #[error("{series}: merge conflict: {source}")]
    Conflict {
        series: SeriesKey,
        #[source]
        source: Box<DomainError>,
    },

    /// An input or stored file could not be parsed.
    #[error("{}", decode_message(path, *line, column.as_deref(), value.as_deref(), reason))]
    Decode {
        path: PathBuf,
        /// 1-based line (CSV) or row group (Parquet, then `column` says so).
        line: Option<u64>,
        column: Option<String>,
        value: Option<String>,
        reason: String,
    },

    /// A stored file is damaged beyond parsing (truncated, wrong schema, bad footer).
    #[error("{}: corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// A file's bytes do not match the checksum its metadata records.
    #[error("{}: checksum mismatch (metadata says {expected}, file has {actual})", path.display())]
    ChecksumMismatch { path: PathBuf, expected: String, actual: String },

    /// An operating-system call failed.
    #[error("{step} failed for {}: {source}", path.display())]
    Io {
        step: IoStep,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The stored version is not the one a conditional write expected: another writer
    /// changed it since it was read (or created it, for a write that expected nothing).
    /// Re-read, re-merge and retry.
    #[error("{}: changed since it was read ({reason})", path.display())]
    VersionConflict { path: PathBuf, reason: String },

    /// Another writer held the series lock for longer than the configured timeout.
    #[error("{series} is locked by another writer ({}); gave up after {waited:?}", path.display())]
    Locked { series: SeriesKey, path: PathBuf, waited: Duration },

    /// The adapter does not offer this optional operation.
    #[error("{operation} is not supported by the {store} store")]
    Unsupported { operation: &'static str, store: String },

    /// A configuration value is invalid.
    #[error("configuration field {field}: {message}")]
    Config { field: String, message: String },

    /// Both copies of a series failed to load; each cause is named.
    #[error("{series}: no readable copy: {causes}")]
    Unreadable { series: SeriesKey, causes: String },
}

fn decode_message(
    path: &std::path::Path,
    line: Option<u64>,
    column: Option<&str>,
    value: Option<&str>,
    reason: &str,
) -> String {
    let mut s = path.display().to_string();
    if let Some(l) = line {
        s.push_str(&format!(":{l}"));
    }
    s.push_str(": ");
    if let Some(c) = column {
        // A hostile header's "column name" can be the whole file: never repeat it whole.
        match c.char_indices().nth(80) {
            Some((cut, _)) => s.push_str(&format!("column {}… ({} bytes): ", &c[..cut], c.len())),
            None => s.push_str(&format!("column {c}: ")),
        }
    }
    s.push_str(reason);
    if let Some(v) = value {
        let shown: String = v.chars().take(80).collect();
        let ellipsis = if v.chars().count() > 80 { "…" } else { "" };
        s.push_str(&format!(" (got {shown:?}{ellipsis})"));
    }
    s
}

impl StorageError {
    pub fn io(step: IoStep, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io { step, path: path.into(), source }
    }

    pub fn unsupported(operation: &'static str, store: impl Into<String>) -> Self {
        StorageError::Unsupported { operation, store: store.into() }
    }

    /// New bars of `series` broke validation rules.
    pub fn validation(series: &SeriesKey, source: DomainError) -> Self {
        StorageError::Validation { series: series.clone(), source: Box::new(source) }
    }

    /// A merge of `series` failed: a policy conflict becomes [`StorageError::Conflict`],
    /// anything else [`StorageError::InvalidInput`].
    pub fn merge_failed(series: &SeriesKey, source: DomainError) -> Self {
        match source {
            DomainError::Conflict { .. } => StorageError::Conflict { series: series.clone(), source: Box::new(source) },
            other => other.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        StorageError::InvalidInput { message: message.into(), source: None }
    }

    /// A conditional write found another version than it expected at `path`.
    pub fn version_conflict(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StorageError::VersionConflict { path: path.into(), reason: reason.into() }
    }

    /// Whether a re-read and retry can resolve this error.
    pub fn is_version_conflict(&self) -> bool {
        matches!(self, StorageError::VersionConflict { .. })
    }

    /// Whether this error means the data (not the machine) is bad: a retry cannot help,
    /// but a fallback copy can.
    pub fn is_data_error(&self) -> bool {
        matches!(
            self,
            StorageError::Decode { .. } | StorageError::Corrupt { .. } | StorageError::ChecksumMismatch { .. }
        )
    }
}

impl From<DomainError> for StorageError {
    fn from(e: DomainError) -> Self {
        StorageError::InvalidInput { message: e.to_string(), source: Some(Box::new(e)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_small_enough_to_return_by_value() {
        // clippy's result_large_err threshold; boxed domain errors keep every variant under it.
        assert!(std::mem::size_of::<StorageError>() <= 128, "{}", std::mem::size_of::<StorageError>());
    }
}
