//! Timestamp text <-> UTC nanoseconds, without going through chrono on the hot path.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use thiserror::Error;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Why a timestamp could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TimestampError {
    #[error("not a timestamp: expected YYYY-MM-DD[ HH:MM[:SS[.fffffffff]]][Z|±HH:MM|±HHMM]")]
    Malformed,
    #[error("invalid {0}")]
    InvalidComponent(&'static str),
    #[error("more than 9 fractional digits (finer than a nanosecond)")]
    TooPrecise,
    #[error("outside the range of i64 nanoseconds (1677-09-21 00:12:43 to 2262-04-11 23:47:16 UTC)")]
    OutOfRange,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        _ => 28,
    }
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

fn push2(out: &mut Vec<u8>, v: u32) {
    let i = (v as usize % 100) * 2;
    out.extend_from_slice(DIGIT_PAIRS.get(i..i + 2).unwrap_or(b"??"));
}

/// Writes the 10 bytes `YYYY-MM-DD` of day number `days`.
fn write_date(days: i64, out: &mut Vec<u8>) {
    let (year, month, day) = civil_from_days(days);
    // Every i64 nanosecond instant falls in years 1677..=2262, so four digits always suffice.
    let year = year.clamp(0, 9999) as u32;
    push2(out, year / 100);
    push2(out, year % 100);
    out.push(b'-');
    push2(out, month);
    out.push(b'-');
    push2(out, day);
}

/// Formats one UTC instant: `YYYY-MM-DD HH:MM:SS`, plus `.f…` with trailing zeros trimmed
/// only when there is a sub-second part, without the UTC marker.
///
/// A whole file uses one fraction width instead (see [`fraction_digits`]): pandas infers a
/// single format from the first row and leaves the column unparsed when rows differ.
pub fn format_timestamp_csv(nanos: i64, out: &mut Vec<u8>) {
    TimestampWriter::new(fraction_digits(&[nanos])).write(nanos, out);
}

/// The fractional digits (0 to 9) that print every timestamp of `timestamps` exactly:
/// 0 when all are whole seconds, 3 for milliseconds, 9 when any has a lone nanosecond.
pub fn fraction_digits(timestamps: &[i64]) -> usize {
    let mut digits = 0;
    for &ts in timestamps {
        let mut frac = ts.rem_euclid(NANOS_PER_SEC);
        if frac == 0 {
            continue;
        }
        let mut needed = 9;
        while frac % 10 == 0 {
            frac /= 10;
            needed -= 1;
        }
        if needed > digits {
            digits = needed;
            if digits == 9 {
                break;
            }
        }
    }
    digits
}

/// Writes timestamps with a fixed number of fractional digits, keeping the date text of
/// the previous call so that consecutive rows of one day format only their time.
#[derive(Debug)]
pub(crate) struct TimestampWriter {
    digits: usize,
    utc_marker: bool,
    last: Option<(i64, [u8; 10])>,
}

impl TimestampWriter {
    /// `digits` must be at least [`fraction_digits`] of everything written, or precision is lost.
    pub(crate) fn new(digits: usize) -> Self {
        Self { digits: digits.min(9), utc_marker: false, last: None }
    }

    /// Ends every timestamp with `Z` (UTC) when `on`.
    pub(crate) fn utc_marker(mut self, on: bool) -> Self {
        self.utc_marker = on;
        self
    }

    pub(crate) fn write(&mut self, nanos: i64, out: &mut Vec<u8>) {
        let secs = nanos.div_euclid(NANOS_PER_SEC);
        let frac = nanos.rem_euclid(NANOS_PER_SEC) as u32;
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
        match &self.last {
            Some((d, text)) if *d == days => out.extend_from_slice(text),
            _ => {
                let start = out.len();
                write_date(days, out);
                let mut text = [0u8; 10];
                if let Some(written) = out.get(start..)
                    && written.len() == 10
                {
                    text.copy_from_slice(written);
                    self.last = Some((days, text));
                }
            }
        }
        out.push(b' ');
        push2(out, sod / 3600);
        out.push(b':');
        push2(out, sod / 60 % 60);
        out.push(b':');
        push2(out, sod % 60);
        if self.digits > 0 {
            let mut digits = [b'0'; 9];
            let mut f = frac;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (f % 10) as u8;
                f /= 10;
            }
            out.push(b'.');
            out.extend_from_slice(digits.get(..self.digits).unwrap_or(&digits));
        }
        if self.utc_marker {
            out.push(b'Z');
        }
    }
}

