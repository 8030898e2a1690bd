//! CSV bytes (barvault's own or a user's export) -> RawBars.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, mpsc};

use barvault_domain::{ExtraColumn, RawBars, TimeRange};
use barvault_ports::CodecError;

use crate::number::{decimal_prefix, is_missing, parse_extra, parse_f64};
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
    fn from_header(record: &impl Fields, line: u64) -> Result<Self, CodecError> {
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

    /// Whether this is barvault's own layout (`timestamp,open,high,low,close,volume` in that
    /// order, nothing else), whose records [`canonical_record`] can read in one pass.
    fn is_canonical(&self) -> bool {
        let [o, h, l, c] = &self.core;
        matches!(self.ts, TsCols::One(0))
            && [o.0, h.0, l.0, c.0] == [1, 2, 3, 4]
            && self.volume.as_ref().is_some_and(|v| v.0 == 5)
            && self.extras.is_empty()
            && self.width == 6
    }

    /// Whether a record of one field more than the header is a date and a time of day where
    /// the header names one timestamp column (as in backtrader's ESTX50 minute file).
    fn looks_split(&self, record: &impl Fields, parser: &mut TimestampParser) -> bool {
        let TsCols::One(k) = self.ts else { return false };
        record.count() == self.width + 1
            && record.field(k).is_some_and(|d| parser.parse_date(d).is_some())
            && record.field(k + 1).is_some_and(is_time_of_day)
    }
}

/// The fields of one record, however it was split: by csv's reader or by [`scan_records`].
pub(crate) trait Fields {
    fn count(&self) -> usize;
    fn field(&self, i: usize) -> Option<&[u8]>;
    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count()).map(|i| self.field(i).unwrap_or_default())
    }
}

impl Fields for csv::ByteRecord {
    fn count(&self) -> usize {
        self.len()
    }
    fn field(&self, i: usize) -> Option<&[u8]> {
        self.get(i)
    }
}

/// One record of quote-free text: its bytes and the end of each field in them.
#[derive(Debug, Default)]
struct Line<'a> {
    text: &'a [u8],
    ends: Vec<usize>,
}

impl Fields for Line<'_> {
    fn count(&self) -> usize {
        self.ends.len()
    }
    fn field(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = match i.checked_sub(1) {
            Some(previous) => self.ends.get(previous)? + 1,
            None => 0,
        };
        self.text.get(start..end)
    }
}

/// What ends a field in quote-free text, and the quote that makes text not quote-free.
const STOP: [bool; 256] = {
    let mut t = [false; 256];
    t[b',' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'"' as usize] = true;
    t
};

/// The index of the first [`STOP`] byte in `text` from `i` on, or `text.len()`.
///
/// Eight bytes at a time: every stop byte is below 0x2D, and `(x - 0x2D…) & !x & 0x80…`
/// flags the bytes of `x` below 0x2D, exactly for the lowest one (a borrow only runs upward
/// from a flagged byte). A flagged byte that is no stop (a space, `+`) is stepped over.
#[inline]
fn next_stop(text: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = text.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(word) else { break };
        let x = u64::from_le_bytes(bytes);
        let below = x.wrapping_sub(ONES * 0x2D) & !x & HIGH;
        if below == 0 {
            i += 8;
            continue;
        }
        let j = i + (below.trailing_zeros() / 8) as usize;
        if text.get(j).is_some_and(|&c| STOP[usize::from(c)]) {
            return j;
        }
        i = j + 1;
    }
    while text.get(i).is_some_and(|&c| !STOP[usize::from(c)]) {
        i += 1;
    }
    i
}

