use std::borrow::Cow;
use std::fmt::Debug;
use std::io::{self, Write};
use std::path::Path;

use barvault_domain::{Bars, DomainError, RawBars, SeriesKey, TimeRange};
use thiserror::Error;

use crate::error::StorageError;
use crate::store::{Keep, Rows};

/// Where a codec reads from: an open file (streamed) or bytes already in memory.
#[derive(Debug)]
pub enum CodecInput<'a> {
    File(std::fs::File),
    Bytes(&'a [u8]),
    /// Bytes in memory that the codec may keep for as long as it decodes (a codec that
    /// needs owned bytes takes these without copying them; a store that read a file whole
    /// to hash it hands its buffer over this way).
    Shared(std::sync::Arc<Vec<u8>>),
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

/// A decoded file, or its last rows (see [`Rows::From`]).
#[derive(Debug)]
pub struct Decoded {
    /// Rows of the file before `raw`, each of them earlier than every row of `raw`.
    pub skipped: usize,
    /// The file's first timestamp, when `skipped > 0`.
    pub first: Option<i64>,
    /// Rows in file order.
    pub raw: RawBars,
}

impl Decoded {
    /// A whole file.
    pub fn whole(raw: RawBars) -> Self {
        Self { skipped: 0, first: None, raw }
    }
}

/// Random access to the bytes of a stored file whose identity the store has proven, for a
/// codec deciding what of it the next version can keep.
pub trait StoredBytes: Send + Sync {
    /// The file's length.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` bytes from `offset` (an error if the file ends first).
    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>>;

    /// The whole file.
    fn all(&self) -> io::Result<Cow<'_, [u8]>> {
        let len = usize::try_from(self.len()).map_err(io::Error::other)?;
        self.read(0, len)
    }
}

/// `len` bytes of `bytes` from `offset`, or an error past the end.
pub fn read_slice(bytes: &[u8], offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
    usize::try_from(offset)
        .ok()
        .and_then(|from| from.checked_add(len).and_then(|to| bytes.get(from..to)))
        .map(Cow::Borrowed)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, format!("{len} bytes at {offset}: past the end")))
}

impl StoredBytes for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        read_slice(self, offset, len)
    }
}

impl StoredBytes for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        read_slice(self, offset, len)
    }
}

/// The leading part of a stored file that the next version keeps byte for byte: its first
/// `bytes` bytes, which hold its first `rows` rows (see [`BarCodec::keepable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptPrefix {
    pub bytes: u64,
    pub rows: usize,
}

/// The new version a codec continues after a [`KeptPrefix`]: its first `skipped` rows are
/// the stored file's first rows, `bars` the rest.
#[derive(Debug, Clone, Copy)]
pub struct Continuation<'a> {
    pub bars: &'a Bars,
    pub skipped: usize,
    pub series: &'a SeriesKey,
}

/// Where the blocks of a complete file lie, as its codec reads them from the file (see
/// [`BarCodec::layout`]): the store adds their CRC-32s and records them
/// ([`Blocks`](crate::Blocks)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLayout {
    /// The trailing metadata, `(offset, len)`: every byte after the last group.
    pub footer: (u64, u64),
    /// The groups in file order; their byte ranges ascend and do not overlap.
    pub groups: Vec<GroupLayout>,
}

/// One group of rows of a [`BlockLayout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLayout {
    pub offset: u64,
    pub len: u64,
    pub rows: u64,
    /// First and last timestamp (UTC ns) of the group's rows.
    pub first: i64,
    pub last: i64,
}

/// Some blocks of a file, read and proven by the store, for [`BarCodec::decode_blocks`]:
/// the file's length, the pieces read (`(offset, bytes)`, the footer among them) and the
/// indices of the groups among those pieces to decode.
#[derive(Debug, Clone)]
pub struct BlockRead {
    pub file_len: u64,
    pub pieces: Vec<(u64, bytes::Bytes)>,
    pub groups: Vec<usize>,
}

