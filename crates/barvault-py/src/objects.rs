//! The result objects: read-only attributes, a `repr`, built from the application crate's
//! reports with the GIL held.

use barvault::RowsPersisted;
use pyo3::prelude::*;

use crate::convert::py_datetime;

/// An optional timestamp as an aware `datetime` (microseconds; the exact value is in `*_ns`).
fn datetime_opt(py: Python<'_>, ns: Option<i64>) -> PyResult<Option<Py<PyAny>>> {
    ns.map(|ns| py_datetime(py, ns)).transpose()
}

/// `True` / `False`, as Python spells them in a repr.
fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// What `Vault.persist` did.
#[pyclass(frozen, module = "barvault", name = "Receipt", get_all)]
#[derive(Debug)]
pub struct Receipt {
    /// The primary (CSV) file of the series.
    pub file_path: String,
    /// The series, as `kind:SYMBOL@period`.
    pub series: String,
    /// Rows given (before repeats were folded and invalid rows dropped).
    pub rows_read: usize,
    /// Rows in the series afterwards.
    pub rows_stored: usize,
    /// Timestamps that were not stored before.
    pub added: usize,
    /// Stored rows whose values changed.
    pub replaced: usize,
    /// Rows that were already stored with the same values.
    pub unchanged: usize,
    /// Rows whose timestamp an earlier row of the frame already had (folded into it, keep-last).
    pub duplicates: usize,
    /// Rows left out by on_invalid="drop".
    pub dropped_invalid: usize,
    /// Whether any file was written (False when the frame changed nothing).
    pub written: bool,
    /// Whether the previous version of the CSV file was kept as `.backup`.
    pub backup_created: bool,
    /// Set when the Parquet copy could not be written (the CSV copy was; recover() rebuilds it).
    pub warning: Option<String>,
    /// The correlation id on every log line of this call.
    pub correlation_id: String,
}

impl From<RowsPersisted> for Receipt {
    fn from(r: RowsPersisted) -> Self {
        Self {
            file_path: r.location,
            series: r.series,
            rows_read: r.rows_read,
            rows_stored: r.rows_stored,
            added: r.added,
            replaced: r.replaced,
            unchanged: r.unchanged,
            duplicates: r.duplicates,
            dropped_invalid: r.dropped_invalid,
            written: r.written,
            backup_created: r.backup_created,
            warning: r.warning,
            correlation_id: r.correlation_id,
        }
    }
}

#[pymethods]
impl Receipt {
    fn __repr__(&self) -> String {
        format!(
            "Receipt(series={:?}, rows_stored={}, added={}, replaced={}, unchanged={}, written={}, file_path={:?})",
            self.series,
            self.rows_stored,
            self.added,
            self.replaced,
            self.unchanged,
            py_bool(self.written),
            self.file_path
        )
    }
}

/// The stored file of one series (the CSV copy, or the Parquet copy when the CSV is unreadable).
#[pyclass(frozen, module = "barvault", name = "FileInfo", get_all)]
#[derive(Debug)]
pub struct FileInfo {
    /// The file's path.
    pub path: String,
    /// "csv" or "parquet".
    pub format: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, an aware datetime in UTC (None when the file system has none).
    pub modified: Option<Py<PyAny>>,
    /// Rows stored.
    pub rows: usize,
    /// First timestamp, an aware datetime in UTC (to the microsecond; None when empty).
    pub first: Option<Py<PyAny>>,
    /// Last timestamp, an aware datetime in UTC (to the microsecond; None when empty).
    pub last: Option<Py<PyAny>>,
    /// First timestamp in nanoseconds since the epoch (exact).
    pub first_ns: Option<i64>,
    /// Last timestamp in nanoseconds since the epoch (exact).
    pub last_ns: Option<i64>,
    /// Column names: timestamp, open, high, low, close, volume, then the extras.
    pub columns: Vec<String>,
}

impl FileInfo {
    pub fn new(py: Python<'_>, info: barvault::SeriesFile) -> PyResult<Self> {
        let modified = info.modified.and_then(|m| m.timestamp_nanos_opt());
        Ok(Self {
            path: info.location,
            format: info.format,
            size: info.size,
            modified: datetime_opt(py, modified)?,
            rows: info.rows,
            first: datetime_opt(py, info.first)?,
            last: datetime_opt(py, info.last)?,
            first_ns: info.first,
            last_ns: info.last,
            columns: info.columns,
        })
    }
}