/// Splits text without a `"` into records exactly as csv's reader does (with its default
/// settings, which are ours): a record is each maximal run of bytes other than `\r` and
/// `\n` (so blank lines are skipped and CR, LF and CRLF all end a record), and a field each
/// run between commas. `each` gets the record and the count of `\n` before it in `text`.
///
/// Each record is first offered to `fast`, as the text from its start to the end of `text`:
/// `fast` returns `Some(len)` when it took the record whole, which it may only do when `len`
/// is the record's length (no `"`, `\r` or `\n` before `len`, and a `\r`, a `\n` or the
/// end at `len`); then the record is not split and `each` does not see it. Both get `state`,
/// so that they can share what they write to.
///
/// Returns the count of `\n` in `text`, or `None` as soon as a `"` is seen: quoted fields
/// need csv's reader, and the records already handed to `each` must then be discarded.
#[inline]
fn scan_records<S, E>(
    text: &[u8],
    state: &mut S,
    mut fast: impl FnMut(&mut S, &[u8]) -> Option<usize>,
    mut each: impl FnMut(&mut S, &Line<'_>, u64) -> Result<(), E>,
) -> Result<Option<u64>, E> {
    let mut line = Line { text: &[], ends: Vec::with_capacity(16) };
    let mut newlines = 0u64;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'\n' => {
                newlines += 1;
                i += 1;
            }
            b'\r' => i += 1,
            b'"' => return Ok(None),
            _ => {
                if let Some(len) = fast(state, text.get(i..).unwrap_or_default())
                    && len > 0
                {
                    i += len;
                    continue;
                }
                let start = i;
                line.ends.clear();
                let stop = loop {
                    i = next_stop(text, i);
                    line.ends.push(i - start);
                    match text.get(i) {
                        Some(b',') => i += 1,
                        other => break other.copied(),
                    }
                };
                if stop == Some(b'"') {
                    return Ok(None);
                }
                line.text = text.get(start..i).unwrap_or_default();
                each(state, &line, newlines)?;
            }
        }
    }
    Ok(Some(newlines))
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
pub(crate) fn line_of(input: &[u8], record: &csv::ByteRecord) -> u64 {
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

/// An error found in a piece of the input, moved to its line in the whole input.
fn shift_line(e: CodecError, lines_before: u64) -> CodecError {
    match e {
        CodecError::Parse { line, column, value, reason } => {
            CodecError::Parse { line: line.map(|l| l.saturating_add(lines_before)), column, value, reason }
        }
        other => other,
    }
}

/// A record to pass over silently: all cells blank, or Barchart's closing
/// `Downloaded from Barchart.com as of …` line.
pub(crate) fn is_ignorable(record: &impl Fields) -> bool {
    const FOOTER: &[u8] = b"downloaded from barchart";
    let mut cells = record.fields();
    let first = cells.next().unwrap_or_default().trim_ascii();
    let rest_blank = cells.all(|c| c.trim_ascii().is_empty());
    rest_blank && (first.is_empty() || first.get(..FOOTER.len()).is_some_and(|p| p.eq_ignore_ascii_case(FOOTER)))
}

fn core_value(
    record: &impl Fields,
    (index, name): &(usize, String),
    line: &impl Fn() -> u64,
) -> Result<f64, CodecError> {
    let cell = record.field(*index).unwrap_or_default();
    parse_f64(cell).ok_or_else(|| {
        let reason = if cell.trim_ascii().is_empty() { "empty value in a required column" } else { "not a number" };
        cell_error(line(), name, cell, reason)
    })
}

/// Decoded rows in file order: the core columns and one column per extra of the layout.
#[derive(Debug, Default)]
struct Columns {
    bars: RawBars,
    extras: Vec<Vec<Option<f64>>>,
}

impl Columns {
    fn with_capacity(rows: usize, extras: usize) -> Self {
        Columns { bars: RawBars::with_capacity(rows), extras: (0..extras).map(|_| Vec::with_capacity(rows)).collect() }
    }

    fn len(&self) -> usize {
        self.bars.len()
    }

    /// Room for `rows` rows in all, so that appending does not move the columns again.
    fn reserve_total(&mut self, rows: usize) {
        let more = rows.saturating_sub(self.len());
        let b = &mut self.bars;
        b.ts.reserve_exact(more);
        for column in [&mut b.open, &mut b.high, &mut b.low, &mut b.close, &mut b.volume] {
            column.reserve_exact(more);
        }
        for column in &mut self.extras {
            column.reserve_exact(more);
        }
    }

    /// Moves the rows of `other` (a later piece of the same layout) to the end of `self`.
    fn append(&mut self, other: &mut Columns) {
        let (a, b) = (&mut self.bars, &mut other.bars);
        a.ts.extend_from_slice(&b.ts);
        for (dst, src) in [
            (&mut a.open, &b.open),
            (&mut a.high, &b.high),
            (&mut a.low, &b.low),
            (&mut a.close, &b.close),
            (&mut a.volume, &b.volume),
        ] {
            dst.extend_from_slice(src);
        }
        for (dst, src) in self.extras.iter_mut().zip(&other.extras) {
            dst.extend_from_slice(src);
        }
        other.clear();
    }

    fn clear(&mut self) {
        self.truncate(0);
    }

    fn truncate(&mut self, rows: usize) {
        let b = &mut self.bars;
        b.ts.truncate(rows);
        for column in [&mut b.open, &mut b.high, &mut b.low, &mut b.close, &mut b.volume] {
            column.truncate(rows);
        }
        for column in &mut self.extras {
            column.truncate(rows);
        }
    }

    /// Columns of `rows` rows, the first `self.len()` of them those of `self` and the rest
    /// zeros, in fresh allocations: zeroed memory comes from the allocator (`calloc`), so
    /// its pages cost nothing until written. (Extras are `None`, which is written.)
    fn zero_extended(&self, rows: usize) -> Columns {
        fn extend<T: Copy>(head: &[T], zeros: Vec<T>) -> Vec<T> {
            let mut v = zeros;
            if let Some(dst) = v.get_mut(..head.len()) {
                dst.copy_from_slice(head);
            }
            v
        }
        let rows = rows.max(self.len());
        let b = &self.bars;
        Columns {
            bars: RawBars {
                ts: extend(&b.ts, vec![0; rows]),
                open: extend(&b.open, vec![0.0; rows]),
                high: extend(&b.high, vec![0.0; rows]),
                low: extend(&b.low, vec![0.0; rows]),
                close: extend(&b.close, vec![0.0; rows]),
                volume: extend(&b.volume, vec![0.0; rows]),
                extras: Vec::new(),
            },
            extras: self.extras.iter().map(|e| extend(e, vec![None; rows])).collect(),
        }
    }

    /// Moves rows `from..from + rows` to start at row `to` (not after `from`).
    fn move_rows(&mut self, from: usize, rows: usize, to: usize) -> Result<(), CodecError> {
        fn shift<T: Copy>(v: &mut [T], from: usize, rows: usize, to: usize) -> Result<(), CodecError> {
            if to > from || from.checked_add(rows).is_none_or(|end| end > v.len()) {
                return Err(CodecError::Corrupt("decoded rows out of place".into()));
            }
            if from > to {
                v.copy_within(from..from + rows, to);
            }
            Ok(())
        }
        let b = &mut self.bars;
        shift(&mut b.ts, from, rows, to)?;
        for column in [&mut b.open, &mut b.high, &mut b.low, &mut b.close, &mut b.volume] {
            shift(column, from, rows, to)?;
        }
        for column in &mut self.extras {
            shift(column, from, rows, to)?;
        }
        Ok(())
    }

    /// A copy of rows `from..from + rows`.
    fn copy_rows(&self, from: usize, rows: usize) -> Result<Columns, CodecError> {
        fn copy<T: Copy>(v: &[T], from: usize, rows: usize) -> Result<Vec<T>, CodecError> {
            let range = from..from.saturating_add(rows);
            v.get(range).map(<[T]>::to_vec).ok_or_else(|| CodecError::Corrupt("decoded rows out of place".into()))
        }
        let b = &self.bars;
        Ok(Columns {
            bars: RawBars {
                ts: copy(&b.ts, from, rows)?,
                open: copy(&b.open, from, rows)?,
                high: copy(&b.high, from, rows)?,
                low: copy(&b.low, from, rows)?,
                close: copy(&b.close, from, rows)?,
                volume: copy(&b.volume, from, rows)?,
                extras: Vec::new(),
            },
            extras: self.extras.iter().map(|e| copy(e, from, rows)).collect::<Result<_, _>>()?,
        })
    }
}

/// Where decoded rows go: a row's extras (every one, in layout order), then its core columns.
/// A row refused may leave some of its extras behind, but then the decode fails.
///
/// The row decoders take a `dyn Sink`: one copy of them, with the number and timestamp
/// parsers inlined as before, serves both sinks for one indirect call per row (two
/// monomorphized copies measured ~4% slower on one thread, their parsers no longer inlined).
trait Sink {
    fn push_extra(&mut self, column: usize, value: Option<f64>);
    fn push(&mut self, ts: i64, open: f64, high: f64, low: f64, close: f64, volume: f64);
}

impl Sink for Columns {
    #[inline]
    fn push_extra(&mut self, column: usize, value: Option<f64>) {
        if let Some(values) = self.extras.get_mut(column) {
            values.push(value);
        }
    }

    #[inline]
    fn push(&mut self, ts: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) {
        self.bars.push(ts, open, high, low, close, volume);
    }
}

/// A stretch of the final columns, written in place by the thread decoding one piece, so
/// that the rows need no copy once decoded. Sized by [`record_bound`]: should a row not fit
/// all the same, `overflow` is set and the piece must be decoded again elsewhere.
#[derive(Debug)]
struct Region<'a> {
    /// The row of the final columns this stretch starts at.
    start: usize,
    ts: &'a mut [i64],
    values: [&'a mut [f64]; 5],
    extras: Vec<&'a mut [Option<f64>]>,
    /// Rows written.
    len: usize,
    overflow: bool,
}

impl Sink for Region<'_> {
    #[inline]
    fn push_extra(&mut self, column: usize, value: Option<f64>) {
        match self.extras.get_mut(column).and_then(|c| c.get_mut(self.len)) {
            Some(slot) => *slot = value,
            None => self.overflow = true,
        }
    }

    #[inline]
    fn push(&mut self, ts: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) {
        let values = [open, high, low, close, volume];
        let i = self.len;
        let Some(slot) = self.ts.get_mut(i) else {
            self.overflow = true;
            return;
        };
        *slot = ts;
        for (column, value) in self.values.iter_mut().zip(values) {
            match column.get_mut(i) {
                Some(slot) => *slot = value,
                None => {
                    self.overflow = true;
                    return;
                }
            }
        }
        self.len = i + 1;
    }
}

