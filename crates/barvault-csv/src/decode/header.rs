//! The header of a CSV input, resolved to the fields each column of a bar comes from:
//! which column is the timestamp (one field, or a date and a time of day), the core
//! columns under their usual names and aliases, and every other column as an extra.

use barvault_domain::ExtraColumn;
use barvault_ports::CodecError;

use super::scan::Fields;
use crate::timestamp::{TimestampParser, is_time_of_day};

pub(super) const BOM: &[u8] = b"\xEF\xBB\xBF";
pub(super) const CORE: [&str; 5] = ["open", "high", "low", "close", "volume"];
/// The widest header accepted: bars and their extra columns fit many times over, and a
/// hostile file of a million columns is refused before it costs memory per column.
pub(super) const MAX_COLUMNS: usize = 1024;

/// What a header cell names, after [`ExtraColumn::normalize_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    DateTime,
    Date,
    Time,
    Core(usize),
    Extra(String),
}

pub(super) fn classify(normalized: &str) -> Target {
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
pub(super) enum TsCols {
    One(usize),
    /// A date field and a time-of-day field.
    Split(usize, usize),
}

#[derive(Debug)]
pub(super) struct ExtraCol {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) header: String,
}

/// The header, resolved to field indices.
#[derive(Debug)]
pub(super) struct Layout {
    pub(super) ts: TsCols,
    pub(super) ts_header: String,
    /// open, high, low, close.
    pub(super) core: [(usize, String); 4],
    pub(super) volume: Option<(usize, String)>,
    pub(super) extras: Vec<ExtraCol>,
    pub(super) width: usize,
}

pub(super) fn header_error(line: u64, column: &str, value: Option<&str>, reason: impl Into<String>) -> CodecError {
    CodecError::parse(Some(line), Some(column), value, reason)
}

impl Layout {
    pub(super) fn from_header(record: &impl Fields, line: u64) -> Result<Self, CodecError> {
        let headers = header_names(record, line)?;
        let found = Columns::assign(&headers, line)?;
        let name_of = |i: usize| headers.get(i).cloned().unwrap_or_default();
        let ts = found.timestamp(&headers, line)?;
        let ts_header = match ts {
            TsCols::One(i) => name_of(i),
            TsCols::Split(d, t) => format!("{} {}", name_of(d), name_of(t)),
        };
        let mut core = [(0, String::new()), (0, String::new()), (0, String::new()), (0, String::new())];
        for (c, slot) in core.iter_mut().enumerate() {
            let index = found.core.get(c).copied().flatten();
            let name = CORE.get(c).copied().unwrap_or("?");
            let index = index.ok_or_else(|| header_error(line, name, None, format!("missing {name} column")))?;
            *slot = (index, name_of(index));
        }
        let volume = found.core.get(4).copied().flatten().map(|i| (i, name_of(i)));
        Ok(Layout { ts, ts_header, core, volume, extras: found.extras, width: headers.len() })
    }