/// A date and a time of day split apart, as read; combined (and range checked) by [`combine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeOfDay {
    /// Seconds since midnight, local to the offset.
    secs: i64,
    /// Sub-second nanoseconds, 0..1e9.
    frac: i64,
    offset_secs: i64,
}

const MIDNIGHT: TimeOfDay = TimeOfDay { secs: 0, frac: 0, offset_secs: 0 };

/// Checked i64 arithmetic: cheaper than i128 on the hot path. Negative instants borrow one
/// second so that 1677-09-21 00:12:43.145224192 (i64::MIN) itself is reachable.
fn combine(days: i64, time: TimeOfDay) -> Result<i64, TimestampError> {
    let secs = days
        .checked_mul(SECS_PER_DAY)
        .and_then(|s| s.checked_add(time.secs))
        .and_then(|s| s.checked_sub(time.offset_secs))
        .ok_or(TimestampError::OutOfRange)?;
    let (whole, frac) =
        if secs < 0 && time.frac > 0 { (secs + 1, time.frac - NANOS_PER_SEC) } else { (secs, time.frac) };
    whole.checked_mul(NANOS_PER_SEC).and_then(|n| n.checked_add(frac)).ok_or(TimestampError::OutOfRange)
}

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

fn two_digits(s: &[u8], at: usize) -> Option<u32> {
    match s.get(at..at + 2)? {
        [a, b] => Some(digit(*a)? * 10 + digit(*b)?),
        _ => None,
    }
}

/// `YYYY-MM-DD` at the start of `s` (strict ISO layout).
fn iso_date(s: &[u8]) -> Result<Option<i64>, TimestampError> {
    let (Some(hi), Some(lo), Some(b'-'), Some(month), Some(b'-'), Some(day)) =
        (two_digits(s, 0), two_digits(s, 2), s.get(4), two_digits(s, 5), s.get(7), two_digits(s, 8))
    else {
        return Ok(None);
    };
    let year = i64::from(hi * 100 + lo);
    if !(1..=12).contains(&month) {
        return Err(TimestampError::InvalidComponent("month"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(TimestampError::InvalidComponent("day of month"));
    }
    Ok(Some(days_from_civil(year, month, day)))
}

/// `HH:MM[:SS[.f{1,9}]]` then an optional UTC offset, filling the whole of `s`.
fn time_of_day(s: &[u8]) -> Result<TimeOfDay, TimestampError> {
    let (Some(hour), Some(b':'), Some(minute)) = (two_digits(s, 0), s.get(2), two_digits(s, 3)) else {
        return Err(TimestampError::Malformed);
    };
    if hour > 23 {
        return Err(TimestampError::InvalidComponent("hour"));
    }
    if minute > 59 {
        return Err(TimestampError::InvalidComponent("minute"));
    }
    let mut pos = 5;
    let mut second = 0;
    let mut frac = 0i64;
    if s.get(pos) == Some(&b':') {
        second = two_digits(s, pos + 1).ok_or(TimestampError::Malformed)?;
        if second > 59 {
            return Err(TimestampError::InvalidComponent("second"));
        }
        pos += 3;
        if s.get(pos) == Some(&b'.') {
            pos += 1;
            let digits = s.get(pos..).unwrap_or_default().iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(TimestampError::Malformed);
            }
            if digits > 9 {
                return Err(TimestampError::TooPrecise);
            }
            for &b in s.get(pos..pos + digits).unwrap_or_default() {
                frac = frac * 10 + i64::from(b - b'0');
            }
            frac *= 10i64.pow(9 - digits as u32);
            pos += digits;
        }
    }
    let offset_secs = utc_offset(s.get(pos..).unwrap_or_default())?;
    let secs = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Ok(TimeOfDay { secs, frac, offset_secs })
}

/// Nothing (naive, taken as UTC), `Z`, or `±HH`, `±HHMM`, `±HH:MM`, optionally after one space.
fn utc_offset(s: &[u8]) -> Result<i64, TimestampError> {
    let s = s.strip_prefix(b" ").unwrap_or(s);
    let (sign, rest) = match s {
        [] | [b'Z' | b'z'] | [b'U', b'T', b'C'] => return Ok(0),
        [b'+', rest @ ..] => (1, rest),
        [b'-', rest @ ..] => (-1, rest),
        _ => return Err(TimestampError::Malformed),
    };
    let hours = two_digits(rest, 0).ok_or(TimestampError::Malformed)?;
    let minutes = match rest.get(2..).unwrap_or_default() {
        [] => 0,
        [b':', _, _] => two_digits(rest, 3).ok_or(TimestampError::Malformed)?,
        [_, _] => two_digits(rest, 2).ok_or(TimestampError::Malformed)?,
        _ => return Err(TimestampError::Malformed),
    };
    if hours > 23 || minutes > 59 {
        return Err(TimestampError::InvalidComponent("UTC offset"));
    }
    Ok(sign * i64::from(hours * 3600 + minutes * 60))
}

/// Layouts tried by chrono when the text is not ISO `YYYY-MM-DD…`; all taken as UTC.
/// Day/month-first slash dates (`01/02/2024`) are deliberately absent: they are ambiguous.
const FALLBACK_DATETIME: [&str; 6] = [
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
    "%Y%m%d %H:%M:%S%.f",
    "%Y%m%d %H%M%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
];
const FALLBACK_DATE: [&str; 3] = ["%Y/%m/%d", "%Y%m%d", "%Y-%m-%d"];

fn naive_to_nanos(dt: NaiveDateTime) -> Result<i64, TimestampError> {
    let days = epoch_days(dt.date());
    let time = dt.time();
    // chrono encodes a leap second as nanosecond >= 1e9; fold it into the next second.
    let nanos = i64::from(time.nanosecond());
    let secs = i64::from(time.num_seconds_from_midnight()) + nanos / NANOS_PER_SEC;
    combine(days, TimeOfDay { secs, frac: nanos % NANOS_PER_SEC, offset_secs: 0 })
}

/// Days between 0001-01-01 (day 1 of the common era) and 1970-01-01.
const CE_TO_UNIX_DAYS: i64 = 719_163;

fn epoch_days(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce()) - CE_TO_UNIX_DAYS
}

