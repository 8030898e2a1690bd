use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, TimestampNanosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use barvault_domain::{Bars, SeriesKey};
use barvault_ports::CodecError;
use chrono::{SecondsFormat, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Encoding;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::ParquetCodec;
use crate::error::from_parquet_on_write;

/// The time zone written on the timestamp column, so pandas, pyarrow and polars show UTC.
pub(crate) const UTC: &str = "UTC";

/// Bytes of dictionary per column chunk before falling back to plain encoding.
const DICTIONARY_PAGE_LIMIT: usize = 128 * 1024;

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
    fn writer_properties(&self, series: &SeriesKey) -> WriterProperties {
        // Prices sit on a tick grid, so a row group holds few distinct values: dictionary
        // encoding halves the file and doubles decode speed (1M bars: 9.4 vs 18 MiB). Its
        // page is capped at 128 KiB (16k values) so high-cardinality columns (adjusted
        // prices, volumes) fall back to plain early instead of hashing every value. Unique
        // timestamps skip the dictionary and use DELTA_BINARY_PACKED, a few bits per row for
        // regular bars, read by pyarrow, polars and Spark alike.
        let timestamp = ColumnPath::from("timestamp");
        WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(self.compression.to_parquet())
            .set_dictionary_enabled(true)
            .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
            .set_column_dictionary_enabled(timestamp.clone(), false)
            .set_column_encoding(timestamp, Encoding::DELTA_BINARY_PACKED)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_write_batch_size(8192)
            .set_key_value_metadata(Some(key_value_metadata(series)))
            .build()
    }

    pub(crate) fn encode_bars(
        &self,
        bars: &Bars,
        series: &SeriesKey,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CodecError> {
        let schema = Arc::new(arrow_schema(bars));
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        columns.push(Arc::new(TimestampNanosecondArray::from(bars.timestamps().to_vec()).with_timezone(UTC)));
        for values in [bars.open(), bars.high(), bars.low(), bars.close(), bars.volume()] {
            columns.push(Arc::new(Float64Array::from(values.to_vec())));
        }
        for extra in bars.extras() {
            columns.push(Arc::new(Float64Array::from_iter(extra.values().iter().copied())));
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| CodecError::Io(io::Error::other(format!("cannot build the Arrow batch: {e}"))))?;

        let mut writer =
            ArrowWriter::try_new(out, schema, Some(self.writer_properties(series))).map_err(from_parquet_on_write)?;
        if !bars.is_empty() {
            writer.write(&batch).map_err(from_parquet_on_write)?;
        }
        writer.close().map_err(from_parquet_on_write)?;
        Ok(())
    }
}
