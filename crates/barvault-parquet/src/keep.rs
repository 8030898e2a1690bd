//! Keeping a stored file's leading row groups byte for byte.
//!
//! A nightly update changes the last rows of a series, and re-encoding, compressing and
//! hashing every row group of the Parquet copy again was the largest part of that write
//! after the checksums. Row groups are encoded independently, so the groups that hold
//! only unchanged rows are kept as stored: the new file starts with the stored bytes up to
//! the end of the last such group (the store copies them and resumes their MD5), and the
//! writer appends those groups' column chunks unchanged (`append_column`, which records
//! them in the new footer at the same offsets) before encoding the rest.
//!
//! Kept only when the stored file is laid out as barvault writes it: the magic, then
//! every column chunk of every group back to back in schema order, with the schema the
//! new bars would get. The bytes the writer produces for the kept groups are compared
//! with the stored ones as they pass, so a layout this module misjudged fails the write
//! (and the store encodes the file whole) instead of producing a file whose checksum
//! describes other bytes.
use std::io::{self, Cursor, Write};

use barvault_domain::{Bars, SeriesKey};
use barvault_ports::{CodecError, KeptPrefix};
use bytes::Bytes;
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{Encoding, PageType};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ColumnChunkMetaData, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use crate::ParquetCodec;
use crate::encode::arrow_schema;
use crate::error::from_parquet_on_write;

/// A stored file in memory, as the parquet reader API wants it.
struct Stored<'a>(&'a [u8]);

impl Length for Stored<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

impl<'a> ChunkReader for Stored<'a> {
    type T = Cursor<&'a [u8]>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(self.0.len());
        Ok(Cursor::new(&self.0[start..]))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        match start.checked_add(length).and_then(|end| self.0.get(start..end)) {
            Some(bytes) => Ok(Bytes::copy_from_slice(bytes)),
            None => Err(parquet::errors::ParquetError::EOF(format!("{length} bytes at {start} past the end"))),
        }
    }
}

/// The footer (and offset index) of `stored`, `None` if it does not parse.
fn metadata(stored: &[u8]) -> Option<ParquetMetaData> {
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&Stored(stored))
        .ok()
}

/// How many leading row groups of `meta` may be kept for a file of `bars` whose first
/// `unchanged` rows are the stored ones, and the bytes and rows they end at.
fn plan(meta: &ParquetMetaData, bars: &Bars, unchanged: usize) -> Option<(usize, KeptPrefix)> {
    let schema = ArrowSchemaConverter::new().convert(&arrow_schema(bars)).ok()?;
    if meta.file_metadata().schema_descr().columns() != schema.columns() {
        return None;
    }
    let (mut groups, mut bytes, mut rows) = (0, 4u64, 0usize);
    for group in meta.row_groups() {
        let group_rows = usize::try_from(group.num_rows()).ok()?;
        if rows.checked_add(group_rows).is_none_or(|end| end > unchanged) {
            break;
        }
        let mut end = bytes;
        for chunk in group.columns() {
            let start = chunk.dictionary_page_offset().unwrap_or_else(|| chunk.data_page_offset());
            let size = u64::try_from(chunk.compressed_size()).ok()?;
            if u64::try_from(start).ok()? != end {
                // Not back to back: keep the groups before this one.
                return (groups > 0).then_some((groups, KeptPrefix { bytes, rows }));
            }
            end = end.checked_add(size)?;
        }
        (groups, bytes, rows) = (groups + 1, end, rows + group_rows);
    }
    (groups > 0).then_some((groups, KeptPrefix { bytes, rows }))
}