fn fallback_date(s: &str) -> Option<i64> {
    FALLBACK_DATE.iter().find_map(|f| NaiveDate::parse_from_str(s, f).ok()).map(epoch_days)
}

fn fallback(s: &[u8]) -> Result<i64, TimestampError> {
    let text = std::str::from_utf8(s).map_err(|_| TimestampError::Malformed)?;
    if let Some(dt) = FALLBACK_DATETIME.iter().find_map(|f| NaiveDateTime::parse_from_str(text, f).ok()) {
        return naive_to_nanos(dt);
    }
    match fallback_date(text) {
        Some(days) => combine(days, MIDNIGHT),
        None => Err(TimestampError::Malformed),
    }
}

/// Parses one timestamp cell to UTC nanoseconds.
///
/// Accepts `YYYY-MM-DD`, then optionally `T` or a space and `HH:MM[:SS[.f{1,9}]]`, then
/// optionally `Z`, `±HH`, `±HHMM` or `±HH:MM` (converted to UTC; a naive time is UTC).
/// Also `YYYY/MM/DD` and `YYYYMMDD` layouts. Surrounding ASCII spaces are ignored.
pub fn parse_timestamp(text: &[u8]) -> Result<i64, TimestampError> {
    TimestampParser::default().parse(text)
}

/// [`parse_timestamp`] remembering the last date it read: rows of one day skip the date math.
#[derive(Debug, Default)]
pub(crate) struct TimestampParser {
    last_date: Option<([u8; 10], i64)>,
}

impl TimestampParser {
    fn date_prefix(&mut self, s: &[u8]) -> Result<Option<i64>, TimestampError> {
        let Some(prefix) = s.get(..10) else { return Ok(None) };
        if let Some((text, days)) = &self.last_date
            && text.as_slice() == prefix
        {
            return Ok(Some(*days));
        }
        let days = iso_date(prefix)?;
        if let Some(days) = days {
            let mut text = [0u8; 10];
            text.copy_from_slice(prefix);
            self.last_date = Some((text, days));
        }
        Ok(days)
    }

    pub(crate) fn parse(&mut self, text: &[u8]) -> Result<i64, TimestampError> {
        let s = text.trim_ascii();
        let Some(days) = self.date_prefix(s)? else { return fallback(s) };
        match s.get(10..).unwrap_or_default() {
            [] => combine(days, MIDNIGHT),
            [b' ' | b'T' | b't', rest @ ..] => match time_of_day(rest) {
                Ok(t) => combine(days, t),
                Err(TimestampError::Malformed) => fallback(s),
                Err(e) => Err(e),
            },
            _ => fallback(s),
        }
    }

