//! The vocabulary of barvault, kept free of I/O, async and file formats.
//!
//! Everything that decides *what* a correct store contains lives here: which symbols
//! may name a file, which periods exist, what a valid bar is, and how two batches of
//! bars combine. Keeping these rules in a crate with no I/O lets them be property-tested
//! in isolation and shared unchanged by every adapter, so a CSV store and a Parquet
//! store can never disagree about a merge.

mod bars;
mod error;
mod instrument;
mod merge;
mod period;
mod time;
mod validate;

pub use bars::{Bars, CORE_COLUMNS, ExtraColumn, RawBars};
pub use error::DomainError;
pub use instrument::{ContractMonth, Instrument, InstrumentKind, MAX_SYMBOL_LEN, SeriesKey, Symbol};
pub use merge::{MergePolicy, MergeStats, merge, replace_stats};
pub use period::Period;
pub use time::{TimeRange, datetime_to_nanos, format_timestamp, nanos_to_datetime};
pub use validate::{Grid, Rule, RuleViolation, ValidationPolicy, ValidationReport, check_grid, off_grid, validate};
