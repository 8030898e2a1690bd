use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// Converts nanoseconds since the Unix epoch to a UTC date-time.
///
/// Every `i64` is representable (chrono covers ±262,000 years), so this cannot fail.
pub fn nanos_to_datetime(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// Converts a UTC date-time to nanoseconds since the epoch; `None` outside 1677..2262.
pub fn datetime_to_nanos(dt: &DateTime<Utc>) -> Option<i64> {
    dt.timestamp_nanos_opt()
}

/// RFC 3339 with as many fractional digits as needed, for messages and JSON.
pub fn format_timestamp(nanos: i64) -> String {
    nanos_to_datetime(nanos).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An inclusive time range in nanoseconds since the epoch; an open end is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TimeRange {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl TimeRange {
    /// A range from `start` to `end`, both inclusive; refuses `start > end`.
    pub fn new(start: Option<i64>, end: Option<i64>) -> Result<Self, DomainError> {
        if let (Some(s), Some(e)) = (start, end)
            && s > e
        {
            return Err(DomainError::InvalidRange { start: s, end: e });
        }
        Ok(Self { start, end })
    }

    /// The unbounded range.
    pub const fn all() -> Self {
        Self { start: None, end: None }
    }

    pub fn contains(&self, ts: i64) -> bool {
        self.start.is_none_or(|s| ts >= s) && self.end.is_none_or(|e| ts <= e)
    }

    /// Whether `[min, max]` can hold a timestamp of this range (for row-group pruning).
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min <= e)
    }
}