/// The part of the final columns not handed out yet, from row `next` on.
#[derive(Debug)]
struct Free<'a> {
    next: usize,
    /// Set once a region was refused.
    spent: bool,
    ts: &'a mut [i64],
    values: [&'a mut [f64]; 5],
    extras: Vec<&'a mut [Option<f64>]>,
}

/// The first `n` items of `s`, which keeps the rest; `None` (and `s` unchanged) when shorter.
fn split_off<'a, T>(s: &mut &'a mut [T], n: usize) -> Option<&'a mut [T]> {
    if n > s.len() {
        return None;
    }
    let (head, tail) = std::mem::take(s).split_at_mut_checked(n)?;
    *s = tail;
    Some(head)
}

impl<'a> Free<'a> {
    /// Rows `from..` of `columns`.
    fn new(columns: &'a mut Columns, from: usize) -> Self {
        fn rest<T>(v: &mut [T], from: usize) -> &mut [T] {
            v.get_mut(from..).unwrap_or_default()
        }
        let Columns { bars, extras } = columns;
        let RawBars { ts, open, high, low, close, volume, .. } = bars;
        Free {
            next: from,
            spent: false,
            ts: rest(ts, from),
            values: [rest(open, from), rest(high, from), rest(low, from), rest(close, from), rest(volume, from)],
            extras: extras.iter_mut().map(|e| rest(e, from)).collect(),
        }
    }

    /// The next `rows` rows, or `None` when fewer are left; then none are handed out any
    /// more, so that regions stay in the order of the pieces.
    fn take(&mut self, rows: usize) -> Option<Region<'a>> {
        let fits = !self.spent
            && self.ts.len() >= rows
            && self.values.iter().all(|c| c.len() >= rows)
            && self.extras.iter().all(|c| c.len() >= rows);
        let region = if fits { self.split(rows) } else { None };
        self.spent = region.is_none();
        region
    }

    fn split(&mut self, rows: usize) -> Option<Region<'a>> {
        let start = self.next;
        let ts = split_off(&mut self.ts, rows)?;
        let [o, h, l, c, v] = &mut self.values;
        let values =
            [split_off(o, rows)?, split_off(h, rows)?, split_off(l, rows)?, split_off(c, rows)?, split_off(v, rows)?];
        let extras = self.extras.iter_mut().map(|e| split_off(e, rows)).collect::<Option<Vec<_>>>()?;
        self.next += rows;
        Some(Region { start, ts, values, extras, len: 0, overflow: false })
    }
}

/// At least as many as the records of quote-free `text` (and so the rows it decodes to), and
/// as many when every line is a record: its record ends, each `\n` and each `\r` not
/// followed by a `\n`, and one more when `text` does not end in a `\r` or `\n`. (A record
/// is a run of bytes other than `\r` and `\n`, so the byte after it is a record end, or the
/// `\r` of a `\r\n`, or there is none and the record ends `text`.)
fn record_bound(text: &[u8]) -> usize {
    let last = usize::from(text.last().is_some_and(|&b| b != b'\r' && b != b'\n'));
    let (newlines, returns) = count_line_bytes(text);
    if returns == 0 {
        return newlines + last;
    }
    record_ends(text) + last
}

