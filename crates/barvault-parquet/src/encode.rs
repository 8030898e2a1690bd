use std::io::{self, Write};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use barvault_domain::{Bars, SeriesKey};
use barvault_ports::CodecError;
use chrono::{SecondsFormat, Utc};
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::Encoding;
use parquet::column::writer::ColumnWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::ColumnPath;

use crate::ParquetCodec;
use crate::error::from_parquet_on_write;

/// The time zone written on the timestamp column, so pandas, pyarrow and polars show UTC.
pub(crate) const UTC: &str = "UTC";

/// Most bytes of dictionary per column chunk before falling back to plain encoding.
const DICTIONARY_PAGE_LIMIT: usize = 128 * 1024;

/// Below the cap, a chunk's dictionary may hold 2 bytes per row of its row group (one
/// distinct double per 4 rows) before the column falls back to plain; the writer checks
/// the limit while it adds values, so a column that crosses it stops hashing there.
///
/// Why: a daily series on a cent grid has ~0.6 distinct prices per row, too many for a
/// dictionary to pay (it comes out no smaller after compression) while interning them is
/// most of the encode; minute bars have fewer and keep theirs. The figures are in
/// docs/BENCHMARKS.md ("Tuning constants").
const DICTIONARY_BYTES_PER_ROW: usize = 2;

/// Values handed to the page encoders at a time; page and dictionary limits are checked
/// between batches. Pages still end at 20,000 rows (measured: docs/BENCHMARKS.md, "Tuning
/// constants").
const WRITE_BATCH_SIZE: usize = 32 * 1024;

/// Key-value metadata every written file carries (the seed's fields).
pub const META_VERSION: &str = "barvault_version";
pub const META_SYMBOL: &str = "instrument_symbol";
pub const META_TYPE: &str = "instrument_type";
pub const META_PERIOD: &str = "period";
pub const META_CREATED_AT: &str = "created_at";

/// The Arrow schema of a file holding `bars`: core columns non-null, extras nullable, in Bars order.
pub fn arrow_schema(bars: &Bars) -> Schema {
    let mut fields = Vec::with_capacity(6 + bars.extras().len());
    fields.push(Field::new("timestamp", DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into())), false));
    for name in ["open", "high", "low", "close", "volume"] {
        fields.push(Field::new(name, DataType::Float64, false));
    }
    for extra in bars.extras() {
        fields.push(Field::new(extra.name(), DataType::Float64, true));
    }
    Schema::new(fields)
}

fn key_value_metadata(series: &SeriesKey) -> Vec<KeyValue> {
    let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    vec![
        KeyValue::new(META_VERSION.into(), env!("CARGO_PKG_VERSION").to_string()),
        KeyValue::new(META_SYMBOL.into(), series.instrument.symbol().as_str().to_string()),
        KeyValue::new(META_TYPE.into(), series.instrument.kind().as_str().to_string()),
        KeyValue::new(META_PERIOD.into(), series.period.as_str().to_string()),
        KeyValue::new(META_CREATED_AT.into(), created_at),
    ]
}

