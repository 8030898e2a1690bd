//! `barvault.open` and the `Vault` class: argument checks and conversions with the GIL held,
//! every I/O and merge with it released (`Python::detach`) through [`crate::engine`].

use std::path::PathBuf;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::convert::{End, arrow_table, frame_of, polars_frame_of, time_bound};
use crate::engine::{self, OpenOptions};
use crate::errors::{CorruptError, no_panic};
use crate::objects::{FileInfo, Receipt, SeriesEntry, VerifyReport};
use crate::pandas::{self, Columns};

/// A barvault store: CSV primary and Parquet backup copies of every series, with checksummed
/// metadata, atomic durable writes and a cross-process lock per series.
///
/// Made by `barvault.open(path)`. Safe to use from several threads at once; every call
/// releases the GIL while it reads, merges or writes files.
#[pyclass(frozen, module = "barvault", name = "Vault")]
#[derive(Debug)]
pub struct Vault {
    inner: barvault::Vault,
}

/// Opens (creating if needed) the store at `path`.
///
/// The configuration is layered as the CLI layers it: defaults < `config` (a barvault.toml;
/// without it ./barvault.toml is read when present) < `BARVAULT_*` environment variables <
/// the arguments given here. `backup_enabled` (default True) keeps the Parquet copy;
/// `compression` is its codec ("lz4" by default, or "snappy", "zstd", "gzip", "none");
/// `validation` is "strict" (default), "drop" or "off".
#[pyfunction]
#[pyo3(signature = (path, *, backup_enabled = None, compression = None, validation = None, config = None))]
pub fn open(
    py: Python<'_>,
    path: PathBuf,
    backup_enabled: Option<bool>,
    compression: Option<String>,
    validation: Option<String>,
    config: Option<PathBuf>,
) -> PyResult<Vault> {
    no_panic(|| {
        let options = OpenOptions { config_file: config, backup_enabled, compression, validation };
        let inner = py.detach(|| engine::open(path, options))?;
        Ok(Vault { inner })
    })
}

