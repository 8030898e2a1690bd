//! The exception hierarchy and the mapping of every Rust error onto it.
//!
//! Every failure reaches Python as a subclass of `barvault.BarvaultError`; the message is the
//! one the CLI prints (series, file, line, value), on one line.

use barvault::arrow::FrameError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

create_exception!(barvault, BarvaultError, PyException, "Base class of every error barvault raises.");
create_exception!(
    barvault,
    ValidationError,
    BarvaultError,
    "Bars broke the validation rules (the message names the rows and rules), or differing values for one timestamp met the error_on_conflict merge policy. Nothing was stored."
);
create_exception!(
    barvault,
    InvalidInputError,
    BarvaultError,
    "An argument cannot be used: a bad symbol (such as '../x'), an unknown kind or period, a frame without usable timestamps or OHLC columns, values that are not numbers, a bad time bound. Nothing was stored."
);
create_exception!(
    barvault,
    LockedError,
    BarvaultError,
    "Another writer (a thread of this process or another process) held the series lock for longer than the lock timeout. Retry later."
);
create_exception!(
    barvault,
    CorruptError,
    BarvaultError,
    "A stored file is damaged (unparsable, checksum mismatch) and no sound copy could serve the call; run recover()."
);
create_exception!(
    barvault,
    ConfigError,
    BarvaultError,
    "The configuration is invalid: a bad value, an unknown field, an unreadable config file."
);
create_exception!(
    barvault,
    StorageError,
    BarvaultError,
    "An operating-system call failed (permissions, disk full, ...) or something required does not exist."
);

/// Why a call failed, before it becomes a Python exception.
#[derive(Debug)]
pub enum Failure {
    Storage(barvault::StorageError),
    Config(barvault::ConfigError),
    Frame(FrameError),
    /// An argument the application crate never sees (a kind, a period, a time bound).
    Invalid(String),
    /// A Rust panic caught before it reached the interpreter, or a state that cannot
    /// happen: a bug in barvault.
    Internal(String),
    /// The async runtime could not start.
    Runtime(std::io::Error),
}

impl From<barvault::StorageError> for Failure {
    fn from(e: barvault::StorageError) -> Self {
        Failure::Storage(e)
    }
}

impl From<barvault::ConfigError> for Failure {
    fn from(e: barvault::ConfigError) -> Self {
        Failure::Config(e)
    }
}

impl From<FrameError> for Failure {
    fn from(e: FrameError) -> Self {
        Failure::Frame(e)
    }
}

impl From<barvault::domain::DomainError> for Failure {
    fn from(e: barvault::domain::DomainError) -> Self {
        Failure::Invalid(e.to_string())
    }
}

/// The exception a storage error maps to.
fn storage_exception(e: &barvault::StorageError, message: String) -> PyErr {
    use barvault::StorageError as E;
    match e {
        E::Validation { .. } | E::Conflict { .. } => ValidationError::new_err(message),
        E::InvalidInput { .. } => InvalidInputError::new_err(message),
        E::Locked { .. } => LockedError::new_err(message),
        E::Decode { .. } | E::Corrupt { .. } | E::ChecksumMismatch { .. } | E::Unreadable { .. } => {
            CorruptError::new_err(message)
        }
        E::Config { .. } => ConfigError::new_err(message),
        _ => StorageError::new_err(message),
    }
}

/// The error and its causes as one line, each cause once (as the CLI's `-v` prints it).
fn message_of(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Storage(e) => storage_exception(&e, message_of(&e)),
            Failure::Config(e) => ConfigError::new_err(message_of(&e)),
            Failure::Frame(e) => InvalidInputError::new_err(message_of(&e)),
            Failure::Invalid(message) => InvalidInputError::new_err(message),
            Failure::Internal(message) => {
                BarvaultError::new_err(format!("internal error (a bug in barvault, please report it): {message}"))
            }
            Failure::Runtime(e) => BarvaultError::new_err(format!("cannot start barvault's async runtime: {e}")),
        }
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs the body of a Python-facing function so that a Rust panic in it becomes a
/// `BarvaultError` instead of unwinding into the interpreter (pyo3 would raise
/// `PanicException`, which is not even an `Exception`).
pub fn no_panic<T>(body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
        .unwrap_or_else(|panic| Err(Failure::Internal(panic_message(panic.as_ref())).into()))
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BarvaultError", py.get_type::<BarvaultError>())?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    let corrupt = py.get_type::<CorruptError>();
    // What `recover` repaired and could not repair; empty unless the error comes from it.
    corrupt.setattr("repaired", PyTuple::empty(py))?;
    corrupt.setattr("unrecoverable", PyTuple::empty(py))?;
    m.add("CorruptError", corrupt)?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    Ok(())
}