#[pymethods]
impl FileInfo {
    fn __repr__(&self) -> String {
        format!("FileInfo(path={:?}, format={:?}, size={}, rows={})", self.path, self.format, self.size, self.rows)
    }
}

/// One stored series, as `barvault list` shows it.
#[pyclass(frozen, module = "barvault", name = "SeriesEntry", get_all)]
#[derive(Debug)]
pub struct SeriesEntry {
    /// "stock", "future" or "forex".
    pub kind: String,
    /// The symbol as stored (upper case).
    pub symbol: String,
    /// The period, e.g. "1m" or "1d".
    pub period: String,
    /// Rows stored.
    pub rows: u64,
    /// First timestamp, an aware datetime in UTC (to the microsecond; None when empty).
    pub first: Option<Py<PyAny>>,
    /// Last timestamp, an aware datetime in UTC (to the microsecond; None when empty).
    pub last: Option<Py<PyAny>>,
    /// First timestamp in nanoseconds since the epoch (exact).
    pub first_ns: Option<i64>,
    /// Last timestamp in nanoseconds since the epoch (exact).
    pub last_ns: Option<i64>,
    /// The formats stored, e.g. ["csv", "parquet"].
    pub formats: Vec<String>,
    /// The metadata generation (how many writes the series has had).
    pub generation: u64,
}

impl SeriesEntry {
    pub fn new(py: Python<'_>, s: barvault::SeriesSummary) -> PyResult<Self> {
        let ns = |t: &Option<String>| t.as_deref().and_then(|t| crate::engine::parse_bound(t, false).ok());
        let (first_ns, last_ns) = (ns(&s.first), ns(&s.last));
        Ok(Self {
            kind: s.instrument_type.as_str().to_string(),
            symbol: s.symbol,
            period: s.period.as_str().to_string(),
            rows: s.rows,
            first: datetime_opt(py, first_ns)?,
            last: datetime_opt(py, last_ns)?,
            first_ns,
            last_ns,
            formats: s.formats,
            generation: s.generation,
        })
    }
}

#[pymethods]
impl SeriesEntry {
    fn __repr__(&self) -> String {
        format!(
            "SeriesEntry(kind={:?}, symbol={:?}, period={:?}, rows={})",
            self.kind, self.symbol, self.period, self.rows
        )
    }
}

/// What `Vault.verify` found.
#[pyclass(frozen, module = "barvault", name = "VerifyReport", get_all)]
#[derive(Debug)]
pub struct VerifyReport {
    /// True when no problem was found.
    pub clean: bool,
    /// One line per problem: "kind: path: detail", as `barvault verify` prints them.
    pub problems: Vec<String>,
    /// What is not a problem but worth knowing, in the same form: a Parquet copy lagging
    /// behind appends to the CSV ("lagging: path: detail").
    pub notes: Vec<String>,
    /// Series checked.
    pub series_checked: usize,
    /// Files checked.
    pub files_checked: usize,
    /// Bytes read.
    pub bytes_checked: u64,
}

/// The snake_case name serde gives a unit variant (`checksum_mismatch`).
pub fn variant_name<T: serde::Serialize>(kind: &T) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// "kind: path: detail", as `barvault verify` prints an issue.
fn issue_line(i: &barvault::Issue) -> String {
    format!("{}: {}: {}", variant_name(&i.kind), i.path.display(), i.detail)
}

impl From<barvault::VerifyReport> for VerifyReport {
    fn from(r: barvault::VerifyReport) -> Self {
        Self {
            clean: r.is_clean(),
            problems: r.issues.iter().map(issue_line).collect(),
            notes: r.notes.iter().map(issue_line).collect(),
            series_checked: r.series_checked,
            files_checked: r.files_checked,
            bytes_checked: r.bytes_checked,
        }
    }
}

#[pymethods]
impl VerifyReport {
    fn __repr__(&self) -> String {
        format!(
            "VerifyReport(clean={}, problems={}, series_checked={}, files_checked={})",
            py_bool(self.clean),
            self.problems.len(),
            self.series_checked,
            self.files_checked
        )
    }
}