/// The bars of one series, or `None` when it is not stored (GIL released while loading).
fn load_bars(
    py: Python<'_>,
    vault: &barvault::Vault,
    kind: &str,
    symbol: &str,
    period: &str,
    start: Option<&Bound<'_, PyAny>>,
    end: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<barvault::Bars>> {
    let series = engine::series_key(kind, symbol, period)?;
    let range = engine::time_range(time_bound(start, End::Start, "start")?, time_bound(end, End::End, "end")?)?;
    Ok(py.detach(|| engine::load(vault, &series, range))?)
}

/// The columns of one series' bars, or `None` when it is not stored (GIL released while
/// loading and while taking the columns).
fn load_columns(
    py: Python<'_>,
    vault: &barvault::Vault,
    kind: &str,
    symbol: &str,
    period: &str,
    start: Option<&Bound<'_, PyAny>>,
    end: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Columns>> {
    let series = engine::series_key(kind, symbol, period)?;
    let range = engine::time_range(time_bound(start, End::Start, "start")?, time_bound(end, End::End, "end")?)?;
    Ok(py.detach(|| engine::load(vault, &series, range).map(|bars| bars.map(Columns::of)))?)
}

#[pymethods]
impl Vault {
    /// Merges the bars of `data` into the series `kind` / `symbol` / `period` and writes both
    /// copies under the series lock; returns a `Receipt`.
    ///
    /// `data` is a pandas DataFrame (a DatetimeIndex, naive meaning UTC, or a `timestamp`
    /// column), a polars DataFrame or a pyarrow Table, with columns open, high, low, close,
    /// volume and any extra numeric columns. Rows may be unsorted; a repeated timestamp keeps
    /// its last row, and stored rows at the same timestamps are replaced (keep-last). With
    /// `replace=True` the series becomes exactly these bars. `on_invalid` is "reject" (refuse
    /// the whole frame, naming the rows and rules) or "drop" (leave invalid rows out); by
    /// default the store's `validation` setting. Timestamps must sit on the period's grid
    /// (intraday: multiples of the period; daily and longer: one bar per calendar day at the
    /// series' time of day); off-grid bars are invalid rows. A refused persist changes no file.
    #[pyo3(signature = (data, kind, symbol, period, *, replace = false, on_invalid = None, correlation_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn persist(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        kind: &str,
        symbol: &str,
        period: &str,
        replace: bool,
        on_invalid: Option<&str>,
        correlation_id: Option<&str>,
    ) -> PyResult<Receipt> {
        no_panic(|| {
            let series = engine::series_key(kind, symbol, period)?;
            let options = engine::persist_options(&self.inner, on_invalid, replace)?;
            let frame = frame_of(py, data)?;
            let vault = &self.inner;
            let done =
                py.detach(|| engine::persist(vault, &frame.columns, frame.options, &series, options, correlation_id));
            // The frame's Arrow arrays are released here, with the GIL held.
            drop(frame);
            Ok(done?.into())
        })
    }

    /// The stored bars as a pandas DataFrame, or None when the series is not stored.
    ///
    /// The index is a DatetimeIndex named `timestamp` (UTC, nanoseconds); the columns are
    /// open, high, low, close, volume, then the extra columns, all float64, NaN where a value
    /// is missing. `start` and `end` (str, datetime, date or pandas.Timestamp; naive means
    /// UTC) bound the rows, both inclusive; a bare date as `end` means the end of that day.
    #[pyo3(signature = (kind, symbol, period, *, start = None, end = None))]
    fn load<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        symbol: &str,
        period: &str,
        start: Option<&Bound<'py, PyAny>>,
        end: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        no_panic(|| {
            load_columns(py, &self.inner, kind, symbol, period, start, end)?.map(|c| pandas::frame(py, c)).transpose()
        })
    }

    /// The stored bars as a polars DataFrame (`timestamp` as Datetime(ns, "UTC")), or None.
    /// `start` / `end` as for `load`.
    #[pyo3(signature = (kind, symbol, period, *, start = None, end = None))]
    fn load_polars<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        symbol: &str,
        period: &str,
        start: Option<&Bound<'py, PyAny>>,
        end: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        no_panic(|| {
            load_bars(py, &self.inner, kind, symbol, period, start, end)?.map(|b| polars_frame_of(py, b)).transpose()
        })
    }

    /// The stored bars as a pyarrow Table over barvault's own buffers (`timestamp` as
    /// timestamp[ns, tz=UTC], float64 columns, nulls where an extra value is missing), or
    /// None. `start` / `end` as for `load`.
    #[pyo3(signature = (kind, symbol, period, *, start = None, end = None))]
    fn load_arrow<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        symbol: &str,
        period: &str,
        start: Option<&Bound<'py, PyAny>>,
        end: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        no_panic(|| {
            load_bars(py, &self.inner, kind, symbol, period, start, end)?.map(|b| arrow_table(py, b)).transpose()
        })
    }

    /// Whether the series is stored (in either copy).
    fn exists(&self, py: Python<'_>, kind: &str, symbol: &str, period: &str) -> PyResult<bool> {
        no_panic(|| {
            let series = engine::series_key(kind, symbol, period)?;
            Ok(py.detach(|| engine::exists(&self.inner, &series))?)
        })
    }

    /// The stored file of the series (a `FileInfo`: path, size, modified, rows, first, last),
    /// or None when it is not stored.
    fn file_info(&self, py: Python<'_>, kind: &str, symbol: &str, period: &str) -> PyResult<Option<FileInfo>> {
        no_panic(|| {
            let series = engine::series_key(kind, symbol, period)?;
            let info = py.detach(|| engine::file_info(&self.inner, &series))?;
            info.map(|i| FileInfo::new(py, i)).transpose()
        })
    }

    /// Every stored series, as `SeriesEntry` objects (kind, symbol, period, rows, first, last).
    fn list(&self, py: Python<'_>) -> PyResult<Vec<SeriesEntry>> {
        no_panic(|| {
            let all = py.detach(|| engine::list(&self.inner))?;
            all.into_iter().map(|s| SeriesEntry::new(py, s)).collect()
        })
    }

    /// Checks every file against its checksummed metadata record (with `deep=True` also
    /// parses every file and compares the copies); returns a `VerifyReport`.
    #[pyo3(signature = (*, deep = false))]
    fn verify(&self, py: Python<'_>, deep: bool) -> PyResult<VerifyReport> {
        no_panic(|| Ok(py.detach(|| engine::verify(&self.inner, deep))?.into()))
    }

    /// Repairs what `verify` reports from the sound copy, the `.backup` files and the
    /// checksums; returns one line per repair ("path: what was done"). Raises CorruptError
    /// (with the attributes `repaired` and `unrecoverable`, tuples of str) when a series cannot be repaired.
    fn recover(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        no_panic(|| {
            let report = py.detach(|| engine::recover(&self.inner))?;
            let repaired: Vec<String> =
                report.actions.iter().map(|a| format!("{}: {}", a.path.display(), a.action)).collect();
            if report.unrecoverable.is_empty() {
                return Ok(repaired);
            }
            let lines: Vec<String> = report.unrecoverable.iter().map(|(s, why)| format!("{s}: {why}")).collect();
            let err = CorruptError::new_err(format!("unrecoverable: {}", lines.join("; ")));
            let value = err.value(py);
            value.setattr(intern!(py, "repaired"), PyTuple::new(py, &repaired)?)?;
            value.setattr(intern!(py, "unrecoverable"), PyTuple::new(py, &lines)?)?;
            Err(err)
        })
    }

    /// The store's health as a dict, the same content as `barvault health --json`
    /// (overall_status, issues, disk_usage, write_permission, series, files, ...).
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let json = py.detach(|| engine::health(&self.inner))?;
            py.import(intern!(py, "json"))?.call_method1(intern!(py, "loads"), (json,))
        })
    }

    /// The store's base directory.
    #[getter]
    fn path(&self) -> String {
        engine::base_dir(&self.inner)
    }

    /// Whether the Parquet copy is kept.
    #[getter]
    fn backup_enabled(&self) -> bool {
        engine::backup_enabled(&self.inner)
    }

    fn __repr__(&self) -> String {
        format!("Vault({:?})", engine::base_dir(&self.inner))
    }
}
