use std::fmt::Debug;
use std::io::{self, Write};
use std::path::Path;

use barvault_domain::{Bars, DomainError, RawBars, SeriesKey, TimeRange};
use thiserror::Error;

use crate::error::StorageError;

/// Where a codec reads from: an open file (streamed) or bytes already in memory.
#[derive(Debug)]
pub enum CodecInput<'a> {
    File(std::fs::File),
    Bytes(&'a [u8]),
}

/// A codec failure, without the path: the store that owns the file adds it with [`CodecError::at`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("line {line:?} column {column:?}: {reason}")]
    Parse { line: Option<u64>, column: Option<String>, value: Option<String>, reason: String },
    #[error("corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Domain(#[from] DomainError),
}

impl CodecError {
    pub fn parse(line: Option<u64>, column: Option<&str>, value: Option<&str>, reason: impl Into<String>) -> Self {
        CodecError::Parse {
            line,
            column: column.map(str::to_string),
            value: value.map(str::to_string),
            reason: reason.into(),
        }
    }

    /// Attaches the file this error concerns.
    pub fn at(self, path: &Path) -> StorageError {
        match self {
            CodecError::Parse { line, column, value, reason } => {
                StorageError::Decode { path: path.to_path_buf(), line, column, value, reason }
            }
            CodecError::Corrupt(reason) => StorageError::Corrupt { path: path.to_path_buf(), reason },
            CodecError::Io(e) => StorageError::io(crate::IoStep::Read, path, e),
            CodecError::Domain(e) => StorageError::Decode {
                path: path.to_path_buf(),
                line: None,
                column: None,
                value: None,
                reason: e.to_string(),
            },
        }
    }
}

/// Turns bars into the bytes of one file format and back.
///
/// Codecs are synchronous and pure CPU work over a byte stream; the file store around
/// them owns paths, temp files, fsync and locking, so every format gets the same
/// durability for free.
pub trait BarCodec: Send + Sync + Debug {
    /// The format name, also the file extension: `csv`, `parquet`.
    fn format(&self) -> &'static str;

    /// Writes `bars` (sorted, unique) as one complete file.
    fn encode(&self, bars: &Bars, series: &SeriesKey, out: &mut (dyn Write + Send)) -> Result<(), CodecError>;

    /// Reads one file. Rows outside `range` may be skipped (and must be, by the caller
    /// trimming, if the codec does not). Rows come in file order.
    fn decode(&self, input: CodecInput<'_>, range: Option<TimeRange>) -> Result<RawBars, CodecError>;

    /// For formats whose files are a header followed by one independent record per row
    /// (CSV): writes the header (with `header`) and then rows `rows` of `bars`, exactly as
    /// they appear in `encode`'s output for the whole of `bars`, so that
    /// `part(0..k, true) ++ part(k..n, false) == encode(bars)`. A store uses it to keep
    /// the stored bytes of unchanged leading rows. `None`: the format has no such parts.
    fn encode_part(
        &self,
        _bars: &Bars,
        _rows: std::ops::Range<usize>,
        _header: bool,
        _out: &mut (dyn Write + Send),
    ) -> Option<Result<(), CodecError>> {
        None
    }

    /// For formats whose files keep independently encoded blocks of rows in order (Parquet
    /// row groups): the longest leading part of `stored` (a complete file of this format)
    /// that the new file may keep byte for byte, given that its first `unchanged` rows
    /// equal, value for value and with the same columns, the first rows of `stored`.
    /// `bars` holds the new file's rows, or only its last rows (its columns are what
    /// count here). `None`: nothing can be kept (or the format cannot keep blocks).
    fn keepable(&self, _stored: &[u8], _bars: &Bars, _unchanged: usize) -> Option<KeptPrefix> {
        None
    }

    /// Writes what follows `stored[..kept.bytes]` in the new file, so that the kept bytes
    /// followed by this output are one complete file holding exactly the new rows: the
    /// first `skipped` rows of `stored`, then `bars`. `kept` comes from
    /// [`BarCodec::keepable`] for the same `stored` and a valid `unchanged`, and covers the
    /// skipped rows (`kept.rows >= skipped`). `None`: the format cannot keep blocks.
    fn encode_after(
        &self,
        _bars: &Bars,
        _skipped: usize,
        _series: &SeriesKey,
        _stored: &[u8],
        _kept: KeptPrefix,
        _out: &mut (dyn Write + Send),
    ) -> Option<Result<(), CodecError>> {
        None
    }

    /// For formats whose blocks of rows carry their time bounds (Parquet row-group
    /// statistics): the rows of `stored` (a complete file) from the first block that may
    /// hold a timestamp at or after `from`, and, when there is one, at least one row
    /// before `from`. A merge of bars from `from` on needs no earlier row, and a nightly
    /// update decodes one block instead of years of history. `None`: the format cannot.
    fn decode_tail(&self, _stored: &[u8], _from: i64) -> Option<Result<RawTail, CodecError>> {
        None
    }

    /// Whether [`BarCodec::decode_tail`] returns `Some`, so a store can say "not
    /// supported" before it reads a file for nothing.
    fn decodes_tails(&self) -> bool {
        false
    }
}

/// A stored file's last rows, as [`BarCodec::decode_tail`] reads them.
#[derive(Debug)]
pub struct RawTail {
    /// Rows of the file before `raw`, each of them earlier than every row of `raw`.
    pub skipped: usize,
    /// The file's first timestamp, when `skipped > 0`.
    pub first: Option<i64>,
    pub raw: RawBars,
}

/// The leading part of a stored file that the next version keeps byte for byte: its first
/// `bytes` bytes, which hold its first `rows` rows (see [`BarCodec::keepable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptPrefix {
    pub bytes: u64,
    pub rows: usize,
}
