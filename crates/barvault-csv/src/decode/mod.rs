//! CSV bytes (barvault's own or a user's export) -> RawBars.
//!
//! `header` resolves the header to the fields of each column, `scan` splits quote-free
//! text into records and decodes them into rows, `sink` holds the decoded columns,
//! `source` cuts the input into pieces at line ends, and `parallel` decodes the pieces on
//! worker threads. This module reads the header and first row, then drives the rest.

use std::io::Read;

use barvault_domain::{ExtraColumn, RawBars, TimeRange};
use barvault_ports::CodecError;

mod header;
mod parallel;
mod scan;
mod sink;
mod source;

use header::Layout;
use parallel::decode_parallel;
pub(crate) use scan::{Fields, is_ignorable, line_of};
use scan::{Rows, csv_error, decode_piece, has_quote, scan_records, shift_line};
use sink::Columns;
use source::{ReadSource, SliceSource, Source, source_error};

/// The decoder of a whole input, fed its records in file order.
#[derive(Debug)]
struct Decoder {
    /// Known once the header is read.
    layout: Option<Layout>,
    /// The first data record decides whether rows split the timestamp in two fields.
    first_row_pending: bool,
    rows: Rows,
    out: Columns,
    rows_hint: usize,
}

impl Decoder {
    fn new(range: TimeRange, rows_hint: usize) -> Self {
        Decoder {
            layout: None,
            first_row_pending: true,
            rows: Rows::new(range),
            out: Columns::with_capacity(rows_hint, 0),
            rows_hint,
        }
    }

    fn record(&mut self, record: &impl Fields, line: impl Fn() -> u64) -> Result<(), CodecError> {
        let Some(layout) = &mut self.layout else {
            let layout = Layout::from_header(record, line())?;
            self.out.extras = layout.extras.iter().map(|_| Vec::with_capacity(self.rows_hint)).collect();
            self.layout = Some(layout);
            return Ok(());
        };
        if self.first_row_pending {
            self.first_row_pending = false;
            if layout.looks_split(record, &mut self.rows.parser) {
                layout.split_rows();
            }
        }
        self.rows.row(layout, record, line, &mut self.out)
    }

    /// Whether the layout is final, so the rest can be decoded in independent pieces.
    fn settled(&self) -> bool {
        self.layout.is_some() && !self.first_row_pending
    }

    /// Feeds every record of `text` through csv's reader (the path for quoted fields).
    /// `text` starts at a record boundary after `lines_before` line ends of the input.
    fn feed_csv(&mut self, text: &[u8], lines_before: u64) -> Result<(), CodecError> {
        let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text);
        let mut record = csv::ByteRecord::new();
        while csv.read_byte_record(&mut record).map_err(|e| shift_line(csv_error(e), lines_before))? {
            self.record(&record, || lines_before + line_of(text, &record))?;
        }
        Ok(())
    }

    /// Feeds every record of `text`, which holds no `"` and starts at a record boundary
    /// after `lines_before` line ends; returns the count of line ends in `text`.
    fn feed_plain(&mut self, text: &[u8], lines_before: u64) -> Result<u64, CodecError> {
        // The rest of the first piece, once settled, is decoded as `decode_piece` would.
        let newlines = scan_records(
            text,
            self,
            |d, rest| match &d.layout {
                Some(layout) if !d.first_row_pending && layout.is_canonical() => d.rows.canonical(rest, &mut d.out),
                _ => None,
            },
            |d, line, newlines| d.record(line, || lines_before + newlines + 1),
        )?;
        // The caller checked for quotes; should one slip through, csv's reader is never wrong.
        newlines.ok_or_else(|| CodecError::Corrupt("quoted text in a quote-free piece".into()))
    }

    fn finish(self) -> Result<RawBars, CodecError> {
        let Some(layout) = self.layout else {
            return Err(CodecError::parse(Some(1), None, None, "empty input: no header line"));
        };
        let mut out = self.out.bars;
        for (col, values) in layout.extras.iter().zip(self.out.extras) {
            out.extras.push(ExtraColumn::new(&col.name, values)?);
        }
        Ok(out)
    }
}

/// How the input is cut and spread over threads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Bytes per piece (rounded up to a line end).
    pub(crate) chunk: usize,
    /// Decoding threads; 1 decodes on the caller's thread, 0 means one per core (up to 4),
    /// asked of the system only for inputs large enough to use them.
    pub(crate) workers: usize,
    /// Inputs smaller than this are decoded on the caller's thread.
    pub(crate) parallel_min: usize,
}

/// A 1M-row minute file is ~50 pieces: enough to keep two cores busy to the end, few enough
/// that the per-piece cost is nothing, and with at most `2 × workers` pieces in flight the
/// input held in memory stays at a few MB whatever the file size.
const CHUNK: usize = 1 << 20;

impl Default for Tuning {
    fn default() -> Self {
        Tuning { chunk: CHUNK, workers: 0, parallel_min: 4 * CHUNK }
    }
}

