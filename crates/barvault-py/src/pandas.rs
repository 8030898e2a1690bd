//! Loaded bars as a pandas frame over the decoder's own buffers: no copy of a value, no
//! pyarrow conversion. Each column's `Vec` is handed to numpy through the
//! `__array_interface__` protocol (the array keeps the owning [`Column`] alive, so the
//! buffer is freed with the last view of it), the timestamps become a `DatetimeIndex`
//! (tz UTC, nanoseconds) over their `i64` values, and the float columns go into
//! `pandas.DataFrame(..., copy=False)`, one writable block per column (DECISIONS.md,
//! "The pandas frame of a load is built over barvault's own column buffers").

use barvault::Bars;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};

/// The columns of loaded bars as plain vectors: the timestamps (UTC nanoseconds), then each
/// float column by name (open, high, low, close, volume, then the extras with NaN where a
/// value is missing). Runs without the GIL.
#[derive(Debug)]
pub struct Columns {
    pub ts: Vec<i64>,
    pub floats: Vec<(String, Vec<f64>)>,
}

impl Columns {
    /// Takes the bars' columns (copying only columns still shared with another frame, and
    /// the extras, whose missing cells become NaN).
    pub fn of(bars: Bars) -> Self {
        let extras: Vec<(String, Vec<f64>)> = bars
            .extras()
            .iter()
            .map(|e| (e.name().to_string(), e.values().iter().map(|v| v.unwrap_or(f64::NAN)).collect()))
            .collect();
        let raw = barvault::domain::RawBars::from(bars);
        let mut floats = Vec::with_capacity(5 + extras.len());
        for (name, values) in [("open", raw.open), ("high", raw.high), ("low", raw.low), ("close", raw.close)] {
            floats.push((name.to_string(), values));
        }
        floats.push(("volume".to_string(), raw.volume));
        floats.extend(extras);
        Self { ts: raw.ts, floats }
    }
}

/// One column's buffer, exported to numpy by `__array_interface__`. Rust never reads the
/// values again once exported: numpy (and pandas' writes through it) own them from then on;
/// Rust only frees the buffer when the last array over it is gone.
#[pyclass(frozen, module = "barvault", name = "_Column")]
#[derive(Debug)]
struct Column {
    data: Data,
}

#[derive(Debug)]
enum Data {
    /// Float values, writable from numpy.
    F64(Vec<f64>),
    /// Timestamps (UTC nanoseconds), read-only: an index is not written to.
    I64(Vec<i64>),
}

#[pymethods]
impl Column {
    /// The numpy array interface (version 3) of the buffer.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (address, len, typestr, readonly) = match &self.data {
            Data::F64(v) => (v.as_ptr() as usize, v.len(), "<f8", false),
            Data::I64(v) => (v.as_ptr() as usize, v.len(), "<i8", true),
        };
        let interface = PyDict::new(py);
        interface.set_item(intern!(py, "data"), (address, readonly))?;
        interface.set_item(intern!(py, "shape"), (len,))?;
        interface.set_item(intern!(py, "typestr"), typestr)?;
        interface.set_item(intern!(py, "version"), 3)?;
        Ok(interface)
    }
}

/// What the frame is built with, imported once: `numpy.asarray`, `pandas.DataFrame`,
/// `pandas.DatetimeIndex` and the dtype `datetime64[ns, UTC]`.
struct Api {
    asarray: Py<PyAny>,
    frame: Py<PyAny>,
    index: Py<PyAny>,
    utc_ns: Py<PyAny>,
}

fn api(py: Python<'_>) -> PyResult<&Api> {
    static API: PyOnceLock<Api> = PyOnceLock::new();
    API.get_or_try_init(py, || {
        let np = py.import(intern!(py, "numpy"))?;
        let pd = py.import(intern!(py, "pandas"))?;
        let utc_ns = pd.getattr(intern!(py, "DatetimeTZDtype"))?.call1(("ns", "UTC"))?;
        Ok::<_, PyErr>(Api {
            asarray: np.getattr(intern!(py, "asarray"))?.unbind(),
            frame: pd.getattr(intern!(py, "DataFrame"))?.unbind(),
            index: pd.getattr(intern!(py, "DatetimeIndex"))?.unbind(),
            utc_ns: utc_ns.unbind(),
        })
    })
}

/// A numpy array over `data`, without copying it.
fn array<'py>(py: Python<'py>, api: &Api, data: Data) -> PyResult<Bound<'py, PyAny>> {
    let column = Bound::new(py, Column { data })?;
    api.asarray.bind(py).call1((column,))
}

/// The pandas frame the seed's `load` returned, made exact: a `DatetimeIndex` named
/// `timestamp` (UTC, nanoseconds), float64 columns (open, high, low, close, volume, then
/// the extras), NaN where a value is missing; every buffer is the loaded one.
pub fn frame<'py>(py: Python<'py>, columns: Columns) -> PyResult<Bound<'py, PyAny>> {
    let api = api(py)?;
    let Columns { ts, floats } = columns;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "dtype"), api.utc_ns.bind(py))?;
    kwargs.set_item(intern!(py, "name"), intern!(py, "timestamp"))?;
    kwargs.set_item(intern!(py, "copy"), false)?;
    // int64 values under a tz-aware dtype are UTC instants: the index is a view of them.
    let index = api.index.bind(py).call((array(py, api, Data::I64(ts))?,), Some(&kwargs))?;
    let data = PyDict::new(py);
    let mut names = Vec::with_capacity(floats.len());
    for (name, values) in floats {
        data.set_item(&name, array(py, api, Data::F64(values))?)?;
        names.push(name);
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "index"), index)?;
    kwargs.set_item(intern!(py, "columns"), PyList::new(py, names)?)?;
    kwargs.set_item(intern!(py, "copy"), false)?;
    api.frame.bind(py).call(PyTuple::new(py, [data])?, Some(&kwargs))
}