/// The record ends of `text`: each `\n`, and each `\r` not followed by a `\n`. Counted 32
/// bytes at a time into byte counters, which vectorizes.
fn record_ends(text: &[u8]) -> usize {
    const LANES: usize = 32;
    let mut count = 0;
    let mut i = 0;
    // Blocks of at most 255 steps, so that no byte counter overflows; each step also reads
    // the byte after its 32.
    while text.len().saturating_sub(i) > LANES {
        let steps = ((text.len() - i - 1) / LANES).min(255);
        let mut counts = [0u8; LANES];
        for _ in 0..steps {
            let (Some(a), Some(b)) = (text.get(i..i + LANES), text.get(i + 1..i + 1 + LANES)) else { break };
            let (Ok(a), Ok(b)) = (<&[u8; LANES]>::try_from(a), <&[u8; LANES]>::try_from(b)) else { break };
            for ((n, &x), &next) in counts.iter_mut().zip(a).zip(b) {
                *n += u8::from(x == b'\n') | (u8::from(x == b'\r') & u8::from(next != b'\n'));
            }
            i += LANES;
        }
        count += counts.iter().map(|&n| usize::from(n)).sum::<usize>();
    }
    while let Some(&x) = text.get(i) {
        i += 1;
        count += usize::from(x == b'\n' || (x == b'\r' && text.get(i) != Some(&b'\n')));
    }
    count
}

/// The counts of `\n` and of `\r` in `text`, 32 bytes at a time into byte counters (which
/// vectorizes): where there is no `\r`, the `\n` are the record ends, found at twice the
/// speed of [`record_ends`].
fn count_line_bytes(text: &[u8]) -> (usize, usize) {
    const LANES: usize = 32;
    let (mut newlines, mut returns) = (0, 0);
    // Runs of at most 255 blocks, so that no byte counter overflows.
    for run in text.chunks(255 * LANES) {
        let (mut n, mut r) = ([0u8; LANES], [0u8; LANES]);
        let blocks = run.chunks_exact(LANES);
        for &x in blocks.remainder() {
            newlines += usize::from(x == b'\n');
            returns += usize::from(x == b'\r');
        }
        for block in blocks {
            for ((n, r), &x) in n.iter_mut().zip(&mut r).zip(block) {
                *n += u8::from(x == b'\n');
                *r += u8::from(x == b'\r');
            }
        }
        newlines += n.iter().map(|&c| usize::from(c)).sum::<usize>();
        returns += r.iter().map(|&c| usize::from(c)).sum::<usize>();
    }
    (newlines, returns)
}

/// Turns the data records of a settled layout into rows.
#[derive(Debug)]
struct Rows {
    parser: TimestampParser,
    range: TimeRange,
}

impl Rows {
    fn new(range: TimeRange) -> Self {
        Rows { parser: TimestampParser::default(), range }
    }

    /// Decodes one data record into `out` (or skips it when it is blank or outside the range).
    fn row(
        &mut self,
        layout: &Layout,
        record: &impl Fields,
        line: impl Fn() -> u64,
        out: &mut dyn Sink,
    ) -> Result<(), CodecError> {
        if record.count() != layout.width {
            if is_ignorable(record) {
                return Ok(());
            }
            let text: Vec<Cow<'_, str>> = record.fields().map(lossy).collect();
            return Err(CodecError::parse(
                Some(line()),
                None,
                Some(&text.join(",")),
                format!("expected {} fields, found {}", layout.width, record.count()),
            ));
        }
        let ts = match layout.ts {
            TsCols::One(i) => {
                let cell = record.field(i).unwrap_or_default();
                self.parser.parse(cell).map_err(|e| (cell.to_vec(), e))
            }
            TsCols::Split(d, t) => {
                let (date, time) = (record.field(d).unwrap_or_default(), record.field(t).unwrap_or_default());
                self.parser.parse_split(date, time).map_err(|e| ([date, b" ", time].concat(), e))
            }
        };
        let ts = match ts {
            Ok(ts) => ts,
            Err(_) if is_ignorable(record) => return Ok(()),
            Err((cell, e)) => {
                let reason = match e {
                    TimestampError::Malformed if cell.trim_ascii().is_empty() => "empty timestamp".to_string(),
                    e => e.to_string(),
                };
                return Err(cell_error(line(), &layout.ts_header, &cell, &reason));
            }
        };
        let [o, h, l, c] = &layout.core;
        let open = core_value(record, o, &line)?;
        let high = core_value(record, h, &line)?;
        let low = core_value(record, l, &line)?;
        let close = core_value(record, c, &line)?;
        // A missing volume (no column, an empty or `N/A` cell) is NaN, which the domain
        // reads as missing: it passes validation and never erases a stored volume.
        let volume = match &layout.volume {
            Some((index, name)) => {
                let cell = record.field(*index).unwrap_or_default();
                match parse_f64(cell) {
                    Some(v) => v,
                    None if is_missing(cell) => f64::NAN,
                    None => return Err(cell_error(line(), name, cell, "not a number")),
                }
            }
            None => f64::NAN,
        };
        let keep = self.range.contains(ts);
        for (k, col) in layout.extras.iter().enumerate() {
            let cell = record.field(col.index).unwrap_or_default();
            let v = parse_extra(cell).map_err(|_| cell_error(line(), &col.header, cell, "not a number"))?;
            if keep {
                out.push_extra(k, v);
            }
        }
        if keep {
            out.push(ts, open, high, low, close, volume);
        }
        Ok(())
    }

    /// The fast path of [`Self::row`] under the canonical layout: decodes the record at the
    /// start of `text` into `out` and returns its length, or `None` (leaving `out` as it
    /// was) when [`canonical_record`] declines it.
    #[inline]
    fn canonical(&mut self, text: &[u8], out: &mut dyn Sink) -> Option<usize> {
        let (ts, [open, high, low, close, volume], len) = canonical_record(text, &mut self.parser)?;
        if self.range.contains(ts) {
            out.push(ts, open, high, low, close, volume);
        }
        Some(len)
    }
}

