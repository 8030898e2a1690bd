//! CSV is both barvault's human-readable storage format and the way users bring bars in,
//! so this codec is strict about what it writes and tolerant about what it reads.
//!
//! # Writing: one canonical form
//!
//! The stored file must come back bit-for-bit and diff cleanly, and pandas and polars must
//! read it with a plain `read_csv(index_col='timestamp', parse_dates=True)` /
//! `read_csv(try_parse_dates=True)` into the same types the Parquet copy gives: float64
//! columns and a UTC timestamp. So every float is written in a shortest round-trip form,
//! never with fixed decimals that would lose `0.00000871`: plain decimals when the value is
//! exactly one with at most 8 fraction digits (what prices are, and several times cheaper
//! than ryu), ryu's form otherwise (`1e300`); integral values below 2^53 keep a `.0`
//! (`1500.0`), because a column of whole numbers without a point reads as int64 in pandas
//! and polars; `-0.0` keeps its sign; `NaN`, `inf`, `-inf` are the spellings pandas reads.
//! Timestamps are UTC `YYYY-MM-DD HH:MM:SSZ`: the `Z` makes readers type the column as
//! UTC, as they type the Parquet copy's, so the two can be joined
//! ([`CsvCodec::with_utc_marker`]`(false)` writes them naive, as barvault 0.1 did, for
//! tools that cannot read the marker). A fraction appears only
//! when some row of the file has a sub-second part, so daily and minute files stay short
//! while tick data keeps full nanosecond precision. The fraction has one width per file (the
//! narrowest exact for every row, `.146`/`.000` for millisecond ticks) rather than a trimmed
//! width per row: pandas infers one timestamp format from the first row and silently leaves
//! the whole column as strings when later rows add or drop a fraction (checked with pandas
//! 3.1). Encoding the same bars twice gives the same bytes, which lets
//! checksums detect change. Numbers are formatted straight into a byte buffer because this
//! is on the path of every import.
//!
//! # Reading: the files users already have
//!
//! Header names are matched case-insensitively after
//! [`ExtraColumn::normalize_name`](barvault_domain::ExtraColumn::normalize_name), with the aliases
//! of the usual exports (Yahoo's `Adj Close`, Barchart's `Last` and `Open Int`, Vortex's
//! `Datetime`, pandas' unnamed index column); any other column becomes an extra.
//! Timestamps may be dates, ISO date-times with `T` or a space, up to 9 fractional digits and
//! a `Z`/`±HH:MM`/`±HHMM` offset (converted to UTC; naive times are taken as UTC, and an
//! application that knows their zone converts them after decoding: [`first_utc_offset`]
//! tells whether an input has any offsets). Slash
//! dates are read only year-first: `01/02/2024` is ambiguous between the US and European
//! orders, and guessing would silently corrupt a series.
//!
//! Decisions a user can rely on:
//! - **No volume column → volume missing (NaN).** FX and index quotes often carry no
//!   volume. Refusing them would make such feeds unusable, and an invented 0 would read
//!   as "nothing traded" and be summed into resampled bars. A NaN volume is how barvault
//!   holds a missing one: validation accepts it (a negative or infinite volume is still
//!   refused), a merge never lets it erase a stored volume, and pandas reads it as missing.
//!   An empty volume cell (or `N/A`, `NULL`, …) is missing in the same way; an empty price
//!   cell is still an error.
//! - **Split `date,time` rows are supported.** Some exports (backtrader's ESTX50 minute file)
//!   name one `Date` column but write the date and time as two fields. When the first data
//!   row has exactly one field more than the header and its timestamp field and the next are
//!   a date and a time of day, the whole file is read that way. The shape is unambiguous (a
//!   time of day is never a price), and refusing would reject real data users own. A header
//!   with separate `Date` and `Time` columns is joined the same way.
//! - Empty cells of extra columns (and `N/A`, `NULL`, …) are missing values; an empty core
//!   cell is an error, because a bar without a close is not a bar.
//! - Rows whose cells are all blank, and Barchart's `Downloaded from Barchart.com…` footer,
//!   are skipped; Barchart's `+1.2%` and `unch` cells are read as 1.2 and 0.
//! - Every row is parsed even when a time range is asked for, so a damaged file fails the
//!   same way whatever range a reader asks for.
//!
//! - Input is decoded in pieces of about 1 MiB cut at line ends, never held whole: a file
//!   is read piece by piece, and from 4 MiB on the pieces are decoded on every core, each
//!   straight into its own stretch of the final columns (sized by counting its line ends)
//!   and taken in file order, so a 50 MB import holds its decoded columns and a few MB of
//!   text, not both whole, and (when every line is a row) no decoded row is copied. The
//!   header and the first data row (which decides the split `date,time` layout) are read
//!   first, on the caller's thread. Each piece counts its line ends, so an error names the
//!   exact physical line of the whole input, and the first error in file order is the one
//!   reported. Quote-free text splits into the same records wherever it is cut at a line
//!   end; a `"` could open a field holding line ends, so from the first piece with a `"` the
//!   rest of the input is read whole and decoded by csv's reader on one thread (quoted files
//!   decode the same, just not in parallel).
//! - **No line longer than 1 MiB** (1,048,576 bytes before its line end; 16 times the
//!   longest line barvault needs, a header of 1,024 names of 64 characters). A longer line
//!   is refused as soon as it is seen, naming its line and the bytes seen of it, without
//!   reading the rest of the input: a file of one endless line costs a few MiB, never its size.
//!
//! Every refusal is a [`CodecError::Parse`] carrying the 1-based physical line, the column
//! as written in the header and the offending text; no input bytes can make the reader panic.

