//! The Parquet file format for barvault, as a [`BarCodec`] the file store plugs in.
//!
//! Parquet is the format users hand to pandas, pyarrow and polars, so written files stay
//! plain: a UTC nanosecond `timestamp` column, non-null `Float64` core columns, nullable
//! `Float64` extras, no pandas index metadata, and the seed's key-value metadata
//! (`barvault_version`, `instrument_symbol`, `instrument_type`, `period`, `created_at`).
//! Floats are stored as IEEE bits, so every value (−0.0, subnormals, NaN) reads back
//! bit-exactly.
//!
//! Files are cut into row groups of bounded size with timestamp statistics, so a range
//! read decodes only the row groups that can hold rows of the range and then trims to it
//! exactly; [`DecodeStats`] reports how much was skipped.
//!
//! Decoding is lenient about the files users import, because those come from many
//! writers: timestamps of any unit, UTC, naive (taken as UTC) or with another zone (Arrow
//! stores instants, so the zone is display only), or Date32/Date64 (midnight UTC);
//! integer and Float32 columns widened to f64 (integers beyond 2^53 round); names
//! matched case-insensitively with the aliases `datetime`/`date`/`time`, `last` and `vol`;
//! every other numeric column kept as an extra under [`ExtraColumn::normalize_name`].
//! Non-numeric columns (a `symbol` string, booleans, decimals) are skipped rather than
//! refused, since exports often carry them and they are not bar data. What cannot be
//! bars is refused with the column and the type found; what is not Parquet at all is
//! [`CodecError::Corrupt`].
//!
//! [`ExtraColumn::normalize_name`]: barvault_domain::ExtraColumn::normalize_name

mod blocks;
mod compression;
mod decode;
mod encode;
mod error;
mod keep;

use std::io::Write;
use std::panic::AssertUnwindSafe;

use barvault_domain::{Bars, RawBars, SeriesKey, TimeRange};
use barvault_ports::{
    BarCodec, BlockLayout, BlockRead, CodecError, CodecInput, Continuation, Decoded, Keep, KeptPrefix, Rows,
    StoredBytes,
};
use bytes::Bytes;

pub use compression::{ParquetCompression, UnknownCompression};
pub use decode::DecodeStats;
use decode::Select;
pub use encode::{META_CREATED_AT, META_PERIOD, META_SYMBOL, META_TYPE, META_VERSION, arrow_schema};

/// Reads and writes bars as Parquet files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetCodec {
    compression: ParquetCompression,
    row_group_rows: usize,
}

/// Shared bytes as [`Bytes`] without a copy: the buffer is kept alive by its `Arc`.
fn shared(bytes: std::sync::Arc<Vec<u8>>) -> Bytes {
    struct Owner(std::sync::Arc<Vec<u8>>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            self.0.as_slice()
        }
    }
    Bytes::from_owner(Owner(bytes))
}

impl Default for ParquetCodec {
    fn default() -> Self {
        Self::new(ParquetCompression::default())
    }
}

impl ParquetCodec {
    /// Rows per row group. 128k one-minute bars are about three months of a 24h market:
    /// small enough that a one-day range read decodes one group, large enough that encode
    /// time and file size do not move (docs/BENCHMARKS.md, "Tuning constants").
    pub const DEFAULT_ROW_GROUP_ROWS: usize = 128 * 1024;

    pub fn new(compression: ParquetCompression) -> Self {
        Self { compression, row_group_rows: Self::DEFAULT_ROW_GROUP_ROWS }
    }

    /// Sets the maximum rows per row group (at least 1).
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    pub fn compression(&self) -> ParquetCompression {
        self.compression
    }

    pub fn row_group_rows(&self) -> usize {
        self.row_group_rows
    }

    /// Like [`BarCodec::decode`], and also reports how many row groups were pruned.
    pub fn decode_with_stats(
        &self,
        input: CodecInput<'_>,
        range: Option<TimeRange>,
    ) -> Result<(RawBars, DecodeStats), CodecError> {
        // The parquet decoder trusts page headers and lengths and can panic on damaged
        // pages (found by the flip proptest: bit-chunk bounds, negative offsets). A damaged
        // file must be a data error the store can fall back from, not a crash, so a panic
        // inside the decode is caught and reported as corruption. Only locals of this call
        // are touched inside, so nothing observes state left behind by the unwind.
        let select = Select::Range(range);
        let run = || match input {
            CodecInput::File(file) => decode::decode_chunks(file, select),
            CodecInput::Bytes(bytes) => decode::decode_chunks(Bytes::copy_from_slice(bytes), select),
            CodecInput::Shared(bytes) => decode::decode_chunks(shared(bytes), select),
        };
        guarded(run).map(|(raw, stats, _)| (raw, stats))
    }