/// The decoder of a whole input, fed its records in file order.
#[derive(Debug)]
struct Decoder {
    /// Known once the header is read.
    layout: Option<Layout>,
    /// The first data record decides whether rows split the timestamp in two fields.
    first_row_pending: bool,
    rows: Rows,
    out: Columns,
    rows_hint: usize,
}

impl Decoder {
    fn new(range: TimeRange, rows_hint: usize) -> Self {
        Decoder {
            layout: None,
            first_row_pending: true,
            rows: Rows::new(range),
            out: Columns::with_capacity(rows_hint, 0),
            rows_hint,
        }
    }

    fn record(&mut self, record: &impl Fields, line: impl Fn() -> u64) -> Result<(), CodecError> {
        let Some(layout) = &mut self.layout else {
            let layout = Layout::from_header(record, line())?;
            self.out.extras = layout.extras.iter().map(|_| Vec::with_capacity(self.rows_hint)).collect();
            self.layout = Some(layout);
            return Ok(());
        };
        if self.first_row_pending {
            self.first_row_pending = false;
            if layout.looks_split(record, &mut self.rows.parser) {
                layout.split_rows();
            }
        }
        self.rows.row(layout, record, line, &mut self.out)
    }

    /// Whether the layout is final, so the rest can be decoded in independent pieces.
    fn settled(&self) -> bool {
        self.layout.is_some() && !self.first_row_pending
    }

    /// Feeds every record of `text` through csv's reader (the path for quoted fields).
    /// `text` starts at a record boundary after `lines_before` line ends of the input.
    fn feed_csv(&mut self, text: &[u8], lines_before: u64) -> Result<(), CodecError> {
        let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text);
        let mut record = csv::ByteRecord::new();
        while csv.read_byte_record(&mut record).map_err(|e| shift_line(csv_error(e), lines_before))? {
            self.record(&record, || lines_before + line_of(text, &record))?;
        }
        Ok(())
    }

    /// Feeds every record of `text`, which holds no `"` and starts at a record boundary
    /// after `lines_before` line ends; returns the count of line ends in `text`.
    fn feed_plain(&mut self, text: &[u8], lines_before: u64) -> Result<u64, CodecError> {
        // The rest of the first piece, once settled, is decoded as `decode_piece` would.
        let newlines = scan_records(
            text,
            self,
            |d, rest| match &d.layout {
                Some(layout) if !d.first_row_pending && layout.is_canonical() => d.rows.canonical(rest, &mut d.out),
                _ => None,
            },
            |d, line, newlines| d.record(line, || lines_before + newlines + 1),
        )?;
        // The caller checked for quotes; should one slip through, csv's reader is never wrong.
        newlines.ok_or_else(|| CodecError::Corrupt("quoted text in a quote-free piece".into()))
    }

    fn finish(self) -> Result<RawBars, CodecError> {
        let Some(layout) = self.layout else {
            return Err(CodecError::parse(Some(1), None, None, "empty input: no header line"));
        };
        let mut out = self.out.bars;
        for (col, values) in layout.extras.iter().zip(self.out.extras) {
            out.extras.push(ExtraColumn::new(&col.name, values)?);
        }
        Ok(out)
    }
}

/// Decodes the data records of one piece of quote-free input into `out` under a settled
/// layout; line numbers in errors count from the start of the piece. `Ok(None)` when the
/// piece holds a `"` (then `out` holds garbage and the piece must be decoded by csv's reader).
///
/// Under the canonical layout each record is first tried by [`Rows::canonical`], and only
/// the records it declines are split into fields and decoded by [`Rows::row`].
fn decode_piece(layout: &Layout, range: TimeRange, text: &[u8], out: &mut dyn Sink) -> Result<Option<u64>, CodecError> {
    let rows = Rows::new(range);
    let canonical = layout.is_canonical();
    scan_records(
        text,
        &mut (rows, out),
        |(rows, out), rest| if canonical { rows.canonical(rest, *out) } else { None },
        |(rows, out), line, newlines| rows.row(layout, line, || newlines + 1, *out),
    )
}

/// A record of the canonical layout read straight from the bytes at the start of `text`:
/// its timestamp, open, high, low, close and volume, and its length (the bytes before the
/// `\r`, `\n` or end that ends it). `None` for anything but the common shapes (see
/// [`TimestampParser::parse_common`] and [`decimal_prefix`]), valid or not.
///
/// When it gives a row, that row is the one [`Rows::row`] makes of the record: the record is
/// six fields (the timestamp and five numbers, none holding a `,`, `"`, `\r` or `\n`), and
/// each field's value is the one `row` would parse from it.
#[inline]
fn canonical_record(text: &[u8], parser: &mut TimestampParser) -> Option<(i64, [f64; 5], usize)> {
    let ts_len = match (text.get(10), text.get(19), text.get(20)) {
        (Some(b','), _, _) => 10,
        (_, Some(b','), _) => 19,
        (_, Some(b'Z'), Some(b',')) => 20,
        _ => return None,
    };
    let ts = parser.parse_common(text.get(..ts_len)?)?;
    let mut values = [0.0; 5];
    let mut pos = ts_len;
    for (n, value) in values.iter_mut().enumerate() {
        // `pos` is at the `,` before the field.
        pos += 1;
        let (v, len) = decimal_prefix(text.get(pos..)?)?;
        *value = v;
        pos += len;
        let ends_right = match text.get(pos) {
            Some(b',') => n < 4,
            Some(b'\r' | b'\n') | None => n == 4,
            Some(_) => false,
        };
        if !ends_right {
            return None;
        }
    }
    Some((ts, values, pos))
}

fn has_quote(text: &[u8]) -> bool {
    text.contains(&b'"')
}

/// How the input is cut and spread over threads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Bytes per piece (rounded up to a line end).
    pub(crate) chunk: usize,
    /// Decoding threads; 1 decodes on the caller's thread, 0 means one per core (up to 4),
    /// asked of the system only for inputs large enough to use them.
    pub(crate) workers: usize,
    /// Inputs smaller than this are decoded on the caller's thread.
    pub(crate) parallel_min: usize,
}