/// Decodes a whole CSV stream held in memory, keeping the rows whose timestamp is in `range`.
///
/// Every row is parsed, also those outside `range`, so a damaged file fails the same way
/// whatever range is asked for.
pub(crate) fn decode_slice(input: &[u8], range: Option<TimeRange>) -> Result<RawBars, CodecError> {
    decode_slice_with(input, range, Tuning::default())
}

pub(crate) fn decode_slice_with(input: &[u8], range: Option<TimeRange>, tuning: Tuning) -> Result<RawBars, CodecError> {
    decode_source(SliceSource { input, pos: 0, chunk: tuning.chunk }, range, tuning)
}

/// Decodes a stream of `size` bytes (0 when unknown) read in pieces, never holding more than
/// a few pieces of it (unless it has quoted fields: see [`decode_source`]).
pub(crate) fn decode_reader(reader: impl Read, size: usize, range: Option<TimeRange>) -> Result<RawBars, CodecError> {
    decode_reader_with(reader, size, range, Tuning::default())
}

pub(crate) fn decode_reader_with(
    reader: impl Read,
    size: usize,
    range: Option<TimeRange>,
    tuning: Tuning,
) -> Result<RawBars, CodecError> {
    decode_source(ReadSource::new(reader, size, tuning.chunk), range, tuning)
}

/// The decode: the header and first data row on this thread, then the rest in pieces cut at
/// line ends, decoded on `tuning.workers` threads (each straight into its own stretch of
/// the final columns, see [`decode_parallel`]) and taken in file order.
///
/// Line numbers of errors are those of the whole input (each piece counts its line ends),
/// and the error reported is the first in file order: pieces are taken in order and the
/// first failing one stops the decode. Quote-free text cut at a line end is split into the
/// same records whatever comes before, so pieces are independent; a `"` could open a field
/// that spans line ends, so from the first piece holding one, the rest of the input is
/// decoded on this thread by csv's reader, as one piece.
fn decode_source<S: Source>(mut src: S, range: Option<TimeRange>, tuning: Tuning) -> Result<RawBars, CodecError> {
    let range = range.unwrap_or_else(TimeRange::all);
    let size = src.size_hint();
    // About 50 bytes per row in the common layouts: reserve once instead of regrowing. A
    // large input gets room for its first piece only, and its full size once the first rows
    // tell the bytes per row (growing then copies one piece at most).
    let head_rows = (size / 48).min(src.chunk_size() / 24 + 64);
    let mut decoder = Decoder::new(range, head_rows);
    let mut lines_before = 0u64;
    let mut consumed = 0usize;
    while !decoder.settled() {
        let Some(chunk) = src.next_chunk().map_err(|e| source_error(e, lines_before))? else {
            return decoder.finish();
        };
        if has_quote(chunk.as_ref()) {
            let rest = src.rest(vec![chunk]).map_err(|e| source_error(e, lines_before))?;
            decoder.feed_csv(rest.as_ref(), lines_before)?;
            return decoder.finish();
        }
        lines_before += decoder.feed_plain(chunk.as_ref(), lines_before)?;
        consumed += chunk.as_ref().len();
        src.recycle(chunk);
    }
    // Size the columns from the rows per byte so far: capacity never written is address
    // space, not memory, while regrowing would copy every column.
    let total_rows = if decoder.out.len() > 0 && size > consumed {
        let per_byte = decoder.out.len() as f64 / consumed as f64;
        (per_byte * size as f64 * 1.05) as usize + 1024
    } else {
        0
    };
    let quoted = match &mut decoder {
        Decoder { layout: Some(layout), out, .. } => {
            let workers = match tuning.workers {
                _ if size < tuning.parallel_min => 1,
                0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(4),
                n => n,
            };
            if workers > 1 {
                decode_parallel(&mut src, layout, range, out, total_rows, &mut lines_before, workers)?
            } else {
                out.reserve_total(total_rows);
                decode_sequential(&mut src, layout, range, out, &mut lines_before)?
            }
        }
        Decoder { layout: None, .. } => None,
    };
    if let Some(chunks) = quoted {
        let rest = src.rest(chunks).map_err(|e| source_error(e, lines_before))?;
        decoder.feed_csv(rest.as_ref(), lines_before)?;
    }
    decoder.finish()
}

/// The quote-free pieces of the rest of `src`, one after the other on this thread. Returns
/// the piece holding a `"`, if one does, undecoded.
fn decode_sequential<S: Source>(
    src: &mut S,
    layout: &Layout,
    range: TimeRange,
    out: &mut Columns,
    lines_before: &mut u64,
) -> Result<Option<Vec<S::Chunk>>, CodecError> {
    while let Some(chunk) = src.next_chunk().map_err(|e| source_error(e, *lines_before))? {
        if has_quote(chunk.as_ref()) {
            return Ok(Some(vec![chunk]));
        }
        let newlines = decode_piece(layout, range, chunk.as_ref(), out).map_err(|e| shift_line(e, *lines_before))?;
        *lines_before += newlines.unwrap_or(0);
        src.recycle(chunk);
    }
    Ok(None)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod region_tests;

#[cfg(test)]
mod bound_tests;
