use thiserror::Error;

use crate::validate::{Grid, RuleViolation};

/// Every way a domain constructor or rule can refuse its input.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum DomainError {
    #[error("invalid symbol {symbol:?}: {reason}")]
    InvalidSymbol { symbol: String, reason: String },
    #[error("unknown instrument type {0:?} (expected stock, future or forex)")]
    InvalidKind(String),
    #[error("unknown period {0:?} (expected one of 1s 5s 15s 30s 1m 2m 5m 10m 15m 20m 30m 1h 4h 1d 1W 1M 3M)")]
    InvalidPeriod(String),
    #[error("invalid contract month {month}/{year}: {reason}")]
    InvalidContract { year: i32, month: u32, reason: String },
    #[error("invalid column name {name:?}: {reason}")]
    InvalidColumn { name: String, reason: String },
    #[error("column {column:?} has {actual} values, expected {expected}")]
    LengthMismatch { column: String, expected: usize, actual: usize },
    #[error("timestamps are not strictly increasing at row {row} ({previous} then {current})")]
    Unsorted { row: usize, previous: i64, current: i64 },
    #[error("{count} row(s) break validation rules; first: {}", format_violations(.violations))]
    Validation { count: usize, violations: Vec<RuleViolation> },
    #[error("{count} bar(s) off the series' time grid ({grid}); first: {}", format_violations(.violations))]
    OffGrid { count: usize, grid: Grid, violations: Vec<RuleViolation> },
    #[error("conflicting values for timestamp {timestamp} ({column}: {existing} vs {new})")]
    Conflict { timestamp: String, column: String, existing: String, new: String },
    #[error("invalid time range: start {start} is after end {end}")]
    InvalidRange { start: i64, end: i64 },
}

fn format_violations(v: &[RuleViolation]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