    /// The shapes nearly every file writes, `YYYY-MM-DD HH:MM:SS` (or with `T`, and with
    /// or without barvault's `Z`) and `YYYY-MM-DD`, untrimmed: the value [`Self::parse`]
    /// gives, or `None` for any other cell, valid or not, for [`Self::parse`] to decide (and
    /// word its error).
    ///
    /// Same value: the cell starts with a digit and ends with a digit or `Z`, so `parse`'s
    /// trim is a no-op; the date goes through the same [`Self::date_prefix`]; and for the
    /// 8 bytes after the separator `time_of_day` reads `HH:MM:SS` with these range checks,
    /// no fraction and no offset (0, also for `Z`), which is what is combined here.
    #[inline]
    pub(crate) fn parse_common(&mut self, s: &[u8]) -> Option<i64> {
        let days = self.date_prefix(s).ok()??;
        let time = match s.get(10..)? {
            [time @ .., b'Z'] if time.len() == 9 => time,
            time => time,
        };
        let secs = match time {
            [] => 0,
            [b' ' | b'T' | b't', h1, h2, b':', m1, m2, b':', s1, s2] => {
                let pair = |a: u8, b: u8| Some(digit(a)? * 10 + digit(b)?);
                let (hour, minute, second) = (pair(*h1, *h2)?, pair(*m1, *m2)?, pair(*s1, *s2)?);
                if hour > 23 || minute > 59 || second > 59 {
                    return None;
                }
                i64::from(hour * 3600 + minute * 60 + second)
            }
            _ => return None,
        };
        combine(days, TimeOfDay { secs, frac: 0, offset_secs: 0 }).ok()
    }

    /// A date-only cell, for the split `date,time` layout; `None` when it is not one.
    pub(crate) fn parse_date(&mut self, text: &[u8]) -> Option<i64> {
        let s = text.trim_ascii();
        if s.len() == 10
            && let Ok(Some(days)) = self.date_prefix(s)
        {
            return Some(days);
        }
        std::str::from_utf8(s).ok().and_then(fallback_date)
    }

    /// Joins a date cell and a time-of-day cell of the split layout.
    pub(crate) fn parse_split(&mut self, date: &[u8], time: &[u8]) -> Result<i64, TimestampError> {
        let days = self.parse_date(date).ok_or(TimestampError::Malformed)?;
        combine(days, time_of_day(time.trim_ascii())?)
    }
}

/// Whether a cell is a timestamp (or a time of day) written with an explicit UTC offset or
/// `Z`, as opposed to a naive one (or something else: a price, a date alone).
pub fn has_utc_offset(text: &[u8]) -> bool {
    let s = text.trim_ascii();
    let is_time = TimestampParser::default().parse(s).is_ok() || time_of_day(s).is_ok();
    if !is_time {
        return false;
    }
    if s.ends_with(b"Z") || s.ends_with(b"z") || s.ends_with(b"UTC") {
        return true;
    }
    // A sign after the time's first `:` starts an offset (a date's `-` comes before it).
    match s.iter().position(|&b| b == b':') {
        Some(colon) => s.get(colon..).is_some_and(|rest| rest.iter().any(|&b| b == b'+' || b == b'-')),
        None => false,
    }
}

