//! Bars ↔ Arrow arrays: how an embedding (the Python package) hands bars in and takes them
//! out without going through a file.
//!
//! Out: [`bars_to_record_batch`] gives the schema of the Parquet copy (`timestamp` as
//! `Timestamp(ns, "UTC")`, `open high low close volume` as non-null `Float64`, then each
//! extra column as nullable `Float64`, in [`Bars::column_names`] order). The timestamp and
//! core columns are moved into Arrow buffers, not copied, when the bars hold them alone.
//!
//! In: a frame is a list of named columns ([`FrameColumn`]), each one or more Arrow arrays,
//! read into [`RawBars`] by [`frame_to_raw_bars`] under these rules:
//! - Names are normalized as the CSV reader normalizes headers ([`ExtraColumn::normalize_name`]:
//!   `Adj Close` is `adj_close`, `Open` is `open`); two columns with one normalized name are refused.
//! - The time column is the one named `timestamp`, `datetime`, `date_time` or `date` (exactly
//!   one of them): an Arrow timestamp of any unit and zone (a naive one is UTC), a date, or
//!   text in any layout the CSV reader accepts. Integers are refused: whether they count
//!   seconds or nanoseconds cannot be told from the values.
//! - `open`, `high`, `low`, `close` are required (`last` is accepted for `close`, as the
//!   Parquet reader does); `volume` (or `vol`) is 0 when absent, as in a CSV import. Every other
//!   column is an extra column. pandas' `__index_level_N__` columns are not bar columns.
//! - Values are any integer or float type, converted to `f64` (integers above 2^53 round to
//!   the nearest `f64`); floats are copied bit for bit (NaN, `-0.0`, subnormals). Text, booleans
//!   and other types are refused with the column's name and type.
//! - A missing value (an Arrow null) is refused in the time and core columns, with its column
//!   and row; in an extra column it is a missing value, and so is NaN when
//!   [`FrameOptions::nan_is_missing`] is set (pandas marks missing floats with NaN).
//!
//! Rows may come in any order and repeat timestamps: [`RawBars::into_bars`] resolves them under
//! a merge policy, exactly as a file's rows are resolved on import.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, Float64Array, RecordBatch, TimestampNanosecondArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{ArrowError, DataType, Schema, TimeUnit};
use barvault_domain::{Bars, DomainError, ExtraColumn, RawBars};
use barvault_ports::StorageError;
use thiserror::Error;

/// The widest frame accepted (as the CSV reader's widest header): bars and their extra
/// columns fit many times over, and a frame of a million columns is refused up front.
pub const MAX_FRAME_COLUMNS: usize = 1024;

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// Why a frame cannot be read as bars. Every variant names the column (and row) at fault.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error(
        "no timestamp column: name one column timestamp, datetime, date_time or date (a pandas frame may instead have a DatetimeIndex); the columns are {columns:?}"
    )]
    NoTimestamp { columns: Vec<String> },
    #[error("column {0:?} is missing")]
    MissingColumn(&'static str),
    #[error("columns {first:?} and {second:?} are both the {role} column")]
    Duplicate { role: String, first: String, second: String },
    #[error("column {column:?} has type {dtype}; expected {expected}")]
    WrongType { column: String, dtype: String, expected: &'static str },
    #[error("column {column:?} row {row}: missing value (only extra columns may have missing values)")]
    Missing { column: String, row: usize },
    #[error("column {column:?} row {row}: {value} ({unit}) is outside the years 1677 to 2262")]
    OutOfRange { column: String, row: usize, value: i64, unit: &'static str },
    #[error("column {column:?} row {row}: {value:?} is not a timestamp ({reason})")]
    BadTimestamp { column: String, row: usize, value: String, reason: String },
    #[error("column {column:?} has {actual} rows, the time column {expected}")]
    Length { column: String, expected: usize, actual: usize },
    #[error("{0} columns: at most {MAX_FRAME_COLUMNS} are accepted")]
    TooManyColumns(usize),
    #[error("column {column:?}: {source}")]
    Name {
        column: String,
        #[source]
        source: DomainError,
    },
}

impl From<FrameError> for StorageError {
    fn from(e: FrameError) -> Self {
        StorageError::invalid(e.to_string())
    }
}

/// One named column of a frame, as one or more Arrow arrays (chunks) in row order.
#[derive(Debug, Clone)]
pub struct FrameColumn {
    pub name: String,
    pub chunks: Vec<ArrayRef>,
}

impl FrameColumn {
    pub fn new(name: impl Into<String>, chunks: Vec<ArrayRef>) -> Self {
        Self { name: name.into(), chunks }
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    fn dtype(&self) -> DataType {
        self.chunks.first().map_or(DataType::Null, |c| c.data_type().clone())
    }
}

/// How a frame's values are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameOptions {
    /// NaN in an extra column is a missing value (pandas' convention), not a stored NaN.
    pub nan_is_missing: bool,
}

/// The columns of record batches sharing `schema`, each column's chunks in batch order.
pub fn record_batch_columns(schema: &Schema, batches: &[RecordBatch]) -> Vec<FrameColumn> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| FrameColumn::new(f.name().clone(), batches.iter().map(|b| Arc::clone(b.column(i))).collect()))
        .collect()
}