impl ParquetCodec {
    /// `group_rows`: rows of the file's largest row group (sizes the dictionary limit).
    ///
    /// `plain`: value columns written without a dictionary (see `keep::fell_back`).
    fn writer_properties(&self, series: &SeriesKey, group_rows: usize, plain: &[ColumnPath]) -> WriterProperties {
        // Prices sit on a tick grid, so a row group holds few distinct values: dictionary
        // encoding halves the file and doubles decode speed (1M bars: 9.4 vs 18 MiB). Its
        // page is capped at 128 KiB (16k values), and below 64k rows per group at 2 bytes
        // (a quarter of a value) per row, so high-cardinality columns (adjusted prices,
        // daily prices of a small file) fall back to plain early instead of hashing every
        // value (see `DICTIONARY_BYTES_PER_ROW`). Unique
        // timestamps skip the dictionary and use DELTA_BINARY_PACKED, a few bits per row for
        // regular bars, read by pyarrow, polars and Spark alike. Volumes skip it too: they
        // take tens of thousands of distinct values per row group, so the dictionary only
        // filled up before falling back to plain; BYTE_STREAM_SPLIT instead groups the
        // bytes of whole-number floats (mostly zero low mantissa bytes) so the page
        // compressor squeezes them (1M bars: 10.5 vs 12.5 MB, and ~15% less encode time).
        // Row groups are cut by `encode_bars`, not by a writer limit.
        let timestamp = ColumnPath::from("timestamp");
        let volume = ColumnPath::from("volume");
        let mut builder = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(self.compression.to_parquet())
            .set_dictionary_enabled(true)
            .set_dictionary_page_size_limit(dictionary_page_limit(group_rows))
            .set_column_dictionary_enabled(timestamp.clone(), false)
            .set_column_encoding(timestamp, Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled(volume.clone(), false)
            .set_column_encoding(volume, Encoding::BYTE_STREAM_SPLIT)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_write_batch_size(WRITE_BATCH_SIZE)
            .set_key_value_metadata(Some(key_value_metadata(series)));
        for column in plain {
            builder = builder.set_column_dictionary_enabled(column.clone(), false);
        }
        builder.build()
    }

    /// Writes `bars` one row group at a time, straight from the columns of `bars`: the
    /// core columns are handed to the column writers as slices (no copy), and only a
    /// nullable extra column is gathered, one row group of it at a time. Column chunks
    /// go to `out` as they are finished, so the memory this needs on top of `bars` is
    /// about one encoded column chunk, whatever the number of rows.
    pub(crate) fn encode_bars(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CodecError> {
        let mut writer = self.file_writer(bars, bars.len(), series, &[], out)?;
        self.write_groups(&mut writer, bars, 0, 0)?;
        writer.close().map_err(from_parquet_on_write)?;
        Ok(())
    }

    /// Rows per row group of a file of `rows` rows: a quarter of the file rounded up to a
    /// power of two, at least [`MIN_GROUP_ROWS`] and at most the codec's maximum.
    ///
    /// Why not one group per small file: an update keeps the stored row groups that hold
    /// only unchanged rows byte for byte (see `keep`), so a 5,000-row daily series in one
    /// group re-encoded all of it to change its last rows; in groups of 2,048 it
    /// re-encodes its last 904. Rounding up rather than down keeps a file at three to five
    /// groups: each group costs its own footer entries and dictionary start (a 5,000-row
    /// daily file is 5.7% larger in three groups, 10.6% in five). From 262,145 rows on,
    /// groups have the codec's maximum (128k rows by default).
    pub fn group_rows(&self, rows: usize) -> usize {
        (rows / 4).max(1).next_power_of_two().max(MIN_GROUP_ROWS).min(self.row_group_rows)
    }

    /// A writer of a file of `rows` rows with the columns of `bars`, its properties and
    /// schema set; `plain` as in [`Self::writer_properties`].
    pub(crate) fn file_writer<'w>(
        &self,
        bars: &Bars,
        rows: usize,
        series: &SeriesKey,
        plain: &[ColumnPath],
        out: &'w mut (dyn Write + Send),
    ) -> Result<SerializedFileWriter<&'w mut (dyn Write + Send)>, CodecError> {
        let schema = arrow_schema(bars);
        let parquet_schema = ArrowSchemaConverter::new().convert(&schema).map_err(from_parquet_on_write)?;
        let mut props = self.writer_properties(series, rows.min(self.group_rows(rows)), plain);
        // The Arrow schema travels in the key-value metadata, as the Arrow writer puts it,
        // so Arrow-based readers restore the exact types (the UTC zone, non-null fields).
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        SerializedFileWriter::new(out, parquet_schema.root_schema_ptr(), Arc::new(props)).map_err(from_parquet_on_write)
    }

