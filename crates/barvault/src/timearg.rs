//! Range bounds as people type them (the CLI's `--from` / `--to`, the Python package's
//! `start` / `end` given as text): RFC 3339, `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS[.fff]`,
//! read as UTC.
//!
//! Both ends of a range are inclusive, so a bare date given as the end (`--to`) means the end
//! of that day (its last nanosecond): `--from 2024-01-31 --to 2024-01-31` is the whole day.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// Which end of the range a value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    From,
    To,
}

const ACCEPTED: &str = "expected RFC 3339 (2024-01-31T14:30:00Z), YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\" (UTC)";

/// Nanoseconds since the epoch of `text`, or why it is not a time.
pub fn parse_time(text: &str, end: End) -> Result<i64, String> {
    let t = text.trim();
    let dt = if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        dt.with_timezone(&Utc)
    } else if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let time = match end {
            End::From => NaiveTime::MIN,
            End::To => NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).unwrap_or(NaiveTime::MIN),
        };
        d.and_time(time).and_utc()
    } else if let Some(naive) = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    {
        naive.and_utc()
    } else {
        return Err(format!("{text:?} is not a time: {ACCEPTED}"));
    };
    dt.timestamp_nanos_opt().ok_or_else(|| format!("{text:?} is outside the years 1677 to 2262"))
}

pub fn parse_from(text: &str) -> Result<i64, String> {
    parse_time(text, End::From)
}

pub fn parse_to(text: &str) -> Result<i64, String> {
    parse_time(text, End::To)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000_000;
    // 2024-01-31T00:00:00Z
    const JAN31: i64 = 1_706_659_200_000_000_000;

    #[test]
    fn accepts_the_three_forms() {
        assert_eq!(parse_from("2024-01-31"), Ok(JAN31));
        assert_eq!(parse_from("2024-01-31T00:00:00Z"), Ok(JAN31));
        assert_eq!(parse_from("2024-01-31T02:00:00+02:00"), Ok(JAN31));
        assert_eq!(parse_from("2024-01-31 00:00:01"), Ok(JAN31 + 1_000_000_000));
        assert_eq!(parse_from("2024-01-31T00:00:00.5"), Ok(JAN31 + 500_000_000));
        assert_eq!(parse_from(" 2024-01-31 "), Ok(JAN31));
    }

    #[test]
    fn a_bare_date_ends_at_the_end_of_the_day() {
        assert_eq!(parse_to("2024-01-31"), Ok(JAN31 + DAY - 1));
        assert_eq!(parse_to("2024-01-31 00:00:00"), Ok(JAN31));
    }

    #[test]
    fn rejects_anything_else_with_the_accepted_forms() {
        for bad in ["", "yesterday", "2024-13-01", "31/01/2024", "2024-01-31T25:00:00Z"] {
            let err = parse_from(bad).unwrap_err();
            assert!(err.contains("YYYY-MM-DD"), "{bad}: {err}");
        }
        assert!(parse_from("3000-01-01").unwrap_err().contains("1677"));
    }
}
