//! Block checksums: recorded when a file whose codec has blocks is written, checked by a
//! range load that reads only the blocks it needs (see docs/FORMAT.md, "Block checksums").
//!
//! The store knows nothing of row groups: the codec says where the blocks of a file lie
//! ([`BarCodec::layout`]) and decodes some of them ([`BarCodec::decode_blocks`]); the
//! store reads the bytes, computes and checks the CRC-32s, and never hands the codec a
//! byte it has not proven against the record.

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

use barvault_domain::{Bars, TimeRange};
use barvault_ports::{
    BadBlock, BarCodec, BlockRead, Blocks, ByteSpan, FileMetadata, GroupBlock, IoStep, Rows, StorageError, StoredBytes,
};
use bytes::Bytes;

use crate::keep::Source;
use crate::read::into_bars;
use crate::store::Inner;

/// Bytes read at a time while computing a block's CRC-32 at write time.
const PIECE: u64 = 1 << 20;

/// Most row groups whose checksums a record holds (about 200 bytes of record each, so
/// 400 KB at most, within the 1 MiB a record slot may take): 268 million rows at the
/// default group size. A file with more is recorded without blocks.
const MAX_GROUPS: usize = 2048;

/// The CRC-32 of `len` bytes of `source` from `offset`.
fn crc_of(source: &Source, offset: u64, len: u64) -> io::Result<u32> {
    let mut crc = crc32fast::Hasher::new();
    let mut at = 0;
    while at < len {
        let n = (len - at).min(PIECE);
        crc.update(&source.read(offset + at, n as usize)?);
        at += n;
    }
    Ok(crc.finalize())
}

/// The bytes of `span`, if they have its CRC-32; else which block they are and what was found.
fn proven(source: &Source, group: Option<usize>, span: ByteSpan) -> Result<Bytes, BadBlock> {
    let bad = |found| BadBlock { group, offset: span.offset, len: span.len, found, recorded: span.crc32 };
    let len = usize::try_from(span.len).map_err(|_| bad(None))?;
    let bytes = source.read(span.offset, len).map_err(|_| bad(None))?.into_owned();
    let found = crc32fast::hash(&bytes);
    if found != span.crc32 {
        return Err(bad(Some(found)));
    }
    Ok(Bytes::from(bytes))
}

/// Whether the record's blocks can describe a file of `len` bytes: groups ascending and
/// apart, all before the footer, which ends the file.
fn well_formed(blocks: &Blocks, len: u64) -> bool {
    let mut end = 0;
    for g in &blocks.groups {
        if g.offset < end || g.first > g.last {
            return false;
        }
        end = g.span().end();
    }
    end <= blocks.footer.offset && blocks.footer.end() == len && blocks.footer.len >= 8
}

impl<C: BarCodec + 'static> Inner<C> {
    /// The block checksums of the staged file at `temp` (`len` bytes), when the codec has
    /// blocks; `None` when it has none or cannot tell where they lie (the file is then
    /// recorded without them, and range reads of it prove the whole file).
    pub(crate) fn blocks_of(&self, temp: &Path, len: u64) -> Result<Option<Blocks>, StorageError> {
        if !self.codec.has_blocks() {
            return Ok(None);
        }
        let Some((file, _)) = self.open(temp)? else {
            return Err(StorageError::io(IoStep::Read, temp, io::Error::from(io::ErrorKind::NotFound)));
        };
        let source = Source::file(file, len);
        let layout = match self.codec.layout(&source) {
            Ok(Some(layout)) if layout.groups.len() <= MAX_GROUPS => layout,
            Ok(_) => return Ok(None),
            Err(e) => {
                tracing::warn!(path = %temp.display(), error = %e, "no block checksums recorded: the layout of the file written is unclear");
                return Ok(None);
            }
        };
        let read_err = |e| StorageError::io(IoStep::Read, temp, e);
        let mut groups = Vec::with_capacity(layout.groups.len());
        for g in &layout.groups {
            let crc32 = crc_of(&source, g.offset, g.len).map_err(read_err)?;
            groups.push(GroupBlock { offset: g.offset, len: g.len, crc32, rows: g.rows, first: g.first, last: g.last });
        }
        let (offset, footer_len) = layout.footer;
        let footer =
            ByteSpan { offset, len: footer_len, crc32: crc_of(&source, offset, footer_len).map_err(read_err)? };
        let blocks = Blocks { footer, groups };
        Ok(well_formed(&blocks, len).then_some(blocks))
    }

    /// A range load proven by blocks: the footer and the groups overlapping `range` are
    /// read, each checked against its recorded CRC-32 (a mismatch is [`StorageError::Corrupt`]
    /// naming the file and the block), and only they are decoded. `file` is the file at
    /// `path`, opened as `meta`, of the record's size.
    pub(crate) fn load_blocks(
        &self,
        path: &Path,
        file: File,
        meta: &Metadata,
        record: &FileMetadata,
        blocks: &Blocks,
        range: TimeRange,
    ) -> Result<(Bars, usize, Option<i64>), StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt { path: path.to_path_buf(), reason };
        if !well_formed(blocks, meta.len()) {
            return Err(corrupt(format!(
                "the block checksums of its record ({}) do not fit a file of {} bytes",
                record.file_path,
                meta.len()
            )));
        }
        let source = Source::file(file, meta.len());
        let chosen: Vec<usize> =
            blocks.groups.iter().enumerate().filter(|(_, g)| range.overlaps(g.first, g.last)).map(|(i, _)| i).collect();
        let block_err = |bad: BadBlock| corrupt(format!("{bad} (block checksums of the record)"));
        let mut pieces = Vec::with_capacity(chosen.len() + 1);
        pieces.push((blocks.footer.offset, proven(&source, None, blocks.footer).map_err(block_err)?));
        for &g in &chosen {
            let span = blocks.groups[g].span();
            pieces.push((span.offset, proven(&source, Some(g), span).map_err(block_err)?));
        }
        tracing::debug!(
            path = %path.display(),
            groups = chosen.len(),
            of = blocks.groups.len(),
            bytes = pieces.iter().map(|(_, b)| b.len()).sum::<usize>(),
            "range read proven by block checksums"
        );
        let read = BlockRead { file_len: meta.len(), pieces, groups: chosen };
        let decoded = self.codec.decode_blocks(read, range).map_err(|e| e.at(path))?;
        into_bars(decoded, Rows::Range(range), path)
    }
}