    /// Writes rows `first..` of a file as row groups of [`Self::group_rows`] rows, where
    /// `bars` holds the file's rows from `skipped` on (`skipped <= first`).
    pub(crate) fn write_groups<W: Write + Send>(
        &self,
        writer: &mut SerializedFileWriter<W>,
        bars: &Bars,
        skipped: usize,
        first: usize,
    ) -> Result<(), CodecError> {
        // `Bars` guarantees every column holds `bars.len()` values, so the slices are in range.
        let core = [bars.open(), bars.high(), bars.low(), bars.close(), bars.volume()];
        let mut extra_values: Vec<f64> = Vec::new();
        let mut extra_levels: Vec<i16> = Vec::new();
        let rows = bars.len();
        let group_rows = self.group_rows(skipped.saturating_add(rows));
        // Group boundaries count rows of the whole file; `start` and `end` index `bars`.
        let mut start = first.checked_sub(skipped).ok_or_else(|| {
            CodecError::Corrupt(format!("rows from {first} asked of a tail that starts at row {skipped}"))
        })?;
        while start < rows {
            let end = rows.min(start.saturating_add(group_rows));
            let mut group = writer.next_row_group().map_err(from_parquet_on_write)?;
            write_timestamps(&mut group, &bars.timestamps()[start..end])?;
            for values in core {
                write_f64(&mut group, &values[start..end], None)?;
            }
            for extra in bars.extras() {
                let slice = &extra.values()[start..end];
                extra_values.clear();
                extra_levels.clear();
                extra_values.extend(slice.iter().flatten());
                extra_levels.extend(slice.iter().map(|v| i16::from(v.is_some())));
                write_f64(&mut group, &extra_values, Some(&extra_levels))?;
            }
            group.close().map_err(from_parquet_on_write)?;
            start = end;
        }
        Ok(())
    }
}

/// The fewest rows per row group (see [`ParquetCodec::group_rows`]).
pub(crate) const MIN_GROUP_ROWS: usize = 1024;

/// The dictionary page limit for row groups of `group_rows` rows: [`DICTIONARY_BYTES_PER_ROW`]
/// per row, at most [`DICTIONARY_PAGE_LIMIT`] (and at least one value).
fn dictionary_page_limit(group_rows: usize) -> usize {
    group_rows.saturating_mul(DICTIONARY_BYTES_PER_ROW).clamp(8, DICTIONARY_PAGE_LIMIT)
}

/// The writer of the next column of `group`, which the schema says exists.
fn next_column<'a, W: Write + Send>(
    group: &'a mut SerializedRowGroupWriter<'_, W>,
) -> Result<SerializedColumnWriter<'a>, CodecError> {
    group
        .next_column()
        .map_err(from_parquet_on_write)?
        .ok_or_else(|| CodecError::Io(io::Error::other("parquet encoder failed: fewer columns than the schema")))
}

fn wrong_type(column: &ColumnWriter<'_>, expected: &str) -> CodecError {
    let found = match column {
        ColumnWriter::BoolColumnWriter(_) => "BOOLEAN",
        ColumnWriter::Int32ColumnWriter(_) => "INT32",
        ColumnWriter::Int64ColumnWriter(_) => "INT64",
        ColumnWriter::Int96ColumnWriter(_) => "INT96",
        ColumnWriter::FloatColumnWriter(_) => "FLOAT",
        ColumnWriter::DoubleColumnWriter(_) => "DOUBLE",
        ColumnWriter::ByteArrayColumnWriter(_) => "BYTE_ARRAY",
        ColumnWriter::FixedLenByteArrayColumnWriter(_) => "FIXED_LEN_BYTE_ARRAY",
    };
    CodecError::Io(io::Error::other(format!("parquet encoder failed: expected a {expected} column, found {found}")))
}

fn write_timestamps<W: Write + Send>(
    group: &mut SerializedRowGroupWriter<'_, W>,
    values: &[i64],
) -> Result<(), CodecError> {
    let mut column = next_column(group)?;
    match column.untyped() {
        ColumnWriter::Int64ColumnWriter(w) => w.write_batch(values, None, None).map_err(from_parquet_on_write)?,
        other => return Err(wrong_type(other, "INT64")),
    };
    column.close().map_err(from_parquet_on_write)
}

/// Writes one `Float64` column chunk: `values` are the non-null values, and `levels` (for
/// a nullable column) holds 1 for a value and 0 for a null, one per row.
fn write_f64<W: Write + Send>(
    group: &mut SerializedRowGroupWriter<'_, W>,
    values: &[f64],
    levels: Option<&[i16]>,
) -> Result<(), CodecError> {
    let mut column = next_column(group)?;
    match column.untyped() {
        ColumnWriter::DoubleColumnWriter(w) => w.write_batch(values, levels, None).map_err(from_parquet_on_write)?,
        other => return Err(wrong_type(other, "DOUBLE")),
    };
    column.close().map_err(from_parquet_on_write)
}
