//! The decoder as it was before chunked, parallel decoding: kept verbatim (test builds only)
//! as the reference the new decoder must agree with, byte for byte and error for error.
#![allow(dead_code)]

use std::borrow::Cow;

use barvault_domain::{ExtraColumn, RawBars, TimeRange};
use barvault_ports::CodecError;

use crate::number::{is_missing, parse_extra, parse_f64};
use crate::timestamp::{TimestampError, TimestampParser, is_time_of_day};

const BOM: &[u8] = b"\xEF\xBB\xBF";
const CORE: [&str; 5] = ["open", "high", "low", "close", "volume"];
/// The widest header accepted: bars and their extra columns fit many times over, and a
/// hostile file of a million columns is refused before it costs memory per column.
const MAX_COLUMNS: usize = 1024;

/// What a header cell names, after [`ExtraColumn::normalize_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    DateTime,
    Date,
    Time,
    Core(usize),
    Extra(String),
}

fn classify(normalized: &str) -> Target {
    match normalized {
        "timestamp" | "datetime" | "date_time" => Target::DateTime,
        "date" => Target::Date,
        "time" => Target::Time,
        "open" => Target::Core(0),
        "high" => Target::Core(1),
        "low" => Target::Core(2),
        "close" | "last" => Target::Core(3),
        "volume" | "vol" => Target::Core(4),
        "open_interest" | "openinterest" | "open_int" | "oi" => Target::Extra("open_interest".into()),
        "adj_close" | "adjclose" => Target::Extra("adj_close".into()),
        other => Target::Extra(other.to_string()),
    }
}

/// Where the timestamp of a row comes from.
#[derive(Debug, Clone, Copy)]
enum TsCols {
    One(usize),
    /// A date field and a time-of-day field.
    Split(usize, usize),
}

#[derive(Debug)]
struct ExtraCol {
    index: usize,
    name: String,
    header: String,
}

/// The header, resolved to field indices.
#[derive(Debug)]
struct Layout {
    ts: TsCols,
    ts_header: String,
    /// open, high, low, close.
    core: [(usize, String); 4],
    volume: Option<(usize, String)>,
    extras: Vec<ExtraCol>,
    width: usize,
}

fn header_error(line: u64, column: &str, value: Option<&str>, reason: impl Into<String>) -> CodecError {
    CodecError::parse(Some(line), Some(column), value, reason)
}

impl Layout {
    fn from_header(record: &csv::ByteRecord, line: u64) -> Result<Self, CodecError> {
        if record.len() > MAX_COLUMNS {
            return Err(header_error(
                line,
                &format!("#{}", MAX_COLUMNS + 1),
                None,
                format!("{} columns; at most {MAX_COLUMNS} are supported", record.len()),
            ));
        }
        let mut headers = Vec::with_capacity(record.len());
        for (i, raw) in record.iter().enumerate() {
            let raw = if i == 0 { raw.strip_prefix(BOM).unwrap_or(raw) } else { raw };
            let text = std::str::from_utf8(raw).map_err(|_| {
                header_error(
                    line,
                    &format!("#{}", i + 1),
                    Some(&String::from_utf8_lossy(raw)),
                    "header is not valid UTF-8",
                )
            })?;
            headers.push(text.trim().to_string());
        }

        // A map, not a list: a header of a million columns must not cost a million squared.
        let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::with_capacity(headers.len());
        let (mut datetime, mut date, mut time) = (None, None, None);
        let mut core: [Option<usize>; 5] = [None; 5];
        let mut extras = Vec::new();
        for (i, header) in headers.iter().enumerate() {
            let normalized = ExtraColumn::normalize_name(header);
            if normalized.is_empty() {
                if i == 0 {
                    // pandas writes an unnamed index as an empty first header cell.
                    continue;
                }
                return Err(header_error(line, &format!("#{}", i + 1), Some(header), "column has no usable name"));
            }
            let target = classify(&normalized);
            let key = match &target {
                Target::DateTime => "timestamp".to_string(),
                Target::Date => "date".to_string(),
                Target::Time => "time".to_string(),
                Target::Core(c) => CORE.get(*c).copied().unwrap_or("?").to_string(),
                Target::Extra(name) => name.clone(),
            };
            if let Some(first) = seen.get(&key) {
                return Err(header_error(
                    line,
                    header,
                    Some(header),
                    format!("duplicate column: {first:?} and {header:?} both mean {key:?}"),
                ));
            }
            seen.insert(key, header);
            match target {
                Target::DateTime => datetime = Some(i),
                Target::Date => date = Some(i),
                Target::Time => time = Some(i),
                Target::Core(c) => {
                    if let Some(slot) = core.get_mut(c) {
                        *slot = Some(i);
                    }
                }
                Target::Extra(name) => {
                    ExtraColumn::check_name(&name).map_err(|e| {
                        header_error(line, header, Some(header), format!("cannot be used as an extra column: {e}"))
                    })?;
                    extras.push(ExtraCol { index: i, name, header: header.clone() });
                }
            }
        }

        let name_of = |i: usize| headers.get(i).cloned().unwrap_or_default();
        let named: Vec<usize> = [datetime, date, time].into_iter().flatten().collect();
        let ts = match (datetime, date, time, named.as_slice()) {
            (None, Some(d), Some(t), _) => TsCols::Split(d, t),
            (_, _, _, [one]) => TsCols::One(*one),
            (_, _, _, [a, b, ..]) => {
                let (x, y) = (name_of(*a), name_of(*b));
                return Err(header_error(
                    line,
                    &y,
                    Some(&y),
                    format!("columns {x:?} and {y:?} both name the timestamp"),
                ));
            }
            (_, _, _, []) => {
                if headers.first().is_some_and(|h| ExtraColumn::normalize_name(h).is_empty()) {
                    TsCols::One(0)
                } else {
                    return Err(header_error(
                        line,
                        "timestamp",
                        None,
                        "missing timestamp column (expected one of timestamp, datetime, date, time)",
                    ));
                }
            }
        };
        let ts_header = match ts {
            TsCols::One(i) => name_of(i),
            TsCols::Split(d, t) => format!("{} {}", name_of(d), name_of(t)),
        };
        let mut found = [(0, String::new()), (0, String::new()), (0, String::new()), (0, String::new())];
        for (c, slot) in found.iter_mut().enumerate() {
            let index = core.get(c).copied().flatten();
            let name = CORE.get(c).copied().unwrap_or("?");
            let index = index.ok_or_else(|| header_error(line, name, None, format!("missing {name} column")))?;
            *slot = (index, name_of(index));
        }
        let volume = core.get(4).copied().flatten().map(|i| (i, name_of(i)));
        Ok(Layout { ts, ts_header, core: found, volume, extras, width: headers.len() })
    }