/// Whether the chunk holds plain-encoded data pages: its column has more distinct values
/// per row than a dictionary pays for, so the writer gave up on it (or never started).
///
/// Why the new row groups follow the last kept one: a daily series (~0.6 distinct prices
/// per row) fills each group's dictionary after a few hundred values and falls back, so
/// every update hashed those values, compressed a dictionary page and wrote index pages
/// only to give up; with the kept group as evidence the tail is written plain from its
/// first value. Columns whose kept group is all dictionary-encoded (prices of minute
/// bars) keep the dictionary. A full encode decides by the dictionary limit alone, so a
/// series whose prices change character is judged afresh at its next full write.
fn fell_back(chunk: &ColumnChunkMetaData) -> bool {
    let data_page = |t: PageType| matches!(t, PageType::DATA_PAGE | PageType::DATA_PAGE_V2);
    match (chunk.page_encoding_stats(), chunk.page_encoding_stats_mask()) {
        (Some(stats), _) => stats.iter().any(|s| data_page(s.page_type) && s.encoding == Encoding::PLAIN),
        (None, Some(mask)) => mask.is_set(Encoding::PLAIN),
        (None, None) => false,
    }
}

/// Passes what is written after the first `expect.len()` bytes; those must equal `expect`.
struct AfterKept<'a, 'o> {
    expect: &'a [u8],
    seen: usize,
    out: &'o mut (dyn Write + Send),
}

impl Write for AfterKept<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.expect.len() - self.seen;
        if left == 0 {
            return self.out.write(buf);
        }
        let n = left.min(buf.len());
        if buf[..n] != self.expect[self.seen..self.seen + n] {
            return Err(io::Error::other(format!(
                "kept row groups came out different from the stored bytes at offset {}",
                self.seen
            )));
        }
        self.seen += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// [`barvault_ports::BarCodec::keepable`] for Parquet.
pub(crate) fn keepable(stored: &[u8], bars: &Bars, unchanged: usize) -> Option<KeptPrefix> {
    plan(&metadata(stored)?, bars, unchanged).map(|(_, kept)| kept)
}

/// What [`barvault_ports::BarCodec::encode_after`] asks for, by `codec`.
pub(crate) struct After<'a> {
    /// The new file's rows from `skipped` on.
    pub(crate) bars: &'a Bars,
    pub(crate) skipped: usize,
    pub(crate) series: &'a SeriesKey,
    pub(crate) stored: &'a [u8],
    pub(crate) kept: KeptPrefix,
}

impl ParquetCodec {
    pub(crate) fn encode_after_kept(&self, job: After<'_>, out: &mut (dyn Write + Send)) -> Result<(), CodecError> {
        let After { bars, skipped, series, stored, kept } = job;
        let corrupt = |what: &str| CodecError::Corrupt(format!("cannot keep the stored row groups: {what}"));
        let meta = metadata(stored).ok_or_else(|| corrupt("the stored footer does not parse"))?;
        let (groups, planned) = plan(&meta, bars, kept.rows).ok_or_else(|| corrupt("no group can be kept"))?;
        let expect = usize::try_from(kept.bytes).ok().and_then(|n| stored.get(..n));
        let expect = match expect {
            Some(expect) if planned == kept && kept.rows >= skipped => expect,
            _ => return Err(corrupt("the plan changed")),
        };
        let mut after = AfterKept { expect, seen: 0, out };
        let plain = meta.row_groups()[..groups].last().map_or_else(Vec::new, |last| {
            last.columns().iter().filter(|c| fell_back(c)).map(|c| c.column_path().clone()).collect()
        });
        let rows = skipped.saturating_add(bars.len());
        let mut writer = self.file_writer(bars, rows, series, &plain, &mut after)?;
        let reader = Stored(stored);
        let page_index = meta.page_index();
        for (g, group) in meta.row_groups()[..groups].iter().enumerate() {
            let rows = u64::try_from(group.num_rows()).map_err(|_| corrupt("negative row count"))?;
            let mut target = writer.next_row_group().map_err(from_parquet_on_write)?;
            for (c, chunk) in group.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: u64::try_from(chunk.compressed_size()).map_err(|_| corrupt("negative size"))?,
                    rows_written: rows,
                    metadata: chunk.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: page_index.and_then(|p| p.offset_index(g, c)).cloned(),
                };
                target.append_column(&reader, close).map_err(from_parquet_on_write)?;
            }
            target.close().map_err(from_parquet_on_write)?;
        }
        self.write_groups(&mut writer, bars, skipped, kept.rows)?;
        writer.close().map_err(from_parquet_on_write)?;
        if after.seen != expect.len() {
            return Err(corrupt("the kept row groups came out shorter than stored"));
        }
        Ok(())
    }
}
