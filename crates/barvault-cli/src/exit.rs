//! Exit codes and the one-line error message.

use std::fmt;

use barvault::{ConfigError, StorageError};

/// Success, or a clean result (verify found nothing, health is healthy).
pub const OK: u8 = 0;
/// Something failed or problems were found.
pub const FAILURE: u8 = 1;
/// The command line is wrong (also: `health` found an error).
pub const USAGE: u8 = 2;
/// The configuration is invalid.
pub const CONFIG: u8 = 3;
/// Another writer holds the series lock (or, on object storage, kept changing the series
/// through every retry); retry later.
pub const LOCKED: u8 = 4;
/// Stopped by SIGINT (Ctrl-C): 128 + 2, as shells report it.
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM: 128 + 15.
pub const TERMINATED: u8 = 143;

/// The text `--help` shows after the options.
pub const HELP: &str = "\
Exit codes:
  0  success; verify found nothing; health is healthy
  1  failure or problems found (a file failed, verify found issues, health warning, storage error)
  2  command-line usage error (also: cleanup needs --confirm-removal); health status error
  3  configuration error (invalid value, unknown field, unreadable config file, cleanup disabled or no retention_days)
  4  the series is locked by another writer, or other writers changed it through every retry: retry later
  130, 143  stopped by SIGINT (Ctrl-C) or SIGTERM; temp files of unfinished writes are removed";

/// A command-line value that clap could not check on its own (a symbol invalid for its
/// instrument type, a range that ends before it starts).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code an error maps to: the first cause in the chain that says.
pub fn code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return USAGE;
        }
        if cause.is::<ConfigError>() {
            return CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<StorageError>() {
            return storage_code(e);
        }
    }
    FAILURE
}

/// The exit code of one storage error.
pub fn storage_code(e: &StorageError) -> u8 {
    match e {
        StorageError::Locked { .. } | StorageError::VersionConflict { .. } => LOCKED,
        StorageError::Config { .. } => CONFIG,
        _ => FAILURE,
    }
}

/// The error as one line: the outermost message, or with `verbose` the whole cause chain
/// joined by `: ` (a cause whose text the previous message already shows is not repeated).
pub fn message(err: &anyhow::Error, verbose: bool) -> String {
    let mut out = err.to_string();
    if verbose {
        for cause in err.chain().skip(1) {
            let text = cause.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
        }
    }
    one_line(&out)
}

/// Collapses line breaks so an error is always one line.
pub fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use barvault::{Instrument, Period, SeriesKey};

    use super::*;

    fn series() -> SeriesKey {
        SeriesKey::new(Instrument::stock("AAPL").unwrap(), Period::D1)
    }

    #[test]
    fn codes_follow_the_first_cause_that_says() {
        let locked = StorageError::Locked { series: series(), path: PathBuf::from("x.lock"), waited: Duration::ZERO };
        assert_eq!(code_of(&anyhow::Error::new(locked).context("importing a.csv")), LOCKED);
        let cfg = ConfigError::File { path: PathBuf::from("b.toml"), reason: "no such file".into() };
        assert_eq!(code_of(&anyhow::Error::new(cfg)), CONFIG);
        let disabled = StorageError::Config { field: "cleanup_enabled".into(), message: "disabled".into() };
        assert_eq!(code_of(&anyhow::Error::new(disabled)), CONFIG);
        assert_eq!(code_of(&anyhow::Error::new(UsageError("bad".into()))), USAGE);
        assert_eq!(code_of(&anyhow::Error::new(StorageError::NotFound { what: "x".into() })), FAILURE);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), FAILURE);
    }

    #[test]
    fn verbose_shows_the_chain_without_repeats() {
        let io = StorageError::io(
            barvault::ports::IoStep::Read,
            "/x/a.csv",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        let err = anyhow::Error::new(io).context("reading input");
        assert_eq!(message(&err, false), "reading input");
        assert_eq!(message(&err, true), "reading input: read failed for /x/a.csv: gone");
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(one_line("a\nb\r\n\nc"), "a | b | c");
        let err = anyhow::anyhow!("first\nsecond");
        assert!(!message(&err, true).contains('\n'));
    }
}