    /// Switches to the layout where the timestamp column holds two fields, a date and a
    /// time of day, so every column after it sits one field to the right.
    fn split_rows(&mut self) {
        let TsCols::One(k) = self.ts else { return };
        let shift = |i: &mut usize| {
            if *i > k {
                *i += 1;
            }
        };
        self.ts = TsCols::Split(k, k + 1);
        self.ts_header = format!("{} (date and time fields)", self.ts_header);
        for (i, _) in &mut self.core {
            shift(i);
        }
        if let Some((i, _)) = &mut self.volume {
            shift(i);
        }
        for e in &mut self.extras {
            shift(&mut e.index);
        }
        self.width += 1;
    }

    /// Whether a record of one field more than the header is a date and a time of day where
    /// the header names one timestamp column (as in backtrader's ESTX50 minute file).
    fn looks_split(&self, record: &csv::ByteRecord, parser: &mut TimestampParser) -> bool {
        let TsCols::One(k) = self.ts else { return false };
        record.len() == self.width + 1
            && record.get(k).is_some_and(|d| parser.parse_date(d).is_some())
            && record.get(k + 1).is_some_and(is_time_of_day)
    }
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn cell_error(line: u64, column: &str, value: &[u8], reason: &str) -> CodecError {
    let reason = if std::str::from_utf8(value).is_err() { "invalid UTF-8" } else { reason };
    CodecError::parse(Some(line), Some(column), Some(&lossy(value)), reason)
}

/// The 1-based physical line a record starts on. csv's own position is where the read
/// began, before the rest of a CRLF and any blank lines it skipped, so it can be early.
fn line_of(input: &[u8], record: &csv::ByteRecord) -> u64 {
    let from = record.position().map_or(0, csv::Position::byte);
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(input.len());
    let rest = input.get(from..).unwrap_or_default();
    let start = from + rest.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let before = input.get(..start).unwrap_or_default();
    1 + before.iter().filter(|&&b| b == b'\n').count() as u64
}

fn csv_error(e: csv::Error) -> CodecError {
    let line = e.position().map(csv::Position::line);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => CodecError::Io(io),
        other => CodecError::parse(line, None, None, format!("unreadable CSV: {other:?}")),
    }
}