    /// The rows from the first row group that may hold a timestamp at or after `from`,
    /// and one row before it when there is one (see [`Rows::From`]), with what the decode did.
    pub fn decode_tail_with_stats(
        &self,
        input: CodecInput<'_>,
        from: i64,
    ) -> Result<(Decoded, DecodeStats), CodecError> {
        let bytes = match input {
            CodecInput::Bytes(b) => Bytes::copy_from_slice(b),
            CodecInput::Shared(b) => shared(b),
            CodecInput::File(mut f) => {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut buf)?;
                Bytes::from(buf)
            }
        };
        let (raw, stats, skipped) = guarded(|| decode::decode_chunks(bytes.clone(), Select::From(from)))?;
        // Statistics promise the skipped rows are earlier than `from`; the rows read must
        // all come after them too, or the file is not in order and is read whole.
        let after = |hi: i64| raw.ts.iter().all(|&t| t > hi);
        match skipped.bounds {
            Some((lo, hi)) if skipped.rows > 0 && after(hi) => {
                Ok((Decoded { skipped: skipped.rows, first: Some(lo), raw }, stats))
            }
            None if skipped.rows == 0 => Ok((Decoded::whole(raw), stats)),
            _ => {
                let (raw, stats, _) = guarded(|| decode::decode_chunks(bytes, Select::Range(None)))?;
                Ok((Decoded::whole(raw), stats))
            }
        }
    }
}

impl ParquetCodec {
    /// [`BarCodec::decode_blocks`], with what the decode did: only groups of `read.groups`
    /// whose statistics overlap `range` are decoded, then trimmed to it.
    pub fn decode_blocks_with_stats(
        &self,
        read: BlockRead,
        range: TimeRange,
    ) -> Result<(RawBars, DecodeStats), CodecError> {
        let (pieces, groups) = blocks::pieces_of(read);
        guarded(|| decode::decode_groups(pieces, Select::Range(Some(range)), Some(&groups)))
            .map(|(raw, stats, _)| (raw, stats))
    }
}

/// Runs a decode, turning a panic of the parquet decoder into a corruption error.
fn guarded<T>(run: impl FnOnce() -> Result<T, CodecError>) -> Result<T, CodecError> {
    std::panic::catch_unwind(AssertUnwindSafe(run))
        .unwrap_or_else(|payload| Err(decode::decoder_panic(payload.as_ref())))
}

impl BarCodec for ParquetCodec {
    fn format(&self) -> &'static str {
        "parquet"
    }

    fn encode(&self, bars: &Bars, series: &SeriesKey, out: &mut (dyn Write + Send)) -> Result<(), CodecError> {
        self.encode_bars(bars, series, out)
    }

    /// Reads a Parquet file; with a range, only row groups whose timestamp statistics
    /// overlap it are decoded (then trimmed to it by the caller), and with `From` only the
    /// groups from the first that may hold the timestamp, by the same statistics.
    fn decode(&self, input: CodecInput<'_>, rows: Rows) -> Result<Decoded, CodecError> {
        match rows {
            Rows::Nothing => Ok(Decoded::whole(RawBars::default())),
            Rows::All => self.decode_with_stats(input, None).map(|(raw, _)| Decoded::whole(raw)),
            Rows::Range(r) => self.decode_with_stats(input, Some(r)).map(|(raw, _)| Decoded::whole(raw)),
            Rows::From(from) => self.decode_tail_with_stats(input, from).map(|(d, _)| d),
        }
    }

    fn has_blocks(&self) -> bool {
        true
    }

    /// The footer and the row groups (see `blocks`).
    fn layout(&self, stored: &dyn StoredBytes) -> Result<Option<BlockLayout>, CodecError> {
        guarded(|| blocks::layout(stored))
    }

    fn decode_blocks(&self, read: BlockRead, range: TimeRange) -> Result<Decoded, CodecError> {
        self.decode_blocks_with_stats(read, range).map(|(raw, _)| Decoded::whole(raw))
    }

    /// The leading row groups of `stored` that hold only unchanged rows (see `keep`).
    fn keepable(
        &self,
        stored: &dyn StoredBytes,
        next: Continuation<'_>,
        keep: Keep,
    ) -> Result<Option<KeptPrefix>, CodecError> {
        let bytes = stored.all()?;
        Ok(keep::keepable(&bytes, next.bars, keep.unchanged))
    }

    fn encode_after(
        &self,
        stored: &dyn StoredBytes,
        kept: KeptPrefix,
        next: Continuation<'_>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CodecError> {
        let bytes = stored.all()?;
        let job = keep::After { bars: next.bars, skipped: next.skipped, series: next.series, stored: &bytes, kept };
        self.encode_after_kept(job, out)
    }
}