/// What a normalized column name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Time,
    /// open, high, low, close, volume.
    Core(usize),
    Extra,
    /// pandas' `__index_level_N__`.
    Ignored,
}

const CORE: [&str; 5] = ["open", "high", "low", "close", "volume"];

fn role_of(normalized: &str, raw: &str) -> Role {
    match normalized {
        "timestamp" | "datetime" | "date_time" | "date" => Role::Time,
        "open" => Role::Core(0),
        "high" => Role::Core(1),
        "low" => Role::Core(2),
        "close" | "last" => Role::Core(3),
        "volume" | "vol" => Role::Core(4),
        _ if is_pandas_index(raw) => Role::Ignored,
        _ => Role::Extra,
    }
}

/// Whether a column of this name would be read as the time column (see the module
/// documentation), so an embedding can tell whether a frame names one.
pub fn is_time_column(name: &str) -> bool {
    role_of(&ExtraColumn::normalize_name(name), name) == Role::Time
}

fn is_pandas_index(name: &str) -> bool {
    name.strip_prefix("__index_level_")
        .and_then(|r| r.strip_suffix("__"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Which column plays which part.
#[derive(Debug)]
struct Plan<'a> {
    time: &'a FrameColumn,
    core: [Option<&'a FrameColumn>; 5],
    extras: Vec<(String, &'a FrameColumn)>,
}

impl<'a> Plan<'a> {
    fn of(columns: &'a [FrameColumn]) -> Result<Self, FrameError> {
        if columns.len() > MAX_FRAME_COLUMNS {
            return Err(FrameError::TooManyColumns(columns.len()));
        }
        let mut time: Option<&FrameColumn> = None;
        let mut core: [Option<&FrameColumn>; 5] = [None; 5];
        let mut extras: Vec<(String, &FrameColumn)> = Vec::new();
        let duplicate = |role: &str, first: &FrameColumn, second: &FrameColumn| FrameError::Duplicate {
            role: role.to_string(),
            first: first.name.clone(),
            second: second.name.clone(),
        };
        for col in columns {
            let normalized = ExtraColumn::normalize_name(&col.name);
            match role_of(&normalized, &col.name) {
                Role::Time => match time {
                    Some(first) => return Err(duplicate("time", first, col)),
                    None => time = Some(col),
                },
                Role::Core(i) => match core[i] {
                    Some(first) => return Err(duplicate(CORE[i], first, col)),
                    None => core[i] = Some(col),
                },
                Role::Extra => {
                    if let Some((_, first)) = extras.iter().find(|(n, _)| *n == normalized) {
                        return Err(duplicate(&normalized, first, col));
                    }
                    ExtraColumn::check_name(&normalized)
                        .map_err(|source| FrameError::Name { column: col.name.clone(), source })?;
                    extras.push((normalized, col));
                }
                Role::Ignored => {}
            }
        }
        let time =
            time.ok_or_else(|| FrameError::NoTimestamp { columns: columns.iter().map(|c| c.name.clone()).collect() })?;
        for (i, name) in CORE.iter().enumerate().take(4) {
            if core[i].is_none() {
                return Err(FrameError::MissingColumn(name));
            }
        }
        Ok(Self { time, core, extras })
    }
}

/// Reads a frame's columns as bars in row order (see the module documentation for the rules).
pub fn frame_to_raw_bars(columns: &[FrameColumn], options: FrameOptions) -> Result<RawBars, FrameError> {
    let plan = Plan::of(columns)?;
    let rows = plan.time.len();
    let check_len = |col: &FrameColumn| {
        let actual = col.len();
        if actual == rows {
            Ok(())
        } else {
            Err(FrameError::Length { column: col.name.clone(), expected: rows, actual })
        }
    };
    let ts = timestamps(plan.time)?;
    let mut core: [Vec<f64>; 5] = Default::default();
    for (i, slot) in core.iter_mut().enumerate() {
        *slot = match plan.core[i] {
            Some(col) => {
                check_len(col)?;
                required(col)?
            }
            None => vec![0.0; rows],
        };
    }
    let mut extras = Vec::with_capacity(plan.extras.len());
    for (name, col) in &plan.extras {
        check_len(col)?;
        let values = optional(col, options.nan_is_missing)?;
        extras.push(
            ExtraColumn::new(name, values).map_err(|source| FrameError::Name { column: col.name.clone(), source })?,
        );
    }
    let [open, high, low, close, volume] = core;
    Ok(RawBars { ts, open, high, low, close, volume, extras })
}

fn wrong_type(col: &FrameColumn, expected: &'static str) -> FrameError {
    FrameError::WrongType { column: col.name.clone(), dtype: col.dtype().to_string(), expected }
}

const NUMBERS: &str = "integers or floats";

/// The first null of `arr`, if any.
fn first_null(arr: &dyn Array) -> Option<usize> {
    arr.logical_nulls().filter(|n| n.null_count() > 0).and_then(|n| n.iter().position(|valid| !valid))
}

/// Appends the values of a primitive array of `T` converted by `f`; `None` if `arr` is not one.
fn extend_values<T: ArrowPrimitiveType>(
    arr: &dyn Array,
    out: &mut Vec<f64>,
    f: impl Fn(T::Native) -> f64,
) -> Option<()> {
    out.extend(arr.as_primitive_opt::<T>()?.values().iter().map(|&v| f(v)));
    Some(())
}

/// Appends the values of any integer or float array as `f64`, nulls included as whatever
/// value their slot holds (callers check or mask them); `None` for any other type.
fn extend_numeric(arr: &dyn Array, out: &mut Vec<f64>) -> Option<()> {
    match arr.data_type() {
        DataType::Float64 => {
            out.extend_from_slice(arr.as_primitive_opt::<Float64Type>()?.values());
            Some(())
        }
        DataType::Float32 => extend_values::<Float32Type>(arr, out, f64::from),
        DataType::Float16 => extend_values::<Float16Type>(arr, out, |v| v.to_f64()),
        DataType::Int8 => extend_values::<Int8Type>(arr, out, f64::from),
        DataType::Int16 => extend_values::<Int16Type>(arr, out, f64::from),
        DataType::Int32 => extend_values::<Int32Type>(arr, out, f64::from),
        DataType::Int64 => extend_values::<Int64Type>(arr, out, |v| v as f64),
        DataType::UInt8 => extend_values::<UInt8Type>(arr, out, f64::from),
        DataType::UInt16 => extend_values::<UInt16Type>(arr, out, f64::from),
        DataType::UInt32 => extend_values::<UInt32Type>(arr, out, f64::from),
        DataType::UInt64 => extend_values::<UInt64Type>(arr, out, |v| v as f64),
        _ => None,
    }
}

/// A core column: numbers without missing values.
fn required(col: &FrameColumn) -> Result<Vec<f64>, FrameError> {
    let mut out = Vec::with_capacity(col.len());
    for chunk in &col.chunks {
        if let Some(row) = first_null(chunk.as_ref()) {
            return Err(FrameError::Missing { column: col.name.clone(), row: out.len() + row });
        }
        if chunk.data_type() == &DataType::Null {
            continue; // empty: a non-empty null array has a null at row 0
        }
        extend_numeric(chunk.as_ref(), &mut out).ok_or_else(|| wrong_type(col, NUMBERS))?;
    }
    Ok(out)
}

/// An extra column: numbers, nulls (and NaN when `nan_is_missing`) as missing values.
fn optional(col: &FrameColumn, nan_is_missing: bool) -> Result<Vec<Option<f64>>, FrameError> {
    let mut out = Vec::with_capacity(col.len());
    let mut values = Vec::new();
    for chunk in &col.chunks {
        if chunk.data_type() == &DataType::Null {
            out.extend(std::iter::repeat_n(None, chunk.len()));
            continue;
        }
        values.clear();
        extend_numeric(chunk.as_ref(), &mut values).ok_or_else(|| wrong_type(col, NUMBERS))?;
        let present = |v: f64| (!(nan_is_missing && v.is_nan())).then_some(v);
        match chunk.logical_nulls() {
            Some(nulls) if nulls.null_count() > 0 => {
                out.extend(values.iter().zip(nulls.iter()).map(|(&v, valid)| if valid { present(v) } else { None }));
            }
            _ => out.extend(values.iter().map(|&v| present(v))),
        }
    }
    Ok(out)
}

/// The raw `i64` values of a timestamp or `Date64` array and their unit in nanoseconds.
fn time_values(arr: &dyn Array) -> Option<(&[i64], i64, &'static str)> {
    Some(match arr.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            (arr.as_primitive_opt::<TimestampSecondType>()?.values(), 1_000_000_000, "s")
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            (arr.as_primitive_opt::<TimestampMillisecondType>()?.values(), 1_000_000, "ms")
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            (arr.as_primitive_opt::<TimestampMicrosecondType>()?.values(), 1_000, "us")
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            (arr.as_primitive_opt::<TimestampNanosecondType>()?.values(), 1, "ns")
        }
        DataType::Date64 => (arr.as_primitive_opt::<Date64Type>()?.values(), 1_000_000, "ms"),
        _ => return None,
    })
}

/// Text cells of a string array of any offset width or layout; `None` for other types.
fn text_values(arr: &dyn Array) -> Option<Box<dyn Iterator<Item = Option<&str>> + '_>> {
    if let Some(a) = arr.as_string_opt::<i32>() {
        return Some(Box::new(a.iter()));
    }
    if let Some(a) = arr.as_string_opt::<i64>() {
        return Some(Box::new(a.iter()));
    }
    arr.as_string_view_opt().map(|a| Box::new(a.iter()) as Box<dyn Iterator<Item = Option<&str>>>)
}

/// The time column as UTC nanoseconds.
fn timestamps(col: &FrameColumn) -> Result<Vec<i64>, FrameError> {
    const EXPECTED: &str = "timestamps, dates or text timestamps";
    let mut out: Vec<i64> = Vec::with_capacity(col.len());
    for chunk in &col.chunks {
        let base = out.len();
        if let Some(row) = first_null(chunk.as_ref()) {
            return Err(FrameError::Missing { column: col.name.clone(), row: base + row });
        }
        let out_of_range = |row: usize, value: i64, unit| FrameError::OutOfRange {
            column: col.name.clone(),
            row: base + row,
            value,
            unit,
        };
        if let Some((values, factor, unit)) = time_values(chunk.as_ref()) {
            if factor == 1 {
                out.extend_from_slice(values);
            } else {
                for (row, &v) in values.iter().enumerate() {
                    out.push(v.checked_mul(factor).ok_or_else(|| out_of_range(row, v, unit))?);
                }
            }
        } else if let Some(days) = chunk.as_primitive_opt::<Date32Type>() {
            for (row, &d) in days.values().iter().enumerate() {
                let d = i64::from(d);
                out.push(d.checked_mul(NANOS_PER_DAY).ok_or_else(|| out_of_range(row, d, "days"))?);
            }
        } else if let Some(cells) = text_values(chunk.as_ref()) {
            for (row, cell) in cells.enumerate() {
                let text = cell.unwrap_or_default();
                let ns = barvault_csv::parse_timestamp(text.as_bytes()).map_err(|e| FrameError::BadTimestamp {
                    column: col.name.clone(),
                    row: base + row,
                    value: text.chars().take(80).collect(),
                    reason: e.to_string(),
                })?;
                out.push(ns);
            }
        } else if chunk.data_type() != &DataType::Null {
            return Err(wrong_type(col, EXPECTED));
        }
    }
    Ok(out)
}

/// The bars as one record batch with the Parquet copy's schema. The timestamp and core
/// columns become Arrow buffers without a copy when `bars` holds them alone; extra columns
/// are laid out as values and a validity bitmap (a missing value's slot holds NaN).
pub fn bars_to_record_batch(bars: Bars) -> Result<RecordBatch, ArrowError> {
    let schema = Arc::new(barvault_parquet::arrow_schema(&bars));
    let RawBars { ts, open, high, low, close, volume, extras } = RawBars::from(bars);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(6 + extras.len());
    columns.push(Arc::new(TimestampNanosecondArray::new(ts.into(), None).with_timezone("UTC")));
    for values in [open, high, low, close, volume] {
        columns.push(Arc::new(Float64Array::new(values.into(), None)));
    }
    for extra in &extras {
        let cells = extra.values();
        let values: Vec<f64> = cells.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        let nulls = NullBuffer::from_iter(cells.iter().map(Option::is_some));
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        columns.push(Arc::new(Float64Array::new(values.into(), nulls)));
    }
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use arrow_array::{
        BooleanArray, Date32Array, Float32Array, Int64Array, NullArray, StringArray, TimestampMicrosecondArray,
        TimestampSecondArray, UInt64Array,
    };
    use barvault_domain::MergePolicy;

    use super::*;

    fn col(name: &str, array: impl Array + 'static) -> FrameColumn {
        FrameColumn::new(name, vec![Arc::new(array) as ArrayRef])
    }

    fn floats(name: &str, v: &[f64]) -> FrameColumn {
        col(name, Float64Array::from(v.to_vec()))
    }

    fn ns(name: &str, v: &[i64]) -> FrameColumn {
        col(name, TimestampNanosecondArray::from(v.to_vec()).with_timezone("UTC"))
    }

    fn ohlc(n: usize) -> Vec<FrameColumn> {
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        ["open", "high", "low", "close", "volume"].iter().map(|c| floats(c, &v)).collect()
    }

    fn frame(time: FrameColumn, n: usize) -> Vec<FrameColumn> {
        let mut cols = vec![time];
        cols.extend(ohlc(n));
        cols
    }

    fn sample() -> Bars {
        Bars::new(
            vec![-1, 1_700_000_000_123_456_789, 1_700_000_060_000_000_000],
            vec![8.71e-06, -37.63, 1e300],
            vec![8.71e-06, -37.63, 1e300],
            vec![8.71e-06, -37.63, 1e300],
            vec![-0.0, f64::MIN_POSITIVE / 4.0, 1.0],
            vec![0.0, 1.0, 2.5],
            vec![
                ExtraColumn::new("adj_close", vec![Some(1.5), None, Some(f64::NAN)]).unwrap(),
                ExtraColumn::new("open_interest", vec![None, None, Some(7.0)]).unwrap(),
            ],
        )
        .unwrap()
    }

    /// Out and back in gives the same bars bit for bit: NaN, -0.0, a subnormal, 1e300,
    /// nanoseconds before and after the epoch, extras with missing values.
    #[test]
    fn record_batch_round_trips_bit_for_bit() {
        let bars = sample();
        let batch = bars_to_record_batch(bars.clone()).unwrap();
        assert_eq!(batch.schema().as_ref(), &barvault_parquet::arrow_schema(&bars));
        assert_eq!(batch.column(6).null_count(), 1);
        assert_eq!(batch.column(7).null_count(), 2);
        let columns = record_batch_columns(&batch.schema(), std::slice::from_ref(&batch));
        let back = frame_to_raw_bars(&columns, FrameOptions::default()).unwrap();
        let (back, folded) = back.into_bars(MergePolicy::KeepLast).unwrap();
        assert_eq!(folded, 0);
        assert_eq!(back, bars);
        // pandas' reading: NaN in an extra column is missing.
        let pandas = frame_to_raw_bars(&columns, FrameOptions { nan_is_missing: true }).unwrap();
        assert_eq!(pandas.extras[0].values()[2], None);
    }

    /// Unshared bars are moved into the batch: its buffers are the bars' own allocations.
    #[test]
    fn core_columns_are_moved_not_copied() {
        let bars = sample();
        let (ts_ptr, open_ptr) = (bars.timestamps().as_ptr(), bars.open().as_ptr());
        let batch = bars_to_record_batch(bars).unwrap();
        let ts = batch.column(0).as_primitive::<TimestampNanosecondType>();
        let open = batch.column(1).as_primitive::<Float64Type>();
        assert_eq!(ts.values().as_ptr(), ts_ptr);
        assert_eq!(open.values().as_ptr(), open_ptr);
    }

    #[test]
    fn empty_bars_make_an_empty_batch() {
        let batch = bars_to_record_batch(Bars::empty()).unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.num_columns(), 6);
    }

    #[test]
    fn chunks_concatenate_in_order_and_units_convert_to_nanoseconds() {
        let mut cols = vec![FrameColumn::new(
            "Date",
            vec![
                Arc::new(TimestampSecondArray::from(vec![1, 2])) as ArrayRef,
                Arc::new(TimestampMicrosecondArray::from(vec![3_000_000])),
            ],
        )];
        for name in ["Open", "High", "Low", "Close"] {
            cols.push(FrameColumn::new(
                name,
                vec![Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef, Arc::new(Float32Array::from(vec![0.5f32]))],
            ));
        }
        cols.push(col("Adj Close", UInt64Array::from(vec![Some(9), None, Some(u64::MAX)])));
        let raw = frame_to_raw_bars(&cols, FrameOptions::default()).unwrap();
        assert_eq!(raw.ts, vec![1_000_000_000, 2_000_000_000, 3_000_000_000]);
        assert_eq!(raw.open, vec![1.0, 2.0, 0.5]);
        assert_eq!(raw.volume, vec![0.0; 3], "an absent volume is 0, as in a CSV import");
        assert_eq!(raw.extras[0].name(), "adj_close");
        assert_eq!(raw.extras[0].values(), &[Some(9.0), None, Some(u64::MAX as f64)]);
    }

    #[test]
    fn dates_and_text_timestamps_are_read() {
        let raw =
            frame_to_raw_bars(&frame(col("date", Date32Array::from(vec![0, 19_723])), 2), FrameOptions::default())
                .unwrap();
        assert_eq!(raw.ts, vec![0, 19_723 * NANOS_PER_DAY]);
        let text =
            col("timestamp", StringArray::from(vec!["2024-01-01 00:00:00.000000001", "2024-01-01T00:01:00+01:00"]));
        let raw = frame_to_raw_bars(&frame(text, 2), FrameOptions::default()).unwrap();
        assert_eq!(raw.ts, vec![1_704_067_200_000_000_001, 1_704_067_200_000_000_000 - 3_540_000_000_000]);
    }

    /// Every refusal names what is wrong, and none panics.
    #[test]
    fn hostile_frames_are_refused_with_the_column_and_row() {
        let opts = FrameOptions::default();
        let msg = |cols: Vec<FrameColumn>| frame_to_raw_bars(&cols, opts).unwrap_err().to_string();

        let m = msg(ohlc(2));
        assert!(m.contains("no timestamp column") && m.contains("\"open\""), "{m}");
        let m = msg(vec![ns("timestamp", &[1]), floats("open", &[1.0])]);
        assert!(m.contains("\"high\" is missing"), "{m}");
        let mut two_times = frame(ns("timestamp", &[1]), 1);
        two_times.push(ns("Date", &[1]));
        assert!(msg(two_times).contains("both the time column"));
        let mut two_opens = frame(ns("timestamp", &[1]), 1);
        two_opens.push(floats("OPEN", &[1.0]));
        assert!(msg(two_opens).contains("\"open\" and \"OPEN\""));
        let mut bad_name = frame(ns("timestamp", &[1]), 1);
        bad_name.push(floats("???", &[1.0]));
        assert!(msg(bad_name).contains("\"???\""));
        let m = msg(frame(col("timestamp", Int64Array::from(vec![1])), 1));
        assert!(m.contains("has type Int64") && m.contains("timestamps, dates"), "{m}");
        let m = msg(frame(col("timestamp", StringArray::from(vec!["yesterday"])), 1));
        assert!(m.contains("row 0") && m.contains("yesterday"), "{m}");
        let m = msg(frame(col("timestamp", TimestampNanosecondArray::from(vec![Some(1), None])), 2));
        assert!(m.contains("row 1: missing value"), "{m}");
        let m = msg(frame(col("timestamp", TimestampSecondArray::from(vec![0, i64::MAX])), 2));
        assert!(m.contains("row 1") && m.contains("1677 to 2262"), "{m}");
        let m = msg(frame(col("timestamp", Date32Array::from(vec![i32::MAX])), 1));
        assert!(m.contains("days"), "{m}");

        let mut cols = frame(ns("timestamp", &[1, 2]), 2);
        cols[1] = col("open", StringArray::from(vec!["1.5", "x"]));
        let m = msg(cols);
        assert!(m.contains("\"open\" has type Utf8") && m.contains("integers or floats"), "{m}");
        let mut cols = frame(ns("timestamp", &[1, 2]), 2);
        cols[2] = col("high", Float64Array::from(vec![Some(1.0), None]));
        assert!(msg(cols).contains("\"high\" row 1: missing value"));
        let mut cols = frame(ns("timestamp", &[1, 2]), 2);
        cols[3] = col("low", NullArray::new(2));
        assert!(msg(cols).contains("\"low\" row 0: missing value"));
        let mut cols = frame(ns("timestamp", &[1, 2]), 2);
        cols.push(col("flag", BooleanArray::from(vec![true, false])));
        assert!(msg(cols).contains("\"flag\" has type Boolean"));
        let mut cols = frame(ns("timestamp", &[1, 2]), 2);
        cols.push(floats("short", &[1.0]));
        assert!(msg(cols).contains("\"short\" has 1 rows, the time column 2"));
        let wide: Vec<FrameColumn> = (0..=MAX_FRAME_COLUMNS).map(|i| floats(&format!("c{i}"), &[])).collect();
        assert!(msg(wide).contains("at most 1024"));
    }

    #[test]
    fn time_column_names() {
        for name in ["timestamp", "Date", "DateTime", "date time", "DATE_TIME"] {
            assert!(is_time_column(name), "{name}");
        }
        for name in ["time", "ts", "open", "__index_level_0__", ""] {
            assert!(!is_time_column(name), "{name}");
        }
    }

    #[test]
    fn null_extras_and_pandas_index_columns() {
        let mut cols = frame(ns("timestamp", &[2, 1, 2]), 3);
        cols.push(col("empty", NullArray::new(3)));
        cols.push(floats("__index_level_0__", &[0.0, 1.0, 2.0]));
        let raw = frame_to_raw_bars(&cols, FrameOptions::default()).unwrap();
        assert_eq!(raw.extras.len(), 1, "the pandas index is not a bar column");
        assert_eq!(raw.extras[0].values(), &[None, None, None]);
        // Unsorted, repeated rows resolve as a file's rows do: keep-last by default.
        let (bars, folded) = raw.into_bars(MergePolicy::KeepLast).unwrap();
        assert_eq!((bars.timestamps(), folded), (&[1, 2][..], 1));
        assert_eq!(bars.open(), &[1.0, 2.0]);
    }
}