/// A 1M-row minute file is ~50 pieces: enough to keep two cores busy to the end, few enough
/// that the per-piece cost is nothing, and with at most `2 × workers` pieces in flight the
/// input held in memory stays at a few MB whatever the file size.
const CHUNK: usize = 1 << 20;

impl Default for Tuning {
    fn default() -> Self {
        Tuning { chunk: CHUNK, workers: 0, parallel_min: 4 * CHUNK }
    }
}

/// Where the pieces of the input come from: a slice in memory or a reader.
trait Source {
    type Chunk: AsRef<[u8]> + Send;
    /// The next piece, ending at a `\n` (or at the end of the input); `None` at the end.
    fn next_chunk(&mut self) -> io::Result<Option<Self::Chunk>>;
    /// `chunks` (the last pieces returned, in order) followed by everything not read yet.
    fn rest(&mut self, chunks: Vec<Self::Chunk>) -> io::Result<Self::Chunk>;
    /// Hands a piece back once decoded, for its buffer to be reused.
    fn recycle(&mut self, _chunk: Self::Chunk) {}
    /// The size of the whole input in bytes, as far as known.
    fn size_hint(&self) -> usize;
    /// The bytes a piece is cut after.
    fn chunk_size(&self) -> usize;
}

#[derive(Debug)]
struct SliceSource<'a> {
    input: &'a [u8],
    pos: usize,
    chunk: usize,
}

impl<'a> Source for SliceSource<'a> {
    type Chunk = &'a [u8];

    fn next_chunk(&mut self) -> io::Result<Option<&'a [u8]>> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let chunk = self.chunk.max(1);
        let len = match rest.get(chunk..) {
            Some(tail) => tail.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| chunk + i + 1),
            None => rest.len(),
        };
        self.pos += len;
        Ok(rest.get(..len))
    }

    fn rest(&mut self, chunks: Vec<&'a [u8]>) -> io::Result<&'a [u8]> {
        let start = match chunks.first() {
            Some(first) => first.as_ptr().addr().saturating_sub(self.input.as_ptr().addr()),
            None => self.pos,
        };
        self.pos = self.input.len();
        Ok(self.input.get(start..).unwrap_or_default())
    }

    fn size_hint(&self) -> usize {
        self.input.len()
    }

    fn chunk_size(&self) -> usize {
        self.chunk
    }
}

#[derive(Debug)]
struct ReadSource<R> {
    reader: R,
    /// The bytes read after the last line end of the previous piece.
    carry: Vec<u8>,
    done: bool,
    chunk: usize,
    size: usize,
    spare: Vec<Vec<u8>>,
}

impl<R: Read> ReadSource<R> {
    fn new(reader: R, size: usize, chunk: usize) -> Self {
        ReadSource { reader, carry: Vec::new(), done: false, chunk: chunk.max(1), size, spare: Vec::new() }
    }
}

impl<R: Read> Source for ReadSource<R> {
    type Chunk = Vec<u8>;

    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.append(&mut self.carry);
        // The carried bytes hold no line end.
        let mut searched = buf.len();
        loop {
            if !self.done {
                let want = self.chunk;
                buf.reserve(want);
                let got = (&mut self.reader).take(want as u64).read_to_end(&mut buf)?;
                self.done = got < want;
            }
            if self.done {
                return Ok((!buf.is_empty()).then_some(buf));
            }
            let new = buf.get(searched..).unwrap_or_default();
            match new.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    let end = searched + i + 1;
                    self.carry.extend_from_slice(buf.get(end..).unwrap_or_default());
                    buf.truncate(end);
                    return Ok(Some(buf));
                }
                // A line longer than a piece: read on.
                None => searched = buf.len(),
            }
        }
    }

    fn rest(&mut self, chunks: Vec<Vec<u8>>) -> io::Result<Vec<u8>> {
        let mut chunks = chunks.into_iter();
        let mut all = chunks.next().unwrap_or_default();
        for chunk in chunks {
            all.extend_from_slice(&chunk);
        }
        all.append(&mut self.carry);
        if !self.done {
            self.reader.read_to_end(&mut all)?;
            self.done = true;
        }
        Ok(all)
    }

    fn recycle(&mut self, chunk: Vec<u8>) {
        if self.spare.len() < 8 {
            self.spare.push(chunk);
        }
    }

    fn size_hint(&self) -> usize {
        self.size
    }

    fn chunk_size(&self) -> usize {
        self.chunk
    }
}

/// Decodes a whole CSV stream held in memory, keeping the rows whose timestamp is in `range`.
///
/// Every row is parsed, also those outside `range`, so a damaged file fails the same way
/// whatever range is asked for.
pub(crate) fn decode_slice(input: &[u8], range: Option<TimeRange>) -> Result<RawBars, CodecError> {
    decode_slice_with(input, range, Tuning::default())
}

pub(crate) fn decode_slice_with(input: &[u8], range: Option<TimeRange>, tuning: Tuning) -> Result<RawBars, CodecError> {
    decode_source(SliceSource { input, pos: 0, chunk: tuning.chunk }, range, tuning)
}

/// Decodes a stream of `size` bytes (0 when unknown) read in pieces, never holding more than
/// a few pieces of it (unless it has quoted fields: see [`decode_source`]).
pub(crate) fn decode_reader(reader: impl Read, size: usize, range: Option<TimeRange>) -> Result<RawBars, CodecError> {
    decode_reader_with(reader, size, range, Tuning::default())
}

pub(crate) fn decode_reader_with(
    reader: impl Read,
    size: usize,
    range: Option<TimeRange>,
    tuning: Tuning,
) -> Result<RawBars, CodecError> {
    decode_source(ReadSource::new(reader, size, tuning.chunk), range, tuning)
}