/// A record to pass over silently: all cells blank, or Barchart's closing
/// `Downloaded from Barchart.com as of …` line.
fn is_ignorable(record: &csv::ByteRecord) -> bool {
    const FOOTER: &[u8] = b"downloaded from barchart";
    let mut cells = record.iter();
    let first = cells.next().unwrap_or_default().trim_ascii();
    let rest_blank = cells.all(|c| c.trim_ascii().is_empty());
    rest_blank && (first.is_empty() || first.get(..FOOTER.len()).is_some_and(|p| p.eq_ignore_ascii_case(FOOTER)))
}

fn core_value(input: &[u8], record: &csv::ByteRecord, (index, name): &(usize, String)) -> Result<f64, CodecError> {
    let cell = record.get(*index).unwrap_or_default();
    parse_f64(cell).ok_or_else(|| {
        let reason = if cell.trim_ascii().is_empty() { "empty value in a required column" } else { "not a number" };
        cell_error(line_of(input, record), name, cell, reason)
    })
}

/// Decodes a whole CSV stream, keeping the rows whose timestamp is in `range`.
///
/// Every row is parsed, also those outside `range`, so a damaged file fails the same way
/// whatever range is asked for.
pub(crate) fn decode_slice(input: &[u8], range: Option<TimeRange>) -> Result<RawBars, CodecError> {
    // About 50 bytes per row in the common layouts: reserve once instead of regrowing.
    let rows_hint = input.len() / 48;
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input);
    let mut record = csv::ByteRecord::new();
    if !csv.read_byte_record(&mut record).map_err(csv_error)? {
        return Err(CodecError::parse(Some(1), None, None, "empty input: no header line"));
    }
    let mut layout = Layout::from_header(&record, line_of(input, &record))?;
    let range = range.unwrap_or_else(TimeRange::all);
    let mut parser = TimestampParser::default();
    let mut out = RawBars::with_capacity(rows_hint);
    let mut extras: Vec<Vec<Option<f64>>> = layout.extras.iter().map(|_| Vec::with_capacity(rows_hint)).collect();
    let mut first_row = true;

    while csv.read_byte_record(&mut record).map_err(csv_error)? {
        if first_row {
            first_row = false;
            if layout.looks_split(&record, &mut parser) {
                layout.split_rows();
            }
        }
        if record.len() != layout.width {
            if is_ignorable(&record) {
                continue;
            }
            let text: Vec<Cow<'_, str>> = record.iter().map(lossy).collect();
            return Err(CodecError::parse(
                Some(line_of(input, &record)),
                None,
                Some(&text.join(",")),
                format!("expected {} fields, found {}", layout.width, record.len()),
            ));
        }
        let ts = match layout.ts {
            TsCols::One(i) => {
                let cell = record.get(i).unwrap_or_default();
                parser.parse(cell).map_err(|e| (cell.to_vec(), e))
            }
            TsCols::Split(d, t) => {
                let (date, time) = (record.get(d).unwrap_or_default(), record.get(t).unwrap_or_default());
                parser.parse_split(date, time).map_err(|e| ([date, b" ", time].concat(), e))
            }
        };
        let ts = match ts {
            Ok(ts) => ts,
            Err(_) if is_ignorable(&record) => continue,
            Err((cell, e)) => {
                let reason = match e {
                    TimestampError::Malformed if cell.trim_ascii().is_empty() => "empty timestamp".to_string(),
                    e => e.to_string(),
                };
                return Err(cell_error(line_of(input, &record), &layout.ts_header, &cell, &reason));
            }
        };
        let [o, h, l, c] = &layout.core;
        let open = core_value(input, &record, o)?;
        let high = core_value(input, &record, h)?;
        let low = core_value(input, &record, l)?;
        let close = core_value(input, &record, c)?;
        let volume = match &layout.volume {
            Some((index, name)) => {
                let cell = record.get(*index).unwrap_or_default();
                match parse_f64(cell) {
                    Some(v) => v,
                    None if is_missing(cell) => f64::NAN,
                    None => return Err(cell_error(line_of(input, &record), name, cell, "not a number")),
                }
            }
            None => f64::NAN,
        };
        let keep = range.contains(ts);
        for (col, values) in layout.extras.iter().zip(&mut extras) {
            let cell = record.get(col.index).unwrap_or_default();
            let v = parse_extra(cell)
                .map_err(|_| cell_error(line_of(input, &record), &col.header, cell, "not a number"))?;
            if keep {
                values.push(v);
            }
        }
        if keep {
            out.push(ts, open, high, low, close, volume);
        }
    }

    for (col, values) in layout.extras.iter().zip(extras) {
        out.extras.push(ExtraColumn::new(&col.name, values)?);
    }
    Ok(out)
}
