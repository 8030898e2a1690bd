//! The blocks of a Parquet file that a range read proves and decodes alone: the footer
//! (every byte after the last row group: page indexes, the Thrift metadata, its length
//! and the magic) and each row group (the bytes of all its column chunks).
//!
//! The store records where they lie with a CRC-32 of each when it writes the file
//! ([`crate::ParquetCodec`]'s `layout`); a range read hands back only the pieces it read
//! and proved, and the decode below reads nothing else: a request for a byte outside the
//! pieces is an error, so a decode can never be served bytes that were not proven.

use std::io::Cursor;
use std::sync::Arc;

use barvault_ports::{BlockLayout, BlockRead, CodecError, GroupLayout, StoredBytes};
use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use crate::error::from_parquet_on_read;

/// Some byte ranges of a file of `len` bytes, as the parquet reader reads a file.
#[derive(Debug, Clone)]
pub(crate) struct Pieces {
    len: u64,
    /// `(offset, bytes)`, ascending by offset.
    pieces: Arc<[(u64, Bytes)]>,
}

impl Pieces {
    pub(crate) fn new(len: u64, mut pieces: Vec<(u64, Bytes)>) -> Self {
        pieces.sort_by_key(|(offset, _)| *offset);
        Self { len, pieces: pieces.into() }
    }

    /// The piece holding `[start, start + length)` and the offset of `start` in it.
    fn find(&self, start: u64, length: u64) -> Option<(&Bytes, usize)> {
        let i = self.pieces.partition_point(|(offset, _)| *offset <= start).checked_sub(1)?;
        let (offset, bytes) = &self.pieces[i];
        let at = start - offset;
        (at.checked_add(length)? <= bytes.len() as u64).then_some((bytes, at as usize))
    }

    fn missing(start: u64, length: u64) -> ParquetError {
        ParquetError::General(format!("{length} bytes at offset {start} lie outside the blocks read and proven"))
    }
}

impl Length for Pieces {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Pieces {
    type T = Cursor<Bytes>;

    /// A reader to the end of the piece holding `start`.
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let (bytes, at) = self.find(start, 0).ok_or_else(|| Self::missing(start, 0))?;
        Ok(Cursor::new(bytes.slice(at..)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let (bytes, at) = self.find(start, length as u64).ok_or_else(|| Self::missing(start, length as u64))?;
        Ok(bytes.slice(at..at + length))
    }
}

impl crate::decode::Fork for Pieces {
    fn fork(&self) -> Option<Self> {
        Some(self.clone())
    }
}

/// The footer of `stored` as a piece: its last 8 bytes give the metadata's length.
fn footer_piece(stored: &dyn StoredBytes) -> Result<Pieces, CodecError> {
    let len = stored.len();
    let short = || CodecError::Corrupt(format!("a {len}-byte file is too short to be Parquet"));
    let tail_at = len.checked_sub(8).filter(|&t| t >= 4).ok_or_else(short)?;
    let tail = stored.read(tail_at, 8)?;
    if &tail[4..8] != b"PAR1" {
        return Err(CodecError::Corrupt("no Parquet magic at the end of the file".into()));
    }
    let meta_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let start = tail_at.checked_sub(meta_len).filter(|&s| s >= 4).ok_or_else(short)?;
    let bytes = stored.read(start, usize::try_from(len - start).map_err(|e| CodecError::Corrupt(e.to_string()))?)?;
    Ok(Pieces::new(len, vec![(start, Bytes::copy_from_slice(&bytes))]))
}

/// The first and last byte (exclusive) of row group `g`'s column chunks.
fn group_span(meta: &ParquetMetaData, g: usize) -> Option<(u64, u64)> {
    let mut span: Option<(u64, u64)> = None;
    for chunk in meta.row_group(g).columns() {
        let (start, len) = chunk.byte_range();
        let end = start.checked_add(len)?;
        span = Some(span.map_or((start, end), |(a, b)| (a.min(start), b.max(end))));
    }
    span
}

/// Where the row groups and the footer of `stored` lie, with each group's rows and
/// timestamp bounds from its statistics; `None` when a group has none (then nothing is
/// recorded and range reads prove the whole file) or the groups are not in file order.
pub(crate) fn layout(stored: &dyn StoredBytes) -> Result<Option<BlockLayout>, CodecError> {
    let pieces = footer_piece(stored)?;
    let meta = ParquetMetaDataReader::new().parse_and_finish(&pieces).map_err(from_parquet_on_read)?;
    crate::decode::check_layout(&meta, stored.len())?;
    crate::decode::check_claims(&meta)?;
    let Some(bounds) = crate::decode::timestamp_bounds(&meta)? else { return Ok(None) };
    let mut groups = Vec::with_capacity(meta.num_row_groups());
    let mut end = 4u64;
    for (g, bound) in bounds.into_iter().enumerate() {
        let Some((start, stop)) = group_span(&meta, g) else { return Ok(None) };
        let (Some((first, last)), Ok(rows)) = (bound, u64::try_from(meta.row_group(g).num_rows())) else {
            return Ok(None);
        };
        if start < end {
            return Ok(None);
        }
        groups.push(GroupLayout { offset: start, len: stop - start, rows, first, last });
        end = stop;
    }
    let len = stored.len();
    if end > len {
        return Ok(None);
    }
    Ok(Some(BlockLayout { footer: (end, len - end), groups }))
}

/// The rows of the groups `read.groups` that may lie in `range`, from the pieces alone.
pub(crate) fn pieces_of(read: BlockRead) -> (Pieces, Vec<usize>) {
    let BlockRead { file_len, pieces, mut groups } = read;
    groups.sort_unstable();
    groups.dedup();
    (Pieces::new(file_len, pieces), groups)
}