/// Whether a cell is a bare time of day (`HH:MM[:SS[.f]]`), for detecting the split layout.
pub(crate) fn is_time_of_day(text: &[u8]) -> bool {
    time_of_day(text.trim_ascii()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn fmt(n: i64) -> String {
        let mut v = Vec::new();
        format_timestamp_csv(n, &mut v);
        String::from_utf8(v).unwrap()
    }

    fn chrono_nanos(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc).timestamp_nanos_opt().unwrap()
    }

    #[test]
    fn offsets_are_told_from_naive_times() {
        for aware in ["2024-01-02 10:00:00Z", "2024-01-02T10:00:00-05:00", " 2024-01-02 10:00+0100 ", "10:00:00+01:00"]
        {
            assert!(has_utc_offset(aware.as_bytes()), "{aware}");
        }
        for naive in [
            "2024-01-02",
            "2024-01-02 10:00:00",
            "20240102",
            "-5",
            "1.5",
            "10:00",
            "abc+1",
            "",
            "2024-01-02 10:00:00.5",
        ] {
            assert!(!has_utc_offset(naive.as_bytes()), "{naive}");
        }
    }

    #[test]
    fn the_utc_marker_ends_every_timestamp_and_reads_back() {
        let mut w = TimestampWriter::new(3).utc_marker(true);
        let mut out = Vec::new();
        w.write(146_000_000, &mut out);
        assert_eq!(out, b"1970-01-01 00:00:00.146Z");
        assert_eq!(parse_timestamp(&out), Ok(146_000_000));
        let mut p = TimestampParser::default();
        assert_eq!(p.parse_common(b"1970-01-02 00:00:01Z"), Some(86_401 * NANOS_PER_SEC));
        assert_eq!(p.parse_common(b"1970-01-02 00:00:01"), Some(86_401 * NANOS_PER_SEC));
        assert_eq!(p.parse_common(b"1970-01-02Z"), None);
    }

    #[test]
    fn formats_whole_seconds_and_trimmed_fractions() {
        assert_eq!(fmt(0), "1970-01-01 00:00:00");
        assert_eq!(fmt(1), "1970-01-01 00:00:00.000000001");
        assert_eq!(fmt(-1), "1969-12-31 23:59:59.999999999");
        assert_eq!(fmt(1_500_000_000), "1970-01-01 00:00:01.5");
        assert_eq!(fmt(i64::MIN), "1677-09-21 00:12:43.145224192");
        assert_eq!(fmt(i64::MAX), "2262-04-11 23:47:16.854775807");
        assert_eq!(fmt(chrono_nanos("2024-02-29T13:45:07.120Z")), "2024-02-29 13:45:07.12");
    }

    #[test]
    fn fraction_width_is_the_widest_needed() {
        assert_eq!(fraction_digits(&[]), 0);
        assert_eq!(fraction_digits(&[0, 86_400 * NANOS_PER_SEC, -NANOS_PER_SEC]), 0);
        assert_eq!(fraction_digits(&[0, 146_000_000, 500_000_000]), 3);
        assert_eq!(fraction_digits(&[-1]), 9);
        assert_eq!(fraction_digits(&[10, 1_000]), 8);
        let mut w = TimestampWriter::new(3);
        let mut out = Vec::new();
        w.write(0, &mut out);
        out.push(b'|');
        w.write(146_000_000, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "1970-01-01 00:00:00.000|1970-01-01 00:00:00.146");
    }

    #[test]
    fn writer_cache_does_not_leak_between_days() {
        let mut w = TimestampWriter::new(9);
        let mut out = Vec::new();
        for n in [0, 86_400 * NANOS_PER_SEC - 1, 86_400 * NANOS_PER_SEC, -1] {
            w.write(n, &mut out);
            out.push(b'|');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01 00:00:00.000000000|1970-01-01 23:59:59.999999999|1970-01-02 00:00:00.000000000|\
             1969-12-31 23:59:59.999999999|"
        );
    }

    #[test]
    fn parses_every_iso_form() {
        let base = chrono_nanos("2024-11-01T05:00:00Z");
        for s in [
            "2024-11-01 05:00:00",
            "2024-11-01T05:00:00",
            "2024-11-01 05:00",
            "2024-11-01T05:00:00Z",
            "2024-11-01T05:00:00+0000",
            "2024-11-01T07:00:00+02:00",
            "2024-11-01T07:30:00+0230",
            "2024-11-01T00:00:00-05",
            "2024-11-01 05:00:00 UTC",
            " 2024-11-01 05:00:00 ",
            "2024/11/01 05:00:00",
            "20241101 05:00:00",
        ] {
            assert_eq!(parse_timestamp(s.as_bytes()), Ok(base), "{s}");
        }
        assert_eq!(parse_timestamp(b"2024-11-01"), Ok(chrono_nanos("2024-11-01T00:00:00Z")));
        assert_eq!(parse_timestamp(b"20241101"), Ok(chrono_nanos("2024-11-01T00:00:00Z")));
        assert_eq!(parse_timestamp(b"2015-09-23T20:57:42.146"), Ok(chrono_nanos("2015-09-23T20:57:42.146Z")));
        assert_eq!(parse_timestamp(b"1969-12-31 23:59:59.999999999"), Ok(-1));
        assert_eq!(parse_timestamp(b"1677-09-21 00:12:43.145224192"), Ok(i64::MIN));
        assert_eq!(parse_timestamp(b"2262-04-11 23:47:16.854775807"), Ok(i64::MAX));
    }

    #[test]
    fn refuses_bad_timestamps() {
        use TimestampError::*;
        assert_eq!(parse_timestamp(b"2262-04-11 23:47:16.854775808"), Err(OutOfRange));
        assert_eq!(parse_timestamp(b"1677-09-21 00:12:43.145224191"), Err(OutOfRange));
        assert_eq!(parse_timestamp(b"1600-01-01"), Err(OutOfRange));
        assert_eq!(parse_timestamp(b"2024-13-01"), Err(InvalidComponent("month")));
        assert_eq!(parse_timestamp(b"2023-02-29"), Err(InvalidComponent("day of month")));
        assert_eq!(parse_timestamp(b"2024-01-01 24:00:00"), Err(InvalidComponent("hour")));
        assert_eq!(parse_timestamp(b"2024-01-01 00:60:00"), Err(InvalidComponent("minute")));
        assert_eq!(parse_timestamp(b"2024-01-01 00:00:60"), Err(InvalidComponent("second")));
        assert_eq!(parse_timestamp(b"2024-01-01 00:00:00.1234567891"), Err(TooPrecise));
        assert_eq!(parse_timestamp(b"2024-01-01T00:00:00+25:00"), Err(InvalidComponent("UTC offset")));
        for bad in ["", "x", "01/02/2024", "2024-01-01 00:00:00.", "2024-01-01 00:00:00+1", "2024-01-01x", "\u{ff}"] {
            assert_eq!(parse_timestamp(bad.as_bytes()), Err(Malformed), "{bad:?}");
        }
    }

    #[test]
    fn split_date_and_time() {
        let mut p = TimestampParser::default();
        assert_eq!(p.parse_split(b"2006-01-02", b"09:01:00"), Ok(chrono_nanos("2006-01-02T09:01:00Z")));
        assert!(is_time_of_day(b"09:01:00"));
        assert!(!is_time_of_day(b"3602.00"));
        assert_eq!(p.parse_date(b"3602.00"), None);
        assert_eq!(p.parse_split(b"2006-01-02", b"9:01"), Err(TimestampError::Malformed));
    }

    #[test]
    fn civil_conversion_round_trips_over_the_i64_range() {
        let lo = i64::MIN.div_euclid(NANOS_PER_SEC * SECS_PER_DAY);
        let hi = i64::MAX.div_euclid(NANOS_PER_SEC * SECS_PER_DAY);
        for days in lo..=hi {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d <= days_in_month(y, m));
        }
    }

    /// Timestamps of the common shapes and next to them: any year, month, day, hour, minute
    /// and second in two digits (many invalid), any separator, and what may follow.
    fn near_common() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let date = (1600u32..2300, 0u32..14, 0u32..33).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
        let sep = prop::sample::select(vec![" ", "T", "t", "x", "  ", ""]);
        let time = (0u32..30, 0u32..70, 0u32..70).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}"));
        let tail = prop::sample::select(vec!["", "", "", ".5", "Z", "+01:00", " ", ":00", "0"]);
        let lead = prop::sample::select(vec!["", "", "", " "]);
        (lead, date, proptest::option::of((sep, time)), tail).prop_map(|(lead, date, time, tail)| match time {
            Some((sep, time)) => format!("{lead}{date}{sep}{time}{tail}"),
            None => format!("{lead}{date}{tail}"),
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 5_000, ..Default::default() })]

        /// `parse_common` gives `parse`'s value or declines, and declines only what is not of
        /// the two common shapes or what `parse` refuses; one parser for all, so that its
        /// remembered date is exercised too.
        #[test]
        fn parse_common_is_parse_or_declines(cells in proptest::collection::vec(near_common(), 1..8)) {
            let (mut fast, mut slow) = (TimestampParser::default(), TimestampParser::default());
            for cell in &cells {
                let expected = slow.parse(cell.as_bytes());
                let common = (cell.len() == 10 || cell.len() == 19)
                    && !cell.starts_with(' ')
                    && cell.get(10..11).is_none_or(|sep| [" ", "T", "t"].contains(&sep));
                match fast.parse_common(cell.as_bytes()) {
                    Some(v) => proptest::prop_assert_eq!(Ok(v), expected, "{:?}", cell),
                    None => proptest::prop_assert!(!common || expected.is_err(), "declined {:?}", cell),
                }
            }
        }
    }
}