/// The decode: the header and first data row on this thread, then the rest in pieces cut at
/// line ends, decoded on `tuning.workers` threads (each straight into its own stretch of
/// the final columns, see [`decode_parallel`]) and taken in file order.
///
/// Line numbers of errors are those of the whole input (each piece counts its line ends),
/// and the error reported is the first in file order: pieces are taken in order and the
/// first failing one stops the decode. Quote-free text cut at a line end is split into the
/// same records whatever comes before, so pieces are independent; a `"` could open a field
/// that spans line ends, so from the first piece holding one, the rest of the input is
/// decoded on this thread by csv's reader, as one piece.
fn decode_source<S: Source>(mut src: S, range: Option<TimeRange>, tuning: Tuning) -> Result<RawBars, CodecError> {
    let range = range.unwrap_or_else(TimeRange::all);
    let size = src.size_hint();
    // About 50 bytes per row in the common layouts: reserve once instead of regrowing. A
    // large input gets room for its first piece only, and its full size once the first rows
    // tell the bytes per row (growing then copies one piece at most).
    let head_rows = (size / 48).min(src.chunk_size() / 24 + 64);
    let mut decoder = Decoder::new(range, head_rows);
    let mut lines_before = 0u64;
    let mut consumed = 0usize;
    while !decoder.settled() {
        let Some(chunk) = src.next_chunk()? else { return decoder.finish() };
        if has_quote(chunk.as_ref()) {
            let rest = src.rest(vec![chunk])?;
            decoder.feed_csv(rest.as_ref(), lines_before)?;
            return decoder.finish();
        }
        lines_before += decoder.feed_plain(chunk.as_ref(), lines_before)?;
        consumed += chunk.as_ref().len();
        src.recycle(chunk);
    }
    // Size the columns from the rows per byte so far: capacity never written is address
    // space, not memory, while regrowing would copy every column.
    let total_rows = if decoder.out.len() > 0 && size > consumed {
        let per_byte = decoder.out.len() as f64 / consumed as f64;
        (per_byte * size as f64 * 1.05) as usize + 1024
    } else {
        0
    };
    let quoted = match &mut decoder {
        Decoder { layout: Some(layout), out, .. } => {
            let workers = match tuning.workers {
                _ if size < tuning.parallel_min => 1,
                0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(4),
                n => n,
            };
            if workers > 1 {
                decode_parallel(&mut src, layout, range, out, total_rows, &mut lines_before, workers)?
            } else {
                out.reserve_total(total_rows);
                decode_sequential(&mut src, layout, range, out, &mut lines_before)?
            }
        }
        Decoder { layout: None, .. } => None,
    };
    if let Some(chunks) = quoted {
        let rest = src.rest(chunks)?;
        decoder.feed_csv(rest.as_ref(), lines_before)?;
    }
    decoder.finish()
}

/// The quote-free pieces of the rest of `src`, one after the other on this thread. Returns
/// the piece holding a `"`, if one does, undecoded.
fn decode_sequential<S: Source>(
    src: &mut S,
    layout: &Layout,
    range: TimeRange,
    out: &mut Columns,
    lines_before: &mut u64,
) -> Result<Option<Vec<S::Chunk>>, CodecError> {
    while let Some(chunk) = src.next_chunk()? {
        if has_quote(chunk.as_ref()) {
            return Ok(Some(vec![chunk]));
        }
        let newlines = decode_piece(layout, range, chunk.as_ref(), out).map_err(|e| shift_line(e, *lines_before))?;
        *lines_before += newlines.unwrap_or(0);
        src.recycle(chunk);
    }
    Ok(None)
}

/// Where a piece's rows go: a region of the final columns, or columns of its own.
#[derive(Debug)]
enum Dest<'a> {
    Region(Region<'a>),
    Own(Columns),
}

/// Where a decoded piece's rows are: `rows` rows of the final columns from row `start`, or
/// columns of its own.
#[derive(Debug)]
enum Part {
    Region { start: usize, rows: usize },
    Own(Columns),
}

/// A decoded piece: its sequence number, its bytes (for reuse), its rows and its line
/// ends, `None` when it holds a `"`.
type Done<C> = (u64, C, Part, PieceResult);

/// What decoding a piece gives: its line ends, `None` when it holds a `"`.
type PieceResult = Result<Option<u64>, CodecError>;

/// The parts of the pieces decoded, in order, and the pieces from the first one holding a
/// `"` on, undecoded.
type Decoded<C> = (Vec<Part>, Option<Vec<C>>);

/// Decodes one piece on a worker thread into its destination.
fn decode_into(layout: &Layout, range: TimeRange, text: &[u8], dest: Dest<'_>) -> (Part, PieceResult) {
    match dest {
        Dest::Region(mut region) => {
            let result = decode_piece(layout, range, text, &mut region);
            if !region.overflow {
                return (Part::Region { start: region.start, rows: region.len }, result);
            }
            // More rows than `record_bound` allows: not expected, but then the piece
            // decodes into columns of its own.
            let mut own = Columns::with_capacity(region.len, layout.extras.len());
            let result = decode_piece(layout, range, text, &mut own);
            (Part::Own(own), result)
        }
        Dest::Own(mut columns) => {
            columns.clear();
            let result = decode_piece(layout, range, text, &mut columns);
            (Part::Own(columns), result)
        }
    }
}

/// The rest of `src` decoded on `workers` threads while this one reads the pieces and
/// collects the decoded ones in order. Returns, undecoded and in order, the pieces from the
/// first one holding a `"` on.
///
/// With `total_rows` (an estimate of the rows of the whole input, 0 when there is none),
/// `out` becomes columns of that many rows (zeroed pages, which cost nothing until written),
/// and each piece is decoded straight into its own region of them, sized by
/// [`record_bound`]; once the pieces are decoded, the regions are moved together (nothing
/// moves when every record is a row) and `out` is cut to the rows decoded. A piece for which
/// no room is left, or with no estimate every piece, is decoded into columns of its own and
/// appended (after a region, at the end: those are the rows past the estimate, which has 5%
/// to spare, so holding them until then costs little).
fn decode_parallel<S: Source>(
    src: &mut S,
    layout: &Layout,
    range: TimeRange,
    out: &mut Columns,
    total_rows: usize,
    lines_before: &mut u64,
    workers: usize,
) -> Result<Option<Vec<S::Chunk>>, CodecError> {
    let head = out.len();
    let regions = total_rows > head;
    if regions {
        *out = out.zero_extended(total_rows);
    }
    let (parts, quoted) = decode_pieces(src, layout, range, out, regions.then_some(head), lines_before, workers)?;
    if regions {
        join_parts(out, head, parts)?;
    }
    Ok(quoted)
}

