//! Python objects ↔ Arrow ↔ bars, with the GIL held: frames handed to `persist` become Arrow
//! arrays through the Arrow C Data Interface (no per-value work in Python), loaded bars
//! become a `pyarrow.Table` over the Rust buffers and from it a polars frame (the pandas frame is
//! built in [`crate::pandas`]); time bounds become UTC nanoseconds.

use arrow_array::ffi_stream::RecordBatchStreamReader;
use arrow_array::{ArrayRef, RecordBatch, make_array};
use arrow_pyarrow::{FromPyArrow, IntoPyArrow, Table};
use arrow_schema::ArrowError;
use barvault::Bars;
use barvault::arrow::{FrameColumn, FrameOptions};
use pyo3::exceptions::PyImportError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{IntoPyObjectExt, intern};

use crate::engine::{self, batch_columns, is_time_column};
use crate::errors::InvalidInputError;

/// A frame's columns as Arrow arrays, and how to read their values.
pub struct Frame {
    pub columns: Vec<FrameColumn>,
    pub options: FrameOptions,
}

fn invalid(message: impl Into<String>) -> PyErr {
    InvalidInputError::new_err(message.into())
}

fn arrow_invalid(what: &str, e: ArrowError) -> PyErr {
    invalid(format!("{what}: {e}"))
}

/// The name of `obj`'s type, `module.qualname`, for messages.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().fully_qualified_name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// `module.attr` when `module` is already imported (an object of a library that is not
/// imported cannot be one of its types, and importing pandas costs a second).
fn imported_attr<'py>(py: Python<'py>, module: &str, attr: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    let modules = py.import(intern!(py, "sys"))?.getattr(intern!(py, "modules"))?;
    match modules.cast_into::<PyDict>()?.get_item(module)? {
        Some(m) => Ok(Some(m.getattr(attr)?)),
        None => Ok(None),
    }
}

fn is_instance_of(py: Python<'_>, obj: &Bound<'_, PyAny>, module: &str, class: &str) -> PyResult<bool> {
    match imported_attr(py, module, class)? {
        Some(cls) => obj.is_instance(&cls),
        None => Ok(false),
    }
}

/// One Python Arrow array (or chunked array) as Arrow arrays, through the C Data Interface.
fn arrow_chunks(array: &Bound<'_, PyAny>) -> PyResult<Vec<ArrayRef>> {
    let py = array.py();
    let chunks = match array.getattr_opt(intern!(py, "chunks"))? {
        Some(chunks) => chunks.try_iter()?.collect::<PyResult<Vec<_>>>()?,
        None => vec![array.clone()],
    };
    chunks.iter().map(|c| Ok(make_array(arrow_data::ArrayData::from_pyarrow_bound(c)?))).collect()
}

/// A pandas frame: its columns, and its index when that is the time (a `DatetimeIndex`, or
/// an index with a time column's name). NaN in an extra column is a missing value.
fn pandas_frame(py: Python<'_>, df: &Bound<'_, PyAny>) -> PyResult<Frame> {
    let pa = py.import(intern!(py, "pyarrow"))?;
    let array = pa.getattr(intern!(py, "array"))?;
    let labels: Vec<Bound<'_, PyAny>> = df.getattr(intern!(py, "columns"))?.try_iter()?.collect::<PyResult<_>>()?;
    let mut names = Vec::with_capacity(labels.len());
    for label in &labels {
        match label.cast::<PyString>() {
            Ok(s) => names.push(s.extract::<String>()?),
            Err(_) => {
                return Err(invalid(format!(
                    "column label {} is not a string: name the columns open, high, low, close, volume (and extras)",
                    label.repr()?
                )));
            }
        }
    }
    let mut columns = Vec::with_capacity(names.len() + 1);
    let index = df.getattr(intern!(py, "index"))?;
    let index_name = index.getattr(intern!(py, "name"))?;
    let index_name = index_name.cast::<PyString>().ok().map(|s| s.to_string());
    let datetime_index = is_instance_of(py, &index, "pandas", "DatetimeIndex")?;
    let named_time = index_name.as_deref().is_some_and(is_time_column);
    if datetime_index || named_time {
        if let Some(other) = names.iter().find(|n| is_time_column(n)) {
            return Err(invalid(format!(
                "the frame has both a time index and a time column {other:?}: keep one (df.reset_index(drop=True) or df.set_index({other:?}))"
            )));
        }
        let name = index_name.filter(|n| is_time_column(n)).unwrap_or_else(|| "timestamp".into());
        let converted = array.call1((&index,)).map_err(|e| invalid(format!("the index: {e}")))?;
        columns.push(FrameColumn::new(name, arrow_chunks(&converted)?));
    }
    let iloc = df.getattr(intern!(py, "iloc"))?;
    let kwargs = PyDict::new(py);
    // NaN stays a value (a NaN price is for validation to judge; in an extra column it is
    // read as missing below); NaT and pandas' NA are nulls either way.
    kwargs.set_item(intern!(py, "from_pandas"), false)?;
    let all = py.import(intern!(py, "builtins"))?.getattr(intern!(py, "slice"))?.call1((py.None(),))?;
    for (i, name) in names.into_iter().enumerate() {
        let series = iloc.get_item(PyTuple::new(py, [all.clone(), i.into_bound_py_any(py)?])?)?;
        let converted = array
            .call((&series,), Some(&kwargs))
            .map_err(|e| invalid(format!("column {name:?} cannot be read as numbers or timestamps: {e}")))?;
        columns.push(FrameColumn::new(name, arrow_chunks(&converted)?));
    }
    Ok(Frame { columns, options: FrameOptions { nan_is_missing: true } })
}