mod decode;
mod encode;
mod keep;
mod number;
mod rows;
mod timestamp;

use std::io::Write;

use barvault_domain::{Bars, RawBars, SeriesKey, TimeRange};
use barvault_ports::{
    BarCodec, CodecError, CodecInput, Continuation, Decoded, Keep, KeptPrefix, Rows as Select, StoredBytes,
};

pub use encode::{encode_bars, encode_to_vec};
pub use number::{parse_f64, write_f64};
pub use rows::{data_row_lines, first_utc_offset};
pub use timestamp::{TimestampError, format_timestamp_csv, fraction_digits, has_utc_offset, parse_timestamp};

/// The CSV [`BarCodec`] (format and extension `csv`).
///
/// Writes timestamps with the UTC marker `Z` by default ([`CsvCodec::with_utc_marker`]
/// chooses naive timestamps); reads both, and every dialect of the crate docs, whatever it
/// writes. `CsvCodec` is also a constant of the default codec, so the name alone is a
/// value as it was when the codec had no settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CsvCodec {
    style: encode::Style,
}

/// The codec with the default format, as a value: `CsvCodec.encode(..)`, `FileStore::new(dir, CsvCodec)`.
#[allow(non_upper_case_globals)]
pub const CsvCodec: CsvCodec = CsvCodec::new();

impl Default for CsvCodec {
    fn default() -> Self {
        CsvCodec::new()
    }
}

impl CsvCodec {
    /// The default format: timestamps end in `Z`.
    pub const fn new() -> Self {
        CsvCodec { style: encode::DEFAULT_STYLE }
    }

    /// Timestamps end in `Z` (UTC) when `on`, or are naive (and still UTC) otherwise.
    pub const fn with_utc_marker(on: bool) -> Self {
        CsvCodec { style: encode::Style { utc_marker: on } }
    }

    /// Whether written timestamps end in `Z`.
    pub const fn utc_marker(&self) -> bool {
        self.style.utc_marker
    }

    /// Decodes CSV held in memory; see the crate docs for what is accepted.
    pub fn decode_bytes(&self, bytes: &[u8], range: Option<TimeRange>) -> Result<RawBars, CodecError> {
        decode::decode_slice(bytes, range)
    }

    /// Decodes CSV from a stream of about `size` bytes (0 when unknown: standard input, a
    /// decompressor), read piece by piece as a file is.
    pub fn decode_reader(
        &self,
        reader: impl std::io::Read,
        size: usize,
        range: Option<TimeRange>,
    ) -> Result<RawBars, CodecError> {
        decode::decode_reader(reader, size, range)
    }

    /// The whole encoding of `bars` in this codec's format, in memory.
    pub fn encode_to_vec(&self, bars: &Bars) -> Vec<u8> {
        encode::encode_to_vec_styled(bars, self.style)
    }
}

impl BarCodec for CsvCodec {
    fn format(&self) -> &'static str {
        "csv"
    }

    fn encode(&self, bars: &Bars, _series: &SeriesKey, out: &mut (dyn Write + Send)) -> Result<(), CodecError> {
        encode::encode_part(bars, 0..bars.len(), true, self.style, out)?;
        Ok(())
    }

    /// Every row is parsed whatever is asked (a damaged file fails alike for every
    /// reader); a range keeps only its rows, `From` keeps every row (a CSV file has no
    /// blocks with time bounds to skip), `Nothing` reads nothing.
    fn decode(&self, input: CodecInput<'_>, rows: Select) -> Result<Decoded, CodecError> {
        let range = match rows {
            Select::Nothing => return Ok(Decoded::whole(RawBars::default())),
            Select::Range(r) => Some(r),
            Select::All | Select::From(_) => None,
        };
        let raw = match input {
            CodecInput::Bytes(bytes) => self.decode_bytes(bytes, range)?,
            CodecInput::Shared(bytes) => self.decode_bytes(&bytes, range)?,
            CodecInput::File(file) => {
                let size = file.metadata().map_or(0, |m| usize::try_from(m.len()).unwrap_or(0));
                decode::decode_reader(file, size, range)?
            }
        };
        Ok(Decoded::whole(raw))
    }

    /// The stored lines of the unchanged rows, up to a boundary line that re-encodes
    /// identically (see `keep`).
    fn keepable(
        &self,
        stored: &dyn StoredBytes,
        next: Continuation<'_>,
        keep: Keep,
    ) -> Result<Option<KeptPrefix>, CodecError> {
        keep::keepable(stored, next, keep, self.style)
    }

    fn encode_after(
        &self,
        _stored: &dyn StoredBytes,
        kept: KeptPrefix,
        next: Continuation<'_>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CodecError> {
        keep::encode_after(kept, next, self.style, out)
    }

    /// The lines of the new rows, when the stored file is of this codec's style (see `keep`).
    fn append_after(&self, stored: &dyn StoredBytes, bars: &Bars) -> Result<Option<Vec<u8>>, CodecError> {
        keep::append_after(stored, bars, self.style)
    }

    fn continues_files(&self) -> bool {
        true
    }
}