/// Turns bars into the bytes of one file format and back.
///
/// Codecs are synchronous and pure CPU work over bytes; the file store around them owns
/// paths, temp files, fsync and versions, so every format gets the same durability, and
/// the store knows nothing of lines or row groups: which stored bytes a new version may
/// keep is the codec's decision ([`BarCodec::keepable`] and [`BarCodec::encode_after`]).
pub trait BarCodec: Send + Sync + Debug {
    /// The format name, also the file extension: `csv`, `parquet`.
    fn format(&self) -> &'static str;

    /// Writes `bars` (sorted, unique) as one complete file.
    fn encode(&self, bars: &Bars, series: &SeriesKey, out: &mut (dyn Write + Send)) -> Result<(), CodecError>;

    /// Reads one file, rows in file order. A codec may return more rows than `rows` asks
    /// for (the caller trims to a range); for [`Rows::From`] it may skip leading blocks
    /// whose rows are all earlier, and for [`Rows::Nothing`] decode nothing.
    fn decode(&self, input: CodecInput<'_>, rows: Rows) -> Result<Decoded, CodecError>;

    /// The longest leading part of `stored` (a complete file of this format, written by
    /// this codec or another) that the next version may keep byte for byte, given that its
    /// first `keep.unchanged` rows equal the first rows of `stored`'s `keep.stored_rows`
    /// rows. `next.bars` holds the new version's rows from `next.skipped` on (its columns
    /// and last kept row are what a codec checks). `None`: nothing can be kept. The default
    /// keeps nothing.
    fn keepable(
        &self,
        stored: &dyn StoredBytes,
        next: Continuation<'_>,
        keep: Keep,
    ) -> Result<Option<KeptPrefix>, CodecError> {
        let _ = (stored, next, keep);
        Ok(None)
    }

    /// Writes what follows `stored`'s first `kept.bytes` bytes in the next version, so that
    /// those bytes followed by this output are one complete file of the new rows. `kept`
    /// comes from [`BarCodec::keepable`] for the same `stored` and `next` and covers the
    /// skipped rows (`kept.rows >= next.skipped`).
    fn encode_after(
        &self,
        stored: &dyn StoredBytes,
        kept: KeptPrefix,
        next: Continuation<'_>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CodecError> {
        let _ = (stored, kept, next, out);
        Err(CodecError::Corrupt(format!("the {} codec keeps no stored bytes", self.format())))
    }

    /// The bytes that, written right after the end of `stored` (a complete file of this
    /// format), make it one complete file of its rows followed by `bars`, each of which is
    /// later than every stored row; `None` when this format, or this stored file's style,
    /// cannot be continued that way (then the caller writes the file whole). A codec must
    /// check what it relies on against `stored` itself (header, last row, style), so that
    /// a wrong claim appends nothing rather than a wrong file. The default appends nothing.
    fn append_after(&self, stored: &dyn StoredBytes, bars: &Bars) -> Result<Option<Vec<u8>>, CodecError> {
        let _ = (stored, bars);
        Ok(None)
    }

    /// Whether files of this format have blocks ([`BarCodec::layout`]): a store asks for
    /// the layout of the files it writes only then.
    fn has_blocks(&self) -> bool {
        false
    }

    /// The blocks of `stored` (a complete file of this format, written by this codec) that
    /// a range read can prove and decode alone; `None` (the default) for a format without
    /// such blocks, whose range reads prove the whole file.
    fn layout(&self, stored: &dyn StoredBytes) -> Result<Option<BlockLayout>, CodecError> {
        let _ = stored;
        Ok(None)
    }

    /// The rows of the groups `read.groups` (and possibly more rows of them than `range`
    /// holds: the caller trims), decoded from the pieces read only. Any byte the decode
    /// would need outside the pieces is an error, never a read of the file.
    fn decode_blocks(&self, read: BlockRead, range: TimeRange) -> Result<Decoded, CodecError> {
        let _ = (read, range);
        Err(CodecError::Corrupt(format!("the {} codec has no blocks to decode", self.format())))
    }

    /// Whether [`BarCodec::append_after`] can continue files of this format at all (a store
    /// declares [`Capabilities::appends`](crate::Capabilities::appends) from it).
    fn continues_files(&self) -> bool {
        false
    }
}