/// An error of the Arrow C Data Interface import as an InvalidInputError.
fn not_arrow(data: &Bound<'_, PyAny>, e: PyErr) -> PyErr {
    invalid(format!("cannot read a {} as an Arrow table: {e}", type_name(data)))
}

/// Anything with the Arrow PyCapsule stream interface (a pyarrow Table or RecordBatchReader,
/// a polars DataFrame, ...): its record batches' columns.
fn stream_frame(data: &Bound<'_, PyAny>) -> PyResult<Frame> {
    let reader = RecordBatchStreamReader::from_pyarrow_bound(data).map_err(|e| not_arrow(data, e))?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let batches: Vec<RecordBatch> =
        reader.collect::<Result<_, _>>().map_err(|e| arrow_invalid("reading the frame's record batches", e))?;
    Ok(Frame { columns: batch_columns(&schema, &batches), options: FrameOptions::default() })
}

/// The columns of `data`: a pandas DataFrame, a polars DataFrame, a pyarrow Table,
/// RecordBatch or RecordBatchReader, or any object with `__arrow_c_stream__`.
pub fn frame_of(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Frame> {
    if is_instance_of(py, data, "pandas", "DataFrame")? {
        return pandas_frame(py, data);
    }
    if is_instance_of(py, data, "pandas", "Series")? {
        return Err(invalid(
            "cannot persist a pandas Series: give a DataFrame with columns open, high, low, close, volume",
        ));
    }
    if data.hasattr(intern!(py, "__arrow_c_stream__"))? {
        return stream_frame(data);
    }
    if data.hasattr(intern!(py, "__arrow_c_array__"))? {
        let batch = RecordBatch::from_pyarrow_bound(data).map_err(|e| not_arrow(data, e))?;
        return Ok(Frame {
            columns: batch_columns(&batch.schema(), std::slice::from_ref(&batch)),
            options: FrameOptions::default(),
        });
    }
    if data.hasattr(intern!(py, "to_arrow"))? {
        // polars before the PyCapsule interface
        let table = data.call_method0(intern!(py, "to_arrow")).map_err(|e| not_arrow(data, e))?;
        return stream_frame(&table);
    }
    Err(invalid(format!(
        "cannot persist a {}: give a pandas DataFrame, a polars DataFrame or a pyarrow Table",
        type_name(data)
    )))
}

/// The bars as a `pyarrow.Table` over their own buffers.
pub fn arrow_table<'py>(py: Python<'py>, bars: Bars) -> PyResult<Bound<'py, PyAny>> {
    let batch = engine::record_batch(bars)?;
    let schema = batch.schema();
    Table::try_new(vec![batch], schema).map_err(|e| arrow_invalid("building the Arrow table", e))?.into_pyarrow(py)
}

/// The bars as a polars frame (`timestamp` as `Datetime(ns, UTC)`).
pub fn polars_frame_of<'py>(py: Python<'py>, bars: Bars) -> PyResult<Bound<'py, PyAny>> {
    let polars = py
        .import(intern!(py, "polars"))
        .map_err(|e| PyImportError::new_err(format!("load_polars needs polars (pip install polars): {e}")))?;
    let table = arrow_table(py, bars)?;
    polars.call_method1(intern!(py, "from_arrow"), (table,))
}

/// Which end of a range a bound is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Start,
    End,
}

/// `datetime.datetime(1970, 1, 1, tzinfo=timezone.utc)`.
fn epoch(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static EPOCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    EPOCH
        .get_or_try_init(py, || {
            let dt = py.import(intern!(py, "datetime"))?;
            let utc = dt.getattr(intern!(py, "timezone"))?.getattr(intern!(py, "utc"))?;
            let kwargs = PyDict::new(py);
            kwargs.set_item(intern!(py, "tzinfo"), utc)?;
            Ok::<_, PyErr>(dt.getattr(intern!(py, "datetime"))?.call((1970, 1, 1), Some(&kwargs))?.unbind())
        })
        .map(|e| e.bind(py))
}

/// UTC nanoseconds as an aware `datetime.datetime` (to the microsecond, rounded down).
pub fn py_datetime(py: Python<'_>, ns: i64) -> PyResult<Py<PyAny>> {
    let dt = py.import(intern!(py, "datetime"))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "microseconds"), ns.div_euclid(1000))?;
    let delta = dt.getattr(intern!(py, "timedelta"))?.call((), Some(&kwargs))?;
    Ok(epoch(py)?.add(delta)?.unbind())
}

