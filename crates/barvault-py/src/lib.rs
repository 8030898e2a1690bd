//! The Python package `barvault`: the store from pandas, polars and pyarrow, in-process.
//!
//! A thin layer over the application crate: [`engine`] holds every call into it (blocking,
//! panic-free, no Python), [`convert`] moves frames in and out as Arrow through the Arrow C
//! Data Interface, [`pandas`] builds the frame of a load
//! over the loaded buffers, [`vault`] is the `Vault` class (GIL released around every I/O and merge),
//! [`objects`] the result objects and [`errors`] the exception hierarchy.

mod convert;
mod engine;
mod errors;
mod objects;
mod pandas;
mod vault;

use pyo3::prelude::*;

/// The module's own Rust allocations (column buffers above all) reuse memory freed by the
/// previous load instead of faulting in fresh pages; the interpreter keeps its malloc.
#[global_allocator]
static ALLOCATOR: barvault_alloc::Retaining = barvault_alloc::Retaining;

/// barvault: a durable store of OHLCV market bars (CSV primary + Parquet backup copies,
/// checksummed metadata, atomic writes, verify and recover), for pandas, polars and pyarrow.
///
///     vault = barvault.open("store")
///     vault.persist(df, "stock", "AAPL", "1d")
///     df = vault.load("stock", "AAPL", "1d", start="2024-01-01")
#[pymodule(name = "barvault")]
fn barvault_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(vault::open, m)?)?;
    m.add_class::<vault::Vault>()?;
    m.add_class::<objects::Receipt>()?;
    m.add_class::<objects::FileInfo>()?;
    m.add_class::<objects::SeriesEntry>()?;
    m.add_class::<objects::VerifyReport>()?;
    errors::register(m)?;
    m.add(
        "__all__",
        [
            "open",
            "Vault",
            "Receipt",
            "FileInfo",
            "SeriesEntry",
            "VerifyReport",
            "BarvaultError",
            "ValidationError",
            "InvalidInputError",
            "LockedError",
            "CorruptError",
            "ConfigError",
            "StorageError",
            "__version__",
        ],
    )?;
    Ok(())
}