    /// Switches to the layout where the timestamp column holds two fields, a date and a
    /// time of day, so every column after it sits one field to the right.
    pub(super) fn split_rows(&mut self) {
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

    /// Whether this is barvault's own layout (`timestamp,open,high,low,close,volume` in that
    /// order, nothing else), whose records [`canonical_record`] can read in one pass.
    pub(super) fn is_canonical(&self) -> bool {
        let [o, h, l, c] = &self.core;
        matches!(self.ts, TsCols::One(0))
            && [o.0, h.0, l.0, c.0] == [1, 2, 3, 4]
            && self.volume.as_ref().is_some_and(|v| v.0 == 5)
            && self.extras.is_empty()
            && self.width == 6
    }

    /// Whether a record of one field more than the header is a date and a time of day where
    /// the header names one timestamp column (as in backtrader's ESTX50 minute file).
    pub(super) fn looks_split(&self, record: &impl Fields, parser: &mut TimestampParser) -> bool {
        let TsCols::One(k) = self.ts else { return false };
        record.count() == self.width + 1
            && record.field(k).is_some_and(|d| parser.parse_date(d).is_some())
            && record.field(k + 1).is_some_and(is_time_of_day)
    }
}

/// The header's cells as text (a BOM dropped, spaces trimmed), refusing more than
/// [`MAX_COLUMNS`] and cells that are not UTF-8 before any per-column work.
fn header_names(record: &impl Fields, line: u64) -> Result<Vec<String>, CodecError> {
    if record.count() > MAX_COLUMNS {
        return Err(header_error(
            line,
            &format!("#{}", MAX_COLUMNS + 1),
            None,
            format!("{} columns; at most {MAX_COLUMNS} are supported", record.count()),
        ));
    }
    let mut headers = Vec::with_capacity(record.count());
    for (i, raw) in record.fields().enumerate() {
        let raw = if i == 0 { raw.strip_prefix(BOM).unwrap_or(raw) } else { raw };
        let text = std::str::from_utf8(raw).map_err(|_| {
            header_error(line, &format!("#{}", i + 1), Some(&String::from_utf8_lossy(raw)), "header is not valid UTF-8")
        })?;
        headers.push(text.trim().to_string());
    }
    Ok(headers)
}

/// Which header cell names what.
struct Columns {
    datetime: Option<usize>,
    date: Option<usize>,
    time: Option<usize>,
    /// open, high, low, close, volume.
    core: [Option<usize>; 5],
    extras: Vec<ExtraCol>,
}

impl Columns {
    /// Assigns each header cell its column, refusing a column named twice (also under an
    /// alias) and names that cannot be an extra column.
    fn assign(headers: &[String], line: u64) -> Result<Self, CodecError> {
        // A map, not a list: a header of a million columns must not cost a million squared.
        let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::with_capacity(headers.len());
        let mut found = Columns { datetime: None, date: None, time: None, core: [None; 5], extras: Vec::new() };
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
                let reason = format!("duplicate column: {first:?} and {header:?} both mean {key:?}");
                return Err(header_error(line, header, Some(header), reason));
            }
            seen.insert(key, header);
            match target {
                Target::DateTime => found.datetime = Some(i),
                Target::Date => found.date = Some(i),
                Target::Time => found.time = Some(i),
                Target::Core(c) => {
                    if let Some(slot) = found.core.get_mut(c) {
                        *slot = Some(i);
                    }
                }
                Target::Extra(name) => {
                    ExtraColumn::check_name(&name).map_err(|e| {
                        header_error(line, header, Some(header), format!("cannot be used as an extra column: {e}"))
                    })?;
                    found.extras.push(ExtraCol { index: i, name, header: header.clone() });
                }
            }
        }
        Ok(found)
    }

    /// Where the timestamp comes from: a date and a time column, or the one column that
    /// names it (or pandas' unnamed index).
    fn timestamp(&self, headers: &[String], line: u64) -> Result<TsCols, CodecError> {
        let name_of = |i: usize| headers.get(i).cloned().unwrap_or_default();
        let named: Vec<usize> = [self.datetime, self.date, self.time].into_iter().flatten().collect();
        match (self.datetime, self.date, self.time, named.as_slice()) {
            (None, Some(d), Some(t), _) => Ok(TsCols::Split(d, t)),
            (_, _, _, [one]) => Ok(TsCols::One(*one)),
            (_, _, _, [a, b, ..]) => {
                let (x, y) = (name_of(*a), name_of(*b));
                Err(header_error(line, &y, Some(&y), format!("columns {x:?} and {y:?} both name the timestamp")))
            }
            (_, _, _, []) if headers.first().is_some_and(|h| ExtraColumn::normalize_name(h).is_empty()) => {
                Ok(TsCols::One(0))
            }
            (_, _, _, []) => Err(header_error(
                line,
                "timestamp",
                None,
                "missing timestamp column (expected one of timestamp, datetime, date, time)",
            )),
        }
    }
}