fn int_attr(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<i64> {
    obj.getattr(name)?.extract()
}

/// Nanoseconds of a `datetime.timedelta` (`None` on overflow).
fn timedelta_ns(td: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let py = td.py();
    let days = int_attr(td, intern!(py, "days"))?;
    let seconds = int_attr(td, intern!(py, "seconds"))?;
    let micros = int_attr(td, intern!(py, "microseconds"))?;
    Ok(days
        .checked_mul(86_400)
        .and_then(|s| s.checked_add(seconds))
        .and_then(|s| s.checked_mul(1_000_000_000))
        .and_then(|ns| ns.checked_add(micros * 1000)))
}

fn out_of_range(what: &str) -> PyErr {
    invalid(format!("{what} is outside the years 1677 to 2262"))
}

/// Nanoseconds of a `numpy.datetime64` scalar, from its raw count and unit (numpy's own
/// conversion to nanoseconds wraps around silently on overflow).
fn datetime64_ns(value: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    let py = value.py();
    let Some(datetime_data) = imported_attr(py, "numpy", "datetime_data")? else {
        return Err(invalid(format!("{what}: numpy is not imported")));
    };
    let (mut unit, mut count): (String, i64) =
        datetime_data.call1((value.getattr(intern!(py, "dtype"))?,))?.extract()?;
    let mut value = value.clone();
    if unit == "Y" || unit == "M" {
        // Years and months have no fixed length: count days instead (exact for both).
        value = value.call_method1(intern!(py, "astype"), ("datetime64[D]",))?;
        (unit, count) = ("D".to_string(), 1);
    }
    let raw: i64 = value.call_method1(intern!(py, "astype"), ("int64",))?.extract()?;
    if raw == i64::MIN {
        return Err(invalid(format!("{what}: NaT is not a time (pass None for an open end)")));
    }
    // (multiply by, then divide by) to get nanoseconds
    let (mul, div): (i64, i64) = match unit.as_str() {
        "W" => (7 * NANOS_PER_DAY, 1),
        "D" => (NANOS_PER_DAY, 1),
        "h" => (3_600_000_000_000, 1),
        "m" => (60_000_000_000, 1),
        "s" => (1_000_000_000, 1),
        "ms" => (1_000_000, 1),
        "us" => (1_000, 1),
        "ns" => (1, 1),
        "ps" => (1, 1_000),
        "fs" => (1, 1_000_000),
        "as" => (1, 1_000_000_000),
        other => return Err(invalid(format!("{what}: numpy.datetime64 of unit {other:?} is not a time"))),
    };
    raw.checked_mul(count).and_then(|r| r.checked_mul(mul)).map(|r| r.div_euclid(div)).ok_or_else(|| out_of_range(what))
}

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// A range bound as UTC nanoseconds: `None`; text as the CLI's `--from` / `--to` read it (a
/// bare date as the end means the end of that day); a `pandas.Timestamp` (exact to the
/// nanosecond); a `datetime.datetime` (naive means UTC); a `datetime.date` (its first, or as
/// the end its last, nanosecond); a `numpy.datetime64`.
pub fn time_bound(value: Option<&Bound<'_, PyAny>>, end: End, what: &str) -> PyResult<Option<i64>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let py = value.py();
    if let Ok(text) = value.cast::<PyString>() {
        let text: String = text.extract()?;
        let text = text.as_str();
        let parsed = engine::parse_bound(text, end == End::End);
        return parsed.map(Some).map_err(|e| invalid(format!("{what}: {e}")));
    }
    let type_name = value.get_type().name()?.to_string();
    if type_name == "NaTType" {
        return Err(invalid(format!("{what}: NaT is not a time (pass None for an open end)")));
    }
    if type_name == "datetime64" {
        return datetime64_ns(value, what).map(Some);
    }
    let datetime = py.import(intern!(py, "datetime"))?;
    if value.is_instance(&datetime.getattr(intern!(py, "datetime"))?)? {
        if value.hasattr(intern!(py, "nanosecond"))? && value.hasattr(intern!(py, "value"))? {
            // pandas.Timestamp: `value` is UTC nanoseconds (the wall time as UTC when naive).
            return value.getattr(intern!(py, "value"))?.extract::<i64>().map(Some).map_err(|_| out_of_range(what));
        }
        let aware = if value.call_method0(intern!(py, "utcoffset"))?.is_none() {
            let kwargs = PyDict::new(py);
            kwargs.set_item(intern!(py, "tzinfo"), epoch(py)?.getattr(intern!(py, "tzinfo"))?)?;
            value.call_method("replace", (), Some(&kwargs))?
        } else {
            value.clone()
        };
        let delta = aware.sub(epoch(py)?)?;
        return timedelta_ns(&delta)?.map(Some).ok_or_else(|| out_of_range(what));
    }
    if value.is_instance(&datetime.getattr(intern!(py, "date"))?)? {
        let iso = value.call_method0(intern!(py, "isoformat"))?;
        return time_bound(Some(&iso), end, what);
    }
    Err(invalid(format!(
        "{what}: expected a str, datetime, date or pandas.Timestamp, got {}",
        value.get_type().fully_qualified_name()?
    )))
}