/// Makes `out` the first `head` rows of `out` followed by the rows of `parts` in order, where
/// region parts are rows of `out` at or after the rows of the parts before them end. Regions
/// are moved down to close the gaps (moving nothing when every record was a row); from the
/// first part with columns of its own on, the rest is copied out and appended.
fn join_parts(out: &mut Columns, head: usize, parts: Vec<Part>) -> Result<(), CodecError> {
    let mut rows = head;
    let mut after: Vec<Columns> = Vec::new();
    for part in parts {
        match part {
            Part::Region { start, rows: n } if after.is_empty() => {
                out.move_rows(start, n, rows)?;
                rows += n;
            }
            Part::Region { start, rows: n } => after.push(out.copy_rows(start, n)?),
            Part::Own(columns) => after.push(columns),
        }
    }
    out.truncate(rows);
    for mut columns in after {
        out.append(&mut columns);
    }
    Ok(())
}

/// The loop of [`decode_parallel`]: with `regions_from`, pieces are decoded into regions of
/// `out` from that row on and their parts returned in order; without, into columns of their
/// own that are appended to `out` in order, and no part is returned.
fn decode_pieces<S: Source>(
    src: &mut S,
    layout: &Layout,
    range: TimeRange,
    out: &mut Columns,
    regions_from: Option<usize>,
    lines_before: &mut u64,
    workers: usize,
) -> Result<Decoded<S::Chunk>, CodecError> {
    let max_in_flight = 2 * workers as u64;
    // Rows of a piece, generously (lines are rarely under 24 bytes): the columns of a piece
    // are sized once and reused, never regrown.
    let piece_rows = src.chunk_size() / 24 + 64;
    let extras = layout.extras.len();
    // Either `out` is handed out in regions, or pieces are appended to it.
    let (mut free, mut append) = match regions_from {
        Some(from) => (Some(Free::new(out, from)), None),
        None => (None, Some(out)),
    };
    std::thread::scope(|scope| {
        // Both channels live in this closure: however it returns, dropping the job sender
        // and the result receiver makes every worker stop, so the scope's join cannot hang.
        let (job_tx, job_rx) = mpsc::channel::<(u64, S::Chunk, Dest<'_>)>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done<S::Chunk>>();
        for _ in 0..workers {
            let (job_rx, done_tx) = (Arc::clone(&job_rx), done_tx.clone());
            scope.spawn(move || {
                loop {
                    // The lock is held only while waiting for the next piece.
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok((seq, chunk, dest)) = job else { break };
                    let (part, result) = decode_into(layout, range, chunk.as_ref(), dest);
                    if done_tx.send((seq, chunk, part, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let stopped = || CodecError::Io(io::Error::other("CSV decoding thread stopped"));

        let mut spare: Vec<Columns> = Vec::new();
        let mut parts: Vec<Part> = Vec::new();
        let mut pending: BTreeMap<u64, (S::Chunk, Part, PieceResult)> = BTreeMap::new();
        let (mut sent, mut next) = (0u64, 0u64);
        let mut end_of_input = false;
        let mut read_error = None;
        let mut quoted: Option<(u64, S::Chunk)> = None;
        'decode: loop {
            while !end_of_input && sent - next < max_in_flight {
                match src.next_chunk() {
                    Ok(Some(chunk)) => {
                        let region = free.as_mut().and_then(|f| f.take(record_bound(chunk.as_ref())));
                        let dest = match region {
                            Some(region) => Dest::Region(region),
                            None => {
                                Dest::Own(spare.pop().unwrap_or_else(|| Columns::with_capacity(piece_rows, extras)))
                            }
                        };
                        job_tx.send((sent, chunk, dest)).map_err(|_| stopped())?;
                        sent += 1;
                    }
                    Ok(None) => end_of_input = true,
                    Err(e) => {
                        read_error = Some(e);
                        end_of_input = true;
                    }
                }
            }
            if next == sent {
                break;
            }
            let (seq, chunk, part, result) = done_rx.recv().map_err(|_| stopped())?;
            pending.insert(seq, (chunk, part, result));
            while let Some((chunk, part, result)) = pending.remove(&next) {
                match result.map_err(|e| shift_line(e, *lines_before))? {
                    Some(newlines) => {
                        match (&mut append, part) {
                            (Some(out), Part::Own(mut columns)) => {
                                out.append(&mut columns);
                                spare.push(columns);
                            }
                            (_, part) => parts.push(part),
                        }
                        *lines_before += newlines;
                        src.recycle(chunk);
                        next += 1;
                    }
                    None => {
                        quoted = Some((next, chunk));
                        break 'decode;
                    }
                }
            }
        }
        drop(job_tx);
        let Some((first, chunk)) = quoted else {
            return match read_error {
                Some(e) => Err(CodecError::Io(e)),
                None => Ok((parts, None)),
            };
        };
        // Everything read after the quoted piece is needed again, in order.
        while (pending.len() as u64) < sent - first - 1 {
            let (seq, chunk, part, result) = done_rx.recv().map_err(|_| stopped())?;
            pending.insert(seq, (chunk, part, result));
        }
        if let Some(e) = read_error {
            return Err(CodecError::Io(e));
        }
        let mut chunks = vec![chunk];
        chunks.extend(pending.into_values().map(|(chunk, _, _)| chunk));
        Ok((parts, Some(chunks)))
    })
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "decode_region_tests.rs"]
mod region_tests;
